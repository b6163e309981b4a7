/*
 * The pure parts of the usage ledger's PostgreSQL store (usage_pg.c), apart so the unit tests reach
 * them: the batch statement, its parameters. Private to src/observe/usage_*.c and the tests.
 */
#ifndef LX_USAGE_PG_H
#define LX_USAGE_PG_H

#include <stddef.h>

#include "observe/usage_backend.h"
#include "utils/buf.h"

#define LX_USAGE_PG_COLS  18   /* parameters per row (the gateway id, $1, is shared) */
#define LX_USAGE_PG_CHUNK 1000 /* rows per INSERT: 1 + 18000 parameters, under PostgreSQL's 65535 */

/* The texts of one row's parameters that are not in the row itself. */
typedef struct {
    char key[40], time[32], status[12], prompt[24], completion[24];
    char queue_wait[32], ttft[32], latency[32];
} lx_usage_pg_text;

/* The statement that writes n rows (1 <= n <= LX_USAGE_PG_CHUNK) and this gateway's totals, into out:
 * returns one row: the rows new to the ledger, then the totals (began, requests, prompt_tokens,
 * completion_tokens, errors). */
void lx_usage_pg_batch_sql(lx_buf *out, size_t n);
/* Its 1 + n * LX_USAGE_PG_COLS parameter values (NULL for SQL NULL), pointing into rows, gateway_id and
 * text (n entries), which must outlive the values. */
void lx_usage_pg_batch_params(const lx_usage_row *rows, size_t n, const char *gateway_id, lx_usage_pg_text *text,
                              const char **values);

#endif
