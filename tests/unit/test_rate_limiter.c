/*
 * Unit tests for limits/rate_limiter.c with the memory store and a fake clock: RPM in bursts and at
 * steady rates (exactly the limit per minute once a burst is spent), retry-after to the millisecond,
 * TPM reservation and reconciliation, what a failed or cancelled request costs, a request too large
 * for its limit, per-user overrides, a reload that keeps usage, wait mode, unlimited users, bounded
 * memory, and the 429 message, envelope and headers that api/ratelimit.c renders from a limiter's result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api/ratelimit.h"
#include "config.h"
#include "limits/rate_limiter.h"
#include "utils/buf.h"

/* ---- fixtures ---- */

static int64_t fake_now;
static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

typedef struct {
    int calls;
    lx_rate_result last;
} seen;

static void on_result(lx_rate_req *req, void *ud)
{
    seen *s = ud;
    s->calls++;
    s->last = req->result;
}

static lx_config *config(const char *rate_yaml)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "default_model: m\nrate_limits:\n%s", rate_yaml);
    return lx_test_config(yaml);
}

typedef struct {
    uv_loop_t loop;
    lx_rate_limiter *rl;
} fixture;

static fixture *setup_with(const char *rate_yaml)
{
    fixture *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    lx_config *c = config(rate_yaml);
    f->rl = lx_rate_limiter_new(&f->loop, c);
    lx_config_unref(c);
    fake_now = 1000000;
    lx_rate_limiter_set_clock(f->rl, fake_clock, NULL);
    return f;
}

static void teardown_fixture(fixture *f)
{
    lx_rate_limiter_close(f->rl);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
}

/* One check (reject mode unless the config says wait); the req is left admitted when allowed. */
static lx_rate_verdict check(fixture *f, lx_rate_req *q, const char *user, long tokens, seen *s)
{
    lx_rate_ask ask = {.user = user, .prompt_tokens = tokens / 2, .tokens = tokens, .max_wait_ms = 0};
    int before = s->calls;
    lx_rate_check(f->rl, q, &ask, on_result, s);
    assert_int_equal(s->calls, before + 1); /* the memory store answers at once */
    return s->last.verdict;
}

/* A check whose reservation is given back at once when admitted (only the request counts). */
static lx_rate_verdict hit(fixture *f, const char *user)
{
    lx_rate_req q = {0};
    seen s = {0};
    lx_rate_verdict v = check(f, &q, user, 0, &s);
    lx_rate_finish(&q, 0);
    return v;
}

/* ---- requests per minute ---- */

static void test_burst_exactly_limit(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 30, tokens_per_minute: 0}\n");
    int ok = 0;
    for (int i = 0; i < 100; i++)
        ok += hit(f, "u") == LX_RATE_ALLOWED;
    assert_int_equal(ok, 30);

    lx_rate_req q = {0};
    seen s = {0};
    assert_int_equal(check(f, &q, "u", 0, &s), LX_RATE_LIMITED);
    assert_int_equal(s.last.kind, LX_RATE_REQUESTS);
    assert_int_equal(s.last.limit, 30);
    assert_int_equal(s.last.used, 30);
    assert_int_equal(s.last.requested, 1);
    assert_int_equal(s.last.retry_after_ms, 2000); /* one request drains every 60 s / 30 */
    assert_int_equal(s.last.requests.limit, 30);
    assert_int_equal(s.last.requests.remaining, 0);
    assert_int_equal(s.last.requests.reset_ms, 60000);
    assert_int_equal(s.last.tokens.limit, 0); /* unlimited: no token headers */

    /* a millisecond early is still too early; on time passes */
    fake_now += 1999;
    assert_int_equal(hit(f, "u"), LX_RATE_LIMITED);
    fake_now += 1;
    assert_int_equal(hit(f, "u"), LX_RATE_ALLOWED);
    assert_int_equal(hit(f, "u"), LX_RATE_LIMITED);

    /* a full minute later the whole burst is available again, and no more */
    fake_now += 60000;
    ok = 0;
    for (int i = 0; i < 100; i++)
        ok += hit(f, "u") == LX_RATE_ALLOWED;
    assert_int_equal(ok, 30);
    teardown_fixture(f);
}

static void test_steady_rate(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 30, tokens_per_minute: 0}\n");
    /* at exactly the limit's pace, nothing is refused, even with the burst spent first */
    for (int i = 0; i < 30; i++)
        assert_int_equal(hit(f, "u"), LX_RATE_ALLOWED);
    for (int i = 0; i < 300; i++) {
        fake_now += 2000;
        assert_int_equal(hit(f, "u"), LX_RATE_ALLOWED);
    }
    /* four times too fast for ten minutes: exactly 30 a minute pass, minute after minute */
    int per_minute[10] = {0};
    int64_t start = fake_now;
    for (int i = 0; i < 10 * 120; i++) {
        fake_now = start + 1 + (int64_t)i * 500;
        if (hit(f, "u") == LX_RATE_ALLOWED) per_minute[(fake_now - start) / 60000]++;
    }
    /* the first minute's 30th was the last one at the limit's pace, at its very first millisecond */
    assert_int_equal(per_minute[0], 29);
    for (int m = 1; m < 10; m++)
        assert_int_equal(per_minute[m], 30);
    teardown_fixture(f);
}

static void test_steady_from_idle_and_repeated_bursts(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 60, tokens_per_minute: 0}\n");
    /* from idle, twice too fast: the burst allowance (60) and then one a second; from the second minute on,
     * exactly 60 a minute; over 5 minutes, 5 x 60 + the one burst allowance */
    int64_t start = fake_now;
    int per_minute[5] = {0}, total = 0;
    for (int i = 0; i < 5 * 120; i++) {
        fake_now = start + (int64_t)i * 500;
        if (hit(f, "v") == LX_RATE_ALLOWED) {
            per_minute[(fake_now - start) / 60000]++;
            total++;
        }
    }
    for (int m = 1; m < 5; m++)
        assert_int_equal(per_minute[m], 60);
    assert_true(per_minute[0] <= 2 * 60);
    assert_true(total <= 5 * 60 + 60);

    /* bursts of 200 every minute: exactly 60 each time */
    fake_now += 600000;
    for (int b = 0; b < 5; b++) {
        int ok = 0;
        for (int i = 0; i < 200; i++)
            ok += hit(f, "v") == LX_RATE_ALLOWED;
        assert_int_equal(ok, 60);
        fake_now += 60000;
    }
    teardown_fixture(f);
}

static void test_limits_that_do_not_divide_a_minute(void **state)
{
    (void)state;
    /* 7 a minute: 8571.43 ms apart; integer arithmetic must neither drift nor round */
    fixture *f = setup_with("  default: {requests_per_minute: 7, tokens_per_minute: 0}\n");
    for (int i = 0; i < 7; i++)
        assert_int_equal(hit(f, "w"), LX_RATE_ALLOWED);
    assert_int_equal(hit(f, "w"), LX_RATE_LIMITED);
    int64_t start = fake_now;
    int ok = 0;
    for (int64_t t = 0; t < 70 * 60000; t += 100) { /* 70 minutes, a try every 100 ms */
        fake_now = start + t;
        ok += hit(f, "w") == LX_RATE_ALLOWED;
    }
    assert_int_equal(ok, 70 * 7 - 1); /* the last one is due at exactly 70 minutes */
    teardown_fixture(f);
}

/* ---- tokens per minute ---- */

static void test_tpm_reserve_and_reconcile(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 0, tokens_per_minute: 1000}\n");
    lx_rate_req a = {0}, b = {0};
    seen s = {0};
    assert_int_equal(check(f, &a, "t", 600, &s), LX_RATE_ALLOWED);
    assert_int_equal(s.last.tokens.limit, 1000);
    assert_int_equal(s.last.tokens.remaining, 400);
    assert_int_equal(s.last.requests.limit, 0);

    /* the reservation counts while the answer runs */
    assert_int_equal(check(f, &b, "t", 600, &s), LX_RATE_LIMITED);
    assert_int_equal(s.last.kind, LX_RATE_TOKENS);
    assert_int_equal(s.last.limit, 1000);
    assert_int_equal(s.last.used, 600);
    assert_int_equal(s.last.requested, 600);
    assert_int_equal(s.last.retry_after_ms, 12000); /* 200 tokens drain in 12 s at 1000/min */

    /* the answer used 100: the level is what it would be had 100 been charged at admission */
    fake_now += 3000; /* 50 tokens drained */
    lx_rate_finish(&a, 100);
    assert_int_equal(check(f, &b, "t", 950, &s), LX_RATE_ALLOWED);
    assert_int_equal(s.last.tokens.remaining, 0); /* 100 - 50 + 950 = 1000 */
    lx_rate_finish(&b, 950);
    assert_int_equal(check(f, &a, "t", 1, &s), LX_RATE_LIMITED);

    /* an answer longer than reserved is charged in full */
    fake_now += 60000;
    assert_int_equal(check(f, &a, "t", 100, &s), LX_RATE_ALLOWED);
    lx_rate_finish(&a, 900);
    assert_int_equal(check(f, &b, "t", 200, &s), LX_RATE_LIMITED);
    assert_int_equal(s.last.used, 900);
    teardown_fixture(f);
}

static void test_long_answers_run_out_sooner(void **state)
{
    (void)state;
    /* two users, same reservations; one's answers really are long */
    fixture *f = setup_with("  default: {requests_per_minute: 0, tokens_per_minute: 10000}\n");
    int ok_short = 0, ok_long = 0;
    for (int i = 0; i < 40; i++) {
        lx_rate_req q = {0};
        seen s = {0};
        if (check(f, &q, "short", 1100, &s) == LX_RATE_ALLOWED) {
            ok_short++;
            lx_rate_finish(&q, 150);
        }
        if (check(f, &q, "long", 1100, &s) == LX_RATE_ALLOWED) {
            ok_long++;
            lx_rate_finish(&q, 1050);
        }
    }
    assert_int_equal(ok_long, 9); /* 9 x 1050 = 9450; the 10th needs 1100 more */
    assert_int_equal(ok_short, 40);
    teardown_fixture(f);
}

static void test_failed_and_cancelled_cost(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 10, tokens_per_minute: 1000}\n");
    lx_rate_req q = {0};
    seen s = {0};
    /* never reached a backend: nothing */
    assert_int_equal(check(f, &q, "c", 800, &s), LX_RATE_ALLOWED);
    lx_rate_cancel(&q);
    lx_rate_cancel(&q); /* twice is harmless */
    assert_int_equal(check(f, &q, "c", 1000, &s), LX_RATE_ALLOWED);
    assert_int_equal(s.last.requests.remaining, 9);
    /* reached a backend, no usage: 1 request + the prompt estimate (here 500 of 1000) */
    lx_rate_finish(&q, -1);
    lx_rate_finish(&q, 5); /* already settled: no-op */
    assert_int_equal(check(f, &q, "c", 500, &s), LX_RATE_ALLOWED);
    assert_int_equal(s.last.tokens.remaining, 0);
    assert_int_equal(s.last.requests.remaining, 8);
    lx_rate_cancel(&q);
    teardown_fixture(f);
}

static void test_too_large(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 30, tokens_per_minute: 1000}\n  mode: wait\n");
    lx_rate_req q = {0};
    seen s = {0};
    lx_rate_ask ask = {.user = "big", .prompt_tokens = 900, .tokens = 1001, .max_wait_ms = 3600000};
    lx_rate_check(f->rl, &q, &ask, on_result, &s);
    assert_int_equal(s.calls, 1); /* at once, even in wait mode */
    assert_int_equal(s.last.verdict, LX_RATE_TOO_LARGE);
    assert_int_equal(s.last.kind, LX_RATE_TOKENS);
    assert_int_equal(s.last.limit, 1000);
    assert_int_equal(s.last.requested, 1001);
    assert_int_equal(lx_ratelimit_err(&q), LX_ERR_RATE_LIMIT_TOKENS);
    char msg[512];
    lx_ratelimit_message(&q, msg, sizeof msg);
    assert_non_null(strstr(msg, "Request too large"));
    assert_non_null(strstr(msg, "Limit 1000, Requested 1001"));
    lx_ratelimit_headers h;
    lx_ratelimit_headers_fill(&q.result, &h);
    assert_string_equal(h.name[h.n - 1], "x-should-retry");
    assert_string_equal(h.value[h.n - 1], "false");
    for (size_t i = 0; i < h.n; i++)
        assert_string_not_equal(h.name[i], "retry-after");
    /* nothing was charged */
    ask.tokens = 1000;
    lx_rate_check(f->rl, &q, &ask, on_result, &s);
    assert_int_equal(s.last.verdict, LX_RATE_ALLOWED);
    lx_rate_cancel(&q);
    lx_rate_stats st;
    lx_rate_limiter_stats(f->rl, &st);
    assert_int_equal(st.too_large, 1);
    teardown_fixture(f);
}

/* ---- users and config ---- */

static void test_per_user_overrides(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 3, tokens_per_minute: 0}\n"
                            "  users:\n"
                            "    takahito: {requests_per_minute: 5}\n"
                            "    free: {requests_per_minute: 0, tokens_per_minute: 0}\n");
    int t = 0, a = 0, b = 0, fr = 0;
    for (int i = 0; i < 10; i++) {
        t += hit(f, "takahito") == LX_RATE_ALLOWED;
        a += hit(f, "alice") == LX_RATE_ALLOWED;
        b += hit(f, "bob") == LX_RATE_ALLOWED;
        fr += hit(f, "free") == LX_RATE_ALLOWED;
    }
    assert_int_equal(t, 5);
    assert_int_equal(a, 3); /* each user has their own bucket */
    assert_int_equal(b, 3);
    assert_int_equal(fr, 10);

    lx_rate_req q = {0};
    seen s = {0};
    assert_int_equal(check(f, &q, "free", 10000000, &s), LX_RATE_ALLOWED); /* unlimited: no headers either */
    assert_int_equal(s.last.requests.limit, 0);
    assert_int_equal(s.last.tokens.limit, 0);
    lx_ratelimit_headers h;
    lx_ratelimit_headers_fill(&q.result, &h);
    assert_int_equal(h.n, 0);
    lx_rate_finish(&q, 5);

    lx_config *c = config("  default: {requests_per_minute: 3}\n  users:\n    takahito: {requests_per_minute: 5}\n");
    lx_rate_limits l = lx_rate_limits_for(c, "takahito");
    assert_int_equal(l.requests_per_minute, 5);
    assert_int_equal(l.tokens_per_minute, 50000); /* a key left out takes the default's */
    l = lx_rate_limits_for(c, "someone");
    assert_int_equal(l.requests_per_minute, 3);
    lx_config_unref(c);
    teardown_fixture(f);
}

static void test_reload_keeps_usage(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 10, tokens_per_minute: 0}\n");
    for (int i = 0; i < 10; i++)
        assert_int_equal(hit(f, "r"), LX_RATE_ALLOWED);
    assert_int_equal(hit(f, "r"), LX_RATE_LIMITED);

    /* a higher limit: the 10 used still count, 10 more fit */
    lx_config *c = config("  default: {requests_per_minute: 20, tokens_per_minute: 0}\n");
    lx_rate_limiter_reconfigure(f->rl, c);
    lx_config_unref(c);
    int ok = 0;
    for (int i = 0; i < 30; i++)
        ok += hit(f, "r") == LX_RATE_ALLOWED;
    assert_int_equal(ok, 10);

    /* a lower one: 20 used against 5 a minute, so the next one waits until 4 are left: 16 drain in 3.2 min */
    c = config("  default: {requests_per_minute: 5, tokens_per_minute: 0}\n");
    lx_rate_limiter_reconfigure(f->rl, c);
    lx_config_unref(c);
    lx_rate_req q = {0};
    seen s = {0};
    assert_int_equal(check(f, &q, "r", 0, &s), LX_RATE_LIMITED);
    assert_int_equal(s.last.retry_after_ms, 192000);
    assert_int_equal(s.last.used, 20);
    fake_now += 191999;
    assert_int_equal(hit(f, "r"), LX_RATE_LIMITED);
    fake_now += 1;
    assert_int_equal(hit(f, "r"), LX_RATE_ALLOWED);
    teardown_fixture(f);
}

/* ---- wait mode ---- */

static void test_wait_mode(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 30, tokens_per_minute: 0}\n  mode: wait\n");
    for (int i = 0; i < 30; i++)
        assert_int_equal(hit(f, "w"), LX_RATE_ALLOWED);
    lx_rate_req q1 = {0}, q2 = {0}, q3 = {0}, q4 = {0};
    seen s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0};
    lx_rate_ask ask = {.user = "w", .tokens = 0, .max_wait_ms = 5000};
    lx_rate_check(f->rl, &q1, &ask, on_result, &s1); /* can pass in 2 s: waits */
    lx_rate_check(f->rl, &q2, &ask, on_result, &s2); /* also 2 s away now (the first has not taken it) */
    ask.max_wait_ms = 1000;
    lx_rate_check(f->rl, &q3, &ask, on_result, &s3); /* cannot make it within 1 s: refused now */
    ask.max_wait_ms = 60000;
    lx_rate_check(f->rl, &q4, &ask, on_result, &s4); /* waits, then is cancelled (client gone) */
    assert_int_equal(s1.calls + s2.calls + s4.calls, 0);
    assert_int_equal(s3.calls, 1);
    assert_int_equal(s3.last.verdict, LX_RATE_LIMITED);
    lx_rate_stats st;
    lx_rate_limiter_stats(f->rl, &st);
    assert_int_equal(st.waiting, 3);
    lx_rate_cancel(&q4);

    fake_now += 1999;
    lx_rate_limiter_run_waiters(f->rl);
    assert_int_equal(s1.calls + s2.calls, 0);
    fake_now += 1;
    lx_rate_limiter_run_waiters(f->rl);
    assert_int_equal(s1.calls, 1); /* first come, first served */
    assert_int_equal(s1.last.verdict, LX_RATE_ALLOWED);
    assert_int_equal(s1.last.waited_ms, 2000);
    assert_int_equal(s2.calls, 0); /* checked again too, and now 2 s away again: still within 5 s */
    fake_now += 2000;
    lx_rate_limiter_run_waiters(f->rl);
    assert_int_equal(s2.calls, 1);
    assert_int_equal(s2.last.verdict, LX_RATE_ALLOWED);
    assert_int_equal(s2.last.waited_ms, 4000);
    assert_int_equal(s4.calls, 0);

    /* the deadline comes before the limit allows: refused when that is known, not at the deadline */
    lx_rate_req q5 = {0};
    seen s5 = {0};
    ask.max_wait_ms = 3000;
    lx_rate_check(f->rl, &q5, &ask, on_result, &s5);
    lx_rate_check(f->rl, &q3, &ask, on_result, &s3);
    fake_now += 2000;
    lx_rate_limiter_run_waiters(f->rl);
    assert_int_equal(s5.calls, 1);
    assert_int_equal(s5.last.verdict, LX_RATE_ALLOWED);
    assert_int_equal(s3.calls, 2); /* needs 2 s more, has 1 s left */
    assert_int_equal(s3.last.verdict, LX_RATE_LIMITED);
    assert_int_equal(s3.last.waited_ms, 2000);

    lx_rate_limiter_stats(f->rl, &st);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.waited, 3);
    lx_rate_finish(&q1, 0);
    lx_rate_finish(&q2, 0);
    lx_rate_finish(&q5, 0);
    teardown_fixture(f);
}

static int wait_real_calls;
static void on_real(lx_rate_req *req, void *ud)
{
    (void)ud;
    assert_int_equal(req->result.verdict, LX_RATE_ALLOWED);
    wait_real_calls++;
    lx_rate_finish(req, 0);
}

static void test_wait_mode_real_timer(void **state)
{
    (void)state;
    /* the limiter's own timer, real clock: 600 a minute = one every 100 ms */
    fixture *f = setup_with("  default: {requests_per_minute: 600, tokens_per_minute: 0}\n  mode: wait\n");
    lx_rate_limiter_set_clock(f->rl, NULL, NULL);
    lx_rate_req q[603];
    memset(q, 0, sizeof q);
    lx_rate_ask ask = {.user = "rt", .tokens = 0, .max_wait_ms = 5000};
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < 603; i++)
        lx_rate_check(f->rl, &q[i], &ask, on_real, NULL);
    assert_int_equal(wait_real_calls, 600);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(wait_real_calls, 603);
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    assert_true(ms >= 250 && ms < 2000); /* the third waiter is due at 300 ms */
    teardown_fixture(f);
}

/* ---- memory ---- */

static void test_idle_users_forgotten(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 30, tokens_per_minute: 50000}\n");
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "user%d", i);
        assert_int_equal(hit(f, name), LX_RATE_ALLOWED);
    }
    lx_rate_stats st;
    lx_rate_limiter_stats(f->rl, &st);
    assert_int_equal(st.users, 1000);
    /* a request drains in 2 s at 30 a minute: after that they hold nothing and go, a few per check */
    fake_now += 2000;
    for (int i = 0; i < 300; i++)
        hit(f, "busy");
    lx_rate_limiter_stats(f->rl, &st);
    assert_int_equal(st.users, 1);
    /* a req reconciled after its user was forgotten: a refund on nothing stays nothing */
    lx_rate_req q = {0};
    seen s = {0};
    assert_int_equal(check(f, &q, "late", 100, &s), LX_RATE_ALLOWED);
    fake_now += 120000;
    for (int i = 0; i < 10; i++)
        hit(f, "busy2");
    lx_rate_finish(&q, 10);
    assert_int_equal(check(f, &q, "late", 50000, &s), LX_RATE_ALLOWED);
    lx_rate_cancel(&q);
    teardown_fixture(f);
}

static void test_user_cap(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 1, tokens_per_minute: 0}\n");
    char name[32];
    for (int i = 0; i < LX_RATE_MAX_USERS + 100; i++) {
        snprintf(name, sizeof name, "u%d", i);
        hit(f, name);
    }
    lx_rate_stats st;
    lx_rate_limiter_stats(f->rl, &st);
    assert_int_equal(st.users, LX_RATE_MAX_USERS);
    assert_int_equal(hit(f, "u0"), LX_RATE_ALLOWED); /* the oldest were forgotten */
    snprintf(name, sizeof name, "u%d", LX_RATE_MAX_USERS + 99);
    assert_int_equal(hit(f, name), LX_RATE_LIMITED); /* the newest are not */
    teardown_fixture(f);
}

static void test_clock_going_back(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 2, tokens_per_minute: 0}\n");
    assert_int_equal(hit(f, "b"), LX_RATE_ALLOWED);
    assert_int_equal(hit(f, "b"), LX_RATE_ALLOWED);
    fake_now -= 100000;
    assert_int_equal(hit(f, "b"), LX_RATE_LIMITED); /* no drain until the clock is back */
    fake_now += 100000 + 30000;
    assert_int_equal(hit(f, "b"), LX_RATE_ALLOWED);
    teardown_fixture(f);
}

/* ---- answering ---- */

static void test_duration_format(void **state)
{
    (void)state;
    const struct {
        int64_t ms;
        const char *s;
    } cases[] = {{0, "0s"},           {-5, "0s"},          {12, "12ms"},       {999, "999ms"},  {1000, "1s"},
                 {1500, "1.5s"},      {2520, "2.52s"},     {59929, "59.929s"}, {60000, "1m0s"}, {360000, "6m0s"},
                 {61001, "1m1.001s"}, {3723000, "1h2m3s"}, {3600000, "1h0m0s"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        lx_ratelimit_duration(cases[i].ms, out, sizeof out);
        assert_string_equal(out, cases[i].s);
    }
}

static const char *header(const lx_ratelimit_headers *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->name[i], name) == 0) return h->value[i];
    return NULL;
}

static void test_429_body_and_headers(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 30, tokens_per_minute: 30000}\n");
    lx_rate_req q = {0}, r = {0};
    seen s = {0};
    assert_int_equal(check(f, &q, "takahito", 29937, &s), LX_RATE_ALLOWED);
    lx_ratelimit_headers h;
    lx_ratelimit_headers_fill(&q.result, &h);
    assert_int_equal(h.n, 6); /* on success too, so clients can pace themselves */
    assert_string_equal(header(&h, "x-ratelimit-limit-requests"), "30");
    assert_string_equal(header(&h, "x-ratelimit-remaining-requests"), "29");
    assert_string_equal(header(&h, "x-ratelimit-reset-requests"), "2s");
    assert_string_equal(header(&h, "x-ratelimit-limit-tokens"), "30000");
    assert_string_equal(header(&h, "x-ratelimit-remaining-tokens"), "63");
    assert_string_equal(header(&h, "x-ratelimit-reset-tokens"), "59.874s");
    assert_null(header(&h, "retry-after"));

    assert_int_equal(check(f, &r, "takahito", 385, &s), LX_RATE_LIMITED);
    assert_int_equal(lx_ratelimit_err(&r), LX_ERR_RATE_LIMIT_TOKENS);
    assert_int_equal(lx_err_get(lx_ratelimit_err(&r))->status, 429);
    /* 322 tokens over: 322 x 60000 / 30000 = 644 ms */
    assert_int_equal(r.result.retry_after_ms, 644);
    lx_ratelimit_headers_fill(&r.result, &h);
    assert_string_equal(header(&h, "retry-after"), "1");
    assert_string_equal(header(&h, "retry-after-ms"), "644");
    assert_string_equal(header(&h, "x-ratelimit-remaining-tokens"), "63");
    assert_string_equal(header(&h, "x-ratelimit-remaining-requests"), "29");

    lx_buf b;
    lx_buf_init(&b, 4096);
    assert_int_equal(lx_ratelimit_body(&r, &b), 0);
    cJSON *root = cJSON_Parse(b.p);
    assert_non_null(root);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(err, "type")->valuestring, "tokens");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(err, "code")->valuestring, "rate_limit_exceeded");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(err, "param")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(err, "message")->valuestring,
                        "Rate limit reached for user `takahito` on tokens per min (TPM): Limit 30000, Used 29937, "
                        "Requested 385. Please try again in 644ms.");
    cJSON_Delete(root);
    lx_buf_free(&b);
    lx_rate_finish(&q, 29937);

    /* requests */
    for (int i = 0; i < 29; i++)
        hit(f, "rq");
    assert_int_equal(hit(f, "rq"), LX_RATE_ALLOWED);
    assert_int_equal(check(f, &r, "rq", 0, &s), LX_RATE_LIMITED);
    assert_int_equal(lx_ratelimit_err(&r), LX_ERR_RATE_LIMIT_REQUESTS);
    assert_string_equal(lx_rate_req_user(&r), "rq");
    char msg[512];
    lx_ratelimit_message(&r, msg, sizeof msg);
    assert_string_equal(msg, "Rate limit reached for user `rq` on requests per min (RPM): Limit 30, Used 30, "
                             "Requested 1. Please try again in 2s.");
    lx_ratelimit_headers_fill(&r.result, &h);
    assert_string_equal(header(&h, "retry-after"), "2");
    assert_string_equal(header(&h, "retry-after-ms"), "2000");
    assert_string_equal(header(&h, "x-ratelimit-remaining-requests"), "0");
    assert_string_equal(header(&h, "x-ratelimit-reset-requests"), "1m0s");
    teardown_fixture(f);
}

static void test_stats(void **state)
{
    (void)state;
    fixture *f = setup_with("  default: {requests_per_minute: 1, tokens_per_minute: 0}\n");
    hit(f, "s");
    hit(f, "s");
    lx_rate_stats st;
    lx_rate_limiter_stats(f->rl, &st);
    assert_int_equal(st.checks, 2);
    assert_int_equal(st.allowed, 1);
    assert_int_equal(st.limited, 1);
    assert_false(st.redis_configured);
    assert_false(st.redis_up);
    assert_int_equal(lx_rate_limiter_fallbacks(f->rl), 0);
    teardown_fixture(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_exactly_limit),
        cmocka_unit_test(test_steady_rate),
        cmocka_unit_test(test_steady_from_idle_and_repeated_bursts),
        cmocka_unit_test(test_limits_that_do_not_divide_a_minute),
        cmocka_unit_test(test_tpm_reserve_and_reconcile),
        cmocka_unit_test(test_long_answers_run_out_sooner),
        cmocka_unit_test(test_failed_and_cancelled_cost),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_per_user_overrides),
        cmocka_unit_test(test_reload_keeps_usage),
        cmocka_unit_test(test_wait_mode),
        cmocka_unit_test(test_wait_mode_real_timer),
        cmocka_unit_test(test_idle_users_forgotten),
        cmocka_unit_test(test_user_cap),
        cmocka_unit_test(test_clock_going_back),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_429_body_and_headers),
        cmocka_unit_test(test_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
