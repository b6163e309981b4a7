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
#include <string.h>

typedef struct {
    char *p;
    size_t len;
    size_t cap;
    size_t max; /* 0 means no cap: only for buffers whose size Lexora controls */
} lx_buf;

static inline void lx_buf_init(lx_buf *b, size_t max) { *b = (lx_buf){NULL, 0, 0, max}; }

int lx_buf_append(lx_buf *b, const void *data, size_t n);
/* Inline, so the length of a string literal is known when compiling (no strlen call on every request). */
static inline int lx_buf_append_str(lx_buf *b, const char *s) { return lx_buf_append(b, s, strlen(s)); }
/* Appends v in decimal (base 10) or lowercase hexadecimal (base 16), without printf. */
int lx_buf_append_uint(lx_buf *b, unsigned long long v, unsigned base);
int lx_buf_printf(lx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int lx_buf_vprintf(lx_buf *b, const char *fmt, va_list ap);
/* Appends s as the inside of a JSON string (quotes not included), escaping as JSON requires; a byte
 * that is not part of well-formed UTF-8 becomes \ufffd, so the output is always valid JSON text. */
int lx_buf_json_escape(lx_buf *b, const char *s, size_t n);
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
