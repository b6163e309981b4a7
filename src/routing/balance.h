/*
 * Balancing strategies: how the router chooses among equally good backends (routable, serving the model,
 * of the same `priority`). Each strategy is one function and one row of balance.c's table, indexed by
 * routing.balance (lx_balance_kind). A strategy sees the candidates in config order with their load and
 * returns the index of its choice; its state lives in lx_balance_state (one per router) or, per backend, in
 * lx_backend_balance_state. Loop thread only.
 *
 *   least_loaded  the lowest (in flight + waiting inside the backend) / max_concurrency; ties at random
 *   round_robin   each in turn
 *   weighted      smooth weighted round robin by backends.NAME.weight (nginx's): over any window a backend
 *                 gets its share to within one request, spread out rather than in bursts
 *   peak_ewma     two random choices, the lower latency peak-EWMA × (in flight + 1) wins (Finagle, Linkerd)
 */
#ifndef LX_BALANCE_H
#define LX_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "config.h"

typedef struct {
    lx_backend *b;
    double busy; /* requests in flight on it plus those waiting inside it (adaptive) */
    double load; /* busy / max_concurrency */
} lx_candidate;

/* State a strategy may keep between picks. Seeded when the router is made. */
typedef struct {
    uint64_t turn;
    uint64_t rng; /* xorshift64* state, never 0 */
} lx_balance_state;

/* Chooses among c[0..n), n >= 1; returns the index. */
typedef size_t (*lx_balance_fn)(lx_balance_state *st, const lx_candidate *c, size_t n);

/* The strategy routing.balance names. */
lx_balance_fn lx_balance_get(lx_balance_kind kind);

#endif
