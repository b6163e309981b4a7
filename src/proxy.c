/*
 * The request pipeline for /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/messages, in one place:
 *
 *   1 request id (the client's X-Request-Id when sane, else a new one)
 *   2 read the body once: model, stream, max_tokens, x_priority / x_user_id / x_timeout (or headers);
 *     a chat completion's messages must be an array
 *   2b who: lx_auth_identify (auth on: the bearer key's user, else 401 invalid_api_key; auth off: x_user_id,
 *     X-User-Id, else "anonymous")
 *   3 route (routing/router.h): the name must be a model served now or an alias (else 404 model_not_found
 *     naming what is served); routing.auto.name ("auto") is first replaced by the route of the class the
 *     analyzer gives the prompt (routing/analyzer.h; 400 for an x_route naming no class), and the answer
 *     carries X-Lexora-Route and X-Lexora-Route-Reason
 *   3a experiments (routing/experiment.h): a request for an experiment's model takes a variant (sticky by user,
 *     or forced by x_variant / X-Lexora-Variant: 400 for one the experiment does not have), which becomes the
 *     name routed; the answer carries X-Lexora-Experiment and X-Lexora-Variant
 *   3b rate limits (limits/rate_limiter.h): reserve 1 request and the token estimate; over a limit →
 *     429 (reject mode) or held until it fits (wait mode, within the same deadline as the queue)
 *   4 admission (queue/admission.h): lx_router_pick resolves the name to a model (an alias's first model
 *     with a routable backend) and chooses a backend (routable, lowest priority, then affinity or the
 *     balancing strategy; none → 503 no_healthy_backend with Retry-After); sent on at once if it has a free
 *     slot and nobody waits for the model, else wait in the model's line (priority, per-user turns, aging)
 *     until a backend serving it takes it, or answered 504 queue_timeout / 503 queue_full (Retry-After) /
 *     503 shutting_down. The backend's entry is read from the current config at dispatch (bcfg).
 *   5 the backend's kind (backends/kind.h) builds the upstream request — for the OpenAI-compatible kinds the
 *     client's body spliced: x_* dropped, the model set to the backend's name for it (upstream_name), usage
 *     asked for on every stream, vLLM's
 *     "priority" with forward_priority — and it goes through the pooled upstream client; the slot is given
 *     back when the upstream request ends, however it ends
 *   5b retry (backends/outcome.h says which outcomes, queue/retry.h how long to wait): a retryable failure
 *     before any byte reached the client gives the slot
 *     back, records its verdict on the backend (the circuit breaker), waits the backoff on a timer and goes
 *     back to 4 avoiding that backend — while tries remain and the wait ends before the deadline
 *   5c fallback (routing.fallbacks): when no backend of the name can take the request (4 finds none, or the
 *     ones it waited for went down), when its tries are used up on retryable failures before any byte
 *     reached the client, or after routing.fallback_after_queue_seconds in the line, the request goes back
 *     to 4 for the name's fallback (its first target with a routable backend), with its tries counted
 *     afresh; never once an answer has begun. x_fallback: false, X-Lexora-Fallback: off and
 *     rate_limits.users.USER.fallback: false refuse it. The answer carries X-Lexora-Fallback: <the name>
 *   6 relay, through the kind's filters: SSE chunk by chunk as it arrives (a translating kind's events
 *     translated one by one; usage-only chunk removed if the client did not ask), or the whole answer
 *     (errors normalised to the OpenAI envelope)
 *   7 account: one access-log line with tokens, latency and Lexora's own overhead; the rate limiter's
 *     reservation is reconciled with the real usage (sent to a backend) or refunded (never sent), once,
 *     in rate_end, before the client has the end of its answer
 *
 * The Anthropic front (/v1/messages, api/messages.h): at intake the Messages request is translated to a chat
 * completion body, which every step above reads (p->body; x-api-key counts as the bearer key); the usage is read
 * from the OpenAI answer or stream as always, and only what the client receives is translated back (the whole
 * answer, each relayed event, every error of ours or the backend's). /v1/messages/count_tokens stops after 3
 * with the token estimate. A try on a backend whose kind speaks the Messages API itself (messages_native) is
 * a pass-through: the kind sends the client's request as it came, and its answer goes back as it is, read
 * for usage and its end by api/messages.h's pass-through readers (p->native, decided per try).
 *
 * A proxy_req lives from lx_proxy_handle until its answer is complete or the client leaves; it holds
 * a reference to the config snapshot it started with. Once an SSE answer has begun, nothing can be
 * retried: a failure ends the stream with an error event and [DONE].
 * x-lexora-overhead-ms = time since the request was complete − time waiting in the queue (and, in rate-limit
 * wait mode, for its limit) − time upstream requests were outstanding − backoff waits; it is what the
 * gateway itself cost the client.
 * One deadline: x_timeout / X-Timeout / queue.default_timeout from when the request was complete bounds
 * the wait for the rate limit, the waits in the queue and the backoffs together.
 * Loop thread only.
 */
#include "proxy.h"

#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "api/body.h"
#include "api/errors.h"
#include "api/messages.h"
#include "api/ratelimit.h"
#include "api/routes.h"
#include "api/sse.h"
#include "backends/kind.h"
#include "backends/loader.h"
#include "queue/admission.h"
#include "routing/analyzer.h"
#include "routing/experiment.h"
#include "routing/router.h"
#include "limits/auth.h"
#include "limits/rate_limiter.h"
#include "queue/retry.h"
#include "observe/stats.h"
#include "limits/tokens.h"
#include "limits/usage_today.h"
#include "utils/buf.h"
#include "utils/id.h"
#include "utils/list.h"
#include "utils/log.h"
#include "utils/map.h"

#define MAX_SSE_EVENT  (1 << 20)
#define LX_API_KEY_MAX 512         /* the longest x-api-key read */
#define SPARE_MAX      256         /* finished requests' state kept for reuse, per gateway */
#define SPARE_BODY_MAX (16 * 1024) /* an answer buffer larger than this is not kept (at most 4 MB kept) */

#ifdef __SANITIZE_ADDRESS__ /* a kept request state is out of bounds until reused, as if freed */
#include <sanitizer/asan_interface.h>
#define SPARE_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define SPARE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SPARE_POISON(p, n)   ((void)(p), (void)(n))
#define SPARE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct proxy_req {
    /* Kept while the struct waits on the gateway's free list; spare_get clears what follows them. */
    lx_list spare_link; /* on gw->spare while unused */
    lx_buf url;         /* this attempt's: the backend's url and the kind's path */
    lx_buf up_body;     /* a buffered answer */
    lx_gateway *gw;
    lx_config *cfg;
    lx_http_req *req;
    lx_endpoint ep;
    const lx_backend_conf *backend; /* this attempt's, from bcfg */
    lx_config *bcfg;                /* the snapshot backend is from: the current one at dispatch */
    lx_backend *attempt_backend;    /* this attempt's backend in the registry, until its verdict is given */
    lx_backend *last_backend;       /* the latest attempt's backend in the registry (NULL: none yet) */
    lx_model *model_used;           /* what the name resolved to (routing/router.h); NULL before */
    char request_id[LX_REQUEST_ID_MAX];
    char user[128];
    char model[256];           /* the name the client asked for (or default_model), for the log */
    lx_slice model_name;       /* what routing looks up: the body's model, or default_model */
    bool is_alias;             /* the name the client asked for is an alias */
    bool no_fallback;          /* the client or its user's config refuses routing.fallbacks */
    double load_wait_ms;       /* waited for its model to load (backends/loader.h); 0: it did not */
    char experiment[128];      /* the experiment it takes part in ("": none) */
    char variant[256];         /* and its variant: the name routed */
    const char *fallback_from; /* the name it fell back from (p->cfg's routing.fallbacks entry); NULL: none */
    size_t fallback_tried;     /* the entry's targets tried so far */
    int attempt0;              /* attempts made before the latest fallback (its tries are counted afresh) */
    lx_prefix_key prefix;      /* routing.affinity prefix: the prompt's blocks (n 0 otherwise) */
    bool auto_routed;          /* the client asked for routing.auto.name: route is the analyzer's verdict */
    lx_auto_verdict route;
    char route_header[LX_AUTO_REASON_MAX * 2]; /* route.reason fit for a header (lx_auto_header_text) */
    char hdr_request_id[LX_REQUEST_ID_MAX + 16];
    lx_body_fields f;
    const lx_kind *kind;     /* this attempt's backend's kind */
    lx_kind_ctx kctx;        /* what the kind knows of this attempt */
    lx_kind_request kreq;    /* this attempt's upstream request, as the kind built it */
    lx_kind_stream *kstream; /* a translating kind's stream (kind->stream_event); NULL for the others */
    lx_upstream *up;
    int up_status;
    char up_content_type[128];
    bool relaying;     /* an SSE answer has begun */
    bool relay_failed; /* a translated event could not be relayed (too large): the transfer ends */
    lx_sse sse;
    lx_usage usage;
    uint64_t up_start_ns, up_wait_ns, first_byte_ns;
    uint64_t answered_ns; /* when a buffered answer's headers were made: its overhead, its log and statistics */
    const char *priority;
    lx_priority prio;
    double queue_timeout_s;  /* x_timeout, X-Timeout, else queue.default_timeout */
    lx_admit_ticket ticket;  /* its place in the queue, then its backend slot (this attempt's) */
    uint64_t deadline_ns;    /* ready + queue_timeout_s: no wait (rate limit, queue, retry) goes past it */
    int attempt;             /* 1 for the first try */
    bool trial;              /* this attempt is its backend's half-open trial */
    double up_retry_after_s; /* the backend's Retry-After on this attempt; -1 if none */
    char up_retry_after[24]; /* as it came: passed on when the answer goes to the client */
    uv_timer_t *timer; /* the wait before the next attempt, or for the fallback in the line; closed by proxy_free */
    uint64_t backoff_start_ns;
    uint64_t earlier_wait_ns;  /* earlier attempts: queue, upstream and backoff time (for the overhead) */
    uint64_t earlier_queue_ns; /* earlier attempts: queue time */
    lx_rate_req rate;          /* its rate-limit reservation (limits/rate_limiter.h) */
    bool rate_checked;         /* lx_rate_check was called: answers carry the x-ratelimit-* headers */
    bool sent;                 /* handed to a backend: the end reconciles (finish) instead of refunding */
    bool rate_ended;           /* rate_end ran */
    lx_err err;                /* for the access log when the answer is one of ours */
    bool has_err;
    int status;
    lx_slice body; /* what the pipeline reads and kinds send: the client's body, or its OpenAI translation */
    /* The Anthropic front (api/messages.h): the client spoke the Messages API; its request as it came (for a
     * backend that speaks it too), its OpenAI translation (body points into it), and its stream's state. */
    bool anthropic;
    bool count_only; /* /v1/messages/count_tokens: not a request to a model (no statistics, no ledger row) */
    lx_messages_front front;
    lx_buf translated;
    lx_messages_stream *astream;
    lx_buf aout; /* one relay's Anthropic events */
    bool native; /* this attempt's backend speaks the Messages API: its answer goes back as it is */
    lx_messages_native *native_stream; /* then its stream, read for usage and its end */
} proxy_req;

#define REQ_RESET_FROM offsetof(proxy_req, gw) /* what a reused request state starts without */

/* ---------- finishing ---------- */

static double ms_between(uint64_t a, uint64_t b) { return b > a ? (double)(b - a) / 1e6 : 0.0; }

static double overhead_ms(const proxy_req *p, uint64_t now)
{
    double total = ms_between(lx_http_req_ready_ns(p->req), now);
    double waited = (double)(p->earlier_wait_ns + p->up_wait_ns + p->ticket.waited_ns) / 1e6;
    if (p->rate_checked && p->cfg->rate_limits.mode == LX_RATE_WAIT) waited += (double)p->rate.result.waited_ms;
    return total > waited ? total - waited : 0.0;
}

static double queue_wait_ms(const proxy_req *p) { return (double)(p->earlier_queue_ns + p->ticket.waited_ns) / 1e6; }

static void access_log(const proxy_req *p, int status)
{
    uint64_t now = p->answered_ns ? p->answered_ns : lx_now_ns();
    lx_access_rec rec = {
        .request_id = p->request_id,
        .user = p->user,
        .method = "POST",
        .path = p->count_only  ? "/v1/messages/count_tokens"
                : p->anthropic ? "/v1/messages"
                               : lx_endpoint_path(p->ep),
        .model = p->model,
        .model_used = p->model_used ? lx_model_name(p->model_used) : NULL,
        .alias = p->is_alias && !p->auto_routed,
        .route = p->auto_routed ? p->route.class_name : NULL,
        .route_reason = p->auto_routed ? p->route.reason : NULL,
        .fallback_from = p->fallback_from,
        .load_wait_ms = p->load_wait_ms,
        .experiment = p->experiment[0] ? p->experiment : NULL,
        .variant = p->experiment[0] ? p->variant : NULL,
        .backend = p->backend ? p->backend->name : NULL,
        .status = status,
        .error_code = p->has_err ? lx_err_get(p->err)->code : NULL,
        .priority = p->priority,
        .latency_ms = ms_between(lx_http_req_start_ns(p->req), now),
        .overhead_ms = overhead_ms(p, now),
        .queue_wait_ms = queue_wait_ms(p),
        .ttft_ms = p->first_byte_ns ? ms_between(lx_http_req_ready_ns(p->req), p->first_byte_ns) : -1,
        .prompt_tokens = p->usage.prompt_tokens,
        .completion_tokens = p->usage.completion_tokens,
        .stream = p->f.stream,
        .attempts = p->attempt,
        .end_ns = now,
    };
    lx_log_access(&rec);
    if (!p->count_only) lx_stats_record(p->gw->stats, &rec);
    if (!p->count_only) lx_usage_today_record(p->gw->usage_today, &rec);
    if (p->experiment[0]) lx_experiments_record(p->gw->experiments, &rec);
}

/* Gives back its place in the queue or its backend slot (the next waiting request is dispatched). */
static void leave_admission(proxy_req *p)
{
    if (p->gw->admission) lx_admission_leave(p->gw->admission, &p->ticket);
}

/*
 * The rate limiter's end of the request, exactly once: sent to a backend → the reservation becomes the
 * real usage (prompt + completion, or -1 when no usage came back: then 1 request + the prompt estimate);
 * never sent (refused, queue full or timed out, no backend, client gone before dispatch) → refunded.
 * Either also cancels a check still in flight in Redis or waiting in wait mode.
 */
static void rate_end(proxy_req *p)
{
    if (p->rate_ended) return;
    p->rate_ended = true;
    if (!p->sent) {
        lx_rate_cancel(&p->rate);
        return;
    }
    long used = -1;
    if (p->usage.prompt_tokens >= 0 && p->usage.completion_tokens >= 0)
        used = p->usage.prompt_tokens + p->usage.completion_tokens;
    else if (p->usage.prompt_tokens >= 0 && p->ep == LX_EP_EMBEDDINGS)
        used = p->usage.prompt_tokens;
    lx_rate_finish(&p->rate, used);
}

/* The verdict of this attempt on its backend (the circuit breaker), once per attempt. */
static void end_attempt(proxy_req *p, lx_attempt_verdict v, const char *why)
{
    if (p->attempt_backend) lx_backend_attempt_end(p->attempt_backend, p->trial, v, why);
    p->attempt_backend = NULL;
    p->trial = false;
}

static void free_timer(uv_handle_t *h) { free(h); }

/* ---------- request state: kept for the next request rather than freed (no allocation per request) ---------- */

static void spare_free(proxy_req *p)
{
    lx_buf_free(&p->url);
    lx_buf_free(&p->up_body);
    free(p);
}

/* Keeps p, with its URL and answer buffers' memory (the answer's when small), for lx_proxy_handle. */
static void spare_put(proxy_req *p)
{
    lx_gateway *gw = p->gw;
    if (gw->n_spare >= SPARE_MAX || gw->server == NULL) { /* full, or the gateway stopped */
        spare_free(p);
        return;
    }
    if (p->up_body.cap > SPARE_BODY_MAX) lx_buf_free(&p->up_body);
    lx_list_prepend(&gw->spare, &p->spare_link);
    gw->n_spare++;
    if (p->url.p) SPARE_POISON(p->url.p, p->url.cap);
    if (p->up_body.p) SPARE_POISON(p->up_body.p, p->up_body.cap);
    SPARE_POISON((char *)p + REQ_RESET_FROM, sizeof *p - REQ_RESET_FROM);
}

/* The first kept request state taken off the list, unpoisoned, or NULL. */
static proxy_req *spare_take(lx_gateway *gw)
{
    lx_list *n = lx_list_first(&gw->spare);
    if (n == NULL) return NULL;
    lx_list_remove(n);
    gw->n_spare--;
    proxy_req *p = LX_CONTAINER_OF(n, proxy_req, spare_link);
    SPARE_UNPOISON((char *)p + REQ_RESET_FROM, sizeof *p - REQ_RESET_FROM);
    if (p->url.p) SPARE_UNPOISON(p->url.p, p->url.cap);
    if (p->up_body.p) SPARE_UNPOISON(p->up_body.p, p->up_body.cap);
    return p;
}

/* A cleared request state; its URL and answer buffers are empty but may keep their memory. */
static proxy_req *spare_get(lx_gateway *gw)
{
    proxy_req *p = spare_take(gw);
    if (p == NULL) {
        p = lx_xcalloc(1, sizeof *p);
        lx_list_init(&p->spare_link);
        return p;
    }
    memset((char *)p + REQ_RESET_FROM, 0, sizeof *p - REQ_RESET_FROM);
    lx_buf_reset(&p->url);
    lx_buf_reset(&p->up_body);
    return p;
}

void lx_proxy_free_spares(lx_gateway *gw)
{
    proxy_req *p;
    while ((p = spare_take(gw)) != NULL)
        spare_free(p);
}

static void proxy_free(proxy_req *p)
{
    rate_end(p);
    leave_admission(p);
    end_attempt(p, LX_ATTEMPT_NONE, NULL); /* the client left first: it says nothing about the backend */
    if (p->timer) uv_close((uv_handle_t *)p->timer, free_timer);
    lx_kind_request_reset(&p->kreq);
    if (p->kstream) lx_kind_stream_free(p->kstream);
    free(p->kstream);
    lx_sse_free(&p->sse); /* url and up_body: kept with p (spare_put) */
    if (p->astream) lx_messages_stream_free(p->astream);
    free(p->astream);
    if (p->native_stream) lx_messages_native_free(p->native_stream);
    free(p->native_stream);
    lx_buf_free(&p->translated);
    lx_buf_free(&p->aout);
    lx_config_unref(p->bcfg);
    lx_config_unref(p->cfg);
    spare_put(p);
}

/*
 * Just before the handler's last call on the request: log and let go of it. The last call may start
 * the connection's next (pipelined) request at once, so p must not be reachable from req by then.
 */
static void detach(proxy_req *p, int status)
{
    rate_end(p); /* before the answer ends: the client's next request sees the reconciled usage */
    access_log(p, status);
    lx_http_req_set_data(p->req, NULL);
}

/* An error of ours: the envelope, X-Request-Id, the x-ratelimit-* headers once checked, and extra. */
static void fail_h(proxy_req *p, lx_err e, const char *message, const char *param, const lx_http_header *extra,
                   size_t n_extra)
{
    p->err = e;
    p->has_err = true;
    lx_buf body;
    lx_buf_init(&body, 0);
    if (p->anthropic)
        lx_messages_error_body(&body, lx_err_get(e)->status, message ? message : lx_err_get(e)->code);
    else
        lx_err_body(&body, e, message, param);
    lx_http_header h[10 + LX_RATELIMIT_MAX_HEADERS];
    size_t n = 0;
    h[n++] = (lx_http_header){"Content-Type", "application/json"};
    h[n++] = (lx_http_header){"X-Request-Id", p->request_id};
    if (p->model_used) h[n++] = (lx_http_header){"X-Lexora-Model", lx_model_name(p->model_used)};
    if (p->fallback_from) h[n++] = (lx_http_header){"X-Lexora-Fallback", p->fallback_from};
    if (p->experiment[0]) {
        h[n++] = (lx_http_header){"X-Lexora-Experiment", p->experiment};
        h[n++] = (lx_http_header){"X-Lexora-Variant", p->variant};
    }
    for (size_t i = 0; i < n_extra && i < 2; i++)
        h[n++] = extra[i];
    if (p->auto_routed) {
        h[n++] = (lx_http_header){"X-Lexora-Route", p->route.class_name};
        h[n++] = (lx_http_header){"X-Lexora-Route-Reason", p->route_header};
    }
    lx_ratelimit_headers rh = {0};
    if (p->rate_checked) lx_ratelimit_headers_fill(&p->rate.result, &rh);
    for (size_t i = 0; i < rh.n; i++)
        h[n++] = (lx_http_header){rh.name[i], rh.value[i]};
    detach(p, lx_err_get(e)->status);
    lx_http_respond(p->req, lx_err_get(e)->status, h, n, body.p, body.len);
    lx_buf_free(&body);
    proxy_free(p);
}

static void fail(proxy_req *p, lx_err e, const char *message, const char *param)
{
    fail_h(p, e, message, param, NULL, 0);
}

/* ---------- answering ---------- */

typedef struct {
    lx_http_header h[15 + LX_RATELIMIT_MAX_HEADERS];
    size_t n;
    char overhead[32];
    char queue_wait[32];
    char load_wait[32];
    lx_ratelimit_headers rate;
} answer_headers;

static void answer_headers_init(answer_headers *a, const proxy_req *p, const char *content_type, uint64_t now)
{
    lx_fmt_ms(a->overhead, overhead_ms(p, now));
    lx_fmt_ms(a->queue_wait, queue_wait_ms(p));
    a->n = 0;
    a->h[a->n++] = (lx_http_header){"Content-Type", content_type};
    a->h[a->n++] = (lx_http_header){"X-Request-Id", p->request_id};
    a->h[a->n++] = (lx_http_header){"X-Lexora-Overhead-Ms", a->overhead};
    a->h[a->n++] = (lx_http_header){"X-Lexora-Queue-Wait-Ms", a->queue_wait};
    if (p->backend) a->h[a->n++] = (lx_http_header){"X-Lexora-Backend", p->backend->name};
    if (p->model_used) a->h[a->n++] = (lx_http_header){"X-Lexora-Model", lx_model_name(p->model_used)};
    if (p->fallback_from) a->h[a->n++] = (lx_http_header){"X-Lexora-Fallback", p->fallback_from};
    if (p->load_wait_ms > 0) {
        lx_fmt_ms(a->load_wait, p->load_wait_ms);
        a->h[a->n++] = (lx_http_header){"X-Lexora-Load-Wait-Ms", a->load_wait};
    }
    if (p->experiment[0]) {
        a->h[a->n++] = (lx_http_header){"X-Lexora-Experiment", p->experiment};
        a->h[a->n++] = (lx_http_header){"X-Lexora-Variant", p->variant};
    }
    if (p->auto_routed) {
        a->h[a->n++] = (lx_http_header){"X-Lexora-Route", p->route.class_name};
        a->h[a->n++] = (lx_http_header){"X-Lexora-Route-Reason", p->route_header};
    }
    a->rate.n = 0;
    if (p->rate_checked) lx_ratelimit_headers_fill(&p->rate.result, &a->rate);
    for (size_t i = 0; i < a->rate.n; i++)
        a->h[a->n++] = (lx_http_header){a->rate.name[i], a->rate.value[i]};
}

/* A 2xx answer the Anthropic front cannot translate (not a chat.completion, tool arguments that are not an
 * object): 502 api_error instead. */
static void bad_answer(proxy_req *p, lx_buf *out)
{
    char msg[200];
    snprintf(msg, sizeof msg, "backend %s answered something that is not a chat completion Lexora can translate",
             p->backend->name);
    LX_WARN(p->request_id, "%s", msg);
    p->up_status = lx_err_get(LX_ERR_UPSTREAM_BAD_RESPONSE)->status;
    p->err = LX_ERR_UPSTREAM_BAD_RESPONSE;
    p->has_err = true;
    lx_buf_reset(out);
    lx_messages_error_body(out, p->up_status, msg);
}

static void respond_buffered(proxy_req *p)
{
    const char *body = p->up_body.p ? p->up_body.p : "";
    size_t len = p->up_body.len;
    lx_buf normalized;
    lx_buf_init(&normalized, 0);
    if (p->kind->answer && p->kind->answer(&p->kctx, p->up_status, (lx_slice){body, len}, &normalized) == 1) {
        body = normalized.p ? normalized.p : "";
        len = normalized.len;
    }
    lx_slice usage;
    if (p->native && p->up_status < 300)
        lx_messages_usage(body, len, &p->usage.prompt_tokens, &p->usage.completion_tokens);
    else if (p->up_status < 300 && lx_json_find_member(body, len, "usage", &usage))
        lx_usage_parse(usage.p, usage.len, &p->usage);
    const char *ct = p->up_content_type[0] ? p->up_content_type : "application/json";
    if (normalized.len) ct = "application/json";
    lx_buf answer; /* the Anthropic front's: usage was read above from the OpenAI answer */
    lx_buf_init(&answer, 0);
    if (p->anthropic && !p->native) {
        if (p->up_status >= 300)
            lx_messages_error_of(&answer, p->up_status, body, len);
        else if (lx_messages_answer(body, len, p->request_id, p->model, &answer) != 0)
            bad_answer(p, &answer);
        body = answer.p;
        len = answer.len;
        ct = "application/json";
    }
    answer_headers a;
    p->answered_ns = lx_now_ns();
    answer_headers_init(&a, p, ct, p->answered_ns);
    if (p->up_retry_after[0]) a.h[a.n++] = (lx_http_header){"Retry-After", p->up_retry_after};
    detach(p, p->up_status);
    lx_http_respond(p->req, p->up_status, a.h, a.n, body, len);
    lx_buf_free(&normalized);
    lx_buf_free(&answer);
    proxy_free(p);
}

static void relay_emit(void *ud, const char *data, size_t len)
{
    proxy_req *p = ud;
    if (p->astream) { /* the Anthropic front: the OpenAI events (their usage read already) become its events */
        lx_buf_reset(&p->aout);
        if (lx_messages_stream_feed(p->astream, data, len, &p->aout) != 0) p->relay_failed = true;
        if (p->aout.len == 0) return;
        data = p->aout.p;
        len = p->aout.len;
    }
    size_t pending = lx_http_stream_write(p->req, data, len);
    if (pending > LX_HTTP_WRITE_HIGH_WATER && p->up) lx_upstream_pause(p->up);
}

/* A failure after the stream began: an SSE error event (and [DONE] for OpenAI clients); the status stays 200. */
static void end_stream_with_error(proxy_req *p, lx_err e, const char *message)
{
    p->err = e;
    p->has_err = true;
    lx_buf ev;
    lx_buf_init(&ev, 0);
    if (p->native_stream) { /* relayed as it came: Anthropic's error event */
        lx_buf_append_str(&ev, "event: error\ndata: ");
        lx_messages_error_body(&ev, lx_err_get(e)->status, message);
        lx_buf_append_str(&ev, "\n\n");
    } else if (p->astream) {
        lx_messages_stream_error(p->astream, lx_err_get(e)->status, message, &ev);
    } else {
        lx_buf_append_str(&ev, "data: ");
        lx_err_body(&ev, e, message, NULL);
        lx_buf_append_str(&ev, "\n\ndata: [DONE]\n\n");
    }
    lx_http_stream_write(p->req, ev.p, ev.len);
    lx_buf_free(&ev);
}

/* ---------- upstream callbacks ---------- */

/* A stream begins: the client asked for one and the backend said 200 with an event stream (for a translating
 * kind, any 200: its stream is whatever the kind reads). */
static bool wants_sse(const proxy_req *p, const lx_up_head *h)
{
    if (!p->f.stream || h->status != 200) return false;
    if (p->kind->stream_event) return true;
    return h->content_type.len >= 17 && strncasecmp(h->content_type.p, "text/event-stream", 17) == 0;
}

static void on_up_headers(lx_upstream *u, const lx_up_head *h, void *ud)
{
    (void)u;
    proxy_req *p = ud;
    p->up_status = h->status;
    uint64_t now = lx_now_ns();
    if (p->last_backend) lx_backend_note_latency(p->last_backend, (double)(now - p->up_start_ns) / 1e9);
    size_t n = LX_MIN(h->content_type.len, sizeof p->up_content_type - 1);
    memcpy(p->up_content_type, h->content_type.p, n);
    p->up_content_type[n] = '\0';
    if (h->retry_after.len > 0 && h->retry_after.len < sizeof p->up_retry_after) {
        memcpy(p->up_retry_after, h->retry_after.p, h->retry_after.len);
        p->up_retry_after[h->retry_after.len] = '\0';
        p->up_retry_after_s = lx_retry_after_s(h->retry_after, lx_wall_s());
    }
    if (!wants_sse(p, h)) return;
    p->relaying = true;
    p->up_wait_ns = now - p->up_start_ns;
    answer_headers a;
    answer_headers_init(&a, p, "text/event-stream; charset=utf-8", now);
    a.h[a.n++] = (lx_http_header){"Cache-Control", "no-cache"};
    a.h[a.n++] = (lx_http_header){"X-Accel-Buffering", "no"};
    lx_http_stream_begin(p->req, 200, a.h, a.n);
    if (p->native) { /* relayed as it comes; read for its usage and end */
        p->native_stream = lx_xmalloc(sizeof *p->native_stream);
        lx_messages_native_init(p->native_stream, MAX_SSE_EVENT);
        return;
    }
    lx_sse_init(&p->sse, !p->f.include_usage, MAX_SSE_EVENT);
    if (p->kind->stream_event) {
        p->kstream = lx_xmalloc(sizeof *p->kstream);
        lx_kind_stream_init(p->kstream, p->kind, MAX_SSE_EVENT);
    }
    if (p->anthropic) {
        lx_token_estimate est;
        lx_tokens_estimate(&p->f.tokens, &est);
        p->astream = lx_xmalloc(sizeof *p->astream);
        lx_messages_stream_init(p->astream, p->request_id, p->model, est.prompt_tokens, MAX_SSE_EVENT);
        lx_buf_init(&p->aout, 0);
        lx_messages_stream_begin(p->astream, &p->aout);
        lx_http_stream_write(p->req, p->aout.p, p->aout.len);
    }
}

/* A translating kind's OpenAI events go through the same SSE relay as a backend's own. A feed that fails
 * (an event too large) is remembered and ends the transfer at the next data. */
static void relay_translated(void *ud, const char *data, size_t len)
{
    proxy_req *p = ud;
    if (lx_sse_feed(&p->sse, data, len, relay_emit, p) != 0) p->relay_failed = true;
}

static bool relay_feed(proxy_req *p, const char *data, size_t len)
{
    if (p->native) {
        relay_emit(p, data, len);
        return lx_messages_native_feed(p->native_stream, data, len) == 0;
    }
    if (p->kind->stream_event == NULL) return lx_sse_feed(&p->sse, data, len, relay_emit, p) == 0 && !p->relay_failed;
    return lx_kind_stream_feed(p->kstream, &p->kctx, data, len, relay_translated, p) == 0 && !p->relay_failed;
}

static bool on_up_data(lx_upstream *u, const char *data, size_t len, void *ud)
{
    (void)u;
    proxy_req *p = ud;
    if (p->first_byte_ns == 0) p->first_byte_ns = lx_now_ns();
    if (p->relaying) return relay_feed(p, data, len);
    return lx_buf_append(&p->up_body, data, len) == 0;
}

/* The outcome class of this attempt's end (backends/outcome.h), as its kind reads it. */
static lx_outcome outcome_of(const proxy_req *p, lx_up_result r)
{
    return p->kind->outcome ? p->kind->outcome(r, p->up_status) : lx_outcome_of(r, p->up_status);
}

static void upstream_failure_message(const proxy_req *p, lx_up_result r, const char *detail, char *out, size_t n)
{
    const char *name = p->backend->name;
    switch (r) {
    case LX_UP_TIMEOUT: snprintf(out, n, "backend %s did not answer within %g s", name, p->backend->timeout_s); break;
    case LX_UP_CALLER: snprintf(out, n, "backend %s sent an answer larger than the gateway accepts", name); break;
    default: snprintf(out, n, "backend %s failed: %s (%s)", name, lx_up_result_name(r), detail);
    }
}

/* A stream that did not end complete: why (logged), the attempt's verdict given; the error for the client. */
static lx_err stream_broken(proxy_req *p, lx_up_result r, const char *detail, const char *missing, char *msg, size_t n)
{
    const lx_outcome_info *o = lx_outcome_get(r == LX_UP_OK ? LX_OUT_GARBLED : outcome_of(p, r));
    if (r == LX_UP_OK)
        snprintf(msg, n, "backend %s ended the stream without %s", p->backend->name, missing);
    else
        upstream_failure_message(p, r, detail, msg, n);
    LX_WARN(p->request_id, "%s", msg);
    end_attempt(p, o->verdict, msg);
    return o->err;
}

/* The end of a relayed stream. Nothing is retried now: the client has had part of the answer. A stream
 * relayed as it came (native) is complete at its message_stop, any other at its [DONE]. */
static void finish_stream(proxy_req *p, lx_up_result r, const char *detail)
{
    const lx_messages_native *n = p->native_stream;
    if (n == NULL) {
        if (p->kind->stream_event && r == LX_UP_OK &&
            lx_kind_stream_end(p->kstream, &p->kctx, relay_translated, p) != 0)
            r = LX_UP_BAD_RESPONSE;
        lx_sse_finish(&p->sse, relay_emit, p);
    }
    p->usage = n ? (lx_usage){n->prompt_tokens, n->completion_tokens} : p->sse.usage;
    if (r != LX_UP_OK || !(n ? n->saw_stop : p->sse.saw_done)) {
        char msg[256];
        lx_err e = stream_broken(p, r, detail, n ? "message_stop" : "[DONE]", msg, sizeof msg);
        end_stream_with_error(p, e, msg);
    } else if (n ? n->saw_error : p->sse.saw_error) {
        p->has_err = true;
        p->err = LX_ERR_UPSTREAM_BAD_RESPONSE;
    }
    end_attempt(p, LX_ATTEMPT_OK, NULL);
    detach(p, 200);
    lx_http_stream_end(p->req);
    proxy_free(p);
}

static bool retry_later(proxy_req *p, const char *why);
static bool fall_back(proxy_req *p, const char *why);

static void on_up_done(lx_upstream *u, lx_up_result r, const char *detail, void *ud)
{
    (void)u;
    proxy_req *p = ud;
    p->up = NULL;
    leave_admission(p); /* the slot is free before the client has its answer */
    p->up_wait_ns = lx_now_ns() - p->up_start_ns;
    if (p->relaying) {
        finish_stream(p, r, detail);
        return;
    }
    lx_outcome oc = outcome_of(p, r);
    const lx_outcome_info *o = lx_outcome_get(oc);
    if (o->verdict == LX_ATTEMPT_OK && !o->retryable && o->answered) { /* the common case: nothing to explain */
        end_attempt(p, o->verdict, NULL);
        respond_buffered(p);
        return;
    }
    char msg[256];
    if (r == LX_UP_OK)
        snprintf(msg, sizeof msg, "backend %s answered HTTP %d", p->backend->name, p->up_status);
    else
        upstream_failure_message(p, r, detail, msg, sizeof msg);
    end_attempt(p, o->verdict, msg);
    if (o->retryable && (retry_later(p, msg) || fall_back(p, msg))) return;
    if (o->answered) {
        respond_buffered(p);
        return;
    }
    if (oc == LX_OUT_CONNECT) p->sent = false; /* no connection: the backend never saw it, nothing is charged */
    LX_WARN(p->request_id, "%s", msg);
    fail(p, o->err, msg, NULL);
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
    else
        lx_request_id_new(p->request_id);
}

/*
 * Who the caller is (limits/auth.h): with auth on, the user of its bearer key (x_user_id and X-User-Id
 * cannot change it); else x_user_id from the body (when scanned), the X-User-Id header, or "anonymous".
 * False after answering 401 invalid_api_key.
 */
static bool set_user(proxy_req *p, bool scanned)
{
    lx_auth_request ar = {0};
    ar.has_authorization = lx_http_req_header(p->req, "authorization", &ar.authorization);
    char bearer[LX_API_KEY_MAX + 8]; /* the Anthropic front's x-api-key, read as a bearer key; wiped below */
    lx_slice key;
    if (!ar.has_authorization && p->anthropic && lx_http_req_header(p->req, "x-api-key", &key) &&
        key.len <= LX_API_KEY_MAX) {
        memcpy(bearer, "Bearer ", 7);
        memcpy(bearer + 7, key.p, key.len);
        ar.authorization = (lx_slice){bearer, key.len + 7};
        ar.has_authorization = true;
    }
    ar.has_header_user = lx_http_req_header(p->req, "x-user-id", &ar.header_user);
    if (scanned) {
        ar.body_user = p->f.x_user_id;
        ar.has_body_user = p->f.has_x_user_id;
    }
    lx_slice user;
    lx_auth_status st = lx_auth_identify(p->cfg, &ar, &user);
    if (ar.authorization.p == bearer) OPENSSL_cleanse(bearer, sizeof bearer);
    if (st == LX_AUTH_OK) {
        copy_slice(p->user, sizeof p->user, user);
        return true;
    }
    copy_slice(p->user, sizeof p->user, LX_SLICE_LIT("-"));
    static const lx_http_header h[] = {{"WWW-Authenticate", "Bearer"}};
    fail_h(p, LX_ERR_INVALID_API_KEY, lx_auth_message(st), NULL, h, LX_ARRAY_LEN(h));
    return false;
}

/* x_priority from the body, else the X-Priority header, else normal. False for an unknown name. */
static bool set_priority(proxy_req *p)
{
    lx_slice v = p->f.x_priority;
    p->prio = LX_PRIO_NORMAL;
    p->priority = lx_priority_name(p->prio);
    if (!p->f.has_x_priority && !lx_http_req_header(p->req, "x-priority", &v)) return true;
    int cls = lx_priority_parse(v.p, v.len);
    if (cls < 0) return false;
    p->prio = (lx_priority)cls;
    p->priority = lx_priority_name(p->prio);
    return true;
}

/* May the request go to a fallback? Not with x_fallback: false or X-Lexora-Fallback: off (or false, 0); a user's
 * rate_limits.users.USER.fallback: false is read by fallback_entry. False for a header neither on nor off. */
static bool set_fallback_policy(proxy_req *p)
{
    lx_slice v;
    p->no_fallback = p->f.no_fallback; /* the user's config is read only when a fallback is about to be used */
    if (!lx_http_req_header(p->req, "x-lexora-fallback", &v)) return true;
    static const char *const off[] = {"off", "false", "0"}, *const on[] = {"on", "true", "1"};
    for (size_t i = 0; i < LX_ARRAY_LEN(off); i++) {
        if (lx_slice_eq_nocase(v, off[i])) {
            p->no_fallback = true;
            return true;
        }
        if (lx_slice_eq_nocase(v, on[i])) return true;
    }
    return false;
}

/* x_timeout from the body, else the X-Timeout header (a positive number of seconds), else
 * queue.default_timeout: the longest wait in the queue. False for a header that is not such a number. */
static bool set_queue_timeout(proxy_req *p)
{
    lx_slice v;
    p->queue_timeout_s = p->cfg->queue.default_timeout_s;
    if (p->f.has_x_timeout) {
        p->queue_timeout_s = p->f.x_timeout;
        return true;
    }
    if (!lx_http_req_header(p->req, "x-timeout", &v)) return true;
    char text[32], *end;
    if (v.len == 0 || v.len >= sizeof text) return false;
    memcpy(text, v.p, v.len);
    text[v.len] = '\0';
    double t = strtod(text, &end);
    if (*end != '\0' || !isfinite(t) || t <= 0) return false;
    p->queue_timeout_s = t;
    return true;
}

/* routing.auto.name: the analyzer (routing/analyzer.h) gives the class, whose route becomes the name routed
 * (it lives in p->cfg). False after answering 400 for an x_route that names no class. */
static bool route_auto(proxy_req *p)
{
    if (lx_auto_decide(p->cfg, p->f.prompt, p->f.x_route, p->f.has_x_route, &p->route) != 0) {
        fail(p, LX_ERR_INVALID_FIELD, p->route.reason, "x_route");
        return false;
    }
    p->auto_routed = true;
    lx_auto_header_text(p->route.reason, p->route_header, sizeof p->route_header);
    p->model_name = lx_slice_of(p->route.route);
    LX_DEBUG(p->request_id, "auto-routed: class %s, route %s (%s)", p->route.class_name, p->route.route,
             p->route.reason);
    return true;
}

/* An experiment's model: the variant it takes becomes the name routed. False after answering 400 for a forced
 * variant the experiment does not have. */
static bool set_experiment(proxy_req *p)
{
    if (p->cfg->n_experiments == 0) return true; /* the common case: no header to look for */
    lx_slice forced = p->f.x_variant;
    if (!p->f.has_x_variant && !lx_http_req_header(p->req, "x-lexora-variant", &forced)) forced = (lx_slice){NULL, 0};
    lx_exp_choice ch;
    switch (lx_experiments_assign(p->gw->experiments, p->model_name, p->user, p->request_id, forced, &ch)) {
    case LX_EXP_OUT: return true;
    case LX_EXP_BAD_VARIANT: {
        char msg[400];
        snprintf(msg, sizeof msg, "x_variant `%.*s` is not a variant of experiment %s", (int)LX_MIN(forced.len, 200),
                 forced.p, ch.experiment);
        fail(p, LX_ERR_INVALID_FIELD, msg, "x_variant");
        return false;
    }
    case LX_EXP_IN: break;
    }
    lx_strcpy_cut(p->experiment, sizeof p->experiment, ch.experiment);
    lx_strcpy_cut(p->variant, sizeof p->variant, ch.variant);
    p->model_name = lx_slice_of(p->variant);
    return true;
}

/* Is the name a served model or an alias (else 404 model_not_found)? Which model and backend serve it is
 * decided at admission, by the current config. */
static bool route(proxy_req *p)
{
    const lx_config *c = p->gw->config;
    if (!p->f.has_model && p->cfg->default_model == NULL) {
        fail(p, LX_ERR_INVALID_FIELD, "'model' is required (no default_model is configured)", "model");
        return false;
    }
    p->model_name = p->f.has_model ? p->f.model : lx_slice_of(p->cfg->default_model);
    copy_slice(p->model, sizeof p->model, p->model_name);
    if (lx_auto_is_name(p->cfg, p->model_name) && !route_auto(p)) return false;
    p->is_alias = lx_config_alias(c, p->model_name.p, p->model_name.len) != NULL;
    if (!set_experiment(p)) return false;
    if (lx_router_serves(p->gw->router, c, p->model_name)) return true;
    lx_buf served, msg;
    lx_buf_init(&served, 0);
    lx_buf_init(&msg, 0);
    lx_router_names(p->gw->router, c, &served);
    if (p->auto_routed)
        lx_buf_printf(&msg, "Automatic routing chose `%.*s` (class %s), which is not served now. Models served: %s",
                      (int)p->model_name.len, p->model_name.p, p->route.class_name, served.p ? served.p : "none");
    else
        lx_buf_printf(&msg, "The model `%s` does not exist. Models served: %s", p->model, served.p ? served.p : "none");
    fail(p, LX_ERR_MODEL_NOT_FOUND, msg.p, "model");
    lx_buf_free(&served);
    lx_buf_free(&msg);
    return false;
}

/* The slot p holds is on backend b: its entry in the current config becomes p->backend (kept alive by
 * bcfg). False when the config does not know it (it cannot be: the router picks from what the current
 * config serves). */
static bool bind_backend(proxy_req *p, lx_backend *b)
{
    lx_config *c = p->gw->config;
    p->backend = lx_config_backend(c, lx_backend_name(b));
    p->last_backend = b;
    if (c != p->bcfg) {
        lx_config_ref(c);
        lx_config_unref(p->bcfg);
        p->bcfg = c;
    }
    return p->backend != NULL;
}

/* Sends this attempt to the backend whose slot p holds: its kind builds the request. */
static void forward(proxy_req *p)
{
    p->attempt++;
    if (!bind_backend(p, p->ticket.backend)) {
        fail(p, LX_ERR_INTERNAL, "the backend chosen is no longer configured", NULL);
        return;
    }
    p->attempt_backend = p->ticket.backend;
    if (p->prefix.n) lx_router_learn(p->gw->router, &p->prefix, p->ticket.backend);
    p->trial = p->attempt_backend && lx_backend_attempt_begin(p->attempt_backend);
    p->up_retry_after_s = -1;
    p->up_retry_after[0] = '\0';
    p->kind = lx_kind_get(p->backend->kind);
    p->native = p->anthropic && p->kind->messages_native;
    p->kctx = (lx_kind_ctx){
        .ep = p->ep,
        .backend = p->backend,
        .body = p->body,
        .fields = &p->f,
        .front = p->anthropic ? &p->front : NULL,
        .set_model = lx_backend_conf_upstream(p->backend, lx_model_name(p->model_used)),
        .priority_value = p->ticket.priority_value,
        .client = p->req,
    };
    lx_kind_request_reset(&p->kreq);
    lx_kind_error kerr = {.err = LX_ERR_INTERNAL};
    if (p->kind->request(&p->kctx, &p->kreq, &kerr) != 0) {
        end_attempt(p, LX_ATTEMPT_NONE, NULL);
        fail(p, kerr.err, kerr.message[0] ? kerr.message : NULL, kerr.param);
        return;
    }
    lx_buf_reset(&p->url);
    lx_buf_append_str(&p->url, p->backend->url);
    lx_buf_append_str(&p->url, p->kreq.path);
    memcpy(p->hdr_request_id, "X-Request-Id: ", 14); /* fits: hdr_request_id has 16 bytes more than an id */
    memcpy(p->hdr_request_id + 14, p->request_id, strlen(p->request_id) + 1);
    lx_kind_request_header(&p->kreq, p->hdr_request_id);
    lx_upstream_req ur = {
        .method = "POST",
        .url = p->url.p,
        .headers = p->kreq.headers,
        .body = p->kreq.body.p,
        .body_len = p->kreq.body.len,
        .timeout_ms = (uint64_t)(p->backend->timeout_s * 1000.0),
        .small_buffer = p->f.stream,
        .ca_file = p->backend->ca_file,
        .tls_insecure = !p->backend->tls_verify,
    };
    lx_buf_reset(&p->up_body); /* its memory, if any, is kept from an earlier request */
    p->up_body.max = p->cfg->server.max_response_bytes;
    p->up_start_ns = p->ticket.submitted_ns + p->ticket.waited_ns; /* when the slot was given: no clock read */
    p->sent = true;
    p->up = lx_upstream_start(p->gw->client, &ur, &upstream_cbs, p);
}

/* ---------- waiting for a backend slot ---------- */

static proxy_req *of_ticket(lx_admit_ticket *t) { return LX_CONTAINER_OF(t, proxy_req, ticket); }

/* An error of ours that tells the client when to come back. */
static void fail_retry_after(proxy_req *p, lx_err e, const char *message, unsigned seconds)
{
    char retry_after[16];
    snprintf(retry_after, sizeof retry_after, "%u", seconds);
    const lx_http_header h[] = {{"Retry-After", retry_after}};
    fail_h(p, e, message, NULL, h, LX_ARRAY_LEN(h));
}

/* 503 queue_full with Retry-After: the queue's recent mean wait, so the retry finds room. */
static void fail_queue_full(proxy_req *p, const char *message)
{
    fail_retry_after(p, LX_ERR_QUEUE_FULL, message, lx_admission_retry_after_s(p->gw->admission));
}

static void stop_timer(proxy_req *p)
{
    if (p->timer) uv_timer_stop(p->timer);
}

static void on_dispatch(lx_admit_ticket *t)
{
    proxy_req *p = of_ticket(t);
    stop_timer(p);
    if (t->load_wait) p->load_wait_ms = (double)t->waited_ns / 1e6;
    LX_DEBUG(p->request_id, "dispatched to %s after %.3f ms in the queue", lx_backend_name(t->backend),
             (double)t->waited_ns / 1e6);
    forward(p);
}

static void leave_ticket(proxy_req *p);
static void reset_attempt(proxy_req *p);
static void route_and_submit(proxy_req *p, lx_backend *from);

static void on_reject(lx_admit_ticket *t, lx_admit_reject why)
{
    proxy_req *p = of_ticket(t);
    stop_timer(p);
    char msg[512];
    switch (why) {
    case LX_ADMIT_TIMEOUT:
        snprintf(msg, sizeof msg,
                 "No backend serving the model %s had a free slot within %g s (x_timeout, else "
                 "queue.default_timeout); the request was not sent",
                 p->model_used ? lx_model_name(p->model_used) : p->model, p->queue_timeout_s);
        fail(p, LX_ERR_QUEUE_TIMEOUT, msg, NULL);
        return;
    case LX_ADMIT_DISPLACED:
        fail_queue_full(p, "The request queue is full and this request gave its place to one of higher priority; "
                           "try again later");
        return;
    case LX_ADMIT_SHUTDOWN:
        fail(p, LX_ERR_SHUTTING_DOWN, "The gateway is shutting down; the request was not sent", NULL);
        return;
    case LX_ADMIT_BACKEND_DOWN:
        LX_INFO(p->request_id, "no backend serving the model %s is left while the request waited; routing it again",
                p->model_used ? lx_model_name(p->model_used) : p->model);
        leave_ticket(p);
        route_and_submit(p, NULL);
        return;
    case LX_ADMIT_LOAD_FAILED: {
        const char *model = p->model_used ? lx_model_name(p->model_used) : p->model;
        snprintf(msg, sizeof msg, "The model %s could not be loaded: %s; the request was not sent", model,
                 lx_loader_error(lx_admission_loader(p->gw->admission), model));
        fail(p, LX_ERR_MODEL_LOAD_FAILED, msg, NULL);
        return;
    }
    }
}

static const lx_admit_cbs admit_cbs = {on_dispatch, on_reject};

static void arm_queue_fallback(proxy_req *p);

/* Into the line of model m (or straight to backend b) for this attempt, waiting at most until the deadline. */
static void submit(proxy_req *p, lx_model *m, lx_backend *b)
{
    char msg[160];
    uint64_t now = lx_now_ns();
    double timeout_s = p->deadline_ns > now ? (double)(p->deadline_ns - now) / 1e9 : 0;
    if (timeout_s < 0.001) timeout_s = 0.001;
    switch (lx_admission_submit(p->gw->admission, &p->ticket, &admit_cbs, m, b, p->user, p->prio, timeout_s)) {
    case LX_ADMIT_NOW: forward(p); return;
    case LX_ADMIT_QUEUED: arm_queue_fallback(p); return;
    case LX_ADMIT_FULL:
        snprintf(msg, sizeof msg, "The request queue is full (queue.max_size %ld); try again later",
                 p->cfg->queue.max_size);
        fail_queue_full(p, msg);
        return;
    case LX_ADMIT_CLOSED:
        fail(p, LX_ERR_SHUTTING_DOWN, "The gateway is shutting down; the request was not sent", NULL);
        return;
    case LX_ADMIT_NOT_LOADED:
        snprintf(msg, sizeof msg,
                 "The model %s is not loaded on backend %s, which loads models only when asked "
                 "(POST /admin/models/load; backends.NAME.load.on_demand is false)",
                 lx_model_name(m), lx_backend_name(b));
        fail(p, LX_ERR_MODEL_NOT_LOADED, msg, "model");
        return;
    }
}

/*
 * To the best backend for the model now (lx_router_pick; `from`, the backend the request leaves, only
 * when no other will do), or 503 no_healthy_backend at once with Retry-After. Leaving `from` for another
 * backend counts as a failover, going back to it as a retry.
 */
/* The prompt's prefix blocks are named once, at the first try (prefix.n stays 0 without affinity: prefix). */
static lx_route_ask route_ask(proxy_req *p, lx_backend *avoid)
{
    lx_route_ask ask = {.name = p->model_name, .avoid = avoid};
    switch (p->gw->config->routing.affinity) {
    case LX_AFFINITY_USER:
        ask.user_key = lx_hash(p->user, strlen(p->user));
        ask.has_user_key = true;
        break;
    case LX_AFFINITY_PREFIX:
        if (p->attempt == 0) lx_prefix_key_of(p->f.prompt, &p->prefix);
        ask.prefix = &p->prefix;
        break;
    case LX_AFFINITY_NONE: break;
    }
    return ask;
}

static void fail_no_backend(proxy_req *p, unsigned retry_after_s)
{
    char msg[400];
    snprintf(msg, sizeof msg, "Every backend serving the model `%s` is down or drained; try again in %u s", p->model,
             retry_after_s);
    LX_WARN(p->request_id, "%s", msg);
    fail_retry_after(p, LX_ERR_NO_HEALTHY_BACKEND, msg, retry_after_s);
}

/* ---------- fallback (routing.fallbacks) ---------- */

/* The routing.fallbacks entry that applies: the one it already fell back through, else the name asked's, else
 * the model it resolved to's; NULL when there is none or the request may not fall back. */
static const lx_fallback *fallback_entry(const proxy_req *p)
{
    if (p->no_fallback || p->cfg->routing.n_fallbacks == 0 || !lx_config_user_fallback(p->cfg, p->user)) return NULL;
    if (p->fallback_from) return lx_config_fallback(p->cfg, p->fallback_from, strlen(p->fallback_from));
    const lx_fallback *f = lx_config_fallback(p->cfg, p->model_name.p, p->model_name.len);
    if (f == NULL && p->model_used) {
        const char *m = lx_model_name(p->model_used);
        f = lx_config_fallback(p->cfg, m, strlen(m));
    }
    return f;
}

/*
 * To the entry's next target that has a routable backend now: the request leaves its line or its failed try
 * and is submitted for that target, its tries counted afresh. False, and nothing done, when no target is left.
 */
static bool fall_back(proxy_req *p, const char *why)
{
    const lx_fallback *f = fallback_entry(p);
    for (; f && p->fallback_tried < f->n_targets; p->fallback_tried++) {
        lx_route_ask ask = route_ask(p, NULL);
        ask.name = lx_slice_of(f->targets[p->fallback_tried]);
        lx_route route = lx_router_pick(p->gw->router, p->gw->config, &ask);
        if (route.backend == NULL) continue;
        LX_WARN(p->request_id, "%s; falling back from %s to %s (backend %s)", why, f->name,
                f->targets[p->fallback_tried], lx_backend_name(route.backend));
        leave_admission(p);
        reset_attempt(p);
        p->fallback_from = f->name;
        p->model_name = ask.name;
        p->fallback_tried++;
        p->attempt0 = p->attempt;
        p->model_used = route.model;
        submit(p, route.model, route.backend);
        return true;
    }
    return false;
}

static void on_queue_fallback(uv_timer_t *t)
{
    proxy_req *p = t->data;
    if (p->ticket.state != LX_TICKET_WAITING) return;
    char why[96];
    snprintf(why, sizeof why, "waited %g s in the line (routing.fallback_after_queue_seconds)",
             p->cfg->routing.fallback_after_queue_s);
    fall_back(p, why);
}

static uv_timer_t *timer_of(proxy_req *p)
{
    if (p->timer == NULL) {
        p->timer = lx_xmalloc(sizeof *p->timer);
        uv_timer_init(p->gw->loop, p->timer);
        p->timer->data = p;
    }
    return p->timer;
}

/* Waiting in the line: with routing.fallback_after_queue_seconds, the request moves to its fallback then. */
static void arm_queue_fallback(proxy_req *p)
{
    double s = p->cfg->routing.fallback_after_queue_s;
    if (s <= 0 || fallback_entry(p) == NULL) return;
    uv_timer_start(timer_of(p), on_queue_fallback, (uint64_t)(s * 1000.0 + 0.5), 0);
}

static void route_and_submit(proxy_req *p, lx_backend *from)
{
    lx_route_ask ask = route_ask(p, from);
    lx_route route = lx_router_pick(p->gw->router, p->gw->config, &ask);
    if (route.backend == NULL) {
        if (!fall_back(p, "no backend serving it can take the request")) fail_no_backend(p, route.retry_after_s);
        return;
    }
    if (route.affinity != LX_AFFINITY_UNUSED)
        lx_stats_affinity(p->gw->stats, lx_backend_name(route.preferred), route.affinity == LX_AFFINITY_HIT);
    if (route.backend == from)
        lx_stats_retry(p->gw->stats, lx_backend_name(from));
    else if (from)
        lx_stats_failover(p->gw->stats, lx_backend_name(from), lx_backend_name(route.backend));
    p->model_used = route.model;
    submit(p, route.model, route.backend);
}

static void admit(proxy_req *p) { route_and_submit(p, NULL); }

/* ---------- retries ---------- */

/* The backoff is over: p->last_backend is still the backend of the failed try. */
static void on_backoff(uv_timer_t *t)
{
    proxy_req *p = t->data;
    p->earlier_wait_ns += lx_now_ns() - p->backoff_start_ns;
    route_and_submit(p, p->last_backend);
}

/* The ticket left (its try ended, or it was rejected): its queue time is kept, and it is zeroed for the
 * next submit. */
static void leave_ticket(proxy_req *p)
{
    p->earlier_wait_ns += p->ticket.waited_ns;
    p->earlier_queue_ns += p->ticket.waited_ns;
    p->ticket = (lx_admit_ticket){0};
}

/* This attempt's answer is not kept: the next one starts clean. */
static void reset_attempt(proxy_req *p)
{
    leave_ticket(p);
    p->earlier_wait_ns += p->up_wait_ns;
    p->up_wait_ns = 0;
    p->up_status = 0;
    p->up_content_type[0] = '\0';
    p->first_byte_ns = 0;
    lx_buf_free(&p->up_body);
    p->sent = false; /* a failed attempt costs the user nothing; the next one, once sent, is accounted */
}

/*
 * After a retryable failure (retry.h): another try after retry.h's backoff (or the backend's own
 * Retry-After when the try would go back to it), on the best backend for the model then — another one
 * than this if there is one (route_and_submit). False, and nothing done, when no attempt is left, no
 * backend can take it now, the wait would be longer than retry.max_delay_seconds, or it would end past the
 * request's deadline: the caller then answers with this attempt's outcome.
 */
static bool retry_later(proxy_req *p, const char *why)
{
    if (p->attempt - p->attempt0 >= p->cfg->retry.max_attempts) return false;
    lx_route_ask ask = route_ask(p, p->last_backend);
    lx_backend *next = lx_router_pick(p->gw->router, p->gw->config, &ask).backend;
    if (next == NULL) return false;
    double delay_s = lx_retry_delay_s(p->cfg, p->attempt, lx_random_unit());
    if (next == p->last_backend && p->up_retry_after_s > delay_s) {
        if (p->up_retry_after_s > p->cfg->retry.max_delay_s) return false;
        delay_s = p->up_retry_after_s;
    }
    uint64_t delay_ns = (uint64_t)(delay_s * 1e9);
    p->backoff_start_ns = lx_now_ns();
    if (p->backoff_start_ns + delay_ns >= p->deadline_ns) return false;
    LX_INFO(p->request_id, "%s; try %d of %ld in %.3f s (on backend %s, if it is still the best then)", why,
            p->attempt + 1, p->cfg->retry.max_attempts, delay_s, lx_backend_name(next));
    reset_attempt(p);
    uv_timer_start(timer_of(p), on_backoff, (delay_ns + 999999) / 1000000, 0);
    return true;
}

/* ---------- rate limits ---------- */

static proxy_req *of_rate(lx_rate_req *r) { return LX_CONTAINER_OF(r, proxy_req, rate); }

/* 429: the OpenAI envelope (type requests or tokens, code rate_limit_exceeded) and its headers. */
static void fail_rate_limited(proxy_req *p)
{
    lx_err e = lx_ratelimit_err(&p->rate);
    p->err = e;
    p->has_err = true;
    lx_stats_ratelimit_refused(
        p->gw->stats, p->rate.result.kind == LX_RATE_TOKENS ? LX_STATS_RL_TOKENS : LX_STATS_RL_REQUESTS, p->user);
    char msg[320];
    lx_ratelimit_message(&p->rate, msg, sizeof msg);
    LX_INFO(p->request_id, "%s", msg);
    lx_buf body;
    lx_buf_init(&body, 0);
    if (p->anthropic)
        lx_messages_error_body(&body, lx_err_get(e)->status, msg);
    else
        lx_ratelimit_body(&p->rate, &body);
    lx_ratelimit_headers rh;
    lx_ratelimit_headers_fill(&p->rate.result, &rh);
    lx_http_header h[2 + LX_RATELIMIT_MAX_HEADERS];
    size_t n = 0;
    h[n++] = (lx_http_header){"Content-Type", "application/json"};
    h[n++] = (lx_http_header){"X-Request-Id", p->request_id};
    for (size_t i = 0; i < rh.n; i++)
        h[n++] = (lx_http_header){rh.name[i], rh.value[i]};
    int status = lx_err_get(e)->status;
    detach(p, status);
    lx_http_respond(p->req, status, h, n, body.p, body.len);
    lx_buf_free(&body);
    proxy_free(p);
}

static void on_rate(lx_rate_req *r, void *ud)
{
    (void)ud;
    proxy_req *p = of_rate(r);
    if (r->result.verdict != LX_RATE_ALLOWED) {
        fail_rate_limited(p);
        return;
    }
    if (r->result.waited_ms > 0)
        LX_DEBUG(p->request_id, "rate limit: admitted after %lld ms", (long long)r->result.waited_ms);
    admit(p);
}

/* Reserves 1 request and the token estimate against the user's limits; on_rate goes on (or answers 429).
 * The check is the caller's last statement: on_rate may run before it returns. */
static void check_rate(proxy_req *p)
{
    lx_token_estimate est;
    lx_tokens_estimate(&p->f.tokens, &est); /* counted by lx_body_scan: the body is not read again */
    long tokens =
        lx_tokens_reserve(&est, p->f.max_tokens, p->cfg->rate_limits.default_max_tokens, p->ep != LX_EP_EMBEDDINGS);
    double wait_ms = p->queue_timeout_s * 1000.0;
    lx_rate_ask ask = {
        .user = p->user,
        .prompt_tokens = est.prompt_tokens,
        .tokens = tokens,
        .max_wait_ms = wait_ms > 9e15 ? (int64_t)9e15 : (int64_t)wait_ms,
    };
    p->rate_checked = true;
    lx_rate_check(p->gw->rate_limiter, &p->rate, &ask, on_rate, p);
}

/*
 * The Anthropic front's intake: the client's request is kept as it came (front: body, anthropic-version,
 * anthropic-beta) and p->body becomes its OpenAI translation, which the rest of the pipeline reads. False
 * after answering 400 for what cannot be translated.
 */
static bool from_anthropic(proxy_req *p, bool count_only)
{
    p->front.body = p->body;
    lx_http_req_header(p->req, "anthropic-version", &p->front.version);
    lx_http_req_header(p->req, "anthropic-beta", &p->front.beta);
    lx_buf_init(&p->translated, 4 * p->body.len + 65536);
    lx_messages_error e;
    if (lx_messages_request(p->body.p, p->body.len, count_only, &p->translated, &e) != 0) {
        if (!p->cfg->auth.enabled) copy_slice(p->user, sizeof p->user, LX_SLICE_LIT("-"));
        fail(p, e.err, e.message, e.param[0] ? e.param : NULL);
        return false;
    }
    p->body = (lx_slice){p->translated.p, p->translated.len};
    return true;
}

/* POST /v1/messages/count_tokens: {"input_tokens":N}, Lexora's own estimate of the prompt (limits/tokens.h) of
 * the request's translation, for a model served now. Nothing is sent to a backend, nor counted as a request
 * in the statistics or the ledger; the access log has its line. */
static void count_tokens(proxy_req *p)
{
    if (!route(p)) return;
    lx_token_estimate est;
    lx_tokens_estimate(&p->f.tokens, &est);
    char body[64];
    int n = snprintf(body, sizeof body, "{\"input_tokens\":%ld}", est.prompt_tokens);
    const lx_http_header h[] = {{"Content-Type", "application/json"}, {"X-Request-Id", p->request_id}};
    detach(p, 200);
    lx_http_respond(p->req, 200, h, LX_ARRAY_LEN(h), body, (size_t)n);
    proxy_free(p);
}

void lx_proxy_handle(lx_gateway *gw, lx_http_req *req, lx_endpoint ep)
{
    proxy_req *p = spare_get(gw);
    p->gw = gw;
    p->cfg = lx_config_ref(gw->config);
    p->req = req;
    p->ep = ep;
    p->anthropic = ep == LX_EP_MESSAGES || ep == LX_EP_COUNT_TOKENS;
    p->count_only = ep == LX_EP_COUNT_TOKENS;
    if (p->anthropic) p->ep = LX_EP_CHAT;
    p->usage = (lx_usage){-1, -1};
    lx_http_req_set_data(req, p);
    set_request_id(p);
    /* with auth on, the key is checked before the body: a caller without one learns nothing about it */
    if (p->cfg->auth.enabled && !set_user(p, false)) return;
    p->body = lx_http_req_body(req);
    if (p->anthropic && !from_anthropic(p, ep == LX_EP_COUNT_TOKENS)) return;
    lx_slice body = p->body;
    lx_body_error berr;
    if (lx_body_scan(body.p, body.len, &p->f, &berr) != 0) {
        if (!p->cfg->auth.enabled) copy_slice(p->user, sizeof p->user, LX_SLICE_LIT("-"));
        fail(p, berr.err, berr.message, berr.param);
        return;
    }
    if (!p->cfg->auth.enabled && !set_user(p, true)) return;
    if (ep == LX_EP_CHAT && !p->f.messages_is_array) { /* the backend would refuse it; it need not see it */
        fail(p, LX_ERR_INVALID_FIELD,
             p->f.has_messages ? "'messages' must be an array of messages" : "'messages' is required", "messages");
        return;
    }
    if (!set_priority(p)) {
        fail(p, LX_ERR_INVALID_FIELD, "x_priority must be one of: high, normal, low", "x_priority");
        return;
    }
    if (!set_queue_timeout(p)) {
        fail(p, LX_ERR_INVALID_FIELD, "X-Timeout must be a positive number of seconds", "x_timeout");
        return;
    }
    if (!set_fallback_policy(p)) {
        fail(p, LX_ERR_INVALID_FIELD, "X-Lexora-Fallback must be on or off", "x_fallback");
        return;
    }
    if (ep == LX_EP_COUNT_TOKENS) {
        count_tokens(p);
        return;
    }
    double deadline_ns = (double)lx_http_req_ready_ns(req) + p->queue_timeout_s * 1e9;
    p->deadline_ns = deadline_ns < 1.8e19 ? (uint64_t)deadline_ns : UINT64_MAX;
    if (!route(p)) return;
    check_rate(p);
}

void lx_proxy_abort(lx_http_req *req)
{
    proxy_req *p = lx_http_req_data(req);
    if (p == NULL) return;
    if (p->timer && uv_is_active((uv_handle_t *)p->timer) && p->ticket.state != LX_TICKET_WAITING)
        LX_INFO(p->request_id, "client went away while waiting to retry");
    else if (!p->sent && p->ticket.state == LX_TICKET_IDLE)
        LX_INFO(p->request_id, "client went away during its rate-limit check or wait; never sent");
    else if (p->ticket.state == LX_TICKET_WAITING || p->ticket.state == LX_TICKET_REJECTING)
        LX_INFO(p->request_id, "client went away while waiting in the queue; never sent");
    else
        LX_INFO(p->request_id, "client went away; upstream request cancelled");
    if (p->up) lx_upstream_cancel(p->up);
    p->up = NULL;
    leave_admission(p);
    if (p->relaying && p->native_stream)
        p->usage = (lx_usage){p->native_stream->prompt_tokens, p->native_stream->completion_tokens};
    else if (p->relaying)
        p->usage = p->sse.usage;
    rate_end(p); /* mid-answer: reconciled with what usage came; before dispatch: refunded */
    access_log(p, 499);
    proxy_free(p);
}

void lx_proxy_drain(lx_http_req *req)
{
    proxy_req *p = lx_http_req_data(req);
    if (p && p->up) lx_upstream_resume(p->up);
}
