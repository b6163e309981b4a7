/*
 * NVML through dlopen. See gpu.h.
 *
 * Invariants: the library is opened and nvmlInit_v2 called at most once (the first reading); a failure
 * there is final for the process's life (the reason is kept, and no further attempt is made). A failed
 * reading after a good init keeps the reason of that failure until a reading succeeds.
 */
#include "observe/gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "utils/common.h"
#include "utils/log.h"

typedef int nvml_return;
typedef void *nvml_device;
typedef struct {
    unsigned long long total, free, used;
} nvml_memory;

struct lx_gpu {
    uv_timer_t timer;
    void *lib;
    bool tried, init_ok, have;
    uint64_t used, total;
    char why[256];
    nvml_return (*init)(void);
    nvml_return (*shutdown)(void);
    nvml_return (*by_index)(unsigned int, nvml_device *);
    nvml_return (*mem_info)(nvml_device, nvml_memory *);
    const char *(*error_string)(nvml_return);
};

static const char *nvml_error(lx_gpu *g, nvml_return rc)
{
    const char *s = g->error_string ? g->error_string(rc) : NULL;
    return s ? s : "unknown error";
}

static bool open_nvml(lx_gpu *g)
{
    const char *name = getenv("LEXORA_NVML_LIBRARY");
    if (name == NULL || *name == '\0') name = "libnvidia-ml.so.1";
    g->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (g->lib == NULL) {
        const char *e = dlerror();
        snprintf(g->why, sizeof g->why, "NVML not available: %s", e ? e : name);
        return false;
    }
    *(void **)&g->init = dlsym(g->lib, "nvmlInit_v2");
    *(void **)&g->shutdown = dlsym(g->lib, "nvmlShutdown");
    *(void **)&g->by_index = dlsym(g->lib, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&g->mem_info = dlsym(g->lib, "nvmlDeviceGetMemoryInfo");
    *(void **)&g->error_string = dlsym(g->lib, "nvmlErrorString");
    if (!g->init || !g->by_index || !g->mem_info) {
        snprintf(g->why, sizeof g->why,
                 "NVML not available: %s lacks nvmlInit_v2, "
                 "nvmlDeviceGetHandleByIndex_v2 or nvmlDeviceGetMemoryInfo",
                 name);
        return false;
    }
    nvml_return rc = g->init();
    if (rc != 0) {
        snprintf(g->why, sizeof g->why, "NVML not available: nvmlInit_v2: %s", nvml_error(g, rc));
        return false;
    }
    g->init_ok = true;
    return true;
}

static void refresh(lx_gpu *g)
{
    if (!g->tried) {
        g->tried = true;
        if (!open_nvml(g)) {
            LX_INFO(NULL, "GPU memory not reported: %s", g->why);
            uv_timer_stop(&g->timer);
            return;
        }
    }
    if (!g->init_ok) return;
    nvml_device dev = NULL;
    nvml_memory mem = {0};
    nvml_return rc = g->by_index(0, &dev);
    if (rc != 0) {
        snprintf(g->why, sizeof g->why, "NVML: no GPU 0: %s", nvml_error(g, rc));
        g->have = false;
        return;
    }
    rc = g->mem_info(dev, &mem);
    if (rc != 0) {
        snprintf(g->why, sizeof g->why, "NVML: nvmlDeviceGetMemoryInfo: %s", nvml_error(g, rc));
        g->have = false;
        return;
    }
    g->have = true;
    g->used = mem.used;
    g->total = mem.total;
    g->why[0] = '\0';
}

static void on_tick(uv_timer_t *t) { refresh(t->data); }

lx_gpu *lx_gpu_new(uv_loop_t *loop)
{
    lx_gpu *g = lx_xcalloc(1, sizeof *g);
    snprintf(g->why, sizeof g->why, "GPU memory not read yet");
    uv_timer_init(loop, &g->timer);
    g->timer.data = g;
    uv_timer_start(&g->timer, on_tick, 0, LX_GPU_REFRESH_MS);
    uv_unref((uv_handle_t *)&g->timer);
    return g;
}

static void on_closed(uv_handle_t *h) { free(h->data); }

void lx_gpu_free(lx_gpu *g)
{
    if (g == NULL) return;
    uv_timer_stop(&g->timer);
    if (g->init_ok && g->shutdown) g->shutdown();
    if (g->lib) dlclose(g->lib);
    g->lib = NULL;
    uv_close((uv_handle_t *)&g->timer, on_closed);
}

void lx_gpu_get(const lx_gpu *g, lx_gpu_info *out)
{
    *out = (lx_gpu_info){.available = g->have, .used_bytes = g->used, .total_bytes = g->total, .why = g->why};
}

void lx_gpu_format_bytes(uint64_t bytes, char *out, size_t cap)
{
    const uint64_t gib = 1ull << 30, mib = 1ull << 20;
    if (bytes >= gib)
        snprintf(out, cap, "%lluGB", (unsigned long long)((bytes + gib / 2) / gib));
    else
        snprintf(out, cap, "%lluMB", (unsigned long long)((bytes + mib / 2) / mib));
}
