/*
 * reply.c — reply objects: what hiredis's reader builds through our reply-object functions, and
 * the typed accessors.
 *
 * Design notes:
 * - One allocation per string reply (struct + bytes + NUL) through libloop's allocator hook, so
 *   the tests' failing allocator reaches every reply; "+OK" and nil are shared objects (below).
 * - An array announced with N elements gets room for at most 16 at first and grows as elements
 *   arrive: what we allocate follows the bytes the peer actually sent, never a count it claims
 *   (the framing guard in proto.c also caps N before hiredis sees the header).
 * - The reply is the future's value with ll_redis_reply_free as destructor, which is also its type
 *   tag for ll_future_value_as (ll_redis_reply_of).
 */
#include <string.h>
#include <hiredis/read.h>
#include "redis_internal.h"

/* The two replies that carry nothing of their own, "+OK" (SET, MSET, SELECT, ...) and nil (GET of a
 * missing key), are one shared object each rather than an allocation per reply: ll_redis_reply_free
 * leaves them alone. Sharing is safe because a reply is never written once built (only arrays grow,
 * while hiredis builds them, and these two are not arrays), so any number of futures, arrays and
 * threads may hold them. */
static char ok_text[] = "OK";
static ll_redis_reply shared_ok = {.type = LL_REDIS_STATUS, .len = 2, .str = ok_text};
static ll_redis_reply shared_nil = {.type = LL_REDIS_NIL};

ll_redis_reply *ll__redis_reply_string(int type, const char *s, size_t len) {
    ll_redis_reply *r = ll_malloc(sizeof *r + len + 1);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->type = type;
    r->len = len;
    r->str = (char *)(r + 1);
    if (len) memcpy(r->str, s, len);
    r->str[len] = 0;
    return r;
}

ll_redis_reply *ll__redis_reply_int(long long v) {
    ll_redis_reply *r = ll_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->type = LL_REDIS_INTEGER;
    r->integer = v;
    return r;
}

ll_redis_reply *ll__redis_reply_nil(void) { return &shared_nil; }

ll_redis_reply *ll__redis_reply_array(size_t expect) {
    ll_redis_reply *r = ll_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->type = LL_REDIS_ARRAY;
    r->expect = expect;
    return r;
}

int ll__redis_reply_push(ll_redis_reply *arr, ll_redis_reply *child) {
    if (arr->len == arr->cap) {
        size_t ncap = arr->cap ? arr->cap * 2 : 16;
        if (arr->expect && ncap > arr->expect) ncap = arr->expect;
        if (ncap <= arr->len) ncap = arr->len + 1;
        ll_redis_reply **e = ll_realloc(arr->elem, ncap * sizeof *e);
        if (!e) return LL_ENOMEM;
        arr->elem = e;
        arr->cap = ncap;
    }
    arr->elem[arr->len++] = child;
    return 0;
}

void ll_redis_reply_free(ll_redis_reply *r) {
    if (!r || r == &shared_ok || r == &shared_nil) return;
    if (r->type == LL_REDIS_ARRAY) {
        for (size_t i = 0; i < r->len; i++) ll_redis_reply_free(r->elem[i]);
        ll_free(r->elem);
    }
    ll_free(r);
}

ll_redis_reply *ll__redis_reply_dup(const ll_redis_reply *r) {
    switch (r->type) {
    case LL_REDIS_STATUS:
    case LL_REDIS_ERROR:
    case LL_REDIS_BULK: return ll__redis_reply_string(r->type, r->str, r->len);
    case LL_REDIS_INTEGER: return ll__redis_reply_int(r->integer);
    case LL_REDIS_NIL: return ll__redis_reply_nil();
    default: break;
    }
    ll_redis_reply *a = ll__redis_reply_array(r->len);
    if (!a) return NULL;
    for (size_t i = 0; i < r->len; i++) {
        ll_redis_reply *c = ll__redis_reply_dup(r->elem[i]);
        if (!c || ll__redis_reply_push(a, c)) {
            ll_redis_reply_free(c);
            ll_redis_reply_free(a);
            return NULL;
        }
    }
    return a;
}

/* ---- hiredis reply-object functions ---- */

/* Attach obj to its parent array, if any. hiredis gives elements in index order. */
static void *attach(const redisReadTask *t, ll_redis_reply *obj) {
    if (!obj) return NULL;
    if (t->parent) {
        ll_redis_reply *parent = t->parent->obj;
        if (ll__redis_reply_push(parent, obj)) {
            ll_redis_reply_free(obj);
            return NULL; /* hiredis reports out of memory and frees the root */
        }
    }
    return obj;
}

static void *create_string(const redisReadTask *t, char *s, size_t len) {
    int type = t->type == REDIS_REPLY_STATUS  ? LL_REDIS_STATUS
               : t->type == REDIS_REPLY_ERROR ? LL_REDIS_ERROR
                                              : LL_REDIS_BULK;
    if (type == LL_REDIS_STATUS && len == 2 && s[0] == 'O' && s[1] == 'K')
        return attach(t, &shared_ok);
    return attach(t, ll__redis_reply_string(type, s, len));
}

static void *create_array(const redisReadTask *t, int elements) {
    return attach(t, ll__redis_reply_array(elements > 0 ? (size_t)elements : 0));
}

static void *create_integer(const redisReadTask *t, long long v) {
    return attach(t, ll__redis_reply_int(v));
}

static void *create_nil(const redisReadTask *t) { return attach(t, ll__redis_reply_nil()); }

static void free_object(void *o) { ll_redis_reply_free(o); }

static redisReplyObjectFunctions fns = {create_string, create_array, create_integer, create_nil,
                                        free_object};
void *ll__redis_hiredis_fns = &fns;

/* ---- public accessors ---- */

LL_EXPORT ll_redis_reply *ll_redis_reply_of(ll_future *f) {
    return ll_future_value_as(f, (ll_value_free)ll_redis_reply_free);
}

LL_EXPORT ll_redis_type ll_redis_reply_type(const ll_redis_reply *r) {
    return r ? (ll_redis_type)r->type : LL_REDIS_NIL;
}

LL_EXPORT const char *ll_redis_type_name(ll_redis_type t) {
    switch (t) {
    case LL_REDIS_NIL: return "nil";
    case LL_REDIS_STATUS: return "status";
    case LL_REDIS_ERROR: return "error";
    case LL_REDIS_INTEGER: return "integer";
    case LL_REDIS_BULK: return "bulk";
    case LL_REDIS_ARRAY: return "array";
    }
    return "unknown";
}

LL_EXPORT int ll_redis_reply_string(const ll_redis_reply *r, const char **s, size_t *len) {
    if (r && (r->type == LL_REDIS_BULK || r->type == LL_REDIS_STATUS || r->type == LL_REDIS_ERROR)) {
        if (s) *s = r->str;
        if (len) *len = r->len;
        return 0;
    }
    if (s) *s = NULL;
    if (len) *len = 0;
    return LL_EREDIS_TYPE;
}

LL_EXPORT int ll_redis_reply_integer(const ll_redis_reply *r, long long *out) {
    if (!r || r->type != LL_REDIS_INTEGER) return LL_EREDIS_TYPE;
    if (out) *out = r->integer;
    return 0;
}

LL_EXPORT size_t ll_redis_reply_len(const ll_redis_reply *r) {
    return r && r->type == LL_REDIS_ARRAY ? r->len : 0;
}

LL_EXPORT const ll_redis_reply *ll_redis_reply_element(const ll_redis_reply *r, size_t i) {
    if (!r || r->type != LL_REDIS_ARRAY || i >= r->len) return NULL;
    return r->elem[i];
}

LL_EXPORT bool ll_redis_reply_is_nil(const ll_redis_reply *r) {
    return r && r->type == LL_REDIS_NIL;
}

LL_EXPORT const char *ll_redis_error(ll_future *f) {
    ll_value_free fr = NULL;
    ll_redis_reply *r = ll_future_error_detail(f, &fr);
    if (!r || fr != (ll_value_free)ll_redis_reply_free || r->type != LL_REDIS_ERROR) return NULL;
    return r->str;
}

LL_EXPORT bool ll_redis_error_is(ll_future *f, const char *prefix) {
    const char *e = ll_redis_error(f);
    if (!e || !prefix) return false;
    size_t n = strlen(prefix);
    return strncmp(e, prefix, n) == 0 && (e[n] == ' ' || e[n] == 0);
}
