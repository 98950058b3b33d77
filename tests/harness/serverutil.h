/*
 * serverutil.h — what the throwaway-server harnesses (pg, nginx, redis, smtp) share: a free
 * loopback port, is a port open, running a helper quietly, writing a file, removing a temporary
 * directory. libc only.
 */
#ifndef LL_TEST_SERVERUTIL_H
#define LL_TEST_SERVERUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it back), or -1. */
int lt_free_port(void);
/* Write n bytes to path (created or truncated); true on success. */
bool lt_write_file(const char *path, const void *data, size_t n);
/* Remove a directory tree (best effort). */
void lt_rmtree(const char *dir);
/* Who a throwaway server should run as: ourselves, or (when root) the system user `llpgtest`
 * (created with useradd when missing), else nobody. *drop says whether that differs from us. */
void lt_server_user(unsigned *uid, unsigned *gid, bool *drop);
/* True when something accepts TCP connections on 127.0.0.1:port (a server is ready). */
bool lt_port_open(int port);
/* Run argv[0] (a path) with argv, stdout and stderr to /dev/null; true when it exits 0. */
bool lt_run_quiet(char *const argv[]);
/* Make a self-signed EC certificate for localhost and 127.0.0.1 with /usr/bin/openssl: the key
 * and the certificate written to the two paths (PEM); true on success. */
bool lt_self_signed_cert(const char *key, const char *cert);

#endif
