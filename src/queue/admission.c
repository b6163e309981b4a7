/*
 * Admission: the queue and the backends' slots, driven from the loop. See admission.h.
 *
 * Invariants:
 * - A ticket is in exactly one state: IDLE, WAITING (in the queue, in its backend's line), REJECTING
 *   (out of the queue, on the pending list, answered at the next kick), HOLDING (one slot of its
 *   backend counted for it). Every transition out of WAITING takes it out of the queue first.
 * - Each known backend has its line, created when the backend is first seen, kept across reloads.
 * - Between kicks, a backend that can accept has an empty line, except right after a slot frees, a
 *   saturation ends or a reload: each of those schedules a kick, which dispatches until the backend is
 *   full or its line empty. An arrival that finds a non-empty line waits its turn even if a slot is free.
 * - Callbacks run only from the kick and the deadline timer, with the queue consistent at each call;
 *   every loop there re-reads the state after a callback, because a callback may submit or leave.
 * LX_ASSERT checks the state of a ticket at each transition (debug and test builds).
 */
#include "queue/admission.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "utils/common.h"
#include "utils/log.h"

#define TICKET(e)       LX_CONTAINER_OF(e, lx_admit_ticket, qe)
#define MAX_TIMEOUT_S   86400.0
#define WAIT_EWMA_ALPHA 0.1

struct lx_admission {
    uv_loop_t *loop;
    lx_queue *queue;
    lx_backends *backends;
    uv_timer_t kick, deadline;
    uint64_t armed_ns; /* the deadline the timer is set for; UINT64_MAX: not set */
    bool kick_pending, closed, freeing;
    int closing;
    lx_list pending;    /* REJECTING tickets, in the order they were pushed out */
    double wait_ewma_s; /* of requests dispatched from the queue */
};

static void on_kick(uv_timer_t *h);

static void kick(lx_admission *a)
{
    if (a->kick_pending || a->freeing) return;
    a->kick_pending = true;
    uv_timer_start(&a->kick, on_kick, 0, 0);
}

static void on_backend_ready(lx_backend *b, void *ud)
{
    (void)b;
    kick(ud);
}

static lx_queue_conf queue_conf(const lx_config *c)
{
    return (lx_queue_conf){
        .max_size = c->queue.max_size,
        .aging_s = c->queue.aging_s,
        .numbers = {c->queue.priority_high, c->queue.priority_normal, c->queue.priority_low},
    };
}

static lx_queue_line *line_of(const lx_backend *b) { return lx_backend_data(b); }

static void attach_lines(lx_admission *a)
{
    for (size_t i = 0; i < lx_backends_count(a->backends); i++) {
        lx_backend *b = lx_backends_at(a->backends, i);
        if (line_of(b) == NULL) lx_backend_set_data(b, lx_queue_line_get(a->queue, lx_backend_name(b)));
    }
}

/* ---------- the pending rejections ---------- */

/* t, just taken out of the queue, waits for the kick to be answered `why`. */
static void pend_append(lx_admission *a, lx_admit_ticket *t, lx_admit_reject why, uint64_t now)
{
    LX_ASSERT(t->state == LX_TICKET_WAITING && !t->qe.waiting && !lx_list_linked(&t->pend));
    t->state = LX_TICKET_REJECTING;
    t->pend_why = why;
    t->waited_ns = now - t->submitted_ns;
    lx_list_append(&a->pending, &t->pend);
    kick(a);
}

static void pend_unlink(lx_admit_ticket *t)
{
    LX_ASSERT(t->state == LX_TICKET_REJECTING && lx_list_linked(&t->pend));
    lx_list_remove(&t->pend);
}

/* t (out of the queue, on no list) will not be sent: it goes back to IDLE, then its client is told. */
static void reject(lx_admit_ticket *t, lx_admit_reject why)
{
    LX_ASSERT(!t->qe.waiting && !lx_list_linked(&t->pend));
    t->state = LX_TICKET_IDLE;
    t->backend = NULL;
    t->cbs->on_reject(t, why);
}

/* ---------- deadlines ---------- */

static void on_deadline(uv_timer_t *h);

static void arm_deadline(lx_admission *a, uint64_t deadline_ns)
{
    if (deadline_ns >= a->armed_ns || a->freeing) return;
    a->armed_ns = deadline_ns;
    uint64_t now = lx_now_ns();
    uint64_t ms = deadline_ns > now ? (deadline_ns - now + 999999) / 1000000 : 0;
    uv_timer_start(&a->deadline, on_deadline, ms, 0);
}

static void on_deadline(uv_timer_t *h)
{
    lx_admission *a = h->data;
    a->armed_ns = UINT64_MAX;
    uint64_t now = lx_now_ns();
    lx_queue_entry *e;
    while ((e = lx_queue_expire(a->queue, now)) != NULL) {
        lx_admit_ticket *t = TICKET(e);
        LX_ASSERT(t->state == LX_TICKET_WAITING);
        t->waited_ns = now - t->submitted_ns;
        reject(t, LX_ADMIT_TIMEOUT);
    }
    arm_deadline(a, lx_queue_next_deadline(a->queue));
}

/* ---------- dispatching ---------- */

static void note_wait(lx_admission *a, double wait_s)
{
    a->wait_ewma_s = a->wait_ewma_s == 0 ? wait_s : a->wait_ewma_s + WAIT_EWMA_ALPHA * (wait_s - a->wait_ewma_s);
}

static void dispatch_backend(lx_admission *a, lx_backend *b)
{
    while (lx_backend_can_accept(b)) {
        uint64_t now = lx_now_ns();
        lx_queue_entry *e = lx_queue_pop(a->queue, line_of(b), now);
        if (e == NULL) return;
        lx_admit_ticket *t = TICKET(e);
        LX_ASSERT(t->state == LX_TICKET_WAITING && t->backend == b);
        t->state = LX_TICKET_HOLDING;
        t->waited_ns = now - t->submitted_ns;
        t->priority_value = lx_queue_entry_number(a->queue, e);
        lx_backend_acquire(b);
        note_wait(a, (double)t->waited_ns / 1e9);
        t->cbs->on_dispatch(t);
    }
}

static void on_kick(uv_timer_t *h)
{
    lx_admission *a = h->data;
    a->kick_pending = false;
    lx_list *n;
    while ((n = lx_list_first(&a->pending)) != NULL) {
        lx_admit_ticket *t = LX_CONTAINER_OF(n, lx_admit_ticket, pend);
        pend_unlink(t);
        reject(t, t->pend_why);
    }
    for (size_t i = 0; i < lx_backends_count(a->backends); i++)
        dispatch_backend(a, lx_backends_at(a->backends, i));
}

/* ---------- submitting and leaving ---------- */

static uint64_t deadline_of(uint64_t now, double timeout_s)
{
    if (!(timeout_s > 0)) return UINT64_MAX;
    return now + (uint64_t)(fmin(timeout_s, MAX_TIMEOUT_S) * 1e9);
}

static void hold(lx_admission *a, lx_admit_ticket *t, lx_backend *b)
{
    LX_ASSERT(t->state == LX_TICKET_IDLE);
    t->state = LX_TICKET_HOLDING;
    t->backend = b;
    t->priority_value = lx_queue_class_number(a->queue, t->cls);
    lx_backend_acquire(b);
    lx_queue_note_direct(a->queue, t->cls);
}

lx_admit_result lx_admission_submit(lx_admission *a, lx_admit_ticket *t, const lx_admit_cbs *cbs, const char *backend,
                                    const char *user, lx_priority cls, double timeout_s)
{
    uint64_t now = lx_now_ns();
    *t = (lx_admit_ticket){.cbs = cbs, .cls = cls, .submitted_ns = now};
    lx_list_init(&t->pend);
    t->priority_value = lx_queue_class_number(a->queue, cls);
    lx_backend *b = lx_backends_find(a->backends, backend);
    if (b == NULL) return LX_ADMIT_NOW; /* not a configured backend: no admission control */
    lx_queue_line *line = line_of(b);
    if (lx_queue_line_len(line) == 0 && lx_backend_can_accept(b)) {
        hold(a, t, b);
        return LX_ADMIT_NOW;
    }
    if (a->closed) return LX_ADMIT_CLOSED;
    uint64_t deadline = deadline_of(now, timeout_s);
    lx_queue_entry *victim;
    if (lx_queue_push(a->queue, line, &t->qe, user, cls, now, deadline, &victim) != LX_QUEUE_OK) return LX_ADMIT_FULL;
    t->state = LX_TICKET_WAITING;
    t->backend = b;
    if (victim) pend_append(a, TICKET(victim), LX_ADMIT_DISPLACED, now);
    if (lx_backend_can_accept(b)) kick(a);
    arm_deadline(a, deadline);
    return LX_ADMIT_QUEUED;
}

void lx_admission_leave(lx_admission *a, lx_admit_ticket *t)
{
    switch (t->state) {
    case LX_TICKET_WAITING:
        LX_ASSERT(t->qe.waiting);
        lx_queue_remove(a->queue, &t->qe);
        t->waited_ns = lx_now_ns() - t->submitted_ns;
        break;
    case LX_TICKET_REJECTING: pend_unlink(t); break;
    case LX_TICKET_HOLDING:
        LX_ASSERT(t->backend != NULL && !t->qe.waiting);
        t->state = LX_TICKET_IDLE; /* before release: its ready callback may look at tickets */
        lx_backend_release(t->backend);
        break;
    case LX_TICKET_IDLE: LX_ASSERT(!t->qe.waiting && !lx_list_linked(&t->pend)); break;
    }
    t->state = LX_TICKET_IDLE;
    t->backend = NULL;
}

unsigned lx_admission_retry_after_s(const lx_admission *a)
{
    double s = ceil(a->wait_ewma_s);
    return s < 1 ? 1 : s > 60 ? 60 : (unsigned)s;
}

/* ---------- life cycle ---------- */

/* b takes no more requests: every request waiting for it is answered BACKEND_DOWN at the next kick, so
 * its proxy routes it again at once instead of letting it wait out its deadline. */
static void on_backend_down(lx_backend *b, void *ud)
{
    lx_admission *a = ud;
    lx_queue_line *line = line_of(b);
    if (line == NULL) return;
    uint64_t now = lx_now_ns();
    lx_queue_entry *e;
    while ((e = lx_queue_peek(a->queue, line, now)) != NULL) {
        lx_queue_drop(a->queue, e);
        pend_append(a, TICKET(e), LX_ADMIT_BACKEND_DOWN, now);
    }
}

lx_admission *lx_admission_new(uv_loop_t *loop, lx_http_client *client, const lx_config *c)
{
    lx_admission *a = lx_xcalloc(1, sizeof *a);
    a->loop = loop;
    a->armed_ns = UINT64_MAX;
    lx_list_init(&a->pending);
    lx_queue_conf qc = queue_conf(c);
    a->queue = lx_queue_new(&qc);
    uv_timer_init(loop, &a->kick);
    uv_timer_init(loop, &a->deadline);
    a->kick.data = a->deadline.data = a;
    a->backends = lx_backends_new(loop, client, on_backend_ready, a);
    lx_backends_on_down(a->backends, on_backend_down);
    lx_backends_configure(a->backends, c);
    attach_lines(a);
    return a;
}

void lx_admission_reconfigure(lx_admission *a, const lx_config *c)
{
    lx_queue_conf qc = queue_conf(c);
    lx_queue_reconfigure(a->queue, &qc, lx_now_ns());
    lx_backends_configure(a->backends, c);
    attach_lines(a);
    kick(a);
}

void lx_admission_close(lx_admission *a)
{
    a->closed = true;
    uint64_t now = lx_now_ns();
    lx_queue_entry *e;
    while ((e = lx_queue_any(a->queue)) != NULL) {
        lx_queue_drop(a->queue, e);
        pend_append(a, TICKET(e), LX_ADMIT_SHUTDOWN, now);
    }
}

static void on_closed(uv_handle_t *h)
{
    lx_admission *a = h->data;
    if (--a->closing > 0) return;
    lx_queue_free(a->queue);
    free(a);
}

void lx_admission_free(lx_admission *a)
{
    if (a == NULL) return;
    if (lx_queue_len(a->queue) || !lx_list_empty(&a->pending))
        LX_WARN(NULL, "queue: %zu request(s) still waiting at teardown", lx_queue_len(a->queue));
    a->freeing = true;
    lx_backends_free(a->backends);
    a->backends = NULL;
    a->closing = 2;
    uv_close((uv_handle_t *)&a->kick, on_closed);
    uv_close((uv_handle_t *)&a->deadline, on_closed);
}

const lx_queue *lx_admission_queue(const lx_admission *a) { return a->queue; }

lx_backends *lx_admission_backends(const lx_admission *a) { return a->backends; }

size_t lx_admission_load(const lx_admission *a, const lx_backend *b)
{
    (void)a;
    return (size_t)lx_backend_in_flight(b) + lx_queue_line_len(line_of(b));
}

size_t lx_admission_waiting_for(const lx_admission *a, const char *backend)
{
    lx_backend *b = lx_backends_find(a->backends, backend);
    return b ? lx_queue_line_len(line_of(b)) : 0;
}
