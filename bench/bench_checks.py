"""Benchmark the health checks: SMTP_CHECK throughput and the scheduler's CPU cost.

    .venv/bin/python bench/bench_checks.py [--checks 5000] [--concurrency 50] [--servers 500]
                                           [--seconds 10] [--no-sink]

1. SMTP_CHECKs per second, client on one core (this process), against a minimal
   asyncio SMTP responder running in a *separate* process, so only the checker's own
   CPU is measured ("per CPU-second" divides by this process's CPU time).
2. The same against ``smtp-sink`` (Postfix's test server), a real peer.
3. The scheduler driving N real servers with SMTP_CHECK at delay_loop 1 for S seconds:
   CPU% of one core from resource.getrusage, and the checks actually completed.

Goals: >= 2000 checks/s on one core; < 50% of a core for 500 servers at 1 s.
Everything runs on 127.0.0.1. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailha.checkers import check_smtp
from mailha.checkers.quorum import HealthUpdate, VirtualServerHealth
from mailha.checkers.scheduler import CheckScheduler
from mailha.config.model import (
    CheckerCommon,
    RealServer,
    SmtpCheck,
    VirtualServer,
)

RESPONDER = r"""
import asyncio, sys
class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t; self.buf = b""; t.write(b"220 bench ESMTP\r\n")
    def data_received(self, d):
        self.buf += d
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            verb = line[:4].upper()
            if verb == b"QUIT":
                self.t.write(b"221 bye\r\n"); self.t.close(); return
            self.t.write(b"250-bench\r\n250 PIPELINING\r\n" if verb == b"EHLO" else b"250 ok\r\n")
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(P, "127.0.0.1", 0, backlog=4096)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def responder() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RESPONDER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(5)


@contextlib.contextmanager
def smtp_sink() -> Iterator[int | None]:
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not os.path.exists(exe):
        yield None
        return
    port = free_port()
    argv = [exe, "-c", f"127.0.0.1:{port}", "1024"]
    if os.geteuid() == 0:
        argv[1:1] = ["-u", "postfix"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)


async def throughput(port: int, checks: int, concurrency: int) -> None:
    check = SmtpCheck(common=CheckerCommon(connect_timeout=5.0), helo_name="bench.mailha")
    server = RealServer(ip=IPv4Address("127.0.0.1"), port=port)
    queue = iter(range(checks))
    failures: dict[str, int] = {}

    async def worker() -> None:
        for _ in queue:
            result = await check_smtp(check, server)
            if not result.ok:
                failures[result.reason] = failures.get(result.reason, 0) + 1

    for _ in range(200):  # warm up
        await check_smtp(check, server)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(
        f"  {checks} checks, concurrency {concurrency}: {checks / wall:8.0f} checks/s wall,"
        f" {checks / cpu:8.0f} checks per CPU-second, {cpu / checks * 1e6:6.0f} us CPU/check"
        + (f", failures {failures}" if failures else "")
    )


async def scheduler_cost(port: int, servers: int, seconds: float) -> None:
    check = SmtpCheck(
        common=CheckerCommon(connect_timeout=2.0, delay_loop=1.0, retry=1),
        helo_name="bench.mailha",
    )
    real_servers = tuple(
        RealServer(ip=IPv4Address("127.0.0.1"), port=port, weight=1 + n % 3, checkers=(check,))
        for n in range(servers)
    )
    vs = VirtualServer(ip=IPv4Address("127.0.0.1"), port=25, real_servers=real_servers)
    health = VirtualServerHealth(vs)
    pool_changes = 0

    def on_update(_svc: VirtualServerHealth, update: HealthUpdate) -> None:
        nonlocal pool_changes
        pool_changes += update.pool_changed

    scheduler = CheckScheduler([health], on_update)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(1.5)  # past the warmup spread (<= delay_loop)
    before = resource.getrusage(resource.RUSAGE_SELF)
    checks0, wall0 = scheduler.stats.checks, time.perf_counter()
    await asyncio.sleep(seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - wall0
    done = scheduler.stats.checks - checks0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        f"  {servers} real servers x SMTP_CHECK @ delay_loop 1s for {wall:.1f}s:"
        f" {done} checks ({done / wall:.0f}/s), CPU {100 * cpu / wall:.1f}% of one core,"
        f" failures {scheduler.stats.failures}, overruns {scheduler.stats.overruns},"
        f" pool changes {pool_changes}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--servers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-sink", action="store_true")
    parser.add_argument("--only-scheduler", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # overruns are counted, not printed
    with responder() as port:
        if args.only_scheduler:
            await scheduler_cost(port, args.servers, args.seconds)
            return
        print("SMTP_CHECK against a minimal asyncio responder (separate process):")
        await throughput(port, args.checks, args.concurrency)
        await throughput(port, args.checks, 1)
        print("Scheduler:")
        await scheduler_cost(port, args.servers, args.seconds)
    if not args.no_sink:
        with smtp_sink() as sink_port:
            if sink_port is None:
                print("smtp-sink not installed: skipped")
            else:
                print("SMTP_CHECK against smtp-sink:")
                await throughput(sink_port, args.checks, args.concurrency)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1` shows where a stuck run is
    asyncio.run(main())
