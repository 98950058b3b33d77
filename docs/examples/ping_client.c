/* ping_client.c — a complete small client library on libloop, the shape docs/extending.md explains,
 * for a line protocol ("PING" -> "+PONG", "ECHO text" -> "+text", "SLOW ms" -> "+slept", anything
 * else -> "-ERR ...") with its own tiny server, so it runs anywhere.
 *
 *   1. the protocol core: bytes in, replies out, no I/O (lp_parse, lp_encode);
 *   2. the adapter: requests as futures on a libloop stream, pipelined, replies matched in order;
 *      a cancelled request keeps its reply slot and its reply is dropped, so the connection stays
 *      usable and nobody ever reads someone else's reply;
 *   3. connections shared through ll_pool, lent only when idle;
 *   4. deadlines from the caller's scope, errors that name the peer and carry the server's text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libloop.h>

/* ==== 1. the protocol core: no sockets, no loop; testable by feeding bytes in any split ==== */

#define LP_MAX_LINE 1024 /* a reply line longer than this is a protocol error, not a memory sink */

typedef struct lp_reply {
    bool ok;          /* '+' reply; false: '-' (the server's error) */
    const char *text; /* into the parsed buffer, without the prefix and the line end */
    size_t len;
} lp_reply;

/* Parse one reply at the start of buf[0..len). Return the bytes it spans (> 0), 0 when the line is
 * not complete yet, or LL_EPROTO / LL_ETOOLARGE (then *why says what was wrong). Stateless: the
 * bytes not consumed stay in the stream's buffer until more arrive. */
static long lp_parse(const char *buf, size_t len, lp_reply *out, const char **why) {
    const char *nl = memchr(buf, '\n', len < LP_MAX_LINE ? len : LP_MAX_LINE);
    if (!nl) {
        if (len < LP_MAX_LINE) return 0;
        *why = "reply line longer than 1024 bytes";
        return LL_ETOOLARGE;
    }
    size_t n = (size_t)(nl - buf);
    if (n < 2 || buf[n - 1] != '\r' || (buf[0] != '+' && buf[0] != '-')) {
        *why = "malformed reply line";
        return LL_EPROTO;
    }
    out->ok = buf[0] == '+';
    out->text = buf + 1;
    out->len = n - 2;
    return (long)n + 1;
}

/* The request line for cmd and optional arg, in a new string. NULL with *why when either holds a
 * CR, LF or NUL: a caller's text must never smuggle a second command onto the wire. */
static char *lp_encode(const char *cmd, const char *arg, const char **why) {
    if (!cmd || !*cmd || strpbrk(cmd, "\r\n ") || (arg && strpbrk(arg, "\r\n"))) {
        *why = "command or argument contains CR, LF or a space in the command name";
        return NULL;
    }
    return arg ? ll_format("%s %s\r\n", cmd, arg) : ll_format("%s\r\n", cmd);
}

/* ==== 2. the adapter: the protocol core driven from a libloop stream ==== */

typedef struct lp_req {
    struct lp_req *next;
    ll_future *f; /* our reference; NULL once the caller cancelled (the reply is read and dropped) */
} lp_req;

typedef struct lp_conn {
    ll_stream *s;     /* NULL once closed */
    char *peer;       /* for messages */
    lp_req *head, *tail; /* requests sent, in order, waiting for their reply */
    ll_future *fill;  /* the read in flight, only while replies are due */
    int refs;         /* the owner's, plus one per stream callback still to run */
    int err;          /* sticky: the first failure ends the connection */
    char *errmsg;
} lp_conn;

/* The type tag of reply values (ll_future_value_as). */
static void lp_reply_free(void *text) { ll_free(text); }
/* The reply text of a resolved command future, or NULL (pending, failed, not a command future). */
static const char *lp_reply_of(const ll_future *f) { return ll_future_value_as(f, lp_reply_free); }

static void conn_unref(lp_conn *c) {
    if (--c->refs > 0) return;
    ll_free(c->errmsg);
    ll_free(c->peer);
    ll_free(c);
}

/* The connection is unusable: every request waiting for a reply fails with the same cause. */
static void conn_fail(lp_conn *c, int code, const char *fmt, ...) LL_PRINTF(3, 4);
static void conn_fail(lp_conn *c, int code, const char *fmt, ...) {
    if (c->err) return;
    va_list ap;
    va_start(ap, fmt);
    c->errmsg = ll_vformat(fmt, ap); /* NULL on out of memory: ll_strerror(code) stands in */
    va_end(ap);
    c->err = code;
    while (c->head) {
        lp_req *r = c->head;
        c->head = r->next;
        if (r->f) {
            ll_future_fail(r->f, code, "%s", c->errmsg ? c->errmsg : ll_strerror(code));
            ll_future_free(r->f);
        }
        ll_free(r);
    }
    c->tail = NULL;
}

/* Hand every complete reply in the stream's buffer to the oldest request. */
static void deliver(lp_conn *c) {
    size_t len;
    const char *buf = ll_stream_peek(c->s, &len);
    size_t used = 0;
    while (!c->err) {
        lp_reply rep;
        const char *why = NULL;
        long k = lp_parse(buf + used, len - used, &rep, &why);
        if (k == 0) break;
        if (k < 0) {
            conn_fail(c, (int)k, "lp %s: %s", c->peer, why);
            break;
        }
        used += (size_t)k;
        lp_req *r = c->head;
        if (!r) { /* a reply nobody asked for: we can no longer tell whose a reply is */
            conn_fail(c, LL_EPROTO, "lp %s: unexpected reply \"%.*s\"", c->peer, (int)rep.len,
                      rep.text);
            break;
        }
        c->head = r->next;
        if (!c->head) c->tail = NULL;
        if (r->f) { /* else: cancelled, its reply is dropped here */
            if (!rep.ok) {
                ll_future_fail(r->f, LL_EINVAL, "lp %s: server error: %.*s", c->peer, (int)rep.len,
                               rep.text);
            } else {
                char *text = ll_malloc(rep.len + 1);
                if (text) {
                    memcpy(text, rep.text, rep.len);
                    text[rep.len] = '\0';
                    ll_future_resolve(r->f, text, lp_reply_free);
                } else {
                    ll_future_fail(r->f, LL_ENOMEM, "lp %s: out of memory", c->peer);
                }
            }
            ll_future_free(r->f);
        }
        ll_free(r);
    }
    if (c->s) ll_stream_consume(c->s, used);
}

static void pump(lp_conn *c);

static void on_fill(ll_future *f, void *arg) {
    lp_conn *c = arg;
    if (c->s) { /* not closed meanwhile */
        c->fill = NULL;
        int code = ll_future_code(f);
        if (code) conn_fail(c, code, "lp %s: %s", c->peer, ll_future_errmsg(f));
        else deliver(c);
        pump(c);
    }
    ll_future_free(f);
    conn_unref(c);
}

/* Read while replies are due, and only then: an idle connection reads nothing, so it neither keeps
 * the loop alive nor hides unasked bytes from ll_stream_alive. */
static void pump(lp_conn *c) {
    if (c->err || !c->head || c->fill) return;
    c->fill = ll_stream_fill(c->s);
    if (!c->fill || ll_future_add_done(c->fill, on_fill, c) != 0) {
        ll_future_free(c->fill);
        c->fill = NULL;
        conn_fail(c, LL_ENOMEM, "lp %s: out of memory", c->peer);
        return;
    }
    c->refs++;
}

static void on_written(ll_future *w, void *arg) {
    lp_conn *c = arg;
    int code = ll_future_code(w);
    if (code && c->s) conn_fail(c, code, "lp %s: %s", c->peer, ll_future_errmsg(w));
    conn_unref(c);
}

/* The cancel hook: the request stops waiting, but keeps its place in the reply order. */
static void req_cancel(ll_future *f, void *arg) {
    lp_req *r = arg;
    r->f = NULL;
    ll_future_set_cancelled(f);
    ll_future_free(f);
}

/* Send `cmd` (with `arg`, may be NULL); the future resolves with the reply text (lp_reply_of) or
 * fails: LL_EINVAL for a bad argument or an error reply (the server's text in the message), the
 * connection's error once it broke. Pipelined: call it again without awaiting. The strings are
 * copied; nothing the caller passed is used after the call returns. NULL on out of memory. */
static ll_future *lp_command(lp_conn *c, const char *cmd, const char *arg) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "lp_command: conn is NULL");
    if (c->err) /* sticky: the cause of the break, again */
        return ll_future_failed(NULL, c->err, "%s", c->errmsg ? c->errmsg : ll_strerror(c->err));
    const char *why = NULL;
    char *line = lp_encode(cmd, arg, &why);
    if (!line) {
        if (!why) return NULL;
        return ll_future_failed(NULL, LL_EINVAL, "lp_command to %s: %s", c->peer, why);
    }
    ll_future *f = ll_future_new(NULL);
    lp_req *r = ll_calloc(1, sizeof *r);
    if (!f || !r) {
        ll_free(line);
        ll_free(r);
        ll_future_free(f);
        return NULL;
    }
    ll_future_set_label(f, "lp command");
    ll_future *w = ll_stream_write(c->s, line, strlen(line)); /* copies the bytes */
    ll_free(line);
    if (w && ll_future_add_done(w, on_written, c) == 0) c->refs++;
    ll_future_free(w);
    r->f = ll_future_ref(f);
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    ll_future_on_cancel(f, req_cancel, r);
    pump(c);
    return f;
}

/* True when nothing is pending and nothing unasked is waiting: the state a pool may lend. */
static bool lp_idle(lp_conn *c) {
    return c && c->s && !c->err && !c->head && ll_stream_alive(c->s);
}

/* Close now: pending requests fail with LL_ECLOSED; callbacks still queued find the connection
 * marked closed and free it last. NULL: no-op. */
static void lp_close(lp_conn *c) {
    if (!c) return;
    conn_fail(c, LL_ECLOSED, "lp %s: connection closed", c->peer);
    ll_stream_close(c->s);
    c->s = NULL;
    conn_unref(c);
}

static void conn_value_free(void *v) { lp_close(v); }

typedef struct lp_connecting {
    ll_future *out, *in;
} lp_connecting;

static void on_connected(ll_future *in, void *arg) {
    lp_connecting *k = arg;
    int code = ll_future_code(in);
    if (code == LL_ECANCELED) {
        ll_future_set_cancelled(k->out);
    } else if (code) {
        ll_future_fail(k->out, code, "lp: %s", ll_future_errmsg(in)); /* names the address */
    } else {
        ll_stream *s = ll_future_take(in);
        lp_conn *c = ll_calloc(1, sizeof *c);
        if (c) c->peer = ll_strdup(ll_stream_peer(s));
        if (!c || !c->peer) {
            ll_free(c);
            ll_stream_close(s);
            ll_future_fail(k->out, LL_ENOMEM, "lp: out of memory");
        } else {
            c->s = s;
            c->refs = 1;
            ll_future_resolve(k->out, c, conn_value_free);
        }
    }
    ll_future_free(k->in);
    ll_future_free(k->out);
    ll_free(k);
}

/* Cancelling the connect cancels the stream's; out settles when that has stopped (on_connected). */
static void connecting_cancel(ll_future *out, void *arg) {
    (void)out;
    ll_future_cancel(((lp_connecting *)arg)->in);
}

/* Connect; the value is an lp_conn * (take it with ll_future_take, close it with lp_close). */
static ll_future *lp_connect(const char *host, uint16_t port) {
    ll_future *out = ll_future_new(NULL);
    lp_connecting *k = ll_calloc(1, sizeof *k);
    ll_future *in = out && k ? ll_stream_connect(host, port, NULL) : NULL;
    if (!in || ll_future_add_done(in, on_connected, k) != 0) {
        if (in) ll_future_cancel(in);
        ll_future_free(in);
        ll_free(k);
        ll_future_free(out);
        return NULL;
    }
    ll_future_set_label(out, "lp connect");
    k->in = in;
    k->out = ll_future_ref(out);
    ll_future_on_cancel(out, connecting_cancel, k);
    return out;
}

/* ==== 3. the pool: one vtable, connections lent only in a known idle state ==== */

typedef struct lp_target {
    const char *host;
    uint16_t port;
} lp_target;

static ll_future *pool_connect(void *arg, const char *key) {
    (void)key; /* one destination here; a real client keys by host, port and every setting */
    lp_target *t = arg;
    return lp_connect(t->host, t->port);
}
static bool pool_alive(void *arg, void *conn) { (void)arg; return lp_idle(conn); }
static void pool_close(void *arg, void *conn) { (void)arg; lp_close(conn); }
static const ll_pool_vtable lp_pool_vt = {pool_connect, pool_alive, pool_close, NULL};

/* One command through the pool: acquire, send, await, release in the state the connection is in. */
static int lp_pool_command(ll_pool *pool, const char *cmd, const char *arg, char *out, size_t n) {
    ll_future *a = ll_pool_acquire(pool, "lp");
    int rc = ll_await(a);
    lp_conn *c = rc == 0 ? ll_future_value(a) : NULL;
    if (rc) snprintf(out, n, "%s", ll_future_errmsg(a));
    ll_future_free(a);
    if (!c) return rc;
    ll_future *f = lp_command(c, cmd, arg);
    rc = ll_await(f);
    snprintf(out, n, "%s", rc == 0 ? lp_reply_of(f) : ll_future_errmsg(f));
    ll_future_free(f);
    ll_pool_release(pool, c, lp_idle(c) ? LL_POOL_IDLE : LL_POOL_BROKEN);
    return rc;
}

/* ==== the tiny server ==== */

static int serve(ll_stream *s, void *arg) {
    (void)arg;
    char line[LP_MAX_LINE + 1];
    for (;;) {
        ll_future *r = ll_stream_read_until(s, "\n", 1, line, LP_MAX_LINE);
        int rc = ll_await(r);
        size_t n = rc == 0 ? (uintptr_t)ll_future_value(r) : 0;
        ll_future_free(r);
        if (rc) return rc == LL_EOF ? 0 : rc;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        line[n] = '\0';
        char *reply;
        if (strcmp(line, "PING") == 0) {
            reply = ll_format("+PONG\r\n");
        } else if (strncmp(line, "ECHO ", 5) == 0) {
            reply = ll_format("+%s\r\n", line + 5);
        } else if (strncmp(line, "SLOW ", 5) == 0) {
            if ((rc = ll_sleep(atoi(line + 5) / 1000.0)) != 0) return rc;
            reply = ll_format("+slept\r\n");
        } else {
            reply = ll_format("-ERR unknown command '%s'\r\n", line);
        }
        ll_future *w = ll_stream_write(s, reply, strlen(reply));
        ll_free(reply);
        rc = ll_await(w);
        ll_future_free(w);
        if (rc) return rc;
    }
}

/* ==== using it ==== */

static int failures;
#define EXPECT(c)                                                            \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "ping_client.c:%d: expected %s\n", __LINE__, #c); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

typedef struct worker_arg {
    ll_pool *pool;
    int id;
    int ok;
} worker_arg;

static int worker(void *arg) {
    worker_arg *w = arg;
    char text[32], reply[256];
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "worker %d says %d", w->id, i);
        if (lp_pool_command(w->pool, "ECHO", text, reply, sizeof reply) == 0 &&
            strcmp(reply, text) == 0)
            w->ok++;
    }
    return 0;
}

static int main_task(void *arg) {
    (void)arg;
    ll_future *sf = ll_server_open("127.0.0.1", 0, serve, NULL, NULL);
    if (ll_await(sf)) return ll_task_fail_from(sf);
    ll_server *srv = ll_future_take(sf);
    ll_future_free(sf);
    uint16_t port = ll_server_port(srv);

    /* One connection, three pipelined commands: the replies come back in order. */
    ll_future *cf = lp_connect("127.0.0.1", port);
    EXPECT(ll_await(cf) == 0);
    lp_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    ll_future *fs[3] = {lp_command(c, "PING", NULL), lp_command(c, "ECHO", "hello"),
                        lp_command(c, "NOPE", NULL)};
    for (int i = 0; i < 3; i++) ll_await(fs[i]);
    printf("PING -> %s\nECHO hello -> %s\nNOPE -> %s\n", lp_reply_of(fs[0]), lp_reply_of(fs[1]),
           ll_future_errmsg(fs[2]));
    EXPECT(strcmp(lp_reply_of(fs[0]), "PONG") == 0);
    EXPECT(strcmp(lp_reply_of(fs[1]), "hello") == 0);
    EXPECT(ll_future_code(fs[2]) == LL_EINVAL && strstr(ll_future_errmsg(fs[2]), "unknown command"));
    for (int i = 0; i < 3; i++) ll_future_free(fs[i]);

    /* The caller's deadline cuts a slow command; its reply slot stays, so the next command on the
     * same connection still gets its own reply, never the late one. */
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.05));
    ll_future *slow = lp_command(c, "SLOW", "300");
    int rc = ll_await(slow);
    ll_scope_exit(&sc);
    ll_future_free(slow);
    printf("SLOW 300 under a 50 ms deadline -> %s\n", ll_strerror(rc));
    EXPECT(rc == LL_ETIMEDOUT);
    ll_future *after = lp_command(c, "ECHO", "mine");
    EXPECT(ll_await(after) == 0 && strcmp(lp_reply_of(after), "mine") == 0);
    ll_future_free(after);

    /* A caller's text cannot smuggle a second command. */
    ll_future *bad = lp_command(c, "ECHO", "x\r\nPING");
    EXPECT(ll_future_code(bad) == LL_EINVAL);
    printf("injection -> %s\n", ll_future_errmsg(bad));
    ll_future_free(bad);
    lp_close(c);

    /* Many tasks share a pool of at most 4 connections. */
    lp_target t = {"127.0.0.1", port};
    ll_pool *pool = ll_pool_new(&lp_pool_vt, &t, &(ll_pool_opts){.name = "pool lp", .max_per_key = 4});
    worker_arg ws[20];
    ll_future *tasks[20];
    for (int i = 0; i < 20; i++) {
        ws[i] = (worker_arg){pool, i, 0};
        tasks[i] = ll_spawn(worker, &ws[i]);
    }
    ll_future *all = ll_gather(tasks, 20, LL_GATHER_FAIL_FAST);
    EXPECT(ll_await(all) == 0);
    ll_future_free(all);
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        ok += ws[i].ok;
        ll_future_free(tasks[i]);
    }
    ll_pool_stats st;
    ll_pool_get_stats(pool, &st);
    printf("pool: %d of 100 echoes right over %llu connections\n", ok, (unsigned long long)st.created);
    EXPECT(ok == 100 && st.created <= 4);
    ll_pool_free(pool);

    /* A refused connect names the address. */
    ll_future *cerr = lp_connect("127.0.0.1", 1);
    EXPECT(ll_await(cerr) == LL_ECONNREFUSED);
    printf("connect to port 1 -> %s\n", ll_future_errmsg(cerr));
    ll_future_free(cerr);

    ll_future *closing = ll_server_close(srv, 1.0);
    ll_await(closing);
    ll_future_free(closing);
    return failures ? LL_EPROTO : 0;
}

int main(void) {
    int rc = ll_run(main_task, NULL);
    if (rc) fprintf(stderr, "ping_client: %s\n", ll_strerror(rc));
    return rc == 0 ? 0 : 1;
}
