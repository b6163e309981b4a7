/*
 * Config values: a scalar's text → a typed value, by its row's type (config_keys.h), and what each type
 * accepts, for the loader's "must be ..." messages. See config_parse.h.
 *
 * Invariants: pure functions of their arguments (no parser, no YAML); a value that is not acceptable
 * leaves its destination untouched; numbers and booleans must be plain (unquoted) text, checked by the
 * caller passing plain; byte sizes take KB/MB/GB (powers of 1000) and KiB/MiB/GiB (of 1024).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_parse.h"
#include "utils/common.h"
#include "backends/kind.h"
#include "utils/log.h"

#define KIB 1024.0
#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * 1024.0 * 1024.0)

int lx_cfg_kind_parse(const char *s) { return lx_kind_find(s); } /* backends/kind.h: built-in or registered */

/* ---- scalar values ---- */

void lx_cfg_set_str(char **dst, const char *s)
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
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes"))
        *out = true;
    else if (!strcasecmp(s, "false") || !strcasecmp(s, "no"))
        *out = false;
    else
        return false;
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
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < LX_ARRAY_LEN(units); i++) {
        if (strcasecmp(end, units[i].unit) != 0) continue;
        if (v > UINT64_MAX / units[i].mult) return false;
        *out = v * units[i].mult;
        return true;
    }
    return false;
}

static bool in_range(const lx_keydef *row, double v)
{
    if ((row->flags & LX_KF_MIN_OPEN) ? v <= row->min : v < row->min) return false;
    return (row->flags & LX_KF_NO_MAX) || v <= row->max;
}

/* URLs start with http:// or https://, have a host, no blanks; trailing slashes are dropped. */
static bool set_url(char **dst, const char *s)
{
    size_t scheme = !strncasecmp(s, "http://", 7) ? 7 : !strncasecmp(s, "https://", 8) ? 8 : 0;
    size_t n = strlen(s);
    if (!scheme) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f) return false;
    while (n > scheme && s[n - 1] == '/')
        n--;
    if (n == scheme || s[scheme] == '/') return false;
    free(*dst);
    *dst = lx_xstrndup(s, n);
    return true;
}

/* Visible ASCII only: no blank, no control character, nothing a header line could be split on. */
bool lx_cfg_is_token(const char *s)
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

/*
 * redis://host[:port][/db] (host a name, an IPv4 address or a bracketed IPv6 address; port 1..65535,
 * default 6379; db >= 0, default 0) or unix:///absolute/path/to/socket. No user or password part.
 */
bool lx_cfg_parse_redis_url(const char *s, lx_redis_parts *r)
{
    r->port = 0;
    r->db = 0;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) return false;
    if (!strncasecmp(s, "unix://", 7)) {
        const char *path = s + 7;
        if (path[0] != '/' || path[1] == '\0') return false;
        if (r->socket_path) lx_cfg_set_str(r->socket_path, path);
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

bool lx_cfg_set_scalar(const lx_keydef *row, const char *s, bool plain, void *dst)
{
    bool b;
    long l;
    double d;
    uint64_t u;
    int k;
    switch (row->type) {
    case LX_K_STR:
        if (!*s && !(row->flags & LX_KF_EMPTY_OK)) return false;
        lx_cfg_set_str(dst, s);
        return true;
    case LX_K_URL: return set_url(dst, s);
    case LX_K_INT:
        if (!plain || !parse_long(s, &l) || !in_range(row, (double)l)) return false;
        *(int *)dst = (int)l;
        return true;
    case LX_K_LONG:
        if (!plain || !parse_long(s, &l) || !in_range(row, (double)l)) return false;
        *(long *)dst = l;
        return true;
    case LX_K_NUM:
        if (!plain || !parse_num(s, &d) || !in_range(row, d)) return false;
        *(double *)dst = d;
        return true;
    case LX_K_BOOL:
        if (!plain || !parse_bool(s, &b)) return false;
        *(bool *)dst = b;
        return true;
    case LX_K_BYTES:
        if (!parse_bytes(s, &u) || !in_range(row, (double)u)) return false;
        *(size_t *)dst = (size_t)u;
        return true;
    case LX_K_LEVEL:
        if ((k = lx_log_level_parse(s)) < 0) return false;
        *(int *)dst = k;
        return true;
    case LX_K_FORMAT:
        if (strcasecmp(s, "json") && strcasecmp(s, "text")) return false;
        *(bool *)dst = !strcasecmp(s, "json");
        return true;
    case LX_K_KIND:
        if ((k = lx_cfg_kind_parse(s)) < 0) return false;
        *(lx_backend_kind *)dst = (lx_backend_kind)k;
        return true;
    case LX_K_ENUM:
        if ((k = enum_parse(row->names, s)) < 0) return false;
        *(int *)dst = k;
        return true;
    case LX_K_SECRET:
        if (!lx_cfg_is_token(s)) return false;
        lx_cfg_set_str(dst, s);
        return true;
    case LX_K_SHA256: return parse_sha256_hex(s, dst);
    case LX_K_REDIS_URL:
        if (!lx_cfg_parse_redis_url(s, &(lx_redis_parts){0})) return false;
        lx_cfg_set_str(dst, s);
        return true;
    default: return false;
    }
}

static void fmt_bytes(char *out, size_t n, double v)
{
    if (v >= GIB && fmod(v, GIB) == 0)
        snprintf(out, n, "%.0fGiB", v / GIB);
    else if (v >= MIB && fmod(v, MIB) == 0)
        snprintf(out, n, "%.0fMiB", v / MIB);
    else if (v >= KIB && fmod(v, KIB) == 0)
        snprintf(out, n, "%.0fKiB", v / KIB);
    else
        snprintf(out, n, "%.0f", v);
}

void lx_cfg_expectation(lx_buf *b, const lx_keydef *row)
{
    char lo[32], hi[32];
    switch (row->type) {
    case LX_K_STR: lx_buf_append_str(b, "a non-empty string"); break;
    case LX_K_URL: lx_buf_append_str(b, "a URL starting with http:// or https:// (no spaces)"); break;
    case LX_K_INT:
    case LX_K_LONG:
        if (row->flags & LX_KF_NO_MAX)
            lx_buf_printf(b, "an integer >= %.0f", row->min);
        else
            lx_buf_printf(b, "an integer from %.0f to %.0f", row->min, row->max);
        break;
    case LX_K_NUM:
        if (row->flags & LX_KF_MIN_OPEN)
            lx_buf_printf(b, "a number greater than %.10g and at most %.10g", row->min, row->max);
        else
            lx_buf_printf(b, "a number from %.10g to %.10g", row->min, row->max);
        break;
    case LX_K_BOOL: lx_buf_append_str(b, "true or false"); break;
    case LX_K_BYTES:
        fmt_bytes(lo, sizeof lo, row->min);
        fmt_bytes(hi, sizeof hi, row->max);
        lx_buf_printf(b, "a byte size from %s to %s (an integer, or with a unit: 512KB, 16MiB, 1GiB)", lo, hi);
        break;
    case LX_K_LEVEL: lx_buf_append_str(b, "one of DEBUG, INFO, WARNING, ERROR"); break;
    case LX_K_FORMAT: lx_buf_append_str(b, "json or text"); break;
    case LX_K_KIND: lx_buf_append_str(b, "one of vllm, ollama, llamacpp, openai"); break;
    case LX_K_ENUM:
        for (size_t i = 0; row->names[i]; i++) {
            bool last = row->names[i + 1] == NULL;
            if (i == 0)
                lx_buf_append_str(b, last || row->names[2] == NULL ? "" : "one of ");
            else
                lx_buf_append_str(b, last && i == 1 ? " or " : ", ");
            lx_buf_append_str(b, row->names[i]);
        }
        break;
    case LX_K_SECRET: lx_buf_append_str(b, "a non-empty string of visible ASCII characters (no spaces)"); break;
    case LX_K_SHA256: lx_buf_append_str(b, "64 hexadecimal digits (a SHA-256 digest, as sha256sum prints it)"); break;
    case LX_K_REDIS_URL:
        lx_buf_append_str(
            b, "a Redis URL: redis://host[:port][/db] (port 1..65535, db a number) or unix:///path/to/socket");
        break;
    default: lx_buf_append_str(b, "a mapping (indented key: value lines)"); break;
    }
}
