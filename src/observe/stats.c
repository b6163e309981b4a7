/*
 * StatsCollector (see stats.h for what is kept and its bounds).
 *
 * Invariants:
 *  - every map entry is also in its map's `all` vector, in order of first sight, and is never freed
 *    before lx_stats_free, so renderers iterate vectors and the record path holds plain pointers;
 *  - a ring's slots older than its `last` unit minus 59 are zero: ring_advance clears slots as time
 *    moves on, so a sum is always "this unit and the 59 before it";
 *  - the user map holds at most max_users names plus "(other)"; the route map at most max_routes
 *    (model, backend) pairs plus ("(other)", "(other)").
 */
#include "observe/stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "observe/usage_store.h"
#include "utils/common.h"

#define OTHER          "(other)"
#define NONE           "-"
#define NAME_MAX_BYTES 256 /* longer names are cut (users are at most 127 bytes, models 255) */

/* ---------- log-linear histogram ---------- */

static size_t lhist_index(double v)
{
    if (!(v >= LX_LHIST_MIN)) return 0; /* also NaN and negatives */
    double i = 1.0 + floor(LX_LHIST_PER_OCTAVE * log2(v / LX_LHIST_MIN));
    if (i >= LX_LHIST_BUCKETS - 1) return LX_LHIST_BUCKETS - 1;
    return (size_t)i;
}

static double lhist_lower(size_t i)
{
    return i == 0 ? 0.0 : LX_LHIST_MIN * exp2((double)(i - 1) / LX_LHIST_PER_OCTAVE);
}
static double lhist_upper(size_t i) { return LX_LHIST_MIN * exp2((double)i / LX_LHIST_PER_OCTAVE); }

void lx_lhist_add(lx_lhist *h, double v)
{
    if (!(v >= 0)) v = 0;
    if (h->count == 0 || v < h->min) h->min = v;
    if (h->count == 0 || v > h->max) h->max = v;
    h->count++;
    h->sum += v;
    h->b[lhist_index(v)]++;
}

void lx_lhist_bucket_bounds(double v, double *lo, double *hi)
{
    size_t i = lhist_index(v);
    *lo = lhist_lower(i);
    *hi = i == LX_LHIST_BUCKETS - 1 ? INFINITY : lhist_upper(i);
}

double lx_lhist_quantile(const lx_lhist *h, double q)
{
    if (h->count == 0) return -1;
    if (q >= 1) return h->max;
    /* the rank of the wanted sample, 1-based: the smallest r with r >= q × count */
    double rank = ceil(q * (double)h->count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < LX_LHIST_BUCKETS; i++) {
        if (h->b[i] == 0) continue;
        if ((double)(seen + h->b[i]) >= rank) {
            double lo = LX_MAX(lhist_lower(i), h->min);
            double hi = i == LX_LHIST_BUCKETS - 1 ? h->max : LX_MIN(lhist_upper(i), h->max);
            double frac = (rank - (double)seen - 0.5) / (double)h->b[i]; /* the middle of its share */
            double v = lo + (hi - lo) * frac;
            return LX_MIN(LX_MAX(v, h->min), h->max);
        }
        seen += h->b[i];
    }
    return h->max;
}

/* ---------- Prometheus histograms: fixed buckets ---------- */

/* Request duration and time to first token: 10 ms to 10 min, seconds. */
static const double dur_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600};
/* Lexora's own overhead: 0.1 ms to 1 s. */
static const double ovh_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
/* Queue wait: 1 ms to 10 min. */
static const double wait_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
/* Stream decode speed, tokens per second. */
static const double tps_bounds[] = {1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000};

#define PHIST_MAX 16

typedef struct {
    uint64_t b[PHIST_MAX]; /* not cumulative; b[i] counts values <= bounds[i] and > bounds[i-1] */
    uint64_t count;
    double sum;
} phist;

static void phist_add(phist *h, const double *bounds, size_t n, double v)
{
    h->count++;
    h->sum += v;
    for (size_t i = 0; i < n; i++)
        if (v <= bounds[i]) {
            h->b[i]++;
            return;
        }
}

/* ---------- sliding windows ---------- */

typedef struct {
    uint32_t slot[60];
    uint64_t last; /* the unit (second or minute number) the newest slot stands for */
} ring60;

static void ring_advance(ring60 *r, uint64_t unit)
{
    if (unit <= r->last) return;
    if (unit - r->last >= 60)
        memset(r->slot, 0, sizeof r->slot);
    else
        for (uint64_t u = r->last + 1; u <= unit; u++)
            r->slot[u % 60] = 0;
    r->last = unit;
}

static void ring_add(ring60 *r, uint64_t unit)
{
    ring_advance(r, unit);
    if (unit + 60 > r->last) r->slot[unit % 60]++; /* an older unit (clock stepped back) is dropped */
}

static uint64_t ring_sum(ring60 *r, uint64_t unit)
{
    ring_advance(r, unit);
    uint64_t n = 0;
    for (size_t i = 0; i < 60; i++)
        n += r->slot[i];
    return n;
}

/* ---------- string-keyed maps of entries that live until lx_stats_free ---------- */

typedef struct {
    char *key;
    uint64_t hash;
} map_head;

typedef struct {
    map_head **slots; /* open addressing, linear probing; cap a power of two */
    size_t cap;
    map_head **all; /* entries in order of first sight */
    size_t n, all_cap;
} pmap;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static map_head *pmap_get(const pmap *m, const char *key, size_t len, uint64_t h)
{
    if (m->cap == 0) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        map_head *e = m->slots[i];
        if (e == NULL) return NULL;
        if (e->hash == h && strncmp(e->key, key, len) == 0 && e->key[len] == '\0') return e;
    }
}

static void pmap_slot_in(map_head **slots, size_t cap, map_head *e)
{
    size_t i = e->hash & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = e;
}

/* Takes e (its key and hash set). */
static void pmap_put(pmap *m, map_head *e)
{
    if ((m->n + 1) * 10 > m->cap * 7) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        map_head **slots = lx_xcalloc(cap, sizeof *slots);
        for (size_t i = 0; i < m->n; i++)
            pmap_slot_in(slots, cap, m->all[i]);
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    if (m->n == m->all_cap) {
        m->all_cap = m->all_cap ? m->all_cap * 2 : 64;
        m->all = lx_xrealloc(m->all, m->all_cap * sizeof *m->all);
    }
    pmap_slot_in(m->slots, m->cap, e);
    m->all[m->n++] = e;
}

/* ---------- entries ---------- */

typedef struct {
    uint64_t requests, errors, prompt_tokens, completion_tokens;
    double latency_ms_sum;
} counts;

typedef struct {
    map_head h;
    counts c;
    ring60 req_s; /* requests per second */
    ring60 err_m; /* errors per minute */
    uint64_t rate_limited;
} user_entry;

typedef struct {
    int status;
    uint64_t n;
} status_count;

typedef struct {
    char *code;
    uint64_t n;
} code_count;

#define MAX_CODES 64 /* distinct error codes per route; more count as "other" */

typedef struct {
    map_head h; /* key: model \x1f backend */
    char *model, *backend;
    counts c;
    status_count *statuses;
    size_t n_statuses;
    code_count *codes;
    size_t n_codes;
    phist duration, ttft;
} route_entry;

typedef struct {
    map_head h;
    bool enabled;
    uint64_t retries, failovers;
} backend_entry;

struct lx_stats {
    uint64_t (*clock)(void);
    uint64_t start_ns;
    int64_t started_wall_s;
    size_t max_users, max_routes;

    counts all;
    ring60 req_s, err_m;
    lx_lhist latency, ttft, overhead, queue_wait, stream_tps;
    phist overhead_p, stream_tps_p;
    phist queue_wait_p[LX_STATS_PRIO_COUNT];
    uint64_t rate_limited[LX_STATS_RL_KIND_COUNT];
    uint64_t retries, failovers;

    pmap users, routes, backends;

    lx_stats_queue_probe queue_probe;
    void *queue_probe_ud;
    lx_stats_ratelimit_probe rl_probe;
    void *rl_probe_ud;
    lx_stats_backend_probe backend_probe;
    void *backend_probe_ud;
    lx_usage_store *ledger;
};

static const char *const prio_names[LX_STATS_PRIO_COUNT] = {"high", "normal", "low"};
static const char *const rl_names[LX_STATS_RL_KIND_COUNT] = {"requests", "tokens"};

lx_stats_prio lx_stats_prio_of(const char *name)
{
    if (name) {
        if (strcmp(name, "high") == 0) return LX_STATS_PRIO_HIGH;
        if (strcmp(name, "low") == 0) return LX_STATS_PRIO_LOW;
    }
    return LX_STATS_PRIO_NORMAL;
}

static const char *or_none(const char *s) { return s && *s ? s : NONE; }

static user_entry *user_get(lx_stats *s, const char *name, bool create)
{
    name = or_none(name);
    size_t len = strnlen(name, NAME_MAX_BYTES);
    uint64_t h = hash_bytes(name, len);
    user_entry *u = (user_entry *)pmap_get(&s->users, name, len, h);
    if (u || !create) return u;
    if (s->users.n >= s->max_users) {
        name = OTHER;
        len = strlen(OTHER);
        h = hash_bytes(name, len);
        if ((u = (user_entry *)pmap_get(&s->users, name, len, h))) return u;
    }
    u = lx_xcalloc(1, sizeof *u);
    u->h.key = lx_xstrndup(name, len);
    u->h.hash = h;
    pmap_put(&s->users, &u->h);
    return u;
}

static route_entry *route_get(lx_stats *s, const char *model, const char *backend)
{
    char key[2 * NAME_MAX_BYTES + 2];
    size_t ml = strnlen(model, NAME_MAX_BYTES), bl = strnlen(backend, NAME_MAX_BYTES);
    memcpy(key, model, ml);
    key[ml] = '\x1f';
    memcpy(key + ml + 1, backend, bl);
    size_t len = ml + 1 + bl;
    key[len] = '\0';
    uint64_t h = hash_bytes(key, len);
    route_entry *r = (route_entry *)pmap_get(&s->routes, key, len, h);
    if (r) return r;
    if (s->routes.n >= s->max_routes) {
        len = (size_t)snprintf(key, sizeof key, "%s\x1f%s", OTHER, OTHER);
        h = hash_bytes(key, len);
        if ((r = (route_entry *)pmap_get(&s->routes, key, len, h))) return r;
        ml = bl = strlen(OTHER);
    }
    r = lx_xcalloc(1, sizeof *r);
    r->h.key = lx_xstrndup(key, len);
    r->h.hash = h;
    r->model = lx_xstrndup(key, ml);
    r->backend = lx_xstrndup(key + ml + 1, bl);
    pmap_put(&s->routes, &r->h);
    return r;
}

static backend_entry *backend_get(lx_stats *s, const char *name, bool create)
{
    name = or_none(name);
    size_t len = strnlen(name, NAME_MAX_BYTES);
    uint64_t h = hash_bytes(name, len);
    backend_entry *b = (backend_entry *)pmap_get(&s->backends, name, len, h);
    if (b || !create) return b;
    if (s->backends.n >= s->max_routes) return NULL; /* backends come from the config: never in practice */
    b = lx_xcalloc(1, sizeof *b);
    b->h.key = lx_xstrndup(name, len);
    b->h.hash = h;
    b->enabled = true;
    pmap_put(&s->backends, &b->h);
    return b;
}

static void pmap_free(pmap *m, void (*free_entry)(map_head *))
{
    for (size_t i = 0; i < m->n; i++) {
        if (free_entry) free_entry(m->all[i]);
        free(m->all[i]->key);
        free(m->all[i]);
    }
    free(m->all);
    free(m->slots);
}

static void route_free(map_head *h)
{
    route_entry *r = (route_entry *)h;
    free(r->model);
    free(r->backend);
    free(r->statuses);
    for (size_t i = 0; i < r->n_codes; i++)
        free(r->codes[i].code);
    free(r->codes);
}

/* ---------- lifecycle ---------- */

lx_stats *lx_stats_new(const lx_stats_opts *opts)
{
    lx_stats *s = lx_xcalloc(1, sizeof *s);
    s->clock = opts && opts->clock ? opts->clock : lx_now_ns;
    s->started_wall_s = opts && opts->started_wall_s ? opts->started_wall_s : lx_wall_s();
    s->max_users = opts && opts->max_users ? opts->max_users : 10000;
    s->max_routes = opts && opts->max_routes ? opts->max_routes : 1000;
    s->start_ns = s->clock();
    return s;
}

void lx_stats_free(lx_stats *s)
{
    if (s == NULL) return;
    pmap_free(&s->users, NULL);
    pmap_free(&s->routes, route_free);
    pmap_free(&s->backends, NULL);
    free(s);
}

void lx_stats_set_queue_probe(lx_stats *s, lx_stats_queue_probe fn, void *ud)
{
    s->queue_probe = fn;
    s->queue_probe_ud = ud;
}

void lx_stats_set_ratelimit_probe(lx_stats *s, lx_stats_ratelimit_probe fn, void *ud)
{
    s->rl_probe = fn;
    s->rl_probe_ud = ud;
}

void lx_stats_set_backend_probe(lx_stats *s, lx_stats_backend_probe fn, void *ud)
{
    s->backend_probe = fn;
    s->backend_probe_ud = ud;
}

void lx_stats_set_ledger(lx_stats *s, lx_usage_store *ledger) { s->ledger = ledger; }

void lx_stats_add_backend(lx_stats *s, const char *backend, bool enabled)
{
    backend_entry *b = backend_get(s, backend, true);
    if (b) b->enabled = enabled;
}

/* ---------- recording ---------- */

static void counts_add(counts *c, bool err, uint64_t pt, uint64_t ct, double latency_ms)
{
    c->requests++;
    c->errors += err;
    c->prompt_tokens += pt;
    c->completion_tokens += ct;
    c->latency_ms_sum += latency_ms;
}

static void route_status(route_entry *r, int status)
{
    for (size_t i = 0; i < r->n_statuses; i++)
        if (r->statuses[i].status == status) {
            r->statuses[i].n++;
            return;
        }
    r->statuses = lx_xrealloc(r->statuses, (r->n_statuses + 1) * sizeof *r->statuses);
    r->statuses[r->n_statuses++] = (status_count){status, 1};
}

static void route_code(route_entry *r, const char *code)
{
    for (size_t i = 0; i < r->n_codes; i++)
        if (strcmp(r->codes[i].code, code) == 0) {
            r->codes[i].n++;
            return;
        }
    if (r->n_codes == MAX_CODES) {
        route_code(r, "other");
        return;
    }
    r->codes = lx_xrealloc(r->codes, (r->n_codes + 1) * sizeof *r->codes);
    r->codes[r->n_codes++] = (code_count){lx_xstrndup(code, strnlen(code, 64)), 1};
}

void lx_stats_record(lx_stats *s, const lx_access_rec *rec)
{
    if (s == NULL) return;
    uint64_t now = s->clock();
    uint64_t sec = now / 1000000000u, min = sec / 60;
    bool err = rec->status >= 400 || rec->error_code != NULL;
    uint64_t pt = rec->prompt_tokens > 0 ? (uint64_t)rec->prompt_tokens : 0;
    uint64_t ct = rec->completion_tokens > 0 ? (uint64_t)rec->completion_tokens : 0;
    double lat = rec->latency_ms >= 0 ? rec->latency_ms : 0;
    bool routed = rec->backend != NULL && *rec->backend;

    counts_add(&s->all, err, pt, ct, lat);
    ring_add(&s->req_s, sec);
    if (err) ring_add(&s->err_m, min);
    lx_lhist_add(&s->latency, lat);
    lx_lhist_add(&s->overhead, rec->overhead_ms);
    phist_add(&s->overhead_p, ovh_bounds, LX_ARRAY_LEN(ovh_bounds), rec->overhead_ms / 1000.0);

    user_entry *u = user_get(s, rec->user, true);
    counts_add(&u->c, err, pt, ct, lat);
    ring_add(&u->req_s, sec);
    if (err) ring_add(&u->err_m, min);

    route_entry *r = route_get(s, routed ? or_none(rec->model) : NONE, routed ? rec->backend : NONE);
    counts_add(&r->c, err, pt, ct, lat);
    route_status(r, rec->status);
    if (rec->error_code) route_code(r, rec->error_code);
    phist_add(&r->duration, dur_bounds, LX_ARRAY_LEN(dur_bounds), lat / 1000.0);
    if (rec->stream && rec->ttft_ms >= 0 && rec->status < 400) {
        lx_lhist_add(&s->ttft, rec->ttft_ms);
        phist_add(&r->ttft, dur_bounds, LX_ARRAY_LEN(dur_bounds), rec->ttft_ms / 1000.0);
    }
    /* decode speed: tokens after the first over the time from the first byte to the end */
    double decode_ms = lat - rec->ttft_ms;
    if (rec->stream && rec->status == 200 && !rec->error_code && ct >= 2 && rec->ttft_ms >= 0 && decode_ms > 0) {
        double tps = (double)(ct - 1) / (decode_ms / 1000.0);
        lx_lhist_add(&s->stream_tps, tps);
        phist_add(&s->stream_tps_p, tps_bounds, LX_ARRAY_LEN(tps_bounds), tps);
    }
    if (routed) {
        lx_stats_prio p = lx_stats_prio_of(rec->priority);
        double w = rec->queue_wait_ms > 0 ? rec->queue_wait_ms : 0;
        lx_lhist_add(&s->queue_wait, w);
        phist_add(&s->queue_wait_p[p], wait_bounds, LX_ARRAY_LEN(wait_bounds), w / 1000.0);
        backend_get(s, rec->backend, true);
    }
    if (s->ledger) lx_usage_store_add(s->ledger, rec);
}

void lx_stats_ratelimit_refused(lx_stats *s, lx_stats_rl_kind kind, const char *user)
{
    if (s == NULL || (unsigned)kind >= LX_STATS_RL_KIND_COUNT) return;
    s->rate_limited[kind]++;
    if (user) user_get(s, user, true)->rate_limited++;
}

void lx_stats_retry(lx_stats *s, const char *backend)
{
    if (s == NULL) return;
    s->retries++;
    backend_entry *b = backend_get(s, backend, true);
    if (b) b->retries++;
}

void lx_stats_failover(lx_stats *s, const char *from, const char *to)
{
    if (s == NULL) return;
    s->failovers++;
    backend_entry *b = backend_get(s, from, true);
    if (b) b->failovers++;
    backend_get(s, to, true);
}

/* ---------- reading ---------- */

void lx_stats_summary_get(lx_stats *s, const char *user, lx_stats_summary *out)
{
    uint64_t now = s->clock();
    uint64_t sec = now / 1000000000u, min = sec / 60;
    *out = (lx_stats_summary){0};
    const counts *c = &s->all;
    ring60 *rs = &s->req_s, *em = &s->err_m;
    if (user) {
        user_entry *u = user_get(s, user, false);
        if (u == NULL) return;
        out->known = true;
        out->rate_limited = u->rate_limited;
        c = &u->c;
        rs = &u->req_s;
        em = &u->err_m;
    } else {
        out->known = true;
        for (size_t k = 0; k < LX_STATS_RL_KIND_COUNT; k++)
            out->rate_limited += s->rate_limited[k];
    }
    out->total_requests = c->requests;
    out->prompt_tokens = c->prompt_tokens;
    out->completion_tokens = c->completion_tokens;
    out->total_tokens = c->prompt_tokens + c->completion_tokens;
    out->total_errors = c->errors;
    out->avg_latency_ms = c->requests ? c->latency_ms_sum / (double)c->requests : 0;
    out->requests_last_60s = ring_sum(rs, sec);
    out->errors_last_hour = ring_sum(em, min);
}

/* ---------- rendering helpers ---------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* A JSON string (with its quotes); invalid UTF-8 becomes U+FFFD. */
static void json_str(lx_buf *b, const char *s)
{
    lx_buf_append(b, "\"", 1);
    size_t n = strlen(s), start = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len((const unsigned char *)s + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        lx_buf_json_escape(b, s + start, i - start);
        lx_buf_append_str(b, "\xef\xbf\xbd");
        start = ++i;
    }
    lx_buf_json_escape(b, s + start, n - start);
    lx_buf_append(b, "\"", 1);
}

/* A Prometheus label value's inside: \ " and newline escaped, invalid UTF-8 replaced by U+FFFD. */
static void prom_label_value(lx_buf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0) {
            lx_buf_append_str(b, "\xef\xbf\xbd");
            i++;
            continue;
        }
        if (s[i] == '\\')
            lx_buf_append_str(b, "\\\\");
        else if (s[i] == '"')
            lx_buf_append_str(b, "\\\"");
        else if (s[i] == '\n')
            lx_buf_append_str(b, "\\n");
        else
            lx_buf_append(b, s + i, k);
        i += k;
    }
}

static void json_num(lx_buf *b, double v)
{
    if (!isfinite(v))
        lx_buf_append_str(b, "null");
    else
        lx_buf_printf(b, "%.3f", v);
}

static void json_quantiles(lx_buf *b, const lx_lhist *h)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}};
    lx_buf_append_str(b, "{");
    for (size_t i = 0; i < LX_ARRAY_LEN(qs); i++) {
        lx_buf_printf(b, "\"%s\":", qs[i].name);
        if (h->count)
            json_num(b, lx_lhist_quantile(h, qs[i].q));
        else
            lx_buf_append_str(b, "null");
        lx_buf_append_str(b, ",");
    }
    lx_buf_append_str(b, "\"avg\":");
    if (h->count)
        json_num(b, h->sum / (double)h->count);
    else
        lx_buf_append_str(b, "null");
    lx_buf_printf(b, ",\"count\":%llu}", (unsigned long long)h->count);
}

static void json_counts(lx_buf *b, const counts *c)
{
    lx_buf_printf(b,
                  "\"requests\":%llu,\"prompt_tokens\":%llu,\"completion_tokens\":%llu,\"total_tokens\":%llu,"
                  "\"errors\":%llu,\"avg_latency_ms\":",
                  (unsigned long long)c->requests, (unsigned long long)c->prompt_tokens,
                  (unsigned long long)c->completion_tokens,
                  (unsigned long long)(c->prompt_tokens + c->completion_tokens), (unsigned long long)c->errors);
    json_num(b, c->requests ? c->latency_ms_sum / (double)c->requests : 0);
}

static void counts_merge(counts *into, const counts *c)
{
    into->requests += c->requests;
    into->errors += c->errors;
    into->prompt_tokens += c->prompt_tokens;
    into->completion_tokens += c->completion_tokens;
    into->latency_ms_sum += c->latency_ms_sum;
}

static void uptime_text(char *out, size_t n, uint64_t secs)
{
    unsigned long long d = secs / 86400, h = secs % 86400 / 3600, m = secs % 3600 / 60;
    if (d)
        snprintf(out, n, "%llud %lluh %llum", d, h, m);
    else if (h)
        snprintf(out, n, "%lluh %llum", h, m);
    else
        snprintf(out, n, "%llum %llus", m, (unsigned long long)(secs % 60));
}

static void iso_time(char *out, size_t n, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void probe_backend(lx_stats *s, const backend_entry *b, bool *up, long *in_flight)
{
    *up = b->enabled;
    *in_flight = -1;
    if (s->backend_probe) {
        bool u = *up;
        long f = -1;
        if (s->backend_probe(s->backend_probe_ud, b->h.key, &u, &f)) {
            *up = u;
            *in_flight = f;
        }
    }
}

static void probe_queue(lx_stats *s, lx_stats_queue_view *v)
{
    memset(v, 0, sizeof *v);
    if (s->queue_probe) s->queue_probe(s->queue_probe_ud, v);
}

static void probe_ratelimit(lx_stats *s, lx_stats_ratelimit_view *v)
{
    *v = (lx_stats_ratelimit_view){.redis_up = -1};
    if (s->rl_probe) s->rl_probe(s->rl_probe_ud, v);
}

static double uptime_s(lx_stats *s) { return (double)(s->clock() - s->start_ns) / 1e9; }

/* ---------- /stats ---------- */

static void json_ledger(lx_buf *b, lx_stats *s)
{
    if (s->ledger == NULL) {
        lx_buf_append_str(b, "null");
        return;
    }
    lx_usage_snapshot l;
    lx_usage_store_snapshot(s->ledger, &l);
    lx_buf_append_str(b, "{\"path\":");
    json_str(b, l.path);
    lx_buf_printf(b, ",\"writable\":%s,\"began\":", l.writable ? "true" : "false");
    if (l.began[0])
        json_str(b, l.began);
    else
        lx_buf_append_str(b, "null");
    lx_buf_printf(b,
                  ",\"total_requests\":%llu,\"total_tokens\":%llu,\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
                  "\"total_errors\":%llu,\"rows_written\":%llu,\"rows_pending\":%llu,"
                  "\"rows_lost\":{\"write_failed\":%llu,\"queue_full\":%llu}}",
                  (unsigned long long)l.requests, (unsigned long long)(l.prompt_tokens + l.completion_tokens),
                  (unsigned long long)l.prompt_tokens, (unsigned long long)l.completion_tokens,
                  (unsigned long long)l.errors, (unsigned long long)l.rows_written, (unsigned long long)l.pending,
                  (unsigned long long)l.lost_write_failed, (unsigned long long)l.lost_queue_full);
}

static void json_seed_keys(lx_buf *b, const lx_stats_summary *m)
{
    lx_buf_printf(b, "\"total_requests\":%llu,\"total_tokens\":%llu,\"avg_latency_ms\":",
                  (unsigned long long)m->total_requests, (unsigned long long)m->total_tokens);
    json_num(b, m->avg_latency_ms);
    lx_buf_printf(b, ",\"requests_per_minute\":%llu,\"errors_last_hour\":%llu",
                  (unsigned long long)m->requests_last_60s, (unsigned long long)m->errors_last_hour);
    lx_buf_printf(b, ",\"prompt_tokens\":%llu,\"completion_tokens\":%llu,\"total_errors\":%llu",
                  (unsigned long long)m->prompt_tokens, (unsigned long long)m->completion_tokens,
                  (unsigned long long)m->total_errors);
}

static void json_user_entry(lx_buf *b, lx_stats *s, user_entry *u)
{
    uint64_t sec = s->clock() / 1000000000u;
    lx_buf_append_str(b, "{");
    json_counts(b, &u->c);
    lx_buf_printf(b, ",\"requests_per_minute\":%llu,\"errors_last_hour\":%llu,\"rate_limited\":%llu}",
                  (unsigned long long)ring_sum(&u->req_s, sec), (unsigned long long)ring_sum(&u->err_m, sec / 60),
                  (unsigned long long)u->rate_limited);
}

static int render_user(lx_stats *s, lx_buf *out, const char *user)
{
    lx_stats_summary m;
    lx_stats_summary_get(s, user, &m);
    lx_buf_append_str(out, "{\"user\":");
    json_str(out, user);
    lx_buf_append_str(out, ",");
    json_seed_keys(out, &m);
    lx_buf_printf(out, ",\"rate_limited\":%llu,\"known\":%s,\"uptime_seconds\":%.3f",
                  (unsigned long long)m.rate_limited, m.known ? "true" : "false", uptime_s(s));
    lx_buf_append_str(out, "}");
    return 0;
}

int lx_stats_render_json(lx_stats *s, lx_buf *out, const char *user, const lx_stats_render_opts *o)
{
    if (user) return render_user(s, out, user);
    lx_stats_summary m;
    lx_stats_summary_get(s, NULL, &m);
    double up = uptime_s(s);
    char upt[64], started[32];
    uptime_text(upt, sizeof upt, (uint64_t)up);
    iso_time(started, sizeof started, s->started_wall_s);

    lx_buf_append_str(out, "{");
    json_seed_keys(out, &m);
    lx_buf_printf(out, ",\"uptime_seconds\":%.3f,\"uptime\":\"%s\",\"started_at\":\"%s\"", up, upt, started);
    lx_buf_append_str(out, ",\"latency_ms\":");
    json_quantiles(out, &s->latency);
    lx_buf_append_str(out, ",\"ttft_ms\":");
    json_quantiles(out, &s->ttft);
    lx_buf_append_str(out, ",\"overhead_ms\":");
    json_quantiles(out, &s->overhead);
    lx_buf_append_str(out, ",\"stream_tokens_per_second\":");
    json_quantiles(out, &s->stream_tps);

    lx_buf_append_str(out, ",\"per_user\":{");
    for (size_t i = 0; i < s->users.n; i++) {
        user_entry *u = (user_entry *)s->users.all[i];
        if (i) lx_buf_append_str(out, ",");
        json_str(out, u->h.key);
        lx_buf_append_str(out, ":");
        json_user_entry(out, s, u);
    }

    /* per model and per backend: sums over the routes, in order of first sight */
    lx_buf_append_str(out, "},\"per_model\":{");
    for (size_t i = 0; i < s->routes.n; i++) {
        route_entry *r = (route_entry *)s->routes.all[i];
        bool first = true;
        for (size_t j = 0; j < i && first; j++)
            first = strcmp(((route_entry *)s->routes.all[j])->model, r->model) != 0;
        if (!first) continue;
        counts c = {0};
        for (size_t j = i; j < s->routes.n; j++) {
            route_entry *o2 = (route_entry *)s->routes.all[j];
            if (strcmp(o2->model, r->model) == 0) counts_merge(&c, &o2->c);
        }
        if (out->len && out->p[out->len - 1] != '{') lx_buf_append_str(out, ",");
        json_str(out, r->model);
        lx_buf_append_str(out, ":{");
        json_counts(out, &c);
        lx_buf_append_str(out, "}");
    }

    lx_buf_append_str(out, "},\"per_backend\":{");
    for (size_t i = 0; i < s->backends.n; i++) {
        backend_entry *be = (backend_entry *)s->backends.all[i];
        counts c = {0};
        for (size_t j = 0; j < s->routes.n; j++) {
            route_entry *r = (route_entry *)s->routes.all[j];
            if (strcmp(r->backend, be->h.key) == 0) counts_merge(&c, &r->c);
        }
        bool upb;
        long in_flight;
        probe_backend(s, be, &upb, &in_flight);
        if (i) lx_buf_append_str(out, ",");
        json_str(out, be->h.key);
        lx_buf_append_str(out, ":{");
        json_counts(out, &c);
        lx_buf_printf(out, ",\"up\":%s,\"in_flight\":", upb ? "true" : "false");
        if (in_flight >= 0)
            lx_buf_printf(out, "%ld", in_flight);
        else
            lx_buf_append_str(out, "null");
        lx_buf_printf(out, ",\"retries\":%llu,\"failovers\":%llu}", (unsigned long long)be->retries,
                      (unsigned long long)be->failovers);
    }

    lx_stats_queue_view qv;
    probe_queue(s, &qv);
    lx_buf_append_str(out, "},\"queue\":{\"depth\":{");
    for (size_t p = 0; p < LX_STATS_PRIO_COUNT; p++)
        lx_buf_printf(out, "%s\"%s\":%ld", p ? "," : "", prio_names[p], qv.depth[p]);
    lx_buf_append_str(out, "},\"timeouts\":{");
    for (size_t p = 0; p < LX_STATS_PRIO_COUNT; p++)
        lx_buf_printf(out, "%s\"%s\":%llu", p ? "," : "", prio_names[p], (unsigned long long)qv.timeouts[p]);
    lx_buf_append_str(out, "},\"rejected\":{");
    for (size_t p = 0; p < LX_STATS_PRIO_COUNT; p++)
        lx_buf_printf(out, "%s\"%s\":%llu", p ? "," : "", prio_names[p], (unsigned long long)qv.rejected[p]);
    lx_buf_append_str(out, "},\"wait_ms\":");
    json_quantiles(out, &s->queue_wait);

    lx_stats_ratelimit_view rv;
    probe_ratelimit(s, &rv);
    lx_buf_append_str(out, "},\"rate_limited\":{");
    for (size_t k = 0; k < LX_STATS_RL_KIND_COUNT; k++)
        lx_buf_printf(out, "\"%s\":%llu,", rl_names[k], (unsigned long long)s->rate_limited[k]);
    lx_buf_printf(out, "\"total\":%llu,\"store_fallbacks\":%llu,\"redis_up\":%s}", (unsigned long long)m.rate_limited,
                  (unsigned long long)rv.fallbacks,
                  rv.redis_up < 0 ? "null"
                  : rv.redis_up   ? "true"
                                  : "false");
    lx_buf_printf(out, ",\"retries\":%llu,\"failovers\":%llu", (unsigned long long)s->retries,
                  (unsigned long long)s->failovers);
    if (o && o->connections >= 0) lx_buf_printf(out, ",\"connections\":%ld", o->connections);
    lx_buf_printf(out, ",\"limits\":{\"max_users\":%zu,\"max_routes\":%zu}", s->max_users, s->max_routes);
    lx_buf_append_str(out, ",\"ledger\":");
    json_ledger(out, s);
    return lx_buf_append_str(out, "}");
}

/* ---------- /metrics ---------- */

static void prom_head(lx_buf *b, const char *name, const char *type, const char *help)
{
    lx_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Appends `name{labels} ` where labels is pairs of (name, value), n pairs. */
static void prom_series(lx_buf *b, const char *name, const char *suffix, const char *const *labels, size_t n)
{
    lx_buf_append_str(b, name);
    if (suffix) lx_buf_append_str(b, suffix);
    if (n) {
        lx_buf_append_str(b, "{");
        for (size_t i = 0; i < n; i++) {
            lx_buf_printf(b, "%s%s=\"", i ? "," : "", labels[2 * i]);
            prom_label_value(b, labels[2 * i + 1]);
            lx_buf_append_str(b, "\"");
        }
        lx_buf_append_str(b, "}");
    }
    lx_buf_append_str(b, " ");
}

static void prom_u64(lx_buf *b, const char *name, const char *const *labels, size_t n, uint64_t v)
{
    prom_series(b, name, NULL, labels, n);
    lx_buf_printf(b, "%llu\n", (unsigned long long)v);
}

static void prom_f64(lx_buf *b, const char *name, const char *const *labels, size_t n, double v)
{
    prom_series(b, name, NULL, labels, n);
    lx_buf_printf(b, "%.12g\n", v);
}

static void prom_hist(lx_buf *b, const char *name, const char *const *labels, size_t n, const phist *h,
                      const double *bounds, size_t nb)
{
    const char *l[2 * 4 + 2];
    if (n) memcpy(l, labels, 2 * n * sizeof *l);
    char le[32];
    l[2 * n] = "le";
    l[2 * n + 1] = le;
    uint64_t cum = 0;
    for (size_t i = 0; i < nb; i++) {
        cum += h->b[i];
        snprintf(le, sizeof le, "%g", bounds[i]);
        prom_series(b, name, "_bucket", l, n + 1);
        lx_buf_printf(b, "%llu\n", (unsigned long long)cum);
    }
    snprintf(le, sizeof le, "+Inf");
    prom_series(b, name, "_bucket", l, n + 1);
    lx_buf_printf(b, "%llu\n", (unsigned long long)h->count);
    prom_series(b, name, "_sum", labels, n);
    lx_buf_printf(b, "%.12g\n", h->sum);
    prom_series(b, name, "_count", labels, n);
    lx_buf_printf(b, "%llu\n", (unsigned long long)h->count);
}

static void prom_routes(lx_stats *s, lx_buf *b)
{
    prom_head(b, "lexora_requests_total", "counter", "Finished requests by model, backend and HTTP status.");
    for (size_t i = 0; i < s->routes.n; i++) {
        route_entry *r = (route_entry *)s->routes.all[i];
        for (size_t k = 0; k < r->n_statuses; k++) {
            char st[16];
            snprintf(st, sizeof st, "%d", r->statuses[k].status);
            const char *l[] = {"model", r->model, "backend", r->backend, "status", st};
            prom_u64(b, "lexora_requests_total", l, 3, r->statuses[k].n);
        }
    }
    prom_head(b, "lexora_request_errors_total", "counter",
              "Requests that ended in an error Lexora reported, by model, backend and error code.");
    for (size_t i = 0; i < s->routes.n; i++) {
        route_entry *r = (route_entry *)s->routes.all[i];
        for (size_t k = 0; k < r->n_codes; k++) {
            const char *l[] = {"model", r->model, "backend", r->backend, "code", r->codes[k].code};
            prom_u64(b, "lexora_request_errors_total", l, 3, r->codes[k].n);
        }
    }
    prom_head(b, "lexora_prompt_tokens_total", "counter", "Prompt tokens reported by the backends.");
    for (size_t i = 0; i < s->routes.n; i++) {
        route_entry *r = (route_entry *)s->routes.all[i];
        const char *l[] = {"model", r->model, "backend", r->backend};
        prom_u64(b, "lexora_prompt_tokens_total", l, 2, r->c.prompt_tokens);
    }
    prom_head(b, "lexora_completion_tokens_total", "counter", "Completion tokens reported by the backends.");
    for (size_t i = 0; i < s->routes.n; i++) {
        route_entry *r = (route_entry *)s->routes.all[i];
        const char *l[] = {"model", r->model, "backend", r->backend};
        prom_u64(b, "lexora_completion_tokens_total", l, 2, r->c.completion_tokens);
    }
    prom_head(b, "lexora_request_duration_seconds", "histogram",
              "Time from a request's first byte to the end of its answer.");
    for (size_t i = 0; i < s->routes.n; i++) {
        route_entry *r = (route_entry *)s->routes.all[i];
        const char *l[] = {"model", r->model, "backend", r->backend};
        prom_hist(b, "lexora_request_duration_seconds", l, 2, &r->duration, dur_bounds, LX_ARRAY_LEN(dur_bounds));
    }
    prom_head(b, "lexora_time_to_first_token_seconds", "histogram",
              "Time from a complete request to the first streamed byte of the answer (successful streams).");
    for (size_t i = 0; i < s->routes.n; i++) {
        route_entry *r = (route_entry *)s->routes.all[i];
        if (r->ttft.count == 0) continue;
        const char *l[] = {"model", r->model, "backend", r->backend};
        prom_hist(b, "lexora_time_to_first_token_seconds", l, 2, &r->ttft, dur_bounds, LX_ARRAY_LEN(dur_bounds));
    }
}

static void prom_users(lx_stats *s, lx_buf *b)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } fams[] = {
        {"lexora_user_requests_total", "Finished requests per user.", offsetof(counts, requests)},
        {"lexora_user_errors_total", "Requests per user that ended in an error.", offsetof(counts, errors)},
        {"lexora_user_prompt_tokens_total", "Prompt tokens per user.", offsetof(counts, prompt_tokens)},
        {"lexora_user_completion_tokens_total", "Completion tokens per user.", offsetof(counts, completion_tokens)},
    };
    for (size_t f = 0; f < LX_ARRAY_LEN(fams); f++) {
        prom_head(b, fams[f].name, "counter", fams[f].help);
        for (size_t i = 0; i < s->users.n; i++) {
            user_entry *u = (user_entry *)s->users.all[i];
            uint64_t v;
            memcpy(&v, (const char *)&u->c + fams[f].off, sizeof v);
            const char *l[] = {"user", u->h.key};
            prom_u64(b, fams[f].name, l, 1, v);
        }
    }
    prom_head(b, "lexora_user_rate_limited_total", "counter", "Requests per user refused by the rate limiter.");
    for (size_t i = 0; i < s->users.n; i++) {
        user_entry *u = (user_entry *)s->users.all[i];
        const char *l[] = {"user", u->h.key};
        prom_u64(b, "lexora_user_rate_limited_total", l, 1, u->rate_limited);
    }
}

static void prom_ledger(lx_stats *s, lx_buf *b)
{
    if (s->ledger == NULL) return;
    lx_usage_snapshot l;
    lx_usage_store_snapshot(s->ledger, &l);
    prom_head(b, "lexora_usage_rows_written_total", "counter", "Rows written to the usage ledger since start.");
    prom_u64(b, "lexora_usage_rows_written_total", NULL, 0, l.rows_written);
    prom_head(b, "lexora_usage_rows_lost_total", "counter",
              "Rows the usage ledger could not record since start, by reason.");
    const char *wf[] = {"reason", "write_failed"}, *qf[] = {"reason", "queue_full"};
    prom_u64(b, "lexora_usage_rows_lost_total", wf, 1, l.lost_write_failed);
    prom_u64(b, "lexora_usage_rows_lost_total", qf, 1, l.lost_queue_full);
    prom_head(b, "lexora_usage_rows_pending", "gauge", "Rows waiting to be written to the usage ledger.");
    prom_u64(b, "lexora_usage_rows_pending", NULL, 0, l.pending);
    prom_head(b, "lexora_usage_ledger_writable", "gauge", "1 if the last write to the usage ledger succeeded.");
    prom_u64(b, "lexora_usage_ledger_writable", NULL, 0, l.writable);
    prom_head(b, "lexora_usage_ledger_requests_total", "counter", "Requests in the usage ledger since it began.");
    prom_u64(b, "lexora_usage_ledger_requests_total", NULL, 0, l.requests);
}

int lx_stats_render_prometheus(lx_stats *s, lx_buf *b, const lx_stats_render_opts *o)
{
    prom_head(b, "lexora_build_info", "gauge", "Lexora's version; always 1.");
    const char *v[] = {"version", LX_VERSION};
    prom_u64(b, "lexora_build_info", v, 1, 1);
    prom_head(b, "lexora_start_time_seconds", "gauge", "When Lexora started, in seconds since the epoch.");
    prom_u64(b, "lexora_start_time_seconds", NULL, 0, (uint64_t)s->started_wall_s);
    prom_head(b, "lexora_uptime_seconds", "gauge", "Seconds since Lexora started.");
    prom_f64(b, "lexora_uptime_seconds", NULL, 0, uptime_s(s));
    if (o && o->connections >= 0) {
        prom_head(b, "lexora_http_connections", "gauge", "Client connections open now.");
        prom_u64(b, "lexora_http_connections", NULL, 0, (uint64_t)o->connections);
    }

    prom_routes(s, b);

    prom_head(b, "lexora_overhead_seconds", "histogram",
              "Lexora's own share of a request's time (the X-Lexora-Overhead-Ms header).");
    prom_hist(b, "lexora_overhead_seconds", NULL, 0, &s->overhead_p, ovh_bounds, LX_ARRAY_LEN(ovh_bounds));
    prom_head(b, "lexora_stream_decode_tokens_per_second", "histogram",
              "Completion tokens per second of successful streams, after the first token.");
    prom_hist(b, "lexora_stream_decode_tokens_per_second", NULL, 0, &s->stream_tps_p, tps_bounds,
              LX_ARRAY_LEN(tps_bounds));

    lx_stats_queue_view qv;
    probe_queue(s, &qv);
    prom_head(b, "lexora_queue_depth", "gauge", "Requests waiting in Lexora's queue now, by priority.");
    for (size_t p = 0; p < LX_STATS_PRIO_COUNT; p++) {
        const char *l[] = {"priority", prio_names[p]};
        prom_u64(b, "lexora_queue_depth", l, 1, qv.depth[p] > 0 ? (uint64_t)qv.depth[p] : 0);
    }
    prom_head(b, "lexora_queue_wait_seconds", "histogram", "Time requests waited in Lexora's queue, by priority.");
    for (size_t p = 0; p < LX_STATS_PRIO_COUNT; p++) {
        const char *l[] = {"priority", prio_names[p]};
        prom_hist(b, "lexora_queue_wait_seconds", l, 1, &s->queue_wait_p[p], wait_bounds, LX_ARRAY_LEN(wait_bounds));
    }
    prom_head(b, "lexora_queue_timeouts_total", "counter", "Requests that waited in the queue past their deadline.");
    for (size_t p = 0; p < LX_STATS_PRIO_COUNT; p++) {
        const char *l[] = {"priority", prio_names[p]};
        prom_u64(b, "lexora_queue_timeouts_total", l, 1, qv.timeouts[p]);
    }
    prom_head(b, "lexora_queue_rejected_total", "counter", "Requests refused because the queue was full.");
    for (size_t p = 0; p < LX_STATS_PRIO_COUNT; p++) {
        const char *l[] = {"priority", prio_names[p]};
        prom_u64(b, "lexora_queue_rejected_total", l, 1, qv.rejected[p]);
    }
    prom_head(b, "lexora_rate_limited_total", "counter", "Requests refused by the rate limiter, by limit kind.");
    for (size_t k = 0; k < LX_STATS_RL_KIND_COUNT; k++) {
        const char *l[] = {"kind", rl_names[k]};
        prom_u64(b, "lexora_rate_limited_total", l, 1, s->rate_limited[k]);
    }
    lx_stats_ratelimit_view rv;
    probe_ratelimit(s, &rv);
    prom_head(b, "lexora_rate_limit_store_fallbacks_total", "counter",
              "Rate-limit checks decided locally because the shared store (Redis) could not be used.");
    prom_u64(b, "lexora_rate_limit_store_fallbacks_total", NULL, 0, rv.fallbacks);
    if (rv.redis_up >= 0) {
        prom_head(b, "lexora_rate_limit_redis_up", "gauge", "1 if the rate limiter's Redis answers.");
        prom_u64(b, "lexora_rate_limit_redis_up", NULL, 0, rv.redis_up > 0);
    }

    prom_head(b, "lexora_retries_total", "counter", "Retries of a request on a backend.");
    for (size_t i = 0; i < s->backends.n; i++) {
        backend_entry *be = (backend_entry *)s->backends.all[i];
        const char *l[] = {"backend", be->h.key};
        prom_u64(b, "lexora_retries_total", l, 1, be->retries);
    }
    prom_head(b, "lexora_failovers_total", "counter", "Requests moved away from a backend to another one.");
    for (size_t i = 0; i < s->backends.n; i++) {
        backend_entry *be = (backend_entry *)s->backends.all[i];
        const char *l[] = {"backend", be->h.key};
        prom_u64(b, "lexora_failovers_total", l, 1, be->failovers);
    }
    prom_head(b, "lexora_backend_up", "gauge", "1 if the backend is in rotation (enabled and not marked down).");
    bool any_in_flight = false;
    for (size_t i = 0; i < s->backends.n; i++) {
        backend_entry *be = (backend_entry *)s->backends.all[i];
        bool upb;
        long f;
        probe_backend(s, be, &upb, &f);
        any_in_flight |= f >= 0;
        const char *l[] = {"backend", be->h.key};
        prom_u64(b, "lexora_backend_up", l, 1, upb);
    }
    if (any_in_flight) {
        prom_head(b, "lexora_backend_in_flight", "gauge", "Requests a backend is serving now.");
        for (size_t i = 0; i < s->backends.n; i++) {
            backend_entry *be = (backend_entry *)s->backends.all[i];
            bool upb;
            long f;
            probe_backend(s, be, &upb, &f);
            const char *l[] = {"backend", be->h.key};
            if (f >= 0) prom_u64(b, "lexora_backend_in_flight", l, 1, (uint64_t)f);
        }
    }

    if (o && o->per_user) prom_users(s, b);
    prom_ledger(s, b);
    return b->max && b->len >= b->max ? -1 : 0;
}
