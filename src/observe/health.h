/*
 * The gateway's overall health, from each backend's (backends/backend.h): the rule behind GET /health
 * and GET /health/ready. Pure: it reads a config snapshot and asks the caller whether a backend is up.
 *
 * Over the enabled backends of the snapshot (those with a url):
 *  - healthy:   every one is up;
 *  - degraded:  some are down, but every model they list is still listed by one that is up;
 *  - unhealthy: some model has no backend that is up (or no backend is enabled at all).
 * A backend not yet checked counts as up (the caller decides that in is_up).
 * Any thread (it touches nothing but its arguments).
 */
#ifndef LX_HEALTH_H
#define LX_HEALTH_H

#include <stdbool.h>

#include "config.h"

typedef enum {
    LX_GW_HEALTHY = 0,
    LX_GW_DEGRADED,
    LX_GW_UNHEALTHY,
} lx_gw_health;

/* "healthy", "degraded", "unhealthy" */
const char *lx_gw_health_name(lx_gw_health h);

/* Is the backend of this name up? */
typedef bool (*lx_backend_up_fn)(void *ud, const char *name);

lx_gw_health lx_gw_health_eval(const lx_config *c, lx_backend_up_fn is_up, void *ud);

#endif
