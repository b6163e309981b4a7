/* Unit tests for api/body.c: scanning, validation, the spliced rewrite, find_member, usage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/body.h"

static lx_body_fields scan_ok(const char *json)
{
    lx_body_fields f;
    lx_body_error err;
    int rc = lx_body_scan(json, strlen(json), &f, &err);
    if (rc != 0) fail_msg("scan failed on %s: %s", json, err.message);
    return f;
}

static lx_body_error scan_fail(const char *json, size_t len)
{
    lx_body_fields f;
    lx_body_error err;
    if (lx_body_scan(json, len, &f, &err) == 0) fail_msg("scan accepted %.*s", (int)len, json);
    return err;
}

static bool slice_is(lx_slice s, const char *lit) { return lx_slice_eq(s, lit); }

/* Rewrites json with the options; returns a malloc'd string (checked to be a JSON object). */
static char *rewrite(const char *json, const char *set_model, bool force_usage, const char *priority)
{
    lx_body_fields f = scan_ok(json);
    lx_body_rewrite_opts o = {.set_model = set_model, .force_include_usage = force_usage, .priority = priority};
    lx_buf out;
    lx_buf_init(&out, 1 << 24);
    assert_int_equal(lx_body_rewrite(json, strlen(json), &f, &o, &out), 0);
    cJSON *check = cJSON_ParseWithLength(out.p, out.len);
    if (!cJSON_IsObject(check)) fail_msg("rewrite is not a JSON object: %s", out.p);
    cJSON_Delete(check);
    lx_body_fields again; /* and our own scanner agrees */
    lx_body_error err;
    assert_int_equal(lx_body_scan(out.p, out.len, &again, &err), 0);
    return lx_buf_steal(&out, NULL);
}

static void expect_rewrite(const char *json, const char *set_model, bool force_usage, const char *priority,
                           const char *want)
{
    char *got = rewrite(json, set_model, force_usage, priority);
    assert_string_equal(got, want);
    free(got);
}

/* ---- scanning ---------------------------------------------------------------------------- */

static void test_fields_found(void **state)
{
    (void)state;
    const char *j = "{\"model\":\"qwen3-32b\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],"
                    "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":100,"
                    "\"x_priority\":\"high\",\"x_user_id\":\"takahito\",\"x_timeout\":30,\"temperature\":0.7}";
    lx_body_fields f = scan_ok(j);
    assert_true(f.has_model);
    assert_true(slice_is(f.model, "qwen3-32b"));
    assert_true(f.stream);
    assert_true(f.has_stream_options);
    assert_true(f.include_usage);
    assert_true(slice_is((lx_slice){j + f.stream_options.start, f.stream_options.end - f.stream_options.start},
                         "\"stream_options\":{\"include_usage\":true}"));
    assert_int_equal(f.max_tokens, 100);
    assert_true(f.has_x_priority && slice_is(f.x_priority, "high"));
    assert_true(f.has_x_user_id && slice_is(f.x_user_id, "takahito"));
    assert_true(f.has_x_timeout);
    assert_true(f.x_timeout == 30.0);
    assert_int_equal(f.n_x, 3);
    assert_int_equal(f.n_members, 9);
    assert_ptr_equal(f.top.p, j);
    assert_int_equal(f.top.len, strlen(j));
    assert_true(slice_is((lx_slice){j + f.members_x[1].start, f.members_x[1].end - f.members_x[1].start},
                         "\"x_user_id\":\"takahito\""));
}

static void test_defaults(void **state)
{
    (void)state;
    lx_body_fields f = scan_ok("  {}\r\n\t ");
    assert_false(f.has_model);
    assert_int_equal(f.model.len, 0);
    assert_false(f.stream);
    assert_false(f.has_stream_options);
    assert_false(f.include_usage);
    assert_int_equal(f.stream_options.end, 0);
    assert_int_equal(f.max_tokens, -1);
    assert_false(f.has_x_priority || f.has_x_user_id || f.has_x_timeout);
    assert_true(f.x_timeout == 0);
    assert_int_equal(f.n_x, 0);
    assert_int_equal(f.n_members, 0);
    assert_true(slice_is(f.top, "{}"));
}

static void test_nulls_are_absent(void **state)
{
    (void)state;
    lx_body_fields f = scan_ok("{\"stream\":null,\"max_tokens\":null,\"stream_options\":null,"
                               "\"x_priority\":null,\"x_user_id\":null,\"x_timeout\":null}");
    assert_false(f.stream);
    assert_int_equal(f.max_tokens, -1);
    assert_false(f.has_stream_options);
    assert_int_not_equal(f.stream_options.end, 0); /* the null member is known, for the rewrite */
    assert_false(f.has_x_priority || f.has_x_user_id || f.has_x_timeout);
    assert_int_equal(f.n_x, 3); /* still removed */
}

static void test_other_values(void **state)
{
    (void)state;
    lx_body_fields f = scan_ok("{\"stream\":false,\"max_tokens\":0,\"x_timeout\":0.25,"
                               "\"stream_options\":{\"include_usage\":false,\"continuous_usage_stats\":true}}");
    assert_false(f.stream);
    assert_int_equal(f.max_tokens, 0);
    assert_true(f.x_timeout == 0.25);
    assert_true(f.has_stream_options);
    assert_false(f.include_usage);
    assert_false(f.no_fallback);
    f = scan_ok("{\"x_fallback\":false}");
    assert_true(f.no_fallback);
    assert_int_equal(f.n_x, 1); /* removed before the body goes on */
    assert_false(scan_ok("{\"x_fallback\":true}").no_fallback);
    assert_false(scan_ok("{\"x_fallback\":null}").no_fallback);
    f = scan_ok("{\"max_tokens\":9223372036854775000,\"x_timeout\":1e2}");
    assert_int_equal(f.max_tokens, 9223372036854775000L);
    assert_true(f.x_timeout == 100.0);
}

static void test_wrong_types(void **state)
{
    (void)state;
    const struct {
        const char *body;
        const char *param;
    } cases[] = {
        {"{\"model\":5}", "model"},
        {"{\"model\":null}", "model"},
        {"{\"model\":[\"a\"]}", "model"},
        {"{\"stream\":\"yes\"}", "stream"},
        {"{\"stream\":1}", "stream"},
        {"{\"max_tokens\":-1}", "max_tokens"},
        {"{\"max_tokens\":1.5}", "max_tokens"},
        {"{\"max_tokens\":\"x\"}", "max_tokens"},
        {"{\"max_tokens\":1e3}", "max_tokens"},
        {"{\"max_tokens\":99999999999999999999999}", "max_tokens"},
        {"{\"max_tokens\":true}", "max_tokens"},
        {"{\"x_timeout\":0}", "x_timeout"},
        {"{\"x_timeout\":\"x\"}", "x_timeout"},
        {"{\"x_timeout\":-1}", "x_timeout"},
        {"{\"x_timeout\":1e999}", "x_timeout"},
        {"{\"x_priority\":1}", "x_priority"},
        {"{\"x_user_id\":{}}", "x_user_id"},
        {"{\"x_fallback\":\"no\"}", "x_fallback"},
        {"{\"x_fallback\":0}", "x_fallback"},
        {"{\"stream_options\":\"x\"}", "stream_options"},
        {"{\"stream_options\":[]}", "stream_options"},
        {"{\"stream_options\":true}", "stream_options"},
        {"{\"stream_options\":{\"include_usage\":\"yes\"}}", "stream_options.include_usage"},
        {"{\"stream_options\":{\"include_usage\":1}}", "stream_options.include_usage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lx_body_error err = scan_fail(cases[i].body, strlen(cases[i].body));
        assert_int_equal(err.err, LX_ERR_INVALID_FIELD);
        assert_non_null(err.param);
        assert_string_equal(err.param, cases[i].param);
        assert_non_null(strstr(err.message, cases[i].param));
    }
}

static void x_members(char *body, size_t cap, int n)
{
    size_t len = (size_t)snprintf(body, cap, "{");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s\"x_f%d\":%d", i ? "," : "", i, i);
    snprintf(body + len, cap - len, "}");
}

static void test_too_many_x_fields(void **state)
{
    (void)state;
    char body[512];
    x_members(body, sizeof body, LX_BODY_MAX_XFIELDS + 1);
    lx_body_error err = scan_fail(body, strlen(body));
    assert_int_equal(err.err, LX_ERR_INVALID_FIELD);
    assert_null(err.param);
    x_members(body, sizeof body, LX_BODY_MAX_XFIELDS); /* the limit itself is fine */
    assert_int_equal(scan_ok(body).n_x, LX_BODY_MAX_XFIELDS);
    expect_rewrite(body, NULL, false, NULL, "{}");
}

static void test_invalid_json(void **state)
{
    (void)state;
    const char *cases[] = {
        "",
        " ",
        "[]",
        "\"s\"",
        "1",
        "null",
        "{",
        "}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{\"a\"::1}",
        "{\"a\":1,}",
        "{,\"a\":1}",
        "{\"a\":1 \"b\":2}",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{\"a\":1} 5",
        "{\"a\":[1 2]}",
        "{\"a\":[1,]}",
        "{\"a\":[,1]}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":nul}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":NaN}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":'s'}",
        "{a:1}",
        "{\"a\":[}",
        "{\"a\":{]}",
        "{\"a\":{\"b\":1]}",
        "{\"a\":\"unterminated}",
        "{\"a\":1}\x0b",
        "\xef\xbb\xbf{}",
        "{\"model\":5,", /* the JSON error wins over the field error */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lx_body_error err = scan_fail(cases[i], strlen(cases[i]));
        assert_int_equal(err.err, LX_ERR_INVALID_JSON);
        assert_null(err.param);
        assert_true(strlen(err.message) > 0);
    }
    const char nul_inside[] = "{\"a\":\"x\0y\"}", nul_after[] = "{\"a\":1}\0";
    assert_int_equal(scan_fail(nul_inside, sizeof nul_inside - 1).err, LX_ERR_INVALID_JSON);
    assert_int_equal(scan_fail(nul_after, sizeof nul_after - 1).err, LX_ERR_INVALID_JSON);
}

static void test_valid_oddities(void **state)
{
    (void)state;
    scan_ok("{\"a\":-0.5E-7,\"b\":0,\"c\":[[],{},[[{}]]],\"d\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\","
            "\"e\":true,\"f\":false,\"g\":null,\"\":\"empty "
            "key\",\"h\":\"\x7f\xc3\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80\"}");
    scan_ok("\n{ \"a\" : [ 1 , 2 ] , \"b\" : { \"c\" : \"d\" } }\n");
}

static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 200000; /* jsmn needs seconds for this; it must be rejected at once */
    char *b = malloc(2 * depth + 16);
    size_t n = 0;
    n += (size_t)snprintf(b, 16, "{\"a\":");
    memset(b + n, '[', depth);
    memset(b + n + depth, ']', depth);
    n += 2 * depth;
    b[n++] = '}';
    assert_int_equal(scan_fail(b, n).err, LX_ERR_INVALID_JSON);
    n = (size_t)snprintf(b, 16, "{\"a\":"); /* 500 levels are fine */
    memset(b + n, '[', 500);
    memset(b + n + 500, ']', 500);
    n += 1000;
    b[n++] = '}';
    b[n] = '\0';
    scan_ok(b);
    free(b);
}

static void test_truncated(void **state)
{
    (void)state;
    const char *j = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a \\\"b\\\" \\u00e9\"}],"
                    "\"stream\":true,\"max_tokens\":12,\"x_timeout\":1.5e1,\"n\":null,\"t\":false}";
    scan_ok(j);
    for (size_t n = 0; n < strlen(j); n++)
        assert_int_equal(scan_fail(j, n).err, LX_ERR_INVALID_JSON);
}

static void test_duplicate_keys_last_wins(void **state)
{
    (void)state;
    lx_body_fields f = scan_ok("{\"model\":\"a\",\"stream\":true,\"model\":\"b\",\"stream\":false}");
    assert_true(slice_is(f.model, "b"));
    assert_false(f.stream);
}

static void test_escaped_keys(void **state)
{
    (void)state;
    /* The backend unescapes keys, so must we: "mod\u0065l" is model, "\u0078_user_id" is x_user_id. */
    const char *j = "{\"mod\\u0065l\":\"m\",\"\\u0078_user_id\":\"u\",\"x\\u005fz\":1,\"\\u00e9x_\":2}";
    lx_body_fields f = scan_ok(j);
    assert_true(f.has_model && slice_is(f.model, "m"));
    assert_true(f.has_x_user_id && slice_is(f.x_user_id, "u"));
    assert_int_equal(f.n_x, 2);
    expect_rewrite(j, NULL, false, NULL, "{\"mod\\u0065l\":\"m\",\"\\u00e9x_\":2}");
}

static void test_strings_do_not_confuse(void **state)
{
    (void)state;
    const char *j = "{\"content\":\"say \\\"x_a\\\":1, \\\"model\\\":\\\"z\\\"}, {\",\"x_a\":1,"
                    "\"note\":\"\\\\\",\"x_b\":\"}\"}";
    lx_body_fields f = scan_ok(j);
    assert_false(f.has_model);
    assert_int_equal(f.n_x, 2);
    assert_int_equal(f.n_members, 4);
    expect_rewrite(j, NULL, false, NULL,
                   "{\"content\":\"say \\\"x_a\\\":1, \\\"model\\\":\\\"z\\\"}, {\",\"note\":\"\\\\\"}");
}

static void test_unicode(void **state)
{
    (void)state;
    const char *j = "{\"model\":\"mod\xc3\xa8le-\xe6\x97\xa5\xe6\x9c\xac\",\"x_user_id\":\"\xe3\x81\x82\\u3042\","
                    "\"messages\":[{\"content\":\"\xf0\x9f\x98\x80 \\ud83d\\ude00\"}]}";
    lx_body_fields f = scan_ok(j);
    assert_true(slice_is(f.model, "mod\xc3\xa8le-\xe6\x97\xa5\xe6\x9c\xac"));
    assert_true(slice_is(f.x_user_id, "\xe3\x81\x82\\u3042")); /* escapes left as they are */
    expect_rewrite(j, NULL, false, NULL,
                   "{\"model\":\"mod\xc3\xa8le-\xe6\x97\xa5\xe6\x9c\xac\","
                   "\"messages\":[{\"content\":\"\xf0\x9f\x98\x80 \\ud83d\\ude00\"}]}");
}

/* Ill-formed UTF-8 anywhere in a string (a value, a key, deep inside) is invalid_json: the backend could
 * not decode it. The SWAR path and the byte loop both see it (before and after an 8-byte block). */
static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xff",             /* never in UTF-8 */
        "caf\xe9",          /* Latin-1 */
        "\x80",             /* a continuation byte alone */
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong, 3 bytes */
        "\xf0\x80\x80\xaf", /* overlong, 4 bytes */
        "\xed\xa0\x80",     /* U+D800, a surrogate */
        "\xed\xbf\xbf",     /* U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* past the range */
        "\xe3\x81",         /* cut short by the closing quote */
        "\xe3\x81"
        "a",            /* a third byte that is not a continuation */
        "\xf0\x9f\x98", /* 4-byte sequence cut short */
        "\xc3\xa9\xc3", /* a good one, then a cut one */
    };
    char body[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *shapes[] = {"{\"a\":\"%s\"}", "{\"a\":\"0123456789abcdef%s0123456789\"}", "{\"%s\":1}",
                                "{\"a\":[{\"b\":\"%s\"}]}", "{\"model\":\"%s\"}"};
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            int n = snprintf(body, sizeof body, shapes[k], bad[i]);
            lx_body_error err = scan_fail(body, (size_t)n);
            assert_int_equal(err.err, LX_ERR_INVALID_JSON);
        }
    }
    /* the boundaries of each range are accepted */
    scan_ok("{\"a\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}");
    scan_ok("{\"a\":\"0123456789abcdef\xe6\x97\xa5\xe6\x9c\xac"
            "0123456789abcdef\xf0\x9f\x98\x80\"}");
}

/* messages: only whether it is there and an array (the proxy requires one for chat completions). */
static void test_messages_kind(void **state)
{
    (void)state;
    lx_body_fields f = scan_ok("{\"model\":\"m\"}");
    assert_false(f.has_messages);
    assert_false(f.messages_is_array);
    f = scan_ok("{\"messages\":null}");
    assert_false(f.has_messages);
    assert_false(f.messages_is_array);
    f = scan_ok("{\"messages\":\"x\"}");
    assert_true(f.has_messages);
    assert_false(f.messages_is_array);
    f = scan_ok("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert_true(f.has_messages);
    assert_true(f.messages_is_array);
    f = scan_ok("{\"messages\":[],\"messages\":{}}"); /* the last one wins, as everywhere */
    assert_false(f.messages_is_array);
}

static void test_nested_x_kept(void **state)
{
    (void)state;
    const char *j = "{\"model\":\"m\",\"metadata\":{\"x_a\":1},\"messages\":[{\"role\":\"user\",\"x_b\":2}],"
                    "\"tools\":[{\"function\":{\"parameters\":{\"x_c\":{\"type\":\"string\"}}}}]}";
    lx_body_fields f = scan_ok(j);
    assert_int_equal(f.n_x, 0);
    lx_body_rewrite_opts o = {"m", false, NULL}; /* the model it names already */
    assert_true(lx_body_rewrite_is_noop(&f, &o));
    expect_rewrite(j, NULL, false, NULL, j);
}

/* ---- rewriting --------------------------------------------------------------------------- */

static void test_x_removal_positions(void **state)
{
    (void)state;
    expect_rewrite("{\"x_a\":1,\"b\":2,\"c\":3}", NULL, false, NULL, "{\"b\":2,\"c\":3}");
    expect_rewrite("{\"a\":1,\"x_b\":{\"k\":[1,2]},\"c\":3}", NULL, false, NULL, "{\"a\":1,\"c\":3}");
    expect_rewrite("{\"a\":1,\"b\":2,\"x_c\":\"z\"}", NULL, false, NULL, "{\"a\":1,\"b\":2}");
    expect_rewrite("{\"x_only\":true}", NULL, false, NULL, "{}");
    expect_rewrite("{\"x_a\":1,\"x_b\":2,\"m\":0,\"x_c\":3,\"x_d\":4}", NULL, false, NULL, "{\"m\":0}");
    expect_rewrite("{\"x_a\":1,\"b\":2,\"x_c\":3,\"d\":4,\"x_e\":5}", NULL, false, NULL, "{\"b\":2,\"d\":4}");
    expect_rewrite("{\"x\":1,\"x-a\":2,\"X_a\":3,\"_x\":4}", NULL, false, NULL,
                   "{\"x\":1,\"x-a\":2,\"X_a\":3,\"_x\":4}");
}

static void test_pretty_body(void **state)
{
    (void)state;
    const char *j =
        "{\n  \"x_priority\" : \"high\" ,\n  \"model\": \"m\",\n  \"messages\": [\n    {\"role\": \"user\"}\n"
        "  ],\n  \"x_user_id\": \"u\"\n}\n";
    expect_rewrite(j, NULL, false, NULL, "{\"model\": \"m\",\n  \"messages\": [\n    {\"role\": \"user\"}\n  ]}");
}

static void test_model_insertion(void **state)
{
    (void)state;
    expect_rewrite("{\"messages\":[]}", "qwen3-32b", false, NULL, "{\"model\":\"qwen3-32b\",\"messages\":[]}");
    expect_rewrite("{}", "a \"q\" \\ b\n", false, NULL, "{\"model\":\"a \\\"q\\\" \\\\ b\\n\"}");
    expect_rewrite("{\"x_a\":1}", "m", false, NULL, "{\"model\":\"m\"}");
    /* a model the backend knows by another name (an alias, upstream_name): the value is replaced in place */
    expect_rewrite("{\"model\":\"code\",\"n\":1}", "Org/Coder \"32B\"", false, NULL,
                   "{\"model\":\"Org/Coder \\\"32B\\\"\",\"n\":1}");
    expect_rewrite("{\"x_a\":1, \"model\" : \"code\",\"stream\":true}", "c", true, "2",
                   "{\"model\" : \"c\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"priority\":2}");
}

static void test_stream_options(void **state)
{
    (void)state;
    expect_rewrite("{\"stream\":true}", NULL, true, NULL,
                   "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    expect_rewrite("{\"stream\":true,\"stream_options\":null,\"n\":1}", NULL, true, NULL,
                   "{\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1}");
    expect_rewrite("{\"stream_options\":{\"include_usage\":false,\"continuous_usage_stats\":true},\"stream\":true}",
                   NULL, true, NULL,
                   "{\"stream_options\":{\"include_usage\":true,\"continuous_usage_stats\":true},\"stream\":true}");
    expect_rewrite("{\"stream\":true,\"stream_options\":{ \"continuous_usage_stats\" : true }}", NULL, true, NULL,
                   "{\"stream\":true,\"stream_options\":{ \"continuous_usage_stats\" : true ,\"include_usage\":true}}");
    expect_rewrite("{\"stream_options\":{ },\"stream\":true}", NULL, true, NULL,
                   "{\"stream_options\":{ \"include_usage\":true},\"stream\":true}");
    expect_rewrite("{\"stream\":true,\"stream_options\":{\"include_usage\":null}}", NULL, true, NULL,
                   "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    expect_rewrite("{\"x_a\":1,\"stream_options\":{\"include_usage\":false},\"x_b\":2,\"stream\":true}", NULL, true,
                   NULL, "{\"stream_options\":{\"include_usage\":true},\"stream\":true}");
    /* not a stream: stream_options is left alone whatever is asked (vLLM rejects it without stream:true) */
    const char *nostream[] = {"{\"a\":1}", "{\"stream\":false}", "{\"stream\":null,\"stream_options\":null}",
                              "{\"stream_options\":{\"include_usage\":false}}"};
    for (size_t i = 0; i < sizeof nostream / sizeof nostream[0]; i++) {
        lx_body_fields nf = scan_ok(nostream[i]);
        lx_body_rewrite_opts force = {NULL, true, NULL};
        assert_true(lx_body_rewrite_is_noop(&nf, &force));
        expect_rewrite(nostream[i], NULL, true, NULL, nostream[i]);
    }
    /* already true: untouched, and nothing to do at all */
    const char *j = "{\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":false,\"include_usage\":true}}";
    lx_body_fields f = scan_ok(j);
    lx_body_rewrite_opts o = {NULL, true, NULL};
    assert_true(lx_body_rewrite_is_noop(&f, &o));
    expect_rewrite(j, NULL, true, NULL, j);
    /* not forced: a false stays false */
    expect_rewrite("{\"stream_options\":{\"include_usage\":false}}", NULL, false, NULL,
                   "{\"stream_options\":{\"include_usage\":false}}");
}

/* A priority for a body that has none is appended, after every other edit. */
static void test_priority_appended(void **state)
{
    (void)state;
    expect_rewrite("{\"a\":1}", NULL, false, "-5", "{\"a\":1,\"priority\":-5}");
    expect_rewrite("{}", NULL, false, "1", "{\"priority\":1}");
    expect_rewrite("{\"x_priority\":\"high\",\"stream\":true}", "m", true, "1",
                   "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"priority\":1}");
    expect_rewrite("{\"a\":1}", NULL, false, "", "{\"a\":1}");
}

/* Rewrites json with o.priority set (forward_priority); returns a malloc'd string. */
static char *rewrite_priority(const char *json, const char *priority)
{
    lx_body_fields f = scan_ok(json);
    lx_body_rewrite_opts o = {.priority = priority};
    lx_buf out;
    lx_buf_init(&out, 1 << 24);
    assert_false(lx_body_rewrite_is_noop(&f, &o));
    assert_int_equal(lx_body_rewrite(json, strlen(json), &f, &o, &out), 0);
    return lx_buf_steal(&out, NULL);
}

/* How many top-level members of the object json are named key. */
static int count_members(const char *json, const char *key)
{
    cJSON *root = cJSON_Parse(json);
    assert_true(cJSON_IsObject(root));
    int n = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        n += strcmp(c->string, key) == 0;
    cJSON_Delete(root);
    return n;
}

static void expect_priority(const char *json, const char *priority, const char *want)
{
    char *got = rewrite_priority(json, priority);
    assert_string_equal(got, want);
    assert_true(count_members(got, "priority") >= 1);
    lx_body_fields g = scan_ok(got); /* the last priority, the one the backend reads, is ours */
    assert_int_equal(g.priority.end - g.priority.start, strlen(priority));
    assert_memory_equal(got + g.priority.start, priority, strlen(priority));
    free(got);
}

static void test_priority(void **state)
{
    (void)state;
    /* absent: appended */
    expect_priority("{\"a\":1}", "-5", "{\"a\":1,\"priority\":-5}");
    expect_priority("{}", "1", "{\"priority\":1}");
    /* the client's value is replaced in place: one priority key, never two */
    expect_priority("{\"priority\":7,\"a\":1}", "-5", "{\"priority\":-5,\"a\":1}");
    expect_priority("{\"a\":1, \"priority\" : \"high\" }", "0", "{\"a\":1, \"priority\" : 0}");
    expect_priority("{\"priority\":{\"x\":[1,2]}}", "2", "{\"priority\":2}");
    expect_priority("{\"priorit\\u0079\":null}", "3", "{\"priorit\\u0079\":3}"); /* read as the backend reads it */
    char *one = rewrite_priority("{\"model\":\"m\",\"priority\":1,\"messages\":[]}", "-1");
    assert_int_equal(count_members(one, "priority"), 1);
    free(one);
    /* a priority nested deeper is not the top-level one */
    expect_priority("{\"messages\":[{\"priority\":1}]}", "4", "{\"messages\":[{\"priority\":1}],\"priority\":4}");
    /* a repeated key: the last one (the one the backend reads) takes the value, no key is added */
    expect_priority("{\"priority\":1,\"priority\":2}", "9", "{\"priority\":1,\"priority\":9}");
    /* with the other edits: x_* removed, model inserted, include_usage forced, in one copy */
    const char *j =
        "{\"x_priority\":\"high\",\"priority\":3,\"stream\":true,\"stream_options\":{},\"x_user_id\":\"u\"}";
    lx_body_fields f = scan_ok(j);
    lx_body_rewrite_opts o = {.set_model = "m", .force_include_usage = true, .priority = "-2"};
    lx_buf out;
    lx_buf_init(&out, 0);
    assert_int_equal(lx_body_rewrite(j, strlen(j), &f, &o, &out), 0);
    assert_string_equal(
        out.p, "{\"model\":\"m\",\"priority\":-2,\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    lx_buf_free(&out);
    /* the patches in the other order: stream_options before priority */
    j = "{\"stream\":true,\"stream_options\":{\"include_usage\":false},\"priority\":null}";
    f = scan_ok(j);
    o = (lx_body_rewrite_opts){.force_include_usage = true, .priority = "1"};
    lx_buf_init(&out, 0);
    assert_int_equal(lx_body_rewrite(j, strlen(j), &f, &o, &out), 0);
    assert_string_equal(out.p, "{\"stream\":true,\"stream_options\":{\"include_usage\":true},\"priority\":1}");
    lx_buf_free(&out);
    /* an empty value means none */
    lx_body_fields plain = scan_ok("{\"priority\":1}");
    lx_body_rewrite_opts empty = {.priority = ""};
    assert_true(lx_body_rewrite_is_noop(&plain, &empty));
}

static void test_is_noop(void **state)
{
    (void)state;
    lx_body_fields plain = scan_ok("{\"model\":\"m\",\"stream\":true}");
    lx_body_fields nomodel = scan_ok("{\"messages\":[]}");
    lx_body_fields withx = scan_ok("{\"model\":\"m\",\"x_user_id\":\"u\"}");
    lx_body_rewrite_opts none = {NULL, false, NULL}, model = {"m", false, NULL}, usage = {NULL, true, NULL},
                         priority = {NULL, false, "1"}, empty_priority = {NULL, false, ""};
    assert_true(lx_body_rewrite_is_noop(&plain, &none));
    assert_true(lx_body_rewrite_is_noop(&plain, &model)); /* has a model already */
    assert_true(lx_body_rewrite_is_noop(&plain, &empty_priority));
    assert_false(lx_body_rewrite_is_noop(&plain, &usage));
    assert_false(lx_body_rewrite_is_noop(&plain, &priority));
    assert_true(lx_body_rewrite_is_noop(&nomodel, &none));
    assert_false(lx_body_rewrite_is_noop(&nomodel, &model));
    assert_false(lx_body_rewrite_is_noop(&withx, &none));
}

static void test_rewrite_cap(void **state)
{
    (void)state;
    const char *j =
        "{\"model\":\"m\",\"x_a\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"stream\":true}";
    lx_body_fields f = scan_ok(j);
    lx_body_rewrite_opts o = {NULL, true, "1"};
    lx_buf out;
    lx_buf_init(&out, 48);
    assert_int_equal(lx_buf_append_str(&out, "kept"), 0);
    assert_int_equal(lx_body_rewrite(j, strlen(j), &f, &o, &out), -1);
    assert_int_equal(out.len, 4);
    assert_string_equal(out.p, "kept");
    lx_buf_free(&out);
}

/* The rewrite means the same as the original minus the x_* members plus the insertions. */
static void test_rewrite_semantics(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"model\":\"m\",\"x_priority\":\"low\",\"messages\":[{\"role\":\"system\",\"content\":\"be \\\"brief\\\"\"},"
        "{\"role\":\"user\",\"content\":\"hi\",\"x_nested\":1}],\"x_timeout\":5,\"temperature\":0.2,\"x_user_id\":"
        "\"u\"}",
        " { \"messages\" : [ ] , \"x_q\" : [ { \"x_r\" : null } ] , \"stream\" : true } ",
        "{\"stream_options\":{\"continuous_usage_stats\":true,\"include_usage\":false},\"x_a\":{},\"stream\":true}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char *got = rewrite(bodies[i], "inserted", true, "3");
        cJSON *want = cJSON_Parse(bodies[i]), *have = cJSON_Parse(got);
        for (cJSON *it = want->child; it;) {
            cJSON *next = it->next;
            if (strncmp(it->string, "x_", 2) == 0) cJSON_Delete(cJSON_DetachItemViaPointer(want, it));
            it = next;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(want, "model");
        cJSON_AddStringToObject(want, "model", "inserted"); /* inserted, or replacing the client's */
        bool stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(want, "stream"));
        cJSON *so = cJSON_GetObjectItemCaseSensitive(want, "stream_options");
        if (stream && !so) so = cJSON_AddObjectToObject(want, "stream_options");
        if (stream) cJSON_DeleteItemFromObjectCaseSensitive(so, "include_usage");
        if (stream) cJSON_AddTrueToObject(so, "include_usage");
        cJSON_AddNumberToObject(want, "priority", 3);
        assert_true(cJSON_Compare(want, have, true));
        cJSON_Delete(want);
        cJSON_Delete(have);
        free(got);
    }
}

/* ---- find_member and usage --------------------------------------------------------------- */

static void test_find_member(void **state)
{
    (void)state;
    const char *j = "{\"id\":\"c1\",\"choices\":[{\"usage\":1}],\"usage\":{\"prompt_tokens\":12},\"n\":null,"
                    "\"s\":\"a\\\"b\"}";
    lx_slice v;
    assert_true(lx_json_find_member(j, strlen(j), "usage", &v));
    assert_true(slice_is(v, "{\"prompt_tokens\":12}"));
    assert_true(lx_json_find_member(j, strlen(j), "s", &v));
    assert_true(slice_is(v, "\"a\\\"b\""));
    assert_true(lx_json_find_member(j, strlen(j), "n", &v));
    assert_true(slice_is(v, "null"));
    assert_true(lx_json_find_member(j, strlen(j), "choices", &v));
    assert_true(slice_is(v, "[{\"usage\":1}]"));
    assert_false(lx_json_find_member(j, strlen(j), "prompt_tokens", &v)); /* nested: not top level */
    assert_false(lx_json_find_member(j, strlen(j), "missing", &v));
    assert_false(lx_json_find_member("[1]", 3, "usage", &v));
    assert_false(lx_json_find_member("{\"usage\":{}", 11, "usage", &v)); /* invalid */
    assert_false(lx_json_find_member("", 0, "usage", &v));
    assert_true(lx_json_find_member("{\"k\":1,\"k\":2}\n", 14, "k", &v));
    assert_true(slice_is(v, "2"));
}

/* The walk steps over what strings hold (brackets, quotes, backslashes) and reads escaped keys as the strict
 * scan does; text it cannot walk (a string or bracket left open, a bad escape in a key) finds nothing. */
#define FIND(json, key, v) lx_json_find_member(json, sizeof json - 1, key, v)
static void test_find_member_walk(void **state)
{
    (void)state;
    lx_slice v;
    assert_true(FIND("{\"a\":\"}]\\\\\",\"b\":[\"\\\"{\",{\"usage\":[]}],\"usage\":7}", "usage", &v));
    assert_true(slice_is(v, "7"));
    assert_true(FIND("{\"a\":\"}]\\\\\",\"b\":[\"\\\"{\",{\"usage\":[]}],\"usage\":7}", "b", &v));
    assert_true(slice_is(v, "[\"\\\"{\",{\"usage\":[]}]"));
    assert_true(FIND(" {\n \"us\\u0061ge\" : { \"x\" : 1 } ,\"t\":true }\n", "usage", &v));
    assert_true(slice_is(v, "{ \"x\" : 1 }"));
    assert_true(FIND("{\"t\":true,\"n\":-1.5e3}", "n", &v));
    assert_true(slice_is(v, "-1.5e3"));
    assert_false(FIND("{\"usage\":\"open}", "usage", &v));
    assert_false(FIND("{\"usage\":[1,2}", "usage", &v));
    assert_false(FIND("{\"us\\qage\":1}", "usage", &v));
    assert_false(FIND("{\"us\\u00\":1}", "usage", &v));
    assert_false(FIND("{\"usage\":}", "usage", &v));
    assert_false(FIND("{\"usage\" 1}", "usage", &v));
    assert_false(FIND("{\"usage\":1} x", "usage", &v));
}

static void test_usage_parse(void **state)
{
    (void)state;
    lx_usage u;
    const char *j =
        "{\"prompt_tokens\":12,\"total_tokens\":20,\"completion_tokens\":8,\"details\":{\"prompt_tokens\":99}}";
    assert_true(lx_usage_parse(j, strlen(j), &u));
    assert_int_equal(u.prompt_tokens, 12);
    assert_int_equal(u.completion_tokens, 8);
    assert_true(lx_usage_parse("{\"completion_tokens\":3}", 23, &u));
    assert_int_equal(u.prompt_tokens, -1);
    assert_int_equal(u.completion_tokens, 3);
    assert_true(lx_usage_parse("{\"prompt_tokens\":1.5,\"completion_tokens\":\"7\"}", 45, &u));
    assert_int_equal(u.prompt_tokens, -1);
    assert_int_equal(u.completion_tokens, -1);
    assert_false(lx_usage_parse("null", 4, &u));
    assert_false(lx_usage_parse("{\"prompt_tokens\":", 17, &u));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_found),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_nulls_are_absent),
        cmocka_unit_test(test_other_values),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_too_many_x_fields),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_valid_oddities),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_duplicate_keys_last_wins),
        cmocka_unit_test(test_escaped_keys),
        cmocka_unit_test(test_strings_do_not_confuse),
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_messages_kind),
        cmocka_unit_test(test_nested_x_kept),
        cmocka_unit_test(test_x_removal_positions),
        cmocka_unit_test(test_pretty_body),
        cmocka_unit_test(test_model_insertion),
        cmocka_unit_test(test_stream_options),
        cmocka_unit_test(test_priority_appended),
        cmocka_unit_test(test_priority),
        cmocka_unit_test(test_is_noop),
        cmocka_unit_test(test_rewrite_cap),
        cmocka_unit_test(test_rewrite_semantics),
        cmocka_unit_test(test_find_member),
        cmocka_unit_test(test_find_member_walk),
        cmocka_unit_test(test_usage_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
