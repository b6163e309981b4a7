/*
 * Who is the caller: the user a request is counted against (rate limits, statistics, the ledger), and
 * the comparison of the admin and metrics tokens. What each caller may see is decided in one place on top
 * of these, api/routes.h (lx_access_*).
 *
 * auth.enabled: true  — the user is the one whose key (auth.keys) the request's
 *                       "Authorization: Bearer <key>" carries. A missing, malformed or unknown key is
 *                       LX_AUTH_MISSING / LX_AUTH_INVALID: answer 401 invalid_api_key
 *                       (LX_ERR_INVALID_API_KEY, with the header "WWW-Authenticate: Bearer").
 *                       x_user_id and X-User-Id are ignored: they cannot change who the caller is.
 * auth.enabled: false — the seed's trusted-network mode: x_user_id from the body, else the X-User-Id
 *                       header, else "anonymous". An Authorization header is ignored.
 *
 * Keys: only their SHA-256 is held (config.c hashes a plain `key:` at load and wipes it). A presented
 * key is hashed with libcrypto and compared with every configured digest in constant time
 * (CRYPTO_memcmp, every entry, no early exit), so the time taken says nothing about which digest, or
 * how much of one, matched. A key is never logged, copied or quoted back; the hash of it lives on the
 * stack and is wiped (OPENSSL_cleanse) before returning.
 *
 * Pure functions of the config snapshot; any thread. The user returned points into the snapshot (a
 * key's user) or into the slices given (x_user_id): valid as long as both are.
 */
#ifndef LX_AUTH_H
#define LX_AUTH_H

#include <stdbool.h>

#include "config.h"
#include "utils/common.h"

typedef enum {
    LX_AUTH_OK = 0,
    LX_AUTH_MISSING = -1, /* auth on, no usable "Authorization: Bearer <key>" */
    LX_AUTH_INVALID = -2, /* auth on, a key that is not in auth.keys */
} lx_auth_status;

/* What the request says about its caller. has_*: the field or header is present (it may be empty). */
typedef struct {
    lx_slice authorization; /* the Authorization header's value */
    bool has_authorization;
    lx_slice body_user; /* x_user_id from the body (lx_body_fields.x_user_id) */
    bool has_body_user;
    lx_slice header_user; /* the X-User-Id header */
    bool has_header_user;
} lx_auth_request;

/*
 * The caller's user name into *user (not NUL-terminated; copy it, e.g. into a char[128]).
 * Returns LX_AUTH_OK, or with auth on LX_AUTH_MISSING / LX_AUTH_INVALID (*user is then "").
 */
lx_auth_status lx_auth_identify(const lx_config *c, const lx_auth_request *r, lx_slice *user);

/*
 * The key lookup alone: authorization is an Authorization header value ("Bearer <key>", the scheme
 * in any case, spaces around the key ignored). Returns the configured key's user (NUL-terminated, in
 * the snapshot), or NULL when the header is not a bearer key or the key is unknown. *missing is set
 * when there was no bearer key at all (may be NULL).
 */
const char *lx_auth_lookup(const lx_config *c, lx_slice authorization, bool *missing);

/*
 * The key of an Authorization header value "Bearer <key>" (the scheme in any case, spaces around the key
 * ignored) into *key, pointing into header. False when it is not a bearer key.
 */
bool lx_auth_bearer(lx_slice header, lx_slice *key);

/*
 * given == token (NUL-terminated), in time that depends on neither: both are hashed (SHA-256) and the
 * digests compared with CRYPTO_memcmp. For the admin and metrics tokens. False when token is NULL.
 */
bool lx_auth_token_equal(lx_slice given, const char *token);

/* The message for a 401 (no key, or a wrong one); it never contains the key. */
const char *lx_auth_message(lx_auth_status s);

/*
 * Logs, once per call, a warning for each key given in plain text (`key:` instead of `key_sha256:`),
 * naming its user, never the key. Call at start and after a reload. Loop thread (logging).
 * Returns how many plain keys there are.
 */
size_t lx_auth_warn_plain_keys(const lx_config *c);

/*
 * Logs a warning for what auth.enabled leaves open by the config: no admin.token (then loopback clients
 * are the admin: everyone's /stats, the admin endpoints), or metrics.per_user without metrics.token (then /metrics
 * lists the users to anyone). Call with lx_auth_warn_plain_keys. Returns how many warnings.
 */
size_t lx_auth_warn_open(const lx_config *c);

#endif
