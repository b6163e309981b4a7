/*
 * The automatic-routing classifier: a linear model (multinomial logistic regression) over hashed character
 * n-grams of the prompt and the analyzer's explicit signals (routing/signals.h).
 *
 * Features. The text is read as code points, folded (ASCII and full-width letters to lower case, digits to
 * 0, runs of white space to one space); every position gives its character bigram and trigram, a
 * non-ASCII character its unigram, and every ASCII word of two letters or more the word itself. Each is
 * hashed (multiply-shift, by kind) into one of 2^bits buckets, so Japanese needs no tokenizer. The prompt
 * is read whole up to LX_CLS_WINDOW bytes; a longer one by its first LX_CLS_HEAD and last LX_CLS_TAIL
 * bytes. The context (system prompt, the turn before) counts LX_CLS_CONTEXT_WEIGHT as much.
 * Score of class c = bias[c] + scale * (Σ q[b][c] over the features) / sqrt(1 + their weight)
 *                    + Σ sig[s][c] * signal[s]; the confidence is the softmax of the scores.
 *
 * The model file (what `lexora route --train` writes; little-endian):
 *   "LXRTMDL1", u32 classes (1..LX_CLS_MAX_CLASSES), u32 bits (8..20), u32 signals (= LX_SIG_COUNT),
 *   f32 scale, per class u8 length + its name ([a-z0-9_-], 1..31 bytes), f32 bias[classes],
 *   f32 sig[signals][classes], i16 q[2^bits][classes], u64 FNV-1a of every byte before it.
 * The shipped model is built into the binary (lx_cls_builtin; data/routing/model.lxrm at build time).
 * A model is read-only once made: any thread may classify with it.
 */
#ifndef LX_CLASSIFIER_H
#define LX_CLASSIFIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "routing/signals.h"
#include "utils/buf.h"

#define LX_CLS_MAX_CLASSES    16
#define LX_CLS_NAME_MAX       31
#define LX_CLS_WINDOW         3072
#define LX_CLS_HEAD           2048
#define LX_CLS_TAIL           1024
#define LX_CLS_CONTEXT_WEIGHT 0.25f
#define LX_CLS_DEFAULT_BITS   14
#define LX_CLS_MAX_FEATURES   16384 /* bounds what a prompt and its context can give */

typedef struct lx_cls_model lx_cls_model;

/* Reads a model file's bytes. NULL, with why in err (errlen bytes), when they are not a model. */
lx_cls_model *lx_cls_parse(const void *data, size_t len, char *err, size_t errlen);
/* Reads a model file; NULL with why (e.g. "cannot read: No such file or directory"). */
lx_cls_model *lx_cls_load(const char *path, char *err, size_t errlen);
/* A new copy of the shipped model (never NULL: the build checks it). */
lx_cls_model *lx_cls_builtin(void);
void lx_cls_free(lx_cls_model *m);

size_t lx_cls_n_classes(const lx_cls_model *m);
const char *lx_cls_class(const lx_cls_model *m, size_t i);
/* The class's index, or -1. */
int lx_cls_find(const lx_cls_model *m, const char *name, size_t len);
/* 16 hex digits: the FNV-1a of the file, what tells two models apart. */
const char *lx_cls_digest(const lx_cls_model *m);

/* One feature occurrence: its bucket and where its text is (for the reason). */
typedef struct {
    uint32_t bucket;
    uint32_t off;    /* byte offset of its text in the prompt (or the context) */
    uint16_t len;    /* its bytes there */
    uint8_t context; /* from the context */
} lx_cls_feature;

typedef struct {
    lx_cls_feature f[LX_CLS_MAX_FEATURES];
    size_t n;
} lx_cls_features;

/* The features of a prompt and its context, for buckets of 2^bits. */
void lx_cls_featurize(const char *text, size_t len, const char *context, size_t context_len, unsigned bits,
                      lx_cls_features *out);
unsigned lx_cls_bits(const lx_cls_model *m);

#define LX_CLS_TOP          3 /* signals named in an explanation */
#define LX_CLS_TOP_FEATURES 8 /* n-grams offered to it (the analyzer shows the first distinct ones) */

typedef struct {
    int cls;           /* the best class */
    int runner_up;     /* the second (-1 with one class) */
    double confidence; /* its softmax probability */
    double prob[LX_CLS_MAX_CLASSES];
    int top_features[LX_CLS_TOP_FEATURES]; /* indices into the features that most favour cls over runner_up; -1 */
    int top_signals[LX_CLS_TOP];           /* lx_signal values that most favour it; -1 */
} lx_cls_result;

void lx_cls_predict(const lx_cls_model *m, const lx_cls_features *fs, const lx_signals *sg, lx_cls_result *out);

/* ---- training (lexora route --train) ---- */

typedef struct {
    uint32_t *buckets; /* the example's features (lx_cls_featurize), owned by the caller */
    uint8_t *context;  /* per feature: from the context */
    size_t n;
    lx_signals signals;
    int label;
} lx_cls_example;

typedef struct {
    unsigned bits;   /* 0: LX_CLS_DEFAULT_BITS */
    unsigned epochs; /* 0: 40 */
    double l2;       /* per step; 0: 1e-5 */
    uint64_t seed;   /* shuffling; the same data and seed give the same model */
} lx_cls_train_opts;

/* Trains on n examples whose labels index names (n_classes of them) and appends the model file's bytes to
 * out. Returns 0, or -1 (out's cap). */
int lx_cls_train(const lx_cls_example *ex, size_t n, const char *const *names, size_t n_classes,
                 const lx_cls_train_opts *o, lx_buf *out);

#endif
