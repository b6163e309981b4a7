/*
 * The ModelRouter: given the name a client asked for, which model serves it and which backend may take it
 * now. The proxy asks once per attempt (a retry may go elsewhere); the admission (queue/admission.h) then
 * keeps the model's line and the backends' slots.
 *
 * Names: a model served now (backends/served.h: listed in the config, or discovered with models: auto), or
 * an alias of routing.aliases, which stands for a list of models in order of preference. The first model
 * of the list with a routable backend takes the request — again at each retry. An alias wins over a
 * discovered model of the same name (a listed one cannot have it: --check-config refuses that).
 *
 * Choosing a backend for a model: among its servers that are routable (backends/backend.h: not down by its
 * checks, circuit closed or half-open with no trial out), those of the lowest `priority` are the
 * candidates, and the balancing strategy (routing/balance.h, routing.balance) picks one of them. With
 * routing.affinity, a request carries a key (its user, or the first LX_AFFINITY_PREFIX_BYTES of its
 * prompt) and goes to the candidate that key prefers (rendezvous hashing: adding or losing a backend moves
 * only the keys that preferred it) — unless that backend is much busier than the least busy candidate:
 * it yields when it has at least LX_AFFINITY_YIELD_DIFF more requests in flight and at least
 * LX_AFFINITY_YIELD_RATIO times as many (in flight + 1), or when it cannot take a request now and another
 * can. `avoid` (the backend whose attempt just failed) is taken only when no other server of the model
 * is routable; after it, a backend whose half-open trial is out (the request waits for the verdict rather
 * than being refused), the least loaded of those. When no model of the name has one, the answer says when
 * one may take requests again.
 * Loop thread only.
 */
#ifndef LX_ROUTER_H
#define LX_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/served.h"
#include "config.h"
#include "queue/admission.h"
#include "routing/balance.h"
#include "utils/buf.h"
#include "utils/common.h"

#define LX_AFFINITY_PREFIX_BYTES 2048
#define LX_AFFINITY_YIELD_DIFF   4
#define LX_AFFINITY_YIELD_RATIO  2.0

typedef struct lx_router lx_router;

/* Reads backend state and what is served through admission (which must outlive the router). */
lx_router *lx_router_new(lx_admission *a);
void lx_router_free(lx_router *r);

/* Is name a model served now or an alias of c (else the client gets 404 model_not_found)? */
bool lx_router_serves(lx_router *r, const lx_config *c, lx_slice name);
/* Appends "a, b, code (alias), ...": every model served now and every alias, for the 404's message. */
void lx_router_names(lx_router *r, const lx_config *c, lx_buf *out);

typedef struct {
    lx_slice name;           /* as the client asked: a model or an alias */
    const lx_backend *avoid; /* a backend to take only when no other will do; NULL for none */
    uint64_t affinity_key;   /* with routing.affinity: the request's key */
    bool has_affinity_key;
} lx_route_ask;

typedef enum { LX_AFFINITY_UNUSED = 0, LX_AFFINITY_HIT, LX_AFFINITY_YIELDED } lx_affinity_use;

typedef struct {
    lx_model *model;        /* what serves the name; NULL with backend */
    lx_backend *backend;    /* NULL: no backend serving the name can take it now */
    unsigned retry_after_s; /* then: the soonest one may take requests again (at least 1) */
    lx_affinity_use affinity;
    lx_backend *preferred; /* with affinity: the backend the key led to (the one that yielded, or backend) */
} lx_route;

lx_route lx_router_pick(lx_router *r, const lx_config *c, const lx_route_ask *ask);

#endif
