/*
 * lexora-sim: the engine, a model of vLLM's continuous batching. See sim.h and docs/SIMULATOR.md.
 *
 * A submitted request runs at once if fewer than max_batch run and nobody waits; otherwise it joins
 * the FIFO wait queue and starts when a slot frees. Once running, its first token comes ttft_ms later,
 * then one token every sim_itl_ms(running) ms. The gap to the next token is taken from the batch
 * size at the moment a token is produced (so it follows the batch as it grows and shrinks), and
 * the due times accumulate in fractional ms so the average rate is exact despite ms timers.
 * Embeddings run like generations of zero tokens: they hold a slot for ttft_ms.
 * Prefix cache (sim_prefix.c): when a chat or completion starts, the longest cached prefix of its prompt
 * shortens its TTFT in proportion, down to prefix_hit_ttft_ms for the whole 2 KB window; its prefix is
 * remembered once its first token is out (prefill done), as vLLM caches blocks it has computed.
 *
 * Invariants: a request's timer runs only while it is SIM_RUNNING; q->http becomes NULL when the
 * client leaves (sim_engine_cancel, from on_abort) or the output side made its last call, and no
 * output is made after that;
 * every end (finish, drop, cancel) releases the slot before admitting the next waiting request and
 * closes the timer last; the request is freed in the timer's close callback.
 */
#include <math.h>
#include <stdlib.h>

#include "sim.h"

static void list_push(sim_list *l, sim_req *q)
{
    lx_list_append(&l->reqs, &q->link);
    l->n++;
}

static void list_remove(sim_list *l, sim_req *q)
{
    LX_ASSERT(l->n > 0 && lx_list_linked(&q->link));
    lx_list_remove(&q->link);
    l->n--;
}

/* The first request of l, or NULL. */
static sim_req *list_first(const sim_list *l)
{
    lx_list *n = lx_list_first(&l->reqs);
    return n ? LX_CONTAINER_OF(n, sim_req, link) : NULL;
}

void sim_engine_init(sim *s)
{
    lx_list_init(&s->waiting.reqs);
    lx_list_init(&s->running.reqs);
}

sim_req *sim_req_new(sim *s, lx_http_req *http)
{
    sim_req *q = lx_xcalloc(1, sizeof *q);
    q->sim = s;
    q->http = http;
    q->drop_after = -1;
    lx_buf_init(&q->prefix, 0);
    lx_buf_init(&q->text, 0);
    uv_timer_init(s->loop, &q->timer);
    q->timer.data = q;
    lx_http_req_set_data(http, q);
    return q;
}

static void on_closed(uv_handle_t *h)
{
    sim_req *q = h->data;
    lx_buf_free(&q->prefix);
    lx_buf_free(&q->text);
    free(q->answer);
    free(q->id);
    free(q->model_copy);
    free(q->tool_name);
    free(q->tool_call);
    free(q);
}

static void req_close(sim_req *q) { uv_close((uv_handle_t *)&q->timer, on_closed); }

static void on_first(uv_timer_t *t);
static void on_tick(uv_timer_t *t);

/* TTFT of q: the configured one, shortened by the part of its prefix window found cached. */
static double prefix_ttft(sim *s, sim_req *q)
{
    double full = s->cfg.ttft_ms, hit = LX_MIN(s->cfg.prefix_hit_ttft_ms, full);
    if (q->keys.n == 0 || s->prefix == NULL) return full;
    q->prefix_matched = sim_prefix_match(s->prefix, &q->keys);
    long cached = LX_MIN(q->prompt_tokens, sim_tokens_for_bytes(q->prefix_matched));
    s->st.prefix_query_tokens += (uint64_t)q->prompt_tokens;
    s->st.prefix_hit_tokens += (uint64_t)cached;
    if (q->prefix_matched == 0) {
        s->st.prefix_misses++;
        return full;
    }
    s->st.prefix_hits++;
    return full - (full - hit) * (double)q->prefix_matched / (double)q->keys.window;
}

static void start(sim_req *q)
{
    sim *s = q->sim;
    q->state = SIM_RUNNING;
    list_push(&s->running, q);
    s->kv_tokens += (uint64_t)q->prompt_tokens;
    if (s->running.n > s->st.max_running_seen) s->st.max_running_seen = s->running.n;
    double ttft = prefix_ttft(s, q);
    q->started_ns = lx_now_ns();
    q->due_ms = (double)uv_now(s->loop) + ttft;
    uv_timer_start(&q->timer, on_first, (uint64_t)ceil(ttft), 0);
}

static void admit_waiting(sim *s)
{
    sim_req *q;
    while (s->running.n < (size_t)s->cfg.max_batch && (q = list_first(&s->waiting)) != NULL) {
        list_remove(&s->waiting, q);
        start(q);
    }
}

/* Takes q out of the batch (or the queue) for good; output may still follow. */
static void release(sim_req *q)
{
    sim *s = q->sim;
    uv_timer_stop(&q->timer);
    if (q->state == SIM_WAITING) {
        list_remove(&s->waiting, q);
    } else if (q->state == SIM_RUNNING) {
        list_remove(&s->running, q);
        s->kv_tokens -= (uint64_t)(q->prompt_tokens + q->generated);
    }
    q->state = SIM_DONE;
}

void sim_engine_submit(sim_req *q)
{
    sim *s = q->sim;
    if (s->running.n < (size_t)s->cfg.max_batch && s->waiting.n == 0) {
        start(q);
        return;
    }
    q->state = SIM_WAITING;
    list_push(&s->waiting, q);
}

static void finish(sim_req *q)
{
    sim *s = q->sim;
    release(q);
    if (q->kind != SIM_EMBEDDING) {
        if (q->ends_by_length)
            s->st.finished_length++;
        else
            s->st.finished_stop++;
    }
    sim_out_finish(q);
    s->st.completed++;
    admit_waiting(s);
    req_close(q);
}

static void drop(sim_req *q)
{
    sim *s = q->sim;
    release(q);
    sim_out_drop(q);
    s->st.failed++;
    admit_waiting(s);
    req_close(q);
}

void sim_engine_cancel(sim_req *q)
{
    q->http = NULL;
    if (q->state == SIM_DONE) return; /* already ending: its output just stops */
    sim *s = q->sim;
    release(q);
    s->st.cancelled++;
    s->st.finished_abort++;
    admit_waiting(s);
    req_close(q);
}

void sim_engine_cancel_all(sim *s)
{
    sim_req *q;
    while ((q = list_first(&s->waiting)) != NULL)
        sim_engine_cancel(q);
    while ((q = list_first(&s->running)) != NULL)
        sim_engine_cancel(q);
}

/* Makes tokens while they are due; then waits for the next one, or ends the request. */
static void produce(sim_req *q)
{
    sim *s = q->sim;
    while (q->state == SIM_RUNNING) {
        if (q->generated == q->max_tokens) {
            finish(q);
            return;
        }
        sim_out_token(q, q->generated);
        if (q->state != SIM_RUNNING) return; /* the client left meanwhile */
        q->generated++;
        s->kv_tokens++;
        s->st.generation_tokens++;
        if (q->generated == q->drop_after) {
            drop(q);
            return;
        }
        if (q->generated == q->max_tokens) continue;
        q->due_ms += sim_itl_ms(s->cfg.tokens_per_sec, s->cfg.batch_slowdown, (long)s->running.n, s->cfg.max_batch);
        double wait = q->due_ms - (double)uv_now(s->loop);
        if (wait > 0) {
            uv_timer_start(&q->timer, on_tick, (uint64_t)ceil(wait), 0);
            return;
        }
    }
}

static void on_first(uv_timer_t *t)
{
    sim_req *q = t->data;
    q->sim->st.prompt_tokens += (uint64_t)q->prompt_tokens;
    q->first_ns = lx_now_ns();
    sim_prefix_insert(q->sim->prefix, &q->keys);
    sim_out_first(q);
    produce(q);
}

static void on_tick(uv_timer_t *t) { produce(t->data); }

double sim_engine_kv_usage(const sim *s)
{
    double u = (double)s->kv_tokens / (double)s->cfg.kv_capacity_tokens;
    return u > 1.0 ? 1.0 : u;
}
