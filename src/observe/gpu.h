/*
 * GPU memory for GET /health, from NVML (NVIDIA's management library) loaded at run time with
 * dlopen("libnvidia-ml.so.1"): no link-time dependency, and a machine without the driver simply has no
 * figures — lx_gpu_get then says why — never a failure of the gateway.
 *
 * The reading is refreshed off the request path: a loop timer reads device 0 at once and then every
 * LX_GPU_REFRESH_MS; a request only copies the cached figures. NVML is initialised once and shut down in
 * lx_gpu_free. The environment variable LEXORA_NVML_LIBRARY names another library file (tests use it
 * to stand for a machine without the driver).
 * Ownership: lx_gpu_new's result is freed by lx_gpu_free (the memory goes in the timer's close callback,
 * so the loop must run). Loop thread only.
 */
#ifndef LX_GPU_H
#define LX_GPU_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define LX_GPU_REFRESH_MS 5000

typedef struct lx_gpu lx_gpu;

typedef struct {
    bool available;      /* the figures below are valid */
    uint64_t used_bytes; /* device 0 */
    uint64_t total_bytes;
    const char *why; /* when not available: the reason, e.g. "NVML not available: ..." */
} lx_gpu_info;

lx_gpu *lx_gpu_new(uv_loop_t *loop);
void lx_gpu_free(lx_gpu *g);
/* The last reading (pointers valid until the next loop turn). */
void lx_gpu_get(const lx_gpu *g, lx_gpu_info *out);

/* "24GB", "512MB": whole GiB when at least one, else whole MiB. */
void lx_gpu_format_bytes(uint64_t bytes, char *out, size_t cap);

#endif
