/*
 * lexora-sim --api anthropic: Anthropic's Messages API (POST /v1/messages, GET /v1/models), as
 * docs.anthropic.com describes it. See sim.h and docs/SIMULATOR.md.
 *
 * Requests: x-api-key must match --api-key when one is given (401 authentication_error otherwise, on every
 * /v1/ path); /v1/messages needs anthropic-version, a model the sim serves (404 not_found_error),
 * max_tokens (an integer >= 1) and a non-empty messages list of user / assistant turns (400
 * invalid_request_error otherwise). Errors are {"type":"error","error":{"type","message"}}.
 *
 * The answer is text (sim_word's words, min(max_tokens, --default-max-tokens) of them: stop_reason
 * max_tokens when max_tokens is the smaller, else end_turn), or tool use: when the request has tools, the
 * last turn is the user's own words (not a tool result), tool_choice is not none, and the words name a
 * tool (or tool_choice is any / tool), the answer is a short text block and a tool_use block for that tool
 * with an input made from its input_schema (strings "lexora", numbers 42, booleans true), stop_reason
 * tool_use. Each "token" of a tool use is a piece of the input's JSON (input_json_delta, 7 bytes each).
 *
 * A stream is Anthropic's event sequence: message_start (usage with input and cache-read tokens,
 * output_tokens 1), content_block_start, ping, content_block_delta per token, content_block_stop,
 * message_delta (stop_reason, cumulative output_tokens), message_stop. A midstream failure sends an error
 * event (overloaded_error) after a few tokens and ends the stream, as Anthropic does. The prefix cache's
 * hits are reported as cache_read_input_tokens (input_tokens is the rest, as Anthropic counts).
 *
 * Invariants: every path out of sim_anthropic_handle answers, or hands a sim_req to the engine; nothing is
 * written once q->http is NULL.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim.h"

#define TOOL_PIECE 7 /* bytes of input JSON per input_json_delta */

static const char *error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 405: return "invalid_request_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 529: return "overloaded_error";
    default: return "api_error";
    }
}

void sim_anthropic_error(lx_http_req *r, int status, const char *message, const lx_http_header *extra)
{
    cJSON *o = cJSON_CreateObject(), *e;
    cJSON_AddStringToObject(o, "type", "error");
    e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "type", error_type(status));
    cJSON_AddStringToObject(e, "message", message);
    char *txt = cJSON_PrintUnformatted(o);
    lx_http_header h[2] = {{"content-type", "application/json"}, {NULL, NULL}};
    if (extra) h[1] = *extra;
    lx_http_respond(r, status, h, extra ? 2 : 1, txt, strlen(txt));
    cJSON_free(txt);
    cJSON_Delete(o);
}

bool sim_anthropic_authorized(const sim *s, lx_http_req *r)
{
    lx_slice key;
    if (s->cfg.api != SIM_API_ANTHROPIC || s->cfg.api_key == NULL) return true;
    if (lx_http_req_header(r, "x-api-key", &key) && lx_slice_eq(key, s->cfg.api_key)) return true;
    sim_anthropic_error(r, 401, "invalid x-api-key", NULL);
    return false;
}

void sim_anthropic_models(sim *s, lx_http_req *r)
{
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i < s->cfg.n_models; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "type", "model");
        cJSON_AddStringToObject(m, "id", s->cfg.models[i]);
        cJSON_AddStringToObject(m, "display_name", s->cfg.models[i]);
        cJSON_AddStringToObject(m, "created_at", "2025-09-29T00:00:00Z");
        cJSON_AddItemToArray(data, m);
    }
    cJSON_AddFalseToObject(o, "has_more");
    cJSON_AddStringToObject(o, "first_id", s->cfg.models[0]);
    cJSON_AddStringToObject(o, "last_id", s->cfg.models[s->cfg.n_models - 1]);
    sim_reply_json(r, 200, o);
}

/* ---------- the request ---------- */

typedef struct {
    const char *model;
    long max_tokens;
    bool stream;
    size_t text_bytes;
    uint64_t seed;
    char rendered[SIM_PREFIX_WINDOW];
    size_t rendered_len;
    const cJSON *tool; /* the tool to call, or NULL */
    char msg[256];     /* why it is refused */
} parsed;

static int refuse(parsed *p, const char *fmt, const char *arg)
{
    snprintf(p->msg, sizeof p->msg, fmt, arg);
    return -1;
}

static void count_text(parsed *p, const char *s)
{
    size_t n = strlen(s), room = sizeof p->rendered - p->rendered_len;
    p->text_bytes += n;
    p->seed = sim_hash(p->seed, s, n);
    memcpy(p->rendered + p->rendered_len, s, LX_MIN(n, room));
    p->rendered_len += LX_MIN(n, room);
}

/* Counts a content (a string or blocks: text, tool_result's content, tool_use's input); *user_words says
 * whether it holds words of the user's own (not only tool results). */
static int count_content(parsed *p, const cJSON *c, bool *user_words)
{
    *user_words = false;
    if (cJSON_IsString(c)) {
        count_text(p, c->valuestring);
        *user_words = true;
        return 0;
    }
    if (!cJSON_IsArray(c)) return refuse(p, "messages.%s: content must be a string or a list of blocks", "content");
    for (const cJSON *b = c->child; b; b = b->next) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(b, "text");
        if (!cJSON_IsString(type)) return refuse(p, "messages.content.%s: Field required", "type");
        if (cJSON_IsString(text)) {
            count_text(p, text->valuestring);
            *user_words = true;
        } else if (strcmp(type->valuestring, "tool_result") == 0) {
            bool inner;
            const cJSON *rc = cJSON_GetObjectItemCaseSensitive(b, "content");
            if (rc && count_content(p, rc, &inner) != 0) return -1;
        }
    }
    return 0;
}

static const char *last_text(const cJSON *c)
{
    if (cJSON_IsString(c)) return c->valuestring;
    const char *t = "";
    for (const cJSON *b = cJSON_IsArray(c) ? c->child : NULL; b; b = b->next) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(b, "text");
        if (cJSON_IsString(text)) t = text->valuestring;
    }
    return t;
}

/* The tool the words name (case-insensitively), or NULL. */
static const cJSON *named_tool(const cJSON *tools, const char *words)
{
    for (const cJSON *t = tools->child; t; t = t->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        if (!cJSON_IsString(name) || name->valuestring[0] == '\0') continue;
        size_t n = strlen(name->valuestring);
        for (const char *w = words; *w; w++)
            if (strncasecmp(w, name->valuestring, n) == 0) return t;
    }
    return NULL;
}

static void pick_tool(parsed *p, const cJSON *root, const char *words, bool user_words)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    const cJSON *ctype = cJSON_GetObjectItemCaseSensitive(choice, "type");
    const char *ct = cJSON_IsString(ctype) ? ctype->valuestring : "auto";
    if (!cJSON_IsArray(tools) || tools->child == NULL || !user_words || strcmp(ct, "none") == 0) return;
    if (strcmp(ct, "tool") == 0) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(choice, "name");
        p->tool = cJSON_IsString(name) ? named_tool(tools, name->valuestring) : NULL;
        return;
    }
    p->tool = named_tool(tools, words);
    if (p->tool == NULL && strcmp(ct, "any") == 0) p->tool = tools->child;
}

static int parse_messages(parsed *p, const cJSON *root)
{
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(ms) || ms->child == NULL) return refuse(p, "%s: Field required (a non-empty list)", "messages");
    bool user_words = false;
    const char *words = "";
    for (const cJSON *m = ms->child; m; m = m->next) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role) || (strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant")))
            return refuse(p, "messages: Unexpected role \"%s\"; only user and assistant are allowed",
                          cJSON_IsString(role) ? role->valuestring : "");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (count_content(p, content, &user_words) != 0) return -1;
        words = last_text(content);
        if (strcmp(role->valuestring, "assistant") == 0) user_words = false;
    }
    pick_tool(p, root, words, user_words);
    return 0;
}

static int parse_system(parsed *p, const cJSON *root)
{
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(root, "system");
    bool unused;
    if (sys == NULL) return 0;
    return count_content(p, sys, &unused);
}

static int parse(sim *s, lx_http_req *r, parsed *p, cJSON **root, int *status)
{
    lx_slice body = lx_http_req_body(r), version;
    *status = 400;
    if (!lx_http_req_header(r, "anthropic-version", &version))
        return refuse(p, "%s: header is required", "anthropic-version");
    *root = cJSON_ParseWithLength(body.p, body.len);
    if (!cJSON_IsObject(*root)) return refuse(p, "%s", "invalid JSON body");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(*root, "model");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(*root, "max_tokens");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(*root, "stream");
    if (!cJSON_IsString(model)) return refuse(p, "%s: Field required", "model");
    p->model = model->valuestring;
    if (!cJSON_IsNumber(mt) || mt->valuedouble < 1 || mt->valuedouble != floor(mt->valuedouble))
        return refuse(p, "%s: Field required (an integer >= 1)", "max_tokens");
    p->max_tokens = mt->valuedouble > 1e9 ? 1000000000L : (long)mt->valuedouble;
    p->stream = cJSON_IsTrue(stream);
    if (parse_system(p, *root) != 0 || parse_messages(p, *root) != 0) return -1;
    for (size_t i = 0; i < s->cfg.n_models; i++)
        if (strcmp(s->cfg.models[i], p->model) == 0) return 0;
    *status = 404;
    return refuse(p, "model: %s", p->model);
}

/* The tool's input: each property of its input_schema given a value of its type. */
static char *tool_input(const cJSON *tool)
{
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(tool, "input_schema");
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    cJSON *in = cJSON_CreateObject();
    for (const cJSON *pr = cJSON_IsObject(props) ? props->child : NULL; pr; pr = pr->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(pr, "type");
        const char *type = cJSON_IsString(t) ? t->valuestring : "";
        if (strcmp(type, "string") == 0)
            cJSON_AddStringToObject(in, pr->string, "lexora");
        else if (strcmp(type, "number") == 0 || strcmp(type, "integer") == 0)
            cJSON_AddNumberToObject(in, pr->string, 42);
        else if (strcmp(type, "boolean") == 0)
            cJSON_AddTrueToObject(in, pr->string);
        else
            cJSON_AddNullToObject(in, pr->string);
    }
    char *txt = cJSON_PrintUnformatted(in);
    cJSON_Delete(in);
    return txt;
}

static char *make_id(sim *s, const char *prefix)
{
    char hex[33];
    sim_hex_id(&s->id_rng, hex);
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_buf_printf(&b, "%s%.24s", prefix, hex);
    return lx_buf_steal(&b, NULL);
}

static sim_req *make_req(sim *s, lx_http_req *r, const parsed *p, bool midstream)
{
    sim_req *q = sim_req_new(s, r);
    q->kind = SIM_MESSAGES;
    q->stream = p->stream;
    q->prompt_tokens = LX_MAX(1, sim_tokens_for_bytes(p->text_bytes));
    q->model_out = q->model_copy = lx_xstrdup(p->model);
    q->id = make_id(s, "msg_");
    q->text_seed = sim_mix(p->seed);
    q->created = lx_wall_s();
    sim_prefix_keys(p->rendered, p->rendered_len, &q->keys);
    if (p->tool) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(p->tool, "name");
        q->tool_name = lx_xstrdup(name->valuestring);
        q->answer = tool_input(p->tool);
        q->answer_len = strlen(q->answer);
        q->max_tokens = (long)((q->answer_len + TOOL_PIECE - 1) / TOOL_PIECE);
    } else {
        q->ends_by_length = p->max_tokens <= s->cfg.default_max_tokens;
        q->max_tokens = LX_MIN(p->max_tokens, s->cfg.default_max_tokens);
    }
    if (midstream) q->drop_after = LX_MIN(SIM_MIDSTREAM_TOKENS, q->max_tokens);
    return q;
}

void sim_anthropic_handle(sim *s, lx_http_req *r, bool midstream)
{
    parsed p = {.seed = SIM_HASH_INIT};
    cJSON *root = NULL;
    int status;
    if (parse(s, r, &p, &root, &status) != 0) {
        s->st.rejected++;
        sim_anthropic_error(r, status, p.msg, NULL);
    } else if (midstream && !p.stream) {
        s->st.failed++;
        lx_http_req_drop(r);
    } else {
        sim_req *q = make_req(s, r, &p, midstream);
        static const lx_http_header sse[] = {{"content-type", "text/event-stream; charset=utf-8"},
                                             {"cache-control", "no-cache"}};
        if (q->stream) lx_http_stream_begin(r, 200, sse, 2);
        if (q->state != SIM_DONE) sim_engine_submit(q);
    }
    cJSON_Delete(root);
}

/* ---------- the answer ---------- */

static void event(sim_req *q, const char *type, cJSON *data)
{
    char *txt = cJSON_PrintUnformatted(data);
    lx_buf *b = &q->sim->scratch;
    lx_buf_printf(b, "event: %s\ndata: %s\n\n", type, txt);
    cJSON_free(txt);
    cJSON_Delete(data);
}

static void send_scratch(sim_req *q)
{
    lx_buf *b = &q->sim->scratch;
    if (q->http) lx_http_stream_write(q->http, b->p, b->len);
    lx_buf_reset(b);
}

static cJSON *usage(const sim_req *q, bool whole)
{
    cJSON *u = cJSON_CreateObject();
    if (whole) {
        cJSON_AddNumberToObject(u, "input_tokens", (double)(q->prompt_tokens - q->cached_tokens));
        cJSON_AddNumberToObject(u, "cache_creation_input_tokens", 0);
        cJSON_AddNumberToObject(u, "cache_read_input_tokens", (double)q->cached_tokens);
    }
    cJSON_AddNumberToObject(u, "output_tokens", (double)(whole && q->generated == 0 ? 1 : q->generated));
    return u;
}

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static const char lead_in[] = "Let me check.";

static cJSON *block_start(long index, cJSON *block)
{
    cJSON *o = typed("content_block_start");
    cJSON_AddNumberToObject(o, "index", (double)index);
    cJSON_AddItemToObject(o, "content_block", block);
    return o;
}

static cJSON *block_delta(long index, cJSON *delta)
{
    cJSON *o = typed("content_block_delta");
    cJSON_AddNumberToObject(o, "index", (double)index);
    cJSON_AddItemToObject(o, "delta", delta);
    return o;
}

static cJSON *block_stop(long index)
{
    cJSON *o = typed("content_block_stop");
    cJSON_AddNumberToObject(o, "index", (double)index);
    return o;
}

static cJSON *text_block(const char *text)
{
    cJSON *b = typed("text");
    cJSON_AddStringToObject(b, "text", text);
    return b;
}

static cJSON *tool_block(const sim_req *q, bool with_input)
{
    cJSON *b = typed("tool_use");
    char id[48];
    snprintf(id, sizeof id, "toolu_%.24s", q->id + 4);
    cJSON_AddStringToObject(b, "id", id);
    cJSON_AddStringToObject(b, "name", q->tool_name);
    cJSON_AddItemToObject(b, "input", with_input ? cJSON_Parse(q->answer) : cJSON_CreateObject());
    return b;
}

static cJSON *message(const sim_req *q, bool whole)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", q->id);
    cJSON_AddStringToObject(m, "type", "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "model", q->model_out);
    cJSON *content = cJSON_AddArrayToObject(m, "content");
    if (whole && q->tool_name) {
        cJSON_AddItemToArray(content, text_block(lead_in));
        cJSON_AddItemToArray(content, tool_block(q, true));
    } else if (whole) {
        cJSON_AddItemToArray(content, text_block(q->text.p ? q->text.p : ""));
    }
    const char *stop = q->tool_name ? "tool_use" : q->ends_by_length ? "max_tokens" : "end_turn";
    if (whole)
        cJSON_AddStringToObject(m, "stop_reason", stop);
    else
        cJSON_AddNullToObject(m, "stop_reason");
    cJSON_AddNullToObject(m, "stop_sequence");
    cJSON_AddItemToObject(m, "usage", usage(q, true));
    return m;
}

/* message_start; the text block opens (a tool use: the lead-in text, whole, then the tool_use block). */
void sim_anthropic_first(sim_req *q)
{
    long cached = sim_tokens_for_bytes(q->prefix_matched);
    q->cached_tokens = LX_MIN(q->prompt_tokens - 1, cached);
    if (q->cached_tokens < 0) q->cached_tokens = 0;
    if (!q->stream || q->http == NULL) return;
    cJSON *start = typed("message_start");
    cJSON_AddItemToObject(start, "message", message(q, false));
    event(q, "message_start", start);
    event(q, "content_block_start", block_start(0, text_block("")));
    event(q, "ping", typed("ping"));
    if (q->tool_name) {
        cJSON *d = typed("text_delta");
        cJSON_AddStringToObject(d, "text", lead_in);
        event(q, "content_block_delta", block_delta(0, d));
        event(q, "content_block_stop", block_stop(0));
        event(q, "content_block_start", block_start(1, tool_block(q, false)));
    }
    send_scratch(q);
}

void sim_anthropic_token(sim_req *q, long i)
{
    size_t n;
    const char *w = sim_word(q->text_seed, i, &n);
    if (!q->stream) {
        if (q->tool_name == NULL) lx_buf_append(&q->text, w, n);
        return;
    }
    if (q->http == NULL) return;
    char piece[64];
    cJSON *d;
    if (q->tool_name) {
        size_t at = (size_t)i * TOOL_PIECE, len = LX_MIN((size_t)TOOL_PIECE, q->answer_len - at);
        memcpy(piece, q->answer + at, len);
        piece[len] = '\0';
        d = typed("input_json_delta");
        cJSON_AddStringToObject(d, "partial_json", piece);
    } else {
        snprintf(piece, sizeof piece, "%.*s", (int)n, w);
        d = typed("text_delta");
        cJSON_AddStringToObject(d, "text", piece);
    }
    event(q, "content_block_delta", block_delta(q->tool_name ? 1 : 0, d));
    send_scratch(q);
}

void sim_anthropic_finish(sim_req *q)
{
    lx_http_req *http = q->http;
    if (http == NULL) return;
    q->http = NULL;
    if (!q->stream) {
        sim_reply_json(http, 200, message(q, true));
        return;
    }
    q->http = http;
    event(q, "content_block_stop", block_stop(q->tool_name ? 1 : 0));
    cJSON *md = typed("message_delta"), *delta = cJSON_AddObjectToObject(md, "delta");
    cJSON_AddStringToObject(delta, "stop_reason",
                            q->tool_name        ? "tool_use"
                            : q->ends_by_length ? "max_tokens"
                                                : "end_turn");
    cJSON_AddNullToObject(delta, "stop_sequence");
    cJSON_AddItemToObject(md, "usage", usage(q, false));
    event(q, "message_delta", md);
    event(q, "message_stop", typed("message_stop"));
    send_scratch(q);
    if (q->http) lx_http_stream_end(http); /* still there: the write did not lose the client */
    q->http = NULL;
}

void sim_anthropic_drop(sim_req *q)
{
    lx_http_req *http = q->http;
    if (http == NULL) return;
    cJSON *e = typed("error"), *err = cJSON_AddObjectToObject(e, "error");
    cJSON_AddStringToObject(err, "type", "overloaded_error");
    cJSON_AddStringToObject(err, "message", "Overloaded (lexora-sim --fail-mode midstream)");
    event(q, "error", e);
    send_scratch(q);
    if (q->http) lx_http_stream_end(http);
    q->http = NULL;
}
