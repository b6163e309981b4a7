/*
 * lexora-sim: loading and unloading models, in the wire format of each server (docs/SIMULATOR.md, "Loading and
 * unloading models"): Ollama's load through POST /api/generate without a prompt, keep_alive and GET /api/ps; vLLM's
 * sleep mode (/sleep, /wake_up, /is_sleeping) and runtime LoRA adapters (/v1/load_lora_adapter,
 * /v1/unload_lora_adapter); llama.cpp's router mode (GET /models, POST /models/load, /models/unload, a request loads
 * its model). A load takes --load-ms, an unload --unload-ms; --memory-mb is the budget a load must fit in.
 *
 * Invariants:
 * - sim.load.m[0..n_base) are the --model names (for vLLM, m[0] is the engine that sleeps and wakes); LoRA adapters
 *   take later slots, kept (unloaded) after an unload so their counts stay in /sim/stats.
 * - A model's timer runs only while it is LOADING or UNLOADING: one load (or unload) at a time per model, however many
 *   requests asked for it; they wait in its waiters list and are answered when it ends.
 * - A waiter's request is in exactly one waiters list until it is answered, resumed or its client leaves
 *   (sim_load_abort); its lx_http_req_data stays NULL, so on_abort tells it from a running sim_req.
 * - Memory used = the sizes of the models LOADING, LOADED or UNLOADING (vLLM: of its LoRA adapters); a load that does
 * not fit fails (Ollama first unloads idle models, least recently used first; the llama.cpp router first unloads beyond
 * --models-max).
 * - Nothing polls: timers only, stopped when their model's state moves on; all closed by sim_load_stop.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

typedef enum {
    W_INFER = 0,   /* an inference request: run it once loaded */
    W_OLLAMA_LOAD, /* POST /api/generate without a prompt */
    W_LORA_LOAD,   /* POST /v1/load_lora_adapter */
    W_WAKE,        /* POST /wake_up */
    W_SLEEP,       /* POST /sleep: answered when the unload ends */
} waiter_kind;

typedef struct {
    lx_list link;
    lx_http_req *http;
    waiter_kind what;
    sim_kind kind;
    char *name; /* W_OLLAMA_LOAD: the name as the request gave it */
} sim_waiter;

static const char *const state_names[] = {"unloaded", "loading", "loaded", "unloading"};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_router(const sim *s) { return s->cfg.api == SIM_API_LLAMACPP && s->cfg.router; }

static void set_state(sim_model *m, sim_mstate st)
{
    m->state = st;
    m->since_ms = wall_ms();
}

/* --- the model table --- */

static sim_model *find(sim *s, const char *name, bool lora_too)
{
    size_t n = strlen(name), end = lora_too ? SIM_LOAD_SLOTS : s->load.n_base;
    for (size_t i = 0; i < end; i++) {
        sim_model *m = &s->load.m[i];
        if (!m->used) continue;
        if (strcmp(m->name, name) == 0) return m;
        /* Ollama takes a name without a tag for its ":latest" */
        if (s->cfg.api == SIM_API_OLLAMA && !m->lora && strncmp(m->name, name, n) == 0 &&
            strcmp(m->name + n, ":latest") == 0)
            return m;
    }
    return NULL;
}

static double memory_used(const sim *s)
{
    double used = 0;
    for (size_t i = 0; i < SIM_LOAD_SLOTS; i++) {
        const sim_model *m = &s->load.m[i];
        /* vLLM's budget is its LoRA adapters' (the engine holds its own memory, asleep or not) */
        if (m->used && m->state != SIM_M_UNLOADED && (m->lora || s->cfg.api != SIM_API_VLLM)) used += m->size_mb;
    }
    return used;
}

static bool fits(const sim *s, const sim_model *m)
{
    return s->cfg.memory_mb <= 0 || memory_used(s) + m->size_mb <= s->cfg.memory_mb;
}

static void slot_init(sim *s, sim_model *m, const char *name, bool lora)
{
    m->sim = s;
    m->used = true;
    m->lora = lora;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->size_mb = sim_model_mb(&s->cfg, name);
    m->expires_ms = -1;
    m->keep_alive_ms = -1; /* loaded at start: kept until a request says otherwise */
    m->since_ms = wall_ms();
}

static bool loaded_at_start(const sim *s, const char *name)
{
    if (s->cfg.n_loaded == 0) return !s->cfg.start_unloaded && !is_router(s);
    for (size_t i = 0; i < s->cfg.n_loaded; i++)
        if (strcmp(s->cfg.loaded[i], name) == 0) return true;
    return false;
}

void sim_load_init(sim *s)
{
    sim_load *l = &s->load;
    for (size_t i = 0; i < SIM_LOAD_SLOTS; i++) {
        lx_list_init(&l->m[i].waiters);
        uv_timer_init(s->loop, &l->m[i].timer);
        uv_timer_init(s->loop, &l->m[i].expire);
        l->m[i].timer.data = l->m[i].expire.data = &l->m[i];
    }
    l->timers = true;
    /* vLLM's aliases are one model: m[0] stands for all (it sleeps and wakes) */
    l->n_base = s->cfg.api == SIM_API_VLLM ? 1 : s->cfg.n_models;
    for (size_t i = 0; i < l->n_base; i++) {
        sim_model *m = &l->m[i];
        slot_init(s, m, s->cfg.models[i], false);
        if (s->cfg.api == SIM_API_VLLM || loaded_at_start(s, m->name)) {
            m->state = SIM_M_LOADED;
            m->loaded_ms = m->since_ms;
        }
    }
}

static void free_waiter(sim_waiter *w)
{
    lx_list_remove(&w->link);
    free(w->name);
    free(w);
}

void sim_load_stop(sim *s)
{
    sim_load *l = &s->load;
    if (!l->timers) return;
    for (size_t i = 0; i < SIM_LOAD_SLOTS; i++) {
        sim_model *m = &l->m[i];
        while (!lx_list_empty(&m->waiters))
            free_waiter(LX_CONTAINER_OF(m->waiters.next, sim_waiter, link));
        uv_close((uv_handle_t *)&m->timer, NULL);
        uv_close((uv_handle_t *)&m->expire, NULL);
    }
    l->timers = false;
}

bool sim_load_abort(sim *s, lx_http_req *r)
{
    for (size_t i = 0; i < SIM_LOAD_SLOTS; i++) {
        lx_list *head = &s->load.m[i].waiters;
        for (lx_list *it = head->next; it != head; it = it->next) {
            sim_waiter *w = LX_CONTAINER_OF(it, sim_waiter, link);
            if (w->http != r) continue;
            free_waiter(w);
            return true;
        }
    }
    return false;
}

static sim_waiter *park(sim_model *m, lx_http_req *r, waiter_kind what)
{
    sim_waiter *w = lx_xcalloc(1, sizeof *w);
    w->http = r;
    w->what = what;
    lx_list_append(&m->waiters, &w->link);
    return w;
}

/* --- answers --- */

/* Go's time.Time in JSON (RFC 3339, nanoseconds without trailing zeros), UTC. */
static void go_time(int64_t ms, char out[48])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 48, "%Y-%m-%dT%H:%M:%S", &tm);
    int frac = (int)(ms % 1000);
    if (frac) {
        snprintf(out + n, 48 - n, ".%03d", frac);
        n = strlen(out);
        while (out[n - 1] == '0')
            out[--n] = '\0';
    }
    snprintf(out + n, 48 - n, "Z");
}

static void ollama_generate_done(lx_http_req *r, const char *model, const char *reason)
{
    char at[48];
    go_time(wall_ms(), at);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "created_at", at);
    cJSON_AddStringToObject(o, "response", "");
    cJSON_AddTrueToObject(o, "done");
    cJSON_AddStringToObject(o, "done_reason", reason);
    sim_reply_json(r, 200, o);
}

static void reply_text(lx_http_req *r, const char *text)
{
    lx_http_respond(r, 200, NULL, 0, text, strlen(text)); /* Starlette's Response(content=str): no content type */
}

static void reply_empty(lx_http_req *r) { lx_http_respond(r, 200, NULL, 0, "", 0); }

static void reply_router_ok(lx_http_req *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "success");
    sim_reply_json(r, 200, o);
}

/* A waiter's answer when its load ended (failed: msg is why). */
static void settle(sim *s, sim_model *m, sim_waiter *w, const char *msg)
{
    lx_http_req *r = w->http;
    char buf[512];
    switch (w->what) {
    case W_INFER:
        if (msg == NULL) {
            sim_http_infer(s, r, w->kind);
        } else if (is_router(s)) {
            snprintf(buf, sizeof buf, "model name=%s failed to load", m->name);
            sim_reply_llamacpp_error(r, 500, "server_error", buf);
        } else {
            sim_reply_error(s, r, 500, "InternalServerError", msg);
        }
        break;
    case W_OLLAMA_LOAD:
        if (msg)
            sim_reply_ollama_native(r, 500, msg);
        else
            ollama_generate_done(r, w->name, "load");
        break;
    case W_LORA_LOAD:
        snprintf(buf, sizeof buf, "Success: LoRA adapter '%s' added successfully.", m->name);
        if (msg)
            sim_reply_error(s, r, 400, "BadRequestError", msg);
        else
            reply_text(r, buf);
        break;
    case W_WAKE:
        if (msg)
            sim_reply_error(s, r, 500, "InternalServerError", msg);
        else
            reply_empty(r);
        break;
    case W_SLEEP: reply_empty(r); break;
    }
}

/* Answers the waiters of kind `sleepers` (true: W_SLEEP only, false: all others). */
static void settle_all(sim_model *m, bool sleepers, const char *msg)
{
    lx_list ready;
    lx_list_init(&ready);
    for (lx_list *it = m->waiters.next, *next; it != &m->waiters; it = next) {
        next = it->next;
        sim_waiter *w = LX_CONTAINER_OF(it, sim_waiter, link);
        if ((w->what == W_SLEEP) != sleepers) continue;
        lx_list_remove(&w->link);
        lx_list_append(&ready, &w->link);
    }
    while (!lx_list_empty(&ready)) { /* settling may park a request again (another load): take each out first */
        sim_waiter *w = LX_CONTAINER_OF(ready.next, sim_waiter, link);
        lx_list_remove(&w->link);
        lx_list_init(&w->link);
        settle(m->sim, m, w, msg);
        free(w->name);
        free(w);
    }
}

static bool has_load_waiters(const sim_model *m)
{
    for (const lx_list *it = m->waiters.next; it != &m->waiters; it = it->next)
        if (LX_CONTAINER_OF(it, sim_waiter, link)->what != W_SLEEP) return true;
    return false;
}

/* --- Ollama's keep_alive --- */

static void start_unload(sim_model *m);

static void on_expire(uv_timer_t *t)
{
    sim_model *m = t->data;
    if (m->state == SIM_M_LOADED) start_unload(m);
}

/* ka ms from now (-1: never, 0: now). */
static void set_expiry(sim_model *m, double ka)
{
    uv_timer_stop(&m->expire);
    if (m->sim->cfg.api != SIM_API_OLLAMA) return;
    if (ka < 0) {
        m->expires_ms = -1;
        return;
    }
    m->expires_ms = wall_ms() + (int64_t)ka;
    if (ka == 0) {
        start_unload(m);
        return;
    }
    uv_timer_start(&m->expire, on_expire, (uint64_t)ceil(ka), 0);
}

static double default_keep_alive(const sim *s)
{
    double ms = 5 * 60e3;
    sim_keep_alive_env(s->cfg.keep_alive, &ms);
    return ms;
}

/* --- loads and unloads --- */

static void start_load(sim_model *m);

static void on_unloaded(uv_timer_t *t)
{
    sim_model *m = t->data;
    set_state(m, SIM_M_UNLOADED);
    m->loaded_ms = 0;
    settle_all(m, true, NULL);
    if (has_load_waiters(m)) start_load(m); /* asked for again while it unloaded */
}

static void start_unload(sim_model *m)
{
    sim *s = m->sim;
    uv_timer_stop(&m->expire);
    uv_timer_stop(&m->timer);
    m->unloads++;
    m->expires_ms = -1;
    set_state(m, SIM_M_UNLOADING);
    uv_timer_start(&m->timer, on_unloaded, (uint64_t)ceil(s->cfg.unload_ms), 0);
}

static void on_loaded(uv_timer_t *t)
{
    sim_model *m = t->data;
    const char *msg = m->fail_msg;
    m->fail_msg = NULL;
    if (msg) {
        m->load_failures++;
        m->exit_code = 1;
        set_state(m, SIM_M_UNLOADED);
    } else {
        m->exit_code = 0;
        set_state(m, SIM_M_LOADED);
        m->loaded_ms = m->since_ms;
        m->last_used_ns = lx_now_ns();
    }
    double ka = m->keep_alive_ms; /* what the load was asked with (the requests run below may change it) */
    settle_all(m, false, msg);
    if (msg == NULL && m->state == SIM_M_LOADED) {
        m->keep_alive_ms = ka;
        set_expiry(m, ka);
    }
}

/* The least recently used loaded model other than m, or NULL. */
static sim_model *lru_loaded(sim *s, const sim_model *m)
{
    sim_model *best = NULL;
    for (size_t i = 0; i < s->load.n_base; i++) {
        sim_model *o = &s->load.m[i];
        if (o != m && o->state == SIM_M_LOADED && (best == NULL || o->last_used_ns < best->last_used_ns)) best = o;
    }
    return best;
}

/* Drops a loaded model at once to make room (its memory is free at once, whatever --unload-ms says). */
static void evict(sim_model *o)
{
    uv_timer_stop(&o->expire);
    o->unloads++;
    o->expires_ms = -1;
    o->loaded_ms = 0;
    set_state(o, SIM_M_UNLOADED);
}

static size_t running_count(const sim *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->load.n_base; i++)
        n += s->load.m[i].state != SIM_M_UNLOADED;
    return n;
}

static const char *injected_failure(sim *s)
{
    if (s->load.fail_next <= 0) return NULL;
    s->load.fail_next--;
    switch (s->cfg.api) {
    case SIM_API_OLLAMA: return "llama runner process has terminated: exit status 2";
    case SIM_API_VLLM: return "lexora-sim: injected load failure (/sim/control fail_next_load)";
    default: return "exit status 1";
    }
}

/* Ollama's refusal of a model larger than the memory left once every idle model is unloaded. */
static const char *ollama_room(sim *s, sim_model *m, char *buf, size_t n)
{
    sim_model *o;
    while (m->size_mb <= s->cfg.memory_mb && !fits(s, m) && (o = lru_loaded(s, m)) != NULL)
        evict(o); /* no eviction for a model that could not fit alone */
    if (fits(s, m)) return NULL;
    double avail = s->cfg.memory_mb - memory_used(s);
    snprintf(buf, n, "model requires more system memory (%.1f GiB) than is available (%.1f GiB)", m->size_mb / 1024,
             (avail < 0 ? 0 : avail) / 1024);
    return buf;
}

/* Starts a load (m is UNLOADED; its waiters are parked). Ollama refuses at once what cannot fit. */
static void start_load(sim_model *m)
{
    sim *s = m->sim;
    char room[160];
    m->loads++;
    m->fail_msg = injected_failure(s);
    if (s->cfg.api == SIM_API_OLLAMA && m->fail_msg == NULL && (m->fail_msg = ollama_room(s, m, room, sizeof room))) {
        m->load_failures++;
        const char *msg = m->fail_msg;
        m->fail_msg = NULL;
        settle_all(m, false, msg);
        return;
    }
    if (is_router(s)) {
        sim_model *o;
        while (running_count(s) >= (size_t)s->cfg.models_max && (o = lru_loaded(s, m)) != NULL)
            evict(o);
        if (m->fail_msg == NULL && !fits(s, m)) m->fail_msg = "exit status 1"; /* the child runs out of memory */
    }
    set_state(m, SIM_M_LOADING);
    uv_timer_start(&m->timer, on_loaded, (uint64_t)ceil(s->cfg.load_ms), 0);
}

/* Someone needs m loaded: counts the request and starts a load unless one is under way. */
static void want_loaded(sim_model *m)
{
    m->load_requests++;
    if (m->state == SIM_M_UNLOADED) start_load(m);
    /* LOADING: the load under way serves it; UNLOADING: on_unloaded loads it again */
}

/* --- requests' models --- */

/* The "model" of r's JSON body (owned), or NULL. */
static char *body_model(lx_http_req *r)
{
    lx_slice body = lx_http_req_body(r);
    cJSON *root = cJSON_ParseWithLength(body.p, body.len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "model");
    char *name = cJSON_IsString(v) ? lx_xstrdup(v->valuestring) : NULL;
    cJSON_Delete(root);
    return name;
}

/* The router answers r, or parks it until its model is loaded (its model is not loaded). */
static void router_gate(sim *s, lx_http_req *r, sim_kind kind, const char *name)
{
    sim_model *m = name && *name ? find(s, name, false) : NULL;
    char msg[320];
    if (name == NULL || *name == '\0') {
        sim_reply_llamacpp_error(r, 400, "invalid_request_error", "model name is missing from the request");
    } else if (m == NULL) {
        snprintf(msg, sizeof msg, "model '%s' not found", name);
        sim_reply_llamacpp_error(r, 400, "invalid_request_error", msg);
    } else if (s->cfg.no_autoload) {
        sim_reply_llamacpp_error(r, 400, "invalid_request_error", "model is not loaded");
    } else {
        park(m, r, W_INFER)->kind = kind;
        want_loaded(m);
    }
}

/* After a request: unload in ka ms (0: right after it, which the simulator takes as 1 ms). */
static void keep_for(sim_model *m, double ka) { set_expiry(m, ka == 0 ? 1 : ka); }

static bool ollama_gate(sim *s, lx_http_req *r, sim_kind kind)
{
    char *name = body_model(r);
    sim_model *m = name ? find(s, name, false) : NULL;
    free(name);
    if (m == NULL) return false; /* sim_openai.c answers what is wrong */
    if (m->state == SIM_M_LOADED) {
        m->last_used_ns = lx_now_ns();
        m->keep_alive_ms = default_keep_alive(s);
        keep_for(m, m->keep_alive_ms);
        return false;
    }
    m->keep_alive_ms = default_keep_alive(s);
    park(m, r, W_INFER)->kind = kind;
    want_loaded(m);
    return true;
}

bool sim_load_gate(sim *s, lx_http_req *r, sim_kind kind)
{
    if (is_router(s)) {
        char *name = body_model(r);
        sim_model *m = name && *name ? find(s, name, false) : NULL;
        bool runs = m && m->state == SIM_M_LOADED;
        if (runs)
            m->last_used_ns = lx_now_ns();
        else
            router_gate(s, r, kind, name);
        free(name);
        return !runs;
    }
    if (s->cfg.api == SIM_API_OLLAMA) return ollama_gate(s, r, kind);
    if (s->cfg.api == SIM_API_VLLM && s->cfg.sleep_mode && s->load.m[0].state != SIM_M_LOADED) {
        s->load.asleep_rejected++;
        sim_reply_error(s, r, 500, "InternalServerError",
                        "lexora-sim: the engine is asleep (POST /wake_up first); a real vLLM fails or crashes here");
        return true;
    }
    return false;
}

/* --- Ollama: POST /api/generate without a prompt, GET /api/ps --- */

/* keep_alive of the request into *ms (the default when absent). Returns NULL, or Go's message for a bad one. */
static const char *request_keep_alive(const sim *s, const cJSON *v, double *ms, char *err, size_t n)
{
    *ms = default_keep_alive(s);
    if (v == NULL || cJSON_IsNull(v)) return NULL;
    if (cJSON_IsNumber(v)) {
        *ms = v->valuedouble < 0 ? -1 : v->valuedouble * 1e3; /* a number: seconds */
        return NULL;
    }
    if (cJSON_IsString(v)) return sim_keep_alive_parse(v->valuestring, ms, err, n) ? err : NULL;
    snprintf(err, n, "Unsupported type: '%s'",
             cJSON_IsBool(v)    ? "bool"
             : cJSON_IsArray(v) ? "[]interface {}"
                                : "map[string]interface {}");
    return err;
}

static void ollama_generate(sim *s, lx_http_req *r, const cJSON *root)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    char err[320];
    double ka;
    const char *bad = request_keep_alive(s, cJSON_GetObjectItemCaseSensitive(root, "keep_alive"), &ka, err, sizeof err);
    if (bad) {
        sim_reply_ollama_native(r, 400, bad);
        return;
    }
    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        sim_reply_ollama_native(r, 400, "model is required");
        return;
    }
    sim_model *m = find(s, model->valuestring, false);
    if (m == NULL) {
        snprintf(err, sizeof err, "model '%s' not found", model->valuestring);
        sim_reply_ollama_native(r, 404, err);
        return;
    }
    if (cJSON_IsString(prompt) && prompt->valuestring[0] != '\0') {
        sim_reply_ollama_native(r, 400, "lexora-sim: /api/generate with a prompt is not emulated; use /v1/completions");
        return;
    }
    if (ka == 0) { /* unload (answered at once; the memory is free once --unload-ms passed) */
        if (m->state == SIM_M_LOADED) start_unload(m);
        m->keep_alive_ms = 0; /* a load under way ends in an unload */
        ollama_generate_done(r, model->valuestring, "unload");
        return;
    }
    m->load_requests++;
    m->keep_alive_ms = ka;
    if (m->state == SIM_M_LOADED) {
        m->last_used_ns = lx_now_ns();
        set_expiry(m, ka);
        ollama_generate_done(r, model->valuestring, "load");
        return;
    }
    m->keep_alive_ms = ka;
    park(m, r, W_OLLAMA_LOAD)->name = lx_xstrdup(model->valuestring);
    if (m->state == SIM_M_UNLOADED) start_load(m);
}

void sim_ollama_generate(sim *s, lx_http_req *r)
{
    lx_slice body = lx_http_req_body(r);
    if (body.len == 0) {
        sim_reply_ollama_native(r, 400, "missing request body");
        return;
    }
    cJSON *root = cJSON_ParseWithLength(body.p, body.len);
    if (!cJSON_IsObject(root))
        sim_reply_ollama_native(r, 400, "invalid character in request body (lexora-sim: not a JSON object)");
    else
        ollama_generate(s, r, root);
    cJSON_Delete(root);
}

static cJSON *ps_entry(const sim *s, const sim_model *m)
{
    char digest[65], at[48];
    sim_ollama_digest(m->name, digest);
    /* a model kept forever: Go's now + MaxInt64 ns, about 292 years ahead */
    go_time(m->expires_ms < 0 ? wall_ms() + (int64_t)9223372036 * 1000 : m->expires_ms, at);
    double bytes = floor(m->size_mb * 1048576);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", m->name);
    cJSON_AddStringToObject(e, "model", m->name);
    cJSON_AddNumberToObject(e, "size", bytes);
    cJSON_AddStringToObject(e, "digest", digest);
    sim_ollama_details(e);
    cJSON_AddStringToObject(e, "expires_at", at);
    cJSON_AddNumberToObject(e, "size_vram", bytes);
    cJSON_AddNumberToObject(e, "context_length", (double)s->cfg.max_model_len);
    return e;
}

static int64_t expiry_key(const sim_model *m) { return m->expires_ms < 0 ? INT64_MAX : m->expires_ms; }

void sim_ollama_ps(sim *s, lx_http_req *r)
{
    const sim_model *order[SIM_LOAD_SLOTS];
    size_t n = 0;
    for (size_t i = 0; i < s->load.n_base; i++)
        if (s->load.m[i].state != SIM_M_UNLOADED) order[n++] = &s->load.m[i];
    for (size_t i = 1; i < n; i++) /* longest time left first, as Ollama sorts */
        for (size_t k = i; k > 0 && expiry_key(order[k]) > expiry_key(order[k - 1]); k--) {
            const sim_model *t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "models");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(list, ps_entry(s, order[i]));
    sim_reply_json(r, 200, o);
}

/* --- vLLM: sleep mode --- */

void sim_vllm_sleep(sim *s, lx_http_req *r)
{
    lx_slice q = lx_http_req_query(r);
    int level = 1;
    if (q.len == 7 && memcmp(q.p, "level=2", 7) == 0)
        level = 2;
    else if (q.len && !(q.len == 7 && memcmp(q.p, "level=1", 7) == 0)) {
        sim_reply_error(s, r, 400, "BadRequestError", "lexora-sim: level must be 1 or 2");
        return;
    }
    sim_model *m = &s->load.m[0];
    s->load.sleep_level = level;
    if (m->state == SIM_M_UNLOADED) {
        reply_empty(r);
        return;
    } /* asleep already */
    if (m->state == SIM_M_LOADING) {
        sim_reply_error(s, r, 409, "Conflict", "lexora-sim: waking up");
        return;
    }
    park(m, r, W_SLEEP);
    if (m->state == SIM_M_LOADED) start_unload(m);
}

void sim_vllm_wake_up(sim *s, lx_http_req *r)
{
    sim_model *m = &s->load.m[0];
    if (m->state == SIM_M_LOADED) {
        reply_empty(r);
        return;
    }
    if (m->state == SIM_M_UNLOADING) {
        sim_reply_error(s, r, 409, "Conflict", "lexora-sim: falling asleep");
        return;
    }
    park(m, r, W_WAKE);
    want_loaded(m);
}

void sim_vllm_is_sleeping(sim *s, lx_http_req *r)
{
    sim_mstate st = s->load.m[0].state;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "is_sleeping", st == SIM_M_UNLOADED || st == SIM_M_LOADING);
    sim_reply_json(r, 200, o);
}

/* --- vLLM: runtime LoRA adapters --- */

static cJSON *json_body(lx_http_req *r)
{
    lx_slice body = lx_http_req_body(r);
    return cJSON_ParseWithLength(body.p, body.len);
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static sim_model *lora_slot(sim *s, const char *name)
{
    sim_model *free_slot = NULL;
    for (size_t i = s->load.n_base; i < SIM_LOAD_SLOTS; i++) {
        sim_model *m = &s->load.m[i];
        if (m->used && strcmp(m->name, name) == 0) return m;
        if (free_slot == NULL && (!m->used || (m->state == SIM_M_UNLOADED && lx_list_empty(&m->waiters))))
            free_slot = m;
    }
    if (free_slot) { /* a new name, or one in place of an adapter unloaded since */
        slot_init(s, free_slot, name, true);
        free_slot->state = SIM_M_UNLOADED;
        free_slot->loads = free_slot->unloads = free_slot->load_requests = free_slot->load_failures = 0;
        free_slot->loaded_ms = 0;
    }
    return free_slot;
}

static void lora_load(sim *s, lx_http_req *r, const cJSON *root)
{
    const char *name = json_str(root, "lora_name"), *path = json_str(root, "lora_path");
    char msg[400];
    if (name == NULL || path == NULL || !*name || !*path) {
        sim_reply_error(s, r, 400, "InvalidUserInput", "Both 'lora_name' and 'lora_path' must be provided.");
        return;
    }
    sim_model *m = lora_slot(s, name);
    if (m && m->state == SIM_M_LOADED) {
        snprintf(msg, sizeof msg, "The lora adapter '%s' has already been loaded.", name);
        sim_reply_error(s, r, 400, "InvalidUserInput", msg);
        return;
    }
    if (m == NULL) {
        sim_reply_error(s, r, 400, "BadRequestError", "lexora-sim: too many LoRA adapters");
        return;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    m->load_requests++;
    if (m->state == SIM_M_UNLOADED && !fits(s, m)) {
        m->loads++;
        m->load_failures++;
        snprintf(msg, sizeof msg,
                 "CUDA out of memory. Tried to allocate %.0f MiB (lexora-sim: --memory-mb %g, %g MB in use)",
                 m->size_mb, s->cfg.memory_mb, memory_used(s));
        sim_reply_error(s, r, 400, "BadRequestError", msg);
        return;
    }
    park(m, r, W_LORA_LOAD);
    if (m->state == SIM_M_UNLOADED) start_load(m);
}

void sim_vllm_load_lora(sim *s, lx_http_req *r)
{
    cJSON *root = json_body(r);
    lora_load(s, r, root);
    cJSON_Delete(root);
}

void sim_vllm_unload_lora(sim *s, lx_http_req *r)
{
    cJSON *root = json_body(r);
    const char *name = json_str(root, "lora_name");
    sim_model *m = name && *name ? find(s, name, true) : NULL;
    char msg[400];
    if (name == NULL || *name == '\0') {
        sim_reply_error(s, r, 400, "InvalidUserInput", "'lora_name' needs to be provided to unload a LoRA adapter.");
    } else if (m == NULL || !m->lora || m->state != SIM_M_LOADED) {
        snprintf(msg, sizeof msg, "The lora adapter '%s' cannot be found.", name);
        sim_reply_error(s, r, 404, "NotFoundError", msg);
    } else {
        start_unload(m);
        snprintf(msg, sizeof msg, "Success: LoRA adapter '%s' removed successfully.", name);
        reply_text(r, msg);
    }
    cJSON_Delete(root);
}

bool sim_load_lora_served(const sim *s, const char *name)
{
    for (size_t i = s->load.n_base; i < SIM_LOAD_SLOTS; i++) {
        const sim_model *m = &s->load.m[i];
        if (m->used && m->state == SIM_M_LOADED && strcmp(m->name, name) == 0) return true;
    }
    return false;
}

void sim_load_vllm_models(sim *s, cJSON *data, int64_t now)
{
    for (size_t i = s->load.n_base; i < SIM_LOAD_SLOTS; i++) {
        const sim_model *m = &s->load.m[i];
        if (!m->used || m->state != SIM_M_LOADED) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", m->name);
        cJSON_AddStringToObject(e, "object", "model");
        cJSON_AddNumberToObject(e, "created", (double)now);
        cJSON_AddStringToObject(e, "owned_by", "vllm");
        cJSON_AddStringToObject(e, "root", m->path);
        cJSON_AddStringToObject(e, "parent", s->cfg.models[0]);
        cJSON_AddNullToObject(e, "max_model_len");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(e, "permission"), sim_model_permission(s, now));
        cJSON_AddItemToArray(data, e);
    }
}

/* --- llama.cpp: router mode --- */

static cJSON *router_entry(const sim *s, const sim_model *m, int64_t now)
{
    char port[16];
    snprintf(port, sizeof port, "%d", 39000 + (int)(m - s->load.m));
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", m->name);
    cJSON_AddArrayToObject(e, "aliases");
    cJSON_AddArrayToObject(e, "tags");
    cJSON_AddStringToObject(e, "object", "model");
    cJSON_AddStringToObject(e, "owned_by", "llamacpp");
    cJSON_AddNumberToObject(e, "created", (double)now);
    cJSON *st = cJSON_AddObjectToObject(e, "status");
    /* the router calls a model loaded until its child process has exited */
    cJSON_AddStringToObject(st, "value", state_names[m->state == SIM_M_UNLOADING ? SIM_M_LOADED : m->state]);
    const char *args[] = {"llama-server", "--host", "127.0.0.1", "--port", port, "--alias", m->name};
    cJSON *a = cJSON_AddArrayToObject(st, "args");
    for (size_t i = 0; i < LX_ARRAY_LEN(args); i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(args[i]));
    if (m->state == SIM_M_UNLOADED && m->exit_code != 0) {
        cJSON_AddNumberToObject(st, "exit_code", m->exit_code);
        cJSON_AddTrueToObject(st, "failed");
    }
    cJSON *arch = cJSON_AddObjectToObject(e, "architecture");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(arch, "input_modalities"), cJSON_CreateString("text"));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(arch, "output_modalities"), cJSON_CreateString("text"));
    cJSON_AddStringToObject(e, "source", "models_dir");
    cJSON_AddFalseToObject(e, "can_remove");
    return e;
}

void sim_router_models(sim *s, lx_http_req *r)
{
    int64_t now = wall_ms() / 1000;
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i < s->load.n_base; i++)
        cJSON_AddItemToArray(data, router_entry(s, &s->load.m[i], now));
    cJSON_AddStringToObject(o, "object", "list");
    sim_reply_json(r, 200, o);
}

/* The model named by r's body for /models/load and /models/unload; NULL when it answered already. */
static sim_model *router_target(sim *s, lx_http_req *r, int unknown_status)
{
    cJSON *root = json_body(r);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        sim_reply_llamacpp_error(r, 500, "server_error", "[json.exception.parse_error.101] parse error (lexora-sim)");
        return NULL;
    }
    const char *name = json_str(root, "model");
    sim_model *m = name ? find(s, name, false) : NULL;
    cJSON_Delete(root);
    if (m == NULL) sim_reply_llamacpp_error(r, unknown_status, NULL, "model is not found");
    return m;
}

void sim_router_load(sim *s, lx_http_req *r)
{
    sim_model *m = router_target(s, r, 404);
    if (m == NULL) return;
    m->load_requests++;
    if (m->state != SIM_M_UNLOADED) {
        sim_reply_llamacpp_error(r, 400, "invalid_request_error", "model is already running");
        return;
    }
    start_load(m);
    reply_router_ok(r);
}

void sim_router_unload(sim *s, lx_http_req *r)
{
    sim_model *m = router_target(s, r, 400);
    if (m == NULL) return;
    if (m->state == SIM_M_UNLOADED || m->state == SIM_M_UNLOADING) {
        sim_reply_llamacpp_error(r, 400, "invalid_request_error", "model is not running");
        return;
    }
    if (m->state == SIM_M_LOADING) { /* the router kills a child that is still loading */
        uv_timer_stop(&m->timer);
        m->fail_msg = NULL;
        m->unloads++;
        set_state(m, SIM_M_UNLOADED);
        settle_all(m, false, "killed while loading");
    } else {
        start_unload(m);
    }
    reply_router_ok(r);
}

/* --- /sim/stats --- */

/* A wall-clock time in ms, null for none. */
static void add_ms(cJSON *o, const char *key, int64_t wall)
{
    if (wall <= 0)
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, (double)wall);
}

void sim_load_stats(const sim *s, cJSON *o)
{
    cJSON_AddNumberToObject(o, "memory_mb", s->cfg.memory_mb);
    cJSON_AddNumberToObject(o, "memory_used_mb", memory_used(s));
    cJSON_AddNumberToObject(o, "fail_next_load", (double)s->load.fail_next);
    if (s->cfg.api == SIM_API_VLLM && s->cfg.sleep_mode) {
        sim_mstate st = s->load.m[0].state;
        cJSON_AddBoolToObject(o, "sleeping", st == SIM_M_UNLOADED || st == SIM_M_LOADING);
        cJSON_AddNumberToObject(o, "sleep_level", s->load.sleep_level);
        cJSON_AddNumberToObject(o, "asleep_rejected", (double)s->load.asleep_rejected);
    }
    cJSON *models = cJSON_AddObjectToObject(o, "models");
    for (size_t i = 0; i < SIM_LOAD_SLOTS; i++) {
        const sim_model *m = &s->load.m[i];
        if (!m->used) continue;
        cJSON *e = cJSON_AddObjectToObject(models, m->name);
        cJSON_AddStringToObject(e, "state", state_names[m->state]);
        cJSON_AddBoolToObject(e, "lora", m->lora);
        cJSON_AddNumberToObject(e, "size_mb", m->size_mb);
        cJSON_AddNumberToObject(e, "loads", (double)m->loads);
        cJSON_AddNumberToObject(e, "unloads", (double)m->unloads);
        cJSON_AddNumberToObject(e, "load_requests", (double)m->load_requests);
        cJSON_AddNumberToObject(e, "load_failures", (double)m->load_failures);
        add_ms(e, "since_ms", m->since_ms);
        add_ms(e, "loaded_at_ms", m->loaded_ms);
        if (s->cfg.api == SIM_API_OLLAMA) {
            cJSON_AddNumberToObject(e, "keep_alive_ms", m->keep_alive_ms); /* of the last request; -1: forever */
            if (m->state == SIM_M_LOADED && m->expires_ms >= 0)
                cJSON_AddNumberToObject(e, "expires_at_ms", (double)m->expires_ms);
            else
                cJSON_AddNullToObject(e, "expires_at_ms");
        }
        size_t waiting = 0;
        for (const lx_list *it = m->waiters.next; it != &m->waiters; it = it->next)
            waiting++;
        cJSON_AddNumberToObject(e, "waiting", (double)waiting);
    }
}
