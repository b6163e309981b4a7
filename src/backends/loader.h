/*
 * Models loaded and unloaded on demand (backends.NAME.load), so one GPU server serves more models than fit
 * in its memory at once. For each backend with a load: section, the state of each model it lists:
 *
 *   unloaded → loading → loaded → unloading → unloaded (or sleeping: vLLM's sleep mode), and failed when a
 *   load failed or timed out (the next request tries again: no retry loop).
 *
 * How each kind loads (backends/kind.h, load and unload): Ollama POST /api/generate {"model", "keep_alive"}
 * (no prompt; keep_alive 0 unloads); vLLM a LoRA model (lora_path) by /v1/load_lora_adapter and
 * /v1/unload_lora_adapter, its base model with sleep_mode by /wake_up and /sleep?level=1; llama.cpp in router
 * mode POST /models/load and /models/unload {"model"}. A backend's models start unloaded (a vLLM base model
 * with sleep_mode: loaded, as vLLM starts awake); loading one that is loaded already costs the backend
 * nothing, so the first request after a start may send a load that finds it there (a kind's control_done
 * reads a backend's "already loaded" or "not loaded" answer as done).
 *
 * The policy, re-decided at every change and once a second (the tick):
 *  - a request for a model that is not loaded waits in the model's line (queue/admission.c); with on_demand
 *    its load starts once, however many wait; without, it is refused (503 model_not_loaded);
 *  - max_loaded: when loaded and loading models fill it, the model with the oldest waiter is loaded after
 *    the least recently used loaded model that nobody used or waited for in the last switch_after_seconds is
 *    unloaded; else, once the oldest waiter has waited switch_after_seconds, the least recently used loaded
 *    model takes no new request and is unloaded when its requests in flight finish. So switches are bounded
 *    by time (one per switch_after_seconds at most), never a swap per request;
 *  - no model loaded less than min_resident_seconds ago is unloaded; one nobody used for
 *    idle_unload_seconds is (0: never);
 *  - a load that fails or takes longer than load_timeout_seconds is failed: its waiters are refused
 *    (503 model_load_failed, with the reason), and the next request tries again.
 * Loop thread only.
 */
#ifndef LX_LOADER_H
#define LX_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "backends/backend.h"
#include "config.h"
#include "http/client.h"
#include "utils/buf.h"

typedef enum {
    LX_LOAD_UNLOADED = 0,
    LX_LOAD_LOADING,
    LX_LOAD_LOADED,
    LX_LOAD_UNLOADING,
    LX_LOAD_SLEEPING,
    LX_LOAD_FAILED,
} lx_load_state;

const char *lx_load_state_name(lx_load_state s);

typedef struct {
    /* Requests waiting in model's line; *oldest_ns: when the oldest was submitted (lx_now_ns clock). */
    size_t (*waiting)(void *ud, const char *model, uint64_t *oldest_ns);
    /* A model became loaded (its waiters may go), or one stopped taking requests. */
    void (*changed)(void *ud);
    /* A load failed: its waiters are to be refused, with why. */
    void (*failed)(void *ud, const char *model, const char *why);
    void *ud;
} lx_loader_cbs;

typedef struct lx_loader lx_loader;

lx_loader *lx_loader_new(uv_loop_t *loop, lx_http_client *client, const lx_loader_cbs *cbs);
/* Cancels loads and unloads in flight (no callback follows). */
void lx_loader_free(lx_loader *l);
/* At start and at every reload: the backends with a load: section; a model that stays keeps its state. The
 * loader keeps a reference to c. */
void lx_loader_configure(lx_loader *l, lx_config *c);

/* May b take a request for model now (true when b's loading is not managed, or the model is loaded)? */
bool lx_loader_ready(const lx_loader *l, const lx_backend *b, const char *model);

typedef enum {
    LX_LOADER_READY = 0, /* loaded: send it */
    LX_LOADER_WAIT,      /* loading, or to be loaded: wait in the line */
    LX_LOADER_REFUSED,   /* not loaded and load.on_demand is false: 503 model_not_loaded */
} lx_loader_answer;

/* A request for model is to go to b: ready, or wait (a load starts when the policy allows), or refused. */
lx_loader_answer lx_loader_want(lx_loader *l, const lx_backend *b, const char *model);
/* A request for model was sent to b / ended there (idle and least-recently-used follow these). */
void lx_loader_begin(lx_loader *l, const lx_backend *b, const char *model);
void lx_loader_end(lx_loader *l, const lx_backend *b, const char *model);
/* Why model's last load failed ("" when it did not), on any backend. */
const char *lx_loader_error(const lx_loader *l, const char *model);

/* The admin API: load or unload model, on backend (NULL: the first managed backend listing it). Returns the
 * HTTP status — 202 begun (or already so), 404 unknown backend or model, 409 a conflict (unloading a
 * model in use or loading, loading one being unloaded) — with a JSON answer or an error message in out. */
int lx_loader_command(lx_loader *l, const char *backend, const char *model, bool load, lx_buf *out);
/* GET /admin/models: {"object":"list","data":[{backend, model, state, since, last_used, waiting, ...}]}. */
void lx_loader_render(lx_loader *l, lx_buf *out);
/* /metrics: lexora_model_loaded{backend,model}, lexora_model_loads_total, _load_failures_total,
 * _load_seconds_total. */
void lx_loader_render_prometheus(lx_loader *l, lx_buf *out);
/* /health: "loaded":{"model":"state",...} for a managed backend (appends nothing for another). */
void lx_loader_render_backend(lx_loader *l, const char *backend, lx_buf *out);

#endif
