/*
 * llama.cpp's llama-server (tools/server/server-task.cpp): OpenAI's wire format with its own extras. What
 * Lexora uses of it:
 * - readiness: GET /health, 200 {"status":"ok"}; it listens before its model is loaded and answers 503
 *   {"error":{"code":503,"message":"Loading model","type":"unavailable_error"}} meanwhile: not ready;
 * - what it serves: GET /v1/models, {"data":[{"id":...}]};
 * - its `timings` object (prompt and generation speed, cached tokens) reaches the client untouched: in a
 *   whole answer it is passed through with the body; in a stream llama.cpp puts it on the last chunk,
 *   which is the usage-only chunk when stream_options.include_usage is set. Lexora forces that option to
 *   count tokens and drops the usage-only chunk when the client did not ask for usage, so then the finish
 *   chunk (finish_reason set) is held until the next event, and if that is a usage-only chunk with timings,
 *   the timings move onto the finish chunk, where llama.cpp itself puts them without include_usage (every
 *   other byte relayed as it came);
 * - errors {"error":{"code":N,"message":"...","type":"invalid_request_error|exceed_context_size_error|..."}}
 *   reach the client as OpenAI's envelope, status and message kept (exceed_context_size_error: code
 *   context_length_exceeded).
 * Invariant: at most one event is held, and it is sent before anything that follows it.
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "backends/kinds.h"

#define HELD_MAX 2048 /* a finish chunk longer than this is relayed at once (and the timings dropped with usage) */

typedef struct {
    size_t held_len; /* 0: nothing held */
    char held[HELD_MAX];
} stream_state;

static int llamacpp_answer(const lx_kind_ctx *ctx, int status, lx_slice body, lx_buf *out)
{
    lx_backend_error e;
    if (status < 400) return 0;
    if (!lx_backend_error_read(body.p, body.len, &e)) return lx_openai_answer(ctx, status, body, out);
    const char *code = strcmp(e.type, "exceed_context_size_error") == 0 ? "context_length_exceeded" : NULL;
    return lx_backend_error_envelope(status, e.message, code, out) == 0;
}

static bool is_finish_chunk(lx_slice ev) { return memmem(ev.p, ev.len, "\"finish_reason\":\"", 17) != NULL; }

/* A usage-only chunk carrying timings: its JSON and the timings' bytes. */
static bool usage_timings(lx_slice ev, lx_slice *json, lx_slice *timings)
{
    lx_slice choices, usage;
    return memmem(ev.p, ev.len, "\"timings\"", 9) && lx_sse_data_json(ev, json) &&
           lx_json_find_member(json->p, json->len, "choices", &choices) && choices.len == 2 &&
           lx_json_find_member(json->p, json->len, "usage", &usage) &&
           lx_json_find_member(json->p, json->len, "timings", timings);
}

static int flush_held(stream_state *st, lx_buf *out)
{
    if (st->held_len == 0) return 0;
    lx_slice ev = {st->held, st->held_len};
    st->held_len = 0;
    return lx_sse_put_event(out, ev);
}

/* The held finish chunk with ,"timings":<t> before its closing brace. */
static int put_held_with(stream_state *st, lx_slice t, lx_buf *out)
{
    size_t n = st->held_len;
    while (n > 0 && st->held[n - 1] != '}')
        n--;
    if (n == 0) return flush_held(st, out); /* not an object after all: as it came */
    st->held_len = 0;
    int rc = lx_buf_append(out, st->held, n - 1);
    rc |= lx_buf_append_str(out, ",\"timings\":");
    rc |= lx_buf_append(out, t.p, t.len);
    rc |= lx_buf_append_str(out, "}\n\n");
    return rc ? -1 : 0;
}

static int llamacpp_event(void *state, const lx_kind_ctx *ctx, lx_slice ev, lx_buf *out)
{
    stream_state *st = state;
    lx_slice json, timings;
    if (ctx->fields->include_usage) return lx_sse_put_event(out, ev);
    if (st->held_len && usage_timings(ev, &json, &timings)) {
        if (put_held_with(st, timings, out) != 0 || lx_buf_append(out, "data: ", 6) != 0) return -1;
        int rc = lx_json_cut_member(json.p, json.len, "timings", out);
        if (rc == 0) rc = lx_buf_append(out, json.p, json.len) == 0 ? 1 : -1;
        return rc < 0 ? -1 : lx_buf_append(out, "\n\n", 2);
    }
    if (flush_held(st, out) != 0) return -1;
    if (is_finish_chunk(ev) && ev.len <= HELD_MAX && !memmem(ev.p, ev.len, "\"timings\"", 9)) {
        memcpy(st->held, ev.p, ev.len);
        st->held_len = ev.len;
        return 0;
    }
    return lx_sse_put_event(out, ev);
}

static int llamacpp_end(void *state, const lx_kind_ctx *ctx, lx_buf *out)
{
    (void)ctx;
    return flush_held(state, out);
}

/* Router mode (llama-server without -m): POST /models/load and /models/unload {"model"}. */
static int llamacpp_load(const lx_kind_ctx *ctx, const char *model, lx_kind_request *out)
{
    return lx_kind_control(ctx, out, "/models/load", "model", lx_backend_conf_upstream(ctx->backend, model), NULL, NULL,
                           NULL);
}

static int llamacpp_unload(const lx_kind_ctx *ctx, const char *model, lx_kind_request *out)
{
    return lx_kind_control(ctx, out, "/models/unload", "model", lx_backend_conf_upstream(ctx->backend, model), NULL,
                           NULL, NULL);
}

/* GET /models: {"data":[{"id":M,"status":{"value":"unloaded|loading|loaded","failed":bool}}]}. */
static int llamacpp_load_status(const char *body, size_t len, const char *model)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data"), *m;
    int st = -1;
    cJSON_ArrayForEach(m, data)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (!cJSON_IsString(id) || strcmp(id->valuestring, model) != 0) continue;
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(m, "status");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(status, "value");
        const char *v = cJSON_IsString(value) ? value->valuestring : "";
        st = strcmp(v, "loaded") == 0 ? 1 : strcmp(v, "loading") == 0 ? 0 : -1;
    }
    cJSON_Delete(root);
    return st;
}

/* 400 "model is already running" for a load, "model is not running" for an unload: the state wanted holds. */
static bool llamacpp_control_done(int status, lx_slice body, bool unload)
{
    if (status >= 200 && status < 300) return true;
    const char *says = unload ? "not running" : "already running";
    return status == 400 && memmem(body.p, body.len, says, strlen(says)) != NULL;
}

const lx_kind lx_kind_llamacpp = {
    .name = "llamacpp",
    .request = lx_openai_request,
    .answer = llamacpp_answer,
    .stream_framing = LX_FRAME_SSE,
    .stream_state_size = sizeof(stream_state),
    .stream_event = llamacpp_event,
    .stream_end = llamacpp_end,
    .health_path = "/health",
    .models_path = "/v1/models",
    .parse_models = lx_openai_parse_models,
    .load = llamacpp_load,
    .unload = llamacpp_unload,
    .control_done = llamacpp_control_done,
    .load_status_path = "/models",
    .load_status = llamacpp_load_status,
};
