/*
 * auto-route-bench: what automatic routing's analyzer (routing/analyzer.h) costs per request.
 *
 * For prompts of 1 KB and 32 KB — English prose, Japanese prose, and a question with code pasted in — it
 * times the whole decision the proxy makes (lx_auto_decide: reading the messages JSON, the signals, the
 * n-grams, the classifier and the reason) with the shipped model, and reports the median microseconds over
 * RUNS rounds of ITER decisions each. The targets: 20 µs at 1 KB, 200 µs at 32 KB.
 *
 * Usage: auto-route-bench
 * Build optimized for meaningful numbers: cmake -DCMAKE_BUILD_TYPE=Release (no LEXORA_SANITIZE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "routing/analyzer.h"
#include "utils/buf.h"
#include "utils/common.h"

#define RUNS 9
#define ITER 200

static const char *const pieces[] = {
    "We are planning to move our order service to a new database and want to understand the trade-offs "
    "between keeping a single primary with read replicas and sharding by customer. ",
    "取引先に新製品の発売を知らせる丁寧なお知らせメールを書いてください。発売日は来月1日で、価格は据え置きです。",
    "Why does this fail?\n```python\ndef load(path):\n    with open(path) as f:\n        return "
    "json.load(f)[\"items\"]\n```\n",
};
static const char *const names[] = {"english prose", "japanese prose", "code pasted in"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* {"model":"auto","messages":[{"role":"user","content":"<piece repeated to about size bytes>"}]} */
static void make_body(lx_buf *b, const char *piece, size_t size)
{
    lx_buf text;
    lx_buf_init(&text, 0);
    while (text.len < size)
        lx_buf_append_str(&text, piece);
    text.len = size;
    while (text.len > 0 && ((unsigned char)text.p[text.len] & 0xC0) == 0x80)
        text.len--;
    lx_buf_append_str(b, "[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
                         "{\"role\":\"user\",\"content\":\"");
    lx_buf_json_escape(b, text.p, text.len);
    lx_buf_append_str(b, "\"}]");
    lx_buf_free(&text);
}

int main(void)
{
    static const char yaml[] = "backends:\n  a:\n    type: vllm\n    url: \"http://127.0.0.1:1\"\n"
                               "    models: [\"m\"]\nrouting:\n  auto:\n    routes: {code: m}\n";
    lx_buf err;
    lx_buf_init(&err, 0);
    lx_config *c = lx_config_parse("bench.yaml", yaml, strlen(yaml), &err);
    if (c == NULL) {
        fprintf(stderr, "%s", err.p);
        return 1;
    }
    static const size_t sizes[] = {1024, 32768};
    printf("%-16s %8s %12s %12s  %s\n", "prompt", "bytes", "median_us", "best_us", "class");
    for (size_t s = 0; s < LX_ARRAY_LEN(sizes); s++) {
        for (size_t k = 0; k < LX_ARRAY_LEN(pieces); k++) {
            lx_buf body;
            lx_buf_init(&body, 0);
            make_body(&body, pieces[k], sizes[s]);
            lx_auto_verdict v;
            double t[RUNS];
            for (int r = 0; r < RUNS; r++) {
                uint64_t t0 = lx_now_ns();
                for (int i = 0; i < ITER; i++)
                    lx_auto_decide(c, (lx_slice){body.p, body.len}, (lx_slice){0}, false, &v);
                t[r] = (double)(lx_now_ns() - t0) / ITER / 1000.0;
            }
            qsort(t, RUNS, sizeof t[0], cmp_double);
            printf("%-16s %8zu %12.2f %12.2f  %s\n", names[k], sizes[s], t[RUNS / 2], t[0], v.class_name);
            lx_buf_free(&body);
        }
    }
    lx_config_unref(c);
    lx_buf_free(&err);
    return 0;
}
