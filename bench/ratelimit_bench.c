/*
 * ratelimit-bench: what a rate-limit check costs (services/rate_limiter.c) — in memory, and through
 * Redis (one EVALSHA of the limiter's Lua script per check, hiredis async on a libuv loop) — and how
 * fast the prompt-token estimate (services/tokens.c) reads a body.
 *
 *  1. memory: lx_rate_check + lx_rate_finish (admitted, then reconciled) in a loop, over 1 user and
 *     over 10,000 users; and the refusal path. Reported: ns per check, checks per second.
 *  2. redis, one check at a time: the time from lx_rate_check to its callback (the latency a request
 *     gains), p50 / p99 / p99.9, and checks per second. Each admitted check is finished with its real
 *     usage, which is a second script call (the reconcile) — counted separately, not waited for.
 *  3. redis, 64 checks in flight (as under load: many requests at once): checks per second.
 *  4. the token estimate on a 128 KB English and a 128 KB Japanese chat body: MB/s.
 *
 * Redis: starts its own redis-server on a free loopback port (--save '' --appendonly no) and stops it
 * at the end; or uses REDIS_URL (redis://host:port) when set. Without redis-server, parts 2-3 are
 * skipped.
 *
 * Usage: ratelimit-bench [seconds per part, default 2]
 * Build optimized for meaningful numbers: cmake -DCMAKE_BUILD_TYPE=Release (no LEXORA_SANITIZE).
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "limits/rate_limiter.h"
#include "limits/tokens.h"
#include "utils/buf.h"
#include "utils/common.h"
#include "utils/log.h"

static double secs_per_part = 2.0;
static uv_loop_t loop;

static double now_s(void) { return (double)lx_now_ns() / 1e9; }

static lx_rate_limiter *make(const char *rate_yaml)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "default_model: m\nrate_limits:\n%s", rate_yaml);
    lx_buf err;
    lx_buf_init(&err, 0);
    lx_config *c = lx_config_parse("bench.yaml", yaml, strlen(yaml), &err);
    if (c == NULL) {
        fprintf(stderr, "config: %s\n", err.p);
        exit(1);
    }
    lx_buf_free(&err);
    lx_rate_limiter *rl = lx_rate_limiter_new(&loop, c);
    lx_config_unref(c);
    return rl;
}

static void drop(lx_rate_limiter *rl)
{
    lx_rate_limiter_close(rl);
    for (int i = 0; i < 100; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

/* ---- 1. memory ---- */

static int allowed;
static void on_mem(lx_rate_req *req, void *ud)
{
    (void)ud;
    allowed += req->result.verdict == LX_RATE_ALLOWED;
}

static void bench_memory(const char *label, int users, bool refuse)
{
    lx_rate_limiter *rl =
        make(refuse ? "  default: {requests_per_minute: 1, tokens_per_minute: 1000}\n"
                    : "  default: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000}\n");
    char(*names)[16] = malloc((size_t)users * sizeof *names);
    for (int i = 0; i < users; i++)
        snprintf(names[i], sizeof names[i], "user%d", i);
    lx_rate_req q = {0};
    long n = 0;
    allowed = 0;
    double start = now_s(), end = start + secs_per_part;
    while (now_s() < end) {
        for (int k = 0; k < 1000; k++, n++) {
            lx_rate_ask ask = {.user = names[n % users], .prompt_tokens = 300, .tokens = 800};
            lx_rate_check(rl, &q, &ask, on_mem, NULL);
            lx_rate_finish(&q, 420);
        }
    }
    double el = now_s() - start;
    printf("memory  %-34s %8.0f ns/check  %10.0f checks/s  (%s)\n", label, el * 1e9 / (double)n, (double)n / el,
           refuse ? "refused" : "admitted + reconciled");
    free(names);
    drop(rl);
}

/* ---- 2-3. redis ---- */

static pid_t redis_pid = -1;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) exit(1);
    close(fd);
    return ntohs(a.sin_port);
}

static bool start_redis(int port)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) return false;
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    redis_pid = fork();
    if (redis_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("redis-server", "redis-server", "--save", "", "--appendonly", "no", "--port", p, "--bind", "127.0.0.1",
               (char *)NULL);
        _exit(127);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d ping >/dev/null 2>&1", port);
    for (int i = 0; i < 200; i++) {
        if (system(cmd) == 0) return true;
        usleep(10000);
    }
    return false;
}

typedef struct {
    lx_rate_limiter *rl;
    lx_rate_req req;
    double t0;
    bool done;
} one;

static double *lat;
static size_t nlat, caplat;
static long redis_checks, redis_local;

static void on_redis(lx_rate_req *req, void *ud)
{
    one *o = ud;
    double dt = now_s() - o->t0;
    if (nlat < caplat) lat[nlat++] = dt;
    redis_checks++;
    redis_local += !req->result.shared;
    if (req->result.verdict == LX_RATE_ALLOWED) lx_rate_finish(req, 420); /* the reconcile: a second call */
    o->done = true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p) { return nlat ? lat[(size_t)((double)(nlat - 1) * p)] * 1e6 : 0; }

static void issue(one *o, int i)
{
    char user[16];
    snprintf(user, sizeof user, "user%d", i % 64);
    lx_rate_ask ask = {.user = user, .prompt_tokens = 300, .tokens = 800};
    o->done = false;
    o->t0 = now_s();
    lx_rate_check(o->rl, &o->req, &ask, on_redis, o);
}

static void bench_redis_sequential(lx_rate_limiter *rl)
{
    caplat = 2000000;
    lat = malloc(caplat * sizeof *lat);
    nlat = 0;
    redis_checks = redis_local = 0;
    one o = {.rl = rl};
    double start = now_s(), end = start + secs_per_part;
    for (int i = 0; now_s() < end; i++) {
        issue(&o, i);
        while (!o.done)
            uv_run(&loop, UV_RUN_ONCE);
    }
    double el = now_s() - start;
    qsort(lat, nlat, sizeof *lat, cmp_double);
    printf("redis   %-34s p50 %6.1f us  p99 %6.1f us  p99.9 %6.1f us  %8.0f checks/s%s\n", "one check at a time",
           pct(0.50), pct(0.99), pct(0.999), (double)redis_checks / el, redis_local ? "  (SOME DECIDED LOCALLY)" : "");
    free(lat);
}

#define IN_FLIGHT 64
static one pool[IN_FLIGHT];
static bool pool_stop;
static int pool_next;

static void on_pool(lx_rate_req *req, void *ud)
{
    one *o = ud;
    redis_checks++;
    redis_local += !req->result.shared;
    if (req->result.verdict == LX_RATE_ALLOWED) lx_rate_finish(req, 420);
    o->done = true;
}

static void pool_issue(one *o)
{
    char user[16];
    snprintf(user, sizeof user, "user%d", pool_next++ % 64);
    lx_rate_ask ask = {.user = user, .prompt_tokens = 300, .tokens = 800};
    o->done = false;
    lx_rate_check(o->rl, &o->req, &ask, on_pool, o);
}

static void bench_redis_concurrent(lx_rate_limiter *rl)
{
    redis_checks = redis_local = 0;
    pool_stop = false;
    for (int i = 0; i < IN_FLIGHT; i++) {
        pool[i].rl = rl;
        pool_issue(&pool[i]);
    }
    double start = now_s(), end = start + secs_per_part;
    while (now_s() < end) {
        uv_run(&loop, UV_RUN_ONCE);
        for (int i = 0; i < IN_FLIGHT; i++)
            if (pool[i].done) pool_issue(&pool[i]);
    }
    double el = now_s() - start;
    for (bool busy = true; busy;) { /* let the last ones land */
        uv_run(&loop, UV_RUN_ONCE);
        busy = false;
        for (int i = 0; i < IN_FLIGHT; i++)
            busy |= !pool[i].done;
    }
    printf("redis   %-34s %8.0f checks/s%s\n", "64 checks in flight", (double)redis_checks / el,
           redis_local ? "  (SOME DECIDED LOCALLY)" : "");
}

/* ---- 4. the estimate ---- */

static void bench_tokens(const char *label, const char *piece)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_buf_append_str(&b, "{\"model\":\"qwen3-32b\",\"messages\":[");
    for (int i = 0; b.len < 128 * 1024; i++) {
        lx_buf_printf(&b, "%s{\"role\":\"%s\",\"content\":\"", i ? "," : "", i % 2 ? "assistant" : "user");
        for (int k = 0; k < 20; k++)
            lx_buf_append_str(&b, piece);
        lx_buf_append_str(&b, "\"}");
    }
    lx_buf_append_str(&b, "]}");
    lx_token_estimate e;
    long n = 0;
    double start = now_s(), end = start + secs_per_part;
    while (now_s() < end) {
        for (int k = 0; k < 100; k++, n++)
            lx_tokens_estimate(b.p, b.len, &e);
    }
    double el = now_s() - start;
    printf("tokens  %-34s %8.0f MB/s  %6.1f us per %zu KB body (estimate %ld tokens)\n", label,
           (double)b.len * (double)n / el / 1e6, el * 1e6 / (double)n, b.len / 1024, e.prompt_tokens);
    lx_buf_free(&b);
}

int main(int argc, char **argv)
{
    if (argc > 1) secs_per_part = atof(argv[1]);
    if (secs_per_part <= 0) secs_per_part = 2.0;
    signal(SIGPIPE, SIG_IGN);
    lx_log_configure(LX_LOG_WARN, false);
    uv_loop_init(&loop);

    bench_memory("1 user", 1, false);
    bench_memory("64 users", 64, false);
    bench_memory("10,000 users", 10000, false);
    bench_memory("64 users, over the limit", 64, true);

    char url[128];
    const char *env = getenv("REDIS_URL");
    bool have = true;
    if (env) {
        snprintf(url, sizeof url, "%s", env);
    } else {
        int port = free_port();
        have = start_redis(port);
        snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    }
    if (have) {
        char yaml[256];
        snprintf(yaml, sizeof yaml,
                 "  default: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000}\n"
                 "  store: redis\n  redis_url: \"%s\"\n",
                 url);
        lx_rate_limiter *rl = make(yaml);
        for (int i = 0; i < 50; i++) /* connect */
            uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
        bench_redis_sequential(rl);
        bench_redis_concurrent(rl);
        lx_rate_stats st;
        lx_rate_limiter_stats(rl, &st);
        printf("redis   fallbacks %llu, errors %llu, reconciles dropped %llu\n", (unsigned long long)st.fallbacks,
               (unsigned long long)st.redis_errors, (unsigned long long)st.adjust_dropped);
        drop(rl);
    } else {
        printf("redis   skipped: no redis-server\n");
    }
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
    }

    bench_tokens("128 KB English chat", "The gateway sits in front of vLLM and adds queueing and limits. ");
    bench_tokens("128 KB Japanese chat", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x96\x87\xe7\xab\xa0"
                                         "\xe3\x82\x82\xe5\x85\xa5\xe3\x82\x8b\xe3\x80\x82");
    uv_loop_close(&loop);
    return 0;
}
