/*
 * Unit tests for limits/tokens.c and the counts api/body.c gathers for it in its one scan: the
 * prompt-token estimate for English and Japanese (raw UTF-8 and \u escapes), escapes, emoji, top-level
 * max_completion_tokens / n, the reservation, the word-at-a-time path against a byte-by-byte
 * reference, and cut-off or invalid bodies (refused by the scan, read within their bounds).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/body.h"
#include "limits/tokens.h"

/* The estimate of a body the scan accepts (the proxy's path: lx_body_scan, then lx_tokens_estimate). */
static lx_token_estimate est_n(const char *body, size_t len)
{
    lx_body_fields f;
    lx_body_error err;
    lx_token_estimate e;
    assert_int_equal(lx_body_scan(body, len, &f, &err), 0);
    lx_tokens_estimate(&f.tokens, &e);
    return e;
}

static lx_token_estimate est(const char *body) { return est_n(body, strlen(body)); }

static void test_rule_exact(void **state)
{
    (void)state;
    /* strings: "a" (1) "bcd" (3) -> 4 ASCII; 1 object */
    lx_token_estimate e = est("{\"a\": \"bcd\", \"x\": 12.5, \"y\": [true, null]}");
    assert_int_equal(e.ascii_chars, 1 + 3 + 1 + 1);
    assert_int_equal(e.wide_chars, 0);
    assert_int_equal(e.objects, 1);
    assert_int_equal(e.prompt_tokens, 2 + 3 + 3); /* ceil(6/4) + 3 per object + 3 */
    assert_int_equal(e.max_completion_tokens, -1);
    assert_int_equal(e.n, 1);
}

static void test_english(void **state)
{
    (void)state;
    const char *text = "The quick brown fox jumps over the lazy dog. Rate limits keep a shared GPU fair for "
                       "everyone on the team, and token budgets stop one long answer from starving the rest.";
    char body[1024];
    snprintf(body, sizeof body,
             "{\"model\":\"qwen3-32b\",\"messages\":[{\"role\":\"system\",\"content\":\"You are helpful.\"},"
             "{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":100}",
             text);
    lx_token_estimate e = est(body);
    size_t n = strlen(text);
    assert_int_equal(e.wide_chars, 0);
    assert_int_equal(e.objects, 3);
    /* about a token per 4 characters of text: the message text alone is 44 tokens; keys, roles and the
     * model name add a few each, the three objects 9 and the reply 3 */
    assert_true(e.prompt_tokens >= (long)(n / 4));
    assert_true(e.prompt_tokens <= (long)(n / 4) + 40);
}

static void test_japanese_utf8(void **state)
{
    (void)state;
    /* 「こんにちは、世界。今日は良い天気ですね。」 20 characters, 3 bytes each */
    const char *text = "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\xe3\x80\x81\xe4\xb8\x96"
                       "\xe7\x95\x8c\xe3\x80\x82\xe4\xbb\x8a\xe6\x97\xa5\xe3\x81\xaf\xe8\x89\xaf\xe3\x81\x84"
                       "\xe5\xa4\xa9\xe6\xb0\x97\xe3\x81\xa7\xe3\x81\x99\xe3\x81\xad\xe3\x80\x82";
    assert_int_equal(strlen(text), 20 * 3);
    char body[512];
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}", text);
    lx_token_estimate e = est(body);
    assert_int_equal(e.wide_chars, 20);
    /* at least one token per CJK character, whatever the ASCII around it */
    assert_true(e.prompt_tokens >= 20);
    assert_int_equal(e.ascii_chars, strlen("messages") + strlen("role") + strlen("user") + strlen("content"));
    assert_int_equal(e.prompt_tokens, (long)((e.ascii_chars + 3) / 4) + 20 + 3 * 2 + 3);
}

static void test_japanese_escaped(void **state)
{
    (void)state;
    /* the same kind of text as Python's json.dumps writes it: \uXXXX, one code point each */
    lx_token_estimate raw = est("{\"c\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"}");
    lx_token_estimate esc = est("{\"c\":\"\\u65e5\\u672c\\u8a9e\"}");
    assert_int_equal(raw.wide_chars, 3);
    assert_int_equal(esc.wide_chars, 3);
    assert_int_equal(esc.ascii_chars, 1);
    assert_int_equal(raw.prompt_tokens, esc.prompt_tokens);
    /* a long Japanese prompt: never fewer tokens than characters */
    char body[40000];
    size_t off = (size_t)snprintf(body, sizeof body, "{\"prompt\":\"");
    for (int i = 0; i < 3000; i++) {
        memcpy(body + off, "\xe6\xbc\xa2", 3); /* 漢 */
        off += 3;
    }
    snprintf(body + off, sizeof body - off, "\"}");
    lx_token_estimate big = est(body);
    assert_int_equal(big.wide_chars, 3000);
    assert_true(big.prompt_tokens >= 3000);
}

static void test_escapes_and_emoji(void **state)
{
    (void)state;
    lx_token_estimate e = est("{\"k\":\"a\\nb\\\"c\\\\d\\u0041\"}");
    assert_int_equal(e.ascii_chars, 1 + 8); /* k; a \n b \" c \\ d A */
    assert_int_equal(e.wide_chars, 0);
    /* an emoji: 4 bytes raw, or a surrogate pair: two either way */
    assert_int_equal(est("{\"k\":\"\xf0\x9f\x98\x80\"}").wide_chars, 2);
    assert_int_equal(est("{\"k\":\"\\ud83d\\ude00\"}").wide_chars, 2);
    /* 2-byte code points (é, Cyrillic) count one each */
    assert_int_equal(est("{\"k\":\"caf\xc3\xa9 \xd0\xb4\"}").wide_chars, 2);
}

static void test_top_level_fields(void **state)
{
    (void)state;
    lx_token_estimate e = est("{\"messages\":[{\"n\":5,\"max_completion_tokens\":7}],\"max_completion_tokens\": 300,"
                              "\"n\":3,\"x\":{\"n\":9}}");
    assert_int_equal(e.max_completion_tokens, 300);
    assert_int_equal(e.n, 3);
    /* a string value that looks like a key does not count as one */
    e = est("{\"a\":\"n\",\"b\":[\"max_completion_tokens\",4]}");
    assert_int_equal(e.max_completion_tokens, -1);
    assert_int_equal(e.n, 1);
    /* not integers: ignored */
    e = est("{\"max_completion_tokens\":1.5,\"n\":-2}");
    assert_int_equal(e.max_completion_tokens, -1);
    assert_int_equal(e.n, 1);
    e = est("{\"n\":0,\"max_completion_tokens\":99999999999999999999999}");
    assert_int_equal(e.n, 1);
    assert_int_equal(e.max_completion_tokens, -1);
}

static void test_reserve(void **state)
{
    (void)state;
    lx_token_estimate e = {.prompt_tokens = 100, .max_completion_tokens = -1, .n = 1};
    assert_int_equal(lx_tokens_reserve(&e, 50, 2048, true), 150);
    assert_int_equal(lx_tokens_reserve(&e, -1, 2048, true), 2148);
    assert_int_equal(lx_tokens_reserve(&e, -1, 2048, false), 100); /* embeddings */
    e.max_completion_tokens = 10;
    assert_int_equal(lx_tokens_reserve(&e, -1, 2048, true), 110);
    assert_int_equal(lx_tokens_reserve(&e, 20, 2048, true), 120); /* max_tokens wins */
    e.n = 4;
    assert_int_equal(lx_tokens_reserve(&e, 20, 2048, true), 180);
    e.n = LONG_MAX / 4;
    assert_int_equal(lx_tokens_reserve(&e, 1000, 2048, true), LONG_MAX / 2); /* saturates */
}

/* The byte-by-byte rule, to check the word-at-a-time path against. */
static void reference(const unsigned char *s, size_t len, size_t *ascii, size_t *wide)
{
    bool in = false;
    *ascii = *wide = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (!in) {
            if (c == '"') in = true;
            continue;
        }
        if (c == '"') {
            in = false;
        } else if (c == '\\' && i + 1 < len) {
            (*ascii)++;
            i++;
        } else if (c < 0x80) {
            (*ascii)++;
        } else if (c >= 0xF0) {
            *wide += 2;
        } else if (c >= 0xC0) {
            (*wide)++;
        }
    }
}

static void test_fast_path_matches_reference(void **state)
{
    (void)state;
    static const char *pieces[] = {"a",   "Hello world ", "\xe3\x81\x82", "\xc3\xa9", "\xf0\x9f\x98\x80",
                                   "\\n", "\\\"",         "\\\\",         "x",        "0123456789abcdef"};
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char body[4096];
        size_t off = 0;
        body[off++] = '{';
        body[off++] = '"';
        body[off++] = 'k';
        body[off++] = '"';
        body[off++] = ':';
        body[off++] = '"';
        int n = (int)((seed = seed * 1103515245 + 12345) >> 16) % 60;
        for (int i = 0; i < n; i++) {
            const char *p = pieces[((seed = seed * 1103515245 + 12345) >> 16) % 10];
            size_t l = strlen(p);
            memcpy(body + off, p, l);
            off += l;
        }
        body[off++] = '"';
        body[off++] = '}';
        lx_token_estimate e = est_n(body, off);
        size_t a, w;
        reference((const unsigned char *)body, off, &a, &w);
        assert_int_equal(e.ascii_chars, a);
        assert_int_equal(e.wide_chars, w);
    }
}

static void test_cut_off_and_garbage(void **state)
{
    (void)state;
    /* the proxy never estimates a body the scan refused (it answers 400 first) */
    const char *bodies[] = {"",
                            "{",
                            "\"",
                            "{\"a\":\"unterminated",
                            "{\"a\":\"x\\",
                            "{\"a\":\"\\u12",
                            "}}}]]]",
                            "{\"n\":",
                            "{\"max_completion_tokens\":",
                            "\xff\xfe\xf0"};
    lx_body_fields f;
    lx_body_error err;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        assert_int_equal(lx_body_scan(bodies[i], strlen(bodies[i]), &f, &err), -1);
    /* no counts, no tokens but the reply's */
    lx_token_counts none = {.max_completion_tokens = -1, .n = 1};
    lx_token_estimate e;
    lx_tokens_estimate(&none, &e);
    assert_int_equal(e.prompt_tokens, 3);
    /* an empty object: its own 3 and the reply's */
    assert_int_equal(est("{}").prompt_tokens, 3 + 3);
    /* a cut-off body is read up to its end and no further (ASan checks the bound) */
    char *heap = malloc(9);
    memcpy(heap, "{\"a\":\"abc", 9);
    assert_int_equal(lx_body_scan(heap, 9, &f, &err), -1);
    free(heap);
    /* counts out of range are not trusted: n below 1 reads as 1, a negative cap as absent */
    lx_token_counts odd = {.ascii_chars = 8, .max_completion_tokens = -7, .n = 0};
    lx_tokens_estimate(&odd, &e);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.max_completion_tokens, -1);
    assert_int_equal(e.prompt_tokens, 2 + 3);
}

static void test_counted_once(void **state)
{
    (void)state;
    /* stream_options is walked a second time by the scan to read include_usage: its strings count once */
    lx_token_estimate e = est("{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_int_equal(e.ascii_chars, strlen("stream") + strlen("stream_options") + strlen("include_usage"));
    assert_int_equal(e.objects, 2);
    /* escaped keys are read as the backend reads them */
    e = est("{\"\\u006e\":4,\"max_completion_token\\u0073\":9}");
    assert_int_equal(e.n, 4);
    assert_int_equal(e.max_completion_tokens, 9);
    /* of repeated keys, the last valid value counts */
    e = est("{\"n\":2,\"n\":5,\"n\":0,\"max_completion_tokens\":1,\"max_completion_tokens\":\"x\"}");
    assert_int_equal(e.n, 5);
    assert_int_equal(e.max_completion_tokens, 1);
    /* whitespace around a value, as the old reader allowed */
    e = est("{\"n\" :\t 3 , \"max_completion_tokens\":\n12}");
    assert_int_equal(e.n, 3);
    assert_int_equal(e.max_completion_tokens, 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_exact),
        cmocka_unit_test(test_english),
        cmocka_unit_test(test_japanese_utf8),
        cmocka_unit_test(test_japanese_escaped),
        cmocka_unit_test(test_escapes_and_emoji),
        cmocka_unit_test(test_top_level_fields),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_fast_path_matches_reference),
        cmocka_unit_test(test_cut_off_and_garbage),
        cmocka_unit_test(test_counted_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
