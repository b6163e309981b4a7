/* The shared building blocks: the intrusive list, the hash map and its hash (utils/list.h, utils/map.h), numbers
 * into a capped buffer (utils/buf.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "utils/buf.h"
#include "utils/common.h"
#include "utils/list.h"
#include "utils/map.h"

typedef struct {
    int v;
    lx_list link;
    lx_map_node node;
    char key[16];
} item;

static int values(const lx_list *head, int *out, int cap)
{
    int n = 0;
    for (lx_list *l = lx_list_first(head); l && n < cap; l = lx_list_next(head, l))
        out[n++] = LX_LIST_ENTRY(l, item, link)->v;
    return n;
}

static void test_list_order_and_remove(void **state)
{
    (void)state;
    lx_list head;
    lx_list_init(&head);
    assert_true(lx_list_empty(&head));
    assert_null(lx_list_first(&head));
    item it[4] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}};
    for (int i = 0; i < 4; i++)
        lx_list_init(&it[i].link);
    assert_false(lx_list_linked(&it[0].link));
    lx_list_append(&head, &it[1].link);
    lx_list_append(&head, &it[2].link);
    lx_list_prepend(&head, &it[0].link);
    lx_list_insert_after(&it[2].link, &it[3].link);
    int got[8];
    assert_int_equal(values(&head, got, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(got[i], i);
    assert_ptr_equal(lx_list_last(&head), &it[3].link);
    assert_ptr_equal(lx_list_prev(&head, &it[3].link), &it[2].link);
    assert_null(lx_list_prev(&head, &it[0].link));
    assert_null(lx_list_next(&head, &it[3].link));
    lx_list_remove(&it[1].link);
    lx_list_remove(&it[1].link); /* twice is harmless */
    assert_false(lx_list_linked(&it[1].link));
    assert_int_equal(values(&head, got, 8), 3);
    assert_int_equal(got[1], 2);
    lx_list *n, *tmp;
    int seen = 0;
    LX_LIST_EACH(&head, n, tmp)
    {
        lx_list_remove(n); /* removing the current node during the walk */
        seen++;
    }
    assert_int_equal(seen, 3);
    assert_true(lx_list_empty(&head));
}

static void test_hash_is_stable_and_spreads(void **state)
{
    (void)state;
    assert_int_equal(lx_hash("alice", 5), lx_hash("alice", 5));
    assert_int_not_equal(lx_hash("alice", 5), lx_hash("alicf", 5));
    assert_int_not_equal(lx_hash("", 0), lx_hash("\0", 1));
    /* 4096 names over 64 slots: no slot is far above the mean of 64 */
    int slots[64] = {0};
    char name[32];
    for (int i = 0; i < 4096; i++) {
        int n = snprintf(name, sizeof name, "user-%d", i);
        slots[lx_hash(name, (size_t)n) & 63]++;
    }
    for (int i = 0; i < 64; i++)
        assert_true(slots[i] < 128);
}

static void test_map_add_find_remove_grow_shrink(void **state)
{
    (void)state;
    enum { N = 1000 };
    item *it = calloc(N, sizeof *it);
    lx_map m;
    lx_map_init(&m);
    assert_null(lx_map_find(&m, "x", 1));
    for (int i = 0; i < N; i++) {
        it[i].v = i;
        int n = snprintf(it[i].key, sizeof it[i].key, "k%d", i);
        lx_map_add(&m, &it[i].node, it[i].key, (size_t)n);
    }
    assert_int_equal(lx_map_count(&m), N);
    assert_true(m.n_slots >= N);
    for (int i = 0; i < N; i++) {
        lx_map_node *n = lx_map_find(&m, it[i].key, strlen(it[i].key));
        assert_non_null(n);
        assert_int_equal(LX_MAP_ENTRY(n, item, node)->v, i);
    }
    assert_null(lx_map_find(&m, "k1000", 5));
    assert_null(lx_map_find(&m, "k1", 1)); /* a prefix is another key */
    /* remove every odd one while walking */
    lx_map_iter iter = lx_map_iter_of(&m);
    lx_map_node *n;
    int walked = 0;
    while ((n = lx_map_next(&iter))) {
        walked++;
        if (LX_MAP_ENTRY(n, item, node)->v % 2) lx_map_remove(&m, n);
    }
    assert_int_equal(walked, N);
    assert_int_equal(lx_map_count(&m), N / 2);
    for (int i = 0; i < N; i++)
        assert_int_equal(lx_map_find(&m, it[i].key, strlen(it[i].key)) != NULL, i % 2 == 0);
    /* down to a few: the next add shrinks the slots */
    for (int i = 2; i < N; i += 2)
        lx_map_remove(&m, &it[i].node);
    size_t big = m.n_slots;
    lx_map_add(&m, &it[1].node, it[1].key, strlen(it[1].key));
    assert_true(m.n_slots < big);
    assert_non_null(lx_map_find(&m, "k0", 2));
    assert_non_null(lx_map_find(&m, "k1", 2));
    assert_int_equal(lx_map_count(&m), 2);
    lx_map_free(&m);
    assert_null(lx_map_find(&m, "k0", 2));
    free(it);
}

static void test_buf_append_uint(void **state)
{
    (void)state;
    lx_buf b;
    lx_buf_init(&b, 0);
    lx_buf_append_uint(&b, 0, 10);
    lx_buf_append(&b, " ", 1);
    lx_buf_append_uint(&b, 200, 10);
    lx_buf_append(&b, " ", 1);
    lx_buf_append_uint(&b, 18446744073709551615ull, 10);
    lx_buf_append(&b, " ", 1);
    lx_buf_append_uint(&b, 0, 16);
    lx_buf_append(&b, " ", 1);
    lx_buf_append_uint(&b, 0x1a2f, 16);
    lx_buf_append(&b, " ", 1);
    lx_buf_append_uint(&b, 18446744073709551615ull, 16);
    assert_string_equal(b.p, "0 200 18446744073709551615 0 1a2f ffffffffffffffff");
    lx_buf_free(&b);
    char mem[8];
    lx_buf capped = {mem, 0, sizeof mem, sizeof mem - 1};
    assert_int_equal(lx_buf_append_uint(&capped, 1234567, 10), 0);
    assert_int_equal(lx_buf_append_uint(&capped, 1, 10), -1); /* past the cap: refused, the buffer as it was */
    assert_int_equal(capped.len, 7);
    assert_int_equal(memcmp(mem, "1234567", 7), 0);
}

static void test_buf_cap_lowered_after_growth(void **state)
{
    (void)state;
    lx_buf b;
    lx_buf_init(&b, 0);
    for (int i = 0; i < 100; i++)
        lx_buf_append(&b, "0123456789", 10); /* grown well past 64 bytes */
    lx_buf_reset(&b);
    b.max = 16; /* a reused buffer given a lower cap (as a config reload does): the room it has is not enough */
    assert_int_equal(lx_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(lx_buf_append(&b, "0123456789", 10), -1);
    assert_int_equal(lx_buf_append(&b, "012345", 6), 0);
    assert_int_equal(lx_buf_append(&b, "x", 1), -1);
    assert_int_equal(b.len, 16);
    assert_string_equal(b.p, "0123456789012345");
    lx_buf_free(&b);
}

/* The escape of s, and the expected text. */
static void assert_escaped(const char *s, size_t n, const char *want)
{
    lx_buf b;
    lx_buf_init(&b, 0);
    assert_int_equal(lx_buf_json_escape(&b, s, n), 0);
    assert_string_equal(b.p, want);
    lx_buf_free(&b);
}

#define ESCAPED(lit, want) assert_escaped(lit, sizeof lit - 1, want)

static void test_json_escape(void **state)
{
    (void)state;
    ESCAPED("", "");
    ESCAPED("plain", "plain");
    /* specials before, at and after the 8-byte steps */
    ESCAPED("\"abcdefgh\\ijklmno\npq\x01rstuvwxyz\t", "\\\"abcdefgh\\\\ijklmno\\npq\\u0001rstuvwxyz\\t");
    ESCAPED("abcdefg\r", "abcdefg\\r");
    ESCAPED("abcdefgh\x1f", "abcdefgh\\u001f");
    /* UTF-8 is kept; a byte that is not part of it becomes U+FFFD */
    ESCAPED("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text");
    ESCAPED("abcdefgh\xff\xe6\x97", "abcdefgh\\ufffd\\ufffd\\ufffd");
    ESCAPED("a\0b", "a\\u0000b");
}

static void test_json_plain_end(void **state)
{
    (void)state;
    const char *s = "0123456789abcdef\"";
    for (size_t i = 0; i <= 17; i++)
        assert_int_equal(lx_json_plain_end(s, 17, i), i <= 16 ? 16 : 17);
    assert_int_equal(lx_json_plain_end(s, 16, 0), 16); /* none: len */
    assert_int_equal(lx_json_plain_end("ab\x80", 3, 0), 2);
    assert_int_equal(lx_json_plain_end("abcdefghij\x7f\x1f", 12, 0), 11); /* DEL is plain, a control byte is not */
}

static void test_copy_cut(void **state)
{
    (void)state;
    char out[6];
    lx_copy_cut(out, sizeof out, "abc", 3);
    assert_string_equal(out, "abc");
    lx_copy_cut(out, sizeof out, "abcdefgh", 8);
    assert_string_equal(out, "abcde");
    lx_strcpy_cut(out, sizeof out, "xyz");
    assert_string_equal(out, "xyz");
    lx_strcpy_cut(out, sizeof out, "123456789");
    assert_string_equal(out, "12345");
    lx_strcpy_cut(out, 1, "q");
    assert_string_equal(out, "");
}

static void test_slice_eq_nocase(void **state)
{
    (void)state;
    assert_true(lx_slice_eq_nocase(LX_SLICE_LIT("Content-LENGTH"), "content-length"));
    assert_false(lx_slice_eq_nocase(LX_SLICE_LIT("content-lengths"), "content-length")); /* longer */
    assert_false(lx_slice_eq_nocase(LX_SLICE_LIT("content-lengt"), "content-length"));   /* a prefix */
    assert_false(lx_slice_eq_nocase(LX_SLICE_LIT("content-lenGTX"), "content-length"));  /* same length */
    assert_true(lx_slice_eq_nocase((lx_slice){"", 0}, ""));
    assert_false(lx_slice_eq_nocase((lx_slice){"a", 1}, ""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_order_and_remove),
        cmocka_unit_test(test_hash_is_stable_and_spreads),
        cmocka_unit_test(test_map_add_find_remove_grow_shrink),
        cmocka_unit_test(test_buf_append_uint),
        cmocka_unit_test(test_buf_cap_lowered_after_growth),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_json_plain_end),
        cmocka_unit_test(test_copy_cut),
        cmocka_unit_test(test_slice_eq_nocase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
