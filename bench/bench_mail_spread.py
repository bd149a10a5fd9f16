"""Benchmark mail throughput through the VIP: IPVS balancing against active/passive.

Needs ip_vs, so it normally runs in the VM::

    PATH=$PWD/.venv/bin:$PATH tests/vm/vmrun --mem 2G --timeout 1200 -- python \\
        bench/bench_mail_spread.py [--messages 2000] [--sessions 20] [--reps 1] [--quick]

The seed topology with a real Postfix on both nodes (mail discarded after queueing).
``smtp-source`` in the client namespace sends ``--messages`` messages over
``--sessions`` parallel sessions to VIP:25, one message per SMTP session, so the message
split between the nodes is also the session split. The same load runs, in this order,
against:

a. mailha with ``ipvs=True``: all-in-one direct routing, the VRRP master (n1) programs
   VIP:25 (rr) over its own Postfix and n2's, SMTP_CHECKs decide who is in the pool;
b. mailha without virtual servers: the same VRRP pair, active/passive, only the master
   takes mail (the setup mailha replaces, with mailha's VRRP);
c. keepalived with the seed configs (both priority 100, track script on Postfix,
   weight +100: active/passive, node2 wins), unless ``--no-keepalived``.

Each mode gets a small warm-up load first (not counted). Per node counts come from
each Postfix's own log (messages that entered its queue). Prints msgs/s, the split and
the ratio to active/passive; asserts nothing about speed, exits 1 if the lab fails
(smtp-source errors, messages missing from the logs). IPVS rules or VIPs a stopped
mailha leaves behind are reported (with its log), removed, and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BenchError, require_ipvs, run_bounded, wait_for

from lab.cluster import ClusterOptions, MailhaCluster, live_destinations
from lab.keepalived import Keepalived, seed_config
from lab.postfix import Postfix
from lab.seedlab import SeedLab
from lab.smtpload import smtp_source
from lab.topology import SeedTopology

Postfixes = Mapping[str, Postfix]
LEFTOVERS: list[str] = []  # what a stopped mailha left behind (reported at the end)


@dataclass(frozen=True)
class Run:
    """One measured smtp-source run and where its messages went."""

    mode: str
    rate: float
    elapsed: float
    completed: int
    counts: Mapping[str, int]


# ------------------------------------------------------------------------- helpers


async def ipvs_services(topo: SeedTopology, node: str) -> list[str]:
    result = await topo.exec(node, ["ipvsadm", "-Sn"], time_limit=30.0)
    return [line for line in result.stdout.splitlines() if line.strip()]


async def dump_state(topo: SeedTopology, postfix: Postfixes) -> None:
    """Print what a post-mortem needs (the lab's files vanish with the VM)."""
    print("  --- state after the failure ---", flush=True)
    print(f"  VIP on interfaces of: {await topo.vip_masters()}")
    for node in topo.servers:
        table = await topo.exec(node, ["ipvsadm", "-Ln"], time_limit=60, check=False)
        lo = [str(a.interface) for a in await topo.addresses(node) if a.ifname == "lo"]
        print(f"  {node} lo: {lo}; ipvsadm -Ln:", *table.stdout.splitlines()[3:], sep="\n    ")
        logs = [
            ("mailha", topo.node_dir(node) / "mailha.log", ("WARNING", "ERROR", "->")),
            ("maillog", postfix[node].log_path, ("warning", "fatal", "panic", "error")),
        ]
        for name, path, marks in logs:
            with contextlib.suppress(FileNotFoundError):
                lines = [ln for ln in path.read_text(errors="replace").splitlines()
                         if any(m in ln for m in marks)]
                print(f"  {node} {name} ({len(lines)} notable lines, last 15):",
                      *lines[-15:], sep="\n    ")
    print(flush=True)


# --------------------------------------------------------------------------- modes


@contextlib.asynccontextmanager
async def mailha_mode(topo: SeedTopology, ipvs: bool) -> AsyncIterator[None]:
    opts = ClusterOptions(ipvs=ipvs, delay_loop=1.0, connect_timeout=2.0, retry=1)
    async with MailhaCluster(topo, opts) as cluster:
        await cluster.wait_master("n1", time_limit=120)
        if ipvs:
            want = {f"{topo.address(n)}:25" for n in topo.servers}

            async def pool_full() -> bool:
                return await live_destinations(topo, "n1") == want

            await wait_for("both real servers in n1's IPVS table", pool_full, 120, every=0.2)
        yield
        if "Traceback" in cluster.log("n1") + cluster.log("n2"):
            raise BenchError(f"mailha logged a traceback (logs in {topo.workdir})")
    # Stopping must withdraw what mailha programmed, or the next mode measures leftovers:
    # report them (a mailha bug), show mailha's log, remove them and go on.
    for node in topo.servers:
        rules = await ipvs_services(topo, node)
        vips = [a for a in await topo.addresses(node) if a.address == topo.vip]
        if not rules and not vips:
            continue
        LEFTOVERS.append(f"{node}: rules {rules}, VIP on {[a.ifname for a in vips]}")
        print(f"  WARNING: mailha left on {node} after stopping: {LEFTOVERS[-1]}")
        log = (topo.node_dir(node) / "mailha.log").read_text(errors="replace").splitlines()
        print(f"  {node} mailha.log, last 20 lines:", *log[-20:], sep="\n    ", flush=True)
        await topo.exec(node, ["ipvsadm", "-C"], time_limit=60)
        for a in vips:
            await topo.exec(node, ["ip", "addr", "del", str(a.interface), "dev", a.ifname])


@contextlib.asynccontextmanager
async def keepalived_mode(topo: SeedTopology, postfix: Postfixes) -> AsyncIterator[None]:
    peers = [
        Keepalived(
            topo.node_dir(node) / "keepalived",
            seed_config(topo, node, check_script=postfix[node].check_script(), script_interval=1),
            netns=topo.netns(node),
        )
        for node in topo.servers
    ]
    async with contextlib.AsyncExitStack() as stack:
        for ka in peers:
            await stack.enter_async_context(ka)

        async def one_master() -> bool:
            return len(await topo.vip_masters()) == 1

        await wait_for("one keepalived master", one_master, 120, every=0.2)
        await asyncio.sleep(3)  # the seed's equal priorities: let the election settle
        await wait_for("one keepalived master", one_master, 60, every=0.2)
        yield


# --------------------------------------------------------------------------- runs


async def load(
    topo: SeedTopology, postfix: Postfixes, mode: str, messages: int, sessions: int
) -> Run:
    """One smtp-source run through the VIP; per-node counts from the Postfix logs."""
    before = {n: pf.received_count() for n, pf in postfix.items()}
    result = await smtp_source(
        str(topo.vip), netns=topo.netns("cl"), messages=messages, sessions=sessions,
        time_limit=900,
    )
    if not result.ok:
        await dump_state(topo, postfix)
        raise BenchError(f"{mode}: smtp-source failed: {result}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while True:  # qmgr logs a message a little after smtpd's 250
        counts = {n: pf.received_count() - before[n] for n, pf in postfix.items()}
        if sum(counts.values()) >= result.completed:
            break
        if loop.time() > deadline:
            raise BenchError(f"{mode}: logs show {counts} of {result.completed} messages")
        await asyncio.sleep(0.2)
    return Run(mode, result.rate, result.elapsed, result.completed, counts)


async def measure_mode(
    topo: SeedTopology,
    postfix: Postfixes,
    mode: str,
    cm: contextlib.AbstractAsyncContextManager[None],
    args: argparse.Namespace,
) -> list[Run]:
    runs = []
    async with cm:
        await load(topo, postfix, f"{mode} (warm-up)", 40, 4)
        for _ in range(args.reps):
            done = await load(topo, postfix, mode, args.messages, args.sessions)
            share = ", ".join(f"{n} {c}" for n, c in done.counts.items())
            print(f"  {mode}: {done.rate:.0f} msgs/s in {done.elapsed:.1f} s ({share})", flush=True)
            runs.append(done)
    return runs


def print_table(results: Mapping[str, list[Run]], baseline: str) -> None:
    head = (
        f"{'mode':<34} | {'msgs/s':>7} | {'n1':>6} {'%':>5} | {'n2':>6} {'%':>5} |"
        f" {'x active/passive':>16}"
    )
    print(head)
    print("-" * len(head))
    base = sum(r.rate for r in results[baseline]) / len(results[baseline])
    for mode, runs in results.items():
        rate = sum(r.rate for r in runs) / len(runs)
        n1 = sum(r.counts["n1"] for r in runs)
        n2 = sum(r.counts["n2"] for r in runs)
        total = max(n1 + n2, 1)
        print(
            f"{mode:<34} | {rate:7.0f} | {n1:6d} {100 * n1 / total:5.1f} |"
            f" {n2:6d} {100 * n2 / total:5.1f} | {rate / base:16.2f}"
        )


async def main_async(args: argparse.Namespace) -> int:
    if args.quick:
        args.messages, args.sessions, args.reps = 300, 10, 1
    in_vm = os.environ.get("MAILHA_IN_VM") == "1"
    print(
        f"bench_mail_spread: {args.messages} messages x {args.sessions} sessions,"
        f" {args.reps} rep(s), {'VM' if in_vm else 'host'} {platform.node()}"
        f" ({len(os.sched_getaffinity(0))} CPUs), {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    results: dict[str, list[Run]] = {}
    async with SeedLab(args.prefix, keepalived=False) as lab:  # topology + Postfix on n1, n2
        topo, postfix = lab.topo, lab.postfix
        modes: list[tuple[str, contextlib.AbstractAsyncContextManager[None]]] = [
            ("a. mailha, IPVS all-in-one DR", mailha_mode(topo, ipvs=True)),
            ("b. mailha, active/passive", mailha_mode(topo, ipvs=False)),
        ]
        if not args.no_keepalived:
            modes.append(("c. keepalived seed, act/pass", keepalived_mode(topo, postfix)))
        for mode, cm in modes:
            results[mode] = await measure_mode(topo, postfix, mode, cm, args)
    print()
    print("Mail through the VIP (one SMTP session per message; split from Postfix logs)")
    print_table(results, baseline="b. mailha, active/passive")
    for leftover in LEFTOVERS:
        print(f"WARNING: a stopped mailha left {leftover} (removed before the next mode)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (2000)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel sessions (20)")
    parser.add_argument("--reps", type=int, default=1, help="runs per mode (1)")
    parser.add_argument("--quick", action="store_true", help="300 messages x 10 sessions, once")
    parser.add_argument("--no-keepalived", action="store_true", help="skip mode c")
    parser.add_argument("--prefix", default="mhB3", help="namespace/interface name prefix")
    parser.add_argument("--time-limit", type=float, default=1500.0, help="give up after (1500 s)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.sessions < 1 or args.reps < 1:
        parser.error("--messages, --sessions and --reps must be positive")
    if not require_ipvs("bench_mail_spread"):
        return 1

    return run_bounded("bench_mail_spread", lambda: main_async(args), args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
