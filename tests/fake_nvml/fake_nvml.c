/*
 * A fake NVML for the tests: a shared library exporting the NVML functions Lexora resolves
 * (observe/gpu.c), with the signatures and return codes NVML documents, standing for a machine with four
 * GPUs whose figures are fixed here. Lexora loads it through LEXORA_NVML_LIBRARY.
 *
 *   GPU 0  NVIDIA H100 80GB HBM3   24 GiB of 80 GiB used, 37 % busy, 61 C
 *   GPU 1  NVIDIA H100 80GB HBM3   70 GiB of 80 GiB used, 81 % busy, 74 C
 *   GPU 2  NVIDIA H100 80GB HBM3   its memory cannot be read: NVML_ERROR_GPU_IS_LOST
 *   GPU 3  NVIDIA L4                1 GiB of 24 GiB used; utilisation and temperature NVML_ERROR_NOT_SUPPORTED
 *
 * Built three times (CMakeLists.txt): as is; with FAKE_NVML_NO_COUNT, lacking nvmlDeviceGetCount_v2 (a
 * symbol Lexora needs); and with FAKE_NVML_NO_TEMPERATURE, lacking nvmlDeviceGetTemperature (one it can
 * do without). Every call but nvmlInit_v2 and nvmlErrorString fails with NVML_ERROR_UNINITIALIZED before
 * nvmlInit_v2 and after the matching nvmlShutdown, as NVML's do.
 */
#include <string.h>

enum {
    SUCCESS = 0,
    ERROR_UNINITIALIZED = 1,
    ERROR_INVALID_ARGUMENT = 2,
    ERROR_NOT_SUPPORTED = 3,
    ERROR_INSUFFICIENT_SIZE = 7,
    ERROR_GPU_IS_LOST = 15,
};

typedef struct {
    unsigned long long total, free, used;
} memory_t;

typedef struct {
    unsigned int gpu, memory;
} utilization_t;

typedef struct {
    const char *name, *uuid;
    unsigned long long total_gib, used_gib;
    int memory_rc, sensors_rc;
    unsigned int busy, celsius;
} fake_gpu;

#define GIB 1073741824ull

static const fake_gpu gpus[] = {
    {"NVIDIA H100 80GB HBM3", "GPU-6a1f0c52-0000-4000-8000-000000000000", 80, 24, SUCCESS, SUCCESS, 37, 61},
    {"NVIDIA H100 80GB HBM3", "GPU-6a1f0c52-0000-4000-8000-000000000001", 80, 70, SUCCESS, SUCCESS, 81, 74},
    {"NVIDIA H100 80GB HBM3", "GPU-6a1f0c52-0000-4000-8000-000000000002", 80, 0, ERROR_GPU_IS_LOST, SUCCESS, 0, 0},
    {"NVIDIA L4", "GPU-6a1f0c52-0000-4000-8000-000000000003", 24, 1, SUCCESS, ERROR_NOT_SUPPORTED, 0, 0},
};
#define N_GPUS (sizeof gpus / sizeof gpus[0])

static int inits; /* nvmlInit_v2 calls not yet matched by nvmlShutdown */

/* A device handle is a pointer to its entry. */
static const fake_gpu *gpu_of(void *device)
{
    for (size_t i = 0; i < N_GPUS; i++)
        if (device == (const void *)&gpus[i]) return &gpus[i];
    return NULL;
}

static int copy_text(const char *s, char *out, unsigned int length)
{
    if (out == NULL) return ERROR_INVALID_ARGUMENT;
    if (strlen(s) + 1 > length) return ERROR_INSUFFICIENT_SIZE;
    memcpy(out, s, strlen(s) + 1);
    return SUCCESS;
}

int nvmlInit_v2(void)
{
    inits++;
    return SUCCESS;
}

int nvmlShutdown(void)
{
    if (inits == 0) return ERROR_UNINITIALIZED;
    inits--;
    return SUCCESS;
}

const char *nvmlErrorString(int result)
{
    switch (result) {
    case SUCCESS: return "Success";
    case ERROR_UNINITIALIZED: return "Uninitialized";
    case ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case ERROR_NOT_SUPPORTED: return "Not Supported";
    case ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

#ifndef FAKE_NVML_NO_COUNT
int nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (inits == 0) return ERROR_UNINITIALIZED;
    if (count == NULL) return ERROR_INVALID_ARGUMENT;
    *count = (unsigned int)N_GPUS;
    return SUCCESS;
}
#endif

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device)
{
    if (inits == 0) return ERROR_UNINITIALIZED;
    if (index >= N_GPUS || device == NULL) return ERROR_INVALID_ARGUMENT;
    *device = (void *)&gpus[index];
    return SUCCESS;
}

int nvmlDeviceGetName(void *device, char *name, unsigned int length)
{
    const fake_gpu *g = gpu_of(device);
    if (inits == 0) return ERROR_UNINITIALIZED;
    return g ? copy_text(g->name, name, length) : ERROR_INVALID_ARGUMENT;
}

int nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length)
{
    const fake_gpu *g = gpu_of(device);
    if (inits == 0) return ERROR_UNINITIALIZED;
    return g ? copy_text(g->uuid, uuid, length) : ERROR_INVALID_ARGUMENT;
}

int nvmlDeviceGetMemoryInfo(void *device, memory_t *memory)
{
    const fake_gpu *g = gpu_of(device);
    if (inits == 0) return ERROR_UNINITIALIZED;
    if (g == NULL || memory == NULL) return ERROR_INVALID_ARGUMENT;
    if (g->memory_rc != SUCCESS) return g->memory_rc;
    memory->total = g->total_gib * GIB;
    memory->used = g->used_gib * GIB;
    memory->free = memory->total - memory->used;
    return SUCCESS;
}

int nvmlDeviceGetUtilizationRates(void *device, utilization_t *utilization)
{
    const fake_gpu *g = gpu_of(device);
    if (inits == 0) return ERROR_UNINITIALIZED;
    if (g == NULL || utilization == NULL) return ERROR_INVALID_ARGUMENT;
    if (g->sensors_rc != SUCCESS) return g->sensors_rc;
    utilization->gpu = g->busy;
    utilization->memory = g->busy / 2;
    return SUCCESS;
}

#ifndef FAKE_NVML_NO_TEMPERATURE
int nvmlDeviceGetTemperature(void *device, int sensor, unsigned int *temp)
{
    const fake_gpu *g = gpu_of(device);
    if (inits == 0) return ERROR_UNINITIALIZED;
    if (g == NULL || temp == NULL || sensor != 0) return ERROR_INVALID_ARGUMENT;
    if (g->sensors_rc != SUCCESS) return g->sensors_rc;
    *temp = g->celsius;
    return SUCCESS;
}
#endif
