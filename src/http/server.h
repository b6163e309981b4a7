/*
 * HTTP/1.1 server on libuv + http-parser: listener, connections, keep-alive, limits, response writer.
 *
 * It owns connections and the bytes of each request; it knows nothing of what a request means.
 * A request is handed over (on_request) once its head and whole body have arrived (Content-Length or
 * chunked). The handler answers it with lx_http_respond (one complete answer) or with
 * lx_http_stream_begin / lx_http_stream_write / lx_http_stream_end (a chunked answer, e.g. SSE),
 * at once or later from any loop callback. Requests on one connection are answered in order
 * (pipelined requests wait, unparsed, until the one before is answered).
 *
 * Limits are enforced and answered here (then the connection closes): a head over max_header_bytes
 * (431), a body over max_body_bytes (413), a head or body not complete within header_timeout (408),
 * malformed HTTP (400), both Content-Length and Transfer-Encoding (400, request smuggling), and
 * connections over max_connections (503). The body of such an answer is the owner's (render_error:
 * the gateway's is the OpenAI error envelope, api/routes.h); without a hook it is the message as plain
 * text. An idle keep-alive connection is closed after idle_timeout.
 *
 * If the client goes away before the answer is complete, on_abort is called once for that request;
 * after on_abort the request handle is dead and the handler must not touch it again. After the
 * handler's last call (lx_http_respond or lx_http_stream_end) the handle is likewise dead to it.
 * Loop thread only.
 */
#ifndef LX_HTTP_SERVER_H
#define LX_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "utils/buf.h"
#include "utils/common.h"

typedef struct lx_http_server lx_http_server;
typedef struct lx_http_req lx_http_req;

typedef struct {
    const char *name;
    const char *value;
} lx_http_header;

/* What went wrong when the server answers by itself, before a request reaches on_request. */
typedef enum {
    LX_HTTP_ERR_MALFORMED = 0,        /* 400: not HTTP/1.1, a header name not a token, both CL and TE */
    LX_HTTP_ERR_TIMEOUT,              /* 408: not complete within header_timeout */
    LX_HTTP_ERR_BODY_TOO_LARGE,       /* 413: over max_body_bytes */
    LX_HTTP_ERR_HEADER_TOO_LARGE,     /* 431: over max_header_bytes, or too many headers */
    LX_HTTP_ERR_TOO_MANY_CONNECTIONS, /* 503: over max_connections (or no longer accepting) */
    LX_HTTP_ERR_COUNT
} lx_http_error;

/*
 * Renders the body of such an answer: appends it to body (capped by the caller) and returns its
 * Content-Type, a static string. status is the answer's status (the server's, from what); message
 * says what went wrong, for a human. ud is the server's opts.ud.
 */
typedef const char *(*lx_http_render_error)(lx_http_error what, int status, const char *message, lx_buf *body,
                                            void *ud);

typedef struct {
    const char *host;
    int port;
    int max_connections;
    size_t max_header_bytes;
    size_t max_body_bytes;
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    const char *server_name; /* the Server header; NULL for none */
    void (*on_request)(lx_http_req *req, void *ud);
    void (*on_abort)(lx_http_req *req, void *ud);
    /* Called when a streamed answer's unsent bytes fall below the low-water mark again. May be NULL. */
    void (*on_drain)(lx_http_req *req, void *ud);
    /* The body of the answers the server gives by itself. May be NULL: the message, as text/plain. */
    lx_http_render_error render_error;
    void *ud;
} lx_http_server_opts;

/* Binds and listens. Returns 0, or a negative libuv error code (e.g. UV_EADDRINUSE). */
int lx_http_server_start(uv_loop_t *loop, const lx_http_server_opts *opts, lx_http_server **out);
/*
 * Serves an already-connected stream socket (e.g. one end of a socketpair) exactly as an accepted
 * connection: same limits, parser and answers; the server owns and closes fd from here on. Returns 0,
 * or a negative libuv error (fd is then closed). For the fuzz target (tests/fuzz/fuzz_http.c), which
 * feeds bytes through the real connection code without a TCP handshake per input.
 */
int lx_http_server_adopt(lx_http_server *s, uv_os_sock_t fd);
/* Stops accepting: the listener closes (new connections are refused), idle keep-alive connections close,
 * and a connection with a request in flight finishes it (its answer says Connection: close), then closes. */
void lx_http_server_stop_accepting(lx_http_server *s);
/* Closes the listener and every connection (aborting their requests), then frees the server. */
void lx_http_server_close(lx_http_server *s);
/* The port actually bound (useful with port 0). */
int lx_http_server_port(const lx_http_server *s);
/* Live counts, for stats. */
size_t lx_http_server_connections(const lx_http_server *s);
/* Changes limits for new requests (a config reload). */
void lx_http_server_set_limits(lx_http_server *s, const lx_http_server_opts *opts);

/* --- the request, valid from on_request until the handler's last call or on_abort --- */
const char *lx_http_req_method(const lx_http_req *r); /* "GET", "POST", ... */
lx_slice lx_http_req_path(const lx_http_req *r);      /* without the query string */
lx_slice lx_http_req_query(const lx_http_req *r);     /* after '?', may be empty */
/* Case-insensitive header lookup; the first one of that name. Returns false if absent. */
bool lx_http_req_header(const lx_http_req *r, const char *name, lx_slice *value);
/* Headers in arrival order: i from 0 to lx_http_req_header_count() - 1. */
size_t lx_http_req_header_count(const lx_http_req *r);
void lx_http_req_header_at(const lx_http_req *r, size_t i, lx_slice *name, lx_slice *value);
lx_slice lx_http_req_body(const lx_http_req *r);
/* Mutable body bytes (the handler may rewrite in place); len as lx_http_req_body. */
char *lx_http_req_body_mut(lx_http_req *r);
/* The peer's address as text ("127.0.0.1"), and whether it is a loopback address. */
const char *lx_http_req_peer(const lx_http_req *r);
bool lx_http_req_peer_is_loopback(const lx_http_req *r);
/* Monotonic ns when the request's first bytes were read, and its last (a pipelined request's: the read that
 * brought the bytes the server held). */
uint64_t lx_http_req_start_ns(const lx_http_req *r);
uint64_t lx_http_req_ready_ns(const lx_http_req *r);
void lx_http_req_set_data(lx_http_req *r, void *data);
void *lx_http_req_data(const lx_http_req *r);

/* --- answering --- */
/*
 * One complete answer. Content-Length, Date, Connection and Server are added here; headers gives the
 * rest (content-type, x-request-id, ...). body is copied. Ends the handler's use of req.
 */
void lx_http_respond(lx_http_req *r, int status, const lx_http_header *headers, size_t n_headers, const char *body,
                     size_t len);

/* A chunked answer: begin once, write any number of times, end once (ends the handler's use). */
void lx_http_stream_begin(lx_http_req *r, int status, const lx_http_header *headers, size_t n_headers);
/* Queues bytes as one chunk (copied). Returns the bytes now waiting to be sent to the client, so
 * the caller can stop reading its source above a high-water mark and wait for on_drain. */
size_t lx_http_stream_write(lx_http_req *r, const char *data, size_t len);
void lx_http_stream_end(lx_http_req *r);
/* Above this many unsent bytes a streamed answer's source should pause; on_drain comes at the low mark. */
#define LX_HTTP_WRITE_HIGH_WATER (64 * 1024)
#define LX_HTTP_WRITE_LOW_WATER  (16 * 1024)

/* Closes the connection at once, with no (or no more) answer. Ends the handler's use of r; no on_abort.
 * For failure injection in the simulator; the gateway always answers. */
void lx_http_req_drop(lx_http_req *r);

/* Bytes queued to this request's client and not yet sent. */
size_t lx_http_pending_bytes(const lx_http_req *r);

/* Reason phrase for a status ("Not Found"). */
const char *lx_http_reason(int status);

#endif
