/*
 * The native upstream transport: HTTP/1.1 to http:// backends over libuv TCP, answers parsed with
 * http-parser. client.h has the contract; this file keeps it for http:// URLs (http/client.c dispatches).
 *
 * Pools. One h1_pool per host:port (matched on the URL's authority text, so a request costs a memcmp, not
 * a URL parse), holding its idle connections most recently used first, at most LX_H1_MAX_IDLE; the
 * addresses are parsed once (a numeric host) or resolved with uv_getaddrinfo when a connection is opened
 * and the last answer is older than LX_H1_DNS_TTL_MS. Pools live as long as the client.
 *
 * Connections (h1_conn). Every connection is read from connect to close, idle or busy (no uv_read_stop /
 * start per request, so no epoll_ctl): an idle one that gets EOF or bytes is closed at once, so a stale
 * pooled connection is mostly gone before a request could pick it. All connections read into one buffer
 * of the client's (rbuf), parsed before the read callback returns: a connection holds no receive buffer
 * of its own. Only bytes of an answer whose caller paused are copied (into that upstream's held buffer),
 * and the connection is not read until the caller resumed and had them.
 *
 * A request (h1_up): its head is formatted once into the upstream's own buffer (kept across the
 * upstream's reuse from the free list), then written with the body in one writev of two buffers (the
 * body is the caller's, not copied): uv_try_write, and uv_write only for what the socket did not take
 * (a uv_write's completion costs an epoll_ctl in libuv 1.44). The keep-alive race: a request on a
 * reused connection that ends (EOF, reset, write error) before any byte of the answer is sent again
 * once on a new connection (u->retried), invisibly to the caller, as libcurl does. A connection goes
 * back to the pool only after a complete answer that allows keep-alive, with no bytes after it and no
 * write pending; anything else closes it, so a cancelled, timed-out or failed request is seen by the
 * backend as a closed socket.
 *
 * Timing. One uv_timer_t per upstream, re-armed lazily: reads store uv_now() in last_io, and the timer,
 * when it fires, re-arms for what is left of the window. It bounds the connect (connect_timeout_ms,
 * LX_UP_CONNECT: nothing was sent), and "no byte for timeout_ms" from the start (LX_UP_TIMEOUT). It is
 * stopped while bytes are held for a paused caller.
 *
 * Callbacks and lifetimes. User callbacks run from the read, connect, write and timer callbacks, and from
 * the deferred work (kick): a failure found inside lx_h1_start (a malformed URL) and the delivery of held
 * bytes after a resume go through c->pending and a 0 ms timer, so nothing reaches the caller inside an
 * lx_upstream_* call. Every user callback is followed by a check of whether the caller cancelled, stopped
 * or freed the client meanwhile; the parser is then stopped (a callback returning non-zero) and the read
 * callback returns without touching anything else. A connection is freed in its handle's close callback.
 * An ended upstream goes to c->cooling and becomes reusable (c->free) only on the next loop turn (the
 * check handle), so a stale pointer used within the callback that ended it still finds finished set.
 * The client frees itself when its last handle closed after lx_h1_client_free.
 * Memory per open stream: an h1_up (its timer, the Content-Type and Retry-After values, the head buffer)
 * and an h1_conn (the uv_tcp_t, a write request, the parser); no receive buffer. Loop thread only.
 */
#include <errno.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/client_impl.h"
#include "utils/list.h"
#include "utils/log.h"

#define LX_H1_MAX_IDLE           1024   /* idle connections kept per pool */
#define LX_H1_IDLE_MAX_AGE_MS    118000 /* an idle connection older than this is not reused (curl's) */
#define LX_H1_DNS_TTL_MS         60000  /* a resolved host is resolved again after this */
#define LX_H1_CONNECT_DEFAULT_MS 300000 /* connect_timeout_ms 0 (curl's default) */
#define LX_H1_RBUF               65536  /* the shared read buffer */
#define LX_H1_HELD_PIECE         16384  /* held bytes reach on_data in pieces of at most this */
#define LX_H1_FREE_MAX           1024   /* ended upstreams kept for reuse */
#define LX_H1_HEAD_KEEP          4096   /* a reused upstream keeps a head buffer up to this size */
#define LX_H1_MAX_ADDRS          2

typedef struct h1_pool h1_pool;
typedef struct h1_conn h1_conn;
typedef struct h1_up h1_up;

struct h1_pool {
    h1_pool *next;
    char *authority; /* "host:port" as the URL has it: the Host header, and the key */
    size_t authority_len;
    char *host; /* without brackets */
    int port;
    bool numeric;
    int naddrs;
    uint64_t resolved_at;
    struct sockaddr_storage addrs[LX_H1_MAX_ADDRS];
    lx_list idle; /* h1_conn.link, most recently used first */
    size_t nidle;
};

struct h1_conn {
    uv_tcp_t tcp;
    union {
        uv_connect_t connect;
        uv_write_t write;
    } req;
    http_parser parser;
    lx_h1_client *c;
    h1_pool *pool;
    h1_up *u;     /* the request on it; NULL when idle */
    lx_list link; /* pool->idle while idle */
    lx_list all;  /* c->conns */
    uint64_t idle_since;
    uint8_t addr_i;
    uint8_t hdr;      /* which stored header the current value belongs to (HDR_*) */
    uint8_t name_len; /* of the header name being read (name[]); > sizeof name: none of ours */
    bool in_value;
    bool connected, reused, closing, reading, writing, msg_done, extra;
    char name[16];
};

enum { HDR_NONE = 0, HDR_CTYPE, HDR_RETRY };

typedef struct h1_resolve h1_resolve;

struct h1_up {
    lx_upstream base; /* LX_HTTP_NATIVE */
    lx_h1_client *c;
    uv_timer_t timer; /* initialised once; kept while the struct is reused */
    lx_list link;     /* c->active, c->cooling or c->free */
    char *head;       /* the request head (written again by a retry); the buffer is kept across reuse */
    size_t head_cap;
    char *held; /* answer bytes held for a paused caller */
    size_t held_cap;
    /* From here on, zeroed for every request (UP_RESET_FROM). */
    h1_conn *conn;
    h1_pool *pool;
    h1_resolve *resolve; /* its host is being resolved */
    lx_upstream_cbs cbs;
    void *ud;
    const char *body;
    size_t body_len, head_len, held_len, held_off;
    lx_list pend; /* c->pending */
    uint64_t timeout_ms, connect_ms, connect_start, last_io;
    lx_up_result fail;
    int status;
    bool finished, head_done, paused, want_resume, own, retried, is_head, got_byte, has_fail, msg_held;
    bool connecting; /* resolving or connecting: connect_ms runs */
    uint16_t ctype_len;
    uint8_t retry_len;
    char ctype[256];
    char retry[64];
    char detail[160];
};

#define UP_RESET_FROM offsetof(h1_up, conn)

struct h1_resolve {
    uv_getaddrinfo_t req;
    lx_h1_client *c;
    h1_up *u; /* NULL once u ended meanwhile */
};

struct lx_h1_client {
    uv_loop_t *loop;
    h1_pool *pools;
    lx_list active;  /* h1_up not finished */
    lx_list cooling; /* ended this loop turn */
    lx_list free;    /* ready for reuse */
    lx_list pending; /* deferred work, in order */
    lx_list conns;   /* every connection not closing */
    size_t nfree, nactive, open_handles;
    uv_timer_t kick;
    uv_check_t recycle;
    bool free_requested;
    char rbuf[LX_H1_RBUF];
};

static const http_parser_settings settings;

static void conn_open(h1_up *u);
static void conn_send(h1_conn *k, h1_up *u);
static void finish(h1_up *u, lx_up_result r, const char *detail);
static void timer_fired(uv_timer_t *t);
static void timer_arm(h1_up *u, uint64_t now);

/* ---- handle accounting and recycling -------------------------------------------------------- */

static void handle_closed(lx_h1_client *c)
{
    if (--c->open_handles == 0 && c->free_requested) free(c);
}

static void client_handle_closed(uv_handle_t *h) { handle_closed(h->data); }

static void up_closed(uv_handle_t *h)
{
    h1_up *u = h->data;
    lx_h1_client *c = u->c;
    free(u->head);
    free(u->held);
    free(u);
    handle_closed(c);
}

static void recycle_fired(uv_check_t *h)
{
    lx_h1_client *c = h->data;
    lx_list *n;
    while ((n = lx_list_first(&c->cooling)) != NULL) {
        h1_up *u = LX_CONTAINER_OF(n, h1_up, link);
        lx_list_remove(n);
        if (c->nfree >= LX_H1_FREE_MAX) {
            uv_close((uv_handle_t *)&u->timer, up_closed);
            continue;
        }
        lx_list_prepend(&c->free, n);
        c->nfree++;
    }
    uv_check_stop(&c->recycle);
}

static h1_up *up_alloc(lx_h1_client *c)
{
    lx_list *n = lx_list_first(&c->free);
    h1_up *u;
    if (n) {
        lx_list_remove(n);
        c->nfree--;
        u = LX_CONTAINER_OF(n, h1_up, link);
        memset((char *)u + UP_RESET_FROM, 0, sizeof *u - UP_RESET_FROM);
    } else {
        u = lx_xcalloc(1, sizeof *u);
        u->c = c;
        u->base.transport = LX_HTTP_NATIVE;
        uv_timer_init(c->loop, &u->timer);
        u->timer.data = u;
        c->open_handles++;
    }
    lx_list_init(&u->pend);
    lx_list_prepend(&c->active, &u->link);
    c->nactive++;
    return u;
}

/* The upstream is done: no more user callbacks; its struct is reusable from the next loop turn. */
static void up_end(h1_up *u)
{
    lx_h1_client *c = u->c;
    if (u->finished) return;
    u->finished = true;
    if (c->free_requested) return; /* its timer is closing */
    c->nactive--;
    uv_timer_stop(&u->timer);
    lx_list_remove(&u->pend);
    lx_list_remove(&u->link);
    if (u->resolve) u->resolve->u = NULL;
    u->resolve = NULL;
    if (u->held_cap > LX_H1_HELD_PIECE) {
        free(u->held);
        u->held = NULL;
        u->held_cap = 0;
    }
    u->held_len = u->held_off = 0;
    if (u->head_cap > LX_H1_HEAD_KEEP) {
        free(u->head);
        u->head = NULL;
        u->head_cap = 0;
    }
    lx_list_append(&c->cooling, &u->link);
    uv_check_start(&c->recycle, recycle_fired);
}

static bool user_gone(const h1_up *u) { return u->finished || u->has_fail || u->c->free_requested; }

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_closed(uv_handle_t *h)
{
    h1_conn *k = h->data;
    lx_h1_client *c = k->c;
    free(k);
    handle_closed(c);
}

static void conn_close(h1_conn *k)
{
    if (k->closing) return;
    k->closing = true;
    if (lx_list_linked(&k->link)) k->pool->nidle--;
    lx_list_remove(&k->link);
    lx_list_remove(&k->all);
    if (k->u) k->u->conn = NULL;
    k->u = NULL;
    uv_close((uv_handle_t *)&k->tcp, conn_closed);
}

/* Takes the connection away from u; it goes back to the pool when it can carry another request. */
static void conn_release(h1_up *u, bool reusable)
{
    h1_conn *k = u->conn;
    if (!k) return;
    u->conn = NULL;
    k->u = NULL;
    h1_pool *p = k->pool;
    if (!reusable || u->own || k->extra || k->writing || !k->reading || !http_should_keep_alive(&k->parser) ||
        p->nidle >= LX_H1_MAX_IDLE || u->c->free_requested) {
        conn_close(k);
        return;
    }
    k->idle_since = uv_now(u->c->loop);
    lx_list_prepend(&p->idle, &k->link);
    p->nidle++;
}

static h1_conn *pool_take(lx_h1_client *c, h1_pool *p)
{
    uint64_t now = uv_now(c->loop);
    lx_list *n;
    while ((n = lx_list_first(&p->idle)) != NULL) {
        h1_conn *k = LX_CONTAINER_OF(n, h1_conn, link);
        lx_list_remove(n);
        p->nidle--;
        if (now - k->idle_since <= LX_H1_IDLE_MAX_AGE_MS) return k;
        conn_close(k);
    }
    return NULL;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    h1_conn *k = h->data;
    *b = uv_buf_init(k->c->rbuf, sizeof k->c->rbuf);
}

static void conn_read_start(h1_conn *k);

/* ---- the answer: http-parser callbacks ------------------------------------------------------ */

static void trim_value(char *v, size_t *len)
{
    size_t n = *len, i = 0;
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    while (n > i && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (i) memmove(v, v + i, n - i);
    *len = n - i;
}

static void value_end(h1_conn *k, h1_up *u)
{
    size_t n;
    if (k->hdr == HDR_CTYPE) {
        n = u->ctype_len;
        trim_value(u->ctype, &n);
        u->ctype_len = (uint16_t)n;
    } else if (k->hdr == HDR_RETRY) {
        n = u->retry_len;
        trim_value(u->retry, &n);
        u->retry_len = (uint8_t)n;
    }
    k->hdr = HDR_NONE;
}

static int on_message_begin(http_parser *p)
{
    h1_conn *k = p->data;
    h1_up *u = k->u;
    if (!u) return -1;
    u->ctype_len = u->retry_len = 0;
    k->hdr = HDR_NONE;
    k->name_len = 0;
    k->in_value = false;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    h1_conn *k = p->data;
    h1_up *u = k->u;
    if (!u) return -1;
    if (k->in_value) {
        value_end(k, u);
        k->in_value = false;
        k->name_len = 0;
    }
    if (k->name_len + len <= sizeof k->name) memcpy(k->name + k->name_len, at, len);
    k->name_len = (uint8_t)LX_MIN((size_t)k->name_len + len, sizeof k->name + 1);
    return 0;
}

static bool name_is(const h1_conn *k, const char *lit)
{
    size_t n = strlen(lit);
    return k->name_len == n && strncasecmp(k->name, lit, n) == 0;
}

static void store(char *dst, size_t cap, size_t have, const char *at, size_t len, size_t *out)
{
    size_t n = LX_MIN(len, cap - have);
    memcpy(dst + have, at, n);
    *out = have + n;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    h1_conn *k = p->data;
    h1_up *u = k->u;
    if (!u) return -1;
    if (!k->in_value) {
        k->in_value = true;
        k->hdr = name_is(k, "content-type") ? HDR_CTYPE : name_is(k, "retry-after") ? HDR_RETRY : HDR_NONE;
        if (k->hdr == HDR_CTYPE) u->ctype_len = 0;
        if (k->hdr == HDR_RETRY) u->retry_len = 0;
    }
    size_t n;
    if (k->hdr == HDR_CTYPE) {
        store(u->ctype, sizeof u->ctype, u->ctype_len, at, len, &n);
        u->ctype_len = (uint16_t)n;
    } else if (k->hdr == HDR_RETRY) {
        store(u->retry, sizeof u->retry, u->retry_len, at, len, &n);
        u->retry_len = (uint8_t)n;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    h1_conn *k = p->data;
    h1_up *u = k->u;
    if (!u) return -1;
    if (k->in_value) value_end(k, u);
    k->in_value = false;
    k->name_len = 0;
    if (p->status_code >= 100 && p->status_code < 200) return 0; /* interim: the real answer follows */
    u->status = p->status_code;
    u->head_done = true;
    lx_up_head head = {
        .status = u->status,
        .content_type = {u->ctype, u->ctype_len},
        .retry_after = {u->retry, u->retry_len},
    };
    if (u->cbs.on_headers && !u->c->free_requested) u->cbs.on_headers(&u->base, &head, u->ud);
    if (user_gone(u) || k->u != u) return -1;
    return u->is_head ? 1 : 0;
}

static void hold(h1_up *u, const char *at, size_t len)
{
    size_t need = u->held_len + len;
    if (need > u->held_cap) {
        size_t cap = LX_MAX(need, u->held_cap * 2);
        u->held = lx_xrealloc(u->held, cap);
        u->held_cap = cap;
    }
    memcpy(u->held + u->held_len, at, len);
    u->held_len = need;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    h1_conn *k = p->data;
    h1_up *u = k->u;
    if (!u || user_gone(u)) return -1;
    if (u->paused || u->held_len > u->held_off) {
        hold(u, at, len);
        return 0;
    }
    if (!u->cbs.on_data(&u->base, at, len, u->ud)) {
        if (!u->finished) {
            u->has_fail = true;
            u->fail = LX_UP_CALLER;
            snprintf(u->detail, sizeof u->detail, "the caller stopped the transfer");
        }
        return -1;
    }
    return user_gone(u) || k->u != u ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
    h1_conn *k = p->data;
    if (!k->u) return -1;
    if (p->status_code >= 100 && p->status_code < 200) return 0;
    k->msg_done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- ending a request ----------------------------------------------------------------------- */

/* Ends u with on_done (unless the caller already left). Not inside an lx_upstream_* call. */
static void finish(h1_up *u, lx_up_result r, const char *detail)
{
    if (u->finished) return;
    conn_release(u, r == LX_UP_OK);
    lx_h1_client *c = u->c;
    bool notify = !c->free_requested;
    if (r != LX_UP_OK) LX_DEBUG(NULL, "upstream: %s (%s)", lx_up_result_name(r), detail ? detail : "");
    up_end(u);
    if (notify) u->cbs.on_done(&u->base, r, detail ? detail : "", u->ud);
}

static void kick_fired(uv_timer_t *t);

static void enqueue(h1_up *u)
{
    lx_h1_client *c = u->c;
    if (!lx_list_linked(&u->pend)) lx_list_append(&c->pending, &u->pend);
    uv_timer_start(&c->kick, kick_fired, 0, 0);
}

static void fail_later(h1_up *u, lx_up_result r, const char *detail)
{
    if (u->finished || u->has_fail) return;
    u->has_fail = true;
    u->fail = r;
    if (detail != u->detail) snprintf(u->detail, sizeof u->detail, "%s", detail);
    enqueue(u);
}

/* The connection ended (EOF, reset, a failed write) while u was on it. */
static void conn_lost(h1_conn *k, h1_up *u, int err)
{
    if (err == UV_EOF && k->reading && !k->msg_done) {
        k->extra = true;                                     /* never reused */
        http_parser_execute(&k->parser, &settings, NULL, 0); /* an answer that ends at EOF ends here */
        if (u->finished || k->u != u) return;
        if (k->msg_done) {
            finish(u, LX_UP_OK, "");
            return;
        }
    }
    if (!u->got_byte && k->reused && !u->retried && !user_gone(u)) {
        /* The keep-alive race: the backend closed the pooled connection as the request went out. */
        u->retried = true;
        LX_DEBUG(NULL, "upstream: a reused connection to %s closed before the answer; sending again",
                 k->pool->authority);
        conn_close(k);
        conn_open(u);
        if (!u->finished && !u->has_fail) timer_arm(u, uv_now(u->c->loop));
        return;
    }
    if (!u->got_byte)
        snprintf(u->detail, sizeof u->detail, "the backend closed the connection without answering (%s)",
                 uv_strerror(err));
    else
        snprintf(u->detail, sizeof u->detail, "the connection ended before the answer was complete (%s)",
                 uv_strerror(err));
    finish(u, LX_UP_RESET, u->detail);
}

/* ---- reading -------------------------------------------------------------------------------- */

static void parse(h1_conn *k, h1_up *u, const char *data, size_t len)
{
    size_t used = http_parser_execute(&k->parser, &settings, data, len);
    if (k->closing || u->finished || k->u != u) return; /* cancelled, retried or freed from a callback */
    if (u->has_fail) {
        finish(u, u->fail, u->detail);
        return;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&k->parser);
    if (e == HPE_PAUSED) {
        if (used < len) k->extra = true;
        if (u->held_len > u->held_off) {
            u->msg_held = true; /* on_done after the held bytes */
            return;
        }
        finish(u, LX_UP_OK, "");
        return;
    }
    if (e != HPE_OK) {
        snprintf(u->detail, sizeof u->detail, "not a valid HTTP answer: %s", http_errno_description(e));
        finish(u, LX_UP_BAD_RESPONSE, u->detail);
        return;
    }
    if (u->held_len > u->held_off && k->reading) {
        uv_read_stop((uv_stream_t *)&k->tcp); /* the rest waits for the caller's resume */
        k->reading = false;
        uv_timer_stop(&u->timer);
    }
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    h1_conn *k = s->data;
    if (n == 0 || k->closing) return;
    h1_up *u = k->u;
    if (!u) { /* idle: the backend closed it, or sent what nobody asked for */
        conn_close(k);
        return;
    }
    if (k->msg_done) { /* after the answer (whose end waits for a paused caller): never reused */
        k->extra = true;
        return;
    }
    if (n < 0) {
        conn_lost(k, u, (int)n);
        return;
    }
    u->got_byte = true;
    u->last_io = uv_now(k->c->loop);
    parse(k, u, b->base, (size_t)n);
}

static void conn_read_start(h1_conn *k)
{
    if (k->reading || k->closing) return;
    int err = uv_read_start((uv_stream_t *)&k->tcp, alloc_cb, read_cb);
    k->reading = err == 0;
}

/* ---- writing -------------------------------------------------------------------------------- */

static void write_cb(uv_write_t *w, int status)
{
    h1_conn *k = w->handle->data;
    k->writing = false;
    if (status == 0 || status == UV_ECANCELED || k->closing || !k->u) return;
    conn_lost(k, k->u, status);
}

/* Writing failed before the answer began: the keep-alive race again when the connection was a pooled one,
 * else a reset. May run inside lx_h1_start: nothing reaches the caller from here (fail_later). */
static void send_failed(h1_conn *k, h1_up *u, int err)
{
    conn_close(k);
    if (k->reused && !u->retried) {
        u->retried = true;
        conn_open(u);
        return;
    }
    snprintf(u->detail, sizeof u->detail, "could not send the request: %s", uv_strerror(err));
    fail_later(u, LX_UP_RESET, u->detail);
}

/* Sends u's request on k: head and body in one writev (uv_try_write: no write request and no epoll_ctl
 * when the socket takes it all, the usual case); what the socket did not take goes through uv_write. */
static void conn_send(h1_conn *k, h1_up *u)
{
    k->u = u;
    u->conn = k;
    u->got_byte = false;
    k->msg_done = k->extra = false;
    k->hdr = HDR_NONE;
    k->name_len = 0;
    k->in_value = false;
    http_parser_init(&k->parser, HTTP_RESPONSE);
    k->parser.data = k;
    uv_buf_t bufs[2] = {uv_buf_init(u->head, (unsigned)u->head_len),
                        uv_buf_init((char *)u->body, (unsigned)u->body_len)};
    unsigned nbufs = u->body_len ? 2 : 1;
    int n = uv_try_write((uv_stream_t *)&k->tcp, bufs, nbufs);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
        send_failed(k, u, n);
        return;
    }
    size_t done = (size_t)n;
    unsigned i = 0;
    while (i < nbufs && done >= bufs[i].len) /* skip what went out */
        done -= bufs[i++].len;
    if (i == nbufs) return;
    bufs[i].base += done;
    bufs[i].len -= done;
    int err = uv_write(&k->req.write, (uv_stream_t *)&k->tcp, bufs + i, nbufs - i, write_cb);
    k->writing = err == 0;
    if (err) send_failed(k, u, err);
}

/* ---- connecting ----------------------------------------------------------------------------- */

static void conn_connect(h1_up *u, int addr_i);

static void connect_failed(h1_conn *k, h1_up *u, int err)
{
    h1_pool *p = k->pool;
    int next = k->addr_i + 1;
    conn_close(k);
    if (next < p->naddrs) {
        conn_connect(u, next);
        return;
    }
    snprintf(u->detail, sizeof u->detail, "Failed to connect to %s port %d: %s", p->host, p->port, uv_strerror(err));
    finish(u, LX_UP_CONNECT, u->detail);
}

static void connect_cb(uv_connect_t *r, int status)
{
    h1_conn *k = r->handle->data;
    if (status == UV_ECANCELED || k->closing) return;
    h1_up *u = k->u;
    if (!u) {
        conn_close(k);
        return;
    }
    if (status < 0) {
        connect_failed(k, u, status);
        return;
    }
    k->connected = true;
    u->connecting = false;
    conn_read_start(k);
    conn_send(k, u);
}

/* A new connection to the pool's address addr_i for u; a failure to even start ends u (later). */
static void conn_connect(h1_up *u, int addr_i)
{
    lx_h1_client *c = u->c;
    h1_pool *p = u->pool;
    h1_conn *k = lx_xcalloc(1, sizeof *k);
    k->c = c;
    k->pool = p;
    k->addr_i = (uint8_t)addr_i;
    lx_list_init(&k->link);
    uv_tcp_init(c->loop, &k->tcp);
    k->tcp.data = k;
    c->open_handles++;
    lx_list_append(&c->conns, &k->all);
    uv_tcp_nodelay(&k->tcp, 1);
    k->u = u;
    u->conn = k;
    u->connecting = true;
    int err = uv_tcp_connect(&k->req.connect, &k->tcp, (const struct sockaddr *)&p->addrs[addr_i], connect_cb);
    if (err) {
        conn_close(k);
        snprintf(u->detail, sizeof u->detail, "Failed to connect to %s port %d: %s", p->host, p->port,
                 uv_strerror(err));
        fail_later(u, LX_UP_CONNECT, u->detail);
    }
}

static void pool_set_addrs(h1_pool *p, const struct addrinfo *res)
{
    p->naddrs = 0;
    for (int fam = 0; fam < 2; fam++) { /* IPv4 first, then IPv6 */
        for (const struct addrinfo *a = res; a && p->naddrs < LX_H1_MAX_ADDRS; a = a->ai_next) {
            if (a->ai_family == (fam ? AF_INET6 : AF_INET) && a->ai_addrlen <= sizeof p->addrs[0])
                memcpy(&p->addrs[p->naddrs++], a->ai_addr, a->ai_addrlen);
        }
    }
}

static void resolved(uv_getaddrinfo_t *r, int status, struct addrinfo *res)
{
    h1_resolve *q = r->data;
    lx_h1_client *c = q->c;
    h1_up *u = q->u;
    free(q);
    if (u) u->resolve = NULL;
    if (u && status == 0 && !c->free_requested) {
        pool_set_addrs(u->pool, res);
        u->pool->resolved_at = uv_now(c->loop);
        if (u->pool->naddrs == 0) status = UV_EAI_NONAME;
    }
    if (res) uv_freeaddrinfo(res);
    if (u && !c->free_requested) {
        if (status == 0) {
            conn_connect(u, 0);
        } else {
            snprintf(u->detail, sizeof u->detail, "Could not resolve host: %s (%s)", u->pool->host,
                     uv_strerror(status));
            finish(u, LX_UP_CONNECT, u->detail);
        }
    }
    handle_closed(c);
}

/* Opens a new connection for u and sends u's request on it once connected. Failures end u. */
static void conn_open(h1_up *u)
{
    lx_h1_client *c = u->c;
    h1_pool *p = u->pool;
    u->connecting = true;
    u->connect_start = uv_now(c->loop);
    if (p->numeric || (p->naddrs > 0 && uv_now(c->loop) - p->resolved_at <= LX_H1_DNS_TTL_MS)) {
        conn_connect(u, 0);
        return;
    }
    h1_resolve *q = lx_xcalloc(1, sizeof *q);
    q->c = c;
    q->u = u;
    q->req.data = q;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    char port[8];
    snprintf(port, sizeof port, "%d", p->port);
    int err = uv_getaddrinfo(c->loop, &q->req, resolved, p->host, port, &hints);
    if (err) {
        free(q);
        snprintf(u->detail, sizeof u->detail, "Could not resolve host: %s (%s)", p->host, uv_strerror(err));
        fail_later(u, LX_UP_CONNECT, u->detail);
        return;
    }
    c->open_handles++; /* the client stays until the callback ran */
    u->resolve = q;
}

/* ---- the timer: connect_timeout_ms and timeout_ms ------------------------------------------- */

static void timer_arm(h1_up *u, uint64_t now)
{
    uint64_t wait = UINT64_MAX;
    if (u->connecting) wait = u->connect_start + u->connect_ms - LX_MIN(now, u->connect_start + u->connect_ms);
    if (u->timeout_ms) wait = LX_MIN(wait, u->last_io + u->timeout_ms - LX_MIN(now, u->last_io + u->timeout_ms));
    if (wait != UINT64_MAX) uv_timer_start(&u->timer, timer_fired, wait, 0);
}

static void timer_fired(uv_timer_t *t)
{
    h1_up *u = t->data;
    if (u->finished || u->c->free_requested) return;
    uint64_t now = uv_now(u->c->loop);
    if (u->connecting && now - u->connect_start >= u->connect_ms) {
        snprintf(u->detail, sizeof u->detail, "Connection timed out after %" PRIu64 " ms", now - u->connect_start);
        finish(u, LX_UP_CONNECT, u->detail);
        return;
    }
    if (u->timeout_ms && now - u->last_io >= u->timeout_ms) {
        snprintf(u->detail, sizeof u->detail, "no data from upstream for %" PRIu64 " ms", now - u->last_io);
        finish(u, LX_UP_TIMEOUT, u->detail);
        return;
    }
    timer_arm(u, now);
}

/* ---- deferred work: failures found in start, held bytes after a resume ---------------------- */

/* Hands held bytes to the caller, a piece at a time, until they are gone or the caller pauses again. */
static void deliver_held(h1_up *u)
{
    while (u->held_off < u->held_len && !u->paused) {
        size_t n = LX_MIN(u->held_len - u->held_off, (size_t)LX_H1_HELD_PIECE);
        const char *p = u->held + u->held_off;
        u->held_off += n;
        if (!u->cbs.on_data(&u->base, p, n, u->ud)) {
            if (!u->finished && !u->c->free_requested) finish(u, LX_UP_CALLER, "the caller stopped the transfer");
            return;
        }
        if (user_gone(u)) return;
    }
    if (u->held_off < u->held_len) return;
    u->held_len = u->held_off = 0;
    if (u->msg_held) {
        finish(u, LX_UP_OK, "");
        return;
    }
    h1_conn *k = u->conn;
    if (!k) return;
    u->last_io = uv_now(u->c->loop);
    timer_arm(u, u->last_io);
    conn_read_start(k);
}

static void process_one(h1_up *u)
{
    if (u->finished) return;
    if (u->has_fail) {
        finish(u, u->fail, u->detail);
        return;
    }
    if (u->want_resume) {
        u->want_resume = false;
        if (!u->paused) deliver_held(u);
    }
}

static void kick_fired(uv_timer_t *t)
{
    lx_h1_client *c = t->data;
    lx_list *n;
    while (!c->free_requested && (n = lx_list_first(&c->pending)) != NULL) {
        h1_up *u = LX_CONTAINER_OF(n, h1_up, pend);
        lx_list_remove(n);
        process_one(u);
    }
}

/* ---- the request: URL, pool, head ----------------------------------------------------------- */

/* "http://authority/path?query#fragment": the authority, and where the path begins (maybe at the '?', '#' or
 * the end: build_head sends "/" then). -1 if malformed. */
static int split_url(const char *url, lx_slice *authority, const char **path)
{
    const char *a = url + 7, *e = a;
    while (*e && *e != '/' && *e != '?' && *e != '#')
        e++;
    if (e == a) return -1;
    *authority = (lx_slice){a, (size_t)(e - a)};
    *path = e;
    return 0;
}

static h1_pool *pool_new(lx_h1_client *c, lx_slice auth)
{
    const char *p = auth.p, *end = auth.p + auth.len, *host_end, *colon;
    if (memchr(p, '@', auth.len)) return NULL; /* credentials in the URL: not for this transport */
    if (*p == '[') {
        host_end = memchr(p, ']', auth.len);
        if (!host_end) return NULL;
        colon = host_end + 1 < end && host_end[1] == ':' ? host_end + 1 : NULL;
        if (host_end + 1 < end && !colon) return NULL;
        p++;
    } else {
        colon = memchr(p, ':', auth.len);
        host_end = colon ? colon : end;
    }
    long port = 80;
    if (colon) {
        port = 0;
        for (const char *d = colon + 1; d < end; d++) {
            if (*d < '0' || *d > '9' || port > 65535) return NULL;
            port = port * 10 + (*d - '0');
        }
        if (colon + 1 == end) port = 80;
    }
    if (port <= 0 || port > 65535 || host_end == p) return NULL;
    h1_pool *pl = lx_xcalloc(1, sizeof *pl);
    pl->authority = lx_xstrndup(auth.p, auth.len);
    pl->authority_len = auth.len;
    pl->host = lx_xstrndup(p, (size_t)(host_end - p));
    pl->port = (int)port;
    lx_list_init(&pl->idle);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&pl->addrs[0];
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&pl->addrs[0];
    if (uv_ip4_addr(pl->host, pl->port, a4) == 0 || uv_ip6_addr(pl->host, pl->port, a6) == 0) {
        pl->numeric = true;
        pl->naddrs = 1;
    }
    pl->next = c->pools;
    c->pools = pl;
    return pl;
}

static h1_pool *pool_find(lx_h1_client *c, lx_slice auth)
{
    for (h1_pool *p = c->pools; p; p = p->next) {
        if (p->authority_len == auth.len && memcmp(p->authority, auth.p, auth.len) == 0) return p;
    }
    return pool_new(c, auth);
}

typedef struct {
    char *p;
    size_t len;
} head_out;

static void put(head_out *o, const char *s, size_t n)
{
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

#define PUT_LIT(o, s) put(o, s, sizeof(s) - 1)

static size_t digits(size_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* A header line the caller gave with nothing after the colon removes the header (curl's convention). */
static bool header_removes(const char *h, size_t n) { return n > 0 && h[n - 1] == ':'; }

static void build_head(h1_up *u, const lx_upstream_req *req, const char *method, const char *path, bool with_body)
{
    static const char json[] = "Content-Type: application/json\r\n";
    size_t mlen = strlen(method), plen = strcspn(path, "#"); /* the fragment is not sent */
    size_t need = mlen + plen + 64 + u->pool->authority_len + sizeof json + 48;
    bool has_ctype = false, has_host = false, has_accept = false;
    for (const char *const *h = req->headers; h && *h; h++) {
        need += strlen(*h) + 2;
        has_ctype = has_ctype || strncasecmp(*h, "content-type:", 13) == 0;
        has_host = has_host || strncasecmp(*h, "host:", 5) == 0;
        has_accept = has_accept || strncasecmp(*h, "accept:", 7) == 0;
    }
    if (need > u->head_cap) {
        free(u->head);
        u->head_cap = LX_MAX(need, (size_t)512);
        u->head = lx_xmalloc(u->head_cap);
    }
    head_out o = {u->head, 0};
    put(&o, method, mlen);
    PUT_LIT(&o, " ");
    if (path[0] != '/') PUT_LIT(&o, "/");
    put(&o, path, plen);
    PUT_LIT(&o, " HTTP/1.1\r\n");
    if (!has_host) {
        PUT_LIT(&o, "Host: ");
        put(&o, u->pool->authority, u->pool->authority_len);
        PUT_LIT(&o, "\r\n");
    }
    for (const char *const *h = req->headers; h && *h; h++) {
        size_t n = strlen(*h);
        if (header_removes(*h, n)) continue;
        put(&o, *h, n);
        PUT_LIT(&o, "\r\n");
    }
    if (!has_accept) PUT_LIT(&o, "Accept: */*\r\n");
    if (with_body) {
        if (!has_ctype) PUT_LIT(&o, json);
        PUT_LIT(&o, "Content-Length: ");
        o.len += digits(req->body_len, o.p + o.len);
        PUT_LIT(&o, "\r\n");
    }
    PUT_LIT(&o, "\r\n");
    u->head_len = o.len;
}

/* ---- public API ----------------------------------------------------------------------------- */

lx_h1_client *lx_h1_client_new(uv_loop_t *loop)
{
    lx_h1_client *c = lx_xcalloc(1, sizeof *c);
    c->loop = loop;
    lx_list_init(&c->active);
    lx_list_init(&c->cooling);
    lx_list_init(&c->free);
    lx_list_init(&c->pending);
    lx_list_init(&c->conns);
    uv_timer_init(loop, &c->kick);
    uv_check_init(loop, &c->recycle);
    uv_unref((uv_handle_t *)&c->recycle);
    c->kick.data = c->recycle.data = c;
    c->open_handles = 2;
    return c;
}

static void close_ups(lx_list *l)
{
    lx_list *n;
    while ((n = lx_list_first(l)) != NULL) {
        h1_up *u = LX_CONTAINER_OF(n, h1_up, link);
        lx_list_remove(n);
        if (u->resolve) u->resolve->u = NULL;
        u->finished = true;
        uv_close((uv_handle_t *)&u->timer, up_closed);
    }
}

void lx_h1_client_free(lx_h1_client *c)
{
    if (!c || c->free_requested) return;
    c->free_requested = true; /* no user callback from now on */
    lx_list *n;
    while ((n = lx_list_first(&c->conns)) != NULL)
        conn_close(LX_CONTAINER_OF(n, h1_conn, all));
    while ((n = lx_list_first(&c->pending)) != NULL)
        lx_list_remove(n);
    close_ups(&c->active);
    close_ups(&c->cooling);
    close_ups(&c->free);
    for (h1_pool *p = c->pools, *next; p; p = next) {
        next = p->next;
        free(p->authority);
        free(p->host);
        free(p);
    }
    c->pools = NULL;
    uv_close((uv_handle_t *)&c->kick, client_handle_closed);
    uv_close((uv_handle_t *)&c->recycle, client_handle_closed);
}

lx_upstream *lx_h1_start(lx_h1_client *c, const lx_upstream_req *req, const lx_upstream_cbs *cbs, void *ud)
{
    h1_up *u = up_alloc(c);
    u->cbs = *cbs;
    u->ud = ud;
    u->body = req->body ? req->body : "";
    u->body_len = req->body ? req->body_len : 0;
    u->timeout_ms = req->timeout_ms;
    u->connect_ms = req->connect_timeout_ms ? req->connect_timeout_ms : LX_H1_CONNECT_DEFAULT_MS;
    u->own = req->own_connection;
    u->last_io = uv_now(c->loop);
    const char *method = req->method ? req->method : "GET";
    u->is_head = strcmp(method, "HEAD") == 0;
    bool with_body = strcmp(method, "POST") == 0 || u->body_len > 0;

    lx_slice auth;
    const char *path;
    if (split_url(req->url, &auth, &path) != 0 || (u->pool = pool_find(c, auth)) == NULL) {
        fail_later(u, LX_UP_OTHER, "malformed URL");
        return &u->base;
    }
    build_head(u, req, method, path, with_body);
    h1_conn *k = u->own ? NULL : pool_take(c, u->pool);
    if (k) {
        k->reused = true;
        conn_send(k, u);
    } else {
        conn_open(u);
    }
    if (!u->has_fail) timer_arm(u, u->last_io);
    return &u->base;
}

void lx_h1_pause(lx_upstream *up)
{
    h1_up *u = (h1_up *)up;
    if (u->finished) return;
    u->paused = true;
    u->want_resume = false;
}

void lx_h1_resume(lx_upstream *up)
{
    h1_up *u = (h1_up *)up;
    if (u->finished) return;
    u->paused = false;
    if (u->held_len > u->held_off) {
        u->want_resume = true;
        enqueue(u);
    }
}

void lx_h1_cancel(lx_upstream *up)
{
    h1_up *u = (h1_up *)up;
    if (u->finished) return;
    conn_release(u, false);
    up_end(u);
}

size_t lx_h1_active(const lx_h1_client *c) { return c->nactive; }
