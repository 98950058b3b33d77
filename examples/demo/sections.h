/*
 * sections.h — the demo's client sections that live in their own files (examples/demo/<client>.c),
 * called from examples/demo.c's main task. Each returns 0 or a negative libloop code; `url` is the
 * server given on the command line, or NULL to start a throwaway local server.
 */
#ifndef LL_DEMO_SECTIONS_H
#define LL_DEMO_SECTIONS_H

/* Redis: a few thousand tasks on one pipelined connection, a pub/sub fan-in, a cancel burst
 * (examples/demo/redis.c). */
int demo_redis(const char *url);

/* SMTP: a few hundred personalised MIME messages (text + HTML, an attachment, DKIM-signed) through
 * the session pool with a progress bar, one recipient rejected on purpose, a per-recipient summary
 * (examples/demo/smtp.c). */
int demo_smtp(const char *url);

#endif
