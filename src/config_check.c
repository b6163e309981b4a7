/*
 * Config checks: what depends on several keys, checked and settled once the keys it reads are read.
 * See config_parse.h.
 *
 * Two moments: a section's check (queue.priorities, auth, admin, usage) runs when its section was read without
 * an error; lx_cfg_resolve runs once the whole document is walked, and settles the backends (kind, url,
 * timeout), routing.aliases (each expanded to the models it stands for; loops, an alias shadowing a served
 * model and an alias to nothing refused), routing.fallbacks (from and to something, never to itself), default_model,
 * the vllm: shorthand's implicit backend, the per-user limits a user inherits from rate_limits.default, and
 * rate_limits.redis_url's parts. A backend with models: auto may serve any name once it is asked, so with one enabled,
 * an alias target or default_model that no backend lists is accepted.
 * Invariants: a check reports through lx_cfg_err and never stops the load; admin.token_file and
 * backends.NAME.api_key_file are read here (at most MAX_TOKEN_FILE bytes, a regular file) and the buffer wiped
 * whatever happens; a key is never quoted in a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config_parse.h"
#include "observe/usage_store.h"
#include "routing/analyzer.h"
#include "routing/classifier.h"
#include "utils/common.h"

#define MAX_TOKEN_FILE 4096 /* admin.token_file larger than this is refused */

/* ---- sections ---- */

void lx_cfg_check_priorities(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    const lx_config *c = base;
    if (c->queue.priority_high <= c->queue.priority_normal && c->queue.priority_normal <= c->queue.priority_low) return;
    lx_cfg_err(p, line, path,
               "must satisfy high <= normal <= low (lower is served first), got high %ld, normal %ld, low %ld",
               c->queue.priority_high, c->queue.priority_normal, c->queue.priority_low);
}

void lx_cfg_check_auth(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    (void)line;
    const lx_config *c = base;
    if (c->auth.enabled && c->auth.n_keys == 0)
        lx_cfg_err(p, p->sec_lines[AU_ENABLED], path,
                   "enabled with no keys: list them under keys: (- key_sha256: <64 hex digits>, user: <name>)");
}

/* Reads a secret from a file: a regular file of at most MAX_TOKEN_FILE bytes; trailing whitespace is dropped.
 * what names the secret in messages ("the admin token"); the secret itself is never quoted. */
static void read_secret_file(lx_cfg_parser *p, int line, const char *path, const char *file, const char *what,
                             char **dst)
{
    char buf[MAX_TOKEN_FILE + 1];
    ssize_t n = -1;
    struct stat st;
    int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        lx_cfg_err(p, line, path, "cannot read \"%s\": %s", file, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        lx_cfg_err(p, line, path, "cannot read \"%s\": not a regular file", file);
    } else if ((n = read(fd, buf, sizeof buf)) < 0) {
        lx_cfg_err(p, line, path, "cannot read \"%s\": %s", file, strerror(errno));
    } else if (n > MAX_TOKEN_FILE) {
        lx_cfg_err(p, line, path, "\"%s\" is larger than %d bytes: it should hold one token", file, MAX_TOKEN_FILE);
    } else {
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
        buf[n] = '\0';
        if (n == 0)
            lx_cfg_err(p, line, path, "\"%s\" is empty: it should hold %s", file, what);
        else if (strlen(buf) != (size_t)n || !lx_cfg_is_token(buf))
            lx_cfg_err(p, line, path,
                       "\"%s\" must hold one token of visible ASCII characters (no spaces inside; not shown)", file);
        else
            lx_cfg_set_str(dst, buf);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    if (fd >= 0) close(fd);
}

/* section.token or section.token_file, not both; the file is read now. */
static void check_token(lx_cfg_parser *p, const char *path, int token_line, int file_line, const char *file,
                        const char *what, char **dst)
{
    char sub[PATH_LEN], desc[32];
    lx_cfg_join(sub, path, "token_file");
    snprintf(desc, sizeof desc, "the %s token", what);
    if (token_line && file_line)
        lx_cfg_err(p, file_line, sub, "give %s.token or %s.token_file, not both (%s.token at line %d)", what, what,
                   what, token_line);
    else if (file_line)
        read_secret_file(p, file_line, sub, file, desc, dst);
}

void lx_cfg_check_admin(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    (void)line;
    lx_config *c = base;
    check_token(p, path, p->sec_lines[AD_TOKEN], p->sec_lines[AD_TOKEN_FILE], c->admin.token_file, "admin",
                &c->admin.token);
}

void lx_cfg_check_metrics(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    (void)line;
    lx_config *c = base;
    check_token(p, path, p->sec_lines[MT_TOKEN], p->sec_lines[MT_TOKEN_FILE], c->metrics.token_file, "metrics",
                &c->metrics.token);
}

/* backends.NAME.load: given, so loading is managed for this backend. */
void lx_cfg_check_load(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    (void)line;
    (void)path;
    (void)p;
    lx_backend_conf *b = base;
    b->load.enabled = true;
}

/* usage: the store's keys together ("" gateway_id: the ledger takes the host name). password_file is only
 * checked here (a readable regular file): the ledger reads it at each connect, so it may be rotated. */
void lx_cfg_check_usage(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    lx_config *c = base;
    char sub[PATH_LEN], why[256];
    const int *at = p->sec_lines;
    const char *url = c->usage.postgres_url;
    lx_cfg_join(sub, path, "postgres_url");
    if (url && !lx_usage_pg_url_ok(url, why, sizeof why))
        lx_cfg_err(p, at[US_POSTGRES_URL], sub, "%s", why);
    else if (c->usage.store == LX_USAGE_STORE_POSTGRES && url == NULL)
        lx_cfg_err(p, at[US_STORE] ? at[US_STORE] : line, sub,
                   "needed when usage.store is postgres (e.g. postgresql://lexora@127.0.0.1:5432/lexora)");
    const char *pwf = c->usage.password_file;
    struct stat st;
    lx_cfg_join(sub, path, "password_file");
    if (pwf && (stat(pwf, &st) != 0 || access(pwf, R_OK) != 0))
        lx_cfg_err(p, at[US_PASSWORD_FILE], sub, "cannot read \"%s\": %s", pwf, strerror(errno));
    else if (pwf && !S_ISREG(st.st_mode))
        lx_cfg_err(p, at[US_PASSWORD_FILE], sub, "cannot read \"%s\": not a regular file", pwf);
    lx_cfg_join(sub, path, "gateway_id");
    if (c->usage.gateway_id && c->usage.gateway_id[0] && !lx_usage_gateway_id_ok(c->usage.gateway_id))
        lx_cfg_err(p, at[US_GATEWAY_ID], sub, "must be 1 to %d letters, digits, '.', '_', '-' or ':', got \"%s\"",
                   LX_USAGE_GATEWAY_ID_MAX - 1, c->usage.gateway_id);
}

/* ---- routing.auto: the classes and the model, once the section is read ---- */

/* model_file as opened: a relative path is relative to the config file's folder. */
static void model_path(const lx_cfg_parser *p, const char *file, lx_buf *out)
{
    const char *slash = strrchr(p->name, '/');
    if (file[0] != '/' && slash) lx_buf_printf(out, "%.*s/", (int)(slash - p->name), p->name);
    lx_buf_append_str(out, file);
}

static void load_model(lx_cfg_parser *p, lx_config *c, const char *path)
{
    const char *file = c->routing.automatic.model_file;
    if (file == NULL || *file == '\0') {
        c->routing.automatic.model = lx_cls_builtin();
    } else {
        char err[256], sub[PATH_LEN];
        lx_buf full;
        lx_buf_init(&full, 0);
        model_path(p, file, &full);
        c->routing.automatic.model = lx_cls_load(full.p, err, sizeof err);
        lx_cfg_join(sub, path, "model_file");
        if (c->routing.automatic.model == NULL)
            lx_cfg_err(p, p->sec_lines[RA_MODEL_FILE], sub, "\"%s\": %s", full.p, err);
        lx_buf_free(&full);
    }
    if (c->routing.automatic.model)
        lx_cfg_set_str(&c->routing.automatic.model_digest, lx_cls_digest(c->routing.automatic.model));
}

static bool rule_class(const lx_config *c, const char *name)
{
    for (size_t i = 0; i < c->routing.automatic.n_rules; i++)
        if (strcmp(c->routing.automatic.rules[i].class_name, name) == 0) return true;
    return false;
}

void lx_cfg_check_auto(lx_cfg_parser *p, yaml_node_t *v, int line, const char *path, void *base)
{
    (void)v;
    (void)line;
    lx_config *c = base;
    c->routing.automatic.enabled = true;
    c->routing.automatic.name_line = p->sec_lines[RA_NAME];
    c->routing.automatic.default_line = p->sec_lines[RA_DEFAULT];
    load_model(p, c, path);
    for (size_t i = 0; i < c->routing.automatic.n_rules; i++) {
        const lx_auto_rule *r = &c->routing.automatic.rules[i];
        if (!lx_cfg_is_token(r->class_name) || strcmp(r->class_name, "default") == 0)
            lx_cfg_err(p, r->line, "routing.auto.rules",
                       "class \"%s\": must be a name of visible ASCII characters without spaces, not \"default\"",
                       r->class_name);
    }
    if (c->routing.automatic.model == NULL) return;
    for (size_t i = 0; i < c->routing.automatic.n_routes; i++) {
        const lx_auto_route *r = &c->routing.automatic.routes[i];
        if (lx_cls_find(c->routing.automatic.model, r->name, strlen(r->name)) >= 0 || rule_class(c, r->name)) continue;
        char sub[PATH_LEN];
        lx_buf b;
        lx_buf_init(&b, 0);
        lx_auto_class_names(c, &b);
        snprintf(sub, sizeof sub, "%s.routes.%s", path, r->name);
        lx_cfg_err(p, r->line, sub, "no such class (the classes: %s)", b.p ? b.p : "none");
        lx_buf_free(&b);
    }
}

/* ---- resolving what depends on several keys ---- */

static void resolve_users(lx_config *c)
{
    for (size_t i = 0; i < c->rate_limits.n_users; i++) {
        lx_user_limit *u = &c->rate_limits.users[i];
        if (u->requests_per_minute < 0) u->requests_per_minute = c->rate_limits.default_limit.requests_per_minute;
        if (u->tokens_per_minute < 0) u->tokens_per_minute = c->rate_limits.default_limit.tokens_per_minute;
    }
}

static void resolve_kind(lx_cfg_parser *p, lx_backend_conf *b, const lx_cfg_backend_info *bi, const char *path)
{
    int by_name = lx_cfg_kind_parse(b->name);
    if (b->kind != LX_BACKEND_KIND_NONE) {
        if (by_name >= 0 && by_name != (int)b->kind)
            lx_cfg_err(p, bi->lines[BK_TYPE], path,
                       "type %s contradicts the entry's name \"%s\", which is a backend kind: "
                       "rename the entry or drop type:",
                       lx_backend_kind_name(b->kind), b->name);
    } else if (by_name >= 0) {
        b->kind = (lx_backend_kind)by_name;
    } else if (!bi->lines[BK_TYPE]) {
        lx_cfg_err(p, bi->line, path, "no type: add \"type: vllm|ollama|llamacpp|openai|anthropic\"");
    }
}

static void resolve_url(lx_cfg_parser *p, lx_backend_conf *b, const lx_cfg_backend_info *bi, const char *path)
{
    const lx_config *c = p->cfg;
    bool vllm_entry = strcmp(b->name, "vllm") == 0;
    if (b->url == NULL) {
        if (bi->lines[BK_URL]) return; /* given but bad: reported */
        if (vllm_entry)
            b->url = lx_xstrdup(c->vllm.url);
        else if (b->enabled)
            lx_cfg_err(p, bi->line, path, "no url: add \"url: http://host:port\"");
        return;
    }
    if (vllm_entry && p->marks[M_VLLM_URL] > 0 && strcmp(b->url, c->vllm.url) != 0)
        lx_cfg_err(p, bi->lines[BK_URL], "backends.vllm.url",
                   "\"%s\" contradicts vllm.url \"%s\" (line %d): "
                   "give the url in one place, or the same in both",
                   b->url, c->vllm.url, p->marks[M_VLLM_URL]);
}

/* The line where a backend entry gave the key of that name, or 0. */
static int key_line(const lx_cfg_backend_info *bi, const char *key)
{
    for (size_t i = 0; lx_cfg_backend_keys[i].name && i < MAX_KEYS; i++)
        if (strcmp(lx_cfg_backend_keys[i].name, key) == 0) return bi->lines[i];
    return 0;
}

/* api_key, api_key_file or api_key_env (at most one): the key lands in api_key; type anthropic needs one. */
static void resolve_api_key(lx_cfg_parser *p, lx_backend_conf *b, const lx_cfg_backend_info *bi, const char *path)
{
    int inline_line = key_line(bi, "api_key"), file_line = key_line(bi, "api_key_file");
    int env_line = key_line(bi, "api_key_env");
    char sub[PATH_LEN];
    if (!b->enabled) return; /* read when it is enabled (every reload reads the file again) */
    if ((inline_line > 0) + (file_line > 0) + (env_line > 0) > 1) {
        lx_cfg_err(p, file_line ? file_line : env_line, path, "give one of api_key, api_key_file and api_key_env");
        return;
    }
    if (b->api_key_file) {
        lx_cfg_join(sub, path, "api_key_file");
        read_secret_file(p, file_line, sub, b->api_key_file, "the backend's API key", &b->api_key);
    } else if (b->api_key_env) {
        lx_cfg_join(sub, path, "api_key_env");
        const char *v = getenv(b->api_key_env);
        if (v == NULL || v[0] == '\0')
            lx_cfg_err(p, env_line, sub, "the environment variable %s is not set or empty", b->api_key_env);
        else if (!lx_cfg_is_token(v))
            lx_cfg_err(p, env_line, sub, "the environment variable %s must hold one token of visible ASCII (not shown)",
                       b->api_key_env);
        else
            lx_cfg_set_str(&b->api_key, v);
    }
    if (b->kind == LX_BACKEND_ANTHROPIC && b->api_key == NULL && !inline_line && !file_line && !env_line)
        lx_cfg_err(p, bi->line, path, "type anthropic needs a key: add api_key_file, api_key_env or api_key");
}

/* ca_file must be readable now, rather than fail every request later. */
static void resolve_tls(lx_cfg_parser *p, const lx_backend_conf *b, const lx_cfg_backend_info *bi, const char *path)
{
    if (b->ca_file == NULL) return;
    char sub[PATH_LEN];
    lx_cfg_join(sub, path, "ca_file");
    int fd = open(b->ca_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        lx_cfg_err(p, key_line(bi, "ca_file"), sub, "cannot read \"%s\": %s", b->ca_file, strerror(errno));
    else
        close(fd);
}

/* What can be loaded and unloaded: LoRA adapters and sleep mode are vLLM's; load: needs a kind that can load. */
static void resolve_loading(lx_cfg_parser *p, lx_backend_conf *b, const lx_cfg_backend_info *bi, const char *path)
{
    bool vllm = b->kind == LX_BACKEND_VLLM, lora = false;
    for (size_t i = 0; i < b->n_models; i++)
        lora |= b->models[i].lora_path != NULL;
    if (lora && !vllm)
        lx_cfg_err(p, bi->line, path, "lora_path is for vLLM backends (runtime LoRA adapters), not type %s",
                   lx_backend_kind_name(b->kind));
    if (b->sleep_mode && !vllm)
        lx_cfg_err(p, bi->line, path, "sleep_mode is for vLLM backends (--enable-sleep-mode), not type %s",
                   lx_backend_kind_name(b->kind));
    bool can_load = b->kind == LX_BACKEND_OLLAMA || b->kind == LX_BACKEND_LLAMACPP || (vllm && (b->sleep_mode || lora));
    if (b->load.enabled && !can_load)
        lx_cfg_err(p, bi->line, path,
                   "load: needs a backend that can load models: type ollama, llamacpp (router mode), or vllm with "
                   "sleep_mode: true or LoRA models (lora_path)");
    else if (b->load.enabled && b->models_auto)
        lx_cfg_err(p, bi->line, path, "load: needs the models it loads listed (models: [...]), not models: auto");
}

static void resolve_backend(lx_cfg_parser *p, lx_backend_conf *b, const lx_cfg_backend_info *bi)
{
    char path[PATH_LEN];
    lx_cfg_join(path, "backends", b->name);
    resolve_kind(p, b, bi, path);
    resolve_api_key(p, b, bi, path);
    resolve_tls(p, b, bi, path);
    if (!bi->lines[BK_TIMEOUT]) b->timeout_s = p->cfg->vllm.timeout_s;
    resolve_url(p, b, bi, path);
    resolve_loading(p, b, bi, path);
    if (b->enabled && b->n_models == 0 && !b->models_auto && !bi->bad)
        lx_cfg_err(p, bi->line, path, "lists no models: add \"models: [<model name>]\" or \"models: auto\"");
}

/* Without backends:, vllm: is the one backend, serving default_model. */
static void implicit_backend(lx_cfg_parser *p)
{
    lx_config *c = p->cfg;
    if (c->default_model == NULL) {
        if (p->marks[M_DEFAULT_MODEL] == 0)
            lx_cfg_err(p, 0, "default_model",
                       "missing: name the model vLLM serves (default_model: \"<model>\"), "
                       "or list backends: with their models");
        return;
    }
    c->backends = lx_xcalloc(1, sizeof *c->backends);
    c->n_backends = 1;
    lx_backend_conf *b = c->backends;
    lx_cfg_set_defaults(lx_cfg_backend_keys, b); /* max_concurrency, adaptive, priority, ...: their defaults */
    b->name = lx_xstrdup("vllm");
    b->kind = LX_BACKEND_VLLM;
    b->enabled = true;
    b->url = lx_xstrdup(c->vllm.url);
    b->timeout_s = c->vllm.timeout_s;
    b->models = lx_xcalloc(1, sizeof *b->models);
    b->n_models = 1;
    b->models[0].name = lx_xstrdup(c->default_model);
}

static void served_models(const lx_config *c, lx_buf *b)
{
    for (size_t i = 0; i < c->n_backends; i++) {
        if (!c->backends[i].enabled) continue;
        for (size_t j = 0; j < c->backends[i].n_models; j++)
            lx_buf_printf(b, "%s%s", b->len ? ", " : "", c->backends[i].models[j].name);
    }
    if (b->len == 0) lx_buf_append_str(b, "none");
}

/* Does an enabled backend discover its models (models: auto)? Then any name may be served later. */
static bool any_auto(const lx_config *c)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (c->backends[i].enabled && c->backends[i].models_auto) return true;
    return false;
}

static void resolve_default_model(lx_cfg_parser *p)
{
    lx_config *c = p->cfg;
    const lx_backend_conf *first = NULL;
    for (size_t i = 0; i < c->n_backends && !first; i++)
        if (c->backends[i].enabled && c->backends[i].n_models) first = &c->backends[i];
    if (c->default_model == NULL) {
        if (first && p->marks[M_DEFAULT_MODEL] == 0) c->default_model = lx_xstrdup(first->models[0].name);
        return;
    }
    if (p->backends_bad || lx_config_backend_for(c, c->default_model, strlen(c->default_model)) ||
        lx_config_alias(c, c->default_model, strlen(c->default_model)) || any_auto(c))
        return;
    lx_buf b;
    lx_buf_init(&b, 1024);
    served_models(c, &b);
    lx_cfg_err(p, p->marks[M_DEFAULT_MODEL], "default_model",
               "\"%s\" is not served by any enabled backend (served: %s)", c->default_model, b.p);
    lx_buf_free(&b);
}

/* ---- routing.aliases ---- */

typedef struct {
    const lx_alias *stack[64]; /* the aliases being expanded, outermost first */
    size_t depth;
    bool bad;
} expansion;

static void add_model(lx_alias *a, const char *name)
{
    for (size_t i = 0; i < a->n_models; i++)
        if (strcmp(a->models[i], name) == 0) return;
    a->models = lx_xrealloc(a->models, (a->n_models + 1) * sizeof *a->models);
    a->models[a->n_models++] = lx_xstrdup(name);
}

static void loop_error(lx_cfg_parser *p, const lx_alias *root, expansion *x, const char *path, const char *back)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    for (size_t i = 0; i < x->depth; i++)
        lx_buf_printf(&b, "%s -> ", x->stack[i]->name);
    lx_buf_append_str(&b, back);
    lx_cfg_err(p, p->alias_lines[root - p->cfg->routing.aliases], path, "alias loop: %s", b.p);
    lx_buf_free(&b);
    x->bad = true;
}

/* Appends to root->models the models a stands for, depth first, in order; reports loops and targets that
 * are nothing. */
static void expand(lx_cfg_parser *p, lx_alias *root, const lx_alias *a, expansion *x, const char *path)
{
    const lx_config *c = p->cfg;
    int line = p->alias_lines[root - c->routing.aliases];
    x->stack[x->depth++] = a;
    for (size_t i = 0; i < a->n_targets && !x->bad; i++) {
        const char *t = a->targets[i];
        const lx_alias *inner = lx_config_alias(c, t, strlen(t));
        bool looped = false;
        for (size_t k = 0; k < x->depth && inner; k++)
            looped |= x->stack[k] == inner;
        if (looped || (inner && x->depth == LX_ARRAY_LEN(x->stack)))
            loop_error(p, root, x, path, t);
        else if (inner)
            expand(p, root, inner, x, path);
        else if (lx_config_backend_for(c, t, strlen(t)) || any_auto(c))
            add_model(root, t);
        else if (a == root)
            lx_cfg_err(p, line, path, "\"%s\" is neither a model an enabled backend serves nor an alias", t);
        else
            lx_cfg_err(p, line, path, "\"%s\" (through alias %s) is neither a served model nor an alias", t, a->name);
    }
    x->depth--;
}

static void resolve_aliases(lx_cfg_parser *p)
{
    lx_config *c = p->cfg;
    for (size_t i = 0; i < c->routing.n_aliases; i++) {
        lx_alias *a = &c->routing.aliases[i];
        char path[PATH_LEN];
        lx_cfg_join(path, "routing.aliases", a->name);
        const lx_backend_conf *b = lx_config_backend_for(c, a->name, strlen(a->name));
        if (b) {
            lx_cfg_err(p, p->alias_lines[i], path,
                       "shadows the model of that name served by backend %s: rename the alias", b->name);
            continue;
        }
        expansion x = {.depth = 0};
        expand(p, a, a, &x, path);
    }
}

/* ---- routing.fallbacks ---- */

/* Is name a model an enabled backend serves, an alias, or (with models: auto) possibly served later? */
static bool names_something(const lx_config *c, const char *name)
{
    return lx_config_backend_for(c, name, strlen(name)) || lx_config_alias(c, name, strlen(name)) || any_auto(c);
}

static void resolve_fallbacks(lx_cfg_parser *p)
{
    const lx_config *c = p->cfg;
    for (size_t i = 0; i < c->routing.n_fallbacks; i++) {
        const lx_fallback *f = &c->routing.fallbacks[i];
        char path[PATH_LEN];
        lx_cfg_join(path, "routing.fallbacks", f->name);
        if (!names_something(c, f->name))
            lx_cfg_err(p, p->fallback_lines[i], path,
                       "\"%s\" is neither a model an enabled backend serves nor an alias", f->name);
        for (size_t k = 0; k < f->n_targets; k++) {
            const char *t = f->targets[k];
            if (strcmp(t, f->name) == 0)
                lx_cfg_err(p, p->fallback_lines[i], path, "falls back to itself: name another model");
            else if (!names_something(c, t))
                lx_cfg_err(p, p->fallback_lines[i], path,
                           "\"%s\" is neither a model an enabled backend serves nor an alias (a fallback to nothing)",
                           t);
        }
    }
}

/* ---- experiments ---- */

static void check_experiment(lx_cfg_parser *p, const lx_experiment *e, const char *path)
{
    const lx_config *c = p->cfg;
    if (e->model == NULL)
        lx_cfg_err(p, e->line, path, "needs model: the model or alias whose requests take part");
    else if (!names_something(c, e->model))
        lx_cfg_err(p, e->line, path, "model \"%s\" is neither a model an enabled backend serves nor an alias",
                   e->model);
    if (e->n_variants < 2) lx_cfg_err(p, e->line, path, "needs at least two variants (model or alias: weight)");
    double sum = 0;
    for (size_t k = 0; k < e->n_variants; k++) {
        sum += e->variants[k].weight;
        if (!names_something(c, e->variants[k].name))
            lx_cfg_err(p, e->line, path, "variant \"%s\" is neither a model an enabled backend serves nor an alias",
                       e->variants[k].name);
    }
    if (e->n_variants >= 2 && sum <= 0) lx_cfg_err(p, e->line, path, "the variants' weights add up to 0");
    if (e->mode == LX_EXP_ADAPTIVE && e->min_weight * (double)e->n_variants > 100)
        lx_cfg_err(p, e->line, path, "min_weight %g %% for %zu variants is more than 100 %%", e->min_weight,
                   e->n_variants);
}

static void resolve_experiments(lx_cfg_parser *p)
{
    const lx_config *c = p->cfg;
    for (size_t i = 0; i < c->n_experiments; i++) {
        const lx_experiment *e = &c->experiments[i];
        char path[PATH_LEN];
        lx_cfg_join(path, "experiments", e->name);
        check_experiment(p, e, path);
        for (size_t j = 0; j < i && e->enabled && e->model; j++)
            if (c->experiments[j].enabled && c->experiments[j].model && strcmp(c->experiments[j].model, e->model) == 0)
                lx_cfg_err(p, e->line, path, "model \"%s\" already takes part in experiment %s: one at a time",
                           e->model, c->experiments[j].name);
    }
}

/* ---- routing.auto: its name and where its routes go ---- */

static void check_auto_target(lx_cfg_parser *p, int line, const char *path, const char *t)
{
    const lx_config *c = p->cfg;
    if (strcmp(t, c->routing.automatic.name) == 0)
        lx_cfg_err(p, line, path, "\"%s\" is routing.auto.name itself: name a model or an alias", t);
    else if (!names_something(c, t))
        lx_cfg_err(p, line, path,
                   "\"%s\" is neither a model an enabled backend serves nor an alias (a route to nothing)", t);
}

static void resolve_auto(lx_cfg_parser *p)
{
    const lx_config *c = p->cfg;
    const char *name = c->routing.automatic.name;
    if (!c->routing.automatic.enabled) return;
    const lx_backend_conf *b = lx_config_backend_for(c, name, strlen(name));
    if (lx_config_alias(c, name, strlen(name)))
        lx_cfg_err(p, c->routing.automatic.name_line, "routing.auto.name", "\"%s\" is also an alias: rename one", name);
    else if (b)
        lx_cfg_err(p, c->routing.automatic.name_line, "routing.auto.name",
                   "\"%s\" is a model backend %s serves: choose another name", name, b->name);
    for (size_t i = 0; i < c->routing.automatic.n_routes; i++) {
        char path[PATH_LEN];
        snprintf(path, sizeof path, "routing.auto.routes.%s", c->routing.automatic.routes[i].name);
        check_auto_target(p, c->routing.automatic.routes[i].line, path, c->routing.automatic.routes[i].target);
    }
    for (size_t i = 0; i < c->routing.automatic.n_rules; i++) {
        char path[PATH_LEN];
        snprintf(path, sizeof path, "routing.auto.rules[%zu].route", i);
        if (c->routing.automatic.rules[i].route)
            check_auto_target(p, c->routing.automatic.rules[i].line, path, c->routing.automatic.rules[i].route);
    }
    if (c->routing.automatic.default_route)
        check_auto_target(p, c->routing.automatic.default_line, "routing.auto.default",
                          c->routing.automatic.default_route);
}

/* rate_limits.redis_url, already checked, into its parts. */
static void resolve_redis(lx_config *c)
{
    lx_redis_parts r = {.host = &c->rate_limits.redis.host, .socket_path = &c->rate_limits.redis.socket_path};
    if (c->rate_limits.redis_url == NULL || !lx_cfg_parse_redis_url(c->rate_limits.redis_url, &r)) return;
    c->rate_limits.redis.port = r.port;
    c->rate_limits.redis.db = r.db;
}

void lx_cfg_resolve(lx_cfg_parser *p)
{
    lx_config *c = p->cfg;
    resolve_users(c);
    resolve_redis(c);
    if (p->marks[M_BACKENDS] < 0) return; /* not a mapping: reported */
    if (p->marks[M_BACKENDS] == 0) {
        implicit_backend(p);
        if (c->n_backends) resolve_aliases(p);
        if (c->n_backends) resolve_auto(p);
        if (c->n_backends) resolve_fallbacks(p);
        if (c->n_backends) resolve_experiments(p);
        return;
    }
    bool any_enabled = false;
    for (size_t i = 0; i < c->n_backends; i++) {
        resolve_backend(p, &c->backends[i], &p->bk[i]);
        any_enabled |= c->backends[i].enabled;
    }
    if (!any_enabled) {
        lx_cfg_err(p, p->marks[M_BACKENDS], "backends",
                   "no enabled backend: list one with enabled: true (the default)");
        return;
    }
    if (!p->backends_bad) resolve_aliases(p);
    resolve_default_model(p);
    if (!p->backends_bad) resolve_auto(p);
    if (!p->backends_bad) resolve_fallbacks(p);
    if (!p->backends_bad) resolve_experiments(p);
}
