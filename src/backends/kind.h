/*
 * Backend kinds: what differs between vLLM, a generic OpenAI-compatible server, Ollama, llama.cpp and
 * Anthropic's Messages API, as one table of operations per kind (in the spirit of nginx's upstream module hooks
 * and redis's ConnectionType). The request pipeline (src/proxy.c), the health checker and the registry
 * (backends/backend.c) call a kind only through this table; adding a kind is one file under
 * src/backends/ that fills an lx_kind, and one line in kind.c's table of built-in kinds (or, for tests
 * and plugins, lx_kind_register at start-up).
 *
 * Everything a client sends and receives stays OpenAI's: a kind translates the request it forwards and
 * the answer it gets back, whole or event by event, into OpenAI's shapes, so the pipeline reads usage,
 * [DONE] and errors the same way for every kind.
 *
 * The operations, and what a kind that leaves one NULL gets:
 *   request        builds one attempt's upstream request: path, headers, body (the client's bytes spliced,
 *                  or a full translation). Required.
 *   answer         a whole (non-streamed) answer: may replace the body (error envelope, translation).
 *                  NULL: passed through as it is.
 *   stream_event   a streamed answer, cut into events by stream_framing: each upstream event becomes zero or
 *                  more OpenAI SSE events ("data: {...}\n\n", "data: [DONE]\n\n"); stream_end flushes at
 *                  the end. NULL: the upstream stream is OpenAI's SSE already and is relayed as it arrives.
 *   outcome        which outcome class an attempt's end is (queue/... retries and the circuit breaker read the
 *                  class from backends/outcome.h). NULL: lx_outcome_of, the shared rules.
 *   health_path    GET it; only HTTP 200 is healthy (llama.cpp's 503 "Loading model" is not ready).
 *   models_path + parse_models
 *                  what the backend says it serves (for `models: auto`).
 *   load, unload   optional hooks for dynamic model loading; NULL where the kind has none.
 *   probe_headers  the header lines the health check and discovery send besides Accept (credentials the
 *                  backend wants even there); NULL: none.
 * Pure functions over their arguments; the table is static and read-only, so any thread may read it.
 */
#ifndef LX_KIND_H
#define LX_KIND_H

#include <stdbool.h>
#include <stddef.h>

#include "api/body.h"
#include "api/endpoint.h"
#include "api/messages.h"
#include "backends/outcome.h"
#include "config.h"
#include "http/client.h"
#include "utils/buf.h"
#include "utils/common.h"

/* What a kind knows of one attempt. */
typedef struct {
    lx_endpoint ep;
    const lx_backend_conf *backend;
    lx_slice body;                    /* the client's body, as it came */
    const lx_body_fields *fields;     /* its scan */
    const char *set_model;            /* the model to name when the body names none (default_model); NULL: it does */
    long priority_value;              /* the request's queue.priorities number (for backends.NAME.forward_priority) */
    const struct lx_http_req *client; /* the client's request, for its headers (anthropic-beta); may be NULL */
    /* The client's Anthropic request when it came to /v1/messages (api/messages.h: its body as it came and its
     * anthropic-version / anthropic-beta headers), else NULL. body above is then its OpenAI translation; a kind
     * that speaks the Messages API may send front->body on as it is instead. */
    const lx_messages_front *front;
} lx_kind_ctx;

#define LX_KIND_MAX_HEADERS 6

/* One attempt's upstream request, built by a kind. The pipeline owns it (zeroed at first);
 * lx_kind_request_reset empties it, freeing what it holds: between attempts, and at the end. */
typedef struct {
    const char *path;                             /* appended to the backend's url: static text, or path_owned */
    char *path_owned;                             /* a path this request formatted (lx_kind_request_pathf) */
    const char *headers[LX_KIND_MAX_HEADERS + 1]; /* "Name: value", NULL-terminated */
    char *owned[LX_KIND_MAX_HEADERS];             /* the header lines this request allocated */
    size_t n_headers;
    lx_buf body_buf; /* a rewritten body, when the client's could not go as it is */
    lx_slice body;   /* what is sent: the client's bytes or body_buf */
} lx_kind_request;

void lx_kind_request_reset(lx_kind_request *r);
/* Sets a formatted path (a copy owned by r). */
void lx_kind_request_pathf(lx_kind_request *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds a header line: static text (kept as a pointer), or formatted (a copy owned by r). -1 when full. */
int lx_kind_request_header(lx_kind_request *r, const char *line);
int lx_kind_request_headerf(lx_kind_request *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Why a kind could not build a request: what the client is told (e.g. 400 invalid_value naming a field the
 * backend's API cannot express). The request is not sent. */
typedef struct {
    lx_err err; /* LX_ERR_INTERNAL unless the kind says otherwise */
    const char *param;
    char message[200];
} lx_kind_error;

typedef enum {
    LX_FRAME_SSE = 0, /* events end at a blank line */
    LX_FRAME_LINES,   /* every line is an event (NDJSON) */
} lx_framing;

typedef struct lx_kind {
    const char *name; /* the config's `type:` */

    /* 0, or -1 with err filled (the client gets that error, nothing is sent). */
    int (*request)(const lx_kind_ctx *ctx, lx_kind_request *out, lx_kind_error *err);
    /* Returns 1 with the body to send the client in out (which is OpenAI JSON), or 0 to pass body through. */
    int (*answer)(const lx_kind_ctx *ctx, int status, lx_slice body, lx_buf *out);

    /* With stream_event set, a 200 answer to a request that asked for a stream is the stream, whatever its
     * content type (NDJSON, the backend's own SSE); without, only text/event-stream is. */
    lx_framing stream_framing;
    size_t stream_state_size; /* bytes of per-stream state, zeroed, handed to stream_event and stream_end */
    /* One complete upstream event (without its terminating blank line or newline). 0, or -1 to fail the stream. */
    int (*stream_event)(void *state, const lx_kind_ctx *ctx, lx_slice event, lx_buf *out);
    int (*stream_end)(void *state, const lx_kind_ctx *ctx, lx_buf *out);

    lx_outcome (*outcome)(lx_up_result r, int status);

    const char *health_path;
    const char *models_path;
    /* Appends the name of every model in a models_path answer to out, one per line. 0, or -1 if unreadable. */
    int (*parse_models)(const char *body, size_t len, lx_buf *out);

    /* Speaks Anthropic's Messages API: a request of the Anthropic front (ctx->front) is sent on as it came and
     * its answer relayed as it is (proxy.c reads its usage with api/messages.h's pass-through readers). */
    bool messages_native;

    int (*load)(const lx_kind_ctx *ctx, const char *model, lx_kind_request *out);
    int (*unload)(const lx_kind_ctx *ctx, const char *model, lx_kind_request *out);
    /* Does a load (unload) answer of this status and body mean the model is loaded (unloaded) now? NULL: a 2xx
     * does. (A backend that says the model was loaded, or gone, already.) */
    bool (*control_done)(int status, lx_slice body, bool unload);
    /* A backend whose load answers before the model is ready (llama.cpp's router): GET load_status_path until
     * load_status says, of the model by its upstream name: 1 loaded, 0 still loading, -1 failed. */
    const char *load_status_path;
    int (*load_status)(const char *body, size_t len, const char *model);

    /* Adds the backend's probe header lines to out (see probe_headers above). */
    void (*probe_headers)(const lx_backend_conf *b, lx_kind_request *out);
} lx_kind;

/* The kind with this config `type:` name, as its index (what lx_backend_conf.kind holds); -1 if none. */
int lx_kind_find(const char *name);
/* The kind at an index; the generic OpenAI kind for an index out of range. */
const lx_kind *lx_kind_get(lx_backend_kind k);
/* How many kinds are known (built-in, then registered). */
size_t lx_kind_count(void);
/* Adds a kind (start-up only, before any config is loaded; the table is not locked). Returns its index, or
 * -1 when the table is full or the name is taken. k must live as long as the process. */
int lx_kind_register(const lx_kind *k);

/*
 * A streamed answer through a kind's stream_event: the upstream bytes are cut into events by the kind's
 * framing (an incomplete event waits for its end, at most max_event bytes), each event is translated, and
 * the OpenAI SSE bytes it made are handed to emit. At the end, a trailing event without its terminator is
 * translated too, then stream_end.
 */
typedef void (*lx_kind_emit_fn)(void *ud, const char *data, size_t len);

typedef struct {
    const lx_kind *kind;
    void *state;
    lx_buf pending; /* the bytes of an event not complete yet */
    lx_buf out;     /* what one feed translated */
} lx_kind_stream;

void lx_kind_stream_init(lx_kind_stream *s, const lx_kind *k, size_t max_event);
/* 0, or -1 when an event grew past max_event or the kind refused one (the stream should be failed). */
int lx_kind_stream_feed(lx_kind_stream *s, const lx_kind_ctx *ctx, const char *data, size_t len, lx_kind_emit_fn emit,
                        void *ud);
int lx_kind_stream_end(lx_kind_stream *s, const lx_kind_ctx *ctx, lx_kind_emit_fn emit, void *ud);
void lx_kind_stream_free(lx_kind_stream *s);

/* ---------- shared by the OpenAI-compatible kinds (backends/openai_compat.c) ---------- */

/* The endpoint's own path; Authorization: Bearer <backends.NAME.api_key> when one is set; the client's body
 * as it came when nothing needs changing, else one copy with x_* members dropped, the model set when absent,
 * stream_options.include_usage forced on for streams (the gateway reads usage from every stream) and, with
 * forward_priority, "priority" set to the request's number. */
int lx_openai_request(const lx_kind_ctx *ctx, lx_kind_request *out, lx_kind_error *err);
/* Error answers brought to OpenAI's envelope (vLLM's flat errors, bodies that are not JSON); 2xx untouched. */
int lx_openai_answer(const lx_kind_ctx *ctx, int status, lx_slice body, lx_buf *out);
/* A load or unload request (backends/loader.h): POST path with the body {"k1":"v1","k2":"v2",raw} (NULL keys
 * and raw left out; the values JSON-escaped) and the backend's api_key as a bearer token. 0, or -1. */
int lx_kind_control(const lx_kind_ctx *ctx, lx_kind_request *out, const char *path, const char *k1, const char *v1,
                    const char *k2, const char *v2, const char *raw);
/* GET /v1/models: {"data":[{"id":...}, ...]}. */
int lx_openai_parse_models(const char *body, size_t len, lx_buf *out);
/* The string member `key` of every object in the array member `list` of a JSON object, one per line (what
 * the parse_models of each kind reads). -1 when body is not such an object. */
int lx_json_names(const char *body, size_t len, const char *list, const char *key, lx_buf *out);

#endif
