/*
 * GET /health (the WatchDog's view: overall status, per-backend health, GPU memory, uptime),
 * GET /health/live (the process answers) and GET /health/ready (every model has a backend that is up).
 * The status rule is observe/health.h; backend state comes from the registry (backends/backend.h), GPU
 * memory from the cached NVML reading (observe/gpu.h), so nothing here waits on anything. The gateway is
 * seen through its lx_api_ctx (config, admission, gpu, start time).
 * Loop thread only.
 */
#ifndef LX_API_HEALTH_H
#define LX_API_HEALTH_H

#include "api/context.h"
#include "http/server.h"

void lx_health_full(lx_api_ctx *ctx, lx_http_req *req);
void lx_health_live(lx_api_ctx *ctx, lx_http_req *req);
void lx_health_ready(lx_api_ctx *ctx, lx_http_req *req);

/* "3d 4h 12m" (days and hours only when non-zero ahead of them). */
void lx_format_uptime(int64_t seconds, char *out, size_t cap);

#endif
