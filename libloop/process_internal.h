/*
 * process_internal.h — what process.c (spawning, reaping, signals) and process_io.c (communicate,
 * run) share. Never installed.
 */
#ifndef LIBLOOP_PROCESS_INTERNAL_H
#define LIBLOOP_PROCESS_INTERNAL_H

#include "containers.h"
#include "internal.h"
#include "libloop/process.h"

typedef enum { REAP_PIDFD, REAP_CHILD, REAP_POLL } reap_mode;

typedef struct waitrec {
    ll_future *f;        /* our reference */
    struct ll_process *p;
    ll__dlink link;      /* the process's waiters */
} waitrec;

struct ll_process {
    ll_loop *loop;
    char *name;          /* argv[0], for messages */
    pid_t pid;
    reap_mode mode;
    int pidfd;
    ev_io io;
    ev_child child;
    ev_timer poll;
    bool watching;       /* the exit watcher is active */
    bool refd;           /* ...and keeps the loop alive */
    bool reaped;
    int reap_err;        /* the exit could not be collected (ECHILD: someone else reaped it) */
    ll_exit_status status;
    ll_stream *in, *out, *err;
    ll__dlist waits;
    size_t nwaits;
    size_t users;        /* communicates in progress */
    bool closed;
    ll__closer closer;
};

/* Keep the loop alive exactly while someone waits for the exit (process.c). */
void ll__process_update_ref(ll_process *p);
/* Release a process whose exit was collected and that nobody uses any more (process.c). */
void ll__process_free(ll_process *p);

#endif
