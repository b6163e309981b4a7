/*
 * Every error a client can get from Lexora itself, in one table: HTTP status, OpenAI error type and
 * the stable `code` string (whether another try may help is backends/outcome.h's business: it decides
 * the gateway's own retries). Bodies are the OpenAI envelope
 *   {"error":{"message":"...","type":"...","param":null|"...","code":"..."}}
 * Also here: normalising an upstream error body to that envelope (vLLM before 0.10.1 sent a flat
 * {"object":"error","message",...} object; everything nested passes through untouched).
 * Pure functions; any thread.
 */
#ifndef LX_ERRORS_H
#define LX_ERRORS_H

#include <stdbool.h>
#include <stddef.h>

#include "utils/buf.h"

typedef enum {
    LX_ERR_INVALID_JSON = 0,      /* 400 invalid_json: the body is not a JSON object */
    LX_ERR_INVALID_FIELD,         /* 400 invalid_value: a field has the wrong type or range (param names it) */
    LX_ERR_BAD_REQUEST,           /* 400 bad_request: malformed HTTP */
    LX_ERR_NOT_FOUND,             /* 404 not_found: no such path */
    LX_ERR_MODEL_NOT_FOUND,       /* 404 model_not_found: no enabled backend serves the model */
    LX_ERR_METHOD_NOT_ALLOWED,    /* 405 method_not_allowed */
    LX_ERR_REQUEST_TIMEOUT,       /* 408 request_timeout: the request did not arrive in time */
    LX_ERR_BODY_TOO_LARGE,        /* 413 request_too_large */
    LX_ERR_HEADER_TOO_LARGE,      /* 431 header_too_large */
    LX_ERR_INTERNAL,              /* 500 internal_error */
    LX_ERR_UPSTREAM_UNAVAILABLE,  /* 502 upstream_unavailable: the backend could not be reached */
    LX_ERR_UPSTREAM_BAD_RESPONSE, /* 502 upstream_bad_response: it answered garbage, cut off or too large */
    LX_ERR_TOO_MANY_CONNECTIONS,  /* 503 too_many_connections */
    LX_ERR_UPSTREAM_TIMEOUT,      /* 504 upstream_timeout: the backend did not answer within its timeout */
    LX_ERR_CONFIG_INVALID,        /* 400 config_invalid: a reload found problems; the running config stays */
    LX_ERR_ADMIN_UNAUTHORIZED,    /* 401 invalid_admin_token: an admin endpoint without the right bearer token */
    LX_ERR_ADMIN_FORBIDDEN,       /* 403 admin_forbidden: no admin token configured and not a loopback client */
    LX_ERR_SHUTTING_DOWN,         /* 503 shutting_down: the gateway is stopping */
    LX_ERR_INVALID_API_KEY,       /* 401 invalid_api_key: auth is on and the bearer key is missing or unknown */
    LX_ERR_RATE_LIMIT_REQUESTS,   /* 429 rate_limit_exceeded, type "requests": over requests per minute */
    LX_ERR_RATE_LIMIT_TOKENS,     /* 429 rate_limit_exceeded, type "tokens": over tokens per minute, or a request
                                     too large for the limit (limits/rate_limiter.h builds both) */
    LX_ERR_QUEUE_FULL,            /* 503 queue_full: queue.max_size requests wait already (sent with Retry-After) */
    LX_ERR_QUEUE_TIMEOUT,         /* 504 queue_timeout: no backend slot within x_timeout / queue.default_timeout */
    LX_ERR_NO_HEALTHY_BACKEND,    /* 503 no_healthy_backend: every backend serving the model is down (Retry-After) */
    LX_ERR_PERMISSION_DENIED,     /* 403 permission_denied: a client key asked for what only the admin token sees */
    LX_ERR_METRICS_UNAUTHORIZED,  /* 401 invalid_metrics_token: metrics.token is set and was not sent */
    LX_ERR_REQUEST_NOT_FOUND,     /* 404 request_not_found: feedback for a request the ledger does not have */
    LX_ERR_FEEDBACK_EXISTS,       /* 409 feedback_exists: that request has its feedback already */
    LX_ERR_LEDGER_UNAVAILABLE,    /* 503 ledger_unavailable: the usage ledger is off or cannot be used now */
    LX_ERR_MODEL_NOT_LOADED,      /* 503 model_not_loaded: not loaded, and its backend loads only when asked */
    LX_ERR_MODEL_LOAD_FAILED,     /* 503 model_load_failed: loading the model failed or timed out */
    LX_ERR_LOAD_CONFLICT,         /* 409 load_conflict: the model is busy loading, unloading or serving */
    LX_ERR_COUNT
} lx_err;

typedef struct {
    int status;
    const char *type; /* OpenAI error type */
    const char *code; /* stable, machine-readable */
} lx_err_info;

const lx_err_info *lx_err_get(lx_err e);

/*
 * Appends the envelope for e with the given message (NUL-terminated; NULL for the table's default
 * message) and param (NULL for JSON null) to out. Returns 0, or -1 if out's cap is reached (out is
 * then left as it was).
 */
int lx_err_body(lx_buf *out, lx_err e, const char *message, const char *param);

/*
 * Upstream error body → envelope. If body is a flat vLLM error ({"object":"error","message":...}) it
 * is rewritten nested into out and 1 is returned; if it is already an envelope, 0 is returned and out
 * is untouched (pass the original through); if it is not JSON or has no message, a generic envelope
 * with type "upstream_error", code "upstream_error" and the HTTP status is written and 1 returned.
 */
int lx_err_normalize_upstream(const char *body, size_t len, int status, lx_buf *out);

#endif
