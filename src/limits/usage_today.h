/*
 * What each user used today (the UTC day): requests, tokens, errors and 429s, in total and per model, for
 * GET /v1/usage. Fed the access record of every finished request (proxy.c, next to lx_stats_record), the
 * same record the statistics and the ledger count, so the three agree.
 *
 * Bounds: at most LX_TODAY_MAX_USERS users a day (later ones are not counted, and counted in `dropped`)
 * and LX_TODAY_MAX_MODELS models per user (beyond: "(other)"). The first request of a new day forgets
 * the previous day at once, so memory is bounded by one day's users. Model names counted are the model
 * a request resolved to, or "-" when it did not get that far, so names chosen by clients never become
 * entries. Nothing survives a restart: the usage ledger (`lexora usage`) keeps the history.
 *
 * Loop thread only. The clock is injectable for tests.
 */
#ifndef LX_USAGE_TODAY_H
#define LX_USAGE_TODAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utils/log.h"

#define LX_TODAY_MAX_USERS  10000
#define LX_TODAY_MAX_MODELS 32

typedef struct lx_usage_today lx_usage_today;

typedef struct {
    uint64_t requests, prompt_tokens, completion_tokens, errors, rate_limited;
} lx_today_counts;

/* now_s: wall-clock seconds (Unix time); NULL for time(). */
lx_usage_today *lx_usage_today_new(int64_t (*now_s)(void *ud), void *ud);
void lx_usage_today_free(lx_usage_today *t);

/* One finished request (its access record). NULL t is a no-op. An error is status >= 400 or an error
 * code; a 429 is status 429. */
void lx_usage_today_record(lx_usage_today *t, const lx_access_rec *rec);

/*
 * user's counts today into *total and, for each model, calls each(model, counts, ud) (each may be NULL).
 * *day: the UTC date "YYYY-MM-DD" (11 bytes). Returns false (all zero) when user has no request today.
 */
bool lx_usage_today_get(lx_usage_today *t, const char *user, char day[11], lx_today_counts *total,
                        void (*each)(const char *model, const lx_today_counts *c, void *ud), void *ud);

/* Users not counted today because LX_TODAY_MAX_USERS were. */
uint64_t lx_usage_today_dropped(const lx_usage_today *t);

#endif
