/*
 * lexora-sim: the deterministic pure pieces. See sim.h.
 *
 * The same input always gives the same output here, on every machine: generated words depend only
 * on (seed, token index), embeddings only on the seed, and the PRNG is splitmix64, so a run with the
 * same --seed fails the same requests. No state is kept in this file; any thread.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char *const words[] = {
    "the ",     "model ",   "answers ", "slowly ",  "while ",   "tokens ",  "flow ",    "through ",
    "a ",       "gateway ", "that ",    "keeps ",   "every ",   "request ", "in ",      "order ",
    "and ",     "counts ",  "what ",    "it ",      "sends ",   "back ",    "to ",      "each ",
    "client ",  "under ",   "load ",    "some ",    "streams ", "wait ",    "for ",     "their ",
    "turn ",    "quietly ", "others ",  "finish ",  "early ",   "with ",    "useful ",  "text ",
    "about ",   "queues ",  "limits ",  "retries ", "metrics ", "latency ", "batches ", "caches ",
    "simple ",  "steady ",  "bright ",  "river ",   "stone ",   "window ",  "garden ",  "signal ",
    "morning ", "letter ",  "number ",  "little ",  "green ",   "silver ",  "orange ",  "paper ",
};

uint64_t sim_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t sim_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t sim_rng_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    return sim_mix(*state);
}

double sim_rng_unit(uint64_t *state) { return (double)(sim_rng_next(state) >> 11) * 0x1.0p-53; }

const char *sim_word(uint64_t seed, long i, size_t *len)
{
    size_t k = (size_t)(sim_mix(seed ^ sim_mix((uint64_t)i + 1)) % LX_ARRAY_LEN(words));
    *len = strlen(words[k]);
    return words[k];
}

long sim_tokens_for_bytes(size_t bytes) { return (long)((bytes + 3) / 4); }

double sim_itl_ms(double tokens_per_sec, double slowdown, long running, long max_batch)
{
    if (tokens_per_sec <= 0) return 0;
    long others = running > 1 ? running - 1 : 0;
    return 1000.0 / tokens_per_sec * (1.0 + slowdown * (double)others / (double)max_batch);
}

void sim_hex_id(uint64_t *state, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = sim_rng_next(state), b = sim_rng_next(state);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

void sim_embedding(uint64_t seed, long dim, double *out)
{
    uint64_t st = seed;
    double norm = 0;
    for (long i = 0; i < dim; i++) {
        out[i] = sim_rng_unit(&st) * 2.0 - 1.0;
        norm += out[i] * out[i];
    }
    norm = norm > 0 ? sqrt(norm) : 1.0;
    for (long i = 0; i < dim; i++)
        out[i] = round(out[i] / norm * 1e6) / 1e6;
}

static void base64_block(const unsigned char in[3], size_t n, char out[4])
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t v = (uint32_t)in[0] << 16 | (uint32_t)(n > 1 ? in[1] : 0) << 8 | (n > 2 ? in[2] : 0);
    out[0] = tab[(v >> 18) & 63];
    out[1] = tab[(v >> 12) & 63];
    out[2] = n > 1 ? tab[(v >> 6) & 63] : '=';
    out[3] = n > 2 ? tab[v & 63] : '=';
}

int sim_base64_floats(const double *v, long n, lx_buf *out)
{
    size_t bytes = (size_t)n * 4;
    unsigned char *raw = lx_xmalloc(bytes ? bytes : 1);
    for (long i = 0; i < n; i++) {
        float f = (float)v[i];
        uint32_t u;
        memcpy(&u, &f, 4);
        for (int k = 0; k < 4; k++)
            raw[i * 4 + k] = (unsigned char)(u >> (8 * k));
    }
    int rc = 0;
    for (size_t i = 0; i < bytes && rc == 0; i += 3) {
        char quad[4];
        base64_block(raw + i, LX_MIN(3, bytes - i), quad);
        rc = lx_buf_append(out, quad, 4);
    }
    free(raw);
    return rc;
}
