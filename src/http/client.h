/*
 * Upstream HTTP for the loop: the gateway's requests to backends, health checks and /metrics reads.
 *
 * Two transports behind this one interface (http/client_impl.h):
 *   - http:// URLs (without user:password@) go over Lexora's own HTTP/1.1 client on libuv TCP + http-parser
 *     (http/upstream.c): a keep-alive pool per host:port, the request written with one writev (head +
 *     body, no copy).
 *   - https:// URLs, and http:// ones with credentials, go through libcurl's multi interface on the same loop
 * (http/client_curl.c). lx_http_client_set_transport (or LEXORA_UPSTREAM_TRANSPORT=curl in the environment) sends
 * http:// through libcurl too; both keep every promise below, and tests/unit/test_client.c runs against each.
 *
 * Each upstream request is an lx_upstream: the caller gets its status and headers (on_headers), its body
 * bytes as they arrive (on_data), and one on_done with the outcome. After on_done, or after
 * lx_upstream_cancel, no callback comes again and the handle is freed by this module (not before the
 * callback or call that ended it returned: a second cancel from the same callback is harmless).
 *
 * Connection reuse: a request on a pooled connection that the backend closed before sending a byte of
 * the answer (the keep-alive race) is sent once more on a new connection, as libcurl does; that retry is
 * invisible to the caller. A cancelled, timed-out or caller-stopped request closes its connection, so the
 * backend sees the client leave.
 *
 * Callbacks run on the loop thread from inside this module; from them the caller may call
 * lx_upstream_pause/resume/cancel on any upstream, start new ones, or free the client. No callback ever
 * runs synchronously inside an lx_upstream_* call. Loop thread only.
 */
#ifndef LX_HTTP_CLIENT_H
#define LX_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "utils/common.h"

typedef struct lx_http_client lx_http_client;
typedef struct lx_upstream lx_upstream;

typedef enum {
    LX_UP_OK = 0,       /* the whole answer arrived */
    LX_UP_CONNECT,      /* could not connect (refused, unreachable, DNS, connect_timeout_ms) */
    LX_UP_TIMEOUT,      /* no byte for timeout_ms: before the answer started, or between two reads */
    LX_UP_RESET,        /* connection reset, or closed before the answer was complete */
    LX_UP_BAD_RESPONSE, /* not valid HTTP */
    LX_UP_CALLER,       /* on_data asked to stop (returned false) */
    LX_UP_OTHER,
} lx_up_result;

const char *lx_up_result_name(lx_up_result r);

/* The slices point into the upstream: valid during on_headers only. Interim 1xx answers are skipped. */
typedef struct {
    int status;
    lx_slice content_type; /* len 0 if absent */
    lx_slice retry_after;  /* len 0 if absent */
} lx_up_head;

typedef struct {
    /* The status line and headers have arrived. */
    void (*on_headers)(lx_upstream *u, const lx_up_head *head, void *ud);
    /* Body bytes (after de-chunking). Return false to abort the transfer (on_done gets LX_UP_CALLER). */
    bool (*on_data)(lx_upstream *u, const char *data, size_t len, void *ud);
    /* Exactly once, unless cancelled. detail says what failed, for logs ("" for OK). */
    void (*on_done)(lx_upstream *u, lx_up_result result, const char *detail, void *ud);
} lx_upstream_cbs;

typedef struct {
    const char *method;         /* "GET" or "POST" */
    const char *url;            /* full URL */
    const char *const *headers; /* "Name: value" lines, NULL-terminated; may be NULL. "Expect:" is always
                                   suppressed; with a body and no Content-Type, application/json is sent */
    const char *body;           /* not copied: must stay valid until on_done or cancel */
    size_t body_len;
    uint64_t timeout_ms;         /* see LX_UP_TIMEOUT; 0 = none */
    uint64_t connect_timeout_ms; /* 0 = 300 s (curl's default); a connect that takes longer is LX_UP_CONNECT */
    bool small_buffer;           /* a stream of small events: libcurl uses a small receive buffer (memory per
                                    stream); the native transport reads into one buffer shared by all */
    bool own_connection;         /* a new connection, closed after (health checks): the pool is not touched */
    const char *ca_file;         /* https://: verify the server with this CA bundle (NULL: the system's) */
    bool tls_insecure;           /* https://: accept any certificate and name (backends.NAME.tls_verify: false) */
} lx_upstream_req;

typedef enum {
    LX_HTTP_NATIVE = 0, /* http:// over http/upstream.c (the default) */
    LX_HTTP_CURL,       /* http:// through libcurl, like https:// */
} lx_http_transport;

/* NULL if libcurl cannot be initialised. The transport for http:// is LX_HTTP_NATIVE unless the environment
 * says LEXORA_UPSTREAM_TRANSPORT=curl. */
lx_http_client *lx_http_client_new(uv_loop_t *loop);
/* Which transport carries the http:// requests started from now on (https:// always goes through libcurl). */
void lx_http_client_set_transport(lx_http_client *c, lx_http_transport t);
/* Cancels every upstream still running (no callbacks) and frees the client once its handles closed.
 * May be called from inside an upstream callback: then the teardown happens when curl returned, and
 * no callback of this client comes after the call. The loop must run afterwards so the handles close. */
void lx_http_client_free(lx_http_client *c);

/* Starts a request. Never fails synchronously: errors arrive through on_done (on a later loop turn). */
lx_upstream *lx_upstream_start(lx_http_client *c, const lx_upstream_req *req, const lx_upstream_cbs *cbs, void *ud);
/* Stops delivering data (backpressure) until resume. While data is held back, timeout_ms does not run (the
 * slowness is ours, not the backend's), and the connection is not read. */
void lx_upstream_pause(lx_upstream *u);
/* Data held while paused arrives later on the loop, never from inside this call. */
void lx_upstream_resume(lx_upstream *u);
/* Aborts the request and closes its connection (so the backend sees the client leave); no more callbacks. */
void lx_upstream_cancel(lx_upstream *u);

/* Requests in flight on this client. */
size_t lx_http_client_active(const lx_http_client *c);

#endif
