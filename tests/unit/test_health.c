/* Unit tests for observe/health.c (the status rule of GET /health), api/health.c's uptime format and
 * observe/gpu.c's byte format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support.h"
#include <string.h>

#include "api/health.h"
#include "observe/gpu.h"
#include "observe/health.h"

/* a serves m1 and shared, b serves shared, c (disabled) serves m3. */
static const char yaml[] = "default_model: m1\n"
                           "backends:\n"
                           "  a: {type: vllm, url: 'http://127.0.0.1:1', models: [m1, shared]}\n"
                           "  b: {type: openai, url: 'http://127.0.0.1:2', models: [shared]}\n"
                           "  c: {type: vllm, url: 'http://127.0.0.1:3', models: [m3], enabled: false}\n";

/* The names of the backends that are down, comma-separated. */
static bool up(void *ud, const char *name)
{
    const char *down = ud;
    return strstr(down, name) == NULL;
}

static lx_config *load(const char *text) { return lx_test_config(text); }

static void test_rule(void **state)
{
    (void)state;
    lx_config *c = load(yaml);
    assert_non_null(c);
    assert_int_equal(lx_gw_health_eval(c, up, ""), LX_GW_HEALTHY);
    assert_int_equal(lx_gw_health_eval(c, up, "c"), LX_GW_HEALTHY);   /* disabled: not counted */
    assert_int_equal(lx_gw_health_eval(c, up, "b"), LX_GW_DEGRADED);  /* shared still on a */
    assert_int_equal(lx_gw_health_eval(c, up, "a"), LX_GW_UNHEALTHY); /* m1 only on a */
    assert_int_equal(lx_gw_health_eval(c, up, "a,b"), LX_GW_UNHEALTHY);
    assert_string_equal(lx_gw_health_name(LX_GW_HEALTHY), "healthy");
    assert_string_equal(lx_gw_health_name(LX_GW_DEGRADED), "degraded");
    assert_string_equal(lx_gw_health_name(LX_GW_UNHEALTHY), "unhealthy");
    lx_config_unref(c);
}

static void test_only_backend_down(void **state)
{
    (void)state;
    lx_config *c = load("default_model: m\n"
                        "backends:\n"
                        "  a: {type: vllm, url: 'http://127.0.0.1:1', models: [m]}\n");
    assert_non_null(c);
    assert_int_equal(lx_gw_health_eval(c, up, "a"), LX_GW_UNHEALTHY);
    lx_config_unref(c);
}

static void test_formats(void **state)
{
    (void)state;
    char s[48];
    lx_format_uptime(0, s, sizeof s);
    assert_string_equal(s, "0m");
    lx_format_uptime(3 * 86400 + 4 * 3600 + 12 * 60 + 59, s, sizeof s);
    assert_string_equal(s, "3d 4h 12m");
    lx_format_uptime(3600 + 60, s, sizeof s);
    assert_string_equal(s, "1h 1m");
    lx_format_uptime(86400, s, sizeof s);
    assert_string_equal(s, "1d 0h 0m");
    lx_gpu_format_bytes(24ull << 30, s, sizeof s);
    assert_string_equal(s, "24GB");
    lx_gpu_format_bytes(32ull << 30, s, sizeof s);
    assert_string_equal(s, "32GB");
    lx_gpu_format_bytes(512ull << 20, s, sizeof s);
    assert_string_equal(s, "512MB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_only_backend_down),
        cmocka_unit_test(test_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
