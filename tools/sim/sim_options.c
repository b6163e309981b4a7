/*
 * lexora-sim: the command line, as a table (one row per option: name, type, bounds, where it lands,
 * help), so parsing, validation and --help cannot disagree. See sim.h.
 *
 * Every value is checked whole (no trailing garbage, within bounds); the first bad option stops
 * parsing with a message naming it. Strings point into argv, which outlives the config. Pure: no
 * output except sim_options_usage; any thread.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef enum {
    OPT_STR,
    OPT_LONG,
    OPT_DOUBLE,
    OPT_FLAG,
    OPT_MODEL,
    OPT_FAIL_MODE,
    OPT_U64,
    OPT_API,
    OPT_LOADED,
    OPT_MODEL_MB,
    OPT_KEEP_ALIVE,
} opt_type;

typedef struct {
    const char *name; /* without the leading "--" */
    opt_type type;
    double min, max; /* for numbers */
    size_t off;      /* where it lands in sim_config */
    const char *arg; /* the value's name in --help, NULL for a flag */
    const char *help;
} opt_row;

#define AT(field) offsetof(sim_config, field)

static const opt_row rows[] = {
    {"api", OPT_API, 0, 0, AT(api), "KIND",
     "vllm | ollama | llamacpp | anthropic: whose wire format and endpoints to speak (default vllm)"},
    {"host", OPT_STR, 0, 0, AT(host), "ADDR", "address to listen on (default 127.0.0.1)"},
    {"port", OPT_LONG, 0, 65535, AT(port), "N", "port to listen on, 0 for any free one (default 8000)"},
    {"model", OPT_MODEL, 0, 0, AT(models), "NAME",
     "a served model name; repeat for aliases, the first is reported (default qwen3-32b)"},
    {"max-model-len", OPT_LONG, 1, 1e9, AT(max_model_len), "N", "context length in tokens (default 32768)"},
    {"ttft-ms", OPT_DOUBLE, 0, 3.6e6, AT(ttft_ms), "MS", "time to first token once running (default 50)"},
    {"tokens-per-sec", OPT_DOUBLE, 0, 1e6, AT(tokens_per_sec), "R",
     "decode speed of one request alone; 0 for no delay (default 50)"},
    {"max-batch", OPT_LONG, 1, 1e6, AT(max_batch), "N", "requests running at once; more wait FIFO (default 16)"},
    {"batch-slowdown", OPT_DOUBLE, 0, 1e3, AT(batch_slowdown), "F",
     "inter-token latency grows by F x (running-1)/max-batch (default 0.5)"},
    {"default-max-tokens", OPT_LONG, 1, 1e9, AT(default_max_tokens), "N",
     "tokens generated when the request sets no max_tokens (default 16)"},
    {"kv-capacity-tokens", OPT_LONG, 1, 1e12, AT(kv_capacity_tokens), "N",
     "KV cache size behind vllm:kv_cache_usage_perc (default 65536)"},
    {"embedding-dim", OPT_LONG, 1, 65536, AT(embedding_dim), "N", "length of embedding vectors (default 16)"},
    {"fail-rate", OPT_DOUBLE, 0, 1, AT(fail_rate), "R", "fraction of inference requests to fail (default 0)"},
    {"fail-first", OPT_LONG, 0, 1e12, AT(fail_first), "N", "fail the first N inference requests (default 0)"},
    {"fail-mode", OPT_FAIL_MODE, 0, 0, AT(fail_mode), "MODE",
     "503 | 500 | 429 | 529 | 400 | drop | midstream | hang: how injected failures fail (default 503)"},
    {"seed", OPT_U64, 0, 0, AT(seed), "N", "seed of the failure draws (default 1)"},
    {"flat-errors", OPT_FLAG, 0, 0, AT(flat_errors), NULL,
     "errors in the flat pre-0.10.1 shape {\"object\":\"error\",...}"},
    {"old-metrics", OPT_FLAG, 0, 0, AT(old_metrics), NULL,
     "report vllm:gpu_cache_usage_perc instead of vllm:kv_cache_usage_perc"},
    {"vllm-version", OPT_STR, 0, 0, AT(vllm_version), "V", "what GET /version reports (default 0.11.0)"},
    {"ollama-version", OPT_STR, 0, 0, AT(ollama_version), "V",
     "--api ollama: what GET /api/version reports (default 0.12.6)"},
    {"load-ms", OPT_DOUBLE, 0, 3.6e6, AT(load_ms), "MS",
     "time a model load (or vLLM wake_up) takes; --api llamacpp without --router: answer 503 \"Loading model\" "
     "for the first MS ms (default 0)"},
    {"unload-ms", OPT_DOUBLE, 0, 3.6e6, AT(unload_ms), "MS", "time an unload (or vLLM sleep) takes (default 0)"},
    {"loaded", OPT_LOADED, 0, 0, AT(loaded), "NAME",
     "a model loaded at start; repeat for more (default: Ollama all, llama.cpp --router none)"},
    {"start-unloaded", OPT_FLAG, 0, 0, AT(start_unloaded), NULL, "no model loaded at start (Ollama, --router)"},
    {"memory-mb", OPT_DOUBLE, 0, 1e9, AT(memory_mb), "MB",
     "memory budget of the loaded models (LoRA adapters for vLLM); 0 for none (default 0)"},
    {"model-mb", OPT_MODEL_MB, 0, 0, AT(model_mb), "NAME=MB", "the size of one model or LoRA adapter; repeatable"},
    {"default-model-mb", OPT_DOUBLE, 0, 1e9, AT(default_model_mb), "MB",
     "the size of a model --model-mb does not name (default 1024)"},
    {"keep-alive", OPT_KEEP_ALIVE, 0, 0, AT(keep_alive), "DUR",
     "--api ollama: keep_alive of requests that set none, as OLLAMA_KEEP_ALIVE (default 5m)"},
    {"sleep-mode", OPT_FLAG, 0, 0, AT(sleep_mode), NULL,
     "vLLM: POST /sleep, POST /wake_up, GET /is_sleeping (--enable-sleep-mode, VLLM_SERVER_DEV_MODE=1)"},
    {"runtime-lora", OPT_FLAG, 0, 0, AT(runtime_lora), NULL,
     "vLLM: POST /v1/load_lora_adapter, /v1/unload_lora_adapter (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)"},
    {"router", OPT_FLAG, 0, 0, AT(router), NULL,
     "--api llamacpp: router mode (no -m): every --model available, GET /models, POST /models/load, /models/unload"},
    {"no-models-autoload", OPT_FLAG, 0, 0, AT(no_autoload), NULL,
     "--router: a request for a model not loaded is refused instead of loading it"},
    {"models-max", OPT_LONG, 1, SIM_MAX_MODELS, AT(models_max), "N",
     "--router: models loaded at once; a load beyond unloads the least recently used (default 4)"},
    {"prefix-cache-entries", OPT_LONG, 0, 1e7, AT(prefix_cache_entries), "N",
     "prefix blocks the cache remembers (LRU), 0 for no prefix cache (default 4096)"},
    {"prefix-hit-ttft-ms", OPT_DOUBLE, 0, 3.6e6, AT(prefix_hit_ttft_ms), "MS",
     "TTFT when the prompt's first 2 KB are cached; partial hits in proportion (default 10)"},
    {"api-key", OPT_STR, 0, 0, AT(api_key), "KEY",
     "--api anthropic: requests to /v1/ must carry x-api-key: KEY (401 authentication_error otherwise)"},
    {"quiet", OPT_FLAG, 0, 0, AT(quiet), NULL, "log nothing but errors"},
    {"help", OPT_FLAG, 0, 0, 0, NULL, "show this help and exit"},
};

static const char *const fail_mode_names[] = {"503", "500", "drop", "midstream", "429", "400", "hang", "529"};
static const char *const api_names[] = {"vllm", "ollama", "llamacpp", "anthropic"};

const char *sim_api_name(sim_api a) { return api_names[a]; }

static int api_parse(const char *s)
{
    for (size_t i = 0; i < LX_ARRAY_LEN(api_names); i++)
        if (strcmp(s, api_names[i]) == 0) return (int)i;
    return -1;
}

const char *sim_fail_mode_name(sim_fail_mode m) { return fail_mode_names[m]; }

int sim_fail_mode_parse(const char *s)
{
    for (size_t i = 0; i < LX_ARRAY_LEN(fail_mode_names); i++)
        if (strcmp(s, fail_mode_names[i]) == 0) return (int)i;
    return -1;
}

void sim_config_defaults(sim_config *c)
{
    *c = (sim_config){
        .host = "127.0.0.1",
        .port = 8000,
        .max_model_len = 32768,
        .ttft_ms = 50,
        .tokens_per_sec = 50,
        .max_batch = 16,
        .batch_slowdown = 0.5,
        .default_max_tokens = 16,
        .kv_capacity_tokens = 65536,
        .embedding_dim = 16,
        .fail_mode = SIM_FAIL_503,
        .seed = 1,
        .vllm_version = "0.11.0",
        .ollama_version = "0.12.6",
        .prefix_cache_entries = 4096,
        .prefix_hit_ttft_ms = 10,
        .default_model_mb = 1024,
        .keep_alive = "5m",
        .models_max = 4,
    };
}

static const opt_row *find_row(const char *name, size_t len)
{
    for (size_t i = 0; i < LX_ARRAY_LEN(rows); i++)
        if (strlen(rows[i].name) == len && memcmp(rows[i].name, name, len) == 0) return &rows[i];
    return NULL;
}

static int parse_number(const opt_row *o, const char *v, double *out)
{
    if (*v == '\0') return -1;
    errno = 0;
    char *end;
    double d = strtod(v, &end);
    if (errno || *end != '\0' || !isfinite(d) || d < o->min || d > o->max) return -1;
    if (o->type == OPT_LONG && d != floor(d)) return -1;
    *out = d;
    return 0;
}

static int parse_u64(const char *v, uint64_t *out)
{
    if (*v < '0' || *v > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end != '\0') return -1;
    *out = n;
    return 0;
}

/* The MB of "NAME=MB" (NAME non-empty, MB a number from 0 to 1e9); -1 when malformed. */
static double model_mb_value(const char *v)
{
    const char *eq = strrchr(v, '=');
    if (eq == NULL || eq == v || eq[1] == '\0') return -1;
    errno = 0;
    char *end;
    double d = strtod(eq + 1, &end);
    if (errno || *end != '\0' || !isfinite(d) || d < 0 || d > 1e9) return -1;
    return d;
}

double sim_model_mb(const sim_config *c, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = c->n_model_mb; i-- > 0;) { /* the last one given wins */
        const char *v = c->model_mb[i], *eq = strrchr(v, '=');
        if ((size_t)(eq - v) == n && memcmp(v, name, n) == 0) return model_mb_value(v);
    }
    return c->default_model_mb;
}

/* --- Go's time.ParseDuration, as Ollama reads a keep_alive string --- */

static const struct {
    const char *unit;
    double ms;
} go_units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"\xce\xbcs", 1e-3},
                {"ms", 1},    {"s", 1e3},   {"m", 6e4},          {"h", 3.6e6}};

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* One "<number><unit>" at *p (advanced past it). Returns 0, -1 malformed, -2 no unit, -3 unknown unit. */
static int go_term(const char **p, double *ms, const char **unit, size_t *unit_len)
{
    const char *q = *p;
    double v = 0, scale = 1;
    bool digits = false;
    for (; is_digit(*q); q++, digits = true)
        v = v * 10 + (*q - '0');
    if (*q == '.')
        for (q++; is_digit(*q); q++, digits = true)
            v += (*q - '0') * (scale /= 10);
    if (!digits) return -1;
    const char *u = q;
    while (*q && *q != '.' && !is_digit(*q))
        q++;
    *unit = u;
    *unit_len = (size_t)(q - u);
    if (q == u) return -2;
    for (size_t i = 0; i < LX_ARRAY_LEN(go_units); i++)
        if (strlen(go_units[i].unit) == *unit_len && memcmp(go_units[i].unit, u, *unit_len) == 0) {
            *ms += v * go_units[i].ms;
            *p = q;
            return 0;
        }
    return -3;
}

int sim_keep_alive_parse(const char *s, double *ms, char *err, size_t err_len)
{
    const char *p = s;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+') p++;
    double total = 0;
    if (strcmp(p, "0") == 0) {
        *ms = 0;
        return 0;
    }
    int rc = *p ? 0 : -1;
    const char *unit = NULL;
    size_t unit_len = 0;
    while (rc == 0 && *p)
        rc = go_term(&p, &total, &unit, &unit_len);
    if (rc == -2) snprintf(err, err_len, "time: missing unit in duration \"%s\"", s);
    if (rc == -3) snprintf(err, err_len, "time: unknown unit \"%.*s\" in duration \"%s\"", (int)unit_len, unit, s);
    if (rc == -1) snprintf(err, err_len, "time: invalid duration \"%s\"", s);
    if (rc) return -1;
    *ms = neg && total > 0 ? -1 : total;
    return 0;
}

int sim_keep_alive_env(const char *v, double *ms)
{
    char err[128];
    if (sim_keep_alive_parse(v, ms, err, sizeof err) == 0) return 0;
    errno = 0;
    char *end;
    long long n = strtoll(v, &end, 10); /* OLLAMA_KEEP_ALIVE also takes whole seconds */
    if (errno || end == v || *end != '\0') return -1;
    *ms = n < 0 ? -1 : (double)n * 1e3;
    return 0;
}

static int set_value(sim_config *c, const opt_row *o, const char *v)
{
    char *at = (char *)c + o->off;
    double d;
    int m;
    switch (o->type) {
    case OPT_STR:
        if (*v == '\0') return -1;
        *(const char **)(void *)at = v;
        return 0;
    case OPT_LONG:
        if (parse_number(o, v, &d)) return -1;
        *(long *)(void *)at = (long)d;
        return 0;
    case OPT_DOUBLE:
        if (parse_number(o, v, &d)) return -1;
        *(double *)(void *)at = d;
        return 0;
    case OPT_U64: return parse_u64(v, (uint64_t *)(void *)at);
    case OPT_FAIL_MODE:
        if ((m = sim_fail_mode_parse(v)) < 0) return -1;
        c->fail_mode = (sim_fail_mode)m;
        return 0;
    case OPT_MODEL:
        if (*v == '\0' || c->n_models == SIM_MAX_MODELS) return -1;
        c->models[c->n_models++] = v;
        return 0;
    case OPT_API:
        if ((m = api_parse(v)) < 0) return -1;
        c->api = (sim_api)m;
        return 0;
    case OPT_LOADED:
        if (*v == '\0' || c->n_loaded == SIM_MAX_MODELS) return -1;
        c->loaded[c->n_loaded++] = v;
        return 0;
    case OPT_MODEL_MB:
        if (model_mb_value(v) < 0 || c->n_model_mb == LX_ARRAY_LEN(c->model_mb)) return -1;
        c->model_mb[c->n_model_mb++] = v;
        return 0;
    case OPT_KEEP_ALIVE:
        if (sim_keep_alive_env(v, &d)) return -1;
        c->keep_alive = v;
        return 0;
    case OPT_FLAG: break;
    }
    return -1;
}

static const char *expected(const opt_row *o)
{
    switch (o->type) {
    case OPT_LONG: return "an integer";
    case OPT_DOUBLE: return "a number";
    case OPT_U64: return "a non-negative integer";
    case OPT_FAIL_MODE: return "one of 503, 500, 429, 529, 400, drop, midstream, hang";
    case OPT_API: return "one of vllm, ollama, llamacpp, anthropic";
    case OPT_MODEL: return "a non-empty name (at most 32 of them)";
    case OPT_LOADED: return "a non-empty name (at most 32 of them)";
    case OPT_MODEL_MB: return "NAME=MB, MB a number from 0 to 1e9 (at most 64 of them)";
    case OPT_KEEP_ALIVE: return "a Go duration such as 5m, 30s, 1h30m, 0 or -1";
    default: return "a non-empty value";
    }
}

static void bad_value(const opt_row *o, const char *v, char *err, size_t err_len)
{
    if (o->type == OPT_LONG || o->type == OPT_DOUBLE)
        snprintf(err, err_len, "invalid value '%s' for --%s: expected %s between %g and %g", v, o->name, expected(o),
                 o->min, o->max);
    else
        snprintf(err, err_len, "invalid value '%s' for --%s: expected %s", v, o->name, expected(o));
}

/* One argument (and maybe its value, taken from argv[*i + 1]). Returns 0, 1 for --help, -1. */
static int parse_one(sim_config *c, int argc, char **argv, int *i, char *err, size_t err_len)
{
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0) {
        snprintf(err, err_len, "unexpected argument '%s'", a);
        return -1;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    const opt_row *o = find_row(name, eq ? (size_t)(eq - name) : strlen(name));
    if (o == NULL) {
        snprintf(err, err_len, "unknown option '%s'", a);
        return -1;
    }
    if (o->type == OPT_FLAG) {
        if (eq) {
            snprintf(err, err_len, "--%s takes no value", o->name);
            return -1;
        }
        if (strcmp(o->name, "help") == 0) return 1;
        *(bool *)(void *)((char *)c + o->off) = true;
        return 0;
    }
    const char *v = eq ? eq + 1 : NULL;
    if (v == NULL && *i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) v = argv[++*i];
    if (v == NULL) {
        snprintf(err, err_len, "--%s needs a value (%s)", o->name, o->arg);
        return -1;
    }
    if (set_value(c, o, v) == 0) return 0;
    bad_value(o, v, err, err_len);
    return -1;
}

int sim_options_parse(sim_config *c, int argc, char **argv, char *err, size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        int rc = parse_one(c, argc, argv, &i, err, err_len);
        if (rc != 0) return rc;
    }
    if (c->n_models == 0)
        c->models[c->n_models++] = c->api == SIM_API_OLLAMA      ? "llama3.2:latest"
                                   : c->api == SIM_API_ANTHROPIC ? "claude-sonnet-4-5"
                                                                 : "qwen3-32b";
    for (size_t i = 0; i < c->n_loaded; i++) {
        bool known = false;
        for (size_t k = 0; k < c->n_models; k++)
            known = known || strcmp(c->loaded[i], c->models[k]) == 0;
        if (!known) {
            snprintf(err, err_len, "--loaded %s: not one of the --model names", c->loaded[i]);
            return -1;
        }
    }
    return 0;
}

void sim_options_usage(FILE *out)
{
    fprintf(out, "Usage: lexora-sim [OPTION]...\n"
                 "A stand-in for vLLM's OpenAI-compatible server, or Ollama's, llama.cpp's or Anthropic's Messages\n"
                 "API with --api (no GPU needed). See docs/SIMULATOR.md.\n\n");
    for (size_t i = 0; i < LX_ARRAY_LEN(rows); i++) {
        char left[48];
        snprintf(left, sizeof left, "--%s%s%s", rows[i].name, rows[i].arg ? " " : "", rows[i].arg ? rows[i].arg : "");
        fprintf(out, "  %-26s %s\n", left, rows[i].help);
    }
}
