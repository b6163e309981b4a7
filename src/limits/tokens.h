/*
 * The token estimate a request reserves against its user's tokens-per-minute limit at admission,
 * before the backend has said how many it really used (rate_limiter.h reconciles with the real
 * `usage` when the answer ends).
 *
 * The rule (no DOM, no tokenizer, and no pass of its own: lx_body_scan gathers the counts below as it
 * validates the body, so the body is read once; this module owns the rule and turns counts into tokens):
 *
 *   prompt_tokens = ceil(A / 4) + N + 3 × objects + 3
 *
 *   A       characters of ASCII inside JSON strings (keys and values; an escape such as \n or \"
 *           or a \u00XX below U+0080 is one character). English and code run at about 4 characters
 *           a token in the BPE vocabularies of Qwen, Llama and GPT (OpenAI's own rule of thumb).
 *   N       non-ASCII code points inside JSON strings, raw UTF-8 or \uXXXX escapes: one each, two for
 *           a code point above U+FFFF (emoji; an escaped surrogate pair is two escapes). So Japanese,
 *           Chinese and Korean count at least one token per character, which no common tokenizer
 *           exceeds on average (kana and frequent kanji often merge), so it does not undercount.
 *   objects JSON objects in the body: each message (and content part, tool) is one, standing for
 *           the 3 or so tokens a chat template adds per message; + 3 primes the reply.
 *
 * Numbers, true/false/null and the JSON punctuation count nothing. Every string counts, keys
 * included ("role", "content"...), and tool definitions too — they are rendered into the prompt.
 * The estimate errs high on purpose: it is only held until the real usage replaces it.
 * Known limit: a data: URI (an inline image) counts as its text, far more than a vision model charges.
 *
 * The same scan picks up the two top-level fields that size the completion: max_completion_tokens
 * (newer OpenAI clients send it instead of max_tokens) and n (choices). A value that is not a
 * non-negative integer (n: a positive one) is ignored, not an error; of repeated keys the last valid
 * one counts.
 *
 * Pure functions; any thread.
 */
#ifndef LX_TOKENS_H
#define LX_TOKENS_H

#include <stdbool.h>
#include <stddef.h>

/* What lx_body_scan counts for the estimate (api/body.h, lx_body_fields.tokens). */
typedef struct {
    size_t ascii_chars;         /* A */
    size_t wide_chars;          /* N */
    size_t objects;             /* the top-level object included */
    long max_completion_tokens; /* top-level max_completion_tokens, a non-negative integer; -1 if absent */
    long n;                     /* top-level n (choices), a positive integer; 1 if absent */
} lx_token_counts;

typedef struct {
    long prompt_tokens;         /* the estimate above */
    long max_completion_tokens; /* top-level max_completion_tokens, a non-negative integer; -1 if absent */
    long n;                     /* top-level n (choices), a positive integer; 1 if absent */
    size_t ascii_chars;         /* A */
    size_t wide_chars;          /* N */
    size_t objects;
} lx_token_estimate;

/* The estimate from the counts of one scanned body; prompt_tokens saturates at LONG_MAX / 2. */
void lx_tokens_estimate(const lx_token_counts *c, lx_token_estimate *out);

/*
 * What a request reserves: prompt_tokens + n × the completion cap, where the cap is max_tokens (from
 * lx_body_fields; -1 when absent), else max_completion_tokens, else default_cap
 * (rate_limits.default_max_tokens). with_completion false (embeddings) reserves the prompt alone.
 * Saturates at LONG_MAX / 2 instead of overflowing.
 */
long lx_tokens_reserve(const lx_token_estimate *e, long max_tokens, long default_cap, bool with_completion);

#endif
