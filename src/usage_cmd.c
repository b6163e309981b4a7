/* `lexora usage` and `lexora experiments report`: the command lines of the ledger's reports; the reports
 * themselves are in observe/usage_store.c and observe/exp_report.c. */
#include "usage_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "observe/exp_report.h"
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

static const char *command = "lexora usage"; /* for messages */

/* The value of option a (argv[*i]): "--x V" or "--x=V". NULL and a message when it is missing. */
static const char *value_of(int argc, char **argv, int *i, const char *name)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (a[n] == '=') return a + n + 1;
    if (*i + 1 == argc) {
        fprintf(stderr, "%s: %s needs a value\n", command, name);
        return NULL;
    }
    return argv[++*i];
}

static bool is_opt(const char *a, const char *name)
{
    size_t n = strlen(name);
    return strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

/* The config of --config, else $LEXORA_CONFIG, else default_config; NULL after printing its problems. */
static lx_config *load_config(const char *config, const char *default_config)
{
    if (config == NULL) config = getenv("LEXORA_CONFIG");
    if (config == NULL || *config == '\0') config = default_config;
    lx_buf errors;
    lx_buf_init(&errors, 0);
    lx_config *cfg = lx_config_load(config, &errors);
    if (cfg == NULL) fprintf(stderr, "%s", errors.p ? errors.p : "");
    lx_buf_free(&errors);
    return cfg;
}

static lx_usage_store_opts opts_of(const lx_config *cfg, const char *db_path)
{
    return (lx_usage_store_opts){.store = cfg->usage.store,
                                 .db_path = db_path,
                                 .postgres_url = cfg->usage.postgres_url,
                                 .password_file = cfg->usage.password_file};
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
    lx_config *cfg = load_config(config, default_config);
    if (cfg == NULL) return 2;
    char *path = lx_usage_db_path(cfg->path, cfg->usage.db_path);
    lx_usage_store_opts o = opts_of(cfg, path);
    lx_usage_query q = {.since = since_text ? since : NULL, .gateway = gateway, .by = by};
    int rc = lx_usage_report_store(&o, &q, stdout, stderr);
    lx_config_unref(cfg);
    free(path);
    return rc;
}

/* ---------- lexora experiments report ---------- */

static void experiments_help(FILE *out)
{
    fprintf(out,
            "Usage: lexora experiments report NAME [--config FILE] [--since DATE] [--metric feedback|latency|errors]\n"
            "  Compares the variants of experiment NAME from the usage ledger of the config (every gateway's rows):\n"
            "  per variant its requests, error rate, latency and TTFT p50/p95, tokens and feedback, each with a 95 %%\n"
            "  confidence interval; then each variant against the first on the experiment's metric, with a verdict.\n"
            "  The variants' order and the metric are the config's when it still has the experiment.\n"
            "  --since DATE     only requests from then on: YYYY-MM-DD (midnight UTC) or an ISO 8601 time\n"
            "  --metric M       compare on M instead of the experiment's metric\n"
            "Exit codes: 0 ok, 1 the ledger cannot be opened or read, 2 bad command line or config.\n");
}

static int metric_parse(const char *v, lx_exp_metric *out)
{
    for (size_t i = 0; lx_exp_metric_names[i]; i++)
        if (strcmp(v, lx_exp_metric_names[i]) == 0) {
            *out = (lx_exp_metric)i;
            return 0;
        }
    return -1;
}

static int print_report(const lx_config *cfg, const char *name, const char *since, const char *metric)
{
    lx_exp_data d = {.metric = LX_METRIC_FEEDBACK};
    for (size_t i = 0; i < cfg->n_experiments; i++) {
        const lx_experiment *e = &cfg->experiments[i];
        if (strcmp(e->name, name) != 0) continue;
        d.metric = e->metric;
        for (size_t k = 0; k < e->n_variants; k++)
            lx_exp_data_variant(&d, e->variants[k].name);
    }
    if (metric) metric_parse(metric, &d.metric);
    char *path = lx_usage_db_path(cfg->path, cfg->usage.db_path);
    lx_usage_store_opts o = opts_of(cfg, path);
    char err[512];
    int rc = lx_usage_experiment_data(&o, name, since, &d, err, sizeof err);
    free(path);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", command, err);
        lx_exp_data_free(&d);
        return 1;
    }
    lx_buf out;
    lx_buf_init(&out, 0);
    lx_buf_printf(&out, "experiment %s%s%s\n\n", name, since ? ", since " : "", since ? since : "");
    lx_exp_report(&d, &out);
    fwrite(out.p, 1, out.len, stdout);
    lx_buf_free(&out);
    lx_exp_data_free(&d);
    return 0;
}

int lx_experiments_command(int argc, char **argv, const char *default_config)
{
    command = "lexora experiments";
    const char *config = NULL, *since_text = NULL, *name = NULL, *metric = NULL;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        experiments_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "report") != 0) {
        fprintf(stderr, "lexora experiments: unknown command '%s' (try lexora experiments --help)\n", argv[1]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            experiments_help(stdout);
            return 0;
        } else if (is_opt(a, "--config") || strcmp(a, "-c") == 0) {
            if ((config = value_of(argc, argv, &i, strcmp(a, "-c") == 0 ? "-c" : "--config")) == NULL) return 2;
        } else if (is_opt(a, "--since")) {
            if ((since_text = value_of(argc, argv, &i, "--since")) == NULL) return 2;
        } else if (is_opt(a, "--metric")) {
            lx_exp_metric m;
            if ((metric = value_of(argc, argv, &i, "--metric")) == NULL) return 2;
            if (metric_parse(metric, &m) != 0) {
                fprintf(stderr, "lexora experiments: --metric must be feedback, latency or errors, got '%s'\n", metric);
                return 2;
            }
        } else if (a[0] != '-' && name == NULL) {
            name = a;
        } else {
            fprintf(stderr, "lexora experiments: unknown argument '%s' (try lexora experiments --help)\n", a);
            return 2;
        }
    }
    if (name == NULL) {
        fprintf(stderr, "lexora experiments report: name the experiment (lexora experiments report NAME)\n");
        return 2;
    }
    char since[32];
    if (since_text && lx_usage_parse_since(since_text, since) != 0) {
        fprintf(stderr, "lexora experiments: --since must be a date (YYYY-MM-DD) or an ISO 8601 time, got '%s'\n",
                since_text);
        return 2;
    }
    lx_config *cfg = load_config(config, default_config);
    if (cfg == NULL) return 2;
    int rc = print_report(cfg, name, since_text ? since : NULL, metric);
    lx_config_unref(cfg);
    return rc;
}
