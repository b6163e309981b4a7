/*
 * Unit tests for the answers http/server.c gives by itself (limits, malformed HTTP): the status is the
 * server's; the body is the owner's render_error hook, or the message as plain text without one; the
 * gateway's hook (api/routes.c) gives the OpenAI envelope of the matching lx_err.
 * The server runs on a local loop and gets one end of a socketpair through lx_http_server_adopt.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/errors.h"
#include "api/routes.h"
#include "http/server.h"

static void on_request(lx_http_req *req, void *ud)
{
    (void)ud;
    lx_http_respond(req, 200, NULL, 0, "ok", 2);
}

static void on_abort(lx_http_req *req, void *ud)
{
    (void)req;
    (void)ud;
}

/* Sends input on a fresh connection and returns everything the server wrote back (free it). */
static char *exchange(lx_http_render_error render, size_t max_body, const char *input)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_http_server_opts o = {
        .host = "127.0.0.1",
        .port = 0,
        .max_connections = 4,
        .max_header_bytes = 4096,
        .max_body_bytes = max_body,
        .header_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .on_request = on_request,
        .on_abort = on_abort,
        .render_error = render,
    };
    lx_http_server *s;
    assert_int_equal(lx_http_server_start(&loop, &o, &s), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(lx_http_server_adopt(s, sv[0]), 0);
    assert_int_equal(write(sv[1], input, strlen(input)), (ssize_t)strlen(input));
    shutdown(sv[1], SHUT_WR);
    lx_buf out;
    lx_buf_init(&out, 0);
    for (int turns = 0; turns < 1000; turns++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        char b[4096];
        ssize_t n = recv(sv[1], b, sizeof b, MSG_DONTWAIT);
        if (n == 0) break;
        if (n > 0)
            lx_buf_append(&out, b, (size_t)n);
        else
            usleep(1000);
    }
    close(sv[1]);
    lx_http_server_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return lx_buf_steal(&out, NULL);
}

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static const char *body_of(const char *answer)
{
    const char *p = strstr(answer, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

static void test_no_hook_plain_text(void **state)
{
    (void)state;
    char *a = exchange(NULL, 1024, "NOT HTTP AT ALL\r\n\r\n");
    assert_true(starts_with(a, "HTTP/1.1 400 Bad Request\r\n"));
    assert_non_null(strstr(a, "Content-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(a, "Connection: close\r\n"));
    assert_true(starts_with(body_of(a), "malformed HTTP request: "));
    assert_null(strchr(a, '{'));
    free(a);
}

static void test_openai_hook_envelope(void **state)
{
    (void)state;
    char *a = exchange(lx_routes_render_error, 16, "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
    assert_true(starts_with(a, "HTTP/1.1 413 Payload Too Large\r\n"));
    assert_non_null(strstr(a, "Content-Type: application/json\r\n"));
    lx_buf want;
    lx_buf_init(&want, 0);
    lx_err_body(&want, LX_ERR_BODY_TOO_LARGE, "the request body is larger than server.max_body_bytes", NULL);
    assert_string_equal(body_of(a), want.p);
    lx_buf_free(&want);
    free(a);
}

/* Every HTTP-level error maps to the lx_err of the same status; a status that does not match is refused. */
static void test_render_each_error(void **state)
{
    (void)state;
    static const struct {
        lx_http_error what;
        int status;
        lx_err e;
    } rows[] = {
        {LX_HTTP_ERR_MALFORMED, 400, LX_ERR_BAD_REQUEST},
        {LX_HTTP_ERR_TIMEOUT, 408, LX_ERR_REQUEST_TIMEOUT},
        {LX_HTTP_ERR_BODY_TOO_LARGE, 413, LX_ERR_BODY_TOO_LARGE},
        {LX_HTTP_ERR_HEADER_TOO_LARGE, 431, LX_ERR_HEADER_TOO_LARGE},
        {LX_HTTP_ERR_TOO_MANY_CONNECTIONS, 503, LX_ERR_TOO_MANY_CONNECTIONS},
    };
    assert_int_equal(LX_HTTP_ERR_COUNT, sizeof rows / sizeof rows[0]);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        lx_buf got, want;
        lx_buf_init(&got, 0);
        lx_buf_init(&want, 0);
        assert_string_equal(lx_routes_render_error(rows[i].what, rows[i].status, "m", &got, NULL), "application/json");
        lx_err_body(&want, rows[i].e, "m", NULL);
        assert_string_equal(got.p, want.p);
        assert_null(lx_routes_render_error(rows[i].what, 500, "m", &got, NULL));
        lx_buf_free(&got);
        lx_buf_free(&want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_hook_plain_text),
        cmocka_unit_test(test_openai_hook_envelope),
        cmocka_unit_test(test_render_each_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
