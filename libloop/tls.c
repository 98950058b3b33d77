/*
 * tls.c — TLS for streams with OpenSSL: contexts, handshakes, and the encrypted transport under a
 * stream's buffers.
 *
 * Design notes:
 * - OpenSSL reads the socket itself through a socket BIO (no extra copy on the hot read path), but
 *   writes into a memory BIO that we send with send(MSG_NOSIGNAL): OpenSSL's own socket writes use
 *   write(), which raises SIGPIPE on a closed connection.
 * - Safe defaults: a client context verifies the chain (system store unless ca_file/ca_path) and
 *   the connection checks the host name (SSL_set1_host) or IP address (set1_ip_asc) it dialled;
 *   SNI is sent for names. TLS 1.2 is the minimum; renegotiation is refused.
 * - One SSL_CTX per distinct option set, cached per loop (loop->tls) and freed with the loop:
 *   loading the system CA store costs milliseconds, a handshake should not pay it.
 * - Data that OpenSSL has already decrypted (SSL_pending) or read (SSL_has_pending) is never
 *   announced by the socket again; stream.c asks ll__tls_has_buffered() before waiting for it.
 * - EOF without close_notify is LL_ETRUNCATED: in OpenSSL 3 that is SSL_R_UNEXPECTED_EOF_WHILE_READING
 *   (or SSL_ERROR_SYSCALL with errno 0 on older versions).
 * - Handshake failures are explained: the verify result (X509_verify_cert_error_string) when the
 *   certificate was rejected, otherwise OpenSSL's reason, or "timed out after N s".
 * - OpenSSL's error queue is per thread and sticky: it is cleared before every call whose result we
 *   interpret.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "io_internal.h"

#define DEFAULT_HANDSHAKE_TIMEOUT 10.0

typedef struct ctxent {
    char *key;
    SSL_CTX *ctx;
    unsigned char *alpn;   /* wire format (length-prefixed), for the server's select callback */
    unsigned alpn_len;
    struct ctxent *next;
} ctxent;

struct ll__tls {
    ll_stream *s;
    SSL *ssl;
    BIO *wbio;             /* memory BIO: what OpenSSL wants sent */
    ll__buf out;           /* taken out of wbio, being sent */
    ll_future *hf;         /* the handshake, while it runs */
    ev_timer timer;
    double timeout;
    ll_time started;
    bool server, verify, established, sent_close_notify;
    char *name;            /* the name verified (client) */
    char alpn[64];
};

/* ---- options ---- */

static char *dup_or_null(const char *s, bool *fail) {
    if (!s) return NULL;
    char *d = ll__strdup(s);
    if (!d) *fail = true;
    return d;
}

ll_tls_opts *ll__tls_opts_dup(const ll_tls_opts *o) {
    ll_tls_opts *d = ll__calloc(1, sizeof *d);
    if (!d) return NULL;
    bool fail = false;
    *d = *o;
    d->server_name = dup_or_null(o->server_name, &fail);
    d->ca_file = dup_or_null(o->ca_file, &fail);
    d->ca_path = dup_or_null(o->ca_path, &fail);
    d->cert_file = dup_or_null(o->cert_file, &fail);
    d->key_file = dup_or_null(o->key_file, &fail);
    d->alpn = dup_or_null(o->alpn, &fail);
    if (fail) {
        ll__tls_opts_free(d);
        return NULL;
    }
    return d;
}

void ll__tls_opts_free(ll_tls_opts *o) {
    if (!o) return;
    ll__free((char *)o->server_name);
    ll__free((char *)o->ca_file);
    ll__free((char *)o->ca_path);
    ll__free((char *)o->cert_file);
    ll__free((char *)o->key_file);
    ll__free((char *)o->alpn);
    ll__free(o);
}

/* ---- contexts ---- */

static const char *ssl_reason(char *buf, size_t n) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r) snprintf(buf, n, "%s", r);
    else if (e) ERR_error_string_n(e, buf, n);
    else snprintf(buf, n, "unknown error");
    return buf;
}

/* "h2,http/1.1" -> "\x02h2\x08http/1.1" */
static unsigned char *alpn_wire(const char *list, unsigned *len) {
    size_t n = strlen(list);
    unsigned char *w = ll__malloc(n + 1);
    if (!w) return NULL;
    size_t o = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k > 0 && k < 256) {
            w[o++] = (unsigned char)k;
            memcpy(w + o, p, k);
            o += k;
        }
        p += k + (e ? 1 : 0);
    }
    *len = (unsigned)o;
    return w;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
    (void)ssl;
    ctxent *ce = arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ce->alpn, ce->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The cached context for these options, or NULL with *code and msg set. */
static SSL_CTX *get_ctx(ll_loop *loop, const ll_tls_opts *o, bool server, int *code, char *msg,
                        size_t msglen) {
    char *key = ll__format("%c|%s|%s|%s|%s|%s|%d|%d", server ? 's' : 'c',
                           o->ca_file ? o->ca_file : "", o->ca_path ? o->ca_path : "",
                           o->cert_file ? o->cert_file : "", o->key_file ? o->key_file : "",
                           o->alpn ? o->alpn : "", o->insecure_skip_verify_DANGEROUS,
                           o->require_client_cert);
    if (!key) {
        *code = LL_ENOMEM;
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    for (ctxent *e = loop->tls; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            ll__free(key);
            return e->ctx;
        }
    }
    ctxent *ce = ll__calloc(1, sizeof *ce);
    SSL_CTX *ctx = NULL;
    char why[256];
    *code = LL_ETLS;
    if (!ce) {
        *code = LL_ENOMEM;
        snprintf(msg, msglen, "out of memory");
        goto fail;
    }
    ERR_clear_error();
    ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        snprintf(msg, msglen, "cannot create a TLS context: %s", ssl_reason(why, sizeof why));
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    bool load_cas = !server ? !o->insecure_skip_verify_DANGEROUS : o->require_client_cert;
    if (load_cas) {
        int ok = (o->ca_file || o->ca_path)
                     ? SSL_CTX_load_verify_locations(ctx, o->ca_file, o->ca_path)
                     : SSL_CTX_set_default_verify_paths(ctx);
        if (!ok) {
            snprintf(msg, msglen, "cannot load CA certificates from %s: %s",
                     o->ca_file ? o->ca_file : o->ca_path ? o->ca_path : "the system store",
                     ssl_reason(why, sizeof why));
            goto fail;
        }
        SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                       : SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (server && (!o->cert_file || !o->key_file)) {
        *code = LL_EINVAL;
        snprintf(msg, msglen, "a TLS server needs cert_file and key_file");
        goto fail;
    }
    if (o->cert_file && SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
        snprintf(msg, msglen, "cannot load certificate %s: %s", o->cert_file,
                 ssl_reason(why, sizeof why));
        goto fail;
    }
    if (o->key_file && (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
                        SSL_CTX_check_private_key(ctx) != 1)) {
        snprintf(msg, msglen, "cannot load private key %s: %s", o->key_file,
                 ssl_reason(why, sizeof why));
        goto fail;
    }
    if (server) {
        static const unsigned char sid[] = "libloop";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    }
    if (o->alpn && *o->alpn) {
        ce->alpn = alpn_wire(o->alpn, &ce->alpn_len);
        if (!ce->alpn) {
            *code = LL_ENOMEM;
            snprintf(msg, msglen, "out of memory");
            goto fail;
        }
        if (server) SSL_CTX_set_alpn_select_cb(ctx, alpn_select, ce);
        else if (SSL_CTX_set_alpn_protos(ctx, ce->alpn, ce->alpn_len) != 0) {
            snprintf(msg, msglen, "bad ALPN list '%s'", o->alpn);
            goto fail;
        }
    }
    ce->key = key;
    ce->ctx = ctx;
    ce->next = loop->tls;
    loop->tls = ce;
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    if (ce) ll__free(ce->alpn);
    ll__free(ce);
    ll__free(key);
    return NULL;
}

void ll__tls_free(ll_loop *loop) {
    ctxent *e = loop->tls;
    while (e) {
        ctxent *next = e->next;
        SSL_CTX_free(e->ctx);
        ll__free(e->alpn);
        ll__free(e->key);
        ll__free(e);
        e = next;
    }
    loop->tls = NULL;
}

/* ---- the encrypted transport ---- */

size_t ll__tls_pending_out(const ll_stream *s) {
    const ll__tls *t = s->tls;
    return t->out.len + (t->wbio ? BIO_ctrl_pending(t->wbio) : 0);
}

bool ll__tls_has_buffered(const ll_stream *s) {
    const ll__tls *t = s->tls;
    return t && t->ssl && (SSL_pending(t->ssl) > 0 || SSL_has_pending(t->ssl));
}

bool ll__tls_handshaking(const ll_stream *s) {
    return s->tls && s->tls->hf;
}

int ll__tls_flush(ll_stream *s) {
    ll__tls *t = s->tls;
    for (;;) {
        if (t->out.len == 0) {
            size_t pend = BIO_ctrl_pending(t->wbio);
            if (pend == 0) return 0;
            if (t->out.cap < pend) {
                char *d = ll__realloc(t->out.data, pend);
                if (!d) return LL_ENOMEM;
                t->out.data = d;
                t->out.cap = pend;
            }
            int k = BIO_read(t->wbio, t->out.data, (int)(pend > INT_MAX ? INT_MAX : pend));
            if (k <= 0) return 0;
            t->out.off = 0;
            t->out.len = (size_t)k;
        }
        ssize_t r = ll__stream_raw_send(s, t->out.data + t->out.off, t->out.len);
        if (r == 0) return LL_EAGAIN;
        if (r < 0) return (int)r;
        t->out.off += (size_t)r;
        t->out.len -= (size_t)r;
    }
}

/* Classify a failed SSL_read/SSL_write/SSL_do_handshake; fills msg with the reason. */
static int io_error(ll__tls *t, int r, char *msg, size_t n) {
    int e = SSL_get_error(t->ssl, r);
    int err = errno;
    unsigned long q = ERR_peek_last_error();
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(msg, n, "end of stream");
        return LL_EOF;
    }
    if (e == SSL_ERROR_SSL && q && ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        snprintf(msg, n, "connection closed without TLS close_notify (stream truncated)");
        return LL_ETRUNCATED;
    }
    if (e == SSL_ERROR_SYSCALL && !q) {
        if (err && err != EAGAIN) {
            snprintf(msg, n, "%s", ll_strerror(ll_err_from_errno(err)));
            return ll_err_from_errno(err);
        }
        snprintf(msg, n, "connection closed without TLS close_notify (stream truncated)");
        return LL_ETRUNCATED;
    }
    char why[256];
    snprintf(msg, n, "%s", ssl_reason(why, sizeof why));
    return LL_ETLS;
}

ssize_t ll__tls_read(ll_stream *s, void *dst, size_t n) {
    ll__tls *t = s->tls;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(t->ssl, dst, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0) {
        if (BIO_ctrl_pending(t->wbio)) ll__tls_flush(s); /* e.g. a key update answer */
        return r;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (BIO_ctrl_pending(t->wbio)) ll__tls_flush(s);
        return 0;
    }
    char why[256];
    int code = io_error(t, r, why, sizeof why);
    ERR_clear_error();
    if (code == LL_ETLS && !s->rerr_msg) s->rerr_msg = ll__format("read from %s: %s", s->peer, why);
    return code;
}

ssize_t ll__tls_write(ll_stream *s, const void *src, size_t n) {
    ll__tls *t = s->tls;
    if (ll__tls_pending_out(s)) {
        int rc = ll__tls_flush(s);
        if (rc == LL_EAGAIN) return 0;
        if (rc < 0) return rc;
    }
    size_t k = n > 16384 ? 16384 : n;
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(t->ssl, src, (int)k);
    if (r <= 0) {
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
        char why[256];
        int code = io_error(t, r, why, sizeof why);
        ERR_clear_error();
        return code == LL_EOF || code == LL_ETRUNCATED ? LL_EPIPE : code;
    }
    int rc = ll__tls_flush(s);
    if (rc < 0 && rc != LL_EAGAIN) return rc;
    return r;
}

void ll__tls_close_notify(ll_stream *s) {
    ll__tls *t = s->tls;
    if (!t || !t->established || t->sent_close_notify) return;
    t->sent_close_notify = true;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

/* ---- handshakes ---- */

static void hs_end(ll__tls *t) {
    ll_stream *s = t->s;
    ev_timer_stop(s->loop->ev, &t->timer);
    s->hs_want_read = s->hs_want_write = false;
    ll_future_free(t->hf);
    t->hf = NULL;
}

static void hs_fail(ll__tls *t, int code, const char *fmt, ...) LL_PRINTF(3, 4);
static void hs_fail(ll__tls *t, int code, const char *fmt, ...) {
    ll_stream *s = t->s;
    va_list ap;
    va_start(ap, fmt);
    char *msg = ll__vformat(fmt, ap);
    va_end(ap);
    ll_future *f = t->hf;
    t->hf = NULL;
    ev_timer_stop(s->loop->ev, &t->timer);
    s->hs_want_read = s->hs_want_write = false;
    if (!s->rerr) s->rerr = code;
    if (!s->werr) s->werr = code;
    if (!s->rerr_msg && msg) s->rerr_msg = ll__strdup(msg);
    ll_future_fail(f, code, "%s", msg ? msg : ll_strerror(code));
    ll_future_free(f);
    ll__free(msg);
    ll__stream_update(s);
}

static void hs_step(ll__tls *t) {
    ll_stream *s = t->s;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    int saved_errno = errno;
    int fr = ll__tls_flush(s); /* send what the handshake produced */
    if (fr < 0 && fr != LL_EAGAIN) {
        hs_fail(t, fr, "TLS handshake with %s: %s", s->peer, ll_strerror(fr));
        return;
    }
    if (r == 1) {
        const unsigned char *p;
        unsigned len;
        SSL_get0_alpn_selected(t->ssl, &p, &len);
        if (p && len < sizeof t->alpn) {
            memcpy(t->alpn, p, len);
            t->alpn[len] = '\0';
        }
        t->established = true;
        s->timings.tls = ll_now() - t->started;
        ll_future *f = ll_future_ref(t->hf);
        hs_end(t);
        ll_future_resolve(f, NULL, NULL);
        ll_future_free(f);
        ll__stream_update(s); /* the last flight may still be waiting to be sent */
        return;
    }
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        s->hs_want_read = e == SSL_ERROR_WANT_READ;
        s->hs_want_write = fr == LL_EAGAIN || e == SSL_ERROR_WANT_WRITE;
        ll__stream_update(s);
        return;
    }
    long vr = SSL_get_verify_result(t->ssl);
    if (t->verify && vr != X509_V_OK) {
        const char *what = X509_verify_cert_error_string(vr);
        ERR_clear_error();
        if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
            hs_fail(t, LL_ECERT, "TLS handshake with %s: certificate verify failed: %s (the "
                                 "certificate is not valid for '%s')", s->peer, what, t->name);
        else
            hs_fail(t, LL_ECERT, "TLS handshake with %s: certificate verify failed: %s", s->peer,
                    what);
        return;
    }
    char why[256];
    errno = saved_errno;
    int code = io_error(t, r, why, sizeof why);
    ERR_clear_error();
    if (code == LL_EOF || code == LL_ETRUNCATED) {
        code = LL_ETLS;
        snprintf(why, sizeof why, "connection closed by the peer during the handshake");
    }
    hs_fail(t, code, "TLS handshake with %s: %s", s->peer, why);
}

void ll__tls_on_io(ll_stream *s) {
    hs_step(s->tls);
}

static void on_hs_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)revents;
    ll__tls *t = w->data;
    if (ll__timer_early(ev, w, t->started + t->timeout)) return; /* the absolute deadline */
    hs_fail(t, LL_ETIMEDOUT, "TLS handshake with %s: timed out after %g s", t->s->peer,
            t->timeout);
}

static void on_hs_cancel(ll_future *f, void *arg) {
    ll__tls *t = arg;
    ll_stream *s = t->s;
    hs_end(t);
    if (!s->rerr) s->rerr = LL_ECANCELED;
    if (!s->werr) s->werr = LL_ECANCELED;
    ll_future_set_cancelled(f);
    ll__stream_update(s);
}

static ll_future *hs_failed_now(ll_stream *s, int code, const char *msg) {
    return ll_future_failed(s->loop, code, "TLS handshake with %s: %s", s->peer, msg);
}

ll_future *ll__tls_handshake(ll_stream *s, const ll_tls_opts *o, bool server) {
    char msg[512];
    int code = 0;
    if (s->closed) return hs_failed_now(s, LL_ECLOSED, "stream is closed");
    if (s->tls) return hs_failed_now(s, LL_ESTATE, "the stream already speaks TLS");
    if (!s->is_socket) return hs_failed_now(s, LL_EINVAL, "TLS needs a socket");
    SSL_CTX *ctx = get_ctx(s->loop, o, server, &code, msg, sizeof msg);
    if (!ctx) return hs_failed_now(s, code, msg);
    const char *name = o->server_name ? o->server_name : s->host;
    bool verify = !server && !o->insecure_skip_verify_DANGEROUS;
    if (verify && (!name || !*name))
        return hs_failed_now(s, LL_EINVAL, "no host name to verify the certificate against (set "
                                           "server_name)");
    ll__tls *t = ll__calloc(1, sizeof *t);
    ll_future *f = ll_future_new(s->loop);
    if (!t || !f) {
        ll__free(t);
        if (f) ll_future_fail(f, LL_ENOMEM, "TLS handshake with %s: out of memory", s->peer);
        return f;
    }
    ll_future_set_label(f, "tls handshake");
    ERR_clear_error();
    t->s = s;
    t->server = server;
    t->verify = verify;
    t->ssl = SSL_new(ctx);
    BIO *rbio = BIO_new_socket(s->fd, BIO_NOCLOSE);
    t->wbio = BIO_new(BIO_s_mem());
    if (name) t->name = ll__strdup(name);
    if (!t->ssl || !rbio || !t->wbio || (name && !t->name)) {
        BIO_free(rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        ll__free(t->name);
        ll__free(t);
        ERR_clear_error();
        ll_future_fail(f, LL_ENOMEM, "TLS handshake with %s: out of memory", s->peer);
        return f;
    }
    SSL_set_bio(t->ssl, rbio, t->wbio);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (name) {
            ll_addr a;
            char ip[64];
            bool numeric = ll__addr_parse_numeric(name, &a);
            if (numeric) {
                /* an IP address: no SNI (RFC 6066), verify the iPAddress SAN */
                const char *p = name;
                size_t n = strlen(name);
                if (name[0] == '[' && n >= 2 && n - 2 < sizeof ip) {
                    memcpy(ip, name + 1, n - 2);
                    ip[n - 2] = '\0';
                    p = ip;
                }
                if (verify) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), p);
            } else {
                SSL_set_tlsext_host_name(t->ssl, name);
                if (verify) SSL_set1_host(t->ssl, name);
            }
        }
    }
    ERR_clear_error();
    t->hf = ll_future_ref(f);
    /* 0: the default; negative: no limit of its own (the task's deadline still applies) */
    t->timeout = o->handshake_timeout != 0 ? o->handshake_timeout : DEFAULT_HANDSHAKE_TIMEOUT;
    t->started = ll_now();
    ev_timer_init(&t->timer, on_hs_timeout, t->timeout, 0.);
    t->timer.data = t;
    if (t->timeout > 0) ll__timer_start_at(s->loop->ev, &t->timer, t->started + t->timeout);
    s->tls = t;
    ll_future_on_cancel(f, on_hs_cancel, t);
    hs_step(t); /* the client's hello goes out now */
    return f;
}

void ll__tls_stream_free(ll_stream *s) {
    ll__tls *t = s->tls;
    if (!t) return;
    if (t->hf) {
        ll_future *f = t->hf;
        t->hf = NULL;
        ev_timer_stop(s->loop->ev, &t->timer);
        ll_future_fail(f, LL_ECLOSED, "TLS handshake with %s: stream closed", s->peer);
        ll_future_free(f);
    }
    if (t->established && !s->werr && s->fd >= 0) {
        /* best effort: whatever fits in the socket now, close_notify included */
        ll__tls_close_notify(s);
        ll__tls_flush(s);
    }
    SSL_free(t->ssl); /* frees both BIOs */
    ERR_clear_error();
    ll__free(t->out.data);
    ll__free(t->name);
    ll__free(t);
    s->tls = NULL;
}

/* ---- public ---- */

ll_future *ll_stream_starttls(ll_stream *s, const ll_tls_opts *opts) {
    LL_REQUIRE_ARG(s, "stream");
    ll_tls_opts none = {0};
    if (!opts) opts = &none;
    if (s->closed) return hs_failed_now(s, LL_ECLOSED, "stream is closed");
    if (s->rop || s->wq_head || s->wbuf.len)
        return hs_failed_now(s, LL_ESTATE, "STARTTLS with a read or write in progress (drain "
                                           "first)");
    if (s->rerr || s->werr || s->eof)
        return hs_failed_now(s, s->rerr ? s->rerr : s->werr ? s->werr : LL_EOF,
                             "the stream failed or ended before STARTTLS");
    /* Bytes the peer sent in plaintext before the handshake must never be read as if they had
     * come over TLS (CVE-2011-0411 and its many successors): drop them. */
    s->rbuf.off = s->rbuf.len = 0;
    return ll__tls_handshake(s, opts, s->server_side);
}

bool ll_stream_is_tls(const ll_stream *s) {
    return s && s->tls && s->tls->established;
}

const char *ll_stream_alpn(const ll_stream *s) {
    return s && s->tls && s->tls->alpn[0] ? s->tls->alpn : NULL;
}

const char *ll_stream_tls_version(const ll_stream *s) {
    return s && s->tls && s->tls->established ? SSL_get_version(s->tls->ssl) : NULL;
}
