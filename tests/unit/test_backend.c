/* Unit tests for backends/backend.c: reading vLLM's /metrics, slots across a reconfiguration, the circuit breaker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "backends/backend.h"
#include "support.h"

static bool parse(const char *text, lx_vllm_load *out) { return lx_vllm_metrics_parse(text, strlen(text), out); }

static void test_vllm_metrics(void **state)
{
    (void)state;
    const char *text = "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                       "# TYPE vllm:num_requests_waiting gauge\n"
                       "vllm:num_requests_waiting{model_name=\"qwen3-32b\",engine=\"0\"} 3.0\n"
                       "vllm:num_requests_waiting_by_reason{reason=\"capacity\"} 99\n"
                       "vllm:num_requests_running{model_name=\"qwen3-32b\",engine=\"0\"} 16.0\n"
                       "vllm:kv_cache_usage_perc{model_name=\"qwen3-32b\",engine=\"0\"} 0.42\n";
    lx_vllm_load l;
    assert_true(parse(text, &l));
    assert_true(l.has_waiting && l.has_kv);
    assert_true(l.waiting == 3.0);
    assert_true(l.kv_usage > 0.419 && l.kv_usage < 0.421);
}

static void test_old_metric_names_and_several_engines(void **state)
{
    (void)state;
    const char *text = "vllm:num_requests_waiting{engine=\"0\"} 1\r\n"
                       "vllm:num_requests_waiting{engine=\"1\"} 2\r\n"
                       "vllm:gpu_cache_usage_perc{engine=\"0\"} 0.5\r\n"
                       "vllm:gpu_cache_usage_perc{engine=\"1\"} 0.97\r\n";
    lx_vllm_load l;
    assert_true(parse(text, &l));
    assert_true(l.waiting == 3.0);   /* summed */
    assert_true(l.kv_usage == 0.97); /* the fullest */
}

static void test_labels_with_braces_and_no_labels(void **state)
{
    (void)state;
    lx_vllm_load l;
    assert_true(parse("vllm:num_requests_waiting{model_name=\"a}b\\\"c\"} 7 1700000000000\n", &l));
    assert_true(l.waiting == 7.0);
    assert_true(parse("vllm:kv_cache_usage_perc 0.25", &l));
    assert_false(l.has_waiting);
    assert_true(l.kv_usage == 0.25);
}

static void test_not_vllm(void **state)
{
    (void)state;
    lx_vllm_load l;
    assert_false(parse("", &l));
    assert_false(parse("# only comments\nhttp_requests_total 5\n", &l));
    assert_false(parse("vllm:num_requests_waiting{engine=\"0\"} NaN\n", &l));
    assert_false(parse("vllm:num_requests_waiting{engine=\"0\" 3\n", &l)); /* unterminated labels */
    assert_false(parse("vllm:num_requests_waiting{engine=\"0\"} three\n", &l));
    assert_false(lx_vllm_metrics_parse(NULL, 0, &l));
}

static const char *yaml = "vllm:\n  url: http://127.0.0.1:9\n"
                          "backends:\n"
                          "  a:\n    type: vllm\n    url: http://127.0.0.1:9\n    max_concurrency: 2\n"
                          "    models: [{name: m}]\n"
                          "  b:\n    type: vllm\n    url: http://127.0.0.1:9\n    max_concurrency: 1\n"
                          "    models: [{name: n}]\n";

static int ready_calls;
static void on_ready(lx_backend *b, void *ud)
{
    (void)b;
    (void)ud;
    ready_calls++;
}

static void test_slots_and_reconfigure(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_config *c = lx_test_config(yaml);
    lx_backends *s = lx_backends_new(&loop, NULL, on_ready, NULL);
    lx_backends_configure(s, c);
    assert_int_equal(lx_backends_count(s), 2);
    lx_backend *a = lx_backends_find(s, "a");
    assert_non_null(a);
    assert_true(lx_backend_can_accept(a));
    lx_backend_acquire(a);
    lx_backend_acquire(a);
    assert_false(lx_backend_can_accept(a));
    ready_calls = 0;
    lx_backend_release(a);
    assert_true(lx_backend_can_accept(a));
    assert_int_equal(ready_calls, 1);
    lx_backend_acquire(a);

    /* b removed, a's limit raised: a keeps its slots in use, b is retired but still there. */
    const char *yaml2 = "vllm:\n  url: http://127.0.0.1:9\n"
                        "backends:\n  a:\n    type: vllm\n    url: http://127.0.0.1:9\n    max_concurrency: 3\n"
                        "    models: [{name: m}]\n";
    lx_config *c2 = lx_test_config(yaml2);
    lx_backends_configure(s, c2);
    assert_ptr_equal(lx_backends_find(s, "a"), a);
    lx_backend_info info;
    lx_backend_info_get(a, &info);
    assert_int_equal(info.in_flight, 2);
    assert_int_equal(info.max_concurrency, 3);
    assert_false(info.retired);
    lx_backend_info_get(lx_backends_find(s, "b"), &info);
    assert_true(info.retired);
    assert_true(lx_backend_can_accept(a));

    lx_backends_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    lx_config_unref(c);
    lx_config_unref(c2);
}

static int down_calls;
static void on_down(lx_backend *b, void *ud)
{
    (void)b;
    (void)ud;
    down_calls++;
}

/* Drain: a drained backend is neither routable nor accepts, keeps its slots in use, tells on_down once
 * (idempotent), and keeps the flag across a reload that keeps it; undrain tells on_ready. */
static void test_drain(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_config *c = lx_test_config(yaml);
    lx_backends *s = lx_backends_new(&loop, NULL, on_ready, NULL);
    lx_backends_on_down(s, on_down);
    lx_backends_configure(s, c);
    lx_backend *a = lx_backends_find(s, "a");
    lx_backend_acquire(a);
    down_calls = ready_calls = 0;
    assert_true(lx_backend_set_drained(a, true));
    assert_false(lx_backend_set_drained(a, true));
    assert_int_equal(down_calls, 1);
    assert_true(lx_backend_drained(a));
    assert_false(lx_backend_routable(a));
    assert_false(lx_backend_can_accept(a));
    assert_false(lx_backend_awaiting_trial(a));
    assert_false(lx_backend_is_down(a)); /* drained is not down: /health and its status say so apart */
    lx_backend_info info;
    lx_backend_info_get(a, &info);
    assert_true(info.drained);
    assert_string_equal(lx_backend_drain_state(&info), "draining"); /* one still in flight */
    lx_backend_release(a);
    lx_backend_info_get(a, &info);
    assert_string_equal(lx_backend_drain_state(&info), "drained");
    assert_false(lx_backend_can_accept(a)); /* a freed slot does not reopen it */
    assert_true(lx_backend_can_accept(lx_backends_find(s, "b")));

    lx_backends_configure(s, c); /* a reload that keeps a */
    assert_true(lx_backend_drained(a));
    assert_false(lx_backend_routable(a));

    ready_calls = 0;
    assert_true(lx_backend_set_drained(a, false));
    assert_false(lx_backend_set_drained(a, false));
    assert_int_equal(ready_calls, 1);
    assert_true(lx_backend_routable(a));
    assert_true(lx_backend_can_accept(a));
    lx_backend_info_get(a, &info);
    assert_string_equal(lx_backend_drain_state(&info), "serving");

    /* a reload that removes it forgets the drain */
    assert_true(lx_backend_set_drained(lx_backends_find(s, "b"), true));
    const char *only_a = "vllm:\n  url: http://127.0.0.1:9\n"
                         "backends:\n  a:\n    type: vllm\n    url: http://127.0.0.1:9\n    models: [{name: m}]\n";
    lx_config *c2 = lx_test_config(only_a);
    lx_backends_configure(s, c2);
    assert_false(lx_backend_drained(lx_backends_find(s, "b")));

    lx_backends_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    lx_config_unref(c);
    lx_config_unref(c2);
}

/* The circuit breaker: threshold failures open it; a 429-like answer (OK) resets the count; after the
 * cooldown one trial goes; its failure reopens, its success closes. */
static void test_circuit_breaker(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_config *c = lx_test_config("backends:\n  a: {type: vllm, url: 'http://127.0.0.1:9', models: [m]}\n"
                                  "health_check: {failure_threshold: 2, cooldown_seconds: 0.05}\n");
    lx_backends *s = lx_backends_new(&loop, NULL, NULL, NULL);
    lx_backends_configure(s, c);
    lx_backend *a = lx_backends_find(s, "a");
    lx_backend_info info;

    assert_false(lx_backend_attempt_begin(a)); /* closed: no trial */
    lx_backend_attempt_end(a, false, LX_ATTEMPT_FAILED, "connect");
    lx_backend_attempt_end(a, false, LX_ATTEMPT_OK, NULL); /* the count starts again */
    lx_backend_attempt_end(a, false, LX_ATTEMPT_FAILED, "connect");
    lx_backend_attempt_end(a, false, LX_ATTEMPT_NONE, NULL); /* says nothing */
    assert_true(lx_backend_routable(a));
    lx_backend_attempt_end(a, false, LX_ATTEMPT_FAILED, "HTTP 503");
    assert_false(lx_backend_routable(a));
    assert_false(lx_backend_can_accept(a)); /* nothing is dispatched to it either */
    assert_true(lx_backend_is_down(a));
    lx_backend_info_get(a, &info);
    assert_int_equal(info.circuit, LX_CIRCUIT_OPEN);
    assert_int_equal(info.request_failures, 2);
    assert_string_equal(info.last_request_error, "HTTP 503");
    assert_int_equal(info.circuit_opened, 1);
    assert_int_equal(lx_backend_retry_after_s(a), 1);

    uv_sleep(60); /* past the cooldown: half-open, one trial */
    assert_false(lx_backend_is_down(a));
    assert_true(lx_backend_routable(a));
    assert_true(lx_backend_attempt_begin(a));
    assert_false(lx_backend_routable(a)); /* the trial is out */
    assert_false(lx_backend_can_accept(a));
    assert_true(lx_backend_awaiting_trial(a));
    assert_false(lx_backend_attempt_begin(a));
    lx_backend_attempt_end(a, true, LX_ATTEMPT_FAILED, "connect");
    assert_false(lx_backend_routable(a)); /* open again */
    lx_backend_info_get(a, &info);
    assert_int_equal(info.circuit, LX_CIRCUIT_OPEN);

    uv_sleep(60);
    assert_true(lx_backend_attempt_begin(a));
    lx_backend_attempt_end(a, true, LX_ATTEMPT_NONE, NULL); /* the client left: still half-open */
    assert_true(lx_backend_attempt_begin(a));
    lx_backend_attempt_end(a, true, LX_ATTEMPT_OK, NULL);
    lx_backend_info_get(a, &info);
    assert_int_equal(info.circuit, LX_CIRCUIT_CLOSED);
    assert_int_equal(info.request_failures, 0);
    assert_true(lx_backend_routable(a));
    assert_true(lx_backend_can_accept(a));
    assert_false(lx_backend_awaiting_trial(a));

    lx_backends_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    lx_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_metrics),
        cmocka_unit_test(test_old_metric_names_and_several_engines),
        cmocka_unit_test(test_labels_with_braces_and_no_labels),
        cmocka_unit_test(test_not_vllm),
        cmocka_unit_test(test_slots_and_reconfigure),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_circuit_breaker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
