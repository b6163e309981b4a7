/*
 * `lexora route`: route, evaluate, train. See route_cmd.h.
 *
 * Every line is read by the gateway's own body scan (api/body.h) and handed to the same analyzer the proxy
 * uses, so what the command says is what the gateway would do. Lines are read whole (getline) and at most
 * MAX_LINE bytes each; --eval and --train keep nothing of a line but its class (and, training, its
 * features).
 */
#include "route_cmd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/body.h"
#include "config.h"
#include "routing/analyzer.h"
#include "routing/classifier.h"
#include "utils/buf.h"

#define MAX_LINE ((size_t)16 << 20)

typedef struct {
    const char *config, *model, *eval, *train, *out;
    bool explain;
    double min_accuracy, min_recall; /* -1: no bar */
    unsigned bits, epochs;
} options;

static void help(FILE *out)
{
    fprintf(out, "Usage: lexora route [--config FILE | --model FILE] [--explain]\n"
                 "         reads JSONL on stdin (a chat request body, or {\"prompt\": \"...\"}) and writes one line\n"
                 "         per input: {\"route\": class, \"model\": model or alias, \"confidence\", \"reason\"}\n"
                 "       lexora route --eval LABELLED.jsonl [--config FILE | --model FILE]\n"
                 "                    [--min-accuracy A] [--min-recall R]\n"
                 "         accuracy, per-class precision and recall and the confusion matrix of lines that\n"
                 "         carry \"label\": \"<class>\"; exit 1 when under a bar given\n"
                 "       lexora route --train LABELLED.jsonl --out FILE [--bits N] [--epochs N]\n"
                 "         trains a classifier on the labelled lines (set routing.auto.model_file to use it)\n"
                 "Without --config or --model, the shipped model decides (no rules; \"model\" is null).\n"
                 "Exit codes: 0 ok, 1 a line could not be read or a bar was missed, 2 bad command line or config.\n");
}

static bool is_opt(const char *a, const char *name)
{
    size_t n = strlen(name);
    return strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

static const char *value_of(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (a[n] == '=') return a + n + 1;
    if (*i + 1 == argc) {
        fprintf(stderr, "lexora route: %s needs a value\n", name);
        return NULL;
    }
    return argv[++*i];
}

static bool number(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static const char *const string_opts[] = {"--config", "--model", "--eval", "--train", "--out"};

static const char **string_slot(options *o, size_t i)
{
    const char **slots[] = {&o->config, &o->model, &o->eval, &o->train, &o->out};
    return slots[i];
}

/* 0 to go on, -1 to exit 0 (help), 2 on a usage error. */
static int parse(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        size_t k = 0;
        while (k < LX_ARRAY_LEN(string_opts) && !is_opt(a, string_opts[k]))
            k++;
        double num;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help(stdout);
            return -1;
        } else if (strcmp(a, "--explain") == 0) {
            o->explain = true;
        } else if (k < LX_ARRAY_LEN(string_opts)) {
            if ((v = value_of(argc, argv, &i, string_opts[k])) == NULL) return 2;
            *string_slot(o, k) = v;
        } else if (is_opt(a, "--min-accuracy") || is_opt(a, "--min-recall")) {
            bool acc = is_opt(a, "--min-accuracy");
            if ((v = value_of(argc, argv, &i, acc ? "--min-accuracy" : "--min-recall")) == NULL) return 2;
            if (!number(v, 0, 1, &num)) {
                fprintf(stderr, "lexora route: %s must be a number from 0 to 1, got '%s'\n", a, v);
                return 2;
            }
            *(acc ? &o->min_accuracy : &o->min_recall) = num;
        } else if (is_opt(a, "--bits") || is_opt(a, "--epochs")) {
            bool bits = is_opt(a, "--bits");
            if ((v = value_of(argc, argv, &i, bits ? "--bits" : "--epochs")) == NULL) return 2;
            if (!number(v, bits ? 8 : 1, bits ? 20 : 1000, &num) || num != floor(num)) {
                fprintf(stderr, "lexora route: %s must be an integer (%s), got '%s'\n", a, bits ? "8..20" : "1..1000",
                        v);
                return 2;
            }
            *(bits ? &o->bits : &o->epochs) = (unsigned)num;
        } else {
            fprintf(stderr, "lexora route: unknown argument '%s' (try lexora route --help)\n", a);
            return 2;
        }
    }
    if (o->config && o->model) {
        fprintf(stderr, "lexora route: give --config or --model, not both\n");
        return 2;
    }
    if (o->train && !o->out) {
        fprintf(stderr, "lexora route: --train needs --out FILE\n");
        return 2;
    }
    if (o->train && o->eval) {
        fprintf(stderr, "lexora route: give --train or --eval, not both\n");
        return 2;
    }
    return 0;
}

/* ---- what decides: a config's routing.auto, or a model alone ---- */

typedef struct {
    lx_config *cfg; /* with --config */
    lx_cls_model *model;
    const lx_cls_model *use; /* the config's or model */
} router;

static int open_router(const options *o, router *r)
{
    char err[256];
    if (o->config) {
        lx_buf errors;
        lx_buf_init(&errors, 0);
        r->cfg = lx_config_load(o->config, &errors);
        if (r->cfg == NULL) fprintf(stderr, "%s", errors.p ? errors.p : "");
        lx_buf_free(&errors);
        if (r->cfg == NULL) return 2;
        if (!r->cfg->routing.automatic.enabled) {
            fprintf(stderr, "lexora route: %s has no routing.auto section\n", o->config);
            return 2;
        }
        r->use = r->cfg->routing.automatic.model;
        return 0;
    }
    r->model = o->model ? lx_cls_load(o->model, err, sizeof err) : lx_cls_builtin();
    if (r->model == NULL) {
        fprintf(stderr, "lexora route: %s: %s\n", o->model, err);
        return 2;
    }
    r->use = r->model;
    return 0;
}

static void close_router(router *r)
{
    lx_config_unref(r->cfg);
    lx_cls_free(r->model);
}

/* The verdict on one scanned line: with a config its whole decision, else the model alone. */
static int decide(const router *r, const lx_body_fields *f, bool use_threshold, lx_auto_verdict *v)
{
    if (r->cfg == NULL) {
        if (!f->has_x_route) {
            lx_auto_classify(r->use, f->prompt, v);
            return 0;
        }
        if (lx_cls_find(r->use, f->x_route.p, f->x_route.len) < 0) {
            snprintf(v->reason, sizeof v->reason, "x_route names no class of the model");
            return -1;
        }
        snprintf(v->class_name, sizeof v->class_name, "%.*s", (int)f->x_route.len, f->x_route.p);
        snprintf(v->reason, sizeof v->reason, "x_route");
        v->route = NULL;
        v->confidence = 1;
        v->how = LX_AUTO_BY_FORCE;
        return 0;
    }
    lx_config tmp;
    const lx_config *c = r->cfg;
    if (!use_threshold) { /* --eval measures the classes, not the fallback */
        tmp = *r->cfg;
        tmp.routing.automatic.min_confidence = 0;
        c = &tmp;
    }
    return lx_auto_decide(c, f->prompt, f->x_route, f->has_x_route, v);
}

/* ---- reading lines ---- */

typedef struct {
    FILE *f;
    char *line;
    size_t cap;
    size_t no;
} lines;

/* The next line (without its newline) into *s; false at the end. */
static bool next_line(lines *l, lx_slice *s)
{
    for (;;) {
        ssize_t n = getline(&l->line, &l->cap, l->f);
        if (n < 0) return false;
        l->no++;
        while (n > 0 && (l->line[n - 1] == '\n' || l->line[n - 1] == '\r'))
            n--;
        size_t k = 0;
        while (k < (size_t)n && (l->line[k] == ' ' || l->line[k] == '\t'))
            k++;
        if (k == (size_t)n) continue; /* blank lines are skipped */
        *s = (lx_slice){l->line, (size_t)n};
        return true;
    }
}

static bool scan_line(lx_slice s, lx_body_fields *f, char *why, size_t cap)
{
    lx_body_error err;
    if (s.len > MAX_LINE) {
        snprintf(why, cap, "longer than %zu bytes", MAX_LINE);
        return false;
    }
    if (lx_body_scan(s.p, s.len, f, &err) != 0) {
        snprintf(why, cap, "%s", err.message);
        return false;
    }
    if (!f->prompt.len) {
        snprintf(why, cap, "no \"messages\" or \"prompt\"");
        return false;
    }
    return true;
}

/* The label of a labelled line ("label": "<class>"), or false. */
static bool label_of(lx_slice s, lx_slice *label)
{
    lx_slice v;
    if (!lx_json_find_member(s.p, s.len, "label", &v) || v.len < 3 || v.p[0] != '"') return false;
    *label = (lx_slice){v.p + 1, v.len - 2};
    return label->len < LX_AUTO_CLASS_MAX;
}

/* ---- route: one JSON line per input ---- */

static const char *how_name(lx_auto_how h)
{
    static const char *const n[] = {"model", "default", "rule", "x_route"};
    return n[h];
}

static void put_json_string(lx_buf *b, const char *s)
{
    lx_buf_append_str(b, "\"");
    lx_buf_json_escape(b, s, strlen(s));
    lx_buf_append_str(b, "\"");
}

static void print_verdict(const lx_auto_verdict *v, bool explain, lx_buf *b)
{
    lx_buf_append_str(b, "{\"route\":");
    put_json_string(b, v->class_name);
    lx_buf_append_str(b, ",\"model\":");
    if (v->route)
        put_json_string(b, v->route);
    else
        lx_buf_append_str(b, "null");
    lx_buf_printf(b, ",\"confidence\":%.4f,\"reason\":", v->confidence);
    put_json_string(b, v->reason);
    if (explain) {
        lx_buf_append_str(b, ",\"how\":");
        put_json_string(b, how_name(v->how));
    }
    lx_buf_append_str(b, "}\n");
}

static int run_route(const options *o, const router *r)
{
    lines in = {.f = stdin};
    lx_slice s;
    int rc = 0;
    lx_buf b;
    lx_buf_init(&b, 0);
    while (next_line(&in, &s)) {
        lx_body_fields f;
        lx_auto_verdict v;
        char why[200];
        lx_buf_reset(&b);
        if (!scan_line(s, &f, why, sizeof why)) {
            lx_buf_append_str(&b, "{\"error\":");
            put_json_string(&b, why);
            lx_buf_append_str(&b, "}\n");
            rc = 1;
        } else if (decide(r, &f, true, &v) != 0) {
            lx_buf_append_str(&b, "{\"error\":");
            put_json_string(&b, v.reason);
            lx_buf_append_str(&b, "}\n");
            rc = 1;
        } else {
            print_verdict(&v, o->explain, &b);
        }
        fwrite(b.p, 1, b.len, stdout);
        fflush(stdout);
    }
    lx_buf_free(&b);
    free(in.line);
    return rc;
}

/* ---- eval ---- */

#define MAX_CLASSES 32

typedef struct {
    char names[MAX_CLASSES][LX_AUTO_CLASS_MAX];
    size_t n;
    unsigned m[MAX_CLASSES][MAX_CLASSES]; /* [label][predicted] */
} confusion;

static int class_index(confusion *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n; i++)
        if (strlen(c->names[i]) == len && memcmp(c->names[i], name, len) == 0) return (int)i;
    if (c->n == MAX_CLASSES) return -1;
    snprintf(c->names[c->n], sizeof c->names[0], "%.*s", (int)len, name);
    return (int)c->n++;
}

static void print_report(const confusion *c, unsigned total, unsigned right, bool *recall_ok, double min_recall)
{
    printf("examples %u, accuracy %.4f (%u/%u)\n\n", total, total ? (double)right / total : 0, right, total);
    printf("%-12s %9s %9s %8s\n", "class", "precision", "recall", "support");
    *recall_ok = true;
    for (size_t i = 0; i < c->n; i++) {
        unsigned support = 0, predicted = 0;
        for (size_t j = 0; j < c->n; j++) {
            support += c->m[i][j];
            predicted += c->m[j][i];
        }
        double p = predicted ? (double)c->m[i][i] / predicted : 0, r = support ? (double)c->m[i][i] / support : 0;
        if (support && min_recall >= 0 && r < min_recall) *recall_ok = false;
        printf("%-12s %9.4f %9.4f %8u\n", c->names[i], p, r, support);
    }
    printf("\nconfusion matrix (rows: label, columns: predicted)\n%-12s", "");
    for (size_t j = 0; j < c->n; j++)
        printf(" %10s", c->names[j]);
    printf("\n");
    for (size_t i = 0; i < c->n; i++) {
        printf("%-12s", c->names[i]);
        for (size_t j = 0; j < c->n; j++)
            printf(" %10u", c->m[i][j]);
        printf("\n");
    }
}

static FILE *open_in(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) perror(path);
    return f;
}

static int run_eval(const options *o, const router *r)
{
    FILE *f = open_in(o->eval);
    if (f == NULL) return 2;
    lines in = {.f = f};
    confusion c = {.n = 0};
    for (size_t i = 0; i < lx_cls_n_classes(r->use); i++)
        class_index(&c, lx_cls_class(r->use, i), strlen(lx_cls_class(r->use, i)));
    unsigned total = 0, right = 0;
    int rc = 0;
    lx_slice s, label = {0};
    while (next_line(&in, &s)) {
        lx_body_fields fl;
        lx_auto_verdict v;
        char why[200];
        const char *problem = NULL;
        if (!scan_line(s, &fl, why, sizeof why))
            problem = why;
        else if (!label_of(s, &label))
            problem = "no \"label\": \"<class>\"";
        else if (decide(r, &fl, false, &v) != 0)
            problem = v.reason;
        if (problem) {
            fprintf(stderr, "%s:%zu: %s\n", o->eval, in.no, problem);
            rc = 1;
            continue;
        }
        int li = class_index(&c, label.p, label.len), pi = class_index(&c, v.class_name, strlen(v.class_name));
        if (li < 0 || pi < 0) continue;
        c.m[li][pi]++;
        total++;
        right += li == pi;
    }
    if (f != stdin) fclose(f);
    free(in.line);
    bool recall_ok;
    print_report(&c, total, right, &recall_ok, o->min_recall);
    double acc = total ? (double)right / total : 0;
    if (o->min_accuracy >= 0 && acc < o->min_accuracy) {
        printf("FAIL: accuracy %.4f is under %.4f\n", acc, o->min_accuracy);
        rc = 1;
    }
    if (!recall_ok) {
        printf("FAIL: a class's recall is under %.4f\n", o->min_recall);
        rc = 1;
    }
    return rc;
}

/* ---- train ---- */

static int write_file(const char *path, const lx_buf *b)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

static int run_train(const options *o)
{
    FILE *f = open_in(o->train);
    if (f == NULL) return 2;
    lines in = {.f = f};
    confusion names = {.n = 0};
    lx_cls_example *ex = NULL;
    size_t n = 0, cap = 0;
    unsigned bits = o->bits ? o->bits : LX_CLS_DEFAULT_BITS;
    int rc = 0;
    lx_slice s, label = {0};
    while (next_line(&in, &s)) {
        lx_body_fields fl;
        char why[200];
        bool scanned = scan_line(s, &fl, why, sizeof why);
        if (!scanned || !label_of(s, &label)) {
            fprintf(stderr, "%s:%zu: %s\n", o->train, in.no, scanned ? "no \"label\": \"<class>\"" : why);
            rc = 1;
            continue;
        }
        int li = class_index(&names, label.p, label.len);
        if (li < 0 || li >= LX_CLS_MAX_CLASSES) {
            fprintf(stderr, "%s:%zu: more than %d classes\n", o->train, in.no, LX_CLS_MAX_CLASSES);
            rc = 2;
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            ex = lx_xrealloc(ex, cap * sizeof *ex);
        }
        ex[n] = (lx_cls_example){.label = li};
        lx_auto_example(fl.prompt, bits, &ex[n]);
        n++;
    }
    if (f != stdin) fclose(f);
    free(in.line);
    if (rc == 0 && (n == 0 || names.n < 2)) {
        fprintf(stderr, "lexora route: %s: need labelled lines of at least two classes\n", o->train);
        rc = 2;
    }
    if (rc == 0) {
        const char *cls[LX_CLS_MAX_CLASSES];
        for (size_t i = 0; i < names.n; i++)
            cls[i] = names.names[i];
        lx_cls_train_opts to = {.bits = bits, .epochs = o->epochs};
        lx_buf b;
        lx_buf_init(&b, 0);
        rc = lx_cls_train(ex, n, cls, names.n, &to, &b) != 0 ? 1 : write_file(o->out, &b);
        if (rc == 0) printf("trained on %zu examples, %zu classes; wrote %s (%zu bytes)\n", n, names.n, o->out, b.len);
        lx_buf_free(&b);
    }
    for (size_t i = 0; i < n; i++) {
        free(ex[i].buckets);
        free(ex[i].context);
    }
    free(ex);
    return rc;
}

int lx_route_command(int argc, char **argv)
{
    options o = {.min_accuracy = -1, .min_recall = -1};
    int rc = parse(argc, argv, &o);
    if (rc != 0) return rc < 0 ? 0 : rc;
    if (o.train) return run_train(&o);
    if (o.config == NULL && o.model == NULL) {
        const char *env = getenv("LEXORA_CONFIG");
        if (env && *env) o.config = env;
    }
    router r = {0};
    if ((rc = open_router(&o, &r)) != 0) return rc;
    rc = o.eval ? run_eval(&o, &r) : run_route(&o, &r);
    close_router(&r);
    return rc;
}
