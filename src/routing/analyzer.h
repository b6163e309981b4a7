/*
 * Automatic routing (routing.auto): a request for the model named routing.auto.name ("auto") is given a
 * class by what its prompt asks, and the class's route — a model or an alias — serves it.
 *
 * The decision, in order:
 *  1 x_route in the body forces a class (any class of the model or of a rule; anything else is refused);
 *  2 rules (routing.auto.rules, file order): the first whose keyword is in the last user message decides;
 *  3 the analyzer: the prompt's text (routing/prompt_text.h), its signals (routing/signals.h) and the
 *    classifier (routing/classifier.h) over both; a confidence below routing.auto.min_confidence gives the
 *    class "default".
 * The route is the rule's own, else routing.auto.routes' entry for the class, else routing.auto.default,
 * else default_model. The reason says what decided — the forcing, the rule and its keyword, or the signals
 * and n-grams that most favoured the class over the runner-up, and the confidence.
 * Invariants: no allocation and no I/O on this path (one static scratch holds the text and the features,
 * so one thread at a time: the loop thread in the gateway); the cost is linear in the prompt, bounded by
 * LX_PROMPT_TEXT_MAX.
 */
#ifndef LX_ANALYZER_H
#define LX_ANALYZER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "routing/classifier.h"
#include "utils/buf.h"
#include "utils/common.h"

#define LX_AUTO_CLASS_MAX  64
#define LX_AUTO_REASON_MAX 512

typedef enum {
    LX_AUTO_BY_MODEL = 0, /* the classifier, confident enough */
    LX_AUTO_BY_DEFAULT,   /* the classifier, below min_confidence */
    LX_AUTO_BY_RULE,      /* a keyword of routing.auto.rules */
    LX_AUTO_BY_FORCE,     /* x_route */
} lx_auto_how;

typedef struct {
    char class_name[LX_AUTO_CLASS_MAX]; /* "default" below min_confidence */
    const char *route;                  /* the model or alias; points into the config snapshot */
    double confidence;                  /* 1 for a rule or x_route */
    lx_auto_how how;
    char reason[LX_AUTO_REASON_MAX]; /* UTF-8, one line */
} lx_auto_verdict;

/* Is name (len bytes) the name that asks for automatic routing in c? */
bool lx_auto_is_name(const lx_config *c, lx_slice name);

/*
 * Decides the class and route of a request: prompt is the JSON value of its messages (or prompt), x_route
 * the body's x_route when has_x_route. Returns 0, or -1 when x_route names no class (out->reason then holds
 * the message for the client, naming the classes). c->routing.automatic must be enabled.
 */
int lx_auto_decide(const lx_config *c, lx_slice prompt, lx_slice x_route, bool has_x_route, lx_auto_verdict *out);

/*
 * The classifier's view alone (no rules, routes or threshold): for `lexora route --eval` and the tests.
 * Fills out's class_name, confidence and reason (how is LX_AUTO_BY_MODEL, route NULL).
 */
void lx_auto_classify(const lx_cls_model *m, lx_slice prompt, lx_auto_verdict *out);

/* The features and signals of one prompt, as training sees them: buckets and context flags appended to out
 * (lx_cls_example's arrays, grown with lx_xrealloc), signals filled. */
void lx_auto_example(lx_slice prompt, unsigned bits, lx_cls_example *out);

/* The reason made fit for an HTTP header: every character above ASCII written as \uXXXX (JSON's escape),
 * control characters as spaces. */
/* Appends "code, reasoning, ..., legal": the model's classes, then the rules' (what a route or x_route may name). */
void lx_auto_class_names(const lx_config *c, lx_buf *b);
void lx_auto_header_text(const char *reason, char *out, size_t cap);

#endif
