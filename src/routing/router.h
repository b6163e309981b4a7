/*
 * The router: given a request, which model it is for and which backend may take it now. The proxy asks it
 * once per attempt (a retry may go elsewhere); admission (queue/admission.h) then keeps the slots and the
 * line of the backend chosen. Today a request's model is the body's `model` (or default_model), as the
 * client named it; aliases and prompt-based routing will resolve here too.
 *
 * Choosing a backend: among the enabled backends of the config that serve the model and are routable
 * (backends/backend.h: not down by its checks, circuit closed or half-open with no trial out), those of the
 * lowest `priority` are the candidates, and the balancing strategy (routing/balance.h) picks one of them.
 * `avoid` (the backend whose attempt just failed) is taken only when no other is routable; after it, a
 * backend whose half-open trial is out (the request waits for the verdict rather than being refused), the
 * least loaded of those. When none is, the answer says when one may take requests again.
 * Loop thread only.
 */
#ifndef LX_ROUTER_H
#define LX_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "queue/admission.h"
#include "routing/balance.h"
#include "utils/buf.h"
#include "utils/common.h"

typedef struct lx_router lx_router;

/* Reads backend state and loads through admission (which must outlive the router). */
lx_router *lx_router_new(lx_admission *a);
void lx_router_free(lx_router *r);

/* Does an enabled backend of c serve the model (else the client gets 404 model_not_found)? */
bool lx_router_serves(const lx_config *c, lx_slice model);
/* Appends "a, b, c": every model the enabled backends of c serve, for the 404's message ("" when none). */
void lx_router_models(const lx_config *c, lx_buf *out);

typedef struct {
    lx_slice model;    /* as resolved: what the backends must serve */
    const char *avoid; /* a backend to take only when no other will do; NULL for none */
} lx_route_ask;

typedef struct {
    const lx_backend_conf *backend; /* NULL: no backend serving the model can take it now */
    unsigned retry_after_s;         /* then: the soonest one may take requests again (at least 1) */
} lx_route;

lx_route lx_router_pick(lx_router *r, const lx_config *c, const lx_route_ask *ask);

#endif
