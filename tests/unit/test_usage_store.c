/* Unit tests for observe/usage_store.c: rows and totals written (on the loop, for SQLite), many rows and the
 * checkpointer, a ledger that cannot be written, one locked by another writer, --since parsing, the path rule,
 * and the report table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "observe/usage_store.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/lexora-usage-test-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static lx_access_rec rec(const char *id, const char *user, const char *model, int status, long pt, long ct)
{
    return (lx_access_rec){.request_id = id,
                           .user = user,
                           .model = model,
                           .backend = status < 400 ? "vllm" : NULL,
                           .status = status,
                           .priority = "normal",
                           .latency_ms = 100,
                           .queue_wait_ms = 5,
                           .ttft_ms = status < 400 ? 20 : -1,
                           .prompt_tokens = pt,
                           .completion_tokens = ct,
                           .error_code = status >= 400 ? "model_not_found" : NULL};
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

static void on_pump(uv_timer_t *t) { (void)t; }

/* Runs the loop for 10 ms: the ledger's own timers are unreferenced, so a referenced one keeps it running. */
static void pump(uv_loop_t *loop)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_pump, 10, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void close_store(uv_loop_t *loop, lx_usage_store *st)
{
    lx_usage_store_close(st);
    uv_run(loop, UV_RUN_DEFAULT); /* the close callback frees it */
}

static void test_rows_and_totals(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/ledger.db", dir);
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_usage_store *st = lx_usage_store_open(&loop, path);
    assert_non_null(st);
    lx_access_rec a = rec("r1", "alice", "qwen3-32b", 200, 10, 5);
    lx_access_rec b = rec("r2", "bob", "qwen3-32b", 200, 7, 3);
    lx_access_rec c = rec("r3", "bob", "nope", 404, -1, -1);
    lx_usage_store_add(st, &a);
    lx_usage_store_add(st, &b);
    lx_usage_store_add(st, &c);
    /* written within a batch interval, without closing */
    lx_usage_snapshot s;
    for (int i = 0; i < 200; i++) {
        lx_usage_store_snapshot(st, &s);
        if (s.rows_written == 3) break;
        pump(&loop);
    }
    assert_int_equal(s.rows_written, 3);
    assert_true(s.writable);
    assert_int_equal(s.requests, 3);
    assert_int_equal(s.prompt_tokens, 17);
    assert_int_equal(s.completion_tokens, 8);
    assert_int_equal(s.errors, 1);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage"), 3);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage WHERE request_id = 'r3' AND status = 404 AND"
                                     " backend IS NULL AND prompt_tokens IS NULL AND ttft_ms IS NULL AND"
                                     " error_code = 'model_not_found'"),
                     1);
    assert_int_equal(query_int(path, "SELECT prompt_tokens FROM usage WHERE request_id = 'r1'"), 10);
    assert_int_equal(query_int(path, "SELECT requests FROM ledger_totals"), 3);
    char mode[16] = "";
    sqlite3 *db;
    sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    sqlite3_stmt *q;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL);
    if (sqlite3_step(q) == SQLITE_ROW) snprintf(mode, sizeof mode, "%s", sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(db);
    assert_string_equal(mode, "wal");
    /* rows still waiting at close are written */
    lx_access_rec d = rec("r4", "carol", "qwen3-32b", 200, 1, 1);
    lx_usage_store_add(st, &d);
    close_store(&loop, st);
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage"), 4);

    /* a restart reads the totals back and goes on from them */
    st = lx_usage_store_open(&loop, path);
    lx_usage_store_snapshot(st, &s);
    assert_int_equal(s.requests, 4);
    assert_int_equal(s.prompt_tokens, 18);
    assert_int_equal(s.rows_written, 0);
    lx_usage_store_add(st, &d);
    close_store(&loop, st);
    assert_int_equal(query_int(path, "SELECT requests FROM ledger_totals"), 5);
    /* deleting old rows does not change the totals since the ledger began */
    sqlite3_open(path, &db);
    sqlite3_exec(db, "DELETE FROM usage", NULL, NULL, NULL);
    sqlite3_close(db);
    st = lx_usage_store_open(&loop, path);
    lx_usage_store_snapshot(st, &s);
    assert_int_equal(s.requests, 5);
    close_store(&loop, st);
    uv_loop_close(&loop);
}

static void test_unwritable_ledger_counts_lost_rows(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/no-such-dir/ledger.db", dir); /* cannot be created */
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_usage_store *st = lx_usage_store_open(&loop, path);
    assert_non_null(st);
    lx_usage_snapshot s;
    lx_usage_store_snapshot(st, &s);
    assert_false(s.writable);
    lx_access_rec a = rec("r1", "alice", "m", 200, 1, 1);
    lx_usage_store_add(st, &a);
    lx_usage_store_add(st, &a);
    for (int i = 0; i < 200; i++) {
        lx_usage_store_snapshot(st, &s);
        if (s.lost_write_failed == 2) break;
        pump(&loop);
    }
    assert_int_equal(s.lost_write_failed, 2);
    assert_int_equal(s.rows_written, 0);
    /* the directory appears: the writer opens the ledger again and goes on */
    char d2[300];
    snprintf(d2, sizeof d2, "%s/no-such-dir", dir);
    assert_int_equal(mkdir(d2, 0755), 0);
    lx_usage_store_add(st, &a);
    for (int i = 0; i < 200; i++) {
        lx_usage_store_snapshot(st, &s);
        if (s.rows_written == 1) break;
        pump(&loop);
    }
    assert_int_equal(s.rows_written, 1);
    assert_true(s.writable);
    assert_int_equal(s.lost_write_failed, 2);
    close_store(&loop, st);
    uv_loop_close(&loop);
}

/* Waits (running the loop: the SQLite ledger is written on it) until cond holds, up to 5 s. */
#define WAIT_FOR(loop, cond)                                                                                           \
    for (int i_ = 0; i_ < 500 && !(cond); i_++)                                                                        \
        pump(loop);

static off_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/* Many rows: written on the loop in batches; the WAL they fill is copied into the file by the checkpointer
 * thread while the gateway runs (not only when it closes). */
static void test_many_rows_and_checkpoints(void **state)
{
    (void)state;
    char path[300], wal[320];
    snprintf(path, sizeof path, "%s/many.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_usage_store *st = lx_usage_store_open(&loop, path);
    assert_non_null(st);
    enum { N = 80000 }; /* ~20 MB of WAL: past the checkpointer's 16 MB */
    lx_usage_snapshot s;
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "req_%08d_padding_padding", i);
        lx_access_rec a = rec(id, "alice", "qwen3-32b", 200, 10, 5);
        lx_usage_store_add(st, &a);
        if (i % 1000 == 0) pump(&loop); /* as the loop runs between requests */
    }
    WAIT_FOR(&loop, (lx_usage_store_snapshot(st, &s), s.rows_written == N));
    assert_int_equal(s.rows_written, N);
    assert_int_equal(s.lost_queue_full + s.lost_write_failed, 0);
    WAIT_FOR(&loop, file_size(path) > 8 * 1024 * 1024);
    assert_true(file_size(path) > 8 * 1024 * 1024); /* checkpointed while open */
    assert_int_equal(query_int(path, "SELECT COUNT(*) FROM usage"), N);
    close_store(&loop, st);
    assert_int_equal(query_int(path, "SELECT requests FROM ledger_totals"), N);
    assert_true(file_size(wal) <= 0); /* the last connection's close checkpoints and removes the WAL */
    uv_loop_close(&loop);
}

/* Another writer holds the file: the rows wait (none lost) and are written once it lets go. */
static void test_locked_ledger_keeps_rows(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/locked.db", dir);
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_usage_store *st = lx_usage_store_open(&loop, path);
    assert_non_null(st);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    lx_access_rec a = rec("r1", "alice", "m", 200, 1, 1);
    for (int i = 0; i < 300; i++) /* past a batch: a write is tried after this loop iteration */
        lx_usage_store_add(st, &a);
    lx_usage_snapshot s;
    lx_usage_store_snapshot(st, &s);
    assert_true(s.writable); /* not tried yet */
    pump(&loop);
    lx_usage_store_snapshot(st, &s);
    assert_false(s.writable);
    assert_int_equal(s.pending, 300);
    assert_int_equal(s.rows_written + s.lost_write_failed + s.lost_queue_full, 0);
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    WAIT_FOR(&loop, (lx_usage_store_snapshot(st, &s), s.rows_written == 300));
    assert_int_equal(s.rows_written, 300);
    assert_true(s.writable);
    assert_int_equal(s.pending, 0);
    close_store(&loop, st);
    uv_loop_close(&loop);
}

static void test_parse_since(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"2025-01-31", "2025-01-31T00:00:00.000Z"},
        {"2025-01-31T12:34", "2025-01-31T12:34:00.000Z"},
        {"2025-01-31T12:34:56Z", "2025-01-31T12:34:56.000Z"},
        {"2025-01-31 12:34:56.5", "2025-01-31T12:34:56.500Z"},
        {"2025-01-31T09:00:00+09:00", "2025-01-31T00:00:00.000Z"},
        {"2025-01-01T01:00:00+0200", "2024-12-31T23:00:00.000Z"},
        {"2024-02-29", "2024-02-29T00:00:00.000Z"},
        {"2025-06-01T00:00:00.123456-01:30", "2025-06-01T01:30:00.123Z"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (lx_usage_parse_since(ok[i].in, out) != 0) fail_msg("refused %s", ok[i].in);
        assert_string_equal(out, ok[i].out);
    }
    static const char *const bad[] = {"",
                                      "2025",
                                      "2025-13-01",
                                      "2025-02-30",
                                      "2025-01-31x",
                                      "2025-01-31T25:00",
                                      "2025-01-31T12:00+9",
                                      "yesterday",
                                      "2025-1-31",
                                      "2025-01-31T12:00:00."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lx_usage_parse_since(bad[i], out) == 0) fail_msg("accepted %s", bad[i]);
}

static void test_db_path(void **state)
{
    (void)state;
    char *p = lx_usage_db_path("/etc/lexora/config.yaml", "lexora_usage.db");
    assert_string_equal(p, "/etc/lexora/lexora_usage.db");
    free(p);
    p = lx_usage_db_path("/etc/lexora/config.yaml", "/var/lib/lexora/usage.db");
    assert_string_equal(p, "/var/lib/lexora/usage.db");
    free(p);
    p = lx_usage_db_path("config.yaml", "data/usage.db");
    assert_string_equal(p, "data/usage.db");
    free(p);
    p = lx_usage_db_path("config/lexora_config.yaml", "lexora_usage.db");
    assert_string_equal(p, "config/lexora_usage.db");
    free(p);
}

static void test_report(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/report.db", dir);
    uv_loop_t loop;
    uv_loop_init(&loop);
    lx_usage_store *st = lx_usage_store_open(&loop, path);
    lx_access_rec a = rec("r1", "alice", "qwen3-32b", 200, 10, 5);
    lx_access_rec b = rec("r2", "bob", "llama", 200, 7, 3);
    lx_access_rec c = rec("r3", "bob", "nope", 404, -1, -1);
    lx_usage_store_add(st, &a);
    lx_usage_store_add(st, &a);
    lx_usage_store_add(st, &b);
    lx_usage_store_add(st, &c);
    close_store(&loop, st);
    uv_loop_close(&loop);

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(lx_usage_report(path, NULL, LX_USAGE_BY_USER, out, stderr), 0);
    fclose(out);
    assert_string_equal(buf, "user   requests  prompt_tokens  completion_tokens  errors  avg_latency_ms\n"
                             "alice         2             20                 10       0           100.0\n"
                             "bob           2              7                  3       1           100.0\n"
                             "total         4             27                 13       1           100.0\n");
    free(buf);

    out = open_memstream(&buf, &len);
    assert_int_equal(lx_usage_report(path, NULL, LX_USAGE_BY_MODEL, out, stderr), 0);
    fclose(out);
    assert_non_null(strstr(buf, "qwen3-32b         2             20                 10       0"));
    free(buf);

    /* since the far future: nothing but the header and a zero total */
    out = open_memstream(&buf, &len);
    assert_int_equal(lx_usage_report(path, "2999-01-01T00:00:00.000Z", LX_USAGE_BY_DAY, out, stderr), 0);
    fclose(out);
    assert_non_null(strstr(buf, "total         0"));
    free(buf);

    /* no ledger there */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.db", dir);
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(lx_usage_report(missing, NULL, LX_USAGE_BY_USER, devnull, devnull), 1);
    fclose(devnull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_and_totals),
        cmocka_unit_test(test_unwritable_ledger_counts_lost_rows),
        cmocka_unit_test(test_parse_since),
        cmocka_unit_test(test_db_path),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_many_rows_and_checkpoints),
        cmocka_unit_test(test_locked_ledger_keeps_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
