/*
 * Balancing strategies: how the router chooses among equally good backends (routable, serving the model,
 * of the same `priority`). Each strategy is one function and one row of balance.c's table, found by name.
 * A strategy sees the candidates in config order with their load (requests in flight plus waiting in
 * their line) and returns the index of its choice; its state, if it keeps any, lives in lx_balance_state
 * (one per router). Loop thread only.
 *
 *   least_loaded   the fewest in flight plus waiting; ties go to the first in config order (the default)
 */
#ifndef LX_BALANCE_H
#define LX_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "config.h"

typedef struct {
    const lx_backend_conf *conf;
    lx_backend *b; /* its run-time state; NULL when the registry does not know it (no limits apply) */
    size_t load;   /* in flight plus waiting for it */
} lx_candidate;

/* State a strategy may keep between picks (e.g. a rotation's position). Zeroed when the router is made. */
typedef struct {
    uint64_t turn;
} lx_balance_state;

/* Chooses among c[0..n), n >= 1; returns the index. */
typedef size_t (*lx_balance_fn)(lx_balance_state *st, const lx_candidate *c, size_t n);

typedef struct {
    const char *name;
    lx_balance_fn pick;
} lx_balance;

/* The strategy of this name, or NULL. */
const lx_balance *lx_balance_find(const char *name);
/* The default strategy (least_loaded). */
const lx_balance *lx_balance_default(void);

#endif
