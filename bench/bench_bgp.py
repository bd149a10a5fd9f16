"""Scale-out (issue 12): SMTP sessions/s through one director against two, and how long
the router takes to withdraw a director, per cause.

Needs ip_vs, so it normally runs in the VM::

    PATH=$PWD/.venv/bin:$PATH tests/vm/vmrun --mem 2G --timeout 1500 -- python \\
        bench/bench_bgp.py [--sessions 2000] [--parallel 20] [--reps 3] [--withdrawals 5]

The lab is :class:`lab.bgp.BgpLab` (prefix ``mhB9``): a router (BIRD, eBGP with BFD
100 ms x 3, ``merge paths``, L4 multipath hash), two directors running ``mailha serve``
with ``announce = "bgp"`` (VIP:25 over three real servers, direct routing, ``mh``), three
smtp-sinks and a client behind the router.

1. Throughput: ``smtp-source`` in the client sends ``--sessions`` messages, one per SMTP
   session, ``--parallel`` at a time, to VIP:25, with both directors announced, then with
   d1 drained (``mailha drain director``: every session through d2), alternating, each
   ``--reps`` times after a warm-up. Sessions/s = messages / elapsed; each director's
   share is counted in its IPVS connection table (client ports new to it in the run: a
   port smtp-source reuses while the kernel still holds its entry is not counted twice).
2. Withdrawal: for each cause (d1 unready because its checks fail, drained, its link cut,
   its BIRD SIGKILLed, its mailha SIGKILLed), ``--withdrawals`` times: the time from the
   event (stamped just before it is caused) to the router's kernel FIB losing d1's next
   hop (netlink route events, :class:`lab.routewatch.RouteWatcher`), then d1 is restored
   and the time until it is a next hop again is noted too.

Prints the figures; asserts nothing about speed; exits 1 if the lab fails (smtp-source
short of its messages, a director never withdrawn or never back).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BenchError, require_ipvs, run_bounded

from lab.bgp import WITHDRAWAL_CAUSES, BgpLab, BgpLabOptions
from lab.routewatch import RouteWatcher
from lab.smtpload import smtp_source

PREFIX = "mhB9"
#: The issue's bounds per cause (s), printed beside the figures.
BOUNDS = {"unready": 1.5, "drained": 1.5, "link cut": 1.0, "BIRD killed": 1.0,
          "mailha killed": 2.0}


@dataclass(frozen=True)
class Throughput:
    mode: str
    rate: float
    split: tuple[int, int]


@dataclass(frozen=True)
class Withdrawal:
    cause: str
    took: float
    back: float


class Bench:
    def __init__(self, lab: BgpLab, fib: RouteWatcher) -> None:
        self.lab = lab
        self.fib = fib
        self.d1, self.d2 = (lab.address(d) for d in lab.directors)

    async def wait_hops(self, want: set[IPv4Address], *, after: float | None = None) -> float:
        """Wait until the router's next hops are ``want`` (NetnsError after 60 s); the
        time from ``after`` to the change that made them so."""
        change = await self.fib.wait_for(lambda hops: hops == want, after=after, time_limit=60)
        return change.at - after if after is not None else 0.0

    async def throughput(self, mode: str, sessions: int, parallel: int) -> Throughput:
        lab = self.lab
        before = {d: await lab.ipvs_clients(d) for d in lab.directors}
        result = await smtp_source(str(lab.vip), netns=lab.client_netns, messages=sessions,
                                   sessions=parallel, time_limit=600)
        if not result.ok:
            raise BenchError(f"smtp-source: {result.completed}/{sessions} ({mode}): "
                             f"{'; '.join(result.errors[:3])}")
        after = {d: await lab.ipvs_clients(d) for d in lab.directors}
        n1, n2 = (len(after[d] - before[d]) for d in lab.directors)
        return Throughput(mode, result.rate, (n1, n2))

    async def set_mode(self, mode: str) -> None:
        drained = (await self.lab.control("d1", "status")).get("bgp", {}).get("drained")
        if mode == "one director" and not drained:
            await self.lab.withdraw("d1", "drained")
            await self.wait_hops({self.d2})
        elif mode == "two directors" and drained:
            await self.lab.restore("d1", "drained")
            await self.wait_hops({self.d1, self.d2})

    async def withdrawal(self, cause: str) -> Withdrawal:
        await self.wait_hops({self.d1, self.d2})
        t0 = time.monotonic()
        await self.lab.withdraw("d1", cause)
        try:
            took = await self.wait_hops({self.d2}, after=t0)
        finally:
            back_t0 = time.monotonic()
            await self.lab.restore("d1", cause)
        back = await self.wait_hops({self.d1, self.d2}, after=back_t0)
        return Withdrawal(cause, took, back)


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def report_throughput(runs: list[Throughput]) -> None:
    print("\nsessions/s through the VIP (smtp-source, one message per session)")
    print(f"{'mode':<15}|  n |  median     min     max | d1 share")
    print("-" * 56)
    medians = {}
    for mode in ("two directors", "one director"):
        mine = [r for r in runs if r.mode == mode]
        lo, med, hi = _stats([r.rate for r in mine])
        medians[mode] = med
        d1 = sum(r.split[0] for r in mine)
        total = sum(sum(r.split) for r in mine)
        share = f"{100 * d1 / total:5.1f} %" if total else "   ?"
        print(f"{mode:<15}| {len(mine):2d} | {med:7.1f} {lo:7.1f} {hi:7.1f} | {share}")
    ratio = medians["two directors"] / medians["one director"]
    print(f"ratio two/one directors (medians): {ratio:.2f}")


def report_withdrawals(runs: list[Withdrawal]) -> None:
    print("\nwithdrawal of d1: event -> the router's FIB without its next hop (ms); "
          "back = restore -> next hop again (s)")
    print(f"{'cause':<14}|  n |    min  median     max | bound |  back median")
    print("-" * 68)
    for cause in WITHDRAWAL_CAUSES:
        mine = [r for r in runs if r.cause == cause]
        if not mine:
            continue
        lo, med, hi = (1000 * v for v in _stats([r.took for r in mine]))
        back = statistics.median(r.back for r in mine)
        print(f"{cause:<14}| {len(mine):2d} | {lo:6.0f} {med:7.0f} {hi:7.0f} | "
              f"{1000 * BOUNDS[cause]:5.0f} | {back:10.2f}")


async def run(args: argparse.Namespace) -> int:
    print(f"bench_bgp: {platform.node()} {platform.release()}, sessions {args.sessions} x "
          f"{args.parallel} parallel, {args.reps} rep(s); {args.withdrawals} withdrawal(s) "
          "per cause", flush=True)
    async with BgpLab(PREFIX, BgpLabOptions(announce="mailha")) as lab, \
            lab.watch_fib() as fib:
        await lab.compile_mailha()
        t0 = time.monotonic()
        await asyncio.gather(*(lab.start_mailha(d) for d in lab.directors))
        setters = {lab.ensure_sloppy_tcp(d) for d in lab.directors}
        bench = Bench(lab, fib)
        took = await bench.wait_hops({bench.d1, bench.d2}, after=t0)
        imported = max(lab.imported_at.values()) - t0
        print(f"start: two next hops {took:.2f} s after both mailha were started "
              f"({took - imported:.2f} s after their modules were imported); sloppy_tcp set "
              f"by {', '.join(sorted(setters))}", flush=True)

        await bench.throughput("warm-up", max(100, args.sessions // 10), args.parallel)
        runs: list[Throughput] = []
        for rep in range(args.reps):
            order = ("two directors", "one director")
            for mode in order if rep % 2 == 0 else order[::-1]:
                await bench.set_mode(mode)
                runs.append(await bench.throughput(mode, args.sessions, args.parallel))
                r = runs[-1]
                print(f"  {mode}: {r.rate:.1f} sessions/s (d1's share "
                      f"{100 * r.split[0] / max(1, sum(r.split)):.1f} %)", flush=True)
        await bench.set_mode("two directors")

        withdrawals: list[Withdrawal] = []
        for cause in WITHDRAWAL_CAUSES:
            for _ in range(args.withdrawals):
                withdrawals.append(await bench.withdrawal(cause))
                w = withdrawals[-1]
                print(f"  {cause}: withdrawn in {1000 * w.took:.0f} ms, back in "
                      f"{w.back:.2f} s", flush=True)
    report_throughput(runs)
    report_withdrawals(withdrawals)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=2000, help="messages per run")
    parser.add_argument("--parallel", type=int, default=20, help="smtp-source sessions")
    parser.add_argument("--reps", type=int, default=3, help="runs per mode")
    parser.add_argument("--withdrawals", type=int, default=5, help="per cause")
    parser.add_argument("--quick", action="store_true",
                        help="500 sessions, 1 rep, 2 withdrawals per cause")
    parser.add_argument("--time-limit", type=float, default=1500.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.reps, args.withdrawals = 500, 1, 2
    if min(args.sessions, args.parallel, args.reps, args.withdrawals) < 1:
        parser.error("--sessions, --parallel, --reps and --withdrawals must be >= 1")
    if not require_ipvs("bench_bgp", " (see bench/README.md)"):
        return 1
    return run_bounded("bench_bgp", lambda: run(args), args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
