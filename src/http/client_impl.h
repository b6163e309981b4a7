/*
 * Inside http/client: the two transports behind lx_http_client (client.c dispatches to them).
 *   http/upstream.c     lx_h1_*: HTTP/1.1 over libuv TCP + http-parser, for http:// URLs.
 *   http/client_curl.c  lx_curl_*: libcurl's multi interface on the loop, for https:// (and http:// when
 *                       the client is set to LX_HTTP_CURL).
 * Each transport's upstream struct begins with an lx_upstream, whose tag says which one it is, so
 * lx_upstream_pause/resume/cancel find their transport without the client. Both keep client.h's contract
 * (callbacks, lifetimes, result classes) to the letter; tests/unit/test_client.c runs against both.
 * Loop thread only.
 */
#ifndef LX_HTTP_CLIENT_IMPL_H
#define LX_HTTP_CLIENT_IMPL_H

#include "http/client.h"

struct lx_upstream {
    lx_http_transport transport;
};

typedef struct lx_h1_client lx_h1_client;
typedef struct lx_curl_client lx_curl_client;

lx_h1_client *lx_h1_client_new(uv_loop_t *loop);
void lx_h1_client_free(lx_h1_client *c);
lx_upstream *lx_h1_start(lx_h1_client *c, const lx_upstream_req *req, const lx_upstream_cbs *cbs, void *ud);
void lx_h1_pause(lx_upstream *u);
void lx_h1_resume(lx_upstream *u);
void lx_h1_cancel(lx_upstream *u);
size_t lx_h1_active(const lx_h1_client *c);

/* NULL if libcurl cannot be initialised. */
lx_curl_client *lx_curl_client_new(uv_loop_t *loop);
void lx_curl_client_free(lx_curl_client *c);
lx_upstream *lx_curl_start(lx_curl_client *c, const lx_upstream_req *req, const lx_upstream_cbs *cbs, void *ud);
void lx_curl_pause(lx_upstream *u);
void lx_curl_resume(lx_upstream *u);
void lx_curl_cancel(lx_upstream *u);
size_t lx_curl_active(const lx_curl_client *c);

#endif
