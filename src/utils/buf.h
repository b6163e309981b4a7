/*
 * lx_buf: a growable byte buffer with a hard cap (curl's dynbuf "toobig" idea).
 *
 * Every buffer that a client or a backend can grow is an lx_buf with a cap taken from the config;
 * an append past the cap fails with -1 and leaves the buffer as it was. The bytes are kept
 * NUL-terminated (one spare byte beyond len) so small contents can be handed to C string functions.
 * Owner frees with lx_buf_free. Not thread-safe; one owner at a time.
 */
#ifndef LX_BUF_H
#define LX_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len;
    size_t cap;
    size_t max; /* 0 means no cap: only for buffers whose size Lexora controls */
} lx_buf;

static inline void lx_buf_init(lx_buf *b, size_t max) { *b = (lx_buf){NULL, 0, 0, max}; }

/* lx_buf_append when the bytes do not fit the room the buffer has: grows it, or refuses past the cap. */
int lx_buf_append_grow(lx_buf *b, const void *data, size_t n);
/* Inline: most appends fit the room already there, and then cost a copy (of a size known when compiling,
 * for a literal) and no call. */
static inline int lx_buf_append(lx_buf *b, const void *data, size_t n)
{
    if (n >= b->cap - b->len || (b->max && b->len + n > b->max)) return lx_buf_append_grow(b, data, n);
    if (n) memcpy(b->p + b->len, data, n); /* data may be NULL when n is 0 */
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}
/* Inline, so the length of a string literal is known when compiling (no strlen call on every request). */
static inline int lx_buf_append_str(lx_buf *b, const char *s) { return lx_buf_append(b, s, strlen(s)); }
/* Appends v in decimal (base 10) or lowercase hexadecimal (base 16), without printf. */
int lx_buf_append_uint(lx_buf *b, unsigned long long v, unsigned base);
int lx_buf_printf(lx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int lx_buf_vprintf(lx_buf *b, const char *fmt, va_list ap);
/* Appends s as the inside of a JSON string (quotes not included), escaping as JSON requires; a byte
 * that is not part of well-formed UTF-8 becomes \ufffd, so the output is always valid JSON text. */
int lx_buf_json_escape(lx_buf *b, const char *s, size_t n);
/* The first byte at or after i of s[0..len) that ends a run of plain JSON string bytes: '"', '\\', a control
 * byte or a non-ASCII one; len if none. 8 bytes at a time on little-endian hosts (the hot path of the body
 * scan and of the access log). */
static inline size_t lx_json_plain_end(const char *s, size_t len, size_t i)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    for (; i + 8 <= len; i += 8) {
        uint64_t v, q, b;
        memcpy(&v, s + i, 8);
        q = v ^ (ones * '"');
        b = v ^ (ones * '\\');
        /* a high bit on each flagged byte; the lowest one is always real (a borrow only spreads upwards) */
        uint64_t m = (((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v) | v) & highs;
        if (m) return i + ((size_t)__builtin_ctzll(m) >> 3);
    }
#endif
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
    }
    return i;
}
/* The length (2..4) of the well-formed UTF-8 sequence at s[i] (a byte >= 0x80) of s[0..len), or 0. */
size_t lx_utf8_seq(const char *s, size_t len, size_t i);
/* Makes room for n more bytes; returns the write position or NULL over the cap. Commit with len += k. */
char *lx_buf_reserve(lx_buf *b, size_t n);
/* Drops the first n bytes. */
void lx_buf_consume(lx_buf *b, size_t n);
static inline void lx_buf_reset(lx_buf *b)
{
    b->len = 0;
    if (b->p) b->p[0] = '\0';
}
void lx_buf_free(lx_buf *b);
/* Hands the bytes to the caller (who frees them) and leaves the buffer empty. */
char *lx_buf_steal(lx_buf *b, size_t *len);

#endif
