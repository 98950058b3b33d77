/* Run a filter on some input and collect everything it prints; then follow a child's output line
 * by line as it comes, with a deadline. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "libloop.h"
#include "libloop/process.h"

static int main_task(void *arg) {
    (void)arg;
    /* 1. All at once: input in, stdout and stderr out, exit status. */
    const char *sort[] = {"sort", "-r", NULL};
    const char *input = "apple\ncherry\nbanana\n";
    ll_future *f = ll_process_run(sort, input, strlen(input), NULL);
    if (ll_await(f)) {
        fprintf(stderr, "%s\n", ll_future_errmsg(f)); /* "spawn sort: no such file or directory" */
        ll_future_free(f);
        return 1;
    }
    ll_process_output *out = ll_future_value(f);
    printf("sort said (exit %d):\n%s", out->status.code, out->out);
    ll_future_free(f);

    /* 2. Streaming: read lines while the child runs; give up after 2 seconds. */
    const char *ticker[] = {"sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.1; done", NULL};
    ll_process_opts o = {.stdout_mode = LL_STDIO_PIPE};
    ll_future *sf = ll_process_spawn(ticker, &o);
    if (ll_future_code(sf)) {
        fprintf(stderr, "%s\n", ll_future_errmsg(sf));
        ll_future_free(sf);
        return 1;
    }
    ll_process *p = ll_future_take(sf);
    ll_future_free(sf);
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(2.0));
    char line[128];
    for (;;) {
        ll_future *r = ll_stream_read_until(ll_process_stdout(p), "\n", 1, line, sizeof line - 1);
        int rc = ll_await(r);
        size_t n = rc == 0 ? (uintptr_t)ll_future_value(r) : 0;
        ll_future_free(r);
        if (rc) break; /* LL_EOF when the child is done, LL_ETIMEDOUT at the deadline */
        line[n] = '\0';
        printf("child: %s", line);
    }
    ll_scope_exit(&s);
    ll_future *w = ll_process_wait(p);
    if (ll_await(w) == 0) {
        const ll_exit_status *st = ll_future_value(w);
        if (st->exited) printf("exited with %d\n", st->code);
        else printf("killed by signal %d\n", st->signal);
    }
    ll_future_free(w);
    ll_process_close(p); /* would kill the child if it were still running */
    return 0;
}

int main(void) {
    return ll_run(main_task, NULL) == 0 ? 0 : 1;
}
