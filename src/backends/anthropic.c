/*
 * Anthropic's Messages API (POST /v1/messages) as a backend kind: the client speaks OpenAI's chat
 * completions, the backend Anthropic's; this file translates both ways. See kind.h.
 *
 * Request: the OpenAI body is read whole (cJSON) and a Messages body built from it, with x-api-key
 * (backends.NAME.api_key, from api_key_file or api_key_env), anthropic-version: 2023-06-01, and the
 * client's anthropic-beta header when it sent one. Every
 * member of the client's body is either translated, or, when it means something Anthropic cannot do
 * (n > 1, logprobs, penalties, seed, audio, ...), refused with a 400 naming it: nothing is silently
 * dropped, save x_* members (Lexora's own) and stream_options (the gateway always reads usage).
 * Only /v1/chat/completions can be translated; completions and embeddings get a 400.
 *
 * Answer: a Messages answer becomes a chat.completion (text, tool_calls with the arguments as a JSON
 * string, finish_reason, usage with cache reads and writes counted in prompt_tokens as Anthropic counts
 * them apart); an error {"type":"error","error":{"type","message"}} becomes OpenAI's envelope, status kept.
 *
 * Stream: Anthropic's SSE events, one at a time, become chat.completion.chunk events: message_start a
 * role chunk, text deltas content chunks, a tool_use block and its input_json_delta pieces tool_calls
 * deltas (index counted over the tool_use blocks), message_delta a finish chunk and a usage-only chunk,
 * message_stop [DONE]; ping and content_block_stop make nothing; an error event makes an OpenAI error
 * event and [DONE] (the relay counts the stream failed). Blocks arrive one after another, so only the
 * current block's tool index is kept.
 *
 * Pass-through: a client of the Anthropic front (/v1/messages, ctx->front) already speaks the Messages API:
 * its body goes on as it came, only the model renamed (and x_* members dropped), with its own
 * anthropic-version (else 2023-06-01) and anthropic-beta; the answer, whole or streamed, comes back as it is
 * (messages_native: the pipeline relays it and reads its usage itself).
 *
 * Outcome: 429 busy (Retry-After honoured by the pipeline), 529 overloaded_error and every 5xx failing:
 * retryable while no byte reached the client.
 * Readiness and discovery: GET /v1/models, which needs the key: probe_headers sends it.
 * The key is only ever written into a header line: never into a message, a log or an error.
 * Pure functions; any thread.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backends/kinds.h"
#include "http/server.h"

#define ANTHROPIC_VERSION "anthropic-version: 2023-06-01"
#define ID_MAX            128
#define MODEL_MAX         160

/* ---------- the request ---------- */

typedef struct {
    const lx_kind_ctx *ctx;
    lx_kind_error *err;
    cJSON *out;      /* the Messages body */
    cJSON *system;   /* its system blocks (an array), NULL until one */
    cJSON *messages; /* its messages */
} req_build;

static int refuse(req_build *rb, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int refuse(req_build *rb, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rb->err->message, sizeof rb->err->message, fmt, ap);
    va_end(ap);
    rb->err->err = LX_ERR_INVALID_FIELD;
    rb->err->param = param;
    return -1;
}

static const cJSON *member(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static bool absent(const cJSON *v) { return v == NULL || cJSON_IsNull(v); }

/* A text block, or NULL for empty text (Anthropic refuses empty text blocks). */
static cJSON *text_block(const char *text)
{
    if (text[0] == '\0') return NULL;
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "text");
    cJSON_AddStringToObject(b, "text", text);
    return b;
}

static void add_block(cJSON *blocks, cJSON *b)
{
    if (b) cJSON_AddItemToArray(blocks, b);
}

/* data:MEDIA;base64,DATA → a base64 source; http(s):// → a url source. */
static cJSON *image_block(req_build *rb, const cJSON *part, size_t i, size_t j)
{
    const cJSON *iu = member(part, "image_url");
    const cJSON *url = cJSON_IsObject(iu) ? member(iu, "url") : iu;
    if (!cJSON_IsString(url)) {
        refuse(rb, "messages", "messages[%zu].content[%zu].image_url.url must be a string", i, j);
        return NULL;
    }
    const char *u = url->valuestring;
    cJSON *src = cJSON_CreateObject();
    const char *semi = strchr(u, ';');
    if (strncmp(u, "data:", 5) == 0 && semi && strncmp(semi, ";base64,", 8) == 0) {
        char media[64];
        snprintf(media, sizeof media, "%.*s", (int)(semi - u - 5), u + 5);
        cJSON_AddStringToObject(src, "type", "base64");
        cJSON_AddStringToObject(src, "media_type", media);
        cJSON_AddStringToObject(src, "data", semi + 8);
    } else if (strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0) {
        cJSON_AddStringToObject(src, "type", "url");
        cJSON_AddStringToObject(src, "url", u);
    } else {
        cJSON_Delete(src);
        refuse(rb, "messages",
               "messages[%zu].content[%zu].image_url.url: only data:<type>;base64, and http(s) URLs can be sent to an "
               "Anthropic backend",
               i, j);
        return NULL;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "image");
    cJSON_AddItemToObject(b, "source", src);
    return b;
}

/* A message's content (a string, or an array of parts) appended to blocks; images only where allowed. */
static int content_blocks(req_build *rb, const cJSON *content, size_t i, bool images, cJSON *blocks)
{
    if (absent(content)) return 0;
    if (cJSON_IsString(content)) {
        add_block(blocks, text_block(content->valuestring));
        return 0;
    }
    if (!cJSON_IsArray(content)) return refuse(rb, "messages", "messages[%zu].content must be a string or an array", i);
    size_t j = 0;
    for (const cJSON *part = content->child; part; part = part->next, j++) {
        const cJSON *type = member(part, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        const cJSON *text = member(part, "text");
        if (strcmp(t, "text") == 0 && cJSON_IsString(text)) {
            add_block(blocks, text_block(text->valuestring));
        } else if (strcmp(t, "image_url") == 0 && images) {
            cJSON *b = image_block(rb, part, i, j);
            if (b == NULL) return -1;
            cJSON_AddItemToArray(blocks, b);
        } else {
            return refuse(rb, "messages",
                          "messages[%zu].content[%zu]: a part of type \"%s\" cannot be sent to an Anthropic backend", i,
                          j, t);
        }
    }
    return 0;
}

/* Appends blocks as a turn of role, merged into the last turn when it has the same role (Anthropic's turns
 * alternate: consecutive tool results become one user turn). Takes blocks; an empty list adds nothing. */
static void add_turn(req_build *rb, const char *role, cJSON *blocks)
{
    if (cJSON_GetArraySize(blocks) == 0) {
        cJSON_Delete(blocks);
        return;
    }
    cJSON *last = cJSON_GetArrayItem(rb->messages, cJSON_GetArraySize(rb->messages) - 1);
    const cJSON *last_role = last ? member(last, "role") : NULL;
    if (cJSON_IsString(last_role) && strcmp(last_role->valuestring, role) == 0) {
        cJSON *into = cJSON_GetObjectItemCaseSensitive(last, "content");
        cJSON *b;
        while ((b = cJSON_DetachItemViaPointer(blocks, blocks->child)) != NULL)
            cJSON_AddItemToArray(into, b);
        cJSON_Delete(blocks);
        return;
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddItemToObject(m, "content", blocks);
    cJSON_AddItemToArray(rb->messages, m);
}

static int system_message(req_build *rb, const cJSON *m, size_t i)
{
    if (rb->system == NULL) rb->system = cJSON_CreateArray();
    return content_blocks(rb, member(m, "content"), i, false, rb->system);
}

/* One of an assistant's tool_calls → a tool_use block (the arguments' JSON text → the input object). */
static cJSON *tool_use_block(req_build *rb, const cJSON *call, size_t i, size_t k)
{
    const cJSON *id = member(call, "id"), *fn = member(call, "function");
    const cJSON *name = member(fn, "name"), *args = member(fn, "arguments");
    if (!cJSON_IsString(id) || !cJSON_IsString(name)) {
        refuse(rb, "messages", "messages[%zu].tool_calls[%zu] needs an id and a function.name", i, k);
        return NULL;
    }
    const char *text = cJSON_IsString(args) && args->valuestring[0] ? args->valuestring : "{}";
    cJSON *input = cJSON_Parse(text);
    if (!cJSON_IsObject(input)) {
        cJSON_Delete(input);
        refuse(rb, "messages", "messages[%zu].tool_calls[%zu].function.arguments is not a JSON object", i, k);
        return NULL;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "tool_use");
    cJSON_AddStringToObject(b, "id", id->valuestring);
    cJSON_AddStringToObject(b, "name", name->valuestring);
    cJSON_AddItemToObject(b, "input", input);
    return b;
}

static int assistant_message(req_build *rb, const cJSON *m, size_t i)
{
    cJSON *blocks = cJSON_CreateArray();
    if (content_blocks(rb, member(m, "content"), i, false, blocks) != 0) goto fail;
    const cJSON *calls = member(m, "tool_calls");
    if (!absent(calls) && !cJSON_IsArray(calls)) {
        refuse(rb, "messages", "messages[%zu].tool_calls must be an array", i);
        goto fail;
    }
    size_t k = 0;
    for (const cJSON *c = calls ? calls->child : NULL; c; c = c->next, k++) {
        cJSON *b = tool_use_block(rb, c, i, k);
        if (b == NULL) goto fail;
        cJSON_AddItemToArray(blocks, b);
    }
    add_turn(rb, "assistant", blocks);
    return 0;
fail:
    cJSON_Delete(blocks);
    return -1;
}

/* A tool message → a tool_result block in a user turn. */
static int tool_message(req_build *rb, const cJSON *m, size_t i)
{
    const cJSON *id = member(m, "tool_call_id"), *content = member(m, "content");
    if (!cJSON_IsString(id)) return refuse(rb, "messages", "messages[%zu] (role tool) needs a tool_call_id", i);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "tool_result");
    cJSON_AddStringToObject(b, "tool_use_id", id->valuestring);
    if (cJSON_IsString(content)) {
        cJSON_AddStringToObject(b, "content", content->valuestring);
    } else {
        cJSON *parts = cJSON_AddArrayToObject(b, "content");
        if (content_blocks(rb, content, i, false, parts) != 0) {
            cJSON_Delete(b);
            return -1;
        }
    }
    cJSON *blocks = cJSON_CreateArray();
    cJSON_AddItemToArray(blocks, b);
    add_turn(rb, "user", blocks);
    return 0;
}

static int user_message(req_build *rb, const cJSON *m, size_t i)
{
    cJSON *blocks = cJSON_CreateArray();
    if (content_blocks(rb, member(m, "content"), i, true, blocks) != 0) {
        cJSON_Delete(blocks);
        return -1;
    }
    add_turn(rb, "user", blocks);
    return 0;
}

static int put_messages(req_build *rb, const cJSON *ms)
{
    if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) == 0)
        return refuse(rb, "messages", "messages must be a non-empty array");
    rb->messages = cJSON_AddArrayToObject(rb->out, "messages");
    size_t i = 0;
    for (const cJSON *m = ms->child; m; m = m->next, i++) {
        const cJSON *role = member(m, "role");
        const char *r = cJSON_IsString(role) ? role->valuestring : "";
        int rc;
        if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0)
            rc = system_message(rb, m, i);
        else if (strcmp(r, "user") == 0)
            rc = user_message(rb, m, i);
        else if (strcmp(r, "assistant") == 0)
            rc = assistant_message(rb, m, i);
        else if (strcmp(r, "tool") == 0)
            rc = tool_message(rb, m, i);
        else
            rc = refuse(rb, "messages", "messages[%zu]: the role \"%s\" cannot be sent to an Anthropic backend", i, r);
        if (rc != 0) return -1;
    }
    if (cJSON_GetArraySize(rb->messages) == 0)
        return refuse(rb, "messages", "messages has no user or assistant content to send");
    return 0;
}

static int put_tools(req_build *rb, const cJSON *tools)
{
    if (!cJSON_IsArray(tools)) return refuse(rb, "tools", "tools must be an array");
    cJSON *out = cJSON_AddArrayToObject(rb->out, "tools");
    size_t k = 0;
    for (const cJSON *t = tools->child; t; t = t->next, k++) {
        const cJSON *type = member(t, "type"), *fn = member(t, "function");
        const cJSON *name = member(fn, "name"), *desc = member(fn, "description"), *params = member(fn, "parameters");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 || !cJSON_IsString(name))
            return refuse(rb, "tools",
                          "tools[%zu]: only function tools with a name can be sent to an Anthropic backend", k);
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "name", name->valuestring);
        if (cJSON_IsString(desc)) cJSON_AddStringToObject(a, "description", desc->valuestring);
        if (cJSON_IsObject(params))
            cJSON_AddItemToObject(a, "input_schema", cJSON_Duplicate(params, 1));
        else
            cJSON_AddItemToObject(a, "input_schema", cJSON_Parse("{\"type\":\"object\",\"properties\":{}}"));
        cJSON_AddItemToArray(out, a);
    }
    return 0;
}

/* tool_choice (auto / required → any / none / a named function → tool) and parallel_tool_calls. */
static int put_tool_choice(req_build *rb, const cJSON *choice, const cJSON *parallel)
{
    if (!absent(parallel) && !cJSON_IsBool(parallel))
        return refuse(rb, "parallel_tool_calls", "parallel_tool_calls must be a boolean");
    bool no_parallel = cJSON_IsFalse(parallel);
    if (absent(choice) && !no_parallel) return 0;
    cJSON *tc = cJSON_AddObjectToObject(rb->out, "tool_choice");
    const char *c = cJSON_IsString(choice) ? choice->valuestring : NULL;
    const cJSON *fn = member(choice, "function");
    const cJSON *name = member(fn, "name");
    if (absent(choice) || (c && strcmp(c, "auto") == 0)) {
        cJSON_AddStringToObject(tc, "type", "auto");
    } else if (c && strcmp(c, "required") == 0) {
        cJSON_AddStringToObject(tc, "type", "any");
    } else if (c && strcmp(c, "none") == 0) {
        cJSON_AddStringToObject(tc, "type", "none");
    } else if (cJSON_IsObject(choice) && cJSON_IsString(name)) {
        cJSON_AddStringToObject(tc, "type", "tool");
        cJSON_AddStringToObject(tc, "name", name->valuestring);
    } else {
        return refuse(rb, "tool_choice",
                      "tool_choice must be auto, required, none or {\"type\":\"function\","
                      "\"function\":{\"name\":...}}");
    }
    if (no_parallel && !(c && strcmp(c, "none") == 0)) cJSON_AddTrueToObject(tc, "disable_parallel_tool_use");
    return 0;
}

static int put_stop(req_build *rb, const cJSON *stop)
{
    cJSON *seqs = cJSON_CreateArray();
    if (cJSON_IsString(stop)) cJSON_AddItemToArray(seqs, cJSON_CreateString(stop->valuestring));
    for (const cJSON *s = cJSON_IsArray(stop) ? stop->child : NULL; s; s = s->next) {
        if (!cJSON_IsString(s)) {
            cJSON_Delete(seqs);
            return refuse(rb, "stop", "stop must be a string or an array of strings");
        }
        cJSON_AddItemToArray(seqs, cJSON_CreateString(s->valuestring));
    }
    if (!cJSON_IsString(stop) && !cJSON_IsArray(stop)) {
        cJSON_Delete(seqs);
        return refuse(rb, "stop", "stop must be a string or an array of strings");
    }
    cJSON_AddItemToObject(rb->out, "stop_sequences", seqs);
    return 0;
}

static int put_number(req_build *rb, const char *name, const cJSON *v, double max)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max)
        return refuse(rb, name, "%s must be a number from 0 to %g for an Anthropic backend", name, max);
    cJSON_AddNumberToObject(rb->out, name, v->valuedouble);
    return 0;
}

static int put_max_tokens(req_build *rb, const cJSON *root)
{
    const char *name = "max_completion_tokens";
    const cJSON *v = member(root, name);
    if (absent(v)) v = member(root, name = "max_tokens");
    double n = (double)rb->ctx->backend->default_max_tokens;
    if (!absent(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e9 || v->valuedouble != floor(v->valuedouble))
            return refuse(rb, name, "%s must be a positive integer", name);
        n = v->valuedouble;
    }
    if (n < 1) n = 4096;
    cJSON_AddNumberToObject(rb->out, "max_tokens", n);
    return 0;
}

static int put_user(req_build *rb, const cJSON *v)
{
    if (!cJSON_IsString(v)) return refuse(rb, "user", "user must be a string");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(rb->out, "metadata"), "user_id", v->valuestring);
    return 0;
}

/* Members that mean nothing to change when they hold their default value, and cannot be sent otherwise. */
static bool is_default(const char *key, const cJSON *v)
{
    if (absent(v)) return true;
    if (strcmp(key, "n") == 0) return cJSON_IsNumber(v) && v->valuedouble == 1;
    if (strcmp(key, "logprobs") == 0 || strcmp(key, "store") == 0) return cJSON_IsFalse(v);
    if (strcmp(key, "presence_penalty") == 0 || strcmp(key, "frequency_penalty") == 0)
        return cJSON_IsNumber(v) && v->valuedouble == 0;
    if (strcmp(key, "logit_bias") == 0) return cJSON_IsObject(v) && v->child == NULL;
    if (strcmp(key, "response_format") == 0) {
        const cJSON *t = member(v, "type");
        return cJSON_IsString(t) && strcmp(t->valuestring, "text") == 0;
    }
    if (strcmp(key, "modalities") == 0)
        return cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 && cJSON_IsString(v->child) &&
               strcmp(v->child->valuestring, "text") == 0;
    return false;
}

/* The name of a top-level member as static text (an error's param outlives the body); NULL when unknown. */
static const char *param_name(const char *key)
{
    static const char *const names[] = {
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "response_format",
        "audio",
        "modalities",
        "functions",
        "function_call",
        "prediction",
        "store",
        "metadata",
        "service_tier",
        "reasoning_effort",
        "web_search_options",
        "temperature",
        "top_p",
        "stop",
        "user",
        "tools",
        "verbosity",
    };
    for (size_t i = 0; i < LX_ARRAY_LEN(names); i++)
        if (strcmp(names[i], key) == 0) return names[i];
    return NULL;
}

/* One top-level member of the OpenAI body. */
static int put_member(req_build *rb, const cJSON *root, const cJSON *v)
{
    const char *k = v->string;
    if (strncmp(k, "x_", 2) == 0 || strcmp(k, "model") == 0 || strcmp(k, "messages") == 0 ||
        strcmp(k, "stream_options") == 0 || strcmp(k, "max_tokens") == 0 || strcmp(k, "max_completion_tokens") == 0 ||
        strcmp(k, "tool_choice") == 0 || strcmp(k, "parallel_tool_calls") == 0)
        return 0; /* read elsewhere (x_*: Lexora's own) */
    if (absent(v)) return 0;
    if (strcmp(k, "stream") == 0) {
        if (cJSON_IsTrue(v)) cJSON_AddTrueToObject(rb->out, "stream");
        return 0;
    }
    if (strcmp(k, "temperature") == 0) return put_number(rb, "temperature", v, 1);
    if (strcmp(k, "top_p") == 0) return put_number(rb, "top_p", v, 1);
    if (strcmp(k, "stop") == 0) return put_stop(rb, v);
    if (strcmp(k, "user") == 0) return put_user(rb, v);
    if (strcmp(k, "tools") == 0) return put_tools(rb, v);
    (void)root;
    if (is_default(k, v)) return 0;
    return refuse(rb, param_name(k), "%s cannot be translated to Anthropic's Messages API (backend %s); leave it out",
                  k, rb->ctx->backend->name);
}

static int build(req_build *rb, const cJSON *root)
{
    const cJSON *model = member(root, "model");
    const char *name = rb->ctx->set_model ? rb->ctx->set_model : cJSON_IsString(model) ? model->valuestring : NULL;
    if (name == NULL) return refuse(rb, "model", "model must be a string");
    cJSON_AddStringToObject(rb->out, "model", name);
    if (put_max_tokens(rb, root) != 0 || put_messages(rb, member(root, "messages")) != 0) return -1;
    if (rb->system && cJSON_GetArraySize(rb->system) > 0) {
        cJSON_AddItemToObject(rb->out, "system", rb->system);
        rb->system = NULL; /* the body owns it now */
    }
    for (const cJSON *v = root->child; v; v = v->next)
        if (put_member(rb, root, v) != 0) return -1;
    return put_tool_choice(rb, member(root, "tool_choice"), member(root, "parallel_tool_calls"));
}

static void put_auth(const lx_backend_conf *b, lx_kind_request *out)
{
    if (b->api_key) lx_kind_request_headerf(out, "x-api-key: %s", b->api_key);
    lx_kind_request_header(out, ANTHROPIC_VERSION);
}

/* The client's anthropic-beta header (beta features it asks Anthropic for), passed on as it came. */
static void put_beta(const lx_kind_ctx *ctx, lx_kind_request *out)
{
    lx_slice v;
    if (ctx->client == NULL || !lx_http_req_header(ctx->client, "anthropic-beta", &v) || v.len == 0 || v.len > 1024)
        return;
    lx_kind_request_headerf(out, "anthropic-beta: %.*s", (int)v.len, v.p);
}

/* The Anthropic front's request as it came (see the top of the file). */
static int native_request(const lx_kind_ctx *ctx, lx_kind_request *out, lx_kind_error *err)
{
    const lx_messages_front *fr = ctx->front;
    lx_body_fields f;
    lx_body_error be;
    if (lx_body_scan(fr->body.p, fr->body.len, &f, &be) != 0) {
        err->err = be.err;
        err->param = be.param;
        snprintf(err->message, sizeof err->message, "%s", be.message);
        return -1;
    }
    lx_body_rewrite_opts o = {.set_model = ctx->set_model};
    lx_buf_init(&out->body_buf, 0);
    if (lx_body_rewrite(fr->body.p, fr->body.len, &f, &o, &out->body_buf) != 0) return -1;
    out->body = (lx_slice){out->body_buf.p, out->body_buf.len};
    out->path = "/v1/messages";
    lx_kind_request_header(out, "Content-Type: application/json");
    if (ctx->backend->api_key) lx_kind_request_headerf(out, "x-api-key: %s", ctx->backend->api_key);
    if (fr->version.len && fr->version.len <= 64)
        lx_kind_request_headerf(out, "anthropic-version: %.*s", (int)fr->version.len, fr->version.p);
    else
        lx_kind_request_header(out, ANTHROPIC_VERSION);
    if (fr->beta.len && fr->beta.len <= 1024)
        lx_kind_request_headerf(out, "anthropic-beta: %.*s", (int)fr->beta.len, fr->beta.p);
    return 0;
}

static int anthropic_request(const lx_kind_ctx *ctx, lx_kind_request *out, lx_kind_error *err)
{
    if (ctx->front && ctx->ep == LX_EP_CHAT) return native_request(ctx, out, err);
    if (ctx->ep != LX_EP_CHAT) {
        snprintf(err->message, sizeof err->message,
                 "backend %s is of type anthropic, which serves only /v1/chat/completions (not %s)", ctx->backend->name,
                 lx_endpoint_path(ctx->ep));
        err->err = LX_ERR_INVALID_FIELD;
        err->param = "model";
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(ctx->body.p, ctx->body.len);
    req_build rb = {.ctx = ctx, .err = err, .out = cJSON_CreateObject()};
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        err->err = LX_ERR_INVALID_JSON;
        goto done;
    }
    if (build(&rb, root) != 0) goto done;
    char *text = cJSON_PrintUnformatted(rb.out);
    if (text == NULL) goto done;
    lx_buf_init(&out->body_buf, 0);
    rc = lx_buf_append_str(&out->body_buf, text);
    cJSON_free(text);
    out->body = (lx_slice){out->body_buf.p, out->body_buf.len};
    out->path = "/v1/messages";
    lx_kind_request_header(out, "Content-Type: application/json");
    put_auth(ctx->backend, out);
    put_beta(ctx, out);
done:
    cJSON_Delete(rb.system);
    cJSON_Delete(rb.out);
    cJSON_Delete(root);
    return rc;
}

static void anthropic_probe_headers(const lx_backend_conf *b, lx_kind_request *out) { put_auth(b, out); }

/* ---------- the answer ---------- */

static const char *finish_reason(const char *stop_reason)
{
    if (stop_reason == NULL) return "stop";
    if (strcmp(stop_reason, "max_tokens") == 0 || strcmp(stop_reason, "model_context_window_exceeded") == 0)
        return "length";
    if (strcmp(stop_reason, "tool_use") == 0) return "tool_calls";
    if (strcmp(stop_reason, "refusal") == 0) return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn */
}

/* A whole number from 0 to max, or -1 (what a backend sends is not trusted to fit a long). */
static long whole(const cJSON *v, double max)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= max)) return -1;
    return (long)v->valuedouble;
}

static long count(const cJSON *usage, const char *key)
{
    long n = whole(member(usage, key), 1e15);
    return n < 0 ? 0 : n;
}

/* Anthropic's input_tokens leave out the cache's reads and writes; OpenAI's prompt_tokens count them. */
typedef struct {
    long input, cache_read, cache_write, output;
} usage_counts;

static void read_usage(const cJSON *u, usage_counts *c)
{
    if (!cJSON_IsObject(u)) return;
    if (member(u, "input_tokens")) c->input = count(u, "input_tokens");
    if (member(u, "cache_read_input_tokens")) c->cache_read = count(u, "cache_read_input_tokens");
    if (member(u, "cache_creation_input_tokens")) c->cache_write = count(u, "cache_creation_input_tokens");
    if (member(u, "output_tokens")) c->output = count(u, "output_tokens");
}

static void put_usage(lx_buf *b, const usage_counts *c)
{
    long prompt = c->input + c->cache_read + c->cache_write;
    lx_buf_printf(b,
                  "\"usage\":{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld,"
                  "\"prompt_tokens_details\":{\"cached_tokens\":%ld}}",
                  prompt, c->output, prompt + c->output, c->cache_read);
}

static void put_str(lx_buf *b, const char *s)
{
    lx_buf_append(b, "\"", 1);
    lx_buf_json_escape(b, s, strlen(s));
    lx_buf_append(b, "\"", 1);
}

static const char *str_of(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = member(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* An Anthropic error body → OpenAI's envelope (status kept; code from Anthropic's error type). */
static const char *code_of(const char *type)
{
    static const struct {
        const char *type, *code;
    } rows[] = {
        {"invalid_request_error", "invalid_request"},
        {"authentication_error", "invalid_api_key"},
        {"permission_error", "permission_denied"},
        {"not_found_error", "model_not_found"},
        {"request_too_large", "request_too_large"},
        {"rate_limit_error", "rate_limit_exceeded"},
        {"api_error", "upstream_error"},
        {"overloaded_error", "overloaded"},
    };
    for (size_t i = 0; type && i < LX_ARRAY_LEN(rows); i++)
        if (strcmp(rows[i].type, type) == 0) return rows[i].code;
    return NULL;
}

static int error_answer(int status, lx_slice body, lx_buf *out)
{
    cJSON *root = cJSON_ParseWithLength(body.p ? body.p : "", body.len);
    const cJSON *e = member(root, "error");
    const char *type = str_of(e, "type", NULL), *message = str_of(e, "message", NULL);
    int rc;
    if (message == NULL && cJSON_IsObject(e) && member(e, "code")) /* already OpenAI's (a proxy in between) */
        rc = lx_openai_answer(NULL, status, body, out);
    else
        rc = lx_backend_error_envelope(status, message, code_of(type), out) == 0;
    cJSON_Delete(root);
    return rc;
}

static void put_tool_calls(lx_buf *b, const cJSON *content)
{
    bool first = true;
    for (const cJSON *blk = cJSON_IsArray(content) ? content->child : NULL; blk; blk = blk->next) {
        if (strcmp(str_of(blk, "type", ""), "tool_use") != 0) continue;
        const cJSON *input = member(blk, "input");
        char *args = input ? cJSON_PrintUnformatted(input) : NULL;
        lx_buf_append_str(b, first ? ",\"tool_calls\":[" : ",");
        lx_buf_append_str(b, "{\"id\":");
        put_str(b, str_of(blk, "id", ""));
        lx_buf_append_str(b, ",\"type\":\"function\",\"function\":{\"name\":");
        put_str(b, str_of(blk, "name", ""));
        lx_buf_append_str(b, ",\"arguments\":");
        put_str(b, args ? args : "{}");
        lx_buf_append_str(b, "}}");
        cJSON_free(args);
        first = false;
    }
    if (!first) lx_buf_append_str(b, "]");
}

/* The text blocks' text, one after the other; false when there is none. */
static bool put_text(lx_buf *b, const cJSON *content)
{
    bool any = false;
    for (const cJSON *blk = cJSON_IsArray(content) ? content->child : NULL; blk; blk = blk->next) {
        const char *t = str_of(blk, "text", NULL);
        if (strcmp(str_of(blk, "type", ""), "text") != 0 || t == NULL) continue;
        if (!any) lx_buf_append(b, "\"", 1);
        lx_buf_json_escape(b, t, strlen(t));
        any = true;
    }
    if (any) lx_buf_append(b, "\"", 1);
    return any;
}

static int message_answer(lx_slice body, lx_buf *out)
{
    cJSON *root = cJSON_ParseWithLength(body.p ? body.p : "", body.len);
    if (!cJSON_IsObject(root) || strcmp(str_of(root, "type", ""), "message") != 0) {
        cJSON_Delete(root);
        return lx_backend_error_envelope(502, "The Anthropic backend answered something other than a message.",
                                         "upstream_bad_response", out) == 0;
    }
    const cJSON *content = member(root, "content");
    usage_counts u = {0};
    read_usage(member(root, "usage"), &u);
    lx_buf_append_str(out, "{\"id\":");
    put_str(out, str_of(root, "id", ""));
    lx_buf_printf(out, ",\"object\":\"chat.completion\",\"created\":%lld,\"model\":", (long long)time(NULL));
    put_str(out, str_of(root, "model", ""));
    lx_buf_append_str(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if (!put_text(out, content)) lx_buf_append_str(out, "null");
    put_tool_calls(out, content);
    lx_buf_append_str(out, "},\"logprobs\":null,\"finish_reason\":");
    put_str(out, finish_reason(str_of(root, "stop_reason", NULL)));
    lx_buf_append_str(out, "}],");
    put_usage(out, &u);
    int rc = lx_buf_append_str(out, "}");
    cJSON_Delete(root);
    return rc == 0;
}

static int anthropic_answer(const lx_kind_ctx *ctx, int status, lx_slice body, lx_buf *out)
{
    if (ctx && ctx->front) return 0; /* the Anthropic front's: passed on as it is */
    if (status >= 400) return error_answer(status, body, out);
    if (status < 200 || status >= 300) return 0;
    return message_answer(body, out);
}

/* ---------- the stream ---------- */

typedef struct {
    char id[ID_MAX];       /* JSON-escaped */
    char model[MODEL_MAX]; /* JSON-escaped */
    long long created;
    usage_counts usage;
    bool started;
    long block;      /* the current content block's index, -1 none */
    long block_tool; /* its tool_calls index, -1 when it is not a tool_use block */
    long tools;      /* tool_use blocks so far */
} stream_state;

static void copy_escaped(char *dst, size_t cap, const char *s)
{
    lx_buf b;
    lx_buf_init(&b, cap - 1);
    if (lx_buf_json_escape(&b, s, strlen(s)) != 0 || b.p == NULL)
        dst[0] = '\0';
    else
        snprintf(dst, cap, "%s", b.p);
    lx_buf_free(&b);
}

/* data: {"id":..,"object":"chat.completion.chunk","created":..,"model":..,"choices":[ — the caller ends it */
static void chunk_open(const stream_state *st, lx_buf *out)
{
    lx_buf_printf(out,
                  "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":\"%s\","
                  "\"choices\":[",
                  st->id, st->created, st->model);
}

/* A chunk whose one choice has this delta (JSON object text) and finish_reason (NULL: null). */
static int put_chunk(const stream_state *st, lx_buf *out, const char *delta, size_t len, const char *finish)
{
    chunk_open(st, out);
    lx_buf_append_str(out, "{\"index\":0,\"delta\":");
    lx_buf_append(out, delta, len);
    lx_buf_append_str(out, ",\"logprobs\":null,\"finish_reason\":");
    if (finish)
        put_str(out, finish);
    else
        lx_buf_append_str(out, "null");
    return lx_buf_append_str(out, "}]}\n\n");
}

static int put_delta_text(const stream_state *st, lx_buf *out, const char *text)
{
    if (text == NULL || text[0] == '\0') return 0;
    lx_buf d;
    lx_buf_init(&d, 0);
    lx_buf_append_str(&d, "{\"content\":");
    put_str(&d, text);
    lx_buf_append_str(&d, "}");
    int rc = put_chunk(st, out, d.p, d.len, NULL);
    lx_buf_free(&d);
    return rc;
}

static int put_usage_chunk(const stream_state *st, lx_buf *out)
{
    chunk_open(st, out);
    lx_buf_append_str(out, "],");
    put_usage(out, &st->usage);
    return lx_buf_append_str(out, "}\n\n");
}

static int on_message_start(stream_state *st, const cJSON *ev, lx_buf *out)
{
    const cJSON *msg = member(ev, "message");
    copy_escaped(st->id, sizeof st->id, str_of(msg, "id", ""));
    copy_escaped(st->model, sizeof st->model, str_of(msg, "model", ""));
    st->created = (long long)time(NULL);
    read_usage(member(msg, "usage"), &st->usage);
    st->started = true;
    st->block = st->block_tool = -1;
    static const char role[] = "{\"role\":\"assistant\",\"content\":\"\"}";
    return put_chunk(st, out, role, sizeof role - 1, NULL);
}

/* A tool_calls delta: {"tool_calls":[{"index":i, <rest>}]} */
static int put_tool_delta(const stream_state *st, lx_buf *out, const char *rest)
{
    lx_buf d;
    lx_buf_init(&d, 0);
    lx_buf_printf(&d, "{\"tool_calls\":[{\"index\":%ld,%s}]}", st->block_tool, rest);
    int rc = put_chunk(st, out, d.p, d.len, NULL);
    lx_buf_free(&d);
    return rc;
}

static int on_block_start(stream_state *st, const cJSON *ev, lx_buf *out)
{
    const cJSON *blk = member(ev, "content_block");
    const cJSON *index = member(ev, "index");
    st->block = whole(index, 1e9);
    st->block_tool = -1;
    const char *type = str_of(blk, "type", "");
    if (strcmp(type, "text") == 0) return put_delta_text(st, out, str_of(blk, "text", ""));
    if (strcmp(type, "tool_use") != 0) return 0; /* thinking and server tools: not OpenAI's */
    st->block_tool = st->tools++;
    lx_buf rest;
    lx_buf_init(&rest, 0);
    lx_buf_append_str(&rest, "\"id\":");
    put_str(&rest, str_of(blk, "id", ""));
    lx_buf_append_str(&rest, ",\"type\":\"function\",\"function\":{\"name\":");
    put_str(&rest, str_of(blk, "name", ""));
    lx_buf_append_str(&rest, ",\"arguments\":\"\"}");
    int rc = put_tool_delta(st, out, rest.p);
    lx_buf_free(&rest);
    return rc;
}

static int on_block_delta(stream_state *st, const cJSON *ev, lx_buf *out)
{
    const cJSON *delta = member(ev, "delta");
    const cJSON *index = member(ev, "index");
    const char *type = str_of(delta, "type", "");
    if (whole(index, 1e9) != st->block || st->block < 0) return -1; /* not the open block */
    if (strcmp(type, "text_delta") == 0) return put_delta_text(st, out, str_of(delta, "text", ""));
    if (strcmp(type, "input_json_delta") != 0 || st->block_tool < 0) return 0; /* thinking, signatures */
    const char *part = str_of(delta, "partial_json", "");
    if (part[0] == '\0') return 0;
    lx_buf rest;
    lx_buf_init(&rest, 0);
    lx_buf_append_str(&rest, "\"function\":{\"arguments\":");
    put_str(&rest, part);
    lx_buf_append_str(&rest, "}");
    int rc = put_tool_delta(st, out, rest.p);
    lx_buf_free(&rest);
    return rc;
}

static int on_message_delta(stream_state *st, const cJSON *ev, lx_buf *out)
{
    read_usage(member(ev, "usage"), &st->usage);
    const char *stop = str_of(member(ev, "delta"), "stop_reason", NULL);
    if (put_chunk(st, out, "{}", 2, finish_reason(stop)) != 0) return -1;
    return put_usage_chunk(st, out);
}

/* An error event: the usage so far (for the ledger), OpenAI's error event, then the end. */
static int on_error(stream_state *st, const cJSON *ev, lx_buf *out)
{
    const cJSON *e = member(ev, "error");
    const char *type = str_of(e, "type", NULL);
    if (st->started && put_usage_chunk(st, out) != 0) return -1;
    lx_buf_append_str(out, "data: ");
    int status = type && strcmp(type, "overloaded_error") == 0 ? 529 : 500;
    if (lx_backend_error_envelope(status, str_of(e, "message", "The Anthropic backend failed during the stream."),
                                  code_of(type), out) != 0)
        return -1;
    return lx_buf_append_str(out, "\n\ndata: [DONE]\n\n");
}

/* The data: line of an event (Anthropic sends one per event). */
static bool event_data(lx_slice ev, lx_slice *data)
{
    const char *p = ev.p, *end = ev.p + ev.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        if (n > 0 && p[n - 1] == '\r') n--;
        if (n >= 5 && memcmp(p, "data:", 5) == 0) {
            size_t skip = n > 5 && p[5] == ' ' ? 6 : 5;
            *data = (lx_slice){p + skip, n - skip};
            return true;
        }
        p = nl ? nl + 1 : end;
    }
    return false;
}

static int anthropic_event(void *state, const lx_kind_ctx *ctx, lx_slice ev, lx_buf *out)
{
    (void)ctx;
    stream_state *st = state;
    lx_slice data;
    if (!event_data(ev, &data)) return 0; /* a comment or an event line alone */
    cJSON *root = cJSON_ParseWithLength(data.p, data.len);
    const char *type = str_of(root, "type", NULL);
    int rc = 0;
    if (type == NULL)
        rc = -1;
    else if (strcmp(type, "message_start") == 0)
        rc = on_message_start(st, root, out);
    else if (!st->started && strcmp(type, "error") != 0)
        rc = strcmp(type, "ping") == 0 ? 0 : -1; /* nothing before message_start but ping */
    else if (strcmp(type, "content_block_start") == 0)
        rc = on_block_start(st, root, out);
    else if (strcmp(type, "content_block_delta") == 0)
        rc = on_block_delta(st, root, out);
    else if (strcmp(type, "content_block_stop") == 0)
        st->block = st->block_tool = -1;
    else if (strcmp(type, "message_delta") == 0)
        rc = on_message_delta(st, root, out);
    else if (strcmp(type, "message_stop") == 0)
        rc = lx_buf_append_str(out, "data: [DONE]\n\n");
    else if (strcmp(type, "error") == 0)
        rc = on_error(st, root, out);
    /* ping, and event types added later: nothing */
    cJSON_Delete(root);
    return rc;
}

/* 429 busy; 529 overloaded and every 5xx failing (retryable before the first byte). */
static lx_outcome anthropic_outcome(lx_up_result r, int status)
{
    if (r == LX_UP_OK && status >= 500) return LX_OUT_FAILING;
    return lx_outcome_of(r, status);
}

const lx_kind lx_kind_anthropic = {
    .name = "anthropic",
    .request = anthropic_request,
    .answer = anthropic_answer,
    .stream_framing = LX_FRAME_SSE,
    .stream_state_size = sizeof(stream_state),
    .stream_event = anthropic_event,
    .outcome = anthropic_outcome,
    .health_path = "/v1/models",
    .models_path = "/v1/models",
    .parse_models = lx_openai_parse_models,
    .probe_headers = anthropic_probe_headers,
    .messages_native = true,
};
