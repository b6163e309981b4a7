/*
 * Routes: the path table and Lexora's own small endpoints. The OpenAI proxy endpoints go to the
 * pipeline (proxy.c) through ctx->proxy; /v1/models is answered here from what is served now
 * (backends/served.h: the models the enabled backends list or discovered, each once, owned by the first
 * backend serving it) and the config's aliases, without asking the backends.
 * The /admin/ endpoints need the admin token (or, with none configured, a loopback client).
 * Handlers see the gateway only through its lx_api_ctx (api/context.h).
 */
#include "api/routes.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <strings.h>

#include "api/dashboard.h"
#include "api/errors.h"
#include "api/health.h"
#include "api/messages.h"
#include "api/observe.h"
#include "api/stats_stream.h"
#include "queue/admission.h"
#include "reload.h"
#include "utils/buf.h"
#include "utils/log.h"

typedef void (*route_fn)(lx_api_ctx *ctx, lx_http_req *req);

typedef struct {
    const char *path;
    const char *method;
    route_fn fn;
} route;

static void chat(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_CHAT); }
static void completions(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_COMPLETIONS); }
static void embeddings(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_EMBEDDINGS); }
static void messages(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_MESSAGES); }
static void count_tokens(lx_api_ctx *ctx, lx_http_req *req) { ctx->proxy(ctx->ud, req, LX_EP_COUNT_TOKENS); }
static void models_list(lx_api_ctx *ctx, lx_http_req *req);
static void admin_reload(lx_api_ctx *ctx, lx_http_req *req);

static const route routes[] = {
    {"/v1/chat/completions", "POST", chat},  {"/v1/completions", "POST", completions},
    {"/v1/embeddings", "POST", embeddings},  {"/v1/models", "GET", models_list},
    {"/admin/reload", "POST", admin_reload}, {"/stats", "GET", lx_observe_stats},
    {"/metrics", "GET", lx_observe_metrics}, {"/health", "GET", lx_health_full},
    {"/health/live", "GET", lx_health_live}, {"/health/ready", "GET", lx_health_ready},
    {"/v1/messages", "POST", messages},      {"/v1/messages/count_tokens", "POST", count_tokens},
};

/* The live dashboard: GET /dashboard and its files (api/dashboard.h), GET /stats/stream (api/stats_stream.h). */
static route_fn dashboard_route(lx_slice path)
{
    static const char dir[] = "/dashboard";
    const size_t n = sizeof dir - 1;
    if (lx_slice_eq(path, "/stats/stream")) return lx_observe_stats_stream;
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

/* ---------- /admin/... ---------- */

/* Equal, in time that depends on neither the token nor how much of it was guessed: digests compared. */
static bool token_equal(lx_slice given, const char *token)
{
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int na = 0, nb = 0;
    if (!EVP_Digest(given.p, given.len, a, &na, EVP_sha256(), NULL) ||
        !EVP_Digest(token, strlen(token), b, &nb, EVP_sha256(), NULL) || na != nb)
        return false;
    return CRYPTO_memcmp(a, b, na) == 0;
}

/*
 * Admin endpoints need "Authorization: Bearer <admin.token>"; with no token configured they answer only
 * to loopback clients. Returns true when req may go on; otherwise it has been answered (401 or 403).
 */
static bool admin_allowed(lx_api_ctx *ctx, lx_http_req *req)
{
    const char *token = ctx->config(ctx->ud)->admin.token;
    lx_slice path = lx_http_req_path(req);
    if (token == NULL) {
        if (lx_http_req_peer_is_loopback(req)) return true;
        LX_WARN(NULL, "%.*s from %s refused: no admin token is configured, so loopback clients only", (int)path.len,
                path.p, lx_http_req_peer(req));
        lx_respond_error(req, LX_ERR_ADMIN_FORBIDDEN,
                         "No admin token is configured (admin.token or admin.token_file): admin endpoints answer "
                         "only to loopback clients.",
                         NULL, NULL);
        return false;
    }
    lx_slice v;
    if (lx_http_req_header(req, "authorization", &v) && v.len > 7 && strncasecmp(v.p, "Bearer ", 7) == 0) {
        size_t skip = 7;
        while (skip < v.len && v.p[skip] == ' ')
            skip++;
        size_t end = v.len;
        while (end > skip && v.p[end - 1] == ' ')
            end--;
        if (token_equal((lx_slice){v.p + skip, end - skip}, token)) return true;
    }
    LX_WARN(NULL, "%.*s from %s refused: missing or wrong admin token", (int)path.len, path.p, lx_http_req_peer(req));
    lx_http_header h = {"WWW-Authenticate", "Bearer realm=\"lexora-admin\""};
    respond_error_h(req, LX_ERR_ADMIN_UNAUTHORIZED,
                    "Missing or wrong admin token: send Authorization: Bearer <admin.token>.", NULL, &h);
    return false;
}

/* POST /admin/reload: 200 {"status":"reloaded","changed":[...],"restart_required":[...]}, or 400 config_invalid. */
static void admin_reload(lx_api_ctx *ctx, lx_http_req *req)
{
    if (!admin_allowed(ctx, req)) return;
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
        routes[i].fn(ctx, req);
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
        else
            model_get(ctx, req, (lx_slice){path.p + sizeof prefix - 1, path.len - (sizeof prefix - 1)});
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "Unknown path %.*s", (int)LX_MIN(path.len, 100), path.p);
    lx_respond_error(req, LX_ERR_NOT_FOUND, msg, NULL, NULL);
}
