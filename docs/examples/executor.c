/* executor.c — a blocking call (here getaddrinfo) runs on a worker thread; the task awaits it. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <libloop.h>

static int lookup(void *arg, void **value) {   /* runs on a worker thread: may block */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(arg, "80", &hints, &res) != 0) return LL_ENOENT;
    *value = res;
    return 0;
}

static void free_ai(void *p) { freeaddrinfo(p); }

static int main_task(void *arg) {
    (void)arg;
    /* the job owns its arg: a literal here, so nothing to free (arg_free NULL) */
    ll_future *f = ll_executor_run(lookup, "localhost", NULL, free_ai, NULL);
    int rc = ll_await(f);                      /* the loop keeps running other tasks meanwhile */
    if (rc == 0) {
        struct addrinfo *ai = ll_future_value(f);
        printf("localhost has family %d\n", ai->ai_family);
    } else {
        fprintf(stderr, "lookup: %s\n", ll_future_errmsg(f));
    }
    ll_future_free(f);
    return rc;
}

int main(void) { return ll_run(main_task, NULL) == 0 ? 0 : 1; }
