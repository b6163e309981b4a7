/*
 * Fuzz target: the SSE relay scanner (api/sse.c), which sees every byte a backend streams.
 *
 * Input: 1 byte of flags (strip_usage, the max_event cap), 1 byte seeding where the stream is cut into
 * reads, the rest is the upstream stream. The same bytes are fed once split at input-derived points.
 * Checks, against a deliberately simple reference splitter written here:
 *  - every emit made during feeding is a whole number of complete events (never a partial one);
 *  - without strip_usage, what comes out is what went in, byte for byte;
 *  - with it, what comes out is the input's events in order minus some dropped ones, each dropped
 *    event being a complete one that mentions "usage";
 *  - after finish, nothing is held back (the trailing incomplete bytes come out too);
 *  - a feed that fails (-1) only does so because an event outgrew max_event.
 */
#include <string.h>

#include "api/sse.h"
#include "fuzz.h"

typedef struct {
    lx_buf out;       /* everything emitted, in order */
    bool finishing;   /* emits now come from lx_sse_finish: the trailing bytes may be incomplete */
    bool bad_partial; /* an emit during feeding did not end at an event end */
} sink;

/* The offset just past the first event of d (its blank line included), or 0 when d holds no whole one.
 * The rule of sse.h: a line is ended by "\n"; a line that is empty or only "\r" ends the event. */
static size_t ref_event_end(const char *d, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] != '\n') continue;
        size_t l = i - line;
        if (l == 0 || (l == 1 && d[line] == '\r')) return i + 1;
        line = i + 1;
    }
    return 0;
}

/* True when d is exactly a run of complete events. */
static bool whole_events(const char *d, size_t n)
{
    while (n > 0) {
        size_t e = ref_event_end(d, n);
        if (e == 0) return false;
        d += e;
        n -= e;
    }
    return true;
}

static void on_emit(void *ud, const char *data, size_t len)
{
    sink *k = ud;
    LX_FUZZ_CHECK(len > 0);
    if (!k->finishing && !whole_events(data, len)) k->bad_partial = true;
    LX_FUZZ_CHECK(lx_buf_append(&k->out, data, len) == 0);
}

/* out must be in's events in order with some complete, usage-mentioning events left out. */
static void check_stripped(const char *in, size_t n, const char *out, size_t m)
{
    while (n > 0) {
        size_t e = ref_event_end(in, n);
        if (e == 0) { /* the trailing incomplete event: never dropped */
            LX_FUZZ_CHECK(m == n && memcmp(in, out, n) == 0);
            return;
        }
        if (m >= e && memcmp(in, out, e) == 0) {
            out += e;
            m -= e;
        } else {
            LX_FUZZ_CHECK(memmem(in, e, "\"usage\"", 7) != NULL);
        }
        in += e;
        n -= e;
    }
    LX_FUZZ_CHECK(m == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    bool strip = data[0] & 1;
    size_t max_event = (data[0] & 2) ? 64 : 1 << 20;
    uint32_t seed = data[1] * 2654435761u + 1;
    const char *in = (const char *)data + 2;
    size_t n = size - 2;

    lx_sse s;
    lx_sse_init(&s, strip, max_event);
    sink k = {.finishing = false, .bad_partial = false};
    lx_buf_init(&k.out, 0);
    bool failed = false;
    for (size_t off = 0; off < n;) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = (seed >> 16) % 64; /* 0-byte reads included: the relay may see empty ones */
        if (piece > n - off) piece = n - off;
        if (lx_sse_feed(&s, in + off, piece, on_emit, &k) != 0) {
            failed = true;
            break;
        }
        off += piece;
    }
    LX_FUZZ_CHECK(!k.bad_partial);
    if (failed) {
        LX_FUZZ_CHECK(max_event < (1 << 20) && k.out.len <= n);
    } else {
        k.finishing = true;
        lx_sse_finish(&s, on_emit, &k);
        LX_FUZZ_CHECK(s.pending.len == 0);
        if (!strip)
            LX_FUZZ_CHECK(k.out.len == n && (n == 0 || memcmp(k.out.p, in, n) == 0));
        else
            check_stripped(in, n, k.out.p ? k.out.p : "", k.out.len);
        if (s.saw_usage) LX_FUZZ_CHECK(s.usage.prompt_tokens >= -1 && s.usage.completion_tokens >= -1);
    }
    lx_sse_free(&s);
    lx_buf_free(&k.out);
    return 0;
}
