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
 * candidates, and the balancing strategy (routing/balance.h, routing.balance) picks one of them.
 *
 * Affinity (routing.affinity) prefers one candidate, unless that backend is much busier than the least busy
 * candidate: it yields when it has at least LX_AFFINITY_YIELD_DIFF more requests in flight and at least
 * LX_AFFINITY_YIELD_RATIO times as many (in flight + 1), or when it cannot take a request now and another
 * can. Which one it prefers:
 *  - user: the candidate the user's key prefers by rendezvous hashing (adding or losing a backend moves only
 *    the users that preferred it);
 *  - prefix: the backend that was last sent the longest prefix of this prompt. The first
 *    LX_PREFIX_WINDOW bytes of the prompt (messages, system prompt included, or a completion's prompt) are
 *    cut into LX_PREFIX_BLOCK-byte blocks, each named by a hash chained over every byte before its end, as
 *    vLLM names its KV-cache blocks; a dispatched request teaches the router its blocks
 *    (lx_router_learn), in a fixed table of LX_PREFIX_TABLE_SLOTS slots where a newer block overwrites an
 *    older one. A turn of a conversation shares every full block but the last with the turn before, so it
 *    goes where that turn went and vLLM's prefix cache hits. A prompt with no known block (a new
 *    conversation) is balanced by the strategy and teaches where it went. `avoid` (the backend whose attempt just
 * failed) is taken only when no other server of the model is routable; after it, a backend whose half-open trial is out
 * (the request waits for the verdict rather than being refused), the least loaded of those. When no model of the name
 * has one, the answer says when one may take requests again. Loop thread only.
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

#define LX_AFFINITY_YIELD_DIFF  4
#define LX_AFFINITY_YIELD_RATIO 2.0
#define LX_PREFIX_WINDOW        2048
#define LX_PREFIX_BLOCK         256
#define LX_PREFIX_BLOCKS        (LX_PREFIX_WINDOW / LX_PREFIX_BLOCK)
#define LX_PREFIX_TABLE_SLOTS   16384 /* 256 KiB; 2,048 conversations' full windows */

/* A prompt's prefix blocks: h[i] names the first (i + 1) × LX_PREFIX_BLOCK bytes. */
typedef struct {
    uint64_t h[LX_PREFIX_BLOCKS];
    size_t n; /* full blocks: 0 when the prompt is shorter than one */
} lx_prefix_key;

void lx_prefix_key_of(lx_slice prompt, lx_prefix_key *out);

typedef struct lx_router lx_router;

/* Reads backend state and what is served through admission (which must outlive the router). */
lx_router *lx_router_new(lx_admission *a);
void lx_router_free(lx_router *r);

/* Is name a model served now or an alias of c (else the client gets 404 model_not_found)? */
bool lx_router_serves(lx_router *r, const lx_config *c, lx_slice name);
/* Appends "a, b, code (alias), ...": every model served now and every alias, for the 404's message. */
void lx_router_names(lx_router *r, const lx_config *c, lx_buf *out);

typedef struct {
    lx_slice name;               /* as the client asked: a model or an alias */
    const lx_backend *avoid;     /* a backend to take only when no other will do; NULL for none */
    uint64_t user_key;           /* affinity: user — the user's key */
    bool has_user_key;           /* ... given */
    const lx_prefix_key *prefix; /* affinity: prefix — the prompt's blocks; NULL for none */
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
/* A request with these prefix blocks was sent to b: the blocks now lead to b. */
void lx_router_learn(lx_router *r, const lx_prefix_key *k, lx_backend *b);

#endif
