/*
 * Observability endpoints and their long-lived parts: GET /stats, GET /metrics (on the main port, and
 * on metrics.port when metrics.enabled), the StatsCollector (observe/stats.h) and the usage ledger
 * (observe/usage_store.h) of a gateway.
 *
 * lx_observe_start creates gw->stats, opens gw->ledger (when usage.enabled) and starts gw->metrics_server
 * (when metrics.enabled and metrics.port differs from server.port). None of these failing stops the
 * gateway: a ledger that cannot be written is logged and counted, a metrics port that cannot be bound
 * is logged (GET /metrics on the main port still answers).
 * lx_observe_stop undoes it; call it after the main server is closed (requests aborted by that close
 * are still recorded) and before the loop ends. Loop thread only.
 */
#ifndef LX_OBSERVE_H
#define LX_OBSERVE_H

#include "gateway.h"
#include "http/server.h"

void lx_observe_start(lx_gateway *gw);
void lx_observe_stop(lx_gateway *gw);

/* GET /stats[?user=NAME] */
void lx_observe_stats(lx_gateway *gw, lx_http_req *req);
/* GET /metrics */
void lx_observe_metrics(lx_gateway *gw, lx_http_req *req);

#endif
