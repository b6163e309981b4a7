/* Unit tests for backends/outcome.c: the class of every way an attempt can end, and the table's row for it
 * (retry or not, what it says of the backend, the client's error). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backends/outcome.h"

static void test_classes_and_rows(void **state)
{
    (void)state;
    static const struct {
        lx_up_result r;
        int status;
        lx_outcome o;
        bool retry;
        lx_attempt_verdict verdict;
    } rows[] = {
        {LX_UP_OK, 200, LX_OUT_OK, false, LX_ATTEMPT_OK},
        {LX_UP_OK, 400, LX_OUT_OK, false, LX_ATTEMPT_OK},
        {LX_UP_OK, 404, LX_OUT_OK, false, LX_ATTEMPT_OK},
        {LX_UP_OK, 429, LX_OUT_BUSY, true, LX_ATTEMPT_OK},
        {LX_UP_OK, 500, LX_OUT_OK, false, LX_ATTEMPT_OK},
        {LX_UP_OK, 502, LX_OUT_FAILING, true, LX_ATTEMPT_FAILED},
        {LX_UP_OK, 503, LX_OUT_FAILING, true, LX_ATTEMPT_FAILED},
        {LX_UP_OK, 504, LX_OUT_FAILING, true, LX_ATTEMPT_FAILED},
        {LX_UP_CONNECT, 0, LX_OUT_CONNECT, true, LX_ATTEMPT_FAILED},
        {LX_UP_RESET, 0, LX_OUT_LOST, true, LX_ATTEMPT_FAILED},
        {LX_UP_RESET, 200, LX_OUT_CUT, false, LX_ATTEMPT_FAILED},
        {LX_UP_TIMEOUT, 0, LX_OUT_SILENT, true, LX_ATTEMPT_FAILED},
        {LX_UP_TIMEOUT, 200, LX_OUT_STALLED, false, LX_ATTEMPT_FAILED},
        {LX_UP_BAD_RESPONSE, 0, LX_OUT_GARBLED, false, LX_ATTEMPT_FAILED},
        {LX_UP_CALLER, 200, LX_OUT_REFUSED, false, LX_ATTEMPT_NONE},
        {LX_UP_OTHER, 0, LX_OUT_GARBLED, false, LX_ATTEMPT_FAILED},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        lx_outcome o = lx_outcome_of(rows[i].r, rows[i].status);
        assert_int_equal(o, rows[i].o);
        assert_int_equal(lx_outcome_get(o)->retryable, rows[i].retry);
        assert_int_equal(lx_outcome_get(o)->verdict, rows[i].verdict);
    }
}

static void test_client_errors(void **state)
{
    (void)state;
    assert_int_equal(lx_outcome_get(LX_OUT_CONNECT)->err, LX_ERR_UPSTREAM_UNAVAILABLE);
    assert_int_equal(lx_outcome_get(LX_OUT_LOST)->err, LX_ERR_UPSTREAM_UNAVAILABLE);
    assert_int_equal(lx_outcome_get(LX_OUT_SILENT)->err, LX_ERR_UPSTREAM_TIMEOUT);
    assert_int_equal(lx_outcome_get(LX_OUT_STALLED)->err, LX_ERR_UPSTREAM_TIMEOUT);
    assert_int_equal(lx_outcome_get(LX_OUT_CUT)->err, LX_ERR_UPSTREAM_BAD_RESPONSE);
    assert_int_equal(lx_outcome_get(LX_OUT_GARBLED)->err, LX_ERR_UPSTREAM_BAD_RESPONSE);
    assert_int_equal(lx_outcome_get(LX_OUT_REFUSED)->err, LX_ERR_UPSTREAM_BAD_RESPONSE);
    /* an HTTP answer is passed on; every other class has its own error */
    for (int o = 0; o < LX_OUT_COUNT; o++) {
        const lx_outcome_info *i = lx_outcome_get((lx_outcome)o);
        assert_non_null(i->name);
        assert_int_equal(i->answered, o == LX_OUT_OK || o == LX_OUT_BUSY || o == LX_OUT_FAILING);
    }
    assert_string_equal(lx_outcome_get(LX_OUT_COUNT)->name, "garbled"); /* out of range: the safe row */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes_and_rows),
        cmocka_unit_test(test_client_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
