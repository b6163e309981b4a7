/*
 * What each user used today. See usage_today.h.
 *
 * Invariants:
 * - Every entry in the map counts the day `t->day`; when a record or a read finds the clock on another
 *   day, every entry is freed first (forget), so no entry ever mixes two days.
 * - An entry's models are in arrival order, at most LX_TODAY_MAX_MODELS of them, the last being "(other)"
 *   once the cap is reached; an entry owns its name and its models' names.
 */
#include "limits/usage_today.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utils/common.h"
#include "utils/map.h"

typedef struct {
    char *name;
    lx_today_counts c;
} model_counts;

typedef struct {
    lx_map_node node; /* key: name */
    char *name;
    lx_today_counts c;
    model_counts models[LX_TODAY_MAX_MODELS];
    size_t n_models;
} entry;

struct lx_usage_today {
    lx_map users;
    int64_t day; /* days since 1970-01-01 (UTC) of what the entries count; -1 before the first */
    int64_t (*now_s)(void *ud);
    void *ud;
    uint64_t dropped;
};

static int64_t wall_s(void *ud)
{
    (void)ud;
    return (int64_t)time(NULL);
}

static void entry_free(entry *e)
{
    for (size_t i = 0; i < e->n_models; i++)
        free(e->models[i].name);
    free(e->name);
    free(e);
}

static void forget(lx_usage_today *t)
{
    lx_map_node *n;
    for (lx_map_iter it = lx_map_iter_of(&t->users); (n = lx_map_next(&it));) {
        lx_map_remove(&t->users, n);
        entry_free(LX_MAP_ENTRY(n, entry, node));
    }
    t->dropped = 0;
}

/* Moves t to the clock's day, forgetting the last one if it changed. */
static void roll(lx_usage_today *t)
{
    int64_t s = t->now_s(t->ud), day = (s >= 0 ? s : s - 86399) / 86400;
    if (day == t->day) return;
    forget(t);
    t->day = day;
}

lx_usage_today *lx_usage_today_new(int64_t (*now_s)(void *ud), void *ud)
{
    lx_usage_today *t = lx_xcalloc(1, sizeof *t);
    lx_map_init(&t->users);
    t->day = -1;
    t->now_s = now_s ? now_s : wall_s;
    t->ud = ud;
    return t;
}

void lx_usage_today_free(lx_usage_today *t)
{
    if (t == NULL) return;
    forget(t);
    lx_map_free(&t->users);
    free(t);
}

static void add(lx_today_counts *c, const lx_access_rec *r)
{
    c->requests++;
    if (r->prompt_tokens > 0) c->prompt_tokens += (uint64_t)r->prompt_tokens;
    if (r->completion_tokens > 0) c->completion_tokens += (uint64_t)r->completion_tokens;
    if (r->status >= 400 || r->error_code) c->errors++;
    if (r->status == 429) c->rate_limited++;
}

static model_counts *model_of(entry *e, const char *name)
{
    for (size_t i = 0; i < e->n_models; i++)
        if (strcmp(e->models[i].name, name) == 0) return &e->models[i];
    if (e->n_models == LX_TODAY_MAX_MODELS) return &e->models[LX_TODAY_MAX_MODELS - 1]; /* "(other)" */
    const char *as = e->n_models == LX_TODAY_MAX_MODELS - 1 ? "(other)" : name;
    model_counts *m = &e->models[e->n_models++];
    *m = (model_counts){.name = lx_xstrdup(as)};
    return m;
}

static entry *find(lx_usage_today *t, const char *user)
{
    lx_map_node *n = lx_map_find(&t->users, user, strlen(user));
    return n ? LX_MAP_ENTRY(n, entry, node) : NULL;
}

void lx_usage_today_record(lx_usage_today *t, const lx_access_rec *rec)
{
    if (t == NULL || rec->user == NULL) return;
    roll(t);
    entry *e = find(t, rec->user);
    if (e == NULL) {
        if (lx_map_count(&t->users) >= LX_TODAY_MAX_USERS) {
            t->dropped++;
            return;
        }
        e = lx_xcalloc(1, sizeof *e);
        e->name = lx_xstrdup(rec->user);
        lx_map_add(&t->users, &e->node, e->name, strlen(e->name));
    }
    add(&e->c, rec);
    add(&model_of(e, rec->model_used ? rec->model_used : "-")->c, rec);
}

bool lx_usage_today_get(lx_usage_today *t, const char *user, char day[11], lx_today_counts *total,
                        void (*each)(const char *model, const lx_today_counts *c, void *ud), void *ud)
{
    roll(t);
    time_t s = (time_t)(t->day * 86400);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(day, 11, "%Y-%m-%d", &tm);
    const entry *e = find(t, user);
    *total = e ? e->c : (lx_today_counts){0};
    for (size_t i = 0; e && each && i < e->n_models; i++)
        each(e->models[i].name, &e->models[i].c, ud);
    return e != NULL;
}

uint64_t lx_usage_today_dropped(const lx_usage_today *t) { return t->dropped; }
