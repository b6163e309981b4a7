/*
 * The retry handler's rules, as pure functions (the seed's execute_with_retry, made safe for a gateway):
 * which outcomes of an attempt are worth another try, what an attempt says about its backend (for the
 * circuit breaker, backends/backend.h), and how long to wait before the next try. src/proxy.c applies
 * them: it retries only while attempts remain (retry.max_attempts, the first included), the outcome is
 * retryable, no byte of the answer reached the client, and the wait ends before the request's deadline.
 *
 *   outcome of an attempt                         retry?   the backend
 *   could not connect                             yes      failed
 *   reset, or timed out, before any answer        yes      failed
 *   reset or timed out after the answer began     no       failed
 *   HTTP 502, 503, 504                            yes      failed
 *   HTTP 429                                      yes      answered (it is busy, not broken)
 *   any other HTTP status (2xx, 4xx, 500, ...)    no       answered
 *   not valid HTTP                                no       failed
 *   an answer the gateway refused (too large)     no       says nothing
 *
 * Pure functions; any thread.
 */
#ifndef LX_RETRY_H
#define LX_RETRY_H

#include <stdbool.h>

#include "backends/backend.h"
#include "config.h"
#include "http/client.h"
#include "utils/common.h"

/* status: the HTTP status of the answer, 0 if none arrived. */
bool lx_retry_retryable(lx_up_result r, int status);
lx_attempt_verdict lx_retry_verdict(lx_up_result r, int status);

/*
 * The wait before retry n (1 for the first retry): retry.delay_seconds × retry.backoff_multiplier^(n-1),
 * times a jitter factor 0.8 + 0.4u (u uniform in [0, 1): at most ±20 %), then at most
 * retry.max_delay_seconds.
 */
double lx_retry_delay_s(const lx_config *c, int n, double u);

/* A Retry-After value in seconds (delta-seconds, or an HTTP-date relative to now_wall_s); -1 when
 * absent or unreadable. A date in the past is 0. */
double lx_retry_after_s(lx_slice value, int64_t now_wall_s);

#endif
