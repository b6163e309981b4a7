/*
 * The usage ledger: one row per finished request, written off the event-loop thread into a store:
 * SQLite (usage.store: sqlite, the default: one file per gateway) or PostgreSQL (usage.store: postgres:
 * one database that several gateways share). The stores are two implementations of usage_backend.h;
 * this module owns what they share: the queue, the writer thread, the counters and the logging.
 *
 * The loop thread copies each row (fixed-size, no allocation) into a bounded in-memory batch. Each batch is
 * written in one transaction, together with the gateway's running totals, LX_USAGE_BATCH_MS after its first
 * row or sooner when many wait. A request never waits for a store.
 *
 * SQLite is written on the loop thread itself (about 256 rows per write, ~0.5 ms): the writes go to the
 * OS's page cache and never wait, neither for a disk (no fsync: the SQLite store's own checkpointer thread
 * does those) nor for a lock (busy timeout 0: a file another writer holds is tried again after a pause).
 * A second busy thread would cost more than the writing: on a machine with few cores it takes the loop
 * thread's core from time to time (bench/README.md). PostgreSQL, reached over a network, is written by a
 * writer thread, which takes the whole batch (a pointer swap under the mutex the loop adds rows under).
 *
 * SQLite: WAL mode with synchronous=NORMAL: a committed transaction is in the WAL file (the OS's page
 * cache) at once, so it survives the process being killed (kill -9); only an OS crash or power loss
 * can take back the last transactions. A request answered is therefore in the ledger within about
 * LX_USAGE_BATCH_MS plus one commit.
 *
 * Failure never reaches the requests. A batch the store refuses (a read-only or corrupt SQLite file,
 * a disk full, a statement PostgreSQL rejects) is dropped and its rows counted as lost
 * ("write_failed"). A batch the store could not take for now (PostgreSQL away: down, restarting, the
 * connection lost or timed out; the SQLite file locked by another writer) is kept and sent again, with a growing pause
 * (LX_USAGE_RETRY_MIN_MS .. LX_USAGE_RETRY_MAX_MS), until it is written; meanwhile new rows wait in the queue. Rows
 * that find the queue full (LX_USAGE_QUEUE_ROWS waiting, LX_USAGE_PG_QUEUE_ROWS for PostgreSQL) are lost as
 * "queue_full" (LX_USAGE_QUEUE_ROWS / 4 waiting are written at once, without waiting for the interval,
 * so that takes a store far slower than the traffic). So at most twice the queue waits in memory (a row
 * is under 800 bytes: 6 MB for SQLite, 25 MB for PostgreSQL, pages touched only as rows wait). At stop,
 * what cannot be written is counted as lost. The first failure of a streak is logged (ERROR) and so is
 * the recovery (WARNING), from the loop thread; a full queue is logged at most once a minute.
 *
 * Exactly once: every row carries a key of its writer (a random run id drawn at start and a sequence
 * number). In PostgreSQL it is unique per gateway (UNIQUE (gateway_id, row_key), ON CONFLICT DO NOTHING):
 * a batch sent again after an ambiguous failure (the commit reached the server, its answer did not reach
 * us) is therefore not counted twice, and the totals count only the rows that were new. SQLite's answer is
 * never ambiguous (a failed commit is rolled back), so its file has no such index. Request ids are not the
 * key: a client's X-Request-Id may repeat.
 *
 * SQLite schema (PRAGMA user_version = 4; an older file is migrated at open; see README.md for the columns
 * added since version 1):
 *   usage(id INTEGER PRIMARY KEY, time TEXT -- ISO 8601 UTC with milliseconds, when the answer ended,
 *         request_id TEXT, user TEXT, model TEXT, backend TEXT NULL, priority TEXT NULL,
 *         status INTEGER, error_code TEXT NULL, prompt_tokens INTEGER NULL, completion_tokens INTEGER NULL,
 *         queue_wait_ms REAL, ttft_ms REAL NULL, latency_ms REAL, stream INTEGER,
 *         gateway_id TEXT, row_key TEXT NULL)
 *   index usage_time on usage(time); index usage_request on usage(request_id)
 *   ledger_totals(id = 1, began TEXT, requests, prompt_tokens, completion_tokens, errors)
 *     -- totals since the ledger began, updated in the same transaction as the rows (so deleting old
 *        rows does not change them); read once at start.
 * PostgreSQL schema: see usage_pg.c (the same columns, time a timestamptz; ledger_totals has one row
 * per gateway; versions in lexora_migrations).
 *
 * Threads: lx_usage_store_open / start / add / snapshot / close on the loop thread; the PostgreSQL writer
 * and the SQLite checkpointer are internal.
 */
#ifndef LX_USAGE_STORE_H
#define LX_USAGE_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "utils/buf.h"
#include "utils/log.h"

#define LX_USAGE_BATCH_MS       250
#define LX_USAGE_QUEUE_ROWS     4096  /* SQLite: rows that may wait for the writer */
#define LX_USAGE_PG_QUEUE_ROWS  16384 /* PostgreSQL: more, for a server's pauses and restarts */
#define LX_USAGE_RETRY_MIN_MS   100
#define LX_USAGE_RETRY_MAX_MS   2000
#define LX_USAGE_GATEWAY_ID_MAX 64

typedef struct lx_usage_store lx_usage_store;

/* Where a ledger is: the usage.* keys of a config (lx_usage_opts_of). The strings are borrowed. */
typedef struct {
    int store;                 /* LX_USAGE_STORE_SQLITE or LX_USAGE_STORE_POSTGRES (config.h) */
    const char *db_path;       /* SQLite: the file (already resolved by lx_usage_db_path) */
    const char *postgres_url;  /* PostgreSQL: a libpq URL or key=value string */
    const char *password_file; /* PostgreSQL: the password, read at each connect; NULL: libpq's own */
    const char *gateway_id;    /* the name of this gateway in the ledger; NULL or "": the host name */
} lx_usage_store_opts;

/* Starts the ledger o names: the writer opens (or connects to) it. Never fails for the store's sake: a
 * store that cannot be reached is logged and tried again by the writer. Returns NULL only if the
 * thread cannot start. */
lx_usage_store *lx_usage_store_start(uv_loop_t *loop, const lx_usage_store_opts *o);

/*
 * The SQLite ledger at path (lx_usage_store_start with its defaults): opens (creating if needed) it and starts its
 * writer. Reads the totals before returning. Never fails for the database's sake: a database that cannot be opened is
 * logged and retried by the writer, its rows counted as lost. Returns NULL only if the thread cannot start.
 */
lx_usage_store *lx_usage_store_open(uv_loop_t *loop, const char *path);
/* Writes what is waiting, stops the writer, closes the handle and frees the store (from its close callback). */
void lx_usage_store_close(lx_usage_store *st);

/* Queues one row. Cheap: a copy under a mutex. NULL st is a no-op. */
void lx_usage_store_add(lx_usage_store *st, const lx_access_rec *rec);

typedef struct {
    const char *path;  /* the SQLite file, or the PostgreSQL URL without its password */
    bool writable;     /* the last write (or open) succeeded */
    char began[32];    /* when the ledger began (ISO 8601 UTC), "" while unknown */
    uint64_t requests; /* this gateway's totals in the ledger since it began */
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
typedef enum { LX_USAGE_BY_USER = 0, LX_USAGE_BY_MODEL, LX_USAGE_BY_DAY, LX_USAGE_BY_GATEWAY } lx_usage_by;

typedef struct {
    const char *since;   /* rows at or after this ISO 8601 UTC time ("YYYY-MM-DDTHH:MM:SS.mmmZ"), or NULL */
    const char *gateway; /* only rows this gateway wrote, or NULL for all */
    lx_usage_by by;
} lx_usage_query;

/*
 * Prints an aligned table of the ledger o names (SQLite: opened read-only, never created): one line per
 * user / model / day (UTC) / gateway with requests, prompt tokens, completion tokens, errors and average
 * latency, then a total. Returns 0, or 1 with a message on err if the ledger cannot be opened or read.
 */
int lx_usage_report_store(const lx_usage_store_opts *o, const lx_usage_query *q, FILE *out, FILE *err);
/* The SQLite ledger at path, all gateways. */
int lx_usage_report(const char *path, const char *since, lx_usage_by by, FILE *out, FILE *err);

/* --- feedback on a request (POST /v1/feedback), stored in the ledger --- */

#define LX_USAGE_COMMENT_MAX 2000

typedef struct {
    char request_id[64];
    char user[128];                         /* the caller */
    bool admin;                             /* the caller has the admin token: any request */
    double score;                           /* in [-1, 1] */
    char comment[LX_USAGE_COMMENT_MAX + 1]; /* "" = none */
} lx_usage_feedback;

typedef enum {
    LX_FEEDBACK_STORED = 0,
    LX_FEEDBACK_UNKNOWN,     /* no request of that id in the ledger */
    LX_FEEDBACK_NOT_YOURS,   /* another user's request */
    LX_FEEDBACK_TWICE,       /* that request has its feedback already */
    LX_FEEDBACK_UNAVAILABLE, /* the ledger cannot be read or written now */
} lx_feedback_verdict;

typedef struct {
    lx_feedback_verdict verdict;
    char experiment[128], variant[256]; /* the request's, "" when it was in none */
    char error[256];                    /* with LX_FEEDBACK_UNAVAILABLE */
} lx_usage_feedback_result;

typedef void (*lx_usage_feedback_cb)(void *ud, const lx_usage_feedback_result *r);

/* Hands f to the writer thread, which writes the rows queued before it, then stores it; cb runs later on the
 * loop thread (also when the store is closed first: verdict UNAVAILABLE). f is copied. */
void lx_usage_store_feedback(lx_usage_store *st, const lx_usage_feedback *f, lx_usage_feedback_cb cb, void *ud);

/* --- `lexora experiments report`: an experiment's rows from the ledger o names --- */
struct lx_exp_data;
/* Adds every row of the experiment since since (NULL: all) to d. Returns 0, or -1 with a message in err. */
int lx_usage_experiment_data(const lx_usage_store_opts *o, const char *experiment, const char *since,
                             struct lx_exp_data *d, char *err, size_t errn);

/* The host name as a gateway id (at most LX_USAGE_GATEWAY_ID_MAX - 1 bytes), "lexora" if it is unknown. */
void lx_usage_default_gateway_id(char out[LX_USAGE_GATEWAY_ID_MAX]);
/* A gateway id the ledger accepts: 1..63 bytes of letters, digits and . _ - : */
bool lx_usage_gateway_id_ok(const char *id);
/* A PostgreSQL URL or key=value string libpq accepts. false with a reason in err otherwise. */
bool lx_usage_pg_url_ok(const char *url, char *err, size_t errn);
/* url without its password (for logs and /stats): a new string. */
char *lx_usage_pg_url_redacted(const char *url);

/* "2025-01-31", "2025-01-31T12:00", "2025-01-31T12:00:00Z", "2025-01-31 12:00:00+09:00", ... → the
 * UTC instant as "YYYY-MM-DDTHH:MM:SS.mmmZ" (a date alone is midnight UTC). Returns 0, or -1 if invalid. */
int lx_usage_parse_since(const char *text, char out[32]);

#endif
