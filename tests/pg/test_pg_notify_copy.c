/*
 * test_pg_notify_copy.c — LISTEN/NOTIFY on an awaitable queue; COPY FROM STDIN and TO STDOUT,
 * streamed, with errors and early ends.
 */
#include <unistd.h>
#include "pgtest.h"

static void await_ok(ll_future *f) {
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "%s\n", ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    ll_future_free(f);
}

/* ---- LISTEN / NOTIFY ---- */

static int t_notify(void *arg) {
    (void)arg;
    ll_pg_conn *l = pgt_connect();
    ll_pg_conn *n = pgt_connect();
    await_ok(ll_pg_listen(l, "chan \"one\""));
    /* a waiter before anything is sent */
    ll_future *w = ll_pg_next_notification(l);
    assert_false(ll_future_done(w));
    await_ok(ll_pg_notify(n, "chan \"one\"", "hello"));
    assert_int_equal(ll_await(w), 0);
    ll_pg_notification *note = ll_future_value(w);
    assert_string_equal(note->channel, "chan \"one\"");
    assert_string_equal(note->payload, "hello");
    assert_int_equal(note->be_pid, ll_pg_backend_pid(n));
    ll_future_free(w);
    /* several, queued while nobody waits, arrive in order (the listener is idle: its watcher
     * still reads) */
    for (int i = 0; i < 3; i++) {
        char p[16];
        snprintf(p, sizeof p, "m%d", i);
        await_ok(ll_pg_notify(n, "chan \"one\"", p));
    }
    for (int i = 0; i < 3; i++) {
        w = ll_pg_next_notification(l);
        assert_int_equal(ll_await_timeout(w, 5), 0);
        char p[16];
        snprintf(p, sizeof p, "m%d", i);
        assert_string_equal(((ll_pg_notification *)ll_future_value(w))->payload, p);
        ll_future_free(w);
    }
    /* a waiter can give up */
    w = ll_pg_next_notification(l);
    assert_int_equal(ll_await_timeout(w, 0.05), LL_ETIMEDOUT);
    ll_future_free(w);
    /* after UNLISTEN nothing more arrives */
    await_ok(ll_pg_unlisten(l, NULL));
    await_ok(ll_pg_notify(n, "chan \"one\"", "late"));
    pgt_ok(l, "SELECT 1"); /* a round trip on the listener: anything sent would be here now */
    w = ll_pg_next_notification(l);
    assert_int_equal(ll_await_timeout(w, 0.05), LL_ETIMEDOUT);
    ll_future_free(w);
    ll_pg_close(l);
    ll_pg_close(n);

    /* a bounded queue drops the oldest */
    ll_pg_opts o = {.notify_queue_max = 2};
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, &o);
    assert_int_equal(ll_await(cf), 0);
    l = ll_future_take(cf);
    ll_future_free(cf);
    n = pgt_connect();
    await_ok(ll_pg_listen(l, "q"));
    for (int i = 0; i < 5; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        await_ok(ll_pg_notify(n, "q", p));
    }
    pgt_ok(l, "SELECT 1");
    assert_int_equal(ll_pg_notifications_dropped(l), 3);
    w = ll_pg_next_notification(l);
    assert_int_equal(ll_await(w), 0);
    assert_string_equal(((ll_pg_notification *)ll_future_value(w))->payload, "3");
    ll_future_free(w);
    /* closing fails a waiter with LL_ECLOSED */
    ll_future_free(ll_pg_next_notification(l)); /* the queued "4" */
    w = ll_pg_next_notification(l);
    ll_pg_close(l);
    assert_int_equal(ll_await(w), LL_ECLOSED);
    ll_future_free(w);
    ll_pg_close(n);
    return 0;
}

static void test_notify(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_notify, NULL), 0);
    lt_teardown(&t);
}

/* ---- COPY ---- */

/* Resident memory in bytes. */
static long rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static long copy_rows(void) {
    return (lt_under_valgrind() || lt_under_asan()) ? 100000 : 1000000;
}

static int t_copy_in_out(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE big (id int, name text)");
    ll_future *sf = ll_pg_copy_start(c, "COPY big FROM STDIN");
    /* a query made during the copy waits for it */
    ll_future *during = ll_pg_query(c, "SELECT count(*) FROM big", 0);
    assert_int_equal(ll_await(sf), 0);
    ll_pg_copy *cp = ll_future_value(sf);
    ll_future_free(sf);
    assert_true(ll_pg_copy_is_in(cp));
    long rows = copy_rows();
    char *chunk = malloc(65536 + 64);
    size_t len = 0, total = 0;
    int waited = 0;
    long rss0 = rss_bytes(), rss_max = rss0;
    for (long i = 0; i < rows; i++) {
        len += (size_t)snprintf(chunk + len, 64, "%ld\tname %ld\n", i, i);
        if (len > 65536 || i == rows - 1) {
            ll_future *wf = ll_pg_copy_write(cp, chunk, len);
            if (!ll_future_done(wf)) waited++;
            assert_int_equal(ll_await(wf), 0);
            ll_future_free(wf);
            total += len;
            len = 0;
            long rss = rss_bytes();
            if (rss > rss_max) rss_max = rss;
        }
    }
    free(chunk);
    ll_future *ff = ll_pg_copy_finish(cp, NULL);
    assert_int_equal(ll_await(ff), 0);
    assert_int_equal(ll_pg_result_affected(ll_future_value(ff)), rows);
    ll_future_free(ff);
    assert_int_equal(ll_await(during), 0);
    int64_t v;
    assert_int_equal(ll_pg_int64(ll_future_value(during), 0, 0, &v), 0);
    assert_int_equal(v, rows); /* it ran after the copy */
    ll_future_free(during);
    /* streamed: memory grew by far less than the data loaded (the writer waits for the socket
     * whenever libpq's buffer has not drained) — not measurable under the sanitizers' allocators */
    if (!lt_under_valgrind() && !lt_under_asan()) {
        if (getenv("PGT_VERBOSE") || rss_max - rss0 > (long)total / 2)
            fprintf(stderr, "rss grew %ld bytes loading %zu (%d waits)\n", rss_max - rss0, total,
                    waited);
        assert_true(rss_max - rss0 < (long)total / 2);
    }

    /* out again, streamed */
    sf = ll_pg_copy_start(c, "COPY big TO STDOUT");
    assert_int_equal(ll_await(sf), 0);
    cp = ll_future_value(sf);
    ll_future_free(sf);
    assert_false(ll_pg_copy_is_in(cp));
    long lines = 0, reads = 0;
    size_t bytes = 0;
    bool first = true;
    for (;;) {
        ll_future *rf = ll_pg_copy_read(cp);
        int rc = ll_await(rf);
        if (rc == LL_EOF) {
            ll_future_free(rf);
            break;
        }
        assert_int_equal(rc, 0);
        ll_pg_copy_data *d = ll_future_value(rf);
        if (first) {
            assert_true(d->len > 10);
            assert_memory_equal(d->data, "0\tname 0\n", 9);
            first = false;
        }
        for (size_t i = 0; i < d->len; i++) lines += d->data[i] == '\n';
        bytes += d->len;
        reads++;
        ll_future_free(rf);
    }
    assert_int_equal(lines, rows);
    assert_true(reads < rows / 10); /* many rows per read */
    ff = ll_pg_copy_finish(cp, NULL);
    assert_int_equal(ll_await(ff), 0);
    assert_int_equal(ll_pg_result_affected(ll_future_value(ff)), rows);
    ll_future_free(ff);
    assert_int_equal(pgt_int(c, "SELECT 1"), 1);

    /* finishing a COPY TO STDOUT early drops the rest */
    sf = ll_pg_copy_start(c, "COPY big TO STDOUT");
    assert_int_equal(ll_await(sf), 0);
    cp = ll_future_value(sf);
    ll_future_free(sf);
    ll_future *rf = ll_pg_copy_read(cp);
    assert_int_equal(ll_await(rf), 0);
    ll_future_free(rf);
    ff = ll_pg_copy_finish(cp, NULL);
    assert_int_equal(ll_await(ff), 0);
    ll_future_free(ff);
    assert_int_equal(pgt_int(c, "SELECT 2"), 2);
    (void)bytes;
    ll_pg_close(c);
    return 0;
}

static void test_copy_in_out(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_copy_in_out, NULL), 0);
    lt_teardown(&t);
}

static int t_copy_errors(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE ct (id int)");
    /* bad data: the finish reports the server's error */
    ll_future *sf = ll_pg_copy_start(c, "COPY ct FROM STDIN");
    assert_int_equal(ll_await(sf), 0);
    ll_pg_copy *cp = ll_future_value(sf);
    ll_future_free(sf);
    await_ok(ll_pg_copy_write(cp, "1\nnot a number\n", 16));
    ll_future *ff = ll_pg_copy_finish(cp, NULL);
    assert_int_equal(ll_await(ff), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(ff), "22P02");
    ll_future_free(ff);
    /* aborted by the client */
    sf = ll_pg_copy_start(c, "COPY ct FROM STDIN");
    assert_int_equal(ll_await(sf), 0);
    cp = ll_future_value(sf);
    ll_future_free(sf);
    await_ok(ll_pg_copy_write(cp, "1\n", 2));
    ff = ll_pg_copy_finish(cp, "changed my mind");
    assert_int_equal(ll_await(ff), LL_EPG_SERVER);
    assert_non_null(strstr(ll_future_errmsg(ff), "changed my mind"));
    ll_future_free(ff);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM ct"), 0);
    /* not a COPY to or from the client */
    sf = ll_pg_copy_start(c, "SELECT 1");
    assert_int_equal(ll_await(sf), LL_EINVAL);
    ll_future_free(sf);
    sf = ll_pg_copy_start(c, "COPY nosuchtable FROM STDIN");
    assert_int_equal(ll_await(sf), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(sf), "42P01");
    ll_future_free(sf);
    /* an error half-way through a COPY TO STDOUT */
    sf = ll_pg_copy_start(c, "COPY (SELECT 1/(3-g) FROM generate_series(1,5) g) TO STDOUT");
    assert_int_equal(ll_await(sf), 0);
    cp = ll_future_value(sf);
    ll_future_free(sf);
    int rc;
    do {
        ll_future *rf = ll_pg_copy_read(cp);
        rc = ll_await(rf);
        ll_future_free(rf);
    } while (rc == 0);
    ff = ll_pg_copy_finish(cp, NULL);
    assert_int_equal(ll_await(ff), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(ff), "22012");
    ll_future_free(ff);
    /* a COPY inside a script is refused, the connection stays usable */
    ll_future *s = ll_pg_exec(c, "COPY ct FROM STDIN");
    assert_int_equal(ll_await(s), LL_EPG_SERVER);
    ll_future_free(s);
    s = ll_pg_exec(c, "COPY (SELECT 1) TO STDOUT; SELECT 5");
    assert_int_equal(ll_await(s), 0);
    ll_future_free(s);
    assert_int_equal(pgt_int(c, "SELECT 3"), 3);
    ll_pg_close(c);
    return 0;
}

static void test_copy_errors(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_copy_errors, NULL), 0);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_notify),
        PGT_TEST(test_copy_in_out),
        PGT_TEST(test_copy_errors),
    };
    return PGT_RUN(tests);
}
