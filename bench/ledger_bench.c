/*
 * ledger-bench: how many rows per second the usage ledger sustains (observe/usage_store.c), and what a row
 * costs in CPU, through the real path: lx_usage_store_add on this thread, as the event loop does. SQLite is
 * written on this thread too (in batches, as on the loop; its checkpointer thread copies the WAL into the
 * file); PostgreSQL by the writer thread. The producer adds rows as fast as it can but never lets the queue
 * overflow (it yields while more than half of LX_USAGE_QUEUE_ROWS wait), so no row is lost; a lost row fails
 * the run. The CPU is the whole process's (user + system, every thread) divided by the rows.
 *
 * Usage: ledger-bench STORE TARGET [seconds, default 5]
 *   STORE sqlite: TARGET is a file (created); STORE postgres: TARGET is a libpq URL (bench/ledger.sh
 *   starts a PostgreSQL on loopback and passes its URL). Prints one line:
 *   LEDGER store=... rows=... seconds=... rows_per_s=... cpu_us_per_row=... lost=...
 * Goal (PostgreSQL on this machine): >= 20,000 rows/s.
 * Build optimized for meaningful numbers: cmake -DCMAKE_BUILD_TYPE=Release (no LEXORA_SANITIZE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "observe/usage_store.h"
#include "utils/common.h"
#include "utils/log.h"

static void on_pump(uv_timer_t *t) { (void)t; }

/* Runs the loop for ms (0: one iteration), so the ledger's own handles (a full batch is written after an
 * iteration's I/O, the rest by a timer) run; they are unreferenced. */
static void pump(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_pump, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "sqlite") != 0 && strcmp(argv[1], "postgres") != 0)) {
        fprintf(stderr, "usage: ledger-bench sqlite|postgres FILE|URL [seconds]\n");
        return 2;
    }
    bool pg = strcmp(argv[1], "postgres") == 0;
    double secs = argc > 3 ? strtod(argv[3], NULL) : 5.0;
    if (!(secs > 0)) secs = 5.0;
    lx_log_configure(LX_LOG_WARN, false);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char gw[32];
    snprintf(gw, sizeof gw, "bench-%d", (int)getpid());
    lx_usage_store_opts o = {.store = pg ? LX_USAGE_STORE_POSTGRES : LX_USAGE_STORE_SQLITE,
                             .db_path = pg ? NULL : argv[2],
                             .postgres_url = pg ? argv[2] : NULL,
                             .gateway_id = gw};
    lx_usage_store *st = lx_usage_store_start(&loop, &o);
    if (st == NULL) return 1;
    lx_usage_snapshot s;
    for (int i = 0; i < 500; i++) { /* connected (PostgreSQL connects on the writer thread) */
        lx_usage_store_snapshot(st, &s);
        if (s.writable) break;
        usleep(10000);
    }
    if (!s.writable) {
        fprintf(stderr, "ledger-bench: the ledger %s cannot be written (see the log)\n", argv[2]);
        lx_usage_store_close(st);
        uv_run(&loop, UV_RUN_DEFAULT);
        return 1;
    }
    char id[32];
    lx_access_rec rec = {.request_id = id,
                         .user = "bench-user",
                         .model = "qwen3-32b",
                         .backend = "vllm",
                         .priority = "normal",
                         .status = 200,
                         .latency_ms = 120.5,
                         .queue_wait_ms = 0.2,
                         .ttft_ms = 30.25,
                         .prompt_tokens = 42,
                         .completion_tokens = 17};
    double cpu0 = cpu_s();
    uint64_t t0 = lx_now_ns(), end = t0 + (uint64_t)(secs * 1e9), added = 0;
    while (lx_now_ns() < end) {
        lx_usage_store_snapshot(st, &s);
        if (s.pending > LX_USAGE_QUEUE_ROWS / 2) {
            pump(&loop, 1);
            continue;
        }
        for (int i = 0; i < 256; i++) {
            snprintf(id, sizeof id, "req_%016llx", (unsigned long long)added++);
            lx_usage_store_add(st, &rec);
        }
        pump(&loop, 0); /* as the loop turns: a full SQLite batch is written */
    }
    for (;;) { /* until the last row is written */
        lx_usage_store_snapshot(st, &s);
        if (s.pending == 0 && s.rows_written + s.lost_write_failed + s.lost_queue_full >= added) break;
        pump(&loop, 1);
    }
    double took = (double)(lx_now_ns() - t0) / 1e9, cpu = cpu_s() - cpu0;
    uint64_t lost = s.lost_write_failed + s.lost_queue_full;
    printf("LEDGER store=%s rows=%llu seconds=%.2f rows_per_s=%.0f cpu_us_per_row=%.2f lost=%llu\n", argv[1],
           (unsigned long long)s.rows_written, took, (double)s.rows_written / took,
           s.rows_written ? cpu * 1e6 / (double)s.rows_written : 0.0, (unsigned long long)lost);
    lx_usage_store_close(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return lost ? 1 : 0;
}
