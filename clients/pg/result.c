/*
 * result.c — reading a query's result: rows, columns, NULLs and typed values.
 *
 * Design notes:
 * - The result wraps libpq's PGresult without copying it. Values are in PostgreSQL's text format
 *   (what every query here asks for); the typed getters parse that text strictly (the whole value,
 *   no silent truncation) and say why when they cannot.
 * - bytea arrives as text ("\x414243", or the old escape format); decoding it needs memory, so
 *   decoded values are kept in a small list owned by the result, which is what lets the getter
 *   hand out a pointer that lives as long as the result.
 * - The row and column counts and each column's type and format are read from libpq once, when
 *   the result is wrapped (in the same allocation): the getters check them for every value, and
 *   five calls into libpq per value were a third of the time of decoding a large result.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "pg_internal.h"

typedef struct decoded {
    struct decoded *next;
    int row, col;
    size_t len;
    uint8_t data[];
} decoded;

ll_pg_result *ll__pg_result_new(PGresult *res) {
    int ncols = PQnfields(res);
    ll_pg_result *r = ll_malloc(sizeof *r + (size_t)ncols * sizeof r->cols[0]);
    if (!r) return NULL;
    r->res = res;
    r->dec = NULL;
    r->nrows = PQntuples(res);
    r->ncols = ncols;
    for (int i = 0; i < ncols; i++) {
        r->cols[i].type = (unsigned)PQftype(res, i);
        r->cols[i].binary = PQfformat(res, i) == 1;
    }
    return r;
}

PGresult *ll__pg_result_pq(const ll_pg_result *r) {
    return r->res;
}

void *ll__pg_result_keep(ll_pg_result *r, size_t size) {
    decoded *d = ll_malloc(sizeof *d + size);
    if (!d) return NULL;
    d->row = d->col = -1; /* never matched by ll_pg_bytea's lookup */
    d->len = size;
    d->next = r->dec;
    r->dec = d;
    return d->data;
}

void ll_pg_result_free(ll_pg_result *r) {
    if (!r) return;
    while (r->dec) {
        decoded *d = r->dec;
        r->dec = d->next;
        ll_free(d);
    }
    PQclear(r->res);
    ll_free(r);
}

int ll_pg_result_rows(const ll_pg_result *r) {
    return r ? r->nrows : 0;
}

int ll_pg_result_cols(const ll_pg_result *r) {
    return r ? r->ncols : 0;
}

const char *ll_pg_result_colname(const ll_pg_result *r, int col) {
    return r ? PQfname(r->res, col) : NULL;
}

int ll_pg_result_colindex(const ll_pg_result *r, const char *name) {
    if (!r || !name) return -1;
    /* exact match: PQfnumber would fold case and parse quotes */
    int n = PQnfields(r->res);
    for (int i = 0; i < n; i++)
        if (strcmp(PQfname(r->res, i), name) == 0) return i;
    return -1;
}

unsigned ll_pg_result_coltype(const ll_pg_result *r, int col) {
    if (!r || col < 0 || col >= r->ncols) return 0;
    return r->cols[col].type;
}

int64_t ll_pg_result_affected(const ll_pg_result *r) {
    if (!r) return -1;
    const char *t = PQcmdTuples(r->res);
    if (!t || !*t) return -1;
    return strtoll(t, NULL, 10);
}

const char *ll_pg_result_command(const ll_pg_result *r) {
    return r ? PQcmdStatus(r->res) : "";
}

static bool in_range(const ll_pg_result *r, int row, int col) {
    return r && row >= 0 && col >= 0 && row < r->nrows && col < r->ncols;
}

bool ll_pg_isnull(const ll_pg_result *r, int row, int col) {
    return !in_range(r, row, col) || PQgetisnull(r->res, row, col);
}

const char *ll_pg_text(const ll_pg_result *r, int row, int col) {
    if (ll_pg_isnull(r, row, col)) return NULL;
    /* a binary result's non-text column is bytes, not text: never hand those out as a string */
    if (ll__pg_col_binary(r, col)) {
        if (!ll__pg_binary_textlike((unsigned)PQftype(r->res, col))) return NULL;
        if (PQftype(r->res, col) == 3802) return PQgetvalue(r->res, row, col) + 1; /* jsonb v1 */
    }
    return PQgetvalue(r->res, row, col);
}

size_t ll_pg_len(const ll_pg_result *r, int row, int col) {
    if (ll_pg_isnull(r, row, col)) return 0;
    return (size_t)PQgetlength(r->res, row, col);
}

static int text_of(const ll_pg_result *r, int row, int col, const char **out) {
    if (!in_range(r, row, col)) return LL_ERANGE;
    if (PQgetisnull(r->res, row, col)) return LL_ENOENT;
    *out = PQgetvalue(r->res, row, col);
    return 0;
}

int ll_pg_int64(const ll_pg_result *r, int row, int col, int64_t *out) {
    if (r && ll__pg_col_binary(r, col)) return ll_pg_get_int8((ll_pg_result *)r, row, col, out);
    const char *s;
    int rc = text_of(r, row, col, &s);
    if (rc) return rc;
    if (!*s) return LL_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end) return LL_EINVAL;
    if (errno == ERANGE) return LL_ERANGE;
    if (out) *out = (int64_t)v;
    return 0;
}

int ll_pg_double(const ll_pg_result *r, int row, int col, double *out) {
    if (r && ll__pg_col_binary(r, col)) return ll_pg_get_float8((ll_pg_result *)r, row, col, out);
    const char *s;
    int rc = text_of(r, row, col, &s);
    if (rc) return rc;
    if (!*s) return LL_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end); /* also PostgreSQL's NaN, Infinity, -Infinity */
    if (*end) return LL_EINVAL;
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL)) return LL_ERANGE;
    if (out) *out = v;
    return 0;
}

int ll_pg_bool(const ll_pg_result *r, int row, int col, bool *out) {
    if (r && ll__pg_col_binary(r, col)) return ll_pg_get_bool((ll_pg_result *)r, row, col, out);
    const char *s;
    int rc = text_of(r, row, col, &s);
    if (rc) return rc;
    bool v;
    if (!strcmp(s, "t") || !strcmp(s, "true") || !strcmp(s, "1")) v = true;
    else if (!strcmp(s, "f") || !strcmp(s, "false") || !strcmp(s, "0")) v = false;
    else return LL_EINVAL;
    if (out) *out = v;
    return 0;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* The escape format: printable bytes as themselves, \\ for a backslash, \ooo octal. */
static int unescape(const char *s, size_t n, uint8_t *dst, size_t *len) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            dst[o++] = (uint8_t)s[i++];
        } else if (i + 1 < n && s[i + 1] == '\\') {
            dst[o++] = '\\';
            i += 2;
        } else if (i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
                   s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            dst[o++] = (uint8_t)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
            i += 4;
        } else {
            return LL_EINVAL;
        }
    }
    *len = o;
    return 0;
}

int ll_pg_bytea(ll_pg_result *r, int row, int col, const uint8_t **data, size_t *len) {
    if (r && ll__pg_col_binary(r, col)) return ll_pg_get_bytea(r, row, col, data, len);
    const char *s;
    int rc = text_of(r, row, col, &s);
    if (rc) return rc;
    for (decoded *d = r->dec; d; d = d->next) {
        if (d->row == row && d->col == col) {
            if (data) *data = d->data;
            if (len) *len = d->len;
            return 0;
        }
    }
    size_t n = (size_t)PQgetlength(r->res, row, col);
    bool hex = n >= 2 && s[0] == '\\' && s[1] == 'x';
    if (hex && (n % 2) != 0) return LL_EINVAL;
    decoded *d = ll_malloc(sizeof *d + (hex ? (n - 2) / 2 : n) + 1);
    if (!d) return LL_ENOMEM;
    if (hex) {
        size_t o = 0;
        for (size_t i = 2; i < n; i += 2) {
            int hi = hexval(s[i]), lo = hexval(s[i + 1]);
            if (hi < 0 || lo < 0) {
                ll_free(d);
                return LL_EINVAL;
            }
            d->data[o++] = (uint8_t)(hi << 4 | lo);
        }
        d->len = o;
    } else if (unescape(s, n, d->data, &d->len) != 0) {
        ll_free(d);
        return LL_EINVAL;
    }
    d->row = row;
    d->col = col;
    d->next = r->dec;
    r->dec = d;
    if (data) *data = d->data;
    if (len) *len = d->len;
    return 0;
}

/* Results are resolved with ll_pg_result_free as their destructor (query, pool query, COPY): that
 * destructor is the type tag ll_future_value_as checks. */
ll_pg_result *ll_pg_result_of(const ll_future *f) {
    return ll_future_value_as(f, (ll_value_free)ll_pg_result_free);
}
