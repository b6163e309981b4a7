/*
 * Routes: the path table and Lexora's own small endpoints. The OpenAI proxy endpoints go to the
 * pipeline (proxy.c) through ctx->proxy; /v1/models is answered here from what is served now
 * (backends/served.h: the models the enabled backends list or discovered, each once, owned by the first
 * backend serving it) and the config's aliases, without asking the backends.
 * Who may see what is decided here and only here (lx_access_*, see routes.h): each row of the path table
 * says what it needs, and dispatch checks it before the handler runs; /admin/backends/NAME/... and
 * /v1/models/ID, outside the table, are checked the same way. Handlers see the gateway only through
 * its lx_api_ctx (api/context.h).
 */
#include "api/routes.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <strings.h>

#include "api/dashboard.h"
#include "api/errors.h"
#include "api/health.h"
#include "api/messages.h"
#include "api/observe.h"
#include "api/feedback.h"
#include "api/stats_stream.h"
#include "backends/backend.h"
#include "limits/auth.h"
#include "limits/rate_limiter.h"
#include "limits/usage_today.h"
#include "observe/stats.h"
#include "backends/loader.h"
#include "queue/admission.h"
#include "reload.h"
#include "utils/buf.h"
#include "utils/log.h"

typedef void (*route_fn)(lx_api_ctx *ctx, lx_http_req *req);

typedef struct {
    const char *path;
    const char *method;
    route_fn fn;
    lx_access_need need;
} route;

static void chat(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_CHAT); }
static void completions(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_COMPLETIONS); }
static void embeddings(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_EMBEDDINGS); }
static void messages(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_MESSAGES); }
static void count_tokens(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_COUNT_TOKENS); }
static void models_list(lx_api_ctx *ctx, lx_http_req *req);
static void usage(lx_api_ctx *ctx, lx_http_req *req);
static void admin_reload(lx_api_ctx *ctx, lx_http_req *req);
static void admin_models(lx_api_ctx *ctx, lx_http_req *req);
static void admin_models_load(lx_api_ctx *ctx, lx_http_req *req);
static void admin_models_unload(lx_api_ctx *ctx, lx_http_req *req);
static void method_not_allowed(lx_http_req *req, const char *allowed);

/* The proxy endpoints are OPEN here: the pipeline identifies the caller (limits/auth.h). */
static const route routes[] = {
    {"/v1/chat/completions", "POST", chat, LX_ACCESS_OPEN},
    {"/v1/completions", "POST", completions, LX_ACCESS_OPEN},
    {"/v1/embeddings", "POST", embeddings, LX_ACCESS_OPEN},
    {"/v1/models", "GET", models_list, LX_ACCESS_CLIENT},
    {"/v1/usage", "GET", usage, LX_ACCESS_CLIENT},
    {"/admin/reload", "POST", admin_reload, LX_ACCESS_ADMIN},
    {"/admin/models", "GET", admin_models, LX_ACCESS_ADMIN},
    {"/admin/models/load", "POST", admin_models_load, LX_ACCESS_ADMIN},
    {"/admin/models/unload", "POST", admin_models_unload, LX_ACCESS_ADMIN},
    {"/stats", "GET", lx_observe_stats, LX_ACCESS_STATS},
    {"/metrics", "GET", lx_observe_metrics, LX_ACCESS_METRICS},
    {"/health", "GET", lx_health_full, LX_ACCESS_OPEN},
    {"/health/live", "GET", lx_health_live, LX_ACCESS_OPEN},
    {"/health/ready", "GET", lx_health_ready, LX_ACCESS_OPEN},
    {"/v1/messages", "POST", messages, LX_ACCESS_OPEN},
    {"/v1/messages/count_tokens", "POST", count_tokens, LX_ACCESS_OPEN},
    {"/v1/feedback", "POST", lx_feedback_post, LX_ACCESS_OPEN},             /* the handler checks whose request it is */
    {"/stats/stream", "GET", lx_observe_stats_stream, LX_ACCESS_STATS_ALL}, /* everyone's figures */
};

/* The live dashboard's page and files (api/dashboard.h): open, as they hold no data (its data is
 * /stats/stream's, in the table above). */
static route_fn dashboard_route(lx_slice path)
{
    static const char dir[] = "/dashboard";
    const size_t n = sizeof dir - 1;
    if (path.len >= n && memcmp(path.p, dir, n) == 0 && (path.len == n || path.p[n] == '/')) return lx_dashboard_get;
    return NULL;
}

static void respond_error_h(lx_http_req *req, lx_err e, const char *message, const char *param,
                            const lx_http_header *extra)
{
    lx_buf body;
    lx_buf_init(&body, 0);
    lx_err_body(&body, e, message, param);
    lx_http_header h[2] = {{"Content-Type", "application/json"}};
    if (extra) h[1] = *extra;
    lx_http_respond(req, lx_err_get(e)->status, h, extra ? 2 : 1, body.p, body.len);
    lx_buf_free(&body);
}

void lx_respond_error(lx_http_req *req, lx_err e, const char *message, const char *param, const char *request_id)
{
    lx_http_header id = {"X-Request-Id", request_id};
    respond_error_h(req, e, message, param, request_id ? &id : NULL);
}

const char *lx_routes_render_error(lx_http_error what, int status, const char *message, lx_buf *body, void *ud)
{
    static const lx_err errs[LX_HTTP_ERR_COUNT] = {
        [LX_HTTP_ERR_MALFORMED] = LX_ERR_BAD_REQUEST,
        [LX_HTTP_ERR_TIMEOUT] = LX_ERR_REQUEST_TIMEOUT,
        [LX_HTTP_ERR_BODY_TOO_LARGE] = LX_ERR_BODY_TOO_LARGE,
        [LX_HTTP_ERR_HEADER_TOO_LARGE] = LX_ERR_HEADER_TOO_LARGE,
        [LX_HTTP_ERR_TOO_MANY_CONNECTIONS] = LX_ERR_TOO_MANY_CONNECTIONS,
    };
    (void)ud;
    if ((unsigned)what >= LX_HTTP_ERR_COUNT || lx_err_get(errs[what])->status != status) return NULL;
    return lx_err_body(body, errs[what], message, NULL) == 0 ? "application/json" : NULL;
}

static void respond_json(lx_http_req *req, int status, const lx_buf *body)
{
    static const lx_http_header h[] = {{"Content-Type", "application/json"}};
    lx_http_respond(req, status, h, 1, body->p, body->len);
}

/* ---------- /v1/models ---------- */

/* A model served now: owned by the first backend serving it. */
static void model_object(lx_buf *out, const lx_api_ctx *ctx, const lx_model *m)
{
    const char *owner = lx_backend_name(lx_model_server(m, 0));
    lx_buf_append_str(out, "{\"id\":\"");
    lx_buf_json_escape(out, lx_model_name(m), strlen(lx_model_name(m)));
    lx_buf_printf(out, "\",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"", (long long)ctx->started_wall_s);
    lx_buf_json_escape(out, owner, strlen(owner));
    lx_buf_append_str(out, "\"}");
}

/* An alias: a model object too (the SDKs list it), saying what it stands for. */
static void alias_object(lx_buf *out, const lx_api_ctx *ctx, const lx_alias *a)
{
    lx_buf_append_str(out, "{\"id\":\"");
    lx_buf_json_escape(out, a->name, strlen(a->name));
    lx_buf_printf(out, "\",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"lexora\",\"lexora\":{\"alias_of\":[",
                  (long long)ctx->started_wall_s);
    for (size_t i = 0; i < a->n_models; i++) {
        lx_buf_append_str(out, i ? ",\"" : "\"");
        lx_buf_json_escape(out, a->models[i], strlen(a->models[i]));
        lx_buf_append_str(out, "\"");
    }
    lx_buf_append_str(out, "]}}");
}

/* A model served now (and not hidden by an alias of the same name), or NULL. */
static const lx_model *served(const lx_api_ctx *ctx, const lx_config *c, const char *name, size_t len)
{
    const lx_model *m = lx_served_find(lx_admission_served(ctx->admission), name, len);
    return m && lx_model_servers(m) && !lx_config_alias(c, name, len) ? m : NULL;
}

/* Every model served now (listed, or discovered with models: auto), then every alias. */
static void models_list(lx_api_ctx *ctx, lx_http_req *req)
{
    const lx_config *c = ctx->config(ctx->ud);
    const lx_served *s = lx_admission_served(ctx->admission);
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_buf_append_str(&out, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < lx_served_count(s); i++) {
        const lx_model *m = lx_served_at(s, i);
        if (!served(ctx, c, lx_model_name(m), strlen(lx_model_name(m)))) continue;
        if (!first) lx_buf_append(&out, ",", 1);
        first = false;
        model_object(&out, ctx, m);
    }
    for (size_t i = 0; i < c->routing.n_aliases; i++) {
        if (!first) lx_buf_append(&out, ",", 1);
        first = false;
        alias_object(&out, ctx, &c->routing.aliases[i]);
    }
    lx_buf_append_str(&out, "]}");
    respond_json(req, 200, &out);
    lx_buf_free(&out);
}

/* GET /v1/models/{id}: the one model or alias, or 404 model_not_found. */
static void model_get(lx_api_ctx *ctx, lx_http_req *req, lx_slice id)
{
    const lx_config *c = ctx->config(ctx->ud);
    const lx_alias *a = lx_config_alias(c, id.p, id.len);
    const lx_model *m = a ? NULL : served(ctx, c, id.p, id.len);
    if (a == NULL && m == NULL) {
        lx_respond_error(req, LX_ERR_MODEL_NOT_FOUND, "The model does not exist.", "model", NULL);
        return;
    }
    lx_buf out;
    lx_buf_init(&out, 0);
    if (a)
        alias_object(&out, ctx, a);
    else
        model_object(&out, ctx, m);
    respond_json(req, 200, &out);
    lx_buf_free(&out);
}

/* ---------- who may see what ---------- */

/* The bearer key of req's Authorization header, or false. */
static bool bearer(lx_http_req *req, lx_slice *key)
{
    lx_slice v;
    return lx_http_req_header(req, "authorization", &v) && lx_auth_bearer(v, key);
}

void lx_access_who(lx_api_ctx *ctx, lx_http_req *req, lx_access *who)
{
    const lx_config *c = ctx->config(ctx->ud);
    lx_slice key = {0};
    *who = (lx_access){.key_sent = bearer(req, &key)};
    if (c->admin.token)
        who->admin = who->key_sent && lx_auth_token_equal(key, c->admin.token);
    else
        who->admin = lx_http_req_peer_is_loopback(req);
    who->metrics = who->key_sent && c->metrics.token && lx_auth_token_equal(key, c->metrics.token);
    if (c->auth.enabled && who->key_sent) { /* a client key on loopback, with no admin token: both */
        lx_slice v;
        lx_http_req_header(req, "authorization", &v);
        who->user = lx_auth_lookup(c, v, NULL);
    }
    who->sees_details = who->admin || !c->auth.enabled;
}

lx_access_verdict lx_access_decide(const lx_config *c, const lx_access *who, lx_access_need need,
                                   const char *query_user)
{
    bool auth = c->auth.enabled;
    switch (need) {
    case LX_ACCESS_OPEN: return LX_ACCESS_ALLOW;
    case LX_ACCESS_CLIENT: return !auth || who->admin || who->user ? LX_ACCESS_ALLOW : LX_ACCESS_NO_KEY;
    case LX_ACCESS_STATS:
        if (!auth || who->admin) return LX_ACCESS_ALLOW;
        if (who->user == NULL) return LX_ACCESS_NO_TOKEN;
        return query_user && strcmp(query_user, who->user) == 0 ? LX_ACCESS_ALLOW : LX_ACCESS_NOT_YOURS;
    case LX_ACCESS_STATS_ALL:
        if (!auth || who->admin) return LX_ACCESS_ALLOW;
        return who->user ? LX_ACCESS_NOT_YOURS : LX_ACCESS_NO_TOKEN;
    case LX_ACCESS_ADMIN: return who->admin ? LX_ACCESS_ALLOW : LX_ACCESS_NO_ADMIN;
    case LX_ACCESS_METRICS:
        /* the admin token opens it too, but loopback alone does not */
        if (c->metrics.token == NULL || who->metrics || (who->admin && c->admin.token)) return LX_ACCESS_ALLOW;
        return LX_ACCESS_NO_METRICS;
    }
    return LX_ACCESS_NO_ADMIN;
}

static void refuse_log(lx_http_req *req, const char *why)
{
    lx_slice path = lx_http_req_path(req);
    LX_WARN(NULL, "%.*s from %s refused: %s", (int)path.len, path.p, lx_http_req_peer(req), why);
}

static void refuse_401(lx_http_req *req, lx_err e, const char *realm, const char *message)
{
    lx_http_header h = {"WWW-Authenticate", realm};
    respond_error_h(req, e, message, NULL, &h);
}

/* Answers the refusal v (not ALLOW) in OpenAI's envelope, and logs it (path and peer, never a token). */
static void refuse(const lx_config *c, lx_http_req *req, const lx_access *who, lx_access_verdict v, bool has_query_user)
{
    switch (v) {
    case LX_ACCESS_NO_KEY:
        refuse_log(req, who->key_sent ? "unknown API key" : "no API key");
        refuse_401(req, LX_ERR_INVALID_API_KEY, "Bearer",
                   lx_auth_message(who->key_sent ? LX_AUTH_INVALID : LX_AUTH_MISSING));
        return;
    case LX_ACCESS_NO_TOKEN:
        refuse_log(req, who->key_sent ? "neither the admin token nor a client key" : "no token");
        refuse_401(req, LX_ERR_INVALID_API_KEY, "Bearer",
                   "This needs the admin token (or a client key, for its own usage: GET /v1/usage, "
                   "/stats?user=<your user>): send Authorization: Bearer <token>.");
        return;
    case LX_ACCESS_NOT_YOURS:
        refuse_log(req, "a client key asked for more than its own usage");
        lx_respond_error(req, LX_ERR_PERMISSION_DENIED,
                         has_query_user ? "A client key sees its own usage only: ?user= must name the key's own user."
                                        : "A client key sees its own usage only: GET /v1/usage, or "
                                          "/stats?user=<your user>. Everyone's figures need the admin token.",
                         NULL, NULL);
        return;
    case LX_ACCESS_NO_ADMIN:
        if (c->admin.token == NULL) {
            refuse_log(req, "no admin token is configured, so loopback clients only");
            lx_respond_error(req, LX_ERR_ADMIN_FORBIDDEN,
                             "No admin token is configured (admin.token or admin.token_file): admin endpoints "
                             "answer only to loopback clients.",
                             NULL, NULL);
            return;
        }
        refuse_log(req, "missing or wrong admin token");
        refuse_401(req, LX_ERR_ADMIN_UNAUTHORIZED, "Bearer realm=\"lexora-admin\"",
                   "Missing or wrong admin token: send Authorization: Bearer <admin.token>.");
        return;
    case LX_ACCESS_NO_METRICS:
        refuse_log(req, "missing or wrong metrics token");
        refuse_401(req, LX_ERR_METRICS_UNAUTHORIZED, "Bearer realm=\"lexora-metrics\"",
                   "Missing or wrong metrics token: send Authorization: Bearer <metrics.token>.");
        return;
    case LX_ACCESS_ALLOW: return;
    }
}

bool lx_access_check(lx_api_ctx *ctx, lx_http_req *req, lx_access_need need, lx_access *who)
{
    const lx_config *c = ctx->config(ctx->ud);
    if (need == LX_ACCESS_OPEN && who == NULL) return true; /* the proxy endpoints: no hashing on their path */
    lx_access w;
    if (who == NULL) who = &w;
    lx_access_who(ctx, req, who);
    char user[256];
    bool has_user =
        need == LX_ACCESS_STATS && lx_observe_query_param(lx_http_req_query(req), "user", user, sizeof user) && user[0];
    lx_access_verdict v = lx_access_decide(c, who, need, has_user ? user : NULL);
    if (v == LX_ACCESS_ALLOW) return true;
    refuse(c, req, who, v, has_user);
    return false;
}

/* ---------- /v1/usage ---------- */

/* The caller's user: its client key's (auth on), else X-User-Id or "anonymous" (the pipeline's rule,
 * limits/auth.h). False for the admin token with auth on: it has no usage of its own. */
static bool usage_user(lx_api_ctx *ctx, lx_http_req *req, char *out, size_t cap)
{
    const lx_config *c = ctx->config(ctx->ud);
    lx_slice u = LX_SLICE_LIT("anonymous");
    if (c->auth.enabled) {
        lx_access who;
        lx_access_who(ctx, req, &who);
        if (who.user == NULL) return false;
        u = lx_slice_of(who.user);
    } else {
        lx_slice h;
        if (lx_http_req_header(req, "x-user-id", &h)) u = h;
    }
    lx_copy_cut(out, cap, u.p, u.len);
    return true;
}

static void window_json(lx_buf *out, const char *key, long used, const lx_rate_window *w)
{
    lx_buf_printf(out, "\"%s\":{\"used\":%ld,\"limit\":%ld,\"remaining\":", key, used, w->limit);
    if (w->limit > 0)
        lx_buf_printf(out, "%ld,\"reset_ms\":%lld}", w->remaining, (long long)w->reset_ms);
    else
        lx_buf_append_str(out, "null,\"reset_ms\":0}");
}

/* The members of one set of counts, without braces. */
static void counts_members(lx_buf *out, const lx_today_counts *c)
{
    lx_buf_printf(out,
                  "\"requests\":%llu,\"prompt_tokens\":%llu,\"completion_tokens\":%llu,\"total_tokens\":%llu,"
                  "\"errors\":%llu,\"rate_limited\":%llu",
                  (unsigned long long)c->requests, (unsigned long long)c->prompt_tokens,
                  (unsigned long long)c->completion_tokens,
                  (unsigned long long)(c->prompt_tokens + c->completion_tokens), (unsigned long long)c->errors,
                  (unsigned long long)c->rate_limited);
}

/* "MODEL":{counts}, comma-separated: ud is the lx_buf, which holds "{" before the first. */
static void model_json(const char *model, const lx_today_counts *c, void *ud)
{
    lx_buf *out = ud;
    lx_buf_append_str(out, out->p[out->len - 1] == '{' ? "\"" : ",\"");
    lx_buf_json_escape(out, model, strlen(model));
    lx_buf_append_str(out, "\":{");
    counts_members(out, c);
    lx_buf_append(out, "}", 1);
}

/* ,"today":{"date":"YYYY-MM-DD",<counts>,"per_model":{...}} */
static void today_json(lx_api_ctx *ctx, lx_buf *out, const char *user)
{
    char day[11] = "";
    lx_today_counts total = {0};
    lx_buf models;
    lx_buf_init(&models, 0);
    lx_buf_append(&models, "{", 1);
    if (ctx->usage_today) lx_usage_today_get(ctx->usage_today, user, day, &total, model_json, &models);
    lx_buf_append(&models, "}", 1);
    if (day[0])
        lx_buf_printf(out, ",\"today\":{\"date\":\"%s\",", day);
    else
        lx_buf_append_str(out, ",\"today\":{\"date\":null,");
    counts_members(out, &total);
    lx_buf_append_str(out, ",\"per_model\":");
    lx_buf_append(out, models.p, models.len);
    lx_buf_append(out, "}", 1);
    lx_buf_free(&models);
}

/* GET /v1/usage: the caller's own usage against its limits (README, "GET /v1/usage"). */
static void usage(lx_api_ctx *ctx, lx_http_req *req)
{
    char user[LX_RATE_USER_MAX];
    if (!usage_user(ctx, req, user, sizeof user)) {
        lx_respond_error(req, LX_ERR_PERMISSION_DENIED,
                         "The admin token is not a client key and has no usage of its own; GET /stats shows "
                         "everyone's.",
                         NULL, NULL);
        return;
    }
    lx_rate_window rw = {0}, tw = {0};
    long ru = 0, tu = 0;
    if (ctx->rate_limiter) lx_rate_peek(ctx->rate_limiter, user, &rw, &tw, &ru, &tu);
    lx_stats_summary sum;
    lx_stats_summary_get(ctx->stats, user, &sum);
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_buf_append_str(&out, "{\"object\":\"usage\",\"user\":\"");
    lx_buf_json_escape(&out, user, strlen(user));
    lx_buf_append_str(&out, "\",\"minute\":{");
    window_json(&out, "requests", ru, &rw);
    lx_buf_append(&out, ",", 1);
    window_json(&out, "tokens", tu, &tw);
    lx_buf_append(&out, "}", 1);
    today_json(ctx, &out, user);
    lx_buf_printf(&out,
                  ",\"since_start\":{\"started_at\":%lld,\"requests\":%llu,\"requests_last_60s\":%llu,"
                  "\"prompt_tokens\":%llu,\"completion_tokens\":%llu,\"total_tokens\":%llu,\"errors\":%llu,"
                  "\"rate_limited\":%llu}}",
                  (long long)ctx->started_wall_s, (unsigned long long)sum.total_requests,
                  (unsigned long long)sum.requests_last_60s, (unsigned long long)sum.prompt_tokens,
                  (unsigned long long)sum.completion_tokens, (unsigned long long)sum.total_tokens,
                  (unsigned long long)sum.total_errors, (unsigned long long)sum.rate_limited);
    static const lx_http_header h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    lx_http_respond(req, 200, h, LX_ARRAY_LEN(h), out.p, out.len);
    lx_buf_free(&out);
}

/* ---------- /admin/reload ---------- */

/* POST /admin/reload: 200 {"status":"reloaded","changed":[...],"restart_required":[...]}, or 400 config_invalid. */
static void admin_reload(lx_api_ctx *ctx, lx_http_req *req)
{
    if (ctx->shutting_down(ctx->ud)) {
        lx_respond_error(req, LX_ERR_SHUTTING_DOWN, "The gateway is shutting down; it does not reload.", NULL, NULL);
        return;
    }
    lx_reload_diff d = {0};
    lx_buf errors, out;
    lx_buf_init(&errors, 0);
    lx_buf_init(&out, 0);
    if (ctx->reload(ctx->ud, "POST /admin/reload", &d, &errors) == 0) {
        lx_buf_append_str(&out, "{\"status\":\"reloaded\",");
        lx_reload_diff_json(&d, &out);
        lx_buf_append_str(&out, "}");
        respond_json(req, 200, &out);
        lx_reload_diff_free(&d);
    } else {
        while (errors.len && errors.p[errors.len - 1] == '\n')
            errors.p[--errors.len] = '\0';
        lx_buf_printf(&out, "The config was not reloaded; the running config stays. Problems:\n%s",
                      errors.p ? errors.p : "");
        lx_respond_error(req, LX_ERR_CONFIG_INVALID, out.p, NULL, NULL);
    }
    lx_buf_free(&errors);
    lx_buf_free(&out);
}

/* ---------- /admin/backends/NAME/drain and /undrain ---------- */

/* 200 {"backend":NAME,"drained":bool,"drain_state":...,"in_flight":N,"changed":bool}; 404 for an unknown
 * backend (or one the config no longer has). Idempotent: draining a drained backend changes nothing. */
static void admin_drain(lx_api_ctx *ctx, lx_http_req *req, lx_slice name, bool on)
{
    char n[256];
    lx_backend *b = NULL;
    if (name.len < sizeof n && ctx->admission) {
        memcpy(n, name.p, name.len);
        n[name.len] = '\0';
        b = lx_backends_find(lx_admission_backends(ctx->admission), n);
    }
    lx_backend_info info;
    if (b) lx_backend_info_get(b, &info);
    if (b == NULL || info.retired) {
        char msg[320];
        snprintf(msg, sizeof msg, "No backend named `%.*s` is configured", (int)LX_MIN(name.len, 200), name.p);
        lx_respond_error(req, LX_ERR_NOT_FOUND, msg, NULL, NULL);
        return;
    }
    bool changed = lx_backend_set_drained(b, on);
    lx_backend_info_get(b, &info);
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_buf_append_str(&out, "{\"backend\":\"");
    lx_buf_json_escape(&out, info.name, strlen(info.name));
    lx_buf_printf(&out, "\",\"drained\":%s,\"drain_state\":\"%s\",\"in_flight\":%d,\"changed\":%s}",
                  info.drained ? "true" : "false", lx_backend_drain_state(&info), info.in_flight,
                  changed ? "true" : "false");
    respond_json(req, 200, &out);
    lx_buf_free(&out);
}

/* ---------- /admin/models: loading and unloading (backends/loader.h) ---------- */

/* GET /admin/models: every managed model's state on its backend. */
static void admin_models(lx_api_ctx *ctx, lx_http_req *req)
{
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_loader_render(lx_admission_loader(ctx->admission), &out);
    respond_json(req, 200, &out);
    lx_buf_free(&out);
}

/* POST /admin/models/load|unload {"model": M, "backend": B?}: 202 with the state, 404, 409, 400. */
static void admin_model_command(lx_api_ctx *ctx, lx_http_req *req, bool load)
{
    lx_slice body = lx_http_req_body(req);
    cJSON *root = cJSON_ParseWithLength(body.p, body.len);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *backend = cJSON_GetObjectItemCaseSensitive(root, "backend");
    if (!cJSON_IsString(model) || (backend && !cJSON_IsNull(backend) && !cJSON_IsString(backend))) {
        lx_respond_error(req, LX_ERR_INVALID_FIELD, "The body must be {\"model\": M, \"backend\": B (optional)}",
                         cJSON_IsString(model) ? "backend" : "model", NULL);
        cJSON_Delete(root);
        return;
    }
    lx_buf out;
    lx_buf_init(&out, 0);
    int status =
        lx_loader_command(lx_admission_loader(ctx->admission), cJSON_IsString(backend) ? backend->valuestring : NULL,
                          model->valuestring, load, &out);
    if (status == 202)
        respond_json(req, 202, &out);
    else
        lx_respond_error(req, status == 404 ? LX_ERR_NOT_FOUND : LX_ERR_LOAD_CONFLICT, out.p, "model", NULL);
    lx_buf_free(&out);
    cJSON_Delete(root);
}

static void admin_models_load(lx_api_ctx *ctx, lx_http_req *req) { admin_model_command(ctx, req, true); }
static void admin_models_unload(lx_api_ctx *ctx, lx_http_req *req) { admin_model_command(ctx, req, false); }

/* POST /admin/backends/NAME/drain or /undrain. True when path is one of them (answered). */
static bool admin_backends(lx_api_ctx *ctx, lx_http_req *req, lx_slice path)
{
    static const char prefix[] = "/admin/backends/";
    size_t pl = sizeof prefix - 1;
    if (path.len <= pl || memcmp(path.p, prefix, pl) != 0) return false;
    lx_slice rest = {path.p + pl, path.len - pl};
    const char *slash = memchr(rest.p, '/', rest.len);
    if (slash == NULL || slash == rest.p) return false;
    lx_slice name = {rest.p, (size_t)(slash - rest.p)}, verb = {slash + 1, rest.len - name.len - 1};
    bool drain = lx_slice_eq(verb, "drain");
    if (!drain && !lx_slice_eq(verb, "undrain")) return false;
    if (strcmp(lx_http_req_method(req), "POST") != 0)
        method_not_allowed(req, "POST");
    else if (lx_access_check(ctx, req, LX_ACCESS_ADMIN, NULL))
        admin_drain(ctx, req, name, drain);
    return true;
}

/* ---------- dispatch ---------- */

static void method_not_allowed(lx_http_req *req, const char *allowed)
{
    char msg[128];
    snprintf(msg, sizeof msg, "Method %s is not allowed here; use %s", lx_http_req_method(req), allowed);
    lx_http_header allow = {"Allow", allowed};
    lx_slice path = lx_http_req_path(req);
    if (path.len >= 12 && memcmp(path.p, "/v1/messages", 12) == 0) { /* Anthropic's paths: its error shape */
        lx_buf body;
        lx_buf_init(&body, 0);
        lx_messages_error_body(&body, lx_err_get(LX_ERR_METHOD_NOT_ALLOWED)->status, msg);
        lx_http_header h[2] = {{"Content-Type", "application/json"}, allow};
        lx_http_respond(req, lx_err_get(LX_ERR_METHOD_NOT_ALLOWED)->status, h, 2, body.p, body.len);
        lx_buf_free(&body);
        return;
    }
    respond_error_h(req, LX_ERR_METHOD_NOT_ALLOWED, msg, NULL, &allow);
}

void lx_routes_on_request(lx_http_req *req, void *ud)
{
    lx_api_ctx *ctx = ud;
    lx_slice path = lx_http_req_path(req);
    const char *method = lx_http_req_method(req);
    for (size_t i = 0; i < LX_ARRAY_LEN(routes); i++) {
        if (!lx_slice_eq(path, routes[i].path)) continue;
        if (strcmp(method, routes[i].method) != 0) {
            method_not_allowed(req, routes[i].method);
            return;
        }
        if (lx_access_check(ctx, req, routes[i].need, NULL)) routes[i].fn(ctx, req);
        return;
    }
    route_fn dash = dashboard_route(path);
    if (dash) {
        if (strcmp(method, "GET") != 0)
            method_not_allowed(req, "GET");
        else
            dash(ctx, req);
        return;
    }
    static const char prefix[] = "/v1/models/";
    if (path.len > sizeof prefix - 1 && memcmp(path.p, prefix, sizeof prefix - 1) == 0) {
        if (strcmp(method, "GET") != 0)
            method_not_allowed(req, "GET");
        else if (lx_access_check(ctx, req, LX_ACCESS_CLIENT, NULL))
            model_get(ctx, req, (lx_slice){path.p + sizeof prefix - 1, path.len - (sizeof prefix - 1)});
        return;
    }
    if (admin_backends(ctx, req, path)) return;
    char msg[160];
    snprintf(msg, sizeof msg, "Unknown path %.*s", (int)LX_MIN(path.len, 100), path.p);
    lx_respond_error(req, LX_ERR_NOT_FOUND, msg, NULL, NULL);
}
