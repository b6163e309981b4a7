/* The balancing strategies, one function and one table row each. See balance.h. */
#include "routing/balance.h"

#include "utils/common.h"

/* A uniform draw from [0, n), n >= 1 (xorshift64*). */
static size_t draw(lx_balance_state *st, size_t n)
{
    uint64_t x = st->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    return (size_t)((x * 0x2545F4914F6CDD1DULL) >> 11) % n;
}

static size_t least_loaded(lx_balance_state *st, const lx_candidate *c, size_t n)
{
    size_t best = 0, ties = 1;
    for (size_t i = 1; i < n; i++) {
        if (c[i].load < c[best].load) {
            best = i;
            ties = 1;
        } else if (c[i].load == c[best].load && draw(st, ++ties) == 0) {
            best = i; /* each of the tied keeps the choice with probability 1/ties */
        }
    }
    return best;
}

static size_t round_robin(lx_balance_state *st, const lx_candidate *c, size_t n)
{
    (void)c;
    return (size_t)(st->turn++ % n);
}

static size_t weighted(lx_balance_state *st, const lx_candidate *c, size_t n)
{
    (void)st;
    int64_t total = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t w = lx_backend_weight(c[i].b), *cur = lx_backend_balance_state(c[i].b);
        *cur += w;
        total += w;
        if (*cur > *lx_backend_balance_state(c[best].b)) best = i;
    }
    *lx_backend_balance_state(c[best].b) -= total;
    return best;
}

static double ewma_cost(const lx_candidate *c) { return lx_backend_latency_s(c->b) * (c->busy + 1); }

static size_t peak_ewma(lx_balance_state *st, const lx_candidate *c, size_t n)
{
    if (n == 1) return 0;
    size_t i = draw(st, n), j = draw(st, n - 1);
    if (j >= i) j++;
    double ci = ewma_cost(&c[i]), cj = ewma_cost(&c[j]);
    if (ci == cj) return c[i].busy <= c[j].busy ? i : j;
    return ci < cj ? i : j;
}

static const lx_balance_fn strategies[] = {
    [LX_BALANCE_LEAST_LOADED] = least_loaded,
    [LX_BALANCE_ROUND_ROBIN] = round_robin,
    [LX_BALANCE_WEIGHTED] = weighted,
    [LX_BALANCE_PEAK_EWMA] = peak_ewma,
};

lx_balance_fn lx_balance_get(lx_balance_kind kind)
{
    return (size_t)kind < LX_ARRAY_LEN(strategies) ? strategies[kind] : least_loaded;
}
