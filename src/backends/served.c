/*
 * What is served, at run time. See served.h.
 * Invariants: every model is in the map and in the array `all` (first-seen order); m->servers holds each
 * backend at most once, in config order; a backend's list (its data pointer) holds exactly the models whose
 * servers include it, each once.
 */
#include "backends/served.h"

#include <stdlib.h>
#include <string.h>

#include "utils/common.h"
#include "utils/map.h"

struct lx_model {
    lx_map_node node;
    lx_backend **servers;
    size_t n, cap;
    void *data;
    char name[];
};

typedef struct {
    lx_model **v;
    size_t n, cap;
} model_list;

struct lx_served {
    lx_map map;
    lx_model **all;
    size_t n, cap;
};

static model_list *list_of(const lx_backend *b) { return lx_backend_data(b); }

lx_served *lx_served_new(void)
{
    lx_served *s = lx_xcalloc(1, sizeof *s);
    lx_map_init(&s->map);
    return s;
}

void lx_served_free(lx_served *s, lx_backends *bs)
{
    if (s == NULL) return;
    for (size_t i = 0; i < lx_backends_count(bs); i++) {
        lx_backend *b = lx_backends_at(bs, i);
        model_list *l = list_of(b);
        if (l) free(l->v);
        free(l);
        lx_backend_set_data(b, NULL);
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->all[i]->servers);
        free(s->all[i]);
    }
    free(s->all);
    lx_map_free(&s->map);
    free(s);
}

static lx_model *model_get(lx_served *s, const char *name)
{
    size_t len = strlen(name);
    lx_model *m = lx_served_find(s, name, len);
    if (m) return m;
    m = lx_xcalloc(1, sizeof *m + len + 1);
    memcpy(m->name, name, len + 1);
    lx_map_add(&s->map, &m->node, m->name, len);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->all = lx_xrealloc(s->all, s->cap * sizeof *s->all);
    }
    s->all[s->n++] = m;
    return m;
}

static void serve(lx_served *s, lx_backend *b, const char *name)
{
    lx_model *m = model_get(s, name);
    for (size_t i = 0; i < m->n; i++)
        if (m->servers[i] == b) return; /* listed and discovered: once */
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 4;
        m->servers = lx_xrealloc(m->servers, m->cap * sizeof *m->servers);
    }
    m->servers[m->n++] = b;
    model_list *l = list_of(b);
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4;
        l->v = lx_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = m;
}

static void clear(lx_served *s, lx_backends *bs)
{
    for (size_t i = 0; i < s->n; i++)
        s->all[i]->n = 0;
    for (size_t i = 0; i < lx_backends_count(bs); i++) {
        lx_backend *b = lx_backends_at(bs, i);
        model_list *l = list_of(b);
        if (l == NULL) lx_backend_set_data(b, l = lx_xcalloc(1, sizeof *l));
        l->n = 0;
    }
}

void lx_served_build(lx_served *s, const lx_config *c, lx_backends *bs)
{
    clear(s, bs);
    for (size_t i = 0; i < c->n_backends; i++) {
        const lx_backend_conf *bc = &c->backends[i];
        lx_backend *b = bc->enabled ? lx_backends_find(bs, bc->name) : NULL;
        if (b == NULL) continue;
        for (size_t j = 0; j < bc->n_models; j++)
            serve(s, b, bc->models[j].name);
        const char *const *found;
        size_t n = lx_backend_found(b, &found);
        for (size_t j = 0; j < n; j++)
            serve(s, b, found[j]);
    }
}

lx_model *lx_served_find(const lx_served *s, const char *name, size_t len)
{
    lx_map_node *n = lx_map_find(&s->map, name, len);
    return n ? LX_MAP_ENTRY(n, lx_model, node) : NULL;
}

size_t lx_served_count(const lx_served *s) { return s->n; }

lx_model *lx_served_at(const lx_served *s, size_t i) { return i < s->n ? s->all[i] : NULL; }

const char *lx_model_name(const lx_model *m) { return m->name; }

size_t lx_model_servers(const lx_model *m) { return m->n; }

lx_backend *lx_model_server(const lx_model *m, size_t i) { return m->servers[i]; }

void lx_model_set_data(lx_model *m, void *data) { m->data = data; }

void *lx_model_data(const lx_model *m) { return m->data; }

size_t lx_served_by(const lx_backend *b, lx_model *const **models)
{
    const model_list *l = list_of(b);
    *models = l ? l->v : NULL;
    return l ? l->n : 0;
}
