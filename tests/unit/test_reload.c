/*
 * Unit tests for reload.c: the diff between two config snapshots (one case per key of the schema),
 * named lists (backends, users), restart-only keys and pinning, and the JSON of the answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "reload.h"
#include "support.h"

/* "a, b" of a key list ("none" when empty). */
static char *joined(const lx_keylist *l)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_keylist_join(l, &b);
    return b.p;
}

static void expect_diff(const char *yaml_a, const char *yaml_b, const char *changed, const char *restart)
{
    lx_config *a = lx_test_config(yaml_a), *b = lx_test_config(yaml_b);
    lx_reload_diff d = {0};
    lx_reload_diff_compute(a, b, &d);
    char *c = joined(&d.changed), *r = joined(&d.restart_required);
    if (strcmp(c, changed) != 0 || strcmp(r, restart) != 0)
        print_error("changed: %s (want %s)\nrestart: %s (want %s)\nfrom:\n%s\nto:\n%s\n", c, changed, r, restart,
                    yaml_a, yaml_b);
    assert_string_equal(c, changed);
    assert_string_equal(r, restart);
    free(c);
    free(r);
    lx_reload_diff_free(&d);
    lx_config_unref(a);
    lx_config_unref(b);
}

#define BASE "default_model: \"m\"\nvllm:\n  url: \"http://127.0.0.1:8000\"\n"

/* One case per key: the same base file with one section written two ways. */
static const struct {
    const char *a, *b, *key;
    int restart;
} key_cases[] = {
    {"server:\n  host: \"127.0.0.1\"\n", "server:\n  host: \"0.0.0.0\"\n", "server.host", 1},
    {"server:\n  port: 8001\n", "server:\n  port: 8002\n", "server.port", 1},
    {"server:\n  max_connections: 10\n", "server:\n  max_connections: 11\n", "server.max_connections", 0},
    {"server:\n  max_body_bytes: 4KiB\n", "server:\n  max_body_bytes: 8KiB\n", "server.max_body_bytes", 0},
    {"server:\n  max_header_bytes: 4096\n", "server:\n  max_header_bytes: 8192\n", "server.max_header_bytes", 0},
    {"server:\n  max_response_bytes: 1MiB\n", "server:\n  max_response_bytes: 2MiB\n", "server.max_response_bytes", 0},
    {"server:\n  header_timeout: 1\n", "server:\n  header_timeout: 2\n", "server.header_timeout", 0},
    {"server:\n  idle_timeout: 1\n", "server:\n  idle_timeout: 2\n", "server.idle_timeout", 0},
    {"server:\n  shutdown_timeout: 1\n", "server:\n  shutdown_timeout: 2\n", "server.shutdown_timeout", 0},
    {"queue:\n  max_size: 5\n", "queue:\n  max_size: 6\n", "queue.max_size", 0},
    {"queue:\n  default_timeout: 5\n", "queue:\n  default_timeout: 6\n", "queue.default_timeout", 0},
    {"queue:\n  priorities: {high: 1}\n", "queue:\n  priorities: {high: 2}\n", "queue.priorities.high", 0},
    {"queue:\n  priorities: {normal: 5}\n", "queue:\n  priorities: {normal: 6}\n", "queue.priorities.normal", 0},
    {"queue:\n  priorities: {low: 10}\n", "queue:\n  priorities: {low: 11}\n", "queue.priorities.low", 0},
    {"queue:\n  aging_seconds: 5\n", "queue:\n  aging_seconds: 6\n", "queue.aging_seconds", 0},
    {"rate_limits:\n  default: {requests_per_minute: 1}\n", "rate_limits:\n  default: {requests_per_minute: 2}\n",
     "rate_limits.default.requests_per_minute", 0},
    {"rate_limits:\n  default: {tokens_per_minute: 1}\n", "rate_limits:\n  default: {tokens_per_minute: 2}\n",
     "rate_limits.default.tokens_per_minute", 0},
    {"rate_limits:\n  mode: reject\n", "rate_limits:\n  mode: wait\n", "rate_limits.mode", 0},
    {"rate_limits:\n  store: memory\n", "rate_limits:\n  store: redis\n", "rate_limits.store", 0},
    {"rate_limits:\n  redis_url: \"redis://a:1\"\n", "rate_limits:\n  redis_url: \"redis://b:1\"\n",
     "rate_limits.redis_url", 0},
    {"rate_limits:\n  default_max_tokens: 5\n", "rate_limits:\n  default_max_tokens: 6\n",
     "rate_limits.default_max_tokens", 0},
    {"auth:\n  enabled: false\n  keys: [{key_sha256: \"" /* 64 hex */
     "0000000000000000000000000000000000000000000000000000000000000000\", user: u}]\n",
     "auth:\n  enabled: true\n  keys: [{key_sha256: \""
     "0000000000000000000000000000000000000000000000000000000000000000\", user: u}]\n",
     "auth.enabled", 0},
    {"auth:\n  keys: [{key_sha256: \"0000000000000000000000000000000000000000000000000000000000000000\", user: u}]\n",
     "auth:\n  keys: [{key_sha256: \"0000000000000000000000000000000000000000000000000000000000000001\", user: u}]\n",
     "auth.keys", 0},
    /* the same key, given in plain text instead of as its digest: the gateway warns about plain keys */
    {"auth:\n  keys: [{key_sha256: \"6ab9f1eb8f7d3388f4f9d586f66e99fd54080df2c446f0e58668b09c08a16dd0\", user: u}]\n",
     "auth:\n  keys: [{key: \"k1\", user: u}]\n", "auth.keys", 0},
    {"retry:\n  max_attempts: 1\n", "retry:\n  max_attempts: 2\n", "retry.max_attempts", 0},
    {"retry:\n  delay_seconds: 1\n", "retry:\n  delay_seconds: 2\n", "retry.delay_seconds", 0},
    {"retry:\n  backoff_multiplier: 1\n", "retry:\n  backoff_multiplier: 2\n", "retry.backoff_multiplier", 0},
    {"retry:\n  max_delay_seconds: 1\n", "retry:\n  max_delay_seconds: 2\n", "retry.max_delay_seconds", 0},
    {"health_check:\n  interval_seconds: 1\n", "health_check:\n  interval_seconds: 2\n",
     "health_check.interval_seconds", 0},
    {"health_check:\n  failure_threshold: 1\n", "health_check:\n  failure_threshold: 2\n",
     "health_check.failure_threshold", 0},
    {"health_check:\n  cooldown_seconds: 1\n", "health_check:\n  cooldown_seconds: 2\n",
     "health_check.cooldown_seconds", 0},
    {"health_check:\n  timeout_seconds: 1\n", "health_check:\n  timeout_seconds: 2\n", "health_check.timeout_seconds",
     0},
    {"logging:\n  level: INFO\n", "logging:\n  level: DEBUG\n", "logging.level", 0},
    {"logging:\n  format: json\n", "logging:\n  format: text\n", "logging.format", 0},
    {"logging:\n  file: \"a.log\"\n", "logging:\n  file: \"b.log\"\n", "logging.file", 0},
    {"metrics:\n  enabled: true\n", "metrics:\n  enabled: false\n", "metrics.enabled", 1},
    {"metrics:\n  port: 9090\n", "metrics:\n  port: 9091\n", "metrics.port", 1},
    {"metrics:\n  per_user: false\n", "metrics:\n  per_user: true\n", "metrics.per_user", 0},
    {"usage:\n  enabled: true\n", "usage:\n  enabled: false\n", "usage.enabled", 1},
    {"usage:\n  db_path: \"a.db\"\n", "usage:\n  db_path: \"b.db\"\n", "usage.db_path", 1},
    {"usage:\n  store: sqlite\n  postgres_url: \"postgresql://h/db\"\n",
     "usage:\n  store: postgres\n  postgres_url: \"postgresql://h/db\"\n", "usage.store", 1},
    {"usage:\n  postgres_url: \"postgresql://a/db\"\n", "usage:\n  postgres_url: \"postgresql://b/db\"\n",
     "usage.postgres_url", 1},
    {"usage:\n  password_file: \"/etc/passwd\"\n", "usage:\n  password_file: \"/etc/group\"\n", "usage.password_file",
     1},
    {"usage:\n  gateway_id: \"gw-a\"\n", "usage:\n  gateway_id: \"gw-b\"\n", "usage.gateway_id", 1},
    {"admin:\n  token: \"secret-1\"\n", "admin:\n  token: \"secret-2\"\n", "admin.token", 0},
};

static void test_every_key(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof key_cases / sizeof key_cases[0]; i++) {
        char a[2048], b[2048];
        snprintf(a, sizeof a, "%s%s", BASE, key_cases[i].a);
        snprintf(b, sizeof b, "%s%s", BASE, key_cases[i].b);
        expect_diff(a, a, "none", "none");
        expect_diff(a, b, key_cases[i].restart ? "none" : key_cases[i].key,
                    key_cases[i].restart ? key_cases[i].key : "none");
    }
}

/* routing.auto: each key, and the section appearing */
static void test_auto_routing(void **state)
{
    (void)state;
#define AUTO(body) BASE "routing:\n  auto:\n" body
    const char *a = AUTO("    min_confidence: 0.5\n");
    expect_diff(a, a, "none", "none");
    expect_diff(BASE, a, "routing.auto.min_confidence, routing.auto.enabled, routing.auto.model", "none");
    expect_diff(a, AUTO("    min_confidence: 0.7\n"), "routing.auto.min_confidence", "none");
    expect_diff(AUTO("    name: a1\n"), AUTO("    name: a2\n"), "routing.auto.name", "none");
    expect_diff(AUTO("    default: m\n"), AUTO("    min_confidence: 0.6\n"), "routing.auto.default", "none");
    expect_diff(AUTO("    routes: {code: m}\n"), AUTO("    routes: {code: m, simple: m}\n"),
                "routing.auto.routes.simple", "none");
    expect_diff(AUTO("    rules: [{class: x, keywords: [a]}]\n"), AUTO("    rules: [{class: x, keywords: [b]}]\n"),
                "routing.auto.rules", "none");
    expect_diff(AUTO("    rules: [{class: x, keywords: [a]}]\n"),
                AUTO("    rules: [{class: x, route: m, keywords: [a]}]\n"), "routing.auto.rules", "none");
    /* (a model file replaced under the same name, routing.auto.model alone: tests/integration/auto_routing) */
#undef AUTO
}

static void test_top_level_and_shorthand(void **state)
{
    (void)state;
    /* the shorthand's one backend follows vllm.url and default_model */
    expect_diff(BASE, "default_model: \"m\"\nvllm:\n  url: \"http://127.0.0.1:9000\"\n", "vllm.url, backends.vllm.url",
                "none");
    expect_diff(BASE, "default_model: \"n\"\nvllm:\n  url: \"http://127.0.0.1:8000\"\n",
                "default_model, backends.vllm.models", "none");
    /* and its timeout, when the entry gives none */
    expect_diff(BASE, "default_model: \"m\"\nvllm:\n  url: \"http://127.0.0.1:8000\"\n  timeout: 6\n",
                "vllm.timeout, backends.vllm.timeout", "none");
}

#define TWO_BACKENDS(a_models, extra_a, b_name, b_url)                                                                 \
    "default_model: \"m\"\nbackends:\n  a:\n    type: vllm\n    url: \"http://127.0.0.1:1\"\n    models: " a_models    \
    "\n" extra_a "  " b_name ":\n    type: openai\n    url: \"" b_url "\"\n    models: [\"x\"]\n"

static void test_backends(void **state)
{
    (void)state;
    const char *base = TWO_BACKENDS("[\"m\"]", "", "b", "http://127.0.0.1:2");
    expect_diff(base, base, "none", "none");
    /* one field of one backend */
    expect_diff(base, TWO_BACKENDS("[\"m\"]", "", "b", "http://127.0.0.1:3"), "backends.b.url", "none");
    /* its model list, as a whole */
    expect_diff(base, TWO_BACKENDS("[\"m\", \"m2\"]", "", "b", "http://127.0.0.1:2"), "backends.a.models", "none");
    /* several fields */
    expect_diff(base,
                TWO_BACKENDS("[\"m\"]",
                             "    max_concurrency: 3\n    adaptive: true\n    kv_cache_threshold: 0.5\n"
                             "    forward_priority: true\n    priority: 2\n    api_key: \"k\"\n    timeout: 9\n"
                             "    enabled: true\n",
                             "b", "http://127.0.0.1:2"),
                "backends.a.timeout, backends.a.max_concurrency, backends.a.adaptive, backends.a.kv_cache_threshold, "
                "backends.a.forward_priority, backends.a.priority, backends.a.api_key",
                "none");
    /* the GPUs it runs on, as a whole (informational: /health) */
    expect_diff(TWO_BACKENDS("[\"m\"]", "    gpus: [0]\n", "b", "http://127.0.0.1:2"),
                TWO_BACKENDS("[\"m\"]", "    gpus: [0, 1]\n", "b", "http://127.0.0.1:2"), "backends.a.gpus", "none");
    expect_diff(TWO_BACKENDS("[\"m\"]", "    gpus: [0, 1]\n", "b", "http://127.0.0.1:2"),
                TWO_BACKENDS("[\"m\"]", "    gpus: [1, 0]\n", "b", "http://127.0.0.1:2"), "backends.a.gpus", "none");
    expect_diff(base, TWO_BACKENDS("[\"m\"]", "    gpus: [3]\n", "b", "http://127.0.0.1:2"), "backends.a.gpus", "none");
    /* renamed: one removed, one added */
    expect_diff(base, TWO_BACKENDS("[\"m\"]", "", "c", "http://127.0.0.1:2"), "backends.c, backends.b", "none");
    /* reordered: routing order changed */
    expect_diff(base,
                "default_model: \"m\"\nbackends:\n  b:\n    type: openai\n    url: \"http://127.0.0.1:2\"\n"
                "    models: [\"x\"]\n  a:\n    type: vllm\n    url: \"http://127.0.0.1:1\"\n    models: [\"m\"]\n",
                "backends", "none");
    /* kind */
    expect_diff(base,
                "default_model: \"m\"\nbackends:\n  a:\n    type: ollama\n    url: \"http://127.0.0.1:1\"\n"
                "    models: [\"m\"]\n  b:\n    type: openai\n    url: \"http://127.0.0.1:2\"\n    models: [\"x\"]\n",
                "backends.a.type", "none");
}

#define USERS(alice, bob) BASE "rate_limits:\n  default: {requests_per_minute: 10}\n  users:\n" alice bob

static void test_users(void **state)
{
    (void)state;
    const char *base = USERS("    alice: {requests_per_minute: 5}\n", "    bob: {tokens_per_minute: 7}\n");
    expect_diff(base, base, "none", "none");
    /* order of users is no change */
    expect_diff(base, USERS("    bob: {tokens_per_minute: 7}\n", "    alice: {requests_per_minute: 5}\n"), "none",
                "none");
    expect_diff(base, USERS("    alice: {requests_per_minute: 6}\n", "    bob: {tokens_per_minute: 7}\n"),
                "rate_limits.users.alice", "none");
    expect_diff(base, USERS("    alice: {requests_per_minute: 5}\n", ""), "rate_limits.users.bob", "none");
    expect_diff(base,
                USERS("    alice: {requests_per_minute: 5}\n",
                      "    bob: {tokens_per_minute: 7}\n    carol: {tokens_per_minute: 1}\n"),
                "rate_limits.users.carol", "none");
    /* bob inherits the default's requests_per_minute: a new default changes his limits too */
    expect_diff(base,
                BASE "rate_limits:\n  default: {requests_per_minute: 11}\n  users:\n"
                     "    alice: {requests_per_minute: 5}\n    bob: {tokens_per_minute: 7}\n",
                "rate_limits.default.requests_per_minute, rate_limits.users.bob", "none");
}

static void test_pin(void **state)
{
    (void)state;
    lx_config *a = lx_test_config(BASE "server:\n  host: \"127.0.0.1\"\n  port: 8001\n  max_body_bytes: 4KiB\n"
                                       "rate_limits:\n  redis_url: \"redis://a:1/2\"\n"
                                       "usage:\n  db_path: \"a.db\"\nmetrics:\n  port: 9000\n");
    lx_config *b = lx_test_config(BASE "server:\n  host: \"0.0.0.0\"\n  port: 8002\n  max_body_bytes: 8KiB\n"
                                       "rate_limits:\n  redis_url: \"unix:///tmp/r.sock\"\n"
                                       "usage:\n  db_path: \"b.db\"\nmetrics:\n  port: 9001\n");
    lx_reload_diff d = {0};
    lx_reload_diff_compute(a, b, &d);
    char *r = joined(&d.restart_required);
    assert_string_equal(r, "server.host, server.port, metrics.port, usage.db_path");
    free(r);
    lx_reload_diff_free(&d);

    lx_reload_pin(a, b);
    assert_string_equal(b->server.host, "127.0.0.1");
    assert_int_equal(b->server.port, 8001);
    assert_int_equal(b->server.max_body_bytes, 8192);                    /* live: not pinned */
    assert_string_equal(b->rate_limits.redis_url, "unix:///tmp/r.sock"); /* live: not pinned */
    assert_string_equal(b->rate_limits.redis.socket_path, "/tmp/r.sock");
    assert_string_equal(b->usage.db_path, "a.db");
    assert_int_equal(b->metrics.port, 9000);

    d = (lx_reload_diff){0};
    lx_reload_diff_compute(a, b, &d);
    char *c = joined(&d.changed);
    r = joined(&d.restart_required);
    assert_string_equal(c, "server.max_body_bytes, rate_limits.redis_url");
    assert_string_equal(r, "none");
    free(c);
    free(r);
    lx_reload_diff_free(&d);
    lx_config_unref(a);
    lx_config_unref(b);
}

static void test_json(void **state)
{
    (void)state;
    lx_config *a = lx_test_config(BASE "rate_limits:\n  users:\n    alice: {requests_per_minute: 5}\n");
    lx_config *b =
        lx_test_config(BASE "server:\n  port: 9\nrate_limits:\n  users:\n    alice: {requests_per_minute: 6}\n");
    lx_reload_diff d = {0};
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_reload_diff_json(&d, &out);
    assert_string_equal(out.p, "\"changed\":[],\"restart_required\":[]");
    lx_buf_reset(&out);
    lx_reload_diff_compute(a, b, &d);
    lx_reload_diff_json(&d, &out);
    assert_string_equal(out.p, "\"changed\":[\"rate_limits.users.alice\"],\"restart_required\":[\"server.port\"]");
    lx_buf_free(&out);
    lx_reload_diff_free(&d);
    lx_config_unref(a);
    lx_config_unref(b);
}

/* The shipped files compared with themselves, and with each other. */
static void test_shipped(void **state)
{
    (void)state;
    lx_buf errs;
    lx_buf_init(&errs, 0);
    lx_config *a = lx_config_load("config/lexora_config.yaml", &errs);
    lx_config *b = lx_config_load("config/lexora_config.yaml", &errs);
    assert_non_null(a);
    assert_non_null(b);
    lx_reload_diff d = {0};
    lx_reload_diff_compute(a, b, &d);
    assert_int_equal(d.changed.n, 0);
    assert_int_equal(d.restart_required.n, 0);
    lx_reload_diff_free(&d);
    lx_buf_free(&errs);
    lx_config_unref(a);
    lx_config_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key),    cmocka_unit_test(test_top_level_and_shorthand),
        cmocka_unit_test(test_auto_routing), cmocka_unit_test(test_backends),
        cmocka_unit_test(test_users),        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_json),         cmocka_unit_test(test_shipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
