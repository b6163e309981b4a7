/*
 * The hash map and SipHash-1-3. See map.h.
 *
 * Invariants: n_slots is a power of two (or 0 before the first add); a node is in the chain of slot
 * hash & (n_slots - 1); count is the number of nodes; the process key is drawn once (uv_random, else
 * the clock and an address) before the first hash.
 */
#include "utils/map.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ---------- SipHash-1-3 ---------- */

static uint64_t sip_key[2];
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void sip_init(void)
{
    if (uv_random(NULL, NULL, sip_key, sizeof sip_key, 0, NULL) == 0) return;
    uint64_t t = lx_now_ns();
    sip_key[0] = t * 0x9e3779b97f4a7c15ULL;
    sip_key[1] = (uint64_t)(uintptr_t)&sip_key ^ (t >> 7);
}

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

/* clang-format off */
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                                  \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                                     \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                                     \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                                  \
    } while (0)
/* clang-format on */

uint64_t lx_hash(const void *p, size_t len)
{
    pthread_once(&sip_once, sip_init);
    const unsigned char *in = p;
    uint64_t v0 = 0x736f6d6570736575ULL ^ sip_key[0], v1 = 0x646f72616e646f6dULL ^ sip_key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ sip_key[0], v3 = 0x7465646279746573ULL ^ sip_key[1];
    uint64_t b = (uint64_t)len << 56, m;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&m, in + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---------- the map ---------- */

void lx_map_init(lx_map *m) { *m = (lx_map){0}; }

void lx_map_free(lx_map *m)
{
    free(m->slots);
    lx_map_init(m);
}

static void resize(lx_map *m, size_t n)
{
    lx_map_node **slots = lx_xcalloc(n, sizeof *slots);
    for (size_t i = 0; i < m->n_slots; i++) {
        for (lx_map_node *e = m->slots[i], *next; e; e = next) {
            next = e->chain;
            e->chain = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
}

static lx_map_node *find(const lx_map *m, const char *key, size_t len, uint64_t h)
{
    if (m->n_slots == 0) return NULL;
    for (lx_map_node *e = m->slots[h & (m->n_slots - 1)]; e; e = e->chain)
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0) return e;
    return NULL;
}

lx_map_node *lx_map_find(const lx_map *m, const char *key, size_t len)
{
    return m->count ? find(m, key, len, lx_hash(key, len)) : NULL;
}

void lx_map_add(lx_map *m, lx_map_node *n, const char *key, size_t len)
{
    uint64_t h = lx_hash(key, len);
    LX_ASSERT(find(m, key, len, h) == NULL);
    if (m->n_slots == 0)
        resize(m, LX_MAP_MIN_SLOTS);
    else if (m->n_slots > LX_MAP_MIN_SLOTS && m->count < m->n_slots / 8)
        resize(m, m->n_slots / 2);
    *n = (lx_map_node){.chain = m->slots[h & (m->n_slots - 1)], .hash = h, .key = key, .key_len = len};
    m->slots[h & (m->n_slots - 1)] = n;
    if (++m->count > m->n_slots) resize(m, m->n_slots * 2);
}

void lx_map_remove(lx_map *m, lx_map_node *n)
{
    lx_map_node **pp = &m->slots[n->hash & (m->n_slots - 1)];
    while (*pp != n) {
        LX_ASSERT(*pp != NULL);
        pp = &(*pp)->chain;
    }
    *pp = n->chain;
    n->chain = NULL;
    m->count--;
}

lx_map_node *lx_map_next(lx_map_iter *it)
{
    lx_map_node *n = it->next;
    while (n == NULL && it->slot < it->m->n_slots)
        n = it->m->slots[it->slot++];
    if (n) it->next = n->chain;
    return n;
}
