/*
 * One hash map for the whole project, and its one hash function.
 *
 * lx_hash is SipHash-1-3 under a key drawn at random once per process: the names hashed (users, models,
 * backends) often come from clients, and a keyed hash keeps a client from choosing names that all land
 * in one chain. Values stay the same within a process, not across processes.
 *
 * lx_map is intrusive: an element embeds an lx_map_node, and the map links nodes in chains, found by
 * their key (bytes the element owns: the map keeps only a pointer to them, so they must not move or
 * change while the node is in the map). The slot array doubles when the map holds more nodes than slots;
 * an add that finds it below an eighth full halves it first (never under LX_MAP_MIN_SLOTS), so a remove
 * never moves nodes and a walk may remove as it goes. The map owns only its slot
 * array: lx_map_free drops that, never the elements (walk them with lx_map_each first to free them).
 * Not thread-safe: a map belongs to one thread; lx_hash may be called from any thread.
 */
#ifndef LX_MAP_H
#define LX_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utils/common.h"

#define LX_MAP_MIN_SLOTS 8

/* SipHash-1-3 of the bytes under the process's key. */
uint64_t lx_hash(const void *p, size_t len);

typedef struct lx_map_node {
    struct lx_map_node *chain; /* the next node of its slot */
    uint64_t hash;
    const char *key;
    size_t key_len;
} lx_map_node;

typedef struct {
    lx_map_node **slots;
    size_t n_slots, count;
} lx_map;

void lx_map_init(lx_map *m);
/* Drops the slot array (the elements are the caller's); the map is empty and usable again after. */
void lx_map_free(lx_map *m);

/* The node whose key is these bytes, or NULL. */
lx_map_node *lx_map_find(const lx_map *m, const char *key, size_t len);
/* Adds n under key (which n's element owns). The key must not be in the map already. */
void lx_map_add(lx_map *m, lx_map_node *n, const char *key, size_t len);
/* Takes n (which is in m) out. */
void lx_map_remove(lx_map *m, lx_map_node *n);

static inline size_t lx_map_count(const lx_map *m) { return m->count; }

/* The element a node is embedded in. */
#define LX_MAP_ENTRY(node, type, member) LX_CONTAINER_OF(node, type, member)

/*
 * Every node, in no particular order: `for (lx_map_iter it = lx_map_iter_of(m); (n = lx_map_next(&it));)`.
 * The current node may be removed (or freed, after lx_map_remove) during the walk; nothing may be added.
 */
typedef struct {
    const lx_map *m;
    size_t slot;
    lx_map_node *next;
} lx_map_iter;

static inline lx_map_iter lx_map_iter_of(const lx_map *m) { return (lx_map_iter){m, 0, NULL}; }
lx_map_node *lx_map_next(lx_map_iter *it);

#endif
