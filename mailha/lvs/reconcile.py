"""Keeps the kernel's IPVS table equal to the desired one: on change, and every 5 s.

Three inputs change what the kernel should hold: a check result that changes a pool, a
VRRP transition of the instance a virtual server follows, and a reload. Each marks the
table dirty (:meth:`Reconciler.mark_dirty`); one task observes the kernel, plans the
minimal operations (:func:`mailha.lvs.planner.plan`) and applies them in one pipelined
batch. The same task re-syncs every ``RESYNC_INTERVAL`` seconds even when nothing
changed, so drift (an operator ran ``ipvsadm -C``) is repaired and counted. keepalived
never re-reads the kernel; this is the difference users asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import Any

from mailha.lvs.model import Forward, ObservedTable, ServiceKey
from mailha.lvs.netlink import IpvsNetlink
from mailha.lvs.planner import plan
from mailha.metrics import Metrics
from mailha.tasks import stop_requested

log = logging.getLogger("mailha.lvs")

RESYNC_INTERVAL = 5.0
#: How long a start waits for the first reconcile before it reports READY anyway.
FIRST_RECONCILE_WAIT = 10.0


def normalise_local(observed: ObservedTable, desired: Mapping[Any, Any]) -> dict[Any, Any]:
    """Read a kernel-reported LOCAL forward as the method we asked for.

    Older kernels report a destination whose address is local as "Local" whatever
    method it was given; without this every re-sync would "repair" it.
    """
    table = dict(observed.config())
    for key, vsrv in table.items():
        want = desired.get(key)
        if want is None:
            continue
        fixed = {}
        changed = False
        for dkey, dest in vsrv.destinations.items():
            wd = want.destinations.get(dkey)
            if dest.forward == Forward.LOCAL and wd is not None and wd.forward != Forward.LOCAL:
                dest = replace(dest, forward=wd.forward, tunnel=wd.tunnel)
                changed = True
            fixed[dkey] = dest
        if changed:
            table[key] = type(vsrv)(vsrv.service, fixed)
    return table


def is_drift(changed: int, woken: bool, desired: Mapping[Any, Any],
             last_desired: Mapping[Any, Any] | None) -> bool:
    """A periodic pass that had to change the kernel although the wish had not: drift."""
    return bool(changed) and not woken and desired == last_desired


class Reconciler:
    """The reconcile task of one node; the manager gives it the wish and the owned keys."""

    def __init__(self, *, netlink: Callable[[], IpvsNetlink | None],
                 desired: Callable[[], Mapping[Any, Any]],
                 owned: Callable[[], AbstractSet[ServiceKey]], metrics: Metrics,
                 on_pass: Callable[[], None] = lambda: None,
                 on_reconciled: Callable[[], None] = lambda: None) -> None:
        self._netlink = netlink
        self._desired = desired
        self._owned = owned
        self._on_pass = on_pass
        self.on_reconciled = on_reconciled
        #: Services the last pass left in the kernel (all it wanted, unless it failed):
        #: what the BGP mode's readiness calls "programmed".
        self.in_kernel: frozenset[ServiceKey] = frozenset()
        self.metrics = metrics
        self._dirty = asyncio.Event()
        self._ready = asyncio.Event()
        self._last_desired: Mapping[Any, Any] | None = None
        self._stopping = False

    def mark_dirty(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        """Make :meth:`run` return at its next wake-up (the caller still cancels it)."""
        self._stopping = True
        self._dirty.set()

    async def first_pass(self) -> None:
        """Wait (bounded) for the first reconcile, so READY means the table is right."""
        self._dirty.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_RECONCILE_WAIT):
                await self._ready.wait()

    async def run(self) -> None:
        while not self._stopping and not stop_requested():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESYNC_INTERVAL):
                    await self._dirty.wait()
            if self._stopping or stop_requested():
                return
            woken = self._dirty.is_set()
            self._dirty.clear()
            try:
                desired = self._desired()
                changed = await self.apply(desired)
                if is_drift(changed, woken, desired, self._last_desired):
                    self.metrics.reconcile_drift.inc()
                    log.warning(
                        "IPVS table had drifted from the configuration; repaired (%d operation%s)",
                        changed,
                        "" if changed == 1 else "s",
                    )
                self._last_desired = desired
                self.in_kernel = frozenset(desired)
                self._ready.set()
                self.on_reconciled()
            except Exception as exc:
                log.error("IPVS reconcile failed: %s; retrying", exc)
                self.in_kernel = await self._present(desired)
                self.on_reconciled()
                await asyncio.sleep(1)
                self._dirty.set()

    async def _present(self, desired: Mapping[Any, Any]) -> frozenset[ServiceKey]:
        """After a failed pass: the wanted services that are in the kernel all the same
        (a refused destination does not take its service away); none if unreadable."""
        nl = self._netlink()
        try:
            observed = await nl.observe(with_stats=False) if nl is not None else ()
        except Exception:
            return frozenset()
        return frozenset(key for key in observed if key in desired)

    async def apply(self, desired: Mapping[Any, Any]) -> int:
        """Make the kernel match ``desired`` on the services we own; returns ops applied."""
        nl = self._netlink()
        assert nl is not None
        started = time.monotonic()
        # Counters play no part in planning: skip decoding them.
        observed = await nl.observe(with_stats=False)
        ops = plan(desired, normalise_local(observed, desired), self._owned())
        self._on_pass()
        if not ops:
            return 0
        result = await nl.apply(ops)
        for op in result.applied:
            self.metrics.reconcile_operations.labels(type(op).__name__).inc()
            log.info("ipvs: %s", op.describe())
        for error in result.errors:
            self.metrics.reconcile_errors.inc()
            log.error("ipvs: %s", error)
        self.metrics.reconcile_duration.observe(time.monotonic() - started)
        if result.errors:
            raise RuntimeError(f"{len(result.errors)} IPVS operation(s) refused")
        return len(result.applied)
