/*
 * Stats, the usage ledger and the metrics server of a gateway: created at start, freed at stop. See
 * gateway_observe.h.
 *
 * The probes are how the collector reads the other services' state at render time: the queue's
 * depths and counters, a backend's health and in-flight count. They read gw->admission, which lives
 * from before lx_gateway_observe_start until lx_gateway_stop frees it (then it is NULL).
 */
#include "gateway_observe.h"

#include <stdlib.h>

#include "api/observe.h"
#include "api/routes.h"
#include "api/stats_stream.h"
#include "backends/backend.h"
#include "observe/stats.h"
#include "observe/usage_store.h"
#include "queue/admission.h"
#include "queue/queue.h"
#include "utils/log.h"

#define METRICS_MAX_CONNECTIONS 64

static void queue_probe(void *ud, lx_stats_queue_view *v)
{
    lx_gateway *gw = ud;
    if (gw->admission == NULL) return;
    lx_queue_stats_t qs;
    lx_queue_stats(lx_admission_queue(gw->admission), &qs);
    _Static_assert((int)LX_PRIO_COUNT == (int)LX_STATS_PRIO_COUNT, "priority classes differ");
    for (size_t p = 0; p < LX_PRIO_COUNT; p++) {
        v->depth[p] = (long)qs.depth[p];
        v->timeouts[p] = qs.timed_out[p];
        v->rejected[p] = qs.rejected_full[p] + qs.displaced[p];
    }
}

static bool backend_probe(void *ud, const char *name, bool *up, long *in_flight)
{
    lx_gateway *gw = ud;
    if (gw->admission == NULL) return false;
    lx_backend *b = lx_backends_find(lx_admission_backends(gw->admission), name);
    if (b == NULL) return false;
    lx_backend_info info;
    lx_backend_info_get(b, &info);
    *up = !info.retired && !lx_backend_is_down(b); /* unknown (not checked yet) counts as up */
    *in_flight = info.in_flight;
    return true;
}

static void start_metrics_server(lx_gateway *gw)
{
    const lx_config *c = gw->config;
    if (!c->metrics.enabled) return;
    if (c->metrics.port == c->server.port) {
        LX_INFO(NULL, "metrics.port is server.port: /metrics is served there");
        return;
    }
    lx_http_server_opts o = {
        .host = c->server.host,
        .port = c->metrics.port,
        .max_connections = METRICS_MAX_CONNECTIONS,
        .max_header_bytes = c->server.max_header_bytes,
        .max_body_bytes = 64 * 1024,
        .header_timeout_ms = (uint64_t)(c->server.header_timeout_s * 1000.0),
        .idle_timeout_ms = (uint64_t)(c->server.idle_timeout_s * 1000.0),
        .server_name = "lexora",
        .on_request = lx_observe_metrics_port,
        .render_error = lx_routes_render_error,
        .ud = &gw->api,
    };
    int rc = lx_http_server_start(gw->loop, &o, &gw->metrics_server);
    if (rc != 0) {
        gw->metrics_server = NULL;
        LX_ERROR(NULL, "cannot listen on %s:%d for metrics: %s; GET /metrics is still served on port %d",
                 c->server.host, c->metrics.port, uv_strerror(rc), c->server.port);
        return;
    }
    LX_INFO(NULL, "metrics on %s:%d/metrics", c->server.host, lx_http_server_port(gw->metrics_server));
}

void lx_gateway_observe_start(lx_gateway *gw)
{
    const lx_config *c = gw->config;
    gw->stats = lx_stats_new(&(lx_stats_opts){.started_wall_s = gw->started_wall_s});
    gw->api.stats = gw->stats;
    for (size_t i = 0; i < c->n_backends; i++)
        lx_stats_add_backend(gw->stats, c->backends[i].name, c->backends[i].enabled);
    if (c->usage.enabled) {
        char *path = lx_usage_db_path(c->path, c->usage.db_path);
        lx_usage_store_opts o = {.store = c->usage.store,
                                 .db_path = path,
                                 .postgres_url = c->usage.postgres_url,
                                 .password_file = c->usage.password_file,
                                 .gateway_id = c->usage.gateway_id};
        gw->ledger = lx_usage_store_start(gw->loop, &o);
        gw->api.ledger = gw->ledger;
        free(path);
        lx_stats_set_ledger(gw->stats, gw->ledger);
    }
    lx_stats_set_queue_probe(gw->stats, queue_probe, gw);
    lx_stats_set_backend_probe(gw->stats, backend_probe, gw);
    gw->api.streams = lx_stats_streams_new(gw->loop, &gw->api);
    start_metrics_server(gw);
}

void lx_gateway_observe_stop(lx_gateway *gw)
{
    if (gw->metrics_server) lx_http_server_close(gw->metrics_server);
    gw->metrics_server = NULL;
    gw->api.ledger = NULL;
    lx_usage_store_close(gw->ledger); /* writes what is waiting; feedback still waiting is answered (counted only) */
    gw->ledger = NULL;
    lx_stats_streams_free(gw->api.streams); /* none is open: the main server's close aborted them */
    gw->api.streams = NULL;
    gw->api.stats = NULL;
    lx_stats_free(gw->stats);
    gw->stats = NULL;
}
