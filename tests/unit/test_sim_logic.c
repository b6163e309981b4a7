/*
 * Unit tests for lexora-sim's pure logic: the option table and Ollama's keep_alive parser (tools/sim/sim_options.c),
 * the deterministic pieces (tools/sim/sim_text.c) and the prefix cache (tools/sim/sim_prefix.c). The simulator is not
 * part of lexora_core, so its two pure files are compiled into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/sim/sim_options.c"
#include "../../tools/sim/sim_prefix.c"
#include "../../tools/sim/sim_text.c"

static int parse(sim_config *c, char err[256], const char *a1, const char *a2, const char *a3)
{
    char *argv[] = {"lexora-sim", (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
    sim_config_defaults(c);
    return sim_options_parse(c, argc, argv, err, 256);
}

static void test_defaults(void **state)
{
    (void)state;
    sim_config c;
    char err[256];
    assert_int_equal(parse(&c, err, NULL, NULL, NULL), 0);
    assert_int_equal(c.port, 8000);
    assert_int_equal(c.n_models, 1);
    assert_string_equal(c.models[0], "qwen3-32b");
    assert_int_equal(c.max_batch, 16);
    assert_int_equal(c.fail_mode, SIM_FAIL_503);
    assert_string_equal(c.vllm_version, "0.11.0");
}

static void test_values(void **state)
{
    (void)state;
    sim_config c;
    char err[256];
    assert_int_equal(parse(&c, err, "--model=a", "--model", "b"), 0);
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[1], "b");
    assert_int_equal(parse(&c, err, "--fail-mode", "midstream", "--flat-errors"), 0);
    assert_int_equal(c.fail_mode, SIM_FAIL_MIDSTREAM);
    assert_true(c.flat_errors);
    assert_int_equal(parse(&c, err, "--fail-rate=0.25", "--seed=18446744073709551615", NULL), 0);
    assert_true(c.fail_rate == 0.25);
    assert_true(c.seed == UINT64_MAX);
    assert_int_equal(parse(&c, err, "--help", NULL, NULL), 1);
}

static void test_bad_options(void **state)
{
    (void)state;
    sim_config c;
    char err[256];
    assert_int_equal(parse(&c, err, "--port", "70000", NULL), -1);
    assert_non_null(strstr(err, "--port"));
    assert_int_equal(parse(&c, err, "--port", "80x", NULL), -1);
    assert_int_equal(parse(&c, err, "--max-batch", "0", NULL), -1);
    assert_int_equal(parse(&c, err, "--max-batch", "1.5", NULL), -1);
    assert_int_equal(parse(&c, err, "--fail-rate", "1.1", NULL), -1);
    assert_int_equal(parse(&c, err, "--fail-mode", "404", NULL), -1);
    assert_int_equal(parse(&c, err, "--seed", "-1", NULL), -1);
    assert_int_equal(parse(&c, err, "--model", "--quiet", NULL), -1);
    assert_int_equal(parse(&c, err, "--quiet=yes", NULL, NULL), -1);
    assert_int_equal(parse(&c, err, "--nope", NULL, NULL), -1);
    assert_non_null(strstr(err, "unknown option"));
    assert_int_equal(parse(&c, err, "port", NULL, NULL), -1);
}

static void test_words_deterministic(void **state)
{
    (void)state;
    size_t n1, n2;
    for (long i = 0; i < 100; i++) {
        const char *a = sim_word(42, i, &n1), *b = sim_word(42, i, &n2);
        assert_ptr_equal(a, b);
        assert_true(n1 > 1 && a[n1 - 1] == ' ');
    }
    int differ = 0;
    for (long i = 0; i < 20; i++)
        differ += sim_word(1, i, &n1) != sim_word(2, i, &n2);
    assert_true(differ > 5);
}

static void test_tokens_and_itl(void **state)
{
    (void)state;
    assert_int_equal(sim_tokens_for_bytes(0), 0);
    assert_int_equal(sim_tokens_for_bytes(1), 1);
    assert_int_equal(sim_tokens_for_bytes(4), 1);
    assert_int_equal(sim_tokens_for_bytes(5), 2);
    assert_true(fabs(sim_itl_ms(50, 0.5, 1, 16) - 20.0) < 1e-9);
    assert_true(fabs(sim_itl_ms(50, 0.5, 9, 16) - 25.0) < 1e-9);
    assert_true(sim_itl_ms(0, 0.5, 9, 16) == 0);
}

static void test_rng_and_ids(void **state)
{
    (void)state;
    uint64_t a = 7, b = 7;
    for (int i = 0; i < 10; i++)
        assert_true(sim_rng_next(&a) == sim_rng_next(&b));
    double u = sim_rng_unit(&a);
    assert_true(u >= 0 && u < 1);
    char id[33];
    sim_hex_id(&a, id);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(strspn(id, "0123456789abcdef"), 32);
}

static void test_embedding_and_base64(void **state)
{
    (void)state;
    double v[8], w[8], norm = 0;
    sim_embedding(99, 8, v);
    sim_embedding(99, 8, w);
    for (int i = 0; i < 8; i++) {
        assert_true(v[i] == w[i]);
        norm += v[i] * v[i];
    }
    assert_true(fabs(norm - 1.0) < 1e-4);
    double one[2] = {1.0, -2.0}; /* 0x3f800000, 0xc0000000 little-endian */
    lx_buf b;
    lx_buf_init(&b, 0);
    assert_int_equal(sim_base64_floats(one, 2, &b), 0);
    assert_string_equal(b.p, "AACAPwAAAMA=");
    lx_buf_free(&b);
}

static void test_api_and_prefix_options(void **state)
{
    (void)state;
    sim_config c;
    char err[256];
    assert_int_equal(parse(&c, err, "--api", "ollama", NULL), 0);
    assert_int_equal(c.api, SIM_API_OLLAMA);
    assert_string_equal(c.models[0], "llama3.2:latest"); /* Ollama's default name */
    assert_int_equal(c.prefix_cache_entries, 4096);
    assert_true(c.prefix_hit_ttft_ms == 10);
    assert_int_equal(parse(&c, err, "--api=llamacpp", "--load-ms", "250"), 0);
    assert_int_equal(c.api, SIM_API_LLAMACPP);
    assert_true(c.load_ms == 250);
    assert_int_equal(parse(&c, err, "--api", "tgi", NULL), -1);
    assert_non_null(strstr(err, "vllm, ollama, llamacpp"));
    assert_int_equal(parse(&c, err, "--prefix-cache-entries", "0", NULL), 0);
    assert_int_equal(c.prefix_cache_entries, 0);
}

/* keep_alive as Go's time.ParseDuration reads it (Ollama's api.Duration for a string). */
static void test_keep_alive_parse(void **state)
{
    (void)state;
    char err[128];
    double ms = 0;
    static const struct {
        const char *in;
        double ms;
    } ok[] = {{"5m", 300000}, {"0", 0},        {"30s", 30000}, {"1h30m", 5400000}, {"1.5s", 1500}, {"250ms", 250},
              {".5s", 500},   {"+2m", 120000}, {"-1m", -1},    {"-0s", 0},         {"100us", 0.1}, {"2h", 7200000}};
    for (size_t i = 0; i < LX_ARRAY_LEN(ok); i++) {
        assert_int_equal(sim_keep_alive_parse(ok[i].in, &ms, err, sizeof err), 0);
        assert_true(fabs(ms - ok[i].ms) < 1e-9);
    }
    assert_int_equal(sim_keep_alive_parse("300", &ms, err, sizeof err), -1);
    assert_string_equal(err, "time: missing unit in duration \"300\"");
    assert_int_equal(sim_keep_alive_parse("5x", &ms, err, sizeof err), -1);
    assert_string_equal(err, "time: unknown unit \"x\" in duration \"5x\"");
    assert_int_equal(sim_keep_alive_parse("", &ms, err, sizeof err), -1);
    assert_string_equal(err, "time: invalid duration \"\"");
    assert_int_equal(sim_keep_alive_parse("m", &ms, err, sizeof err), -1);
    assert_string_equal(err, "time: invalid duration \"m\"");
    assert_int_equal(sim_keep_alive_parse("-", &ms, err, sizeof err), -1);
    /* OLLAMA_KEEP_ALIVE (--keep-alive) also takes whole seconds */
    assert_int_equal(sim_keep_alive_env("300", &ms), 0);
    assert_true(ms == 300000);
    assert_int_equal(sim_keep_alive_env("-1", &ms), 0);
    assert_true(ms == -1);
    assert_int_equal(sim_keep_alive_env("10m", &ms), 0);
    assert_true(ms == 600000);
    assert_int_equal(sim_keep_alive_env("ten", &ms), -1);
}

static void test_load_options(void **state)
{
    (void)state;
    sim_config c;
    char err[256];
    assert_int_equal(parse(&c, err, NULL, NULL, NULL), 0);
    assert_true(c.default_model_mb == 1024 && c.memory_mb == 0 && c.unload_ms == 0);
    assert_string_equal(c.keep_alive, "5m");
    assert_int_equal(c.models_max, 4);
    assert_false(c.router || c.sleep_mode || c.runtime_lora || c.start_unloaded);
    assert_int_equal(parse(&c, err, "--model-mb", "a=2000", "--model-mb=b=1.5"), 0);
    assert_true(sim_model_mb(&c, "a") == 2000);
    assert_true(sim_model_mb(&c, "b") == 1.5);
    assert_true(sim_model_mb(&c, "c") == 1024);
    assert_int_equal(parse(&c, err, "--model-mb", "x=1", "--model-mb=x=2"), 0);
    assert_true(sim_model_mb(&c, "x") == 2); /* the last one given wins */
    assert_int_equal(parse(&c, err, "--model-mb", "=5", NULL), -1);
    assert_non_null(strstr(err, "NAME=MB"));
    assert_int_equal(parse(&c, err, "--model-mb", "a=", NULL), -1);
    assert_int_equal(parse(&c, err, "--model-mb", "a=-1", NULL), -1);
    assert_int_equal(parse(&c, err, "--model-mb", "a", NULL), -1);
    assert_int_equal(parse(&c, err, "--keep-alive", "90", NULL), 0);
    assert_int_equal(parse(&c, err, "--keep-alive", "soon", NULL), -1);
    assert_int_equal(parse(&c, err, "--model", "a", "--loaded=a"), 0);
    assert_int_equal(c.n_loaded, 1);
    assert_int_equal(parse(&c, err, "--model", "a", "--loaded=b"), -1);
    assert_non_null(strstr(err, "--loaded b"));
    assert_int_equal(parse(&c, err, "--router", "--sleep-mode", "--runtime-lora"), 0);
    assert_true(c.router && c.sleep_mode && c.runtime_lora);
    assert_int_equal(parse(&c, err, "--models-max", "0", NULL), -1);
    assert_int_equal(parse(&c, err, "--memory-mb", "512", "--start-unloaded"), 0);
    assert_true(c.memory_mb == 512 && c.start_unloaded);
}

static void test_prefix_keys(void **state)
{
    (void)state;
    char text[3000];
    memset(text, 'a', sizeof text);
    sim_prefix_keyset a, b;
    assert_int_equal(sim_prefix_keys(text, 600, &a), 600); /* blocks end at 256, 512, 600 */
    assert_int_equal(a.n, 3);
    assert_int_equal(a.end[2], 600);
    assert_int_equal(sim_prefix_keys(text, sizeof text, &b), SIM_PREFIX_WINDOW); /* only the window counts */
    assert_int_equal(b.n, SIM_PREFIX_KEYS);
    assert_true(a.key[0] == b.key[0] && a.key[1] == b.key[1]); /* a shared start, the same keys */
    assert_true(a.key[2] != b.key[2]);                         /* 600 bytes is not 768 */
    text[100] = 'b';
    sim_prefix_keys(text, 600, &b);
    assert_true(a.key[0] != b.key[0] && a.key[2] != b.key[2]); /* every key covers all before it */
    assert_int_equal(sim_prefix_keys(text, 0, &b), 0);
    assert_int_equal(b.n, 0);
}

static void test_prefix_cache_lru(void **state)
{
    (void)state;
    char t1[1024], t2[1024];
    memset(t1, 'x', sizeof t1);
    memset(t2, 'y', sizeof t2);
    sim_prefix_keyset k1, k1longer, k2;
    sim_prefix_keys(t1, 512, &k1);
    sim_prefix_keys(t1, 1024, &k1longer); /* the next turn of the same conversation */
    sim_prefix_keys(t2, 512, &k2);
    assert_null(sim_prefix_new(0));
    assert_int_equal(sim_prefix_match(NULL, &k1), 0);

    sim_prefix_cache *c = sim_prefix_new(3);
    assert_int_equal(sim_prefix_match(c, &k1), 0);
    sim_prefix_insert(c, &k1);
    assert_int_equal(sim_prefix_count(c), 2);
    assert_int_equal(sim_prefix_match(c, &k1), 512);
    assert_int_equal(sim_prefix_match(c, &k1longer), 512); /* what it shares with the earlier turn */
    sim_prefix_insert(c, &k1);
    assert_int_equal(sim_prefix_count(c), 2); /* nothing twice */
    sim_prefix_insert(c, &k2);                /* 4 keys into 3: t1's first block, the oldest, goes */
    assert_int_equal(sim_prefix_count(c), 3);
    assert_int_equal(sim_prefix_match(c, &k2), 512);
    sim_prefix_keyset first;
    sim_prefix_keys(t1, 256, &first);
    assert_int_equal(sim_prefix_match(c, &first), 0);
    assert_int_equal(sim_prefix_match(c, &k1), 512); /* its 512-byte key is still there */
    sim_prefix_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_words_deterministic),
        cmocka_unit_test(test_tokens_and_itl),
        cmocka_unit_test(test_rng_and_ids),
        cmocka_unit_test(test_embedding_and_base64),
        cmocka_unit_test(test_api_and_prefix_options),
        cmocka_unit_test(test_keep_alive_parse),
        cmocka_unit_test(test_load_options),
        cmocka_unit_test(test_prefix_keys),
        cmocka_unit_test(test_prefix_cache_lru),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
