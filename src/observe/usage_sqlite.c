/*
 * The usage ledger's SQLite store (usage_backend.h): one file per gateway, WAL mode, the schema in
 * usage_store.h. An older file (version 1: before gateway_id; 2: before model_used, experiment, variant and
 * the feedback table; 3: with a unique index on the row key) is migrated in the transaction that opens it.
 *
 * Written on the loop thread (usage_store.c), so nothing here waits: rows go in as multi-row INSERTs
 * (MULTI_ROWS a statement, one step for all of them), the busy timeout is 0 (a file another writer holds
 * is LX_USAGE_WRITE_RETRY: the rows are kept and tried again after a pause), and automatic checkpoints are
 * off: the commit hook wakes the checkpointer, a thread with its own connection, once the WAL passes
 * CKPT_PAGES, and it copies the WAL into the file (with the fsyncs) while the loop goes on committing.
 *
 * Invariants: the writer's handle and its statements belong to the thread that calls connect/write (never
 * two threads at once, so the handle is opened without SQLite's own mutexes, SQLITE_OPEN_NOMUTEX); the
 * checkpointer's handle is its own; any failure but a lock closes the handle (and stops the checkpointer),
 * so the next batch opens the file afresh (it may have been fixed or replaced); a failed write is dropped
 * (LX_USAGE_WRITE_DROP): what made it fail (a read-only file, a full disk) would most likely make the
 * retry fail too. A commit SQLite reports has happened, and one it does not is rolled back, so no batch is
 * ever written twice and the file needs no unique key: the row_key column (PostgreSQL's, which does) is left
 * NULL.
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "observe/usage_backend.h"
#include "utils/buf.h"
#include "utils/common.h"

#define ROW_PARAMS 18 /* the columns insert_cols names */
#define MULTI_ROWS 32 /* rows per multi-row INSERT: one statement step for many rows */

typedef struct {
    char time[32];
} row_text; /* a row's formatted values, alive until its statement has run */

#define CKPT_PAGES 4096 /* WAL pages (4 KB) after which the checkpointer copies the WAL into the file */

typedef struct {
    char *path;
    char gateway_id[LX_USAGE_GATEWAY_ID_MAX];
    int gateway_id_len;
    /* the checkpointer: a thread with its own connection, woken when the WAL has grown by CKPT_PAGES */
    uv_thread_t ckpt_thread;
    uv_mutex_t ckpt_mu;
    uv_cond_t ckpt_cv;
    bool ckpt_started, ckpt_wanted, ckpt_stop; /* under ckpt_mu */
    sqlite3 *db;
    sqlite3_stmt *ins1, *insn, *upd, *tot; /* insert one row, MULTI_ROWS rows; totals */
    row_text text[MULTI_ROWS];
    int64_t time_sec; /* time_head holds this second, formatted */
    char time_head[24];
} sq;

#define SCHEMA_VERSION 4

static const char create_sql[] = "CREATE TABLE usage ("
                                 " id INTEGER PRIMARY KEY,"
                                 " time TEXT NOT NULL,"
                                 " request_id TEXT NOT NULL,"
                                 " user TEXT NOT NULL,"
                                 " model TEXT NOT NULL,"
                                 " backend TEXT,"
                                 " priority TEXT,"
                                 " status INTEGER NOT NULL,"
                                 " error_code TEXT,"
                                 " prompt_tokens INTEGER,"
                                 " completion_tokens INTEGER,"
                                 " queue_wait_ms REAL NOT NULL,"
                                 " ttft_ms REAL,"
                                 " latency_ms REAL NOT NULL,"
                                 " stream INTEGER NOT NULL,"
                                 " gateway_id TEXT NOT NULL DEFAULT '',"
                                 " row_key TEXT,"
                                 " model_used TEXT,"
                                 " experiment TEXT,"
                                 " variant TEXT);"
                                 "CREATE INDEX usage_time ON usage(time);";

/* version 3 → 4: no unique index on (gateway_id, row_key). SQLite never sends a batch twice (a failed write
 * is dropped, never retried), so the index only cost every insert a fourth B-tree. */
static const char migrate_v3_sql[] = "DROP INDEX IF EXISTS usage_key;";

/* version 2 → 3: what answered, the experiment and its variant; feedback. */
static const char migrate_v2_sql[] = "ALTER TABLE usage ADD COLUMN model_used TEXT;"
                                     "ALTER TABLE usage ADD COLUMN experiment TEXT;"
                                     "ALTER TABLE usage ADD COLUMN variant TEXT;";

/* version 1 → 2: each row names its gateway; ?1 is this gateway's id (the file was only ever its own). */
static const char migrate_v1_sql[] = "ALTER TABLE usage ADD COLUMN gateway_id TEXT NOT NULL DEFAULT '';"
                                     "ALTER TABLE usage ADD COLUMN row_key TEXT;";

static const char common_sql[] =
    "CREATE TABLE IF NOT EXISTS ledger_totals ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " began TEXT NOT NULL,"
    " requests INTEGER NOT NULL,"
    " prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL,"
    " errors INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO ledger_totals VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0, 0, 0, 0);"
    "CREATE INDEX IF NOT EXISTS usage_request ON usage(request_id);"
    "CREATE INDEX IF NOT EXISTS usage_experiment ON usage(experiment, time) WHERE experiment IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS feedback ("
    " request_id TEXT PRIMARY KEY,"
    " time TEXT NOT NULL,"
    " user TEXT NOT NULL,"
    " experiment TEXT,"
    " variant TEXT,"
    " score REAL NOT NULL,"
    " comment TEXT,"
    " gateway_id TEXT NOT NULL);"
    "PRAGMA user_version = 4;";

static const char insert_cols[] =
    "INSERT INTO usage (time, request_id, user, model, backend, priority, status, error_code, prompt_tokens,"
    " completion_tokens, queue_wait_ms, ttft_ms, latency_ms, stream, gateway_id, model_used, experiment, variant)"
    " VALUES ";

static const char update_sql[] =
    "UPDATE ledger_totals SET requests = requests + ?1, prompt_tokens = prompt_tokens + ?2,"
    " completion_tokens = completion_tokens + ?3, errors = errors + ?4 WHERE id = 1";

static const char totals_sql[] =
    "SELECT began, requests, prompt_tokens, completion_tokens, errors FROM ledger_totals WHERE id = 1";

/* SQLite counts every allocation in process-wide statistics, taking a global mutex each time; nothing here reads
 * them. Possible only before SQLite initializes (the first open); later it fails, harmlessly. */
static void sqlite_stats_off(void) { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

static void *sq_create(const lx_usage_store_opts *o)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, sqlite_stats_off);
    sq *s = lx_xcalloc(1, sizeof *s);
    s->path = lx_xstrdup(o->db_path);
    snprintf(s->gateway_id, sizeof s->gateway_id, "%s", o->gateway_id);
    s->gateway_id_len = (int)strlen(s->gateway_id);
    uv_mutex_init(&s->ckpt_mu);
    uv_cond_init(&s->ckpt_cv);
    return s;
}

/* ---------- the checkpointer ---------- */

/* Copies what the WAL holds into the database file and fsyncs both (a PASSIVE checkpoint: it never waits for
 * the writer, which goes on committing; the writer starts the WAL over once a checkpoint has caught up). */
static void ckpt_main(void *arg)
{
    sq *s = arg;
    sqlite3 *db = NULL;
    /* a connection sees the WAL once it has read the file: the pragma (a no-op here) makes it */
    if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        db = NULL; /* the writer's next failure reopens everything */
    }
    uv_mutex_lock(&s->ckpt_mu);
    for (;;) {
        while (!s->ckpt_wanted && !s->ckpt_stop)
            uv_cond_wait(&s->ckpt_cv, &s->ckpt_mu);
        if (s->ckpt_stop) break;
        s->ckpt_wanted = false;
        uv_mutex_unlock(&s->ckpt_mu);
        if (db) sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        uv_mutex_lock(&s->ckpt_mu);
    }
    uv_mutex_unlock(&s->ckpt_mu);
    sqlite3_close(db);
}

/* The writer's commit hook: the WAL holds `pages` pages. */
static int on_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    sq *s = arg;
    if (pages < CKPT_PAGES) return SQLITE_OK;
    uv_mutex_lock(&s->ckpt_mu);
    if (!s->ckpt_started) s->ckpt_started = uv_thread_create(&s->ckpt_thread, ckpt_main, s) == 0;
    s->ckpt_wanted = true;
    uv_cond_signal(&s->ckpt_cv);
    uv_mutex_unlock(&s->ckpt_mu);
    return SQLITE_OK;
}

static void ckpt_stop(sq *s)
{
    uv_mutex_lock(&s->ckpt_mu);
    bool started = s->ckpt_started;
    s->ckpt_stop = true;
    uv_cond_signal(&s->ckpt_cv);
    uv_mutex_unlock(&s->ckpt_mu);
    if (started) uv_thread_join(&s->ckpt_thread);
    s->ckpt_started = s->ckpt_wanted = s->ckpt_stop = false;
}

static void sq_disconnect(void *db)
{
    sq *s = db;
    ckpt_stop(s); /* then closing the last connection checkpoints what is left */
    sqlite3_finalize(s->ins1);
    sqlite3_finalize(s->insn);
    sqlite3_finalize(s->upd);
    sqlite3_finalize(s->tot);
    sqlite3_close(s->db);
    s->ins1 = s->insn = s->upd = s->tot = NULL;
    s->db = NULL;
}

static void sq_destroy(void *db)
{
    sq *s = db;
    sq_disconnect(s);
    uv_mutex_destroy(&s->ckpt_mu);
    uv_cond_destroy(&s->ckpt_cv);
    free(s->path);
    free(s);
}

/* Sets err; the file locked by another writer (a second gateway, a `sqlite3` shell) is worth a retry, after a
 * pause: the loop never waits for a lock (busy timeout 0). Anything else drops the batch. */
static int fail(sq *s, char *err, size_t errn, const char *what, const char *msg)
{
    snprintf(err, errn, "%s: %s", what, msg ? msg : (s->db ? sqlite3_errmsg(s->db) : "out of memory"));
    int code = s->db ? sqlite3_errcode(s->db) & 0xff : SQLITE_OK;
    return code == SQLITE_BUSY || code == SQLITE_LOCKED ? LX_USAGE_WRITE_RETRY : LX_USAGE_WRITE_DROP;
}

static int read_totals(sq *s, lx_usage_totals *t)
{
    if (s->tot == NULL && sqlite3_prepare_v2(s->db, totals_sql, -1, &s->tot, NULL) != SQLITE_OK) return -1;
    int rc = sqlite3_step(s->tot);
    if (rc == SQLITE_ROW) {
        const unsigned char *b = sqlite3_column_text(s->tot, 0);
        snprintf(t->began, sizeof t->began, "%s", b ? (const char *)b : "");
        t->requests = (uint64_t)sqlite3_column_int64(s->tot, 1);
        t->prompt_tokens = (uint64_t)sqlite3_column_int64(s->tot, 2);
        t->completion_tokens = (uint64_t)sqlite3_column_int64(s->tot, 3);
        t->errors = (uint64_t)sqlite3_column_int64(s->tot, 4);
    }
    sqlite3_reset(s->tot);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *q = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* Creates the schema or migrates it to SCHEMA_VERSION, inside the open transaction. */
static int migrate(sq *s, char **msg)
{
    int v = user_version(s->db);
    if (v < 0 || v > SCHEMA_VERSION) {
        *msg = sqlite3_mprintf(v < 0 ? "cannot read its version" : "schema version %d is newer than this Lexora's", v);
        return -1;
    }
    if (v == SCHEMA_VERSION) return 0;
    if (v == 0 && sqlite3_exec(s->db, create_sql, NULL, NULL, msg) != SQLITE_OK) return -1;
    if (v == 1) {
        if (sqlite3_exec(s->db, migrate_v1_sql, NULL, NULL, msg) != SQLITE_OK) return -1;
        char *upd = sqlite3_mprintf("UPDATE usage SET gateway_id = %Q", s->gateway_id);
        int rc = sqlite3_exec(s->db, upd, NULL, NULL, msg);
        sqlite3_free(upd);
        if (rc != SQLITE_OK) return -1;
    }
    if ((v == 1 || v == 2) && sqlite3_exec(s->db, migrate_v2_sql, NULL, NULL, msg) != SQLITE_OK) return -1;
    if (v >= 1 && v <= 3 && sqlite3_exec(s->db, migrate_v3_sql, NULL, NULL, msg) != SQLITE_OK) return -1;
    return sqlite3_exec(s->db, common_sql, NULL, NULL, msg) == SQLITE_OK ? 0 : -1;
}

/* INSERT of `rows` rows, each ROW_PARAMS anonymous parameters (numbered in order). */
static int prepare_insert(sqlite3 *db, int rows, sqlite3_stmt **out)
{
    static const char one[] = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?),";
    lx_buf sql = {0};
    lx_buf_append_str(&sql, insert_cols);
    for (int i = 0; i < rows; i++)
        lx_buf_append(&sql, one, sizeof one - (i == rows - 1 ? 2 : 1)); /* the last without its comma */
    int rc = sqlite3_prepare_v2(db, sql.p, (int)sql.len, out, NULL);
    lx_buf_free(&sql);
    return rc;
}

static int sq_connect(void *db, lx_usage_totals *totals, char *err, size_t errn)
{
    sq *s = db;
    if (s->db) return LX_USAGE_WRITE_OK;
    int rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errn, "cannot open: %s", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        rc = LX_USAGE_WRITE_DROP;
        goto fail;
    }
    char *msg = NULL;
    /* journal_mode=WAL may be refused (a read-only file): the schema step then reports the real error.
     * Checkpoints (which fsync) are the checkpointer thread's, not the loop's. */
    sqlite3_exec(s->db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;"
                 " PRAGMA journal_size_limit=67108864;",
                 NULL, NULL, NULL);
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK || migrate(s, &msg) != 0 ||
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        rc = fail(s, err, errn, "cannot write", msg);
        sqlite3_free(msg);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        read_totals(s, totals); /* an existing ledger we cannot write: its totals are still worth showing */
        goto fail;
    }
    if (prepare_insert(s->db, 1, &s->ins1) != SQLITE_OK || prepare_insert(s->db, MULTI_ROWS, &s->insn) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, update_sql, -1, &s->upd, NULL) != SQLITE_OK) {
        rc = fail(s, err, errn, "cannot prepare", NULL);
        goto fail;
    }
    read_totals(s, totals);
    sqlite3_wal_hook(s->db, on_commit, s);
    return LX_USAGE_WRITE_OK;
fail:
    sq_disconnect(s);
    return rc;
}

#define TIME_LEN 24 /* what format_time writes: 2025-06-01T09:30:12.345Z */

/* The row's time as ISO 8601 with milliseconds; the seconds are formatted once per second (rows come in
 * time order). */
static void format_time(sq *s, char out[32], int64_t ms)
{
    int64_t sec = ms / 1000;
    if (sec != s->time_sec || s->time_head[0] == '\0') {
        char full[32];
        lx_usage_iso_ms(full, sec * 1000);
        memcpy(s->time_head, full, 19); /* 2025-06-01T09:30:12 */
        s->time_head[19] = '\0';
        s->time_sec = sec;
    }
    int m = (int)(ms % 1000);
    memcpy(out, s->time_head, 19);
    out[19] = '.';
    out[20] = (char)('0' + m / 100);
    out[21] = (char)('0' + m / 10 % 10);
    out[22] = (char)('0' + m % 10);
    out[23] = 'Z';
    out[TIME_LEN] = '\0';
}

static void bind_text(sqlite3_stmt *q, int i, const char *v, int len, bool null_if_empty)
{
    if (len > 0 || !null_if_empty)
        sqlite3_bind_text(q, i, v, len, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

/* Text k of r, its length known (no strlen per column and row). */
static void bind_field(sqlite3_stmt *q, int i, const lx_usage_row *r, lx_usage_row_field k, bool null_if_empty)
{
    bind_text(q, i, lx_usage_row_text(r, k), r->len[k], null_if_empty);
}

static void bind_count(sqlite3_stmt *q, int i, int64_t v)
{
    if (v >= 0)
        sqlite3_bind_int64(q, i, v);
    else
        sqlite3_bind_null(q, i);
}

/* Binds row r to the parameters after `base`; its formatted values go to t, which must outlive the step. */
static void bind_row(sq *s, sqlite3_stmt *q, int base, const lx_usage_row *r, row_text *t)
{
    format_time(s, t->time, r->time_ms);
    bind_text(q, base + 1, t->time, TIME_LEN, false);
    bind_field(q, base + 2, r, LX_ROW_REQUEST_ID, false);
    bind_field(q, base + 3, r, LX_ROW_USER, false);
    bind_field(q, base + 4, r, LX_ROW_MODEL, false);
    bind_field(q, base + 5, r, LX_ROW_BACKEND, true);
    bind_field(q, base + 6, r, LX_ROW_PRIORITY, true);
    sqlite3_bind_int(q, base + 7, r->status);
    bind_field(q, base + 8, r, LX_ROW_ERROR_CODE, true);
    bind_count(q, base + 9, r->prompt_tokens);
    bind_count(q, base + 10, r->completion_tokens);
    sqlite3_bind_double(q, base + 11, r->queue_wait_ms);
    if (r->ttft_ms >= 0)
        sqlite3_bind_double(q, base + 12, r->ttft_ms);
    else
        sqlite3_bind_null(q, base + 12);
    sqlite3_bind_double(q, base + 13, r->latency_ms);
    sqlite3_bind_int(q, base + 14, r->stream);
    bind_text(q, base + 15, s->gateway_id, s->gateway_id_len, false);
    bind_field(q, base + 16, r, LX_ROW_MODEL_USED, true);
    bind_field(q, base + 17, r, LX_ROW_EXPERIMENT, true);
    bind_field(q, base + 18, r, LX_ROW_VARIANT, true);
}

/* Inserts the n rows, MULTI_ROWS to a statement while that many are left, then one at a time. */
static int insert_rows(sq *s, const lx_usage_row *rows, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = n - i >= MULTI_ROWS ? MULTI_ROWS : 1;
        sqlite3_stmt *q = k > 1 ? s->insn : s->ins1;
        for (size_t j = 0; j < k; j++)
            bind_row(s, q, (int)j * ROW_PARAMS, &rows[i + j], &s->text[j]);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_DONE) return -1;
        i += k;
    }
    return 0;
}

static int sq_write(void *db, const lx_usage_row *rows, size_t n, lx_usage_totals *totals, size_t *written, char *err,
                    size_t errn)
{
    sq *s = db;
    int rc = sq_connect(s, totals, err, errn);
    if (rc != LX_USAGE_WRITE_OK) return rc;
    char *msg = NULL;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) {
        rc = fail(s, err, errn, "cannot begin", msg);
        sqlite3_free(msg);
        if (rc == LX_USAGE_WRITE_RETRY) return rc; /* locked by another writer: the handle stays open */
        goto fail;
    }
    if (insert_rows(s, rows, n) != 0) {
        rc = fail(s, err, errn, "cannot insert", NULL);
        goto rollback;
    }
    int64_t added = (int64_t)n, pt = 0, ct = 0, errors = 0;
    for (size_t i = 0; i < n; i++) {
        const lx_usage_row *r = &rows[i];
        pt += r->prompt_tokens > 0 ? r->prompt_tokens : 0;
        ct += r->completion_tokens > 0 ? r->completion_tokens : 0;
        errors += lx_usage_row_is_error(r);
    }
    sqlite3_bind_int64(s->upd, 1, added);
    sqlite3_bind_int64(s->upd, 2, pt);
    sqlite3_bind_int64(s->upd, 3, ct);
    sqlite3_bind_int64(s->upd, 4, errors);
    int step = sqlite3_step(s->upd);
    sqlite3_reset(s->upd);
    if (step != SQLITE_DONE) {
        rc = fail(s, err, errn, "cannot update totals", NULL);
        goto rollback;
    }
    if (read_totals(s, totals) != 0) {
        rc = fail(s, err, errn, "cannot read totals", NULL);
        goto rollback;
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        rc = fail(s, err, errn, "cannot commit", msg);
        sqlite3_free(msg);
        goto rollback;
    }
    *written = (size_t)added;
    return LX_USAGE_WRITE_OK;
rollback:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
fail:
    sq_disconnect(s); /* open afresh next time: the file may have been fixed or replaced */
    return rc;
}

/* ---------- `lexora usage` ---------- */

/* The ledger opened read-only for a report (never created), or NULL with err set. */
static sqlite3 *open_read(const lx_usage_store_opts *o, char *err, size_t errn)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(o->db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        return db;
    }
    snprintf(err, errn, "cannot open the usage ledger %s: %s", o->db_path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return NULL;
}

static void read_failed(const lx_usage_store_opts *o, sqlite3 *db, char *err, size_t errn)
{
    snprintf(err, errn, "cannot read the usage ledger %s: %s", o->db_path, sqlite3_errmsg(db));
}

/* Runs sql on db (a report's read-only handle, closed here), ?1 and ?2 bound to p1 and p2 (NULL: NULL), calling
 * row once per result row. 0, or -1 with err set. */
static int read_query(const lx_usage_store_opts *o, sqlite3 *db, const char *sql, const char *p1, const char *p2,
                      void (*row)(sqlite3_stmt *st, void *ud), void *ud, char *err, size_t errn)
{
    sqlite3_stmt *st = NULL;
    int rc = -1, step = SQLITE_ERROR;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (p1) sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
        if (p2) sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
        while ((step = sqlite3_step(st)) == SQLITE_ROW)
            row(st, ud);
    }
    if (step == SQLITE_DONE)
        rc = 0;
    else
        read_failed(o, db, err, errn);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

typedef struct {
    lx_usage_line_fn fn;
    void *ud;
} line_sink;

static void report_row(sqlite3_stmt *st, void *ud)
{
    const line_sink *k = ud;
    const unsigned char *key = sqlite3_column_text(st, 0);
    lx_usage_line l = {.key = key ? (const char *)key : "-",
                       .requests = sqlite3_column_int64(st, 1),
                       .prompt_tokens = sqlite3_column_int64(st, 2),
                       .completion_tokens = sqlite3_column_int64(st, 3),
                       .errors = sqlite3_column_int64(st, 4),
                       .latency_ms_sum = sqlite3_column_double(st, 5)};
    k->fn(k->ud, &l);
}

static int sq_report(const lx_usage_store_opts *o, const lx_usage_query *q, lx_usage_line_fn fn, void *ud, char *err,
                     size_t errn)
{
    sqlite3 *db = open_read(o, err, errn);
    if (db == NULL) return -1;
    /* a version 1 file (not migrated yet, read-only here) has no gateway_id: its rows are all its own */
    const char *gw = user_version(db) == 1 ? "''" : "gateway_id";
    const char *keys[] = {"user", "model", "substr(time, 1, 10)", gw};
    char sql[640];
    snprintf(sql, sizeof sql,
             "SELECT %s AS k, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
             " SUM(status >= 400 OR error_code IS NOT NULL), COALESCE(SUM(latency_ms), 0)"
             " FROM usage WHERE (?1 IS NULL OR time >= ?1) AND (?2 IS NULL OR %s = ?2)"
             " GROUP BY k ORDER BY %s",
             keys[q->by], gw, q->by == LX_USAGE_BY_DAY ? "k" : "COUNT(*) DESC, k");
    line_sink k = {fn, ud};
    return read_query(o, db, sql, q->since, q->gateway, report_row, &k, err, errn);
}

/* ---------- feedback ---------- */

static const char find_sql[] =
    "SELECT user, COALESCE(experiment, ''), COALESCE(variant, '') FROM usage WHERE request_id = ?1"
    " ORDER BY id DESC LIMIT 1";
static const char feedback_sql[] =
    "INSERT INTO feedback (request_id, time, user, experiment, variant, score, comment, gateway_id)"
    " VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?2, NULLIF(?3, ''), NULLIF(?4, ''), ?5, NULLIF(?6, ''), ?7)"
    " ON CONFLICT (request_id) DO NOTHING";

static void copy_col(char *dst, size_t cap, sqlite3_stmt *q, int col)
{
    const unsigned char *v = sqlite3_column_text(q, col);
    snprintf(dst, cap, "%s", v ? (const char *)v : "");
}

/* Looks the request up and stores the feedback, in the open transaction. -1 on a database error. */
static int store_feedback(sq *s, const lx_usage_feedback *f, lx_usage_feedback_result *out)
{
    sqlite3_stmt *q = NULL;
    char owner[128] = "";
    int rc = -1;
    if (sqlite3_prepare_v2(s->db, find_sql, -1, &q, NULL) != SQLITE_OK) goto done;
    sqlite3_bind_text(q, 1, f->request_id, -1, SQLITE_STATIC);
    int step = sqlite3_step(q);
    if (step != SQLITE_ROW && step != SQLITE_DONE) goto done;
    rc = 0;
    out->verdict = LX_FEEDBACK_UNKNOWN;
    if (step == SQLITE_DONE) goto done;
    copy_col(owner, sizeof owner, q, 0);
    copy_col(out->experiment, sizeof out->experiment, q, 1);
    copy_col(out->variant, sizeof out->variant, q, 2);
    out->verdict = LX_FEEDBACK_NOT_YOURS;
    if (!f->admin && strcmp(owner, f->user) != 0) goto done;
    sqlite3_finalize(q);
    rc = -1;
    if (sqlite3_prepare_v2(s->db, feedback_sql, -1, &q, NULL) != SQLITE_OK) goto done;
    sqlite3_bind_text(q, 1, f->request_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, out->experiment, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, out->variant, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 5, f->score);
    sqlite3_bind_text(q, 6, f->comment, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 7, s->gateway_id, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE) goto done;
    rc = 0;
    out->verdict = sqlite3_changes(s->db) == 1 ? LX_FEEDBACK_STORED : LX_FEEDBACK_TWICE;
done:
    sqlite3_finalize(q);
    return rc;
}

static int sq_feedback(void *db, const lx_usage_feedback *f, lx_usage_feedback_result *out, char *err, size_t errn)
{
    sq *s = db;
    lx_usage_totals unused;
    int rc = sq_connect(s, &unused, err, errn);
    if (rc != LX_USAGE_WRITE_OK) return rc;
    char *msg = NULL;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) {
        rc = fail(s, err, errn, "cannot begin", msg);
        sqlite3_free(msg);
        if (rc != LX_USAGE_WRITE_RETRY) sq_disconnect(s);
        return rc;
    }
    if (store_feedback(s, f, out) != 0) {
        rc = fail(s, err, errn, "cannot store feedback", NULL);
        goto rollback;
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        rc = fail(s, err, errn, "cannot commit", msg);
        sqlite3_free(msg);
        goto rollback;
    }
    return LX_USAGE_WRITE_OK;
rollback:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sq_disconnect(s);
    return rc;
}

/* ---------- `lexora experiments report` ---------- */

typedef struct {
    lx_usage_exp_fn fn;
    void *ud;
} exp_sink;

static void experiment_row(sqlite3_stmt *st, void *ud)
{
    const exp_sink *k = ud;
    lx_exp_row r = {.variant = (const char *)sqlite3_column_text(st, 0),
                    .status = sqlite3_column_int(st, 1),
                    .error = sqlite3_column_int(st, 2) != 0,
                    .latency_ms = sqlite3_column_double(st, 3),
                    .ttft_ms = sqlite3_column_double(st, 4),
                    .tokens = (long)sqlite3_column_int64(st, 5),
                    .has_feedback = sqlite3_column_type(st, 6) != SQLITE_NULL,
                    .score = sqlite3_column_double(st, 6)};
    k->fn(k->ud, &r);
}

static int sq_experiment_rows(const lx_usage_store_opts *o, const char *experiment, const char *since,
                              lx_usage_exp_fn fn, void *ud, char *err, size_t errn)
{
    static const char sql[] =
        "SELECT u.variant, u.status, (u.status >= 400 OR u.error_code IS NOT NULL), u.latency_ms,"
        " CASE WHEN u.stream THEN COALESCE(u.ttft_ms, -1) ELSE -1 END, CASE WHEN u.prompt_tokens IS NULL THEN -1"
        " ELSE u.prompt_tokens + COALESCE(u.completion_tokens, 0) END, f.score"
        " FROM usage u LEFT JOIN feedback f ON f.request_id = u.request_id"
        " WHERE u.experiment = ?1 AND u.variant IS NOT NULL AND (?2 IS NULL OR u.time >= ?2) ORDER BY u.id";
    sqlite3 *db = open_read(o, err, errn);
    if (db == NULL) return -1;
    if (user_version(db) < 3) { /* written before experiments: none of its rows is in one */
        sqlite3_close(db);
        return 0;
    }
    exp_sink k = {fn, ud};
    return read_query(o, db, sql, experiment, since, experiment_row, &k, err, errn);
}

const lx_usage_backend lx_usage_sqlite = {
    .name = "sqlite",
    .writer_thread = false,
    .queue_rows = LX_USAGE_QUEUE_ROWS,
    .create = sq_create,
    .connect = sq_connect,
    .write = sq_write,
    .disconnect = sq_disconnect,
    .destroy = sq_destroy,
    .report = sq_report,
    .feedback = sq_feedback,
    .experiment_rows = sq_experiment_rows,
};
