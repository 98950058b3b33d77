/*
 * fuzz_redis_resp.c — the RESP reader with its caps (the framing guard in front of hiredis's
 * redisReader) and the command formatter.
 *
 * Input: byte 0 picks small caps (bit 0) and single-byte pieces (bit 1); the rest is what the
 * server sent. The bytes are read twice, whole and in random splits, draining replies after each
 * piece. Invariants: the same replies (compared by a canonical hash) and the same final code
 * either way (input both malformed and over a cap may say either); every reply respects the caps
 * (bulk length, array count, nesting depth); a failure says why; a reply copied with
 * ll__redis_reply_dup hashes the same; an array of bulk strings formatted as a command and read
 * back is the same array.
 */
#include <string.h>
#include "fuzz.h"
#include "redis_internal.h"

typedef struct outcome {
    int rc;
    size_t nreplies;
    uint64_t hash;
} outcome;

static uint64_t reply_hash(uint64_t h, const ll_redis_reply *r, const rp_limits *lim, int depth) {
    FUZZ_CHECK(depth <= lim->max_depth + 1);
    int type = ll_redis_reply_type(r);
    h = fuzz_hash(h, &type, sizeof type);
    const char *s;
    size_t len;
    long long v;
    switch (type) {
    case LL_REDIS_STATUS:
    case LL_REDIS_ERROR:
    case LL_REDIS_BULK:
        FUZZ_CHECK(ll_redis_reply_string(r, &s, &len) == 0 && s && s[len] == '\0');
        if (type == LL_REDIS_BULK) FUZZ_CHECK(len <= lim->max_bulk);
        else FUZZ_CHECK(!memchr(s, '\r', len) && !memchr(s, '\n', len));
        h = fuzz_hash(h, &len, sizeof len);
        h = fuzz_hash(h, s, len);
        break;
    case LL_REDIS_INTEGER:
        FUZZ_CHECK(ll_redis_reply_integer(r, &v) == 0);
        h = fuzz_hash(h, &v, sizeof v);
        break;
    case LL_REDIS_ARRAY:
        len = ll_redis_reply_len(r);
        FUZZ_CHECK(len <= lim->max_elements);
        h = fuzz_hash(h, &len, sizeof len);
        for (size_t i = 0; i < len; i++) {
            const ll_redis_reply *e = ll_redis_reply_element(r, i);
            FUZZ_CHECK(e);
            h = reply_hash(h, e, lim, depth + 1);
        }
        FUZZ_CHECK(ll_redis_reply_element(r, len) == NULL);
        break;
    default:
        FUZZ_CHECK(type == LL_REDIS_NIL && ll_redis_reply_is_nil(r));
    }
    return h;
}

/* An array of bulk strings, formatted as a command and read back, is the same array. */
static void check_format_roundtrip(const ll_redis_reply *r, const rp_limits *lim) {
    size_t n = ll_redis_reply_len(r);
    if (ll_redis_reply_type(r) != LL_REDIS_ARRAY || n == 0 || n > 64) return;
    const char *argv[64];
    size_t lens[64];
    for (size_t i = 0; i < n; i++)
        if (ll_redis_reply_string(ll_redis_reply_element(r, i), &argv[i], &lens[i]) != 0 ||
            ll_redis_reply_type(ll_redis_reply_element(r, i)) != LL_REDIS_BULK)
            return;
    rp_buf b = {0};
    if (ll__rp_format_argv(&b, (int)n, argv, lens) != 0) {
        ll__rp_buf_free(&b);
        return;
    }
    rp_reader *rd = ll__rp_reader_new(lim);
    FUZZ_CHECK(rd);
    FUZZ_CHECK(ll__rp_feed(rd, b.data, b.len) == 0);
    ll_redis_reply *back = NULL;
    FUZZ_CHECK(ll__rp_next(rd, &back) == 1 && back);
    FUZZ_CHECK(reply_hash(0, back, lim, 0) == reply_hash(0, r, lim, 0));
    ll_redis_reply *none = NULL;
    FUZZ_CHECK(ll__rp_next(rd, &none) == 0 && !none);
    ll_redis_reply_free(back);
    ll__rp_reader_free(rd);
    ll__rp_buf_free(&b);
}

static void drain(rp_reader *rd, const rp_limits *lim, outcome *o, bool extra) {
    ll_redis_reply *r;
    int k;
    while ((k = ll__rp_next(rd, &r)) == 1) {
        o->nreplies++;
        uint64_t h = reply_hash(0, r, lim, 0);
        o->hash = fuzz_hash(o->hash, &h, sizeof h);
        if (extra) {
            ll_redis_reply *copy = ll__redis_reply_dup(r);
            if (copy) {
                FUZZ_CHECK(reply_hash(0, copy, lim, 0) == h);
                ll_redis_reply_free(copy);
            }
            check_format_roundtrip(r, lim);
        }
        ll_redis_reply_free(r);
    }
    if (k < 0 && !o->rc) o->rc = k;
}

static void parse(const uint8_t *p, size_t n, fuzz_rng *rng, size_t max_piece,
                  const rp_limits *lim, outcome *o) {
    memset(o, 0, sizeof *o);
    rp_reader *rd = ll__rp_reader_new(lim);
    FUZZ_CHECK(rd);
    size_t off = 0;
    while (off < n && !o->rc) {
        size_t k = n - off;
        if (rng) {
            size_t piece = fuzz_rng_len(rng, max_piece);
            if (piece < k) k = piece;
        }
        int rc = ll__rp_feed(rd, (const char *)p + off, k);
        off += k;
        drain(rd, lim, o, rng == NULL);
        if (rc && !o->rc) o->rc = rc;
    }
    drain(rd, lim, o, false);
    if (o->rc) {
        FUZZ_CHECK(o->rc == LL_EREDIS_PROTO || o->rc == LL_ETOOLARGE || o->rc == LL_ENOMEM);
        FUZZ_CHECK(ll__rp_error(rd)[0] != '\0');
        /* after an error the reader takes nothing more */
        FUZZ_CHECK(ll__rp_feed(rd, "+OK\r\n", 5) == o->rc);
    }
    ll__rp_reader_free(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    rp_limits lim = {0};
    if (data[0] & 1) lim = (rp_limits){.max_bulk = 64, .max_elements = 8, .max_reply = 512,
                                       .max_depth = 3};
    ll__rp_limits_default(&lim);
    outcome whole, split;
    parse(data + 1, size - 1, NULL, 0, &lim, &whole);
    fuzz_rng rng;
    fuzz_rng_seed(&rng, data, size);
    parse(data + 1, size - 1, &rng, (data[0] & 2) ? 1 : 29, &lim, &split);
    /* Input both malformed and over a cap may be reported either way, depending on which the
     * guard sees first in a piece: otherwise the same outcome. */
    FUZZ_CHECK(whole.rc == split.rc ||
               ((whole.rc == LL_EREDIS_PROTO || whole.rc == LL_ETOOLARGE) &&
                (split.rc == LL_EREDIS_PROTO || split.rc == LL_ETOOLARGE)));
    FUZZ_CHECK(whole.nreplies == split.nreplies);
    FUZZ_CHECK(whole.hash == split.hash);
    return 0;
}
