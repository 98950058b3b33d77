/*
 * parser.c — HTTP/1.1 responses on llhttp, with limits.
 *
 * llhttp does the grammar (status line, header syntax, Content-Length, chunked framing, what has a
 * body); this file adds what a client needs around it:
 * - Limits, enforced as bytes arrive so a hostile server cannot make us buffer without bound: the
 *   length of one header line (status line included), the number of headers, the bytes of the whole
 *   head (exact: before the head is complete, llhttp is never given more bytes than the remaining
 *   allowance, so when the allowance is spent the head is over it), the body size (a declared
 *   Content-Length or chunk size past the limit fails at once, before its bytes arrive).
 * - Interim responses (1xx other than 101) are parsed and skipped, up to max_interim of them (a
 *   server streaming "100 Continue" forever must not keep us reading); 101 is refused, since this
 *   client never asks to switch protocols.
 * - HEAD responses, 204 and 304 never have a body, whatever their headers say.
 * - Framing that is legal but suspect — Transfer-Encoding together with Content-Length (RFC 9112
 *   6.3: chunked wins, and the connection must be closed afterwards) — is read, and the connection
 *   is marked not reusable. llhttp rejects it unless told to be lenient about exactly that.
 * - A response stops the parser (llhttp pause at message completion): bytes after it do not belong
 *   to it, and since we never pipeline, they make the connection unusable (the adapter sees them
 *   as unconsumed input).
 * Body bytes go to a callback as llhttp produces them; the head is collected here (status, reason,
 * headers) and handed over at on_headers.
 */
#include <string.h>
#include <llhttp.h>
#include "http_internal.h"

struct ll__http_parser {
    llhttp_t llh;
    llhttp_settings_t settings;
    ll_http_limits lim;
    ll__http_parser_cb cb;
    void *arg;
    bool head;           /* answering a HEAD */
    bool started;        /* a byte of the response arrived */
    bool headers_done;   /* the final response's head is complete */
    bool done;           /* the final response is complete */
    bool failed;
    bool interim_now;    /* the message being parsed is a 1xx */
    bool suspect;        /* Transfer-Encoding and Content-Length */
    bool keep_alive;     /* llhttp's verdict at completion */
    unsigned interim;    /* 1xx responses skipped */
    int interim_status;  /* the last one's status */
    int status, version;
    ll__hbuf reason;
    ll_http_headers *headers;
    ll__hbuf field, value;
    size_t head_bytes;   /* bytes of the current head given to llhttp, the blank lines before
                          * it included: reset when a response starts and after each 1xx, never
                          * at llhttp's message begin (which comes mid-read, after blank lines
                          * that were counted already: fuzz_http_response) */
    size_t nheaders;
    uint64_t body;
    int err;
    char errmsg[LL__HTTP_ERRLEN];
};

#define P(llh) ((ll__http_parser *)(void *)(llh))

static int fail(ll__http_parser *p, int code, const char *fmt, ...) LL_PRINTF(3, 4);
static int fail(ll__http_parser *p, int code, const char *fmt, ...) {
    if (!p->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
        va_end(ap);
        p->err = code;
        p->failed = true;
    }
    return code;
}

static void clear_head(ll__http_parser *p) {
    p->reason.len = 0;
    if (p->reason.data) p->reason.data[0] = 0;
    if (p->headers) {
        p->headers->n = 0;
        p->headers->alen = 0;
    }
    p->field.len = p->value.len = 0;
    p->nheaders = 0;
    p->status = 0;
    p->interim_now = false;
}

/* ---- llhttp callbacks ---- */

static int on_message_begin(llhttp_t *llh) {
    ll__http_parser *p = P(llh);
    clear_head(p);
    return 0;
}

static int on_status(llhttp_t *llh, const char *at, size_t n) {
    ll__http_parser *p = P(llh);
    if (p->reason.len + n + 13 > p->lim.max_header_line) {
        fail(p, LL_ETOOLARGE, "status line longer than %zu bytes", p->lim.max_header_line);
        return HPE_USER;
    }
    if (ll__hbuf_append(&p->reason, at, n)) {
        fail(p, LL_ENOMEM, "out of memory reading the status line");
        return HPE_USER;
    }
    return 0;
}

static int line_too_long(ll__http_parser *p) {
    char e[48];
    fail(p, LL_ETOOLARGE, "header line longer than %zu bytes ('%s...')",
         p->lim.max_header_line, ll__http_esc(e, sizeof e, p->field.data, p->field.len));
    return HPE_USER;
}

/* A header line is collected in field + value; neither grows past the line limit. */
static int collect(ll__http_parser *p, ll__hbuf *b, const char *at, size_t n) {
    if (p->field.len + p->value.len + n + 2 > p->lim.max_header_line) return line_too_long(p);
    if (ll__hbuf_append(b, at, n)) {
        fail(p, LL_ENOMEM, "out of memory reading headers");
        return HPE_USER;
    }
    return 0;
}

static int on_header_field(llhttp_t *llh, const char *at, size_t n) {
    ll__http_parser *p = P(llh);
    return collect(p, &p->field, at, n);
}

static int on_header_value(llhttp_t *llh, const char *at, size_t n) {
    ll__http_parser *p = P(llh);
    return collect(p, &p->value, at, n);
}

static int on_header_value_complete(llhttp_t *llh) {
    ll__http_parser *p = P(llh);
    int rc = 0;
    if (++p->nheaders > p->lim.max_headers) {
        fail(p, LL_ETOOLARGE, "more than %zu header lines", p->lim.max_headers);
        return HPE_USER;
    }
    if (!p->headers_done) { /* trailers after a chunked body are checked, then dropped */
        if (!p->headers && !(p->headers = ll_http_headers_new())) rc = LL_ENOMEM;
        if (!rc)
            rc = ll_http_headers_addn(p->headers, p->field.data ? p->field.data : "", p->field.len,
                                      p->value.data ? p->value.data : "", p->value.len);
        if (rc == LL_EINVAL) {
            char e[48];
            fail(p, LL_EHTTP_PROTO, "malformed response: invalid header '%s'",
                 ll__http_esc(e, sizeof e, p->field.data, p->field.len));
            return HPE_USER;
        }
        if (rc) {
            fail(p, LL_ENOMEM, "out of memory reading headers");
            return HPE_USER;
        }
    }
    p->field.len = p->value.len = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *llh) {
    ll__http_parser *p = P(llh);
    p->status = llhttp_get_status_code(llh);
    int major = llhttp_get_http_major(llh), minor = llhttp_get_http_minor(llh);
    if (major != 1 || minor > 1) {
        fail(p, LL_EHTTP_PROTO, "unsupported HTTP version %d.%d in the response", major, minor);
        return -1;
    }
    p->version = major * 10 + minor;
    if (p->status == 101) {
        fail(p, LL_EHTTP_PROTO, "unexpected 101 Switching Protocols (no upgrade was asked for)");
        return -1;
    }
    if (p->status >= 100 && p->status < 200) {
        /* a server may send a few (100 Continue, 103 Early Hints), never an endless stream */
        if (p->interim >= p->lim.max_interim) {
            fail(p, LL_ETOOLARGE, "more than %u interim (1xx) responses", p->lim.max_interim);
            return -1;
        }
        p->interim_now = true;
        return 1; /* no body; the final response follows */
    }
    if (p->status < 100 || p->status > 999) {
        fail(p, LL_EHTTP_PROTO, "malformed response: status %d", p->status);
        return -1;
    }
    p->headers_done = true;
    uint16_t fl = llh->flags;
    bool nobody = p->head || p->status == 204 || p->status == 304;
    if ((fl & F_CHUNKED) && (fl & F_CONTENT_LENGTH)) p->suspect = true;
    if (!nobody && (fl & F_CONTENT_LENGTH) && !(fl & F_CHUNKED) &&
        llh->content_length > p->lim.max_body) {
        fail(p, LL_ETOOLARGE, "Content-Length %llu exceeds the body limit of %llu bytes",
             (unsigned long long)llh->content_length, (unsigned long long)p->lim.max_body);
        return -1;
    }
    if (!p->headers && !(p->headers = ll_http_headers_new())) {
        fail(p, LL_ENOMEM, "out of memory reading headers");
        return -1;
    }
    if (p->cb.on_headers) {
        char err[LL__HTTP_ERRLEN] = "";
        int rc = p->cb.on_headers(p->arg, p, err);
        if (rc) {
            fail(p, rc, "%s", err[0] ? err : ll_strerror(rc));
            return -1;
        }
    }
    return nobody ? 1 : 0;
}

static int on_chunk_header(llhttp_t *llh) {
    ll__http_parser *p = P(llh);
    if (llh->content_length > p->lim.max_body - p->body) {
        fail(p, LL_ETOOLARGE, "chunk of %llu bytes exceeds the body limit of %llu bytes",
             (unsigned long long)llh->content_length, (unsigned long long)p->lim.max_body);
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *llh, const char *at, size_t n) {
    ll__http_parser *p = P(llh);
    if (n > p->lim.max_body - p->body) {
        fail(p, LL_ETOOLARGE, "body exceeds the limit of %llu bytes",
             (unsigned long long)p->lim.max_body);
        return HPE_USER;
    }
    p->body += n;
    if (p->cb.on_body) {
        char err[LL__HTTP_ERRLEN] = "";
        int rc = p->cb.on_body(p->arg, at, n, err);
        if (rc) {
            fail(p, rc, "%s", err[0] ? err : ll_strerror(rc));
            return HPE_USER;
        }
    }
    return 0;
}

static int on_message_complete(llhttp_t *llh) {
    ll__http_parser *p = P(llh);
    if (p->interim_now) {
        p->interim++;
        p->interim_status = p->status;
        clear_head(p);
        p->head_bytes = 0;
        /* the final response follows on the same connection: pause so that feed() counts the
         * next head's bytes from here (fuzz_http_response found them counted from the start of
         * the read, so several 1xx heads in one read tripped max_header_bytes) */
        return HPE_PAUSED;
    }
    p->done = true;
    p->keep_alive = llhttp_should_keep_alive(llh) != 0;
    return HPE_PAUSED; /* bytes after the response are not ours */
}

/* ---- API ---- */

void ll__http_parser_rearm(ll__http_parser *p, const ll_http_limits *limits,
                           const ll__http_parser_cb *cb, void *arg) {
    memset(&p->lim, 0, sizeof p->lim);
    if (limits) p->lim = *limits;
    if (!p->lim.max_header_line) p->lim.max_header_line = LL__HTTP_MAX_HEADER_LINE;
    if (!p->lim.max_headers) p->lim.max_headers = LL__HTTP_MAX_HEADERS;
    if (!p->lim.max_header_bytes) p->lim.max_header_bytes = LL__HTTP_MAX_HEADER_BYTES;
    if (!p->lim.max_body) p->lim.max_body = LL__HTTP_MAX_BODY;
    if (!p->lim.max_interim) p->lim.max_interim = LL__HTTP_MAX_INTERIM;
    memset(&p->cb, 0, sizeof p->cb);
    if (cb) p->cb = *cb;
    p->arg = arg;
}

ll__http_parser *ll__http_parser_new(const ll_http_limits *limits, const ll__http_parser_cb *cb,
                                     void *arg) {
    ll__http_parser *p = ll_calloc(1, sizeof *p);
    if (!p) return NULL;
    ll__http_parser_rearm(p, limits, cb, arg);
    llhttp_settings_init(&p->settings);
    p->settings.on_message_begin = on_message_begin;
    p->settings.on_status = on_status;
    p->settings.on_header_field = on_header_field;
    p->settings.on_header_value = on_header_value;
    p->settings.on_header_value_complete = on_header_value_complete;
    p->settings.on_headers_complete = on_headers_complete;
    p->settings.on_chunk_header = on_chunk_header;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_message_complete;
    ll__http_parser_start(p, false);
    return p;
}

void ll__http_parser_free(ll__http_parser *p) {
    if (!p) return;
    ll_http_headers_free(p->headers);
    ll__hbuf_free(&p->reason);
    ll__hbuf_free(&p->field);
    ll__hbuf_free(&p->value);
    ll_free(p);
}

void ll__http_parser_start(ll__http_parser *p, bool head) {
    /* llhttp_t is first in the struct, so the callbacks find p from the llhttp_t pointer */
    llhttp_init(&p->llh, HTTP_RESPONSE, &p->settings);
    llhttp_set_lenient_chunked_length(&p->llh, 1); /* TE + CL: read it, then close (see top) */
    clear_head(p);
    p->head_bytes = 0;
    p->head = head;
    p->started = p->headers_done = p->done = p->failed = p->suspect = p->keep_alive = false;
    p->interim = 0;
    p->interim_status = 0;
    p->version = 0;
    p->body = 0;
    p->err = 0;
    p->errmsg[0] = 0;
}

int ll__http_parser_feed(ll__http_parser *p, const char *data, size_t len, size_t *used) {
    *used = 0;
    if (p->failed) return p->err;
    if (p->done) return 0;
    if (len) p->started = true;
    size_t off = 0;
    while (off < len && !p->done) {
        size_t n = len - off;
        bool in_head = !p->headers_done;
        if (in_head) {
            size_t room = p->lim.max_header_bytes - p->head_bytes;
            if (room == 0)
                return fail(p, LL_ETOOLARGE, "response head larger than %zu bytes",
                            p->lim.max_header_bytes);
            if (n > room) n = room;
        }
        llhttp_errno_t e = llhttp_execute(&p->llh, data + off, n);
        size_t took = n;
        if (e == HPE_PAUSED) {
            took = (size_t)(llhttp_get_error_pos(&p->llh) - (data + off));
            if (!p->done) { /* an interim response ended; its head was counted and cleared */
                llhttp_resume(&p->llh);
                off += took;
                continue;
            }
        } else if (e != HPE_OK) {
            if (!p->failed) {
                const char *why = llhttp_get_error_reason(&p->llh);
                int code = LL_EHTTP_PROTO;
                if (e == HPE_INVALID_CHUNK_SIZE)
                    fail(p, code, "malformed response: bad chunk size (%s)", why ? why : "");
                else
                    fail(p, code, "malformed response: %s (%s)", why ? why : "parse error",
                         llhttp_errno_name(e));
            }
            *used = off;
            return p->err;
        }
        if (in_head && !p->headers_done) p->head_bytes += took;
        off += took;
    }
    *used = off;
    return 0;
}

int ll__http_parser_eof(ll__http_parser *p) {
    if (p->done) return 0;
    if (p->failed) return p->err;
    if (!p->started)
        return fail(p, LL_EHTTP_STALE, "connection closed before any byte of the response");
    llhttp_errno_t e = llhttp_finish(&p->llh);
    if (p->done) return 0;
    if (p->failed) return p->err;
    (void)e;
    if (!p->headers_done)
        return fail(p, LL_ETRUNCATED, "connection closed in the middle of the response head");
    return fail(p, LL_ETRUNCATED, "connection closed before the end of the body (%llu bytes read)",
                (unsigned long long)p->body);
}

bool ll__http_parser_done(const ll__http_parser *p) { return p->done; }
bool ll__http_parser_headers_done(const ll__http_parser *p) { return p->headers_done; }
bool ll__http_parser_started(const ll__http_parser *p) { return p->started; }
bool ll__http_parser_reusable(const ll__http_parser *p) {
    return p->done && p->keep_alive && !p->suspect && !p->failed;
}
bool ll__http_parser_suspect(const ll__http_parser *p) { return p->suspect; }
int ll__http_parser_status(const ll__http_parser *p) { return p->status; }
int ll__http_parser_version(const ll__http_parser *p) { return p->version; }
const char *ll__http_parser_reason(const ll__http_parser *p) {
    return p->reason.data ? p->reason.data : "";
}
const ll_http_headers *ll__http_parser_headers(const ll__http_parser *p) { return p->headers; }

ll_http_headers *ll__http_parser_take_headers(ll__http_parser *p) {
    ll_http_headers *h = p->headers;
    p->headers = NULL;
    return h ? h : ll_http_headers_new();
}

char *ll__http_parser_take_reason(ll__http_parser *p) {
    if (!p->reason.data) return ll_strdup("");
    return ll__hbuf_steal(&p->reason, NULL);
}

uint64_t ll__http_parser_body_bytes(const ll__http_parser *p) { return p->body; }

uint64_t ll__http_parser_identity_left(const ll__http_parser *p) {
    /* while llhttp reads a Content-Length body, content_length counts the bytes still to come */
    if (!p->headers_done || p->done || p->failed || p->head) return 0;
    uint16_t fl = p->llh.flags;
    if (!(fl & F_CONTENT_LENGTH) || (fl & (F_CHUNKED | F_SKIPBODY))) return 0;
    return p->llh.content_length;
}
unsigned ll__http_parser_interim(const ll__http_parser *p) { return p->interim; }
int ll__http_parser_interim_status(const ll__http_parser *p) { return p->interim_status; }
const char *ll__http_parser_errmsg(const ll__http_parser *p) { return p->errmsg; }
