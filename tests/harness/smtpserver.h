/*
 * smtpserver.h — a throwaway SMTP server for the libloop-smtp tests, the doc examples and the demo:
 * Debian's aiosmtpd run by tests/harness/smtpserver.py with /usr/bin/python3, in a temporary
 * directory, on free loopback ports, stopped by its PID.
 *
 * Two listeners: `port` (plaintext, STARTTLS offered) and `tls_port` (implicit TLS), with a
 * certificate for localhost and 127.0.0.1 made at start by the openssl command line (trust
 * `cert` as the CA). AUTH PLAIN, LOGIN, CRAM-MD5 and XOAUTH2: user "user", password "secret",
 * token "token"; only over TLS, except the user "plainuser" (password "secret"), who may use PLAIN
 * without TLS. Recipients whose local part starts with "reject" get 550 5.1.1, with "defer" 451
 * 4.2.0. Each message received is recorded (see smtpserver.py): lt_smtp_inspect() runs
 * tests/harness/smtp_inspect.py on it, which parses it with Python's email package (and checks a
 * DKIM signature with python3-dkim when given the public key).
 *
 * This file uses only libc (it is linked into every test program, with-servers and the demo).
 */
#ifndef LL_TEST_SMTPSERVER_H
#define LL_TEST_SMTPSERVER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct lt_smtp {
    char dir[256];
    char cert[320];     /* dir/cert.pem */
    int port, tls_port;
    int pid;            /* 0 when stopped */
    char url[96];       /* "smtp://127.0.0.1:PORT" */
    char tls_url[96];   /* "smtps://localhost:TLS_PORT" */
} lt_smtp;

/* Start the server. false (after saying why on stderr) when python3-aiosmtpd or openssl is
 * missing or the server does not come up within 20 s. */
bool lt_smtp_start(lt_smtp *s);
/* Stop it (SIGTERM, then SIGKILL) and remove the directory. Safe twice or after a failed start. */
void lt_smtp_stop(lt_smtp *s);
/* Messages recorded so far. */
int lt_smtp_count(const lt_smtp *s);
/* Wait until at least n messages are recorded (true) or `timeout` seconds pass (false). */
bool lt_smtp_wait_count(const lt_smtp *s, int n, double timeout);
/* Run smtp_inspect.py on message number `index` (1-based), with the DKIM public key file
 * `dkim_pub` (NULL: no check), and put its output ("key: value" lines) in out. true on success. */
bool lt_smtp_inspect(const lt_smtp *s, int index, const char *dkim_pub, char *out, size_t n);

#endif
