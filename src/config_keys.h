/*
 * The config key table: every key of lexora_config.yaml is one row, declared once, read by two modules:
 * the loader (config.c walks the rows to read a file into a snapshot) and reload.c (walks the same rows
 * to compare two snapshots and to pin the keys only a restart can apply). Private to those two.
 *
 * Invariants:
 * - A row's off is from the base of the struct its table fills: lx_config for the top table and its
 *   sections (an LX_K_MAP row's sub-table has its parent's base), an entry's struct for the rows of a
 *   list (LX_K_LIST: its desc says where the array, its length and each entry's name are).
 * - The type says how the value is stored, so reload compares without knowing the key: strings
 *   (LX_K_STR, URL, SECRET, REDIS_URL) as char *, ints (INT, LEVEL, ENUM, KIND) as int, LONG as long,
 *   NUM as double, BOOL and FORMAT as bool, BYTES as size_t, SHA256 as LX_SHA256_LEN bytes.
 * - LX_KF_RESTART is only on rows whose base is lx_config (the top table and its sections), which is
 *   what lets reload copy a running value back into a new snapshot.
 * - Every field of the snapshot that a reload must notice is a row; a field the loader computes rather
 *   than reads (an auth key's plain flag) is an LX_KF_DERIVED row, which the file cannot name.
 */
#ifndef LX_CONFIG_KEYS_H
#define LX_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

/*
 * LX_K_ENUM: one of row->names (any case), stored as its index in an enum field;
 * LX_K_SECRET: a non-empty string of visible ASCII (fit for an HTTP header), never quoted back;
 * LX_K_SHA256: 64 hex digits into unsigned char[LX_SHA256_LEN];
 * LX_K_REDIS_URL: redis://host[:port][/db] or unix:///path, into a char * (parsed apart once loaded);
 * LX_K_MAP: a section, read by its sub-table; LX_K_LIST: a list or a mapping of named entries, read by fn.
 */
typedef enum {
    LX_K_STR,
    LX_K_URL,
    LX_K_INT,
    LX_K_LONG,
    LX_K_NUM,
    LX_K_BOOL,
    LX_K_BYTES,
    LX_K_LEVEL,
    LX_K_FORMAT,
    LX_K_KIND,
    LX_K_ENUM,
    LX_K_SECRET,
    LX_K_SHA256,
    LX_K_REDIS_URL,
    LX_K_MAP,
    LX_K_LIST
} lx_keytype;

enum {
    LX_KF_MIN_OPEN = 1 << 0, /* "> min" instead of ">= min" */
    LX_KF_NO_MAX = 1 << 1,   /* no upper bound */
    LX_KF_RESTART = 1 << 2,  /* only a restart applies a new value (what is set up once: the listeners, the
                                usage ledger); any other key takes effect at the next reload */
    LX_KF_NOT_KEPT = 1 << 3, /* read into the entry being built, not kept as given (an auth key's text is
                                hashed); reload compares what it became instead */
    LX_KF_DERIVED = 1 << 4,  /* not a key of the file: a field the loader sets; the walk never matches it */
    LX_KF_EMPTY_OK = 1 << 5, /* LX_K_STR: "" is a value (it means "the default"), not an error */
};

/* How reload reports the differences of a list. */
typedef enum {
    LX_DIFF_BY_FIELD, /* PATH.NAME for an entry added or removed, PATH.NAME.FIELD for a changed field */
    LX_DIFF_BY_ENTRY, /* PATH.NAME for an entry added, removed or changed */
    LX_DIFF_WHOLE,    /* PATH for any difference (entries compared by position) */
} lx_diff_report;

typedef struct lx_keydef lx_keydef;

/* Where a list lives in the snapshot and how reload compares it. */
typedef struct {
    size_t arr_off, count_off, elem_size; /* the array and its length, from the base of the row's table */
    ssize_t name_off;                     /* the entry's char *name, or -1 (compared by position) */
    const lx_keydef *rows;                /* of one entry, from the entry's base */
    lx_diff_report report;
    bool ordered; /* BY_FIELD / BY_ENTRY: the entries' order matters; a new order reports PATH */
} lx_keylist_desc;

struct lx_cfg_parser;
struct yaml_node_s;
/* Reads an LX_K_LIST value, or checks an LX_K_MAP section once all of it is read. */
typedef void (*lx_key_fn)(struct lx_cfg_parser *p, struct yaml_node_s *v, int line, const char *path, void *base);

struct lx_keydef {
    const char *name; /* NULL ends a table */
    lx_keytype type;
    size_t off; /* where the value lands, from the base of the struct the table fills */
    double def;
    const char *sdef;
    double min, max;
    unsigned flags;           /* LX_KF_* */
    const lx_keydef *sub;     /* LX_K_MAP: the section's table (same base) */
    const char *const *names; /* LX_K_ENUM: the values, NULL-terminated, in the enum's order */
    lx_key_fn fn;
    const lx_keylist_desc *list; /* LX_K_LIST */
    int mark;                    /* nonzero: index in the parser's marks */
};

/* The top table: every key of the file, in the schema's order. */
extern const lx_keydef lx_config_keys[];

#endif
