/*
 * The text of a request's messages or prompt, for the analyzer. See prompt_text.h.
 *
 * One walk over the value records where the interesting contents are (the last user message, the first
 * system message, the message before the last user one); then only those are unescaped. Both steps are
 * linear; a malformed value ends the walk (every step checks its bound), so the worst a bad body gets is
 * an empty or partial text.
 */
#include "routing/prompt_text.h"

#include <string.h>

#define END SIZE_MAX /* a walk step's failure: the value ends (or breaks) here */

typedef struct {
    const char *s;
    size_t len;
} src;

typedef struct {
    size_t at; /* the content value's first byte; END for none */
} span;

static size_t ws(const src *r, size_t i)
{
    while (i < r->len && (r->s[i] == ' ' || r->s[i] == '\n' || r->s[i] == '\r' || r->s[i] == '\t'))
        i++;
    return i;
}

/* i at a quote: past the closing quote, or END. A quote preceded by an odd run of backslashes is escaped. */
static size_t skip_string(const src *r, size_t i)
{
    for (i++; i < r->len;) {
        const char *q = memchr(r->s + i, '"', r->len - i);
        if (q == NULL) return END;
        size_t at = (size_t)(q - r->s), k = at;
        while (k > i && r->s[k - 1] == '\\')
            k--;
        if ((at - k) % 2 == 0) return at + 1;
        i = at + 1;
    }
    return END;
}

/* Past the value at i (after whitespace), or END. */
static size_t skip_value(const src *r, size_t i)
{
    i = ws(r, i);
    if (i >= r->len) return END;
    char c = r->s[i];
    if (c == '"') return skip_string(r, i);
    if (c != '{' && c != '[') {
        size_t start = i;
        while (i < r->len && r->s[i] != '\0' && !strchr(",}] \t\r\n", r->s[i]))
            i++;
        return i > start ? i : END; /* no progress: not a value */
    }
    size_t depth = 0;
    for (; i < r->len; i++) {
        c = r->s[i];
        if (c == '"') {
            i = skip_string(r, i);
            if (i == END) return END;
            i--;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            return i + 1;
        }
    }
    return END;
}

/* ---- unescaping into a bounded buffer ---- */

typedef struct {
    char *p;
    size_t len, cap;
    bool full; /* a character did not fit: nothing more is written */
} sink;

static void put_bytes(sink *o, const char *b, size_t n)
{
    if (o->full) return;
    if (o->cap - o->len < n) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, b, n);
    o->len += n;
}

static void put_cp(sink *o, unsigned cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | cp >> 12);
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | cp >> 18);
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    put_bytes(o, b, n);
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Four hex digits at i, or -1. */
static long hex4(const src *r, size_t i)
{
    if (r->len - i < 4) return -1;
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexv(r->s[i + (size_t)k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* i just past a backslash: writes the escape, returns the index past it (END when broken). */
static size_t unescape(const src *r, size_t i, sink *o)
{
    if (i >= r->len) return END;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = strchr(from, r->s[i]);
    if (r->s[i] != 'u') {
        if (k == NULL || r->s[i] == '\0') return END;
        put_bytes(o, &to[k - from], 1);
        return i + 1;
    }
    long cp = hex4(r, i + 1);
    if (cp < 0) return END;
    i += 5;
    if (cp >= 0xD800 && cp <= 0xDBFF && r->len - i >= 6 && r->s[i] == '\\' && r->s[i + 1] == 'u') {
        long lo = hex4(r, i + 2);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            put_cp(o, (unsigned)(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)));
            return i + 6;
        }
    }
    put_cp(o, cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFDu : (unsigned)cp);
    return i;
}

/* The byte length of the UTF-8 sequence a lead byte starts (1 for anything else). */
static size_t seq_len(unsigned char c) { return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1; }

/* Appends a run of raw string bytes; when it does not fit, as much as fits up to a character boundary. */
static void put_run(sink *o, const char *b, size_t n)
{
    if (o->full || n == 0) return;
    if (o->cap - o->len >= n) {
        memcpy(o->p + o->len, b, n);
        o->len += n;
        return;
    }
    size_t fit = o->cap - o->len, k = 0, next;
    while (k < fit && (next = k + seq_len((unsigned char)b[k])) <= fit)
        k = next;
    memcpy(o->p + o->len, b, k);
    o->len += k;
    o->full = true;
}

/* i at a quote: the string's text appended to o; past the closing quote, or END. */
static size_t read_string(const src *r, size_t i, sink *o)
{
    for (i++; i < r->len;) {
        size_t run = i;
        while (i < r->len && r->s[i] != '"' && r->s[i] != '\\')
            i++;
        put_run(o, r->s + run, i - run);
        if (i >= r->len) return END;
        if (r->s[i] == '"') return i + 1;
        i = unescape(r, i + 1, o);
        if (i == END) return END;
    }
    return END;
}

/* ---- a content value: a string, or an array of parts ---- */

static void separate(sink *o)
{
    if (o->len) put_bytes(o, "\n", 1);
}

/* The "text" member of a part object at i. */
static size_t read_part(const src *r, size_t i, sink *o)
{
    for (i = ws(r, i + 1); i < r->len && r->s[i] == '"';) {
        size_t key = i;
        i = ws(r, skip_string(r, i));
        if (i == END || i >= r->len || r->s[i] != ':') return END;
        i = ws(r, i + 1);
        if (i - key >= 6 && memcmp(r->s + key, "\"text\"", 6) == 0 && i < r->len && r->s[i] == '"') {
            separate(o);
            i = read_string(r, i, o);
        } else {
            i = skip_value(r, i);
        }
        if (i == END) return END;
        i = ws(r, i);
        if (i < r->len && r->s[i] == ',') i = ws(r, i + 1);
    }
    return i < r->len && r->s[i] == '}' ? i + 1 : END;
}

static void read_content(const src *r, size_t i, sink *o)
{
    i = ws(r, i);
    if (i >= r->len) return;
    if (r->s[i] == '"') {
        separate(o);
        read_string(r, i, o);
        return;
    }
    if (r->s[i] != '[') return;
    for (i = ws(r, i + 1); i < r->len && r->s[i] != ']' && !o->full;) {
        if (r->s[i] == '"') {
            separate(o);
            i = read_string(r, i, o);
        } else if (r->s[i] == '{') {
            i = read_part(r, i, o);
        } else {
            i = skip_value(r, i);
        }
        if (i == END) return;
        i = ws(r, i);
        if (i < r->len && r->s[i] == ',') i = ws(r, i + 1);
    }
}

/* ---- the messages ---- */

typedef enum { ROLE_OTHER, ROLE_USER, ROLE_SYSTEM } role;

static role role_of(const src *r, size_t i)
{
    size_t end = skip_string(r, i);
    if (end == END) return ROLE_OTHER;
    lx_slice v = {r->s + i + 1, end - i - 2};
    if (lx_slice_eq(v, "user")) return ROLE_USER;
    if (lx_slice_eq(v, "system") || lx_slice_eq(v, "developer")) return ROLE_SYSTEM;
    return ROLE_OTHER;
}

/* One message object at i: its role and its content's place. Returns past it, or END. */
static size_t read_message(const src *r, size_t i, role *ro, size_t *content)
{
    *ro = ROLE_OTHER;
    *content = END;
    for (i = ws(r, i + 1); i < r->len && r->s[i] == '"';) {
        size_t key = i;
        i = ws(r, skip_string(r, i));
        if (i == END || i >= r->len || r->s[i] != ':') return END;
        size_t klen = i - key;
        while (klen > 0 && r->s[key + klen - 1] != '"')
            klen--;
        lx_slice k = {r->s + key, klen};
        i = ws(r, i + 1);
        if (lx_slice_eq(k, "\"role\"") && i < r->len && r->s[i] == '"') *ro = role_of(r, i);
        if (lx_slice_eq(k, "\"content\"")) *content = i;
        i = skip_value(r, i);
        if (i == END) return END;
        i = ws(r, i);
        if (i < r->len && r->s[i] == ',') i = ws(r, i + 1);
    }
    return i < r->len && r->s[i] == '}' ? i + 1 : END;
}

typedef struct {
    size_t last_user, before_user, system, previous; /* content places, END for none */
} places;

static void walk_messages(const src *r, size_t i, lx_prompt_text *out, places *pl)
{
    for (i = ws(r, i + 1); i < r->len && r->s[i] == '{';) {
        role ro;
        size_t content;
        i = read_message(r, i, &ro, &content);
        if (i == END) return;
        out->n_messages++;
        if (ro == ROLE_USER && content != END) {
            pl->before_user = pl->previous;
            pl->last_user = content;
        } else if (ro == ROLE_SYSTEM && pl->system == END) {
            pl->system = content; /* the first system message only */
        }
        pl->previous = content;
        i = ws(r, i);
        if (i < r->len && r->s[i] == ',') i = ws(r, i + 1);
    }
}

void lx_prompt_text_read(lx_slice value, lx_prompt_text *out)
{
    out->len = out->context_len = out->n_messages = 0;
    out->cut = false;
    src r = {value.p, value.p ? value.len : 0};
    size_t i = ws(&r, 0);
    if (i >= r.len) return;
    sink text = {out->text, 0, LX_PROMPT_TEXT_MAX, false};
    size_t first = ws(&r, i + 1);
    if (r.s[i] == '[' && first < r.len && r.s[first] == '{') {
        places pl = {END, END, END, END};
        walk_messages(&r, i, out, &pl);
        if (pl.last_user != END) read_content(&r, pl.last_user, &text);
        sink sys = {out->context, 0, LX_PROMPT_SYSTEM_MAX, false};
        if (pl.system != END && pl.system != pl.before_user) read_content(&r, pl.system, &sys);
        size_t gap = sys.len ? 1 : 0; /* a newline between the two */
        sink turn = {out->context + sys.len + gap, 0, LX_PROMPT_TURN_MAX, false};
        if (pl.before_user != END) read_content(&r, pl.before_user, &turn);
        if (turn.len && gap) out->context[sys.len] = '\n';
        out->context_len = sys.len + (turn.len ? gap + turn.len : 0);
    } else {
        read_content(&r, i, &text);
    }
    out->len = text.len;
    out->cut = text.full;
}
