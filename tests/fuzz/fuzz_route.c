/*
 * Fuzz target: automatic routing's analyzer on any request body — reading the messages (or prompt) text
 * (routing/prompt_text.c), the signals (routing/signals.c), the n-grams and the classifier with the shipped
 * model (routing/classifier.c), the reason and its header form (routing/analyzer.c).
 *
 * Input: the bytes are the JSON value of messages (or prompt), as the proxy hands it over — unchecked, so
 * the walk must survive anything. Checks: the texts stay within their bounds and end on a character
 * boundary when cut, every signal is in [0, 1], the class is one of the model's and the confidence a
 * probability, the reason is one line within its buffer, and its header form is visible ASCII only.
 */
#include <string.h>

#include "fuzz.h"
#include "routing/analyzer.h"
#include "routing/classifier.h"
#include "routing/prompt_text.h"
#include "routing/signals.h"

static lx_cls_model *model;
static lx_prompt_text text;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    model = lx_cls_builtin();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (model == NULL) model = lx_cls_builtin(); /* the replay driver may not call the initializer */
    lx_slice value = {(const char *)data, size};

    lx_prompt_text_read(value, &text);
    LX_FUZZ_CHECK(text.len <= LX_PROMPT_TEXT_MAX && text.context_len <= LX_PROMPT_CONTEXT_MAX);
    if (text.cut) LX_FUZZ_CHECK(text.len > LX_PROMPT_TEXT_MAX - 4);

    lx_signals sg;
    lx_signals_compute(text.text, text.len, text.context, text.context_len, &sg);
    for (int i = 0; i < LX_SIG_COUNT; i++)
        LX_FUZZ_CHECK(sg.v[i] >= 0 && sg.v[i] <= 1);
    LX_FUZZ_CHECK(sg.code_lines <= sg.lines && sg.chars <= text.len);

    lx_auto_verdict v;
    lx_auto_classify(model, value, &v);
    LX_FUZZ_CHECK(lx_cls_find(model, v.class_name, strlen(v.class_name)) >= 0);
    LX_FUZZ_CHECK(v.confidence >= 1.0 / (double)lx_cls_n_classes(model) - 1e-9 && v.confidence <= 1.0 + 1e-9);
    size_t rlen = strnlen(v.reason, sizeof v.reason);
    LX_FUZZ_CHECK(rlen < sizeof v.reason && memchr(v.reason, '\n', rlen) == NULL);

    char header[LX_AUTO_REASON_MAX * 2];
    lx_auto_header_text(v.reason, header, sizeof header);
    for (const char *c = header; *c; c++)
        LX_FUZZ_CHECK(*c >= 0x20 && *c < 0x7f);
    return 0;
}
