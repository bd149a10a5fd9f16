"""Junk flood on a VRRP backup (issue 14): mailha against keepalived, same run.

    .venv/bin/python bench/bench_vrrp_flood.py [--rate 20000] [--seconds 30] [--workers 1] [--quick]

The seed pair (n1 priority 150 master, n2 100 backup, unicast, VRID 173, VRRPv2
advert_int 1) is run first with ``mailha serve`` on both nodes, then with keepalived
(``--vrrp``) on both, in the same topology.  Once n1 holds the VIP, the client namespace
floods n2 with protocol-112 junk (:mod:`lab.flood`: 90 % from non-peer sources,
random bytes and well-formed priority-0/255 adverts; 10 % spoofing n1 with mutations
RFC 5798 rejects) at ``--rate`` packets/s for ``--seconds``, while n1 keeps advertising.
For each implementation it reports:

* the rate the sender actually achieved (a Python sender on a loaded host may fall
  short: ``--workers`` splits it over several processes);
* false takeovers: VIP holders sampled every 0.25 s (n2 holding the VIP, or two
  holders), and state transitions logged by either node from the flood's start until
  5 s after its end (mailha: ``mailha_vrrp_transitions_total``; keepalived: its
  "Entering ... STATE" log lines);
* CPU used by n2's daemon processes over the flood (``/proc/PID/stat`` ticks and
  ``/proc/PID/schedstat``), as % of one core;
* packets the kernel dropped on n2's protocol-112 sockets, queue full (``drops``
  column of ``/proc/net/raw``, the same counter for both implementations), and for
  mailha its own counts (``mailha_vrrp_receive_dropped_total``, receive errors by
  reason).  Packets mailha's kernel filter discards are counted by neither: they are
  the sent non-peer packets.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import run_bounded
from bench_idle import (
    TICKS,
    cpu_sample,
    describe,
    keepalived_peers,
    keepalived_pids,
    wait_master,
)

from lab.cluster import ClusterOptions, MailhaCluster, metric_value
from lab.flood import FloodResult, flood_in
from lab.netns import group_members
from lab.topology import SeedTopology

_MAILHA_STATE = re.compile(r"\b(INIT|BACKUP|MASTER|FAULT) -> (BACKUP|MASTER|FAULT|STOPPED) \(")
_KA_STATE = re.compile(r"Entering (MASTER|BACKUP|FAULT) STATE")


@dataclass
class Pair:
    """A running implementation: n2's daemon pids and how to read its counters."""

    name: str
    backup_pids: Sequence[int]
    transitions: Callable[[], list[str]]
    counters: Callable[[], asyncio.Task[dict[str, float]]]


@dataclass
class Outcome:
    flood: FloodResult
    false_takeover_samples: int
    samples: int
    transitions: list[str]
    cpu_ticks: float
    cpu_sched: float | None
    kernel_drops: int
    counters: dict[str, float]


async def raw_drops(topo: SeedTopology, node: str) -> int:
    """Sum of the ``drops`` column of the node's protocol-112 raw sockets."""
    text = (await topo.exec(node, ["cat", "/proc/net/raw"])).stdout
    total = 0
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 13 and fields[1].endswith(":0070"):  # "port" = protocol 112
            total += int(fields[-1])
    return total


@contextlib.asynccontextmanager
async def mailha_pair(topo: SeedTopology) -> AsyncIterator[Pair]:
    async with MailhaCluster(topo, ClusterOptions()) as cluster:
        await wait_master(topo, "n1")

        def transitions() -> list[str]:
            return [f"{node}: {line.strip()}" for node in topo.servers
                    for line in cluster.log(node).splitlines() if _MAILHA_STATE.search(line)]

        async def counters() -> dict[str, float]:
            text = await cluster.metrics("n2")
            out = {"dropped (SO_RXQ_OVFL)": metric_value(
                text, "mailha_vrrp_receive_dropped_total")}
            for reason in ("not_peer", "checksum", "vrid", "ttl", "version", "truncated"):
                out[f"rejected: {reason}"] = metric_value(
                    text, "mailha_vrrp_receive_errors_total", {"reason": reason})
            out["adverts received"] = metric_value(text, "mailha_vrrp_adverts_received_total")
            return out

        yield Pair("mailha", sorted(group_members(cluster.processes["n2"].pid)),
                   transitions, lambda: asyncio.ensure_future(counters()))


@contextlib.asynccontextmanager
async def keepalived_pair(topo: SeedTopology) -> AsyncIterator[Pair]:
    async with keepalived_peers(topo) as peers:

        def transitions() -> list[str]:
            return [f"{node}: {line.strip()}" for node, ka in peers.items()
                    for line in ka.log_text().splitlines() if _KA_STATE.search(line)]

        async def counters() -> dict[str, float]:
            return {}

        yield Pair("keepalived", keepalived_pids(peers["n2"]),
                   transitions, lambda: asyncio.ensure_future(counters()))


async def run_flood(topo: SeedTopology, pair: Pair, args: argparse.Namespace) -> Outcome:
    await asyncio.sleep(args.settle)
    transitions0 = len(pair.transitions())
    counters0 = await pair.counters()
    drops0 = await raw_drops(topo, "n2")
    cpu0 = cpu_sample(pair.backup_pids)
    flood = asyncio.create_task(flood_in(
        topo.netns("cl"), master=topo.address("n1"), target=topo.address("n2"),
        attacker=topo.address("cl"), network=topo.spec.network, vip=topo.vip,
        rate=args.rate, seconds=args.seconds, workers=args.workers,
    ))
    samples = bad = 0
    while not flood.done():
        holders = await topo.vip_masters()
        samples += 1
        if holders != ["n1"]:
            bad += 1
        await asyncio.sleep(0.25)
    result = await flood
    cpu1 = cpu_sample(pair.backup_pids)
    drops1 = await raw_drops(topo, "n2")
    end = time.monotonic() + 5.0  # a takeover would need 3 x advert_int + skew of silence
    while time.monotonic() < end:
        samples += 1
        if await topo.vip_masters() != ["n1"]:
            bad += 1
        await asyncio.sleep(0.25)
    counters1 = await pair.counters()
    wall = cpu1.at - cpu0.at
    sched = None
    if cpu0.sched_ns is not None and cpu1.sched_ns is not None:
        sched = 100 * (cpu1.sched_ns - cpu0.sched_ns) / 1e9 / wall
    return Outcome(
        flood=result,
        false_takeover_samples=bad,
        samples=samples,
        transitions=pair.transitions()[transitions0:],
        cpu_ticks=100 * (cpu1.ticks - cpu0.ticks) / TICKS / wall,
        cpu_sched=sched,
        kernel_drops=drops1 - drops0,
        counters={k: counters1[k] - counters0.get(k, 0) for k in counters1},
    )


async def main_async(args: argparse.Namespace) -> int:
    if args.quick:
        args.seconds = 5.0
    print(
        f"bench_vrrp_flood: {args.rate:g} packets/s asked for {args.seconds:g} s"
        f" ({args.workers} sender process(es)), VRRPv2 advert_int 1, unicast,"
        f" host {platform.node()} ({len(os.sched_getaffinity(0))} CPUs,"
        f" load {os.getloadavg()[0]:.1f}), {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    outcomes: dict[str, Outcome] = {}
    async with SeedTopology(args.prefix) as topo:
        factories = (("mailha", mailha_pair), ("keepalived", keepalived_pair))
        for name, factory in factories:
            async with factory(topo) as pair:
                print(f"  {name} n2: {describe(pair.backup_pids)}", flush=True)
                outcomes[name] = out = await run_flood(topo, pair, args)
                print(f"  {name}: sent {out.flood.total} in {out.flood.seconds:.1f} s"
                      f" = {out.flood.rate:.0f}/s ({out.flood.errors} send errors)", flush=True)
    print()
    head = (f"{'':<11}| {'sent/s':>7} | {'takeover samples':>16} {'transitions':>11} |"
            f" {'CPU % ticks':>11} {'CPU % sched':>11} | {'kernel drops':>12}")
    print(head)
    print("-" * len(head))
    for name, o in outcomes.items():
        sched = "n/a" if o.cpu_sched is None else f"{o.cpu_sched:.1f}"
        print(f"{name:<11}| {o.flood.rate:7.0f} | {o.false_takeover_samples:>6} of {o.samples:<6}"
              f" {len(o.transitions):>11} | {o.cpu_ticks:11.1f} {sched:>11} | {o.kernel_drops:>12}")
    for name, o in outcomes.items():
        for line in o.transitions:
            print(f"{name} state change during the flood: {line}")
    m = outcomes["mailha"]
    print()
    print("mailha n2 counters over the flood:")
    for key, value in m.counters.items():
        print(f"  {key:<24} {value:>10.0f}")
    spoofed = sum(n for label, n in m.flood.sent.items() if label.startswith("spoof"))
    print(f"  (sent: {m.flood.total - spoofed} from non-peers, {spoofed} spoofing n1)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20_000, help="packets/s (20000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="flood length (30)")
    parser.add_argument("--workers", type=int, default=1, help="sender processes (1)")
    parser.add_argument("--settle", type=float, default=3.0, help="wait before flooding (3)")
    parser.add_argument("--quick", action="store_true", help="5 s flood")
    parser.add_argument("--prefix", default="mhB5", help="namespace/interface name prefix")
    parser.add_argument("--time-limit", type=float, default=600.0, help="give up after (600 s)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or not 0 < args.seconds <= 120 or args.workers < 1:
        parser.error("--rate positive, --seconds 0..120, --workers at least 1")
    return run_bounded("bench_vrrp_flood", lambda: main_async(args), args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
