/* Unit tests for api/errors.c: the error table, envelopes, and upstream error normalisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <string.h>

#include "api/errors.h"

static const struct {
    lx_err e;
    int status;
    const char *type;
    const char *code;
} expected[] = {
    {LX_ERR_INVALID_JSON, 400, "invalid_request_error", "invalid_json"},
    {LX_ERR_INVALID_FIELD, 400, "invalid_request_error", "invalid_value"},
    {LX_ERR_BAD_REQUEST, 400, "invalid_request_error", "bad_request"},
    {LX_ERR_NOT_FOUND, 404, "not_found_error", "not_found"},
    {LX_ERR_MODEL_NOT_FOUND, 404, "invalid_request_error", "model_not_found"},
    {LX_ERR_METHOD_NOT_ALLOWED, 405, "invalid_request_error", "method_not_allowed"},
    {LX_ERR_REQUEST_TIMEOUT, 408, "invalid_request_error", "request_timeout"},
    {LX_ERR_BODY_TOO_LARGE, 413, "invalid_request_error", "request_too_large"},
    {LX_ERR_HEADER_TOO_LARGE, 431, "invalid_request_error", "header_too_large"},
    {LX_ERR_INTERNAL, 500, "server_error", "internal_error"},
    {LX_ERR_UPSTREAM_UNAVAILABLE, 502, "server_error", "upstream_unavailable"},
    {LX_ERR_UPSTREAM_BAD_RESPONSE, 502, "server_error", "upstream_bad_response"},
    {LX_ERR_TOO_MANY_CONNECTIONS, 503, "server_error", "too_many_connections"},
    {LX_ERR_UPSTREAM_TIMEOUT, 504, "server_error", "upstream_timeout"},
    {LX_ERR_CONFIG_INVALID, 400, "invalid_request_error", "config_invalid"},
    {LX_ERR_ADMIN_UNAUTHORIZED, 401, "invalid_request_error", "invalid_admin_token"},
    {LX_ERR_ADMIN_FORBIDDEN, 403, "invalid_request_error", "admin_forbidden"},
    {LX_ERR_SHUTTING_DOWN, 503, "server_error", "shutting_down"},
    {LX_ERR_INVALID_API_KEY, 401, "invalid_request_error", "invalid_api_key"},
    {LX_ERR_RATE_LIMIT_REQUESTS, 429, "requests", "rate_limit_exceeded"},
    {LX_ERR_RATE_LIMIT_TOKENS, 429, "tokens", "rate_limit_exceeded"},
    {LX_ERR_QUEUE_FULL, 503, "server_error", "queue_full"},
    {LX_ERR_QUEUE_TIMEOUT, 504, "server_error", "queue_timeout"},
    {LX_ERR_NO_HEALTHY_BACKEND, 503, "server_error", "no_healthy_backend"},
    {LX_ERR_PERMISSION_DENIED, 403, "invalid_request_error", "permission_denied"},
    {LX_ERR_METRICS_UNAUTHORIZED, 401, "invalid_request_error", "invalid_metrics_token"},
    {LX_ERR_REQUEST_NOT_FOUND, 404, "invalid_request_error", "request_not_found"},
    {LX_ERR_FEEDBACK_EXISTS, 409, "invalid_request_error", "feedback_exists"},
    {LX_ERR_LEDGER_UNAVAILABLE, 503, "server_error", "ledger_unavailable"},
    {LX_ERR_MODEL_NOT_LOADED, 503, "server_error", "model_not_loaded"},
    {LX_ERR_MODEL_LOAD_FAILED, 503, "server_error", "model_load_failed"},
    {LX_ERR_LOAD_CONFLICT, 409, "invalid_request_error", "load_conflict"},
};

/* Parses an envelope and returns its "error" object (root in *root, to delete). */
static const cJSON *envelope(const char *text, cJSON **root)
{
    *root = cJSON_Parse(text);
    assert_non_null(*root);
    assert_int_equal(cJSON_GetArraySize(*root), 1);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(*root, "error");
    assert_true(cJSON_IsObject(err));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message")));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "type")));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(err, "param"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(err, "code"));
    return err;
}

static const char *str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static void test_table_complete(void **state)
{
    (void)state;
    assert_int_equal(sizeof expected / sizeof expected[0], LX_ERR_COUNT);
    for (size_t i = 0; i < LX_ERR_COUNT; i++) {
        const lx_err_info *info = lx_err_get(expected[i].e);
        assert_non_null(info);
        assert_int_equal(info->status, expected[i].status);
        assert_string_equal(info->type, expected[i].type);
        assert_string_equal(info->code, expected[i].code);
    }
}

static void test_codes_unique(void **state)
{
    (void)state;
    for (int a = 0; a < LX_ERR_COUNT; a++)
        for (int b = a + 1; b < LX_ERR_COUNT; b++) {
            const lx_err_info *x = lx_err_get((lx_err)a), *y = lx_err_get((lx_err)b);
            /* rate_limit_exceeded is OpenAI's one code for two types (requests, tokens) */
            if (strcmp(x->code, "rate_limit_exceeded") == 0 && strcmp(y->code, x->code) == 0)
                assert_string_not_equal(x->type, y->type);
            else
                assert_string_not_equal(x->code, y->code);
        }
}

static void test_out_of_range(void **state)
{
    (void)state;
    assert_ptr_equal(lx_err_get(LX_ERR_COUNT), lx_err_get(LX_ERR_INTERNAL));
    assert_ptr_equal(lx_err_get((lx_err)-1), lx_err_get(LX_ERR_INTERNAL));
}

static void test_every_body_is_json(void **state)
{
    (void)state;
    for (int e = 0; e < LX_ERR_COUNT; e++) {
        lx_buf b;
        lx_buf_init(&b, 4096);
        assert_int_equal(lx_err_body(&b, (lx_err)e, NULL, NULL), 0);
        cJSON *root;
        const cJSON *err = envelope(b.p, &root);
        assert_true(strlen(str(err, "message")) > 0); /* the table's default message */
        assert_string_equal(str(err, "type"), lx_err_get((lx_err)e)->type);
        assert_string_equal(str(err, "code"), lx_err_get((lx_err)e)->code);
        assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(err, "param")));
        cJSON_Delete(root);
        lx_buf_free(&b);
    }
}

static void test_message_and_param_escaped(void **state)
{
    (void)state;
    const char *msg = "bad \"model\" \\ name\nline\ttab \x01 caf\xc3\xa9 </script>";
    lx_buf b;
    lx_buf_init(&b, 4096);
    assert_int_equal(lx_buf_append_str(&b, "prefix|"), 0);
    assert_int_equal(lx_err_body(&b, LX_ERR_INVALID_FIELD, msg, "x_\"timeout"), 0);
    assert_memory_equal(b.p, "prefix|", 7); /* appends */
    cJSON *root;
    const cJSON *err = envelope(b.p + 7, &root);
    assert_string_equal(str(err, "message"), msg);
    assert_string_equal(str(err, "param"), "x_\"timeout");
    assert_string_equal(str(err, "code"), "invalid_value");
    cJSON_Delete(root);
    lx_buf_free(&b);
}

static void test_body_cap(void **state)
{
    (void)state;
    lx_buf b;
    lx_buf_init(&b, 40);
    assert_int_equal(lx_buf_append_str(&b, "keep"), 0);
    assert_int_equal(lx_err_body(&b, LX_ERR_INTERNAL, "a message that will not fit in forty bytes", NULL), -1);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.p, "keep");
    lx_buf_free(&b);
}

static int normalize(const char *body, int status, lx_buf *out)
{
    lx_buf_init(out, 1 << 16);
    return lx_err_normalize_upstream(body, body ? strlen(body) : 0, status, out);
}

static void test_flat_vllm_nested(void **state)
{
    (void)state;
    const char *flat = "{\"object\":\"error\",\"message\":\"This model's maximum context length is 2048 tokens. "
                       "\\\"x\\\"\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}";
    lx_buf out;
    assert_int_equal(normalize(flat, 400, &out), 1);
    cJSON *root;
    const cJSON *err = envelope(out.p, &root);
    assert_string_equal(str(err, "message"), "This model's maximum context length is 2048 tokens. \"x\"");
    assert_string_equal(str(err, "type"), "BadRequestError");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(err, "param")));
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(err, "code")->valueint, 400);
    cJSON_Delete(root);
    lx_buf_free(&out);
}

static void test_flat_with_param_and_string_code(void **state)
{
    (void)state;
    lx_buf out;
    assert_int_equal(normalize("{\"message\":\"m\",\"param\":\"temperature\",\"code\":\"bad\"}", 400, &out), 1);
    cJSON *root;
    const cJSON *err = envelope(out.p, &root);
    assert_string_equal(str(err, "param"), "temperature");
    assert_string_equal(str(err, "code"), "bad");
    assert_string_equal(str(err, "type"), "upstream_error");
    cJSON_Delete(root);
    lx_buf_free(&out);
}

/* Ill-formed UTF-8 from a backend never reaches the client: each bad byte becomes U+FFFD, good UTF-8 stays. */
static void test_ill_formed_utf8_replaced(void **state)
{
    (void)state;
    lx_buf out;
    assert_int_equal(normalize("{\"message\":\"a\xff b\xc3\xa9\",\"code\":\"c\xed\xa0\x80\"}", 400, &out), 1);
    cJSON *root;
    const cJSON *err = envelope(out.p, &root);
    assert_string_equal(str(err, "message"), "a\xef\xbf\xbd b\xc3\xa9");
    assert_string_equal(str(err, "code"), "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* a surrogate: 3 bad bytes */
    cJSON_Delete(root);
    lx_buf_free(&out);
}

static void test_nested_passes_through(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"error\":{\"message\":\"The model `foo` does not exist.\",\"type\":\"NotFoundError\",\"param\":null,"
        "\"code\":404}}",
        "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}",
        "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        lx_buf out;
        assert_int_equal(normalize(bodies[i], 404, &out), 0);
        assert_int_equal(out.len, 0);
        lx_buf_free(&out);
    }
}

static void test_garbage_generic(void **state)
{
    (void)state;
    const char *bodies[] = {"<html>502 Bad Gateway</html>",
                            "",
                            NULL,
                            "[1,2]",
                            "{\"object\":\"error\"}",
                            "{\"message\":",
                            "\"just a string\""};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        lx_buf out;
        assert_int_equal(normalize(bodies[i], 502, &out), 1);
        cJSON *root;
        const cJSON *err = envelope(out.p, &root);
        assert_string_equal(str(err, "type"), "upstream_error");
        assert_string_equal(str(err, "code"), "upstream_error");
        assert_non_null(strstr(str(err, "message"), "502"));
        cJSON_Delete(root);
        lx_buf_free(&out);
    }
}

static void test_string_messages_kept(void **state)
{
    (void)state;
    const struct {
        const char *body, *message;
    } cases[] = {
        {"{\"detail\":\"Not Found\"}", "Not Found"}, /* FastAPI */
        {"{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}",
         "model \"x\" not found, try pulling it first"}, /* Ollama */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lx_buf out;
        assert_int_equal(normalize(cases[i].body, 404, &out), 1);
        cJSON *root;
        const cJSON *err = envelope(out.p, &root);
        assert_string_equal(str(err, "message"), cases[i].message);
        assert_string_equal(str(err, "code"), "upstream_error");
        cJSON_Delete(root);
        lx_buf_free(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_complete),
        cmocka_unit_test(test_codes_unique),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_every_body_is_json),
        cmocka_unit_test(test_message_and_param_escaped),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_flat_vllm_nested),
        cmocka_unit_test(test_flat_with_param_and_string_code),
        cmocka_unit_test(test_nested_passes_through),
        cmocka_unit_test(test_garbage_generic),
        cmocka_unit_test(test_ill_formed_utf8_replaced),
        cmocka_unit_test(test_string_messages_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
