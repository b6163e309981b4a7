/*
 * Unit tests for limits/usage_today.c: counts per user and per model, the day rolling over (UTC), the
 * caps on models and users.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support.h"

#include <stdio.h>
#include <string.h>

#include "limits/usage_today.h"
#include "utils/common.h"

static int64_t clock_s = 1765065600; /* 2025-12-07T00:00:00Z */
static int64_t fake_now(void *ud)
{
    (void)ud;
    return clock_s;
}

static lx_access_rec rec(const char *user, const char *model, int status, long prompt, long completion)
{
    return (lx_access_rec){.user = user,
                           .model_used = model,
                           .status = status,
                           .prompt_tokens = prompt,
                           .completion_tokens = completion,
                           .error_code = status >= 400 ? "x" : NULL};
}

typedef struct {
    char names[64][32];
    lx_today_counts c[64];
    size_t n;
} seen;

static void each(const char *model, const lx_today_counts *c, void *ud)
{
    seen *s = ud;
    snprintf(s->names[s->n], sizeof s->names[0], "%s", model);
    s->c[s->n++] = *c;
}

static void test_counts_and_models(void **state)
{
    (void)state;
    clock_s = 1765065600 + 3600;
    lx_usage_today *t = lx_usage_today_new(fake_now, NULL);
    lx_access_rec r[] = {
        rec("alice", "m1", 200, 10, 5),  rec("alice", "m2", 200, 7, 3), rec("alice", "m1", 429, -1, -1),
        rec("alice", NULL, 400, -1, -1), rec("bob", "m1", 200, 1, 1),
    };
    for (size_t i = 0; i < LX_ARRAY_LEN(r); i++)
        lx_usage_today_record(t, &r[i]);
    char day[11];
    lx_today_counts c;
    seen s = {0};
    assert_true(lx_usage_today_get(t, "alice", day, &c, each, &s));
    assert_string_equal(day, "2025-12-07");
    assert_int_equal(c.requests, 4);
    assert_int_equal(c.prompt_tokens, 17);
    assert_int_equal(c.completion_tokens, 8);
    assert_int_equal(c.errors, 2);
    assert_int_equal(c.rate_limited, 1);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.names[0], "m1");
    assert_int_equal(s.c[0].requests, 2);
    assert_int_equal(s.c[0].rate_limited, 1);
    assert_string_equal(s.names[1], "m2");
    assert_string_equal(s.names[2], "-"); /* never resolved to a model */
    assert_false(lx_usage_today_get(t, "carol", day, &c, NULL, NULL));
    assert_int_equal(c.requests, 0);

    clock_s += 23 * 3600 - 1; /* 23:59:59 the same day */
    assert_true(lx_usage_today_get(t, "bob", day, &c, NULL, NULL));
    clock_s += 1; /* midnight UTC: a new day, nothing yet */
    assert_false(lx_usage_today_get(t, "alice", day, &c, NULL, NULL));
    assert_string_equal(day, "2025-12-08");
    lx_usage_today_record(t, &r[0]);
    assert_true(lx_usage_today_get(t, "alice", day, &c, NULL, NULL));
    assert_int_equal(c.requests, 1);
    lx_usage_today_free(t);
}

static void test_caps(void **state)
{
    (void)state;
    clock_s = 1765065600;
    lx_usage_today *t = lx_usage_today_new(fake_now, NULL);
    char name[32];
    for (int i = 0; i < LX_TODAY_MAX_MODELS + 5; i++) {
        snprintf(name, sizeof name, "model-%d", i);
        lx_access_rec r = rec("alice", name, 200, 1, 1);
        lx_usage_today_record(t, &r);
    }
    char day[11];
    lx_today_counts c;
    seen s = {0};
    lx_usage_today_get(t, "alice", day, &c, each, &s);
    assert_int_equal(c.requests, LX_TODAY_MAX_MODELS + 5);
    assert_int_equal(s.n, LX_TODAY_MAX_MODELS);
    assert_string_equal(s.names[LX_TODAY_MAX_MODELS - 1], "(other)");
    assert_int_equal(s.c[LX_TODAY_MAX_MODELS - 1].requests, 6);
    for (int i = 0; i < LX_TODAY_MAX_USERS + 3; i++) {
        snprintf(name, sizeof name, "user-%d", i);
        lx_access_rec r = rec(name, "m", 200, 1, 1);
        lx_usage_today_record(t, &r);
    }
    assert_int_equal(lx_usage_today_dropped(t), 4); /* alice was the first of the 10,000 */
    assert_false(lx_usage_today_get(t, "user-10002", day, &c, NULL, NULL));
    lx_usage_today_record(t, &(lx_access_rec){.user = NULL});
    lx_usage_today_record(NULL, &(lx_access_rec){.user = "x"});
    lx_usage_today_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_models),
        cmocka_unit_test(test_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
