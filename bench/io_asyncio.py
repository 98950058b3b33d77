#!/usr/bin/python3
"""io_asyncio.py — the I/O benchmark, Python side: the echo server and client of bench/bench_io.c
with asyncio streams or, with --loop uvloop, asyncio streams on uvloop. bench/run-io runs both.

    io_asyncio.py [--loop asyncio|uvloop] serve
    io_asyncio.py [--loop asyncio|uvloop] client PORT CONNS SIZE

  serve   asyncio.start_server on 127.0.0.1, a free port; print "port=N"; each connection:
          data = await reader.read(65536); writer.write(data); await writer.drain() — until EOF.
          Runs until SIGTERM/SIGINT.
  client  CONNS connections (asyncio.open_connection); on each, a task repeats
          writer.write(msg); await writer.drain(); await reader.readexactly(SIZE)

Measured exactly as bench_io.c: a 0.1 s warm-up, then REPS runs of SECS seconds; every connection
repeats round trips until the run's end time; a run's rate is the round trips completed divided by
the time until the last task stopped; the first reply of each connection in each run is compared
with the message. The output is one key=value line. Both are the idiomatic streams code from the
asyncio documentation; asyncio and uvloop set TCP_NODELAY by default, as libloop does.
"""

import asyncio
import signal
import sys
import time

SECS = 1.0
WARMUP_SECS = 0.1
REPS = 3
SERVER_BUF = 65536


def new_loop(kind):
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# ---- server ----

async def echo(reader, writer):
    try:
        while True:
            data = await reader.read(SERVER_BUF)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass  # a client that goes away at the end of its measurement
    finally:
        writer.close()


async def serve_main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(f"port={server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


# ---- client ----

class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.count = 0


async def roundtrips(c, msg, size, end):
    reader, writer = c.reader, c.writer
    clock = time.perf_counter
    count = 0
    while True:
        writer.write(msg)
        await writer.drain()
        reply = await reader.readexactly(size)
        if count == 0 and reply != msg:
            raise RuntimeError("the echo differs from the message sent")
        count += 1
        if clock() >= end:
            break
    c.count = count


async def run_once(conns, msg, size, secs):
    t0 = time.perf_counter()
    await asyncio.gather(*(roundtrips(c, msg, size, t0 + secs) for c in conns))
    t1 = time.perf_counter()
    return sum(c.count for c in conns) / (t1 - t0)


async def client_main(kind, port, nconns, size):
    conns = []
    for _ in range(nconns):
        conns.append(Conn(*await asyncio.open_connection("127.0.0.1", port)))
    msg = bytes((ord("a") + i % 26) for i in range(size))
    await run_once(conns, msg, size, WARMUP_SECS)
    rates = [await run_once(conns, msg, size, SECS) for _ in range(REPS)]
    for c in conns:
        c.writer.close()
    for c in conns:
        try:
            await c.writer.wait_closed()
        except OSError:
            pass
    best = max(rates)
    print(f"runtime={kind} server={kind} conns={nconns} size={size} best_rps={best:.0f} "
          f"best_mbps={best * size / 1e6:.2f} runs={','.join(f'{r:.0f}' for r in rates)} "
          f"secs={SECS:.1f}")


def main(argv):
    kind = "asyncio"
    if len(argv) > 1 and argv[0] == "--loop":
        kind = argv[1]
        argv = argv[2:]
    if kind not in ("asyncio", "uvloop") or not argv:
        sys.exit(__doc__)
    with asyncio.Runner(loop_factory=lambda: new_loop(kind)) as runner:
        if argv == ["serve"]:
            runner.run(serve_main())
        elif len(argv) == 4 and argv[0] == "client":
            runner.run(client_main(kind, int(argv[1]), int(argv[2]), int(argv[3])))
        else:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
