/*
 * lexora-sim: POST /v1/chat/completions, /v1/completions and /v1/embeddings, in vLLM 0.11's wire
 * format (reference/wire-formats.md section 1), or with --api in that of Ollama's OpenAI layer
 * (ollama/openai/openai.go, middleware/openai.go) or llama.cpp's server (tools/server/server-task.cpp).
 * See sim.h.
 *
 * What differs by --api: the error shapes (sim_http.c); the model check (vLLM and Ollama answer 404 for a
 * model they do not serve, Ollama 403 {"error":"..."} for a cloud model; llama.cpp serves one model under
 * any name); Ollama sends no role-only chunk (the role comes with the first token), ends chat streams with
 * an empty-delta finish chunk, and with include_usage puts a zeroed usage on every completions chunk before
 * the real one on a usage chunk; llama.cpp adds its `timings` to non-streamed answers and to the last chunk
 * of a stream (the usage chunk when there is one), and always puts usage on a completions stream's last
 * chunk.
 *
 * A request is parsed with cJSON, validated in vLLM's order (JSON, field types, model, context
 * length), turned into a sim_req and handed to the engine, which calls back sim_out_* as tokens are
 * "generated". Streams get their headers at once (as vLLM's StreamingResponse does), the role chunk
 * and first token after TTFT, one chunk per token, then the finish chunk, the usage chunk when
 * stream_options.include_usage, and "data: [DONE]". Non-streamed answers are built whole with cJSON.
 *
 * Invariants: the chunks of one stream share id, created and model (q->prefix is built once);
 * nothing is written once q->http is NULL; every path out of sim_openai_handle either answers,
 * drops, or hands a sim_req to the engine, never two of these.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"
#include "utils/id.h"

#define MAX_LIMIT 1000000000L

typedef struct {
    int status;
    const char *type;
    const char *llamacpp_type; /* llama.cpp's own type when it has a specific one, else NULL */
    bool native;               /* Ollama: its native {"error":"..."} (from before its OpenAI layer) */
    char msg[640];
} rejection;

typedef struct {
    sim_kind kind;
    const char *model; /* NULL when absent: the first served model */
    bool stream, include_usage, continuous_usage;
    long max_tokens; /* -1 when not given */
    size_t text_bytes;
    long explicit_tokens; /* token ids given as numbers */
    long prompt_tokens;
    uint64_t seed;
    const cJSON *input; /* embeddings */
    long longest_input; /* tokens of the longest input item */
    long dims;
    bool base64;
    char rendered[SIM_PREFIX_WINDOW]; /* the start of the prompt as the prefix cache sees it */
    size_t rendered_len;
    const char *tool;      /* chat: the tool to call instead of answering text (in the request's JSON), or NULL */
    const char *tool_text; /* the last user message's text, which the call's arguments carry */
} parsed;

static int reject(rejection *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int reject(rejection *e, int status, const char *fmt, ...)
{
    e->status = status;
    e->type = status == 404 ? "NotFoundError" : "BadRequestError";
    e->llamacpp_type = NULL;
    e->native = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* pydantic's way of saying a field is wrong, as vLLM passes it on */
static int bad_field(rejection *e, const char *field, const char *kind, const char *msg)
{
    return reject(e, 400, "[{'type': '%s', 'loc': ('body', '%s'), 'msg': '%s'}]", kind, field, msg);
}

static int parse_json(lx_http_req *r, cJSON **out, rejection *e)
{
    lx_slice body = lx_http_req_body(r);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body.p, body.len, &end, 0);
    if (root && end) {
        while (end < body.p + body.len && strchr(" \t\r\n", *end))
            end++;
        if (end != body.p + body.len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    *out = root;
    if (root == NULL)
        return reject(e, 400, "[{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error'}]");
    if (!cJSON_IsObject(root))
        return reject(e, 400,
                      "[{'type': 'model_attributes_type', 'loc': ('body',), 'msg': 'Input should be a valid dictionary "
                      "or object to extract fields from'}]");
    return 0;
}

static int get_bool(const cJSON *o, const char *key, bool *out, rejection *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v == NULL || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return bad_field(e, key, "bool_type", "Input should be a valid boolean");
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A token limit: absent or null leaves *out alone; otherwise an integer >= 1. */
static int get_limit(const cJSON *o, const char *key, long *out, rejection *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v == NULL || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e15)
        return bad_field(e, key, "int_type", "Input should be a valid integer");
    if (v->valuedouble < 1) return reject(e, 400, "%s must be at least 1, got %.0f.", key, v->valuedouble);
    *out = v->valuedouble > MAX_LIMIT ? MAX_LIMIT : (long)v->valuedouble;
    return 0;
}

static void render(parsed *p, const void *s, size_t n)
{
    n = LX_MIN(n, sizeof p->rendered - p->rendered_len);
    memcpy(p->rendered + p->rendered_len, s, n);
    p->rendered_len += n;
}

static void count_text(parsed *p, const char *s)
{
    size_t n = strlen(s);
    p->text_bytes += n;
    p->seed = sim_hash(p->seed, s, n);
    render(p, s, n);
}

static void count_token(parsed *p, double id)
{
    p->explicit_tokens++;
    p->seed = sim_hash(p->seed, &id, sizeof id);
    render(p, &id, sizeof id);
}

static int parse_model(const cJSON *root, parsed *p, rejection *e)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (m == NULL || cJSON_IsNull(m)) return 0;
    if (!cJSON_IsString(m)) return bad_field(e, "model", "string_type", "Input should be a valid string");
    p->model = m->valuestring;
    return 0;
}

static int parse_stream(const cJSON *root, parsed *p, rejection *e)
{
    if (get_bool(root, "stream", &p->stream, e)) return -1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so == NULL || cJSON_IsNull(so)) return 0;
    if (!cJSON_IsObject(so)) return bad_field(e, "stream_options", "model_type", "Input should be a valid dictionary");
    if (!p->stream) return reject(e, 400, "Stream options can only be defined when `stream=True`.");
    if (get_bool(so, "include_usage", &p->include_usage, e)) return -1;
    if (get_bool(so, "continuous_usage_stats", &p->continuous_usage, e)) return -1;
    p->continuous_usage = p->continuous_usage && p->include_usage; /* as vLLM: only with usage */
    return 0;
}

static int parse_content(const cJSON *c, parsed *p, rejection *e)
{
    if (c == NULL || cJSON_IsNull(c)) return 0;
    if (cJSON_IsString(c)) {
        count_text(p, c->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(c))
        return bad_field(e, "messages", "string_type", "content: Input should be a valid string or list");
    const cJSON *part;
    cJSON_ArrayForEach(part, c)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(t)) count_text(p, t->valuestring);
    }
    return 0;
}

/* A message's text: its string content, or its first text part. */
static const char *message_text(const cJSON *m)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (cJSON_IsString(c)) return c->valuestring;
    const cJSON *part;
    cJSON_ArrayForEach(part, c)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(t)) return t->valuestring;
    }
    return "";
}

/*
 * The sim's only tool use: with tools offered and the last message a user's, it calls one: the function
 * tool_choice names, the first tool with "required", else (auto) a tool whose name the message mentions.
 * After a tool's result (the last message is not a user's) it answers text.
 */
static void parse_tools(const cJSON *root, parsed *p)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    const cJSON *last = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "messages"),
                                           cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "messages")) - 1);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(last, "role");
    if (!cJSON_IsArray(tools) || !cJSON_IsString(role) || strcmp(role->valuestring, "user") != 0) return;
    if (cJSON_IsString(choice) && strcmp(choice->valuestring, "none") == 0) return;
    p->tool_text = message_text(last);
    const cJSON *named = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, "function"), "name");
    if (cJSON_IsString(named)) {
        p->tool = named->valuestring;
        return;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
        if (!cJSON_IsString(name)) continue;
        if ((cJSON_IsString(choice) && strcmp(choice->valuestring, "required") == 0) ||
            strstr(p->tool_text, name->valuestring)) {
            p->tool = name->valuestring;
            return;
        }
    }
}

static int parse_messages(const cJSON *root, parsed *p, rejection *e)
{
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (ms == NULL) return bad_field(e, "messages", "missing", "Field required");
    if (!cJSON_IsArray(ms)) return bad_field(e, "messages", "list_type", "Input should be a valid list");
    const cJSON *m;
    cJSON_ArrayForEach(m, ms)
    {
        if (!cJSON_IsObject(m)) return bad_field(e, "messages", "model_type", "Input should be a valid dictionary");
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) return bad_field(e, "messages", "missing", "role: Field required");
        render(p, role->valuestring, strlen(role->valuestring));
        render(p, "\n", 1);
        if (parse_content(cJSON_GetObjectItemCaseSensitive(m, "content"), p, e)) return -1;
        render(p, "\n", 1);
    }
    long chat_limit = -1;
    if (get_limit(root, "max_tokens", &chat_limit, e)) return -1;
    if (get_limit(root, "max_completion_tokens", &p->max_tokens, e)) return -1;
    if (p->max_tokens < 0) p->max_tokens = chat_limit;
    parse_tools(root, p);
    return 0;
}

/* One prompt: a string, or a list of token ids. Returns 0, or -1 if pr is neither. */
static int prompt_item(const cJSON *pr, parsed *p)
{
    if (cJSON_IsString(pr)) {
        count_text(p, pr->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(pr)) {
        count_token(p, pr->valuedouble);
        return 0;
    }
    if (!cJSON_IsArray(pr) || cJSON_GetArraySize(pr) == 0) return -1;
    const cJSON *t;
    cJSON_ArrayForEach(t, pr)
    {
        if (!cJSON_IsNumber(t)) return -1;
        count_token(p, t->valuedouble);
    }
    return 0;
}

static int parse_prompt(const cJSON *root, parsed *p, rejection *e)
{
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (pr == NULL || cJSON_IsNull(pr)) return bad_field(e, "prompt", "missing", "Field required");
    int bad = 0;
    if (cJSON_IsArray(pr) && cJSON_GetArraySize(pr) > 0) {
        const cJSON *item;
        cJSON_ArrayForEach(item, pr) bad |= prompt_item(item, p);
    } else {
        bad = prompt_item(pr, p);
    }
    if (bad)
        return bad_field(e, "prompt", "string_type",
                         "Input should be a valid string, list of strings, or list of token ids");
    return get_limit(root, "max_tokens", &p->max_tokens, e);
}

/* Tokens of one embedding input item; -1 when it is not a string or a list of token ids. */
static long input_tokens(const cJSON *item)
{
    if (cJSON_IsString(item)) return LX_MAX(1, sim_tokens_for_bytes(strlen(item->valuestring)));
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) == 0) return -1;
    const cJSON *t;
    cJSON_ArrayForEach(t, item) if (!cJSON_IsNumber(t)) return -1;
    return cJSON_GetArraySize(item);
}

/* Is in a list of inputs (strings or lists of ids) rather than one list of token ids? */
static bool input_is_batch(const cJSON *in) { return cJSON_IsArray(in) && in->child && !cJSON_IsNumber(in->child); }

static int parse_embedding_options(sim *s, const cJSON *root, parsed *p, rejection *e)
{
    p->dims = s->cfg.embedding_dim;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "dimensions");
    if (d && !cJSON_IsNull(d)) {
        if (!cJSON_IsNumber(d) || d->valuedouble != floor(d->valuedouble) || d->valuedouble < 1 ||
            d->valuedouble > 65536)
            return bad_field(e, "dimensions", "int_type", "Input should be a valid integer between 1 and 65536");
        p->dims = (long)d->valuedouble;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "encoding_format");
    if (f && !cJSON_IsNull(f)) {
        if (!cJSON_IsString(f) || (strcmp(f->valuestring, "float") && strcmp(f->valuestring, "base64")))
            return bad_field(e, "encoding_format", "literal_error", "Input should be 'float' or 'base64'");
        p->base64 = strcmp(f->valuestring, "base64") == 0;
    }
    return 0;
}

static int parse_input(sim *s, const cJSON *root, parsed *p, rejection *e)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    if (in == NULL || cJSON_IsNull(in)) return bad_field(e, "input", "missing", "Field required");
    p->input = in;
    bool batch = input_is_batch(in);
    for (const cJSON *item = batch ? in->child : in; item; item = batch ? item->next : NULL) {
        long n = input_tokens(item);
        if (n < 0)
            return bad_field(e, "input", "string_type",
                             "Input should be a valid string, list of strings, or list of token ids");
        p->longest_input = LX_MAX(p->longest_input, n);
        p->prompt_tokens += n;
    }
    return parse_embedding_options(s, root, p, e);
}

/* Ollama takes a name without a tag for its ":latest". */
static bool model_served(const sim *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->cfg.n_models; i++) {
        const char *m = s->cfg.models[i];
        if (strcmp(m, name) == 0) return true;
        if (s->cfg.api == SIM_API_OLLAMA && strncmp(m, name, n) == 0 && strcmp(m + n, ":latest") == 0) return true;
    }
    return s->cfg.api == SIM_API_VLLM && sim_load_lora_served(s, name); /* a LoRA adapter loaded at run time */
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

static int check_model(const sim *s, const parsed *p, rejection *e)
{
    switch (s->cfg.api) {
    case SIM_API_LLAMACPP: return 0; /* one model, whatever the request calls it */
    case SIM_API_OLLAMA:
        if (p->model && (ends_with(p->model, ":cloud") || ends_with(p->model, "-cloud"))) {
            reject(e, 403, "ollama cloud is disabled: remote model is unavailable");
            e->native = true; /* answered before Ollama's OpenAI layer sees the request */
            return -1;
        }
        if (p->model == NULL || p->model[0] == '\0') return reject(e, 400, "model is required");
        if (!model_served(s, p->model)) return reject(e, 404, "model '%s' not found", p->model);
        return 0;
    case SIM_API_VLLM:
    case SIM_API_ANTHROPIC: break; /* Anthropic's own requests go to sim_anthropic.c */
    }
    if (p->model && !model_served(s, p->model)) return reject(e, 404, "The model `%s` does not exist.", p->model);
    return 0;
}

/* llama.cpp refuses a prompt that does not fit its context (a generation stops at the end of it). */
static int check_context_llamacpp(const sim *s, const parsed *p, rejection *e)
{
    long len = s->cfg.max_model_len, in = p->kind == SIM_EMBEDDING ? p->longest_input : p->prompt_tokens;
    if (in < len) return 0;
    reject(e, 400, "request (%ld tokens) exceeds the available context size (%ld tokens), try increasing it", in, len);
    e->llamacpp_type = "exceed_context_size_error";
    return -1;
}

static int check_context(sim *s, parsed *p, rejection *e)
{
    if (s->cfg.api == SIM_API_LLAMACPP) return check_context_llamacpp(s, p, e);
    long len = s->cfg.max_model_len, in = p->prompt_tokens;
    if (p->kind == SIM_EMBEDDING && p->longest_input > len)
        return reject(e, 400,
                      "This model's maximum context length is %ld tokens. However, you requested %ld tokens in "
                      "the input for embedding generation. Please reduce the length of the input.",
                      len, p->longest_input);
    if (p->kind == SIM_EMBEDDING) return 0;
    if (p->max_tokens < 0 && in >= len)
        return reject(e, 400,
                      "This model's maximum context length is %ld tokens. However, your request has %ld input "
                      "tokens. Please reduce the length of the input messages.",
                      len, in);
    if (p->max_tokens > 0 && in + p->max_tokens > len)
        return reject(e, 400,
                      "'max_tokens' or 'max_completion_tokens' is too large: %ld. This model's maximum context "
                      "length is %ld tokens and your request has %ld input tokens (%ld > %ld - %ld).",
                      p->max_tokens, len, in, p->max_tokens, len, in);
    return 0;
}

static int parse_kind(sim *s, const cJSON *root, parsed *p, rejection *e)
{
    switch (p->kind) {
    case SIM_CHAT:
        if (parse_messages(root, p, e)) return -1;
        break;
    case SIM_COMPLETION:
        if (parse_prompt(root, p, e)) return -1;
        break;
    case SIM_EMBEDDING: return parse_input(s, root, p, e);
    case SIM_MESSAGES: return -1; /* sim_anthropic.c's */
    }
    p->prompt_tokens = LX_MAX(1, p->explicit_tokens + sim_tokens_for_bytes(p->text_bytes));
    return parse_stream(root, p, e);
}

static int parse_request(sim *s, lx_http_req *r, parsed *p, cJSON **root, rejection *e)
{
    if (parse_json(r, root, e) || parse_model(*root, p, e) || parse_kind(s, *root, p, e)) return -1;
    if (check_model(s, p, e)) return -1;
    return check_context(s, p, e);
}

/* --- building a request --- */

static char *make_id(sim *s, lx_http_req *r, const char *prefix)
{
    lx_slice rid;
    char hex[33];
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_buf_append_str(&b, prefix);
    if (lx_http_req_header(r, "x-request-id", &rid) && lx_request_id_acceptable(rid)) {
        lx_buf_append(&b, rid.p, rid.len);
    } else {
        sim_hex_id(&s->id_rng, hex);
        lx_buf_append_str(&b, hex);
    }
    return lx_buf_steal(&b, NULL);
}

/* Ollama's and llama.cpp's answers carry a system_fingerprint; vLLM's chunks none. */
static const char *fingerprint(const sim *s)
{
    return s->cfg.api == SIM_API_OLLAMA ? "fp_ollama" : s->cfg.api == SIM_API_LLAMACPP ? "b6700-lexora-sim" : NULL;
}

/* '{"id":..,"object":..,"created":..,"model":..' printed by cJSON, the closing brace left off. */
static void make_prefix(sim_req *q, const char *object)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", q->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)q->created);
    cJSON_AddStringToObject(o, "model", q->model_out);
    const char *fp = fingerprint(q->sim);
    if (fp) cJSON_AddStringToObject(o, "system_fingerprint", fp);
    char *txt = cJSON_PrintUnformatted(o);
    lx_buf_append(&q->prefix, txt, strlen(txt) - 1);
    cJSON_free(txt);
    cJSON_Delete(o);
}

static cJSON *usage_json(long prompt, long completion, bool details)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + completion));
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion);
    if (details) cJSON_AddNullToObject(u, "prompt_tokens_details");
    return u;
}

static void add_embedding(cJSON *data, const cJSON *item, long index, const parsed *p)
{
    char *txt = cJSON_PrintUnformatted(item);
    uint64_t seed = sim_hash(SIM_HASH_INIT, txt, strlen(txt));
    cJSON_free(txt);
    double *v = lx_xmalloc((size_t)p->dims * sizeof *v);
    sim_embedding(seed, p->dims, v);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "index", (double)index);
    cJSON_AddStringToObject(d, "object", "embedding");
    if (p->base64) {
        lx_buf b;
        lx_buf_init(&b, 0);
        sim_base64_floats(v, p->dims, &b);
        cJSON_AddStringToObject(d, "embedding", b.p ? b.p : "");
        lx_buf_free(&b);
    } else {
        cJSON_AddItemToObject(d, "embedding", cJSON_CreateDoubleArray(v, (int)p->dims));
    }
    free(v);
    cJSON_AddItemToArray(data, d);
}

static void make_embedding_answer(sim_req *q, const parsed *p)
{
    bool vllm = q->sim->cfg.api == SIM_API_VLLM;
    cJSON *o = cJSON_CreateObject();
    if (vllm) cJSON_AddStringToObject(o, "id", q->id);
    cJSON_AddStringToObject(o, "object", "list");
    if (vllm) cJSON_AddNumberToObject(o, "created", (double)q->created);
    cJSON_AddStringToObject(o, "model", q->model_out);
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    bool batch = input_is_batch(p->input);
    long i = 0;
    for (const cJSON *it = batch ? p->input->child : p->input; it; it = batch ? it->next : NULL)
        add_embedding(data, it, i++, p);
    cJSON *u = usage_json(p->prompt_tokens, 0, vllm);
    if (!vllm) cJSON_DeleteItemFromObject(u, "completion_tokens"); /* {prompt_tokens, total_tokens} */
    cJSON_AddItemToObject(o, "usage", u);
    q->answer = cJSON_PrintUnformatted(o);
    q->answer_len = strlen(q->answer);
    cJSON_Delete(o);
}

static const char *const id_prefix[] = {"chatcmpl-", "cmpl-", "embd-"};
static const char *const object_name[] = {"chat.completion.chunk", "text_completion", "list"};

/* Tokens to generate: the client's limit, else the default, cut to what the context leaves. Hitting
 * a limit ends with finish_reason "length"; the default ends as if the model stopped ("stop"). */
static void set_length(sim_req *q, const parsed *p, long default_max, long max_model_len)
{
    if (p->kind == SIM_EMBEDDING) return;
    long room = max_model_len - q->prompt_tokens;
    q->ends_by_length = p->max_tokens > 0 || default_max > room;
    q->max_tokens = LX_MIN(p->max_tokens > 0 ? p->max_tokens : default_max, room);
}

#define SIM_TOOL_PIECES 3 /* a tool call's arguments come in this many pieces, one per "token" */

/* The call answered instead of text: name and {"input": the user's text}, generated in SIM_TOOL_PIECES tokens. */
static void make_tool_call(sim_req *q, const parsed *p)
{
    cJSON *args = cJSON_CreateObject();
    cJSON_AddStringToObject(args, "input", p->tool_text);
    char *a = cJSON_PrintUnformatted(args);
    size_t n = strlen(p->tool), m = strlen(a);
    q->tool_call = lx_xmalloc(n + m + 2);
    memcpy(q->tool_call, p->tool, n + 1);
    memcpy(q->tool_call + n + 1, a, m + 1);
    q->tool_name_len = n;
    cJSON_free(a);
    cJSON_Delete(args);
    q->max_tokens = LX_MIN(q->max_tokens, SIM_TOOL_PIECES);
    q->ends_by_length = false;
}

static const char *tool_args(const sim_req *q) { return q->tool_call + q->tool_name_len + 1; }

static sim_req *make_req(sim *s, lx_http_req *r, const parsed *p, bool midstream)
{
    sim_req *q = sim_req_new(s, r);
    q->kind = p->kind;
    q->stream = p->stream;
    q->include_usage = p->include_usage;
    q->continuous_usage = p->continuous_usage;
    q->prompt_tokens = p->prompt_tokens;
    set_length(q, p, s->cfg.default_max_tokens, s->cfg.max_model_len);
    if (p->tool) make_tool_call(q, p);
    if (midstream) q->drop_after = LX_MIN(SIM_MIDSTREAM_TOKENS, q->max_tokens);
    q->text_seed = sim_mix(p->seed);
    q->created = lx_wall_s();
    q->model_out = s->cfg.models[0];
    if (s->cfg.api != SIM_API_VLLM && p->model && p->model[0]) /* they answer with the name asked for */
        q->model_out = q->model_copy = lx_xstrdup(p->model);
    else if (p->model && sim_load_lora_served(s, p->model)) /* vLLM answers with the LoRA adapter's name */
        q->model_out = q->model_copy = lx_xstrdup(p->model);
    if (p->kind != SIM_EMBEDDING) sim_prefix_keys(p->rendered, p->rendered_len, &q->keys);
    q->id = make_id(s, r, id_prefix[p->kind]);
    if (p->kind == SIM_EMBEDDING) make_embedding_answer(q, p);
    if (p->stream) make_prefix(q, object_name[p->kind]);
    return q;
}

void sim_openai_handle(sim *s, lx_http_req *r, sim_kind kind, bool midstream)
{
    parsed p = {.kind = kind, .max_tokens = -1, .seed = SIM_HASH_INIT};
    rejection e;
    cJSON *root = NULL;
    int rc = parse_request(s, r, &p, &root, &e);
    if (midstream && (rc != 0 || !p.stream)) {
        s->st.failed++;
        lx_http_req_drop(r);
    } else if (rc != 0) {
        s->st.rejected++;
        if (e.native)
            sim_reply_ollama_native(r, e.status, e.msg);
        else if (e.llamacpp_type && s->cfg.api == SIM_API_LLAMACPP)
            sim_reply_llamacpp_error(r, e.status, e.llamacpp_type, e.msg);
        else
            sim_reply_error(s, r, e.status, e.type, e.msg);
    } else {
        sim_req *q = make_req(s, r, &p, midstream);
        static const lx_http_header sse[] = {{"content-type", "text/event-stream; charset=utf-8"}};
        if (q->stream) lx_http_stream_begin(r, 200, sse, 1);
        if (q->state != SIM_DONE) sim_engine_submit(q); /* else the client left already */
    }
    cJSON_Delete(root);
}

/* --- output, as the engine produces --- */

static bool is_api(const sim_req *q, sim_api a) { return q->sim->cfg.api == a; }

/* ,"usage":{...} with `completion` tokens generated so far */
static void chunk_usage(const sim_req *q, lx_buf *b, long completion)
{
    lx_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld,\"completion_tokens\":%ld}",
                  q->prompt_tokens, q->prompt_tokens + completion, completion);
}

static double ms_between(uint64_t from, uint64_t to) { return to > from ? (double)(to - from) / 1e6 : 0; }

static double per_second(long n, double ms) { return ms > 0 ? (double)n * 1e3 / ms : 0; }

/* llama.cpp's timings: cache_n is what the prefix cache held, prompt_n the rest of the prompt. */
static cJSON *timings_json(const sim_req *q)
{
    long cache_n = LX_MIN(q->prompt_tokens, sim_tokens_for_bytes(q->prefix_matched));
    long prompt_n = q->prompt_tokens - cache_n;
    double prompt_ms = ms_between(q->started_ns, q->first_ns), predicted_ms = ms_between(q->first_ns, lx_now_ns());
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "cache_n", (double)cache_n);
    cJSON_AddNumberToObject(t, "prompt_n", (double)prompt_n);
    cJSON_AddNumberToObject(t, "prompt_ms", prompt_ms);
    cJSON_AddNumberToObject(t, "prompt_per_token_ms", prompt_n > 0 ? prompt_ms / (double)prompt_n : 0);
    cJSON_AddNumberToObject(t, "prompt_per_second", per_second(prompt_n, prompt_ms));
    cJSON_AddNumberToObject(t, "predicted_n", (double)q->generated);
    cJSON_AddNumberToObject(t, "predicted_ms", predicted_ms);
    cJSON_AddNumberToObject(t, "predicted_per_token_ms", q->generated > 0 ? predicted_ms / (double)q->generated : 0);
    cJSON_AddNumberToObject(t, "predicted_per_second", per_second(q->generated, predicted_ms));
    return t;
}

/* ,"timings":{...} */
static void chunk_timings(const sim_req *q, lx_buf *b)
{
    cJSON *t = timings_json(q);
    char *txt = cJSON_PrintUnformatted(t);
    lx_buf_printf(b, ",\"timings\":%s", txt);
    cJSON_free(txt);
    cJSON_Delete(t);
}

/* What ends a chunk before its closing brace: vLLM's continuous usage; Ollama's zeroed usage on every
 * completions chunk when usage was asked for. */
static void chunk_extras(const sim_req *q, lx_buf *b, long completion)
{
    if (q->continuous_usage && is_api(q, SIM_API_VLLM)) chunk_usage(q, b, completion);
    if (q->include_usage && q->kind == SIM_COMPLETION && is_api(q, SIM_API_OLLAMA))
        lx_buf_append_str(b, ",\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0,\"total_tokens\":0}");
}

/* Appends data: <prefix>,"choices":[<choice>] without the closing brace. */
static void chunk_open(const sim_req *q, lx_buf *b, const char *choice, size_t choice_len)
{
    lx_buf_append(b, "data: ", 6);
    lx_buf_append(b, q->prefix.p, q->prefix.len);
    lx_buf_append(b, ",\"choices\":[", 12);
    lx_buf_append(b, choice, choice_len);
    lx_buf_append(b, "]", 1);
}

/* Appends one whole event: data: <prefix>,"choices":[<choice>]<extras>} */
static void chunk(const sim_req *q, lx_buf *b, const char *choice, size_t choice_len, long completion)
{
    chunk_open(q, b, choice, choice_len);
    chunk_extras(q, b, completion);
    lx_buf_append(b, "}\n\n", 3);
}

static void send_scratch(sim_req *q)
{
    lx_buf *b = &q->sim->scratch;
    if (q->http) lx_http_stream_write(q->http, b->p, b->len);
    lx_buf_reset(b);
}

/* vLLM opens a chat stream with a role chunk of empty content, llama.cpp with null content; Ollama sends
 * the role with the first token. */
void sim_out_first(sim_req *q)
{
    if (q->kind == SIM_MESSAGES) {
        sim_anthropic_first(q);
        return;
    }
    static const char vllm_role[] =
        "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}";
    static const char llamacpp_role[] =
        "{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}";
    if (!q->stream || q->kind != SIM_CHAT || q->http == NULL || is_api(q, SIM_API_OLLAMA)) return;
    if (is_api(q, SIM_API_LLAMACPP))
        chunk(q, &q->sim->scratch, llamacpp_role, sizeof llamacpp_role - 1, 0);
    else
        chunk(q, &q->sim->scratch, vllm_role, sizeof vllm_role - 1, 0);
    send_scratch(q);
}

static int token_choice(const sim_req *q, long i, const char *w, size_t n, char *out, size_t cap)
{
    int len = (int)n;
    if (q->kind == SIM_CHAT) {
        const char *role = i == 0 && is_api(q, SIM_API_OLLAMA) ? "\"role\":\"assistant\"," : "";
        if (is_api(q, SIM_API_LLAMACPP))
            return snprintf(out, cap, "{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"%.*s\"}}", len, w);
        if (is_api(q, SIM_API_OLLAMA))
            return snprintf(out, cap, "{\"index\":0,\"delta\":{%s\"content\":\"%.*s\"},\"finish_reason\":null}", role,
                            len, w);
        return snprintf(out, cap,
                        "{\"index\":0,\"delta\":{\"content\":\"%.*s\"},\"logprobs\":null,\"finish_reason\":null}", len,
                        w);
    }
    if (is_api(q, SIM_API_OLLAMA))
        return snprintf(out, cap, "{\"text\":\"%.*s\",\"index\":0,\"finish_reason\":null}", len, w);
    if (is_api(q, SIM_API_LLAMACPP))
        return snprintf(out, cap, "{\"text\":\"%.*s\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}", len, w);
    return snprintf(out, cap,
                    "{\"index\":0,\"text\":\"%.*s\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}",
                    len, w);
}

/* Piece i of a tool call's stream: the first names the call, every one carries a slice of the arguments. */
static void tool_chunk(sim_req *q, long i)
{
    const char *a = tool_args(q);
    size_t len = strlen(a), from = len * (size_t)i / (size_t)q->max_tokens;
    size_t to = i + 1 >= q->max_tokens ? len : len * (size_t)(i + 1) / (size_t)q->max_tokens;
    lx_buf piece;
    lx_buf_init(&piece, 0);
    lx_buf_append_str(&piece, "{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,");
    if (i == 0) {
        lx_buf_printf(&piece, "\"id\":\"chatcmpl-tool-%s\",\"type\":\"function\",\"function\":{\"name\":\"", q->id);
        lx_buf_json_escape(&piece, q->tool_call, q->tool_name_len);
        lx_buf_append_str(&piece, "\",");
    } else {
        lx_buf_append_str(&piece, "\"function\":{");
    }
    lx_buf_append_str(&piece, "\"arguments\":\"");
    lx_buf_json_escape(&piece, a + from, to - from);
    lx_buf_append_str(&piece, "\"}}]},\"logprobs\":null,\"finish_reason\":null}");
    chunk(q, &q->sim->scratch, piece.p, piece.len, i + 1);
    lx_buf_free(&piece);
    send_scratch(q);
}

void sim_out_token(sim_req *q, long i)
{
    if (q->kind == SIM_MESSAGES) {
        sim_anthropic_token(q, i);
        return;
    }
    size_t n;
    const char *w = sim_word(q->text_seed, i, &n);
    if (q->tool_call && q->stream && q->http) {
        tool_chunk(q, i);
        return;
    }
    if (q->tool_call) return;
    if (!q->stream) {
        lx_buf_append(&q->text, w, n);
        return;
    }
    if (q->http == NULL) return;
    char choice[192];
    int k = token_choice(q, i, w, n, choice, sizeof choice);
    chunk(q, &q->sim->scratch, choice, (size_t)k, i + 1);
    send_scratch(q);
}

static const char *finish_reason(const sim_req *q)
{
    return q->tool_call ? "tool_calls" : q->ends_by_length ? "length" : "stop";
}

static int finish_choice(const sim_req *q, char *out, size_t cap)
{
    const char *fr = finish_reason(q);
    if (q->kind == SIM_CHAT) {
        if (is_api(q, SIM_API_LLAMACPP))
            return snprintf(out, cap, "{\"finish_reason\":\"%s\",\"index\":0,\"delta\":{}}", fr);
        if (is_api(q, SIM_API_OLLAMA))
            return snprintf(out, cap, "{\"index\":0,\"delta\":{},\"finish_reason\":\"%s\"}", fr);
        return snprintf(out, cap,
                        "{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,\"finish_reason\":\"%s\",\"stop_"
                        "reason\":null}",
                        fr);
    }
    if (is_api(q, SIM_API_OLLAMA))
        return snprintf(out, cap, "{\"text\":\"\",\"index\":0,\"finish_reason\":\"%s\"}", fr);
    if (is_api(q, SIM_API_LLAMACPP))
        return snprintf(out, cap, "{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"%s\"}", fr);
    return snprintf(out, cap,
                    "{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"%s\",\"stop_reason\":null}", fr);
}

/* The finish chunk, then the usage chunk ("choices":[]) when asked for; llama.cpp's timings go on the last
 * of them, and its completions put usage on the finish chunk itself. */
static void finish_events(sim_req *q, lx_buf *b)
{
    char choice[160];
    int k = finish_choice(q, choice, sizeof choice);
    bool llamacpp = is_api(q, SIM_API_LLAMACPP);
    bool usage_chunk = q->include_usage && !(llamacpp && q->kind == SIM_COMPLETION);
    chunk_open(q, b, choice, (size_t)k);
    chunk_extras(q, b, q->generated);
    if (llamacpp && q->kind == SIM_COMPLETION) chunk_usage(q, b, q->generated);
    if (llamacpp && !usage_chunk) chunk_timings(q, b);
    lx_buf_append(b, "}\n\n", 3);
    if (!usage_chunk) return;
    lx_buf_append(b, "data: ", 6);
    lx_buf_append(b, q->prefix.p, q->prefix.len);
    lx_buf_append_str(b, ",\"choices\":[]");
    chunk_usage(q, b, q->generated);
    if (llamacpp) chunk_timings(q, b);
    lx_buf_append(b, "}\n\n", 3);
}

static void finish_stream(sim_req *q, lx_http_req *http)
{
    lx_buf *b = &q->sim->scratch;
    finish_events(q, b);
    lx_buf_append_str(b, "data: [DONE]\n\n");
    lx_http_stream_write(http, b->p, b->len);
    lx_buf_reset(b);
    if (q->http) lx_http_stream_end(http); /* still there: the write did not lose the client */
    q->http = NULL;
}

static cJSON *answer_head(const sim_req *q, const char *object)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", q->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)q->created);
    cJSON_AddStringToObject(o, "model", q->model_out);
    const char *fp = fingerprint(q->sim);
    if (fp) cJSON_AddStringToObject(o, "system_fingerprint", fp);
    return o;
}

static void add_tail(cJSON *o, const sim_req *q)
{
    if (is_api(q, SIM_API_VLLM)) {
        cJSON_AddNullToObject(o, "service_tier");
        cJSON_AddNullToObject(o, "system_fingerprint");
    }
    cJSON_AddItemToObject(o, "usage", usage_json(q->prompt_tokens, q->generated, is_api(q, SIM_API_VLLM)));
    if (is_api(q, SIM_API_LLAMACPP)) cJSON_AddItemToObject(o, "timings", timings_json(q));
}

/* vLLM's message and choice carry every optional field as null; Ollama's and llama.cpp's only the basics. */
static cJSON *chat_choice(const sim_req *q)
{
    bool vllm = is_api(q, SIM_API_VLLM);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    if (q->tool_call)
        cJSON_AddNullToObject(m, "content");
    else
        cJSON_AddStringToObject(m, "content", q->text.p ? q->text.p : "");
    if (q->tool_call) {
        cJSON *tc = cJSON_CreateObject(), *fn;
        char id[160];
        snprintf(id, sizeof id, "chatcmpl-tool-%s", q->id);
        cJSON_AddStringToObject(tc, "id", id);
        cJSON_AddStringToObject(tc, "type", "function");
        fn = cJSON_AddObjectToObject(tc, "function");
        cJSON_AddStringToObject(fn, "name", q->tool_call);
        cJSON_AddStringToObject(fn, "arguments", tool_args(q));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(m, "tool_calls"), tc);
    }
    if (vllm) {
        cJSON_AddNullToObject(m, "refusal");
        cJSON_AddNullToObject(m, "annotations");
        cJSON_AddNullToObject(m, "audio");
        cJSON_AddNullToObject(m, "function_call");
        if (!q->tool_call) cJSON_AddArrayToObject(m, "tool_calls");
        cJSON_AddNullToObject(m, "reasoning_content");
        cJSON_AddNullToObject(c, "logprobs");
    }
    cJSON_AddStringToObject(c, "finish_reason", finish_reason(q));
    if (vllm) {
        cJSON_AddNullToObject(c, "stop_reason");
        cJSON_AddNullToObject(c, "token_ids");
    }
    return c;
}

static cJSON *chat_answer(const sim_req *q)
{
    cJSON *o = answer_head(q, "chat.completion");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), chat_choice(q));
    add_tail(o, q);
    if (is_api(q, SIM_API_VLLM)) {
        cJSON_AddNullToObject(o, "prompt_logprobs");
        cJSON_AddNullToObject(o, "prompt_token_ids");
        cJSON_AddNullToObject(o, "kv_transfer_params");
    }
    return o;
}

static cJSON *completion_answer(const sim_req *q)
{
    bool vllm = is_api(q, SIM_API_VLLM);
    cJSON *o = answer_head(q, "text_completion");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON_AddStringToObject(c, "text", q->text.p ? q->text.p : "");
    if (!is_api(q, SIM_API_OLLAMA)) cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish_reason(q));
    if (vllm) {
        cJSON_AddNullToObject(c, "stop_reason");
        cJSON_AddNullToObject(c, "token_ids");
        cJSON_AddNullToObject(c, "prompt_logprobs");
        cJSON_AddNullToObject(c, "prompt_token_ids");
    }
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), c);
    add_tail(o, q);
    if (vllm) cJSON_AddNullToObject(o, "kv_transfer_params");
    return o;
}

void sim_out_finish(sim_req *q)
{
    static const lx_http_header json[] = {{"content-type", "application/json"}};
    if (q->kind == SIM_MESSAGES) {
        sim_anthropic_finish(q);
        return;
    }
    lx_http_req *http = q->http;
    if (http == NULL) return;
    if (q->stream) {
        finish_stream(q, http);
        return;
    }
    q->http = NULL;
    if (q->kind == SIM_EMBEDDING) {
        lx_http_respond(http, 200, json, 1, q->answer, q->answer_len);
        return;
    }
    sim_reply_json(http, 200, q->kind == SIM_CHAT ? chat_answer(q) : completion_answer(q));
}

void sim_out_drop(sim_req *q)
{
    if (q->kind == SIM_MESSAGES && q->stream) {
        sim_anthropic_drop(q);
        return;
    }
    lx_http_req *http = q->http;
    q->http = NULL;
    if (http) lx_http_req_drop(http);
}
