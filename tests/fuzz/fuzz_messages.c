/*
 * Fuzz target: the Anthropic front's translators (api/messages.c), which see every /v1/messages body and every
 * byte a backend streams to an Anthropic client.
 *
 * Input: 1 byte choosing the translator (and, for streams, where the input is cut), the rest its input.
 * Checks:
 *  - request: a translation is a JSON object with messages, whose fields the gateway's own body scanner
 *    does not refuse (it may refuse x_* members passed on as they came); a refusal leaves out empty and
 *    names its field at the start of its message;
 *  - answer: a translation is a JSON message ("type":"message"); a refusal leaves out empty;
 *  - stream: the events are the same however the input is cut (whole, at input-derived points, byte by byte),
 *    and every event is "event: T\ndata: {JSON whose type is T}\n\n";
 *  - pass-through (messages_native.c): a Messages stream read whole and byte by byte gives the same usage and
 *    end; a whole answer's usage reader never fails on any input.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "api/body.h"
#include "api/messages.h"
#include "fuzz.h"

static void check_request(const char *in, size_t n)
{
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_messages_error e = {0};
    if (lx_messages_request(in, n, n & 1, &out, &e) == 0) {
        cJSON *o = cJSON_ParseWithLength(out.p, out.len);
        LX_FUZZ_CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "messages")));
        cJSON_Delete(o);
        /* the scanner may refuse what the client sent on as it was (x_* members, depth), never what was made */
        lx_body_fields f;
        lx_body_error berr = {0};
        if (lx_body_scan(out.p, out.len, &f, &berr) != 0) {
            static const char *const made[] = {"model", "messages", "max_tokens", "stream", "stream_options"};
            for (size_t i = 0; i < sizeof made / sizeof made[0]; i++)
                LX_FUZZ_CHECK(berr.param == NULL || strcmp(berr.param, made[i]) != 0);
        }
    } else {
        LX_FUZZ_CHECK(out.len == 0 && e.message[0] != '\0');
        LX_FUZZ_CHECK(e.param[0] == '\0' || strstr(e.message, e.param) == e.message);
    }
    lx_buf_free(&out);
}

static void check_answer(const char *in, size_t n)
{
    lx_buf out;
    lx_buf_init(&out, 0);
    if (lx_messages_answer(in, n, "req", "model", &out) == 0) {
        cJSON *m = cJSON_ParseWithLength(out.p, out.len);
        LX_FUZZ_CHECK(cJSON_IsObject(m));
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "type");
        LX_FUZZ_CHECK(cJSON_IsString(t) && strcmp(t->valuestring, "message") == 0);
        cJSON_Delete(m);
    } else {
        LX_FUZZ_CHECK(out.len == 0);
    }
    lx_buf_free(&out);
}

/* Every event in out is "event: T\ndata: <JSON object of type T>\n\n". */
static void check_events(const lx_buf *out)
{
    const char *p = out->p ? out->p : "", *end = p + out->len;
    while (p < end) {
        LX_FUZZ_CHECK(strncmp(p, "event: ", 7) == 0);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        LX_FUZZ_CHECK(nl && (size_t)(end - nl) > 7 && strncmp(nl + 1, "data: ", 6) == 0);
        const char *data = nl + 7, *stop = strstr(data, "\n\n");
        LX_FUZZ_CHECK(stop != NULL);
        cJSON *ev = cJSON_ParseWithLength(data, (size_t)(stop - data));
        LX_FUZZ_CHECK(cJSON_IsObject(ev));
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "type");
        LX_FUZZ_CHECK(cJSON_IsString(t) && strlen(t->valuestring) == (size_t)(nl - p - 7) &&
                      memcmp(t->valuestring, p + 7, (size_t)(nl - p - 7)) == 0);
        cJSON_Delete(ev);
        p = stop + 2;
    }
}

/* Feeds in with a cut every `step` bytes (0: whole); returns the feeds' result. */
static int feed(const char *in, size_t n, size_t step, lx_buf *out)
{
    lx_messages_stream s;
    lx_messages_stream_init(&s, "req", "model", 3, 4096);
    lx_messages_stream_begin(&s, out);
    int rc = 0;
    for (size_t at = 0; at < n && rc == 0;) {
        size_t k = step ? LX_MIN(step, n - at) : n;
        rc = lx_messages_stream_feed(&s, in + at, k, out);
        at += k;
    }
    lx_messages_stream_error(&s, 500, "end", out);
    lx_messages_stream_free(&s);
    return rc;
}

static void check_stream(const char *in, size_t n, unsigned cut)
{
    lx_buf whole, split, bytes;
    lx_buf_init(&whole, 0);
    lx_buf_init(&split, 0);
    lx_buf_init(&bytes, 0);
    int a = feed(in, n, 0, &whole), b = feed(in, n, 1 + cut % 61, &split), c = feed(in, n, 1, &bytes);
    if (a == 0 && b == 0 && c == 0) {
        LX_FUZZ_CHECK(whole.len == split.len && whole.len == bytes.len);
        LX_FUZZ_CHECK(memcmp(whole.p, split.p, whole.len) == 0 && memcmp(whole.p, bytes.p, whole.len) == 0);
    }
    check_events(&whole);
    check_events(&split);
    lx_buf_free(&whole);
    lx_buf_free(&split);
    lx_buf_free(&bytes);
}

/* The pass-through readers: the same verdict however the stream is cut. */
static void native_read(const char *in, size_t n, size_t step, lx_messages_native *m)
{
    lx_messages_native_init(m, 1 << 16);
    for (size_t at = 0; at < n;) {
        size_t k = step ? LX_MIN(step, n - at) : n;
        if (lx_messages_native_feed(m, in + at, k) != 0) break;
        at += k;
    }
}

static void check_native(const char *in, size_t n)
{
    lx_messages_native whole, bytes;
    native_read(in, n, 0, &whole);
    native_read(in, n, 1, &bytes);
    if (whole.pending.len <= whole.max_event && bytes.pending.len <= bytes.max_event) {
        LX_FUZZ_CHECK(whole.prompt_tokens == bytes.prompt_tokens && whole.completion_tokens == bytes.completion_tokens);
        LX_FUZZ_CHECK(whole.saw_stop == bytes.saw_stop && whole.saw_error == bytes.saw_error);
    }
    LX_FUZZ_CHECK(whole.prompt_tokens >= -1 && whole.completion_tokens >= -1);
    lx_messages_native_free(&whole);
    lx_messages_native_free(&bytes);
    long pt = -1, ct = -1;
    lx_messages_usage(in, n, &pt, &ct);
    LX_FUZZ_CHECK(pt >= -1 && ct >= -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0: check_request(in, n); break;
    case 1: check_answer(in, n); break;
    case 2: check_native(in, n); break;
    default: check_stream(in, n, data[0] / 4u); break;
    }
    return 0;
}
