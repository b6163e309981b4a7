/*
 * The explicit signals of the automatic-routing analyzer: what a prompt's shape says about it, measured in
 * one pass over its bytes — the share of Japanese script, code fences and code-shaped lines, programming
 * words, its length and whether it reads as a question. Each is a number in [0, 1]; the classifier
 * (routing/classifier.h) weighs them next to its character n-grams, and the analyzer's reason names the
 * ones that decided.
 * Invariants: linear in the text's length, no allocation; any bytes (invalid UTF-8 is skipped). Pure;
 * any thread.
 */
#ifndef LX_SIGNALS_H
#define LX_SIGNALS_H

#include <stddef.h>

typedef enum {
    LX_SIG_JA_SHARE,     /* letters in Japanese script (kana, kanji) over all letters */
    LX_SIG_CODE_FENCE,   /* 1 when the prompt has a ``` fence */
    LX_SIG_CODE_SHARE,   /* code-shaped lines over non-empty lines */
    LX_SIG_CODE_LINES,   /* how many code-shaped lines: log2(1 + n) / 6, at most 1 */
    LX_SIG_PROG_WORDS,   /* programming words (def, python, stack trace, SQL, ...): log2(1 + n) / 4, at most 1 */
    LX_SIG_SHORT,        /* 1 up to 24 characters, 0.5 up to 60, else 0 */
    LX_SIG_LENGTH,       /* log2(1 + characters) / 14, at most 1 */
    LX_SIG_QUESTION,     /* ends as a question: ? or ？, or Japanese か / かな / ですか */
    LX_SIG_WH_START,     /* starts with what / who / when / where / which (a factual question's shape) */
    LX_SIG_LINES,        /* log2(1 + lines) / 8, at most 1 */
    LX_SIG_MATH,         /* digits and math operators over non-space characters, when no line is code */
    LX_SIG_CONTEXT_CODE, /* the context (system prompt, the turn before) has a fence or code-shaped lines */
    LX_SIG_COUNT
} lx_signal;

typedef struct {
    float v[LX_SIG_COUNT];
    unsigned chars, lines, code_lines, prog_words; /* the counts behind them */
} lx_signals;

void lx_signals_compute(const char *text, size_t len, const char *context, size_t context_len, lx_signals *out);

/* "ja_share", "code_fence", ...: the names the reason and the model file use. */
const char *lx_signal_name(lx_signal s);

/* Is the code point Japanese script (hiragana, katakana, half-width katakana, CJK ideographs)? */
int lx_is_japanese_cp(unsigned cp);

/* Decodes the UTF-8 character at s[*i] (len bytes in all) and moves *i past it; an invalid byte is
 * skipped and read as U+FFFD. */
unsigned lx_utf8_next(const char *s, size_t len, size_t *i);

#endif
