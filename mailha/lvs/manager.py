"""The LVS side of a node: health checks -> desired table -> plan -> netlink, kept in sync.

The manager composes one module per concern and owns what joins them:

* :mod:`mailha.lvs.health` runs the checks and local watches, and says when a pool
  changed; :mod:`mailha.lvs.health_events` logs and notifies their events;
* :mod:`mailha.lvs.reconcile` keeps the kernel equal to the wish (on change and every
  5 s); the wish itself is pure (:func:`mailha.lvs.desired.desired_table` over the
  pools, the drains and the VRRP states);
* :mod:`mailha.lvs.host` holds the DR role (VIPs on ``lo``, ARP sysctls) and IPVS's
  fail-fast and takeover (sloppy) sysctls, restored on stop;
* :mod:`mailha.lvs.sync_daemons` runs the kernel's connection-sync daemons;
* :mod:`mailha.lvs.status` turns one kernel read into the status reply and metrics.

Drains (``mailha drain``) live here, because they outlive the checks across reloads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mailha.bgp.readiness import ServiceInput
from mailha.checkers.quorum import DesiredPool, service_identity
from mailha.config.model import Config, RealServer, VirtualServer
from mailha.ip import IPAddress
from mailha.lvs.desired import (
    desired_table,
    is_programmed,
    maglev_keys,
    owned_keys,
    service_keys,
)
from mailha.lvs.drain import DrainTarget, drain_pool
from mailha.lvs.health import HealthChecks
from mailha.lvs.host import HostRole
from mailha.lvs.maglev import FingerprintMemo
from mailha.lvs.model import ObservedTable, ServiceKey
from mailha.lvs.names import rs_label
from mailha.lvs.netlink import IpvsNetlink
from mailha.lvs.reconcile import Reconciler
from mailha.lvs.status import (
    LvsStatus,
    check_status,
    ipvs_snapshot,
    ipvs_status,
    maglev_services,
)
from mailha.lvs.sync_daemons import SyncDaemons
from mailha.lvs.withdraw_first import PoolHold
from mailha.metrics import Metrics
from mailha.net.addresses import Addresses
from mailha.tasks import cancel_and_wait
from mailha.vrrp.events import State

log = logging.getLogger("mailha.lvs")

#: Bound on stopping the manager's own loops (checks, reconcile) before withdrawing.
STOP_TIMEOUT = 3.0


class LvsManager:
    """Owns the IPVS services of one configuration; start, feed VRRP states, stop."""

    def __init__(self, config: Config, *, metrics: Metrics, addresses: Addresses) -> None:
        self.config = config
        self.metrics = metrics
        self.addresses = addresses
        self.nl: IpvsNetlink | None = None
        self.instance_states: dict[str, State] = {}
        self._owned = owned_keys(config)
        self.host = HostRole(config, addresses)
        self.sync = SyncDaemons(lambda: self.nl)
        self.reconciler = Reconciler(netlink=lambda: self.nl, desired=self.desired,
                                     owned=lambda: self._owned, metrics=metrics,
                                     on_pass=self._update_programmed)
        self.checks = HealthChecks(config, metrics=metrics,
                                   local_addresses=lambda: addresses.local_addresses(),
                                   on_pool_changed=self.reconciler.mark_dirty)
        self._reconcile_task: asyncio.Task[None] | None = None
        self._fingerprint_memo = FingerprintMemo()
        #: BGP services' withdraw-first holds, by service identity (kept across reloads).
        self._holds: dict[object, PoolHold] = {}
        self._hold_wakeups: dict[object, float] = {}
        #: Drained real servers and since when (kept across reloads).
        self.drained: dict[DrainTarget, float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        g = self.config.global_
        self.nl = await IpvsNetlink.open()
        if g.lvs_flush:
            log.warning("lvs_flush: deleting every IPVS service at start, foreign ones too")
            await self.nl.flush()
        if g.lvs_timeouts is not None:
            t = g.lvs_timeouts
            await self.nl.set_timeouts(tcp=t.tcp, tcp_fin=t.tcpfin, udp=t.udp)
        if g.lvs_sync_daemon is not None:
            await self.sync.apply(self.config, self.instance_states)
        self.host.set_fail_fast(self.config)
        self.host.set_takeover(self.config)
        await self.host.take_dr_role(self.config)
        await self.checks.start()
        self._reconcile_task = asyncio.create_task(self.reconciler.run(), name="ipvs reconcile")

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The reconcile loop and the check scheduler, for the daemon's supervisor.

        Local watches are not among them: one that ends (pidfd_open refused by the
        kernel or a seccomp filter) leaves its real server to the polled checks, which
        is a degraded mode, not a reason to restart the daemon.
        """
        return tuple(t for t in (self._reconcile_task, self.checks.task) if t is not None)

    async def initial_reconcile(self) -> None:
        """Wait (bounded) for the first reconcile, so READY means the table is right."""
        await self.reconciler.first_pass()

    async def stop(self) -> None:
        """Release lo and the sysctls, stop checks, withdraw our services (or flush)."""
        # The host's own state first: quick, and what an admin notices if it is left behind
        # because a slower step below ran into the service manager's stop timeout.
        self.reconciler.stop()
        await self.host.stop(release=self.config.global_.release_dr_on_stop)
        log.debug("stopping health checks")
        await self.checks.stop()
        if self._reconcile_task is not None:
            await cancel_and_wait([self._reconcile_task], within=STOP_TIMEOUT,
                                  what="IPVS reconcile")
            self._reconcile_task = None
        log.debug("withdrawing IPVS services")
        if self.nl is not None:
            await self.sync.close(self.config)
            try:
                if self.config.global_.lvs_flush_on_stop:
                    await self.nl.flush()
                else:
                    await self.reconciler.apply({})
            except Exception as exc:
                log.error("withdrawing IPVS services at stop failed: %s", exc)
            await self.nl.close()
            self.nl = None
        await self.checks.events.close()

    async def reconfigure(self, config: Config) -> None:
        """Apply a new configuration: restart checks only if the pools changed."""
        old = self.config
        self.config = config
        self._owned |= owned_keys(config)
        if old.virtual_servers != config.virtual_servers:
            await self.checks.replace(config)
        else:
            self.checks.config = self.checks.events.config = config
        self.host.set_takeover(config)
        await self.host.take_dr_role(config)
        if old.global_.lvs_sync_daemon != config.global_.lvs_sync_daemon:
            await self.sync.apply(config, self.instance_states, also=self.sync.managed(old))
        self.reconciler.mark_dirty()

    def instance_state(self, name: str, state: State) -> None:
        """A VRRP instance changed state: services that follow it move with it."""
        self.instance_states[name] = state
        self.reconciler.mark_dirty()
        sync = self.config.global_.lvs_sync_daemon
        if sync is not None and sync.instance == name and self.nl is not None:
            self.sync.apply_soon(self.config, self.instance_states)

    @property
    def loopback_vips(self) -> frozenset[IPAddress]:
        """The VIPs the DR role holds on ``lo``: a VRRP instance starting must leave them."""
        return self.host.loopback_vips

    # ------------------------------------------------------------------ the wish

    def _programmed(self, vs: VirtualServer) -> bool:
        return is_programmed(vs, self.instance_states)

    def desired(self) -> dict[Any, Any]:
        pools = {i: drain_pool(svc.pool(), svc.virtual_server, self.drained)
                 for i, svc in enumerate(self.checks.health)}
        self._hold_bgp_pools(pools)
        return desired_table(self.config, pools, self._programmed)

    def _hold_bgp_pools(self, pools: dict[int, DesiredPool]) -> None:
        """A BGP service that just became unready keeps its last ready pool for a moment:
        the withdrawal reaches the routers before the table shrinks
        (:mod:`mailha.lvs.withdraw_first`). The reconcile runs again when a hold ends."""
        if not self.config.bgp_services:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        holds: dict[object, PoolHold] = {}
        for i, svc in enumerate(self.checks.health):
            vs = svc.virtual_server
            if vs not in self.config.bgp_services:
                continue
            key = service_identity(vs)
            hold = holds[key] = self._holds.get(key) or PoolHold()
            pools[i], until = hold.program(pools[i], min_healthy=vs.min_healthy, now=now)
            if until is not None and until != self._hold_wakeups.get(key):
                self._hold_wakeups[key] = until
                loop.call_at(until, self.reconciler.mark_dirty)
        self._holds = holds

    def bgp_inputs(self) -> tuple[ServiceInput, ...]:
        """What the BGP mode's readiness needs of each ``announce = "bgp"`` service: in
        the kernel after the last reconcile, and how many real servers are up (weight
        above 0 after drains; the sorry server does not count)."""
        out = []
        in_kernel = self.reconciler.in_kernel
        for svc in self.checks.health:
            vs = svc.virtual_server
            if vs not in self.config.bgp_services or vs.ip is None:
                continue
            pool = drain_pool(svc.pool(), vs, self.drained)
            healthy = sum(1 for m in pool.members if m.weight)
            keys = service_keys(self.config, vs)
            out.append(ServiceInput(vs.label, vs.ip, all(k in in_kernel for k in keys),
                                    healthy, len(vs.real_servers), vs.min_healthy))
        return tuple(out)

    async def bgp_active_sessions(self) -> int:
        """Active connections IPVS holds in the ``announce = "bgp"`` services."""
        if self.nl is None:
            return 0
        keys = {k for vs in self.config.bgp_services for k in service_keys(self.config, vs)}
        observed = await self.nl.observe()
        return sum(d.active_conns for key in observed if key in keys
                   for d in observed.stats(key).destinations.values())

    def _update_programmed(self) -> None:
        for vs in self.config.virtual_servers:
            self.metrics.virtual_server_programmed.labels(vs.label).set(
                1 if self._programmed(vs) else 0
            )

    # ------------------------------------------------------------------ drain

    def drain_matches(self, targets: tuple[DrainTarget, ...]) -> list[tuple[VirtualServer,
                                                                             RealServer, bool]]:
        """(virtual server, real server, programmed here) for every configured match."""
        return [(vs, rs, self._programmed(vs)) for vs in self.config.virtual_servers
                for rs in vs.real_servers if any(t.matches(rs, vs) for t in targets)]

    def set_drained(self, targets: tuple[DrainTarget, ...], drained: bool) -> None:
        """Drain (weight 0) or undrain ``targets``; the reconcile loop applies it at once."""
        for target in targets:
            if drained:
                self.drained.setdefault(target, time.time())
            else:
                for held in [t for t in self.drained if target.covers(t)]:
                    del self.drained[held]
        for vs, rs, _ in self.drain_matches(targets):
            self.metrics.real_server_drained.labels(vs.label, rs_label(rs, vs)).set(
                1 if self.is_drained(rs, vs) else 0)
            log.warning("real server %s of %s %s", rs_label(rs, vs), vs.label,
                        "DRAINED: weight 0, new sessions go elsewhere" if drained
                        else "undrained: back to its weight")
        self.reconciler.mark_dirty()

    def is_drained(self, rs: RealServer, vs: VirtualServer) -> bool:
        return any(t.matches(rs, vs) for t in self.drained)

    async def active_sessions(self, targets: tuple[DrainTarget, ...]) -> int:
        """Active connections IPVS holds to ``targets`` in the services this node owns."""
        if self.nl is None:
            return 0
        observed = await self.nl.observe()
        total = 0
        for key in observed:
            if key not in self._owned:
                continue
            stats = observed.stats(key)
            for dkey, dstats in stats.destinations.items():
                if any(dkey.address == t.ip and t.port in (None, dkey.port) for t in targets):
                    total += dstats.active_conns
        return total

    # ------------------------------------------------------------------ reads

    def _fingerprints(self, observed: ObservedTable) -> dict[ServiceKey, int]:
        keys = maglev_services(observed, self._owned, maglev_keys(self.config))
        return self._fingerprint_memo(observed, keys)

    async def refresh_stats(self) -> None:
        """Read IPVS counters and Maglev fingerprints into the metrics snapshot (called at
        scrape time, so the fingerprint is that of the table the kernel holds then)."""
        if self.nl is None:
            return
        observed = await self.nl.observe()
        self.metrics.ipvs = ipvs_snapshot(observed, self._owned, self._fingerprints(observed))

    async def status(self) -> LvsStatus:
        services = []
        if self.nl is not None:
            observed = await self.nl.observe()
            services = ipvs_status(observed, self._owned, self._fingerprints(observed))
        return {"ipvs": services,
                "checks": check_status(self.checks.health, self.checks.last_results,
                                       self.is_drained, time.time())}
