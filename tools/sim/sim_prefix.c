/*
 * lexora-sim: the per-instance prefix cache, a model of vLLM's automatic prefix caching (and of llama.cpp's
 * slot cache) that is good enough to show what routing by prefix gains. See sim.h.
 *
 * A prompt is "rendered" (chat: each message's role and text in order, the system prompt included;
 * completions: the prompt) and only its first SIM_PREFIX_WINDOW bytes count. That window is cut in blocks
 * of SIM_PREFIX_BLOCK bytes (the last one may be shorter); block k's key is a hash chained over every byte
 * up to its end, so a key stands for the whole prefix before it, as vLLM's block hashes do. A request
 * matches the longest prefix whose key is cached; once its prefill is done, all its keys are remembered.
 * The cache is an LRU of at most `capacity` keys: a match or an insert makes a key the newest; an insert
 * into a full cache evicts the oldest.
 *
 * Invariants: map and lru hold the same entries; an entry is in both or in neither; entries never move (the
 * map keys point at their hash). One thread (the loop's).
 */
#include <stdlib.h>

#include "sim.h"
#include "utils/list.h"
#include "utils/map.h"

typedef struct {
    lx_map_node node;
    lx_list link; /* in lru, newest last */
    uint64_t key;
} entry;

struct sim_prefix_cache {
    entry *entries;
    size_t capacity, used;
    lx_map map;
    lx_list lru;
};

sim_prefix_cache *sim_prefix_new(size_t capacity)
{
    if (capacity == 0) return NULL;
    sim_prefix_cache *c = lx_xcalloc(1, sizeof *c);
    c->entries = lx_xcalloc(capacity, sizeof *c->entries);
    c->capacity = capacity;
    lx_map_init(&c->map);
    lx_list_init(&c->lru);
    return c;
}

void sim_prefix_free(sim_prefix_cache *c)
{
    if (c == NULL) return;
    lx_map_free(&c->map);
    free(c->entries);
    free(c);
}

size_t sim_prefix_count(const sim_prefix_cache *c) { return c ? c->used : 0; }

size_t sim_prefix_keys(const char *text, size_t len, sim_prefix_keyset *out)
{
    size_t window = LX_MIN(len, (size_t)SIM_PREFIX_WINDOW), at = 0;
    uint64_t h = SIM_HASH_INIT;
    out->n = 0;
    out->window = window;
    while (at < window) {
        size_t n = LX_MIN((size_t)SIM_PREFIX_BLOCK, window - at);
        h = sim_hash(h, text + at, n);
        at += n;
        out->key[out->n] = sim_mix(h ^ at); /* the length too: "ab"+"c" and "a"+"bc" differ */
        out->end[out->n++] = at;
    }
    return window;
}

static entry *find(const sim_prefix_cache *c, uint64_t key)
{
    lx_map_node *n = lx_map_find(&c->map, (const char *)&key, sizeof key);
    return n ? LX_MAP_ENTRY(n, entry, node) : NULL;
}

static void touch(sim_prefix_cache *c, entry *e)
{
    lx_list_remove(&e->link);
    lx_list_append(&c->lru, &e->link);
}

size_t sim_prefix_match(sim_prefix_cache *c, const sim_prefix_keyset *ks)
{
    if (c == NULL) return 0;
    for (size_t i = ks->n; i-- > 0;) {
        entry *e = find(c, ks->key[i]);
        if (e == NULL) continue;
        touch(c, e);
        return ks->end[i];
    }
    return 0;
}

static entry *take_slot(sim_prefix_cache *c)
{
    if (c->used < c->capacity) return &c->entries[c->used++];
    entry *old = LX_LIST_ENTRY(lx_list_first(&c->lru), entry, link);
    lx_list_remove(&old->link);
    lx_map_remove(&c->map, &old->node);
    return old;
}

void sim_prefix_insert(sim_prefix_cache *c, const sim_prefix_keyset *ks)
{
    if (c == NULL) return;
    for (size_t i = 0; i < ks->n; i++) {
        entry *e = find(c, ks->key[i]);
        if (e) {
            touch(c, e);
            continue;
        }
        e = take_slot(c);
        e->key = ks->key[i];
        lx_map_add(&c->map, &e->node, (const char *)&e->key, sizeof e->key);
        lx_list_append(&c->lru, &e->link);
    }
}
