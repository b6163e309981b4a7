/*
 * Models loaded and unloaded on demand. See loader.h.
 * Invariants: a model has at most one load or unload request out (up); a model being unloaded for a switch
 * takes no new request and its unload is sent once its requests in flight are done; state changes go
 * through set_state, which stamps since_ns.
 */
#include "backends/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/kind.h"
#include "observe/stats.h"
#include "utils/common.h"
#include "utils/log.h"

#define TICK_MS 1000

typedef struct lmodel lmodel;
typedef struct lbackend lbackend;

struct lmodel {
    lx_loader *l;
    lbackend *lb;
    char *name; /* the config's model name */
    lx_load_state state;
    uint64_t since_ns, loaded_ns, used_ns;
    int in_flight;
    bool asked; /* its load was asked for by a waiting request or the admin (not the tick's own) */
    uint64_t loads, failures;
    double load_s;    /* total seconds its loads took */
    char error[240];  /* why its last load failed */
    lx_upstream *up;  /* its load or unload request out, or the poll of its load's status */
    bool polling;     /* up is a GET of the kind's load_status_path */
    uv_timer_t *poll; /* the pause between two polls; closed with the model */
    lx_kind_request kreq;
    lx_buf url, reply; /* reply: the answer's body (its first 4 KiB) */
    int status;        /* the answer's HTTP status */
};

struct lbackend {
    char *name;
    lmodel **m;
    size_t n;
};

struct lx_loader {
    uv_loop_t *loop;
    lx_http_client *client;
    lx_loader_cbs cbs;
    lx_config *cfg;
    lbackend *b;
    size_t n;
    uv_timer_t tick;
};

static const char *const state_names[] = {"unloaded", "loading", "loaded", "unloading", "sleeping", "failed"};

const char *lx_load_state_name(lx_load_state s) { return state_names[s]; }

/* ---------- lookups ---------- */

static lbackend *backend_of(const lx_loader *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->b[i].name, name) == 0) return &l->b[i];
    return NULL;
}

static lmodel *model_of(const lbackend *lb, const char *name)
{
    for (size_t i = 0; lb && i < lb->n; i++)
        if (strcmp(lb->m[i]->name, name) == 0) return lb->m[i];
    return NULL;
}

static const lx_backend_conf *conf_of(const lx_loader *l, const char *backend)
{
    for (size_t i = 0; l->cfg && i < l->cfg->n_backends; i++)
        if (strcmp(l->cfg->backends[i].name, backend) == 0) return &l->cfg->backends[i];
    return NULL;
}

static lmodel *managed(const lx_loader *l, const lx_backend *b, const char *model)
{
    return model_of(backend_of(l, lx_backend_name(b)), model);
}

static void set_state(lmodel *m, lx_load_state s)
{
    m->state = s;
    m->since_ns = lx_now_ns();
}

static size_t waiting(const lx_loader *l, const lmodel *m, uint64_t *oldest)
{
    *oldest = UINT64_MAX;
    return l->cbs.waiting ? l->cbs.waiting(l->cbs.ud, m->name, oldest) : 0;
}

/* ---------- load and unload requests ---------- */

static void decide(lx_loader *l, lbackend *lb);

static void on_head(lx_upstream *u, const lx_up_head *h, void *ud)
{
    (void)u;
    lmodel *m = ud;
    m->status = h->status;
}

static bool on_body(lx_upstream *u, const char *data, size_t len, void *ud)
{
    (void)u;
    lmodel *m = ud;
    if (m->reply.len < 4096) lx_buf_append(&m->reply, data, LX_MIN(len, 4096 - m->reply.len));
    return true;
}

static void poll_status(lx_loader *l, lmodel *m);

static void load_done(lx_loader *l, lmodel *m, double took)
{
    m->loads++;
    m->load_s += took;
    m->error[0] = '\0';
    set_state(m, LX_LOAD_LOADED);
    m->asked = false;
    m->loaded_ns = m->used_ns = m->since_ns;
    LX_INFO(NULL, "backend %s: model %s loaded in %.3f s", m->lb->name, m->name, took);
    (void)l;
}

static void load_failed(lx_loader *l, lmodel *m)
{
    m->failures++;
    set_state(m, LX_LOAD_FAILED);
    LX_WARN(NULL, "%s", m->error);
    if (l->cbs.failed) l->cbs.failed(l->cbs.ud, m->name, m->error);
}

/* The answer to a poll of the load's status: loaded, failed, or poll again in LOAD_POLL_MS. */
static void polled(lx_loader *l, lmodel *m, bool ok, int status)
{
    const lx_backend_conf *bc = conf_of(l, m->lb->name);
    const lx_kind *k = bc ? lx_kind_get(bc->kind) : NULL;
    int st = ok && status == 200 && k && k->load_status && m->reply.p
                 ? k->load_status(m->reply.p, m->reply.len, lx_backend_conf_upstream(bc, m->name))
                 : 0;
    if (st == 1) {
        load_done(l, m, (double)(lx_now_ns() - m->since_ns) / 1e9);
    } else if (st < 0) {
        snprintf(m->error, sizeof m->error, "backend %s could not load %s: its status says it failed", m->lb->name,
                 m->name);
        load_failed(l, m);
    } else {
        poll_status(l, m);
    }
}

static void on_done(lx_upstream *u, lx_up_result r, const char *detail, void *ud)
{
    (void)u;
    lmodel *m = ud;
    lx_loader *l = m->l;
    m->up = NULL;
    int status = r == LX_UP_OK ? m->status : 0;
    const lx_backend_conf *kc = conf_of(l, m->lb->name);
    const lx_kind *kind = kc ? lx_kind_get(kc->kind) : NULL;
    lx_slice body = {m->reply.p ? m->reply.p : "", m->reply.len};
    bool unload = m->state == LX_LOAD_UNLOADING;
    bool ok = r == LX_UP_OK &&
              (kind && kind->control_done ? kind->control_done(status, body, unload) : status >= 200 && status < 300);
    double took = (double)(lx_now_ns() - m->since_ns) / 1e9;
    if (m->state == LX_LOAD_LOADING && m->polling) {
        m->polling = false;
        polled(l, m, r == LX_UP_OK, status);
    } else if (m->state == LX_LOAD_LOADING) {
        if (ok && kind && kind->load_status_path) {
            poll_status(l, m); /* the backend loads after it answered: wait until its status says loaded */
        } else if (ok) {
            load_done(l, m, took);
        } else {
            if (r != LX_UP_OK)
                snprintf(m->error, sizeof m->error, "backend %s could not load %s: %s (%s)", m->lb->name, m->name,
                         lx_up_result_name(r), detail);
            else
                snprintf(m->error, sizeof m->error, "backend %s could not load %s: HTTP %d %.180s", m->lb->name,
                         m->name, status, body.p);
            load_failed(l, m);
        }
    } else if (m->state == LX_LOAD_UNLOADING) {
        bool sleeps = kc && kc->sleep_mode && lx_backend_conf_lora(kc, m->name) == NULL;
        if (ok) {
            set_state(m, sleeps ? LX_LOAD_SLEEPING : LX_LOAD_UNLOADED);
            LX_INFO(NULL, "backend %s: model %s %s", m->lb->name, m->name, sleeps ? "asleep" : "unloaded");
        } else {
            set_state(m, LX_LOAD_LOADED); /* it is most likely still there */
            m->loaded_ns = m->since_ns;
            LX_WARN(NULL, "backend %s could not unload %s: %s %.180s", m->lb->name, m->name,
                    r != LX_UP_OK ? lx_up_result_name(r) : "HTTP", body.p);
        }
    }
    lx_buf_reset(&m->reply);
    lx_kind_request_reset(&m->kreq);
    if (l->cbs.changed) l->cbs.changed(l->cbs.ud);
    decide(l, m->lb);
}

static const lx_upstream_cbs up_cbs = {on_head, on_body, on_done};

#define LOAD_POLL_MS 200

static void on_poll_timer(uv_timer_t *t)
{
    lmodel *m = t->data;
    const lx_backend_conf *bc = conf_of(m->l, m->lb->name);
    const lx_kind *k = bc ? lx_kind_get(bc->kind) : NULL;
    if (m->state != LX_LOAD_LOADING || k == NULL || k->load_status_path == NULL) return;
    lx_kind_request_reset(&m->kreq);
    lx_kind_ctx ctx = {.ep = LX_EP_CHAT, .backend = bc};
    lx_kind_control(&ctx, &m->kreq, k->load_status_path, NULL, NULL, NULL, NULL, NULL); /* its auth header */
    lx_buf_reset(&m->url);
    lx_buf_printf(&m->url, "%s%s", bc->url, k->load_status_path);
    lx_buf_reset(&m->reply);
    lx_upstream_req ur = {.method = "GET",
                          .url = m->url.p,
                          .headers = m->kreq.headers,
                          .timeout_ms = 10000,
                          .ca_file = bc->ca_file,
                          .tls_insecure = !bc->tls_verify};
    m->polling = true;
    m->up = lx_upstream_start(m->l->client, &ur, &up_cbs, m);
}

/* Asks the backend for the load's status in LOAD_POLL_MS (the tick fails it past load_timeout_seconds). */
static void poll_status(lx_loader *l, lmodel *m)
{
    if (m->poll == NULL) {
        m->poll = lx_xmalloc(sizeof *m->poll);
        uv_timer_init(l->loop, m->poll);
        m->poll->data = m;
    }
    uv_timer_start(m->poll, on_poll_timer, LOAD_POLL_MS, 0);
}

/* Sends m's load (load) or unload request through its backend's kind; false when the kind cannot. */
static bool send_request(lx_loader *l, lmodel *m, bool load)
{
    const lx_backend_conf *bc = conf_of(l, m->lb->name);
    const lx_kind *k = bc ? lx_kind_get(bc->kind) : NULL;
    int (*op)(const lx_kind_ctx *, const char *, lx_kind_request *) = k ? (load ? k->load : k->unload) : NULL;
    if (op == NULL) return false;
    lx_kind_ctx ctx = {.ep = LX_EP_CHAT, .backend = bc};
    lx_kind_request_reset(&m->kreq);
    if (op(&ctx, m->name, &m->kreq) != 0) return false;
    lx_buf_reset(&m->url);
    lx_buf_printf(&m->url, "%s%s", bc->url, m->kreq.path);
    lx_buf_reset(&m->reply);
    lx_upstream_req ur = {
        .method = "POST",
        .url = m->url.p,
        .headers = m->kreq.headers,
        .body = m->kreq.body.p,
        .body_len = m->kreq.body.len,
        .timeout_ms = (uint64_t)(bc->load.load_timeout_s * 1000.0),
        .ca_file = bc->ca_file,
        .tls_insecure = !bc->tls_verify,
    };
    set_state(m, load ? LX_LOAD_LOADING : LX_LOAD_UNLOADING);
    LX_INFO(NULL, "backend %s: %s model %s", m->lb->name, load ? "loading" : "unloading", m->name);
    m->up = lx_upstream_start(l->client, &ur, &up_cbs, m);
    return true;
}

/* ---------- the policy ---------- */

static bool holds_memory(const lmodel *m) { return m->state == LX_LOAD_LOADED || m->state == LX_LOAD_LOADING; }

/* The model to load next: of those not loaded with requests waiting, the one whose oldest waits longest. */
static lmodel *next_to_load(lx_loader *l, lbackend *lb, uint64_t *oldest_out)
{
    lmodel *best = NULL;
    uint64_t best_t = UINT64_MAX;
    for (size_t i = 0; i < lb->n; i++) {
        lmodel *m = lb->m[i];
        uint64_t t;
        if (holds_memory(m) || m->state == LX_LOAD_UNLOADING || m->state == LX_LOAD_FAILED) continue;
        if (waiting(l, m, &t) == 0 && !m->asked) continue;
        if (m->asked && t == UINT64_MAX) t = m->since_ns;
        if (best == NULL || t < best_t) best = m, best_t = t;
    }
    *oldest_out = best_t;
    return best;
}

static bool resident_long_enough(const lx_backend_conf *bc, const lmodel *m, uint64_t now)
{
    return now - m->loaded_ns >= (uint64_t)(bc->load.min_resident_s * 1e9);
}

/* The least recently used loaded model that may go (resident long enough); with idle_only, only one that
 * nobody used or waited for in the last switch_after_seconds (so alternating traffic is not a swap per request). */
static lmodel *victim(lx_loader *l, lbackend *lb, const lx_backend_conf *bc, bool idle_only, uint64_t now)
{
    lmodel *best = NULL;
    uint64_t quiet = (uint64_t)(bc->load.switch_after_s * 1e9);
    for (size_t i = 0; i < lb->n; i++) {
        lmodel *m = lb->m[i];
        uint64_t t;
        if (m->state != LX_LOAD_LOADED || !resident_long_enough(bc, m, now)) continue;
        if (idle_only && (m->in_flight > 0 || waiting(l, m, &t) > 0 || now - m->used_ns < quiet)) continue;
        if (best == NULL || m->used_ns < best->used_ns) best = m;
    }
    return best;
}

/* A model told to stop taking requests is unloaded once its last request in flight ends. */
static void unload_when_idle(lx_loader *l, lmodel *m)
{
    if (m->in_flight > 0) {
        set_state(m, LX_LOAD_UNLOADING); /* no new request; the unload is sent at its last end */
        if (l->cbs.changed) l->cbs.changed(l->cbs.ud);
        return;
    }
    if (!send_request(l, m, false)) set_state(m, LX_LOAD_UNLOADED);
}

static void unload_idle(lx_loader *l, lbackend *lb, const lx_backend_conf *bc, uint64_t now)
{
    if (!(bc->load.idle_unload_s > 0)) return;
    for (size_t i = 0; i < lb->n; i++) {
        lmodel *m = lb->m[i];
        uint64_t t;
        if (m->state != LX_LOAD_LOADED || m->in_flight > 0 || waiting(l, m, &t) > 0) continue;
        if (now - m->used_ns < (uint64_t)(bc->load.idle_unload_s * 1e9) || !resident_long_enough(bc, m, now)) continue;
        LX_INFO(NULL, "backend %s: model %s unused for %.0f s (load.idle_unload_seconds)", lb->name, m->name,
                (double)(now - m->used_ns) / 1e9);
        unload_when_idle(l, m);
    }
}

static void decide(lx_loader *l, lbackend *lb)
{
    const lx_backend_conf *bc = conf_of(l, lb->name);
    if (bc == NULL) return;
    uint64_t now = lx_now_ns(), oldest;
    unload_idle(l, lb, bc, now);
    for (size_t i = 0; i < lb->n; i++)
        if (lb->m[i]->state == LX_LOAD_UNLOADING) return; /* one change at a time: the unload first */
    lmodel *next = next_to_load(l, lb, &oldest);
    if (next == NULL || (!bc->load.on_demand && !next->asked)) return;
    size_t held = 0;
    for (size_t i = 0; i < lb->n; i++)
        held += holds_memory(lb->m[i]);
    if (bc->load.max_loaded == 0 || held < (size_t)bc->load.max_loaded) {
        next->asked = false;
        if (!send_request(l, next, true)) set_state(next, LX_LOAD_LOADED);
        return;
    }
    for (size_t i = 0; i < lb->n; i++)
        if (lb->m[i]->state == LX_LOAD_LOADING) return; /* full, and a load is out: wait for it */
    lmodel *v = victim(l, lb, bc, true, now);
    if (v == NULL && oldest != UINT64_MAX && now - oldest >= (uint64_t)(bc->load.switch_after_s * 1e9))
        v = victim(l, lb, bc, false, now);
    if (v == NULL) return;
    LX_INFO(NULL, "backend %s: model %s makes room for %s (load.max_loaded %d)", lb->name, v->name, next->name,
            bc->load.max_loaded);
    unload_when_idle(l, v);
}

static void timed_out(lx_loader *l, lbackend *lb, const lx_backend_conf *bc, uint64_t now)
{
    for (size_t i = 0; i < lb->n; i++) {
        lmodel *m = lb->m[i];
        if (m->state != LX_LOAD_LOADING || now - m->since_ns < (uint64_t)(bc->load.load_timeout_s * 1e9)) continue;
        if (m->up) lx_upstream_cancel(m->up);
        m->up = NULL;
        m->failures++;
        snprintf(m->error, sizeof m->error, "backend %s did not load %s within %g s (load.load_timeout_seconds)",
                 lb->name, m->name, bc->load.load_timeout_s);
        set_state(m, LX_LOAD_FAILED);
        LX_WARN(NULL, "%s", m->error);
        if (l->cbs.failed) l->cbs.failed(l->cbs.ud, m->name, m->error);
    }
}

static void on_tick(uv_timer_t *t)
{
    lx_loader *l = t->data;
    uint64_t now = lx_now_ns();
    for (size_t i = 0; i < l->n; i++) {
        const lx_backend_conf *bc = conf_of(l, l->b[i].name);
        if (bc) timed_out(l, &l->b[i], bc, now);
        decide(l, &l->b[i]);
    }
}

/* ---------- life cycle ---------- */

lx_loader *lx_loader_new(uv_loop_t *loop, lx_http_client *client, const lx_loader_cbs *cbs)
{
    lx_loader *l = lx_xcalloc(1, sizeof *l);
    l->loop = loop;
    l->client = client;
    l->cbs = *cbs;
    uv_timer_init(loop, &l->tick);
    l->tick.data = l;
    uv_unref((uv_handle_t *)&l->tick);
    return l;
}

static void free_handle(uv_handle_t *h) { free(h); }

static void model_free(lmodel *m)
{
    if (m->up) lx_upstream_cancel(m->up);
    if (m->poll) uv_close((uv_handle_t *)m->poll, free_handle);
    lx_kind_request_reset(&m->kreq);
    lx_buf_free(&m->url);
    lx_buf_free(&m->reply);
    free(m->name);
    free(m);
}

static void backends_free(lbackend *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < b[i].n; k++)
            if (b[i].m[k]) model_free(b[i].m[k]);
        free(b[i].m);
        free(b[i].name);
    }
    free(b);
}

static void on_tick_closed(uv_handle_t *h) { free(h->data); }

void lx_loader_free(lx_loader *l)
{
    if (l == NULL) return;
    backends_free(l->b, l->n);
    lx_config_unref(l->cfg);
    uv_close((uv_handle_t *)&l->tick, on_tick_closed);
}

static lmodel *model_new(lx_loader *l, lbackend *lb, const lx_backend_conf *bc, const char *name)
{
    lmodel *m = lx_xcalloc(1, sizeof *m);
    m->l = l;
    m->lb = lb;
    m->name = lx_xstrdup(name);
    lx_buf_init(&m->url, 0);
    lx_buf_init(&m->reply, 0);
    bool awake_base = bc->sleep_mode && lx_backend_conf_lora(bc, name) == NULL; /* vLLM starts awake */
    set_state(m, awake_base ? LX_LOAD_LOADED : LX_LOAD_UNLOADED);
    m->loaded_ns = m->used_ns = awake_base ? 0 : m->since_ns;
    return m;
}

void lx_loader_configure(lx_loader *l, lx_config *c)
{
    lbackend *next = lx_xcalloc(c->n_backends ? c->n_backends : 1, sizeof *next);
    size_t n = 0;
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *bc = &c->backends[i];
        if (!bc->enabled || !bc->load.enabled) continue;
        lbackend *lb = &next[n++], *old = backend_of(l, bc->name);
        lb->name = lx_xstrdup(bc->name);
        lb->m = lx_xcalloc(bc->n_models ? bc->n_models : 1, sizeof *lb->m);
        for (size_t k = 0; k < bc->n_models; k++) {
            lmodel *was = model_of(old, bc->models[k].name);
            if (was) { /* kept, with its state and any request out */
                for (size_t j = 0; j < old->n; j++)
                    if (old->m[j] == was) old->m[j] = NULL;
                was->lb = lb;
                lb->m[lb->n++] = was;
            } else {
                lb->m[lb->n++] = model_new(l, lb, bc, bc->models[k].name);
            }
        }
    }
    backends_free(l->b, l->n);
    l->b = next;
    l->n = n;
    lx_config_unref(l->cfg);
    l->cfg = lx_config_ref(c);
    if (n)
        uv_timer_start(&l->tick, on_tick, TICK_MS, TICK_MS);
    else
        uv_timer_stop(&l->tick);
}

/* ---------- requests ---------- */

bool lx_loader_ready(const lx_loader *l, const lx_backend *b, const char *model)
{
    const lmodel *m = l ? managed(l, b, model) : NULL;
    return m == NULL || m->state == LX_LOAD_LOADED;
}

lx_loader_answer lx_loader_want(lx_loader *l, const lx_backend *b, const char *model)
{
    lmodel *m = l ? managed(l, b, model) : NULL;
    if (m == NULL || m->state == LX_LOAD_LOADED) return LX_LOADER_READY;
    const lx_backend_conf *bc = conf_of(l, m->lb->name);
    if (m->state != LX_LOAD_LOADING && bc && !bc->load.on_demand) return LX_LOADER_REFUSED;
    if (m->state == LX_LOAD_FAILED) set_state(m, LX_LOAD_UNLOADED); /* the next request tries again */
    if (m->state == LX_LOAD_LOADING) return LX_LOADER_WAIT;
    m->asked = true; /* the request is queued after this returns: asked stands in for it until then */
    decide(l, m->lb);
    return LX_LOADER_WAIT;
}

void lx_loader_begin(lx_loader *l, const lx_backend *b, const char *model)
{
    lmodel *m = l ? managed(l, b, model) : NULL;
    if (m == NULL) return;
    m->in_flight++;
    m->used_ns = lx_now_ns();
}

void lx_loader_end(lx_loader *l, const lx_backend *b, const char *model)
{
    lmodel *m = l ? managed(l, b, model) : NULL;
    if (m == NULL || m->in_flight == 0) return;
    m->in_flight--;
    m->used_ns = lx_now_ns();
    if (m->in_flight == 0 && m->state == LX_LOAD_UNLOADING && m->up == NULL) {
        if (!send_request(l, m, false)) set_state(m, LX_LOAD_UNLOADED);
    }
}

const char *lx_loader_error(const lx_loader *l, const char *model)
{
    for (size_t i = 0; l && i < l->n; i++) {
        const lmodel *m = model_of(&l->b[i], model);
        if (m && m->error[0]) return m->error;
    }
    return "";
}

/* ---------- the admin API and the renderings ---------- */

static void put_str(lx_buf *out, const char *s)
{
    lx_buf_append_str(out, "\"");
    lx_buf_json_escape(out, s, strlen(s));
    lx_buf_append_str(out, "\"");
}

int lx_loader_command(lx_loader *l, const char *backend, const char *model, bool load, lx_buf *out)
{
    lmodel *m = NULL;
    for (size_t i = 0; i < l->n && m == NULL; i++)
        if (backend == NULL || strcmp(l->b[i].name, backend) == 0) m = model_of(&l->b[i], model);
    if (m == NULL) {
        lx_buf_printf(out, "No backend%s%s manages the loading of model %s (backends.NAME.load)", backend ? " " : "",
                      backend ? backend : "", model);
        return 404;
    }
    lx_load_state s = m->state;
    if (load && s == LX_LOAD_UNLOADING) {
        lx_buf_printf(out, "Model %s is being unloaded from backend %s; load it once that is done", m->name,
                      m->lb->name);
        return 409;
    }
    if (!load && (s == LX_LOAD_LOADING || m->in_flight > 0)) {
        lx_buf_printf(out, "Model %s on backend %s is loading or serving requests now", m->name, m->lb->name);
        return 409;
    }
    if (load && s != LX_LOAD_LOADED && s != LX_LOAD_LOADING) {
        m->asked = true;
        if (s == LX_LOAD_FAILED) set_state(m, LX_LOAD_UNLOADED);
        decide(l, m->lb);
    } else if (!load && s == LX_LOAD_LOADED) {
        unload_when_idle(l, m);
    }
    lx_buf_append_str(out, "{\"backend\":");
    put_str(out, m->lb->name);
    lx_buf_append_str(out, ",\"model\":");
    put_str(out, m->name);
    lx_buf_printf(out, ",\"state\":\"%s\"}", lx_load_state_name(m->state));
    return 202;
}

static void iso_ago(char out[32], uint64_t ns, uint64_t now)
{
    time_t t = time(NULL) - (time_t)((now - ns) / 1000000000ull);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void lx_loader_render(lx_loader *l, lx_buf *out)
{
    uint64_t now = lx_now_ns();
    lx_buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < l->n; i++)
        for (size_t k = 0; k < l->b[i].n; k++) {
            lmodel *m = l->b[i].m[k];
            uint64_t oldest;
            char since[32], used[32];
            iso_ago(since, m->since_ns, now);
            iso_ago(used, m->used_ns, now);
            lx_buf_append_str(out, first ? "{\"backend\":" : ",{\"backend\":");
            put_str(out, l->b[i].name);
            lx_buf_append_str(out, ",\"model\":");
            put_str(out, m->name);
            lx_buf_printf(out,
                          ",\"state\":\"%s\",\"since\":\"%s\",\"last_used\":%s%s%s,\"in_flight\":%d,\"waiting\":%zu,"
                          "\"loads\":%llu,\"load_failures\":%llu,\"error\":",
                          lx_load_state_name(m->state), since, m->used_ns ? "\"" : "", m->used_ns ? used : "null",
                          m->used_ns ? "\"" : "", m->in_flight, waiting(l, m, &oldest), (unsigned long long)m->loads,
                          (unsigned long long)m->failures);
            if (m->error[0])
                put_str(out, m->error);
            else
                lx_buf_append_str(out, "null");
            lx_buf_append_str(out, "}");
            first = false;
        }
    lx_buf_append_str(out, "]}");
}

void lx_loader_render_backend(lx_loader *l, const char *backend, lx_buf *out)
{
    const lbackend *lb = l ? backend_of(l, backend) : NULL;
    if (lb == NULL) return;
    lx_buf_append_str(out, ",\"loaded_models\":{");
    for (size_t k = 0; k < lb->n; k++) {
        if (k) lx_buf_append_str(out, ",");
        put_str(out, lb->m[k]->name);
        lx_buf_printf(out, ":\"%s\"", lx_load_state_name(lb->m[k]->state));
    }
    lx_buf_append_str(out, "}");
}

void lx_loader_render_prometheus(lx_loader *l, lx_buf *out)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"lexora_model_loaded", "gauge", "1 when the model is loaded on the backend (backends.NAME.load)."},
        {"lexora_model_loads_total", "counter", "Loads of the model on the backend that succeeded."},
        {"lexora_model_load_failures_total", "counter", "Loads of the model on the backend that failed or timed out."},
        {"lexora_model_load_seconds_total", "counter", "Seconds the model's successful loads took."},
    };
    if (l == NULL || l->n == 0) return;
    for (size_t f = 0; f < LX_ARRAY_LEN(fam); f++) {
        lx_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (size_t i = 0; i < l->n; i++)
            for (size_t k = 0; k < l->b[i].n; k++) {
                const lmodel *m = l->b[i].m[k];
                double v = f == 0   ? (m->state == LX_LOAD_LOADED)
                           : f == 1 ? (double)m->loads
                           : f == 2 ? (double)m->failures
                                    : m->load_s;
                lx_buf_printf(out, "%s{backend=\"", fam[f].name);
                lx_stats_prom_label(out, l->b[i].name);
                lx_buf_append_str(out, "\",model=\"");
                lx_stats_prom_label(out, m->name);
                lx_buf_printf(out, "\"} %.17g\n", v);
            }
    }
}
