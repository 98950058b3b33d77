/*
 * bench_http_curl.c — the HTTP benchmark, libcurl side: the same workload as bench_http.c with the
 * curl multi interface (bench/run-http runs both).
 *
 *   bench_http_curl URL CONNECTIONS SECONDS [WARMUP_SECONDS]
 *
 * CONNECTIONS easy handles are kept in flight; each one finished is checked (status 200), counted
 * and added again, so curl reuses its keep-alive connection (at most CONNECTIONS per host).
 * Requests finished during the warm-up are not counted. Output: one key=value line; non-zero exit
 * if any request failed.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct slot {
    CURL *e;
    size_t bytes;
} slot;

static size_t on_data(char *p, size_t size, size_t n, void *arg) {
    (void)p;
    ((slot *)arg)->bytes += size * n;
    return size * n;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_http_curl URL CONNECTIONS SECONDS [WARMUP_SECONDS]\n");
        return 2;
    }
    const char *url = argv[1];
    int conns = atoi(argv[2]);
    double secs = atof(argv[3]), warm = argc > 4 ? atof(argv[4]) : 1.0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conns);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conns);
    slot *slots = calloc((size_t)conns, sizeof *slots);
    for (int i = 0; i < conns; i++) {
        slots[i].e = curl_easy_init();
        curl_easy_setopt(slots[i].e, CURLOPT_URL, url);
        curl_easy_setopt(slots[i].e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(slots[i].e, CURLOPT_WRITEDATA, &slots[i]);
        curl_easy_setopt(slots[i].e, CURLOPT_PRIVATE, &slots[i]);
        curl_multi_add_handle(m, slots[i].e);
    }
    double warm_end = now() + warm, end = warm_end + secs;
    unsigned long requests = 0, errors = 0;
    unsigned long long bytes = 0;
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        double t = now();
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL *e = msg->easy_handle;
            slot *sl;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&sl);
            long status = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200) {
                if (!errors)
                    fprintf(stderr, "bench_http_curl: %s (status %ld)\n",
                            curl_easy_strerror(msg->data.result), status);
                errors++;
            } else if (t >= warm_end && t < end) {
                requests++;
                bytes += sl->bytes;
            }
            sl->bytes = 0;
            curl_multi_remove_handle(m, e);
            if (t < end) {
                curl_multi_add_handle(m, e);
                running = 1;
            }
        }
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < conns; i++) curl_easy_cleanup(slots[i].e);
    free(slots);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    if (errors) return 1;
    printf("client=curl requests=%lu seconds=%.3f rps=%.0f mbps=%.2f\n", requests, secs,
           (double)requests / secs, (double)bytes / secs / 1e6);
    return 0;
}
