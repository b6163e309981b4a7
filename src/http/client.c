/*
 * Upstream HTTP: the one client interface (client.h) over two transports (client_impl.h). This file only
 * picks the transport of each request by its URL: http:// goes to the native HTTP/1.1 client
 * (http/upstream.c) unless the client is set to libcurl or the URL carries credentials (user:password@,
 * which libcurl sends as Basic auth); anything else goes to libcurl (http/client_curl.c).
 * An lx_upstream carries its transport's tag, so pause/resume/cancel need no client.
 * Both transports live as long as the client; lx_http_client_free frees them (each finishes closing its
 * handles on later loop turns) and this struct at once. Loop thread only.
 */
#include "http/client.h"

#include <stdlib.h>
#include <strings.h>

#include "http/client_impl.h"

struct lx_http_client {
    lx_h1_client *h1;
    lx_curl_client *curl;
    lx_http_transport plain; /* who carries http:// */
};

const char *lx_up_result_name(lx_up_result r)
{
    switch (r) {
    case LX_UP_OK: return "ok";
    case LX_UP_CONNECT: return "connect";
    case LX_UP_TIMEOUT: return "timeout";
    case LX_UP_RESET: return "reset";
    case LX_UP_BAD_RESPONSE: return "bad_response";
    case LX_UP_CALLER: return "caller";
    case LX_UP_OTHER: return "other";
    }
    return "other";
}

lx_http_client *lx_http_client_new(uv_loop_t *loop)
{
    lx_curl_client *curl = lx_curl_client_new(loop);
    if (!curl) return NULL;
    lx_http_client *c = lx_xcalloc(1, sizeof *c);
    c->curl = curl;
    c->h1 = lx_h1_client_new(loop);
    const char *env = getenv("LEXORA_UPSTREAM_TRANSPORT");
    c->plain = env && strcasecmp(env, "curl") == 0 ? LX_HTTP_CURL : LX_HTTP_NATIVE;
    return c;
}

void lx_http_client_set_transport(lx_http_client *c, lx_http_transport t) { c->plain = t; }

void lx_http_client_free(lx_http_client *c)
{
    if (!c) return;
    lx_h1_client_free(c->h1);
    lx_curl_client_free(c->curl);
    free(c);
}

/* An http:// URL without credentials in it (user:password@ is libcurl's business: it sends them as Basic). */
static bool native_url(const char *url)
{
    if (!url || strncasecmp(url, "http://", 7) != 0) return false;
    for (const char *p = url + 7; *p && *p != '/' && *p != '?' && *p != '#'; p++) {
        if (*p == '@') return false;
    }
    return true;
}

lx_upstream *lx_upstream_start(lx_http_client *c, const lx_upstream_req *req, const lx_upstream_cbs *cbs, void *ud)
{
    if (c->plain == LX_HTTP_NATIVE && native_url(req->url)) return lx_h1_start(c->h1, req, cbs, ud);
    return lx_curl_start(c->curl, req, cbs, ud);
}

void lx_upstream_pause(lx_upstream *u)
{
    if (u->transport == LX_HTTP_NATIVE)
        lx_h1_pause(u);
    else
        lx_curl_pause(u);
}

void lx_upstream_resume(lx_upstream *u)
{
    if (u->transport == LX_HTTP_NATIVE)
        lx_h1_resume(u);
    else
        lx_curl_resume(u);
}

void lx_upstream_cancel(lx_upstream *u)
{
    if (u->transport == LX_HTTP_NATIVE)
        lx_h1_cancel(u);
    else
        lx_curl_cancel(u);
}

size_t lx_http_client_active(const lx_http_client *c) { return lx_h1_active(c->h1) + lx_curl_active(c->curl); }
