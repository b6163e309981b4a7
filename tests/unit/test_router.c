/*
 * Unit tests for routing/router.c and routing/balance.c: which model a name resolves to (aliases in order
 * of preference), which backend a request goes to (priority, the balancing strategies, affinity and its
 * yield rule, the backend to avoid, a half-open trial), and what is served at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "routing/router.h"
#include "support.h"

typedef struct {
    uv_loop_t loop;
    lx_config *c;
    lx_admission *a;
    lx_router *r;
} fixture;

static void setup(fixture *f, const char *yaml)
{
    uv_loop_init(&f->loop);
    f->c = lx_test_config(yaml);
    f->a = lx_admission_new(&f->loop, NULL, f->c);
    f->r = lx_router_new(f->a);
}

static void teardown(fixture *f)
{
    lx_router_free(f->r);
    lx_admission_free(f->a);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    lx_config_unref(f->c);
}

static lx_backend *be(fixture *f, const char *name) { return lx_backends_find(lx_admission_backends(f->a), name); }

static lx_route route(fixture *f, const char *name, const char *avoid)
{
    lx_route_ask ask = {.name = lx_slice_of(name), .avoid = avoid ? be(f, avoid) : NULL};
    return lx_router_pick(f->r, f->c, &ask);
}

/* The backend's name, or "-" when none. */
static const char *pick(fixture *f, const char *name, const char *avoid)
{
    lx_backend *b = route(f, name, avoid).backend;
    return b ? lx_backend_name(b) : "-";
}

static void busy(fixture *f, const char *name, int n)
{
    for (int i = 0; i < n; i++)
        lx_backend_acquire(be(f, name));
}

static void idle(fixture *f, const char *name, int n)
{
    for (int i = 0; i < n; i++)
        lx_backend_release(be(f, name));
}

/* Failover and load sharing: priority first, then the least loaded; the backend to avoid only when nothing
 * else is routable; none routable → NULL and a Retry-After. */
static void test_pick(void **state)
{
    (void)state;
    fixture f;
    setup(&f, "backends:\n"
              "  a: {type: vllm, url: 'http://127.0.0.1:9', priority: 1, max_concurrency: 4, models: [m]}\n"
              "  b: {type: vllm, url: 'http://127.0.0.1:9', priority: 0, max_concurrency: 4, models: [m]}\n"
              "  c: {type: vllm, url: 'http://127.0.0.1:9', priority: 0, max_concurrency: 4, models: [m, n]}\n"
              "health_check: {failure_threshold: 1, cooldown_seconds: 60}\n");
    assert_string_not_equal(pick(&f, "m", NULL), "a"); /* priority 0 */
    assert_string_equal(pick(&f, "n", NULL), "c");
    assert_string_equal(pick(&f, "x", NULL), "-");
    busy(&f, "b", 1);
    assert_string_equal(pick(&f, "m", NULL), "c"); /* b has one in flight */
    assert_string_equal(pick(&f, "m", "c"), "b");  /* c just failed */
    idle(&f, "b", 1);

    /* b's circuit opens (threshold 1): c, then a (priority 1) when c is to be avoided */
    lx_backend *b = be(&f, "b");
    lx_backend_attempt_end(b, lx_backend_attempt_begin(b), LX_ATTEMPT_FAILED, "HTTP 503");
    assert_false(lx_backend_routable(b));
    assert_string_equal(pick(&f, "m", NULL), "c");
    assert_string_equal(pick(&f, "m", "c"), "a");

    /* all open: none, and Retry-After is the cooldown left */
    lx_backend_attempt_end(be(&f, "a"), false, LX_ATTEMPT_FAILED, "connect");
    lx_backend_attempt_end(be(&f, "c"), false, LX_ATTEMPT_FAILED, "connect");
    lx_route none = route(&f, "m", NULL);
    assert_null(none.backend);
    assert_in_range(none.retry_after_s, 59, 60);
    /* the one to avoid is still taken when it is the only routable one */
    lx_backend_attempt_end(be(&f, "c"), false, LX_ATTEMPT_OK, NULL);
    assert_string_equal(pick(&f, "m", "c"), "c");
    teardown(&f);
}

#define THREE                                                                                                          \
    "  a: {type: vllm, url: 'http://127.0.0.1:9', max_concurrency: 8, weight: 2, models: [big, small]}\n"              \
    "  b: {type: vllm, url: 'http://127.0.0.1:9', max_concurrency: 8, models: [big, {name: coder, "                    \
    "upstream_name: Org/Coder-32B}]}\n"                                                                                \
    "  c: {type: vllm, url: 'http://127.0.0.1:9', max_concurrency: 8, models: [small]}\n"                              \
    "health_check: {failure_threshold: 1, cooldown_seconds: 60}\n"

/* An alias is a list in order of preference: the first model with a routable backend takes the request. */
static void test_aliases(void **state)
{
    (void)state;
    fixture f;
    setup(&f, "backends:\n" THREE "routing:\n"
              "  aliases: {reasoning: [big, small], code: coder, think: reasoning}\n");
    lx_route r = route(&f, "reasoning", NULL);
    assert_string_equal(lx_model_name(r.model), "big");
    assert_string_equal(lx_model_name(route(&f, "think", NULL).model), "big"); /* an alias of an alias */
    assert_string_equal(pick(&f, "code", NULL), "b");
    const lx_backend_conf *bc = lx_config_backend(f.c, "b");
    assert_string_equal(lx_backend_conf_upstream(bc, "coder"), "Org/Coder-32B");
    assert_string_equal(lx_backend_conf_upstream(bc, "big"), "big");
    /* big's backends go down: the alias falls to small */
    lx_backend_attempt_end(be(&f, "a"), false, LX_ATTEMPT_FAILED, "connect");
    lx_backend_attempt_end(be(&f, "b"), false, LX_ATTEMPT_FAILED, "connect");
    r = route(&f, "reasoning", NULL);
    assert_string_equal(lx_model_name(r.model), "small");
    assert_string_equal(lx_backend_name(r.backend), "c");
    assert_null(route(&f, "code", NULL).backend);
    /* names: the served models and the aliases */
    assert_true(lx_router_serves(f.r, f.c, LX_SLICE_LIT("code")));
    assert_true(lx_router_serves(f.r, f.c, LX_SLICE_LIT("small")));
    assert_false(lx_router_serves(f.r, f.c, LX_SLICE_LIT("Org/Coder-32B")));
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_router_names(f.r, f.c, &out);
    assert_string_equal(out.p, "big, small, coder, reasoning (alias), code (alias), think (alias)");
    lx_buf_free(&out);
    teardown(&f);
}

/* Counts picks of model `big` over n requests (each released at once). */
static void share(fixture *f, int n, int *na, int *nb)
{
    *na = *nb = 0;
    for (int i = 0; i < n; i++) {
        const char *name = pick(f, "big", NULL);
        *na += strcmp(name, "a") == 0;
        *nb += strcmp(name, "b") == 0;
    }
}

static void test_strategies(void **state)
{
    (void)state;
    int na, nb;
    fixture f;
    setup(&f, "backends:\n" THREE "routing: {balance: weighted}\n");
    share(&f, 300, &na, &nb);
    assert_int_equal(na, 200); /* weight 2 : 1, exactly over whole rounds */
    assert_int_equal(nb, 100);
    teardown(&f);

    setup(&f, "backends:\n" THREE "routing: {balance: round_robin}\n");
    share(&f, 10, &na, &nb);
    assert_int_equal(na, 5);
    assert_int_equal(nb, 5);
    teardown(&f);

    setup(&f, "backends:\n" THREE); /* least_loaded: ties at random, the less loaded always */
    share(&f, 400, &na, &nb);
    assert_in_range(na, 140, 260);
    busy(&f, "a", 1);
    share(&f, 20, &na, &nb);
    assert_int_equal(nb, 20);
    idle(&f, "a", 1);
    teardown(&f);

    setup(&f, "backends:\n" THREE "routing: {balance: peak_ewma}\n");
    lx_backend_note_latency(be(&f, "a"), 2.0); /* a is slow */
    lx_backend_note_latency(be(&f, "b"), 0.1);
    share(&f, 50, &na, &nb);
    assert_int_equal(nb, 50); /* two choices among two: the cheaper always wins */
    busy(&f, "b", 40);        /* 0.1 × 41 > 2.0 × 1 */
    share(&f, 10, &na, &nb);
    assert_int_equal(na, 10);
    idle(&f, "b", 40);
    teardown(&f);
}

static lx_route keyed(fixture *f, uint64_t key)
{
    lx_route_ask ask = {.name = LX_SLICE_LIT("big"), .user_key = key, .has_user_key = true};
    return lx_router_pick(f->r, f->c, &ask);
}

/* User affinity: a key keeps to one backend, keys spread over both, and the preferred one yields when it
 * is much busier than the least busy (diff >= 4 and ratio >= 2). */
static void test_user_affinity(void **state)
{
    (void)state;
    fixture f;
    setup(&f, "backends:\n" THREE "routing: {affinity: user}\n");
    int to_a = 0;
    for (uint64_t k = 1; k <= 200; k++) {
        lx_route r = keyed(&f, k * 0x9E3779B97F4A7C15ULL);
        assert_int_equal(r.affinity, LX_AFFINITY_HIT);
        assert_ptr_equal(keyed(&f, k * 0x9E3779B97F4A7C15ULL).backend, r.backend); /* stable */
        to_a += r.backend == be(&f, "a");
    }
    assert_in_range(to_a, 60, 140);
    uint64_t key = 42;
    lx_backend *home = keyed(&f, key).backend;
    const char *other = home == be(&f, "a") ? "b" : "a";
    busy(&f, lx_backend_name(home), 3); /* 3 vs 0: kept */
    assert_ptr_equal(keyed(&f, key).backend, home);
    busy(&f, lx_backend_name(home), 1); /* 4 vs 0: yields */
    lx_route r = keyed(&f, key);
    assert_int_equal(r.affinity, LX_AFFINITY_YIELDED);
    assert_ptr_equal(r.preferred, home);
    assert_string_equal(lx_backend_name(r.backend), other);
    busy(&f, other, 1); /* 4 vs 1: ratio 5/2 >= 2, diff 3 < 4: kept */
    assert_ptr_equal(keyed(&f, key).backend, home);
    idle(&f, lx_backend_name(home), 4);
    idle(&f, other, 1);
    lx_route_ask no_key = {.name = LX_SLICE_LIT("big")};
    assert_int_equal(lx_router_pick(f.r, f.c, &no_key).affinity, LX_AFFINITY_UNUSED);
    teardown(&f);
}

/* A conversation of n turns: its prompt is a fixed 1 KB system prompt, then one 300-byte turn per message. */
static lx_prefix_key turn_key(int conversation, int turns)
{
    char text[4096];
    size_t len = 0;
    for (int i = 0; i < 1024; i++)
        text[len++] = (char)('a' + (i * 7 + conversation) % 26);
    for (int t = 0; t < turns && len + 300 <= sizeof text; t++)
        for (int i = 0; i < 300; i++)
            text[len++] = (char)('A' + (i + t) % 26);
    lx_prefix_key k;
    lx_prefix_key_of((lx_slice){text, len}, &k);
    return k;
}

static lx_route prefixed(fixture *f, const lx_prefix_key *k)
{
    lx_route_ask ask = {.name = LX_SLICE_LIT("big"), .prefix = k};
    return lx_router_pick(f->r, f->c, &ask);
}

/* Prefix affinity: a new conversation is balanced; each later turn goes where the turn before went (the
 * longest known prefix), and yields when that backend is much busier. */
static void test_prefix_affinity(void **state)
{
    (void)state;
    fixture f;
    setup(&f, "backends:\n" THREE "routing: {affinity: prefix, balance: round_robin}\n");
    lx_prefix_key k1 = turn_key(1, 1), k2 = turn_key(1, 2), k5 = turn_key(1, 5), other = turn_key(2, 1);
    assert_int_equal(k1.n, 5);                /* 1324 bytes: 5 full blocks */
    assert_int_equal(k5.n, LX_PREFIX_BLOCKS); /* the window is full */
    assert_int_equal(k2.n, 6);
    assert_int_equal(k1.h[4], k2.h[4]); /* the blocks they share have the same names */
    assert_int_not_equal(k1.h[0], other.h[0]);
    lx_route r = prefixed(&f, &k1);
    assert_int_equal(r.affinity, LX_AFFINITY_UNUSED); /* nothing known yet: balanced */
    lx_router_learn(f.r, &k1, r.backend);
    lx_backend *home = r.backend;
    for (int i = 0; i < 6; i++) { /* round robin would alternate; the conversation stays */
        lx_route t = prefixed(&f, &k2);
        assert_int_equal(t.affinity, LX_AFFINITY_HIT);
        assert_ptr_equal(t.backend, home);
    }
    lx_router_learn(f.r, &k2, home);
    assert_ptr_equal(prefixed(&f, &k5).backend, home);
    busy(&f, lx_backend_name(home), 4);
    r = prefixed(&f, &k5);
    assert_int_equal(r.affinity, LX_AFFINITY_YIELDED);
    assert_ptr_not_equal(r.backend, home);
    idle(&f, lx_backend_name(home), 4);
    lx_prefix_key short_prompt;
    lx_prefix_key_of(LX_SLICE_LIT("hi"), &short_prompt);
    assert_int_equal(short_prompt.n, 0);
    assert_int_equal(prefixed(&f, &short_prompt).affinity, LX_AFFINITY_UNUSED);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick),          cmocka_unit_test(test_aliases),         cmocka_unit_test(test_strategies),
        cmocka_unit_test(test_user_affinity), cmocka_unit_test(test_prefix_affinity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
