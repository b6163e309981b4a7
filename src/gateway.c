/*
 * The gateway's lifecycle: start (bind, wire the server to the routes, the client to the loop),
 * flush the log once per loop turn, reload on SIGHUP (and POST /admin/reload), shut down gracefully
 * on SIGINT/SIGTERM (a second signal exits at once).
 *
 * Reload: the new snapshot is loaded and validated whole before anything changes; then the pointer is
 * swapped and the live parts applied, all within one loop callback, so no request ever sees half of
 * it. A request holds its own reference to the snapshot it started with.
 * Shutdown: a 20 ms timer watches the server's connection count fall to zero (a connection that
 * answered its last request closes after it), and enforces server.shutdown_timeout.
 */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "api/stats_stream.h"
#include "gateway_observe.h"
#include "proxy.h"
#include "queue/admission.h"
#include "api/feedback.h"
#include "routing/experiment.h"
#include "routing/router.h"
#include "limits/auth.h"
#include "observe/gpu.h"
#include "limits/rate_limiter.h"
#include "limits/usage_today.h"
#include "observe/stats.h"
#include "utils/log.h"

#define SHUTDOWN_POLL_MS 20

static void on_check(uv_check_t *h)
{
    (void)h;
    lx_log_flush();
}

static void on_signal(uv_signal_t *h, int signum)
{
    lx_gateway *gw = h->data;
    if (gw->stop_signals++ > 0) {
        LX_WARN(NULL, "second signal %s: exiting now", signum == SIGINT ? "SIGINT" : "SIGTERM");
        lx_log_flush();
        _Exit(1);
    }
    LX_INFO(NULL, "%s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    lx_gateway_shutdown(gw);
}

static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    lx_gateway *gw = h->data;
    if (gw->shutting_down) {
        LX_WARN(NULL, "SIGHUP while shutting down: not reloading");
        return;
    }
    lx_reload_diff d = {0};
    lx_buf errors;
    lx_buf_init(&errors, 0);
    if (lx_gateway_reload(gw, "SIGHUP", &d, &errors) == 0) lx_reload_diff_free(&d);
    lx_buf_free(&errors);
}

static void ratelimit_probe(void *ud, lx_stats_ratelimit_view *out)
{
    lx_rate_stats st;
    lx_rate_limiter_stats(ud, &st);
    out->fallbacks = st.fallbacks;
    out->redis_up = st.redis_configured ? (st.redis_up ? 1 : 0) : -1;
}

/* ---------- what api/ sees of the gateway (api/context.h) ---------- */

static const lx_config *api_config(void *ud) { return ((lx_gateway *)ud)->config; }

static long api_connections(void *ud)
{
    lx_gateway *gw = ud;
    return gw->server ? (long)lx_http_server_connections(gw->server) : -1;
}

static bool api_shutting_down(void *ud) { return ((lx_gateway *)ud)->shutting_down; }

static int api_reload(void *ud, const char *via, lx_reload_diff *diff, lx_buf *errors)
{
    return lx_gateway_reload(ud, via, diff, errors);
}

static void api_proxy(void *ud, lx_http_req *req, lx_endpoint ep) { lx_proxy_handle(ud, req, ep); }

/* The pointers to the services are set once they exist (lx_gateway_start) and cleared as they go. */
static void api_init(lx_gateway *gw)
{
    gw->api = (lx_api_ctx){
        .ud = gw,
        .config = api_config,
        .connections = api_connections,
        .shutting_down = api_shutting_down,
        .reload = api_reload,
        .proxy = api_proxy,
        .started_wall_s = gw->started_wall_s,
        .started_ns = gw->started_ns,
    };
}

/* A request handed to the pipeline is the pipeline's until it ends: the client leaving, or catching up.
 * A /stats/stream client is the stream module's. */
static void on_abort(lx_http_req *req, void *ud)
{
    lx_api_ctx *api = ud;
    if (lx_stats_streams_abort(api->streams, req) || lx_feedback_abort(req)) return;
    lx_proxy_abort(req);
}

static void on_drain(lx_http_req *req, void *ud)
{
    (void)ud;
    lx_proxy_drain(req);
}

static void server_opts(const lx_config *c, lx_gateway *gw, lx_http_server_opts *o)
{
    *o = (lx_http_server_opts){
        .host = c->server.host,
        .port = c->server.port,
        .max_connections = c->server.max_connections,
        .max_header_bytes = c->server.max_header_bytes,
        .max_body_bytes = c->server.max_body_bytes,
        .header_timeout_ms = (uint64_t)(c->server.header_timeout_s * 1000.0),
        .idle_timeout_ms = (uint64_t)(c->server.idle_timeout_s * 1000.0),
        .server_name = "lexora",
        .on_request = lx_routes_on_request,
        .on_abort = on_abort,
        .on_drain = on_drain,
        .render_error = lx_routes_render_error,
        .ud = &gw->api,
    };
}

static void experiments_json(void *ud, lx_buf *out) { lx_experiments_render_json(ud, out); }
static void experiments_prom(void *ud, lx_buf *out) { lx_experiments_render_prometheus(ud, out); }

int lx_gateway_start(lx_gateway *gw, uv_loop_t *loop, lx_config *config)
{
    *gw = (lx_gateway){.loop = loop, .config = config};
    lx_list_init(&gw->spare);
    gw->started_wall_s = lx_wall_s();
    gw->started_ns = lx_now_ns();
    api_init(gw);
    lx_http_server_opts o;
    server_opts(config, gw, &o);
    int rc = lx_http_server_start(loop, &o, &gw->server);
    if (rc != 0) {
        lx_config_unref(config);
        gw->config = NULL;
        return rc;
    }
    gw->client = lx_http_client_new(loop);
    if (gw->client == NULL) {
        lx_http_server_close(gw->server);
        lx_config_unref(config);
        *gw = (lx_gateway){0};
        return UV_ENOMEM;
    }
    gw->admission = lx_admission_new(loop, gw->client, config);
    gw->router = lx_router_new(gw->admission);
    gw->experiments = lx_experiments_new();
    lx_experiments_apply(gw->experiments, config);
    gw->api.experiments = gw->experiments;
    gw->rate_limiter = lx_rate_limiter_new(loop, config);
    gw->usage_today = lx_usage_today_new(NULL, NULL);
    lx_auth_warn_plain_keys(config);
    lx_auth_warn_open(config);
    uv_check_init(loop, &gw->log_flush);
    uv_check_start(&gw->log_flush, on_check);
    uv_unref((uv_handle_t *)&gw->log_flush);
    uv_signal_init(loop, &gw->sig_int);
    uv_signal_init(loop, &gw->sig_term);
    gw->sig_int.data = gw->sig_term.data = gw;
    uv_signal_start(&gw->sig_int, on_signal, SIGINT);
    uv_signal_start(&gw->sig_term, on_signal, SIGTERM);
    uv_signal_init(loop, &gw->sig_hup);
    gw->sig_hup.data = gw;
    uv_signal_start(&gw->sig_hup, on_sighup, SIGHUP);
    uv_timer_init(loop, &gw->shutdown_timer);
    gw->shutdown_timer.data = gw;
    gw->gpu = lx_gpu_new(loop);
    gw->api.admission = gw->admission;
    gw->api.gpu = gw->gpu;
    gw->api.rate_limiter = gw->rate_limiter;
    gw->api.usage_today = gw->usage_today;
    lx_gateway_observe_start(gw); /* stats, the usage ledger, the metrics port */
    if (gw->stats) lx_stats_set_ratelimit_probe(gw->stats, ratelimit_probe, gw->rate_limiter);
    lx_stats_set_experiments(gw->stats, experiments_json, experiments_prom, gw->experiments);
    return 0;
}

void lx_gateway_stop(lx_gateway *gw)
{
    if (gw->server == NULL) return;
    lx_http_server_close(gw->server); /* aborts requests in flight: their upstreams are cancelled */
    gw->server = NULL;
    lx_router_free(gw->router);
    gw->router = NULL;
    gw->api.admission = NULL;
    lx_admission_free(gw->admission); /* before the client: it cancels its /metrics reads */
    gw->admission = NULL;
    if (gw->stats) lx_stats_set_ratelimit_probe(gw->stats, NULL, NULL);
    gw->api.rate_limiter = NULL;
    lx_rate_limiter_close(gw->rate_limiter); /* every request was aborted above: none holds a reservation */
    gw->rate_limiter = NULL;
    lx_http_client_free(gw->client);
    gw->client = NULL;
    lx_gateway_observe_stop(gw); /* after the aborts above are recorded; writes the ledger's last rows */
    gw->api.usage_today = NULL;
    lx_usage_today_free(gw->usage_today); /* likewise after the aborts are recorded */
    gw->usage_today = NULL;
    gw->api.experiments = NULL;
    lx_experiments_free(gw->experiments); /* after the ledger: its last feedback callbacks count here */
    gw->experiments = NULL;
    gw->api.gpu = NULL;
    lx_gpu_free(gw->gpu);
    gw->gpu = NULL;
    uv_close((uv_handle_t *)&gw->log_flush, NULL);
    uv_close((uv_handle_t *)&gw->sig_int, NULL);
    uv_close((uv_handle_t *)&gw->sig_term, NULL);
    uv_close((uv_handle_t *)&gw->sig_hup, NULL);
    uv_close((uv_handle_t *)&gw->shutdown_timer, NULL);
    lx_config_unref(gw->config);
    gw->config = NULL;
    lx_proxy_free_spares(gw);
}

/* ---------- reload ---------- */

/*
 * The services' share of a reload: each takes the new limits for what comes next, keeping its state
 * (waiting requests stay queued, rate-limit usage and statistics carry over). The health checker runs
 * in the backend registry, so lx_admission_reconfigure carries it too (new backends are checked at once).
 */
static bool has_backend(const lx_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (strcmp(c->backends[i].name, name) == 0) return true;
    return false;
}

static void reconfigure_services(lx_gateway *gw, const lx_config *old, lx_config *c)
{
    lx_admission_reconfigure(gw->admission, c);
    lx_rate_limiter_reconfigure(gw->rate_limiter, c); /* new limits; usage carries over */
    lx_experiments_apply(gw->experiments, c);         /* new weights; counters carry over */
    lx_auth_warn_plain_keys(c);
    lx_auth_warn_open(c);
    if (gw->stats) { /* counters carry over; backends added are shown, removed ones shown disabled */
        for (size_t i = 0; i < old->n_backends; i++)
            if (!has_backend(c, old->backends[i].name)) lx_stats_add_backend(gw->stats, old->backends[i].name, false);
        for (size_t i = 0; i < c->n_backends; i++)
            lx_stats_add_backend(gw->stats, c->backends[i].name, c->backends[i].enabled);
    }
}

/* What changes live outside the snapshot itself: the HTTP front's limits, logging, the services. */
static void apply_live(lx_gateway *gw, const lx_config *old, lx_config *c)
{
    lx_http_server_opts o;
    server_opts(c, gw, &o);
    lx_http_server_set_limits(gw->server, &o);
    lx_log_configure((lx_log_level)c->logging.level, c->logging.json);
    reconfigure_services(gw, old, c);
}

static void log_refused(const char *via, const char *path, const lx_buf *errors)
{
    LX_WARN(NULL, "reload (%s) refused, the running config stays: %s has problems:", via, path);
    const char *p = errors->p ? errors->p : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        LX_WARN(NULL, "  %.*s", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
}

int lx_gateway_reload(lx_gateway *gw, const char *via, lx_reload_diff *diff, lx_buf *errors)
{
    const char *path = gw->config->path;
    lx_config *c = lx_config_load(path, errors);
    if (c == NULL) {
        log_refused(via, path, errors);
        return -1;
    }
    int rc = lx_log_set_file(c->logging.file);
    if (rc < 0) {
        lx_buf_printf(errors, "%s: logging.file: cannot open \"%s\" for appending: %s\n", path, c->logging.file,
                      strerror(-rc));
        log_refused(via, path, errors);
        lx_config_unref(c);
        return -1;
    }
    lx_reload_diff_compute(gw->config, c, diff);
    lx_reload_pin(gw->config, c);
    lx_config *old = gw->config;
    gw->config = c;
    apply_live(gw, old, c);
    lx_config_unref(old);
    path = c->path;

    lx_buf changed, restart;
    lx_buf_init(&changed, 0);
    lx_buf_init(&restart, 0);
    lx_keylist_join(&diff->changed, &changed);
    lx_keylist_join(&diff->restart_required, &restart);
    LX_INFO(NULL, "config reloaded (%s) from %s; changed: %s", via, path, changed.p);
    if (diff->restart_required.n) LX_WARN(NULL, "config reload (%s): kept until a restart: %s", via, restart.p);
    lx_buf_free(&changed);
    lx_buf_free(&restart);
    return 0;
}

/* ---------- graceful shutdown ---------- */

/* Requests waiting for a backend slot will not get one: the queue answers them 503 shutting_down. */
static void answer_waiting(lx_gateway *gw) { lx_admission_close(gw->admission); }

static void on_shutdown_tick(uv_timer_t *t)
{
    lx_gateway *gw = t->data;
    size_t open = lx_http_server_connections(gw->server);
    if (open > 0 && lx_now_ns() < gw->shutdown_deadline_ns) return;
    uv_timer_stop(t);
    if (open > 0)
        LX_WARN(NULL, "shutdown: server.shutdown_timeout (%g s) reached; aborting %zu open connection(s)",
                gw->config->server.shutdown_timeout_s, open);
    else
        LX_INFO(NULL, "shutdown: every request finished");
    lx_gateway_stop(gw); /* lx_gateway_observe_stop, in it, writes the usage ledger's last rows */
}

void lx_gateway_shutdown(lx_gateway *gw)
{
    if (gw->server == NULL || gw->shutting_down) return;
    gw->shutting_down = true;
    double timeout_s = gw->config->server.shutdown_timeout_s;
    lx_http_server_stop_accepting(gw->server);
    lx_stats_streams_end_all(gw->api.streams); /* a live feed never ends by itself */
    answer_waiting(gw);
    LX_INFO(NULL, "shutdown: not accepting; waiting up to %g s for %zu connection(s)", timeout_s,
            lx_http_server_connections(gw->server));
    gw->shutdown_deadline_ns = lx_now_ns() + (uint64_t)(timeout_s * 1e9);
    uv_timer_start(&gw->shutdown_timer, on_shutdown_tick, 0, SHUTDOWN_POLL_MS);
}
