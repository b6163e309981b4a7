/*
 * Anthropic Messages ⇄ OpenAI chat.completions (api/messages.h says what maps to what).
 * Request and answer go through cJSON trees built fresh per call and freed before returning; a stream
 * keeps only its small state and the bytes of one incomplete event (capped). Every string that reaches
 * out is escaped by cJSON or lx_buf_json_escape, so out is always valid JSON / SSE.
 */
#include "api/messages.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* snprintf where cutting a long text short is what is wanted (a field path, a message): a plain call lets the
 * compiler's truncation warning fire on every one. */
static void textf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void textf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

/* ---------- request ---------- */

typedef struct {
    lx_messages_error *e;
    cJSON *msgs; /* the OpenAI messages */
} req_ctx;

static int refuse(lx_messages_error *e, const char *param, const char *fmt, const char *what)
{
    e->err = LX_ERR_INVALID_FIELD;
    textf(e->param, sizeof e->param, "%s", param);
    char text[200];
    textf(text, sizeof text, fmt, what ? what : "");
    textf(e->message, sizeof e->message, "%s: %s", param, text);
    return -1;
}

static const cJSON *member(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static bool is_int(const cJSON *v, double min)
{
    return cJSON_IsNumber(v) && v->valuedouble >= min && v->valuedouble <= 9e15 &&
           floor(v->valuedouble) == v->valuedouble;
}

/* Members a block or tool may carry that are hints only. */
static bool hint_key(const char *k) { return strcmp(k, "cache_control") == 0; }

/* Every member of o is one of keys (or a hint); else 400 naming it. */
static int only_keys(const cJSON *o, const char *const *keys, const char *path, lx_messages_error *e)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, o)
    {
        bool ok = hint_key(m->string);
        for (size_t i = 0; keys[i] && !ok; i++)
            ok = strcmp(keys[i], m->string) == 0;
        if (!ok) {
            char p[96];
            textf(p, sizeof p, "%s.%s", path, m->string);
            return refuse(e, p, "the field %s is not supported by this gateway", m->string);
        }
    }
    return 0;
}

static const char *block_type(const cJSON *b)
{
    const cJSON *t = member(b, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* A text block's text, or NULL after refusing. */
static const char *text_of(const cJSON *b, const char *path, lx_messages_error *e)
{
    static const char *const keys[] = {"type", "text", "citations", NULL};
    const cJSON *t = member(b, "text");
    char p[96];
    textf(p, sizeof p, "%s.text", path);
    if (!cJSON_IsString(t)) {
        refuse(e, p, "Field required (a string)%s", NULL);
        return NULL;
    }
    if (only_keys(b, keys, path, e)) return NULL;
    return t->valuestring;
}

/* An image block → {"type":"image_url","image_url":{"url":...}}, or NULL after refusing. */
static cJSON *image_part(const cJSON *b, const char *path, lx_messages_error *e)
{
    static const char *const keys[] = {"type", "source", NULL};
    if (only_keys(b, keys, path, e)) return NULL;
    const cJSON *src = member(b, "source");
    const char *st = cJSON_IsObject(src) ? block_type(src) : NULL;
    char p[96];
    textf(p, sizeof p, "%s.source", path);
    lx_buf url;
    lx_buf_init(&url, 0);
    if (st && strcmp(st, "base64") == 0 && cJSON_IsString(member(src, "media_type")) &&
        cJSON_IsString(member(src, "data"))) {
        lx_buf_printf(&url, "data:%s;base64,%s", member(src, "media_type")->valuestring,
                      member(src, "data")->valuestring);
    } else if (st && strcmp(st, "url") == 0 && cJSON_IsString(member(src, "url"))) {
        lx_buf_append_str(&url, member(src, "url")->valuestring);
    } else {
        refuse(e, p, "only base64 and url image sources are supported%s", NULL);
        return NULL;
    }
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "type", "image_url");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(part, "image_url"), "url", url.p);
    lx_buf_free(&url);
    return part;
}

/* A system prompt or tool_result content: a string, or text blocks joined by sep. */
static int joined_text(const cJSON *c, const char *path, const char *sep, lx_buf *out, lx_messages_error *e)
{
    if (cJSON_IsString(c)) return lx_buf_append_str(out, c->valuestring), 0;
    if (!cJSON_IsArray(c)) return refuse(e, path, "must be a string or an array of text blocks%s", NULL);
    int i = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, c)
    {
        char p[96];
        textf(p, sizeof p, "%s.%d", path, i);
        const char *t = cJSON_IsObject(b) ? block_type(b) : NULL;
        if (t == NULL || strcmp(t, "text") != 0) {
            textf(p, sizeof p, "%s.%d.type", path, i);
            return refuse(e, p, "only text blocks can be translated here (got %s)", t ? t : "no type");
        }
        const char *text = text_of(b, p, e);
        if (text == NULL) return -1;
        if (i++ > 0) lx_buf_append_str(out, sep);
        lx_buf_append_str(out, text);
    }
    return 0;
}

/*
 * A tool_result's content: a string, or text and image blocks. The text goes into the tool message (blocks joined
 * by "\n"); an OpenAI tool message carries text only, so an image goes into the user message that follows the
 * tool messages (parts), and the tool's text says so where it stood ("[image follows]").
 */
static int tool_content(const cJSON *content, const char *path, lx_buf *text, cJSON *parts, lx_messages_error *e)
{
    if (!cJSON_IsArray(content)) return joined_text(content, path, "\n", text, e);
    int i = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, content)
    {
        char p[96];
        textf(p, sizeof p, "%s.%d", path, i);
        if (i++ > 0) lx_buf_append_str(text, "\n");
        const char *t = cJSON_IsObject(b) ? block_type(b) : NULL;
        if (t && strcmp(t, "image") == 0) {
            cJSON *part = image_part(b, p, e);
            if (part == NULL) return -1;
            cJSON_AddItemToArray(parts, part);
            lx_buf_append_str(text, "[image follows]");
            continue;
        }
        if (t == NULL || strcmp(t, "text") != 0) {
            textf(p, sizeof p, "%s.%d.type", path, i - 1);
            return refuse(e, p, "only text and image blocks can be translated here (got %s)", t ? t : "no type");
        }
        const char *s = text_of(b, p, e);
        if (s == NULL) return -1;
        lx_buf_append_str(text, s);
    }
    return 0;
}

static int tool_result(req_ctx *c, const cJSON *b, const char *path, cJSON *parts)
{
    static const char *const keys[] = {"type", "tool_use_id", "content", "is_error", NULL};
    if (only_keys(b, keys, path, c->e)) return -1;
    const cJSON *id = member(b, "tool_use_id");
    char p[96];
    textf(p, sizeof p, "%s.tool_use_id", path);
    if (!cJSON_IsString(id)) return refuse(c->e, p, "Field required (a string)%s", NULL);
    lx_buf text;
    lx_buf_init(&text, 0);
    if (cJSON_IsTrue(member(b, "is_error"))) lx_buf_append_str(&text, "Error: ");
    const cJSON *content = member(b, "content");
    textf(p, sizeof p, "%s.content", path);
    if (content && tool_content(content, p, &text, parts, c->e)) {
        lx_buf_free(&text);
        return -1;
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "tool");
    cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
    cJSON_AddStringToObject(m, "content", text.p ? text.p : "");
    cJSON_AddItemToArray(c->msgs, m);
    lx_buf_free(&text);
    return 0;
}

static cJSON *tool_call(const cJSON *b, const char *path, lx_messages_error *e)
{
    static const char *const keys[] = {"type", "id", "name", "input", NULL};
    if (only_keys(b, keys, path, e)) return NULL;
    const cJSON *id = member(b, "id"), *name = member(b, "name"), *input = member(b, "input");
    char p[96];
    textf(p, sizeof p, "%s.%s", path, !cJSON_IsString(id) ? "id" : !cJSON_IsString(name) ? "name" : "input");
    if (!cJSON_IsString(id) || !cJSON_IsString(name) || !cJSON_IsObject(input)) {
        refuse(e, p, "Field required%s", NULL);
        return NULL;
    }
    char *args = cJSON_PrintUnformatted(input);
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddStringToObject(tc, "id", id->valuestring);
    cJSON_AddStringToObject(tc, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(tc, "function");
    cJSON_AddStringToObject(fn, "name", name->valuestring);
    cJSON_AddStringToObject(fn, "arguments", args ? args : "{}");
    cJSON_free(args);
    return tc;
}

/* One content block of a user (tool results, text, images) or assistant (text, tool_use) message. */
static int content_block(req_ctx *c, const cJSON *b, const char *path, bool user, cJSON *parts, lx_buf *text,
                         cJSON *calls)
{
    char p[96];
    textf(p, sizeof p, "%s.type", path);
    const char *t = cJSON_IsObject(b) ? block_type(b) : NULL;
    if (t == NULL) return refuse(c->e, p, "Field required (a content block's type)%s", NULL);
    if (strcmp(t, "text") == 0) {
        const char *s = text_of(b, path, c->e);
        if (s == NULL) return -1;
        if (!user) return lx_buf_append_str(text, s), 0;
        cJSON *part = cJSON_CreateObject();
        cJSON_AddStringToObject(part, "type", "text");
        cJSON_AddStringToObject(part, "text", s);
        cJSON_AddItemToArray(parts, part);
        return 0;
    }
    if (user && strcmp(t, "image") == 0) {
        cJSON *part = image_part(b, path, c->e);
        if (part == NULL) return -1;
        cJSON_AddItemToArray(parts, part);
        return 0;
    }
    if (user && strcmp(t, "tool_result") == 0) return tool_result(c, b, path, parts);
    if (!user && strcmp(t, "tool_use") == 0) {
        cJSON *tc = tool_call(b, path, c->e);
        if (tc == NULL) return -1;
        cJSON_AddItemToArray(calls, tc);
        return 0;
    }
    return refuse(c->e, p, "content blocks of type %s cannot be translated for this model", t);
}

/* A user message: its tool results first (each a `tool` message), then its other parts as one message. */
static void user_message(req_ctx *c, cJSON *parts)
{
    int n = cJSON_GetArraySize(parts);
    if (n == 0) {
        cJSON_Delete(parts);
        return;
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON *only = parts->child;
    if (n == 1 && strcmp(block_type(only), "text") == 0) {
        cJSON_AddStringToObject(m, "content", member(only, "text")->valuestring);
        cJSON_Delete(parts);
    } else {
        cJSON_AddItemToObject(m, "content", parts);
    }
    cJSON_AddItemToArray(c->msgs, m);
}

static void assistant_message(req_ctx *c, lx_buf *text, cJSON *calls)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "assistant");
    if (text->p)
        cJSON_AddStringToObject(m, "content", text->p);
    else
        cJSON_AddNullToObject(m, "content");
    if (cJSON_GetArraySize(calls) > 0)
        cJSON_AddItemToObject(m, "tool_calls", calls);
    else
        cJSON_Delete(calls);
    cJSON_AddItemToArray(c->msgs, m);
}

static int message(req_ctx *c, const cJSON *m, int i)
{
    static const char *const keys[] = {"role", "content", NULL};
    char path[64], p[96];
    textf(path, sizeof path, "messages.%d", i);
    if (!cJSON_IsObject(m)) return refuse(c->e, path, "must be an object%s", NULL);
    if (only_keys(m, keys, path, c->e)) return -1;
    const cJSON *role = member(m, "role"), *content = member(m, "content");
    bool user = cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0;
    textf(p, sizeof p, "%s.role", path);
    if (!user && !(cJSON_IsString(role) && strcmp(role->valuestring, "assistant") == 0))
        return refuse(c->e, p, "must be \"user\" or \"assistant\"%s", NULL);
    textf(p, sizeof p, "%s.content", path);
    if (cJSON_IsString(content)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", role->valuestring);
        cJSON_AddStringToObject(o, "content", content->valuestring);
        cJSON_AddItemToArray(c->msgs, o);
        return 0;
    }
    if (!cJSON_IsArray(content)) return refuse(c->e, p, "must be a string or an array of content blocks%s", NULL);
    cJSON *parts = cJSON_CreateArray(), *calls = cJSON_CreateArray();
    lx_buf text;
    lx_buf_init(&text, 0);
    int j = 0, rc = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, content)
    {
        char bp[96];
        textf(bp, sizeof bp, "%s.content.%d", path, j++);
        if ((rc = content_block(c, b, bp, user, parts, &text, calls)) != 0) break;
    }
    if (rc == 0 && user) {
        user_message(c, parts);
        cJSON_Delete(calls);
    } else if (rc == 0) {
        assistant_message(c, &text, calls);
        cJSON_Delete(parts);
    } else {
        cJSON_Delete(parts);
        cJSON_Delete(calls);
    }
    lx_buf_free(&text);
    return rc;
}

static int system_message(req_ctx *c, const cJSON *sys)
{
    lx_buf text;
    lx_buf_init(&text, 0);
    if (joined_text(sys, "system", "\n", &text, c->e)) {
        lx_buf_free(&text);
        return -1;
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "system");
    cJSON_AddStringToObject(m, "content", text.p ? text.p : "");
    cJSON_AddItemToArray(c->msgs, m);
    lx_buf_free(&text);
    return 0;
}

static int tools(cJSON *oai, const cJSON *ts, lx_messages_error *e)
{
    static const char *const keys[] = {"type", "name", "description", "input_schema", "strict", "eager_input_streaming",
                                       NULL};
    if (!cJSON_IsArray(ts)) return refuse(e, "tools", "must be an array%s", NULL);
    cJSON *out = cJSON_AddArrayToObject(oai, "tools");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, ts)
    {
        char path[64], p[96];
        textf(path, sizeof path, "tools.%d", i++);
        if (!cJSON_IsObject(t)) return refuse(e, path, "must be an object%s", NULL);
        const char *type = block_type(t);
        textf(p, sizeof p, "%s.type", path);
        if (type && strcmp(type, "custom") != 0)
            return refuse(e, p, "server tools (%s) are not available on this model", type);
        if (only_keys(t, keys, path, e)) return -1;
        const cJSON *name = member(t, "name"), *desc = member(t, "description"), *schema = member(t, "input_schema");
        textf(p, sizeof p, "%s.%s", path, !cJSON_IsString(name) ? "name" : "input_schema");
        if (!cJSON_IsString(name) || !cJSON_IsObject(schema)) return refuse(e, p, "Field required%s", NULL);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(o, "function");
        cJSON_AddStringToObject(fn, "name", name->valuestring);
        if (cJSON_IsString(desc)) cJSON_AddStringToObject(fn, "description", desc->valuestring);
        cJSON_AddItemToObject(fn, "parameters", cJSON_Duplicate(schema, true));
        const cJSON *strict = member(t, "strict");
        if (cJSON_IsBool(strict)) cJSON_AddBoolToObject(fn, "strict", cJSON_IsTrue(strict));
        cJSON_AddItemToArray(out, o);
    }
    return 0;
}

static int tool_choice(cJSON *oai, const cJSON *tc, lx_messages_error *e)
{
    static const char *const keys[] = {"type", "name", "disable_parallel_tool_use", NULL};
    const char *t = cJSON_IsObject(tc) ? block_type(tc) : NULL;
    if (t == NULL) return refuse(e, "tool_choice.type", "Field required%s", NULL);
    if (only_keys(tc, keys, "tool_choice", e)) return -1;
    if (strcmp(t, "auto") == 0 || strcmp(t, "none") == 0) {
        cJSON_AddStringToObject(oai, "tool_choice", t);
    } else if (strcmp(t, "any") == 0) {
        cJSON_AddStringToObject(oai, "tool_choice", "required");
    } else if (strcmp(t, "tool") == 0 && cJSON_IsString(member(tc, "name"))) {
        cJSON *o = cJSON_AddObjectToObject(oai, "tool_choice");
        cJSON_AddStringToObject(o, "type", "function");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "function"), "name", member(tc, "name")->valuestring);
    } else {
        return refuse(e, "tool_choice.type", "must be auto, any, tool (with a name) or none, not %s", t);
    }
    if (cJSON_IsTrue(member(tc, "disable_parallel_tool_use"))) cJSON_AddBoolToObject(oai, "parallel_tool_calls", 0);
    return 0;
}

static int stop_sequences(cJSON *oai, const cJSON *v, lx_messages_error *e)
{
    if (!cJSON_IsArray(v)) return refuse(e, "stop_sequences", "must be an array of strings%s", NULL);
    const cJSON *s;
    cJSON_ArrayForEach(s, v)
    {
        if (!cJSON_IsString(s)) return refuse(e, "stop_sequences", "must be an array of strings%s", NULL);
    }
    cJSON_AddItemToObject(oai, "stop", cJSON_Duplicate(v, true));
    return 0;
}

static int metadata(cJSON *oai, const cJSON *v, lx_messages_error *e)
{
    static const char *const keys[] = {"user_id", NULL};
    if (!cJSON_IsObject(v)) return refuse(e, "metadata", "must be an object%s", NULL);
    if (only_keys(v, keys, "metadata", e)) return -1;
    const cJSON *u = member(v, "user_id");
    if (cJSON_IsString(u)) cJSON_AddStringToObject(oai, "user", u->valuestring);
    return 0;
}

static int thinking(const cJSON *v, lx_messages_error *e)
{
    const char *t = cJSON_IsObject(v) ? block_type(v) : NULL;
    if (t && strcmp(t, "disabled") == 0) return 0;
    return refuse(e, "thinking", "extended thinking is not available on this model; leave it out or disable it%s",
                  NULL);
}

/* The number members that go over as they are, checked for type. */
static int number(cJSON *oai, const cJSON *v, const char *name, lx_messages_error *e)
{
    if (!cJSON_IsNumber(v)) return refuse(e, name, "must be a number%s", NULL);
    cJSON_AddNumberToObject(oai, name, v->valuedouble);
    return 0;
}

/*
 * Top-level members accepted and not passed on: hints and opt-ins that do not change what the model answers to
 * the conversation sent. service_tier (scheduling), cache_control (prompt caching), betas (the opt-ins to features
 * whose own fields are translated or refused here), context_management (Anthropic's server-side clearing of old
 * tool results past a threshold: without it the whole conversation is sent; Claude Code sends it and cannot be
 * told not to).
 */
static bool dropped_key(const char *k)
{
    static const char *const keys[] = {"service_tier", "cache_control", "betas", "context_management"};
    for (size_t i = 0; i < LX_ARRAY_LEN(keys); i++)
        if (strcmp(keys[i], k) == 0) return true;
    return false;
}

/* output_config: its effort is a hint about how long to think (accepted, not passed on); a format (structured
 * output) changes the answer and cannot be expressed for every backend: refused. */
static int output_config(const cJSON *v, lx_messages_error *e)
{
    static const char *const keys[] = {"effort", NULL};
    if (!cJSON_IsObject(v)) return refuse(e, "output_config", "must be an object%s", NULL);
    return only_keys(v, keys, "output_config", e);
}

/* One top-level member other than model, messages, system, max_tokens, stream. */
static int top_member(cJSON *oai, const cJSON *v, lx_messages_error *e)
{
    const char *k = v->string;
    if (strcmp(k, "temperature") == 0 || strcmp(k, "top_p") == 0 || strcmp(k, "top_k") == 0)
        return number(oai, v, k, e);
    if (strcmp(k, "stop_sequences") == 0) return stop_sequences(oai, v, e);
    if (strcmp(k, "metadata") == 0) return metadata(oai, v, e);
    if (strcmp(k, "tools") == 0) return tools(oai, v, e);
    if (strcmp(k, "tool_choice") == 0) return tool_choice(oai, v, e);
    if (strcmp(k, "thinking") == 0) return thinking(v, e);
    if (strcmp(k, "output_config") == 0) return output_config(v, e);
    if (dropped_key(k)) return 0;
    if (strncmp(k, "x_", 2) == 0) {
        cJSON_AddItemToObject(oai, k, cJSON_Duplicate(v, true));
        return 0;
    }
    return refuse(e, k, "the field %s is not supported by this gateway", k);
}

static bool handled_first(const char *k)
{
    static const char *const first[] = {"model", "messages", "system", "max_tokens", "stream"};
    for (size_t i = 0; i < LX_ARRAY_LEN(first); i++)
        if (strcmp(first[i], k) == 0) return true;
    return false;
}

static int head(cJSON *oai, const cJSON *root, bool count_only, lx_messages_error *e)
{
    const cJSON *model = member(root, "model"), *mt = member(root, "max_tokens"), *st = member(root, "stream");
    if (model && !cJSON_IsString(model)) return refuse(e, "model", "must be a string%s", NULL);
    if (model) cJSON_AddStringToObject(oai, "model", model->valuestring);
    if (mt == NULL && !count_only) return refuse(e, "max_tokens", "Field required%s", NULL);
    if (mt && !is_int(mt, 1)) return refuse(e, "max_tokens", "must be an integer >= 1%s", NULL);
    if (st && !cJSON_IsBool(st)) return refuse(e, "stream", "must be a boolean%s", NULL);
    return 0;
}

static int translate(const cJSON *root, cJSON *oai, bool count_only, lx_messages_error *e)
{
    if (head(oai, root, count_only, e)) return -1;
    req_ctx c = {.e = e, .msgs = cJSON_AddArrayToObject(oai, "messages")};
    const cJSON *sys = member(root, "system"), *ms = member(root, "messages");
    if (sys && system_message(&c, sys)) return -1;
    if (!cJSON_IsArray(ms)) return refuse(e, "messages", "Field required (an array of messages)%s", NULL);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, ms)
    {
        if (message(&c, m, i++)) return -1;
    }
    if (member(root, "max_tokens")) cJSON_AddNumberToObject(oai, "max_tokens", member(root, "max_tokens")->valuedouble);
    const cJSON *v;
    cJSON_ArrayForEach(v, root)
    {
        if (!handled_first(v->string) && top_member(oai, v, e)) return -1;
    }
    if (cJSON_IsTrue(member(root, "stream"))) {
        cJSON_AddBoolToObject(oai, "stream", 1);
        cJSON_AddBoolToObject(cJSON_AddObjectToObject(oai, "stream_options"), "include_usage", 1);
    }
    return 0;
}

int lx_messages_request(const char *body, size_t len, bool count_only, lx_buf *out, lx_messages_error *e)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        e->err = LX_ERR_INVALID_JSON;
        e->param[0] = '\0';
        textf(e->message, sizeof e->message, "The request body is not a JSON object");
        return -1;
    }
    cJSON *oai = cJSON_CreateObject();
    int rc = translate(root, oai, count_only, e);
    if (rc == 0) {
        char *s = cJSON_PrintUnformatted(oai);
        rc = s && lx_buf_append_str(out, s) == 0 ? 0 : -1;
        if (rc) refuse(e, "body", "the request is too large to translate%s", NULL);
        cJSON_free(s);
    }
    cJSON_Delete(oai);
    cJSON_Delete(root);
    return rc;
}

/* ---------- answers ---------- */

static const char *stop_reason(const char *finish, bool has_stop_seq, bool any_tool)
{
    if (finish == NULL) return "end_turn";
    if (strcmp(finish, "length") == 0) return "max_tokens";
    if (strcmp(finish, "content_filter") == 0) return "refusal";
    if (strcmp(finish, "tool_calls") == 0 || strcmp(finish, "function_call") == 0 || any_tool) return "tool_use";
    return has_stop_seq ? "stop_sequence" : "end_turn";
}

static long count_of(const cJSON *o, const char *key)
{
    const cJSON *v = member(o, key);
    return is_int(v, 0) ? (long)v->valuedouble : -1;
}

static void add_usage(cJSON *msg, long in, long out, long cached)
{
    cJSON *u = cJSON_AddObjectToObject(msg, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", (double)(in < 0 ? 0 : in));
    if (cached >= 0) cJSON_AddNumberToObject(u, "cache_read_input_tokens", (double)cached);
    cJSON_AddNumberToObject(u, "output_tokens", (double)(out < 0 ? 0 : out));
}

/* A tool call's arguments as an object ("" → {}); NULL when they are not a JSON object. */
static cJSON *parse_args(const cJSON *fn)
{
    const cJSON *a = member(fn, "arguments");
    if (!cJSON_IsString(a) || a->valuestring[0] == '\0') return cJSON_CreateObject();
    cJSON *o = cJSON_Parse(a->valuestring);
    if (cJSON_IsObject(o)) return o;
    cJSON_Delete(o);
    return NULL;
}

static int answer_content(cJSON *content, const cJSON *message, bool *any_tool)
{
    const cJSON *text = member(message, "content"), *calls = member(message, "tool_calls");
    if (cJSON_IsString(text) && text->valuestring[0]) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "text");
        cJSON_AddStringToObject(b, "text", text->valuestring);
        cJSON_AddItemToArray(content, b);
    }
    const cJSON *tc;
    cJSON_ArrayForEach(tc, calls)
    {
        const cJSON *fn = member(tc, "function"), *id = member(tc, "id");
        cJSON *input = parse_args(fn);
        if (!cJSON_IsString(member(fn, "name")) || input == NULL) {
            cJSON_Delete(input);
            return -1;
        }
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "tool_use");
        cJSON_AddStringToObject(b, "id", cJSON_IsString(id) ? id->valuestring : "toolu_lexora");
        cJSON_AddStringToObject(b, "name", member(fn, "name")->valuestring);
        cJSON_AddItemToObject(b, "input", input);
        cJSON_AddItemToArray(content, b);
        *any_tool = true;
    }
    return 0;
}

int lx_messages_answer(const char *body, size_t len, const char *id, const char *model, lx_buf *out)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *choice = cJSON_GetArrayItem(member(root, "choices"), 0);
    const cJSON *message = member(choice, "message");
    if (!cJSON_IsObject(message)) {
        cJSON_Delete(root);
        return -1;
    }
    char msg_id[128];
    textf(msg_id, sizeof msg_id, "msg_%s", id);
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "id", msg_id);
    cJSON_AddStringToObject(msg, "type", "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "model", model);
    bool any_tool = false;
    int rc = answer_content(cJSON_AddArrayToObject(msg, "content"), message, &any_tool);
    const cJSON *fr = member(choice, "finish_reason"), *sr = member(choice, "stop_reason");
    bool has_seq = cJSON_IsString(sr);
    const char *reason = stop_reason(cJSON_IsString(fr) ? fr->valuestring : NULL, has_seq, any_tool);
    cJSON_AddStringToObject(msg, "stop_reason", reason);
    if (has_seq && strcmp(reason, "stop_sequence") == 0)
        cJSON_AddStringToObject(msg, "stop_sequence", sr->valuestring);
    else
        cJSON_AddNullToObject(msg, "stop_sequence");
    const cJSON *usage = member(root, "usage");
    add_usage(msg, count_of(usage, "prompt_tokens"), count_of(usage, "completion_tokens"),
              count_of(member(usage, "prompt_tokens_details"), "cached_tokens"));
    char *s = rc == 0 ? cJSON_PrintUnformatted(msg) : NULL;
    if (s == NULL || lx_buf_append_str(out, s) != 0) rc = -1;
    cJSON_free(s);
    cJSON_Delete(msg);
    cJSON_Delete(root);
    return rc;
}

/* ---------- errors ---------- */

const char *lx_messages_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

int lx_messages_error_body(lx_buf *out, int status, const char *message)
{
    const char *m = message ? message : "";
    int rc = lx_buf_printf(out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"",
                           lx_messages_error_type(status));
    rc |= lx_buf_json_escape(out, m, strlen(m));
    rc |= lx_buf_append_str(out, "\"}}");
    return rc ? -1 : 0;
}

int lx_messages_error_of(lx_buf *out, int status, const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *err = member(root, "error");
    const cJSON *m = cJSON_IsObject(err) ? member(err, "message") : cJSON_IsString(err) ? err : member(root, "message");
    int rc;
    if (cJSON_IsString(m)) {
        rc = lx_messages_error_body(out, status, m->valuestring);
    } else {
        lx_buf text;
        lx_buf_init(&text, 0);
        lx_buf_printf(&text, "the backend answered HTTP %d: %.*s", status, (int)LX_MIN(len, 500), body);
        rc = lx_messages_error_body(out, status, text.p);
        lx_buf_free(&text);
    }
    cJSON_Delete(root);
    return rc;
}

/* ---------- streams ---------- */

void lx_messages_stream_init(lx_messages_stream *s, const char *id, const char *model, long input_estimate,
                             size_t max_event)
{
    *s = (lx_messages_stream){.input_estimate = input_estimate,
                              .open_tool = -1,
                              .prompt_tokens = -1,
                              .completion_tokens = -1,
                              .cached_tokens = -1};
    lx_buf_init(&s->pending, max_event);
    textf(s->id, sizeof s->id, "msg_%s", id);
    textf(s->model, sizeof s->model, "%s", model);
}

void lx_messages_stream_free(lx_messages_stream *s) { lx_buf_free(&s->pending); }

static void event(lx_buf *out, const char *type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* event: <type>\ndata: {"type":"<type>",<fmt...>}\n\n */
static void event(lx_buf *out, const char *type, const char *fmt, ...)
{
    lx_buf_printf(out, "event: %s\ndata: {\"type\":\"%s\"", type, type);
    va_list ap;
    va_start(ap, fmt);
    lx_buf_vprintf(out, fmt, ap);
    va_end(ap);
    lx_buf_append_str(out, "}\n\n");
}

static void json_string(lx_buf *out, const char *s)
{
    lx_buf_append_str(out, "\"");
    lx_buf_json_escape(out, s, strlen(s));
    lx_buf_append_str(out, "\"");
}

void lx_messages_stream_begin(lx_messages_stream *s, lx_buf *out)
{
    if (s->started) return;
    s->started = true;
    lx_buf_append_str(out, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":");
    json_string(out, s->id);
    lx_buf_append_str(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    json_string(out, s->model);
    lx_buf_printf(out,
                  ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":%ld,"
                  "\"output_tokens\":0}}}\n\n",
                  s->input_estimate < 0 ? 0 : s->input_estimate);
}

static void close_block(lx_messages_stream *s, lx_buf *out)
{
    if (s->open == LX_MSG_BLOCK_NONE) return;
    event(out, "content_block_stop", ",\"index\":%d", s->next_index - 1);
    if (s->open == LX_MSG_BLOCK_TOOL) s->tool_state[s->open_tool] = 2;
    s->open = LX_MSG_BLOCK_NONE;
    s->open_tool = -1;
}

static void text_delta(lx_messages_stream *s, const char *text, lx_buf *out)
{
    if (text[0] == '\0') return;
    if (s->open != LX_MSG_BLOCK_TEXT) {
        close_block(s, out);
        event(out, "content_block_start", ",\"index\":%d,\"content_block\":{\"type\":\"text\",\"text\":\"\"}",
              s->next_index++);
        s->open = LX_MSG_BLOCK_TEXT;
    }
    lx_buf_printf(out,
                  "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":%d,"
                  "\"delta\":{\"type\":\"text_delta\",\"text\":",
                  s->next_index - 1);
    json_string(out, text);
    lx_buf_append_str(out, "}}\n\n");
}

/* One entry of delta.tool_calls. -1 when it cannot be translated (a call resumed after another began). */
static int tool_delta(lx_messages_stream *s, const cJSON *tc, lx_buf *out)
{
    const cJSON *idx = member(tc, "index"), *fn = member(tc, "function"), *id = member(tc, "id");
    int i = is_int(idx, 0) && idx->valuedouble < LX_MESSAGES_MAX_TOOLS ? (int)idx->valuedouble : -1;
    if (i < 0) return -1;
    if (!(s->open == LX_MSG_BLOCK_TOOL && s->open_tool == i)) {
        if (s->tool_state[i] != 0) return -1;
        close_block(s, out);
        const cJSON *name = member(fn, "name");
        char fallback[32];
        textf(fallback, sizeof fallback, "toolu_%d", i);
        lx_buf_printf(out,
                      "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":%d,"
                      "\"content_block\":{\"type\":\"tool_use\",\"id\":",
                      s->next_index++);
        json_string(out, cJSON_IsString(id) ? id->valuestring : fallback);
        lx_buf_append_str(out, ",\"name\":");
        json_string(out, cJSON_IsString(name) ? name->valuestring : "");
        lx_buf_append_str(out, ",\"input\":{}}}\n\n");
        s->open = LX_MSG_BLOCK_TOOL;
        s->open_tool = i;
        s->tool_state[i] = 1;
        s->any_tool = true;
    }
    const cJSON *args = member(fn, "arguments");
    if (!cJSON_IsString(args) || args->valuestring[0] == '\0') return 0;
    lx_buf_printf(out,
                  "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":%d,"
                  "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
                  s->next_index - 1);
    json_string(out, args->valuestring);
    lx_buf_append_str(out, "}}\n\n");
    return 0;
}

static void note_usage(lx_messages_stream *s, const cJSON *u)
{
    if (!cJSON_IsObject(u)) return;
    long p = count_of(u, "prompt_tokens"), c = count_of(u, "completion_tokens");
    long k = count_of(member(u, "prompt_tokens_details"), "cached_tokens");
    if (p >= 0) s->prompt_tokens = p;
    if (c >= 0) s->completion_tokens = c;
    if (k >= 0) s->cached_tokens = k;
}

static int chunk(lx_messages_stream *s, const cJSON *root, lx_buf *out)
{
    note_usage(s, member(root, "usage"));
    const cJSON *choice = cJSON_GetArrayItem(member(root, "choices"), 0);
    if (choice == NULL) return 0;
    const cJSON *delta = member(choice, "delta"), *content = member(delta, "content");
    if (cJSON_IsString(content)) text_delta(s, content->valuestring, out);
    const cJSON *tc;
    cJSON_ArrayForEach(tc, member(delta, "tool_calls"))
    {
        if (tool_delta(s, tc, out)) return -1;
    }
    const cJSON *fr = member(choice, "finish_reason"), *sr = member(choice, "stop_reason");
    if (cJSON_IsString(fr)) textf(s->finish, sizeof s->finish, "%s", fr->valuestring);
    if (cJSON_IsString(sr)) {
        textf(s->stop_seq, sizeof s->stop_seq, "%s", sr->valuestring);
        s->has_stop_seq = true;
    }
    return 0;
}

static void finish(lx_messages_stream *s, lx_buf *out)
{
    close_block(s, out);
    const char *reason = stop_reason(s->finish[0] ? s->finish : NULL, s->has_stop_seq, s->any_tool);
    lx_buf_append_str(out, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
    json_string(out, reason);
    lx_buf_append_str(out, ",\"stop_sequence\":");
    if (s->has_stop_seq && strcmp(reason, "stop_sequence") == 0)
        json_string(out, s->stop_seq);
    else
        lx_buf_append_str(out, "null");
    lx_buf_append_str(out, "},\"usage\":{");
    if (s->prompt_tokens >= 0) lx_buf_printf(out, "\"input_tokens\":%ld,", s->prompt_tokens);
    if (s->cached_tokens >= 0) lx_buf_printf(out, "\"cache_read_input_tokens\":%ld,", s->cached_tokens);
    lx_buf_printf(out, "\"output_tokens\":%ld}}\n\n", s->completion_tokens < 0 ? 0 : s->completion_tokens);
    event(out, "message_stop", "%s", "");
    s->done = true;
}

/* The data of one OpenAI event. */
static int data_event(lx_messages_stream *s, const char *data, size_t len, lx_buf *out)
{
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        lx_messages_stream_begin(s, out);
        finish(s, out);
        return 0;
    }
    cJSON *root = cJSON_ParseWithLength(data, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return 0; /* not a chunk (the relay's scanner said so too): nothing to translate */
    }
    lx_messages_stream_begin(s, out);
    int rc = 0;
    const cJSON *err = member(root, "error");
    if (err) {
        const cJSON *m = member(err, "message"), *code = member(err, "code");
        int status = is_int(code, 100) && code->valuedouble < 600 ? (int)code->valuedouble : 500;
        lx_messages_stream_error(s, status, cJSON_IsString(m) ? m->valuestring : "the backend failed", out);
    } else {
        rc = chunk(s, root, out);
    }
    cJSON_Delete(root);
    return rc;
}

/* One whole SSE event (its lines, without the blank line): its data lines joined by "\n". */
static int sse_event(lx_messages_stream *s, const char *ev, size_t n, lx_buf *out)
{
    lx_buf data;
    lx_buf_init(&data, 0);
    bool any = false;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(ev + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - ev) : n, l = end - i;
        const char *line = ev + i;
        if (l && line[l - 1] == '\r') l--;
        if (l >= 5 && memcmp(line, "data:", 5) == 0) {
            size_t skip = l > 5 && line[5] == ' ' ? 6 : 5;
            if (any) lx_buf_append(&data, "\n", 1);
            lx_buf_append(&data, line + skip, l - skip);
            any = true;
        }
        i = end + 1;
    }
    int rc = any ? data_event(s, data.p ? data.p : "", data.len, out) : 0;
    lx_buf_free(&data);
    return rc;
}

int lx_messages_stream_feed(lx_messages_stream *s, const char *data, size_t len, lx_buf *out)
{
    if (s->failed) return -1;
    if (lx_buf_append(&s->pending, data, len) != 0) {
        s->failed = true;
        return -1;
    }
    size_t line = s->line, consumed = 0;
    for (size_t i = s->scanned; i < s->pending.len; i++) {
        if (s->pending.p[i] != '\n') continue;
        size_t l = i - line;
        if (l == 0 || (l == 1 && s->pending.p[line] == '\r')) {
            if (!s->done && sse_event(s, s->pending.p + consumed, line - consumed, out) != 0) {
                s->failed = true;
                return -1;
            }
            consumed = i + 1;
        }
        line = i + 1;
    }
    lx_buf_consume(&s->pending, consumed);
    s->scanned = s->pending.len;
    s->line = line - consumed;
    return 0;
}

void lx_messages_stream_error(lx_messages_stream *s, int status, const char *message, lx_buf *out)
{
    if (s->done) return;
    lx_buf_append_str(out, "event: error\ndata: ");
    lx_messages_error_body(out, status, message);
    lx_buf_append_str(out, "\n\n");
    s->done = true;
}
