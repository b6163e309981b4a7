/*
 * GET /stats/stream (see stats_stream.h).
 *
 * Invariants:
 *  - streams[0 .. n) are the open streams, each a request begun with lx_http_stream_begin and not yet
 *    ended or aborted; a slot leaves the array (the last one moves into it) when its stream ends;
 *  - the timer runs exactly while n > 0;
 *  - the request handles are never given data (lx_http_req_set_data): the pipeline's on_abort and
 *    on_drain see NULL for them and do nothing.
 */
#include "api/stats_stream.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/observe.h"
#include "api/routes.h"
#include "backends/backend.h"
#include "backends/served.h"
#include "observe/gpu.h"
#include "observe/stats.h"
#include "queue/admission.h"
#include "utils/log.h"

typedef struct {
    lx_http_req *req;
    lx_history_cursor cur;
} stream;

struct lx_stats_streams {
    uv_timer_t timer;
    lx_api_ctx *ctx;
    stream streams[LX_STATS_STREAMS_MAX];
    size_t n;
    uint64_t ticks;
};

lx_stats_streams *lx_stats_streams_new(uv_loop_t *loop, lx_api_ctx *ctx)
{
    lx_stats_streams *ss = lx_xcalloc(1, sizeof *ss);
    ss->ctx = ctx;
    uv_timer_init(loop, &ss->timer);
    ss->timer.data = ss;
    return ss;
}

static void on_closed(uv_handle_t *h) { free(h->data); }

void lx_stats_streams_free(lx_stats_streams *ss)
{
    if (ss == NULL) return;
    lx_stats_streams_end_all(ss);
    uv_close((uv_handle_t *)&ss->timer, on_closed);
}

size_t lx_stats_streams_count(const lx_stats_streams *ss) { return ss ? ss->n : 0; }

static void forget(lx_stats_streams *ss, size_t i)
{
    ss->streams[i] = ss->streams[--ss->n];
    if (ss->n == 0) uv_timer_stop(&ss->timer);
}

void lx_stats_streams_end_all(lx_stats_streams *ss)
{
    if (ss == NULL) return;
    while (ss->n) {
        lx_http_req *req = ss->streams[ss->n - 1].req;
        forget(ss, ss->n - 1);
        lx_http_stream_end(req);
    }
}

bool lx_stats_streams_abort(lx_stats_streams *ss, lx_http_req *req)
{
    if (ss == NULL) return false;
    for (size_t i = 0; i < ss->n; i++)
        if (ss->streams[i].req == req) {
            forget(ss, i);
            return true;
        }
    return false;
}

/* ---------- "state": what the page draws that /stats does not hold ---------- */

static void json_string(lx_buf *b, const char *s)
{
    lx_buf_append(b, "\"", 1);
    if (s) lx_buf_json_escape(b, s, strlen(s));
    lx_buf_append(b, "\"", 1);
}

static const lx_backend_conf *backend_conf(const lx_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (strcmp(c->backends[i].name, name) == 0) return &c->backends[i];
    return NULL;
}

/* The models b serves now (backends/served.h). */
static void backend_models(lx_buf *out, const lx_served *sv, const lx_backend *b)
{
    lx_buf_append_str(out, "[");
    bool first = true;
    for (size_t i = 0; i < lx_served_count(sv); i++) {
        const lx_model *m = lx_served_at(sv, i);
        for (size_t k = 0; k < lx_model_servers(m); k++)
            if (lx_model_server(m, k) == b) {
                if (!first) lx_buf_append_str(out, ",");
                first = false;
                json_string(out, lx_model_name(m));
                break;
            }
    }
    lx_buf_append_str(out, "]");
}

static void state_backends(lx_buf *out, lx_api_ctx *ctx, const lx_config *c)
{
    lx_buf_append_str(out, "\"backends\":[");
    lx_backends *bs = ctx->admission ? lx_admission_backends(ctx->admission) : NULL;
    const lx_served *sv = ctx->admission ? lx_admission_served(ctx->admission) : NULL;
    size_t n = bs ? lx_backends_count(bs) : 0;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        lx_backend *b = lx_backends_at(bs, i);
        lx_backend_info info;
        lx_backend_info_get(b, &info);
        if (info.retired) continue;
        const lx_backend_conf *bc = backend_conf(c, info.name);
        if (!first) lx_buf_append_str(out, ",");
        first = false;
        lx_buf_append_str(out, "{\"name\":");
        json_string(out, info.name);
        lx_buf_append_str(out, ",\"kind\":");
        json_string(out, lx_backend_kind_name(info.kind));
        lx_buf_append_str(out, ",\"status\":");
        json_string(out, lx_health_name(info.health));
        lx_buf_append_str(out, ",\"circuit\":");
        json_string(out, lx_circuit_name(info.circuit));
        lx_buf_printf(out, ",\"in_flight\":%d,\"max_concurrency\":%d,\"saturated\":%s,\"models\":", info.in_flight,
                      info.max_concurrency, info.saturated ? "true" : "false");
        backend_models(out, sv, b);
        lx_buf_append_str(out, ",\"gpus\":[");
        for (size_t g = 0; bc && g < bc->n_gpus; g++)
            lx_buf_printf(out, "%s%d", g ? "," : "", bc->gpus[g]);
        lx_buf_append_str(out, "]}");
    }
    lx_buf_append_str(out, "]");
}

static void state_aliases(lx_buf *out, const lx_config *c)
{
    lx_buf_append_str(out, ",\"aliases\":[");
    for (size_t i = 0; i < c->routing.n_aliases; i++) {
        const lx_alias *a = &c->routing.aliases[i];
        lx_buf_append_str(out, i ? ",{\"name\":" : "{\"name\":");
        json_string(out, a->name);
        lx_buf_append_str(out, ",\"models\":[");
        for (size_t k = 0; k < a->n_models; k++) {
            if (k) lx_buf_append_str(out, ",");
            json_string(out, a->models[k]);
        }
        lx_buf_append_str(out, "]}");
    }
    lx_buf_append_str(out, "]");
}

static void limit_json(lx_buf *out, const lx_user_limit *l)
{
    lx_buf_printf(out, "{\"requests_per_minute\":%ld,\"tokens_per_minute\":%ld}", l->requests_per_minute,
                  l->tokens_per_minute);
}

static void state_limits(lx_buf *out, const lx_config *c)
{
    lx_buf_append_str(out, ",\"limits\":{\"default\":");
    limit_json(out, &c->rate_limits.default_limit);
    lx_buf_append_str(out, ",\"users\":{");
    for (size_t i = 0; i < c->rate_limits.n_users; i++) {
        if (i) lx_buf_append_str(out, ",");
        json_string(out, c->rate_limits.users[i].name);
        lx_buf_append_str(out, ":");
        limit_json(out, &c->rate_limits.users[i]);
    }
    lx_buf_append_str(out, "}}");
}

static void state_gpus(lx_buf *out, const lx_api_ctx *ctx)
{
    lx_gpu_info gpu = {0};
    if (ctx->gpu) lx_gpu_get(ctx->gpu, &gpu);
    lx_buf_append_str(out, ",\"gpus\":[");
    for (size_t i = 0; i < gpu.n_devices; i++) {
        const lx_gpu_device *d = &gpu.devices[i];
        lx_buf_printf(out, "%s{\"index\":%u,\"name\":", i ? "," : "", d->index);
        json_string(out, d->name);
        if (d->ok)
            lx_buf_printf(out, ",\"used_bytes\":%llu,\"total_bytes\":%llu}", (unsigned long long)d->used_bytes,
                          (unsigned long long)d->total_bytes);
        else
            lx_buf_append_str(out, ",\"used_bytes\":null,\"total_bytes\":null}");
    }
    lx_buf_append_str(out, "]");
}

static void render_state(lx_buf *out, lx_api_ctx *ctx)
{
    const lx_config *c = ctx->config(ctx->ud);
    lx_buf_append_str(out, "{");
    state_backends(out, ctx, c);
    state_aliases(out, c);
    state_limits(out, c);
    state_gpus(out, ctx);
    lx_buf_printf(out, ",\"auth\":%s,\"shutting_down\":%s}", c->auth.enabled ? "true" : "false",
                  ctx->shutting_down(ctx->ud) ? "true" : "false");
}

/* ---------- the events ---------- */

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What every stream's event of this tick shares: the /stats object and the state. */
typedef struct {
    lx_buf stats, state;
} shared;

static void shared_render(shared *sh, lx_api_ctx *ctx)
{
    lx_buf_init(&sh->stats, 0);
    lx_buf_init(&sh->state, 0);
    lx_observe_render_stats(ctx, &sh->stats);
    render_state(&sh->state, ctx);
}

static void shared_free(shared *sh)
{
    lx_buf_free(&sh->stats);
    lx_buf_free(&sh->state);
}

static void send_event(lx_api_ctx *ctx, stream *st, const shared *sh)
{
    lx_buf ev;
    lx_buf_init(&ev, 0);
    lx_buf_printf(&ev, "data: {\"time\":%lld,\"full\":%s,\"stats\":", wall_ms(), st->cur.started ? "false" : "true");
    lx_buf_append(&ev, sh->stats.p, sh->stats.len);
    lx_buf_append_str(&ev, ",\"state\":");
    lx_buf_append(&ev, sh->state.p, sh->state.len);
    lx_buf_append_str(&ev, ",");
    lx_stats_render_history(ctx->stats, &st->cur, &ev);
    lx_buf_append_str(&ev, "}\n\n");
    lx_http_stream_write(st->req, ev.p, ev.len);
    lx_buf_free(&ev);
}

static void on_tick(uv_timer_t *t)
{
    lx_stats_streams *ss = t->data;
    ss->ticks++;
    bool ping = ss->ticks % LX_STATS_STREAM_PING_TICKS == 0;
    shared sh;
    shared_render(&sh, ss->ctx);
    for (size_t i = 0; i < ss->n; i++) {
        stream *st = &ss->streams[i];
        if (lx_http_pending_bytes(st->req) > LX_HTTP_WRITE_HIGH_WATER) continue; /* catches up later */
        send_event(ss->ctx, st, &sh);
        if (ping) lx_http_stream_write(st->req, ": ping\n\n", 8);
    }
    shared_free(&sh);
}

void lx_observe_stats_stream(lx_api_ctx *ctx, lx_http_req *req)
{
    lx_stats_streams *ss = ctx->streams;
    if (ss == NULL || ss->n >= LX_STATS_STREAMS_MAX || ctx->shutting_down(ctx->ud)) {
        lx_respond_error(req, LX_ERR_TOO_MANY_CONNECTIONS,
                         "Too many /stats/stream clients at once; close another dashboard and retry.", NULL, NULL);
        return;
    }
    static const lx_http_header h[] = {
        {"Content-Type", "text/event-stream"}, {"Cache-Control", "no-store"}, {"X-Accel-Buffering", "no"}};
    lx_http_stream_begin(req, 200, h, LX_ARRAY_LEN(h));
    stream *st = &ss->streams[ss->n++];
    *st = (stream){.req = req};
    lx_http_stream_write(req, "retry: 2000\n\n", 13);
    shared sh;
    shared_render(&sh, ctx);
    send_event(ctx, st, &sh);
    shared_free(&sh);
    if (ss->n == 1) uv_timer_start(&ss->timer, on_tick, LX_STATS_STREAM_TICK_MS, LX_STATS_STREAM_TICK_MS);
}
