/*
 * lexora-sim: the HTTP face. Routes every request, answers the small endpoints of the server it plays
 * (--api vllm: /health, /ping, /version, /v1/models, /metrics; ollama: /, /api/version, /api/tags,
 * /v1/models; llamacpp: /health, /v1/models; anthropic: /v1/models, with /v1/messages, in sim_anthropic.c) and the
 * simulator's own (/sim/requests, /sim/stats, /sim/control), decides failure injection, and keeps the log of recent
 * /v1/ requests. The load and unload endpoints (Ollama's /api/generate and /api/ps, vLLM's /sleep, /wake_up,
 * /is_sleeping and LoRA endpoints, llama.cpp's /models...) are routed here and answered by sim_load.c; vLLM's and
 * llama.cpp's only with the flags that enable them (404 otherwise). Every inference request passes sim_load_gate
 * first (it may wait there for its model's load). See sim.h.
 *
 * Each --api has its own route table and error shapes, as the real server answers: vLLM's envelope;
 * Ollama's OpenAI layer's {"error":{"message","type","param":null,"code":null}} on /v1 (type from the
 * status: invalid_request_error, not_found_error, api_error), its native {"error":"..."} elsewhere, and
 * gin's plain "404 page not found" for an unknown path or method; llama.cpp's {"error":{"code","message",
 * "type"}}, and while --load-ms runs, 503 "Loading model" on every path (it listens before its model
 * is loaded).
 *
 * Invariants: every request to a path under /v1/ is counted in stats.received and logged (in arrival
 * order, before anything else happens to it, so even injected failures and 4xx are there); failure
 * injection applies only to the inference endpoints (POST chat, completions, embeddings) and draws
 * from the seeded PRNG only when fail_rate > 0, so a given --seed fails the same requests; an unknown
 * path is 404 and a known path with another method 405, in vLLM's nested envelope (FastAPI's
 * {"detail": ...} with --flat-errors, as vLLM before 0.10.1 answered).
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim.h"

struct sim_reqlog {
    char *rec[SIM_LOG_MAX]; /* one rendered JSON object each; the oldest at head */
    size_t len[SIM_LOG_MAX];
    size_t head, n;
};

typedef void (*handler_fn)(sim *s, lx_http_req *r);

/* What a route needs switched on; without it the route is 404, as on a server started without that flag. */
typedef enum { NEED_NONE = 0, NEED_SLEEP, NEED_LORA, NEED_ROUTER } route_need;

typedef struct {
    const char *path;
    const char *methods; /* as the Allow header lists them */
    handler_fn fn;
    route_need need;
} route;

static bool route_on(const sim *s, route_need need)
{
    switch (need) {
    case NEED_SLEEP: return s->cfg.sleep_mode;
    case NEED_LORA: return s->cfg.runtime_lora;
    case NEED_ROUTER: return s->cfg.router;
    case NEED_NONE: break;
    }
    return true;
}

static const lx_http_header json_ct[] = {{"content-type", "application/json"}};

/* --- answers --- */

/* extra: one more header (Allow of a 405, Retry-After of a 429), or NULL. */
static void reply_json_with(lx_http_req *r, int status, cJSON *body, const lx_http_header *extra)
{
    char *txt = cJSON_PrintUnformatted(body);
    lx_http_header h[2] = {json_ct[0], extra ? *extra : json_ct[0]};
    lx_http_respond(r, status, h, extra ? 2 : 1, txt, strlen(txt));
    cJSON_free(txt);
    cJSON_Delete(body);
}

void sim_reply_json(lx_http_req *r, int status, cJSON *body) { reply_json_with(r, status, body, NULL); }

static cJSON *error_envelope(const sim *s, int status, const char *type, const char *message)
{
    cJSON *o = cJSON_CreateObject(), *e = o;
    if (s->cfg.flat_errors)
        cJSON_AddStringToObject(o, "object", "error");
    else
        e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddNumberToObject(e, "code", status);
    return o;
}

static const char *ollama_type(int status)
{
    return status == 400 ? "invalid_request_error" : status == 404 ? "not_found_error" : "api_error";
}

static const char *llamacpp_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 501: return "not_supported_error";
    case 503: return "unavailable_error";
    default: return "server_error";
    }
}

void sim_reply_llamacpp_error(lx_http_req *r, int status, const char *type, const char *message)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddNumberToObject(e, "code", status);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type ? type : llamacpp_type(status));
    sim_reply_json(r, status, o);
}

void sim_reply_ollama_native(lx_http_req *r, int status, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", message);
    sim_reply_json(r, status, o);
}

static void reply_ollama_openai(lx_http_req *r, int status, const char *message)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", ollama_type(status));
    cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    sim_reply_json(r, status, o);
}

void sim_reply_error(sim *s, lx_http_req *r, int status, const char *type, const char *message)
{
    switch (s->cfg.api) {
    case SIM_API_ANTHROPIC: sim_anthropic_error(r, status, message, NULL); return;
    case SIM_API_OLLAMA: reply_ollama_openai(r, status, message); return;
    case SIM_API_LLAMACPP: sim_reply_llamacpp_error(r, status, NULL, message); return;
    case SIM_API_VLLM: break;
    }
    sim_reply_json(r, status, error_envelope(s, status, type, message));
}

/* 404 / 405 as FastAPI raises them: vLLM >= 0.10.1 wraps them in its envelope (type = the reason
 * phrase), older vLLM left FastAPI's {"detail": ...}. allow: the Allow header of a 405. */
static void reply_http_error(sim *s, lx_http_req *r, int status, const char *allow)
{
    static const lx_http_header text_ct[] = {{"content-type", "text/plain"}};
    if (s->cfg.api == SIM_API_OLLAMA) { /* gin: no route for the path or the method */
        lx_http_respond(r, 404, text_ct, 1, "404 page not found", 18);
        return;
    }
    if (s->cfg.api == SIM_API_LLAMACPP) {
        sim_reply_llamacpp_error(r, 404, NULL, "File Not Found");
        return;
    }
    if (s->cfg.api == SIM_API_ANTHROPIC) {
        lx_http_header h = {"allow", allow};
        sim_anthropic_error(r, status, status == 404 ? "Not Found" : "Method Not Allowed", allow ? &h : NULL);
        return;
    }
    const char *phrase = lx_http_reason(status);
    cJSON *o;
    if (s->cfg.flat_errors) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "detail", phrase);
    } else {
        o = error_envelope(s, status, phrase, phrase);
    }
    lx_http_header h = {"allow", allow};
    reply_json_with(r, status, o, allow ? &h : NULL);
}

/* --- the request log --- */

static void json_string(lx_buf *b, const char *p, size_t n)
{
    lx_buf_append(b, "\"", 1);
    lx_buf_json_escape(b, p, n);
    lx_buf_append(b, "\"", 1);
}

static void json_lower_name(lx_buf *b, lx_slice name)
{
    char low[256];
    size_t n = LX_MIN(name.len, sizeof low);
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)name.p[i]);
    json_string(b, low, n);
}

static bool same_name(lx_slice a, lx_slice b) { return a.len == b.len && strncasecmp(a.p, b.p, a.len) == 0; }

/* Header i's value, then those of later headers of the same name, joined with ", " (as HTTP allows). */
static void log_header_values(lx_buf *b, const lx_http_req *r, size_t i, size_t n, lx_slice name, lx_slice value)
{
    lx_slice other, v;
    lx_buf_json_escape(b, value.p, value.len);
    for (size_t k = i + 1; k < n; k++) {
        lx_http_req_header_at(r, k, &other, &v);
        if (!same_name(other, name)) continue;
        lx_buf_append(b, ", ", 2);
        lx_buf_json_escape(b, v.p, v.len);
    }
}

static bool seen_before(const lx_http_req *r, size_t i, lx_slice name)
{
    lx_slice other, v;
    for (size_t j = 0; j < i; j++) {
        lx_http_req_header_at(r, j, &other, &v);
        if (same_name(other, name)) return true;
    }
    return false;
}

/* ,"headers":{...} with the names lowercased. */
static void log_headers(lx_buf *b, const lx_http_req *r)
{
    size_t n = lx_http_req_header_count(r);
    bool first = true;
    lx_buf_append_str(b, ",\"headers\":{");
    for (size_t i = 0; i < n; i++) {
        lx_slice name, value;
        lx_http_req_header_at(r, i, &name, &value);
        if (seen_before(r, i, name)) continue;
        if (!first) lx_buf_append(b, ",", 1);
        first = false;
        json_lower_name(b, name);
        lx_buf_append(b, ":\"", 2);
        log_header_values(b, r, i, n, name, value);
        lx_buf_append(b, "\"", 1);
    }
    lx_buf_append(b, "}", 1);
}

static void log_request(sim *s, lx_http_req *r)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    const char *method = lx_http_req_method(r);
    lx_slice path = lx_http_req_path(r), query = lx_http_req_query(r), rid, body = lx_http_req_body(r);
    lx_buf_printf(&b, "{\"seq\":%" PRIu64 ",\"received_ms\":%.3f,\"method\":", s->st.received,
                  (double)(lx_now_ns() - s->start_ns) / 1e6);
    json_string(&b, method, strlen(method));
    lx_buf_append_str(&b, ",\"path\":\"");
    lx_buf_json_escape(&b, path.p, path.len);
    if (query.len) {
        lx_buf_append(&b, "?", 1);
        lx_buf_json_escape(&b, query.p, query.len);
    }
    lx_buf_append_str(&b, "\",\"request_id\":");
    if (lx_http_req_header(r, "x-request-id", &rid))
        json_string(&b, rid.p, rid.len);
    else
        lx_buf_append_str(&b, "null");
    log_headers(&b, r);
    lx_buf_append_str(&b, ",\"body\":");
    json_string(&b, body.p ? body.p : "", LX_MIN(body.len, SIM_LOG_BODY_MAX));
    if (body.len > SIM_LOG_BODY_MAX) lx_buf_append_str(&b, ",\"body_truncated\":true");
    lx_buf_append(&b, "}", 1);

    sim_reqlog *l = s->log;
    size_t slot = (l->head + l->n) % SIM_LOG_MAX;
    if (l->n == SIM_LOG_MAX) {
        free(l->rec[l->head]);
        l->head = (l->head + 1) % SIM_LOG_MAX;
        l->n--;
    }
    l->rec[slot] = lx_buf_steal(&b, &l->len[slot]);
    l->n++;
}

static void log_clear(sim_reqlog *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->rec[(l->head + i) % SIM_LOG_MAX]);
    l->head = l->n = 0;
}

/* --- failure injection --- */

static bool should_fail(sim *s)
{
    if (s->fail_first_left > 0) {
        s->fail_first_left--;
        return true;
    }
    return s->cfg.fail_rate > 0 && sim_rng_unit(&s->fail_rng) < s->cfg.fail_rate;
}

static void inject(sim *s, lx_http_req *r)
{
    s->st.failed++;
    switch (s->cfg.fail_mode) {
    case SIM_FAIL_503:
        sim_reply_error(s, r, 503, "ServiceUnavailableError", "Simulated failure (lexora-sim --fail-mode 503).");
        break;
    case SIM_FAIL_500:
        sim_reply_error(s, r, 500, "InternalServerError", "Simulated failure (lexora-sim --fail-mode 500).");
        break;
    case SIM_FAIL_429: {
        static const lx_http_header retry_after = {"retry-after", "1"};
        if (s->cfg.api == SIM_API_ANTHROPIC) {
            sim_anthropic_error(r, 429, "Simulated failure (lexora-sim --fail-mode 429).", &retry_after);
            break;
        }
        reply_json_with(r, 429,
                        error_envelope(s, 429, "RateLimitError", "Simulated failure (lexora-sim --fail-mode 429)."),
                        &retry_after);
        break;
    }
    case SIM_FAIL_400:
        sim_reply_error(s, r, 400, "BadRequestError", "Simulated failure (lexora-sim --fail-mode 400).");
        break;
    case SIM_FAIL_529:
        sim_reply_error(s, r, 529, "OverloadedError", "Simulated failure (lexora-sim --fail-mode 529).");
        break;
    case SIM_FAIL_HANG: break; /* no answer: the server keeps the request until the client leaves */
    default: lx_http_req_drop(r); break;
    }
}

void sim_http_infer(sim *s, lx_http_req *r, sim_kind kind)
{
    if (sim_load_gate(s, r, kind)) return; /* answered, or waits for its model's load */
    bool fail = should_fail(s);
    if (fail && s->cfg.fail_mode != SIM_FAIL_MIDSTREAM) {
        inject(s, r);
        return;
    }
    if (kind == SIM_MESSAGES)
        sim_anthropic_handle(s, r, fail);
    else
        sim_openai_handle(s, r, kind, fail);
}

void sim_ollama_details(cJSON *model)
{
    cJSON *d = cJSON_AddObjectToObject(model, "details");
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", "gguf");
    cJSON_AddStringToObject(d, "family", "llama");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(d, "families"), cJSON_CreateString("llama"));
    cJSON_AddStringToObject(d, "parameter_size", "3.2B");
    cJSON_AddStringToObject(d, "quantization_level", "Q4_K_M");
}

static void h_chat(sim *s, lx_http_req *r) { sim_http_infer(s, r, SIM_CHAT); }
static void h_messages(sim *s, lx_http_req *r) { sim_http_infer(s, r, SIM_MESSAGES); }
static void h_completions(sim *s, lx_http_req *r) { sim_http_infer(s, r, SIM_COMPLETION); }
static void h_embeddings(sim *s, lx_http_req *r) { sim_http_infer(s, r, SIM_EMBEDDING); }

/* --- vLLM's small endpoints --- */

static void h_health(sim *s, lx_http_req *r)
{
    (void)s;
    lx_http_respond(r, 200, NULL, 0, "", 0);
}

static void h_version(sim *s, lx_http_req *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", s->cfg.vllm_version);
    sim_reply_json(r, 200, o);
}

cJSON *sim_model_permission(sim *s, int64_t now)
{
    char hex[33], id[48];
    sim_hex_id(&s->id_rng, hex);
    snprintf(id, sizeof id, "modelperm-%s", hex);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "id", id);
    cJSON_AddStringToObject(p, "object", "model_permission");
    cJSON_AddNumberToObject(p, "created", (double)now);
    cJSON_AddFalseToObject(p, "allow_create_engine");
    cJSON_AddTrueToObject(p, "allow_sampling");
    cJSON_AddTrueToObject(p, "allow_logprobs");
    cJSON_AddFalseToObject(p, "allow_search_indices");
    cJSON_AddTrueToObject(p, "allow_view");
    cJSON_AddFalseToObject(p, "allow_fine_tuning");
    cJSON_AddStringToObject(p, "organization", "*");
    cJSON_AddNullToObject(p, "group");
    cJSON_AddFalseToObject(p, "is_blocking");
    return p;
}

static void h_models(sim *s, lx_http_req *r)
{
    int64_t now = lx_wall_s();
    char root[512];
    snprintf(root, sizeof root, "/models/%s", s->cfg.models[0]);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i < s->cfg.n_models; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", s->cfg.models[i]);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)now);
        cJSON_AddStringToObject(m, "owned_by", "vllm");
        cJSON_AddStringToObject(m, "root", root);
        cJSON_AddNullToObject(m, "parent");
        cJSON_AddNumberToObject(m, "max_model_len", (double)s->cfg.max_model_len);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(m, "permission"), sim_model_permission(s, now));
        cJSON_AddItemToArray(data, m);
    }
    sim_load_vllm_models(s, data, now);
    sim_reply_json(r, 200, o);
}

/* --- Ollama's and llama.cpp's small endpoints --- */

static void h_ollama_root(sim *s, lx_http_req *r)
{
    (void)s;
    static const lx_http_header h[] = {{"content-type", "text/plain; charset=utf-8"}};
    lx_http_respond(r, 200, h, 1, "Ollama is running", 17);
}

static void h_ollama_version(sim *s, lx_http_req *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", s->cfg.ollama_version);
    sim_reply_json(r, 200, o);
}

void sim_ollama_digest(const char *name, char out[65])
{
    uint64_t h = sim_hash(SIM_HASH_INIT, name, strlen(name));
    for (int k = 0; k < 4; k++)
        snprintf(out + 16 * k, 17, "%016" PRIx64, sim_mix(h + (uint64_t)k));
}

/* GET /api/tags: every local model, with its file's details (made up, but in Ollama's shape). */
static void h_ollama_tags(sim *s, lx_http_req *r)
{
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "models");
    for (size_t i = 0; i < s->cfg.n_models; i++) {
        const char *name = s->cfg.models[i];
        char digest[65];
        sim_ollama_digest(name, digest);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", name);
        cJSON_AddStringToObject(m, "model", name);
        cJSON_AddStringToObject(m, "modified_at", "2025-06-01T12:00:00.000000000Z");
        cJSON_AddNumberToObject(m, "size", 2019393189);
        cJSON_AddStringToObject(m, "digest", digest);
        sim_ollama_details(m);
        cJSON_AddItemToArray(list, m);
    }
    sim_reply_json(r, 200, o);
}

/* GET /v1/models of Ollama ("owned_by": the name's namespace, "library" for official models) and of
 * llama.cpp ("owned_by":"llamacpp"). */
static void h_models_other(sim *s, lx_http_req *r)
{
    if (s->cfg.api == SIM_API_LLAMACPP && s->cfg.router) { /* the router lists GET /models there too */
        sim_router_models(s, r);
        return;
    }
    bool ollama = s->cfg.api == SIM_API_OLLAMA;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i < s->cfg.n_models; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", s->cfg.models[i]);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", ollama ? 1748779200 : (double)lx_wall_s());
        cJSON_AddStringToObject(m, "owned_by", ollama ? "library" : "llamacpp");
        cJSON_AddItemToArray(data, m);
    }
    sim_reply_json(r, 200, o);
}

static void h_llamacpp_health(sim *s, lx_http_req *r)
{
    (void)s;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    sim_reply_json(r, 200, o);
}

/* --- /metrics --- */

static void metric_head(lx_buf *b, const char *name, const char *type, const char *help)
{
    lx_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{model_name="..",engine="0"<extra>} value */
static void metric_sample(lx_buf *b, const sim *s, const char *name, const char *extra, double v)
{
    lx_buf_printf(b, "%s{model_name=\"", name);
    for (const char *p = s->cfg.models[0]; *p; p++) {
        if (*p == '\\' || *p == '"') lx_buf_append(b, "\\", 1);
        if (*p == '\n')
            lx_buf_append_str(b, "\\n");
        else
            lx_buf_append(b, p, 1);
    }
    lx_buf_printf(b, "\",engine=\"0\"%s} ", extra ? extra : "");
    if (v == floor(v) && fabs(v) < 1e15)
        lx_buf_printf(b, "%.1f\n", v);
    else
        lx_buf_printf(b, "%.9g\n", v);
}

static void metric(lx_buf *b, const sim *s, const char *name, const char *type, const char *help, double v)
{
    metric_head(b, name, type, help);
    metric_sample(b, s, name, NULL, v);
}

static void h_metrics(sim *s, lx_http_req *r)
{
    lx_buf *b = &s->scratch;
    const sim_stats *st = &s->st;
    lx_buf_reset(b);
    metric(b, s, "vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
           (double)s->running.n);
    metric(b, s, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
           (double)s->waiting.n);
    if (s->cfg.old_metrics)
        metric(b, s, "vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.",
               sim_engine_kv_usage(s));
    else
        metric(b, s, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               sim_engine_kv_usage(s));
    metric(b, s, "vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.", 0);
    metric(b, s, "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
           (double)st->prompt_tokens);
    metric(b, s, "vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
           (double)st->generation_tokens);
    metric_head(b, "vllm:request_success_total", "counter", "Count of successfully processed requests.");
    metric_sample(b, s, "vllm:request_success_total", ",finished_reason=\"stop\"", (double)st->finished_stop);
    metric_sample(b, s, "vllm:request_success_total", ",finished_reason=\"length\"", (double)st->finished_length);
    metric_sample(b, s, "vllm:request_success_total", ",finished_reason=\"abort\"", (double)st->finished_abort);
    metric(b, s, "vllm:prefix_cache_queries_total", "counter",
           "Prefix cache queries, in terms of number of queried tokens.", (double)st->prefix_query_tokens);
    metric(b, s, "vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.",
           (double)st->prefix_hit_tokens);
    static const lx_http_header h[] = {{"content-type", "text/plain; version=0.0.4; charset=utf-8"}};
    lx_http_respond(r, 200, h, 1, b->p, b->len);
    lx_buf_reset(b);
}

/* --- /sim/ endpoints --- */

static void h_sim_requests(sim *s, lx_http_req *r)
{
    sim_reqlog *l = s->log;
    lx_buf b;
    lx_buf_init(&b, 0);
    if (strcmp(lx_http_req_method(r), "DELETE") == 0) {
        lx_buf_printf(&b, "{\"cleared\":%zu}", l->n);
        log_clear(l);
    } else {
        lx_buf_append(&b, "[", 1);
        for (size_t i = 0; i < l->n; i++) {
            size_t k = (l->head + i) % SIM_LOG_MAX;
            if (i) lx_buf_append(&b, ",", 1);
            lx_buf_append(&b, l->rec[k], l->len[k]);
        }
        lx_buf_append(&b, "]", 1);
    }
    lx_http_respond(r, 200, json_ct, 1, b.p, b.len);
    lx_buf_free(&b);
}

static void h_sim_stats(sim *s, lx_http_req *r)
{
    const sim_stats *st = &s->st;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "received", (double)st->received);
    cJSON_AddNumberToObject(o, "completed", (double)st->completed);
    cJSON_AddNumberToObject(o, "cancelled", (double)st->cancelled);
    cJSON_AddNumberToObject(o, "failed", (double)st->failed);
    cJSON_AddNumberToObject(o, "rejected", (double)st->rejected);
    cJSON_AddNumberToObject(o, "running", (double)s->running.n);
    cJSON_AddNumberToObject(o, "waiting", (double)s->waiting.n);
    cJSON_AddNumberToObject(o, "max_running_seen", (double)st->max_running_seen);
    cJSON_AddNumberToObject(o, "prefix_hits", (double)st->prefix_hits);
    cJSON_AddNumberToObject(o, "prefix_misses", (double)st->prefix_misses);
    cJSON_AddNumberToObject(o, "prefix_cache_entries", (double)sim_prefix_count(s->prefix));
    cJSON_AddStringToObject(o, "api", sim_api_name(s->cfg.api));
    sim_load_stats(s, o);
    sim_reply_json(r, 200, o);
}

static cJSON *control_settings(const sim *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "fail_rate", s->cfg.fail_rate);
    cJSON_AddNumberToObject(o, "fail_first", (double)s->fail_first_left);
    cJSON_AddStringToObject(o, "fail_mode", sim_fail_mode_name(s->cfg.fail_mode));
    cJSON_AddNumberToObject(o, "ttft_ms", s->cfg.ttft_ms);
    cJSON_AddNumberToObject(o, "tokens_per_sec", s->cfg.tokens_per_sec);
    cJSON_AddNumberToObject(o, "memory_mb", s->cfg.memory_mb);
    cJSON_AddNumberToObject(o, "fail_next_load", (double)s->load.fail_next);
    cJSON_AddNumberToObject(o, "load_ms", s->cfg.load_ms);
    cJSON_AddNumberToObject(o, "unload_ms", s->cfg.unload_ms);
    return o;
}

static bool number_in(const cJSON *v, double lo, double hi, bool integer)
{
    return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
           (!integer || v->valuedouble == floor(v->valuedouble));
}

/* The settings of loading and unloading (sim_load.c). Returns NULL, or what was expected. */
static const char *control_load(const cJSON *v, sim_config *cfg, long *fail_next_load)
{
    const char *k = v->string;
    if (strcmp(k, "memory_mb") == 0) {
        if (!number_in(v, 0, 1e9, false)) return "memory_mb: a number from 0 to 1e9 (0: no budget)";
        cfg->memory_mb = v->valuedouble;
    } else if (strcmp(k, "fail_next_load") == 0) {
        if (!cJSON_IsBool(v) && !number_in(v, 0, 1e9, true)) return "fail_next_load: true, false or a count";
        *fail_next_load = cJSON_IsBool(v) ? cJSON_IsTrue(v) : (long)v->valuedouble;
    } else if (strcmp(k, "load_ms") == 0) {
        if (!number_in(v, 0, 3.6e6, false)) return "load_ms: a number from 0 to 3600000";
        cfg->load_ms = v->valuedouble;
    } else if (strcmp(k, "unload_ms") == 0) {
        if (!number_in(v, 0, 3.6e6, false)) return "unload_ms: a number from 0 to 3600000";
        cfg->unload_ms = v->valuedouble;
    } else {
        return "only fail_rate, fail_first, fail_mode, ttft_ms, tokens_per_sec, memory_mb, fail_next_load, load_ms, "
               "unload_ms";
    }
    return NULL;
}

/* One setting of /sim/control into cfg / fail_first / fail_next_load. Returns NULL, or what was expected. */
static const char *control_one(const cJSON *v, sim_config *cfg, long *fail_first, long *fail_next_load)
{
    const char *k = v->string;
    if (strcmp(k, "fail_rate") == 0) {
        if (!number_in(v, 0, 1, false)) return "fail_rate: a number from 0 to 1";
        cfg->fail_rate = v->valuedouble;
    } else if (strcmp(k, "fail_first") == 0) {
        if (!number_in(v, 0, 1e12, true)) return "fail_first: an integer >= 0";
        *fail_first = (long)v->valuedouble;
    } else if (strcmp(k, "fail_mode") == 0) {
        int mode = cJSON_IsString(v) ? sim_fail_mode_parse(v->valuestring) : -1;
        if (number_in(v, 503, 503, true)) mode = SIM_FAIL_503;
        if (number_in(v, 500, 500, true)) mode = SIM_FAIL_500;
        if (number_in(v, 429, 429, true)) mode = SIM_FAIL_429;
        if (number_in(v, 400, 400, true)) mode = SIM_FAIL_400;
        if (number_in(v, 529, 529, true)) mode = SIM_FAIL_529;
        if (mode < 0)
            return "fail_mode: one of \"503\", \"500\", \"429\", \"529\", \"400\", \"drop\", \"midstream\", \"hang\"";
        cfg->fail_mode = (sim_fail_mode)mode;
    } else if (strcmp(k, "ttft_ms") == 0) {
        if (!number_in(v, 0, 3.6e6, false)) return "ttft_ms: a number from 0 to 3600000";
        cfg->ttft_ms = v->valuedouble;
    } else if (strcmp(k, "tokens_per_sec") == 0) {
        if (!number_in(v, 0, 1e6, false)) return "tokens_per_sec: a number from 0 to 1000000 (0: no delay)";
        cfg->tokens_per_sec = v->valuedouble;
    } else {
        return control_load(v, cfg, fail_next_load);
    }
    return NULL;
}

/* All settings are checked before any is applied. */
static void h_sim_control(sim *s, lx_http_req *r)
{
    lx_slice body = lx_http_req_body(r);
    cJSON *root = cJSON_ParseWithLength(body.p, body.len);
    sim_config cfg = s->cfg;
    long fail_first = s->fail_first_left, fail_next_load = s->load.fail_next;
    const char *bad = cJSON_IsObject(root) ? NULL : "a JSON object";
    const cJSON *v;
    if (bad == NULL) cJSON_ArrayForEach(v, root) if ((bad = control_one(v, &cfg, &fail_first, &fail_next_load))) break;
    cJSON_Delete(root);
    if (bad) {
        char msg[160];
        snprintf(msg, sizeof msg, "Invalid /sim/control request: expected %s.", bad);
        sim_reply_error(s, r, 400, "BadRequestError", msg);
        return;
    }
    s->cfg = cfg;
    s->fail_first_left = fail_first;
    s->load.fail_next = fail_next_load;
    sim_reply_json(r, 200, control_settings(s));
}

/* --- loading and unloading (sim_load.c), behind the flags that enable them --- */

/* --- routing --- */

static const route vllm_routes[] = {
    {"/v1/chat/completions", "POST", h_chat, NEED_NONE},
    {"/v1/completions", "POST", h_completions, NEED_NONE},
    {"/v1/embeddings", "POST", h_embeddings, NEED_NONE},
    {"/v1/models", "GET", h_models, NEED_NONE},
    {"/health", "GET", h_health, NEED_NONE},
    {"/ping", "GET, POST", h_health, NEED_NONE},
    {"/version", "GET", h_version, NEED_NONE},
    {"/metrics", "GET", h_metrics, NEED_NONE},
    {"/sleep", "POST", sim_vllm_sleep, NEED_SLEEP},
    {"/wake_up", "POST", sim_vllm_wake_up, NEED_SLEEP},
    {"/is_sleeping", "GET", sim_vllm_is_sleeping, NEED_SLEEP},
    {"/v1/load_lora_adapter", "POST", sim_vllm_load_lora, NEED_LORA},
    {"/v1/unload_lora_adapter", "POST", sim_vllm_unload_lora, NEED_LORA},
    {NULL, NULL, NULL, NEED_NONE},
};

static const route ollama_routes[] = {
    {"/v1/chat/completions", "POST", h_chat, NEED_NONE},  {"/v1/completions", "POST", h_completions, NEED_NONE},
    {"/v1/embeddings", "POST", h_embeddings, NEED_NONE},  {"/v1/models", "GET", h_models_other, NEED_NONE},
    {"/", "GET, HEAD", h_ollama_root, NEED_NONE},         {"/api/version", "GET, HEAD", h_ollama_version, NEED_NONE},
    {"/api/tags", "GET, HEAD", h_ollama_tags, NEED_NONE}, {"/api/generate", "POST", sim_ollama_generate, NEED_NONE},
    {"/api/ps", "GET, HEAD", sim_ollama_ps, NEED_NONE},   {NULL, NULL, NULL, NEED_NONE},
};

static const route llamacpp_routes[] = {
    {"/v1/chat/completions", "POST", h_chat, NEED_NONE},
    {"/v1/completions", "POST", h_completions, NEED_NONE},
    {"/v1/embeddings", "POST", h_embeddings, NEED_NONE},
    {"/v1/models", "GET", h_models_other, NEED_NONE},
    {"/health", "GET", h_llamacpp_health, NEED_NONE},
    {"/models", "GET", sim_router_models, NEED_ROUTER},
    {"/models/load", "POST", sim_router_load, NEED_ROUTER},
    {"/models/unload", "POST", sim_router_unload, NEED_ROUTER},
    {NULL, NULL, NULL, NEED_NONE},
};

static const route anthropic_routes[] = {
    {"/v1/messages", "POST", h_messages, NEED_NONE},
    {"/v1/models", "GET", sim_anthropic_models, NEED_NONE},
    {NULL, NULL, NULL, NEED_NONE},
};

static const route *const route_tables[] = {vllm_routes, ollama_routes, llamacpp_routes, anthropic_routes};

/* The simulator's own endpoints, whatever API it speaks. */
static const route sim_routes[] = {
    {"/sim/requests", "GET, DELETE", h_sim_requests, NEED_NONE},
    {"/sim/stats", "GET", h_sim_stats, NEED_NONE},
    {"/sim/control", "POST", h_sim_control, NEED_NONE},
    {NULL, NULL, NULL, NEED_NONE},
};

static const route *find_route(const route *table, lx_slice path)
{
    for (const route *rt = table; rt->path; rt++)
        if (lx_slice_eq(path, rt->path)) return rt;
    return NULL;
}

/* llama.cpp listens before its model is loaded and answers 503 on every path meanwhile. */
static bool still_loading(sim *s, lx_slice path)
{
    if (s->cfg.api != SIM_API_LLAMACPP || s->ready_ns == 0) return false;
    if (lx_now_ns() >= s->ready_ns) {
        s->ready_ns = 0;
        return false;
    }
    return !(path.len >= 5 && memcmp(path.p, "/sim/", 5) == 0);
}

static bool method_allowed(const route *rt, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = rt->methods; (p = strstr(p, method)) != NULL; p += n)
        if ((p == rt->methods || p[-1] == ' ') && (p[n] == '\0' || p[n] == ',')) return true;
    return false;
}

static bool under_v1(lx_slice path)
{
    return (path.len >= 4 && memcmp(path.p, "/v1/", 4) == 0) || lx_slice_eq(path, "/v1");
}

static void on_request(lx_http_req *r, void *ud)
{
    sim *s = ud;
    lx_slice path = lx_http_req_path(r);
    if (under_v1(path)) {
        s->st.received++;
        log_request(s, r);
    }
    if (still_loading(s, path)) {
        sim_reply_llamacpp_error(r, 503, "unavailable_error", "Loading model");
        return;
    }
    if (under_v1(path) && !sim_anthropic_authorized(s, r)) return;
    const route *rt = find_route(route_tables[s->cfg.api], path);
    if (rt == NULL) rt = find_route(sim_routes, path);
    if (rt == NULL || !route_on(s, rt->need))
        reply_http_error(s, r, 404, NULL);
    else if (method_allowed(rt, lx_http_req_method(r)))
        rt->fn(s, r);
    else
        reply_http_error(s, r, 405, rt->methods);
}

static void on_abort(lx_http_req *r, void *ud)
{
    sim_req *q = lx_http_req_data(r);
    if (q)
        sim_engine_cancel(q);
    else
        sim_load_abort(ud, r); /* it was waiting for a load */
}

int sim_http_start(sim *s)
{
    sim_engine_init(s);
    s->log = lx_xcalloc(1, sizeof *s->log);
    s->start_ns = lx_now_ns();
    s->fail_rng = s->cfg.seed;
    s->fail_first_left = s->cfg.fail_first;
    s->id_rng = lx_now_ns() ^ (uint64_t)(uintptr_t)s;
    s->prefix = sim_prefix_new((size_t)s->cfg.prefix_cache_entries);
    sim_load_init(s);
    if (s->cfg.load_ms > 0 && !s->cfg.router) s->ready_ns = s->start_ns + (uint64_t)(s->cfg.load_ms * 1e6);
    lx_http_server_opts o = {
        .host = s->cfg.host,
        .port = (int)s->cfg.port,
        .max_connections = 16384,
        .max_header_bytes = 64 * 1024,
        .max_body_bytes = 64u * 1024 * 1024,
        .header_timeout_ms = 60000,
        .idle_timeout_ms = 5000, /* uvicorn's keep-alive timeout, as vLLM runs it */
        .server_name = s->cfg.api == SIM_API_VLLM ? "uvicorn" : NULL, /* Go's and cpp-httplib's send none */
        .on_request = on_request,
        .on_abort = on_abort,
        .ud = s,
    };
    return lx_http_server_start(s->loop, &o, &s->server);
}

void sim_http_stop(sim *s)
{
    if (s->server) lx_http_server_close(s->server);
    s->server = NULL;
    sim_engine_cancel_all(s);
    sim_load_stop(s);
    if (s->log) log_clear(s->log);
    free(s->log);
    s->log = NULL;
    sim_prefix_free(s->prefix);
    s->prefix = NULL;
}
