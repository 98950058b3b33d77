/*
 * result.c — the public per-recipient result (ll_smtp_result) and how a send's future settles.
 *
 * The result is one allocation holding the struct, the recipient array and every string, so it
 * can be the value of a resolved future and the detail of a failed one with the same destructor,
 * which is also its type tag (ll_future_value_as / ll_future_error_detail).
 */
#include <stdio.h>
#include <string.h>
#include "smtp_internal.h"

void ll__smtp_result_free(void *r) { ll_free(r); }

static ll_smtp_rcpt_status status_of(int code) {
    if (code / 100 == 2) return LL_SMTP_RCPT_ACCEPTED;
    if (code / 100 == 5) return LL_SMTP_RCPT_REJECTED;
    return LL_SMTP_RCPT_DEFERRED;
}

ll_smtp_result *ll__smtp_result_new(const ll__smtp_rcpt *r, size_t n, int code,
                                    const char *enhanced, const char *text, unsigned attempts) {
    enhanced = enhanced ? enhanced : "";
    text = text ? text : "";
    size_t strings = strlen(enhanced) + strlen(text) + 2;
    for (size_t i = 0; i < n; i++)
        strings += strlen(r[i].addr) + strlen(r[i].enhanced) + strlen(r[i].text ? r[i].text : "") + 3;
    size_t head = sizeof(ll_smtp_result) + n * sizeof(ll_smtp_rcpt_result);
    ll_smtp_result *res = ll_calloc(1, head + strings);
    if (!res) return NULL;
    ll_smtp_rcpt_result *rr = (ll_smtp_rcpt_result *)(res + 1);
    char *p = (char *)res + head;
#define PUT(dst, s)                         \
    do {                                    \
        size_t k_ = strlen(s) + 1;          \
        memcpy(p, (s), k_);                 \
        (dst) = p;                          \
        p += k_;                            \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        PUT(rr[i].address, r[i].addr);
        PUT(rr[i].enhanced, r[i].enhanced);
        PUT(rr[i].text, r[i].text ? r[i].text : "");
        rr[i].code = r[i].code;
        rr[i].status = status_of(r[i].code);
        if (rr[i].status == LL_SMTP_RCPT_ACCEPTED) res->accepted++;
        else if (rr[i].status == LL_SMTP_RCPT_REJECTED) res->rejected++;
        else res->deferred++;
    }
    PUT(res->enhanced, enhanced);
    PUT(res->text, text);
#undef PUT
    res->nrcpt = n;
    res->rcpt = rr;
    res->code = code;
    res->attempts = attempts;
    return res;
}

int ll__smtp_result_settle(ll_future *f, ll_smtp_result *res, const char *peer) {
    if (res->accepted == res->nrcpt && res->nrcpt > 0)
        return ll_future_resolve(f, res, ll__smtp_result_free);
    const ll_smtp_rcpt_result *first = NULL;
    for (size_t i = 0; i < res->nrcpt && !first; i++)
        if (res->rcpt[i].status != LL_SMTP_RCPT_ACCEPTED) first = &res->rcpt[i];
    char why[400] = "";
    if (first) {
        const char *t = first->text;
        size_t tl = strcspn(t, "\n");
        if (first->code)
            snprintf(why, sizeof why, "<%s> %s: %d%s%s %.*s", first->address,
                     first->status == LL_SMTP_RCPT_REJECTED ? "rejected" : "deferred", first->code,
                     first->enhanced[0] ? " " : "", first->enhanced, (int)tl, t);
        else
            snprintf(why, sizeof why, "<%s> deferred: %.*s", first->address, (int)tl, t);
    }
    int code = res->accepted ? LL_ESMTP_PARTIAL : LL_ESMTP_REPLY;
    int rc;
    if (res->accepted)
        rc = ll_future_fail_detail(f, code, res, ll__smtp_result_free,
                                   "smtp %s: %zu of %zu recipients accepted; %s", peer,
                                   res->accepted, res->nrcpt, why);
    else
        rc = ll_future_fail_detail(f, code, res, ll__smtp_result_free,
                                   "smtp %s: message not accepted for any recipient; %s", peer, why);
    if (rc) ll__smtp_result_free(res);
    return rc;
}

const ll_smtp_result *ll_smtp_result_of(ll_future *f) {
    if (!f) return NULL;
    ll_smtp_result *r = ll_future_value_as(f, ll__smtp_result_free);
    if (r) return r;
    if (ll_future_get_state(f) != LL_FUTURE_FAILED) return NULL;
    ll_value_free df = NULL;
    void *d = ll_future_error_detail(f, &df);
    return df == ll__smtp_result_free ? d : NULL;
}
