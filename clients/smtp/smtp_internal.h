/*
 * smtp_internal.h — what the files of libloop-smtp share. Never installed.
 *
 * The client is a sans-I/O protocol core — buf.c (byte buffer), reply.c (reply parser with limits
 * and RFC 3463 codes), caps.c (EHLO keywords), check.c (what may reach the wire), dot.c (the DATA
 * encoder), auth.c (SASL), handshake.c (greeting/EHLO/STARTTLS/AUTH state machine), txn.c (the mail
 * transaction state machine with PIPELINING), mime*.c and dkim.c — and a thin adapter on libloop
 * streams: config.c (URL and options), conn.c (one session), client.c (the session pool).
 * The core has no sockets and no loop: the tests feed it bytes one at a time and in random splits.
 *
 * Errors in the core: functions return 0 or a negative code from libloop/error.h and write a
 * message into a caller-supplied buffer of LL__SMTP_ERRLEN bytes.
 */
#ifndef LL_SMTP_INTERNAL_H
#define LL_SMTP_INTERNAL_H

#include "libloop.h"
#include "libloop/smtp.h"
#include "libloop/mime.h"

#define LL__SMTP_ERRLEN 512

/* Write a message into err (LL__SMTP_ERRLEN bytes) and return code. */
int ll__smtp_errf(char *err, int code, const char *fmt, ...) LL_PRINTF(3, 4);

/* ---- buf.c: a growable byte buffer, NUL-terminated whenever data != NULL ---- */
typedef struct ll__sbuf {
    char *data;
    size_t len, cap;
} ll__sbuf;
int ll__sbuf_reserve(ll__sbuf *b, size_t extra);
int ll__sbuf_append(ll__sbuf *b, const void *p, size_t n);
int ll__sbuf_appends(ll__sbuf *b, const char *s);
int ll__sbuf_putc(ll__sbuf *b, char c);
int ll__sbuf_printf(ll__sbuf *b, const char *fmt, ...) LL_PRINTF(2, 3);
void ll__sbuf_reset(ll__sbuf *b);  /* len = 0, memory kept */
void ll__sbuf_free(ll__sbuf *b);
/* Give the bytes away (free with ll_free); the buffer is left empty. Never NULL unless out of
 * memory: an empty buffer gives "". */
char *ll__sbuf_steal(ll__sbuf *b, size_t *len);
/* base64 (OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock). decode: LL_EINVAL on bad input. */
int ll__b64_encode(ll__sbuf *out, const void *p, size_t n);
int ll__b64_decode(ll__sbuf *out, const char *s, size_t n);

/* ---- reply.c ---- */
#define LL__SMTP_MAX_LINE 2048
#define LL__SMTP_MAX_LINES 100
typedef struct ll__smtp_reply {
    int code;            /* 200..599 */
    char enhanced[16];   /* "5.1.1" (RFC 3463) or "" */
    ll__sbuf text;       /* each line's text (after the code and the enhanced code), joined by '\n' */
    size_t nlines;
} ll__smtp_reply;
typedef struct ll__smtp_parser {
    size_t max_line, max_lines;
    ll__sbuf line;       /* the line being read, without its end */
    ll__smtp_reply cur;
    bool complete;       /* cur holds a whole reply, not yet taken */
    char err[LL__SMTP_ERRLEN];
} ll__smtp_parser;
void ll__smtp_parser_init(ll__smtp_parser *p, size_t max_line, size_t max_lines);
void ll__smtp_parser_free(ll__smtp_parser *p);
/* Consume bytes up to the end of one reply and no further (*used says how many): return 1 when a
 * reply is complete (p->cur, valid until the next feed), 0 when every byte was used and more are
 * needed, or LL_ESMTP_PROTO with p->err (malformed, over a limit). Bytes after the reply stay
 * unconsumed: after a STARTTLS go-ahead the adapter discards them. */
int ll__smtp_parser_feed(ll__smtp_parser *p, const char *d, size_t n, size_t *used);
/* Did the parser see part of a reply that is not complete yet? */
bool ll__smtp_parser_midway(const ll__smtp_parser *p);
void ll__smtp_reply_free(ll__smtp_reply *r);
/* "550 5.1.1 no such user" as one line (text lines joined with " / "), into err. */
void ll__smtp_reply_describe(const ll__smtp_reply *r, char *out, size_t n);

/* ---- caps.c: the EHLO keywords ---- */
enum { LL__AUTH_PLAIN = 1, LL__AUTH_LOGIN = 2, LL__AUTH_CRAM_MD5 = 4, LL__AUTH_XOAUTH2 = 8 };
typedef struct ll__smtp_caps {
    bool esmtp;          /* EHLO worked (false after a HELO fallback) */
    bool pipelining, starttls, eightbitmime, smtputf8, size;
    uint64_t max_size;   /* SIZE n (0: no limit announced) */
    unsigned auth;       /* LL__AUTH_* offered */
    ll__sbuf keywords;   /* "\nPIPELINING\nSIZE\n...\n": the keywords, upper case */
} ll__smtp_caps;
/* Forget everything (after STARTTLS: the plaintext capabilities must not survive). */
void ll__smtp_caps_clear(ll__smtp_caps *c);
int ll__smtp_caps_parse(ll__smtp_caps *c, const ll__smtp_reply *ehlo_reply);
bool ll__smtp_caps_has(const ll__smtp_caps *c, const char *keyword);
void ll__smtp_caps_free(ll__smtp_caps *c);

/* ---- check.c ---- */
/* CR, LF or NUL anywhere in s[0..n): LL_EINVAL "<what> contains a CR/LF/NUL". */
int ll__smtp_check_line(const char *what, const char *s, size_t n, char *err);
/* A mailbox for MAIL/RCPT: no control characters, no '<' '>', at most 254 bytes before the @'s
 * domain rules; "" allowed only when allow_empty. */
int ll__smtp_check_address(const char *what, const char *s, bool allow_empty, char *err);
/* A name for EHLO: a domain or an address literal, printable ASCII without spaces. */
int ll__smtp_check_helo(const char *s, char *err);
bool ll__smtp_is_ascii(const void *p, size_t n);

/* ---- dot.c: the DATA encoder ---- */
typedef struct ll__smtp_dot {
    bool bol;        /* at the start of a line */
    bool cr;         /* the last input byte was a CR not yet written */
} ll__smtp_dot;
void ll__smtp_dot_init(ll__smtp_dot *e);
/* Append the CRLF-normalised, dot-stuffed form of in[0..n) (streaming: any split gives the same
 * output). */
int ll__smtp_dot_encode(ll__smtp_dot *e, const void *in, size_t n, ll__sbuf *out);
/* End the data: close the last line if needed, then ".\r\n". */
int ll__smtp_dot_finish(ll__smtp_dot *e, ll__sbuf *out);

/* ---- auth.c: SASL client (PLAIN, LOGIN, CRAM-MD5, XOAUTH2) ---- */
typedef struct ll__smtp_sasl {
    int mech;            /* LL__AUTH_* */
    int step;
    const char *user, *pass, *token; /* borrowed from the config */
} ll__smtp_sasl;
/* Choose a mechanism: the forced one (must be offered), XOAUTH2 with a token, else PLAIN, LOGIN,
 * CRAM-MD5 in that order. LL_ESMTP_AUTH with a message when none fits. */
int ll__smtp_sasl_pick(ll__smtp_sasl *s, unsigned offered, const char *forced, char *err);
const char *ll__smtp_sasl_name(int mech);
/* The AUTH command (with an initial response where the mechanism has one). */
int ll__smtp_sasl_start(ll__smtp_sasl *s, ll__sbuf *out, char *err);
/* A reply during AUTH: 235 -> 1 (done); 334 -> 0 and the response appended to out; anything
 * else -> LL_ESMTP_AUTH with the server's text. */
int ll__smtp_sasl_step(ll__smtp_sasl *s, const ll__smtp_reply *r, ll__sbuf *out, char *err);

/* ---- handshake.c: greeting, EHLO/HELO, STARTTLS, EHLO again, AUTH ---- */
typedef enum {
    LL__HS_GREETING = 0, /* waiting for 220 */
    LL__HS_EHLO,         /* EHLO sent */
    LL__HS_HELO,         /* EHLO refused, HELO sent */
    LL__HS_STARTTLS,     /* STARTTLS sent, alone */
    LL__HS_TLS,          /* go-ahead received: the adapter does the handshake, then _tls_done */
    LL__HS_AUTH,         /* AUTH exchange */
    LL__HS_READY,
    LL__HS_FAILED
} ll__hs_state;
typedef struct ll__smtp_hs {
    ll__hs_state state;
    ll_smtp_security security; /* never DEFAULT here */
    bool tls;                  /* the link is TLS now */
    const char *helo;          /* borrowed */
    const char *user, *pass, *token, *mech; /* borrowed; user NULL and token NULL: no AUTH */
    bool allow_plaintext_auth;
    ll__smtp_caps caps;
    ll__smtp_sasl sasl;
    ll__sbuf out;              /* bytes for the adapter to send */
    char err[LL__SMTP_ERRLEN];
} ll__smtp_hs;
enum { LL__HS_CONTINUE = 0, LL__HS_NEED_TLS = 1, LL__HS_DONE = 2 };
void ll__smtp_hs_init(ll__smtp_hs *h, ll_smtp_security sec, const char *helo);
void ll__smtp_hs_free(ll__smtp_hs *h);
/* A reply arrived: LL__HS_CONTINUE (send h->out, read the next), LL__HS_NEED_TLS (nothing else
 * may be sent or read: discard what is buffered, handshake, call _tls_done), LL__HS_DONE, or a
 * negative code with h->err. */
int ll__smtp_hs_reply(ll__smtp_hs *h, const ll__smtp_reply *r);
/* The TLS handshake succeeded: EHLO again (queued in out), capabilities forgotten. */
int ll__smtp_hs_tls_done(ll__smtp_hs *h);

/* ---- txn.c: one mail transaction ---- */
typedef enum {
    LL__TX_IDLE = 0,
    LL__TX_ENVELOPE,     /* [RSET] MAIL RCPT... sent, replies coming */
    LL__TX_DATA,         /* DATA sent, waiting for 354 */
    LL__TX_BODY,         /* body queued in out, waiting for the final reply */
    LL__TX_DONE,         /* transaction over; the session is at a clean idle point */
    LL__TX_FAILED        /* session unusable (421, protocol error) */
} ll__tx_state;
typedef struct ll__smtp_rcpt {
    const char *addr;    /* borrowed */
    int code;            /* 0: no answer yet */
    char enhanced[16];
    char *text;          /* ll_malloc'd */
} ll__smtp_rcpt;
enum { LL__EXP_RSET = -3, LL__EXP_MAIL = -2, LL__EXP_DATA = -1 }; /* >= 0: RCPT index */
typedef struct ll__smtp_txn {
    ll__tx_state state;
    const ll__smtp_caps *caps;
    const char *from;
    ll__smtp_rcpt *rcpt;
    size_t nrcpt;
    const void *data;
    size_t len;
    bool eight;          /* the data has 8-bit bytes */
    size_t wire;         /* its size on the wire (RFC 1870), when the server offers SIZE */
    int *expect;         /* replies awaited, in order */
    size_t nexpect, expect_head, expect_cap;
    size_t next_rcpt;    /* without PIPELINING: the next RCPT to send */
    int mail_code;       /* MAIL's answer */
    size_t accepted;
    int code;            /* the reply that ended the transaction (final, DATA's, MAIL's, 421) */
    char enhanced[16];
    char *text;
    bool closing;        /* the server said 421: the session is over */
    ll__smtp_dot dot;    /* the body's encoder state */
    size_t body_off;     /* input bytes of the body encoded so far */
    bool body_done;      /* the terminator was produced */
    ll__sbuf out;
    char err[LL__SMTP_ERRLEN];
} ll__smtp_txn;
enum { LL__TX_CONTINUE = 0, LL__TX_SEND_BODY = 1, LL__TX_COMPLETE = 2 };
/* rcpt[] and the strings are borrowed until _free. Checks the envelope (LL_EINVAL), the size
 * (LL_EMSGSIZE) and the extensions the data needs (LL_ESMTP_PROTO), then queues [RSET] MAIL and,
 * with PIPELINING, every RCPT in out. */
int ll__smtp_txn_start(ll__smtp_txn *t, const ll__smtp_caps *caps, const char *from,
                       const char *const *rcpt, size_t nrcpt, const void *data, size_t len,
                       bool rset);
/* A reply: LL__TX_CONTINUE (send out if non-empty, read on), LL__TX_SEND_BODY (the server said
 * 354: call ll__smtp_txn_body until it returns 0, sending out after each call, under the data
 * timeout; then read the final reply under the final timeout), LL__TX_COMPLETE (results in rcpt[]/code/text), or a negative code with err
 * (session unusable; unanswered recipients keep code 0). */
int ll__smtp_txn_reply(ll__smtp_txn *t, const ll__smtp_reply *r);
void ll__smtp_txn_free(ll__smtp_txn *t);
/* The next piece of the encoded body (at most `max` input bytes; the last piece ends with the
 * terminator) in out: 1 when out holds a piece to send, 0 when the body is complete, LL_ENOMEM. */
int ll__smtp_txn_body(ll__smtp_txn *t, size_t max);
/* The transaction broke off (lost connection, timeout): recipients accepted at RCPT time are
 * unanswered again (deferred), since the message did not reach them. */
void ll__smtp_txn_abort(ll__smtp_txn *t);
/* Pipeline `next` (started on the same session, without RSET) behind t's data: once t's last body
 * piece (the terminator) is in t->out, next's envelope is moved there too, to go out in the same
 * write. t reads its final reply first; next's replies follow and are next's alone. LL_ESTATE
 * when either is not at that point or the server does not offer PIPELINING. */
int ll__smtp_txn_follow(ll__smtp_txn *t, ll__smtp_txn *next);

/* ---- mailcopy (session.c): a send's own copy of the caller's ll_smtp_mail, one allocation ---- */
ll_smtp_mail *ll__smtp_mail_copy(const ll_smtp_mail *m, char *err);
/* Spawn fn(arg) as a task named `name` on loop. */
ll_future *ll__smtp_spawn(ll_loop *loop, const char *name, ll_task_fn fn, void *arg);
/* Task body: open a session with cfg (the task owns one reference and drops it); returns the
 * ll_smtp_conn, whose value destructor shuts it down. Used by ll_smtp_connect and the pool. */
int ll__smtp_connect_task(void *arg);
/* Settle a send's future after a transaction that ended in rc (0: complete; else err is the
 * message): resolved or failed with the per-recipient result (ll__smtp_result_settle), cancelled,
 * or failed with the result so far as detail. */
struct ll__smtp_txn;
void ll__smtp_settle_txn(ll_future *f, int rc, const struct ll__smtp_txn *t, const char *peer,
                         const char *err, unsigned attempts);

/* ---- result.c ---- */
/* Build the public result from the per-recipient outcomes (status from each code: 2xx accepted,
 * 5xx rejected, otherwise deferred). */
ll_smtp_result *ll__smtp_result_new(const ll__smtp_rcpt *r, size_t n, int code,
                                    const char *enhanced, const char *text, unsigned attempts);
void ll__smtp_result_free(void *r);
/* Resolve f with the result when everything was accepted, else fail it (LL_ESMTP_PARTIAL or
 * LL_ESMTP_REPLY) with the result as detail and a message naming the first refusal. */
int ll__smtp_result_settle(ll_future *f, ll_smtp_result *res, const char *peer);

/* ---- config.c: URL and options, shared by the sessions of a client ---- */
typedef struct ll__smtp_cfg {
    int refs;
    ll_loop *loop;
    char *host;
    uint16_t port;
    ll_smtp_security security, url_security;
    ll_tls_opts tls;     /* strings below are owned copies */
    char *tls_server_name, *tls_ca_file, *tls_ca_path, *tls_cert, *tls_key;
    char *helo, *user, *pass, *token, *mech;
    bool allow_plaintext_auth;
    double connect_timeout, greeting_timeout, command_timeout, data_timeout, final_timeout,
        message_timeout; /* < 0: none */
    size_t max_line, max_lines;
    unsigned max_sessions, max_messages, retries;
    double backoff, noop_after;
    char *key;           /* the pool key: destination and every setting */
} ll__smtp_cfg;
int ll__smtp_cfg_new(const char *url, const ll_smtp_opts *opts, ll__smtp_cfg **out, char *err);
ll__smtp_cfg *ll__smtp_cfg_ref(ll__smtp_cfg *c);
void ll__smtp_cfg_unref(ll__smtp_cfg *c);

/* ---- conn.c: one session on a stream (inside tasks) ---- */
struct ll_smtp_conn {
    int refs;
    ll__smtp_cfg *cfg;
    ll_stream *s;
    char *peer;
    ll__smtp_parser parser;
    ll__smtp_hs hs;          /* holds the capabilities */
    bool busy, broken, closed, dirty;
    unsigned messages;       /* transactions on this session */
    ll_time idle_since;
    char err[LL__SMTP_ERRLEN]; /* the last failure's message */
};
/* Inside a task: connect and run the handshake. On failure the code is returned with a message
 * in err (LL__SMTP_ERRLEN bytes). */
int ll__smtp_conn_open(ll__smtp_cfg *cfg, ll_smtp_conn **out, char *err);
ll_smtp_conn *ll__smtp_conn_ref(ll_smtp_conn *c);
const char *ll__smtp_conn_peer(const ll_smtp_conn *c);
void ll__smtp_conn_unref(ll_smtp_conn *c);
/* Inside a task: one transaction. Returns 0 when it completed (t->rcpt and t->code hold the
 * outcome; t->closing or c->broken say whether the session can go on) or a negative code with
 * the message in c->err (refused before sending: the session is fine; else it is marked broken
 * and t->rcpt holds what was answered). */
/* chain (may be NULL): on a reused session with PIPELINING, when t's data is complete and the
 * session may take at least one more message, chain->claim(arg, c) may return a transaction
 * started on c (rset false) whose envelope then goes out with t's terminator (ll__smtp_txn_follow);
 * it is left in chain->next, and its owner continues it with ll__smtp_conn_txn_resume once t is
 * over — or, if t failed or the session broke, never on this session. */
typedef struct ll__smtp_chain {
    ll__smtp_txn *(*claim)(void *arg, ll_smtp_conn *c);
    void *arg;
    ll__smtp_txn *next;
} ll__smtp_chain;
int ll__smtp_conn_txn(ll_smtp_conn *c, ll__smtp_txn *t, const ll_smtp_mail *m,
                      ll__smtp_chain *chain);
/* Go on with a transaction whose envelope already went out (chain->next of the previous one):
 * read its replies and finish it, like ll__smtp_conn_txn. */
int ll__smtp_conn_txn_resume(ll_smtp_conn *c, ll__smtp_txn *t, ll__smtp_chain *chain);
int ll__smtp_conn_noop(ll_smtp_conn *c); /* message in c->err */
/* Close the stream now; with a usable session, send QUIT first in a detached task. A session a
 * task is using is aborted instead (its awaits fail with LL_ECLOSED). */
ll_future *ll__smtp_conn_shut(ll_smtp_conn *c, bool quit); /* the QUIT task's future, or NULL */

#endif
