/*
 * test_redis_proto.c — the sans-I/O core alone: replies fed whole, byte by byte and in random
 * splits give the same objects; malformed input and every cap give a clear error (never a crash,
 * never memory that follows an announced length); formatting is binary-safe; reply slots keep
 * their order.
 */
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "harness/harness.h"
#include "redis_internal.h"

/* A compact rendering of a reply tree for comparisons. */
static void render(const ll_redis_reply *r, char *out, size_t n) {
    size_t len = strlen(out);
    switch (r->type) {
    case LL_REDIS_NIL: snprintf(out + len, n - len, "nil"); break;
    case LL_REDIS_INTEGER: snprintf(out + len, n - len, "i%lld", r->integer); break;
    case LL_REDIS_STATUS: snprintf(out + len, n - len, "+%s", r->str); break;
    case LL_REDIS_ERROR: snprintf(out + len, n - len, "-%s", r->str); break;
    case LL_REDIS_BULK: snprintf(out + len, n - len, "$%zu:%.*s", r->len, (int)r->len, r->str); break;
    case LL_REDIS_ARRAY:
        snprintf(out + len, n - len, "[");
        for (size_t i = 0; i < r->len; i++) {
            if (i) snprintf(out + strlen(out), n - strlen(out), ",");
            render(r->elem[i], out, n);
        }
        snprintf(out + strlen(out), n - strlen(out), "]");
        break;
    }
}

static const char stream[] =
    "+OK\r\n"
    "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    ":42\r\n:-7\r\n"
    "$5\r\nhello\r\n"
    "$0\r\n\r\n"
    "$-1\r\n"
    "*-1\r\n"
    "*0\r\n"
    "$6\r\nab\r\ncd\r\n" /* binary-safe: CRLF inside a bulk */
    "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n-ERR inner\r\n"
    "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:7\r\n";

static const char *expected[] = {
    "+OK", "-WRONGTYPE Operation against a key holding the wrong kind of value", "i42", "i-7",
    "$5:hello", "$0:", "nil", "nil", "[]", "$6:ab\r\ncd", "[i1,[$1:a,nil],-ERR inner]",
    "[[[[[[[i7]]]]]]]"};
#define NEXPECTED (sizeof expected / sizeof *expected)

/* Feed `stream` in pieces cut by cut(i) and check every reply. */
static void feed_and_check(size_t (*cut)(size_t pos, size_t left)) {
    rp_reader *r = ll__rp_reader_new(NULL);
    assert_non_null(r);
    size_t pos = 0, total = sizeof stream - 1, got = 0;
    while (pos < total) {
        size_t n = cut(pos, total - pos);
        assert_int_equal(ll__rp_feed(r, stream + pos, n), 0);
        pos += n;
        ll_redis_reply *rep;
        int k;
        while ((k = ll__rp_next(r, &rep)) == 1) {
            char buf[512] = "";
            render(rep, buf, sizeof buf);
            assert_true(got < NEXPECTED);
            assert_string_equal(buf, expected[got]);
            got++;
            ll_redis_reply_free(rep);
        }
        assert_int_equal(k, 0);
    }
    assert_int_equal(got, NEXPECTED);
    ll__rp_reader_free(r);
}

static size_t cut_whole(size_t pos, size_t left) { (void)pos; return left; }
static size_t cut_one(size_t pos, size_t left) { (void)pos, (void)left; return 1; }
static size_t cut_random(size_t pos, size_t left) {
    (void)pos;
    size_t n = 1 + (size_t)(rand() % 13);
    return n < left ? n : left;
}

static void test_whole(void **state) { (void)state; feed_and_check(cut_whole); }
static void test_byte_by_byte(void **state) { (void)state; feed_and_check(cut_one); }
static void test_random_splits(void **state) {
    (void)state;
    srand(12345);
    for (int i = 0; i < 300; i++) feed_and_check(cut_random);
}

/* Bad input: feed it (byte by byte, so the error comes at the first bad byte) and expect the code
 * and a message containing `want`. `good` replies come first and must still be delivered. */
static void bad(const char *input, size_t len, const rp_limits *lim, int code, const char *want,
                int good) {
    for (int mode = 0; mode < 2; mode++) {
        rp_reader *r = ll__rp_reader_new(lim);
        assert_non_null(r);
        int rc = 0;
        if (mode == 0) rc = ll__rp_feed(r, input, len);
        else
            for (size_t i = 0; i < len && rc == 0; i++) rc = ll__rp_feed(r, input + i, 1);
        ll_redis_reply *rep;
        int k, n = 0;
        while ((k = ll__rp_next(r, &rep)) == 1) {
            n++;
            ll_redis_reply_free(rep);
        }
        if (k != code || !strstr(ll__rp_error(r), want))
            fail_msg("input %.40s: got %d '%s', want %d '%s'", input, k, ll__rp_error(r), code, want);
        assert_int_equal(rc, code);
        assert_int_equal(n, good);
        /* sticky: nothing more is accepted */
        assert_int_equal(ll__rp_feed(r, "+OK\r\n", 5), code);
        ll__rp_reader_free(r);
    }
}

static void test_malformed(void **state) {
    (void)state;
    bad("+OK\r\n?what\r\n", 12, NULL, LL_EREDIS_PROTO, "bad type byte 0x3f", 1);
    bad("%2\r\n", 4, NULL, LL_EREDIS_PROTO, "bad type byte", 0); /* RESP3 map: not spoken */
    bad("$-5\r\n", 5, NULL, LL_EREDIS_PROTO, "negative bulk length -5", 0);
    bad("*-2\r\n", 5, NULL, LL_EREDIS_PROTO, "negative array length -2", 0);
    bad("$abc\r\n", 6, NULL, LL_EREDIS_PROTO, "not a number", 0);
    bad(":12x\r\n", 6, NULL, LL_EREDIS_PROTO, "not a number", 0);
    bad("$99999999999999999999999\r\n", 26, NULL, LL_EREDIS_PROTO, "too long for a number", 0);
    bad("+OK\n", 4, NULL, LL_EREDIS_PROTO, "without CR", 0);
    bad("+OK\rX\r\n", 7, NULL, LL_EREDIS_PROTO, "CR not followed by LF", 0);
    bad("$3\r\nabcXY", 9, NULL, LL_EREDIS_PROTO, "not followed by CRLF", 0);
    bad(":1\r\n$3\r\nabc\rX", 13, NULL, LL_EREDIS_PROTO, "not followed by CRLF", 1);
    /* caps */
    bad("$1073741825\r\n", 13, NULL, LL_ETOOLARGE, "bulk string of 1073741825 bytes", 0);
    bad("*1000000000\r\n", 13, NULL, LL_ETOOLARGE, "array of 1000000000 elements", 0);
    bad("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", 36, NULL, LL_ETOOLARGE,
        "nested deeper than 7", 0);
    rp_limits lim = {.max_bulk = 10, .max_elements = 3, .max_reply = 30, .max_depth = 2};
    bad("$11\r\n", 5, &lim, LL_ETOOLARGE, "bulk string of 11 bytes is over the limit (10 bytes)", 0);
    bad("*4\r\n", 4, &lim, LL_ETOOLARGE, "array of 4 elements", 0);
    bad("*1\r\n*1\r\n*1\r\n", 12, &lim, LL_ETOOLARGE, "deeper than 2", 0);
    bad("*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n", 38, &lim, LL_ETOOLARGE,
        "larger than the limit (30 bytes)", 0);
    /* a huge declared bulk is refused at its header: nothing was buffered for it */
    rp_reader *r = ll__rp_reader_new(NULL);
    assert_int_equal(ll__rp_feed(r, "$2000000000\r\n", 13), LL_ETOOLARGE);
    ll__rp_reader_free(r);
}

/* A truncated bulk is not an error: the reader waits for the rest (the adapter decides when a
 * peer has gone quiet). */
static void test_truncated_waits(void **state) {
    (void)state;
    rp_reader *r = ll__rp_reader_new(NULL);
    ll_redis_reply *rep;
    assert_int_equal(ll__rp_feed(r, "$10\r\nabc", 8), 0);
    assert_int_equal(ll__rp_next(r, &rep), 0);
    assert_int_equal(ll__rp_feed(r, "defghij\r\n", 9), 0);
    assert_int_equal(ll__rp_next(r, &rep), 1);
    assert_int_equal(rep->len, 10);
    ll_redis_reply_free(rep);
    ll__rp_reader_free(r);
}

/* Memory follows the bytes received, not an announced count. */
static void test_array_growth(void **state) {
    (void)state;
    rp_reader *r = ll__rp_reader_new(NULL);
    ll_redis_reply *rep;
    assert_int_equal(ll__rp_feed(r, "*1000000\r\n:1\r\n:2\r\n", 18), 0);
    assert_int_equal(ll__rp_next(r, &rep), 0);
    ll__rp_reader_free(r); /* frees the partial tree hiredis holds */
}

static void test_format(void **state) {
    (void)state;
    rp_buf b = {0};
    const char *argv[] = {"SET", "k\r\n*1", "v\0x"};
    size_t lens[] = {3, 5, 3};
    assert_int_equal(ll__rp_format_argv(&b, 3, argv, lens), 0);
    static const char want[] = "*3\r\n$3\r\nSET\r\n$5\r\nk\r\n*1\r\n$3\r\nv\0x\r\n";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, b.len);
    b.len = 0;
    assert_int_equal(ll__rp_format_argv(&b, 0, argv, lens), LL_EINVAL);
    ll__rp_buf_free(&b);
}

/* The argument encoder writes exactly what hiredis's redisFormatCommandArgv writes, for random
 * commands (binary bytes, empty arguments, lengths across digit boundaries, lens NULL), appended
 * after what the buffer already holds. */
static void test_format_matches_hiredis(void **state) {
    (void)state;
    srand(99);
    rp_buf b = {0};
    static char pool[20000];
    for (size_t i = 0; i < sizeof pool; i++) pool[i] = (char)(rand() % 256);
    for (int round = 0; round < 2000; round++) {
        int argc = 1 + rand() % 12;
        const char *argv[12];
        size_t lens[12];
        bool use_lens = round % 5 != 0;
        char text[12][16];
        for (int i = 0; i < argc; i++) {
            if (use_lens) {
                static const size_t edge[] = {0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000};
                lens[i] = rand() % 4 ? (size_t)(rand() % 40) : edge[rand() % 10];
                argv[i] = pool + rand() % (int)(sizeof pool - lens[i]);
            } else { /* NUL-terminated: strlen is the length */
                size_t n = (size_t)(rand() % 15);
                for (size_t k = 0; k < n; k++) text[i][k] = (char)('a' + rand() % 26);
                text[i][n] = 0;
                argv[i] = text[i];
            }
        }
        size_t before = b.len;
        assert_int_equal(ll__rp_format_argv(&b, argc, argv, use_lens ? lens : NULL), 0);
        char *want;
        int n = redisFormatCommandArgv(&want, argc, argv, use_lens ? lens : NULL);
        assert_true(n > 0);
        assert_int_equal(b.len - before, (size_t)n);
        assert_memory_equal(b.data + before, want, (size_t)n);
        redisFreeCommand(want);
        if (b.len > 100000) b.len = 0;
    }
    ll__rp_buf_free(&b);
}

/* Out of memory while encoding leaves the buffer as it was (the commands before stay whole). */
static void test_format_alloc_failure(void **state) {
    (void)state;
    rp_buf b = {0};
    const char *argv[] = {"SET", "k", "v"};
    assert_int_equal(ll__rp_format_argv(&b, 3, argv, NULL), 0);
    size_t len = b.len;
    static char big[4096];
    const char *bigv[] = {"SET", "k", big};
    size_t bigl[] = {3, 1, sizeof big};
    lt_track_begin();
    lt_fail_after(0);
    assert_int_equal(ll__rp_format_argv(&b, 3, bigv, bigl), LL_ENOMEM);
    lt_fail_reset();
    assert_int_equal(lt_track_end(), 0);
    assert_int_equal(b.len, len);
    assert_memory_equal(b.data, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", len);
    ll__rp_buf_free(&b);
}

/* "+OK" and nil are shared objects: whatever holds them (a future, an array, several at once) frees
 * them with ll_redis_reply_free like any reply, nothing is allocated for them, and a status that
 * only starts with OK is a reply of its own. */
static void test_shared_replies(void **state) {
    (void)state;
    static const char in[] = "*3\r\n+OK\r\n$-1\r\n+OKAY\r\n+OK\r\n$-1\r\n+OK\r\n";
    lt_track_begin();
    rp_reader *r = ll__rp_reader_new(NULL);
    assert_int_equal(ll__rp_feed(r, in, sizeof in - 1), 0);
    long before = lt_track_live();
    ll_redis_reply *rep[4];
    for (int i = 0; i < 4; i++) assert_int_equal(ll__rp_next(r, &rep[i]), 1);
    assert_int_equal(lt_track_live() - before, 3); /* the array, its element vector and +OKAY */
    char out[200] = "";
    for (int i = 0; i < 4; i++) render(rep[i], out, sizeof out);
    assert_string_equal(out, "[+OK,nil,+OKAY]+OKnil+OK");
    assert_ptr_equal(rep[1], rep[3]);
    assert_ptr_equal(rep[1], ll_redis_reply_element(rep[0], 0));
    const char *s;
    size_t n;
    assert_int_equal(ll_redis_reply_string(rep[3], &s, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(s, "OK");
    assert_true(ll_redis_reply_is_nil(rep[2]));
    ll_redis_reply *dup = ll__redis_reply_dup(rep[0]);
    for (int i = 3; i >= 0; i--) ll_redis_reply_free(rep[i]);
    ll_redis_reply_free(rep[3]); /* shared: freeing it again is still nothing */
    memset(out, 0, sizeof out);
    render(dup, out, sizeof out);
    assert_string_equal(out, "[+OK,nil,+OKAY]");
    ll_redis_reply_free(dup);
    ll__rp_reader_free(r);
    assert_int_equal(lt_track_end(), 0);
}

static int vf(rp_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = ll__rp_vformat(b, fmt, ap);
    va_end(ap);
    return rc;
}

static void test_format_printf(void **state) {
    (void)state;
    rp_buf b = {0};
    /* %s is one argument even with spaces and CRLF in it: no command injection */
    assert_int_equal(vf(&b, "SET %s %b", "a b\r\nFLUSHALL", "xy", (size_t)2), 0);
    static const char want[] = "*3\r\n$3\r\nSET\r\n$13\r\na b\r\nFLUSHALL\r\n$2\r\nxy\r\n";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, b.len);
    ll__rp_buf_free(&b);
}

static void test_ring(void **state) {
    (void)state;
    rp_ring q = {0};
    uintptr_t next_in = 1, next_out = 1;
    srand(7);
    for (int step = 0; step < 20000; step++) {
        if (q.n == 0 || rand() % 3) {
            assert_int_equal(ll__rp_ring_push(&q, (rp_slot){.ctx = (void *)next_in++}), 0);
        } else {
            assert_ptr_equal(ll__rp_ring_front(&q)->ctx, (void *)next_out);
            assert_ptr_equal(ll__rp_ring_at(&q, q.n - 1)->ctx, (void *)(next_in - 1));
            ll__rp_ring_pop(&q);
            next_out++;
        }
        assert_int_equal(q.n, next_in - next_out);
    }
    ll__rp_ring_free(&q);
}

/* Every allocation failing in turn: an error, never a crash or a leak. */
static void test_alloc_failures(void **state) {
    (void)state;
    for (long n = 0; n < 200; n++) {
        lt_track_begin();
        lt_fail_after(n);
        rp_reader *r = ll__rp_reader_new(NULL);
        bool done = false;
        if (r) {
            int rc = ll__rp_feed(r, stream, sizeof stream - 1);
            ll_redis_reply *rep;
            int k, got = 0;
            while ((k = ll__rp_next(r, &rep)) == 1) {
                ll_redis_reply_free(rep);
                got++;
            }
            done = rc == 0 && k == 0 && got == (int)NEXPECTED;
            if (!done) assert_true(k == LL_ENOMEM || rc == LL_ENOMEM);
            ll__rp_reader_free(r);
        }
        lt_fail_reset();
        assert_int_equal(lt_track_end(), 0);
        if (done) return;
    }
    fail_msg("still failing after 200 allocations");
}

/* URLs and options: what reaches the connection, and the key that names it never holds the
 * password. */
static void test_config(void **state) {
    (void)state;
    char err[200];
    rc_cfg *c;
    assert_int_equal(ll__rc_cfg_new(&c, "redis://bob:s%40cret@cache.example:6380/3", NULL, err,
                                    sizeof err), 0);
    assert_string_equal(c->host, "cache.example");
    assert_int_equal(c->port, 6380);
    assert_string_equal(c->user, "bob");
    assert_string_equal(c->password, "s@cret");
    assert_int_equal(c->db, 3);
    assert_false(c->tls);
    assert_null(strstr(c->key, "s@cret"));
    assert_non_null(strstr(c->key, "bob@cache.example:6380/3"));
    assert_string_equal(c->peer_name, "cache.example:6380");
    ll__rc_cfg_free(c);

    ll_redis_opts o = {.password = "pw-from-opts", .db = 7, .client_name = "n"};
    assert_int_equal(ll__rc_cfg_new(&c, "rediss://:urlpw@[::1]", &o, err, sizeof err), 0);
    assert_true(c->tls);
    assert_string_equal(c->host, "::1");
    assert_int_equal(c->port, 6379);
    assert_null(c->user);
    assert_string_equal(c->password, "pw-from-opts"); /* options override the URL */
    assert_int_equal(c->db, 7);
    assert_string_equal(c->peer_name, "[::1]:6379");
    assert_null(strstr(c->key, "pw"));
    ll__rc_cfg_free(c);

    assert_int_equal(ll__rc_cfg_new(&c, "unix:///run/redis.sock?db=2", NULL, err, sizeof err), 0);
    assert_string_equal(c->unix_path, "/run/redis.sock");
    assert_int_equal(c->db, 2);
    ll__rc_cfg_free(c);

    assert_int_equal(ll__rc_cfg_new(&c, NULL, NULL, err, sizeof err), 0); /* all defaults */
    assert_string_equal(c->peer_name, "127.0.0.1:6379");
    ll__rc_cfg_free(c);

    const char *bad[] = {"http://x", "redis://h:99999", "redis://h:12x", "redis://h/abc",
                         "unix://relative", "redis://[::1", "redis://u:%zz@h"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(ll__rc_cfg_new(&c, bad[i], NULL, err, sizeof err), LL_EINVAL);
        assert_non_null(strstr(err, "ll_redis_connect"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),          cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_random_splits),  cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncated_waits), cmocka_unit_test(test_array_growth),
        cmocka_unit_test(test_format),         cmocka_unit_test(test_format_printf),
        cmocka_unit_test(test_ring),           cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_config),         cmocka_unit_test(test_format_matches_hiredis),
        cmocka_unit_test(test_format_alloc_failure), cmocka_unit_test(test_shared_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
