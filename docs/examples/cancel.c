/* cancel.c — cancellation and deadlines: a scope's deadline reaches an await several calls deep; a
 * cancelled task cleans up in a shielded scope. */
#include <stdio.h>
#include <libloop.h>

static int slow_step(void) { return ll_sleep(10); }     /* knows nothing about timeouts */
static int do_work(void) { return slow_step(); }

static int worker(void *arg) {
    int *cleaned = arg;
    int rc = ll_sleep(10);                 /* cancelled from outside: returns LL_ECANCELED */
    ll_scope cleanup;                      /* awaiting again needs a shield, with its own deadline */
    ll_scope_enter_shielded(&cleanup, ll_deadline_in(1.0));
    if (ll_sleep(0.001) == 0) *cleaned = 1; /* e.g. a graceful goodbye to a server */
    ll_scope_exit(&cleanup);
    return rc;
}

static int main_task(void *arg) {
    (void)arg;
    ll_scope s;                            /* one budget for everything inside */
    ll_scope_enter(&s, ll_deadline_in(0.05));
    int rc = do_work();
    if (ll_scope_exit(&s) == LL_ETIMEDOUT) printf("do_work: %s after 50 ms\n", ll_strerror(rc));

    int cleaned = 0;
    ll_future *w = ll_spawn(worker, &cleaned);
    ll_sleep(0.01);
    ll_future_cancel(w);                   /* ask it to stop ... */
    rc = ll_await(w);                      /* ... and wait until it has */
    printf("worker: %s, cleaned up: %s\n", ll_strerror(rc), cleaned ? "yes" : "no");
    ll_future_free(w);
    return 0;
}

int main(void) { return ll_run(main_task, NULL); }
