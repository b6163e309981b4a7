/*
 * The Anthropic-compatible front (POST /v1/messages): Anthropic's Messages API translated to OpenAI's
 * chat.completions at intake, and the OpenAI answer translated back, whole or event by event. The pipeline
 * (src/proxy.c) runs the translated request like any /v1/chat/completions request, so limits, queue,
 * routing, retries, usage and the ledger read the OpenAI shapes they always read; only the bytes the
 * client sees are Anthropic's.
 *
 * Request (lx_messages_request), field by field:
 *   model, max_tokens (required, >= 1), temperature, top_p, top_k (vLLM reads it), stream (+ usage asked
 *   for), stop_sequences → stop, metadata.user_id → user, top-level x_* members copied (x_priority...);
 *   system (a string or text blocks) → one system message;
 *   messages: text → text parts; image (base64 source → data: URL, url source → image_url); assistant
 *   tool_use → tool_calls (input as a JSON string); user tool_result → one `tool` message each, before
 *   the user's other parts (text blocks joined by "\n"; is_error → the text starts with "Error: "; its images
 *   go into the user message after the tool messages, "[image follows]" in the tool's text);
 *   tools (custom: name, description, input_schema → function.parameters, strict), tool_choice (auto,
 *   any → required, none, tool → the named function; disable_parallel_tool_use → parallel_tool_calls false).
 *   Dropped as hints that do not change the answer: cache_control (anywhere), citations on text blocks,
 *   service_tier, betas, context_management (server-side context editing: the whole conversation is sent),
 *   output_config.effort, tools' eager_input_streaming, thinking {"type":"disabled"}.
 *   Refused with 400 invalid_request_error naming the field: everything else (thinking enabled, thinking
 *   and redacted_thinking blocks, documents, server tools, output_config.format, unknown members).
 * Answer (lx_messages_answer): a chat.completion → a message: text and tool_use blocks (input parsed
 *   from the arguments), stop_reason (stop → end_turn, or stop_sequence when the backend names the stop
 *   string it matched (vLLM's stop_reason); length → max_tokens; tool_calls → tool_use; content_filter →
 *   refusal), usage input/output tokens and cache_read_input_tokens from cached_tokens.
 *   reasoning_content is not part of the answer's content and is not passed on.
 * Stream (lx_messages_stream): OpenAI SSE in, any split, Anthropic events out in order: message_start,
 *   per block content_block_start / _delta (text_delta, input_json_delta) / _stop with increasing index,
 *   message_delta (stop_reason, usage), message_stop at [DONE]; an error chunk → an `error` event.
 * Errors (lx_messages_error_body): {"type":"error","error":{"type":T,"message":M}}, T from the status.
 *
 * Pure functions over buffers (cJSON inside); any thread; one stream state per stream.
 */
#ifndef LX_MESSAGES_H
#define LX_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "api/errors.h"
#include "utils/buf.h"
#include "utils/common.h"

/* The client's Anthropic request as it came, kept on the request (proxy.c) for a backend that speaks the
 * Messages API itself: it may send body and these headers on as they are. Slices into the request. */
typedef struct lx_messages_front {
    lx_slice body;
    lx_slice version; /* anthropic-version; len 0 when absent */
    lx_slice beta;    /* anthropic-beta; len 0 when absent */
} lx_messages_front;

typedef struct {
    lx_err err;     /* LX_ERR_INVALID_JSON or LX_ERR_INVALID_FIELD */
    char param[96]; /* the field, Anthropic's dotted path (messages.0.content.1.type) */
    char message[240];
} lx_messages_error;

/* An Anthropic Messages request → an OpenAI chat.completions body appended to out. 0, or -1 with e.
 * count_only (/v1/messages/count_tokens): max_tokens may be left out. */
int lx_messages_request(const char *body, size_t len, bool count_only, lx_buf *out, lx_messages_error *e);

/* An OpenAI chat.completion → an Anthropic message appended to out, with id "msg_<id>" and model as the
 * model named. 0, or -1 when body is not a chat.completion (out untouched). */
int lx_messages_answer(const char *body, size_t len, const char *id, const char *model, lx_buf *out);

/* Anthropic's error type for an HTTP status. */
const char *lx_messages_error_type(int status);
/* {"type":"error","error":{"type":<of status>,"message":message}} appended to out. */
int lx_messages_error_body(lx_buf *out, int status, const char *message);
/* The same from an error answer: its OpenAI envelope's message, else the body's text. */
int lx_messages_error_of(lx_buf *out, int status, const char *body, size_t len);

typedef enum { LX_MSG_BLOCK_NONE = 0, LX_MSG_BLOCK_TEXT, LX_MSG_BLOCK_TOOL } lx_msg_block;

#define LX_MESSAGES_MAX_TOOLS 64 /* tool calls in one streamed answer */

typedef struct {
    lx_buf pending; /* bytes of an incomplete OpenAI event */
    size_t scanned; /* pending[0..scanned) holds no event end */
    size_t line;    /* where the line being scanned starts in pending */
    char id[96];
    char model[256];
    long input_estimate; /* message_start's input_tokens until the backend says */
    bool started, done, failed;
    lx_msg_block open;                               /* the block being written */
    int open_tool;                                   /* its OpenAI tool index */
    int next_index;                                  /* the next block's index */
    unsigned char tool_state[LX_MESSAGES_MAX_TOOLS]; /* 0 unseen, 1 open, 2 closed */
    bool any_tool;
    char finish[24];    /* the last finish_reason */
    char stop_seq[256]; /* vLLM's stop_reason when a string */
    bool has_stop_seq;
    long prompt_tokens, completion_tokens, cached_tokens; /* -1 until known */
} lx_messages_stream;

/* id: the message's ("msg_" is prepended), model: the name to report, max_event caps one event. */
void lx_messages_stream_init(lx_messages_stream *s, const char *id, const char *model, long input_estimate,
                             size_t max_event);
/* message_start (once; feed sends it too if not yet sent). */
void lx_messages_stream_begin(lx_messages_stream *s, lx_buf *out);
/* OpenAI SSE bytes in (any split); the Anthropic events they complete appended to out. 0, or -1 when an
 * event outgrew max_event or the stream cannot be translated (then nothing more is translated). */
int lx_messages_stream_feed(lx_messages_stream *s, const char *data, size_t len, lx_buf *out);
/* An `error` event (once; nothing more is translated after it). */
void lx_messages_stream_error(lx_messages_stream *s, int status, const char *message, lx_buf *out);
void lx_messages_stream_free(lx_messages_stream *s);

/*
 * Pass-through (messages_native.c): a /v1/messages request to a backend that speaks the Messages API itself
 * goes on as it came, and its answer comes back as it is; these read what the pipeline needs from it.
 */
/* A whole Messages answer's usage: prompt = input_tokens + cache reads + cache writes, completion =
 * output_tokens. False when the body has no usage object. */
bool lx_messages_usage(const char *body, size_t len, long *prompt_tokens, long *completion_tokens);

/* A Messages event stream read as it is relayed (never rewritten): its usage and how it ended. */
typedef struct {
    lx_buf pending; /* an event not complete yet */
    size_t scanned; /* pending[0..scanned) holds no event end */
    size_t max_event;
    long prompt_tokens, completion_tokens; /* -1 until an event gives them */
    bool saw_stop;                         /* message_stop: the answer is complete */
    bool saw_error;                        /* an error event */
} lx_messages_native;

void lx_messages_native_init(lx_messages_native *n, size_t max_event);
/* 0, or -1 when an event grew past max_event. */
int lx_messages_native_feed(lx_messages_native *n, const char *data, size_t len);
void lx_messages_native_free(lx_messages_native *n);

#endif
