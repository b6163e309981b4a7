/*
 * The text a request asks about, for the automatic-routing analyzer (routing/analyzer.h): read from the
 * JSON value of a chat request's `messages` (or a completion's `prompt`), unescaped to UTF-8.
 *
 * What is read: the last user message is the prompt (every text part of it, in order, up to
 * LX_PROMPT_TEXT_MAX bytes, cut at a character boundary); the context is the first system message (up to
 * LX_PROMPT_SYSTEM_MAX bytes) and the turn just before the last user message (its last
 * LX_PROMPT_TURN_MAX bytes). A message's content is a string or an array of parts ({"type":"text",
 * "text": ...}, or plain strings); other parts (images) are skipped. A completion's prompt is a string or an
 * array of strings (all of them are the prompt); token ids carry no text.
 * Invariants: the walk is linear in the value's length, allocates nothing and never reads past it; it
 * tolerates any bytes (what it cannot read as JSON ends the walk with what was read so far), so it may be
 * fed a body no scan has checked. Pure; any thread.
 */
#ifndef LX_PROMPT_TEXT_H
#define LX_PROMPT_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "utils/common.h"

#define LX_PROMPT_TEXT_MAX    32768
#define LX_PROMPT_SYSTEM_MAX  1024
#define LX_PROMPT_TURN_MAX    1024
#define LX_PROMPT_CONTEXT_MAX (LX_PROMPT_SYSTEM_MAX + LX_PROMPT_TURN_MAX + 1)

typedef struct {
    char text[LX_PROMPT_TEXT_MAX]; /* the last user message (or the completion prompt), UTF-8, not terminated */
    size_t len;
    bool cut;                            /* it was longer than LX_PROMPT_TEXT_MAX */
    char context[LX_PROMPT_CONTEXT_MAX]; /* system prompt, then "\n", then the turn before (when there is one) */
    size_t context_len;
    size_t n_messages; /* messages seen (0 for a completion prompt) */
} lx_prompt_text;

/* Reads value (the JSON text of messages or prompt; empty: nothing) into out. */
void lx_prompt_text_read(lx_slice value, lx_prompt_text *out);

#endif
