"""The mail-loss suite: a real relaying client, a steady stream, faults, and the accounting.

"SMTP clients that send to the VIP never lose a message." This module checks that
promise end to end on the seed topology (``SeedLab``: a real Postfix on n1 and n2 that
discards what it accepts):

* :func:`relay_client` — a real Postfix in the client namespace that relays everything to
  ``[VIP]:25`` and retries quickly (:data:`CLIENT_TIMERS`), the way a real MTA rides out a
  failover. It listens on the client's own ``127.0.0.1:25``.
* :class:`Submitter` — a steady stream of messages, each with a unique Message-ID, sent
  at a fixed rate over SMTP to that client Postfix; the wall-clock time of each 250 is
  recorded (the submission time).
* :data:`FAULTS` — the fault catalogue, each a small async function applied to the
  current master (or backup) through an :class:`HaDriver` (mailha or keepalived), and
  :meth:`HaDriver.settle` — wait, bounded, until the cluster is whole again.
* :func:`account` — pure: submissions + what the server nodes' logs say they accepted
  (Message-ID, time of qmgr's "queue active" line) + the fault windows → lost,
  duplicated, and p50/p99/max delay from submission to acceptance per fault kind (each
  message counts for the fault window in which it was submitted).
* :func:`run_mail_loss` — all of it in sequence, for the kernel test and the benchmark.

A message is *delivered* once a server node committed it to its queue (after which it
goes to ``discard:``), *lost* if that never happens by the end of the run after the
client's queue was flushed, *duplicated* if more than one server acceptance carries its
Message-ID (SMTP allows it: a session lost after the final "." but before the 250).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiosmtplib

from lab import netns
from lab.cluster import MailhaCluster, live_destinations
from lab.errors import LabError
from lab.keepalived import Keepalived
from lab.postfix import Postfix, PostfixConfig
from lab.smtpload import _connect, build_message
from lab.topology import SeedTopology
from mailha.tasks import cancel_and_wait

__all__ = [
    "CLIENT_TIMERS",
    "FAULTS",
    "MAXIMAL_BACKOFF",
    "Fault",
    "FaultRecord",
    "FaultWindow",
    "HaDriver",
    "KeepalivedDriver",
    "KindStats",
    "LossReport",
    "MailLossError",
    "MailhaDriver",
    "RunResult",
    "Submission",
    "Submitter",
    "account",
    "fault_plan",
    "format_report",
    "percentile",
    "relay_client",
    "run_mail_loss",
]

# The client's retry behaviour, in seconds. A deferred message is retried after
# min(max(its age, minimal), maximal) backoff, found by a queue scan every
# queue_run_delay; a session that hangs (the peer's link is gone) is given up after the
# smtp_*_timeout below instead of Postfix's default 300-600 s.
CLIENT_TIMERS: dict[str, str] = {
    "queue_run_delay": "3s",
    "minimal_backoff_time": "3s",
    "maximal_backoff_time": "10s",
    "smtp_connect_timeout": "3s",
    "smtp_helo_timeout": "10s",
    "smtp_mail_timeout": "10s",
    "smtp_rcpt_timeout": "10s",
    "smtp_data_init_timeout": "10s",
    "smtp_data_xfer_timeout": "10s",
    "smtp_data_done_timeout": "10s",
    "smtp_rset_timeout": "5s",
    "smtp_quit_timeout": "5s",
}
MAXIMAL_BACKOFF = 10.0
"""``maximal_backoff_time`` of :data:`CLIENT_TIMERS`: the promise is <= 2 x this."""

STEADY = "steady"
"""The fault kind of messages submitted before the first fault."""


class MailLossError(LabError):
    """The mail-loss run could not proceed (the cluster did not settle, ...)."""


# ------------------------------------------------------------------------- client


def relay_client(topo: SeedTopology) -> Postfix:
    """The client namespace's Postfix: takes mail on 127.0.0.1:25, relays it to [VIP]:25."""
    config = PostfixConfig(
        hostname="client.lab.test",
        mynetworks=("127.0.0.0/8",),
        listen=("127.0.0.1:smtp",),
        relayhost=f"[{topo.vip}]:25",
        extra=tuple(CLIENT_TIMERS.items()),
    )
    return Postfix(topo.node_dir(topo.client) / "postfix", config, netns=topo.netns(topo.client))


async def flush(topo: SeedTopology, client: Postfix) -> None:
    """``postqueue -f``: retry every deferred message now."""
    await topo.exec(topo.client, ["postqueue", "-c", str(client.conf_dir), "-f"],
                    time_limit=60.0, check=False)


@dataclass(frozen=True)
class Submission:
    """One message the client Postfix accepted (``submitted``: wall clock of its 250)."""

    message_id: str
    submitted: float


class Submitter:
    """Sends messages at ``rate`` per second to the client Postfix on its loopback.

    Runs until :meth:`finish` was called *and* at least ``minimum`` messages went out, so
    the stream covers every fault however long the faults take. One SMTP session is
    reused; a message the local Postfix does not take is retried (it is never faulted).
    """

    def __init__(self, topo: SeedTopology, *, rate: float, minimum: int, port: int = 25) -> None:
        if rate <= 0 or minimum < 0:
            raise MailLossError("invalid submitter", f"rate={rate} minimum={minimum}")
        self.topo = topo
        self.rate = rate
        self.minimum = minimum
        self.port = port
        self.run_id = uuid.uuid4().hex[:10]
        self.submissions: list[Submission] = []
        self.errors = 0
        self._finish = asyncio.Event()

    def finish(self) -> None:
        self._finish.set()

    async def run(self) -> list[Submission]:
        loop = asyncio.get_running_loop()
        ns = self.topo.netns(self.topo.client)
        start = loop.time()
        smtp: aiosmtplib.SMTP | None = None
        index = 0
        try:
            while not (self._finish.is_set() and index >= self.minimum):
                delay = start + index / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                mid = f"<{self.run_id}.{index}@loss.lab>"
                message = build_message(mid, "load@lab.test", "sink@lab.test")
                while True:
                    try:
                        if smtp is None or not smtp.is_connected:
                            smtp = await _connect("127.0.0.1", self.port, ns, "submit.lab.test",
                                                  30.0)
                        async with asyncio.timeout(30.0):
                            await smtp.sendmail("load@lab.test", ["sink@lab.test"], message)
                        break
                    except (OSError, TimeoutError, aiosmtplib.SMTPException):
                        self.errors += 1
                        if smtp is not None:
                            smtp.close()
                            smtp = None
                        await asyncio.sleep(0.2)
                self.submissions.append(Submission(mid, time.time()))
                index += 1
        finally:
            if smtp is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await smtp.quit()
                smtp.close()
        return self.submissions


# ------------------------------------------------------------------------- drivers


class HaDriver(Protocol):
    """What a fault needs from the HA software under test (mailha or keepalived)."""

    name: str
    topo: SeedTopology
    postfix: Mapping[str, Postfix]

    async def masters(self) -> list[str]: ...
    async def settle(self, time_limit: float) -> str: ...
    async def crash(self, node: str) -> None: ...
    async def stop(self, node: str) -> None: ...
    async def start(self, node: str) -> None: ...
    async def reload(self, node: str) -> str: ...
    def signal(self, node: str, sig: int) -> None: ...


async def _poll(what: str, test: Callable[[], Awaitable[bool]], time_limit: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while not await test():
        if loop.time() > deadline:
            raise MailLossError("timed out", f"after {time_limit:g}s waiting for {what}")
        await asyncio.sleep(0.1)


STABLE = 4.0
"""A settled cluster stays whole this long (s): more than VRRP's master-down interval at
advert_int 1 (3 x 1 + skew), so a preemption still to come is not taken for calm."""


async def _steady(what: str, test: Callable[[], Awaitable[bool]], time_limit: float) -> None:
    """Wait until ``test`` holds continuously for :data:`STABLE` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    since: float | None = None
    while True:
        now = loop.time()
        if await test():
            since = now if since is None else since
            if now - since >= STABLE:
                return
        else:
            since = None
        if now > deadline:
            raise MailLossError("timed out", f"after {time_limit:g}s waiting for {what}")
        await asyncio.sleep(0.1)


class MailhaDriver:
    """mailha on both nodes (:class:`MailhaCluster`), with or without IPVS."""

    def __init__(self, cluster: MailhaCluster, postfix: Mapping[str, Postfix]) -> None:
        self.cluster = cluster
        self.topo = cluster.topo
        self.postfix = postfix
        self.ipvs = cluster.options.ipvs
        self.name = "mailha, IPVS all-in-one DR" if self.ipvs else "mailha, active/passive"

    async def masters(self) -> list[str]:
        return await self.cluster.masters()

    async def settle(self, time_limit: float) -> str:
        """One master; with IPVS its table has both real servers, the backup's none."""
        want = {f"{self.topo.address(n)}:25" for n in self.topo.servers}
        seen = ""

        async def whole() -> bool:
            nonlocal seen
            masters = await self.masters()
            if len(masters) != 1 or not all(pf.running for pf in self.postfix.values()):
                seen = f"masters {masters}"
                return False
            if not self.ipvs:
                return True
            tables = {n: await live_destinations(self.topo, n) for n in self.topo.servers}
            seen = f"masters {masters}, IPVS {tables}"
            return all(t == (want if n == masters[0] else set()) for n, t in tables.items())

        try:
            await _steady("the cluster to settle", whole, time_limit)
        except MailLossError as exc:
            raise MailLossError("not settled", f"{exc.args[-1]}: {seen}") from None
        return (await self.masters())[0]

    async def crash(self, node: str) -> None:
        self.cluster.kill(node)

    async def stop(self, node: str) -> None:
        await self.cluster.stop(node)

    async def start(self, node: str) -> None:
        await self.cluster.start(node, time_limit=120.0)

    async def reload(self, node: str) -> str:
        """Flip the peer real server's weight (1 <-> 2), rewrite both configs, SIGHUP both."""
        peer = next(n for n in self.topo.servers if n != node)
        weight = 1 if self.cluster.options.weights.get(peer, 1) != 1 else 2
        self.cluster.options = self.cluster.with_options(weights={peer: weight})
        self.cluster.write_configs()
        for n in self.topo.servers:
            await self.cluster.reload(n)
        return f"{peer} weight {weight}"

    def signal(self, node: str, sig: int) -> None:
        self.cluster.processes[node].send_signal(sig)


class KeepalivedDriver:
    """keepalived's seed setup (VRRP only, active/passive) on both nodes."""

    name = "keepalived seed, active/passive"

    def __init__(self, topo: SeedTopology, keepalived: Mapping[str, Keepalived],
                 postfix: Mapping[str, Postfix]) -> None:
        self.topo = topo
        self.keepalived = keepalived
        self.postfix = postfix

    async def masters(self) -> list[str]:
        return await self.topo.holders(self.topo.vip)

    async def settle(self, time_limit: float) -> str:
        async def whole() -> bool:
            return (len(await self.masters()) == 1
                    and all(pf.running for pf in self.postfix.values()))

        await _steady("one VIP holder", whole, time_limit)
        return (await self.masters())[0]

    async def crash(self, node: str) -> None:
        self.keepalived[node].kill()

    async def stop(self, node: str) -> None:
        await self.keepalived[node].stop()

    async def start(self, node: str) -> None:
        await self.keepalived[node].start()

    async def reload(self, node: str) -> str:
        for ka in self.keepalived.values():
            ka.send_signal(signal.SIGHUP)
        return "config unchanged (the seed has no virtual server)"

    def signal(self, node: str, sig: int) -> None:
        self.keepalived[node].send_signal(sig)


# ------------------------------------------------------------------------- faults


FaultFn = Callable[[HaDriver, str, str], Awaitable[str]]


@dataclass(frozen=True)
class Fault:
    """A fault kind: ``apply(driver, master, backup)`` injects it and undoes it."""

    kind: str
    apply: FaultFn


HOLD = 5.0
"""How long a fault without an observable end (Postfix stopped, a freeze) lasts, in s."""
REACT = 60.0
"""Bound on waiting for the cluster's reaction to a fault (a new master, ...)."""


async def _new_master(d: HaDriver, node: str, *, only: bool = True) -> None:
    """Wait until ``node`` is master (the only one, unless the old one crashed holding it)."""
    async def moved() -> bool:
        masters = await d.masters()
        return masters == [node] if only else node in masters

    await _poll(f"{node} to become {'the only' if only else 'a'} master", moved, REACT)


async def link_flap(d: HaDriver, master: str, backup: str) -> str:
    await d.topo.link_down(master)
    try:
        await _new_master(d, backup)
    finally:
        await d.topo.link_up(master)
    return f"{master} link down until {backup} was master, up"


async def kill_daemon(d: HaDriver, master: str, backup: str) -> str:
    await d.crash(master)
    await _new_master(d, backup, only=False)  # a SIGKILLed daemon leaves its VIP behind
    await d.start(master)
    return f"SIGKILL on {master}, {backup} took over, {master} restarted"


async def _postfix_stop(d: HaDriver, node: str) -> str:
    await d.postfix[node].stop(time_limit=30.0)
    await asyncio.sleep(HOLD)  # the fault's duration, not a wait for a condition
    await d.postfix[node].start(time_limit=180.0)
    return f"postfix stop on {node}, {HOLD:g}s, start"


async def postfix_master(d: HaDriver, master: str, backup: str) -> str:
    return await _postfix_stop(d, master)


async def postfix_backup(d: HaDriver, master: str, backup: str) -> str:
    return await _postfix_stop(d, backup)


async def clean_restart(d: HaDriver, master: str, backup: str) -> str:
    await d.stop(master)
    await _new_master(d, backup)
    await d.start(master)
    return f"clean stop on {master}, {backup} took over, {master} started"


async def reload_weight(d: HaDriver, master: str, backup: str) -> str:
    return "SIGHUP: " + await d.reload(master)


async def _isolate(d: HaDriver, on: bool) -> None:
    """Isolate (or rejoin) the server nodes' bridge ports from each other.

    Isolated bridge ports forward only to non-isolated ones: each node still reaches the
    client and the client both nodes, but the nodes no longer hear each other at all
    (adverts, health checks, direct-routed packets): a partition between the two.
    """
    for node in d.topo.servers:
        await netns.run(["bridge", "link", "set", "dev", d.topo.spec.bridge_port(node),
                         "isolated", "on" if on else "off"],
                        netns=d.topo.spec.bridge_netns, time_limit=30.0)


async def split_brain(d: HaDriver, master: str, backup: str) -> str:
    await _isolate(d, True)
    try:
        async def both() -> bool:
            return len(await d.masters()) == 2

        await _poll("both nodes to be master", both, REACT)
    finally:
        await _isolate(d, False)
    return "nodes isolated from each other on the bridge until both were master, healed"


async def freeze(d: HaDriver, master: str, backup: str) -> str:
    d.signal(master, signal.SIGSTOP)
    try:
        await asyncio.sleep(HOLD)  # the freeze's length
    finally:
        d.signal(master, signal.SIGCONT)
    return f"SIGSTOP of {master}'s daemon for {HOLD:g}s, SIGCONT"


FAULTS: tuple[Fault, ...] = (
    Fault("link down/up master", link_flap),
    Fault("SIGKILL master + restart", kill_daemon),
    Fault("postfix stop/start master", postfix_master),
    Fault("postfix stop/start backup", postfix_backup),
    Fault("clean stop/start master", clean_restart),
    Fault("SIGHUP reload (weight)", reload_weight),
    Fault("split brain + heal", split_brain),
    Fault("freeze master 5s", freeze),
)


def fault_plan(count: int, kinds: Sequence[Fault] = FAULTS) -> list[Fault]:
    """``count`` faults cycling through ``kinds`` in order."""
    return [kinds[i % len(kinds)] for i in range(count)]


# ----------------------------------------------------------------------- accounting


@dataclass(frozen=True)
class FaultWindow:
    """Messages submitted from ``start`` (wall clock) until the next window count here."""

    kind: str
    start: float


@dataclass(frozen=True)
class KindStats:
    kind: str
    messages: int
    lost: int
    duplicated: int
    p50: float
    p99: float
    max: float


@dataclass(frozen=True)
class LossReport:
    submitted: int
    delivered: int
    lost: tuple[str, ...]
    duplicated: Mapping[str, int]  # Message-ID -> extra acceptances
    per_kind: tuple[KindStats, ...]
    worst: tuple[tuple[str, float, str], ...]  # (Message-ID, delay, kind), longest first

    @property
    def max_delay(self) -> float:
        return self.worst[0][1] if self.worst else 0.0

    @property
    def duplicates(self) -> int:
        return sum(self.duplicated.values())


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least 1
    return ordered[min(int(rank), len(ordered)) - 1]


def account(
    submissions: Sequence[Submission],
    accepted: Iterable[tuple[str | None, float | None]],
    windows: Sequence[FaultWindow],
    *,
    worst: int = 5,
) -> LossReport:
    """Account for every submitted message by Message-ID.

    ``accepted``: (Message-ID, wall-clock time) of every acceptance on any server node;
    ids not submitted in this run are ignored. A message's delay is from its submission
    to its first acceptance (never negative: log stamps may have 1 s resolution). It is
    attributed to the last window that started at or before its submission
    (:data:`STEADY` before the first).
    """
    mine = {s.message_id for s in submissions}
    first: dict[str, float] = {}
    seen: Counter[str] = Counter()
    for mid, at in accepted:
        if mid is None or mid not in mine:
            continue
        seen[mid] += 1
        stamp = at if at is not None else float("inf")
        if mid not in first or stamp < first[mid]:
            first[mid] = stamp
    order = sorted(windows, key=lambda w: w.start)
    kinds = list(dict.fromkeys([STEADY, *(w.kind for w in order)]))
    delays: dict[str, list[float]] = {k: [] for k in kinds}
    counts: Counter[str] = Counter()
    lost_by: Counter[str] = Counter()
    dup_by: Counter[str] = Counter()
    lost: list[str] = []
    timed: list[tuple[str, float, str]] = []
    for sub in submissions:
        kind = STEADY
        for w in order:
            if w.start <= sub.submitted:
                kind = w.kind
            else:
                break
        counts[kind] += 1
        if sub.message_id not in first:
            lost.append(sub.message_id)
            lost_by[kind] += 1
            continue
        dup_by[kind] += seen[sub.message_id] - 1
        delay = max(0.0, first[sub.message_id] - sub.submitted)
        delays[kind].append(delay)
        timed.append((sub.message_id, delay, kind))
    per_kind = tuple(
        KindStats(k, counts[k], lost_by[k], dup_by[k], percentile(delays[k], 50),
                  percentile(delays[k], 99), max(delays[k], default=0.0))
        for k in kinds if counts[k]
    )
    timed.sort(key=lambda t: -t[1])
    return LossReport(
        submitted=len(submissions),
        delivered=len(first),
        lost=tuple(lost),
        duplicated={m: c - 1 for m, c in seen.items() if c > 1},
        per_kind=per_kind,
        worst=tuple(timed[:worst]),
    )


def format_report(report: LossReport, title: str) -> str:
    """The per-fault-kind table (delays in seconds)."""
    head = (f"{'fault kind (window of submission)':<34} | {'msgs':>5} | {'lost':>4} |"
            f" {'dup':>3} | {'p50 s':>6} | {'p99 s':>6} | {'max s':>6}")
    lines = [title, head, "-" * len(head)]
    for k in report.per_kind:
        lines.append(f"{k.kind:<34} | {k.messages:5d} | {k.lost:4d} | {k.duplicated:3d} |"
                     f" {k.p50:6.2f} | {k.p99:6.2f} | {k.max:6.2f}")
    lines.append(f"{'all':<34} | {report.submitted:5d} | {len(report.lost):4d} |"
                 f" {report.duplicates:3d} |        |        | {report.max_delay:6.2f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class FaultRecord:
    kind: str
    master: str
    detail: str
    started: float  # wall clock
    applied_s: float
    settle_s: float


@dataclass
class RunResult:
    driver: str
    report: LossReport
    faults: list[FaultRecord] = field(default_factory=list)
    submit_errors: int = 0
    elapsed: float = 0.0
    flush_s: float = 0.0

    def fault_lines(self) -> list[str]:
        return [f"  {i + 1:2d}. {f.kind:<27} on {f.master}: {f.detail}"
                f" ({f.applied_s:.1f}s, settled {f.settle_s:.1f}s later)"
                for i, f in enumerate(self.faults)]


WATCH_EVERY = 60.0
"""A fault step still running after this long (s) logs where it is, and again after as long."""


@contextlib.asynccontextmanager
async def _watched(
    step: str, driver: HaDriver, log: Callable[[str], object]
) -> AsyncIterator[None]:
    """Run the body; if it runs past :data:`WATCH_EVERY`, log its stack and the cluster's
    state every :data:`WATCH_EVERY` s, so a stalled run says where it stalled."""
    body = asyncio.current_task()
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def watch() -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:  # a diagnostic must not fail the run
                async with asyncio.timeout(10.0):
                    masters = await driver.masters()
            except Exception as exc:
                masters = [f"unknown ({exc!r})"]
            running = {n: pf.running for n, pf in driver.postfix.items()}
            frames = body.get_stack() if body is not None else []
            where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
            log(f"  still in {step} after {loop.time() - started:.0f}s: masters {masters},"
                f" postfix running {running}; at {where}")

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        await cancel_and_wait([watcher], within=5.0, what="the stall watcher")


def server_acceptances(postfix: Mapping[str, Postfix]) -> list[tuple[str | None, float | None]]:
    return [(m.message_id, m.logged_at) for pf in postfix.values() for m in pf.received()]


async def run_mail_loss(
    driver: HaDriver,
    client: Postfix,
    faults: Sequence[Fault],
    *,
    rate: float,
    minimum: int,
    lead_in: float = 5.0,
    settle_limit: float = 120.0,
    fault_limit: float = 600.0,
    drain_limit: float = 180.0,
    log: Callable[[str], object] = print,
) -> RunResult:
    """Stream mail through ``client`` while ``faults`` are injected one after another.

    Each fault starts once the cluster has settled from the previous one; the stream
    runs ``lead_in`` s before the first fault and goes on until ``minimum`` messages are
    in (what is submitted after the last fault settled counts as steady state). Then
    the client's queue is flushed and drained (bounded by ``drain_limit``) and every
    message is accounted for in the server nodes' logs. A fault that takes over
    ``fault_limit`` s is an error; a step that runs long says so, with what it awaits.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    topo = driver.topo
    await driver.settle(settle_limit)
    submitter = Submitter(topo, rate=rate, minimum=minimum)
    stream = asyncio.create_task(submitter.run())
    records: list[FaultRecord] = []
    windows: list[FaultWindow] = []
    try:
        await asyncio.sleep(lead_in)  # a calm stretch first: the steady-state baseline
        for fault in faults:
            if stream.done():
                stream.result()  # raise what stopped it
            master = await driver.settle(settle_limit)
            backup = next(n for n in topo.servers if n != master)
            wall, t0 = time.time(), loop.time()
            windows.append(FaultWindow(fault.kind, wall))
            step = f"fault {len(records) + 1}/{len(faults)} {fault.kind} on {master}"
            async with _watched(step, driver, log), asyncio.timeout(fault_limit):
                detail = await fault.apply(driver, master, backup)
            t1 = loop.time()
            async with _watched(f"settling after {step}", driver, log):
                await driver.settle(settle_limit)
            t2 = loop.time()
            records.append(FaultRecord(fault.kind, master, detail, wall, t1 - t0, t2 - t1))
            log(f"  fault {len(records)}/{len(faults)} {fault.kind} on {master}: {detail};"
                f" {t1 - t0:.1f}s + settled in {t2 - t1:.1f}s;"
                f" {len(submitter.submissions)} messages submitted")
        # What is submitted after the last fault settled is steady state again.
        windows.append(FaultWindow(STEADY, time.time()))
        submitter.finish()
        submissions = await stream
    finally:
        if not stream.done():
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream
    # Drain: flush the client's queue until it is empty and every message is accounted.
    t_flush = loop.time()
    mine = {s.message_id for s in submissions}

    async def drained() -> bool:
        if client.queue_length() > 0:
            await flush(topo, client)
            return False
        got = {mid for mid, _ in server_acceptances(driver.postfix)}
        return mine <= got

    with contextlib.suppress(MailLossError):  # what is still missing is counted as lost
        await _poll("the client's queue to drain", drained, drain_limit)
    await asyncio.sleep(1.0)  # the servers' logs are written asynchronously
    report = account(submissions, server_acceptances(driver.postfix), windows)
    return RunResult(driver.name, report, records, submitter.errors,
                     loop.time() - started, loop.time() - t_flush)


def trace(client: Postfix, message_id: str) -> list[str]:
    """The client's log lines about ``message_id`` (for a lost message's post-mortem)."""
    text = client.log_text()
    qids = {line.split(": ")[0].rsplit(" ", 1)[-1]
            for line in text.splitlines() if f"message-id={message_id}" in line}
    return [line for line in text.splitlines() if any(f" {q}: " in line for q in qids)]

