"""The check scheduler under a fake clock: warmup, periods, retries, overruns, no stacking."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from mailha.checkers import CheckResult
from mailha.checkers.quorum import EventKind, HealthUpdate, VirtualServerHealth
from mailha.checkers.scheduler import CheckScheduler
from mailha.config.model import Checker, CheckerCommon, RealServer, TcpCheck, VirtualServer


class FakeTime:
    """A virtual clock: ``sleep`` parks the caller until ``run_until`` reaches its time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (self.now + max(delay, 0.0), next(self._seq), future))
        await future

    async def run_until(self, end: float) -> None:
        while True:
            for _ in range(50):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if not self._queue or self._queue[0][0] > end:
                self.now = end
                return
            when, _, future = heapq.heappop(self._queue)
            self.now = when
            if not future.done():
                future.set_result(None)


def server(n: int, **common: object) -> RealServer:
    check = TcpCheck(common=CheckerCommon(**common))  # type: ignore[arg-type]
    return RealServer(ip=IPv4Address(f"10.0.0.{n}"), port=25, checkers=(check,))


def service(*servers: RealServer) -> VirtualServerHealth:
    return VirtualServerHealth(
        VirtualServer(ip=IPv4Address("10.0.0.100"), port=25, real_servers=servers)
    )


Script = Callable[[RealServer, float], tuple[bool, float]]


class Harness:
    def __init__(self, services: list[VirtualServerHealth], script: Script, seed: int = 1):
        self.time = FakeTime()
        self.starts: list[tuple[float, str]] = []
        self.updates: list[HealthUpdate] = []
        self.running = 0
        self.max_running = 0
        self.script = script
        self.scheduler = CheckScheduler(
            services,
            lambda _svc, update: self.updates.append(update),
            run_check=self.run_check,
            clock=self.time.clock,
            sleep=self.time.sleep,
            rng=random.Random(seed),
        )

    async def run_check(self, checker: Checker, rs: RealServer) -> CheckResult:
        self.starts.append((self.time.now, str(rs.ip)))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            ok, duration = self.script(rs, self.time.now)
            if duration:
                await self.time.sleep(duration)
            return CheckResult.success() if ok else CheckResult.failure("connection_refused")
        finally:
            self.running -= 1

    async def run_for(self, seconds: float) -> None:
        task = asyncio.create_task(self.scheduler.run())
        try:
            await self.time.run_until(seconds)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    def events(self) -> list[EventKind]:
        return [e.kind for u in self.updates for e in u.events]


async def test_warmup_spreads_first_checks_over_delay_loop() -> None:
    servers = [server(n, delay_loop=10.0) for n in range(1, 21)]
    harness = Harness([service(*servers)], lambda rs, now: (True, 0.0))
    await harness.run_for(9.999)
    firsts = [t for t, _ in harness.starts]
    assert len(firsts) <= 20
    assert all(0.0 <= t <= 10.0 for t in firsts)
    assert len({round(t, 3) for t in firsts}) > 10  # not in lockstep


async def test_periodic_checks_without_warmup() -> None:
    harness = Harness(
        [service(server(1, delay_loop=5.0, warmup=0.0))], lambda rs, now: (True, 0.5)
    )
    await harness.run_for(21.0)
    assert [t for t, _ in harness.starts] == [0.0, 5.0, 10.0, 15.0, 20.0]
    # start-up update first, then one per check
    assert harness.updates[0].pool_changed and len(harness.updates) == 1 + 5


async def test_retries_then_down_then_up() -> None:
    def script(rs: RealServer, now: float) -> tuple[bool, float]:
        return (now >= 12.0, 0.0)

    harness = Harness(
        [service(server(1, delay_loop=5.0, warmup=0.0, retry=2, delay_before_retry=1.0))],
        script,
    )
    await harness.run_for(13.0)
    # 0 fail (retry 1), 1 fail (retry 2), 2 fail -> DOWN, then every delay_loop: 7, 12 up.
    assert [t for t, _ in harness.starts] == [0.0, 1.0, 2.0, 7.0, 12.0]
    assert harness.events() == [
        EventKind.REAL_SERVER_DOWN,
        EventKind.QUORUM_DOWN,
        EventKind.REAL_SERVER_UP,
        EventKind.QUORUM_UP,
    ]


async def test_overrunning_check_delays_the_next_never_stacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def script(rs: RealServer, now: float) -> tuple[bool, float]:
        return (True, 3.0 if now < 9.0 else 0.5)

    harness = Harness([service(server(1, delay_loop=2.0, warmup=0.0))], script)
    with caplog.at_level(logging.INFO, logger="mailha.checkers.scheduler"):
        await harness.run_for(14.0)
    # 0..3, 3..6, 6..9 overrun; 9..9.5 fits, then back on the 2 s period.
    assert [t for t, _ in harness.starts] == [0.0, 3.0, 6.0, 9.0, 11.0, 13.0]
    assert harness.max_running == 1
    assert harness.scheduler.stats.overruns == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "slot" in warnings[0].getMessage()
    assert any("back on schedule after 3" in r.getMessage() for r in caplog.records)


async def test_a_raising_check_counts_as_failure_and_the_loop_goes_on() -> None:
    calls = 0

    def script(rs: RealServer, now: float) -> tuple[bool, float]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in a checker")
        return (True, 0.0)

    harness = Harness([service(server(1, delay_loop=1.0, warmup=0.0, retry=0))], script)
    await harness.run_for(2.5)
    assert harness.scheduler.stats.errors == 1
    assert harness.events() == [
        EventKind.REAL_SERVER_DOWN,
        EventKind.QUORUM_DOWN,
        EventKind.REAL_SERVER_UP,
        EventKind.QUORUM_UP,
    ]


async def test_every_checker_of_every_server_runs_independently() -> None:
    slow_ip = "10.0.0.2"

    def script(rs: RealServer, now: float) -> tuple[bool, float]:
        return (True, 4.0 if str(rs.ip) == slow_ip else 0.0)

    servers = [server(n, delay_loop=1.0, warmup=0.0) for n in (1, 2)]
    harness = Harness([service(*servers)], script)
    await harness.run_for(4.5)
    fast = [t for t, ip in harness.starts if ip == "10.0.0.1"]
    slow = [t for t, ip in harness.starts if ip == slow_ip]
    assert fast == [0.0, 1.0, 2.0, 3.0, 4.0]  # not held up by its slow neighbour
    assert slow == [0.0, 4.0]
