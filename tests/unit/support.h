/*
 * Shared by the unit tests, written once: a config snapshot from inline YAML (printing the problems and
 * failing the test when the text is not a valid config), and a libuv loop run until a condition holds
 * or a time passes. Include after <cmocka.h>.
 */
#ifndef LX_TEST_SUPPORT_H
#define LX_TEST_SUPPORT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "config.h"

static inline lx_config *lx_test_config(const char *yaml)
{
    lx_buf err;
    lx_buf_init(&err, 0);
    lx_config *c = lx_config_parse("t.yaml", yaml, strlen(yaml), &err);
    if (c == NULL) print_error("unexpected errors:\n%s\nin:\n%s\n", err.p, yaml);
    lx_buf_free(&err);
    assert_non_null(c);
    return c;
}

#define LX_TEST_TURN_MS 5 /* longest wait before a turn of lx_test_run_until */

typedef bool (*lx_test_cond)(void *arg);

/* A condition: the bool that arg points to is true. */
static inline bool lx_test_flag(void *arg) { return *(const bool *)arg; }

/*
 * Runs loop, one UV_RUN_NOWAIT turn at a time, until cond(arg) holds (checked before each turn; NULL
 * never holds) or ms milliseconds pass; returns whether it held. Before a turn it waits for the loop's
 * I/O (poll on its backend fd) until its next timer is due, at most LX_TEST_TURN_MS: the deadline holds
 * even when nothing would wake the loop, and no handle of its own is left to close.
 */
static inline bool lx_test_run_until(uv_loop_t *loop, lx_test_cond cond, void *arg, uint64_t ms)
{
    uint64_t end = uv_hrtime() + ms * 1000000u;
    for (;;) {
        if (cond && cond(arg)) return true;
        uint64_t now = uv_hrtime();
        if (now >= end) return false;
        int left = (int)((end - now + 999999u) / 1000000u);
        int wait = uv_loop_alive(loop) ? uv_backend_timeout(loop) : -1; /* 0 when work is pending */
        if (wait < 0 || wait > LX_TEST_TURN_MS) wait = LX_TEST_TURN_MS;
        if (wait > left) wait = left;
        struct pollfd pfd = {.fd = uv_backend_fd(loop), .events = POLLIN};
        if (wait > 0) (void)poll(&pfd, 1, wait);
        uv_run(loop, UV_RUN_NOWAIT);
    }
}

/* Runs loop for ms milliseconds. */
static inline void lx_test_run_for(uv_loop_t *loop, uint64_t ms) { (void)lx_test_run_until(loop, NULL, NULL, ms); }

#endif
