/*
 * Fuzz target: the token estimate (limits/tokens.c), which reads every request body before admission.
 *
 * Input: 1 byte choosing max_tokens / default_cap / with_completion, the rest is the body.
 * Checks the header's promises: the estimate is the documented formula of its own counts, counts are
 * bounded by the input (at most two per byte), n >= 1, and lx_tokens_reserve never overflows or goes negative.
 */
#include <limits.h>

#include "fuzz.h"
#include "limits/tokens.h"
#include "utils/common.h"

static const long caps[] = {-1, 0, 1, 2048, 100000, LONG_MAX / 4, LONG_MAX / 2, LONG_MAX, LONG_MIN};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    lx_token_estimate e;
    lx_tokens_estimate(body, len, &e);
    /* a byte counts at most 2: a lead byte of a code point above U+FFFF counts 2 (invalid UTF-8, such
     * as a run of 0xF8..0xFF bytes the scanner lets through, may count 2 a byte: "errs high") */
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
