/*
 * Unit tests for config.c: the shipped files, the schema's shapes (shorthand, backends with and without
 * type), and the error messages ("file:line: key.path: message"), which are part of the interface.
 * Runs with the repository root as the working directory (the shipped files are read from config/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "support.h"
#include "utils/log.h"

#define MIB ((size_t)1 << 20)

/* Parses yaml as "cfg.yaml", a text expected to be refused; errs receives the messages. */
static lx_config *parse(const char *yaml, lx_buf *errs)
{
    lx_buf_init(errs, 0);
    return lx_config_parse("cfg.yaml", yaml, strlen(yaml), errs);
}

/* Asserts that yaml is refused and that every needle (NULL-terminated list) is among the errors. */
static void expect_errors(const char *yaml, ...)
{
    lx_buf errs;
    lx_config *c = parse(yaml, &errs);
    assert_null(c);
    assert_non_null(errs.p);
    va_list ap;
    va_start(ap, yaml);
    for (const char *needle = va_arg(ap, const char *); needle; needle = va_arg(ap, const char *)) {
        if (strstr(errs.p, needle) == NULL) print_error("missing \"%s\" in:\n%s", needle, errs.p);
        assert_non_null(strstr(errs.p, needle));
    }
    va_end(ap);
    lx_buf_free(&errs);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static const lx_backend_conf *backend(const lx_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (strcmp(c->backends[i].name, name) == 0) return &c->backends[i];
    return NULL;
}

/* The hex SHA-256 of "secret" and of "other-key" (printf %s secret | sha256sum). */
#define SHA_SECRET "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
#define SHA_OTHER  "580843d03d2216ff1a275d0991bad66e4d1af871171d929e9de604b7959f9bca"

static void assert_digest(const unsigned char *d, const char *hex)
{
    char got[2 * LX_SHA256_LEN + 1];
    for (size_t i = 0; i < LX_SHA256_LEN; i++)
        snprintf(got + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(got, hex);
}

static void assert_backend_defaults(const lx_backend_conf *b)
{
    assert_int_equal(b->max_concurrency, 32);
    assert_false(b->adaptive);
    assert_true(b->kv_cache_threshold == 0.95);
    assert_false(b->forward_priority);
    assert_int_equal(b->priority, 0);
    assert_null(b->api_key);
}

/* The keys added for the queue, rate limits, auth, retries, health checks, usage and admin. */
static void assert_new_defaults(const lx_config *c)
{
    assert_true(c->server.shutdown_timeout_s == 30.0);
    assert_true(c->queue.aging_s == 30.0);
    assert_int_equal(c->rate_limits.mode, LX_RATE_REJECT);
    assert_int_equal(c->rate_limits.store, LX_RATE_STORE_MEMORY);
    assert_string_equal(c->rate_limits.redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(c->rate_limits.redis.host, "127.0.0.1");
    assert_int_equal(c->rate_limits.redis.port, 6379);
    assert_int_equal(c->rate_limits.redis.db, 0);
    assert_null(c->rate_limits.redis.socket_path);
    assert_int_equal(c->rate_limits.default_max_tokens, 2048);
    assert_false(c->auth.enabled);
    assert_true(c->retry.max_delay_s == 30.0);
    assert_true(c->health_check.interval_s == 10.0);
    assert_int_equal(c->health_check.failure_threshold, 3);
    assert_true(c->health_check.cooldown_s == 30.0);
    assert_true(c->health_check.timeout_s == 5.0);
    assert_false(c->metrics.per_user);
    assert_true(c->usage.enabled);
    assert_string_equal(c->usage.db_path, "lexora_usage.db");
    assert_null(c->admin.token);
    assert_null(c->admin.token_file);
    assert_null(c->logging.file);
}

static void assert_server_defaults(const lx_config *c)
{
    assert_string_equal(c->server.host, "0.0.0.0");
    assert_int_equal(c->server.port, 8001);
    assert_int_equal(c->server.max_connections, 10000);
    assert_int_equal(c->server.max_body_bytes, 16 * MIB);
    assert_int_equal(c->server.max_header_bytes, 16384);
    assert_int_equal(c->server.max_response_bytes, 64 * MIB);
    assert_true(c->server.header_timeout_s == 10.0);
    assert_true(c->server.idle_timeout_s == 75.0);
}

static void assert_seed_values(const lx_config *c)
{
    assert_server_defaults(c);
    assert_string_equal(c->vllm.url, "http://localhost:8000");
    assert_true(c->vllm.timeout_s == 120.0);
    assert_string_equal(c->default_model, "qwen3-32b");
    assert_int_equal(c->queue.max_size, 100);
    assert_true(c->queue.default_timeout_s == 60.0);
    assert_int_equal(c->queue.priority_high, 1);
    assert_int_equal(c->queue.priority_normal, 5);
    assert_int_equal(c->queue.priority_low, 10);
    assert_null(c->rate_limits.default_limit.name);
    assert_int_equal(c->rate_limits.default_limit.requests_per_minute, 30);
    assert_int_equal(c->rate_limits.default_limit.tokens_per_minute, 50000);
    assert_int_equal(c->rate_limits.n_users, 1);
    assert_string_equal(c->rate_limits.users[0].name, "takahito");
    assert_int_equal(c->rate_limits.users[0].requests_per_minute, 60);
    assert_int_equal(c->rate_limits.users[0].tokens_per_minute, 100000);
    assert_int_equal(c->retry.max_attempts, 3);
    assert_true(c->retry.delay_s == 1.0);
    assert_true(c->retry.backoff_multiplier == 2.0);
    assert_int_equal(c->logging.level, LX_LOG_INFO);
    assert_true(c->logging.json);
    assert_true(c->metrics.enabled);
    assert_int_equal(c->metrics.port, 9090);
    const lx_backend_conf *v = backend(c, "vllm");
    assert_non_null(v);
    assert_int_equal(v->kind, LX_BACKEND_VLLM);
    assert_true(v->enabled);
    assert_string_equal(v->url, "http://localhost:8000");
    assert_true(v->timeout_s == 120.0);
    assert_string_equal(v->models[0].name, "qwen3-32b");
    assert_string_equal(v->models[0].path, "/models/qwen3-32b");
    assert_true(v->models[0].gpu_memory_utilization == 0.9);
    const lx_backend_conf *o = backend(c, "ollama");
    assert_non_null(o);
    assert_int_equal(o->kind, LX_BACKEND_OLLAMA);
    assert_false(o->enabled);
    assert_string_equal(o->url, "http://localhost:11434");
    assert_int_equal(o->n_models, 0);
}

/* ---- the shipped files ---- */

static void test_shipped_config(void **state)
{
    (void)state;
    lx_buf errs;
    lx_buf_init(&errs, 0);
    lx_config *c = lx_config_load("config/lexora_config.yaml", &errs);
    if (c == NULL) print_error("%s", errs.p ? errs.p : "(no message)\n");
    assert_non_null(c);
    assert_null(errs.p);
    assert_string_equal(c->path, "config/lexora_config.yaml");
    assert_int_equal(c->refs, 1);
    assert_int_equal(c->n_backends, 2);
    assert_string_equal(c->backends[0].name, "vllm"); /* file order */
    assert_string_equal(c->backends[1].name, "ollama");
    assert_seed_values(c);
    assert_new_defaults(c);
    assert_backend_defaults(&c->backends[0]);
    lx_config_unref(c);
}

static void test_example_config(void **state)
{
    (void)state;
    lx_buf errs;
    lx_buf_init(&errs, 0);
    lx_config *c = lx_config_load("config/lexora_config.example.yaml", &errs);
    if (c == NULL) print_error("%s", errs.p ? errs.p : "(no message)\n");
    assert_non_null(c);
    assert_seed_values(c); /* the example shows every default, and the seed's values */
    assert_new_defaults(c);
    assert_int_equal(c->auth.n_keys, 1); /* shown with auth off */
    assert_string_equal(c->auth.keys[0].user, "takahito");
    assert_false(c->auth.keys[0].plain);
    assert_digest(c->auth.keys[0].key_sha256, "4906c4fe7e269cc4512197de94e2a31eaa5d9ecd19a4f849ffffccab2887a971");
    assert_int_equal(c->n_backends, 3);
    for (size_t i = 0; i < c->n_backends; i++)
        assert_backend_defaults(&c->backends[i]);
    const lx_backend_conf *code = backend(c, "vllm-code");
    assert_non_null(code);
    assert_int_equal(code->kind, LX_BACKEND_VLLM);
    assert_false(code->enabled);
    assert_string_equal(code->url, "http://localhost:8002");
    assert_true(code->timeout_s == 120.0);
    assert_string_equal(code->models[0].name, "qwen-coder");
    assert_null(code->models[0].path);
    lx_config_unref(c);
}

static void test_cannot_read(void **state)
{
    (void)state;
    lx_buf errs;
    lx_buf_init(&errs, 0);
    assert_null(lx_config_load("config/no-such-file.yaml", &errs));
    assert_string_equal(errs.p, "config/no-such-file.yaml: cannot read: No such file or directory\n");
    lx_buf_reset(&errs);
    assert_null(lx_config_load("config", &errs));
    assert_string_equal(errs.p, "config: cannot read: Is a directory\n");
    lx_buf_free(&errs);
}

/* ---- shapes ---- */

static void test_defaults(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\n");
    assert_server_defaults(c);
    assert_string_equal(c->vllm.url, "http://localhost:8000");
    assert_true(c->vllm.timeout_s == 120.0);
    assert_int_equal(c->queue.max_size, 100);
    assert_int_equal(c->queue.priority_normal, 5);
    assert_int_equal(c->rate_limits.n_users, 0);
    assert_int_equal(c->rate_limits.default_limit.tokens_per_minute, 50000);
    assert_int_equal(c->retry.max_attempts, 3);
    assert_int_equal(c->logging.level, LX_LOG_INFO);
    assert_true(c->logging.json);
    assert_true(c->metrics.enabled);
    assert_int_equal(c->metrics.port, 9090);
    assert_new_defaults(c);
    assert_int_equal(c->auth.n_keys, 0);
    assert_null(c->auth.keys);
    assert_backend_defaults(&c->backends[0]);
    lx_config_unref(c);
}

static void test_shorthand_only(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("vllm:\n"
                                  "  url: \"https://gpu1:8000/v1/\"\n"
                                  "  timeout: 30.5\n"
                                  "default_model: qwen3-32b\n");
    assert_string_equal(c->vllm.url, "https://gpu1:8000/v1");
    assert_int_equal(c->n_backends, 1);
    const lx_backend_conf *b = &c->backends[0];
    assert_string_equal(b->name, "vllm");
    assert_int_equal(b->kind, LX_BACKEND_VLLM);
    assert_true(b->enabled);
    assert_string_equal(b->url, "https://gpu1:8000/v1");
    assert_true(b->timeout_s == 30.5);
    assert_int_equal(b->n_models, 1);
    assert_string_equal(b->models[0].name, "qwen3-32b");
    assert_null(b->models[0].path);
    assert_true(b->models[0].gpu_memory_utilization == 0.0);
    assert_backend_defaults(b);
    lx_config_unref(c);
}

static void test_shorthand_needs_default_model(void **state)
{
    (void)state;
    lx_buf errs;
    assert_null(parse("vllm: {url: \"http://x:8000\"}\n", &errs));
    assert_non_null(strstr(errs.p, "cfg.yaml: default_model: missing"));
    assert_int_equal(count_lines(errs.p), 1);
    lx_buf_free(&errs);
}

static void test_backends_with_type(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("vllm:\n"
                                  "  timeout: 90\n"
                                  "backends:\n"
                                  "  vllm-b:\n"
                                  "    type: vllm\n"
                                  "    url: http://gpu2:8000/\n"
                                  "    models: [qwen-coder, {name: qwen-small, gpu_memory_utilization: 0.5}]\n"
                                  "  cloud:\n"
                                  "    type: openai\n"
                                  "    url: https://api.example.com/v1\n"
                                  "    timeout: 15\n"
                                  "    models:\n"
                                  "      - gpt-4o\n"
                                  "  llamacpp:\n"
                                  "    url: http://localhost:8080\n"
                                  "    enabled: no\n");
    assert_int_equal(c->n_backends, 3);
    const lx_backend_conf *b = backend(c, "vllm-b");
    assert_int_equal(b->kind, LX_BACKEND_VLLM);
    assert_string_equal(b->url, "http://gpu2:8000");
    assert_true(b->timeout_s == 90.0); /* from vllm.timeout */
    assert_int_equal(b->n_models, 2);
    assert_string_equal(b->models[1].name, "qwen-small");
    assert_true(b->models[1].gpu_memory_utilization == 0.5);
    b = backend(c, "cloud");
    assert_int_equal(b->kind, LX_BACKEND_OPENAI);
    assert_true(b->timeout_s == 15.0);
    b = backend(c, "llamacpp");
    assert_int_equal(b->kind, LX_BACKEND_LLAMACPP);
    assert_false(b->enabled);
    assert_true(b->timeout_s == 90.0); /* other kinds too */
    /* no default_model: the first model of the first enabled backend */
    assert_string_equal(c->default_model, "qwen-coder");
    lx_config_unref(c);
}

static void test_vllm_entry_takes_vllm_url(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("vllm: {url: \"http://a:1/\", timeout: 5}\n"
                                  "backends:\n"
                                  "  vllm: {models: [m]}\n"
                                  "  ollama: {enabled: false}\n");
    assert_string_equal(backend(c, "vllm")->url, "http://a:1");
    assert_true(backend(c, "vllm")->timeout_s == 5.0);
    assert_null(backend(c, "ollama")->url); /* disabled: no url needed */
    lx_config_unref(c);
    /* the same url (up to a trailing slash) in both places is fine */
    c = lx_test_config("vllm: {url: \"http://a:1/\"}\nbackends:\n  vllm: {url: \"http://a:1\", models: [m]}\n");
    lx_config_unref(c);
}

static void test_missing_type(void **state)
{
    (void)state;
    expect_errors("backends:\n"
                  "  vllm: {models: [m]}\n"
                  "  gpu2:\n"
                  "    url: http://gpu2:8000\n"
                  "    models: [m2]\n",
                  "cfg.yaml:3: backends.gpu2: no type: add \"type: vllm|ollama|llamacpp|openai|anthropic\"\n", NULL);
    expect_errors("backends:\n  gpu2:\n", "cfg.yaml:2: backends.gpu2: no type", "cfg.yaml:2: backends.gpu2: no url",
                  "cfg.yaml:2: backends.gpu2: lists no models", NULL);
}

static void test_backend_errors(void **state)
{
    (void)state;
    expect_errors("backends:\n  vllm: {url: \"http://a\"}\n", "cfg.yaml:2: backends.vllm: lists no models", NULL);
    expect_errors("backends:\n  x: {type: openai, models: [m]}\n", "cfg.yaml:2: backends.x: no url", NULL);
    expect_errors("backends: {}\n", "cfg.yaml:1: backends: no enabled backend", NULL);
    expect_errors("backends:\n  ollama: {enabled: false, url: \"http://o\"}\n",
                  "cfg.yaml:1: backends: no enabled backend", NULL);
    expect_errors("backends:\n  x: {type: tgi, url: \"http://a\", models: [m]}\n",
                  "cfg.yaml:2: backends.x.type: must be one of vllm, ollama, llamacpp, openai, got \"tgi\"", NULL);
    expect_errors("backends:\n  ollama: {type: vllm, url: \"http://a\", models: [m]}\n",
                  "cfg.yaml:2: backends.ollama: type vllm contradicts the entry's name", NULL);
    expect_errors("backends:\n  x:\n    type: vllm\n    url: ftp://a\n    models: [m]\n",
                  "cfg.yaml:4: backends.x.url: must be a URL starting with http:// or https://", NULL);
    expect_errors("vllm: {url: \"http://\"}\ndefault_model: m\n", "cfg.yaml:1: vllm.url: must be a URL", NULL);
    expect_errors("backends:\n  vllm:\n    models:\n      - path: /m\n",
                  "cfg.yaml:4: backends.vllm.models[0]: has no name: add \"name: <model>\"", NULL);
    expect_errors("backends:\n  vllm:\n    models: m\n",
                  "cfg.yaml:3: backends.vllm.models: must be a list of models (- name lines), or auto, got \"m\"",
                  NULL);
    expect_errors("backends:\n  vllm: {models: [[a]]}\n", "backends.vllm.models[0]: must be a model name or a mapping",
                  NULL);
    expect_errors("backends: [vllm]\n",
                  "cfg.yaml:1: backends: must be a mapping of backend name to its settings, got a list", NULL);
}

static void test_default_model_not_served(void **state)
{
    (void)state;
    expect_errors("default_model: llama3\n"
                  "backends:\n"
                  "  vllm: {models: [qwen3-32b, qwen-coder]}\n"
                  "  ollama: {enabled: false, url: \"http://o\", models: [llama3]}\n",
                  "cfg.yaml:1: default_model: \"llama3\" is not served by any enabled backend "
                  "(served: qwen3-32b, qwen-coder)\n",
                  NULL);
}

static void test_vllm_url_conflict(void **state)
{
    (void)state;
    expect_errors("vllm:\n"
                  "  url: http://localhost:8000\n"
                  "default_model: m\n"
                  "backends:\n"
                  "  vllm:\n"
                  "    url: http://localhost:9000\n"
                  "    models: [m]\n",
                  "cfg.yaml:6: backends.vllm.url: \"http://localhost:9000\" contradicts vllm.url "
                  "\"http://localhost:8000\" (line 2)",
                  NULL);
    /* vllm.url left at its default: the entry's url wins, no conflict */
    lx_config *c = lx_test_config("backends:\n  vllm: {url: \"http://localhost:9000\", models: [m]}\n");
    assert_string_equal(c->backends[0].url, "http://localhost:9000");
    lx_config_unref(c);
}

/* ---- keys and types ---- */

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_errors(
        "servr: {}\n",
        "cfg.yaml:1: servr: unknown key (valid keys: server, vllm, default_model, backends, routing, experiments, "
        "queue, rate_limits, retry, logging, metrics, auth, health_check, usage, admin)",
        NULL);
    expect_errors("default_model: m\n"
                  "server:\n"
                  "  host: 127.0.0.1\n"
                  "  prot: 8001\n",
                  "cfg.yaml:4: server.prot: unknown key (valid keys: host, port, max_connections, max_body_bytes, "
                  "max_header_bytes, max_response_bytes, header_timeout, idle_timeout, shutdown_timeout)\n",
                  NULL);
    expect_errors("default_model: m\nqueue:\n  priorities:\n    urgent: 0\n",
                  "cfg.yaml:4: queue.priorities.urgent: unknown key (valid keys: high, normal, low)", NULL);
    expect_errors("backends:\n  vllm:\n    modles: [m]\n",
                  "cfg.yaml:3: backends.vllm.modles: unknown key (valid keys: type, enabled, url, timeout, models, "
                  "weight, max_concurrency, adaptive, kv_cache_threshold, forward_priority, priority, api_key, "
                  "api_key_file, api_key_env, default_max_tokens, ca_file, tls_verify, gpus, sleep_mode, load)",
                  NULL);
    expect_errors("backends:\n  vllm:\n    models:\n      - nmae: m\n",
                  "cfg.yaml:4: backends.vllm.models[0].nmae: unknown key (valid keys: name, upstream_name, path, "
                  "gpu_memory_utilization, lora_path)",
                  NULL);
    expect_errors("default_model: m\nrate_limits:\n  users:\n    bob:\n      rpm: 5\n",
                  "cfg.yaml:5: rate_limits.users.bob.rpm: unknown key (valid keys: requests_per_minute, "
                  "tokens_per_minute, fallback)",
                  NULL);
    expect_errors("default_model: m\nrate_limits:\n  modes: wait\n",
                  "cfg.yaml:3: rate_limits.modes: unknown key (valid keys: default, users, mode, store, redis_url, "
                  "default_max_tokens)",
                  NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key: k, user: u, role: admin}\n",
                  "cfg.yaml:4: auth.keys[0].role: unknown key (valid keys: key, key_sha256, user)", NULL);
    /* plain is what the loader notes, not a key of the file */
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key: k, user: u, plain: false}\n",
                  "cfg.yaml:4: auth.keys[0].plain: unknown key (valid keys: key, key_sha256, user)", NULL);
    expect_errors("default_model: m\nauth: {enable: true}\n",
                  "cfg.yaml:2: auth.enable: unknown key (valid keys: enabled, keys)", NULL);
    expect_errors("default_model: m\nhealth_check: {interval: 5}\n",
                  "health_check.interval: unknown key (valid keys: interval_seconds, failure_threshold, "
                  "cooldown_seconds, timeout_seconds)",
                  NULL);
    expect_errors(
        "default_model: m\nusage: {path: x}\n",
        "usage.path: unknown key (valid keys: enabled, db_path, store, postgres_url, password_file, gateway_id)", NULL);
    expect_errors("default_model: m\nadmin: {password: x}\n",
                  "admin.password: unknown key (valid keys: token, token_file)", NULL);
    expect_errors("default_model: m\nlogging: {path: x}\n",
                  "logging.path: unknown key (valid keys: level, format, file)", NULL);
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_errors("default_model: m\nqueue:\n  max_size: lots\n",
                  "cfg.yaml:3: queue.max_size: must be an integer from 1 to 1000000, got \"lots\"\n", NULL);
    expect_errors("default_model: m\nserver:\n  port: \"8001\"\n",
                  "cfg.yaml:3: server.port: must be an integer from 1 to 65535, got \"8001\" (quoted", NULL);
    expect_errors("default_model: m\nserver:\n  port: {a: 1}\n",
                  "cfg.yaml:3: server.port: must be an integer from 1 to 65535, got a mapping", NULL);
    expect_errors("default_model: m\nserver:\n  port: 80.5\n", "server.port: must be an integer", NULL);
    expect_errors("default_model: m\nserver:\n  port:\n",
                  "cfg.yaml:3: server.port: must be an integer from 1 to 65535, got nothing", NULL);
    expect_errors("default_model: m\nserver: 8001\n",
                  "cfg.yaml:2: server: must be a mapping (indented key: value lines), got \"8001\"", NULL);
    expect_errors("default_model: m\nserver:\n  host: [a, b]\n",
                  "cfg.yaml:3: server.host: must be a non-empty string, got a list", NULL);
    expect_errors("default_model: {name: m}\n", "cfg.yaml:1: default_model: must be a non-empty string, got a mapping",
                  NULL);
    expect_errors("default_model: m\nmetrics:\n  enabled: \"true\"\n", "metrics.enabled: must be true or false", NULL);
    expect_errors("default_model: m\nmetrics:\n  enabled: maybe\n",
                  "cfg.yaml:3: metrics.enabled: must be true or false, got \"maybe\"", NULL);
    expect_errors("default_model: m\nvllm:\n  timeout: soon\n",
                  "cfg.yaml:3: vllm.timeout: must be a number greater than 0 and at most 86400, got \"soon\"", NULL);
    expect_errors("default_model: m\nvllm:\n  timeout: .inf\n", "vllm.timeout: must be a number", NULL);
    expect_errors("default_model: m\nlogging:\n  level: LOUD\n",
                  "cfg.yaml:3: logging.level: must be one of DEBUG, INFO, WARNING, ERROR, got \"LOUD\"", NULL);
    expect_errors("default_model: m\nlogging:\n  format: xml\n",
                  "cfg.yaml:3: logging.format: must be json or text, got \"xml\"", NULL);
    expect_errors("[1, 2]\n", "cfg.yaml:1: top level: must be a mapping", NULL);
    expect_errors("default_model: m\n[a]: 1\n", "cfg.yaml:2: top level: every key must be a non-empty name", NULL);
}

static void test_scalar_forms(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: \"8001\"\n" /* any scalar is a string */
                                  "server: {port: +80, host: localhost}\n"
                                  "vllm: {timeout: 2.5e1}\n"
                                  "metrics: {enabled: No, port: 1}\n"
                                  "logging: {level: warn, format: TEXT}\n"
                                  "retry: {delay_seconds: 0, backoff_multiplier: 1}\n");
    assert_string_equal(c->default_model, "8001");
    assert_int_equal(c->server.port, 80);
    assert_true(c->vllm.timeout_s == 25.0);
    assert_false(c->metrics.enabled);
    assert_int_equal(c->logging.level, LX_LOG_WARN);
    assert_false(c->logging.json);
    assert_true(c->retry.delay_s == 0.0);
    lx_config_unref(c);
    c = lx_test_config("default_model: m\nmetrics: {enabled: YES}\nlogging: {level: Debug}\n");
    assert_true(c->metrics.enabled);
    assert_int_equal(c->logging.level, LX_LOG_DEBUG);
    lx_config_unref(c);
    c = lx_test_config("default_model: m\nlogging: {level: WARNING}\nserver:\nqueue: ~\n"); /* empty sections */
    assert_int_equal(c->logging.level, LX_LOG_WARN);
    assert_int_equal(c->server.port, 8001);
    lx_config_unref(c);
}

static void test_ranges(void **state)
{
    (void)state;
    const char *dm = "default_model: m\n";
    struct {
        const char *yaml, *needle;
    } cases[] = {
        {"server: {port: 0}", "server.port: must be an integer from 1 to 65535, got \"0\""},
        {"server: {port: 65536}", "server.port: must be an integer from 1 to 65535, got \"65536\""},
        {"server: {port: 99999999999999999999}", "server.port: must be an integer from 1 to 65535"},
        {"server: {max_connections: 1000001}", "server.max_connections: must be an integer from 1 to 1000000"},
        {"server: {header_timeout: 0}", "server.header_timeout: must be a number greater than 0 and at most 3600"},
        {"server: {idle_timeout: 86401}", "server.idle_timeout: must be a number greater than 0 and at most 86400"},
        {"vllm: {timeout: -1}", "vllm.timeout: must be a number greater than 0 and at most 86400"},
        {"queue: {max_size: 0}", "queue.max_size: must be an integer from 1 to 1000000"},
        {"queue: {default_timeout: 0}", "queue.default_timeout: must be a number greater than 0"},
        {"queue: {priorities: {high: 1001}}", "queue.priorities.high: must be an integer from 0 to 1000"},
        {"queue: {priorities: {high: 6}}", "cfg.yaml:2: queue.priorities: must satisfy high <= normal <= low (lower is "
                                           "served first), got high 6, normal 5, low 10"},
        {"queue: {priorities: {low: 2}}", "queue.priorities: must satisfy high <= normal <= low"},
        {"rate_limits: {default: {requests_per_minute: -1}}",
         "rate_limits.default.requests_per_minute: must be an integer >= 0, got \"-1\""},
        {"rate_limits: {users: {bob: {tokens_per_minute: -5}}}",
         "rate_limits.users.bob.tokens_per_minute: must be an integer >= 0"},
        {"retry: {max_attempts: 21}", "retry.max_attempts: must be an integer from 1 to 20"},
        {"retry: {max_attempts: 0}", "retry.max_attempts: must be an integer from 1 to 20"},
        {"retry: {delay_seconds: 3600.5}", "retry.delay_seconds: must be a number from 0 to 3600"},
        {"retry: {backoff_multiplier: 0.5}", "retry.backoff_multiplier: must be a number from 1 to 10"},
        {"metrics: {port: 70000}", "metrics.port: must be an integer from 1 to 65535"},
        {"server: {shutdown_timeout: -1}", "server.shutdown_timeout: must be a number from 0 to 3600, got \"-1\""},
        {"server: {shutdown_timeout: 3601}", "server.shutdown_timeout: must be a number from 0 to 3600"},
        {"queue: {aging_seconds: 0}", "queue.aging_seconds: must be a number greater than 0 and at most 86400"},
        {"queue: {aging_seconds: 86401}", "queue.aging_seconds: must be a number greater than 0 and at most 86400"},
        {"rate_limits: {default_max_tokens: 0}",
         "rate_limits.default_max_tokens: must be an integer from 1 to 10000000"},
        {"rate_limits: {default_max_tokens: 10000001}", "rate_limits.default_max_tokens: must be an integer from 1"},
        {"rate_limits: {default_max_tokens: 2.5}", "rate_limits.default_max_tokens: must be an integer"},
        {"retry: {max_delay_seconds: -0.5}", "retry.max_delay_seconds: must be a number from 0 to 3600"},
        {"retry: {max_delay_seconds: 3600.1}", "retry.max_delay_seconds: must be a number from 0 to 3600"},
        {"health_check: {interval_seconds: 0}", "health_check.interval_seconds: must be a number greater than 0 and "
                                                "at most 3600"},
        {"health_check: {interval_seconds: 3601}", "health_check.interval_seconds: must be a number greater than 0"},
        {"health_check: {failure_threshold: 0}", "health_check.failure_threshold: must be an integer from 1 to 100"},
        {"health_check: {failure_threshold: 101}", "health_check.failure_threshold: must be an integer from 1 to 100"},
        {"health_check: {cooldown_seconds: 0}", "health_check.cooldown_seconds: must be a number greater than 0 and "
                                                "at most 86400"},
        {"health_check: {cooldown_seconds: 86401}", "health_check.cooldown_seconds: must be a number greater than 0"},
        {"health_check: {timeout_seconds: 0}", "health_check.timeout_seconds: must be a number greater than 0 and "
                                               "at most 600"},
        {"health_check: {timeout_seconds: 601}", "health_check.timeout_seconds: must be a number greater than 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "%s%s\n", dm, cases[i].yaml);
        expect_errors(yaml, cases[i].needle, NULL);
    }
    expect_errors("backends:\n  vllm: {models: [{name: m, gpu_memory_utilization: 1.5}]}\n",
                  "backends.vllm.models[0].gpu_memory_utilization: must be a number greater than 0 and at most 1",
                  NULL);
    expect_errors("backends:\n  vllm: {models: [{name: m, gpu_memory_utilization: 0}]}\n",
                  "backends.vllm.models[0].gpu_memory_utilization: must be a number greater than 0", NULL);
    const struct {
        const char *kv, *needle;
    } bk[] = {
        {"max_concurrency: 0",
         "cfg.yaml:2: backends.vllm.max_concurrency: must be an integer from 1 to 100000, got \"0\""},
        {"max_concurrency: 100001", "backends.vllm.max_concurrency: must be an integer from 1 to 100000"},
        {"max_concurrency: \"8\"",
         "backends.vllm.max_concurrency: must be an integer from 1 to 100000, got \"8\" (quoted"},
        {"kv_cache_threshold: 0", "backends.vllm.kv_cache_threshold: must be a number greater than 0 and at most 1"},
        {"kv_cache_threshold: 1.01", "backends.vllm.kv_cache_threshold: must be a number greater than 0 and at most 1"},
        {"priority: -1", "backends.vllm.priority: must be an integer from 0 to 1000"},
        {"priority: 1001", "backends.vllm.priority: must be an integer from 0 to 1000"},
        {"adaptive: sometimes", "backends.vllm.adaptive: must be true or false, got \"sometimes\""},
        {"forward_priority: 1", "backends.vllm.forward_priority: must be true or false"},
    };
    for (size_t i = 0; i < sizeof bk / sizeof bk[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "backends:\n  vllm: {models: [m], %s}\n", bk[i].kv);
        expect_errors(yaml, bk[i].needle, NULL);
    }
    /* the edges themselves are fine */
    lx_config *c = lx_test_config("default_model: m\nserver: {port: 65535, header_timeout: 3600}\n"
                                  "queue: {priorities: {high: 0, normal: 0, low: 1000}}\n"
                                  "rate_limits: {default: {requests_per_minute: 0, tokens_per_minute: 0}}\n"
                                  "retry: {max_attempts: 20, backoff_multiplier: 10}\n");
    assert_int_equal(c->server.port, 65535);
    assert_int_equal(c->queue.priority_low, 1000);
    assert_int_equal(c->rate_limits.default_limit.requests_per_minute, 0);
    lx_config_unref(c);
    c = lx_test_config("default_model: m\nserver: {shutdown_timeout: 0}\nqueue: {aging_seconds: 86400}\n"
                       "rate_limits: {default_max_tokens: 10000000}\nretry: {max_delay_seconds: 0}\n"
                       "health_check: {interval_seconds: 0.1, failure_threshold: 100, cooldown_seconds: 86400, "
                       "timeout_seconds: 600}\n");
    assert_true(c->server.shutdown_timeout_s == 0.0);
    assert_true(c->queue.aging_s == 86400.0);
    assert_int_equal(c->rate_limits.default_max_tokens, 10000000);
    assert_true(c->retry.max_delay_s == 0.0);
    assert_true(c->health_check.interval_s == 0.1);
    assert_int_equal(c->health_check.failure_threshold, 100);
    assert_true(c->health_check.cooldown_s == 86400.0);
    assert_true(c->health_check.timeout_s == 600.0);
    lx_config_unref(c);
    c = lx_test_config(
        "backends:\n  vllm: {models: [m], max_concurrency: 100000, kv_cache_threshold: 1, priority: 1000}\n"
        "  b: {type: vllm, url: \"http://b\", models: [m], max_concurrency: 1, kv_cache_threshold: 0.001}\n");
    assert_int_equal(c->backends[0].max_concurrency, 100000);
    assert_true(c->backends[0].kv_cache_threshold == 1.0);
    assert_int_equal(c->backends[0].priority, 1000);
    assert_int_equal(c->backends[1].max_concurrency, 1);
    assert_true(c->backends[1].kv_cache_threshold == 0.001);
    lx_config_unref(c);
}

static void test_byte_sizes(void **state)
{
    (void)state;
    struct {
        const char *text;
        size_t bytes;
    } good[] = {
        {"16MiB", 16 * MIB}, {"\"64KiB\"", 65536}, {"1GiB", 1024 * MIB}, {"16MB", 16000000}, {"512KB", 512000},
        {"'2kib'", 2048},    {"1048576", 1048576}, {"8 mib", 8 * MIB},   {"1024", 1024},     {"\"1000000\"", 1000000},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "default_model: m\nserver: {max_body_bytes: %s}\n", good[i].text);
        lx_config *c = lx_test_config(yaml);
        assert_int_equal(c->server.max_body_bytes, good[i].bytes);
        lx_config_unref(c);
    }
    lx_config *c = lx_test_config("default_model: m\nserver: {max_header_bytes: 1MiB, max_response_bytes: 1GB}\n");
    assert_int_equal(c->server.max_header_bytes, MIB);
    assert_int_equal(c->server.max_response_bytes, 1000000000);
    lx_config_unref(c);
}

static void test_byte_sizes_bad(void **state)
{
    (void)state;
    const char *bad[] = {"16XB", "-1",  "1.5MiB", "0",      "2GiB",
                         "1023", "MiB", "16MiBs", "{a: 1}", "99999999999999999999GiB"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "default_model: m\nserver:\n  max_body_bytes: %s\n", bad[i]);
        expect_errors(yaml,
                      "cfg.yaml:3: server.max_body_bytes: must be a byte size from 1KiB to 1GiB (an integer, or with a "
                      "unit: 512KB, 16MiB, 1GiB), got ",
                      NULL);
    }
    expect_errors("default_model: m\nserver: {max_header_bytes: 2MiB}\n",
                  "server.max_header_bytes: must be a byte size from 1KiB to 1MiB", NULL);
    expect_errors("default_model: m\nserver: {max_response_bytes: 64000}\n",
                  "server.max_response_bytes: must be a byte size from 64KiB to 1GiB", NULL);
}

static void test_users_inherit_default(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\n"
                                  "rate_limits:\n"
                                  "  users:\n"
                                  "    bob: {requests_per_minute: 5}\n"
                                  "    eve:\n"
                                  "  default: {requests_per_minute: 7, tokens_per_minute: 700}\n");
    assert_int_equal(c->rate_limits.n_users, 2);
    assert_string_equal(c->rate_limits.users[0].name, "bob");
    assert_int_equal(c->rate_limits.users[0].requests_per_minute, 5);
    assert_int_equal(c->rate_limits.users[0].tokens_per_minute, 700);
    assert_int_equal(c->rate_limits.users[1].requests_per_minute, 7);
    assert_int_equal(c->rate_limits.users[1].tokens_per_minute, 700);
    lx_config_unref(c);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    expect_errors("default_model: m\nserver:\n  port: 1\n  port: 2\n",
                  "cfg.yaml:4: server.port: duplicate key (first given at line 3)", NULL);
    expect_errors("default_model: m\ndefault_model: n\n",
                  "cfg.yaml:2: default_model: duplicate key (first given at line 1)", NULL);
    expect_errors("backends:\n  vllm: {models: [m]}\n  vllm: {models: [n]}\n",
                  "cfg.yaml:3: backends.vllm: duplicate key (first given at line 2)", NULL);
    expect_errors("default_model: m\nrate_limits:\n  users:\n    bob: {}\n    bob: {}\n",
                  "cfg.yaml:5: rate_limits.users.bob: duplicate key (first given at line 4)", NULL);
}

static void test_several_errors(void **state)
{
    (void)state;
    lx_buf errs;
    assert_null(parse("server:\n"
                      "  prot: 8001\n"
                      "queue:\n"
                      "  max_size: lots\n"
                      "default_model: missing-model\n"
                      "backends:\n"
                      "  vllm: {models: [m]}\n"
                      "  gpu2: {url: \"http://g\", models: [n]}\n"
                      "retry: {max_attempts: 0}\n",
                      &errs));
    /* every problem, one per line, in file order */
    assert_string_equal(
        errs.p, "cfg.yaml:2: server.prot: unknown key (valid keys: host, port, max_connections, max_body_bytes, "
                "max_header_bytes, max_response_bytes, header_timeout, idle_timeout, shutdown_timeout)\n"
                "cfg.yaml:4: queue.max_size: must be an integer from 1 to 1000000, got \"lots\"\n"
                "cfg.yaml:5: default_model: \"missing-model\" is not served by any enabled backend "
                "(served: m, n)\n"
                "cfg.yaml:8: backends.gpu2: no type: add \"type: vllm|ollama|llamacpp|openai|anthropic\"\n"
                "cfg.yaml:9: retry.max_attempts: must be an integer from 1 to 20, got \"0\"\n");
    lx_buf_free(&errs);
    /* a bad model list makes "not served" a guess, so it is left out */
    assert_null(parse("default_model: m\nbackends:\n  vllm: {models: [{nam: m}]}\n", &errs));
    assert_string_equal(errs.p,
                        "cfg.yaml:3: backends.vllm.models[0].nam: unknown key (valid keys: name, upstream_name, path, "
                        "gpu_memory_utilization, lora_path)\n"
                        "cfg.yaml:3: backends.vllm.models[0]: has no name: add \"name: <model>\"\n");
    lx_buf_free(&errs);
}

static void test_many_errors_capped(void **state)
{
    (void)state;
    lx_buf yaml, errs;
    lx_buf_init(&yaml, 0);
    lx_buf_append_str(&yaml, "default_model: m\nserver:\n");
    for (int i = 0; i < 150; i++)
        lx_buf_printf(&yaml, "  k%d: 1\n", i);
    lx_buf_init(&errs, 0);
    assert_null(lx_config_parse("cfg.yaml", yaml.p, yaml.len, &errs));
    assert_int_equal(count_lines(errs.p), 101);
    assert_non_null(strstr(errs.p, "cfg.yaml: ... and 50 more errors\n"));
    lx_buf_free(&yaml);
    lx_buf_free(&errs);
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    expect_errors("default_model: m\nserver:\n  port: [1, 2\n", "cfg.yaml:4: YAML syntax error: ", NULL);
    expect_errors("server:\n\tport: 1\n", "cfg.yaml:2: YAML syntax error: found character that cannot start any token",
                  NULL);
    expect_errors("default_model: m\nserver: {port: 1}\n  host: x\n", "YAML syntax error", NULL);
    expect_errors("default_model: m\n---\nserver: {}\n", "cfg.yaml:3: a second YAML document", NULL);
    expect_errors("default_model: *nowhere\n", "YAML syntax error", NULL);
}

static void test_empty_file(void **state)
{
    (void)state;
    lx_buf errs;
    lx_buf_init(&errs, 0);
    assert_null(lx_config_parse("cfg.yaml", "", 0, &errs));
    assert_non_null(strstr(errs.p, "cfg.yaml: default_model: missing"));
    assert_int_equal(count_lines(errs.p), 1);
    lx_buf_free(&errs);
    expect_errors("# only a comment\n", "cfg.yaml: default_model: missing", NULL);
}

static void test_odd_input(void **state)
{
    (void)state;
    /* a cyclic alias: the walk follows the schema, so it cannot loop */
    expect_errors("backends: &a {vllm: *a}\n", "backends.vllm.vllm: unknown key", NULL);
    expect_errors("default_model: m\nserver: &s {host: *s}\n", "server.host: must be a non-empty string, got a mapping",
                  NULL);
    /* aliases that fit the schema are fine */
    lx_config *c = lx_test_config("default_model: m\nserver: {port: &p 9000}\nmetrics: {port: *p}\n");
    assert_int_equal(c->metrics.port, 9000);
    lx_config_unref(c);
    /* a NUL inside a value, control characters in a key: still one error per line */
    const char nul[] = "default_model: \"a\\0b\"\nserver: {\"ho\\nst\": 1}\n";
    lx_buf errs;
    assert_null(parse(nul, &errs));
    assert_int_equal(count_lines(errs.p), 2);
    assert_non_null(strstr(errs.p, "cfg.yaml:2: server.ho?st: unknown key"));
    lx_buf_free(&errs);
    /* errors may be NULL */
    assert_null(lx_config_parse("cfg.yaml", "server: 1\n", 10, NULL));
    assert_null(lx_config_load("config/no-such-file.yaml", NULL));
    /* a long bad value is cut in the message */
    char big[4096];
    memset(big, 'x', sizeof big);
    memcpy(big, "default_model: m\nserver: {port: ", 32);
    memcpy(big + sizeof big - 3, "}\n", 3);
    assert_null(parse(big, &errs));
    assert_non_null(strstr(errs.p, "xxx...\""));
    assert_int_equal(count_lines(errs.p), 1);
    lx_buf_free(&errs);
}

/* ---- the keys of the queue, rate-limit, auth, retry, health, usage and admin work ---- */

static void test_backend_keys(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("backends:\n"
                                  "  vllm:\n"
                                  "    models: [m]\n"
                                  "    max_concurrency: 8\n"
                                  "    adaptive: true\n"
                                  "    kv_cache_threshold: 0.8\n"
                                  "    forward_priority: yes\n"
                                  "    priority: 1\n"
                                  "  spare:\n"
                                  "    type: openai\n"
                                  "    url: https://api.example.com/v1\n"
                                  "    models: [m]\n"
                                  "    priority: 2\n"
                                  "    api_key: \"sk-abc_123.XYZ\"\n");
    const lx_backend_conf *b = backend(c, "vllm");
    assert_int_equal(b->max_concurrency, 8);
    assert_true(b->adaptive);
    assert_true(b->kv_cache_threshold == 0.8);
    assert_true(b->forward_priority);
    assert_int_equal(b->priority, 1);
    assert_null(b->api_key);
    b = backend(c, "spare");
    assert_int_equal(b->max_concurrency, 32);
    assert_false(b->adaptive);
    assert_true(b->kv_cache_threshold == 0.95);
    assert_int_equal(b->priority, 2);
    assert_string_equal(b->api_key, "sk-abc_123.XYZ");
    lx_config_unref(c);
    /* a disabled entry's keys are checked too */
    expect_errors("backends:\n  vllm: {models: [m]}\n  ollama: {enabled: false, max_concurrency: 0}\n",
                  "cfg.yaml:3: backends.ollama.max_concurrency: must be an integer from 1 to 100000", NULL);
}

/* A secret is never quoted back, only its length; the same for a digest, which may be a pasted key. */
static void test_secrets_not_shown(void **state)
{
    (void)state;
    lx_buf errs;
    assert_null(parse("backends:\n  vllm: {models: [m], api_key: \"sk-top secret\"}\n", &errs));
    assert_string_equal(errs.p, "cfg.yaml:2: backends.vllm.api_key: must be a non-empty string of visible ASCII "
                                "characters (no spaces), got 13 characters (not shown)\n");
    lx_buf_free(&errs);
    assert_null(parse("default_model: m\nauth:\n  keys:\n    - {key_sha256: sk-my-real-key, user: u}\n", &errs));
    assert_string_equal(errs.p, "cfg.yaml:4: auth.keys[0].key_sha256: must be 64 hexadecimal digits (a SHA-256 "
                                "digest, as sha256sum prints it), got 14 characters (not shown)\n");
    lx_buf_free(&errs);
    assert_null(parse("default_model: m\nadmin:\n  token: \"tab\\there\"\n", &errs));
    assert_null(strstr(errs.p, "here"));
    assert_non_null(strstr(errs.p, "cfg.yaml:3: admin.token: must be a non-empty string of visible ASCII"));
    lx_buf_free(&errs);
    /* not a string at all: said as usual */
    expect_errors(
        "backends:\n  vllm: {models: [m], api_key: [a]}\n",
        "backends.vllm.api_key: must be a non-empty string of visible ASCII characters (no spaces), got a list", NULL);
    expect_errors("backends:\n  vllm: {models: [m], api_key: \"\"}\n", "backends.vllm.api_key: must be a non-empty",
                  NULL);
    expect_errors("backends:\n  vllm: {models: [m], api_key: \"ключ\"}\n", "backends.vllm.api_key: must be", NULL);
}

static void test_rate_limit_keys(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\n"
                                  "rate_limits: {mode: wait, store: redis, redis_url: \"redis://cache.local:6380/2\", "
                                  "default_max_tokens: 1}\n");
    assert_int_equal(c->rate_limits.mode, LX_RATE_WAIT);
    assert_int_equal(c->rate_limits.store, LX_RATE_STORE_REDIS);
    assert_string_equal(c->rate_limits.redis_url, "redis://cache.local:6380/2");
    assert_string_equal(c->rate_limits.redis.host, "cache.local");
    assert_int_equal(c->rate_limits.redis.port, 6380);
    assert_int_equal(c->rate_limits.redis.db, 2);
    assert_null(c->rate_limits.redis.socket_path);
    assert_int_equal(c->rate_limits.default_max_tokens, 1);
    lx_config_unref(c);
    c = lx_test_config("default_model: m\nrate_limits: {mode: Reject, store: MEMORY}\n");
    assert_int_equal(c->rate_limits.mode, LX_RATE_REJECT);
    assert_int_equal(c->rate_limits.store, LX_RATE_STORE_MEMORY);
    lx_config_unref(c);
    expect_errors("default_model: m\nrate_limits:\n  mode: queue\n",
                  "cfg.yaml:3: rate_limits.mode: must be reject or wait, got \"queue\"", NULL);
    expect_errors("default_model: m\nrate_limits:\n  store: memcached\n",
                  "cfg.yaml:3: rate_limits.store: must be memory or redis, got \"memcached\"", NULL);
    expect_errors("default_model: m\nrate_limits: {mode: [reject]}\n",
                  "rate_limits.mode: must be reject or wait, got a list", NULL);
}

static void test_redis_url(void **state)
{
    (void)state;
    const struct {
        const char *url, *host, *socket_path;
        int port, db;
    } good[] = {
        {"redis://localhost", "localhost", NULL, 6379, 0},
        {"redis://10.0.0.5:7000", "10.0.0.5", NULL, 7000, 0},
        {"redis://r.example.com/15", "r.example.com", NULL, 6379, 15},
        {"REDIS://my_redis-1:1/0", "my_redis-1", NULL, 1, 0},
        {"redis://h:65535/", "h", NULL, 65535, 0},
        {"redis://[::1]:6390/3", "::1", NULL, 6390, 3},
        {"redis://[fe80::1]", "fe80::1", NULL, 6379, 0},
        {"unix:///var/run/redis/redis.sock", NULL, "/var/run/redis/redis.sock", 0, 0},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "default_model: m\nrate_limits: {redis_url: \"%s\"}\n", good[i].url);
        lx_config *c = lx_test_config(yaml);
        assert_string_equal(c->rate_limits.redis_url, good[i].url);
        if (good[i].host)
            assert_string_equal(c->rate_limits.redis.host, good[i].host);
        else
            assert_null(c->rate_limits.redis.host);
        if (good[i].socket_path)
            assert_string_equal(c->rate_limits.redis.socket_path, good[i].socket_path);
        else
            assert_null(c->rate_limits.redis.socket_path);
        assert_int_equal(c->rate_limits.redis.port, good[i].port);
        assert_int_equal(c->rate_limits.redis.db, good[i].db);
        lx_config_unref(c);
    }
    const char *bad[] = {
        "http://localhost:6379", "redis://",          "redis://:6379",
        "redis://h:0",           "redis://h:65536",   "redis://h:",
        "redis://h:port",        "redis://h/db1",     "redis://h/-1",
        "redis://h/1/2",         "redis://user:pw@h", "redis://h x",
        "redis://[::1",          "redis://[]",        "redis://[::1]x",
        "redis://h/99999999999", "unix://",           "unix://relative.sock",
        "localhost:6379",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "default_model: m\nrate_limits:\n  redis_url: \"%s\"\n", bad[i]);
        expect_errors(yaml,
                      "cfg.yaml:3: rate_limits.redis_url: must be a Redis URL: redis://host[:port][/db] (port "
                      "1..65535, db a number) or unix:///path/to/socket, got ",
                      NULL);
    }
    expect_errors("default_model: m\nrate_limits: {redis_url: 6379}\n", "rate_limits.redis_url: must be a Redis URL",
                  NULL);
    lx_buf errs;
    assert_null(parse("default_model: m\nrate_limits: {redis_url: \"redis://:hunter2@h:6379\"}\n", &errs));
    assert_non_null(strstr(errs.p, "got a URL with a user or password part (not supported; not shown)"));
    assert_null(strstr(errs.p, "hunter2"));
    lx_buf_free(&errs);
}

static void test_auth_keys(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\n"
                                  "auth:\n"
                                  "  enabled: true\n"
                                  "  keys:\n"
                                  "    - key_sha256: " SHA_OTHER "\n"
                                  "      user: alice\n"
                                  "    - {key: secret, user: bob}\n"
                                  "    - {user: alice, key_sha256: \""
                                  "2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25A"
                                  "\"}\n");
    assert_true(c->auth.enabled);
    assert_int_equal(c->auth.n_keys, 3);
    assert_string_equal(c->auth.keys[0].user, "alice");
    assert_false(c->auth.keys[0].plain);
    assert_digest(c->auth.keys[0].key_sha256, SHA_OTHER);
    assert_string_equal(c->auth.keys[1].user, "bob");
    assert_true(c->auth.keys[1].plain); /* hashed; the flag lets the gateway warn */
    assert_digest(c->auth.keys[1].key_sha256, SHA_SECRET);
    assert_digest(c->auth.keys[2].key_sha256, /* upper case reads the same */
                  "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25a");
    lx_config_unref(c);
    /* keys may be listed with auth off; an empty list is no keys */
    c = lx_test_config("default_model: m\nauth: {keys: [{key: k1, user: u}]}\n");
    assert_false(c->auth.enabled);
    assert_int_equal(c->auth.n_keys, 1);
    lx_config_unref(c);
    c = lx_test_config("default_model: m\nauth: {enabled: false, keys: []}\n");
    assert_int_equal(c->auth.n_keys, 0);
    lx_config_unref(c);
}

static void test_auth_errors(void **state)
{
    (void)state;
    expect_errors("default_model: m\nauth:\n  enabled: true\n",
                  "cfg.yaml:3: auth: enabled with no keys: list them under keys:", NULL);
    expect_errors("default_model: m\nauth:\n  enabled: true\n  keys: []\n", "cfg.yaml:3: auth: enabled with no keys",
                  NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key: secret, user: a}\n    - key_sha256: " SHA_SECRET
                  "\n      user: b\n",
                  "cfg.yaml:5: auth.keys[1]: duplicate key (first given at line 4)", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key: k, user: a}\n    - {key: k, user: a}\n",
                  "cfg.yaml:5: auth.keys[1]: duplicate key (first given at line 4)", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - key: k\n      key_sha256: " SHA_SECRET "\n      user: a\n",
                  "cfg.yaml:5: auth.keys[0]: give key or key_sha256, not both (key at line 4)", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - user: a\n",
                  "cfg.yaml:4: auth.keys[0]: has no key: add \"key_sha256: <SHA-256 of the key, 64 hex digits>\" "
                  "(or \"key: <the key>\")",
                  NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - key: k\n",
                  "cfg.yaml:4: auth.keys[0]: has no user: add \"user: <name>\"", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key: k, user: \"\"}\n",
                  "cfg.yaml:4: auth.keys[0].user: must be a non-empty string, got \"\"", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key: k, user: [a]}\n",
                  "auth.keys[0].user: must be a non-empty string, got a list", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key: k, user: }\n",
                  "auth.keys[0].user: must be a non-empty string, got nothing", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key_sha256: " SHA_SECRET "0, user: a}\n",
                  "auth.keys[0].key_sha256: must be 64 hexadecimal digits", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - {key_sha256: "
                  "zbb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b, user: a}\n",
                  "auth.keys[0].key_sha256: must be 64 hexadecimal digits", NULL);
    expect_errors("default_model: m\nauth:\n  keys:\n    - abc\n",
                  "cfg.yaml:4: auth.keys[0]: must be a mapping {key_sha256: <64 hex digits>, user: <name>} or "
                  "{key: <key>, user: <name>}, got \"abc\"",
                  NULL);
    expect_errors("default_model: m\nauth:\n  keys: {alice: k}\n",
                  "cfg.yaml:3: auth.keys: must be a list of keys (- key_sha256: ... / user: ... lines), got a mapping",
                  NULL);
    expect_errors("default_model: m\nauth: {enabled: 1}\n", "auth.enabled: must be true or false", NULL);
    /* a bad entry is reported once; "enabled with no keys" would only repeat it */
    lx_buf errs;
    assert_null(parse("default_model: m\nauth:\n  enabled: true\n  keys:\n    - {key: k}\n", &errs));
    assert_string_equal(errs.p, "cfg.yaml:5: auth.keys[0]: has no user: add \"user: <name>\"\n");
    lx_buf_free(&errs);
}

static void write_bytes(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_file(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

/* metrics.token / metrics.token_file: the same rules as the admin token's, checked by the same code. */
static void test_metrics_token(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\n");
    assert_null(c->metrics.token);
    lx_config_unref(c);
    c = lx_test_config("default_model: m\nmetrics: {token: \"scrape-Me\"}\n");
    assert_string_equal(c->metrics.token, "scrape-Me");
    assert_null(c->admin.token);
    lx_config_unref(c);

    char dir[] = "/tmp/lx-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[128], yaml[512];
    snprintf(file, sizeof file, "%s/token", dir);
    write_file(file, "prom-tok\n");
    snprintf(yaml, sizeof yaml, "default_model: m\nmetrics:\n  token_file: \"%s\"\n", file);
    c = lx_test_config(yaml);
    assert_string_equal(c->metrics.token, "prom-tok");
    assert_string_equal(c->metrics.token_file, file);
    lx_config_unref(c);
    snprintf(yaml, sizeof yaml, "default_model: m\nmetrics:\n  token: abc\n  token_file: \"%s\"\n", file);
    expect_errors(yaml,
                  "cfg.yaml:4: metrics.token_file: give metrics.token or metrics.token_file, not both "
                  "(metrics.token at line 3)",
                  NULL);
    write_file(file, "\n");
    snprintf(yaml, sizeof yaml, "default_model: m\nmetrics:\n  token_file: \"%s\"\n", file);
    expect_errors(yaml, "is empty: it should hold the metrics token", NULL);
    assert_int_equal(unlink(file), 0);
    assert_int_equal(rmdir(dir), 0);
    expect_errors("default_model: m\nmetrics: {token: \"two words\"}\n",
                  "metrics.token: must be a non-empty string of visible ASCII", NULL);
}

static void test_admin_token(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\nadmin: {token: \"s3cr3t-Token\"}\n");
    assert_string_equal(c->admin.token, "s3cr3t-Token");
    assert_null(c->admin.token_file);
    lx_config_unref(c);

    char dir[] = "/tmp/lx-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[128], yaml[512];
    snprintf(file, sizeof file, "%s/token", dir);
    write_file(file, "tok-from-file \t\r\n\n");
    snprintf(yaml, sizeof yaml, "default_model: m\nadmin:\n  token_file: \"%s\"\n", file);
    c = lx_test_config(yaml);
    assert_string_equal(c->admin.token, "tok-from-file"); /* trailing whitespace dropped */
    assert_string_equal(c->admin.token_file, file);
    lx_config_unref(c);

    lx_buf errs, want;
    lx_buf_init(&want, 0);
    snprintf(yaml, sizeof yaml, "default_model: m\nadmin:\n  token: abc\n  token_file: \"%s\"\n", file);
    expect_errors(yaml,
                  "cfg.yaml:4: admin.token_file: give admin.token or admin.token_file, not both "
                  "(admin.token at line 3)",
                  NULL);
    write_file(file, " \n\n");
    snprintf(yaml, sizeof yaml, "default_model: m\nadmin:\n  token_file: \"%s\"\n", file);
    lx_buf_printf(&want, "cfg.yaml:3: admin.token_file: \"%s\" is empty: it should hold the admin token\n", file);
    assert_null(parse(yaml, &errs));
    assert_string_equal(errs.p, want.p);
    lx_buf_free(&errs);
    write_file(file, "two words\n");
    expect_errors(yaml, "admin.token_file: \"/tmp/lx-test-config-", "must hold one token of visible ASCII", NULL);
    assert_null(parse(yaml, &errs));
    assert_null(strstr(errs.p, "words"));
    lx_buf_free(&errs);
    write_bytes(file, "tok\0en\n", 7); /* a NUL inside */
    expect_errors(yaml, "must hold one token of visible ASCII", NULL);
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    write_file(file, big);
    expect_errors(yaml, "is larger than 4096 bytes", NULL);
    /* a directory, a missing file */
    snprintf(yaml, sizeof yaml, "default_model: m\nadmin:\n  token_file: \"%s\"\n", dir);
    expect_errors(yaml, "admin.token_file: cannot read \"/tmp/lx-test-config-", "\": not a regular file", NULL);
    assert_int_equal(unlink(file), 0);
    snprintf(yaml, sizeof yaml, "default_model: m\nadmin:\n  token_file: \"%s\"\n", file);
    lx_buf_reset(&want);
    lx_buf_printf(&want, "cfg.yaml:3: admin.token_file: cannot read \"%s\": No such file or directory\n", file);
    assert_null(parse(yaml, &errs));
    assert_string_equal(errs.p, want.p);
    lx_buf_free(&errs);
    lx_buf_free(&want);
    assert_int_equal(rmdir(dir), 0);
    expect_errors("default_model: m\nadmin: {token_file: \"\"}\n", "admin.token_file: must be a non-empty string",
                  NULL);
    expect_errors("default_model: m\nadmin: {token: \"a b\"}\n", "admin.token: must be a non-empty string of visible",
                  NULL);
}

static void test_other_new_keys(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\n"
                                  "metrics: {per_user: true}\n"
                                  "usage: {enabled: false, db_path: /var/lib/lexora/usage.db}\n"
                                  "logging: {file: /var/log/lexora.log}\n");
    assert_true(c->metrics.per_user);
    assert_false(c->usage.enabled);
    assert_string_equal(c->usage.db_path, "/var/lib/lexora/usage.db");
    assert_string_equal(c->logging.file, "/var/log/lexora.log");
    lx_config_unref(c);
    expect_errors("default_model: m\nmetrics: {per_user: \"yes\"}\n", "metrics.per_user: must be true or false", NULL);
    expect_errors("default_model: m\nusage: {enabled: on}\n", "usage.enabled: must be true or false, got \"on\"", NULL);
    expect_errors("default_model: m\nusage: {db_path: \"\"}\n", "usage.db_path: must be a non-empty string", NULL);
}

/* usage.store: postgres and its keys, checked together */
static void test_usage_postgres_keys(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\n");
    assert_int_equal(c->usage.store, LX_USAGE_STORE_SQLITE);
    assert_null(c->usage.postgres_url);
    assert_null(c->usage.password_file);
    assert_string_equal(c->usage.gateway_id, ""); /* the ledger takes the host name */
    lx_config_unref(c);
    c = lx_test_config("default_model: m\n"
                       "usage:\n  store: postgres\n"
                       "  postgres_url: \"postgresql://lexora@127.0.0.1:5432/lexora?sslmode=disable\"\n"
                       "  password_file: /etc/passwd\n  gateway_id: \"gw-1.eu:a\"\n");
    assert_int_equal(c->usage.store, LX_USAGE_STORE_POSTGRES);
    assert_string_equal(c->usage.postgres_url, "postgresql://lexora@127.0.0.1:5432/lexora?sslmode=disable");
    assert_string_equal(c->usage.password_file, "/etc/passwd");
    assert_string_equal(c->usage.gateway_id, "gw-1.eu:a");
    lx_config_unref(c);
    c = lx_test_config("default_model: m\nusage: {store: POSTGRES, postgres_url: \"host=db dbname=lexora\"}\n");
    assert_int_equal(c->usage.store, LX_USAGE_STORE_POSTGRES);
    lx_config_unref(c);
    expect_errors("default_model: m\nusage:\n  store: postgres\n",
                  "cfg.yaml:3: usage.postgres_url: needed when usage.store is postgres", NULL);
    expect_errors("default_model: m\nusage: {store: mysql}\n", "usage.store: must be sqlite or postgres, got \"mysql\"",
                  NULL);
    expect_errors("default_model: m\nusage:\n  store: postgres\n  postgres_url: \"http://db/x\"\n",
                  "cfg.yaml:4: usage.postgres_url: must be a URL postgresql://", NULL);
    expect_errors("default_model: m\nusage: {postgres_url: \"postgresql://h/db?bogus=1\"}\n",
                  "usage.postgres_url: not a connection string libpq accepts", NULL);
    expect_errors("default_model: m\nusage: {postgres_url: \"host=db bogus=1\"}\n",
                  "usage.postgres_url: not a connection string libpq accepts: invalid connection option \"bogus\"",
                  NULL);
    expect_errors("default_model: m\nusage: {postgres_url: \"\"}\n", "usage.postgres_url: must be a non-empty string",
                  NULL);
    expect_errors("default_model: m\nusage: {password_file: /nonexistent/pw}\n",
                  "usage.password_file: cannot read \"/nonexistent/pw\": No such file or directory", NULL);
    expect_errors("default_model: m\nusage: {password_file: /tmp}\n",
                  "usage.password_file: cannot read \"/tmp\": not a regular file", NULL);
    expect_errors("default_model: m\nusage: {gateway_id: \"gw one\"}\n",
                  "usage.gateway_id: must be 1 to 63 letters, digits", NULL);
    expect_errors("default_model: m\nlogging: {file: [a]}\n", "logging.file: must be a non-empty string, got a list",
                  NULL);
    expect_errors("default_model: m\nhealth_check: 5\n", "cfg.yaml:2: health_check: must be a mapping", NULL);
}

/* ---- lookups and lifetime ---- */

static void test_backend_for(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("backends:\n"
                                  "  ollama: {enabled: false, url: \"http://o\", models: [shared, only-off]}\n"
                                  "  vllm: {models: [qwen3-32b, shared]}\n"
                                  "  second: {type: openai, url: \"http://s\", models: [shared, other]}\n");
    assert_string_equal(c->default_model, "qwen3-32b"); /* the first *enabled* backend's first model */
    const lx_backend_conf *b = lx_config_backend_for(c, "shared", 6);
    assert_non_null(b);
    assert_string_equal(b->name, "vllm"); /* the first enabled one that lists it */
    assert_string_equal(lx_config_backend_for(c, "other", 5)->name, "second");
    assert_null(lx_config_backend_for(c, "only-off", 8)); /* disabled backends serve nothing */
    assert_null(lx_config_backend_for(c, "nothing", 7));
    /* the model is a length-delimited slice, e.g. straight out of a request body */
    const char *body = "qwen3-32b\", \"messages\"";
    assert_string_equal(lx_config_backend_for(c, body, 9)->name, "vllm");
    assert_null(lx_config_backend_for(c, body, 8));
    assert_null(lx_config_backend_for(c, "", 0));
    lx_config_unref(c);
}

static void test_refcount(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("default_model: m\n");
    assert_int_equal(c->refs, 1);
    assert_ptr_equal(lx_config_ref(c), c);
    lx_config_ref(c);
    assert_int_equal(c->refs, 3);
    lx_config_unref(c);
    lx_config_unref(c);
    assert_int_equal(c->refs, 1);
    assert_string_equal(c->default_model, "m"); /* still alive */
    lx_config_unref(c);                         /* freed: ASan reports a leak or a double free otherwise */
    lx_config_unref(NULL);
}

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(lx_backend_kind_name(LX_BACKEND_VLLM), "vllm");
    assert_string_equal(lx_backend_kind_name(LX_BACKEND_OLLAMA), "ollama");
    assert_string_equal(lx_backend_kind_name(LX_BACKEND_LLAMACPP), "llamacpp");
    assert_string_equal(lx_backend_kind_name(LX_BACKEND_OPENAI), "openai");
    assert_string_equal(lx_backend_kind_name(LX_BACKEND_KIND_COUNT), "unknown");
}

/* routing: aliases (a model, a list, an alias of an alias), upstream_name, weight, models: auto, the
 * strategies by name. */
static void test_routing(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("backends:\n"
                                  "  gpu1: {type: vllm, url: 'http://10.0.0.1:8000', models: [qwen3-32b]}\n"
                                  "  gpu2:\n"
                                  "    type: vllm\n"
                                  "    url: 'http://10.0.0.2:8000'\n"
                                  "    models: [qwen3-32b, {name: qwen-coder, upstream_name: Qwen/Coder}]\n"
                                  "    weight: 2\n"
                                  "  laptop: {type: ollama, url: 'http://localhost:11434', models: auto}\n"
                                  "routing:\n"
                                  "  aliases:\n"
                                  "    code: qwen-coder\n"
                                  "    japanese: llama-3.1-swallow-8b\n" /* accepted: laptop may serve it */
                                  "    reasoning: [qwen3-32b, qwen3-8b]\n"
                                  "    think: [reasoning, code, qwen3-32b]\n"
                                  "  balance: peak_ewma\n"
                                  "  affinity: prefix\n");
    assert_int_equal(c->routing.balance, LX_BALANCE_PEAK_EWMA);
    assert_int_equal(c->routing.affinity, LX_AFFINITY_PREFIX);
    assert_int_equal(backend(c, "gpu2")->weight, 2);
    assert_int_equal(backend(c, "gpu1")->weight, 1);
    assert_true(backend(c, "laptop")->models_auto);
    assert_int_equal(backend(c, "laptop")->n_models, 0);
    assert_string_equal(lx_backend_conf_upstream(backend(c, "gpu2"), "qwen-coder"), "Qwen/Coder");
    assert_string_equal(c->default_model, "qwen3-32b");
    const lx_alias *a = lx_config_alias(c, "think", 5);
    assert_non_null(a);
    assert_int_equal(a->n_models, 3); /* reasoning's two, then code's; qwen3-32b once */
    assert_string_equal(a->models[0], "qwen3-32b");
    assert_string_equal(a->models[1], "qwen3-8b");
    assert_string_equal(a->models[2], "qwen-coder");
    assert_string_equal(a->targets_text, "reasoning, code, qwen3-32b");
    assert_null(lx_config_alias(c, "qwen3-32b", 9));
    lx_config_unref(c);
}

/* backends.NAME.gpus: GPU indexes, informational; each once, 0..1023. */
static void test_gpus(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("backends:\n"
                                  "  a: {type: vllm, url: 'http://127.0.0.1:1', models: [m], gpus: [1, 0]}\n"
                                  "  b: {type: vllm, url: 'http://127.0.0.1:2', models: [m]}\n");
    assert_non_null(c);
    const lx_backend_conf *a = backend(c, "a");
    assert_int_equal(a->n_gpus, 2);
    assert_int_equal(a->gpus[0], 1); /* as listed */
    assert_int_equal(a->gpus[1], 0);
    assert_int_equal(backend(c, "b")->n_gpus, 0);
    assert_null(backend(c, "b")->gpus);
    lx_config_unref(c);
    expect_errors("backends:\n  vllm: {models: [m], gpus: 0}\n",
                  "cfg.yaml:2: backends.vllm.gpus: must be a list of GPU indexes, e.g. [0, 1], got \"0\"", NULL);
    expect_errors("backends:\n  vllm: {models: [m], gpus: [0, -1, x, \"2\", 1024]}\n",
                  "backends.vllm.gpus[1]: must be an integer from 0 to 1023, got \"-1\"",
                  "backends.vllm.gpus[2]: must be an integer from 0 to 1023, got \"x\"",
                  "backends.vllm.gpus[3]: must be an integer from 0 to 1023, got \"2\" (quoted",
                  "backends.vllm.gpus[4]: must be an integer from 0 to 1023, got \"1024\"", NULL);
    expect_errors("backends:\n  vllm: {models: [m], gpus: [0, 1, 0]}\n", "backends.vllm.gpus[2]: GPU 0 is listed twice",
                  NULL);
}

/* backends.NAME.load, sleep_mode and lora_path: read, and refused where the kind cannot load. */
static void test_loading(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("backends:\n"
                                  "  gpu1:\n"
                                  "    type: vllm\n"
                                  "    url: 'http://127.0.0.1:8000'\n"
                                  "    models: [qwen3-32b, {name: legal, lora_path: /models/lora/legal}]\n"
                                  "    sleep_mode: true\n"
                                  "    load: {idle_unload_seconds: 900, max_loaded: 1, switch_after_seconds: 2}\n"
                                  "  plain: {type: vllm, url: 'http://127.0.0.1:8001', models: [m]}\n");
    const lx_backend_conf *b = backend(c, "gpu1");
    assert_true(b->load.enabled && b->load.on_demand && b->sleep_mode);
    assert_true(b->load.idle_unload_s == 900 && b->load.max_loaded == 1 && b->load.switch_after_s == 2);
    assert_true(b->load.min_resident_s == 60 && b->load.load_timeout_s == 300);
    assert_string_equal(lx_backend_conf_lora(b, "legal"), "/models/lora/legal");
    assert_null(lx_backend_conf_lora(b, "qwen3-32b"));
    assert_false(backend(c, "plain")->load.enabled);
    lx_config_unref(c);
    expect_errors("backends:\n  vllm: {url: 'http://127.0.0.1:8000', models: [m], load: {}}\n",
                  "backends.vllm: load: needs a backend that can load models", NULL);
    expect_errors("backends:\n  o: {type: ollama, url: 'http://127.0.0.1:1', models: auto, load: {}}\n",
                  "backends.o: load: needs the models it loads listed", NULL);
    expect_errors("backends:\n  o: {type: ollama, url: 'http://127.0.0.1:1', models: [{name: m, lora_path: x}], "
                  "sleep_mode: true}\n",
                  "backends.o: lora_path is for vLLM backends", "backends.o: sleep_mode is for vLLM backends", NULL);
    expect_errors("backends:\n  o: {type: ollama, url: 'http://127.0.0.1:1', models: [m], load: {max_loaded: -1, "
                  "load_timeout_seconds: 0}}\n",
                  "backends.o.load.max_loaded: must be", "backends.o.load.load_timeout_seconds: must be", NULL);
}

/* routing.fallbacks: a name to a model or a list; fallback_after_queue_seconds; users' fallback: false. */
static void test_fallbacks(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("backends:\n"
                                  "  gpu: {type: vllm, url: 'http://10.0.0.1:8000', models: [qwen3-32b, qwen3-8b]}\n"
                                  "  cloud: {type: vllm, url: 'http://10.0.0.2:8000', models: [claude-sonnet-4-5]}\n"
                                  "routing:\n"
                                  "  aliases: {fast: qwen3-8b}\n"
                                  "  fallbacks:\n"
                                  "    qwen3-32b: [fast, claude-sonnet-4-5]\n"
                                  "    fast: claude-sonnet-4-5\n"
                                  "  fallback_after_queue_seconds: 2.5\n"
                                  "rate_limits:\n"
                                  "  users: {alice: {fallback: false}, bob: {requests_per_minute: 5}}\n");
    const lx_fallback *f = lx_config_fallback(c, "qwen3-32b", 9);
    assert_non_null(f);
    assert_int_equal(f->n_targets, 2);
    assert_string_equal(f->targets[0], "fast");
    assert_string_equal(f->targets[1], "claude-sonnet-4-5");
    assert_int_equal(lx_config_fallback(c, "fast", 4)->n_targets, 1);
    assert_null(lx_config_fallback(c, "claude-sonnet-4-5", 17));
    assert_true(c->routing.fallback_after_queue_s == 2.5);
    assert_false(lx_config_user_fallback(c, "alice"));
    assert_true(lx_config_user_fallback(c, "bob"));
    assert_true(lx_config_user_fallback(c, "carol")); /* not listed */
    lx_config_unref(c);
    const char *b = "backends:\n  vllm: {url: 'http://127.0.0.1:8000', models: [m, n]}\n";
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "%srouting:\n  fallbacks:\n    m: [m, gone]\n    x: n\n    n: []\n", b);
    expect_errors(yaml, "cfg.yaml:5: routing.fallbacks.m: falls back to itself",
                  "cfg.yaml:5: routing.fallbacks.m: \"gone\" is neither a model an enabled backend serves nor an alias "
                  "(a fallback to nothing)",
                  "cfg.yaml:6: routing.fallbacks.x: \"x\" is neither",
                  "cfg.yaml:7: routing.fallbacks.n: names no model", NULL);
    snprintf(yaml, sizeof yaml, "%srouting: {fallback_after_queue_seconds: -1}\n", b);
    expect_errors(yaml, "routing.fallback_after_queue_seconds: must be", NULL);
}

static void test_alias_errors(void **state)
{
    (void)state;
    const char *b = "backends:\n  vllm: {url: 'http://127.0.0.1:8000', models: [m, n]}\n";
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "%srouting:\n  aliases:\n    a: b\n    b: [n, c]\n    c: a\n", b);
    expect_errors(yaml, "cfg.yaml:5: routing.aliases.a: alias loop: a -> b -> c -> a",
                  "cfg.yaml:7: routing.aliases.c: alias loop: c -> a -> b -> c", NULL);
    snprintf(yaml, sizeof yaml, "%srouting:\n  aliases:\n    m: n\n", b);
    expect_errors(yaml, "cfg.yaml:5: routing.aliases.m: shadows the model of that name served by backend vllm", NULL);
    snprintf(yaml, sizeof yaml, "%srouting:\n  aliases:\n    x: [m, nothing]\n    y: x2\n    x2: [gone]\n", b);
    expect_errors(
        yaml, "cfg.yaml:5: routing.aliases.x: \"nothing\" is neither a model an enabled backend serves nor an alias",
        "cfg.yaml:6: routing.aliases.y: \"gone\" (through alias x2) is neither a served model nor an alias", NULL);
    snprintf(yaml, sizeof yaml, "%srouting:\n  aliases:\n    x: []\n    y: {a: 1}\n    x: m\n", b);
    expect_errors(yaml, "cfg.yaml:5: routing.aliases.x: names no model", "cfg.yaml:6: routing.aliases.y: must be",
                  "cfg.yaml:7: routing.aliases.x: duplicate key (first given at line 5)", NULL);
    snprintf(yaml, sizeof yaml, "%srouting: {balance: fastest, affinity: session}\n", b);
    expect_errors(yaml, "routing.balance: must be one of", "routing.affinity: must be one of", NULL);
    expect_errors("backends:\n  vllm: {url: 'http://127.0.0.1:8000', models: automatic}\n",
                  "backends.vllm.models: must be a list of models (- name lines), or auto", NULL);
    expect_errors("backends:\n  vllm: {url: 'http://127.0.0.1:8000', models: [m], weight: 0}\n",
                  "backends.vllm.weight: must be an integer from 1 to 1000", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_example_config),
        cmocka_unit_test(test_cannot_read),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_shorthand_only),
        cmocka_unit_test(test_shorthand_needs_default_model),
        cmocka_unit_test(test_backends_with_type),
        cmocka_unit_test(test_vllm_entry_takes_vllm_url),
        cmocka_unit_test(test_missing_type),
        cmocka_unit_test(test_backend_errors),
        cmocka_unit_test(test_default_model_not_served),
        cmocka_unit_test(test_vllm_url_conflict),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_scalar_forms),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_byte_sizes),
        cmocka_unit_test(test_byte_sizes_bad),
        cmocka_unit_test(test_users_inherit_default),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_many_errors_capped),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_odd_input),
        cmocka_unit_test(test_backend_keys),
        cmocka_unit_test(test_secrets_not_shown),
        cmocka_unit_test(test_rate_limit_keys),
        cmocka_unit_test(test_redis_url),
        cmocka_unit_test(test_auth_keys),
        cmocka_unit_test(test_auth_errors),
        cmocka_unit_test(test_admin_token),
        cmocka_unit_test(test_metrics_token),
        cmocka_unit_test(test_other_new_keys),
        cmocka_unit_test(test_usage_postgres_keys),
        cmocka_unit_test(test_backend_for),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_alias_errors),
        cmocka_unit_test(test_fallbacks),
        cmocka_unit_test(test_loading),
        cmocka_unit_test(test_gpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
