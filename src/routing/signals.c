/*
 * The analyzer's explicit signals. See signals.h.
 *
 * One pass over the bytes: ASCII is looked at byte by byte (words, line shapes), anything above is decoded
 * once to tell Japanese script from the rest. A line is "code-shaped" when it looks like a statement,
 * whatever the language around it: it ends with ; { or }, starts like a declaration or a shell prompt
 * (def, import, #include, $, >>>), has an operator prose does not use (=>, ==, ->, &&, ::, ();), is dense
 * in brackets and operators, or is indented and holds them. The programming words are a fixed set of
 * lowercase ASCII words (languages, tools, the vocabulary of errors); Japanese wording is left to the
 * classifier's n-grams.
 */
#include "routing/signals.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "utils/common.h"

static const char *const names[LX_SIG_COUNT] = {
    [LX_SIG_JA_SHARE] = "ja_share",
    [LX_SIG_CODE_FENCE] = "code_fence",
    [LX_SIG_CODE_SHARE] = "code_share",
    [LX_SIG_CODE_LINES] = "code_lines",
    [LX_SIG_PROG_WORDS] = "prog_words",
    [LX_SIG_SHORT] = "short",
    [LX_SIG_LENGTH] = "length",
    [LX_SIG_QUESTION] = "question",
    [LX_SIG_WH_START] = "wh_start",
    [LX_SIG_LINES] = "lines",
    [LX_SIG_MATH] = "math",
    [LX_SIG_CONTEXT_CODE] = "context_code",
};

const char *lx_signal_name(lx_signal s) { return (unsigned)s < LX_SIG_COUNT ? names[s] : "?"; }

int lx_is_japanese_cp(unsigned cp)
{
    return (cp >= 0x3041 && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
           (cp >= 0xFF66 && cp <= 0xFF9D) || (cp >= 0xF900 && cp <= 0xFAFF);
}

unsigned lx_utf8_next(const char *s, size_t len, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i;
    unsigned c = u[k];
    size_t n = c < 0x80 ? 1 : c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (n == 0 || len - k < n) {
        *i = k + 1;
        return c < 0x80 ? c : 0xFFFD;
    }
    unsigned cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (size_t j = 1; j < n; j++) {
        if ((u[k + j] & 0xC0) != 0x80) {
            *i = k + 1;
            return 0xFFFD;
        }
        cp = cp << 6 | (u[k + j] & 0x3F);
    }
    *i = k + n;
    return cp;
}

/* ---- programming words: a small open-addressing set, built once ---- */

static const char *const prog_words[] = {
    "def",       "function",  "func",     "fn",      "class",      "return",   "import",     "const",
    "let",       "var",       "int",      "void",    "struct",     "public",   "private",    "static",
    "async",     "await",     "null",     "nullptr", "lambda",     "printf",   "println",    "console",
    "exception", "traceback", "segfault", "compile", "compiler",   "python",   "javascript", "typescript",
    "java",      "golang",    "rust",     "kotlin",  "swift",      "sql",      "select",     "regex",
    "regexp",    "json",      "yaml",     "api",     "bug",        "debug",    "refactor",   "unittest",
    "pytest",    "jest",      "git",      "docker",  "dockerfile", "bash",     "shell",      "script",
    "code",      "html",      "css",      "react",   "vue",        "npm",      "pip",        "nodejs",
    "endpoint",  "array",     "string",   "boolean", "variable",   "method",   "recursion",  "stacktrace",
    "typeerror", "undefined", "nan",      "http",    "curl",       "csv",      "pandas",     "numpy",
    "django",    "flask",     "spring",   "golang",  "cpp",        "c++",      "kubernetes", "terraform",
    "snippet",   "syntax",    "runtime",  "linter",  "eslint",     "makefile", "cmake",      "gcc",
};

#define WORDSET_SIZE 256 /* a power of two, over twice the words */
#define WORD_MAX     16

static const char *wordset[WORDSET_SIZE];
static unsigned char wordlen[WORDSET_SIZE];
static uint32_t first_by_len[WORD_MAX + 1]; /* bit (first letter - 'a'): some word of that length starts so */
static pthread_once_t wordset_once = PTHREAD_ONCE_INIT;

static uint32_t word_hash(const char *w, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)w[i]) * 16777619u;
    return h;
}

static void starts_build(void);

static void ascii_build(void);

static void wordset_build(void)
{
    starts_build();
    ascii_build();
    for (size_t i = 0; i < LX_ARRAY_LEN(prog_words); i++) {
        const char *w = prog_words[i];
        uint32_t k = word_hash(w, strlen(w)) & (WORDSET_SIZE - 1);
        while (wordset[k] && strcmp(wordset[k], w) != 0)
            k = (k + 1) & (WORDSET_SIZE - 1);
        wordset[k] = w;
        wordlen[k] = (unsigned char)strlen(w);
        if (w[0] >= 'a' && w[0] <= 'z' && wordlen[k] <= WORD_MAX) first_by_len[wordlen[k]] |= 1u << (w[0] - 'a');
    }
}

static bool is_prog_word(const char *w, size_t n)
{
    if (n > WORD_MAX || (w[0] >= 'a' && w[0] <= 'z' && !(first_by_len[n] >> (w[0] - 'a') & 1))) return false;
    for (uint32_t k = word_hash(w, n) & (WORDSET_SIZE - 1); wordset[k]; k = (k + 1) & (WORDSET_SIZE - 1))
        if (wordlen[k] == n && memcmp(wordset[k], w, n) == 0) return true;
    return false;
}

/* ---- line shapes ---- */

static bool starts(const char *t, size_t m, const char *lit)
{
    if (t[0] != lit[0]) return false;
    size_t n = strlen(lit);
    return m >= n && memcmp(t, lit, n) == 0;
}

static bool has(const char *t, size_t m, const char *lit)
{
    size_t n = strlen(lit);
    for (size_t i = 0; i + n <= m; i++)
        if (t[i] == lit[0] && memcmp(t + i, lit, n) == 0) return true;
    return false;
}

static const char *const code_starts[] = {
    "#include", "import ",  "def ",    "class ",  "function ", "const ",  "let ",   "var ",     "return ",
    "public ",  "private ", "static ", "if (",    "for (",     "while (", "} else", "elif ",    "except",
    "try:",     "SELECT ",  "INSERT ", "UPDATE ", "CREATE ",   "<?php",   "<div",   "<html",    "$ ",
    ">>> ",     "//",       "/*",      "#!",      "package ",  "func ",   "fn ",    "using ",   "print(",
    "console.", "async ",   "export ", "@",       "#define",   "int ",    "void ",  "for i in", "echo ",
};

/* Bytes that are brackets or operators, for the density test. */
static const unsigned char sym_byte[256] = {
    ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1, ['('] = 1, [')'] = 1, [';'] = 1, ['='] = 1, ['<'] = 1, ['>'] = 1};

/* The first bytes of code_starts (filled once, with the word set). */
static bool start_byte[256];

static void starts_build(void)
{
    for (size_t i = 0; i < LX_ARRAY_LEN(code_starts); i++)
        start_byte[(unsigned char)code_starts[i][0]] = true;
    start_byte['f'] = true; /* from ... import */
}

/* The first bytes of code_op's operators: most bytes are not, and skip its switch. */
static const unsigned char op_first[256] = {['='] = 1, ['!'] = 1, ['-'] = 1, [':'] = 1, ['&'] = 1, ['|'] = 1,
                                            ['+'] = 1, ['<'] = 1, ['/'] = 1, ['('] = 1, ['['] = 1};

/* An operator prose does not use, as two bytes: => == != -> :: && || += </ /> () []. */
static bool code_op(char a, char b)
{
    switch (a) {
    case '=': return b == '>' || b == '=';
    case '!': return b == '=';
    case '-': return b == '>';
    case ':': return b == ':';
    case '&': return b == '&';
    case '|': return b == '|';
    case '+': return b == '=';
    case '<': return b == '/';
    case '/': return b == '>';
    case '(': return b == ')';
    case '[': return b == ']';
    default: return false;
    }
}

/* Is the line (no newline) shaped like code? One pass over it, whatever its length. */
static bool code_line(const char *s, size_t n)
{
    size_t a = 0, b = n;
    while (a < n && (s[a] == ' ' || s[a] == '\t'))
        a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r'))
        b--;
    const char *t = s + a;
    size_t m = b - a;
    if (m == 0) return false;
    char last = t[m - 1];
    if (last == ';' || last == '{' || last == '}') return true;
    if (start_byte[(unsigned char)t[0]]) {
        for (size_t i = 0; i < LX_ARRAY_LEN(code_starts); i++)
            if (starts(t, m, code_starts[i])) return true;
        if (starts(t, m, "from ") && has(t, m, " import ")) return true;
    }
    size_t sym = 0, high = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)t[i];
        if (op_first[c] && i + 1 < m && code_op(t[i], t[i + 1])) return true;
        sym += sym_byte[c];
        high += c >= 0x80;
    }
    if (m >= 8 && sym * 6 >= m) return true;
    return a >= 4 && sym > 0 && high == 0;
}

/* Lines and code-shaped lines of a text, and whether it has a fence. */
static void shape(const char *s, size_t len, unsigned *lines, unsigned *code, bool *fence)
{
    *lines = *code = 0;
    *fence = false;
    for (size_t a = 0; a < len;) {
        const char *nl = memchr(s + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - s) : len;
        size_t k = a;
        while (k < b && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
            k++;
        if (k < b) {
            (*lines)++;
            if (b - k >= 3 && memcmp(s + k, "```", 3) == 0)
                *fence = true;
            else if (code_line(s + a, b - a))
                (*code)++;
        }
        a = b + 1;
    }
}

/* ---- the rest of the pass: script, words, math ---- */

typedef struct {
    unsigned letters, ja, nonspace, mathy, words;
    char first_word[WORD_MAX + 1];
    bool first_done;
} tally;

static bool is_alpha(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static void word_end(tally *t, const char *w, size_t n, unsigned *prog)
{
    if (!t->first_done) {
        memcpy(t->first_word, w, n);
        t->first_word[n] = '\0';
        t->first_done = true;
    }
    if (n >= 2 && is_prog_word(w, n)) (*prog)++;
}

static const unsigned char math_byte[128] = {
    ['+'] = 1, ['-'] = 1, ['*'] = 1, ['/'] = 1, ['^'] = 1, ['='] = 1, ['<'] = 1, ['>'] = 1, ['('] = 1, [')'] = 1};

static bool math_cp(unsigned cp)
{
    return cp == 0xD7 || cp == 0xF7 || cp == 0x221A || cp == 0x3C0 || cp == 0x2211 || cp == 0x222B || cp == 0x2264 ||
           cp == 0x2265 || cp == 0x2260 || cp == 0xB2;
}

/* What an ASCII byte is to the pass, in one lookup. */
enum { A_ALPHA = 1, A_DIGIT = 2, A_WORD = 4, A_SPACE = 8, A_MATH = 16 };
static unsigned char ascii_class[128];

static void ascii_build(void)
{
    for (unsigned c = 0; c < 128; c++) {
        unsigned char k = 0;
        if (is_alpha((char)c)) k |= A_ALPHA | A_WORD;
        if (is_digit((char)c)) k |= A_DIGIT | A_WORD | A_MATH;
        if (c == '_' || c == '+') k |= A_WORD;
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') k |= A_SPACE;
        if (math_byte[c]) k |= A_MATH;
        ascii_class[c] = k;
    }
}

/* One pass over the text. The counts are kept in locals and stored once at the end: behind the pointers they
 * would be reloaded after every byte written to the word buffer (a char store may alias anything). */
static void scan(const char *s, size_t len, tally *t, unsigned *chars, unsigned *prog)
{
    char w[WORD_MAX];
    size_t wn = 0;
    bool long_word = false;
    unsigned n_chars = 0, letters = 0, ja = 0, nonspace = 0, mathy = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        unsigned cp = c < 0x80 ? (i++, c) : lx_utf8_next(s, len, &i);
        unsigned k = cp < 0x80 ? ascii_class[cp] : 0;
        n_chars++;
        if (k & A_WORD) {
            if (wn < WORD_MAX)
                w[wn++] = (char)(k & A_ALPHA ? cp | 0x20 : cp);
            else
                long_word = true;
        } else if (wn) {
            if (!long_word) word_end(t, w, wn, prog);
            t->first_done = true;
            wn = 0;
            long_word = false;
        }
        if (cp < 0x80) {
            if (k & A_SPACE) continue;
            nonspace++;
            letters += (k & A_ALPHA) != 0;
            mathy += (k & A_MATH) != 0;
            continue;
        }
        if (cp == 0x3000) continue;
        nonspace++;
        if (lx_is_japanese_cp(cp)) {
            letters++;
            ja++;
        } else if (math_cp(cp)) {
            mathy++;
        } else if (!(cp >= 0x3000 && cp <= 0x303F) && !(cp >= 0xFF00 && cp <= 0xFF65)) {
            letters++;
        }
        if (!t->first_done) t->first_done = true;
    }
    if (wn && !long_word) word_end(t, w, wn, prog);
    *chars += n_chars;
    t->letters += letters;
    t->ja += ja;
    t->nonspace += nonspace;
    t->mathy += mathy;
}

/* The text ends as a question: ? or ？, or か, かな, かね, ですか (with a 。 after). */
static bool ends_as_question(const char *s, size_t len)
{
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == '\t'))
        len--;
    if (len >= 3 && memcmp(s + len - 3, "\xe3\x80\x82", 3) == 0) len -= 3; /* 。 */
    if (len >= 1 && s[len - 1] == '?') return true;
    if (len >= 3 && memcmp(s + len - 3, "\xef\xbc\x9f", 3) == 0) return true;   /* ？ */
    if (len >= 3 && memcmp(s + len - 3, "\xe3\x81\x8b", 3) == 0) return true;   /* か */
    if (len >= 6 && (memcmp(s + len - 6, "\xe3\x81\x8b\xe3\x81\xaa", 6) == 0 || /* かな */
                     memcmp(s + len - 6, "\xe3\x81\x8b\xe3\x81\xad", 6) == 0))  /* かね */
        return true;
    return false;
}

static float clip1(double v) { return v > 1 ? 1.0f : v < 0 ? 0.0f : (float)v; }

void lx_signals_compute(const char *text, size_t len, const char *context, size_t context_len, lx_signals *out)
{
    pthread_once(&wordset_once, wordset_build);
    memset(out, 0, sizeof *out);
    if (text == NULL) len = 0;
    tally t = {0};
    unsigned chars = 0, prog = 0, lines, code, ctx_lines, ctx_code;
    bool fence, ctx_fence;
    scan(text, len, &t, &chars, &prog);
    shape(text, len, &lines, &code, &fence);
    shape(context ? context : "", context ? context_len : 0, &ctx_lines, &ctx_code, &ctx_fence);
    out->chars = chars;
    out->lines = lines;
    out->code_lines = code;
    out->prog_words = prog;
    out->v[LX_SIG_JA_SHARE] = t.letters ? (float)t.ja / (float)t.letters : 0;
    out->v[LX_SIG_CODE_FENCE] = fence;
    out->v[LX_SIG_CODE_SHARE] = lines ? (float)code / (float)lines : 0;
    out->v[LX_SIG_CODE_LINES] = clip1(log2(1.0 + code) / 6);
    out->v[LX_SIG_PROG_WORDS] = clip1(log2(1.0 + prog) / 4);
    out->v[LX_SIG_SHORT] = chars <= 24 ? 1.0f : chars <= 60 ? 0.5f : 0;
    out->v[LX_SIG_LENGTH] = clip1(log2(1.0 + chars) / 14);
    out->v[LX_SIG_QUESTION] = ends_as_question(text, len);
    static const char *const wh[] = {"what", "who", "when", "where", "which", "whats"};
    for (size_t i = 0; i < LX_ARRAY_LEN(wh); i++)
        if (strcmp(t.first_word, wh[i]) == 0) out->v[LX_SIG_WH_START] = 1;
    out->v[LX_SIG_LINES] = clip1(log2(1.0 + lines) / 8);
    out->v[LX_SIG_MATH] = code == 0 && !fence && t.nonspace ? (float)t.mathy / (float)t.nonspace : 0;
    out->v[LX_SIG_CONTEXT_CODE] = ctx_fence || ctx_code >= 2 ? 1.0f : ctx_code ? 0.5f : 0;
}
