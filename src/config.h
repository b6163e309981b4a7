/*
 * Configuration: lexora_config.yaml (the seed's schema) → an immutable, refcounted snapshot.
 *
 * lx_config_load parses a file into a fresh snapshot and validates all of it. Every problem found is
 * reported (not just the first), each naming the file, the line and the key, e.g.
 *   config/lexora_config.yaml:12: queue.max_size: must be an integer from 1 to 1000000, got "lots"
 * Unknown keys and wrong types are errors. A snapshot, once loaded, never changes: a request keeps a
 * reference (lx_config_ref) to the snapshot it started with, and a reload swaps in a new one.
 *
 * The seed's single-backend shorthand `vllm: {url, timeout}` and the `backends:` map both work:
 *  - without `backends:`, `vllm:` alone defines one backend named "vllm" serving `default_model`;
 *  - with `backends:`, an entry whose name is a backend kind (vllm, ollama, llamacpp, openai) is of
 *    that kind, any other entry names its kind with `type:`; an entry without `timeout` takes
 *    `vllm.timeout`; the entry named "vllm" without `url` takes `vllm.url`, and may not give a url that
 *    contradicts an explicit `vllm.url`; `default_model`, when absent, is the first model of the first
 *    enabled backend.
 * Secrets (backends.NAME.api_key, also when read from api_key_file or api_key_env, admin.token, metrics.token,
 * auth.keys[].key) are never quoted back in an error message; a plain auth key is kept only as its SHA-256 (the text
 * is wiped once hashed). Files named by the config: admin.token_file and metrics.token_file are read while loading (a
 * relative path is relative to the working directory); usage.db_path and logging.file are only stored here.
 * Thread-safety: a snapshot is read-only, so any thread may read it; ref/unref happen on the loop thread.
 */
#ifndef LX_CONFIG_H
#define LX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utils/buf.h"

/* A backend kind: an index into backends/kind.h's table (the built-in kinds first, then any registered). */
typedef enum {
    LX_BACKEND_KIND_NONE = -1, /* not given (while loading) */
    LX_BACKEND_VLLM = 0,
    LX_BACKEND_OLLAMA,
    LX_BACKEND_LLAMACPP,
    LX_BACKEND_OPENAI,     /* any OpenAI-compatible server */
    LX_BACKEND_ANTHROPIC,  /* Anthropic's Messages API (backends/anthropic.c) */
    LX_BACKEND_KIND_COUNT, /* the built-in kinds */
} lx_backend_kind;

/* The kind's `type:` name (backends/kind.c); "unknown" for an index no kind has. */
const char *lx_backend_kind_name(lx_backend_kind kind);

/* rate_limits.mode: what a request over its limit gets. */
typedef enum {
    LX_RATE_REJECT = 0, /* turned away at once */
    LX_RATE_WAIT,       /* held until the limit allows it */
} lx_rate_mode;

/* rate_limits.store: where the per-user counters live. */
typedef enum {
    LX_RATE_STORE_MEMORY = 0, /* in this process */
    LX_RATE_STORE_REDIS,      /* shared by every gateway using the same Redis (rate_limits.redis_url) */
} lx_rate_store;

/* usage.store: where the usage ledger is written. */
typedef enum {
    LX_USAGE_STORE_SQLITE = 0, /* usage.db_path, this gateway's own file */
    LX_USAGE_STORE_POSTGRES,   /* usage.postgres_url, shared by every gateway writing to it */
} lx_usage_store_kind;

#define LX_SHA256_LEN 32

/* One entry of auth.keys: a client's bearer key, known only by its SHA-256. */
typedef struct {
    char *user;                              /* non-empty; several keys may share a user */
    unsigned char key_sha256[LX_SHA256_LEN]; /* SHA-256 of the key as the client sends it */
    bool plain;                              /* given as key: (plain text in the file), not key_sha256: */
} lx_auth_key;

typedef struct {
    char *name;                    /* the model name clients use */
    char *upstream_name;           /* what the backend calls it (sent as the body's model); NULL: name */
    char *path;                    /* seed: where the weights live (informational), may be NULL */
    double gpu_memory_utilization; /* seed: informational, 0 when not given */
    char *lora_path;               /* vLLM: a LoRA adapter, loaded at run time (/v1/load_lora_adapter); NULL: none */
} lx_model_conf;

/* backends.NAME.load: loading and unloading models on demand (backends/loader.h). */
typedef struct {
    bool enabled;         /* the section is given */
    bool on_demand;       /* a request for a model not loaded loads it (it waits in the line meanwhile) */
    double idle_unload_s; /* unload (or sleep) a model nobody used for this long; 0: never */
    int max_loaded;       /* at most this many loaded at once; 0: no bound */
    double min_resident_s;
    double switch_after_s; /* with max_loaded reached: how long others' requests wait before a switch */
    double load_timeout_s;
} lx_load_conf;

/* routing.balance: how the router chooses among equally good backends (routing/balance.h). */
typedef enum {
    LX_BALANCE_LEAST_LOADED = 0,
    LX_BALANCE_ROUND_ROBIN,
    LX_BALANCE_WEIGHTED,
    LX_BALANCE_PEAK_EWMA,
} lx_balance_kind;

/* routing.affinity: what keeps related requests on one backend (routing/router.h). */
typedef enum {
    LX_AFFINITY_NONE = 0,
    LX_AFFINITY_USER,   /* a user's requests */
    LX_AFFINITY_PREFIX, /* requests whose prompt starts the same */
} lx_affinity;

/* One entry of routing.aliases: a name clients may use for a model, or for a list in order of preference. */
typedef struct {
    char *name;
    char **targets; /* as written: models or other aliases, in order of preference */
    size_t n_targets;
    char **models; /* resolved: the model names it stands for, in order, each once (aliases expanded) */
    size_t n_models;
    char *targets_text; /* "a, b": the targets as one string (what reload compares) */
} lx_alias;

/* routing.fallbacks entries share lx_alias's shape: name is the model or alias that falls back, targets the
 * models or aliases it falls back to, in order (models stays empty: the router resolves aliases itself). */
typedef lx_alias lx_fallback;

/* routing.auto.routes: a class of the automatic router and the model or alias that serves it. */
typedef struct {
    char *name;   /* the class */
    char *target; /* a model or an alias */
    int line;     /* where it is given (for the checks once every key is read) */
} lx_auto_route;

/* routing.auto.rules[]: a class decided by keywords, before the analyzer. */
typedef struct {
    char *class_name;
    char *route;     /* the model or alias; NULL: routing.auto.routes' entry for the class, else the default */
    char **keywords; /* lower-cased (ASCII) once read; matched case-insensitively inside the prompt */
    size_t n_keywords;
    int line;
} lx_auto_rule;

struct lx_cls_model;

/* experiments.NAME: an A/B experiment between models (routing/experiment.h). */
typedef enum { LX_STICKY_USER = 0, LX_STICKY_REQUEST } lx_sticky;
typedef enum { LX_METRIC_FEEDBACK = 0, LX_METRIC_LATENCY, LX_METRIC_ERRORS } lx_exp_metric;
typedef enum { LX_EXP_STATIC = 0, LX_EXP_ADAPTIVE } lx_exp_mode;
/* Their names as the config writes them, by value; NULL-terminated. */
extern const char *const lx_exp_metric_names[];
extern const char *const lx_exp_mode_names[];

typedef struct {
    char *name;    /* a model or an alias */
    double weight; /* as given (>= 0); shares are weight / the sum */
} lx_variant;

typedef struct {
    char *name;
    char *model; /* requests for this model or alias take part */
    lx_variant *variants;
    size_t n_variants;
    lx_sticky sticky;
    lx_exp_metric metric;
    lx_exp_mode mode;
    double min_weight; /* adaptive: the least share of any variant, in percent of the sum */
    bool enabled;
    int line; /* where its name is given (for the checks once every key is read) */
} lx_experiment;

typedef struct {
    char *name; /* the key under backends: */
    lx_backend_kind kind;
    bool enabled;
    char *url;        /* scheme://host[:port][/base], no trailing slash; NULL only when disabled */
    double timeout_s; /* longest wait for the backend: until its answer starts, and between two reads */
    lx_model_conf *models;
    size_t n_models;
    bool models_auto;          /* models: auto — what it serves is asked of it (its kind's models_path) */
    int weight;                /* routing.balance weighted: its share relative to the others (default 1) */
    int max_concurrency;       /* requests sent to it at once; the rest wait in Lexora's queue */
    bool adaptive;             /* read its /metrics; hold dispatch while it has waiting requests or a full KV cache */
    double kv_cache_threshold; /* with adaptive: KV-cache usage (0..1] above which dispatch holds */
    bool forward_priority;     /* send the request's priority number as vLLM's "priority" field */
    int priority;              /* failover order among backends serving a model: lower first, equal share load */
    char *api_key;             /* sent as "Authorization: Bearer <key>" (type anthropic: x-api-key); NULL when none */
    /* api_key from a file (read at load, trailing whitespace dropped) or an environment variable: the names */
    char *api_key_file;
    char *api_key_env;
    long default_max_tokens; /* type anthropic: max_tokens when the request gives none (Anthropic requires one) */
    /* https:// backends: the CA bundle to verify them with (NULL: the system's), and whether to verify */
    char *ca_file;
    bool tls_verify;
    int *gpus; /* informational: the GPUs (NVML indexes) it runs on, as listed, for /health */
    size_t n_gpus;
    bool sleep_mode;   /* vLLM started with --enable-sleep-mode: unloading its model puts it to sleep */
    lx_load_conf load; /* loading and unloading models on demand */
} lx_backend_conf;

typedef struct {
    char *name;
    long requests_per_minute;
    long tokens_per_minute;
    bool fallback; /* routing.fallbacks may send this user's requests elsewhere (default true) */
} lx_user_limit;

typedef struct lx_config {
    int refs;
    char *path; /* the file it was loaded from */

    struct {
        char *host;
        int port;
        int max_connections;
        size_t max_body_bytes;     /* request body cap → 413 */
        size_t max_header_bytes;   /* request line + headers cap → 431 */
        size_t max_response_bytes; /* buffered (non-streaming) upstream answer cap → 502 */
        double header_timeout_s;   /* a request's head (and body) must arrive within this → 408 */
        double idle_timeout_s;     /* a keep-alive connection with no request is closed after this */
        double shutdown_timeout_s; /* on shutdown: longest wait for requests in flight to finish */
    } server;

    struct {
        char *url;
        double timeout_s;
    } vllm;

    char *default_model;

    lx_backend_conf *backends; /* every entry, enabled or not, in file order */
    size_t n_backends;

    struct {
        lx_alias *aliases; /* file order */
        size_t n_aliases;
        lx_fallback *fallbacks; /* file order */
        size_t n_fallbacks;
        double fallback_after_queue_s; /* > 0: a request that waited this long in the line goes to its fallback */
        lx_balance_kind balance;
        lx_affinity affinity;
        /* routing.auto: model "auto" (its name) is routed by what the prompt asks (routing/analyzer.h) */
        struct {
            bool enabled;          /* the section is given */
            char *name;            /* the model name that asks for it ("auto") */
            lx_auto_route *routes; /* file order */
            size_t n_routes;
            char *default_route; /* below min_confidence, or a class without a route; NULL: default_model */
            double min_confidence;
            char *model_file;    /* as given; "" the shipped model (a relative path: from the config file's folder) */
            lx_auto_rule *rules; /* file order: the first that matches decides */
            size_t n_rules;
            struct lx_cls_model *model; /* loaded with the snapshot, freed with it (routing/classifier.h) */
            char *model_digest;         /* the model's (lx_cls_digest): a reload notices a new model file */
            int name_line, default_line;
        } automatic;
    } routing;

    lx_experiment *experiments; /* file order */
    size_t n_experiments;

    struct {
        long max_size;
        double default_timeout_s;
        long priority_high, priority_normal, priority_low; /* lower is served first */
        double aging_s; /* a request that waited this long is promoted one priority level */
    } queue;

    struct {
        lx_user_limit default_limit; /* name is NULL */
        lx_user_limit *users;
        size_t n_users;
        lx_rate_mode mode;
        lx_rate_store store;
        char *redis_url; /* as given: redis://host[:port][/db] or unix:///path */
        struct {
            char *host;          /* NULL for a unix socket; an IPv6 address without its brackets */
            int port;            /* 6379 when not given; 0 for a unix socket */
            int db;              /* 0 when not given (always 0 for a unix socket) */
            char *socket_path;   /* NULL unless unix:// */
        } redis;                 /* redis_url, parsed */
        long default_max_tokens; /* completion tokens reserved for a request that gives no max_tokens */
    } rate_limits;

    struct {
        bool enabled;
        lx_auth_key *keys; /* file order */
        size_t n_keys;
    } auth;

    struct {
        long max_attempts;
        double delay_s;
        double backoff_multiplier;
        double max_delay_s; /* no wait between tries is longer than this */
    } retry;

    struct {
        double interval_s;      /* between two probes of a backend */
        long failure_threshold; /* consecutive failures (checks, or requests) that mark a backend down */
        double cooldown_s;      /* a backend whose requests failed failure_threshold times in a row gets no
                                    new request this long; then one trial decides */
        double timeout_s;       /* of one probe */
    } health_check;

    struct {
        int level; /* lx_log_level */
        bool json;
        char *file; /* log file path; NULL = stderr */
    } logging;

    struct {
        bool enabled;
        int port;
        bool per_user; /* label request and token counters with the user */
        /* GET /metrics needs "Authorization: Bearer <token>" when set: metrics.token, or metrics.token_file's
           content (trailing whitespace stripped); NULL: open */
        char *token;
        char *token_file; /* as given, or NULL */
    } metrics;

    struct {
        bool enabled;  /* record per-request usage */
        char *db_path; /* the SQLite file it is recorded in */
        /* PostgreSQL: several gateways, one ledger (all restart-only) */
        int store;           /* lx_usage_store_kind */
        char *postgres_url;  /* libpq URL (or key=value string); NULL when not given */
        char *password_file; /* read at each connect; NULL: libpq's own (PGPASSWORD, ~/.pgpass) */
        char *gateway_id;    /* how this gateway's rows are named; the host name when not given */
    } usage;

    struct {
        char *token;      /* bearer token of the admin endpoints: admin.token, or admin.token_file's content
                             (trailing whitespace stripped); NULL when neither is given */
        char *token_file; /* as given, or NULL */
    } admin;
} lx_config;

/*
 * Loads and validates path. On success returns a snapshot with one reference. On failure returns
 * NULL and appends every problem to errors, one per line, each "file:line: key: message".
 */
lx_config *lx_config_load(const char *path, lx_buf *errors);

/* Same, from YAML text in memory; name stands for the file in messages. For tests and fuzzing. */
lx_config *lx_config_parse(const char *name, const char *yaml, size_t len, lx_buf *errors);

lx_config *lx_config_ref(lx_config *c);
void lx_config_unref(lx_config *c);

/* Does b list the model (by name)? (Models it discovers are the run-time registry's: backends/backend.h.) */
bool lx_backend_conf_serves(const lx_backend_conf *b, const char *model, size_t len);
/* The name b's backend knows the model by: its upstream_name, else the model itself. */
const char *lx_backend_conf_upstream(const lx_backend_conf *b, const char *model);
/* The model's lora_path (a vLLM LoRA adapter), or NULL. */
const char *lx_backend_conf_lora(const lx_backend_conf *b, const char *model);
/* The enabled backend called name, or NULL. */
const lx_backend_conf *lx_config_backend(const lx_config *c, const char *name);
/* The alias called name (len bytes), or NULL. */
const lx_alias *lx_config_alias(const lx_config *c, const char *name, size_t len);
/* The enabled experiment whose model is name (len bytes), or NULL. */
const lx_experiment *lx_config_experiment_for(const lx_config *c, const char *name, size_t len);
/* The routing.fallbacks entry of name (len bytes), or NULL. */
const lx_fallback *lx_config_fallback(const lx_config *c, const char *name, size_t len);
/* Does rate_limits.users.USER.fallback allow user's requests to go to a fallback (true for a user not listed)? */
bool lx_config_user_fallback(const lx_config *c, const char *user);
/* routing.auto's route for class (len bytes): its routes entry, or NULL. */
const char *lx_config_auto_route(const lx_config *c, const char *class_name, size_t len);
/* The first enabled backend that lists model, or NULL (which one a request goes to: lx_admission_pick). */
const lx_backend_conf *lx_config_backend_for(const lx_config *c, const char *model, size_t len);

#endif
