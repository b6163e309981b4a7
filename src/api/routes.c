/*
 * Routes: the path table and Lexora's own small endpoints. The OpenAI proxy endpoints go to
 * proxy.c; /v1/models is answered here from the config (every enabled backend's models, merged,
 * first backend wins on a duplicate name), without asking the backends.
 */
#include "api/routes.h"

#include <stdio.h>

#include "api/errors.h"
#include "proxy.h"
#include "utils/buf.h"
#include "utils/log.h"

typedef void (*route_fn)(lx_gateway *gw, lx_http_req *req);

typedef struct {
    const char *path;
    const char *method;
    route_fn fn;
} route;

static void chat(lx_gateway *gw, lx_http_req *req) { lx_proxy_handle(gw, req, LX_EP_CHAT); }
static void completions(lx_gateway *gw, lx_http_req *req) { lx_proxy_handle(gw, req, LX_EP_COMPLETIONS); }
static void embeddings(lx_gateway *gw, lx_http_req *req) { lx_proxy_handle(gw, req, LX_EP_EMBEDDINGS); }
static void models_list(lx_gateway *gw, lx_http_req *req);

static const route routes[] = {
    {"/v1/chat/completions", "POST", chat},
    {"/v1/completions", "POST", completions},
    {"/v1/embeddings", "POST", embeddings},
    {"/v1/models", "GET", models_list},
};

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

static void respond_json(lx_http_req *req, int status, const lx_buf *body)
{
    static const lx_http_header h[] = {{"Content-Type", "application/json"}};
    lx_http_respond(req, status, h, 1, body->p, body->len);
}

/* ---------- /v1/models ---------- */

static bool listed_before(const lx_config *c, size_t bi, size_t mi)
{
    const char *name = c->backends[bi].models[mi].name;
    for (size_t b = 0; b <= bi; b++) {
        const lx_backend_conf *be = &c->backends[b];
        if (!be->enabled) continue;
        size_t end = b == bi ? mi : be->n_models;
        for (size_t m = 0; m < end; m++)
            if (strcmp(be->models[m].name, name) == 0) return true;
    }
    return false;
}

static void model_object(lx_buf *out, const lx_gateway *gw, const lx_backend_conf *b, const char *name)
{
    lx_buf_append_str(out, "{\"id\":\"");
    lx_buf_json_escape(out, name, strlen(name));
    lx_buf_printf(out, "\",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"", (long long)gw->started_wall_s);
    lx_buf_json_escape(out, b->name, strlen(b->name));
    lx_buf_append_str(out, "\"}");
}

static void models_list(lx_gateway *gw, lx_http_req *req)
{
    const lx_config *c = gw->config;
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_buf_append_str(&out, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t b = 0; b < c->n_backends; b++) {
        const lx_backend_conf *be = &c->backends[b];
        if (!be->enabled) continue;
        for (size_t m = 0; m < be->n_models; m++) {
            if (listed_before(c, b, m)) continue;
            if (!first) lx_buf_append(&out, ",", 1);
            first = false;
            model_object(&out, gw, be, be->models[m].name);
        }
    }
    lx_buf_append_str(&out, "]}");
    respond_json(req, 200, &out);
    lx_buf_free(&out);
}

/* GET /v1/models/{id}: the one model, or 404 model_not_found. */
static void model_get(lx_gateway *gw, lx_http_req *req, lx_slice id)
{
    const lx_backend_conf *b = lx_config_backend_for(gw->config, id.p, id.len);
    if (b == NULL) {
        lx_respond_error(req, LX_ERR_MODEL_NOT_FOUND, "The model does not exist.", "model", NULL);
        return;
    }
    char name[256];
    size_t n = LX_MIN(id.len, sizeof name - 1);
    memcpy(name, id.p, n);
    name[n] = '\0';
    lx_buf out;
    lx_buf_init(&out, 0);
    model_object(&out, gw, b, name);
    respond_json(req, 200, &out);
    lx_buf_free(&out);
}

/* ---------- dispatch ---------- */

static void method_not_allowed(lx_http_req *req, const char *allowed)
{
    char msg[128];
    snprintf(msg, sizeof msg, "Method %s is not allowed here; use %s", lx_http_req_method(req), allowed);
    lx_http_header allow = {"Allow", allowed};
    respond_error_h(req, LX_ERR_METHOD_NOT_ALLOWED, msg, NULL, &allow);
}

void lx_routes_on_request(lx_http_req *req, void *ud)
{
    lx_gateway *gw = ud;
    lx_slice path = lx_http_req_path(req);
    const char *method = lx_http_req_method(req);
    for (size_t i = 0; i < LX_ARRAY_LEN(routes); i++) {
        if (!lx_slice_eq(path, routes[i].path)) continue;
        if (strcmp(method, routes[i].method) != 0) {
            method_not_allowed(req, routes[i].method);
            return;
        }
        routes[i].fn(gw, req);
        return;
    }
    static const char prefix[] = "/v1/models/";
    if (path.len > sizeof prefix - 1 && memcmp(path.p, prefix, sizeof prefix - 1) == 0) {
        if (strcmp(method, "GET") != 0) method_not_allowed(req, "GET");
        else model_get(gw, req, (lx_slice){path.p + sizeof prefix - 1, path.len - (sizeof prefix - 1)});
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "Unknown path %.*s", (int)LX_MIN(path.len, 100), path.p);
    lx_respond_error(req, LX_ERR_NOT_FOUND, msg, NULL, NULL);
}

void lx_routes_on_abort(lx_http_req *req, void *ud)
{
    (void)ud;
    lx_proxy_abort(req);
}

void lx_routes_on_drain(lx_http_req *req, void *ud)
{
    (void)ud;
    lx_proxy_drain(req);
}
