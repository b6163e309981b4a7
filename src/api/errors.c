/*
 * Every error Lexora itself answers, in one table, and upstream error bodies brought to the OpenAI
 * envelope. See errors.h.
 *
 * Invariants:
 * - One row per lx_err, indexed by it (the count is checked at compile time, the rows' contents by
 *   test_errors); a row's code is part of the API and never changes meaning.
 * - Types follow OpenAI: every 4xx is "invalid_request_error" (also model_not_found, as OpenAI sends
 *   it) except a path that does not exist, "not_found_error"; every 5xx Lexora produces, its own
 *   or an upstream failure, is "server_error" (the type OpenAI uses for 5xx). "upstream_error" is
 *   only the type of a generic envelope made from an upstream body that had no readable message.
 *   429s are OpenAI's: type "requests" or "tokens", both with code "rate_limit_exceeded" (the one
 *   code two rows share; every other code is unique).
 * - Bodies are built by escaping every string into the buffer; on a full buffer the buffer is left
 *   as it was. cJSON is used only on upstream error bodies, which are small and off the hot path.
 */
#include "api/errors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "utils/common.h"

typedef struct {
    lx_err_info info;
    const char *message; /* used when the caller gives none */
} err_row;

#define BAD_REQ "invalid_request_error"
#define SERVER  "server_error"

static const err_row table[] = {
    [LX_ERR_INVALID_JSON] = {{400, BAD_REQ, "invalid_json"}, "The request body is not a valid JSON object."},
    [LX_ERR_INVALID_FIELD] = {{400, BAD_REQ, "invalid_value"}, "A field of the request has an invalid value."},
    [LX_ERR_BAD_REQUEST] = {{400, BAD_REQ, "bad_request"}, "The HTTP request is malformed."},
    [LX_ERR_NOT_FOUND] = {{404, "not_found_error", "not_found"}, "No such endpoint."},
    [LX_ERR_MODEL_NOT_FOUND] = {{404, BAD_REQ, "model_not_found"}, "The model does not exist."},
    [LX_ERR_METHOD_NOT_ALLOWED] = {{405, BAD_REQ, "method_not_allowed"}, "Method not allowed."},
    [LX_ERR_REQUEST_TIMEOUT] = {{408, BAD_REQ, "request_timeout"}, "The request did not arrive in time."},
    [LX_ERR_BODY_TOO_LARGE] = {{413, BAD_REQ, "request_too_large"}, "The request body is too large."},
    [LX_ERR_HEADER_TOO_LARGE] = {{431, BAD_REQ, "header_too_large"}, "The request headers are too large."},
    [LX_ERR_INTERNAL] = {{500, SERVER, "internal_error"}, "Internal error."},
    [LX_ERR_UPSTREAM_UNAVAILABLE] = {{502, SERVER, "upstream_unavailable"}, "The backend could not be reached."},
    [LX_ERR_UPSTREAM_BAD_RESPONSE] = {{502, SERVER, "upstream_bad_response"}, "The backend sent an invalid response."},
    [LX_ERR_TOO_MANY_CONNECTIONS] = {{503, SERVER, "too_many_connections"}, "Too many connections."},
    [LX_ERR_UPSTREAM_TIMEOUT] = {{504, SERVER, "upstream_timeout"}, "The backend did not answer in time."},
    [LX_ERR_CONFIG_INVALID] = {{400, BAD_REQ, "config_invalid"},
                               "The config file has problems; the running config stays."},
    [LX_ERR_ADMIN_UNAUTHORIZED] = {{401, BAD_REQ, "invalid_admin_token"},
                                   "Admin endpoints need Authorization: Bearer <admin token>."},
    [LX_ERR_ADMIN_FORBIDDEN] = {{403, BAD_REQ, "admin_forbidden"},
                                "No admin token is configured: admin endpoints answer only to loopback clients."},
    [LX_ERR_SHUTTING_DOWN] = {{503, SERVER, "shutting_down"}, "The gateway is shutting down."},
    [LX_ERR_INVALID_API_KEY] = {{401, BAD_REQ, "invalid_api_key"},
                                "Missing or unknown API key: send Authorization: Bearer <key>."},
    [LX_ERR_RATE_LIMIT_REQUESTS] = {{429, "requests", "rate_limit_exceeded"}, "Rate limit reached for requests."},
    [LX_ERR_RATE_LIMIT_TOKENS] = {{429, "tokens", "rate_limit_exceeded"}, "Rate limit reached for tokens."},
    [LX_ERR_QUEUE_FULL] = {{503, SERVER, "queue_full"}, "The request queue is full; try again later."},
    [LX_ERR_QUEUE_TIMEOUT] = {{504, SERVER, "queue_timeout"},
                              "The request waited in the queue longer than its timeout."},
    [LX_ERR_NO_HEALTHY_BACKEND] = {{503, SERVER, "no_healthy_backend"},
                                   "Every backend serving the model is down; try again later."},
    [LX_ERR_PERMISSION_DENIED] = {{403, BAD_REQ, "permission_denied"},
                                  "A client key sees its own usage only; this needs the admin token."},
    [LX_ERR_METRICS_UNAUTHORIZED] = {{401, BAD_REQ, "invalid_metrics_token"},
                                     "GET /metrics needs Authorization: Bearer <metrics token>."},
    [LX_ERR_REQUEST_NOT_FOUND] = {{404, BAD_REQ, "request_not_found"},
                                  "No request with that id is in the usage ledger."},
    [LX_ERR_FEEDBACK_EXISTS] = {{409, BAD_REQ, "feedback_exists"}, "That request has its feedback already."},
    [LX_ERR_LEDGER_UNAVAILABLE] = {{503, SERVER, "ledger_unavailable"},
                                   "The usage ledger cannot be read or written now; try again later."},
    [LX_ERR_MODEL_NOT_LOADED] = {{503, SERVER, "model_not_loaded"}, "The model is not loaded."},
    [LX_ERR_MODEL_LOAD_FAILED] = {{503, SERVER, "model_load_failed"}, "The model could not be loaded."},
    [LX_ERR_LOAD_CONFLICT] = {{409, BAD_REQ, "load_conflict"}, "The model is loading, unloading or in use."},
};

_Static_assert(LX_ARRAY_LEN(table) == LX_ERR_COUNT, "one row per lx_err");

const lx_err_info *lx_err_get(lx_err e) { return &table[(unsigned)e < LX_ERR_COUNT ? e : LX_ERR_INTERNAL].info; }

typedef struct {
    const char *text;
    bool raw; /* text is JSON already (null, a number); otherwise it is escaped into a string */
} part;

static int put_str(lx_buf *out, const char *s) { return lx_buf_append_str(out, s); }

static int put_part(lx_buf *out, part v)
{
    if (v.raw) return put_str(out, v.text);
    return put_str(out, "\"") || lx_buf_json_escape(out, v.text, strlen(v.text)) || put_str(out, "\"");
}

/* Appends {"error":{"message":...,"type":...,"param":...,"code":...}}, or leaves out as it was. */
static int put_envelope(lx_buf *out, const char *message, const char *type, part param, part code)
{
    size_t old = out->len;
    if (put_str(out, "{\"error\":{\"message\":") || put_part(out, (part){message, false}) ||
        put_str(out, ",\"type\":") || put_part(out, (part){type, false}) || put_str(out, ",\"param\":") ||
        put_part(out, param) || put_str(out, ",\"code\":") || put_part(out, code) || put_str(out, "}}")) {
        out->len = old;
        if (out->p) out->p[old] = '\0';
        return -1;
    }
    return 0;
}

int lx_err_body(lx_buf *out, lx_err e, const char *message, const char *param)
{
    const err_row *row = &table[(unsigned)e < LX_ERR_COUNT ? e : LX_ERR_INTERNAL];
    part p = param ? (part){param, false} : (part){"null", true};
    return put_envelope(out, message ? message : row->message, row->info.type, p, (part){row->info.code, false});
}

/* ---- upstream error bodies --------------------------------------------------------------- */

/* A member's value as JSON text (free with free()), or NULL when absent or not a string/number. A string
 * is escaped by lx_buf_json_escape, so ill-formed UTF-8 in it reaches the client as \ufffd. */
static char *raw_value(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v) && !cJSON_IsNumber(v)) return NULL;
    lx_buf b;
    lx_buf_init(&b, 0);
    if (cJSON_IsString(v)) {
        lx_buf_append(&b, "\"", 1);
        lx_buf_json_escape(&b, v->valuestring, strlen(v->valuestring));
        lx_buf_append(&b, "\"", 1);
    } else {
        char *num = cJSON_PrintUnformatted(v);
        lx_buf_append_str(&b, num);
        cJSON_free(num);
    }
    return lx_buf_steal(&b, NULL);
}

static part raw_part(const char *text) { return (part){text ? text : "null", true}; }

static int generic(lx_buf *out, const char *message, int status)
{
    lx_buf msg;
    lx_buf_init(&msg, 0);
    if (message)
        lx_buf_append_str(&msg, message);
    else
        lx_buf_printf(&msg, "The backend answered HTTP %d with an unreadable error.", status);
    int rc = put_envelope(out, msg.p ? msg.p : "", "upstream_error", raw_part(NULL), (part){"upstream_error", false});
    lx_buf_free(&msg);
    return rc < 0 ? -1 : 1;
}

/* {"object":"error","message":...,"type":...,"param":...,"code":...} → the same fields, nested. */
static int nest_flat(lx_buf *out, const cJSON *root, const char *message)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    char *param = raw_value(root, "param"), *code = raw_value(root, "code");
    int rc = put_envelope(out, message, cJSON_IsString(type) ? type->valuestring : "upstream_error", raw_part(param),
                          raw_part(code));
    free(param);
    free(code);
    return rc < 0 ? -1 : 1;
}

int lx_err_normalize_upstream(const char *body, size_t len, int status, lx_buf *out)
{
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    int rc;
    if (!cJSON_IsObject(root)) {
        rc = generic(out, NULL, status);
        goto done;
    }
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(root, "message");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(root, "detail");
    if (cJSON_IsObject(error))
        rc = 0;
    else if (cJSON_IsString(message))
        rc = nest_flat(out, root, message->valuestring);
    else if (cJSON_IsString(error))
        rc = generic(out, error->valuestring, status); /* Ollama native */
    else if (cJSON_IsString(detail))
        rc = generic(out, detail->valuestring, status); /* FastAPI */
    else
        rc = generic(out, NULL, status);
done:
    cJSON_Delete(root);
    return rc;
}
