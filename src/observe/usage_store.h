/*
 * The usage ledger: one SQLite row per finished request, written off the event-loop thread.
 *
 * The loop thread copies each row (fixed-size, no allocation) into a bounded in-memory batch under a
 * mutex; a writer thread takes the whole batch (a pointer swap) every LX_USAGE_BATCH_MS and inserts it
 * in one transaction, together with the running totals in the one-row ledger_totals table. The
 * database is in WAL mode with synchronous=NORMAL: a committed transaction is in the WAL file (the
 * OS's page cache) at once, so it survives the process being killed (kill -9); only an OS crash or
 * power loss can take back the last transactions. A request answered is therefore in the ledger
 * within about LX_USAGE_BATCH_MS plus one commit.
 *
 * Failure never reaches the requests: if the database cannot be opened or written (read-only file or
 * directory, disk full, a corrupt file), the batch is dropped and its rows counted as lost
 * ("write_failed"); rows that find the batch full (LX_USAGE_QUEUE_ROWS waiting) are lost as
 * "queue_full" (a batch a quarter full is written at once, without waiting for the interval, so that
 * takes a disk far slower than the traffic). The first write failure of a streak is logged (ERROR) and
 * so is the recovery (WARNING), from the loop thread; a full queue is logged at most once a minute. The
 * writer closes the database after a failure and opens it again for the next batch.
 *
 * Schema (PRAGMA user_version = 1):
 *   usage(id INTEGER PRIMARY KEY, time TEXT -- ISO 8601 UTC with milliseconds, when the answer ended,
 *         request_id TEXT, user TEXT, model TEXT, backend TEXT NULL, priority TEXT NULL,
 *         status INTEGER, error_code TEXT NULL, prompt_tokens INTEGER NULL, completion_tokens INTEGER NULL,
 *         queue_wait_ms REAL, ttft_ms REAL NULL, latency_ms REAL, stream INTEGER)
 *   index usage_time on usage(time)
 *   ledger_totals(id = 1, began TEXT, requests, prompt_tokens, completion_tokens, errors)
 *     -- totals since the ledger began, updated in the same transaction as the rows (so deleting old
 *        rows does not change them); read once at start.
 *
 * Threads: lx_usage_store_open / add / snapshot / close on the loop thread; the writer is internal.
 */
#ifndef LX_USAGE_STORE_H
#define LX_USAGE_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "utils/buf.h"
#include "utils/log.h"

#define LX_USAGE_BATCH_MS   250
#define LX_USAGE_QUEUE_ROWS 4096

typedef struct lx_usage_store lx_usage_store;

/*
 * Opens (creating if needed) the ledger at path and starts its writer. Reads the totals before
 * returning. Never fails for the database's sake: a database that cannot be opened is logged and
 * retried by the writer, its rows counted as lost. Returns NULL only if the thread cannot start.
 */
lx_usage_store *lx_usage_store_open(uv_loop_t *loop, const char *path);
/* Writes what is waiting, stops the writer, closes the handle and frees the store (from its close callback). */
void lx_usage_store_close(lx_usage_store *st);

/* Queues one row. Cheap: a copy under a mutex. NULL st is a no-op. */
void lx_usage_store_add(lx_usage_store *st, const lx_access_rec *rec);

typedef struct {
    const char *path;
    bool writable;     /* the last write (or open) succeeded */
    char began[32];    /* when the ledger began (ISO 8601 UTC), "" while unknown */
    uint64_t requests; /* totals in the ledger since it began */
    uint64_t prompt_tokens, completion_tokens, errors;
    uint64_t rows_written;                       /* since start */
    uint64_t lost_write_failed, lost_queue_full; /* rows lost since start */
    uint64_t pending;                            /* rows waiting for the writer */
} lx_usage_snapshot;

void lx_usage_store_snapshot(lx_usage_store *st, lx_usage_snapshot *out);

/*
 * The usage ledger path of a config: usage.db_path, relative to the config file's directory when it is
 * a relative path (so `lexora usage --config FILE` finds the same ledger from any directory).
 * Returns a new string.
 */
char *lx_usage_db_path(const char *config_path, const char *db_path);

/* --- `lexora usage`: the report --- */
typedef enum { LX_USAGE_BY_USER = 0, LX_USAGE_BY_MODEL, LX_USAGE_BY_DAY } lx_usage_by;

/*
 * Prints an aligned table of the ledger at path (opened read-only): one line per user / model / day
 * (UTC) with requests, prompt tokens, completion tokens, errors and average latency, then a total.
 * since: rows at or after this ISO 8601 UTC time (NULL for all). Returns 0, or 1 with a message on
 * err if the database cannot be opened or read.
 */
int lx_usage_report(const char *path, const char *since, lx_usage_by by, FILE *out, FILE *err);

/* "2025-01-31", "2025-01-31T12:00", "2025-01-31T12:00:00Z", "2025-01-31 12:00:00+09:00", ... → the
 * UTC instant as "YYYY-MM-DDTHH:MM:SS.mmmZ" (a date alone is midnight UTC). Returns 0, or -1 if invalid. */
int lx_usage_parse_since(const char *text, char out[32]);

#endif
