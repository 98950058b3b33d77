/*
 * test_pg_types.c — typed parameters and binary results against a real PostgreSQL: every type
 * round-trips at its boundaries, the encoding is checked by the server itself (comparisons with
 * literals), getters refuse the wrong type, refused values never reach the server, fetchrow /
 * fetchval and the pool's typed forms.
 */
#include <math.h>
#include "pgtest.h"

/* Inside a task: a typed query that must succeed; the result is the caller's. */
static ll_pg_result *tq(ll_pg_conn *c, const char *sql, int n, const ll_pg_param *p) {
    ll_future *f = ll_pg_query_typed(c, sql, n, p, NULL);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "%s: %s\n", sql, ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    ll_pg_result *r = ll_future_take(f);
    ll_future_free(f);
    return r;
}

/* The server says whether $1 equals the literal in sql (the encoding is right, whatever our
 * decoder thinks), and the value comes back in column 1. */
static ll_pg_result *same(ll_pg_conn *c, const char *sql, ll_pg_param p) {
    ll_pg_result *r = tq(c, sql, 1, &p);
    bool eq = false;
    int rc = ll_pg_get_bool(r, 0, 0, &eq);
    if (rc || !eq) fprintf(stderr, "not equal: %s\n", sql);
    assert_int_equal(rc, 0);
    assert_true(eq);
    return r;
}

static int t_ints_floats(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_result *r;
    int16_t i2;
    int32_t i4;
    int64_t i8;
    double d;
    float f4;

    r = same(c, "SELECT $1 = (-32768)::int2, $1", ll_pg_param_int2(INT16_MIN));
    assert_int_equal(ll_pg_get_int2(r, 0, 1, &i2), 0);
    assert_int_equal(i2, INT16_MIN);
    assert_int_equal(ll_pg_result_coltype(r, 1), 21);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = 32767::int2, $1", ll_pg_param_int2(INT16_MAX));
    assert_int_equal(ll_pg_get_int8(r, 0, 1, &i8), 0); /* widening is allowed */
    assert_int_equal(i8, INT16_MAX);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = (-2147483648)::int4, $1", ll_pg_param_int4(INT32_MIN));
    assert_int_equal(ll_pg_get_int4(r, 0, 1, &i4), 0);
    assert_int_equal(i4, INT32_MIN);
    assert_int_equal(ll_pg_get_int2(r, 0, 1, &i2), LL_ERANGE); /* narrowing checks */
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = 2147483647::int4, $1", ll_pg_param_int4(INT32_MAX));
    assert_int_equal(ll_pg_get_int4(r, 0, 1, &i4), 0);
    assert_int_equal(i4, INT32_MAX);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = (-9223372036854775808)::int8, $1", ll_pg_param_int8(INT64_MIN));
    assert_int_equal(ll_pg_get_int8(r, 0, 1, &i8), 0);
    assert_true(i8 == INT64_MIN);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = 9223372036854775807::int8, $1", ll_pg_param_int8(INT64_MAX));
    assert_int_equal(ll_pg_get_int8(r, 0, 1, &i8), 0);
    assert_true(i8 == INT64_MAX);
    assert_int_equal(ll_pg_int64(r, 0, 1, &i8), 0); /* the old getter reads binary too */
    assert_true(i8 == INT64_MAX);
    assert_null(ll_pg_text(r, 0, 1)); /* binary int8 bytes are never handed out as text */
    ll_pg_result_free(r);

    r = same(c, "SELECT $1 = 'NaN'::float8, $1", ll_pg_param_float8(NAN));
    assert_int_equal(ll_pg_get_float8(r, 0, 1, &d), 0);
    assert_true(isnan(d));
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = 'Infinity'::float8, $1", ll_pg_param_float8(INFINITY));
    assert_int_equal(ll_pg_get_float8(r, 0, 1, &d), 0);
    assert_true(isinf(d) && d > 0);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = '-Infinity'::float8, $1", ll_pg_param_float8(-INFINITY));
    assert_int_equal(ll_pg_get_float8(r, 0, 1, &d), 0);
    assert_true(isinf(d) && d < 0);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = 2.2250738585072014e-308::float8, $1",
             ll_pg_param_float8(2.2250738585072014e-308));
    assert_int_equal(ll_pg_get_float8(r, 0, 1, &d), 0);
    assert_true(d == 2.2250738585072014e-308);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = 1.5::float4, $1", ll_pg_param_float4(1.5f));
    assert_int_equal(ll_pg_get_float4(r, 0, 1, &f4), 0);
    assert_true(f4 == 1.5f);
    assert_int_equal(ll_pg_get_float8(r, 0, 1, &d), 0);
    assert_true(d == 1.5);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = '-Infinity'::float4, $1", ll_pg_param_float4(-INFINITY));
    ll_pg_result_free(r);

    bool b = false;
    r = same(c, "SELECT $1 = true, $1", ll_pg_param_bool(true));
    assert_int_equal(ll_pg_get_bool(r, 0, 1, &b), 0);
    assert_true(b);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = false, $1", ll_pg_param_bool(false));
    assert_int_equal(ll_pg_bool(r, 0, 1, &b), 0);
    assert_false(b);
    ll_pg_result_free(r);
    ll_pg_close(c);
    return 0;
}

static int t_text_numeric(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    const char *s;
    size_t n;
    ll_pg_result *r;

    /* numeric with 1,000 digits, and its special values */
    char big[1100];
    big[0] = '-';
    for (int i = 1; i <= 600; i++) big[i] = (char)('0' + i % 10);
    big[601] = '.';
    for (int i = 602; i < 1002; i++) big[i] = (char)('0' + (i * 7) % 10);
    big[1002] = 0;
    ll_pg_param p = ll_pg_param_numeric(big);
    r = tq(c, "SELECT $1, $1::text", 1, &p);
    assert_int_equal(ll_pg_result_coltype(r, 0), 1700);
    assert_int_equal(ll_pg_get_text(r, 0, 0, &s, &n), 0); /* decoded from binary */
    assert_string_equal(s, big);
    assert_int_equal(n, strlen(big));
    assert_int_equal(ll_pg_get_text(r, 0, 1, &s, NULL), 0); /* the server's own text */
    assert_string_equal(s, big);
    ll_pg_result_free(r);
    const char *nums[] = {"0", "0.000", "NaN", "Infinity", "-Infinity", "0.0001", "-12345678.9",
                          "100000000", "1e-20"};
    const char *want[] = {"0", "0.000", "NaN", "Infinity", "-Infinity", "0.0001", "-12345678.9",
                          "100000000", "0.00000000000000000001"};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        p = ll_pg_param_numeric(nums[i]);
        r = tq(c, "SELECT $1", 1, &p);
        assert_int_equal(ll_pg_get_text(r, 0, 0, &s, NULL), 0);
        assert_string_equal(s, want[i]);
        ll_pg_result_free(r);
    }

    /* text: UTF-8, empty, with a length (not zero-terminated) */
    ll_pg_param tp[3] = {ll_pg_param_text("h\xc3\xa9llo w\xc3\xb6rld", -1), ll_pg_param_text("", 0),
                         ll_pg_param_text("abcdef", 3)};
    r = tq(c, "SELECT $1 = 'héllo wörld', $1, $2, $3", 3, tp);
    bool eq = false;
    assert_int_equal(ll_pg_get_bool(r, 0, 0, &eq), 0);
    assert_true(eq);
    assert_int_equal(ll_pg_get_text(r, 0, 1, &s, &n), 0);
    assert_string_equal(s, "h\xc3\xa9llo w\xc3\xb6rld");
    assert_int_equal(ll_pg_get_text(r, 0, 2, &s, &n), 0);
    assert_int_equal(n, 0);
    assert_string_equal(ll_pg_text(r, 0, 3), "abc"); /* text columns stay readable as text */
    ll_pg_result_free(r);

    /* json and jsonb (jsonb is normalised by the server) */
    ll_pg_param jp[2] = {ll_pg_param_json("{\"a\":[1,2]}", -1), ll_pg_param_jsonb("{\"b\":true}", -1)};
    r = tq(c, "SELECT $1, $2, $2 @> '{\"b\":true}'", 2, jp);
    assert_int_equal(ll_pg_get_text(r, 0, 0, &s, NULL), 0);
    assert_string_equal(s, "{\"a\":[1,2]}");
    assert_int_equal(ll_pg_get_text(r, 0, 1, &s, &n), 0);
    assert_string_equal(s, "{\"b\": true}");
    assert_int_equal(n, strlen("{\"b\": true}"));
    assert_int_equal(ll_pg_get_bool(r, 0, 2, &eq), 0);
    assert_true(eq);
    ll_pg_result_free(r);

    /* bytea with zero bytes */
    static const uint8_t bin[] = {0, 1, 2, 0, 255, '\\', 'x'};
    p = ll_pg_param_bytea(bin, sizeof bin);
    r = tq(c, "SELECT $1 = '\\x00010200ff5c78'::bytea, $1, length($1)", 1, &p);
    assert_int_equal(ll_pg_get_bool(r, 0, 0, &eq), 0);
    assert_true(eq);
    const uint8_t *bp;
    assert_int_equal(ll_pg_get_bytea(r, 0, 1, &bp, &n), 0);
    assert_int_equal(n, sizeof bin);
    assert_memory_equal(bp, bin, sizeof bin);
    assert_int_equal(ll_pg_bytea(r, 0, 1, &bp, &n), 0); /* the old getter too */
    assert_memory_equal(bp, bin, sizeof bin);
    ll_pg_result_free(r);

    /* NULL */
    ll_pg_param np[2] = {ll_pg_param_null(), ll_pg_param_text(NULL, -1)};
    r = tq(c, "SELECT $1::int8, $2", 2, np);
    int64_t i8 = 7;
    assert_int_equal(ll_pg_get_int8(r, 0, 0, &i8), LL_ENOENT);
    assert_int_equal(ll_pg_get_text(r, 0, 1, &s, NULL), LL_ENOENT);
    assert_true(ll_pg_isnull(r, 0, 1));
    ll_pg_result_free(r);
    ll_pg_close(c);
    return 0;
}

static int t_times_uuid(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_result *r;
    int64_t t;
    int32_t d;
    /* 1969-07-20 20:17:40 UTC: before 1970 */
    int64_t moon = INT64_C(-14182940) * 1000000;
    r = same(c, "SELECT $1 = '1969-07-20 20:17:40+00'::timestamptz, $1",
             ll_pg_param_timestamptz(moon));
    assert_int_equal(ll_pg_get_timestamptz(r, 0, 1, &t), 0);
    assert_true(t == moon);
    assert_int_equal(ll_pg_get_timestamp(r, 0, 1, &t), LL_EINVAL); /* tz is not without tz */
    ll_pg_result_free(r);
    /* 2100-01-01 00:00:00.000001: after 2038, with microseconds */
    int64_t later = INT64_C(4102444800) * 1000000 + 1;
    r = same(c, "SELECT $1 = '2100-01-01 00:00:00.000001'::timestamp, $1",
             ll_pg_param_timestamp(later));
    assert_int_equal(ll_pg_get_timestamp(r, 0, 1, &t), 0);
    assert_true(t == later);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = 'infinity'::timestamptz, $1", ll_pg_param_timestamptz(LL_PG_INFINITY));
    assert_int_equal(ll_pg_get_timestamptz(r, 0, 1, &t), 0);
    assert_true(t == LL_PG_INFINITY);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = '-infinity'::timestamp, $1", ll_pg_param_timestamp(LL_PG_NINFINITY));
    assert_int_equal(ll_pg_get_timestamp(r, 0, 1, &t), 0);
    assert_true(t == LL_PG_NINFINITY);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = '1900-03-01'::date, $1", ll_pg_param_date(-25508));
    assert_int_equal(ll_pg_get_date(r, 0, 1, &d), 0);
    assert_int_equal(d, -25508);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = '2040-02-29'::date, $1", ll_pg_param_date(25626));
    assert_int_equal(ll_pg_get_date(r, 0, 1, &d), 0);
    assert_int_equal(d, 25626);
    ll_pg_result_free(r);
    r = same(c, "SELECT $1 = 'infinity'::date, $1", ll_pg_param_date(LL_PG_DATE_INFINITY));
    assert_int_equal(ll_pg_get_date(r, 0, 1, &d), 0);
    assert_int_equal(d, LL_PG_DATE_INFINITY);
    ll_pg_result_free(r);

    ll_pg_interval iv = {.usecs = -1500000, .days = 3, .months = 14};
    r = same(c, "SELECT $1 = '1 year 2 months 3 days -1.5 seconds'::interval, $1",
             ll_pg_param_interval(iv));
    ll_pg_interval back;
    assert_int_equal(ll_pg_get_interval(r, 0, 1, &back), 0);
    assert_true(back.usecs == iv.usecs && back.days == 3 && back.months == 14);
    ll_pg_result_free(r);

    static const uint8_t u[16] = {0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8,
                                  0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11};
    r = same(c, "SELECT $1 = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, $1", ll_pg_param_uuid(u));
    uint8_t ub[16];
    assert_int_equal(ll_pg_get_uuid(r, 0, 1, ub), 0);
    assert_memory_equal(ub, u, 16);
    ll_pg_result_free(r);
    ll_pg_close(c);
    return 0;
}

static int t_arrays(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_result *r;
    const int64_t *iv;
    const bool *nl;
    size_t n;

    int64_t ints[] = {INT64_MIN, 0, 42, INT64_MAX};
    bool nulls[] = {false, true, false, false};
    r = same(c, "SELECT $1 = ARRAY[-9223372036854775808, NULL, 42, 9223372036854775807]::int8[], $1",
             ll_pg_param_int8_array(ints, nulls, 4));
    assert_int_equal(ll_pg_get_int8_array(r, 0, 1, &iv, &nl, &n), 0);
    assert_int_equal(n, 4);
    assert_true(iv[0] == INT64_MIN && nl[1] && !nl[2] && iv[2] == 42 && iv[3] == INT64_MAX);
    ll_pg_result_free(r);

    r = same(c, "SELECT $1 = '{}'::int4[], $1, cardinality($1)", ll_pg_param_int4_array(NULL, NULL, 0));
    assert_int_equal(ll_pg_get_int8_array(r, 0, 1, &iv, &nl, &n), 0);
    assert_int_equal(n, 0);
    ll_pg_result_free(r);

    double ds[] = {1.5, NAN, -INFINITY};
    r = same(c, "SELECT $1::text = '{1.5,NaN,-Infinity}', $1", ll_pg_param_float8_array(ds, NULL, 3));
    const double *dv;
    assert_int_equal(ll_pg_get_float8_array(r, 0, 1, &dv, &nl, &n), 0);
    assert_int_equal(n, 3);
    assert_true(dv[0] == 1.5 && isnan(dv[1]) && isinf(dv[2]));
    ll_pg_result_free(r);

    /* hostile strings: quotes, commas, braces, backslashes, the word NULL, a real NULL */
    const char *hostile[] = {"a,b", "\"q\"", "{x}", "back\\slash", "NULL", NULL, "", " sp "};
    r = same(c,
             "SELECT $1 = ARRAY['a,b', '\"q\"', '{x}', 'back\\slash', 'NULL', NULL, '', ' sp '], $1, "
             "array_length($1, 1)",
             ll_pg_param_text_array(hostile, 8));
    const char *const *sv;
    assert_int_equal(ll_pg_get_text_array(r, 0, 1, &sv, &n), 0);
    assert_int_equal(n, 8);
    for (size_t i = 0; i < 8; i++) {
        if (!hostile[i]) assert_null(sv[i]);
        else assert_string_equal(sv[i], hostile[i]);
    }
    int32_t len = 0;
    assert_int_equal(ll_pg_get_int4(r, 0, 2, &len), 0);
    assert_int_equal(len, 8);
    ll_pg_result_free(r);

    /* text arrays the server made, read back element by element */
    r = tq(c, "SELECT ARRAY[NULL, 'x\"y', 'c,d']::text[], '{}'::text[]", 0, NULL);
    assert_int_equal(ll_pg_get_text_array(r, 0, 0, &sv, &n), 0);
    assert_int_equal(n, 3);
    assert_null(sv[0]);
    assert_string_equal(sv[1], "x\"y");
    assert_string_equal(sv[2], "c,d");
    assert_int_equal(ll_pg_get_text_array(r, 0, 1, &sv, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ll_pg_get_int8_array(r, 0, 0, &iv, &nl, &n), LL_EINVAL); /* wrong type */
    ll_pg_result_free(r);

    bool bs[] = {true, false};
    int16_t i2s[] = {-1, 2};
    float f4s[] = {0.5f};
    int64_t tss[] = {0};
    static const uint8_t us[1][16] = {{1}};
    ll_pg_param ap[5] = {ll_pg_param_bool_array(bs, NULL, 2), ll_pg_param_int2_array(i2s, NULL, 2),
                         ll_pg_param_float4_array(f4s, NULL, 1),
                         ll_pg_param_timestamptz_array(tss, NULL, 1),
                         ll_pg_param_uuid_array(us, NULL, 1)};
    r = tq(c,
           "SELECT $1 = '{t,f}'::bool[] AND $2 = '{-1,2}'::int2[] AND $3 = '{0.5}'::float4[] AND "
           "$4 = ARRAY['1970-01-01 00:00:00+00'::timestamptz] AND "
           "$5 = '{01000000-0000-0000-0000-000000000000}'::uuid[]",
           5, ap);
    bool eq = false;
    assert_int_equal(ll_pg_get_bool(r, 0, 0, &eq), 0);
    assert_true(eq);
    ll_pg_result_free(r);
    ll_pg_close(c);
    return 0;
}

static int t_refused(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    /* a zero byte inside a text's length: refused before anything is sent */
    ll_pg_param p[2] = {ll_pg_param_int8(1), ll_pg_param_text("ab\0cd", 5)};
    ll_future *f = ll_pg_query_typed(c, "SELECT $1, $2", 2, p, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "$2"));
    assert_non_null(strstr(ll_future_errmsg(f), "zero byte"));
    ll_future_free(f);
    /* invalid UTF-8: the server refuses it (22021), the connection stays usable */
    p[1] = ll_pg_param_text("bad \xc3\x28 utf8", -1);
    f = ll_pg_query_typed(c, "SELECT $1, $2", 2, p, NULL);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f), "22021");
    ll_future_free(f);
    p[0] = ll_pg_param_text("\xff", 1);
    f = ll_pg_query_typed(c, "SELECT $1", 1, p, NULL);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    ll_future_free(f);
    /* a timestamp that cannot be moved to PostgreSQL's epoch */
    p[0] = ll_pg_param_timestamptz(INT64_MIN + 1);
    f = ll_pg_query_typed(c, "SELECT $1", 1, p, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    /* a parameter not made by a constructor (a zeroed struct) */
    ll_pg_param zero;
    memset(&zero, 0, sizeof zero);
    f = ll_pg_query_typed(c, "SELECT $1", 1, &zero, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "constructor"));
    ll_future_free(f);
    /* bad arguments */
    f = ll_pg_query_typed(c, "SELECT $1", 1, NULL, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    f = ll_pg_query_typed(NULL, "SELECT 1", 0, NULL, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "conn is NULL"));
    ll_future_free(f);
    assert_int_equal(pgt_int(c, "SELECT 5"), 5);

    /* getters check the type: never a reinterpretation */
    ll_pg_result *r = tq(c, "SELECT 1::int4, 'x'::text, now(), 1.5::float8, 70000::int4", 0, NULL);
    int64_t t;
    double d;
    bool b;
    const char *s;
    int16_t i2;
    assert_int_equal(ll_pg_get_timestamptz(r, 0, 0, &t), LL_EINVAL);
    assert_int_equal(ll_pg_get_float8(r, 0, 0, &d), LL_EINVAL);
    assert_int_equal(ll_pg_get_int8(r, 0, 1, &t), LL_EINVAL);
    assert_int_equal(ll_pg_get_text(r, 0, 0, &s, NULL), LL_EINVAL);
    assert_int_equal(ll_pg_get_bool(r, 0, 3, &b), LL_EINVAL);
    assert_int_equal(ll_pg_get_int8(r, 0, 2, &t), LL_EINVAL);
    assert_int_equal(ll_pg_get_timestamptz(r, 0, 2, &t), 0);
    assert_int_equal(ll_pg_get_int2(r, 0, 4, &i2), LL_ERANGE);
    assert_int_equal(ll_pg_get_int8(r, 1, 0, &t), LL_ERANGE);
    assert_int_equal(ll_pg_get_int8(r, 0, 9, &t), LL_ERANGE);
    assert_true(ll_pg_result_binary(r, 0));
    ll_pg_result_free(r);
    ll_pg_close(c);
    return 0;
}

static int t_text_results(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TYPE mood AS ENUM ('sad', 'ok')");
    pgt_ok(c, "CREATE TYPE pair AS (a int, b text)");
    ll_pg_query_opts o = {.text_results = true};
    ll_pg_param p = ll_pg_param_int8(41);
    ll_future *f = ll_pg_query_typed(
        c, "SELECT $1 + 1, 'ok'::mood, ROW(1, 'x,\"y')::pair, ARRAY['a', NULL]::text[], 2.5::float8", 1,
        &p, &o);
    assert_int_equal(ll_await(f), 0);
    ll_pg_result *r = ll_pg_result_of(f);
    assert_false(ll_pg_result_binary(r, 0));
    int64_t v;
    assert_int_equal(ll_pg_get_int8(r, 0, 0, &v), 0);
    assert_int_equal(v, 42);
    const char *s;
    assert_int_equal(ll_pg_get_text(r, 0, 1, &s, NULL), 0);
    assert_string_equal(s, "ok");
    assert_int_equal(ll_pg_get_text(r, 0, 2, &s, NULL), 0);
    assert_string_equal(s, "(1,\"x,\"\"y\")");
    assert_string_equal(ll_pg_text(r, 0, 3), "{a,NULL}");
    const char *const *sv;
    size_t n;
    assert_int_equal(ll_pg_get_text_array(r, 0, 3, &sv, &n), 0); /* parsed from the text form */
    assert_int_equal(n, 2);
    assert_string_equal(sv[0], "a");
    assert_null(sv[1]);
    double d;
    assert_int_equal(ll_pg_get_float8(r, 0, 4, &d), 0);
    assert_true(d == 2.5);
    ll_future_free(f);

    /* hostile strings through the text form of an array: quotes, commas, braces, backslashes,
     * "NULL" the string and NULL the value, spaces; each element comes back whole */
    const char *hostile[] = {"a,b", "\"q\"", "{x}", "back\\slash", "NULL", NULL, "", " sp ", "}"};
    ll_pg_param hp = ll_pg_param_text_array(hostile, 9);
    f = ll_pg_query_typed(c, "SELECT $1, '{}'::text[], '{{a},{b}}'::text[]", 1, &hp, &o);
    assert_int_equal(ll_await(f), 0);
    r = ll_pg_result_of(f);
    assert_int_equal(ll_pg_get_text_array(r, 0, 0, &sv, &n), 0);
    assert_int_equal(n, 9);
    for (size_t i = 0; i < 9; i++) {
        if (!hostile[i]) assert_null(sv[i]);
        else assert_string_equal(sv[i], hostile[i]);
    }
    assert_int_equal(ll_pg_get_text_array(r, 0, 1, &sv, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ll_pg_get_text_array(r, 0, 2, &sv, &n), LL_EINVAL); /* 2-D: refused */
    ll_future_free(f);

    /* enums and composites in a binary result: the enum is not a known text type; read as text */
    f = ll_pg_query_typed(c, "SELECT 'sad'::mood", 0, NULL, NULL);
    assert_int_equal(ll_await(f), 0);
    assert_int_equal(ll_pg_get_text(ll_pg_result_of(f), 0, 0, &s, NULL), LL_EINVAL);
    ll_future_free(f);
    f = ll_pg_query_typed(c, "SELECT 'sad'::mood::text", 0, NULL, NULL);
    assert_int_equal(ll_await(f), 0);
    assert_int_equal(ll_pg_get_text(ll_pg_result_of(f), 0, 0, &s, NULL), 0);
    assert_string_equal(s, "sad");
    ll_future_free(f);
    ll_pg_close(c);
    return 0;
}

/* The statement cache keys on the types: the same SQL with int8 then text is two statements. */
static int t_cache_types(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    for (int i = 0; i < 3; i++) {
        ll_pg_param p = ll_pg_param_int8(7 + i);
        ll_pg_result *r = tq(c, "SELECT $1", 1, &p);
        int64_t v;
        assert_int_equal(ll_pg_get_int8(r, 0, 0, &v), 0);
        assert_int_equal(v, 7 + i);
        ll_pg_result_free(r);
        p = ll_pg_param_text("seven", -1);
        r = tq(c, "SELECT $1", 1, &p);
        const char *s;
        assert_int_equal(ll_pg_get_text(r, 0, 0, &s, NULL), 0);
        assert_string_equal(s, "seven");
        ll_pg_result_free(r);
        /* and the text API's statement of the same SQL is a third one */
        ll_future *f = ll_pg_query(c, "SELECT $1", 1, "plain");
        assert_int_equal(ll_await(f), 0);
        assert_string_equal(ll_pg_text(ll_pg_result_of(f), 0, 0), "plain");
        ll_future_free(f);
    }
    /* three of SELECT $1, and the count itself (prepared as it runs) */
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM pg_prepared_statements"), 4);
    /* pipelined: many typed queries at once, each its own result */
    ll_future *fs[50];
    for (int i = 0; i < 50; i++)
        fs[i] = ll_pg_query_typed(c, "SELECT $1 * 2", LL_PG_PARAMS(ll_pg_param_int8(i)), NULL);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(ll_await(fs[i]), 0);
        int64_t v;
        assert_int_equal(ll_pg_get_int8(ll_pg_result_of(fs[i]), 0, 0, &v), 0);
        assert_int_equal(v, 2 * i);
        ll_future_free(fs[i]);
    }
    ll_pg_close(c);
    return 0;
}

static int t_fetch_pool(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_future *f = ll_pg_fetchval(c, "SELECT $1::int8 + $2", LL_PG_PARAMS(ll_pg_param_int8(40),
                                                                          ll_pg_param_int8(2)));
    assert_int_equal(ll_await(f), 0);
    int64_t v;
    assert_int_equal(ll_pg_get_int8(ll_pg_result_of(f), 0, 0, &v), 0);
    assert_int_equal(v, 42);
    ll_future_free(f);
    f = ll_pg_fetchrow(c, "SELECT 1 WHERE false", 0, NULL);
    assert_int_equal(ll_await(f), LL_ENOENT);
    assert_non_null(strstr(ll_future_errmsg(f), "no rows"));
    ll_future_free(f);
    f = ll_pg_fetchrow(c, "SELECT 1/0", 0, NULL);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f), "22012");
    ll_future_free(f);
    ll_pg_close(c);

    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, NULL);
    assert_non_null(p);
    ll_pg_param tp = ll_pg_param_text("pooled", -1);
    f = ll_pg_pool_query_typed(p, "SELECT $1, length($1)", 1, &tp, NULL);
    assert_int_equal(ll_await(f), 0);
    const char *s;
    assert_int_equal(ll_pg_get_text(ll_pg_result_of(f), 0, 0, &s, NULL), 0);
    assert_string_equal(s, "pooled");
    ll_future_free(f);
    f = ll_pg_pool_fetchval(p, "SELECT $1 + 1", LL_PG_PARAMS(ll_pg_param_int4(9)));
    assert_int_equal(ll_await(f), 0);
    int32_t i4;
    assert_int_equal(ll_pg_get_int4(ll_pg_result_of(f), 0, 0, &i4), 0);
    assert_int_equal(i4, 10);
    ll_future_free(f);
    f = ll_pg_pool_fetchrow(p, "SELECT 1 WHERE $1", LL_PG_PARAMS(ll_pg_param_bool(false)));
    assert_int_equal(ll_await(f), LL_ENOENT);
    ll_future_free(f);
    ll_pg_param bad = ll_pg_param_text("a\0b", 3);
    f = ll_pg_pool_query_typed(p, "SELECT $1", 1, &bad, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    /* cancelled while queued behind the pool: nothing leaks */
    f = ll_pg_pool_fetchval(p, "SELECT pg_sleep(10)", 0, NULL);
    ll_future_cancel(f);
    assert_int_equal(ll_await(f), LL_ECANCELED);
    ll_future_free(f);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

#define RUN(name) PGT_TASK_TEST(name) /* pgtest.h */
RUN(ints_floats)
RUN(text_numeric)
RUN(times_uuid)
RUN(arrays)
RUN(refused)
RUN(text_results)
RUN(cache_types)
RUN(fetch_pool)

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_ints_floats), PGT_TEST(test_text_numeric), PGT_TEST(test_times_uuid),
        PGT_TEST(test_arrays),      PGT_TEST(test_refused),      PGT_TEST(test_text_results),
        PGT_TEST(test_cache_types), PGT_TEST(test_fetch_pool),
    };
    return PGT_RUN(tests);
}
