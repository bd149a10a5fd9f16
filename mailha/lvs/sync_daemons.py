"""Runs the kernel's connection-sync daemons the configuration and VRRP state want.

The choice is pure (:mod:`mailha.lvs.syncd`); this adapter reads the kernel, applies the
difference over netlink, and serialises runs: VRRP transitions can come faster than
the kernel answers, and the last run to finish must leave the right daemons. Failures
are logged, never raised: load balancing goes on without sync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mailha.config.model import Config
from mailha.lvs.netlink import DaemonInfo, DaemonState, IpvsNetlink
from mailha.lvs.syncd import sync_daemon_changes, wanted_sync_daemons
from mailha.tasks import cancel_and_wait
from mailha.vrrp.events import State

log = logging.getLogger("mailha.lvs")


class SyncDaemons:
    """The sync daemons of one node; :meth:`apply` after a start, transition or reload."""

    def __init__(self, netlink: Callable[[], IpvsNetlink | None]) -> None:
        self._netlink = netlink
        self._lock = asyncio.Lock()
        self._owned: set[DaemonState] = set()
        self._closed = False
        self._running: set[asyncio.Task[Any]] = set()

    def managed(self, config: Config) -> set[DaemonState]:
        """With ``lvs_sync_daemon`` set, both kernel daemons are ours (as for keepalived);
        without it, only the ones this node started."""
        if config.global_.lvs_sync_daemon is not None:
            return {"master", "backup"}
        return set(self._owned)

    def wanted(self, config: Config,
               instance_states: Mapping[str, State]) -> dict[DaemonState, DaemonInfo]:
        cfg = config.global_.lvs_sync_daemon
        if cfg is None:
            return {}
        state = None if cfg.instance is None else instance_states.get(cfg.instance)
        vrid_of = lambda name: config.instance(name).virtual_router_id  # noqa: E731
        return {d.state: d for d in wanted_sync_daemons(cfg, vrid_of, state)}

    async def apply(self, config: Config, instance_states: Mapping[str, State], *,
                    also: set[DaemonState] | None = None) -> None:
        """Make the kernel run what ``config`` wants; ``also``: states an old config owned."""
        await self._apply(self.wanted(config, instance_states),
                          self.managed(config) | (also or set()))

    def apply_soon(self, config: Config, instance_states: Mapping[str, State]) -> None:
        """:meth:`apply` in the background (from a VRRP transition callback)."""
        task = asyncio.create_task(self.apply(config, instance_states),
                                   name="ipvs sync daemons")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def close(self, config: Config) -> None:
        """Stop every daemon this node manages; later transitions start nothing."""
        self._closed = True
        if self._running:  # let a change in flight finish: its netlink reply is owed
            _, late = await asyncio.wait(set(self._running), timeout=3)
            await cancel_and_wait(late, within=1, what="IPVS sync daemon changes")
        await self._apply({}, self.managed(config))

    async def _apply(self, wanted: Mapping[DaemonState, DaemonInfo],
                     managed: set[DaemonState]) -> None:
        async with self._lock:
            nl = self._netlink()
            if nl is None or (self._closed and wanted):
                return
            try:
                changes = sync_daemon_changes(await nl.daemons(), wanted, managed)
                for have in changes.stop:
                    await nl.stop_daemon(have.state)
                    log.info("stopped the IPVS %s", have.describe())
                self._owned -= managed
                for want in changes.start:
                    await nl.start_daemon(
                        want.state,
                        interface=want.interface,
                        sync_id=want.sync_id,
                        maxlen=want.maxlen,
                        port=want.port,
                        ttl=want.ttl,
                        group=want.group,
                    )
                    log.info("started the IPVS %s", want.describe())
                self._owned |= wanted.keys()
            except Exception as exc:
                log.error("IPVS sync daemon: %s", exc)
