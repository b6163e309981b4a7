/*
 * The config loader's insides, shared by its three files and nothing else:
 *  - config.c: the key tables, the YAML walk, the lists' readers, errors, the snapshot's lifetime;
 *  - config_value.c: a scalar's text → a typed value, by its row's type, and what each type accepts;
 *  - config_check.c: what depends on several keys, checked and settled once the file is read.
 * Invariants: one parser per load, on one thread; errors go through lx_cfg_err only (see config.c).
 */
#ifndef LX_CONFIG_PARSE_H
#define LX_CONFIG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "config.h"
#include "config_keys.h"

#define MAX_KEYS 24 /* rows in the largest table */
#define PATH_LEN 256

/* marks[]: for the few keys other keys depend on, the line where each was given: > 0 when given and
 * valid, -1 when given but invalid, 0 when absent. */
enum { M_NONE, M_VLLM_URL, M_DEFAULT_MODEL, M_BACKENDS, M_COUNT };

/* Rows of the tables that checks name by position. */
enum { BK_TYPE, BK_ENABLED, BK_URL, BK_TIMEOUT, BK_MODELS };
enum { AU_ENABLED, AU_KEYS };
enum { AD_TOKEN, AD_TOKEN_FILE };
enum { US_ENABLED, US_DB_PATH, US_STORE, US_POSTGRES_URL, US_PASSWORD_FILE, US_GATEWAY_ID };
enum { MT_ENABLED, MT_PORT, MT_PER_USER, MT_TOKEN, MT_TOKEN_FILE };
enum { RA_NAME, RA_ROUTES, RA_DEFAULT, RA_MIN_CONFIDENCE, RA_MODEL_FILE, RA_RULES };

typedef struct {
    int line;            /* of the entry's name */
    int lines[MAX_KEYS]; /* of each key given in the entry, by lx_cfg_backend_keys row */
    bool bad;            /* an error was reported inside the entry */
} lx_cfg_backend_info;

typedef struct lx_cfg_error lx_cfg_error;

typedef struct lx_cfg_parser {
    const char *name;
    yaml_document_t *doc;
    lx_config *cfg;
    lx_cfg_error *errs;
    size_t n_errs, dropped;
    int marks[M_COUNT];
    lx_cfg_backend_info *bk; /* parallel to cfg->backends */
    int *alias_lines;        /* parallel to cfg->routing.aliases: the line of each alias's name */
    int *fallback_lines;     /* parallel to cfg->routing.fallbacks: the line of each entry's name */
    bool backends_bad;
    const int *sec_lines; /* while an LX_K_MAP's check runs: the line of each of its rows' keys, or 0 */
} lx_cfg_parser;

/* A backend's rows, for a backend the loader makes itself (the vllm: shorthand). */
extern const lx_keydef lx_cfg_backend_keys[];

/* config.c */
/* One problem: at line (0: none), about path (NULL: none; "": the top level). */
__attribute__((format(printf, 4, 5))) void lx_cfg_err(lx_cfg_parser *p, int line, const char *path, const char *fmt,
                                                      ...);
/* parent.key into out (PATH_LEN bytes), or key alone at the top level. */
void lx_cfg_join(char *out, const char *parent, const char *key);
/* Every row's default into the struct at base (sections included). */
void lx_cfg_set_defaults(const lx_keydef *tab, void *base);

/* config_value.c */
void lx_cfg_set_str(char **dst, const char *s);
/* Reads text s (plain: not quoted in the file) into dst by the row's type; false when not acceptable. */
bool lx_cfg_set_scalar(const lx_keydef *row, const char *s, bool plain, void *dst);
/* What a row accepts, for "must be ...". */
void lx_cfg_expectation(lx_buf *b, const lx_keydef *row);
/* Visible ASCII only, non-empty: fit for an HTTP header line. */
bool lx_cfg_is_token(const char *s);
/* A backend kind's index (backends/kind.h: built-in or registered), or -1. */
int lx_cfg_kind_parse(const char *s);

/* The parts of a Redis URL; the strings are allocated only when the pointers are not NULL. */
typedef struct {
    char **host, **socket_path;
    int port, db;
} lx_redis_parts;

bool lx_cfg_parse_redis_url(const char *s, lx_redis_parts *r);

/* config_check.c: the checks of sections (lx_key_fn of LX_K_MAP rows), and what the whole file settles. */
void lx_cfg_check_priorities(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
void lx_cfg_check_auth(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
void lx_cfg_check_admin(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
void lx_cfg_check_load(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
void lx_cfg_check_usage(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
void lx_cfg_check_metrics(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
void lx_cfg_check_auto(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base);
void lx_cfg_resolve(lx_cfg_parser *p);

#endif
