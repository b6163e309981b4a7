/*
 * Request bodies: one strict pass over the top-level object, then one spliced copy. See body.h.
 * A backend's answer is not checked, only read: lx_json_find_member walks it backwards (see there).
 *
 * The scanner is a small hand-written RFC 8259 checker, not jsmn. jsmn 1.1 (the first plan) walks
 * back over its tokens at every closing bracket, which is quadratic: a 40 KB body of "[[[...]]]"
 * held the loop thread for 0.4 s and a 200 KB one for 10 s; and even in strict mode it accepts
 * "[1 2]", {"a":1,} and "tru". This scanner keeps jsmn's shape (one pass, no DOM, slices into the
 * caller's bytes) without a token array at all: a top-level member is a key span and a value span,
 * and a value we do not need is skipped by a validating loop.
 *
 * Invariants:
 * - Linear time, no allocation; nesting deeper than LX_JSON_MAX_DEPTH is invalid_json.
 * - Exactly one JSON object, optionally surrounded by whitespace. Strings: escapes, raw control
 *   characters and UTF-8 are checked (RFC 8259 §8.1; Unicode's well-formed table: no overlong
 *   forms, no encoded surrogates, nothing past U+10FFFF), so a body the backend could not decode is
 *   invalid_json here and never reaches it. \u escapes are not paired up (lone surrogates pass, as
 *   Python's json, which vLLM uses, accepts them).
 * - Keys are compared after unescaping ("mod\u0065l" is model, as the backend reads it), and for a
 *   repeated key the last one wins, as in Python's json that vLLM uses.
 * - The rewrite copies every kept member's bytes unchanged; only whitespace and commas between
 *   members may change. The x_* members are the top-level ones only.
 * - Strings are scanned 8 bytes at a time (lx_json_plain_end, utils/buf.h); that is the hot path, as a
 *   big request is mostly message text.
 * - The scan is also the token estimate's only pass (limits/tokens.h): scan_string adds each
 *   string's characters (a run of plain bytes is that many ASCII characters, a validated UTF-8
 *   sequence one code point, two past U+FFFF, an escape one), skip_value counts objects. Each byte of
 *   the body is counted once: a sub-walk of a member already skipped (stream_options) counts into
 *   a throwaway.
 */
#include "api/body.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LX_JSON_MAX_DEPTH 512
#define BAD               SIZE_MAX /* a scan function's failure return */
#define KEY_DECODE_MAX    64       /* escaped keys are unescaped into a buffer this big (longer: cut) */

typedef struct {
    size_t key;     /* the key's opening quote */
    size_t key_end; /* just past its closing quote */
    bool key_esc;   /* the key holds a backslash escape */
    size_t val;     /* the value's first byte */
    size_t end;     /* just past the value */
} member;

typedef struct {
    const char *s;
    size_t len;
    size_t i;            /* where the next member (or the closing brace) is looked for */
    size_t n;            /* members seen */
    lx_token_counts *tc; /* what the strings and objects inside add up to (tokens.h) */
} obj_iter;

/* ---- lexical pieces ---------------------------------------------------------------------- */

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t'))
        i++;
    return i;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool is_hex(char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

static size_t hex4(const char *p)
{
    size_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v = v * 16 + (size_t)(is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* i at the opening quote. Returns the index past the closing quote, or BAD. Adds the string's
 * characters to tc as tokens.h counts them (ASCII, and code points above: two past U+FFFF). */
static size_t scan_string(const char *s, size_t len, size_t i, bool *esc, lx_token_counts *tc)
{
    for (i++;;) {
        size_t run = i;
        i = lx_json_plain_end(s, len, i);
        tc->ascii_chars += i - run;
        if (i < len && (unsigned char)s[i] >= 0x80) {
            size_t n = lx_utf8_seq(s, len, i);
            if (n == 0) return BAD;
            tc->wide_chars += n == 4 ? 2 : 1;
            i += n;
            continue;
        }
        if (i >= len || s[i] != '\\') return (i < len && s[i] == '"') ? i + 1 : BAD;
        *esc = true;
        if (i + 1 >= len) return BAD;
        char c = s[i + 1];
        if (c == 'u') {
            if (len - i < 6 || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) || !is_hex(s[i + 4]) || !is_hex(s[i + 5]))
                return BAD;
            if (hex4(s + i + 2) < 0x80)
                tc->ascii_chars++;
            else
                tc->wide_chars++; /* a surrogate pair is two escapes: two, as for any code point above U+FFFF */
            i += 6;
        } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
            tc->ascii_chars++;
            i += 2;
        } else {
            return BAD;
        }
    }
}

static size_t scan_digits(const char *s, size_t len, size_t i)
{
    if (i >= len || !is_digit(s[i])) return BAD;
    while (i < len && is_digit(s[i]))
        i++;
    return i;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t scan_number(const char *s, size_t len, size_t i)
{
    if (i < len && s[i] == '-') i++;
    if (i < len && s[i] == '0')
        i++;
    else
        i = scan_digits(s, len, i);
    if (i != BAD && i < len && s[i] == '.') i = scan_digits(s, len, i + 1);
    if (i != BAD && i < len && (s[i] | 0x20) == 'e') {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        i = scan_digits(s, len, i);
    }
    return i;
}

static size_t scan_literal(const char *s, size_t len, size_t i, const char *lit, size_t n)
{
    return (len - i >= n && memcmp(s + i, lit, n) == 0) ? i + n : BAD;
}

/* A string, number, true, false or null at i (i < len). */
static size_t scan_scalar(const char *s, size_t len, size_t i, lx_token_counts *tc)
{
    bool esc = false;
    switch (s[i]) {
    case '"': return scan_string(s, len, i, &esc, tc);
    case 't': return scan_literal(s, len, i, "true", 4);
    case 'f': return scan_literal(s, len, i, "false", 5);
    case 'n': return scan_literal(s, len, i, "null", 4);
    default: return (s[i] == '-' || is_digit(s[i])) ? scan_number(s, len, i) : BAD;
    }
}

/* i at a key's quote: the key, whitespace, the colon. Returns the index past the colon. */
static size_t scan_key(const char *s, size_t len, size_t i, lx_token_counts *tc)
{
    bool esc = false;
    if (i >= len || s[i] != '"') return BAD;
    i = skip_ws(s, len, scan_string(s, len, i, &esc, tc));
    return (i < len && s[i] == ':') ? i + 1 : BAD;
}

/* ---- skipping a whole value -------------------------------------------------------------- */

typedef struct {
    uint64_t is_obj[LX_JSON_MAX_DEPTH / 64]; /* bit d: the container at depth d is an object */
    size_t depth;
} nest;

static bool nest_push(nest *n, bool obj)
{
    if (n->depth == LX_JSON_MAX_DEPTH) return false;
    uint64_t bit = 1ULL << (n->depth & 63);
    if (obj)
        n->is_obj[n->depth >> 6] |= bit;
    else
        n->is_obj[n->depth >> 6] &= ~bit;
    n->depth++;
    return true;
}

static bool nest_top_is_obj(const nest *n)
{
    size_t d = n->depth - 1;
    return (n->is_obj[d >> 6] >> (d & 63)) & 1;
}

/* After a value inside containers: closes what ends here and steps over one separator (and the
 * next key in an object). Returns where the next value starts, or where the outermost closed. */
static size_t after_value(const char *s, size_t len, size_t i, nest *n, lx_token_counts *tc)
{
    while (n->depth > 0) {
        i = skip_ws(s, len, i);
        if (i >= len) return BAD;
        bool obj = nest_top_is_obj(n);
        if (s[i] == ',') return obj ? scan_key(s, len, skip_ws(s, len, i + 1), tc) : i + 1;
        if (s[i] != (obj ? '}' : ']')) return BAD;
        n->depth--;
        i++;
    }
    return i;
}

/* i at a value's first byte (whitespace allowed). Returns the index just past the value. */
static size_t skip_value(const char *s, size_t len, size_t i, lx_token_counts *tc)
{
    nest n;
    n.depth = 0;
    for (;;) {
        i = skip_ws(s, len, i);
        if (i >= len) return BAD;
        char c = s[i];
        if (c == '{' || c == '[') {
            if (!nest_push(&n, c == '{')) return BAD;
            tc->objects += c == '{';
            i = skip_ws(s, len, i + 1);
            if (i < len && s[i] == (c == '{' ? '}' : ']')) {
                n.depth--;
                i++;
            } else {
                if (c == '{' && (i = scan_key(s, len, i, tc)) == BAD) return BAD;
                continue;
            }
        } else if ((i = scan_scalar(s, len, i, tc)) == BAD) {
            return BAD;
        }
        i = after_value(s, len, i, &n, tc);
        if (i == BAD || n.depth == 0) return i;
    }
}

/* ---- walking an object's members --------------------------------------------------------- */

/* i at (or whitespace before) the object's '{'. */
static bool obj_open(obj_iter *it, const char *s, size_t len, size_t i, lx_token_counts *tc)
{
    i = skip_ws(s, len, i);
    *it = (obj_iter){s, len, i + 1, 0, tc};
    return i < len && s[i] == '{';
}

/* 1: *m is the next member; 0: the object closed (it->i just past '}'); -1: not valid JSON. */
static int obj_next(obj_iter *it, member *m)
{
    const char *s = it->s;
    size_t len = it->len;
    size_t i = skip_ws(s, len, it->i);
    if (i >= len) return -1;
    if (s[i] == '}') {
        it->i = i + 1;
        return 0;
    }
    if (it->n > 0) {
        if (s[i] != ',') return -1;
        i = skip_ws(s, len, i + 1);
    }
    if (i >= len || s[i] != '"') return -1;
    m->key = i;
    m->key_esc = false;
    if ((m->key_end = scan_string(s, len, i, &m->key_esc, it->tc)) == BAD) return -1;
    i = skip_ws(s, len, m->key_end);
    if (i >= len || s[i] != ':') return -1;
    m->val = skip_ws(s, len, i + 1);
    if ((m->end = skip_value(s, len, m->val, it->tc)) == BAD) return -1;
    it->i = m->end;
    it->n++;
    return 1;
}

/* The key's text, unescaped when needed into buf, cut at KEY_DECODE_MAX bytes (so an escaped key
 * matches only names shorter than that). A non-ASCII \u escape becomes 0xFF: it matches no name. */
static lx_slice key_text(const char *s, const member *m, char *buf)
{
    const char *p = s + m->key + 1;
    size_t n = m->key_end - m->key - 2, o = 0;
    if (!m->key_esc) return (lx_slice){p, n};
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    for (size_t i = 0; i < n && o < KEY_DECODE_MAX; o++) {
        if (p[i] != '\\') {
            buf[o] = p[i++];
        } else if (p[i + 1] == 'u') {
            size_t cp = hex4(p + i + 2);
            buf[o] = cp < 0x80 ? (char)cp : (char)0xFF;
            i += 6;
        } else {
            buf[o] = to[strchr(from, p[i + 1]) - from];
            i += 2;
        }
    }
    return (lx_slice){buf, o};
}

static bool key_is(const char *s, const member *m, const char *name)
{
    char buf[KEY_DECODE_MAX];
    return lx_slice_eq(key_text(s, m, buf), name);
}

/* ---- typed values ------------------------------------------------------------------------ */

static bool val_is(const char *s, const member *m, const char *lit)
{
    size_t n = strlen(lit);
    return m->end - m->val == n && memcmp(s + m->val, lit, n) == 0;
}

/* A non-negative integer written without fraction or exponent, that fits a long. */
static bool val_count(const char *s, const member *m, long *out)
{
    long v = 0;
    if (m->val == m->end) return false;
    for (size_t i = m->val; i < m->end; i++) {
        if (!is_digit(s[i]) || v > (LONG_MAX - 9) / 10) return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool val_number(const char *s, const member *m, double *out)
{
    char tmp[64];
    size_t n = m->end - m->val;
    if (n == 0 || n >= sizeof tmp || !(s[m->val] == '-' || is_digit(s[m->val]))) return false;
    memcpy(tmp, s + m->val, n);
    tmp[n] = '\0';
    *out = strtod(tmp, NULL); /* the "C" locale: Lexora never calls setlocale */
    return isfinite(*out);
}

static lx_slice val_string(const char *s, const member *m) { return (lx_slice){s + m->val + 1, m->end - m->val - 2}; }

/* ---- lx_body_scan ------------------------------------------------------------------------ */

enum key_kind {
    K_OTHER,
    K_MODEL,
    K_MESSAGES,
    K_PROMPT,
    K_STREAM,
    K_STREAM_OPTIONS,
    K_MAX_TOKENS,
    K_MAX_COMPLETION_TOKENS,
    K_N,
    K_PRIORITY,
    K_X_PRIORITY,
    K_X_USER_ID,
    K_X_TIMEOUT,
    K_X_ROUTE,
    K_X_FALLBACK,
    K_X_VARIANT,
    K_X_OTHER
};

static enum key_kind classify(lx_slice k)
{
    static const struct {
        const char *name;
        enum key_kind kind;
    } known[] = {
        {"model", K_MODEL},
        {"messages", K_MESSAGES},
        {"prompt", K_PROMPT},
        {"stream", K_STREAM},
        {"stream_options", K_STREAM_OPTIONS},
        {"max_tokens", K_MAX_TOKENS},
        {"max_completion_tokens", K_MAX_COMPLETION_TOKENS},
        {"n", K_N},
        {"priority", K_PRIORITY},
        {"x_priority", K_X_PRIORITY},
        {"x_user_id", K_X_USER_ID},
        {"x_timeout", K_X_TIMEOUT},
        {"x_route", K_X_ROUTE},
        {"x_fallback", K_X_FALLBACK},
        {"x_variant", K_X_VARIANT},
    };
    if (k.len == 0 || (k.p[0] != 'm' && k.p[0] != 'n' && k.p[0] != 'p' && k.p[0] != 's' && k.p[0] != 'x'))
        return K_OTHER;
    for (size_t i = 0; i < LX_ARRAY_LEN(known); i++)
        if (lx_slice_eq(k, known[i].name)) return known[i].kind;
    return (k.len >= 2 && k.p[0] == 'x' && k.p[1] == '_') ? K_X_OTHER : K_OTHER;
}

static int field_error(lx_body_error *err, const char *param, const char *what)
{
    err->err = LX_ERR_INVALID_FIELD;
    err->param = param;
    if (param)
        snprintf(err->message, sizeof err->message, "'%s' must be %s", param, what);
    else
        snprintf(err->message, sizeof err->message, "%s", what);
    return -1;
}

static int json_error(lx_body_error *err, const char *what)
{
    err->err = LX_ERR_INVALID_JSON;
    err->param = NULL;
    snprintf(err->message, sizeof err->message, "%s", what);
    return -1;
}

static int take_stream_options(const char *s, const member *m, lx_body_fields *f, lx_body_error *err)
{
    f->stream_options = (lx_span){m->key, m->end};
    f->has_stream_options = s[m->val] == '{';
    f->include_usage = false;
    f->include_usage_value = (lx_span){0, 0};
    if (val_is(s, m, "null")) return 0;
    if (!f->has_stream_options) return field_error(err, "stream_options", "an object");
    obj_iter it;
    member sub;
    lx_token_counts counted_already = {0}; /* the member's strings were counted when it was skipped */
    obj_open(&it, s, m->end, m->val, &counted_already);
    while (obj_next(&it, &sub) == 1) {
        if (!key_is(s, &sub, "include_usage")) continue;
        if (!val_is(s, &sub, "true") && !val_is(s, &sub, "false") && !val_is(s, &sub, "null"))
            return field_error(err, "stream_options.include_usage", "a boolean");
        f->include_usage = val_is(s, &sub, "true");
        f->include_usage_value = (lx_span){sub.val, sub.end};
    }
    return 0;
}

static int take_x(const char *s, const member *m, enum key_kind kind, lx_body_fields *f, lx_body_error *err)
{
    if (f->n_x == LX_BODY_MAX_XFIELDS) {
        field_error(err, NULL, "");
        snprintf(err->message, sizeof err->message, "at most %d x_* fields are allowed", LX_BODY_MAX_XFIELDS);
        return -1;
    }
    f->members_x[f->n_x++] = (lx_span){m->key, m->end};
    bool null = val_is(s, m, "null"), str = s[m->val] == '"';
    if (kind == K_X_PRIORITY) {
        if (!null && !str) return field_error(err, "x_priority", "a string");
        f->has_x_priority = str;
        f->x_priority = str ? val_string(s, m) : (lx_slice){NULL, 0};
    } else if (kind == K_X_USER_ID) {
        if (!null && !str) return field_error(err, "x_user_id", "a string");
        f->has_x_user_id = str;
        f->x_user_id = str ? val_string(s, m) : (lx_slice){NULL, 0};
    } else if (kind == K_X_ROUTE) {
        if (!null && !str) return field_error(err, "x_route", "a string");
        f->has_x_route = str;
        f->x_route = str ? val_string(s, m) : (lx_slice){NULL, 0};
    } else if (kind == K_X_VARIANT) {
        if (!null && !str) return field_error(err, "x_variant", "a string");
        f->has_x_variant = str;
        f->x_variant = str ? val_string(s, m) : (lx_slice){NULL, 0};
    } else if (kind == K_X_FALLBACK) {
        if (!null && !val_is(s, m, "true") && !val_is(s, m, "false"))
            return field_error(err, "x_fallback", "a boolean");
        f->no_fallback = val_is(s, m, "false");
    } else if (kind == K_X_TIMEOUT) {
        double t = 0;
        if (!null && (!val_number(s, m, &t) || t <= 0))
            return field_error(err, "x_timeout", "a positive number of seconds");
        f->has_x_timeout = !null;
        f->x_timeout = null ? 0 : t;
    }
    return 0;
}

/* Reads one top-level member into f. Returns -1 (err filled) when a known field has a bad value. */
static int take_member(const char *s, const member *m, lx_body_fields *f, lx_body_error *err)
{
    char buf[KEY_DECODE_MAX];
    enum key_kind kind = classify(key_text(s, m, buf));
    bool null = val_is(s, m, "null");
    long count;
    switch (kind) {
    case K_OTHER: return 0;
    case K_MODEL:
        if (s[m->val] != '"') return field_error(err, "model", "a string");
        f->model = val_string(s, m);
        f->model_value = (lx_span){m->val, m->end};
        f->has_model = true;
        return 0;
    case K_MESSAGES:
        f->has_messages = !null;
        f->messages_is_array = s[m->val] == '[';
        f->prompt = (lx_slice){s + m->val, m->end - m->val};
        return 0;
    case K_PROMPT: f->prompt = (lx_slice){s + m->val, m->end - m->val}; return 0;
    case K_STREAM:
        if (!null && !val_is(s, m, "true") && !val_is(s, m, "false")) return field_error(err, "stream", "a boolean");
        f->stream = val_is(s, m, "true");
        return 0;
    case K_STREAM_OPTIONS: return take_stream_options(s, m, f, err);
    case K_MAX_TOKENS:
        f->max_tokens = -1;
        if (!null && !val_count(s, m, &f->max_tokens)) return field_error(err, "max_tokens", "a non-negative integer");
        return 0;
    case K_MAX_COMPLETION_TOKENS: /* read for the estimate only: a value of another type is the backend's business */
        if (val_count(s, m, &count)) f->tokens.max_completion_tokens = count;
        return 0;
    case K_N:
        if (val_count(s, m, &count) && count >= 1) f->tokens.n = count;
        return 0;
    case K_PRIORITY: /* vLLM's own field: only its place is kept, for the rewrite to replace */
        f->priority = (lx_span){m->val, m->end};
        return 0;
    default: return take_x(s, m, kind, f, err);
    }
}

int lx_body_scan(const char *body, size_t len, lx_body_fields *f, lx_body_error *err)
{
    *f = (lx_body_fields){.max_tokens = -1, .tokens = {.objects = 1, .max_completion_tokens = -1, .n = 1}};
    lx_body_error field_err;
    bool bad_field = false;
    obj_iter it;
    member m;
    int r;

    if (!obj_open(&it, body, len, 0, &f->tokens)) return json_error(err, "the request body must be a JSON object");
    size_t start = it.i - 1;
    while ((r = obj_next(&it, &m)) == 1)
        if (!bad_field && take_member(body, &m, f, &field_err) < 0) bad_field = true;
    if (r < 0) return json_error(err, "the request body is not valid JSON");
    if (skip_ws(body, len, it.i) != len) return json_error(err, "the request body has data after the JSON object");
    if (bad_field) {
        *err = field_err;
        return -1;
    }
    f->n_members = it.n;
    f->top = (lx_slice){body + start, it.i - start};
    return 0;
}

/* ---- lx_body_rewrite --------------------------------------------------------------------- */

/* stream_options is touched only on streams: vLLM answers 400 to stream_options without stream:true. */
static bool forces_usage(const lx_body_fields *f, const lx_body_rewrite_opts *o)
{
    return o->force_include_usage && f->stream && !f->include_usage;
}

/* The body names a model, and not the one it must name. */
static bool replaces_model(const lx_body_fields *f, const lx_body_rewrite_opts *o)
{
    return o->set_model && f->has_model && !lx_slice_eq(f->model, o->set_model);
}

bool lx_body_rewrite_is_noop(const lx_body_fields *f, const lx_body_rewrite_opts *o)
{
    return f->n_x == 0 && !(o->set_model && !f->has_model) && !replaces_model(f, o) && !forces_usage(f, o) &&
           !(o->priority && o->priority[0]);
}

typedef struct {
    size_t at, end; /* body[at, end) is replaced by text */
    const char *text;
} patch;

#define MAX_PATCHES 3 /* model, stream_options.include_usage and priority: inside three different members */

typedef struct {
    lx_buf *out;
    const char *body;
    bool comma; /* a member has been written: the next one needs a comma */
    int rc;
} writer;

static void put(writer *w, const char *p, size_t n)
{
    if (w->rc == 0 && n) w->rc = lx_buf_append(w->out, p, n);
}

static void put_str(writer *w, const char *s) { put(w, s, strlen(s)); }

static void put_sep(writer *w)
{
    if (w->comma) put(w, ",", 1);
    w->comma = true;
}

static bool ws_or_comma(char c) { return c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* Writes the members in body[a, b) (whole members and separators, as left between removed ones),
 * with the patches that fall inside (pt sorted by position, not overlapping). */
static void put_segment(writer *w, size_t a, size_t b, const patch *pt, size_t npt)
{
    while (a < b && ws_or_comma(w->body[a]))
        a++;
    while (b > a && ws_or_comma(w->body[b - 1]))
        b--;
    if (a == b) return;
    put_sep(w);
    for (size_t k = 0; k < npt; k++) {
        if (pt[k].at < a || pt[k].at >= b) continue;
        put(w, w->body + a, pt[k].at - a);
        put_str(w, pt[k].text);
        a = pt[k].end;
    }
    put(w, w->body + a, b - a);
}

/* How stream_options is made to say include_usage:true: in place when the member is there. */
static patch usage_patch(const char *body, const lx_body_fields *f, bool *append)
{
    lx_span so = f->stream_options;
    *append = false;
    if (so.end == 0) {
        *append = true;
        return (patch){0, 0, NULL};
    }
    if (!f->has_stream_options) return (patch){so.end - 4, so.end, "{\"include_usage\":true}"};
    if (f->include_usage_value.end) return (patch){f->include_usage_value.start, f->include_usage_value.end, "true"};
    size_t close = so.end - 1, k = close;
    while (k > so.start && body[k - 1] != '{' && ws_or_comma(body[k - 1]))
        k--;
    return (patch){close, close, body[k - 1] == '{' ? "\"include_usage\":true" : ",\"include_usage\":true"};
}

static int by_position(const void *a, const void *b)
{
    const patch *x = a, *y = b;
    return (x->at > y->at) - (x->at < y->at);
}

/* The edits inside kept members, in body order. Sets *append_usage / *append_priority when the
 * member is absent and must be appended instead. model_text: the model's new value, as JSON. Returns how
 * many. */
static size_t plan_patches(const char *body, const lx_body_fields *f, const lx_body_rewrite_opts *o,
                           const char *model_text, patch *pt, bool *append_usage, bool *append_priority)
{
    size_t n = 0;
    *append_usage = *append_priority = false;
    if (model_text) pt[n++] = (patch){f->model_value.start, f->model_value.end, model_text};
    if (forces_usage(f, o)) {
        patch u = usage_patch(body, f, append_usage);
        if (u.text) pt[n++] = u;
    }
    if (o->priority && o->priority[0]) {
        if (f->priority.end == 0)
            *append_priority = true;
        else
            pt[n++] = (patch){f->priority.start, f->priority.end, o->priority};
    }
    qsort(pt, n, sizeof *pt, by_position);
    return n;
}

int lx_body_rewrite(const char *body, size_t len, const lx_body_fields *f, const lx_body_rewrite_opts *o, lx_buf *out)
{
    (void)len;
    size_t old_len = out->len, top = (size_t)(f->top.p - body), top_end = top + f->top.len;
    writer w = {out, body, false, 0};
    bool append_usage, append_priority;
    patch pt[MAX_PATCHES];
    lx_buf model_text;
    lx_buf_init(&model_text, 0);
    if (replaces_model(f, o)) {
        lx_buf_append_str(&model_text, "\"");
        lx_buf_json_escape(&model_text, o->set_model, strlen(o->set_model));
        lx_buf_append_str(&model_text, "\"");
    }
    size_t npt = plan_patches(body, f, o, model_text.p, pt, &append_usage, &append_priority);

    lx_buf_reserve(out, f->top.len + (o->set_model ? strlen(o->set_model) + 16 : 0) +
                            (o->priority ? strlen(o->priority) + 12 : 0) + 64); /* a hint; appends check */
    put(&w, "{", 1);
    if (o->set_model && !f->has_model) {
        put_sep(&w);
        put_str(&w, "\"model\":\"");
        if (w.rc == 0) w.rc = lx_buf_json_escape(out, o->set_model, strlen(o->set_model));
        put(&w, "\"", 1);
    }
    size_t a = top + 1;
    for (size_t k = 0; k < f->n_x; k++) {
        put_segment(&w, a, f->members_x[k].start, pt, npt);
        a = f->members_x[k].end;
    }
    put_segment(&w, a, top_end - 1, pt, npt);
    if (append_usage) {
        put_sep(&w);
        put_str(&w, "\"stream_options\":{\"include_usage\":true}");
    }
    if (append_priority) {
        put_sep(&w);
        put_str(&w, "\"priority\":");
        put_str(&w, o->priority);
    }
    put(&w, "}", 1);
    lx_buf_free(&model_text);
    if (w.rc == 0) return 0;
    out->len = old_len;
    if (out->p) out->p[old_len] = '\0';
    return -1;
}

/* ---- small readers for upstream answers -------------------------------------------------- */

/* Finding one member: the object is walked backwards from its closing brace, without validating. A backend's
 * answer is passed on as it came, the members read from it (usage, error) come last, and for a repeated key
 * the last one counts. What lies before the member found (the answer's text, mostly) is not read at all. A
 * quote is a string's end or start unless an odd run of backslashes precedes it, whichever way it is read. */

/* Backwards from e, past whitespace, not below lo. */
static size_t ws_before(const char *s, size_t lo, size_t e)
{
    while (e > lo && (s[e - 1] == ' ' || s[e - 1] == '\n' || s[e - 1] == '\r' || s[e - 1] == '\t'))
        e--;
    return e;
}

/* The quote that opens the string whose closing quote is at k: the nearest quote above lo before k that is
 * not escaped. BAD if there is none. */
static size_t string_start(const char *s, size_t lo, size_t k)
{
    for (;;) {
        const char *q = k > lo + 1 ? memrchr(s + lo + 1, '"', k - lo - 1) : NULL;
        if (q == NULL) return BAD;
        size_t j = (size_t)(q - s), run = 0;
        while (j - run > lo + 1 && s[j - 1 - run] == '\\')
            run++;
        if (run % 2 == 0) return j;
        k = j;
    }
}

/* What the walk stops at: quotes, brackets, and (ending a value at its start) ':', ',' and whitespace. */
enum { L_PLAIN, L_QUOTE, L_OPEN, L_CLOSE, L_SEP };
static const unsigned char walk_class[256] = {
    ['"'] = L_QUOTE, ['{'] = L_OPEN, ['['] = L_OPEN, ['}'] = L_CLOSE, [']'] = L_CLOSE, [':'] = L_SEP,
    [','] = L_SEP,   [' '] = L_SEP,  ['\n'] = L_SEP, ['\r'] = L_SEP,  ['\t'] = L_SEP};

/* Where the value that ends at e starts (all above lo): a string at its opening quote, a container at its
 * opening bracket (strings inside stepped over), anything else after the ':' or whitespace before it. BAD if a
 * string or container does not start. */
static size_t value_start(const char *s, size_t lo, size_t e)
{
    size_t depth = 0, i = e;
    while (i > lo + 1) {
        switch (walk_class[(unsigned char)s[i - 1]]) {
        case L_PLAIN: i--; continue;
        case L_SEP:
            if (depth == 0) return i;
            i--;
            continue;
        case L_CLOSE:
            depth++;
            i--;
            continue;
        case L_QUOTE:
            if ((i = string_start(s, lo, i - 1)) == BAD) return BAD;
            break;
        case L_OPEN:
            if (depth == 0) return i;
            depth--;
            i--;
            break;
        }
        if (depth == 0) return i; /* a string or a container started */
    }
    return depth == 0 ? i : BAD;
}

bool lx_json_find_member(const char *body, size_t len, const char *key, lx_slice *value)
{
    size_t lo = skip_ws(body, len, 0), e = ws_before(body, lo, len);
    if (lo >= len || body[lo] != '{' || e < lo + 2 || body[e - 1] != '}') return false;
    for (e = ws_before(body, lo, e - 1); e > lo + 1;) { /* e: the end of the last member not yet read */
        member m = {.end = e};
        if ((m.val = value_start(body, lo, e)) == BAD || m.val == e) return false;
        size_t colon = ws_before(body, lo, m.val);
        if (colon <= lo + 1 || body[colon - 1] != ':') return false;
        m.key_end = ws_before(body, lo, colon - 1);
        if (m.key_end <= lo + 1 || body[m.key_end - 1] != '"') return false;
        if ((m.key = string_start(body, lo, m.key_end - 1)) == BAD) return false;
        lx_token_counts unused = {0};
        m.key_esc = memchr(body + m.key, '\\', m.key_end - m.key) != NULL;
        if (m.key_esc && scan_string(body, len, m.key, &m.key_esc, &unused) != m.key_end) return false; /* key_text */
        if (key_is(body, &m, key)) {
            *value = (lx_slice){body + m.val, m.end - m.val};
            return true;
        }
        size_t before = ws_before(body, lo, m.key);
        if (before == lo + 1 || body[before - 1] != ',') return false; /* the first member, or not a member */
        e = ws_before(body, lo, before - 1);
    }
    return false;
}

bool lx_usage_parse(const char *json, size_t len, lx_usage *out)
{
    obj_iter it;
    member m;
    lx_token_counts unused = {0};
    int r;
    *out = (lx_usage){-1, -1};
    if (!obj_open(&it, json, len, 0, &unused)) return false;
    while ((r = obj_next(&it, &m)) == 1) {
        long *dst = key_is(json, &m, "prompt_tokens")       ? &out->prompt_tokens
                    : key_is(json, &m, "completion_tokens") ? &out->completion_tokens
                                                            : NULL;
        if (dst && !val_count(json, &m, dst)) *dst = -1;
    }
    return r == 0 && skip_ws(json, len, it.i) == len;
}
