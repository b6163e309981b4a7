/*
 * Ollama, through its OpenAI-compatible endpoints (/v1/chat/completions, /v1/completions, /v1/embeddings;
 * ollama/openai/openai.go and middleware/openai.go). What Lexora uses of it:
 * - readiness: GET /api/version ({"version":"0.12.6"}), only a 200 is ready;
 * - what it serves: GET /api/tags, {"models":[{"name":"llama3.2:latest", ...}]};
 * - stream usage: it honours stream_options.include_usage (forced on by lx_openai_request) with a usage-only
 *   chunk before [DONE]. On completions streams it also puts a zeroed "usage" on every chunk; when the
 *   client did not ask for usage, those are cut (the rest of each chunk is relayed byte for byte);
 * - errors: its OpenAI layer answers {"error":{"message","type":"invalid_request_error|not_found_error|
 *   api_error","param":null,"code":null}}, and what runs before that layer (the cloud-model check, body
 *   reading) answers its native {"error":"..."}. Both reach the client as OpenAI's envelope with the status
 *   and message kept, type and code from the status (a 404 is model_not_found).
 */
#include <string.h>

#include "backends/kinds.h"

/* Takes out back to len bytes (what a failed append left). */
static void back_to(lx_buf *b, size_t len)
{
    b->len = len;
    if (b->p) b->p[len] = '\0';
}

static int parse_tags(const char *body, size_t len, lx_buf *out)
{
    return lx_json_names(body, len, "models", "name", out);
}

static int ollama_answer(const lx_kind_ctx *ctx, int status, lx_slice body, lx_buf *out)
{
    lx_backend_error e;
    if (status < 400) return 0;
    if (!lx_backend_error_read(body.p, body.len, &e)) return lx_openai_answer(ctx, status, body, out);
    return lx_backend_error_envelope(status, e.message, NULL, out) == 0;
}

/* A chunk with choices and a usage (the zeroed one of completions streams) loses the usage when the client
 * did not ask for it; a usage-only chunk stays for the relay, which reads it and drops it. */
static int ollama_event(void *state, const lx_kind_ctx *ctx, lx_slice ev, lx_buf *out)
{
    (void)state;
    lx_slice json, choices;
    bool cut = !ctx->fields->include_usage && memmem(ev.p, ev.len, "\"usage\"", 7) && lx_sse_data_json(ev, &json) &&
               lx_json_find_member(json.p, json.len, "choices", &choices) && choices.len > 2;
    if (!cut) return lx_sse_put_event(out, ev);
    size_t at = out->len;
    if (lx_buf_append(out, "data: ", 6) != 0) return -1;
    int rc = lx_json_cut_member(json.p, json.len, "usage", out);
    if (rc < 0) return -1;
    if (rc == 0) {
        back_to(out, at);
        return lx_sse_put_event(out, ev);
    }
    return lx_buf_append(out, "\n\n", 2);
}

/* POST /api/generate with no prompt loads a model; keep_alive -1 keeps it until Lexora unloads it (0). */
static int ollama_load(const lx_kind_ctx *ctx, const char *model, lx_kind_request *out)
{
    const char *up = lx_backend_conf_upstream(ctx->backend, model);
    return lx_kind_control(ctx, out, "/api/generate", "model", up, NULL, NULL, "\"keep_alive\":-1");
}

static int ollama_unload(const lx_kind_ctx *ctx, const char *model, lx_kind_request *out)
{
    const char *up = lx_backend_conf_upstream(ctx->backend, model);
    return lx_kind_control(ctx, out, "/api/generate", "model", up, NULL, NULL, "\"keep_alive\":0");
}

const lx_kind lx_kind_ollama = {
    .name = "ollama",
    .request = lx_openai_request,
    .answer = ollama_answer,
    .stream_framing = LX_FRAME_SSE,
    .stream_event = ollama_event,
    .health_path = "/api/version",
    .models_path = "/api/tags",
    .parse_models = parse_tags,
    .load = ollama_load,
    .unload = ollama_unload,
};
