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
 * Thread-safety: a snapshot is read-only, so any thread may read it; ref/unref happen on the loop thread.
 */
#ifndef LX_CONFIG_H
#define LX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utils/buf.h"

typedef enum {
    LX_BACKEND_VLLM = 0,
    LX_BACKEND_OLLAMA,
    LX_BACKEND_LLAMACPP,
    LX_BACKEND_OPENAI, /* any OpenAI-compatible server */
    LX_BACKEND_KIND_COUNT
} lx_backend_kind;

const char *lx_backend_kind_name(lx_backend_kind kind);

typedef struct {
    char *name;                    /* the model name clients use */
    char *path;                    /* seed: where the weights live (informational), may be NULL */
    double gpu_memory_utilization; /* seed: informational, 0 when not given */
} lx_model_conf;

typedef struct {
    char *name; /* the key under backends: */
    lx_backend_kind kind;
    bool enabled;
    char *url;        /* scheme://host[:port][/base], no trailing slash; NULL only when disabled */
    double timeout_s; /* longest wait for the backend: until its answer starts, and between two reads */
    lx_model_conf *models;
    size_t n_models;
} lx_backend_conf;

typedef struct {
    char *name;
    long requests_per_minute;
    long tokens_per_minute;
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
    } server;

    struct {
        char *url;
        double timeout_s;
    } vllm;

    char *default_model;

    lx_backend_conf *backends; /* every entry, enabled or not, in file order */
    size_t n_backends;

    struct {
        long max_size;
        double default_timeout_s;
        long priority_high, priority_normal, priority_low; /* lower is served first */
    } queue;

    struct {
        lx_user_limit default_limit; /* name is NULL */
        lx_user_limit *users;
        size_t n_users;
    } rate_limits;

    struct {
        long max_attempts;
        double delay_s;
        double backoff_multiplier;
    } retry;

    struct {
        int level; /* lx_log_level */
        bool json;
    } logging;

    struct {
        bool enabled;
        int port;
    } metrics;
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

/* The first enabled backend that lists model, or NULL. */
const lx_backend_conf *lx_config_backend_for(const lx_config *c, const char *model, size_t len);

#endif
