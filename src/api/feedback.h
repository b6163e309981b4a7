/* POST /v1/feedback: a score for an earlier request, kept in the usage ledger (see feedback.c). */
#ifndef LX_FEEDBACK_H
#define LX_FEEDBACK_H

#include <stdbool.h>

#include "api/context.h"
#include "http/server.h"

void lx_feedback_post(lx_api_ctx *ctx, lx_http_req *req);
/* The server's on_abort for a request that is a feedback call waiting for the ledger: true if it was one. */
bool lx_feedback_abort(lx_http_req *req);

#endif
