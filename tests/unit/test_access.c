/*
 * Unit tests for the access rules (api/routes.c, lx_access_decide): every need against every kind of
 * caller, with auth on and off and with and without the admin and metrics tokens. The integration test
 * tests/integration/access.test.mjs checks the same rules over HTTP, endpoint by endpoint.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support.h"

#include "api/routes.h"
#include "config.h"

#define KEYS                                                                                                           \
    "auth:\n  keys:\n    - {key: \"sk-alice-0001\", user: alice}\n"                                                    \
    "    - {key: \"sk-bob-00002\", user: bob}\n"

static const char *on_tokens = "default_model: m\n" KEYS "  enabled: true\n"
                               "admin: {token: adm1}\nmetrics: {token: met1}\n";
static const char *on_bare = "default_model: m\n" KEYS "  enabled: true\n";
static const char *off_bare = "default_model: m\n";

/* The callers, as lx_access_who makes them. */
static const lx_access nobody = {0};
static const lx_access alice = {.user = "alice", .key_sent = true};
static const lx_access admin_tok = {.admin = true, .key_sent = true, .sees_details = true};
static const lx_access metrics_tok = {.metrics = true, .key_sent = true};
static const lx_access loopback_admin = {.admin = true, .sees_details = true}; /* no admin token configured */

typedef struct {
    const lx_access *who;
    lx_access_need need;
    const char *query_user;
    lx_access_verdict want;
} row;

static void check(const char *yaml, const row *rows, size_t n)
{
    lx_config *c = lx_test_config(yaml);
    for (size_t i = 0; i < n; i++) {
        lx_access_verdict got = lx_access_decide(c, rows[i].who, rows[i].need, rows[i].query_user);
        if (got != rows[i].want) fail_msg("row %zu: verdict %d, want %d", i, (int)got, (int)rows[i].want);
    }
    lx_config_unref(c);
}

static void test_auth_on_with_tokens(void **state)
{
    (void)state;
    static const row rows[] = {
        {&nobody, LX_ACCESS_OPEN, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_CLIENT, NULL, LX_ACCESS_NO_KEY},
        {&alice, LX_ACCESS_CLIENT, NULL, LX_ACCESS_ALLOW},
        {&admin_tok, LX_ACCESS_CLIENT, NULL, LX_ACCESS_ALLOW},
        {&metrics_tok, LX_ACCESS_CLIENT, NULL, LX_ACCESS_NO_KEY},
        {&nobody, LX_ACCESS_STATS, NULL, LX_ACCESS_NO_TOKEN},
        {&alice, LX_ACCESS_STATS, NULL, LX_ACCESS_NOT_YOURS},
        {&alice, LX_ACCESS_STATS, "alice", LX_ACCESS_ALLOW},
        {&alice, LX_ACCESS_STATS, "bob", LX_ACCESS_NOT_YOURS},
        {&alice, LX_ACCESS_STATS, "alicex", LX_ACCESS_NOT_YOURS},
        {&admin_tok, LX_ACCESS_STATS, NULL, LX_ACCESS_ALLOW},
        {&admin_tok, LX_ACCESS_STATS, "bob", LX_ACCESS_ALLOW},
        {&metrics_tok, LX_ACCESS_STATS, NULL, LX_ACCESS_NO_TOKEN},
        {&nobody, LX_ACCESS_STATS_ALL, NULL, LX_ACCESS_NO_TOKEN},
        {&alice, LX_ACCESS_STATS_ALL, "alice", LX_ACCESS_NOT_YOURS}, /* ?user= does not narrow it */
        {&admin_tok, LX_ACCESS_STATS_ALL, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_ADMIN, NULL, LX_ACCESS_NO_ADMIN},
        {&alice, LX_ACCESS_ADMIN, NULL, LX_ACCESS_NO_ADMIN},
        {&metrics_tok, LX_ACCESS_ADMIN, NULL, LX_ACCESS_NO_ADMIN},
        {&admin_tok, LX_ACCESS_ADMIN, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_METRICS, NULL, LX_ACCESS_NO_METRICS},
        {&alice, LX_ACCESS_METRICS, NULL, LX_ACCESS_NO_METRICS},
        {&metrics_tok, LX_ACCESS_METRICS, NULL, LX_ACCESS_ALLOW},
        {&admin_tok, LX_ACCESS_METRICS, NULL, LX_ACCESS_ALLOW},
    };
    check(on_tokens, rows, LX_ARRAY_LEN(rows));
}

/* auth on, no tokens: loopback is the admin, /metrics is open; a loopback admin does not open /metrics
 * when a metrics token is set (only the admin token does). */
static void test_auth_on_without_tokens(void **state)
{
    (void)state;
    static const row rows[] = {
        {&loopback_admin, LX_ACCESS_CLIENT, NULL, LX_ACCESS_ALLOW},
        {&loopback_admin, LX_ACCESS_STATS, NULL, LX_ACCESS_ALLOW},
        {&loopback_admin, LX_ACCESS_STATS_ALL, NULL, LX_ACCESS_ALLOW},
        {&loopback_admin, LX_ACCESS_ADMIN, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_ADMIN, NULL, LX_ACCESS_NO_ADMIN},
        {&nobody, LX_ACCESS_METRICS, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_STATS, "alice", LX_ACCESS_NO_TOKEN},
    };
    check(on_bare, rows, LX_ARRAY_LEN(rows));
    static const row with_metrics[] = {
        {&loopback_admin, LX_ACCESS_METRICS, NULL, LX_ACCESS_NO_METRICS},
        {&metrics_tok, LX_ACCESS_METRICS, NULL, LX_ACCESS_ALLOW},
    };
    check("default_model: m\nmetrics: {token: met1}\n", with_metrics, LX_ARRAY_LEN(with_metrics));
}

static void test_auth_off(void **state)
{
    (void)state;
    static const row rows[] = {
        {&nobody, LX_ACCESS_CLIENT, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_STATS, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_STATS, "bob", LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_STATS_ALL, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_METRICS, NULL, LX_ACCESS_ALLOW},
        {&nobody, LX_ACCESS_ADMIN, NULL, LX_ACCESS_NO_ADMIN},
        {&loopback_admin, LX_ACCESS_ADMIN, NULL, LX_ACCESS_ALLOW},
    };
    check(off_bare, rows, LX_ARRAY_LEN(rows));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_on_with_tokens),
        cmocka_unit_test(test_auth_on_without_tokens),
        cmocka_unit_test(test_auth_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
