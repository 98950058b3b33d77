/*
 * serverutil.h — what the throwaway-server harnesses (pgserver.c, nginxserver.c) share: a free
 * loopback port, writing a file, removing a temporary directory. libc only.
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

#endif
