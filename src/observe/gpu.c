/*
 * NVML through dlopen. See gpu.h.
 *
 * Invariants: the library is opened and nvmlInit_v2 called at most once (the first reading); a failure
 * there (no library, a required symbol missing, init failing) is final for the process's life: the reason
 * is kept and no further attempt is made. After a good init every reading re-counts the devices and reads
 * each one afresh; a device that fails keeps its reason until a reading of it succeeds, and the others are
 * read regardless. The optional symbols (name, UUID, utilisation, temperature, error strings) may be
 * missing: their figures are then simply absent. A device's change between readable and not is logged once.
 */
#include "observe/gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/common.h"
#include "utils/log.h"

/* NVML's types, as its API documents them (nvml.h is not needed to build). */
typedef int nvml_return; /* nvmlReturn_t: 0 is NVML_SUCCESS */
typedef void *nvml_device;
typedef struct {
    unsigned long long total, free, used;
} nvml_memory; /* nvmlMemory_t */
typedef struct {
    unsigned int gpu, memory;
} nvml_utilization;            /* nvmlUtilization_t, percent */
#define NVML_TEMPERATURE_GPU 0 /* nvmlTemperatureSensors_t */

typedef struct {
    nvml_return (*init)(void);
    nvml_return (*shutdown)(void);
    nvml_return (*count)(unsigned int *);
    nvml_return (*by_index)(unsigned int, nvml_device *);
    nvml_return (*mem_info)(nvml_device, nvml_memory *);
    nvml_return (*name)(nvml_device, char *, unsigned int);
    nvml_return (*uuid)(nvml_device, char *, unsigned int);
    nvml_return (*utilization)(nvml_device, nvml_utilization *);
    nvml_return (*temperature)(nvml_device, int, unsigned int *);
    const char *(*error_string)(nvml_return);
} nvml_api;

static const struct {
    const char *name;
    size_t off;
    bool required;
} symbols[] = {
    {"nvmlInit_v2", offsetof(nvml_api, init), true},
    {"nvmlShutdown", offsetof(nvml_api, shutdown), true},
    {"nvmlDeviceGetCount_v2", offsetof(nvml_api, count), true},
    {"nvmlDeviceGetHandleByIndex_v2", offsetof(nvml_api, by_index), true},
    {"nvmlDeviceGetMemoryInfo", offsetof(nvml_api, mem_info), true},
    {"nvmlDeviceGetName", offsetof(nvml_api, name), false},
    {"nvmlDeviceGetUUID", offsetof(nvml_api, uuid), false},
    {"nvmlDeviceGetUtilizationRates", offsetof(nvml_api, utilization), false},
    {"nvmlDeviceGetTemperature", offsetof(nvml_api, temperature), false},
    {"nvmlErrorString", offsetof(nvml_api, error_string), false},
};

struct lx_gpu {
    uv_timer_t timer;
    void *lib;
    nvml_api api;
    bool tried, init_ok, warned_many;
    lx_gpu_device dev[LX_GPU_MAX];
    size_t n_dev;
    uint64_t used, total;
    size_t n_ok;
    char why[256]; /* "" when every device was read */
};

static const char *nvml_error(const lx_gpu *g, nvml_return rc)
{
    const char *s = g->api.error_string ? g->api.error_string(rc) : NULL;
    return s ? s : "unknown error";
}

/* Resolves the symbols; false (why set) when a required one is missing. */
static bool bind_symbols(lx_gpu *g, const char *file)
{
    char missing[160] = "";
    size_t len = 0;
    for (size_t i = 0; i < LX_ARRAY_LEN(symbols); i++) {
        void *sym = dlsym(g->lib, symbols[i].name);
        memcpy((char *)&g->api + symbols[i].off, &sym, sizeof sym);
        if (sym || !symbols[i].required || len >= sizeof missing) continue;
        int n = snprintf(missing + len, sizeof missing - len, "%s%s", len ? ", " : "", symbols[i].name);
        if (n > 0) len += (size_t)n;
    }
    if (len == 0) return true;
    snprintf(g->why, sizeof g->why, "NVML not available: %s lacks %s", file, missing);
    return false;
}

static bool open_nvml(lx_gpu *g)
{
    const char *file = getenv("LEXORA_NVML_LIBRARY");
    if (file == NULL || *file == '\0') file = "libnvidia-ml.so.1";
    g->lib = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (g->lib == NULL) {
        const char *e = dlerror();
        snprintf(g->why, sizeof g->why, "NVML not available: %s", e ? e : file);
        return false;
    }
    if (!bind_symbols(g, file)) return false;
    nvml_return rc = g->api.init();
    if (rc != 0) {
        snprintf(g->why, sizeof g->why, "NVML not available: nvmlInit_v2: %s", nvml_error(g, rc));
        return false;
    }
    g->init_ok = true;
    return true;
}

/* A string NVML wrote into buf (cap bytes), or "" when the call is missing or failed. */
static void read_text(nvml_return (*fn)(nvml_device, char *, unsigned int), nvml_device h, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (fn == NULL || fn(h, buf, (unsigned int)cap) != 0) buf[0] = '\0';
    buf[cap - 1] = '\0';
}

static void read_device(const lx_gpu *g, unsigned index, lx_gpu_device *d)
{
    *d = (lx_gpu_device){.index = index};
    nvml_device h = NULL;
    nvml_return rc = g->api.by_index(index, &h);
    if (rc != 0) {
        snprintf(d->why, sizeof d->why, "nvmlDeviceGetHandleByIndex_v2: %s", nvml_error(g, rc));
        return;
    }
    read_text(g->api.name, h, d->name, sizeof d->name);
    read_text(g->api.uuid, h, d->uuid, sizeof d->uuid);
    nvml_memory mem = {0};
    rc = g->api.mem_info(h, &mem);
    if (rc != 0) {
        snprintf(d->why, sizeof d->why, "nvmlDeviceGetMemoryInfo: %s", nvml_error(g, rc));
        return;
    }
    d->ok = true;
    d->used_bytes = mem.used;
    d->total_bytes = mem.total;
    nvml_utilization u;
    if (g->api.utilization && g->api.utilization(h, &u) == 0) {
        d->has_utilization = true;
        d->utilization_percent = LX_MIN(u.gpu, 100u);
    }
    unsigned int t;
    if (g->api.temperature && g->api.temperature(h, NVML_TEMPERATURE_GPU, &t) == 0) {
        d->has_temperature = true;
        d->temperature_c = t;
    }
}

static void read_all(lx_gpu *g)
{
    unsigned int n = 0;
    nvml_return rc = g->api.count(&n);
    if (rc != 0) {
        snprintf(g->why, sizeof g->why, "NVML: nvmlDeviceGetCount_v2: %s", nvml_error(g, rc));
        g->n_dev = g->n_ok = 0;
        return;
    }
    if (n > LX_GPU_MAX && !g->warned_many) {
        LX_WARN(NULL, "NVML counts %u GPUs; only the first %d are reported", n, LX_GPU_MAX);
        g->warned_many = true;
    }
    n = LX_MIN(n, (unsigned int)LX_GPU_MAX);
    g->used = g->total = 0;
    g->n_ok = 0;
    g->why[0] = '\0';
    for (unsigned int i = 0; i < n; i++) {
        bool was_ok = i >= g->n_dev || g->dev[i].ok;
        lx_gpu_device *d = &g->dev[i];
        read_device(g, i, d);
        if (was_ok && !d->ok) LX_WARN(NULL, "GPU %u not read: %s", i, d->why);
        if (!was_ok && d->ok) LX_INFO(NULL, "GPU %u read again", i);
        if (d->ok) {
            g->used += d->used_bytes;
            g->total += d->total_bytes;
            g->n_ok++;
        } else if (g->why[0] == '\0') {
            snprintf(g->why, sizeof g->why, "NVML: GPU %u: %s", i, d->why);
        }
    }
    g->n_dev = n;
    if (n == 0) snprintf(g->why, sizeof g->why, "NVML: no GPU");
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
    if (g->init_ok) read_all(g);
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
    if (g->init_ok && g->api.shutdown) g->api.shutdown();
    if (g->lib) dlclose(g->lib);
    g->lib = NULL;
    uv_close((uv_handle_t *)&g->timer, on_closed);
}

void lx_gpu_get(const lx_gpu *g, lx_gpu_info *out)
{
    *out = (lx_gpu_info){
        .available = g->n_ok > 0,
        .used_bytes = g->used,
        .total_bytes = g->total,
        .why = g->why[0] ? g->why : NULL,
        .devices = g->dev,
        .n_devices = g->n_dev,
    };
}

void lx_gpu_format_bytes(uint64_t bytes, char *out, size_t cap)
{
    const uint64_t gib = 1ull << 30, mib = 1ull << 20;
    if (bytes >= gib)
        snprintf(out, cap, "%lluGB", (unsigned long long)((bytes + gib / 2) / gib));
    else
        snprintf(out, cap, "%lluMB", (unsigned long long)((bytes + mib / 2) / mib));
}
