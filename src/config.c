/*
 * Configuration loader: lexora_config.yaml (libyaml's document API) → an lx_config snapshot. See config.h.
 *
 * Every key is one row of a table: name, type, default, bounds and where it lands (an offset into the
 * struct the table fills), as in nginx's command tables. Loading is three steps:
 *  1. defaults: every row's default is written into a fresh snapshot;
 *  2. walk: each YAML mapping is matched against its table in file order; a bad value is reported and
 *     the default stays;
 *  3. resolve: what depends on several keys (backends, default_model, per-user limits) is settled.
 * Invariants:
 *  - every problem is one error (a line, "key.path: message"); none stops the load; errors are sorted
 *    by line before they reach the caller, so they read in file order;
 *  - a snapshot with any error is freed, never returned;
 *  - the walk descends only where the schema does, so aliases (even cyclic ones) cannot make it recurse
 *    without bound;
 *  - a quoted scalar is a string only: `port: "8001"` is an error, not 8001;
 *  - marks[] records, for the few keys other keys depend on, the line where each was given: > 0 when
 *    given and valid, -1 when given but invalid, 0 when absent;
 *  - a secret (T_SECRET) or a digest (T_SHA256) is never quoted back in a message, only its length;
 *    a plain auth key is hashed at once and its text wiped.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "backends/kind.h"
#include "utils/common.h"
#include "utils/log.h"

#define KIB 1024.0
#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)
#define MAX_KEYS 16                /* rows in the largest table */
#define MAX_ERRORS 100             /* errors kept; the rest are only counted */
#define MAX_FILE_BYTES (16u << 20) /* a config file larger than this is refused */
#define PATH_LEN 256
#define SHOW_LEN 60 /* bytes of a bad value quoted back in a message */
#define MSG_LEN 1024
#define MAX_TOKEN_FILE 4096 /* admin.token_file larger than this is refused */

typedef struct parser parser;
typedef struct keydef keydef;
/* Reads a T_CUSTOM value, or checks a T_MAP section once all of it is read (lines of its keys: p->sec_lines). */
typedef void (*key_fn)(parser *p, yaml_node_t *v, int line, const char *path, void *base);

/*
 * T_ENUM: one of row->names (any case), stored as its index in an enum field;
 * T_SECRET: a non-empty string of visible ASCII (fit for an HTTP header), never quoted back;
 * T_SHA256: 64 hex digits into unsigned char[LX_SHA256_LEN];
 * T_REDIS_URL: redis://host[:port][/db] or unix:///path, into a char * (parsed apart in resolve).
 */
typedef enum {
    T_STR,
    T_URL,
    T_INT,
    T_LONG,
    T_NUM,
    T_BOOL,
    T_BYTES,
    T_LEVEL,
    T_FORMAT,
    T_KIND,
    T_ENUM,
    T_SECRET,
    T_SHA256,
    T_REDIS_URL,
    T_MAP,
    T_CUSTOM
} ktype;

enum { F_MIN_OPEN = 1, F_NO_MAX = 2 }; /* "> min" instead of ">= min"; no upper bound */

struct keydef {
    const char *name; /* NULL ends a table */
    ktype type;
    size_t off; /* where the value lands, from the base of the struct the table fills */
    double def;
    const char *sdef;
    double min, max;
    unsigned flags;
    const keydef *sub;        /* T_MAP: the section's table (same base) */
    const char *const *names; /* T_ENUM: the values, NULL-terminated, in the enum's order */
    key_fn fn;
    int mark; /* nonzero: index in parser.marks */
};

enum { M_NONE, M_VLLM_URL, M_DEFAULT_MODEL, M_BACKENDS, M_COUNT };

typedef struct {
    int line;            /* of the entry's name */
    int lines[MAX_KEYS]; /* of each key given in the entry, by backend_keys row */
    bool bad;            /* an error was reported inside the entry */
} backend_info;

typedef struct {
    int line;
    size_t seq;
    char *msg;
} error_rec;

struct parser {
    const char *name;
    yaml_document_t *doc;
    lx_config *cfg;
    error_rec *errs;
    size_t n_errs, dropped;
    int marks[M_COUNT];
    backend_info *bk; /* parallel to cfg->backends */
    bool backends_bad;
    const int *sec_lines; /* while a T_MAP's check runs: the line of each of its rows' keys, or 0 */
};

static void read_backends(parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_models(parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_users(parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void check_priorities(parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void read_auth_keys(parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void check_auth(parser *p, yaml_node_t *v, int line, const char *path, void *base);
static void check_admin(parser *p, yaml_node_t *v, int line, const char *path, void *base);

/* ---- the tables ---- */

/* clang-format off */
#define AT(T, f) .off = offsetof(T, f)
#define K_STR(T, n, f, d) {.name = n, .type = T_STR, AT(T, f), .sdef = d}
#define K_URL(T, n, f, d) {.name = n, .type = T_URL, AT(T, f), .sdef = d}
#define K_INT(T, n, f, d, lo, hi) {.name = n, .type = T_INT, AT(T, f), .def = d, .min = lo, .max = hi}
#define K_LONG(T, n, f, d, lo, hi, fl) \
    {.name = n, .type = T_LONG, AT(T, f), .def = d, .min = lo, .max = hi, .flags = fl}
#define K_NUM(T, n, f, d, lo, hi, fl) \
    {.name = n, .type = T_NUM, AT(T, f), .def = d, .min = lo, .max = hi, .flags = fl}
#define K_BOOL(T, n, f, d) {.name = n, .type = T_BOOL, AT(T, f), .def = d}
#define K_BYTES(T, n, f, d, lo, hi) {.name = n, .type = T_BYTES, AT(T, f), .def = d, .min = lo, .max = hi}
#define K_ENUM(T, n, f, d, vals) {.name = n, .type = T_ENUM, AT(T, f), .def = d, .names = vals}
#define K_SECRET(T, n, f) {.name = n, .type = T_SECRET, AT(T, f)}
#define K_SECTION(n, tab, check) {.name = n, .type = T_MAP, .sub = tab, .fn = check}
#define K_CUSTOM(n, f) {.name = n, .type = T_CUSTOM, .fn = f}
#define K_END {.name = NULL}
/* clang-format on */

static const keydef server_keys[] = {
    K_STR(lx_config, "host", server.host, "0.0.0.0"),
    K_INT(lx_config, "port", server.port, 8001, 1, 65535),
    K_INT(lx_config, "max_connections", server.max_connections, 10000, 1, 1000000),
    K_BYTES(lx_config, "max_body_bytes", server.max_body_bytes, 16 * MIB, KIB, GIB),
    K_BYTES(lx_config, "max_header_bytes", server.max_header_bytes, 16384, 1024, MIB),
    K_BYTES(lx_config, "max_response_bytes", server.max_response_bytes, 64 * MIB, 64 * KIB, GIB),
    K_NUM(lx_config, "header_timeout", server.header_timeout_s, 10, 0, 3600, F_MIN_OPEN),
    K_NUM(lx_config, "idle_timeout", server.idle_timeout_s, 75, 0, 86400, F_MIN_OPEN),
    K_NUM(lx_config, "shutdown_timeout", server.shutdown_timeout_s, 30, 0, 3600, 0),
    K_END,
};

static const keydef vllm_keys[] = {
    {.name = "url", .type = T_URL, AT(lx_config, vllm.url), .sdef = "http://localhost:8000", .mark = M_VLLM_URL},
    K_NUM(lx_config, "timeout", vllm.timeout_s, 120, 0, 86400, F_MIN_OPEN),
    K_END,
};

static const keydef priority_keys[] = {
    K_LONG(lx_config, "high", queue.priority_high, 1, 0, 1000, 0),
    K_LONG(lx_config, "normal", queue.priority_normal, 5, 0, 1000, 0),
    K_LONG(lx_config, "low", queue.priority_low, 10, 0, 1000, 0),
    K_END,
};

static const keydef queue_keys[] = {
    K_LONG(lx_config, "max_size", queue.max_size, 100, 1, 1000000, 0),
    K_NUM(lx_config, "default_timeout", queue.default_timeout_s, 60, 0, 86400, F_MIN_OPEN),
    K_SECTION("priorities", priority_keys, check_priorities),
    K_NUM(lx_config, "aging_seconds", queue.aging_s, 30, 0, 86400, F_MIN_OPEN),
    K_END,
};

static const keydef rate_default_keys[] = {
    K_LONG(lx_config, "requests_per_minute", rate_limits.default_limit.requests_per_minute, 30, 0, 0, F_NO_MAX),
    K_LONG(lx_config, "tokens_per_minute", rate_limits.default_limit.tokens_per_minute, 50000, 0, 0, F_NO_MAX),
    K_END,
};

/* -1: not given, takes the default's value once the whole file is read. */
static const keydef user_keys[] = {
    K_LONG(lx_user_limit, "requests_per_minute", requests_per_minute, -1, 0, 0, F_NO_MAX),
    K_LONG(lx_user_limit, "tokens_per_minute", tokens_per_minute, -1, 0, 0, F_NO_MAX),
    K_END,
};

static const char *const rate_mode_names[] = {[LX_RATE_REJECT] = "reject", [LX_RATE_WAIT] = "wait", NULL};
static const char *const rate_store_names[] = {
    [LX_RATE_STORE_MEMORY] = "memory", [LX_RATE_STORE_REDIS] = "redis", NULL};
_Static_assert(sizeof(lx_rate_mode) == sizeof(int) && sizeof(lx_rate_store) == sizeof(int), "T_ENUM stores an int");

static const keydef rate_keys[] = {
    K_SECTION("default", rate_default_keys, NULL),
    K_CUSTOM("users", read_users),
    K_ENUM(lx_config, "mode", rate_limits.mode, LX_RATE_REJECT, rate_mode_names),
    K_ENUM(lx_config, "store", rate_limits.store, LX_RATE_STORE_MEMORY, rate_store_names),
    {.name = "redis_url", .type = T_REDIS_URL, AT(lx_config, rate_limits.redis_url), .sdef = "redis://127.0.0.1:6379"},
    K_LONG(lx_config, "default_max_tokens", rate_limits.default_max_tokens, 2048, 1, 10000000, 0),
    K_END,
};

enum { AU_ENABLED, AU_KEYS };
static const keydef auth_keys[] = {
    [AU_ENABLED] = K_BOOL(lx_config, "enabled", auth.enabled, 0),
    [AU_KEYS] = K_CUSTOM("keys", read_auth_keys),
    K_END,
};

/* An auth.keys entry while it is read: the plain key, if given, is hashed into k and wiped. */
typedef struct {
    lx_auth_key k;
    char *plain;
} key_entry;

enum { AK_KEY, AK_SHA256, AK_USER };
static const keydef auth_key_keys[] = {
    [AK_KEY] = K_SECRET(key_entry, "key", plain),
    [AK_SHA256] = {.name = "key_sha256", .type = T_SHA256, AT(key_entry, k.key_sha256)},
    [AK_USER] = K_STR(key_entry, "user", k.user, NULL),
    K_END,
};

static const keydef retry_keys[] = {
    K_LONG(lx_config, "max_attempts", retry.max_attempts, 3, 1, 20, 0),
    K_NUM(lx_config, "delay_seconds", retry.delay_s, 1.0, 0, 3600, 0),
    K_NUM(lx_config, "backoff_multiplier", retry.backoff_multiplier, 2.0, 1, 10, 0),
    K_NUM(lx_config, "max_delay_seconds", retry.max_delay_s, 30, 0, 3600, 0),
    K_END,
};

static const keydef health_keys[] = {
    K_NUM(lx_config, "interval_seconds", health_check.interval_s, 10, 0, 3600, F_MIN_OPEN),
    K_LONG(lx_config, "failure_threshold", health_check.failure_threshold, 3, 1, 100, 0),
    K_NUM(lx_config, "cooldown_seconds", health_check.cooldown_s, 30, 0, 86400, F_MIN_OPEN),
    K_NUM(lx_config, "timeout_seconds", health_check.timeout_s, 5, 0, 600, F_MIN_OPEN),
    K_END,
};

static const keydef logging_keys[] = {
    {.name = "level", .type = T_LEVEL, AT(lx_config, logging.level), .def = LX_LOG_INFO},
    {.name = "format", .type = T_FORMAT, AT(lx_config, logging.json), .def = 1},
    K_STR(lx_config, "file", logging.file, NULL),
    K_END,
};

static const keydef metrics_keys[] = {
    K_BOOL(lx_config, "enabled", metrics.enabled, 1),
    K_INT(lx_config, "port", metrics.port, 9090, 1, 65535),
    K_BOOL(lx_config, "per_user", metrics.per_user, 0),
    K_END,
};

static const keydef usage_keys[] = {
    K_BOOL(lx_config, "enabled", usage.enabled, 1),
    K_STR(lx_config, "db_path", usage.db_path, "lexora_usage.db"),
    K_END,
};

enum { AD_TOKEN, AD_TOKEN_FILE };
static const keydef admin_keys[] = {
    [AD_TOKEN] = K_SECRET(lx_config, "token", admin.token),
    [AD_TOKEN_FILE] = K_STR(lx_config, "token_file", admin.token_file, NULL),
    K_END,
};

static const keydef top_keys[] = {
    K_SECTION("server", server_keys, NULL),
    K_SECTION("vllm", vllm_keys, NULL),
    {.name = "default_model", .type = T_STR, AT(lx_config, default_model), .mark = M_DEFAULT_MODEL},
    {.name = "backends", .type = T_CUSTOM, .fn = read_backends, .mark = M_BACKENDS},
    K_SECTION("queue", queue_keys, NULL),
    K_SECTION("rate_limits", rate_keys, NULL),
    K_SECTION("retry", retry_keys, NULL),
    K_SECTION("logging", logging_keys, NULL),
    K_SECTION("metrics", metrics_keys, NULL),
    K_SECTION("auth", auth_keys, check_auth),
    K_SECTION("health_check", health_keys, NULL),
    K_SECTION("usage", usage_keys, NULL),
    K_SECTION("admin", admin_keys, check_admin),
    K_END,
};

enum { BK_TYPE, BK_ENABLED, BK_URL, BK_TIMEOUT, BK_MODELS };
static const keydef backend_keys[] = {
    [BK_TYPE] = {.name = "type", .type = T_KIND, AT(lx_backend_conf, kind)},
    [BK_ENABLED] = K_BOOL(lx_backend_conf, "enabled", enabled, 1),
    [BK_URL] = K_URL(lx_backend_conf, "url", url, NULL),
    [BK_TIMEOUT] = K_NUM(lx_backend_conf, "timeout", timeout_s, 0, 0, 86400, F_MIN_OPEN),
    [BK_MODELS] = K_CUSTOM("models", read_models),
    K_INT(lx_backend_conf, "max_concurrency", max_concurrency, 32, 1, 100000),
    K_BOOL(lx_backend_conf, "adaptive", adaptive, 0),
    K_NUM(lx_backend_conf, "kv_cache_threshold", kv_cache_threshold, 0.95, 0, 1, F_MIN_OPEN),
    K_BOOL(lx_backend_conf, "forward_priority", forward_priority, 0),
    K_INT(lx_backend_conf, "priority", priority, 0, 0, 1000),
    K_SECRET(lx_backend_conf, "api_key", api_key),
    K_END,
};
_Static_assert(LX_ARRAY_LEN(top_keys) <= MAX_KEYS && LX_ARRAY_LEN(server_keys) <= MAX_KEYS &&
                   LX_ARRAY_LEN(backend_keys) <= MAX_KEYS && LX_ARRAY_LEN(rate_keys) <= MAX_KEYS,
               "raise MAX_KEYS");

enum { MD_NAME };
static const keydef model_keys[] = {
    [MD_NAME] = K_STR(lx_model_conf, "name", name, NULL),
    K_STR(lx_model_conf, "path", path, NULL),
    K_NUM(lx_model_conf, "gpu_memory_utilization", gpu_memory_utilization, 0, 0, 1, F_MIN_OPEN),
    K_END,
};

static int kind_parse(const char *s) { return lx_kind_find(s); } /* backends/kind.h: built-in or registered */

/* ---- errors ---- */

static void errv(parser *p, int line, const char *path, const char *fmt, va_list ap)
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
    p->errs[p->n_errs] = (error_rec){line, p->n_errs, lx_xstrdup(msg)};
    p->n_errs++;
}

__attribute__((format(printf, 4, 5))) static void err(parser *p, int line, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errv(p, line, path, fmt, ap);
    va_end(ap);
}

static size_t n_problems(const parser *p) { return p->n_errs + p->dropped; }

static int by_line(const void *a, const void *b)
{
    const error_rec *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void flush_errors(parser *p, lx_buf *out)
{
    qsort(p->errs, p->n_errs, sizeof *p->errs, by_line);
    for (size_t i = 0; i < p->n_errs; i++) {
        if (out && p->errs[i].line > 0) lx_buf_printf(out, "%s:%d: %s\n", p->name, p->errs[i].line, p->errs[i].msg);
        else if (out) lx_buf_printf(out, "%s: %s\n", p->name, p->errs[i].msg);
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
    if (n->type == YAML_MAPPING_NODE) lx_buf_append_str(b, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE) lx_buf_append_str(b, "a list");
    else if (is_null(n)) lx_buf_append_str(b, "nothing");
    else {
        size_t len = n->data.scalar.length;
        lx_buf_append_str(b, "\"");
        lx_buf_json_escape(b, scalar(n), LX_MIN(len, SHOW_LEN));
        lx_buf_append_str(b, len > SHOW_LEN ? "...\"" : "\"");
        if (hint_quotes && !is_plain(n))
            lx_buf_append_str(b, " (quoted, so a string: write numbers and booleans without quotes)");
    }
}

static void join(char *out, const char *parent, const char *key)
{
    if (*parent) snprintf(out, PATH_LEN, "%s.%s", parent, key);
    else snprintf(out, PATH_LEN, "%s", key);
}

/* ---- scalar values ---- */

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? lx_xstrdup(s) : NULL;
}

static bool parse_long(const char *s, long *out)
{
    if (!(*s == '-' || *s == '+' || (*s >= '0' && *s <= '9'))) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static bool parse_num(const char *s, double *out)
{
    if (!*s || strspn(s, "0123456789+-.eE") != strlen(s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes")) *out = true;
    else if (!strcasecmp(s, "false") || !strcasecmp(s, "no")) *out = false;
    else return false;
    return true;
}

/* "1048576", "16MiB", "512 KB", "1gib": KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024. */
static bool parse_bytes(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"", 1},          {"KB", 1000},     {"MB", 1000000},  {"GB", 1000000000},
                 {"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1u << 30}};
    if (*s < '0' || *s > '9') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return false;
    while (*end == ' ') end++;
    for (size_t i = 0; i < LX_ARRAY_LEN(units); i++) {
        if (strcasecmp(end, units[i].unit) != 0) continue;
        if (v > UINT64_MAX / units[i].mult) return false;
        *out = v * units[i].mult;
        return true;
    }
    return false;
}

static bool in_range(const keydef *row, double v)
{
    if ((row->flags & F_MIN_OPEN) ? v <= row->min : v < row->min) return false;
    return (row->flags & F_NO_MAX) || v <= row->max;
}

/* URLs start with http:// or https://, have a host, no blanks; trailing slashes are dropped. */
static bool set_url(char **dst, const char *s)
{
    size_t scheme = !strncasecmp(s, "http://", 7) ? 7 : !strncasecmp(s, "https://", 8) ? 8 : 0;
    size_t n = strlen(s);
    if (!scheme) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f) return false;
    while (n > scheme && s[n - 1] == '/') n--;
    if (n == scheme || s[scheme] == '/') return false;
    free(*dst);
    *dst = lx_xstrndup(s, n);
    return true;
}

/* Visible ASCII only: no blank, no control character, nothing a header line could be split on. */
static bool is_token(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f) return false;
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool parse_sha256_hex(const char *s, unsigned char out[LX_SHA256_LEN])
{
    unsigned char d[LX_SHA256_LEN];
    if (strlen(s) != 2 * LX_SHA256_LEN) return false;
    for (size_t i = 0; i < LX_SHA256_LEN; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        d[i] = (unsigned char)(hi << 4 | lo);
    }
    memcpy(out, d, sizeof d);
    return true;
}

/* An unsigned decimal of at most 10 digits in [lo, hi], spanning exactly [s, end). */
static bool parse_uint_span(const char *s, const char *end, long lo, long hi, int *out)
{
    if (end <= s || end - s > 10) return false;
    long v = 0;
    for (const char *c = s; c < end; c++) {
        if (*c < '0' || *c > '9') return false;
        v = v * 10 + (*c - '0');
    }
    if (v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

/* The parts of a Redis URL; the strings are allocated only when the pointers are not NULL. */
typedef struct {
    char **host, **socket_path;
    int port, db;
} redis_parts;

/*
 * redis://host[:port][/db] (host a name, an IPv4 address or a bracketed IPv6 address; port 1..65535,
 * default 6379; db >= 0, default 0) or unix:///absolute/path/to/socket. No user or password part.
 */
static bool parse_redis_url(const char *s, redis_parts *r)
{
    r->port = 0;
    r->db = 0;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) return false;
    if (!strncasecmp(s, "unix://", 7)) {
        const char *path = s + 7;
        if (path[0] != '/' || path[1] == '\0') return false;
        if (r->socket_path) set_str(r->socket_path, path);
        return true;
    }
    if (strncasecmp(s, "redis://", 8) != 0) return false;
    const char *h = s + 8, *he, *rest;
    if (*h == '[') {
        he = strchr(h, ']');
        if (he == NULL || he == h + 1) return false;
        for (const char *c = h + 1; c < he; c++)
            if (hex_digit(*c) < 0 && *c != ':' && *c != '.') return false;
        h++;
        rest = he + 1;
    } else {
        he = h + strcspn(h, ":/");
        if (he == h) return false;
        for (const char *c = h; c < he; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                  *c == '.' || *c == '_'))
                return false;
        rest = he;
    }
    r->port = 6379;
    if (*rest == ':') {
        const char *pe = rest + 1 + strcspn(rest + 1, "/");
        if (!parse_uint_span(rest + 1, pe, 1, 65535, &r->port)) return false;
        rest = pe;
    }
    if (*rest == '/' && rest[1] && !parse_uint_span(rest + 1, rest + strlen(rest), 0, INT_MAX, &r->db)) return false;
    if (*rest && *rest != '/') return false;
    if (r->host) {
        free(*r->host);
        *r->host = lx_xstrndup(h, (size_t)(he - h));
    }
    return true;
}

static int enum_parse(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (!strcasecmp(s, names[i])) return i;
    return -1;
}

/* Reads a scalar into dst by the row's type; false when the value is not acceptable. */
static bool set_scalar(const keydef *row, const yaml_node_t *v, void *dst)
{
    if (!is_text(v)) return false;
    const char *s = scalar(v);
    bool plain = is_plain(v), b;
    long l;
    double d;
    uint64_t u;
    int k;
    switch (row->type) {
    case T_STR:
        if (!*s) return false;
        set_str(dst, s);
        return true;
    case T_URL: return set_url(dst, s);
    case T_INT:
        if (!plain || !parse_long(s, &l) || !in_range(row, (double)l)) return false;
        *(int *)dst = (int)l;
        return true;
    case T_LONG:
        if (!plain || !parse_long(s, &l) || !in_range(row, (double)l)) return false;
        *(long *)dst = l;
        return true;
    case T_NUM:
        if (!plain || !parse_num(s, &d) || !in_range(row, d)) return false;
        *(double *)dst = d;
        return true;
    case T_BOOL:
        if (!plain || !parse_bool(s, &b)) return false;
        *(bool *)dst = b;
        return true;
    case T_BYTES:
        if (!parse_bytes(s, &u) || !in_range(row, (double)u)) return false;
        *(size_t *)dst = (size_t)u;
        return true;
    case T_LEVEL:
        if ((k = lx_log_level_parse(s)) < 0) return false;
        *(int *)dst = k;
        return true;
    case T_FORMAT:
        if (strcasecmp(s, "json") && strcasecmp(s, "text")) return false;
        *(bool *)dst = !strcasecmp(s, "json");
        return true;
    case T_KIND:
        if ((k = kind_parse(s)) < 0) return false;
        *(lx_backend_kind *)dst = (lx_backend_kind)k;
        return true;
    case T_ENUM:
        if ((k = enum_parse(row->names, s)) < 0) return false;
        *(int *)dst = k;
        return true;
    case T_SECRET:
        if (!is_token(s)) return false;
        set_str(dst, s);
        return true;
    case T_SHA256: return parse_sha256_hex(s, dst);
    case T_REDIS_URL:
        if (!parse_redis_url(s, &(redis_parts){0})) return false;
        set_str(dst, s);
        return true;
    default: return false;
    }
}

static void fmt_bytes(char *out, size_t n, double v)
{
    if (v >= GIB && fmod(v, GIB) == 0) snprintf(out, n, "%.0fGiB", v / GIB);
    else if (v >= MIB && fmod(v, MIB) == 0) snprintf(out, n, "%.0fMiB", v / MIB);
    else if (v >= KIB && fmod(v, KIB) == 0) snprintf(out, n, "%.0fKiB", v / KIB);
    else snprintf(out, n, "%.0f", v);
}

/* What a row accepts, for "must be ...". */
static void expectation(lx_buf *b, const keydef *row)
{
    char lo[32], hi[32];
    switch (row->type) {
    case T_STR: lx_buf_append_str(b, "a non-empty string"); break;
    case T_URL: lx_buf_append_str(b, "a URL starting with http:// or https:// (no spaces)"); break;
    case T_INT:
    case T_LONG:
        if (row->flags & F_NO_MAX) lx_buf_printf(b, "an integer >= %.0f", row->min);
        else lx_buf_printf(b, "an integer from %.0f to %.0f", row->min, row->max);
        break;
    case T_NUM:
        if (row->flags & F_MIN_OPEN)
            lx_buf_printf(b, "a number greater than %.10g and at most %.10g", row->min, row->max);
        else lx_buf_printf(b, "a number from %.10g to %.10g", row->min, row->max);
        break;
    case T_BOOL: lx_buf_append_str(b, "true or false"); break;
    case T_BYTES:
        fmt_bytes(lo, sizeof lo, row->min);
        fmt_bytes(hi, sizeof hi, row->max);
        lx_buf_printf(b, "a byte size from %s to %s (an integer, or with a unit: 512KB, 16MiB, 1GiB)", lo, hi);
        break;
    case T_LEVEL: lx_buf_append_str(b, "one of DEBUG, INFO, WARNING, ERROR"); break;
    case T_FORMAT: lx_buf_append_str(b, "json or text"); break;
    case T_KIND: lx_buf_append_str(b, "one of vllm, ollama, llamacpp, openai"); break;
    case T_ENUM:
        for (size_t i = 0; row->names[i]; i++) {
            bool last = row->names[i + 1] == NULL;
            if (i == 0) lx_buf_append_str(b, last || row->names[2] == NULL ? "" : "one of ");
            else lx_buf_append_str(b, last && i == 1 ? " or " : ", ");
            lx_buf_append_str(b, row->names[i]);
        }
        break;
    case T_SECRET: lx_buf_append_str(b, "a non-empty string of visible ASCII characters (no spaces)"); break;
    case T_SHA256: lx_buf_append_str(b, "64 hexadecimal digits (a SHA-256 digest, as sha256sum prints it)"); break;
    case T_REDIS_URL:
        lx_buf_append_str(
            b, "a Redis URL: redis://host[:port][/db] (port 1..65535, db a number) or unix:///path/to/socket");
        break;
    default: lx_buf_append_str(b, "a mapping (indented key: value lines)"); break;
    }
}

static void err_want(parser *p, int line, const char *path, const keydef *row, const yaml_node_t *v)
{
    lx_buf b;
    lx_buf_init(&b, 1024);
    lx_buf_append_str(&b, "must be ");
    expectation(&b, row);
    lx_buf_append_str(&b, ", got ");
    bool numeric = row->type == T_INT || row->type == T_LONG || row->type == T_NUM || row->type == T_BOOL;
    if ((row->type == T_SECRET || row->type == T_SHA256) && v->type == YAML_SCALAR_NODE && !is_null(v))
        lx_buf_printf(&b, "%zu characters (not shown)", v->data.scalar.length);
    else if (row->type == T_REDIS_URL && v->type == YAML_SCALAR_NODE && strchr(scalar(v), '@'))
        lx_buf_append_str(&b, "a URL with a user or password part (not supported; not shown)");
    else describe(&b, v, numeric);
    err(p, line, path, "%s", b.p);
    lx_buf_free(&b);
}

static void err_shape(parser *p, int line, const char *path, const char *want, const yaml_node_t *v)
{
    lx_buf b;
    lx_buf_init(&b, 1024);
    describe(&b, v, false);
    err(p, line, path, "must be %s, got %s", want, b.p);
    lx_buf_free(&b);
}

/* ---- the walk ---- */

static void set_defaults(const keydef *tab, void *base)
{
    for (const keydef *row = tab; row->name; row++) {
        void *dst = (char *)base + row->off;
        switch (row->type) {
        case T_STR:
        case T_URL:
        case T_SECRET:
        case T_REDIS_URL: set_str(dst, row->sdef); break;
        case T_INT:
        case T_LEVEL:
        case T_ENUM: *(int *)dst = (int)row->def; break;
        case T_LONG: *(long *)dst = (long)row->def; break;
        case T_NUM: *(double *)dst = row->def; break;
        case T_BOOL:
        case T_FORMAT: *(bool *)dst = row->def != 0; break;
        case T_BYTES: *(size_t *)dst = (size_t)row->def; break;
        case T_KIND: *(lx_backend_kind *)dst = LX_BACKEND_KIND_NONE; break; /* "not given" */
        case T_SHA256: memset(dst, 0, LX_SHA256_LEN); break;
        case T_MAP: set_defaults(row->sub, base); break;
        case T_CUSTOM: break;
        }
    }
}

static void unknown_key(parser *p, int line, const char *path, const keydef *tab)
{
    lx_buf b;
    lx_buf_init(&b, 1024);
    for (const keydef *row = tab; row->name; row++) lx_buf_printf(&b, "%s%s", row == tab ? "" : ", ", row->name);
    err(p, line, path, "unknown key (valid keys: %s)", b.p);
    lx_buf_free(&b);
}

/* The key of a mapping pair as a name, or NULL (reported) when it is not a plain name. */
static const char *key_name(parser *p, const yaml_node_t *k, const char *path)
{
    if (is_text(k) && *scalar(k)) return scalar(k);
    lx_buf b;
    lx_buf_init(&b, 1024);
    describe(&b, k, false);
    err(p, node_line(k), path, "every key must be a non-empty name, found %s as a key", b.p);
    lx_buf_free(&b);
    return NULL;
}

static void apply(parser *p, const keydef *row, yaml_node_t *v, int line, const char *path, void *base);

/*
 * Matches a mapping against a table. A null value (a section with nothing under it) reads as empty.
 * lines (MAX_KEYS entries, may be NULL) receives, per row, the line where the key was given, or 0.
 */
static void walk_map(parser *p, yaml_node_t *map, int line, const char *path, const keydef *tab, void *base, int *lines)
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
            join(sub, path, name);
            int i = 0;
            while (tab[i].name && strcmp(tab[i].name, name)) i++;
            int kl = node_line(k);
            if (!tab[i].name) unknown_key(p, kl, sub, tab);
            else if (seen[i]) err(p, kl, sub, "duplicate key (first given at line %d)", seen[i]);
            else {
                seen[i] = kl;
                apply(p, &tab[i], v, kl, sub, base);
            }
        }
    }
    if (lines) memcpy(lines, seen, sizeof seen);
}

static void apply(parser *p, const keydef *row, yaml_node_t *v, int line, const char *path, void *base)
{
    if (row->type == T_MAP) {
        size_t before = n_problems(p);
        int lines[MAX_KEYS];
        walk_map(p, v, line, path, row->sub, base, lines);
        if (row->fn && n_problems(p) == before) {
            const int *outer = p->sec_lines;
            p->sec_lines = lines;
            row->fn(p, v, line, path, base);
            p->sec_lines = outer;
        }
    } else if (row->type == T_CUSTOM) {
        if (row->mark) p->marks[row->mark] = line;
        row->fn(p, v, line, path, base);
    } else if (set_scalar(row, v, (char *)base + row->off)) {
        if (row->mark) p->marks[row->mark] = line;
    } else {
        if (row->mark) p->marks[row->mark] = -1;
        err_want(p, line, path, row, v);
    }
}

/* ---- sections with their own shape ---- */

static void check_priorities(parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    const lx_config *c = base;
    if (c->queue.priority_high <= c->queue.priority_normal && c->queue.priority_normal <= c->queue.priority_low) return;
    err(p, line, path, "must satisfy high <= normal <= low (lower is served first), got high %ld, normal %ld, low %ld",
        c->queue.priority_high, c->queue.priority_normal, c->queue.priority_low);
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
static bool read_auth_key(parser *p, yaml_node_t *item, const char *path, lx_config *c, const int *key_lines)
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
    set_defaults(auth_key_keys, &e);
    walk_map(p, item, line, path, auth_key_keys, &e, lines);
    bool ok = n_problems(p) == before;
    if (ok && lines[AK_KEY] && lines[AK_SHA256]) {
        err(p, lines[AK_SHA256], path, "give key or key_sha256, not both (key at line %d)", lines[AK_KEY]);
        ok = false;
    } else if (ok && !lines[AK_KEY] && !lines[AK_SHA256]) {
        err(p, line, path,
            "has no key: add \"key_sha256: <SHA-256 of the key, 64 hex digits>\" (or \"key: <the key>\")");
        ok = false;
    }
    if (ok && !lines[AK_USER]) {
        err(p, line, path, "has no user: add \"user: <name>\"");
        ok = false;
    }
    if (ok && e.plain) {
        e.k.plain = true;
        if (!sha256(e.plain, e.k.key_sha256)) {
            err(p, lines[AK_KEY], path, "cannot compute the key's SHA-256 (libcrypto failed)");
            ok = false;
        }
    }
    for (size_t j = 0; ok && j < c->auth.n_keys; j++) {
        if (memcmp(c->auth.keys[j].key_sha256, e.k.key_sha256, LX_SHA256_LEN) != 0) continue;
        err(p, lines[e.plain ? AK_KEY : AK_SHA256], path, "duplicate key (first given at line %d)", key_lines[j]);
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

static void read_auth_keys(parser *p, yaml_node_t *v, int line, const char *path, void *base)
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
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        yaml_node_t *item = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
        key_lines[c->auth.n_keys] = node_line(item);
        if (read_auth_key(p, item, sub, c, key_lines)) c->auth.n_keys++;
    }
    free(key_lines);
}

static void check_auth(parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    (void)line;
    const lx_config *c = base;
    if (c->auth.enabled && c->auth.n_keys == 0)
        err(p, p->sec_lines[AU_ENABLED], path,
            "enabled with no keys: list them under keys: (- key_sha256: <64 hex digits>, user: <name>)");
}

/* Reads a token file: a regular file of at most MAX_TOKEN_FILE bytes; trailing whitespace is dropped. */
static void read_token_file(parser *p, int line, const char *path, lx_config *c)
{
    const char *file = c->admin.token_file;
    char buf[MAX_TOKEN_FILE + 1];
    ssize_t n = -1;
    struct stat st;
    int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        err(p, line, path, "cannot read \"%s\": %s", file, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        err(p, line, path, "cannot read \"%s\": not a regular file", file);
    } else if ((n = read(fd, buf, sizeof buf)) < 0) {
        err(p, line, path, "cannot read \"%s\": %s", file, strerror(errno));
    } else if (n > MAX_TOKEN_FILE) {
        err(p, line, path, "\"%s\" is larger than %d bytes: it should hold one token", file, MAX_TOKEN_FILE);
    } else {
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
        buf[n] = '\0';
        if (n == 0) err(p, line, path, "\"%s\" is empty: it should hold the admin token", file);
        else if (strlen(buf) != (size_t)n || !is_token(buf))
            err(p, line, path, "\"%s\" must hold one token of visible ASCII characters (no spaces inside; not shown)",
                file);
        else set_str(&c->admin.token, buf);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    if (fd >= 0) close(fd);
}

static void check_admin(parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    (void)line;
    lx_config *c = base;
    int token_line = p->sec_lines[AD_TOKEN], file_line = p->sec_lines[AD_TOKEN_FILE];
    char sub[PATH_LEN];
    join(sub, path, "token_file");
    if (token_line && file_line)
        err(p, file_line, sub, "give admin.token or admin.token_file, not both (admin.token at line %d)", token_line);
    else if (file_line) read_token_file(p, file_line, sub, c);
}

/* A mapping of named entries (backends, users): n entries, or false (reported) when it is not one. */
static bool named_entries(parser *p, yaml_node_t *v, int line, const char *path, const char *want, size_t *n)
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

static void read_backends(parser *p, yaml_node_t *v, int line, const char *path, void *base)
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
        join(sub, path, name);
        int kl = node_line(k);
        size_t j = 0;
        while (j < c->n_backends && strcmp(c->backends[j].name, name)) j++;
        if (j < c->n_backends) {
            err(p, kl, sub, "duplicate key (first given at line %d)", p->bk[j].line);
            p->backends_bad = true;
            continue;
        }
        lx_backend_conf *b = &c->backends[c->n_backends];
        backend_info *bi = &p->bk[c->n_backends++];
        b->name = lx_xstrdup(name);
        bi->line = kl;
        set_defaults(backend_keys, b);
        size_t before = n_problems(p);
        walk_map(p, yaml_document_get_node(p->doc, pr->value), kl, sub, backend_keys, b, bi->lines);
        bi->bad = n_problems(p) != before;
        p->backends_bad |= bi->bad;
    }
}

static bool read_model(parser *p, yaml_node_t *item, const char *path, lx_model_conf *m)
{
    int line = node_line(item);
    if (is_text(item) && *scalar(item)) {
        m->name = lx_xstrdup(scalar(item));
        return true;
    }
    if (item->type != YAML_MAPPING_NODE) {
        err_shape(p, line, path, "a model name or a mapping {name, path, gpu_memory_utilization}", item);
        return false;
    }
    int lines[MAX_KEYS];
    set_defaults(model_keys, m);
    walk_map(p, item, line, path, model_keys, m, lines);
    if (m->name) return true;
    if (!lines[MD_NAME]) err(p, line, path, "has no name: add \"name: <model>\"");
    free(m->path);
    m->path = NULL;
    return false;
}

static void read_models(parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    lx_backend_conf *b = base;
    if (is_null(v)) return;
    if (v->type != YAML_SEQUENCE_NODE) {
        err_shape(p, line, path, "a list of models (- name lines)", v);
        return;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) return;
    b->models = lx_xcalloc(n, sizeof *b->models);
    for (size_t i = 0; i < n; i++) {
        char sub[PATH_LEN];
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        yaml_node_t *item = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
        if (read_model(p, item, sub, &b->models[b->n_models])) b->n_models++;
    }
}

static void read_users(parser *p, yaml_node_t *v, int line, const char *path, void *base)
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
        join(sub, path, name);
        int kl = node_line(k);
        size_t j = 0;
        while (j < c->rate_limits.n_users && strcmp(c->rate_limits.users[j].name, name)) j++;
        if (j < c->rate_limits.n_users) {
            err(p, kl, sub, "duplicate key (first given at line %d)", name_lines[j]);
            continue;
        }
        lx_user_limit *u = &c->rate_limits.users[c->rate_limits.n_users];
        name_lines[c->rate_limits.n_users++] = kl;
        u->name = lx_xstrdup(name);
        set_defaults(user_keys, u);
        walk_map(p, yaml_document_get_node(p->doc, pr->value), kl, sub, user_keys, u, NULL);
    }
    free(name_lines);
}

/* ---- resolving what depends on several keys ---- */

static void resolve_users(lx_config *c)
{
    for (size_t i = 0; i < c->rate_limits.n_users; i++) {
        lx_user_limit *u = &c->rate_limits.users[i];
        if (u->requests_per_minute < 0) u->requests_per_minute = c->rate_limits.default_limit.requests_per_minute;
        if (u->tokens_per_minute < 0) u->tokens_per_minute = c->rate_limits.default_limit.tokens_per_minute;
    }
}

static void resolve_kind(parser *p, lx_backend_conf *b, const backend_info *bi, const char *path)
{
    int by_name = kind_parse(b->name);
    if (b->kind != LX_BACKEND_KIND_NONE) {
        if (by_name >= 0 && by_name != (int)b->kind)
            err(p, bi->lines[BK_TYPE], path,
                "type %s contradicts the entry's name \"%s\", which is a backend kind: "
                "rename the entry or drop type:",
                lx_backend_kind_name(b->kind), b->name);
    } else if (by_name >= 0) {
        b->kind = (lx_backend_kind)by_name;
    } else if (!bi->lines[BK_TYPE]) {
        err(p, bi->line, path, "no type: add \"type: vllm|ollama|llamacpp|openai\"");
    }
}

static void resolve_url(parser *p, lx_backend_conf *b, const backend_info *bi, const char *path)
{
    const lx_config *c = p->cfg;
    bool vllm_entry = strcmp(b->name, "vllm") == 0;
    if (b->url == NULL) {
        if (bi->lines[BK_URL]) return; /* given but bad: reported */
        if (vllm_entry) b->url = lx_xstrdup(c->vllm.url);
        else if (b->enabled) err(p, bi->line, path, "no url: add \"url: http://host:port\"");
        return;
    }
    if (vllm_entry && p->marks[M_VLLM_URL] > 0 && strcmp(b->url, c->vllm.url) != 0)
        err(p, bi->lines[BK_URL], "backends.vllm.url",
            "\"%s\" contradicts vllm.url \"%s\" (line %d): "
            "give the url in one place, or the same in both",
            b->url, c->vllm.url, p->marks[M_VLLM_URL]);
}

static void resolve_backend(parser *p, lx_backend_conf *b, const backend_info *bi)
{
    char path[PATH_LEN];
    join(path, "backends", b->name);
    resolve_kind(p, b, bi, path);
    if (!bi->lines[BK_TIMEOUT]) b->timeout_s = p->cfg->vllm.timeout_s;
    resolve_url(p, b, bi, path);
    if (b->enabled && b->n_models == 0 && !bi->bad)
        err(p, bi->line, path, "lists no models: add \"models: [<model name>]\"");
}

/* Without backends:, vllm: is the one backend, serving default_model. */
static void implicit_backend(parser *p)
{
    lx_config *c = p->cfg;
    if (c->default_model == NULL) {
        if (p->marks[M_DEFAULT_MODEL] == 0)
            err(p, 0, "default_model",
                "missing: name the model vLLM serves (default_model: \"<model>\"), "
                "or list backends: with their models");
        return;
    }
    c->backends = lx_xcalloc(1, sizeof *c->backends);
    c->n_backends = 1;
    lx_backend_conf *b = c->backends;
    set_defaults(backend_keys, b); /* max_concurrency, adaptive, priority, ...: their defaults */
    b->name = lx_xstrdup("vllm");
    b->kind = LX_BACKEND_VLLM;
    b->enabled = true;
    b->url = lx_xstrdup(c->vllm.url);
    b->timeout_s = c->vllm.timeout_s;
    b->models = lx_xcalloc(1, sizeof *b->models);
    b->n_models = 1;
    b->models[0].name = lx_xstrdup(c->default_model);
}

static void served_models(const lx_config *c, lx_buf *b)
{
    for (size_t i = 0; i < c->n_backends; i++) {
        if (!c->backends[i].enabled) continue;
        for (size_t j = 0; j < c->backends[i].n_models; j++)
            lx_buf_printf(b, "%s%s", b->len ? ", " : "", c->backends[i].models[j].name);
    }
    if (b->len == 0) lx_buf_append_str(b, "none");
}

static void resolve_default_model(parser *p)
{
    lx_config *c = p->cfg;
    const lx_backend_conf *first = NULL;
    for (size_t i = 0; i < c->n_backends && !first; i++)
        if (c->backends[i].enabled && c->backends[i].n_models) first = &c->backends[i];
    if (c->default_model == NULL) {
        if (first && p->marks[M_DEFAULT_MODEL] == 0) c->default_model = lx_xstrdup(first->models[0].name);
        return;
    }
    if (p->backends_bad || lx_config_backend_for(c, c->default_model, strlen(c->default_model))) return;
    lx_buf b;
    lx_buf_init(&b, 1024);
    served_models(c, &b);
    err(p, p->marks[M_DEFAULT_MODEL], "default_model", "\"%s\" is not served by any enabled backend (served: %s)",
        c->default_model, b.p);
    lx_buf_free(&b);
}

/* rate_limits.redis_url, already checked, into its parts. */
static void resolve_redis(lx_config *c)
{
    redis_parts r = {.host = &c->rate_limits.redis.host, .socket_path = &c->rate_limits.redis.socket_path};
    if (c->rate_limits.redis_url == NULL || !parse_redis_url(c->rate_limits.redis_url, &r)) return;
    c->rate_limits.redis.port = r.port;
    c->rate_limits.redis.db = r.db;
}

static void resolve(parser *p)
{
    lx_config *c = p->cfg;
    resolve_users(c);
    resolve_redis(c);
    if (p->marks[M_BACKENDS] < 0) return; /* not a mapping: reported */
    if (p->marks[M_BACKENDS] == 0) {
        implicit_backend(p);
        return;
    }
    bool any_enabled = false;
    for (size_t i = 0; i < c->n_backends; i++) {
        resolve_backend(p, &c->backends[i], &p->bk[i]);
        any_enabled |= c->backends[i].enabled;
    }
    if (!any_enabled)
        err(p, p->marks[M_BACKENDS], "backends", "no enabled backend: list one with enabled: true (the default)");
    else resolve_default_model(p);
}

/* ---- the snapshot ---- */

static void free_backend(lx_backend_conf *b)
{
    for (size_t j = 0; j < b->n_models; j++) {
        free(b->models[j].name);
        free(b->models[j].path);
    }
    free(b->models);
    free(b->name);
    free(b->url);
    free_secret(b->api_key);
}

static void config_free(lx_config *c)
{
    for (size_t i = 0; i < c->n_backends; i++) free_backend(&c->backends[i]);
    free(c->backends);
    for (size_t i = 0; i < c->rate_limits.n_users; i++) free(c->rate_limits.users[i].name);
    free(c->rate_limits.users);
    free(c->rate_limits.redis_url);
    free(c->rate_limits.redis.host);
    free(c->rate_limits.redis.socket_path);
    for (size_t i = 0; i < c->auth.n_keys; i++) free(c->auth.keys[i].user);
    free(c->auth.keys);
    free(c->logging.file);
    free(c->usage.db_path);
    free_secret(c->admin.token);
    free(c->admin.token_file);
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

const lx_backend_conf *lx_config_backend_for(const lx_config *c, const char *model, size_t len)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (c->backends[i].enabled && lx_backend_conf_serves(&c->backends[i], model, len)) return &c->backends[i];
    return NULL;
}

static void syntax_error(parser *p, const yaml_parser_t *yp)
{
    const char *problem = yp->problem ? yp->problem : "unknown problem";
    if (yp->context)
        err(p, (int)yp->problem_mark.line + 1, NULL, "YAML syntax error: %s (%s at line %d)", problem, yp->context,
            (int)yp->context_mark.line + 1);
    else err(p, (int)yp->problem_mark.line + 1, NULL, "YAML syntax error: %s", problem);
}

/* A second document in the stream would be silently ignored; refuse it instead. */
static void check_single_document(parser *p, yaml_parser_t *yp)
{
    yaml_document_t more;
    if (!yaml_parser_load(yp, &more)) {
        syntax_error(p, yp);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&more);
    if (root) err(p, node_line(root), NULL, "a second YAML document (after ---): put everything in one");
    yaml_document_delete(&more);
}

static void read_document(parser *p, yaml_parser_t *yp)
{
    yaml_document_t doc;
    if (!yaml_parser_load(yp, &doc)) {
        syntax_error(p, yp);
        return;
    }
    p->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) walk_map(p, root, node_line(root), "", top_keys, p->cfg, NULL);
    check_single_document(p, yp);
    p->doc = NULL;
    if (!root || root->type == YAML_MAPPING_NODE || is_null(root)) resolve(p);
    yaml_document_delete(&doc);
}

lx_config *lx_config_parse(const char *name, const char *yaml, size_t len, lx_buf *errors)
{
    parser p = {.name = name};
    p.cfg = lx_xcalloc(1, sizeof *p.cfg);
    p.cfg->refs = 1;
    p.cfg->path = lx_xstrdup(name);
    set_defaults(top_keys, p.cfg);
    yaml_parser_t yp;
    if (!yaml_parser_initialize(&yp)) {
        err(&p, 0, NULL, "cannot start the YAML parser (out of memory)");
    } else {
        yaml_parser_set_input_string(&yp, (const unsigned char *)yaml, len);
        read_document(&p, &yp);
        yaml_parser_delete(&yp);
    }
    free(p.bk);
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
