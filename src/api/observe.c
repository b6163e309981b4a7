/*
 * /stats and /metrics, and the metrics port's handler (that server answers GET /metrics and nothing
 * else). See observe.h. Reads the gateway only through its lx_api_ctx. Who may call them is checked
 * before (api/routes.c: the path table, and the metrics port's handler here through lx_access_check).
 * The backends' drained flags are added here to what the collector renders: "drained_backends" in
 * /stats, lexora_backend_drained in /metrics.
 */
#include "api/observe.h"

#include <string.h>

#include "api/routes.h"
#include "backends/backend.h"
#include "backends/loader.h"
#include "queue/admission.h"
#include "observe/stats.h"
#include "utils/buf.h"

/* Backends a reload added are shown before their first request. */
static void sync_backends(lx_api_ctx *ctx)
{
    if (ctx->admission == NULL) return;
    lx_backends *bs = lx_admission_backends(ctx->admission);
    for (size_t i = 0; i < lx_backends_count(bs); i++) {
        lx_backend_info info;
        lx_backend_info_get(lx_backends_at(bs, i), &info);
        lx_stats_add_backend(ctx->stats, info.name, !info.retired);
    }
}

static lx_stats_render_opts render_opts(lx_api_ctx *ctx)
{
    sync_backends(ctx);
    const lx_config *c = ctx->config(ctx->ud);
    return (lx_stats_render_opts){
        .connections = ctx->connections(ctx->ud),
        .per_user = c && c->metrics.per_user,
        .gpu = ctx->gpu,
    };
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool lx_observe_query_param(lx_slice q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = q.p, *end = q.p + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t n = 0;
            for (const char *v = p + nl + 1; v < stop && n + 1 < cap; v++) {
                int h1, h2;
                if (*v == '+')
                    out[n++] = ' ';
                else if (*v == '%' && stop - v > 2 && (h1 = hexval(v[1])) >= 0 && (h2 = hexval(v[2])) >= 0) {
                    out[n++] = (char)(h1 * 16 + h2);
                    v += 2;
                } else
                    out[n++] = *v;
            }
            out[n] = '\0';
            return true;
        }
        p = stop + 1;
    }
    return false;
}

/* The names of the drained backends as a JSON array. */
static void drained_json(lx_api_ctx *ctx, lx_buf *out)
{
    lx_buf_append(out, "[", 1);
    lx_backends *bs = ctx->admission ? lx_admission_backends(ctx->admission) : NULL;
    bool first = true;
    for (size_t i = 0; bs && i < lx_backends_count(bs); i++) {
        lx_backend_info info;
        lx_backend_info_get(lx_backends_at(bs, i), &info);
        if (info.retired || !info.drained) continue;
        lx_buf_append_str(out, first ? "\"" : ",\"");
        first = false;
        lx_buf_json_escape(out, info.name, strlen(info.name));
        lx_buf_append(out, "\"", 1);
    }
    lx_buf_append(out, "]", 1);
}

/* One gauge per configured backend: 1 while drained. */
static void drained_prometheus(lx_api_ctx *ctx, lx_buf *out)
{
    lx_backends *bs = ctx->admission ? lx_admission_backends(ctx->admission) : NULL;
    if (bs == NULL) return;
    lx_buf_append_str(out, "# HELP lexora_backend_drained 1 while the backend is drained (takes no new request)\n"
                           "# TYPE lexora_backend_drained gauge\n");
    for (size_t i = 0; i < lx_backends_count(bs); i++) {
        lx_backend_info info;
        lx_backend_info_get(lx_backends_at(bs, i), &info);
        if (info.retired) continue;
        lx_buf_append_str(out, "lexora_backend_drained{backend=\"");
        for (const char *p = info.name; *p; p++) { /* label value escapes: \\, \", \n */
            if (*p == '\\' || *p == '"') lx_buf_append(out, "\\", 1);
            if (*p == '\n')
                lx_buf_append(out, "\\n", 2);
            else
                lx_buf_append(out, p, 1);
        }
        lx_buf_printf(out, "\"} %d\n", info.drained ? 1 : 0);
    }
}

void lx_observe_stats(lx_api_ctx *ctx, lx_http_req *req)
{
    char user[256];
    bool by_user = lx_observe_query_param(lx_http_req_query(req), "user", user, sizeof user) && user[0];
    lx_stats_render_opts o = render_opts(ctx);
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_stats_render_json(ctx->stats, &out, by_user ? user : NULL, &o);
    if (!by_user && out.len && out.p[out.len - 1] == '}') {
        out.len--;
        lx_buf_append_str(&out, ",\"drained_backends\":");
        drained_json(ctx, &out);
        if (ctx->admission) {
            lx_buf_append_str(&out, ",\"models_loading\":");
            lx_loader_render(lx_admission_loader(ctx->admission), &out);
        }
        lx_buf_append(&out, "}", 1);
    }
    static const lx_http_header h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    lx_http_respond(req, 200, h, LX_ARRAY_LEN(h), out.p, out.len);
    lx_buf_free(&out);
}

void lx_observe_render_stats(lx_api_ctx *ctx, lx_buf *out)
{
    lx_stats_render_opts o = render_opts(ctx);
    o.max_users = LX_STREAM_MAX_USERS;
    lx_stats_render_json(ctx->stats, out, NULL, &o);
}

void lx_observe_metrics(lx_api_ctx *ctx, lx_http_req *req)
{
    lx_stats_render_opts o = render_opts(ctx);
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_stats_render_prometheus(ctx->stats, &out, &o);
    drained_prometheus(ctx, &out);
    if (ctx->admission) lx_loader_render_prometheus(lx_admission_loader(ctx->admission), &out);
    static const lx_http_header h[] = {{"Content-Type", LX_STATS_CONTENT_TYPE_PROMETHEUS}};
    lx_http_respond(req, 200, h, 1, out.p, out.len);
    lx_buf_free(&out);
}

/* ---------- the metrics port ---------- */

void lx_observe_metrics_port(lx_http_req *req, void *ud)
{
    lx_api_ctx *ctx = ud;
    if (!lx_slice_eq(lx_http_req_path(req), "/metrics")) {
        lx_respond_error(req, LX_ERR_NOT_FOUND, "This port serves GET /metrics only", NULL, NULL);
        return;
    }
    if (strcmp(lx_http_req_method(req), "GET") != 0) {
        lx_respond_error(req, LX_ERR_METHOD_NOT_ALLOWED, "Use GET /metrics", NULL, NULL);
        return;
    }
    if (lx_access_check(ctx, req, LX_ACCESS_METRICS, NULL)) lx_observe_metrics(ctx, req);
}
