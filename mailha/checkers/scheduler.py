"""Run every checker on its own timer and feed the results to the pure health state.

One task per checker, all on the daemon's event loop. Each task waits a random warmup
(so that checks configured alike do not fire in lockstep), then loops: run the check,
hand the result to :class:`~.quorum.VirtualServerHealth`, report the update, and sleep
until ``start + next_delay`` (``delay_loop``, or ``delay_before_retry`` while retrying),
measured from the start of the check as keepalived does.

Checks never stack: a check that outlives its slot delays the next one, which then
starts as soon as it finishes. That is an *overrun*; it is counted, and logged once per
streak (and once when the checker is back on schedule) rather than at every check.

Time is injected (``clock`` and ``sleep``), so tests drive the scheduler with a fake
clock; production uses :func:`time.monotonic` and :func:`asyncio.sleep`.

Stopping does not trust one cancellation: on Python 3.11 a checker task can lose it
inside aiosmtplib's ``wait_for`` (see :mod:`mailha.tasks`). The scheduler keeps an
explicit stop state that every checker loop reads at each turn, re-cancels its tasks
until they are done, and bounds the wait; no TaskGroup, whose exit waits for ever on a
child that swallowed its one cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mailha.config.model import Checker, RealServer
from mailha.tasks import cancel_and_wait, stop_requested

from . import run_checker
from .quorum import HealthUpdate, VirtualServerHealth
from .result import CheckResult

__all__ = ["STOP_TIMEOUT", "CheckScheduler", "SchedulerStats"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
#: How long stopping waits for checker tasks before giving up on them (and logging it).
STOP_TIMEOUT = 2.0

Sleep = Callable[[float], Awaitable[None]]
CheckRunner = Callable[[Checker, RealServer], Awaitable[CheckResult]]
UpdateCallback = Callable[[VirtualServerHealth, HealthUpdate], None]
#: (service, real server index, checker index, result): indexes, because two checkers
#: configured alike compare equal and only their position tells them apart.
ResultCallback = Callable[[VirtualServerHealth, int, int, CheckResult], None]
OverrunCallback = Callable[[VirtualServerHealth, int, int], None]


@dataclass
class SchedulerStats:
    """Counters for metrics; plain integers the event loop updates in place."""

    checks: int = 0
    failures: int = 0
    overruns: int = 0
    errors: int = 0  # the check itself raised: a bug, reported as a failure


def warmup_delay(checker: Checker, rng: random.Random) -> float:
    """keepalived's warmup: random in [0, warmup], default [0, delay_loop]; 0 disables."""
    common = checker.common
    limit = common.delay_loop if common.warmup is None else common.warmup
    return rng.uniform(0.0, limit) if limit > 0 else 0.0


class CheckScheduler:
    """Drive all checkers of ``services`` until cancelled.

    ``on_update`` receives every :class:`HealthUpdate` (events to announce, and whether
    the desired pool changed: read it with ``service.pool()``), first one per service
    at start with the start-up events. ``on_result`` (optional) sees every raw result,
    for metrics. Both are called synchronously on the loop and must not block.

    On shutdown, call :meth:`stop` (or cancel :meth:`run`: it stops its checkers for
    certain before it ends) and collect ``service.shutdown()`` events (omega).
    """

    def __init__(
        self,
        services: Sequence[VirtualServerHealth],
        on_update: UpdateCallback,
        *,
        on_result: ResultCallback | None = None,
        on_overrun: OverrunCallback | None = None,
        run_check: CheckRunner = run_checker,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.services = tuple(services)
        self.stats = SchedulerStats()
        self._on_update = on_update
        self._on_result = on_result
        self._on_overrun = on_overrun
        self._run_check = run_check
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[Any] | None = None

    async def run(self) -> None:
        """Start every checker and run until stopped or cancelled.

        Ends only when every checker task has ended (or, at worst, after
        :data:`STOP_TIMEOUT` with the stragglers logged). A checker that raises (a bug
        in a callback: check failures are results, not exceptions) stops the others,
        and its exception propagates, so the task running this dies visibly.
        """
        self._runner = asyncio.current_task()
        for service in self.services:
            self._on_update(service, HealthUpdate(0.0, service.start(), pool_changed=True))
        for service in self.services:
            for rs_index, rs in enumerate(service.real_servers):
                for checker_index in range(len(rs.checkers)):
                    self._tasks.add(asyncio.create_task(
                        self._drive(service, rs_index, checker_index),
                        name=f"check {service.virtual_server.label} {rs.real_server.ip}"
                        f" #{checker_index}",
                    ))
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            self._stopping = True
            await cancel_and_wait(self._tasks, within=STOP_TIMEOUT, what="health checks")
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def stop(self, within: float = STOP_TIMEOUT) -> None:
        """Stop every checker: no check starts after this returns (bounded by ``within``)."""
        self._stopping = True
        tasks: set[asyncio.Task[Any]] = set(self._tasks)
        if self._runner is not None and self._runner is not asyncio.current_task():
            tasks.add(self._runner)
        await cancel_and_wait(tasks, within=within, what="health checks")

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _should_stop(self) -> bool:
        if stop_requested():  # a cancellation an await inside the check swallowed
            raise asyncio.CancelledError
        return self._stopping

    async def _drive(self, service: VirtualServerHealth, rs_index: int, index: int) -> None:
        real_server = service.real_servers[rs_index].real_server
        checker = real_server.checkers[index]
        name = f"{checker.kind} of {real_server.ip}:{real_server.port or 0}"
        await self._sleep(warmup_delay(checker, self._rng))
        overrunning = 0
        failing_with_error = False
        while not self._should_stop():
            started = self._clock()
            try:
                result = await self._run_check(checker, real_server)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.errors += 1
                if not failing_with_error:
                    log.exception("%s raised; counting it as a failure", name)
                failing_with_error = True
                result = CheckResult.failure(
                    "checker_error", f"{type(exc).__name__}: {exc}", self._clock() - started
                )
            else:
                failing_with_error = False
            if self._should_stop():
                return
            self.stats.checks += 1
            if not result.ok:
                self.stats.failures += 1
            if self._on_result is not None:
                self._on_result(service, rs_index, index, result)
            update = service.record(rs_index, index, result)
            self._on_update(service, update)
            wait = started + update.next_delay - self._clock()
            if wait <= 0:
                self.stats.overruns += 1
                overrunning += 1
                if self._on_overrun is not None:
                    self._on_overrun(service, rs_index, index)
                if overrunning == 1:
                    log.warning(
                        "%s took %.3fs, beyond its %.3gs slot: next check starts late",
                        name,
                        self._clock() - started,
                        update.next_delay,
                    )
                wait = 0.0
            elif overrunning:
                log.info("%s back on schedule after %d overrun(s)", name, overrunning)
                overrunning = 0
            await self._sleep(wait)
