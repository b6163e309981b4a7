/*
 * Observability endpoints: GET /stats and GET /metrics (on the main port, and on metrics.port when
 * metrics.enabled: lx_observe_metrics_port is that server's on_request). They render the
 * StatsCollector (observe/stats.h) with what the gateway's context says now (connections, backends a
 * reload added). The collector, the usage ledger and the metrics server themselves are the gateway's
 * (gateway_observe.c). Loop thread only.
 */
#ifndef LX_OBSERVE_H
#define LX_OBSERVE_H

#include "api/context.h"
#include "http/server.h"

/* The value of name in a query string, percent-decoded ('+' is a space) into out (cap bytes, truncated).
 * False if absent. */
bool lx_observe_query_param(lx_slice q, const char *name, char *out, size_t cap);

/* GET /stats[?user=NAME] */
void lx_observe_stats(lx_api_ctx *ctx, lx_http_req *req);
/* Users GET /stats/stream shows each second: the busiest of the last minute (its event stays small with
 * thousands of users; GET /stats has them all). */
#define LX_STREAM_MAX_USERS 100
/* The GET /stats object for GET /stats/stream: per_user cut to LX_STREAM_MAX_USERS ("per_user_omitted" says how
 * many were left out), the rest as GET /stats answers. */
void lx_observe_render_stats(lx_api_ctx *ctx, lx_buf *out);
/* GET /metrics */
void lx_observe_metrics(lx_api_ctx *ctx, lx_http_req *req);
/* The metrics port's on_request (ud: the lx_api_ctx): GET /metrics, and 404 / 405 for anything else. */
void lx_observe_metrics_port(lx_http_req *req, void *ud);

#endif
