/*
 * Training the automatic-routing classifier (lexora route --train). See classifier.h.
 *
 * Multinomial logistic regression by stochastic gradient descent with AdaGrad step sizes, over the same
 * features and signals prediction uses (the same scaling: n-gram weights divided by sqrt(1 + weight)),
 * in float; the n-gram weights are then quantized to int16 with one scale for the file. The examples are
 * visited in a shuffled order drawn from a seeded xorshift, so a run is reproducible. L2 shrinks every
 * weight after each epoch.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "routing/classifier.h"
#include "utils/common.h"

#define MAGIC   "LXRTMDL1"
#define LR      0.4
#define EPSILON 1e-8

typedef struct {
    size_t k, nb;
    float *w, *gw; /* [bucket][class] and its squared-gradient sums */
    float bias[LX_CLS_MAX_CLASSES], gbias[LX_CLS_MAX_CLASSES];
    float sig[LX_SIG_COUNT * LX_CLS_MAX_CLASSES], gsig[LX_SIG_COUNT * LX_CLS_MAX_CLASSES];
} trainer;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static double norm_of(const lx_cls_example *e)
{
    double w = 0;
    for (size_t i = 0; i < e->n; i++)
        w += e->context[i] ? LX_CLS_CONTEXT_WEIGHT : 1.0;
    return 1.0 / sqrt(1.0 + w);
}

static void scores(const trainer *t, const lx_cls_example *e, double norm, double *p)
{
    double s[LX_CLS_MAX_CLASSES], mx = -INFINITY, sum = 0;
    for (size_t c = 0; c < t->k; c++)
        s[c] = t->bias[c];
    for (size_t i = 0; i < e->n; i++) {
        double x = norm * (e->context[i] ? LX_CLS_CONTEXT_WEIGHT : 1.0);
        const float *w = t->w + (size_t)e->buckets[i] * t->k;
        for (size_t c = 0; c < t->k; c++)
            s[c] += x * w[c];
    }
    for (size_t g = 0; g < LX_SIG_COUNT; g++)
        for (size_t c = 0; c < t->k; c++)
            s[c] += t->sig[g * t->k + c] * e->signals.v[g];
    for (size_t c = 0; c < t->k; c++)
        mx = LX_MAX(mx, s[c]);
    for (size_t c = 0; c < t->k; c++)
        sum += p[c] = exp(s[c] - mx);
    for (size_t c = 0; c < t->k; c++)
        p[c] /= sum;
}

static void step(float *w, float *g2, double grad)
{
    *g2 += (float)(grad * grad);
    *w -= (float)(LR * grad / sqrt(*g2 + EPSILON));
}

static void learn(trainer *t, const lx_cls_example *e)
{
    double norm = norm_of(e), p[LX_CLS_MAX_CLASSES];
    scores(t, e, norm, p);
    for (size_t c = 0; c < t->k; c++) {
        double g = p[c] - (e->label == (int)c ? 1.0 : 0.0);
        step(&t->bias[c], &t->gbias[c], g);
        for (size_t s = 0; s < LX_SIG_COUNT; s++)
            if (e->signals.v[s] != 0) step(&t->sig[s * t->k + c], &t->gsig[s * t->k + c], g * e->signals.v[s]);
        for (size_t i = 0; i < e->n; i++) {
            size_t at = (size_t)e->buckets[i] * t->k + c;
            step(&t->w[at], &t->gw[at], g * norm * (e->context[i] ? LX_CLS_CONTEXT_WEIGHT : 1.0));
        }
    }
}

static void shrink(trainer *t, double l2)
{
    float f = (float)(1.0 - l2);
    for (size_t i = 0; i < t->nb * t->k; i++)
        t->w[i] *= f;
    for (size_t i = 0; i < LX_SIG_COUNT * t->k; i++)
        t->sig[i] *= f;
}

/* ---- writing the file ---- */

static void put_u32(lx_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    lx_buf_append(b, x, 4);
}

static void put_f32(lx_buf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}

static int write_model(const trainer *t, unsigned bits, const char *const *names, lx_buf *out)
{
    size_t start = out->len;
    float mx = 0;
    for (size_t i = 0; i < t->nb * t->k; i++)
        mx = LX_MAX(mx, fabsf(t->w[i]));
    float scale = mx > 0 ? mx / 32767.0f : 1.0f;
    lx_buf_append(out, MAGIC, 8);
    put_u32(out, (uint32_t)t->k);
    put_u32(out, bits);
    put_u32(out, LX_SIG_COUNT);
    put_f32(out, scale);
    for (size_t c = 0; c < t->k; c++) {
        unsigned char n = (unsigned char)strlen(names[c]);
        lx_buf_append(out, &n, 1);
        lx_buf_append(out, names[c], n);
    }
    for (size_t c = 0; c < t->k; c++)
        put_f32(out, t->bias[c]);
    for (size_t i = 0; i < LX_SIG_COUNT * t->k; i++)
        put_f32(out, t->sig[i]);
    for (size_t i = 0; i < t->nb * t->k; i++) {
        long q = lrintf(t->w[i] / scale);
        uint16_t u = (uint16_t)(int16_t)LX_MAX(-32767, LX_MIN(32767, q));
        unsigned char x[2] = {(unsigned char)u, (unsigned char)(u >> 8)};
        lx_buf_append(out, x, 2);
    }
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = start; out->p && i < out->len; i++)
        h = (h ^ (unsigned char)out->p[i]) * 1099511628211ULL;
    put_u32(out, (uint32_t)h);
    int rc = lx_buf_append(out,
                           (unsigned char[4]){(unsigned char)(h >> 32), (unsigned char)(h >> 40),
                                              (unsigned char)(h >> 48), (unsigned char)(h >> 56)},
                           4);
    size_t want = 8 + 16 + t->k * 4 + LX_SIG_COUNT * t->k * 4 + t->nb * t->k * 2 + 8;
    for (size_t c = 0; c < t->k; c++)
        want += 1 + strlen(names[c]);
    return rc == 0 && out->len == start + want ? 0 : -1; /* an append that hit the cap left it short */
}

int lx_cls_train(const lx_cls_example *ex, size_t n, const char *const *names, size_t n_classes,
                 const lx_cls_train_opts *o, lx_buf *out)
{
    unsigned bits = o && o->bits ? o->bits : LX_CLS_DEFAULT_BITS;
    unsigned epochs = o && o->epochs ? o->epochs : 40;
    double l2 = o && o->l2 > 0 ? o->l2 : 1e-5;
    uint64_t seed = o && o->seed ? o->seed : 0x5EEDULL;
    trainer t = {.k = n_classes, .nb = (size_t)1 << bits};
    t.w = lx_xcalloc(t.nb * t.k, sizeof *t.w);
    t.gw = lx_xcalloc(t.nb * t.k, sizeof *t.gw);
    size_t *order = lx_xmalloc((n ? n : 1) * sizeof *order);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (unsigned ep = 0; ep < epochs; ep++) {
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)(xorshift(&seed) % i), tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
        for (size_t i = 0; i < n; i++)
            learn(&t, &ex[order[i]]);
        shrink(&t, l2);
    }
    int rc = write_model(&t, bits, names, out);
    free(order);
    free(t.w);
    free(t.gw);
    return rc;
}
