/*
 * multipart.c — multipart/form-data bodies (RFC 7578): fields from memory and files streamed from
 * disk, with a Content-Length computed up front (file sizes from stat), so the body is never held
 * in memory and no chunked encoding is needed (many servers refuse chunked uploads).
 *
 * Design notes:
 * - The boundary is 32 random hex digits from OpenSSL's RAND_bytes after a fixed prefix. Field
 *   values are searched for "--<boundary>" and a new boundary drawn if one occurs; files are
 *   searched as they are read (the overlap between reads included), and a file that holds the
 *   boundary — or whose size changed since stat — fails the request rather than send a body that
 *   parses differently from what the caller gave. With 128 random bits neither happens by chance.
 * - Names, file names and content types are refused (LL_EINVAL) when they hold a control byte or
 *   a double quote, the characters that could break out of the Content-Disposition header.
 * - Files are read with read(2) on the loop's thread, 64 KiB at a time: a regular file in the page
 *   cache costs microseconds per read. A request may be sent more than once (redirect 307/308,
 *   retry): rewind reopens the files.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "http_internal.h"

typedef struct mpart {
    char *head;        /* "--B\r\nContent-Disposition: ...\r\n\r\n" */
    size_t hlen;
    char *value;       /* a field's bytes, or NULL for a file */
    size_t vlen;
    char *path;        /* a file */
    uint64_t size;
} mpart;

struct ll__http_multipart {
    mpart *v;
    size_t n;
    char boundary[48];
    char ctype[96];
    uint64_t length;
    /* reading */
    size_t i;          /* the part being sent (n: the closing delimiter) */
    int stage;         /* 0 head, 1 content, 2 CRLF after it */
    uint64_t off;      /* within the current piece */
    int fd;
    char tail[48];     /* the last bytes of the file read so far (boundary search overlap) */
    size_t tail_len;
};

static bool field_ok(const char *s) {
    return !s || (ll__http_str_ok(s) && !strchr(s, '"'));
}

void ll__http_multipart_free(ll__http_multipart *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        ll_free(m->v[i].head);
        ll_free(m->v[i].value);
        ll_free(m->v[i].path);
    }
    ll_free(m->v);
    if (m->fd >= 0) close(m->fd);
    ll_free(m);
}

static void new_boundary(ll__http_multipart *m) {
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) /* no entropy source: still unique enough per process */
        for (size_t i = 0; i < sizeof r; i++) r[i] = (unsigned char)((uintptr_t)m >> (i % 8) ^ i);
    static const char hex[] = "0123456789abcdef";
    memcpy(m->boundary, "libloop-", 8);
    for (size_t i = 0; i < sizeof r; i++) {
        m->boundary[8 + 2 * i] = hex[r[i] >> 4];
        m->boundary[9 + 2 * i] = hex[r[i] & 15];
    }
    m->boundary[8 + 2 * sizeof r] = 0;
}

static bool holds_boundary(const ll__http_multipart *m, const char *d, size_t n) {
    size_t bl = strlen(m->boundary);
    for (const char *p = d; n >= bl + 2;) {
        const char *h = memchr(p, '-', n - bl - 1);
        if (!h) return false;
        if (h[1] == '-' && memcmp(h + 2, m->boundary, bl) == 0) return true;
        n -= (size_t)(h + 1 - p);
        p = h + 1;
    }
    return false;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int ll__http_multipart_new(ll__http_multipart **out, const ll_http_part *parts, size_t n,
                           char *err) {
    *out = NULL;
    ll__http_multipart *m = ll_calloc(1, sizeof *m);
    if (!m || !(m->v = ll_calloc(n ? n : 1, sizeof *m->v))) {
        ll_free(m);
        return ll__http_errf(err, LL_ENOMEM, "out of memory");
    }
    m->fd = -1;
    m->n = n;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const ll_http_part *p = &parts[i];
        mpart *x = &m->v[i];
        if (!p->name || !*p->name)
            rc = ll__http_errf(err, LL_EINVAL, "multipart part %zu has no name", i);
        else if (!field_ok(p->name) || !field_ok(p->filename) || !field_ok(p->content_type))
            rc = ll__http_errf(err, LL_EINVAL, "multipart part %zu: a control character or "
                               "double quote in its name, file name or content type (refused)",
                               i);
        else if (p->path) {
            struct stat st;
            char e[160];
            if (stat(p->path, &st) != 0)
                rc = ll__http_errf(err, errno == ENOENT ? LL_ENOENT : LL_EIO, "multipart file "
                                   "%s: %s", LL__HTTP_ESC(e, p->path), strerror(errno));
            else if (!S_ISREG(st.st_mode))
                rc = ll__http_errf(err, LL_EINVAL, "multipart file %s: not a regular file",
                                   LL__HTTP_ESC(e, p->path));
            else if (!(x->path = ll_strdup(p->path)))
                rc = ll__http_errf(err, LL_ENOMEM, "out of memory");
            else x->size = (uint64_t)st.st_size;
        } else {
            x->vlen = p->value ? (p->value_len ? p->value_len : strlen(p->value)) : 0;
            if (!(x->value = ll_malloc(x->vlen + 1)))
                rc = ll__http_errf(err, LL_ENOMEM, "out of memory");
            else if (x->vlen) memcpy(x->value, p->value, x->vlen);
        }
    }
    if (rc) {
        ll__http_multipart_free(m);
        return rc;
    }
    /* a boundary no field holds (files are checked as they are sent) */
    for (int tries = 0;; tries++) {
        new_boundary(m);
        bool clash = false;
        for (size_t i = 0; i < n && !clash; i++)
            clash = m->v[i].value && holds_boundary(m, m->v[i].value, m->v[i].vlen);
        if (!clash) break;
        if (tries == 8) {
            ll__http_multipart_free(m);
            return ll__http_errf(err, LL_EINVAL, "no multipart boundary found");
        }
    }
    snprintf(m->ctype, sizeof m->ctype, "multipart/form-data; boundary=%s", m->boundary);
    m->length = 0;
    for (size_t i = 0; i < n; i++) {
        const ll_http_part *p = &parts[i];
        mpart *x = &m->v[i];
        ll__hbuf h = {0};
        rc = ll__hbuf_printf(&h, "--%s\r\nContent-Disposition: form-data; name=\"%s\"",
                             m->boundary, p->name);
        if (!rc && p->path)
            rc = ll__hbuf_printf(&h, "; filename=\"%s\"",
                                 p->filename ? p->filename : base_name(p->path));
        else if (!rc && p->filename) rc = ll__hbuf_printf(&h, "; filename=\"%s\"", p->filename);
        const char *ct = p->content_type ? p->content_type
                         : p->path          ? "application/octet-stream"
                                            : NULL;
        if (!rc && ct) rc = ll__hbuf_printf(&h, "\r\nContent-Type: %s", ct);
        if (!rc) rc = ll__hbuf_appends(&h, "\r\n\r\n");
        if (rc) {
            ll__hbuf_free(&h);
            ll__http_multipart_free(m);
            return ll__http_errf(err, LL_ENOMEM, "out of memory");
        }
        x->head = ll__hbuf_steal(&h, &x->hlen);
        m->length += x->hlen + (x->path ? x->size : x->vlen) + 2;
    }
    m->length += 2 + strlen(m->boundary) + 4; /* "--B--\r\n" */
    *out = m;
    return 0;
}

const char *ll__http_multipart_content_type(const ll__http_multipart *m) { return m->ctype; }
uint64_t ll__http_multipart_length(const ll__http_multipart *m) { return m->length; }

int ll__http_multipart_rewind(ll__http_multipart *m, char *err) {
    (void)err;
    if (m->fd >= 0) close(m->fd);
    m->fd = -1;
    m->i = 0;
    m->stage = 0;
    m->off = 0;
    m->tail_len = 0;
    return 0;
}

/* Read up to cap bytes of the current file into buf; checks size and boundary. */
static int read_file(ll__http_multipart *m, mpart *x, char *buf, size_t cap, size_t *got,
                     char *err) {
    char e[160];
    if (m->fd < 0) {
        m->fd = open(x->path, O_RDONLY | O_CLOEXEC);
        if (m->fd < 0)
            return ll__http_errf(err, errno == ENOENT ? LL_ENOENT : LL_EIO, "multipart file %s: %s",
                                 LL__HTTP_ESC(e, x->path), strerror(errno));
        m->tail_len = 0;
    }
    uint64_t left = x->size - m->off;
    size_t want = left < cap ? (size_t)left : cap;
    ssize_t k;
    do k = read(m->fd, buf, want);
    while (k < 0 && errno == EINTR);
    if (k < 0)
        return ll__http_errf(err, LL_EIO, "multipart file %s: %s", LL__HTTP_ESC(e, x->path),
                             strerror(errno));
    if (k == 0 && want > 0)
        return ll__http_errf(err, LL_EIO, "multipart file %s shrank while being sent",
                             LL__HTTP_ESC(e, x->path));
    /* the boundary may straddle two reads: search the previous tail joined to this start */
    size_t bl = strlen(m->boundary) + 2;
    char joint[2 * sizeof m->tail];
    size_t head = (size_t)k < bl ? (size_t)k : bl;
    memcpy(joint, m->tail, m->tail_len);
    memcpy(joint + m->tail_len, buf, head);
    if (holds_boundary(m, joint, m->tail_len + head) || holds_boundary(m, buf, (size_t)k))
        return ll__http_errf(err, LL_EINVAL, "multipart file %s contains the boundary",
                             LL__HTTP_ESC(e, x->path));
    size_t keep = (size_t)k < bl - 1 ? (size_t)k : bl - 1;
    if (m->tail_len + keep > bl - 1) { /* keep the last bl-1 bytes seen */
        size_t drop = m->tail_len + keep - (bl - 1);
        if (drop > m->tail_len) drop = m->tail_len;
        memmove(m->tail, m->tail + drop, m->tail_len - drop);
        m->tail_len -= drop;
    }
    memcpy(m->tail + m->tail_len, buf + (size_t)k - keep, keep);
    m->tail_len += keep;
    m->off += (uint64_t)k;
    if (m->off == x->size) { /* the file must end where stat said */
        char c;
        ssize_t more = read(m->fd, &c, 1);
        close(m->fd);
        m->fd = -1;
        if (more != 0)
            return ll__http_errf(err, LL_EIO, "multipart file %s grew while being sent",
                                 LL__HTTP_ESC(e, x->path));
    }
    *got = (size_t)k;
    return 0;
}

int ll__http_multipart_read(ll__http_multipart *m, char *buf, size_t cap, size_t *n, char *err) {
    size_t o = 0;
    while (o < cap) {
        if (m->i == m->n) { /* the closing delimiter */
            char end[64];
            int len = snprintf(end, sizeof end, "--%s--\r\n", m->boundary);
            if (m->off >= (uint64_t)len) break;
            size_t k = (size_t)len - (size_t)m->off;
            if (k > cap - o) k = cap - o;
            memcpy(buf + o, end + m->off, k);
            o += k;
            m->off += k;
            continue;
        }
        mpart *x = &m->v[m->i];
        const char *src = NULL;
        uint64_t total = 0;
        if (m->stage == 0) src = x->head, total = x->hlen;
        else if (m->stage == 2) src = "\r\n", total = 2;
        else if (!x->path) src = x->value, total = x->vlen;
        else total = x->size;
        if (m->off >= total) {
            if (++m->stage == 3) {
                m->stage = 0;
                m->i++;
            }
            m->off = 0;
            continue;
        }
        if (src) {
            uint64_t k = total - m->off;
            if (k > cap - o) k = cap - o;
            memcpy(buf + o, src + m->off, (size_t)k);
            o += (size_t)k;
            m->off += k;
        } else {
            size_t got = 0;
            int rc = read_file(m, x, buf + o, cap - o, &got, err);
            if (rc) return rc;
            o += got;
        }
    }
    *n = o;
    return 0;
}
