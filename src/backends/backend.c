/*
 * Backends at run time: slots, limits, and the adaptive /metrics reader. See backend.h.
 *
 * Invariants:
 * - A backend object is never freed before the registry: a retired one keeps its name, slots and data
 *   pointer, so a request holding a slot (or waiting in its line) can always give it back.
 * - At most one /metrics read per backend is in flight (b->poll); it is cancelled when the backend
 *   stops being adaptive, is retired, or the registry is freed, and no callback of it comes after.
 * - saturated is only ever true while adaptive is on and the last read succeeded and said so.
 * - At most one health check per backend is in flight (b->hc), likewise cancelled on retire and free.
 * - The circuit is a deadline, not a timer: open until open_until_ns, half-open after it (until a verdict);
 *   at most one trial is out at a time (trial_out), cleared by the attempt_end its begin returned true for.
 * - drained: neither routable nor accepting; set and cleared only by lx_backend_set_drained (and retire).
 * - Every uv handle is closed before the memory holding it goes (the registry counts pending closes:
 *   two timers per backend).
 */
#include "backends/backend.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/kind.h"
#include "utils/buf.h"
#include "utils/log.h"

struct lx_backend {
    lx_backends *set;
    char *name;
    char *metrics_url;
    int in_flight, max_concurrency;
    int priority, weight;
    int64_t balance;  /* a balancing strategy's state for it */
    double latency_s; /* peak EWMA of the time to an answer's head */
    uint64_t latency_ns_at;
    bool retired, adaptive, seen;
    bool drained; /* no new request; kept across reloads while the backend stays */
    double kv_threshold;
    void *data;
    /* adaptive */
    uv_timer_t timer;
    lx_upstream *poll;
    int poll_status;
    lx_buf body;
    uint64_t poll_started_ns, last_ok_ns;
    bool saturated, metrics_ok, failing;
    int handles_open; /* while the registry is being freed */
    double waiting, kv;
    uint64_t polls, poll_failures;
    /* health */
    char *url;
    lx_backend_kind kind;
    char *health_url;
    lx_kind_request probe; /* header lines the kind's probe_headers adds to checks and discovery (its key) */
    char *ca_file;         /* https://: backends.NAME.ca_file and tls_verify, for checks, discovery, /metrics */
    bool tls_insecure;
    uv_timer_t hc_timer;
    lx_upstream *hc;
    int hc_status;
    uint64_t hc_interval_ms, hc_timeout_ms;
    long hc_threshold;
    lx_health health;
    long consecutive_failures;
    int64_t last_check_wall_s;
    char last_error[160];
    uint64_t checks, check_failures;
    /* models: auto */
    bool models_auto;
    char *models_url;
    lx_upstream *disc;
    int disc_status;
    lx_buf disc_body;
    char **found; /* what it said it serves, at its last good answer while up */
    size_t n_found;
    bool found_known; /* it answered since it was last up (what it serves has been logged) */
    /* the circuit breaker */
    uint64_t cooldown_ns;
    uint64_t open_until_ns; /* 0: closed; else open until then, half-open after */
    bool trial_out;         /* half-open: the trial request is on its way */
    long req_failures;
    char last_req_error[160];
    uint64_t opened;
};

struct lx_backends {
    uv_loop_t *loop;
    lx_http_client *client;
    lx_backend_ready_fn on_ready;
    lx_backend_ready_fn on_down;
    lx_backend_ready_fn on_models;
    void *ud;
    lx_backend **v;
    size_t n, cap;
    size_t closing; /* timers not yet closed (two per backend) */
    bool freeing;
};

static void ready(lx_backend *b)
{
    if (b->set->on_ready && !b->set->freeing) b->set->on_ready(b, b->set->ud);
}

static void went_down(lx_backend *b)
{
    if (b->set->on_down && !b->set->freeing) b->set->on_down(b, b->set->ud);
}

static void models_changed(lx_backend *b)
{
    if (b->set->on_models && !b->set->freeing) b->set->on_models(b, b->set->ud);
}

/* ---------- the /metrics reader ---------- */

static void set_saturated(lx_backend *b, bool on)
{
    bool was = b->saturated;
    b->saturated = on;
    if (was && !on) ready(b);
}

static void read_failed(lx_backend *b, const char *why)
{
    b->poll_failures++;
    b->metrics_ok = false;
    if (!b->failing)
        LX_WARN(NULL, "backend %s: adaptive: cannot read %s (%s); dispatching by max_concurrency (%d) alone", b->name,
                b->metrics_url, why, b->max_concurrency);
    b->failing = true;
    set_saturated(b, false);
}

static void read_ok(lx_backend *b, const lx_vllm_load *load)
{
    if (b->failing) LX_INFO(NULL, "backend %s: adaptive: reading %s again", b->name, b->metrics_url);
    b->failing = false;
    b->metrics_ok = true;
    b->last_ok_ns = lx_now_ns();
    b->waiting = load->has_waiting ? load->waiting : 0;
    b->kv = load->has_kv ? load->kv_usage : 0;
    set_saturated(b, b->waiting > 0 || b->kv > b->kv_threshold);
}

static void on_poll_headers(lx_upstream *u, const lx_up_head *h, void *ud)
{
    (void)u;
    ((lx_backend *)ud)->poll_status = h->status;
}

static bool on_poll_data(lx_upstream *u, const char *data, size_t len, void *ud)
{
    (void)u;
    return lx_buf_append(&((lx_backend *)ud)->body, data, len) == 0;
}

static void on_poll_done(lx_upstream *u, lx_up_result r, const char *detail, void *ud)
{
    (void)u;
    lx_backend *b = ud;
    b->poll = NULL;
    char why[160];
    lx_vllm_load load;
    if (r != LX_UP_OK) {
        snprintf(why, sizeof why, "%s%s%s", lx_up_result_name(r), detail && *detail ? ": " : "", detail ? detail : "");
        read_failed(b, why);
    } else if (b->poll_status != 200) {
        snprintf(why, sizeof why, "HTTP %d", b->poll_status);
        read_failed(b, why);
    } else if (!lx_vllm_metrics_parse(b->body.p, b->body.len, &load)) {
        read_failed(b, "no vllm:num_requests_waiting or vllm:kv_cache_usage_perc in it");
    } else {
        read_ok(b, &load);
    }
    lx_buf_free(&b->body);
}

static const lx_upstream_cbs poll_cbs = {on_poll_headers, on_poll_data, on_poll_done};

/* A probe's header lines: accept, then what the kind adds (out has LX_KIND_MAX_HEADERS + 2 slots). */
static const char *const *probe_headers(const lx_backend *b, const char *accept, const char **out)
{
    size_t n = 0;
    out[n++] = accept;
    for (size_t i = 0; i < b->probe.n_headers; i++)
        out[n++] = b->probe.headers[i];
    out[n] = NULL;
    return out;
}

static void start_poll(lx_backend *b)
{
    const char *headers[LX_KIND_MAX_HEADERS + 2];
    lx_upstream_req req = {
        .method = "GET",
        .url = b->metrics_url,
        .headers = probe_headers(b, "Accept: text/plain", headers),
        .ca_file = b->ca_file,
        .tls_insecure = b->tls_insecure,
        .timeout_ms = LX_BACKEND_POLL_TIMEOUT_MS,
        .connect_timeout_ms = LX_BACKEND_POLL_TIMEOUT_MS,
    };
    lx_buf_init(&b->body, LX_BACKEND_METRICS_MAX);
    b->poll_status = 0;
    b->poll_started_ns = lx_now_ns();
    b->polls++;
    b->poll = lx_upstream_start(b->set->client, &req, &poll_cbs, b);
}

static void cancel_poll(lx_backend *b)
{
    if (b->poll) lx_upstream_cancel(b->poll);
    b->poll = NULL;
    lx_buf_free(&b->body);
}

static void on_tick(uv_timer_t *t)
{
    lx_backend *b = t->data;
    if (b->poll == NULL && b->adaptive && !b->retired) start_poll(b);
}

/* Adaptive off (or retired): no reads, no saturation. */
static void stop_adaptive(lx_backend *b)
{
    uv_timer_stop(&b->timer);
    cancel_poll(b);
    b->metrics_ok = b->failing = false;
    set_saturated(b, false);
}

/* ---------- models: auto ---------- */

static void forget_found(lx_backend *b)
{
    for (size_t i = 0; i < b->n_found; i++)
        free(b->found[i]);
    free(b->found);
    b->found = NULL;
    b->n_found = 0;
}

/* A name fit to serve: non-empty, no control characters, not too long. */
static bool fit_name(const char *s, size_t len)
{
    if (len == 0 || len > LX_BACKEND_MODEL_NAME_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

/* names: one per line (a kind's parse_models). Replaces b->found; true when it changed. */
static bool set_found(lx_backend *b, const char *names, size_t len)
{
    char **v = NULL;
    size_t n = 0;
    for (const char *p = names, *end = names + len; p < end && n < LX_BACKEND_MODELS_MAX;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (fit_name(p, l)) {
            v = lx_xrealloc(v, (n + 1) * sizeof *v);
            v[n] = lx_xmalloc(l + 1);
            memcpy(v[n], p, l);
            v[n++][l] = '\0';
        }
        p += l + 1;
    }
    bool same = n == b->n_found;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(v[i], b->found[i]) == 0;
    forget_found(b);
    b->found = v;
    b->n_found = n;
    return !same;
}

static void log_found(const lx_backend *b)
{
    if (b->n_found == 0) {
        LX_WARN(NULL, "backend %s: models: auto, but %s lists no model; it serves nothing until it does", b->name,
                b->models_url);
        return;
    }
    lx_buf list;
    lx_buf_init(&list, 4096);
    for (size_t i = 0; i < b->n_found; i++)
        lx_buf_printf(&list, "%s%s", i ? ", " : "", b->found[i]);
    LX_INFO(NULL, "backend %s serves (models: auto): %s", b->name, list.p ? list.p : "");
    lx_buf_free(&list);
}

static void on_disc_headers(lx_upstream *u, const lx_up_head *h, void *ud)
{
    (void)u;
    ((lx_backend *)ud)->disc_status = h->status;
}

static bool on_disc_data(lx_upstream *u, const char *data, size_t len, void *ud)
{
    (void)u;
    return lx_buf_append(&((lx_backend *)ud)->disc_body, data, len) == 0;
}

/* A failed read keeps what was known (the health checks decide whether b is up). */
static void on_disc_done(lx_upstream *u, lx_up_result r, const char *detail, void *ud)
{
    (void)u, (void)detail;
    lx_backend *b = ud;
    b->disc = NULL;
    lx_buf names;
    lx_buf_init(&names, 0);
    const lx_kind *k = lx_kind_get(b->kind);
    if (r != LX_UP_OK || b->disc_status != 200 || k->parse_models == NULL ||
        k->parse_models(b->disc_body.p ? b->disc_body.p : "", b->disc_body.len, &names) != 0) {
        LX_WARN(NULL, "backend %s: cannot read its models from %s (%s)", b->name, b->models_url,
                r != LX_UP_OK           ? lx_up_result_name(r)
                : b->disc_status != 200 ? "not HTTP 200"
                                        : "unreadable");
    } else if (b->health == LX_HEALTH_UP) {
        bool changed = set_found(b, names.p ? names.p : "", names.len);
        if (changed || !b->found_known) log_found(b);
        b->found_known = true;
        if (changed) models_changed(b);
    }
    lx_buf_free(&names);
    lx_buf_free(&b->disc_body);
}

static const lx_upstream_cbs disc_cbs = {on_disc_headers, on_disc_data, on_disc_done};

/* After each passing check: ask b what it serves. */
static void discover(lx_backend *b)
{
    const char *headers[LX_KIND_MAX_HEADERS + 2];
    if (!b->models_auto || b->disc != NULL || b->models_url == NULL || b->set->client == NULL) return;
    lx_upstream_req req = {
        .method = "GET",
        .url = b->models_url,
        .headers = probe_headers(b, "Accept: application/json", headers),
        .ca_file = b->ca_file,
        .tls_insecure = b->tls_insecure,
        .timeout_ms = b->hc_timeout_ms,
        .connect_timeout_ms = b->hc_timeout_ms,
    };
    lx_buf_init(&b->disc_body, LX_BACKEND_METRICS_MAX);
    b->disc_status = 0;
    b->disc = lx_upstream_start(b->set->client, &req, &disc_cbs, b);
}

static void stop_discovery(lx_backend *b)
{
    if (b->disc) lx_upstream_cancel(b->disc);
    b->disc = NULL;
    lx_buf_free(&b->disc_body);
}

/* b is down or leaves models: auto: what it said it serves no longer counts. */
static void drop_found(lx_backend *b)
{
    b->found_known = false;
    if (b->n_found == 0) return;
    forget_found(b);
    models_changed(b);
}

/* ---------- the health checker ---------- */

const char *lx_health_name(lx_health h)
{
    switch (h) {
    case LX_HEALTH_UP: return "up";
    case LX_HEALTH_DOWN: return "down";
    default: return "unknown";
    }
}

static const char *health_path(lx_backend_kind kind) { return lx_kind_get(kind)->health_path; }

static void check_done(lx_backend *b, const char *error)
{
    b->last_check_wall_s = lx_wall_s();
    if (error == NULL) {
        if (b->health != LX_HEALTH_UP)
            LX_INFO(NULL, "backend %s: health check passed (%s); marked up", b->name, b->health_url);
        if (b->health == LX_HEALTH_DOWN && b->open_until_ns > lx_now_ns()) {
            b->open_until_ns = lx_now_ns(); /* back from the dead: the next request is the trial, now */
            LX_INFO(NULL, "backend %s: its cooldown ends early; the next request is a trial", b->name);
        }
        bool was_down = b->health == LX_HEALTH_DOWN;
        b->health = LX_HEALTH_UP;
        b->consecutive_failures = 0;
        discover(b);
        if (was_down) ready(b);
        return;
    }
    b->check_failures++;
    b->consecutive_failures++;
    snprintf(b->last_error, sizeof b->last_error, "%s", error);
    if (b->health != LX_HEALTH_DOWN && b->consecutive_failures >= b->hc_threshold) {
        LX_WARN(NULL, "backend %s: %ld health check(s) in a row failed (%s: %s); marked down", b->name,
                b->consecutive_failures, b->health_url, error);
        b->health = LX_HEALTH_DOWN;
        drop_found(b);
        went_down(b);
    }
}

static void on_hc_headers(lx_upstream *u, const lx_up_head *h, void *ud)
{
    (void)u;
    ((lx_backend *)ud)->hc_status = h->status;
}

static bool on_hc_data(lx_upstream *u, const char *data, size_t len, void *ud)
{
    (void)u, (void)data, (void)len, (void)ud;
    return true; /* the status is the answer; the body is dropped */
}

static void on_hc_done(lx_upstream *u, lx_up_result r, const char *detail, void *ud)
{
    (void)u;
    lx_backend *b = ud;
    b->hc = NULL;
    char why[160];
    if (r != LX_UP_OK) {
        snprintf(why, sizeof why, "%s%s%.120s", lx_up_result_name(r), detail && *detail ? ": " : "",
                 detail ? detail : "");
        check_done(b, why);
    } else if (b->hc_status != 200) {
        snprintf(why, sizeof why, "HTTP %d", b->hc_status);
        check_done(b, why);
    } else {
        check_done(b, NULL);
    }
}

static const lx_upstream_cbs hc_cbs = {on_hc_headers, on_hc_data, on_hc_done};

/* A check on its own connection: it tests that a new one can be made, and it leaves no idle connection in
 * the pool that a request would then reuse (curl silently re-sends a request whose reused connection
 * drops before any answer, which would hide a backend's failure from the request path). */
static void on_hc_tick(uv_timer_t *t)
{
    const char *headers[LX_KIND_MAX_HEADERS + 2];
    lx_backend *b = t->data;
    if (b->hc != NULL || b->retired) return; /* the last check is still running: it counts when it ends */
    lx_upstream_req req = {
        .method = "GET",
        .url = b->health_url,
        .headers = probe_headers(b, "Accept: */*", headers),
        .ca_file = b->ca_file,
        .tls_insecure = b->tls_insecure,
        .timeout_ms = b->hc_timeout_ms,
        .connect_timeout_ms = b->hc_timeout_ms,
        .own_connection = true, /* see below */
    };
    b->hc_status = 0;
    b->checks++;
    b->hc = lx_upstream_start(b->set->client, &req, &hc_cbs, b);
    if (b->hc == NULL) check_done(b, "could not start the request");
}

static void stop_health(lx_backend *b)
{
    uv_timer_stop(&b->hc_timer);
    if (b->hc) lx_upstream_cancel(b->hc);
    b->hc = NULL;
}

/* A new backend, or one whose address changed, starts again from unknown with a check at once; one back
 * from retirement is checked at once too. */
static void apply_health(lx_backend *b, const lx_config *c, const lx_backend_conf *bc)
{
    uint64_t interval = (uint64_t)(c->health_check.interval_s * 1000.0);
    if (interval == 0) interval = 1;
    uint64_t timeout = (uint64_t)(c->health_check.timeout_s * 1000.0);
    if (timeout == 0) timeout = 1;
    b->hc_threshold = c->health_check.failure_threshold;
    b->cooldown_ns = (uint64_t)(c->health_check.cooldown_s * 1e9);
    b->hc_timeout_ms = timeout;
    size_t n = strlen(bc->url) + strlen(health_path(bc->kind)) + 1;
    char *url = lx_xmalloc(n);
    snprintf(url, n, "%s%s", bc->url, health_path(bc->kind));
    bool target_changed = b->health_url == NULL || strcmp(url, b->health_url) != 0 || b->kind != bc->kind;
    bool stopped = !uv_is_active((uv_handle_t *)&b->hc_timer); /* new, or back from retirement */
    bool restart = target_changed || stopped || interval != b->hc_interval_ms;
    free(b->health_url);
    b->health_url = url;
    free(b->url);
    b->url = lx_xstrdup(bc->url);
    b->kind = bc->kind;
    b->hc_interval_ms = interval;
    if (target_changed) {
        stop_health(b);
        b->health = LX_HEALTH_UNKNOWN;
        b->consecutive_failures = 0;
        b->last_error[0] = '\0';
    } else if (b->health == LX_HEALTH_UP && b->consecutive_failures >= b->hc_threshold) {
        b->health = LX_HEALTH_DOWN; /* the threshold went down */
    }
    if (restart && b->set->client != NULL) { /* no client (unit tests): no checks, the backend stays unknown */
        uv_timer_stop(&b->hc_timer);
        uv_timer_start(&b->hc_timer, on_hc_tick, target_changed || stopped ? 0 : interval, interval);
    }
}

/* ---------- the circuit breaker ---------- */

const char *lx_circuit_name(lx_circuit c)
{
    switch (c) {
    case LX_CIRCUIT_OPEN: return "open";
    case LX_CIRCUIT_HALF_OPEN: return "half_open";
    default: return "closed";
    }
}

/* The clock is read only while the circuit is not closed: the common case costs nothing. */
static lx_circuit circuit(const lx_backend *b)
{
    if (b->open_until_ns == 0) return LX_CIRCUIT_CLOSED;
    return lx_now_ns() < b->open_until_ns ? LX_CIRCUIT_OPEN : LX_CIRCUIT_HALF_OPEN;
}

bool lx_backend_is_down(const lx_backend *b)
{
    return !b->retired && (b->health == LX_HEALTH_DOWN || circuit(b) == LX_CIRCUIT_OPEN);
}

/* The circuit lets a request through now: closed, or half-open with no trial out. */
static bool circuit_permits(const lx_backend *b)
{
    lx_circuit c = circuit(b);
    return c == LX_CIRCUIT_CLOSED || (c == LX_CIRCUIT_HALF_OPEN && !b->trial_out);
}

bool lx_backend_routable(const lx_backend *b)
{
    return !b->retired && !b->drained && b->health != LX_HEALTH_DOWN && circuit_permits(b);
}

bool lx_backend_awaiting_trial(const lx_backend *b)
{
    return !b->retired && !b->drained && b->health != LX_HEALTH_DOWN && b->trial_out &&
           circuit(b) == LX_CIRCUIT_HALF_OPEN;
}

bool lx_backend_set_drained(lx_backend *b, bool on)
{
    if (b->drained == on) return false;
    b->drained = on;
    LX_LOG(on ? LX_LOG_WARN : LX_LOG_INFO, NULL, "backend %s %s (%d in flight)", b->name,
           on ? "drained: it takes no new request" : "undrained: it takes requests again", b->in_flight);
    if (on)
        went_down(b);
    else
        ready(b);
    return true;
}

bool lx_backend_drained(const lx_backend *b) { return b->drained; }

unsigned lx_backend_retry_after_s(const lx_backend *b)
{
    uint64_t now = lx_now_ns(), wait_ns = 0;
    if (b->open_until_ns > now) wait_ns = b->open_until_ns - now; /* open: until the cooldown ends */
    if (b->health == LX_HEALTH_DOWN && b->hc_interval_ms * 1000000u > wait_ns) wait_ns = b->hc_interval_ms * 1000000u;
    uint64_t s = (wait_ns + 999999999u) / 1000000000u;
    return s < 1 ? 1 : s > 3600 ? 3600 : (unsigned)s;
}

bool lx_backend_attempt_begin(lx_backend *b)
{
    if (circuit(b) != LX_CIRCUIT_HALF_OPEN || b->trial_out) return false;
    LX_ASSERT(b->open_until_ns != 0);
    b->trial_out = true;
    LX_INFO(NULL, "backend %s: cooldown over; sending one trial request", b->name);
    return true;
}

static void circuit_failure(lx_backend *b, bool trial, const char *why)
{
    b->req_failures++;
    snprintf(b->last_req_error, sizeof b->last_req_error, "%s", why ? why : "failed");
    bool closed = b->open_until_ns == 0;
    if (closed && b->req_failures < b->hc_threshold) return;
    b->open_until_ns = lx_now_ns() + b->cooldown_ns;
    if (closed) b->opened++;
    if (closed || trial) {
        LX_WARN(NULL, "backend %s: %s (%s); taking no new requests for %.3g s", b->name,
                trial ? "the trial request failed" : "requests failed in a row", b->last_req_error,
                (double)b->cooldown_ns / 1e9);
        went_down(b);
    }
}

void lx_backend_attempt_end(lx_backend *b, bool trial, lx_attempt_verdict v, const char *why)
{
    LX_ASSERT(!trial || b->trial_out); /* one trial at a time, ended once */
    if (trial) b->trial_out = false;
    if (v == LX_ATTEMPT_FAILED) {
        circuit_failure(b, trial, why);
        return;
    }
    if (v == LX_ATTEMPT_OK) {
        if (b->open_until_ns != 0) LX_INFO(NULL, "backend %s: a request succeeded; taking requests again", b->name);
        b->open_until_ns = 0;
        b->req_failures = 0;
    }
    if (trial) ready(b); /* those waiting for the trial's verdict may go (or the next of them is the trial) */
}

/* ---------- the registry ---------- */

lx_backends *lx_backends_new(uv_loop_t *loop, lx_http_client *client, lx_backend_ready_fn on_ready, void *ud)
{
    lx_backends *s = lx_xcalloc(1, sizeof *s);
    *s = (lx_backends){.loop = loop, .client = client, .on_ready = on_ready, .ud = ud};
    return s;
}

void lx_backends_on_down(lx_backends *s, lx_backend_ready_fn on_down) { s->on_down = on_down; }

void lx_backends_on_models(lx_backends *s, lx_backend_ready_fn on_models) { s->on_models = on_models; }

static lx_backend *backend_new(lx_backends *s, const char *name)
{
    lx_backend *b = lx_xcalloc(1, sizeof *b);
    b->set = s;
    b->name = lx_xstrdup(name);
    b->waiting = b->kv = -1;
    uv_timer_init(s->loop, &b->timer);
    b->timer.data = b;
    uv_timer_init(s->loop, &b->hc_timer);
    b->hc_timer.data = b;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4;
        s->v = lx_xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = b;
    return b;
}

/* models: auto, from its kind's models_path. A new address or kind forgets what the old one served. */
static void apply_discovery(lx_backend *b, const lx_backend_conf *c)
{
    const char *path = lx_kind_get(c->kind)->models_path;
    char *url = NULL;
    if (c->models_auto && path) {
        size_t n = strlen(c->url) + strlen(path) + 1;
        url = lx_xmalloc(n);
        snprintf(url, n, "%s%s", c->url, path);
    }
    bool changed = (url == NULL) != (b->models_url == NULL) || (url && strcmp(url, b->models_url) != 0);
    free(b->models_url);
    b->models_url = url;
    b->models_auto = url != NULL;
    if (!changed) return;
    stop_discovery(b);
    drop_found(b);
    if (b->health == LX_HEALTH_UP) discover(b);
}

/* What every probe of b carries: the kind's header lines (a copy: the snapshot may go first) and TLS options. */
static void apply_probe(lx_backend *b, const lx_backend_conf *c)
{
    const lx_kind *k = lx_kind_get(c->kind);
    lx_kind_request_reset(&b->probe);
    if (k->probe_headers) k->probe_headers(c, &b->probe);
    free(b->ca_file);
    b->ca_file = c->ca_file ? lx_xstrdup(c->ca_file) : NULL;
    b->tls_insecure = !c->tls_verify;
}

static void apply_conf(lx_backend *b, const lx_backend_conf *c)
{
    bool was_adaptive = b->adaptive && !b->retired;
    b->retired = false;
    b->max_concurrency = c->max_concurrency;
    b->priority = c->priority;
    b->weight = c->weight;
    b->kv_threshold = c->kv_cache_threshold;
    b->adaptive = c->adaptive;
    size_t n = strlen(c->url) + sizeof "/metrics";
    char *url = lx_xmalloc(n);
    snprintf(url, n, "%s/metrics", c->url);
    bool url_changed = b->metrics_url == NULL || strcmp(url, b->metrics_url) != 0;
    free(b->metrics_url);
    b->metrics_url = url;
    if (!b->adaptive)
        stop_adaptive(b);
    else if (!was_adaptive || url_changed) {
        stop_adaptive(b);
        uv_timer_start(&b->timer, on_tick, 0, LX_BACKEND_POLL_MS);
    }
}

static void retire(lx_backend *b)
{
    if (b->retired) return;
    b->retired = true;
    b->drained = false; /* a backend the config brings back later starts afresh */
    stop_adaptive(b);
    stop_health(b);
    stop_discovery(b);
    forget_found(b); /* the caller rebuilds what is served */
    free(b->models_url);
    b->models_url = NULL;
    b->adaptive = false;
}

void lx_backends_configure(lx_backends *s, const lx_config *c)
{
    for (size_t i = 0; i < s->n; i++)
        s->v[i]->seen = false;
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *bc = &c->backends[i];
        if (!bc->enabled || bc->url == NULL) continue;
        lx_backend *b = lx_backends_find(s, bc->name);
        if (b == NULL) b = backend_new(s, bc->name);
        apply_conf(b, bc);
        apply_probe(b, bc);
        apply_health(b, c, bc);
        apply_discovery(b, bc);
        b->seen = true;
    }
    for (size_t i = 0; i < s->n; i++) {
        if (!s->v[i]->seen) retire(s->v[i]);
        ready(s->v[i]); /* a limit may have gone up */
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    lx_backend *b = h->data;
    lx_backends *s = b->set;
    if (--b->handles_open > 0) return;
    free(b->name);
    free(b->metrics_url);
    free(b->models_url);
    forget_found(b);
    free(b->url);
    free(b->health_url);
    lx_kind_request_reset(&b->probe);
    free(b->ca_file);
    free(b);
    if (--s->closing == 0) {
        free(s->v);
        free(s);
    }
}

void lx_backends_free(lx_backends *s)
{
    if (s == NULL) return;
    s->freeing = true;
    if (s->n == 0) {
        free(s->v);
        free(s);
        return;
    }
    s->closing = s->n;
    for (size_t i = 0; i < s->n; i++) {
        lx_backend *b = s->v[i];
        uv_timer_stop(&b->timer);
        cancel_poll(b);
        stop_health(b);
        stop_discovery(b);
        b->handles_open = 2;
        uv_close((uv_handle_t *)&b->timer, on_timer_closed);
        uv_close((uv_handle_t *)&b->hc_timer, on_timer_closed);
    }
}

lx_backend *lx_backends_find(lx_backends *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i]->name, name) == 0) return s->v[i];
    return NULL;
}

size_t lx_backends_count(const lx_backends *s) { return s->n; }

lx_backend *lx_backends_at(lx_backends *s, size_t i) { return i < s->n ? s->v[i] : NULL; }

/* ---------- one backend ---------- */

const char *lx_backend_name(const lx_backend *b) { return b->name; }

/* A retired backend still serves the requests admitted to it before; a down or drained one takes none. */
bool lx_backend_can_accept(const lx_backend *b)
{
    return b->in_flight < b->max_concurrency && !b->saturated && !b->drained && b->health != LX_HEALTH_DOWN &&
           circuit_permits(b);
}

int lx_backend_in_flight(const lx_backend *b) { return b->in_flight; }

void lx_backend_acquire(lx_backend *b)
{
    LX_ASSERT(b->in_flight >= 0);
    b->in_flight++;
}

void lx_backend_release(lx_backend *b)
{
    LX_ASSERT(b->in_flight > 0); /* every release has its acquire */
    if (b->in_flight > 0) b->in_flight--;
    if (b->saturated && b->poll == NULL &&
        lx_now_ns() - b->poll_started_ns >= (uint64_t)LX_BACKEND_REPOLL_MIN_MS * 1000000u)
        start_poll(b);
    ready(b);
}

int lx_backend_priority(const lx_backend *b) { return b->priority; }

int lx_backend_weight(const lx_backend *b) { return b->weight; }

int lx_backend_max_concurrency(const lx_backend *b) { return b->max_concurrency; }

double lx_backend_upstream_waiting(const lx_backend *b) { return b->metrics_ok && b->waiting > 0 ? b->waiting : 0; }

int64_t *lx_backend_balance_state(lx_backend *b) { return &b->balance; }

size_t lx_backend_found(const lx_backend *b, const char *const **names)
{
    *names = (const char *const *)b->found;
    return b->n_found;
}

/* Finagle's peak EWMA: a slower answer counts at once, a faster one pulls the mean down with time. */
void lx_backend_note_latency(lx_backend *b, double seconds)
{
    uint64_t now = lx_now_ns();
    double w = b->latency_ns_at ? exp(-(double)(now - b->latency_ns_at) / (LX_BACKEND_EWMA_TAU_S * 1e9)) : 0;
    b->latency_s = seconds > b->latency_s ? seconds : b->latency_s * w + seconds * (1 - w);
    b->latency_ns_at = now;
}

double lx_backend_latency_s(const lx_backend *b) { return b->latency_s; }

void lx_backend_set_data(lx_backend *b, void *data) { b->data = data; }

void *lx_backend_data(const lx_backend *b) { return b->data; }

void lx_backend_info_get(const lx_backend *b, lx_backend_info *out)
{
    *out = (lx_backend_info){
        .name = b->name,
        .url = b->url ? b->url : "",
        .kind = b->kind,
        .health = b->health,
        .consecutive_failures = b->consecutive_failures,
        .last_check_wall_s = b->last_check_wall_s,
        .last_error = b->last_error,
        .checks = b->checks,
        .check_failures = b->check_failures,
        .circuit = circuit(b),
        .request_failures = b->req_failures,
        .last_request_error = b->last_req_error,
        .circuit_open_s = b->open_until_ns > lx_now_ns() ? (double)(b->open_until_ns - lx_now_ns()) / 1e9 : 0,
        .circuit_opened = b->opened,
        .in_flight = b->in_flight,
        .max_concurrency = b->max_concurrency,
        .retired = b->retired,
        .drained = b->drained,
        .adaptive = b->adaptive,
        .saturated = b->saturated,
        .metrics_ok = b->metrics_ok,
        .waiting = b->waiting,
        .kv_cache_usage = b->kv,
        .metrics_age_s = b->last_ok_ns ? (double)(lx_now_ns() - b->last_ok_ns) / 1e9 : -1,
        .polls = b->polls,
        .poll_failures = b->poll_failures,
    };
}

const char *lx_backend_drain_state(const lx_backend_info *info)
{
    if (!info->drained) return "serving";
    return info->in_flight > 0 ? "draining" : "drained";
}

/* ---------- vLLM's /metrics ---------- */

enum { M_NONE = -1, M_WAITING, M_KV };

static int metric_kind(const char *name, size_t len)
{
    static const struct {
        const char *name;
        int kind;
    } known[] = {
        {"vllm:num_requests_waiting", M_WAITING},
        {"vllm:kv_cache_usage_perc", M_KV},
        {"vllm:gpu_cache_usage_perc", M_KV},
    };
    for (size_t i = 0; i < LX_ARRAY_LEN(known); i++)
        if (strlen(known[i].name) == len && memcmp(known[i].name, name, len) == 0) return known[i].kind;
    return M_NONE;
}

/* p is at '{': returns the byte after the matching '}' (quotes and escapes respected), or NULL. */
static const char *skip_labels(const char *p, const char *end)
{
    bool quoted = false;
    for (p++; p < end; p++) {
        if (quoted && *p == '\\')
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (!quoted && *p == '}')
            return p + 1;
    }
    return NULL;
}

static bool parse_value(const char *p, const char *end, double *v)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    char tok[64];
    size_t n = 0;
    while (p < end && *p != ' ' && *p != '\t' && *p != '\r' && n < sizeof tok - 1)
        tok[n++] = *p++;
    tok[n] = '\0';
    if (n == 0) return false;
    char *stop;
    *v = strtod(tok, &stop);
    return *stop == '\0' && isfinite(*v);
}

static void parse_line(const char *p, const char *end, lx_vllm_load *out)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end || *p == '#') return;
    const char *name = p;
    while (p < end && *p != '{' && *p != ' ' && *p != '\t')
        p++;
    int kind = metric_kind(name, (size_t)(p - name));
    if (kind == M_NONE) return;
    if (p < end && *p == '{' && (p = skip_labels(p, end)) == NULL) return;
    double v;
    if (!parse_value(p, end, &v)) return;
    if (kind == M_WAITING) {
        /* each value is finite, but a sum of huge ones is not: saturate, as /stats prints it as JSON */
        double sum = out->waiting + v;
        out->waiting = isfinite(sum) ? sum : copysign(DBL_MAX, sum);
        out->has_waiting = true;
    } else {
        if (!out->has_kv || v > out->kv_usage) out->kv_usage = v;
        out->has_kv = true;
    }
}

bool lx_vllm_metrics_parse(const char *text, size_t len, lx_vllm_load *out)
{
    *out = (lx_vllm_load){0};
    const char *p = text ? text : "", *end = p + (text ? len : 0);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL) eol = end;
        parse_line(p, eol, out);
        p = eol + 1;
    }
    return out->has_waiting || out->has_kv;
}
