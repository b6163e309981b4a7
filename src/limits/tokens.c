/*
 * The prompt-token estimate: the rule of tokens.h applied to the counts lx_body_scan gathered while it
 * validated the body (api/body.c counts, so the body is read once), and the reservation made from it.
 *
 * Invariants: no allocation, no reading of the body here; results saturate at LONG_MAX / 2.
 */
#include "limits/tokens.h"

#include <limits.h>

#include "utils/common.h"

#define OBJECT_TOKENS 3
#define REPLY_TOKENS  3

void lx_tokens_estimate(const lx_token_counts *c, lx_token_estimate *out)
{
    /* the counts are bounded by the body's length (at most two a byte), so the sum cannot wrap */
    size_t tokens = (c->ascii_chars + 3) / 4 + c->wide_chars + OBJECT_TOKENS * c->objects + REPLY_TOKENS;
    *out = (lx_token_estimate){
        .prompt_tokens = tokens > (size_t)(LONG_MAX / 2) ? LONG_MAX / 2 : (long)tokens,
        .max_completion_tokens = c->max_completion_tokens >= 0 ? c->max_completion_tokens : -1,
        .n = c->n >= 1 ? c->n : 1,
        .ascii_chars = c->ascii_chars,
        .wide_chars = c->wide_chars,
        .objects = c->objects,
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
