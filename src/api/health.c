/*
 * /health, /health/live, /health/ready. See health.h.
 * A backend not yet checked counts as up (it is listed "unknown"), so a gateway that just started is
 * healthy until a check says otherwise, and /health/ready does not hold a fresh start back.
 * GPUs: the seed's gpu_memory_used / gpu_memory_total are the sums over the GPUs NVML read; gpus[] lists
 * every GPU NVML counted, each with the enabled backends whose backends.NAME.gpus names it, and each
 * backend lists its own gpus (informational config, so a GPU and the models on it are seen together).
 * /health is open (WatchDog polls it without a token), but a backend's url and the texts of its errors
 * are shown only to a caller that may see details (api/routes.h: the admin, or anyone with auth off);
 * the others get the same keys with null there (the GPUs' error texts too), and the statuses and counts.
 * A drained backend (POST /admin/backends/NAME/drain) keeps its health status; "drained" and
 * "drain_state" say it takes no new request. Draining does not make the gateway unhealthy.
 */
#include "api/health.h"

#include "api/routes.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "backends/loader.h"
#include "queue/admission.h"
#include "observe/gpu.h"
#include "observe/health.h"
#include "utils/buf.h"

static lx_backend *find(lx_api_ctx *ctx, const char *name)
{
    return ctx->admission ? lx_backends_find(lx_admission_backends(ctx->admission), name) : NULL;
}

static bool is_up(void *ud, const char *name)
{
    lx_backend *b = find(ud, name);
    return b == NULL || !lx_backend_is_down(b);
}

static void respond(lx_http_req *req, int status, const lx_buf *body)
{
    static const lx_http_header h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    lx_http_respond(req, status, h, 2, body->p, body->len);
}

static void json_str(lx_buf *out, const char *s)
{
    if (s == NULL) {
        lx_buf_append_str(out, "null");
        return;
    }
    lx_buf_append(out, "\"", 1);
    lx_buf_json_escape(out, s, strlen(s));
    lx_buf_append(out, "\"", 1);
}

void lx_format_uptime(int64_t seconds, char *out, size_t cap)
{
    if (seconds < 0) seconds = 0;
    long long d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60;
    if (d > 0)
        snprintf(out, cap, "%lldd %lldh %lldm", d, h, m);
    else if (h > 0)
        snprintf(out, cap, "%lldh %lldm", h, m);
    else
        snprintf(out, cap, "%lldm", m);
}

static void iso_time(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void backend_json(lx_buf *out, lx_api_ctx *ctx, const lx_backend_conf *bc, bool details)
{
    lx_backend *b = find(ctx, bc->name);
    lx_backend_info info = {0};
    if (b) lx_backend_info_get(b, &info);
    lx_buf_append_str(out, "{\"name\":");
    json_str(out, bc->name);
    lx_buf_append_str(out, ",\"kind\":");
    json_str(out, lx_backend_kind_name(bc->kind));
    lx_buf_append_str(out, ",\"url\":");
    json_str(out, details ? bc->url : NULL);
    lx_buf_append_str(out, ",\"status\":");
    if (b && lx_backend_is_down(b))
        json_str(out, "down");
    else
        json_str(out, lx_health_name(b ? info.health : LX_HEALTH_UNKNOWN));
    lx_buf_printf(out, ",\"drained\":%s,\"drain_state\":", info.drained ? "true" : "false");
    json_str(out, lx_backend_drain_state(&info));
    if (ctx->admission) lx_loader_render_backend(lx_admission_loader(ctx->admission), bc->name, out);
    lx_buf_append_str(out, ",\"circuit\":");
    json_str(out, lx_circuit_name(info.circuit));
    lx_buf_printf(out, ",\"request_failures\":%ld,\"last_request_error\":", info.request_failures);
    json_str(out, details && info.last_request_error && *info.last_request_error ? info.last_request_error : NULL);
    lx_buf_printf(out, ",\"in_flight\":%d,\"consecutive_failures\":%ld,\"last_check\":", info.in_flight,
                  info.consecutive_failures);
    if (info.last_check_wall_s > 0) {
        char ts[32];
        iso_time(info.last_check_wall_s, ts, sizeof ts);
        json_str(out, ts);
    } else
        lx_buf_append_str(out, "null");
    lx_buf_append_str(out, ",\"last_error\":");
    json_str(out, details && info.last_error && *info.last_error ? info.last_error : NULL);
    lx_buf_append_str(out, ",\"gpus\":[");
    for (size_t i = 0; i < bc->n_gpus; i++)
        lx_buf_printf(out, "%s%d", i ? "," : "", bc->gpus[i]);
    lx_buf_append_str(out, "]}");
}

static bool runs_on(const lx_backend_conf *bc, unsigned index)
{
    for (size_t i = 0; i < bc->n_gpus; i++)
        if (bc->gpus[i] >= 0 && (unsigned)bc->gpus[i] == index) return true;
    return false;
}

/* "key":"24GB","key_bytes":N, or both null. */
static void bytes_json(lx_buf *out, const char *key, bool have, uint64_t bytes)
{
    char s[32];
    lx_buf_printf(out, ",\"%s\":", key);
    if (!have) {
        lx_buf_printf(out, "null,\"%s_bytes\":null", key);
        return;
    }
    lx_gpu_format_bytes(bytes, s, sizeof s);
    json_str(out, s);
    lx_buf_printf(out, ",\"%s_bytes\":%llu", key, (unsigned long long)bytes);
}

/* One GPU: its figures (null where NVML gave none), the enabled backends configured on it, its error. */
static void gpu_json(lx_buf *out, const lx_config *c, const lx_gpu_device *d, bool details)
{
    lx_buf_printf(out, "{\"index\":%u,\"name\":", d->index);
    json_str(out, d->name[0] ? d->name : NULL);
    lx_buf_append_str(out, ",\"uuid\":");
    json_str(out, d->uuid[0] ? d->uuid : NULL);
    bytes_json(out, "memory_used", d->ok, d->used_bytes);
    bytes_json(out, "memory_total", d->ok, d->total_bytes);
    if (d->ok && d->has_utilization)
        lx_buf_printf(out, ",\"utilization_percent\":%u", d->utilization_percent);
    else
        lx_buf_append_str(out, ",\"utilization_percent\":null");
    if (d->ok && d->has_temperature)
        lx_buf_printf(out, ",\"temperature_celsius\":%u", d->temperature_c);
    else
        lx_buf_append_str(out, ",\"temperature_celsius\":null");
    lx_buf_append_str(out, ",\"backends\":[");
    bool first = true;
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *bc = &c->backends[i];
        if (!bc->enabled || bc->url == NULL || !runs_on(bc, d->index)) continue;
        if (!first) lx_buf_append(out, ",", 1);
        first = false;
        json_str(out, bc->name);
    }
    lx_buf_append_str(out, "],\"error\":");
    json_str(out, d->ok || !details ? NULL : d->why);
    lx_buf_append(out, "}", 1);
}

/* The seed's gpu_memory_used / gpu_memory_total (sums), gpu (why not every GPU was read) and gpus[]. */
static void gpus_json(lx_buf *out, const lx_config *c, const lx_gpu_info *gpu, bool details)
{
    if (gpu->available) {
        char used[32], total[32];
        lx_gpu_format_bytes(gpu->used_bytes, used, sizeof used);
        lx_gpu_format_bytes(gpu->total_bytes, total, sizeof total);
        lx_buf_printf(out, ",\"gpu_memory_used\":\"%s\",\"gpu_memory_total\":\"%s\"", used, total);
    } else {
        lx_buf_append_str(out, ",\"gpu_memory_used\":null,\"gpu_memory_total\":null");
    }
    lx_buf_append_str(out, ",\"gpu\":");
    json_str(out, details ? gpu->why : NULL);
    lx_buf_append_str(out, ",\"gpus\":[");
    for (size_t i = 0; i < gpu->n_devices; i++) {
        if (i) lx_buf_append(out, ",", 1);
        gpu_json(out, c, &gpu->devices[i], details);
    }
    lx_buf_append(out, "]", 1);
}

void lx_health_full(lx_api_ctx *ctx, lx_http_req *req)
{
    const lx_config *c = ctx->config(ctx->ud);
    lx_gw_health st = lx_gw_health_eval(c, is_up, ctx);
    lx_access who;
    lx_access_who(ctx, req, &who);
    bool vllm_up = false;
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *bc = &c->backends[i];
        if (bc->enabled && bc->url && bc->kind == LX_BACKEND_VLLM && is_up(ctx, bc->name)) vllm_up = true;
    }
    lx_gpu_info gpu = {.why = "GPU memory not read"};
    if (ctx->gpu) lx_gpu_get(ctx->gpu, &gpu);
    int64_t up_s = (int64_t)((lx_now_ns() - ctx->started_ns) / 1000000000u);
    char uptime[48];
    lx_format_uptime(up_s, uptime, sizeof uptime);

    lx_buf out;
    lx_buf_init(&out, 0);
    lx_buf_append_str(&out, "{\"status\":");
    json_str(&out, lx_gw_health_name(st));
    lx_buf_append_str(&out, ",\"model\":");
    json_str(&out, c->default_model);
    gpus_json(&out, c, &gpu, who.sees_details);
    lx_buf_append_str(&out, ",\"uptime\":");
    json_str(&out, uptime);
    lx_buf_printf(&out, ",\"uptime_seconds\":%lld,\"vllm_status\":\"%s\",\"backends\":[", (long long)up_s,
                  vllm_up ? "connected" : "disconnected");
    bool first = true;
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *bc = &c->backends[i];
        if (!bc->enabled || bc->url == NULL) continue;
        if (!first) lx_buf_append(&out, ",", 1);
        first = false;
        backend_json(&out, ctx, bc, who.sees_details);
    }
    lx_buf_append_str(&out, "]}");
    respond(req, st == LX_GW_UNHEALTHY ? 503 : 200, &out);
    lx_buf_free(&out);
}

void lx_health_live(lx_api_ctx *ctx, lx_http_req *req)
{
    (void)ctx;
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_buf_append_str(&out, "{\"status\":\"alive\"}");
    respond(req, 200, &out);
    lx_buf_free(&out);
}

void lx_health_ready(lx_api_ctx *ctx, lx_http_req *req)
{
    bool ready = lx_gw_health_eval(ctx->config(ctx->ud), is_up, ctx) != LX_GW_UNHEALTHY;
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_buf_append_str(&out, ready ? "{\"status\":\"ready\"}" : "{\"status\":\"not_ready\"}");
    respond(req, ready ? 200 : 503, &out);
    lx_buf_free(&out);
}
