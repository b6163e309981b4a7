/*
 * Admission: the queue (queue/queue.h), the backends' slots (backends/backend.h) and what each model is
 * served by (backends/served.h), driven from the loop. A request is submitted for a model with the backend
 * the router chose; it is sent on at once when that backend has a free slot, is not saturated, and nobody
 * is waiting for the model; otherwise it waits in the model's line — one line per model, whichever backend
 * serves it — where priority, fairness, aging and deadlines apply, until a backend serving the model frees
 * a slot (on_dispatch; t->backend says which), its deadline passes (on_reject TIMEOUT), a more important
 * arrival pushes it out of a full queue (on_reject DISPLACED), no backend serving the model is left —
 * circuits opened, checks failed, a reload or a discovery took them away — (on_reject BACKEND_DOWN), or the
 * gateway shuts down (on_reject SHUTDOWN). Its slot is given back with lx_admission_leave when its upstream
 * request ends, whatever the outcome, and the next waiting request is dispatched.
 *
 * Which backend takes a waiting request: a backend with a free slot serves the lines of the models it
 * serves, the most important head first (the better level, then the earlier arrival); it may serve a model
 * only when no routable backend of a better `priority` serves it too (failover order). A waiting request is
 * not tied to the backend first chosen: the first one of its model to free a slot takes it.
 *
 * Dispatching happens in a "kick", a zero timer run on the next loop turn after a slot frees,
 * saturation ends or a reload changes limits; rejections of displaced requests wait for the kick too.
 * So no callback ever runs inside lx_admission_submit or lx_admission_leave, and a callback that answers
 * its client (which may start that connection's next request, and so a nested submit) is safe. Deadline
 * expiry runs from its own timer, one for the whole queue, armed at the earliest deadline.
 *
 * Ownership: the caller embeds an lx_admit_ticket in its request, zeroed, and must call
 * lx_admission_leave before freeing it (a ticket that left, or never entered, is a no-op). The
 * admission owns the queue and the backend registry; lx_admission_free must come before the upstream
 * client it was given is freed, and after every ticket left (the HTTP server, closed first, aborts
 * every request).
 * Loop thread only.
 */
#ifndef LX_ADMISSION_H
#define LX_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "backends/backend.h"
#include "backends/served.h"
#include "config.h"
#include "http/client.h"
#include "queue/queue.h"
#include "utils/list.h"

typedef struct lx_admission lx_admission;
typedef struct lx_admit_ticket lx_admit_ticket;

typedef enum {
    LX_ADMIT_TIMEOUT = 0,  /* waited past its deadline → 504 queue_timeout */
    LX_ADMIT_DISPLACED,    /* pushed out of a full queue by a more important arrival → 503 queue_full */
    LX_ADMIT_SHUTDOWN,     /* the gateway is stopping → 503 shutting_down */
    LX_ADMIT_BACKEND_DOWN, /* its backend went down while it waited (never sent): route it again */
    LX_ADMIT_LOAD_FAILED,  /* the load of its model failed (backends/loader.h) → 503 model_load_failed */
} lx_admit_reject;

typedef struct {
    /* A slot is held for t: send the request now. t->waited_ns says how long it waited. */
    void (*on_dispatch)(lx_admit_ticket *t);
    /* t will not be sent (it holds no slot and waits no more): answer the client. */
    void (*on_reject)(lx_admit_ticket *t, lx_admit_reject why);
} lx_admit_cbs;

typedef enum {
    LX_TICKET_IDLE = 0,  /* not admitted, or left */
    LX_TICKET_WAITING,   /* in the queue */
    LX_TICKET_REJECTING, /* out of the queue, its on_reject due at the next kick */
    LX_TICKET_HOLDING,   /* holds a slot of its backend */
} lx_admit_state;

/* Embedded in a request; zero it. Read-only for the caller, except through the functions below. */
struct lx_admit_ticket {
    lx_queue_entry qe;
    const lx_admit_cbs *cbs;
    lx_model *model;     /* the line it waits in; NULL when not admitted */
    lx_backend *backend; /* the backend whose slot it holds; NULL when it holds none */
    lx_list pend;        /* REJECTING: on the list waiting for the kick to answer it */
    lx_admit_reject pend_why;
    uint64_t submitted_ns;
    uint64_t waited_ns;  /* in the queue: until dispatch, rejection or leave */
    long priority_value; /* queue.priorities number at dispatch (after aging): what forward_priority sends */
    lx_priority cls;
    lx_admit_state state;
    bool load_wait; /* its model was not loaded when it came: it waited (also) for a load */
};

typedef enum {
    LX_ADMIT_NOW = 0,    /* a slot is held: send the request now (no callback follows) */
    LX_ADMIT_QUEUED,     /* waiting: on_dispatch or on_reject follows */
    LX_ADMIT_FULL,       /* refused: the queue is full (answer 503 queue_full) */
    LX_ADMIT_CLOSED,     /* refused: shutting down and no slot is free (answer 503 shutting_down) */
    LX_ADMIT_NOT_LOADED, /* refused: its model is not loaded on the backend and load.on_demand is false (503) */
} lx_admit_result;

/* The admission for config c (queue limits, backends); uses client for the adaptive /metrics reads. */
lx_admission *lx_admission_new(uv_loop_t *loop, lx_http_client *client, lx_config *c);
/*
 * A reload: new queue limits and priorities, new backend limits, what is served rebuilt; every waiting
 * request stays (a smaller queue.max_size drops nobody) unless no backend serves its model any more
 * (BACKEND_DOWN). Backends added are known from now on; removed ones are retired (the requests they hold
 * finish there). Then a kick. The admission keeps a reference to c (what is served follows discovery).
 */
void lx_admission_reconfigure(lx_admission *a, lx_config *c);
/* Graceful shutdown: every waiting request is rejected with SHUTDOWN (on the next loop turn), and from
 * now on a submit that cannot be sent at once is refused with LX_ADMIT_CLOSED. */
void lx_admission_close(lx_admission *a);
void lx_admission_free(lx_admission *a);

/*
 * Submits t (zeroed, or left) for model m, first choice backend b (a server of m), on behalf of user (NULL:
 * anonymous), class cls, waiting at most timeout_s in the queue.
 */
lx_admit_result lx_admission_submit(lx_admission *a, lx_admit_ticket *t, const lx_admit_cbs *cbs, lx_model *m,
                                    lx_backend *b, const char *user, lx_priority cls, double timeout_s);
/* t is done with the admission, whatever its state: a waiting t is removed (the client left; counted as
 * cancelled), a held slot is given back and the next request dispatched. Idempotent. */
void lx_admission_leave(lx_admission *a, lx_admit_ticket *t);

/* Seconds a refused client should wait before trying again (Retry-After of queue_full): the recent
 * mean queue wait of dispatched requests, rounded up, from 1 to 60. */
unsigned lx_admission_retry_after_s(const lx_admission *a);

/* For /stats and /metrics: the queue (lx_queue_stats, lx_queue_line_len) and the backends
 * (lx_backends_count / lx_backends_at / lx_backend_info_get). Read-only use. */
const lx_queue *lx_admission_queue(const lx_admission *a);
lx_backends *lx_admission_backends(const lx_admission *a);
/* What is served now (the router resolves names in it). */
lx_served *lx_admission_served(const lx_admission *a);
/* Models loaded on demand (backends/loader.h). */
struct lx_loader *lx_admission_loader(const lx_admission *a);
/* Requests waiting for model m. */
size_t lx_admission_waiting_for(const lx_admission *a, const lx_model *m);

#endif
