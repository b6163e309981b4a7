/*
 * lexora-sim internals: a stand-in for vLLM's OpenAI-compatible server, or with --api for Ollama's,
 * llama.cpp's or Anthropic's Messages API (see docs/SIMULATOR.md).
 * Shared by the simulator's own files only; nothing here is part of lexora_core.
 *
 *   sim_main.c     main: options, signals, start and clean stop
 *   sim_options.c  the command line as a table of options (pure: parse argv into a sim_config)
 *   sim_http.c     routing, vLLM's small endpoints, /metrics, the /sim/ endpoints, failure injection,
 *                  the request log
 *   sim_openai.c   chat / completions / embeddings: parsing, validation, answers and SSE chunks
 *   sim_anthropic.c --api anthropic: /v1/messages (answers, event streams, tool use), /v1/models, errors
 *   sim_engine.c   the batch: slots, the FIFO wait queue, timers for TTFT and inter-token latency
 *   sim_prefix.c   the per-instance prefix cache (an LRU of prompt-prefix keys) behind a shorter TTFT
 *   sim_load.c     loading and unloading models: Ollama's keep_alive and /api/ps, vLLM's sleep mode and runtime
 *                  LoRA adapters, llama.cpp's router mode (/models); the memory budget; requests waiting on a load
 *   sim_text.c     deterministic pure pieces: hashing, token counts, words, PRNG, ids, base64
 *
 * Invariants:
 * - One thread (the loop's) owns everything.
 * - A sim_req exists only for an admitted generation or embedding request. Once submitted it is in
 *   exactly one of sim.waiting / sim.running until it ends (finished, dropped or cancelled); then
 *   its timer is closed and the request is freed in the close callback, never before.
 * - sim_req.http is NULL once the handler's last call to the server was made (answer complete,
 *   connection dropped) or the client went away (on_abort): nothing is written after that.
 * - running.n <= cfg.max_batch (max_batch never changes at run time); waiting is non-empty only
 *   while running is full.
 */
#ifndef LX_SIM_H
#define LX_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "http/server.h"
#include "utils/buf.h"
#include "utils/list.h"

#define SIM_MAX_MODELS       32
#define SIM_LOG_MAX          1000       /* /sim/requests keeps the last this many */
#define SIM_LOG_BODY_MAX     (1u << 20) /* bytes of a body kept in the request log */
#define SIM_MIDSTREAM_TOKENS 3          /* token chunks sent before a midstream drop */

typedef enum {
    SIM_FAIL_503 = 0,
    SIM_FAIL_500,
    SIM_FAIL_DROP,
    SIM_FAIL_MIDSTREAM,
    SIM_FAIL_429,  /* 429 with Retry-After: 1 */
    SIM_FAIL_400,  /* 400, as for a request vLLM refuses */
    SIM_FAIL_HANG, /* never answered: held until the client leaves */
    SIM_FAIL_529,  /* 529, Anthropic's overloaded_error */
} sim_fail_mode;

typedef enum { SIM_API_VLLM = 0, SIM_API_OLLAMA, SIM_API_LLAMACPP, SIM_API_ANTHROPIC } sim_api;

#define SIM_PREFIX_WINDOW 2048 /* bytes of the rendered prompt the prefix cache looks at */
#define SIM_PREFIX_BLOCK  256  /* ... cut in blocks of this many bytes */
#define SIM_PREFIX_KEYS   (SIM_PREFIX_WINDOW / SIM_PREFIX_BLOCK)

typedef struct {
    sim_api api;
    const char *host;
    long port;
    const char *models[SIM_MAX_MODELS]; /* [0] is the name vLLM reports (served_model_name[0]) */
    size_t n_models;
    long max_model_len;
    double ttft_ms;
    double tokens_per_sec; /* 0: no delay between tokens */
    long max_batch;
    double batch_slowdown;
    long default_max_tokens;
    long kv_capacity_tokens;
    long embedding_dim;
    double fail_rate;
    long fail_first;
    sim_fail_mode fail_mode;
    uint64_t seed;
    bool flat_errors;
    bool old_metrics;
    bool quiet;
    const char *vllm_version;
    const char *ollama_version;
    double load_ms;            /* llama.cpp: 503 "Loading model" for this long after start */
    long prefix_cache_entries; /* 0: no prefix cache */
    double prefix_hit_ttft_ms; /* TTFT when the whole prefix window is cached */
    const char *api_key;       /* --api anthropic: the x-api-key every /v1/ request must carry; NULL: any */
    /* loading and unloading (sim_load.c) */
    const char *loaded[SIM_MAX_MODELS]; /* --loaded: the models loaded at start (none given: see sim_load.c) */
    size_t n_loaded;
    bool start_unloaded;
    double unload_ms;
    double memory_mb;                         /* 0: no budget */
    double default_model_mb;                  /* a model's (or LoRA adapter's) size unless --model-mb names it */
    const char *model_mb[2 * SIM_MAX_MODELS]; /* "NAME=MB", checked by the parser */
    size_t n_model_mb;
    const char *keep_alive; /* Ollama's default keep_alive (OLLAMA_KEEP_ALIVE) */
    bool sleep_mode;        /* vLLM: /sleep, /wake_up, /is_sleeping */
    bool runtime_lora;      /* vLLM: /v1/load_lora_adapter, /v1/unload_lora_adapter */
    bool router;            /* llama.cpp: router mode (/models, load on demand) */
    bool no_autoload;       /* llama.cpp router: --no-models-autoload */
    long models_max;        /* llama.cpp router: --models-max */
} sim_config;

/* --- sim_options.c --- */
void sim_config_defaults(sim_config *c);
/* Parses argv. Returns 0, 1 when --help was asked for, or -1 with a message in err. */
int sim_options_parse(sim_config *c, int argc, char **argv, char *err, size_t err_len);
void sim_options_usage(FILE *out);
const char *sim_api_name(sim_api a);
const char *sim_fail_mode_name(sim_fail_mode m);
int sim_fail_mode_parse(const char *s); /* -1 when unknown */
/* Ollama's keep_alive string, as Go's time.ParseDuration reads it: *ms gets the duration, -1 for a negative one
 * (forever). Returns 0, or -1 with Go's message (e.g. time: missing unit in duration "300") in err. */
int sim_keep_alive_parse(const char *s, double *ms, char *err, size_t err_len);
/* --keep-alive as OLLAMA_KEEP_ALIVE reads it: a duration, else whole seconds. Returns 0 or -1. */
int sim_keep_alive_env(const char *v, double *ms);
/* The size in MB of model `name`: its --model-mb, else --default-model-mb. */
double sim_model_mb(const sim_config *c, const char *name);

/* --- the simulator's state --- */
typedef struct sim_req sim_req;
typedef struct sim_reqlog sim_reqlog;

typedef struct {
    lx_list reqs; /* sim_req by link, in arrival order */
    size_t n;
} sim_list;

typedef struct {
    uint64_t received;  /* requests to /v1/... (what /sim/requests records) */
    uint64_t completed; /* answered in full */
    uint64_t cancelled; /* the client went away first */
    uint64_t failed;    /* failed by injection (every --fail-mode) */
    uint64_t rejected;  /* answered with a 4xx (bad JSON, unknown model, context too long, ...) */
    uint64_t prompt_tokens;
    uint64_t generation_tokens;
    uint64_t finished_stop, finished_length, finished_abort;
    size_t max_running_seen;
    uint64_t prefix_hits, prefix_misses;             /* requests whose prefix was / was not cached */
    uint64_t prefix_query_tokens, prefix_hit_tokens; /* vLLM's prefix_cache_queries / _hits, in tokens */
} sim_stats;

/* --- sim_prefix.c --- */
typedef struct sim_prefix_cache sim_prefix_cache;
typedef struct {
    uint64_t key[SIM_PREFIX_KEYS]; /* key i stands for the first end[i] bytes */
    size_t end[SIM_PREFIX_KEYS];
    size_t n;
    size_t window; /* bytes looked at: min(rendered length, SIM_PREFIX_WINDOW) */
} sim_prefix_keyset;

/* NULL for capacity 0 (every function below takes NULL as "no cache"). */
sim_prefix_cache *sim_prefix_new(size_t capacity);
void sim_prefix_free(sim_prefix_cache *c);
size_t sim_prefix_count(const sim_prefix_cache *c);
/* The keys of a rendered prompt's prefix window (pure). Returns the window's length. */
size_t sim_prefix_keys(const char *text, size_t len, sim_prefix_keyset *out);
/* Bytes of the longest cached prefix of ks (0: a miss); that key becomes the newest. */
size_t sim_prefix_match(sim_prefix_cache *c, const sim_prefix_keyset *ks);
/* Remembers every key of ks, evicting the least recently used when full. */
void sim_prefix_insert(sim_prefix_cache *c, const sim_prefix_keyset *ks);

/* --- sim_load.c: the state of each model that can be loaded --- */
#define SIM_LOAD_SLOTS (2 * SIM_MAX_MODELS) /* the --model names, then LoRA adapters */
typedef enum { SIM_M_UNLOADED = 0, SIM_M_LOADING, SIM_M_LOADED, SIM_M_UNLOADING } sim_mstate;

typedef struct sim_model {
    struct sim *sim;
    char name[256];
    char path[512]; /* LoRA: its lora_path */
    bool used, lora;
    double size_mb;
    sim_mstate state;
    uv_timer_t timer;     /* the end of a load or an unload */
    uv_timer_t expire;    /* Ollama: keep_alive */
    double keep_alive_ms; /* Ollama: applied when the load ends; -1: forever */
    int64_t expires_ms;   /* Ollama: wall ms at which it unloads itself; -1: never */
    int64_t since_ms;     /* wall ms of the last state change */
    int64_t loaded_ms;    /* wall ms the current load ended; 0: not loaded */
    uint64_t last_used_ns;
    const char *fail_msg; /* this load fails with that message (budget, injected); NULL: it succeeds */
    int exit_code;        /* llama.cpp router: the last load's "exit code" (1: it failed) */
    uint64_t loads, unloads, load_requests, load_failures;
    lx_list waiters; /* sim_waiter by link */
} sim_model;

typedef struct {
    sim_model m[SIM_LOAD_SLOTS];
    size_t n_base;            /* m[0..n_base) are the --model names */
    long fail_next;           /* /sim/control fail_next_load */
    uint64_t asleep_rejected; /* vLLM: inference answered 500 while asleep */
    int sleep_level;
    bool timers; /* the timers are initialised (closed on stop) */
} sim_load;

typedef struct sim {
    sim_config cfg;
    uv_loop_t *loop;
    lx_http_server *server;
    sim_list waiting, running;
    uint64_t kv_tokens; /* prompt + generated tokens of the running requests */
    sim_stats st;
    long fail_first_left;
    uint64_t fail_rng; /* seeded from --seed: drawn once per inference request when fail_rate > 0 */
    uint64_t id_rng;   /* ids; seeded from the clock, so ids differ between runs */
    sim_reqlog *log;
    uint64_t start_ns; /* /sim/requests' received_ms counts from here */
    lx_buf scratch;    /* reused for SSE chunks and /metrics */
    sim_prefix_cache *prefix;
    uint64_t ready_ns; /* --load-ms: llama.cpp answers 503 until then */
    sim_load load;
} sim;

typedef enum { SIM_CHAT = 0, SIM_COMPLETION, SIM_EMBEDDING, SIM_MESSAGES } sim_kind;
typedef enum { SIM_NEW = 0, SIM_WAITING, SIM_RUNNING, SIM_DONE } sim_state;

struct sim_req {
    sim *sim;
    lx_http_req *http;
    lx_list link; /* in sim.waiting or sim.running */
    sim_state state;
    uv_timer_t timer;
    double due_ms; /* loop time at which the next token is due */
    sim_kind kind;
    bool stream;
    bool include_usage;
    bool continuous_usage;
    bool ends_by_length; /* a limit (max_tokens, the context) ends it: finish_reason "length", else "stop" */
    long prompt_tokens;
    long max_tokens; /* 0 for embeddings */
    long generated;
    long drop_after; /* midstream failure: drop after this many tokens; -1 for none */
    uint64_t text_seed;
    lx_buf prefix; /* streams: '{"id":..,"object":..,"created":..,"model":..' without the closing brace */
    lx_buf text;   /* non-streamed generations: the text so far */
    char *answer;  /* embeddings: the whole answer, sent when the "forward pass" ends */
    size_t answer_len;
    char *id;
    const char *model_out; /* the name answers carry (vLLM reports its first served name) */
    char *model_copy;      /* Ollama, llama.cpp: the name the request gave, which they report */
    char *tool_call;       /* chat with tools: the one call answered instead of text, "name\0arguments" (owned) */
    size_t tool_name_len;
    int64_t created;
    sim_prefix_keyset keys;        /* chat and completions: the prompt's prefix keys (n == 0: none) */
    size_t prefix_matched;         /* bytes of the prefix found cached when it started */
    uint64_t started_ns, first_ns; /* running since, first token at: llama.cpp's timings */
    char *tool_name;               /* Anthropic: the tool_use it answers with (its input in answer); NULL: text */
    long cached_tokens;            /* Anthropic: cache_read_input_tokens (what the prefix cache held) */
};

/* --- sim_engine.c --- */
/* Empties the wait queue and the batch: before the first request (sim_http_start calls it). */
void sim_engine_init(sim *s);
/* Allocates a request bound to http (its timer initialised); the caller fills it and submits it. */
sim_req *sim_req_new(sim *s, lx_http_req *http);
/* Queues q for a slot: it runs at once if one is free and nobody waits, else waits FIFO. */
void sim_engine_submit(sim_req *q);
/* The client went away: stop q's timers at once, free its slot. */
void sim_engine_cancel(sim_req *q);
/* On shutdown, after the server is closed: ends whatever is left. */
void sim_engine_cancel_all(sim *s);
double sim_engine_kv_usage(const sim *s);

/* --- sim_openai.c: what the engine calls as a request progresses --- */
void sim_out_first(sim_req *q);         /* the first token is about to come (after TTFT) */
void sim_out_token(sim_req *q, long i); /* token i (0-based) was generated */
void sim_out_finish(sim_req *q);        /* the last token: the answer is complete */
void sim_out_drop(sim_req *q);          /* midstream failure: cut the connection */
/* POST /v1/chat/completions, /v1/completions, /v1/embeddings. midstream: the request was picked
 * for a midstream failure (streams drop after a few tokens, the others at once). */
void sim_openai_handle(sim *s, lx_http_req *r, sim_kind kind, bool midstream);

/* --- sim_anthropic.c: --api anthropic's POST /v1/messages and GET /v1/models, and its error shape --- */
void sim_anthropic_handle(sim *s, lx_http_req *r, bool midstream);
void sim_anthropic_first(sim_req *q);
void sim_anthropic_token(sim_req *q, long i);
void sim_anthropic_finish(sim_req *q);
void sim_anthropic_drop(sim_req *q); /* midstream failure: an error event, then the stream ends */
void sim_anthropic_models(sim *s, lx_http_req *r);
/* {"type":"error","error":{"type":T,"message":M}}, T from the status; extra: one more header, or NULL. */
void sim_anthropic_error(lx_http_req *r, int status, const char *message, const lx_http_header *extra);
/* False (and answered 401 authentication_error) when --api-key is set and the request's x-api-key differs. */
bool sim_anthropic_authorized(const sim *s, lx_http_req *r);

/* --- sim_load.c --- */
struct cJSON;
void sim_load_init(sim *s); /* after the config is parsed, before the first request */
void sim_load_stop(sim *s); /* closes the timers, answers nobody (the server is closed first) */
/* Before an inference request runs: true when it took r (answered it, or parked it until its model is loaded,
 * then sim_http_infer runs it again). */
bool sim_load_gate(sim *s, lx_http_req *r, sim_kind kind);
/* The client of r went away while r waited for a load: forget it. False when r was not waiting. */
bool sim_load_abort(sim *s, lx_http_req *r);
bool sim_load_lora_served(const sim *s, const char *name);          /* vLLM: a loaded LoRA adapter of that name */
void sim_load_vllm_models(sim *s, struct cJSON *data, int64_t now); /* adds the loaded LoRA adapters */
void sim_load_stats(const sim *s, struct cJSON *o);
void sim_ollama_generate(sim *s, lx_http_req *r);
void sim_ollama_ps(sim *s, lx_http_req *r);
void sim_vllm_sleep(sim *s, lx_http_req *r);
void sim_vllm_wake_up(sim *s, lx_http_req *r);
void sim_vllm_is_sleeping(sim *s, lx_http_req *r);
void sim_vllm_load_lora(sim *s, lx_http_req *r);
void sim_vllm_unload_lora(sim *s, lx_http_req *r);
void sim_router_models(sim *s, lx_http_req *r);
void sim_router_load(sim *s, lx_http_req *r);
void sim_router_unload(sim *s, lx_http_req *r);

/* --- sim_http.c --- */
int sim_http_start(sim *s);
/* Runs an inference request (failure injection, then the answer); sim_load.c calls it once a load ended. */
void sim_http_infer(sim *s, lx_http_req *r, sim_kind kind);
/* One entry of vLLM's /v1/models "permission" list. */
struct cJSON *sim_model_permission(sim *s, int64_t now);
/* Ollama's made-up digest of a model name (64 hex digits and a NUL). */
void sim_ollama_digest(const char *name, char out[65]);
void sim_http_stop(sim *s);
/* The error envelope of the --api's server with that status: vLLM's (nested, or flat with --flat-errors),
 * Ollama's OpenAI layer's ({"error":{message,type,param,code:null}}, type from the status), llama.cpp's
 * ({"error":{code,message,type}}). type is vLLM's exception name; the other servers' types come from the
 * status (llama.cpp: llamacpp_type when not NULL). */
void sim_reply_error(sim *s, lx_http_req *r, int status, const char *type, const char *message);
void sim_reply_llamacpp_error(lx_http_req *r, int status, const char *type, const char *message);
/* Ollama's native error {"error":"..."}. */
void sim_reply_ollama_native(lx_http_req *r, int status, const char *message);
/* Answers r with body as JSON (consumes body). */
struct cJSON;
void sim_reply_json(lx_http_req *r, int status, struct cJSON *body);
/* The "details" member of a model in Ollama's /api/tags and /api/ps (a Llama 3.2 3B in GGUF, Q4_K_M). */
void sim_ollama_details(struct cJSON *model);

/* --- sim_text.c --- */
#define SIM_HASH_INIT 0xcbf29ce484222325ull
uint64_t sim_hash(uint64_t h, const void *p, size_t n); /* FNV-1a, chainable */
uint64_t sim_mix(uint64_t x);                           /* splitmix64's finaliser */
uint64_t sim_rng_next(uint64_t *state);                 /* splitmix64 */
double sim_rng_unit(uint64_t *state);                   /* [0, 1) */
/* The token text for index i of a generation seeded by seed: a word and a space. */
const char *sim_word(uint64_t seed, long i, size_t *len);
/* Token count for that many bytes of text: ceil(bytes / 4). */
long sim_tokens_for_bytes(size_t bytes);
/* Inter-token latency in ms for `running` requests in the batch (0 when tokens_per_sec is 0). */
double sim_itl_ms(double tokens_per_sec, double slowdown, long running, long max_batch);
/* 32 lowercase hex digits and a NUL into out[33]. */
void sim_hex_id(uint64_t *state, char out[33]);
/* A unit-length vector of dim values, rounded to 6 decimals, determined by seed. */
void sim_embedding(uint64_t seed, long dim, double *out);
/* Base64 of n little-endian float32s (as vLLM's encoding_format "base64"). Returns 0 or -1. */
int sim_base64_floats(const double *v, long n, lx_buf *out);

#endif
