/*
 * Unit tests for limits/auth.c: bearer keys against auth.keys (hashed and plain), the header's
 * forms, x_user_id ignored with auth on, and the trusted-network rule with auth off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "support.h"
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "limits/auth.h"
#include "utils/buf.h"
#include "utils/log.h"

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static lx_config *config(bool enabled)
{
    char h1[65], h2[65], yaml[1024];
    sha256_hex("sk-alice-0123456789", h1);
    sha256_hex("sk-bob-abcdef", h2);
    snprintf(yaml, sizeof yaml,
             "default_model: m\n"
             "auth:\n"
             "  enabled: %s\n"
             "  keys:\n"
             "    - key_sha256: \"%s\"\n"
             "      user: alice\n"
             "    - key_sha256: \"%s\"\n"
             "      user: bob\n"
             "    - key: \"sk-carol-plain\"\n"
             "      user: carol\n",
             enabled ? "true" : "false", h1, h2);
    return lx_test_config(yaml);
}

static lx_auth_status identify(const lx_config *c, const char *authz, const char *body_user, const char *header_user,
                               char *user, size_t cap)
{
    lx_auth_request r = {
        .authorization = lx_slice_of(authz),
        .has_authorization = authz != NULL,
        .body_user = lx_slice_of(body_user),
        .has_body_user = body_user != NULL,
        .header_user = lx_slice_of(header_user),
        .has_header_user = header_user != NULL,
    };
    lx_slice u = {NULL, 0};
    lx_auth_status s = lx_auth_identify(c, &r, &u);
    assert_true(u.len < cap);
    memcpy(user, u.p, u.len);
    user[u.len] = '\0';
    return s;
}

static void test_keys(void **state)
{
    (void)state;
    lx_config *c = config(true);
    char user[64];
    assert_int_equal(identify(c, "Bearer sk-alice-0123456789", NULL, NULL, user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "alice");
    assert_int_equal(identify(c, "Bearer sk-bob-abcdef", NULL, NULL, user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "bob");
    assert_int_equal(identify(c, "Bearer sk-carol-plain", NULL, NULL, user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "carol");
    /* the scheme in any case, spaces around the key */
    assert_int_equal(identify(c, "  bearer \t sk-bob-abcdef  ", NULL, NULL, user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "bob");
    assert_int_equal(identify(c, "BEARER sk-bob-abcdef", NULL, NULL, user, sizeof user), LX_AUTH_OK);
    lx_config_unref(c);
}

static void test_refusals(void **state)
{
    (void)state;
    lx_config *c = config(true);
    char user[64];
    /* unknown keys, near misses included */
    const char *invalid[] = {"Bearer sk-alice-012345678", "Bearer sk-alice-01234567890", "Bearer SK-BOB-ABCDEF",
                             "Bearer x"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        assert_int_equal(identify(c, invalid[i], NULL, NULL, user, sizeof user), LX_AUTH_INVALID);
        assert_string_equal(user, "");
    }
    char huge[5000] = "Bearer ";
    memset(huge + 7, 'k', sizeof huge - 8);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(identify(c, huge, NULL, NULL, user, sizeof user), LX_AUTH_INVALID); /* not even hashed */
    /* no bearer key at all */
    const char *missing[] = {NULL, "", "Bearer", "Bearer ", "Bearersk-bob-abcdef", "Basic c2stYm9i", "sk-bob-abcdef"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++)
        assert_int_equal(identify(c, missing[i], NULL, NULL, user, sizeof user), LX_AUTH_MISSING);
    /* the messages never carry a key */
    assert_null(strstr(lx_auth_message(LX_AUTH_INVALID), "sk-"));
    assert_non_null(strstr(lx_auth_message(LX_AUTH_MISSING), "Authorization"));
    lx_config_unref(c);
}

static void test_user_cannot_be_changed(void **state)
{
    (void)state;
    lx_config *c = config(true);
    char user[64];
    assert_int_equal(identify(c, "Bearer sk-bob-abcdef", "alice", "alice", user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "bob");
    /* and a user name alone is no key */
    assert_int_equal(identify(c, NULL, "alice", "alice", user, sizeof user), LX_AUTH_MISSING);
    lx_config_unref(c);
}

static void test_auth_off(void **state)
{
    (void)state;
    lx_config *c = config(false);
    char user[64];
    assert_int_equal(identify(c, NULL, "takahito", "other", user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "takahito");
    assert_int_equal(identify(c, NULL, NULL, "from-header", user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "from-header");
    assert_int_equal(identify(c, NULL, NULL, NULL, user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "anonymous");
    /* a key is not needed, and not used: the seed's trusted network */
    assert_int_equal(identify(c, "Bearer nonsense", NULL, NULL, user, sizeof user), LX_AUTH_OK);
    assert_string_equal(user, "anonymous");
    lx_config_unref(c);
}

static void test_lookup_and_plain_warning(void **state)
{
    (void)state;
    lx_config *c = config(true);
    bool missing = true;
    assert_string_equal(lx_auth_lookup(c, LX_SLICE_LIT("Bearer sk-alice-0123456789"), &missing), "alice");
    assert_false(missing);
    assert_null(lx_auth_lookup(c, LX_SLICE_LIT("Bearer nope"), &missing));
    assert_false(missing);
    assert_null(lx_auth_lookup(c, LX_SLICE_LIT("Token x"), &missing));
    assert_true(missing);
    lx_log_configure(LX_LOG_ERROR, false); /* keep the warning out of the test output */
    assert_int_equal(lx_auth_warn_plain_keys(c), 1);
    lx_config_unref(c);
}

/* The admin and metrics tokens: bearer parsing and the constant-time equality. */
static void test_tokens(void **state)
{
    (void)state;
    lx_slice k;
    assert_true(lx_auth_bearer(lx_slice_of("Bearer  tok "), &k));
    assert_true(lx_slice_eq(k, "tok"));
    assert_true(lx_auth_bearer(lx_slice_of("bearer tok"), &k));
    assert_false(lx_auth_bearer(lx_slice_of("Basic dG9r"), &k));
    assert_false(lx_auth_bearer(lx_slice_of("Bearer "), &k));
    assert_false(lx_auth_bearer(lx_slice_of("tok"), &k));
    assert_true(lx_auth_token_equal(lx_slice_of("s3cret"), "s3cret"));
    assert_false(lx_auth_token_equal(lx_slice_of("s3cre"), "s3cret"));
    assert_false(lx_auth_token_equal(lx_slice_of("s3cretX"), "s3cret"));
    assert_false(lx_auth_token_equal(lx_slice_of("S3cret"), "s3cret"));
    assert_false(lx_auth_token_equal(lx_slice_of(""), "s3cret"));
    assert_false(lx_auth_token_equal(lx_slice_of("s3cret"), NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_user_cannot_be_changed),
        cmocka_unit_test(test_auth_off),
        cmocka_unit_test(test_lookup_and_plain_warning),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
