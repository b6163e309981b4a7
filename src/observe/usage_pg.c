/*
 * The usage ledger's PostgreSQL store (usage_backend.h): one database that several gateways share,
 * through libpq, on the ledger's writer thread only.
 *
 * Schema, created and migrated at connect from a versioned migration table (lexora_migrations: one row
 * per applied version), under a transaction-scoped advisory lock so two gateways starting at once do
 * not race; a database newer than this Lexora is refused, never rewritten:
 *   1: usage(id bigserial, gateway_id text, row_key text, time timestamptz, request_id, "user", model,
 *            backend, priority, status, error_code, prompt_tokens, completion_tokens, queue_wait_ms,
 *            ttft_ms, latency_ms, stream boolean, UNIQUE (gateway_id, row_key)); index on time;
 *      ledger_totals(gateway_id PRIMARY KEY, began, requests, prompt_tokens, completion_tokens, errors).
 *   2: usage gains model_used, experiment, variant; indexes on request_id and (experiment, time);
 *      feedback(request_id PRIMARY KEY, time, "user", experiment, variant, score, comment, gateway_id).
 *
 * A batch is one transaction of multi-row INSERTs (up to LX_USAGE_PG_CHUNK rows each, all values as
 * text parameters) with ON CONFLICT (gateway_id, row_key) DO NOTHING; the same statement adds what was
 * new to the gateway's ledger_totals row and returns the totals. A batch sent again after an ambiguous
 * failure therefore adds nothing twice.
 *
 * Failure classes: a connection that cannot be made, is lost, or a server that is shutting down,
 * overloaded or times out (SQLSTATE classes 08, 53, 57, 58, 40, 55, and 25006: a read-only standby, as
 * during a failover) → LX_USAGE_WRITE_RETRY (the rows are kept); any other refusal (a permission, a
 * constraint) → LX_USAGE_WRITE_DROP. After any failure the connection is closed and made again for the
 * next attempt.
 *
 * The password: usage.password_file when given (read at each connect, its first line, so it
 * may be rotated), else libpq's own (a password in the URL, PGPASSWORD, ~/.pgpass). Unless the URL says
 * otherwise: connect_timeout 5 s, tcp_user_timeout 10 s, statement_timeout 30 s, so a server that
 * stops answering is a failure, not a writer stuck forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "observe/usage_backend.h"
#include "observe/usage_pg.h"
#include "utils/buf.h"
#include "utils/common.h"

#define PASSWORD_MAX 1024
#define LOCK_KEY     "7210533817" /* pg_advisory_xact_lock: the ledger's migrations */
#define ISO_UTC      "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"

typedef struct {
    char *url, *password_file;
    char gateway_id[LX_USAGE_GATEWAY_ID_MAX];
    PGconn *conn;
    lx_usage_pg_text *text; /* LX_USAGE_PG_CHUNK rows' parameter texts */
    const char **values;    /* 1 + LX_USAGE_PG_CHUNK * LX_USAGE_PG_COLS */
    lx_buf sql;             /* the statement for sql_rows rows */
    size_t sql_rows;
} pg;

static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE usage ("
    " id bigserial PRIMARY KEY,"
    " gateway_id text NOT NULL,"
    " row_key text NOT NULL,"
    " time timestamptz NOT NULL,"
    " request_id text NOT NULL,"
    " \"user\" text NOT NULL,"
    " model text NOT NULL,"
    " backend text,"
    " priority text,"
    " status integer NOT NULL,"
    " error_code text,"
    " prompt_tokens bigint,"
    " completion_tokens bigint,"
    " queue_wait_ms double precision NOT NULL,"
    " ttft_ms double precision,"
    " latency_ms double precision NOT NULL,"
    " stream boolean NOT NULL,"
    " UNIQUE (gateway_id, row_key));"
    "CREATE INDEX usage_time ON usage (time);"
    "CREATE TABLE ledger_totals ("
    " gateway_id text PRIMARY KEY,"
    " began timestamptz NOT NULL DEFAULT now(),"
    " requests bigint NOT NULL DEFAULT 0,"
    " prompt_tokens bigint NOT NULL DEFAULT 0,"
    " completion_tokens bigint NOT NULL DEFAULT 0,"
    " errors bigint NOT NULL DEFAULT 0);",
    /* 2 */
    "ALTER TABLE usage ADD COLUMN model_used text, ADD COLUMN experiment text, ADD COLUMN variant text;"
    "CREATE INDEX usage_request ON usage (request_id);"
    "CREATE INDEX usage_experiment ON usage (experiment, time) WHERE experiment IS NOT NULL;"
    "CREATE TABLE feedback ("
    " request_id text PRIMARY KEY,"
    " time timestamptz NOT NULL DEFAULT now(),"
    " \"user\" text NOT NULL,"
    " experiment text,"
    " variant text,"
    " score double precision NOT NULL,"
    " comment text,"
    " gateway_id text NOT NULL);",
};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

/* ---------- pure parts: the batch statement and its parameters, the URL ---------- */

void lx_usage_pg_batch_sql(lx_buf *out, size_t n)
{
    lx_buf_reset(out);
    lx_buf_append_str(out, "WITH ins AS (INSERT INTO usage (gateway_id, row_key, time, request_id, \"user\", model,"
                           " backend, priority, status, error_code, prompt_tokens, completion_tokens,"
                           " queue_wait_ms, ttft_ms, latency_ms, stream, model_used, experiment, variant) VALUES ");
    size_t p = 2; /* $1 is the gateway id */
    for (size_t i = 0; i < n; i++) {
        lx_buf_append_str(out, i ? ",($1" : "($1");
        for (size_t c = 0; c < LX_USAGE_PG_COLS; c++)
            lx_buf_printf(out, ",$%zu", p++);
        lx_buf_append_str(out, ")");
    }
    lx_buf_append_str(
        out, " ON CONFLICT (gateway_id, row_key) DO NOTHING"
             " RETURNING prompt_tokens, completion_tokens, status, error_code),"
             " s AS (SELECT count(*) AS n, coalesce(sum(prompt_tokens), 0) AS pt,"
             " coalesce(sum(completion_tokens), 0) AS ct,"
             " count(*) FILTER (WHERE status >= 400 OR error_code IS NOT NULL) AS e FROM ins),"
             " u AS (INSERT INTO ledger_totals AS t (gateway_id, requests, prompt_tokens, completion_tokens, errors)"
             " SELECT $1, n, pt, ct, e FROM s ON CONFLICT (gateway_id) DO UPDATE SET"
             " requests = t.requests + excluded.requests, prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,"
             " completion_tokens = t.completion_tokens + excluded.completion_tokens,"
             " errors = t.errors + excluded.errors"
             " RETURNING to_char(t.began AT TIME ZONE 'UTC', " ISO_UTC "), t.requests, t.prompt_tokens,"
             " t.completion_tokens, t.errors)"
             " SELECT s.n, u.* FROM s, u");
}

static const char *opt_num(char *buf, size_t n, long v)
{
    if (v < 0) return NULL;
    snprintf(buf, n, "%ld", v);
    return buf;
}

static const char *opt_ms(char *buf, size_t n, double v)
{
    if (v < 0) return NULL;
    snprintf(buf, n, "%.3f", v);
    return buf;
}

static const char *opt_str(const char *s) { return s[0] ? s : NULL; }

void lx_usage_pg_batch_params(const lx_usage_row *rows, size_t n, const char *gateway_id, lx_usage_pg_text *text,
                              const char **values)
{
    values[0] = gateway_id;
    for (size_t i = 0; i < n; i++) {
        const lx_usage_row *r = &rows[i];
        lx_usage_pg_text *t = &text[i];
        const char **v = &values[1 + i * LX_USAGE_PG_COLS];
        lx_usage_row_key(t->key, r);
        lx_usage_iso_ms(t->time, r->time_ms);
        snprintf(t->status, sizeof t->status, "%d", r->status);
        snprintf(t->queue_wait, sizeof t->queue_wait, "%.3f", r->queue_wait_ms);
        snprintf(t->latency, sizeof t->latency, "%.3f", r->latency_ms);
        v[0] = t->key;
        v[1] = t->time;
        v[2] = lx_usage_row_text(r, LX_ROW_REQUEST_ID);
        v[3] = lx_usage_row_text(r, LX_ROW_USER);
        v[4] = lx_usage_row_text(r, LX_ROW_MODEL);
        v[5] = opt_str(lx_usage_row_text(r, LX_ROW_BACKEND));
        v[6] = opt_str(lx_usage_row_text(r, LX_ROW_PRIORITY));
        v[7] = t->status;
        v[8] = opt_str(lx_usage_row_text(r, LX_ROW_ERROR_CODE));
        v[9] = opt_num(t->prompt, sizeof t->prompt, r->prompt_tokens);
        v[10] = opt_num(t->completion, sizeof t->completion, r->completion_tokens);
        v[11] = t->queue_wait;
        v[12] = opt_ms(t->ttft, sizeof t->ttft, r->ttft_ms);
        v[13] = t->latency;
        v[14] = r->stream ? "t" : "f";
        v[15] = opt_str(lx_usage_row_text(r, LX_ROW_MODEL_USED));
        v[16] = opt_str(lx_usage_row_text(r, LX_ROW_EXPERIMENT));
        v[17] = opt_str(lx_usage_row_text(r, LX_ROW_VARIANT));
    }
}

bool lx_usage_pg_url_ok(const char *url, char *err, size_t errn)
{
    if (url[0] == '\0') {
        snprintf(err, errn, "must not be empty: a URL such as postgresql://lexora@127.0.0.1:5432/lexora");
        return false;
    }
    bool uri = strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0;
    if (!uri && strchr(url, '=') == NULL) {
        snprintf(err, errn,
                 "must be a URL postgresql://[user[:password]@]host[:port]/dbname or a libpq key=value string, "
                 "got \"%s\"",
                 url);
        return false;
    }
    char *msg = NULL;
    PQconninfoOption *o = PQconninfoParse(url, &msg);
    if (o == NULL) {
        size_t k = msg ? strlen(msg) : 0;
        while (k && (msg[k - 1] == '\n' || msg[k - 1] == ' '))
            k--;
        snprintf(err, errn, "not a connection string libpq accepts: %.*s", (int)k, msg ? msg : "out of memory");
        PQfreemem(msg);
        return false;
    }
    PQconninfoFree(o);
    return true;
}

/* The end of the value that starts at v in a key=value string (quoted or not). */
static const char *kv_value_end(const char *v)
{
    if (*v != '\'') return v + strcspn(v, " \t\n");
    for (v++; *v && *v != '\''; v++)
        if (*v == '\\' && v[1]) v++;
    return *v ? v + 1 : v;
}

char *lx_usage_pg_url_redacted(const char *url)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    const char *p = url;
    bool uri = strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0;
    if (uri) {
        const char *auth = strstr(url, "://") + 3;
        size_t alen = strcspn(auth, "/?");
        const char *at = memchr(auth, '@', alen);
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon) { /* user:password@ → user:***@ */
            lx_buf_append(&b, url, (size_t)(colon - url) + 1);
            lx_buf_append_str(&b, "***");
            p = at;
        }
    }
    /* password=... (a URL's query, or a key=value string) */
    const char *sep = uri ? "?&" : " \t";
    for (const char *q = p; *q; q++) {
        bool start = q == url || strchr(sep, q[-1]) != NULL;
        if (!start || strncmp(q, "password", 8) != 0) continue;
        const char *e = q + 8;
        while (!uri && (*e == ' ' || *e == '\t'))
            e++;
        if (*e != '=') continue;
        e++;
        while (!uri && (*e == ' ' || *e == '\t'))
            e++;
        lx_buf_append(&b, p, (size_t)(e - p));
        lx_buf_append_str(&b, "***");
        p = uri ? e + strcspn(e, "&#") : kv_value_end(e);
        q = p - 1;
    }
    lx_buf_append_str(&b, p);
    char *s = lx_xstrdup(b.p ? b.p : "");
    lx_buf_free(&b);
    return s;
}

/* ---------- the connection ---------- */

static void *pg_create(const lx_usage_store_opts *o)
{
    pg *s = lx_xcalloc(1, sizeof *s);
    s->url = lx_xstrdup(o->postgres_url ? o->postgres_url : "");
    s->password_file = o->password_file && o->password_file[0] ? lx_xstrdup(o->password_file) : NULL;
    snprintf(s->gateway_id, sizeof s->gateway_id, "%s", o->gateway_id ? o->gateway_id : "");
    lx_buf_init(&s->sql, 0);
    return s;
}

static void pg_disconnect(void *db)
{
    pg *s = db;
    PQfinish(s->conn);
    s->conn = NULL;
}

static void pg_destroy(void *db)
{
    pg *s = db;
    pg_disconnect(s);
    free(s->url);
    free(s->password_file);
    free(s->text);
    free(s->values);
    lx_buf_free(&s->sql);
    free(s);
}

/* The password file's first line into out. 0, or -1 with err set. */
static int read_password(const char *file, char out[PASSWORD_MAX + 1], char *err, size_t errn)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, out, PASSWORD_MAX + 1);
    int e = errno;
    if (fd >= 0) close(fd);
    if (n < 0 || n > PASSWORD_MAX) {
        snprintf(err, errn, "cannot read the password file %s: %s", file,
                 n < 0 ? strerror(e) : "larger than 1024 bytes");
        return -1;
    }
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

/* "what: msg" on one line (libpq's messages span lines, with tabs). */
static void copy_error(char *err, size_t errn, const char *what, const char *msg)
{
    int k = snprintf(err, errn, "%s: ", what);
    size_t o = k > 0 && (size_t)k < errn ? (size_t)k : 0;
    bool space = false;
    for (const char *p = msg ? msg : "out of memory"; *p && o + 1 < errn; p++) {
        bool ws = *p == '\n' || *p == '\t' || *p == '\r' || *p == ' ';
        if (ws) {
            space = true;
            continue;
        }
        if (space && o + 2 < errn) err[o++] = ' ';
        space = false;
        err[o++] = *p;
    }
    err[o] = '\0';
}

static void no_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* NOTICE and WARNING lines of the server (a table that exists, a shutdown): not ours to print */
}

/* Opens a connection with the defaults described at the top; NULL with err set. */
static PGconn *open_conn(const char *url, const char *password_file, char *err, size_t errn)
{
    char password[PASSWORD_MAX + 1];
    if (password_file && read_password(password_file, password, err, errn) != 0) return NULL;
    /* the later entries win: the defaults come before the URL, the password file after it */
    const char *keys[] = {"connect_timeout",
                          "tcp_user_timeout",
                          "options",
                          "application_name",
                          "dbname",
                          password_file ? "password" : NULL,
                          NULL};
    const char *vals[] = {"5", "10000", "-c statement_timeout=30000", "lexora", url, password, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    explicit_bzero(password, sizeof password);
    if (c) PQsetNoticeProcessor(c, no_notices, NULL);
    if (c && PQstatus(c) == CONNECTION_OK) return c;
    copy_error(err, errn, "cannot connect", c ? PQerrorMessage(c) : NULL);
    PQfinish(c);
    return NULL;
}

/* What a failed statement means (see the top of the file); sets err. */
static int classify(pg *s, PGresult *r, const char *what, char *err, size_t errn)
{
    copy_error(err, errn, what, r ? PQresultErrorMessage(r) : PQerrorMessage(s->conn));
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    bool away = PQstatus(s->conn) != CONNECTION_OK || state == NULL || strncmp(state, "08", 2) == 0 ||
                strncmp(state, "53", 2) == 0 || strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0 ||
                strncmp(state, "40", 2) == 0 || strncmp(state, "55", 2) == 0 ||
                strcmp(state, "25006") == 0; /* a standby, read-only: a failover under way */
    PQclear(r);
    PQclear(PQexec(s->conn, "ROLLBACK")); /* no-op outside a transaction or on a dead connection */
    pg_disconnect(s);
    return away ? LX_USAGE_WRITE_RETRY : LX_USAGE_WRITE_DROP;
}

/* A statement without a result set; 0 or a failure class. */
static int exec_ok(pg *s, const char *sql, const char *what, char *err, size_t errn)
{
    PGresult *r = PQexec(s->conn, sql);
    if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK) {
        PQclear(r);
        return 0;
    }
    return classify(s, r, what, err, errn);
}

static void totals_of(PGresult *r, int col, lx_usage_totals *t)
{
    snprintf(t->began, sizeof t->began, "%s", PQgetvalue(r, 0, col));
    t->requests = strtoull(PQgetvalue(r, 0, col + 1), NULL, 10);
    t->prompt_tokens = strtoull(PQgetvalue(r, 0, col + 2), NULL, 10);
    t->completion_tokens = strtoull(PQgetvalue(r, 0, col + 3), NULL, 10);
    t->errors = strtoull(PQgetvalue(r, 0, col + 4), NULL, 10);
}

/* Applies the migrations the database lacks, inside the open transaction. */
static int migrate(pg *s, char *err, size_t errn)
{
    int rc = exec_ok(s,
                     "SELECT pg_advisory_xact_lock(" LOCK_KEY ");"
                     "CREATE TABLE IF NOT EXISTS lexora_migrations (version integer PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())",
                     "cannot create the migration table", err, errn);
    if (rc) return rc;
    PGresult *r = PQexec(s->conn, "SELECT coalesce(max(version), 0) FROM lexora_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) return classify(s, r, "cannot read the schema version", err, errn);
    long have = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (have > (long)N_MIGRATIONS) {
        snprintf(err, errn, "the ledger's schema version %ld is newer than this Lexora's (%zu)", have, N_MIGRATIONS);
        PQclear(PQexec(s->conn, "ROLLBACK"));
        pg_disconnect(s);
        return LX_USAGE_WRITE_DROP;
    }
    for (size_t v = (size_t)have + 1; v <= N_MIGRATIONS; v++) {
        char rec[96];
        snprintf(rec, sizeof rec, "INSERT INTO lexora_migrations (version) VALUES (%zu)", v);
        if ((rc = exec_ok(s, migrations[v - 1], "cannot migrate the schema", err, errn)) ||
            (rc = exec_ok(s, rec, "cannot migrate the schema", err, errn)))
            return rc;
    }
    return 0;
}

static int pg_connect(void *db, lx_usage_totals *totals, char *err, size_t errn)
{
    pg *s = db;
    if (s->conn) return LX_USAGE_WRITE_OK;
    if ((s->conn = open_conn(s->url, s->password_file, err, errn)) == NULL) return LX_USAGE_WRITE_RETRY;
    int rc = exec_ok(s, "BEGIN", "cannot begin", err, errn);
    if (rc || (rc = migrate(s, err, errn))) return rc;
    const char *gw[] = {s->gateway_id};
    PGresult *r = PQexecParams(s->conn,
                               "INSERT INTO ledger_totals (gateway_id) VALUES ($1) ON CONFLICT (gateway_id) DO "
                               "UPDATE SET gateway_id = excluded.gateway_id"
                               " RETURNING to_char(began AT TIME ZONE 'UTC', " ISO_UTC
                               "), requests, prompt_tokens, completion_tokens, errors",
                               1, NULL, gw, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        return classify(s, r, "cannot read the totals", err, errn);
    totals_of(r, 0, totals);
    PQclear(r);
    return exec_ok(s, "COMMIT", "cannot commit", err, errn);
}

/* One chunk of rows in the open transaction; adds what was new to *written and fills totals. */
static int write_chunk(pg *s, const lx_usage_row *rows, size_t n, lx_usage_totals *totals, size_t *written, char *err,
                       size_t errn)
{
    if (s->sql_rows != n) {
        lx_usage_pg_batch_sql(&s->sql, n);
        s->sql_rows = n;
    }
    lx_usage_pg_batch_params(rows, n, s->gateway_id, s->text, s->values);
    PGresult *r = PQexecParams(s->conn, s->sql.p, (int)(1 + n * LX_USAGE_PG_COLS), NULL, s->values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) return classify(s, r, "cannot insert", err, errn);
    *written += strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    totals_of(r, 1, totals);
    PQclear(r);
    return 0;
}

static int pg_write(void *db, const lx_usage_row *rows, size_t n, lx_usage_totals *totals, size_t *written, char *err,
                    size_t errn)
{
    pg *s = db;
    int rc = pg_connect(s, totals, err, errn);
    if (rc) return rc;
    if (s->text == NULL) {
        s->text = lx_xcalloc(LX_USAGE_PG_CHUNK, sizeof *s->text);
        s->values = lx_xcalloc(1 + LX_USAGE_PG_CHUNK * LX_USAGE_PG_COLS, sizeof *s->values);
    }
    size_t added = 0;
    if ((rc = exec_ok(s, "BEGIN", "cannot begin", err, errn))) return rc;
    for (size_t i = 0; i < n; i += LX_USAGE_PG_CHUNK)
        if ((rc = write_chunk(s, rows + i, LX_MIN(n - i, (size_t)LX_USAGE_PG_CHUNK), totals, &added, err, errn)))
            return rc;
    if ((rc = exec_ok(s, "COMMIT", "cannot commit", err, errn))) return rc;
    *written = added;
    return LX_USAGE_WRITE_OK;
}

/* ---------- `lexora usage` and `lexora experiments report` ---------- */

/* A read of the ledger for a report, on a connection of its own: the result (its rows in *conn's), or NULL
 * with err set ("cannot read the usage ledger URL: why", the URL without its password). */
static PGresult *read_query(const lx_usage_store_opts *o, const char *sql, const char *const params[2], PGconn **conn,
                            char *err, size_t errn)
{
    char what[300], why[256];
    char *shown = lx_usage_pg_url_redacted(o->postgres_url ? o->postgres_url : "");
    snprintf(what, sizeof what, "cannot read the usage ledger %s", shown);
    free(shown);
    *conn = open_conn(o->postgres_url ? o->postgres_url : "", o->password_file, why, sizeof why);
    if (*conn == NULL) {
        snprintf(err, errn, "%s: %s", what, why);
        return NULL;
    }
    PGresult *r = PQexecParams(*conn, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) return r;
    copy_error(err, errn, what, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(*conn);
    return NULL;
}

static int pg_report(const lx_usage_store_opts *o, const lx_usage_query *q, lx_usage_line_fn fn, void *ud, char *err,
                     size_t errn)
{
    static const char *const keys[] = {"\"user\"", "model", "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
                                       "gateway_id"};
    char sql[640];
    snprintf(sql, sizeof sql,
             "SELECT %s AS k, count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
             " count(*) FILTER (WHERE status >= 400 OR error_code IS NOT NULL), coalesce(sum(latency_ms), 0)"
             " FROM usage WHERE ($1::timestamptz IS NULL OR time >= $1::timestamptz)"
             " AND ($2::text IS NULL OR gateway_id = $2::text) GROUP BY 1 ORDER BY %s",
             keys[q->by], q->by == LX_USAGE_BY_DAY ? "1" : "2 DESC, 1");
    const char *params[] = {q->since, q->gateway};
    PGconn *c;
    PGresult *r = read_query(o, sql, params, &c, err, errn);
    if (r == NULL) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        lx_usage_line l = {.key = PQgetvalue(r, i, 0),
                           .requests = strtoll(PQgetvalue(r, i, 1), NULL, 10),
                           .prompt_tokens = strtoll(PQgetvalue(r, i, 2), NULL, 10),
                           .completion_tokens = strtoll(PQgetvalue(r, i, 3), NULL, 10),
                           .errors = strtoll(PQgetvalue(r, i, 4), NULL, 10),
                           .latency_ms_sum = strtod(PQgetvalue(r, i, 5), NULL)};
        fn(ud, &l);
    }
    PQclear(r);
    PQfinish(c);
    return 0;
}

/* ---------- feedback ---------- */

/* Looks the request up and stores the feedback, in the open transaction; 0 or a failure class. */
static int store_feedback(pg *s, const lx_usage_feedback *f, lx_usage_feedback_result *out, char *err, size_t errn)
{
    const char *id[] = {f->request_id};
    PGresult *r = PQexecParams(s->conn,
                               "SELECT \"user\", coalesce(experiment, ''), coalesce(variant, '') FROM usage"
                               " WHERE request_id = $1 ORDER BY id DESC LIMIT 1",
                               1, NULL, id, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) return classify(s, r, "cannot look the request up", err, errn);
    out->verdict = LX_FEEDBACK_UNKNOWN;
    char owner[128] = "";
    if (PQntuples(r) == 1) {
        snprintf(owner, sizeof owner, "%s", PQgetvalue(r, 0, 0));
        snprintf(out->experiment, sizeof out->experiment, "%s", PQgetvalue(r, 0, 1));
        snprintf(out->variant, sizeof out->variant, "%s", PQgetvalue(r, 0, 2));
        out->verdict = f->admin || strcmp(owner, f->user) == 0 ? LX_FEEDBACK_STORED : LX_FEEDBACK_NOT_YOURS;
    }
    PQclear(r);
    if (out->verdict != LX_FEEDBACK_STORED) return 0;
    char score[32];
    snprintf(score, sizeof score, "%.17g", f->score);
    const char *v[] = {f->request_id, owner, out->experiment, out->variant, score, f->comment, s->gateway_id};
    r = PQexecParams(s->conn,
                     "INSERT INTO feedback (request_id, \"user\", experiment, variant, score, comment, gateway_id)"
                     " VALUES ($1, $2, NULLIF($3, ''), NULLIF($4, ''), $5::double precision, NULLIF($6, ''), $7)"
                     " ON CONFLICT (request_id) DO NOTHING",
                     7, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) return classify(s, r, "cannot store feedback", err, errn);
    if (strcmp(PQcmdTuples(r), "1") != 0) out->verdict = LX_FEEDBACK_TWICE;
    PQclear(r);
    return 0;
}

static int pg_feedback(void *db, const lx_usage_feedback *f, lx_usage_feedback_result *out, char *err, size_t errn)
{
    pg *s = db;
    lx_usage_totals unused;
    int rc = pg_connect(s, &unused, err, errn);
    if (rc || (rc = exec_ok(s, "BEGIN", "cannot begin", err, errn))) return rc;
    if ((rc = store_feedback(s, f, out, err, errn))) return rc;
    return exec_ok(s, "COMMIT", "cannot commit", err, errn);
}

/* ---------- `lexora experiments report` ---------- */

static int pg_experiment_rows(const lx_usage_store_opts *o, const char *experiment, const char *since,
                              lx_usage_exp_fn fn, void *ud, char *err, size_t errn)
{
    static const char sql[] =
        "SELECT u.variant, u.status, (u.status >= 400 OR u.error_code IS NOT NULL), u.latency_ms,"
        " CASE WHEN u.stream THEN coalesce(u.ttft_ms, -1) ELSE -1 END, CASE WHEN u.prompt_tokens IS NULL THEN -1"
        " ELSE u.prompt_tokens + coalesce(u.completion_tokens, 0) END, f.score"
        " FROM usage u LEFT JOIN feedback f ON f.request_id = u.request_id"
        " WHERE u.experiment = $1 AND u.variant IS NOT NULL"
        " AND ($2::timestamptz IS NULL OR u.time >= $2::timestamptz) ORDER BY u.id";
    const char *params[] = {experiment, since};
    PGconn *c;
    PGresult *r = read_query(o, sql, params, &c, err, errn);
    if (r == NULL) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        lx_exp_row row = {.variant = PQgetvalue(r, i, 0),
                          .status = (int)strtol(PQgetvalue(r, i, 1), NULL, 10),
                          .error = PQgetvalue(r, i, 2)[0] == 't',
                          .latency_ms = strtod(PQgetvalue(r, i, 3), NULL),
                          .ttft_ms = strtod(PQgetvalue(r, i, 4), NULL),
                          .tokens = strtol(PQgetvalue(r, i, 5), NULL, 10),
                          .has_feedback = !PQgetisnull(r, i, 6),
                          .score = strtod(PQgetvalue(r, i, 6), NULL)};
        fn(ud, &row);
    }
    PQclear(r);
    PQfinish(c);
    return 0;
}

const lx_usage_backend lx_usage_postgres = {
    .name = "postgres",
    .writer_thread = true,
    .queue_rows = LX_USAGE_PG_QUEUE_ROWS,
    .create = pg_create,
    .connect = pg_connect,
    .write = pg_write,
    .disconnect = pg_disconnect,
    .destroy = pg_destroy,
    .report = pg_report,
    .feedback = pg_feedback,
    .experiment_rows = pg_experiment_rows,
};
