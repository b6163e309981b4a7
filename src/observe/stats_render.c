/*
 * StatsCollector, the rendering half: GET /stats (JSON) and GET /metrics (Prometheus text 0.0.4) from
 * what stats.c recorded.
 *
 * Every value either rendering shows is one row of `families`: its /metrics family (name, type, help),
 * its /stats key, what its series run over (the labels in /metrics, the nesting in /stats) and how it
 * is read from the collector. /metrics walks the rows in table order; /stats places rows by id in the
 * key lists of its objects (the `*_keys` arrays), because its keys are ordered differently. Rows with
 * no /metrics name are /stats only, rows with no /stats key are /metrics only.
 *
 * Invariants: both renderings are a pure function of the collector, its probes and the options (the
 * clock is read once per rendering); their order of fields and series is part of the interface
 * (tests, dashboards) and does not change; every label value and JSON string is valid UTF-8.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "observe/gpu.h"
#include "observe/stats_internal.h"
#include "observe/usage_store.h"
#include "utils/common.h"

/* ---------- text helpers ---------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* A JSON string (with its quotes); invalid UTF-8 becomes U+FFFD. */
static void json_str(lx_buf *b, const char *s)
{
    lx_buf_append(b, "\"", 1);
    size_t n = strlen(s), start = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len((const unsigned char *)s + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        lx_buf_json_escape(b, s + start, i - start);
        lx_buf_append_str(b, "\xef\xbf\xbd");
        start = ++i;
    }
    lx_buf_json_escape(b, s + start, n - start);
    lx_buf_append(b, "\"", 1);
}

/* A Prometheus label value's inside: \ " and newline escaped, invalid UTF-8 replaced by U+FFFD. */
void lx_stats_prom_label(lx_buf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0) {
            lx_buf_append_str(b, "\xef\xbf\xbd");
            i++;
            continue;
        }
        if (s[i] == '\\')
            lx_buf_append_str(b, "\\\\");
        else if (s[i] == '"')
            lx_buf_append_str(b, "\\\"");
        else if (s[i] == '\n')
            lx_buf_append_str(b, "\\n");
        else
            lx_buf_append(b, s + i, k);
        i += k;
    }
}

static void json_num(lx_buf *b, double v)
{
    if (!isfinite(v))
        lx_buf_append_str(b, "null");
    else
        lx_buf_printf(b, "%.3f", v);
}

static void json_quantiles(lx_buf *b, const lx_lhist *h)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}};
    lx_buf_append_str(b, "{");
    for (size_t i = 0; i < LX_ARRAY_LEN(qs); i++) {
        lx_buf_printf(b, "\"%s\":", qs[i].name);
        if (h->count)
            json_num(b, lx_lhist_quantile(h, qs[i].q));
        else
            lx_buf_append_str(b, "null");
        lx_buf_append_str(b, ",");
    }
    lx_buf_append_str(b, "\"avg\":");
    if (h->count)
        json_num(b, h->sum / (double)h->count);
    else
        lx_buf_append_str(b, "null");
    lx_buf_printf(b, ",\"count\":%llu}", (unsigned long long)h->count);
}

static void uptime_text(char *out, size_t n, uint64_t secs)
{
    unsigned long long d = secs / 86400, h = secs % 86400 / 3600, m = secs % 3600 / 60;
    if (d)
        snprintf(out, n, "%llud %lluh %llum", d, h, m);
    else if (h)
        snprintf(out, n, "%lluh %llum", h, m);
    else
        snprintf(out, n, "%llum %llus", m, (unsigned long long)(secs % 60));
}

static void iso_time(char *out, size_t n, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---------- what a row reads ---------- */

/* The state of one rendering, and the series being read now. */
typedef struct {
    lx_stats *s;
    const lx_stats_render_opts *o;
    lx_stats_summary sum; /* of everyone, or of the one user asked for */
    lx_stats_queue_view q;
    lx_stats_ratelimit_view rl;
    lx_usage_snapshot led;
    bool has_ledger;
    uint64_t sec;
    double uptime;
    char uptime_text[64];
    /* the series */
    size_t i;                 /* priority, limit kind or loss reason; status or code of route r */
    const lx_stats_counts *c; /* of user u, of route r, or summed over the routes of a model or backend */
    lx_stats_user *u;
    const lx_stats_class *k;
    const lx_stats_route *r;
    const lx_stats_backend *b; /* with up and in_flight probed */
    bool up;
    long in_flight;
    lx_gpu_info gpu;        /* NVML's last reading (none without o->gpu) */
    const lx_gpu_device *d; /* the GPU of the series */
} ctx;

typedef enum { V_U64, V_I64, V_F64, V_BOOL, V_TIME, V_STR, V_HIST } vkind;

typedef struct {
    uint64_t u;
    long i;
    double f;
    bool b;
    int64_t t;
    const char *str;
    const lx_stats_phist *h; /* /metrics histogram */
    const lx_stats_buckets *bk;
    const lx_lhist *lh; /* /stats quantiles */
} val;

/* What a family's series run over: their labels in /metrics, their nesting in /stats. */
typedef enum {
    OVER_ONE,          /* one series, no label */
    OVER_BUILD,        /* version */
    OVER_PRIO,         /* priority; in /stats an object keyed by priority */
    OVER_RL_KIND,      /* kind; in /stats keys of the enclosing object */
    OVER_LOST,         /* reason; in /stats an object keyed by reason */
    OVER_ROUTE,        /* model, backend */
    OVER_ROUTE_STATUS, /* model, backend, status */
    OVER_ROUTE_CODE,   /* model, backend, code */
    OVER_BACKEND,      /* backend; in /stats a key of each per_backend entry */
    OVER_USER,         /* user (only with metrics.per_user); in /stats a key of each per_user entry */
    OVER_ALIAS,        /* alias; in /stats a key of each per_alias entry */
    OVER_GPU,          /* gpu (NVML's index), uuid; /metrics only */
    OVER_GPU_INFO,     /* gpu, uuid, name; /metrics only */
    OVER_CLASS,        /* class (automatic routing); in /stats a key of each per_class entry */
    OVER_FALLBACK,     /* model (fallen back from); in /stats a key of each per_fallback entry */
} over;

enum {
    HIDE_EMPTY = 1, /* /metrics: no HELP/TYPE either when no series has a value */
    JSON_OMIT = 2,  /* /stats: no key when there is no value (else null) */
    LEDGER = 4,     /* /metrics: only with a ledger attached */
};

typedef bool (*reader)(const ctx *c, val *v); /* false: no value for this series */

typedef struct {
    const char *name; /* the /metrics family, NULL: /stats only */
    const char *type; /* counter, gauge, histogram */
    const char *help;
    const char *json; /* the /stats key, NULL: /metrics only */
    over over;
    vkind kind;
    unsigned flags;
    reader read;
} family;

static const char *const lost_names[] = {"write_failed", "queue_full"};

/* A reader: v's field `f` is expr; the series has a value when `has`. */
/* clang-format off */
#define READER(fn, f, expr, has) static bool fn(const ctx *c, val *v) { v->f = (expr); return (has); }
#define U64_READER(fn, expr) READER(fn, u, expr, true)

U64_READER(rd_one, ((void)c, 1))
U64_READER(rd_status_n, c->r->statuses[c->i].n)
U64_READER(rd_code_n, c->r->codes[c->i].n)
U64_READER(rd_requests, c->c->requests)
U64_READER(rd_errors, c->c->errors)
U64_READER(rd_prompt, c->c->prompt_tokens)
U64_READER(rd_completion, c->c->completion_tokens)
U64_READER(rd_tokens, c->c->prompt_tokens + c->c->completion_tokens)
U64_READER(rd_q_timeouts, c->q.timeouts[c->i])
U64_READER(rd_q_rejected, c->q.rejected[c->i])
U64_READER(rd_rate_limited, c->s->rate_limited[c->i])
U64_READER(rd_rl_fallbacks, c->rl.fallbacks)
U64_READER(rd_be_retries, c->b->retries)
U64_READER(rd_be_failovers, c->b->failovers)
U64_READER(rd_be_aff_hits, c->b->affinity_hits)
U64_READER(rd_be_aff_yields, c->b->affinity_yields)
U64_READER(rd_user_rate_limited, c->u->rate_limited)
U64_READER(rd_user_rpm, lx_stats_ring_sum(&c->u->req_s, c->sec))
U64_READER(rd_user_tpm, lx_stats_ring_sum(&c->u->tok_s, c->sec))
U64_READER(rd_user_errors_hour, lx_stats_ring_sum(&c->u->err_m, c->sec / 60))
U64_READER(rd_led_written, c->led.rows_written)
U64_READER(rd_led_lost, c->i == 0 ? c->led.lost_write_failed : c->led.lost_queue_full)
U64_READER(rd_led_pending, c->led.pending)
U64_READER(rd_led_requests, c->led.requests)
U64_READER(rd_led_tokens, c->led.prompt_tokens + c->led.completion_tokens)
U64_READER(rd_led_prompt, c->led.prompt_tokens)
U64_READER(rd_led_completion, c->led.completion_tokens)
U64_READER(rd_led_errors, c->led.errors)
U64_READER(rd_sum_requests, c->sum.total_requests)
U64_READER(rd_sum_tokens, c->sum.total_tokens)
U64_READER(rd_sum_rpm, c->sum.requests_last_60s)
U64_READER(rd_sum_errors_hour, c->sum.errors_last_hour)
U64_READER(rd_sum_prompt, c->sum.prompt_tokens)
U64_READER(rd_sum_completion, c->sum.completion_tokens)
U64_READER(rd_sum_errors, c->sum.total_errors)
U64_READER(rd_sum_rate_limited, c->sum.rate_limited)
U64_READER(rd_all_retries, c->s->retries)
U64_READER(rd_all_failovers, c->s->failovers)
U64_READER(rd_max_users, c->s->max_users)
U64_READER(rd_max_routes, c->s->max_routes)
READER(rd_q_depth, i, c->q.depth[c->i], true)
READER(rd_start, t, c->s->started_wall_s, true)
READER(rd_uptime, f, c->uptime, true)
READER(rd_uptime_text, str, c->uptime_text, true)
READER(rd_connections, i, c->o ? c->o->connections : -1, v->i >= 0)
READER(rd_avg_latency, f, c->c->requests ? c->c->latency_ms_sum / (double)c->c->requests : 0, true)
READER(rd_sum_avg_latency, f, c->sum.avg_latency_ms, true)
READER(rd_known, b, c->sum.known, true)
READER(rd_redis_up, b, c->rl.redis_up > 0, c->rl.redis_up >= 0)
READER(rd_be_up, b, c->up, true)
READER(rd_be_in_flight, i, c->in_flight, c->in_flight >= 0)
READER(rd_led_writable, b, c->led.writable, true)
READER(rd_led_path, str, c->led.path, true)
READER(rd_led_began, str, c->led.began, c->led.began[0] != '\0')
READER(rd_gpu_up, b, c->d->ok, true)
READER(rd_gpu_used, u, c->d->used_bytes, c->d->ok)
READER(rd_gpu_total, u, c->d->total_bytes, c->d->ok)
READER(rd_gpu_util, f, c->d->utilization_percent / 100.0, c->d->ok && c->d->has_utilization)
READER(rd_gpu_temp, u, c->d->temperature_c, c->d->ok && c->d->has_temperature)
/* clang-format on */

static bool hist(val *v, const lx_stats_phist *h, const lx_stats_buckets *bk, const lx_lhist *lh)
{
    v->h = h;
    v->bk = bk;
    v->lh = lh;
    return true;
}

static bool rd_duration(const ctx *c, val *v) { return hist(v, &c->r->duration, &lx_stats_dur_buckets, NULL); }
static bool rd_route_ttft(const ctx *c, val *v)
{
    return c->r->ttft.count > 0 && hist(v, &c->r->ttft, &lx_stats_dur_buckets, NULL);
}
static bool rd_overhead(const ctx *c, val *v)
{
    return hist(v, &c->s->overhead_p, &lx_stats_ovh_buckets, &c->s->overhead);
}
static bool rd_stream_tps(const ctx *c, val *v)
{
    return hist(v, &c->s->stream_tps_p, &lx_stats_tps_buckets, &c->s->stream_tps);
}
static bool rd_prio_wait(const ctx *c, val *v)
{
    return hist(v, &c->s->queue_wait_p[c->i], &lx_stats_wait_buckets, NULL);
}
static bool rd_class_duration(const ctx *c, val *v) { return hist(v, &c->k->duration, &lx_stats_dur_buckets, NULL); }
static bool rd_latency(const ctx *c, val *v) { return hist(v, NULL, NULL, &c->s->latency); }
static bool rd_ttft(const ctx *c, val *v) { return hist(v, NULL, NULL, &c->s->ttft); }
static bool rd_wait(const ctx *c, val *v) { return hist(v, NULL, NULL, &c->s->queue_wait); }

/* ---------- the families: the order of the rows is the order of /metrics ---------- */

/* clang-format off */
enum {
    F_BUILD, F_START, F_UPTIME, F_CONNECTIONS,
    F_ROUTE_REQUESTS, F_ROUTE_ERRORS, F_ROUTE_PROMPT, F_ROUTE_COMPLETION, F_ROUTE_DURATION, F_ROUTE_TTFT,
    F_OVERHEAD, F_STREAM_TPS,
    F_QUEUE_DEPTH, F_QUEUE_WAIT, F_QUEUE_TIMEOUTS, F_QUEUE_REJECTED,
    F_RATE_LIMITED, F_RL_FALLBACKS, F_REDIS_UP,
    F_RETRIES, F_FAILOVERS, F_AFFINITY_HITS, F_AFFINITY_YIELDS, F_BACKEND_UP, F_IN_FLIGHT,
    F_ALIAS_REQUESTS, F_ALIAS_ERRORS, F_ALIAS_PROMPT, F_ALIAS_COMPLETION,
    F_CLASS_REQUESTS, F_CLASS_ERRORS, F_CLASS_DURATION,
    F_FALLBACK_REQUESTS, F_FALLBACK_ERRORS,
    F_REQUESTS, F_ERRORS, F_PROMPT, F_COMPLETION, F_USER_RATE_LIMITED,
    F_LED_WRITTEN, F_LED_LOST, F_LED_PENDING, F_LED_WRITABLE, F_LED_REQUESTS,
    F_GPU_INFO, F_GPU_UP, F_GPU_USED, F_GPU_TOTAL, F_GPU_UTIL, F_GPU_TEMP,
    /* /stats only */
    F_SUM_REQUESTS, F_SUM_TOKENS, F_SUM_AVG_LATENCY, F_SUM_RPM, F_SUM_ERRORS_HOUR, F_SUM_PROMPT, F_SUM_COMPLETION,
    F_SUM_ERRORS, F_SUM_RATE_LIMITED, F_USER_SUM_RATE_LIMITED, F_KNOWN,
    F_UPTIME_TEXT, F_LATENCY, F_TTFT, F_WAIT, F_TOKENS, F_AVG_LATENCY, F_USER_RPM, F_USER_TPM, F_USER_ERRORS_HOUR,
    F_ALL_RETRIES, F_ALL_FAILOVERS, F_MAX_USERS, F_MAX_ROUTES,
    F_LED_PATH, F_LED_BEGAN, F_LED_TOKENS, F_LED_PROMPT, F_LED_COMPLETION, F_LED_ERRORS,
    F_COUNT
};
/* clang-format on */

#define C "counter"
#define G "gauge"
#define H "histogram"

static const family families[F_COUNT] = {
    [F_BUILD] = {"lexora_build_info", G, "Lexora's version; always 1.", NULL, OVER_BUILD, V_U64, 0, rd_one},
    [F_START] = {"lexora_start_time_seconds", G, "When Lexora started, in seconds since the epoch.", "started_at",
                 OVER_ONE, V_TIME, 0, rd_start},
    [F_UPTIME] = {"lexora_uptime_seconds", G, "Seconds since Lexora started.", "uptime_seconds", OVER_ONE, V_F64, 0,
                  rd_uptime},
    [F_CONNECTIONS] = {"lexora_http_connections", G, "Client connections open now.", "connections", OVER_ONE, V_I64,
                       HIDE_EMPTY | JSON_OMIT, rd_connections},
    [F_ROUTE_REQUESTS] = {"lexora_requests_total", C, "Finished requests by model, backend and HTTP status.", NULL,
                          OVER_ROUTE_STATUS, V_U64, 0, rd_status_n},
    [F_ROUTE_ERRORS] = {"lexora_request_errors_total", C,
                        "Requests that ended in an error Lexora reported, by model, backend and error code.", NULL,
                        OVER_ROUTE_CODE, V_U64, 0, rd_code_n},
    [F_ROUTE_PROMPT] = {"lexora_prompt_tokens_total", C, "Prompt tokens reported by the backends.", NULL, OVER_ROUTE,
                        V_U64, 0, rd_prompt},
    [F_ROUTE_COMPLETION] = {"lexora_completion_tokens_total", C, "Completion tokens reported by the backends.", NULL,
                            OVER_ROUTE, V_U64, 0, rd_completion},
    [F_ROUTE_DURATION] = {"lexora_request_duration_seconds", H,
                          "Time from a request's first byte to the end of its answer.", NULL, OVER_ROUTE, V_HIST, 0,
                          rd_duration},
    [F_ROUTE_TTFT] = {"lexora_time_to_first_token_seconds", H,
                      "Time from a complete request to the first streamed byte of the answer (successful streams).",
                      NULL, OVER_ROUTE, V_HIST, 0, rd_route_ttft},
    [F_OVERHEAD] = {"lexora_overhead_seconds", H,
                    "Lexora's own share of a request's time (the X-Lexora-Overhead-Ms header).", "overhead_ms",
                    OVER_ONE, V_HIST, 0, rd_overhead},
    [F_STREAM_TPS] = {"lexora_stream_decode_tokens_per_second", H,
                      "Completion tokens per second of successful streams, after the first token.",
                      "stream_tokens_per_second", OVER_ONE, V_HIST, 0, rd_stream_tps},
    [F_QUEUE_DEPTH] = {"lexora_queue_depth", G, "Requests waiting in Lexora's queue now, by priority.", "depth",
                       OVER_PRIO, V_I64, 0, rd_q_depth},
    [F_QUEUE_WAIT] = {"lexora_queue_wait_seconds", H, "Time requests waited in Lexora's queue, by priority.", NULL,
                      OVER_PRIO, V_HIST, 0, rd_prio_wait},
    [F_QUEUE_TIMEOUTS] = {"lexora_queue_timeouts_total", C, "Requests that waited in the queue past their deadline.",
                          "timeouts", OVER_PRIO, V_U64, 0, rd_q_timeouts},
    [F_QUEUE_REJECTED] = {"lexora_queue_rejected_total", C, "Requests refused because the queue was full.", "rejected",
                          OVER_PRIO, V_U64, 0, rd_q_rejected},
    [F_RATE_LIMITED] = {"lexora_rate_limited_total", C, "Requests refused by the rate limiter, by limit kind.",
                        "rate_limited", OVER_RL_KIND, V_U64, 0, rd_rate_limited},
    [F_RL_FALLBACKS] = {"lexora_rate_limit_store_fallbacks_total", C,
                        "Rate-limit checks decided locally because the shared store (Redis) could not be used.",
                        "store_fallbacks", OVER_ONE, V_U64, 0, rd_rl_fallbacks},
    [F_REDIS_UP] = {"lexora_rate_limit_redis_up", G, "1 if the rate limiter's Redis answers.", "redis_up", OVER_ONE,
                    V_BOOL, HIDE_EMPTY, rd_redis_up},
    [F_RETRIES] = {"lexora_retries_total", C, "Retries of a request on a backend.", "retries", OVER_BACKEND, V_U64, 0,
                   rd_be_retries},
    [F_FAILOVERS] = {"lexora_failovers_total", C, "Requests moved away from a backend to another one.", "failovers",
                     OVER_BACKEND, V_U64, 0, rd_be_failovers},
    [F_AFFINITY_HITS] = {"lexora_affinity_hits_total", C,
                         "Requests routing.affinity sent to the backend their key prefers.", "affinity_hits",
                         OVER_BACKEND, V_U64, 0, rd_be_aff_hits},
    [F_AFFINITY_YIELDS] = {"lexora_affinity_yields_total", C,
                           "Requests whose preferred backend was much busier, so were balanced elsewhere.",
                           "affinity_yields", OVER_BACKEND, V_U64, 0, rd_be_aff_yields},
    [F_ALIAS_REQUESTS] = {"lexora_alias_requests_total", C, "Finished requests that named an alias.", "requests",
                          OVER_ALIAS, V_U64, 0, rd_requests},
    [F_ALIAS_ERRORS] = {"lexora_alias_errors_total", C, "Requests naming an alias that ended in an error.", "errors",
                        OVER_ALIAS, V_U64, 0, rd_errors},
    [F_ALIAS_PROMPT] = {"lexora_alias_prompt_tokens_total", C, "Prompt tokens of requests naming an alias.",
                        "prompt_tokens", OVER_ALIAS, V_U64, 0, rd_prompt},
    [F_ALIAS_COMPLETION] = {"lexora_alias_completion_tokens_total", C, "Completion tokens of requests naming an alias.",
                            "completion_tokens", OVER_ALIAS, V_U64, 0, rd_completion},
    [F_FALLBACK_REQUESTS] =
        {"lexora_fallback_requests_total", C,
         "Finished requests sent to a fallback (routing.fallbacks), by the model they fell back from.", "requests",
         OVER_FALLBACK, V_U64, 0, rd_requests},
    [F_FALLBACK_ERRORS] = {"lexora_fallback_errors_total", C, "Requests sent to a fallback that ended in an error.",
                           "errors", OVER_FALLBACK, V_U64, 0, rd_errors},
    [F_CLASS_REQUESTS] = {"lexora_route_class_requests_total", C,
                          "Finished automatically routed requests, by the class the analyzer gave them.", "requests",
                          OVER_CLASS, V_U64, 0, rd_requests},
    [F_CLASS_ERRORS] = {"lexora_route_class_errors_total", C,
                        "Automatically routed requests that ended in an error, by class.", "errors", OVER_CLASS, V_U64,
                        0, rd_errors},
    [F_CLASS_DURATION] = {"lexora_route_class_duration_seconds", H,
                          "Time from an automatically routed request's first byte to the end of its answer, by class.",
                          NULL, OVER_CLASS, V_HIST, 0, rd_class_duration},
    [F_BACKEND_UP] = {"lexora_backend_up", G, "1 if the backend is in rotation (enabled and not marked down).", "up",
                      OVER_BACKEND, V_BOOL, 0, rd_be_up},
    [F_IN_FLIGHT] = {"lexora_backend_in_flight", G, "Requests a backend is serving now.", "in_flight", OVER_BACKEND,
                     V_I64, HIDE_EMPTY, rd_be_in_flight},
    [F_REQUESTS] = {"lexora_user_requests_total", C, "Finished requests per user.", "requests", OVER_USER, V_U64, 0,
                    rd_requests},
    [F_ERRORS] = {"lexora_user_errors_total", C, "Requests per user that ended in an error.", "errors", OVER_USER,
                  V_U64, 0, rd_errors},
    [F_PROMPT] = {"lexora_user_prompt_tokens_total", C, "Prompt tokens per user.", "prompt_tokens", OVER_USER, V_U64, 0,
                  rd_prompt},
    [F_COMPLETION] = {"lexora_user_completion_tokens_total", C, "Completion tokens per user.", "completion_tokens",
                      OVER_USER, V_U64, 0, rd_completion},
    [F_USER_RATE_LIMITED] = {"lexora_user_rate_limited_total", C, "Requests per user refused by the rate limiter.",
                             "rate_limited", OVER_USER, V_U64, 0, rd_user_rate_limited},
    [F_LED_WRITTEN] = {"lexora_usage_rows_written_total", C, "Rows written to the usage ledger since start.",
                       "rows_written", OVER_ONE, V_U64, LEDGER, rd_led_written},
    [F_LED_LOST] = {"lexora_usage_rows_lost_total", C, "Rows the usage ledger could not record since start, by reason.",
                    "rows_lost", OVER_LOST, V_U64, LEDGER, rd_led_lost},
    [F_LED_PENDING] = {"lexora_usage_rows_pending", G, "Rows waiting to be written to the usage ledger.",
                       "rows_pending", OVER_ONE, V_U64, LEDGER, rd_led_pending},
    [F_LED_WRITABLE] = {"lexora_usage_ledger_writable", G, "1 if the last write to the usage ledger succeeded.",
                        "writable", OVER_ONE, V_BOOL, LEDGER, rd_led_writable},
    [F_LED_REQUESTS] = {"lexora_usage_ledger_requests_total", C, "Requests in the usage ledger since it began.",
                        "total_requests", OVER_ONE, V_U64, LEDGER, rd_led_requests},
    [F_GPU_INFO] = {"lexora_gpu_info", G, "A GPU NVML reports, with its name; always 1.", NULL, OVER_GPU_INFO, V_U64,
                    HIDE_EMPTY, rd_one},
    [F_GPU_UP] = {"lexora_gpu_up", G, "1 if NVML read the GPU's memory at the last reading (every 5 s).", NULL,
                  OVER_GPU, V_BOOL, HIDE_EMPTY, rd_gpu_up},
    [F_GPU_USED] = {"lexora_gpu_memory_used_bytes", G, "GPU memory in use, from NVML.", NULL, OVER_GPU, V_U64,
                    HIDE_EMPTY, rd_gpu_used},
    [F_GPU_TOTAL] = {"lexora_gpu_memory_total_bytes", G, "GPU memory in all, from NVML.", NULL, OVER_GPU, V_U64,
                     HIDE_EMPTY, rd_gpu_total},
    [F_GPU_UTIL] = {"lexora_gpu_utilization_ratio", G,
                    "Share of NVML's last sample period in which the GPU ran a kernel (0 to 1).", NULL, OVER_GPU, V_F64,
                    HIDE_EMPTY, rd_gpu_util},
    [F_GPU_TEMP] = {"lexora_gpu_temperature_celsius", G, "GPU core temperature, from NVML.", NULL, OVER_GPU, V_U64,
                    HIDE_EMPTY, rd_gpu_temp},

    [F_SUM_REQUESTS] = {.json = "total_requests", .kind = V_U64, .read = rd_sum_requests},
    [F_SUM_TOKENS] = {.json = "total_tokens", .kind = V_U64, .read = rd_sum_tokens},
    [F_SUM_AVG_LATENCY] = {.json = "avg_latency_ms", .kind = V_F64, .read = rd_sum_avg_latency},
    [F_SUM_RPM] = {.json = "requests_per_minute", .kind = V_U64, .read = rd_sum_rpm},
    [F_SUM_ERRORS_HOUR] = {.json = "errors_last_hour", .kind = V_U64, .read = rd_sum_errors_hour},
    [F_SUM_PROMPT] = {.json = "prompt_tokens", .kind = V_U64, .read = rd_sum_prompt},
    [F_SUM_COMPLETION] = {.json = "completion_tokens", .kind = V_U64, .read = rd_sum_completion},
    [F_SUM_ERRORS] = {.json = "total_errors", .kind = V_U64, .read = rd_sum_errors},
    [F_SUM_RATE_LIMITED] = {.json = "total", .kind = V_U64, .read = rd_sum_rate_limited},
    [F_USER_SUM_RATE_LIMITED] = {.json = "rate_limited", .kind = V_U64, .read = rd_sum_rate_limited},
    [F_KNOWN] = {.json = "known", .kind = V_BOOL, .read = rd_known},
    [F_UPTIME_TEXT] = {.json = "uptime", .kind = V_STR, .read = rd_uptime_text},
    [F_LATENCY] = {.json = "latency_ms", .kind = V_HIST, .read = rd_latency},
    [F_TTFT] = {.json = "ttft_ms", .kind = V_HIST, .read = rd_ttft},
    [F_WAIT] = {.json = "wait_ms", .kind = V_HIST, .read = rd_wait},
    [F_TOKENS] = {.json = "total_tokens", .kind = V_U64, .read = rd_tokens},
    [F_AVG_LATENCY] = {.json = "avg_latency_ms", .kind = V_F64, .read = rd_avg_latency},
    [F_USER_RPM] = {.json = "requests_per_minute", .kind = V_U64, .read = rd_user_rpm},
    [F_USER_TPM] = {.json = "tokens_per_minute", .kind = V_U64, .read = rd_user_tpm},
    [F_USER_ERRORS_HOUR] = {.json = "errors_last_hour", .kind = V_U64, .read = rd_user_errors_hour},
    [F_ALL_RETRIES] = {.json = "retries", .kind = V_U64, .read = rd_all_retries},
    [F_ALL_FAILOVERS] = {.json = "failovers", .kind = V_U64, .read = rd_all_failovers},
    [F_MAX_USERS] = {.json = "max_users", .kind = V_U64, .read = rd_max_users},
    [F_MAX_ROUTES] = {.json = "max_routes", .kind = V_U64, .read = rd_max_routes},
    [F_LED_PATH] = {.json = "path", .kind = V_STR, .read = rd_led_path},
    [F_LED_BEGAN] = {.json = "began", .kind = V_STR, .read = rd_led_began},
    [F_LED_TOKENS] = {.json = "total_tokens", .kind = V_U64, .read = rd_led_tokens},
    [F_LED_PROMPT] = {.json = "prompt_tokens", .kind = V_U64, .read = rd_led_prompt},
    [F_LED_COMPLETION] = {.json = "completion_tokens", .kind = V_U64, .read = rd_led_completion},
    [F_LED_ERRORS] = {.json = "total_errors", .kind = V_U64, .read = rd_led_errors},
};

/* ---------- the shape of /stats: the keys of each object, in order ---------- */

typedef unsigned char fam_id;

static const fam_id seed_keys[] = {F_SUM_REQUESTS,    F_SUM_TOKENS, F_SUM_AVG_LATENCY, F_SUM_RPM,
                                   F_SUM_ERRORS_HOUR, F_SUM_PROMPT, F_SUM_COMPLETION,  F_SUM_ERRORS};
static const fam_id top_keys[] = {F_UPTIME, F_UPTIME_TEXT, F_START, F_LATENCY, F_TTFT, F_OVERHEAD, F_STREAM_TPS};
static const fam_id count_keys[] = {F_REQUESTS, F_PROMPT, F_COMPLETION, F_TOKENS, F_ERRORS, F_AVG_LATENCY};
static const fam_id user_keys[] = {F_USER_RPM, F_USER_TPM, F_USER_ERRORS_HOUR, F_USER_RATE_LIMITED};
static const fam_id backend_keys[] = {F_BACKEND_UP, F_IN_FLIGHT,     F_RETRIES,
                                      F_FAILOVERS,  F_AFFINITY_HITS, F_AFFINITY_YIELDS};
static const fam_id queue_keys[] = {F_QUEUE_DEPTH, F_QUEUE_TIMEOUTS, F_QUEUE_REJECTED, F_WAIT};
static const fam_id rl_keys[] = {F_RATE_LIMITED, F_SUM_RATE_LIMITED, F_RL_FALLBACKS, F_REDIS_UP};
static const fam_id tail_keys[] = {F_ALL_RETRIES, F_ALL_FAILOVERS, F_CONNECTIONS};
static const fam_id limit_keys[] = {F_MAX_USERS, F_MAX_ROUTES};
static const fam_id ledger_keys[] = {F_LED_PATH,    F_LED_WRITABLE, F_LED_BEGAN,      F_LED_REQUESTS,
                                     F_LED_TOKENS,  F_LED_PROMPT,   F_LED_COMPLETION, F_LED_ERRORS,
                                     F_LED_WRITTEN, F_LED_PENDING,  F_LED_LOST};
static const fam_id one_user_keys[] = {F_USER_SUM_RATE_LIMITED, F_KNOWN, F_UPTIME};

#define KEYS(a) a, LX_ARRAY_LEN(a)

/* ---------- /stats ---------- */

static void json_value(lx_buf *b, const family *f, const val *v)
{
    char t[32];
    switch (f->kind) {
    case V_U64: lx_buf_printf(b, "%llu", (unsigned long long)v->u); break;
    case V_I64: lx_buf_printf(b, "%ld", v->i); break;
    case V_F64: json_num(b, v->f); break;
    case V_BOOL: lx_buf_append_str(b, v->b ? "true" : "false"); break;
    case V_TIME:
        iso_time(t, sizeof t, v->t);
        json_str(b, t);
        break;
    case V_STR: json_str(b, v->str); break;
    case V_HIST: json_quantiles(b, v->lh); break;
    }
}

static void json_key(lx_buf *b, bool *first, const char *key)
{
    if (!*first) lx_buf_append_str(b, ",");
    *first = false;
    json_str(b, key);
    lx_buf_append_str(b, ":");
}

/* "key":value, or null; a labelled family as an object keyed by its label values (or, for the limit
 * kinds, as keys of the enclosing object). */
static void json_family(lx_buf *b, ctx *c, const family *f, bool *first)
{
    const char *const *labels = NULL;
    size_t n = 0;
    if (f->over == OVER_PRIO) labels = lx_stats_prio_names, n = LX_STATS_PRIO_COUNT;
    if (f->over == OVER_LOST) labels = lost_names, n = LX_ARRAY_LEN(lost_names);
    if (f->over == OVER_RL_KIND) labels = lx_stats_rl_names, n = LX_STATS_RL_KIND_COUNT;
    val v = {0};
    if (labels == NULL) {
        bool has = f->read(c, &v);
        if (!has && (f->flags & JSON_OMIT)) return;
        json_key(b, first, f->json);
        if (has)
            json_value(b, f, &v);
        else
            lx_buf_append_str(b, "null");
        return;
    }
    bool inner = true, *at = f->over == OVER_RL_KIND ? first : &inner;
    if (f->over != OVER_RL_KIND) {
        json_key(b, first, f->json);
        lx_buf_append_str(b, "{");
    }
    for (c->i = 0; c->i < n; c->i++) {
        json_key(b, at, labels[c->i]);
        f->read(c, &v);
        json_value(b, f, &v);
    }
    if (f->over != OVER_RL_KIND) lx_buf_append_str(b, "}");
}

static void json_keys(lx_buf *b, ctx *c, const fam_id *ids, size_t n, bool *first)
{
    for (size_t i = 0; i < n; i++)
        json_family(b, c, &families[ids[i]], first);
}

/* "key":{ then the caller's keys */
static void json_open(lx_buf *b, bool *first, const char *key)
{
    json_key(b, first, key);
    lx_buf_append_str(b, "{");
}

static void counts_merge(lx_stats_counts *into, const lx_stats_counts *c)
{
    into->requests += c->requests;
    into->errors += c->errors;
    into->prompt_tokens += c->prompt_tokens;
    into->completion_tokens += c->completion_tokens;
    into->latency_ms_sum += c->latency_ms_sum;
}

/* per user (with their own keys), per alias or per class (counts only), in order of first sight */
static void json_named_one(lx_buf *b, ctx *c, lx_stats_named *e, bool users, bool *first)
{
    c->c = &e->c;
    json_open(b, first, e->name);
    bool in = true;
    json_keys(b, c, KEYS(count_keys), &in);
    if (users) {
        c->u = LX_CONTAINER_OF(e, lx_stats_user, n);
        json_keys(b, c, KEYS(user_keys), &in);
    }
    lx_buf_append_str(b, "}");
}

typedef struct {
    lx_stats_named *e;
    uint64_t rpm;
} ranked;

static int by_rpm(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    return x->rpm < y->rpm ? 1 : x->rpm > y->rpm ? -1 : 0;
}

/* per_user with at most max users, the busiest of the last 60 s first; returns how many were left out. */
static size_t json_top_users(lx_buf *b, ctx *c, size_t max)
{
    size_t n = 0, k = 0;
    lx_list *it, *tmp;
    LX_LIST_EACH(&c->s->user_list, it, tmp) n++;
    ranked *r = lx_xcalloc(n ? n : 1, sizeof *r);
    LX_LIST_EACH(&c->s->user_list, it, tmp)
    {
        lx_stats_named *e = LX_LIST_ENTRY(it, lx_stats_named, link);
        r[k++] = (ranked){e, lx_stats_ring_sum(&LX_CONTAINER_OF(e, lx_stats_user, n)->req_s, c->sec)};
    }
    qsort(r, n, sizeof *r, by_rpm);
    bool first = true;
    for (size_t i = 0; i < n && i < max; i++)
        json_named_one(b, c, r[i].e, true, &first);
    free(r);
    return n > max ? n - max : 0;
}

static void json_named(lx_buf *b, ctx *c, lx_list *list, bool users)
{
    bool first = true;
    lx_list *n, *tmp;
    LX_LIST_EACH(list, n, tmp)
    json_named_one(b, c, LX_LIST_ENTRY(n, lx_stats_named, link), users, &first);
}

/* per model: sums over its routes, in order of first sight */
static void json_models(lx_buf *b, ctx *c)
{
    bool first = true;
    lx_list *head = &c->s->route_list, *n, *tmp;
    LX_LIST_EACH(head, n, tmp)
    {
        const lx_stats_route *r = LX_LIST_ENTRY(n, lx_stats_route, link);
        bool seen = false;
        for (lx_list *p = head->next; p != n && !seen; p = p->next)
            seen = strcmp(LX_LIST_ENTRY(p, lx_stats_route, link)->model, r->model) == 0;
        if (seen) continue;
        lx_stats_counts sum = {0};
        for (lx_list *p = n; p != head; p = p->next) {
            const lx_stats_route *o = LX_LIST_ENTRY(p, lx_stats_route, link);
            if (strcmp(o->model, r->model) == 0) counts_merge(&sum, &o->c);
        }
        c->c = &sum;
        json_open(b, &first, r->model);
        bool in = true;
        json_keys(b, c, KEYS(count_keys), &in);
        lx_buf_append_str(b, "}");
    }
}

/* per backend: sums over its routes, and its own state */
static void json_backends(lx_buf *b, ctx *c)
{
    bool first = true;
    lx_list *n, *tmp, *p, *ptmp;
    LX_LIST_EACH(&c->s->backend_list, n, tmp)
    {
        c->b = LX_LIST_ENTRY(n, lx_stats_backend, link);
        lx_stats_counts sum = {0};
        LX_LIST_EACH(&c->s->route_list, p, ptmp)
        {
            const lx_stats_route *r = LX_LIST_ENTRY(p, lx_stats_route, link);
            if (strcmp(r->backend, c->b->name) == 0) counts_merge(&sum, &r->c);
        }
        lx_stats_probe_backend(c->s, c->b, &c->up, &c->in_flight);
        c->c = &sum;
        json_open(b, &first, c->b->name);
        bool in = true;
        json_keys(b, c, KEYS(count_keys), &in);
        json_keys(b, c, KEYS(backend_keys), &in);
        lx_buf_append_str(b, "}");
    }
}

/* the probes, the ledger and the clock, read once for a rendering */
static void ctx_init(ctx *c, lx_stats *s, const lx_stats_render_opts *o, bool json, const char *user)
{
    *c = (ctx){.s = s, .o = o};
    if (json) lx_stats_summary_get(s, user, &c->sum);
    lx_stats_probe_queue(s, &c->q);
    lx_stats_probe_ratelimit(s, &c->rl);
    c->has_ledger = s->ledger != NULL;
    if (c->has_ledger) lx_usage_store_snapshot(s->ledger, &c->led);
    if (o && o->gpu) lx_gpu_get(o->gpu, &c->gpu);
    c->sec = s->clock() / 1000000000u;
    c->uptime = lx_stats_uptime_s(s);
    uptime_text(c->uptime_text, sizeof c->uptime_text, (uint64_t)c->uptime);
}

static int render_user(ctx *c, lx_buf *out, const char *user)
{
    bool first = true;
    lx_buf_append_str(out, "{");
    json_key(out, &first, "user");
    json_str(out, user);
    json_keys(out, c, KEYS(seed_keys), &first);
    json_keys(out, c, KEYS(one_user_keys), &first);
    lx_buf_append_str(out, "}");
    return 0;
}

int lx_stats_render_json(lx_stats *s, lx_buf *out, const char *user, const lx_stats_render_opts *o)
{
    if (s == NULL) return 0;
    ctx c;
    ctx_init(&c, s, o, true, user);
    if (user) return render_user(&c, out, user);
    bool first = true, in;
    lx_buf_append_str(out, "{");
    json_keys(out, &c, KEYS(seed_keys), &first);
    json_keys(out, &c, KEYS(top_keys), &first);
    json_open(out, &first, "per_user");
    size_t omitted = 0;
    if (o && o->max_users)
        omitted = json_top_users(out, &c, o->max_users);
    else
        json_named(out, &c, &s->user_list, true);
    lx_buf_append_str(out, "}");
    if (o && o->max_users) lx_buf_printf(out, ",\"per_user_omitted\":%zu", omitted);
    json_open(out, &first, "per_model");
    json_models(out, &c);
    lx_buf_append_str(out, "}");
    json_open(out, &first, "per_alias");
    json_named(out, &c, &s->alias_list, false);
    lx_buf_append_str(out, "}");
    json_open(out, &first, "per_class");
    json_named(out, &c, &s->class_list, false);
    lx_buf_append_str(out, "}");
    json_open(out, &first, "per_fallback");
    json_named(out, &c, &s->fallback_list, false);
    lx_buf_append_str(out, "}");
    json_open(out, &first, "experiments");
    if (s->exp_json) s->exp_json(s->exp_ud, out);
    lx_buf_append_str(out, "}");
    json_open(out, &first, "per_backend");
    json_backends(out, &c);
    lx_buf_append_str(out, "}");
    json_open(out, &first, "queue");
    in = true;
    json_keys(out, &c, KEYS(queue_keys), &in);
    lx_buf_append_str(out, "}");
    json_open(out, &first, "rate_limited");
    in = true;
    json_keys(out, &c, KEYS(rl_keys), &in);
    lx_buf_append_str(out, "}");
    json_keys(out, &c, KEYS(tail_keys), &first);
    json_open(out, &first, "limits");
    in = true;
    json_keys(out, &c, KEYS(limit_keys), &in);
    lx_buf_append_str(out, "}");
    json_key(out, &first, "ledger");
    if (c.has_ledger) {
        lx_buf_append_str(out, "{");
        in = true;
        json_keys(out, &c, KEYS(ledger_keys), &in);
    }
    return lx_buf_append_str(out, c.has_ledger ? "}}" : "null}");
}

/* ---------- /metrics ---------- */

/* Appends `name{labels} ` where labels is pairs of (name, value), n pairs. */
static void prom_series(lx_buf *b, const char *name, const char *suffix, const char *const *labels, size_t n)
{
    lx_buf_append_str(b, name);
    if (suffix) lx_buf_append_str(b, suffix);
    if (n) {
        lx_buf_append_str(b, "{");
        for (size_t i = 0; i < n; i++) {
            lx_buf_printf(b, "%s%s=\"", i ? "," : "", labels[2 * i]);
            lx_stats_prom_label(b, labels[2 * i + 1]);
            lx_buf_append_str(b, "\"");
        }
        lx_buf_append_str(b, "}");
    }
    lx_buf_append_str(b, " ");
}

static void prom_hist(lx_buf *b, const char *name, const char *const *labels, size_t n, const val *v)
{
    const char *l[2 * 3 + 2];
    if (n) memcpy(l, labels, 2 * n * sizeof *l);
    char le[32];
    l[2 * n] = "le";
    l[2 * n + 1] = le;
    uint64_t cum = 0;
    for (size_t i = 0; i < v->bk->n; i++) {
        cum += v->h->b[i];
        snprintf(le, sizeof le, "%g", v->bk->le[i]);
        prom_series(b, name, "_bucket", l, n + 1);
        lx_buf_printf(b, "%llu\n", (unsigned long long)cum);
    }
    snprintf(le, sizeof le, "+Inf");
    prom_series(b, name, "_bucket", l, n + 1);
    lx_buf_printf(b, "%llu\n", (unsigned long long)v->h->count);
    prom_series(b, name, "_sum", labels, n);
    lx_buf_printf(b, "%.12g\n", v->h->sum);
    prom_series(b, name, "_count", labels, n);
    lx_buf_printf(b, "%llu\n", (unsigned long long)v->h->count);
}

/* One series of f (labels: n pairs) if it has a value; returns whether it had. b NULL: only asks. */
static bool prom_sample(lx_buf *b, ctx *c, const family *f, const char *const *labels, size_t n)
{
    val v = {0};
    if (!f->read(c, &v)) return false;
    if (b == NULL) return true;
    if (f->kind == V_HIST) {
        prom_hist(b, f->name, labels, n, &v);
        return true;
    }
    prom_series(b, f->name, NULL, labels, n);
    switch (f->kind) {
    case V_I64: lx_buf_printf(b, "%llu\n", (unsigned long long)(v.i > 0 ? v.i : 0)); break;
    case V_F64: lx_buf_printf(b, "%.12g\n", v.f); break;
    case V_BOOL: lx_buf_printf(b, "%d\n", v.b ? 1 : 0); break;
    case V_TIME: lx_buf_printf(b, "%llu\n", (unsigned long long)v.t); break;
    default: lx_buf_printf(b, "%llu\n", (unsigned long long)v.u); break;
    }
    return true;
}

static size_t prom_routes(lx_buf *b, ctx *c, const family *f)
{
    size_t k = 0;
    lx_list *n, *tmp;
    LX_LIST_EACH(&c->s->route_list, n, tmp)
    {
        c->r = LX_LIST_ENTRY(n, lx_stats_route, link);
        c->c = &c->r->c;
        const char *l[] = {"model", c->r->model, "backend", c->r->backend, NULL, NULL};
        char st[16];
        if (f->over == OVER_ROUTE) {
            k += prom_sample(b, c, f, l, 2);
            continue;
        }
        size_t m = f->over == OVER_ROUTE_STATUS ? c->r->n_statuses : c->r->n_codes;
        for (c->i = 0; c->i < m; c->i++) {
            if (f->over == OVER_ROUTE_STATUS) {
                snprintf(st, sizeof st, "%d", c->r->statuses[c->i].status);
                l[4] = "status", l[5] = st;
            } else {
                l[4] = "code", l[5] = c->r->codes[c->i].code;
            }
            k += prom_sample(b, c, f, l, 3);
        }
    }
    return k;
}

static size_t prom_gpus(lx_buf *b, ctx *c, const family *f)
{
    size_t k = 0;
    for (size_t i = 0; i < c->gpu.n_devices; i++) {
        c->d = &c->gpu.devices[i];
        char idx[16];
        snprintf(idx, sizeof idx, "%u", c->d->index);
        const char *l[] = {"gpu", idx, "uuid", c->d->uuid, "name", c->d->name};
        k += prom_sample(b, c, f, l, f->over == OVER_GPU_INFO ? 3 : 2);
    }
    return k;
}

/* Every series of f that has a value; returns how many. b NULL: only counts. */
static size_t prom_each(lx_buf *b, ctx *c, const family *f)
{
    size_t k = 0;
    lx_list *n, *tmp, *list;
    const char *l[2];
    switch (f->over) {
    case OVER_ONE: return prom_sample(b, c, f, NULL, 0);
    case OVER_BUILD: return prom_sample(b, c, f, (const char *const[]){"version", LX_VERSION}, 1);
    case OVER_PRIO:
    case OVER_RL_KIND:
    case OVER_LOST:
        l[0] = f->over == OVER_PRIO ? "priority" : f->over == OVER_RL_KIND ? "kind" : "reason";
        size_t m = f->over == OVER_PRIO      ? LX_STATS_PRIO_COUNT
                   : f->over == OVER_RL_KIND ? LX_STATS_RL_KIND_COUNT
                                             : LX_ARRAY_LEN(lost_names);
        for (c->i = 0; c->i < m; c->i++) {
            l[1] = f->over == OVER_PRIO      ? lx_stats_prio_names[c->i]
                   : f->over == OVER_RL_KIND ? lx_stats_rl_names[c->i]
                                             : lost_names[c->i];
            k += prom_sample(b, c, f, l, 1);
        }
        return k;
    case OVER_ROUTE:
    case OVER_ROUTE_STATUS:
    case OVER_ROUTE_CODE: return prom_routes(b, c, f);
    case OVER_BACKEND:
        l[0] = "backend";
        LX_LIST_EACH(&c->s->backend_list, n, tmp)
        {
            c->b = LX_LIST_ENTRY(n, lx_stats_backend, link);
            lx_stats_probe_backend(c->s, c->b, &c->up, &c->in_flight);
            l[1] = c->b->name;
            k += prom_sample(b, c, f, l, 1);
        }
        return k;
    case OVER_GPU:
    case OVER_GPU_INFO: return prom_gpus(b, c, f);
    case OVER_USER:
    case OVER_ALIAS:
    case OVER_CLASS:
    case OVER_FALLBACK:
        l[0] = f->over == OVER_USER    ? "user"
               : f->over == OVER_ALIAS ? "alias"
               : f->over == OVER_CLASS ? "class"
                                       : "model";
        list = f->over == OVER_USER    ? &c->s->user_list
               : f->over == OVER_ALIAS ? &c->s->alias_list
               : f->over == OVER_CLASS ? &c->s->class_list
                                       : &c->s->fallback_list;
        LX_LIST_EACH(list, n, tmp)
        {
            lx_stats_named *e = LX_LIST_ENTRY(n, lx_stats_named, link);
            c->c = &e->c;
            if (f->over == OVER_CLASS)
                c->k = LX_CONTAINER_OF(e, lx_stats_class, n);
            else
                c->u = LX_CONTAINER_OF(e, lx_stats_user, n);
            l[1] = e->name;
            k += prom_sample(b, c, f, l, 1);
        }
        return k;
    }
    return k;
}

int lx_stats_render_prometheus(lx_stats *s, lx_buf *b, const lx_stats_render_opts *o)
{
    if (s == NULL) return 0;
    ctx c;
    ctx_init(&c, s, o, false, NULL);
    for (size_t i = 0; i < F_COUNT; i++) {
        const family *f = &families[i];
        if (f->name == NULL) continue;
        if (f->over == OVER_USER && !(o && o->per_user)) continue;
        if ((f->flags & LEDGER) && !c.has_ledger) continue;
        if ((f->flags & HIDE_EMPTY) && prom_each(NULL, &c, f) == 0) continue;
        lx_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
        prom_each(b, &c, f);
    }
    if (s->exp_prom) s->exp_prom(s->exp_ud, b);
    return b->max && b->len >= b->max ? -1 : 0;
}
