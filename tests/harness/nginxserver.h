/*
 * nginxserver.h — a throwaway nginx for the HTTP tests: a generated configuration in a temporary
 * directory, a plain and a TLS server on free loopback ports, static files of several sizes,
 * gzip, redirects, and (when Debian's echo module is installed) endpoints that answer chunked and
 * echo what the client sent.
 *
 * nginx runs in the foreground of a child process (`daemon off`), as the current user (as root, the
 * workers run as root too: the files live in a 0700 temporary directory); it is stopped by its PID
 * (SIGTERM, then SIGKILL).
 * The TLS certificate is made at start with the openssl command line (a self-signed certificate for
 * "localhost" and 127.0.0.1, which the tests trust as their CA).
 *
 * Locations (all on both servers):
 *   /small.txt, /1k.bin, /64k.bin, /1m.bin   static files; byte i is lt_nginx_byte(i) (13 bytes
 *                                             of "hello, world\n" for small.txt)
 *   /text/big.txt                            300 KiB of compressible text, gzip on for /text/
 *   /r301, /r302, /r303, /r307, /r308        redirect to /method (relative Location)
 *   /chain/N                                  redirect to /chain/N-1 ... /chain/0 -> /small.txt
 *   /loop/a <-> /loop/b                       a redirect loop
 *   /to-https, /to-http                       cross-scheme redirects to /small.txt
 *   /so/headers                               307 to /headers (same origin)
 *   /xo/headers                               302 to http://localhost:PORT/headers (another origin:
 *                                             127.0.0.1 and localhost differ as hosts)
 *   /status/204, /status/304, /status/404     those statuses
 *   /status/503                               503 with "Retry-After: 1"
 *   /cookie/set                               Set-Cookie: a=1 (Path=/), p=2 (Path=/cookie, HttpOnly),
 *                                             sup=3 (Domain=com), sec=4 (Secure), gone=5 (Max-Age=0)
 * With the echo module (lt_nginx.echo):
 *   /method        the request method, then ' ', then the body                     (chunked)
 *   /headers       "auth=<Authorization>|cookie=<Cookie>|ua=<User-Agent>|ae=<Accept-Encoding>"
 *   /chunked/N     N lines "line i\n" sent as separate chunks                       (chunked)
 *   /slow          "a", 2 s pause, "b"
 *   /cookie/headers "cookie=<Cookie>"
 *
 * This file uses only libc (it is linked into every test program).
 */
#ifndef LL_TEST_NGINXSERVER_H
#define LL_TEST_NGINXSERVER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct lt_nginx {
    char dir[256];      /* the temporary directory (configuration, docroot, logs, certificate) */
    char cert[320];     /* dir/cert.pem: trust it as the CA for https */
    int port, tls_port;
    int pid;            /* nginx's master process, 0 when stopped */
    bool echo;          /* the echo module is loaded */
    char base[64];      /* "http://127.0.0.1:PORT" */
    char tls_base[64];  /* "https://localhost:TLS_PORT" */
} lt_nginx;

/* Start nginx. Return false (after saying why on stderr) when nginx or openssl is missing or it
 * does not start; the caller then skips its tests. */
bool lt_nginx_start(lt_nginx *n);
/* Stop nginx (SIGTERM, then SIGKILL after 5 s) and remove the directory. Safe to call twice or
 * after a failed start. */
void lt_nginx_stop(lt_nginx *n);
/* The content of the .bin files: byte i. */
unsigned char lt_nginx_byte(size_t i);

#endif
