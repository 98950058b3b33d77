/*
 * libloop/smtp.h — sending mail over SMTP (libloop-smtp): one session (ll_smtp_conn) or a pool of
 * sessions per server with a concurrency limit and retries (ll_smtp_client).
 *
 * Security is one explicit setting (ll_smtp_security). The default is STARTTLS *required*: a server
 * that does not offer it fails the connection (LL_ESMTP_NOTLS), certificates and host names are
 * verified, and credentials never cross a plaintext link unless allow_plaintext_auth is set.
 * STARTTLS is never pipelined with anything; whatever the server sent after its go-ahead and before
 * the handshake is discarded; EHLO is sent again over TLS and the plaintext capabilities forgotten.
 *
 * A message's outcome is per recipient (ll_smtp_result): accepted, rejected (5xx, with the
 * server's code and text) or deferred (4xx still failing after the retries). The future of a send
 * RESOLVES only when the message was accepted for every recipient. Anything less — some recipient
 * rejected or deferred, the message refused, the connection lost — FAILS the future (LL_ESMTP_PARTIAL,
 * LL_ESMTP_REPLY, a stream error, LL_ETIMEDOUT); ll_smtp_result_of() gives the per-recipient results
 * of a resolved future and of a failed one that got as far as the envelope.
 *
 * CR, LF or NUL in an address, the EHLO name or a credential is refused before anything is sent
 * (LL_EINVAL). The message data may use any line ending: it is sent with CRLF only, dot-stuffed,
 * with exactly one terminator.
 *
 * Ownership: every call copies what it is given (addresses, message bytes, options strings) before
 * it returns; nothing the caller owns is touched after the call returns. A result belongs to its
 * future and is freed with it. ll_smtp_close()/ll_smtp_client_free() may be called while sends are
 * in flight: those fail with LL_ECLOSED.
 *
 * The MIME builder and the DKIM signer are in libloop/mime.h.
 */
#ifndef LIBLOOP_SMTP_H
#define LIBLOOP_SMTP_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/tls.h"

LL_BEGIN_DECLS

typedef enum {
    LL_SMTP_SECURITY_DEFAULT = 0,    /* from the URL: smtps:// implicit TLS, else STARTTLS required */
    LL_SMTP_STARTTLS_REQUIRED,       /* upgrade with STARTTLS or fail (LL_ESMTP_NOTLS) */
    LL_SMTP_STARTTLS_OPPORTUNISTIC,  /* upgrade when offered, else go on in plaintext */
    LL_SMTP_IMPLICIT_TLS,            /* TLS from the first byte (port 465) */
    LL_SMTP_PLAIN                    /* never TLS */
} ll_smtp_security;

typedef struct ll_smtp_opts {
    ll_loop *loop;                /* NULL: the current loop */
    ll_smtp_security security;    /* see above; the URL's ?security= when this is DEFAULT */
    const ll_tls_opts *tls;       /* CA file, server name, ...; NULL: system CAs, verify the host */
    const char *helo_name;        /* the name sent with EHLO/HELO; NULL: "localhost" */
    /* Credentials (NULL: from the URL's user:password@, else no AUTH). oauth_token: XOAUTH2. */
    const char *username, *password, *oauth_token;
    /* "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"; NULL: XOAUTH2 with a token, else the first of PLAIN,
     * LOGIN, CRAM-MD5 the server offers. */
    const char *auth_mechanism;
    bool allow_plaintext_auth;    /* allow AUTH without TLS (tests, trusted local relays only) */
    /* Phase timeouts in seconds (0: the default in brackets; negative: no limit of its own). */
    double connect_timeout;       /* TCP connect and TLS handshake [30] */
    double greeting_timeout;      /* the server's 220 [300, RFC 5321 4.5.3.2] */
    double command_timeout;       /* each reply to EHLO, STARTTLS, AUTH, MAIL, RCPT, RSET, DATA [300] */
    double data_timeout;          /* writing the message bytes [600] */
    double final_timeout;         /* the reply after the terminating dot [600] */
    double message_timeout;       /* one whole send, retries included [no limit] */
    /* Reply limits: longest reply line, most lines per reply (0: 2048 bytes, 100 lines). */
    size_t max_reply_line;
    size_t max_reply_lines;
    /* ll_smtp_client only. */
    unsigned max_sessions;        /* sessions to the server at once [4] */
    unsigned max_messages_per_session; /* then QUIT and open a new session [100] */
    int retries;                  /* extra attempts for 4xx / 421 / lost connections [3];
                                   * negative: none (one attempt) */
    double retry_backoff;         /* first pause in seconds, doubled each time [1] */
    double noop_after;            /* NOOP a session idle this long before reusing it [5] */
} ll_smtp_opts;

/* What happened to one recipient. */
typedef enum {
    LL_SMTP_RCPT_ACCEPTED = 0,
    LL_SMTP_RCPT_REJECTED,  /* a permanent (5xx) answer: do not retry */
    LL_SMTP_RCPT_DEFERRED   /* a transient (4xx) answer or no answer at all, retries exhausted */
} ll_smtp_rcpt_status;

typedef struct ll_smtp_rcpt_result {
    const char *address;
    ll_smtp_rcpt_status status;
    int code;               /* the server's reply code (250, 550, 451...); 0 when none came */
    const char *enhanced;   /* RFC 3463 status ("5.1.1"), "" when the server sent none */
    const char *text;       /* the server's text (lines joined with '\n'), or why there was none */
} ll_smtp_rcpt_result;

typedef struct ll_smtp_result {
    size_t nrcpt;
    const ll_smtp_rcpt_result *rcpt; /* in the order given */
    size_t accepted, rejected, deferred;
    int code;               /* the reply to the message data (250), or the reply that ended it */
    const char *enhanced;
    const char *text;       /* "2.0.0 Ok: queued as 4F1C2" text, without the code */
    unsigned attempts;      /* transactions tried (1 without retries) */
} ll_smtp_result;

/* The per-recipient results of a send's future: resolved, or failed after the envelope started;
 * NULL otherwise (pending, failed before any recipient was tried, not an SMTP send). Valid until
 * the future is freed. */
LL_EXPORT const ll_smtp_result *ll_smtp_result_of(ll_future *f);

/* One message to send. `data` is the RFC 5322 message (headers, blank line, body), any line
 * endings. Non-ASCII bytes in the data ask for BODY=8BITMIME, non-ASCII addresses for SMTPUTF8,
 * when the server offers them (otherwise the send fails with LL_ESMTP_PROTO before MAIL). `from`
 * may be "" (the null reverse-path, for bounces). */
typedef struct ll_smtp_mail {
    const char *from;
    const char *const *rcpt;
    size_t nrcpt;
    const void *data;
    size_t len;
} ll_smtp_mail;

/* ---- one session ---- */

typedef struct ll_smtp_conn ll_smtp_conn;

/* Connect to `url` ("smtp://[user:password@]host[:port]" [25], "smtps://host[:port]" [465];
 * "?security=plain|starttls|opportunistic|tls" overrides the default) and run the greeting, EHLO
 * (HELO when EHLO is refused), STARTTLS and AUTH. The value is the ll_smtp_conn *: take it with
 * ll_future_take() and close it with ll_smtp_close(). Errors: the stream's (connect), LL_ECERT /
 * LL_ETLS, LL_ESMTP_NOTLS, LL_ESMTP_AUTH, LL_ESMTP_INSECURE, LL_ESMTP_REPLY (greeting or EHLO
 * refused: the server's text), LL_ESMTP_PROTO (malformed reply), LL_ETIMEDOUT (naming the phase).
 * NULL on out of memory. */
LL_EXPORT ll_future *ll_smtp_connect(const char *url, const ll_smtp_opts *opts);

/* Send one message on the session (one send at a time: LL_EBUSY otherwise). The value is an
 * ll_smtp_result (ll_smtp_result_of). No retries here: deferred recipients stay deferred. On a
 * failure that leaves the session in an unknown state the session is closed for further use
 * (LL_ECLOSED on the next send). NULL on out of memory. */
LL_EXPORT ll_future *ll_smtp_conn_send(ll_smtp_conn *c, const ll_smtp_mail *mail);

/* Round trip a NOOP (value NULL). */
LL_EXPORT ll_future *ll_smtp_conn_noop(ll_smtp_conn *c);

/* What the server offered in its last EHLO (after STARTTLS: the TLS one). */
LL_EXPORT bool ll_smtp_conn_has(const ll_smtp_conn *c, const char *extension);
/* True once the session is TLS. */
LL_EXPORT bool ll_smtp_conn_is_tls(const ll_smtp_conn *c);

/* Send QUIT (bounded by a short timeout) and close. Pending sends fail with LL_ECLOSED. NULL:
 * no-op. The future resolves when the session is gone (value NULL); it may be ignored (freed at
 * once). */
LL_EXPORT ll_future *ll_smtp_close(ll_smtp_conn *c);

/* ---- many messages: a pool of sessions ---- */

typedef struct ll_smtp_client ll_smtp_client;

/* A client for `url` (see ll_smtp_connect). No connection is made until the first send. NULL on
 * out of memory or a bad URL / option (then *err, when not NULL, receives a message to free with
 * ll_free). */
LL_EXPORT ll_smtp_client *ll_smtp_client_new(const char *url, const ll_smtp_opts *opts, char **err);

/* Send through a pooled session (at most max_sessions at once; more sends wait their turn). A
 * transient failure (4xx for the message, 421 or a lost connection) is retried with backoff on a
 * session that works, for the recipients not yet settled; a recipient's 5xx is final. The future
 * resolves only when every recipient accepted the message (see the top of this file). NULL on out
 * of memory. */
LL_EXPORT ll_future *ll_smtp_send(ll_smtp_client *c, const ll_smtp_mail *mail);

typedef struct ll_smtp_client_stats {
    uint64_t sent;          /* messages accepted for every recipient */
    uint64_t failed;        /* sends that failed (partially or wholly) */
    uint64_t retries;       /* extra transactions */
    uint64_t sessions;      /* sessions opened */
    size_t open;            /* sessions open now */
    uint64_t pipelined;     /* transactions whose MAIL/RCPT went out in the same write as the
                             * previous message's data on a reused session (RFC 2920) */
} ll_smtp_client_stats;
/* The client's counters so far (NULL client: all zero). */
LL_EXPORT void ll_smtp_client_get_stats(const ll_smtp_client *c, ll_smtp_client_stats *out);

/* Free the client: sends waiting for a session fail (LL_EPOOLCLOSED), sends already on a session
 * finish their transaction, then every session says QUIT in the background (bounded tasks of a
 * few seconds at most: keep the loop running a moment to let them end). NULL: no-op. */
LL_EXPORT void ll_smtp_client_free(ll_smtp_client *c);

LL_END_DECLS

#endif
