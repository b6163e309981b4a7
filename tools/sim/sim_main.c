/*
 * lexora-sim: main. Parses the command line (sim_options.c), listens (sim_http.c), runs the loop,
 * and stops cleanly on SIGINT or SIGTERM: the server closes (aborting open requests, whose timers
 * are then closed), the signal handles close, the loop drains and is closed, everything is freed.
 * Exit status: 0 after a signal or --help, 1 when it cannot listen, 2 for a bad command line.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

#include "sim.h"
#include "utils/log.h"

static sim the_sim;
static uv_signal_t sig_int, sig_term;

static void on_signal(uv_signal_t *h, int signum)
{
    sim *s = h->data;
    LX_INFO(NULL, "lexora-sim: %s, stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    sim_http_stop(s);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    lx_log_flush();
}

/* 2,000 streams need more descriptors than the usual soft limit of 1,024 (vLLM raises it too). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void log_start(const sim *s)
{
    const sim_config *c = &s->cfg;
    LX_INFO(NULL,
            "lexora-sim listening on http://%s:%d model=%s%s max_batch=%ld ttft_ms=%g tokens_per_sec=%g "
            "vllm=%s",
            c->host, lx_http_server_port(s->server), c->models[0], c->n_models > 1 ? " (+aliases)" : "", c->max_batch,
            c->ttft_ms, c->tokens_per_sec, c->vllm_version);
    lx_log_flush();
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) == UV_EBUSY) {
        uv_walk(loop, close_any, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
    }
}

static int serve(sim *s)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    s->loop = &loop;
    lx_buf_init(&s->scratch, 0);
    int rc = sim_http_start(s);
    if (rc < 0) {
        LX_ERROR(NULL, "lexora-sim: cannot listen on %s:%ld: %s", s->cfg.host, s->cfg.port, uv_strerror(rc));
        sim_http_stop(s);
    } else {
        log_start(s);
        uv_signal_init(&loop, &sig_int);
        uv_signal_init(&loop, &sig_term);
        sig_int.data = sig_term.data = s;
        uv_signal_start(&sig_int, on_signal, SIGINT);
        uv_signal_start(&sig_term, on_signal, SIGTERM);
    }
    loop_finish(&loop);
    lx_buf_free(&s->scratch);
    lx_log_flush();
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    sim *s = &the_sim;
    char err[256];
    sim_config_defaults(&s->cfg);
    int rc = sim_options_parse(&s->cfg, argc, argv, err, sizeof err);
    if (rc == 1) {
        sim_options_usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "lexora-sim: %s\nTry 'lexora-sim --help' for the options.\n", err);
        return 2;
    }
    lx_log_configure(s->cfg.quiet ? LX_LOG_ERROR : LX_LOG_INFO, false);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    return serve(s);
}
