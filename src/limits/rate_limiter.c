/*
 * RateLimiter: per-user RPM and TPM buckets, a memory store, the Redis store behind the same decision
 * code, and wait mode. It decides and gives the numbers (lx_rate_result); the 429 and the x-ratelimit-*
 * headers are rendered in api/ratelimit.c. See rate_limiter.h for the model.
 *
 * Invariants:
 * - A bucket level is an int64 in units of 1/LX_RATE_UNIT; it drains `limit` units per millisecond
 *   and is clamped to [0, LX_RATE_MAX_LEVEL]. Limits are clamped to [0, LX_RATE_MAX_LIMIT], token
 *   amounts to LX_RATE_MAX_LIMIT + 1, so no product overflows (1e9 × 60000 < 2^63, and < 2^53 for Lua).
 * - The memory store's arithmetic here and the Lua script in rate_redis.c are the same algorithm;
 *   a decision is turned into a result by one function (decided) whichever store made it.
 * - A memory entry that drained to zero is removed (absence means zero). Entries are in a list
 *   ordered by last charge; the sweep pops expired ones from its head, a few per check, and the
 *   head is evicted when LX_RATE_MAX_USERS are tracked.
 * - Per req: IDLE → (PENDING: a Redis check in flight) → ADMITTED (charged, until finish/cancel), or
 *   → WAITING (wait mode, in rl's wake-ordered list) → ... The callback runs once per check. A req
 *   cancelled while PENDING hands its details to its op, which refunds Redis if the answer was yes.
 * - Callbacks into the caller are the last thing a function does with the req (the caller may free it).
 * - The limiter is freed only when closing, its timer closed and no Redis op in flight.
 */
#include "limits/rate_limiter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits/rate_redis.h"
#include "utils/common.h"
#include "utils/log.h"
#include "utils/map.h"

#define U               LX_RATE_UNIT
#define SWEEP_PER_CHECK 4

enum { Q_IDLE = 0, Q_PENDING, Q_WAITING, Q_ADMITTED };

/* ---- the memory store: users by name (lx_map: the names come from clients, its hash is keyed) ---- */

typedef struct entry {
    lx_map_node node; /* in the store, by name */
    lx_list lru;      /* in the store's list by last charge, oldest first */
    int64_t r, t, at; /* levels, and when they were last drained (limiter clock, ms) */
    int64_t idle_at;  /* both levels are zero by then (with the limits of the last charge) */
    char name[];
} entry;

typedef struct {
    lx_map users;
    lx_list lru;
} mem_store;

static void mem_init(mem_store *m)
{
    lx_map_init(&m->users);
    lx_list_init(&m->lru);
}

static entry *oldest(const mem_store *m)
{
    lx_list *n = lx_list_first(&m->lru);
    return n ? LX_CONTAINER_OF(n, entry, lru) : NULL;
}

static void mem_remove(mem_store *m, entry *e)
{
    lx_map_remove(&m->users, &e->node);
    lx_list_remove(&e->lru);
    free(e);
}

static entry *mem_get(mem_store *m, const char *name, bool create, int64_t now)
{
    size_t len = strlen(name);
    lx_map_node *found = lx_map_find(&m->users, name, len);
    if (found || !create) return found ? LX_MAP_ENTRY(found, entry, node) : NULL;
    if (lx_map_count(&m->users) >= LX_RATE_MAX_USERS) mem_remove(m, oldest(m)); /* the least recently charged */
    entry *e = lx_xmalloc(sizeof *e + len + 1);
    *e = (entry){.at = now, .idle_at = now};
    memcpy(e->name, name, len + 1);
    lx_map_add(&m->users, &e->node, e->name, len);
    lx_list_append(&m->lru, &e->lru);
    return e;
}

static void mem_free(mem_store *m)
{
    lx_list *n, *tmp;
    LX_LIST_EACH(&m->lru, n, tmp) { free(LX_CONTAINER_OF(n, entry, lru)); }
    lx_map_free(&m->users);
}

/* ---- bucket arithmetic (the Lua script in rate_redis.c is the same) ---- */

static int64_t ceil_div(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

static int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static int64_t drained(int64_t level, int64_t elapsed, int64_t rate)
{
    if (rate <= 0) return 0;
    if (elapsed > level / rate) return 0;
    return level - elapsed * rate;
}

static void drain(entry *e, int64_t now, int64_t rpm, int64_t tpm)
{
    int64_t el = now - e->at;
    if (el < 0)
        el = 0; /* a clock that went back drains nothing until it catches up */
    else
        e->at = now;
    e->r = drained(e->r, el, rpm);
    e->t = drained(e->t, el, tpm);
}

/* After a charge: drop the entry if it holds nothing, else note when it will and move it to the end. */
static void settle_entry(mem_store *m, entry *e, int64_t rpm, int64_t tpm)
{
    if (rpm <= 0) e->r = 0;
    if (tpm <= 0) e->t = 0;
    if (e->r == 0 && e->t == 0) {
        mem_remove(m, e);
        return;
    }
    int64_t ttl = LX_MAX(rpm > 0 ? ceil_div(e->r, rpm) : 0, tpm > 0 ? ceil_div(e->t, tpm) : 0);
    e->idle_at = e->at + ttl;
    lx_list_remove(&e->lru);
    lx_list_append(&m->lru, &e->lru);
}

/* Adds signed amounts (requests, tokens) after draining; creates the entry only for a charge. */
static void mem_adjust(mem_store *m, const char *user, int64_t rpm, int64_t tpm, int64_t dreq, int64_t dtok,
                       int64_t now)
{
    entry *e = mem_get(m, user, (dreq > 0 && rpm > 0) || (dtok > 0 && tpm > 0), now);
    if (e == NULL) return;
    drain(e, now, rpm, tpm);
    e->r = clamp(e->r + dreq * U, 0, LX_RATE_MAX_LEVEL);
    e->t = clamp(e->t + dtok * U, 0, LX_RATE_MAX_LEVEL);
    settle_entry(m, e, rpm, tpm);
}

/* ---- the limiter ---- */

typedef struct rate_op {
    lx_rate_limiter *rl;
    lx_rate_req *req; /* NULL once the req was cancelled; then the fields below say what to refund */
    int64_t rpm, tpm, tokens;
    char user[LX_RATE_USER_MAX];
} rate_op;

struct lx_rate_limiter {
    uv_loop_t *loop;
    lx_config *cfg;
    mem_store mem;
    lx_rate_redis *redis; /* NULL with store: memory */
    int64_t (*clock)(void *ud);
    void *clock_ud;
    uv_timer_t wait_timer;
    lx_list waiters; /* WAITING reqs by wake time, earliest first (equal times in arrival order) */
    size_t waiting;
    int ops; /* Redis calls in flight */
    bool closing, timer_closed;
    uint64_t old_down_events, old_errors; /* of Redis connections replaced by a reconfigure */
    lx_rate_stats st;
};

/* The loop's time, read once per loop iteration: the buckets count milliseconds, and the wait timer runs on
 * the same clock. A request is checked and finished from loop callbacks, never between iterations. */
static int64_t default_clock(void *ud) { return (int64_t)uv_now(ud); }

static int64_t now_ms(const lx_rate_limiter *rl) { return rl->clock(rl->clock_ud); }

static void maybe_free(lx_rate_limiter *rl)
{
    if (!rl->closing || !rl->timer_closed || rl->ops > 0) return;
    mem_free(&rl->mem);
    lx_config_unref(rl->cfg);
    free(rl);
}

lx_rate_limits lx_rate_limits_for(const lx_config *c, const char *user)
{
    for (size_t i = 0; i < c->rate_limits.n_users; i++)
        if (strcmp(c->rate_limits.users[i].name, user) == 0)
            return (lx_rate_limits){c->rate_limits.users[i].requests_per_minute,
                                    c->rate_limits.users[i].tokens_per_minute};
    return (lx_rate_limits){c->rate_limits.default_limit.requests_per_minute,
                            c->rate_limits.default_limit.tokens_per_minute};
}

static void limits_of(const lx_rate_limiter *rl, const char *user, int64_t *rpm, int64_t *tpm)
{
    lx_rate_limits l = lx_rate_limits_for(rl->cfg, user);
    *rpm = clamp(l.requests_per_minute, 0, LX_RATE_MAX_LIMIT);
    *tpm = clamp(l.tokens_per_minute, 0, LX_RATE_MAX_LIMIT);
}

static lx_rate_window window(int64_t limit, int64_t level)
{
    if (limit <= 0) return (lx_rate_window){0, 0, 0};
    int64_t left = limit * U - level;
    return (lx_rate_window){(long)limit, left <= 0 ? 0 : (long)(left / U), ceil_div(level, limit)};
}

void lx_rate_peek(const lx_rate_limiter *rl, const char *user, lx_rate_window *requests, lx_rate_window *tokens,
                  long *used_requests, long *used_tokens)
{
    int64_t rpm, tpm, r = 0, t = 0;
    limits_of(rl, user, &rpm, &tpm);
    lx_map_node *found = lx_map_find(&rl->mem.users, user, strlen(user));
    if (found) {
        const entry *e = LX_MAP_ENTRY(found, entry, node);
        int64_t el = LX_MAX(now_ms(rl) - e->at, 0);
        r = rpm > 0 ? drained(e->r, el, rpm) : 0;
        t = tpm > 0 ? drained(e->t, el, tpm) : 0;
    }
    *requests = window(rpm, r);
    *tokens = window(tpm, t);
    *used_requests = (long)ceil_div(r, U);
    *used_tokens = (long)ceil_div(t, U);
}

/* ---- the wait list ---- */

static void on_wait_timer(uv_timer_t *t) { lx_rate_limiter_run_waiters(t->data); }

static lx_rate_req *first_waiter(const lx_rate_limiter *rl)
{
    lx_list *n = lx_list_first(&rl->waiters);
    return n ? LX_CONTAINER_OF(n, lx_rate_req, priv.wait) : NULL;
}

static void arm_wait_timer(lx_rate_limiter *rl)
{
    if (rl->closing) return;
    lx_rate_req *first = first_waiter(rl);
    if (first == NULL) {
        uv_timer_stop(&rl->wait_timer);
        return;
    }
    int64_t d = first->priv.wake_ms - now_ms(rl);
    uv_timer_start(&rl->wait_timer, on_wait_timer, d > 0 ? (uint64_t)d : 0, 0);
}

/* After the last waiter that wakes no later than q (searched from the end: most waits are the latest). */
static void wait_insert(lx_rate_limiter *rl, lx_rate_req *q)
{
    lx_list *at = &rl->waiters;
    for (lx_list *n = lx_list_last(&rl->waiters); n; n = lx_list_prev(&rl->waiters, n)) {
        if (LX_CONTAINER_OF(n, lx_rate_req, priv.wait)->priv.wake_ms <= q->priv.wake_ms) {
            at = n;
            break;
        }
    }
    lx_list_insert_after(at, &q->priv.wait);
    rl->waiting++;
    q->priv.state = Q_WAITING;
    if (first_waiter(rl) == q) arm_wait_timer(rl);
}

static void wait_remove(lx_rate_limiter *rl, lx_rate_req *q)
{
    LX_ASSERT(q->priv.state == Q_WAITING && rl->waiting > 0);
    bool was_head = first_waiter(rl) == q;
    lx_list_remove(&q->priv.wait);
    rl->waiting--;
    q->priv.state = Q_IDLE;
    if (was_head) arm_wait_timer(rl);
}

/* ---- deciding ---- */

static void deliver(lx_rate_req *q)
{
    lx_rate_cb cb = q->priv.cb;
    void *ud = q->priv.ud;
    cb(q, ud); /* the last use of q */
}

/* A store's answer, levels after the charge (admitted) or before it (refused), becomes the result. */
static void decided(lx_rate_req *q, bool allowed, int64_t rlevel, int64_t tlevel, int64_t rwait, int64_t twait,
                    bool shared)
{
    lx_rate_limiter *rl = q->priv.rl;
    lx_rate_result *res = &q->result;
    int64_t now = now_ms(rl);
    res->requests = window(q->priv.rpm, rlevel);
    res->tokens = window(q->priv.tpm, tlevel);
    res->shared = shared;
    res->waited_ms = LX_MAX(now - q->priv.started_ms, 0);
    if (allowed) {
        res->verdict = LX_RATE_ALLOWED;
        res->retry_after_ms = 0;
        q->priv.state = Q_ADMITTED;
        q->priv.charged = true;
        q->priv.in_redis = shared;
        rl->st.allowed++;
        if (q->priv.wake_ms != 0) rl->st.waited++; /* it was held at least once */
        deliver(q);
        return;
    }
    bool tokens = twait > rwait;
    res->verdict = LX_RATE_LIMITED;
    res->kind = tokens ? LX_RATE_TOKENS : LX_RATE_REQUESTS;
    res->limit = (long)(tokens ? q->priv.tpm : q->priv.rpm);
    res->used = (long)ceil_div(tokens ? tlevel : rlevel, U);
    res->requested = tokens ? q->priv.tokens : 1;
    res->retry_after_ms = LX_MAX(LX_MAX(rwait, twait), 1);
    q->priv.state = Q_IDLE;
    if (q->priv.max_wait_ms > 0 && now + res->retry_after_ms <= q->priv.started_ms + q->priv.max_wait_ms) {
        q->priv.wake_ms = now + res->retry_after_ms;
        wait_insert(rl, q);
        return;
    }
    rl->st.limited++;
    deliver(q);
}

/* Drops a few entries whose time to drain has passed. idle_at was reckoned with the limits of the last
 * charge; a reload may have lowered them since, so each is drained with today's limits first and kept
 * (and moved to the end) if it still holds something. */
static void sweep(lx_rate_limiter *rl, int64_t now)
{
    entry *e;
    for (int budget = SWEEP_PER_CHECK; budget > 0 && (e = oldest(&rl->mem)) && e->idle_at <= now; budget--) {
        int64_t rpm, tpm;
        limits_of(rl, e->name, &rpm, &tpm);
        drain(e, now, rpm, tpm);
        settle_entry(&rl->mem, e, rpm, tpm);
    }
}

static void decide_local(lx_rate_req *q)
{
    lx_rate_limiter *rl = q->priv.rl;
    int64_t now = now_ms(rl), rpm = q->priv.rpm, tpm = q->priv.tpm, cost = q->priv.tokens * U;
    sweep(rl, now);
    entry *e = mem_get(&rl->mem, q->priv.user, false, now);
    int64_t r = 0, t = 0;
    if (e) {
        drain(e, now, rpm, tpm);
        r = e->r;
        t = e->t;
    }
    int64_t rwait = rpm > 0 && r + U > rpm * U ? ceil_div(r + U - rpm * U, rpm) : 0;
    int64_t twait = tpm > 0 && t + cost > tpm * U ? ceil_div(t + cost - tpm * U, tpm) : 0;
    bool allowed = rwait == 0 && twait == 0;
    if (allowed) {
        if (e == NULL) e = mem_get(&rl->mem, q->priv.user, true, now);
        e->r = rpm > 0 ? clamp(r + U, 0, LX_RATE_MAX_LEVEL) : 0;
        e->t = tpm > 0 ? clamp(t + cost, 0, LX_RATE_MAX_LEVEL) : 0;
        r = e->r;
        t = e->t;
        settle_entry(&rl->mem, e, rpm, tpm);
    }
    decided(q, allowed, r, t, rwait, twait, false);
}

static void on_redis_adjust(void *ud, const lx_rate_redis_reply *rep)
{
    lx_rate_limiter *rl = ud;
    rl->ops--;
    if (rep == NULL) rl->st.adjust_dropped++;
    maybe_free(rl);
}

/* Sends a reconciliation to Redis (after the memory store took it too). */
static void redis_adjust(lx_rate_limiter *rl, const char *user, int64_t rpm, int64_t tpm, int64_t dreq, int64_t dtok)
{
    if (rl->redis && lx_rate_redis_call(rl->redis, false, user, rpm, tpm, dreq, dtok, on_redis_adjust, rl) == 0)
        rl->ops++;
    else
        rl->st.adjust_dropped++;
}

static void on_redis_check(void *ud, const lx_rate_redis_reply *rep)
{
    rate_op *op = ud;
    lx_rate_limiter *rl = op->rl;
    lx_rate_req *q = op->req;
    rl->ops--;
    if (q == NULL) { /* cancelled while Redis was deciding: give back what it took */
        if (rep && rep->allowed) redis_adjust(rl, op->user, op->rpm, op->tpm, -1, -op->tokens);
        free(op);
        maybe_free(rl);
        return;
    }
    free(op);
    q->priv.op = NULL;
    q->priv.state = Q_IDLE;
    if (rep == NULL) {
        rl->st.fallbacks++;
        decide_local(q);
    } else {
        if (rep->allowed) /* the shadow: this instance's own share, for a fallback to start from */
            mem_adjust(&rl->mem, q->priv.user, q->priv.rpm, q->priv.tpm, 1, q->priv.tokens, now_ms(rl));
        decided(q, rep->allowed != 0, rep->r_level, rep->t_level, rep->r_wait, rep->t_wait, true);
    }
    maybe_free(rl);
}

static void attempt(lx_rate_req *q)
{
    lx_rate_limiter *rl = q->priv.rl;
    if (rl->redis) {
        rate_op *op = lx_xmalloc(sizeof *op);
        op->rl = rl;
        op->req = q;
        if (lx_rate_redis_call(rl->redis, true, q->priv.user, q->priv.rpm, q->priv.tpm, 1, q->priv.tokens,
                               on_redis_check, op) == 0) {
            rl->ops++;
            q->priv.op = op;
            q->priv.state = Q_PENDING;
            return;
        }
        free(op);
        rl->st.fallbacks++;
    }
    decide_local(q);
}

void lx_rate_check(lx_rate_limiter *rl, lx_rate_req *q, const lx_rate_ask *ask, lx_rate_cb cb, void *ud)
{
    if (q->priv.rl && q->priv.state != Q_IDLE) lx_rate_cancel(q);
    memset(q, 0, sizeof *q);
    q->priv.rl = rl;
    q->priv.cb = cb;
    q->priv.ud = ud;
    lx_strcpy_cut(q->priv.user, sizeof q->priv.user, ask->user ? ask->user : "");
    limits_of(rl, q->priv.user, &q->priv.rpm, &q->priv.tpm);
    q->priv.tokens = (long)clamp(ask->tokens, 0, LX_RATE_MAX_LIMIT + 1);
    q->priv.prompt = (long)clamp(ask->prompt_tokens, 0, q->priv.tokens);
    q->priv.max_wait_ms = rl->cfg->rate_limits.mode == LX_RATE_WAIT ? LX_MAX(ask->max_wait_ms, 0) : 0;
    q->priv.started_ms = now_ms(rl);
    rl->st.checks++;

    if (q->priv.tpm > 0 && q->priv.tokens > q->priv.tpm) { /* no wait could help */
        lx_rate_result *res = &q->result;
        entry *e = mem_get(&rl->mem, q->priv.user, false, q->priv.started_ms);
        if (e) drain(e, q->priv.started_ms, q->priv.rpm, q->priv.tpm);
        res->verdict = LX_RATE_TOO_LARGE;
        res->kind = LX_RATE_TOKENS;
        res->limit = (long)q->priv.tpm;
        res->used = e ? (long)ceil_div(e->t, U) : 0;
        res->requested = q->priv.tokens;
        res->requests = window(q->priv.rpm, e ? e->r : 0);
        res->tokens = window(q->priv.tpm, e ? e->t : 0);
        rl->st.too_large++;
        deliver(q);
        return;
    }
    if (q->priv.rpm == 0 && q->priv.tpm == 0) { /* unlimited: nothing to count */
        q->result.verdict = LX_RATE_ALLOWED;
        q->priv.state = Q_ADMITTED;
        rl->st.allowed++;
        deliver(q);
        return;
    }
    attempt(q);
}

void lx_rate_limiter_run_waiters(lx_rate_limiter *rl)
{
    int64_t now = now_ms(rl);
    lx_rate_req *q;
    while (!rl->closing && (q = first_waiter(rl)) && q->priv.wake_ms <= now) {
        wait_remove(rl, q);
        attempt(q); /* may wait again, always later than now */
    }
    arm_wait_timer(rl);
}

/* Gives back (dreq, dtok) of an admitted req, in the store(s) it was charged in. */
static void settle(lx_rate_req *q, int64_t dreq, int64_t dtok)
{
    lx_rate_limiter *rl = q->priv.rl;
    q->priv.state = Q_IDLE;
    if (!q->priv.charged || (dreq == 0 && dtok == 0)) return;
    q->priv.charged = false;
    int64_t rpm, tpm;
    limits_of(rl, q->priv.user, &rpm, &tpm); /* today's limits drain the time since the last update */
    mem_adjust(&rl->mem, q->priv.user, rpm, tpm, dreq, dtok, now_ms(rl));
    if (q->priv.in_redis) redis_adjust(rl, q->priv.user, rpm, tpm, dreq, dtok);
}

void lx_rate_cancel(lx_rate_req *q)
{
    if (q->priv.rl == NULL) return;
    switch (q->priv.state) {
    case Q_PENDING: {
        rate_op *op = q->priv.op;
        op->req = NULL;
        op->rpm = q->priv.rpm;
        op->tpm = q->priv.tpm;
        op->tokens = q->priv.tokens;
        memcpy(op->user, q->priv.user, sizeof op->user);
        q->priv.op = NULL;
        q->priv.state = Q_IDLE;
        break;
    }
    case Q_WAITING: wait_remove(q->priv.rl, q); break;
    case Q_ADMITTED: settle(q, -1, -(int64_t)q->priv.tokens); break;
    default: break;
    }
}

void lx_rate_finish(lx_rate_req *q, long used_tokens)
{
    if (q->priv.rl == NULL) return;
    if (q->priv.state != Q_ADMITTED) {
        lx_rate_cancel(q);
        return;
    }
    int64_t real = used_tokens >= 0 ? clamp(used_tokens, 0, LX_RATE_MAX_LIMIT) : q->priv.prompt;
    settle(q, 0, real - q->priv.tokens);
}

/* ---- life ---- */

static lx_rate_redis *redis_for(uv_loop_t *loop, const lx_config *c)
{
    if (c->rate_limits.store != LX_RATE_STORE_REDIS) return NULL;
    return lx_rate_redis_new(loop, c->rate_limits.redis.host, c->rate_limits.redis.port, c->rate_limits.redis.db,
                             c->rate_limits.redis.socket_path, NULL);
}

static bool same_str(const char *a, const char *b) { return (a == NULL && b == NULL) || (a && b && !strcmp(a, b)); }

static bool same_redis(const lx_config *a, const lx_config *b)
{
    return a->rate_limits.store == b->rate_limits.store &&
           same_str(a->rate_limits.redis.host, b->rate_limits.redis.host) &&
           a->rate_limits.redis.port == b->rate_limits.redis.port &&
           a->rate_limits.redis.db == b->rate_limits.redis.db &&
           same_str(a->rate_limits.redis.socket_path, b->rate_limits.redis.socket_path);
}

lx_rate_limiter *lx_rate_limiter_new(uv_loop_t *loop, lx_config *c)
{
    lx_rate_limiter *rl = lx_xcalloc(1, sizeof *rl);
    rl->loop = loop;
    rl->cfg = lx_config_ref(c);
    rl->clock = default_clock;
    rl->clock_ud = loop;
    mem_init(&rl->mem);
    lx_list_init(&rl->waiters);
    uv_timer_init(loop, &rl->wait_timer);
    rl->wait_timer.data = rl;
    rl->redis = redis_for(loop, c);
    return rl;
}

static void close_redis(lx_rate_limiter *rl)
{
    lx_rate_redis *r = rl->redis;
    if (r == NULL) return;
    rl->redis = NULL; /* checks failing over now decide locally */
    rl->old_down_events += lx_rate_redis_down_events(r);
    rl->old_errors += lx_rate_redis_errors(r);
    lx_rate_redis_close(r);
}

void lx_rate_limiter_reconfigure(lx_rate_limiter *rl, lx_config *c)
{
    lx_config *old = rl->cfg;
    rl->cfg = lx_config_ref(c);
    if (!same_redis(old, c)) {
        close_redis(rl);
        rl->redis = redis_for(rl->loop, c);
    }
    lx_config_unref(old);
}

static void on_timer_closed(uv_handle_t *h)
{
    lx_rate_limiter *rl = h->data;
    rl->timer_closed = true;
    maybe_free(rl);
}

void lx_rate_limiter_close(lx_rate_limiter *rl)
{
    if (rl->closing) return;
    lx_rate_req *q;
    while ((q = first_waiter(rl)) != NULL) /* the caller should have cancelled these; they are dropped silently */
        wait_remove(rl, q);
    rl->closing = true;
    close_redis(rl);
    uv_close((uv_handle_t *)&rl->wait_timer, on_timer_closed);
}

void lx_rate_limiter_set_clock(lx_rate_limiter *rl, int64_t (*clock)(void *ud), void *ud)
{
    rl->clock = clock ? clock : default_clock;
    rl->clock_ud = clock ? ud : rl->loop;
}

void lx_rate_limiter_stats(const lx_rate_limiter *rl, lx_rate_stats *out)
{
    *out = rl->st;
    out->redis_configured = rl->cfg->rate_limits.store == LX_RATE_STORE_REDIS;
    out->redis_up = rl->redis && lx_rate_redis_up(rl->redis);
    out->redis_down_events = rl->old_down_events + (rl->redis ? lx_rate_redis_down_events(rl->redis) : 0);
    out->redis_errors = rl->old_errors + (rl->redis ? lx_rate_redis_errors(rl->redis) : 0);
    out->users = lx_map_count(&rl->mem.users);
    out->waiting = rl->waiting;
}

uint64_t lx_rate_limiter_fallbacks(const lx_rate_limiter *rl) { return rl->st.fallbacks; }

const char *lx_rate_req_user(const lx_rate_req *req) { return req->priv.user; }
