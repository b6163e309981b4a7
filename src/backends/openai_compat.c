/*
 * What the OpenAI-compatible kinds share (vLLM, llama.cpp's server, Ollama's /v1, any OpenAI-compatible
 * server): the request is the client's own, spliced (api/body.h) rather than rebuilt; streams are OpenAI's
 * SSE already and pass through; error bodies are brought to OpenAI's envelope; /v1/models lists models as
 * {"data":[{"id":...}]}. See kind.h.
 */
#include <cjson/cJSON.h>
#include <stdio.h>

#include "backends/kind.h"

int lx_openai_request(const lx_kind_ctx *ctx, lx_kind_request *out, lx_kind_error *err)
{
    (void)err; /* every OpenAI request can be forwarded */
    const lx_backend_conf *b = ctx->backend;
    out->path = lx_endpoint_path(ctx->ep);
    lx_kind_request_header(out, "Content-Type: application/json");
    if (b->api_key) lx_kind_request_headerf(out, "Authorization: Bearer %s", b->api_key);
    char priority[24];
    lx_body_rewrite_opts o = {
        .set_model = ctx->set_model,
        .force_include_usage = ctx->fields->stream && ctx->ep != LX_EP_EMBEDDINGS,
    };
    if (b->forward_priority) { /* replaces a priority the client sent: never a duplicate key */
        snprintf(priority, sizeof priority, "%ld", ctx->priority_value);
        o.priority = priority;
    }
    out->body = ctx->body;
    if (lx_body_rewrite_is_noop(ctx->fields, &o)) return 0;
    lx_buf_init(&out->body_buf, 0);
    if (lx_body_rewrite(ctx->body.p, ctx->body.len, ctx->fields, &o, &out->body_buf) != 0) return -1;
    out->body = (lx_slice){out->body_buf.p, out->body_buf.len};
    return 0;
}

int lx_openai_answer(const lx_kind_ctx *ctx, int status, lx_slice body, lx_buf *out)
{
    (void)ctx;
    if (status < 400) return 0;
    return lx_err_normalize_upstream(body.p ? body.p : "", body.len, status, out) == 1;
}

/* Appends the string member `key` of every object in the array `list` of a JSON answer, one per line. */
int lx_json_names(const char *body, size_t len, const char *list, const char *key, lx_buf *out)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, list);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, arr)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, key);
        if (cJSON_IsString(name) && name->valuestring[0]) lx_buf_printf(out, "%s\n", name->valuestring);
    }
    cJSON_Delete(root);
    return 0;
}

int lx_openai_parse_models(const char *body, size_t len, lx_buf *out)
{
    return lx_json_names(body, len, "data", "id", out);
}
