/*
 * GET /health (the WatchDog's view: overall status, per-backend health, GPU memory, uptime),
 * GET /health/live (the process answers) and GET /health/ready (every model has a backend that is up).
 * The status rule is observe/health.h; backend state comes from the registry (backends/backend.h), GPU
 * memory from the cached NVML reading (observe/gpu.h), so nothing here waits on anything.
 * Loop thread only.
 */
#ifndef LX_API_HEALTH_H
#define LX_API_HEALTH_H

#include "gateway.h"
#include "http/server.h"

void lx_health_full(lx_gateway *gw, lx_http_req *req);
void lx_health_live(lx_gateway *gw, lx_http_req *req);
void lx_health_ready(lx_gateway *gw, lx_http_req *req);

/* "3d 4h 12m" (days and hours only when non-zero ahead of them). */
void lx_format_uptime(int64_t seconds, char *out, size_t cap);

#endif
