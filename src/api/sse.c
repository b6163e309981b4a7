/*
 * The SSE relay scanner. See sse.h.
 *
 * Invariants:
 * - What is emitted is what was fed, byte for byte and in order, minus the usage-only events that
 *   strip_usage drops, however the input was split.
 * - An event ends at a blank line: a line end ("\n" or "\r\n") and then an empty line ("\n" or
 *   "\r\n"), in any mix. A lone "\r" is not a line end (no OpenAI-compatible server sends one).
 * - pending holds only the start of an incomplete event, never a complete one: pending empty means
 *   the next byte starts an event. Complete events go to emit straight from the caller's bytes,
 *   runs of them in one call. pending's cap is max_event.
 * - Every byte is scanned for line ends once: line_state carries the current line across feeds.
 * - JSON is read only from events whose data holds "usage" or "error" in quotes, and only their
 *   top level: the member's bytes (lx_json_find_member), then the usage counts (lx_usage_parse).
 */
#include "api/sse.h"

#include <stdint.h>
#include <string.h>

enum { LINE_START, LINE_CR, LINE_MORE }; /* the current line so far: nothing, a lone "\r", more */

#define NO_END SIZE_MAX

void lx_sse_init(lx_sse *s, bool strip_usage, size_t max_event)
{
    *s = (lx_sse){.strip_usage = strip_usage, .usage = {-1, -1}, .line_state = LINE_START};
    lx_buf_init(&s->pending, max_event);
}

void lx_sse_free(lx_sse *s) { lx_buf_free(&s->pending); }

static void advance_line(int *ls, const char *p, size_t n)
{
    if (n == 0) return;
    *ls = (*ls == LINE_START && n == 1 && p[0] == '\r') ? LINE_CR : LINE_MORE;
}

/* The offset just past the blank line that ends the event starting in d, or NO_END. */
static size_t event_end(const char *d, size_t n, int *ls)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(d + i, '\n', n - i);
        size_t j = nl ? (size_t)(nl - d) : n;
        advance_line(ls, d + i, j - i);
        if (nl == NULL) return NO_END;
        bool blank = *ls != LINE_MORE;
        *ls = LINE_START;
        if (blank) return j + 1;
        i = j + 1;
    }
    return NO_END;
}

/* ---- reading one event ------------------------------------------------------------------- */

static bool has(lx_slice s, const char *needle) { return memmem(s.p, s.len, needle, strlen(needle)) != NULL; }

static bool empty_array(lx_slice v)
{
    size_t i = 1;
    if (v.len == 0 || v.p[0] != '[') return false;
    while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == '\n' || v.p[i] == '\r'))
        i++;
    return i < v.len && v.p[i] == ']';
}

/*
 * The data of an event: the value of its one data line, or of several joined by "\n" (into joined).
 * Returns how many data lines there were.
 */
static size_t event_data(const char *ev, size_t n, lx_slice *data, lx_buf *joined)
{
    size_t lines = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(ev + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - ev) : n, next = end + 1;
        if (end > i && ev[end - 1] == '\r') end--;
        lx_slice line = {ev + i, end - i};
        i = next;
        if (line.len < 4 || memcmp(line.p, "data", 4) != 0 || (line.len > 4 && line.p[4] != ':')) continue;
        size_t skip = line.len > 4 ? (line.len > 5 && line.p[5] == ' ' ? 6 : 5) : 4;
        lx_slice v = {line.p + skip, line.len - skip};
        if (++lines == 1) {
            *data = v;
            continue;
        }
        if (lines == 2 && lx_buf_append(joined, data->p, data->len)) return 0;
        if (lx_buf_append(joined, "\n", 1) || lx_buf_append(joined, v.p, v.len)) return 0;
        *data = (lx_slice){joined->p, joined->len};
    }
    return lines;
}

/* Notes [DONE], usage and errors. Returns true for a usage-only chunk ("choices":[] and a usage). */
static bool read_data(lx_sse *s, lx_slice data)
{
    lx_slice v;
    bool usage_only = false;
    if (lx_slice_eq(data, "[DONE]")) {
        s->saw_done = true;
        return false;
    }
    if (has(data, "\"usage\"") && lx_json_find_member(data.p, data.len, "usage", &v) && v.p[0] == '{') {
        lx_usage u;
        if (lx_usage_parse(v.p, v.len, &u)) {
            s->usage = u;
            s->saw_usage = true;
            usage_only = lx_json_find_member(data.p, data.len, "choices", &v) && empty_array(v);
        }
    }
    if (has(data, "\"error\"") && lx_json_find_member(data.p, data.len, "error", &v) && !lx_slice_eq(v, "null"))
        s->saw_error = true;
    return usage_only;
}

/* Reads a complete (or, at the end, the trailing) event. Returns false when it must be dropped. */
static bool keep_event(lx_sse *s, const char *ev, size_t n, bool complete)
{
    lx_slice data = {NULL, 0};
    lx_buf joined;
    lx_buf_init(&joined, s->pending.max);
    size_t lines = event_data(ev, n, &data, &joined);
    bool drop = false;
    if (lines > 0) {
        if (complete) s->events++;
        drop = read_data(s, data) && s->strip_usage && complete;
    }
    lx_buf_free(&joined);
    return !drop;
}

/* ---- feeding ----------------------------------------------------------------------------- */

static void emit_some(lx_sse_emit_fn emit, void *ud, const char *p, size_t n)
{
    if (n) emit(ud, p, n);
}

/* d starts at an event boundary: complete events go out in runs, the tail into pending. */
static int relay(lx_sse *s, const char *d, size_t n, lx_sse_emit_fn emit, void *ud)
{
    size_t run = 0, i = 0, e;
    while ((e = event_end(d + i, n - i, &s->line_state)) != NO_END) {
        if (!keep_event(s, d + i, e, true)) {
            emit_some(emit, ud, d + run, i - run);
            run = i + e;
        }
        i += e;
    }
    emit_some(emit, ud, d + run, i - run);
    return i < n ? lx_buf_append(&s->pending, d + i, n - i) : 0;
}

int lx_sse_feed(lx_sse *s, const char *data, size_t len, lx_sse_emit_fn emit, void *ud)
{
    if (len == 0) return 0;
    if (s->pending.len > 0) {
        size_t e = event_end(data, len, &s->line_state);
        size_t take = e == NO_END ? len : e;
        if (lx_buf_append(&s->pending, data, take)) return -1;
        if (e == NO_END) return 0;
        if (keep_event(s, s->pending.p, s->pending.len, true)) emit(ud, s->pending.p, s->pending.len);
        lx_buf_reset(&s->pending);
        data += e;
        len -= e;
    }
    return relay(s, data, len, emit, ud);
}

void lx_sse_finish(lx_sse *s, lx_sse_emit_fn emit, void *ud)
{
    if (s->pending.len > 0) {
        keep_event(s, s->pending.p, s->pending.len, false);
        emit(ud, s->pending.p, s->pending.len);
    }
    lx_buf_reset(&s->pending);
    s->line_state = LINE_START;
}
