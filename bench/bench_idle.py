"""Benchmark the idle cost of one VRRP node: mailha against keepalived, same run.

    .venv/bin/python bench/bench_idle.py [--seconds 30] [--quick] [--prefix mhB2]

The seed pair (n1 priority 150, n2 100, unicast, VRID 173, VRRPv2 advert_int 1, no
track script, no virtual servers) is run first with ``mailha serve`` on both nodes,
then with keepalived (``--vrrp``) on both nodes, in the same topology. Once n1 holds
the VIP and a few adverts went by, each node's processes are measured over a window of
``--seconds``:

* CPU: utime + stime from ``/proc/PID/stat`` (clock ticks) at both ends of the window,
  as a percentage of one core; also from ``/proc/PID/schedstat`` (nanoseconds of CPU,
  finer than the 10 ms tick) where the kernel provides it;
* memory: VmRSS from ``/proc/PID/status``, sampled every second, the largest sum seen;
  and PSS from ``/proc/PID/smaps_rollup`` at the end, which does not count twice the
  pages keepalived's two processes share.

keepalived's figure is the sum of its parent (the checker/watchdog) and its VRRP child
(found from its pid files); mailha's is the sum of its process group (one process
when, as here, no track script runs). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BenchError, run_bounded

from lab.cluster import ClusterOptions, MailhaCluster
from lab.keepalived import Keepalived, seed_config
from lab.netns import group_members
from lab.topology import SeedTopology

TICKS = os.sysconf("SC_CLK_TCK")
NodePids = dict[str, Sequence[int]]
PairFactory = Callable[[SeedTopology], contextlib.AbstractAsyncContextManager[NodePids]]


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU of a set of processes at one instant."""

    at: float
    ticks: int
    sched_ns: int | None


@dataclass(frozen=True)
class Usage:
    """What one node's processes used over the window."""

    pids: tuple[int, ...]
    cpu_percent_ticks: float
    cpu_percent_sched: float | None
    rss_kib: int
    pss_kib: int | None


def cpu_sample(pids: Sequence[int]) -> CpuSample:
    """utime+stime (ticks) and schedstat run time (ns) summed over ``pids``."""
    ticks = 0
    sched: int | None = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            raise BenchError(f"process {pid} vanished during the window") from None
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        try:
            run_ns = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            sched = None
        else:
            sched = None if sched is None else sched + run_ns
    return CpuSample(time.monotonic(), ticks, sched)


def rss_kib(pids: Sequence[int]) -> int:
    """VmRSS summed over ``pids`` (pages shared between them are counted twice)."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def pss_kib(pids: Sequence[int]) -> int | None:
    """Proportional set size summed over ``pids``: shared pages split between sharers,
    so keepalived's parent and child (which share most pages) are not counted twice."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


async def measure(nodes: dict[str, Sequence[int]], seconds: float) -> dict[str, Usage]:
    """CPU and peak RSS of each node's ``pids`` over the same ``seconds`` window."""
    first = {node: cpu_sample(pids) for node, pids in nodes.items()}
    peak = {node: rss_kib(pids) for node, pids in nodes.items()}
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(1.0, left))
        for node, pids in nodes.items():
            peak[node] = max(peak[node], rss_kib(pids))
    usage = {}
    for node, pids in nodes.items():
        last = cpu_sample(pids)
        wall = last.at - first[node].at
        sched = None
        before = first[node].sched_ns
        if last.sched_ns is not None and before is not None:
            sched = 100 * (last.sched_ns - before) / 1e9 / wall
        usage[node] = Usage(
            tuple(pids),
            100 * (last.ticks - first[node].ticks) / TICKS / wall,
            sched,
            peak[node],
            pss_kib(pids),
        )
    return usage


async def wait_master(topo: SeedTopology, node: str, time_limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while await topo.holders(topo.vip) != [node]:
        if loop.time() > deadline:
            raise BenchError(f"{node} did not become the only VIP holder in {time_limit:g}s")
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------- the two pairs


@contextlib.asynccontextmanager
async def mailha_pair(topo: SeedTopology) -> AsyncIterator[NodePids]:
    async with MailhaCluster(topo, ClusterOptions()) as cluster:
        await wait_master(topo, "n1")
        yield {node: sorted(group_members(p.pid)) for node, p in cluster.processes.items()}


@contextlib.asynccontextmanager
async def keepalived_peers(topo: SeedTopology) -> AsyncIterator[dict[str, Keepalived]]:
    """keepalived's seed pair (n1 150, n2 100), running, with n1 the only VIP holder."""
    peers = {}
    for node in topo.servers:
        config = seed_config(topo, node, priority={"n1": 150, "n2": 100}[node])
        peers[node] = Keepalived(topo.node_dir(node) / "keepalived", config, netns=topo.netns(node))
    async with contextlib.AsyncExitStack() as stack:
        for ka in peers.values():
            await stack.enter_async_context(ka)
        await wait_master(topo, "n1")
        yield peers


@contextlib.asynccontextmanager
async def keepalived_pair(topo: SeedTopology) -> AsyncIterator[NodePids]:
    async with keepalived_peers(topo) as peers:
        yield {node: keepalived_pids(ka) for node, ka in peers.items()}


def keepalived_pids(ka: Keepalived) -> list[int]:
    """keepalived's parent and VRRP child, from the pid files it writes."""
    pids = []
    for path in (ka.pid_path, ka.vrrp_pid_path):
        try:
            pids.append(int(path.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            raise BenchError(f"{ka!r}: no pid in {path}") from None
    return pids


def describe(pids: Sequence[int]) -> str:
    names = []
    for pid in pids:
        try:
            names.append(f"{Path(f'/proc/{pid}/comm').read_text().strip()}[{pid}]")
        except FileNotFoundError:
            names.append(f"?[{pid}]")
    return " + ".join(names)


async def main_async(args: argparse.Namespace) -> int:
    seconds = 5.0 if args.quick else args.seconds
    print(
        f"bench_idle: {seconds:g} s windows, VRRPv2 advert_int 1, host {platform.node()}"
        f" ({len(os.sched_getaffinity(0))} CPUs, {TICKS} ticks/s),"
        f" {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    results: dict[str, dict[str, Usage]] = {}
    async with SeedTopology(args.prefix) as topo:
        pairs: tuple[tuple[str, PairFactory], ...] = (
            ("mailha", mailha_pair), ("keepalived", keepalived_pair),
        )
        for name, factory in pairs:
            async with factory(topo) as nodes:
                await asyncio.sleep(args.settle)
                results[name] = await measure(nodes, seconds)
                for node, measured in results[name].items():
                    print(f"  {name} {node}: {describe(measured.pids)}", flush=True)
    print()
    head = (
        f"{'':<11} {'role':<7} | {'CPU % (ticks)':>13} {'CPU % (schedstat)':>17} |"
        f" {'RSS MiB':>8} {'PSS MiB':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, per_node in results.items():
        for node, role in (("n1", "master"), ("n2", "backup")):
            u = per_node[node]
            sched = "n/a" if u.cpu_percent_sched is None else f"{u.cpu_percent_sched:.3f}"
            pss = "n/a" if u.pss_kib is None else f"{u.pss_kib / 1024:.1f}"
            print(
                f"{name:<11} {role:<7} | {u.cpu_percent_ticks:13.3f} {sched:>17} |"
                f" {u.rss_kib / 1024:8.1f} {pss:>8}"
            )
    m, k = results["mailha"]["n1"], results["keepalived"]["n1"]
    print()
    print(f"master RSS ratio mailha/keepalived: {m.rss_kib / k.rss_kib:.2f}")
    if m.pss_kib and k.pss_kib:
        print(f"master PSS ratio mailha/keepalived: {m.pss_kib / k.pss_kib:.2f}")
    if m.cpu_percent_sched is not None and k.cpu_percent_sched:
        print(
            f"master CPU ratio mailha/keepalived (schedstat): "
            f"{m.cpu_percent_sched / k.cpu_percent_sched:.2f}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="window length (30)")
    parser.add_argument("--settle", type=float, default=3.0, help="wait before measuring (3)")
    parser.add_argument("--quick", action="store_true", help="5 s windows")
    parser.add_argument("--prefix", default="mhB2", help="namespace/interface name prefix")
    parser.add_argument("--time-limit", type=float, default=600.0, help="give up after (600 s)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.settle < 0:
        parser.error("--seconds must be positive and --settle not negative")

    return run_bounded("bench_idle", lambda: main_async(args), args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
