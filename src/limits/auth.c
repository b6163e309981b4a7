/*
 * Who is the caller: bearer keys against auth.keys, or x_user_id / X-User-Id. See auth.h.
 *
 * Invariants:
 * - The presented key is hashed once (SHA-256, libcrypto) and then only its digest is compared, with
 *   CRYPTO_memcmp against every configured digest; the loop never exits early, and the match is
 *   selected without a branch on the secret, so the work done does not depend on which key matched.
 * - Nothing here logs, copies or returns the key; the digest is wiped before returning.
 * - The admin and metrics tokens are compared the same way: both sides hashed, the digests compared with
 *   CRYPTO_memcmp, so the time says nothing about how much of the token a guess got right.
 */
#include "limits/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#include "utils/log.h"

#define MAX_KEY_BYTES 4096 /* a bearer key longer than this is not one of ours (and not hashed) */

static bool is_space(char ch) { return ch == ' ' || ch == '\t'; }

bool lx_auth_bearer(lx_slice h, lx_slice *key)
{
    size_t i = 0, n = h.len;
    while (i < n && is_space(h.p[i]))
        i++;
    if (n - i < 7 || !lx_slice_eq_nocase((lx_slice){h.p + i, 6}, "bearer") || !is_space(h.p[i + 6])) return false;
    i += 7;
    while (i < n && is_space(h.p[i]))
        i++;
    while (n > i && is_space(h.p[n - 1]))
        n--;
    if (i == n) return false;
    *key = (lx_slice){h.p + i, n - i};
    return true;
}

const char *lx_auth_lookup(const lx_config *c, lx_slice authorization, bool *missing)
{
    lx_slice key;
    bool has = authorization.p != NULL && lx_auth_bearer(authorization, &key);
    if (missing) *missing = !has;
    if (!has || c->auth.n_keys == 0 || key.len > MAX_KEY_BYTES) return NULL;

    unsigned char digest[LX_SHA256_LEN];
    unsigned int dlen = 0;
    if (EVP_Digest(key.p, key.len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != LX_SHA256_LEN) {
        OPENSSL_cleanse(digest, sizeof digest);
        return NULL;
    }
    size_t found = 0; /* index + 1 of the matching key; 0 for none */
    for (size_t i = 0; i < c->auth.n_keys; i++) {
        /* all-ones when equal, zero otherwise, without a branch on the comparison */
        size_t eq = (size_t)0 - (size_t)(CRYPTO_memcmp(digest, c->auth.keys[i].key_sha256, LX_SHA256_LEN) == 0);
        found |= eq & (i + 1);
    }
    OPENSSL_cleanse(digest, sizeof digest);
    return found ? c->auth.keys[found - 1].user : NULL;
}

bool lx_auth_token_equal(lx_slice given, const char *token)
{
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int na = 0, nb = 0;
    bool eq = token != NULL && given.len <= MAX_KEY_BYTES &&
              EVP_Digest(given.p, given.len, a, &na, EVP_sha256(), NULL) == 1 &&
              EVP_Digest(token, strlen(token), b, &nb, EVP_sha256(), NULL) == 1 && na == nb &&
              CRYPTO_memcmp(a, b, na) == 0;
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    return eq;
}

lx_auth_status lx_auth_identify(const lx_config *c, const lx_auth_request *r, lx_slice *user)
{
    if (c->auth.enabled) {
        bool missing;
        const char *u = lx_auth_lookup(c, r->has_authorization ? r->authorization : (lx_slice){NULL, 0}, &missing);
        if (u == NULL) {
            *user = LX_SLICE_LIT("");
            return missing ? LX_AUTH_MISSING : LX_AUTH_INVALID;
        }
        *user = lx_slice_of(u);
        return LX_AUTH_OK;
    }
    if (r->has_body_user)
        *user = r->body_user;
    else if (r->has_header_user)
        *user = r->header_user;
    else
        *user = LX_SLICE_LIT("anonymous");
    return LX_AUTH_OK;
}

const char *lx_auth_message(lx_auth_status s)
{
    switch (s) {
    case LX_AUTH_MISSING:
        return "You didn't provide an API key. Send it in an Authorization header using Bearer auth "
               "(Authorization: Bearer YOUR_KEY).";
    case LX_AUTH_INVALID: return "Incorrect API key provided. Use one of the keys this gateway's auth.keys lists.";
    default: return "";
    }
}

size_t lx_auth_warn_plain_keys(const lx_config *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->auth.n_keys; i++) {
        if (!c->auth.keys[i].plain) continue;
        n++;
        LX_WARN(NULL,
                "auth.keys[%zu] (user \"%s\") is given in plain text (key:); store its SHA-256 instead "
                "(key_sha256: printf %%s KEY | sha256sum)",
                i, c->auth.keys[i].user);
    }
    return n;
}

size_t lx_auth_warn_open(const lx_config *c)
{
    size_t n = 0;
    if (!c->auth.enabled) return 0;
    if (c->admin.token == NULL) {
        n++;
        LX_WARN(NULL, "auth.enabled without admin.token: loopback clients are the admin (everyone's /stats, "
                      "/admin/*); set admin.token or admin.token_file");
    }
    if (c->metrics.per_user && c->metrics.token == NULL) {
        n++;
        LX_WARN(NULL, "auth.enabled with metrics.per_user and no metrics.token: /metrics lists every user to "
                      "anyone who reaches it; set metrics.token or metrics.token_file");
    }
    return n;
}
