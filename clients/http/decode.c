/*
 * decode.c — Content-Encoding: gzip and deflate with zlib, stacked, with a limit on the output.
 *
 * Design notes:
 * - Codings listed in Content-Encoding were applied in order, so they are undone in reverse; each
 *   layer inflates into a 16 KiB buffer that is pushed through the next layer as soon as it fills,
 *   so nothing is ever decoded as a whole: memory stays a few buffers per response however large
 *   the body.
 * - The number of layers is capped (a "gzip, gzip, gzip, ..." header is a cheap way to make a
 *   client work) and every layer's output is capped at the decoded-size limit, so a gzip bomb
 *   (a few KiB that inflate to gigabytes) fails with LL_ETOOLARGE after at most that many bytes.
 * - "deflate" means the zlib format (RFC 9110 8.4.1.2), but some servers send a raw deflate
 *   stream; the first two bytes tell them apart (a zlib header is a multiple of 31 with method 8),
 *   as browsers and curl do.
 * - gzip members may be concatenated (RFC 1952 2.2): after the end of one, the next is decoded.
 *   Bytes after the end that do not form a member are ignored, as gzip(1) and curl do.
 * - zlib allocates through libloop's allocator hook.
 */
#include <string.h>
#include <zlib.h>
#include "http_internal.h"

#define OUTBUF 16384

typedef struct layer {
    z_stream z;
    bool init;
    bool gzip;         /* else deflate (zlib or raw) */
    bool ended;        /* saw Z_STREAM_END (and nothing valid after it) */
    bool trailing;     /* ignoring bytes after the end */
    bool any_in;
    unsigned char hdr[2];
    unsigned hdr_n;    /* deflate: bytes held back to tell zlib from raw */
    uint64_t out;
    unsigned char *buf;
} layer;

struct ll__http_decoder {
    layer *l;
    unsigned n;
    uint64_t max_out;
};

static voidpf zalloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    if (size && items > SIZE_MAX / size) return Z_NULL;
    return ll_malloc((size_t)items * size);
}
static void zfree(voidpf opaque, voidpf p) {
    (void)opaque;
    ll_free(p);
}

static bool coding_is(const char *s, size_t n, const char *want) {
    return ll__http_name_eq(s, n, want);
}

void ll__http_decoder_free(ll__http_decoder *d) {
    if (!d) return;
    for (unsigned i = 0; i < d->n; i++) {
        if (d->l[i].init) inflateEnd(&d->l[i].z);
        ll_free(d->l[i].buf);
    }
    ll_free(d->l);
    ll_free(d);
}

int ll__http_decoder_new(ll__http_decoder **out, const char *ce, unsigned max_layers,
                         uint64_t max_out, char *err) {
    *out = NULL;
    if (!ce) return 0;
    if (!max_layers) max_layers = LL__HTTP_MAX_ENCODINGS;
    /* count and check the codings first */
    unsigned count = 0;
    for (const char *p = ce; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        size_t n = (size_t)(e - s);
        if (n == 0 || coding_is(s, n, "identity")) continue;
        if (!coding_is(s, n, "gzip") && !coding_is(s, n, "x-gzip") && !coding_is(s, n, "deflate"))
            return ll__http_errf(err, LL_EHTTP_DECODE, "unsupported Content-Encoding '%.*s'",
                                 (int)(n > 40 ? 40 : n), s);
        if (++count > max_layers)
            return ll__http_errf(err, LL_EHTTP_DECODE,
                                 "more than %u stacked Content-Encodings ('%.60s')", max_layers,
                                 ce);
    }
    if (count == 0) return 0;
    ll__http_decoder *d = ll_calloc(1, sizeof *d);
    if (!d || !(d->l = ll_calloc(count, sizeof *d->l))) {
        ll_free(d);
        return ll__http_errf(err, LL_ENOMEM, "out of memory");
    }
    d->n = count;
    d->max_out = max_out ? max_out : LL__HTTP_MAX_BODY;
    /* fill in reverse: the last coding listed is undone first */
    unsigned i = count;
    for (const char *p = ce; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        size_t n = (size_t)(e - s);
        if (n == 0 || coding_is(s, n, "identity")) continue;
        layer *L = &d->l[--i];
        L->gzip = !coding_is(s, n, "deflate");
        L->z.zalloc = zalloc;
        L->z.zfree = zfree;
        if (!(L->buf = ll_malloc(OUTBUF))) {
            ll__http_decoder_free(d);
            return ll__http_errf(err, LL_ENOMEM, "out of memory");
        }
        if (L->gzip) {
            if (inflateInit2(&L->z, 15 + 16) != Z_OK) {
                ll__http_decoder_free(d);
                return ll__http_errf(err, LL_ENOMEM, "out of memory (zlib)");
            }
            L->init = true;
        }
    }
    *out = d;
    return 0;
}

static int push(ll__http_decoder *d, unsigned i, const unsigned char *in, size_t n,
                ll__http_sink sink, void *arg, char *err);

static int emit(ll__http_decoder *d, unsigned i, const unsigned char *data, size_t n,
                ll__http_sink sink, void *arg, char *err) {
    layer *L = &d->l[i];
    if (n > d->max_out - L->out)
        return ll__http_errf(err, LL_ETOOLARGE,
                             "decoded body exceeds the limit of %llu bytes (a compression bomb?)",
                             (unsigned long long)d->max_out);
    L->out += n;
    if (i + 1 < d->n) return push(d, i + 1, data, n, sink, arg, err);
    return sink(arg, (const char *)data, n, err);
}

/* deflate: decide zlib or raw from the first two bytes */
static int start_deflate(layer *L, char *err) {
    unsigned cmf = L->hdr[0], flg = L->hdr[1];
    bool zlib_hdr = (cmf & 0x0f) == 8 && (cmf >> 4) <= 7 && ((cmf << 8) | flg) % 31 == 0;
    if (inflateInit2(&L->z, zlib_hdr ? 15 : -15) != Z_OK)
        return ll__http_errf(err, LL_ENOMEM, "out of memory (zlib)");
    L->init = true;
    return 0;
}

static int inflate_some(ll__http_decoder *d, unsigned i, const unsigned char *in, size_t n,
                        ll__http_sink sink, void *arg, char *err) {
    layer *L = &d->l[i];
    while (n > 0) {
        if (L->trailing) return 0;
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        L->z.next_in = (Bytef *)(uintptr_t)in;
        L->z.avail_in = chunk;
        do {
            L->z.next_out = L->buf;
            L->z.avail_out = OUTBUF;
            int zr = inflate(&L->z, Z_NO_FLUSH);
            size_t produced = OUTBUF - L->z.avail_out;
            if (zr == Z_MEM_ERROR) return ll__http_errf(err, LL_ENOMEM, "out of memory (zlib)");
            if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT) {
                if (L->ended && L->gzip) { /* not another member: trailing bytes, ignored */
                    L->trailing = true;
                    return 0;
                }
                return ll__http_errf(err, LL_EHTTP_DECODE, "corrupt %s data: %s",
                                     L->gzip ? "gzip" : "deflate",
                                     L->z.msg ? L->z.msg : "invalid stream");
            }
            if (produced) {
                L->ended = false;
                int rc = emit(d, i, L->buf, produced, sink, arg, err);
                if (rc) return rc;
            }
            if (zr == Z_STREAM_END) {
                L->ended = true;
                if (!L->gzip) { /* deflate has no members: the rest is ignored */
                    L->trailing = true;
                    return 0;
                }
                inflateReset(&L->z);
                continue;
            }
            if (zr == Z_BUF_ERROR && produced == 0) break; /* needs more input */
        } while (L->z.avail_in > 0 || L->z.avail_out == 0);
        in += chunk;
        n -= chunk;
    }
    return 0;
}

static int push(ll__http_decoder *d, unsigned i, const unsigned char *in, size_t n,
                ll__http_sink sink, void *arg, char *err) {
    layer *L = &d->l[i];
    if (n) L->any_in = true;
    if (!L->init) { /* deflate, format not known yet */
        while (L->hdr_n < 2 && n > 0) {
            L->hdr[L->hdr_n++] = *in++;
            n--;
        }
        if (L->hdr_n < 2) return 0;
        int rc = start_deflate(L, err);
        if (!rc) rc = inflate_some(d, i, L->hdr, 2, sink, arg, err);
        if (rc) return rc;
    }
    return inflate_some(d, i, in, n, sink, arg, err);
}

int ll__http_decoder_feed(ll__http_decoder *d, const char *in, size_t n, ll__http_sink sink,
                          void *arg, char *err) {
    return push(d, 0, (const unsigned char *)in, n, sink, arg, err);
}

int ll__http_decoder_finish(ll__http_decoder *d, ll__http_sink sink, void *arg, char *err) {
    (void)sink;
    (void)arg;
    for (unsigned i = 0; i < d->n; i++) {
        layer *L = &d->l[i];
        if (i == 0 && !L->any_in) return 0; /* an empty body: nothing was encoded */
        if (!L->ended)
            return ll__http_errf(err, LL_EHTTP_DECODE, "%s stream truncated",
                                 L->gzip ? "gzip" : "deflate");
    }
    return 0;
}

uint64_t ll__http_decoder_out(const ll__http_decoder *d) {
    return d && d->n ? d->l[d->n - 1].out : 0;
}
