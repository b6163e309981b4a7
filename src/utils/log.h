/*
 * Logging: leveled lines to stderr (or a file, logging.file), as text or as JSON objects, one per line.
 *
 * LX_LOG checks the level before any formatting is done (redis serverLog), so a disabled DEBUG line
 * costs one comparison. Lines about a request carry its request id. Output is fully buffered and
 * flushed once per event-loop iteration (lx_log_flush, called from the loop) and at once for
 * WARN and ERROR, so a busy gateway does one write per loop turn, not one per line.
 * Loop thread only, except lx_log_write at ERROR level, which may be called from any thread.
 */
#ifndef LX_LOG_H
#define LX_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { LX_LOG_DEBUG = 0, LX_LOG_INFO, LX_LOG_WARN, LX_LOG_ERROR } lx_log_level;

extern lx_log_level lx_log_min_level;

/* Level names as in the config: DEBUG, INFO, WARNING (or WARN), ERROR, any case. -1 when unknown. */
int lx_log_level_parse(const char *name);
const char *lx_log_level_name(lx_log_level level);

void lx_log_configure(lx_log_level level, bool json);
/*
 * Where lines go: path (opened for appending, created 0640 if absent) or, with NULL, the standard error
 * the process started with. The file becomes the process's stderr (dup2), so whatever else writes there
 * (a sanitizer, a library) lands in it too, and any thread's write is safe across the switch. Calling it
 * again with the same path reopens the file: a rotated log (logrotate's move-then-signal) starts anew.
 * Returns 0, or -errno with the output left as it was.
 */
int lx_log_set_file(const char *path);
bool lx_log_json(void);
void lx_log_flush(void);

/* reqid may be NULL. The message is printf-formatted. */
void lx_log_write(lx_log_level level, const char *reqid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define LX_LOG(level, reqid, ...)                                                                                      \
    do {                                                                                                               \
        if ((level) >= lx_log_min_level) lx_log_write((level), (reqid), __VA_ARGS__);                                  \
    } while (0)
#define LX_DEBUG(reqid, ...) LX_LOG(LX_LOG_DEBUG, reqid, __VA_ARGS__)
#define LX_INFO(reqid, ...)  LX_LOG(LX_LOG_INFO, reqid, __VA_ARGS__)
#define LX_WARN(reqid, ...)  LX_LOG(LX_LOG_WARN, reqid, __VA_ARGS__)
#define LX_ERROR(reqid, ...) LX_LOG(LX_LOG_ERROR, reqid, __VA_ARGS__)

/* A finished request: one access-log line, and what statistics and the usage ledger record. Strings may be NULL. */
typedef struct {
    const char *request_id;
    const char *user;
    const char *method;
    const char *path;
    const char *model;         /* the name the client asked for (a model or an alias) */
    const char *model_used;    /* the model it resolved to; NULL when it did not get that far */
    bool alias;                /* model is an alias of routing.aliases */
    const char *route;         /* automatic routing (routing/analyzer.h): the class given; NULL when not routed so */
    const char *route_reason;  /* and why (UTF-8) */
    const char *experiment;    /* experiments: the one the request took part in; NULL when none */
    const char *variant;       /* and the variant it was given (a model or alias) */
    double load_wait_ms;       /* waited for its model to load (backends/loader.h); 0: it did not */
    const char *fallback_from; /* routing.fallbacks: the name the request fell back from; NULL when it did not */
    const char *backend;
    int status;
    const char *error_code; /* the OpenAI error code when the answer is an error */
    const char *priority;   /* high, normal, low */
    double latency_ms;      /* from the request's first byte to the end of the answer */
    double overhead_ms;     /* the x-lexora-overhead-ms time */
    double queue_wait_ms;   /* time waiting in Lexora's queue */
    double ttft_ms;         /* to the first byte of the backend's answer; -1 when there was none */
    long prompt_tokens;     /* -1 when unknown */
    long completion_tokens;
    bool stream;
    int attempts;    /* tries sent to backends (retries and failovers included); 0 when none was */
    uint64_t end_ns; /* when it ended (lx_now_ns); 0: lx_stats_record reads its own clock */
} lx_access_rec;

/* The access-log line of rec (loop thread only: it reuses one buffer). */
void lx_log_access(const lx_access_rec *rec);

#endif
