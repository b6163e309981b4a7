/*
 * A/B experiments: assignment, per-variant counters and the adaptive shares. See experiment.h.
 * Invariants: an exp_state's shares add up to 1 (or are all 0 when every weight is 0, which the config
 * checks refuse); remembered users are adaptive experiments' only, at most LX_EXP_STICKY_MAX each.
 */
#include "routing/experiment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "observe/stats.h"
#include "utils/map.h"

typedef struct {
    char *name;
    double weight; /* the config's */
    double share;  /* in use, in [0, 1] */
    uint64_t requests, errors;
    uint64_t prompt_tokens, completion_tokens;
    lx_lhist latency, ttft;
    double lat_sumsq;
    uint64_t fb_n;
    double fb_sum;
} exp_variant;

typedef struct {
    lx_map_node node;
    char *user;
    size_t variant;
} exp_user;

typedef struct {
    char *name, *model;
    lx_exp_mode mode;
    lx_exp_metric metric;
    lx_sticky sticky;
    double min_share; /* min_weight / 100 */
    exp_variant *v;
    size_t n;
    uint64_t adapted_ns;
    lx_map users; /* adaptive: exp_user, the variant each user was first given */
} exp_state;

struct lx_experiments {
    exp_state *e;
    size_t n;
    uint64_t rng; /* xorshift64* state for the posterior draws */
};

/* ---------- assignment ---------- */

double lx_exp_unit(const char *experiment, const char *key, size_t key_len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    lx_buf in;
    lx_buf_init(&in, 0);
    lx_buf_append(&in, experiment, strlen(experiment) + 1); /* the NUL keeps "ab"+"c" apart from "a"+"bc" */
    lx_buf_append(&in, key, key_len);
    EVP_Digest(in.p, in.len, md, &md_len, EVP_sha256(), NULL);
    lx_buf_free(&in);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | md[i];
    return (double)(x >> 11) * 0x1.0p-53; /* the top 53 bits: exactly representable, < 1 */
}

size_t lx_exp_slice(const double *shares, size_t n, double u)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += shares[i];
    double edge = 0;
    size_t last = 0;
    for (size_t i = 0; i < n; i++) {
        if (shares[i] <= 0) continue;
        last = i;
        edge += shares[i] / sum;
        if (u < edge) return i;
    }
    return last; /* u within rounding of 1 */
}

/* ---------- state ---------- */

static void variant_shares(exp_state *s)
{
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i].weight;
    for (size_t i = 0; i < s->n; i++)
        s->v[i].share = sum > 0 ? s->v[i].weight / sum : 0;
}

static void users_clear(exp_state *s)
{
    lx_map_iter it = lx_map_iter_of(&s->users);
    lx_map_node *n;
    while ((n = lx_map_next(&it))) {
        exp_user *u = LX_MAP_ENTRY(n, exp_user, node);
        lx_map_remove(&s->users, n);
        free(u->user);
        free(u);
    }
    lx_map_free(&s->users);
}

static void state_free(exp_state *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].name);
    free(s->v);
    users_clear(s);
    free(s->name);
    free(s->model);
}

lx_experiments *lx_experiments_new(void)
{
    lx_experiments *x = lx_xcalloc(1, sizeof *x);
    x->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)lx_now_ns();
    return x;
}

void lx_experiments_free(lx_experiments *x)
{
    if (x == NULL) return;
    for (size_t i = 0; i < x->n; i++)
        state_free(&x->e[i]);
    free(x->e);
    free(x);
}

static exp_state *find_state(lx_experiments *x, const char *name)
{
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->e[i].name, name) == 0) return &x->e[i];
    return NULL;
}

static exp_variant *find_variant(exp_state *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].name && strcmp(s->v[i].name, name) == 0) return &s->v[i];
    return NULL;
}

/* The state for e: a variant that stays keeps its counters (and, adaptive, its share until the next update). */
static void state_from(exp_state *s, const lx_experiment *e, exp_state *old)
{
    *s = (exp_state){.name = lx_xstrdup(e->name),
                     .model = lx_xstrdup(e->model),
                     .mode = e->mode,
                     .metric = e->metric,
                     .sticky = e->sticky,
                     .min_share = e->min_weight / 100.0};
    lx_map_init(&s->users);
    s->v = lx_xcalloc(e->n_variants, sizeof *s->v);
    s->n = e->n_variants;
    for (size_t i = 0; i < e->n_variants; i++) {
        exp_variant *was = old ? find_variant(old, e->variants[i].name) : NULL;
        if (was) {
            s->v[i] = *was;
            was->name = NULL;
        } else {
            s->v[i].name = lx_xstrdup(e->variants[i].name);
        }
        s->v[i].weight = e->variants[i].weight;
    }
    variant_shares(s);
}

/* The same variants in the same order (remembered users hold indexes). */
static bool same_variants(const exp_state *s, const lx_experiment *e)
{
    if (s->n != e->n_variants) return false;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].name == NULL || strcmp(s->v[i].name, e->variants[i].name) != 0) return false;
    return true;
}

void lx_experiments_apply(lx_experiments *x, const lx_config *c)
{
    exp_state *next = lx_xcalloc(c->n_experiments ? c->n_experiments : 1, sizeof *next);
    size_t n = 0;
    for (size_t i = 0; i < c->n_experiments; i++) {
        const lx_experiment *e = &c->experiments[i];
        if (!e->enabled || e->model == NULL || e->n_variants < 2) continue;
        exp_state *old = find_state(x, e->name);
        bool keep_users = old && old->mode == LX_EXP_ADAPTIVE && e->mode == LX_EXP_ADAPTIVE && same_variants(old, e);
        state_from(&next[n], e, old);
        if (keep_users) {
            next[n].users = old->users; /* users stay where they were; the shares are recomputed at the next request */
            lx_map_init(&old->users);
        }
        n++;
    }
    for (size_t i = 0; i < x->n; i++)
        state_free(&x->e[i]);
    free(x->e);
    x->e = next;
    x->n = n;
}

/* ---------- adaptive shares ---------- */

static double rand_unit(lx_experiments *x)
{
    x->rng ^= x->rng >> 12;
    x->rng ^= x->rng << 25;
    x->rng ^= x->rng >> 27;
    return (double)((x->rng * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

static double rand_normal(lx_experiments *x)
{
    double u = rand_unit(x), v = rand_unit(x);
    return sqrt(-2.0 * log(u > 0 ? u : 1e-300)) * cos(2.0 * M_PI * v);
}

/* Gamma(a, 1) by Marsaglia and Tsang (a >= 1; a < 1 boosted by U^(1/a)). */
static double rand_gamma(lx_experiments *x, double a)
{
    if (a < 1) return rand_gamma(x, a + 1) * pow(rand_unit(x) + 1e-300, 1.0 / a);
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double z = rand_normal(x), v = 1 + c * z;
        if (v <= 0) continue;
        v = v * v * v;
        double u = rand_unit(x);
        if (log(u + 1e-300) < 0.5 * z * z + d - d * v + d * log(v)) return d * v;
    }
}

static double rand_beta(lx_experiments *x, double a, double b)
{
    double g = rand_gamma(x, a);
    return g / (g + rand_gamma(x, b));
}

/* One draw from variant v's posterior, as "higher is better". */
static double draw(lx_experiments *x, const exp_state *s, const exp_variant *v)
{
    switch (s->metric) {
    case LX_METRIC_ERRORS: return rand_beta(x, 1.0 + (double)(v->requests - v->errors), 1.0 + (double)v->errors);
    case LX_METRIC_FEEDBACK: {
        double good = (v->fb_sum + (double)v->fb_n) / 2.0; /* Σ (s + 1) / 2 */
        return rand_beta(x, 1.0 + good, 1.0 + (double)v->fb_n - good);
    }
    case LX_METRIC_LATENCY: {
        double n = (double)v->latency.count;
        if (n < 2) return -1e12 * rand_unit(x); /* no evidence yet: anything may be best */
        double mean = v->latency.sum / n, var = (v->lat_sumsq - n * mean * mean) / (n - 1);
        return -(mean + sqrt((var > 0 ? var : 0) / n) * rand_normal(x));
    }
    }
    return 0;
}

/* Each share: the probability that the variant is the best, floored at min_share. */
static void adapt(lx_experiments *x, exp_state *s)
{
    double wins[64] = {0};
    size_t n = LX_MIN(s->n, LX_ARRAY_LEN(wins));
    for (int d = 0; d < LX_EXP_DRAWS; d++) {
        size_t best = 0;
        double top = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            double y = draw(x, s, &s->v[i]);
            if (y > top) top = y, best = i;
        }
        wins[best] += 1;
    }
    double free_share = 1.0 - s->min_share * (double)n;
    for (size_t i = 0; i < n; i++)
        s->v[i].share = s->min_share + free_share * wins[i] / LX_EXP_DRAWS;
}

/* ---------- taking part ---------- */

static exp_state *state_for(lx_experiments *x, lx_slice model)
{
    for (size_t i = 0; i < x->n; i++)
        if (lx_slice_eq(model, x->e[i].model)) return &x->e[i];
    return NULL;
}

static size_t by_hash(const exp_state *s, const char *key)
{
    double shares[64];
    size_t n = LX_MIN(s->n, LX_ARRAY_LEN(shares));
    for (size_t i = 0; i < n; i++)
        shares[i] = s->v[i].share;
    return lx_exp_slice(shares, n, lx_exp_unit(s->name, key, strlen(key)));
}

/* Adaptive, sticky by user: the variant the user was first given, while its share is above 0. */
static size_t remembered(exp_state *s, const char *user)
{
    lx_map_node *node = lx_map_find(&s->users, user, strlen(user));
    if (node) {
        exp_user *u = LX_MAP_ENTRY(node, exp_user, node);
        if (s->v[u->variant].share > 0) return u->variant;
        u->variant = by_hash(s, user);
        return u->variant;
    }
    size_t v = by_hash(s, user);
    if (lx_map_count(&s->users) < LX_EXP_STICKY_MAX) {
        exp_user *u = lx_xcalloc(1, sizeof *u);
        u->user = lx_xstrdup(user);
        u->variant = v;
        lx_map_add(&s->users, &u->node, u->user, strlen(u->user));
    }
    return v;
}

lx_exp_verdict lx_experiments_assign(lx_experiments *x, lx_slice model, const char *user, const char *request_id,
                                     lx_slice forced, lx_exp_choice *out)
{
    exp_state *s = x ? state_for(x, model) : NULL;
    if (s == NULL) return LX_EXP_OUT;
    out->experiment = s->name;
    if (forced.len) {
        for (size_t i = 0; i < s->n; i++)
            if (lx_slice_eq(forced, s->v[i].name)) {
                out->variant = s->v[i].name;
                return LX_EXP_IN;
            }
        return LX_EXP_BAD_VARIANT;
    }
    uint64_t now = lx_now_ns();
    if (s->mode == LX_EXP_ADAPTIVE && (s->adapted_ns == 0 || now - s->adapted_ns >= (uint64_t)(LX_EXP_ADAPT_S * 1e9))) {
        adapt(x, s);
        s->adapted_ns = now;
    }
    size_t v;
    if (s->sticky == LX_STICKY_REQUEST)
        v = by_hash(s, request_id);
    else if (s->mode == LX_EXP_ADAPTIVE)
        v = remembered(s, user);
    else
        v = by_hash(s, user);
    out->variant = s->v[v].name;
    return LX_EXP_IN;
}

/* ---------- what variants did ---------- */

static exp_variant *lookup(lx_experiments *x, const char *experiment, const char *variant)
{
    exp_state *s = x && experiment && variant ? find_state(x, experiment) : NULL;
    return s ? find_variant(s, variant) : NULL;
}

void lx_experiments_record(lx_experiments *x, const lx_access_rec *rec)
{
    exp_variant *v = lookup(x, rec->experiment, rec->variant);
    if (v == NULL) return;
    v->requests++;
    if (rec->status >= 400 || rec->error_code) v->errors++;
    if (rec->prompt_tokens > 0) v->prompt_tokens += (uint64_t)rec->prompt_tokens;
    if (rec->completion_tokens > 0) v->completion_tokens += (uint64_t)rec->completion_tokens;
    if (rec->status >= 400) return; /* latency of a success only: a fast refusal is not a fast answer */
    lx_lhist_add(&v->latency, rec->latency_ms);
    v->lat_sumsq += rec->latency_ms * rec->latency_ms;
    if (rec->stream && rec->ttft_ms >= 0) lx_lhist_add(&v->ttft, rec->ttft_ms);
}

void lx_experiments_feedback(lx_experiments *x, const char *experiment, const char *variant, double score)
{
    exp_variant *v = lookup(x, experiment, variant);
    if (v == NULL) return;
    v->fb_n++;
    v->fb_sum += score;
}

/* ---------- rendering ---------- */

static void json_ms(lx_buf *out, const char *key, const lx_lhist *h, double q)
{
    double v = lx_lhist_quantile(h, q);
    if (v < 0)
        lx_buf_printf(out, ",\"%s\":null", key);
    else
        lx_buf_printf(out, ",\"%s\":%.3f", key, v);
}

static void json_variant(lx_buf *out, const exp_variant *v)
{
    lx_buf_append_str(out, "\"");
    lx_buf_json_escape(out, v->name, strlen(v->name));
    lx_buf_printf(out, "\":{\"requests\":%llu,\"errors\":%llu,\"error_rate\":%.4f", (unsigned long long)v->requests,
                  (unsigned long long)v->errors, v->requests ? (double)v->errors / (double)v->requests : 0.0);
    json_ms(out, "latency_p50_ms", &v->latency, 0.5);
    json_ms(out, "latency_p95_ms", &v->latency, 0.95);
    json_ms(out, "ttft_p50_ms", &v->ttft, 0.5);
    json_ms(out, "ttft_p95_ms", &v->ttft, 0.95);
    lx_buf_printf(out, ",\"prompt_tokens\":%llu,\"completion_tokens\":%llu,\"feedback_count\":%llu",
                  (unsigned long long)v->prompt_tokens, (unsigned long long)v->completion_tokens,
                  (unsigned long long)v->fb_n);
    if (v->fb_n)
        lx_buf_printf(out, ",\"feedback_mean\":%.4f", v->fb_sum / (double)v->fb_n);
    else
        lx_buf_append_str(out, ",\"feedback_mean\":null");
    lx_buf_printf(out, ",\"weight\":%.2f}", v->share * 100.0);
}

void lx_experiments_render_json(lx_experiments *x, lx_buf *out)
{
    for (size_t i = 0; x && i < x->n; i++) {
        const exp_state *s = &x->e[i];
        lx_buf_append_str(out, i ? ",\"" : "\"");
        lx_buf_json_escape(out, s->name, strlen(s->name));
        lx_buf_append_str(out, "\":{\"model\":\"");
        lx_buf_json_escape(out, s->model, strlen(s->model));
        lx_buf_printf(out, "\",\"mode\":\"%s\",\"metric\":\"%s\",\"variants\":{", lx_exp_mode_names[s->mode],
                      lx_exp_metric_names[s->metric]);
        for (size_t k = 0; k < s->n; k++) {
            if (k) lx_buf_append_str(out, ",");
            json_variant(out, &s->v[k]);
        }
        lx_buf_append_str(out, "}}");
    }
}

typedef struct {
    const char *name, *type, *help;
    double (*value)(const exp_variant *v);
} exp_family;

static double val_requests(const exp_variant *v) { return (double)v->requests; }
static double val_errors(const exp_variant *v) { return (double)v->errors; }
static double val_tokens(const exp_variant *v) { return (double)(v->prompt_tokens + v->completion_tokens); }
static double val_fb_n(const exp_variant *v) { return (double)v->fb_n; }
static double val_fb_sum(const exp_variant *v) { return v->fb_sum; }
static double val_lat_sum(const exp_variant *v) { return v->latency.sum / 1000.0; }
static double val_lat_n(const exp_variant *v) { return (double)v->latency.count; }
static double val_weight(const exp_variant *v) { return v->share * 100.0; }

static const exp_family families[] = {
    {"lexora_experiment_requests_total", "counter", "Finished requests of an experiment's variant.", val_requests},
    {"lexora_experiment_errors_total", "counter", "Requests of a variant that ended in an error.", val_errors},
    {"lexora_experiment_tokens_total", "counter", "Prompt and completion tokens of a variant's requests.", val_tokens},
    {"lexora_experiment_feedback_total", "counter", "Feedback scores given to a variant's requests.", val_fb_n},
    {"lexora_experiment_feedback_score_total", "counter", "The sum of the feedback scores (each in [-1, 1]).",
     val_fb_sum},
    {"lexora_experiment_latency_seconds_total", "counter", "Total latency of a variant's successful requests.",
     val_lat_sum},
    {"lexora_experiment_successes_total", "counter", "A variant's successful requests (those latency counts).",
     val_lat_n},
    {"lexora_experiment_weight_percent", "gauge", "The share of new assignments a variant gets now.", val_weight},
};

void lx_experiments_render_prometheus(lx_experiments *x, lx_buf *out)
{
    if (x == NULL || x->n == 0) return;
    for (size_t f = 0; f < LX_ARRAY_LEN(families); f++) {
        lx_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help, families[f].name,
                      families[f].type);
        for (size_t i = 0; i < x->n; i++)
            for (size_t k = 0; k < x->e[i].n; k++) {
                lx_buf_printf(out, "%s{experiment=\"", families[f].name);
                lx_stats_prom_label(out, x->e[i].name);
                lx_buf_append_str(out, "\",variant=\"");
                lx_stats_prom_label(out, x->e[i].v[k].name);
                lx_buf_printf(out, "\"} %.17g\n", families[f].value(&x->e[i].v[k]));
            }
    }
}
