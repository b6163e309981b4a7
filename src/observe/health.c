/*
 * The status rule of GET /health. See health.h. Quadratic in the number of models, which is small.
 */
#include "observe/health.h"

#include <string.h>

const char *lx_gw_health_name(lx_gw_health h)
{
    switch (h) {
    case LX_GW_HEALTHY: return "healthy";
    case LX_GW_DEGRADED: return "degraded";
    default: return "unhealthy";
    }
}

static bool enabled(const lx_backend_conf *b) { return b->enabled && b->url != NULL; }

static bool model_served(const lx_config *c, const char *model, lx_backend_up_fn is_up, void *ud)
{
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *b = &c->backends[i];
        if (!enabled(b) || !is_up(ud, b->name)) continue;
        for (size_t m = 0; m < b->n_models; m++)
            if (strcmp(b->models[m].name, model) == 0) return true;
    }
    return false;
}

lx_gw_health lx_gw_health_eval(const lx_config *c, lx_backend_up_fn is_up, void *ud)
{
    size_t n_enabled = 0, n_down = 0;
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *b = &c->backends[i];
        if (!enabled(b)) continue;
        n_enabled++;
        if (!is_up(ud, b->name)) n_down++;
    }
    if (n_enabled == 0) return LX_GW_UNHEALTHY;
    if (n_down == 0) return LX_GW_HEALTHY;
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *b = &c->backends[i];
        if (!enabled(b)) continue;
        for (size_t m = 0; m < b->n_models; m++)
            if (!model_served(c, b->models[m].name, is_up, ud)) return LX_GW_UNHEALTHY;
    }
    return LX_GW_DEGRADED;
}
