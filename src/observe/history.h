/*
 * History: the last 15 minutes of traffic at 1 s resolution, and the last 200 requests, for the live
 * dashboard (GET /stats/stream, api/stats_stream.h). Owned by the StatsCollector (stats.h), which feeds
 * it every finished request from lx_stats_record.
 *
 * What is kept, and its bounds (fixed at creation; recording never allocates):
 *  - per second, over the last LX_HISTORY_SECONDS seconds: requests, errors, 429 answers, prompt and
 *    completion tokens (a ring of seconds: a slot is cleared when time moves past it);
 *  - per LX_HISTORY_STEP seconds over the same span: log-linear histograms (stats.h lx_lhist) of latency,
 *    time to first token and Lexora's overhead, rendered as p50 / p95 / p99;
 *  - the last LX_HISTORY_RECENT requests: id, time, user, model asked and used, route class, variant,
 *    backend, status, error code, priority, latency, TTFT, tokens; strings cut to fixed fields (at a
 *    UTF-8 character boundary; invalid bytes become '?'). Never a prompt.
 * Seconds are monotonic (the collector's clock, in whole seconds); the renderings turn them into Unix
 * seconds with the offset the caller gives.
 *
 * A reader (one /stats/stream client) holds a cursor: the first rendering with a zero cursor carries the
 * whole window and every kept request; later ones only the seconds completed and the requests recorded
 * since. Only completed seconds (before now_sec) and completed steps are rendered, so a value once sent
 * does not change.
 *
 * Loop thread only. NULL h: recording is a no-op, renderings append empty series.
 */
#ifndef LX_HISTORY_H
#define LX_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utils/buf.h"
#include "utils/log.h"

#define LX_HISTORY_SECONDS 900 /* 15 minutes */
#define LX_HISTORY_STEP    10  /* seconds per percentile slot */
#define LX_HISTORY_SLOTS   (LX_HISTORY_SECONDS / LX_HISTORY_STEP)
#define LX_HISTORY_RECENT  200

typedef struct lx_history lx_history;

/* One second's counts. */
typedef struct {
    uint32_t requests, errors, rate_limited; /* rate_limited: answers with status 429 */
    uint32_t prompt_tokens, completion_tokens;
} lx_history_point;

/* One kept request. Strings are NUL-terminated, "" when unknown. */
typedef struct {
    uint64_t seq;    /* 1 for the first request recorded, then +1 each */
    int64_t time_ms; /* Unix milliseconds when it finished */
    char id[72], user[72], model[96], model_used[96], route[40], variant[40], backend[72], error_code[40];
    char priority[8];
    int status;
    bool stream;
    float latency_ms, ttft_ms;                /* ttft -1 when there was none */
    int32_t prompt_tokens, completion_tokens; /* -1 when unknown */
} lx_history_req;

/* What a reader has been sent; all zero before its first rendering. */
typedef struct {
    bool started;
    uint64_t next_sec;  /* the first second not yet rendered */
    uint64_t next_slot; /* the first percentile slot not yet rendered */
    uint64_t seq;       /* the last request rendered */
} lx_history_cursor;

lx_history *lx_history_new(void);
void lx_history_free(lx_history *h);

/* A finished request: sec is the collector's second now, wall_ms the Unix time in ms. */
void lx_history_record(lx_history *h, uint64_t sec, int64_t wall_ms, const lx_access_rec *rec);

/* The counts of second `sec` as seen at now_sec (all zero outside the window). */
void lx_history_point_get(lx_history *h, uint64_t now_sec, uint64_t sec, lx_history_point *out);
/* The kept requests: how many, and the i-th from the oldest (NULL past the end). */
size_t lx_history_recent_count(const lx_history *h);
const lx_history_req *lx_history_recent_at(const lx_history *h, size_t i);

/*
 * Appends `"series":{...},"percentiles":{...},"recent":[...]` (the members of an object, no braces) for
 * a reader at cursor c, and moves c on. unix_offset_s turns a collector second into Unix seconds.
 * series: {"start":UNIX_S,"step":1,"requests":[...],"errors":[...],"rate_limited":[...],
 *          "prompt_tokens":[...],"completion_tokens":[...]} (start is the first second's; the arrays may
 *          be empty);
 * percentiles: {"start":UNIX_S,"step":10,"latency_ms":{"p50":[...],"p95":[...],"p99":[...]},"ttft_ms":...,
 *          "overhead_ms":...} (null where the slot saw no request);
 * recent: the requests after c->seq, oldest first.
 */
void lx_history_render(lx_history *h, uint64_t now_sec, int64_t unix_offset_s, lx_history_cursor *c, lx_buf *out);

#endif
