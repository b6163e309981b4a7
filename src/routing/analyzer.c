/*
 * Automatic routing: x_route, the rules, then the classifier; the route of the class; the reason. See
 * analyzer.h.
 *
 * The reason is built in a fixed buffer and cut when full (it never fails); the n-grams it quotes are the
 * prompt's own bytes (white space shown as one space), at most NGRAM_SHOW bytes each, cut at a character.
 */
#include "routing/analyzer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "routing/prompt_text.h"
#include "routing/signals.h"

#define NGRAM_SHOW 24

typedef struct {
    lx_prompt_text text;
    lx_signals sig;
    lx_cls_features feats;
} scratch;

static scratch S; /* one analysis at a time (analyzer.h) */

/* ---- the reason, in a fixed buffer ---- */

typedef struct {
    char *p;
    size_t len, cap;
} out_text;

__attribute__((format(printf, 2, 3))) static void say(out_text *o, const char *fmt, ...)
{
    if (o->len + 1 >= o->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0) o->len = LX_MIN(o->len + (size_t)n, o->cap - 1);
    while (o->len > 0 && ((unsigned char)o->p[o->len] & 0xC0) == 0x80 && o->len == o->cap - 1)
        o->len--; /* never end inside a character */
    o->p[o->len] = '\0';
}

static void say_signal(out_text *o, const lx_signals *sg, lx_signal s)
{
    const char *n = lx_signal_name(s);
    switch (s) {
    case LX_SIG_CODE_LINES: say(o, "%s=%u", n, sg->code_lines); break;
    case LX_SIG_PROG_WORDS: say(o, "%s=%u", n, sg->prog_words); break;
    case LX_SIG_LINES: say(o, "%s=%u", n, sg->lines); break;
    case LX_SIG_SHORT:
    case LX_SIG_LENGTH: say(o, "%s(chars=%u)", n, sg->chars); break;
    case LX_SIG_JA_SHARE:
    case LX_SIG_CODE_SHARE:
    case LX_SIG_MATH: say(o, "%s=%.2f", n, (double)sg->v[s]); break;
    default: say(o, "%s", n);
    }
}

/* The n-gram's bytes into g, white space as one space and trimmed, at most NGRAM_SHOW bytes, cut at a
 * character. */
static void ngram_text(const scratch *s, const lx_cls_feature *f, char g[NGRAM_SHOW + 1])
{
    const char *base = f->context ? s->text.context : s->text.text;
    size_t n = 0, len = LX_MIN((size_t)f->len, (size_t)NGRAM_SHOW);
    while (len > 0 && len < f->len && ((unsigned char)base[f->off + len] & 0xC0) == 0x80)
        len--;
    for (size_t i = 0; i < len; i++) {
        char c = base[f->off + i];
        bool space = (unsigned char)c < 0x20;
        if (space && n > 0 && g[n - 1] == ' ') continue;
        g[n++] = space ? ' ' : c;
    }
    while (n > 0 && g[n - 1] == ' ')
        n--;
    g[n] = '\0';
}

static void reason_model(out_text *o, const lx_cls_model *m, const lx_cls_result *r)
{
    if (r->runner_up >= 0)
        say(o, "confidence %.2f (runner-up %s %.2f)", r->confidence, lx_cls_class(m, (size_t)r->runner_up),
            r->prob[r->runner_up]);
    else
        say(o, "confidence %.2f", r->confidence);
    for (int i = 0; i < LX_CLS_TOP && r->top_signals[i] >= 0; i++) {
        say(o, i ? ", " : "; signals ");
        say_signal(o, &S.sig, (lx_signal)r->top_signals[i]);
    }
    char shown[LX_CLS_TOP][NGRAM_SHOW + 1];
    int n = 0;
    for (int i = 0; i < LX_CLS_TOP_FEATURES && r->top_features[i] >= 0 && n < LX_CLS_TOP; i++) {
        char g[NGRAM_SHOW + 1];
        ngram_text(&S, &S.feats.f[r->top_features[i]], g);
        const char *t = g + strspn(g, " ");
        bool again = strlen(t) < 2;
        for (int k = 0; k < n && !again; k++)
            again = strcmp(shown[k], t) == 0;
        if (again) continue;
        snprintf(shown[n], sizeof shown[n], "%s", t);
        say(o, n++ ? ", \"%s\"" : "; n-grams \"%s\"", t);
    }
}

/* ---- the analysis ---- */

static void analyze(const lx_cls_model *m, lx_slice prompt, lx_cls_result *r)
{
    lx_prompt_text_read(prompt, &S.text);
    lx_signals_compute(S.text.text, S.text.len, S.text.context, S.text.context_len, &S.sig);
    lx_cls_featurize(S.text.text, S.text.len, S.text.context, S.text.context_len, lx_cls_bits(m), &S.feats);
    lx_cls_predict(m, &S.feats, &S.sig, r);
}

static void set_class(lx_auto_verdict *v, const char *name, size_t len)
{
    len = LX_MIN(len, sizeof v->class_name - 1);
    memcpy(v->class_name, name, len);
    v->class_name[len] = '\0';
}

void lx_auto_classify(const lx_cls_model *m, lx_slice prompt, lx_auto_verdict *out)
{
    lx_cls_result r;
    analyze(m, prompt, &r);
    const char *cls = lx_cls_class(m, (size_t)r.cls);
    set_class(out, cls, strlen(cls));
    out->route = NULL;
    out->how = LX_AUTO_BY_MODEL;
    out->confidence = r.confidence;
    out_text o = {out->reason, 0, sizeof out->reason};
    out->reason[0] = '\0';
    reason_model(&o, m, &r);
}

void lx_auto_example(lx_slice prompt, unsigned bits, lx_cls_example *out)
{
    lx_prompt_text_read(prompt, &S.text);
    lx_signals_compute(S.text.text, S.text.len, S.text.context, S.text.context_len, &out->signals);
    lx_cls_featurize(S.text.text, S.text.len, S.text.context, S.text.context_len, bits, &S.feats);
    out->buckets = lx_xrealloc(out->buckets, (S.feats.n ? S.feats.n : 1) * sizeof *out->buckets);
    out->context = lx_xrealloc(out->context, (S.feats.n ? S.feats.n : 1) * sizeof *out->context);
    for (size_t i = 0; i < S.feats.n; i++) {
        out->buckets[i] = S.feats.f[i].bucket;
        out->context[i] = S.feats.f[i].context;
    }
    out->n = S.feats.n;
}

/* ---- the decision ---- */

bool lx_auto_is_name(const lx_config *c, lx_slice name)
{
    return c->routing.automatic.enabled && c->routing.automatic.name && lx_slice_eq(name, c->routing.automatic.name);
}

static const char *default_route(const lx_config *c)
{
    return c->routing.automatic.default_route ? c->routing.automatic.default_route : c->default_model;
}

static const lx_auto_rule *rule_of_class(const lx_config *c, lx_slice cls)
{
    for (size_t i = 0; i < c->routing.automatic.n_rules; i++)
        if (lx_slice_eq(cls, c->routing.automatic.rules[i].class_name)) return &c->routing.automatic.rules[i];
    return NULL;
}

/* The rule's route, else the class's, else the default. */
static const char *route_of(const lx_config *c, const char *cls, const lx_auto_rule *rule)
{
    if (rule && rule->route) return rule->route;
    const char *r = lx_config_auto_route(c, cls, strlen(cls));
    return r ? r : default_route(c);
}

static bool has_keyword(const char *s, size_t len, const char *kw)
{
    size_t n = strlen(kw);
    for (size_t i = 0; n && i + n <= len; i++) {
        size_t k = 0;
        while (k < n && (char)((s[i + k] >= 'A' && s[i + k] <= 'Z') ? s[i + k] | 0x20 : s[i + k]) == kw[k])
            k++;
        if (k == n) return true;
    }
    return false;
}

static const lx_auto_rule *match_rule(const lx_config *c, const char **kw)
{
    for (size_t i = 0; i < c->routing.automatic.n_rules; i++) {
        const lx_auto_rule *r = &c->routing.automatic.rules[i];
        for (size_t k = 0; k < r->n_keywords; k++) {
            if (!has_keyword(S.text.text, S.text.len, r->keywords[k])) continue;
            *kw = r->keywords[k];
            return r;
        }
    }
    return NULL;
}

void lx_auto_class_names(const lx_config *c, lx_buf *b)
{
    const lx_cls_model *m = c->routing.automatic.model;
    for (size_t i = 0; m && i < lx_cls_n_classes(m); i++)
        lx_buf_printf(b, "%s%s", i ? ", " : "", lx_cls_class(m, i));
    for (size_t i = 0; i < c->routing.automatic.n_rules; i++)
        lx_buf_printf(b, "%s%s", b->len ? ", " : "", c->routing.automatic.rules[i].class_name);
}

static int forced(const lx_config *c, lx_slice cls, lx_auto_verdict *out)
{
    out_text o = {out->reason, 0, sizeof out->reason};
    const lx_cls_model *m = c->routing.automatic.model;
    const lx_auto_rule *rule = rule_of_class(c, cls);
    bool known = rule || (m && lx_cls_find(m, cls.p, cls.len) >= 0) || lx_slice_eq(cls, "default");
    if (!known || cls.len >= sizeof out->class_name) {
        lx_buf names;
        lx_buf_init(&names, 0);
        lx_auto_class_names(c, &names);
        say(&o, "x_route must be one of: %s%sdefault", names.p ? names.p : "", names.len ? ", " : "");
        lx_buf_free(&names);
        return -1;
    }
    set_class(out, cls.p, cls.len);
    out->how = LX_AUTO_BY_FORCE;
    out->confidence = 1;
    out->route = lx_slice_eq(cls, "default") ? default_route(c) : route_of(c, out->class_name, rule);
    say(&o, "x_route");
    return 0;
}

int lx_auto_decide(const lx_config *c, lx_slice prompt, lx_slice x_route, bool has_x_route, lx_auto_verdict *out)
{
    out->reason[0] = '\0';
    if (has_x_route) return forced(c, x_route, out);
    out_text o = {out->reason, 0, sizeof out->reason};
    const lx_cls_model *m = c->routing.automatic.model;
    lx_cls_result r;
    if (c->routing.automatic.n_rules) lx_prompt_text_read(prompt, &S.text);
    const char *kw = NULL;
    const lx_auto_rule *rule = c->routing.automatic.n_rules ? match_rule(c, &kw) : NULL;
    if (rule) {
        set_class(out, rule->class_name, strlen(rule->class_name));
        out->how = LX_AUTO_BY_RULE;
        out->confidence = 1;
        out->route = route_of(c, out->class_name, rule);
        say(&o, "rule %s: keyword \"%s\"", rule->class_name, kw);
        return 0;
    }
    analyze(m, prompt, &r);
    const char *cls = lx_cls_class(m, (size_t)r.cls);
    out->confidence = r.confidence;
    if (r.confidence < c->routing.automatic.min_confidence) {
        set_class(out, "default", 7);
        out->how = LX_AUTO_BY_DEFAULT;
        out->route = default_route(c);
        say(&o, "best guess %s below min_confidence %.2f; ", cls, c->routing.automatic.min_confidence);
    } else {
        set_class(out, cls, strlen(cls));
        out->how = LX_AUTO_BY_MODEL;
        out->route = route_of(c, cls, NULL);
        if (!lx_config_auto_route(c, cls, strlen(cls))) say(&o, "no route for %s: the default; ", cls);
    }
    reason_model(&o, m, &r);
    return 0;
}

void lx_auto_header_text(const char *reason, char *out, size_t cap)
{
    size_t n = 0, len = strlen(reason);
    for (size_t i = 0; i < len && n + 1 < cap;) {
        unsigned char c = (unsigned char)reason[i];
        if (c >= 0x80) {
            unsigned cp = lx_utf8_next(reason, len, &i);
            char esc[16];
            int k = cp > 0xFFFF ? snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10),
                                           0xDC00 + ((cp - 0x10000) & 0x3FF))
                                : snprintf(esc, sizeof esc, "\\u%04x", cp);
            if (n + (size_t)k + 1 > cap) break;
            memcpy(out + n, esc, (size_t)k);
            n += (size_t)k;
            continue;
        }
        out[n++] = c < 0x20 || c == 0x7F ? ' ' : (char)c;
        i++;
    }
    if (cap) out[n] = '\0';
}
