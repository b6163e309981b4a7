/*
 * The ModelRouter. See router.h.
 * Invariants: the candidates array is scratch space reused by every pick (loop thread only), grown to the
 * most servers a model has had; a pick reads backend state only, and changes nothing but the strategies'
 * state.
 */
#include "routing/router.h"

#include <stdlib.h>
#include <string.h>

#include "backends/loader.h"
#include "utils/id.h"
#include "utils/map.h"

typedef struct {
    uint64_t h;
    lx_backend *b; /* registry backends live as long as the registry: the pointer stays valid */
} prefix_slot;

struct lx_router {
    lx_admission *admission;
    lx_balance_state state;
    lx_candidate *cand;
    size_t cap;
    prefix_slot *prefixes; /* LX_PREFIX_TABLE_SLOTS, direct-mapped by hash; allocated at first use */
};

lx_router *lx_router_new(lx_admission *a)
{
    lx_router *r = lx_xcalloc(1, sizeof *r);
    r->admission = a;
    r->state.rng = (uint64_t)(lx_random_unit() * 9007199254740992.0) | 1;
    return r;
}

void lx_router_free(lx_router *r)
{
    if (r == NULL) return;
    free(r->cand);
    free(r->prefixes);
    free(r);
}

static lx_model *served_model(lx_router *r, lx_slice name)
{
    lx_model *m = lx_served_find(lx_admission_served(r->admission), name.p, name.len);
    return m && lx_model_servers(m) ? m : NULL;
}

bool lx_router_serves(lx_router *r, const lx_config *c, lx_slice name)
{
    return lx_config_alias(c, name.p, name.len) || served_model(r, name);
}

void lx_router_names(lx_router *r, const lx_config *c, lx_buf *out)
{
    const lx_served *s = lx_admission_served(r->admission);
    for (size_t i = 0; i < lx_served_count(s); i++) {
        const lx_model *m = lx_served_at(s, i);
        const char *name = lx_model_name(m);
        if (lx_model_servers(m) && !lx_config_alias(c, name, strlen(name)))
            lx_buf_printf(out, "%s%s", out->len ? ", " : "", name);
    }
    for (size_t i = 0; i < c->routing.n_aliases; i++)
        lx_buf_printf(out, "%s%s (alias)", out->len ? ", " : "", c->routing.aliases[i].name);
}

static void reserve(lx_router *r, size_t n)
{
    if (n <= r->cap) return;
    r->cand = lx_xrealloc(r->cand, n * sizeof *r->cand);
    r->cap = n;
}

static lx_candidate candidate(lx_backend *b)
{
    double busy = lx_backend_in_flight(b) + lx_backend_upstream_waiting(b);
    return (lx_candidate){b, busy, busy / lx_backend_max_concurrency(b)};
}

/* The least loaded of the backends awaiting their trial verdict, lowest priority first. */
static lx_backend *best_trial(const lx_candidate *c, size_t n)
{
    const lx_candidate *best = NULL;
    for (size_t i = 0; i < n; i++) {
        int p = lx_backend_priority(c[i].b), bp = best ? lx_backend_priority(best->b) : 0;
        if (best == NULL || p < bp || (p == bp && c[i].load < best->load)) best = &c[i];
    }
    return best ? best->b : NULL;
}

/* ---------- affinity ---------- */

void lx_prefix_key_of(lx_slice prompt, lx_prefix_key *out)
{
    out->n = LX_MIN(prompt.len, (size_t)LX_PREFIX_WINDOW) / LX_PREFIX_BLOCK;
    uint64_t chain = 0;
    for (size_t i = 0; i < out->n; i++) {
        struct {
            uint64_t prev;
            char block[LX_PREFIX_BLOCK];
        } in;
        in.prev = chain;
        memcpy(in.block, prompt.p + i * LX_PREFIX_BLOCK, LX_PREFIX_BLOCK);
        out->h[i] = chain = lx_hash(&in, sizeof in);
    }
}

static prefix_slot *slot_of(lx_router *r, uint64_t h)
{
    if (r->prefixes == NULL) r->prefixes = lx_xcalloc(LX_PREFIX_TABLE_SLOTS, sizeof *r->prefixes);
    return &r->prefixes[h & (LX_PREFIX_TABLE_SLOTS - 1)];
}

void lx_router_learn(lx_router *r, const lx_prefix_key *k, lx_backend *b)
{
    for (size_t i = 0; i < k->n; i++)
        *slot_of(r, k->h[i]) = (prefix_slot){k->h[i], b};
}

/* The candidate that was last sent the longest prefix of k, or n when none was. */
static size_t prefix_home(lx_router *r, const lx_prefix_key *k, const lx_candidate *c, size_t n)
{
    for (size_t i = k->n; i-- > 0;) {
        const prefix_slot *s = slot_of(r, k->h[i]);
        if (s->h != k->h[i]) continue;
        for (size_t j = 0; j < n; j++)
            if (c[j].b == s->b) return j;
    }
    return n;
}

/* Rendezvous hashing: the candidate whose name scores highest with the key. */
static size_t preferred(uint64_t key, const lx_candidate *c, size_t n)
{
    size_t best = 0;
    uint64_t best_score = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = lx_backend_name(c[i].b);
        uint64_t score = lx_hash(name, strlen(name)) ^ key;
        score = (score ^ (score >> 31)) * 0x7fb5d329728ea185ULL;
        score ^= score >> 27;
        if (i == 0 || score > best_score) {
            best = i;
            best_score = score;
        }
    }
    return best;
}

/* Does the preferred candidate p give way (router.h's rule)? */
static bool yields(const lx_candidate *c, size_t n, size_t p)
{
    size_t least = 0;
    bool other_free = false;
    for (size_t i = 0; i < n; i++) {
        if (c[i].busy < c[least].busy) least = i;
        if (i != p && lx_backend_can_accept(c[i].b)) other_free = true;
    }
    if (!lx_backend_can_accept(c[p].b) && other_free) return true;
    return c[p].busy >= c[least].busy + LX_AFFINITY_YIELD_DIFF &&
           c[p].busy + 1 >= LX_AFFINITY_YIELD_RATIO * (c[least].busy + 1);
}

/* The candidate affinity prefers, or n for none. */
static size_t affinity_choice(lx_router *r, const lx_config *c, const lx_route_ask *ask, const lx_candidate *live,
                              size_t n)
{
    if (c->routing.affinity == LX_AFFINITY_USER && ask->has_user_key) return preferred(ask->user_key, live, n);
    if (c->routing.affinity == LX_AFFINITY_PREFIX && ask->prefix && ask->prefix->n)
        return prefix_home(r, ask->prefix, live, n);
    return n;
}

static lx_backend *choose(lx_router *r, const lx_config *c, const lx_route_ask *ask, const lx_candidate *live, size_t n,
                          lx_route *out)
{
    size_t p = n > 1 ? affinity_choice(r, c, ask, live, n) : n;
    if (p < n) {
        out->preferred = live[p].b;
        if (!yields(live, n, p)) {
            out->affinity = LX_AFFINITY_HIT;
            return live[p].b;
        }
        out->affinity = LX_AFFINITY_YIELDED;
    }
    return live[lx_balance_get(c->routing.balance)(&r->state, live, n)].b;
}

/* Models loaded on demand (backends/loader.h): the candidates that have m loaded, when some have; else all
 * (one of them will load it). Returns how many are left at the front of live. */
static size_t keep_loaded(lx_router *r, const lx_model *m, lx_candidate *live, size_t n)
{
    const lx_loader *l = lx_admission_loader(r->admission);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (lx_loader_ready(l, live[i].b, lx_model_name(m))) live[k++] = live[i];
    return k ? k : n;
}

/* The backend for model m now, or NULL (*soonest lowered to when one may be back). */
static lx_backend *pick_server(lx_router *r, const lx_config *c, const lx_model *m, const lx_route_ask *ask,
                               lx_route *out, lx_backend **fallback, unsigned *soonest)
{
    size_t n = lx_model_servers(m);
    reserve(r, 2 * n);
    lx_candidate *live = r->cand, *trials = r->cand + n;
    size_t n_live = 0, n_trials = 0;
    lx_backend *avoided = NULL;
    for (size_t i = 0; i < n; i++) {
        lx_backend *b = lx_model_server(m, i);
        if (!lx_backend_routable(b)) {
            if (lx_backend_awaiting_trial(b)) trials[n_trials++] = candidate(b);
            unsigned s = lx_backend_retry_after_s(b);
            if (*soonest == 0 || s < *soonest) *soonest = s;
        } else if (b == ask->avoid) {
            avoided = b;
        } else if (n_live == 0 || lx_backend_priority(b) <= lx_backend_priority(live[0].b)) {
            if (n_live && lx_backend_priority(b) < lx_backend_priority(live[0].b)) n_live = 0; /* start over */
            live[n_live++] = candidate(b);
        }
    }
    n_live = keep_loaded(r, m, live, n_live);
    if (n_live) return choose(r, c, ask, live, n_live, out);
    if (*fallback == NULL) *fallback = avoided ? avoided : best_trial(trials, n_trials);
    return avoided;
}

lx_route lx_router_pick(lx_router *r, const lx_config *c, const lx_route_ask *ask)
{
    lx_route out = {0};
    const lx_alias *alias = lx_config_alias(c, ask->name.p, ask->name.len);
    size_t n = alias ? alias->n_models : 1;
    unsigned soonest = 0;
    lx_backend *fallback = NULL;
    lx_model *fallback_model = NULL;
    for (size_t i = 0; i < n; i++) {
        lx_model *m = served_model(r, alias ? lx_slice_of(alias->models[i]) : ask->name);
        if (m == NULL) continue;
        lx_backend *before = fallback;
        lx_backend *b = pick_server(r, c, m, ask, &out, &fallback, &soonest);
        if (fallback != before) fallback_model = m;
        if (b) {
            out.model = m;
            out.backend = b;
            return out;
        }
    }
    out.model = fallback ? fallback_model : NULL;
    out.backend = fallback;
    out.retry_after_s = soonest ? soonest : 1;
    return out;
}
