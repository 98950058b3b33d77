/*
 * libloop/mime.h — building RFC 5322 / MIME messages and signing them with DKIM (part of
 * libloop-smtp; no I/O).
 *
 * The builder makes what mail clients expect: From/To/Cc/Reply-To/Subject/Date/Message-ID; RFC 2047
 * encoded words for non-ASCII header text (display names, subject); header lines folded at 78
 * characters and never past 998; a text part, an HTML alternative, inline images (Content-ID,
 * multipart/related) and attachments (base64, RFC 2231 file names); each text part in 7bit,
 * quoted-printable or base64, whichever is smallest and valid; multipart boundaries that occur in no
 * part. Bcc recipients go to the envelope only, never into the headers.
 *
 * Ownership: every setter copies its arguments. ll_smtp_mime_build() returns a message the caller
 * frees with ll_free(). ll_smtp_mime_mail() fills an ll_smtp_mail whose pointers stay valid until
 * the next change to the builder or its free. Setters return 0, LL_ENOMEM, or LL_EINVAL (a NULL
 * builder, or CR/LF/NUL in a header value, name or address: refused, nothing stored).
 */
#ifndef LIBLOOP_MIME_H
#define LIBLOOP_MIME_H

#include <time.h>
#include "libloop/common.h"
#include "libloop/smtp.h"

LL_BEGIN_DECLS

typedef struct ll_smtp_mime ll_smtp_mime;
typedef struct ll_smtp_dkim ll_smtp_dkim;

/* NULL on out of memory. */
LL_EXPORT ll_smtp_mime *ll_smtp_mime_new(void);
LL_EXPORT void ll_smtp_mime_free(ll_smtp_mime *m);

/* Addresses: `name` (UTF-8, may be NULL) and `address` ("user@example.com"). */
LL_EXPORT int ll_smtp_mime_set_from(ll_smtp_mime *m, const char *name, const char *address);
LL_EXPORT int ll_smtp_mime_add_to(ll_smtp_mime *m, const char *name, const char *address);
LL_EXPORT int ll_smtp_mime_add_cc(ll_smtp_mime *m, const char *name, const char *address);
LL_EXPORT int ll_smtp_mime_add_bcc(ll_smtp_mime *m, const char *address);
LL_EXPORT int ll_smtp_mime_set_reply_to(ll_smtp_mime *m, const char *name, const char *address);
/* UTF-8. */
LL_EXPORT int ll_smtp_mime_set_subject(ll_smtp_mime *m, const char *subject);
/* 0: the time of the build. */
LL_EXPORT int ll_smtp_mime_set_date(ll_smtp_mime *m, time_t when);
/* "<id@domain>" without the brackets; NULL: a random one at the From domain (the default). */
LL_EXPORT int ll_smtp_mime_set_message_id(ll_smtp_mime *m, const char *id);
/* Any other header (value in UTF-8: encoded when not ASCII). From, To, Cc, Bcc, Subject, Date,
 * Message-ID, MIME-Version and Content-* are refused (LL_EINVAL): they have their own setters. */
LL_EXPORT int ll_smtp_mime_add_header(ll_smtp_mime *m, const char *name, const char *value);

/* Bodies (UTF-8; any line endings). With both, multipart/alternative (text first). */
LL_EXPORT int ll_smtp_mime_set_text(ll_smtp_mime *m, const char *text);
LL_EXPORT int ll_smtp_mime_set_html(ll_smtp_mime *m, const char *html);
/* An attachment: `filename` (UTF-8), `content_type` (NULL: application/octet-stream). */
LL_EXPORT int ll_smtp_mime_attach(ll_smtp_mime *m, const char *filename, const char *content_type,
                                  const void *data, size_t len);
/* An inline part for the HTML ("<img src=\"cid:CID\">"): `cid` without brackets. */
LL_EXPORT int ll_smtp_mime_add_inline(ll_smtp_mime *m, const char *cid, const char *content_type,
                                      const void *data, size_t len);
/* Sign every build with `dkim` (borrowed: it must outlive the builder's builds; NULL: unsigned). */
LL_EXPORT int ll_smtp_mime_set_dkim(ll_smtp_mime *m, const ll_smtp_dkim *dkim);

/* The message (CRLF line endings), NUL-terminated, *len its length. LL_EINVAL without From or
 * without any recipient (message in err, when err is not NULL: free it with ll_free). */
LL_EXPORT int ll_smtp_mime_build(ll_smtp_mime *m, char **out, size_t *len, char **err);
/* Build into the builder and describe the envelope: from = the From address, rcpt = To, Cc and
 * Bcc addresses, data = the message. */
LL_EXPORT int ll_smtp_mime_mail(ll_smtp_mime *m, ll_smtp_mail *mail, char **err);

/* ---- DKIM (RFC 6376): relaxed/relaxed, rsa-sha256 or ed25519-sha256 (RFC 8463) ---- */
typedef struct ll_smtp_dkim_opts {
    const char *domain;     /* d= */
    const char *selector;   /* s= */
    const char *key_pem;    /* the private key, PEM (RSA or Ed25519: the algorithm follows it) */
    /* Colon-separated header names to sign; NULL: "From:To:Cc:Reply-To:Subject:Date:Message-ID:
     * MIME-Version:Content-Type". Names not present are signed as absent (RFC 6376 5.4). */
    const char *headers;
} ll_smtp_dkim_opts;
/* NULL with *err set (free with ll_free) when the key cannot be read or an option is missing. */
LL_EXPORT ll_smtp_dkim *ll_smtp_dkim_new(const ll_smtp_dkim_opts *opts, char **err);
LL_EXPORT void ll_smtp_dkim_free(ll_smtp_dkim *d);
/* The DKIM-Signature header field (folded, ending in CRLF) for the message msg[0..len) (CRLF
 * line endings), to put in front of it; free with ll_free. NULL on error (*err set). */
LL_EXPORT char *ll_smtp_dkim_sign(const ll_smtp_dkim *d, const char *msg, size_t len, char **err);

LL_END_DECLS

#endif
