/*
 * Request ids: "req_" + 24 lowercase hex digits: 12 of the wall-clock time in milliseconds, then 12 from a PRNG
 * seeded once from the OS (the same PRNG gives the retry handler its jitter). Ids made later sort after those made
 * earlier, so the usage ledger's index on them grows at its end instead of at random places.
 * A client's own X-Request-Id is kept when it is sane (1..128 printable ASCII, no spaces or quotes).
 * Loop thread only (the PRNG state is not shared).
 */
#ifndef LX_ID_H
#define LX_ID_H

#include <stdbool.h>
#include <stddef.h>

#include "utils/common.h"

#define LX_REQUEST_ID_MAX 129 /* with the NUL */

void lx_request_id_new(char out[LX_REQUEST_ID_MAX]);
/* True if the client-supplied id may be used (and echoed in headers and logs) as it is. */
bool lx_request_id_acceptable(lx_slice id);
/* A uniform number in [0, 1). */
double lx_random_unit(void);

#endif
