/*
 * error.c — PostgreSQL errors on failed futures: the message a person reads, and the fields a
 * program reads (SQLSTATE, detail, hint, ...).
 *
 * Design notes:
 * - A future carries a code and a message. To keep the server's structured fields too, the failed
 *   future keeps the error's PGresult as a detail object, freed with the future. libloop's future
 *   has no public way to attach one to a failure, so this file sets the future's value slot
 *   directly (internal.h) after failing it; a failed future never exposes its value through
 *   ll_future_value, and destroying the future frees it. The accessors recognise our objects by
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
    ll_future_fail(f, code, "postgres %s: %s%s%s%s%s: %s%s%s%s%s%s%s", c && c->peer ? c->peer : "?",
                   code == LL_EPG_CONN ? "connection lost: " : "",
                   code == LL_EPG_UNKNOWN_OUTCOME ? "connection lost during COMMIT (outcome "
                                                    "unknown): "
                                                  : "",
                   sev ? sev : "ERROR", state ? " " : "", state ? state : "", primary,
                   detail ? " (DETAIL: " : "", detail ? detail : "", detail ? ")" : "",
                   hint ? " (HINT: " : "", hint ? hint : "", hint ? ")" : "");
    /* keep the fields: see the design note */
    f->value = res;
    f->value_free = error_free;
}

void ll__pg_fail_from(ll_future *dst, ll_future *src) {
    int code = ll_future_code(src);
    if (code == LL_ECANCELED) {
        ll_future_set_cancelled(dst);
        return;
    }
    if (ll_future_fail(dst, code, "%s", ll_future_errmsg(src)) != 0) return;
    if (src && src->value_free == error_free && src->value) {
        /* move the server's fields along */
        dst->value = src->value;
        dst->value_free = error_free;
        src->value = NULL;
        src->value_free = NULL;
    }
}

static PGresult *err_res(ll_future *f) {
    if (!f || ll_future_get_state(f) != LL_FUTURE_FAILED) return NULL;
    (void)ll_future_code(f); /* reading the fields counts as retrieving the error */
    return f->value_free == error_free ? f->value : NULL;
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
    char *q = ll__malloc(n);
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
