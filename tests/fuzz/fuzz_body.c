/*
 * Fuzz target: the request-body scanner and rewrite (api/body.c), and the two readers used on
 * upstream answers (lx_json_find_member, lx_usage_parse).
 *
 * Input: 1 byte choosing the rewrite options (set_model, force_include_usage, priority, output cap),
 * the rest is the body. When the scan accepts the body, the rewrite's promises are checked
 * against a second scan of its output: it is still one valid object, every x_* member is gone, the
 * model is the one the body gave or the one set, stream and max_tokens are unchanged, include_usage
 * is on when forced for a stream, a priority set is the one the output's last priority member holds
 * and adds a member only when the body had none (no duplicate key), and a no-op rewrite
 * (lx_body_rewrite_is_noop) leaves the members as they were.
 * A rewrite that hits the output cap must leave the buffer as it was.
 * The scan itself is checked against a second reader, cJSON, as the backend would read the body
 * (keys unescaped, the last of a repeated key wins): the same member count, model, stream, max_tokens
 * and number of x_* members.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "api/body.h"
#include "fuzz.h"

static const char *const models[] = {NULL, "qwen3-32b", "a\"b\\c\n\x01\xc3\xa9"};
static const size_t caps[] = {0, 0, 0, 16};
static const char *const priorities[] = {NULL, "", "-3", "\"high\""};

static bool slices_equal(lx_slice a, lx_slice b) { return a.len == b.len && memcmp(a.p, b.p, a.len) == 0; }

static void check_rewrite(const char *body, size_t len, const lx_body_fields *f, uint8_t sel)
{
    lx_body_rewrite_opts o = {
        .set_model = models[sel % 3],
        .force_include_usage = (sel & 0x04) != 0,
        .priority = priorities[(sel >> 3) & 3],
    };
    lx_buf out;
    lx_buf_init(&out, caps[(sel >> 5) & 3]);
    lx_buf_append_str(&out, "xyz"); /* the rewrite appends */
    size_t before = out.len;
    int rc = lx_body_rewrite(body, len, f, &o, &out);
    if (rc != 0) {
        LX_FUZZ_CHECK(out.max != 0 && out.len == before);
        lx_buf_free(&out);
        return;
    }
    const char *nb = out.p + before;
    size_t nlen = out.len - before;
    lx_body_fields g;
    lx_body_error e;
    LX_FUZZ_CHECK(lx_body_scan(nb, nlen, &g, &e) == 0);
    LX_FUZZ_CHECK(g.n_x == 0);
    LX_FUZZ_CHECK(g.stream == f->stream);
    LX_FUZZ_CHECK(g.max_tokens == f->max_tokens);
    if (f->has_model && (o.set_model == NULL || lx_slice_eq(f->model, o.set_model))) {
        LX_FUZZ_CHECK(g.has_model && slices_equal(g.model, f->model));
    } else if (o.set_model) {
        lx_buf want;
        lx_buf_init(&want, 0);
        lx_buf_json_escape(&want, o.set_model, strlen(o.set_model));
        LX_FUZZ_CHECK(g.has_model && g.model.len == want.len && memcmp(g.model.p, want.p, want.len) == 0);
        lx_buf_free(&want);
    }
    if (o.force_include_usage && f->stream) LX_FUZZ_CHECK(g.include_usage);
    if (o.priority && o.priority[0]) {
        size_t added = (o.set_model && !f->has_model) +
                       (o.force_include_usage && f->stream && !f->include_usage && f->stream_options.end == 0) +
                       (f->priority.end == 0);
        LX_FUZZ_CHECK(g.n_members == f->n_members - f->n_x + added);
        LX_FUZZ_CHECK(g.priority.end - g.priority.start == strlen(o.priority) &&
                      memcmp(nb + g.priority.start, o.priority, strlen(o.priority)) == 0);
    }
    if (lx_body_rewrite_is_noop(f, &o)) {
        LX_FUZZ_CHECK(g.n_members == f->n_members);
        LX_FUZZ_CHECK(g.include_usage == f->include_usage);
    }
    lx_buf_free(&out);
}

/* The last member named key, as Python's json (vLLM) keeps it. */
static const cJSON *last_member(const cJSON *root, const char *key)
{
    const cJSON *found = NULL;
    for (const cJSON *c = root->child; c; c = c->next)
        if (strcmp(c->string, key) == 0) found = c;
    return found;
}

static void check_against_cjson(const char *body, size_t len, const lx_body_fields *f)
{
    /* cJSON keeps keys and strings as C strings, so an escaped NUL would read differently */
    if (memmem(body, len, "\\u0000", 6) != NULL) return;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (root == NULL) return; /* cJSON refuses some valid JSON (a lone surrogate escape) */
    LX_FUZZ_CHECK(cJSON_IsObject(root));
    size_t members = 0, xs = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        members++;
        if (strncmp(c->string, "x_", 2) == 0) xs++;
    }
    LX_FUZZ_CHECK(members == f->n_members);
    LX_FUZZ_CHECK(xs == f->n_x);
    const cJSON *model = last_member(root, "model");
    LX_FUZZ_CHECK(f->has_model == (model != NULL));
    if (model) {
        LX_FUZZ_CHECK(cJSON_IsString(model));
        if (memchr(f->model.p, '\\', f->model.len) == NULL)
            LX_FUZZ_CHECK(strlen(model->valuestring) == f->model.len &&
                          memcmp(model->valuestring, f->model.p, f->model.len) == 0);
    }
    LX_FUZZ_CHECK(f->stream == cJSON_IsTrue(last_member(root, "stream")));
    const cJSON *mt = last_member(root, "max_tokens");
    if (f->max_tokens >= 0 && f->max_tokens < (1L << 52))
        LX_FUZZ_CHECK(cJSON_IsNumber(mt) && mt->valuedouble == (double)f->max_tokens);
    else if (f->max_tokens < 0)
        LX_FUZZ_CHECK(mt == NULL || cJSON_IsNull(mt));
    cJSON_Delete(root);
}

static void check_readers(const char *body, size_t len)
{
    static const char *const keys[] = {"usage", "model", "choices", "error", "x_user_id"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        lx_slice v;
        if (!lx_json_find_member(body, len, keys[k], &v)) continue;
        LX_FUZZ_CHECK(v.len > 0 && v.p >= body && v.p + v.len <= body + len);
        lx_usage u;
        if (v.p[0] == '{' && lx_usage_parse(v.p, v.len, &u))
            LX_FUZZ_CHECK(u.prompt_tokens >= -1 && u.completion_tokens >= -1);
    }
    lx_usage u;
    lx_usage_parse(body, len, &u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    lx_body_fields f;
    lx_body_error e;
    if (lx_body_scan(body, len, &f, &e) == 0) {
        LX_FUZZ_CHECK(f.top.p >= body && f.top.p + f.top.len <= body + len);
        LX_FUZZ_CHECK(f.n_x <= LX_BODY_MAX_XFIELDS && f.n_x <= f.n_members);
        check_against_cjson(body, len, &f);
        check_rewrite(body, len, &f, sel);
    } else {
        LX_FUZZ_CHECK(e.err == LX_ERR_INVALID_JSON || e.err == LX_ERR_INVALID_FIELD);
        LX_FUZZ_CHECK(memchr(e.message, '\0', sizeof e.message) != NULL);
    }
    check_readers(body, len);
    return 0;
}
