/*
 * The request pipeline for the proxied endpoints (lx_endpoint: api/endpoint.h; Anthropic's /v1/messages translated
 * to a chat completion at intake, api/messages.h): read the body once, route
 * (routing/router.h), build the upstream request through the backend's kind, forward through the upstream
 * client, relay the answer (SSE as it arrives, or whole, through the kind's filters), account.
 * Loop thread only.
 */
#ifndef LX_PROXY_H
#define LX_PROXY_H

#include "api/endpoint.h"
#include "gateway.h"
#include "http/server.h"

/* Takes charge of req until it is answered or aborted. */
void lx_proxy_handle(lx_gateway *gw, lx_http_req *req, lx_endpoint ep);
/* Frees the request state the gateway keeps for reuse (at stop). */
void lx_proxy_free_spares(lx_gateway *gw);
/* The client left: cancel upstream at once. */
void lx_proxy_abort(lx_http_req *req);
/* The client caught up with a paused stream. */
void lx_proxy_drain(lx_http_req *req);

#endif
