/*
 * Unit tests for queue/admission.c on a real libuv loop (no HTTP: adaptive is off, so the upstream
 * client is never used): dispatch order through the kick, slots given back, deadlines from the timer,
 * displacement answered on the next turn, leaving while waiting, shutdown, a reload that raises
 * the limit, and a half-open backend's line waiting for its trial's verdict (the router's choice of
 * backend is tested in test_router.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "queue/admission.h"
#include "routing/router.h"
#include "support.h"

typedef struct {
    lx_admit_ticket t;
    int id;
} req;

static char events[4096];

static void on_dispatch(lx_admit_ticket *t)
{
    char e[32];
    snprintf(e, sizeof e, "d%d ", ((req *)t)->id);
    strcat(events, e);
}

static void on_reject(lx_admit_ticket *t, lx_admit_reject why)
{
    char e[32];
    snprintf(e, sizeof e, "%c%d ", "TXSD"[why], ((req *)t) -> id);
    strcat(events, e);
}

static const lx_admit_cbs cbs = {on_dispatch, on_reject};

static lx_config *config(long max_size, int max_concurrency)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "vllm:\n  url: http://127.0.0.1:9\n  timeout: 5\n"
             "queue:\n  max_size: %ld\n  default_timeout: 60\n"
             "backends:\n  vllm:\n    max_concurrency: %d\n    models: [{name: m}]\n",
             max_size, max_concurrency);
    return lx_test_config(yaml);
}

typedef struct {
    uv_loop_t loop;
    lx_config *c;
    lx_admission *a;
} fixture;

static void setup(fixture *f, long max_size, int max_concurrency)
{
    events[0] = '\0';
    uv_loop_init(&f->loop);
    f->c = config(max_size, max_concurrency);
    f->a = lx_admission_new(&f->loop, NULL, f->c);
}

static void teardown(fixture *f)
{
    lx_admission_free(f->a);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    lx_config_unref(f->c);
}

static lx_model *model_m(fixture *f) { return lx_served_find(lx_admission_served(f->a), "m", 1); }

static lx_backend *backend(fixture *f, const char *name) { return lx_backends_find(lx_admission_backends(f->a), name); }

/* For model m, first choice backend `to`. */
static lx_admit_result submit_to(fixture *f, req *r, int id, const char *to, lx_priority cls, double timeout_s)
{
    r->id = id;
    return lx_admission_submit(f->a, &r->t, &cbs, model_m(f), backend(f, to), "u", cls, timeout_s);
}

static lx_admit_result submit(fixture *f, req *r, int id, const char *user, lx_priority cls, double timeout_s)
{
    r->id = id;
    return lx_admission_submit(f->a, &r->t, &cbs, model_m(f), backend(f, "vllm"), user, cls, timeout_s);
}

static void turn(fixture *f) { uv_run(&f->loop, UV_RUN_NOWAIT); }

static void test_one_slot_priority_order(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 100, 1);
    req busy, low, normal, high;
    assert_int_equal(submit(&f, &busy, 0, "u", LX_PRIO_NORMAL, 60), LX_ADMIT_NOW);
    assert_int_equal(submit(&f, &low, 1, "u", LX_PRIO_LOW, 60), LX_ADMIT_QUEUED);
    assert_int_equal(submit(&f, &normal, 2, "u", LX_PRIO_NORMAL, 60), LX_ADMIT_QUEUED);
    assert_int_equal(submit(&f, &high, 3, "u", LX_PRIO_HIGH, 60), LX_ADMIT_QUEUED);
    assert_int_equal(lx_admission_waiting_for(f.a, model_m(&f)), 3);
    turn(&f);
    assert_string_equal(events, "");
    lx_admission_leave(f.a, &busy.t);
    turn(&f);
    assert_string_equal(events, "d3 ");
    assert_int_equal(high.t.priority_value, 1);
    lx_admission_leave(f.a, &high.t);
    lx_admission_leave(f.a, &high.t); /* twice is harmless */
    turn(&f);
    lx_admission_leave(f.a, &normal.t);
    turn(&f);
    assert_string_equal(events, "d3 d2 d1 ");
    assert_int_equal(low.t.priority_value, 10);
    lx_admission_leave(f.a, &low.t);
    /* Free again: the next one goes at once. */
    assert_int_equal(submit(&f, &busy, 4, "u", LX_PRIO_LOW, 60), LX_ADMIT_NOW);
    lx_admission_leave(f.a, &busy.t);
    lx_queue_stats_t st;
    lx_queue_stats(lx_admission_queue(f.a), &st);
    assert_int_equal(st.dispatched[LX_PRIO_NORMAL], 2);
    assert_int_equal(st.direct[LX_PRIO_NORMAL], 1);
    assert_int_equal(st.enqueued[LX_PRIO_LOW], 1);
    teardown(&f);
}

static void test_leaving_while_waiting_is_never_dispatched(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 100, 1);
    req busy, gone, next;
    submit(&f, &busy, 0, "u", LX_PRIO_NORMAL, 60);
    submit(&f, &gone, 1, "u", LX_PRIO_HIGH, 60);
    submit(&f, &next, 2, "u", LX_PRIO_LOW, 60);
    lx_admission_leave(f.a, &gone.t);
    lx_admission_leave(f.a, &busy.t);
    turn(&f);
    assert_string_equal(events, "d2 ");
    lx_admission_leave(f.a, &next.t);
    teardown(&f);
}

static bool any_event(void *arg)
{
    (void)arg;
    return events[0] != '\0';
}

static void test_deadline_rejects(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 100, 1);
    req busy, quick, patient;
    submit(&f, &busy, 0, "u", LX_PRIO_NORMAL, 60);
    assert_int_equal(submit(&f, &quick, 1, "u", LX_PRIO_HIGH, 0.05), LX_ADMIT_QUEUED);
    assert_int_equal(submit(&f, &patient, 2, "u", LX_PRIO_LOW, 60), LX_ADMIT_QUEUED);
    lx_test_run_until(&f.loop, any_event, NULL, 5000);
    assert_string_equal(events, "T1 ");
    assert_true(quick.t.waited_ns >= 49000000u);
    lx_admission_leave(f.a, &quick.t); /* after a rejection: no-op */
    lx_admission_leave(f.a, &busy.t);
    turn(&f);
    assert_string_equal(events, "T1 d2 ");
    lx_admission_leave(f.a, &patient.t);
    teardown(&f);
}

static void test_full_queue_displaces_on_next_turn(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 2, 1);
    req busy, l1, l2, l3, h;
    submit(&f, &busy, 0, "u", LX_PRIO_NORMAL, 60);
    assert_int_equal(submit(&f, &l1, 1, "a", LX_PRIO_LOW, 60), LX_ADMIT_QUEUED);
    assert_int_equal(submit(&f, &l2, 2, "b", LX_PRIO_LOW, 60), LX_ADMIT_QUEUED);
    assert_int_equal(submit(&f, &l3, 3, "c", LX_PRIO_LOW, 60), LX_ADMIT_FULL);
    assert_int_equal(submit(&f, &h, 4, "d", LX_PRIO_HIGH, 60), LX_ADMIT_QUEUED);
    assert_string_equal(events, ""); /* no callback inside submit */
    assert_int_equal(l2.t.state, LX_TICKET_REJECTING);
    turn(&f);
    assert_string_equal(events, "X2 ");
    lx_admission_leave(f.a, &busy.t);
    turn(&f);
    assert_string_equal(events, "X2 d4 ");
    lx_admission_leave(f.a, &h.t);
    turn(&f);
    lx_admission_leave(f.a, &l1.t);
    assert_string_equal(events, "X2 d4 d1 ");
    assert_true(lx_admission_retry_after_s(f.a) >= 1);
    teardown(&f);
}

static void test_displaced_client_leaving_first(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 1, 1);
    req busy, low, high;
    submit(&f, &busy, 0, "u", LX_PRIO_NORMAL, 60);
    submit(&f, &low, 1, "a", LX_PRIO_LOW, 60);
    submit(&f, &high, 2, "b", LX_PRIO_HIGH, 60);
    lx_admission_leave(f.a, &low.t); /* gone before its 503 was sent */
    turn(&f);
    assert_string_equal(events, "");
    lx_admission_leave(f.a, &busy.t);
    lx_admission_leave(f.a, &high.t);
    turn(&f);
    teardown(&f);
}

static void test_close_rejects_waiting(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 100, 1);
    req busy, w1, w2, late;
    submit(&f, &busy, 0, "u", LX_PRIO_NORMAL, 60);
    submit(&f, &w1, 1, "u", LX_PRIO_NORMAL, 60);
    submit(&f, &w2, 2, "v", LX_PRIO_NORMAL, 60);
    lx_admission_close(f.a);
    assert_int_equal(submit(&f, &late, 3, "u", LX_PRIO_HIGH, 60), LX_ADMIT_CLOSED);
    turn(&f);
    assert_string_equal(events, "S1 S2 ");
    lx_admission_leave(f.a, &busy.t);
    assert_int_equal(submit(&f, &late, 3, "u", LX_PRIO_HIGH, 60), LX_ADMIT_NOW); /* a free slot still serves */
    lx_admission_leave(f.a, &late.t);
    teardown(&f);
}

static void test_reload_raises_the_limit(void **state)
{
    (void)state;
    fixture f;
    setup(&f, 100, 1);
    req busy, w1, w2, w3;
    submit(&f, &busy, 0, "u", LX_PRIO_NORMAL, 60);
    submit(&f, &w1, 1, "u", LX_PRIO_NORMAL, 60);
    submit(&f, &w2, 2, "u", LX_PRIO_NORMAL, 60);
    submit(&f, &w3, 3, "u", LX_PRIO_NORMAL, 60);
    lx_config *c3 = config(100, 3);
    lx_admission_reconfigure(f.a, c3);
    turn(&f);
    assert_string_equal(events, "d1 d2 "); /* three slots, one busy */
    assert_int_equal(lx_admission_waiting_for(f.a, model_m(&f)), 1);
    lx_admission_leave(f.a, &busy.t);
    lx_admission_leave(f.a, &w1.t);
    lx_admission_leave(f.a, &w2.t);
    turn(&f);
    assert_string_equal(events, "d1 d2 d3 ");
    lx_admission_leave(f.a, &w3.t);
    lx_config_unref(c3);
    teardown(&f);
}

static void setup_replicas(fixture *f, const char *yaml)
{
    events[0] = '\0';
    uv_loop_init(&f->loop);
    f->c = lx_test_config(yaml);
    f->a = lx_admission_new(&f->loop, NULL, f->c);
}

#define TWO_REPLICAS                                                                                                   \
    "backends:\n"                                                                                                      \
    "  a: {type: vllm, url: 'http://127.0.0.1:9', max_concurrency: 1, models: [m]}\n"                                  \
    "  b: {type: vllm, url: 'http://127.0.0.1:9', max_concurrency: 1, models: [m, other]}\n"                           \
    "health_check: {failure_threshold: 1, cooldown_seconds: 60}\n"

/* A request waits in its model's line, not a backend's: whichever replica frees a slot first takes it. */
static void test_line_per_model(void **state)
{
    (void)state;
    fixture f;
    setup_replicas(&f, TWO_REPLICAS);
    req r1, r2, r3, r4;
    assert_int_equal(submit_to(&f, &r1, 1, "a", LX_PRIO_NORMAL, 60), LX_ADMIT_NOW);
    assert_int_equal(submit_to(&f, &r2, 2, "b", LX_PRIO_NORMAL, 60), LX_ADMIT_NOW);
    assert_ptr_equal(r2.t.backend, backend(&f, "b"));
    assert_int_equal(submit_to(&f, &r3, 3, "a", LX_PRIO_NORMAL, 60), LX_ADMIT_QUEUED); /* chosen: a */
    assert_int_equal(submit_to(&f, &r4, 4, "a", LX_PRIO_LOW, 60), LX_ADMIT_QUEUED);
    assert_null(r3.t.backend);
    lx_admission_leave(f.a, &r2.t); /* b frees first: it takes the head of m's line */
    turn(&f);
    assert_string_equal(events, "d3 ");
    assert_ptr_equal(r3.t.backend, backend(&f, "b"));
    lx_admission_leave(f.a, &r1.t);
    turn(&f);
    assert_string_equal(events, "d3 d4 ");
    assert_ptr_equal(r4.t.backend, backend(&f, "a"));
    lx_admission_leave(f.a, &r3.t);
    lx_admission_leave(f.a, &r4.t);
    teardown(&f);
}

/* A backend serving two models takes the more important head of the two lines; the one serving only m
 * never takes the other model's requests. */
static void test_backend_serves_its_models_lines(void **state)
{
    (void)state;
    fixture f;
    setup_replicas(&f, TWO_REPLICAS);
    lx_model *other = lx_served_find(lx_admission_served(f.a), "other", 5);
    req r1, r2, low_m, high_other;
    submit_to(&f, &r1, 1, "a", LX_PRIO_NORMAL, 60);
    submit_to(&f, &r2, 2, "b", LX_PRIO_NORMAL, 60);
    submit_to(&f, &low_m, 3, "b", LX_PRIO_LOW, 60);
    high_other.id = 4;
    assert_int_equal(lx_admission_submit(f.a, &high_other.t, &cbs, other, backend(&f, "b"), "v", LX_PRIO_HIGH, 60),
                     LX_ADMIT_QUEUED);
    lx_admission_leave(f.a, &r1.t); /* a does not serve `other`: it takes m's request */
    turn(&f);
    assert_string_equal(events, "d3 ");
    lx_admission_leave(f.a, &r2.t);
    turn(&f);
    assert_string_equal(events, "d3 d4 ");
    assert_ptr_equal(high_other.t.backend, backend(&f, "b"));
    lx_admission_leave(f.a, &low_m.t);
    lx_admission_leave(f.a, &high_other.t);
    teardown(&f);
}

/* One replica down: its model's requests keep waiting for the other; the last one down: BACKEND_DOWN. A
 * backend of a worse priority takes nothing while a better one is routable. */
static void test_replicas_down_and_priority(void **state)
{
    (void)state;
    fixture f;
    setup_replicas(&f, "backends:\n"
                       "  a: {type: vllm, url: 'http://127.0.0.1:9', max_concurrency: 1, models: [m]}\n"
                       "  b: {type: vllm, url: 'http://127.0.0.1:9', max_concurrency: 1, models: [m], priority: 1}\n"
                       "health_check: {failure_threshold: 1, cooldown_seconds: 60}\n");
    req r1, r2, r3;
    assert_int_equal(submit_to(&f, &r1, 1, "a", LX_PRIO_NORMAL, 60), LX_ADMIT_NOW);
    assert_int_equal(submit_to(&f, &r2, 2, "a", LX_PRIO_NORMAL, 60), LX_ADMIT_QUEUED);
    turn(&f);
    assert_string_equal(events, ""); /* b is free, but a (priority 0) is routable */
    lx_admission_leave(f.a, &r1.t);
    lx_backend_attempt_end(backend(&f, "a"), false, LX_ATTEMPT_FAILED, "reset"); /* a's circuit opens */
    turn(&f);
    assert_string_equal(events, "d2 ");
    assert_ptr_equal(r2.t.backend, backend(&f, "b"));
    assert_int_equal(submit_to(&f, &r3, 3, "b", LX_PRIO_NORMAL, 60), LX_ADMIT_QUEUED); /* b is busy */
    lx_backend_attempt_end(backend(&f, "b"), false, LX_ATTEMPT_FAILED, "reset");       /* b's opens too */
    turn(&f);
    assert_string_equal(events, "d2 D3 ");
    lx_admission_leave(f.a, &r2.t);
    teardown(&f);
}

/* The router's choice for model m (NULL: none), through a router made for the call. */
static lx_backend *pick_m(lx_admission *a, const lx_config *c)
{
    lx_router *r = lx_router_new(a);
    lx_route_ask ask = {.name = LX_SLICE_LIT("m")};
    lx_backend *b = lx_router_pick(r, c, &ask).backend;
    lx_router_free(r);
    return b;
}

/* A half-open backend with its trial out: new requests wait for the verdict (pick returns it, nothing is
 * dispatched); the trial succeeds → they go; the trial fails → they are answered BACKEND_DOWN at once. */
static void test_waiting_for_a_trial(void **state)
{
    (void)state;
    fixture f;
    events[0] = '\0';
    uv_loop_init(&f.loop);
    f.c = lx_test_config("backends:\n  vllm: {url: 'http://127.0.0.1:9', max_concurrency: 4, models: [m]}\n"
                         "health_check: {failure_threshold: 1, cooldown_seconds: 0.01}\n");
    f.a = lx_admission_new(&f.loop, NULL, f.c);
    lx_backend *b = lx_backends_find(lx_admission_backends(f.a), "vllm");
    lx_backend_attempt_end(b, false, LX_ATTEMPT_FAILED, "connect"); /* open */
    assert_null(pick_m(f.a, f.c));
    uv_sleep(20); /* half-open */
    bool trial = lx_backend_attempt_begin(b);
    assert_true(trial);
    assert_true(lx_backend_awaiting_trial(b));
    assert_string_equal(lx_backend_name(pick_m(f.a, f.c)), "vllm");
    req r1, r2;
    assert_int_equal(submit(&f, &r1, 1, "u", LX_PRIO_NORMAL, 10), LX_ADMIT_QUEUED);
    assert_int_equal(submit(&f, &r2, 2, "u", LX_PRIO_NORMAL, 10), LX_ADMIT_QUEUED);
    turn(&f);
    assert_string_equal(events, ""); /* held for the verdict */
    lx_backend_attempt_end(b, trial, LX_ATTEMPT_OK, NULL);
    turn(&f);
    assert_string_equal(events, "d1 d2 ");
    lx_admission_leave(f.a, &r1.t);
    lx_admission_leave(f.a, &r2.t);

    /* again, and this time the trial fails: those waiting are told at once */
    events[0] = '\0';
    lx_backend_attempt_end(b, false, LX_ATTEMPT_FAILED, "connect");
    uv_sleep(20);
    trial = lx_backend_attempt_begin(b);
    assert_int_equal(submit(&f, &r1, 3, "u", LX_PRIO_NORMAL, 10), LX_ADMIT_QUEUED);
    lx_backend_attempt_end(b, trial, LX_ATTEMPT_FAILED, "HTTP 503");
    turn(&f);
    assert_string_equal(events, "D3 ");
    assert_null(pick_m(f.a, f.c));
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_slot_priority_order),
        cmocka_unit_test(test_leaving_while_waiting_is_never_dispatched),
        cmocka_unit_test(test_deadline_rejects),
        cmocka_unit_test(test_full_queue_displaces_on_next_turn),
        cmocka_unit_test(test_displaced_client_leaving_first),
        cmocka_unit_test(test_close_rejects_waiting),
        cmocka_unit_test(test_reload_raises_the_limit),
        cmocka_unit_test(test_line_per_model),
        cmocka_unit_test(test_backend_serves_its_models_lines),
        cmocka_unit_test(test_replicas_down_and_priority),
        cmocka_unit_test(test_waiting_for_a_trial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
