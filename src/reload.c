/*
 * Reload diff: config.c's key table (config_keys.h), walked over two snapshots row by row. See reload.h.
 *
 * Invariants:
 * - No table of its own: every key the loader reads is compared, by its row's type, in the table's
 *   order (test_reload checks a change to each key); a section's rows report "section.key".
 * - A row is live (it takes effect once the new snapshot is swapped in and gateway.c has applied it)
 *   or restart-only (LX_KF_RESTART: what is set up once at start: the listeners, the usage ledger).
 *   Only scalar rows of lx_config itself are restart-only, which is what lets lx_reload_pin copy them back.
 * - Named lists are matched by name, so reordering users is no change; the backends' order is (it
 *   decides routing), reported as "backends".
 */
#include "reload.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "config_keys.h"
#include "utils/common.h"

_Static_assert(sizeof(lx_backend_kind) == sizeof(int) && sizeof(lx_rate_mode) == sizeof(int) &&
                   sizeof(lx_rate_store) == sizeof(int),
               "enums are compared as int");

/* How a row's value is stored (see config_keys.h); V_NONE for a section or a list. */
typedef enum { V_NONE, V_STR, V_INT, V_LONG, V_NUM, V_BOOL, V_SIZE, V_SHA256 } vkind;

static vkind value_kind(lx_keytype t)
{
    switch (t) {
    case LX_K_STR:
    case LX_K_URL:
    case LX_K_SECRET:
    case LX_K_REDIS_URL: return V_STR;
    case LX_K_INT:
    case LX_K_LEVEL:
    case LX_K_ENUM:
    case LX_K_KIND: return V_INT;
    case LX_K_LONG: return V_LONG;
    case LX_K_NUM: return V_NUM;
    case LX_K_BOOL:
    case LX_K_FORMAT: return V_BOOL;
    case LX_K_BYTES: return V_SIZE;
    case LX_K_SHA256: return V_SHA256;
    case LX_K_MAP:
    case LX_K_LIST: return V_NONE;
    }
    return V_NONE;
}

static size_t value_size(vkind k)
{
    switch (k) {
    case V_INT: return sizeof(int);
    case V_LONG: return sizeof(long);
    case V_NUM: return sizeof(double);
    case V_BOOL: return sizeof(bool);
    case V_SIZE: return sizeof(size_t);
    case V_SHA256: return LX_SHA256_LEN;
    default: return 0;
    }
}

/* The text of an auth key is not in the snapshot: its digest and its form (plain) are compared instead. */
static bool compared(const lx_keydef *r) { return !(r->flags & LX_KF_NOT_KEPT); }

static bool is_restart(const lx_keydef *r) { return (r->flags & LX_KF_RESTART) != 0; }

/* ---- comparing ---- */

static const void *at(const void *base, size_t off) { return (const char *)base + off; }

static bool str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static const char *entry_name(const lx_keylist_desc *l, const void *entry)
{
    return *(char *const *)at(entry, (size_t)l->name_off);
}

static const char *list_entries(const lx_keylist_desc *l, const void *base, size_t *n)
{
    *n = *(const size_t *)at(base, l->count_off);
    return *(char *const *)at(base, l->arr_off);
}

static bool list_eq(const lx_keylist_desc *l, const void *a, const void *b);
static bool entry_eq(const lx_keydef *rows, const void *a, const void *b);

static bool row_eq(const lx_keydef *r, const void *a, const void *b)
{
    if (!compared(r)) return true;
    if (r->type == LX_K_MAP) return entry_eq(r->sub, a, b);
    if (r->type == LX_K_LIST) return list_eq(r->list, a, b);
    const void *x = at(a, r->off), *y = at(b, r->off);
    vkind k = value_kind(r->type);
    if (k == V_STR) return str_eq(*(char *const *)x, *(char *const *)y);
    if (k == V_NUM) return *(const double *)x == *(const double *)y;
    return memcmp(x, y, value_size(k)) == 0;
}

static bool entry_eq(const lx_keydef *rows, const void *a, const void *b)
{
    for (const lx_keydef *r = rows; r->name; r++)
        if (!row_eq(r, a, b)) return false;
    return true;
}

/* Same entries, in the same order (names included). */
static bool list_eq(const lx_keylist_desc *l, const void *a, const void *b)
{
    size_t na, nb;
    const char *ea = list_entries(l, a, &na), *eb = list_entries(l, b, &nb);
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++) {
        const void *x = ea + i * l->elem_size, *y = eb + i * l->elem_size;
        if (l->name_off >= 0 && !str_eq(entry_name(l, x), entry_name(l, y))) return false;
        if (!entry_eq(l->rows, x, y)) return false;
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

static void diff_rows(const lx_keydef *rows, const void *a, const void *b, const char *prefix, lx_reload_diff *d);

static const void *find_entry(const lx_keylist_desc *l, const void *base, const char *name, size_t *index)
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
static bool order_changed(const lx_keylist_desc *l, const void *a, const void *b)
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

static void diff_list(const lx_keydef *r, const void *a, const void *b, const char *prefix, lx_reload_diff *d)
{
    const lx_keylist_desc *l = r->list;
    if (l->report == LX_DIFF_WHOLE) {
        if (!list_eq(l, a, b)) report(d, is_restart(r), prefix, r->name);
        return;
    }
    char path[512];
    join_key(path, sizeof path, prefix, r->name);
    if (l->ordered && order_changed(l, a, b)) report(d, is_restart(r), prefix, r->name);
    size_t na, nb, idx;
    const char *ea = list_entries(l, a, &na), *eb = list_entries(l, b, &nb);
    for (size_t i = 0; i < nb; i++) {
        const void *y = eb + i * l->elem_size;
        const char *name = entry_name(l, y);
        const void *x = find_entry(l, a, name, &idx);
        if (x == NULL) {
            report(d, is_restart(r), path, name);
        } else if (l->report == LX_DIFF_BY_FIELD) {
            char sub[512];
            join_key(sub, sizeof sub, path, name);
            diff_rows(l->rows, x, y, sub, d);
        } else if (!entry_eq(l->rows, x, y)) {
            report(d, is_restart(r), path, name);
        }
    }
    for (size_t i = 0; i < na; i++) {
        const char *name = entry_name(l, ea + i * l->elem_size);
        if (!find_entry(l, b, name, &idx)) report(d, is_restart(r), path, name);
    }
}

static void diff_rows(const lx_keydef *rows, const void *a, const void *b, const char *prefix, lx_reload_diff *d)
{
    for (const lx_keydef *r = rows; r->name; r++) {
        if (!compared(r)) continue;
        if (r->type == LX_K_MAP) {
            char sub[512];
            join_key(sub, sizeof sub, prefix, r->name);
            diff_rows(r->sub, a, b, sub, d);
        } else if (r->type == LX_K_LIST) {
            diff_list(r, a, b, prefix, d);
        } else if (!row_eq(r, a, b)) {
            report(d, is_restart(r), prefix, r->name);
        }
    }
}

void lx_reload_diff_compute(const lx_config *old, const lx_config *new_cfg, lx_reload_diff *d)
{
    diff_rows(lx_config_keys, old, new_cfg, "", d);
}

/* Restart-only rows are scalars of lx_config (the top table and its sections, never a list's). */
static void pin_rows(const lx_keydef *rows, const lx_config *old, lx_config *new_cfg)
{
    for (const lx_keydef *r = rows; r->name; r++) {
        if (r->type == LX_K_MAP) pin_rows(r->sub, old, new_cfg);
        if (!is_restart(r) || value_kind(r->type) == V_NONE || row_eq(r, old, new_cfg)) continue;
        void *dst = (char *)new_cfg + r->off;
        const void *src = at(old, r->off);
        if (value_kind(r->type) == V_STR) {
            char **s = dst;
            const char *o = *(char *const *)src;
            free(*s);
            *s = o ? lx_xstrdup(o) : NULL;
        } else {
            memcpy(dst, src, value_size(value_kind(r->type)));
        }
    }
}

void lx_reload_pin(const lx_config *old, lx_config *new_cfg) { pin_rows(lx_config_keys, old, new_cfg); }

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
