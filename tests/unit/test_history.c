/* Unit tests for observe/history.c: per-second counts in a 15-minute ring (slots cleared as time moves,
 * gaps, the window's edge), the last 200 requests (order, overwrite, fields cut at a character
 * boundary), and the rendering for a reader: the first is the whole window, later ones only what is new;
 * and through the collector (stats.h), that lx_stats_record feeds it on the collector's clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "observe/history.h"
#include "observe/stats.h"

#define T0 100000 /* a monotonic second well past the window's length */

static lx_access_rec rec_of(const char *id, int status, long pt, long ct, double latency_ms)
{
    return (lx_access_rec){.request_id = id,
                           .user = "alice",
                           .model = "fast",
                           .model_used = "qwen3-32b",
                           .alias = true,
                           .backend = "vllm",
                           .status = status,
                           .priority = "normal",
                           .latency_ms = latency_ms,
                           .overhead_ms = 0.5,
                           .ttft_ms = latency_ms / 2,
                           .stream = true,
                           .prompt_tokens = pt,
                           .completion_tokens = ct};
}

static lx_history_point point(lx_history *h, uint64_t now, uint64_t sec)
{
    lx_history_point p;
    lx_history_point_get(h, now, sec, &p);
    return p;
}

static cJSON *render(lx_history *h, uint64_t now, lx_history_cursor *c)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_buf_append_str(&b, "{");
    lx_history_render(h, now, 1700000000 - T0, c, &b);
    lx_buf_append_str(&b, "}");
    cJSON *j = cJSON_Parse(b.p);
    if (j == NULL) fail_msg("not JSON: %s", b.p);
    lx_buf_free(&b);
    return j;
}

static int array_len(const cJSON *j, const char *obj, const char *key)
{
    return cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(j, obj), key));
}

static double array_at(const cJSON *j, const char *obj, const char *key, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, obj), key), i)->valuedouble;
}

static void test_counts_per_second(void **state)
{
    (void)state;
    lx_history *h = lx_history_new();
    lx_access_rec ok = rec_of("a", 200, 10, 20, 100), bad = rec_of("b", 502, -1, -1, 5),
                  limited = rec_of("c", 429, -1, -1, 1);
    lx_history_record(h, T0, 0, &ok);
    lx_history_record(h, T0, 0, &bad);
    lx_history_record(h, T0 + 1, 0, &ok);
    lx_history_record(h, T0 + 1, 0, &limited);
    lx_history_point p = point(h, T0 + 1, T0);
    assert_int_equal(p.requests, 2);
    assert_int_equal(p.errors, 1);
    assert_int_equal(p.rate_limited, 0);
    assert_int_equal(p.prompt_tokens, 10); /* unknown usage (-1) adds nothing */
    assert_int_equal(p.completion_tokens, 20);
    p = point(h, T0 + 1, T0 + 1);
    assert_int_equal(p.requests, 2);
    assert_int_equal(p.errors, 1);
    assert_int_equal(p.rate_limited, 1);
    /* the window is the last 900 s: second T0 is still there at T0 + 899 and gone at T0 + 900 */
    assert_int_equal(point(h, T0 + LX_HISTORY_SECONDS - 1, T0).requests, 2);
    assert_int_equal(point(h, T0 + LX_HISTORY_SECONDS, T0).requests, 0);
    assert_int_equal(point(h, T0 + LX_HISTORY_SECONDS, T0 + 1).requests, 2);
    /* its slot was cleared for the new second, which starts at zero */
    assert_int_equal(point(h, T0 + LX_HISTORY_SECONDS, T0 + LX_HISTORY_SECONDS).requests, 0);
    lx_history_record(h, T0 + LX_HISTORY_SECONDS, 0, &ok);
    assert_int_equal(point(h, T0 + LX_HISTORY_SECONDS, T0 + LX_HISTORY_SECONDS).requests, 1);
    /* a long gap clears everything; a second older than the window (clock stepped back) is dropped */
    lx_history_record(h, T0 + 10 * LX_HISTORY_SECONDS, 0, &ok);
    lx_history_record(h, T0, 0, &ok);
    for (uint64_t s = T0 + 9 * LX_HISTORY_SECONDS + 1; s < T0 + 10 * LX_HISTORY_SECONDS; s++)
        assert_int_equal(point(h, T0 + 10 * LX_HISTORY_SECONDS, s).requests, 0);
    assert_int_equal(point(h, T0 + 10 * LX_HISTORY_SECONDS, T0 + 10 * LX_HISTORY_SECONDS).requests, 1);
    lx_history_free(h);
}

static void test_recent_ring(void **state)
{
    (void)state;
    lx_history *h = lx_history_new();
    assert_int_equal(lx_history_recent_count(h), 0);
    assert_null(lx_history_recent_at(h, 0));
    char id[32];
    for (int i = 1; i <= LX_HISTORY_RECENT + 50; i++) {
        snprintf(id, sizeof id, "req_%d", i);
        lx_access_rec r = rec_of(id, 200, i, 1, (double)i);
        lx_history_record(h, T0 + (uint64_t)i, 1700000000000 + i, &r);
    }
    assert_int_equal(lx_history_recent_count(h), LX_HISTORY_RECENT);
    const lx_history_req *oldest = lx_history_recent_at(h, 0), *newest = lx_history_recent_at(h, LX_HISTORY_RECENT - 1);
    assert_string_equal(oldest->id, "req_51");
    assert_int_equal(oldest->seq, 51);
    assert_string_equal(newest->id, "req_250");
    assert_int_equal(newest->time_ms, 1700000000250);
    assert_string_equal(newest->user, "alice");
    assert_string_equal(newest->model, "fast");
    assert_string_equal(newest->model_used, "qwen3-32b");
    assert_string_equal(newest->backend, "vllm");
    assert_string_equal(newest->route, "");
    assert_string_equal(newest->variant, "");
    assert_int_equal(newest->prompt_tokens, 250);
    assert_true(newest->latency_ms == 250.0f);
    assert_null(lx_history_recent_at(h, LX_HISTORY_RECENT));
    lx_history_free(h);
}

static void test_fields_cut_at_a_character(void **state)
{
    (void)state;
    lx_history *h = lx_history_new();
    char user[200];
    memset(user, 'a', sizeof user);
    /* "é" (2 bytes) straddles the end of the 72-byte field: it is left out whole */
    memcpy(user + 70, "\xc3\xa9", 2);
    user[sizeof user - 1] = '\0';
    lx_access_rec r = rec_of("x", 200, 1, 1, 1);
    r.user = user;
    r.route = "code";
    r.model = NULL;
    lx_history_record(h, T0, 0, &r);
    const lx_history_req *k = lx_history_recent_at(h, 0);
    assert_int_equal(strlen(k->user), 70);
    assert_string_equal(k->route, "code");
    assert_string_equal(k->model, "");
    lx_history_free(h);
}

static void test_render_first_then_deltas(void **state)
{
    (void)state;
    lx_history *h = lx_history_new();
    lx_access_rec ok = rec_of("r1", 200, 3, 4, 100);
    lx_history_record(h, T0 - 5, 1, &ok);
    lx_history_record(h, T0 - 1, 2, &ok);
    lx_history_cursor c = {0};
    cJSON *j = render(h, T0, &c);
    /* the whole window of completed seconds: T0 - 899 .. T0 - 1 */
    assert_int_equal(array_len(j, "series", "requests"), LX_HISTORY_SECONDS - 1);
    assert_int_equal((int64_t)cJSON_GetObjectItem(cJSON_GetObjectItem(j, "series"), "start")->valuedouble,
                     1700000000 - (LX_HISTORY_SECONDS - 1));
    assert_true(array_at(j, "series", "requests", LX_HISTORY_SECONDS - 2) == 1); /* T0 - 1 */
    assert_true(array_at(j, "series", "requests", LX_HISTORY_SECONDS - 6) == 1); /* T0 - 5 */
    assert_true(array_at(j, "series", "completion_tokens", LX_HISTORY_SECONDS - 2) == 4);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "recent")), 2);
    /* percentiles: the completed 10-s slots; the one holding T0 - 5 and T0 - 1 has p50 within a bucket of 100 */
    cJSON *lat = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "percentiles"), "latency_ms");
    cJSON *p50 = cJSON_GetObjectItem(lat, "p50");
    assert_int_equal(cJSON_GetArraySize(p50), LX_HISTORY_SLOTS - 1);
    cJSON *last = cJSON_GetArrayItem(p50, LX_HISTORY_SLOTS - 2);
    assert_true(cJSON_IsNumber(last));
    assert_true(last->valuedouble > 90 && last->valuedouble < 110);
    assert_true(cJSON_IsNull(cJSON_GetArrayItem(p50, 0)));
    cJSON_Delete(j);

    /* nothing new within the same second: empty arrays */
    j = render(h, T0, &c);
    assert_int_equal(array_len(j, "series", "requests"), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "recent")), 0);
    cJSON_Delete(j);

    /* one request in T0, rendered at T0 + 2: seconds T0 and T0 + 1, and that request only */
    lx_access_rec r2 = rec_of("r2", 500, -1, -1, 7);
    lx_history_record(h, T0, 3, &r2);
    j = render(h, T0 + 2, &c);
    assert_int_equal(array_len(j, "series", "requests"), 2);
    assert_int_equal((int64_t)cJSON_GetObjectItem(cJSON_GetObjectItem(j, "series"), "start")->valuedouble, 1700000000);
    assert_true(array_at(j, "series", "errors", 0) == 1);
    cJSON *recent = cJSON_GetObjectItem(j, "recent");
    assert_int_equal(cJSON_GetArraySize(recent), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(recent, 0), "id")->valuestring, "r2");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(recent, 0), "status")->valueint, 500);
    cJSON_Delete(j);

    /* a reader away for longer than the window gets the window, not more */
    j = render(h, T0 + 5000, &c);
    assert_int_equal(array_len(j, "series", "requests"), LX_HISTORY_SECONDS - 1);
    cJSON_Delete(j);
    lx_history_free(h);
}

static uint64_t fake_ns;
static uint64_t fake_clock(void) { return fake_ns; }

static void test_fed_by_the_collector(void **state)
{
    (void)state;
    fake_ns = (uint64_t)T0 * 1000000000u;
    lx_stats *s = lx_stats_new(&(lx_stats_opts){.clock = fake_clock, .started_wall_s = 1700000000});
    lx_access_rec r = rec_of("via_stats", 200, 5, 6, 50);
    fake_ns += 2500000000u; /* 2.5 s after start */
    lx_stats_record(s, &r);
    fake_ns += 1000000000u;
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_buf_append_str(&b, "{");
    lx_history_cursor c = {0};
    lx_stats_render_history(s, &c, &b);
    lx_buf_append_str(&b, "}");
    cJSON *j = cJSON_Parse(b.p);
    assert_non_null(j);
    cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "recent"), 0);
    assert_string_equal(cJSON_GetObjectItem(first, "id")->valuestring, "via_stats");
    assert_int_equal((int64_t)cJSON_GetObjectItem(first, "time")->valuedouble, 1700000002500);
    /* the series ends with second "start + 2" (Unix 1700000002), which holds the request */
    int n = array_len(j, "series", "requests");
    int64_t start = (int64_t)cJSON_GetObjectItem(cJSON_GetObjectItem(j, "series"), "start")->valuedouble;
    assert_int_equal(start + n - 1, 1700000002);
    assert_true(array_at(j, "series", "requests", n - 1) == 1);
    cJSON_Delete(j);
    lx_buf_free(&b);
    lx_stats_free(s);

    /* a NULL collector renders empty series */
    lx_buf_init(&b, 0);
    c = (lx_history_cursor){0};
    lx_stats_render_history(NULL, &c, &b);
    assert_non_null(strstr(b.p, "\"requests\":[]"));
    assert_non_null(strstr(b.p, "\"recent\":[]"));
    lx_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_per_second),         cmocka_unit_test(test_recent_ring),
        cmocka_unit_test(test_fields_cut_at_a_character), cmocka_unit_test(test_render_first_then_deltas),
        cmocka_unit_test(test_fed_by_the_collector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
