/*
 * The experiment report (observe/exp_report.h) against cases computed by hand:
 *
 * Case 1, metric feedback. A: 20 requests, 2 errors; the 18 successes took 100, 110, ..., 270 ms; 10 tokens
 * each; feedback 1 ×7, 0 ×2, −1. B: 20 requests, 8 errors; the 12 successes took 200, ..., 310 ms; tokens
 * 10 and 14 alternately; feedback 1 ×2, 0 ×4, −1 ×4.
 *  - Wilson, A: p = 0.1, z² = 3.8415: centre (0.1 + 3.8415/40) / (1 + 3.8415/20) = 0.16445, half
 *    1.96 √(0.0045 + 0.0024009) / 1.19207 = 0.13659 → [2.79 %, 30.10 %]; B (8/20) → [21.88 %, 61.34 %].
 *  - A's latency p50: n q = 9 → x(9) = 180; z √(9 · 0.5) = 4.158 → ranks ceil(4.842) = 5 and ceil(13.158)
 *    = 14 → [140, 230]. p95: n q = 17.1 → x(18) = 270; z √(17.1 · 0.05) = 1.812 → ranks 16 and 19 (clamped
 *    to 18) → [250, 270]. B: p50 x(6) = 250, ranks 3 and 10 → [220, 290]; p95 x(12) = 310 → [290, 310].
 *  - Tokens, B: mean 12, s² = 4.2105, 1.96 √(4.2105/20) = 0.9.
 *  - Feedback: A mean 0.6, s² = 4.4/9, half 1.96 √(0.48889/10) = 0.433; B −0.2, s² = 5.6/9, half 0.489.
 *    d = −0.8 ± 1.96 √(0.048889 + 0.062222) = ± 0.653: significant, B worse.
 * Case 2, metric errors: A 1/10, B 2/10: d = +10 points ± 1.96 √(0.009 + 0.016) = ± 30.99 points, not
 * significant; n = (1.95996 + 0.84162)² · (0.09 + 0.16) / 0.01 = 196.2 → 197, minus the 10 there are: 187.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "observe/exp_report.h"

static void add(lx_exp_data *d, const char *v, bool error, double latency, long tokens, bool fb, double score)
{
    lx_exp_row r = {.variant = v,
                    .status = error ? 500 : 200,
                    .error = error,
                    .latency_ms = latency,
                    .ttft_ms = -1,
                    .tokens = tokens,
                    .has_feedback = fb,
                    .score = score};
    lx_exp_data_add(d, &r);
}

static void expect(const lx_buf *b, const char *needle)
{
    if (strstr(b->p, needle) == NULL) fail_msg("missing \"%s\" in:\n%s", needle, b->p);
}

static void test_feedback_case(void **state)
{
    (void)state;
    lx_exp_data d = {.metric = LX_METRIC_FEEDBACK};
    lx_exp_data_variant(&d, "A");
    const double fa[] = {1, 1, 1, 1, 1, 1, 1, 0, 0, -1}, fb[] = {1, 0, 0, 0, -1, -1, -1, 0, 1, -1};
    for (int i = 0; i < 20; i++) {
        bool b_error = i >= 12;
        add(&d, "B", b_error, b_error ? -1 : 200 + 10 * i, i % 2 ? 14 : 10, i < 10, i < 10 ? fb[i] : 0);
        add(&d, "A", i >= 18, i >= 18 ? -1 : 100 + 10 * i, 10, i < 10, i < 10 ? fa[i] : 0);
    }
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_exp_report(&d, &b);
    expect(&b, "A\n  requests       20\n  errors         2, rate 10.00 % [2.79, 30.10]\n");
    expect(&b, "  latency        p50 180.0 ms [140.0, 230.0]   p95 270.0 ms [250.0, 270.0]\n");
    expect(&b, "  ttft           -\n  tokens/request 10.0 ± 0.0 (n 20)\n  feedback       0.600 ± 0.433 (n 10)\n");
    expect(&b, "B\n  requests       20\n  errors         8, rate 40.00 % [21.88, 61.34]\n");
    expect(&b, "  latency        p50 250.0 ms [220.0, 290.0]   p95 310.0 ms [290.0, 310.0]\n");
    expect(&b, "  tokens/request 12.0 ± 0.9 (n 20)\n  feedback       -0.200 ± 0.489 (n 10)\n");
    expect(&b, "B is worse than A on feedback by 0.800 ± 0.653\n");
    lx_buf_free(&b);
    lx_exp_data_free(&d);
}

static void test_errors_not_significant(void **state)
{
    (void)state;
    lx_exp_data d = {.metric = LX_METRIC_ERRORS};
    for (int i = 0; i < 10; i++) {
        add(&d, "A", i == 0, 100, 5, false, 0);
        add(&d, "B", i < 2, 100, 5, false, 0);
    }
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_exp_report(&d, &b);
    expect(&b, "B vs A: no significant difference yet (+10.00 ± 30.99 points on errors): about 187 more requests per "
               "variant needed\n");
    lx_buf_free(&b);
    lx_exp_data_free(&d);
}

static void test_wilson_edges(void **state)
{
    (void)state;
    double lo, hi;
    lx_wilson(0, 0, &lo, &hi);
    assert_true(lo == 0 && hi == 1);
    lx_wilson(0, 50, &lo, &hi);
    assert_true(lo < 1e-12 && hi > 0.07 && hi < 0.072); /* 0/50: [0, z² / (n + z²) = 7.13 %] */
    lx_wilson(50, 50, &lo, &hi);
    assert_true(hi > 1 - 1e-12 && lo > 0.928 && lo < 0.93);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feedback_case),
        cmocka_unit_test(test_errors_not_significant),
        cmocka_unit_test(test_wilson_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
