/*
 * The usage ledger (see usage_store.h for what it promises; usage_backend.h for the stores).
 *
 * A store written on the loop (SQLite: backend writer_thread false): `active` is written by loop_write when
 * LOOP_FLUSH_ROWS wait (from a uv_check_t: after the loop iteration's I/O callbacks, so the answers being
 * finished go out first) or when the tick (LX_USAGE_BATCH_MS after the batch's first row) fires; rows the store
 * could not take for now stay in `active` and the tick tries again after a growing pause. Feedback runs on
 * the loop from the uv_async_t, after the rows waiting are written. The rest of this comment is about a
 * store with a writer thread (PostgreSQL).
 *
 * Two row arrays of the store's queue_rows: the loop thread fills `active` under the mutex; the writer
 * swaps it with `spare` (also under the mutex) and writes the taken rows without holding it, so the
 * loop never waits for a store. A batch the store could not take for now (LX_USAGE_WRITE_RETRY) stays
 * in `spare` (held_n rows) and is sent again after a pause; `active` is not swapped meanwhile, so it
 * fills up to its bound and further rows are lost as queue_full. Everything shared (the arrays' fill
 * level, the counters, the totals, the failure state) is under the mutex; the store's handle belongs
 * to the writer thread once it runs (before that, to lx_usage_store_start on the loop thread).
 * The writer tells the loop about a change of failure state through a uv_async_t, and the loop logs it.
 * Feedback (lx_usage_store_feedback) is a job for the writer: queued under the mutex, it wakes the writer,
 * which writes the rows waiting before it (so the request it names is in the store), runs it, and hands
 * it back through the same uv_async_t; the loop calls its callback. At close the writer runs what is
 * queued before it stops, and the callbacks run from lx_usage_store_close.
 */
#include "observe/usage_store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "observe/exp_report.h"
#include "observe/usage_backend.h"
#include "utils/common.h"
#include "utils/id.h"

#define FLUSH_ROWS        (LX_USAGE_QUEUE_ROWS / 4) /* this many waiting: written without waiting for the interval */
#define LOOP_FLUSH_ROWS   256 /* written on the loop: this many at a time keeps each write short (~0.5 ms) */
#define QUEUE_FULL_LOG_NS (60 * 1000000000ull) /* "rows lost, queue full" at most once a minute */

typedef struct usage_job {
    lx_usage_feedback f;
    lx_usage_feedback_result res;
    lx_usage_feedback_cb cb;
    void *ud;
    struct usage_job *next;
} usage_job;

struct lx_usage_store {
    char *path; /* what the logs and /stats call it: the file, or the URL without its password */
    uv_loop_t *loop;
    uv_async_t async;
    uv_timer_t tick; /* a store written on the loop: the batch interval, and the pause before a retry */
    uv_check_t due;  /* ... and a full batch, written after this loop iteration's I/O (its answers sent) */
    uv_thread_t thread;
    bool thread_started;
    uv_mutex_t mu;
    uv_cond_t cv;
    const lx_usage_backend *be;
    void *db;   /* the backend's; the writer thread's once it runs */
    size_t cap; /* rows in each array: the backend's queue_rows */
    uint64_t run_id;

    /* under mu */
    lx_usage_row *active, *spare;
    size_t n_active;
    uint64_t next_seq;
    uint64_t first_row_ns; /* when the active batch got its first row */
    bool stop;
    bool writable, failing, waiting; /* waiting: the failing store is away and the rows wait for it */
    char last_error[256];
    lx_usage_totals totals;
    uint64_t rows_written, lost_write_failed, lost_queue_full, held;
    usage_job *jobs, *done; /* feedback waiting for the writer; feedback run, waiting for the loop */

    /* loop thread only */
    uint64_t pause_ms; /* a store written on the loop: the pause before the next retry */
    bool logged_failing;
    uint64_t queue_full_logged_ns; /* 0: not logged yet */
    uint64_t lost_at_failure;
};

void lx_usage_iso_ms(char out[32], int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, 32 - k, ".%03dZ", (int)(ms % 1000));
}

void lx_usage_row_key(char out[40], const lx_usage_row *r)
{
    snprintf(out, 40, "%016" PRIx64 "-%012" PRIu64, r->run_id, r->seq); /* fixed width: keys sort in order */
}

/* The longest of each text of a row, in bytes (as the columns were when each had its own array). */
static const uint16_t text_cap[LX_ROW_TEXTS] = {
    [LX_ROW_REQUEST_ID] = LX_REQUEST_ID_MAX - 1,
    [LX_ROW_USER] = 127,
    [LX_ROW_MODEL] = 255,
    [LX_ROW_MODEL_USED] = 255,
    [LX_ROW_EXPERIMENT] = 127,
    [LX_ROW_VARIANT] = 255,
    [LX_ROW_BACKEND] = 127,
    [LX_ROW_PRIORITY] = 7,
    [LX_ROW_ERROR_CODE] = 47,
};

void lx_usage_row_set(lx_usage_row *r, lx_usage_row_field k, const char *s)
{
    if (r->used == 0) r->used = 1; /* text[0] stays the "" of the texts not set */
    size_t n = s ? strnlen(s, text_cap[k]) : 0, left = LX_ROW_TEXT_MAX - (size_t)r->used; /* NUL included */
    if (n >= left) n = left ? left - 1 : 0; /* never: the caps add up to less than the room */
    r->off[k] = n ? r->used : 0;
    r->len[k] = (uint8_t)n;
    if (n == 0) return;
    memcpy(r->text + r->used, s, n);
    r->text[r->used + n] = '\0';
    r->used = (uint16_t)(r->used + n + 1);
}

void lx_usage_default_gateway_id(char out[LX_USAGE_GATEWAY_ID_MAX])
{
    char host[256];
    size_t n = 0;
    if (gethostname(host, sizeof host) == 0) {
        host[sizeof host - 1] = '\0';
        for (; host[n] && n < LX_USAGE_GATEWAY_ID_MAX - 1; n++)
            out[n] = host[n];
    }
    out[n] = '\0';
    if (!lx_usage_gateway_id_ok(out)) snprintf(out, LX_USAGE_GATEWAY_ID_MAX, "lexora");
}

bool lx_usage_gateway_id_ok(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-' || c == ':';
        if (!ok || n >= LX_USAGE_GATEWAY_ID_MAX - 1) return false;
    }
    return n > 0;
}

/* ---------- the writer thread ---------- */

static void set_state(lx_usage_store *st, int rc, const char *err)
{
    bool ok = rc == LX_USAGE_WRITE_OK, changed;
    uv_mutex_lock(&st->mu);
    changed = st->failing == ok; /* failing → ok, or ok → failing */
    st->writable = ok;
    st->failing = !ok;
    if (!ok) {
        snprintf(st->last_error, sizeof st->last_error, "%s", err);
        st->waiting = rc == LX_USAGE_WRITE_RETRY;
    }
    uv_mutex_unlock(&st->mu);
    if (changed) uv_async_send(&st->async);
}

/* The writer's counters after a write of n rows that returned rc; under mu. All n count as written: those
 * the store already had came from an earlier attempt whose success we could not see. */
static void account(lx_usage_store *st, int rc, size_t n, const lx_usage_totals *t)
{
    if (rc == LX_USAGE_WRITE_OK) {
        st->rows_written += n;
        st->totals = *t;
    } else if (rc == LX_USAGE_WRITE_DROP || st->stop) {
        st->lost_write_failed += n; /* at stop, a store still away will not get them */
    }
}

/* Takes the next batch (under mu): the held one after its pause, else the active rows once the batch
 * interval passed or enough are waiting. Returns the rows, n 0 when stopping with nothing left. */
static lx_usage_row *next_batch(lx_usage_store *st, size_t *n, uint64_t retry_at)
{
    if (st->held) {
        for (uint64_t now = lx_now_ns(); !st->stop && !st->jobs && now < retry_at; now = lx_now_ns())
            if (uv_cond_timedwait(&st->cv, &st->mu, retry_at - now) != 0) break;
        *n = st->held;
        return st->spare;
    }
    while (st->n_active == 0 && !st->stop && !st->jobs)
        uv_cond_wait(&st->cv, &st->mu);
    *n = st->n_active;
    if (*n == 0) return NULL; /* stopping, nothing left; or feedback to run */
    uint64_t deadline = st->first_row_ns + (uint64_t)LX_USAGE_BATCH_MS * 1000000u;
    for (uint64_t now = lx_now_ns(); !st->stop && !st->jobs && now < deadline && st->n_active < FLUSH_ROWS;
         now = lx_now_ns())
        if (uv_cond_timedwait(&st->cv, &st->mu, deadline - now) != 0) break;
    lx_usage_row *rows = st->active;
    *n = st->n_active;
    st->active = st->spare;
    st->spare = rows;
    st->n_active = 0;
    return rows;
}

/* A store reached over the network is connected to here, not at start: the gateway does not wait for it. */
static void first_connect(lx_usage_store *st)
{
    char err[256];
    lx_usage_totals t = {0};
    int rc = st->be->connect(st->db, &t, err, sizeof err);
    if (rc == LX_USAGE_WRITE_OK) {
        uv_mutex_lock(&st->mu);
        st->totals = t;
        uv_mutex_unlock(&st->mu);
    }
    set_state(st, rc, err);
}

/* Runs the feedback queued (under mu on entry and exit; the store is used without it). */
static void run_jobs(lx_usage_store *st)
{
    usage_job *list = st->jobs, *rev = NULL;
    st->jobs = NULL;
    uv_mutex_unlock(&st->mu);
    for (usage_job *j = list, *next; j; j = next) { /* queued newest first: run oldest first */
        next = j->next;
        j->next = rev;
        rev = j;
    }
    for (usage_job *j = rev; j; j = j->next) {
        char err[256] = "";
        int rc = st->be->feedback(st->db, &j->f, &j->res, err, sizeof err);
        if (rc != LX_USAGE_WRITE_OK) {
            j->res.verdict = LX_FEEDBACK_UNAVAILABLE;
            snprintf(j->res.error, sizeof j->res.error, "%s", err);
        }
    }
    uv_mutex_lock(&st->mu);
    while (rev) {
        usage_job *j = rev;
        rev = j->next;
        j->next = st->done;
        st->done = j;
    }
    uv_async_send(&st->async);
}

static void writer_main(void *arg)
{
    lx_usage_store *st = arg;
    char err[256];
    uint64_t pause_ms = LX_USAGE_RETRY_MIN_MS, retry_at = 0;
    if (st->be->writer_thread) first_connect(st);
    uv_mutex_lock(&st->mu);
    for (;;) {
        size_t n, written = 0;
        lx_usage_row *rows = next_batch(st, &n, retry_at);
        if (rows == NULL && st->jobs) run_jobs(st);
        if (rows == NULL && st->jobs == NULL && st->stop) break;
        if (rows == NULL) continue;
        uv_mutex_unlock(&st->mu);

        lx_usage_totals t = {0};
        int rc = st->be->write(st->db, rows, n, &t, &written, err, sizeof err);
        uv_mutex_lock(&st->mu);
        account(st, rc, n, &t);
        bool keep = rc == LX_USAGE_WRITE_RETRY && !st->stop;
        st->held = keep ? n : 0;
        uv_mutex_unlock(&st->mu);
        set_state(st, rc, err);
        if (keep) {
            retry_at = lx_now_ns() + pause_ms * 1000000u;
            pause_ms = LX_MIN(pause_ms * 2, (uint64_t)LX_USAGE_RETRY_MAX_MS);
        } else {
            pause_ms = LX_USAGE_RETRY_MIN_MS;
        }
        uv_mutex_lock(&st->mu);
        if (st->jobs) run_jobs(st);
    }
    uv_mutex_unlock(&st->mu);
    st->be->disconnect(st->db);
}

/* ---------- a store written on the loop thread ---------- */

static void on_tick(uv_timer_t *t);

/* Writes the rows waiting, if any. Rows the store could not take for now stay and are tried again after a
 * pause (the tick), new rows queuing behind them. */
static void loop_write(lx_usage_store *st)
{
    uv_mutex_lock(&st->mu);
    size_t n = st->n_active;
    uv_mutex_unlock(&st->mu);
    if (n == 0) return;
    char err[256] = "";
    size_t written = 0;
    lx_usage_totals t = {0};
    int rc = st->be->write(st->db, st->active, n, &t, &written, err, sizeof err);
    uv_mutex_lock(&st->mu);
    account(st, rc, n, &t);
    bool keep = rc == LX_USAGE_WRITE_RETRY && !st->stop;
    if (!keep) st->n_active = 0; /* nothing was added meanwhile: this is the thread that adds */
    uv_mutex_unlock(&st->mu);
    set_state(st, rc, err);
    uv_timer_stop(&st->tick);
    if (keep) {
        uv_timer_start(&st->tick, on_tick, st->pause_ms, 0);
        st->pause_ms = LX_MIN(st->pause_ms * 2, (uint64_t)LX_USAGE_RETRY_MAX_MS);
    } else {
        st->pause_ms = LX_USAGE_RETRY_MIN_MS;
    }
}

static void on_tick(uv_timer_t *t) { loop_write(t->data); }

static void on_due(uv_check_t *c)
{
    uv_check_stop(c);
    loop_write(c->data);
}

/* ---------- loop side ---------- */

static void report(lx_usage_store *st)
{
    uv_mutex_lock(&st->mu);
    bool failing = st->failing, waiting = st->waiting;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", st->last_error);
    uint64_t lost = st->lost_write_failed + st->lost_queue_full;
    uv_mutex_unlock(&st->mu);
    if (failing && !st->logged_failing) {
        if (waiting)
            LX_ERROR(NULL,
                     "usage ledger %s: %s; Lexora keeps serving, rows wait in memory (up to %zu, then they are "
                     "lost: lexora_usage_rows_lost_total) and are written when it is back",
                     st->path, msg, 2 * st->cap);
        else
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

/* The feedback the writer ran: each callback, oldest first. */
static void deliver(lx_usage_store *st)
{
    uv_mutex_lock(&st->mu);
    usage_job *list = st->done, *rev = NULL;
    st->done = NULL;
    uv_mutex_unlock(&st->mu);
    while (list) {
        usage_job *j = list;
        list = j->next;
        j->next = rev;
        rev = j;
    }
    while (rev) {
        usage_job *j = rev;
        rev = j->next;
        j->cb(j->ud, &j->res);
        free(j);
    }
}

static void on_async(uv_async_t *h)
{
    lx_usage_store *st = h->data;
    if (!st->be->writer_thread && st->jobs) { /* feedback: the rows before it first, so its request is found */
        loop_write(st);
        uv_mutex_lock(&st->mu);
        run_jobs(st);
        uv_mutex_unlock(&st->mu);
    }
    report(st);
    deliver(st);
}

void lx_usage_store_feedback(lx_usage_store *st, const lx_usage_feedback *f, lx_usage_feedback_cb cb, void *ud)
{
    usage_job *j = lx_xcalloc(1, sizeof *j);
    j->f = *f;
    j->cb = cb;
    j->ud = ud;
    uv_mutex_lock(&st->mu);
    j->next = st->jobs;
    st->jobs = j;
    uv_cond_signal(&st->cv);
    uv_mutex_unlock(&st->mu);
    if (!st->be->writer_thread) uv_async_send(&st->async); /* run on the loop, not inside the caller */
}

static uint64_t draw_run_id(void)
{
    uint64_t id = 0;
    for (int i = 0; i < 4; i++)
        id = (id << 16) | (uint64_t)(lx_random_unit() * 65536.0);
    return id ^ lx_now_ns();
}

lx_usage_store *lx_usage_store_start(uv_loop_t *loop, const lx_usage_store_opts *o)
{
    lx_usage_store_opts opts = *o;
    char gw[LX_USAGE_GATEWAY_ID_MAX];
    if (opts.gateway_id == NULL || opts.gateway_id[0] == '\0') {
        lx_usage_default_gateway_id(gw);
        opts.gateway_id = gw;
    }
    lx_usage_store *st = lx_xcalloc(1, sizeof *st);
    st->be = o->store == LX_USAGE_STORE_POSTGRES ? &lx_usage_postgres : &lx_usage_sqlite;
    st->path = o->store == LX_USAGE_STORE_POSTGRES ? lx_usage_pg_url_redacted(o->postgres_url) : lx_xstrdup(o->db_path);
    st->loop = loop;
    st->run_id = draw_run_id();
    st->cap = st->be->queue_rows;
    st->active = lx_xcalloc(st->cap, sizeof(lx_usage_row));
    st->spare = lx_xcalloc(st->cap, sizeof(lx_usage_row));
    uv_mutex_init(&st->mu);
    uv_cond_init(&st->cv);
    uv_async_init(loop, &st->async, on_async);
    st->async.data = st;
    uv_unref((uv_handle_t *)&st->async);
    uv_timer_init(loop, &st->tick);
    st->tick.data = st;
    uv_unref((uv_handle_t *)&st->tick);
    uv_check_init(loop, &st->due);
    st->due.data = st;
    uv_unref((uv_handle_t *)&st->due);
    st->pause_ms = LX_USAGE_RETRY_MIN_MS;
    st->db = st->be->create(&opts);

    char err[256] = "";
    int rc = st->be->writer_thread ? LX_USAGE_WRITE_OK : st->be->connect(st->db, &st->totals, err, sizeof err);
    st->writable = rc == LX_USAGE_WRITE_OK && !st->be->writer_thread; /* not before it is connected */
    st->failing = rc != LX_USAGE_WRITE_OK;
    st->waiting = rc == LX_USAGE_WRITE_RETRY;
    if (rc != LX_USAGE_WRITE_OK) snprintf(st->last_error, sizeof st->last_error, "%s", err);
    report(st);
    if (rc == LX_USAGE_WRITE_OK && !st->be->writer_thread)
        LX_INFO(NULL, "usage ledger %s: %" PRIu64 " requests since %s", st->path, st->totals.requests,
                st->totals.began);
    else if (st->be->writer_thread)
        LX_INFO(NULL, "usage ledger %s (%s): gateway %s", st->path, st->be->name, opts.gateway_id);
    if (!st->be->writer_thread) return st;
    if (uv_thread_create(&st->thread, writer_main, st) != 0) {
        LX_ERROR(NULL, "usage ledger %s: cannot start its writer thread", st->path);
        lx_usage_store_close(st);
        return NULL;
    }
    st->thread_started = true;
    return st;
}

lx_usage_store *lx_usage_store_open(uv_loop_t *loop, const char *path)
{
    return lx_usage_store_start(loop, &(lx_usage_store_opts){.store = LX_USAGE_STORE_SQLITE, .db_path = path});
}

static void on_closed(uv_handle_t *h)
{
    lx_usage_store *st = h->data;
    st->be->destroy(st->db);
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
        uv_thread_join(&st->thread); /* the writer writes what is waiting, and runs the feedback, first */
        report(st);
        deliver(st);
    } else if (!st->be->writer_thread) {
        st->stop = true;
        loop_write(st);
        on_async(&st->async); /* the feedback run and answered */
        st->be->disconnect(st->db);
    }
    uv_close((uv_handle_t *)&st->tick, NULL);
    uv_close((uv_handle_t *)&st->due, NULL);
    uv_close((uv_handle_t *)&st->async, on_closed);
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
    if (st->n_active == st->cap || st->stop) {
        st->lost_queue_full++;
        uv_mutex_unlock(&st->mu);
        uint64_t now_ns = lx_now_ns();
        if (st->queue_full_logged_ns == 0 || now_ns - st->queue_full_logged_ns >= QUEUE_FULL_LOG_NS)
            LX_ERROR(rec->request_id,
                     "usage ledger %s: %zu rows are waiting to be written; rows are lost until "
                     "the writer catches up (lexora_usage_rows_lost_total)",
                     st->path, st->cap);
        st->queue_full_logged_ns = now_ns;
        return;
    }
    lx_usage_row *r = &st->active[st->n_active];
    r->time_ms = now;
    r->run_id = st->run_id;
    r->seq = st->next_seq++;
    lx_usage_row_clear_texts(r);
    lx_usage_row_set(r, LX_ROW_REQUEST_ID, rec->request_id);
    lx_usage_row_set(r, LX_ROW_USER, rec->user && rec->user[0] ? rec->user : "-");
    lx_usage_row_set(r, LX_ROW_MODEL, rec->model && rec->model[0] ? rec->model : "-");
    lx_usage_row_set(r, LX_ROW_MODEL_USED, rec->model_used);
    lx_usage_row_set(r, LX_ROW_EXPERIMENT, rec->experiment);
    lx_usage_row_set(r, LX_ROW_VARIANT, rec->experiment ? rec->variant : NULL);
    lx_usage_row_set(r, LX_ROW_BACKEND, rec->backend);
    lx_usage_row_set(r, LX_ROW_PRIORITY, rec->priority);
    lx_usage_row_set(r, LX_ROW_ERROR_CODE, rec->error_code);
    r->status = rec->status;
    r->prompt_tokens = rec->prompt_tokens;
    r->completion_tokens = rec->prompt_tokens >= 0 ? rec->completion_tokens : -1;
    r->queue_wait_ms = rec->queue_wait_ms > 0 ? rec->queue_wait_ms : 0;
    r->ttft_ms = rec->ttft_ms;
    r->latency_ms = rec->latency_ms;
    r->stream = rec->stream;
    if (!st->be->writer_thread) {
        bool first = st->n_active++ == 0, write_now = st->n_active >= LOOP_FLUSH_ROWS && !(st->failing && st->waiting);
        uv_mutex_unlock(&st->mu);
        if (write_now)
            uv_check_start(&st->due, on_due); /* not while this request's answer waits */
        else if (first && !uv_is_active((uv_handle_t *)&st->tick))
            uv_timer_start(&st->tick, on_tick, LX_USAGE_BATCH_MS, 0);
        return;
    }
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
    snprintf(out->began, sizeof out->began, "%s", st->totals.began);
    out->requests = st->totals.requests;
    out->prompt_tokens = st->totals.prompt_tokens;
    out->completion_tokens = st->totals.completion_tokens;
    out->errors = st->totals.errors;
    out->rows_written = st->rows_written;
    out->lost_write_failed = st->lost_write_failed;
    out->lost_queue_full = st->lost_queue_full;
    out->pending = st->n_active + st->held;
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

typedef struct {
    report_line *lines;
    size_t n, cap;
    lx_usage_line total;
} report_acc;

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

static void add_line(report_acc *a, const char *key, const lx_usage_line *l)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->lines = lx_xrealloc(a->lines, a->cap * sizeof *a->lines);
    }
    report_line *r = &a->lines[a->n++];
    r->key = lx_xstrdup(key);
    snprintf(r->cols[0], sizeof r->cols[0], "%" PRId64, l->requests);
    snprintf(r->cols[1], sizeof r->cols[1], "%" PRId64, l->prompt_tokens);
    snprintf(r->cols[2], sizeof r->cols[2], "%" PRId64, l->completion_tokens);
    snprintf(r->cols[3], sizeof r->cols[3], "%" PRId64, l->errors);
    snprintf(r->cols[4], sizeof r->cols[4], "%.1f", l->requests ? l->latency_ms_sum / (double)l->requests : 0);
}

static void on_line(void *ud, const lx_usage_line *l)
{
    report_acc *a = ud;
    add_line(a, l->key[0] ? l->key : "-", l);
    a->total.requests += l->requests;
    a->total.prompt_tokens += l->prompt_tokens;
    a->total.completion_tokens += l->completion_tokens;
    a->total.errors += l->errors;
    a->total.latency_ms_sum += l->latency_ms_sum;
}

int lx_usage_report_store(const lx_usage_store_opts *o, const lx_usage_query *q, FILE *out, FILE *err)
{
    static const char *const heads[] = {"user", "model", "day", "gateway"};
    const lx_usage_backend *be = o->store == LX_USAGE_STORE_POSTGRES ? &lx_usage_postgres : &lx_usage_sqlite;
    report_acc a = {0};
    char msg[512];
    int rc = be->report(o, q, on_line, &a, msg, sizeof msg);
    if (rc == 0) {
        add_line(&a, "total", &a.total);
        print_table(out, heads[q->by], a.lines, a.n);
    } else {
        fprintf(err, "lexora usage: %s\n", msg);
    }
    for (size_t i = 0; i < a.n; i++)
        free(a.lines[i].key);
    free(a.lines);
    return rc == 0 ? 0 : 1;
}

int lx_usage_report(const char *path, const char *since, lx_usage_by by, FILE *out, FILE *err)
{
    lx_usage_store_opts o = {.store = LX_USAGE_STORE_SQLITE, .db_path = path};
    return lx_usage_report_store(&o, &(lx_usage_query){.since = since, .by = by}, out, err);
}

/* ---------- `lexora experiments report` ---------- */

static void on_exp_row(void *ud, const lx_exp_row *r) { lx_exp_data_add(ud, r); }

int lx_usage_experiment_data(const lx_usage_store_opts *o, const char *experiment, const char *since,
                             struct lx_exp_data *d, char *err, size_t errn)
{
    const lx_usage_backend *be = o->store == LX_USAGE_STORE_POSTGRES ? &lx_usage_postgres : &lx_usage_sqlite;
    return be->experiment_rows(o, experiment, since, on_exp_row, d, err, errn);
}
