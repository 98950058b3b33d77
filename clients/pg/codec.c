/*
 * codec.c — typed getters: PostgreSQL's binary formats decoded to C types, checked against the
 * column's type OID.
 *
 * Design notes:
 * - A getter first checks the column's type OID against the types it reads and refuses anything
 *   else with LL_EINVAL: bytes of one type are never read as another (an int4 column is not an
 *   int8, a timestamp is not a timestamptz). Widening (int2 into int8, float4 into double) is
 *   allowed; narrowing checks the range.
 * - The same getters read text-format results where the text parse is unambiguous (integers,
 *   floats, bool, text-like values, bytea); dates, times, intervals and UUIDs need binary results
 *   (the default of ll_pg_query_typed), whose formats do not depend on DateStyle or IntervalStyle.
 * - Decoded values that need memory (numeric's decimal text, arrays) are kept with the result, so
 *   the pointers handed out live as long as it.
 * - Hand-written because libpq has no binary decoders (libpqtypes is unmaintained and not
 *   packaged); the formats are PostgreSQL's *_send functions (src/backend/utils/adt).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pg_internal.h"

enum {
    OID_BOOL = 16, OID_BYTEA = 17, OID_NAME = 19, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23,
    OID_TEXT = 25, OID_JSON = 114, OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_BPCHAR = 1042,
    OID_VARCHAR = 1043, OID_DATE = 1082, OID_TIMESTAMP = 1114, OID_TIMESTAMPTZ = 1184,
    OID_INTERVAL = 1186, OID_NUMERIC = 1700, OID_UUID = 2950, OID_JSONB = 3802,
    OID_INT2_ARR = 1005, OID_INT4_ARR = 1007, OID_INT8_ARR = 1016, OID_TEXT_ARR = 1009,
    OID_VARCHAR_ARR = 1015, OID_BPCHAR_ARR = 1014, OID_NAME_ARR = 1003, OID_FLOAT4_ARR = 1021,
    OID_FLOAT8_ARR = 1022
};

#define PG_EPOCH_DAYS 10957
#define PG_EPOCH_USECS (INT64_C(10957) * 86400 * 1000000)

bool ll__pg_binary_textlike(unsigned oid) {
    return oid == OID_TEXT || oid == OID_VARCHAR || oid == OID_BPCHAR || oid == OID_NAME ||
           oid == OID_JSON || oid == OID_JSONB;
}

bool ll__pg_col_binary(const ll_pg_result *r, int col) {
    return col >= 0 && col < r->ncols && r->cols[col].binary;
}

bool ll_pg_result_binary(const ll_pg_result *r, int col) {
    return r && ll__pg_col_binary(r, col);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

/* The value at (row, col): 0, LL_ERANGE (out of range) or LL_ENOENT (NULL). */
typedef struct cell {
    const uint8_t *p;
    size_t len;
    unsigned type;
    bool binary;
} cell;

static int cell_of(const ll_pg_result *r, int row, int col, cell *c) {
    if (!r || row < 0 || col < 0 || row >= r->nrows || col >= r->ncols) return LL_ERANGE;
    if (PQgetisnull(r->res, row, col)) return LL_ENOENT;
    c->p = (const uint8_t *)PQgetvalue(r->res, row, col);
    c->len = (size_t)PQgetlength(r->res, row, col);
    c->type = r->cols[col].type;
    c->binary = r->cols[col].binary;
    return 0;
}

static int int_of(const cell *c, int64_t *v) {
    if (c->type != OID_INT2 && c->type != OID_INT4 && c->type != OID_INT8) return LL_EINVAL;
    if (!c->binary) {
        char *end;
        errno = 0;
        long long x = strtoll((const char *)c->p, &end, 10);
        if (!c->len || *end) return LL_EINVAL;
        if (errno == ERANGE) return LL_ERANGE;
        *v = x;
        return 0;
    }
    if (c->type == OID_INT2 && c->len == 2) *v = (int16_t)get16(c->p);
    else if (c->type == OID_INT4 && c->len == 4) *v = (int32_t)get32(c->p);
    else if (c->type == OID_INT8 && c->len == 8) *v = (int64_t)get64(c->p);
    else return LL_EINVAL;
    return 0;
}

int ll_pg_get_int8(ll_pg_result *r, int row, int col, int64_t *out) {
    cell c;
    int64_t v;
    int rc = cell_of(r, row, col, &c);
    if (!rc) rc = int_of(&c, &v);
    if (!rc && out) *out = v;
    return rc;
}

int ll_pg_get_int4(ll_pg_result *r, int row, int col, int32_t *out) {
    int64_t v;
    int rc = ll_pg_get_int8(r, row, col, &v);
    if (rc) return rc;
    if (v < INT32_MIN || v > INT32_MAX) return LL_ERANGE;
    if (out) *out = (int32_t)v;
    return 0;
}

int ll_pg_get_int2(ll_pg_result *r, int row, int col, int16_t *out) {
    int64_t v;
    int rc = ll_pg_get_int8(r, row, col, &v);
    if (rc) return rc;
    if (v < INT16_MIN || v > INT16_MAX) return LL_ERANGE;
    if (out) *out = (int16_t)v;
    return 0;
}

static int float_of(const cell *c, double *v) {
    if (c->type != OID_FLOAT4 && c->type != OID_FLOAT8) return LL_EINVAL;
    if (!c->binary) {
        char *end;
        double x = strtod((const char *)c->p, &end); /* also NaN, Infinity, -Infinity */
        if (!c->len || *end) return LL_EINVAL;
        *v = x;
        return 0;
    }
    if (c->type == OID_FLOAT4 && c->len == 4) {
        uint32_t u = get32(c->p);
        float f;
        memcpy(&f, &u, 4);
        *v = f;
    } else if (c->type == OID_FLOAT8 && c->len == 8) {
        uint64_t u = get64(c->p);
        memcpy(v, &u, 8);
    } else {
        return LL_EINVAL;
    }
    return 0;
}

int ll_pg_get_float8(ll_pg_result *r, int row, int col, double *out) {
    cell c;
    double v;
    int rc = cell_of(r, row, col, &c);
    if (!rc) rc = float_of(&c, &v);
    if (!rc && out) *out = v;
    return rc;
}

int ll_pg_get_float4(ll_pg_result *r, int row, int col, float *out) {
    cell c;
    double v;
    int rc = cell_of(r, row, col, &c);
    if (rc) return rc;
    if (c.type != OID_FLOAT4) return LL_EINVAL; /* a double would lose precision silently */
    rc = float_of(&c, &v);
    if (!rc && out) *out = (float)v;
    return rc;
}

int ll_pg_get_bool(ll_pg_result *r, int row, int col, bool *out) {
    cell c;
    int rc = cell_of(r, row, col, &c);
    if (rc) return rc;
    if (c.type != OID_BOOL) return LL_EINVAL;
    bool v;
    if (c.binary) {
        if (c.len != 1) return LL_EINVAL;
        v = c.p[0] != 0;
    } else if (c.len == 1 && (c.p[0] == 't' || c.p[0] == 'f')) {
        v = c.p[0] == 't';
    } else {
        return LL_EINVAL;
    }
    if (out) *out = v;
    return 0;
}

/* numeric's binary form (numeric_send): ndigits, weight, sign, dscale, then base-10000 digits;
 * the value is sum(digit[i] * 10000^(weight - i)), shown with dscale decimals. */
static int numeric_text(ll_pg_result *r, const cell *c, const char **out, size_t *len) {
    if (c->len < 8) return LL_EINVAL;
    int nd = (int16_t)get16(c->p), weight = (int16_t)get16(c->p + 2);
    uint16_t sign = get16(c->p + 4);
    int dscale = get16(c->p + 6);
    if (nd < 0 || c->len != 8 + 2 * (size_t)nd || dscale > 0x3FFF) return LL_EINVAL;
    const char *special = sign == 0xC000 ? "NaN" : sign == 0xD000 ? "Infinity"
                        : sign == 0xF000 ? "-Infinity" : NULL;
    if (!special && sign != 0 && sign != 0x4000) return LL_EINVAL;
    size_t cap = 16 + (special ? 0 : (size_t)(weight > 0 ? weight + 1 : 1) * 4 + (size_t)dscale + 4);
    char *s = ll__pg_result_keep(r, cap);
    if (!s) return LL_ENOMEM;
    size_t o = 0;
    if (special) {
        o = (size_t)snprintf(s, cap, "%s", special);
    } else {
        if (sign == 0x4000) s[o++] = '-';
        if (weight < 0) {
            s[o++] = '0';
        } else {
            for (int i = 0; i <= weight; i++) {
                int d = i < nd ? get16(c->p + 8 + 2 * i) : 0;
                if (d > 9999) return LL_EINVAL;
                o += (size_t)snprintf(s + o, cap - o, i == 0 ? "%d" : "%04d", d);
            }
        }
        if (dscale > 0) {
            s[o++] = '.';
            int left = dscale;
            for (int i = weight + 1; left > 0; i++) {
                int d = i >= 0 && i < nd ? get16(c->p + 8 + 2 * i) : 0;
                if (d > 9999) return LL_EINVAL;
                char g[8];
                snprintf(g, sizeof g, "%04d", d);
                int take = left < 4 ? left : 4;
                memcpy(s + o, g, (size_t)take);
                o += (size_t)take;
                left -= take;
            }
        }
        s[o] = 0;
    }
    *out = s;
    if (len) *len = o;
    return 0;
}

int ll_pg_get_text(ll_pg_result *r, int row, int col, const char **out, size_t *len) {
    cell c;
    int rc = cell_of(r, row, col, &c);
    if (rc) return rc;
    const char *s;
    size_t n;
    if (!c.binary) {
        if (c.type == OID_BYTEA) return LL_EINVAL; /* bytes, not text: ll_pg_get_bytea */
        s = (const char *)c.p; /* the server's text for any type (enums, composites, ...) */
        n = c.len;
    } else if (c.type == OID_NUMERIC) {
        return numeric_text(r, &c, out, len);
    } else if (ll__pg_binary_textlike(c.type)) {
        /* libpq adds a zero byte after every value, binary ones too */
        s = (const char *)c.p;
        n = c.len;
        if (c.type == OID_JSONB) {
            if (n < 1 || c.p[0] != 1) return LL_EINVAL;
            s++;
            n--;
        }
    } else {
        return LL_EINVAL;
    }
    if (out) *out = s;
    if (len) *len = n;
    return 0;
}

int ll_pg_get_bytea(ll_pg_result *r, int row, int col, const uint8_t **out, size_t *len) {
    cell c;
    int rc = cell_of(r, row, col, &c);
    if (rc) return rc;
    if (c.type != OID_BYTEA) return LL_EINVAL;
    if (!c.binary) return ll_pg_bytea(r, row, col, out, len);
    if (out) *out = c.p;
    if (len) *len = c.len;
    return 0;
}

/* cell of a binary-only type `oid` with `size` bytes */
static int binary_cell(ll_pg_result *r, int row, int col, unsigned oid, size_t size, cell *c) {
    int rc = cell_of(r, row, col, c);
    if (rc) return rc;
    if (c->type != oid || !c->binary || c->len != size) return LL_EINVAL;
    return 0;
}

int ll_pg_get_date(ll_pg_result *r, int row, int col, int32_t *out) {
    cell c;
    int rc = binary_cell(r, row, col, OID_DATE, 4, &c);
    if (rc) return rc;
    int32_t d = (int32_t)get32(c.p);
    if (d != INT32_MAX && d != INT32_MIN) {
        if (d > INT32_MAX - PG_EPOCH_DAYS - 1) return LL_ERANGE;
        d += PG_EPOCH_DAYS;
    }
    if (out) *out = d;
    return 0;
}

static int ts_get(ll_pg_result *r, int row, int col, unsigned oid, int64_t *out) {
    cell c;
    int rc = binary_cell(r, row, col, oid, 8, &c);
    if (rc) return rc;
    int64_t t = (int64_t)get64(c.p);
    if (t != INT64_MAX && t != INT64_MIN) {
        if (t > INT64_MAX - PG_EPOCH_USECS - 1) return LL_ERANGE;
        t += PG_EPOCH_USECS;
    }
    if (out) *out = t;
    return 0;
}

int ll_pg_get_timestamp(ll_pg_result *r, int row, int col, int64_t *out) {
    return ts_get(r, row, col, OID_TIMESTAMP, out);
}

int ll_pg_get_timestamptz(ll_pg_result *r, int row, int col, int64_t *out) {
    return ts_get(r, row, col, OID_TIMESTAMPTZ, out);
}

int ll_pg_get_interval(ll_pg_result *r, int row, int col, ll_pg_interval *out) {
    cell c;
    int rc = binary_cell(r, row, col, OID_INTERVAL, 16, &c);
    if (rc) return rc;
    if (out) {
        out->usecs = (int64_t)get64(c.p);
        out->days = (int32_t)get32(c.p + 8);
        out->months = (int32_t)get32(c.p + 12);
    }
    return 0;
}

int ll_pg_get_uuid(ll_pg_result *r, int row, int col, uint8_t out[16]) {
    cell c;
    int rc = binary_cell(r, row, col, OID_UUID, 16, &c);
    if (rc) return rc;
    if (out) memcpy(out, c.p, 16);
    return 0;
}

/* ---- arrays (array_send: ndim, hasnull, element type, per dimension size and lower bound,
 * then per element a length, -1 for NULL, and the element's own binary form) ---- */

typedef struct arr {
    size_t n;
    unsigned elem;
    const uint8_t *p, *end; /* the elements */
} arr;

static int arr_of(ll_pg_result *r, int row, int col, const unsigned *oids, arr *a) {
    cell c;
    int rc = cell_of(r, row, col, &c);
    if (rc) return rc;
    bool ok = false;
    for (; *oids; oids++) ok = ok || c.type == *oids;
    if (!ok || !c.binary || c.len < 12) return LL_EINVAL;
    uint32_t ndim = get32(c.p);
    a->elem = get32(c.p + 8);
    if (ndim == 0) {
        a->n = 0;
        a->p = a->end = c.p + 12;
        return 0;
    }
    if (ndim != 1 || c.len < 20) return LL_EINVAL; /* multi-dimensional: not read here */
    a->n = get32(c.p + 12);
    a->p = c.p + 20;
    a->end = c.p + c.len;
    if (a->n > c.len / 4) return LL_EINVAL;
    return 0;
}

/* The next element: its bytes and length, or len -1 for NULL; false when malformed. */
static bool arr_next(arr *a, const uint8_t **p, int32_t *len) {
    if (a->end - a->p < 4) return false;
    *len = (int32_t)get32(a->p);
    a->p += 4;
    if (*len == -1) return true;
    if (*len < 0 || a->end - a->p < *len) return false;
    *p = a->p;
    a->p += *len;
    return true;
}

/* keep n values of `size` bytes and n NULL flags with the result */
static int arr_alloc(ll_pg_result *r, size_t n, size_t size, void **vals, bool **nulls) {
    char *m = ll__pg_result_keep(r, n * size + n + 1);
    if (!m) return LL_ENOMEM;
    *vals = m;
    *nulls = (bool *)(m + n * size);
    return 0;
}

/* A 1-D array of fixed-size numbers: each element decoded by `dec` into `size` bytes. */
static int num_array(ll_pg_result *r, int row, int col, const unsigned *oids, size_t size,
                     int (*dec)(const cell *c, void *out), void **out, const bool **nulls,
                     size_t *n) {
    arr a;
    int rc = arr_of(r, row, col, oids, &a);
    if (rc) return rc;
    void *v;
    bool *nl;
    if ((rc = arr_alloc(r, a.n, size, &v, &nl))) return rc;
    memset(v, 0, a.n * size);
    for (size_t i = 0; i < a.n; i++) {
        const uint8_t *p = NULL;
        int32_t len;
        if (!arr_next(&a, &p, &len)) return LL_EINVAL;
        nl[i] = len < 0;
        cell c = {p, len < 0 ? 0 : (size_t)len, a.elem, true};
        if (len >= 0 && dec(&c, (char *)v + i * size)) return LL_EINVAL;
    }
    if (out) *out = v;
    if (nulls) *nulls = nl;
    if (n) *n = a.n;
    return 0;
}

static int dec_int(const cell *c, void *out) { return int_of(c, out); }
static int dec_float(const cell *c, void *out) { return float_of(c, out); }

int ll_pg_get_int8_array(ll_pg_result *r, int row, int col, const int64_t **out,
                         const bool **nulls, size_t *n) {
    static const unsigned oids[] = {OID_INT2_ARR, OID_INT4_ARR, OID_INT8_ARR, 0};
    void *v;
    int rc = num_array(r, row, col, oids, sizeof(int64_t), dec_int, &v, nulls, n);
    if (!rc && out) *out = v;
    return rc;
}

int ll_pg_get_float8_array(ll_pg_result *r, int row, int col, const double **out,
                           const bool **nulls, size_t *n) {
    static const unsigned oids[] = {OID_FLOAT4_ARR, OID_FLOAT8_ARR, 0};
    void *v;
    int rc = num_array(r, row, col, oids, sizeof(double), dec_float, &v, nulls, n);
    if (!rc && out) *out = v;
    return rc;
}

/* Text arrays in binary: each element is its own length-prefixed string, so no quoting or
 * escaping can make one element spill into the next (the text form's '{"a,b",NULL}' needs a
 * parser that gets quoting right; the binary form needs none). */
/* A text-format 1-D array ('{a,"b,c",NULL,"x\\"y"}', array_out's form): elements split at commas
 * outside quotes, quotes and backslashes undone, an unquoted NULL is NULL (a quoted "NULL" is the
 * string). Anything else (a dimension decoration, a nested array) is refused. */
static int text_array_parse(ll_pg_result *r, const cell *c, const char *const **out, size_t *n) {
    const char *s = (const char *)c->p, *end = s + c->len;
    if (c->len < 2 || s[0] != '{' || end[-1] != '}') return LL_EINVAL;
    size_t max = 1;
    for (const char *q = s; q < end; q++) max += *q == ',';
    /* pointers, then the strings (never longer than the input) */
    char *m = ll__pg_result_keep(r, (max + 1) * sizeof(char *) + c->len + max + 1);
    if (!m) return LL_ENOMEM;
    const char **v = (const char **)(void *)m;
    char *o = m + (max + 1) * sizeof(char *);
    size_t k = 0;
    const char *q = s + 1;
    if (q == end - 1) goto done; /* {} */
    for (;;) {
        char *start = o;
        bool quoted = false, any = false;
        if (q < end - 1 && *q == '"') {
            quoted = true;
            for (q++; q < end - 1 && *q != '"'; q++) {
                if (*q == '\\' && q + 1 < end - 1) q++;
                *o++ = *q;
            }
            if (q >= end - 1) return LL_EINVAL; /* unterminated quote */
            q++;
        } else {
            for (; q < end - 1 && *q != ',' && *q != '}'; q++) {
                if (*q == '{' || *q == '"') return LL_EINVAL; /* nested or malformed */
                if (*q == '\\' && q + 1 < end - 1) q++;
                *o++ = *q;
                any = true;
            }
            if (!any) return LL_EINVAL; /* an empty unquoted element */
        }
        *o++ = 0;
        v[k++] = !quoted && strcmp(start, "NULL") == 0 ? NULL : start;
        if (q == end - 1) break;
        if (*q != ',') return LL_EINVAL;
        q++;
    }
done:
    v[k] = NULL;
    if (out) *out = v;
    if (n) *n = k;
    return 0;
}

int ll_pg_get_text_array(ll_pg_result *r, int row, int col, const char *const **out, size_t *n) {
    static const unsigned oids[] = {OID_TEXT_ARR, OID_VARCHAR_ARR, OID_BPCHAR_ARR, OID_NAME_ARR, 0};
    cell tc;
    int trc = cell_of(r, row, col, &tc);
    if (trc) return trc;
    if (!tc.binary) {
        bool ok = false;
        for (const unsigned *t = oids; *t; t++) ok = ok || tc.type == *t;
        return ok ? text_array_parse(r, &tc, out, n) : LL_EINVAL;
    }
    arr a;
    int rc = arr_of(r, row, col, oids, &a);
    if (rc) return rc;
    size_t bytes = (size_t)(a.end - a.p); /* enough for every element plus its zero */
    char *m = ll__pg_result_keep(r, (a.n + 1) * sizeof(char *) + bytes + a.n + 1);
    if (!m) return LL_ENOMEM;
    const char **v = (const char **)(void *)m;
    char *s = m + (a.n + 1) * sizeof(char *);
    for (size_t i = 0; i < a.n; i++) {
        const uint8_t *p = NULL;
        int32_t len;
        if (!arr_next(&a, &p, &len)) return LL_EINVAL;
        if (len < 0) {
            v[i] = NULL;
            continue;
        }
        memcpy(s, p, (size_t)len);
        s[len] = 0;
        v[i] = s;
        s += len + 1;
    }
    v[a.n] = NULL;
    if (out) *out = v;
    if (n) *n = a.n;
    return 0;
}
