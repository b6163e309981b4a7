/*
 * How an attempt sent to a backend ended, in one table: for each outcome class, whether another try may
 * help, what it says of the backend (the circuit breaker, backends/backend.h), and which error the client
 * gets when it is the last word and no answer of the backend's can be passed on. The pipeline (src/proxy.c)
 * retries only while attempts remain, the class is retryable, no byte reached the client, and the wait
 * ends before the request's deadline (queue/retry.h times the waits).
 *
 *   class             when                                          retry  the backend  the client gets
 *   OK                an answer (2xx, 4xx except 429, 500, ...)      no     answered     the answer
 *   BUSY              HTTP 429                                       yes    answered     the answer
 *   FAILING           HTTP 502, 503, 504                             yes    failed       the answer
 *   CONNECT           could not connect                              yes    failed       502 upstream_unavailable
 *   LOST              reset before any answer                        yes    failed       502 upstream_unavailable
 *   SILENT            timed out before any answer                    yes    failed       504 upstream_timeout
 *   CUT               reset after the answer began                   no     failed       502 upstream_bad_response
 *   STALLED           timed out after the answer began               no     failed       504 upstream_timeout
 *   GARBLED           not valid HTTP, or anything else               no     failed       502 upstream_bad_response
 *   REFUSED           an answer the gateway refused (too large)      no     nothing      502 upstream_bad_response
 *
 * A kind may classify differently (lx_kind.outcome); the rows stay the same. Pure; any thread.
 */
#ifndef LX_OUTCOME_H
#define LX_OUTCOME_H

#include <stdbool.h>

#include "api/errors.h"
#include "http/client.h"

typedef enum {
    LX_OUT_OK = 0,
    LX_OUT_BUSY,
    LX_OUT_FAILING,
    LX_OUT_CONNECT,
    LX_OUT_LOST,
    LX_OUT_SILENT,
    LX_OUT_CUT,
    LX_OUT_STALLED,
    LX_OUT_GARBLED,
    LX_OUT_REFUSED,
    LX_OUT_COUNT
} lx_outcome;

typedef enum {
    LX_ATTEMPT_OK = 0, /* the backend answered (2xx, 4xx, 429, 500...) */
    LX_ATTEMPT_FAILED, /* unreachable, reset, timed out, or 502/503/504 */
    LX_ATTEMPT_NONE,   /* says nothing about the backend (the client left first, or the gateway refused) */
} lx_attempt_verdict;

typedef struct {
    const char *name;           /* for logs and tests: "ok", "busy", "failing", ... */
    bool retryable;             /* another try (here or elsewhere) may succeed */
    lx_attempt_verdict verdict; /* what it says of the backend */
    lx_err err;                 /* the client's error when the attempt left no answer to pass on */
    bool answered;              /* the backend's own HTTP answer is there to pass on */
} lx_outcome_info;

/* The class of an attempt's end: r from the upstream client, status the HTTP status (0 if none came). */
lx_outcome lx_outcome_of(lx_up_result r, int status);
const lx_outcome_info *lx_outcome_get(lx_outcome o);

#endif
