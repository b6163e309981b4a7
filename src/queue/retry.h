/*
 * The retry handler's timing (the seed's execute_with_retry, made safe for a gateway): how long to wait
 * before the next try, and what a backend's Retry-After asks. Which outcomes are worth another try, and what
 * they say of the backend, is backends/outcome.h's table. src/proxy.c applies both: it retries only while
 * attempts remain (retry.max_attempts, the first included), the outcome is retryable, no byte of the answer
 * reached the client, and the wait ends before the request's deadline.
 * Pure functions; any thread.
 */
#ifndef LX_RETRY_H
#define LX_RETRY_H

#include <stdbool.h>

#include "config.h"
#include "utils/common.h"

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
