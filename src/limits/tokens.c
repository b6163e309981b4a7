/*
 * The prompt-token estimate: one pass over the body, counting characters inside JSON strings. See
 * tokens.h for the rule and why.
 *
 * Invariants:
 * - Single pass, no allocation, every read bounds-checked: the body was validated by lx_body_scan
 *   already, but nothing here relies on it.
 * - Inside strings, 8 bytes are taken at a time while they hold no '"' or '\\': ASCII bytes are the
 *   bytes without the high bit, code points are the UTF-8 lead bytes (11xxxxxx), and a 4-byte lead
 *   (11110xxx) counts once more. Continuation bytes count nothing.
 * - Only the top-level object's keys are looked at for max_completion_tokens and n.
 */
#include "limits/tokens.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "utils/common.h"

#define OBJECT_TOKENS 3
#define REPLY_TOKENS  3

typedef struct {
    size_t ascii, wide;
} counts;

static bool is_hex(unsigned char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

static unsigned hex_val(unsigned char c) { return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10); }

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Nonzero when v holds a '"' or a '\\' (flags may spread above a real one, never below). */
static uint64_t quote_or_backslash(uint64_t v)
{
    uint64_t q = v ^ (ONES * '"');
    uint64_t b = v ^ (ONES * '\\');
    return (((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS;
}

/* How many bytes of m (only bit 7 of each byte set) are flagged: a multiply, not a popcount, which
 * baseline x86-64 lacks. */
static size_t flagged(uint64_t m) { return (size_t)(((m >> 7) * ONES) >> 56); }

/* Counts whole words of string content; returns where it stopped (a word with a '"' or '\\'). */
static size_t count_words(const unsigned char *s, size_t len, size_t i, counts *c)
{
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        if (quote_or_backslash(v)) break;
        uint64_t high = v & HIGHS;
        if (high == 0) {
            c->ascii += 8;
            continue;
        }
        uint64_t lead = v & (v << 1) & HIGHS;               /* 11xxxxxx */
        uint64_t four = lead & (v << 2) & (v << 3) & HIGHS; /* 1111xxxx */
        c->ascii += 8 - flagged(high);
        c->wide += flagged(lead) + flagged(four);
    }
    return i;
}
#else
static size_t count_words(const unsigned char *s, size_t len, size_t i, counts *c)
{
    (void)s;
    (void)len;
    (void)c;
    return i;
}
#endif

/* i just past an opening quote. Counts the string's characters; returns the index past its closing
 * quote (or len when it is cut off). */
static size_t count_string(const unsigned char *s, size_t len, size_t i, counts *c)
{
    while (i < len) {
        i = count_words(s, len, i, c);
        if (i >= len) break;
        unsigned char ch = s[i];
        if (ch == '"') return i + 1;
        if (ch == '\\') {
            if (i + 5 < len && s[i + 1] == 'u' && is_hex(s[i + 2]) && is_hex(s[i + 3]) && is_hex(s[i + 4]) &&
                is_hex(s[i + 5])) {
                unsigned cp =
                    hex_val(s[i + 2]) << 12 | hex_val(s[i + 3]) << 8 | hex_val(s[i + 4]) << 4 | hex_val(s[i + 5]);
                if (cp < 0x80)
                    c->ascii++;
                else
                    c->wide++; /* a surrogate pair is two escapes: two, as for any code point above U+FFFF */
                i += 6;
            } else {
                c->ascii++;
                i += 2;
            }
            continue;
        }
        if (ch < 0x80)
            c->ascii++;
        else if (ch >= 0xF0)
            c->wide += 2;
        else if (ch >= 0xC0)
            c->wide++;
        i++;
    }
    return len;
}

typedef enum { KEY_OTHER, KEY_MAX_COMPLETION, KEY_N } top_key;

static top_key which_key(const unsigned char *s, size_t n)
{
    if (n == 21 && memcmp(s, "max_completion_tokens", 21) == 0) return KEY_MAX_COMPLETION;
    if (n == 1 && s[0] == 'n') return KEY_N;
    return KEY_OTHER;
}

/* A non-negative integer at i (after optional spaces), or -1 (not an integer, or too large). */
static long read_count(const unsigned char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    if (i >= len || s[i] < '0' || s[i] > '9') return -1;
    long v = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (LONG_MAX - 9) / 10) return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (i < len && (s[i] == '.' || s[i] == 'e' || s[i] == 'E')) return -1;
    return v;
}

void lx_tokens_estimate(const char *body, size_t len, lx_token_estimate *out)
{
    const unsigned char *s = (const unsigned char *)body;
    counts c = {0, 0};
    size_t objects = 0, i = 0;
    long depth = 0, max_completion = -1, n = 1;
    bool expect_key = false;
    top_key key = KEY_OTHER;

    while (s && i < len) {
        unsigned char ch = s[i++];
        switch (ch) {
        case '"': {
            size_t start = i;
            i = count_string(s, len, i, &c);
            if (depth == 1 && expect_key) {
                key = which_key(s + start, i > start ? i - start - 1 : 0);
                expect_key = false;
            }
            break;
        }
        case '{':
            objects++;
            if (++depth == 1) expect_key = true;
            break;
        case '[': depth++; break;
        case '}':
        case ']':
            if (depth > 0) depth--;
            break;
        case ',':
            if (depth == 1) {
                expect_key = true;
                key = KEY_OTHER;
            }
            break;
        case ':':
            if (depth == 1 && key != KEY_OTHER) {
                long v = read_count(s, len, i);
                if (key == KEY_MAX_COMPLETION && v >= 0) max_completion = v;
                if (key == KEY_N && v >= 1) n = v;
                key = KEY_OTHER;
            }
            break;
        default: break;
        }
    }

    size_t tokens = (c.ascii + 3) / 4 + c.wide + OBJECT_TOKENS * objects + REPLY_TOKENS;
    *out = (lx_token_estimate){
        .prompt_tokens = tokens > (size_t)(LONG_MAX / 2) ? LONG_MAX / 2 : (long)tokens,
        .max_completion_tokens = max_completion,
        .n = n,
        .ascii_chars = c.ascii,
        .wide_chars = c.wide,
        .objects = objects,
    };
}

long lx_tokens_reserve(const lx_token_estimate *e, long max_tokens, long default_cap, bool with_completion)
{
    const long top = LONG_MAX / 2;
    long prompt = e->prompt_tokens < 0 ? 0 : LX_MIN(e->prompt_tokens, top);
    if (!with_completion) return prompt;
    long cap = max_tokens >= 0 ? max_tokens : e->max_completion_tokens >= 0 ? e->max_completion_tokens : default_cap;
    if (cap < 0) cap = 0;
    long n = e->n > 0 ? e->n : 1;
    if (cap > 0 && n > (top - prompt) / cap) return top;
    return prompt + n * cap;
}
