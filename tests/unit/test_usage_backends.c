/* Unit tests for the usage ledger's stores: the PostgreSQL store's pure parts (the batch statement and
 * its parameters, the URL check and its redaction, gateway ids) and the SQLite store's rows, its
 * answer to a file locked by another writer, and its schema migrations. The PostgreSQL store's
 * write runs against a real server only when LEXORA_TEST_PG_URL is set (the PostgreSQL integration
 * test runs this binary so); otherwise that one test is skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "observe/usage_backend.h"
#include "observe/usage_pg.h"
#include "observe/usage_store.h"

static lx_usage_row row(uint64_t seq, const char *id, int status, long pt, long ct)
{
    lx_usage_row r = {.time_ms = 1767225600123, /* 2026-01-01T00:00:00.123Z */
                      .run_id = 0xabcdef0123456789ull,
                      .seq = seq,
                      .status = status,
                      .prompt_tokens = pt,
                      .completion_tokens = ct,
                      .queue_wait_ms = 1.5,
                      .ttft_ms = status < 400 ? 20.25 : -1,
                      .latency_ms = 100,
                      .stream = seq % 2 == 1};
    lx_usage_row_set(&r, LX_ROW_REQUEST_ID, id);
    lx_usage_row_set(&r, LX_ROW_USER, "alice");
    lx_usage_row_set(&r, LX_ROW_MODEL, "qwen3-32b");
    if (status < 400) lx_usage_row_set(&r, LX_ROW_BACKEND, "vllm");
    lx_usage_row_set(&r, LX_ROW_PRIORITY, "high");
    if (status >= 400) lx_usage_row_set(&r, LX_ROW_ERROR_CODE, "model_not_found");
    if (status < 400) lx_usage_row_set(&r, LX_ROW_MODEL_USED, "qwen3-32b-awq");
    if (status < 400) lx_usage_row_set(&r, LX_ROW_EXPERIMENT, "coder");
    if (status < 400) lx_usage_row_set(&r, LX_ROW_VARIANT, "qwen-coder");
    return r;
}

static void test_batch_sql(void **state)
{
    (void)state;
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_usage_pg_batch_sql(&b, 2);
    assert_non_null(strstr(b.p, "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19),"
                                "($1,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30,$31,$32,$33,$34,$35,$36,$37)"
                                " ON CONFLICT (gateway_id, row_key) DO NOTHING"));
    assert_null(strstr(b.p, "$38"));
    assert_non_null(strstr(b.p, "requests = t.requests + excluded.requests"));
    /* built again for another size, not appended */
    lx_usage_pg_batch_sql(&b, 1);
    assert_null(strstr(b.p, "$20"));
    assert_int_equal(strstr(b.p, "WITH ins AS") - b.p, 0);
    lx_usage_pg_batch_sql(&b, LX_USAGE_PG_CHUNK);
    char last[16];
    snprintf(last, sizeof last, "$%d)", 1 + LX_USAGE_PG_CHUNK * LX_USAGE_PG_COLS);
    assert_non_null(strstr(b.p, last));
    assert_true(1 + LX_USAGE_PG_CHUNK * LX_USAGE_PG_COLS <= 65535); /* PostgreSQL's limit of parameters */
    lx_buf_free(&b);
}

static void test_batch_params(void **state)
{
    (void)state;
    lx_usage_row rows[2] = {row(7, "req-1", 200, 10, 5), row(8, "req-2", 404, -1, -1)};
    lx_usage_pg_text text[2];
    const char *v[1 + 2 * LX_USAGE_PG_COLS];
    lx_usage_pg_batch_params(rows, 2, "gw-a", text, v);
    assert_string_equal(v[0], "gw-a");
    const char **a = &v[1], **e = &v[1 + LX_USAGE_PG_COLS];
    assert_string_equal(a[0], "abcdef0123456789-000000000007");
    assert_string_equal(a[1], "2026-01-01T00:00:00.123Z");
    assert_string_equal(a[2], "req-1");
    assert_string_equal(a[3], "alice");
    assert_string_equal(a[4], "qwen3-32b");
    assert_string_equal(a[5], "vllm");
    assert_string_equal(a[6], "high");
    assert_string_equal(a[7], "200");
    assert_null(a[8]);
    assert_string_equal(a[9], "10");
    assert_string_equal(a[10], "5");
    assert_string_equal(a[11], "1.500");
    assert_string_equal(a[12], "20.250");
    assert_string_equal(a[13], "100.000");
    assert_string_equal(a[14], "t"); /* odd seq: a stream */
    assert_string_equal(a[15], "qwen3-32b-awq");
    assert_string_equal(a[16], "coder");
    assert_string_equal(a[17], "qwen-coder");
    /* an error: NULL backend, tokens and ttft; its own key */
    assert_string_equal(e[0], "abcdef0123456789-000000000008");
    assert_string_equal(e[2], "req-2");
    assert_null(e[5]);
    assert_string_equal(e[7], "404");
    assert_string_equal(e[8], "model_not_found");
    assert_null(e[9]);
    assert_null(e[10]);
    assert_null(e[12]);
    assert_string_equal(e[14], "f");
    assert_null(e[15]); /* not in an experiment, nothing answered */
    assert_null(e[16]);
    assert_null(e[17]);
}

static void test_url_check(void **state)
{
    (void)state;
    char err[256];
    assert_true(lx_usage_pg_url_ok("postgresql://lexora@127.0.0.1:5432/lexora", err, sizeof err));
    assert_true(lx_usage_pg_url_ok("postgres://u:p@db.example/lexora?sslmode=require", err, sizeof err));
    assert_true(lx_usage_pg_url_ok("postgresql:///lexora?host=/run/postgresql", err, sizeof err));
    assert_true(lx_usage_pg_url_ok("host=db port=5432 dbname=lexora user=lexora", err, sizeof err));
    assert_false(lx_usage_pg_url_ok("", err, sizeof err));
    assert_non_null(strstr(err, "must not be empty"));
    assert_false(lx_usage_pg_url_ok("mysql://db/x", err, sizeof err));
    assert_non_null(strstr(err, "must be a URL postgresql://"));
    assert_false(lx_usage_pg_url_ok("lexora", err, sizeof err));
    assert_false(lx_usage_pg_url_ok("host=db nosuch=1", err, sizeof err));
    assert_non_null(strstr(err, "invalid connection option \"nosuch\""));
    assert_null(strchr(err, '\n'));
    assert_false(lx_usage_pg_url_ok("postgresql://db/x?nosuch=1", err, sizeof err));
}

static void expect_redacted(const char *url, const char *want)
{
    char *got = lx_usage_pg_url_redacted(url);
    if (strcmp(got, want) != 0) fail_msg("%s → %s, want %s", url, got, want);
    free(got);
}

static void test_url_redacted(void **state)
{
    (void)state;
    expect_redacted("postgresql://lexora@127.0.0.1:5432/lexora", "postgresql://lexora@127.0.0.1:5432/lexora");
    expect_redacted("postgresql://lexora:s3cr%40t@db:5432/lexora", "postgresql://lexora:***@db:5432/lexora");
    expect_redacted("postgres://u:p@db/x?sslmode=require&password=zz&user=v",
                    "postgres://u:***@db/x?sslmode=require&password=***&user=v");
    expect_redacted("postgresql://db/x?password=zz", "postgresql://db/x?password=***");
    expect_redacted("host=db password=hunter2 dbname=x", "host=db password=*** dbname=x");
    expect_redacted("host=db password = 'a b\\' c' dbname=x", "host=db password = *** dbname=x");
    expect_redacted("password=p", "password=***");
    expect_redacted("host=db dbname=mypassword=x", "host=db dbname=mypassword=x");
    expect_redacted("", "");
}

static void test_gateway_ids(void **state)
{
    (void)state;
    assert_true(lx_usage_gateway_id_ok("gw-1"));
    assert_true(lx_usage_gateway_id_ok("eu-west.lexora_2:a"));
    assert_false(lx_usage_gateway_id_ok(""));
    assert_false(lx_usage_gateway_id_ok("gw 1"));
    assert_false(lx_usage_gateway_id_ok("gw'1"));
    char longest[LX_USAGE_GATEWAY_ID_MAX + 1];
    memset(longest, 'a', sizeof longest);
    longest[LX_USAGE_GATEWAY_ID_MAX - 1] = '\0';
    assert_true(lx_usage_gateway_id_ok(longest));
    longest[LX_USAGE_GATEWAY_ID_MAX - 1] = 'a';
    longest[LX_USAGE_GATEWAY_ID_MAX] = '\0';
    assert_false(lx_usage_gateway_id_ok(longest));
    char host[LX_USAGE_GATEWAY_ID_MAX];
    lx_usage_default_gateway_id(host);
    assert_true(lx_usage_gateway_id_ok(host));
}

/* ---------- SQLite: migration, exactly once ---------- */

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/lexora-usage-be-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int64_t query_int(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* A row's texts: each at its own offset with its length, NULL and unset ones "", each cut at its column's
 * longest (every one at its longest still fits), and a reused row cleared first. */
static void test_row_texts(void **state)
{
    (void)state;
    lx_usage_row r = {0};
    assert_string_equal(lx_usage_row_text(&r, LX_ROW_MODEL), "");
    lx_usage_row_set(&r, LX_ROW_USER, "alice");
    lx_usage_row_set(&r, LX_ROW_BACKEND, NULL);
    assert_string_equal(lx_usage_row_text(&r, LX_ROW_USER), "alice");
    assert_int_equal(r.len[LX_ROW_USER], 5);
    assert_string_equal(lx_usage_row_text(&r, LX_ROW_BACKEND), "");
    assert_string_equal(lx_usage_row_text(&r, LX_ROW_VARIANT), ""); /* never set */
    assert_false(lx_usage_row_is_error(&(lx_usage_row){.status = 200}));

    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    static const size_t longest[LX_ROW_TEXTS] = {LX_REQUEST_ID_MAX - 1, 127, 255, 255, 127, 255, 127, 7, 47};
    lx_usage_row_clear_texts(&r);
    for (int k = 0; k < LX_ROW_TEXTS; k++)
        lx_usage_row_set(&r, (lx_usage_row_field)k, big);
    for (int k = 0; k < LX_ROW_TEXTS; k++) {
        assert_int_equal(r.len[k], longest[k]);
        assert_int_equal(strlen(lx_usage_row_text(&r, (lx_usage_row_field)k)), longest[k]);
    }
    assert_true(r.used <= LX_ROW_TEXT_MAX);
    assert_true(lx_usage_row_is_error(&r)); /* an error code is set */

    lx_usage_row_clear_texts(&r); /* as the store reuses a row */
    lx_usage_row_set(&r, LX_ROW_REQUEST_ID, "req_1");
    assert_string_equal(lx_usage_row_text(&r, LX_ROW_REQUEST_ID), "req_1");
    assert_string_equal(lx_usage_row_text(&r, LX_ROW_ERROR_CODE), "");
    assert_int_equal(r.len[LX_ROW_ERROR_CODE], 0);
}

/* Rows through the multi-row statement and the one-row statement (37 = 32 + 5), each value where it belongs;
 * SQLite writes every row it is given (it never gets a batch twice: a failed write is dropped, never sent again,
 * so it needs no key, and row_key stays NULL); two gateways in one file. */
static void test_sqlite_rows(void **state)
{
    (void)state;
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/rows.db", dir);
    lx_usage_store_opts o = {.store = LX_USAGE_STORE_SQLITE, .db_path = path, .gateway_id = "gw-a"};
    void *db = lx_usage_sqlite.create(&o);
    lx_usage_totals t = {0};
    assert_int_equal(lx_usage_sqlite.connect(db, &t, err, sizeof err), LX_USAGE_WRITE_OK);
    enum { N = 37 };
    lx_usage_row rows[N];
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        rows[i] = row((uint64_t)i, id, i % 10 == 9 ? 404 : 200, i % 10 == 9 ? -1 : i, i % 10 == 9 ? -1 : 2 * i);
        rows[i].time_ms += (int64_t)i * 1500; /* crosses seconds: the time's cached head is redone */
    }
    size_t written = 0;
    assert_int_equal(lx_usage_sqlite.write(db, rows, N, &t, &written, err, sizeof err), LX_USAGE_WRITE_OK);
    assert_int_equal(written, N);
    assert_int_equal(t.requests, N);
    assert_int_equal(t.errors, 3);
    lx_usage_sqlite.destroy(db);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE gateway_id = 'gw-a'"), N);
    /* each row's values, in the columns they belong to */
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE request_id = 'r' || (id - 1)"
                                     " AND row_key IS NULL"
                                     " AND (status = 404) = ((id - 1) % 10 = 9)"
                                     " AND (prompt_tokens IS NULL OR (prompt_tokens = id - 1 AND"
                                     " completion_tokens = 2 * (id - 1)))"
                                     " AND stream = (id - 1) % 2 AND user = 'alice' AND priority = 'high'"),
                     N);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE id = 32 AND"
                                     " time = '2026-01-01T00:00:46.623Z' AND model_used = 'qwen3-32b-awq' AND"
                                     " experiment = 'coder' AND variant = 'qwen-coder' AND ttft_ms = 20.25 AND"
                                     " queue_wait_ms = 1.5 AND latency_ms = 100 AND backend = 'vllm'"),
                     1);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE id = 10 AND time = '2026-01-01T00:00:13.623Z'"
                                     " AND backend IS NULL AND error_code = 'model_not_found' AND ttft_ms IS NULL"
                                     " AND model_used IS NULL AND experiment IS NULL AND variant IS NULL"),
                     1);
    assert_int_equal(query_int(path, "SELECT requests FROM ledger_totals"), N);
    /* another gateway writes to the same file */
    o.gateway_id = "gw-b";
    db = lx_usage_sqlite.create(&o);
    assert_int_equal(lx_usage_sqlite.write(db, rows, 1, &t, &written, err, sizeof err), LX_USAGE_WRITE_OK);
    assert_int_equal(written, 1);
    lx_usage_sqlite.destroy(db);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage"), N + 1);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE gateway_id = 'gw-b'"), 1);
}

/* The file locked by another writer: the write is to be tried again (the rows kept), and goes through after. */
static void test_sqlite_locked(void **state)
{
    (void)state;
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/locked.db", dir);
    lx_usage_store_opts o = {.store = LX_USAGE_STORE_SQLITE, .db_path = path, .gateway_id = "gw-a"};
    void *db = lx_usage_sqlite.create(&o);
    lx_usage_totals t = {0};
    assert_int_equal(lx_usage_sqlite.connect(db, &t, err, sizeof err), LX_USAGE_WRITE_OK);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    lx_usage_row r = row(1, "r1", 200, 1, 1);
    size_t written = 0;
    assert_int_equal(lx_usage_sqlite.write(db, &r, 1, &t, &written, err, sizeof err), LX_USAGE_WRITE_RETRY);
    assert_non_null(strstr(err, "locked"));
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    assert_int_equal(lx_usage_sqlite.write(db, &r, 1, &t, &written, err, sizeof err), LX_USAGE_WRITE_OK);
    assert_int_equal(written, 1);
    lx_usage_sqlite.destroy(db);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage"), 1);
}

/* Version 3 had a unique index on (gateway_id, row_key): version 4 drops it. */
static void test_sqlite_migrates_v3(void **state)
{
    (void)state;
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/v3.db", dir);
    lx_usage_store_opts o = {.store = LX_USAGE_STORE_SQLITE, .db_path = path, .gateway_id = "gw-a"};
    void *db = lx_usage_sqlite.create(&o);
    lx_usage_totals t = {0};
    assert_int_equal(lx_usage_sqlite.connect(db, &t, err, sizeof err), LX_USAGE_WRITE_OK);
    lx_usage_sqlite.destroy(db);
    sqlite3 *s;
    assert_int_equal(sqlite3_open(path, &s), SQLITE_OK);
    assert_int_equal(sqlite3_exec(s,
                                  "CREATE UNIQUE INDEX usage_key ON usage(gateway_id, row_key);"
                                  " PRAGMA user_version = 3;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(s);
    db = lx_usage_sqlite.create(&o);
    assert_int_equal(lx_usage_sqlite.connect(db, &t, err, sizeof err), LX_USAGE_WRITE_OK);
    lx_usage_sqlite.destroy(db);
    assert_int_equal(query_int(path, "PRAGMA user_version"), 4);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'usage_key'"), 0);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'usage_request'"), 1);
}

/* A ledger of the version before gateway ids: migrated at open, its rows named after this gateway. */
static void test_sqlite_migrates_v1(void **state)
{
    (void)state;
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/v1.db", dir);
    sqlite3 *s;
    assert_int_equal(sqlite3_open(path, &s), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(s,
                     "CREATE TABLE usage (id INTEGER PRIMARY KEY, time TEXT NOT NULL, request_id TEXT NOT NULL,"
                     " user TEXT NOT NULL, model TEXT NOT NULL, backend TEXT, priority TEXT, status INTEGER NOT NULL,"
                     " error_code TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, queue_wait_ms REAL NOT NULL,"
                     " ttft_ms REAL, latency_ms REAL NOT NULL, stream INTEGER NOT NULL);"
                     "CREATE INDEX usage_time ON usage(time);"
                     "CREATE TABLE ledger_totals (id INTEGER PRIMARY KEY CHECK (id = 1), began TEXT NOT NULL,"
                     " requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
                     " errors INTEGER NOT NULL);"
                     "INSERT INTO ledger_totals VALUES (1, '2025-01-01T00:00:00.000Z', 2, 20, 10, 0);"
                     "INSERT INTO usage VALUES (1, '2025-01-01T10:00:00.000Z', 'old-1', 'bob', 'm', 'vllm', 'normal',"
                     " 200, NULL, 10, 5, 0, 1, 2, 0);"
                     "INSERT INTO usage VALUES (2, '2025-01-01T11:00:00.000Z', 'old-2', 'bob', 'm', 'vllm', 'normal',"
                     " 200, NULL, 10, 5, 0, 1, 2, 0);"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(s);
    /* `lexora usage` reads a version 1 file as it is (read-only: not migrated) */
    FILE *out = tmpfile();
    assert_int_equal(lx_usage_report_store(&(lx_usage_store_opts){.db_path = path},
                                           &(lx_usage_query){.by = LX_USAGE_BY_GATEWAY}, out, stderr),
                     0);
    assert_int_equal(query_int(path, "PRAGMA user_version"), 1);
    fclose(out);

    lx_usage_store_opts o = {.store = LX_USAGE_STORE_SQLITE, .db_path = path, .gateway_id = "old-gw"};
    void *db = lx_usage_sqlite.create(&o);
    lx_usage_totals t = {0};
    assert_int_equal(lx_usage_sqlite.connect(db, &t, err, sizeof err), LX_USAGE_WRITE_OK);
    assert_int_equal(t.requests, 2);
    assert_string_equal(t.began, "2025-01-01T00:00:00.000Z");
    lx_usage_row r = row(1, "new-1", 200, 1, 1);
    size_t written;
    assert_int_equal(lx_usage_sqlite.write(db, &r, 1, &t, &written, err, sizeof err), LX_USAGE_WRITE_OK);
    lx_usage_sqlite.destroy(db);
    assert_int_equal(query_int(path, "PRAGMA user_version"), 4);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE gateway_id = 'old-gw'"), 3);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE experiment = 'coder'"), 1); /* the new row */
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE row_key IS NULL"), 3);      /* none has one */
    assert_int_equal(query_int(path, "SELECT requests FROM ledger_totals"), 3);

    /* the report by gateway, and one gateway's rows */
    char buf[2048];
    out = tmpfile();
    assert_int_equal(lx_usage_report_store(&(lx_usage_store_opts){.db_path = path},
                                           &(lx_usage_query){.by = LX_USAGE_BY_GATEWAY}, out, stderr),
                     0);
    rewind(out);
    size_t n = fread(buf, 1, sizeof buf - 1, out);
    buf[n] = '\0';
    fclose(out);
    assert_non_null(strstr(buf, "gateway  requests"));
    assert_non_null(strstr(buf, "old-gw          3"));
    out = tmpfile();
    assert_int_equal(lx_usage_report_store(&(lx_usage_store_opts){.db_path = path},
                                           &(lx_usage_query){.gateway = "other", .by = LX_USAGE_BY_USER}, out, stderr),
                     0);
    rewind(out);
    n = fread(buf, 1, sizeof buf - 1, out);
    buf[n] = '\0';
    fclose(out);
    assert_non_null(strstr(buf, "total         0"));

    /* a ledger newer than this Lexora is refused, not rewritten */
    assert_int_equal(sqlite3_open(path, &s), SQLITE_OK);
    sqlite3_exec(s, "PRAGMA user_version = 9", NULL, NULL, NULL);
    sqlite3_close(s);
    db = lx_usage_sqlite.create(&o);
    assert_int_equal(lx_usage_sqlite.connect(db, &t, err, sizeof err), LX_USAGE_WRITE_DROP);
    assert_non_null(strstr(err, "schema version 9 is newer"));
    lx_usage_sqlite.destroy(db);
}

/* ---------- PostgreSQL: against a real server, when LEXORA_TEST_PG_URL names one ---------- */

/* tests/integration/ledger_postgres.test.mjs runs this binary with its own server's URL. */
static void test_pg_written_once(void **state)
{
    (void)state;
    const char *url = getenv("LEXORA_TEST_PG_URL");
    if (url == NULL || *url == '\0') skip();
    char gw[32], err[256];
    snprintf(gw, sizeof gw, "unit-%d", (int)getpid());
    lx_usage_store_opts o = {.store = LX_USAGE_STORE_POSTGRES, .postgres_url = url, .gateway_id = gw};
    void *db = lx_usage_postgres.create(&o);
    lx_usage_totals t = {0};
    if (lx_usage_postgres.connect(db, &t, err, sizeof err) != LX_USAGE_WRITE_OK) fail_msg("%s", err);
    assert_int_equal(t.requests, 0);
    assert_true(strlen(t.began) == 24 && t.began[23] == 'Z');
    /* more than one INSERT's worth: 2,500 rows, the third repeating a request id */
    size_t n = 2500, written = 0;
    lx_usage_row *rows = calloc(n, sizeof *rows);
    for (size_t i = 0; i < n; i++)
        rows[i] = row(i, i == 0 || i == 2 ? "pg-0" : "pg-x", i % 10 == 0 ? 404 : 200, i % 10 == 0 ? -1 : 3,
                      i % 10 == 0 ? -1 : 2);
    int rc = lx_usage_postgres.write(db, rows, n, &t, &written, err, sizeof err);
    if (rc != LX_USAGE_WRITE_OK) fail_msg("%s", err);
    assert_int_equal(written, n);
    assert_int_equal(t.requests, n);
    assert_int_equal(t.errors, n / 10);
    assert_int_equal(t.prompt_tokens, 3 * (n - n / 10));
    /* the same batch again, as after a commit whose answer was lost: nothing new, totals unchanged */
    assert_int_equal(lx_usage_postgres.write(db, rows, n, &t, &written, err, sizeof err), LX_USAGE_WRITE_OK);
    assert_int_equal(written, 0);
    assert_int_equal(t.requests, n);
    /* half old, half new */
    for (size_t i = 0; i < n; i++)
        rows[i].seq += n / 2;
    assert_int_equal(lx_usage_postgres.write(db, rows, n, &t, &written, err, sizeof err), LX_USAGE_WRITE_OK);
    assert_int_equal(written, n / 2);
    assert_int_equal(t.requests, n + n / 2);
    lx_usage_postgres.destroy(db);
    free(rows);

    /* a second connection reads the totals back; lexora usage --gateway counts these rows */
    db = lx_usage_postgres.create(&o);
    assert_int_equal(lx_usage_postgres.connect(db, &t, err, sizeof err), LX_USAGE_WRITE_OK);
    assert_int_equal(t.requests, n + n / 2);
    lx_usage_postgres.destroy(db);
    char buf[2048], want[48];
    FILE *out = tmpfile();
    assert_int_equal(
        lx_usage_report_store(&o, &(lx_usage_query){.gateway = gw, .by = LX_USAGE_BY_GATEWAY}, out, stderr), 0);
    rewind(out);
    size_t k = fread(buf, 1, sizeof buf - 1, out);
    buf[k] = '\0';
    fclose(out);
    snprintf(want, sizeof want, "\n%s ", gw);
    const char *line = strstr(buf, want);
    unsigned long got = 0;
    if (line == NULL || sscanf(line + strlen(want), "%lu", &got) != 1 || got != n + n / 2)
        fail_msg("no line \"%s %zu\" in:\n%s", gw, n + n / 2, buf);

    /* a server that is not there: a failure to retry, not to drop */
    lx_usage_store_opts dead = {.store = LX_USAGE_STORE_POSTGRES,
                                .postgres_url = "postgresql://lexora@127.0.0.1:1/lexora?connect_timeout=2",
                                .gateway_id = gw};
    db = lx_usage_postgres.create(&dead);
    assert_int_equal(lx_usage_postgres.connect(db, &t, err, sizeof err), LX_USAGE_WRITE_RETRY);
    assert_non_null(strstr(err, "cannot connect"));
    assert_null(strchr(err, '\n'));
    lx_usage_postgres.destroy(db);
}

static lx_feedback_verdict give(const lx_usage_backend *be, void *db, const char *id, const char *user, bool admin,
                                double score, lx_usage_feedback_result *res)
{
    lx_usage_feedback f = {.admin = admin, .score = score};
    snprintf(f.request_id, sizeof f.request_id, "%s", id);
    snprintf(f.user, sizeof f.user, "%s", user);
    snprintf(f.comment, sizeof f.comment, "%s", score > 0 ? "good" : "");
    char err[256];
    *res = (lx_usage_feedback_result){0};
    if (be->feedback(db, &f, res, err, sizeof err) != LX_USAGE_WRITE_OK) fail_msg("%s", err);
    return res->verdict;
}

static void count_row(void *ud, const lx_exp_row *r)
{
    int *n = ud;
    assert_string_equal(r->variant, "qwen-coder");
    n[0]++;
    n[1] += r->has_feedback;
}

/* Feedback's rules against a store (alice's requests; ids made unique with prefix): stored once with the
 * request's experiment and variant, refused a second time, someone else's request, an unknown id; the admin
 * may give it for anyone's; the experiment's rows come back with their feedback. */
static void feedback_rules(const lx_usage_backend *be, const lx_usage_store_opts *o, const char *prefix)
{
    char err[256], id1[64], id2[64], id3[64], exp[64];
    snprintf(id1, sizeof id1, "%s-fb-1", prefix);
    snprintf(id2, sizeof id2, "%s-fb-2", prefix);
    snprintf(id3, sizeof id3, "%s-fb-3", prefix);
    snprintf(exp, sizeof exp, "coder");
    void *db = be->create(o);
    lx_usage_row rows[3] = {row(101, id1, 200, 3, 4), row(102, id2, 200, 3, 4), row(103, id3, 404, -1, -1)};
    lx_usage_totals t = {0};
    size_t written;
    if (be->write(db, rows, 3, &t, &written, err, sizeof err) != LX_USAGE_WRITE_OK) fail_msg("%s", err);
    lx_usage_feedback_result res;
    assert_int_equal(give(be, db, id1, "alice", false, 0.5, &res), LX_FEEDBACK_STORED);
    assert_string_equal(res.experiment, "coder");
    assert_string_equal(res.variant, "qwen-coder");
    assert_int_equal(give(be, db, id1, "alice", false, 1, &res), LX_FEEDBACK_TWICE);
    assert_int_equal(give(be, db, id2, "mallory", false, -1, &res), LX_FEEDBACK_NOT_YOURS);
    assert_int_equal(give(be, db, "no-such-request", "alice", false, 1, &res), LX_FEEDBACK_UNKNOWN);
    assert_int_equal(give(be, db, id2, "admin", true, -1, &res), LX_FEEDBACK_STORED);
    assert_int_equal(give(be, db, id3, "alice", false, 0, &res), LX_FEEDBACK_STORED); /* not in an experiment */
    assert_string_equal(res.experiment, "");
    be->destroy(db);
    int n[2] = {0, 0};
    assert_int_equal(be->experiment_rows(o, exp, NULL, count_row, n, err, sizeof err), 0);
    assert_true(n[0] >= 2 && n[1] >= 2); /* PostgreSQL: earlier runs' rows are there too */
}

static void test_sqlite_feedback(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/feedback.db", dir);
    lx_usage_store_opts o = {.store = LX_USAGE_STORE_SQLITE, .db_path = path, .gateway_id = "gw-a"};
    feedback_rules(&lx_usage_sqlite, &o, "sq");
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM feedback"), 3);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM feedback WHERE comment = 'good' AND score = 0.5"), 1);
}

static void test_pg_feedback(void **state)
{
    (void)state;
    const char *url = getenv("LEXORA_TEST_PG_URL");
    if (url == NULL || *url == '\0') skip();
    char gw[32];
    snprintf(gw, sizeof gw, "unit-fb-%d", (int)getpid());
    lx_usage_store_opts o = {.store = LX_USAGE_STORE_POSTGRES, .postgres_url = url, .gateway_id = gw};
    feedback_rules(&lx_usage_postgres, &o, gw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_sql),          cmocka_unit_test(test_batch_params),
        cmocka_unit_test(test_url_check),          cmocka_unit_test(test_url_redacted),
        cmocka_unit_test(test_gateway_ids),        cmocka_unit_test(test_row_texts),
        cmocka_unit_test(test_sqlite_rows),        cmocka_unit_test(test_sqlite_locked),
        cmocka_unit_test(test_sqlite_migrates_v1), cmocka_unit_test(test_sqlite_migrates_v3),
        cmocka_unit_test(test_pg_written_once),    cmocka_unit_test(test_sqlite_feedback),
        cmocka_unit_test(test_pg_feedback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
