/*
 * Fuzz target: the anthropic backend kind (backends/anthropic.c), both of its parsers of outside bytes.
 *
 * Input: 1 byte choosing the part (even: the request translator, odd: the stream translator) and seeding
 * where a stream is cut, the rest is a client's body or an upstream stream.
 * Checks:
 *  - request: a body the gateway accepts (lx_body_scan) is either translated into a Messages body that
 *    is a JSON object with model, max_tokens >= 1 and a non-empty messages list of user / assistant turns
 *    (path /v1/messages, three header lines), or refused with a 400 (invalid_value or invalid_json) and a
 *    message; an error's param, when set, is a short field name;
 *  - stream: fed whole and fed cut at input-derived points, it gives the same result and the same bytes
 *    (the "created" seconds aside); every output is a run of "data: <JSON object or [DONE]>\n\n" events.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "backends/kind.h"
#include "fuzz.h"

static lx_config *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static const char yaml[] = "backends:\n  c: {type: anthropic, url: 'https://127.0.0.1:9', models: [m], "
                               "api_key: sk-fuzz}\n";
    lx_buf errs;
    lx_buf_init(&errs, 0);
    cfg = lx_config_parse("fuzz.yaml", yaml, sizeof yaml - 1, &errs);
    lx_buf_free(&errs);
    LX_FUZZ_CHECK(cfg != NULL);
    return 0;
}

static const lx_kind *kind(void) { return lx_kind_get(LX_BACKEND_ANTHROPIC); }

static void check_turns(const cJSON *messages)
{
    LX_FUZZ_CHECK(cJSON_IsArray(messages) && cJSON_GetArraySize(messages) > 0);
    const cJSON *m;
    cJSON_ArrayForEach(m, messages)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        LX_FUZZ_CHECK(cJSON_IsString(role));
        LX_FUZZ_CHECK(strcmp(role->valuestring, "user") == 0 || strcmp(role->valuestring, "assistant") == 0);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        LX_FUZZ_CHECK(cJSON_IsArray(content) && cJSON_GetArraySize(content) > 0);
        if (m != messages->child) { /* merged: no two turns of one role in a row */
            const cJSON *prev = cJSON_GetObjectItemCaseSensitive(m->prev, "role");
            LX_FUZZ_CHECK(strcmp(prev->valuestring, role->valuestring) != 0);
        }
    }
}

static void fuzz_request(const char *body, size_t n)
{
    lx_body_fields f;
    lx_body_error berr;
    if (lx_body_scan(body, n, &f, &berr) != 0) return;
    lx_kind_ctx ctx = {.ep = LX_EP_CHAT, .backend = &cfg->backends[0], .body = {body, n}, .fields = &f};
    lx_kind_request r = {0};
    lx_kind_error err = {.err = LX_ERR_INTERNAL};
    if (kind()->request(&ctx, &r, &err) == 0) {
        LX_FUZZ_CHECK(strcmp(r.path, "/v1/messages") == 0 && r.n_headers == 3);
        cJSON *out = cJSON_ParseWithLength(r.body.p, r.body.len);
        LX_FUZZ_CHECK(cJSON_IsObject(out));
        LX_FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(out, "model")));
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(out, "max_tokens");
        LX_FUZZ_CHECK(cJSON_IsNumber(mt) && mt->valuedouble >= 1);
        check_turns(cJSON_GetObjectItemCaseSensitive(out, "messages"));
        cJSON_Delete(out);
    } else {
        LX_FUZZ_CHECK(err.err == LX_ERR_INVALID_FIELD || err.err == LX_ERR_INVALID_JSON);
        LX_FUZZ_CHECK(err.err == LX_ERR_INVALID_JSON || err.message[0] != '\0');
        LX_FUZZ_CHECK(err.param == NULL || (err.param[0] && strlen(err.param) < 64));
        LX_FUZZ_CHECK(r.body.p == NULL);
    }
    lx_kind_request_reset(&r);
}

static void collect(void *ud, const char *data, size_t len) { LX_FUZZ_CHECK(lx_buf_append(ud, data, len) == 0); }

/* Each event of out is "data: " and a JSON object or [DONE], then a blank line. */
static void check_events(const lx_buf *out)
{
    const char *p = out->p ? out->p : "", *end = p + out->len;
    while (p < end) {
        const char *stop = strstr(p, "\n\n");
        LX_FUZZ_CHECK(stop != NULL && strncmp(p, "data: ", 6) == 0);
        const char *d = p + 6;
        size_t n = (size_t)(stop - d);
        if (!(n == 6 && memcmp(d, "[DONE]", 6) == 0)) {
            cJSON *j = cJSON_ParseWithLength(d, n);
            LX_FUZZ_CHECK(cJSON_IsObject(j));
            cJSON_Delete(j);
        }
        p = stop + 2;
    }
}

/* "created":<digits> → "created":0 (the two runs may straddle a second). */
static void zero_created(lx_buf *b)
{
    char *p = b->p;
    while (p && (p = strstr(p, "\"created\":")) != NULL) {
        p += 10;
        char *q = p;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q > p) {
            *p = '0';
            memmove(p + 1, q, (size_t)(b->p + b->len - q) + 1);
            b->len -= (size_t)(q - p - 1);
        }
    }
}

static int run_stream(const char *in, size_t n, uint32_t seed, lx_buf *out)
{
    lx_kind_stream s;
    lx_kind_stream_init(&s, kind(), 1 << 16);
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0;) {
        size_t piece = n - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            piece = LX_MIN(piece, (seed >> 16) % 48);
        }
        rc = lx_kind_stream_feed(&s, NULL, in + off, piece, collect, out);
        off += piece;
    }
    if (rc == 0) rc = lx_kind_stream_end(&s, NULL, collect, out);
    lx_kind_stream_free(&s);
    zero_created(out);
    return rc;
}

static void fuzz_stream(const char *in, size_t n, uint32_t seed)
{
    lx_buf whole, cut;
    lx_buf_init(&whole, 0);
    lx_buf_init(&cut, 0);
    int a = run_stream(in, n, 0, &whole), b = run_stream(in, n, seed | 1, &cut);
    LX_FUZZ_CHECK(a == b);
    if (a == 0) LX_FUZZ_CHECK(whole.len == cut.len && (whole.len == 0 || memcmp(whole.p, cut.p, whole.len) == 0));
    check_events(&whole);
    check_events(&cut);
    lx_buf_free(&whole);
    lx_buf_free(&cut);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *in = (const char *)data + 1;
    if (data[0] & 1)
        fuzz_stream(in, size - 1, data[0] * 2654435761u);
    else
        fuzz_request(in, size - 1);
    return 0;
}
