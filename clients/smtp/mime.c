/*
 * mime.c — the MIME message builder (libloop/mime.h).
 *
 * Layout of what it builds, outermost first (each level only when needed):
 *   multipart/mixed        the body, then each attachment (base64, Content-Disposition attachment
 *                          with an RFC 2231 filename)
 *   multipart/related      the HTML (or the alternative holding it), then each inline part
 *                          (base64, Content-ID, Content-Disposition inline)
 *   multipart/alternative  text/plain, then text/html (the last is the preferred one)
 * Text parts are UTF-8, sent as 7bit when they are ASCII with lines of at most 998 bytes, else as
 * quoted-printable or base64, whichever is smaller. A boundary is random (OpenSSL's RAND_bytes) and
 * checked against every part's encoded bytes; on the astronomically unlikely collision it is drawn
 * again. Bcc addresses go to the envelope (ll_smtp_mime_mail) and never into a header.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/rand.h>
#include "mime_internal.h"

typedef struct part {
    char *type;      /* content type */
    char *name;      /* attachment file name / inline Content-ID */
    char *data;
    size_t len;
} part;

struct ll_smtp_mime {
    ll__mime_addr from, reply_to;
    ll__mime_addr *to, *cc, *bcc;
    size_t nto, ncc, nbcc;
    char *subject, *message_id;
    time_t date;
    char **hdr_names, **hdr_values;
    size_t nhdr;
    char *text, *html;
    part *att, *inl;
    size_t natt, ninl;
    const ll_smtp_dkim *dkim;
    /* the last build, for ll_smtp_mime_mail */
    char *built;
    size_t built_len;
    const char **rcpt;
};

ll_smtp_mime *ll_smtp_mime_new(void) { return ll_calloc(1, sizeof(ll_smtp_mime)); }

static void addr_free(ll__mime_addr *a) {
    ll_free(a->name);
    ll_free(a->addr);
    a->name = a->addr = NULL;
}

static void addrs_free(ll__mime_addr *a, size_t n) {
    for (size_t i = 0; i < n; i++) addr_free(&a[i]);
    ll_free(a);
}

static void parts_free(part *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        ll_free(p[i].type);
        ll_free(p[i].name);
        ll_free(p[i].data);
    }
    ll_free(p);
}

static void drop_build(ll_smtp_mime *m) {
    ll_free(m->built);
    ll_free(m->rcpt);
    m->built = NULL;
    m->rcpt = NULL;
    m->built_len = 0;
}

void ll_smtp_mime_free(ll_smtp_mime *m) {
    if (!m) return;
    addr_free(&m->from);
    addr_free(&m->reply_to);
    addrs_free(m->to, m->nto);
    addrs_free(m->cc, m->ncc);
    addrs_free(m->bcc, m->nbcc);
    ll_free(m->subject);
    ll_free(m->message_id);
    for (size_t i = 0; i < m->nhdr; i++) {
        ll_free(m->hdr_names[i]);
        ll_free(m->hdr_values[i]);
    }
    ll_free(m->hdr_names);
    ll_free(m->hdr_values);
    ll_free(m->text);
    ll_free(m->html);
    parts_free(m->att, m->natt);
    parts_free(m->inl, m->ninl);
    drop_build(m);
    ll_free(m);
}

/* CR, LF or NUL in a header value, name or address: refused (header injection). */
static int check_str(const char *s, bool required) {
    if (!s) return required ? LL_EINVAL : 0;
    return ll__smtp_check_line("header", s, strlen(s), NULL);
}

static int set_addr(ll__mime_addr *a, const char *name, const char *address) {
    char err[LL__SMTP_ERRLEN];
    if (check_str(name, false) || ll__smtp_check_address("address", address, false, err))
        return LL_EINVAL;
    char *n = name ? ll_strdup(name) : NULL;
    char *d = ll_strdup(address);
    if ((name && !n) || !d) {
        ll_free(n);
        ll_free(d);
        return LL_ENOMEM;
    }
    addr_free(a);
    a->name = n;
    a->addr = d;
    return 0;
}

static int add_addr(ll__mime_addr **v, size_t *n, const char *name, const char *address) {
    ll__mime_addr *nv = ll_realloc(*v, (*n + 1) * sizeof **v);
    if (!nv) return LL_ENOMEM;
    *v = nv;
    memset(&nv[*n], 0, sizeof nv[*n]);
    int rc = set_addr(&nv[*n], name, address);
    if (!rc) (*n)++;
    return rc;
}

int ll_smtp_mime_set_from(ll_smtp_mime *m, const char *name, const char *address) {
    return m ? set_addr(&m->from, name, address) : LL_EINVAL;
}
int ll_smtp_mime_set_reply_to(ll_smtp_mime *m, const char *name, const char *address) {
    return m ? set_addr(&m->reply_to, name, address) : LL_EINVAL;
}
int ll_smtp_mime_add_to(ll_smtp_mime *m, const char *name, const char *address) {
    return m ? add_addr(&m->to, &m->nto, name, address) : LL_EINVAL;
}
int ll_smtp_mime_add_cc(ll_smtp_mime *m, const char *name, const char *address) {
    return m ? add_addr(&m->cc, &m->ncc, name, address) : LL_EINVAL;
}
int ll_smtp_mime_add_bcc(ll_smtp_mime *m, const char *address) {
    return m ? add_addr(&m->bcc, &m->nbcc, NULL, address) : LL_EINVAL;
}

static int set_str(char **dst, const char *s, bool check) {
    if (check && check_str(s, false)) return LL_EINVAL;
    char *c = s ? ll_strdup(s) : NULL;
    if (s && !c) return LL_ENOMEM;
    ll_free(*dst);
    *dst = c;
    return 0;
}

int ll_smtp_mime_set_subject(ll_smtp_mime *m, const char *subject) {
    return m ? set_str(&m->subject, subject, true) : LL_EINVAL;
}
int ll_smtp_mime_set_date(ll_smtp_mime *m, time_t when) {
    if (!m) return LL_EINVAL;
    m->date = when;
    return 0;
}
int ll_smtp_mime_set_message_id(ll_smtp_mime *m, const char *id) {
    if (!m) return LL_EINVAL;
    if (id && (strchr(id, '<') || strchr(id, '>') || strchr(id, ' ') || !strchr(id, '@')))
        return LL_EINVAL;
    return set_str(&m->message_id, id, true);
}

int ll_smtp_mime_add_header(ll_smtp_mime *m, const char *name, const char *value) {
    if (!m || !name || !value || !*name) return LL_EINVAL;
    static const char *own[] = {"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID",
                                "MIME-Version", "Reply-To", "DKIM-Signature"};
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (strcasecmp(name, own[i]) == 0) return LL_EINVAL;
    if (strncasecmp(name, "Content-", 8) == 0) return LL_EINVAL;
    for (const char *p = name; *p; p++)
        if (*p <= 32 || *p >= 127 || *p == ':') return LL_EINVAL;
    if (check_str(value, true)) return LL_EINVAL;
    char **nn = ll_realloc(m->hdr_names, (m->nhdr + 1) * sizeof *nn);
    if (!nn) return LL_ENOMEM;
    m->hdr_names = nn;
    char **nv = ll_realloc(m->hdr_values, (m->nhdr + 1) * sizeof *nv);
    if (!nv) return LL_ENOMEM;
    m->hdr_values = nv;
    nn[m->nhdr] = ll_strdup(name);
    nv[m->nhdr] = ll_strdup(value);
    if (!nn[m->nhdr] || !nv[m->nhdr]) {
        ll_free(nn[m->nhdr]);
        ll_free(nv[m->nhdr]);
        return LL_ENOMEM;
    }
    m->nhdr++;
    return 0;
}

int ll_smtp_mime_set_text(ll_smtp_mime *m, const char *text) {
    return m ? set_str(&m->text, text, false) : LL_EINVAL;
}
int ll_smtp_mime_set_html(ll_smtp_mime *m, const char *html) {
    return m ? set_str(&m->html, html, false) : LL_EINVAL;
}

static int add_part(part **v, size_t *n, const char *name, const char *type, const void *data,
                    size_t len) {
    if (!name || (len && !data) || check_str(name, true) || check_str(type, false)) return LL_EINVAL;
    part *nv = ll_realloc(*v, (*n + 1) * sizeof **v);
    if (!nv) return LL_ENOMEM;
    *v = nv;
    part *p = &nv[*n];
    p->name = ll_strdup(name);
    p->type = ll_strdup(type ? type : "application/octet-stream");
    p->data = ll_malloc(len ? len : 1);
    p->len = len;
    if (!p->name || !p->type || !p->data) {
        ll_free(p->name);
        ll_free(p->type);
        ll_free(p->data);
        return LL_ENOMEM;
    }
    if (len) memcpy(p->data, data, len);
    (*n)++;
    return 0;
}

int ll_smtp_mime_attach(ll_smtp_mime *m, const char *filename, const char *content_type,
                        const void *data, size_t len) {
    return m ? add_part(&m->att, &m->natt, filename, content_type, data, len) : LL_EINVAL;
}
int ll_smtp_mime_add_inline(ll_smtp_mime *m, const char *cid, const char *content_type,
                            const void *data, size_t len) {
    if (cid && (strchr(cid, '<') || strchr(cid, '>') || strchr(cid, ' '))) return LL_EINVAL;
    return m ? add_part(&m->inl, &m->ninl, cid, content_type, data, len) : LL_EINVAL;
}
int ll_smtp_mime_set_dkim(ll_smtp_mime *m, const ll_smtp_dkim *dkim) {
    if (!m) return LL_EINVAL;
    m->dkim = dkim;
    return 0;
}

/* ---- building ---- */

/* One leaf part: its headers (after the type) and encoded body, in `out`. */
static int text_leaf(ll__sbuf *out, const char *subtype, const char *text) {
    ll__sbuf crlf = {0};
    if (ll__mime_crlf(&crlf, text, strlen(text))) return LL_ENOMEM;
    bool ascii = ll__smtp_is_ascii(crlf.data ? crlf.data : "", crlf.len);
    size_t longest = 0, cur = 0;
    for (size_t i = 0; i < crlf.len; i++) {
        if (crlf.data[i] == '\n') cur = 0;
        else if (++cur > longest) longest = cur;
    }
    int rc = ll__sbuf_printf(out, "Content-Type: text/%s; charset=utf-8\r\n", subtype);
    if (!rc && ascii && longest <= 998) {
        rc = ll__sbuf_appends(out, "Content-Transfer-Encoding: 7bit\r\n\r\n") ||
             ll__sbuf_append(out, crlf.data ? crlf.data : "", crlf.len);
        if (!rc && crlf.len && crlf.data[crlf.len - 1] != '\n') rc = ll__sbuf_appends(out, "\r\n");
    } else if (!rc) {
        /* quoted-printable or base64, whichever is smaller */
        ll__sbuf qp = {0}, b64 = {0};
        rc = ll__mime_qp(&qp, crlf.data ? crlf.data : "", crlf.len) ||
             ll__mime_base64_lines(&b64, crlf.data ? crlf.data : "", crlf.len);
        if (!rc) {
            bool use_qp = qp.len <= b64.len;
            rc = ll__sbuf_printf(out, "Content-Transfer-Encoding: %s\r\n\r\n",
                                 use_qp ? "quoted-printable" : "base64") ||
                 ll__sbuf_append(out, use_qp ? qp.data : b64.data, use_qp ? qp.len : b64.len);
            if (!rc && use_qp && qp.len && qp.data[qp.len - 1] != '\n')
                rc = ll__sbuf_appends(out, "\r\n");
        }
        ll__sbuf_free(&qp);
        ll__sbuf_free(&b64);
    }
    ll__sbuf_free(&crlf);
    return rc ? LL_ENOMEM : 0;
}

static int binary_leaf(ll__sbuf *out, const part *p, bool inline_part) {
    int rc = ll__sbuf_printf(out, "Content-Type: %s", p->type);
    if (!rc && !inline_part) rc = ll__mime_param(out, "name", p->name);
    if (!rc) rc = ll__sbuf_appends(out, "\r\nContent-Transfer-Encoding: base64\r\n");
    if (!rc && inline_part)
        rc = ll__sbuf_printf(out, "Content-ID: <%s>\r\nContent-Disposition: inline\r\n", p->name);
    if (!rc && !inline_part) {
        rc = ll__sbuf_appends(out, "Content-Disposition: attachment") ||
             ll__mime_param(out, "filename", p->name) || ll__sbuf_appends(out, "\r\n");
    }
    if (!rc) rc = ll__sbuf_appends(out, "\r\n") || ll__mime_base64_lines(out, p->data, p->len);
    return rc ? LL_ENOMEM : 0;
}

static int new_boundary(char *b, size_t n) {
    unsigned char r[12];
    if (RAND_bytes(r, sizeof r) != 1) return LL_EIO;
    int k = snprintf(b, n, "=_ll_");
    for (size_t i = 0; i < sizeof r; i++) k += snprintf(b + k, n - (size_t)k, "%02x", r[i]);
    return 0;
}

/* Wrap the parts (each a complete "headers\r\n\r\nbody" leaf) in a multipart of `subtype`. */
static int multipart(ll__sbuf *out, const char *subtype, ll__sbuf *parts, size_t n) {
    char b[48];
    for (int tries = 0;; tries++) {
        if (new_boundary(b, sizeof b)) return LL_EIO;
        bool clash = false;
        for (size_t i = 0; i < n && !clash; i++) clash = parts[i].data && strstr(parts[i].data, b);
        if (!clash) break;
        if (tries > 8) return LL_EIO;
    }
    if (ll__sbuf_printf(out, "Content-Type: multipart/%s;\r\n boundary=\"%s\"\r\n\r\n", subtype, b))
        return LL_ENOMEM;
    /* The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1): every part ends in
     * its own CRLF, so one more goes before each delimiter after the first. */
    for (size_t i = 0; i < n; i++) {
        if (ll__sbuf_printf(out, "%s--%s\r\n", i ? "\r\n" : "", b) ||
            ll__sbuf_append(out, parts[i].data, parts[i].len))
            return LL_ENOMEM;
    }
    return ll__sbuf_printf(out, "\r\n--%s--\r\n", b) ? LL_ENOMEM : 0;
}

static int body(ll_smtp_mime *m, ll__sbuf *out) {
    int rc = 0;
    ll__sbuf main = {0};
    /* text / html / alternative */
    if (m->text && m->html) {
        ll__sbuf alt[2] = {{0}, {0}};
        rc = text_leaf(&alt[0], "plain", m->text) || text_leaf(&alt[1], "html", m->html) ||
             multipart(&main, "alternative", alt, 2);
        ll__sbuf_free(&alt[0]);
        ll__sbuf_free(&alt[1]);
    } else if (m->html) {
        rc = text_leaf(&main, "html", m->html);
    } else {
        rc = text_leaf(&main, "plain", m->text ? m->text : "");
    }
    if (!rc && m->ninl) {
        ll__sbuf *v = ll_calloc(m->ninl + 1, sizeof *v);
        if (!v) rc = LL_ENOMEM;
        if (!rc) {
            v[0] = main;
            memset(&main, 0, sizeof main);
            for (size_t i = 0; !rc && i < m->ninl; i++) rc = binary_leaf(&v[i + 1], &m->inl[i], true);
            if (!rc) rc = multipart(&main, "related", v, m->ninl + 1);
            for (size_t i = 0; i <= m->ninl; i++) ll__sbuf_free(&v[i]);
        }
        ll_free(v);
    }
    if (!rc && m->natt) {
        ll__sbuf *v = ll_calloc(m->natt + 1, sizeof *v);
        if (!v) rc = LL_ENOMEM;
        if (!rc) {
            v[0] = main;
            memset(&main, 0, sizeof main);
            for (size_t i = 0; !rc && i < m->natt; i++) rc = binary_leaf(&v[i + 1], &m->att[i], false);
            if (!rc) rc = multipart(&main, "mixed", v, m->natt + 1);
            for (size_t i = 0; i <= m->natt; i++) ll__sbuf_free(&v[i]);
        }
        ll_free(v);
    }
    if (!rc) rc = ll__sbuf_append(out, main.data, main.len);
    ll__sbuf_free(&main);
    return rc;
}

static int headers(ll_smtp_mime *m, ll__sbuf *out) {
    char date[64];
    time_t t = m->date ? m->date : time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    int rc = ll__sbuf_printf(out, "Date: %s\r\n", date) ||
             ll__mime_address_header(out, "From", &m->from, 1);
    if (!rc && m->reply_to.addr) rc = ll__mime_address_header(out, "Reply-To", &m->reply_to, 1);
    if (!rc && m->nto) rc = ll__mime_address_header(out, "To", m->to, m->nto);
    if (!rc && m->ncc) rc = ll__mime_address_header(out, "Cc", m->cc, m->ncc);
    if (!rc && m->subject) rc = ll__mime_header_text(out, "Subject", m->subject);
    if (!rc) {
        if (m->message_id) {
            rc = ll__sbuf_printf(out, "Message-ID: <%s>\r\n", m->message_id);
        } else {
            unsigned char r[16];
            if (RAND_bytes(r, sizeof r) != 1) return LL_EIO;
            const char *dom = strrchr(m->from.addr, '@');
            rc = ll__sbuf_appends(out, "Message-ID: <");
            for (size_t i = 0; !rc && i < sizeof r; i++) rc = ll__sbuf_printf(out, "%02x", r[i]);
            if (!rc) rc = ll__sbuf_printf(out, "@%s>\r\n", dom ? dom + 1 : "localhost");
        }
    }
    for (size_t i = 0; !rc && i < m->nhdr; i++)
        rc = ll__mime_header_text(out, m->hdr_names[i], m->hdr_values[i]);
    if (!rc) rc = ll__sbuf_appends(out, "MIME-Version: 1.0\r\n");
    return rc ? (rc == LL_EIO ? LL_EIO : LL_ENOMEM) : 0;
}

static void set_err(char **err, const char *msg) {
    if (err) *err = ll_strdup(msg);
}

int ll_smtp_mime_build(ll_smtp_mime *m, char **out, size_t *len, char **err) {
    if (err) *err = NULL;
    if (!m || !out) {
        set_err(err, "ll_smtp_mime_build: builder or out is NULL");
        return LL_EINVAL;
    }
    *out = NULL;
    if (!m->from.addr) {
        set_err(err, "ll_smtp_mime_build: no From address");
        return LL_EINVAL;
    }
    if (m->nto + m->ncc + m->nbcc == 0) {
        set_err(err, "ll_smtp_mime_build: no recipient (To, Cc or Bcc)");
        return LL_EINVAL;
    }
    ll__sbuf msg = {0};
    int rc = headers(m, &msg);
    if (!rc) rc = body(m, &msg);
    if (rc) {
        ll__sbuf_free(&msg);
        set_err(err, rc == LL_ENOMEM ? "out of memory" : "no random bytes for a boundary");
        return rc;
    }
    if (m->dkim) {
        char *derr = NULL;
        char *sig = ll_smtp_dkim_sign(m->dkim, msg.data, msg.len, &derr);
        if (!sig) {
            ll__sbuf_free(&msg);
            if (err) *err = derr;
            else ll_free(derr);
            return LL_EINVAL;
        }
        ll__sbuf signed_msg = {0};
        rc = ll__sbuf_appends(&signed_msg, sig) || ll__sbuf_append(&signed_msg, msg.data, msg.len);
        ll_free(sig);
        ll__sbuf_free(&msg);
        if (rc) {
            ll__sbuf_free(&signed_msg);
            set_err(err, "out of memory");
            return LL_ENOMEM;
        }
        msg = signed_msg;
    }
    *out = ll__sbuf_steal(&msg, len);
    return *out ? 0 : LL_ENOMEM;
}

int ll_smtp_mime_mail(ll_smtp_mime *m, ll_smtp_mail *mail, char **err) {
    if (!m || !mail) {
        set_err(err, "ll_smtp_mime_mail: builder or mail is NULL");
        return LL_EINVAL;
    }
    drop_build(m);
    int rc = ll_smtp_mime_build(m, &m->built, &m->built_len, err);
    if (rc) return rc;
    size_t n = m->nto + m->ncc + m->nbcc;
    m->rcpt = ll_malloc(n * sizeof *m->rcpt);
    if (!m->rcpt) {
        drop_build(m);
        set_err(err, "out of memory");
        return LL_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < m->nto; i++) m->rcpt[k++] = m->to[i].addr;
    for (size_t i = 0; i < m->ncc; i++) m->rcpt[k++] = m->cc[i].addr;
    for (size_t i = 0; i < m->nbcc; i++) m->rcpt[k++] = m->bcc[i].addr;
    mail->from = m->from.addr;
    mail->rcpt = m->rcpt;
    mail->nrcpt = n;
    mail->data = m->built;
    mail->len = m->built_len;
    return 0;
}
