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
 * - Errors that come without a PGresult keep their fields in a pg_errfields instead: a connect
 *   refused by the server (libpq only has the text; in verbose mode it carries the SQLSTATE:
 *   "FATAL:  3D000: database ... does not exist"), and the FATAL notice a server sends before it
 *   closes an idle connection (57P01 terminating connection). The accessors read both kinds.
 */
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

static void error_free(void *p) {
    PQclear(p);
}

/* ---- fields without a PGresult ---- */

#define NFIELDS 12
struct pg_errfields {
    char code[NFIELDS];
    char *val[NFIELDS];
};

static const char kept[NFIELDS] = {PG_DIAG_SEVERITY,        PG_DIAG_SEVERITY_NONLOCALIZED,
                                   PG_DIAG_SQLSTATE,        PG_DIAG_MESSAGE_PRIMARY,
                                   PG_DIAG_MESSAGE_DETAIL,  PG_DIAG_MESSAGE_HINT,
                                   PG_DIAG_CONTEXT,         PG_DIAG_SCHEMA_NAME,
                                   PG_DIAG_TABLE_NAME,      PG_DIAG_COLUMN_NAME,
                                   PG_DIAG_CONSTRAINT_NAME, PG_DIAG_SOURCE_FUNCTION};

void ll__pg_errfields_free(pg_errfields *e) {
    if (!e) return;
    for (int i = 0; i < NFIELDS; i++) ll_free(e->val[i]);
    ll_free(e);
}

static void errfields_free(void *p) {
    ll__pg_errfields_free(p);
}

static bool set_field(pg_errfields *e, char code, const char *v, size_t n) {
    for (int i = 0; i < NFIELDS; i++) {
        if (e->code[i] && e->code[i] != code) continue;
        char *copy = ll_malloc(n + 1);
        if (!copy) return false;
        memcpy(copy, v, n);
        copy[n] = 0;
        ll_free(e->val[i]);
        e->code[i] = code;
        e->val[i] = copy;
        return true;
    }
    return true; /* no room: not kept */
}

const char *ll__pg_errfields_get(const pg_errfields *e, int code) {
    if (!e) return NULL;
    for (int i = 0; i < NFIELDS; i++)
        if (e->code[i] == (char)code) return e->val[i];
    return NULL;
}

pg_errfields *ll__pg_errfields_from_result(const PGresult *res) {
    pg_errfields *e = ll_calloc(1, sizeof *e);
    if (!e) return NULL;
    for (int i = 0; i < NFIELDS; i++) {
        const char *v = PQresultErrorField(res, kept[i]);
        if (v && !set_field(e, kept[i], v, strlen(v))) {
            ll__pg_errfields_free(e);
            return NULL;
        }
    }
    return e;
}

pg_errfields *ll__pg_errfields_copy(const pg_errfields *src) {
    if (!src) return NULL;
    pg_errfields *e = ll_calloc(1, sizeof *e);
    if (!e) return NULL;
    for (int i = 0; i < NFIELDS; i++) {
        if (src->val[i] && !set_field(e, src->code[i], src->val[i], strlen(src->val[i]))) {
            ll__pg_errfields_free(e);
            return NULL;
        }
    }
    return e;
}

static bool is_sqlstate(const char *p) {
    for (int i = 0; i < 5; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'Z'))) return false;
    return p[5] == ':' && p[6] == ' ';
}

pg_errfields *ll__pg_errfields_parse(const char *text) {
    static const char *const sevs[] = {"FATAL:  ", "PANIC:  ", "ERROR:  "};
    const char *p = NULL;
    size_t si = 0;
    for (; si < 3 && !p; si++) {
        for (const char *q = text ? strstr(text, sevs[si]) : NULL; q; q = strstr(q + 1, sevs[si])) {
            if (is_sqlstate(q + 8)) {
                p = q;
                break;
            }
        }
        if (p) break;
    }
    if (!p) return NULL;
    pg_errfields *e = ll_calloc(1, sizeof *e);
    if (!e) return NULL;
    size_t sl = strlen(sevs[si]) - 3;
    const char *msg = p + 8 + 7;
    const char *eol = strchr(msg, '\n');
    bool ok = set_field(e, PG_DIAG_SEVERITY, p, sl) &&
              set_field(e, PG_DIAG_SEVERITY_NONLOCALIZED, p, sl) &&
              set_field(e, PG_DIAG_SQLSTATE, p + 8, 5) &&
              set_field(e, PG_DIAG_MESSAGE_PRIMARY, msg, eol ? (size_t)(eol - msg) : strlen(msg));
    static const struct { const char *tag; char code; } more[] = {
        {"\nDETAIL:  ", PG_DIAG_MESSAGE_DETAIL}, {"\nHINT:  ", PG_DIAG_MESSAGE_HINT}};
    for (size_t i = 0; ok && eol && i < 2; i++) {
        const char *t = strstr(eol, more[i].tag);
        if (!t) continue;
        t += strlen(more[i].tag);
        const char *te = strchr(t, '\n');
        ok = set_field(e, more[i].code, t, te ? (size_t)(te - t) : strlen(t));
    }
    if (!ok) {
        ll__pg_errfields_free(e);
        return NULL;
    }
    return e;
}

void ll__pg_fail_fields(ll_future *f, int code, pg_errfields *e, const char *msg) {
    if (!f || ll_future_fail_detail(f, code, e, errfields_free, "%s", msg) != 0)
        ll__pg_errfields_free(e);
}

void ll__pg_fail_conn(ll_future *f, ll_pg_conn *c, const char *why) {
    pg_errfields *e = ll__pg_errfields_copy(c->fatal);
    char *msg = ll_format("postgres %s: connection lost: %s", c->peer ? c->peer : "?", why);
    if (e && msg) {
        ll__pg_fail_fields(f, LL_EPG_CONN, e, msg);
    } else {
        ll__pg_errfields_free(e);
        ll_future_fail(f, LL_EPG_CONN, "postgres %s: connection lost: %s", c->peer ? c->peer : "?",
                       why);
    }
    ll_free(msg);
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
    if (fields && (kind == error_free || kind == errfields_free)) { /* move the fields along */
        if (ll_future_fail_detail(dst, code, fields, kind, "%s", ll_future_errmsg(src)) == 0)
            ll_future_take_error_detail(src);
        return;
    }
    ll_future_fail(dst, code, "%s", ll_future_errmsg(src));
}

const char *ll_pg_error_field(ll_future *f, int code) {
    if (!f || ll_future_get_state(f) != LL_FUTURE_FAILED) return NULL;
    ll_value_free kind;
    void *fields = ll_future_error_detail(f, &kind); /* counts as retrieving the error */
    if (!fields) return NULL;
    if (kind == error_free) return PQresultErrorField(fields, code);
    if (kind == errfields_free) return ll__pg_errfields_get(fields, code);
    return NULL;
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
