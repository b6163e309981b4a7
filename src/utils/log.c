/*
 * Logging. Text lines look like
 *   2026-11-28T10:00:00.123Z INFO  [req_ab12] message
 * JSON lines like
 *   {"ts":"2026-11-28T10:00:00.123Z","level":"INFO","request_id":"req_ab12","msg":"message"}
 * stderr is switched to full buffering; lx_log_flush (once per loop turn) and WARN/ERROR lines push it out.
 */
#include "utils/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "utils/buf.h"
#include "utils/common.h"

lx_log_level lx_log_min_level = LX_LOG_INFO;
static bool log_json = false;
static bool log_buffered = false;

static const char *level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

int lx_log_level_parse(const char *name)
{
    if (strcasecmp(name, "debug") == 0) return LX_LOG_DEBUG;
    if (strcasecmp(name, "info") == 0) return LX_LOG_INFO;
    if (strcasecmp(name, "warning") == 0 || strcasecmp(name, "warn") == 0) return LX_LOG_WARN;
    if (strcasecmp(name, "error") == 0) return LX_LOG_ERROR;
    return -1;
}

const char *lx_log_level_name(lx_log_level level) { return level_names[level]; }

void lx_log_configure(lx_log_level level, bool json)
{
    lx_log_min_level = level;
    log_json = json;
    if (!log_buffered) {
        static char stderr_buf[1 << 16];
        setvbuf(stderr, stderr_buf, _IOFBF, sizeof stderr_buf);
        log_buffered = true;
    }
}

static int saved_stderr = -1; /* the stderr the process started with, once a file replaced it */

int lx_log_set_file(const char *path)
{
    int fd;
    if (path == NULL) {
        if (saved_stderr < 0) return 0;
        fd = saved_stderr;
    } else {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) return -errno;
        if (saved_stderr < 0) saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    }
    fflush(stderr);
    int rc = dup2(fd, STDERR_FILENO) < 0 ? -errno : 0;
    if (path != NULL) close(fd);
    return rc;
}

bool lx_log_json(void) { return log_json; }

void lx_log_flush(void) { fflush(stderr); }

/* "2026-11-28T10:00:00.123Z" into out (at least 32 bytes); the date and time part is formatted once per
 * second (per thread). */
static void timestamp(char *out, size_t n)
{
    static _Thread_local time_t cached_s = -1;
    static _Thread_local char cached[24];
    static _Thread_local size_t cached_len;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_s) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        cached_len = strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_s = tv.tv_sec;
    }
    unsigned ms = (unsigned)(tv.tv_usec / 1000);
    if (n < cached_len + 6) return;
    memcpy(out, cached, cached_len);
    char *p = out + cached_len;
    p[0] = '.', p[1] = (char)('0' + ms / 100), p[2] = (char)('0' + ms / 10 % 10), p[3] = (char)('0' + ms % 10);
    p[4] = 'Z', p[5] = '\0';
}

static void emit(lx_log_level level, lx_buf *line)
{
    lx_buf_append(line, "\n", 1);
    fwrite(line->p, 1, line->len, stderr);
    if (level >= LX_LOG_WARN || !log_buffered) fflush(stderr);
}

/* ,"key":"val" with val escaped. json_field's key is a string literal: the head is joined when compiling. */
static void json_field_head(lx_buf *b, const char *head, size_t n, const char *val)
{
    lx_buf_append(b, head, n);
    lx_buf_json_escape(b, val, strlen(val));
    lx_buf_append(b, "\"", 1);
}
#define json_field(b, key, val) json_field_head((b), ",\"" key "\":\"", sizeof(",\"" key "\":\"") - 1, (val))

/* An integer, without printf. */
static void put_long(lx_buf *b, long v)
{
    if (v < 0) lx_buf_append(b, "-", 1);
    lx_buf_append_uint(b, v < 0 ? 0UL - (unsigned long)v : (unsigned long)v, 10);
}

/* Milliseconds with 3 decimals, rounded to the nearest thousandth, without printf. */
static void put_ms(lx_buf *b, double ms)
{
    char t[32];
    lx_buf_append(b, t, lx_fmt_ms(t, ms));
}

/* ,"key": before a number; key a string literal. */
#define json_key(b, key) lx_buf_append((b), ",\"" key "\":", sizeof(",\"" key "\":") - 1)

void lx_log_write(lx_log_level level, const char *reqid, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char ts[40];
    timestamp(ts, sizeof ts);

    lx_buf line;
    lx_buf_init(&line, 0);
    lx_buf *b = &line;
    if (log_json) {
        lx_buf_printf(b, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_names[level]);
        if (reqid) json_field(b, "request_id", reqid);
        json_field(b, "msg", msg);
        lx_buf_append(b, "}", 1);
    } else {
        lx_buf_printf(b, "%s %-7s ", ts, level_names[level]);
        if (reqid) lx_buf_printf(b, "[%s] ", reqid);
        lx_buf_append_str(b, msg);
    }
    emit(level, b);
    lx_buf_free(b);
}

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

static void access_json(lx_buf *b, const lx_access_rec *r, const char *ts)
{
    lx_buf_append_str(b, "{\"ts\":\"");
    lx_buf_append_str(b, ts);
    lx_buf_append_str(b, "\",\"level\":\"INFO\",\"msg\":\"access\"");
    json_field(b, "request_id", or_dash(r->request_id));
    json_field(b, "user", or_dash(r->user));
    json_field(b, "method", or_dash(r->method));
    json_field(b, "path", or_dash(r->path));
    json_field(b, "model", or_dash(r->model));
    if (r->model_used) json_field(b, "model_used", r->model_used);
    if (r->route) json_field(b, "route", r->route);
    if (r->route && r->route_reason) json_field(b, "route_reason", r->route_reason);
    if (r->fallback_from) json_field(b, "fallback_from", r->fallback_from);
    if (r->experiment) json_field(b, "experiment", r->experiment);
    if (r->experiment && r->variant) json_field(b, "variant", r->variant);
    json_field(b, "backend", or_dash(r->backend));
    json_key(b, "status");
    put_long(b, r->status);
    if (r->error_code) json_field(b, "error_code", r->error_code);
    json_field(b, "priority", or_dash(r->priority));
    json_key(b, "latency_ms");
    put_ms(b, r->latency_ms);
    json_key(b, "overhead_ms");
    put_ms(b, r->overhead_ms);
    json_key(b, "queue_wait_ms");
    put_ms(b, r->queue_wait_ms);
    if (r->load_wait_ms > 0) {
        json_key(b, "load_wait_ms");
        put_ms(b, r->load_wait_ms);
    }
    lx_buf_append_str(b, r->stream ? ",\"stream\":true" : ",\"stream\":false");
    if (r->attempts > 1) {
        json_key(b, "attempts");
        put_long(b, r->attempts);
    }
    if (r->ttft_ms >= 0) {
        json_key(b, "ttft_ms");
        put_ms(b, r->ttft_ms);
    }
    if (r->prompt_tokens >= 0) {
        json_key(b, "prompt_tokens");
        put_long(b, r->prompt_tokens);
        json_key(b, "completion_tokens");
        put_long(b, r->completion_tokens);
    }
    lx_buf_append(b, "}", 1);
}

static void access_text(lx_buf *b, const lx_access_rec *r, const char *ts)
{
    lx_buf_printf(b,
                  "%s INFO    [%s] access user=%s %s %s model=%s%s%s backend=%s priority=%s status=%d%s%s "
                  "latency_ms=%.3f overhead_ms=%.3f queue_wait_ms=%.3f stream=%d",
                  ts, or_dash(r->request_id), or_dash(r->user), or_dash(r->method), or_dash(r->path), or_dash(r->model),
                  r->model_used ? " model_used=" : "", r->model_used ? r->model_used : "", or_dash(r->backend),
                  or_dash(r->priority), r->status, r->error_code ? " error=" : "", r->error_code ? r->error_code : "",
                  r->latency_ms, r->overhead_ms, r->queue_wait_ms, r->stream);
    if (r->attempts > 1) lx_buf_printf(b, " attempts=%d", r->attempts);
    if (r->load_wait_ms > 0) lx_buf_printf(b, " load_wait_ms=%.3f", r->load_wait_ms);
    if (r->ttft_ms >= 0) lx_buf_printf(b, " ttft_ms=%.3f", r->ttft_ms);
    if (r->prompt_tokens >= 0)
        lx_buf_printf(b, " tokens_in=%ld tokens_out=%ld", r->prompt_tokens, r->completion_tokens);
    if (r->route) lx_buf_printf(b, " route=%s", r->route);
    if (r->fallback_from) lx_buf_printf(b, " fallback_from=%s", r->fallback_from);
    if (r->experiment) lx_buf_printf(b, " experiment=%s variant=%s", r->experiment, or_dash(r->variant));
    if (r->route && r->route_reason) {
        lx_buf_append_str(b, " route_reason=\"");
        lx_buf_json_escape(b, r->route_reason, strlen(r->route_reason));
        lx_buf_append_str(b, "\"");
    }
}

/* One line per finished request, from the loop thread only: built in a buffer kept for the next line (no
 * allocation once it has grown to the longest line), numbers written without printf. */
void lx_log_access(const lx_access_rec *r)
{
    if (LX_LOG_INFO < lx_log_min_level) return;
    static lx_buf b;
    char ts[40];
    timestamp(ts, sizeof ts);
    lx_buf_reset(&b);
    if (log_json)
        access_json(&b, r, ts);
    else
        access_text(&b, r, ts);
    emit(LX_LOG_INFO, &b);
    if (b.cap > 65536) lx_buf_free(&b); /* an unusually long line is not kept */
}
