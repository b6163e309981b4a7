/*
 * RequestQueue: the waiting line in front of the backends — priority classes, per-user fairness,
 * aging, deadlines and a bounded size. The pure data structure and policy: no HTTP, no libuv, no
 * clock of its own (every call takes `now`, monotonic nanoseconds), so the ordering rules are
 * unit-tested with a fake clock. queue/admission.c drives it from the loop.
 *
 * Shape. One lx_queue holds every waiting request; it is divided into lines (lx_queue_line, one per
 * model: a request waits for a slot of any backend serving its model). max_size, the displacement
 * rule, the deadline heap and the statistics are global to the queue; the order of service is per line:
 *   1. level: the priority classes high, normal, low map to levels by their numbers (queue.priorities,
 *      lower is served first; classes with equal numbers share a level);
 *   2. within a level, users take turns (round robin by x_user_id), one request per turn;
 *   3. within a user, first in first out.
 * Aging: a request that waited aging_s at its level moves up one level (and, after aging_s more, one
 * more), so nothing starves. It joins the new level as that user's newest request.
 * Full: with max_size requests waiting, an arrival whose level is strictly better than the worst level
 * waiting displaces the request that entered that worst level last (the newest of the lowest); any
 * other arrival is refused. Deadlines: each request carries one; lx_queue_expire hands back those past it.
 *
 * Cost: push, pop, remove and expire are O(log n) (the deadline heap) plus O(1) list work; aging is
 * O(1) per promotion, done lazily at push and pop. A user node is allocated on a user's first waiting
 * request in a line and freed with their last; the entries themselves are intrusive (the caller embeds
 * an lx_queue_entry in its request), so enqueueing allocates nothing else (the heap array grows by
 * doubling).
 *
 * Ownership: the queue owns its lines and user nodes; the caller owns the entries and must take each
 * one out (pop, remove, expire, displaced) before freeing it. `now` must never go backwards.
 * Not thread-safe: one thread (the loop thread) uses a queue.
 */
#ifndef LX_QUEUE_H
#define LX_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utils/list.h"

/* The priority classes a client can ask for (x_priority / X-Priority). */
typedef enum { LX_PRIO_HIGH = 0, LX_PRIO_NORMAL, LX_PRIO_LOW, LX_PRIO_COUNT } lx_priority;

/* "high", "normal", "low". */
const char *lx_priority_name(lx_priority p);
/* The class named by s (len bytes, exact, lower case), or -1. */
int lx_priority_parse(const char *s, size_t len);

typedef struct lx_queue lx_queue;
typedef struct lx_queue_line lx_queue_line;
struct lx_queue_user;

/* Embed one in each request that may wait. Zero it before its first push; the fields are the queue's. */
typedef struct lx_queue_entry {
    lx_list fifo;  /* in its user's FIFO at its level */
    lx_list order; /* in its level's list of every entry, in the order they entered it */
    struct lx_queue_user *user;
    lx_queue_line *line;
    uint64_t enqueued_ns; /* arrival */
    uint64_t entered_ns;  /* entered its current level: arrival, or the due time of its last promotion */
    uint64_t deadline_ns; /* UINT64_MAX: none */
    uint64_t seq;         /* arrival order, queue-wide */
    uint32_t heap_idx;
    uint8_t cls;        /* lx_priority asked for */
    uint8_t level;      /* where it waits now (0 is served first) */
    uint8_t promotions; /* levels gained by aging */
    uint8_t waiting;    /* in the queue */
} lx_queue_entry;

typedef struct {
    long max_size;               /* waiting requests in all, >= 1 */
    double aging_s;              /* <= 0: no aging */
    long numbers[LX_PRIO_COUNT]; /* queue.priorities: lower is served first */
} lx_queue_conf;

lx_queue *lx_queue_new(const lx_queue_conf *conf);
/* Frees the queue, its lines and user nodes. Entries still waiting are simply forgotten (their memory is
 * the caller's); take them out first if anyone is to be told. */
void lx_queue_free(lx_queue *q);

/*
 * New limits and priorities, keeping every waiting request (a config reload). A smaller max_size drops
 * nobody: arrivals are refused (or displace) until the queue is below it again. New priority numbers
 * regroup the levels: a waiting request keeps the class it reached by aging and goes to that class's
 * new level. Deadlines stay as they were given. O(n log n) when the levels change, else O(1).
 */
void lx_queue_reconfigure(lx_queue *q, const lx_queue_conf *conf, uint64_t now);

/* The line called name, created empty if new (the name is copied). Lines live as long as the queue. */
lx_queue_line *lx_queue_line_get(lx_queue *q, const char *name);
const char *lx_queue_line_name(const lx_queue_line *l);
size_t lx_queue_line_len(const lx_queue_line *l);

typedef enum {
    LX_QUEUE_OK = 0,    /* e waits */
    LX_QUEUE_FULL = -1, /* refused: max_size reached and e does not outrank the lowest waiting request */
} lx_queue_push_result;

/*
 * Puts e (not waiting) in line for `user` (copied when new; NULL or "" is one shared anonymous user),
 * class cls, with an absolute deadline (UINT64_MAX for none). When the queue is full and e outranks the
 * lowest level waiting, the newest entry of that level is taken out and returned in *displaced (the
 * caller answers it); otherwise *displaced is NULL.
 */
lx_queue_push_result lx_queue_push(lx_queue *q, lx_queue_line *line, lx_queue_entry *e, const char *user,
                                   lx_priority cls, uint64_t now, uint64_t deadline_ns, lx_queue_entry **displaced);

/* The entry line would serve next, left in place; NULL if the line is empty. */
lx_queue_entry *lx_queue_peek(lx_queue *q, lx_queue_line *line, uint64_t now);
/* Is x (waiting) served before y (waiting, maybe of another line)? The better level first, then the one
 * that entered its level first: how a backend serving several lines chooses between their heads. */
bool lx_queue_before(const lx_queue_entry *x, const lx_queue_entry *y);
/* Takes the entry line serves next out of the queue and counts it as dispatched (its wait recorded). */
lx_queue_entry *lx_queue_pop(lx_queue *q, lx_queue_line *line, uint64_t now);
/* Takes a waiting e out (its client left); counted as cancelled. No-op if e is not waiting. */
void lx_queue_remove(lx_queue *q, lx_queue_entry *e);
/* Takes a waiting e out for a reason of the caller's (e.g. shutdown); counted in no statistic. */
void lx_queue_drop(lx_queue *q, lx_queue_entry *e);
/* Takes out and returns one entry whose deadline is <= now (the earliest), counted as timed out; or NULL. */
lx_queue_entry *lx_queue_expire(lx_queue *q, uint64_t now);
/* The earliest deadline of a waiting entry; UINT64_MAX when none. */
uint64_t lx_queue_next_deadline(const lx_queue *q);
/* Any waiting entry (the earliest deadline), or NULL: for emptying the queue. */
lx_queue_entry *lx_queue_any(const lx_queue *q);

size_t lx_queue_len(const lx_queue *q);
/* The priority number of e's current level (after aging): what forward_priority sends. */
long lx_queue_entry_number(const lx_queue *q, const lx_queue_entry *e);
/* The number of class cls under the current configuration. */
long lx_queue_class_number(const lx_queue *q, lx_priority cls);
/* Counts a request that found its backend free and never waited (dispatched with a wait of 0). */
void lx_queue_note_direct(lx_queue *q, lx_priority cls);

/* ---------- statistics, for /stats and /metrics ---------- */

/* Upper bounds (seconds) of the wait-time histogram buckets; a last bucket (+Inf) follows them. */
#define LX_QUEUE_WAIT_BOUNDS 13
extern const double lx_queue_wait_bounds_s[LX_QUEUE_WAIT_BOUNDS];

typedef struct {
    long max_size;
    size_t waiting;                    /* now, in all */
    size_t depth[LX_PRIO_COUNT];       /* now, by the class asked for */
    size_t depth_level[LX_PRIO_COUNT]; /* now, by the class of the level waited at (after aging) */
    /* Since start, by the class asked for: */
    uint64_t enqueued[LX_PRIO_COUNT];      /* went into the queue (had to wait) */
    uint64_t dispatched[LX_PRIO_COUNT];    /* got a backend slot: from the queue, or at once (direct) */
    uint64_t direct[LX_PRIO_COUNT];        /* of dispatched: never waited */
    uint64_t timed_out[LX_PRIO_COUNT];     /* deadline passed while waiting → 504 queue_timeout */
    uint64_t displaced[LX_PRIO_COUNT];     /* pushed out by a higher priority arrival → 503 queue_full */
    uint64_t rejected_full[LX_PRIO_COUNT]; /* refused on arrival, queue full → 503 queue_full */
    uint64_t cancelled[LX_PRIO_COUNT];     /* the client left while waiting */
    uint64_t promoted;                     /* promotions by aging (one per level gained) */
    /* Wait of dispatched requests (direct ones count as 0), by the class asked for: */
    double wait_sum_s[LX_PRIO_COUNT];
    uint64_t wait_count[LX_PRIO_COUNT];
    uint64_t wait_buckets[LX_PRIO_COUNT][LX_QUEUE_WAIT_BOUNDS + 1]; /* per bucket, not cumulative */
    double wait_max_s;                                              /* longest wait of a dispatched request */
} lx_queue_stats_t;

/* A read-only snapshot of the counters. O(1). */
void lx_queue_stats(const lx_queue *q, lx_queue_stats_t *out);

/* Checks every internal invariant (links, counts, heap, the level orders); 0 when sound. For tests. */
int lx_queue_check(const lx_queue *q);

#endif
