/* Allocation wrappers that abort on exhaustion, slices, clocks. See common.h. */
#include "utils/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *check(void *p, size_t n)
{
    if (p == NULL && n != 0) {
        fprintf(stderr, "lexora: out of memory allocating %zu bytes\n", n);
        abort();
    }
    return p;
}

void *lx_xmalloc(size_t n) { return check(malloc(n), n); }
void *lx_xcalloc(size_t count, size_t n) { return check(calloc(count, n), count * n); }
void *lx_xrealloc(void *p, size_t n) { return check(realloc(p, n), n); }

char *lx_xstrdup(const char *s) { return lx_xstrndup(s, strlen(s)); }

char *lx_xstrndup(const char *s, size_t n)
{
    char *d = lx_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

uint64_t lx_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t lx_wall_s(void) { return (int64_t)time(NULL); }

void lx_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "lexora: invariant broken at %s:%d: %s\n", file, line, cond);
    abort();
}

void lx_copy_cut(char *out, size_t cap, const char *s, size_t n)
{
    if (cap == 0) return;
    n = n < cap - 1 ? n : cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

size_t lx_fmt_ms(char out[32], double ms)
{
    if (!(ms >= 0 && ms < 9e15)) {
        int n = snprintf(out, 32, "%.3f", ms);
        return n > 0 && n < 32 ? (size_t)n : 0;
    }
    unsigned long long us = (unsigned long long)(ms * 1000.0 + 0.5);
    size_t n = lx_fmt_uint(out, us / 1000);
    out[n++] = '.';
    out[n++] = (char)('0' + us / 100 % 10);
    out[n++] = (char)('0' + us / 10 % 10);
    out[n++] = (char)('0' + us % 10);
    out[n] = '\0';
    return n;
}
