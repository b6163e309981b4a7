/*
 * GET /stats/stream: the live dashboard's feed, as Server-Sent Events. Each event is one JSON object,
 *   data: {"time":UNIX_MS,"full":BOOL,"stats":{...GET /stats...},"state":{...},"series":...,
 *          "percentiles":...,"recent":[...]}
 * sent when the client connects and then once a second: "stats" is what GET /stats shows; "state" is
 * what the page draws that /stats does not hold (each backend's health, circuit, slots and models, the
 * models and aliases, the per-user limits, the GPUs); the history members are observe/history.h's: the
 * first event (full: true) carries the whole 15 minutes and the last 200 requests, later ones only the
 * seconds completed and the requests finished since. A comment line (": ping") every 15 s is the
 * heartbeat.
 *
 * At most LX_STATS_STREAMS_MAX streams at once (more get 503 too_many_connections). A client that does
 * not keep up (over LX_HTTP_WRITE_HIGH_WATER bytes unsent) misses ticks; its cursor does not move, so
 * the next event it gets catches it up. A stream ends when its client leaves (the server's on_abort,
 * which the gateway hands to lx_stats_streams_abort) or when the gateway shuts down
 * (lx_stats_streams_end_all). One 1 s timer runs while any stream is open.
 *
 * The gateway owns the lx_stats_streams (gateway_observe.c) and hands it to handlers as ctx->streams.
 * Loop thread only.
 */
#ifndef LX_STATS_STREAM_H
#define LX_STATS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "api/context.h"
#include "http/server.h"

#define LX_STATS_STREAMS_MAX       16
#define LX_STATS_STREAM_TICK_MS    1000
#define LX_STATS_STREAM_PING_TICKS 15

typedef struct lx_stats_streams lx_stats_streams;

/* ctx must outlive the streams (it is the gateway's). */
lx_stats_streams *lx_stats_streams_new(uv_loop_t *loop, lx_api_ctx *ctx);
/* Ends every stream, then frees (the memory goes in the timer's close callback: the loop must run). */
void lx_stats_streams_free(lx_stats_streams *ss);
/* Ends every stream (a graceful shutdown: its connection may then close). */
void lx_stats_streams_end_all(lx_stats_streams *ss);
/* The client of req left: if req is one of the streams, forget it and return true. */
bool lx_stats_streams_abort(lx_stats_streams *ss, lx_http_req *req);
/* Streams open now. */
size_t lx_stats_streams_count(const lx_stats_streams *ss);

/* GET /stats/stream (ctx->streams; 503 when it is NULL or full). */
void lx_observe_stats_stream(lx_api_ctx *ctx, lx_http_req *req);

#endif
