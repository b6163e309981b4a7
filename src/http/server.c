/*
 * HTTP/1.1 server: libuv TCP + http-parser. See server.h for the contract.
 *
 * A connection handles one request at a time. Its life:
 *   IDLE ──first byte──▶ READING ──message complete──▶ HANDLING ──last answer byte queued──▶ IDLE
 * (or CLOSING from anywhere). One timer per connection: the idle timeout in IDLE, the header
 * timeout (from the request's first byte until it is complete) in READING, none in HANDLING.
 * These two are deadlines the connection keeps (deadline_set); the timer is moved only when it is not
 * already armed for an earlier time, and a timer that fires before its deadline is armed again for the
 * rest (libuv says when it is due: uv_timer_get_due_in). So a request on a kept-alive connection sets a
 * deadline rather than taking and giving back a place in libuv's timer heap three times. Lingering uses the
 * timer directly, the deadline cleared.
 *
 * While HANDLING, the parser is paused and bytes that arrive (a pipelined request) are kept
 * unparsed in conn->pipelined (capped; past the cap, reading stops until the answer is done).
 * Reading goes on so that a client who leaves is seen at once (EOF → on_abort → upstream cancelled).
 * The next request is parsed when the answer is complete; conn_parse runs in a loop rather than
 * recursing, so a burst of pipelined requests answered synchronously cannot grow the stack.
 *
 * Writes first try uv_try_write and queue only what the socket would not take, so a small answer
 * costs one syscall and no copy. Closing after an answer is "lingering": shutdown, then read and
 * discard until EOF or a short timer, so a client that was still sending does not get a reset that
 * destroys the answer in flight.
 * Memory: a connection is freed in the close callbacks of both its handles, never before.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "utils/buf.h"
#include "utils/list.h"
#include "utils/log.h"

#define MAX_HEADERS   100
#define PIPELINE_CAP  (64 * 1024)
#define LINGER_MS     2000
#define READ_BUF_SIZE (64 * 1024)

typedef enum { CONN_IDLE, CONN_READING, CONN_HANDLING, CONN_CLOSING } conn_state;
typedef enum { REQ_NONE, REQ_ACTIVE, REQ_STREAMING, REQ_DONE } req_state;

typedef struct {
    uint32_t name_off, name_len, value_off, value_len;
} header_pos;

typedef struct lx_conn lx_conn;

struct lx_http_req {
    lx_conn *conn;
    req_state state;
    void *data;
    const char *method;
    uint32_t path_len, query_off, query_len;
    header_pos headers[MAX_HEADERS];
    int n_headers;
    bool want_drain;
    uint64_t start_ns, ready_ns;
};

struct lx_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    lx_http_server *srv;
    lx_list link; /* in srv->conns */
    http_parser parser;
    conn_state state;
    int handles_open;
    bool keep_alive;
    bool in_parse;
    bool reading;
    bool header_is_value; /* the last header callback was for a value */
    bool saw_te, saw_cl;
    uint64_t read_ns;        /* when the last bytes were read: the start and end of the requests in them */
    uint64_t deadline_ms;    /* loop time: the idle or header timeout's (0: none) */
    uv_timer_cb on_deadline; /* what happens at deadline_ms */
    lx_buf head;             /* url, then header names and values, each contiguous */
    lx_buf body;
    lx_buf pipelined;
    size_t write_pending;
    lx_http_req req;
    char peer[48];
};

struct lx_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    lx_http_server_opts opts;
    lx_list conns; /* every connection until its handles closed, newest first */
    size_t n_conns;
    bool accepting;
    bool closing;
    bool listener_open;
    int port;
    char date[40];
    uint64_t date_sec;
};

static char read_buf[READ_BUF_SIZE]; /* one loop thread: every read is consumed before the next */

static void conn_close(lx_conn *c);
static void conn_close_soon(lx_conn *c);
static void conn_parse(lx_conn *c, const char *data, size_t len);
static void conn_request_done(lx_conn *c);
static void conn_fail(lx_conn *c, lx_http_error what, const char *message);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void server_maybe_free(lx_http_server *s);

/* ---------- small helpers ---------- */

const char *lx_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static const char *http_date(lx_http_server *s)
{
    uint64_t now = (uint64_t)lx_wall_s();
    if (now != s->date_sec) {
        time_t t = (time_t)now;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

static lx_conn *conn_of_parser(http_parser *p) { return p->data; }

static void deadline_fired(uv_timer_t *t)
{
    lx_conn *c = t->data;
    if (c->deadline_ms == 0) return; /* none now: the timer stays off until the next deadline_set */
    uint64_t now = uv_now(t->loop);
    if (now < c->deadline_ms) { /* the deadline moved on since the timer was armed */
        uv_timer_start(t, deadline_fired, c->deadline_ms - now, 0);
        return;
    }
    c->deadline_ms = 0;
    c->on_deadline(t);
}

/* The connection's timeout: cb in ms (loop time); ms 0: none. */
static void deadline_set(lx_conn *c, uint64_t ms, uv_timer_cb cb)
{
    if (ms == 0) {
        c->deadline_ms = 0;
        return;
    }
    c->deadline_ms = uv_now(c->timer.loop) + ms;
    c->on_deadline = cb;
    if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= ms) return; /* armed earlier */
    uv_timer_start(&c->timer, deadline_fired, ms, 0);
}

/* The timer to cb in ms, the deadline cleared (lingering, closing soon). */
static void timer_take(lx_conn *c, uint64_t ms, uv_timer_cb cb)
{
    c->deadline_ms = 0;
    uv_timer_start(&c->timer, cb, ms, 0);
}

/* ---------- writing ---------- */

typedef struct {
    uv_write_t w;
    lx_conn *conn;
    size_t len;
    char data[];
} write_req;

static void on_drain_check(lx_conn *c)
{
    lx_http_req *r = &c->req;
    if (r->state == REQ_STREAMING && r->want_drain && c->write_pending <= LX_HTTP_WRITE_LOW_WATER) {
        r->want_drain = false;
        if (c->srv->opts.on_drain) c->srv->opts.on_drain(r, c->srv->opts.ud);
    }
}

static void on_write(uv_write_t *w, int status)
{
    write_req *wr = (write_req *)w;
    lx_conn *c = wr->conn;
    c->write_pending -= wr->len;
    free(wr);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->state == CONN_CLOSING) return;
    if (c->write_pending == 0 && c->req.state == REQ_DONE) {
        conn_request_done(c);
        return;
    }
    on_drain_check(c);
}

/* Sends bufs; what the socket does not take now is copied and queued. Returns -1 if the connection broke. */
static int conn_write(lx_conn *c, uv_buf_t *bufs, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (c->state == CONN_CLOSING) return -1;
    size_t done = 0;
    if (c->write_pending == 0) {
        int rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (rc >= 0)
            done = (size_t)rc;
        else if (rc != UV_EAGAIN)
            return -1;
    }
    if (done == total) return 0;
    write_req *wr = lx_xmalloc(sizeof *wr + (total - done));
    wr->conn = c;
    wr->len = total - done;
    size_t skip = done, off = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t l = bufs[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(wr->data + off, bufs[i].base + skip, l - skip);
        off += l - skip;
        skip = 0;
    }
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(wr);
        return -1;
    }
    c->write_pending += wr->len;
    return 0;
}

static int put_header(lx_buf *h, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    char *w = lx_buf_reserve(h, n + v + 4);
    if (w == NULL) return -1;
    memcpy(w, name, n);
    memcpy(w + n, ": ", 2);
    memcpy(w + n + 2, value, v);
    memcpy(w + n + 2 + v, "\r\n", 2);
    h->len += n + v + 4;
    h->p[h->len] = '\0';
    return 0;
}

/* Status line and headers, without the final blank line (no printf: this runs for every answer). Returns -1 if
 * h's cap was reached. */
static int head_begin(lx_conn *c, lx_buf *h, int status, const lx_http_header *hdrs, size_t n)
{
    lx_http_server *s = c->srv;
    int rc = lx_buf_append_str(h, "HTTP/1.1 ") | lx_buf_append_uint(h, (unsigned)status, 10) |
             lx_buf_append(h, " ", 1) | lx_buf_append_str(h, lx_http_reason(status)) | lx_buf_append(h, "\r\n", 2) |
             put_header(h, "Date", http_date(s));
    if (s->opts.server_name) rc |= put_header(h, "Server", s->opts.server_name);
    for (size_t i = 0; i < n; i++)
        rc |= put_header(h, hdrs[i].name, hdrs[i].value);
    if (!s->accepting) c->keep_alive = false; /* shutting down: this answer is the connection's last */
    rc |= lx_buf_append_str(h, c->keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    return rc;
}

/* The answer's last byte is queued: either the connection goes back to IDLE now, or after the writes. */
static void req_finish(lx_conn *c, bool write_failed)
{
    c->req.state = REQ_DONE;
    if (write_failed) {
        conn_close(c);
        return;
    }
    if (c->write_pending == 0) conn_request_done(c);
}

static int content_length(lx_buf *h, size_t len)
{
    return lx_buf_append_str(h, "Content-Length: ") | lx_buf_append_uint(h, len, 10) | lx_buf_append(h, "\r\n\r\n", 4);
}

void lx_http_respond(lx_http_req *r, int status, const lx_http_header *headers, size_t n_headers, const char *body,
                     size_t len)
{
    lx_conn *c = r->conn;
    char mem[1024];
    lx_buf stack = {mem, 0, sizeof mem, sizeof mem - 1}; /* capped below its size: never reallocated */
    lx_buf heap;
    lx_buf_init(&heap, 0);
    lx_buf *hb = &stack;
    if (head_begin(c, hb, status, headers, n_headers) || content_length(hb, len)) {
        hb = &heap;
        head_begin(c, hb, status, headers, n_headers);
        content_length(hb, len);
    }
    uv_buf_t bufs[2] = {uv_buf_init(hb->p, (unsigned)hb->len), uv_buf_init((char *)body, (unsigned)len)};
    bool failed = conn_write(c, bufs, len ? 2 : 1) < 0;
    lx_buf_free(&heap);
    req_finish(c, failed);
}

void lx_http_stream_begin(lx_http_req *r, int status, const lx_http_header *headers, size_t n_headers)
{
    lx_conn *c = r->conn;
    lx_buf h;
    lx_buf_init(&h, 0);
    head_begin(c, &h, status, headers, n_headers);
    lx_buf_append_str(&h, "Transfer-Encoding: chunked\r\n\r\n");
    uv_buf_t b = uv_buf_init(h.p, (unsigned)h.len);
    r->state = REQ_STREAMING;
    if (conn_write(c, &b, 1) < 0) conn_close_soon(c);
    lx_buf_free(&h);
}

size_t lx_http_stream_write(lx_http_req *r, const char *data, size_t len)
{
    lx_conn *c = r->conn;
    if (len == 0) return c->write_pending;
    char mem[24];
    lx_buf size_line = {mem, 0, sizeof mem, sizeof mem - 1}; /* on the stack: never reallocated */
    lx_buf_append_uint(&size_line, len, 16);
    lx_buf_append(&size_line, "\r\n", 2);
    uv_buf_t bufs[3] = {uv_buf_init(mem, (unsigned)size_line.len), uv_buf_init((char *)data, (unsigned)len),
                        uv_buf_init("\r\n", 2)};
    if (conn_write(c, bufs, 3) < 0) conn_close_soon(c);
    if (c->write_pending > LX_HTTP_WRITE_HIGH_WATER) r->want_drain = true;
    return c->write_pending;
}

void lx_http_stream_end(lx_http_req *r)
{
    lx_conn *c = r->conn;
    uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
    req_finish(c, conn_write(c, &b, 1) < 0);
}

size_t lx_http_pending_bytes(const lx_http_req *r) { return r->conn->write_pending; }

void lx_http_req_drop(lx_http_req *r)
{
    r->state = REQ_DONE;
    conn_close(r->conn);
}

static const int error_status[LX_HTTP_ERR_COUNT] = {
    [LX_HTTP_ERR_MALFORMED] = 400,
    [LX_HTTP_ERR_TIMEOUT] = 408,
    [LX_HTTP_ERR_BODY_TOO_LARGE] = 413,
    [LX_HTTP_ERR_HEADER_TOO_LARGE] = 431,
    [LX_HTTP_ERR_TOO_MANY_CONNECTIONS] = 503,
};

#define ERROR_BODY_CAP 4096

/* An error this layer answers itself (limits, malformed HTTP); the connection closes after it.
 * The body is the owner's (opts.render_error), or the message as plain text. */
static void conn_fail(lx_conn *c, lx_http_error what, const char *message)
{
    if (c->state == CONN_CLOSING || c->req.state == REQ_STREAMING) {
        conn_close(c);
        return;
    }
    const lx_http_server_opts *o = &c->srv->opts;
    int status = error_status[what];
    lx_buf body;
    lx_buf_init(&body, ERROR_BODY_CAP);
    const char *type = NULL;
    if (o->render_error) type = o->render_error(what, status, message, &body, o->ud);
    if (type == NULL) {
        lx_buf_reset(&body);
        lx_buf_printf(&body, "%s\n", message);
        type = "text/plain; charset=utf-8";
    }
    lx_http_header h[] = {{"Content-Type", type}};
    c->keep_alive = false;
    c->state = CONN_HANDLING;
    c->req.state = REQ_ACTIVE;
    lx_http_respond(&c->req, status, h, 1, body.p, body.len);
    lx_buf_free(&body);
}

/* ---------- closing ---------- */

static void on_handle_closed(uv_handle_t *h)
{
    lx_conn *c = h->data;
    if (--c->handles_open > 0) return;
    lx_http_server *s = c->srv;
    LX_ASSERT(s->n_conns > 0);
    lx_list_remove(&c->link);
    s->n_conns--;
    lx_buf_free(&c->head);
    lx_buf_free(&c->body);
    lx_buf_free(&c->pipelined);
    free(c);
    server_maybe_free(s);
}

static void conn_close(lx_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
    bool abort = c->req.state == REQ_ACTIVE || c->req.state == REQ_STREAMING;
    c->state = CONN_CLOSING;
    c->req.state = REQ_NONE;
    if (abort && c->srv->opts.on_abort) c->srv->opts.on_abort(&c->req, c->srv->opts.ud);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_linger_timeout(uv_timer_t *t) { conn_close(t->data); }

/* A write failed inside a handler's call: close from the loop, so on_abort never re-enters the handler. */
static void conn_close_soon(lx_conn *c)
{
    if (c->state == CONN_CLOSING) return;
    c->state = CONN_CLOSING;
    uv_read_stop((uv_stream_t *)&c->tcp);
    timer_take(c, 0, on_linger_timeout);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    (void)status;
    free(sr);
}

/* After the last answer on a connection: FIN, then drain the client's bytes for a moment. */
static void conn_linger(lx_conn *c)
{
    c->state = CONN_CLOSING;
    uv_shutdown_t *sr = lx_xmalloc(sizeof *sr);
    if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(sr);
        conn_close(c);
        return;
    }
    timer_take(c, LINGER_MS, on_linger_timeout);
    if (!c->reading) { /* refused at accept, or stopped by a full pipeline: the client's EOF must be seen */
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

/* ---------- timers ---------- */

static void on_idle_timeout(uv_timer_t *t) { conn_close(t->data); }

static void on_header_timeout(uv_timer_t *t)
{
    lx_conn *c = t->data;
    conn_fail(c, LX_HTTP_ERR_TIMEOUT, "the request did not arrive completely within the header timeout");
}

/* ---------- parsing ---------- */

static void req_reset(lx_conn *c)
{
    lx_http_req *r = &c->req;
    memset(r, 0, sizeof *r);
    r->conn = c;
    lx_buf_reset(&c->head);
    lx_buf_reset(&c->body);
    c->head.max = c->srv->opts.max_header_bytes;
    c->body.max = c->srv->opts.max_body_bytes;
    c->header_is_value = false;
    c->saw_te = c->saw_cl = false;
}

static int on_message_begin(http_parser *p)
{
    lx_conn *c = conn_of_parser(p);
    req_reset(c);
    c->req.start_ns = c->read_ns;
    c->state = CONN_READING;
    deadline_set(c, c->srv->opts.header_timeout_ms, on_header_timeout);
    return 0;
}

static int head_append(lx_conn *c, const char *at, size_t len)
{
    if (lx_buf_append(&c->head, at, len) == 0) return 0;
    conn_fail(c, LX_HTTP_ERR_HEADER_TOO_LARGE, "the request line and headers are larger than server.max_header_bytes");
    return -1;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    lx_conn *c = conn_of_parser(p);
    if (head_append(c, at, len)) return -1;
    c->req.path_len = (uint32_t)c->head.len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    lx_conn *c = conn_of_parser(p);
    lx_http_req *r = &c->req;
    if (r->n_headers == 0 || c->header_is_value) {
        if (r->n_headers == MAX_HEADERS) {
            conn_fail(c, LX_HTTP_ERR_HEADER_TOO_LARGE, "too many request headers");
            return -1;
        }
        r->headers[r->n_headers++] = (header_pos){(uint32_t)c->head.len, 0, 0, 0};
        c->header_is_value = false;
    }
    if (head_append(c, at, len)) return -1;
    r->headers[r->n_headers - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    lx_conn *c = conn_of_parser(p);
    header_pos *h = &c->req.headers[c->req.n_headers - 1];
    if (!c->header_is_value) {
        h->value_off = (uint32_t)c->head.len;
        c->header_is_value = true;
    }
    if (head_append(c, at, len)) return -1;
    h->value_len += (uint32_t)len;
    return 0;
}

static void split_url(lx_conn *c)
{
    lx_http_req *r = &c->req;
    size_t url_len = r->path_len;
    const char *q = memchr(c->head.p, '?', url_len);
    if (q) {
        r->path_len = (uint32_t)(q - c->head.p);
        r->query_off = r->path_len + 1;
        r->query_len = (uint32_t)(url_len - r->query_off);
    }
}

/* Whether header h is named name (n bytes), whatever the case: a name of another length costs no compare. */
static bool header_named(const lx_conn *c, const header_pos *h, const char *name, size_t n)
{
    return h->name_len == n && strncasecmp(c->head.p + h->name_off, name, n) == 0;
}
static bool header_is(const lx_conn *c, const header_pos *h, const char *lit)
{
    return header_named(c, h, lit, strlen(lit));
}

/* RFC 9110 5.6.2 tchar. http-parser (built without HTTP_PARSER_STRICT) lets a space into a header
 * name, so "Content-Length : 5" would be a header no one reads while a proxy in front of us might
 * honour it: a smuggling vector. RFC 9112 5.1: such a request is answered 400. */
static bool is_token(lx_slice s)
{
    if (s.len == 0) return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') continue;
        if ((ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch))) continue;
        return false;
    }
    return true;
}

static int on_headers_complete(http_parser *p)
{
    lx_conn *c = conn_of_parser(p);
    lx_http_req *r = &c->req;
    split_url(c);
    r->method = http_method_str((enum http_method)p->method);
    bool expect_continue = false;
    for (int i = 0; i < r->n_headers; i++) {
        const header_pos *h = &r->headers[i];
        if (!is_token((lx_slice){c->head.p + h->name_off, h->name_len})) {
            conn_fail(c, LX_HTTP_ERR_MALFORMED, "malformed HTTP request: a header name that is not a token");
            return -1;
        }
        if (header_is(c, h, "transfer-encoding"))
            c->saw_te = true;
        else if (header_is(c, h, "content-length"))
            c->saw_cl = true;
        else if (header_is(c, h, "expect"))
            expect_continue = lx_slice_eq_nocase((lx_slice){c->head.p + h->value_off, h->value_len}, "100-continue");
    }
    if (c->saw_te && c->saw_cl) {
        conn_fail(c, LX_HTTP_ERR_MALFORMED, "a request may not carry both Content-Length and Transfer-Encoding");
        return -1;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->opts.max_body_bytes) {
        conn_fail(c, LX_HTTP_ERR_BODY_TOO_LARGE, "the request body is larger than server.max_body_bytes");
        return -1;
    }
    if (expect_continue) {
        uv_buf_t b = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
        conn_write(c, &b, 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    lx_conn *c = conn_of_parser(p);
    if (lx_buf_append(&c->body, at, len) == 0) return 0;
    conn_fail(c, LX_HTTP_ERR_BODY_TOO_LARGE, "the request body is larger than server.max_body_bytes");
    return -1;
}

/* A chunk announced bigger than the body may still grow is refused now, not after it was read. */
static int on_chunk_header(http_parser *p)
{
    lx_conn *c = conn_of_parser(p);
    if (c->body.max == 0 || p->content_length <= c->body.max - c->body.len) return 0;
    conn_fail(c, LX_HTTP_ERR_BODY_TOO_LARGE, "the request body is larger than server.max_body_bytes");
    return -1;
}

static int on_message_complete(http_parser *p)
{
    lx_conn *c = conn_of_parser(p);
    c->keep_alive = http_should_keep_alive(p) && c->srv->accepting;
    c->state = CONN_HANDLING;
    c->req.state = REQ_ACTIVE;
    c->req.ready_ns = c->read_ns;
    c->deadline_ms = 0;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

static void parse_error(lx_conn *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->state == CONN_CLOSING || c->req.state != REQ_NONE) return; /* a callback already answered */
    if (e == HPE_HEADER_OVERFLOW) {
        conn_fail(c, LX_HTTP_ERR_HEADER_TOO_LARGE, "the request line and headers are too large");
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(e));
    conn_fail(c, LX_HTTP_ERR_MALFORMED, msg);
}

/* Parses data; hands complete requests to the handler. Loops instead of recursing (see top). */
static void conn_parse(lx_conn *c, const char *data, size_t len)
{
    if (c->in_parse) return;
    c->in_parse = true;
    while (len > 0 && c->state != CONN_CLOSING && c->state != CONN_HANDLING) {
        size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            parse_error(c);
            break;
        }
        data += n;
        len -= n;
        if (e != HPE_PAUSED) break;
        /* a request is complete: keep the rest unparsed, hand it over, go on if it was answered at once */
        lx_buf rest;
        lx_buf_init(&rest, 0);
        if (len) lx_buf_append(&rest, data, len);
        lx_buf_reset(&c->pipelined);
        lx_buf tmp = c->pipelined;
        c->pipelined = rest;
        lx_buf_free(&tmp);
        c->pipelined.max = PIPELINE_CAP;
        c->srv->opts.on_request(&c->req, c->srv->opts.ud);
        if (c->state != CONN_IDLE) break;
        data = c->pipelined.p;
        len = c->pipelined.len;
        c->pipelined.len = 0; /* bytes stay valid until the next append; the parser copies what it keeps */
    }
    c->in_parse = false;
}

/* The answer is fully handed to the socket: next request, or close. */
static void conn_request_done(lx_conn *c)
{
    if (c->state == CONN_CLOSING) return;
    c->req.state = REQ_NONE;
    if (!c->keep_alive || !c->srv->accepting) {
        conn_linger(c);
        return;
    }
    c->state = CONN_IDLE;
    http_parser_pause(&c->parser, 0);
    deadline_set(c, c->srv->opts.idle_timeout_ms, on_idle_timeout);
    if (!c->reading) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    if (c->in_parse) return; /* the parse loop in progress continues with the pipelined bytes */
    if (c->pipelined.len) {
        size_t n = c->pipelined.len;
        c->pipelined.len = 0;
        conn_parse(c, c->pipelined.p, n);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    lx_conn *c = st->data;
    if (nread < 0) {
        if (c->state == CONN_READING && nread == UV_EOF && c->req.state == REQ_NONE)
            LX_DEBUG(NULL, "client %s closed mid-request", c->peer);
        conn_close(c);
        return;
    }
    if (nread == 0) return;
    if (c->state == CONN_CLOSING) return; /* lingering: discard */
    c->read_ns = lx_now_ns();
    if (c->state == CONN_HANDLING) {
        if (lx_buf_append(&c->pipelined, buf->base, (size_t)nread) < 0) {
            uv_read_stop(st); /* too much ahead of us: wait for the answer to finish */
            c->reading = false;
        }
        return;
    }
    conn_parse(c, buf->base, (size_t)nread);
}

/* ---------- accepting ---------- */

static void peer_name(lx_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    c->peer[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
}

/* A connection whose tcp handle is initialised but not yet connected to a socket. */
static lx_conn *conn_new(lx_http_server *s)
{
    lx_conn *c = lx_xcalloc(1, sizeof *c);
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    lx_list_prepend(&s->conns, &c->link);
    s->n_conns++;
    lx_buf_init(&c->head, s->opts.max_header_bytes);
    lx_buf_init(&c->body, s->opts.max_body_bytes);
    lx_buf_init(&c->pipelined, PIPELINE_CAP);
    req_reset(c);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    return c;
}

/* The connected socket is in c->tcp: refuse it over the limit, else start reading. */
static void conn_start(lx_conn *c)
{
    lx_http_server *s = c->srv;
    uv_tcp_nodelay(&c->tcp, 1);
    peer_name(c);
    if (s->n_conns > (size_t)s->opts.max_connections || !s->accepting) {
        c->keep_alive = false;
        conn_fail(c, LX_HTTP_ERR_TOO_MANY_CONNECTIONS, "the gateway is at server.max_connections; try again shortly");
        return;
    }
    c->state = CONN_IDLE;
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    deadline_set(c, s->opts.idle_timeout_ms, on_idle_timeout);
}

static void on_connection(uv_stream_t *listener, int status)
{
    lx_http_server *s = listener->data;
    if (status < 0) {
        LX_WARN(NULL, "accept failed: %s", uv_strerror(status));
        return;
    }
    lx_conn *c = conn_new(s);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    conn_start(c);
}

int lx_http_server_adopt(lx_http_server *s, uv_os_sock_t fd)
{
    lx_conn *c = conn_new(s);
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        close(fd); /* not the handle's yet: libuv leaves it to us */
        conn_close(c);
        return rc;
    }
    conn_start(c);
    return 0;
}

int lx_http_server_start(uv_loop_t *loop, const lx_http_server_opts *opts, lx_http_server **out)
{
    lx_http_server *s = lx_xcalloc(1, sizeof *s);
    s->loop = loop;
    lx_list_init(&s->conns);
    s->opts = *opts;
    s->accepting = true;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listener_open = true;
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(opts->host, opts->port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(opts->host, opts->port, (struct sockaddr_in6 *)&addr);
    if (rc == 0) rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (rc != 0) {
        lx_http_server_close(s);
        return rc;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    *out = s;
    return 0;
}

static void server_maybe_free(lx_http_server *s)
{
    if (s->closing && !s->listener_open && s->n_conns == 0) free(s);
}

static void on_listener_closed(uv_handle_t *h)
{
    lx_http_server *s = h->data;
    s->listener_open = false;
    server_maybe_free(s);
}

void lx_http_server_stop_accepting(lx_http_server *s)
{
    if (!s->accepting) return;
    s->accepting = false;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    lx_list *n, *tmp;
    LX_LIST_EACH(&s->conns, n, tmp)
    {
        lx_conn *c = LX_CONTAINER_OF(n, lx_conn, link);
        if (c->state == CONN_IDLE) conn_close(c);
    }
}

/* Frees s once the listener and every connection have closed (their callbacks reference s). */
void lx_http_server_close(lx_http_server *s)
{
    s->closing = true;
    lx_list *n, *tmp;
    LX_LIST_EACH(&s->conns, n, tmp) { conn_close(LX_CONTAINER_OF(n, lx_conn, link)); }
    if (s->listener_open && !uv_is_closing((uv_handle_t *)&s->listener)) {
        s->accepting = false;
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    }
    server_maybe_free(s);
}

int lx_http_server_port(const lx_http_server *s) { return s->port; }
size_t lx_http_server_connections(const lx_http_server *s) { return s->n_conns; }

void lx_http_server_set_limits(lx_http_server *s, const lx_http_server_opts *o)
{
    s->opts.max_connections = o->max_connections;
    s->opts.max_header_bytes = o->max_header_bytes;
    s->opts.max_body_bytes = o->max_body_bytes;
    s->opts.header_timeout_ms = o->header_timeout_ms;
    s->opts.idle_timeout_ms = o->idle_timeout_ms;
}

/* ---------- request accessors ---------- */

const char *lx_http_req_method(const lx_http_req *r) { return r->method; }
lx_slice lx_http_req_path(const lx_http_req *r) { return (lx_slice){r->conn->head.p, r->path_len}; }

lx_slice lx_http_req_query(const lx_http_req *r) { return (lx_slice){r->conn->head.p + r->query_off, r->query_len}; }

bool lx_http_req_header(const lx_http_req *r, const char *name, lx_slice *value)
{
    const lx_conn *c = r->conn;
    size_t n = strlen(name); /* once, not once per header */
    for (int i = 0; i < r->n_headers; i++) {
        const header_pos *h = &r->headers[i];
        if (!header_named(c, h, name, n)) continue;
        *value = (lx_slice){c->head.p + h->value_off, h->value_len};
        return true;
    }
    return false;
}

size_t lx_http_req_header_count(const lx_http_req *r) { return (size_t)r->n_headers; }

void lx_http_req_header_at(const lx_http_req *r, size_t i, lx_slice *name, lx_slice *value)
{
    const header_pos *h = &r->headers[i];
    *name = (lx_slice){r->conn->head.p + h->name_off, h->name_len};
    *value = (lx_slice){r->conn->head.p + h->value_off, h->value_len};
}

lx_slice lx_http_req_body(const lx_http_req *r) { return (lx_slice){r->conn->body.p, r->conn->body.len}; }
char *lx_http_req_body_mut(lx_http_req *r) { return r->conn->body.p; }
const char *lx_http_req_peer(const lx_http_req *r) { return r->conn->peer; }

bool lx_http_req_peer_is_loopback(const lx_http_req *r)
{
    const char *p = r->conn->peer;
    return strncmp(p, "127.", 4) == 0 || strcmp(p, "::1") == 0 || strncmp(p, "::ffff:127.", 11) == 0;
}

uint64_t lx_http_req_start_ns(const lx_http_req *r) { return r->start_ns; }
uint64_t lx_http_req_ready_ns(const lx_http_req *r) { return r->ready_ns; }
void lx_http_req_set_data(lx_http_req *r, void *data) { r->data = data; }
void *lx_http_req_data(const lx_http_req *r) { return r->data; }
