/*
 * bench_io_libuv.c — the I/O benchmark's C anchor: the same echo pair as bench_io.c, written on
 * libuv (Debian libuv1-dev), the library a C programmer would pick instead of libloop. bench/run-io
 * runs it next to libloop, asyncio, uvloop and plain blocking sockets (make bench-io).
 *
 *   bench_io_libuv serve                    listen on 127.0.0.1, a free port; print "port=N", then
 *                                           echo until SIGTERM/SIGINT
 *   bench_io_libuv client PORT CONNS SIZE   CONNS connections; on each, write a SIZE-byte message
 *                                           and read exactly SIZE bytes back, again and again
 *
 * The server echoes from a per-connection buffer with uv_try_write, falling back to uv_write with
 * reading stopped (see below); an echo costs one recv and one send, like libloop's. The client keeps
 * reading on every connection into its reply buffer and issues the next uv_write when the whole
 * echo has arrived. TCP_NODELAY on both ends (uv_tcp_nodelay), as libloop, asyncio and uvloop do by
 * default.
 *
 * Measurement and output are bench_io.c's: a 0.1 s warm-up, then REPS runs of SECS seconds in the
 * same process; a run's rate is the round trips completed over the time until the last connection
 * stopped; the first echo of every connection in every run is compared byte for byte; one key=value
 * line; any failure exits non-zero saying why on stderr.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define SECS 1.0
#define WARMUP_SECS 0.1
#define REPS 3
#define MAX_CONNS 10000

static uv_loop_t *loop;

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_io_libuv: %s: %s\n", what, uv_strerror(rc));
    exit(1);
}

static double now(void) {
    return (double)uv_hrtime() * 1e-9;
}

/* ---- server ---- */

/* A connection reads into its own 64 KiB buffer and echoes with uv_try_write; only when the socket
 * cannot take it all does it uv_write the rest from that buffer, with reading stopped until the
 * write is done (back-pressure, like libloop's handler awaiting its write). This is how libuv code
 * that cares about speed is written (node's streams try the write first); the uvbook example's
 * malloc of 64 KiB per read and free after the write made glibc return and re-fault the memory
 * every time: 3x slower here. */
typedef struct sconn {
    uv_tcp_t tcp;
    uv_write_t write;
    char buf[64 * 1024];
} sconn;

static void on_close_free(uv_handle_t *h) {
    free(h);
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    sconn *c = (sconn *)h;
    *buf = uv_buf_init(c->buf, sizeof c->buf);
}

static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void srv_written(uv_write_t *req, int status) {
    sconn *c = req->data;
    if (status < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close_free);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read);
}

static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    sconn *c = (sconn *)s;
    if (n < 0) { /* UV_EOF or a reset: the client is done */
        uv_close((uv_handle_t *)s, on_close_free);
        return;
    }
    if (n == 0) return;
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    int k = uv_try_write(s, &out, 1);
    if (k == n) return;
    if (k < 0 && k != UV_EAGAIN) {
        uv_close((uv_handle_t *)s, on_close_free);
        return;
    }
    if (k > 0) out = uv_buf_init(buf->base + k, (unsigned)(n - k));
    uv_read_stop(s); /* the rest goes out of c->buf: read nothing into it meanwhile */
    c->write.data = c;
    if (uv_write(&c->write, s, &out, 1, srv_written) != 0) uv_close((uv_handle_t *)s, on_close_free);
}

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    sconn *c = malloc(sizeof *c);
    if (!c) die("malloc", UV_ENOMEM);
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = NULL; /* malloc'd: freed when closed (see close_any) */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close_free);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read);
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, h->data == (void *)1 ? NULL : on_close_free);
}

static void on_stop_signal(uv_signal_t *sig, int signum) {
    (void)signum;
    (void)sig;
    uv_walk(loop, close_any, NULL); /* the loop ends when every handle is closed */
}

static int serve(void) {
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    static uv_tcp_t server;
    static uv_signal_t sigterm, sigint;
    server.data = sigterm.data = sigint.data = (void *)1; /* static: closed, not freed */
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&a, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
    if (rc) die("listen on 127.0.0.1:0", rc);
    int len = sizeof a;
    uv_tcp_getsockname(&server, (struct sockaddr *)&a, &len);
    printf("port=%u\n", ntohs(a.sin_port));
    fflush(stdout);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_stop_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_stop_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}

/* ---- client ---- */

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    char *reply;
    size_t got;
    long count;      /* round trips completed in the current run */
    bool running;
    bool writing;    /* `write` is in flight: libuv runs its callback an iteration later */
    bool send_next;  /* the echo came back before that callback: send from it */
} conn;

static size_t size;
static char *msg;
static conn *conns;
static int nconns, connected, running;
static double end_time;

static void send_msg(conn *c);

static void cli_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    conn *c = h->data;
    if (c->got >= size) { /* nothing is expected now: any byte is a protocol error */
        static char scratch[64];
        *buf = uv_buf_init(scratch, sizeof scratch);
        return;
    }
    *buf = uv_buf_init(c->reply + c->got, (unsigned)(size - c->got));
}

static void cli_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    (void)buf;
    conn *c = s->data;
    if (n < 0) die("read", (int)n);
    if (n == 0) return;
    if (!c->running || c->got >= size) {
        fprintf(stderr, "bench_io_libuv: bytes arrived that were never sent\n");
        exit(1);
    }
    c->got += (size_t)n;
    if (c->got < size) return;
    if (c->count == 0 && memcmp(c->reply, msg, size) != 0) {
        fprintf(stderr, "bench_io_libuv: the echo differs from the message sent\n");
        exit(1);
    }
    c->count++;
    if (now() < end_time) {
        send_msg(c);
    } else {
        c->running = false;
        if (--running == 0) uv_stop(loop);
    }
}

static void cli_written(uv_write_t *req, int status) {
    conn *c = req->data;
    if (status < 0) die("write", status);
    c->writing = false;
    if (c->send_next) {
        c->send_next = false;
        send_msg(c);
    }
}

static void send_msg(conn *c) {
    c->got = 0;
    if (c->writing) { /* the request is libuv's until its callback has run */
        c->send_next = true;
        return;
    }
    c->writing = true;
    c->write.data = c;
    uv_buf_t b = uv_buf_init(msg, (unsigned)size);
    int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, cli_written);
    if (rc) die("write", rc);
}

static void on_connect(uv_connect_t *req, int status) {
    conn *c = req->data;
    if (status < 0) die("connect to 127.0.0.1", status);
    uv_tcp_nodelay(&c->tcp, 1);
    c->got = size; /* nothing expected until the first message is sent */
    int rc = uv_read_start((uv_stream_t *)&c->tcp, cli_alloc, cli_read);
    if (rc) die("read", rc);
    if (++connected == nconns) uv_stop(loop);
}

/* One run: every connection does round trips until `secs` from now. Returns the rate. */
static double run_once(double secs) {
    double t0 = now();
    end_time = t0 + secs;
    running = nconns;
    for (int i = 0; i < nconns; i++) {
        conns[i].count = 0;
        conns[i].running = true;
        send_msg(&conns[i]);
    }
    uv_run(loop, UV_RUN_DEFAULT); /* until the last connection stops (uv_stop) */
    double t1 = now();
    long total = 0;
    for (int i = 0; i < nconns; i++) total += conns[i].count;
    return (double)total / (t1 - t0);
}

static void close_conn(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int client(int port) {
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    msg = malloc(size);
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!msg || !conns) die("malloc", UV_ENOMEM);
    for (size_t i = 0; i < size; i++) msg[i] = (char)('a' + i % 26);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    for (int i = 0; i < nconns; i++) {
        conn *c = &conns[i];
        if (!(c->reply = malloc(size))) die("malloc", UV_ENOMEM);
        uv_tcp_init(loop, &c->tcp);
        c->tcp.data = c;
        c->connect.data = c;
        int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&a, on_connect);
        if (rc) die("connect to 127.0.0.1", rc);
    }
    uv_run(loop, UV_RUN_DEFAULT); /* until every connection is open */
    run_once(WARMUP_SECS);
    double rates[REPS], best = 0;
    for (int i = 0; i < REPS; i++) {
        rates[i] = run_once(SECS);
        if (rates[i] > best) best = rates[i];
    }
    uv_walk(loop, close_conn, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    for (int i = 0; i < nconns; i++) free(conns[i].reply);
    free(conns);
    free(msg);
    printf("runtime=libuv server=libuv conns=%d size=%zu best_rps=%.0f best_mbps=%.2f "
           "runs=%.0f,%.0f,%.0f secs=%.1f\n",
           nconns, size, best, best * (double)size / 1e6, rates[0], rates[1], rates[2], SECS);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "serve") == 0) return serve();
    long port = argc == 5 ? strtol(argv[2], NULL, 10) : 0;
    long n = argc == 5 ? strtol(argv[3], NULL, 10) : 0;
    long sz = argc == 5 ? strtol(argv[4], NULL, 10) : 0;
    if (argc != 5 || strcmp(argv[1], "client") != 0 || port <= 0 || port > 65535 || n <= 0 ||
        n > MAX_CONNS || sz <= 0) {
        fprintf(stderr, "usage: bench_io_libuv serve\n"
                        "       bench_io_libuv client PORT CONNS SIZE\n");
        return 2;
    }
    nconns = (int)n;
    size = (size_t)sz;
    return client((int)port);
}
