/*
 * The automatic-routing classifier: features, the model file, prediction and training. See classifier.h.
 *
 * Invariants: a model's arrays are sized from its header and the file's length is checked against them
 * before anything is read; featurizing touches at most LX_CLS_WINDOW bytes of the prompt and the whole
 * context (bounded by prompt_text.h), so it never gives more than LX_CLS_MAX_FEATURES features; training
 * is deterministic for the same examples, options and seed.
 */
#include "routing/classifier.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/common.h"

#define MAGIC     "LXRTMDL1"
#define MAGIC_LEN 8
#define MIN_BITS  8
#define MAX_BITS  20
#define MAX_FILE  ((size_t)64 << 20)

struct lx_cls_model {
    size_t k; /* classes */
    char names[LX_CLS_MAX_CLASSES][LX_CLS_NAME_MAX + 1];
    unsigned bits;
    float scale;
    float bias[LX_CLS_MAX_CLASSES];
    float sig[LX_SIG_COUNT * LX_CLS_MAX_CLASSES]; /* [signal][class] */
    int16_t *q;                                   /* [bucket][class] */
    char digest[17];
};

/* ---- features ---- */

enum { KIND_UNI = 1, KIND_BI, KIND_TRI, KIND_WORD };

/* Multiply-shift: the top bits of key (its kind mixed into the high bits) times an odd constant. */
static uint32_t bucket_of(uint64_t key, unsigned kind, unsigned bits)
{
    uint64_t h = (key ^ ((uint64_t)kind << 59)) * 0x9E3779B97F4A7C15ULL;
    return (uint32_t)(h >> (64 - bits));
}

/* A character as the features see it. */
static unsigned fold(unsigned cp)
{
    if (cp >= 0xFF01 && cp <= 0xFF5E) cp -= 0xFEE0; /* full-width ASCII */
    if (cp >= 'A' && cp <= 'Z') return cp | 0x20;
    if (cp >= '0' && cp <= '9') return '0';
    if (cp == '\n' || cp == '\t' || cp == '\r' || cp == 0x3000) return ' ';
    return cp;
}

static bool word_char(unsigned c) { return (c >= 'a' && c <= 'z') || c == '0' || c == '_'; }

typedef struct {
    lx_cls_features *out;
    unsigned bits;
    uint8_t context;
    unsigned c1, c2;   /* the two characters before (0: none) */
    uint32_t o1, o2;   /* their offsets */
    uint64_t word;     /* the ASCII word being read: FNV-1a */
    uint32_t word_off; /* where it started */
    unsigned word_len;
} feat_state;

static void emit(feat_state *st, uint32_t bucket, uint32_t off, uint32_t end)
{
    if (st->out->n == LX_CLS_MAX_FEATURES) return;
    st->out->f[st->out->n++] = (lx_cls_feature){bucket, off, (uint16_t)LX_MIN(end - off, 0xFFFFu), st->context};
}

static void word_close(feat_state *st, uint32_t end)
{
    if (st->word_len >= 2) emit(st, bucket_of(st->word, KIND_WORD, st->bits), st->word_off, end);
    st->word_len = 0;
}

static void reset(feat_state *st, size_t at)
{
    st->o1 = st->o2 = (uint32_t)at;
    st->c1 = ' ';
    st->c2 = 0;
    st->word_len = 0;
}

/* The features of s[a, b). */
static void featurize_range(feat_state *st, const char *s, size_t a, size_t b)
{
    reset(st, a);
    for (size_t i = a; i < b;) {
        uint32_t off = (uint32_t)i;
        unsigned c = fold((unsigned char)s[i] < 0x80 ? (unsigned char)s[i++] : lx_utf8_next(s, b, &i));
        uint32_t end = (uint32_t)i;
        if (c == ' ' && st->c1 == ' ') continue;
        if (word_char(c)) {
            if (st->word_len++ == 0) {
                st->word = 14695981039346656037ULL;
                st->word_off = off;
            }
            st->word = (st->word ^ c) * 1099511628211ULL;
        } else if (st->word_len) {
            word_close(st, off);
        }
        if (c >= 0x80) emit(st, bucket_of(c, KIND_UNI, st->bits), off, end);
        emit(st, bucket_of((uint64_t)st->c1 << 21 | c, KIND_BI, st->bits), st->o1, end);
        if (st->c2)
            emit(st, bucket_of((uint64_t)st->c2 << 42 | (uint64_t)st->c1 << 21 | c, KIND_TRI, st->bits), st->o2, end);
        st->c2 = st->c1;
        st->o2 = st->o1;
        st->c1 = c;
        st->o1 = off;
    }
    if (st->word_len) word_close(st, (uint32_t)b);
}

/* The start of the character at or after i. */
static size_t char_start(const char *s, size_t len, size_t i)
{
    while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
        i++;
    return i;
}

void lx_cls_featurize(const char *text, size_t len, const char *context, size_t context_len, unsigned bits,
                      lx_cls_features *out)
{
    feat_state st = {.out = out, .bits = bits};
    out->n = 0;
    if (text && len <= LX_CLS_WINDOW) {
        featurize_range(&st, text, 0, len);
    } else if (text) {
        featurize_range(&st, text, 0, char_start(text, len, LX_CLS_HEAD));
        featurize_range(&st, text, char_start(text, len, len - LX_CLS_TAIL), len);
    }
    st.context = 1;
    if (context) featurize_range(&st, context, 0, LX_MIN(context_len, (size_t)LX_CLS_WINDOW));
}

/* ---- the model file ---- */

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

typedef struct {
    const unsigned char *p;
    size_t len, at;
} reader;

static bool rd(reader *r, void *dst, size_t n)
{
    if (r->len - r->at < n) return false;
    memcpy(dst, r->p + r->at, n);
    r->at += n;
    return true;
}

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static bool rd_u32(reader *r, uint32_t *v)
{
    unsigned char b[4];
    if (!rd(r, b, 4)) return false;
    *v = le32(b);
    return true;
}

static bool rd_f32(reader *r, float *v)
{
    uint32_t u;
    if (!rd_u32(r, &u)) return false;
    memcpy(v, &u, 4);
    return isfinite(*v);
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > LX_CLS_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-')) return false;
    return true;
}

static lx_cls_model *bad(lx_cls_model *m, char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    lx_cls_free(m);
    return NULL;
}

static bool read_header(reader *r, lx_cls_model *m, uint32_t *nsig, const char **why)
{
    uint32_t k, bits;
    char magic[MAGIC_LEN];
    if (!rd(r, magic, MAGIC_LEN) || memcmp(magic, MAGIC, MAGIC_LEN) != 0) {
        *why = "not a Lexora route model (it does not start with " MAGIC ")";
        return false;
    }
    *why = "truncated header";
    if (!rd_u32(r, &k) || !rd_u32(r, &bits) || !rd_u32(r, nsig) || !rd_f32(r, &m->scale)) return false;
    *why = "bad header: classes must be 1..16, bits 8..20";
    if (k < 1 || k > LX_CLS_MAX_CLASSES || bits < MIN_BITS || bits > MAX_BITS) return false;
    *why = "made for another set of signals (retrain it with this version: lexora route --train)";
    if (*nsig != LX_SIG_COUNT) return false;
    m->k = k;
    m->bits = bits;
    *why = "bad class name (1..31 of a-z, 0-9, _ and -, each once)";
    for (size_t c = 0; c < k; c++) {
        unsigned char n;
        if (!rd(r, &n, 1) || !rd(r, m->names[c], n) || !name_ok(m->names[c], n)) return false;
        m->names[c][n] = '\0';
        for (size_t d = 0; d < c; d++)
            if (strcmp(m->names[d], m->names[c]) == 0) return false;
    }
    return true;
}

lx_cls_model *lx_cls_parse(const void *data, size_t len, char *err, size_t errlen)
{
    reader r = {data, len, 0};
    lx_cls_model *m = lx_xcalloc(1, sizeof *m);
    uint32_t nsig;
    const char *why;
    if (len < 16) return bad(m, err, errlen, "not a Lexora route model (too short)");
    if (fnv1a(data, len - 8) != ((uint64_t)le32(r.p + len - 8) | (uint64_t)le32(r.p + len - 4) << 32))
        return bad(m, err, errlen, "damaged (its checksum does not match)");
    r.len = len - 8;
    if (!read_header(&r, m, &nsig, &why)) return bad(m, err, errlen, why);
    for (size_t c = 0; c < m->k; c++)
        if (!rd_f32(&r, &m->bias[c])) return bad(m, err, errlen, "truncated or bad biases");
    for (size_t i = 0; i < nsig * m->k; i++)
        if (!rd_f32(&r, &m->sig[i])) return bad(m, err, errlen, "truncated or bad signal weights");
    size_t nq = ((size_t)1 << m->bits) * m->k;
    if (r.len - r.at != nq * 2) return bad(m, err, errlen, "its weights do not match its header (wrong length)");
    m->q = lx_xmalloc(nq * sizeof *m->q);
    for (size_t i = 0; i < nq; i++)
        m->q[i] = (int16_t)(uint16_t)(r.p[r.at + 2 * i] | r.p[r.at + 2 * i + 1] << 8);
    snprintf(m->digest, sizeof m->digest, "%016llx", (unsigned long long)fnv1a(data, len));
    return m;
}

lx_cls_model *lx_cls_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read: %s", strerror(errno));
        return NULL;
    }
    lx_buf b;
    lx_buf_init(&b, MAX_FILE);
    char chunk[65536];
    size_t got;
    bool ok = true;
    while (ok && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
        ok = lx_buf_append(&b, chunk, got) == 0;
    bool read_err = ferror(f);
    fclose(f);
    lx_cls_model *m = NULL;
    if (!ok)
        snprintf(err, errlen, "larger than %zu MB: not a route model", MAX_FILE >> 20);
    else if (read_err)
        snprintf(err, errlen, "cannot read: %s", strerror(EIO));
    else
        m = lx_cls_parse(b.p ? b.p : "", b.len, err, errlen);
    lx_buf_free(&b);
    return m;
}

extern const unsigned char lx_route_model_data[];
extern const size_t lx_route_model_size;

lx_cls_model *lx_cls_builtin(void)
{
    char err[160];
    lx_cls_model *m = lx_cls_parse(lx_route_model_data, lx_route_model_size, err, sizeof err);
    if (m == NULL) {
        fprintf(stderr, "lexora: the built-in route model is damaged: %s\n", err);
        abort();
    }
    return m;
}

void lx_cls_free(lx_cls_model *m)
{
    if (m == NULL) return;
    free(m->q);
    free(m);
}

size_t lx_cls_n_classes(const lx_cls_model *m) { return m->k; }
const char *lx_cls_class(const lx_cls_model *m, size_t i) { return i < m->k ? m->names[i] : NULL; }
const char *lx_cls_digest(const lx_cls_model *m) { return m->digest; }
unsigned lx_cls_bits(const lx_cls_model *m) { return m->bits; }

int lx_cls_find(const lx_cls_model *m, const char *name, size_t len)
{
    for (size_t c = 0; c < m->k; c++)
        if (strlen(m->names[c]) == len && memcmp(m->names[c], name, len) == 0) return (int)c;
    return -1;
}

/* ---- prediction ---- */

static double feature_weight(const lx_cls_features *fs)
{
    double w = 0;
    for (size_t i = 0; i < fs->n; i++)
        w += fs->f[i].context ? LX_CLS_CONTEXT_WEIGHT : 1.0;
    return w;
}

static void softmax(const double *score, size_t k, double *p)
{
    double mx = score[0], sum = 0;
    for (size_t c = 1; c < k; c++)
        mx = LX_MAX(mx, score[c]);
    for (size_t c = 0; c < k; c++)
        sum += p[c] = exp(score[c] - mx);
    for (size_t c = 0; c < k; c++)
        p[c] /= sum;
}

/* Keeps the n largest positive values' indices in top (by val), distinct by key. */
static void top_insert(int *top, double *val, uint32_t *key, int n, int idx, double v, uint32_t k)
{
    if (v <= 0 || (top[n - 1] >= 0 && v <= val[n - 1])) return; /* the common case: not among the best */
    for (int i = 0; i < n; i++)
        if (top[i] >= 0 && key[i] == k) return;
    for (int i = 0; i < n; i++) {
        if (top[i] >= 0 && v <= val[i]) continue;
        for (int j = n - 1; j > i; j--) {
            top[j] = top[j - 1];
            val[j] = val[j - 1];
            key[j] = key[j - 1];
        }
        top[i] = idx;
        val[i] = v;
        key[i] = k;
        return;
    }
}

static void explain(const lx_cls_model *m, const lx_cls_features *fs, const lx_signals *sg, lx_cls_result *out)
{
    double val[LX_CLS_TOP_FEATURES], sval[LX_CLS_TOP];
    uint32_t key[LX_CLS_TOP_FEATURES], skey[LX_CLS_TOP];
    for (int i = 0; i < LX_CLS_TOP_FEATURES; i++)
        out->top_features[i] = -1;
    for (int i = 0; i < LX_CLS_TOP; i++)
        out->top_signals[i] = -1;
    if (out->runner_up < 0) return;
    size_t k = m->k, w = (size_t)out->cls, r = (size_t)out->runner_up;
    for (size_t i = 0; i < fs->n; i++) {
        const int16_t *q = m->q + (size_t)fs->f[i].bucket * k;
        double d = (double)(q[w] - q[r]) * (fs->f[i].context ? LX_CLS_CONTEXT_WEIGHT : 1.0);
        top_insert(out->top_features, val, key, LX_CLS_TOP_FEATURES, (int)i, d, fs->f[i].bucket);
    }
    for (int s = 0; s < LX_SIG_COUNT; s++) {
        double d = (m->sig[(size_t)s * k + w] - m->sig[(size_t)s * k + r]) * sg->v[s];
        top_insert(out->top_signals, sval, skey, LX_CLS_TOP, s, d > 0.05 ? d : 0, (uint32_t)s);
    }
}

void lx_cls_predict(const lx_cls_model *m, const lx_cls_features *fs, const lx_signals *sg, lx_cls_result *out)
{
    size_t k = m->k;
    int32_t prim[LX_CLS_MAX_CLASSES] = {0}, ctx[LX_CLS_MAX_CLASSES] = {0};
    if (k == 4) { /* the shipped model's shape: unrolled, the sums kept in registers (not behind a pointer that
                     makes every add wait for the store before it) */
        int32_t p0 = 0, p1 = 0, p2 = 0, p3 = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0;
        for (size_t i = 0; i < fs->n; i++) {
            const int16_t *q = m->q + (size_t)fs->f[i].bucket * 4;
            if (fs->f[i].context) {
                c0 += q[0], c1 += q[1], c2 += q[2], c3 += q[3];
            } else {
                p0 += q[0], p1 += q[1], p2 += q[2], p3 += q[3];
            }
        }
        prim[0] = p0, prim[1] = p1, prim[2] = p2, prim[3] = p3;
        ctx[0] = c0, ctx[1] = c1, ctx[2] = c2, ctx[3] = c3;
    } else {
        for (size_t i = 0; i < fs->n; i++) {
            const int16_t *q = m->q + (size_t)fs->f[i].bucket * k;
            int32_t *acc = fs->f[i].context ? ctx : prim;
            for (size_t c = 0; c < k; c++)
                acc[c] += q[c];
        }
    }
    double norm = m->scale / sqrt(1.0 + feature_weight(fs)), score[LX_CLS_MAX_CLASSES];
    for (size_t c = 0; c < k; c++) {
        score[c] = m->bias[c] + norm * (prim[c] + LX_CLS_CONTEXT_WEIGHT * ctx[c]);
        for (size_t s = 0; s < LX_SIG_COUNT; s++)
            score[c] += m->sig[s * k + c] * sg->v[s];
    }
    softmax(score, k, out->prob);
    out->cls = 0;
    out->runner_up = -1;
    for (size_t c = 1; c < k; c++)
        if (out->prob[c] > out->prob[out->cls]) out->cls = (int)c;
    for (size_t c = 0; c < k; c++)
        if ((int)c != out->cls && (out->runner_up < 0 || out->prob[c] > out->prob[out->runner_up]))
            out->runner_up = (int)c;
    out->confidence = out->prob[out->cls];
    explain(m, fs, sg, out);
}
