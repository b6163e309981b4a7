/*
 * A rate-limit refusal as an HTTP 429 (OpenAI's envelope and message) and the x-ratelimit-* headers.
 * See ratelimit.h.
 *
 * Invariants: everything here is computed from a req's lx_rate_result and user name alone (the limiter
 * has decided; nothing here changes its state). At most 6 window headers plus 2 for a refusal, so
 * LX_RATELIMIT_MAX_HEADERS is never reached; a value longer than its 24 bytes would be truncated.
 */
#include "api/ratelimit.h"

#include <stdio.h>
#include <string.h>

#include "utils/common.h"

lx_err lx_ratelimit_err(const lx_rate_req *q)
{
    return q->result.kind == LX_RATE_TOKENS ? LX_ERR_RATE_LIMIT_TOKENS : LX_ERR_RATE_LIMIT_REQUESTS;
}

/* Numbers are written without printf (lx_fmt_uint): the headers below go on every answer. */
static char *put_dec(char *p, unsigned long long v) { return p + lx_fmt_uint(p, v); }

void lx_ratelimit_duration(int64_t ms, char *out, size_t cap)
{
    char t[48], *p = t;
    if (ms <= 0) {
        *p++ = '0';
    } else if (ms < 1000) {
        p = put_dec(p, (unsigned long long)ms);
        *p++ = 'm';
    } else {
        unsigned long long h = (unsigned long long)ms / 3600000, m = (unsigned long long)ms / 60000 % 60,
                           sec = (unsigned long long)ms / 1000 % 60, frac = (unsigned long long)ms % 1000;
        if (h > 0) {
            p = put_dec(p, h);
            *p++ = 'h';
        }
        if (ms >= 60000) {
            p = put_dec(p, m);
            *p++ = 'm';
        }
        p = put_dec(p, sec);
        if (frac) { /* three digits, trailing zeros dropped: 1.5s, 2.52s, 59.929s */
            *p++ = '.';
            *p++ = (char)('0' + frac / 100);
            *p++ = (char)('0' + frac / 10 % 10);
            *p++ = (char)('0' + frac % 10);
            while (p[-1] == '0')
                p--;
        }
    }
    *p++ = 's';
    lx_copy_cut(out, cap, t, (size_t)(p - t));
}

void lx_ratelimit_message(const lx_rate_req *q, char *msg, size_t cap)
{
    const lx_rate_result *r = &q->result;
    const char *what = r->kind == LX_RATE_TOKENS ? "tokens per min (TPM)" : "requests per min (RPM)";
    if (r->verdict == LX_RATE_TOO_LARGE) {
        snprintf(msg, cap,
                 "Request too large for user `%s` on %s: Limit %ld, Requested %ld. The input or output tokens must "
                 "be reduced in order to run successfully (max_tokens is reserved in full).",
                 lx_rate_req_user(q), what, r->limit, r->requested);
        return;
    }
    if (r->verdict != LX_RATE_LIMITED) {
        snprintf(msg, cap, "Within the rate limits of user `%s`.", lx_rate_req_user(q));
        return;
    }
    char wait[32];
    lx_ratelimit_duration(r->retry_after_ms, wait, sizeof wait);
    snprintf(msg, cap,
             "Rate limit reached for user `%s` on %s: Limit %ld, Used %ld, Requested %ld. Please try again in %s.",
             lx_rate_req_user(q), what, r->limit, r->used, r->requested, wait);
}

int lx_ratelimit_body(const lx_rate_req *q, lx_buf *out)
{
    char msg[512];
    lx_ratelimit_message(q, msg, sizeof msg);
    return lx_err_body(out, lx_ratelimit_err(q), msg, NULL);
}

static void add_header(lx_ratelimit_headers *h, const char *name, long long v)
{
    if (h->n >= LX_RATELIMIT_MAX_HEADERS) return;
    char t[24], *p = t;
    if (v < 0) *p++ = '-';
    p = put_dec(p, v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v);
    h->name[h->n] = name;
    lx_copy_cut(h->value[h->n], sizeof h->value[h->n], t, (size_t)(p - t));
    h->n++;
}

static void add_window(lx_ratelimit_headers *h, const lx_rate_window *w, const char *limit, const char *remaining,
                       const char *reset)
{
    if (w->limit <= 0) return;
    add_header(h, limit, w->limit);
    add_header(h, remaining, w->remaining);
    if (h->n >= LX_RATELIMIT_MAX_HEADERS) return;
    h->name[h->n] = reset;
    lx_ratelimit_duration(w->reset_ms, h->value[h->n], sizeof h->value[h->n]);
    h->n++;
}

void lx_ratelimit_headers_fill(const lx_rate_result *r, lx_ratelimit_headers *h)
{
    h->n = 0;
    add_window(h, &r->requests, "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
               "x-ratelimit-reset-requests");
    add_window(h, &r->tokens, "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens");
    if (r->verdict == LX_RATE_LIMITED) {
        add_header(h, "retry-after", (r->retry_after_ms + 999) / 1000);
        add_header(h, "retry-after-ms", r->retry_after_ms);
    } else if (r->verdict == LX_RATE_TOO_LARGE) {
        h->name[h->n] = "x-should-retry";
        lx_copy_cut(h->value[h->n], sizeof h->value[h->n], "false", 5);
        h->n++;
    }
}
