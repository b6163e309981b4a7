/*
 * The answer to a rate-limit refusal, and the x-ratelimit-* headers of every answer: the one place a
 * refusal by the limiter (limits/rate_limiter.h, which gives only numbers) becomes an HTTP 429 with
 * OpenAI's envelope, message and headers. Pure functions of a req's result; any thread.
 */
#ifndef LX_API_RATELIMIT_H
#define LX_API_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "api/errors.h"
#include "limits/rate_limiter.h"
#include "utils/buf.h"

#define LX_RATELIMIT_MAX_HEADERS 9

/* LX_ERR_RATE_LIMIT_REQUESTS or LX_ERR_RATE_LIMIT_TOKENS for a refused req (its status is 429). */
lx_err lx_ratelimit_err(const lx_rate_req *req);

/*
 * The OpenAI-style message for a refused req, NUL-terminated into msg (truncated to cap), e.g.
 *   Rate limit reached for user `takahito` on tokens per min (TPM): Limit 50000, Used 49600,
 *   Requested 2500. Please try again in 2.52s.
 *   Request too large for user `takahito` on tokens per min (TPM): Limit 50000, Requested 60000. ...
 */
void lx_ratelimit_message(const lx_rate_req *req, char *msg, size_t cap);

/* Appends the 429 envelope (lx_err_body with the message above) to out; 0, or -1 over out's cap. */
int lx_ratelimit_body(const lx_rate_req *req, lx_buf *out);

/*
 * Response headers for any answer: x-ratelimit-{limit,remaining,reset}-{requests,tokens} for each
 * limited kind (reset as OpenAI writes durations: "12ms", "1.5s", "6m0s"), and on a refusal
 * retry-after (whole seconds, rounded up) and retry-after-ms, or for LX_RATE_TOO_LARGE
 * "x-should-retry: false" (the OpenAI SDKs then do not retry). Names are static strings, values live
 * in h.
 */
typedef struct {
    size_t n;
    const char *name[LX_RATELIMIT_MAX_HEADERS];
    char value[LX_RATELIMIT_MAX_HEADERS][24];
} lx_ratelimit_headers;

void lx_ratelimit_headers_fill(const lx_rate_result *r, lx_ratelimit_headers *h);

/* A duration as OpenAI's headers and messages write it: "0s", "12ms", "1.5s", "59.929s", "6m0s", "1h2m3s". */
void lx_ratelimit_duration(int64_t ms, char *out, size_t cap);

#endif
