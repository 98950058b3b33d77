/*
 * redisserver.h — a throwaway redis-server for the tests: a generated configuration in a
 * temporary directory, a plain port and a TLS port (certificate made at start with the openssl
 * command line: self-signed for localhost and 127.0.0.1, trusted by the tests as their CA) on free
 * loopback ports, and a Unix socket in that directory. No persistence.
 *
 * As root, the server runs as the unprivileged user the PostgreSQL harness uses (llpgtest, or
 * nobody). It is our direct child, so it can be killed, paused and restarted by PID. The ACL user
 * LT_REDIS_USER (password LT_REDIS_PASS) exists for the AUTH tests; the default user has no
 * password. DEBUG is enabled (DEBUG SLEEP for slow replies).
 *
 * This file uses only libc (it is linked into every test program and the demo).
 */
#ifndef LL_TEST_REDISSERVER_H
#define LL_TEST_REDISSERVER_H

#include <stdbool.h>

#define LT_REDIS_USER "lltest"
#define LT_REDIS_PASS "s3cret-pw"

typedef struct lt_redis {
    char dir[256];
    char sock[300];     /* dir/redis.sock */
    char cert[300];     /* dir/cert.pem: the CA to trust for TLS */
    int port, tls_port;
    int pid;            /* 0 when stopped */
    unsigned uid, gid;
    bool drop;
    char url[64];       /* "redis://127.0.0.1:PORT" */
    char tls_url[64];   /* "rediss://127.0.0.1:TLS_PORT" */
} lt_redis;

/* Start a server. false (after saying why on stderr) when redis-server or openssl is missing or
 * it does not start; the caller then skips its tests. */
bool lt_redis_start(lt_redis *s);
/* Stop it (SIGKILL; nothing to save) and remove the directory. Safe twice or after a failed start. */
void lt_redis_stop(lt_redis *s);
/* SIGKILL the server now (connections are reset); lt_redis_launch starts it again on the same
 * ports. lt_redis_restart does both. */
void lt_redis_kill(lt_redis *s);
bool lt_redis_launch(lt_redis *s);
bool lt_redis_restart(lt_redis *s);
/* SIGSTOP / SIGCONT: the server stops answering; the kernel still accepts connections. */
void lt_redis_pause(lt_redis *s);
void lt_redis_resume(lt_redis *s);

#endif
