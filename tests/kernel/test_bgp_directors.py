"""Issue 12, acceptance tests 1-5: two directors running ``mailha serve`` with
``announce = "bgp"``, announced through BIRD to a router that spreads the VIP by ECMP.

The lab (:class:`lab.bgp.BgpLab`): a router namespace (BIRD, eBGP to each director, BFD
100 ms x 3, ``merge paths``, ``fib_multipath_hash_policy=1``), two directors (BIRD that
includes mailha's file, and mailha with the VIP's SMTP service over three real servers,
direct routing, Maglev hashing), three real servers (smtp-sink, VIP on ``lo``) and a
client with 50 source addresses behind the router. One lab for the whole file
(module-scoped): each test leaves both directors announced, as it found them.

Withdrawal times are measured from the event (time-stamped in this process right before
it is caused) to the router's kernel FIB losing the director's next hop, seen by
:class:`lab.routewatch.RouteWatcher` (netlink route events, stamped on arrival by a thread
of their own). The bounds are the issue's (10 s to two next hops, 1.5 s for an unready
director, 1 s for a cut link or a killed BIRD, 2 s for a killed mailha); every figure is
printed (run with ``-s``). Which director carried a session is read from the directors'
own IPVS connection tables (``ipvsadm -Lnc``, by the client's address and port), not
from mailha. A director is made unready by stopping the listeners its checks use (each
director checks the real servers on a port of its own): its checks fail, the real
servers keep serving.

``net.ipv4.vs.sloppy_tcp`` must be 1 in the directors: a flow the router rehashes to the
other director mid-session is picked up there only with it (and with the same Maglev
table on both, which is what ``mh`` gives). mailha sets it itself for ``mh`` services
(``lvs_sloppy_tcp``): the fixture checks that it did, and test 5 depends on it.

Under TCG on a busy host the guest sometimes does not run for 300 ms; the router's BFD
then expires sessions no test touched. A failure that such a flap can explain says so:
its message carries the router's session events and the longest stall of this process
(:mod:`lab.stalls`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from lab import netns
from lab.bgp import BgpLab, BgpLabOptions
from lab.routewatch import RouteWatcher
from lab.smtpflows import Flow, paced_flows, run_flows, slow_transfer, smtp_session
from lab.stalls import StallMeter

pytestmark = [pytest.mark.kernel, pytest.mark.root, pytest.mark.slow,
              pytest.mark.asyncio(loop_scope="module")]

PREFIX = "mhGk"
#: The issue's bounds, in seconds.
BOUND_START, BOUND_UNREADY, BOUND_BFD, BOUND_SIGKILL = 10.0, 1.5, 1.0, 2.0
#: Restoring a director (BGP reconnect, mailha's re-apply) is not a bounded criterion.
RESTORE = 60.0
#: The VM without KVM: Python runs ~10x slower, processes start ~30x slower.
EMULATED = os.environ.get("MAILHA_IN_VM") == "1" and os.environ.get("MAILHA_VM_ACCEL") != "kvm"
IPv4 = ipaddress.IPv4Address


@dataclass
class Lab:
    lab: BgpLab
    fib: RouteWatcher
    stalls: StallMeter
    started: dict[str, float] = field(default_factory=dict)  # figures of the start
    started_sloppy: dict[str, str] = field(default_factory=dict)  # who set sloppy_tcp
    d1: ipaddress.IPv4Address = field(init=False)
    d2: ipaddress.IPv4Address = field(init=False)

    def __post_init__(self) -> None:
        self.d1, self.d2 = (self.lab.address(d) for d in self.lab.directors)

    def environment(self, start: float, end: float) -> str:
        """What the machine did between ``start`` and ``end``: for the message of a
        failure a flap may explain (the router's BFD expiring sessions no test touched
        because the VM did not run for 300 ms, see lab/stalls.py)."""
        worst = self.stalls.worst(start, end)
        stall = f"{worst.seconds * 1000:.0f} ms at {worst.at - start:.2f} s" if worst else "none"
        return (f"longest stall of this process: {stall}; router's BIRD: "
                f"{self.lab.session_events('rt')[-8:]}")

    @property
    def both(self) -> frozenset[ipaddress.IPv4Address]:
        return frozenset({self.d1, self.d2})

    async def wait_both(self, since: float | None = None) -> float:
        """Wait (unbounded by the issue) until both directors are next hops again; the
        time from ``since`` (a restore's own stamp) to the change that made it so."""
        change = await self.fib.wait_for(lambda hops: hops == self.both, after=since,
                                         time_limit=RESTORE)
        return change.at - since if since is not None else 0.0

    async def withdrawn(self, t0: float, bound: float, what: str) -> float:
        """Wait for d1's next hop to go (d2's staying); print and return the time."""
        change = await self.fib.wait_for(lambda hops: hops == {self.d2}, after=t0,
                                         time_limit=max(30.0, 10 * bound))
        took = change.at - t0
        print(f"withdrawal, {what}: {took * 1000:.0f} ms (bound {bound * 1000:.0f} ms)")
        return took


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bgp() -> AsyncIterator[Lab]:
    options = BgpLabOptions(announce="mailha")
    async with BgpLab(PREFIX, options) as lab, lab.watch_fib() as fib, \
            StallMeter() as stalls:
        state = Lab(lab, fib, stalls)
        assert fib.nexthops == frozenset(), "nothing announces before mailha runs"
        await lab.compile_mailha()
        t0 = time.monotonic()
        await asyncio.gather(*(lab.start_mailha(d) for d in lab.directors))
        state.started["running"] = time.monotonic() - t0
        change = await fib.wait_for(lambda hops: hops == state.both, after=t0, time_limit=60)
        state.started["two_next_hops"] = change.at - t0
        state.started["imported"] = max(lab.imported_at.values()) - t0
        state.started_sloppy = {d: lab.ensure_sloppy_tcp(d) for d in lab.directors}
        try:
            yield state
        finally:
            print("router FIB history (s from the start: next hops): " + "; ".join(
                f"{c.at - t0:.3f}: {','.join(sorted(str(h)[-2:] for h in c.nexthops)) or '-'}"
                for c in fib.changes))
            worst = stalls.worst(t0, time.monotonic())
            print(f"stalls of over 100 ms in this process: {len(stalls.stalls)}, the longest "
                  f"{worst.seconds * 1000 if worst else 0:.0f} ms")
            print("--- router's BIRD, session events\n" + "\n".join(
                lab.session_events("rt")[-60:]))
            for d in lab.directors:
                tail = lab.mailha_log(d).read_text(errors="replace")[-3000:]
                print(f"--- mailha log tail, {d}\n{tail}")
    assert netns.list_netns(PREFIX) == []


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


async def test_1_router_has_two_next_hops_within_10s_of_start(bgp: Lab) -> None:
    f = bgp.started
    own = f["two_next_hops"] - f["imported"]
    print(f"start of both mailha: modules imported after {f['imported']:.2f} s, router FIB "
          f"with two next hops after {f['two_next_hops']:.2f} s, both logged 'running' after "
          f"{f['running']:.2f} s; mailha's own part (imports done to two next hops): "
          f"{own:.2f} s (bound {BOUND_START:g} s)")
    assert own <= BOUND_START
    if not EMULATED:  # under TCG the interpreter alone loads its modules ~10x slower
        assert f["two_next_hops"] <= BOUND_START
    assert await bgp.lab.fib_nexthops() == bgp.both  # ip route agrees with the watcher
    status = await bgp.lab.control("d1", "status")
    print(f"d1 status, bgp section: {status.get('bgp')}; sloppy_tcp set by "
          f"{bgp.started_sloppy}")
    assert status["bgp"]["vips"][0]["announced"], status["bgp"]


async def test_2_400_sessions_spread_50_50_within_15_points(bgp: Lab) -> None:
    lab = bgp.lab
    await bgp.wait_both()
    t0 = time.monotonic()
    flows = await run_flows(
        lambda i: smtp_session(lab.client_netns, lab.sources[i % len(lab.sources)],
                               str(lab.vip)), 400, concurrency=20)
    flaps = [c for c in bgp.fib.changes if c.at >= t0]
    carried = await _carried(lab, flows)
    servers = Counter(f.server for f in flows)
    print("400 sessions from 50 addresses, by director: " + ", ".join(
        f"{d} {len(carried[d])} ({_pct(len(carried[d]), len(flows)):.1f} %)"
        for d in lab.directors) + f"; by real server: {dict(sorted(servers.items()))}")
    failed = [f for f in flows if not f.ok]
    assert not flaps, (f"the router's route changed during the run (a BGP/BFD flap): {flaps}; "
                       f"{bgp.environment(t0, time.monotonic())}")
    assert not failed, failed[:5]
    assert not carried["d1"] & carried["d2"]
    assert len(carried["d1"]) + len(carried["d2"]) == 400  # every flow found in one table
    for d in lab.directors:
        assert 35.0 <= _pct(len(carried[d]), 400) <= 65.0, {k: len(v) for k, v in carried.items()}


async def _carried(lab: BgpLab, flows: list[Flow]) -> dict[str, set[tuple[IPv4, int]]]:
    """Which of ``flows`` each director's IPVS connection table holds (the kernel's own
    account of who scheduled or took over a flow)."""
    mine = {(f.source, f.port) for f in flows}
    return {d: set(await lab.ipvs_clients(d)) & mine for d in lab.directors}


@dataclass(frozen=True)
class Probed:
    """A withdrawal under a stream of new sessions: when it was caused (``t0``), how long
    the router took (``took``), when d1's restore began (``back``), and every session."""

    t0: float
    took: float
    back: float
    flows: list[Flow]

    def failed(self) -> list[Flow]:
        return [f for f in self.flows if not f.ok]


async def _probe_through(bgp: Lab, cause: str) -> Probed:
    """New sessions every 50 ms from rotating sources while d1 is withdrawn by ``cause``,
    a second of d2 alone, and d1's restore (the router's rehash back to two directors)."""
    lab = bgp.lab
    stop = asyncio.Event()
    probe = asyncio.create_task(paced_flows(
        lambda i: smtp_session(lab.client_netns, lab.sources[i % len(lab.sources)],
                               str(lab.vip), time_limit=5.0),
        interval=0.05, stop=stop))
    try:
        await asyncio.sleep(1.0)  # sessions through both directors before the event
        t0 = time.monotonic()
        try:
            await lab.withdraw("d1", cause)
            print(f"{cause}: caused {1000 * (time.monotonic() - t0):.0f} ms after the stamp")
            took = await bgp.withdrawn(t0, BOUND_UNREADY, cause)
            await asyncio.sleep(1.0)  # and after it, through d2 alone
        finally:
            back = time.monotonic()
            await lab.restore("d1", cause)
        print(f"re-announced {await bgp.wait_both(back):.2f} s after the restore began")
        await asyncio.sleep(1.0)  # through both again
    finally:
        stop.set()
        flows = await probe
    return Probed(t0, took, back, flows)


async def test_3a_drained_director_is_withdrawn_within_1_5s_and_no_session_fails(
    bgp: Lab,
) -> None:
    await bgp.wait_both()
    run = await _probe_through(bgp, "drained")
    failed = run.failed()
    print(f"sessions through the drain and the undrain: {len(run.flows)}, failed {len(failed)}")
    assert run.took <= BOUND_UNREADY
    # A drained director keeps its IPVS table: the flows the router moves to d2 (and back
    # at the undrain) meet the same Maglev table there and go on (sloppy_tcp).
    assert not failed, (failed[:5], bgp.environment(run.t0 - 1.0, time.monotonic()))
    assert any(f.started >= run.t0 + run.took for f in run.flows)  # after the withdrawal


async def test_3b_director_whose_checks_fail_is_withdrawn_within_1_5s(bgp: Lab) -> None:
    await bgp.wait_both()
    run = await _probe_through(bgp, "unready")
    t0, took, back = run.t0, run.took, run.back
    failed = run.failed()
    withdrawing = [f for f in failed if t0 <= f.started <= t0 + took]
    reannouncing = [f for f in failed if f.started >= back]
    print(f"sessions through the check failure and the recovery: {len(run.flows)}; failed "
          f"while d1 was being withdrawn: {len(withdrawing)}, after its checks passed again "
          f"(re-announced): {len(reannouncing)}; "
          f"{[(round(f.started - t0, 3), f.server, f.error) for f in failed][:6]}")
    assert took <= BOUND_UNREADY
    # Unlike a drain, failing checks change d1's IPVS table, but only after the routers
    # had time to act on the withdrawal (mailha.lvs.withdraw_first keeps the last ready
    # pool meanwhile): no new session may fail while d1 is being withdrawn. Coming back,
    # d1 announces again from min_healthy on, with a table that still differs from d2's
    # until its other real servers pass their checks: a session the router's rehash
    # moves between the directors in that window can meet another server and be reset.
    # None may fail outside that window.
    assert not withdrawing, (withdrawing, bgp.environment(t0, time.monotonic()))
    assert failed == reannouncing, (failed, bgp.environment(t0, time.monotonic()))


async def _withdraw_and_back(bgp: Lab, cause: str, bound: float) -> float:
    """Withdraw d1 by ``cause``, time it, restore it; the withdrawal time."""
    lab = bgp.lab
    await bgp.wait_both()
    t0 = time.monotonic()
    await lab.withdraw("d1", cause)
    try:
        took = await bgp.withdrawn(t0, bound, cause)
        if cause == "mailha killed":  # the device died with the process, nothing else did
            assert "mailha-bgp" not in await netns.link_names(lab.topo.netns("d1"))
    finally:
        back = time.monotonic()
        await lab.restore("d1", cause)
    print(f"{cause}: announced again {await bgp.wait_both(back):.2f} s after the restore "
          "began")
    return took


async def test_4a_cut_link_is_withdrawn_within_1s_by_bfd(bgp: Lab) -> None:
    assert await _withdraw_and_back(bgp, "link cut", BOUND_BFD) <= BOUND_BFD


async def test_4b_killed_bird_is_withdrawn_within_1s(bgp: Lab) -> None:
    assert await _withdraw_and_back(bgp, "BIRD killed", BOUND_BFD) <= BOUND_BFD


async def test_4c_killed_mailha_is_withdrawn_within_2s_without_mailha(bgp: Lab) -> None:
    assert await _withdraw_and_back(bgp, "mailha killed", BOUND_SIGKILL) <= BOUND_SIGKILL


async def test_5_withdrawal_during_50_slow_transfers_keeps_49(bgp: Lab) -> None:
    lab = bgp.lab
    await bgp.wait_both()
    in_data = 0
    all_in = asyncio.Event()

    def entered_data() -> None:
        nonlocal in_data
        in_data += 1
        if in_data == 50:
            all_in.set()

    transfers = asyncio.create_task(run_flows(
        lambda i: slow_transfer(lab.client_netns, lab.sources[i], str(lab.vip), chunks=12,
                                interval=0.5, in_data=entered_data, time_limit=90.0),
        50, concurrency=50))
    try:
        await asyncio.wait_for(all_in.wait(), 60)
        await asyncio.sleep(1.0)  # a second of body through both directors
        t0 = time.monotonic()
        await lab.withdraw("d1", "drained")
        await bgp.withdrawn(t0, BOUND_UNREADY, "drained during slow transfers")
        flows = await transfers
    finally:
        transfers.cancel()
        await lab.restore("d1", "drained")
    carried = await _carried(lab, flows)
    moved = carried["d1"] & carried["d2"]
    completed = sum(f.ok for f in flows)
    print(f"50 slow DATA transfers (6 s of body each), d1 drained mid-way: {completed} got "
          f"250; {len(carried['d1'])} had started through d1, {len(moved)} of them were "
          f"taken over by d2 (sloppy_tcp, same Maglev table); failures: "
          f"{[f.error for f in flows if not f.ok][:5]}")
    assert completed >= 49
    assert moved, "no transfer went through d1 before its withdrawal: nothing was tested"
    await bgp.wait_both()
