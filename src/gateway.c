/*
 * The gateway's lifecycle: start (bind, wire the server to the routes, the client to the loop),
 * flush the log once per loop turn, stop on SIGINT/SIGTERM (a second signal exits at once).
 */
#include "gateway.h"

#include <stdlib.h>

#include "api/routes.h"
#include "utils/log.h"

static void on_check(uv_check_t *h)
{
    (void)h;
    lx_log_flush();
}

static void on_signal(uv_signal_t *h, int signum)
{
    lx_gateway *gw = h->data;
    if (gw->stop_signals++ > 0) {
        LX_WARN(NULL, "second signal %d: exiting now", signum);
        lx_log_flush();
        _Exit(1);
    }
    LX_INFO(NULL, "signal %d: stopping", signum);
    lx_gateway_stop(gw);
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
        .on_abort = lx_routes_on_abort,
        .on_drain = lx_routes_on_drain,
        .ud = gw,
    };
}

int lx_gateway_start(lx_gateway *gw, uv_loop_t *loop, lx_config *config)
{
    *gw = (lx_gateway){.loop = loop, .config = config};
    gw->started_wall_s = lx_wall_s();
    gw->started_ns = lx_now_ns();
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
    uv_check_init(loop, &gw->log_flush);
    uv_check_start(&gw->log_flush, on_check);
    uv_unref((uv_handle_t *)&gw->log_flush);
    uv_signal_init(loop, &gw->sig_int);
    uv_signal_init(loop, &gw->sig_term);
    gw->sig_int.data = gw->sig_term.data = gw;
    uv_signal_start(&gw->sig_int, on_signal, SIGINT);
    uv_signal_start(&gw->sig_term, on_signal, SIGTERM);
    return 0;
}

void lx_gateway_stop(lx_gateway *gw)
{
    if (gw->server == NULL) return;
    lx_http_server_close(gw->server); /* aborts requests in flight: their upstreams are cancelled */
    gw->server = NULL;
    lx_http_client_free(gw->client);
    gw->client = NULL;
    uv_close((uv_handle_t *)&gw->log_flush, NULL);
    uv_close((uv_handle_t *)&gw->sig_int, NULL);
    uv_close((uv_handle_t *)&gw->sig_term, NULL);
    lx_config_unref(gw->config);
    gw->config = NULL;
}
