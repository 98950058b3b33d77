/*
 * response.c — the accessors of a response. A response is immutable once delivered, except for
 * the body of a streamed one (exchange.c reads it piece by piece).
 */
#include "http_internal.h"

int ll_http_response_status(const ll_http_response *r) { return r ? r->status : 0; }
const char *ll_http_response_reason(const ll_http_response *r) {
    return r && r->reason ? r->reason : "";
}
int ll_http_response_version(const ll_http_response *r) { return r ? r->version : 0; }
const ll_http_headers *ll_http_response_headers(const ll_http_response *r) {
    return r ? r->headers : NULL;
}
const char *ll_http_response_header(const ll_http_response *r, const char *name) {
    return r ? ll_http_headers_get(r->headers, name) : NULL;
}
const char *ll_http_response_body(const ll_http_response *r) {
    return r && r->body.data ? r->body.data : "";
}
size_t ll_http_response_body_len(const ll_http_response *r) {
    if (!r) return 0;
    return r->discard ? (size_t)r->body_size : r->body.len;
}
const char *ll_http_response_url(const ll_http_response *r) { return r && r->url ? r->url : ""; }
unsigned ll_http_response_redirects(const ll_http_response *r) { return r ? r->redirects : 0; }
void ll_http_response_timings(const ll_http_response *r, ll_http_timings *out) {
    if (!out) return;
    if (!r) {
        *out = (ll_http_timings){0};
        return;
    }
    *out = r->t;
}
const char *ll_http_response_errmsg(const ll_http_response *r) {
    return r && r->errmsg ? r->errmsg : "";
}

void ll_http_response_conn(const ll_http_response *r, ll_http_conn_info *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (r) *out = r->ci;
}

unsigned ll_http_response_attempts(const ll_http_response *r) { return r ? r->attempts : 0; }
