/*
 * POST /v1/feedback {"request_id": ID, "score": S, "comment": C?}: a score given to an earlier request,
 * stored in the usage ledger against it (observe/usage_store.h) and counted for its experiment's variant
 * (routing/experiment.h).
 *
 * S is a number in [-1, 1] or a boolean (true 1, false -1); C at most LX_USAGE_COMMENT_MAX bytes. The
 * caller must be the request's own user (auth on: its client key's user; off: X-User-Id, else anonymous)
 * or hold the admin token. The ledger's writer looks the request up (after writing the rows queued before)
 * and answers: 200 stored, 404 unknown request, 403 someone else's, 409 a second time, 503 when the
 * ledger is off or cannot be read now.
 *
 * A call waits for the writer; if its client leaves first, lx_feedback_abort forgets the client, and the
 * answer, when it comes, is only counted. Calls in flight are on one list (loop thread only).
 */
#include "api/feedback.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/errors.h"
#include "api/routes.h"
#include "limits/auth.h"
#include "observe/usage_store.h"
#include "routing/experiment.h"
#include "utils/common.h"
#include "utils/list.h"

typedef struct {
    lx_list link;     /* on `calls` */
    lx_http_req *req; /* NULL once the client left */
    lx_experiments *experiments;
    double score;
} call;

static lx_list calls = {&calls, &calls};

bool lx_feedback_abort(lx_http_req *req)
{
    lx_list *n, *tmp;
    LX_LIST_EACH(&calls, n, tmp)
    {
        call *c = LX_LIST_ENTRY(n, call, link);
        if (c->req != req) continue;
        c->req = NULL;
        return true;
    }
    return false;
}

static void respond_json(lx_http_req *req, int status, const lx_buf *body)
{
    static const lx_http_header h[] = {{"Content-Type", "application/json"}};
    lx_http_respond(req, status, h, 1, body->p, body->len);
}

static void put_name(lx_buf *b, const char *s)
{
    if (s == NULL || *s == '\0') {
        lx_buf_append_str(b, "null");
        return;
    }
    lx_buf_append_str(b, "\"");
    lx_buf_json_escape(b, s, strlen(s));
    lx_buf_append_str(b, "\"");
}

static void on_stored(void *ud, const lx_usage_feedback_result *r)
{
    call *c = ud;
    lx_list_remove(&c->link);
    if (r->verdict == LX_FEEDBACK_STORED && r->experiment[0])
        lx_experiments_feedback(c->experiments, r->experiment, r->variant, c->score);
    if (c->req) {
        lx_http_req_set_data(c->req, NULL);
        switch (r->verdict) {
        case LX_FEEDBACK_STORED: {
            lx_buf b;
            lx_buf_init(&b, 0);
            lx_buf_printf(&b, "{\"object\":\"feedback\",\"stored\":true,\"score\":%.17g", c->score);
            lx_buf_append_str(&b, ",\"experiment\":");
            put_name(&b, r->experiment);
            lx_buf_append_str(&b, ",\"variant\":");
            put_name(&b, r->experiment[0] ? r->variant : NULL);
            lx_buf_append_str(&b, "}");
            respond_json(c->req, 200, &b);
            lx_buf_free(&b);
            break;
        }
        case LX_FEEDBACK_UNKNOWN: lx_respond_error(c->req, LX_ERR_REQUEST_NOT_FOUND, NULL, "request_id", NULL); break;
        case LX_FEEDBACK_NOT_YOURS:
            lx_respond_error(c->req, LX_ERR_PERMISSION_DENIED,
                             "That request is another user's: feedback comes from its own user or the admin token.",
                             "request_id", NULL);
            break;
        case LX_FEEDBACK_TWICE: lx_respond_error(c->req, LX_ERR_FEEDBACK_EXISTS, NULL, "request_id", NULL); break;
        case LX_FEEDBACK_UNAVAILABLE: lx_respond_error(c->req, LX_ERR_LEDGER_UNAVAILABLE, NULL, NULL, NULL); break;
        }
    }
    free(c);
}

/* The body's fields into f; false after answering 400. */
static bool read_body(lx_http_req *req, lx_usage_feedback *f)
{
    lx_slice body = lx_http_req_body(req);
    cJSON *root = cJSON_ParseWithLength(body.p, body.len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "request_id");
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(root, "score");
    const cJSON *comment = cJSON_GetObjectItemCaseSensitive(root, "comment");
    const char *bad = NULL, *param = NULL;
    if (!cJSON_IsObject(root))
        bad = "The body must be a JSON object: {\"request_id\": ID, \"score\": S, \"comment\": C}";
    else if (!cJSON_IsString(id) || id->valuestring[0] == '\0' || strlen(id->valuestring) >= sizeof f->request_id)
        bad = "request_id must be the X-Request-Id of an earlier answer", param = "request_id";
    else if (cJSON_IsBool(score))
        f->score = cJSON_IsTrue(score) ? 1 : -1;
    else if (cJSON_IsNumber(score) && isfinite(score->valuedouble) && fabs(score->valuedouble) <= 1)
        f->score = score->valuedouble;
    else
        bad = "score must be a number from -1 to 1, or a boolean", param = "score";
    if (bad == NULL && comment && !cJSON_IsNull(comment) &&
        (!cJSON_IsString(comment) || strlen(comment->valuestring) > LX_USAGE_COMMENT_MAX))
        bad = "comment must be a string of at most 2000 bytes", param = "comment";
    if (bad == NULL) {
        snprintf(f->request_id, sizeof f->request_id, "%s", id->valuestring);
        if (cJSON_IsString(comment)) snprintf(f->comment, sizeof f->comment, "%s", comment->valuestring);
    }
    cJSON_Delete(root);
    if (bad) lx_respond_error(req, LX_ERR_INVALID_FIELD, bad, param, NULL);
    return bad == NULL;
}

/* Who gives it: the admin token, else the caller's user: auth on, its client key's (lx_access_check answers 401
 * without one); off, X-User-Id, else anonymous (lx_auth_identify). False after answering. */
static bool read_caller(lx_api_ctx *ctx, lx_http_req *req, lx_usage_feedback *f)
{
    lx_access who;
    if (!lx_access_check(ctx, req, LX_ACCESS_CLIENT, &who)) return false;
    f->admin = who.admin;
    lx_auth_request ar = {0};
    ar.has_header_user = lx_http_req_header(req, "x-user-id", &ar.header_user);
    ar.has_authorization = lx_http_req_header(req, "authorization", &ar.authorization);
    lx_slice user = LX_SLICE_LIT("-");
    if (who.user)
        user = lx_slice_of(who.user);
    else if (!ctx->config(ctx->ud)->auth.enabled && lx_auth_identify(ctx->config(ctx->ud), &ar, &user) != LX_AUTH_OK)
        user = LX_SLICE_LIT("-");
    snprintf(f->user, sizeof f->user, "%.*s", (int)user.len, user.p);
    return true;
}

void lx_feedback_post(lx_api_ctx *ctx, lx_http_req *req)
{
    lx_usage_feedback f = {0};
    if (!read_caller(ctx, req, &f)) return;
    if (ctx->ledger == NULL) {
        lx_respond_error(req, LX_ERR_LEDGER_UNAVAILABLE,
                         "Feedback is stored in the usage ledger, which is off (usage.enabled: false).", NULL, NULL);
        return;
    }
    if (!read_body(req, &f)) return;
    call *c = lx_xcalloc(1, sizeof *c);
    c->req = req;
    c->experiments = ctx->experiments;
    c->score = f.score;
    lx_list_append(&calls, &c->link);
    lx_http_req_set_data(req, c);
    lx_usage_store_feedback(ctx->ledger, &f, on_stored, c);
}
