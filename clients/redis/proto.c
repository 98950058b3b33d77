/*
 * proto.c — the sans-I/O core: RESP bytes in, reply objects out; command formatting; the queue of
 * reply slots. No sockets, no loop: the tests feed it byte by byte and in random splits.
 *
 * Design notes:
 * - hiredis's redisReader parses and calls our reply-object functions (reply.c). But hiredis 0.14
 *   buffers a whole bulk string before it calls createString, and calls createArray before any
 *   element has arrived, so caps checked only in those functions come too late to bound memory: a
 *   "$1000000000\r\n" header would make it buffer a gigabyte. The framing guard below therefore
 *   walks the same bytes first — type byte, length line, bulk payload, array counts — and stops at
 *   the first header that breaks RESP or a cap, before hiredis has buffered it. It does not build
 *   anything (hiredis does); it is hand-written because no library offers a RESP framer with caps.
 * - The guard also checks what hiredis 0.14 does not: "\r\n" after every line and bulk (a bulk
 *   followed by two other bytes would shift every later reply onto the wrong command), lengths
 *   that are numbers, and negative lengths other than -1 (nil).
 * - It counts complete replies, so hiredis is asked for a reply only when one is there.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "redis_internal.h"

#define LINE_MAX_BYTES (1u << 20) /* a status, error or integer line */
#define DEPTH_HARD_MAX 7          /* hiredis 0.14's reader stops deeper than 7 */

void ll__rp_limits_default(rp_limits *l) {
    if (!l->max_bulk) l->max_bulk = (size_t)512 << 20;
    if (!l->max_elements) l->max_elements = (size_t)16 << 20;
    if (!l->max_reply) l->max_reply = (size_t)1 << 30;
    if (l->max_depth <= 0 || l->max_depth > DEPTH_HARD_MAX) l->max_depth = DEPTH_HARD_MAX;
}

typedef enum { SC_TYPE = 0, SC_LINE, SC_BULK } scan_state;

struct rp_reader {
    redisReader *hr;
    rp_limits lim;
    /* framing guard */
    scan_state st;
    char type;                /* the current item's type byte */
    char num[24];             /* its length or integer line */
    size_t numlen, linelen;
    bool cr;                  /* the line's last byte was '\r' */
    uint64_t bulk_left;       /* payload + CRLF bytes still to come */
    int depth;
    long long left[DEPTH_HARD_MAX + 1]; /* elements still expected per open array */
    uint64_t reply_bytes;     /* of the reply in progress */
    size_t complete;          /* whole replies fed to hiredis and not yet taken */
    int err;                  /* the guard's or hiredis's error, sticky */
    char errmsg[200];
};

rp_reader *ll__rp_reader_new(const rp_limits *lim) {
    rp_reader *r = ll_calloc(1, sizeof *r);
    if (!r) return NULL;
    if (lim) r->lim = *lim;
    ll__rp_limits_default(&r->lim);
    r->hr = redisReaderCreateWithFunctions(ll__redis_hiredis_fns);
    if (!r->hr) {
        ll_free(r);
        return NULL;
    }
    return r;
}

void ll__rp_reader_free(rp_reader *r) {
    if (!r) return;
    redisReaderFree(r->hr);
    ll_free(r);
}

const char *ll__rp_error(const rp_reader *r) { return r->err ? r->errmsg : ""; }

static int fail(rp_reader *r, int code, const char *fmt, ...) LL_PRINTF(3, 4);
static int fail(rp_reader *r, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
    r->err = code;
    return code;
}

static const char *human(size_t n, char *buf, size_t len) {
    if (n >= (1u << 20) && n % (1u << 20) == 0) snprintf(buf, len, "%zu MiB", n >> 20);
    else snprintf(buf, len, "%zu bytes", n);
    return buf;
}

/* An item (of any type) is complete: close the arrays it completes; count a whole reply. */
static void item_done(rp_reader *r) {
    r->st = SC_TYPE;
    while (r->depth > 0) {
        if (--r->left[r->depth - 1] > 0) return;
        r->depth--;
    }
    r->complete++;
    r->reply_bytes = 0;
}

/* "-1", "42": a decimal long long, nothing else. */
static bool parse_ll(const char *s, size_t n, long long *out) {
    if (n == 0 || n > 20) return false;
    size_t i = s[0] == '-' ? 1 : 0;
    if (i == n) return false;
    unsigned long long limit = i ? 9223372036854775808ULL : 9223372036854775807ULL, v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = s[0] == '-' ? (long long)(0 - v) : (long long)v;
    return true;
}

/* A length or integer line is complete (without its CRLF). */
static int line_done(rp_reader *r) {
    char b1[32], b2[32];
    if (r->type == '+' || r->type == '-') {
        item_done(r);
        return 0;
    }
    long long v;
    if (!parse_ll(r->num, r->numlen, &v))
        return fail(r, LL_EREDIS_PROTO, "redis protocol error: '%c' line is not a number: \"%.*s\"",
                    r->type, (int)r->numlen, r->num);
    if (r->type == ':') {
        item_done(r);
        return 0;
    }
    if (v < -1)
        return fail(r, LL_EREDIS_PROTO, "redis protocol error: negative %s length %lld",
                    r->type == '$' ? "bulk" : "array", v);
    if (v == -1) { /* nil bulk or nil array */
        item_done(r);
        return 0;
    }
    if (r->type == '$') {
        if ((unsigned long long)v > r->lim.max_bulk)
            return fail(r, LL_ETOOLARGE, "redis reply: bulk string of %lld bytes is over the limit "
                        "(%s)", v, human(r->lim.max_bulk, b1, sizeof b1));
        if (r->reply_bytes + (uint64_t)v + 2 > r->lim.max_reply)
            return fail(r, LL_ETOOLARGE, "redis reply: larger than the limit (%s)",
                        human(r->lim.max_reply, b2, sizeof b2));
        r->bulk_left = (uint64_t)v + 2;
        r->st = SC_BULK;
        return 0;
    }
    /* '*' */
    if ((unsigned long long)v > r->lim.max_elements)
        return fail(r, LL_ETOOLARGE, "redis reply: array of %lld elements is over the limit (%zu)",
                    v, r->lim.max_elements);
    if (v == 0) {
        item_done(r);
        return 0;
    }
    if (r->depth >= r->lim.max_depth)
        return fail(r, LL_ETOOLARGE, "redis reply: arrays nested deeper than %d levels",
                    r->lim.max_depth);
    r->left[r->depth++] = v;
    r->st = SC_TYPE;
    return 0;
}

/* Walk n bytes; return how many were accepted (all of them unless an error stopped it). */
static size_t scan(rp_reader *r, const char *p, size_t n) {
    size_t i = 0;
    while (i < n && !r->err) {
        switch (r->st) {
        case SC_TYPE: {
            char t = p[i++];
            r->reply_bytes++;
            if (t != '+' && t != '-' && t != ':' && t != '$' && t != '*') {
                if ((unsigned char)t >= 0x20 && (unsigned char)t < 0x7f)
                    fail(r, LL_EREDIS_PROTO, "redis protocol error: bad type byte 0x%02x ('%c')",
                         (unsigned char)t, t);
                else
                    fail(r, LL_EREDIS_PROTO, "redis protocol error: bad type byte 0x%02x",
                         (unsigned char)t);
                return i - 1;
            }
            r->type = t;
            r->numlen = r->linelen = 0;
            r->cr = false;
            r->st = SC_LINE;
            break;
        }
        case SC_LINE: {
            /* Status/error lines are copied by nobody here (hiredis has them); only the short
             * number lines are kept. */
            bool numeric = r->type == ':' || r->type == '$' || r->type == '*';
            size_t start = i;
            while (i < n) {
                char c = p[i++];
                if (r->cr) {
                    if (c != '\n') {
                        r->reply_bytes += i - start;
                        fail(r, LL_EREDIS_PROTO, "redis protocol error: CR not followed by LF");
                        return i - 1;
                    }
                    r->reply_bytes += i - start;
                    if (r->reply_bytes > r->lim.max_reply) { /* a whole line in one feed, too */
                        char b[32];
                        fail(r, LL_ETOOLARGE, "redis reply: larger than the limit (%s)",
                             human(r->lim.max_reply, b, sizeof b));
                        return i;
                    }
                    if (line_done(r)) return i;
                    goto next;
                }
                if (c == '\r') {
                    r->cr = true;
                    continue;
                }
                if (c == '\n') {
                    fail(r, LL_EREDIS_PROTO, "redis protocol error: line ends without CR");
                    return i - 1;
                }
                if (numeric) {
                    if (r->numlen >= 21) {
                        fail(r, LL_EREDIS_PROTO, "redis protocol error: '%c' line too long for "
                             "a number", r->type);
                        return i - 1;
                    }
                    r->num[r->numlen++] = c;
                } else if (++r->linelen > LINE_MAX_BYTES) {
                    fail(r, LL_ETOOLARGE, "redis reply: status or error line over %u bytes",
                         LINE_MAX_BYTES);
                    return i - 1;
                }
            }
            r->reply_bytes += i - start;
            if (r->reply_bytes > r->lim.max_reply) {
                char b[32];
                fail(r, LL_ETOOLARGE, "redis reply: larger than the limit (%s)",
                     human(r->lim.max_reply, b, sizeof b));
                return i;
            }
        next:
            break;
        }
        case SC_BULK: {
            /* The payload is skipped in one step; the last two bytes must be CRLF. */
            if (r->bulk_left > 2) {
                uint64_t take = r->bulk_left - 2;
                if (take > n - i) take = n - i;
                i += (size_t)take;
                r->bulk_left -= take;
                r->reply_bytes += take;
                break;
            }
            char c = p[i++];
            r->reply_bytes++;
            if (c != (r->bulk_left == 2 ? '\r' : '\n')) {
                fail(r, LL_EREDIS_PROTO, "redis protocol error: bulk string not followed by CRLF");
                return i - 1;
            }
            if (--r->bulk_left == 0) item_done(r);
            break;
        }
        }
    }
    return i;
}

int ll__rp_feed(rp_reader *r, const char *buf, size_t n) {
    if (r->err) return r->err;
    size_t ok = scan(r, buf, n);
    if (ok && redisReaderFeed(r->hr, buf, ok) != REDIS_OK && !r->err)
        return fail(r, LL_ENOMEM, "redis reader: out of memory");
    return r->err;
}

int ll__rp_next(rp_reader *r, ll_redis_reply **out) {
    *out = NULL;
    if (r->complete == 0) return r->err;
    void *reply = NULL;
    if (redisReaderGetReply(r->hr, &reply) != REDIS_OK || !reply) {
        /* hiredis itself refused (out of memory in our object functions): no more replies */
        r->complete = 0;
        return fail(r, r->hr->err == REDIS_ERR_OOM || !r->hr->err ? LL_ENOMEM : LL_EREDIS_PROTO,
                    "redis reader: %s", r->hr->err ? r->hr->errstr : "out of memory");
    }
    r->complete--;
    *out = reply;
    return 1;
}

/* ---- output buffer and formatting ---- */

/* Room for more bytes after len; b is untouched on failure. */
static int buf_reserve(rp_buf *b, size_t more) {
    if (more > SIZE_MAX / 4 - b->len) return LL_ENOMEM;
    if (b->len + more > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + more) ncap *= 2;
        char *d = ll_realloc(b->data, ncap);
        if (!d) return LL_ENOMEM;
        b->data = d;
        b->cap = ncap;
    }
    return 0;
}

int ll__rp_buf_append(rp_buf *b, const void *p, size_t n) {
    if (buf_reserve(b, n)) return LL_ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void ll__rp_buf_free(rp_buf *b) {
    ll_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* The decimal digits of v, written backwards ending at end; returns where they start. */
static char *put_u64(char *end, uint64_t v) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* "<c><n>\r\n" at p; returns the byte after it. */
static char *put_header(char *p, char c, uint64_t n) {
    char tmp[24], *e = tmp + sizeof tmp, *s = put_u64(e, n);
    *p++ = c;
    memcpy(p, s, (size_t)(e - s));
    p += e - s;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static size_t digits(uint64_t v) {
    size_t n = 1;
    while (v >= 10) v /= 10, n++;
    return n;
}

/* A command is a RESP array of bulk strings: the bytes redisFormatCommandArgv produces (the proto
 * test compares the two on random commands), encoded here straight into the output buffer. hiredis
 * 0.14 offers only formatters that return a fresh allocation (malloc, an sprintf per argument,
 * then our copy and its free): that was ~13 % of the client's cycles in make bench-redis (2). The
 * printf-style variant (format strings: hiredis's parser is the point there) still uses hiredis. */
int ll__rp_format_argv(rp_buf *b, int argc, const char *const *argv, const size_t *lens) {
    if (argc <= 0 || !argv) return LL_EINVAL;
    size_t total = 1 + digits((uint64_t)argc) + 2;
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        if (n > SIZE_MAX / 4 - total) return LL_ENOMEM; /* no wrap-around, whatever lens says */
        total += 1 + digits(n) + 2 + n + 2;
    }
    if (buf_reserve(b, total)) return LL_ENOMEM;
    char *p = put_header(b->data + b->len, '*', (uint64_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        p = put_header(p, '$', n);
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    b->len += total;
    return 0;
}

int ll__rp_vformat(rp_buf *b, const char *fmt, va_list ap) {
    if (!fmt || !*fmt) return LL_EINVAL;
    char *cmd = NULL;
    int n = redisvFormatCommand(&cmd, fmt, ap);
    if (n == -2) return LL_EINVAL;
    if (n < 0 || !cmd) return LL_ENOMEM;
    int rc = ll__rp_buf_append(b, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return rc;
}

/* ---- reply slots ---- */

int ll__rp_ring_reserve(rp_ring *q, size_t more) {
    if (q->n + more > q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 64;
        while (ncap < q->n + more) ncap *= 2;
        rp_slot *v = ll_malloc(ncap * sizeof *v);
        if (!v) return LL_ENOMEM;
        for (size_t i = 0; i < q->n; i++) v[i] = q->v[(q->head + i) & (q->cap - 1)];
        ll_free(q->v);
        q->v = v;
        q->head = 0;
        q->cap = ncap;
    }
    return 0;
}

int ll__rp_ring_push(rp_ring *q, rp_slot s) {
    if (ll__rp_ring_reserve(q, 1)) return LL_ENOMEM;
    q->v[(q->head + q->n) & (q->cap - 1)] = s;
    q->n++;
    return 0;
}

rp_slot *ll__rp_ring_front(rp_ring *q) { return q->n ? &q->v[q->head] : NULL; }

rp_slot *ll__rp_ring_at(rp_ring *q, size_t i) {
    return i < q->n ? &q->v[(q->head + i) & (q->cap - 1)] : NULL;
}

void ll__rp_ring_pop(rp_ring *q) {
    if (!q->n) return;
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
}

void ll__rp_ring_free(rp_ring *q) {
    ll_free(q->v);
    memset(q, 0, sizeof *q);
}
