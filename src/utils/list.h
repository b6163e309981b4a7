/*
 * One intrusive doubly linked list for the whole project (the shape of the Linux kernel's list_head and
 * libuv's QUEUE): a node is embedded in the element, and LX_CONTAINER_OF gets the element back. A list is
 * a circular ring through its head, so an empty list is a head pointing at itself, and insertion and
 * removal are O(1) with no special case at either end.
 *
 * A node that is not on any list should be initialised (lx_list_init) so that lx_list_linked says false;
 * lx_list_remove re-initialises it, so removing twice is harmless. The list owns nothing: freeing the
 * elements is the owner's business (take each off first, or drop the whole ring at once).
 * Not thread-safe: a list belongs to one thread.
 */
#ifndef LX_LIST_H
#define LX_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "utils/common.h"

typedef struct lx_list {
    struct lx_list *prev, *next;
} lx_list;

/* An empty list, or a node on none. */
static inline void lx_list_init(lx_list *l) { l->prev = l->next = l; }

static inline bool lx_list_empty(const lx_list *head) { return head->next == head; }

/* Is the node on a list (an initialised node taken off or never put on is not)? */
static inline bool lx_list_linked(const lx_list *n) { return n->next != NULL && n->next != n; }

static inline void lx_list_insert_after(lx_list *at, lx_list *n)
{
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
}

/* At the end (before head). */
static inline void lx_list_append(lx_list *head, lx_list *n) { lx_list_insert_after(head->prev, n); }
/* At the front. */
static inline void lx_list_prepend(lx_list *head, lx_list *n) { lx_list_insert_after(head, n); }

/* Takes n off its list and leaves it initialised. A node on no list is left as it is. */
static inline void lx_list_remove(lx_list *n)
{
    if (!lx_list_linked(n)) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    lx_list_init(n);
}

/* The first and last nodes, or NULL when the list is empty. */
static inline lx_list *lx_list_first(const lx_list *head) { return lx_list_empty(head) ? NULL : head->next; }
static inline lx_list *lx_list_last(const lx_list *head) { return lx_list_empty(head) ? NULL : head->prev; }
/* The node after n, or NULL at the end; the node before n, or NULL at the front. */
static inline lx_list *lx_list_next(const lx_list *head, const lx_list *n) { return n->next == head ? NULL : n->next; }
static inline lx_list *lx_list_prev(const lx_list *head, const lx_list *n) { return n->prev == head ? NULL : n->prev; }

/* The element a node is embedded in. */
#define LX_LIST_ENTRY(node, type, member) LX_CONTAINER_OF(node, type, member)

/* For each node of head; the body may remove the current node (the next one is read first). */
#define LX_LIST_EACH(head, n, tmp)                                                                                     \
    for ((n) = (head)->next, (tmp) = (n)->next; (n) != (head); (n) = (tmp), (tmp) = (n)->next)

#endif
