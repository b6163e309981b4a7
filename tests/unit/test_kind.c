/*
 * The backend seam (backends/kind.h), proven end to end with no change to the pipeline: a test kind is
 * registered that rewrites the path and speaks NDJSON instead of SSE; the real gateway (lx_gateway_start)
 * is configured with a backend of that kind in front of a fake backend (the project's own HTTP server on
 * 127.0.0.1), and a client (the upstream client) asks for a stream. The fake backend sees the rewritten
 * path; the client gets OpenAI SSE translated event by event, with the usage-only chunk dropped unless it
 * asked for usage. A request to Anthropic's /v1/messages reaches the same kind translated, with the client's
 * request as it came in ctx->front, and comes back as Anthropic's events. Also here: the framing of translated
 * streams, the kinds' table, the built-in kinds' model lists and the shared OpenAI request builder. Every wait
 * is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "backends/kind.h"
#include "gateway.h"
#include "http/client.h"
#include "http/server.h"
#include "utils/buf.h"
#include "utils/log.h"
#include "support.h"

/* ---------- the test kind: {"t": "text"} lines → chat chunks, {"in": N, "out": M} → usage ---------- */

typedef struct {
    int events;
} ndjson_state;

/* What the kind saw of the last request's Anthropic front (lx_kind_ctx.front), and the body it was given. */
static char seen_front[512], seen_version[64], seen_beta[64], seen_body[512];
static bool seen_has_front;

static int nd_request(const lx_kind_ctx *ctx, lx_kind_request *out, lx_kind_error *err)
{
    seen_has_front = ctx->front != NULL;
    snprintf(seen_body, sizeof seen_body, "%.*s", (int)ctx->body.len, ctx->body.p);
    if (ctx->front) {
        snprintf(seen_front, sizeof seen_front, "%.*s", (int)ctx->front->body.len, ctx->front->body.p);
        snprintf(seen_version, sizeof seen_version, "%.*s", (int)ctx->front->version.len, ctx->front->version.p);
        snprintf(seen_beta, sizeof seen_beta, "%.*s", (int)ctx->front->beta.len, ctx->front->beta.p);
    }
    if (ctx->ep == LX_EP_EMBEDDINGS) { /* what the backend cannot do is refused, never sent */
        err->err = LX_ERR_INVALID_FIELD;
        err->param = "model";
        snprintf(err->message, sizeof err->message, "backend %s has no embeddings", ctx->backend->name);
        return -1;
    }
    lx_kind_request_pathf(out, "/test/generate/%d", (int)ctx->ep);
    lx_kind_request_header(out, "Content-Type: application/json");
    out->body = ctx->body;
    return 0;
}

static int nd_event(void *state, const lx_kind_ctx *ctx, lx_slice ev, lx_buf *out)
{
    (void)ctx;
    ndjson_state *st = state;
    st->events++;
    char line[256], text[64];
    int in, outn;
    snprintf(line, sizeof line, "%.*s", (int)ev.len, ev.p); /* the event is not NUL-terminated */
    if (sscanf(line, "{\"t\": \"%63[^\"]\"}", text) == 1)
        lx_buf_printf(out, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"}}]}\n\n", text);
    else if (sscanf(line, "{\"in\": %d, \"out\": %d}", &in, &outn) == 2)
        lx_buf_printf(out, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d}}\n\n", in,
                      outn);
    else
        return -1;
    return 0;
}

static int nd_end(void *state, const lx_kind_ctx *ctx, lx_buf *out)
{
    (void)ctx;
    lx_buf_printf(out, "data: [DONE]\n\n");
    return ((ndjson_state *)state)->events > 0 ? 0 : -1;
}

static const lx_kind ndjson_kind = {
    .name = "ndjson-test",
    .request = nd_request,
    .stream_framing = LX_FRAME_LINES,
    .stream_state_size = sizeof(ndjson_state),
    .stream_event = nd_event,
    .stream_end = nd_end,
    .health_path = "/test/health",
};

/* ---------- the fake backend ---------- */

typedef struct {
    uv_loop_t loop;
    lx_http_server *backend;
    char seen_path[256];
    int requests;
    /* the client side */
    lx_http_client *client;
    int status;
    lx_buf got;
    bool done;
    lx_up_result result;
} fx;

static void backend_on_request(lx_http_req *req, void *ud)
{
    fx *f = ud;
    if (strcmp(lx_http_req_method(req), "GET") == 0) { /* the health check */
        lx_http_respond(req, 200, NULL, 0, "ok", 2);
        return;
    }
    f->requests++;
    lx_slice path = lx_http_req_path(req);
    snprintf(f->seen_path, sizeof f->seen_path, "%.*s", (int)path.len, path.p);
    static const lx_http_header h[] = {{"Content-Type", "application/x-ndjson"}};
    lx_http_stream_begin(req, 200, h, 1);
    /* one line cut across two writes, two in one, CRLF on one of them */
    static const char *const parts[] = {"{\"t\": \"Hel", "lo\"}\n{\"t\": \" world\"}\r\n",
                                        "\n{\"in\": 7, \"out\": 2}"}; /* the last line has no newline */
    for (size_t i = 0; i < LX_ARRAY_LEN(parts); i++)
        lx_http_stream_write(req, parts[i], strlen(parts[i]));
    lx_http_stream_end(req);
}

static void backend_on_abort(lx_http_req *req, void *ud) { (void)req, (void)ud; }

static void on_head(lx_upstream *u, const lx_up_head *h, void *ud)
{
    (void)u;
    ((fx *)ud)->status = h->status;
}

static bool on_data(lx_upstream *u, const char *data, size_t len, void *ud)
{
    (void)u;
    return lx_buf_append(&((fx *)ud)->got, data, len) == 0;
}

static void on_done(lx_upstream *u, lx_up_result r, const char *detail, void *ud)
{
    (void)u, (void)detail;
    fx *f = ud;
    f->result = r;
    f->done = true;
}

static const lx_upstream_cbs client_cbs = {on_head, on_data, on_done};

static int free_port(uv_loop_t *loop)
{
    uv_tcp_t t;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, &t);
    uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
    struct sockaddr_storage got;
    int len = sizeof got;
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

/* Runs the loop until the client's request is done, at most 5 s. */
static void run_until_done(fx *f)
{
    uint64_t until = lx_now_ns() + 5000000000ull;
    while (!f->done && lx_now_ns() < until)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->done);
}

static void ask_h(fx *f, int gw_port, lx_endpoint ep, const char *body, const char *const *headers)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", gw_port, lx_endpoint_path(ep));
    lx_upstream_req r = {
        .method = "POST", .url = url, .headers = headers, .body = body, .body_len = strlen(body), .timeout_ms = 5000};
    f->done = false;
    f->status = 0;
    lx_buf_reset(&f->got);
    lx_upstream_start(f->client, &r, &client_cbs, f);
    run_until_done(f);
}

static void ask(fx *f, int gw_port, lx_endpoint ep, const char *body)
{
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    ask_h(f, gw_port, ep, body, headers);
}

static void test_registered_kind_end_to_end(void **state)
{
    (void)state;
    int idx = lx_kind_register(&ndjson_kind);
    assert_true(idx >= LX_BACKEND_KIND_COUNT);
    assert_int_equal(lx_kind_find("ndjson-test"), idx);
    assert_int_equal(lx_kind_register(&ndjson_kind), -1); /* a name is taken once */

    static fx f;
    memset(&f, 0, sizeof f);
    lx_buf_init(&f.got, 0);
    uv_loop_init(&f.loop);
    lx_http_server_opts so = {.host = "127.0.0.1",
                              .port = 0,
                              .max_connections = 16,
                              .max_header_bytes = 16384,
                              .max_body_bytes = 1 << 20,
                              .header_timeout_ms = 5000,
                              .idle_timeout_ms = 5000,
                              .on_request = backend_on_request,
                              .on_abort = backend_on_abort,
                              .ud = &f};
    assert_int_equal(lx_http_server_start(&f.loop, &so, &f.backend), 0);
    int gw_port = free_port(&f.loop);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "server: {host: 127.0.0.1, port: %d}\n"
             "backends:\n  nd: {type: ndjson-test, url: 'http://127.0.0.1:%d', models: [m]}\n"
             "metrics: {enabled: false}\nusage: {enabled: false}\nlogging: {level: ERROR}\n",
             gw_port, lx_http_server_port(f.backend));
    lx_config *c = lx_test_config(yaml);
    lx_log_configure(LX_LOG_ERROR, false);
    static lx_gateway gw;
    assert_int_equal(lx_gateway_start(&gw, &f.loop, c), 0);
    f.client = lx_http_client_new(&f.loop);

    /* the client did not ask for usage: the usage-only chunk is read (and accounted) but not relayed */
    ask(&f, gw_port, LX_EP_CHAT,
        "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(f.result, LX_UP_OK);
    assert_int_equal(f.status, 200);
    assert_string_equal(f.seen_path, "/test/generate/0"); /* the kind's path, not /v1/chat/completions */
    assert_string_equal(f.got.p, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n"
                                 "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}}]}\n\n"
                                 "data: [DONE]\n\n");

    /* it asks for usage: the translated usage chunk reaches it */
    ask(&f, gw_port, LX_EP_CHAT,
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":"
        "\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(f.status, 200);
    assert_non_null(strstr(f.got.p, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}"));
    assert_int_equal(f.requests, 2);

    /* what the kind cannot express is answered with its error, and nothing reaches the backend */
    ask(&f, gw_port, LX_EP_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"hi\"}");
    assert_int_equal(f.status, 400);
    assert_non_null(strstr(f.got.p, "\"message\":\"backend nd has no embeddings\""));
    assert_non_null(strstr(f.got.p, "\"param\":\"model\",\"code\":\"invalid_value\""));
    assert_int_equal(f.requests, 2);
    assert_false(seen_has_front);

    /* Anthropic's /v1/messages through the same kind: the kind is given the OpenAI translation as its body and the
     * client's request as it came in ctx->front (body, anthropic-version, anthropic-beta), for a kind that speaks
     * the Messages API itself; the client gets Anthropic's events, translated from the kind's OpenAI ones */
    static const char *const ah[] = {"Content-Type: application/json", "anthropic-version: 2023-06-01",
                                     "anthropic-beta: fine-grained-tool-streaming-2025-05-14", NULL};
    static const char msg[] =
        "{\"model\":\"m\",\"max_tokens\":5,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    ask_h(&f, gw_port, LX_EP_MESSAGES, msg, ah);
    assert_int_equal(f.status, 200);
    assert_true(seen_has_front);
    assert_string_equal(seen_front, msg);
    assert_string_equal(seen_version, "2023-06-01");
    assert_string_equal(seen_beta, "fine-grained-tool-streaming-2025-05-14");
    assert_string_equal(seen_body, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                                   "\"max_tokens\":5,\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_non_null(strstr(f.got.p, "event: message_start\n"));
    assert_non_null(strstr(f.got.p, "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"));
    assert_non_null(strstr(f.got.p, "\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n"));
    assert_non_null(strstr(f.got.p, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_"
                                    "reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":7,"
                                    "\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}"
                                    "\n\n"));
    assert_null(strstr(f.got.p, "[DONE]"));
    assert_int_equal(f.requests, 3);

    lx_http_client_free(f.client);
    lx_gateway_stop(&gw);
    lx_http_server_close(f.backend);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    lx_buf_free(&f.got);
}

/* ---------- framing ---------- */

typedef struct {
    char seen[512];
} echo_state;

static int echo_event(void *state, const lx_kind_ctx *ctx, lx_slice ev, lx_buf *out)
{
    (void)ctx, (void)out;
    echo_state *st = state;
    size_t n = strlen(st->seen);
    snprintf(st->seen + n, sizeof st->seen - n, "[%.*s]", (int)ev.len, ev.p);
    return 0;
}

static void no_emit(void *ud, const char *data, size_t len) { (void)ud, (void)data, (void)len; }

static void test_framing(void **state)
{
    (void)state;
    lx_kind sse = {.name = "f-sse",
                   .request = nd_request,
                   .stream_framing = LX_FRAME_SSE,
                   .stream_state_size = sizeof(echo_state),
                   .stream_event = echo_event};
    lx_kind_stream s;
    lx_kind_stream_init(&s, &sse, 1024);
    const char *in = "event: a\ndata: 1\n\ndata: 2\r\n\r\n\ndata: 3\n\r\ndata: 4";
    for (const char *p = in; *p; p++) /* byte by byte: every cut */
        assert_int_equal(lx_kind_stream_feed(&s, NULL, p, 1, no_emit, NULL), 0);
    assert_int_equal(lx_kind_stream_end(&s, NULL, no_emit, NULL), 0);
    assert_string_equal(((echo_state *)s.state)->seen, "[event: a\ndata: 1][data: 2][data: 3][data: 4]");
    lx_kind_stream_free(&s);

    lx_kind lines = sse;
    lines.stream_framing = LX_FRAME_LINES;
    lx_kind_stream_init(&s, &lines, 8);
    assert_int_equal(lx_kind_stream_feed(&s, NULL, "a\r\n\nbc\nd", 8, no_emit, NULL), 0);
    assert_int_equal(lx_kind_stream_end(&s, NULL, no_emit, NULL), 0);
    assert_string_equal(((echo_state *)s.state)->seen, "[a][bc][d]");
    assert_int_equal(lx_kind_stream_feed(&s, NULL, "123456789", 9, no_emit, NULL), -1); /* over max_event */
    lx_kind_stream_free(&s);
}

/* ---------- the built-in kinds ---------- */

static void test_builtin_kinds(void **state)
{
    (void)state;
    static const char *const names[] = {"vllm", "ollama", "llamacpp", "openai", "anthropic"};
    static const char *const health[] = {"/health", "/api/version", "/health", "/v1/models", "/v1/models"};
    _Static_assert(LX_ARRAY_LEN(names) == LX_BACKEND_KIND_COUNT, "one name per built-in kind");
    for (int k = 0; k < LX_BACKEND_KIND_COUNT; k++) {
        assert_int_equal(lx_kind_find(names[k]), k);
        assert_string_equal(lx_backend_kind_name((lx_backend_kind)k), names[k]);
        assert_string_equal(lx_kind_get((lx_backend_kind)k)->health_path, health[k]);
        /* OpenAI's SSE passes through; Ollama and llama.cpp edit a few chunks (their usage, llama.cpp's timings);
         * Anthropic's events are translated */
        bool edits = k == LX_BACKEND_OLLAMA || k == LX_BACKEND_LLAMACPP || k == LX_BACKEND_ANTHROPIC;
        assert_true((lx_kind_get((lx_backend_kind)k)->stream_event != NULL) == edits);
    }
    assert_int_equal(lx_kind_find("nope"), -1);
    assert_string_equal(lx_backend_kind_name(LX_BACKEND_KIND_NONE), "unknown");

    lx_buf out;
    lx_buf_init(&out, 0);
    const char *models =
        "{\"object\":\"list\",\"data\":[{\"id\":\"qwen3-32b\"},{\"id\":\"\"},{\"x\":1},{\"id\":\"b\"}]}";
    assert_int_equal(lx_kind_get(LX_BACKEND_VLLM)->parse_models(models, strlen(models), &out), 0);
    assert_string_equal(out.p, "qwen3-32b\nb\n");
    lx_buf_reset(&out);
    const char *tags = "{\"models\":[{\"name\":\"llama3.2:latest\",\"size\":1},{\"name\":\"qwen2.5:7b\"}]}";
    assert_string_equal(lx_kind_get(LX_BACKEND_OLLAMA)->models_path, "/api/tags");
    assert_int_equal(lx_kind_get(LX_BACKEND_OLLAMA)->parse_models(tags, strlen(tags), &out), 0);
    assert_string_equal(out.p, "llama3.2:latest\nqwen2.5:7b\n");
    assert_int_equal(lx_kind_get(LX_BACKEND_OPENAI)->parse_models("[]", 2, &out), -1);
    assert_int_equal(lx_kind_get(LX_BACKEND_OPENAI)->parse_models("nope", 4, &out), -1);
    lx_buf_free(&out);
}

/* The shared OpenAI request: the client's bytes when nothing changes, one rewritten copy otherwise. */
static void test_openai_request(void **state)
{
    (void)state;
    lx_config *c =
        lx_test_config("backends:\n"
                       "  a: {type: vllm, url: 'http://127.0.0.1:9', models: [m], api_key: sk-1}\n"
                       "  b: {type: openai, url: 'http://127.0.0.1:9', models: [m], forward_priority: true}\n");
    const char *body = "{\"model\":\"m\",\"messages\":[]}";
    lx_body_fields f;
    lx_body_error err;
    assert_int_equal(lx_body_scan(body, strlen(body), &f, &err), 0);
    lx_kind_ctx ctx = {
        .ep = LX_EP_CHAT, .backend = &c->backends[0], .body = lx_slice_of(body), .fields = &f, .priority_value = 5};
    lx_kind_request r = {0};
    lx_kind_error err2 = {0};
    assert_int_equal(lx_kind_get(LX_BACKEND_VLLM)->request(&ctx, &r, &err2), 0);
    assert_string_equal(r.path, "/v1/chat/completions");
    assert_ptr_equal(r.body.p, body); /* nothing to change: the client's own bytes */
    assert_int_equal(r.n_headers, 2);
    assert_string_equal(r.headers[1], "Authorization: Bearer sk-1");
    assert_null(r.headers[2]);
    lx_kind_request_reset(&r);
    assert_int_equal(r.n_headers, 0);

    ctx.backend = &c->backends[1];
    ctx.ep = LX_EP_EMBEDDINGS;
    assert_int_equal(lx_kind_get(LX_BACKEND_OPENAI)->request(&ctx, &r, &err2), 0);
    assert_string_equal(r.path, "/v1/embeddings");
    assert_int_equal(r.n_headers, 1);
    assert_non_null(strstr(r.body.p, "\"priority\":5"));
    lx_kind_request_reset(&r);
    lx_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_kinds),
        cmocka_unit_test(test_openai_request),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_registered_kind_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
