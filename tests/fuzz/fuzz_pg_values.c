/*
 * fuzz_pg_values.c — the PostgreSQL text-value decoders: ll_pg_int64, ll_pg_double, ll_pg_bool,
 * ll_pg_bytea (hex and escape formats, with the per-result cache), ll_pg_text/len/isnull, on a
 * result built with libpq's own PQmakeEmptyPGresult/PQsetvalue (so no server is needed).
 *
 * Input: cells separated by 0xFF (at most 8, in 2 columns); a cell starting with 0xFE is NULL. A
 * PostgreSQL text value never holds a NUL, so a cell ends at its first NUL. Invariants: every
 * decoder either succeeds or returns LL_EINVAL/LL_ERANGE/LL_ENOENT (NULL), never reads past the
 * value; an int64 printed back equals the text without its sign, leading zeros and leading
 * blanks; a decoded bytea re-encoded in the same format decodes to the same bytes, a hex one has
 * half the digits; asking twice returns the cached bytes.
 */
#include <ctype.h>
#include <string.h>
#include "fuzz.h"
#include "pg_internal.h"

#define NCOLS 2
#define MAXCELLS 8

static void check_int(const char *s, int64_t v) {
    while (isspace((unsigned char)*s)) s++;
    bool neg = *s == '-';
    if (*s == '-' || *s == '+') s++;
    while (s[0] == '0' && s[1]) s++;
    char buf[32];
    snprintf(buf, sizeof buf, "%llu",
             neg ? 0ull - (unsigned long long)v : (unsigned long long)v);
    FUZZ_CHECK(strcmp(buf, s) == 0 || (v == 0 && strcmp(s, "0") == 0));
}

static void check_bytea(ll_pg_result *r, int row, int col, const char *s, size_t n) {
    const uint8_t *d;
    size_t len;
    int rc = ll_pg_bytea(r, row, col, &d, &len);
    FUZZ_CHECK(rc == 0 || rc == LL_EINVAL || rc == LL_ENOMEM);
    if (rc) return;
    bool hex = n >= 2 && s[0] == '\\' && s[1] == 'x';
    if (hex) {
        FUZZ_CHECK(len == (n - 2) / 2);
        for (size_t i = 0; i < len; i++) {
            char two[3];
            snprintf(two, sizeof two, "%02x", d[i]);
            FUZZ_CHECK(tolower((unsigned char)s[2 + 2 * i]) == two[0] &&
                       tolower((unsigned char)s[3 + 2 * i]) == two[1]);
        }
    } else {
        FUZZ_CHECK(len <= n);
        /* re-encode in the escape format and compare with a fresh decode of it */
        char *enc = malloc(4 * len + 1);
        size_t o = 0;
        for (size_t i = 0; i < len; i++) {
            if (d[i] == '\\') {
                enc[o++] = '\\';
                enc[o++] = '\\';
            } else if (d[i] < 0x20 || d[i] >= 0x7f) {
                o += (size_t)sprintf(enc + o, "\\%03o", d[i]);
            } else {
                enc[o++] = (char)d[i];
            }
        }
        enc[o] = 0;
        PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
        PGresAttDesc att = {.name = "b", .format = 0, .typid = 17, .typlen = -1, .atttypmod = -1};
        FUZZ_CHECK(res && PQsetResultAttrs(res, 1, &att) && PQsetvalue(res, 0, 0, enc, (int)o));
        ll_pg_result *r2 = ll__pg_result_new(res);
        FUZZ_CHECK(r2);
        const uint8_t *d2;
        size_t len2;
        FUZZ_CHECK(ll_pg_bytea(r2, 0, 0, &d2, &len2) == 0);
        FUZZ_CHECK(len2 == len && memcmp(d2, d, len) == 0);
        ll_pg_result_free(r2);
        free(enc);
    }
    const uint8_t *again;
    size_t len_again;
    FUZZ_CHECK(ll_pg_bytea(r, row, col, &again, &len_again) == 0);
    FUZZ_CHECK(again == d && len_again == len); /* cached */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *cells[MAXCELLS];
    size_t lens[MAXCELLS];
    bool nulls[MAXCELLS];
    int ncells = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && ncells < MAXCELLS; i++) {
        if (i < size && data[i] != 0xff) continue;
        const char *c = (const char *)data + start;
        size_t n = i - start;
        nulls[ncells] = n > 0 && (uint8_t)c[0] == 0xfe;
        const char *nul = memchr(c, 0, n);
        if (nul) n = (size_t)(nul - c);
        cells[ncells] = c;
        lens[ncells] = n;
        ncells++;
        start = i + 1;
    }
    int rows = (ncells + NCOLS - 1) / NCOLS;
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc att[NCOLS] = {
        {.name = "a", .format = 0, .typid = 25, .typlen = -1, .atttypmod = -1},
        {.name = "b", .format = 0, .typid = 17, .typlen = -1, .atttypmod = -1}};
    FUZZ_CHECK(res && PQsetResultAttrs(res, NCOLS, att));
    for (int i = 0; i < ncells; i++)
        FUZZ_CHECK(PQsetvalue(res, i / NCOLS, i % NCOLS, nulls[i] ? NULL : (char *)cells[i],
                              nulls[i] ? -1 : (int)lens[i]));
    ll_pg_result *r = ll__pg_result_new(res);
    FUZZ_CHECK(r);
    FUZZ_CHECK(ll_pg_result_rows(r) == rows && ll_pg_result_cols(r) == NCOLS);
    for (int i = 0; i < ncells; i++) {
        int row = i / NCOLS, col = i % NCOLS;
        if (nulls[i]) {
            FUZZ_CHECK(ll_pg_isnull(r, row, col));
            FUZZ_CHECK(ll_pg_int64(r, row, col, NULL) == LL_ENOENT);
            FUZZ_CHECK(ll_pg_bytea(r, row, col, NULL, NULL) == LL_ENOENT);
            continue;
        }
        const char *s = ll_pg_text(r, row, col);
        FUZZ_CHECK(s && ll_pg_len(r, row, col) == lens[i] && memcmp(s, cells[i], lens[i]) == 0);
        int64_t v;
        int rc = ll_pg_int64(r, row, col, &v);
        FUZZ_CHECK(rc == 0 || rc == LL_EINVAL || rc == LL_ERANGE);
        if (rc == 0) check_int(s, v);
        double d;
        rc = ll_pg_double(r, row, col, &d);
        FUZZ_CHECK(rc == 0 || rc == LL_EINVAL || rc == LL_ERANGE);
        bool b;
        rc = ll_pg_bool(r, row, col, &b);
        FUZZ_CHECK(rc == 0 || rc == LL_EINVAL);
        if (rc == 0) FUZZ_CHECK(s[0] && strchr("tf10", s[0]) && b == (s[0] == 't' || s[0] == '1'));
        check_bytea(r, row, col, s, lens[i]);
    }
    /* out of range cells */
    FUZZ_CHECK(ll_pg_int64(r, rows, 0, NULL) == LL_ERANGE);
    FUZZ_CHECK(ll_pg_bytea(r, 0, NCOLS, NULL, NULL) == LL_ERANGE);
    FUZZ_CHECK(ll_pg_text(r, -1, 0) == NULL);
    ll_pg_result_free(r);
    return 0;
}
