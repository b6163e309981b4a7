/*
 * /stats and /metrics, and the metrics port: a second HTTP server (the same server code, its own
 * small connection limit) that answers GET /metrics and nothing else.
 */
#include "api/observe.h"

#include <stdlib.h>

#include "api/routes.h"
#include "backends/backend.h"
#include "queue/admission.h"
#include "queue/queue.h"
#include "observe/stats.h"
#include "observe/usage_store.h"
#include "utils/buf.h"
#include "utils/log.h"

#define METRICS_MAX_CONNECTIONS 64

/* ---------- the probes: state the collector reads from the other services at render time ---------- */

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

/* Backends a reload added are shown before their first request. */
static void sync_backends(lx_gateway *gw)
{
    if (gw->admission == NULL) return;
    lx_backends *bs = lx_admission_backends(gw->admission);
    for (size_t i = 0; i < lx_backends_count(bs); i++) {
        lx_backend_info info;
        lx_backend_info_get(lx_backends_at(bs, i), &info);
        lx_stats_add_backend(gw->stats, info.name, !info.retired);
    }
}

static lx_stats_render_opts render_opts(lx_gateway *gw)
{
    sync_backends(gw);
    return (lx_stats_render_opts){
        .connections = gw->server ? (long)lx_http_server_connections(gw->server) : -1,
        .per_user = gw->config && gw->config->metrics.per_user,
    };
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The value of name in a query string, percent-decoded ('+' is a space) into out. False if absent. */
static bool query_param(lx_slice q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = q.p, *end = q.p + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t n = 0;
            for (const char *v = p + nl + 1; v < stop && n + 1 < cap; v++) {
                int h1, h2;
                if (*v == '+')
                    out[n++] = ' ';
                else if (*v == '%' && stop - v > 2 && (h1 = hexval(v[1])) >= 0 && (h2 = hexval(v[2])) >= 0) {
                    out[n++] = (char)(h1 * 16 + h2);
                    v += 2;
                } else
                    out[n++] = *v;
            }
            out[n] = '\0';
            return true;
        }
        p = stop + 1;
    }
    return false;
}

void lx_observe_stats(lx_gateway *gw, lx_http_req *req)
{
    char user[256];
    bool by_user = query_param(lx_http_req_query(req), "user", user, sizeof user) && user[0];
    lx_stats_render_opts o = render_opts(gw);
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_stats_render_json(gw->stats, &out, by_user ? user : NULL, &o);
    static const lx_http_header h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    lx_http_respond(req, 200, h, LX_ARRAY_LEN(h), out.p, out.len);
    lx_buf_free(&out);
}

void lx_observe_metrics(lx_gateway *gw, lx_http_req *req)
{
    lx_stats_render_opts o = render_opts(gw);
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_stats_render_prometheus(gw->stats, &out, &o);
    static const lx_http_header h[] = {{"Content-Type", LX_STATS_CONTENT_TYPE_PROMETHEUS}};
    lx_http_respond(req, 200, h, 1, out.p, out.len);
    lx_buf_free(&out);
}

/* ---------- the metrics port ---------- */

static void metrics_on_request(lx_http_req *req, void *ud)
{
    lx_gateway *gw = ud;
    if (!lx_slice_eq(lx_http_req_path(req), "/metrics")) {
        lx_respond_error(req, LX_ERR_NOT_FOUND, "This port serves GET /metrics only", NULL, NULL);
        return;
    }
    if (strcmp(lx_http_req_method(req), "GET") != 0) {
        lx_respond_error(req, LX_ERR_METHOD_NOT_ALLOWED, "Use GET /metrics", NULL, NULL);
        return;
    }
    lx_observe_metrics(gw, req);
}

static void metrics_on_abort(lx_http_req *req, void *ud)
{
    (void)req;
    (void)ud;
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
        .on_request = metrics_on_request,
        .on_abort = metrics_on_abort,
        .render_error = lx_routes_render_error,
        .ud = gw,
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

void lx_observe_start(lx_gateway *gw)
{
    const lx_config *c = gw->config;
    gw->stats = lx_stats_new(&(lx_stats_opts){.started_wall_s = gw->started_wall_s});
    for (size_t i = 0; i < c->n_backends; i++)
        lx_stats_add_backend(gw->stats, c->backends[i].name, c->backends[i].enabled);
    if (c->usage.enabled) {
        char *path = lx_usage_db_path(c->path, c->usage.db_path);
        gw->ledger = lx_usage_store_open(gw->loop, path);
        free(path);
        lx_stats_set_ledger(gw->stats, gw->ledger);
    }
    lx_stats_set_queue_probe(gw->stats, queue_probe, gw);
    lx_stats_set_backend_probe(gw->stats, backend_probe, gw);
    start_metrics_server(gw);
}

void lx_observe_stop(lx_gateway *gw)
{
    if (gw->metrics_server) lx_http_server_close(gw->metrics_server);
    gw->metrics_server = NULL;
    lx_usage_store_close(gw->ledger); /* writes what is waiting */
    gw->ledger = NULL;
    lx_stats_free(gw->stats);
    gw->stats = NULL;
}
