/*
 * queue-bench: what the request queue (services/queue.c) costs with 10,000 requests waiting.
 *
 * Each round fills one line with N requests (default 10,000: classes high/normal/low in 1:3:1, users
 * drawn from a pool, each with a deadline), then empties it four ways:
 *   enqueue   N pushes into an empty queue
 *   dispatch  N pops (priority, users' turns, FIFO) until empty
 *   cancel    N removals in random order (clients leaving)
 *   expire    N deadline expiries (the earliest first)
 *   steady    push one + pop one with N waiting, N times (the queue stays at N; aging on)
 * and reports the median ns per operation over RUNS rounds. Memory: bytes per waiting request = the
 * entry embedded in the request (sizeof(lx_queue_entry)) + what the queue allocates (user nodes and the
 * deadline heap, measured with mallinfo2), with 100 users and with one user per request.
 *
 * Usage: queue-bench [N, default 10000] [users, default 100]
 * Build optimized for meaningful numbers: cmake -DCMAKE_BUILD_TYPE=Release (no LEXORA_SANITIZE).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/admission.h"
#include "queue/queue.h"
#include "utils/common.h"

#define RUNS 7

typedef struct {
    lx_queue_entry qe;
    char user[32];
    lx_priority cls;
    uint64_t deadline_off;
} req;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof v[0], cmp_double);
    return v[RUNS / 2];
}

static void make_requests(req *r, size_t n, size_t users, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        unsigned x = (unsigned)rand_r(&seed);
        snprintf(r[i].user, sizeof r[i].user, "user%zu", users >= n ? i : x % users);
        r[i].cls = x % 5 == 0 ? LX_PRIO_HIGH : x % 5 == 4 ? LX_PRIO_LOW : LX_PRIO_NORMAL;
        r[i].deadline_off = (uint64_t)(rand_r(&seed) % 60000) * 1000000u;
    }
}

static lx_queue *new_queue(size_t n)
{
    lx_queue_conf c = {.max_size = (long)n * 2, .aging_s = 30, .numbers = {1, 5, 10}};
    return lx_queue_new(&c);
}

static void fill(lx_queue *q, lx_queue_line *l, req *r, size_t n, uint64_t now)
{
    lx_queue_entry *victim;
    for (size_t i = 0; i < n; i++)
        if (lx_queue_push(q, l, &r[i].qe, r[i].user, r[i].cls, now, now + r[i].deadline_off, &victim) != LX_QUEUE_OK) {
            fprintf(stderr, "queue-bench: push refused\n");
            exit(1);
        }
}

typedef struct {
    double enqueue, dispatch, cancel, expire, steady;
} round_ns;

static double per_op(uint64_t t0, size_t n) { return (double)(lx_now_ns() - t0) / (double)n; }

static void one_round(req *r, size_t n, size_t *order, round_ns *out)
{
    uint64_t now = 1000000000u, t0;
    lx_queue *q = new_queue(n);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");

    t0 = lx_now_ns();
    fill(q, l, r, n, now);
    out->enqueue = per_op(t0, n);
    t0 = lx_now_ns();
    for (size_t i = 0; i < n; i++)
        lx_queue_pop(q, l, now);
    out->dispatch = per_op(t0, n);

    fill(q, l, r, n, now);
    t0 = lx_now_ns();
    for (size_t i = 0; i < n; i++)
        lx_queue_remove(q, &r[order[i]].qe);
    out->cancel = per_op(t0, n);

    fill(q, l, r, n, now);
    t0 = lx_now_ns();
    while (lx_queue_expire(q, UINT64_MAX - 1)) {
    }
    out->expire = per_op(t0, n);

    /* Steady state: N waiting; each step one arrives (re-using the entry just dispatched). */
    fill(q, l, r, n, now);
    lx_queue_entry *victim;
    t0 = lx_now_ns();
    for (size_t i = 0; i < n; i++) {
        now += 1000000; /* 1 ms per step: aging (30 s) promotes along the way */
        req *x = (req *)lx_queue_pop(q, l, now);
        lx_queue_push(q, l, &x->qe, x->user, x->cls, now, now + x->deadline_off, &victim);
    }
    out->steady = per_op(t0, n);
    if (lx_queue_check(q) != 0 || lx_queue_len(q) != n) {
        fprintf(stderr, "queue-bench: the queue is inconsistent\n");
        exit(1);
    }
    lx_queue_free(q);
}

/* Bytes the queue allocates for n waiting requests of `users` users (beyond the embedded entries). */
static double queue_bytes_per_request(size_t n, size_t users)
{
    req *r = calloc(n, sizeof *r);
    make_requests(r, n, users, 7);
    struct mallinfo2 before = mallinfo2();
    lx_queue *q = new_queue(n);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    fill(q, l, r, n, 1000000000u);
    struct mallinfo2 after = mallinfo2();
    lx_queue_free(q);
    free(r);
    return (double)(after.uordblks - before.uordblks) / (double)n;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    size_t users = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
    if (n == 0 || users == 0) {
        fprintf(stderr, "usage: queue-bench [N] [users]\n");
        return 2;
    }
    req *r = calloc(n, sizeof *r);
    size_t *order = calloc(n, sizeof *order);
    make_requests(r, n, users, 1);
    unsigned seed = 3;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand_r(&seed) % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    double e[RUNS], d[RUNS], c[RUNS], x[RUNS], s[RUNS];
    for (int k = 0; k < RUNS; k++) {
        round_ns rn;
        one_round(r, n, order, &rn);
        e[k] = rn.enqueue, d[k] = rn.dispatch, c[k] = rn.cancel, x[k] = rn.expire, s[k] = rn.steady;
    }
    printf("queue-bench: %zu waiting requests, %zu users, median of %d rounds\n", n, users, RUNS);
    printf("  enqueue   %7.1f ns/request\n", median(e));
    printf("  dispatch  %7.1f ns/request\n", median(d));
    printf("  cancel    %7.1f ns/request (random order)\n", median(c));
    printf("  expire    %7.1f ns/request\n", median(x));
    printf("  steady    %7.1f ns per dispatch + enqueue with %zu waiting\n", median(s), n);
    double shared = queue_bytes_per_request(n, users), alone = queue_bytes_per_request(n, n);
    printf("  memory    %zu B entry in each request (lx_queue_entry; %zu B with its admission ticket)\n",
           sizeof(lx_queue_entry), sizeof(lx_admit_ticket));
    printf("            + %.1f B/request allocated by the queue with %zu users, %.1f B with one user each\n", shared,
           users, alone);
    printf("            = %.0f to %.0f B per waiting request\n", (double)sizeof(lx_admit_ticket) + shared,
           (double)sizeof(lx_admit_ticket) + alone);
    free(r);
    free(order);
    return 0;
}
