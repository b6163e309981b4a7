/*
 * A/B experiments (routing/experiment.h): the spread of a 90/10 experiment over 2,000 users, stickiness,
 * a weight change moving only the users it must, forced variants, who takes part, counters kept across
 * a reload, and adaptive shares moving toward the variant that errs less (and never below min_weight).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "routing/experiment.h"
#include "support.h"

static const char *config_with(const char *weights, const char *mode)
{
    static char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "backends:\n"
             "  gpu: {type: vllm, url: 'http://127.0.0.1:1', models: [qwen-coder, deepseek-coder, other]}\n"
             "routing: {aliases: {code: qwen-coder}}\n"
             "experiments:\n"
             "  coder:\n"
             "    model: code\n"
             "    variants: {%s}\n"
             "    mode: %s\n"
             "    metric: errors\n"
             "    min_weight: 5\n",
             weights, mode);
    return yaml;
}

static lx_experiments *experiments_for(const char *weights, const char *mode)
{
    lx_config *c = lx_test_config(config_with(weights, mode));
    lx_experiments *x = lx_experiments_new();
    lx_experiments_apply(x, c);
    lx_config_unref(c);
    return x;
}

static const char *variant_of(lx_experiments *x, const char *user)
{
    lx_exp_choice ch;
    assert_int_equal(lx_experiments_assign(x, LX_SLICE_LIT("code"), user, "req_1", (lx_slice){NULL, 0}, &ch),
                     LX_EXP_IN);
    assert_string_equal(ch.experiment, "coder");
    return ch.variant;
}

static void test_unit_and_slices(void **state)
{
    (void)state;
    double u = lx_exp_unit("coder", "alice", 5);
    assert_true(u >= 0 && u < 1);
    assert_true(u == lx_exp_unit("coder", "alice", 5));
    assert_true(u != lx_exp_unit("coder2", "alice", 5));
    assert_true(lx_exp_unit("ab", "c", 1) != lx_exp_unit("a", "bc", 2));
    const double w[] = {90, 0, 10};
    assert_int_equal(lx_exp_slice(w, 3, 0.0), 0);
    assert_int_equal(lx_exp_slice(w, 3, 0.8999), 0);
    assert_int_equal(lx_exp_slice(w, 3, 0.9), 2); /* an empty slice is skipped */
    assert_int_equal(lx_exp_slice(w, 3, 0.99999), 2);
}

/* 90/10 over 2,000 users: 10 % ± 2 %; each user keeps its variant. */
static void test_spread_and_sticky(void **state)
{
    (void)state;
    lx_experiments *x = experiments_for("qwen-coder: 90, deepseek-coder: 10", "static");
    int b = 0;
    for (int i = 0; i < 2000; i++) {
        char user[32];
        snprintf(user, sizeof user, "user-%d", i);
        const char *v = variant_of(x, user);
        b += strcmp(v, "deepseek-coder") == 0;
        assert_string_equal(variant_of(x, user), v);
    }
    assert_true(b >= 160 && b <= 240);
    lx_experiments_free(x);
}

/* 90/10 → 80/20: users move only from qwen-coder to deepseek-coder, about 10 % of them. */
static void test_weight_change_moves_only_whom_it_must(void **state)
{
    (void)state;
    lx_experiments *x = experiments_for("qwen-coder: 90, deepseek-coder: 10", "static");
    static char before[2000][16];
    for (int i = 0; i < 2000; i++) {
        char user[32];
        snprintf(user, sizeof user, "user-%d", i);
        snprintf(before[i], sizeof before[i], "%s", variant_of(x, user));
    }
    lx_config *c = lx_test_config(config_with("qwen-coder: 80, deepseek-coder: 20", "static"));
    lx_experiments_apply(x, c);
    lx_config_unref(c);
    int moved = 0;
    for (int i = 0; i < 2000; i++) {
        char user[32];
        snprintf(user, sizeof user, "user-%d", i);
        const char *now = variant_of(x, user);
        if (strcmp(now, before[i]) == 0) continue;
        assert_string_equal(before[i], "qwen-coder"); /* nobody moves the other way */
        moved++;
    }
    assert_true(moved >= 160 && moved <= 240);
    lx_experiments_free(x);
}

static void test_who_takes_part(void **state)
{
    (void)state;
    lx_experiments *x = experiments_for("qwen-coder: 50, deepseek-coder: 50", "static");
    lx_exp_choice ch;
    /* naming a variant, or another model, explicitly is not taking part */
    assert_int_equal(lx_experiments_assign(x, LX_SLICE_LIT("qwen-coder"), "u", "r", (lx_slice){NULL, 0}, &ch),
                     LX_EXP_OUT);
    assert_int_equal(lx_experiments_assign(x, LX_SLICE_LIT("other"), "u", "r", (lx_slice){NULL, 0}, &ch), LX_EXP_OUT);
    assert_int_equal(lx_experiments_assign(x, LX_SLICE_LIT("code"), "u", "r", LX_SLICE_LIT("deepseek-coder"), &ch),
                     LX_EXP_IN);
    assert_string_equal(ch.variant, "deepseek-coder");
    assert_int_equal(lx_experiments_assign(x, LX_SLICE_LIT("code"), "u", "r", LX_SLICE_LIT("other"), &ch),
                     LX_EXP_BAD_VARIANT);
    /* a disabled experiment, or none: nobody takes part */
    lx_config *c = lx_test_config("backends:\n  gpu: {type: vllm, url: 'http://127.0.0.1:1', models: [a, b]}\n"
                                  "experiments:\n  e: {model: a, variants: {a: 1, b: 1}, enabled: false}\n");
    lx_experiments_apply(x, c);
    lx_config_unref(c);
    assert_int_equal(lx_experiments_assign(x, LX_SLICE_LIT("a"), "u", "r", (lx_slice){NULL, 0}, &ch), LX_EXP_OUT);
    lx_experiments_free(x);
}

static void record(lx_experiments *x, const char *variant, int status, double latency_ms)
{
    lx_access_rec rec = {.experiment = "coder",
                         .variant = variant,
                         .status = status,
                         .latency_ms = latency_ms,
                         .ttft_ms = -1,
                         .prompt_tokens = 3,
                         .completion_tokens = 5};
    lx_experiments_record(x, &rec);
}

static double weight_in(lx_experiments *x, const char *variant)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_experiments_render_json(x, &b);
    char key[64];
    snprintf(key, sizeof key, "\"%s\":{", variant);
    const char *at = strstr(b.p, key);
    assert_non_null(at);
    const char *w = strstr(at, "\"weight\":");
    assert_non_null(w);
    double v = strtod(w + 9, NULL);
    lx_buf_free(&b);
    return v;
}

/* Adaptive, metric errors: qwen-coder fails 30 % of its requests, deepseek-coder 5 %: after enough evidence
 * the better one gets most new users, the worse one no less than min_weight; the counters render. */
static void test_adaptive_moves_toward_the_better(void **state)
{
    (void)state;
    lx_experiments *x = experiments_for("qwen-coder: 50, deepseek-coder: 50", "adaptive");
    (void)variant_of(x, "first"); /* the first update: no evidence, near 50/50 */
    double w0 = weight_in(x, "deepseek-coder");
    assert_true(w0 > 35 && w0 < 65);
    for (int i = 0; i < 400; i++) {
        record(x, "qwen-coder", i % 10 < 3 ? 503 : 200, 100);
        record(x, "deepseek-coder", i % 20 == 0 ? 503 : 200, 100);
    }
    lx_config *c = lx_test_config(config_with("qwen-coder: 50, deepseek-coder: 50", "adaptive"));
    lx_experiments_apply(x, c); /* a reload: counters kept, shares recomputed at the next request */
    lx_config_unref(c);
    (void)variant_of(x, "second");
    assert_true(weight_in(x, "deepseek-coder") > 90);
    assert_true(weight_in(x, "qwen-coder") >= 5.0 - 1e-9); /* min_weight */
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_experiments_render_json(x, &b);
    assert_non_null(strstr(b.p, "\"qwen-coder\":{\"requests\":400,\"errors\":120,\"error_rate\":0.3000"));
    lx_buf_reset(&b);
    lx_experiments_render_prometheus(x, &b);
    assert_non_null(
        strstr(b.p, "lexora_experiment_errors_total{experiment=\"coder\",variant=\"deepseek-coder\"} 20\n"));
    lx_buf_free(&b);
    lx_experiments_free(x);
}

/* Adaptive, sticky by user: a user keeps the variant first given even when the shares move. */
static void test_adaptive_keeps_users(void **state)
{
    (void)state;
    lx_experiments *x = experiments_for("qwen-coder: 50, deepseek-coder: 50", "adaptive");
    static char first[200][16];
    for (int i = 0; i < 200; i++) {
        char user[32];
        snprintf(user, sizeof user, "u%d", i);
        snprintf(first[i], sizeof first[i], "%s", variant_of(x, user));
    }
    for (int i = 0; i < 400; i++)
        record(x, "qwen-coder", 503, 100);
    lx_config *c = lx_test_config(config_with("qwen-coder: 50, deepseek-coder: 50", "adaptive"));
    lx_experiments_apply(x, c);
    lx_config_unref(c);
    for (int i = 0; i < 200; i++) {
        char user[32];
        snprintf(user, sizeof user, "u%d", i);
        assert_string_equal(variant_of(x, user), first[i]);
    }
    lx_experiments_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unit_and_slices),
        cmocka_unit_test(test_spread_and_sticky),
        cmocka_unit_test(test_weight_change_moves_only_whom_it_must),
        cmocka_unit_test(test_who_takes_part),
        cmocka_unit_test(test_adaptive_moves_toward_the_better),
        cmocka_unit_test(test_adaptive_keeps_users),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
