/*
 * The experiment report (`lexora experiments report NAME`): per variant, the figures /stats shows, each with
 * a 95 % confidence interval, and for the experiment's metric the difference of each variant from the first
 * with its interval and a plain verdict. Computed from the ledger's rows of the experiment (fed one by one
 * with lx_exp_data_add), so it covers every gateway writing to the ledger.
 *
 * The intervals (z = 1.96):
 *  - error rate: Wilson's score interval;
 *  - latency and TTFT p50 / p95 (successful requests): the nearest-rank quantile x(ceil(n q)), and the
 *    distribution-free interval [x(ceil(n q − z √(n q (1 − q)))), x(ceil(n q + z √(n q (1 − q))))] (ranks
 *    from 1, clamped to 1..n);
 *  - means (tokens per request, feedback score): mean ± z s / √n.
 * The difference on the metric (error rate, mean latency or mean feedback score) of a variant B from the
 * first variant A: d = m_B − m_A ± z √(v_A / n_A + v_B / n_B), v the per-request variance (p (1 − p) for
 * the error rate). Significant when the interval excludes 0: "B is worse on errors by 3.1 ± 1.2 points".
 * Otherwise the requests per variant that would make a difference of the size observed significant with
 * 80 % power, n = (z + 0.8416)² (v_A + v_B) / d², give "about N more requests per variant needed".
 * Pure functions; any thread.
 */
#ifndef LX_EXP_REPORT_H
#define LX_EXP_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "utils/buf.h"

typedef struct {
    double *v;
    size_t n, cap;
} lx_samples;

typedef struct {
    char *name;
    uint64_t requests, errors;
    lx_samples latency, ttft, tokens, feedback; /* latency of successes, TTFT of successful streams */
} lx_exp_variant_data;

typedef struct lx_exp_data {
    lx_exp_metric metric;
    lx_exp_variant_data *v; /* in the order variants were named (lx_exp_data_variant) or first seen */
    size_t n;
} lx_exp_data;

/* Names a variant ahead of the rows (the config's order: the first is the baseline). */
void lx_exp_data_variant(lx_exp_data *d, const char *name);

typedef struct {
    const char *variant;
    int status;
    bool error;        /* status >= 400 or an error code */
    double latency_ms; /* < 0: unknown */
    double ttft_ms;    /* < 0: none */
    long tokens;       /* prompt + completion, < 0: unknown */
    bool has_feedback;
    double score;
} lx_exp_row;

void lx_exp_data_add(lx_exp_data *d, const lx_exp_row *r);
void lx_exp_data_free(lx_exp_data *d);

/* Wilson's 95 % interval of k successes in n. */
void lx_wilson(uint64_t k, uint64_t n, double *lo, double *hi);

/* The report as text (the experiment's name and period are the caller's header). */
void lx_exp_report(const lx_exp_data *d, lx_buf *out);

#endif
