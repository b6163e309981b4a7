/*
 * Shared by the unit tests: a config snapshot from inline YAML, printing the problems and failing
 * the test when the text is not a valid config. Include after <cmocka.h>.
 */
#ifndef LX_TEST_SUPPORT_H
#define LX_TEST_SUPPORT_H

#include <stdio.h>
#include <string.h>

#include "config.h"

static inline lx_config *lx_test_config(const char *yaml)
{
    lx_buf err;
    lx_buf_init(&err, 0);
    lx_config *c = lx_config_parse("t.yaml", yaml, strlen(yaml), &err);
    if (c == NULL) fprintf(stderr, "%s\n", err.p);
    lx_buf_free(&err);
    assert_non_null(c);
    return c;
}

#endif
