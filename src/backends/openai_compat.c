/*
 * What the OpenAI-compatible kinds share (vLLM, llama.cpp's server, Ollama's /v1, any OpenAI-compatible
 * server): the request is the client's own, spliced (api/body.h) rather than rebuilt; streams are OpenAI's
 * SSE already and pass through; error bodies are brought to OpenAI's envelope; /v1/models lists models as
 * {"data":[{"id":...}]}. See kind.h.
 *
 * Also the pieces Ollama's and llama.cpp's kinds share (declared in kinds.h): their error bodies read and
 * rebuilt as OpenAI's envelope (status kept, message kept, type and code from one table by status), a
 * member cut out of a JSON object byte for byte (the rest copied unchanged), and SSE data events.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "backends/kinds.h"

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

/* ---------- error envelopes and stream edits for Ollama and llama.cpp ---------- */

/* Takes out back to len bytes (what a failed append left). */
static void back_to(lx_buf *b, size_t len)
{
    b->len = len;
    if (b->p) b->p[len] = '\0';
}

typedef struct {
    int status;
    const char *type, *code;
} status_row;

/* OpenAI's own choices: every 4xx an invalid_request_error (429 a "requests" limit), every 5xx a server_error. */
static const status_row status_rows[] = {
    {400, "invalid_request_error", "invalid_request"},
    {401, "invalid_request_error", "invalid_api_key"},
    {403, "invalid_request_error", "permission_denied"},
    {404, "invalid_request_error", "model_not_found"},
    {429, "requests", "rate_limit_exceeded"},
    {503, "server_error", "upstream_unavailable"},
};

static status_row row_for(int status)
{
    for (size_t i = 0; i < LX_ARRAY_LEN(status_rows); i++)
        if (status_rows[i].status == status) return status_rows[i];
    if (status >= 500) return (status_row){status, "server_error", "upstream_error"};
    return (status_row){status, "invalid_request_error", "upstream_error"};
}

static void put_string(lx_buf *out, const char *s)
{
    lx_buf_append(out, "\"", 1);
    lx_buf_json_escape(out, s, strlen(s));
    lx_buf_append(out, "\"", 1);
}

int lx_backend_error_envelope(int status, const char *message, const char *code, lx_buf *out)
{
    status_row row = row_for(status);
    char fallback[80];
    if (message == NULL || message[0] == '\0') {
        snprintf(fallback, sizeof fallback, "The backend answered HTTP %d.", status);
        message = fallback;
    }
    size_t old = out->len;
    lx_buf_append_str(out, "{\"error\":{\"message\":");
    put_string(out, message);
    lx_buf_append_str(out, ",\"type\":");
    put_string(out, row.type);
    lx_buf_append_str(out, ",\"param\":null,\"code\":");
    put_string(out, code ? code : row.code);
    if (lx_buf_append_str(out, "}}") != 0) {
        back_to(out, old);
        return -1;
    }
    return 0;
}

/* The string member `key` of obj, or NULL. */
static const char *str_member(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int lx_backend_error_read(const char *body, size_t len, lx_backend_error *out)
{
    *out = (lx_backend_error){0};
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    int rc = 0;
    if (cJSON_IsString(e)) { /* Ollama's native {"error":"..."} */
        snprintf(out->message, sizeof out->message, "%s", e->valuestring);
        rc = 1;
    } else if (cJSON_IsObject(e) && str_member(e, "message")) { /* Ollama's /v1, llama.cpp's */
        snprintf(out->message, sizeof out->message, "%s", str_member(e, "message"));
        snprintf(out->type, sizeof out->type, "%s", str_member(e, "type") ? str_member(e, "type") : "");
        rc = 1;
    }
    cJSON_Delete(root);
    return rc;
}

/* Whitespace JSON allows between tokens. */
static bool json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int lx_json_cut_member(const char *obj, size_t len, const char *key, lx_buf *out)
{
    lx_slice v;
    if (!lx_json_find_member(obj, len, key, &v)) return 0;
    size_t vstart = (size_t)(v.p - obj), vend = vstart + v.len, klen = strlen(key), k = vstart;
    while (k > 0 && json_ws(obj[k - 1]))
        k--;
    if (k == 0 || obj[--k] != ':') return 0;
    while (k > 0 && json_ws(obj[k - 1]))
        k--;
    if (k < klen + 2 || obj[k - 1] != '"' || memcmp(obj + k - 1 - klen, key, klen) != 0 || obj[k - 2 - klen] != '"')
        return 0; /* a key written with escapes: left alone */
    size_t from = k - 2 - klen, to = vend, p = from;
    while (p > 0 && json_ws(obj[p - 1]))
        p--;
    if (p > 0 && obj[p - 1] == ',') {
        from = p - 1; /* ", "key": value" */
    } else {
        size_t q = vend;
        while (q < len && json_ws(obj[q]))
            q++;
        if (q < len && obj[q] == ',') to = q + 1; /* the first member: its comma after */
    }
    if (lx_buf_append(out, obj, from) != 0 || lx_buf_append(out, obj + to, len - to) != 0) return -1;
    return 1;
}

bool lx_sse_data_json(lx_slice event, lx_slice *json)
{
    if (event.len < 5 || memcmp(event.p, "data:", 5) != 0 || memchr(event.p, '\n', event.len)) return false;
    size_t i = 5;
    while (i < event.len && event.p[i] == ' ')
        i++;
    if (i == event.len || event.p[i] != '{') return false;
    *json = (lx_slice){event.p + i, event.len - i};
    return true;
}

int lx_sse_put_data(lx_buf *out, const char *json, size_t len)
{
    int rc = lx_buf_append(out, "data: ", 6);
    rc |= lx_buf_append(out, json, len);
    rc |= lx_buf_append(out, "\n\n", 2);
    return rc ? -1 : 0;
}

int lx_sse_put_event(lx_buf *out, lx_slice event)
{
    int rc = lx_buf_append(out, event.p, event.len);
    rc |= lx_buf_append(out, "\n\n", 2);
    return rc ? -1 : 0;
}

/* ---------- loading and unloading (backends/loader.h) ---------- */

int lx_kind_control(const lx_kind_ctx *ctx, lx_kind_request *out, const char *path, const char *k1, const char *v1,
                    const char *k2, const char *v2, const char *raw)
{
    out->path = path;
    if (ctx->backend->api_key) lx_kind_request_headerf(out, "Authorization: Bearer %s", ctx->backend->api_key);
    lx_buf_init(&out->body_buf, 0);
    lx_buf_append_str(&out->body_buf, "{");
    const char *keys[] = {k1, k2}, *vals[] = {v1, v2};
    bool first = true;
    for (size_t i = 0; i < 2; i++) {
        if (keys[i] == NULL) continue;
        lx_buf_printf(&out->body_buf, "%s\"%s\":\"", first ? "" : ",", keys[i]);
        lx_buf_json_escape(&out->body_buf, vals[i], strlen(vals[i]));
        lx_buf_append_str(&out->body_buf, "\"");
        first = false;
    }
    if (raw) lx_buf_printf(&out->body_buf, "%s%s", first ? "" : ",", raw);
    int rc = lx_buf_append_str(&out->body_buf, "}");
    out->body = (lx_slice){out->body_buf.p, out->body_buf.len};
    return rc;
}
