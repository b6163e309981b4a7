/*
 * The rate limiter's Redis store: one hiredis async connection on the loop (its libuv adapter), one
 * Lua script that drains, checks and charges a user's two buckets atomically. Used only by
 * rate_limiter.c, which owns the policy (fallback to the memory store); this file owns the
 * connection: connecting without blocking (a host name is resolved with uv_getaddrinfo first),
 * SELECT, SCRIPT LOAD, EVALSHA with EVAL on NOSCRIPT, a timeout per call, the up/down state, logging
 * each change once, and reconnecting with backoff.
 *
 * The script (rate_redis.c, SCRIPT) keeps, per user, a hash "lexora:rl:<user>" with r, t (the two
 * levels, in units of 1/60000, see rate_limiter.h) and at (Redis's TIME in ms at the last update),
 * and sets its TTL to the time both levels take to drain (+1 s); a hash that drained is deleted.
 * A clock that goes back drains nothing until it catches up.
 *
 * Loop thread only.
 */
#ifndef LX_RATE_REDIS_H
#define LX_RATE_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define LX_RATE_REDIS_KEY_PREFIX "lexora:rl:"
#define LX_RATE_UNIT             60000 /* a bucket level per request or token: the milliseconds of a minute */
#define LX_RATE_MAX_LEVEL        1000000000000000LL /* 1e15: exact in a double, so exact in Lua too */

typedef struct lx_rate_redis lx_rate_redis;

/* The script's answer: allowed (1/0), the requests and tokens levels after the call, and when refused
 * the wait each kind needs (ms). */
typedef struct {
    int64_t allowed, r_level, t_level, r_wait, t_wait;
} lx_rate_redis_reply;

/* reply is NULL when the call failed (not connected any more, timed out, an error reply). */
typedef void (*lx_rate_redis_cb)(void *ud, const lx_rate_redis_reply *reply);

typedef struct {
    int call_timeout_ms;    /* 100 */
    int connect_timeout_ms; /* 1000 */
    int retry_min_ms;       /* 100: first reconnect delay, doubling */
    int retry_max_ms;       /* 2000 */
} lx_rate_redis_opts;

/* host NULL with socket_path for a unix socket. Starts connecting. opts NULL: defaults. */
lx_rate_redis *lx_rate_redis_new(uv_loop_t *loop, const char *host, int port, int db, const char *socket_path,
                                 const lx_rate_redis_opts *opts);

/*
 * check: drain, then charge (dreq requests, dtok tokens) only if both fit; else: drain, then add the
 * (signed) amounts, clamped to [0, LX_RATE_MAX_LEVEL]. rpm/tpm 0 is unlimited. Returns 0 when the
 * call was sent: cb then runs exactly once, later (never inside this call). Returns -1 when Redis is
 * not usable now (down, reconnecting, closing): decide locally.
 */
int lx_rate_redis_call(lx_rate_redis *r, bool check, const char *user, int64_t rpm, int64_t tpm, int64_t dreq,
                       int64_t dtok, lx_rate_redis_cb cb, void *ud);

bool lx_rate_redis_up(const lx_rate_redis *r);
uint64_t lx_rate_redis_down_events(const lx_rate_redis *r);
uint64_t lx_rate_redis_errors(const lx_rate_redis *r);

/* Calls still pending fail (cb with NULL), now or as soon as hiredis lets go of them; the object frees
 * itself when its handles are closed. */
void lx_rate_redis_close(lx_rate_redis *r);

#endif
