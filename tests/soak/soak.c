/*
 * soak.c — `make soak SOAK_SECONDS=N`: mixed load through every client at once, with faults, for N
 * seconds (load.c), then checks and a report (see soak.h and docs/reliability.md).
 *
 * Usage: soak [SECONDS] [OUTDIR]   (SECONDS: else $SOAK_SECONDS, else 60; OUTDIR: build/soak)
 *
 * Checks at the end (the exit status is 1 when one fails):
 *   - RSS and descriptor count flat after warm-up: the median of the last tenth of the samples is
 *     at most 5 % above the median of the first tenth after warm-up (judged in runs of 120 s or
 *     more; descriptors are counted in the quiet moment before each fault);
 *   - no task stuck: no operation seen running past its deadline + 4 x slack, and every worker
 *     finished within its deadline of being told to stop;
 *   - every operation succeeded or failed within its deadline + SOAK_SLACK, every failure with a
 *     libloop error code and a message; no wrong answer;
 *   - every failure accounted for: the counts by client and code add up to the failures;
 *   - after the clients are closed: the loop has no task, future or handle left, and once it is
 *     freed the descriptor count is back where it was before it was made.
 * Writes OUTDIR/soak.tsv (one row per second: time, RSS MB, descriptors, operations/s per client)
 * for tests/soak/soak-chart, and prints sparklines of RSS and operations/s.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libloop.h>
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "harness/pgserver.h"
#include "harness/redisserver.h"
#include "harness/smtpserver.h"
#include "soak.h"

const char *const soak_client_name[NCLIENT] = {"pg", "redis", "http", "smtp"};
soak_state S;

typedef struct {
    double t;
    double rss_mb;
    int fds;
    double rate[NCLIENT]; /* operations per second over the last interval */
} sample;

static sample *samples;
static size_t nsamples, cap_samples;
typedef struct {
    double t;
    double rss_mb;
    int fds;
} quiet;
static quiet *quiets;
static size_t nquiet, cap_quiet;
static ll_time t_start;
static long stuck_at_end;
static ll_loop_stats end_stats;

static double rss_mb(void) {
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

void soak_record(int client, ll_time t0, double deadline, int code, const char *msg) {
    soak_stats *st = &S.st[client];
    double took = ll_now() - t0;
    S.done_total[client]++;
    if (took > st->max_latency) st->max_latency = took;
    if (took - deadline > st->max_over) st->max_over = took - deadline;
    if (took > deadline + SOAK_SLACK) {
        if (!st->late++)
            snprintf(st->late_example, sizeof st->late_example, "%.3f s under a %.1f s deadline: %s %s",
                     took, deadline, ll_err_name(code), msg ? msg : "");
    }
    if (code == 0) {
        st->ok++;
        return;
    }
    st->failed++;
    bool known = code == SOAK_WRONG || code == SOAK_DEFERRED || strcmp(ll_err_name(code), "UNKNOWN") != 0;
    if (!known || !msg || !msg[0]) st->unclear++;
    for (int i = 0; i < st->nerr; i++)
        if (st->errs[i].code == code) {
            st->errs[i].count++;
            return;
        }
    if (st->nerr == (int)(sizeof st->errs / sizeof *st->errs)) {
        st->unclear++; /* more distinct codes than the table holds: no code is lost silently */
        return;
    }
    soak_err *e = &st->errs[st->nerr++];
    e->code = code;
    e->count = 1;
    snprintf(e->example, sizeof e->example, "%s", msg ? msg : "(no message)");
}

static const char *code_name(int code) {
    return code == SOAK_WRONG ? "WRONG-ANSWER" : code == SOAK_DEFERRED ? "DEFERRED" : ll_err_name(code);
}

/* ---- sampling ---- */

void soak_quiet_sample(void) {
    if (nquiet == cap_quiet) {
        cap_quiet = cap_quiet ? cap_quiet * 2 : 128;
        quiet *g = realloc(quiets, cap_quiet * sizeof *g);
        if (!g) return;
        quiets = g;
    }
    size_t proxied = 0;
    for (int c = 0; c < NCLIENT; c++) proxied += lt_proxy_open_connections(S.proxy[c]);
    quiets[nquiet++] = (quiet){ll_now() - t_start, rss_mb(), lt_count_fds() - 2 * (int)proxied};
}

static int sampler(void *arg) {
    (void)arg;
    ll_time t0 = t_start, next = t0;
    long last[NCLIENT] = {0};
    ll_time last_t = t0;
    while (!S.stop) {
        next += 1.0;
        if (ll_sleep(next - ll_now())) break;
        ll_time now = ll_now();
        if (nsamples == cap_samples) {
            cap_samples = cap_samples ? cap_samples * 2 : 256;
            sample *g = realloc(samples, cap_samples * sizeof *g);
            if (!g) break;
            samples = g;
        }
        sample *s = &samples[nsamples++];
        s->t = now - t0;
        s->rss_mb = rss_mb();
        s->fds = lt_count_fds();
        for (int c = 0; c < NCLIENT; c++) {
            s->rate[c] = (double)(S.done_total[c] - last[c]) / (now - last_t);
            last[c] = S.done_total[c];
        }
        last_t = now;
        /* an operation running well past its deadline is stuck (reported once per operation) */
        for (int i = 0; i < S.nslots; i++) {
            soak_slot *sl = &S.slot[i];
            if (sl->started > 0 && now - sl->started > sl->deadline + 4 * SOAK_SLACK) {
                if (!S.stuck_seen++)
                    snprintf(S.stuck_example, sizeof S.stuck_example, "%s operation running for %.1f s "
                             "under a %.1f s deadline", soak_client_name[sl->client], now - sl->started,
                             sl->deadline);
                sl->started = -1; /* counted */
            }
        }
    }
    return 0;
}

static int soak_main(void *arg) {
    (void)arg;
    size_t n = 0;
    ll_future **fs = soak_start_load(&n);
    if (!fs) {
        soak_stop_load();
        return ll_task_fail(LL_EIO, "soak: a client could not be set up (see above)");
    }
    t_start = ll_now();
    ll_future *samp = ll_spawn(sampler, NULL);
    ll_sleep(S.seconds);
    S.stop = true;
    /* Each worker ends its current operation within that operation's deadline; the injector may be
     * in a server restart (bounded at 60 s, shielded). */
    ll_time stop_at = ll_now();
    for (size_t i = 0; i < n; i++) {
        bool inj = i == n - 1;
        double left = stop_at + (inj ? 65.0 : 3.0 + SOAK_SLACK + 1.0) - ll_now(); /* 3: the longest deadline */
        if (ll_await_timeout(fs[i], left > 0 ? left : 0) == LL_ETIMEDOUT) {
            stuck_at_end++;
            fprintf(stderr, "soak: %s did not stop in time\n", inj ? "the injector" : "a worker");
        }
        ll_future_free(fs[i]);
    }
    free(fs);
    ll_await(samp);
    ll_future_free(samp);
    soak_stop_load();
    /* let the clients' closes finish, then see that nothing is left but this task */
    for (int i = 0; i < 50; i++) {
        size_t open = 0;
        for (int c = 0; c < NCLIENT; c++) open += lt_proxy_open_connections(S.proxy[c]);
        ll_loop_get_stats(ll_loop_current(), &end_stats);
        if (open == 0 && end_stats.tasks <= 1 && end_stats.handles == 0) break;
        ll_sleep(0.1);
    }
    ll_loop_get_stats(ll_loop_current(), &end_stats);
    return 0;
}

/* ---- report ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of RSS (which 0: per-second samples) or descriptors (1: quiet samples) over [from, to). */
static double median(size_t from, size_t to, int which) {
    if (to <= from) return 0;
    double *v = malloc((to - from) * sizeof *v);
    for (size_t i = from; i < to; i++) v[i - from] = which ? quiets[i].fds : samples[i].rss_mb;
    qsort(v, to - from, sizeof *v, cmp_double);
    double m = v[(to - from) / 2];
    free(v);
    return m;
}

/* A text sparkline of up to 60 columns (bucket means). */
static void sparkline(const char *label, const char *unit, double (*get)(const sample *)) {
    static const char *const bars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    size_t cols = nsamples < 60 ? nsamples : 60;
    if (!cols) return;
    double v[60], lo = 1e300, hi = -1e300;
    for (size_t c = 0; c < cols; c++) {
        size_t a = c * nsamples / cols, b = (c + 1) * nsamples / cols;
        double sum = 0;
        for (size_t i = a; i < b; i++) sum += get(&samples[i]);
        v[c] = sum / (double)(b - a);
        if (v[c] < lo) lo = v[c];
        if (v[c] > hi) hi = v[c];
    }
    printf("  %-12s %8.1f ", label, lo);
    for (size_t c = 0; c < cols; c++) {
        int k = hi > lo ? (int)((v[c] - lo) / (hi - lo) * 7.999) : 0;
        fputs(bars[k], stdout);
    }
    printf(" %.1f %s\n", hi, unit);
}
static double get_rss(const sample *s) { return s->rss_mb; }
static double get_fds(const sample *s) { return s->fds; }
static double get_ops(const sample *s) {
    double t = 0;
    for (int c = 0; c < NCLIENT; c++) t += s->rate[c];
    return t;
}

/* The shortest run whose RSS and descriptor trends are judged (enough quiet samples, the fault
 * cycle seen). */
#define FLAT_MIN_SECONDS 120
static int failed_checks;
static void check(bool ok, const char *fmt, ...) LL_PRINTF(2, 3);
static void check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("  %s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!ok) failed_checks++;
}

static void write_tsv(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/soak.tsv", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "soak: cannot write %s\n", path);
        return;
    }
    fprintf(f, "t\trss_mb\tfds");
    for (int c = 0; c < NCLIENT; c++) fprintf(f, "\t%s", soak_client_name[c]);
    fprintf(f, "\n");
    for (size_t i = 0; i < nsamples; i++) {
        fprintf(f, "%.1f\t%.2f\t%d", samples[i].t, samples[i].rss_mb, samples[i].fds);
        for (int c = 0; c < NCLIENT; c++) fprintf(f, "\t%.1f", samples[i].rate[c]);
        fprintf(f, "\n");
    }
    fclose(f);
    printf("  per-second samples: %s (chart: tests/soak/soak-chart)\n", path);
}

static void report(int fds_before, int fds_after, const char *outdir) {
    static const char *const fault_name[] = {"none", "reset", "reset-after", "freeze", "trickle",
                                             "bandwidth", "half-close", "refuse", "blackhole"};
    printf("\n== soak: %.0f s, every client at once through a fault proxy\n\n", S.seconds);
    printf("  %-6s %9s %9s %8s %6s %7s %9s %9s\n", "client", "ops", "ok", "failed", "late", "unclear",
           "max lat", "max past");
    long total = 0, total_failed = 0;
    for (int c = 0; c < NCLIENT; c++) {
        soak_stats *st = &S.st[c];
        printf("  %-6s %9ld %9ld %8ld %6ld %7ld %8.3fs %8.3fs\n", soak_client_name[c], st->ok + st->failed,
               st->ok, st->failed, st->late, st->unclear, st->max_latency, st->max_over > 0 ? st->max_over : 0);
        total += st->ok + st->failed;
        total_failed += st->failed;
    }
    printf("  %-6s %9ld %9ld %8ld   (ops/s over the run: %.0f)\n", "all", total, total - total_failed,
           total_failed, (double)total / S.seconds);
    printf("\n  failures by client and code (first message of each):\n");
    for (int c = 0; c < NCLIENT; c++)
        for (int i = 0; i < S.st[c].nerr; i++)
            printf("  %-6s %-20s %7ld  %s\n", soak_client_name[c], code_name(S.st[c].errs[i].code),
                   S.st[c].errs[i].count, S.st[c].errs[i].example);
    printf("\n  faults injected:");
    long nfaults = 0;
    for (int c = 0; c < NCLIENT; c++) {
        printf("\n  %-6s", soak_client_name[c]);
        for (int k = 1; k <= LT_FAULT_BLACKHOLE; k++)
            if (S.faults[c][k]) printf(" %s %ld,", fault_name[k], S.faults[c][k]), nfaults += S.faults[c][k];
        if (S.restarts[c]) printf(" server restarts %ld", S.restarts[c]);
    }
    printf("\n\n");

    /* flatness after warm-up: a tenth of the run, at least 10 s (a third for short runs) */
    size_t warm = nsamples / 10 < 10 ? 10 : nsamples / 10;
    if (warm > nsamples / 3) warm = nsamples / 3;
    size_t win = (nsamples - warm) / 10 < 3 ? 3 : (nsamples - warm) / 10;
    if (win > (nsamples - warm) / 2) win = (nsamples - warm) / 2;
    double rss0 = median(warm, warm + win, 0), rss1 = median(nsamples - win, nsamples, 0);
    /* descriptors: the quiet samples, with the same proportions */
    size_t qwarm = nquiet / 10 < 3 ? 3 : nquiet / 10;
    if (qwarm > nquiet / 3) qwarm = nquiet / 3;
    size_t qwin = (nquiet - qwarm) / 10 < 3 ? 3 : (nquiet - qwarm) / 10;
    if (qwin > (nquiet - qwarm) / 2) qwin = (nquiet - qwarm) / 2;
    double fd0 = median(qwarm, qwarm + qwin, 1), fd1 = median(nquiet - qwin, nquiet, 1);
    printf("  RSS %.1f MB -> %.1f MB (medians of the %zu s after a %zu s warm-up and of the last %zu s)\n",
           rss0, rss1, win, warm, win);
    printf("  descriptors %.0f -> %.0f (the process's own, counted before each fault: medians of %zu "
           "samples after %zu and of the last %zu)\n", fd0, fd1, qwin, qwarm, qwin);
    sparkline("RSS", "MB", get_rss);
    sparkline("descriptors", "", get_fds);
    sparkline("ops/s", "ops/s", get_ops);
    printf("\n");
    write_tsv(outdir);
    printf("\n== checks\n");
    check(nsamples >= 6 && win >= 1 && qwin >= 1, "enough samples (%zu per second, %zu quiet)", nsamples,
          nquiet);
    /* A short run (the smoke run) ends before the allocator and the task stacks have seen every
     * fault of the cycle: its RSS says nothing about growth, so it is shown, not judged. */
    if (S.seconds >= FLAT_MIN_SECONDS)
        check(rss1 <= rss0 * 1.05, "RSS flat after warm-up: %+.1f %% (limit +5 %%)",
              rss0 > 0 ? (rss1 / rss0 - 1) * 100 : 0);
    else
        printf("  INFO RSS %+.1f %% after warm-up: not judged in a run shorter than %d s\n",
               rss0 > 0 ? (rss1 / rss0 - 1) * 100 : 0, FLAT_MIN_SECONDS);
    /* descriptors likewise: a short run has a handful of quiet samples, one reconnect in them is
     * 6 %; its leak check is the exact count once the loop is freed (below) */
    if (S.seconds >= FLAT_MIN_SECONDS)
        check(fd1 <= fd0 * 1.05, "descriptors flat after warm-up: %+.1f %% (limit +5 %%)",
              fd0 > 0 ? (fd1 / fd0 - 1) * 100 : 0);
    else
        printf("  INFO descriptors %+.1f %% after warm-up: not judged in a run shorter than %d s\n",
               fd0 > 0 ? (fd1 / fd0 - 1) * 100 : 0, FLAT_MIN_SECONDS);
    check(S.stuck_seen == 0 && stuck_at_end == 0, "no task stuck (%ld seen past deadline + %.1f s%s%s; "
          "%ld not stopped in time)", S.stuck_seen, 4 * SOAK_SLACK, S.stuck_seen ? ": " : "",
          S.stuck_example, stuck_at_end);
    for (int c = 0; c < NCLIENT; c++) {
        soak_stats *st = &S.st[c];
        long sum = 0, wrong = 0;
        for (int i = 0; i < st->nerr; i++) {
            sum += st->errs[i].count;
            if (st->errs[i].code == SOAK_WRONG) wrong = st->errs[i].count;
        }
        check(st->ok > 0, "%s: operations succeeded (%ld)", soak_client_name[c], st->ok);
        check(st->late == 0, "%s: every operation back within its deadline + %.1f s (%ld late%s%s)",
              soak_client_name[c], SOAK_SLACK, st->late, st->late ? "; first: " : "", st->late_example);
        check(st->unclear == 0 && sum == st->failed, "%s: every failure accounted for with a code and a "
              "message (%ld failed, %ld by code, %ld unclear)", soak_client_name[c], st->failed, sum,
              st->unclear);
        check(wrong == 0, "%s: no wrong answer (%ld)", soak_client_name[c], wrong);
    }
    check(nfaults > 0 && S.restart_failed == 0, "faults injected (%ld), server restarts all came back "
          "(%ld failed)", nfaults, S.restart_failed);
    check(end_stats.tasks <= 1 && end_stats.handles == 0, "clients closed: %zu task(s) (this one), %zu "
          "handle(s) left", end_stats.tasks, end_stats.handles);
    check(fds_after == fds_before, "descriptors back after the loop is freed (%d -> %d)", fds_before,
          fds_after);
    printf("\nsoak: %s\n", failed_checks ? "FAILED" : "passed");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The fault proxies are threads of this process; before they forwarded with send(MSG_NOSIGNAL)
     * a peer gone away raised SIGPIPE and ended a run after 40 s. No write of the harness's may
     * end a 10-minute run that way again (libloop itself never lets SIGPIPE through). */
    signal(SIGPIPE, SIG_IGN);
    const char *env = getenv("SOAK_SECONDS");
    S.seconds = argc > 1 ? atof(argv[1]) : env && *env ? atof(env) : 60;
    if (S.seconds < 10) S.seconds = 10;
    const char *outdir = argc > 2 ? argv[2] : "build/soak";
    mkdir(outdir, 0755);

    static lt_pg pg;
    static lt_redis rd;
    static lt_nginx ngx;
    static lt_smtp sm;
    printf("soak: starting PostgreSQL, Redis, nginx and aiosmtpd (throwaway, loopback)\n");
    if (!lt_pg_start(&pg) || !lt_redis_start(&rd) || !lt_nginx_start(&ngx) || !lt_smtp_start(&sm)) {
        fprintf(stderr, "soak: a server could not be started (see above); scripts/deps installs them\n");
        lt_pg_stop(&pg), lt_redis_stop(&rd), lt_nginx_stop(&ngx), lt_smtp_stop(&sm);
        return 77;
    }
    S.pg_server = &pg;
    S.redis_server = &rd;
    int ports[NCLIENT] = {pg.port, rd.port, ngx.port, sm.port};
    for (int c = 0; c < NCLIENT; c++)
        if (!(S.proxy[c] = lt_proxy_start("127.0.0.1", ports[c]))) return 1;
    snprintf(S.pg_conninfo, sizeof S.pg_conninfo, "host=127.0.0.1 port=%d user=postgres dbname=postgres",
             lt_proxy_port(S.proxy[C_PG]));
    snprintf(S.redis_url, sizeof S.redis_url, "redis://127.0.0.1:%d", lt_proxy_port(S.proxy[C_REDIS]));
    snprintf(S.http_base, sizeof S.http_base, "http://127.0.0.1:%d", lt_proxy_port(S.proxy[C_HTTP]));
    snprintf(S.smtp_url, sizeof S.smtp_url, "smtp://127.0.0.1:%d", lt_proxy_port(S.proxy[C_SMTP]));
    snprintf(S.smtp_ca, sizeof S.smtp_ca, "%s", sm.cert);
    printf("soak: %.0f s; proxies: pg %d -> %d, redis %d -> %d, http %d -> %d, smtp %d -> %d\n", S.seconds,
           lt_proxy_port(S.proxy[C_PG]), pg.port, lt_proxy_port(S.proxy[C_REDIS]), rd.port,
           lt_proxy_port(S.proxy[C_HTTP]), ngx.port, lt_proxy_port(S.proxy[C_SMTP]), sm.port);

    int fds_before = lt_count_fds();
    ll_loop *loop = ll_loop_new();
    ll_future *f = ll_spawn(soak_main, NULL);
    int rc = ll_loop_run_until(loop, f);
    if (rc) fprintf(stderr, "soak: %s\n", ll_future_errmsg(f));
    ll_future_free(f);
    ll_loop_free(loop);
    int fds_after = lt_count_fds();

    for (int c = 0; c < NCLIENT; c++) lt_proxy_stop(S.proxy[c]);
    lt_smtp_stop(&sm);
    lt_nginx_stop(&ngx);
    lt_redis_stop(&rd);
    lt_pg_stop(&pg);
    if (rc) return 1;
    report(fds_before, fds_after, outdir);
    free(samples);
    free(quiets);
    return failed_checks ? 1 : 0;
}
