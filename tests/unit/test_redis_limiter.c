/*
 * The rate limiter's Redis store against a real redis-server, started here on a free loopback port
 * (--save '' --appendonly no) and stopped at the end. Two limiters on one Redis stand for two Lexora
 * processes: they share one limit. Redis killed mid-test: every check is still answered (locally),
 * the fallback is logged once and counted; Redis back on the same port: shared again. Also: TPM
 * reconciliation across instances, a check cancelled while Redis decides (its charge is refunded),
 * NOSCRIPT after SCRIPT FLUSH, TTLs, a db number, a host name, a Redis that stops answering (SIGSTOP),
 * and a Redis that is not there at start. Without redis-server: skipped, or failed under CI (CI=true).
 * Every wait is bounded (a few seconds at most).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support.h"
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "limits/rate_limiter.h"
#include "utils/buf.h"
#include "utils/log.h"

/* ---- redis-server ---- */

static pid_t redis_pid = -1;
static int redis_port;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static redisContext *client(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void redis_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", redis_port);
    redis_pid = fork();
    assert_true(redis_pid >= 0);
    if (redis_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("redis-server", "redis-server", "--save", "", "--appendonly", "no", "--port", port, "--bind",
               "127.0.0.1", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) { /* up to 2 s */
        redisContext *c = client();
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(c);
            if (ok) return;
        }
        usleep(10000);
    }
    fail_msg("redis-server did not start on port %d", redis_port);
}

static void redis_kill(void)
{
    if (redis_pid <= 0) return;
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redis_pid = -1;
}

static long long redis_int(const char *fmt, const char *arg)
{
    redisContext *c = client();
    assert_non_null(c);
    redisReply *r = redisCommand(c, fmt, arg);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

static void redis_do(const char *cmd)
{
    redisContext *c = client();
    assert_non_null(c);
    freeReplyObject(redisCommand(c, cmd));
    redisFree(c);
}

static bool have_redis(void) { return system("command -v redis-server >/dev/null 2>&1") == 0; }

static int group_setup(void **state)
{
    (void)state;
    if (!have_redis()) return 0;
    signal(SIGPIPE, SIG_IGN);
    redis_port = free_port();
    redis_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_kill();
    return 0;
}

/* ---- the loop ---- */

static uv_loop_t loop;

static lx_config *config(const char *extra, const char *url)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "default_model: m\n"
             "rate_limits:\n"
             "  store: redis\n"
             "  redis_url: \"%s\"\n"
             "%s",
             url, extra);
    return lx_test_config(yaml);
}

/* Limiters still open: a failed assertion leaves the test early; the teardown closes them. */
static lx_rate_limiter *open_limiters[8];

static lx_rate_limiter *limiter_url(const char *extra, const char *url)
{
    lx_config *c = config(extra, url);
    lx_rate_limiter *rl = lx_rate_limiter_new(&loop, c);
    lx_config_unref(c);
    for (size_t i = 0; i < 8; i++)
        if (open_limiters[i] == NULL) {
            open_limiters[i] = rl;
            break;
        }
    return rl;
}

static lx_rate_limiter *limiter(const char *extra)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis_port);
    return limiter_url(extra, url);
}

static void close_limiter(lx_rate_limiter *rl)
{
    for (size_t i = 0; i < 8; i++)
        if (open_limiters[i] == rl) open_limiters[i] = NULL;
    lx_rate_limiter_close(rl);
    lx_test_run_for(&loop, 20);
}

/* One check, waited for. */
typedef struct {
    lx_rate_req req;
    bool done;
    int calls;
    lx_rate_result res;
} waiter;

static void on_done(lx_rate_req *req, void *ud)
{
    waiter *w = ud;
    w->done = true;
    w->calls++;
    w->res = req->result;
}

static lx_rate_verdict check_tokens(lx_rate_limiter *rl, waiter *w, const char *user, long tokens)
{
    w->done = false;
    lx_rate_ask ask = {.user = user, .prompt_tokens = tokens / 2, .tokens = tokens};
    lx_rate_check(rl, &w->req, &ask, on_done, w);
    assert_true(lx_test_run_until(&loop, lx_test_flag, &w->done, 2000));
    return w->res.verdict;
}

/* A request that is admitted and then answered with no tokens: only the request counts. */
static lx_rate_verdict hit(lx_rate_limiter *rl, const char *user, bool *shared)
{
    waiter w = {0};
    lx_rate_verdict v = check_tokens(rl, &w, user, 0);
    if (shared) *shared = w.res.shared;
    lx_rate_finish(&w.req, 0);
    return v;
}

/* CI=true (as .ci/run runs): every tool is installed there, so a missing redis-server is a failure. */
static bool in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && (strcasecmp(ci, "true") == 0 || strcmp(ci, "1") == 0 || strcasecmp(ci, "yes") == 0);
}

/* Without redis-server: fails under CI, else skips with a message. */
#define NEED_REDIS()                                                                                                   \
    do {                                                                                                               \
        if (!have_redis()) {                                                                                           \
            if (in_ci()) fail_msg("redis-server is required under CI but is not installed (make deps installs it)");   \
            print_message("skipped: redis-server is not installed (make deps installs it)\n");                         \
            skip();                                                                                                    \
        }                                                                                                              \
    } while (0)

/* ---- tests ---- */

static void test_shared_limit(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_do("FLUSHALL");
    const char *limits = "  default: {requests_per_minute: 30, tokens_per_minute: 0}\n";
    lx_rate_limiter *a = limiter(limits), *b = limiter(limits);
    int ok_a = 0, ok_b = 0;
    for (int i = 0; i < 40; i++) {
        bool shared = false;
        ok_a += hit(a, "team", &shared) == LX_RATE_ALLOWED;
        assert_true(shared);
        ok_b += hit(b, "team", &shared) == LX_RATE_ALLOWED;
        assert_true(shared);
    }
    assert_int_equal(ok_a + ok_b, 30); /* one limit for both instances */
    assert_int_equal(ok_a, 15);
    /* the refusal carries Redis's numbers */
    waiter w = {0};
    assert_int_equal(check_tokens(a, &w, "team", 0), LX_RATE_LIMITED);
    assert_int_equal(w.res.limit, 30);
    assert_int_equal(w.res.used, 30);
    assert_true(w.res.retry_after_ms > 0 && w.res.retry_after_ms <= 2000);
    assert_int_equal(w.res.requests.remaining, 0);
    /* the key expires when it has drained: a minute for 30 requests, plus a second */
    long long ttl = redis_int("PTTL %s", "lexora:rl:team");
    assert_true(ttl > 55000 && ttl <= 61000);
    lx_rate_stats st;
    lx_rate_limiter_stats(a, &st);
    assert_true(st.redis_configured);
    assert_true(st.redis_up);
    assert_int_equal(st.fallbacks, 0);
    close_limiter(a);
    close_limiter(b);
}

static void test_tpm_across_instances(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_do("FLUSHALL");
    const char *limits = "  default: {requests_per_minute: 0, tokens_per_minute: 1000}\n";
    lx_rate_limiter *a = limiter(limits), *b = limiter(limits);
    waiter w1 = {0}, w2 = {0};
    assert_int_equal(check_tokens(a, &w1, "tok", 600), LX_RATE_ALLOWED);
    assert_int_equal(check_tokens(b, &w2, "tok", 600), LX_RATE_LIMITED); /* the reservation is seen by b */
    assert_int_equal(w2.res.kind, LX_RATE_TOKENS);
    assert_true(w2.res.used >= 599 && w2.res.used <= 600);
    lx_rate_finish(&w1.req, 100); /* real usage: 100 */
    lx_test_run_for(&loop, 30);
    assert_int_equal(check_tokens(b, &w2, "tok", 850), LX_RATE_ALLOWED);
    lx_rate_finish(&w2.req, 850);
    lx_test_run_for(&loop, 30);
    assert_int_equal(check_tokens(a, &w1, "tok", 100), LX_RATE_LIMITED);
    /* a refund of everything deletes the key */
    redis_do("FLUSHALL");
    assert_int_equal(check_tokens(a, &w1, "gone", 10), LX_RATE_ALLOWED);
    lx_test_run_for(&loop, 10);
    assert_int_equal(redis_int("EXISTS %s", "lexora:rl:gone"), 1);
    lx_rate_cancel(&w1.req);
    lx_test_run_for(&loop, 30);
    assert_int_equal(redis_int("EXISTS %s", "lexora:rl:gone"), 0);
    close_limiter(a);
    close_limiter(b);
}

static void test_cancel_while_deciding(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_do("FLUSHALL");
    lx_rate_limiter *a = limiter("  default: {requests_per_minute: 2, tokens_per_minute: 0}\n");
    waiter w = {0};
    lx_rate_ask ask = {.user = "cx", .tokens = 0};
    lx_rate_check(a, &w.req, &ask, on_done, &w);
    assert_false(w.done); /* Redis answers later */
    lx_rate_cancel(&w.req);
    lx_test_run_for(&loop, 50);
    assert_int_equal(w.calls, 0); /* never called back */
    /* and what Redis charged for it was given back: both requests are still there */
    assert_int_equal(hit(a, "cx", NULL), LX_RATE_ALLOWED);
    assert_int_equal(hit(a, "cx", NULL), LX_RATE_ALLOWED);
    assert_int_equal(hit(a, "cx", NULL), LX_RATE_LIMITED);
    close_limiter(a);
}

static void test_noscript(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_do("FLUSHALL");
    lx_rate_limiter *a = limiter("  default: {requests_per_minute: 5, tokens_per_minute: 0}\n");
    bool shared = false;
    assert_int_equal(hit(a, "ns", &shared), LX_RATE_ALLOWED);
    redis_do("SCRIPT FLUSH");
    assert_int_equal(hit(a, "ns", &shared), LX_RATE_ALLOWED); /* EVALSHA → NOSCRIPT → EVAL */
    assert_true(shared);
    assert_int_equal(hit(a, "ns", &shared), LX_RATE_ALLOWED); /* EVAL loaded it again */
    assert_true(shared);
    lx_rate_stats st;
    lx_rate_limiter_stats(a, &st);
    assert_int_equal(st.fallbacks, 0);
    assert_int_equal(st.redis_errors, 0);
    close_limiter(a);
}

static void test_db_and_host_name(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_do("FLUSHALL");
    char url[64];
    snprintf(url, sizeof url, "redis://localhost:%d/3", redis_port); /* resolved without blocking */
    lx_rate_limiter *a = limiter_url("  default: {requests_per_minute: 5, tokens_per_minute: 0}\n", url);
    bool shared = false;
    for (int i = 0; i < 3 && !shared; i++) { /* the first may be local while the name resolves */
        hit(a, "dbuser", &shared);
        if (!shared) lx_test_run_for(&loop, 50);
    }
    assert_true(shared);
    assert_int_equal(redis_int("EXISTS %s", "lexora:rl:dbuser"), 0);
    redisContext *c = client();
    freeReplyObject(redisCommand(c, "SELECT 3"));
    redisReply *r = redisCommand(c, "EXISTS lexora:rl:dbuser");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);
    close_limiter(a);
}

/* Points fd 2 at a file for a while, to count the log lines. */
static int saved_stderr = -1;
static char log_path[64];

static void capture_start(void)
{
    lx_log_flush();
    snprintf(log_path, sizeof log_path, "/tmp/lexora-redis-test-%d.log", (int)getpid());
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

static int capture_count(const char *needle)
{
    lx_log_flush();
    FILE *f = fopen(log_path, "r");
    char line[1024];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    if (f) fclose(f);
    return n;
}

static void capture_end(void)
{
    if (saved_stderr < 0) return;
    lx_log_flush();
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
    if (!getenv("KEEP_LOG")) unlink(log_path);
}

/* After each test, whatever it left: stderr, a stopped or killed Redis, open limiters. */
static int test_teardown(void **state)
{
    (void)state;
    capture_end();
    if (redis_pid > 0) kill(redis_pid, SIGCONT);
    if (redis_pid <= 0 && redis_port > 0) redis_start();
    for (size_t i = 0; i < 8; i++)
        if (open_limiters[i]) close_limiter(open_limiters[i]);
    return 0;
}

static void test_fallback_and_recovery(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_do("FLUSHALL");
    lx_log_configure(LX_LOG_INFO, false);
    capture_start();
    const char *limits = "  default: {requests_per_minute: 20, tokens_per_minute: 0}\n";
    lx_rate_limiter *a = limiter(limits), *b = limiter(limits);
    bool shared = false;
    int ok = 0;
    for (int i = 0; i < 5; i++) {
        ok += hit(a, "fb", &shared) == LX_RATE_ALLOWED;
        assert_true(shared);
        ok += hit(b, "fb", &shared) == LX_RATE_ALLOWED;
        assert_true(shared);
    }
    assert_int_equal(ok, 10);

    /* Redis dies: every check is still answered, by each instance alone, and none fails */
    redis_kill();
    int answered = 0, local = 0;
    for (int i = 0; i < 20; i++) {
        lx_rate_verdict v = hit(i % 2 ? a : b, "fb", &shared);
        answered++;
        local += !shared;
        assert_true(v == LX_RATE_ALLOWED || v == LX_RATE_LIMITED);
    }
    assert_int_equal(answered, 20);
    assert_int_equal(local, 20);
    lx_rate_stats st;
    lx_rate_limiter_stats(a, &st);
    assert_false(st.redis_up);
    assert_true(st.fallbacks >= 10);
    assert_int_equal(st.redis_down_events, 1);
    assert_int_equal(lx_rate_limiter_fallbacks(a), st.fallbacks);
    /* each instance started its local limit from its own share (5 of 20), so each admits 15 more at most */
    lx_test_run_for(&loop, 300);                       /* reconnection attempts fail quietly */
    assert_int_equal(capture_count("is unusable"), 2); /* once per instance */

    /* Redis is back (empty): within the backoff both use it again, and share one limit again */
    redis_start();
    bool back = false;
    for (int i = 0; i < 60 && !back; i++) { /* up to 3 s */
        lx_test_run_for(&loop, 50);
        lx_rate_limiter_stats(a, &st);
        lx_rate_stats sb;
        lx_rate_limiter_stats(b, &sb);
        back = st.redis_up && sb.redis_up;
    }
    assert_true(back);
    ok = 0;
    for (int i = 0; i < 20; i++) {
        ok += hit(a, "fb2", &shared) == LX_RATE_ALLOWED;
        assert_true(shared);
        ok += hit(b, "fb2", &shared) == LX_RATE_ALLOWED;
        assert_true(shared);
    }
    assert_int_equal(ok, 20);
    assert_int_equal(capture_count("is back; limits are shared"), 2);
    assert_int_equal(capture_count("is unusable"), 2);
    capture_end();
    close_limiter(a);
    close_limiter(b);
}

static void test_redis_stops_answering(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_do("FLUSHALL");
    lx_log_configure(LX_LOG_ERROR, false);
    lx_rate_limiter *a = limiter("  default: {requests_per_minute: 100, tokens_per_minute: 0}\n");
    bool shared = false;
    assert_int_equal(hit(a, "st", &shared), LX_RATE_ALLOWED);
    assert_true(shared);
    kill(redis_pid, SIGSTOP);
    uint64_t t0 = uv_hrtime();
    assert_int_equal(hit(a, "st", &shared), LX_RATE_ALLOWED); /* 100 ms, then locally */
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    assert_false(shared);
    assert_true(ms >= 90 && ms < 1000);
    t0 = uv_hrtime();
    assert_int_equal(hit(a, "st", &shared), LX_RATE_ALLOWED); /* known to be away: at once */
    assert_true((double)(uv_hrtime() - t0) / 1e6 < 50);
    assert_false(shared);
    kill(redis_pid, SIGCONT);
    bool up = false;
    for (int i = 0; i < 60 && !up; i++) {
        lx_test_run_for(&loop, 50);
        hit(a, "st", &shared);
        up = shared;
    }
    assert_true(up);
    lx_rate_stats st;
    lx_rate_limiter_stats(a, &st);
    assert_true(st.redis_errors >= 1);
    close_limiter(a);
}

static void test_redis_absent_at_start(void **state)
{
    (void)state;
    NEED_REDIS();
    lx_log_configure(LX_LOG_ERROR, false);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port()); /* nothing listens there */
    lx_rate_limiter *a = limiter_url("  default: {requests_per_minute: 3, tokens_per_minute: 0}\n", url);
    int ok = 0;
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < 5; i++) {
        bool shared = true;
        ok += hit(a, "abs", &shared) == LX_RATE_ALLOWED;
        assert_false(shared);
    }
    assert_true((double)(uv_hrtime() - t0) / 1e6 < 500);
    assert_int_equal(ok, 3); /* the local limit still holds */
    lx_rate_stats st;
    lx_rate_limiter_stats(a, &st);
    assert_int_equal(st.fallbacks, 5);
    assert_false(st.redis_up);
    close_limiter(a);
}

static void test_reconfigure_store(void **state)
{
    (void)state;
    NEED_REDIS();
    redis_do("FLUSHALL");
    lx_rate_limiter *a = limiter("  default: {requests_per_minute: 4, tokens_per_minute: 0}\n");
    bool shared = false;
    assert_int_equal(hit(a, "rc", &shared), LX_RATE_ALLOWED);
    assert_true(shared);
    /* to memory: the shadow kept this instance's use */
    lx_config *c =
        lx_test_config("default_model: m\nrate_limits:\n  default: {requests_per_minute: 4, tokens_per_minute: 0}\n");
    lx_rate_limiter_reconfigure(a, c);
    lx_config_unref(c);
    int ok = 0;
    for (int i = 0; i < 5; i++) {
        ok += hit(a, "rc", &shared) == LX_RATE_ALLOWED;
        assert_false(shared);
    }
    assert_int_equal(ok, 3);
    lx_rate_stats st;
    lx_rate_limiter_stats(a, &st);
    assert_false(st.redis_configured);
    assert_int_equal(st.fallbacks, 0);
    close_limiter(a);
}

int main(void)
{
    uv_loop_init(&loop);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_shared_limit, test_teardown),
        cmocka_unit_test_teardown(test_tpm_across_instances, test_teardown),
        cmocka_unit_test_teardown(test_cancel_while_deciding, test_teardown),
        cmocka_unit_test_teardown(test_noscript, test_teardown),
        cmocka_unit_test_teardown(test_db_and_host_name, test_teardown),
        cmocka_unit_test_teardown(test_fallback_and_recovery, test_teardown),
        cmocka_unit_test_teardown(test_redis_stops_answering, test_teardown),
        cmocka_unit_test_teardown(test_redis_absent_at_start, test_teardown),
        cmocka_unit_test_teardown(test_reconfigure_store, test_teardown),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    lx_test_run_for(&loop, 50); /* close callbacks; a handle left open is ASan's to report, not a reason to hang */
    uv_loop_close(&loop);
    return rc;
}
