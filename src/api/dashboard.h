/*
 * GET /dashboard: the live dashboard, one page served from the binary (its files are embedded at build
 * time by cmake/embed.cmake: src/dashboard/ and the vendored uPlot in third_party/uplot/), so it works
 * offline and with no file installed. The page reads GET /stats/stream (api/stats_stream.h) and calls
 * the /admin/ endpoints with the admin token the operator types in (kept in the tab's sessionStorage,
 * sent as a bearer header). Its files:
 *   /dashboard                      the page (text/html)
 *   /dashboard/dashboard.js         its script
 *   /dashboard/dashboard.css        its style sheet
 *   /dashboard/uPlot.iife.min.js    uPlot (charts)
 *   /dashboard/uPlot.min.css
 * Each answer forbids framing and takes scripts, styles and connections from this origin only.
 * Pure (static data); loop thread only like every handler.
 */
#ifndef LX_DASHBOARD_H
#define LX_DASHBOARD_H

#include "api/context.h"
#include "http/server.h"

/* GET of one of the paths above (the route table sends them all here). */
void lx_dashboard_get(lx_api_ctx *ctx, lx_http_req *req);

#endif
