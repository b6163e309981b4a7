/*
 * The rate limiter's Redis store: hiredis async on the loop, one Lua script. See rate_redis.h.
 *
 * States: DOWN (no connection; a retry timer is armed) → RESOLVING (uv_getaddrinfo, for a host name)
 * → CONNECTING (a hiredis context, connect in progress) → UP. Calls are sent when UP, and while
 * CONNECTING on a first attempt (hiredis buffers them until the socket is connected); during
 * reconnection attempts after a failure they are refused, so no request waits for a Redis that is
 * known to be away.
 *
 * Invariants:
 * - r->ac is the live context or NULL. Whoever learns that a context is going away sets r->ac to
 *   NULL first (so nothing is sent on it), then the context is freed, by hiredis (connect failure,
 *   lost connection) or by us (timeout, close). A reply callback with a NULL reply means the context is
 *   being freed: every pending call then fails, and the caller decides locally.
 * - Pending calls are kept in send order; hiredis answers in that order, so the head has the earliest
 *   deadline and one timer covers them all (and the connect timeout).
 * - A context counts in r->contexts from its attach until hiredis's cleanup hook (wrapped here), which
 *   runs after its last reply callback. The object's timers are closed, and the object freed in their
 *   close callbacks, only when closing and no context nor name resolution is left: so nothing of
 *   hiredis's can call back into freed memory.
 * - Going down is logged once (and counted); coming back is logged once.
 */
#include "limits/rate_redis.h"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wshadow"
#include <hiredis/adapters/libuv.h>
#pragma GCC diagnostic pop

#include "utils/common.h"
#include "utils/list.h"
#include "utils/log.h"

/*
 * KEYS[1] the user's hash; ARGV: op ("c" check, "a" adjust), rpm, tpm, requests, tokens.
 * Levels are in units of 1/60000 (a request or a token weighs 60000; a bucket drains `limit` units a
 * millisecond). Returns {allowed, requests level, tokens level, requests wait ms, tokens wait ms}.
 */
static const char SCRIPT[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local U, MAXL = 60000, 1e15\n"
    "local tm = redis.call('TIME')\n"
    "local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"
    "local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local dr, dk = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local v = redis.call('HMGET', KEYS[1], 'r', 't', 'at')\n"
    "local r, k, at = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or now\n"
    "local el = now - at\n"
    "if el < 0 then el = 0 else at = now end\n"
    "local function drain(l, rate)\n"
    "  if rate <= 0 then return 0 end\n"
    "  l = l - el * rate\n"
    "  if l < 0 then return 0 end\n"
    "  return l\n"
    "end\n"
    "r = drain(r, rpm)\n"
    "k = drain(k, tpm)\n"
    "if ARGV[1] == 'c' then\n"
    "  local wr, wk = 0, 0\n"
    "  if rpm > 0 and r + dr * U > rpm * U then wr = math.ceil((r + dr * U - rpm * U) / rpm) end\n"
    "  if tpm > 0 and k + dk * U > tpm * U then wk = math.ceil((k + dk * U - tpm * U) / tpm) end\n"
    "  if wr > 0 or wk > 0 then return {0, r, k, wr, wk} end\n"
    "end\n"
    "r = r + dr * U\n"
    "k = k + dk * U\n"
    "if r < 0 then r = 0 elseif r > MAXL then r = MAXL end\n"
    "if k < 0 then k = 0 elseif k > MAXL then k = MAXL end\n"
    "if rpm <= 0 then r = 0 end\n"
    "if tpm <= 0 then k = 0 end\n"
    "local ttl = 0\n"
    "if r > 0 then ttl = math.ceil(r / rpm) end\n"
    "if k > 0 then ttl = math.max(ttl, math.ceil(k / tpm)) end\n"
    "if ttl == 0 then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'r', string.format('%d', r), 't', string.format('%d', k),\n"
    "             'at', string.format('%d', at))\n"
    "  redis.call('PEXPIRE', KEYS[1], ttl + 1000)\n"
    "end\n"
    "return {1, r, k, 0, 0}\n";

typedef enum { ST_DOWN, ST_RESOLVING, ST_CONNECTING, ST_UP } conn_state;

typedef struct call {
    lx_list link; /* in the pending calls, in send order */
    lx_rate_redis *r;
    lx_rate_redis_cb cb;
    void *ud;
    uint64_t deadline; /* now_ms() */
    bool check, evaled;
    int64_t args[4]; /* rpm, tpm, requests, tokens */
    size_t keylen;
    char key[];
} call;

typedef struct {
    uv_getaddrinfo_t req;
    lx_rate_redis *r;
    unsigned gen;
} resolve_req;

struct lx_rate_redis {
    uv_loop_t *loop;
    redisAsyncContext *ac;
    conn_state state;
    char *host, *socket_path;
    int port, db;
    char where[160]; /* for logs: host:port or the socket path */
    char sha[41];
    lx_rate_redis_opts o;
    uv_timer_t timer; /* the head call's deadline, and the connect deadline */
    uv_timer_t retry; /* reconnect backoff */
    int closed_handles;
    lx_list calls; /* pending, in send order: the first has the earliest deadline */
    uint64_t connect_deadline;
    int backoff_ms;
    unsigned gen;         /* connection attempts; a stale name resolution is ignored */
    int contexts;         /* hiredis contexts not yet cleaned up */
    int resolving;        /* name resolutions in flight */
    resolve_req *resolve; /* the current one, to cancel on close */
    bool closing, handles_closing;
    bool down_announced;  /* went down and said so; cleared (and said so) when it is back */
    bool error_announced; /* an error reply was logged on this connection */
    uint64_t down_events, errors;
};

static void start_connect(lx_rate_redis *r);

/* Deadlines are on the monotonic clock, not uv_now: the loop's time is as old as its iteration, and a
 * deadline reckoned from it could already be past. A timer that fires early is simply re-armed. */
static uint64_t now_ms(void) { return lx_now_ns() / 1000000u; }

/* ---- lifetime ---- */

static void on_handle_closed(uv_handle_t *h)
{
    lx_rate_redis *r = h->data;
    if (++r->closed_handles < 2) return;
    free(r->host);
    free(r->socket_path);
    free(r);
}

/* Closing, and nothing of hiredis's or libuv's can call back any more: close the timers, then free. */
static void try_finish(lx_rate_redis *r)
{
    if (!r->closing || r->handles_closing || r->contexts > 0 || r->resolving > 0) return;
    r->handles_closing = true;
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->retry, on_handle_closed);
}

/* hiredis's cleanup hook, wrapped: runs once per context, after its last reply callback. */
static void cleanup_hook(void *privdata)
{
    redisLibuvEvents *ev = privdata;
    lx_rate_redis *r = ev->context->data;
    redisLibuvCleanup(privdata);
    r->contexts--;
    try_finish(r);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t);

static call *first_call(const lx_rate_redis *r)
{
    lx_list *n = lx_list_first(&r->calls);
    return n ? LX_CONTAINER_OF(n, call, link) : NULL;
}

static void rearm(lx_rate_redis *r)
{
    if (r->closing) return;
    uint64_t due = UINT64_MAX;
    call *first = first_call(r);
    if (first && r->ac) due = first->deadline; /* calls of a context going away fail by themselves */
    if ((r->state == ST_CONNECTING || r->state == ST_RESOLVING) && r->connect_deadline < due) due = r->connect_deadline;
    if (due == UINT64_MAX) {
        uv_timer_stop(&r->timer);
        return;
    }
    uint64_t now = now_ms();
    uv_timer_start(&r->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_retry(uv_timer_t *t)
{
    lx_rate_redis *r = t->data;
    if (!r->closing && r->state == ST_DOWN) start_connect(r);
}

/* Redis is not usable: say so once, and try again later. The caller has let go of r->ac. */
static void went_down(lx_rate_redis *r, const char *why)
{
    r->state = ST_DOWN;
    if (r->closing) return;
    if (!r->down_announced) {
        r->down_announced = true;
        r->down_events++;
        LX_WARN(NULL,
                "rate limits: Redis at %s is unusable (%s); each instance applies the limits alone until it is back",
                r->where, why && *why ? why : "unknown error");
    }
    uv_timer_start(&r->retry, on_retry, (uint64_t)r->backoff_ms, 0);
    r->backoff_ms = LX_MIN(r->backoff_ms * 2, r->o.retry_max_ms);
    rearm(r);
}

/* Lets go of the connection ourselves (timeout, close): pending calls fail inside redisAsyncFree, or
 * as soon as hiredis returns when we are inside one of its callbacks. */
static void drop(lx_rate_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->gen++;
    went_down(r, why);
    if (ac) redisAsyncFree(ac);
}

static void on_timer(uv_timer_t *t)
{
    lx_rate_redis *r = t->data;
    uint64_t now = now_ms();
    char why[64];
    call *first = first_call(r);
    if ((r->state == ST_CONNECTING || r->state == ST_RESOLVING) && now >= r->connect_deadline) {
        snprintf(why, sizeof why, "no connection within %d ms", r->o.connect_timeout_ms);
        drop(r, why);
    } else if (first && r->ac && now >= first->deadline) {
        snprintf(why, sizeof why, "no answer within %d ms", r->o.call_timeout_ms);
        drop(r, why);
    } else {
        rearm(r);
    }
}

/* ---- calls ---- */

static void link_tail(lx_rate_redis *r, call *c)
{
    lx_list_append(&r->calls, &c->link);
    c->deadline = now_ms() + (uint64_t)r->o.call_timeout_ms;
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata);

static int send_call(lx_rate_redis *r, call *c, bool eval)
{
    char nums[4][24];
    const char *argv[9];
    size_t lens[9];
    argv[0] = eval ? "EVAL" : "EVALSHA";
    argv[1] = eval ? SCRIPT : r->sha;
    lens[1] = eval ? sizeof SCRIPT - 1 : 40;
    argv[2] = "1";
    argv[3] = c->key;
    lens[3] = c->keylen;
    argv[4] = c->check ? "c" : "a";
    for (int i = 0; i < 4; i++) {
        snprintf(nums[i], sizeof nums[i], "%lld", (long long)c->args[i]);
        argv[5 + i] = nums[i];
    }
    for (int i = 0; i < 9; i++)
        if (i != 1 && i != 3) lens[i] = strlen(argv[i]);
    return redisAsyncCommandArgv(r->ac, on_reply, c, 9, argv, lens) == REDIS_OK ? 0 : -1;
}

static bool parse_reply(const redisReply *rep, lx_rate_redis_reply *out)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 5) return false;
    int64_t v[5];
    for (size_t i = 0; i < 5; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER) return false;
        v[i] = rep->element[i]->integer;
    }
    *out = (lx_rate_redis_reply){v[0], v[1], v[2], v[3], v[4]};
    return true;
}

static void complete(lx_rate_redis *r, call *c, const lx_rate_redis_reply *rep)
{
    lx_rate_redis_cb cb = c->cb;
    void *ud = c->ud;
    (void)r;
    free(c);
    cb(ud, rep);
}

static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    call *c = privdata;
    lx_rate_redis *r = c->r;
    redisReply *reply = reply_;
    bool was_head = first_call(r) == c;
    lx_list_remove(&c->link);
    if (reply == NULL) { /* the context is going away */
        r->errors++;
        if (r->ac == ac) {
            r->ac = NULL;
            went_down(r, ac->errstr[0] ? ac->errstr : "connection lost");
        }
        complete(r, c, NULL);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && !c->evaled && r->ac == ac && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        c->evaled = true; /* the script cache was flushed (or Redis restarted): send the script itself */
        if (send_call(r, c, true) == 0) {
            link_tail(r, c);
            if (was_head) rearm(r);
            return;
        }
    }
    lx_rate_redis_reply out;
    if (parse_reply(reply, &out)) {
        if (r->down_announced && r->ac == ac) { /* answering again, not just accepting connections */
            r->down_announced = false;
            r->backoff_ms = r->o.retry_min_ms;
            LX_WARN(NULL, "rate limits: Redis at %s is back; limits are shared again", r->where);
        }
        if (was_head) rearm(r);
        complete(r, c, &out);
        return;
    }
    r->errors++;
    if (!r->error_announced) {
        r->error_announced = true;
        LX_ERROR(NULL, "rate limits: Redis at %s answered the script with %s; deciding locally", r->where,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected reply");
    }
    if (was_head) rearm(r);
    complete(r, c, NULL);
}

int lx_rate_redis_call(lx_rate_redis *r, bool check, const char *user, int64_t rpm, int64_t tpm, int64_t dreq,
                       int64_t dtok, lx_rate_redis_cb cb, void *ud)
{
    if (r->closing || r->ac == NULL) return -1;
    if (r->state != ST_UP && !(r->state == ST_CONNECTING && !r->down_announced)) return -1;
    size_t plen = sizeof LX_RATE_REDIS_KEY_PREFIX - 1, ulen = strlen(user);
    call *c = lx_xmalloc(sizeof *c + plen + ulen + 1);
    *c = (call){.r = r, .cb = cb, .ud = ud, .check = check, .args = {rpm, tpm, dreq, dtok}, .keylen = plen + ulen};
    memcpy(c->key, LX_RATE_REDIS_KEY_PREFIX, plen);
    memcpy(c->key + plen, user, ulen + 1);
    if (send_call(r, c, false) != 0) {
        free(c);
        return -1;
    }
    link_tail(r, c);
    if (first_call(r) == c) rearm(r);
    return 0;
}

/* ---- connecting ---- */

static void on_setup(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    lx_rate_redis *r = ac->data;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        LX_ERROR(NULL, "rate limits: Redis at %s refused %s: %s", r->where, (const char *)privdata, reply->str);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    lx_rate_redis *r = ac->data;
    if (r->ac != ac) return;
    if (status != REDIS_OK) { /* hiredis frees the context when this returns */
        r->ac = NULL;
        went_down(r, ac->errstr);
        return;
    }
    r->state = ST_UP; /* "back" is said, and the backoff reset, at its first answer to the script */
    r->error_announced = false;
    rearm(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    lx_rate_redis *r = ac->data;
    if (r->ac != ac) return;
    r->ac = NULL;
    went_down(r, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void attach(lx_rate_redis *r, redisAsyncContext *ac)
{
    if (ac == NULL) {
        went_down(r, "cannot allocate a connection");
        return;
    }
    if (ac->err) {
        char why[160];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        went_down(r, why);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        ac->ev.cleanup = NULL; /* the adapter leaves ev.data unset when it fails */
        redisAsyncFree(ac);
        went_down(r, "cannot watch the socket");
        return;
    }
    ac->ev.cleanup = cleanup_hook;
    r->contexts++;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->state = ST_CONNECTING;
    if (r->db != 0) redisAsyncCommand(ac, on_setup, (void *)"SELECT", "SELECT %d", r->db);
    redisAsyncCommand(ac, on_setup, (void *)"SCRIPT LOAD", "SCRIPT LOAD %b", SCRIPT, sizeof SCRIPT - 1);
    rearm(r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_req *rr = (resolve_req *)req;
    lx_rate_redis *r = rr->r;
    r->resolving--;
    if (r->resolve == rr) r->resolve = NULL;
    char ip[64] = "";
    const struct addrinfo *pick = NULL; /* IPv4 first, as hiredis itself tries */
    for (const struct addrinfo *a = status == 0 ? res : NULL; a && !pick; a = a->ai_next)
        if (a->ai_family == AF_INET) pick = a;
    for (const struct addrinfo *a = status == 0 ? res : NULL; a && !pick; a = a->ai_next)
        if (a->ai_family == AF_INET6) pick = a;
    if (pick && pick->ai_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)pick->ai_addr, ip, sizeof ip);
    else if (pick)
        uv_ip6_name((const struct sockaddr_in6 *)pick->ai_addr, ip, sizeof ip);
    uv_freeaddrinfo(res);
    bool current = rr->gen == r->gen && r->state == ST_RESOLVING && !r->closing;
    free(rr);
    if (r->closing) {
        try_finish(r);
        return;
    }
    if (!current) return;
    if (ip[0] == '\0') {
        char why[96];
        snprintf(why, sizeof why, "cannot resolve %s: %s", r->host, status ? uv_strerror(status) : "no address");
        went_down(r, why);
        return;
    }
    attach(r, redisAsyncConnect(ip, r->port));
}

static bool is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void start_connect(lx_rate_redis *r)
{
    r->gen++;
    r->connect_deadline = now_ms() + (uint64_t)r->o.connect_timeout_ms;
    if (r->socket_path) {
        attach(r, redisAsyncConnectUnix(r->socket_path));
        return;
    }
    if (is_numeric(r->host)) {
        attach(r, redisAsyncConnect(r->host, r->port));
        return;
    }
    resolve_req *rr = lx_xcalloc(1, sizeof *rr);
    rr->r = r;
    rr->gen = r->gen;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (uv_getaddrinfo(r->loop, &rr->req, on_resolved, r->host, NULL, &hints) != 0) {
        free(rr);
        went_down(r, "cannot start resolving its name");
        return;
    }
    r->resolving++;
    r->resolve = rr;
    r->state = ST_RESOLVING;
    rearm(r);
}

lx_rate_redis *lx_rate_redis_new(uv_loop_t *loop, const char *host, int port, int db, const char *socket_path,
                                 const lx_rate_redis_opts *opts)
{
    lx_rate_redis *r = lx_xcalloc(1, sizeof *r);
    r->loop = loop;
    lx_list_init(&r->calls);
    r->o = opts ? *opts : (lx_rate_redis_opts){100, 1000, 100, 2000};
    r->host = host ? lx_xstrdup(host) : NULL;
    r->socket_path = socket_path ? lx_xstrdup(socket_path) : NULL;
    r->port = port;
    r->db = db;
    if (r->socket_path)
        snprintf(r->where, sizeof r->where, "unix:%s", r->socket_path);
    else
        snprintf(r->where, sizeof r->where, strchr(r->host ? r->host : "", ':') ? "[%s]:%d" : "%s:%d",
                 r->host ? r->host : "127.0.0.1", port);
    if (r->host == NULL && r->socket_path == NULL) r->host = lx_xstrdup("127.0.0.1");
    unsigned char md[20];
    unsigned int n = 0;
    EVP_Digest(SCRIPT, sizeof SCRIPT - 1, md, &n, EVP_sha1(), NULL);
    for (int i = 0; i < 20; i++)
        snprintf(r->sha + 2 * i, 3, "%02x", md[i]);
    r->backoff_ms = r->o.retry_min_ms;
    uv_timer_init(loop, &r->timer);
    uv_timer_init(loop, &r->retry);
    r->timer.data = r->retry.data = r;
    start_connect(r);
    return r;
}

bool lx_rate_redis_up(const lx_rate_redis *r) { return r->state == ST_UP && r->ac != NULL; }
uint64_t lx_rate_redis_down_events(const lx_rate_redis *r) { return r->down_events; }
uint64_t lx_rate_redis_errors(const lx_rate_redis *r) { return r->errors; }

void lx_rate_redis_close(lx_rate_redis *r)
{
    if (r->closing) return;
    r->closing = true;
    uv_timer_stop(&r->timer);
    uv_timer_stop(&r->retry);
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->state = ST_DOWN;
    if (r->resolve) uv_cancel((uv_req_t *)&r->resolve->req); /* fails harmlessly once it runs */
    if (ac) redisAsyncFree(ac);
    try_finish(r);
}
