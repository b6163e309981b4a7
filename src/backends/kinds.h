/* The built-in backend kinds, one file each (backends/vllm.c, openai.c, ollama.c, llamacpp.c,
 * anthropic.c); kind.c lists
 * them in its table. Nothing else should need these names: go through lx_kind_get. Below them, the pieces
 * the Ollama and llama.cpp kinds share (backends/openai_compat.c): pure functions, any thread. */
#ifndef LX_KINDS_H
#define LX_KINDS_H

#include "backends/kind.h"

extern const lx_kind lx_kind_vllm;
extern const lx_kind lx_kind_openai;
extern const lx_kind lx_kind_ollama;
extern const lx_kind lx_kind_llamacpp;
extern const lx_kind lx_kind_anthropic;

/* What an error body of Ollama or llama.cpp says: {"error":"..."} or {"error":{"message":...,"type":...}}. */
typedef struct {
    char message[512]; /* cut at that length */
    char type[48];     /* the backend's own type, "" when it gave none */
} lx_backend_error;

/* 1 with out filled when body is one of those shapes, else 0. */
int lx_backend_error_read(const char *body, size_t len, lx_backend_error *out);
/* Appends {"error":{"message":<message>,"type":T,"param":null,"code":C}}: T and C from the status as OpenAI
 * would say it (4xx invalid_request_error, 404 model_not_found, 429 requests/rate_limit_exceeded, 5xx
 * server_error), code replaced by `code` when not NULL; an empty message becomes one naming the status.
 * 0, or -1 with out as it was. */
int lx_backend_error_envelope(int status, const char *message, const char *code, lx_buf *out);

/* Appends obj (a JSON object of len bytes) to out without its top-level member `key` and the comma that
 * went with it, every other byte as it was. 1 when cut; 0 when obj has no such member, is not an object,
 * or writes the key with escapes (nothing appended); -1 when out is full. */
int lx_json_cut_member(const char *obj, size_t len, const char *key, lx_buf *out);

/* The JSON object of an SSE event that is a single "data: {...}" line (no terminator); false otherwise. */
bool lx_sse_data_json(lx_slice event, lx_slice *json);
/* Appends "data: <json>\n\n", or the event and "\n\n" as it was. 0, or -1 when out is full. */
int lx_sse_put_data(lx_buf *out, const char *json, size_t len);
int lx_sse_put_event(lx_buf *out, lx_slice event);

#endif
