/*
 * params.c — typed parameters: the ll_pg_param constructors, their encoding to PostgreSQL's
 * binary wire formats, and the typed query calls (connection and pool, fetchrow, fetchval).
 *
 * Design notes:
 * - A parameter is a small value struct made by a constructor, so the compiler checks the C type
 *   of every argument (the text-string varargs API cannot: an int passed for a string compiles
 *   and crashes). Fixed-size values live inside the struct, so a list of parameters can be a
 *   compound literal; text, bytes and array elements are borrowed until the call returns.
 * - Everything is sent in binary (no printing and re-parsing of numbers, dates, UUIDs) except
 *   numeric, which goes as text: PostgreSQL parses a decimal string exactly, and building the
 *   base-10000 binary form from a string would only move the same parse here.
 * - The parameter types go with the statement (Parse), so the server never guesses a type from
 *   context and binary bytes are never read as another type. A named statement is cached per
 *   (SQL, types): the cache key is the SQL prefixed with the type list.
 * - Encoding happens once, in the call, into one allocation (pg_enc); the request (and a pool
 *   job) copies from it, so nothing of the caller's is touched after the call returns.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

/* type OIDs (pg_type.dat; fixed since PostgreSQL 7) */
enum {
    OID_BOOL = 16, OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_TEXT = 25,
    OID_JSON = 114, OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_DATE = 1082, OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184, OID_INTERVAL = 1186, OID_NUMERIC = 1700, OID_UUID = 2950,
    OID_JSONB = 3802,
    OID_BOOL_ARR = 1000, OID_INT2_ARR = 1005, OID_INT4_ARR = 1007, OID_INT8_ARR = 1016,
    OID_TEXT_ARR = 1009, OID_FLOAT4_ARR = 1021, OID_FLOAT8_ARR = 1022,
    OID_TIMESTAMPTZ_ARR = 1185, OID_UUID_ARR = 2951
};

/* how a parameter's value is held (ll_pg_param.kind) */
enum {
    K_NULL = 0, K_BOOL, K_I2, K_I4, K_I8, K_F4, K_F8, K_DATE, K_TS, K_IV, K_UUID,
    K_TEXT,  /* borrowed bytes sent as text format (numeric) */
    K_BYTES, /* borrowed bytes sent as binary as they are (text, bytea, json) */
    K_JSONB, /* borrowed JSON text, binary with jsonb's version byte */
    K_ARRAY  /* borrowed elements; v.i is the element kind */
};

/* PostgreSQL's epoch is 2000-01-01: 10957 days after 1970's */
#define PG_EPOCH_DAYS 10957
#define PG_EPOCH_USECS (INT64_C(10957) * 86400 * 1000000)

/* the constructors' tag: a parameter without it was not made by one (a zeroed struct, an int or
 * a string that slipped into the list past a warning) */
struct ll_pg_param_made {
    char unused;
};
static const struct ll_pg_param_made made_tag;

static ll_pg_param mk(unsigned type, int kind) {
    ll_pg_param p;
    memset(&p, 0, sizeof p);
    p.made = &made_tag;
    p.type = type;
    p.kind = kind;
    return p;
}

ll_pg_param ll_pg_param_null(void) { return mk(0, K_NULL); }

ll_pg_param ll_pg_param_bool(bool v) {
    ll_pg_param p = mk(OID_BOOL, K_BOOL);
    p.v.i = v;
    return p;
}

ll_pg_param ll_pg_param_int2(int16_t v) {
    ll_pg_param p = mk(OID_INT2, K_I2);
    p.v.i = v;
    return p;
}

ll_pg_param ll_pg_param_int4(int32_t v) {
    ll_pg_param p = mk(OID_INT4, K_I4);
    p.v.i = v;
    return p;
}

ll_pg_param ll_pg_param_int8(int64_t v) {
    ll_pg_param p = mk(OID_INT8, K_I8);
    p.v.i = v;
    return p;
}

ll_pg_param ll_pg_param_float4(float v) {
    ll_pg_param p = mk(OID_FLOAT4, K_F4);
    p.v.d = v;
    return p;
}

ll_pg_param ll_pg_param_float8(double v) {
    ll_pg_param p = mk(OID_FLOAT8, K_F8);
    p.v.d = v;
    return p;
}

static ll_pg_param borrowed(unsigned type, int kind, const void *s, size_t len) {
    ll_pg_param p = mk(type, s ? kind : K_NULL);
    p.ptr = s;
    p.len = s ? len : 0;
    return p;
}

/* text-like: a zero byte inside is refused (PostgreSQL text cannot hold one) */
static ll_pg_param textlike(unsigned type, int kind, const char *s, ptrdiff_t len) {
    if (!s) return mk(type, K_NULL);
    size_t n = len < 0 ? strlen(s) : (size_t)len;
    ll_pg_param p = borrowed(type, kind, s, n);
    if (len >= 0 && memchr(s, 0, n)) p.err = LL_EINVAL;
    return p;
}

ll_pg_param ll_pg_param_numeric(const char *s) {
    return textlike(OID_NUMERIC, K_TEXT, s, -1);
}

ll_pg_param ll_pg_param_text(const char *s, ptrdiff_t len) {
    return textlike(OID_TEXT, K_BYTES, s, len);
}

ll_pg_param ll_pg_param_json(const char *s, ptrdiff_t len) {
    return textlike(OID_JSON, K_BYTES, s, len);
}

ll_pg_param ll_pg_param_jsonb(const char *s, ptrdiff_t len) {
    return textlike(OID_JSONB, K_JSONB, s, len);
}

ll_pg_param ll_pg_param_bytea(const void *data, size_t len) {
    return borrowed(OID_BYTEA, K_BYTES, data ? data : (len ? NULL : ""), len);
}

ll_pg_param ll_pg_param_date(int32_t days) {
    ll_pg_param p = mk(OID_DATE, K_DATE);
    p.v.i = days;
    return p;
}

static ll_pg_param ts(unsigned type, int64_t us) {
    ll_pg_param p = mk(type, K_TS);
    p.v.i = us;
    return p;
}

ll_pg_param ll_pg_param_timestamp(int64_t us) { return ts(OID_TIMESTAMP, us); }
ll_pg_param ll_pg_param_timestamptz(int64_t us) { return ts(OID_TIMESTAMPTZ, us); }

ll_pg_param ll_pg_param_interval(ll_pg_interval v) {
    ll_pg_param p = mk(OID_INTERVAL, K_IV);
    p.v.iv = v;
    return p;
}

ll_pg_param ll_pg_param_uuid(const uint8_t bytes[16]) {
    if (!bytes) return mk(OID_UUID, K_NULL);
    ll_pg_param p = mk(OID_UUID, K_UUID);
    memcpy(p.v.uuid, bytes, 16);
    return p;
}

static ll_pg_param array(unsigned type, int elem, const void *v, const bool *nulls, size_t n) {
    ll_pg_param p = mk(type, K_ARRAY);
    p.v.i = elem;
    p.ptr = v;
    p.nulls = nulls;
    p.len = n;
    if (n && !v) p.err = LL_EINVAL;
    if (n > 100000000) p.err = LL_ERANGE;
    return p;
}

ll_pg_param ll_pg_param_bool_array(const bool *v, const bool *nulls, size_t n) {
    return array(OID_BOOL_ARR, K_BOOL, v, nulls, n);
}
ll_pg_param ll_pg_param_int2_array(const int16_t *v, const bool *nulls, size_t n) {
    return array(OID_INT2_ARR, K_I2, v, nulls, n);
}
ll_pg_param ll_pg_param_int4_array(const int32_t *v, const bool *nulls, size_t n) {
    return array(OID_INT4_ARR, K_I4, v, nulls, n);
}
ll_pg_param ll_pg_param_int8_array(const int64_t *v, const bool *nulls, size_t n) {
    return array(OID_INT8_ARR, K_I8, v, nulls, n);
}
ll_pg_param ll_pg_param_float4_array(const float *v, const bool *nulls, size_t n) {
    return array(OID_FLOAT4_ARR, K_F4, v, nulls, n);
}
ll_pg_param ll_pg_param_float8_array(const double *v, const bool *nulls, size_t n) {
    return array(OID_FLOAT8_ARR, K_F8, v, nulls, n);
}
ll_pg_param ll_pg_param_text_array(const char *const *v, size_t n) {
    return array(OID_TEXT_ARR, K_BYTES, v, NULL, n);
}
ll_pg_param ll_pg_param_timestamptz_array(const int64_t *v, const bool *nulls, size_t n) {
    return array(OID_TIMESTAMPTZ_ARR, K_TS, v, nulls, n);
}
ll_pg_param ll_pg_param_uuid_array(const uint8_t (*v)[16], const bool *nulls, size_t n) {
    return array(OID_UUID_ARR, K_UUID, v, nulls, n);
}

/* ---- encoding ---- */

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* Infinity stays infinity; everything else moves to PostgreSQL's epoch (a value that would
 * overflow is refused: it would wrap to a wrong date). */
static bool ts_to_pg(int64_t us, int64_t *out) {
    if (us == INT64_MAX || us == INT64_MIN) {
        *out = us;
        return true;
    }
    if (us < INT64_MIN + PG_EPOCH_USECS + 1) return false;
    *out = us - PG_EPOCH_USECS;
    return true;
}

static bool date_to_pg(int64_t d, int32_t *out) {
    if (d == INT32_MAX || d == INT32_MIN) {
        *out = (int32_t)d;
        return true;
    }
    if (d < (int64_t)INT32_MIN + PG_EPOCH_DAYS + 1) return false;
    *out = (int32_t)(d - PG_EPOCH_DAYS);
    return true;
}

/* The binary size of one scalar of `kind` (-1: variable, the length is the borrowed data's). */
static int fixed_size(int kind) {
    switch (kind) {
    case K_BOOL: return 1;
    case K_I2: return 2;
    case K_I4: case K_DATE: case K_F4: return 4;
    case K_I8: case K_F8: case K_TS: return 8;
    case K_IV: return 16;
    case K_UUID: return 16;
    default: return -1;
    }
}

/* Write one fixed-size scalar; false when the value cannot be represented. */
static bool put_scalar(uint8_t *o, int kind, int64_t i, double d, const ll_pg_interval *iv,
                       const uint8_t *uuid) {
    switch (kind) {
    case K_BOOL: o[0] = i != 0; return true;
    case K_I2: put16(o, (uint16_t)i); return true;
    case K_I4: put32(o, (uint32_t)i); return true;
    case K_I8: put64(o, (uint64_t)i); return true;
    case K_F4: {
        float f = (float)d;
        uint32_t u;
        memcpy(&u, &f, 4);
        put32(o, u);
        return true;
    }
    case K_F8: {
        uint64_t u;
        memcpy(&u, &d, 8);
        put64(o, u);
        return true;
    }
    case K_DATE: {
        int32_t pd;
        if (!date_to_pg(i, &pd)) return false;
        put32(o, (uint32_t)pd);
        return true;
    }
    case K_TS: {
        int64_t pt;
        if (!ts_to_pg(i, &pt)) return false;
        put64(o, (uint64_t)pt);
        return true;
    }
    case K_IV:
        put64(o, (uint64_t)iv->usecs);
        put32(o + 8, (uint32_t)iv->days);
        put32(o + 12, (uint32_t)iv->months);
        return true;
    case K_UUID: memcpy(o, uuid, 16); return true;
    default: return false;
    }
}

static unsigned elem_oid(int kind, unsigned array_type) {
    switch (array_type) {
    case OID_BOOL_ARR: return OID_BOOL;
    case OID_INT2_ARR: return OID_INT2;
    case OID_INT4_ARR: return OID_INT4;
    case OID_INT8_ARR: return OID_INT8;
    case OID_FLOAT4_ARR: return OID_FLOAT4;
    case OID_FLOAT8_ARR: return OID_FLOAT8;
    case OID_TEXT_ARR: return OID_TEXT;
    case OID_TIMESTAMPTZ_ARR: return OID_TIMESTAMPTZ;
    case OID_UUID_ARR: return OID_UUID;
    default: (void)kind; return 0;
    }
}

static bool elem_null(const ll_pg_param *p, size_t i) {
    if (p->nulls && p->nulls[i]) return true;
    return p->v.i == K_BYTES && !((const char *const *)p->ptr)[i];
}

/* The encoded size of parameter p (-1: NULL); *why set when it is refused. */
static int64_t enc_size(const ll_pg_param *p, const char **why) {
    switch (p->kind) {
    case K_NULL: return -1;
    case K_TEXT: return (int64_t)p->len + 1;
    case K_BYTES: return (int64_t)p->len;
    case K_JSONB: return (int64_t)p->len + 1;
    case K_ARRAY: {
        int64_t size = 20; /* ndim, flags, element type, dimension, lower bound */
        if (p->len == 0) return 12;
        int fs = fixed_size((int)p->v.i);
        for (size_t i = 0; i < p->len; i++) {
            size += 4;
            if (elem_null(p, i)) continue;
            if (fs > 0) {
                size += fs;
            } else {
                const char *s = ((const char *const *)p->ptr)[i];
                size += (int64_t)strlen(s);
            }
            if (size > INT32_MAX) {
                *why = "array larger than 2 GB";
                return -2;
            }
        }
        return size;
    }
    default: {
        int fs = fixed_size(p->kind);
        if (fs < 0) {
            *why = "not made by an ll_pg_param_* constructor";
            return -2;
        }
        return fs;
    }
    }
}

static const char *type_name(unsigned oid) {
    switch (oid) {
    case OID_DATE: return "date";
    case OID_TIMESTAMP: return "timestamp";
    case OID_TIMESTAMPTZ: case OID_TIMESTAMPTZ_ARR: return "timestamptz";
    default: return "value";
    }
}

/* Write p at o (size bytes); false when a value cannot be represented. */
static bool enc_write(const ll_pg_param *p, uint8_t *o) {
    switch (p->kind) {
    case K_TEXT:
        memcpy(o, p->ptr, p->len);
        o[p->len] = 0;
        return true;
    case K_BYTES:
        if (p->len) memcpy(o, p->ptr, p->len);
        return true;
    case K_JSONB:
        o[0] = 1; /* jsonb's binary format version */
        memcpy(o + 1, p->ptr, p->len);
        return true;
    case K_ARRAY: {
        int kind = (int)p->v.i;
        bool anynull = false;
        for (size_t i = 0; i < p->len && !anynull; i++) anynull = elem_null(p, i);
        put32(o, p->len ? 1 : 0);
        put32(o + 4, anynull);
        put32(o + 8, elem_oid(kind, p->type));
        if (p->len == 0) return true;
        put32(o + 12, (uint32_t)p->len);
        put32(o + 16, 1);
        uint8_t *w = o + 20;
        int fs = fixed_size(kind);
        for (size_t i = 0; i < p->len; i++) {
            if (elem_null(p, i)) {
                put32(w, UINT32_MAX);
                w += 4;
                continue;
            }
            if (fs < 0) {
                const char *s = ((const char *const *)p->ptr)[i];
                size_t l = strlen(s);
                put32(w, (uint32_t)l);
                memcpy(w + 4, s, l);
                w += 4 + l;
                continue;
            }
            put32(w, (uint32_t)fs);
            w += 4;
            int64_t iv = 0;
            double dv = 0;
            const uint8_t *uuid = NULL;
            switch (kind) {
            case K_BOOL: iv = ((const bool *)p->ptr)[i]; break;
            case K_I2: iv = ((const int16_t *)p->ptr)[i]; break;
            case K_I4: iv = ((const int32_t *)p->ptr)[i]; break;
            case K_I8: case K_TS: iv = ((const int64_t *)p->ptr)[i]; break;
            case K_F4: dv = ((const float *)p->ptr)[i]; break;
            case K_F8: dv = ((const double *)p->ptr)[i]; break;
            case K_UUID: uuid = ((const uint8_t(*)[16])p->ptr)[i]; break;
            default: return false;
            }
            if (!put_scalar(w, kind, iv, dv, NULL, uuid)) return false;
            w += fs;
        }
        return true;
    }
    default:
        return put_scalar(o, p->kind, p->v.i, p->v.d, &p->v.iv, p->v.uuid);
    }
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

int64_t ll__pg_param_size(const ll_pg_param *p, const char **why) {
    if (p->made != &made_tag) {
        *why = " was not made by an ll_pg_param_* constructor";
        return -2;
    }
    if (p->err) {
        *why = p->err == LL_ERANGE ? ": array too large"
             : p->kind == K_ARRAY  ? ": array elements are NULL"
                                   : ": text contains a zero byte (PostgreSQL text cannot hold "
                                     "one; use ll_pg_param_bytea)";
        return -2;
    }
    const char *w = NULL;
    int64_t s = enc_size(p, &w);
    if (s == -2 || s > INT32_MAX) {
        *why = !w ? ": value larger than 2 GB"
             : w[0] == 'a' ? ": array larger than 2 GB"
                           : ": not made by an ll_pg_param_* constructor";
        return -2;
    }
    return s;
}

const char *ll__pg_param_write(const ll_pg_param *p, uint8_t *o, int64_t size, char **value,
                               int *length, int *format) {
    if (size < 0) {
        *value = NULL;
        *length = 0;
        *format = 0;
        return NULL;
    }
    if (!enc_write(p, o)) return type_name(p->type); /* "... out of range" */
    *value = (char *)o;
    *length = p->kind == K_TEXT ? (int)size - 1 : (int)size;
    *format = p->kind == K_TEXT ? 0 : 1;
    return NULL;
}

size_t ll__pg_stmt_key(char *out, const Oid *types, int n, const char *sql) {
    char *k = out;
    *k++ = '\x01';
    for (int i = 0; i < n; i++) k += sprintf(k, "%u,", types[i]);
    *k++ = '\x01';
    size_t sl = strlen(sql);
    memcpy(k, sql, sl + 1);
    return (size_t)(k - out) + sl;
}

pg_enc *ll__pg_enc_new(ll_future *f, const char *sql, int n, const ll_pg_param *params,
                       int result_format) {
    if (n < 0 || n > 65535 || (n > 0 && !params)) {
        ll_future_fail(f, LL_EINVAL, "postgres typed query: %s",
                       n < 0 || n > 65535 ? "parameter count out of range" : "params is NULL");
        return NULL;
    }
    size_t un = (size_t)n;
    size_t data = 0;
    /* the key: \x01 + "oid," per parameter + \x01 + SQL (no SQL text starts with \x01) */
    size_t keylen = LL__PG_KEY_LEN(n, sql);
    for (int i = 0; i < n; i++) {
        const char *why;
        int64_t s = ll__pg_param_size(&params[i], &why);
        if (s == -2) {
            ll_future_fail(f, LL_EINVAL, "postgres typed query: parameter $%d%s", i + 1, why);
            return NULL;
        }
        if (s > 0) data += (size_t)s;
    }
    size_t off_types = align8(sizeof(pg_enc));
    size_t off_values = align8(off_types + un * sizeof(Oid));
    size_t off_lengths = align8(off_values + un * sizeof(char *));
    size_t off_formats = off_lengths + un * sizeof(int);
    size_t off_key = off_formats + un * sizeof(int);
    size_t off_data = off_key + keylen + 1;
    char *mem = ll_malloc(off_data + data + 1);
    if (!mem) {
        ll_future_fail(f, LL_ENOMEM, "postgres typed query: out of memory");
        return NULL;
    }
    pg_enc *e = (pg_enc *)mem;
    e->n = n;
    e->result_format = result_format;
    e->types = (Oid *)(mem + off_types);
    e->values = (char **)(mem + off_values);
    e->lengths = (int *)(mem + off_lengths);
    e->formats = (int *)(mem + off_formats);
    e->key = mem + off_key;
    uint8_t *d = (uint8_t *)(mem + off_data);
    for (int i = 0; i < n; i++) {
        const ll_pg_param *p = &params[i];
        const char *why;
        int64_t s = ll__pg_param_size(p, &why);
        e->types[i] = p->type; /* 0 for ll_pg_param_null(): the server infers it */
        why = ll__pg_param_write(p, d, s, &e->values[i], &e->lengths[i], &e->formats[i]);
        if (why) {
            ll_free(mem);
            ll_future_fail(f, LL_EINVAL, "postgres typed query: parameter $%d: %s out of range",
                           i + 1, why);
            return NULL;
        }
        if (s > 0) d += s;
    }
    ll__pg_stmt_key(e->key, e->types, n, sql);
    return e;
}

/* ---- the calls ---- */

ll_future *ll__pg_query_enc(ll_pg_conn *c, const char *sql, const pg_enc *e) {
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg query");
    if (c->state != PG_READY) {
        if (c->state == PG_BROKEN)
            ll_future_fail(f, LL_EPG_CONN, "postgres %s: connection lost earlier", c->peer);
        else
            ll_future_fail(f, LL_ECLOSED, "postgres %s: connection closed",
                           c->peer ? c->peer : "?");
        return f;
    }
    pg_req *r = ll__pg_req_new(c, REQ_QUERY, sql, e->n, (const char *const *)e->values,
                               e->lengths, e->formats);
    size_t klen = strlen(e->key) + 1;
    if (r) {
        r->types = e->n ? ll_malloc((size_t)e->n * sizeof(Oid)) : NULL;
        r->stmt_key = ll_malloc(klen);
    }
    if (!r || (e->n && !r->types) || !r->stmt_key) {
        ll__pg_req_free(r);
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory for a query", c->peer);
        return f;
    }
    if (e->n) memcpy(r->types, e->types, (size_t)e->n * sizeof(Oid));
    memcpy(r->stmt_key, e->key, klen);
    r->result_format = e->result_format;
    /* ll__pg_req_new keeps `formats` only when one is binary; binary text needs no zero byte,
     * and a text-format value (numeric) was written with its zero */
    r->f = ll_future_ref(f);
    ll__pg_submit(c, r);
    return f;
}

ll_future *ll_pg_query_typed(ll_pg_conn *c, const char *sql, int n, const ll_pg_param *params,
                             const ll_pg_query_opts *opts) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    pg_enc *e = ll__pg_enc_new(f, sql, n, params, opts && opts->text_results ? 0 : 1);
    if (!e) return f;
    ll_future_free(f);
    f = ll__pg_query_enc(c, sql, e);
    ll_free(e);
    return f;
}

/* fetchrow / fetchval: the query's future, checked for a row when it settles */
typedef struct fetch_job {
    ll_future *outer;
    ll_future *inner;
    bool val;
} fetch_job;

static void fetch_done(ll_future *q, void *arg) {
    fetch_job *j = arg;
    if (ll_future_code(q) != 0) {
        if (ll_future_code(q) == LL_ECANCELED) ll_future_set_cancelled(j->outer);
        else ll__pg_fail_from(j->outer, q);
    } else {
        ll_pg_result *r = ll_pg_result_of(q);
        if (ll_pg_result_rows(r) < 1 || (j->val && ll_pg_result_cols(r) < 1)) {
            ll_future_fail(j->outer, LL_ENOENT, "postgres %s: the query returned no %s",
                           j->val ? "fetchval" : "fetchrow",
                           ll_pg_result_rows(r) < 1 ? "rows" : "columns");
        } else {
            ll_future_resolve(j->outer, ll_future_take(q), (ll_value_free)ll_pg_result_free);
        }
    }
    ll_future_free(q);
    ll_future_free(j->outer);
    ll_free(j);
}

static void fetch_cancel(ll_future *outer, void *arg) {
    (void)outer;
    fetch_job *j = arg;
    ll_future_cancel(j->inner); /* the query's cancel rules apply; fetch_done settles outer */
}

/* Wrap query future q (adopted) so it fails with LL_ENOENT without a row. */
static ll_future *fetch_wrap(ll_future *q, bool val) {
    if (!q || ll_future_done(q)) {
        if (q && ll_future_code(q) == 0) { /* cannot happen: queries never settle in the call */
            ll_future_free(q);
            return ll_future_failed(NULL, LL_ESTATE, "postgres fetch: settled early");
        }
        return q;
    }
    ll_future *outer = ll_future_new(ll_future_loop(q));
    fetch_job *j = outer ? ll_malloc(sizeof *j) : NULL;
    if (!j) {
        ll_future_cancel(q);
        ll_future_free(q);
        ll_future_free(outer);
        return NULL;
    }
    ll_future_set_label(outer, val ? "pg fetchval" : "pg fetchrow");
    j->outer = ll_future_ref(outer);
    j->inner = q;
    j->val = val;
    if (ll_future_add_done(q, fetch_done, j) != 0) {
        ll_future_cancel(q);
        ll_future_free(q);
        ll_future_free(j->outer);
        ll_free(j);
        ll_future_fail(outer, LL_ENOMEM, "postgres fetch: out of memory");
        return outer;
    }
    ll_future_on_cancel(outer, fetch_cancel, j);
    return outer;
}

ll_future *ll_pg_fetchrow(ll_pg_conn *c, const char *sql, int n, const ll_pg_param *params) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    return fetch_wrap(ll_pg_query_typed(c, sql, n, params, NULL), false);
}

ll_future *ll_pg_fetchval(ll_pg_conn *c, const char *sql, int n, const ll_pg_param *params) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    return fetch_wrap(ll_pg_query_typed(c, sql, n, params, NULL), true);
}

ll_future *ll_pg_pool_query_typed(ll_pg_pool *p, const char *sql, int n,
                                  const ll_pg_param *params, const ll_pg_query_opts *opts) {
    LL_REQUIRE_ARG(p, "pool");
    LL_REQUIRE_ARG(sql, "sql");
    ll_future *f = ll_future_new(NULL);
    if (!f) return NULL;
    ll_future_set_label(f, "pg pool query");
    pg_enc *e = ll__pg_enc_new(f, sql, n, params, opts && opts->text_results ? 0 : 1);
    if (!e) return f;
    return ll__pg_pool_query_enc(p, sql, e, f);
}

ll_future *ll_pg_pool_fetchrow(ll_pg_pool *p, const char *sql, int n, const ll_pg_param *params) {
    LL_REQUIRE_ARG(p, "pool");
    LL_REQUIRE_ARG(sql, "sql");
    return fetch_wrap(ll_pg_pool_query_typed(p, sql, n, params, NULL), false);
}

ll_future *ll_pg_pool_fetchval(ll_pg_pool *p, const char *sql, int n, const ll_pg_param *params) {
    LL_REQUIRE_ARG(p, "pool");
    LL_REQUIRE_ARG(sql, "sql");
    return fetch_wrap(ll_pg_pool_query_typed(p, sql, n, params, NULL), true);
}

/* ---- for prepared statements (stmt.c) ---- */

ll_future *ll__pg_fetch_wrap(ll_future *q, bool val) {
    return fetch_wrap(q, val);
}

static const char *oid_name(unsigned oid, char *buf, size_t n) {
    switch (oid) {
    case OID_BOOL: return "bool";
    case OID_BYTEA: return "bytea";
    case OID_INT8: return "int8";
    case OID_INT2: return "int2";
    case OID_INT4: return "int4";
    case OID_TEXT: return "text";
    case OID_JSON: return "json";
    case OID_FLOAT4: return "float4";
    case OID_FLOAT8: return "float8";
    case OID_DATE: return "date";
    case OID_TIMESTAMP: return "timestamp";
    case OID_TIMESTAMPTZ: return "timestamptz";
    case OID_INTERVAL: return "interval";
    case OID_NUMERIC: return "numeric";
    case OID_UUID: return "uuid";
    case OID_JSONB: return "jsonb";
    case OID_BOOL_ARR: return "bool[]";
    case OID_INT2_ARR: return "int2[]";
    case OID_INT4_ARR: return "int4[]";
    case OID_INT8_ARR: return "int8[]";
    case OID_TEXT_ARR: return "text[]";
    case OID_FLOAT4_ARR: return "float4[]";
    case OID_FLOAT8_ARR: return "float8[]";
    case OID_TIMESTAMPTZ_ARR: return "timestamptz[]";
    case OID_UUID_ARR: return "uuid[]";
    case 19: return "name";
    case 1042: return "bpchar";
    case 1043: return "varchar";
    default: snprintf(buf, n, "type %u", oid); return buf;
    }
}

/* Types whose binary form is the text itself (text, varchar, bpchar, name, json). */
static bool text_on_wire(unsigned oid) {
    return oid == OID_TEXT || oid == 1043 || oid == 1042 || oid == 19 || oid == OID_JSON;
}

int ll__pg_param_coerce(const ll_pg_param *p, unsigned want, ll_pg_param *out, char *buf,
                        size_t buflen, char *why, size_t whylen) {
    *out = *p;
    /* refused or foreign parameters are reported by the encoder; 0: the server infers it */
    if (p->made != &made_tag || p->err || want == 0 || want == p->type) return 0;
    if (p->kind == K_NULL) {
        out->type = want; /* a NULL of the statement's type */
        return 0;
    }
    char n1[24], n2[24];
    const char *have = oid_name(p->type, n1, sizeof n1), *wname = oid_name(want, n2, sizeof n2);
    switch (p->kind) {
    case K_I2: case K_I4: case K_I8: {
        int64_t v = p->v.i;
        int64_t lo = want == OID_INT2 ? INT16_MIN : want == OID_INT4 ? INT32_MIN : INT64_MIN;
        int64_t hi = want == OID_INT2 ? INT16_MAX : want == OID_INT4 ? INT32_MAX : INT64_MAX;
        if (want == OID_INT2 || want == OID_INT4 || want == OID_INT8) {
            if (v < lo || v > hi) {
                snprintf(why, whylen, "%s value %lld is out of range for the statement's %s", have,
                         (long long)v, wname);
                return LL_ERANGE;
            }
            *out = want == OID_INT2 ? ll_pg_param_int2((int16_t)v)
                   : want == OID_INT4 ? ll_pg_param_int4((int32_t)v)
                                      : ll_pg_param_int8(v);
            return 0;
        }
        if (want == OID_FLOAT4) { *out = ll_pg_param_float4((float)v); return 0; }
        if (want == OID_FLOAT8) { *out = ll_pg_param_float8((double)v); return 0; }
        if (want == OID_NUMERIC) {
            snprintf(buf, buflen, "%lld", (long long)v);
            *out = ll_pg_param_numeric(buf);
            return 0;
        }
        break;
    }
    case K_F4: case K_F8: {
        double d = p->v.d;
        if (want == OID_FLOAT8) { *out = ll_pg_param_float8(d); return 0; }
        if (want == OID_FLOAT4) {
            if (isfinite(d) && (d > 3.40282346638528859812e+38 || d < -3.40282346638528859812e+38)) {
                snprintf(why, whylen, "%s value %g is out of range for the statement's float4",
                         have, d);
                return LL_ERANGE;
            }
            *out = ll_pg_param_float4((float)d);
            return 0;
        }
        if (want == OID_NUMERIC) {
            if (isnan(d)) snprintf(buf, buflen, "NaN");
            else if (isinf(d)) snprintf(buf, buflen, "%sInfinity", d < 0 ? "-" : "");
            else snprintf(buf, buflen, "%.17g", d);
            *out = ll_pg_param_numeric(buf);
            return 0;
        }
        break;
    }
    case K_BYTES: case K_JSONB: case K_TEXT:
        if (p->type == OID_BYTEA || want == OID_BYTEA) break;
        if (text_on_wire(want) && p->kind != K_TEXT) {
            *out = borrowed(want, K_BYTES, p->ptr, p->len); /* the same bytes, binary */
            return 0;
        }
        if (want == OID_JSONB && p->kind != K_TEXT) {
            *out = borrowed(want, K_JSONB, p->ptr, p->len);
            return 0;
        }
        /* text format: the server parses it with the type's input function (enums,
         * composites, inet, numeric, dates, ...); the constructors refused a zero byte */
        *out = borrowed(want, K_TEXT, p->ptr, p->len);
        return 0;
    default:
        break;
    }
    snprintf(why, whylen, "a %s value where the statement takes %s (cast it in the SQL, e.g. "
                          "$n::%s, or prepare with the types)", have, wname, have);
    return LL_EINVAL;
}
