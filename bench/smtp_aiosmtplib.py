"""smtp_aiosmtplib.py URL_HOST PORT SESSIONS reuse|new SECS asyncio|uvloop — aiosmtplib's
throughput, the same workload as bench_smtp.c: SESSIONS coroutines sending 1 KiB messages, on
reused connections or a new connection (connect, EHLO, message, QUIT) per message.
Prints "msgs=RATE cpu_us_per_msg=X failed=N"."""
import asyncio, resource, sys, time

import aiosmtplib

host, port, sessions, mode, secs, loop_kind = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                               sys.argv[4], float(sys.argv[5]), sys.argv[6])
head = b"From: bench@example.test\r\nTo: sink@example.test\r\nSubject: bench\r\n\r\n"
body = head
while len(body) < 1022:
    n = min(70, 1022 - len(body))
    body += b"x" * n + b"\r\n"
state = {"n": 0, "failed": 0, "stop": False}


async def worker():
    if mode == "reuse":
        smtp = aiosmtplib.SMTP(hostname=host, port=port, use_tls=False, start_tls=False)
        await smtp.connect()
        while not state["stop"]:
            try:
                await smtp.sendmail("bench@example.test", ["sink@example.test"], body)
                state["n"] += 1
            except Exception:
                state["failed"] += 1
        await smtp.quit()
    else:
        while not state["stop"]:
            try:
                smtp = aiosmtplib.SMTP(hostname=host, port=port, use_tls=False, start_tls=False)
                await smtp.connect()
                await smtp.sendmail("bench@example.test", ["sink@example.test"], body)
                await smtp.quit()
                state["n"] += 1
            except Exception:
                state["failed"] += 1


async def main():
    ts = [asyncio.ensure_future(worker()) for _ in range(sessions)]
    await asyncio.sleep(0.5)
    n0, t0 = state["n"], time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(secs)
    n1, t1 = state["n"], time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    state["stop"] = True
    await asyncio.gather(*ts, return_exceptions=True)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    n = n1 - n0
    # say which loop really ran (the uvloop figures must be uvloop's, not asyncio's)
    loop = type(asyncio.get_running_loop())
    print("msgs=%.0f cpu_us_per_msg=%.2f failed=%d loop=%s.%s" % (
        n / (t1 - t0), cpu / n * 1e6 if n else 0, state["failed"], loop.__module__, loop.__name__))

if loop_kind == "uvloop":
    import uvloop
    uvloop.install()
    asyncio.run(main())
    assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
else:
    asyncio.run(main())
