/*
 * Fuzz target: the HTTP/1.1 front (http/server.c): request line, headers, Content-Length and chunked
 * bodies, pipelining, Expect: 100-continue, the limits (413, 431, 400), and the answering paths
 * (lx_http_respond, lx_http_stream_*, backpressure and on_drain, on_abort, lx_http_req_drop).
 *
 * How the bytes get in (the seam). server.c parses inside its connection code, with no pure entry
 * point, and its interesting states (a request answered later while the next one waits pipelined, a
 * client gone mid-answer) only exist on a live connection. So the target runs the real server on an
 * in-process libuv loop and hands it one end of a socketpair per input through
 * lx_http_server_adopt, which shares every line with accepting a TCP connection except accept()
 * itself. The other end is the client: it writes the input, half-closes, reads everything the server
 * sends, and closes when the server does. That costs a few syscalls per input but no TCP handshake,
 * no port and no TIME_WAIT, and it needs no timer: each input ends when both sides have closed.
 *
 * Input: byte 0 picks the server limits and when the client half-closes (at once, or only once the
 * server has gone quiet, so answers given later are not cut short by the EOF); byte 1 seeds how the
 * handler answers each request (at once or on a later loop turn; whole, streamed in pieces, streamed
 * past the high-water mark so it must wait for on_drain, or dropped); the rest is what the client sends.
 * Checks: what the handler is given is consistent (path without query, body within max_body_bytes,
 * header slices inside the head); everything the server writes back parses as HTTP/1.1 responses
 * (http-parser in response mode: no bytes after a "Connection: close" answer, chunked framing intact);
 * and every input finishes (a connection that never closes, or an on_drain that never comes, hangs
 * the loop, which libFuzzer reports as a timeout).
 */
#include <http_parser.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "api/body.h"
#include "api/routes.h"
#include "fuzz.h"
#include "http/server.h"
#include "utils/id.h"
#include "utils/log.h"

enum { ANSWER_NOW, STREAM_NOW, ANSWER_LATER, STREAM_LATER, STREAM_BIG, DROP, N_MODES };

typedef struct {
    lx_http_req *req; /* the request answered on later loop turns; NULL when none */
    int mode;
    int step;
    bool wait_drain; /* over the high-water mark: the next step waits for on_drain */
} pending;

static uv_loop_t loop;
static lx_http_server *srv;
static uv_idle_t later; /* the handler's "later": one step per loop turn */
static pending cur;
static uint32_t seed;
static unsigned activity; /* bumped by every callback of ours, to see when the server has gone quiet */
static size_t max_body;
static char big[64 * 1024];

#define PRE_WRITE_MAX (64 * 1024) /* well under a Unix socket's send buffer: write() cannot block */

/* ---- the handler --------------------------------------------------------------------------- */

static int next_mode(void)
{
    seed = seed * 1103515245u + 12345u;
    unsigned r = (seed >> 16) % 32;
    if (r == 31) return DROP;
    if (r == 30) return STREAM_BIG;
    return (int)(r % 4);
}

/* Touches every byte of s, so ASan checks the whole slice. */
static unsigned sum(lx_slice s)
{
    unsigned h = 0;
    for (size_t i = 0; i < s.len; i++)
        h = h * 31 + (unsigned char)s.p[i];
    return h;
}

static void check_request(lx_http_req *r)
{
    LX_FUZZ_CHECK(lx_http_req_method(r) != NULL);
    lx_slice path = lx_http_req_path(r), query = lx_http_req_query(r), body = lx_http_req_body(r);
    LX_FUZZ_CHECK(memchr(path.p, '?', path.len) == NULL);
    sum(path);
    sum(query);
    LX_FUZZ_CHECK(body.len <= max_body);
    sum(body);
    LX_FUZZ_CHECK(lx_http_req_header_count(r) <= 100);
    for (size_t i = 0; i < lx_http_req_header_count(r); i++) {
        lx_slice name, value;
        lx_http_req_header_at(r, i, &name, &value);
        sum(name);
        sum(value);
    }
    lx_slice v;
    if (lx_http_req_header(r, "x-request-id", &v)) lx_request_id_acceptable(v);
    if (body.len) {
        lx_http_req_body_mut(r)[0] ^= 0; /* the handler may rewrite the body in place */
        lx_body_fields f;
        lx_body_error e;
        lx_body_scan(body.p, body.len, &f, &e);
    }
    lx_http_req_peer_is_loopback(r);
    LX_FUZZ_CHECK(lx_http_req_ready_ns(r) >= lx_http_req_start_ns(r));
}

static void answer(lx_http_req *r)
{
    static const lx_http_header hdrs[] = {{"Content-Type", "text/plain"}, {"X-Request-Id", "fuzz"}};
    bool head = strcmp(lx_http_req_method(r), "HEAD") == 0; /* a HEAD answer has no body */
    lx_slice body = lx_http_req_body(r);
    lx_http_respond(r, body.len ? 200 : 404, hdrs, 2, head ? NULL : body.p, head ? 0 : body.len);
}

/* One step of a later answer; returns true when the request is finished with. */
static bool step(pending *p)
{
    static const lx_http_header sse[] = {{"Content-Type", "text/event-stream"}};
    lx_http_req *r = p->req;
    if (p->mode == ANSWER_LATER) {
        p->req = NULL; /* before answering: the answer may start the next pipelined request */
        answer(r);
        return true;
    }
    if (p->step == 0) {
        lx_http_stream_begin(r, 200, sse, 1);
    } else if (p->step < 4) {
        size_t pending_bytes;
        if (p->mode == STREAM_BIG) {
            pending_bytes = 0;
            for (int i = 0; i < 5; i++)
                pending_bytes = lx_http_stream_write(r, big, sizeof big);
        } else {
            pending_bytes = lx_http_stream_write(r, "data: {\"x\":1}\n\n", 15);
        }
        p->wait_drain = pending_bytes > LX_HTTP_WRITE_HIGH_WATER;
        LX_FUZZ_CHECK(lx_http_pending_bytes(r) == pending_bytes);
    } else {
        p->req = NULL;
        lx_http_stream_end(r);
        return true;
    }
    p->step++;
    return false;
}

static void on_later(uv_idle_t *h)
{
    (void)h;
    activity++;
    if (cur.req && !cur.wait_drain) step(&cur); /* finishing may already have begun the next request */
    if (cur.req == NULL || cur.wait_drain) uv_idle_stop(&later);
}

static void on_request(lx_http_req *r, void *ud)
{
    (void)ud;
    activity++;
    LX_FUZZ_CHECK(cur.req == NULL); /* one request at a time per connection, and one connection */
    check_request(r);
    int mode = next_mode();
    switch (mode) {
    case ANSWER_NOW: answer(r); return;
    case STREAM_NOW: {
        static const lx_http_header sse[] = {{"Content-Type", "text/event-stream"}};
        lx_slice body = lx_http_req_body(r);
        lx_http_stream_begin(r, 200, sse, 1);
        if (body.len) {
            lx_http_stream_write(r, body.p, body.len / 2);
            lx_http_stream_write(r, body.p + body.len / 2, body.len - body.len / 2);
        }
        lx_http_stream_end(r);
        return;
    }
    case DROP: lx_http_req_drop(r); return;
    default:
        cur = (pending){.req = r, .mode = mode == STREAM_BIG ? STREAM_BIG : mode, .step = 0};
        uv_idle_start(&later, on_later);
    }
}

static void on_abort(lx_http_req *r, void *ud)
{
    (void)ud;
    activity++;
    LX_FUZZ_CHECK(cur.req == r); /* only a request still being answered can be aborted */
    cur.req = NULL;
}

static void on_drain(lx_http_req *r, void *ud)
{
    (void)ud;
    activity++;
    LX_FUZZ_CHECK(cur.req == r && cur.wait_drain);
    cur.wait_drain = false;
    uv_idle_start(&later, on_later);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lx_log_configure(LX_LOG_ERROR, false);
    memset(big, 'x', sizeof big);
    uv_loop_init(&loop);
    uv_idle_init(&loop, &later);
    lx_http_server_opts o = {
        .host = "127.0.0.1", /* a listener is bound but never used: inputs come in through adopt */
        .port = 0,
        .max_connections = 4,
        .max_header_bytes = 16384,
        .max_body_bytes = 1 << 20,
        .header_timeout_ms = 600000, /* no timer may fire during an input: it ends by EOF alone */
        .idle_timeout_ms = 600000,
        .server_name = "lexora-fuzz",
        .on_request = on_request,
        .on_abort = on_abort,
        .on_drain = on_drain,
        .render_error = lx_routes_render_error, /* the gateway's answers, byte for byte */
    };
    if (lx_http_server_start(&loop, &o, &srv) != 0) {
        fprintf(stderr, "fuzz_http: cannot start the server\n");
        abort();
    }
    return 0;
}

/* ---- the client ---------------------------------------------------------------------------- */

typedef struct {
    uv_pipe_t pipe;
    uv_write_t w;
    uv_shutdown_t sh;
    bool written, shut, closed;
    http_parser rp; /* the server's bytes, read as responses */
    bool rp_failed;
} client;

static const http_parser_settings no_callbacks;

static void on_client_closed(uv_handle_t *h) { ((client *)h->data)->closed = true; }

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char rbuf[64 * 1024];
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    client *c = st->data;
    activity++;
    if (n < 0) {
        uv_close((uv_handle_t *)&c->pipe, on_client_closed);
        return;
    }
    if (n == 0 || c->rp_failed) return;
    http_parser_execute(&c->rp, &no_callbacks, buf->base, (size_t)n);
    if (HTTP_PARSER_ERRNO(&c->rp) != HPE_OK) {
        fprintf(stderr, "fuzz_http: the server's answer is not HTTP: %s\n",
                http_errno_description(HTTP_PARSER_ERRNO(&c->rp)));
        c->rp_failed = true;
    }
}

static void on_client_written(uv_write_t *w, int status)
{
    (void)status; /* the server may close before taking everything (a 413, a 400) */
    client *c = w->data;
    c->written = true;
}

static void on_client_shut(uv_shutdown_t *sh, int status)
{
    (void)sh;
    (void)status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t max_bodies[] = {1024, 64 * 1024, 1 << 20, 16};
    static const size_t max_heads[] = {16384, 1024, 256, 65536};
    if (size < 2) return 0;
    uint8_t flags = data[0];
    seed = data[1] * 2654435761u + 7;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    bool late_shutdown = flags & 0x10;

    lx_http_server_opts o = {
        .max_connections = 4,
        .max_header_bytes = max_heads[(flags >> 2) & 3],
        .max_body_bytes = max_bodies[flags & 3],
        .header_timeout_ms = 600000,
        .idle_timeout_ms = 600000,
    };
    max_body = o.max_body_bytes;
    lx_http_server_set_limits(srv, &o);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
    LX_FUZZ_CHECK(lx_http_server_adopt(srv, sv[0]) == 0);

    /* Small inputs are written before the loop turns, and the immediate half-close follows at once,
     * so the server finds the request and the EOF together on its first reads (a request answered
     * later is then aborted); larger ones go through a libuv write. */
    size_t sent = 0;
    while (len <= PRE_WRITE_MAX && sent < len) {
        ssize_t n = write(sv[1], in + sent, len - sent);
        if (n <= 0) abort();
        sent += (size_t)n;
    }
    client c = {0};
    if (sent == len) {
        c.written = true;
        if (!late_shutdown) {
            shutdown(sv[1], SHUT_WR);
            c.shut = true;
        }
    }
    uv_pipe_init(&loop, &c.pipe, 0);
    c.pipe.data = c.w.data = c.sh.data = &c;
    LX_FUZZ_CHECK(uv_pipe_open(&c.pipe, sv[1]) == 0);
    http_parser_init(&c.rp, HTTP_RESPONSE);
    uv_read_start((uv_stream_t *)&c.pipe, on_client_alloc, on_client_read);
    if (sent < len) {
        uv_buf_t b = uv_buf_init((char *)in, (unsigned)len);
        uv_write(&c.w, (uv_stream_t *)&c.pipe, &b, 1, on_client_written);
        if (!late_shutdown) {
            uv_shutdown(&c.sh, (uv_stream_t *)&c.pipe, on_client_shut);
            c.shut = true;
        }
    }

    /* Turn the loop until both sides have closed. The late client half-closes once two turns have
     * passed with nothing happening and no answer under way. */
    unsigned quiet = 0, seen = activity;
    while (!c.closed || lx_http_server_connections(srv) > 0) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (c.shut || c.closed) continue;
        quiet = (activity == seen && c.written && cur.req == NULL) ? quiet + 1 : 0;
        seen = activity;
        if (quiet >= 2) {
            uv_shutdown(&c.sh, (uv_stream_t *)&c.pipe, on_client_shut);
            c.shut = true;
        }
    }
    uv_run(&loop, UV_RUN_NOWAIT); /* the shutdown request's callback, if still queued */
    LX_FUZZ_CHECK(!c.rp_failed);
    LX_FUZZ_CHECK(cur.req == NULL);
    uv_idle_stop(&later);
    return 0;
}
