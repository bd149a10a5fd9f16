"""The health-check side of the LVS manager: checks and local watches in, pools out.

The scheduler (:class:`~mailha.checkers.scheduler.CheckScheduler`) runs the checks; the
pure :class:`~mailha.checkers.quorum.VirtualServerHealth` of each virtual server turns
their results into pools and events. This adapter wires the two to the rest of the
node: it keeps the last result of every checker for ``mailha status``, counts results
in the metrics, publishes each pool's gauges, logs and notifies the events
(:class:`~mailha.lvs.health_events.HealthEventNotifier`) and tells the manager when a
pool changed (``on_pool_changed``), which is what makes the reconcile loop run.

A reload replaces the checks (:meth:`HealthChecks.replace`) but keeps what they knew for
every unchanged service and real server: a server that is down stays out of the pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from mailha.checkers.listenwatch import ListenerWatch
from mailha.checkers.localwatch import ProcessWatch
from mailha.checkers.quorum import (
    DesiredPool,
    HealthUpdate,
    VirtualServerHealth,
    service_identity,
)
from mailha.checkers.result import CheckResult
from mailha.checkers.scheduler import CheckScheduler
from mailha.config.model import Config, VirtualServer
from mailha.ip import IPAddress
from mailha.lvs.health_events import HealthEventNotifier
from mailha.lvs.names import rs_label
from mailha.metrics import Metrics
from mailha.tasks import cancel_and_wait, stop_requested

log = logging.getLogger("mailha.lvs")

#: Bound on stopping the checks and the local watches.
STOP_TIMEOUT = 3.0

#: (service index, real server index, checker index) -> (last result, wall-clock time)
LastResults = dict[tuple[int, int, int], tuple[CheckResult, float]]


def carried_health(services: Sequence[VirtualServer],
                   before: Sequence[VirtualServerHealth]) -> list[VirtualServerHealth]:
    """New services' health, seeded from the old one where a service is unchanged.

    Matched by :func:`~mailha.checkers.quorum.service_identity`, so a reload that edits
    one virtual server keeps the verdicts, retries and dynamic weights of the others.
    """
    by_key = {h.key: h for h in before}
    return [VirtualServerHealth(vs, by_key.get(service_identity(vs))) for vs in services]


class HealthChecks:
    """Runs the checks and local watches of one configuration's virtual servers."""

    def __init__(self, config: Config, *, metrics: Metrics,
                 local_addresses: Callable[[], Any],
                 on_pool_changed: Callable[[], None]) -> None:
        self.config = config
        self.metrics = metrics
        self.health = [VirtualServerHealth(vs) for vs in config.virtual_servers]
        self.last_results: LastResults = {}
        self.events = HealthEventNotifier(config)
        self._local_addresses = local_addresses
        self._on_pool_changed = on_pool_changed
        self._scheduler: CheckScheduler | None = None
        self._task: asyncio.Task[None] | None = None
        self._watches: list[asyncio.Task[None]] = []
        self._index: dict[int, int] = {}
        #: (service, real server, checker index, ok) -> that outcome's metric children
        self._metric_children: dict[tuple[int, int, int, bool], _CheckMetrics] = {}
        self._stopping = False

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The scheduler's task while checks run, for the daemon's supervisor."""
        return self._task

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the scheduler and the local watches; publish every pool's gauges."""
        self._stopping = False
        self._index = {id(svc): i for i, svc in enumerate(self.health)}
        self._metric_children.clear()
        self._scheduler = CheckScheduler(self.health, self._on_update, on_result=self._on_result,
                                         on_overrun=self._on_overrun)
        self._task = asyncio.create_task(self._scheduler.run(), name="checks")
        for i, svc in enumerate(self.health):
            self._publish_pool(i, svc)
        await self._start_watches()

    async def stop(self, *, shutting_down: bool = True) -> None:
        """Stop the checks; at shutdown (not a reload) announce ``omega``'s events."""
        self._stopping = True
        await cancel_and_wait(self._watches, within=STOP_TIMEOUT, what="local watches")
        self._watches.clear()
        if self._scheduler is None:
            return
        await self._scheduler.stop()
        if self._task is not None:
            await cancel_and_wait([self._task], within=STOP_TIMEOUT, what="health checks")
            self._task = None
        if shutting_down:
            for svc in self.health:
                for event in svc.shutdown():
                    self.events.announce(event)
        self._scheduler = None

    async def replace(self, config: Config) -> None:
        """A reload changed the virtual servers: restart the checks, keeping what they knew."""
        await self.stop(shutting_down=False)
        self.config = config
        self.events.config = config
        self.health = carried_health(config.virtual_servers, self.health)
        self.last_results.clear()
        await self.start()

    async def close(self) -> None:
        """Stop for good, then let running notify scripts finish (bounded)."""
        await self.stop()
        await self.events.close()

    # ------------------------------------------------------------------ local watches

    async def _start_watches(self) -> None:
        """``local_watch`` for every real server that is this node's own address.

        Two watches per server: its master process (pidfd) and its listening socket
        (sock_diag). Each holds the server out while it says "gone"; the server returns
        once neither does and a check passes.
        """
        wanted = [(svc, j, rs) for svc in self.health
                  for j, rs in enumerate(svc.virtual_server.real_servers)
                  if rs.local_watch is not None]
        if not wanted:
            return
        try:
            local: frozenset[IPAddress] = await self._local_addresses()
        except Exception as exc:
            log.warning("local_watch: cannot list this node's addresses (%s); the polled "
                        "checks alone judge its own real servers", exc)
            return
        for svc, j, rs in wanted:
            if rs.ip not in local or rs.local_watch is None:
                continue  # another node's real server: polled checks only
            vs = svc.virtual_server
            label = f"{rs_label(rs, vs)} of {vs.label}"
            self._add_watch("process", ProcessWatch(
                rs.local_watch, self._watch_callback(svc, j, "process")), label)
            port = rs.port if rs.port is not None else vs.port
            if port:
                self._add_watch("listener", ListenerWatch(
                    rs.ip, port, self._watch_callback(svc, j, "listener")), label)
                log.info("local_watch: real server %s follows %s and its listening socket",
                         label, rs.local_watch)
            else:
                log.info("local_watch: real server %s follows %s (no port to watch a "
                         "listener on: a fwmark service)", label, rs.local_watch)

    def _watch_callback(self, svc: VirtualServerHealth, j: int,
                        kind: str) -> Callable[[bool, str], None]:
        vs = svc.virtual_server
        labels = (vs.label, rs_label(vs.real_servers[j], vs), kind)

        def on_change(alive: bool, detail: str) -> None:
            # Logged per watch: after a SIGKILL the listener and the pidfd race, and only
            # the first makes a "down" event; both causes belong in the log.
            log.info("local_watch: %s %s of %s: %s", kind, labels[1], labels[0], detail)
            self.metrics.local_watch_events.labels(*labels, "up" if alive else "down").inc()
            self._on_update(svc, svc.set_watch(j, not alive, detail, kind))

        return on_change

    def _add_watch(self, kind: str, watch: ProcessWatch | ListenerWatch, label: str) -> None:
        self._watches.append(asyncio.create_task(
            self._run_watch(watch, f"{kind} of {label}"), name=f"local watch {kind} {label}"))

    async def _run_watch(self, watch: ProcessWatch | ListenerWatch, label: str) -> None:
        while not self._stopping and not stop_requested():
            try:
                await watch.run()
                return
            except Exception:
                log.exception("local_watch of %s failed; restarting it in 1 s", label)
                await asyncio.sleep(1)

    # ------------------------------------------------------------------ scheduler callbacks

    def _on_result(self, svc: VirtualServerHealth, j: int, k: int, result: CheckResult) -> None:
        i = self._index[id(svc)]
        self.last_results[(i, j, k)] = (result, time.time())
        # The metric children are looked up once per checker and outcome, not per check.
        key = (i, j, k, result.ok)
        counter = self._metric_children.get(key)
        if counter is None:
            counter = self._metric_children[key] = self._check_child(svc, j, k, result.ok)
        counter.inc()
        if not result.ok:
            vs = svc.virtual_server
            rs = vs.real_servers[j]
            checker = rs.checkers[k]
            label = rs_label(rs, vs)
            self.metrics.check_failures.labels(vs.label, label, checker.kind, result.reason).inc()
            if checker.common.log_all_failures or self.config.global_.checker_log_all_failures:
                log.info("%s %s failed: %s", checker.kind, label, result.detail or result.reason)
        counter.duration.observe(result.duration)

    def _check_child(self, svc: VirtualServerHealth, j: int, k: int, ok: bool) -> _CheckMetrics:
        vs = svc.virtual_server
        rs = vs.real_servers[j]
        kind = rs.checkers[k].kind
        m = self.metrics
        return _CheckMetrics(m.check_results.labels(vs.label, rs_label(rs, vs), kind,
                                                    "ok" if ok else "fail"),
                             m.check_duration.labels(kind))

    def _on_overrun(self, svc: VirtualServerHealth, j: int, k: int) -> None:
        vs = svc.virtual_server
        self.metrics.check_overruns.labels(vs.label, rs_label(vs.real_servers[j], vs)).inc()

    def _on_update(self, svc: VirtualServerHealth, update: HealthUpdate) -> None:
        for event in update.events:
            self.events.announce(event)
        if update.pool_changed:
            self._publish_pool(self.health.index(svc), svc)
            self._on_pool_changed()

    def _publish_pool(self, index: int, svc: VirtualServerHealth) -> None:
        vs = svc.virtual_server
        pool: DesiredPool = svc.pool()
        m = self.metrics
        for member in pool.members:
            labels = (vs.label, rs_label(member.real_server, vs))
            m.real_server_up.labels(*labels).set(1 if member.weight else 0)
            m.real_server_weight.labels(*labels).set(member.real_server.weight)
            m.check_overruns.labels(*labels)  # exported at 0 from the start
            m.real_server_effective_weight.labels(*labels).set(
                -1 if member.weight is None else member.weight
            )
        m.virtual_server_quorum_up.labels(vs.label).set(1 if pool.quorum_up else 0)
        m.virtual_server_live_weight.labels(vs.label).set(pool.live_weight)
        m.virtual_server_sorry_active.labels(vs.label).set(1 if pool.sorry_active else 0)


class _CheckMetrics:
    """One checker's result counter for one outcome, and its kind's duration histogram."""

    __slots__ = ("counter", "duration")

    def __init__(self, counter: Any, duration: Any) -> None:
        self.counter = counter
        self.duration = duration

    def inc(self) -> None:
        self.counter.inc()
