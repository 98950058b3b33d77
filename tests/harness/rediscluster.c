/*
 * rediscluster.c — see rediscluster.h. fork/exec and the kernel only. Readiness of one server is
 * "its port accepts a connection"; readiness of the cluster is what its nodes say (CLUSTER INFO).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "rediscluster.h"
#include "serverutil.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define REDIS_CLI "/usr/bin/redis-cli"

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int lt_redis_cli(char *out, size_t n, const char *const *args) {
    const char *argv[64];
    int k = 0;
    argv[k++] = REDIS_CLI;
    for (int i = 0; args[i] && k < 63; i++) argv[k++] = args[i];
    argv[k] = NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(p[1], 1);
        dup2(null, 2);
        execv(REDIS_CLI, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    char sink[4096];
    for (;;) {
        char *dst = out && got + 1 < n ? out + got : sink;
        size_t room = out && got + 1 < n ? n - 1 - got : sizeof sink;
        ssize_t r = read(p[0], dst, room);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (dst != sink) got += (size_t)r;
    }
    if (out && n) out[got] = 0;
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int lt_redis_cli_port(int port, char *out, size_t n, const char *words) {
    char buf[1024], ports[16];
    snprintf(buf, sizeof buf, "%s", words);
    snprintf(ports, sizeof ports, "%d", port);
    const char *args[64] = {"-h", "127.0.0.1", "-p", ports};
    int k = 4;
    for (char *save, *w = strtok_r(buf, " ", &save); w && k < 63; w = strtok_r(NULL, " ", &save)) args[k++] = w;
    args[k] = NULL;
    return lt_redis_cli(out, n, args);
}

/* Start one server (redis-server or redis-sentinel) with `conf` (written to dir/redis.conf). */
static bool node_launch(lt_rnode *nd, unsigned uid, unsigned gid, bool drop, const char *prog,
                        bool sentinel) {
    char conf[400];
    snprintf(conf, sizeof conf, "%s/redis.conf", nd->dir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        if (drop && (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0))
            _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (chdir(nd->dir) != 0) _exit(126);
        if (sentinel) execl(prog, "redis-server", conf, "--sentinel", (char *)NULL);
        else execl(prog, "redis-server", conf, (char *)NULL);
        _exit(127);
    }
    nd->pid = (int)pid;
    double end = mono() + 20;
    while (mono() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            nd->pid = 0;
            fprintf(stderr, "rediscluster: %s on port %d exited during start (see %s/redis.log)\n", prog,
                    nd->port, nd->dir);
            return false;
        }
        if (lt_port_open(nd->port)) return true;
        usleep(5000);
    }
    fprintf(stderr, "rediscluster: %s on port %d not ready after 20 s\n", prog, nd->port);
    return false;
}

static void node_kill(lt_rnode *nd) {
    if (nd->pid <= 0) return;
    kill((pid_t)nd->pid, SIGKILL);
    while (waitpid((pid_t)nd->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    nd->pid = 0;
}

static void node_remove(lt_rnode *nd) {
    node_kill(nd);
    if (nd->dir[0]) lt_rmtree(nd->dir);
    nd->dir[0] = 0;
}

/* Make the node's directory and write its configuration (`extra` appended to the common part). */
static bool node_prepare(lt_rnode *nd, unsigned uid, unsigned gid, bool drop, const char *extra) {
    snprintf(nd->dir, sizeof nd->dir, "/tmp/llrcluster-XXXXXX");
    if (!mkdtemp(nd->dir)) {
        nd->dir[0] = 0;
        perror("rediscluster: mkdtemp");
        return false;
    }
    nd->port = lt_free_port();
    char conf[2048], path[400];
    int n = snprintf(conf, sizeof conf,
                     "port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsave \"\"\nappendonly no\n"
                     "daemonize no\nlogfile %s/redis.log\nloglevel notice\n%s",
                     nd->port, nd->dir, nd->dir, extra);
    snprintf(path, sizeof path, "%s/redis.conf", nd->dir);
    if (nd->port <= 0 || !lt_write_file(path, conf, (size_t)n)) return false;
    if (drop && (chown(nd->dir, (uid_t)uid, (gid_t)gid) != 0 || chown(path, (uid_t)uid, (gid_t)gid) != 0)) {
        perror("rediscluster: chown");
        return false;
    }
    return true;
}

static bool binaries_present(void) {
    const char *need[] = {REDIS_SERVER, REDIS_CLI};
    for (int i = 0; i < 2; i++) {
        if (access(need[i], X_OK) != 0) {
            fprintf(stderr, "rediscluster: %s is not installed: these tests need it (scripts/deps installs "
                            "redis-server and redis-tools)\n", need[i]);
            return false;
        }
    }
    return true;
}

bool lt_cluster_start(lt_cluster *c, int masters, int replicas, int node_timeout_ms) {
    memset(c, 0, sizeof *c);
    if (!binaries_present()) return false;
    c->n = masters * (1 + replicas);
    if (c->n > LT_CLUSTER_MAX || masters < 3) {
        fprintf(stderr, "rediscluster: %d nodes asked for (3..%d masters x replicas)\n", c->n, LT_CLUSTER_MAX);
        return false;
    }
    lt_server_user(&c->uid, &c->gid, &c->drop);
    for (int i = 0; i < c->n; i++) {
        lt_rnode *nd = &c->node[i];
        char extra[512];
        int bus = lt_free_port();
        nd->bus_port = bus;
        snprintf(extra, sizeof extra,
                 "cluster-enabled yes\ncluster-port %d\ncluster-config-file nodes.conf\n"
                 "cluster-node-timeout %d\ncluster-replica-validity-factor 0\n"
                 "cluster-allow-replica-migration no\n",
                 bus, node_timeout_ms);
        if (!node_prepare(nd, c->uid, c->gid, c->drop, extra) || nd->bus_port == nd->port ||
            !node_launch(nd, c->uid, c->gid, c->drop, REDIS_SERVER, false)) {
            lt_cluster_stop(c);
            return false;
        }
    }
    const char *args[LT_CLUSTER_MAX + 8];
    char addr[LT_CLUSTER_MAX][32], reps[8];
    int k = 0;
    args[k++] = "--cluster";
    args[k++] = "create";
    size_t off = 0;
    for (int i = 0; i < c->n; i++) {
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", c->node[i].port);
        args[k++] = addr[i];
        off += (size_t)snprintf(c->seeds + off, sizeof c->seeds - off, "%s%s", i ? "," : "", addr[i]);
    }
    snprintf(reps, sizeof reps, "%d", replicas);
    args[k++] = "--cluster-replicas";
    args[k++] = reps;
    args[k++] = "--cluster-yes";
    args[k] = NULL;
    char out[8192];
    if (lt_redis_cli(out, sizeof out, args) != 0) {
        fprintf(stderr, "rediscluster: redis-cli --cluster create failed:\n%s\n", out);
        lt_cluster_stop(c);
        return false;
    }
    if (!lt_cluster_wait_ok(c, 30)) {
        fprintf(stderr, "rediscluster: the cluster did not reach cluster_state:ok in 30 s\n");
        lt_cluster_stop(c);
        return false;
    }
    /* Replicas are attached a moment after the slots are: wait until every node lists them all,
     * so a client reading the map sees the whole topology. */
    double end = mono() + 30;
    for (int i = 0; i < c->n; i++) {
        for (;;) {
            char nodes[16384];
            int slaves = 0;
            if (lt_redis_cli_port(c->node[i].port, nodes, sizeof nodes, "cluster nodes") == 0)
                for (char *p = nodes; (p = strstr(p, "slave")) != NULL; p += 5) slaves++;
            if (slaves >= masters * replicas) break;
            if (mono() > end) {
                fprintf(stderr, "rediscluster: replicas not all attached after 30 s:\n%s\n", nodes);
                lt_cluster_stop(c);
                return false;
            }
            usleep(50000);
        }
    }
    return true;
}

bool lt_cluster_wait_ok(lt_cluster *c, double timeout) {
    double end = mono() + timeout;
    while (mono() < end) {
        bool all = true;
        for (int i = 0; i < c->n && all; i++) {
            if (c->node[i].pid <= 0) continue;
            char out[2048];
            if (lt_redis_cli_port(c->node[i].port, out, sizeof out, "cluster info") != 0 ||
                !strstr(out, "cluster_state:ok"))
                all = false;
        }
        /* Every slot agreed on by the first running node (a fresh cluster takes a moment to
         * propagate its configuration). */
        if (all) {
            for (int i = 0; i < c->n; i++) {
                if (c->node[i].pid <= 0) continue;
                char out[2048];
                lt_redis_cli_port(c->node[i].port, out, sizeof out, "cluster info");
                if (!strstr(out, "cluster_slots_ok:16384")) all = false;
                break;
            }
        }
        if (all) return true;
        usleep(100000);
    }
    return false;
}

int lt_cluster_master_of(lt_cluster *c, int slot) {
    for (int i = 0; i < c->n; i++) {
        if (c->node[i].pid <= 0) continue;
        char out[16384];
        if (lt_redis_cli_port(c->node[i].port, out, sizeof out, "cluster nodes") != 0) continue;
        /* lines: id addr@bus flags master ping pong epoch state slots... ; find "myself,master" */
        for (char *save, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            if (!strstr(line, "master") || strstr(line, "fail")) continue;
            int port = 0;
            char *colon = strchr(line, ':');
            if (colon) port = atoi(colon + 1);
            char *p = line;
            for (int field = 0; field < 8 && p; field++) p = strchr(p + 1, ' ');
            while (p && *p) {
                while (*p == ' ') p++;
                if (*p == '[') break;
                int lo = atoi(p), hi = lo;
                char *dash = strchr(p, '-'), *sp = strchr(p, ' ');
                if (dash && (!sp || dash < sp)) hi = atoi(dash + 1);
                if (slot >= lo && slot <= hi)
                    for (int j = 0; j < c->n; j++)
                        if (c->node[j].port == port) return j;
                p = sp;
            }
        }
        return -1;
    }
    return -1;
}

void lt_cluster_kill(lt_cluster *c, int i) {
    if (i >= 0 && i < c->n) node_kill(&c->node[i]);
}

void lt_cluster_stop(lt_cluster *c) {
    for (int i = 0; i < LT_CLUSTER_MAX; i++) node_remove(&c->node[i]);
}

/* ---- Sentinel ---- */

bool lt_sentinel_start(lt_sentinel *s) {
    memset(s, 0, sizeof *s);
    if (!binaries_present()) return false;
    lt_server_user(&s->uid, &s->gid, &s->drop);
    if (!node_prepare(&s->data[0], s->uid, s->gid, s->drop, "") ||
        !node_launch(&s->data[0], s->uid, s->gid, s->drop, REDIS_SERVER, false))
        goto fail;
    char extra[256];
    snprintf(extra, sizeof extra, "replicaof 127.0.0.1 %d\n", s->data[0].port);
    if (!node_prepare(&s->data[1], s->uid, s->gid, s->drop, extra) ||
        !node_launch(&s->data[1], s->uid, s->gid, s->drop, REDIS_SERVER, false))
        goto fail;
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(extra, sizeof extra,
                 "sentinel monitor mymaster 127.0.0.1 %d 2\nsentinel down-after-milliseconds mymaster 1000\n"
                 "sentinel failover-timeout mymaster 5000\nsentinel parallel-syncs mymaster 1\n",
                 s->data[0].port);
        if (!node_prepare(&s->sentinel[i], s->uid, s->gid, s->drop, extra) ||
            !node_launch(&s->sentinel[i], s->uid, s->gid, s->drop, REDIS_SERVER, true))
            goto fail;
        off += (size_t)snprintf(s->sentinels + off, sizeof s->sentinels - off, "%s127.0.0.1:%d", i ? "," : "",
                                s->sentinel[i].port);
    }
    return true;
fail:
    lt_sentinel_stop(s);
    return false;
}

void lt_sentinel_stop(lt_sentinel *s) {
    for (int i = 0; i < 3; i++) node_remove(&s->sentinel[i]);
    for (int i = 0; i < 2; i++) node_remove(&s->data[i]);
}
