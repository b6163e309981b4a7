/*
 * Upstream HTTP: libcurl's multi interface driven by the libuv loop (curl_multi_socket_action).
 *
 * One lx_http_client per loop holds one CURLM (so connections to a backend are pooled and reused),
 * one uv_timer_t for curl's timeouts and one uv_poll_t per socket curl hands over, kept for the
 * connection's whole life (a request on a pooled connection costs no epoll_ctl). Each upstream
 * request is an lx_upstream: the caller gets its status and headers (on_headers), its body bytes as
 * they arrive (on_data), and one on_done with the outcome. After on_done, or after
 * lx_upstream_cancel, no callback comes again and the handle is freed by this module.
 *
 * Callbacks run on the loop thread from inside this module; from them the caller may call
 * lx_upstream_pause/resume/cancel on any upstream, and start new ones: curl_multi_* calls are
 * never made from inside curl's own callbacks (they are deferred to after curl returns). No callback
 * ever runs synchronously inside an lx_upstream_* call (http/client.c's top comment has the design).
 * Loop thread only.
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
    /* Exactly once, unless cancelled. detail is curl's message for failures ("" for OK). */
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
    uint64_t connect_timeout_ms; /* 0 = curl's default */
    bool small_buffer;           /* a stream of small events: use a small receive buffer (memory per stream) */
    bool own_connection;         /* a new connection, closed after (health checks): the pool is not touched */
} lx_upstream_req;

/* NULL if libcurl cannot be initialised. */
lx_http_client *lx_http_client_new(uv_loop_t *loop);
/* Cancels every upstream still running (no callbacks) and frees the client once its handles closed.
 * May be called from inside an upstream callback: then the teardown happens when curl returned, and
 * no callback of this client comes after the call. The loop must run afterwards so the handles close. */
void lx_http_client_free(lx_http_client *c);

/* Starts a request. Never fails synchronously: errors arrive through on_done (on a later loop turn). */
lx_upstream *lx_upstream_start(lx_http_client *c, const lx_upstream_req *req, const lx_upstream_cbs *cbs, void *ud);
/* Stops delivering data (backpressure) until resume. While curl holds the transfer paused, timeout_ms
 * does not run (the slowness is ours, not the backend's). */
void lx_upstream_pause(lx_upstream *u);
/* Data held while paused arrives later on the loop, never from inside this call. */
void lx_upstream_resume(lx_upstream *u);
/* Aborts the request and closes its connection (so the backend sees the client leave); no more callbacks. */
void lx_upstream_cancel(lx_upstream *u);

/* Requests in flight on this client. */
size_t lx_http_client_active(const lx_http_client *c);

#endif
