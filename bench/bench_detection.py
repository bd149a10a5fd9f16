"""Benchmark how fast a stopped Postfix stops getting mail: mailha IPVS vs keepalived.

Needs ip_vs, so it normally runs in the VM::

    PATH=$PWD/.venv/bin:$PATH tests/vm/vmrun --mem 2G --timeout 1200 -- python \\
        bench/bench_detection.py [--reps 3] [--quick] [--delay-before-retry 1,0.2] \\
        [--ka-script-timeout 5] [--no-keepalived | --no-mailha]

(``--no-mailha`` needs no ip_vs: the keepalived half also runs on the host.)

The seed topology with a real Postfix on both nodes.

mailha (``ipvs=True``, all-in-one DR; SMTP_CHECK with delay_loop 1, connect_timeout 1,
retry 1, and each ``--delay-before-retry`` in turn, to show that knob): n1 is master.

* peer: ``postfix stop`` on n2; time until 10.12.49.36:25 leaves n1's IPVS table
  (``ipvsadm -Ln`` inside n1's namespace, polled every 20 ms);
* own: ``postfix stop`` on n1, the master itself. The VIP does not move: n1 removes its
  own real server and n2 keeps taking mail through direct routing. Timed: n1's real
  server leaving the table, and, from the client (a probe every 10 ms on VIP:25), the
  time until VIP:25 answers every connection again (the end of the last failed probe's
  gap; until then round robin sends some connections to the stopped Postfix).

keepalived, the seed setup (both priority 100, track script every 1 s on Postfix with
weight +100, no IPVS): ``postfix stop`` on the master; timed: the VIP reaching the other
node, and VIP:25 answering every connection again. Under the VM's emulation one run of
the check script takes 0.3-2.4 s, so with keepalived's default script timeout the script
times out on healthy nodes, both priorities flap and takeovers take 10-30 s or never
settle; ``--ka-script-timeout 5`` keeps the seed's behaviour without that artefact.

Postfix is restarted (and must be back in the pool / the election settled) after each
event. Prints median/min/max per figure; asserts nothing about timing; exits 1 if the
lab cannot be driven.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BenchError, require_ipvs, run_bounded, wait_for

from lab import netns
from lab.cluster import ClusterOptions, MailhaCluster
from lab.keepalived import Keepalived, KeepalivedConfig, seed_config
from lab.postfix import Postfix
from lab.seedlab import SeedLab
from lab.smtpload import OutageProbe, OutageReport
from lab.topology import SeedTopology

Postfixes = Mapping[str, Postfix]
Figures = dict[str, list[float]]
POLL_GAP = 0.02


# ------------------------------------------------------------------ observation


def read_ip_vs(ns: str) -> str:
    """``/proc/net/ip_vs`` as seen from namespace ``ns`` (the kernel's table, in hex).

    Read in-process from this thread, moved into ``ns`` for the read: a few microseconds,
    where ``ip netns exec NS ipvsadm -Ln`` costs ~0.2-0.6 s per poll in the VM.
    """
    with netns.entered(ns):
        return Path("/proc/thread-self/net/ip_vs").read_text()


def parse_ip_vs(text: str) -> set[str]:
    """``ip:port`` of the weighted destinations in ``/proc/net/ip_vs`` text.

    ``  -> 0A0C3123:0019      Local   1      0          0`` is 10.12.49.35:25, weight 1.
    """
    live = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] != "->" or not fields[3].isdigit():
            continue
        addr, _, port = fields[1].partition(":")
        with contextlib.suppress(ValueError):
            if int(fields[3]) > 0:
                live.add(f"{IPv4Address(int(addr, 16))}:{int(port, 16)}")
    return live


def parse_ipvsadm(text: str) -> set[str]:
    """``ip:port`` of the weighted destinations in ``ipvsadm -Ln`` output."""
    live = set()
    for line in text.splitlines():
        fields = line.split()  # "  -> 10.12.49.35:25   Local   1   0   0"
        weighted = len(fields) >= 4 and fields[3].isdigit() and int(fields[3]) > 0
        if fields and fields[0] == "->" and weighted:
            live.add(fields[1])
    return live


class IpvsPoller:
    """Watches one node's IPVS table: polls ``/proc/net/ip_vs`` every 20 ms, and confirms
    each change it reports with ``ipvsadm -Ln`` (the independent, netlink view)."""

    def __init__(self, topo: SeedTopology, node: str) -> None:
        self.topo = topo
        self.node = node
        self.periods: list[float] = []  # time between consecutive polls

    async def ipvsadm(self) -> set[str]:
        result = await self.topo.exec(self.node, ["ipvsadm", "-Ln"], time_limit=60.0)
        return parse_ipvsadm(result.stdout)

    async def until(self, present: bool, dest: str, since: float, time_limit: float) -> float:
        """Seconds from ``since`` until a poll finds ``dest`` live (``present``) or not."""
        loop = asyncio.get_running_loop()
        ns = self.topo.netns(self.node)
        last = loop.time()
        while (dest in parse_ip_vs(read_ip_vs(ns))) != present:
            if loop.time() - since > time_limit:
                state = "back in" if present else "out of"
                raise BenchError(f"{dest} not {state} {self.node}'s IPVS table in {time_limit:g}s")
            await asyncio.sleep(POLL_GAP)
            self.periods.append(loop.time() - last)
            last = loop.time()
        took = loop.time() - since
        if (dest in await self.ipvsadm()) != present:
            raise BenchError(f"/proc/net/ip_vs and ipvsadm -Ln disagree about {dest}")
        return took


def fully_back(report: OutageReport, since: float) -> float:
    """Seconds from ``since`` to the last success that ended an outage (0: no outage)."""
    ends = [o.end for o in report.outages if o.end > since]
    return max(ends) - since if ends else 0.0


def probe(topo: SeedTopology) -> OutageProbe:
    return OutageProbe(str(topo.vip), netns=topo.netns("cl"), interval=0.01, probe_timeout=1.0)


# ------------------------------------------------------------------------- mailha


async def bench_mailha(
    topo: SeedTopology, postfix: Postfixes, dbr: float, reps: int, polls: list[float]
) -> Figures:
    loop = asyncio.get_running_loop()
    opts = ClusterOptions(
        ipvs=True, delay_loop=1.0, connect_timeout=1.0, retry=1, delay_before_retry=dbr
    )
    own, peer = (f"{topo.address(n)}:25" for n in ("n1", "n2"))
    ipvs = IpvsPoller(topo, "n1")
    figures: Figures = {"peer out": [], "own out": [], "answering": [], "longest gap": []}
    async with MailhaCluster(topo, opts) as cluster:
        await cluster.wait_master("n1", time_limit=120)
        await ipvs.until(True, own, loop.time(), 120)
        await ipvs.until(True, peer, loop.time(), 120)
        for _ in range(reps):
            await asyncio.sleep(1.0)
            t0 = loop.time()
            await postfix["n2"].stop()
            figures["peer out"].append(await ipvs.until(False, peer, t0, 30))
            await postfix["n2"].start(time_limit=300)
            await ipvs.until(True, peer, loop.time(), 60)

            await asyncio.sleep(1.0)
            async with probe(topo) as p:
                await p.wait_success(time_limit=10)
                await asyncio.sleep(0.3)
                t0 = loop.time()
                await postfix["n1"].stop()
                figures["own out"].append(await ipvs.until(False, own, t0, 30))
                await asyncio.sleep(1.5)  # any failure still to come shows up by now
            report = p.report()
            figures["answering"].append(fully_back(report, t0))
            figures["longest gap"].append(report.longest_gap)
            if await topo.vip_masters() != ["n1"]:
                raise BenchError("the VIP moved although only n1's Postfix stopped")
            await postfix["n1"].start(time_limit=300)
            await ipvs.until(True, own, loop.time(), 60)
        if "Traceback" in cluster.log("n1") + cluster.log("n2"):
            raise BenchError(f"mailha logged a traceback (logs in {topo.workdir})")
    polls.extend(ipvs.periods)
    # Stopping must withdraw what mailha programmed, or the next setup measures leftovers.
    for node in topo.servers:
        rules = (await topo.exec(node, ["ipvsadm", "-Sn"], time_limit=60)).stdout.strip()
        vips = [a for a in await topo.addresses(node) if a.address == topo.vip]
        if rules or vips:
            raise BenchError(f"mailha left on {node} after stopping: {rules!r} {vips}")
    return figures


# --------------------------------------------------------------------- keepalived


def keepalived_seed(
    topo: SeedTopology, node: str, postfix: Postfix, script_timeout: float | None
) -> KeepalivedConfig:
    """The seed config with the track script every 1 s (and ``script_timeout`` if set)."""
    config = seed_config(topo, node, check_script=postfix.check_script(), script_interval=1)
    if script_timeout is None:
        return config
    instances = tuple(
        replace(i, track_scripts=tuple(replace(t, timeout=script_timeout) for t in i.track_scripts))
        for i in config.instances
    )
    return replace(config, instances=instances)


async def bench_keepalived(
    topo: SeedTopology, postfix: Postfixes, reps: int, script_timeout: float | None
) -> Figures:
    loop = asyncio.get_running_loop()
    peers = [
        Keepalived(
            topo.node_dir(node) / "keepalived",
            keepalived_seed(topo, node, postfix[node], script_timeout),
            netns=topo.netns(node),
        )
        for node in topo.servers
    ]
    figures: Figures = {"vip moved": [], "answering": [], "longest gap": []}

    async def one_master() -> bool:
        return len(await topo.vip_masters()) == 1

    async with contextlib.AsyncExitStack() as stack:
        for ka in peers:
            await stack.enter_async_context(ka)
        await wait_for("one keepalived master", one_master, 120)
        for _ in range(reps):
            await asyncio.sleep(3.0)  # scripts passing on both nodes, election settled
            await wait_for("one keepalived master", one_master, 60)
            (master,) = await topo.vip_masters()
            other = next(n for n in topo.servers if n != master)
            async with probe(topo) as p:
                await p.wait_success(time_limit=10)
                await asyncio.sleep(0.3)
                t0 = loop.time()
                await postfix[master].stop()

                async def moved(to: str = other) -> bool:
                    return await topo.vip_masters() == [to]

                await wait_for(f"the VIP on {other}", moved, 60)
                figures["vip moved"].append(loop.time() - t0)
                if loop.time() - t0 > 10:  # far beyond 3-6 s: show why
                    for ka in peers:
                        tail = [line for line in ka.log_text().splitlines()
                                if "VI_postfix" in line or "chk_service" in line][-12:]
                        print(f"  slow keepalived takeover; {ka!r} log:", *tail, sep="\n    ")
                took = loop.time()
                while (p.report().last_success or 0.0) <= took:
                    if loop.time() - took > 10:
                        raise BenchError("VIP:25 did not answer after the VIP moved")
                    await asyncio.sleep(0.01)
                await asyncio.sleep(1.5)
            report = p.report()
            figures["answering"].append(fully_back(report, t0))
            figures["longest gap"].append(report.longest_gap)
            await postfix[master].start(time_limit=300)
    return figures


# ------------------------------------------------------------------------- report


def cell(values: Sequence[float] | None) -> str:
    if not values:
        return f"{'-':>20}"
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):6.0f} {min(ms):6.0f} {max(ms):6.0f}"


def print_table(rows: Sequence[tuple[str, Figures]]) -> None:
    cols = (
        ("peer out", "peer RS out of IPVS"),
        ("own out", "own RS out of IPVS"),
        ("vip moved", "VIP moved"),
        ("answering", "VIP:25 all answering"),
        ("longest gap", "longest gap"),
    )
    print(f"{'':<34}" + "".join(f" | {title:>20}" for _, title in cols))
    print(f"{'ms':<34}" + f" | {'median':>6} {'min':>6} {'max':>6}" * len(cols))
    print("-" * (34 + 23 * len(cols)))
    for label, figures in rows:
        print(f"{label:<34}" + "".join(f" | {cell(figures.get(key))}" for key, _ in cols))


async def main_async(args: argparse.Namespace) -> int:
    reps = 1 if args.quick else args.reps
    dbrs = [float(x) for x in args.delay_before_retry.split(",")]
    in_vm = os.environ.get("MAILHA_IN_VM") == "1"
    print(
        f"bench_detection: {reps} rep(s), delay_before_retry {dbrs},"
        f" {'VM' if in_vm else 'host'} {platform.node()} ({len(os.sched_getaffinity(0))} CPUs),"
        f" {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    rows: list[tuple[str, Figures]] = []
    polls: list[float] = []
    async with SeedLab(args.prefix, keepalived=False) as lab:  # topology + Postfix on n1, n2
        topo, postfix = lab.topo, lab.postfix
        for dbr in [] if args.no_mailha else dbrs:
            started = time.monotonic()
            figures = await bench_mailha(topo, postfix, dbr, reps, polls)
            label = f"mailha SMTP_CHECK dbr {dbr:g}"
            print(f"  {label}: {_ms(figures)} ({time.monotonic() - started:.0f} s)", flush=True)
            rows.append((label, figures))
        if not args.no_keepalived:
            started = time.monotonic()
            figures = await bench_keepalived(topo, postfix, reps, args.ka_script_timeout)
            label = "keepalived seed (script every 1 s)"
            if args.ka_script_timeout is not None:
                label = f"keepalived seed (1 s, timeout {args.ka_script_timeout:g})"
            print(f"  {label}: {_ms(figures)} ({time.monotonic() - started:.0f} s)", flush=True)
            rows.append((label, figures))
    print()
    print("From `postfix stop` to ... (client probes VIP:25 every 10 ms)")
    if polls:
        print(
            f"(the master's IPVS table read from /proc/net/ip_vs every"
            f" {statistics.median(polls) * 1000:.0f} ms, median; max {max(polls) * 1000:.0f} ms;"
            " each change confirmed by ipvsadm -Ln)"
        )
    print_table(rows)
    if not args.no_keepalived and not args.no_mailha:
        ka = statistics.median(rows[-1][1]["answering"])
        for label, figures in rows[:-1]:
            mine = statistics.median(figures["answering"])
            if mine > 0:
                print(f"VIP:25 all answering again, keepalived / {label}: {ka / mine:.1f}x")
    return 0


def _ms(figures: Figures) -> str:
    return ", ".join(f"{k} {[round(v * 1000) for v in vs]} ms" for k, vs in figures.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per event (3)")
    parser.add_argument("--quick", action="store_true", help="one repetition")
    parser.add_argument(
        "--delay-before-retry", default="1,0.2", help="comma-separated values to compare"
    )
    parser.add_argument("--no-keepalived", action="store_true", help="skip keepalived")
    parser.add_argument("--no-mailha", action="store_true", help="skip mailha")
    parser.add_argument(
        "--ka-script-timeout", type=float, default=None, metavar="SECONDS",
        help="timeout for keepalived's track script (default: keepalived's own); in the VM"
        " a check takes 0.3-2.4 s, times out and flaps the priority unless this is raised",
    )
    parser.add_argument("--prefix", default="mhB4", help="namespace/interface name prefix")
    parser.add_argument("--time-limit", type=float, default=1500.0, help="give up after (1500 s)")
    args = parser.parse_args(argv)
    try:
        if any(float(x) < 0 for x in args.delay_before_retry.split(",")) or args.reps < 1:
            raise ValueError
    except ValueError:
        parser.error("--delay-before-retry takes non-negative numbers; --reps must be >= 1")
    if not args.no_mailha and not require_ipvs("bench_detection"):
        return 1

    return run_bounded("bench_detection", lambda: main_async(args), args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
