/*
 * What is served, at run time: for each model name, the backends that serve it now, in config order —
 * the models each enabled backend lists in the config, and for a backend with models: auto what it listed
 * at its last answer while up (backends/backend.h). A listed model wins over the same name discovered
 * elsewhere only in its upstream_name: both backends serve it.
 *
 * A model, once seen, stays in the index for the index's life (its servers may drop to none), so a pointer
 * to it stays valid across rebuilds: the admission keeps its line on it, a request keeps the model it was
 * resolved to. The names that can enter are bounded by the config and by what backends list
 * (LX_BACKEND_MODELS_MAX each).
 *
 * Ownership: the index owns its models; it uses each backend's data pointer (lx_backend_set_data) for the
 * list of models that backend serves, so no other module may. Loop thread only.
 */
#ifndef LX_SERVED_H
#define LX_SERVED_H

#include <stdbool.h>
#include <stddef.h>

#include "backends/backend.h"
#include "config.h"

typedef struct lx_served lx_served;
typedef struct lx_model lx_model;

lx_served *lx_served_new(void);
/* Before the registry bs is freed: the backends' model lists go too. */
void lx_served_free(lx_served *s, lx_backends *bs);

/* Rebuilds every model's servers from c and the registry bs (already configured with c). */
void lx_served_build(lx_served *s, const lx_config *c, lx_backends *bs);

/* The model of this name, or NULL if it was never served. */
lx_model *lx_served_find(const lx_served *s, const char *name, size_t len);
/* Every model ever seen, in the order first seen; with no servers now, it is not served. */
size_t lx_served_count(const lx_served *s);
lx_model *lx_served_at(const lx_served *s, size_t i);

const char *lx_model_name(const lx_model *m);
size_t lx_model_servers(const lx_model *m);
lx_backend *lx_model_server(const lx_model *m, size_t i);
/* One pointer for the admission (its line for the model). */
void lx_model_set_data(lx_model *m, void *data);
void *lx_model_data(const lx_model *m);

/* The models b serves now. */
size_t lx_served_by(const lx_backend *b, lx_model *const **models);

#endif
