/* The balancing strategies, one function and one table row each. See balance.h. */
#include "routing/balance.h"

#include <string.h>

#include "utils/common.h"

static size_t least_loaded(lx_balance_state *st, const lx_candidate *c, size_t n)
{
    (void)st;
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (c[i].load < c[best].load) best = i;
    return best;
}

static const lx_balance strategies[] = {
    {"least_loaded", least_loaded},
};

const lx_balance *lx_balance_find(const char *name)
{
    for (size_t i = 0; i < LX_ARRAY_LEN(strategies); i++)
        if (strcmp(strategies[i].name, name) == 0) return &strategies[i];
    return NULL;
}

const lx_balance *lx_balance_default(void) { return &strategies[0]; }
