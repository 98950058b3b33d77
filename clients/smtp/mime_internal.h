/*
 * mime_internal.h — what mime.c, mime_enc.c and dkim.c share. Never installed.
 */
#ifndef LL_MIME_INTERNAL_H
#define LL_MIME_INTERNAL_H

#include "smtp_internal.h"

typedef struct ll__mime_addr {
    char *name; /* NULL: none */
    char *addr;
} ll__mime_addr;

/* RFC 2047 B-encoded words for UTF-8 text s, starting at column col, folded so no line passes 78. */
int ll__mime_encoded_words(ll__sbuf *out, const char *s, size_t col);
/* "Name: value\r\n", unstructured text folded at 78 (encoded words when needed). */
int ll__mime_header_text(ll__sbuf *out, const char *name, const char *value);
/* One mailbox ("Name <addr>" or "addr"); *col is the column before and after. */
int ll__mime_mailbox(ll__sbuf *out, const char *name, const char *addr, size_t *col);
/* "Name: a, b, c\r\n", folded between addresses. */
int ll__mime_address_header(ll__sbuf *out, const char *name, const ll__mime_addr *a, size_t n);
/* ";\r\n name=..." as a Content-Type/Content-Disposition parameter (RFC 2231 when needed). */
int ll__mime_param(ll__sbuf *out, const char *name, const char *value);
/* base64 in 76-character lines, each ending in CRLF. */
int ll__mime_base64_lines(ll__sbuf *out, const void *data, size_t n);
/* Quoted-printable of s (CRLF line ends kept as hard breaks; lines at most 76). */
int ll__mime_qp(ll__sbuf *out, const char *s, size_t n);
/* s with every line end made CRLF. */
int ll__mime_crlf(ll__sbuf *out, const char *s, size_t n);

#endif
