/*
 * A/B experiments between models (config: experiments.NAME): which variant a request takes, and what each
 * variant did.
 *
 * Taking part: a request whose model (after automatic routing, before aliases) is an enabled experiment's
 * `model`. A request naming another model, even one of the variants, is not in the experiment.
 *
 * Assignment: u = the first 8 bytes of SHA-256(experiment name, NUL, key) as a number in [0, 1), where the
 * key is the user (sticky: user) or the request id (sticky: request); the variant is the one whose slice of
 * [0, 1) holds u, the slices laid out in config order, each as wide as its share of the weights. Changing a
 * weight therefore moves only the users whose u lies in the part of a slice that changed hands, and the
 * same user gets the same variant after a restart. A forced variant (x_variant, X-Lexora-Variant) wins.
 *
 * Adaptive mode (mode: adaptive) moves the shares toward the better variant on the experiment's metric by
 * Thompson sampling in its probability-matching form: each variant's share is the probability, under its
 * posterior, that it is the best (estimated with LX_EXP_DRAWS draws), floored at min_weight percent. The
 * posteriors: errors — Beta(1 + successes, 1 + errors) of the success rate; feedback — Beta(1 + Σ(s+1)/2,
 * 1 + Σ(1−s)/2) of the score mapped to [0, 1]; latency — Normal(mean, variance / n) of the mean latency,
 * lower is better. The shares are recomputed at most every LX_EXP_ADAPT_S seconds. A user keeps the
 * variant first given (remembered for up to LX_EXP_STICKY_MAX users per experiment) unless its share
 * falls to 0; past that bound new users are placed by the hash alone.
 *
 * Run-time state (counters, shares, remembered users) lives in lx_experiments, keyed by experiment and
 * variant names, so a reload keeps what it can: a variant that stays keeps its counters; a new weight of
 * a static experiment takes effect at once; an experiment that is removed is forgotten (its history stays
 * in the usage ledger). Loop thread only.
 */
#ifndef LX_EXPERIMENT_H
#define LX_EXPERIMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "utils/buf.h"
#include "utils/common.h"
#include "utils/log.h"

#define LX_EXP_DRAWS      4000
#define LX_EXP_ADAPT_S    5.0
#define LX_EXP_STICKY_MAX 100000

/* u in [0, 1) for an experiment and a key (SHA-256, see above). */
double lx_exp_unit(const char *experiment, const char *key, size_t key_len);
/* The index of the slice of [0, 1) that holds u, shares laid out in order (their sum need not be 1). */
size_t lx_exp_slice(const double *shares, size_t n, double u);

typedef struct lx_experiments lx_experiments;

lx_experiments *lx_experiments_new(void);
void lx_experiments_free(lx_experiments *x);
/* At start and at every reload: state for c's experiments, kept where names match. */
void lx_experiments_apply(lx_experiments *x, const lx_config *c);

typedef struct {
    const char *experiment; /* x's copy: valid until the next lx_experiments_apply */
    const char *variant;    /* the model or alias it takes */
} lx_exp_choice;

typedef enum { LX_EXP_OUT = 0, LX_EXP_IN, LX_EXP_BAD_VARIANT } lx_exp_verdict;

/* Does a request for model take part, and with which variant? forced (len 0: none) must name one of the
 * experiment's variants (else LX_EXP_BAD_VARIANT). */
lx_exp_verdict lx_experiments_assign(lx_experiments *x, lx_slice model, const char *user, const char *request_id,
                                     lx_slice forced, lx_exp_choice *out);

/* A finished request of a variant (rec->experiment, rec->variant set). */
void lx_experiments_record(lx_experiments *x, const lx_access_rec *rec);
/* A score in [-1, 1] given to a request of a variant. */
void lx_experiments_feedback(lx_experiments *x, const char *experiment, const char *variant, double score);

/* /stats: "NAME":{"model":...,"mode":...,"metric":...,"variants":{"V":{...}}}, ... (the members only). */
void lx_experiments_render_json(lx_experiments *x, lx_buf *out);
/* /metrics: the lexora_experiment_* families. */
void lx_experiments_render_prometheus(lx_experiments *x, lx_buf *out);

#endif
