/*
 * Unit tests for queue/queue.c, with a fake clock (every call takes `now`): priority order, users
 * taking turns, FIFO per user, aging, displacement from a full queue, deadlines, removal on disconnect,
 * reconfiguration that keeps waiting requests, statistics, and a randomized run that checks every
 * internal invariant after each operation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue.h"

#define S(x) ((uint64_t)((x)*1e9)) /* seconds → ns */
#define NONE UINT64_MAX

typedef struct {
    lx_queue_entry qe;
    int id;
} req;

static lx_queue_conf conf(long max_size, double aging_s)
{
    return (lx_queue_conf){.max_size = max_size, .aging_s = aging_s, .numbers = {1, 5, 10}};
}

static req *push_ok(lx_queue *q, lx_queue_line *l, req *r, int id, const char *user, lx_priority cls, uint64_t now,
                    uint64_t deadline)
{
    lx_queue_entry *victim = (lx_queue_entry *)1;
    r->id = id;
    assert_int_equal(lx_queue_push(q, l, &r->qe, user, cls, now, deadline, &victim), LX_QUEUE_OK);
    assert_null(victim);
    assert_int_equal(lx_queue_check(q), 0);
    return r;
}

static int pop_id(lx_queue *q, lx_queue_line *l, uint64_t now)
{
    lx_queue_entry *e = lx_queue_pop(q, l, now);
    assert_int_equal(lx_queue_check(q), 0);
    return e ? ((req *)e)->id : -1;
}

static void test_priority_order(void **state)
{
    (void)state;
    lx_queue_conf c = conf(100, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req r[4];
    push_ok(q, l, &r[0], 1, "u", LX_PRIO_LOW, S(0), NONE);
    push_ok(q, l, &r[1], 2, "u", LX_PRIO_NORMAL, S(1), NONE);
    push_ok(q, l, &r[2], 3, "u", LX_PRIO_HIGH, S(2), NONE);
    push_ok(q, l, &r[3], 4, "u", LX_PRIO_NORMAL, S(3), NONE);
    assert_int_equal(lx_queue_len(q), 4);
    assert_int_equal(((req *)lx_queue_peek(q, l, S(4)))->id, 3);
    assert_int_equal(pop_id(q, l, S(4)), 3);
    assert_int_equal(pop_id(q, l, S(4)), 2);
    assert_int_equal(pop_id(q, l, S(4)), 4);
    assert_int_equal(pop_id(q, l, S(4)), 1);
    assert_int_equal(pop_id(q, l, S(4)), -1);
    assert_int_equal(lx_queue_len(q), 0);
    lx_queue_free(q);
}

static void test_lines_are_separate(void **state)
{
    (void)state;
    lx_queue_conf c = conf(100, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *a = lx_queue_line_get(q, "a"), *b = lx_queue_line_get(q, "b");
    assert_ptr_equal(lx_queue_line_get(q, "a"), a);
    req r[2];
    push_ok(q, a, &r[0], 1, "u", LX_PRIO_LOW, S(0), NONE);
    push_ok(q, b, &r[1], 2, "u", LX_PRIO_HIGH, S(0), NONE);
    assert_int_equal(lx_queue_line_len(a), 1);
    assert_int_equal(pop_id(q, a, S(1)), 1);
    assert_int_equal(pop_id(q, a, S(1)), -1);
    assert_int_equal(pop_id(q, b, S(1)), 2);
    lx_queue_free(q);
}

/* One user's burst of 500 does not starve another user's single request at the same priority. */
static void test_users_take_turns(void **state)
{
    (void)state;
    lx_queue_conf c = conf(1000, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    static req burst[500];
    req bob, carol[2];
    for (int i = 0; i < 500; i++)
        push_ok(q, l, &burst[i], i, "alice", LX_PRIO_NORMAL, S(0), NONE);
    push_ok(q, l, &bob, 1000, "bob", LX_PRIO_NORMAL, S(1), NONE);
    assert_int_equal(pop_id(q, l, S(2)), 0);    /* alice's turn came first */
    assert_int_equal(pop_id(q, l, S(2)), 1000); /* then bob's, ahead of alice's 499 others */
    push_ok(q, l, &carol[0], 2000, "carol", LX_PRIO_NORMAL, S(3), NONE);
    push_ok(q, l, &carol[1], 2001, "carol", LX_PRIO_NORMAL, S(3), NONE);
    assert_int_equal(pop_id(q, l, S(4)), 1);    /* alice */
    assert_int_equal(pop_id(q, l, S(4)), 2000); /* carol */
    assert_int_equal(pop_id(q, l, S(4)), 2);    /* alice: turns alternate, FIFO within each user */
    assert_int_equal(pop_id(q, l, S(4)), 2001);
    for (int i = 3; i < 500; i++)
        assert_int_equal(pop_id(q, l, S(5)), i);
    assert_int_equal(pop_id(q, l, S(5)), -1);
    lx_queue_free(q);
}

/* Turns are per level: a high request of the bursting user still goes before everyone's normal. */
static void test_turns_within_a_level_only(void **state)
{
    (void)state;
    lx_queue_conf c = conf(100, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req r[4];
    push_ok(q, l, &r[0], 1, "alice", LX_PRIO_NORMAL, S(0), NONE);
    push_ok(q, l, &r[1], 2, "bob", LX_PRIO_NORMAL, S(0), NONE);
    push_ok(q, l, &r[2], 3, "alice", LX_PRIO_HIGH, S(0), NONE);
    push_ok(q, l, &r[3], 4, NULL, LX_PRIO_NORMAL, S(0), NONE);
    assert_int_equal(pop_id(q, l, S(1)), 3);
    assert_int_equal(pop_id(q, l, S(1)), 1);
    assert_int_equal(pop_id(q, l, S(1)), 2);
    assert_int_equal(pop_id(q, l, S(1)), 4);
    lx_queue_free(q);
}

static void test_aging_promotes_one_level_per_period(void **state)
{
    (void)state;
    lx_queue_conf c = conf(100, 10);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req low, normal, high, low2;
    push_ok(q, l, &low, 1, "a", LX_PRIO_LOW, S(0), NONE);
    push_ok(q, l, &normal, 2, "b", LX_PRIO_NORMAL, S(5), NONE);
    /* At 9 s nothing has aged: normal first. Peek only. */
    assert_int_equal(((req *)lx_queue_peek(q, l, S(9)))->id, 2);
    assert_int_equal(low.qe.promotions, 0);
    /* At 10 s the low request reached normal; it entered normal at 10 s, after b's (5 s), and b's turn
     * comes first in the ring. */
    assert_int_equal(((req *)lx_queue_peek(q, l, S(12)))->id, 2);
    assert_int_equal(low.qe.promotions, 1);
    assert_int_equal(lx_queue_entry_number(q, &low.qe), 5);
    /* b's normal request reached high at 15 s; a high arrival at 19 s joins it; at 20 s the low
     * request, aged twice, reaches high as well. High is served by turns in the order users joined. */
    push_ok(q, l, &high, 3, "c", LX_PRIO_HIGH, S(19), NONE);
    push_ok(q, l, &low2, 4, "d", LX_PRIO_LOW, S(19), NONE);
    assert_int_equal(pop_id(q, l, S(21)), 2);
    assert_int_equal(low.qe.promotions, 2);
    assert_int_equal(lx_queue_entry_number(q, &low.qe), 1);
    assert_int_equal(pop_id(q, l, S(21)), 3);
    assert_int_equal(pop_id(q, l, S(21)), 1); /* aged twice: high, ahead of d's low */
    assert_int_equal(pop_id(q, l, S(21)), 4);
    lx_queue_stats_t st;
    lx_queue_stats(q, &st);
    assert_int_equal(st.promoted, 3); /* a's low twice, b's normal once */
    lx_queue_free(q);
}

/* Without aging, a low request waits behind every normal one however long it waited. */
static void test_no_aging_when_off(void **state)
{
    (void)state;
    lx_queue_conf c = conf(100, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req low, normal;
    push_ok(q, l, &low, 1, "a", LX_PRIO_LOW, S(0), NONE);
    push_ok(q, l, &normal, 2, "b", LX_PRIO_NORMAL, S(1000), NONE);
    assert_int_equal(pop_id(q, l, S(5000)), 2);
    lx_queue_free(q);
}

static void test_full_queue_displaces_newest_of_lowest(void **state)
{
    (void)state;
    lx_queue_conf c = conf(3, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req l1, l2, n1, h1, l3, n2, n3;
    push_ok(q, l, &l1, 1, "a", LX_PRIO_LOW, S(0), NONE);
    push_ok(q, l, &l2, 2, "b", LX_PRIO_LOW, S(1), NONE);
    push_ok(q, l, &n1, 3, "c", LX_PRIO_NORMAL, S(2), NONE);
    h1.id = 4;
    n2.id = 5;
    lx_queue_entry *victim;
    /* A high arrival displaces the newest low request (l2). */
    assert_int_equal(lx_queue_push(q, l, &h1.qe, "d", LX_PRIO_HIGH, S(3), NONE, &victim), LX_QUEUE_OK);
    assert_ptr_equal(victim, &l2.qe);
    assert_false(l2.qe.waiting);
    assert_int_equal(lx_queue_check(q), 0);
    /* A low arrival does not outrank the lowest waiting (low): refused. */
    assert_int_equal(lx_queue_push(q, l, &l3.qe, "e", LX_PRIO_LOW, S(4), NONE, &victim), LX_QUEUE_FULL);
    assert_null(victim);
    /* A normal one displaces the last low (l1). */
    assert_int_equal(lx_queue_push(q, l, &n2.qe, "e", LX_PRIO_NORMAL, S(5), NONE, &victim), LX_QUEUE_OK);
    assert_ptr_equal(victim, &l1.qe);
    /* Now high, normal, normal wait: another normal is refused. */
    assert_int_equal(lx_queue_push(q, l, &n3.qe, "f", LX_PRIO_NORMAL, S(6), NONE, &victim), LX_QUEUE_FULL);
    assert_int_equal(lx_queue_len(q), 3);
    lx_queue_stats_t st;
    lx_queue_stats(q, &st);
    assert_int_equal(st.displaced[LX_PRIO_LOW], 2);
    assert_int_equal(st.rejected_full[LX_PRIO_LOW], 1);
    assert_int_equal(st.rejected_full[LX_PRIO_NORMAL], 1);
    assert_int_equal(st.depth[LX_PRIO_HIGH], 1);
    assert_int_equal(st.depth[LX_PRIO_NORMAL], 2);
    assert_int_equal(st.waiting, 3);
    assert_int_equal(pop_id(q, l, S(7)), 4);
    assert_int_equal(pop_id(q, l, S(7)), 3);
    assert_int_equal(pop_id(q, l, S(7)), 5);
    lx_queue_free(q);
}

/* Displacement looks at the whole queue (all lines) and at levels after aging. */
static void test_displacement_across_lines(void **state)
{
    (void)state;
    lx_queue_conf c = conf(2, 10);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *a = lx_queue_line_get(q, "a"), *b = lx_queue_line_get(q, "b");
    req old_low, new_low, arrival;
    push_ok(q, a, &old_low, 1, "x", LX_PRIO_LOW, S(0), NONE);
    push_ok(q, b, &new_low, 2, "y", LX_PRIO_LOW, S(8), NONE);
    lx_queue_entry *victim;
    /* At 11 s old_low aged to normal, so a normal arrival outranks only new_low (in the other line). */
    assert_int_equal(lx_queue_push(q, a, &arrival.qe, "z", LX_PRIO_NORMAL, S(11), NONE, &victim), LX_QUEUE_OK);
    assert_ptr_equal(victim, &new_low.qe);
    assert_int_equal(lx_queue_line_len(b), 0);
    assert_int_equal(lx_queue_check(q), 0);
    lx_queue_free(q);
}

static void test_deadlines_expire_in_order(void **state)
{
    (void)state;
    lx_queue_conf c = conf(100, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req r[4];
    push_ok(q, l, &r[0], 1, "a", LX_PRIO_HIGH, S(0), S(5));
    push_ok(q, l, &r[1], 2, "a", LX_PRIO_NORMAL, S(0), S(3));
    push_ok(q, l, &r[2], 3, "b", LX_PRIO_LOW, S(0), S(10));
    push_ok(q, l, &r[3], 4, "b", LX_PRIO_LOW, S(0), NONE);
    assert_int_equal(lx_queue_next_deadline(q), S(3));
    assert_null(lx_queue_expire(q, S(2.9)));
    assert_ptr_equal(lx_queue_expire(q, S(4)), &r[1].qe);
    assert_null(lx_queue_expire(q, S(4)));
    assert_int_equal(lx_queue_check(q), 0);
    assert_int_equal(lx_queue_next_deadline(q), S(5));
    assert_ptr_equal(lx_queue_expire(q, S(11)), &r[0].qe);
    assert_ptr_equal(lx_queue_expire(q, S(11)), &r[2].qe);
    assert_null(lx_queue_expire(q, S(1e6)));
    assert_int_equal(lx_queue_next_deadline(q), NONE);
    assert_int_equal(pop_id(q, l, S(12)), 4);
    lx_queue_stats_t st;
    lx_queue_stats(q, &st);
    assert_int_equal(st.timed_out[LX_PRIO_HIGH] + st.timed_out[LX_PRIO_NORMAL] + st.timed_out[LX_PRIO_LOW], 3);
    assert_int_equal(st.dispatched[LX_PRIO_LOW], 1);
    lx_queue_free(q);
}

static void test_remove_on_disconnect(void **state)
{
    (void)state;
    lx_queue_conf c = conf(100, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req r[4];
    push_ok(q, l, &r[0], 1, "a", LX_PRIO_NORMAL, S(0), S(50));
    push_ok(q, l, &r[1], 2, "b", LX_PRIO_NORMAL, S(0), S(10));
    push_ok(q, l, &r[2], 3, "a", LX_PRIO_NORMAL, S(0), S(60));
    push_ok(q, l, &r[3], 4, "b", LX_PRIO_NORMAL, S(0), S(70));
    lx_queue_remove(q, &r[1].qe); /* b's first: the ring's second user, the heap's top */
    assert_int_equal(lx_queue_check(q), 0);
    lx_queue_remove(q, &r[1].qe); /* twice is harmless */
    assert_int_equal(lx_queue_next_deadline(q), S(50));
    assert_int_equal(pop_id(q, l, S(1)), 1);
    assert_int_equal(pop_id(q, l, S(1)), 4);
    lx_queue_remove(q, &r[2].qe);
    assert_int_equal(pop_id(q, l, S(1)), -1);
    lx_queue_stats_t st;
    lx_queue_stats(q, &st);
    assert_int_equal(st.cancelled[LX_PRIO_NORMAL], 2);
    assert_int_equal(st.waiting, 0);
    lx_queue_free(q);
}

static void test_reconfigure_keeps_waiting_requests(void **state)
{
    (void)state;
    lx_queue_conf c = conf(10, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req r[5];
    push_ok(q, l, &r[0], 1, "a", LX_PRIO_LOW, S(0), NONE);
    push_ok(q, l, &r[1], 2, "b", LX_PRIO_NORMAL, S(1), NONE);
    push_ok(q, l, &r[2], 3, "c", LX_PRIO_HIGH, S(2), NONE);
    push_ok(q, l, &r[3], 4, "d", LX_PRIO_LOW, S(3), NONE);
    /* Smaller max_size: nobody dropped; a low arrival is refused, a high one displaces the newest low. */
    lx_queue_conf small = conf(2, 0);
    lx_queue_reconfigure(q, &small, S(4));
    assert_int_equal(lx_queue_len(q), 4);
    lx_queue_entry *victim;
    req extra;
    assert_int_equal(lx_queue_push(q, l, &extra.qe, "e", LX_PRIO_LOW, S(5), NONE, &victim), LX_QUEUE_FULL);
    /* low and normal now share a number: they are one level, served by turns in order of arrival. */
    lx_queue_conf merged = {.max_size = 10, .aging_s = 0, .numbers = {1, 5, 5}};
    lx_queue_reconfigure(q, &merged, S(6));
    assert_int_equal(lx_queue_check(q), 0);
    assert_int_equal(lx_queue_entry_number(q, &r[0].qe), 5);
    assert_int_equal(pop_id(q, l, S(7)), 3);
    assert_int_equal(pop_id(q, l, S(7)), 1);
    assert_int_equal(pop_id(q, l, S(7)), 2);
    /* Reversed numbers: low (now 1) before high (now 10). */
    push_ok(q, l, &r[4], 5, "e", LX_PRIO_HIGH, S(8), NONE);
    lx_queue_conf reversed = {.max_size = 10, .aging_s = 0, .numbers = {10, 5, 1}};
    lx_queue_reconfigure(q, &reversed, S(9));
    assert_int_equal(lx_queue_check(q), 0);
    assert_int_equal(pop_id(q, l, S(9)), 4);
    assert_int_equal(pop_id(q, l, S(9)), 5);
    lx_queue_free(q);
}

static void test_stats_wait_histogram(void **state)
{
    (void)state;
    lx_queue_conf c = conf(10, 0);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *l = lx_queue_line_get(q, "vllm");
    req r[2];
    lx_queue_note_direct(q, LX_PRIO_HIGH);
    push_ok(q, l, &r[0], 1, "a", LX_PRIO_NORMAL, S(0), NONE);
    push_ok(q, l, &r[1], 2, "a", LX_PRIO_NORMAL, S(0), NONE);
    pop_id(q, l, S(0.2));
    pop_id(q, l, S(45));
    lx_queue_stats_t st;
    lx_queue_stats(q, &st);
    assert_int_equal(st.dispatched[LX_PRIO_HIGH], 1);
    assert_int_equal(st.direct[LX_PRIO_HIGH], 1);
    assert_int_equal(st.wait_buckets[LX_PRIO_HIGH][0], 1);
    assert_int_equal(st.enqueued[LX_PRIO_NORMAL], 2);
    assert_int_equal(st.dispatched[LX_PRIO_NORMAL], 2);
    assert_int_equal(st.wait_count[LX_PRIO_NORMAL], 2);
    assert_true(st.wait_sum_s[LX_PRIO_NORMAL] > 45.19 && st.wait_sum_s[LX_PRIO_NORMAL] < 45.21);
    assert_int_equal(st.wait_buckets[LX_PRIO_NORMAL][5], 1);  /* 0.2 s: le 0.25 */
    assert_int_equal(st.wait_buckets[LX_PRIO_NORMAL][12], 1); /* 45 s: le 60 */
    assert_true(st.wait_max_s > 44.9);
    assert_int_equal(st.max_size, 10);
    lx_queue_free(q);
}

static void test_priority_names(void **state)
{
    (void)state;
    assert_int_equal(lx_priority_parse("high", 4), LX_PRIO_HIGH);
    assert_int_equal(lx_priority_parse("normal", 6), LX_PRIO_NORMAL);
    assert_int_equal(lx_priority_parse("low", 3), LX_PRIO_LOW);
    assert_int_equal(lx_priority_parse("urgent", 6), -1);
    assert_int_equal(lx_priority_parse("hig", 3), -1);
    assert_string_equal(lx_priority_name(LX_PRIO_LOW), "low");
}

/* Random pushes, pops, removals and expiries on several lines; every invariant holds after each step,
 * and within a line and level each user's requests come out in the order they went in. */
static void test_randomized_invariants(void **state)
{
    (void)state;
    enum { N = 3000 };
    lx_queue_conf c = conf(800, 3);
    lx_queue *q = lx_queue_new(&c);
    lx_queue_line *lines[3] = {lx_queue_line_get(q, "a"), lx_queue_line_get(q, "b"), lx_queue_line_get(q, "c")};
    req *r = calloc(N, sizeof *r);
    uint64_t now = 0, last_pop_seq[3][40][3] = {{{0}}};
    unsigned seed = 12345;
    int next = 0;
    for (int step = 0; step < 20000; step++) {
        now += (uint64_t)(rand_r(&seed) % 50) * 1000000u;
        int op = rand_r(&seed) % 10;
        if (op < 5 && next < N) {
            char user[16];
            int u = rand_r(&seed) % 40;
            snprintf(user, sizeof user, "user%d", u);
            lx_queue_entry *victim;
            uint64_t dl = rand_r(&seed) % 4 ? now + (uint64_t)(rand_r(&seed) % 20000) * 1000000u : NONE;
            r[next].id = u;
            lx_queue_push(q, lines[rand_r(&seed) % 3], &r[next].qe, user, rand_r(&seed) % 3, now, dl, &victim);
            next++;
        } else if (op < 8) {
            int li = rand_r(&seed) % 3;
            lx_queue_entry *e = lx_queue_pop(q, lines[li], now);
            if (e && e->promotions == 0) { /* FIFO per user and class, among those never promoted */
                uint64_t *last = &last_pop_seq[li][((req *)e)->id][e->cls];
                assert_true(e->seq > *last);
                *last = e->seq;
            }
        } else if (op < 9 && next > 0) {
            lx_queue_remove(q, &r[rand_r(&seed) % next].qe);
        } else {
            while (lx_queue_expire(q, now)) {
            }
        }
        assert_int_equal(lx_queue_check(q), 0);
    }
    lx_queue_free(q);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_lines_are_separate),
        cmocka_unit_test(test_users_take_turns),
        cmocka_unit_test(test_turns_within_a_level_only),
        cmocka_unit_test(test_aging_promotes_one_level_per_period),
        cmocka_unit_test(test_no_aging_when_off),
        cmocka_unit_test(test_full_queue_displaces_newest_of_lowest),
        cmocka_unit_test(test_displacement_across_lines),
        cmocka_unit_test(test_deadlines_expire_in_order),
        cmocka_unit_test(test_remove_on_disconnect),
        cmocka_unit_test(test_reconfigure_keeps_waiting_requests),
        cmocka_unit_test(test_stats_wait_histogram),
        cmocka_unit_test(test_priority_names),
        cmocka_unit_test(test_randomized_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
