/*
 * error.c — PostgreSQL errors on failed futures: the message a person reads, and the fields a
 * program reads (SQLSTATE, detail, hint, ...).
 *
 * Design notes:
 * - A future carries a code and a message. To keep the server's structured fields too, the failed
 *   future keeps the error's PGresult as its detail (ll_future_fail_detail), freed with the
 *   future. The accessors recognise our objects by
 *   their destructor, so they return NULL for any other failed future (a task that propagated the
 *   error with ll_task_fail_from keeps only the message).
 */
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

static void error_free(void *p) {
    PQclear(p);
}

void ll__pg_fail_result(ll_future *f, ll_pg_conn *c, int code, PGresult *res) {
    if (!f || ll_future_get_state(f) != LL_FUTURE_PENDING) {
        PQclear(res);
        return;
    }
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!sev) sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
    char line[1024];
    if (!primary) primary = ll__pg_first_line(PQresultErrorMessage(res), line, sizeof line);
    if (!*primary && c && c->pg) primary = ll__pg_first_line(PQerrorMessage(c->pg), line, sizeof line);
    int rc = ll_future_fail_detail(f, code, res, error_free, "postgres %s: %s%s%s%s%s: %s%s%s%s%s%s%s", c && c->peer ? c->peer : "?",
                   code == LL_EPG_CONN ? "connection lost: " : "",
                   code == LL_EPG_UNKNOWN_OUTCOME ? "connection lost during COMMIT (outcome "
                                                    "unknown): "
                                                  : "",
                   sev ? sev : "ERROR", state ? " " : "", state ? state : "", primary,
                   detail ? " (DETAIL: " : "", detail ? detail : "", detail ? ")" : "",
                   hint ? " (HINT: " : "", hint ? hint : "", hint ? ")" : "");
    if (rc != 0) PQclear(res); /* already settled: nobody adopted the fields */
}

void ll__pg_fail_from(ll_future *dst, ll_future *src) {
    int code = ll_future_code(src);
    if (code == LL_ECANCELED) {
        ll_future_set_cancelled(dst);
        return;
    }
    ll_value_free kind;
    void *fields = ll_future_error_detail(src, &kind);
    if (fields && kind == error_free) { /* move the server's fields along */
        if (ll_future_fail_detail(dst, code, fields, error_free, "%s", ll_future_errmsg(src)) == 0)
            ll_future_take_error_detail(src);
        return;
    }
    ll_future_fail(dst, code, "%s", ll_future_errmsg(src));
}

static PGresult *err_res(ll_future *f) {
    if (!f || ll_future_get_state(f) != LL_FUTURE_FAILED) return NULL;
    ll_value_free kind;
    void *fields = ll_future_error_detail(f, &kind); /* counts as retrieving the error */
    return kind == error_free ? fields : NULL;
}

const char *ll_pg_error_field(ll_future *f, int code) {
    PGresult *res = err_res(f);
    return res ? PQresultErrorField(res, code) : NULL;
}

const char *ll_pg_error_sqlstate(ll_future *f) {
    return ll_pg_error_field(f, PG_DIAG_SQLSTATE);
}

const char *ll_pg_error_message(ll_future *f) {
    return ll_pg_error_field(f, PG_DIAG_MESSAGE_PRIMARY);
}

const char *ll_pg_error_detail(ll_future *f) {
    return ll_pg_error_field(f, PG_DIAG_MESSAGE_DETAIL);
}

const char *ll_pg_error_hint(ll_future *f) {
    return ll_pg_error_field(f, PG_DIAG_MESSAGE_HINT);
}

bool ll_pg_is_unique_violation(ll_future *f) {
    const char *s = ll_pg_error_sqlstate(f);
    return s && strcmp(s, "23505") == 0;
}

char *ll__pg_quote_ident(const char *name) {
    size_t n = 3;
    for (const char *p = name; *p; p++) n += *p == '"' ? 2 : 1;
    char *q = ll_malloc(n);
    if (!q) return NULL;
    char *o = q;
    *o++ = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"') *o++ = '"';
        *o++ = *p;
    }
    *o++ = '"';
    *o = 0;
    return q;
}
