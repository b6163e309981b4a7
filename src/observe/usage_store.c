/*
 * The usage ledger (see usage_store.h for the schema and the durability argument).
 *
 * Two row arrays of LX_USAGE_QUEUE_ROWS: the loop thread fills `active` under the mutex; the writer
 * swaps it with `spare` (also under the mutex) and writes the taken rows without holding it, so the
 * loop never waits for SQLite. Everything shared (the arrays' fill level, the counters, the totals,
 * the failure state) is under the mutex; the sqlite3 handle and its statements belong to the writer
 * thread once it runs (before that, to lx_usage_store_open on the loop thread).
 * The writer tells the loop about a change of failure state through a uv_async_t, and the loop logs it.
 */
#include "observe/usage_store.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "utils/common.h"
#include "utils/id.h"

#define FLUSH_ROWS        (LX_USAGE_QUEUE_ROWS / 4) /* this many waiting: written without waiting for the interval */
#define QUEUE_FULL_LOG_NS (60 * 1000000000ull)      /* "rows lost, queue full" at most once a minute */

typedef struct {
    int64_t time_ms; /* wall clock, when the answer ended */
    char request_id[LX_REQUEST_ID_MAX];
    char user[128];
    char model[256];
    char backend[128]; /* "" = NULL */
    char priority[8];  /* "" = NULL */
    char error_code[48];
    int status;
    long prompt_tokens, completion_tokens; /* -1 = NULL */
    double queue_wait_ms, ttft_ms, latency_ms;
    bool stream;
} row;

struct lx_usage_store {
    char *path;
    uv_loop_t *loop;
    uv_async_t async;
    uv_thread_t thread;
    bool thread_started;
    uv_mutex_t mu;
    uv_cond_t cv;

    /* under mu */
    row *active, *spare;
    size_t n_active;
    uint64_t first_row_ns; /* when the active batch got its first row */
    bool stop;
    bool writable, failing;
    char last_error[256];
    bool totals_loaded;
    char began[32];
    uint64_t requests, prompt_tokens, completion_tokens, errors;
    uint64_t rows_written, lost_write_failed, lost_queue_full;

    /* loop thread only */
    bool logged_failing;
    uint64_t queue_full_logged_ns; /* 0: not logged yet */
    uint64_t lost_at_failure;

    /* writer thread only (the loop's before the thread starts) */
    sqlite3 *db;
    sqlite3_stmt *ins, *upd;
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS usage ("
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
    " stream INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS usage_time ON usage(time);"
    "CREATE TABLE IF NOT EXISTS ledger_totals ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " began TEXT NOT NULL,"
    " requests INTEGER NOT NULL,"
    " prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL,"
    " errors INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO ledger_totals VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 0, 0, 0, 0);"
    "PRAGMA user_version = 1;";

static const char insert_sql[] =
    "INSERT INTO usage (time, request_id, user, model, backend, priority, status, error_code, prompt_tokens,"
    " completion_tokens, queue_wait_ms, ttft_ms, latency_ms, stream)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

static const char update_sql[] =
    "UPDATE ledger_totals SET requests = requests + ?1, prompt_tokens = prompt_tokens + ?2,"
    " completion_tokens = completion_tokens + ?3, errors = errors + ?4 WHERE id = 1";

/* ---------- database (writer side) ---------- */

static void db_close(lx_usage_store *st)
{
    sqlite3_finalize(st->ins);
    sqlite3_finalize(st->upd);
    sqlite3_close(st->db);
    st->ins = st->upd = NULL;
    st->db = NULL;
}

static void set_error(char *out, size_t n, const char *what, sqlite3 *db, int rc)
{
    snprintf(out, n, "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* Reads the totals into st if they were never read. */
static void load_totals(lx_usage_store *st)
{
    uv_mutex_lock(&st->mu);
    bool loaded = st->totals_loaded;
    uv_mutex_unlock(&st->mu);
    if (loaded) return;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT began, requests, prompt_tokens, completion_tokens, errors FROM ledger_totals"
                           " WHERE id = 1",
                           -1, &q, NULL) != SQLITE_OK) {
        sqlite3_finalize(q);
        return;
    }
    if (sqlite3_step(q) == SQLITE_ROW) {
        uv_mutex_lock(&st->mu);
        const unsigned char *b = sqlite3_column_text(q, 0);
        snprintf(st->began, sizeof st->began, "%s", b ? (const char *)b : "");
        st->requests = (uint64_t)sqlite3_column_int64(q, 1);
        st->prompt_tokens = (uint64_t)sqlite3_column_int64(q, 2);
        st->completion_tokens = (uint64_t)sqlite3_column_int64(q, 3);
        st->errors = (uint64_t)sqlite3_column_int64(q, 4);
        st->totals_loaded = true;
        uv_mutex_unlock(&st->mu);
    }
    sqlite3_finalize(q);
}

/* Opens the database, sets WAL and the schema, prepares the statements. 0, or -1 with err set. */
static int db_open(lx_usage_store *st, char *err, size_t errn)
{
    int rc = sqlite3_open_v2(st->path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        set_error(err, errn, "cannot open", st->db, rc);
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 5000);
    char *msg = NULL;
    /* journal_mode=WAL may be refused (a read-only file): the schema step then reports the real error */
    sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(st->db, schema_sql, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errn, "cannot write: %s", msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        load_totals(st); /* an existing ledger we cannot write: its totals are still worth showing */
        goto fail;
    }
    if (sqlite3_prepare_v2(st->db, insert_sql, -1, &st->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, update_sql, -1, &st->upd, NULL) != SQLITE_OK) {
        set_error(err, errn, "cannot prepare", st->db, 0);
        goto fail;
    }
    load_totals(st);
    return 0;
fail:
    db_close(st);
    return -1;
}

static void iso_ms(char out[32], int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, 32 - k, ".%03dZ", (int)(ms % 1000));
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
    if (v[0])
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static bool row_is_error(const row *r) { return r->status >= 400 || r->error_code[0]; }

/* Inserts rows in one transaction with the totals. 0, or -1 with err set (nothing written). */
static int db_write(lx_usage_store *st, const row *rows, size_t n, char *err, size_t errn)
{
    if (st->db == NULL && db_open(st, err, errn) != 0) return -1;
    char *msg = NULL;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errn, "cannot begin: %s", msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        goto fail;
    }
    int64_t pt = 0, ct = 0, errors = 0;
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        char ts[32];
        iso_ms(ts, r->time_ms);
        sqlite3_stmt *s = st->ins;
        sqlite3_bind_text(s, 1, ts, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, r->request_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, r->user, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, r->model, -1, SQLITE_STATIC);
        bind_text_or_null(s, 5, r->backend);
        bind_text_or_null(s, 6, r->priority);
        sqlite3_bind_int(s, 7, r->status);
        bind_text_or_null(s, 8, r->error_code);
        if (r->prompt_tokens >= 0)
            sqlite3_bind_int64(s, 9, r->prompt_tokens);
        else
            sqlite3_bind_null(s, 9);
        if (r->completion_tokens >= 0)
            sqlite3_bind_int64(s, 10, r->completion_tokens);
        else
            sqlite3_bind_null(s, 10);
        sqlite3_bind_double(s, 11, r->queue_wait_ms);
        if (r->ttft_ms >= 0)
            sqlite3_bind_double(s, 12, r->ttft_ms);
        else
            sqlite3_bind_null(s, 12);
        sqlite3_bind_double(s, 13, r->latency_ms);
        sqlite3_bind_int(s, 14, r->stream);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        if (rc != SQLITE_DONE) {
            set_error(err, errn, "cannot insert", st->db, rc);
            goto rollback;
        }
        pt += r->prompt_tokens > 0 ? r->prompt_tokens : 0;
        ct += r->completion_tokens > 0 ? r->completion_tokens : 0;
        errors += row_is_error(r);
    }
    sqlite3_bind_int64(st->upd, 1, (int64_t)n);
    sqlite3_bind_int64(st->upd, 2, pt);
    sqlite3_bind_int64(st->upd, 3, ct);
    sqlite3_bind_int64(st->upd, 4, errors);
    int rc = sqlite3_step(st->upd);
    sqlite3_reset(st->upd);
    if (rc != SQLITE_DONE) {
        set_error(err, errn, "cannot update totals", st->db, rc);
        goto rollback;
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errn, "cannot commit: %s", msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        goto rollback;
    }
    uv_mutex_lock(&st->mu);
    st->requests += n;
    st->prompt_tokens += (uint64_t)pt;
    st->completion_tokens += (uint64_t)ct;
    st->errors += (uint64_t)errors;
    st->rows_written += n;
    uv_mutex_unlock(&st->mu);
    return 0;
rollback:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
fail:
    db_close(st); /* open afresh next time: the file may have been fixed or replaced */
    return -1;
}

/* ---------- the writer thread ---------- */

static void set_state(lx_usage_store *st, bool ok, const char *err)
{
    bool changed;
    uv_mutex_lock(&st->mu);
    changed = st->failing == ok; /* failing → ok, or ok → failing */
    st->writable = ok;
    st->failing = !ok;
    if (!ok) snprintf(st->last_error, sizeof st->last_error, "%s", err);
    uv_mutex_unlock(&st->mu);
    if (changed) uv_async_send(&st->async);
}

static void writer_main(void *arg)
{
    lx_usage_store *st = arg;
    char err[256];
    uv_mutex_lock(&st->mu);
    for (;;) {
        while (st->n_active == 0 && !st->stop)
            uv_cond_wait(&st->cv, &st->mu);
        if (st->n_active == 0) break; /* stopping, nothing left */
        uint64_t deadline = st->first_row_ns + (uint64_t)LX_USAGE_BATCH_MS * 1000000u;
        for (uint64_t now = lx_now_ns(); !st->stop && now < deadline && st->n_active < FLUSH_ROWS; now = lx_now_ns())
            if (uv_cond_timedwait(&st->cv, &st->mu, deadline - now) != 0) break;
        row *rows = st->active;
        size_t n = st->n_active;
        st->active = st->spare;
        st->spare = rows;
        st->n_active = 0;
        uv_mutex_unlock(&st->mu);

        int rc = db_write(st, rows, n, err, sizeof err);
        if (rc != 0) {
            uv_mutex_lock(&st->mu);
            st->lost_write_failed += n;
            uv_mutex_unlock(&st->mu);
        }
        set_state(st, rc == 0, err);
        uv_mutex_lock(&st->mu);
    }
    uv_mutex_unlock(&st->mu);
    db_close(st);
}

/* ---------- loop side ---------- */

static void report(lx_usage_store *st)
{
    uv_mutex_lock(&st->mu);
    bool failing = st->failing;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", st->last_error);
    uint64_t lost = st->lost_write_failed;
    uv_mutex_unlock(&st->mu);
    if (failing && !st->logged_failing) {
        LX_ERROR(NULL,
                 "usage ledger %s: %s; Lexora keeps serving, rows are lost (lexora_usage_rows_lost_total) "
                 "and the ledger is opened again for the next batch",
                 st->path, msg);
        st->logged_failing = true;
        st->lost_at_failure = lost;
    } else if (!failing && st->logged_failing) {
        LX_WARN(NULL, "usage ledger %s: writing again; %" PRIu64 " rows were lost", st->path,
                lost - st->lost_at_failure);
        st->logged_failing = false;
    }
}

static void on_async(uv_async_t *h) { report(h->data); }

lx_usage_store *lx_usage_store_open(uv_loop_t *loop, const char *path)
{
    lx_usage_store *st = lx_xcalloc(1, sizeof *st);
    st->path = lx_xstrdup(path);
    st->loop = loop;
    st->active = lx_xcalloc(LX_USAGE_QUEUE_ROWS, sizeof(row));
    st->spare = lx_xcalloc(LX_USAGE_QUEUE_ROWS, sizeof(row));
    uv_mutex_init(&st->mu);
    uv_cond_init(&st->cv);
    uv_async_init(loop, &st->async, on_async);
    st->async.data = st;
    uv_unref((uv_handle_t *)&st->async);

    char err[256];
    bool ok = db_open(st, err, sizeof err) == 0;
    st->writable = ok;
    st->failing = !ok;
    if (!ok) snprintf(st->last_error, sizeof st->last_error, "%s", err);
    report(st);
    if (ok) LX_INFO(NULL, "usage ledger %s: %" PRIu64 " requests since %s", path, st->requests, st->began);
    if (uv_thread_create(&st->thread, writer_main, st) != 0) {
        LX_ERROR(NULL, "usage ledger %s: cannot start its writer thread", path);
        db_close(st);
        lx_usage_store_close(st);
        return NULL;
    }
    st->thread_started = true;
    return st;
}

static void on_closed(uv_handle_t *h)
{
    lx_usage_store *st = h->data;
    uv_mutex_destroy(&st->mu);
    uv_cond_destroy(&st->cv);
    free(st->active);
    free(st->spare);
    free(st->path);
    free(st);
}

void lx_usage_store_close(lx_usage_store *st)
{
    if (st == NULL) return;
    if (st->thread_started) {
        uv_mutex_lock(&st->mu);
        st->stop = true;
        uv_cond_signal(&st->cv);
        uv_mutex_unlock(&st->mu);
        uv_thread_join(&st->thread); /* the writer writes what is waiting first */
        report(st);
    }
    uv_close((uv_handle_t *)&st->async, on_closed);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    if (src == NULL) src = "";
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void lx_usage_store_add(lx_usage_store *st, const lx_access_rec *rec)
{
    if (st == NULL) return;
    int64_t now = wall_ms();
    uv_mutex_lock(&st->mu);
    if (st->n_active == LX_USAGE_QUEUE_ROWS || st->stop) {
        st->lost_queue_full++;
        uv_mutex_unlock(&st->mu);
        uint64_t now_ns = lx_now_ns();
        if (st->queue_full_logged_ns == 0 || now_ns - st->queue_full_logged_ns >= QUEUE_FULL_LOG_NS)
            LX_ERROR(rec->request_id,
                     "usage ledger %s: %d rows are waiting to be written; rows are lost until "
                     "the writer catches up (lexora_usage_rows_lost_total)",
                     st->path, LX_USAGE_QUEUE_ROWS);
        st->queue_full_logged_ns = now_ns;
        return;
    }
    row *r = &st->active[st->n_active];
    r->time_ms = now;
    copy_str(r->request_id, sizeof r->request_id, rec->request_id);
    copy_str(r->user, sizeof r->user, rec->user && rec->user[0] ? rec->user : "-");
    copy_str(r->model, sizeof r->model, rec->model && rec->model[0] ? rec->model : "-");
    copy_str(r->backend, sizeof r->backend, rec->backend);
    copy_str(r->priority, sizeof r->priority, rec->priority);
    copy_str(r->error_code, sizeof r->error_code, rec->error_code);
    r->status = rec->status;
    r->prompt_tokens = rec->prompt_tokens;
    r->completion_tokens = rec->prompt_tokens >= 0 ? rec->completion_tokens : -1;
    r->queue_wait_ms = rec->queue_wait_ms > 0 ? rec->queue_wait_ms : 0;
    r->ttft_ms = rec->ttft_ms;
    r->latency_ms = rec->latency_ms;
    r->stream = rec->stream;
    if (st->n_active++ == 0) {
        st->first_row_ns = lx_now_ns();
        uv_cond_signal(&st->cv);
    } else if (st->n_active == FLUSH_ROWS) {
        uv_cond_signal(&st->cv); /* a burst: write it now rather than at the end of the batch interval */
    }
    uv_mutex_unlock(&st->mu);
}

void lx_usage_store_snapshot(lx_usage_store *st, lx_usage_snapshot *out)
{
    *out = (lx_usage_snapshot){.path = st->path};
    uv_mutex_lock(&st->mu);
    out->writable = st->writable;
    snprintf(out->began, sizeof out->began, "%s", st->began);
    out->requests = st->requests;
    out->prompt_tokens = st->prompt_tokens;
    out->completion_tokens = st->completion_tokens;
    out->errors = st->errors;
    out->rows_written = st->rows_written;
    out->lost_write_failed = st->lost_write_failed;
    out->lost_queue_full = st->lost_queue_full;
    out->pending = st->n_active;
    uv_mutex_unlock(&st->mu);
}

char *lx_usage_db_path(const char *config_path, const char *db_path)
{
    if (db_path[0] == '/' || config_path == NULL) return lx_xstrdup(db_path);
    const char *slash = strrchr(config_path, '/');
    if (slash == NULL) return lx_xstrdup(db_path);
    size_t dl = (size_t)(slash - config_path) + 1, pl = strlen(db_path);
    char *p = lx_xmalloc(dl + pl + 1);
    memcpy(p, config_path, dl);
    memcpy(p + dl, db_path, pl + 1);
    return p;
}

/* ---------- `lexora usage` ---------- */

static int two(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return -1;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 0;
}

int lx_usage_parse_since(const char *text, char out[32])
{
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, off = 0;
    const char *p = text;
    int c1, c2;
    if (strlen(p) < 10 || two(p, &c1) || two(p + 2, &c2) || p[4] != '-' || two(p + 5, &mo) || p[7] != '-' ||
        two(p + 8, &d))
        return -1;
    y = c1 * 100 + c2;
    p += 10;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        if (two(p + 1, &h) || p[3] != ':' || two(p + 4, &mi)) return -1;
        p += 6;
        if (*p == ':') {
            if (two(p + 1, &sec)) return -1;
            p += 3;
            if (*p == '.') {
                p++;
                int digits = 0;
                while (*p >= '0' && *p <= '9') {
                    if (digits < 3) ms = ms * 10 + (*p - '0');
                    digits++;
                    p++;
                }
                if (digits == 0) return -1;
                for (; digits < 3; digits++)
                    ms *= 10;
            }
        }
        if (*p == 'Z' || *p == 'z')
            p++;
        else if (*p == '+' || *p == '-') {
            int oh, om;
            int sign = *p == '-' ? -1 : 1;
            if (two(p + 1, &oh)) return -1;
            p += 3;
            if (*p == ':') p++;
            if (two(p, &om)) return -1;
            p += 2;
            if (oh > 23 || om > 59) return -1;
            off = sign * (oh * 3600 + om * 60);
        }
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d || tm.tm_mon != mo - 1) return -1; /* 2025-02-30 */
    t -= off;
    struct tm u;
    gmtime_r(&t, &u);
    size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &u);
    snprintf(out + k, 32 - k, ".%03dZ", ms);
    return 0;
}

typedef struct {
    char *key;
    char cols[5][32];
} report_line;

static void print_table(FILE *out, const char *head0, report_line *lines, size_t n)
{
    static const char *const heads[5] = {"requests", "prompt_tokens", "completion_tokens", "errors", "avg_latency_ms"};
    size_t w0 = strlen(head0), w[5];
    for (size_t c = 0; c < 5; c++)
        w[c] = strlen(heads[c]);
    for (size_t i = 0; i < n; i++) {
        w0 = LX_MAX(w0, strlen(lines[i].key));
        for (size_t c = 0; c < 5; c++)
            w[c] = LX_MAX(w[c], strlen(lines[i].cols[c]));
    }
    fprintf(out, "%-*s", (int)w0, head0);
    for (size_t c = 0; c < 5; c++)
        fprintf(out, "  %*s", (int)w[c], heads[c]);
    fputc('\n', out);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%-*s", (int)w0, lines[i].key);
        for (size_t c = 0; c < 5; c++)
            fprintf(out, "  %*s", (int)w[c], lines[i].cols[c]);
        fputc('\n', out);
    }
}

static void fill_cols(report_line *l, int64_t req, int64_t pt, int64_t ct, int64_t errs, double avg)
{
    snprintf(l->cols[0], sizeof l->cols[0], "%" PRId64, req);
    snprintf(l->cols[1], sizeof l->cols[1], "%" PRId64, pt);
    snprintf(l->cols[2], sizeof l->cols[2], "%" PRId64, ct);
    snprintf(l->cols[3], sizeof l->cols[3], "%" PRId64, errs);
    snprintf(l->cols[4], sizeof l->cols[4], "%.1f", avg);
}

int lx_usage_report(const char *path, const char *since, lx_usage_by by, FILE *out, FILE *err)
{
    static const char *const keys[] = {"user", "model", "substr(time, 1, 10)"};
    static const char *const heads[] = {"user", "model", "day"};
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s AS k, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
             " SUM(status >= 400 OR error_code IS NOT NULL), COALESCE(SUM(latency_ms), 0)"
             " FROM usage WHERE ?1 IS NULL OR time >= ?1 GROUP BY k ORDER BY %s",
             keys[by], by == LX_USAGE_BY_DAY ? "k" : "COUNT(*) DESC, k");
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    report_line *lines = NULL;
    size_t n = 0, cap = 0;
    int rc = 1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(err, "lexora usage: cannot open the usage ledger %s: %s\n", path, sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
        fprintf(err, "lexora usage: cannot read the usage ledger %s: %s\n", path, sqlite3_errmsg(db));
        goto done;
    }
    if (since) sqlite3_bind_text(q, 1, since, -1, SQLITE_STATIC);
    int64_t t_req = 0, t_pt = 0, t_ct = 0, t_err = 0;
    double t_lat = 0;
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            lines = lx_xrealloc(lines, cap * sizeof *lines);
        }
        report_line *l = &lines[n++];
        const unsigned char *k = sqlite3_column_text(q, 0);
        l->key = lx_xstrdup(k ? (const char *)k : "-");
        int64_t req = sqlite3_column_int64(q, 1);
        double lat = sqlite3_column_double(q, 5);
        fill_cols(l, req, sqlite3_column_int64(q, 2), sqlite3_column_int64(q, 3), sqlite3_column_int64(q, 4),
                  req ? lat / (double)req : 0);
        t_req += req;
        t_pt += sqlite3_column_int64(q, 2);
        t_ct += sqlite3_column_int64(q, 3);
        t_err += sqlite3_column_int64(q, 4);
        t_lat += lat;
    }
    if (step != SQLITE_DONE) {
        fprintf(err, "lexora usage: cannot read the usage ledger %s: %s\n", path, sqlite3_errmsg(db));
        goto done;
    }
    if (n == cap) lines = lx_xrealloc(lines, (cap + 1) * sizeof *lines);
    report_line *total = &lines[n++];
    total->key = lx_xstrdup("total");
    fill_cols(total, t_req, t_pt, t_ct, t_err, t_req ? t_lat / (double)t_req : 0);
    print_table(out, heads[by], lines, n);
    rc = 0;
done:
    for (size_t i = 0; i < n; i++)
        free(lines[i].key);
    free(lines);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return rc;
}
