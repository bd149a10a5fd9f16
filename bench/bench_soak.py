"""Soak one director: does mailha's memory, fds, tasks or CPU grow over a long run?

    PATH=$PWD/.venv/bin:$PATH tests/vm/vmrun --mem 2G --timeout 3000 -- python \\
        bench/bench_soak.py [--minutes 30] [--warmup 6] [--servers 100] \\
        [--delay-loop 0.2] [--tracemalloc] [--quick]

(on a host whose kernel has ip_vs: ``.venv/bin/python bench/bench_soak.py ...``)

Issue 14. Needs ip_vs (run it in the VM: see bench/README.md). One network namespace
(``<prefix>d``) holds the director: a ``mailha serve`` with one virtual server (NAT, wrr)
of ``--servers`` real servers, each an address on a dummy interface, all answered by ONE
``smtp-sink`` on 0.0.0.0:25; every real server has an SMTP_CHECK every ``--delay-loop``
seconds (connect_timeout 1, retry 1, delay_before_retry 0.2, no VRRP). Meanwhile:

* flap: every ``--flap-every`` s (5) the last real server's address is removed from
  the dummy interface, or put back (so it is down 5 s, up 5 s: checks to it time out
  while it is gone, and it leaves and rejoins the IPVS table);
* reload: every ``--reload-every`` s (30) the first real server's weight alternates
  1/2 in the config file and the daemon gets SIGHUP (a real edit, applied in IPVS);
* scrape: every ``--scrape-every`` s (1) ``GET /metrics`` from inside the namespace.

Every ``--sample-every`` s (10) the daemon's process is sampled: VmRSS from
``/proc/PID/status``, open fds (entries of ``/proc/PID/fd``), asyncio tasks (the
``mailha_asyncio_tasks`` gauge of the latest scrape) and CPU (utime+stime from
``/proc/PID/stat``). The report gives each at the end of the warm-up (``--warmup``
minutes, 6: RSS steps up in the first few minutes) and at the end, and a least-squares
slope per hour over the samples after the warm-up (for RSS also over the second half
alone); CPU as the % of a core of each sampling interval. It also prints what
happened: checks run, overruns, reloads applied and failed, flaps seen by the daemon,
scrapes, the kernel's table at the end (``ipvsadm -Ln``), the daemon's ERROR lines and
its most frequent log messages.

``--tracemalloc`` runs the daemon under tracemalloc (25 frames; slows it and inflates
its RSS) and prints the allocation sites that grew most between the end of the warm-up
and the end (snapshots dumped on SIGUSR2 by a small wrapper; the daemon is unchanged).

Asserts nothing; exits 1 when the lab fails (the daemon dies, the table never fills).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import re
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BenchError, run_bounded, wait_for

from lab import netns
from lab.cluster import metric_value
from lab.postfix import SmtpSink

TICKS = os.sysconf("SC_CLK_TCK")
METRICS_PORT = 9656
DEV = "mhk0"
VIP = "10.96.0.200"

WRAPPER = r"""
import signal, sys, tracemalloc
tracemalloc.start(25)
count = 0
def dump(signum, frame):
    global count
    count += 1
    tracemalloc.take_snapshot().dump(f"{sys.argv[1]}/snap-{count}.tracemalloc")
signal.signal(signal.SIGUSR2, dump)
from mailha.cli import main
sys.exit(main(["serve", sys.argv[2]]))
"""


def server_ips(n: int) -> list[str]:
    return [f"10.97.{i // 250}.{i % 250 + 1}" for i in range(n)]


def config(workdir: Path, servers: list[str], delay_loop: float, weight0: int) -> str:
    rs = "".join(
        f'\n[[virtual_server.real_server]]\nip = "{ip}"\nport = 25\n'
        f"weight = {weight0 if i == 0 else 1}\n"
        f'[[virtual_server.real_server.SMTP_CHECK]]\nhelo_name = "director.lab.test"\n'
        for i, ip in enumerate(servers))
    return f"""
[global]
router_id = "soak"

[metrics]
port = {METRICS_PORT}

[control]
socket = "{workdir / 'mailha.sock'}"

[[virtual_server]]
ip = "{VIP}"
port = 25
lvs_sched = "wrr"
lvs_method = "NAT"
delay_loop = {delay_loop}
connect_timeout = 1.0
retry = 1
delay_before_retry = 0.2
warmup = 0
{rs}
"""


@dataclass
class Sample:
    at: float  # seconds since the start of the soak (after the table filled)
    rss_kib: int
    fds: int
    tasks: float
    cpu_ticks: int


@dataclass
class Counters:
    scrapes_ok: int = 0
    scrapes_failed: int = 0
    scrape_seconds: list[float] = field(default_factory=list)
    last_scrape: str = ""
    flaps: int = 0
    flapper_down_seen: int = 0
    reloads_sent: int = 0
    samples: list[Sample] = field(default_factory=list)


def proc_sample(pid: int, at: float, tasks: float) -> Sample:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        raise BenchError(f"the daemon (pid {pid}) is gone") from None
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = stat.rsplit(")", 1)[1].split()
    return Sample(at, rss, fds, tasks, int(fields[11]) + int(fields[12]))


def slope_per_hour(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs (seconds), per hour."""
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


async def scrape(ns: str) -> str:
    sock = netns.socket_in(ns)
    try:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(10):
            await loop.sock_connect(sock, ("127.0.0.1", METRICS_PORT))
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
                raw = await reader.read()
            finally:
                writer.close()
    except BaseException:
        sock.close()
        raise
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        raise BenchError(f"scrape answered {head[:40]!r}")
    return body.decode()


async def ipvs_dests(ns: str) -> dict[str, int]:
    out = (await netns.run(["ipvsadm", "-Ln"], netns=ns, time_limit=60)).stdout
    dests = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "->" and parts[1][0].isdigit():
            dests[parts[1]] = int(parts[3])
    return dests


async def soak(args: argparse.Namespace) -> int:
    ns = f"{args.prefix}d"
    servers = server_ips(args.servers)
    flapper = servers[-1]
    total = args.minutes * 60
    warmup = min(args.warmup * 60, total / 2)
    print(
        f"bench_soak: {args.minutes:g} min ({args.warmup:g} min warm-up), {len(servers)}"
        f" real servers, SMTP_CHECK every {args.delay_loop:g} s, flap every"
        f" {args.flap_every:g} s, reload every {args.reload_every:g} s, scrape every"
        f" {args.scrape_every:g} s, sample every {args.sample_every:g} s;"
        f" {platform.node()} {platform.release()} ({len(os.sched_getaffinity(0))} CPUs),"
        f" {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    await netns.cleanup_stale(args.prefix)
    workdir = netns.work_root() / f"{args.prefix}-soak"
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("snap-*"):
        old.unlink()
    cfg, log = workdir / "mailha.toml", workdir / "mailha.log"
    log.unlink(missing_ok=True)
    await netns.add_netns(ns)
    sink = SmtpSink(workdir / "sink.log", netns=ns, listen="0.0.0.0:25", backlog=1024)
    proc: netns.Process | None = None
    try:
        await netns.ip("link", "set", "lo", "up", netns=ns)
        await netns.ip("link", "add", DEV, "type", "dummy", netns=ns)
        await netns.ip("link", "set", DEV, "up", netns=ns)
        await netns.ip_batch([f"addr add {ip}/16 dev {DEV}" for ip in servers], netns=ns)
        await sink.start(time_limit=60)
        weight0 = 1
        cfg.write_text(config(workdir, servers, args.delay_loop, weight0))
        if args.tracemalloc:
            argv = [sys.executable, "-c", WRAPPER, str(workdir), str(cfg)]
        else:
            argv = [sys.executable, "-m", "mailha", "serve", str(cfg)]
        proc = await netns.spawn(argv, netns=ns, log_path=log)
        daemon = proc

        async def table_full() -> bool:
            if not daemon.running:
                raise BenchError(f"mailha exited: {log.read_text()[-2000:]}")
            return len(await ipvs_dests(ns)) == len(servers)

        await wait_for("the IPVS table to fill", table_full, 300, every=1.0)
        pid = proc.pid
        print(f"  daemon pid {pid} ({comm_of(pid)}), table full; soaking", flush=True)

        c = Counters()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        end = t0 + total

        async def every(period: float, action: Callable[[], Awaitable[None]]) -> None:
            next_at = loop.time() + period
            while next_at < end:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                await action()
                next_at += period
                if next_at < loop.time():  # fell behind: skip, don't burst
                    next_at = loop.time() + period

        async def do_scrape() -> None:
            started = loop.time()
            try:
                text = await scrape(ns)
            except (OSError, TimeoutError, BenchError) as exc:
                c.scrapes_failed += 1
                if c.scrapes_failed <= 5:
                    print(f"  scrape failed: {exc!r}", flush=True)
                return
            c.scrapes_ok += 1
            c.scrape_seconds.append(loop.time() - started)
            up = metric_value(text, "mailha_real_server_up", {"real_server": f"{flapper}:25"})
            was = metric_value(c.last_scrape, "mailha_real_server_up",
                               {"real_server": f"{flapper}:25"}) if c.last_scrape else 1.0
            if was == 1.0 and up == 0.0:
                c.flapper_down_seen += 1
            c.last_scrape = text

        async def do_flap() -> None:
            op = "del" if c.flaps % 2 == 0 else "add"
            await netns.ip("addr", op, f"{flapper}/16", "dev", DEV, netns=ns, time_limit=60)
            c.flaps += 1

        async def do_reload() -> None:
            nonlocal weight0
            weight0 = 3 - weight0
            cfg.write_text(config(workdir, servers, args.delay_loop, weight0))
            daemon.send_signal(signal.SIGHUP)
            c.reloads_sent += 1

        async def do_sample() -> None:
            tasks = metric_value(c.last_scrape, "mailha_asyncio_tasks") if c.last_scrape \
                else float("nan")
            s = proc_sample(pid, loop.time() - t0, tasks)
            c.samples.append(s)
            if len(c.samples) % max(1, round(60 / args.sample_every)) == 1:
                print(f"  {s.at / 60:5.1f} min: RSS {s.rss_kib / 1024:.1f} MiB, {s.fds} fds,"
                      f" {s.tasks:.0f} tasks, CPU {s.cpu_ticks / TICKS:.0f} s", flush=True)
            if args.tracemalloc and not snapped and s.at >= warmup:
                daemon.send_signal(signal.SIGUSR2)
                snapped.append(s.at)

        snapped: list[float] = []
        await do_scrape()
        await do_sample()
        await asyncio.gather(
            every(args.scrape_every, do_scrape),
            every(args.flap_every, do_flap),
            every(args.reload_every, do_reload),
            every(args.sample_every, do_sample),
        )
        if not proc.running:
            raise BenchError(f"mailha exited: {log.read_text()[-2000:]}")
        await do_scrape()
        await do_sample()
        final_dests = await ipvs_dests(ns)
        if args.tracemalloc:
            daemon.send_signal(signal.SIGUSR2)
            await wait_for("the second tracemalloc snapshot",
                           lambda: _exists(workdir / "snap-2.tracemalloc"), 300, every=1.0)
            await asyncio.sleep(5)  # let the dump finish writing
        report(args, c, warmup, servers, final_dests, log)
        if args.tracemalloc:
            tracemalloc_diff(workdir)
        return 0
    finally:
        if proc is not None:
            with contextlib.suppress(Exception):
                await proc.stop(time_limit=30)
        await sink.stop()
        await netns.kill_netns_processes(ns)
        await netns.delete_netns(ns)


async def _exists(path: Path) -> bool:
    return exists(path)


def exists(path: Path) -> bool:
    return path.exists()


def comm_of(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def report(args: argparse.Namespace, c: Counters, warmup: float, servers: list[str],
           dests: dict[str, int], log: Path) -> None:
    text = c.last_scrape
    after = [s for s in c.samples if s.at >= warmup] or c.samples
    first, last = after[0], after[-1]
    xs = [s.at for s in after]
    cpu_pct = [  # % of one core over each sampling interval
        (b.at, 100 * (b.cpu_ticks - a.cpu_ticks) / TICKS / (b.at - a.at))
        for a, b in zip(c.samples, c.samples[1:], strict=False) if b.at > a.at and a.at >= warmup
    ]
    print()
    print(f"samples after the {warmup / 60:g} min warm-up: {len(after)},"
          f" from {first.at / 60:.1f} to {last.at / 60:.1f} min")
    head = (f"{'':<22} | {'start':>9} {'end':>9} {'change':>9} | {'slope/h':>9} |"
            f" {'min':>9} {'max':>9}")
    print(head)
    print("-" * len(head))
    rows = [
        ("RSS MiB", [s.rss_kib / 1024 for s in after]),
        ("open fds", [float(s.fds) for s in after]),
        ("asyncio tasks", [s.tasks for s in after]),
    ]
    for name, ys in rows:
        print(f"{name:<22} | {ys[0]:9.2f} {ys[-1]:9.2f} {ys[-1] - ys[0]:+9.2f} |"
              f" {slope_per_hour(xs, ys):+9.2f} | {min(ys):9.2f} {max(ys):9.2f}")
    if cpu_pct:
        n = max(1, len(cpu_pct) // 10)
        start = statistics.fmean(p for _, p in cpu_pct[:n])
        endv = statistics.fmean(p for _, p in cpu_pct[-n:])
        print(f"{'CPU % of a core':<22} | {start:9.2f} {endv:9.2f} {endv - start:+9.2f} |"
              f" {slope_per_hour([t for t, _ in cpu_pct], [p for _, p in cpu_pct]):+9.2f}")
        print(f"  (CPU start/end: mean of the first/last {n} of {len(cpu_pct)} intervals;"
              f" whole soak after warm-up:"
              f" {100 * (last.cpu_ticks - first.cpu_ticks) / TICKS / (last.at - first.at):.2f} %)")
    half = after[len(after) // 2:]
    print(f"  (RSS slope over the second half only, {half[0].at / 60:.1f}-{half[-1].at / 60:.1f}"
          f" min: {slope_per_hour([s.at for s in half], [s.rss_kib / 1024 for s in half]):+.2f}"
          " MiB/h: tells an early step from a steady trend)")
    wall = c.samples[-1].at - c.samples[0].at
    checks = metric_value(text, "mailha_check_results_total")
    print()
    print(f"checks run (whole soak, from the daemon)  {checks:.0f}"
          f" ({checks / wall:.0f}/s; asked {len(servers) / args.delay_loop:.0f}/s)")
    print(f"  failed                                 "
          f" {metric_value(text, 'mailha_check_results_total', {'outcome': 'fail'}):.0f}")
    print(f"  overruns                               "
          f" {metric_value(text, 'mailha_check_overruns_total'):.0f}")
    print(f"reloads sent / applied / failed          {c.reloads_sent} /"
          f" {metric_value(text, 'mailha_config_reloads_total', {'result': 'success'}):.0f} /"
          f" {metric_value(text, 'mailha_config_reloads_total', {'result': 'failure'}):.0f}")
    print(f"flapper address toggles / downs seen      {c.flaps} / {c.flapper_down_seen}"
          " (downs seen = up->down between two scrapes)")
    print(f"IPVS operations applied                   "
          f"{metric_value(text, 'mailha_reconcile_operations_total'):.0f}")
    sc = sorted(c.scrape_seconds)
    if sc:
        print(f"scrapes ok / failed                       {c.scrapes_ok} / {c.scrapes_failed}"
              f" ({c.scrapes_ok / wall:.2f}/s; median {1000 * sc[len(sc) // 2]:.0f} ms,"
              f" max {1000 * sc[-1]:.0f} ms)")
    flapper = f"{servers[-1]}:25"
    print(f"kernel table at the end: {len(dests)} destinations; flapper"
          f" {'in' if flapper in dests else 'out'}; first server weight"
          f" {dests.get(f'{servers[0]}:25')}")
    logtext = log.read_text()
    lines = logtext.splitlines()
    errors = [line for line in lines if " ERROR " in line]
    print(f"daemon log: {len(lines)} lines,"
          f" {logtext.count('Traceback')} tracebacks, {len(errors)} ERROR lines")
    for line in errors[:5]:
        print(f"  {line[:200]}")
    shapes = collections.Counter(
        re.sub(r"[0-9][0-9.:]*", "#", line.split(" ", 3)[-1])[:110] for line in lines)
    print("most frequent log messages (digits as #):")
    for shape, n in shapes.most_common(8):
        print(f"  {n:6d}  {shape}")


def tracemalloc_diff(workdir: Path) -> None:
    import tracemalloc

    noise = [tracemalloc.Filter(False, "<frozen importlib._bootstrap*"),
             tracemalloc.Filter(False, tracemalloc.__file__)]
    a = tracemalloc.Snapshot.load(str(workdir / "snap-1.tracemalloc")).filter_traces(noise)
    b = tracemalloc.Snapshot.load(str(workdir / "snap-2.tracemalloc")).filter_traces(noise)
    print()
    size_a = sum(s.size for s in a.statistics("filename")) / 1024
    size_b = sum(s.size for s in b.statistics("filename")) / 1024
    print(f"tracemalloc: traced memory {size_a:.0f} -> {size_b:.0f} KiB; largest growth by line:")
    for stat in b.compare_to(a, "lineno")[:15]:
        print(f"  {stat}")
    print("largest growth by traceback (top 3):")
    for stat in b.compare_to(a, "traceback")[:3]:
        print(f"  {stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks")
        for line in stat.traceback.format(limit=8, most_recent_first=True):
            print(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (30)")
    parser.add_argument("--warmup", type=float, default=6.0,
                        help="minutes excluded from the slopes (6; at most half the soak)")
    parser.add_argument("--servers", type=int, default=100, help="real servers (100)")
    parser.add_argument("--delay-loop", type=float, default=0.2, help="check period (0.2 s)")
    parser.add_argument("--flap-every", type=float, default=5.0, help="flapper toggle (5 s)")
    parser.add_argument("--reload-every", type=float, default=30.0, help="SIGHUP (30 s)")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="/metrics (1 s)")
    parser.add_argument("--sample-every", type=float, default=10.0, help="sample (10 s)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="run the daemon under tracemalloc and diff its allocations")
    parser.add_argument("--quick", action="store_true", help="2 minutes, 0.5 min warm-up")
    parser.add_argument("--prefix", default="mhB7", help="namespace/interface name prefix")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="give up after (soak + 15 min)")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.warmup = 2.0, 0.5
    if not 1 <= args.servers <= 5000 or args.minutes <= 0 or args.warmup < 0:
        parser.error("--servers 1..5000, --minutes > 0, --warmup >= 0")
    limit = args.time_limit or args.minutes * 60 + 900
    return run_bounded("bench_soak", lambda: soak(args), limit)


if __name__ == "__main__":
    sys.exit(main())
