/*
 * RateLimiter: per-user requests per minute (RPM) and tokens per minute (TPM), the seed's
 * check(user_id, requests_per_minute = 30, tokens_per_minute = 50000), shared by every gateway on one
 * Redis (rate_limits.store: redis) or local to this process (memory).
 *
 * The limits. Each user has two buckets, one per kind, of `limit` units that refill continuously at
 * `limit` per minute (GCRA / a leaky bucket as a meter, the semantics of OpenAI's x-ratelimit-*
 * headers: "remaining 4999 of 5000, reset in 12ms"):
 *  - a request takes 1 from the requests bucket and its token reservation from the tokens bucket;
 *    it is admitted only when both have room, and then both are charged together (never one alone);
 *  - so a burst gets exactly `limit` requests through at once, and after that exactly `limit` per
 *    minute at a steady rate; no interval of d ms admits more than limit + limit × d / 60000 (a fixed
 *    window admits 2 × limit within a moment around its boundary; this cannot). The price of the
 *    burst: the first minute after an idle one may see up to 2 × limit − 1 (the burst, then the
 *    refill), as with OpenAI's own limits; every later minute sees exactly `limit`;
 *  - integers only: a bucket's level counts units of 1/60000 of a request (or token) and drains
 *    `limit` units per millisecond, so one request weighs 60000 and the bucket empties in exactly a
 *    minute, for every limit, with no rounding (nginx limit_req keeps milli-requests, which round for
 *    limits that do not divide 60). A limit above LX_RATE_MAX_LIMIT is clamped to it; 0 is unlimited.
 *  - tokens use the same bucket as requests rather than a sliding window: two integers per user, the
 *    same atomic script in Redis, and a reconciliation that is one addition. A sliding-window log
 *    would keep an entry per request; a sliding-window counter is only approximate.
 *
 * Tokens: admission reserves an estimate (limits/tokens.h: the prompt estimate plus max_tokens or
 * rate_limits.default_max_tokens, times n). When the answer ends, lx_rate_finish replaces the
 * reservation with the real usage: it adds (real − reserved), which may be negative; as the drain is
 * linear, the level is then exactly what it would have been had the real count been charged at
 * admission. A request whose reservation alone exceeds the user's TPM is refused at once
 * (LX_RATE_TOO_LARGE; no wait could help).
 *
 * What a request costs, by how it ended (decided here, so stats, ledger and limiter agree):
 *  - an answer with usage: 1 request + the real prompt + completion tokens;
 *  - it reached a backend but no usage came back (backend error, timeout, client gone mid-answer):
 *    1 request + the prompt estimate (the backend did the prefill; a completion it may have begun
 *    is not counted unless the caller passes its own count to lx_rate_finish);
 *  - it never reached a backend (refused by the queue, timed out waiting, no backend, client gone
 *    before dispatch): nothing — lx_rate_cancel refunds the request and every reserved token.
 *
 * Identity and limits: a user is a NUL-terminated name (limits/auth.h); names are distinguished on
 * their first LX_RATE_USER_MAX - 1 bytes. Limits come from the limiter's current config:
 * rate_limits.users.NAME, else rate_limits.default (lx_rate_limits_for). lx_rate_limiter_reconfigure
 * swaps in a new config: new limits apply from the next check; what every user has used is kept (a
 * level is in absolute units, independent of the limit). A limit changed while a bucket drains is
 * applied to the whole time since that bucket's last update.
 *
 * Stores. memory: a hash table of the users charged recently. A user's state is dropped once both
 * buckets have drained to zero (then it is the same as no state), at most a minute after its last
 * charge; at LX_RATE_MAX_USERS users the least recently charged one is dropped. redis: every check
 * and every reconciliation is one EVALSHA of one Lua script (rate_redis.c) that drains, checks and
 * charges a user's hash atomically with Redis's own clock (TIME, so the instances' clocks do not
 * matter), and sets a TTL of the time to drain, so Redis holds only active users. hiredis async on
 * this loop (its libuv adapter): nothing blocks. Each instance also charges its own memory store with
 * what Redis admitted ("shadow"), so a fallback starts from this instance's own recent usage.
 * Fallback: when Redis cannot be reached, a call fails, or no answer comes within 100 ms, the
 * connection is dropped, the check is decided by the memory store, the event is logged once (and
 * once when Redis is back) and counted (lx_rate_limiter_stats: fallbacks, redis_down_events); Lexora
 * reconnects in the background (100 ms doubling to 2 s) and uses Redis again as soon as it answers.
 * While on local limits, each instance enforces the limit alone. A reconciliation that Redis cannot
 * take is dropped (its reservation stands until it drains; counted in adjust_dropped).
 *
 * Wait mode (rate_limits.mode: wait): a request over its limit is held here, not answered 429, for up
 * to ask.max_wait_ms (its deadline), and checked again when the limit should allow it; its callback
 * runs once it is admitted, or with LX_RATE_LIMITED as soon as the wait could not end within the
 * deadline. In reject mode max_wait_ms is ignored.
 *
 * Thread: the loop thread only. Lifetimes: the caller owns each lx_rate_req (embed it in the
 * request's state); a req must be finished or cancelled before it is freed. Close the limiter after
 * every req ended.
 *
 * How the proxy uses it, per request:
 *   1 user: lx_auth_identify (401 on failure);
 *   2 lx_tokens_estimate(&f.tokens, &est) (counted by lx_body_scan) and tokens = lx_tokens_reserve(&est, f.max_tokens,
 *     cfg->rate_limits.default_max_tokens, endpoint != embeddings);
 *   3 lx_rate_check(rl, &p->rate, &(lx_rate_ask){user, est.prompt_tokens, tokens, deadline_ms}, cb, p)
 *     — cb may run before lx_rate_check returns (memory store) or later (Redis, wait mode); write the
 *     code after the check in cb, and nothing after the call;
 *   4 in cb: p->rate.result.verdict == LX_RATE_ALLOWED → go on (queue, forward); otherwise answer the
 *     429, which api/ratelimit.h renders (lx_ratelimit_err, lx_ratelimit_body, lx_ratelimit_headers_fill);
 *   5 every answer, refused or not, carries the x-ratelimit-* headers of p->rate.result (api/ratelimit.h);
 *   6 it was sent to a backend and ended (well, badly, or the client left mid-answer):
 *     lx_rate_finish(&p->rate, usage.prompt_tokens + usage.completion_tokens, or -1 when unknown);
 *     it never reached a backend (queue full or timed out, no backend, the client left while it
 *     waited): lx_rate_cancel(&p->rate). Both are no-ops on a req that holds nothing, and both
 *     cancel a check still in flight or waiting, so each end path calls one of them unconditionally.
 */
#ifndef LX_RATE_LIMITER_H
#define LX_RATE_LIMITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "utils/list.h"

#define LX_RATE_USER_MAX  128
#define LX_RATE_MAX_LIMIT 1000000000L /* per minute; larger limits are clamped to this */
#define LX_RATE_MAX_USERS 131072      /* users the memory store tracks at once */

typedef struct lx_rate_limiter lx_rate_limiter;
typedef struct lx_rate_req lx_rate_req;

typedef enum {
    LX_RATE_ALLOWED = 0, /* admitted; its reservation is held until finish or cancel */
    LX_RATE_LIMITED,     /* over a limit now; retry_after_ms says when it could pass */
    LX_RATE_TOO_LARGE,   /* the reservation alone exceeds the TPM limit: no wait can help */
} lx_rate_verdict;

typedef enum { LX_RATE_REQUESTS = 0, LX_RATE_TOKENS } lx_rate_kind;

typedef struct {
    long requests_per_minute; /* 0: unlimited */
    long tokens_per_minute;   /* 0: unlimited */
} lx_rate_limits;

/* One kind's state (what the x-ratelimit-* headers show). */
typedef struct {
    long limit;       /* 0: unlimited (no headers for this kind) */
    long remaining;   /* whole units left now (after this request's charge, if it was admitted) */
    int64_t reset_ms; /* until the bucket is full again */
} lx_rate_window;

typedef struct {
    lx_rate_verdict verdict;
    lx_rate_kind kind;      /* LIMITED / TOO_LARGE: which limit refused (the one with the longer wait) */
    long limit;             /* of that kind */
    long used;              /* of that kind, in the last minute's bucket, before this request */
    long requested;         /* 1, or the token reservation */
    int64_t retry_after_ms; /* LIMITED: when it could pass if nothing else is admitted first */
    lx_rate_window requests, tokens;
    bool shared;       /* decided by Redis (false: by this instance alone) */
    int64_t waited_ms; /* from the check to the decision: the time held in wait mode (plus a Redis round trip) */
} lx_rate_result;

typedef void (*lx_rate_cb)(lx_rate_req *req, void *ud);

/* What a request asks for. */
typedef struct {
    const char *user;    /* NUL-terminated; copied */
    long prompt_tokens;  /* the prompt part of tokens (what a request that got no usage is charged) */
    long tokens;         /* the reservation: prompt + completion cap (lx_tokens_reserve) */
    int64_t max_wait_ms; /* wait mode: the longest it may be held (its remaining deadline); 0: never */
} lx_rate_ask;

/* The caller's per-request handle. result is valid from the callback on; priv is the limiter's. */
struct lx_rate_req {
    lx_rate_result result;
    struct {
        lx_rate_limiter *rl;
        lx_rate_cb cb;
        void *ud;
        struct rate_op *op;  /* a Redis check in flight */
        lx_list wait;        /* WAITING: in the limiter's list by wake time */
        int64_t rpm, tpm;    /* the limits it was checked against */
        long tokens, prompt; /* reserved; its prompt part */
        int64_t max_wait_ms;
        int64_t started_ms, wake_ms;
        int state;     /* idle, pending, waiting, admitted */
        bool charged;  /* admitted with a limit: finish/cancel reconcile */
        bool in_redis; /* admitted by Redis (reconcile there too) */
        char user[LX_RATE_USER_MAX];
    } priv;
};

/*
 * A limiter for config c (it takes a reference): rate_limits.* and, with store: redis, a connection
 * to rate_limits.redis, started at once (checks go to Redis from the first one; if it is not there
 * yet they wait at most 100 ms, then fall back). Never fails (out of memory aborts).
 */
lx_rate_limiter *lx_rate_limiter_new(uv_loop_t *loop, lx_config *c);

/* Takes a reference to c and drops the old config's. Usage is kept. A changed store or Redis
 * address reconnects (checks in flight on the old connection fall back to local decisions). */
void lx_rate_limiter_reconfigure(lx_rate_limiter *rl, lx_config *c);

/* Frees the limiter once its handles are closed (run the loop). Every req must have ended. */
void lx_rate_limiter_close(lx_rate_limiter *rl);

/* For tests and benchmarks: the clock the memory store and wait mode use (default: the loop's time, uv_now). */
void lx_rate_limiter_set_clock(lx_rate_limiter *rl, int64_t (*now_ms)(void *ud), void *ud);

/* Wait mode: checks again every waiting request whose time has come (by the limiter's clock). The
 * limiter's timer does this; tests with a fake clock call it after moving the clock. */
void lx_rate_limiter_run_waiters(lx_rate_limiter *rl);

/* rate_limits.users.NAME, else rate_limits.default (a linear scan of the users). */
lx_rate_limits lx_rate_limits_for(const lx_config *c, const char *user);

/*
 * Check and reserve: req must be zeroed before its first check (calloc'd request state is); after
 * that it may be checked again once refused, finished or cancelled (a req still held is cancelled).
 * cb runs exactly once per check — maybe before this returns — unless the req is finished or
 * cancelled first. After a refusal the req holds nothing and may be checked again.
 */
void lx_rate_check(lx_rate_limiter *rl, lx_rate_req *req, const lx_rate_ask *ask, lx_rate_cb cb, void *ud);

/* The answer ended: used_tokens is its usage (prompt + completion), or -1 when unknown. Replaces the
 * reservation with it. No-op unless admitted; on a req still checking or waiting, it is a cancel. */
void lx_rate_finish(lx_rate_req *req, long used_tokens);

/* Never reached a backend (or abandoned while checking or waiting): gives back everything reserved. */
void lx_rate_cancel(lx_rate_req *req);

/* The user name the req was last checked for (NUL-terminated, as truncated to LX_RATE_USER_MAX - 1). */
const char *lx_rate_req_user(const lx_rate_req *req);

/*
 * What user has used of its limits now, without charging anything: the x-ratelimit-* view of both
 * buckets (limit 0: unlimited) and *used_requests / *used_tokens (the bucket levels, rounded up). Read
 * from this instance's memory store (with store: redis, what this instance admitted: its shadow), so
 * with several gateways on one Redis it is this instance's share. For GET /v1/usage.
 */
void lx_rate_peek(const lx_rate_limiter *rl, const char *user, lx_rate_window *requests, lx_rate_window *tokens,
                  long *used_requests, long *used_tokens);

/* ---- metrics ---- */

typedef struct {
    bool redis_configured; /* store: redis */
    bool redis_up;         /* connected and answering */
    uint64_t checks, allowed, limited, too_large;
    uint64_t waited;            /* admitted after waiting (wait mode) */
    uint64_t fallbacks;         /* checks decided locally because Redis could not be used */
    uint64_t redis_down_events; /* times Redis became unusable (each logged once) */
    uint64_t redis_errors;      /* calls that failed: timeouts, error replies, lost connections */
    uint64_t adjust_dropped;    /* reconciliations Redis never got */
    size_t users;               /* users tracked by the memory store */
    size_t waiting;             /* requests held in wait mode now */
} lx_rate_stats;

void lx_rate_limiter_stats(const lx_rate_limiter *rl, lx_rate_stats *out);
/* stats.fallbacks alone (for the metrics engineer's counter). */
uint64_t lx_rate_limiter_fallbacks(const lx_rate_limiter *rl);

#endif
