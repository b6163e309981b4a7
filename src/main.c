/*
 * lexora: command line, config loading, then the event loop. Everything else is in lexora_core.
 * Exit codes: 0 ok (also after a graceful shutdown on SIGTERM/SIGINT), 1 could not start (e.g. the port
 * is taken, logging.file cannot be opened) or a second stop signal, 2 bad command line or config.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "gateway.h"
#include "route_cmd.h"
#include "usage_cmd.h"
#include "utils/log.h"

#define DEFAULT_CONFIG "config/lexora_config.yaml"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: lexora [--config FILE]          run the gateway\n"
            "       lexora --check-config [--config FILE]\n"
            "                                       validate the config, print every problem\n"
            "       lexora usage [--config FILE] [--since DATE] [--by user|model|day|gateway] [--gateway ID]\n"
            "                                       print the usage ledger as a table (lexora usage --help)\n"
            "       lexora route [--config FILE] [--explain] | --eval FILE | --train FILE --out FILE\n"
            "                                       automatic routing from the command line (lexora route --help)\n"
            "       lexora experiments report NAME [--config FILE] [--since DATE]\n"
            "                                       compare an experiment's variants (lexora experiments --help)\n"
            "       lexora --version | --help\n"
            "\n"
            "The config file is FILE, else $LEXORA_CONFIG, else " DEFAULT_CONFIG ".\n"
            "Signals: SIGHUP reloads the config; SIGTERM or SIGINT stop gracefully (a second one at once).\n"
            "Exit codes: 0 ok, 1 could not start, 2 bad command line or config.\n");
}

typedef struct {
    const char *config;
    int check_only;
} options;

/* Returns -1 to exit 0 (help/version printed), 0 to go on, 2 on a usage error. */
static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return -1;
        } else if (strcmp(a, "--version") == 0) {
            printf("lexora %s\n", LX_VERSION);
            return -1;
        } else if (strcmp(a, "--check-config") == 0) {
            o->check_only = 1;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (++i == argc) {
                fprintf(stderr, "lexora: %s needs a file name\n", a);
                return 2;
            }
            o->config = argv[i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            o->config = a + 9;
        } else {
            fprintf(stderr, "lexora: unknown argument '%s' (try --help)\n", a);
            return 2;
        }
    }
    if (o->config == NULL) o->config = getenv("LEXORA_CONFIG");
    if (o->config == NULL || *o->config == '\0') o->config = DEFAULT_CONFIG;
    return 0;
}

static lx_config *load(const char *path)
{
    lx_buf errors;
    lx_buf_init(&errors, 0);
    lx_config *c = lx_config_load(path, &errors);
    if (c == NULL) fprintf(stderr, "%s", errors.p ? errors.p : "");
    lx_buf_free(&errors);
    return c;
}

static int run(lx_config *cfg)
{
    int lrc = lx_log_set_file(cfg->logging.file);
    if (lrc < 0) {
        fprintf(stderr, "lexora: logging.file: cannot open \"%s\" for appending: %s\n", cfg->logging.file,
                strerror(-lrc));
        lx_config_unref(cfg);
        return 1;
    }
    lx_log_configure((lx_log_level)cfg->logging.level, cfg->logging.json);
    uv_loop_t *loop = uv_default_loop();
    lx_gateway gw;
    char host[256];
    snprintf(host, sizeof host, "%s", cfg->server.host);
    int port = cfg->server.port;
    int rc = lx_gateway_start(&gw, loop, cfg);
    if (rc != 0) {
        LX_ERROR(NULL, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        lx_log_flush();
        return 1;
    }
    LX_INFO(NULL, "lexora %s listening on %s:%d (config %s)", LX_VERSION, host, port, gw.config->path);
    lx_log_flush();
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    LX_INFO(NULL, "stopped");
    lx_log_flush();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "usage") == 0) return lx_usage_command(argc - 1, argv + 1, DEFAULT_CONFIG);
    if (argc > 1 && strcmp(argv[1], "route") == 0) return lx_route_command(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "experiments") == 0)
        return lx_experiments_command(argc - 1, argv + 1, DEFAULT_CONFIG);
    options o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc < 0 ? 0 : rc;
    signal(SIGPIPE, SIG_IGN);
    lx_config *cfg = load(o.config);
    if (cfg == NULL) return 2;
    if (o.check_only) {
        printf("%s: ok\n", o.config);
        lx_config_unref(cfg);
        return 0;
    }
    return run(cfg);
}
