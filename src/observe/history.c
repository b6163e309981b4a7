/*
 * History: per-second counts and per-10-s latency histograms over the last 15 minutes, and the last
 * 200 requests (see history.h).
 *
 * Invariants:
 *  - a slot of `points` older than `last_sec` minus LX_HISTORY_SECONDS - 1 is zero, and likewise a slot
 *    of `slots` older than `last_slot` minus LX_HISTORY_SLOTS - 1: advancing clears the slots time
 *    moved past, so a slot holds only its own second (or step);
 *  - `recent` holds requests seq - min(seq, LX_HISTORY_RECENT) + 1 .. seq, request k at (k - 1) % RECENT;
 *  - recording is O(1) and never allocates (the rings are sized at creation).
 */
#include "observe/history.h"

#include <stdlib.h>
#include <string.h>

#include "observe/stats.h"
#include "utils/common.h"

typedef struct {
    lx_lhist latency, ttft, overhead;
} pct_slot;

struct lx_history {
    lx_history_point points[LX_HISTORY_SECONDS];
    uint64_t last_sec;
    bool any_sec;
    pct_slot slots[LX_HISTORY_SLOTS];
    uint64_t last_slot;
    bool any_slot;
    lx_history_req recent[LX_HISTORY_RECENT];
    uint64_t seq;
};

lx_history *lx_history_new(void) { return lx_xcalloc(1, sizeof(lx_history)); }

void lx_history_free(lx_history *h) { free(h); }

/* ---------- the rings ---------- */

static void advance_secs(lx_history *h, uint64_t sec)
{
    if (h->any_sec && sec <= h->last_sec) return;
    if (!h->any_sec || sec - h->last_sec >= LX_HISTORY_SECONDS)
        memset(h->points, 0, sizeof h->points);
    else
        for (uint64_t s = h->last_sec + 1; s <= sec; s++)
            h->points[s % LX_HISTORY_SECONDS] = (lx_history_point){0};
    h->last_sec = sec;
    h->any_sec = true;
}

static void advance_slots(lx_history *h, uint64_t slot)
{
    if (h->any_slot && slot <= h->last_slot) return;
    if (!h->any_slot || slot - h->last_slot >= LX_HISTORY_SLOTS)
        memset(h->slots, 0, sizeof h->slots);
    else
        for (uint64_t s = h->last_slot + 1; s <= slot; s++)
            memset(&h->slots[s % LX_HISTORY_SLOTS], 0, sizeof h->slots[0]);
    h->last_slot = slot;
    h->any_slot = true;
}

/* The point of second sec if it is still in the window (after advancing to sec), else NULL. */
static lx_history_point *point_at(lx_history *h, uint64_t sec)
{
    advance_secs(h, sec);
    if (sec + LX_HISTORY_SECONDS <= h->last_sec) return NULL; /* older than the window (clock stepped back) */
    return &h->points[sec % LX_HISTORY_SECONDS];
}

static pct_slot *slot_at(lx_history *h, uint64_t slot)
{
    advance_slots(h, slot);
    if (slot + LX_HISTORY_SLOTS <= h->last_slot) return NULL;
    return &h->slots[slot % LX_HISTORY_SLOTS];
}

/* ---------- recording ---------- */

/* src into dst[cap], cut at a UTF-8 character boundary; NULL is "". */
static void copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n == cap - 1 && src[n] != '\0')
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80) /* src[n] continues a character: cut before it */
            n--;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

#define COPY(dst, src) copy_field((dst), sizeof(dst), (src))

static int32_t tokens_of(long v) { return v < 0 ? -1 : v > INT32_MAX ? INT32_MAX : (int32_t)v; }

static uint32_t add_u32(uint32_t a, long b)
{
    return b <= 0 ? a : (uint64_t)a + (uint64_t)b > UINT32_MAX ? UINT32_MAX : a + (uint32_t)b;
}

static void keep_request(lx_history *h, int64_t wall_ms, const lx_access_rec *rec)
{
    h->seq++;
    lx_history_req *r = &h->recent[(h->seq - 1) % LX_HISTORY_RECENT];
    r->seq = h->seq;
    r->time_ms = wall_ms;
    COPY(r->id, rec->request_id);
    COPY(r->user, rec->user);
    COPY(r->model, rec->model);
    COPY(r->model_used, rec->model_used);
    COPY(r->route, rec->route);
    COPY(r->variant, rec->experiment ? rec->variant : NULL);
    COPY(r->backend, rec->backend);
    COPY(r->error_code, rec->error_code);
    COPY(r->priority, rec->priority);
    r->status = rec->status;
    r->stream = rec->stream;
    r->latency_ms = rec->latency_ms >= 0 ? (float)rec->latency_ms : 0;
    r->ttft_ms = rec->ttft_ms >= 0 ? (float)rec->ttft_ms : -1;
    r->prompt_tokens = tokens_of(rec->prompt_tokens);
    r->completion_tokens = tokens_of(rec->completion_tokens);
}

void lx_history_record(lx_history *h, uint64_t sec, int64_t wall_ms, const lx_access_rec *rec)
{
    if (h == NULL) return;
    bool err = rec->status >= 400 || rec->error_code != NULL;
    lx_history_point *p = point_at(h, sec);
    if (p) {
        p->requests = add_u32(p->requests, 1);
        p->errors = add_u32(p->errors, err);
        p->rate_limited = add_u32(p->rate_limited, rec->status == 429);
        p->prompt_tokens = add_u32(p->prompt_tokens, rec->prompt_tokens);
        p->completion_tokens = add_u32(p->completion_tokens, rec->completion_tokens);
    }
    pct_slot *s = slot_at(h, sec / LX_HISTORY_STEP);
    if (s) {
        lx_lhist_add(&s->latency, rec->latency_ms >= 0 ? rec->latency_ms : 0);
        lx_lhist_add(&s->overhead, rec->overhead_ms);
        if (rec->stream && rec->ttft_ms >= 0 && rec->status < 400) lx_lhist_add(&s->ttft, rec->ttft_ms);
    }
    keep_request(h, wall_ms, rec);
}

/* ---------- reading ---------- */

void lx_history_point_get(lx_history *h, uint64_t now_sec, uint64_t sec, lx_history_point *out)
{
    *out = (lx_history_point){0};
    if (h == NULL || sec > now_sec) return;
    advance_secs(h, now_sec);
    if (sec <= h->last_sec && sec + LX_HISTORY_SECONDS > h->last_sec) *out = h->points[sec % LX_HISTORY_SECONDS];
}

size_t lx_history_recent_count(const lx_history *h)
{
    return h ? (size_t)LX_MIN(h->seq, (uint64_t)LX_HISTORY_RECENT) : 0;
}

const lx_history_req *lx_history_recent_at(const lx_history *h, size_t i)
{
    size_t n = lx_history_recent_count(h);
    if (i >= n) return NULL;
    uint64_t seq = h->seq - n + 1 + i;
    return &h->recent[(seq - 1) % LX_HISTORY_RECENT];
}

/* ---------- rendering ---------- */

static void json_string(lx_buf *b, const char *s)
{
    lx_buf_append(b, "\"", 1);
    lx_buf_json_escape(b, s, strlen(s));
    lx_buf_append(b, "\"", 1);
}

/* The first second (or slot) to render for a reader whose next is `next`, in a window of n ending before `end`. */
static uint64_t first_unit(bool started, uint64_t next, uint64_t end, uint64_t n)
{
    uint64_t lo = end > n - 1 ? end - (n - 1) : 0;
    return started && next > lo ? next : lo;
}

typedef enum { F_REQUESTS, F_ERRORS, F_RATE_LIMITED, F_PROMPT, F_COMPLETION, F_COUNT } point_field;

static uint32_t point_field_of(const lx_history_point *p, point_field f)
{
    switch (f) {
    case F_REQUESTS: return p->requests;
    case F_ERRORS: return p->errors;
    case F_RATE_LIMITED: return p->rate_limited;
    case F_PROMPT: return p->prompt_tokens;
    default: return p->completion_tokens;
    }
}

static void render_series(lx_history *h, uint64_t from, uint64_t to, int64_t unix_offset_s, lx_buf *out)
{
    static const char *const names[F_COUNT] = {"requests", "errors", "rate_limited", "prompt_tokens",
                                               "completion_tokens"};
    lx_buf_printf(out, "\"series\":{\"start\":%lld,\"step\":1", (long long)((int64_t)from + unix_offset_s));
    for (size_t f = 0; f < F_COUNT; f++) {
        lx_buf_printf(out, ",\"%s\":[", names[f]);
        for (uint64_t s = from; s < to; s++) {
            lx_history_point *p = &h->points[s % LX_HISTORY_SECONDS];
            lx_buf_printf(out, "%s%u", s == from ? "" : ",", point_field_of(p, (point_field)f));
        }
        lx_buf_append_str(out, "]");
    }
    lx_buf_append_str(out, "}");
}

static void render_quantiles(lx_history *h, uint64_t from, uint64_t to, size_t which, lx_buf *out)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}};
    lx_buf_append_str(out, "{");
    for (size_t i = 0; i < LX_ARRAY_LEN(qs); i++) {
        lx_buf_printf(out, "%s\"%s\":[", i ? "," : "", qs[i].name);
        for (uint64_t s = from; s < to; s++) {
            const pct_slot *ps = &h->slots[s % LX_HISTORY_SLOTS];
            const lx_lhist *lh = which == 0 ? &ps->latency : which == 1 ? &ps->ttft : &ps->overhead;
            if (s != from) lx_buf_append_str(out, ",");
            if (lh->count)
                lx_buf_printf(out, "%.3f", lx_lhist_quantile(lh, qs[i].q));
            else
                lx_buf_append_str(out, "null");
        }
        lx_buf_append_str(out, "]");
    }
    lx_buf_append_str(out, "}");
}

static void render_percentiles(lx_history *h, uint64_t from, uint64_t to, int64_t unix_offset_s, lx_buf *out)
{
    static const char *const names[] = {"latency_ms", "ttft_ms", "overhead_ms"};
    lx_buf_printf(out, "\"percentiles\":{\"start\":%lld,\"step\":%d",
                  (long long)((int64_t)(from * LX_HISTORY_STEP) + unix_offset_s), LX_HISTORY_STEP);
    for (size_t i = 0; i < LX_ARRAY_LEN(names); i++) {
        lx_buf_printf(out, ",\"%s\":", names[i]);
        render_quantiles(h, from, to, i, out);
    }
    lx_buf_append_str(out, "}");
}

static void render_req(lx_buf *out, const lx_history_req *r)
{
    lx_buf_printf(out, "{\"seq\":%llu,\"time\":%lld,\"id\":", (unsigned long long)r->seq, (long long)r->time_ms);
    json_string(out, r->id);
    static const char *const keys[] = {"user",    "model",   "model_used", "route",
                                       "variant", "backend", "error",      "priority"};
    const char *vals[] = {r->user,    r->model,   r->model_used, r->route,
                          r->variant, r->backend, r->error_code, r->priority};
    for (size_t i = 0; i < LX_ARRAY_LEN(keys); i++) {
        lx_buf_printf(out, ",\"%s\":", keys[i]);
        json_string(out, vals[i]);
    }
    lx_buf_printf(out, ",\"status\":%d,\"stream\":%s,\"latency_ms\":%.1f,\"ttft_ms\":", r->status,
                  r->stream ? "true" : "false", (double)r->latency_ms);
    if (r->ttft_ms >= 0)
        lx_buf_printf(out, "%.1f", (double)r->ttft_ms);
    else
        lx_buf_append_str(out, "null");
    lx_buf_printf(out, ",\"prompt_tokens\":%ld,\"completion_tokens\":%ld}", (long)r->prompt_tokens,
                  (long)r->completion_tokens);
}

static void render_recent(const lx_history *h, uint64_t after, lx_buf *out)
{
    lx_buf_append_str(out, "\"recent\":[");
    size_t n = lx_history_recent_count(h);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const lx_history_req *r = lx_history_recent_at(h, i);
        if (r->seq <= after) continue;
        if (!first) lx_buf_append_str(out, ",");
        first = false;
        render_req(out, r);
    }
    lx_buf_append_str(out, "]");
}

void lx_history_render(lx_history *h, uint64_t now_sec, int64_t unix_offset_s, lx_history_cursor *c, lx_buf *out)
{
    if (h) {
        advance_secs(h, now_sec);
        advance_slots(h, now_sec / LX_HISTORY_STEP);
    }
    uint64_t from = first_unit(c->started, c->next_sec, now_sec, LX_HISTORY_SECONDS);
    uint64_t to = h && now_sec > from ? now_sec : from; /* NULL h: empty series */
    render_series(h, from, to, unix_offset_s, out);
    uint64_t now_slot = now_sec / LX_HISTORY_STEP;
    uint64_t sfrom = first_unit(c->started, c->next_slot, now_slot, LX_HISTORY_SLOTS);
    uint64_t sto = h && now_slot > sfrom ? now_slot : sfrom;
    lx_buf_append_str(out, ",");
    render_percentiles(h, sfrom, sto, unix_offset_s, out);
    lx_buf_append_str(out, ",");
    render_recent(h, c->started ? c->seq : 0, out);
    c->started = true;
    c->next_sec = to;
    c->next_slot = sto;
    c->seq = h ? h->seq : 0;
}
