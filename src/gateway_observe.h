/*
 * The gateway's observability parts and their lifecycle: the StatsCollector (observe/stats.h) with
 * its probes into the queue and the backends, the usage ledger (observe/usage_store.h), and the
 * metrics server (GET /metrics on metrics.port; its handler is api/observe.h's).
 *
 * lx_gateway_observe_start creates gw->stats and gw->api.streams (GET /stats/stream's clients), opens
 * gw->ledger (when usage.enabled) and starts gw->metrics_server (when metrics.enabled and metrics.port
 * differs from server.port); call it once
 * gw->admission and gw->api exist. None of these failing stops the gateway: a ledger that cannot be
 * written is logged and counted, a metrics port that cannot be bound is logged (GET /metrics on the
 * main port still answers).
 * lx_gateway_observe_stop undoes it; call it after the main server is closed (requests aborted by
 * that close are still recorded) and before the loop ends. Loop thread only.
 */
#ifndef LX_GATEWAY_OBSERVE_H
#define LX_GATEWAY_OBSERVE_H

#include "gateway.h"

void lx_gateway_observe_start(lx_gateway *gw);
void lx_gateway_observe_stop(lx_gateway *gw);

#endif
