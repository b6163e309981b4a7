/* Unit tests for api/sse.c: framing at every split, usage reading and stripping, [DONE], errors, caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/sse.h"

#define CHUNK_HEAD                                                                                                     \
    "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"m\","

/* A real vLLM chat stream (wire-formats.md §1), with its usage-only chunk. */
static const char *ev_role = "data: " CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                             "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
static const char *ev_hi = "data: " CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \\\"usage\\\": "
                           "caf\xc3\xa9\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
static const char *ev_stop = "data: " CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},"
                             "\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}]}\n\n";
static const char *ev_usage = "data: " CHUNK_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":12,"
                              "\"total_tokens\":20,\"completion_tokens\":8}}\n\n";
static const char *ev_done = "data: [DONE]\n\n";

typedef struct {
    lx_buf out;
    size_t calls;
    const char *in_lo, *in_hi; /* the caller's input, to tell copies from pass-through */
    size_t from_input;
} sink;

static void collect(void *ud, const char *data, size_t len)
{
    sink *k = ud;
    assert_true(len > 0);
    k->calls++;
    if (data >= k->in_lo && data + len <= k->in_hi) k->from_input++;
    assert_int_equal(lx_buf_append(&k->out, data, len), 0);
}

static void sink_init(sink *k)
{
    memset(k, 0, sizeof *k);
    lx_buf_init(&k->out, 0);
}

static char *concat(const char *parts[], size_t n)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++)
        lx_buf_append_str(&b, parts[i]);
    return lx_buf_steal(&b, NULL);
}

/* "\n" → "\r\n" */
static char *crlf(const char *s)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    for (; *s; s++)
        lx_buf_append(&b, *s == '\n' ? "\r\n" : s, *s == '\n' ? 2 : 1);
    return lx_buf_steal(&b, NULL);
}

/* Feeds in at the given cut points (sorted, within [0, len]); returns the scanner for inspection. */
static void run(lx_sse *s, bool strip, const char *in, size_t len, const size_t *cuts, size_t ncuts, sink *k)
{
    lx_sse_init(s, strip, 1 << 20);
    sink_init(k);
    k->in_lo = in;
    k->in_hi = in + len;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        assert_int_equal(lx_sse_feed(s, in + at, to - at, collect, k), 0);
        at = to;
    }
    lx_sse_finish(s, collect, k);
}

static void expect_output(const sink *k, const char *want)
{
    assert_int_equal(k->out.len, strlen(want));
    assert_memory_equal(k->out.p, want, k->out.len);
}

static void check_stream_stats(const lx_sse *s, size_t events)
{
    assert_true(s->saw_usage);
    assert_int_equal(s->usage.prompt_tokens, 12);
    assert_int_equal(s->usage.completion_tokens, 8);
    assert_true(s->saw_done);
    assert_false(s->saw_error);
    assert_int_equal(s->events, events);
}

/* Every split in two, byte by byte, and random splits give the same output and the same counts. */
static void check_all_splits(const char *in, const char *want_strip)
{
    size_t len = strlen(in);
    lx_sse s;
    sink k;
    for (int strip = 0; strip <= 1; strip++) {
        const char *want = strip ? want_strip : in;
        for (size_t cut = 0; cut <= len; cut++) {
            run(&s, strip, in, len, &cut, 1, &k);
            expect_output(&k, want);
            check_stream_stats(&s, 5);
            lx_sse_free(&s);
            lx_buf_free(&k.out);
        }
        size_t *cuts = malloc(len * sizeof *cuts);
        for (size_t i = 0; i < len; i++)
            cuts[i] = i;
        run(&s, strip, in, len, cuts, len, &k);
        expect_output(&k, want);
        check_stream_stats(&s, 5);
        lx_sse_free(&s);
        lx_buf_free(&k.out);
        srand(42);
        for (int round = 0; round < 300; round++) {
            size_t n = 0;
            for (size_t i = 1; i < len; i++)
                if (rand() % 40 == 0) cuts[n++] = i;
            run(&s, strip, in, len, cuts, n, &k);
            expect_output(&k, want);
            check_stream_stats(&s, 5);
            lx_sse_free(&s);
            lx_buf_free(&k.out);
        }
        free(cuts);
    }
}

static void test_whole_stream_one_emit(void **state)
{
    (void)state;
    const char *parts[] = {ev_role, ev_hi, ev_stop, ev_usage, ev_done};
    char *in = concat(parts, 5);
    lx_sse s;
    sink k;
    run(&s, false, in, strlen(in), NULL, 0, &k);
    expect_output(&k, in);
    assert_int_equal(k.calls, 1);
    assert_int_equal(k.from_input, 1); /* straight from the input, not copied */
    check_stream_stats(&s, 5);
    lx_sse_free(&s);
    lx_buf_free(&k.out);
    free(in);
}

static void test_strip_usage_chunk(void **state)
{
    (void)state;
    const char *parts[] = {ev_role, ev_hi, ev_stop, ev_usage, ev_done};
    const char *kept[] = {ev_role, ev_hi, ev_stop, ev_done};
    char *in = concat(parts, 5), *want = concat(kept, 4);
    lx_sse s;
    sink k;
    run(&s, true, in, strlen(in), NULL, 0, &k);
    expect_output(&k, want);
    assert_int_equal(k.calls, 2); /* the runs before and after the dropped chunk */
    assert_int_equal(k.from_input, 2);
    check_stream_stats(&s, 5); /* still counted */
    lx_sse_free(&s);
    lx_buf_free(&k.out);
    free(in);
    free(want);
}

static void test_every_split_lf(void **state)
{
    (void)state;
    const char *parts[] = {ev_role, ev_hi, ev_stop, ev_usage, ev_done};
    const char *kept[] = {ev_role, ev_hi, ev_stop, ev_done};
    char *in = concat(parts, 5), *want = concat(kept, 4);
    check_all_splits(in, want);
    free(in);
    free(want);
}

static void test_every_split_crlf(void **state)
{
    (void)state;
    const char *parts[] = {ev_role, ev_hi, ev_stop, ev_usage, ev_done};
    const char *kept[] = {ev_role, ev_hi, ev_stop, ev_done};
    char *lf = concat(parts, 5), *lf_want = concat(kept, 4);
    char *in = crlf(lf), *want = crlf(lf_want);
    check_all_splits(in, want);
    free(lf);
    free(lf_want);
    free(in);
    free(want);
}

static void test_mixed_line_ends(void **state)
{
    (void)state;
    const char *in = "data: {\"a\":1}\n\r\ndata: {\"b\":2}\r\n\n: keep-alive\r\n\r\n"
                     "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\n\r\n"
                     "data: [DONE]\n\n";
    const char *want = "data: {\"a\":1}\n\r\ndata: {\"b\":2}\r\n\n: keep-alive\r\n\r\ndata: [DONE]\n\n";
    size_t len = strlen(in);
    for (size_t cut = 0; cut <= len; cut++) {
        lx_sse s;
        sink k;
        run(&s, true, in, len, &cut, 1, &k);
        expect_output(&k, want);
        assert_int_equal(s.events, 4); /* the comment-only event is not a data event */
        assert_int_equal(s.usage.completion_tokens, 2);
        assert_true(s.saw_done);
        lx_sse_free(&s);
        lx_buf_free(&k.out);
    }
}

static void test_lone_cr_is_not_a_line_end(void **state)
{
    (void)state;
    const char *in = "data: {\"a\":\"x\"}\r\r\rdata: [DONE]\n\n";
    lx_sse s;
    sink k;
    run(&s, false, in, strlen(in), NULL, 0, &k);
    expect_output(&k, in);
    assert_int_equal(s.events, 1);
    assert_false(s.saw_done); /* one event whose data is not [DONE] */
    lx_sse_free(&s);
    lx_buf_free(&k.out);
}

static void test_usage_on_last_content_chunk(void **state)
{
    (void)state;
    const char *last = "data: " CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},"
                       "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":4,"
                       "\"total_tokens\":34}}\n\n";
    const char *parts[] = {ev_role, ev_hi, last, ev_done};
    char *in = concat(parts, 4);
    lx_sse s;
    sink k;
    run(&s, true, in, strlen(in), NULL, 0, &k);
    expect_output(&k, in); /* counted, not stripped */
    assert_true(s.saw_usage);
    assert_int_equal(s.usage.prompt_tokens, 30);
    assert_int_equal(s.usage.completion_tokens, 4);
    lx_sse_free(&s);
    lx_buf_free(&k.out);
    free(in);
}

static void test_continuous_usage_last_wins(void **state)
{
    (void)state;
    lx_buf in;
    lx_buf_init(&in, 0);
    for (int i = 1; i <= 5; i++)
        lx_buf_printf(&in,
                      "data: " CHUNK_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d\"}}],"
                      "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
                      i, i, 7 + i);
    lx_buf_append_str(&in, "data: " CHUNK_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":7,"
                           "\"completion_tokens\":5,\"total_tokens\":12}}\n\n");
    lx_buf_append_str(&in, "data: " CHUNK_HEAD "\"choices\":[],\"usage\":null}\n\n"); /* OpenAI style */
    lx_buf_append_str(&in, ev_done);
    lx_sse s;
    sink k;
    size_t cut = in.len / 2;
    run(&s, false, in.p, in.len, &cut, 1, &k);
    expect_output(&k, in.p);
    assert_int_equal(s.usage.prompt_tokens, 7);
    assert_int_equal(s.usage.completion_tokens, 5);
    assert_int_equal(s.events, 8);
    lx_sse_free(&s);
    lx_buf_free(&k.out);
    lx_buf_free(&in);
}

static void test_usage_word_in_content(void **state)
{
    (void)state;
    lx_sse s;
    sink k;
    run(&s, true, ev_hi, strlen(ev_hi), NULL, 0, &k);
    expect_output(&k, ev_hi);
    assert_false(s.saw_usage);
    assert_int_equal(s.usage.prompt_tokens, -1);
    assert_int_equal(s.usage.completion_tokens, -1);
    lx_sse_free(&s);
    lx_buf_free(&k.out);
}

static void test_error_event(void **state)
{
    (void)state;
    const char *in = "data: {\"error\":{\"message\":\"engine died\",\"type\":\"InternalServerError\",\"code\":500}}\n\n"
                     "data: [DONE]\n\n";
    lx_sse s;
    sink k;
    run(&s, true, in, strlen(in), NULL, 0, &k);
    expect_output(&k, in);
    assert_true(s.saw_error);
    assert_true(s.saw_done);
    assert_false(s.saw_usage);
    lx_sse_free(&s);
    lx_buf_free(&k.out);

    const char *anthropic = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n";
    run(&s, false, anthropic, strlen(anthropic), NULL, 0, &k);
    assert_true(s.saw_error);
    assert_false(s.saw_done);
    lx_sse_free(&s);
    lx_buf_free(&k.out);

    const char *not_error = "data: {\"error\":null,\"choices\":[]}\n\ndata: {\"text\":\"\\\"error\\\"\"}\n\n";
    run(&s, false, not_error, strlen(not_error), NULL, 0, &k);
    assert_false(s.saw_error);
    lx_sse_free(&s);
    lx_buf_free(&k.out);
}

static void test_fields_and_comments_pass(void **state)
{
    (void)state;
    const char *in = ": ping\n\nevent: message\nid: 7\nretry: 100\ndata: {\"x\":1}\n\ndata:[DONE]\n\n";
    lx_sse s;
    sink k;
    run(&s, true, in, strlen(in), NULL, 0, &k);
    expect_output(&k, in);
    assert_int_equal(s.events, 2);
    assert_true(s.saw_done); /* "data:" without the space */
    lx_sse_free(&s);
    lx_buf_free(&k.out);
}

static void test_multiline_data(void **state)
{
    (void)state;
    const char *in = "data: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n";
    lx_sse s;
    sink k;
    run(&s, true, in, strlen(in), NULL, 0, &k);
    assert_int_equal(k.out.len, 0); /* a usage-only chunk over two data lines */
    assert_int_equal(s.usage.prompt_tokens, 3);
    assert_int_equal(s.usage.completion_tokens, 4);
    assert_int_equal(s.events, 1);
    lx_sse_free(&s);
    lx_buf_free(&k.out);
}

static void test_max_event(void **state)
{
    (void)state;
    lx_sse s;
    sink k;
    sink_init(&k);
    lx_sse_init(&s, false, 64);
    char big[200];
    memset(big, 'a', sizeof big);
    memcpy(big, "data: ", 6);
    assert_int_equal(lx_sse_feed(&s, big, 60, collect, &k), 0); /* held: under the cap */
    assert_int_equal(lx_sse_feed(&s, big + 60, 10, collect, &k), -1);
    lx_sse_free(&s);

    lx_sse_init(&s, false, 64); /* a complete event of any size in one feed is never held */
    big[198] = '\n';
    big[199] = '\n';
    assert_int_equal(lx_sse_feed(&s, big, sizeof big, collect, &k), 0);
    assert_int_equal(k.out.len, sizeof big);
    assert_int_equal(lx_sse_feed(&s, big, 100, collect, &k), -1); /* an incomplete one is */
    lx_sse_free(&s);
    lx_buf_free(&k.out);
}

static void test_finish_flushes_tail(void **state)
{
    (void)state;
    const char *in = "data: {\"a\":1}\n\ndata: [DONE]";
    lx_sse s;
    sink k;
    run(&s, false, in, strlen(in), NULL, 0, &k);
    expect_output(&k, in);
    assert_int_equal(k.calls, 2);
    assert_true(s.saw_done);        /* read, though unterminated */
    assert_int_equal(s.events, 1);  /* but not a complete event */
    lx_sse_finish(&s, collect, &k); /* twice is harmless */
    assert_int_equal(k.calls, 2);
    lx_sse_free(&s);
    lx_buf_free(&k.out);

    const char *partial = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n";
    run(&s, true, partial, strlen(partial), NULL, 0, &k);
    expect_output(&k, partial); /* never dropped at the end: it is passed on as it came */
    lx_sse_free(&s);
    lx_buf_free(&k.out);
}

static void test_empty_feeds(void **state)
{
    (void)state;
    lx_sse s;
    sink k;
    sink_init(&k);
    lx_sse_init(&s, false, 1024);
    assert_int_equal(lx_sse_feed(&s, NULL, 0, collect, &k), 0);
    assert_int_equal(lx_sse_feed(&s, "\n", 1, collect, &k), 0); /* a stray blank line passes */
    lx_sse_finish(&s, collect, &k);
    assert_int_equal(k.calls, 1);
    assert_int_equal(s.events, 0);
    assert_int_equal(s.usage.prompt_tokens, -1);
    lx_sse_free(&s);
    lx_buf_free(&k.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_stream_one_emit),
        cmocka_unit_test(test_strip_usage_chunk),
        cmocka_unit_test(test_every_split_lf),
        cmocka_unit_test(test_every_split_crlf),
        cmocka_unit_test(test_mixed_line_ends),
        cmocka_unit_test(test_lone_cr_is_not_a_line_end),
        cmocka_unit_test(test_usage_on_last_content_chunk),
        cmocka_unit_test(test_continuous_usage_last_wins),
        cmocka_unit_test(test_usage_word_in_content),
        cmocka_unit_test(test_error_event),
        cmocka_unit_test(test_fields_and_comments_pass),
        cmocka_unit_test(test_multiline_data),
        cmocka_unit_test(test_max_event),
        cmocka_unit_test(test_finish_flushes_tail),
        cmocka_unit_test(test_empty_feeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
