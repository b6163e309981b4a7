/*
 * StatsCollector: what the gateway has done, as counters, sliding windows and histograms, rendered as
 * GET /stats (JSON) and GET /metrics (Prometheus text exposition 0.0.4).
 *
 * The seed's record_request(model, tokens_in, tokens_out, latency_ms, user_id) is lx_stats_record,
 * fed the access record of every finished request (proxy.c calls it next to lx_log_access); the
 * seed's get_stats() is lx_stats_summary_get / lx_stats_render_json.
 *
 * What is kept, and its bounds:
 *  - totals since start (requests, tokens, errors, latency sum);
 *  - sliding windows in integer buckets: requests (and, per user, tokens) per second over the last 60 s
 *    (a 60-slot ring of seconds), errors per minute over the last hour (a 60-slot ring of minutes). A
 *    window is therefore exact to its slot: "the last 60 s" is the current second and the 59 before it.
 *  - log-linear histograms (lx_lhist, 8 buckets per doubling) for the /stats percentiles of latency,
 *    time to first token, overhead, queue wait and stream decode speed: a percentile is interpolated
 *    inside its bucket, so it is within one bucket of the truth, i.e. within 9.05 % (2^(1/8) − 1);
 *  - Prometheus histograms with fixed buckets per (model, backend), per priority and globally;
 *  - per alias (a request for an alias counts there, and under the model it resolved to);
 *  - per automatic-routing class (routing/analyzer.h: the access record's route), with a duration histogram;
 *  - per user, per (model, backend) route and per backend counters in hash maps capped at
 *    max_users (10,000) and max_routes (1,000) entries; anything beyond lands in the "(other)" entry.
 *    A request not routed to a backend (bad body, unknown model) counts under model "-" and backend
 *    "-", so client-chosen model names never create entries.
 * Recording a request is O(1) and allocates only when a user, route, status or error code is seen
 * for the first time. Rendering allocates freely.
 *
 * An error is a request answered with status >= 400, or a stream that ended with an error event
 * (status 200 but an error code).
 *
 * It also keeps, for the live dashboard, the last 15 minutes at 1 s resolution and the last 200 requests
 * (history.h), fed by lx_stats_record and read by lx_stats_render_history.
 *
 * The other services feed it through the small functions below: events are pushed (rate-limit
 * refusals, retries, failovers), state is pulled through probes at render time (the queue, the
 * backends, the rate limiter's store). Until a source is attached its values are the true zero (or,
 * for backend_up, "every enabled backend is in rotation"; in-flight is then not reported). The usage
 * ledger (usage_store.h) is attached with lx_stats_set_ledger: every recorded request is also handed
 * to it, and its totals are rendered.
 *
 * The clock is injectable (lx_stats_opts.clock) so tests can move time. Every function takes a NULL
 * collector: events and settings are dropped, a summary is all zero (known false), renderings append nothing.
 *
 * stats.c records; stats_render.c renders, from one table of metric families (stats_internal.h is
 * private to the two).
 *
 * Loop thread only. Strings passed in are copied when kept.
 */
#ifndef LX_STATS_H
#define LX_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "observe/history.h"
#include "utils/buf.h"
#include "utils/log.h"

struct lx_usage_store;

/* ---------- a log-linear histogram (public for tests and for other modules' own use) ---------- */

#define LX_LHIST_MIN        0.01 /* lower edge of bucket 1; bucket 0 holds [0, 0.01) */
#define LX_LHIST_PER_OCTAVE 8
#define LX_LHIST_BUCKETS    224 /* up to 0.01 × 2^(223/8) ≈ 2.5e6; larger values land in the last bucket */

typedef struct {
    uint64_t count;
    double sum, min, max;
    uint32_t b[LX_LHIST_BUCKETS];
} lx_lhist;

void lx_lhist_add(lx_lhist *h, double v);
/* The q-quantile (0 < q <= 1), interpolated inside its bucket and clamped to [min, max]; -1 when empty. */
double lx_lhist_quantile(const lx_lhist *h, double q);
/* The bounds [lo, hi) of the bucket that holds v (for tests: "within one bucket of the truth"). */
void lx_lhist_bucket_bounds(double v, double *lo, double *hi);

/* ---------- the collector ---------- */

typedef struct lx_stats lx_stats;

typedef enum { LX_STATS_PRIO_HIGH = 0, LX_STATS_PRIO_NORMAL, LX_STATS_PRIO_LOW, LX_STATS_PRIO_COUNT } lx_stats_prio;
/* "high", "normal", "low" → the index; anything else (NULL included) is normal. */
lx_stats_prio lx_stats_prio_of(const char *name);

typedef enum {
    LX_STATS_RL_REQUESTS = 0, /* over requests_per_minute */
    LX_STATS_RL_TOKENS,       /* over tokens_per_minute */
    LX_STATS_RL_KIND_COUNT
} lx_stats_rl_kind;

typedef struct {
    uint64_t (*clock)(void); /* monotonic nanoseconds; NULL for lx_now_ns */
    int64_t started_wall_s;  /* wall-clock start, for started_at; 0 for now */
    size_t max_users;        /* 0 for 10,000 */
    size_t max_routes;       /* 0 for 1,000 */
} lx_stats_opts;

lx_stats *lx_stats_new(const lx_stats_opts *opts);
void lx_stats_free(lx_stats *s);

/* A finished request (every request, once). NULL s is a no-op. Also hands the row to the attached ledger. */
void lx_stats_record(lx_stats *s, const lx_access_rec *rec);

/* --- what other services report (NULL s is a no-op for each) --- */
/* The rate limiter refused a request of user (may be NULL) for kind. */
void lx_stats_ratelimit_refused(lx_stats *s, lx_stats_rl_kind kind, const char *user);
/* The retry handler tries backend again (a second or later attempt on the same backend). */
void lx_stats_retry(lx_stats *s, const char *backend);
/* routing.affinity sent a request to backend, where its key led (hit), or elsewhere because that one was
 * much busier (backend is then the one its key led to). */
void lx_stats_affinity(lx_stats *s, const char *backend, bool hit);
/* The retry handler moves a request from backend `from` to backend `to`. */
void lx_stats_failover(lx_stats *s, const char *from, const char *to);
/* The queue's state, read at each /stats and /metrics (all zero without a probe). Per priority class
 * asked for: requests waiting now, requests that waited past their deadline, and requests refused
 * because the queue was full (refused on arrival, or pushed out by a more important one) since start. */
typedef struct {
    long depth[LX_STATS_PRIO_COUNT];
    uint64_t timeouts[LX_STATS_PRIO_COUNT];
    uint64_t rejected[LX_STATS_PRIO_COUNT];
} lx_stats_queue_view;
typedef void (*lx_stats_queue_probe)(void *ud, lx_stats_queue_view *out);
void lx_stats_set_queue_probe(lx_stats *s, lx_stats_queue_probe fn, void *ud);

/* The rate limiter's store, read at each /stats and /metrics: checks decided locally because the
 * shared store (Redis) could not be used, and whether Redis answers now (-1: not configured). */
typedef struct {
    uint64_t fallbacks;
    int redis_up;
} lx_stats_ratelimit_view;
typedef void (*lx_stats_ratelimit_probe)(void *ud, lx_stats_ratelimit_view *out);
void lx_stats_set_ratelimit_probe(lx_stats *s, lx_stats_ratelimit_probe fn, void *ud);

/* Read at each /stats and /metrics for each known backend: whether it is in rotation (up) and how
 * many requests it is serving now. Return false if the backend is unknown to the probe. Without a
 * probe, an enabled backend is up and in-flight is not reported. */
typedef bool (*lx_stats_backend_probe)(void *ud, const char *backend, bool *up, long *in_flight);
void lx_stats_set_backend_probe(lx_stats *s, lx_stats_backend_probe fn, void *ud);

/* Makes backend known (so it is shown before its first request), enabled or not. */
void lx_stats_add_backend(lx_stats *s, const char *backend, bool enabled);

/* The experiments' part of /stats ("experiments": {json's members}) and of /metrics (prom's families), each
 * called at render time with ud; NULL functions leave "experiments" empty. */
typedef void (*lx_stats_render_fn)(void *ud, lx_buf *out);
void lx_stats_set_experiments(lx_stats *s, lx_stats_render_fn json, lx_stats_render_fn prom, void *ud);
/* A Prometheus label value, escaped (\\, \", \n; invalid UTF-8 as U+FFFD). */
void lx_stats_prom_label(lx_buf *b, const char *s);

/* Every recorded request is also added to this ledger (NULL detaches). The ledger outlives s's use of it. */
void lx_stats_set_ledger(lx_stats *s, struct lx_usage_store *ledger);

/* --- reading --- */

/* The seed's get_stats() keys (and a few more), for everything or for one user. */
typedef struct {
    uint64_t total_requests;
    uint64_t total_tokens; /* prompt + completion, counted where the backend reported usage */
    uint64_t prompt_tokens, completion_tokens;
    uint64_t total_errors;
    double avg_latency_ms;      /* 0 when there was no request */
    uint64_t requests_last_60s; /* requests_per_minute */
    uint64_t errors_last_hour;
    uint64_t rate_limited; /* refusals (of this user, or of everyone) */
    bool known;            /* for a user: whether the collector has an entry for them */
} lx_stats_summary;

/* user NULL for everything. NULL s: all zero, known false. */
void lx_stats_summary_get(lx_stats *s, const char *user, lx_stats_summary *out);

/* Extra gauges owned elsewhere that the renderers show. */
typedef struct {
    long connections;         /* client connections open now; -1 when unknown */
    bool per_user;            /* metrics.per_user: per-user series in /metrics */
    const struct lx_gpu *gpu; /* the GPUs' lexora_gpu_* series in /metrics (observe/gpu.h); NULL: none */
    size_t max_users;         /* /stats: per_user shows at most this many, the most requests in the last 60 s first, and
                                 "per_user_omitted" says how many it left out; 0: every user, in order of first sight */
} lx_stats_render_opts;

/* GET /stats: the JSON object (user non-NULL narrows it to that user). Returns 0 or -1 (out's cap). */
int lx_stats_render_json(lx_stats *s, lx_buf *out, const char *user, const lx_stats_render_opts *o);
/* GET /metrics: Prometheus text exposition format 0.0.4. Returns 0 or -1 (out's cap). */
int lx_stats_render_prometheus(lx_stats *s, lx_buf *out, const lx_stats_render_opts *o);

/* GET /stats/stream's history members for a reader at cursor c (history.h lx_history_render), on the
 * collector's clock. NULL s renders empty series. */
void lx_stats_render_history(lx_stats *s, lx_history_cursor *c, lx_buf *out);

#define LX_STATS_CONTENT_TYPE_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"

#endif
