/*
 * route-bench: what the router's decision costs per request (routing/router.c), with 16 backends serving
 * one model behind an alias.
 *
 * For each strategy (least_loaded, round_robin, weighted, peak_ewma), without and with prefix affinity, it
 * times N calls of lx_router_pick for the alias (the name resolved, the candidates gathered, the strategy
 * or the prefix table applied — 1,000 known 2 KB conversations, their blocks named beforehand as the proxy
 * does once per request) with the backends carrying different loads, and reports the median ns per
 * decision over RUNS rounds. The goal (issue: ModelRouter) is at most 1 µs.
 *
 * Usage: route-bench [N, default 1000000] [backends, default 16]
 * Build optimized for meaningful numbers: cmake -DCMAKE_BUILD_TYPE=Release (no LEXORA_SANITIZE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "routing/router.h"
#include "utils/buf.h"
#include "utils/common.h"

#define RUNS 7

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static lx_config *config(size_t n_backends, const char *balance, const char *affinity)
{
    lx_buf y;
    lx_buf_init(&y, 0);
    lx_buf_append_str(&y, "backends:\n");
    for (size_t i = 0; i < n_backends; i++)
        lx_buf_printf(&y, "  gpu%zu: {type: vllm, url: 'http://127.0.0.1:9', weight: %zu, models: [qwen3-32b]}\n", i,
                      1 + i % 3);
    lx_buf_printf(&y, "routing: {balance: %s, affinity: %s, aliases: {reasoning: [qwen3-32b]}}\n", balance, affinity);
    lx_buf errs;
    lx_buf_init(&errs, 0);
    lx_config *c = lx_config_parse("route-bench", y.p, y.len, &errs);
    if (c == NULL) {
        fprintf(stderr, "route-bench: bad config: %s\n", errs.p);
        exit(1);
    }
    lx_buf_free(&y);
    lx_buf_free(&errs);
    return c;
}

#define PROMPTS 1000

static lx_prefix_key keys[PROMPTS];

/* PROMPTS conversations of 2 KB, each already sent once (the router knows where). */
static void learn_prompts(lx_router *r, lx_backends *bs)
{
    char prompt[LX_PREFIX_WINDOW];
    for (size_t i = 0; i < PROMPTS; i++) {
        for (size_t k = 0; k < sizeof prompt; k++)
            prompt[k] = (char)('a' + (i * 7 + k * 13) % 26);
        snprintf(prompt, 32, "conversation %zu", i);
        lx_prefix_key_of((lx_slice){prompt, sizeof prompt}, &keys[i]);
        lx_router_learn(r, &keys[i], lx_backends_at(bs, i % lx_backends_count(bs)));
    }
}

/* Median ns per decision over RUNS rounds of n picks. */
static double time_picks(lx_router *r, const lx_config *c, size_t n, bool keyed)
{
    double ns[RUNS];
    volatile uintptr_t sink = 0;
    for (int run = 0; run < RUNS; run++) {
        uint64_t t0 = lx_now_ns();
        for (size_t i = 0; i < n; i++) {
            lx_route_ask ask = {.name = LX_SLICE_LIT("reasoning")};
            if (keyed) ask.prefix = &keys[i % PROMPTS];
            sink ^= (uintptr_t)lx_router_pick(r, c, &ask).backend;
        }
        ns[run] = (double)(lx_now_ns() - t0) / (double)n;
    }
    (void)sink;
    qsort(ns, RUNS, sizeof ns[0], cmp_double);
    return ns[RUNS / 2];
}

/* Median ns to name the blocks of a 2 KB prompt (lx_prefix_key_of, once per request with prefix affinity). */
static double time_naming(size_t n)
{
    char prompt[LX_PREFIX_WINDOW];
    memset(prompt, 'x', sizeof prompt);
    double ns[RUNS];
    volatile uint64_t sink = 0;
    for (int run = 0; run < RUNS; run++) {
        uint64_t t0 = lx_now_ns();
        for (size_t i = 0; i < n; i++) {
            prompt[i % sizeof prompt] = (char)i;
            lx_prefix_key k;
            lx_prefix_key_of((lx_slice){prompt, sizeof prompt}, &k);
            sink ^= k.h[k.n - 1];
        }
        ns[run] = (double)(lx_now_ns() - t0) / (double)n;
    }
    (void)sink;
    qsort(ns, RUNS, sizeof ns[0], cmp_double);
    return ns[RUNS / 2];
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    size_t n_backends = argc > 2 ? strtoul(argv[2], NULL, 10) : 16;
    if (n == 0 || n_backends == 0) {
        fprintf(stderr, "usage: route-bench [decisions] [backends]\n");
        return 2;
    }
    static const char *const strategies[] = {"least_loaded", "round_robin", "weighted", "peak_ewma"};
    printf("route-bench: %zu decisions per round, %d rounds, %zu backends serving the model behind an alias\n", n, RUNS,
           n_backends);
    printf("%-14s %16s %16s\n", "strategy", "ns/decision", "prefix affinity");
    for (size_t s = 0; s < LX_ARRAY_LEN(strategies); s++) {
        double result[2];
        for (int keyed = 0; keyed < 2; keyed++) {
            uv_loop_t loop;
            uv_loop_init(&loop);
            lx_config *c = config(n_backends, strategies[s], keyed ? "prefix" : "none");
            lx_admission *a = lx_admission_new(&loop, NULL, c);
            lx_router *r = lx_router_new(a);
            lx_backends *bs = lx_admission_backends(a);
            if (keyed) learn_prompts(r, bs);
            for (size_t i = 0; i < lx_backends_count(bs); i++) { /* uneven loads and latencies */
                lx_backend *b = lx_backends_at(bs, i);
                for (size_t k = 0; k < i % 5; k++)
                    lx_backend_acquire(b);
                lx_backend_note_latency(b, 0.05 + 0.01 * (double)(i % 7));
            }
            result[keyed] = time_picks(r, c, n, keyed);
            for (size_t i = 0; i < lx_backends_count(bs); i++)
                for (size_t k = 0; k < i % 5; k++)
                    lx_backend_release(lx_backends_at(bs, i));
            lx_router_free(r);
            lx_admission_free(a);
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_loop_close(&loop);
            lx_config_unref(c);
        }
        printf("%-14s %16.1f %16.1f\n", strategies[s], result[0], result[1]);
    }
    printf("naming the blocks of a 2 KB prompt (once per request, prefix affinity): %.1f ns\n", time_naming(n / 10));
    return 0;
}
