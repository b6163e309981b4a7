/*
 * Unit tests for routing/router.c and routing/balance.c: which backend a request for a model goes to
 * (priority, then the balancing strategy, the backend to avoid, a half-open trial), what is served at all,
 * and the strategies' table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "routing/router.h"
#include "support.h"

static void on_dispatch(lx_admit_ticket *t) { (void)t; }
static void on_reject(lx_admit_ticket *t, lx_admit_reject why) { (void)t, (void)why; }
static const lx_admit_cbs cbs = {on_dispatch, on_reject};

static const lx_backend_conf *pick(lx_router *r, const lx_config *c, const char *model, const char *avoid,
                                   unsigned *retry_after_s)
{
    lx_route_ask ask = {.model = lx_slice_of(model), .avoid = avoid};
    lx_route out = lx_router_pick(r, c, &ask);
    *retry_after_s = out.retry_after_s;
    return out.backend;
}

/* Failover and load sharing: priority first, then requests in flight plus waiting, then config order;
 * the backend to avoid only when nothing else is routable; none routable → NULL and a Retry-After. */
static void test_pick(void **state)
{
    (void)state;
    const char *yaml = "backends:\n"
                       "  a: {type: vllm, url: 'http://127.0.0.1:9', priority: 1, max_concurrency: 4, models: [m]}\n"
                       "  b: {type: vllm, url: 'http://127.0.0.1:9', priority: 0, max_concurrency: 4, models: [m]}\n"
                       "  c: {type: vllm, url: 'http://127.0.0.1:9', priority: 0, max_concurrency: 4, models: [m, n]}\n"
                       "health_check: {failure_threshold: 1, cooldown_seconds: 60}\n";
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_config *c = lx_test_config(yaml);
    lx_admission *a = lx_admission_new(&loop, NULL, c);
    lx_router *r = lx_router_new(a);
    lx_backends *bs = lx_admission_backends(a);
    unsigned ra = 0;
    assert_string_equal(pick(r, c, "m", NULL, &ra)->name, "b"); /* priority 0, first listed */
    assert_string_equal(pick(r, c, "n", NULL, &ra)->name, "c");
    assert_null(pick(r, c, "x", NULL, &ra));

    lx_admit_ticket t1 = {0};
    assert_int_equal(lx_admission_submit(a, &t1, &cbs, "b", NULL, LX_PRIO_NORMAL, 1), LX_ADMIT_NOW);
    assert_string_equal(pick(r, c, "m", NULL, &ra)->name, "c"); /* b has one in flight */
    assert_string_equal(pick(r, c, "m", "c", &ra)->name, "b");  /* c just failed */
    lx_admission_leave(a, &t1);

    /* b's circuit opens (threshold 1): c, then a (priority 1) when c is to be avoided */
    lx_backend *b = lx_backends_find(bs, "b");
    lx_backend_attempt_end(b, lx_backend_attempt_begin(b), LX_ATTEMPT_FAILED, "HTTP 503");
    assert_false(lx_backend_routable(b));
    assert_string_equal(pick(r, c, "m", NULL, &ra)->name, "c");
    assert_string_equal(pick(r, c, "m", "c", &ra)->name, "a");

    /* all open: none, and Retry-After is the cooldown left */
    lx_backend_attempt_end(lx_backends_find(bs, "a"), false, LX_ATTEMPT_FAILED, "connect");
    lx_backend_attempt_end(lx_backends_find(bs, "c"), false, LX_ATTEMPT_FAILED, "connect");
    ra = 0;
    assert_null(pick(r, c, "m", NULL, &ra));
    assert_in_range(ra, 59, 60);
    /* the one to avoid is still taken when it is the only routable one */
    lx_backend_attempt_end(lx_backends_find(bs, "c"), false, LX_ATTEMPT_OK, NULL);
    assert_string_equal(pick(r, c, "m", "c", &ra)->name, "c");

    lx_router_free(r);
    lx_admission_free(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    lx_config_unref(c);
}

static void test_served_models(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("backends:\n"
                                  "  a: {type: vllm, url: 'http://127.0.0.1:9', models: [m, n]}\n"
                                  "  b: {type: ollama, url: 'http://127.0.0.1:9', models: [o]}\n"
                                  "  off: {type: vllm, enabled: false, models: [p]}\n"
                                  "default_model: m\n");
    assert_true(lx_router_serves(c, LX_SLICE_LIT("n")));
    assert_true(lx_router_serves(c, LX_SLICE_LIT("o")));
    assert_false(lx_router_serves(c, LX_SLICE_LIT("p"))); /* a disabled backend serves nothing */
    assert_false(lx_router_serves(c, LX_SLICE_LIT("m2")));
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_router_models(c, &out);
    assert_string_equal(out.p, "m, n, o");
    lx_buf_free(&out);
    lx_config_unref(c);
}

static void test_balance_table(void **state)
{
    (void)state;
    const lx_balance *ll = lx_balance_find("least_loaded");
    assert_non_null(ll);
    assert_ptr_equal(lx_balance_default(), ll);
    assert_null(lx_balance_find("nope"));
    lx_balance_state st = {0};
    lx_candidate c[] = {{NULL, NULL, 3}, {NULL, NULL, 1}, {NULL, NULL, 1}, {NULL, NULL, 2}};
    assert_int_equal(ll->pick(&st, c, 4), 1); /* the fewest; a tie goes to the first */
    assert_int_equal(ll->pick(&st, c, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_served_models),
        cmocka_unit_test(test_balance_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
