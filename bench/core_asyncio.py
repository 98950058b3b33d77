#!/usr/bin/python3
"""core_asyncio.py — the core benchmark, Python side: the workloads of bench/bench_core.c in
asyncio or, with --loop uvloop, in asyncio on uvloop. bench/run-core runs both and compares.

    core_asyncio.py [--loop asyncio|uvloop] future|spawn|switch [N]
    core_asyncio.py [--loop asyncio|uvloop] sleep [tasks [seconds]]

  future  (a) loop.create_future(), loop.call_soon(fut.set_result, None), await it: one op each
  spawn   (b) create 1,000 tasks that return at once and gather them: one op per task
  switch  (c) two tasks ping-pong over two asyncio.Events: one op per wake
  sleep   (d) 100,000 tasks each asyncio.sleep(1): peak RSS (VmHWM)

As in bench_core.c: without N a throughput workload calibrates and prints the N for which one
measurement takes about TARGET_SECS; with N it warms up (N/10), measures N ops once and prints the
rate, as one key=value line for bench/run-core. The garbage collector and debug settings stay as a
user would have them.
"""

import asyncio
import sys
import time

TARGET_SECS = 0.8
BATCH = 1000


async def future_work(n):
    loop = asyncio.get_running_loop()
    for _ in range(n):
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        await fut


async def noop():
    pass


async def spawn_work(n):
    loop = asyncio.get_running_loop()
    for _ in range(0, n, BATCH):
        await asyncio.gather(*[loop.create_task(noop()) for _ in range(BATCH)])


async def ponger(ping, pong, rounds):
    for _ in range(rounds):
        await ping.wait()
        ping.clear()
        pong.set()


async def switch_work(n):
    """n wakes: n/2 rounds, each wakes the ponger once and the pinger (this task) once."""
    ping, pong = asyncio.Event(), asyncio.Event()
    rounds = n // 2
    other = asyncio.get_running_loop().create_task(ponger(ping, pong, rounds))
    for _ in range(rounds):
        ping.set()
        await pong.wait()
        pong.clear()
    await other


async def timed(work, n):
    t0 = time.perf_counter()
    await work(n)
    return time.perf_counter() - t0


def new_loop(kind):
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def throughput(kind, name, work, quantum, n):
    with asyncio.Runner(loop_factory=lambda: new_loop(kind)) as runner:
        if n <= 0:
            n = quantum
            while True:
                secs = runner.run(timed(work, n))
                if secs >= TARGET_SECS / 10:
                    break
                n *= 4
            n = int(n * TARGET_SECS / secs)
            n = (n + quantum - 1) // quantum * quantum
            print(f"runtime={kind} workload={name} n={n}")
            return
        n = (n + quantum - 1) // quantum * quantum
        runner.run(timed(work, (n // 10 + quantum - 1) // quantum * quantum))  # warm up
        secs = runner.run(timed(work, n))
    print(f"runtime={kind} workload={name} n={n} secs={secs:.4f} rate={n / secs:.0f}")


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


class Sleepers:
    def __init__(self, ntasks, secs):
        self.ntasks, self.secs = ntasks, secs
        self.started = self.finished = 0
        self.alive_tasks = self.alive_kib = -1
        self.t0 = self.start_secs = 0.0


async def sleeper(s):
    s.started += 1
    if s.started == s.ntasks:  # the last one to start: every sleeper should be alive now
        s.start_secs = time.perf_counter() - s.t0
        s.alive_tasks = s.ntasks - s.finished
        s.alive_kib = status_kib("VmRSS")
    await asyncio.sleep(s.secs)
    s.finished += 1


async def sleep_main(s):
    loop = asyncio.get_running_loop()
    s.t0 = time.perf_counter()
    tasks = [loop.create_task(sleeper(s)) for _ in range(s.ntasks)]
    await asyncio.gather(*tasks)
    return time.perf_counter() - s.t0


def sleep_bench(kind, ntasks, secs):
    base = status_kib("VmRSS")
    s = Sleepers(ntasks, secs)
    with asyncio.Runner(loop_factory=lambda: new_loop(kind)) as runner:
        elapsed = runner.run(sleep_main(s))
    if s.alive_tasks < ntasks:
        sys.exit(f"core_asyncio: only {s.alive_tasks} of {ntasks} sleepers were alive at once "
                 f"(starting them took {s.start_secs:.2f} s): sleep longer")
    print(f"runtime={kind} workload=sleep tasks={ntasks} secs={secs:g} "
          f"peak_kib={status_kib('VmHWM')} base_kib={base} alive_kib={s.alive_kib} "
          f"alive_tasks={s.alive_tasks} start_secs={s.start_secs:.3f} elapsed={elapsed:.3f}")


def main(argv):
    kind = "asyncio"
    if len(argv) > 1 and argv[0] == "--loop":
        kind = argv[1]
        argv = argv[2:]
    if kind not in ("asyncio", "uvloop") or not argv:
        sys.exit(__doc__)
    w = argv[0]
    n = int(argv[1]) if len(argv) > 1 else 0
    if w == "future":
        throughput(kind, w, future_work, 1000, n)
    elif w == "spawn":
        throughput(kind, w, spawn_work, BATCH, n)
    elif w == "switch":
        throughput(kind, w, switch_work, 1000, n)
    elif w == "sleep":
        ntasks = int(argv[1]) if len(argv) > 1 else 100000
        secs = float(argv[2]) if len(argv) > 2 else 1.0
        sleep_bench(kind, ntasks, secs)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
