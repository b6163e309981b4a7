/*
 * The usage ledger's stores: what the ledger (usage_store.c: the queue, the writer thread, the counters
 * and the logging) asks of a database. Two implementations: SQLite (usage_sqlite.c, one file per
 * gateway) and PostgreSQL (usage_pg.c, one database shared by several gateways). Private to
 * src/observe/usage_*.c and their unit tests.
 *
 * Threads: create and destroy on the loop thread; connect, write and disconnect on the writer thread
 * once it runs (on the loop thread before it starts). report is for `lexora usage` (no gateway running).
 */
#ifndef LX_USAGE_BACKEND_H
#define LX_USAGE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "observe/exp_report.h"
#include "observe/usage_store.h"
#include "utils/id.h"

/* A row's texts (lx_usage_row_set, lx_usage_row_text), each cut at its column's longest (text_cap in
 * usage_store.c). "" stands for NULL where the column allows it. */
typedef enum {
    LX_ROW_REQUEST_ID,
    LX_ROW_USER,
    LX_ROW_MODEL,
    LX_ROW_MODEL_USED, /* "" = NULL: what answered (after aliases, experiments, fallbacks) */
    LX_ROW_EXPERIMENT, /* "" = NULL */
    LX_ROW_VARIANT,    /* "" = NULL */
    LX_ROW_BACKEND,    /* "" = NULL */
    LX_ROW_PRIORITY,   /* "" = NULL */
    LX_ROW_ERROR_CODE, /* "" = NULL */
    LX_ROW_TEXTS
} lx_usage_row_field;

/* Room for every text at its longest, each with its NUL (1,337 bytes), and the "" at 0; rounded up. */
#define LX_ROW_TEXT_MAX 1344

/* One row of the ledger: fixed size, copied by value from the loop thread to the writer. Its texts lie back
 * to back at the start of text, so a row touches a few cache lines, and their lengths are known. */
typedef struct {
    int64_t time_ms;      /* wall clock, when the answer ended */
    uint64_t run_id, seq; /* the row's key (lx_usage_row_key): unique per gateway */
    int status;
    long prompt_tokens, completion_tokens; /* -1 = NULL */
    double queue_wait_ms, ttft_ms, latency_ms;
    bool stream;
    uint16_t used;              /* bytes of text taken (0 or 1: none yet; text[0] is the "" of unset texts) */
    uint16_t off[LX_ROW_TEXTS]; /* where each text starts */
    uint8_t len[LX_ROW_TEXTS];  /* and its length */
    char text[LX_ROW_TEXT_MAX];
} lx_usage_row;

/* Sets text k of r to s (NULL: ""), cut at k's longest. Each text is set at most once; a zeroed row has every
 * text "". To reuse a row, zero used, off and len first (lx_usage_row_clear_texts). */
void lx_usage_row_set(lx_usage_row *r, lx_usage_row_field k, const char *s);
static inline void lx_usage_row_clear_texts(lx_usage_row *r)
{
    r->used = 0;
    memset(r->off, 0, sizeof r->off);
    memset(r->len, 0, sizeof r->len);
    r->text[0] = '\0';
}
static inline const char *lx_usage_row_text(const lx_usage_row *r, lx_usage_row_field k) { return r->text + r->off[k]; }

/* The running totals of one gateway in the ledger. */
typedef struct {
    char began[32]; /* ISO 8601 UTC, "" while unknown */
    uint64_t requests, prompt_tokens, completion_tokens, errors;
} lx_usage_totals;

/* What a failed write means for its rows. */
enum {
    LX_USAGE_WRITE_OK = 0,
    LX_USAGE_WRITE_DROP = -1,  /* the rows cannot be written (a bad file, a refused statement): lost */
    LX_USAGE_WRITE_RETRY = -2, /* the database is away: keep the rows and send them again */
};

/* One report line: key and sums. */
typedef struct {
    const char *key;
    int64_t requests, prompt_tokens, completion_tokens, errors;
    double latency_ms_sum;
} lx_usage_line;

typedef void (*lx_usage_line_fn)(void *ud, const lx_usage_line *l);

/* One ledger row of an experiment, with its feedback (observe/exp_report.h), for the experiment report. */
typedef void (*lx_usage_exp_fn)(void *ud, const lx_exp_row *r);

typedef struct {
    const char *name; /* "sqlite", "postgres" */
    /* true: a network store, connected to and written by a writer thread so the loop never waits for it;
     * false: a local file, connected to at start and written on the loop thread (writes that never wait) */
    bool writer_thread;
    size_t queue_rows; /* rows that may wait (twice this while a batch is held for a retry) */
    void *(*create)(const lx_usage_store_opts *o);
    /* Connects (if not connected) and creates or migrates the schema. Fills totals (this gateway's) when
     * it can read them. Returns LX_USAGE_WRITE_OK or a failure class, with err set. */
    int (*connect)(void *db, lx_usage_totals *totals, char *err, size_t errn);
    /* Writes rows in one transaction with this gateway's totals, which it fills after the write. PostgreSQL:
     * a row whose key is already in the ledger is not written again (nor counted). *written: rows new to it. */
    int (*write)(void *db, const lx_usage_row *rows, size_t n, lx_usage_totals *totals, size_t *written, char *err,
                 size_t errn);
    void (*disconnect)(void *db);
    void (*destroy)(void *db);
    /* `lexora usage`: calls fn once per line (sorted as q->by asks). 0, or -1 with err set. */
    int (*report)(const lx_usage_store_opts *o, const lx_usage_query *q, lx_usage_line_fn fn, void *ud, char *err,
                  size_t errn);
    /* Feedback on a request (the writer thread, after the rows before it are written): the request's latest
     * row is looked up by id; out->verdict says what became of it. Returns LX_USAGE_WRITE_OK or a failure
     * class (the store is away, or refused), with err set. */
    int (*feedback)(void *db, const lx_usage_feedback *f, lx_usage_feedback_result *out, char *err, size_t errn);
    /* The experiment report: fn once per row of the experiment since since (NULL: all), with its feedback. */
    int (*experiment_rows)(const lx_usage_store_opts *o, const char *experiment, const char *since, lx_usage_exp_fn fn,
                           void *ud, char *err, size_t errn);
} lx_usage_backend;

extern const lx_usage_backend lx_usage_sqlite;
extern const lx_usage_backend lx_usage_postgres;

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" of a wall-clock time in ms. */
void lx_usage_iso_ms(char out[32], int64_t ms);
/* A row's key in the ledger: the writer's run id (random, 16 hex digits) and the row's sequence number (12
 * digits at least, zero-padded, so a run's keys sort in order and the unique index grows at its end). */
void lx_usage_row_key(char out[40], const lx_usage_row *r);
static inline bool lx_usage_row_is_error(const lx_usage_row *r)
{
    return r->status >= 400 || r->len[LX_ROW_ERROR_CODE] > 0;
}

#endif
