/*
 * libloop/tls.h — TLS for streams (OpenSSL underneath; this header never includes it).
 *
 * Safe by default: a client verifies the server's certificate chain against the system CA store
 * AND that the certificate names the host it connected to (DNS name or IP address), and sends SNI.
 * Turning verification off takes a field whose name says what it is.
 *
 * Handshake failures say why: LL_ECERT with the verifier's reason ("certificate has expired",
 * "self-signed certificate", "hostname mismatch", "unable to get local issuer certificate"),
 * LL_ETIMEDOUT when the handshake takes longer than handshake_timeout, LL_ETLS for protocol errors
 * (with OpenSSL's reason, e.g. "wrong version number"). A connection the peer closes without TLS
 * close_notify fails the read in progress (and every later one) with LL_ETRUNCATED, never a clean
 * LL_EOF, so a cut-off message is not mistaken for a complete one.
 *
 * Ownership: options are read during the call that takes them (strings are copied or used at
 * once); one SSL_CTX per distinct option set is cached per loop and freed with the loop.
 */
#ifndef LIBLOOP_TLS_H
#define LIBLOOP_TLS_H

#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

typedef struct ll_stream ll_stream;

typedef struct ll_tls_opts {
    /* Client: the name sent as SNI and verified against the certificate; NULL: the host given to
     * ll_stream_connect (an IP address is verified as an IP address and sent without SNI). */
    const char *server_name;
    /* PEM file / hashed directory of trusted CAs; both NULL: the system store. */
    const char *ca_file;
    const char *ca_path;
    /* PEM certificate (chain) and private key: the server's own, or a client certificate. */
    const char *cert_file;
    const char *key_file;
    /* ALPN protocols offered (client) or accepted in order of preference (server), comma separated:
     * "h2,http/1.1". NULL: no ALPN. */
    const char *alpn;
    /* Seconds for the whole handshake; 0: 10 s; negative: no limit of its own. The task's
     * deadline applies as well. */
    double handshake_timeout;
    /* Server: ask for a client certificate and verify it against ca_file/ca_path (mutual TLS). */
    bool require_client_cert;
    /* Client: accept ANY certificate for ANY name. Traffic can then be read and changed by anyone
     * on the path. For tests against throw-away certificates only. */
    bool insecure_skip_verify_DANGEROUS;
} ll_tls_opts;

/* Upgrade an open plain stream to TLS (STARTTLS): a client handshake for streams made by
 * ll_stream_connect/ll_stream_connect_unix/ll_stream_from_fd, a server handshake for streams accepted by an
 * ll_server (give cert_file and key_file). `opts->server_name` (or, when NULL, the host the stream
 * was opened with) is verified for a client.
 *
 * Everything the peer sent in plaintext that the stream has buffered and not yet delivered is
 * DISCARDED before the handshake starts: bytes injected after a server's go-ahead never reach the
 * caller as if they had come over TLS. Call it with no read or write in progress and nothing left
 * to send (after ll_stream_drain). The future resolves (value NULL) when the handshake is done; on
 * failure the stream is unusable: close it. NULL on out of memory. */
LL_EXPORT ll_future *ll_stream_starttls(ll_stream *s, const ll_tls_opts *opts);

/* True once the stream speaks TLS (handshake done). */
LL_EXPORT bool ll_stream_is_tls(const ll_stream *s);
/* The ALPN protocol the peers agreed on, or NULL. Valid while the stream is open. */
LL_EXPORT const char *ll_stream_alpn(const ll_stream *s);
/* The negotiated protocol version ("TLSv1.3"), or NULL for a plain stream. Static storage. */
LL_EXPORT const char *ll_stream_tls_version(const ll_stream *s);

LL_END_DECLS

#endif
