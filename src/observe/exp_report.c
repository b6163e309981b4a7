/* The experiment report's figures and verdicts. See exp_report.h. */
#include "observe/exp_report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "utils/common.h"

#define Z       1.959963984540054  /* the 97.5 % point of the normal distribution */
#define Z_POWER 0.8416212335729143 /* the 80 % point: 80 % power */

static void push(lx_samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = lx_xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = x;
}

static lx_exp_variant_data *variant(lx_exp_data *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->v[i].name, name) == 0) return &d->v[i];
    d->v = lx_xrealloc(d->v, (d->n + 1) * sizeof *d->v);
    d->v[d->n] = (lx_exp_variant_data){.name = lx_xstrdup(name)};
    return &d->v[d->n++];
}

void lx_exp_data_variant(lx_exp_data *d, const char *name) { (void)variant(d, name); }

void lx_exp_data_add(lx_exp_data *d, const lx_exp_row *r)
{
    lx_exp_variant_data *v = variant(d, r->variant);
    v->requests++;
    if (r->error) v->errors++;
    if (!r->error && r->latency_ms >= 0) push(&v->latency, r->latency_ms);
    if (!r->error && r->ttft_ms >= 0) push(&v->ttft, r->ttft_ms);
    if (r->tokens >= 0) push(&v->tokens, (double)r->tokens);
    if (r->has_feedback) push(&v->feedback, r->score);
}

void lx_exp_data_free(lx_exp_data *d)
{
    for (size_t i = 0; i < d->n; i++) {
        lx_exp_variant_data *v = &d->v[i];
        free(v->name);
        free(v->latency.v);
        free(v->ttft.v);
        free(v->tokens.v);
        free(v->feedback.v);
    }
    free(d->v);
    *d = (lx_exp_data){0};
}

/* ---------- intervals ---------- */

void lx_wilson(uint64_t k, uint64_t n, double *lo, double *hi)
{
    if (n == 0) {
        *lo = 0, *hi = 1;
        return;
    }
    double p = (double)k / (double)n, nn = (double)n, z2 = Z * Z;
    double centre = (p + z2 / (2 * nn)) / (1 + z2 / nn);
    double half = Z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / (1 + z2 / nn);
    *lo = centre - half < 0 ? 0 : centre - half;
    *hi = centre + half > 1 ? 1 : centre + half;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double at_rank(const double *sorted, size_t n, double rank) /* 1-based, clamped */
{
    long r = (long)rank;
    if (r < 1) r = 1;
    if ((size_t)r > n) r = (long)n;
    return sorted[r - 1];
}

/* The q-quantile of sorted (nearest rank) and its 95 % order-statistic interval. */
static void quantile(const double *sorted, size_t n, double q, double *x, double *lo, double *hi)
{
    double nq = (double)n * q, spread = Z * sqrt(nq * (1 - q));
    *x = at_rank(sorted, n, ceil(nq));
    *lo = at_rank(sorted, n, ceil(nq - spread));
    *hi = at_rank(sorted, n, ceil(nq + spread));
}

static double mean_of(const lx_samples *s)
{
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    return s->n ? sum / (double)s->n : 0;
}

static double var_of(const lx_samples *s) /* the sample variance */
{
    if (s->n < 2) return 0;
    double m = mean_of(s), ss = 0;
    for (size_t i = 0; i < s->n; i++)
        ss += (s->v[i] - m) * (s->v[i] - m);
    return ss / (double)(s->n - 1);
}

/* ---------- the report ---------- */

static void line_quantiles(lx_buf *out, const char *what, lx_samples *s)
{
    if (s->n == 0) {
        lx_buf_printf(out, "  %-14s -\n", what);
        return;
    }
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    double x, lo, hi, y, ylo, yhi;
    quantile(s->v, s->n, 0.5, &x, &lo, &hi);
    quantile(s->v, s->n, 0.95, &y, &ylo, &yhi);
    lx_buf_printf(out, "  %-14s p50 %.1f ms [%.1f, %.1f]   p95 %.1f ms [%.1f, %.1f]\n", what, x, lo, hi, y, ylo, yhi);
}

static void line_mean(lx_buf *out, const char *what, const lx_samples *s, int decimals)
{
    if (s->n == 0) {
        lx_buf_printf(out, "  %-14s -\n", what);
        return;
    }
    double m = mean_of(s), half = Z * sqrt(var_of(s) / (double)s->n);
    lx_buf_printf(out, "  %-14s %.*f ± %.*f (n %zu)\n", what, decimals, m, decimals, half, s->n);
}

static void report_variant(lx_buf *out, lx_exp_variant_data *v)
{
    double lo, hi;
    lx_wilson(v->errors, v->requests, &lo, &hi);
    lx_buf_printf(out, "%s\n  %-14s %llu\n", v->name, "requests", (unsigned long long)v->requests);
    lx_buf_printf(out, "  %-14s %llu, rate %.2f %% [%.2f, %.2f]\n", "errors", (unsigned long long)v->errors,
                  v->requests ? 100.0 * (double)v->errors / (double)v->requests : 0.0, 100 * lo, 100 * hi);
    line_quantiles(out, "latency", &v->latency);
    line_quantiles(out, "ttft", &v->ttft);
    line_mean(out, "tokens/request", &v->tokens, 1);
    line_mean(out, "feedback", &v->feedback, 3);
}

/* A variant's value on the metric, its per-request variance and the requests it rests on. */
typedef struct {
    double m, var;
    size_t n;
} metric_value;

static metric_value value_on(lx_exp_metric metric, const lx_exp_variant_data *v)
{
    switch (metric) {
    case LX_METRIC_ERRORS: {
        double p = v->requests ? (double)v->errors / (double)v->requests : 0;
        return (metric_value){p, p * (1 - p), v->requests};
    }
    case LX_METRIC_LATENCY: return (metric_value){mean_of(&v->latency), var_of(&v->latency), v->latency.n};
    case LX_METRIC_FEEDBACK: return (metric_value){mean_of(&v->feedback), var_of(&v->feedback), v->feedback.n};
    }
    return (metric_value){0};
}

static void verdict(lx_buf *out, lx_exp_metric metric, const lx_exp_variant_data *a, const lx_exp_variant_data *b)
{
    metric_value va = value_on(metric, a), vb = value_on(metric, b);
    double scale = metric == LX_METRIC_ERRORS ? 100 : 1; /* error rates in percentage points */
    const char *unit = metric == LX_METRIC_ERRORS ? " points" : metric == LX_METRIC_LATENCY ? " ms" : "";
    if (va.n < 2 || vb.n < 2) {
        lx_buf_printf(out, "%s vs %s: not enough data yet (%zu and %zu requests with a %s value)\n", b->name, a->name,
                      vb.n, va.n, lx_exp_metric_names[metric]);
        return;
    }
    double d = vb.m - va.m, half = Z * sqrt(va.var / (double)va.n + vb.var / (double)vb.n);
    if (fabs(d) > half && half > 0) {
        bool higher_better = metric == LX_METRIC_FEEDBACK;
        bool better = higher_better ? d > 0 : d < 0;
        lx_buf_printf(out, "%s is %s than %s on %s by %.*f ± %.*f%s\n", b->name, better ? "better" : "worse", a->name,
                      lx_exp_metric_names[metric], metric == LX_METRIC_FEEDBACK ? 3 : 2, fabs(d) * scale,
                      metric == LX_METRIC_FEEDBACK ? 3 : 2, half * scale, unit);
        return;
    }
    if (d == 0) {
        lx_buf_printf(out, "%s vs %s: no significant difference yet (no difference on %s observed)\n", b->name, a->name,
                      lx_exp_metric_names[metric]);
        return;
    }
    double need = (Z + Z_POWER) * (Z + Z_POWER) * (va.var + vb.var) / (d * d);
    size_t have = LX_MIN(va.n, vb.n);
    double more = ceil(need) > (double)have ? ceil(need) - (double)have : 1;
    lx_buf_printf(out,
                  "%s vs %s: no significant difference yet (%+.*f ± %.*f%s on %s): about %.0f more requests per "
                  "variant needed\n",
                  b->name, a->name, metric == LX_METRIC_FEEDBACK ? 3 : 2, d * scale,
                  metric == LX_METRIC_FEEDBACK ? 3 : 2, half * scale, unit, lx_exp_metric_names[metric], more);
}

void lx_exp_report(const lx_exp_data *d, lx_buf *out)
{
    for (size_t i = 0; i < d->n; i++)
        report_variant(out, &d->v[i]);
    if (d->n < 2) {
        lx_buf_append_str(out, "\nfewer than two variants have requests: nothing to compare\n");
        return;
    }
    lx_buf_printf(out, "\non %s (95 %% intervals; the first variant is the baseline):\n",
                  lx_exp_metric_names[d->metric]);
    for (size_t i = 1; i < d->n; i++)
        verdict(out, d->metric, &d->v[0], &d->v[i]);
}
