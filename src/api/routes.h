/*
 * Path → handler table for everything the gateway serves: the OpenAI endpoints (handed to the proxy)
 * and Lexora's own. Unknown paths get 404 not_found, known paths with the wrong method 405 with an
 * Allow header. Loop thread only.
 */
#ifndef LX_ROUTES_H
#define LX_ROUTES_H

#include "api/errors.h"
#include "api/context.h"
#include "http/server.h"

/* The server's on_request callback; ud is the gateway's lx_api_ctx. The proxy endpoints go to
 * ctx->proxy, which from then on owns the request (its on_abort / on_drain are the pipeline's). */
void lx_routes_on_request(lx_http_req *req, void *ud);

/* Answers with the OpenAI error envelope for e; request_id may be NULL. */
void lx_respond_error(lx_http_req *req, lx_err e, const char *message, const char *param, const char *request_id);

/* The server's render_error hook (http/server.h) for the OpenAI error envelope: the 400, 408, 413, 431
 * and 503 the HTTP front answers by itself get the body and code of the matching lx_err. */
const char *lx_routes_render_error(lx_http_error what, int status, const char *message, lx_buf *body, void *ud);

#endif
