/*
 * prepared.c — the per-connection cache of named prepared statements, keyed by SQL text.
 *
 * Design notes:
 * - A statement is prepared in the same pipeline segment as its first execution (Parse, then
 *   Bind/Execute, then Sync), so caching costs no extra round trip. Later requests with the same
 *   text execute the name at once, even while the Parse is still in flight: the server runs the
 *   pipeline in order.
 * - Entries are reference counted: a request that executes a statement holds it until its reply,
 *   so an entry dropped from the cache (evicted, invalidated, failed to prepare) stays valid for
 *   the requests already in flight.
 * - Eviction is least-recently-used and sends DEALLOCATE behind everything already sent, so the
 *   requests that still use the name run first.
 */
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void lru_unlink(ll_pg_conn *c, pg_stmt *s) {
    if (s->lru_prev) s->lru_prev->lru_next = s->lru_next;
    else c->lru_head = s->lru_next;
    if (s->lru_next) s->lru_next->lru_prev = s->lru_prev;
    else c->lru_tail = s->lru_prev;
    s->lru_prev = s->lru_next = NULL;
}

static void lru_front(ll_pg_conn *c, pg_stmt *s) {
    s->lru_prev = NULL;
    s->lru_next = c->lru_head;
    if (c->lru_head) c->lru_head->lru_prev = s;
    else c->lru_tail = s;
    c->lru_head = s;
}

static bool grow(ll_pg_conn *c) {
    size_t cap = c->stab_cap ? c->stab_cap * 2 : 64;
    pg_stmt **t = ll_calloc(cap, sizeof *t);
    if (!t) return false;
    for (size_t i = 0; i < c->stab_cap; i++) {
        for (pg_stmt *s = c->stab[i], *next; s; s = next) {
            next = s->hnext;
            s->hnext = t[s->hash & (cap - 1)];
            t[s->hash & (cap - 1)] = s;
        }
    }
    ll_free(c->stab);
    c->stab = t;
    c->stab_cap = cap;
    return true;
}

void ll__pg_stmt_unref(pg_stmt *s) {
    if (s && --s->refs == 0) ll_free(s);
}

pg_stmt *ll__pg_stmt_get(ll_pg_conn *c, const char *sql) {
    if (c->opts.unnamed_statements) return NULL;
    uint64_t h = fnv1a(sql);
    if (c->stab_cap) {
        for (pg_stmt *s = c->stab[h & (c->stab_cap - 1)]; s; s = s->hnext) {
            if (s->hash == h && strcmp(s->sql, sql) == 0) {
                if (c->lru_head != s) {
                    lru_unlink(c, s);
                    lru_front(c, s);
                }
                s->refs++;
                return s;
            }
        }
    }
    if (c->nstmts + 1 > c->stab_cap / 2 && !grow(c)) return NULL;
    size_t len = strlen(sql);
    pg_stmt *s = ll_malloc(sizeof *s + len + 1);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->hash = h;
    s->refs = 2; /* the cache's and the caller's */
    s->in_cache = true;
    snprintf(s->name, sizeof s->name, "ll_s%llu", (unsigned long long)++c->stmt_counter);
    memcpy(s->sql, sql, len + 1);
    s->hnext = c->stab[h & (c->stab_cap - 1)];
    c->stab[h & (c->stab_cap - 1)] = s;
    lru_front(c, s);
    c->nstmts++;
    return s;
}

void ll__pg_stmt_forget(ll_pg_conn *c, pg_stmt *s, bool deallocate) {
    if (!s || !s->in_cache) return;
    for (pg_stmt **pp = &c->stab[s->hash & (c->stab_cap - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    }
    lru_unlink(c, s);
    s->in_cache = false;
    c->nstmts--;
    if (deallocate && s->sent && c->state == PG_READY) {
        char sql[64];
        snprintf(sql, sizeof sql, "DEALLOCATE %s", s->name);
        ll__pg_query_noreply(c, sql, TXOP_NONE, 0);
    }
    ll__pg_stmt_unref(s);
}

void ll__pg_stmt_trim(ll_pg_conn *c) {
    while (c->nstmts > c->opts.stmt_cache_size && c->lru_tail)
        ll__pg_stmt_forget(c, c->lru_tail, true);
}

void ll__pg_stmt_free_all(ll_pg_conn *c) {
    while (c->lru_head) ll__pg_stmt_forget(c, c->lru_head, false);
    ll_free(c->stab);
    c->stab = NULL;
    c->stab_cap = 0;
}

pg_stmt *ll__pg_stmt_new_explicit(ll_pg_conn *c, const char *sql) {
    size_t len = strlen(sql);
    pg_stmt *s = ll_malloc(sizeof *s + len + 1);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->refs = 1;
    s->explicit_ = true;
    /* "ll_p": the pool's reset deallocates it (it keeps only the cache's "ll_s" names); the
     * counter is the cache's, so a name is never reused on a connection */
    snprintf(s->name, sizeof s->name, "ll_p%llu", (unsigned long long)++c->stmt_counter);
    memcpy(s->sql, sql, len + 1);
    return s;
}
