/* Unit tests for queue/retry.c: the backoff with its jitter bounds and cap, and Retry-After in both of its
 * forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "queue/retry.h"
#include "support.h"

static void test_delays(void **state)
{
    (void)state;
    lx_config *c = lx_test_config("vllm: {url: 'http://127.0.0.1:9'}\ndefault_model: m\n"
                                  "retry: {delay_seconds: 1, backoff_multiplier: 2, max_delay_seconds: 5}\n");
    /* the seed's 1 s, 2 s, 4 s ... with u = 0.5 (no jitter), capped at 5 */
    assert_float_equal(lx_retry_delay_s(c, 1, 0.5), 1.0, 1e-9);
    assert_float_equal(lx_retry_delay_s(c, 2, 0.5), 2.0, 1e-9);
    assert_float_equal(lx_retry_delay_s(c, 3, 0.5), 4.0, 1e-9);
    assert_float_equal(lx_retry_delay_s(c, 4, 0.5), 5.0, 1e-9);
    assert_float_equal(lx_retry_delay_s(c, 1000, 0.5), 5.0, 1e-9); /* no overflow past the cap */
    /* jitter: at most ±20 % */
    assert_float_equal(lx_retry_delay_s(c, 2, 0.0), 1.6, 1e-9);
    assert_float_equal(lx_retry_delay_s(c, 2, 0.999999), 2.4, 1e-5);
    assert_float_equal(lx_retry_delay_s(c, 3, 0.999999), 4.8, 1e-5);
    assert_float_equal(lx_retry_delay_s(c, 3, 1.0 - 1e-12), 4.8, 1e-5);
    lx_config_unref(c);
}

static double after(const char *v, int64_t now) { return lx_retry_after_s(lx_slice_of(v), now); }

static void test_retry_after(void **state)
{
    (void)state;
    assert_float_equal(after("3", 0), 3.0, 1e-9);
    assert_float_equal(after("0", 0), 0.0, 1e-9);
    assert_float_equal(after("1.5 ", 0), 1.5, 1e-9);
    assert_float_equal(after("", 0), -1, 1e-9);
    assert_float_equal(after("soon", 0), -1, 1e-9);
    assert_float_equal(after("3x", 0), -1, 1e-9);
    /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    assert_float_equal(after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470), 10.0, 1e-9);
    assert_float_equal(after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490), 0.0, 1e-9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delays),
        cmocka_unit_test(test_retry_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
