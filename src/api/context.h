/*
 * What the handlers in api/ (routes, health, observe) see of the gateway that runs them: a narrow
 * view instead of the whole lx_gateway, so that api/ does not depend on gateway.h (the gateway depends
 * on api/, not the other way round). The gateway fills one (gateway.c) and hands it to its servers
 * as their ud.
 *
 * What changes during the gateway's life is read through the functions (each is given ud): the config
 * snapshot (a reload swaps it between two requests), the connection count, shutting down. The
 * pointers are set when the gateway has started and cleared when it stops; a handler runs only in
 * between. Loop thread only.
 */
#ifndef LX_API_CONTEXT_H
#define LX_API_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "api/endpoint.h"
#include "config.h"
#include "http/server.h"
#include "reload.h"
#include "utils/buf.h"

typedef struct lx_api_ctx {
    void *ud;                             /* the gateway's; handed back to the functions below, never read */
    const lx_config *(*config)(void *ud); /* the current snapshot */
    long (*connections)(void *ud);        /* open connections on the main port, -1 when it is closed */
    bool (*shutting_down)(void *ud);      /* a graceful stop has begun */
    /* Reload (lx_gateway_reload): 0 with *diff filled, or -1 with the problems in errors. */
    int (*reload)(void *ud, const char *via, lx_reload_diff *diff, lx_buf *errors);
    /* Hands req to the pipeline (lx_proxy_handle), which takes charge of it. */
    void (*proxy)(void *ud, lx_http_req *req, lx_endpoint ep);
    struct lx_stats *stats;               /* observe/stats.h */
    struct lx_admission *admission;       /* the queue and the backend registry (queue/admission.h) */
    struct lx_gpu *gpu;                   /* GPU memory (observe/gpu.h) */
    struct lx_stats_streams *streams;     /* GET /stats/stream's clients (api/stats_stream.h) */
    struct lx_usage_store *ledger;        /* the usage ledger, NULL when off (observe/usage_store.h) */
    struct lx_experiments *experiments;   /* A/B experiments (routing/experiment.h) */
    struct lx_rate_limiter *rate_limiter; /* what a user used of its limits (GET /v1/usage); may be NULL */
    struct lx_usage_today *usage_today;   /* what each user used today (GET /v1/usage); may be NULL */
    int64_t started_wall_s;
    uint64_t started_ns;
} lx_api_ctx;

#endif
