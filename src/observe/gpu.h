/*
 * Every GPU of the machine for GET /health and GET /metrics, from NVML (NVIDIA's management library)
 * loaded at run time with dlopen("libnvidia-ml.so.1"): no link-time dependency, and a machine without the
 * driver simply has no figures — lx_gpu_get then says why — never a failure of the gateway.
 *
 * The reading is refreshed off the request path: a loop timer reads every device NVML counts at once and
 * then every LX_GPU_REFRESH_MS; a request only copies the cached figures. Per device: its index, name,
 * UUID, memory used and total, utilisation and temperature, each where NVML gives it; a device whose
 * memory cannot be read is listed with the reason and left out of the sums, the others are still read.
 * NVML is initialised once and shut down in lx_gpu_free. The environment variable LEXORA_NVML_LIBRARY
 * names another library file (the tests load a fake one through it).
 * Ownership: lx_gpu_new's result is freed by lx_gpu_free (the memory goes in the timer's close callback,
 * so the loop must run). Loop thread only.
 */
#ifndef LX_GPU_H
#define LX_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define LX_GPU_REFRESH_MS 5000
#define LX_GPU_MAX        64 /* devices reported; NVML's further ones are left out (and logged once) */

typedef struct lx_gpu lx_gpu;

typedef struct {
    unsigned index; /* NVML's index (nvidia-smi's; CUDA's too with CUDA_DEVICE_ORDER=PCI_BUS_ID) */
    bool ok;        /* memory was read: used_bytes and total_bytes are valid */
    char name[96];  /* "" when NVML did not give it */
    char uuid[96];  /* "GPU-...", or "" when NVML did not give it */
    uint64_t used_bytes, total_bytes;
    bool has_utilization;
    unsigned utilization_percent; /* of the last sample period, 0..100 */
    bool has_temperature;
    unsigned temperature_c;
    char why[160]; /* when !ok: what failed, e.g. "nvmlDeviceGetMemoryInfo: GPU is lost" */
} lx_gpu_device;

typedef struct {
    bool available;                   /* at least one device's memory was read: the sums below are valid */
    uint64_t used_bytes, total_bytes; /* sums over the devices whose memory was read */
    const char *why; /* NULL when every device was read; else why not all (NVML missing, or a device failed) */
    const lx_gpu_device *devices; /* every device NVML counted (at most LX_GPU_MAX), by index */
    size_t n_devices;
} lx_gpu_info;

lx_gpu *lx_gpu_new(uv_loop_t *loop);
void lx_gpu_free(lx_gpu *g);
/* The last reading (pointers valid until the next loop turn). */
void lx_gpu_get(const lx_gpu *g, lx_gpu_info *out);

/* "24GB", "512MB": whole GiB when at least one, else whole MiB. */
void lx_gpu_format_bytes(uint64_t bytes, char *out, size_t cap);

#endif
