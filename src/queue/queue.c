/*
 * RequestQueue: levels by priority, users taking turns within a level, FIFO per user, aging, deadlines,
 * a bounded size with displacement. See queue.h for the rules.
 *
 * Structures (all intrusive lx_list / lx_map, so every unlink is O(1)):
 *  - per line, the users who have a request waiting (an lx_map by name) and, per level, the ring of
 *    those with a request at that level, kept in order of service: the first user's turn is next.
 *    Serving moves that user to the end, so each user gets one request per round; a user who gets a
 *    first request at a level joins the end, just before the one whose turn it is (the end of the
 *    current round);
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
 * LX_ASSERT checks the O(1) parts of these at each change (debug and test builds): an entry is taken
 * out only when waiting and linked, counts never go below zero, an entry joins a
 * level order no older than its newest, and a moved heap entry is in order with its parent.
 */
#include "queue/queue.h"

#include <stdlib.h>
#include <string.h>

#include "utils/common.h"
#include "utils/map.h"

#define LEVELS LX_PRIO_COUNT

typedef struct lx_queue_user user_node;

struct lx_queue_user {
    lx_map_node node;     /* in its line's users, by name */
    lx_list ring[LEVELS]; /* in its line's ring of each level where it has requests */
    lx_list fifo[LEVELS]; /* its waiting entries at each level, oldest first */
    uint32_t n;           /* waiting in this line, all levels */
    char name[];
};

struct lx_queue_line {
    lx_list link; /* in the queue's lines */
    char *name;
    lx_map users;         /* user_node by name */
    lx_list ring[LEVELS]; /* the users with a request at each level; the first one's turn is next */
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
    lx_list lines;
    lx_list order[LEVELS]; /* every entry of each level, in the order it entered it */
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

/* ---------- users (per line, by name) ---------- */

static user_node *user_get(lx_queue_line *l, const char *name)
{
    size_t len = strlen(name);
    lx_map_node *found = lx_map_find(&l->users, name, len);
    if (found) return LX_MAP_ENTRY(found, user_node, node);
    user_node *u = lx_xcalloc(1, sizeof *u + len + 1);
    memcpy(u->name, name, len + 1);
    for (int L = 0; L < LEVELS; L++) {
        lx_list_init(&u->ring[L]);
        lx_list_init(&u->fifo[L]);
    }
    lx_map_add(&l->users, &u->node, u->name, len);
    return u;
}

static void user_free(lx_queue_line *l, user_node *u)
{
    lx_map_remove(&l->users, &u->node);
    free(u);
}

/* ---------- the rings, the FIFOs and the level orders ---------- */

/* The user a node of a level-L ring belongs to. */
static user_node *ring_user(const lx_list *n, int L) { return LX_CONTAINER_OF(n - L, user_node, ring); }

/* The user whose turn it is at level L (the first of the ring), or NULL. */
static user_node *turn_of(const lx_queue_line *l, int L)
{
    const lx_list *n = lx_list_first(&l->ring[L]);
    return n ? ring_user(n, L) : NULL;
}

static lx_queue_entry *fifo_entry(const lx_list *n) { return n ? LX_CONTAINER_OF(n, lx_queue_entry, fifo) : NULL; }
static lx_queue_entry *order_entry(const lx_list *n) { return n ? LX_CONTAINER_OF(n, lx_queue_entry, order) : NULL; }

static lx_queue_entry *oldest(const lx_queue *q, int L) { return order_entry(lx_list_first(&q->order[L])); }
static lx_queue_entry *newest(const lx_queue *q, int L) { return order_entry(lx_list_last(&q->order[L])); }

/*
 * Links e (user and entered_ns set) at level L: its user's FIFO tail, the level order's end. A user with
 * no request at L yet joins the ring at its end, which is just before the one whose turn it is: the end of
 * the current round.
 */
static void place(lx_queue *q, lx_queue_entry *e, int L)
{
    user_node *u = e->user;
    LX_ASSERT(newest(q, L) == NULL || newest(q, L)->entered_ns <= e->entered_ns);
    e->level = (uint8_t)L;
    if (lx_list_empty(&u->fifo[L])) lx_list_append(&e->line->ring[L], &u->ring[L]);
    lx_list_append(&u->fifo[L], &e->fifo);
    lx_list_append(&q->order[L], &e->order);
    q->level_n[L]++;
}

static void unplace(lx_queue *q, lx_queue_entry *e)
{
    user_node *u = e->user;
    int L = e->level;
    LX_ASSERT(lx_list_linked(&e->fifo) && lx_list_linked(&e->order) && q->level_n[L] > 0);
    lx_list_remove(&e->fifo);
    if (lx_list_empty(&u->fifo[L])) lx_list_remove(&u->ring[L]);
    lx_list_remove(&e->order);
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
    LX_ASSERT(i == 0 || !heap_less(e, q->heap[(i - 1) / 2]));
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
    LX_ASSERT(i == 0 || !heap_less(e, q->heap[(i - 1) / 2]));
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
    LX_ASSERT(i < q->heap_len && q->heap[i] == e);
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
    LX_ASSERT(e->waiting && q->depth[e->cls] > 0 && l->n > 0 && u->n > 0);
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
        while ((e = oldest(q, L)) != NULL && e->entered_ns + q->aging_ns <= now) {
            uint64_t due = e->entered_ns + q->aging_ns;
            unplace(q, e);
            lx_queue_entry *last = newest(q, L - 1);
            if (last && last->entered_ns > due) due = last->entered_ns;
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
        if (!lx_list_empty(&q->order[L])) return L;
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
        lx_queue_entry *victim = newest(q, worst);
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
        user_node *u = turn_of(line, L);
        if (u) {
            *level = L;
            return fifo_entry(lx_list_first(&u->fifo[L]));
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

bool lx_queue_before(const lx_queue_entry *x, const lx_queue_entry *y)
{
    if (x->level != y->level) return x->level < y->level;
    return x->entered_ns != y->entered_ns ? x->entered_ns < y->entered_ns : x->seq < y->seq;
}

lx_queue_entry *lx_queue_pop(lx_queue *q, lx_queue_line *line, uint64_t now)
{
    int L;
    age(q, now);
    lx_queue_entry *e = next_of(q, line, &L);
    if (e == NULL) return NULL;
    lx_list_remove(&e->user->ring[L]); /* this user's turn is over: to the end of the round */
    lx_list_append(&line->ring[L], &e->user->ring[L]);
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
    lx_list *n, *tmp;
    LX_LIST_EACH(&q->lines, n, tmp)
    {
        lx_queue_line *l = LX_CONTAINER_OF(n, lx_queue_line, link);
        if (strcmp(l->name, name) == 0) return l;
    }
    lx_queue_line *l = lx_xcalloc(1, sizeof *l);
    l->name = lx_xstrdup(name);
    lx_map_init(&l->users);
    for (int L = 0; L < LEVELS; L++)
        lx_list_init(&l->ring[L]);
    lx_list_prepend(&q->lines, &l->link);
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
    lx_list_init(&q->lines);
    for (int L = 0; L < LEVELS; L++)
        lx_list_init(&q->order[L]);
    return q;
}

void lx_queue_free(lx_queue *q)
{
    if (q == NULL) return;
    lx_list *n, *tmp;
    LX_LIST_EACH(&q->lines, n, tmp)
    {
        lx_queue_line *l = LX_CONTAINER_OF(n, lx_queue_line, link);
        lx_map_iter it = lx_map_iter_of(&l->users);
        lx_map_node *un;
        while ((un = lx_map_next(&it)) != NULL)
            user_free(l, LX_MAP_ENTRY(un, user_node, node));
        lx_map_free(&l->users);
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
    lx_list *n, *tmp;
    LX_LIST_EACH(&q->lines, n, tmp)
    {
        lx_queue_line *l = LX_CONTAINER_OF(n, lx_queue_line, link);
        lx_map_iter it = lx_map_iter_of(&l->users);
        lx_map_node *un;
        while ((un = lx_map_next(&it)) != NULL) {
            user_node *u = LX_MAP_ENTRY(un, user_node, node);
            for (int L = 0; L < LEVELS; L++) {
                lx_list_init(&u->ring[L]);
                lx_list_init(&u->fifo[L]);
            }
        }
        for (int L = 0; L < LEVELS; L++)
            lx_list_init(&l->ring[L]);
    }
    for (int L = 0; L < LEVELS; L++)
        lx_list_init(&q->order[L]);
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

/* Is the list through head sound (each node's neighbours point back at it)? *count: its nodes. */
static bool list_sound(const lx_list *head, size_t *count)
{
    size_t n = 0;
    const lx_list *x = head;
    do {
        if (x->next == NULL || x->next->prev != x) return false;
        x = x->next;
        n++;
    } while (x != head);
    *count = n - 1;
    return true;
}

static int check_orders(const lx_queue *q)
{
    size_t total = 0;
    for (int L = 0; L < LEVELS; L++) {
        size_t n;
        if (!list_sound(&q->order[L], &n)) return -3;
        const lx_queue_entry *prev = NULL;
        for (const lx_list *x = lx_list_first(&q->order[L]); x; x = lx_list_next(&q->order[L], x)) {
            const lx_queue_entry *e = order_entry(x);
            if (e->level != L || !e->waiting) return -3;
            if (prev && prev->entered_ns > e->entered_ns) return -4;
            prev = e;
        }
        if (n != q->level_n[L] || (L >= q->m.n_levels && n)) return -5;
        total += n;
    }
    return total == q->heap_len ? 0 : -6;
}

static int check_user(const lx_queue_line *l, const user_node *u)
{
    size_t n = 0;
    for (int L = 0; L < LEVELS; L++) {
        size_t k;
        if (!list_sound(&u->fifo[L], &k)) return -8;
        for (const lx_list *x = lx_list_first(&u->fifo[L]); x; x = lx_list_next(&u->fifo[L], x)) {
            const lx_queue_entry *e = fifo_entry(x);
            if (e->user != u || e->line != l || e->level != L) return -7;
        }
        n += k;
        if ((k > 0) != lx_list_linked(&u->ring[L])) return -9;
        if (k > 0 && (u->ring[L].next->prev != &u->ring[L] || u->ring[L].prev->next != &u->ring[L])) return -10;
    }
    return n == u->n && n > 0 ? 0 : -11;
}

static int check_line(const lx_queue_line *l, size_t *total)
{
    size_t n = 0, in_ring[LEVELS] = {0};
    lx_map_iter it = lx_map_iter_of(&l->users);
    const lx_map_node *un;
    while ((un = lx_map_next(&it)) != NULL) {
        const user_node *u = LX_MAP_ENTRY(un, user_node, node);
        int rc = check_user(l, u);
        if (rc) return rc;
        for (int L = 0; L < LEVELS; L++)
            in_ring[L] += lx_list_linked(&u->ring[L]);
        n += u->n;
    }
    for (int L = 0; L < LEVELS; L++) {
        size_t k;
        if (!list_sound(&l->ring[L], &k) || k != in_ring[L]) return -12;
        for (const lx_list *x = lx_list_first(&l->ring[L]); x; x = lx_list_next(&l->ring[L], x))
            if (lx_list_empty(&ring_user(x, L)->fifo[L])) return -12;
    }
    *total += n;
    return n == l->n ? 0 : -13;
}

int lx_queue_check(const lx_queue *q)
{
    int rc = check_heap(q);
    if (rc == 0) rc = check_orders(q);
    size_t total = 0, lines;
    if (rc == 0 && !list_sound(&q->lines, &lines)) rc = -14;
    for (const lx_list *x = lx_list_first(&q->lines); x && rc == 0; x = lx_list_next(&q->lines, x))
        rc = check_line(LX_CONTAINER_OF(x, lx_queue_line, link), &total);
    if (rc == 0 && total != q->heap_len) rc = -14;
    size_t d = 0;
    for (int c = 0; c < LX_PRIO_COUNT; c++)
        d += q->depth[c];
    if (rc == 0 && d != q->heap_len) rc = -15;
    return rc;
}
