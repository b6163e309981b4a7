/*
 * The table of backend kinds, and the upstream request a kind fills. See kind.h.
 * Invariants: the built-in kinds come first, at the indexes of lx_backend_kind (LX_BACKEND_VLLM ...); a
 * registered kind is appended and never removed; names are unique.
 */
#include "backends/kind.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "backends/kinds.h"

#define MAX_KINDS 16

static const lx_kind *kinds[MAX_KINDS] = {
    [LX_BACKEND_VLLM] = &lx_kind_vllm,           [LX_BACKEND_OLLAMA] = &lx_kind_ollama,
    [LX_BACKEND_LLAMACPP] = &lx_kind_llamacpp,   [LX_BACKEND_OPENAI] = &lx_kind_openai,
    [LX_BACKEND_ANTHROPIC] = &lx_kind_anthropic,
};
static size_t n_kinds = LX_BACKEND_KIND_COUNT;

int lx_kind_find(const char *name)
{
    for (size_t i = 0; i < n_kinds; i++)
        if (strcmp(kinds[i]->name, name) == 0) return (int)i;
    return -1;
}

const lx_kind *lx_kind_get(lx_backend_kind k) { return (unsigned)k < n_kinds ? kinds[k] : kinds[LX_BACKEND_OPENAI]; }

const char *lx_backend_kind_name(lx_backend_kind k) { return (unsigned)k < n_kinds ? kinds[k]->name : "unknown"; }

size_t lx_kind_count(void) { return n_kinds; }

int lx_kind_register(const lx_kind *k)
{
    if (n_kinds == MAX_KINDS || k->name == NULL || k->request == NULL || lx_kind_find(k->name) >= 0) return -1;
    kinds[n_kinds] = k;
    return (int)n_kinds++;
}

/* ---------- the upstream request ---------- */

void lx_kind_request_reset(lx_kind_request *r)
{
    for (size_t i = 0; i < LX_KIND_MAX_HEADERS; i++) {
        free(r->owned[i]);
        r->owned[i] = NULL;
    }
    r->n_headers = 0;
    r->headers[0] = NULL;
    free(r->path_owned);
    r->path_owned = NULL;
    r->path = "";
    lx_buf_free(&r->body_buf);
    r->body = (lx_slice){NULL, 0};
}

static int add_header(lx_kind_request *r, const char *line, char *owned)
{
    if (r->n_headers == LX_KIND_MAX_HEADERS) {
        free(owned);
        return -1;
    }
    r->owned[r->n_headers] = owned;
    r->headers[r->n_headers++] = line;
    r->headers[r->n_headers] = NULL;
    return 0;
}

int lx_kind_request_header(lx_kind_request *r, const char *line) { return add_header(r, line, NULL); }

static char *vformat(const char *fmt, va_list ap)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_buf_vprintf(&b, fmt, ap);
    char *s = lx_buf_steal(&b, NULL);
    return s ? s : lx_xstrdup(""); /* nothing was formatted */
}

int lx_kind_request_headerf(lx_kind_request *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = vformat(fmt, ap);
    va_end(ap);
    return add_header(r, line, line);
}

void lx_kind_request_pathf(lx_kind_request *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(r->path_owned);
    r->path = r->path_owned = vformat(fmt, ap);
    va_end(ap);
}

/* ---------- translated streams ---------- */

void lx_kind_stream_init(lx_kind_stream *s, const lx_kind *k, size_t max_event)
{
    *s = (lx_kind_stream){.kind = k};
    s->state = k->stream_state_size ? lx_xcalloc(1, k->stream_state_size) : NULL;
    lx_buf_init(&s->pending, max_event);
    lx_buf_init(&s->out, 0);
}

void lx_kind_stream_free(lx_kind_stream *s)
{
    free(s->state);
    s->state = NULL;
    lx_buf_free(&s->pending);
    lx_buf_free(&s->out);
}

/* The length of the complete event at the start of p[0..n) and, in *skip, of it and its terminator; 0 when
 * the event is not complete yet. SSE: up to a blank line (\n\n, \r\n\r\n, or mixed). Lines: up to \n. */
static size_t event_len(lx_framing f, const char *p, size_t n, size_t *skip)
{
    for (const char *nl = memchr(p, '\n', n); nl; nl = memchr(nl + 1, '\n', n - (size_t)(nl + 1 - p))) {
        size_t at = (size_t)(nl - p);
        size_t end = at > 0 && p[at - 1] == '\r' ? at - 1 : at;
        if (f == LX_FRAME_LINES) {
            *skip = at + 1;
            return end;
        }
        if (end > 0 && p[end - 1] == '\n') { /* this newline ends an empty line */
            *skip = at + 1;
            return end - 1 > 0 && p[end - 2] == '\r' ? end - 2 : end - 1;
        }
        if (end == 0) { /* a blank line with no event before it */
            *skip = 1;
            return 0;
        }
    }
    return 0;
}

static int translate(lx_kind_stream *s, const lx_kind_ctx *ctx, lx_slice ev)
{
    if (ev.len == 0) return 0;
    return s->kind->stream_event(s->state, ctx, ev, &s->out);
}

static void flush(lx_kind_stream *s, lx_kind_emit_fn emit, void *ud)
{
    if (s->out.len) emit(ud, s->out.p, s->out.len);
    lx_buf_reset(&s->out);
}

int lx_kind_stream_feed(lx_kind_stream *s, const lx_kind_ctx *ctx, const char *data, size_t len, lx_kind_emit_fn emit,
                        void *ud)
{
    if (lx_buf_append(&s->pending, data, len) != 0) return -1;
    size_t off = 0, skip = 0, n;
    int rc = 0;
    while (rc == 0 && off < s->pending.len) {
        skip = 0;
        n = event_len(s->kind->stream_framing, s->pending.p + off, s->pending.len - off, &skip);
        if (skip == 0) break;
        rc = translate(s, ctx, (lx_slice){s->pending.p + off, n});
        off += skip;
    }
    lx_buf_consume(&s->pending, off);
    flush(s, emit, ud);
    return rc;
}

int lx_kind_stream_end(lx_kind_stream *s, const lx_kind_ctx *ctx, lx_kind_emit_fn emit, void *ud)
{
    int rc = translate(s, ctx, (lx_slice){s->pending.p, s->pending.len});
    lx_buf_reset(&s->pending);
    if (rc == 0 && s->kind->stream_end) rc = s->kind->stream_end(s->state, ctx, &s->out);
    flush(s, emit, ud);
    return rc;
}
