/*
 * Fuzz target: the config loader (config.c, libyaml underneath) on arbitrary YAML text, and what a
 * reload does next with a snapshot it accepted (reload.c: the key-by-key diff, the pin, the JSON).
 *
 * Checks: a refused text always says why, each problem on a line starting with the file name; an
 * accepted one diffs against itself to nothing, and a second parse of the same text gives the same
 * snapshot (no key depends on anything but the text).
 * admin.token_file may name a file: the loader reads it (at most 4 KB), as lexora --check-config would.
 */
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "reload.h"

#define NAME "fuzz.yaml"

static lx_config *base; /* a typical running snapshot to diff against: the shipped config's shape */

static const char base_yaml[] = "server:\n  port: 8001\n"
                                "vllm:\n  url: \"http://localhost:8000\"\n  timeout: 120\n"
                                "default_model: \"qwen3-32b\"\n"
                                "backends:\n  vllm:\n    models: [\"qwen3-32b\"]\n"
                                "rate_limits:\n  users:\n    alice:\n      requests_per_minute: 60\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lx_buf errors;
    lx_buf_init(&errors, 0);
    base = lx_config_parse("base.yaml", base_yaml, sizeof base_yaml - 1, &errors);
    if (base == NULL) {
        fprintf(stderr, "fuzz_config: the base config is refused:\n%s", errors.p);
        abort();
    }
    lx_buf_free(&errors);
    return 0;
}

static void check_errors(const lx_buf *errors)
{
    LX_FUZZ_CHECK(errors->len > 0);
    for (const char *line = errors->p; line < errors->p + errors->len;) {
        LX_FUZZ_CHECK(strncmp(line, NAME ":", sizeof NAME) == 0);
        const char *nl = memchr(line, '\n', (size_t)(errors->p + errors->len - line));
        line = nl ? nl + 1 : errors->p + errors->len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lx_buf errors;
    lx_buf_init(&errors, 0);
    lx_config *c = lx_config_parse(NAME, (const char *)data, size, &errors);
    if (c == NULL) {
        check_errors(&errors);
        lx_buf_free(&errors);
        return 0;
    }
    LX_FUZZ_CHECK(errors.len == 0 || errors.p[errors.len - 1] == '\n'); /* warnings only */
    lx_config *again = lx_config_parse(NAME, (const char *)data, size, &errors);
    LX_FUZZ_CHECK(again != NULL);

    lx_reload_diff same = {0};
    lx_reload_diff_compute(c, again, &same);
    LX_FUZZ_CHECK(same.changed.n == 0 && same.restart_required.n == 0);
    lx_reload_diff_free(&same);

    lx_reload_diff d = {0};
    lx_reload_diff_compute(base, again, &d);
    lx_reload_pin(base, again);
    lx_buf json;
    lx_buf_init(&json, 0);
    lx_reload_diff_json(&d, &json);
    lx_keylist_join(&d.changed, &json);
    lx_reload_diff_free(&d);
    lx_buf_free(&json);

    lx_config_backend_for(c, "qwen3-32b", 9);
    lx_config_unref(again);
    lx_config_unref(c);
    lx_buf_free(&errors);
    return 0;
}
