/*
 * containers.c — the hash table and hash functions of containers.h.
 */
#include "internal.h"
#include "containers.h"

int ll__htab_init(ll__htab *t, size_t nb) {
    t->b = ll__calloc(nb, sizeof *t->b);
    t->nb = nb;
    t->n = 0;
    return t->b ? 0 : LL_ENOMEM;
}

void ll__htab_insert(ll__htab *t, ll__hnode *n) {
    if (t->n >= t->nb) {
        size_t nb = t->nb * 2;
        ll__hnode **b = ll__calloc(nb, sizeof *b);
        if (b) {
            for (size_t i = 0; i < t->nb; i++) {
                ll__hnode *e = t->b[i];
                while (e) {
                    ll__hnode *next = e->next;
                    e->next = b[e->hash & (nb - 1)];
                    b[e->hash & (nb - 1)] = e;
                    e = next;
                }
            }
            ll__free(t->b);
            t->b = b;
            t->nb = nb;
        }
    }
    ll__hnode **slot = &t->b[n->hash & (t->nb - 1)];
    n->next = *slot;
    *slot = n;
    t->n++;
}

void ll__htab_remove(ll__htab *t, ll__hnode *n) {
    ll__hnode **pp = &t->b[n->hash & (t->nb - 1)];
    while (*pp && *pp != n) pp = &(*pp)->next;
    if (*pp) {
        *pp = n->next;
        t->n--;
    }
}

uint64_t ll__hash_ptr(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

uint64_t ll__hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}
