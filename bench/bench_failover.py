"""Benchmark failover as a mail client sees it: mailha against keepalived, same run.

    .venv/bin/python bench/bench_failover.py [--reps 3] [--quick] [--settings v2:1,v3:0.1,v3:0.03]
                                             [--prefix mhB1] [--seed 1]

The seed topology (n1 .35, n2 .36, client .10, VIP .37) with ``smtp-sink`` on both nodes
as the SMTP listener. Both implementations get the same VRRP setup: VRID 173, unicast,
priorities 150 (n1) / 100 (n2), both start as BACKUP, preemption on, no second
gratuitous-ARP burst (``garp_master_delay 0``). For every advert interval, and for each
implementation in turn, the pair is started once and then:

* link loss: the master's own interface goes down (``topo.link_down("n1")``), the backup
  must notice the silence (3 x advert_int + skew) and take the VIP;
* clean stop: SIGTERM on the master, which sends a priority-0 advert, so the backup
  takes over after its skew time alone.

The client polls VIP:25 every 10 ms (connect + read the 220 banner, probes overlap) and
the outage is the longest gap between two successful banners around the event, which
is what a retrying SMTP client experiences. Each event happens at a random phase of the
advert timer (the same seeded phases for both implementations). After each event the
master is restored (link up / restart) and must preempt again before the next repetition.

Prints a table (median/min/max per implementation and the ratio of the medians). Asserts
nothing about timing; exits 1 with a message if the lab cannot be driven.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BenchError, run_bounded

from lab.cluster import ClusterOptions, MailhaCluster
from lab.keepalived import Keepalived, KeepalivedConfig, VrrpInstance
from lab.postfix import SmtpSink
from lab.smtpload import OutageProbe
from lab.topology import SeedTopology

PRIORITIES = {"n1": 150, "n2": 100}
EVENTS = ("link down", "clean stop")
Results = dict[str, list[float]]  # event -> outages (s)


@dataclass(frozen=True)
class Setting:
    """One VRRP timing to compare: version and advert interval (seconds)."""

    version: Literal[2, 3]
    advert_int: float

    @property
    def label(self) -> str:
        return f"v{self.version} advert_int {self.advert_int:g}"


Row = tuple[Setting, str, Results, Results]  # setting, event, mailha, keepalived


def parse_settings(text: str) -> tuple[Setting, ...]:
    """``"v2:1,v3:0.1"`` -> settings; raise ValueError on anything else."""
    out = []
    for item in text.split(","):
        version, _, interval = item.strip().partition(":")
        if version not in ("v2", "v3") or not interval:
            raise ValueError(f"bad setting {item!r} (want v2:SECONDS or v3:SECONDS)")
        out.append(Setting(2 if version == "v2" else 3, float(interval)))
    return tuple(out)


# ------------------------------------------------------------------------ the pairs


class Pair(Protocol):
    """A running VRRP pair on n1/n2 the benchmark can break and restore."""

    name: str

    async def stop_node(self, node: str) -> None: ...

    async def start_node(self, node: str) -> None: ...


class MailhaPair:
    name = "mailha"

    def __init__(self, cluster: MailhaCluster) -> None:
        self.cluster = cluster

    async def stop_node(self, node: str) -> None:
        await self.cluster.stop(node)  # SIGTERM: priority-0 advert, VIP released

    async def start_node(self, node: str) -> None:
        await self.cluster.start(node)


class KeepalivedPair:
    name = "keepalived"

    def __init__(self, peers: Mapping[str, Keepalived]) -> None:
        self.peers = peers

    async def stop_node(self, node: str) -> None:
        await self.peers[node].stop()

    async def start_node(self, node: str) -> None:
        await self.peers[node].start()


class NoSecondGarpKeepalived(Keepalived):
    """keepalived with ``vrrp_garp_master_delay 0``, as mailha's ``garp_master_delay 0``.

    The lab's renderer has no knob for it; the first gratuitous ARP burst (the one that
    matters for the outage) is sent at once either way, this only drops the second.
    """

    def write_config(self) -> Path:
        path = super().write_config()
        text = path.read_text().replace(
            "global_defs {\n", "global_defs {\n    vrrp_garp_master_delay 0\n", 1
        )
        path.write_text(text)
        return path


def keepalived_config(topo: SeedTopology, node: str, setting: Setting) -> KeepalivedConfig:
    peers = tuple(str(topo.address(n)) for n in topo.servers if n != node)
    instance = VrrpInstance(
        name="VI_postfix",
        interface=topo.iface(node),
        state="BACKUP",
        virtual_router_id=173,
        priority=PRIORITIES[node],
        advert_int=setting.advert_int,
        version=setting.version,
        unicast_src_ip=str(topo.address(node)),
        unicast_peers=peers,
        virtual_ipaddresses=(str(topo.vip_interface),),
    )
    return KeepalivedConfig(router_id=f"{topo.prefix}{node}", instances=(instance,))


@contextlib.asynccontextmanager
async def mailha_pair(topo: SeedTopology, setting: Setting) -> AsyncIterator[Pair]:
    opts = ClusterOptions(
        version=setting.version,
        advert_int=setting.advert_int,
        priorities=PRIORITIES,
        garp_master_delay=0.0,
    )
    async with MailhaCluster(topo, opts) as cluster:
        yield MailhaPair(cluster)
        if "Traceback" in cluster.log("n1") + cluster.log("n2"):
            raise BenchError(f"mailha logged a traceback: see {cluster.log_path('n1').parent}")


@contextlib.asynccontextmanager
async def keepalived_pair(topo: SeedTopology, setting: Setting) -> AsyncIterator[Pair]:
    peers = {
        node: NoSecondGarpKeepalived(
            topo.node_dir(node) / f"keepalived-{setting.version}-{setting.advert_int:g}",
            keepalived_config(topo, node, setting),
            netns=topo.netns(node),
        )
        for node in topo.servers
    }
    await peers["n1"].check_config()
    async with contextlib.AsyncExitStack() as stack:
        for ka in peers.values():
            await stack.enter_async_context(ka)
        yield KeepalivedPair(peers)


PairFactory = Callable[[SeedTopology, Setting], contextlib.AbstractAsyncContextManager[Pair]]


# -------------------------------------------------------------------- observation


async def holds_vip(topo: SeedTopology, node: str) -> bool:
    """True if ``node``'s own interface (not ``lo``) carries the VIP."""
    return any(
        a.address == topo.vip and a.ifname == topo.iface(node) for a in await topo.addresses(node)
    )


async def wait_sole_master(topo: SeedTopology, node: str, time_limit: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    other = next(n for n in topo.servers if n != node)
    while not (await holds_vip(topo, node) and not await holds_vip(topo, other)):
        if loop.time() > deadline:
            raise BenchError(f"{node} did not become the only master within {time_limit:g}s")
        await asyncio.sleep(0.05)


async def measure_outage(
    topo: SeedTopology,
    trigger: Callable[[], Awaitable[None]],
    new_master: str,
    *,
    phase: float,
    time_limit: float,
) -> float:
    """Longest gap between successful banners on VIP:25 across ``trigger``.

    ``phase`` (0..advert_int) shifts the event against the master's advert timer: the
    link-loss outage depends on how long ago the last advert went out.

    Gaps, not failed-probe counts: a probe that hits a blackholed address fails only at
    its timeout, after later probes have already succeeded, so the failure would land
    outside the gap it belongs to. The gap between successes is exact to one interval.
    """
    loop = asyncio.get_running_loop()
    probe = OutageProbe(str(topo.vip), netns=topo.netns("cl"), interval=0.01, probe_timeout=1.0)
    async with probe:
        await probe.wait_success(time_limit=10.0)
        await asyncio.sleep(0.3 + phase)
        await trigger()
        deadline = loop.time() + time_limit
        while not await holds_vip(topo, new_master):
            if loop.time() > deadline:
                raise BenchError(f"{new_master} did not take the VIP within {time_limit:g}s")
            await asyncio.sleep(0.01)
        took_over = loop.time()
        while (probe.report().last_success or 0.0) <= took_over:
            if loop.time() > deadline:
                raise BenchError(f"VIP:25 did not answer again within {time_limit:g}s")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
    return probe.report().longest_gap


async def run_setting(
    topo: SeedTopology, setting: Setting, factory: PairFactory, reps: int, rng: random.Random
) -> Results:
    """Outages for ``reps`` link losses and ``reps`` clean stops of n1 with one pair."""
    settle = max(1.0, 3 * setting.advert_int)
    limit = 10.0 + 4 * setting.advert_int
    results: Results = {event: [] for event in EVENTS}
    async with factory(topo, setting) as pair:
        await wait_sole_master(topo, "n1", time_limit=30.0)
        for _ in range(reps):
            await asyncio.sleep(settle)
            outage = await measure_outage(
                topo, lambda: topo.link_down("n1"), "n2",
                phase=rng.uniform(0, setting.advert_int), time_limit=limit,
            )
            results["link down"].append(outage)
            await topo.link_up("n1")
            await wait_sole_master(topo, "n1", time_limit=limit)
        for _ in range(reps):
            await asyncio.sleep(settle)
            outage = await measure_outage(
                topo, lambda: pair.stop_node("n1"), "n2",
                phase=rng.uniform(0, setting.advert_int), time_limit=limit,
            )
            results["clean stop"].append(outage)
            await pair.start_node("n1")
            await wait_sole_master(topo, "n1", time_limit=limit + 10.0)
    return results


# -------------------------------------------------------------------------- report


def summary(values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):7.0f} {min(ms):6.0f} {max(ms):6.0f}"


def print_table(rows: Sequence[Row]) -> None:
    head = (
        f"{'setting':<18} {'event':<11} | {'mailha ms: median':>17} {'min':>6} {'max':>6} |"
        f" {'keepalived: median':>18} {'min':>6} {'max':>6} | {'mailha/ka':>9}"
    )
    print(head)
    print("-" * len(head))
    for setting, event, mailha, ka in rows:
        ratio = statistics.median(mailha[event]) / statistics.median(ka[event])
        print(
            f"{setting.label:<18} {event:<11} | {summary(mailha[event]):>31} |"
            f" {summary(ka[event]):>32} | {ratio:9.2f}"
        )


async def main_async(args: argparse.Namespace) -> int:
    settings = parse_settings(args.settings)
    reps = 1 if args.quick else args.reps
    print(
        f"bench_failover: {reps} rep(s) per event, settings {[s.label for s in settings]},"
        f" host {platform.node()} ({platform.machine()}, {_cpus()} CPUs),"
        f" {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    rows: list[Row] = []
    async with SeedTopology(args.prefix) as topo:
        sinks = [
            SmtpSink(topo.node_dir(n) / "sink.log", netns=topo.netns(n), hostname=f"{n}.lab.test")
            for n in topo.servers
        ]
        async with contextlib.AsyncExitStack() as stack:
            for sink in sinks:
                await stack.enter_async_context(sink)
            for setting in settings:
                per_impl: dict[str, Results] = {}
                for name, factory in (("mailha", mailha_pair), ("keepalived", keepalived_pair)):
                    started = time.monotonic()
                    rng = random.Random(args.seed)  # both get the same phases
                    per_impl[name] = await run_setting(topo, setting, factory, reps, rng)
                    shown = {
                        e: [f"{v * 1000:.0f}" for v in vs] for e, vs in per_impl[name].items()
                    }
                    print(
                        f"  {setting.label} {name}: {shown} ms"
                        f" ({time.monotonic() - started:.0f} s)",
                        flush=True,
                    )
                for event in EVENTS:
                    rows.append((setting, event, per_impl["mailha"], per_impl["keepalived"]))
    print()
    print("SMTP outage seen by the client (ms; longest gap between 220 banners, 10 ms probes)")
    print_table(rows)
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per event (3)")
    parser.add_argument("--quick", action="store_true", help="one repetition of each")
    parser.add_argument(
        "--settings", default="v2:1,v3:0.1,v3:0.03", help="comma-separated vN:advert_int"
    )
    parser.add_argument("--prefix", default="mhB1", help="namespace/interface name prefix")
    parser.add_argument("--seed", type=int, default=1, help="seed of the event phases (1)")
    parser.add_argument(
        "--time-limit", type=float, default=1800.0, help="give up after this many seconds"
    )
    args = parser.parse_args(argv)
    try:
        parse_settings(args.settings)
    except ValueError as exc:
        parser.error(str(exc))
    if args.reps < 1:
        parser.error("--reps must be at least 1")

    return run_bounded("bench_failover", lambda: main_async(args), args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
