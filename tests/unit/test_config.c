/*
 * Unit tests for config.c: the shipped files, the schema's shapes (shorthand, backends with and without
 * type), and the error messages ("file:line: key.path: message"), which are part of the interface.
 * Runs with the repository root as the working directory (the shipped files are read from config/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "utils/log.h"

#define MIB ((size_t)1 << 20)

/* Parses yaml as "cfg.yaml"; errs receives the messages. */
static lx_config *parse(const char *yaml, lx_buf *errs)
{
    lx_buf_init(errs, 0);
    return lx_config_parse("cfg.yaml", yaml, strlen(yaml), errs);
}

static lx_config *parse_ok(const char *yaml)
{
    lx_buf errs;
    lx_config *c = parse(yaml, &errs);
    if (c == NULL) print_error("unexpected errors:\n%s", errs.p);
    lx_buf_free(&errs);
    assert_non_null(c);
    return c;
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
    for (; *s; s++) n += *s == '\n';
    return n;
}

static const lx_backend_conf *backend(const lx_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (strcmp(c->backends[i].name, name) == 0) return &c->backends[i];
    return NULL;
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
    assert_int_equal(c->n_backends, 3);
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
    lx_config *c = parse_ok("default_model: m\n");
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
    lx_config_unref(c);
}

static void test_shorthand_only(void **state)
{
    (void)state;
    lx_config *c = parse_ok("vllm:\n"
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
    lx_config *c = parse_ok("vllm:\n"
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
    lx_config *c = parse_ok("vllm: {url: \"http://a:1/\", timeout: 5}\n"
                            "backends:\n"
                            "  vllm: {models: [m]}\n"
                            "  ollama: {enabled: false}\n");
    assert_string_equal(backend(c, "vllm")->url, "http://a:1");
    assert_true(backend(c, "vllm")->timeout_s == 5.0);
    assert_null(backend(c, "ollama")->url); /* disabled: no url needed */
    lx_config_unref(c);
    /* the same url (up to a trailing slash) in both places is fine */
    c = parse_ok("vllm: {url: \"http://a:1/\"}\nbackends:\n  vllm: {url: \"http://a:1\", models: [m]}\n");
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
                  "cfg.yaml:3: backends.gpu2: no type: add \"type: vllm|ollama|llamacpp|openai\"\n", NULL);
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
                  "cfg.yaml:3: backends.vllm.models: must be a list of models (- name lines), got \"m\"", NULL);
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
    lx_config *c = parse_ok("backends:\n  vllm: {url: \"http://localhost:9000\", models: [m]}\n");
    assert_string_equal(c->backends[0].url, "http://localhost:9000");
    lx_config_unref(c);
}

/* ---- keys and types ---- */

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_errors("servr: {}\n",
                  "cfg.yaml:1: servr: unknown key (valid keys: server, vllm, default_model, backends, "
                  "queue, rate_limits, retry, logging, metrics)",
                  NULL);
    expect_errors("default_model: m\n"
                  "server:\n"
                  "  host: 127.0.0.1\n"
                  "  prot: 8001\n",
                  "cfg.yaml:4: server.prot: unknown key (valid keys: host, port, max_connections, max_body_bytes, "
                  "max_header_bytes, max_response_bytes, header_timeout, idle_timeout)\n",
                  NULL);
    expect_errors("default_model: m\nqueue:\n  priorities:\n    urgent: 0\n",
                  "cfg.yaml:4: queue.priorities.urgent: unknown key (valid keys: high, normal, low)", NULL);
    expect_errors("backends:\n  vllm:\n    modles: [m]\n",
                  "cfg.yaml:3: backends.vllm.modles: unknown key (valid keys: type, enabled, url, timeout, models)",
                  NULL);
    expect_errors(
        "backends:\n  vllm:\n    models:\n      - nmae: m\n",
        "cfg.yaml:4: backends.vllm.models[0].nmae: unknown key (valid keys: name, path, gpu_memory_utilization)", NULL);
    expect_errors(
        "default_model: m\nrate_limits:\n  users:\n    bob:\n      rpm: 5\n",
        "cfg.yaml:5: rate_limits.users.bob.rpm: unknown key (valid keys: requests_per_minute, tokens_per_minute)",
        NULL);
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
    lx_config *c = parse_ok("default_model: \"8001\"\n" /* any scalar is a string */
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
    c = parse_ok("default_model: m\nmetrics: {enabled: YES}\nlogging: {level: Debug}\n");
    assert_true(c->metrics.enabled);
    assert_int_equal(c->logging.level, LX_LOG_DEBUG);
    lx_config_unref(c);
    c = parse_ok("default_model: m\nlogging: {level: WARNING}\nserver:\nqueue: ~\n"); /* empty sections */
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
    /* the edges themselves are fine */
    lx_config *c = parse_ok("default_model: m\nserver: {port: 65535, header_timeout: 3600}\n"
                            "queue: {priorities: {high: 0, normal: 0, low: 1000}}\n"
                            "rate_limits: {default: {requests_per_minute: 0, tokens_per_minute: 0}}\n"
                            "retry: {max_attempts: 20, backoff_multiplier: 10}\n");
    assert_int_equal(c->server.port, 65535);
    assert_int_equal(c->queue.priority_low, 1000);
    assert_int_equal(c->rate_limits.default_limit.requests_per_minute, 0);
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
        lx_config *c = parse_ok(yaml);
        assert_int_equal(c->server.max_body_bytes, good[i].bytes);
        lx_config_unref(c);
    }
    lx_config *c = parse_ok("default_model: m\nserver: {max_header_bytes: 1MiB, max_response_bytes: 1GB}\n");
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
    lx_config *c = parse_ok("default_model: m\n"
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
                "max_header_bytes, max_response_bytes, header_timeout, idle_timeout)\n"
                "cfg.yaml:4: queue.max_size: must be an integer from 1 to 1000000, got \"lots\"\n"
                "cfg.yaml:5: default_model: \"missing-model\" is not served by any enabled backend "
                "(served: m, n)\n"
                "cfg.yaml:8: backends.gpu2: no type: add \"type: vllm|ollama|llamacpp|openai\"\n"
                "cfg.yaml:9: retry.max_attempts: must be an integer from 1 to 20, got \"0\"\n");
    lx_buf_free(&errs);
    /* a bad model list makes "not served" a guess, so it is left out */
    assert_null(parse("default_model: m\nbackends:\n  vllm: {models: [{nam: m}]}\n", &errs));
    assert_string_equal(errs.p, "cfg.yaml:3: backends.vllm.models[0].nam: unknown key (valid keys: name, path, "
                                "gpu_memory_utilization)\n"
                                "cfg.yaml:3: backends.vllm.models[0]: has no name: add \"name: <model>\"\n");
    lx_buf_free(&errs);
}

static void test_many_errors_capped(void **state)
{
    (void)state;
    lx_buf yaml, errs;
    lx_buf_init(&yaml, 0);
    lx_buf_append_str(&yaml, "default_model: m\nserver:\n");
    for (int i = 0; i < 150; i++) lx_buf_printf(&yaml, "  k%d: 1\n", i);
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
    lx_config *c = parse_ok("default_model: m\nserver: {port: &p 9000}\nmetrics: {port: *p}\n");
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

/* ---- lookups and lifetime ---- */

static void test_backend_for(void **state)
{
    (void)state;
    lx_config *c = parse_ok("backends:\n"
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
    lx_config *c = parse_ok("default_model: m\n");
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
        cmocka_unit_test(test_backend_for),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_kind_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
