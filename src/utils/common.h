/*
 * Small shared pieces: a byte slice, allocation wrappers that abort on exhaustion, a monotonic clock.
 *
 * lx_xmalloc and friends are for sizes Lexora chooses (structs, bounded buffers); they abort the process
 * when memory runs out, as there is nothing sensible left to do. Sizes a client controls go through
 * lx_buf (buf.h), which has a hard cap and reports failure instead.
 * Thread-safe: everything here may be called from any thread.
 */
#ifndef LX_COMMON_H
#define LX_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define LX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LX_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define LX_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* The struct of `type` that holds *ptr as its `member` (an intrusive list node, an embedded ticket). */
#define LX_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/*
 * Invariants (haproxy's BUG_ON, redis's serverAssert): LX_ASSERT(cond) checks cond in debug and test
 * builds (NDEBUG not defined) and, when it is false, logs the file, line and condition to stderr and
 * aborts. Release builds compile it out, cond included: it must have no side effects.
 */
#ifndef NDEBUG
#define LX_ASSERT(cond) ((cond) ? (void)0 : lx_assert_fail(#cond, __FILE__, __LINE__))
#else
#define LX_ASSERT(cond) ((void)0)
#endif
_Noreturn void lx_assert_fail(const char *cond, const char *file, int line);

/* A view of bytes owned by someone else; not NUL-terminated. */
typedef struct {
    const char *p;
    size_t len;
} lx_slice;

#define LX_SLICE_LIT(s) ((lx_slice){(s), sizeof(s) - 1})

static inline lx_slice lx_slice_of(const char *s) { return (lx_slice){s, s ? strlen(s) : 0}; }

static inline bool lx_slice_eq(lx_slice a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.p, lit, n) == 0;
}

/* Inline, so a literal's length is known where it is called: most calls end at the length compare. */
static inline bool lx_slice_eq_nocase(lx_slice a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && strncasecmp(a.p, lit, n) == 0;
}

void *lx_xmalloc(size_t n);
void *lx_xcalloc(size_t count, size_t n);
void *lx_xrealloc(void *p, size_t n);
char *lx_xstrdup(const char *s);
char *lx_xstrndup(const char *s, size_t n);

/* The n bytes at s as a string in out, cut to cap - 1 bytes (as snprintf's "%.*s" would), without printf. */
void lx_copy_cut(char *out, size_t cap, const char *s, size_t n);
/* The string s in out, cut to cap - 1 bytes. */
static inline void lx_strcpy_cut(char *out, size_t cap, const char *s) { lx_copy_cut(out, cap, s, strnlen(s, cap)); }

/* v in base (2..16, lowercase) at out (up to 64 digits, no NUL), without printf; returns the number of digits.
 * Inline, so a constant base divides by a constant. */
static inline size_t lx_fmt_uint_base(char *out, unsigned long long v, unsigned base)
{
    char t[64], *p = t + sizeof t;
    do
        *--p = "0123456789abcdef"[v % base];
    while (v /= base);
    size_t n = (size_t)(t + sizeof t - p);
    memcpy(out, p, n);
    return n;
}
/* v in decimal at out (up to 20 digits, no NUL); returns the number of digits. */
static inline size_t lx_fmt_uint(char *out, unsigned long long v) { return lx_fmt_uint_base(out, v, 10); }
/* ms as "%.3f" would write it (a number of milliseconds with 3 decimals), without printf: the NUL-terminated
 * text in out (32 bytes), its length returned. Negative, huge or not-a-number values go through snprintf. */
size_t lx_fmt_ms(char out[32], double ms);
/* Monotonic time since an arbitrary origin. */
uint64_t lx_now_ns(void);
static inline double lx_now_ms(void) { return (double)lx_now_ns() / 1e6; }

/* Wall-clock seconds since the epoch. */
int64_t lx_wall_s(void);

#endif
