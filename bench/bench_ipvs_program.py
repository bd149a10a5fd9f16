"""Programming a large IPVS table: mailha's netlink adapter against ``ipvsadm -R``.

Run as root where ip_vs exists, e.g. in the test VM:

    PATH=$PWD/.venv/bin:$PATH tests/vm/vmrun --mem 2G --timeout 900 -- python \\
        bench/bench_ipvs_program.py [--services N] [--rounds 3] [--sched mh]

Everything happens in a private network namespace (IPVS tables are per namespace),
so the host's table is never touched. Each round programs the same table twice from
empty, once through mailha (observe + plan + pipelined apply, in process) and once
through ``ipvsadm -R`` (process start included, as an operator would run it),
flushing in between; then it times no-op reconciles (observe + plan, 0 operations)
of the full table: the first one after programming, which decodes every row, and the
periodic one after it, which finds unchanged rows in the adapter's decode cache.
With ``--sched mh`` the services use Maglev hashing: the no-op pass also checks each
row's canonical order, and the fingerprints a scrape computes for them are timed too.
Prints best-of-rounds times and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import statistics
import time

from mailha.lvs.maglev import FingerprintMemo
from mailha.lvs.model import (
    MH_FALLBACK,
    MH_PORT,
    NO_FLAGS,
    Destination,
    Service,
    ServiceKey,
    ServiceRow,
    make_table,
)
from mailha.lvs.netlink import IpvsNetlink
from mailha.lvs.planner import plan
from mailha.lvs.status import maglev_services

CLONE_NEWNET = 0x40000000


def desired_table(services: int, sched: str = "wlc") -> dict[ServiceKey, ServiceRow]:
    flags = MH_FALLBACK | MH_PORT if sched == "mh" else NO_FLAGS
    return make_table(
        ServiceRow.of(
            Service(ServiceKey.for_address(f"10.40.{i // 250}.{i % 250 + 1}", 25), sched, flags),
            [Destination.of("10.50.0.1", 25), Destination.of("10.50.0.2", 25)],
        )
        for i in range(services)
    )


def ipvsadm_rules(services: int, sched: str = "wlc") -> str:
    lines = []
    flags = " -b mh-fallback,mh-port" if sched == "mh" else ""
    for i in range(services):
        vip = f"10.40.{i // 250}.{i % 250 + 1}:25"
        lines.append(f"-A -t {vip} -s {sched}{flags}")
        lines.extend(f"-a -t {vip} -r 10.50.0.{n}:25 -m -w 1" for n in (1, 2))
    return "\n".join(lines) + "\n"


async def ipvsadm_restore(rules: str) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "ipvsadm", "-R", stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(600):
        _, err = await proc.communicate(rules.encode())
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"ipvsadm -R failed: {err.decode()}")
    return elapsed


async def ipvsadm_list() -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec("ipvsadm", "-Ln", stdout=asyncio.subprocess.DEVNULL)
    async with asyncio.timeout(600):
        await proc.wait()
    return time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sched", default="wlc", choices=["wlc", "mh"],
                        help="mh: Maglev services (canonical order checked, fingerprints)")
    args = parser.parse_args()

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise SystemExit(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())} (root?)")
    # A namespace without any address has no local routing table, and then the kernel
    # refuses every real server as "not unicast" (EINVAL): bring loopback up.
    await (await asyncio.create_subprocess_exec("ip", "link", "set", "lo", "up")).wait()

    desired = desired_table(args.services, args.sched)
    rules = ipvsadm_rules(args.services, args.sched)
    n_rules = rules.count("\n")
    mailha_times: list[float] = []
    ipvsadm_times: list[float] = []
    first_times: list[float] = []
    noop_times: list[float] = []
    noop_stats_times: list[float] = []
    fingerprint_times: list[float] = []
    listing_times: list[float] = []
    async with await IpvsNetlink.open(request_timeout=120) as ipvs:
        for _ in range(args.rounds):
            await ipvs.flush()
            start = time.perf_counter()
            ops = plan(desired, await ipvs.observe(), set())
            result = await ipvs.apply(ops)
            mailha_times.append(time.perf_counter() - start)
            result.raise_for_errors()
            assert len(ops) == n_rules, (len(ops), n_rules)

            # The first read after programming decodes every row; the periodic ones
            # after it find them in the adapter's decode cache.
            start = time.perf_counter()
            ops = plan(desired, await ipvs.observe(with_stats=False), set(desired))
            first_times.append(time.perf_counter() - start)
            assert ops == [], ops

            start = time.perf_counter()
            ops = plan(desired, await ipvs.observe(with_stats=False), set(desired))
            noop_times.append(time.perf_counter() - start)
            assert ops == [], ops

            start = time.perf_counter()
            ops = plan(desired, await ipvs.observe(), set(desired))
            noop_stats_times.append(time.perf_counter() - start)
            assert ops == [], ops

            # What a scrape adds for mh services: fingerprints of unchanged rows (memo).
            memo = FingerprintMemo()
            observed = await ipvs.observe()
            memo(observed, maglev_services(observed, set(desired), set()))
            observed = await ipvs.observe()
            start = time.perf_counter()
            found = memo(observed, maglev_services(observed, set(desired), set()))
            fingerprint_times.append(time.perf_counter() - start)
            assert len(found) == (len(desired) if args.sched == "mh" else 0)

            listing_times.append(await ipvsadm_list())

            await ipvs.flush()
            ipvsadm_times.append(await ipvsadm_restore(rules))
            assert (await ipvs.observe()).config() == desired  # same table both ways
        await ipvs.flush()

    best_mailha, best_ipvsadm = min(mailha_times), min(ipvsadm_times)
    print(f"table: {args.services} {args.sched} services x 2 destinations = {n_rules} operations")
    print(f"rounds: {args.rounds} (best / median, seconds)")
    print(f"mailha  observe+plan+apply: {best_mailha:.3f} / {statistics.median(mailha_times):.3f}")
    print(
        f"ipvsadm -R                : {best_ipvsadm:.3f} / {statistics.median(ipvsadm_times):.3f}"
    )
    print(f"ratio mailha / ipvsadm -R : {best_mailha / best_ipvsadm:.2f}x (goal <= 1.5x)")
    for label, times in (
        ("first no-op reconcile after programming", first_times),
        ("no-op reconcile (observe+plan, 0 ops)   ", noop_times),
        ("  same, decoding counters too          ", noop_stats_times),
        ("ipvsadm -Ln (the same dumps)           ", listing_times),
        ("fingerprints of the unchanged mh rows   ", fingerprint_times),
    ):
        print(f"{label}: {min(times):.3f} / {statistics.median(times):.3f}")
    print(f"ratio no-op / ipvsadm -Ln : {min(noop_times) / min(listing_times):.2f}x (goal <= 1.0x)")


if __name__ == "__main__":
    asyncio.run(main())
