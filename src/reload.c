/*
 * Reload diff: one table row per config key, compared between two snapshots. See reload.h.
 *
 * Invariants:
 * - The table follows config.h's struct and config.c's key names; a key missing here would be a
 *   change no reload reports, so every key of the schema has a row (test_reload checks a change to each).
 * - A row is live (it takes effect once the new snapshot is swapped in and gateway.c has applied it)
 *   or restart-only (what is set up once at start: the listeners, the usage ledger). Only top-level
 *   scalar rows are restart-only, which is what lets lx_reload_pin copy them back.
 * - Named lists are matched by name, so reordering users is no change; the backends' order is (it
 *   decides routing), reported as "backends".
 */
#include "reload.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "utils/common.h"

typedef enum { D_STR, D_INT, D_LONG, D_NUM, D_BOOL, D_SIZE, D_SHA256, D_LIST } dtype;

typedef struct drow drow;

/* How a list's differences are reported. */
typedef enum {
    BY_FIELD, /* PATH.NAME for an entry added or removed, PATH.NAME.FIELD for a changed field */
    BY_ENTRY, /* PATH.NAME for an entry added, removed or changed */
    WHOLE,    /* PATH for any difference (entries compared by position) */
} dreport;

typedef struct {
    size_t arr_off, count_off, elem_size; /* the array and its length, from the base of the row's table */
    ssize_t name_off;                     /* the entry's char *name, or -1 (compared by position) */
    const drow *fields;                   /* of one entry, from the entry's base */
    dreport report;
    bool ordered; /* BY_FIELD / BY_ENTRY: the order of the entries matters; a new order reports PATH */
} dlist;

struct drow {
    const char *key; /* NULL ends a table */
    dtype type;
    size_t off;
    bool restart;
    const dlist *list; /* D_LIST */
};

_Static_assert(sizeof(lx_backend_kind) == sizeof(int) && sizeof(lx_rate_mode) == sizeof(int) &&
                   sizeof(lx_rate_store) == sizeof(int),
               "enums are compared as int");

/* clang-format off */
#define ROW(T, k, t, f) {.key = k, .type = t, .off = offsetof(T, f)}
#define LIVE(k, t, f) ROW(lx_config, k, t, f)
#define RESTART(k, t, f) {.key = k, .type = t, .off = offsetof(lx_config, f), .restart = true}
#define LIST(k, l) {.key = k, .type = D_LIST, .list = &(l)}
#define END {.key = NULL}
/* clang-format on */

static const drow model_rows[] = {
    ROW(lx_model_conf, "name", D_STR, name),
    ROW(lx_model_conf, "path", D_STR, path),
    ROW(lx_model_conf, "gpu_memory_utilization", D_NUM, gpu_memory_utilization),
    END,
};

static const dlist models_list = {
    .arr_off = offsetof(lx_backend_conf, models),
    .count_off = offsetof(lx_backend_conf, n_models),
    .elem_size = sizeof(lx_model_conf),
    .name_off = -1,
    .fields = model_rows,
    .report = WHOLE,
};

static const drow backend_rows[] = {
    ROW(lx_backend_conf, "type", D_INT, kind),
    ROW(lx_backend_conf, "enabled", D_BOOL, enabled),
    ROW(lx_backend_conf, "url", D_STR, url),
    ROW(lx_backend_conf, "timeout", D_NUM, timeout_s),
    LIST("models", models_list),
    ROW(lx_backend_conf, "max_concurrency", D_INT, max_concurrency),
    ROW(lx_backend_conf, "adaptive", D_BOOL, adaptive),
    ROW(lx_backend_conf, "kv_cache_threshold", D_NUM, kv_cache_threshold),
    ROW(lx_backend_conf, "forward_priority", D_BOOL, forward_priority),
    ROW(lx_backend_conf, "priority", D_INT, priority),
    ROW(lx_backend_conf, "api_key", D_STR, api_key),
    END,
};

static const dlist backends_list = {
    .arr_off = offsetof(lx_config, backends),
    .count_off = offsetof(lx_config, n_backends),
    .elem_size = sizeof(lx_backend_conf),
    .name_off = offsetof(lx_backend_conf, name),
    .fields = backend_rows,
    .report = BY_FIELD,
    .ordered = true, /* the first enabled backend listing a model serves it */
};

static const drow user_rows[] = {
    ROW(lx_user_limit, "requests_per_minute", D_LONG, requests_per_minute),
    ROW(lx_user_limit, "tokens_per_minute", D_LONG, tokens_per_minute),
    END,
};

static const dlist users_list = {
    .arr_off = offsetof(lx_config, rate_limits.users),
    .count_off = offsetof(lx_config, rate_limits.n_users),
    .elem_size = sizeof(lx_user_limit),
    .name_off = offsetof(lx_user_limit, name),
    .fields = user_rows,
    .report = BY_ENTRY,
};

static const drow auth_key_rows[] = {
    ROW(lx_auth_key, "user", D_STR, user),
    ROW(lx_auth_key, "key_sha256", D_SHA256, key_sha256),
    ROW(lx_auth_key, "plain", D_BOOL, plain),
    END,
};

static const dlist auth_keys_list = {
    .arr_off = offsetof(lx_config, auth.keys),
    .count_off = offsetof(lx_config, auth.n_keys),
    .elem_size = sizeof(lx_auth_key),
    .name_off = -1,
    .fields = auth_key_rows,
    .report = WHOLE,
};

static const drow config_rows[] = {
    RESTART("server.host", D_STR, server.host),
    RESTART("server.port", D_INT, server.port),
    LIVE("server.max_connections", D_INT, server.max_connections),
    LIVE("server.max_body_bytes", D_SIZE, server.max_body_bytes),
    LIVE("server.max_header_bytes", D_SIZE, server.max_header_bytes),
    LIVE("server.max_response_bytes", D_SIZE, server.max_response_bytes),
    LIVE("server.header_timeout", D_NUM, server.header_timeout_s),
    LIVE("server.idle_timeout", D_NUM, server.idle_timeout_s),
    LIVE("server.shutdown_timeout", D_NUM, server.shutdown_timeout_s),
    LIVE("vllm.url", D_STR, vllm.url),
    LIVE("vllm.timeout", D_NUM, vllm.timeout_s),
    LIVE("default_model", D_STR, default_model),
    LIST("backends", backends_list),
    LIVE("queue.max_size", D_LONG, queue.max_size),
    LIVE("queue.default_timeout", D_NUM, queue.default_timeout_s),
    LIVE("queue.priorities.high", D_LONG, queue.priority_high),
    LIVE("queue.priorities.normal", D_LONG, queue.priority_normal),
    LIVE("queue.priorities.low", D_LONG, queue.priority_low),
    LIVE("queue.aging_seconds", D_NUM, queue.aging_s),
    LIVE("rate_limits.default.requests_per_minute", D_LONG, rate_limits.default_limit.requests_per_minute),
    LIVE("rate_limits.default.tokens_per_minute", D_LONG, rate_limits.default_limit.tokens_per_minute),
    LIST("rate_limits.users", users_list),
    LIVE("rate_limits.mode", D_INT, rate_limits.mode),
    LIVE("rate_limits.store", D_INT, rate_limits.store),         /* the limiter reconnects */
    LIVE("rate_limits.redis_url", D_STR, rate_limits.redis_url), /* (rate_limits.redis: its parts) */
    LIVE("rate_limits.default_max_tokens", D_LONG, rate_limits.default_max_tokens),
    LIVE("auth.enabled", D_BOOL, auth.enabled),
    LIST("auth.keys", auth_keys_list),
    LIVE("retry.max_attempts", D_LONG, retry.max_attempts),
    LIVE("retry.delay_seconds", D_NUM, retry.delay_s),
    LIVE("retry.backoff_multiplier", D_NUM, retry.backoff_multiplier),
    LIVE("retry.max_delay_seconds", D_NUM, retry.max_delay_s),
    LIVE("health_check.interval_seconds", D_NUM, health_check.interval_s),
    LIVE("health_check.failure_threshold", D_LONG, health_check.failure_threshold),
    LIVE("health_check.cooldown_seconds", D_NUM, health_check.cooldown_s),
    LIVE("health_check.timeout_seconds", D_NUM, health_check.timeout_s),
    LIVE("logging.level", D_INT, logging.level),
    LIVE("logging.format", D_BOOL, logging.json),
    LIVE("logging.file", D_STR, logging.file),
    RESTART("metrics.enabled", D_BOOL, metrics.enabled),
    RESTART("metrics.port", D_INT, metrics.port),
    LIVE("metrics.per_user", D_BOOL, metrics.per_user),
    RESTART("usage.enabled", D_BOOL, usage.enabled),
    RESTART("usage.db_path", D_STR, usage.db_path),
    LIVE("admin.token", D_STR, admin.token),
    LIVE("admin.token_file", D_STR, admin.token_file),
    END,
};

/* ---- comparing ---- */

static const void *at(const void *base, size_t off) { return (const char *)base + off; }

static bool str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static const char *entry_name(const dlist *l, const void *entry)
{
    return *(char *const *)at(entry, (size_t)l->name_off);
}

static const char *list_entries(const dlist *l, const void *base, size_t *n)
{
    *n = *(const size_t *)at(base, l->count_off);
    return *(char *const *)at(base, l->arr_off);
}

static bool list_eq(const dlist *l, const void *a, const void *b);

static bool row_eq(const drow *r, const void *a, const void *b)
{
    const void *x = at(a, r->off), *y = at(b, r->off);
    switch (r->type) {
    case D_STR: return str_eq(*(char *const *)x, *(char *const *)y);
    case D_INT: return *(const int *)x == *(const int *)y;
    case D_LONG: return *(const long *)x == *(const long *)y;
    case D_NUM: return *(const double *)x == *(const double *)y;
    case D_BOOL: return *(const bool *)x == *(const bool *)y;
    case D_SIZE: return *(const size_t *)x == *(const size_t *)y;
    case D_SHA256: return memcmp(x, y, LX_SHA256_LEN) == 0;
    case D_LIST: return list_eq(r->list, a, b);
    }
    return false;
}

static bool entry_eq(const drow *rows, const void *a, const void *b)
{
    for (const drow *r = rows; r->key; r++)
        if (!row_eq(r, a, b)) return false;
    return true;
}

/* Same entries, in the same order (names included). */
static bool list_eq(const dlist *l, const void *a, const void *b)
{
    size_t na, nb;
    const char *ea = list_entries(l, a, &na), *eb = list_entries(l, b, &nb);
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++) {
        const void *x = ea + i * l->elem_size, *y = eb + i * l->elem_size;
        if (l->name_off >= 0 && !str_eq(entry_name(l, x), entry_name(l, y))) return false;
        if (!entry_eq(l->fields, x, y)) return false;
    }
    return true;
}

/* ---- reporting ---- */

static void keylist_add(lx_keylist *k, const char *key)
{
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 16;
        k->keys = lx_xrealloc(k->keys, k->cap * sizeof *k->keys);
    }
    k->keys[k->n++] = lx_xstrdup(key);
}

static void keylist_free(lx_keylist *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->keys[i]);
    free(k->keys);
    *k = (lx_keylist){0};
}

/* prefix.key, cut at n - 1 bytes (a config's names are far shorter) */
static void join_key(char *out, size_t n, const char *prefix, const char *key)
{
    int w = *prefix ? snprintf(out, n, "%s.%s", prefix, key) : snprintf(out, n, "%s", key);
    if (w < 0) out[0] = '\0';
}

static void report(lx_reload_diff *d, bool restart, const char *prefix, const char *key)
{
    char path[512];
    join_key(path, sizeof path, prefix, key);
    keylist_add(restart ? &d->restart_required : &d->changed, path);
}

static void diff_rows(const drow *rows, const void *a, const void *b, const char *prefix, lx_reload_diff *d);

static const void *find_entry(const dlist *l, const void *base, const char *name, size_t *index)
{
    size_t n;
    const char *e = list_entries(l, base, &n);
    for (size_t i = 0; i < n; i++)
        if (str_eq(entry_name(l, e + i * l->elem_size), name)) {
            *index = i;
            return e + i * l->elem_size;
        }
    return NULL;
}

/* The entries both lists have, in a different relative order. */
static bool order_changed(const dlist *l, const void *a, const void *b)
{
    size_t nb, last = 0, idx;
    bool first = true;
    const char *eb = list_entries(l, b, &nb);
    for (size_t i = 0; i < nb; i++) {
        if (!find_entry(l, a, entry_name(l, eb + i * l->elem_size), &idx)) continue;
        if (!first && idx < last) return true;
        last = idx;
        first = false;
    }
    return false;
}

static void diff_list(const drow *r, const void *a, const void *b, const char *prefix, lx_reload_diff *d)
{
    const dlist *l = r->list;
    if (l->report == WHOLE) {
        if (!list_eq(l, a, b)) report(d, r->restart, prefix, r->key);
        return;
    }
    char path[512];
    join_key(path, sizeof path, prefix, r->key);
    if (l->ordered && order_changed(l, a, b)) report(d, r->restart, prefix, r->key);
    size_t na, nb, idx;
    const char *ea = list_entries(l, a, &na), *eb = list_entries(l, b, &nb);
    for (size_t i = 0; i < nb; i++) {
        const void *y = eb + i * l->elem_size;
        const char *name = entry_name(l, y);
        const void *x = find_entry(l, a, name, &idx);
        if (x == NULL) {
            report(d, r->restart, path, name);
        } else if (l->report == BY_FIELD) {
            char sub[512];
            join_key(sub, sizeof sub, path, name);
            diff_rows(l->fields, x, y, sub, d);
        } else if (!entry_eq(l->fields, x, y)) {
            report(d, r->restart, path, name);
        }
    }
    for (size_t i = 0; i < na; i++) {
        const char *name = entry_name(l, ea + i * l->elem_size);
        if (!find_entry(l, b, name, &idx)) report(d, r->restart, path, name);
    }
}

static void diff_rows(const drow *rows, const void *a, const void *b, const char *prefix, lx_reload_diff *d)
{
    for (const drow *r = rows; r->key; r++) {
        if (r->type == D_LIST)
            diff_list(r, a, b, prefix, d);
        else if (!row_eq(r, a, b))
            report(d, r->restart, prefix, r->key);
    }
}

void lx_reload_diff_compute(const lx_config *old, const lx_config *new_cfg, lx_reload_diff *d)
{
    diff_rows(config_rows, old, new_cfg, "", d);
}

static size_t scalar_size(dtype t)
{
    switch (t) {
    case D_INT: return sizeof(int);
    case D_LONG: return sizeof(long);
    case D_NUM: return sizeof(double);
    case D_BOOL: return sizeof(bool);
    case D_SIZE: return sizeof(size_t);
    case D_SHA256: return LX_SHA256_LEN;
    default: return 0;
    }
}

void lx_reload_pin(const lx_config *old, lx_config *new_cfg)
{
    for (const drow *r = config_rows; r->key; r++) {
        if (!r->restart || r->type == D_LIST || row_eq(r, old, new_cfg)) continue;
        void *dst = (char *)new_cfg + r->off;
        const void *src = at(old, r->off);
        if (r->type == D_STR) {
            char **s = dst;
            const char *o = *(char *const *)src;
            free(*s);
            *s = o ? lx_xstrdup(o) : NULL;
        } else {
            memcpy(dst, src, scalar_size(r->type));
        }
    }
}

void lx_reload_diff_free(lx_reload_diff *d)
{
    keylist_free(&d->changed);
    keylist_free(&d->restart_required);
}

static void json_array(lx_buf *out, const char *name, const lx_keylist *l)
{
    lx_buf_printf(out, "\"%s\":[", name);
    for (size_t i = 0; i < l->n; i++) {
        lx_buf_append_str(out, i ? ",\"" : "\"");
        lx_buf_json_escape(out, l->keys[i], strlen(l->keys[i]));
        lx_buf_append_str(out, "\"");
    }
    lx_buf_append_str(out, "]");
}

void lx_reload_diff_json(const lx_reload_diff *d, lx_buf *out)
{
    json_array(out, "changed", &d->changed);
    lx_buf_append_str(out, ",");
    json_array(out, "restart_required", &d->restart_required);
}

void lx_keylist_join(const lx_keylist *l, lx_buf *out)
{
    if (l->n == 0) lx_buf_append_str(out, "none");
    for (size_t i = 0; i < l->n; i++)
        lx_buf_printf(out, "%s%s", i ? ", " : "", l->keys[i]);
}
