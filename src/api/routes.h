/*
 * Path → handler table for everything the gateway serves: the OpenAI endpoints (handed to the proxy)
 * and Lexora's own. Unknown paths get 404 not_found, known paths with the wrong method 405 with an
 * Allow header. Loop thread only.
 */
#ifndef LX_ROUTES_H
#define LX_ROUTES_H

#include <stdbool.h>

#include "api/errors.h"
#include "api/context.h"
#include "http/server.h"

/* The server's on_request callback; ud is the gateway's lx_api_ctx. The proxy endpoints go to
 * ctx->proxy, which from then on owns the request (its on_abort / on_drain are the pipeline's). */
void lx_routes_on_request(lx_http_req *req, void *ud);

/*
 * Who may see what: every rule in one place. The path table gives each route what it needs; a handler
 * whose answer depends on the caller (/health's details, /stats?user=) asks lx_access_who.
 *
 *   need               auth.enabled: true                         auth.enabled: false
 *   OPEN               anyone                                     anyone
 *   CLIENT             a client key (auth.keys) or the admin      anyone
 *   STATS              GET /stats: the admin; with ?user=NAME, also anyone
 *                      the client key of NAME (another name: 403)
 *   STATS_ALL          everyone's figures, whatever the query     anyone
 *                      (/stats/stream, the dashboard's data): the admin
 *   ADMIN              the admin                                  the admin
 *   METRICS            metrics.token (or the admin token) when metrics.token is set; else anyone
 *
 * "The admin": the caller sends "Authorization: Bearer <admin.token>"; with no admin token configured, a
 * loopback client. Tokens and keys are compared in constant time (limits/auth.h). The proxy endpoints
 * (/v1/chat/completions, ...) are OPEN here: the pipeline identifies the caller itself (lx_auth_identify,
 * then the rate limits), as it must count the request against that user anyway.
 */
typedef enum {
    LX_ACCESS_OPEN = 0,
    LX_ACCESS_CLIENT,
    LX_ACCESS_STATS,     /* only for a handler that narrows its answer to ?user=NAME when given */
    LX_ACCESS_STATS_ALL, /* the rest of what shows users' figures */
    LX_ACCESS_ADMIN,
    LX_ACCESS_METRICS,
} lx_access_need;

typedef struct {
    bool admin;        /* holds the admin token (or loopback with none configured) */
    const char *user;  /* auth on: the user of the client key sent (in the config snapshot), else NULL */
    bool key_sent;     /* sent an Authorization: Bearer header at all */
    bool metrics;      /* sent metrics.token */
    bool sees_details; /* may see backend URLs and error texts (/health): the admin, or anyone with auth off */
} lx_access;

/* What the rules say of a caller (anything but ALLOW is a refusal, answered by lx_access_check). */
typedef enum {
    LX_ACCESS_ALLOW = 0,
    LX_ACCESS_NO_KEY,     /* 401 invalid_api_key: a client key is needed */
    LX_ACCESS_NO_TOKEN,   /* 401 invalid_api_key: the admin token, or a client key for its own usage */
    LX_ACCESS_NOT_YOURS,  /* 403 permission_denied: a client key asked for more than its own usage */
    LX_ACCESS_NO_ADMIN,   /* 401 invalid_admin_token; 403 admin_forbidden when no admin token is configured */
    LX_ACCESS_NO_METRICS, /* 401 invalid_metrics_token */
} lx_access_verdict;

/* The rules of the table above, pure: who against need under config c; query_user is ?user=NAME of a
 * STATS request (NULL when absent). Any thread. */
lx_access_verdict lx_access_decide(const lx_config *c, const lx_access *who, lx_access_need need,
                                   const char *query_user);

/* Who the caller of req is. Answers nothing. */
void lx_access_who(lx_api_ctx *ctx, lx_http_req *req, lx_access *who);

/*
 * May the caller of req have what `need` guards? True: go on (*who filled, may be NULL). False: req has
 * been answered (401 with WWW-Authenticate, or 403, in OpenAI's error envelope) and the refusal logged.
 * STATS reads ?user=NAME from req's query. A handler outside the path table calls it first, e.g. a
 * stream of everyone's figures: `if (!lx_access_check(ctx, req, LX_ACCESS_STATS_ALL, NULL)) return;`
 */
bool lx_access_check(lx_api_ctx *ctx, lx_http_req *req, lx_access_need need, lx_access *who);

/* Answers with the OpenAI error envelope for e; request_id may be NULL. */
void lx_respond_error(lx_http_req *req, lx_err e, const char *message, const char *param, const char *request_id);

/* The server's render_error hook (http/server.h) for the OpenAI error envelope: the 400, 408, 413, 431
 * and 503 the HTTP front answers by itself get the body and code of the matching lx_err. */
const char *lx_routes_render_error(lx_http_error what, int status, const char *message, lx_buf *body, void *ud);

#endif
