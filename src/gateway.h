/*
 * The gateway: one per process. Owns the loop's long-lived parts: the current config snapshot, the
 * HTTP server, the upstream client, and the start time. Requests hold their own reference to the
 * config snapshot they started with (lx_config_ref), so swapping gw->config never pulls it from
 * under a request in flight.
 * Loop thread only.
 */
#ifndef LX_GATEWAY_H
#define LX_GATEWAY_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "http/client.h"
#include "http/server.h"

typedef struct lx_gateway {
    uv_loop_t *loop;
    lx_config *config;
    lx_http_server *server;
    lx_http_client *client;
    int64_t started_wall_s;
    uint64_t started_ns;
    uv_check_t log_flush;
    uv_signal_t sig_int, sig_term;
    int stop_signals;
} lx_gateway;

/*
 * Takes over the caller's reference to config, binds server.host:server.port and starts serving.
 * Returns 0, or a negative libuv error (the listener could not be bound; the gateway is torn down).
 */
int lx_gateway_start(lx_gateway *gw, uv_loop_t *loop, lx_config *config);
/* Stops listening, aborts what is in flight and closes every handle; uv_run then returns. */
void lx_gateway_stop(lx_gateway *gw);

#endif
