/*
 * Fuzz target: what a backend's error answer goes through — lx_err_normalize_upstream (api/errors.c),
 * which turns its body (any bytes a backend or a proxy in front of it sends) into the OpenAI error
 * envelope the client gets, and lx_retry_after_s (queue/retry.c), which reads its Retry-After header.
 *
 * Input: 2 bytes of HTTP status, 1 byte choosing the output cap, the rest is the upstream body (and, cut
 * at 63 bytes, the Retry-After value).
 * Checks: the return is 1, 0 or -1; 0 and -1 leave out untouched; 1 writes exactly one JSON object
 * (as the strict request scanner reads it) whose "error" member is an object with a string "message".
 * Retry-After is -1 (unreadable) or a number >= 0 that is not NaN.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "api/body.h"
#include "api/errors.h"
#include "queue/retry.h"
#include "fuzz.h"

static const size_t caps[] = {0, 1, 32, 128, 4096};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    int status = (data[0] << 8 | data[1]) % 1000;
    size_t cap = caps[data[2] % (sizeof caps / sizeof caps[0])];
    const char *body = (const char *)data + 3;
    size_t len = size - 3;

    lx_buf out;
    lx_buf_init(&out, cap);
    lx_buf_append_str(&out, "x"); /* something already there: the envelope is appended after it */
    size_t before = out.len;
    int rc = lx_err_normalize_upstream(body, len, status, &out);
    LX_FUZZ_CHECK(rc == 1 || rc == 0 || rc == -1);
    if (rc != 1) {
        LX_FUZZ_CHECK(out.len == before);
    } else {
        const char *env = out.p + before;
        size_t env_len = out.len - before;
        lx_body_fields f;
        lx_body_error e;
        LX_FUZZ_CHECK(lx_body_scan(env, env_len, &f, &e) == 0);
        lx_slice err;
        LX_FUZZ_CHECK(lx_json_find_member(env, env_len, "error", &err) && err.p[0] == '{');
        lx_slice msg;
        LX_FUZZ_CHECK(lx_json_find_member(err.p, err.len, "message", &msg) && msg.p[0] == '"');
        cJSON *root = cJSON_ParseWithLength(env, env_len);
        LX_FUZZ_CHECK(cJSON_IsString(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "error"), "message")));
        cJSON_Delete(root);
    }
    lx_buf_free(&out);

    double ra = lx_retry_after_s((lx_slice){body, len < 63 ? len : 63}, 1445412480);
    LX_FUZZ_CHECK(ra == -1 || ra >= 0);
    return 0;
}
