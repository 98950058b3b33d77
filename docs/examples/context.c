/* context.c — task-local values (contextvars): a request id seen by every task the handler spawns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libloop.h>

static const ll_ctxvar request_id = {"request_id", free};

static int log_step(void *arg) {
    printf("[%s] %s\n", (const char *)ll_ctxvar_get(&request_id), (const char *)arg);
    return 0;
}

static int handle(void *arg) {
    ll_ctxvar_set(&request_id, strdup(arg));   /* seen by this task and its children */
    ll_future *f = ll_spawn(log_step, "querying");
    int rc = ll_await(f);
    ll_future_free(f);
    return rc;
}

static int main_task(void *arg) {
    (void)arg;
    ll_future *a = ll_spawn(handle, "req-1"), *b = ll_spawn(handle, "req-2");
    int rc = ll_await(a) | ll_await(b);
    ll_future_free(a);
    ll_future_free(b);
    return rc;
}

int main(void) { return ll_run(main_task, NULL); }
