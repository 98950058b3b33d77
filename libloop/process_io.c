/*
 * process_io.c — talking to a child through its pipes: ll_process_communicate() feeds the input and
 * collects stdout and stderr concurrently (no deadlock whichever pipe fills first), and
 * ll_process_run() is spawn + communicate + close in one call. Spawning and reaping are process.c.
 *
 * Design note: communicate is a callback state machine (no task, no extra stack): one write chain
 * into stdin, one read chain per output pipe, and the exit wait, all outstanding at once. It
 * settles when all of them have; an error or a cancel stops the others first.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "process_internal.h"

/* ---- communicate ---- */

#define WRITE_CHUNK (64 * 1024)
#define READ_MIN (64 * 1024)

typedef struct comm comm;

typedef struct obuf {
    comm *c;
    char *data;
    size_t len, cap;
    bool open;           /* still reading */
    ll_future *rf;       /* the read in progress */
    const char *what;    /* "stdout" / "stderr" */
} obuf;

struct comm {
    ll_process *p;
    ll_future *f;        /* the result: our reference */
    const char *input;
    size_t len, off;
    ll_future *wf;       /* the write or shutdown in progress */
    bool writing;        /* the stdin side is not finished */
    bool shut;           /* the shutdown was issued */
    obuf o[2];
    ll_future *exitf;
    size_t max_output;
    int code;            /* the first error */
    char *msg;
    bool stopping;       /* error or cancel: stop the others, settle when all have */
    bool cancelled;
};

static void comm_step(comm *c);

static void comm_fail(comm *c, int code, const char *msg) {
    if (!c->code) {
        c->code = code;
        c->msg = ll__strdup(msg ? msg : ll_strerror(code));
    }
    c->stopping = true;
}

static size_t comm_outstanding(const comm *c) {
    return (c->wf != NULL) + (c->o[0].rf != NULL) + (c->o[1].rf != NULL) + (c->exitf != NULL);
}

void ll_process_output_free(ll_process_output *r) {
    if (!r) return;
    ll__free(r->out);
    ll__free(r->err);
    ll__free(r);
}

static void output_free(void *v) {
    ll_process_output_free(v);
}

static void comm_settle(comm *c) {
    ll_process *p = c->p;
    if (c->cancelled) {
        ll_future_set_cancelled(c->f);
    } else if (c->code) {
        ll_future_fail(c->f, c->code, "%s", c->msg ? c->msg : ll_strerror(c->code));
    } else {
        ll_process_output *r = ll__calloc(1, sizeof *r);
        if (!r) {
            ll_future_fail(c->f, LL_ENOMEM, "communicate with %s: out of memory", p->name);
        } else {
            for (int i = 0; i < 2; i++) {
                char **d = i == 0 ? &r->out : &r->err;
                size_t *n = i == 0 ? &r->out_len : &r->err_len;
                *d = c->o[i].data; /* NUL-terminated by the reader, NULL when not a pipe */
                *n = c->o[i].len;
                c->o[i].data = NULL;
            }
            ll_process_status(p, &r->status);
            ll_future_resolve(c->f, r, output_free);
        }
    }
    ll__free(c->o[0].data);
    ll__free(c->o[1].data);
    ll__free(c->msg);
    ll_future_free(c->f);
    p->users--;
    ll__process_update_ref(p);
    ll__free(c);
    if (p->closed && p->reaped && p->users == 0) ll__process_free(p);
}

/* Stop everything still outstanding (an error or a cancel happened). */
static void comm_stop(comm *c) {
    if (c->wf) ll_future_cancel(c->wf);
    for (int i = 0; i < 2; i++)
        if (c->o[i].rf) ll_future_cancel(c->o[i].rf);
    if (c->exitf) ll_future_cancel(c->exitf); /* stops waiting; the child is not ours to kill */
}

static void comm_check(comm *c) {
    if (c->stopping) {
        if (comm_outstanding(c) == 0) comm_settle(c);
        else comm_stop(c);
        return;
    }
    if (!c->writing && !c->o[0].open && !c->o[1].open && !c->exitf) comm_settle(c);
}

static void on_write(ll_future *f, void *arg) {
    comm *c = arg;
    int rc = ll_future_code(f);
    if (rc == 0 || rc == LL_EPIPE || rc == LL_ECONNRESET) {
        if (rc == 0 && !c->shut) c->off += (size_t)(uintptr_t)ll_future_value(f);
        if (rc != 0 || c->shut) c->writing = false; /* done, or the child stopped reading */
    } else if (!c->stopping) {
        comm_fail(c, rc, ll_future_errmsg(f));
    }
    ll_future_free(c->wf);
    c->wf = NULL;
    comm_step(c);
}

static void on_read(ll_future *f, void *arg) {
    obuf *o = arg;
    comm *c = o->c;
    int rc = ll_future_code(f);
    if (rc == 0) {
        o->len += (size_t)(uintptr_t)ll_future_value(f);
        o->data[o->len] = 0;
        if (c->max_output && o->len > c->max_output && !c->stopping) {
            char m[256];
            snprintf(m, sizeof m, "communicate with %s: %s exceeds %zu bytes", c->p->name, o->what,
                     c->max_output);
            comm_fail(c, LL_ETOOLARGE, m);
        }
    } else {
        o->open = false;
        if (rc != LL_EOF && !c->stopping) comm_fail(c, rc, ll_future_errmsg(f));
    }
    ll_future_free(o->rf);
    o->rf = NULL;
    comm_step(c);
}

static void on_exit_done(ll_future *f, void *arg) {
    comm *c = arg;
    int rc = ll_future_code(f);
    if (rc != 0 && !c->stopping) comm_fail(c, rc, ll_future_errmsg(f));
    ll_future_free(c->exitf);
    c->exitf = NULL;
    comm_step(c);
}

/* Issue whatever can go next; settle when everything is done. */
static void comm_step(comm *c) {
    ll_process *p = c->p;
    if (c->cancelled || c->stopping) {
        c->stopping = true;
        comm_check(c);
        return;
    }
    if (c->writing && !c->wf) {
        if (!p->in) {
            c->writing = false;
        } else if (c->off < c->len) {
            size_t n = c->len - c->off < WRITE_CHUNK ? c->len - c->off : WRITE_CHUNK;
            c->wf = ll_stream_write(p->in, c->input + c->off, n);
        } else {
            c->shut = true;
            c->wf = ll_stream_shutdown(p->in);
        }
        if (c->writing && (!c->wf || ll_future_add_done(c->wf, on_write, c) != 0)) {
            if (c->wf) ll_future_cancel(c->wf);
            ll_future_free(c->wf);
            c->wf = NULL;
            comm_fail(c, LL_ENOMEM, "communicate: out of memory");
        }
    }
    for (int i = 0; i < 2 && !c->stopping; i++) {
        obuf *o = &c->o[i];
        ll_stream *s = i == 0 ? p->out : p->err;
        if (!o->open || o->rf) continue;
        if (!s) {
            comm_fail(c, LL_ECLOSED, "communicate: the process was closed");
            break;
        }
        if (o->cap - o->len < READ_MIN / 2 + 1) {
            size_t cap = o->cap ? o->cap * 2 : READ_MIN;
            char *d = ll__realloc(o->data, cap);
            if (!d) {
                comm_fail(c, LL_ENOMEM, "communicate: out of memory for output");
                break;
            }
            o->data = d;
            o->cap = cap;
            o->data[o->len] = 0;
        }
        o->rf = ll_stream_read(s, o->data + o->len, o->cap - o->len - 1); /* room for the NUL */
        if (!o->rf || ll_future_add_done(o->rf, on_read, o) != 0) {
            if (o->rf) ll_future_cancel(o->rf);
            ll_future_free(o->rf);
            o->rf = NULL;
            comm_fail(c, LL_ENOMEM, "communicate: out of memory");
        }
    }
    comm_check(c);
}

static void comm_cancel(ll_future *f, void *arg) {
    (void)f;
    comm *c = arg;
    c->cancelled = true;
    c->stopping = true;
    comm_check(c);
}

ll_future *ll_process_communicate(ll_process *p, const void *input, size_t len, size_t max_output) {
    LL_REQUIRE_ARG(p, "process");
    if (p->closed)
        return ll_future_failed(p->loop, LL_ECLOSED, "communicate with %s: the process is closed",
                                p->name);
    if (len > 0 && !p->in)
        return ll_future_failed(p->loop, LL_EINVAL,
                                "communicate with %s: input given but stdin is not a pipe", p->name);
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "process communicate");
    comm *c = ll__calloc(1, sizeof *c);
    if (!c) {
        ll_future_fail(f, LL_ENOMEM, "communicate with %s: out of memory", p->name);
        return f;
    }
    c->p = p;
    c->f = ll_future_ref(f);
    c->input = input;
    c->len = input ? len : 0;
    c->writing = p->in != NULL;
    c->max_output = max_output;
    c->o[0].c = c->o[1].c = c;
    c->o[0].what = "stdout";
    c->o[1].what = "stderr";
    c->o[0].open = p->out != NULL;
    c->o[1].open = p->err != NULL;
    p->users++;
    c->exitf = ll_process_wait(p);
    if (!c->exitf || ll_future_add_done(c->exitf, on_exit_done, c) != 0) {
        if (c->exitf) ll_future_cancel(c->exitf);
        ll_future_free(c->exitf);
        c->exitf = NULL;
        comm_fail(c, LL_ENOMEM, "communicate: out of memory");
    }
    ll__process_update_ref(p);
    ll_future_on_cancel(f, comm_cancel, c);
    comm_step(c); /* may settle f already (an error): callbacks still run from the loop */
    return f;
}

/* ---- run: spawn + communicate + close ---- */

typedef struct run {
    ll_future *f;        /* the result: our reference */
    ll_process *p;
    ll_future *comm;
    ll_future *reap;     /* after a failure or cancel: the wait for the killed child */
    bool cancelled;
    int code;
    char *msg;
} run;

static void run_end(run *r) {
    if (r->cancelled) ll_future_set_cancelled(r->f);
    else ll_future_fail(r->f, r->code, "%s", r->msg ? r->msg : ll_strerror(r->code));
    ll_process_close(r->p);
    ll__free(r->msg);
    ll_future_free(r->f);
    ll__free(r);
}

static void on_run_reaped(ll_future *f, void *arg) {
    run *r = arg;
    (void)f;
    ll_future_free(r->reap);
    r->reap = NULL;
    run_end(r);
}

static void on_run_comm(ll_future *f, void *arg) {
    run *r = arg;
    int rc = ll_future_code(f);
    if (rc == 0 && !r->cancelled) {
        ll_future_resolve(r->f, ll_future_take(f), output_free);
        ll_future_free(r->comm);
        ll_process_close(r->p);
        ll_future_free(r->f);
        ll__free(r);
        return;
    }
    if (!r->cancelled) {
        r->code = rc;
        r->msg = ll__strdup(ll_future_errmsg(f));
    }
    ll_future_free(r->comm);
    r->comm = NULL;
    /* the child is ours alone: kill it and settle once it has been reaped */
    ll_process_kill(r->p);
    r->reap = ll_process_wait(r->p);
    if (!r->reap || ll_future_add_done(r->reap, on_run_reaped, r) != 0) {
        if (r->reap) ll_future_cancel(r->reap);
        ll_future_free(r->reap);
        r->reap = NULL;
        run_end(r); /* close() still reaps it in the background */
    }
}

static void run_cancel(ll_future *f, void *arg) {
    (void)f;
    run *r = arg;
    r->cancelled = true;
    ll_process_kill(r->p);
    if (r->comm) ll_future_cancel(r->comm);
}

ll_future *ll_process_run(const char *const *argv, const void *input, size_t len,
                          const ll_process_opts *opts) {
    ll_process_opts o = {0};
    if (opts) o = *opts;
    if (o.stdin_mode == LL_STDIO_INHERIT) o.stdin_mode = input && len ? LL_STDIO_PIPE : LL_STDIO_NULL;
    if (o.stdout_mode == LL_STDIO_INHERIT) o.stdout_mode = LL_STDIO_PIPE;
    if (o.stderr_mode == LL_STDIO_INHERIT) o.stderr_mode = LL_STDIO_PIPE;
    ll_loop *loop = ll__loop_or_current(o.loop);
    if (!loop) return NULL;
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "run process");
    ll_future *sf = ll_process_spawn(argv, &o);
    if (!sf || ll_future_code(sf) != 0) {
        if (sf) ll_future_copy_outcome(f, sf);
        else ll_future_fail(f, LL_ENOMEM, "spawn %s: out of memory", argv && argv[0] ? argv[0] : "");
        ll_future_free(sf);
        return f;
    }
    ll_process *p = ll_future_take(sf);
    ll_future_free(sf);
    run *r = ll__calloc(1, sizeof *r);
    ll_future *cf = r ? ll_process_communicate(p, input, len, 0) : NULL;
    if (!cf || ll_future_add_done(cf, on_run_comm, r) != 0) {
        if (cf) ll_future_cancel(cf);
        ll_future_free(cf);
        ll__free(r);
        ll_process_close(p);
        ll_future_fail(f, LL_ENOMEM, "run %s: out of memory", argv[0]);
        return f;
    }
    r->f = ll_future_ref(f);
    r->p = p;
    r->comm = cf;
    ll_future_on_cancel(f, run_cancel, r);
    return f;
}
