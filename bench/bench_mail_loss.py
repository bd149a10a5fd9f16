"""Benchmark the mail-loss promise: lost, duplicated and delayed mail under 20 faults.

Needs ip_vs for the mailha IPVS mode, so it normally runs in the VM::

    PATH=$PWD/.venv/bin:$PATH tests/vm/vmrun --mem 2G --timeout 3000 -- python \\
        bench/bench_mail_loss.py [--faults 20] [--messages 5000] [--rate 8] [--quick]

The long version of tests/kernel/test_mail_loss.py (see :mod:`lab.mailloss`):
the seed topology, a real Postfix on both nodes, and in the client namespace a real
Postfix relaying a steady stream (unique Message-IDs, ``--rate`` per second, at least
``--messages``) to ``[VIP]:25`` with short retry timers (minimal_backoff_time 3 s,
maximal_backoff_time 10 s, queue_run_delay 3 s, smtp_connect_timeout 3 s). ``--faults``
faults cycle through the catalogue (link down/up, SIGKILL + restart, postfix stop/start
on the master and on the backup, clean stop/start, SIGHUP reload, split brain + heal,
5 s freeze), each once the cluster has settled from the previous one. Then the client's
queue is flushed and every message is looked up by Message-ID in both nodes' logs.

Modes, each on a fresh lab, in this order (``--modes``):

* ``ipvs``: mailha, all-in-one DR, the VRRP master balances VIP:25 over both Postfix;
* ``keepalived``: keepalived's seed setup (VRRP only, track script on Postfix,
  active/passive) with the same faults applied to keepalived;
* ``vrrp``: mailha without virtual servers (active/passive), not run by default.

Prints per mode and fault kind: messages, lost, duplicated, p50/p99/max delay from
submission to a server's acceptance; then the maxima side by side. Exits 1 if the lab
fails; lost mail is reported (with the client's log of the first few), not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import require_ipvs, run_bounded

from lab.cluster import ClusterOptions, MailhaCluster
from lab.mailloss import (
    MAXIMAL_BACKOFF,
    STEADY,
    HaDriver,
    KeepalivedDriver,
    MailhaDriver,
    RunResult,
    fault_plan,
    format_report,
    relay_client,
    run_mail_loss,
    trace,
)
from lab.postfix import Postfix
from lab.seedlab import SeedLab

MODES = ("ipvs", "keepalived", "vrrp")


@contextlib.asynccontextmanager
async def mode_lab(
    mode: str, args: argparse.Namespace
) -> AsyncIterator[tuple[HaDriver, Postfix]]:
    """A fresh seed lab running ``mode``, plus the client's relaying Postfix."""
    async with SeedLab(args.prefix, keepalived=mode == "keepalived",
                       script_timeout=args.ka_script_timeout) as lab:
        client = relay_client(lab.topo)
        async with client:
            if mode == "keepalived":
                yield KeepalivedDriver(lab.topo, lab.keepalived, lab.postfix), client
                return
            opts = ClusterOptions(ipvs=mode == "ipvs", delay_loop=1.0, connect_timeout=5.0,
                                  retry=2)
            async with MailhaCluster(lab.topo, opts) as cluster:
                await cluster.wait_master("n1", time_limit=120)
                yield MailhaDriver(cluster, lab.postfix), client
                logs = cluster.log("n1") + cluster.log("n2")
                if "Traceback" in logs:
                    print(f"  WARNING: mailha logged a traceback ({mode})", flush=True)


async def run_mode(mode: str, args: argparse.Namespace) -> RunResult:
    print(f"\n== {mode}", flush=True)
    async with mode_lab(mode, args) as (driver, client):
        result = await run_mail_loss(
            driver, client, fault_plan(args.faults), rate=args.rate, minimum=args.messages,
            log=lambda line: print(line, flush=True),
        )
        report = result.report
        print(format_report(report, f"{driver.name}: {report.submitted} messages,"
                            f" {len(result.faults)} faults, {result.elapsed:.0f} s"
                            f" (drain {result.flush_s:.0f} s)"), flush=True)
        print("  longest:", ", ".join(f"{d:.1f}s ({k})" for _, d, k in report.worst))
        print(f"  submissions the client Postfix refused or dropped, then retried:"
              f" {result.submit_errors}")
        for mid in report.lost[:3]:
            print(f"  lost {mid}; client log:", *trace(client, mid), sep="\n    ")
    return result


def print_comparison(results: dict[str, RunResult]) -> None:
    modes = list(results)
    kinds = list(dict.fromkeys(k.kind for r in results.values() for k in r.report.per_kind))
    print("\nDelay from submission to acceptance, p99 / max (s), lost+dup, per fault kind")
    head = f"{'fault kind':<28}" + "".join(f" | {m:>24}" for m in modes)
    print(head)
    print("-" * len(head))
    for kind in kinds:
        cells = []
        for m in modes:
            k = next((s for s in results[m].report.per_kind if s.kind == kind), None)
            cells.append("-" if k is None else
                         f"{k.p99:5.1f} / {k.max:5.1f}  {k.lost}+{k.duplicated}")
        print(f"{kind:<28}" + "".join(f" | {c:>24}" for c in cells))
    for m, r in results.items():
        faulted = [k.max for k in r.report.per_kind if k.kind != STEADY]
        print(f"{m}: {r.report.submitted} messages, lost {len(r.report.lost)},"
              f" duplicated {r.report.duplicates}, max delay {r.report.max_delay:.1f} s"
              f" (bound 2 x maximal_backoff_time = {2 * MAXIMAL_BACKOFF:g} s:"
              f" {'met' if r.report.max_delay <= 2 * MAXIMAL_BACKOFF else 'NOT met'}),"
              f" worst fault kind max {max(faulted, default=0.0):.1f} s")


async def main_async(args: argparse.Namespace) -> int:
    in_vm = os.environ.get("MAILHA_IN_VM") == "1"
    print(
        f"bench_mail_loss: {args.faults} faults, >= {args.messages} messages at {args.rate:g}/s,"
        f" modes {','.join(args.modes)}; {'VM' if in_vm else 'host'} {platform.node()}"
        f" ({len(os.sched_getaffinity(0))} CPUs), {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    results = {mode: await run_mode(mode, args) for mode in args.modes}
    print_comparison(results)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=20, help="faults, cycling kinds (20)")
    parser.add_argument("--messages", type=int, default=5000, help="at least this many (5000)")
    parser.add_argument("--rate", type=float, default=8.0, help="messages per second (8)")
    parser.add_argument("--modes", default="ipvs,keepalived",
                        help=f"comma-separated, of {','.join(MODES)} (ipvs,keepalived)")
    parser.add_argument(
        "--ka-script-timeout", type=float, default=None, metavar="SECONDS",
        help="keepalived's track-script timeout (its default; 5 in the VM: a check takes"
        " 0.3-2.4 s there and would time out and flap the priority, see bench_detection)",
    )
    parser.add_argument("--quick", action="store_true", help="8 faults, 300 messages, 3/s")
    parser.add_argument("--prefix", default="mhB6", help="namespace/interface name prefix")
    parser.add_argument("--time-limit", type=float, default=2900.0, help="give up after (2900 s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.faults, args.messages, args.rate = 8, 300, 3.0
    args.modes = [m for m in args.modes.split(",") if m]
    if not args.modes or any(m not in MODES for m in args.modes):
        parser.error(f"--modes: choose from {','.join(MODES)}")
    if args.faults < 1 or args.messages < 1 or args.rate <= 0:
        parser.error("--faults, --messages and --rate must be positive")
    if "ipvs" in args.modes and not require_ipvs("bench_mail_loss",
                                                  " (or --modes keepalived,vrrp)"):
        return 1
    return run_bounded("bench_mail_loss", lambda: main_async(args), args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
