/*
 * The SSE relay scanner: sits between an upstream event stream and the client.
 *
 * Bytes from the backend are fed in as they arrive; every complete event ("data: ...\n\n", also
 * with \r\n line ends) is handed to emit at once, unchanged, in as few calls as possible (runs of
 * complete events go out in one call straight from the input, without copying). Only an incomplete
 * trailing event is held back until its end arrives. Nothing is re-framed.
 *
 * Along the way it reads what the gateway needs: the token usage (the last "usage" object seen on
 * any chunk, so it works whether usage comes on its own chunk, on the last content chunk, or on every
 * chunk), whether "data: [DONE]" was seen, and whether an error event came. When strip_usage is set
 * (the client did not ask for usage but the gateway did), usage-only chunks ("choices":[] with a
 * usage) are read and then dropped from what the client receives.
 * One scanner per stream; loop thread (or any single thread).
 */
#ifndef LX_SSE_H
#define LX_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "api/body.h"
#include "utils/buf.h"

typedef void (*lx_sse_emit_fn)(void *ud, const char *data, size_t len);

typedef struct {
    lx_buf pending; /* an incomplete event waiting for its end */
    bool strip_usage;
    lx_usage usage; /* -1 counts until a usage object is seen */
    bool saw_usage;
    bool saw_done;
    bool saw_error;
    size_t events;  /* complete events seen (data events, incl. [DONE]) */
    int line_state; /* private: how much of the current line has been seen (carried across feeds) */
} lx_sse;

/* max_event caps one event's size (bytes held while incomplete). */
void lx_sse_init(lx_sse *s, bool strip_usage, size_t max_event);
/* Returns 0, or -1 if an event grew past max_event (the stream should be failed). */
int lx_sse_feed(lx_sse *s, const char *data, size_t len, lx_sse_emit_fn emit, void *ud);
/* At the end of the stream: hands any incomplete trailing bytes to emit unchanged. */
void lx_sse_finish(lx_sse *s, lx_sse_emit_fn emit, void *ud);
void lx_sse_free(lx_sse *s);

#endif
