/*
 * The pieces the Ollama and llama.cpp kinds share (backends/openai_compat.c, declared in backends/kinds.h)
 * and what those kinds do with them: a JSON member cut out byte for byte, their error bodies read and
 * rebuilt as OpenAI's envelope, SSE data events, Ollama's zeroed completions usage cut, and llama.cpp's
 * timings moved onto the finish chunk when the usage chunk is to be dropped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/kinds.h"

static char *cut(const char *obj, const char *key, int *rc)
{
    static char out[512];
    lx_buf b;
    lx_buf_init(&b, 0);
    *rc = lx_json_cut_member(obj, strlen(obj), key, &b);
    snprintf(out, sizeof out, "%s", b.p ? b.p : "");
    lx_buf_free(&b);
    return out;
}

static void test_cut_member(void **state)
{
    (void)state;
    int rc;
    assert_string_equal(cut("{\"a\":1,\"usage\":{\"x\":[1,2]},\"b\":2}", "usage", &rc), "{\"a\":1,\"b\":2}");
    assert_int_equal(rc, 1);
    assert_string_equal(cut("{\"usage\":{} , \"b\":2}", "usage", &rc), "{ \"b\":2}");     /* first: its comma after */
    assert_string_equal(cut("{\"a\":1 , \"usage\" : null}", "usage", &rc), "{\"a\":1 }"); /* last: its comma before */
    assert_string_equal(cut("{\"usage\":1}", "usage", &rc), "{}");
    assert_string_equal(cut("{\"a\":\"usage\"}", "usage", &rc), ""); /* a value, not a member */
    assert_int_equal(rc, 0);
    assert_string_equal(cut("{\"us\\u0061ge\":1}", "usage", &rc), ""); /* escaped key: left alone */
    assert_int_equal(rc, 0);
    assert_string_equal(cut("[1]", "usage", &rc), "");
    assert_int_equal(rc, 0);
    assert_string_equal(cut("{\"a\":{\"usage\":1}}", "usage", &rc), ""); /* top level only */
}

static void test_error_read_and_envelope(void **state)
{
    (void)state;
    lx_backend_error e;
    const char *native = "{\"error\":\"model \\\"x\\\" not found\"}";
    assert_int_equal(lx_backend_error_read(native, strlen(native), &e), 1);
    assert_string_equal(e.message, "model \"x\" not found");
    assert_string_equal(e.type, "");
    const char *llama = "{\"error\":{\"code\":400,\"message\":\"too long\",\"type\":\"exceed_context_size_error\"}}";
    assert_int_equal(lx_backend_error_read(llama, strlen(llama), &e), 1);
    assert_string_equal(e.type, "exceed_context_size_error");
    assert_int_equal(lx_backend_error_read("{\"detail\":\"x\"}", 14, &e), 0);
    assert_int_equal(lx_backend_error_read("not json", 8, &e), 0);
    assert_int_equal(lx_backend_error_read(NULL, 0, &e), 0);

    lx_buf b;
    lx_buf_init(&b, 0);
    assert_int_equal(lx_backend_error_envelope(404, "model \"x\" not found", NULL, &b), 0);
    assert_string_equal(b.p, "{\"error\":{\"message\":\"model \\\"x\\\" not found\",\"type\":\"invalid_request_error\","
                             "\"param\":null,\"code\":\"model_not_found\"}}");
    lx_buf_reset(&b);
    assert_int_equal(lx_backend_error_envelope(503, "", NULL, &b), 0);
    assert_string_equal(b.p, "{\"error\":{\"message\":\"The backend answered HTTP 503.\",\"type\":\"server_error\","
                             "\"param\":null,\"code\":\"upstream_unavailable\"}}");
    lx_buf_reset(&b);
    assert_int_equal(lx_backend_error_envelope(400, "m", "context_length_exceeded", &b), 0);
    assert_non_null(strstr(b.p, "\"code\":\"context_length_exceeded\""));
    lx_buf_reset(&b);
    assert_int_equal(lx_backend_error_envelope(418, "m", NULL, &b), 0);
    assert_non_null(strstr(b.p, "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"upstream_error\""));
    lx_buf_free(&b);
}

static void test_sse_data(void **state)
{
    (void)state;
    lx_slice j;
    assert_true(lx_sse_data_json(lx_slice_of("data: {\"a\":1}"), &j));
    assert_int_equal(j.len, 7);
    assert_true(lx_sse_data_json(lx_slice_of("data:{}"), &j));
    assert_false(lx_sse_data_json(lx_slice_of("data: [DONE]"), &j));
    assert_false(lx_sse_data_json(lx_slice_of("event: x\ndata: {}"), &j));
    assert_false(lx_sse_data_json(lx_slice_of(": comment"), &j));
}

/* ---------- the kinds' answers and streams ---------- */

static lx_buf got;

static void collect(void *ud, const char *data, size_t len)
{
    (void)ud;
    lx_buf_append(&got, data, len);
}

static const char *run_stream(const lx_kind *k, bool include_usage, const char *upstream)
{
    lx_body_fields f = {.stream = true, .include_usage = include_usage};
    lx_kind_ctx ctx = {.ep = LX_EP_CHAT, .fields = &f};
    lx_kind_stream s;
    lx_buf_reset(&got);
    lx_kind_stream_init(&s, k, 1 << 16);
    size_t n = strlen(upstream), half = n / 2; /* in two pieces: events cut anywhere */
    assert_int_equal(lx_kind_stream_feed(&s, &ctx, upstream, half, collect, NULL), 0);
    assert_int_equal(lx_kind_stream_feed(&s, &ctx, upstream + half, n - half, collect, NULL), 0);
    assert_int_equal(lx_kind_stream_end(&s, &ctx, collect, NULL), 0);
    lx_kind_stream_free(&s);
    return got.p ? got.p : "";
}

#define FIN   "data: {\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}],\"id\":\"c\"}\n\n"
#define USAGE "data: {\"choices\":[],\"id\":\"c\",\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":3}"
#define TIM   "\"timings\":{\"cache_n\":0,\"predicted_ms\":1.5}"

static void test_llamacpp_stream_timings(void **state)
{
    (void)state;
    const lx_kind *k = lx_kind_get(LX_BACKEND_LLAMACPP);
    const char *token = "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n";
    char up[1024];
    snprintf(up, sizeof up, "%s" FIN USAGE "," TIM "}\n\ndata: [DONE]\n\n", token);
    /* usage asked for: every byte as it came */
    assert_string_equal(run_stream(k, true, up), up);
    /* not asked for: the timings on the finish chunk, the usage chunk without them (the relay drops it) */
    char want[1024];
    snprintf(want, sizeof want,
             "%sdata: {\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}],\"id\":\"c\"," TIM
             "}\n\n" USAGE "}\n\ndata: [DONE]\n\n",
             token);
    assert_string_equal(run_stream(k, false, up), want);
    /* no usage chunk after the finish chunk: it goes out as it came, at the next event or at the end */
    assert_string_equal(run_stream(k, false, FIN "data: [DONE]\n\n"), FIN "data: [DONE]\n\n");
    assert_string_equal(run_stream(k, false, FIN), FIN);
}

static void test_ollama_stream_usage(void **state)
{
    (void)state;
    const lx_kind *k = lx_kind_get(LX_BACKEND_OLLAMA);
    const char *up = "data: {\"id\":\"c\",\"choices\":[{\"text\":\"a\",\"index\":0,\"finish_reason\":null}],"
                     "\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0,\"total_tokens\":0}}\n\n"
                     "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,"
                     "\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
    assert_string_equal(run_stream(k, true, up), up);
    assert_string_equal(run_stream(k, false, up),
                        "data: {\"id\":\"c\",\"choices\":[{\"text\":\"a\",\"index\":0,\"finish_reason\":null}]}\n\n"
                        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,"
                        "\"total_tokens\":4}}\n\ndata: [DONE]\n\n");
}

static const char *answer(const lx_kind *k, int status, const char *body)
{
    static char out[512];
    lx_body_fields f = {0};
    lx_kind_ctx ctx = {.ep = LX_EP_CHAT, .fields = &f};
    lx_buf b;
    lx_buf_init(&b, 0);
    int rc = k->answer(&ctx, status, lx_slice_of(body), &b);
    snprintf(out, sizeof out, "%s", rc == 1 && b.p ? b.p : "(as it came)");
    lx_buf_free(&b);
    return out;
}

static void test_kind_answers(void **state)
{
    (void)state;
    const lx_kind *ol = lx_kind_get(LX_BACKEND_OLLAMA), *lc = lx_kind_get(LX_BACKEND_LLAMACPP);
    assert_string_equal(ol->health_path, "/api/version");
    assert_string_equal(lc->health_path, "/health");
    assert_string_equal(answer(ol, 200, "{\"id\":\"x\"}"), "(as it came)");
    assert_string_equal(answer(ol, 403, "{\"error\":\"ollama cloud is disabled\"}"),
                        "{\"error\":{\"message\":\"ollama cloud is disabled\",\"type\":\"invalid_request_error\","
                        "\"param\":null,\"code\":\"permission_denied\"}}");
    assert_string_equal(
        answer(ol, 404,
               "{\"error\":{\"message\":\"model 'm' not found\",\"type\":\"not_found_error\",\"param\":null,"
               "\"code\":null}}"),
        "{\"error\":{\"message\":\"model 'm' not found\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":"
        "\"model_not_found\"}}");
    assert_string_equal(answer(lc, 503,
                               "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":"
                               "\"unavailable_error\"}}"),
                        "{\"error\":{\"message\":\"Loading model\",\"type\":\"server_error\",\"param\":null,\"code\":"
                        "\"upstream_unavailable\"}}");
    assert_non_null(strstr(answer(lc, 400,
                                  "{\"error\":{\"code\":400,\"message\":\"m\",\"type\":"
                                  "\"exceed_context_size_error\"}}"),
                           "\"code\":\"context_length_exceeded\""));
    assert_non_null(strstr(answer(lc, 500, "oops"), "upstream_error")); /* not JSON: the shared rules */
}

/* A load or unload answer that says the state wanted holds already counts as done; other refusals do not. */
static void test_control_done(void **state)
{
    (void)state;
    const lx_kind *v = lx_kind_get((lx_backend_kind)lx_kind_find("vllm"));
    const lx_kind *l = lx_kind_get((lx_backend_kind)lx_kind_find("llamacpp"));
    assert_true(v->control_done(200, LX_SLICE_LIT(""), false));
    assert_true(
        v->control_done(400, LX_SLICE_LIT("{\"message\":\"The lora adapter 'x' has already been loaded.\"}"), false));
    assert_false(v->control_done(400, LX_SLICE_LIT("{\"message\":\"CUDA out of memory\"}"), false));
    assert_true(v->control_done(404, LX_SLICE_LIT("cannot be found"), true));
    assert_false(v->control_done(404, LX_SLICE_LIT("not found"), false));
    assert_true(l->control_done(400, LX_SLICE_LIT("{\"error\":{\"message\":\"model is already running\"}}"), false));
    assert_true(l->control_done(400, LX_SLICE_LIT("{\"error\":{\"message\":\"model is not running\"}}"), true));
    assert_false(l->control_done(400, LX_SLICE_LIT("{\"error\":{\"message\":\"model is not running\"}}"), false));
    assert_false(l->control_done(404, LX_SLICE_LIT("model is not found"), false));
    assert_null(lx_kind_get((lx_backend_kind)lx_kind_find("ollama"))->control_done); /* a 2xx, always */
}

int main(void)
{
    lx_buf_init(&got, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_member),
        cmocka_unit_test(test_error_read_and_envelope),
        cmocka_unit_test(test_sse_data),
        cmocka_unit_test(test_llamacpp_stream_timings),
        cmocka_unit_test(test_ollama_stream_usage),
        cmocka_unit_test(test_kind_answers),
        cmocka_unit_test(test_control_done),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    lx_buf_free(&got);
    return rc;
}
