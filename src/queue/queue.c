/*
 * RequestQueue: levels by priority, users taking turns within a level, FIFO per user, aging, deadlines,
 * a bounded size with displacement. See queue.h for the rules.
 *
 * Structures (all intrusive, all doubly linked, so every unlink is O(1)):
 *  - per line and level, a ring of the users who have a request waiting at that level; turn[L] is the
 *    user served next. Serving moves the turn to the next user, so each user gets one request per round;
 *    a user who gets a first request at a level joins the ring just before the one whose turn it is
 *    (the end of the current round);
 *  - per user and level, the FIFO of that user's requests;
 *  - per level, queue-wide, every entry in the order it entered the level (oldest .. newest). This one
 *    order serves two rules: aging promotes from the oldest end, displacement takes the newest;
 *  - a binary min-heap of every waiting entry by deadline (ties by arrival).
 *
 * The order is haproxy's priority key (class first, then time plus an aging offset) with two changes:
 * the class part is the level after aging (the offset counted in whole levels, as the issue defines
 * aging), and within a level the time part gives way to users' turns, then FIFO per user — a single
 * time key cannot keep one user's burst from delaying everyone else at the same priority.
 *
 * Invariants (lx_queue_check verifies them):
 *  - an entry is waiting iff it is in exactly one user FIFO, one level order and the heap;
 *  - a user is in the ring of level L iff its FIFO at L is non-empty; a user node exists iff it has a
 *    waiting request in its line;
 *  - each level order is sorted by entered_ns. This holds because aging runs (lazily) before every
 *    push and pop with a clock that never goes backwards: every promotion due by `now` is applied
 *    before a request arriving at `now` is appended, and a promotion's entered_ns is its due time,
 *    raised if needed to the newest entry of the level it joins.
 */
#include "queue/queue.h"

#include <stdlib.h>
#include <string.h>

#include "utils/common.h"

#define LEVELS LX_PRIO_COUNT

typedef struct lx_queue_user user_node;

struct lx_queue_user {
    user_node *hnext;                         /* hash chain of its line */
    user_node *rnext[LEVELS], *rprev[LEVELS]; /* ring of each level where it has requests */
    lx_queue_entry *head[LEVELS], *tail[LEVELS];
    uint32_t n; /* waiting in this line, all levels */
    uint32_t hash;
    char name[];
};

struct lx_queue_line {
    lx_queue_line *next;
    char *name;
    user_node **buckets;
    size_t n_buckets, n_users;
    user_node *turn[LEVELS];
    size_t n;
};

typedef struct {
    int n_levels;
    uint8_t level_of[LX_PRIO_COUNT]; /* class → level */
    uint8_t level_class[LEVELS];     /* level → the first class mapped to it */
    long level_number[LEVELS];
} level_map;

struct lx_queue {
    lx_queue_conf conf;
    uint64_t aging_ns;
    level_map m;
    lx_queue_line *lines;
    lx_queue_entry *oldest[LEVELS], *newest[LEVELS];
    size_t level_n[LEVELS];
    lx_queue_entry **heap;
    size_t heap_len, heap_cap;
    uint64_t seq;
    size_t depth[LX_PRIO_COUNT];
    lx_queue_stats_t st; /* the counters; the gauges are filled in when read */
};

const double lx_queue_wait_bounds_s[LX_QUEUE_WAIT_BOUNDS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                             1,     2.5,  5,     10,   30,  60};

static const char *const prio_names[LX_PRIO_COUNT] = {"high", "normal", "low"};

const char *lx_priority_name(lx_priority p) { return (unsigned)p < LX_PRIO_COUNT ? prio_names[p] : "normal"; }

int lx_priority_parse(const char *s, size_t len)
{
    for (int i = 0; i < LX_PRIO_COUNT; i++)
        if (strlen(prio_names[i]) == len && memcmp(prio_names[i], s, len) == 0) return i;
    return -1;
}

/* ---------- levels ---------- */

static void map_levels(const lx_queue_conf *c, level_map *m)
{
    *m = (level_map){0};
    for (int i = 0; i < LX_PRIO_COUNT; i++) {
        int below = 0; /* distinct numbers smaller than this class's */
        for (int j = 0; j < LX_PRIO_COUNT; j++) {
            bool first = true;
            for (int k = 0; k < j; k++)
                first = first && c->numbers[k] != c->numbers[j];
            if (first && c->numbers[j] < c->numbers[i]) below++;
        }
        m->level_of[i] = (uint8_t)below;
        if (below + 1 > m->n_levels) m->n_levels = below + 1;
    }
    for (int i = LX_PRIO_COUNT - 1; i >= 0; i--) {
        m->level_class[m->level_of[i]] = (uint8_t)i;
        m->level_number[m->level_of[i]] = c->numbers[i];
    }
}

static bool same_levels(const level_map *a, const level_map *b)
{
    return a->n_levels == b->n_levels && memcmp(a->level_of, b->level_of, sizeof a->level_of) == 0;
}

/* ---------- users (per line, hashed by name) ---------- */

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void users_grow(lx_queue_line *l)
{
    size_t nb = l->n_buckets ? l->n_buckets * 2 : 8;
    user_node **b = lx_xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < l->n_buckets; i++) {
        for (user_node *u = l->buckets[i], *next; u; u = next) {
            next = u->hnext;
            u->hnext = b[u->hash & (nb - 1)];
            b[u->hash & (nb - 1)] = u;
        }
    }
    free(l->buckets);
    l->buckets = b;
    l->n_buckets = nb;
}

static user_node *user_get(lx_queue_line *l, const char *name)
{
    uint32_t h = hash_name(name);
    if (l->n_buckets)
        for (user_node *u = l->buckets[h & (l->n_buckets - 1)]; u; u = u->hnext)
            if (u->hash == h && strcmp(u->name, name) == 0) return u;
    if (l->n_users + 1 > l->n_buckets) users_grow(l);
    size_t len = strlen(name);
    user_node *u = lx_xcalloc(1, sizeof *u + len + 1);
    memcpy(u->name, name, len + 1);
    u->hash = h;
    u->hnext = l->buckets[h & (l->n_buckets - 1)];
    l->buckets[h & (l->n_buckets - 1)] = u;
    l->n_users++;
    return u;
}

static void user_free(lx_queue_line *l, user_node *u)
{
    user_node **pp = &l->buckets[u->hash & (l->n_buckets - 1)];
    while (*pp != u)
        pp = &(*pp)->hnext;
    *pp = u->hnext;
    l->n_users--;
    free(u);
}

/* ---------- the rings, the FIFOs and the level orders ---------- */

static void ring_insert(lx_queue_line *l, int L, user_node *u)
{
    user_node *t = l->turn[L];
    if (t == NULL) {
        u->rnext[L] = u->rprev[L] = u;
        l->turn[L] = u;
        return;
    }
    u->rnext[L] = t;
    u->rprev[L] = t->rprev[L];
    t->rprev[L]->rnext[L] = u;
    t->rprev[L] = u;
}

static void ring_unlink(lx_queue_line *l, int L, user_node *u)
{
    if (u->rnext[L] == u) {
        l->turn[L] = NULL;
    } else {
        u->rprev[L]->rnext[L] = u->rnext[L];
        u->rnext[L]->rprev[L] = u->rprev[L];
        if (l->turn[L] == u) l->turn[L] = u->rnext[L];
    }
    u->rnext[L] = u->rprev[L] = NULL;
}

static void order_append(lx_queue *q, int L, lx_queue_entry *e)
{
    e->newer = NULL;
    e->older = q->newest[L];
    if (q->newest[L])
        q->newest[L]->newer = e;
    else
        q->oldest[L] = e;
    q->newest[L] = e;
}

static void order_unlink(lx_queue *q, int L, lx_queue_entry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        q->oldest[L] = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        q->newest[L] = e->older;
    e->newer = e->older = NULL;
}

/* Links e (user and entered_ns set) at level L: its user's FIFO tail, the ring, the level order. */
static void place(lx_queue *q, lx_queue_entry *e, int L)
{
    user_node *u = e->user;
    e->level = (uint8_t)L;
    e->next = NULL;
    e->prev = u->tail[L];
    if (u->tail[L])
        u->tail[L]->next = e;
    else {
        u->head[L] = e;
        ring_insert(e->line, L, u);
    }
    u->tail[L] = e;
    order_append(q, L, e);
    q->level_n[L]++;
}

static void unplace(lx_queue *q, lx_queue_entry *e)
{
    user_node *u = e->user;
    int L = e->level;
    if (e->prev)
        e->prev->next = e->next;
    else
        u->head[L] = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        u->tail[L] = e->prev;
    e->next = e->prev = NULL;
    if (u->head[L] == NULL) ring_unlink(e->line, L, u);
    order_unlink(q, L, e);
    q->level_n[L]--;
}

/* ---------- the deadline heap ---------- */

static bool heap_less(const lx_queue_entry *a, const lx_queue_entry *b)
{
    return a->deadline_ns < b->deadline_ns || (a->deadline_ns == b->deadline_ns && a->seq < b->seq);
}

static void heap_set(lx_queue *q, size_t i, lx_queue_entry *e)
{
    q->heap[i] = e;
    e->heap_idx = (uint32_t)i;
}

static void sift_up(lx_queue *q, size_t i)
{
    lx_queue_entry *e = q->heap[i];
    while (i > 0 && heap_less(e, q->heap[(i - 1) / 2])) {
        heap_set(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(q, i, e);
}

static void sift_down(lx_queue *q, size_t i)
{
    lx_queue_entry *e = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->heap_len) break;
        if (c + 1 < q->heap_len && heap_less(q->heap[c + 1], q->heap[c])) c++;
        if (!heap_less(q->heap[c], e)) break;
        heap_set(q, i, q->heap[c]);
        i = c;
    }
    heap_set(q, i, e);
}

static void heap_push(lx_queue *q, lx_queue_entry *e)
{
    if (q->heap_len == q->heap_cap) {
        q->heap_cap = q->heap_cap ? q->heap_cap * 2 : 64;
        q->heap = lx_xrealloc(q->heap, q->heap_cap * sizeof *q->heap);
    }
    heap_set(q, q->heap_len++, e);
    sift_up(q, q->heap_len - 1);
}

static void heap_remove(lx_queue *q, lx_queue_entry *e)
{
    size_t i = e->heap_idx;
    lx_queue_entry *last = q->heap[--q->heap_len];
    if (last == e) return;
    heap_set(q, i, last);
    if (i > 0 && heap_less(last, q->heap[(i - 1) / 2]))
        sift_up(q, i);
    else
        sift_down(q, i);
}

/* ---------- in and out ---------- */

static void take_out(lx_queue *q, lx_queue_entry *e)
{
    user_node *u = e->user;
    lx_queue_line *l = e->line;
    unplace(q, e);
    heap_remove(q, e);
    q->depth[e->cls]--;
    l->n--;
    if (--u->n == 0) user_free(l, u);
    e->user = NULL;
    e->waiting = 0;
}

/* Promotes every entry whose time at its level reached aging_s; lowest level first, so cascades apply. */
static void age(lx_queue *q, uint64_t now)
{
    if (q->aging_ns == 0) return;
    for (int L = q->m.n_levels - 1; L > 0; L--) {
        lx_queue_entry *e;
        while ((e = q->oldest[L]) != NULL && e->entered_ns + q->aging_ns <= now) {
            uint64_t due = e->entered_ns + q->aging_ns;
            unplace(q, e);
            if (q->newest[L - 1] && q->newest[L - 1]->entered_ns > due) due = q->newest[L - 1]->entered_ns;
            e->entered_ns = due;
            e->promotions++;
            q->st.promoted++;
            place(q, e, L - 1);
        }
    }
}

static int worst_level(const lx_queue *q)
{
    for (int L = q->m.n_levels - 1; L >= 0; L--)
        if (q->newest[L]) return L;
    return -1;
}

static void record_wait(lx_queue *q, lx_priority cls, double wait_s)
{
    size_t b = 0;
    while (b < LX_QUEUE_WAIT_BOUNDS && wait_s > lx_queue_wait_bounds_s[b])
        b++;
    q->st.wait_buckets[cls][b]++;
    q->st.wait_sum_s[cls] += wait_s;
    q->st.wait_count[cls]++;
    q->st.dispatched[cls]++;
    if (wait_s > q->st.wait_max_s) q->st.wait_max_s = wait_s;
}

lx_queue_push_result lx_queue_push(lx_queue *q, lx_queue_line *line, lx_queue_entry *e, const char *user,
                                   lx_priority cls, uint64_t now, uint64_t deadline_ns, lx_queue_entry **displaced)
{
    *displaced = NULL;
    age(q, now);
    int L = q->m.level_of[cls];
    if ((long)q->heap_len >= q->conf.max_size) {
        int worst = worst_level(q);
        if (worst < 0 || L >= worst) {
            q->st.rejected_full[cls]++;
            return LX_QUEUE_FULL;
        }
        lx_queue_entry *victim = q->newest[worst];
        take_out(q, victim);
        q->st.displaced[victim->cls]++;
        *displaced = victim;
    }
    *e = (lx_queue_entry){.line = line,
                          .enqueued_ns = now,
                          .entered_ns = now,
                          .deadline_ns = deadline_ns,
                          .seq = ++q->seq,
                          .cls = (uint8_t)cls,
                          .waiting = 1};
    e->user = user_get(line, user ? user : "");
    e->user->n++;
    place(q, e, L);
    heap_push(q, e);
    q->depth[cls]++;
    line->n++;
    q->st.enqueued[cls]++;
    return LX_QUEUE_OK;
}

static lx_queue_entry *next_of(lx_queue *q, lx_queue_line *line, int *level)
{
    for (int L = 0; L < q->m.n_levels; L++) {
        if (line->turn[L]) {
            *level = L;
            return line->turn[L]->head[L];
        }
    }
    return NULL;
}

lx_queue_entry *lx_queue_peek(lx_queue *q, lx_queue_line *line, uint64_t now)
{
    int L;
    age(q, now);
    return next_of(q, line, &L);
}

lx_queue_entry *lx_queue_pop(lx_queue *q, lx_queue_line *line, uint64_t now)
{
    int L;
    age(q, now);
    lx_queue_entry *e = next_of(q, line, &L);
    if (e == NULL) return NULL;
    line->turn[L] = line->turn[L]->rnext[L]; /* this user's turn is over */
    take_out(q, e);
    record_wait(q, e->cls, now > e->enqueued_ns ? (double)(now - e->enqueued_ns) / 1e9 : 0.0);
    return e;
}

void lx_queue_remove(lx_queue *q, lx_queue_entry *e)
{
    if (!e->waiting) return;
    take_out(q, e);
    q->st.cancelled[e->cls]++;
}

void lx_queue_drop(lx_queue *q, lx_queue_entry *e)
{
    if (e->waiting) take_out(q, e);
}

lx_queue_entry *lx_queue_expire(lx_queue *q, uint64_t now)
{
    if (q->heap_len == 0 || q->heap[0]->deadline_ns > now) return NULL;
    lx_queue_entry *e = q->heap[0];
    take_out(q, e);
    q->st.timed_out[e->cls]++;
    return e;
}

uint64_t lx_queue_next_deadline(const lx_queue *q) { return q->heap_len ? q->heap[0]->deadline_ns : UINT64_MAX; }

lx_queue_entry *lx_queue_any(const lx_queue *q) { return q->heap_len ? q->heap[0] : NULL; }

size_t lx_queue_len(const lx_queue *q) { return q->heap_len; }

long lx_queue_entry_number(const lx_queue *q, const lx_queue_entry *e) { return q->m.level_number[e->level]; }

long lx_queue_class_number(const lx_queue *q, lx_priority cls) { return q->conf.numbers[cls]; }

void lx_queue_note_direct(lx_queue *q, lx_priority cls)
{
    record_wait(q, cls, 0.0);
    q->st.direct[cls]++;
}

/* ---------- lines, life cycle, reconfiguration ---------- */

lx_queue_line *lx_queue_line_get(lx_queue *q, const char *name)
{
    for (lx_queue_line *l = q->lines; l; l = l->next)
        if (strcmp(l->name, name) == 0) return l;
    lx_queue_line *l = lx_xcalloc(1, sizeof *l);
    l->name = lx_xstrdup(name);
    l->next = q->lines;
    q->lines = l;
    return l;
}

const char *lx_queue_line_name(const lx_queue_line *l) { return l->name; }

size_t lx_queue_line_len(const lx_queue_line *l) { return l->n; }

static void set_conf(lx_queue *q, const lx_queue_conf *conf)
{
    q->conf = *conf;
    q->aging_ns = conf->aging_s > 0 ? (uint64_t)(conf->aging_s * 1e9) : 0;
}

lx_queue *lx_queue_new(const lx_queue_conf *conf)
{
    lx_queue *q = lx_xcalloc(1, sizeof *q);
    set_conf(q, conf);
    map_levels(conf, &q->m);
    return q;
}

void lx_queue_free(lx_queue *q)
{
    if (q == NULL) return;
    for (lx_queue_line *l = q->lines, *next; l; l = next) {
        next = l->next;
        for (size_t i = 0; i < l->n_buckets; i++)
            for (user_node *u = l->buckets[i], *un; u; u = un) {
                un = u->hnext;
                free(u);
            }
        free(l->buckets);
        free(l->name);
        free(l);
    }
    free(q->heap);
    free(q);
}

static int by_entered(const void *a, const void *b)
{
    const lx_queue_entry *x = *(lx_queue_entry *const *)a, *y = *(lx_queue_entry *const *)b;
    if (x->entered_ns != y->entered_ns) return x->entered_ns < y->entered_ns ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Empties every ring, FIFO and level order (the heap and the user nodes stay). */
static void unlink_all(lx_queue *q)
{
    for (lx_queue_line *l = q->lines; l; l = l->next) {
        memset(l->turn, 0, sizeof l->turn);
        for (size_t i = 0; i < l->n_buckets; i++)
            for (user_node *u = l->buckets[i]; u; u = u->hnext) {
                memset(u->head, 0, sizeof u->head);
                memset(u->tail, 0, sizeof u->tail);
                memset(u->rnext, 0, sizeof u->rnext);
                memset(u->rprev, 0, sizeof u->rprev);
            }
    }
    memset(q->oldest, 0, sizeof q->oldest);
    memset(q->newest, 0, sizeof q->newest);
    memset(q->level_n, 0, sizeof q->level_n);
}

/* The levels changed: every entry goes to the new level of the class it reached, in entered order. */
static void regroup(lx_queue *q, const level_map *m)
{
    size_t n = q->heap_len;
    lx_queue_entry **v = lx_xmalloc((n ? n : 1) * sizeof *v);
    memcpy(v, q->heap, n * sizeof *v);
    qsort(v, n, sizeof *v, by_entered);
    for (size_t i = 0; i < n; i++)
        v[i]->level = m->level_of[q->m.level_class[v[i]->level]];
    unlink_all(q);
    q->m = *m;
    for (size_t i = 0; i < n; i++)
        place(q, v[i], v[i]->level);
    free(v);
}

void lx_queue_reconfigure(lx_queue *q, const lx_queue_conf *conf, uint64_t now)
{
    age(q, now);
    set_conf(q, conf);
    level_map m;
    map_levels(conf, &m);
    if (same_levels(&m, &q->m))
        q->m = m;
    else
        regroup(q, &m);
}

/* ---------- statistics ---------- */

void lx_queue_stats(const lx_queue *q, lx_queue_stats_t *out)
{
    *out = q->st;
    out->max_size = q->conf.max_size;
    out->waiting = q->heap_len;
    memcpy(out->depth, q->depth, sizeof out->depth);
    memset(out->depth_level, 0, sizeof out->depth_level);
    for (int L = 0; L < q->m.n_levels; L++)
        out->depth_level[q->m.level_class[L]] = q->level_n[L];
}

/* ---------- self-check (tests) ---------- */

static int check_heap(const lx_queue *q)
{
    for (size_t i = 0; i < q->heap_len; i++) {
        const lx_queue_entry *e = q->heap[i];
        if (e->heap_idx != i || !e->waiting) return -1;
        if (i > 0 && heap_less(e, q->heap[(i - 1) / 2])) return -2;
    }
    return 0;
}

static int check_orders(const lx_queue *q)
{
    size_t total = 0;
    for (int L = 0; L < LEVELS; L++) {
        size_t n = 0;
        const lx_queue_entry *prev = NULL;
        for (const lx_queue_entry *e = q->oldest[L]; e; prev = e, e = e->newer, n++) {
            if (e->older != prev || e->level != L || !e->waiting) return -3;
            if (prev && prev->entered_ns > e->entered_ns) return -4;
        }
        if (prev != q->newest[L] || n != q->level_n[L] || (L >= q->m.n_levels && n)) return -5;
        total += n;
    }
    return total == q->heap_len ? 0 : -6;
}

static int check_user(const lx_queue_line *l, const user_node *u)
{
    size_t n = 0;
    for (int L = 0; L < LEVELS; L++) {
        const lx_queue_entry *prev = NULL;
        for (const lx_queue_entry *e = u->head[L]; e; prev = e, e = e->next, n++)
            if (e->prev != prev || e->user != u || e->line != l || e->level != L) return -7;
        if (prev != u->tail[L]) return -8;
        if ((u->head[L] != NULL) != (u->rnext[L] != NULL)) return -9;
        if (u->rnext[L] && (u->rnext[L]->rprev[L] != u || u->rprev[L]->rnext[L] != u)) return -10;
    }
    return n == u->n && n > 0 ? 0 : -11;
}

static int check_line(const lx_queue_line *l, size_t *total)
{
    size_t n = 0, users = 0;
    for (size_t i = 0; i < l->n_buckets; i++)
        for (const user_node *u = l->buckets[i]; u; u = u->hnext, users++) {
            int rc = check_user(l, u);
            if (rc) return rc;
            n += u->n;
        }
    for (int L = 0; L < LEVELS; L++)
        if (l->turn[L] && l->turn[L]->head[L] == NULL) return -12;
    *total += n;
    return n == l->n && users == l->n_users ? 0 : -13;
}

int lx_queue_check(const lx_queue *q)
{
    int rc = check_heap(q);
    if (rc == 0) rc = check_orders(q);
    size_t total = 0;
    for (const lx_queue_line *l = q->lines; l && rc == 0; l = l->next)
        rc = check_line(l, &total);
    if (rc == 0 && total != q->heap_len) rc = -14;
    size_t d = 0;
    for (int c = 0; c < LX_PRIO_COUNT; c++)
        d += q->depth[c];
    if (rc == 0 && d != q->heap_len) rc = -15;
    return rc;
}
