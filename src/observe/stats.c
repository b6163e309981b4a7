/*
 * StatsCollector, the recording half (see stats.h for what is kept and its bounds; stats_render.c
 * renders it). Requests and the other services' events land here; nothing here formats output.
 *
 * Invariants (besides those in stats_internal.h):
 *  - a ring's slots older than its `last` unit minus 59 are zero: ring_advance clears slots as time
 *    moves on, so a sum is always "this unit and the 59 before it";
 *  - the user map holds at most max_users names plus "(other)"; the route map at most max_routes
 *    (model, backend) pairs plus ("(other)", "(other)"); the backend map at most max_routes names;
 *  - a route counts at most MAX_CODES distinct error codes, "other" included: once MAX_CODES - 1 are
 *    known, any new code counts as "other".
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "observe/stats_internal.h"
#include "observe/usage_store.h"
#include "utils/common.h"

#define OTHER          "(other)"
#define NONE           "-"
#define NAME_MAX_BYTES 256 /* longer names are cut (users are at most 127 bytes, models 255) */
#define MAX_CODES      64  /* distinct error codes per route; more count as "other" */

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

static const double dur_le[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600};
static const double ovh_le[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
static const double wait_le[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
static const double tps_le[] = {1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000};

/* 10 ms to 10 min; 0.1 ms to 1 s; 1 ms to 10 min; 1 to 5,000 tokens per second */
const lx_stats_buckets lx_stats_dur_buckets = {dur_le, LX_ARRAY_LEN(dur_le)};
const lx_stats_buckets lx_stats_ovh_buckets = {ovh_le, LX_ARRAY_LEN(ovh_le)};
const lx_stats_buckets lx_stats_wait_buckets = {wait_le, LX_ARRAY_LEN(wait_le)};
const lx_stats_buckets lx_stats_tps_buckets = {tps_le, LX_ARRAY_LEN(tps_le)};

static void phist_add(lx_stats_phist *h, const lx_stats_buckets *bk, double v)
{
    h->count++;
    h->sum += v;
    for (size_t i = 0; i < bk->n; i++)
        if (v <= bk->le[i]) {
            h->b[i]++;
            return;
        }
}

/* ---------- sliding windows ---------- */

static void ring_advance(lx_stats_ring *r, uint64_t unit)
{
    if (unit <= r->last) return;
    if (unit - r->last >= 60)
        memset(r->slot, 0, sizeof r->slot);
    else
        for (uint64_t u = r->last + 1; u <= unit; u++)
            r->slot[u % 60] = 0;
    r->last = unit;
}

static void ring_add_n(lx_stats_ring *r, uint64_t unit, uint64_t n)
{
    ring_advance(r, unit);
    if (unit + 60 > r->last) { /* an older unit (clock stepped back) is dropped */
        uint32_t *v = &r->slot[unit % 60];
        *v = n > UINT32_MAX - *v ? UINT32_MAX : *v + (uint32_t)n;
    }
}

static void ring_add(lx_stats_ring *r, uint64_t unit) { ring_add_n(r, unit, 1); }

uint64_t lx_stats_ring_sum(lx_stats_ring *r, uint64_t unit)
{
    ring_advance(r, unit);
    uint64_t n = 0;
    for (size_t i = 0; i < 60; i++)
        n += r->slot[i];
    return n;
}

/* ---------- entries: found by name in a map, kept in order of first sight on a list ---------- */

const char *const lx_stats_prio_names[LX_STATS_PRIO_COUNT] = {"high", "normal", "low"};
const char *const lx_stats_rl_names[LX_STATS_RL_KIND_COUNT] = {"requests", "tokens"};

lx_stats_prio lx_stats_prio_of(const char *name)
{
    if (name) {
        if (strcmp(name, "high") == 0) return LX_STATS_PRIO_HIGH;
        if (strcmp(name, "low") == 0) return LX_STATS_PRIO_LOW;
    }
    return LX_STATS_PRIO_NORMAL;
}

static const char *or_none(const char *s) { return s && *s ? s : NONE; }

/* The entry called name in map m and list l, made (size bytes, an lx_stats_named first) when create and new;
 * past max entries, new names share the "(other)" entry. */
static lx_stats_named *named_get(lx_map *m, lx_list *l, size_t max, const char *name, bool create, size_t size)
{
    name = or_none(name);
    size_t len = strnlen(name, NAME_MAX_BYTES);
    lx_map_node *n = lx_map_find(m, name, len);
    if (n || !create) return n ? LX_MAP_ENTRY(n, lx_stats_named, node) : NULL;
    if (lx_map_count(m) >= max) {
        name = OTHER;
        len = strlen(OTHER);
        if ((n = lx_map_find(m, name, len))) return LX_MAP_ENTRY(n, lx_stats_named, node);
    }
    lx_stats_named *e = lx_xcalloc(1, size);
    e->name = lx_xstrndup(name, len);
    lx_map_add(m, &e->node, e->name, len);
    lx_list_append(l, &e->link);
    return e;
}

static lx_stats_user *user_get(lx_stats *s, const char *name, bool create)
{
    lx_stats_named *e = named_get(&s->users, &s->user_list, s->max_users, name, create, sizeof(lx_stats_user));
    return e ? LX_CONTAINER_OF(e, lx_stats_user, n) : NULL;
}

static lx_stats_user *alias_get(lx_stats *s, const char *name)
{
    return LX_CONTAINER_OF(named_get(&s->aliases, &s->alias_list, s->max_routes, name, true, sizeof(lx_stats_user)),
                           lx_stats_user, n);
}

static lx_stats_user *fallback_get(lx_stats *s, const char *name)
{
    return LX_CONTAINER_OF(
        named_get(&s->fallbacks, &s->fallback_list, s->max_routes, name, true, sizeof(lx_stats_user)), lx_stats_user,
        n);
}

/* An automatic-routing class's entry, made at first sight; past LX_STATS_MAX_CLASSES, "(other)". */
static lx_stats_class *class_get(lx_stats *s, const char *name)
{
    return LX_CONTAINER_OF(
        named_get(&s->classes, &s->class_list, LX_STATS_MAX_CLASSES, name, true, sizeof(lx_stats_class)),
        lx_stats_class, n);
}

static lx_stats_route *route_find(lx_stats *s, const char *key, size_t len)
{
    lx_map_node *n = lx_map_find(&s->routes, key, len);
    return n ? LX_MAP_ENTRY(n, lx_stats_route, node) : NULL;
}

/* key: model \0 backend, each cut to NAME_MAX_BYTES; returns the key's length */
static size_t route_key(char *key, const char *model, const char *backend)
{
    size_t ml = strnlen(model, NAME_MAX_BYTES), bl = strnlen(backend, NAME_MAX_BYTES);
    memcpy(key, model, ml);
    key[ml] = '\0';
    memcpy(key + ml + 1, backend, bl);
    key[ml + 1 + bl] = '\0';
    return ml + 1 + bl;
}

static lx_stats_route *route_get(lx_stats *s, const char *model, const char *backend)
{
    char key[2 * NAME_MAX_BYTES + 2];
    size_t len = route_key(key, model, backend);
    lx_stats_route *r = route_find(s, key, len);
    if (r) return r;
    if (lx_map_count(&s->routes) >= s->max_routes) {
        len = route_key(key, OTHER, OTHER);
        if ((r = route_find(s, key, len))) return r;
    }
    r = lx_xcalloc(1, sizeof *r);
    r->key = lx_xmalloc(len + 1);
    memcpy(r->key, key, len + 1);
    r->model = r->key;
    r->backend = r->key + strlen(r->key) + 1;
    lx_map_add(&s->routes, &r->node, r->key, len);
    lx_list_append(&s->route_list, &r->link);
    return r;
}

static lx_stats_backend *backend_get(lx_stats *s, const char *name, bool create)
{
    name = or_none(name);
    size_t len = strnlen(name, NAME_MAX_BYTES);
    lx_map_node *n = lx_map_find(&s->backends, name, len);
    if (n || !create) return n ? LX_MAP_ENTRY(n, lx_stats_backend, node) : NULL;
    if (lx_map_count(&s->backends) >= s->max_routes) return NULL; /* backends come from the config: never in practice */
    lx_stats_backend *b = lx_xcalloc(1, sizeof *b);
    b->name = lx_xstrndup(name, len);
    b->enabled = true;
    lx_map_add(&s->backends, &b->node, b->name, len);
    lx_list_append(&s->backend_list, &b->link);
    return b;
}

static void named_free(lx_map *m, lx_list *l)
{
    lx_list *n, *tmp;
    LX_LIST_EACH(l, n, tmp)
    {
        lx_stats_named *e = LX_LIST_ENTRY(n, lx_stats_named, link);
        free(e->name);
        free(e);
    }
    lx_map_free(m);
}

static void routes_free(lx_stats *s)
{
    lx_list *n, *tmp;
    LX_LIST_EACH(&s->route_list, n, tmp)
    {
        lx_stats_route *r = LX_LIST_ENTRY(n, lx_stats_route, link);
        free(r->statuses);
        for (size_t i = 0; i < r->n_codes; i++)
            free(r->codes[i].code);
        free(r->codes);
        free(r->key);
        free(r);
    }
    lx_map_free(&s->routes);
}

static void backends_free(lx_stats *s)
{
    lx_list *n, *tmp;
    LX_LIST_EACH(&s->backend_list, n, tmp)
    {
        lx_stats_backend *b = LX_LIST_ENTRY(n, lx_stats_backend, link);
        free(b->name);
        free(b);
    }
    lx_map_free(&s->backends);
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
    lx_map_init(&s->users);
    lx_map_init(&s->aliases);
    lx_list_init(&s->alias_list);
    lx_map_init(&s->classes);
    lx_list_init(&s->class_list);
    lx_map_init(&s->fallbacks);
    lx_list_init(&s->fallback_list);
    lx_map_init(&s->routes);
    lx_map_init(&s->backends);
    lx_list_init(&s->user_list);
    lx_list_init(&s->route_list);
    lx_list_init(&s->backend_list);
    s->history = lx_history_new();
    return s;
}

void lx_stats_free(lx_stats *s)
{
    if (s == NULL) return;
    named_free(&s->users, &s->user_list);
    named_free(&s->aliases, &s->alias_list);
    named_free(&s->classes, &s->class_list);
    named_free(&s->fallbacks, &s->fallback_list);
    routes_free(s);
    backends_free(s);
    lx_history_free(s->history);
    free(s);
}

void lx_stats_set_queue_probe(lx_stats *s, lx_stats_queue_probe fn, void *ud)
{
    if (s == NULL) return;
    s->queue_probe = fn;
    s->queue_probe_ud = ud;
}

void lx_stats_set_ratelimit_probe(lx_stats *s, lx_stats_ratelimit_probe fn, void *ud)
{
    if (s == NULL) return;
    s->rl_probe = fn;
    s->rl_probe_ud = ud;
}

void lx_stats_set_backend_probe(lx_stats *s, lx_stats_backend_probe fn, void *ud)
{
    if (s == NULL) return;
    s->backend_probe = fn;
    s->backend_probe_ud = ud;
}

void lx_stats_set_ledger(lx_stats *s, lx_usage_store *ledger)
{
    if (s) s->ledger = ledger;
}

void lx_stats_set_experiments(lx_stats *s, lx_stats_render_fn json, lx_stats_render_fn prom, void *ud)
{
    if (s == NULL) return;
    s->exp_json = json;
    s->exp_prom = prom;
    s->exp_ud = ud;
}

void lx_stats_add_backend(lx_stats *s, const char *backend, bool enabled)
{
    lx_stats_backend *b = s ? backend_get(s, backend, true) : NULL;
    if (b) b->enabled = enabled;
}

/* ---------- recording ---------- */

static void counts_add(lx_stats_counts *c, bool err, uint64_t pt, uint64_t ct, double latency_ms)
{
    c->requests++;
    c->errors += err;
    c->prompt_tokens += pt;
    c->completion_tokens += ct;
    c->latency_ms_sum += latency_ms;
}

static void route_status(lx_stats_route *r, int status)
{
    for (size_t i = 0; i < r->n_statuses; i++)
        if (r->statuses[i].status == status) {
            r->statuses[i].n++;
            return;
        }
    r->statuses = lx_xrealloc(r->statuses, (r->n_statuses + 1) * sizeof *r->statuses);
    r->statuses[r->n_statuses++] = (lx_stats_status_count){status, 1};
}

static void route_code(lx_stats_route *r, const char *code)
{
    for (size_t i = 0; i < r->n_codes; i++)
        if (strcmp(r->codes[i].code, code) == 0) {
            r->codes[i].n++;
            return;
        }
    if (r->n_codes >= MAX_CODES - 1 && strcmp(code, "other") != 0) {
        route_code(r, "other"); /* the last place is kept for "other" */
        return;
    }
    r->codes = lx_xrealloc(r->codes, (r->n_codes + 1) * sizeof *r->codes);
    r->codes[r->n_codes++] = (lx_stats_code_count){lx_xstrndup(code, strnlen(code, 64)), 1};
}

void lx_stats_record(lx_stats *s, const lx_access_rec *rec)
{
    if (s == NULL) return;
    uint64_t now = rec->end_ns ? rec->end_ns : s->clock();
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
    phist_add(&s->overhead_p, &lx_stats_ovh_buckets, rec->overhead_ms / 1000.0);

    lx_stats_user *u = user_get(s, rec->user, true);
    counts_add(&u->n.c, err, pt, ct, lat);
    ring_add(&u->req_s, sec);
    if (pt + ct) ring_add_n(&u->tok_s, sec, pt + ct);
    if (err) ring_add(&u->err_m, min);

    if (rec->alias && routed) counts_add(&alias_get(s, rec->model)->n.c, err, pt, ct, lat);
    if (rec->fallback_from) counts_add(&fallback_get(s, rec->fallback_from)->n.c, err, pt, ct, lat);
    if (rec->route && *rec->route) {
        lx_stats_class *k = class_get(s, rec->route);
        counts_add(&k->n.c, err, pt, ct, lat);
        phist_add(&k->duration, &lx_stats_dur_buckets, lat / 1000.0);
    }
    const char *model = rec->model_used ? rec->model_used : rec->model;
    lx_stats_route *r = route_get(s, routed ? or_none(model) : NONE, routed ? rec->backend : NONE);
    counts_add(&r->c, err, pt, ct, lat);
    route_status(r, rec->status);
    if (rec->error_code) route_code(r, rec->error_code);
    phist_add(&r->duration, &lx_stats_dur_buckets, lat / 1000.0);
    if (rec->stream && rec->ttft_ms >= 0 && rec->status < 400) {
        lx_lhist_add(&s->ttft, rec->ttft_ms);
        phist_add(&r->ttft, &lx_stats_dur_buckets, rec->ttft_ms / 1000.0);
    }
    /* decode speed: tokens after the first over the time from the first byte to the end */
    double decode_ms = lat - rec->ttft_ms;
    if (rec->stream && rec->status == 200 && !rec->error_code && ct >= 2 && rec->ttft_ms >= 0 && decode_ms > 0) {
        double tps = (double)(ct - 1) / (decode_ms / 1000.0);
        lx_lhist_add(&s->stream_tps, tps);
        phist_add(&s->stream_tps_p, &lx_stats_tps_buckets, tps);
    }
    if (routed) {
        lx_stats_prio p = lx_stats_prio_of(rec->priority);
        double w = rec->queue_wait_ms > 0 ? rec->queue_wait_ms : 0;
        lx_lhist_add(&s->queue_wait, w);
        phist_add(&s->queue_wait_p[p], &lx_stats_wait_buckets, w / 1000.0);
        backend_get(s, rec->backend, true);
    }
    int64_t wall_ms = s->started_wall_s * 1000 + (int64_t)((now - s->start_ns) / 1000000u);
    lx_history_record(s->history, sec, wall_ms, rec);
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
    lx_stats_backend *b = backend_get(s, backend, true);
    if (b) b->retries++;
}

void lx_stats_affinity(lx_stats *s, const char *backend, bool hit)
{
    lx_stats_backend *b = s ? backend_get(s, backend, true) : NULL;
    if (b == NULL) return;
    if (hit)
        b->affinity_hits++;
    else
        b->affinity_yields++;
}

void lx_stats_failover(lx_stats *s, const char *from, const char *to)
{
    if (s == NULL) return;
    s->failovers++;
    lx_stats_backend *b = backend_get(s, from, true);
    if (b) b->failovers++;
    backend_get(s, to, true);
}

/* ---------- reading ---------- */

void lx_stats_summary_get(lx_stats *s, const char *user, lx_stats_summary *out)
{
    *out = (lx_stats_summary){0};
    if (s == NULL) return;
    uint64_t now = s->clock();
    uint64_t sec = now / 1000000000u, min = sec / 60;
    const lx_stats_counts *c = &s->all;
    lx_stats_ring *rs = &s->req_s, *em = &s->err_m;
    if (user) {
        lx_stats_user *u = user_get(s, user, false);
        if (u == NULL) return;
        out->known = true;
        out->rate_limited = u->rate_limited;
        c = &u->n.c;
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
    out->requests_last_60s = lx_stats_ring_sum(rs, sec);
    out->errors_last_hour = lx_stats_ring_sum(em, min);
}

void lx_stats_render_history(lx_stats *s, lx_history_cursor *c, lx_buf *out)
{
    if (s == NULL) {
        lx_history_render(NULL, 0, 0, c, out);
        return;
    }
    uint64_t sec = s->clock() / 1000000000u;
    int64_t unix_offset_s = s->started_wall_s - (int64_t)(s->start_ns / 1000000000u);
    lx_history_render(s->history, sec, unix_offset_s, c, out);
}

double lx_stats_uptime_s(lx_stats *s) { return (double)(s->clock() - s->start_ns) / 1e9; }

void lx_stats_probe_backend(lx_stats *s, const lx_stats_backend *b, bool *up, long *in_flight)
{
    *up = b->enabled;
    *in_flight = -1;
    if (s->backend_probe) {
        bool u = *up;
        long f = -1;
        if (s->backend_probe(s->backend_probe_ud, b->name, &u, &f)) {
            *up = u;
            *in_flight = f;
        }
    }
}

void lx_stats_probe_queue(lx_stats *s, lx_stats_queue_view *v)
{
    memset(v, 0, sizeof *v);
    if (s->queue_probe) s->queue_probe(s->queue_probe_ud, v);
}

void lx_stats_probe_ratelimit(lx_stats *s, lx_stats_ratelimit_view *v)
{
    *v = (lx_stats_ratelimit_view){.redis_up = -1};
    if (s->rl_probe) s->rl_probe(s->rl_probe_ud, v);
}
