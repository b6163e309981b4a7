/*
 * Unit tests for automatic routing: the prompt text reader (routing/prompt_text.c), each signal
 * (routing/signals.c), the classifier's file, features, prediction and training (routing/classifier*.c),
 * the decision with rules, x_route, routes and min_confidence (routing/analyzer.c), and routing.auto's
 * config checks (config_check.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "routing/analyzer.h"
#include "routing/classifier.h"
#include "routing/prompt_text.h"
#include "routing/signals.h"
#include "support.h"

static lx_prompt_text T;

static void read_text(const char *json) { lx_prompt_text_read(lx_slice_of(json), &T); }

static bool text_is(const char *want) { return T.len == strlen(want) && memcmp(T.text, want, T.len) == 0; }
static bool context_is(const char *want)
{
    return T.context_len == strlen(want) && memcmp(T.context, want, T.context_len) == 0;
}

/* ---- prompt text ---- */

static void test_text_last_user_and_context(void **state)
{
    (void)state;
    read_text("[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"first\"},"
              "{\"role\":\"assistant\",\"content\":\"an answer\"},{\"content\":\"second\",\"role\":\"user\"}]");
    assert_true(text_is("second"));
    assert_true(context_is("Be brief.\nan answer"));
    assert_int_equal(T.n_messages, 4);
    /* a single user message: no context */
    read_text("[{\"role\":\"user\",\"content\":\"only\"}]");
    assert_true(text_is("only"));
    assert_int_equal(T.context_len, 0);
}

static void test_text_unescapes_and_parts(void **state)
{
    (void)state;
    read_text("[{\"role\":\"user\",\"content\":\"a\\nb \\u53d6\\u5f15 \\ud83d\\ude00 \\\"q\\\"\"}]");
    assert_true(text_is("a\nb 取引 \xf0\x9f\x98\x80 \"q\""));
    read_text("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\"},{\"type\":\"image_url\","
              "\"image_url\":{\"url\":\"u\"}},{\"text\":\"two\",\"type\":\"text\"}]}]");
    assert_true(text_is("one\ntwo"));
    /* a completion prompt: a string, or a list of strings */
    read_text("\"plain prompt\"");
    assert_true(text_is("plain prompt"));
    read_text("[\"x\", \"y\"]");
    assert_true(text_is("x\ny"));
    read_text("[1, 2, 3]");
    assert_int_equal(T.len, 0);
}

static void test_text_bounds_and_garbage(void **state)
{
    (void)state;
    size_t n = LX_PROMPT_TEXT_MAX + 100;
    char *big = malloc(n * 3 + 64);
    strcpy(big, "[{\"role\":\"user\",\"content\":\"");
    size_t at = strlen(big);
    for (size_t i = 0; i < n; i++, at += 3)
        memcpy(big + at, "\xe3\x81\x82", 3); /* あ */
    strcpy(big + at, "\"}]");
    read_text(big);
    assert_true(T.cut);
    assert_true(T.len <= LX_PROMPT_TEXT_MAX && T.len % 3 == 0); /* cut at a character */
    free(big);
    /* broken JSON: what was read so far, never past the end */
    read_text("[{\"role\":\"user\",\"content\":\"unterminated");
    assert_int_equal(T.len, 0); /* a message that never ends is not read */
    read_text("[{\"role\":\"user\",\"content\":\"done\"},{\"role\":\"user\",\"content\":\"unterm");
    assert_true(text_is("done"));
    read_text("[{\"role\":");
    assert_int_equal(T.len, 0);
    read_text("");
    assert_int_equal(T.len, 0);
}

/* ---- signals ---- */

static lx_signals sig(const char *text)
{
    lx_signals s;
    lx_signals_compute(text, strlen(text), NULL, 0, &s);
    return s;
}

static void test_signal_japanese_share(void **state)
{
    (void)state;
    assert_float_equal(sig("こんにちは").v[LX_SIG_JA_SHARE], 1.0, 1e-6);
    assert_float_equal(sig("hello").v[LX_SIG_JA_SHARE], 0.0, 1e-6);
    assert_float_equal(sig("abcd漢字かな").v[LX_SIG_JA_SHARE], 0.5, 1e-6);
    assert_float_equal(sig("。、「」").v[LX_SIG_JA_SHARE], 0.0, 1e-6); /* punctuation is not script */
}

static void test_signal_code(void **state)
{
    (void)state;
    lx_signals s = sig("why?\n```js\nconst x = f();\n```");
    assert_float_equal(s.v[LX_SIG_CODE_FENCE], 1.0, 1e-6);
    assert_int_equal(s.code_lines, 1);
    s = sig("def f(x):\n    return x + 1\nprint(f(2))");
    assert_int_equal(s.code_lines, 3);
    assert_float_equal(s.v[LX_SIG_CODE_SHARE], 1.0, 1e-6);
    s = sig("Please write a short note to the team.\nThanks, and have a nice weekend.");
    assert_int_equal(s.code_lines, 0);
    assert_float_equal(s.v[LX_SIG_CODE_FENCE], 0.0, 1e-6);
    s = sig("SELECT id FROM users WHERE age > 3;");
    assert_int_equal(s.code_lines, 1);
    lx_signals c;
    lx_signals_compute("and now?", 8, "```py\nx = 1\n```", 15, &c);
    assert_float_equal(c.v[LX_SIG_CONTEXT_CODE], 1.0, 1e-6);
}

static void test_signal_words_length_question(void **state)
{
    (void)state;
    lx_signals s = sig("My Python script throws a TypeError in the pandas call");
    assert_int_equal(s.prog_words, 4); /* python, script, typeerror, pandas */
    s = sig("python Python PYTHON");
    assert_int_equal(s.prog_words, 3);
    s = sig("hi");
    assert_float_equal(s.v[LX_SIG_SHORT], 1.0, 1e-6);
    s = sig("This sentence is comfortably longer than sixty characters, so it is not short.");
    assert_float_equal(s.v[LX_SIG_SHORT], 0.0, 1e-6);
    assert_true(s.v[LX_SIG_LENGTH] > 0.3f && s.v[LX_SIG_LENGTH] < 1.0f);
    assert_float_equal(sig("Is it raining?").v[LX_SIG_QUESTION], 1.0, 1e-6);
    assert_float_equal(sig("富士山の高さは？").v[LX_SIG_QUESTION], 1.0, 1e-6);
    assert_float_equal(sig("今年はうるう年ですか。").v[LX_SIG_QUESTION], 1.0, 1e-6);
    assert_float_equal(sig("Do it now.").v[LX_SIG_QUESTION], 0.0, 1e-6);
    assert_float_equal(sig("What is the capital of Peru?").v[LX_SIG_WH_START], 1.0, 1e-6);
    assert_float_equal(sig("Whatever you do").v[LX_SIG_WH_START], 0.0, 1e-6);
    assert_true(sig("12 * 7 = 84").v[LX_SIG_MATH] > 0.5f);
    assert_int_equal(sig("a\nb\n\nc").lines, 3);
}

/* ---- the classifier ---- */

static void test_model_file_checks(void **state)
{
    (void)state;
    char err[200];
    lx_cls_model *m = lx_cls_builtin();
    assert_int_equal(lx_cls_n_classes(m), 4);
    assert_int_equal(lx_cls_find(m, "japanese", 8), 2);
    assert_int_equal(lx_cls_find(m, "poetry", 6), -1);
    assert_int_equal(strlen(lx_cls_digest(m)), 16);
    lx_cls_free(m);
    assert_null(lx_cls_parse("LXRTMDL1", 8, err, sizeof err));
    assert_non_null(strstr(err, "too short"));
    assert_null(lx_cls_parse("hello, this is not a model file", 31, err, sizeof err));
    assert_non_null(strstr(err, "checksum"));
    assert_null(lx_cls_load("/nonexistent/model.lxrm", err, sizeof err));
    assert_non_null(strstr(err, "cannot read"));
}

/* Two tiny classes, trained, written, read back: the file round-trips and predicts what it learned. */
static void test_train_roundtrip(void **state)
{
    (void)state;
    static const char *const a[] = {"\"apples and pears\"", "\"pears, apples\"", "\"fresh apples\""};
    static const char *const b[] = {"\"trains and buses\"", "\"buses, trains\"", "\"fast trains\""};
    lx_cls_example ex[6] = {0};
    for (int i = 0; i < 6; i++) {
        lx_auto_example(lx_slice_of(i < 3 ? a[i] : b[i - 3]), 10, &ex[i]);
        ex[i].label = i < 3 ? 0 : 1;
    }
    const char *names[] = {"fruit", "transport"};
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_cls_train_opts o = {.bits = 10, .epochs = 30};
    assert_int_equal(lx_cls_train(ex, 6, names, 2, &o, &out), 0);
    char err[200];
    lx_cls_model *m = lx_cls_parse(out.p, out.len, err, sizeof err);
    if (m == NULL) fail_msg("%s", err);
    lx_auto_verdict v;
    lx_auto_classify(m, lx_slice_of("\"apples please\""), &v);
    assert_string_equal(v.class_name, "fruit");
    assert_true(v.confidence > 0.5);
    assert_non_null(strstr(v.reason, "n-grams"));
    lx_auto_classify(m, lx_slice_of("\"the trains\""), &v);
    assert_string_equal(v.class_name, "transport");
    /* the same data and options give the same file */
    lx_buf again;
    lx_buf_init(&again, 0);
    assert_int_equal(lx_cls_train(ex, 6, names, 2, &o, &again), 0);
    assert_int_equal(again.len, out.len);
    assert_memory_equal(again.p, out.p, out.len);
    /* one byte changed: refused */
    out.p[40] ^= 1;
    assert_null(lx_cls_parse(out.p, out.len, err, sizeof err));
    lx_cls_free(m);
    lx_buf_free(&out);
    lx_buf_free(&again);
    for (int i = 0; i < 6; i++) {
        free(ex[i].buckets);
        free(ex[i].context);
    }
}

static void test_features_bounded(void **state)
{
    (void)state;
    static lx_cls_features fs;
    size_t n = 100000;
    char *big = malloc(n);
    memset(big, 'a', n);
    lx_cls_featurize(big, n, big, 4096, 14, &fs);
    assert_true(fs.n <= LX_CLS_MAX_FEATURES);
    for (size_t i = 0; i < fs.n; i++)
        assert_true(fs.f[i].bucket < (1u << 14));
    free(big);
    lx_cls_featurize("ab", 2, NULL, 0, 14, &fs);
    assert_int_equal(fs.n, 4); /* " a" bigram, "ab" bigram, " ab" trigram, word "ab" */
}

/* The shipped model on one clear prompt of each class. */
static void test_builtin_classes(void **state)
{
    (void)state;
    lx_cls_model *m = lx_cls_builtin();
    static const struct {
        const char *json, *cls;
    } cases[] = {
        {"\"Fix this: for (int i = 0; i <= n; i++) { sum += a[i]; }\"", "code"},
        {"\"Pythonでファイルを一行ずつ読む関数を書いて\"", "code"},
        {"\"Should we shard the database or add read replicas? Compare the trade-offs for our team.\"", "reasoning"},
        {"\"障害の根本原因をどう調べるべきか、仮説の立て方を教えてください\"", "reasoning"},
        {"\"お客様へのお詫びメールを丁寧な文面で書いてください\"", "japanese"},
        {"\"ありがとう\"", "simple"},
        {"\"What is the capital of France?\"", "simple"},
    };
    for (size_t i = 0; i < LX_ARRAY_LEN(cases); i++) {
        lx_auto_verdict v;
        lx_auto_classify(m, lx_slice_of(cases[i].json), &v);
        if (strcmp(v.class_name, cases[i].cls) != 0)
            fail_msg("%s: got %s (%s), want %s", cases[i].json, v.class_name, v.reason, cases[i].cls);
    }
    lx_cls_free(m);
}

/* ---- the decision ---- */

#define AUTO_BASE                                                                                                      \
    "backends:\n  a:\n    type: vllm\n    url: \"http://127.0.0.1:1\"\n    models: [\"big\", \"coder\", \"small\"]\n"  \
    "routing:\n  aliases:\n    code: coder\n"

static void test_decide(void **state)
{
    (void)state;
    lx_config *c = lx_test_config(AUTO_BASE "  auto:\n    routes: {code: code, simple: small}\n    default: big\n"
                                            "    min_confidence: 0.6\n    rules:\n"
                                            "      - {class: legal, route: big, keywords: [\"NDA\", \"契約書\"]}\n"
                                            "      - {class: code, keywords: [\"terraform\"]}\n");
    assert_true(lx_auto_is_name(c, lx_slice_of("auto")));
    assert_false(lx_auto_is_name(c, lx_slice_of("big")));
    lx_auto_verdict v;
    const char *code = "[{\"role\":\"user\",\"content\":\"def f(x):\\n    return x * 2\\nwhy does this fail?\"}]";
    assert_int_equal(lx_auto_decide(c, lx_slice_of(code), (lx_slice){0}, false, &v), 0);
    assert_string_equal(v.class_name, "code");
    assert_string_equal(v.route, "code");
    assert_int_equal(v.how, LX_AUTO_BY_MODEL);
    /* a rule, case-insensitive, first; a rule without a route takes the class's */
    assert_int_equal(
        lx_auto_decide(c, lx_slice_of("[{\"role\":\"user\",\"content\":\"read this nda\"}]"), (lx_slice){0}, false, &v),
        0);
    assert_string_equal(v.class_name, "legal");
    assert_string_equal(v.route, "big");
    assert_string_equal(v.reason, "rule legal: keyword \"nda\"");
    assert_int_equal(lx_auto_decide(c, lx_slice_of("\"Terraform question\""), (lx_slice){0}, false, &v), 0);
    assert_string_equal(v.route, "code");
    assert_int_equal(v.how, LX_AUTO_BY_RULE);
    /* x_route forces; an unknown one is refused with the classes */
    assert_int_equal(lx_auto_decide(c, lx_slice_of(code), lx_slice_of("simple"), true, &v), 0);
    assert_string_equal(v.route, "small");
    assert_int_equal(v.how, LX_AUTO_BY_FORCE);
    assert_int_equal(lx_auto_decide(c, lx_slice_of(code), lx_slice_of("legal"), true, &v), 0);
    assert_string_equal(v.route, "big");
    assert_int_equal(lx_auto_decide(c, lx_slice_of(code), lx_slice_of("nope"), true, &v), -1);
    assert_string_equal(v.reason, "x_route must be one of: code, reasoning, japanese, simple, legal, code, default");
    /* a class without a route: the default */
    const char *ja = "\"お客様へのお詫びメールを丁寧な文面で書いてください\"";
    assert_int_equal(lx_auto_decide(c, lx_slice_of(ja), (lx_slice){0}, false, &v), 0);
    assert_string_equal(v.class_name, "japanese");
    assert_string_equal(v.route, "big");
    assert_non_null(strstr(v.reason, "no route for japanese"));
    lx_config_unref(c);

    /* below min_confidence: class "default", routing.auto.default, else default_model */
    c = lx_test_config("default_model: small\n" AUTO_BASE "  auto:\n    min_confidence: 1\n");
    assert_int_equal(lx_auto_decide(c, lx_slice_of(code), (lx_slice){0}, false, &v), 0);
    assert_string_equal(v.class_name, "default");
    assert_string_equal(v.route, "small");
    assert_int_equal(v.how, LX_AUTO_BY_DEFAULT);
    assert_non_null(strstr(v.reason, "best guess code below min_confidence 1.00"));
    lx_config_unref(c);
}

static void test_header_text(void **state)
{
    (void)state;
    char out[64];
    lx_auto_header_text("a \"取\" \xf0\x9f\x98\x80\n", out, sizeof out);
    assert_string_equal(out, "a \"\\u53d6\" \\ud83d\\ude00 ");
    lx_auto_header_text("取引先", out, 10); /* never half an escape */
    assert_string_equal(out, "\\u53d6");
}

/* ---- config ---- */

static void expect_errors(const char *yaml, const char *want)
{
    lx_buf err;
    lx_buf_init(&err, 0);
    lx_config *c = lx_config_parse("t.yaml", yaml, strlen(yaml), &err);
    if (c != NULL) fail_msg("accepted:\n%s", yaml);
    if (strstr(err.p, want) == NULL) fail_msg("errors:\n%s\nwant: %s", err.p, want);
    lx_buf_free(&err);
}

static void test_config(void **state)
{
    (void)state;
    lx_config *c = lx_test_config(AUTO_BASE "  auto: {}\n");
    assert_true(c->routing.automatic.enabled);
    assert_string_equal(c->routing.automatic.name, "auto");
    assert_float_equal(c->routing.automatic.min_confidence, 0.6, 1e-9);
    assert_non_null(c->routing.automatic.model);
    assert_string_equal(c->routing.automatic.model_file, "");
    lx_config_unref(c);
    c = lx_test_config(AUTO_BASE);
    assert_false(c->routing.automatic.enabled);
    assert_false(lx_auto_is_name(c, lx_slice_of("auto")));
    lx_config_unref(c);

    expect_errors(
        AUTO_BASE "  auto:\n    routes: {code: nowhere}\n",
        "t.yaml:10: routing.auto.routes.code: \"nowhere\" is neither a model an enabled backend serves nor an "
        "alias (a route to nothing)");
    expect_errors(AUTO_BASE "  auto:\n    default: nowhere\n", "t.yaml:10: routing.auto.default: \"nowhere\"");
    expect_errors(
        AUTO_BASE "  auto:\n    routes: {poetry: big}\n",
        "t.yaml:10: routing.auto.routes.poetry: no such class (the classes: code, reasoning, japanese, simple)");
    expect_errors(AUTO_BASE "  auto:\n    model_file: /nonexistent.lxrm\n",
                  "t.yaml:10: routing.auto.model_file: \"/nonexistent.lxrm\": cannot read: No such file or directory");
    expect_errors(AUTO_BASE "  auto:\n    model_file: t.yaml\n", "routing.auto.model_file: \"t.yaml\":");
    expect_errors(AUTO_BASE "  auto:\n    name: code\n", "routing.auto.name: \"code\" is also an alias");
    expect_errors(AUTO_BASE "  auto:\n    name: big\n", "routing.auto.name: \"big\" is a model backend a serves");
    expect_errors(AUTO_BASE "  auto:\n    min_confidence: 2\n", "routing.auto.min_confidence: must be a number");
    expect_errors(AUTO_BASE "  auto:\n    rules:\n      - {class: x}\n", "has no keywords");
    expect_errors(AUTO_BASE "  auto:\n    rules:\n      - {keywords: [a]}\n", "has no class");
    expect_errors(AUTO_BASE "  auto:\n    rules:\n      - {class: default, keywords: [a]}\n", "not \"default\"");
    expect_errors(AUTO_BASE "  auto:\n    rules:\n      - {class: x, keywords: []}\n", "is empty");
    expect_errors(AUTO_BASE "  auto:\n    routes: {code: auto}\n", "is routing.auto.name itself");
    expect_errors(AUTO_BASE "  auto:\n    colour: red\n", "routing.auto.colour: unknown key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_last_user_and_context),
        cmocka_unit_test(test_text_unescapes_and_parts),
        cmocka_unit_test(test_text_bounds_and_garbage),
        cmocka_unit_test(test_signal_japanese_share),
        cmocka_unit_test(test_signal_code),
        cmocka_unit_test(test_signal_words_length_question),
        cmocka_unit_test(test_model_file_checks),
        cmocka_unit_test(test_train_roundtrip),
        cmocka_unit_test(test_features_bounded),
        cmocka_unit_test(test_builtin_classes),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_header_text),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
