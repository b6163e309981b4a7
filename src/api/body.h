/*
 * Request bodies: read the few top-level fields Lexora needs in one pass, and splice the rewrite.
 *
 * The body is scanned once by a strict, linear JSON checker (body.c says why not jsmn); no DOM is
 * built. lx_body_scan finds the top-level members model, messages (whether it is an array),
 * stream, stream_options.include_usage, max_tokens, and every member whose key starts with "x_"
 * (the Lexora extensions x_priority, x_user_id, x_timeout, x_route, x_fallback, x_variant among
 * them), and checks their types.
 * The same pass gathers what the token estimate needs (limits/tokens.h: characters inside strings,
 * objects, the top-level max_completion_tokens and n), so the body is read once.
 * lx_body_rewrite then copies the body once with the edits applied: x_* members removed, the model
 * set when the client left it out, stream_options.include_usage forced on for streams, the
 * top-level "priority" set (the client's value replaced in place, or the member appended). Everything else is copied
 * byte for byte. Pure functions; any thread. Slices point into the caller's body.
 */
#ifndef LX_BODY_H
#define LX_BODY_H

#include <stdbool.h>
#include <stddef.h>

#include "api/errors.h"
#include "limits/tokens.h"
#include "utils/buf.h"
#include "utils/common.h"

#define LX_BODY_MAX_XFIELDS 8 /* more x_* members than this is an error */

typedef struct {
    size_t start; /* offset of the member's key (its opening quote) */
    size_t end;   /* offset just past the member's value */
} lx_span;

typedef struct {
    lx_slice model;      /* contents of the string, escapes left as they are; len 0 if absent */
    lx_span model_value; /* the model's value, quotes included; {0,0} if absent */
    bool has_model;
    lx_slice prompt;   /* the value of messages (or a completion's prompt), as JSON text; len 0 if absent */
    bool has_messages; /* a messages member that is not null (its type is the endpoint's business) */
    bool messages_is_array;
    bool stream;             /* false when absent or null */
    bool has_stream_options; /* a stream_options object is present */
    bool include_usage;      /* the client asked for stream_options.include_usage: true */
    lx_span stream_options;  /* the whole member, when present (an object, or null); {0,0} if absent */
    /* the value of stream_options.include_usage (the last one, as the backend reads it); {0,0} if absent */
    lx_span include_usage_value;
    long max_tokens;     /* -1 when absent or null */
    lx_span priority;    /* the value of the last top-level priority member (any type); {0,0} if absent */
    lx_slice x_priority; /* string contents, len 0 if absent */
    bool has_x_priority;
    lx_slice x_user_id;
    bool has_x_user_id;
    double x_timeout; /* seconds, 0 when absent */
    bool has_x_timeout;
    lx_slice x_route; /* the class automatic routing must take (routing/analyzer.h); string contents */
    bool has_x_route;
    lx_slice x_variant; /* experiments: the variant the client forces; string contents */
    bool has_x_variant;
    bool no_fallback; /* x_fallback: false — the client refuses routing.fallbacks for this request */
    lx_span members_x[LX_BODY_MAX_XFIELDS]; /* every x_* member, to be removed */
    size_t n_x;
    lx_token_counts tokens; /* for lx_tokens_estimate */
    size_t n_members;       /* top-level members in all */
    lx_slice top;           /* the object itself, '{' .. '}' */
} lx_body_fields;

typedef struct {
    lx_err err;        /* LX_ERR_INVALID_JSON or LX_ERR_INVALID_FIELD */
    const char *param; /* the offending field, or NULL */
    char message[160];
} lx_body_error;

/*
 * Scans body (len bytes). Returns 0 and fills f, or -1 and fills err: not a JSON object
 * (invalid_json), or a known field of the wrong type (invalid_value with param):
 * model must be a string, stream a boolean, stream_options an object, max_tokens a
 * non-negative integer, x_priority, x_user_id, x_route and x_variant strings, x_timeout a positive number, x_fallback a
 * boolean.
 */
int lx_body_scan(const char *body, size_t len, lx_body_fields *f, lx_body_error *err);

typedef struct {
    const char *set_model;    /* the model the backend must see: "model":"<this>" inserted when the body has
                                 none, its value replaced when it names another; NULL: leave as is */
    bool force_include_usage; /* for streams: make stream_options.include_usage true (ignored when the body
                                 does not stream: vLLM rejects any stream_options without stream:true) */
    const char *priority;     /* a JSON value, e.g. "-1": the top-level "priority" becomes it (the client's
                                 last priority member's value is replaced, so no key is added twice; else
                                 "priority":<this> is appended); NULL: leave as is */
} lx_body_rewrite_opts;

/* True when the rewrite would change nothing, so the original body can be sent as it is. */
bool lx_body_rewrite_is_noop(const lx_body_fields *f, const lx_body_rewrite_opts *o);

/* Appends the rewritten body to out. Returns 0, or -1 if out's cap is reached. */
int lx_body_rewrite(const char *body, size_t len, const lx_body_fields *f, const lx_body_rewrite_opts *o, lx_buf *out);

/*
 * Finds a top-level member of a JSON object by key and returns its value's bytes (for a string,
 * including the quotes); for a repeated key, the last. Returns false if body is not an object or has no
 * such member. Used on upstream answers (e.g. "usage"), which are passed on as they came: the object is
 * walked from its end without being validated, and what lies before the member found is not read.
 */
bool lx_json_find_member(const char *body, size_t len, const char *key, lx_slice *value);

/* Token counts from a "usage" object's bytes; -1 for a count that is absent. */
typedef struct {
    long prompt_tokens;
    long completion_tokens;
} lx_usage;

bool lx_usage_parse(const char *json, size_t len, lx_usage *out);

#endif
