/*
 * The router. See router.h.
 * Invariants: the candidates array is scratch space reused by every pick (loop thread only), grown to the
 * largest config seen; a pick reads backend state and loads only, and changes nothing but the strategy's
 * state.
 */
#include "routing/router.h"

#include <stdlib.h>
#include <string.h>

struct lx_router {
    lx_admission *admission;
    const lx_balance *balance;
    lx_balance_state state;
    lx_candidate *cand;
    size_t cap;
};

lx_router *lx_router_new(lx_admission *a)
{
    lx_router *r = lx_xcalloc(1, sizeof *r);
    r->admission = a;
    r->balance = lx_balance_default();
    return r;
}

void lx_router_free(lx_router *r)
{
    if (r == NULL) return;
    free(r->cand);
    free(r);
}

bool lx_router_serves(const lx_config *c, lx_slice model) { return lx_config_backend_for(c, model.p, model.len); }

void lx_router_models(const lx_config *c, lx_buf *out)
{
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *b = &c->backends[i];
        if (!b->enabled) continue;
        for (size_t m = 0; m < b->n_models; m++)
            lx_buf_printf(out, "%s%s", out->len ? ", " : "", b->models[m].name);
    }
}

/* The least loaded of the backends awaiting their trial verdict, lowest priority first. */
static const lx_backend_conf *best_trial(const lx_candidate *c, size_t n)
{
    const lx_candidate *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (best == NULL || c[i].conf->priority < best->conf->priority ||
            (c[i].conf->priority == best->conf->priority && c[i].load < best->load))
            best = &c[i];
    return best ? best->conf : NULL;
}

static void reserve(lx_router *r, size_t n)
{
    if (n <= r->cap) return;
    r->cand = lx_xrealloc(r->cand, n * sizeof *r->cand);
    r->cap = n;
}

lx_route lx_router_pick(lx_router *r, const lx_config *c, const lx_route_ask *ask)
{
    reserve(r, 2 * c->n_backends + 1);
    lx_candidate *live = r->cand, *trials = r->cand + c->n_backends;
    size_t n_live = 0, n_trials = 0;
    const lx_backend_conf *avoided = NULL;
    lx_backends *bs = lx_admission_backends(r->admission);
    unsigned soonest = 0;
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *bc = &c->backends[i];
        if (!bc->enabled || !lx_backend_conf_serves(bc, ask->model.p, ask->model.len)) continue;
        lx_backend *b = lx_backends_find(bs, bc->name);
        lx_candidate cand = {bc, b, b ? lx_admission_load(r->admission, b) : 0};
        if (b && !lx_backend_routable(b)) {
            if (lx_backend_awaiting_trial(b)) trials[n_trials++] = cand;
            unsigned s = lx_backend_retry_after_s(b);
            if (soonest == 0 || s < soonest) soonest = s;
        } else if (ask->avoid && strcmp(bc->name, ask->avoid) == 0) {
            avoided = bc;
        } else if (n_live == 0 || bc->priority <= live[0].conf->priority) {
            if (n_live && bc->priority < live[0].conf->priority) n_live = 0; /* a better priority: start over */
            live[n_live++] = cand;
        }
    }
    lx_route out = {.retry_after_s = soonest ? soonest : 1};
    if (n_live)
        out.backend = live[r->balance->pick(&r->state, live, n_live)].conf;
    else
        out.backend = avoided ? avoided : best_trial(trials, n_trials);
    return out;
}
