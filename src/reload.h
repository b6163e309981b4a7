/*
 * Reload: what changed between the running config snapshot and a freshly loaded one, key by key.
 *
 * lx_reload_diff lists the dotted key paths whose values differ, in two lists:
 *  - changed: keys that take effect at once (server.max_body_bytes, backends.NAME.url,
 *    rate_limits.users.alice, queue.max_size, logging.level, ...);
 *  - restart_required: keys only a restart can apply: server.host and server.port (the bound listener),
 *    metrics.enabled and metrics.port (the metrics listener), usage.enabled and usage.db_path (the ledger
 *    is opened once). Everything else is live, logging.file included (reopened at every reload).
 * A named collection is compared entry by entry by name: a backend added or removed is "backends.NAME",
 * a field of one "backends.NAME.FIELD", its model list "backends.NAME.models"; a user's limits
 * "rate_limits.users.NAME" (the limits in effect, so a changed default also lists the users that
 * inherit it); any change to the client keys "auth.keys". Secrets are compared, never shown.
 * lx_reload_pin then copies the running values of the restart-only keys into the new snapshot, so the
 * snapshot swapped in says what actually runs, and the next reload reports them again until a restart.
 * The comparison walks config.c's key table (config_keys.h): a key is declared once, there, with its
 * type, where its value lives, and whether it is live or restart-only (LX_KF_RESTART).
 * Pure functions on snapshots; lx_reload_pin changes a snapshot not yet shared. Loop thread.
 */
#ifndef LX_RELOAD_H
#define LX_RELOAD_H

#include <stddef.h>

#include "config.h"
#include "utils/buf.h"

typedef struct {
    char **keys; /* owned */
    size_t n, cap;
} lx_keylist;

typedef struct {
    lx_keylist changed;
    lx_keylist restart_required;
} lx_reload_diff;

/* Fills d (zero it first) with every key whose value differs between old and new. */
void lx_reload_diff_compute(const lx_config *old, const lx_config *new_cfg, lx_reload_diff *d);
/* Gives the restart-only keys of new_cfg their values in old. */
void lx_reload_pin(const lx_config *old, lx_config *new_cfg);
void lx_reload_diff_free(lx_reload_diff *d);
/* Appends "changed":[...],"restart_required":[...] (two JSON members, no braces) to out. */
void lx_reload_diff_json(const lx_reload_diff *d, lx_buf *out);
/* Appends the keys of l separated by ", " ("none" when empty) to out, for log lines. */
void lx_keylist_join(const lx_keylist *l, lx_buf *out);

#endif
