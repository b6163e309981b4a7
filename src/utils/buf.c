/* lx_buf: growable byte buffer with a hard cap. See buf.h. */
#include "utils/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/common.h"

char *lx_buf_reserve(lx_buf *b, size_t n)
{
    if (b->max && (n > b->max || b->len > b->max - n)) return NULL;
    size_t need = b->len + n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap *= 2;
        if (b->max && cap > b->max + 1) cap = b->max + 1;
        b->p = lx_xrealloc(b->p, cap);
        b->cap = cap;
    }
    return b->p + b->len;
}

int lx_buf_append_grow(lx_buf *b, const void *data, size_t n)
{
    char *w = lx_buf_reserve(b, n);
    if (w == NULL) return -1;
    if (n) memcpy(w, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int lx_buf_append_uint(lx_buf *b, unsigned long long v, unsigned base)
{
    char t[64];
    return lx_buf_append(b, t, lx_fmt_uint_base(t, v, base));
}

int lx_buf_vprintf(lx_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    int rc = -1;
    if (n < 0) goto done;
    if ((size_t)n < sizeof small) {
        rc = lx_buf_append(b, small, (size_t)n);
        goto done;
    }
    char *w = lx_buf_reserve(b, (size_t)n);
    if (w == NULL) goto done;
    vsnprintf(w, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
    rc = 0;
done:
    va_end(ap2);
    return rc;
}

int lx_buf_printf(lx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = lx_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Unicode's table of well-formed byte sequences (Table 3-7). */
size_t lx_utf8_seq(const char *s, size_t len, size_t i)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t avail = len - i, n;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (u[0] >= 0xC2 && u[0] <= 0xDF)
        n = 2;
    else if (u[0] >= 0xE0 && u[0] <= 0xEF)
        n = 3;
    else if (u[0] >= 0xF0 && u[0] <= 0xF4)
        n = 4;
    else
        return 0; /* a continuation byte, an overlong lead (C0, C1) or past U+10FFFF (F5..FF) */
    if (u[0] == 0xE0)
        lo = 0xA0; /* overlong */
    else if (u[0] == 0xED)
        hi = 0x9F; /* U+D800..DFFF, the surrogates */
    else if (u[0] == 0xF0)
        lo = 0x90; /* overlong */
    else if (u[0] == 0xF4)
        hi = 0x8F; /* past U+10FFFF */
    if (avail < n || u[1] < lo || u[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if ((u[k] & 0xC0) != 0x80) return 0;
    return n;
}

int lx_buf_json_escape(lx_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; (i = lx_json_plain_end(s, n, i)) < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t k = lx_utf8_seq(s, n, i);
            if (k > 0) {
                i += k - 1;
                continue;
            }
            if (lx_buf_append(b, s + start, i - start) || lx_buf_append_str(b, "\\ufffd")) return -1;
            start = i + 1;
            continue;
        }
        if (lx_buf_append(b, s + start, i - start)) return -1;
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
        const char *e = esc;
        if (c == '"')
            e = "\\\"";
        else if (c == '\\')
            e = "\\\\";
        else if (c == '\n')
            e = "\\n";
        else if (c == '\r')
            e = "\\r";
        else if (c == '\t')
            e = "\\t";
        if (lx_buf_append_str(b, e)) return -1;
        start = i + 1;
    }
    return lx_buf_append(b, s + start, n - start);
}

void lx_buf_consume(lx_buf *b, size_t n)
{
    if (n >= b->len) {
        lx_buf_reset(b);
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

void lx_buf_free(lx_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *lx_buf_steal(lx_buf *b, size_t *len)
{
    char *p = b->p;
    if (len) *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}
