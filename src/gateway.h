/*
 * The gateway: one per process. Owns the loop's long-lived parts: the current config snapshot, the
 * HTTP server, the upstream client, the services, stats and ledger (gateway_observe.h), and the start
 * time. The handlers in api/ get gw->api (api/context.h), not the gateway; the pipeline (proxy.c)
 * takes the gateway itself. Requests hold their own reference to the
 * config snapshot they started with (lx_config_ref), so swapping gw->config (a reload) never pulls it
 * from under a request in flight.
 * Loop thread only.
 */
#ifndef LX_GATEWAY_H
#define LX_GATEWAY_H

#include <stdint.h>
#include <uv.h>

#include "api/context.h"
#include "config.h"
#include "http/client.h"
#include "http/server.h"
#include "reload.h"
#include "utils/list.h"

typedef struct lx_gateway {
    uv_loop_t *loop;
    lx_config *config;
    lx_http_server *server;
    lx_http_client *client;
    struct lx_admission *admission;       /* the queue and the backends' slots (queue/admission.h) */
    struct lx_router *router;             /* which backend a request may go to (routing/router.h) */
    struct lx_experiments *experiments;   /* A/B experiments' assignments and counters (routing/experiment.h) */
    struct lx_rate_limiter *rate_limiter; /* per-user RPM/TPM, local or shared in Redis (limits/rate_limiter.h) */
    struct lx_usage_today *usage_today;   /* each user's usage today, for GET /v1/usage (limits/usage_today.h) */
    int64_t started_wall_s;
    uint64_t started_ns;
    uv_check_t log_flush;
    uv_signal_t sig_int, sig_term;
    int stop_signals;
    uv_signal_t sig_hup;       /* reload */
    bool shutting_down;        /* lx_gateway_shutdown began: no new connections */
    uv_timer_t shutdown_timer; /* while shutting down: watches for the last connection, and the deadline */
    uint64_t shutdown_deadline_ns;
    struct lx_stats *stats;         /* /stats and /metrics (observe/stats.h; gateway_observe.c) */
    struct lx_usage_store *ledger;  /* the usage ledger, NULL when usage.enabled is false */
    lx_http_server *metrics_server; /* GET /metrics on metrics.port, NULL when not enabled */
    struct lx_gpu *gpu;             /* GPU memory for GET /health (observe/gpu.h) */
    lx_api_ctx api;                 /* what the handlers in api/ see of this gateway: the servers' ud */
    lx_list spare;                  /* finished requests' state kept for the next ones (proxy.c) */
    unsigned n_spare;
} lx_gateway;

/*
 * Takes over the caller's reference to config, binds server.host:server.port and starts serving.
 * Returns 0, or a negative libuv error (the listener could not be bound; the gateway is torn down).
 */
int lx_gateway_start(lx_gateway *gw, uv_loop_t *loop, lx_config *config);
/* Stops listening, aborts what is in flight and closes every handle; uv_run then returns. */
void lx_gateway_stop(lx_gateway *gw);

/*
 * Reload (POST /admin/reload, SIGHUP): re-reads the config file, validates all of it, and swaps the new
 * snapshot in at once; requests in flight keep the snapshot they started with. What can change live is
 * applied (server limits, logging, and the services' limits); restart-only keys keep their running
 * values (reload.h). logging.file is reopened, changed or not (logrotate). `via` names the trigger in
 * the log. Returns 0 with *diff filled (free it with lx_reload_diff_free), or -1 with every problem
 * appended to errors, one per line, and the running config untouched.
 */
int lx_gateway_reload(lx_gateway *gw, const char *via, lx_reload_diff *diff, lx_buf *errors);

/*
 * Graceful stop (SIGTERM, SIGINT): the listener closes and idle connections with it; requests in flight
 * finish, for up to server.shutdown_timeout, then whatever is left is aborted; requests still waiting
 * for a backend are answered 503 shutting_down; the usage ledger is flushed; then lx_gateway_stop, and
 * uv_run returns. A second signal exits the process at once.
 */
void lx_gateway_shutdown(lx_gateway *gw);

#endif
