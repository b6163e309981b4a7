/* Unit tests for observe/health.c (the status rule of GET /health), api/health.c's uptime format and
 * observe/gpu.c: its byte format, and its readings of the fake NVML libraries the build makes
 * (tests/fake_nvml/fake_nvml.c: four GPUs, GPU 2 failing; variants lacking a symbol). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

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

#define GIB (1ull << 30)

static void on_later(uv_timer_t *t) { (void)t; }

/* One reading of the library file (in the build folder) through LEXORA_NVML_LIBRARY: lx_gpu_new reads at
 * once; a later timer keeps the loop running until it has. check() looks at the result. */
static void with_reading(const char *file, void (*check)(const lx_gpu_info *, const char *path))
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", LX_FAKE_NVML_DIR, file);
    setenv("LEXORA_NVML_LIBRARY", path, 1);
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_gpu *g = lx_gpu_new(&loop);
    uv_timer_t later;
    uv_timer_init(&loop, &later);
    uv_timer_start(&later, on_later, 20, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    lx_gpu_info info;
    lx_gpu_get(g, &info);
    check(&info, path);
    lx_gpu_free(g);
    uv_close((uv_handle_t *)&later, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    unsetenv("LEXORA_NVML_LIBRARY");
}

static void check_four(const lx_gpu_info *in, const char *path)
{
    (void)path;
    assert_true(in->available);
    assert_int_equal(in->n_devices, 4);
    assert_int_equal(in->used_bytes, (24 + 70 + 1) * GIB); /* GPU 2 left out of the sums */
    assert_int_equal(in->total_bytes, (80 + 80 + 24) * GIB);
    assert_string_equal(in->why, "NVML: GPU 2: nvmlDeviceGetMemoryInfo: GPU is lost");
    const lx_gpu_device *d = in->devices;
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(d[i].index, i);
    assert_true(d[0].ok);
    assert_string_equal(d[0].name, "NVIDIA H100 80GB HBM3");
    assert_string_equal(d[0].uuid, "GPU-6a1f0c52-0000-4000-8000-000000000000");
    assert_int_equal(d[0].used_bytes, 24 * GIB);
    assert_int_equal(d[0].total_bytes, 80 * GIB);
    assert_true(d[0].has_utilization && d[0].utilization_percent == 37);
    assert_true(d[0].has_temperature && d[0].temperature_c == 61);
    assert_true(d[1].ok && d[1].utilization_percent == 81 && d[1].temperature_c == 74);
    assert_string_equal(d[1].uuid, "GPU-6a1f0c52-0000-4000-8000-000000000001");
    /* the failing device: named, with its reason, no figures */
    assert_false(d[2].ok);
    assert_string_equal(d[2].uuid, "GPU-6a1f0c52-0000-4000-8000-000000000002");
    assert_string_equal(d[2].why, "nvmlDeviceGetMemoryInfo: GPU is lost");
    /* figures NVML does not support on a device are absent, the rest are there */
    assert_true(d[3].ok);
    assert_string_equal(d[3].name, "NVIDIA L4");
    assert_int_equal(d[3].used_bytes, 1 * GIB);
    assert_false(d[3].has_utilization);
    assert_false(d[3].has_temperature);
}

static void check_no_count(const lx_gpu_info *in, const char *path)
{
    assert_false(in->available);
    assert_int_equal(in->n_devices, 0);
    char want[1200];
    snprintf(want, sizeof want, "NVML not available: %s lacks nvmlDeviceGetCount_v2", path);
    assert_string_equal(in->why, want);
}

static void check_no_temperature(const lx_gpu_info *in, const char *path)
{
    (void)path;
    assert_true(in->available);
    assert_int_equal(in->n_devices, 4);
    for (size_t i = 0; i < 4; i++)
        assert_false(in->devices[i].has_temperature);
    assert_true(in->devices[0].ok && in->devices[0].utilization_percent == 37);
    assert_int_equal(in->used_bytes, 95 * GIB);
}

static void check_missing(const lx_gpu_info *in, const char *path)
{
    assert_false(in->available);
    assert_int_equal(in->n_devices, 0);
    assert_non_null(strstr(in->why, "NVML not available: "));
    assert_non_null(strstr(in->why, path));
}

static void test_nvml_fake(void **state)
{
    (void)state;
    with_reading("libfake_nvml.so", check_four);
}

static void test_nvml_lacking_symbols(void **state)
{
    (void)state;
    with_reading("libfake_nvml_no_count.so", check_no_count);             /* one it needs: no figures */
    with_reading("libfake_nvml_no_temperature.so", check_no_temperature); /* one it can do without */
    with_reading("no-such-libnvidia-ml.so", check_missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule),      cmocka_unit_test(test_only_backend_down),    cmocka_unit_test(test_formats),
        cmocka_unit_test(test_nvml_fake), cmocka_unit_test(test_nvml_lacking_symbols),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
