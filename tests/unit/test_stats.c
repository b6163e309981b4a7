/* Unit tests for observe/stats.c: exact counts, sliding windows on a fake clock, percentiles within a
 * bucket of the truth, bounded maps, and the JSON and Prometheus renderings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "observe/stats.h"
#include "utils/common.h"

static uint64_t fake_ns;
static uint64_t fake_clock(void) { return fake_ns; }
#define SEC 1000000000ull

static lx_stats *new_stats(size_t max_users, size_t max_routes)
{
    fake_ns = 1000 * SEC;
    return lx_stats_new(&(lx_stats_opts){
        .clock = fake_clock, .started_wall_s = 1700000000, .max_users = max_users, .max_routes = max_routes});
}

static lx_access_rec ok_rec(const char *user, const char *model, long pt, long ct, double latency_ms)
{
    return (lx_access_rec){.request_id = "req_1",
                           .user = user,
                           .model = model,
                           .backend = "vllm",
                           .status = 200,
                           .priority = "normal",
                           .latency_ms = latency_ms,
                           .overhead_ms = 0.2,
                           .ttft_ms = 10,
                           .prompt_tokens = pt,
                           .completion_tokens = ct};
}

static cJSON *render_json(lx_stats *s, const char *user)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    assert_int_equal(lx_stats_render_json(s, &b, user, &(lx_stats_render_opts){.connections = 3}), 0);
    cJSON *j = cJSON_Parse(b.p);
    if (j == NULL) fail_msg("not JSON: %s", b.p);
    lx_buf_free(&b);
    return j;
}

static double num(const cJSON *o, const char *path)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *k = strtok_r(tmp, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        cur = cJSON_GetObjectItemCaseSensitive(cur, k);
        if (cur == NULL) fail_msg("no %s (at %s)", path, k);
    }
    if (!cJSON_IsNumber(cur)) fail_msg("%s is not a number", path);
    return cur->valuedouble;
}

/* ---------- exact counts ---------- */

static void test_exact_counts(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    for (int i = 0; i < 3; i++) {
        lx_access_rec r = ok_rec("alice", "qwen3-32b", 10, 5, 100);
        lx_stats_record(s, &r);
    }
    lx_access_rec r = ok_rec("bob", "llama", 7, 20, 400);
    lx_stats_record(s, &r);
    lx_access_rec e = {.user = "bob",
                       .model = "whatever-the-client-said",
                       .status = 404,
                       .error_code = "model_not_found",
                       .latency_ms = 1,
                       .ttft_ms = -1,
                       .prompt_tokens = -1,
                       .completion_tokens = -1};
    lx_stats_record(s, &e);

    lx_stats_summary m;
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.total_requests, 5);
    assert_int_equal(m.prompt_tokens, 37);
    assert_int_equal(m.completion_tokens, 35);
    assert_int_equal(m.total_tokens, 72);
    assert_int_equal(m.total_errors, 1);
    assert_int_equal(m.errors_last_hour, 1);
    assert_int_equal(m.requests_last_60s, 5);
    assert_true(fabs(m.avg_latency_ms - (300 + 400 + 1) / 5.0) < 1e-9);

    lx_stats_summary_get(s, "alice", &m);
    assert_true(m.known);
    assert_int_equal(m.total_requests, 3);
    assert_int_equal(m.total_tokens, 45);
    lx_stats_summary_get(s, "carol", &m);
    assert_false(m.known);
    assert_int_equal(m.total_requests, 0);

    cJSON *j = render_json(s, NULL);
    assert_int_equal(num(j, "total_requests"), 5);
    assert_int_equal(num(j, "total_tokens"), 72);
    assert_int_equal(num(j, "requests_per_minute"), 5);
    assert_int_equal(num(j, "errors_last_hour"), 1);
    assert_int_equal(num(j, "per_user.alice.requests"), 3);
    assert_int_equal(num(j, "per_user.bob.errors"), 1);
    assert_int_equal(num(j, "per_model.qwen3-32b.prompt_tokens"), 30);
    assert_int_equal(num(j, "per_model.llama.completion_tokens"), 20);
    /* an unrouted request never creates an entry named by the client */
    assert_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(j, "per_model"), "whatever-the-client-said"));
    assert_int_equal(num(j, "per_model.-.errors"), 1);
    assert_int_equal(num(j, "per_backend.vllm.requests"), 4);
    assert_int_equal(num(j, "per_backend.vllm.total_tokens"), 72);
    assert_int_equal(num(j, "connections"), 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "ledger")));
    cJSON_Delete(j);

    j = render_json(s, "alice");
    assert_string_equal(cJSON_GetObjectItem(j, "user")->valuestring, "alice");
    assert_int_equal(num(j, "total_requests"), 3);
    assert_int_equal(num(j, "total_tokens"), 45);
    assert_int_equal(num(j, "avg_latency_ms"), 100);
    cJSON_Delete(j);
    lx_stats_free(s);
}

/* A stream that ended with an error event is an error though its status is 200. */
static void test_midstream_error_counts(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    lx_access_rec r = ok_rec("a", "m", 1, 1, 5);
    r.stream = true;
    r.error_code = "upstream_bad_response";
    lx_stats_record(s, &r);
    lx_stats_summary m;
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.total_errors, 1);
    assert_int_equal(m.errors_last_hour, 1);
    lx_stats_free(s);
}

/* ---------- sliding windows ---------- */

static void test_requests_per_minute_window(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    lx_stats_summary m;
    lx_access_rec r = ok_rec("a", "m", 1, 1, 5);
    for (int i = 0; i < 10; i++)
        lx_stats_record(s, &r); /* t = 1000 s */
    fake_ns += 30 * SEC;
    for (int i = 0; i < 5; i++)
        lx_stats_record(s, &r); /* t = 1030 s */
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.requests_last_60s, 15);
    fake_ns += 29 * SEC; /* t = 1059: both seconds are within the last 60 */
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.requests_last_60s, 15);
    fake_ns += 1 * SEC; /* t = 1060: second 1000 has left the window */
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.requests_last_60s, 5);
    fake_ns += 30 * SEC; /* t = 1090 */
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.requests_last_60s, 0);
    fake_ns += 3600 * SEC; /* a long idle stretch clears everything */
    lx_stats_record(s, &r);
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.requests_last_60s, 1);
    assert_int_equal(m.total_requests, 16);
    /* the per-user window moves the same way */
    lx_stats_summary_get(s, "a", &m);
    assert_int_equal(m.requests_last_60s, 1);
    lx_stats_free(s);
}

/* per_user.NAME.tokens_per_minute: prompt + completion tokens of the last 60 s, where usage was reported */
static void test_user_tokens_per_minute_window(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    lx_access_rec r = ok_rec("a", "m", 100, 20, 5), unknown = ok_rec("a", "m", -1, -1, 5);
    lx_stats_record(s, &r); /* t = 1000 s */
    lx_stats_record(s, &unknown);
    fake_ns += 30 * SEC;
    lx_stats_record(s, &r); /* t = 1030 s */
    cJSON *j = render_json(s, NULL);
    assert_int_equal(num(j, "per_user.a.tokens_per_minute"), 240);
    assert_int_equal(num(j, "per_user.a.requests_per_minute"), 3);
    cJSON_Delete(j);
    fake_ns += 30 * SEC; /* t = 1060: second 1000 has left the window */
    j = render_json(s, NULL);
    assert_int_equal(num(j, "per_user.a.tokens_per_minute"), 120);
    cJSON_Delete(j);
    lx_stats_free(s);
}

static void test_errors_last_hour_window(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    fake_ns = 6000 * SEC; /* minute 100 */
    lx_access_rec e = {.user = "u",
                       .model = "m",
                       .backend = "b",
                       .status = 502,
                       .error_code = "upstream_unavailable",
                       .ttft_ms = -1,
                       .prompt_tokens = -1,
                       .completion_tokens = -1};
    lx_stats_record(s, &e);
    lx_stats_record(s, &e);
    fake_ns += 20 * 60 * SEC; /* minute 120 */
    lx_stats_record(s, &e);
    lx_access_rec ok = ok_rec("u", "m", 1, 1, 1);
    lx_stats_record(s, &ok); /* not an error */
    lx_stats_summary m;
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.errors_last_hour, 3);
    fake_ns += 39 * 60 * SEC; /* minute 159: minute 100 is still in the last hour */
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.errors_last_hour, 3);
    fake_ns += 60 * SEC; /* minute 160: minute 100 left */
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.errors_last_hour, 1);
    lx_stats_summary_get(s, "u", &m);
    assert_int_equal(m.errors_last_hour, 1);
    fake_ns += 20 * 60 * SEC; /* minute 180 */
    lx_stats_summary_get(s, NULL, &m);
    assert_int_equal(m.errors_last_hour, 0);
    assert_int_equal(m.total_errors, 3);
    lx_stats_free(s);
}

/* ---------- percentiles ---------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of sorted values, nearest rank. */
static double true_quantile(const double *v, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1) rank = 1;
    return v[rank - 1];
}

static void check_within_bucket(const double *values, size_t n)
{
    lx_lhist h = {0};
    double *sorted = malloc(n * sizeof *sorted);
    for (size_t i = 0; i < n; i++) {
        lx_lhist_add(&h, values[i]);
        sorted[i] = values[i];
    }
    qsort(sorted, n, sizeof *sorted, cmp_double);
    static const double qs[] = {0.5, 0.9, 0.95, 0.99, 1.0};
    for (size_t i = 0; i < LX_ARRAY_LEN(qs); i++) {
        double truth = true_quantile(sorted, n, qs[i]);
        double est = lx_lhist_quantile(&h, qs[i]);
        double lo, hi;
        lx_lhist_bucket_bounds(truth, &lo, &hi);
        if (!(est >= lo && est <= hi))
            fail_msg("q%.2f: estimate %g is outside the bucket [%g, %g) of the truth %g", qs[i], est, lo, hi, truth);
        if (truth >= LX_LHIST_MIN) assert_true(fabs(est - truth) / truth <= 0.0906); /* 2^(1/8) - 1 */
    }
    free(sorted);
}

static void test_percentiles_within_a_bucket(void **state)
{
    (void)state;
    enum { N = 10000 };
    static double v[N];
    /* uniform 1..1000 ms */
    for (int i = 0; i < N; i++)
        v[i] = 1 + (double)i * 999.0 / (N - 1);
    check_within_bucket(v, N);
    /* long-tailed (LLM latencies): mostly 200 ms, a tail to minutes; deterministic pseudo-random */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0;
        v[i] = 200.0 * exp(3.0 * u * u * u);
    }
    check_within_bucket(v, N);
    /* a constant is exact (clamped to min and max) */
    for (int i = 0; i < N; i++)
        v[i] = 245;
    lx_lhist h = {0};
    for (int i = 0; i < N; i++)
        lx_lhist_add(&h, v[i]);
    assert_true(lx_lhist_quantile(&h, 0.5) == 245 && lx_lhist_quantile(&h, 0.99) == 245);
    /* empty */
    lx_lhist e = {0};
    assert_true(lx_lhist_quantile(&e, 0.5) < 0);
    /* values below the first edge, and huge ones */
    lx_lhist t = {0};
    lx_lhist_add(&t, 0.001);
    lx_lhist_add(&t, 1e9);
    double lo, hi;
    lx_lhist_bucket_bounds(0.001, &lo, &hi);
    assert_true(lx_lhist_quantile(&t, 0.5) >= 0.001 && lx_lhist_quantile(&t, 0.5) < hi);
    assert_true(lx_lhist_quantile(&t, 1.0) == 1e9);
}

/* /stats percentiles come from those histograms */
static void test_stats_percentiles(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    for (int i = 1; i <= 100; i++) {
        lx_access_rec r = ok_rec("u", "m", 1, 1, (double)i * 10); /* 10, 20, ... 1000 ms */
        lx_stats_record(s, &r);
    }
    cJSON *j = render_json(s, NULL);
    double p50 = num(j, "latency_ms.p50"), p99 = num(j, "latency_ms.p99");
    double lo, hi;
    lx_lhist_bucket_bounds(500, &lo, &hi);
    assert_true(p50 >= lo - 0.001 && p50 <= hi + 0.001); /* the JSON has 3 decimals */
    lx_lhist_bucket_bounds(990, &lo, &hi);
    assert_true(p99 >= lo - 0.001 && p99 <= hi + 0.001);
    assert_int_equal(num(j, "latency_ms.count"), 100);
    /* time to first token is for streams only: none here */
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ttft_ms"), "p50")));
    cJSON_Delete(j);
    lx_stats_free(s);
}

static void test_stream_tokens_per_second(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    /* 101 tokens, first at 100 ms, last at 1100 ms: 100 tokens in 1 s after the first */
    lx_access_rec r = ok_rec("u", "m", 5, 101, 1100);
    r.stream = true;
    r.ttft_ms = 100;
    lx_stats_record(s, &r);
    cJSON *j = render_json(s, NULL);
    double tps = num(j, "stream_tokens_per_second.p50");
    assert_true(fabs(tps - 100) < 1e-6);
    assert_true(fabs(num(j, "ttft_ms.p50") - 100) < 1e-6);
    cJSON_Delete(j);
    lx_stats_free(s);
}

/* ---------- bounded maps ---------- */

static void test_user_cap_and_other(void **state)
{
    (void)state;
    lx_stats *s = new_stats(3, 2);
    const char *users[] = {"u1", "u2", "u3", "u4", "u5", "u1"};
    const char *models[] = {"m1", "m2", "m3", "m4", "m1", "m1"};
    for (size_t i = 0; i < LX_ARRAY_LEN(users); i++) {
        lx_access_rec r = ok_rec(users[i], models[i], 1, 1, 1);
        lx_stats_record(s, &r);
    }
    cJSON *j = render_json(s, NULL);
    const cJSON *pu = cJSON_GetObjectItem(j, "per_user");
    assert_int_equal(cJSON_GetArraySize(pu), 4); /* u1 u2 u3 and (other) */
    assert_int_equal(num(j, "per_user.u1.requests"), 2);
    assert_int_equal(num(j, "per_user.(other).requests"), 2);
    const cJSON *pm = cJSON_GetObjectItem(j, "per_model");
    assert_int_equal(cJSON_GetArraySize(pm), 3); /* m1 m2 and (other) */
    assert_int_equal(num(j, "per_model.m1.requests"), 3);
    assert_int_equal(num(j, "per_model.(other).requests"), 2);
    assert_int_equal(num(j, "total_requests"), 6);
    cJSON_Delete(j);
    lx_stats_free(s);
}

/* max_users (GET /stats/stream): the busiest of the last 60 s first, the rest counted as omitted. */
static void test_max_users(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    const char *users[] = {"quiet", "busy", "busy", "busy", "mid", "mid", "old"};
    lx_access_rec r = ok_rec("old", "m", 1, 1, 1);
    for (int i = 0; i < 5; i++)
        lx_stats_record(s, &r); /* "old" was the busiest, but more than a minute ago */
    fake_ns += 120 * SEC;
    for (size_t i = 0; i < LX_ARRAY_LEN(users); i++) {
        r = ok_rec(users[i], "m", 1, 1, 1);
        lx_stats_record(s, &r);
    }
    lx_buf b;
    lx_buf_init(&b, 0);
    assert_int_equal(lx_stats_render_json(s, &b, NULL, &(lx_stats_render_opts){.max_users = 2}), 0);
    cJSON *j = cJSON_Parse(b.p);
    const cJSON *pu = cJSON_GetObjectItem(j, "per_user");
    assert_int_equal(cJSON_GetArraySize(pu), 2);
    assert_string_equal(pu->child->string, "busy");
    assert_string_equal(pu->child->next->string, "mid");
    assert_int_equal(num(j, "per_user_omitted"), 2);
    cJSON_Delete(j);
    lx_buf_free(&b);
    j = render_json(s, NULL); /* GET /stats: everyone, no per_user_omitted */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "per_user")), 4);
    assert_null(cJSON_GetObjectItem(j, "per_user_omitted"));
    cJSON_Delete(j);
    lx_stats_free(s);
}

/* ---------- the other services' counters ---------- */

static void probe_q(void *ud, lx_stats_queue_view *v)
{
    (void)ud;
    v->depth[LX_STATS_PRIO_HIGH] = 2;
    v->depth[LX_STATS_PRIO_LOW] = 7;
    v->timeouts[LX_STATS_PRIO_NORMAL] = 4;
    v->rejected[LX_STATS_PRIO_LOW] = 9;
}

static bool probe_b(void *ud, const char *name, bool *up, long *in_flight)
{
    (void)ud;
    if (strcmp(name, "b2") != 0) return false;
    *up = false;
    *in_flight = 3;
    return true;
}

static void test_service_counters(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    lx_stats_add_backend(s, "vllm", true);
    lx_stats_add_backend(s, "b2", true);
    lx_stats_add_backend(s, "off", false);
    lx_stats_ratelimit_refused(s, LX_STATS_RL_REQUESTS, "alice");
    lx_stats_ratelimit_refused(s, LX_STATS_RL_TOKENS, "alice");
    lx_stats_ratelimit_refused(s, LX_STATS_RL_TOKENS, NULL);
    lx_stats_retry(s, "vllm");
    lx_stats_retry(s, "vllm");
    lx_stats_failover(s, "vllm", "b2");
    lx_stats_set_queue_probe(s, probe_q, NULL);
    lx_stats_set_backend_probe(s, probe_b, NULL);
    cJSON *j = render_json(s, NULL);
    assert_int_equal(num(j, "rate_limited.requests"), 1);
    assert_int_equal(num(j, "rate_limited.tokens"), 2);
    assert_int_equal(num(j, "rate_limited.total"), 3);
    assert_int_equal(num(j, "per_user.alice.rate_limited"), 2);
    assert_int_equal(num(j, "retries"), 2);
    assert_int_equal(num(j, "failovers"), 1);
    assert_int_equal(num(j, "per_backend.vllm.retries"), 2);
    assert_int_equal(num(j, "per_backend.vllm.failovers"), 1);
    assert_true(
        cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "per_backend"), "vllm"), "up")));
    assert_true(
        cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "per_backend"), "off"), "up")));
    assert_true(
        cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "per_backend"), "b2"), "up")));
    assert_int_equal(num(j, "per_backend.b2.in_flight"), 3);
    assert_int_equal(num(j, "queue.depth.high"), 2);
    assert_int_equal(num(j, "queue.depth.low"), 7);
    assert_int_equal(num(j, "queue.timeouts.normal"), 4);
    assert_int_equal(num(j, "queue.rejected.low"), 9);
    cJSON_Delete(j);

    lx_buf b;
    lx_buf_init(&b, 0);
    lx_stats_render_prometheus(s, &b, &(lx_stats_render_opts){.connections = -1});
    assert_non_null(strstr(b.p, "lexora_queue_depth{priority=\"low\"} 7\n"));
    assert_non_null(strstr(b.p, "lexora_queue_timeouts_total{priority=\"normal\"} 4\n"));
    assert_non_null(strstr(b.p, "lexora_rate_limited_total{kind=\"tokens\"} 2\n"));
    assert_non_null(strstr(b.p, "lexora_retries_total{backend=\"vllm\"} 2\n"));
    assert_non_null(strstr(b.p, "lexora_failovers_total{backend=\"vllm\"} 1\n"));
    assert_non_null(strstr(b.p, "lexora_backend_up{backend=\"b2\"} 0\n"));
    assert_non_null(strstr(b.p, "lexora_backend_up{backend=\"off\"} 0\n"));
    assert_non_null(strstr(b.p, "lexora_backend_in_flight{backend=\"b2\"} 3\n"));
    assert_null(strstr(b.p, "lexora_backend_in_flight{backend=\"vllm\"}")); /* unknown to the probe */
    lx_buf_free(&b);
    lx_stats_free(s);
}

/* ---------- the exposition format ---------- */

/* Checks the text the way a scraper reads it: every sample's family has HELP and TYPE before it, names
 * and label syntax are valid, histogram buckets are cumulative and end in +Inf == _count. */
static void check_exposition(const char *text)
{
    char fam_help[128] = "", fam_type[128] = "", type[16] = "";
    uint64_t last_bucket = 0;
    bool in_buckets = false;
    const char *p = text;
    assert_true(text[strlen(text) - 1] == '\n');
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char line[1024];
        size_t n = (size_t)(nl - p);
        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            sscanf(line + 7, "%127s", fam_help);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            sscanf(line + 7, "%127s %15s", fam_type, type);
            assert_string_equal(fam_type, fam_help);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 || strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0) assert_non_null(strstr(fam_type, "_total"));
            continue;
        }
        assert_true(line[0] != '#');
        /* name */
        size_t k = 0;
        while (line[k] && line[k] != '{' && line[k] != ' ') {
            char c = line[k];
            assert_true((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                        (k > 0 && c >= '0' && c <= '9'));
            k++;
        }
        char name[128];
        memcpy(name, line, k);
        name[k] = '\0';
        assert_int_equal(strncmp(name, fam_type, strlen(fam_type)), 0);
        const char *suffix = name + strlen(fam_type);
        if (strcmp(type, "histogram") == 0)
            assert_true(strcmp(suffix, "_bucket") == 0 || strcmp(suffix, "_sum") == 0 || strcmp(suffix, "_count") == 0);
        else
            assert_string_equal(suffix, "");
        /* labels: name="value" pairs, escapes only \\ \" \n */
        if (line[k] == '{') {
            k++;
            while (line[k] != '}') {
                while (line[k] != '=')
                    assert_true(line[k++] != '\0');
                assert_true(line[++k] == '"');
                k++;
                while (line[k] != '"') {
                    assert_true(line[k] != '\0');
                    if (line[k] == '\\') {
                        assert_true(line[k + 1] == '\\' || line[k + 1] == '"' || line[k + 1] == 'n');
                        k++;
                    }
                    k++;
                }
                k++;
                if (line[k] == ',') k++;
            }
            k++;
        }
        assert_true(line[k] == ' ');
        char *end;
        double v = strtod(line + k + 1, &end);
        assert_true(*end == '\0' && isfinite(v) && v >= 0);
        if (strcmp(suffix, "_bucket") == 0) {
            uint64_t c = (uint64_t)v;
            if (in_buckets) assert_true(c >= last_bucket);
            last_bucket = c;
            in_buckets = strstr(line, "le=\"+Inf\"") == NULL;
        } else if (strcmp(suffix, "_count") == 0) {
            assert_int_equal((uint64_t)v, last_bucket); /* +Inf bucket == count */
        }
    }
}

static void test_prometheus_format(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    lx_access_rec r = ok_rec("we\"ird\\us\ner", "qwen3-32b", 12, 30, 2500);
    r.stream = true;
    r.ttft_ms = 300;
    lx_stats_record(s, &r);
    r = ok_rec("alice", "qwen3-32b", 10, 5, 50);
    lx_stats_record(s, &r);
    lx_access_rec e = {.user = "bad\xff utf8",
                       .model = "qwen3-32b",
                       .backend = "vllm",
                       .status = 504,
                       .error_code = "upstream_timeout",
                       .latency_ms = 120000,
                       .ttft_ms = -1,
                       .prompt_tokens = -1,
                       .completion_tokens = -1,
                       .priority = "high",
                       .queue_wait_ms = 1500};
    lx_stats_record(s, &e);

    lx_buf b;
    lx_buf_init(&b, 0);
    assert_int_equal(lx_stats_render_prometheus(s, &b, &(lx_stats_render_opts){.connections = 2, .per_user = true}), 0);
    check_exposition(b.p);
    assert_non_null(strstr(b.p, "lexora_requests_total{model=\"qwen3-32b\",backend=\"vllm\",status=\"200\"} 2\n"));
    assert_non_null(strstr(b.p, "lexora_requests_total{model=\"qwen3-32b\",backend=\"vllm\",status=\"504\"} 1\n"));
    assert_non_null(
        strstr(b.p, "lexora_request_errors_total{model=\"qwen3-32b\",backend=\"vllm\",code=\"upstream_timeout\"} 1\n"));
    assert_non_null(strstr(b.p, "lexora_prompt_tokens_total{model=\"qwen3-32b\",backend=\"vllm\"} 22\n"));
    assert_non_null(strstr(b.p, "lexora_completion_tokens_total{model=\"qwen3-32b\",backend=\"vllm\"} 35\n"));
    /* 2.5 s falls in le=2.5; 50 ms in le=0.05; 120 s in le=120 */
    assert_non_null(
        strstr(b.p, "lexora_request_duration_seconds_bucket{model=\"qwen3-32b\",backend=\"vllm\",le=\"0.05\"} 1\n"));
    assert_non_null(
        strstr(b.p, "lexora_request_duration_seconds_bucket{model=\"qwen3-32b\",backend=\"vllm\",le=\"2.5\"} 2\n"));
    assert_non_null(
        strstr(b.p, "lexora_request_duration_seconds_bucket{model=\"qwen3-32b\",backend=\"vllm\",le=\"60\"} 2\n"));
    assert_non_null(
        strstr(b.p, "lexora_request_duration_seconds_bucket{model=\"qwen3-32b\",backend=\"vllm\",le=\"120\"} 3\n"));
    assert_non_null(strstr(b.p, "lexora_request_duration_seconds_count{model=\"qwen3-32b\",backend=\"vllm\"} 3\n"));
    assert_non_null(strstr(b.p, "lexora_time_to_first_token_seconds_count{model=\"qwen3-32b\",backend=\"vllm\"} 1\n"));
    assert_non_null(strstr(b.p, "lexora_queue_wait_seconds_bucket{priority=\"high\",le=\"2.5\"} 1\n"));
    assert_non_null(strstr(b.p, "lexora_http_connections 2\n"));
    assert_non_null(strstr(b.p, "lexora_build_info{version=\"" LX_VERSION "\"} 1\n"));
    assert_non_null(strstr(b.p, "lexora_user_requests_total{user=\"we\\\"ird\\\\us\\ner\"} 1\n"));
    assert_non_null(strstr(b.p, "lexora_user_requests_total{user=\"bad\xef\xbf\xbd utf8\"} 1\n"));
    lx_buf_free(&b);

    /* per_user off: no per-user series at all */
    lx_buf_init(&b, 0);
    lx_stats_render_prometheus(s, &b, &(lx_stats_render_opts){.connections = -1});
    check_exposition(b.p);
    assert_null(strstr(b.p, "user="));
    assert_null(strstr(b.p, "lexora_http_connections"));
    lx_buf_free(&b);

    /* the JSON stays valid with the same names */
    cJSON *j = render_json(s, NULL);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "per_user"), "we\"ird\\us\ner"));
    cJSON_Delete(j);
    lx_stats_free(s);
}

/* Every public function takes a NULL collector: events are dropped, reads are empty, renderings are empty. */
static void test_null_is_noop(void **state)
{
    (void)state;
    lx_access_rec r = ok_rec("u", "m", 1, 1, 1);
    lx_stats_record(NULL, &r);
    lx_stats_retry(NULL, "x");
    lx_stats_failover(NULL, "x", "y");
    lx_stats_ratelimit_refused(NULL, LX_STATS_RL_TOKENS, "u");
    lx_stats_add_backend(NULL, "x", true);
    lx_stats_set_queue_probe(NULL, probe_q, NULL);
    lx_stats_set_backend_probe(NULL, probe_b, NULL);
    lx_stats_set_ratelimit_probe(NULL, NULL, NULL);
    lx_stats_set_ledger(NULL, NULL);

    lx_stats_summary m;
    memset(&m, 0xa5, sizeof m);
    lx_stats_summary_get(NULL, NULL, &m);
    assert_false(m.known);
    assert_int_equal(m.total_requests, 0);
    assert_int_equal(m.total_tokens, 0);
    assert_int_equal(m.total_errors, 0);
    assert_int_equal(m.requests_last_60s, 0);
    assert_int_equal(m.errors_last_hour, 0);
    assert_int_equal(m.rate_limited, 0);
    assert_true(m.avg_latency_ms == 0);
    memset(&m, 0xa5, sizeof m);
    lx_stats_summary_get(NULL, "u", &m);
    assert_false(m.known);
    assert_int_equal(m.total_requests, 0);

    lx_buf b;
    lx_buf_init(&b, 0);
    assert_int_equal(lx_stats_render_json(NULL, &b, NULL, &(lx_stats_render_opts){.connections = 1}), 0);
    assert_int_equal(lx_stats_render_json(NULL, &b, "u", NULL), 0);
    assert_int_equal(lx_stats_render_prometheus(NULL, &b, &(lx_stats_render_opts){.per_user = true}), 0);
    assert_int_equal(b.len, 0);
    lx_buf_free(&b);
    lx_stats_free(NULL);
}

/* A route keeps at most 64 distinct error codes; the last place is "other", which takes the rest. */
static void test_error_codes_bounded(void **state)
{
    (void)state;
    lx_stats *s = new_stats(0, 0);
    for (int i = 0; i < 100; i++) {
        char code[32];
        snprintf(code, sizeof code, "code_%d", i);
        lx_access_rec e = {.user = "u",
                           .model = "m",
                           .backend = "b",
                           .status = 500,
                           .error_code = code,
                           .ttft_ms = -1,
                           .prompt_tokens = -1,
                           .completion_tokens = -1};
        lx_stats_record(s, &e);
    }
    lx_buf b;
    lx_buf_init(&b, 0);
    assert_int_equal(lx_stats_render_prometheus(s, &b, NULL), 0);
    check_exposition(b.p);
    assert_non_null(strstr(b.p, "lexora_request_errors_total{model=\"m\",backend=\"b\",code=\"code_62\"} 1\n"));
    assert_null(strstr(b.p, "code=\"code_63\""));
    assert_non_null(strstr(b.p, "lexora_request_errors_total{model=\"m\",backend=\"b\",code=\"other\"} 37\n"));
    size_t series = 0;
    for (const char *p = b.p; (p = strstr(p, "\nlexora_request_errors_total{")); p++)
        series++;
    assert_int_equal(series, 64);
    lx_buf_free(&b);
    lx_stats_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_counts),
        cmocka_unit_test(test_midstream_error_counts),
        cmocka_unit_test(test_requests_per_minute_window),
        cmocka_unit_test(test_user_tokens_per_minute_window),
        cmocka_unit_test(test_errors_last_hour_window),
        cmocka_unit_test(test_percentiles_within_a_bucket),
        cmocka_unit_test(test_stats_percentiles),
        cmocka_unit_test(test_stream_tokens_per_second),
        cmocka_unit_test(test_user_cap_and_other),
        cmocka_unit_test(test_max_users),
        cmocka_unit_test(test_service_counters),
        cmocka_unit_test(test_prometheus_format),
        cmocka_unit_test(test_null_is_noop),
        cmocka_unit_test(test_error_codes_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
