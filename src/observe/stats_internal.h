/*
 * What stats.c (recording) and stats_render.c (the /stats and /metrics renderings) share: the
 * collector's layout and the few reads the renderers need. Private to those two files.
 *
 * Invariants:
 *  - every user, alias, class, route and backend entry is in its map and on its list (in order of first sight) from
 *    its creation until lx_stats_free, so renderers walk the lists and the record path holds plain
 *    pointers;
 *  - a route's key is "model\0backend" and its model and backend point into it;
 *  - a ring's slots older than its `last` unit minus 59 are zero (see stats.c).
 */
#ifndef LX_STATS_INTERNAL_H
#define LX_STATS_INTERNAL_H

#include "observe/stats.h"
#include "utils/list.h"
#include "utils/map.h"

struct lx_usage_store;

/* Fixed Prometheus buckets: upper bounds, in the unit of the family. */
typedef struct {
    const double *le;
    size_t n;
} lx_stats_buckets;

extern const lx_stats_buckets lx_stats_dur_buckets;  /* request duration, time to first token: seconds */
extern const lx_stats_buckets lx_stats_ovh_buckets;  /* Lexora's overhead: seconds */
extern const lx_stats_buckets lx_stats_wait_buckets; /* queue wait: seconds */
extern const lx_stats_buckets lx_stats_tps_buckets;  /* stream decode speed: tokens per second */

#define LX_STATS_PHIST_MAX 16

typedef struct {
    uint64_t b[LX_STATS_PHIST_MAX]; /* not cumulative; b[i] counts values <= le[i] and > le[i-1] */
    uint64_t count;
    double sum;
} lx_stats_phist;

typedef struct {
    uint32_t slot[60];
    uint64_t last; /* the unit (second or minute number) the newest slot stands for */
} lx_stats_ring;

typedef struct {
    uint64_t requests, errors, prompt_tokens, completion_tokens;
    double latency_ms_sum;
} lx_stats_counts;

/* The head of every entry found by name — a user, an alias, a class: its first member, so freeing the head
 * frees the entry — with the counts all three keep. */
typedef struct {
    lx_map_node node; /* key: name */
    lx_list link;     /* on its list (user_list, alias_list, class_list, fallback_list) */
    char *name;
    lx_stats_counts c;
} lx_stats_named;

typedef struct {
    lx_stats_named n;
    lx_stats_ring req_s; /* requests per second */
    lx_stats_ring tok_s; /* tokens (prompt + completion) per second, where usage was reported */
    lx_stats_ring err_m; /* errors per minute */
    uint64_t rate_limited;
} lx_stats_user;

/* An automatic-routing class (routing/analyzer.h): its requests and their duration. */
typedef struct {
    lx_stats_named n;
    lx_stats_phist duration;
} lx_stats_class;

#define LX_STATS_MAX_CLASSES 64 /* beyond: "(other)" */

typedef struct {
    int status;
    uint64_t n;
} lx_stats_status_count;

typedef struct {
    char *code;
    uint64_t n;
} lx_stats_code_count;

typedef struct {
    lx_map_node node; /* key: model \0 backend (key_len bytes) */
    lx_list link;     /* on lx_stats.route_list */
    char *key;
    const char *model, *backend; /* into key */
    lx_stats_counts c;
    lx_stats_status_count *statuses;
    size_t n_statuses;
    lx_stats_code_count *codes;
    size_t n_codes;
    lx_stats_phist duration, ttft;
} lx_stats_route;

typedef struct {
    lx_map_node node; /* key: name */
    lx_list link;     /* on lx_stats.backend_list */
    char *name;
    bool enabled;
    uint64_t retries, failovers;
    uint64_t affinity_hits, affinity_yields; /* routing.affinity: requests sent where their key led, or not */
} lx_stats_backend;

struct lx_stats {
    uint64_t (*clock)(void);
    uint64_t start_ns;
    int64_t started_wall_s;
    size_t max_users, max_routes;

    lx_stats_counts all;
    lx_stats_ring req_s, err_m;
    lx_lhist latency, ttft, overhead, queue_wait, stream_tps;
    lx_stats_phist overhead_p, stream_tps_p;
    lx_stats_phist queue_wait_p[LX_STATS_PRIO_COUNT];
    uint64_t rate_limited[LX_STATS_RL_KIND_COUNT];
    uint64_t retries, failovers;

    lx_map users, routes, backends, aliases; /* aliases: lx_stats_user entries, counts only */
    lx_list user_list, route_list, backend_list, alias_list;
    lx_map classes; /* automatic routing: lx_stats_class entries */
    lx_list class_list;
    lx_map fallbacks; /* routing.fallbacks, by the name fallen back from: lx_stats_user entries, counts only */
    lx_list fallback_list;

    lx_stats_queue_probe queue_probe;
    void *queue_probe_ud;
    lx_stats_ratelimit_probe rl_probe;
    void *rl_probe_ud;
    lx_stats_backend_probe backend_probe;
    void *backend_probe_ud;
    struct lx_usage_store *ledger;
    lx_stats_render_fn exp_json, exp_prom; /* the experiments' section (lx_stats_set_experiments) */
    void *exp_ud;
    lx_history *history; /* the last 15 minutes and the last requests, for /stats/stream (history.h) */
};

extern const char *const lx_stats_prio_names[LX_STATS_PRIO_COUNT];
extern const char *const lx_stats_rl_names[LX_STATS_RL_KIND_COUNT];

/* Events in the ring over "this unit and the 59 before it" (moves the ring to unit first). */
uint64_t lx_stats_ring_sum(lx_stats_ring *r, uint64_t unit);
/* Seconds since the collector was made, on its clock. */
double lx_stats_uptime_s(lx_stats *s);
/* Whether b is in rotation and its requests now (-1: unknown), from the backend probe if it knows b. */
void lx_stats_probe_backend(lx_stats *s, const lx_stats_backend *b, bool *up, long *in_flight);
/* The queue's and the rate limiter's state from their probes (zero, and redis_up -1, without one). */
void lx_stats_probe_queue(lx_stats *s, lx_stats_queue_view *v);
void lx_stats_probe_ratelimit(lx_stats *s, lx_stats_ratelimit_view *v);

#endif
