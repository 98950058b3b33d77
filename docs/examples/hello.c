/* hello.c — the README example: three tasks at once, one gather, one deadline for the lot. */
#include <stdio.h>
#include <libloop.h>

static int fetch(void *arg) {               /* a task: reads like sequential code */
    intptr_t n = (intptr_t)arg;
    int rc = ll_sleep(0.01 * (double)n);    /* suspends only this task */
    if (rc) return rc;                      /* LL_ECANCELED, LL_ETIMEDOUT, ... */
    ll_task_return((void *)(n * 10), NULL);
    return 0;
}

static int main_task(void *arg) {
    (void)arg;
    ll_future *fs[3];
    for (intptr_t i = 0; i < 3; i++) fs[i] = ll_spawn(fetch, (void *)(i + 1));
    ll_future *all = ll_gather(fs, 3, LL_GATHER_FAIL_FAST);
    int rc = ll_await_timeout(all, 1.0);    /* on timeout, all three are cancelled */
    for (int i = 0; i < 3; i++) {
        if (rc == 0) printf("task %d gave %ld\n", i, (long)(intptr_t)ll_future_value(fs[i]));
        ll_future_free(fs[i]);
    }
    if (rc) fprintf(stderr, "gather: %s\n", ll_future_errmsg(all));
    ll_future_free(all);
    return rc;
}

int main(void) { return ll_run(main_task, NULL) == 0 ? 0 : 1; }
