/*
 * Fuzz target: lx_vllm_metrics_parse (backends/backend.c), which reads a backend's Prometheus text
 * (GET /metrics, up to LX_BACKEND_METRICS_MAX bytes) about once a second for adaptive dispatch.
 *
 * Checks: the result says whether either gauge was found, and what was found is a finite number
 * (a NaN or an infinity would make the saturation test in backend.c meaningless, and is not JSON
 * where /stats and /health show it).
 */
#include <math.h>
#include <string.h>

#include "backends/backend.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lx_vllm_load load;
    memset(&load, 0, sizeof load);
    bool found = lx_vllm_metrics_parse((const char *)data, size, &load);
    LX_FUZZ_CHECK(found == (load.has_waiting || load.has_kv));
    if (load.has_kv) LX_FUZZ_CHECK(isfinite(load.kv_usage));
    if (load.has_waiting) LX_FUZZ_CHECK(isfinite(load.waiting));
    return 0;
}
