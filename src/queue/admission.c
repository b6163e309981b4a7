/*
 * Admission: the queue, the backends' slots and what each model is served by, driven from the loop. See
 * admission.h.
 *
 * Invariants:
 * - A ticket is in exactly one state: IDLE, WAITING (in the queue, in its model's line), REJECTING
 *   (out of the queue, on the pending list, answered at the next kick), HOLDING (one slot of its
 *   backend counted for it). Every transition out of WAITING takes it out of the queue first.
 * - Each model ever served has its line (the model's data pointer), created when the model is first seen,
 *   kept across reloads and rebuilds.
 * - Between kicks, a backend that can accept has an empty line in every model it may serve, except right
 *   after a slot frees, a saturation ends, a submit found another backend free, or a reload or discovery:
 *   each of those schedules a kick, which dispatches until every backend is full or has nothing it may
 *   take. An arrival that finds a non-empty line waits its turn even if a slot is free.
 * - A model whose line is not empty has a server that is routable or awaiting its trial's verdict; when the
 *   last one goes (down, retired, no longer listing it), its waiting requests are rejected BACKEND_DOWN.
 * - Callbacks run only from the kick and the deadline timer, with the queue consistent at each call;
 *   every loop there re-reads the state after a callback, because a callback may submit or leave.
 * LX_ASSERT checks the state of a ticket at each transition (debug and test builds).
 */
#include "queue/admission.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backends/loader.h"
#include "utils/common.h"
#include "utils/log.h"

#define TICKET(e)       LX_CONTAINER_OF(e, lx_admit_ticket, qe)
#define MAX_TIMEOUT_S   86400.0
#define WAIT_EWMA_ALPHA 0.1

struct lx_admission {
    uv_loop_t *loop;
    lx_queue *queue;
    lx_backends *backends;
    lx_served *served;
    lx_config *cfg;    /* the current one: what is served is rebuilt from it */
    lx_loader *loader; /* models loaded on demand (backends/loader.h): a backend takes a model's requests once loaded */
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

static lx_queue_line *line_of(const lx_model *m) { return lx_model_data(m); }

static void attach_lines(lx_admission *a)
{
    for (size_t i = 0; i < lx_served_count(a->served); i++) {
        lx_model *m = lx_served_at(a->served, i);
        if (line_of(m) == NULL) lx_model_set_data(m, lx_queue_line_get(a->queue, lx_model_name(m)));
    }
}

/* May b take a request of m now: nobody of a better priority serving m is routable. */
static bool may_serve(const lx_model *m, const lx_backend *b)
{
    for (size_t i = 0; i < lx_model_servers(m); i++) {
        const lx_backend *x = lx_model_server(m, i);
        if (lx_backend_priority(x) < lx_backend_priority(b) && lx_backend_routable(x)) return false;
    }
    return true;
}

/* b may take m's requests as far as loading goes: m is loaded on b, or b's loading is not managed. */
static bool loaded(const lx_admission *a, const lx_model *m, const lx_backend *b)
{
    return lx_loader_ready(a->loader, b, lx_model_name(m));
}

/* Some backend serving m may yet take its waiting requests. */
static bool has_hope(const lx_model *m)
{
    for (size_t i = 0; i < lx_model_servers(m); i++) {
        const lx_backend *x = lx_model_server(m, i);
        if (lx_backend_routable(x) || lx_backend_awaiting_trial(x)) return true;
    }
    return false;
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
    t->model = NULL;
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

/* The line b serves next: of the models it may serve, the one whose head is the most important. */
static lx_queue_line *next_line(lx_admission *a, const lx_backend *b, uint64_t now)
{
    lx_model *const *models;
    size_t n = lx_served_by(b, &models);
    lx_queue_line *best = NULL;
    lx_queue_entry *best_head = NULL;
    for (size_t i = 0; i < n; i++) {
        lx_queue_line *l = line_of(models[i]);
        if (l == NULL || lx_queue_line_len(l) == 0 || !may_serve(models[i], b) || !loaded(a, models[i], b)) continue;
        lx_queue_entry *head = lx_queue_peek(a->queue, l, now);
        if (best_head == NULL || lx_queue_before(head, best_head)) {
            best = l;
            best_head = head;
        }
    }
    return best;
}

static void dispatch_backend(lx_admission *a, lx_backend *b)
{
    while (lx_backend_can_accept(b)) {
        uint64_t now = lx_now_ns();
        lx_queue_line *l = next_line(a, b, now);
        if (l == NULL) return;
        lx_queue_entry *e = lx_queue_pop(a->queue, l, now);
        lx_admit_ticket *t = TICKET(e);
        LX_ASSERT(t->state == LX_TICKET_WAITING && t->backend == NULL);
        t->backend = b;
        t->state = LX_TICKET_HOLDING;
        t->waited_ns = now - t->submitted_ns;
        t->priority_value = lx_queue_entry_number(a->queue, e);
        lx_backend_acquire(b);
        lx_loader_begin(a->loader, b, lx_model_name(t->model));
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

/* Could a backend take a request of m at the next kick? */
static bool any_free(const lx_admission *a, const lx_model *m)
{
    for (size_t i = 0; i < lx_model_servers(m); i++) {
        const lx_backend *b = lx_model_server(m, i);
        if (lx_backend_can_accept(b) && may_serve(m, b) && loaded(a, m, b)) return true;
    }
    return false;
}

static void hold(lx_admission *a, lx_admit_ticket *t, lx_backend *b)
{
    LX_ASSERT(t->state == LX_TICKET_IDLE);
    t->state = LX_TICKET_HOLDING;
    t->backend = b;
    t->priority_value = lx_queue_class_number(a->queue, t->cls);
    lx_backend_acquire(b);
    lx_loader_begin(a->loader, b, lx_model_name(t->model));
    lx_queue_note_direct(a->queue, t->cls);
}

lx_admit_result lx_admission_submit(lx_admission *a, lx_admit_ticket *t, const lx_admit_cbs *cbs, lx_model *m,
                                    lx_backend *b, const char *user, lx_priority cls, double timeout_s)
{
    uint64_t now = lx_now_ns();
    *t = (lx_admit_ticket){.cbs = cbs, .cls = cls, .submitted_ns = now, .model = m};
    lx_list_init(&t->pend);
    t->priority_value = lx_queue_class_number(a->queue, cls);
    lx_queue_line *line = line_of(m);
    LX_ASSERT(line != NULL);
    lx_loader_answer la = lx_loader_want(a->loader, b, lx_model_name(m));
    if (la == LX_LOADER_REFUSED) return LX_ADMIT_NOT_LOADED;
    t->load_wait = la == LX_LOADER_WAIT;
    if (la == LX_LOADER_READY && lx_queue_line_len(line) == 0 && lx_backend_can_accept(b)) {
        hold(a, t, b);
        return LX_ADMIT_NOW;
    }
    if (a->closed) return LX_ADMIT_CLOSED;
    uint64_t deadline = deadline_of(now, timeout_s);
    lx_queue_entry *victim;
    if (lx_queue_push(a->queue, line, &t->qe, user, cls, now, deadline, &victim) != LX_QUEUE_OK) return LX_ADMIT_FULL;
    t->state = LX_TICKET_WAITING;
    if (victim) pend_append(a, TICKET(victim), LX_ADMIT_DISPLACED, now);
    if (any_free(a, m)) kick(a);
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
        lx_loader_end(a->loader, t->backend, lx_model_name(t->model));
        lx_backend_release(t->backend);
        break;
    case LX_TICKET_IDLE: LX_ASSERT(!t->qe.waiting && !lx_list_linked(&t->pend)); break;
    }
    t->state = LX_TICKET_IDLE;
    t->backend = NULL;
    t->model = NULL;
}

unsigned lx_admission_retry_after_s(const lx_admission *a)
{
    double s = ceil(a->wait_ewma_s);
    return s < 1 ? 1 : s > 60 ? 60 : (unsigned)s;
}

/* ---------- life cycle ---------- */

/* No backend serving m may take its requests any more: each waiting one is answered BACKEND_DOWN at the
 * next kick, so its proxy routes it again at once (another model of its alias, or 503) instead of letting
 * it wait out its deadline. */
static void reject_hopeless(lx_admission *a, lx_model *m)
{
    lx_queue_line *line = line_of(m);
    if (line == NULL || lx_queue_line_len(line) == 0 || has_hope(m)) return;
    uint64_t now = lx_now_ns();
    lx_queue_entry *e;
    while ((e = lx_queue_peek(a->queue, line, now)) != NULL) {
        lx_queue_drop(a->queue, e);
        pend_append(a, TICKET(e), LX_ADMIT_BACKEND_DOWN, now);
    }
}

static void on_backend_down(lx_backend *b, void *ud)
{
    lx_admission *a = ud;
    lx_model *const *models;
    size_t n = lx_served_by(b, &models);
    for (size_t i = 0; i < n; i++)
        reject_hopeless(a, models[i]);
}

/* What is served changed (a reload, or a backend with models: auto): the index is rebuilt, lines attached,
 * the requests of a model no longer served rejected, and a kick for the backends that may serve more. */
static void rebuild(lx_admission *a)
{
    lx_served_build(a->served, a->cfg, a->backends);
    attach_lines(a);
    for (size_t i = 0; i < lx_served_count(a->served); i++)
        reject_hopeless(a, lx_served_at(a->served, i));
    kick(a);
}

static void on_models(lx_backend *b, void *ud)
{
    (void)b;
    rebuild(ud);
}

/* ---------- the loader's questions ---------- */

static size_t loader_waiting(void *ud, const char *model, uint64_t *oldest_ns)
{
    lx_admission *a = ud;
    lx_model *m = lx_served_find(a->served, model, strlen(model));
    lx_queue_line *line = m ? line_of(m) : NULL;
    if (line == NULL || lx_queue_line_len(line) == 0) return 0;
    lx_queue_entry *head = lx_queue_peek(a->queue, line, lx_now_ns());
    if (head) *oldest_ns = TICKET(head)->submitted_ns;
    return lx_queue_line_len(line);
}

static void loader_changed(void *ud) { kick(ud); }

/* A load of model failed: its waiters are refused, unless another backend serving it has it loaded. */
static void loader_failed(void *ud, const char *model, const char *why)
{
    (void)why;
    lx_admission *a = ud;
    lx_model *m = lx_served_find(a->served, model, strlen(model));
    lx_queue_line *line = m ? line_of(m) : NULL;
    if (line == NULL) return;
    for (size_t i = 0; i < lx_model_servers(m); i++)
        if (lx_backend_routable(lx_model_server(m, i)) && loaded(a, m, lx_model_server(m, i))) return;
    uint64_t now = lx_now_ns();
    lx_queue_entry *e;
    while ((e = lx_queue_peek(a->queue, line, now)) != NULL) {
        lx_queue_drop(a->queue, e);
        pend_append(a, TICKET(e), LX_ADMIT_LOAD_FAILED, now);
    }
}

lx_admission *lx_admission_new(uv_loop_t *loop, lx_http_client *client, lx_config *c)
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
    a->served = lx_served_new();
    a->cfg = lx_config_ref(c);
    lx_backends_on_down(a->backends, on_backend_down);
    lx_backends_on_models(a->backends, on_models);
    lx_backends_configure(a->backends, c);
    lx_served_build(a->served, c, a->backends);
    attach_lines(a);
    a->loader = lx_loader_new(
        loop, client,
        &(lx_loader_cbs){.waiting = loader_waiting, .changed = loader_changed, .failed = loader_failed, .ud = a});
    lx_loader_configure(a->loader, c);
    return a;
}

void lx_admission_reconfigure(lx_admission *a, lx_config *c)
{
    lx_queue_conf qc = queue_conf(c);
    lx_queue_reconfigure(a->queue, &qc, lx_now_ns());
    lx_config_ref(c);
    lx_config_unref(a->cfg);
    a->cfg = c;
    lx_backends_configure(a->backends, c);
    lx_loader_configure(a->loader, c);
    rebuild(a);
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
    lx_loader_free(a->loader);
    lx_served_free(a->served, a->backends);
    lx_config_unref(a->cfg);
    lx_backends_free(a->backends);
    a->backends = NULL;
    a->closing = 2;
    uv_close((uv_handle_t *)&a->kick, on_closed);
    uv_close((uv_handle_t *)&a->deadline, on_closed);
}

const lx_queue *lx_admission_queue(const lx_admission *a) { return a->queue; }

lx_backends *lx_admission_backends(const lx_admission *a) { return a->backends; }

lx_served *lx_admission_served(const lx_admission *a) { return a->served; }

lx_loader *lx_admission_loader(const lx_admission *a) { return a->loader; }

size_t lx_admission_waiting_for(const lx_admission *a, const lx_model *m)
{
    (void)a;
    return line_of(m) ? lx_queue_line_len(line_of(m)) : 0;
}
