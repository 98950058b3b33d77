/*
 * test_faultproxy.c — the fault proxy of the test harness (tests/harness/faultproxy.h), tested
 * with plain blocking sockets against an echo server thread of its own, so a fault test of any
 * client can trust it: forwarding is byte-exact, each fault does what it says and is lifted
 * again, faults change while traffic flows, and stopping leaves no descriptor behind.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "harness/faultproxy.h"
#include "harness/harness.h"

/* ---- an echo server in a thread: poll over the listener and up to 32 connections ---- */

typedef struct echo {
    int lfd, port, wake[2];
    pthread_t th;
} echo;

static void *echo_main(void *arg) {
    echo *e = arg;
    int fds[32];
    int n = 0;
    for (;;) {
        struct pollfd pf[34];
        pf[0] = (struct pollfd){.fd = e->wake[0], .events = POLLIN};
        pf[1] = (struct pollfd){.fd = e->lfd, .events = POLLIN};
        for (int i = 0; i < n; i++) pf[2 + i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        int polled = n; /* connections accepted below have no poll result yet */
        poll(pf, (nfds_t)(2 + n), -1);
        if (pf[0].revents) break;
        if (pf[1].revents & POLLIN) {
            int fd = accept(e->lfd, NULL, NULL);
            if (fd >= 0 && n < 32) fds[n++] = fd;
            else if (fd >= 0) close(fd);
        }
        for (int i = polled - 1; i >= 0; i--) {
            if (!pf[2 + i].revents) continue;
            char buf[16384];
            ssize_t r = read(fds[i], buf, sizeof buf);
            bool done = r <= 0;
            for (ssize_t off = 0; r > 0 && off < r;) {
                ssize_t w = write(fds[i], buf + off, (size_t)(r - off));
                if (w <= 0) {
                    done = true;
                    break;
                }
                off += w;
            }
            if (done) {
                close(fds[i]);
                fds[i] = fds[--n];
            }
        }
    }
    for (int i = 0; i < n; i++) close(fds[i]);
    return NULL;
}

static void echo_start(echo *e) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(e->lfd >= 0);
    assert_int_equal(bind(e->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(e->lfd, 64), 0);
    assert_int_equal(getsockname(e->lfd, (struct sockaddr *)&a, &al), 0);
    e->port = ntohs(a.sin_port);
    assert_int_equal(pipe2(e->wake, O_CLOEXEC), 0);
    assert_int_equal(pthread_create(&e->th, NULL, echo_main, e), 0);
}

static void echo_stop(echo *e) {
    assert_int_equal(write(e->wake[1], "x", 1), 1);
    pthread_join(e->th, NULL);
    close(e->lfd);
    close(e->wake[0]);
    close(e->wake[1]);
}

/* ---- client helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Read up to n bytes, waiting at most `timeout` seconds in all. Returns the bytes read; *err gets
 * 0 (all read or timed out), -1 for end of stream, or the errno of a failed read. */
static size_t read_for(int fd, char *out, size_t n, double timeout, int *err) {
    size_t got = 0;
    double end = now_s() + timeout;
    *err = 0;
    while (got < n) {
        double left = end - now_s();
        if (left <= 0) break;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0) continue;
        ssize_t r = read(fd, out + got, n - got);
        if (r == 0) {
            *err = -1;
            break;
        }
        if (r < 0) {
            *err = errno;
            break;
        }
        got += (size_t)r;
    }
    return got;
}

/* Send n bytes and read n bytes back at the same time (so neither side blocks), within timeout. */
static size_t roundtrip(int fd, const char *in, char *out, size_t n, double timeout) {
    size_t sent = 0, got = 0;
    double end = now_s() + timeout;
    while (got < n && now_s() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        if (poll(&pf, 1, 50) <= 0) continue;
        if ((pf.revents & POLLOUT) && sent < n) {
            ssize_t w = send(fd, in + sent, n - sent < 8192 ? n - sent : 8192, MSG_DONTWAIT);
            if (w > 0) sent += (size_t)w;
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, out + got, n - got, MSG_DONTWAIT);
            if (r <= 0 && !(r < 0 && errno == EAGAIN)) break;
            if (r > 0) got += (size_t)r;
        }
    }
    return got;
}

typedef struct fx {
    echo e;
    lt_proxy *p;
    int fds_before;
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    f->fds_before = lt_count_fds();
    echo_start(&f->e);
    f->p = lt_proxy_start("127.0.0.1", f->e.port);
    assert_non_null(f->p);
    assert_true(lt_proxy_port(f->p) > 0);
    assert_int_not_equal(lt_proxy_port(f->p), f->e.port);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    lt_proxy_stop(f->p);
    echo_stop(&f->e);
    assert_int_equal(lt_count_fds(), f->fds_before);
    free(f);
    return 0;
}

static void check_echo(int fd) {
    char out[5];
    assert_int_equal(roundtrip(fd, "hello", out, 5, 5), 5);
    assert_memory_equal(out, "hello", 5);
}

/* ---- tests ---- */

static void test_forwards_exactly(void **state) {
    fx *f = *state;
    size_t n = 300000;
    char *in = malloc(n), *out = malloc(n);
    for (size_t i = 0; i < n; i++) in[i] = (char)(i * 7 + i / 251);
    int fd = dial(lt_proxy_port(f->p));
    assert_int_equal(roundtrip(fd, in, out, n, 20), n);
    assert_memory_equal(in, out, n);
    assert_int_equal(lt_proxy_connections(f->p), 1);
    assert_int_equal(lt_proxy_open_connections(f->p), 1);
    close(fd);
    /* the close goes through: the proxy closes both sides */
    for (int i = 0; i < 200 && lt_proxy_open_connections(f->p); i++) usleep(10000);
    assert_int_equal(lt_proxy_open_connections(f->p), 0);
    free(in);
    free(out);
}

static void test_reset_now_and_new(void **state) {
    fx *f = *state;
    int fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_RESET});
    char b[16];
    int err;
    assert_int_equal(read_for(fd, b, sizeof b, 5, &err), 0);
    assert_int_equal(err, ECONNRESET);
    close(fd);
    /* a new connection is reset too */
    fd = dial(lt_proxy_port(f->p));
    assert_int_equal(read_for(fd, b, sizeof b, 5, &err), 0);
    assert_int_equal(err, ECONNRESET);
    close(fd);
    /* lifted: forwarding again */
    lt_proxy_set(f->p, NULL);
    fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    close(fd);
    assert_int_equal(lt_proxy_connections(f->p), 3);
}

static void test_reset_after_bytes(void **state) {
    fx *f = *state;
    int fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    /* exactly 1000 bytes come back, then the reset */
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_RESET_AFTER, .dir = 2, .bytes = 1000});
    char in[5000], out[5000];
    memset(in, 'x', sizeof in);
    assert_int_equal(send(fd, in, sizeof in, 0), (ssize_t)sizeof in);
    int err;
    assert_int_equal(read_for(fd, out, sizeof out, 5, &err), 1000);
    assert_int_equal(err, ECONNRESET);
    close(fd);
    /* client->server: the server sees 10 bytes, so 10 come back before the reset */
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_RESET_AFTER, .dir = 1, .bytes = 10});
    fd = dial(lt_proxy_port(f->p));
    assert_int_equal(send(fd, in, 10, 0), 10);
    assert_int_equal(read_for(fd, out, 10, 5, &err), 10);
    assert_int_equal(send(fd, in, 1, 0), 1);
    assert_int_equal(read_for(fd, out, 10, 5, &err), 0);
    assert_int_equal(err, ECONNRESET);
    close(fd);
}

static void test_freeze_and_thaw(void **state) {
    fx *f = *state;
    int fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_FREEZE});
    assert_int_equal(send(fd, "0123456789", 10, 0), 10);
    char out[10];
    int err;
    assert_int_equal(read_for(fd, out, 10, 0.3, &err), 0);
    assert_int_equal(err, 0); /* nothing, but the connection is open */
    /* a new connection is accepted and frozen as well */
    int fd2 = dial(lt_proxy_port(f->p));
    assert_int_equal(send(fd2, "abc", 3, 0), 3);
    assert_int_equal(read_for(fd2, out, 3, 0.2, &err), 0);
    lt_proxy_set(f->p, NULL);
    assert_int_equal(read_for(fd, out, 10, 5, &err), 10);
    assert_memory_equal(out, "0123456789", 10);
    assert_int_equal(read_for(fd2, out, 3, 5, &err), 3);
    assert_memory_equal(out, "abc", 3);
    close(fd);
    close(fd2);
}

static void test_freeze_one_direction(void **state) {
    fx *f = *state;
    int fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    /* server->client frozen: the request gets through, the reply waits */
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_FREEZE, .dir = 2});
    assert_int_equal(send(fd, "ping", 4, 0), 4);
    char out[4];
    int err;
    assert_int_equal(read_for(fd, out, 4, 0.3, &err), 0);
    lt_proxy_set(f->p, NULL);
    assert_int_equal(read_for(fd, out, 4, 5, &err), 4);
    close(fd);
}

static void test_trickle(void **state) {
    fx *f = *state;
    int fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_TRICKLE, .dir = 2, .interval = 0.02});
    double t0 = now_s();
    assert_int_equal(send(fd, "0123456789", 10, 0), 10);
    /* the bytes arrive one by one, paced by the proxy */
    char out[10];
    int err;
    size_t got = 0;
    while (got < 10) {
        size_t r = read_for(fd, out + got, 1, 10, &err);
        if (r == 0) break;
        got += r;
    }
    double took = now_s() - t0;
    assert_int_equal(got, 10);
    assert_memory_equal(out, "0123456789", 10);
    /* 9 intervals of 20 ms between the 10 bytes; generous upper bound for a loaded machine */
    assert_true(took >= 0.17);
    assert_true(took < 8);
    close(fd);
}

static void test_bandwidth(void **state) {
    fx *f = *state;
    int fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_BANDWIDTH, .dir = 2, .rate = 100000});
    size_t n = 100000;
    char *in = malloc(n), *out = malloc(n);
    memset(in, 'b', n);
    double t0 = now_s();
    assert_int_equal(roundtrip(fd, in, out, n, 20), n);
    double took = now_s() - t0;
    /* 100 kB at 100 kB/s with at most 50 ms of burst: at least 0.9 s (tolerance below that for
     * timer granularity); the upper bound only guards against a stall */
    assert_true(took >= 0.85);
    assert_true(took < 15);
    assert_memory_equal(in, out, n);
    free(in);
    free(out);
    close(fd);
}

static void test_half_close(void **state) {
    fx *f = *state;
    /* toward the client: it reads end of stream while the connection is still up */
    int fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_HALF_CLOSE, .dir = 2});
    char out[8];
    int err;
    assert_int_equal(read_for(fd, out, 8, 5, &err), 0);
    assert_int_equal(err, -1);
    close(fd);
    /* toward the server: the echo server sees end of stream and closes, so the client reads
     * end of stream too */
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_HALF_CLOSE, .dir = 1});
    fd = dial(lt_proxy_port(f->p));
    assert_int_equal(read_for(fd, out, 8, 5, &err), 0);
    assert_int_equal(err, -1);
    close(fd);
    lt_proxy_set(f->p, NULL);
}

static void test_refuse(void **state) {
    fx *f = *state;
    int open_fd = dial(lt_proxy_port(f->p));
    check_echo(open_fd);
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_REFUSE});
    int fd = dial(lt_proxy_port(f->p));
    char out[8];
    int err;
    assert_int_equal(read_for(fd, out, 8, 5, &err), 0);
    assert_int_equal(err, -1);
    close(fd);
    /* open connections are left alone */
    check_echo(open_fd);
    lt_proxy_set(f->p, NULL);
    fd = dial(lt_proxy_port(f->p));
    check_echo(fd);
    close(fd);
    close(open_fd);
    assert_int_equal(lt_proxy_connections(f->p), 3);
}

static void test_blackhole(void **state) {
    fx *f = *state;
    int open_fd = dial(lt_proxy_port(f->p));
    check_echo(open_fd);
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_BLACKHOLE});
    usleep(300000); /* the proxy fills its accept queue */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lt_proxy_port(f->p)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    assert_true(rc < 0 && errno == EINPROGRESS);
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    assert_int_equal(poll(&pf, 1, 700), 0); /* the connect hangs */
    check_echo(open_fd);                    /* open connections are left alone */
    assert_int_equal(lt_proxy_connections(f->p), 1);
    lt_proxy_set(f->p, NULL);
    /* the next SYN retransmission (1 s, then 3 s) gets through */
    assert_int_equal(poll(&pf, 1, 8000), 1);
    int so = -1;
    socklen_t sl = sizeof so;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
    assert_int_equal(so, 0);
    fcntl(fd, F_SETFL, 0);
    check_echo(fd);
    close(fd);
    close(open_fd);
    /* the proxy's own filler connections are not counted */
    assert_int_equal(lt_proxy_connections(f->p), 2);
}

static void test_change_while_flowing(void **state) {
    fx *f = *state;
    int fd = dial(lt_proxy_port(f->p));
    size_t n = 200000;
    char *in = malloc(n), *out = malloc(n);
    for (size_t i = 0; i < n; i++) in[i] = (char)(i % 253);
    size_t sent = 0, got = 0;
    int round = 0;
    lt_fault faults[] = {{.kind = LT_FAULT_FREEZE},
                         {.kind = LT_FAULT_TRICKLE, .interval = 0.001},
                         {.kind = LT_FAULT_BANDWIDTH, .rate = 2000000},
                         {.kind = LT_FAULT_FREEZE, .dir = 1},
                         {.kind = LT_FAULT_RESET_AFTER, .bytes = 1 << 30},
                         {.kind = LT_FAULT_BANDWIDTH, .dir = 2, .rate = 1000000}};
    double end = now_s() + 30, next_change = now_s();
    while (got < n && now_s() < end) {
        if (now_s() >= next_change) {
            lt_proxy_set(f->p, &faults[round++ % 6]);
            next_change = now_s() + 0.01;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        if (poll(&pf, 1, 10) <= 0) continue;
        if ((pf.revents & POLLOUT) && sent < n) {
            ssize_t w = send(fd, in + sent, n - sent < 4096 ? n - sent : 4096, MSG_DONTWAIT);
            if (w > 0) sent += (size_t)w;
        }
        if (pf.revents & POLLIN) {
            ssize_t r = recv(fd, out + got, n - got, MSG_DONTWAIT);
            assert_true(r > 0 || (r < 0 && errno == EAGAIN));
            if (r > 0) got += (size_t)r;
        }
    }
    assert_int_equal(got, n);
    assert_memory_equal(in, out, n);
    assert_true(round > 3);
    lt_proxy_set(f->p, NULL);
    free(in);
    free(out);
    close(fd);
}

static void test_stop_with_traffic_and_faults(void **state) {
    fx *f = *state;
    int a = dial(lt_proxy_port(f->p)), b = dial(lt_proxy_port(f->p));
    check_echo(a);
    lt_proxy_set(f->p, &(lt_fault){.kind = LT_FAULT_FREEZE});
    assert_int_equal(send(b, "stuck", 5, 0), 5);
    /* teardown stops the proxy with a frozen connection holding data; both client sockets read
     * end of stream afterwards */
    lt_proxy_stop(f->p);
    f->p = lt_proxy_start("127.0.0.1", f->e.port);
    char out[8];
    int err;
    /* end of stream, or a reset where the proxy's socket still held unread data */
    assert_int_equal(read_for(a, out, 8, 5, &err), 0);
    assert_true(err == -1 || err == ECONNRESET);
    assert_int_equal(read_for(b, out, 8, 5, &err), 0);
    assert_true(err == -1 || err == ECONNRESET);
    close(a);
    close(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_forwards_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_now_and_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_after_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freeze_and_thaw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freeze_one_direction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trickle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bandwidth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blackhole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_while_flowing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_traffic_and_faults, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
