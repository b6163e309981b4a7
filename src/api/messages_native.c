/*
 * The Anthropic front's pass-through (messages.h): a Messages answer relayed as it came, read for its
 * usage (message_start's input and cache tokens, message_delta's output tokens, or a whole answer's usage)
 * and for how it ended (message_stop, or an error event). Events end at a blank line ("\n\n" or
 * "\r\n\r\n"); only their data lines are parsed. Pure; one state per stream.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "api/messages.h"

static long count_of(const cJSON *usage, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(usage, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e15 ? (long)v->valuedouble : 0;
}

/* Reads a usage object: the prompt counts cache reads and writes, as Anthropic counts them apart. */
static void read_usage(const cJSON *usage, long *prompt, long *completion)
{
    if (!cJSON_IsObject(usage)) return;
    if (cJSON_GetObjectItemCaseSensitive(usage, "input_tokens"))
        *prompt = count_of(usage, "input_tokens") + count_of(usage, "cache_read_input_tokens") +
                  count_of(usage, "cache_creation_input_tokens");
    if (cJSON_GetObjectItemCaseSensitive(usage, "output_tokens")) *completion = count_of(usage, "output_tokens");
}

bool lx_messages_usage(const char *body, size_t len, long *prompt_tokens, long *completion_tokens)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    bool ok = cJSON_IsObject(usage);
    read_usage(usage, prompt_tokens, completion_tokens);
    cJSON_Delete(root);
    return ok;
}

void lx_messages_native_init(lx_messages_native *n, size_t max_event)
{
    *n = (lx_messages_native){.max_event = max_event, .prompt_tokens = -1, .completion_tokens = -1};
    lx_buf_init(&n->pending, 0);
}

void lx_messages_native_free(lx_messages_native *n) { lx_buf_free(&n->pending); }

/* One complete event: its data line's JSON. */
static void on_event(lx_messages_native *n, const char *ev, size_t len)
{
    for (const char *line = ev, *end = ev + len; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *stop = nl ? nl : end;
        if ((size_t)(stop - line) > 5 && memcmp(line, "data:", 5) == 0) {
            cJSON *root = cJSON_ParseWithLength(line + 5, (size_t)(stop - line - 5));
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
            const char *t = cJSON_IsString(type) ? type->valuestring : "";
            if (strcmp(t, "message_start") == 0)
                read_usage(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "message"), "usage"),
                           &n->prompt_tokens, &n->completion_tokens);
            else if (strcmp(t, "message_delta") == 0)
                read_usage(cJSON_GetObjectItemCaseSensitive(root, "usage"), &n->prompt_tokens, &n->completion_tokens);
            else if (strcmp(t, "message_stop") == 0)
                n->saw_stop = true;
            else if (strcmp(t, "error") == 0)
                n->saw_error = true;
            cJSON_Delete(root);
        }
        line = stop + 1;
    }
}

/* The end of the first event in p[0..len), searched from from: the offset past its blank line, or 0 when it
 * is not complete. */
static size_t event_end(const char *p, size_t len, size_t from)
{
    for (size_t i = from; i + 1 < len; i++) {
        if (p[i] != '\n') continue;
        if (p[i + 1] == '\n') return i + 2;
        if (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n') return i + 3;
    }
    return 0;
}

int lx_messages_native_feed(lx_messages_native *n, const char *data, size_t len)
{
    if (lx_buf_append(&n->pending, data, len) != 0) return -1;
    size_t off = 0, k, from = n->scanned;
    while ((k = event_end(n->pending.p + off, n->pending.len - off, from)) != 0) {
        on_event(n, n->pending.p + off, k);
        off += k;
        from = 0;
    }
    memmove(n->pending.p, n->pending.p + off, n->pending.len - off);
    n->pending.len -= off;
    n->scanned = n->pending.len > 2 ? n->pending.len - 2 : 0; /* an end may start in the last two bytes */
    return n->pending.len > n->max_event ? -1 : 0;
}
