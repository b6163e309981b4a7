/*
 * The request pipeline for /v1/chat/completions, /v1/completions and /v1/embeddings, in one place:
 *
 *   1 request id (the client's X-Request-Id when sane, else a new one)
 *   2 read the body once: model, stream, max_tokens, x_priority / x_user_id / x_timeout (or headers)
 *   3 route: model name → the backend that lists it (else 404 model_not_found naming what is served)
 *   4 rewrite: drop x_*, set the model if absent, ask for usage on every stream
 *   5 forward through the pooled upstream client
 *   6 relay: SSE chunk by chunk as it arrives (usage-only chunk removed if the client did not ask),
 *     or the whole answer (vLLM's flat errors normalised to the OpenAI envelope)
 *   7 account: one access-log line with tokens, latency and Lexora's own overhead
 *
 * A proxy_req lives from lx_proxy_handle until its answer is complete or the client leaves; it holds
 * a reference to the config snapshot it started with. Once an SSE answer has begun, nothing can be
 * retried: a failure ends the stream with an error event and [DONE].
 * x-lexora-overhead-ms = time since the request was complete − time the upstream request was
 * outstanding; it is what the gateway itself cost the client.
 * Loop thread only.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "api/body.h"
#include "api/errors.h"
#include "api/routes.h"
#include "api/sse.h"
#include "utils/buf.h"
#include "utils/id.h"
#include "utils/log.h"

#define MAX_SSE_EVENT (1 << 20)

static const char *const endpoint_paths[] = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"};

typedef struct {
    lx_gateway *gw;
    lx_config *cfg;
    lx_http_req *req;
    lx_endpoint ep;
    const lx_backend_conf *backend;
    char request_id[LX_REQUEST_ID_MAX];
    char user[128];
    char model[256];
    char url[1024];
    char hdr_request_id[LX_REQUEST_ID_MAX + 16];
    const char *curl_headers[3];
    lx_body_fields f;
    lx_buf up_req_body; /* the rewritten body, when the original could not be sent as it is */
    lx_upstream *up;
    int up_status;
    char up_content_type[128];
    bool relaying; /* an SSE answer has begun */
    lx_buf up_body;
    lx_sse sse;
    lx_usage usage;
    uint64_t up_start_ns, up_wait_ns, first_byte_ns;
    const char *priority;
    lx_err err; /* for the access log when the answer is one of ours */
    bool has_err;
    int status;
} proxy_req;

/* ---------- finishing ---------- */

static double ms_between(uint64_t a, uint64_t b) { return b > a ? (double)(b - a) / 1e6 : 0.0; }

static double overhead_ms(const proxy_req *p, uint64_t now)
{
    double total = ms_between(lx_http_req_ready_ns(p->req), now);
    double waited = (double)p->up_wait_ns / 1e6;
    return total > waited ? total - waited : 0.0;
}

static void access_log(const proxy_req *p, int status)
{
    uint64_t now = lx_now_ns();
    lx_access_rec rec = {
        .request_id = p->request_id,
        .user = p->user,
        .method = "POST",
        .path = endpoint_paths[p->ep],
        .model = p->model,
        .backend = p->backend ? p->backend->name : NULL,
        .status = status,
        .error_code = p->has_err ? lx_err_get(p->err)->code : NULL,
        .priority = p->priority,
        .latency_ms = ms_between(lx_http_req_start_ns(p->req), now),
        .overhead_ms = overhead_ms(p, now),
        .ttft_ms = p->first_byte_ns ? ms_between(lx_http_req_ready_ns(p->req), p->first_byte_ns) : -1,
        .prompt_tokens = p->usage.prompt_tokens,
        .completion_tokens = p->usage.completion_tokens,
        .stream = p->f.stream,
    };
    lx_log_access(&rec);
}

static void proxy_free(proxy_req *p)
{
    lx_buf_free(&p->up_req_body);
    lx_buf_free(&p->up_body);
    lx_sse_free(&p->sse);
    lx_config_unref(p->cfg);
    free(p);
}

/*
 * Just before the handler's last call on the request: log and let go of it. The last call may start
 * the connection's next (pipelined) request at once, so p must not be reachable from req by then.
 */
static void detach(proxy_req *p, int status)
{
    access_log(p, status);
    lx_http_req_set_data(p->req, NULL);
}

static void fail(proxy_req *p, lx_err e, const char *message, const char *param)
{
    p->err = e;
    p->has_err = true;
    detach(p, lx_err_get(e)->status);
    lx_respond_error(p->req, e, message, param, p->request_id);
    proxy_free(p);
}

/* ---------- answering ---------- */

typedef struct {
    lx_http_header h[6];
    size_t n;
    char overhead[32];
} answer_headers;

static void answer_headers_init(answer_headers *a, const proxy_req *p, const char *content_type)
{
    snprintf(a->overhead, sizeof a->overhead, "%.3f", overhead_ms(p, lx_now_ns()));
    a->n = 0;
    a->h[a->n++] = (lx_http_header){"Content-Type", content_type};
    a->h[a->n++] = (lx_http_header){"X-Request-Id", p->request_id};
    a->h[a->n++] = (lx_http_header){"X-Lexora-Overhead-Ms", a->overhead};
    if (p->backend) a->h[a->n++] = (lx_http_header){"X-Lexora-Backend", p->backend->name};
}

static void respond_buffered(proxy_req *p)
{
    const char *body = p->up_body.p ? p->up_body.p : "";
    size_t len = p->up_body.len;
    lx_buf normalized;
    lx_buf_init(&normalized, 0);
    if (p->up_status >= 400 && lx_err_normalize_upstream(body, len, p->up_status, &normalized) == 1) {
        body = normalized.p;
        len = normalized.len;
    }
    lx_slice usage;
    if (p->up_status < 300 && lx_json_find_member(body, len, "usage", &usage))
        lx_usage_parse(usage.p, usage.len, &p->usage);
    const char *ct = p->up_content_type[0] ? p->up_content_type : "application/json";
    if (body == normalized.p) ct = "application/json";
    answer_headers a;
    answer_headers_init(&a, p, ct);
    detach(p, p->up_status);
    lx_http_respond(p->req, p->up_status, a.h, a.n, body, len);
    lx_buf_free(&normalized);
    proxy_free(p);
}

static void relay_emit(void *ud, const char *data, size_t len)
{
    proxy_req *p = ud;
    size_t pending = lx_http_stream_write(p->req, data, len);
    if (pending > LX_HTTP_WRITE_HIGH_WATER && p->up) lx_upstream_pause(p->up);
}

/* A failure after the stream began: an SSE error event, then [DONE]; the status stays 200. */
static void end_stream_with_error(proxy_req *p, lx_err e, const char *message)
{
    p->err = e;
    p->has_err = true;
    lx_buf ev;
    lx_buf_init(&ev, 0);
    lx_buf_append_str(&ev, "data: ");
    lx_err_body(&ev, e, message, NULL);
    lx_buf_append_str(&ev, "\n\ndata: [DONE]\n\n");
    lx_http_stream_write(p->req, ev.p, ev.len);
    lx_buf_free(&ev);
}

/* ---------- upstream callbacks ---------- */

static bool wants_sse(const proxy_req *p, const lx_up_head *h)
{
    return p->f.stream && h->status == 200 && h->content_type.len >= 17 &&
           strncasecmp(h->content_type.p, "text/event-stream", 17) == 0;
}

static void on_up_headers(lx_upstream *u, const lx_up_head *h, void *ud)
{
    (void)u;
    proxy_req *p = ud;
    p->up_status = h->status;
    size_t n = LX_MIN(h->content_type.len, sizeof p->up_content_type - 1);
    memcpy(p->up_content_type, h->content_type.p, n);
    p->up_content_type[n] = '\0';
    if (!wants_sse(p, h)) return;
    p->relaying = true;
    p->up_wait_ns = lx_now_ns() - p->up_start_ns;
    answer_headers a;
    answer_headers_init(&a, p, "text/event-stream; charset=utf-8");
    a.h[a.n++] = (lx_http_header){"Cache-Control", "no-cache"};
    a.h[a.n++] = (lx_http_header){"X-Accel-Buffering", "no"};
    lx_http_stream_begin(p->req, 200, a.h, a.n);
    lx_sse_init(&p->sse, !p->f.include_usage, MAX_SSE_EVENT);
}

static bool on_up_data(lx_upstream *u, const char *data, size_t len, void *ud)
{
    (void)u;
    proxy_req *p = ud;
    if (p->first_byte_ns == 0) p->first_byte_ns = lx_now_ns();
    if (p->relaying) return lx_sse_feed(&p->sse, data, len, relay_emit, p) == 0;
    return lx_buf_append(&p->up_body, data, len) == 0;
}

static lx_err upstream_error(lx_up_result r, bool answered)
{
    switch (r) {
    case LX_UP_CONNECT: return LX_ERR_UPSTREAM_UNAVAILABLE;
    case LX_UP_TIMEOUT: return LX_ERR_UPSTREAM_TIMEOUT;
    case LX_UP_RESET: return answered ? LX_ERR_UPSTREAM_BAD_RESPONSE : LX_ERR_UPSTREAM_UNAVAILABLE;
    default: return LX_ERR_UPSTREAM_BAD_RESPONSE;
    }
}

static void upstream_failure_message(const proxy_req *p, lx_up_result r, const char *detail, char *out, size_t n)
{
    const char *name = p->backend->name;
    switch (r) {
    case LX_UP_TIMEOUT:
        snprintf(out, n, "backend %s did not answer within %g s", name, p->backend->timeout_s);
        break;
    case LX_UP_CALLER:
        snprintf(out, n, "backend %s sent an answer larger than the gateway accepts", name);
        break;
    default:
        snprintf(out, n, "backend %s failed: %s (%s)", name, lx_up_result_name(r), detail);
    }
}

static void finish_stream(proxy_req *p, lx_up_result r, const char *detail)
{
    lx_sse_finish(&p->sse, relay_emit, p);
    p->usage = p->sse.usage;
    if (r != LX_UP_OK || !p->sse.saw_done) {
        char msg[256];
        if (r == LX_UP_OK) snprintf(msg, sizeof msg, "backend %s ended the stream without [DONE]", p->backend->name);
        else upstream_failure_message(p, r, detail, msg, sizeof msg);
        LX_WARN(p->request_id, "%s", msg);
        end_stream_with_error(p, r == LX_UP_OK ? LX_ERR_UPSTREAM_BAD_RESPONSE : upstream_error(r, true), msg);
    } else if (p->sse.saw_error) {
        p->has_err = true;
        p->err = LX_ERR_UPSTREAM_BAD_RESPONSE;
    }
    detach(p, 200);
    lx_http_stream_end(p->req);
    proxy_free(p);
}

static void on_up_done(lx_upstream *u, lx_up_result r, const char *detail, void *ud)
{
    (void)u;
    proxy_req *p = ud;
    p->up = NULL;
    p->up_wait_ns = lx_now_ns() - p->up_start_ns;
    if (p->relaying) {
        finish_stream(p, r, detail);
        return;
    }
    if (r == LX_UP_OK) {
        respond_buffered(p);
        return;
    }
    char msg[256];
    upstream_failure_message(p, r, detail, msg, sizeof msg);
    LX_WARN(p->request_id, "%s", msg);
    fail(p, upstream_error(r, p->up_status != 0), msg, NULL);
}

static const lx_upstream_cbs upstream_cbs = {on_up_headers, on_up_data, on_up_done};

/* ---------- reading the request ---------- */

static void copy_slice(char *dst, size_t cap, lx_slice s)
{
    size_t n = LX_MIN(s.len, cap - 1);
    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static void set_request_id(proxy_req *p)
{
    lx_slice id;
    if (lx_http_req_header(p->req, "x-request-id", &id) && lx_request_id_acceptable(id))
        copy_slice(p->request_id, sizeof p->request_id, id);
    else lx_request_id_new(p->request_id);
}

/* x_user_id from the body, else the X-User-Id header, else "anonymous". */
static void set_user(proxy_req *p)
{
    lx_slice v = p->f.x_user_id;
    if (!p->f.has_x_user_id && !lx_http_req_header(p->req, "x-user-id", &v)) v = LX_SLICE_LIT("anonymous");
    copy_slice(p->user, sizeof p->user, v);
}

/* x_priority from the body, else the X-Priority header, else normal. False for an unknown name. */
static bool set_priority(proxy_req *p)
{
    static const char *const names[] = {"high", "normal", "low"};
    lx_slice v = p->f.x_priority;
    p->priority = "normal";
    if (!p->f.has_x_priority && !lx_http_req_header(p->req, "x-priority", &v)) return true;
    for (size_t i = 0; i < LX_ARRAY_LEN(names); i++)
        if (lx_slice_eq(v, names[i])) {
            p->priority = names[i];
            return true;
        }
    return false;
}

static void models_served(const lx_config *c, lx_buf *out)
{
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *b = &c->backends[i];
        if (!b->enabled) continue;
        for (size_t m = 0; m < b->n_models; m++)
            lx_buf_printf(out, "%s%s", out->len ? ", " : "", b->models[m].name);
    }
}

static bool route(proxy_req *p)
{
    lx_slice m = p->f.has_model ? p->f.model : lx_slice_of(p->cfg->default_model);
    copy_slice(p->model, sizeof p->model, m);
    p->backend = lx_config_backend_for(p->cfg, m.p, m.len);
    if (p->backend) return true;
    lx_buf served, msg;
    lx_buf_init(&served, 0);
    lx_buf_init(&msg, 0);
    models_served(p->cfg, &served);
    lx_buf_printf(&msg, "The model `%s` does not exist. Models served: %s", p->model, served.p ? served.p : "none");
    fail(p, LX_ERR_MODEL_NOT_FOUND, msg.p, "model");
    lx_buf_free(&served);
    lx_buf_free(&msg);
    return false;
}

/* The body to send: the client's own bytes when nothing needs changing, else one rewritten copy. */
static lx_slice upstream_body(proxy_req *p)
{
    lx_slice body = lx_http_req_body(p->req);
    lx_body_rewrite_opts o = {
        .set_model = p->f.has_model ? NULL : p->cfg->default_model,
        .force_include_usage = p->f.stream && p->ep != LX_EP_EMBEDDINGS,
        .extra = NULL,
    };
    if (lx_body_rewrite_is_noop(&p->f, &o)) return body;
    lx_buf_init(&p->up_req_body, 0);
    lx_body_rewrite(body.p, body.len, &p->f, &o, &p->up_req_body);
    return (lx_slice){p->up_req_body.p, p->up_req_body.len};
}

static void forward(proxy_req *p)
{
    snprintf(p->url, sizeof p->url, "%s%s", p->backend->url, endpoint_paths[p->ep]);
    snprintf(p->hdr_request_id, sizeof p->hdr_request_id, "X-Request-Id: %s", p->request_id);
    p->curl_headers[0] = "Content-Type: application/json";
    p->curl_headers[1] = p->hdr_request_id;
    p->curl_headers[2] = NULL;
    lx_slice body = upstream_body(p);
    lx_upstream_req ur = {
        .method = "POST",
        .url = p->url,
        .headers = p->curl_headers,
        .body = body.p,
        .body_len = body.len,
        .timeout_ms = (uint64_t)(p->backend->timeout_s * 1000.0),
        .small_buffer = p->f.stream,
    };
    lx_buf_init(&p->up_body, p->cfg->server.max_response_bytes);
    p->up_start_ns = lx_now_ns();
    p->up = lx_upstream_start(p->gw->client, &ur, &upstream_cbs, p);
}

void lx_proxy_handle(lx_gateway *gw, lx_http_req *req, lx_endpoint ep)
{
    proxy_req *p = lx_xcalloc(1, sizeof *p);
    p->gw = gw;
    p->cfg = lx_config_ref(gw->config);
    p->req = req;
    p->ep = ep;
    p->usage = (lx_usage){-1, -1};
    lx_http_req_set_data(req, p);
    set_request_id(p);
    lx_slice body = lx_http_req_body(req);
    lx_body_error berr;
    if (lx_body_scan(body.p, body.len, &p->f, &berr) != 0) {
        copy_slice(p->user, sizeof p->user, LX_SLICE_LIT("-"));
        fail(p, berr.err, berr.message, berr.param);
        return;
    }
    set_user(p);
    if (!set_priority(p)) {
        fail(p, LX_ERR_INVALID_FIELD, "x_priority must be one of: high, normal, low", "x_priority");
        return;
    }
    if (!route(p)) return;
    forward(p);
}

void lx_proxy_abort(lx_http_req *req)
{
    proxy_req *p = lx_http_req_data(req);
    if (p == NULL) return;
    if (p->up) lx_upstream_cancel(p->up);
    p->up = NULL;
    LX_INFO(p->request_id, "client went away; upstream request cancelled");
    if (p->relaying) p->usage = p->sse.usage;
    access_log(p, 499);
    proxy_free(p);
}

void lx_proxy_drain(lx_http_req *req)
{
    proxy_req *p = lx_http_req_data(req);
    if (p && p->up) lx_upstream_resume(p->up);
}
