/*
 * GET /dashboard and its files (see dashboard.h): one table from path to embedded bytes and type.
 */
#include "api/dashboard.h"

#include "api/errors.h"
#include "api/routes.h"

#define EMBEDDED(name)                                                                                                 \
    extern const unsigned char name##_data[];                                                                          \
    extern const size_t name##_size;

EMBEDDED(lx_dash_html)
EMBEDDED(lx_dash_js)
EMBEDDED(lx_dash_css)
EMBEDDED(lx_dash_uplot_js)
EMBEDDED(lx_dash_uplot_css)

typedef struct {
    const char *path;
    const char *type;
    const unsigned char *data;
    const size_t *size;
} asset;

static const asset assets[] = {
    {"/dashboard", "text/html; charset=utf-8", lx_dash_html_data, &lx_dash_html_size},
    {"/dashboard/dashboard.js", "text/javascript; charset=utf-8", lx_dash_js_data, &lx_dash_js_size},
    {"/dashboard/dashboard.css", "text/css; charset=utf-8", lx_dash_css_data, &lx_dash_css_size},
    {"/dashboard/uPlot.iife.min.js", "text/javascript; charset=utf-8", lx_dash_uplot_js_data, &lx_dash_uplot_js_size},
    {"/dashboard/uPlot.min.css", "text/css; charset=utf-8", lx_dash_uplot_css_data, &lx_dash_uplot_css_size},
};

void lx_dashboard_get(lx_api_ctx *ctx, lx_http_req *req)
{
    (void)ctx;
    lx_slice path = lx_http_req_path(req);
    for (size_t i = 0; i < LX_ARRAY_LEN(assets); i++) {
        if (!lx_slice_eq(path, assets[i].path)) continue;
        lx_http_header h[] = {
            {"Content-Type", assets[i].type},
            {"Cache-Control", "no-cache"},
            {"X-Content-Type-Options", "nosniff"},
            {"X-Frame-Options", "DENY"},
            {"Referrer-Policy", "no-referrer"},
            {"Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
        };
        lx_http_respond(req, 200, h, LX_ARRAY_LEN(h), (const char *)assets[i].data, *assets[i].size);
        return;
    }
    lx_respond_error(req, LX_ERR_NOT_FOUND, "No such dashboard file", NULL, NULL);
}
