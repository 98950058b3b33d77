/*
 * headers.c — header lists: ordered (name, value) pairs, names compared case-insensitively,
 * repeated names kept in order (Set-Cookie, Via), values with their surrounding blanks trimmed.
 *
 * Design notes:
 * - A plain array scanned linearly: a response has a few dozen headers at most (the parser caps
 *   the count), so a hash table would cost more than it saves.
 * - The strings live back to back in one arena ("name\0value\0..."), so a response's headers cost
 *   two allocations, not one per header. Removing leaves a hole; lists are short-lived.
 * - Validation is where headers enter: a name must be a token and a value must not contain a
 *   control byte other than HTAB (RFC 9110 5.5: CR, LF, NUL, 0x01-0x1F, DEL), so nothing added here
 *   can split a request line, smuggle a header or reach a log as a terminal escape when serialised.
 *   The same check serves headers coming off the wire.
 */
#include <string.h>
#include "http_internal.h"

static const char tchar_extra[] = "!#$%&'*+-.^_`|~";

bool ll__http_is_token(const char *s, size_t n) {
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
        if (c && strchr(tchar_extra, c)) continue;
        return false;
    }
    return true;
}

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

bool ll__http_name_eq(const char *a, size_t alen, const char *b) {
    size_t i = 0;
    for (; i < alen && b[i]; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return false;
    return i == alen && b[i] == 0;
}

bool ll__http_list_has(const char *value, const char *token) {
    if (!value) return false;
    size_t tl = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if ((size_t)(e - s) == tl && ll__http_name_eq(s, tl, token)) return true;
    }
    return false;
}

ll_http_headers *ll_http_headers_new(void) {
    return ll_calloc(1, sizeof(ll_http_headers));
}

void ll_http_headers_free(ll_http_headers *h) {
    if (!h) return;
    ll_free(h->v);
    ll_free(h->arena);
    ll_free(h);
}

static void refresh(ll_http_headers *h) {
    for (size_t i = 0; i < h->n; i++) {
        h->v[i].name = h->arena + h->v[i].off;
        h->v[i].value = h->v[i].name + h->v[i].nlen + 1;
    }
}

static int push(ll_http_headers *h, const char *name, size_t nlen, const char *value,
                size_t vlen) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        ll__hdr *v = ll_realloc(h->v, cap * sizeof *v);
        if (!v) return LL_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t need = nlen + vlen + 2;
    if (need > h->acap - h->alen) {
        size_t cap = h->acap ? h->acap * 2 : 512;
        while (cap - h->alen < need) cap *= 2;
        char *a = ll_realloc(h->arena, cap);
        if (!a) return LL_ENOMEM;
        h->arena = a;
        h->acap = cap;
        refresh(h);
    }
    char *m = h->arena + h->alen;
    memcpy(m, name, nlen);
    m[nlen] = 0;
    memcpy(m + nlen + 1, value, vlen);
    m[nlen + 1 + vlen] = 0;
    h->v[h->n++] = (ll__hdr){m, m + nlen + 1, nlen, vlen, h->alen};
    h->alen += need;
    return 0;
}

int ll_http_headers_addn(ll_http_headers *h, const char *name, size_t nlen, const char *value,
                         size_t vlen) {
    if (!h || !name || (!value && vlen)) return LL_EINVAL;
    if (!ll__http_is_token(name, nlen)) return LL_EINVAL;
    if (!value) value = "";
    if (!ll__http_value_ok(value, vlen)) return LL_EINVAL; /* CR, LF, NUL, any control but HTAB */
    while (vlen && (value[0] == ' ' || value[0] == '\t')) value++, vlen--;
    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) vlen--;
    return push(h, name, nlen, value, vlen);
}

int ll_http_headers_add(ll_http_headers *h, const char *name, const char *value) {
    if (!name || !value) return LL_EINVAL;
    return ll_http_headers_addn(h, name, strlen(name), value, strlen(value));
}

size_t ll_http_headers_remove(ll_http_headers *h, const char *name) {
    if (!h || !name) return 0;
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (ll__http_name_eq(h->v[i].name, h->v[i].nlen, name)) {
            removed++;
        } else {
            h->v[kept++] = h->v[i];
        }
    }
    h->n = kept;
    return removed;
}

int ll_http_headers_set(ll_http_headers *h, const char *name, const char *value) {
    if (!h || !name || !value) return LL_EINVAL;
    /* Add the new entry first, then remove the old ones (all but the last): a refused value or a
     * failed allocation leaves the list as it was. */
    size_t before = h->n;
    int rc = ll_http_headers_add(h, name, value);
    if (rc) return rc;
    size_t kept = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (!(i < before && ll__http_name_eq(h->v[i].name, h->v[i].nlen, name)))
            h->v[kept++] = h->v[i];
    }
    h->n = kept;
    return 0;
}

const char *ll_http_headers_next(const ll_http_headers *h, const char *name, size_t *iter) {
    if (!h || !name || !iter) return NULL;
    for (size_t i = *iter; i < h->n; i++) {
        if (ll__http_name_eq(h->v[i].name, h->v[i].nlen, name)) {
            *iter = i + 1;
            return h->v[i].value;
        }
    }
    *iter = h->n;
    return NULL;
}

const char *ll_http_headers_get(const ll_http_headers *h, const char *name) {
    size_t it = 0;
    return ll_http_headers_next(h, name, &it);
}

size_t ll_http_headers_count(const ll_http_headers *h) { return h ? h->n : 0; }

int ll_http_headers_at(const ll_http_headers *h, size_t i, const char **name,
                       const char **value) {
    if (!h || i >= h->n) return LL_ERANGE;
    if (name) *name = h->v[i].name;
    if (value) *value = h->v[i].value;
    return 0;
}

ll_http_headers *ll_http_headers_copy(const ll_http_headers *h) {
    if (!h) return NULL;
    ll_http_headers *c = ll_http_headers_new();
    if (!c) return NULL;
    for (size_t i = 0; i < h->n; i++) {
        if (push(c, h->v[i].name, h->v[i].nlen, h->v[i].value, h->v[i].vlen)) {
            ll_http_headers_free(c);
            return NULL;
        }
    }
    return c;
}
