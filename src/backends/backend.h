/*
 * Backends at run time: the state of each configured backend that outlives a config snapshot — the
 * slots in use, the concurrency limit, and the adaptive load reading — kept in a registry (lx_backends)
 * and looked up by name, so a reload changes a backend's limits without losing its requests in flight.
 *
 * Health (active checks): every health_check.interval_seconds each enabled backend is probed through
 * the gateway's upstream client, with health_check.timeout_seconds: GET <url><its kind's health_path>
 * (backends/kind.h: vllm and llamacpp /health, ollama /, openai /v1/models); only HTTP 200 is a success (llama.cpp's
 * 503 "Loading model" is not ready). failure_threshold consecutive failures mark it down, one success marks it up;
 * before its first check completes it is unknown. The first check starts at once (at start, and when a
 * reload adds a backend or changes its url or kind). Status changes are logged (WARNING down, INFO up).
 * A registry made without a client (unit tests) checks nothing: its backends stay unknown.
 *
 * Circuit breaker (passive checks): every request sent to a backend ends with a verdict
 * (lx_backend_attempt_end). failure_threshold failures in a row open the circuit: the backend takes no new
 * request for health_check.cooldown_seconds; then it is half-open: one trial request is let through, and
 * its verdict closes the circuit (success) or opens it for another cooldown (failure). A failure is a
 * backend that cannot be reached, resets or times out, or answers 502/503/504; a 429 or a 4xx is the
 * backend working, and a request the client abandoned says nothing. Opening is logged (WARNING), closing
 * (INFO). The active checks and the circuit are independent — a backend is routable when neither says no —
 * with one exception: a backend its checks had marked down that passes a check again ends its cooldown at
 * once (it is half-open), so a backend that was restarted is not kept out for the rest of the cooldown.
 * Requests may wait in a half-open backend's line while its trial is out (nothing else is dispatched to
 * it until the verdict); when a backend goes down — its circuit opens, or its checks fail — on_down
 * tells the admission, which moves those waiting for it elsewhere.
 *
 * models: auto: after each passing check, GET <url><its kind's models_path> asks what it serves (parsed by
 * the kind's parse_models); a changed list — or none, when it goes down or its address changes — calls
 * on_models, so the model index (backends/served.h) is rebuilt. A failed read keeps the last list.
 *
 * Drain (POST /admin/backends/NAME/drain): a drained backend is neither routable nor accepts a dispatch,
 * so it takes no new request while those in flight finish; its health checks go on. Draining it tells
 * the admission as a backend going down does (on_down), so requests waiting for it move to the other
 * backends of their model, or are answered as when every one is down; undraining makes it ready again.
 * The flag belongs to the backend, not to a config snapshot: a reload that keeps the backend keeps it,
 * and a backend a reload retires forgets it.
 *
 * Slots: a request is sent to a backend only while it holds one of its max_concurrency slots
 * (lx_backend_acquire / lx_backend_release); the rest wait in Lexora's queue (queue/admission.c).
 *
 * Adaptive (backends.NAME.adaptive: true): about once a second the backend's GET <url>/metrics is read
 * through the gateway's upstream client, and the backend counts as saturated — no dispatch, even with a
 * free slot — while it reports requests waiting (vllm:num_requests_waiting > 0) or a KV cache above
 * kv_cache_threshold (vllm:kv_cache_usage_perc, or vllm:gpu_cache_usage_perc from vLLM before 0.10).
 * While saturated, a request that finishes there triggers an early read (at most one per 200 ms), so
 * the next dispatch follows the backend's own queue closely instead of waiting for the next second.
 * A read that fails (no answer within 3 s, not 200, no such gauges) clears the saturation: dispatch then
 * falls back to max_concurrency alone, so a backend whose /metrics is unreachable is never held shut;
 * its failures are the business of the retry handler and the health checks. The first failure of a
 * streak is logged (WARNING), and the recovery (INFO).
 *
 * Ownership: the registry owns every lx_backend; a backend removed from the config (or disabled) by a
 * reload is retired — kept, with its slots, its line and no adaptive reads, until a later reload brings
 * it back — so pointers to it stay valid for the registry's life. The registry uses the upstream client
 * it was given: free the registry before the client.
 * Loop thread only.
 */
#ifndef LX_BACKEND_H
#define LX_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "backends/outcome.h"
#include "config.h"
#include "http/client.h"

typedef struct lx_backend lx_backend;
typedef struct lx_backends lx_backends;

/* Capacity may have become available on b: a slot was released, saturation ended, or a reload changed
 * its limits. It may be called from inside lx_backend_release and lx_backends_configure, so it should
 * only schedule the dispatch (queue/admission.c starts a zero timer), not dispatch at once. */
typedef void (*lx_backend_ready_fn)(lx_backend *b, void *ud);

#define LX_BACKEND_POLL_MS         1000 /* adaptive: between two reads of /metrics */
#define LX_BACKEND_REPOLL_MIN_MS   200  /* adaptive: an early read comes at most this often */
#define LX_BACKEND_POLL_TIMEOUT_MS 3000
#define LX_BACKEND_METRICS_MAX     (8u << 20) /* a /metrics answer larger than this is a failed read */
#define LX_BACKEND_MODELS_MAX      1024       /* models: auto — names kept of one backend's list */
#define LX_BACKEND_MODEL_NAME_MAX  255        /* models: auto — a longer name is not served */
#define LX_BACKEND_EWMA_TAU_S      10.0       /* the latency mean's decay time */

/* An empty registry. on_ready may be NULL. */
lx_backends *lx_backends_new(uv_loop_t *loop, lx_http_client *client, lx_backend_ready_fn on_ready, void *ud);
/* b stopped taking requests: its checks marked it down, or its circuit opened (again). Called with the
 * registry's ud, from inside lx_backend_attempt_end or a check's completion, so it should only schedule
 * (queue/admission.c moves b's waiting requests to the rejections answered at the next kick). */
void lx_backends_on_down(lx_backends *s, lx_backend_ready_fn on_down);
/* What a backend with models: auto serves changed (a new list, or it went down and serves nothing). Called
 * with the registry's ud from a check's completion or from lx_backends_configure: it should rebuild the
 * model index (backends/served.h) and schedule what follows. */
void lx_backends_on_models(lx_backends *s, lx_backend_ready_fn on_models);
/* Brings the registry in line with c: new enabled backends are added, known ones take the new limits
 * (and start or stop their adaptive reads), removed or disabled ones are retired. */
void lx_backends_configure(lx_backends *s, const lx_config *c);
/* Stops every read and timer; the memory goes once the handles closed (the loop must run). */
void lx_backends_free(lx_backends *s);

lx_backend *lx_backends_find(lx_backends *s, const char *name);
size_t lx_backends_count(const lx_backends *s);
lx_backend *lx_backends_at(lx_backends *s, size_t i);

const char *lx_backend_name(const lx_backend *b);
/* A request may be dispatched to b now: a slot is free, b is not saturated, not down by its checks, and
 * its circuit lets a request through (closed, or half-open with no trial out). */
bool lx_backend_can_accept(const lx_backend *b);
/* Slots in use. */
int lx_backend_in_flight(const lx_backend *b);
void lx_backend_acquire(lx_backend *b);
/* Gives a slot back (on_ready follows); while saturated, may start an early /metrics read. */
void lx_backend_release(lx_backend *b);

/* From its config entry: priority (lower first), weight, max_concurrency. */
int lx_backend_priority(const lx_backend *b);
int lx_backend_weight(const lx_backend *b);
int lx_backend_max_concurrency(const lx_backend *b);
/* adaptive: requests waiting inside the backend at the last good /metrics read; 0 when unknown. */
double lx_backend_upstream_waiting(const lx_backend *b);
/* One number a balancing strategy may keep for b (routing/balance.c), zero at first. */
int64_t *lx_backend_balance_state(lx_backend *b);

/* models: auto — the names b listed at its last answer while up (none while down or never asked). */
size_t lx_backend_found(const lx_backend *b, const char *const **names);

/* The time to the head of an answer of b, measured by the proxy; kept as a peak EWMA (a slower sample
 * counts at once, faster ones decay it with LX_BACKEND_EWMA_TAU_S), 0 before the first. */
void lx_backend_note_latency(lx_backend *b, double seconds);
double lx_backend_latency_s(const lx_backend *b);

/* One pointer for another module's own per-backend state (backends/served.c keeps its model list here). */
void lx_backend_set_data(lx_backend *b, void *data);
void *lx_backend_data(const lx_backend *b);

typedef enum {
    LX_HEALTH_UNKNOWN = 0, /* no check has completed yet */
    LX_HEALTH_UP,
    LX_HEALTH_DOWN,
} lx_health;

const char *lx_health_name(lx_health h); /* "unknown", "up", "down" */

typedef enum {
    LX_CIRCUIT_CLOSED = 0,
    LX_CIRCUIT_OPEN,      /* out for the cooldown */
    LX_CIRCUIT_HALF_OPEN, /* the cooldown is over: the next request is the trial */
} lx_circuit;

const char *lx_circuit_name(lx_circuit c); /* "closed", "open", "half_open" */

/* Down: failure_threshold checks in a row failed, or the circuit is open (not half-open). A backend not
 * yet checked counts as up. What /health reports. */
bool lx_backend_is_down(const lx_backend *b);

/* May a new request be sent to b now: not retired, not drained, not down by its checks, and its circuit
 * closed, or half-open with no trial out. */
bool lx_backend_routable(const lx_backend *b);

/* Half-open with its trial out: a request may wait in b's line for the trial's verdict (on_ready when it
 * comes, on_down if it fails). */
bool lx_backend_awaiting_trial(const lx_backend *b);

/* Drains b (on: no new request; on_down follows when it changes) or brings it back (on_ready follows).
 * Returns whether the flag changed (false: it was so already). */
bool lx_backend_set_drained(lx_backend *b, bool on);
bool lx_backend_drained(const lx_backend *b);

/* Seconds until b may be routable again (its cooldown ends, or its next health check), at least 1. */
unsigned lx_backend_retry_after_s(const lx_backend *b);

/* A request is being sent to b. Returns true when it is the half-open trial; pass that to attempt_end. */
bool lx_backend_attempt_begin(lx_backend *b);
/* The request sent to b ended with verdict v (why: a short reason for FAILED, for the log and /health). */
void lx_backend_attempt_end(lx_backend *b, bool trial, lx_attempt_verdict v, const char *why);

typedef struct {
    const char *name;
    const char *url; /* as configured */
    lx_backend_kind kind;
    lx_health health;
    long consecutive_failures; /* failed checks since the last success */
    int64_t last_check_wall_s; /* when the last check completed (Unix time); 0 if never */
    const char *last_error;    /* of the last failed check ("" if none yet); kept after a success */
    uint64_t checks, check_failures;
    lx_circuit circuit;
    long request_failures;          /* requests in a row that failed (the circuit's count) */
    const char *last_request_error; /* of the last failed request ("" if none yet) */
    double circuit_open_s;          /* open: seconds until half-open; else 0 */
    uint64_t circuit_opened;        /* times the circuit opened */
    int in_flight;                  /* slots in use */
    int max_concurrency;
    bool retired; /* no longer in the config */
    bool drained; /* takes no new request (POST /admin/backends/NAME/drain) */
    bool adaptive;
    bool saturated;        /* adaptive: holding dispatch now */
    bool metrics_ok;       /* adaptive: the last read succeeded */
    double waiting;        /* adaptive: vllm:num_requests_waiting at the last good read; -1 if never */
    double kv_cache_usage; /* adaptive: 0..1 at the last good read; -1 if never */
    double metrics_age_s;  /* since the last good read; -1 if never */
    uint64_t polls, poll_failures;
} lx_backend_info;

void lx_backend_info_get(const lx_backend *b, lx_backend_info *out);

/* "serving" (not drained), "draining" (drained, requests still in flight) or "drained" (none left). */
const char *lx_backend_drain_state(const lx_backend_info *info);

/* ---------- vLLM's /metrics, parsed (pure; any thread) ---------- */

typedef struct {
    double waiting;  /* sum of vllm:num_requests_waiting over its series */
    double kv_usage; /* the largest vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc (0..1) */
    bool has_waiting, has_kv;
} lx_vllm_load;

/* Reads the Prometheus text exposition in text. Returns true if either gauge was found. */
bool lx_vllm_metrics_parse(const char *text, size_t len, lx_vllm_load *out);

#endif
