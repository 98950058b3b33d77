/*
 * containers.h — intrusive doubly linked lists and a chained hash table with power-of-two buckets,
 * for the core's own bookkeeping (the pool's keys and connections, a server's connections, the
 * resolver's queries, ...). Never installed.
 * Nodes are embedded in the records they link; nothing here allocates except the bucket arrays.
 */
#ifndef LIBLOOP_CONTAINERS_H
#define LIBLOOP_CONTAINERS_H

#include <stddef.h>
#include <stdint.h>
#include "ll_assert.h"

/* The record that embeds `ptr` as its field `member`. */
#define LL__CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

typedef struct ll__dlink {
    struct ll__dlink *prev, *next;
} ll__dlink;
typedef struct ll__dlist {
    ll__dlink *head, *tail;
} ll__dlist;

static inline void ll__list_push_front(ll__dlist *l, ll__dlink *n) {
    n->prev = NULL;
    n->next = l->head;
    if (l->head) l->head->prev = n;
    else l->tail = n;
    l->head = n;
}

static inline void ll__list_push_back(ll__dlist *l, ll__dlink *n) {
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail) l->tail->next = n;
    else l->head = n;
    l->tail = n;
}

static inline void ll__list_remove(ll__dlist *l, ll__dlink *n) {
    /* n is on l: its neighbours point back at it, or it is l's end */
    LL_ASSERT(n->prev ? n->prev->next == n : l->head == n);
    LL_ASSERT(n->next ? n->next->prev == n : l->tail == n);
    if (n->prev) n->prev->next = n->next;
    else l->head = n->next;
    if (n->next) n->next->prev = n->prev;
    else l->tail = n->prev;
    n->prev = n->next = NULL;
}

typedef struct ll__hnode {
    struct ll__hnode *next;
    uint64_t hash;
} ll__hnode;
typedef struct ll__htab {
    ll__hnode **b;
    size_t nb, n;
} ll__htab;

/* Return 0 or LL_ENOMEM; nb must be a power of two. */
int ll__htab_init(ll__htab *t, size_t nb);
/* Never fails: when growing cannot allocate, chains just get longer. */
void ll__htab_insert(ll__htab *t, ll__hnode *n);
void ll__htab_remove(ll__htab *t, ll__hnode *n);
uint64_t ll__hash_ptr(const void *p);
uint64_t ll__hash_str(const char *s); /* FNV-1a */

#endif
