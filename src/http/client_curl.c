/*
 * Upstream HTTP: libcurl's multi interface driven by the libuv loop. See client.h for the API.
 *
 * Shape. One CURLM per lx_curl_client, with CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION: one uv_timer_t
 * ("timer") for curl's timeouts and one uv_poll_t per socket curl hands over (a sock_ctx, found by fd in
 * c->socks). Connections live in the multi's cache (CURLMOPT_MAXCONNECTS 1024), so consecutive requests
 * to a backend reuse them. Easy handles are pooled (curl_easy_reset) instead of re-created per request.
 * TLS: a request's ca_file (CURLOPT_CAINFO) and tls_insecure (VERIFYPEER/VERIFYHOST off) are set on its
 * handle; curl reuses a connection only for a request with the same TLS settings.
 *
 * Sockets. A connection socket keeps one uv_poll_t for its whole life, not one per transfer: in libuv
 * 1.44 uv_poll_init costs an ioctl and an epoll_ctl ADD + DEL, and every uv_poll_start an epoll_ctl DEL
 * (+ an ADD on the next loop turn) even when the events are unchanged, which used to be ~5 syscalls per
 * proxied request on a pooled connection. So the poll is (re)started only when the events curl wants
 * change, and CURL_POLL_REMOVE (which does not mean a close; curl forgets the curl_multi_assign pointer
 * then, hence the table by fd) leaves a connection's poll watching UV_READABLE: the next request on the
 * pooled connection (curl writes it, then asks for IN) costs no epoll_ctl at all. If the poll fires
 * while curl is not watching (want == 0: an idle pooled connection the backend closed, or sent junk
 * on), it is stopped, not handed to curl: a level-triggered EOF would spin; curl's own liveness check
 * (a poll() before reuse) finds the connection dead and closes it. The poll is closed when curl closes
 * the socket, in closesocket_cb (CURLOPT_CLOSESOCKETFUNCTION, set on every easy handle): uv_close first
 * (it stops the watcher, so the fd leaves epoll while still open and libuv's slot for the fd number is
 * free), then close(); a new socket with the same number gets a new sock_ctx and uv_poll_t even while
 * the old one's close callback is pending.
 *   That covers only sockets curl closes through the callback. curl 7.88 closes two kinds itself, after
 * CURL_POLL_REMOVE or without telling at all: the threaded resolver's socketpair, and a connection
 * socket whose connect never completed (cf_socket_close of a socket that is not "active"). A poll
 * left on such an fd would watch whatever gets the number next (libuv keeps one watcher per fd number).
 * So only a "live" socket keeps its poll after CURL_POLL_REMOVE: one curl opened as a connection
 * socket (CURLOPT_SOCKOPTFUNCTION marks it, conn) and has asked to read (live: it does only once the
 * connect completed, and from then on closes it through the callback). Every other socket's poll is
 * closed at CURL_POLL_REMOVE as before. A conn mark that was not handed over during the curl call
 * that made it (c->curl_calls) belongs to a socket curl already closed, and is not trusted; a mark
 * found for an fd curl opens again means the old socket is gone (sockopt_cb). Teardown: curl closes its
 * pooled connections in curl_multi_cleanup (closesocket_cb), then whatever is left is dropped.
 *
 * Inside curl / deferral. c->in_curl counts the curl calls on the stack that can run our header and
 * write callbacks (curl_multi_socket_action, curl_easy_pause), i.e. the calls from which the user's
 * on_headers / on_data run. The rule is that no curl_multi_* call (nor curl_easy_pause) is made while
 * in_curl > 0:
 *   - lx_upstream_pause never calls curl: it sets a flag, and the next write callback returns
 *     CURL_WRITEFUNC_PAUSE (curl keeps that piece and stops reading the socket).
 *   - lx_upstream_resume is always deferred: the upstream goes on the client's pending list and
 *     curl_easy_pause(CURLPAUSE_CONT) runs from the pending processing, never inside the caller's
 *     resume() call. curl delivers the data it held synchronously inside curl_easy_pause, so on_data
 *     may run (and pause again, or cancel) from there; that is why in_curl is raised around it too.
 *   - lx_upstream_cancel inside curl marks the upstream finished (its callbacks now return an error
 *     to curl, so nothing more reaches the user) and queues it; the handle is removed once curl
 *     returned. Outside curl it removes the handle at once.
 *   - lx_upstream_start inside curl prepares the easy handle and queues the curl_multi_add_handle.
 *   - on_data returning false makes the write callback return 0 and queues the upstream to finish
 *     with LX_UP_CALLER (curl may not report the WRITE_ERROR itself when the false came from data
 *     replayed by curl_easy_pause).
 * after_curl() runs right after every curl_multi_socket_action returns (and from a 0 ms "kick"
 * timer, armed whenever something is queued from outside curl): it drains curl_multi_info_read
 * until empty, then processes the pending list, and repeats until both are empty (processing may
 * itself produce work). It does not nest: c->processing makes an inner call a no-op, the outer loop
 * picks the work up. on_done is called from after_curl (curl finished), from the pending processing
 * (caller abort, failed start) or from the idle timer (timeout) -- never from inside curl, and never
 * synchronously from inside an lx_upstream_* call: a start that fails already in start() reports on
 * a later loop turn through the kick.
 *
 * Timeout (timeout_ms: no byte for that long). A per-upstream uv_timer, re-armed lazily: every header
 * line and body piece stores uv_now() in last_io, and when the timer fires it re-arms for the rest
 * of the window if there was I/O meanwhile (no heap operation per read). It runs from the start,
 * so it also bounds connect + send + waiting for the first byte, and it is stopped while curl holds
 * the transfer paused (our client is slow, not the backend) and restarted on resume. curl's
 * LOW_SPEED_LIMIT=1 / LOW_SPEED_TIME (whole seconds) was tried under multi_socket and rejected: with
 * LOW_SPEED_TIME=1 both a server that never answers and a stream that stalls mid-body failed after
 * ~7 s, not 1 s (curl judges the speed over a window of several seconds, and only whole seconds).
 * curl's own OPERATION_TIMEDOUT can then only come from connect_timeout_ms; it maps to LX_UP_CONNECT
 * when no connection was made (nothing was sent, so retrying elsewhere is safe).
 *
 * Closing connections. A cancelled, timed-out or caller-aborted transfer is removed before it
 * completed: CURLOPT_FORBID_REUSE is set on it first and curl also closes any connection whose
 * transfer was removed prematurely, so the backend sees the socket close (and frees the GPU slot).
 *
 * Lifetimes. A curl_up embeds its idle timer and is freed in that timer's close callback, one
 * loop turn after it was detached, so it stays valid through on_done. The client counts its open
 * uv handles (timers, polls, upstream timers) and frees itself when the last one closed after
 * lx_curl_client_free. lx_curl_client_free from inside a callback only sets free_requested (every
 * callback into the user checks it); after_curl then tears down once curl returned.
 * Memory per stream: small_buffer sets CURLOPT_BUFFERSIZE 4096 (curl allocates the receive buffer
 * per transfer and frees it when the transfer is done, so pooled easy handles hold none).
 * Loop thread only.
 */
#include "http/client_impl.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "utils/list.h"
#include "utils/log.h"

#define LX_CLIENT_MAXCONNECTS    1024L
#define LX_CLIENT_EASY_POOL      256
#define LX_CLIENT_SMALL_BUFFER   4096L
#define LX_CLIENT_DEFAULT_BUFFER ((long)CURL_MAX_WRITE_SIZE)

/* A socket curl handed over (or, for a connection socket, opened: sockopt_cb), with its uv_poll_t. See
 * "Sockets" above for who frees it when. */
typedef struct sock_ctx {
    uv_poll_t poll;
    lx_curl_client *c;
    const CURL *opener; /* conn: the transfer whose connect opened it (compared, never used) */
    uint64_t opened;    /* conn: c->curl_calls when it was opened */
    curl_socket_t fd;
    int want;     /* UV_READABLE | UV_WRITABLE that curl asked for; 0 since CURL_POLL_REMOVE */
    int watching; /* what the poll is started with; 0 = stopped */
    bool inited;  /* the poll is initialised: curl handed the socket over at least once */
    bool conn;    /* a connection socket curl opened (not the resolver's socketpair) */
    bool live;    /* conn, and connected (curl asked to read it): curl closes it through closesocket_cb */
    bool closing; /* out of the table, uv_close called */
} sock_ctx;

typedef struct curl_up {
    lx_upstream base; /* transport tag: LX_HTTP_CURL */
    lx_curl_client *c;
    CURL *easy;
    struct curl_slist *hdrs; /* one block: the nodes, then the lines (set_headers) */
    lx_upstream_cbs cbs;
    void *ud;
    lx_list link;     /* in c->all: every upstream not yet detached */
    lx_list pend;     /* in c->pending when it has deferred work */
    bool added;       /* in the multi */
    bool need_add;    /* curl_multi_add_handle deferred */
    bool curl_done;   /* curl reported CURLMSG_DONE (the connection went back to the cache or closed) */
    bool finished;    /* on_done delivered, being delivered, or cancelled: no more user callbacks */
    bool detached;    /* out of the multi and the lists; freed when the idle timer closed */
    bool has_fail;    /* finish with `fail` at the next processing */
    bool paused;      /* the user asked for no data */
    bool curl_paused; /* the write callback returned CURL_WRITEFUNC_PAUSE */
    bool want_resume; /* curl_easy_pause(CONT) deferred */
    bool head_done;
    lx_up_result fail;
    int status;
    uint64_t timeout_ms;
    uint64_t last_io; /* uv_now() of the last byte received */
    uv_timer_t idle;
    size_t ctype_len, retry_len;
    char ctype[256];
    char retry[64];
    char errbuf[CURL_ERROR_SIZE];
} curl_up;

struct lx_curl_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeout */
    uv_timer_t kick;  /* runs after_curl on the next loop turn */
    int in_curl;
    bool processing;
    bool free_requested; /* lx_curl_client_free was called: no more user callbacks */
    bool freeing;        /* teardown done; waiting for the uv handles to close */
    size_t open_handles;
    size_t active;
    lx_list all;      /* every upstream not yet detached, newest first */
    lx_list pending;  /* upstreams with deferred work, in the order it was asked for */
    sock_ctx **socks; /* by fd: every socket we know (nsocks slots, grown on demand) */
    size_t nsocks;
    uint64_t curl_calls; /* curl_multi_socket_action / curl_easy_pause calls returned so far */
    CURL *pool[LX_CLIENT_EASY_POOL];
    size_t npool;
};

static void after_curl(lx_curl_client *c);
static void teardown(lx_curl_client *c);

/* ---- handle accounting ---------------------------------------------------------------------- */

static void handle_closed(lx_curl_client *c)
{
    if (--c->open_handles == 0 && c->freeing) {
        free(c);
        curl_global_cleanup();
    }
}

static void client_timer_closed(uv_handle_t *h) { handle_closed(h->data); }

/* ---- sockets (CURLMOPT_SOCKETFUNCTION, CURLOPT_SOCKOPTFUNCTION, CURLOPT_CLOSESOCKETFUNCTION) ---- */

static void poll_cb(uv_poll_t *h, int status, int events);

static sock_ctx *sock_get(const lx_curl_client *c, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < c->nsocks ? c->socks[fd] : NULL;
}

static sock_ctx *sock_new(lx_curl_client *c, curl_socket_t fd)
{
    if ((size_t)fd >= c->nsocks) {
        size_t n = LX_MAX(LX_MAX(c->nsocks * 2, (size_t)fd + 1), (size_t)64);
        c->socks = lx_xrealloc(c->socks, n * sizeof *c->socks);
        memset(c->socks + c->nsocks, 0, (n - c->nsocks) * sizeof *c->socks);
        c->nsocks = n;
    }
    sock_ctx *s = lx_xcalloc(1, sizeof *s);
    s->c = c;
    s->fd = fd;
    c->socks[fd] = s;
    return s;
}

static void sock_closed(uv_handle_t *h)
{
    sock_ctx *s = h->data;
    lx_curl_client *c = s->c;
    free(s);
    handle_closed(c);
}

/* Forgets s. uv_close stops the poll at once (the fd leaves epoll while it is still open, and libuv's
 * watcher slot for the fd number is free), so a new socket with the same number gets a new sock_ctx and
 * a new uv_poll_t even while this one's close callback is pending. */
static void sock_drop(sock_ctx *s)
{
    lx_curl_client *c = s->c;
    if (c->socks[s->fd] == s) c->socks[s->fd] = NULL;
    if (!s->inited) {
        free(s);
        return;
    }
    s->closing = true;
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

/* uv_poll_start costs an epoll_ctl DEL + ADD in libuv 1.44 even for the same events: only on a change. */
static void sock_watch(sock_ctx *s, int events)
{
    if (s->watching == events) return;
    int err = events ? uv_poll_start(&s->poll, events, poll_cb) : uv_poll_stop(&s->poll);
    if (err) LX_ERROR(NULL, "upstream: uv_poll_start(%d): %s", (int)s->fd, uv_strerror(err));
    s->watching = err ? 0 : events;
}

static void socket_action(lx_curl_client *c, curl_socket_t fd, int flags)
{
    int running;
    c->in_curl++;
    CURLMcode rc = curl_multi_socket_action(c->multi, fd, flags, &running);
    c->in_curl--;
    c->curl_calls++;
    if (rc != CURLM_OK) LX_WARN(NULL, "upstream: curl_multi_socket_action: %s", curl_multi_strerror(rc));
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    sock_ctx *s = h->data;
    lx_curl_client *c = s->c;
    if (status < 0) s->watching = 0; /* libuv stops the poll on POLLERR */
    if (s->want == 0) {
        /* curl is not watching it: an idle pooled connection the backend closed (or sent junk on), or
         * data for a transfer curl holds paused. The poll is level-triggered, so stop it rather than
         * spin; curl asks again on resume, and its own liveness check before reusing a connection finds
         * a dead one and closes it. */
        sock_watch(s, 0);
        return;
    }
    int flags = 0;
    /* On POLLERR let curl find out what it is (a refused connect, a reset) by trying to read and write,
     * and watch again if it keeps the socket. */
    if (status < 0)
        flags = CURL_CSELECT_IN | CURL_CSELECT_OUT | CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    socket_action(c, s->fd, flags);
    if (status < 0 && s->want && !s->closing && !c->freeing) sock_watch(s, s->want);
    after_curl(c);
}

static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)socketp; /* curl forgets it after CURL_POLL_REMOVE: the table is by fd instead */
    lx_curl_client *c = userp;
    sock_ctx *s = sock_get(c, fd);

    if (what == CURL_POLL_REMOVE) {
        if (!s || !s->inited) return 0;
        s->want = 0;
        if (s->conn && s->live && !c->freeing) {
            /* Not a close: usually the connection went back to the pool. Keep the poll; reading only, so
             * the next request on it (curl writes it directly, then asks for IN) costs no syscall. */
            if (s->watching != UV_READABLE) sock_watch(s, 0);
        } else {
            sock_drop(s); /* not closed through closesocket_cb: done with it now (the old way) */
        }
        return 0;
    }
    if (c->freeing) return -1;
    if (s && !s->inited && s->conn && (s->opener != easy || s->opened != c->curl_calls))
        s->conn = false; /* the mark of a socket curl closed without telling us; this is another one */
    if (!s) s = sock_new(c, fd);
    if (!s->inited) {
        int err = uv_poll_init_socket(c->loop, &s->poll, fd);
        if (err) {
            LX_ERROR(NULL, "upstream: uv_poll_init_socket(%d): %s", (int)fd, uv_strerror(err));
            sock_drop(s);
            return -1;
        }
        s->poll.data = s;
        s->inited = true;
        c->open_handles++;
    }
    s->want = 0;
    if (what & CURL_POLL_IN) s->want |= UV_READABLE;
    if (what & CURL_POLL_OUT) s->want |= UV_WRITABLE;
    if (s->conn && (s->want & UV_READABLE)) s->live = true;
    sock_watch(s, s->want);
    return 0;
}

/* curl opened a connection socket (not connected yet). */
static int sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    curl_up *u = clientp;
    lx_curl_client *c = u->c;
    if (purpose != CURLSOCKTYPE_IPCXN || fd < 0) return CURL_SOCKOPT_OK;
    sock_ctx *s = sock_get(c, fd);
    if (s) {
        /* The kernel gave this number out again, so the socket we knew by it is closed: curl 7.88 closes a
         * socket whose connect failed without CLOSESOCKETFUNCTION (and tells CURL_POLL_REMOVE only
         * afterwards, if at all). curl's socket hash is by number too, so it may think the number is
         * still watched: keep the context, but restart its poll (the kernel took the closed socket out
         * of epoll; libuv does not know). */
        s->live = false;
        if (s->watching) {
            int w = s->watching;
            sock_watch(s, 0);
            sock_watch(s, w);
        }
    } else {
        s = sock_new(c, fd);
    }
    s->conn = true;
    s->opener = u->easy;
    s->opened = c->curl_calls;
    return CURL_SOCKOPT_OK;
}

/* curl closes a connection socket (every one that connected; see "Sockets" above). */
static int closesocket_cb(void *clientp, curl_socket_t fd)
{
    lx_curl_client *c = clientp;
    sock_ctx *s = sock_get(c, fd);
    if (s) sock_drop(s); /* before close(): the fd leaves epoll while it is open */
    return close(fd);
}

/* ---- curl's timer (CURLMOPT_TIMERFUNCTION) and the kick -------------------------------------- */

static void curl_timer_fired(uv_timer_t *t)
{
    lx_curl_client *c = t->data;
    socket_action(c, CURL_SOCKET_TIMEOUT, 0);
    after_curl(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    lx_curl_client *c = userp;
    if (c->freeing) return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, curl_timer_fired, (uint64_t)timeout_ms, 0);
    return 0;
}

static void kick_fired(uv_timer_t *t) { after_curl(t->data); }

/* ---- upstream lists and lifetime ------------------------------------------------------------ */

static void enqueue(curl_up *u)
{
    lx_curl_client *c = u->c;
    if (!lx_list_linked(&u->pend)) lx_list_append(&c->pending, &u->pend);
    /* Inside curl or inside after_curl the work is picked up when they return; elsewhere (a resume
     * from a client's write callback, a start that failed) the kick brings it to the next turn. */
    if (!c->processing && c->in_curl == 0 && !c->freeing) uv_timer_start(&c->kick, kick_fired, 0, 0);
}

static void mark_finished(curl_up *u)
{
    if (u->finished) return;
    u->finished = true;
    u->c->active--;
    uv_timer_stop(&u->idle);
}

static void recycle_easy(lx_curl_client *c, CURL *e)
{
    if (c->freeing || c->npool == LX_CLIENT_EASY_POOL) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_reset(e);
    /* curl refuses CURLOPT_BUFFERSIZE while the handle still holds a receive buffer (it is normally
     * freed when a transfer is done). Such a handle would keep a buffer of the old size under the
     * default size setting, so it is not reused. */
    if (curl_easy_setopt(e, CURLOPT_BUFFERSIZE, LX_CLIENT_DEFAULT_BUFFER) != CURLE_OK) {
        curl_easy_cleanup(e);
        return;
    }
    c->pool[c->npool++] = e;
}

static void upstream_closed(uv_handle_t *h)
{
    curl_up *u = h->data;
    lx_curl_client *c = u->c;
    free(u);
    handle_closed(c);
}

/* Takes u out of curl and the client's lists; u itself is freed one loop turn later. Not inside curl. */
static void detach(curl_up *u)
{
    lx_curl_client *c = u->c;
    if (u->detached) return;
    mark_finished(u);
    u->detached = true;
    lx_list_remove(&u->pend);
    lx_list_remove(&u->link);
    if (u->easy) {
        if (u->added) {
            /* An unfinished transfer: its connection must close, not go back to the cache. */
            if (!u->curl_done) curl_easy_setopt(u->easy, CURLOPT_FORBID_REUSE, 1L);
            CURLMcode rc = curl_multi_remove_handle(c->multi, u->easy);
            if (rc != CURLM_OK) LX_ERROR(NULL, "upstream: curl_multi_remove_handle: %s", curl_multi_strerror(rc));
            u->added = false;
        }
        recycle_easy(c, u->easy);
        u->easy = NULL;
    }
    free(u->hdrs);
    u->hdrs = NULL;
    uv_close((uv_handle_t *)&u->idle, upstream_closed);
}

/* Ends u with on_done. Not inside curl. */
static void complete(curl_up *u, lx_up_result r, const char *detail)
{
    lx_curl_client *c = u->c;
    if (u->detached) return;
    bool notify = !u->finished;
    detach(u);
    if (notify && !c->free_requested) u->cbs.on_done(&u->base, r, detail ? detail : "", u->ud);
}

static void fail_later(curl_up *u, lx_up_result r, const char *detail)
{
    if (u->finished || u->has_fail) return;
    u->has_fail = true;
    u->fail = r;
    if (detail && detail != u->errbuf) snprintf(u->errbuf, sizeof u->errbuf, "%s", detail);
    enqueue(u);
}

/* ---- the idle timeout ----------------------------------------------------------------------- */

static void idle_fired(uv_timer_t *t)
{
    curl_up *u = t->data;
    if (u->finished || u->curl_paused) return;
    uint64_t now = uv_now(u->c->loop);
    uint64_t quiet = now - u->last_io;
    if (quiet < u->timeout_ms) {
        uv_timer_start(&u->idle, idle_fired, u->timeout_ms - quiet, 0);
        return;
    }
    snprintf(u->errbuf, sizeof u->errbuf, "no data from upstream for %" PRIu64 " ms", quiet);
    complete(u, LX_UP_TIMEOUT, u->errbuf);
}

static void idle_arm(curl_up *u)
{
    if (u->timeout_ms == 0 || u->finished) return;
    u->last_io = uv_now(u->c->loop);
    uv_timer_start(&u->idle, idle_fired, u->timeout_ms, 0);
}

/* ---- curl's header and write callbacks ------------------------------------------------------ */

static bool user_gone(const curl_up *u) { return u->finished || u->has_fail || u->c->free_requested; }

static void store_value(char *dst, size_t cap, size_t *len, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n > cap) n = cap;
    memcpy(dst, v, n);
    *len = n;
}

static bool header_is(const char *line, size_t n, const char *name, const char **value, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0) return false;
    *value = line + k + 1;
    *vlen = n - k - 1;
    return true;
}

static void deliver_head(curl_up *u)
{
    lx_up_head head = {
        .status = u->status,
        .content_type = {u->ctype, u->ctype_len},
        .retry_after = {u->retry, u->retry_len},
    };
    u->head_done = true;
    if (u->cbs.on_headers) u->cbs.on_headers(&u->base, &head, u->ud);
}

static size_t header_cb(char *data, size_t size, size_t nitems, void *userp)
{
    curl_up *u = userp;
    size_t n = size * nitems;
    if (user_gone(u)) return 0;
    u->last_io = uv_now(u->c->loop);
    if (u->head_done) return n; /* trailers */

    while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
        n--;
    const char *v;
    size_t vlen;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A status line: the first, or the final one after 1xx interim answers. */
        const char *sp = memchr(data, ' ', n);
        int st = 0;
        if (sp) {
            const char *p = sp + 1, *end = data + n;
            for (int i = 0; i < 3 && p < end && *p >= '0' && *p <= '9'; i++, p++)
                st = st * 10 + (*p - '0');
        }
        u->status = st;
        u->ctype_len = u->retry_len = 0;
    } else if (n == 0) {
        if (u->status >= 100 && u->status < 200) return size * nitems; /* interim: the real one follows */
        deliver_head(u);
        if (user_gone(u)) return 0;
    } else if (header_is(data, n, "content-type", &v, &vlen)) {
        store_value(u->ctype, sizeof u->ctype, &u->ctype_len, v, vlen);
    } else if (header_is(data, n, "retry-after", &v, &vlen)) {
        store_value(u->retry, sizeof u->retry, &u->retry_len, v, vlen);
    }
    return size * nitems;
}

static size_t write_cb(char *data, size_t size, size_t nitems, void *userp)
{
    curl_up *u = userp;
    size_t n = size * nitems;
    if (user_gone(u)) return 0;
    if (!u->head_done) {
        deliver_head(u);
        if (user_gone(u)) return 0;
    }
    if (u->paused) {
        /* curl keeps this piece and stops reading; our client is slow, not the backend. */
        u->curl_paused = true;
        uv_timer_stop(&u->idle);
        return CURL_WRITEFUNC_PAUSE;
    }
    u->last_io = uv_now(u->c->loop);
    if (!u->cbs.on_data(&u->base, data, n, u->ud)) {
        fail_later(u, LX_UP_CALLER, "the caller stopped the transfer");
        return 0;
    }
    return user_gone(u) ? 0 : n;
}

/* ---- after curl returned: drain the messages, then the pending list ------------------------- */

static lx_up_result map_result(curl_up *u, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK: return LX_UP_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE: return LX_UP_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: {
        /* Only curl's connect timeout can fire (the idle timeout is ours): nothing was sent then. */
        curl_off_t connect_us = 0;
        curl_easy_getinfo(u->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        return connect_us == 0 ? LX_UP_CONNECT : LX_UP_TIMEOUT;
    }
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_SHUTDOWN_FAILED: return LX_UP_RESET;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP_RETURNED_ERROR:
    case CURLE_RANGE_ERROR:
    case CURLE_TOO_MANY_REDIRECTS: return LX_UP_BAD_RESPONSE;
    case CURLE_WRITE_ERROR:
    case CURLE_ABORTED_BY_CALLBACK: return u->has_fail ? u->fail : LX_UP_OTHER;
    default: return LX_UP_OTHER;
    }
}

static void curl_finished(curl_up *u, CURLcode rc)
{
    u->curl_done = true;
    if (u->finished) {
        detach(u); /* cancelled from inside curl */
        return;
    }
    lx_up_result r;
    const char *detail;
    if (u->has_fail) {
        r = u->fail;
        detail = u->errbuf;
    } else {
        r = map_result(u, rc);
        detail = rc == CURLE_OK ? "" : (u->errbuf[0] ? u->errbuf : curl_easy_strerror(rc));
        if (r == LX_UP_OK && !u->head_done) {
            r = LX_UP_BAD_RESPONSE;
            detail = "the answer ended without a header block";
        }
    }
    if (r != LX_UP_OK) LX_DEBUG(NULL, "upstream: %s (%s)", lx_up_result_name(r), detail);
    complete(u, r, detail);
}

static void process_one(curl_up *u)
{
    lx_curl_client *c = u->c;
    if (u->finished) {
        detach(u);
        return;
    }
    if (u->has_fail) {
        complete(u, u->fail, u->errbuf);
        return;
    }
    if (u->need_add) {
        u->need_add = false;
        CURLMcode rc = curl_multi_add_handle(c->multi, u->easy);
        if (rc != CURLM_OK) {
            complete(u, LX_UP_OTHER, curl_multi_strerror(rc));
            return;
        }
        u->added = true;
    }
    if (u->want_resume) {
        u->want_resume = false;
        if (u->paused || !u->curl_paused || !u->added) return;
        u->curl_paused = false;
        idle_arm(u);
        c->in_curl++;
        CURLcode rc = curl_easy_pause(u->easy, CURLPAUSE_CONT); /* may run on_data right here */
        c->in_curl--;
        c->curl_calls++;
        if (rc != CURLE_OK && !u->finished && !u->has_fail)
            fail_later(u, rc == CURLE_WRITE_ERROR ? LX_UP_CALLER : LX_UP_OTHER, curl_easy_strerror(rc));
    }
}

static void after_curl(lx_curl_client *c)
{
    if (c->processing || c->in_curl > 0 || c->freeing) return;
    c->processing = true;
    bool more = true;
    while (more && !c->free_requested) {
        more = false;
        CURLMsg *m;
        int left;
        while (!c->free_requested && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) continue;
            CURLcode rc = m->data.result; /* m dies with the removal of its handle */
            char *priv = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
            if (priv) curl_finished((curl_up *)(void *)priv, rc);
            more = true;
        }
        lx_list *n;
        while (!c->free_requested && (n = lx_list_first(&c->pending)) != NULL) {
            curl_up *u = LX_CONTAINER_OF(n, curl_up, pend);
            lx_list_remove(&u->pend);
            process_one(u);
            more = true;
        }
    }
    c->processing = false;
    if (c->free_requested) teardown(c);
}

/* ---- public API ----------------------------------------------------------------------------- */

lx_curl_client *lx_curl_client_new(uv_loop_t *loop)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return NULL;
    lx_curl_client *c = lx_xcalloc(1, sizeof *c);
    c->loop = loop;
    lx_list_init(&c->all);
    lx_list_init(&c->pending);
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        curl_global_cleanup();
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, LX_CLIENT_MAXCONNECTS);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->kick);
    c->timer.data = c->kick.data = c;
    c->open_handles = 2;
    return c;
}

static void teardown(lx_curl_client *c)
{
    if (c->freeing) return;
    c->free_requested = true;
    lx_list *n;
    while ((n = lx_list_first(&c->all)) != NULL)
        detach(LX_CONTAINER_OF(n, curl_up, link)); /* the connections of unfinished transfers close here */
    c->freeing = true;
    for (size_t i = 0; i < c->npool; i++)
        curl_easy_cleanup(c->pool[i]);
    c->npool = 0;
    curl_multi_cleanup(c->multi); /* closes the pooled connections (closesocket_cb) */
    c->multi = NULL;
    for (size_t i = 0; i < c->nsocks; i++) {
        if (c->socks[i]) sock_drop(c->socks[i]);
    }
    free(c->socks);
    c->socks = NULL;
    c->nsocks = 0;
    uv_close((uv_handle_t *)&c->timer, client_timer_closed);
    uv_close((uv_handle_t *)&c->kick, client_timer_closed);
}

void lx_curl_client_free(lx_curl_client *c)
{
    if (!c || c->free_requested) return;
    c->free_requested = true;
    if (c->in_curl > 0 || c->processing) return; /* after_curl tears down once curl returned */
    teardown(c);
}

static void header_put(struct curl_slist **node, char **text, const char *line)
{
    size_t len = strlen(line) + 1;
    memcpy(*text, line, len);
    (*node)->data = *text;
    (*node)->next = *node + 1;
    (*node)++;
    *text += len;
}

/* The request's header lines plus ours, as one allocation holding the curl_slist nodes and the text
 * (curl_slist_append makes two per line). curl reads the list until the transfer is done. */
static void set_headers(curl_up *u, const char *const *headers, bool with_body)
{
    static const char expect[] = "Expect:", json[] = "Content-Type: application/json";
    bool has_ctype = false;
    size_t n = 1, text = sizeof expect;
    for (const char *const *h = headers; h && *h; h++) {
        n++;
        text += strlen(*h) + 1;
        if (strncasecmp(*h, "content-type:", 13) == 0) has_ctype = true;
    }
    bool add_json = with_body && !has_ctype;
    if (add_json) {
        n++;
        text += sizeof json;
    }
    struct curl_slist *first = lx_xmalloc(n * sizeof *first + text), *node = first;
    char *p = (char *)(first + n);
    for (const char *const *h = headers; h && *h; h++)
        header_put(&node, &p, *h);
    header_put(&node, &p, expect);
    if (add_json) header_put(&node, &p, json);
    node[-1].next = NULL;
    u->hdrs = first;
}

static bool easy_setup(curl_up *u, const lx_upstream_req *req)
{
    CURL *e = u->easy;
    bool ok = true;
#define SET(opt, val) ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK
    SET(CURLOPT_PRIVATE, (char *)u);
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_ERRORBUFFER, u->errbuf);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, u);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, u);
    SET(CURLOPT_BUFFERSIZE, req->small_buffer ? LX_CLIENT_SMALL_BUFFER : LX_CLIENT_DEFAULT_BUFFER);
    SET(CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
    SET(CURLOPT_SOCKOPTDATA, u);
    SET(CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
    SET(CURLOPT_CLOSESOCKETDATA, u->c); /* kept by the connection, which outlives u */
    if (req->connect_timeout_ms) SET(CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    if (req->ca_file) SET(CURLOPT_CAINFO, req->ca_file);
    if (req->tls_insecure) { /* curl keeps connections made this way apart from verified ones */
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (req->own_connection) { /* a probe: neither warms the pool nor is fooled by a stale pooled socket */
        SET(CURLOPT_FRESH_CONNECT, 1L);
        SET(CURLOPT_FORBID_REUSE, 1L);
    }

    const char *method = req->method ? req->method : "GET";
    bool with_body = strcmp(method, "POST") == 0 || (req->body && req->body_len > 0);
    set_headers(u, req->headers, with_body);
    SET(CURLOPT_HTTPHEADER, u->hdrs);

    if (strcmp(method, "GET") == 0 && !with_body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (with_body) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
        }
        if (strcmp(method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
    }
#undef SET
    return ok;
}

lx_upstream *lx_curl_start(lx_curl_client *c, const lx_upstream_req *req, const lx_upstream_cbs *cbs, void *ud)
{
    curl_up *u = lx_xcalloc(1, sizeof *u);
    u->base.transport = LX_HTTP_CURL;
    u->c = c;
    u->cbs = *cbs;
    u->ud = ud;
    u->timeout_ms = req->timeout_ms;
    uv_timer_init(c->loop, &u->idle);
    u->idle.data = u;
    c->open_handles++;
    c->active++;
    lx_list_init(&u->pend);
    lx_list_prepend(&c->all, &u->link);

    u->easy = c->npool > 0 ? c->pool[--c->npool] : curl_easy_init();
    if (!u->easy) {
        fail_later(u, LX_UP_OTHER, "curl_easy_init failed");
        return &u->base;
    }
    if (!easy_setup(u, req)) {
        fail_later(u, LX_UP_OTHER, "could not set up the request");
        return &u->base;
    }
    idle_arm(u);
    if (c->in_curl > 0) {
        u->need_add = true;
        enqueue(u);
        return &u->base;
    }
    CURLMcode rc = curl_multi_add_handle(c->multi, u->easy);
    if (rc != CURLM_OK) {
        fail_later(u, LX_UP_OTHER, curl_multi_strerror(rc));
        return &u->base;
    }
    u->added = true;
    return &u->base;
}

void lx_curl_pause(lx_upstream *up)
{
    curl_up *u = (curl_up *)up;
    if (u->finished) return;
    u->paused = true;
    u->want_resume = false;
}

void lx_curl_resume(lx_upstream *up)
{
    curl_up *u = (curl_up *)up;
    if (u->finished) return;
    u->paused = false;
    if (u->curl_paused) {
        u->want_resume = true;
        enqueue(u);
    }
}

void lx_curl_cancel(lx_upstream *up)
{
    curl_up *u = (curl_up *)up;
    if (u->finished) return;
    mark_finished(u);
    if (u->c->in_curl > 0)
        enqueue(u); /* removed once curl returned */
    else
        detach(u);
}

size_t lx_curl_active(const lx_curl_client *c) { return c->active; }
