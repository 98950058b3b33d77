/*
 * test_pg_text_arrays.c — arrays of text with NULLs and hostile strings, enums and composites,
 * against a real PostgreSQL, in binary and in text results: no string ever splits an array
 * element or a composite field, the word NULL stays a string, a NULL stays NULL.
 */
#include "pgtest.h"

/* Every character array_out and record_out treat specially, alone and mixed; the word NULL in
 * several cases; empty, blank and long strings; UTF-8. */
static const char *const hostile[] = {
    "a,b", "\"", "\"q\"", "{", "}", "}{", "{x}", "{a,b}", "\\", "back\\slash", "\\\"", "x\"y\\z",
    "NULL", "null", "Null", "NULL ", "", " ", "  sp  ", "\t", "line\nbreak", ",", ",,", "a b",
    "(1,2)", "()", "'", "';--", "ünïcødé ✓", "NULL,NULL", "\"NULL\"", "{NULL}", NULL,
};
#define NH (sizeof hostile / sizeof *hostile)

/* The text array in column col of row 0 is want[0..n-1], NULLs included. */
static void check(ll_pg_result *r, int col, const char *const *want, size_t n) {
    const char *const *sv;
    size_t k;
    int rc = ll_pg_get_text_array(r, 0, col, &sv, &k);
    if (rc) fprintf(stderr, "column %d: %s\n", col, ll_pg_text(r, 0, col));
    assert_int_equal(rc, 0);
    assert_int_equal(k, n);
    for (size_t i = 0; i < n; i++) {
        if (!want[i]) {
            assert_null(sv[i]);
        } else {
            assert_non_null(sv[i]);
            assert_string_equal(sv[i], want[i]);
        }
    }
}

static int t_arrays(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE h (i int, s text, v varchar)");
    ll_pg_param rows[2 * NH];
    for (size_t i = 0; i < NH; i++) {
        rows[2 * i] = ll_pg_param_int4((int32_t)i);
        rows[2 * i + 1] = ll_pg_param_text(hostile[i], -1);
    }
    ll_pg_many_error e;
    assert_int_equal(ll_pg_executemany(c, "INSERT INTO h VALUES ($1, $2, $2)", 2, NH, rows, NULL,
                                       &e),
                     0);
    /* each string went in whole: one row per string, the same length */
    ll_pg_param hp = ll_pg_param_text_array(hostile, NH);
    for (int text = 0; text < 2; text++) {
        /* our array parameter, echoed; the server's own arrays (array_agg, varchar[]); the
         * parameter compared element by element on the server */
        ll_pg_result *r =
            pgt_typed(c,
               "SELECT $1, (SELECT array_agg(s ORDER BY i) FROM h), "
               "(SELECT array_agg(v ORDER BY i) FROM h), "
               "(SELECT bool_and(($1)[i + 1] IS NOT DISTINCT FROM s) FROM h), "
               "ARRAY[NULL, NULL]::text[], ARRAY['NULL', NULL]::text[], '{}'::text[]",
               1, &hp, text);
        check(r, 0, hostile, NH);
        check(r, 1, hostile, NH);
        check(r, 2, hostile, NH);
        bool same = false;
        assert_int_equal(ll_pg_get_bool(r, 0, 3, &same), 0);
        assert_true(same);
        static const char *const two_null[] = {NULL, NULL}, *const word_null[] = {"NULL", NULL};
        check(r, 4, two_null, 2);
        check(r, 5, word_null, 2);
        check(r, 6, NULL, 0);
        ll_pg_result_free(r);
    }
    ll_pg_close(c);
    return 0;
}

/* Enums and composites read as text (text results, or a ::text cast in binary results), their
 * arrays as text arrays, a hostile field never splitting the composite. */
static int t_enum_composite(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "DROP TYPE IF EXISTS ta_pair");
    pgt_ok(c, "DROP TYPE IF EXISTS ta_mood");
    pgt_ok(c, "CREATE TYPE ta_mood AS ENUM ('sad', 'ok', 'a,b \"c\"')");
    pgt_ok(c, "CREATE TYPE ta_pair AS (a int, b text, m ta_mood)");
    ll_pg_param b = ll_pg_param_text("x,\"y\" (z) \\ NULL", -1);
    static const char *const moods[] = {"sad", NULL, "a,b \"c\""};
    for (int text = 0; text < 2; text++) {
        ll_pg_result *r = pgt_typed(c,
                             "SELECT 'a,b \"c\"'::ta_mood::text, ROW(7, $1, 'ok')::ta_pair::text, "
                             "(ROW(7, $1, 'ok')::ta_pair).b, "
                             "ARRAY['sad', NULL, 'a,b \"c\"']::ta_mood[]::text[], "
                             "ARRAY[ROW(1, $1, NULL)::ta_pair]::text[]",
                             1, &b, text);
        const char *s;
        assert_int_equal(ll_pg_get_text(r, 0, 0, &s, NULL), 0);
        assert_string_equal(s, "a,b \"c\"");
        assert_int_equal(ll_pg_get_text(r, 0, 1, &s, NULL), 0);
        assert_string_equal(s, "(7,\"x,\"\"y\"\" (z) \\\\ NULL\",ok)"); /* record_out doubles " and \\ */
        assert_int_equal(ll_pg_get_text(r, 0, 2, &s, NULL), 0);
        assert_string_equal(s, "x,\"y\" (z) \\ NULL");
        check(r, 3, moods, 3);
        const char *const *sv;
        size_t k;
        assert_int_equal(ll_pg_get_text_array(r, 0, 4, &sv, &k), 0);
        assert_int_equal(k, 1);
        assert_string_equal(sv[0], "(1,\"x,\"\"y\"\" (z) \\\\ NULL\",)");
        ll_pg_result_free(r);
    }
    /* text results: the enum and the composite themselves, no cast */
    ll_pg_result *r = pgt_typed(c, "SELECT 'ok'::ta_mood, ROW(1, NULL, 'sad')::ta_pair", 0, NULL, true);
    const char *s;
    assert_int_equal(ll_pg_get_text(r, 0, 0, &s, NULL), 0);
    assert_string_equal(s, "ok");
    assert_int_equal(ll_pg_get_text(r, 0, 1, &s, NULL), 0);
    assert_string_equal(s, "(1,,sad)");
    ll_pg_result_free(r);
    /* a binary result: an enum's OID is not one the getters know; refused, never misread */
    r = pgt_typed(c, "SELECT 'ok'::ta_mood", 0, NULL, false);
    assert_int_equal(ll_pg_get_text(r, 0, 0, &s, NULL), LL_EINVAL);
    ll_pg_result_free(r);
    /* enum and composite parameters from text */
    ll_pg_param mp[] = {ll_pg_param_text("a,b \"c\"", -1), ll_pg_param_text("(3,\"q,\"\"r\",sad)", -1)};
    r = pgt_typed(c, "SELECT $1::text::ta_mood = 'a,b \"c\"', ($2::text::ta_pair).b", 2, mp, false);
    bool eq;
    assert_int_equal(ll_pg_get_bool(r, 0, 0, &eq), 0);
    assert_true(eq);
    assert_int_equal(ll_pg_get_text(r, 0, 1, &s, NULL), 0);
    assert_string_equal(s, "q,\"r");
    ll_pg_result_free(r);
    pgt_ok(c, "DROP TYPE ta_pair");
    pgt_ok(c, "DROP TYPE ta_mood");
    ll_pg_close(c);
    return 0;
}

PGT_TASK_TEST(arrays)
PGT_TASK_TEST(enum_composite)

int main(void) {
    const struct CMUnitTest tests[] = {PGT_TEST(test_arrays), PGT_TEST(test_enum_composite)};
    return PGT_RUN(tests);
}
