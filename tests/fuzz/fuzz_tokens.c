/*
 * Fuzz target: the token estimate (limits/tokens.c) and the counts the body scan (api/body.c) gathers
 * for it in its one pass over every request body before admission.
 *
 * Input: 1 byte choosing max_tokens / default_cap / with_completion, the rest is the body.
 * Checks the header's promises: for a body the scan accepts, the counts equal a byte-by-byte reference
 * count of the same rule (so the word-at-a-time path and the escapes agree with it), counts are bounded
 * by the input (at most two per byte), the estimate is the documented formula of its own counts, n >= 1,
 * and lx_tokens_reserve never overflows or goes negative (a refused body reserves on empty counts).
 */
#include <limits.h>

#include "api/body.h"
#include "fuzz.h"
#include "limits/tokens.h"
#include "utils/common.h"

static const long caps[] = {-1, 0, 1, 2048, 100000, LONG_MAX / 4, LONG_MAX / 2, LONG_MAX, LONG_MIN};

static unsigned hex_val(unsigned char c) { return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10); }

/* The rule of tokens.h byte by byte, on a body already known to be valid JSON. */
static void reference(const unsigned char *s, size_t len, lx_token_counts *c)
{
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = s[i];
        if (!in) {
            in = ch == '"';
            c->objects += ch == '{';
        } else if (ch == '"') {
            in = false;
        } else if (ch == '\\' && s[i + 1] == 'u') {
            unsigned cp = hex_val(s[i + 2]) << 12 | hex_val(s[i + 3]) << 8 | hex_val(s[i + 4]) << 4 | hex_val(s[i + 5]);
            if (cp < 0x80)
                c->ascii_chars++;
            else
                c->wide_chars++;
            i += 5;
        } else if (ch == '\\') {
            c->ascii_chars++;
            i++;
        } else if (ch < 0x80) {
            c->ascii_chars++;
        } else if (ch >= 0xF0) {
            c->wide_chars += 2;
        } else if (ch >= 0xC0) {
            c->wide_chars++;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    lx_body_fields f;
    lx_body_error err;
    lx_token_counts counts = {.max_completion_tokens = -1, .n = 1};
    if (lx_body_scan(body, len, &f, &err) == 0) {
        lx_token_counts want = {0};
        reference((const unsigned char *)body, len, &want);
        LX_FUZZ_CHECK(f.tokens.ascii_chars == want.ascii_chars);
        LX_FUZZ_CHECK(f.tokens.wide_chars == want.wide_chars);
        LX_FUZZ_CHECK(f.tokens.objects == want.objects);
        counts = f.tokens;
    }
    lx_token_estimate e;
    lx_tokens_estimate(&counts, &e);
    /* a byte counts at most 2: a lead byte of a code point above U+FFFF counts 2 */
    LX_FUZZ_CHECK(e.ascii_chars <= len && e.ascii_chars + e.wide_chars <= 2 * len);
    LX_FUZZ_CHECK(e.objects <= len);
    LX_FUZZ_CHECK(e.prompt_tokens == (long)((e.ascii_chars + 3) / 4 + e.wide_chars + 3 * e.objects + 3));
    LX_FUZZ_CHECK(e.n >= 1);
    LX_FUZZ_CHECK(e.max_completion_tokens >= -1);

    long max_tokens = caps[sel % LX_ARRAY_LEN(caps)];
    long default_cap = caps[(sel / LX_ARRAY_LEN(caps)) % LX_ARRAY_LEN(caps)];
    bool with_completion = (sel & 0x80) == 0;
    long r = lx_tokens_reserve(&e, max_tokens, default_cap, with_completion);
    LX_FUZZ_CHECK(r >= 0 && r <= LONG_MAX / 2);
    LX_FUZZ_CHECK(r >= e.prompt_tokens || e.prompt_tokens > LONG_MAX / 2);
    if (!with_completion) LX_FUZZ_CHECK(r == e.prompt_tokens);
    return 0;
}
