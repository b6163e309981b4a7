/*
 * body-bench: how fast a request body is read and rewritten (api/body.c), the per-request work the
 * gateway does on every chat request before it reaches a backend. The scan is also the token
 * estimate's only pass (limits/tokens.h), so "scan" includes the estimate, as the proxy runs it.
 *
 * Builds a realistic chat request of about 128 KB (many user/assistant turns of long text with
 * escapes and non-ASCII, plus x_priority, x_user_id, x_timeout and stream:true) and one of about
 * 2 KB, then runs lx_body_scan + lx_tokens_estimate + lx_body_rewrite (x_* removed,
 * stream_options.include_usage forced, "priority" set) in a loop. Each measurement is 5 runs of (seconds / 5); the
 * median is printed. The output buffer is reused between iterations, as a steady-state connection would.
 *
 * Usage: body-bench [seconds per size, default 2]
 * Build optimized for meaningful numbers: cmake -DCMAKE_BUILD_TYPE=Release (no LEXORA_SANITIZE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/body.h"
#include "limits/tokens.h"
#include "utils/buf.h"
#include "utils/common.h"

#define RUNS 5

static const char *sentences[] = {
    "The gateway sits in front of vLLM and adds priority queueing, rate limits and statistics. ",
    "She said \\\"this is fine\\\" and left\\n\\nthe room; the path was C:\\\\models\\\\qwen. ",
    "Caf\303\251 cr\303\250me br\303\273l\303\251e, na\303\257ve fa\303\247ade \\u00e9t\\u00e9. ",
    "\346\227\245\346\234\254\350\252\236\343\201\256\346\226\207\347\253\240", /* a Japanese sentence */
    "\343\202\202\345\205\245\343\202\213\343\200\202 ",
    "\360\237\230\200 ",
    "def f(x):\\n    return {\\\"k\\\": [x, x * 2]}\\n",
    "A longer plain paragraph about KV-cache usage, batching, time to first token and throughput under load. ",
};

static void add_message(lx_buf *b, int i, size_t text_len)
{
    lx_buf_printf(b, "%s{\"role\":\"%s\",\"content\":\"", i ? "," : "", i % 2 ? "assistant" : "user");
    size_t start = b->len;
    for (int k = i; b->len - start < text_len; k++)
        lx_buf_append_str(b, sentences[k % LX_ARRAY_LEN(sentences)]);
    lx_buf_append_str(b, "\"}");
}

static void build_request(lx_buf *b, size_t target, size_t text_len)
{
    lx_buf_init(b, 0);
    lx_buf_append_str(b, "{\"model\":\"qwen3-32b\",\"x_priority\":\"high\",\"messages\":[");
    lx_buf_append_str(b, "{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}");
    for (int i = 1; b->len < target - 400; i++)
        add_message(b, i, text_len);
    lx_buf_append_str(b, "],\"temperature\":0.7,\"top_p\":0.95,\"max_tokens\":1024,\"x_user_id\":\"takahito\","
                         "\"stream\":true,\"x_timeout\":30,\"stop\":[\"\\n\\nUser:\"],\"seed\":42}");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One scan + estimate (+ rewrite); returns the rewritten length or a count from the scan (and aborts
 * on failure: the bench checks itself). */
static size_t once(const lx_buf *req, lx_buf *out, bool rewrite)
{
    lx_body_fields f;
    lx_body_error err;
    lx_body_rewrite_opts o = {.set_model = "qwen3-32b", .force_include_usage = true, .priority = "-1"};
    lx_token_estimate est;
    if (lx_body_scan(req->p, req->len, &f, &err) != 0) {
        fprintf(stderr, "body-bench: scan failed: %s\n", err.message);
        exit(1);
    }
    lx_tokens_estimate(&f.tokens, &est);
    if (!rewrite) return f.n_members + (size_t)est.prompt_tokens;
    lx_buf_reset(out);
    if (lx_body_rewrite(req->p, req->len, &f, &o, out) != 0) {
        fprintf(stderr, "body-bench: rewrite failed\n");
        exit(1);
    }
    return out->len;
}

/* Median ns per request over RUNS runs of run_s seconds each. */
static double measure(const lx_buf *req, lx_buf *out, bool rewrite, double run_s)
{
    double ns[RUNS];
    volatile size_t sink = 0;
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = lx_now_ns(), t;
        size_t n = 0;
        do {
            for (int k = 0; k < 16; k++, n++)
                sink += once(req, out, rewrite);
            t = lx_now_ns();
        } while ((double)(t - t0) < run_s * 1e9);
        ns[r] = (double)(t - t0) / (double)n;
    }
    (void)sink;
    qsort(ns, RUNS, sizeof ns[0], cmp_double);
    return ns[RUNS / 2];
}

static void check(const lx_buf *req, lx_buf *out)
{
    lx_body_fields f;
    lx_body_error err;
    once(req, out, true);
    if (lx_body_scan(out->p, out->len, &f, &err) != 0 || f.n_x != 0 || !f.include_usage || !f.stream) {
        fprintf(stderr, "body-bench: the rewrite is wrong\n");
        exit(1);
    }
}

static void report(const char *name, const lx_buf *req, double seconds)
{
    lx_buf out;
    lx_buf_init(&out, 0);
    check(req, &out);
    double scan = measure(req, &out, false, seconds / 2 / RUNS);
    double both = measure(req, &out, true, seconds / 2 / RUNS);
    printf("%-6s %7zu B   scan: %9.0f ns %8.0f MB/s   scan+rewrite: %9.0f ns %8.0f MB/s\n", name, req->len, scan,
           (double)req->len / scan * 1e3, both, (double)req->len / both * 1e3);
    lx_buf_free(&out);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? strtod(argv[1], NULL) : 2.0;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: body-bench [seconds per size]\n");
        return 2;
    }
    lx_buf big, small;
    build_request(&big, 128 * 1024, 600);
    build_request(&small, 2 * 1024, 200);
    printf("body-bench: median of %d runs, %.1f s per size (MB = 10^6 bytes)\n", RUNS, seconds);
    report("128KB", &big, seconds);
    report("2KB", &small, seconds);
    lx_buf_free(&big);
    lx_buf_free(&small);
    return 0;
}
