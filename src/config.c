/*
 * Configuration loader: lexora_config.yaml (libyaml's document API) → an lx_config snapshot. See config.h.
 *
 * Every key is one row of a table (config_keys.h): name, type, default, bounds, where it lands (an offset
 * into the struct the table fills), live or restart-only, as in nginx's command tables; reload.c compares
 * snapshots by the same rows. This file holds the tables, the walk over them and the snapshot's lifetime;
 * config_value.c reads one scalar by its row's type; config_check.c checks and settles what depends on
 * several keys. Loading is three steps:
 *  1. defaults: every row's default is written into a fresh snapshot;
 *  2. walk: each YAML mapping is matched against its table in file order; a bad value is reported and
 *     the default stays;
 *  3. resolve (config_check.c): what depends on several keys (backends, default_model, per-user limits)
 *     is settled.
 * Invariants:
 *  - every problem is one error (a line, "key.path: message"); none stops the load; errors are sorted
 *    by line before they reach the caller, so they read in file order;
 *  - a snapshot with any error is freed, never returned;
 *  - the walk descends only where the schema does, so aliases (even cyclic ones) cannot make it recurse
 *    without bound;
 *  - a quoted scalar is a string only: `port: "8001"` is an error, not 8001;
 *  - a secret (LX_K_SECRET) or a digest (LX_K_SHA256) is never quoted back in a message, only its length;
 *    a plain auth key is hashed at once and its text wiped.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config_keys.h"
#include "config_parse.h"
#include "routing/classifier.h"
#include "utils/common.h"
#include "utils/log.h"

#define KIB            1024.0
#define MIB            (1024.0 * 1024.0)
#define GIB            (1024.0 * 1024.0 * 1024.0)
#define MAX_ERRORS     100         /* errors kept; the rest are only counted */
#define MAX_FILE_BYTES (16u << 20) /* a config file larger than this is refused */
#define SHOW_LEN       60          /* bytes of a bad value quoted back in a message */
#define MSG_LEN        1024

struct lx_cfg_error {
    int line;
    size_t seq;
    char *msg;
};

static void read_backends(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_models(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_users(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_auth_keys(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void item_path(char *out, const char *path, size_t i);
static void read_aliases(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_fallbacks(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_gpus(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_auto_routes(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_auto_rules(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_keywords(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_experiments(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_variants(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);

/* ---- the tables ---- */

/* clang-format off */
#define AT(T, f) .off = offsetof(T, f)
#define K_STR(T, n, f, d) {.name = n, .type = LX_K_STR, AT(T, f), .sdef = d}
#define K_URL(T, n, f, d) {.name = n, .type = LX_K_URL, AT(T, f), .sdef = d}
#define K_INT(T, n, f, d, lo, hi) {.name = n, .type = LX_K_INT, AT(T, f), .def = d, .min = lo, .max = hi}
#define K_LONG(T, n, f, d, lo, hi, fl) \
    {.name = n, .type = LX_K_LONG, AT(T, f), .def = d, .min = lo, .max = hi, .flags = fl}
#define K_NUM(T, n, f, d, lo, hi, fl) \
    {.name = n, .type = LX_K_NUM, AT(T, f), .def = d, .min = lo, .max = hi, .flags = fl}
#define K_BOOL(T, n, f, d) {.name = n, .type = LX_K_BOOL, AT(T, f), .def = d}
#define K_BYTES(T, n, f, d, lo, hi) {.name = n, .type = LX_K_BYTES, AT(T, f), .def = d, .min = lo, .max = hi}
#define K_ENUM(T, n, f, d, vals) {.name = n, .type = LX_K_ENUM, AT(T, f), .def = d, .names = vals}
#define K_SECRET(T, n, f) {.name = n, .type = LX_K_SECRET, AT(T, f)}
#define K_SECTION(n, tab, check) {.name = n, .type = LX_K_MAP, .sub = tab, .fn = check}
#define K_LIST(n, f, l) {.name = n, .type = LX_K_LIST, .fn = f, .list = &(l)}
#define K_RESTART .flags = LX_KF_RESTART
#define K_END {.name = NULL}
/* clang-format on */

/* host and port: the listener is bound once, at start. */
static const lx_keydef server_keys[] = {
    {.name = "host", .type = LX_K_STR, AT(lx_config, server.host), .sdef = "0.0.0.0", K_RESTART},
    {.name = "port", .type = LX_K_INT, AT(lx_config, server.port), .def = 8001, .min = 1, .max = 65535, K_RESTART},
    K_INT(lx_config, "max_connections", server.max_connections, 10000, 1, 1000000),
    K_BYTES(lx_config, "max_body_bytes", server.max_body_bytes, 16 * MIB, KIB, GIB),
    K_BYTES(lx_config, "max_header_bytes", server.max_header_bytes, 16384, 1024, MIB),
    K_BYTES(lx_config, "max_response_bytes", server.max_response_bytes, 64 * MIB, 64 * KIB, GIB),
    K_NUM(lx_config, "header_timeout", server.header_timeout_s, 10, 0, 3600, LX_KF_MIN_OPEN),
    K_NUM(lx_config, "idle_timeout", server.idle_timeout_s, 75, 0, 86400, LX_KF_MIN_OPEN),
    K_NUM(lx_config, "shutdown_timeout", server.shutdown_timeout_s, 30, 0, 3600, 0),
    K_END,
};

static const lx_keydef vllm_keys[] = {
    {.name = "url", .type = LX_K_URL, AT(lx_config, vllm.url), .sdef = "http://localhost:8000", .mark = M_VLLM_URL},
    K_NUM(lx_config, "timeout", vllm.timeout_s, 120, 0, 86400, LX_KF_MIN_OPEN),
    K_END,
};

static const lx_keydef priority_keys[] = {
    K_LONG(lx_config, "high", queue.priority_high, 1, 0, 1000, 0),
    K_LONG(lx_config, "normal", queue.priority_normal, 5, 0, 1000, 0),
    K_LONG(lx_config, "low", queue.priority_low, 10, 0, 1000, 0),
    K_END,
};

static const lx_keydef queue_keys[] = {
    K_LONG(lx_config, "max_size", queue.max_size, 100, 1, 1000000, 0),
    K_NUM(lx_config, "default_timeout", queue.default_timeout_s, 60, 0, 86400, LX_KF_MIN_OPEN),
    K_SECTION("priorities", priority_keys, lx_cfg_check_priorities),
    K_NUM(lx_config, "aging_seconds", queue.aging_s, 30, 0, 86400, LX_KF_MIN_OPEN),
    K_END,
};

static const lx_keydef rate_default_keys[] = {
    K_LONG(lx_config, "requests_per_minute", rate_limits.default_limit.requests_per_minute, 30, 0, 0, LX_KF_NO_MAX),
    K_LONG(lx_config, "tokens_per_minute", rate_limits.default_limit.tokens_per_minute, 50000, 0, 0, LX_KF_NO_MAX),
    K_END,
};

/* -1: not given, takes the default's value once the whole file is read. */
static const lx_keydef user_keys[] = {
    K_LONG(lx_user_limit, "requests_per_minute", requests_per_minute, -1, 0, 0, LX_KF_NO_MAX),
    K_LONG(lx_user_limit, "tokens_per_minute", tokens_per_minute, -1, 0, 0, LX_KF_NO_MAX),
    K_BOOL(lx_user_limit, "fallback", fallback, 1),
    K_END,
};

static const lx_keylist_desc users_list = {
    .arr_off = offsetof(lx_config, rate_limits.users),
    .count_off = offsetof(lx_config, rate_limits.n_users),
    .elem_size = sizeof(lx_user_limit),
    .name_off = offsetof(lx_user_limit, name),
    .rows = user_keys,
    .report = LX_DIFF_BY_ENTRY, /* the limits in effect: a new default also lists the users inheriting it */
};

static const char *const rate_mode_names[] = {[LX_RATE_REJECT] = "reject", [LX_RATE_WAIT] = "wait", NULL};
static const char *const rate_store_names[] = {
    [LX_RATE_STORE_MEMORY] = "memory", [LX_RATE_STORE_REDIS] = "redis", NULL};
_Static_assert(sizeof(lx_rate_mode) == sizeof(int) && sizeof(lx_rate_store) == sizeof(int), "LX_K_ENUM stores an int");

static const lx_keydef rate_keys[] = {
    K_SECTION("default", rate_default_keys, NULL),
    K_LIST("users", read_users, users_list),
    K_ENUM(lx_config, "mode", rate_limits.mode, LX_RATE_REJECT, rate_mode_names),
    K_ENUM(lx_config, "store", rate_limits.store, LX_RATE_STORE_MEMORY, rate_store_names),
    /* the limiter reconnects; rate_limits.redis, its parts, follows it */
    {.name = "redis_url",
     .type = LX_K_REDIS_URL,
     AT(lx_config, rate_limits.redis_url),
     .sdef = "redis://127.0.0.1:6379"},
    K_LONG(lx_config, "default_max_tokens", rate_limits.default_max_tokens, 2048, 1, 10000000, 0),
    K_END,
};

/* An auth.keys entry while it is read: the plain key, if given, is hashed into k and wiped. */
typedef struct {
    lx_auth_key k; /* first: the snapshot's entry, which reload compares by the rows below */
    char *plain;
} key_entry;
_Static_assert(offsetof(key_entry, k) == 0, "auth_key_keys' rows are also lx_auth_key's");

enum { AK_KEY, AK_SHA256, AK_USER };
static const lx_keydef auth_key_keys[] = {
    [AK_KEY] = {.name = "key", .type = LX_K_SECRET, AT(key_entry, plain), .flags = LX_KF_NOT_KEPT},
    [AK_SHA256] = {.name = "key_sha256", .type = LX_K_SHA256, AT(key_entry, k.key_sha256)},
    [AK_USER] = K_STR(key_entry, "user", k.user, NULL),
    /* given as key: (hashed) rather than key_sha256: */
    {.name = "plain", .type = LX_K_BOOL, AT(key_entry, k.plain), .flags = LX_KF_DERIVED},
    K_END,
};

static const lx_keylist_desc auth_keys_list = {
    .arr_off = offsetof(lx_config, auth.keys),
    .count_off = offsetof(lx_config, auth.n_keys),
    .elem_size = sizeof(lx_auth_key),
    .name_off = -1,
    .rows = auth_key_keys,
    .report = LX_DIFF_WHOLE, /* any change: "auth.keys"; secrets are compared, never shown */
};

static const lx_keydef auth_keys[] = {
    [AU_ENABLED] = K_BOOL(lx_config, "enabled", auth.enabled, 0),
    [AU_KEYS] = K_LIST("keys", read_auth_keys, auth_keys_list),
    K_END,
};

static const lx_keydef retry_keys[] = {
    K_LONG(lx_config, "max_attempts", retry.max_attempts, 3, 1, 20, 0),
    K_NUM(lx_config, "delay_seconds", retry.delay_s, 1.0, 0, 3600, 0),
    K_NUM(lx_config, "backoff_multiplier", retry.backoff_multiplier, 2.0, 1, 10, 0),
    K_NUM(lx_config, "max_delay_seconds", retry.max_delay_s, 30, 0, 3600, 0),
    K_END,
};

static const lx_keydef health_keys[] = {
    K_NUM(lx_config, "interval_seconds", health_check.interval_s, 10, 0, 3600, LX_KF_MIN_OPEN),
    K_LONG(lx_config, "failure_threshold", health_check.failure_threshold, 3, 1, 100, 0),
    K_NUM(lx_config, "cooldown_seconds", health_check.cooldown_s, 30, 0, 86400, LX_KF_MIN_OPEN),
    K_NUM(lx_config, "timeout_seconds", health_check.timeout_s, 5, 0, 600, LX_KF_MIN_OPEN),
    K_END,
};

static const lx_keydef logging_keys[] = {
    {.name = "level", .type = LX_K_LEVEL, AT(lx_config, logging.level), .def = LX_LOG_INFO},
    {.name = "format", .type = LX_K_FORMAT, AT(lx_config, logging.json), .def = 1},
    K_STR(lx_config, "file", logging.file, NULL),
    K_END,
};

/* enabled and port: the metrics listener is set up once, at start. */
static const lx_keydef metrics_keys[] = {
    [MT_ENABLED] = {.name = "enabled", .type = LX_K_BOOL, AT(lx_config, metrics.enabled), .def = 1, K_RESTART},
    [MT_PORT] =
        {.name = "port", .type = LX_K_INT, AT(lx_config, metrics.port), .def = 9090, .min = 1, .max = 65535, K_RESTART},
    [MT_PER_USER] = K_BOOL(lx_config, "per_user", metrics.per_user, 0),
    /* the bearer token GET /metrics needs (api/routes.c); reloadable */
    [MT_TOKEN] = K_SECRET(lx_config, "token", metrics.token),
    [MT_TOKEN_FILE] = K_STR(lx_config, "token_file", metrics.token_file, NULL),
    K_END,
};

static const char *const usage_store_names[] = {
    [LX_USAGE_STORE_SQLITE] = "sqlite", [LX_USAGE_STORE_POSTGRES] = "postgres", NULL};
_Static_assert(sizeof(lx_usage_store_kind) == sizeof(int), "LX_K_ENUM stores an int");

static const lx_keydef usage_keys[] = {
    /* the ledger is opened once, at start */
    [US_ENABLED] = {.name = "enabled", .type = LX_K_BOOL, AT(lx_config, usage.enabled), .def = 1, K_RESTART},
    [US_DB_PATH] =
        {.name = "db_path", .type = LX_K_STR, AT(lx_config, usage.db_path), .sdef = "lexora_usage.db", K_RESTART},
    /* the PostgreSQL store (lx_cfg_check_usage settles them together) */
    [US_STORE] = {.name = "store",
                  .type = LX_K_ENUM,
                  AT(lx_config, usage.store),
                  .def = LX_USAGE_STORE_SQLITE,
                  .names = usage_store_names,
                  K_RESTART},
    [US_POSTGRES_URL] = {.name = "postgres_url", .type = LX_K_STR, AT(lx_config, usage.postgres_url), K_RESTART},
    [US_PASSWORD_FILE] = {.name = "password_file", .type = LX_K_STR, AT(lx_config, usage.password_file), K_RESTART},
    [US_GATEWAY_ID] = {.name = "gateway_id",
                       .type = LX_K_STR,
                       AT(lx_config, usage.gateway_id),
                       .sdef = "",
                       .flags = LX_KF_RESTART | LX_KF_EMPTY_OK},
    K_END,
};

static const lx_keydef variant_keys[] = {
    {.name = "weight", .type = LX_K_NUM, AT(lx_variant, weight), .flags = LX_KF_DERIVED},
    K_END,
};

static const lx_keylist_desc variants_list = {
    .arr_off = offsetof(lx_experiment, variants),
    .count_off = offsetof(lx_experiment, n_variants),
    .elem_size = sizeof(lx_variant),
    .name_off = offsetof(lx_variant, name),
    .rows = variant_keys,
    .report = LX_DIFF_WHOLE, /* "experiments.NAME.variants" */
    .ordered = true,         /* the order lays out the shares, so it decides who gets which variant */
};

static const char *const sticky_names[] = {[LX_STICKY_USER] = "user", [LX_STICKY_REQUEST] = "request", NULL};
const char *const lx_exp_metric_names[] = {
    [LX_METRIC_FEEDBACK] = "feedback", [LX_METRIC_LATENCY] = "latency", [LX_METRIC_ERRORS] = "errors", NULL};
const char *const lx_exp_mode_names[] = {[LX_EXP_STATIC] = "static", [LX_EXP_ADAPTIVE] = "adaptive", NULL};
_Static_assert(sizeof(lx_sticky) == sizeof(int) && sizeof(lx_exp_metric) == sizeof(int) &&
                   sizeof(lx_exp_mode) == sizeof(int),
               "LX_K_ENUM stores an int");

static const lx_keydef experiment_keys[] = {
    K_STR(lx_experiment, "model", model, NULL),
    K_LIST("variants", read_variants, variants_list),
    K_ENUM(lx_experiment, "sticky", sticky, LX_STICKY_USER, sticky_names),
    K_ENUM(lx_experiment, "metric", metric, LX_METRIC_FEEDBACK, lx_exp_metric_names),
    K_ENUM(lx_experiment, "mode", mode, LX_EXP_STATIC, lx_exp_mode_names),
    K_NUM(lx_experiment, "min_weight", min_weight, 5, 0, 50, 0),
    K_BOOL(lx_experiment, "enabled", enabled, 1),
    K_END,
};

static const lx_keylist_desc experiments_list = {
    .arr_off = offsetof(lx_config, experiments),
    .count_off = offsetof(lx_config, n_experiments),
    .elem_size = sizeof(lx_experiment),
    .name_off = offsetof(lx_experiment, name),
    .rows = experiment_keys,
    .report = LX_DIFF_BY_FIELD, /* "experiments.NAME.variants" */
};

static const lx_keydef admin_keys[] = {
    [AD_TOKEN] = K_SECRET(lx_config, "token", admin.token),
    [AD_TOKEN_FILE] = K_STR(lx_config, "token_file", admin.token_file, NULL),
    K_END,
};

enum { MD_NAME };
static const lx_keydef model_keys[] = {
    [MD_NAME] = K_STR(lx_model_conf, "name", name, NULL),
    K_STR(lx_model_conf, "upstream_name", upstream_name, NULL),
    K_STR(lx_model_conf, "path", path, NULL),
    K_NUM(lx_model_conf, "gpu_memory_utilization", gpu_memory_utilization, 0, 0, 1, LX_KF_MIN_OPEN),
    K_STR(lx_model_conf, "lora_path", lora_path, NULL),
    K_END,
};

static const lx_keydef load_keys[] = {
    K_BOOL(lx_backend_conf, "on_demand", load.on_demand, 1),
    K_NUM(lx_backend_conf, "idle_unload_seconds", load.idle_unload_s, 0, 0, 0, LX_KF_NO_MAX),
    K_INT(lx_backend_conf, "max_loaded", load.max_loaded, 0, 0, 1000),
    K_NUM(lx_backend_conf, "min_resident_seconds", load.min_resident_s, 60, 0, 0, LX_KF_NO_MAX),
    K_NUM(lx_backend_conf, "switch_after_seconds", load.switch_after_s, 5, 0, 0, LX_KF_NO_MAX),
    K_NUM(lx_backend_conf, "load_timeout_seconds", load.load_timeout_s, 300, 0, 86400, LX_KF_MIN_OPEN),
    /* the section is given */
    {.name = "enabled", .type = LX_K_BOOL, AT(lx_backend_conf, load.enabled), .flags = LX_KF_DERIVED},
    K_END,
};

static const lx_keylist_desc models_list = {
    .arr_off = offsetof(lx_backend_conf, models),
    .count_off = offsetof(lx_backend_conf, n_models),
    .elem_size = sizeof(lx_model_conf),
    .name_off = -1,
    .rows = model_keys,
    .report = LX_DIFF_WHOLE, /* "backends.NAME.models" */
};

/* backends.NAME.gpus: a list of GPU indexes, each entry an int (compared whole by reload). */
static const lx_keydef gpu_keys[] = {
    {.name = "index", .type = LX_K_INT, .off = 0, .flags = LX_KF_DERIVED},
    K_END,
};

static const lx_keylist_desc gpus_list = {
    .arr_off = offsetof(lx_backend_conf, gpus),
    .count_off = offsetof(lx_backend_conf, n_gpus),
    .elem_size = sizeof(int),
    .name_off = -1,
    .rows = gpu_keys,
    .report = LX_DIFF_WHOLE, /* "backends.NAME.gpus" */
};

const lx_keydef lx_cfg_backend_keys[] = {
    [BK_TYPE] = {.name = "type", .type = LX_K_KIND, AT(lx_backend_conf, kind)},
    [BK_ENABLED] = K_BOOL(lx_backend_conf, "enabled", enabled, 1),
    [BK_URL] = K_URL(lx_backend_conf, "url", url, NULL),
    [BK_TIMEOUT] = K_NUM(lx_backend_conf, "timeout", timeout_s, 0, 0, 86400, LX_KF_MIN_OPEN),
    [BK_MODELS] = K_LIST("models", read_models, models_list),
    /* models: auto */
    {.name = "models_auto", .type = LX_K_BOOL, AT(lx_backend_conf, models_auto), .flags = LX_KF_DERIVED},
    K_INT(lx_backend_conf, "weight", weight, 1, 1, 1000),
    K_INT(lx_backend_conf, "max_concurrency", max_concurrency, 32, 1, 100000),
    K_BOOL(lx_backend_conf, "adaptive", adaptive, 0),
    K_NUM(lx_backend_conf, "kv_cache_threshold", kv_cache_threshold, 0.95, 0, 1, LX_KF_MIN_OPEN),
    K_BOOL(lx_backend_conf, "forward_priority", forward_priority, 0),
    K_INT(lx_backend_conf, "priority", priority, 0, 0, 1000),
    K_SECRET(lx_backend_conf, "api_key", api_key),
    K_STR(lx_backend_conf, "api_key_file", api_key_file, NULL),
    K_STR(lx_backend_conf, "api_key_env", api_key_env, NULL),
    K_LONG(lx_backend_conf, "default_max_tokens", default_max_tokens, 4096, 1, 1000000000, 0),
    K_STR(lx_backend_conf, "ca_file", ca_file, NULL),
    K_BOOL(lx_backend_conf, "tls_verify", tls_verify, 1),
    K_LIST("gpus", read_gpus, gpus_list),
    K_BOOL(lx_backend_conf, "sleep_mode", sleep_mode, 0),
    K_SECTION("load", load_keys, lx_cfg_check_load),
    K_END,
};
static const lx_keylist_desc backends_list = {
    .arr_off = offsetof(lx_config, backends),
    .count_off = offsetof(lx_config, n_backends),
    .elem_size = sizeof(lx_backend_conf),
    .name_off = offsetof(lx_backend_conf, name),
    .rows = lx_cfg_backend_keys,
    .report = LX_DIFF_BY_FIELD,
    .ordered = true, /* config order: the candidates' order, and /v1/models' */
};

static const lx_keydef alias_keys[] = {
    {.name = "targets", .type = LX_K_STR, AT(lx_alias, targets_text), .flags = LX_KF_DERIVED},
    K_END,
};

static const lx_keylist_desc aliases_list = {
    .arr_off = offsetof(lx_config, routing.aliases),
    .count_off = offsetof(lx_config, routing.n_aliases),
    .elem_size = sizeof(lx_alias),
    .name_off = offsetof(lx_alias, name),
    .rows = alias_keys,
    .report = LX_DIFF_BY_ENTRY, /* "routing.aliases.NAME" */
};

static const lx_keylist_desc fallbacks_list = {
    .arr_off = offsetof(lx_config, routing.fallbacks),
    .count_off = offsetof(lx_config, routing.n_fallbacks),
    .elem_size = sizeof(lx_fallback),
    .name_off = offsetof(lx_fallback, name),
    .rows = alias_keys,
    .report = LX_DIFF_BY_ENTRY, /* "routing.fallbacks.NAME" */
};

static const char *const balance_names[] = {[LX_BALANCE_LEAST_LOADED] = "least_loaded",
                                            [LX_BALANCE_ROUND_ROBIN] = "round_robin",
                                            [LX_BALANCE_WEIGHTED] = "weighted",
                                            [LX_BALANCE_PEAK_EWMA] = "peak_ewma",
                                            NULL};
static const char *const affinity_names[] = {
    [LX_AFFINITY_NONE] = "none", [LX_AFFINITY_USER] = "user", [LX_AFFINITY_PREFIX] = "prefix", NULL};
_Static_assert(sizeof(lx_balance_kind) == sizeof(int) && sizeof(lx_affinity) == sizeof(int), "LX_K_ENUM stores an int");

static const lx_keydef auto_route_keys[] = {
    {.name = "target", .type = LX_K_STR, AT(lx_auto_route, target), .flags = LX_KF_DERIVED},
    K_END,
};

static const lx_keylist_desc auto_routes_list = {
    .arr_off = offsetof(lx_config, routing.automatic.routes),
    .count_off = offsetof(lx_config, routing.automatic.n_routes),
    .elem_size = sizeof(lx_auto_route),
    .name_off = offsetof(lx_auto_route, name),
    .rows = auto_route_keys,
    .report = LX_DIFF_BY_ENTRY, /* "routing.auto.routes.CLASS" */
};

/* A keyword is the char * element itself. */
static const lx_keydef keyword_keys[] = {
    {.name = "keyword", .type = LX_K_STR, .off = 0, .flags = LX_KF_DERIVED},
    K_END,
};

static const lx_keylist_desc keywords_list = {
    .arr_off = offsetof(lx_auto_rule, keywords),
    .count_off = offsetof(lx_auto_rule, n_keywords),
    .elem_size = sizeof(char *),
    .name_off = -1,
    .rows = keyword_keys,
    .report = LX_DIFF_WHOLE,
};

enum { AR_CLASS, AR_ROUTE, AR_KEYWORDS };
static const lx_keydef auto_rule_keys[] = {
    [AR_CLASS] = K_STR(lx_auto_rule, "class", class_name, NULL),
    [AR_ROUTE] = K_STR(lx_auto_rule, "route", route, NULL),
    [AR_KEYWORDS] = K_LIST("keywords", read_keywords, keywords_list),
    K_END,
};

static const lx_keylist_desc auto_rules_list = {
    .arr_off = offsetof(lx_config, routing.automatic.rules),
    .count_off = offsetof(lx_config, routing.automatic.n_rules),
    .elem_size = sizeof(lx_auto_rule),
    .name_off = -1,
    .rows = auto_rule_keys,
    .report = LX_DIFF_WHOLE, /* "routing.auto.rules": their order decides */
};

static const lx_keydef auto_keys[] = {
    [RA_NAME] = K_STR(lx_config, "name", routing.automatic.name, "auto"),
    [RA_ROUTES] = K_LIST("routes", read_auto_routes, auto_routes_list),
    [RA_DEFAULT] = K_STR(lx_config, "default", routing.automatic.default_route, NULL),
    [RA_MIN_CONFIDENCE] = K_NUM(lx_config, "min_confidence", routing.automatic.min_confidence, 0.6, 0, 1, 0),
    [RA_MODEL_FILE] = {.name = "model_file",
                       .type = LX_K_STR,
                       AT(lx_config, routing.automatic.model_file),
                       .sdef = "",
                       .flags = LX_KF_EMPTY_OK},
    [RA_RULES] = K_LIST("rules", read_auto_rules, auto_rules_list),
    /* the section is given */
    {.name = "enabled", .type = LX_K_BOOL, AT(lx_config, routing.automatic.enabled), .flags = LX_KF_DERIVED},
    /* the model file's content (its digest): a reload notices a file replaced under the same name */
    {.name = "model", .type = LX_K_STR, AT(lx_config, routing.automatic.model_digest), .flags = LX_KF_DERIVED},
    K_END,
};

static const lx_keydef routing_keys[] = {
    K_LIST("aliases", read_aliases, aliases_list),
    K_LIST("fallbacks", read_fallbacks, fallbacks_list),
    K_NUM(lx_config, "fallback_after_queue_seconds", routing.fallback_after_queue_s, 0, 0, 0, LX_KF_NO_MAX),
    K_ENUM(lx_config, "balance", routing.balance, LX_BALANCE_LEAST_LOADED, balance_names),
    K_ENUM(lx_config, "affinity", routing.affinity, LX_AFFINITY_NONE, affinity_names),
    K_SECTION("auto", auto_keys, lx_cfg_check_auto),
    K_END,
};

const lx_keydef lx_config_keys[] = {
    K_SECTION("server", server_keys, NULL),
    K_SECTION("vllm", vllm_keys, NULL),
    {.name = "default_model", .type = LX_K_STR, AT(lx_config, default_model), .mark = M_DEFAULT_MODEL},
    {.name = "backends", .type = LX_K_LIST, .fn = read_backends, .list = &backends_list, .mark = M_BACKENDS},
    K_SECTION("routing", routing_keys, NULL),
    K_LIST("experiments", read_experiments, experiments_list),
    K_SECTION("queue", queue_keys, NULL),
    K_SECTION("rate_limits", rate_keys, NULL),
    K_SECTION("retry", retry_keys, NULL),
    K_SECTION("logging", logging_keys, NULL),
    K_SECTION("metrics", metrics_keys, lx_cfg_check_metrics),
    K_SECTION("auth", auth_keys, lx_cfg_check_auth),
    K_SECTION("health_check", health_keys, NULL),
    K_SECTION("usage", usage_keys, lx_cfg_check_usage),
    K_SECTION("admin", admin_keys, lx_cfg_check_admin),
    K_END,
};
_Static_assert(LX_ARRAY_LEN(lx_config_keys) <= MAX_KEYS && LX_ARRAY_LEN(server_keys) <= MAX_KEYS &&
                   LX_ARRAY_LEN(lx_cfg_backend_keys) <= MAX_KEYS && LX_ARRAY_LEN(rate_keys) <= MAX_KEYS,
               "raise MAX_KEYS");

/* ---- errors ---- */

static void errv(lx_cfg_parser *p, int line, const char *path, const char *fmt, va_list ap)
{
    if (p->n_errs == MAX_ERRORS) {
        p->dropped++;
        return;
    }
    char msg[MSG_LEN];
    int n = path ? snprintf(msg, sizeof msg, "%s: ", *path ? path : "top level") : 0;
    if (n < 0 || (size_t)n >= sizeof msg) n = 0;
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap); /* truncates an absurdly long value */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?'; /* one error, one line */
    if (p->errs == NULL) p->errs = lx_xcalloc(MAX_ERRORS, sizeof *p->errs);
    p->errs[p->n_errs] = (lx_cfg_error){line, p->n_errs, lx_xstrdup(msg)};
    p->n_errs++;
}

void lx_cfg_err(lx_cfg_parser *p, int line, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errv(p, line, path, fmt, ap);
    va_end(ap);
}

static size_t n_problems(const lx_cfg_parser *p) { return p->n_errs + p->dropped; }

static int by_line(const void *a, const void *b)
{
    const lx_cfg_error *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void flush_errors(lx_cfg_parser *p, lx_buf *out)
{
    qsort(p->errs, p->n_errs, sizeof *p->errs, by_line);
    for (size_t i = 0; i < p->n_errs; i++) {
        if (out && p->errs[i].line > 0)
            lx_buf_printf(out, "%s:%d: %s\n", p->name, p->errs[i].line, p->errs[i].msg);
        else if (out)
            lx_buf_printf(out, "%s: %s\n", p->name, p->errs[i].msg);
        free(p->errs[i].msg);
    }
    if (out && p->dropped) lx_buf_printf(out, "%s: ... and %zu more errors\n", p->name, p->dropped);
    free(p->errs);
    p->errs = NULL;
}

/* ---- YAML nodes ---- */

static int node_line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static bool is_plain(const yaml_node_t *n) { return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || !is_plain(n)) return false;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* A usable scalar: not null, and no NUL byte inside (the value is handed on as a C string). */
static bool is_text(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && !is_null(n) && strlen(scalar(n)) == n->data.scalar.length;
}

/* Describes a node for "got ...": a mapping, a list, nothing, or its quoted text. */
static void describe(lx_buf *b, const yaml_node_t *n, bool hint_quotes)
{
    if (n->type == YAML_MAPPING_NODE)
        lx_buf_append_str(b, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE)
        lx_buf_append_str(b, "a list");
    else if (is_null(n))
        lx_buf_append_str(b, "nothing");
    else {
        size_t len = n->data.scalar.length;
        lx_buf_append_str(b, "\"");
        lx_buf_json_escape(b, scalar(n), LX_MIN(len, SHOW_LEN));
        lx_buf_append_str(b, len > SHOW_LEN ? "...\"" : "\"");
        if (hint_quotes && !is_plain(n))
            lx_buf_append_str(b, " (quoted, so a string: write numbers and booleans without quotes)");
    }
}

void lx_cfg_join(char *out, const char *parent, const char *key)
{
    if (*parent)
        snprintf(out, PATH_LEN, "%s.%s", parent, key);
    else
        snprintf(out, PATH_LEN, "%s", key);
}

static void err_want(lx_cfg_parser *p, int line, const char *path, const lx_keydef *row, const yaml_node_t *v)
{
    lx_buf b;
    lx_buf_init(&b, 1024);
    lx_buf_append_str(&b, "must be ");
    lx_cfg_expectation(&b, row);
    lx_buf_append_str(&b, ", got ");
    bool numeric = row->type == LX_K_INT || row->type == LX_K_LONG || row->type == LX_K_NUM || row->type == LX_K_BOOL;
    if ((row->type == LX_K_SECRET || row->type == LX_K_SHA256) && v->type == YAML_SCALAR_NODE && !is_null(v))
        lx_buf_printf(&b, "%zu characters (not shown)", v->data.scalar.length);
    else if (row->type == LX_K_REDIS_URL && v->type == YAML_SCALAR_NODE && strchr(scalar(v), '@'))
        lx_buf_append_str(&b, "a URL with a user or password part (not supported; not shown)");
    else
        describe(&b, v, numeric);
    lx_cfg_err(p, line, path, "%s", b.p);
    lx_buf_free(&b);
}

static void err_shape(lx_cfg_parser *p, int line, const char *path, const char *want, const yaml_node_t *v)
{
    lx_buf b;
    lx_buf_init(&b, 1024);
    describe(&b, v, false);
    lx_cfg_err(p, line, path, "must be %s, got %s", want, b.p);
    lx_buf_free(&b);
}

/* ---- the walk ---- */

void lx_cfg_set_defaults(const lx_keydef *tab, void *base)
{
    for (const lx_keydef *row = tab; row->name; row++) {
        void *dst = (char *)base + row->off;
        switch (row->type) {
        case LX_K_STR:
        case LX_K_URL:
        case LX_K_SECRET:
        case LX_K_REDIS_URL: lx_cfg_set_str(dst, row->sdef); break;
        case LX_K_INT:
        case LX_K_LEVEL:
        case LX_K_ENUM: *(int *)dst = (int)row->def; break;
        case LX_K_LONG: *(long *)dst = (long)row->def; break;
        case LX_K_NUM: *(double *)dst = row->def; break;
        case LX_K_BOOL:
        case LX_K_FORMAT: *(bool *)dst = row->def != 0; break;
        case LX_K_BYTES: *(size_t *)dst = (size_t)row->def; break;
        case LX_K_KIND: *(lx_backend_kind *)dst = LX_BACKEND_KIND_NONE; break; /* "not given" */
        case LX_K_SHA256: memset(dst, 0, LX_SHA256_LEN); break;
        case LX_K_MAP: lx_cfg_set_defaults(row->sub, base); break;
        case LX_K_LIST: break;
        }
    }
}

static void unknown_key(lx_cfg_parser *p, int line, const char *path, const lx_keydef *tab)
{
    lx_buf b;
    lx_buf_init(&b, 1024);
    for (const lx_keydef *row = tab; row->name; row++)
        if (!(row->flags & LX_KF_DERIVED)) lx_buf_printf(&b, "%s%s", b.len ? ", " : "", row->name);
    lx_cfg_err(p, line, path, "unknown key (valid keys: %s)", b.p);
    lx_buf_free(&b);
}

/* The key of a mapping pair as a name, or NULL (reported) when it is not a plain name. */
static const char *key_name(lx_cfg_parser *p, const yaml_node_t *k, const char *path)
{
    if (is_text(k) && *scalar(k)) return scalar(k);
    lx_buf b;
    lx_buf_init(&b, 1024);
    describe(&b, k, false);
    lx_cfg_err(p, node_line(k), path, "every key must be a non-empty name, found %s as a key", b.p);
    lx_buf_free(&b);
    return NULL;
}

static void apply(lx_cfg_parser *p, const lx_keydef *row, yaml_node_t *v, int line, const char *path, void *base);

/*
 * Matches a mapping against a table. A null value (a section with nothing under it) reads as empty.
 * lines (MAX_KEYS entries, may be NULL) receives, per row, the line where the key was given, or 0.
 */
static void walk_map(lx_cfg_parser *p, yaml_node_t *map, int line, const char *path, const lx_keydef *tab, void *base,
                     int *lines)
{
    int seen[MAX_KEYS] = {0};
    if (map->type != YAML_MAPPING_NODE && !is_null(map)) {
        err_shape(p, line, path, "a mapping (indented key: value lines)", map);
    } else if (map->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
            yaml_node_t *v = yaml_document_get_node(p->doc, pr->value);
            const char *name = key_name(p, k, path);
            if (name == NULL) continue;
            char sub[PATH_LEN];
            lx_cfg_join(sub, path, name);
            int i = 0;
            while (tab[i].name && ((tab[i].flags & LX_KF_DERIVED) || strcmp(tab[i].name, name)))
                i++;
            int kl = node_line(k);
            if (!tab[i].name)
                unknown_key(p, kl, sub, tab);
            else if (seen[i])
                lx_cfg_err(p, kl, sub, "duplicate key (first given at line %d)", seen[i]);
            else {
                seen[i] = kl;
                apply(p, &tab[i], v, kl, sub, base);
            }
        }
    }
    if (lines) memcpy(lines, seen, sizeof seen);
}

static void apply(lx_cfg_parser *p, const lx_keydef *row, yaml_node_t *v, int line, const char *path, void *base)
{
    if (row->type == LX_K_MAP) {
        size_t before = n_problems(p);
        int lines[MAX_KEYS];
        walk_map(p, v, line, path, row->sub, base, lines);
        if (row->fn && n_problems(p) == before) {
            const int *outer = p->sec_lines;
            p->sec_lines = lines;
            row->fn(p, v, line, path, base);
            p->sec_lines = outer;
        }
    } else if (row->type == LX_K_LIST) {
        if (row->mark) p->marks[row->mark] = line;
        row->fn(p, v, line, path, base);
    } else if (is_text(v) && lx_cfg_set_scalar(row, scalar(v), is_plain(v), (char *)base + row->off)) {
        if (row->mark) p->marks[row->mark] = line;
    } else {
        if (row->mark) p->marks[row->mark] = -1;
        err_want(p, line, path, row, v);
    }
}

/* path[i] into out (PATH_LEN bytes; a longer one is cut). */
static void item_path(char *out, const char *path, size_t i)
{
    if (snprintf(out, PATH_LEN, "%s[%zu]", path, i) >= PATH_LEN) out[PATH_LEN - 1] = '\0';
}

/* Frees a string that held a secret, wiping it first. */
static void free_secret(char *s)
{
    if (s == NULL) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static bool sha256(const char *s, unsigned char out[LX_SHA256_LEN])
{
    unsigned int n = 0;
    return EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL) == 1 && n == LX_SHA256_LEN;
}

/* One auth.keys entry into c->auth.keys; false (reported) when it is not usable. */
static bool read_auth_key(lx_cfg_parser *p, yaml_node_t *item, const char *path, lx_config *c, const int *key_lines)
{
    int line = node_line(item);
    if (item->type != YAML_MAPPING_NODE) {
        err_shape(p, line, path, "a mapping {key_sha256: <64 hex digits>, user: <name>} or {key: <key>, user: <name>}",
                  item);
        return false;
    }
    key_entry e;
    int lines[MAX_KEYS];
    size_t before = n_problems(p);
    memset(&e, 0, sizeof e);
    lx_cfg_set_defaults(auth_key_keys, &e);
    walk_map(p, item, line, path, auth_key_keys, &e, lines);
    bool ok = n_problems(p) == before;
    if (ok && lines[AK_KEY] && lines[AK_SHA256]) {
        lx_cfg_err(p, lines[AK_SHA256], path, "give key or key_sha256, not both (key at line %d)", lines[AK_KEY]);
        ok = false;
    } else if (ok && !lines[AK_KEY] && !lines[AK_SHA256]) {
        lx_cfg_err(p, line, path,
                   "has no key: add \"key_sha256: <SHA-256 of the key, 64 hex digits>\" (or \"key: <the key>\")");
        ok = false;
    }
    if (ok && !lines[AK_USER]) {
        lx_cfg_err(p, line, path, "has no user: add \"user: <name>\"");
        ok = false;
    }
    if (ok && e.plain) {
        e.k.plain = true;
        if (!sha256(e.plain, e.k.key_sha256)) {
            lx_cfg_err(p, lines[AK_KEY], path, "cannot compute the key's SHA-256 (libcrypto failed)");
            ok = false;
        }
    }
    for (size_t j = 0; ok && j < c->auth.n_keys; j++) {
        if (memcmp(c->auth.keys[j].key_sha256, e.k.key_sha256, LX_SHA256_LEN) != 0) continue;
        lx_cfg_err(p, lines[e.plain ? AK_KEY : AK_SHA256], path, "duplicate key (first given at line %d)",
                   key_lines[j]);
        ok = false;
    }
    free_secret(e.plain);
    if (!ok) {
        free(e.k.user);
        return false;
    }
    c->auth.keys[c->auth.n_keys] = e.k;
    return true;
}

static void read_auth_keys(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_config *c = base;
    if (is_null(v)) return;
    if (v->type != YAML_SEQUENCE_NODE) {
        err_shape(p, line, path, "a list of keys (- key_sha256: ... / user: ... lines)", v);
        return;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) return;
    c->auth.keys = lx_xcalloc(n, sizeof *c->auth.keys);
    int *key_lines = lx_xcalloc(n, sizeof *key_lines);
    for (size_t i = 0; i < n; i++) {
        char sub[PATH_LEN];
        item_path(sub, path, i);
        yaml_node_t *item = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
        key_lines[c->auth.n_keys] = node_line(item);
        if (read_auth_key(p, item, sub, c, key_lines)) c->auth.n_keys++;
    }
    free(key_lines);
}

/* A mapping of named entries (backends, users): n entries, or false (reported) when it is not one. */
static bool named_entries(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, const char *want, size_t *n)
{
    *n = 0;
    if (is_null(v)) return true;
    if (v->type != YAML_MAPPING_NODE) {
        err_shape(p, line, path, want, v);
        return false;
    }
    *n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    return true;
}

static void read_backends(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_config *c = base;
    size_t n;
    if (!named_entries(p, v, line, path, "a mapping of backend name to its settings", &n)) {
        p->marks[M_BACKENDS] = -1;
        return;
    }
    if (n == 0) return;
    c->backends = lx_xcalloc(n, sizeof *c->backends);
    p->bk = lx_xcalloc(n, sizeof *p->bk);
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        const char *name = key_name(p, k, path);
        char sub[PATH_LEN];
        if (name == NULL) continue;
        lx_cfg_join(sub, path, name);
        int kl = node_line(k);
        size_t j = 0;
        while (j < c->n_backends && strcmp(c->backends[j].name, name))
            j++;
        if (j < c->n_backends) {
            lx_cfg_err(p, kl, sub, "duplicate key (first given at line %d)", p->bk[j].line);
            p->backends_bad = true;
            continue;
        }
        lx_backend_conf *b = &c->backends[c->n_backends];
        lx_cfg_backend_info *bi = &p->bk[c->n_backends++];
        b->name = lx_xstrdup(name);
        bi->line = kl;
        lx_cfg_set_defaults(lx_cfg_backend_keys, b);
        size_t before = n_problems(p);
        walk_map(p, yaml_document_get_node(p->doc, pr->value), kl, sub, lx_cfg_backend_keys, b, bi->lines);
        bi->bad = n_problems(p) != before;
        p->backends_bad |= bi->bad;
    }
}

static bool read_model(lx_cfg_parser *p, yaml_node_t *item, const char *path, lx_model_conf *m)
{
    int line = node_line(item);
    if (is_text(item) && *scalar(item)) {
        m->name = lx_xstrdup(scalar(item));
        return true;
    }
    if (item->type != YAML_MAPPING_NODE) {
        err_shape(p, line, path,
                  "a model name or a mapping {name, upstream_name, path, gpu_memory_utilization, lora_path}", item);
        return false;
    }
    int lines[MAX_KEYS];
    lx_cfg_set_defaults(model_keys, m);
    walk_map(p, item, line, path, model_keys, m, lines);
    if (m->name) return true;
    if (!lines[MD_NAME]) lx_cfg_err(p, line, path, "has no name: add \"name: <model>\"");
    free(m->path);
    free(m->upstream_name);
    free(m->lora_path);
    m->path = m->upstream_name = m->lora_path = NULL;
    return false;
}

static void read_models(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_backend_conf *b = base;
    if (is_null(v)) return;
    if (is_text(v) && strcmp(scalar(v), "auto") == 0) { /* quoted or not: a list is never a string */
        b->models_auto = true;
        return;
    }
    if (v->type != YAML_SEQUENCE_NODE) {
        err_shape(p, line, path, "a list of models (- name lines), or auto", v);
        return;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) return;
    b->models = lx_xcalloc(n, sizeof *b->models);
    for (size_t i = 0; i < n; i++) {
        char sub[PATH_LEN];
        item_path(sub, path, i);
        yaml_node_t *item = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
        if (read_model(p, item, sub, &b->models[b->n_models])) b->n_models++;
    }
}

#define MAX_GPU_INDEX 1023

/* backends.NAME.gpus: [0, 1] — GPU indexes, each once. */
static void read_gpus(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    static const lx_keydef index_row = {.name = "gpus", .type = LX_K_INT, .min = 0, .max = MAX_GPU_INDEX};
    lx_backend_conf *b = base;
    if (is_null(v)) return;
    if (v->type != YAML_SEQUENCE_NODE) {
        err_shape(p, line, path, "a list of GPU indexes, e.g. [0, 1]", v);
        return;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) return;
    b->gpus = lx_xcalloc(n, sizeof *b->gpus);
    for (size_t i = 0; i < n; i++) {
        char sub[PATH_LEN];
        item_path(sub, path, i);
        yaml_node_t *item = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
        int idx;
        if (!is_text(item) || !lx_cfg_set_scalar(&index_row, scalar(item), is_plain(item), &idx)) {
            err_want(p, node_line(item), sub, &index_row, item);
            continue;
        }
        size_t j = 0;
        while (j < b->n_gpus && b->gpus[j] != idx)
            j++;
        if (j < b->n_gpus) {
            lx_cfg_err(p, node_line(item), sub, "GPU %d is listed twice", idx);
            continue;
        }
        b->gpus[b->n_gpus++] = idx;
    }
}

static void read_users(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_config *c = base;
    size_t n;
    if (!named_entries(p, v, line, path, "a mapping of user name to its limits", &n) || n == 0) return;
    c->rate_limits.users = lx_xcalloc(n, sizeof *c->rate_limits.users);
    int *name_lines = lx_xcalloc(n, sizeof *name_lines);
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        const char *name = key_name(p, k, path);
        char sub[PATH_LEN];
        if (name == NULL) continue;
        lx_cfg_join(sub, path, name);
        int kl = node_line(k);
        size_t j = 0;
        while (j < c->rate_limits.n_users && strcmp(c->rate_limits.users[j].name, name))
            j++;
        if (j < c->rate_limits.n_users) {
            lx_cfg_err(p, kl, sub, "duplicate key (first given at line %d)", name_lines[j]);
            continue;
        }
        lx_user_limit *u = &c->rate_limits.users[c->rate_limits.n_users];
        name_lines[c->rate_limits.n_users++] = kl;
        u->name = lx_xstrdup(name);
        lx_cfg_set_defaults(user_keys, u);
        walk_map(p, yaml_document_get_node(p->doc, pr->value), kl, sub, user_keys, u, NULL);
    }
    free(name_lines);
}

/* experiments: a mapping of experiment name to its settings. */
static void read_experiments(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_config *c = base;
    size_t n;
    if (!named_entries(p, v, line, path, "a mapping of experiment name to its settings", &n) || n == 0) return;
    c->experiments = lx_xcalloc(n, sizeof *c->experiments);
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        const char *name = key_name(p, k, path);
        char sub[PATH_LEN];
        if (name == NULL) continue;
        lx_cfg_join(sub, path, name);
        size_t j = 0;
        while (j < c->n_experiments && strcmp(c->experiments[j].name, name))
            j++;
        if (j < c->n_experiments) {
            lx_cfg_err(p, node_line(k), sub, "duplicate key (first given at line %d)", c->experiments[j].line);
            continue;
        }
        lx_experiment *e = &c->experiments[c->n_experiments++];
        e->name = lx_xstrdup(name);
        e->line = node_line(k);
        lx_cfg_set_defaults(experiment_keys, e);
        walk_map(p, yaml_document_get_node(p->doc, pr->value), e->line, sub, experiment_keys, e, NULL);
    }
}

/* An experiment's variants: a mapping of model or alias to a weight (a number >= 0), in order. */
static void read_variants(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    static const lx_keydef weight_row = {.name = "weight", .type = LX_K_NUM, .min = 0, .max = 1e6};
    lx_experiment *e = base;
    size_t n;
    if (!named_entries(p, v, line, path, "a mapping of model or alias to its weight", &n) || n == 0) return;
    e->variants = lx_xcalloc(n, sizeof *e->variants);
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key), *w = yaml_document_get_node(p->doc, pr->value);
        const char *name = key_name(p, k, path);
        char sub[PATH_LEN];
        if (name == NULL) continue;
        lx_cfg_join(sub, path, name);
        double weight;
        if (!is_text(w) || !lx_cfg_set_scalar(&weight_row, scalar(w), is_plain(w), &weight)) {
            err_want(p, node_line(w), sub, &weight_row, w);
            continue;
        }
        size_t j = 0;
        while (j < e->n_variants && strcmp(e->variants[j].name, name))
            j++;
        if (j < e->n_variants) {
            lx_cfg_err(p, node_line(k), sub, "duplicate key");
            continue;
        }
        e->variants[e->n_variants++] = (lx_variant){lx_xstrdup(name), weight};
    }
}

/* One target of an alias: a non-empty name. */
static bool read_target(lx_cfg_parser *p, yaml_node_t *item, const char *path, lx_alias *a)
{
    if (!is_text(item) || !*scalar(item)) {
        err_shape(p, node_line(item), path, "a model name", item);
        return false;
    }
    a->targets[a->n_targets++] = lx_xstrdup(scalar(item));
    return true;
}

/* An alias's value: one name, or a list of names in order of preference. */
static void read_alias(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, lx_alias *a)
{
    if (v->type == YAML_SEQUENCE_NODE) {
        size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        a->targets = lx_xcalloc(n ? n : 1, sizeof *a->targets);
        for (size_t i = 0; i < n; i++) {
            char sub[PATH_LEN];
            item_path(sub, path, i);
            read_target(p, yaml_document_get_node(p->doc, v->data.sequence.items.start[i]), sub, a);
        }
        if (n == 0) lx_cfg_err(p, line, path, "names no model: give a model name or a list of them");
    } else {
        a->targets = lx_xcalloc(1, sizeof *a->targets);
        if (is_null(v))
            err_shape(p, line, path, "a model name or a list of them", v);
        else
            read_target(p, v, path, a);
    }
    lx_buf t;
    lx_buf_init(&t, 0);
    for (size_t i = 0; i < a->n_targets; i++)
        lx_buf_printf(&t, "%s%s", i ? ", " : "", a->targets[i]);
    a->targets_text = lx_xstrdup(t.p ? t.p : "");
    lx_buf_free(&t);
}

static const lx_alias *find_named(const lx_alias *arr, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(arr[i].name) == len && memcmp(arr[i].name, name, len) == 0) return &arr[i];
    return NULL;
}

/* A mapping of name to a name or a list of names (routing.aliases, routing.fallbacks), into *arr, with the
 * line of each entry's name in *lines. */
static void read_name_lists(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, lx_alias **arr, size_t *count,
                            int **lines, const char *what)
{
    size_t n;
    if (!named_entries(p, v, line, path, what, &n) || n == 0) return;
    *arr = lx_xcalloc(n, sizeof **arr);
    *lines = lx_xcalloc(n, sizeof **lines);
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        const char *name = key_name(p, k, path);
        char sub[PATH_LEN];
        if (name == NULL) continue;
        lx_cfg_join(sub, path, name);
        const lx_alias *dup = find_named(*arr, *count, name, strlen(name));
        if (dup) {
            lx_cfg_err(p, node_line(k), sub, "duplicate key (first given at line %d)", (*lines)[dup - *arr]);
            continue;
        }
        lx_alias *a = &(*arr)[*count];
        (*lines)[(*count)++] = node_line(k);
        a->name = lx_xstrdup(name);
        read_alias(p, yaml_document_get_node(p->doc, pr->value), node_line(k), sub, a);
    }
}

static void read_aliases(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_config *c = base;
    read_name_lists(p, v, line, path, &c->routing.aliases, &c->routing.n_aliases, &p->alias_lines,
                    "a mapping of alias to a model or a list of models");
}

static void read_fallbacks(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_config *c = base;
    read_name_lists(p, v, line, path, &c->routing.fallbacks, &c->routing.n_fallbacks, &p->fallback_lines,
                    "a mapping of model to the model or list of models it falls back to");
}

/* routing.auto.routes: a mapping of class to a model or alias. */
static void read_auto_routes(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_config *c = base;
    size_t n;
    if (!named_entries(p, v, line, path, "a mapping of class to a model or alias", &n) || n == 0) return;
    c->routing.automatic.routes = lx_xcalloc(n, sizeof *c->routing.automatic.routes);
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pr->key), *t = yaml_document_get_node(p->doc, pr->value);
        const char *name = key_name(p, k, path);
        char sub[PATH_LEN];
        if (name == NULL) continue;
        lx_cfg_join(sub, path, name);
        const char *dup = lx_config_auto_route(c, name, strlen(name));
        if (dup) {
            lx_cfg_err(p, node_line(k), sub, "duplicate key");
            continue;
        }
        if (!is_text(t) || !*scalar(t)) {
            err_shape(p, node_line(k), sub, "a model or alias name", t);
            continue;
        }
        lx_auto_route *r = &c->routing.automatic.routes[c->routing.automatic.n_routes++];
        r->name = lx_xstrdup(name);
        r->target = lx_xstrdup(scalar(t));
        r->line = node_line(k);
    }
}

/* A rule's keywords: a list of non-empty strings, lower-cased. */
static void read_keywords(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_auto_rule *r = base;
    if (v->type != YAML_SEQUENCE_NODE) {
        err_shape(p, line, path, "a list of keywords", v);
        return;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    r->keywords = lx_xcalloc(n ? n : 1, sizeof *r->keywords);
    for (size_t i = 0; i < n; i++) {
        char sub[PATH_LEN];
        item_path(sub, path, i);
        yaml_node_t *item = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
        if (!is_text(item) || !*scalar(item)) {
            err_shape(p, node_line(item), sub, "a non-empty keyword", item);
            continue;
        }
        char *kw = lx_xstrdup(scalar(item));
        for (char *ch = kw; *ch; ch++)
            if (*ch >= 'A' && *ch <= 'Z') *ch = (char)(*ch | 0x20);
        r->keywords[r->n_keywords++] = kw;
    }
    if (n == 0) lx_cfg_err(p, line, path, "is empty: list the keywords that select the class");
}

static void free_strings(char **v, size_t n);

static void free_rule(lx_auto_rule *r)
{
    free(r->class_name);
    free(r->route);
    free_strings(r->keywords, r->n_keywords);
}

static void read_auto_rule(lx_cfg_parser *p, yaml_node_t *item, const char *path, lx_config *c)
{
    int line = node_line(item), lines[MAX_KEYS];
    if (item->type != YAML_MAPPING_NODE) {
        err_shape(p, line, path, "a mapping {class, route, keywords}", item);
        return;
    }
    lx_auto_rule r = {.line = line};
    lx_cfg_set_defaults(auto_rule_keys, &r);
    size_t before = n_problems(p);
    walk_map(p, item, line, path, auto_rule_keys, &r, lines);
    if (n_problems(p) == before && !lines[AR_CLASS]) lx_cfg_err(p, line, path, "has no class: add \"class: <name>\"");
    if (n_problems(p) == before && !lines[AR_KEYWORDS])
        lx_cfg_err(p, line, path, "has no keywords: add \"keywords: [...]\"");
    if (n_problems(p) != before) {
        free_rule(&r);
        return;
    }
    c->routing.automatic.rules[c->routing.automatic.n_rules++] = r;
}

static void read_auto_rules(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_config *c = base;
    if (is_null(v)) return;
    if (v->type != YAML_SEQUENCE_NODE) {
        err_shape(p, line, path, "a list of rules (- class: ... / keywords: [...] lines)", v);
        return;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) return;
    c->routing.automatic.rules = lx_xcalloc(n, sizeof *c->routing.automatic.rules);
    for (size_t i = 0; i < n; i++) {
        char sub[PATH_LEN];
        item_path(sub, path, i);
        read_auto_rule(p, yaml_document_get_node(p->doc, v->data.sequence.items.start[i]), sub, c);
    }
}

/* ---- the snapshot ---- */

static void free_backend(lx_backend_conf *b)
{
    for (size_t j = 0; j < b->n_models; j++) {
        free(b->models[j].name);
        free(b->models[j].upstream_name);
        free(b->models[j].path);
        free(b->models[j].lora_path);
    }
    free(b->models);
    free(b->gpus);
    free(b->name);
    free(b->url);
    free_secret(b->api_key);
    free(b->api_key_file);
    free(b->api_key_env);
    free(b->ca_file);
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_auto(lx_config *c)
{
    for (size_t i = 0; i < c->routing.automatic.n_routes; i++) {
        free(c->routing.automatic.routes[i].name);
        free(c->routing.automatic.routes[i].target);
    }
    free(c->routing.automatic.routes);
    for (size_t i = 0; i < c->routing.automatic.n_rules; i++)
        free_rule(&c->routing.automatic.rules[i]);
    free(c->routing.automatic.rules);
    free(c->routing.automatic.name);
    free(c->routing.automatic.default_route);
    free(c->routing.automatic.model_file);
    free(c->routing.automatic.model_digest);
    lx_cls_free(c->routing.automatic.model);
}

static void free_experiments(lx_config *c)
{
    for (size_t i = 0; i < c->n_experiments; i++) {
        lx_experiment *e = &c->experiments[i];
        free(e->name);
        free(e->model);
        for (size_t k = 0; k < e->n_variants; k++)
            free(e->variants[k].name);
        free(e->variants);
    }
    free(c->experiments);
}

static void free_name_lists(lx_alias *arr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lx_alias *a = &arr[i];
        free(a->name);
        free_strings(a->targets, a->n_targets);
        free_strings(a->models, a->n_models);
        free(a->targets_text);
    }
    free(arr);
}

static void config_free(lx_config *c)
{
    for (size_t i = 0; i < c->n_backends; i++)
        free_backend(&c->backends[i]);
    free(c->backends);
    free_name_lists(c->routing.aliases, c->routing.n_aliases);
    free_name_lists(c->routing.fallbacks, c->routing.n_fallbacks);
    free_experiments(c);
    free_auto(c);
    for (size_t i = 0; i < c->rate_limits.n_users; i++)
        free(c->rate_limits.users[i].name);
    free(c->rate_limits.users);
    free(c->rate_limits.redis_url);
    free(c->rate_limits.redis.host);
    free(c->rate_limits.redis.socket_path);
    for (size_t i = 0; i < c->auth.n_keys; i++)
        free(c->auth.keys[i].user);
    free(c->auth.keys);
    free(c->logging.file);
    free(c->usage.db_path);
    free(c->usage.postgres_url);
    free(c->usage.password_file);
    free(c->usage.gateway_id);
    free_secret(c->admin.token);
    free(c->admin.token_file);
    free_secret(c->metrics.token);
    free(c->metrics.token_file);
    free(c->server.host);
    free(c->vllm.url);
    free(c->default_model);
    free(c->path);
    free(c);
}

lx_config *lx_config_ref(lx_config *c)
{
    c->refs++;
    return c;
}

void lx_config_unref(lx_config *c)
{
    if (c && --c->refs == 0) config_free(c);
}

bool lx_backend_conf_serves(const lx_backend_conf *b, const char *model, size_t len)
{
    for (size_t j = 0; j < b->n_models; j++)
        if (strlen(b->models[j].name) == len && memcmp(b->models[j].name, model, len) == 0) return true;
    return false;
}

const char *lx_backend_conf_upstream(const lx_backend_conf *b, const char *model)
{
    for (size_t j = 0; j < b->n_models; j++)
        if (strcmp(b->models[j].name, model) == 0)
            return b->models[j].upstream_name ? b->models[j].upstream_name : model;
    return model;
}

const char *lx_backend_conf_lora(const lx_backend_conf *b, const char *model)
{
    for (size_t j = 0; j < b->n_models; j++)
        if (strcmp(b->models[j].name, model) == 0) return b->models[j].lora_path;
    return NULL;
}

const lx_backend_conf *lx_config_backend(const lx_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (c->backends[i].enabled && strcmp(c->backends[i].name, name) == 0) return &c->backends[i];
    return NULL;
}

const lx_alias *lx_config_alias(const lx_config *c, const char *name, size_t len)
{
    return find_named(c->routing.aliases, c->routing.n_aliases, name, len);
}

const lx_experiment *lx_config_experiment_for(const lx_config *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n_experiments; i++) {
        const lx_experiment *e = &c->experiments[i];
        if (e->enabled && e->model && strlen(e->model) == len && memcmp(e->model, name, len) == 0) return e;
    }
    return NULL;
}

const lx_fallback *lx_config_fallback(const lx_config *c, const char *name, size_t len)
{
    return find_named(c->routing.fallbacks, c->routing.n_fallbacks, name, len);
}

bool lx_config_user_fallback(const lx_config *c, const char *user)
{
    for (size_t i = 0; i < c->rate_limits.n_users; i++)
        if (strcmp(c->rate_limits.users[i].name, user) == 0) return c->rate_limits.users[i].fallback;
    return true;
}

const char *lx_config_auto_route(const lx_config *c, const char *class_name, size_t len)
{
    for (size_t i = 0; i < c->routing.automatic.n_routes; i++) {
        const lx_auto_route *r = &c->routing.automatic.routes[i];
        if (strlen(r->name) == len && memcmp(r->name, class_name, len) == 0) return r->target;
    }
    return NULL;
}

const lx_backend_conf *lx_config_backend_for(const lx_config *c, const char *model, size_t len)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (c->backends[i].enabled && lx_backend_conf_serves(&c->backends[i], model, len)) return &c->backends[i];
    return NULL;
}

static void syntax_error(lx_cfg_parser *p, const yaml_parser_t *yp)
{
    const char *problem = yp->problem ? yp->problem : "unknown problem";
    if (yp->context)
        lx_cfg_err(p, (int)yp->problem_mark.line + 1, NULL, "YAML syntax error: %s (%s at line %d)", problem,
                   yp->context, (int)yp->context_mark.line + 1);
    else
        lx_cfg_err(p, (int)yp->problem_mark.line + 1, NULL, "YAML syntax error: %s", problem);
}

/* A second document in the stream would be silently ignored; refuse it instead. */
static void check_single_document(lx_cfg_parser *p, yaml_parser_t *yp)
{
    yaml_document_t more;
    if (!yaml_parser_load(yp, &more)) {
        syntax_error(p, yp);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&more);
    if (root) lx_cfg_err(p, node_line(root), NULL, "a second YAML document (after ---): put everything in one");
    yaml_document_delete(&more);
}

static void read_document(lx_cfg_parser *p, yaml_parser_t *yp)
{
    yaml_document_t doc;
    if (!yaml_parser_load(yp, &doc)) {
        syntax_error(p, yp);
        return;
    }
    p->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) walk_map(p, root, node_line(root), "", lx_config_keys, p->cfg, NULL);
    check_single_document(p, yp);
    p->doc = NULL;
    if (!root || root->type == YAML_MAPPING_NODE || is_null(root)) lx_cfg_resolve(p);
    yaml_document_delete(&doc);
}

lx_config *lx_config_parse(const char *name, const char *yaml, size_t len, lx_buf *errors)
{
    lx_cfg_parser p = {.name = name};
    p.cfg = lx_xcalloc(1, sizeof *p.cfg);
    p.cfg->refs = 1;
    p.cfg->path = lx_xstrdup(name);
    lx_cfg_set_defaults(lx_config_keys, p.cfg);
    yaml_parser_t yp;
    if (!yaml_parser_initialize(&yp)) {
        lx_cfg_err(&p, 0, NULL, "cannot start the YAML parser (out of memory)");
    } else {
        yaml_parser_set_input_string(&yp, (const unsigned char *)yaml, len);
        read_document(&p, &yp);
        yaml_parser_delete(&yp);
    }
    free(p.bk);
    free(p.alias_lines);
    free(p.fallback_lines);
    if (n_problems(&p) == 0) return p.cfg;
    flush_errors(&p, errors);
    config_free(p.cfg);
    return NULL;
}

static int read_file(const char *path, lx_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    int rc = 0;
    for (;;) {
        char *w = lx_buf_reserve(out, 65536);
        if (w == NULL) {
            errno = EFBIG;
            rc = -1;
            break;
        }
        size_t got = fread(w, 1, 65536, f);
        out->len += got;
        out->p[out->len] = '\0';
        if (got < 65536) {
            rc = ferror(f) ? -1 : 0;
            break;
        }
    }
    int saved = errno;
    fclose(f);
    errno = saved;
    return rc;
}

lx_config *lx_config_load(const char *path, lx_buf *errors)
{
    lx_buf text;
    lx_buf_init(&text, MAX_FILE_BYTES + 65536);
    if (read_file(path, &text) != 0) {
        if (errors) lx_buf_printf(errors, "%s: cannot read: %s\n", path, strerror(errno));
        lx_buf_free(&text);
        return NULL;
    }
    lx_config *c = lx_config_parse(path, text.p ? text.p : "", text.len, errors);
    lx_buf_free(&text);
    return c;
}
