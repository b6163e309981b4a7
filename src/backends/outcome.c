/*
 * The outcome table. See outcome.h.
 * Invariant: one row per lx_outcome, indexed by it (checked at compile time); a row with answered set has
 * no error of its own (the backend's answer is passed on), every other row names the client's error.
 */
#include "backends/outcome.h"

#include "utils/common.h"

static const lx_outcome_info table[] = {
    [LX_OUT_OK] = {"ok", false, LX_ATTEMPT_OK, LX_ERR_INTERNAL, true},
    [LX_OUT_BUSY] = {"busy", true, LX_ATTEMPT_OK, LX_ERR_INTERNAL, true},
    [LX_OUT_FAILING] = {"failing", true, LX_ATTEMPT_FAILED, LX_ERR_INTERNAL, true},
    [LX_OUT_CONNECT] = {"connect", true, LX_ATTEMPT_FAILED, LX_ERR_UPSTREAM_UNAVAILABLE, false},
    [LX_OUT_LOST] = {"lost", true, LX_ATTEMPT_FAILED, LX_ERR_UPSTREAM_UNAVAILABLE, false},
    [LX_OUT_SILENT] = {"silent", true, LX_ATTEMPT_FAILED, LX_ERR_UPSTREAM_TIMEOUT, false},
    [LX_OUT_CUT] = {"cut", false, LX_ATTEMPT_FAILED, LX_ERR_UPSTREAM_BAD_RESPONSE, false},
    [LX_OUT_STALLED] = {"stalled", false, LX_ATTEMPT_FAILED, LX_ERR_UPSTREAM_TIMEOUT, false},
    [LX_OUT_GARBLED] = {"garbled", false, LX_ATTEMPT_FAILED, LX_ERR_UPSTREAM_BAD_RESPONSE, false},
    [LX_OUT_REFUSED] = {"refused", false, LX_ATTEMPT_NONE, LX_ERR_UPSTREAM_BAD_RESPONSE, false},
};

_Static_assert(LX_ARRAY_LEN(table) == LX_OUT_COUNT, "one row per lx_outcome");

lx_outcome lx_outcome_of(lx_up_result r, int status)
{
    switch (r) {
    case LX_UP_OK:
        if (status == 429) return LX_OUT_BUSY;
        return status == 502 || status == 503 || status == 504 ? LX_OUT_FAILING : LX_OUT_OK;
    case LX_UP_CONNECT: return LX_OUT_CONNECT;
    case LX_UP_RESET: return status == 0 ? LX_OUT_LOST : LX_OUT_CUT;
    case LX_UP_TIMEOUT: return status == 0 ? LX_OUT_SILENT : LX_OUT_STALLED;
    case LX_UP_CALLER: return LX_OUT_REFUSED;
    default: return LX_OUT_GARBLED;
    }
}

const lx_outcome_info *lx_outcome_get(lx_outcome o) { return &table[(unsigned)o < LX_OUT_COUNT ? o : LX_OUT_GARBLED]; }
