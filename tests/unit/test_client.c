/*
 * Unit tests for http/client: a real libuv loop, the real client, and a tiny HTTP server written here
 * with libuv TCP on 127.0.0.1 (ephemeral port) that answers with canned behaviours: a plain 200, a
 * chunked SSE stream written in pieces with timers in between, an endless stream, silence, a close
 * mid-body, garbage, 1xx + 429, a redirect, a large body, a body that ends at EOF, a connection dropped
 * when reused. The server counts accepted connections, requests and the EOFs it sees, so connection
 * reuse and "cancel closes the connection" are checked from the server's side. Every wait is bounded.
 *
 * The whole suite runs twice, once per transport that can carry http:// (the native one of
 * http/upstream.c, and libcurl): the same assertions for both, except where a test says otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "http/client.h"
#include "support.h"
#include "utils/buf.h"
#include "utils/common.h"

/* ---- the test server ------------------------------------------------------------------------ */

typedef enum {
    SRV_NORMAL,      /* 200, Content-Length, JSON body; keep-alive */
    SRV_SSE,         /* 200, chunked text/event-stream, sse_events events sse_interval_ms apart */
    SRV_ENDLESS,     /* like SSE, never ends */
    SRV_SILENT,      /* reads the request, never answers */
    SRV_STALL_MID,   /* headers + 10 of 100 bytes, then nothing */
    SRV_CLOSE_MID,   /* headers + 10 of 100 bytes, then close */
    SRV_NOTHING,     /* reads the request, closes */
    SRV_GARBAGE,     /* not HTTP */
    SRV_INTERIM,     /* 100 Continue, then 429 with Retry-After and no body */
    SRV_REDIRECT,    /* 302 with Location */
    SRV_BIG,         /* 200 with big_size patterned bytes */
    SRV_EOF_BODY,    /* 200 without Content-Length or chunking: the body ends when the server closes */
    SRV_DROP_REUSED, /* like NORMAL for a connection's first request; closes on any later one, unanswered */
    SRV_DROP_LATER,  /* like NORMAL for the server's first request; closes on every later one, unanswered */
} srv_mode;

typedef struct srv srv;

typedef struct sconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    srv *s;
    lx_buf in;
    int events_sent;
    int served; /* requests on this connection */
    bool eof;
    bool closing;
    int open; /* handles not yet closed */
    struct sconn *next;
} sconn;

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listener_open;
    int port;
    srv_mode mode;
    int sse_events;
    int sse_interval_ms;
    size_t big_size;
    int accepted;
    int requests;
    int eofs;
    sconn *conns;
    char last_req[8192];
};

typedef struct {
    uv_write_t req;
    sconn *conn;
    bool close_after;
    char data[];
} swrite;

static void sconn_closed(uv_handle_t *h)
{
    sconn *k = h->data;
    if (--k->open > 0) return;
    srv *s = k->s;
    for (sconn **pp = &s->conns; *pp; pp = &(*pp)->next) {
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    }
    lx_buf_free(&k->in);
    free(k);
}

static void sconn_close(sconn *k)
{
    if (k->closing) return;
    k->closing = true;
    uv_close((uv_handle_t *)&k->timer, sconn_closed);
    uv_close((uv_handle_t *)&k->tcp, sconn_closed);
}

static void swrite_done(uv_write_t *req, int status)
{
    swrite *w = (swrite *)req;
    (void)status;
    if (w->close_after) sconn_close(w->conn);
    free(w);
}

static void swrite_bytes(sconn *k, const char *data, size_t n, bool close_after)
{
    if (k->closing) return;
    swrite *w = lx_xmalloc(sizeof *w + n);
    memcpy(w->data, data, n);
    w->conn = k;
    w->close_after = close_after;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&k->tcp, &b, 1, swrite_done) != 0) {
        free(w);
        sconn_close(k);
    }
}

static void swrite_str(sconn *k, const char *s, bool close_after) { swrite_bytes(k, s, strlen(s), close_after); }

static unsigned char big_byte(size_t i) { return (unsigned char)((i * 7 + i / 251) & 0xff); }

static void sse_tick(uv_timer_t *t)
{
    sconn *k = t->data;
    srv *s = k->s;
    if (s->mode == SRV_SSE && k->events_sent == s->sse_events) {
        uv_timer_stop(t);
        swrite_str(k, "0\r\n\r\n", false);
        return;
    }
    char ev[64], chunk[96];
    int n = snprintf(ev, sizeof ev, "data: {\"i\":%d}\n\n", k->events_sent++);
    int m = snprintf(chunk, sizeof chunk, "%x\r\n%s\r\n", n, ev);
    swrite_bytes(k, chunk, (size_t)m, false);
}

static void respond(sconn *k)
{
    srv *s = k->s;
    char hdr[512];
    switch (s->mode) {
    case SRV_NORMAL: {
        char body[64];
        int n = snprintf(body, sizeof body, "{\"ok\":true,\"n\":%d}", s->requests);
        snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                 n, body);
        swrite_str(k, hdr, false);
        break;
    }
    case SRV_SSE:
    case SRV_ENDLESS:
        k->events_sent = 0;
        swrite_str(k, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
                   false);
        uv_timer_start(&k->timer, sse_tick, (uint64_t)s->sse_interval_ms, (uint64_t)s->sse_interval_ms);
        break;
    case SRV_SILENT: break;
    case SRV_STALL_MID:
    case SRV_CLOSE_MID:
        swrite_str(k, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789",
                   s->mode == SRV_CLOSE_MID);
        break;
    case SRV_NOTHING: sconn_close(k); break;
    case SRV_GARBAGE: swrite_str(k, "HELLO THERE, THIS IS NOT HTTP\r\n\r\n", true); break;
    case SRV_INTERIM:
        swrite_str(k,
                   "HTTP/1.1 100 Continue\r\n\r\n"
                   "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After:  7 \r\n"
                   "Content-Length: 0\r\n\r\n",
                   false);
        break;
    case SRV_REDIRECT:
        swrite_str(k, "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n", false);
        break;
    case SRV_EOF_BODY:
        swrite_str(k, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello, until EOF", true);
        break;
    case SRV_DROP_REUSED:
    case SRV_DROP_LATER: {
        bool drop = s->mode == SRV_DROP_REUSED ? k->served > 1 : s->requests > 1;
        if (drop) {
            sconn_close(k);
            break;
        }
        char body[64];
        int n = snprintf(body, sizeof body, "{\"ok\":true,\"n\":%d}", s->requests);
        snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                 n, body);
        swrite_str(k, hdr, false);
        break;
    }
    case SRV_BIG: {
        snprintf(hdr, sizeof hdr,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                 s->big_size);
        swrite_str(k, hdr, false);
        char *body = lx_xmalloc(s->big_size);
        for (size_t i = 0; i < s->big_size; i++)
            body[i] = (char)big_byte(i);
        swrite_bytes(k, body, s->big_size, false);
        free(body);
        break;
    }
    }
}

static void try_requests(sconn *k)
{
    for (;;) {
        char *end = memmem(k->in.p, k->in.len, "\r\n\r\n", 4);
        if (!end) return;
        size_t head = (size_t)(end - k->in.p) + 4, cl = 0;
        for (char *p = k->in.p; p < end; p++) {
            if ((p == k->in.p || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
                cl = strtoul(p + 15, NULL, 10);
        }
        if (k->in.len < head + cl) return;
        size_t n = LX_MIN(head + cl, sizeof k->s->last_req - 1);
        memcpy(k->s->last_req, k->in.p, n);
        k->s->last_req[n] = '\0';
        k->s->requests++;
        k->served++;
        lx_buf_consume(&k->in, head + cl);
        respond(k);
        if (k->closing) return;
    }
}

static void salloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    static char buf[65536];
    *b = uv_buf_init(buf, sizeof buf);
}

static void sread(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sconn *k = st->data;
    if (n < 0) {
        if (!k->eof) k->s->eofs++;
        k->eof = true;
        sconn_close(k);
        return;
    }
    if (n > 0) {
        assert_int_equal(lx_buf_append(&k->in, b->base, (size_t)n), 0);
        try_requests(k);
    }
}

static void saccept(uv_stream_t *l, int status)
{
    srv *s = l->data;
    if (status < 0) return;
    sconn *k = lx_xcalloc(1, sizeof *k);
    k->s = s;
    lx_buf_init(&k->in, 1 << 20);
    uv_tcp_init(s->loop, &k->tcp);
    uv_timer_init(s->loop, &k->timer);
    k->tcp.data = k->timer.data = k;
    k->open = 2;
    k->next = s->conns;
    s->conns = k;
    if (uv_accept(l, (uv_stream_t *)&k->tcp) != 0) {
        sconn_close(k);
        return;
    }
    s->accepted++;
    uv_read_start((uv_stream_t *)&k->tcp, salloc, sread);
}

static int bind_ephemeral(uv_tcp_t *t)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(t, (const struct sockaddr *)&a, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_start(srv *s, uv_loop_t *loop)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->sse_events = 5;
    s->sse_interval_ms = 20;
    s->big_size = 1 << 20;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->port = bind_ephemeral(&s->listener);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 128, saccept), 0);
    s->listener_open = true;
}

static void srv_stop(srv *s)
{
    if (s->listener_open) uv_close((uv_handle_t *)&s->listener, NULL);
    s->listener_open = false;
    for (sconn *k = s->conns; k; k = k->next)
        sconn_close(k);
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct rec rec;

typedef struct {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps UV_RUN_ONCE returning so waits stay bounded */
    srv s;
    lx_http_client *c;
    lx_http_transport transport;
    char url[128];
    rec *recs[80]; /* owned by the fixture, so a failed assertion still tears down cleanly */
    size_t nrecs;
} fx;

static void recs_free(fx *f);

static void tick_cb(uv_timer_t *t) { (void)t; }

/* The transport of the group running (main runs every test once per transport). */
static lx_http_transport g_transport;

static int group_native(void **state)
{
    (void)state;
    g_transport = LX_HTTP_NATIVE;
    return 0;
}

static int group_curl(void **state)
{
    (void)state;
    g_transport = LX_HTTP_CURL;
    return 0;
}

static int setup(void **state)
{
    fx *f = lx_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, tick_cb, 5, 5);
    srv_start(&f->s, &f->loop);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/v1/chat/completions", f->s.port);
    f->c = lx_http_client_new(&f->loop);
    assert_non_null(f->c);
    f->transport = g_transport;
    lx_http_client_set_transport(f->c, g_transport);
    *state = f;
    return 0;
}

static void walk_print(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "left open: %s (active %d)\n", uv_handle_type_name(h->type), uv_is_active(h));
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->c) lx_http_client_free(f->c);
    recs_free(f);
    srv_stop(&f->s);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uint64_t deadline = lx_now_ns() + 2000000000ull;
    while (uv_loop_alive(&f->loop) && lx_now_ns() < deadline)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&f->loop);
    if (rc != 0) uv_walk(&f->loop, walk_print, NULL);
    assert_int_equal(rc, 0);
    free(f);
    return 0;
}

/* ---- a recording caller --------------------------------------------------------------------- */

#define CURL_ERROR_SIZE_FOR_TESTS 256

struct rec {
    fx *f;
    lx_upstream *u;
    int heads, datas, dones;
    bool data_before_head;
    bool after_end; /* a callback after on_done or after cancel */
    bool cancelled;
    int status;
    char ctype[128];
    char retry[32];
    lx_buf body;
    lx_up_result result;
    char detail[CURL_ERROR_SIZE_FOR_TESTS];
    double t_start, t_done;
    /* behaviours */
    int cancel_at_data; /* cancel self inside the nth on_data (1-based) */
    rec *cancel_other;  /* ... or cancel this other one at the first on_data */
    int stop_at_data;   /* return false from the nth on_data */
    bool pause_each;    /* pause in every on_data, resume from a timer */
    uint64_t resume_after_ms;
    bool paused_now;
    bool in_resume;
    bool data_while_paused;
    int pauses;
    uv_timer_t timer;      /* resumes, or cancels from outside any callback */
    rec *start_on_headers; /* start this one from inside on_headers */
    rec *start_on_data;    /* ... from inside the first on_data */
    rec *start_on_done;    /* ... from inside on_done */
    bool free_client_at_data;
    const char *req_url;
};

static void rec_start(rec *r);

static rec *rec_new(fx *f)
{
    assert_true(f->nrecs < LX_ARRAY_LEN(f->recs));
    rec *r = lx_xcalloc(1, sizeof *r);
    r->f = f;
    r->result = (lx_up_result)-1;
    lx_buf_init(&r->body, 16u << 20);
    uv_timer_init(&f->loop, &r->timer);
    r->timer.data = r;
    f->recs[f->nrecs++] = r;
    return r;
}

static void rec_closed(uv_handle_t *h) { free(h->data); }

/* After the client is gone: no callback can reach a rec any more. */
static void recs_free(fx *f)
{
    for (size_t i = 0; i < f->nrecs; i++) {
        rec *r = f->recs[i];
        lx_buf_free(&r->body);
        uv_close((uv_handle_t *)&r->timer, rec_closed);
    }
    f->nrecs = 0;
}

static void resume_fired(uv_timer_t *t)
{
    rec *r = t->data;
    if (r->dones || r->cancelled) return;
    r->paused_now = false;
    r->in_resume = true;
    lx_upstream_resume(r->u);
    r->in_resume = false;
}

static void on_headers(lx_upstream *u, const lx_up_head *h, void *ud)
{
    rec *r = ud;
    assert_ptr_equal(u, r->u);
    if (r->dones || r->cancelled) r->after_end = true;
    r->heads++;
    r->status = h->status;
    snprintf(r->ctype, sizeof r->ctype, "%.*s", (int)h->content_type.len, h->content_type.p);
    snprintf(r->retry, sizeof r->retry, "%.*s", (int)h->retry_after.len, h->retry_after.p);
    if (r->start_on_headers) rec_start(r->start_on_headers);
}

static bool on_data(lx_upstream *u, const char *data, size_t len, void *ud)
{
    rec *r = ud;
    assert_ptr_equal(u, r->u);
    if (r->dones || r->cancelled) r->after_end = true;
    if (r->heads == 0) r->data_before_head = true;
    if (r->paused_now || r->in_resume) r->data_while_paused = true;
    r->datas++;
    assert_int_equal(lx_buf_append(&r->body, data, len), 0);
    if (r->start_on_data && r->datas == 1) rec_start(r->start_on_data);
    if (r->cancel_other && r->datas == 1) {
        r->cancel_other->cancelled = true;
        lx_upstream_cancel(r->cancel_other->u);
    }
    if (r->free_client_at_data) {
        lx_http_client_free(r->f->c);
        r->f->c = NULL;
        return true;
    }
    if (r->cancel_at_data && r->datas == r->cancel_at_data) {
        r->cancelled = true;
        lx_upstream_cancel(u);
        lx_upstream_cancel(u); /* twice is harmless */
        return true;
    }
    if (r->stop_at_data && r->datas == r->stop_at_data) return false;
    if (r->pause_each) {
        lx_upstream_pause(u);
        r->paused_now = true;
        r->pauses++;
        uv_timer_start(&r->timer, resume_fired, r->resume_after_ms, 0);
    }
    return true;
}

static void on_done(lx_upstream *u, lx_up_result res, const char *detail, void *ud)
{
    rec *r = ud;
    assert_ptr_equal(u, r->u);
    if (r->dones || r->cancelled) r->after_end = true;
    r->dones++;
    r->result = res;
    r->t_done = lx_now_ms();
    snprintf(r->detail, sizeof r->detail, "%s", detail);
    if (r->start_on_done) rec_start(r->start_on_done);
}

static const lx_upstream_cbs rec_cbs = {on_headers, on_data, on_done};

static const char *test_headers[] = {"X-Test: 1", "Authorization: Bearer k", NULL};
static const char test_body[] = "{\"model\":\"m\",\"messages\":[]}";

static lx_upstream_req rec_req(rec *r)
{
    return (lx_upstream_req){
        .method = "POST",
        .url = r->req_url ? r->req_url : r->f->url,
        .headers = test_headers,
        .body = test_body,
        .body_len = sizeof test_body - 1,
        .timeout_ms = 5000,
    };
}

static void rec_start_req(rec *r, const lx_upstream_req *req)
{
    r->t_start = lx_now_ms();
    r->u = lx_upstream_start(r->f->c, req, &rec_cbs, r);
    assert_non_null(r->u);
}

static void rec_start(rec *r)
{
    lx_upstream_req req = rec_req(r);
    rec_start_req(r, &req);
}

static bool rec_done(void *arg) { return ((rec *)arg)->dones > 0; }

static bool wait_done(fx *f, rec *r, uint64_t ms) { return lx_test_run_until(&f->loop, rec_done, r, ms); }

static void assert_clean(const rec *r)
{
    assert_false(r->data_before_head);
    assert_false(r->after_end);
    assert_true(r->dones <= 1);
}

typedef struct {
    srv *s;
    int n;
} srv_count;

static bool srv_eofs_reached(void *arg)
{
    srv_count *sc = arg;
    return sc->s->eofs >= sc->n;
}

static bool srv_requests_reached(void *arg)
{
    srv_count *sc = arg;
    return sc->s->requests >= sc->n;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_result_names(void **state)
{
    (void)state;
    assert_string_equal(lx_up_result_name(LX_UP_OK), "ok");
    assert_string_equal(lx_up_result_name(LX_UP_CONNECT), "connect");
    assert_string_equal(lx_up_result_name(LX_UP_TIMEOUT), "timeout");
    assert_string_equal(lx_up_result_name(LX_UP_RESET), "reset");
    assert_string_equal(lx_up_result_name(LX_UP_BAD_RESPONSE), "bad_response");
    assert_string_equal(lx_up_result_name(LX_UP_CALLER), "caller");
    assert_string_equal(lx_up_result_name(LX_UP_OTHER), "other");
}

static void test_normal_200(void **state)
{
    fx *f = *state;
    rec *r = rec_new(f);
    rec_start(r);
    assert_int_equal(lx_http_client_active(f->c), 1);
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_OK);
    assert_string_equal(r->detail, "");
    assert_int_equal(r->heads, 1);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "application/json");
    assert_string_equal(r->retry, "");
    assert_int_equal(r->body.len, strlen("{\"ok\":true,\"n\":1}"));
    assert_memory_equal(r->body.p, "{\"ok\":true,\"n\":1}", r->body.len);
    assert_int_equal(lx_http_client_active(f->c), 0);

    /* What the backend received: the method, our headers, the body, no Expect, a JSON content type. */
    const char *q = f->s.last_req;
    assert_true(strncmp(q, "POST /v1/chat/completions HTTP/1.1\r\n", 36) == 0);
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", f->s.port);
    assert_non_null(strstr(q, host));
    assert_non_null(strstr(q, "\r\nX-Test: 1\r\n"));
    assert_non_null(strstr(q, "\r\nAuthorization: Bearer k\r\n"));
    assert_non_null(strstr(q, "\r\nContent-Type: application/json\r\n"));
    assert_null(strcasestr(q, "expect:"));
    char cl[64];
    snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", sizeof test_body - 1);
    assert_non_null(strstr(q, cl));
    assert_non_null(strstr(q, "\r\n\r\n{\"model\":\"m\",\"messages\":[]}"));
}

static void test_get_and_reuse(void **state)
{
    fx *f = *state;
    rec *a = rec_new(f), *b = rec_new(f), *c = rec_new(f);
    lx_upstream_req req = {.method = "GET", .url = f->url, .timeout_ms = 2000};
    rec_start_req(a, &req);
    assert_true(wait_done(f, a, 3000));
    assert_true(strncmp(f->s.last_req, "GET /v1/chat/completions HTTP/1.1\r\n", 35) == 0);
    rec_start_req(b, &req);
    assert_true(wait_done(f, b, 3000));
    rec_start(c);
    assert_true(wait_done(f, c, 3000));
    assert_int_equal(a->result, LX_UP_OK);
    assert_int_equal(b->result, LX_UP_OK);
    assert_int_equal(c->result, LX_UP_OK);
    assert_memory_equal(b->body.p, "{\"ok\":true,\"n\":2}", b->body.len);
    assert_true(strncmp(f->s.last_req, "POST ", 5) == 0);
    assert_int_equal(f->s.requests, 3);
    assert_int_equal(f->s.accepted, 1); /* one connection, reused */
    assert_int_equal(f->s.eofs, 0);
}

static void test_sse_chunked(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_SSE;
    f->s.sse_events = 5;
    f->s.sse_interval_ms = 30;
    rec *r = rec_new(f);
    lx_upstream_req req = rec_req(r);
    req.small_buffer = true;
    req.timeout_ms = 1000;
    rec_start_req(r, &req);
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_OK);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->ctype, "text/event-stream");
    assert_true(r->datas >= 5); /* written in pieces, 30 ms apart */
    lx_buf want;
    lx_buf_init(&want, 0);
    for (int i = 0; i < 5; i++)
        lx_buf_printf(&want, "data: {\"i\":%d}\n\n", i);
    assert_int_equal(r->body.len, want.len);
    assert_memory_equal(r->body.p, want.p, want.len);
    lx_buf_free(&want);
}

static void test_slow_stream_is_not_a_timeout(void **state)
{
    /* 8 events 100 ms apart (800 ms in all) with timeout_ms 300: the timeout is between reads. */
    fx *f = *state;
    f->s.mode = SRV_SSE;
    f->s.sse_events = 8;
    f->s.sse_interval_ms = 100;
    rec *r = rec_new(f);
    lx_upstream_req req = rec_req(r);
    req.timeout_ms = 300;
    rec_start_req(r, &req);
    assert_true(wait_done(f, r, 3000));
    assert_int_equal(r->result, LX_UP_OK);
    assert_true(r->t_done - r->t_start >= 700);
}

static void test_timeout_silent(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_SILENT;
    rec *r = rec_new(f);
    lx_upstream_req req = rec_req(r);
    req.timeout_ms = 1000;
    rec_start_req(r, &req);
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_TIMEOUT);
    assert_int_equal(r->heads, 0);
    double took = r->t_done - r->t_start;
    assert_true(took >= 990 && took < 1500);
    /* and the connection is closed, so the backend can free the slot */
    srv_count sc = {&f->s, 1};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 2000));
}

static void test_timeout_between_reads(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_STALL_MID;
    rec *r = rec_new(f);
    lx_upstream_req req = rec_req(r);
    req.timeout_ms = 300;
    rec_start_req(r, &req);
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_TIMEOUT);
    assert_int_equal(r->heads, 1);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body.len, 10);
    double took = r->t_done - r->t_start;
    assert_true(took >= 290 && took < 1000);
    srv_count sc = {&f->s, 1};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 2000));
}

static void test_close_mid_body(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_CLOSE_MID;
    rec *r = rec_new(f);
    rec_start(r);
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_RESET);
    assert_int_equal(r->heads, 1);
    assert_int_equal(r->body.len, 10);
    assert_true(r->detail[0] != '\0');
}

static void test_got_nothing(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_NOTHING;
    rec *r = rec_new(f);
    rec_start(r);
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_RESET);
    assert_int_equal(r->heads, 0);
}

static void test_refused(void **state)
{
    fx *f = *state;
    uv_tcp_t t;
    uv_tcp_init(&f->loop, &t);
    int port = bind_ephemeral(&t); /* bound, never listening, then closed: connecting is refused */
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    rec *r = rec_new(f);
    r->req_url = url;
    rec_start(r);
    assert_int_equal(r->dones, 0); /* never synchronously */
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_CONNECT);
    assert_int_equal(r->heads, 0);
    assert_true(r->detail[0] != '\0');
}

/* A listener whose accept queue is full: Linux drops further SYNs, so a connect hangs until curl's
 * connect timeout, which is reported as LX_UP_CONNECT (nothing was sent). */
static void test_connect_timeout(void **state)
{
    fx *f = *state;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 0), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    int fill[4];
    for (size_t i = 0; i < LX_ARRAY_LEN(fill); i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    lx_test_run_for(&f->loop, 50);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    rec *r = rec_new(f);
    r->req_url = url;
    lx_upstream_req req = rec_req(r);
    req.timeout_ms = 0;
    req.connect_timeout_ms = 300;
    rec_start_req(r, &req);
    bool done = wait_done(f, r, 3000);
    for (size_t i = 0; i < LX_ARRAY_LEN(fill); i++)
        close(fill[i]);
    close(l);
    assert_true(done);
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_CONNECT);
    double took = r->t_done - r->t_start;
    assert_true(took >= 290 && took < 1500);
}

static void test_garbage(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_GARBAGE;
    rec *r = rec_new(f);
    rec_start(r);
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_BAD_RESPONSE);
    assert_int_equal(r->heads, 0);
}

static void test_bad_url(void **state)
{
    fx *f = *state;
    rec *r = rec_new(f);
    r->req_url = "http://[::1";
    rec_start(r);
    assert_int_equal(r->dones, 0); /* never synchronously */
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_OTHER);
}

static void test_interim_then_429_no_body(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_INTERIM;
    rec *r = rec_new(f);
    rec_start(r);
    assert_true(wait_done(f, r, 3000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_OK);
    assert_int_equal(r->heads, 1); /* once, for the final answer, and before on_done */
    assert_int_equal(r->status, 429);
    assert_string_equal(r->retry, "7");
    assert_string_equal(r->ctype, "application/json");
    assert_int_equal(r->datas, 0);
}

static void test_no_redirect(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_REDIRECT;
    rec *r = rec_new(f);
    rec_start(r);
    assert_true(wait_done(f, r, 3000));
    lx_test_run_for(&f->loop, 50);
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_OK);
    assert_int_equal(r->status, 302);
    assert_int_equal(f->s.requests, 1);
}

static void check_big_body(const rec *r, size_t n)
{
    assert_int_equal(r->body.len, n);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)r->body.p[i] != big_byte(i)) fail_msg("byte %zu out of order", i);
    }
}

static void test_pause_resume(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_BIG;
    f->s.big_size = 1 << 20;
    rec *r = rec_new(f);
    r->pause_each = true;
    r->resume_after_ms = 1;
    lx_upstream_req req = rec_req(r);
    req.small_buffer = true; /* many small pieces, many pauses */
    rec_start_req(r, &req);
    assert_true(wait_done(f, r, 5000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_OK);
    assert_false(r->data_while_paused); /* never while paused, never inside resume() */
    assert_true(r->pauses > 20);
    check_big_body(r, f->s.big_size);
}

static bool rec_paused_once(void *arg) { return ((rec *)arg)->pauses > 0; }

static void test_pause_longer_than_timeout(void **state)
{
    /* Held paused by us for 400 ms with timeout_ms 150: the backend is not silent, we are slow. */
    fx *f = *state;
    f->s.mode = SRV_BIG;
    f->s.big_size = 200000;
    rec *r = rec_new(f);
    r->pause_each = true;
    r->resume_after_ms = 400;
    lx_upstream_req req = rec_req(r);
    req.timeout_ms = 150;
    rec_start_req(r, &req);
    assert_true(lx_test_run_until(&f->loop, rec_paused_once, r, 3000));
    r->pause_each = false; /* only the first piece pauses */
    assert_true(wait_done(f, r, 5000));
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_OK);
    assert_true(r->t_done - r->t_start >= 390);
    check_big_body(r, f->s.big_size);
}

/* With pause/resume, most pieces reach on_data from inside curl_easy_pause(CONT) (curl hands over what
 * it held): cancelling or stopping there must be deferred like anywhere else inside curl. */
static void test_cancel_while_resuming(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_BIG;
    rec *r = rec_new(f);
    r->pause_each = true;
    r->resume_after_ms = 1;
    r->cancel_at_data = 5;
    lx_upstream_req req = rec_req(r);
    req.small_buffer = true;
    rec_start_req(r, &req);
    srv_count sc = {&f->s, 1};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000));
    lx_test_run_for(&f->loop, 50);
    assert_true(r->cancelled);
    assert_false(r->after_end);
    assert_false(r->data_while_paused);
    assert_int_equal(r->datas, 5);
    assert_int_equal(r->dones, 0);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

static void test_stop_while_resuming(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_BIG;
    rec *r = rec_new(f);
    r->pause_each = true;
    r->resume_after_ms = 1;
    r->stop_at_data = 5;
    lx_upstream_req req = rec_req(r);
    req.small_buffer = true;
    rec_start_req(r, &req);
    assert_true(wait_done(f, r, 3000));
    srv_count sc = {&f->s, 1};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000));
    lx_test_run_for(&f->loop, 50);
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_CALLER);
    assert_int_equal(r->datas, 5);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

static void test_cancel_inside_on_data(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_ENDLESS;
    f->s.sse_interval_ms = 10;
    rec *r = rec_new(f);
    r->cancel_at_data = 3;
    rec_start(r);
    srv_count sc = {&f->s, 1};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000)); /* the backend sees the client leave */
    lx_test_run_for(&f->loop, 100);
    assert_true(r->cancelled);
    assert_false(r->after_end);
    assert_int_equal(r->dones, 0);
    assert_int_equal(r->datas, 3);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

static void cancel_fired(uv_timer_t *t)
{
    rec *r = t->data;
    r->cancelled = true;
    lx_upstream_cancel(r->u);
}

static bool rec_has_data(void *arg) { return ((rec *)arg)->datas >= 2; }

static void test_cancel_outside_then_fresh_connection(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_ENDLESS;
    f->s.sse_interval_ms = 10;
    rec *r = rec_new(f);
    rec_start(r);
    assert_true(lx_test_run_until(&f->loop, rec_has_data, r, 3000));
    uv_timer_start(&r->timer, cancel_fired, 1, 0);
    srv_count sc = {&f->s, 1};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000));
    lx_test_run_for(&f->loop, 50);
    assert_true(r->cancelled);
    assert_false(r->after_end);
    assert_int_equal(r->dones, 0);
    assert_int_equal(lx_http_client_active(f->c), 0);

    /* the cancelled connection was not pooled: the next request needs a new one */
    f->s.mode = SRV_NORMAL;
    rec *b = rec_new(f);
    rec_start(b);
    assert_true(wait_done(f, b, 3000));
    assert_int_equal(b->result, LX_UP_OK);
    assert_int_equal(f->s.accepted, 2);
}

static void test_caller_stop(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_ENDLESS;
    f->s.sse_interval_ms = 10;
    rec *r = rec_new(f);
    r->stop_at_data = 2;
    rec_start(r);
    assert_true(wait_done(f, r, 3000));
    srv_count sc = {&f->s, 1};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000));
    lx_test_run_for(&f->loop, 50);
    assert_clean(r);
    assert_int_equal(r->result, LX_UP_CALLER);
    assert_int_equal(r->datas, 2);
}

static void test_start_from_callbacks(void **state)
{
    fx *f = *state;
    rec *a = rec_new(f), *b = rec_new(f), *c = rec_new(f), *d = rec_new(f);
    a->start_on_headers = b; /* inside curl */
    b->start_on_data = c;    /* inside curl */
    c->start_on_done = d;    /* after curl */
    rec_start(a);
    rec *all[] = {a, b, c, d};
    for (size_t i = 0; i < 4; i++)
        assert_true(wait_done(f, all[i], 3000));
    for (size_t i = 0; i < 4; i++) {
        assert_clean(all[i]);
        assert_int_equal(all[i]->result, LX_UP_OK);
        assert_int_equal(all[i]->status, 200);
    }
    assert_int_equal(f->s.requests, 4);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

static void test_cancel_other_from_callback(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_ENDLESS;
    f->s.sse_interval_ms = 10;
    rec *a = rec_new(f), *b = rec_new(f);
    rec_start(b);
    assert_true(lx_test_run_until(&f->loop, rec_has_data, b, 3000));
    a->cancel_other = b;
    a->stop_at_data = 3;
    rec_start(a);
    assert_true(wait_done(f, a, 3000));
    srv_count sc = {&f->s, 2};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000));
    lx_test_run_for(&f->loop, 50);
    assert_clean(a);
    assert_int_equal(a->result, LX_UP_CALLER);
    assert_false(b->after_end);
    assert_int_equal(b->dones, 0);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

static void test_many_parallel(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_SSE;
    f->s.sse_events = 3;
    f->s.sse_interval_ms = 5;
    enum { N = 64 };
    rec *rs[N];
    for (int i = 0; i < N; i++) {
        rs[i] = rec_new(f);
        lx_upstream_req req = rec_req(rs[i]);
        req.small_buffer = true;
        rec_start_req(rs[i], &req);
    }
    assert_int_equal(lx_http_client_active(f->c), N);
    for (int i = 0; i < N; i++) {
        assert_true(wait_done(f, rs[i], 5000));
        assert_clean(rs[i]);
        assert_int_equal(rs[i]->result, LX_UP_OK);
        assert_int_equal(rs[i]->body.len, 3 * strlen("data: {\"i\":0}\n\n"));
    }
    assert_int_equal(f->s.requests, N);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

static void test_free_with_requests_running(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_ENDLESS;
    f->s.sse_interval_ms = 10;
    rec *rs[3];
    for (int i = 0; i < 3; i++) {
        rs[i] = rec_new(f);
        rec_start(rs[i]);
    }
    for (int i = 0; i < 3; i++)
        assert_true(lx_test_run_until(&f->loop, rec_has_data, rs[i], 3000));
    f->s.mode = SRV_SILENT;
    rec *quiet = rec_new(f), *never = rec_new(f);
    rs[0]->pause_each = true; /* one of them paused, with a resume pending */
    rs[0]->resume_after_ms = 1;
    rec_start(quiet);
    srv_count sr = {&f->s, 4};
    assert_true(lx_test_run_until(&f->loop, srv_requests_reached, &sr, 3000));
    rec_start(never); /* not even connected yet */
    lx_http_client_free(f->c);
    f->c = NULL;
    srv_count sc = {&f->s, 4};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000));
    lx_test_run_for(&f->loop, 50);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rs[i]->dones, 0);
        assert_false(rs[i]->after_end);
    }
    assert_int_equal(quiet->dones, 0);
    assert_int_equal(never->dones, 0);
    assert_int_equal(never->heads, 0);
}

static void test_free_from_inside_callback(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_ENDLESS;
    f->s.sse_interval_ms = 10;
    rec *a = rec_new(f), *b = rec_new(f);
    rec_start(b);
    assert_true(lx_test_run_until(&f->loop, rec_has_data, b, 3000));
    a->free_client_at_data = true;
    rec_start(a);
    srv_count sc = {&f->s, 2};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000));
    assert_null(f->c);
    int b_datas = b->datas;
    lx_test_run_for(&f->loop, 50);
    assert_int_equal(a->datas, 1);
    assert_int_equal(a->dones, 0);
    assert_int_equal(b->dones, 0);
    assert_int_equal(b->datas, b_datas);
}

/* ---- sockets: one handle per connection for its whole life --------------------------------- */

/* The client's connection handles, seen from the loop: libcurl's sockets are uv_poll_t (the test server
 * has none); the native transport's are uv_tcp_t, told from the test server's own by elimination. */
typedef struct {
    const fx *f;
    int n;       /* not closing */
    int active;  /* of those, started */
    int closing; /* uv_close called, close callback pending */
    int fd;      /* of the last one not closing */
    const uv_handle_t *h;
} poll_census;

static bool server_handle(const srv *s, const uv_handle_t *h)
{
    if (h == (const uv_handle_t *)&s->listener) return true;
    for (const sconn *k = s->conns; k; k = k->next) {
        if (h == (const uv_handle_t *)&k->tcp) return true;
    }
    return false;
}

static bool client_conn_handle(const fx *f, const uv_handle_t *h)
{
    if (f->transport == LX_HTTP_CURL) return h->type == UV_POLL;
    return h->type == UV_TCP && !server_handle(&f->s, h);
}

static void census_cb(uv_handle_t *h, void *arg)
{
    poll_census *pc = arg;
    if (!client_conn_handle(pc->f, h)) return;
    if (uv_is_closing(h)) {
        pc->closing++;
        return;
    }
    pc->n++;
    if (uv_is_active(h)) pc->active++;
    uv_os_fd_t fd;
    if (uv_fileno(h, &fd) == 0) pc->fd = fd;
    pc->h = h;
}

static poll_census census(fx *f)
{
    poll_census pc = {f, 0, 0, 0, -1, NULL};
    uv_walk(&f->loop, census_cb, &pc);
    return pc;
}

/* Loop turns in ms milliseconds: the fixture's tick wakes the loop every 5 ms, so an idle loop makes
 * about ms / 5; a poll spinning on a level-triggered EOF makes thousands. */
static int turns_in(fx *f, uint64_t ms)
{
    int turns = 0;
    uint64_t deadline = lx_now_ns() + ms * 1000000ull;
    while (lx_now_ns() < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
        turns++;
    }
    return turns;
}

static void test_idle_pooled_closed_by_server(void **state)
{
    fx *f = *state;
    rec *a = rec_new(f);
    rec_start(a);
    assert_true(wait_done(f, a, 3000));
    assert_int_equal(a->result, LX_UP_OK);
    /* the pooled connection keeps its poll, watching for reading */
    poll_census pc = census(f);
    assert_int_equal(pc.n, 1);
    assert_int_equal(pc.active, 1);
    const uv_handle_t *old = pc.h;
    int old_fd = pc.fd;

    /* the backend closes the idle connection: the client sees EOF once and the loop goes idle. libcurl's
     * poll stops watching (curl is not asked: it is not watching the socket) and the connection stays
     * until curl's check before reuse; the native transport closes it at once. */
    for (sconn *k = f->s.conns; k; k = k->next)
        sconn_close(k);
    lx_test_run_for(&f->loop, 50);
    int turns = turns_in(f, 200);
    if (turns >= 100) fail_msg("the loop spins: %d turns in 200 ms", turns);
    pc = census(f);
    if (f->transport == LX_HTTP_CURL) {
        assert_int_equal(pc.n, 1);
        assert_int_equal(pc.active, 0);
        assert_ptr_equal(pc.h, old);
    } else {
        assert_int_equal(pc.n + pc.closing, 0);
    }

    /* the next request: the dead connection is not used (curl closes it now: its poll's close is still
     * pending while the new socket, which gets the same fd number, is handed over); a new one is made */
    rec *b = rec_new(f);
    rec_start(b);
    assert_true(wait_done(f, b, 3000));
    assert_clean(b);
    assert_int_equal(b->result, LX_UP_OK);
    assert_memory_equal(b->body.p, "{\"ok\":true,\"n\":2}", b->body.len);
    assert_int_equal(f->s.accepted, 2);
    assert_int_equal(f->s.requests, 2);
    pc = census(f);
    assert_int_equal(pc.n, 1);
    assert_int_equal(pc.active, 1);
    assert_int_equal(pc.fd, old_fd);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

typedef struct {
    int heads, dones, status;
    size_t bytes;
    lx_up_result result;
} mini;

static void mini_headers(lx_upstream *u, const lx_up_head *h, void *ud)
{
    (void)u;
    mini *m = ud;
    m->heads++;
    m->status = h->status;
}

static bool mini_data(lx_upstream *u, const char *data, size_t len, void *ud)
{
    (void)u;
    (void)data;
    ((mini *)ud)->bytes += len;
    return true;
}

static void mini_done(lx_upstream *u, lx_up_result r, const char *detail, void *ud)
{
    (void)u;
    (void)detail;
    mini *m = ud;
    m->dones++;
    m->result = r;
}

static const lx_upstream_cbs mini_cbs = {mini_headers, mini_data, mini_done};

static bool mini_finished(void *arg) { return ((mini *)arg)->dones > 0; }

static void test_many_sequential_one_connection(void **state)
{
    fx *f = *state;
    enum { N = 300 };
    const uv_handle_t *first = NULL;
    for (int i = 0; i < N; i++) {
        mini m = {0};
        lx_upstream_req req = {
            .method = "POST",
            .url = f->url,
            .headers = test_headers,
            .body = test_body,
            .body_len = sizeof test_body - 1,
            .timeout_ms = 2000,
        };
        assert_non_null(lx_upstream_start(f->c, &req, &mini_cbs, &m));
        assert_true(lx_test_run_until(&f->loop, mini_finished, &m, 3000));
        assert_int_equal(m.result, LX_UP_OK);
        assert_int_equal(m.heads, 1);
        assert_int_equal(m.status, 200);
        char body[64];
        assert_int_equal(m.bytes, (size_t)snprintf(body, sizeof body, "{\"ok\":true,\"n\":%d}", i + 1));
        /* one uv_poll_t for the connection's whole life, still watching between requests */
        poll_census pc = census(f);
        assert_int_equal(pc.n, 1);
        assert_int_equal(pc.active, 1);
        assert_int_equal(pc.closing, 0);
        if (!first) first = pc.h;
        assert_ptr_equal(pc.h, first);
    }
    assert_int_equal(f->s.accepted, 1);
    assert_int_equal(f->s.requests, N);
    assert_int_equal(f->s.eofs, 0);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

/* Cancelling closes the connection (curl: closesocket_cb closes the poll, then the fd; native: uv_close); the
 * next request, started
 * at once, opens its socket on the next loop turn's timer phase, before that turn closes handles: the
 * new socket gets the same fd number while the old uv_poll_t's close is still pending. */
static void test_fd_reuse_after_close(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_ENDLESS;
    f->s.sse_interval_ms = 5;
    enum { N = 20 };
    rec *rs[N];
    int fd = -1;
    for (int i = 0; i < N; i++) {
        rs[i] = rec_new(f);
        rec_start(rs[i]);
        assert_true(lx_test_run_until(&f->loop, rec_has_data, rs[i], 3000));
        poll_census pc = census(f);
        assert_int_equal(pc.n, 1);
        assert_int_equal(pc.active, 1);
        if (i == 0) fd = pc.fd;
        assert_int_equal(pc.fd, fd);
        rs[i]->cancelled = true;
        lx_upstream_cancel(rs[i]->u);
        pc = census(f);
        assert_int_equal(pc.n, 0);
        assert_int_equal(pc.closing, 1);
    }
    srv_count sc = {&f->s, N};
    assert_true(lx_test_run_until(&f->loop, srv_eofs_reached, &sc, 3000)); /* every connection was really closed */
    lx_test_run_for(&f->loop, 50);
    for (int i = 0; i < N; i++) {
        assert_false(rs[i]->after_end);
        assert_int_equal(rs[i]->dones, 0);
    }
    assert_int_equal(f->s.accepted, N);
    poll_census pc = census(f);
    assert_int_equal(pc.n + pc.closing, 0);
    assert_int_equal(lx_http_client_active(f->c), 0);
}

/* A host name goes through curl's threaded resolver, whose socketpair curl hands over for reading and
 * closes itself (after CURL_POLL_REMOVE, without CLOSESOCKETFUNCTION): its poll must go at the remove, not
 * stay behind on a closed fd like a pooled connection's. Needs the machine's name to resolve to loopback. */
static void test_resolver_socket(void **state)
{
    fx *f = *state;
    char host[256];
    if (gethostname(host, sizeof host) != 0) skip();
    host[sizeof host - 1] = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai) skip();
    bool loopback = (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
    freeaddrinfo(ai);
    if (!loopback || strcasecmp(host, "localhost") == 0) skip(); /* curl resolves "localhost" itself */
    char url[512];
    snprintf(url, sizeof url, "http://%s:%d/v1/chat/completions", host, f->s.port);
    for (int i = 0; i < 5; i++) {
        rec *r = rec_new(f);
        r->req_url = url;
        rec_start(r);
        assert_true(wait_done(f, r, 3000));
        assert_clean(r);
        assert_int_equal(r->result, LX_UP_OK);
        poll_census pc = census(f);
        assert_int_equal(pc.n, 1); /* the connection's; none left for the resolver's socket */
        assert_int_equal(pc.active, 1);
    }
    assert_int_equal(f->s.accepted, 1);
    assert_int_equal(f->s.requests, 5);
}

/* A refused connect: curl 7.88 closes that socket itself (its connect never completed), without
 * CLOSESOCKETFUNCTION, and only then says CURL_POLL_REMOVE. Its poll must go there, not stay behind on
 * the fd number, which the next connection gets. */
static void test_refused_then_same_fd(void **state)
{
    fx *f = *state;
    uv_tcp_t t;
    uv_tcp_init(&f->loop, &t);
    int port = bind_ephemeral(&t); /* bound, never listening, then closed: connecting is refused */
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    rec *r = rec_new(f);
    r->req_url = url;
    rec_start(r);
    assert_true(wait_done(f, r, 3000));
    assert_int_equal(r->result, LX_UP_CONNECT);
    poll_census pc = census(f);
    assert_int_equal(pc.n, 0);
    for (int i = 0; i < 5; i++) {
        rec *q = rec_new(f);
        rec_start(q);
        assert_true(wait_done(f, q, 3000));
        assert_clean(q);
        assert_int_equal(q->result, LX_UP_OK);
        pc = census(f);
        assert_int_equal(pc.n, 1);
        assert_int_equal(pc.active, 1);
    }
    assert_int_equal(f->s.accepted, 1);
    assert_int_equal(f->s.requests, 5);
}

/* ---- connection reuse: the keep-alive race, answers that end at EOF ---------------------------- */

/* A pooled connection the backend closes as the next request arrives, before answering: the request goes
 * again on a new connection, and the caller sees only the answer. */
static void test_keepalive_race_retried(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_DROP_REUSED;
    rec *a = rec_new(f), *b = rec_new(f);
    rec_start(a);
    assert_true(wait_done(f, a, 3000));
    assert_int_equal(a->result, LX_UP_OK);
    rec_start(b);
    assert_true(wait_done(f, b, 3000));
    assert_clean(b);
    assert_int_equal(b->result, LX_UP_OK);
    assert_int_equal(b->heads, 1);
    assert_int_equal(b->status, 200);
    assert_memory_equal(b->body.p, "{\"ok\":true,\"n\":3}", b->body.len);
    assert_int_equal(f->s.accepted, 2);
    assert_int_equal(f->s.requests, 3); /* the dropped one, then the same request again */
    assert_int_equal(lx_http_client_active(f->c), 0);
}

/* ... once: when the new connection fails the same way, the request fails (reset before any answer). */
static void test_keepalive_race_once(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_DROP_LATER;
    rec *a = rec_new(f), *b = rec_new(f);
    rec_start(a);
    assert_true(wait_done(f, a, 3000));
    assert_int_equal(a->result, LX_UP_OK);
    rec_start(b);
    assert_true(wait_done(f, b, 3000));
    assert_clean(b);
    assert_int_equal(b->result, LX_UP_RESET);
    assert_int_equal(b->heads, 0);
    assert_int_equal(f->s.accepted, 2);
    assert_int_equal(f->s.requests, 3);
}

/* "localhost" resolves to ::1 and 127.0.0.1; the server listens on 127.0.0.1 only: requests get there, on
 * one reused connection, with "localhost:PORT" as the Host. */
static void test_localhost(void **state)
{
    fx *f = *state;
    char url[128], host[64];
    snprintf(url, sizeof url, "http://localhost:%d/v1/chat/completions", f->s.port);
    snprintf(host, sizeof host, "\r\nHost: localhost:%d\r\n", f->s.port);
    for (int i = 0; i < 3; i++) {
        rec *r = rec_new(f);
        r->req_url = url;
        rec_start(r);
        assert_true(wait_done(f, r, 3000));
        assert_clean(r);
        assert_int_equal(r->result, LX_UP_OK);
        assert_non_null(strstr(f->s.last_req, host));
    }
    assert_int_equal(f->s.accepted, 1);
    assert_int_equal(f->s.requests, 3);
}

/* Credentials in an http:// URL: sent as Basic auth (libcurl carries such a URL whatever the transport). */
static void test_url_credentials(void **state)
{
    fx *f = *state;
    char url[160];
    snprintf(url, sizeof url, "http://user:pw@127.0.0.1:%d/v1/models", f->s.port);
    rec *r = rec_new(f);
    lx_upstream_req req = {.method = "GET", .url = url, .timeout_ms = 2000};
    rec_start_req(r, &req);
    assert_true(wait_done(f, r, 3000));
    assert_int_equal(r->result, LX_UP_OK);
    assert_non_null(strstr(f->s.last_req, "\r\nAuthorization: Basic dXNlcjpwdw==\r\n"));
}

/* The request line's target for URLs without a path, with only a query, with a fragment (not sent). */
static void test_url_forms(void **state)
{
    fx *f = *state;
    static const struct {
        const char *suffix, *line;
    } cases[] = {
        {"", "GET / HTTP/1.1\r\n"},
        {"?a=1", "GET /?a=1 HTTP/1.1\r\n"},
        {"/v1/models?b=2#frag", "GET /v1/models?b=2 HTTP/1.1\r\n"},
        {"#frag", "GET / HTTP/1.1\r\n"},
    };
    for (size_t i = 0; i < LX_ARRAY_LEN(cases); i++) {
        char url[160];
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", f->s.port, cases[i].suffix);
        rec *r = rec_new(f);
        lx_upstream_req req = {.method = "GET", .url = url, .timeout_ms = 2000};
        rec_start_req(r, &req);
        assert_true(wait_done(f, r, 3000));
        assert_int_equal(r->result, LX_UP_OK);
        if (strncmp(f->s.last_req, cases[i].line, strlen(cases[i].line)) != 0)
            fail_msg("%s: sent %.40s", url, f->s.last_req);
    }
}

/* An answer without Content-Length or chunking ends at EOF: complete, and its connection is not reused. */
static void test_body_until_eof(void **state)
{
    fx *f = *state;
    f->s.mode = SRV_EOF_BODY;
    rec *a = rec_new(f), *b = rec_new(f);
    rec_start(a);
    assert_true(wait_done(f, a, 3000));
    assert_clean(a);
    assert_int_equal(a->result, LX_UP_OK);
    assert_int_equal(a->status, 200);
    assert_string_equal(a->ctype, "text/plain");
    assert_int_equal(a->body.len, strlen("hello, until EOF"));
    assert_memory_equal(a->body.p, "hello, until EOF", a->body.len);
    f->s.mode = SRV_NORMAL;
    rec_start(b);
    assert_true(wait_done(f, b, 3000));
    assert_int_equal(b->result, LX_UP_OK);
    assert_int_equal(f->s.accepted, 2);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_names),
        T(test_normal_200),
        T(test_get_and_reuse),
        T(test_sse_chunked),
        T(test_slow_stream_is_not_a_timeout),
        T(test_timeout_silent),
        T(test_timeout_between_reads),
        T(test_close_mid_body),
        T(test_got_nothing),
        T(test_refused),
        T(test_connect_timeout),
        T(test_garbage),
        T(test_bad_url),
        T(test_interim_then_429_no_body),
        T(test_no_redirect),
        T(test_pause_resume),
        T(test_pause_longer_than_timeout),
        T(test_cancel_while_resuming),
        T(test_stop_while_resuming),
        T(test_cancel_inside_on_data),
        T(test_cancel_outside_then_fresh_connection),
        T(test_caller_stop),
        T(test_start_from_callbacks),
        T(test_cancel_other_from_callback),
        T(test_many_parallel),
        T(test_free_with_requests_running),
        T(test_free_from_inside_callback),
        T(test_idle_pooled_closed_by_server),
        T(test_many_sequential_one_connection),
        T(test_fd_reuse_after_close),
        T(test_resolver_socket),
        T(test_refused_then_same_fd),
        T(test_keepalive_race_retried),
        T(test_keepalive_race_once),
        T(test_body_until_eof),
        T(test_url_forms),
        T(test_localhost),
        T(test_url_credentials),
    };
    int failed = cmocka_run_group_tests_name("native", tests, group_native, NULL);
    failed += cmocka_run_group_tests_name("curl", tests, group_curl, NULL);
    return failed;
}
