/* `lexora usage`: command line of the usage report; the report itself is in observe/usage_store.c. */
#include "usage_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "observe/usage_store.h"

static void usage_help(FILE *out)
{
    fprintf(out, "Usage: lexora usage [--config FILE] [--since DATE] [--by user|model|day|gateway] [--gateway ID]\n"
                 "  Prints requests, prompt and completion tokens, errors and average latency from the usage\n"
                 "  ledger of the config (usage.db_path, or the PostgreSQL database of usage.postgres_url when\n"
                 "  usage.store is postgres), every gateway's rows, one line per user (default), model, day (UTC)\n"
                 "  or gateway.\n"
                 "  --since DATE   only requests from then on: YYYY-MM-DD (midnight UTC) or an ISO 8601 time\n"
                 "                 such as 2025-06-01T09:00:00+09:00 (UTC when no offset is given)\n"
                 "  --gateway ID   only the rows this gateway wrote (its usage.gateway_id)\n"
                 "Exit codes: 0 ok, 1 the ledger cannot be opened or read, 2 bad command line or config.\n");
}

/* The value of option a (argv[*i]): "--x V" or "--x=V". NULL and a message when it is missing. */
static const char *value_of(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (a[n] == '=') return a + n + 1;
    if (*i + 1 == argc) {
        fprintf(stderr, "lexora usage: %s needs a value\n", name);
        return NULL;
    }
    return argv[++*i];
}

static bool is_opt(const char *a, const char *name)
{
    size_t n = strlen(name);
    return strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

int lx_usage_command(int argc, char **argv, const char *default_config)
{
    const char *config = NULL, *since_text = NULL, *gateway = NULL;
    lx_usage_by by = LX_USAGE_BY_USER;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_help(stdout);
            return 0;
        } else if (is_opt(a, "--config") || strcmp(a, "-c") == 0) {
            if ((config = value_of(argc, argv, &i, strcmp(a, "-c") == 0 ? "-c" : "--config")) == NULL) return 2;
        } else if (is_opt(a, "--since")) {
            if ((since_text = value_of(argc, argv, &i, "--since")) == NULL) return 2;
        } else if (is_opt(a, "--gateway")) {
            if ((gateway = value_of(argc, argv, &i, "--gateway")) == NULL) return 2;
            if (!lx_usage_gateway_id_ok(gateway)) {
                fprintf(stderr, "lexora usage: --gateway must be a gateway id (letters, digits, . _ - :), got '%s'\n",
                        gateway);
                return 2;
            }
        } else if (is_opt(a, "--by")) {
            const char *v = value_of(argc, argv, &i, "--by");
            if (v == NULL) return 2;
            if (strcmp(v, "user") == 0)
                by = LX_USAGE_BY_USER;
            else if (strcmp(v, "model") == 0)
                by = LX_USAGE_BY_MODEL;
            else if (strcmp(v, "day") == 0)
                by = LX_USAGE_BY_DAY;
            else if (strcmp(v, "gateway") == 0)
                by = LX_USAGE_BY_GATEWAY;
            else {
                fprintf(stderr, "lexora usage: --by must be user, model, day or gateway, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "lexora usage: unknown argument '%s' (try lexora usage --help)\n", a);
            return 2;
        }
    }
    char since[32];
    if (since_text && lx_usage_parse_since(since_text, since) != 0) {
        fprintf(stderr, "lexora usage: --since must be a date (YYYY-MM-DD) or an ISO 8601 time, got '%s'\n",
                since_text);
        return 2;
    }
    if (config == NULL) config = getenv("LEXORA_CONFIG");
    if (config == NULL || *config == '\0') config = default_config;

    lx_buf errors;
    lx_buf_init(&errors, 0);
    lx_config *cfg = lx_config_load(config, &errors);
    if (cfg == NULL) {
        fprintf(stderr, "%s", errors.p ? errors.p : "");
        lx_buf_free(&errors);
        return 2;
    }
    lx_buf_free(&errors);
    char *path = lx_usage_db_path(cfg->path, cfg->usage.db_path);
    lx_usage_store_opts o = {.store = cfg->usage.store,
                             .db_path = path,
                             .postgres_url = cfg->usage.postgres_url,
                             .password_file = cfg->usage.password_file};
    lx_usage_query q = {.since = since_text ? since : NULL, .gateway = gateway, .by = by};
    int rc = lx_usage_report_store(&o, &q, stdout, stderr);
    lx_config_unref(cfg);
    free(path);
    return rc;
}
