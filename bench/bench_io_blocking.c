/*
 * bench_io_blocking.c — the I/O benchmark's reference: plain blocking sockets, no event loop, no
 * library. bench/run-io compares libloop's MB/s over one connection with this client's.
 *
 *   bench_io_blocking serve              listen on 127.0.0.1, a free port; print "port=N"; one
 *                                        thread per connection: blocking read(), write() it all back
 *   bench_io_blocking client PORT SIZE   one connection: write SIZE bytes, read SIZE bytes back,
 *                                        repeat; round trips per second, measured like bench_io.c
 *
 * TCP_NODELAY is set on both ends, as libloop, asyncio and uvloop do by default. The client writes
 * the whole message before reading the echo, as the event-loop clients do; that cannot deadlock
 * while SIZE fits in the peer's receive buffer (Linux starts loopback TCP at 128 KiB and grows it),
 * and run-io uses at most 64 KiB.
 * The client can also be pointed at `bench_io serve` (run-io does both, to separate the server's
 * share of the cost from the client's). Output: one key=value line, like bench_io.c.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SECS 1.0
#define WARMUP_SECS 0.1
#define REPS 3
#define SERVER_BUF (64 * 1024)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    fprintf(stderr, "bench_io_blocking: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- server: a thread per connection ---- */

static void *echo_thread(void *arg) {
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(SERVER_BUF);
    while (buf) {
        ssize_t n = read(fd, buf, SERVER_BUF);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) goto out;
            off += w;
        }
    }
out:
    free(buf);
    close(fd);
    return NULL;
}

static _Noreturn void serve(void) {
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, SOMAXCONN) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
        die("listen on 127.0.0.1:0");
    printf("port=%u\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) { /* until SIGTERM */
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            die("accept");
        }
        nodelay(fd);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, echo_thread, (void *)(intptr_t)fd) != 0) close(fd);
        pthread_attr_destroy(&at);
    }
}

/* ---- client: one connection ---- */

static void write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) die("write");
        p += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, char *p, size_t n) {
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("read");
        if (r == 0) {
            fprintf(stderr, "bench_io_blocking: read: end of stream\n");
            exit(1);
        }
        p += r;
        n -= (size_t)r;
    }
}

static double run_once(int fd, const char *msg, char *reply, size_t size, double secs) {
    double t0 = now(), end = t0 + secs;
    long count = 0;
    do {
        write_all(fd, msg, size);
        read_all(fd, reply, size);
        if (count == 0 && memcmp(reply, msg, size) != 0) {
            fprintf(stderr, "bench_io_blocking: the echo differs from the message sent\n");
            exit(1);
        }
        count++;
    } while (now() < end);
    return (double)count / (now() - t0);
}

static int client(uint16_t port, size_t size) {
    signal(SIGPIPE, SIG_IGN);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect to 127.0.0.1");
    nodelay(fd);
    char *msg = malloc(size), *reply = malloc(size);
    if (!msg || !reply) die("malloc");
    for (size_t i = 0; i < size; i++) msg[i] = (char)('a' + i % 26);
    run_once(fd, msg, reply, size, WARMUP_SECS);
    double rates[REPS], best = 0;
    for (int i = 0; i < REPS; i++) {
        rates[i] = run_once(fd, msg, reply, size, SECS);
        if (rates[i] > best) best = rates[i];
    }
    close(fd);
    free(msg);
    free(reply);
    printf("runtime=blocking conns=1 size=%zu best_rps=%.0f best_mbps=%.2f runs=%.0f,%.0f,%.0f "
           "secs=%.1f\n",
           size, best, best * (double)size / 1e6, rates[0], rates[1], rates[2], SECS);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "serve") == 0) serve();
    long port = argc == 4 ? strtol(argv[2], NULL, 10) : 0;
    long size = argc == 4 ? strtol(argv[3], NULL, 10) : 0;
    if (argc != 4 || strcmp(argv[1], "client") != 0 || port <= 0 || port > 65535 || size <= 0) {
        fprintf(stderr, "usage: bench_io_blocking serve\n"
                        "       bench_io_blocking client PORT SIZE\n");
        return 2;
    }
    return client((uint16_t)port, (size_t)size);
}
