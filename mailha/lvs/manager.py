"""The LVS side of a node: health checks -> desired table -> plan -> netlink, kept in sync.

Three inputs change what the kernel should hold: a check result that changes a pool, a
VRRP transition of the instance a virtual server follows, and a reload. Each marks the
table dirty; one reconcile task observes the kernel, plans the minimal operations
(:func:`mailha.lvs.planner.plan`) and applies them in one pipelined batch. The same task
re-syncs every ``RESYNC_INTERVAL`` seconds even when nothing changed, so drift (an operator
ran ``ipvsadm -C``) is repaired and counted. keepalived never re-reads the kernel; this is
the difference users asked for.

The DR real-server role of the all-in-one cluster lives here too: for a virtual server that
follows a VRRP instance and has direct-routed real servers, every node holds the VIP on
``lo`` and stops answering ARP for it (arp_ignore=1, arp_announce=2 on the VRRP interface),
so the master's direct-routed packets are accepted by the local Postfix with the client's
own source address. The sysctls are restored on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mailha.checkers.localwatch import ProcessWatch
from mailha.checkers.quorum import (
    DesiredPool,
    EventKind,
    HealthEvent,
    HealthUpdate,
    VirtualServerHealth,
    service_identity,
)
from mailha.checkers.result import CheckResult
from mailha.checkers.scheduler import CheckScheduler
from mailha.config.model import Config, LvsMethod, RealServer
from mailha.config.model import VirtualServer as CfgVirtualServer
from mailha.ip import IPAddress
from mailha.lvs.desired import desired_table, owned_keys
from mailha.lvs.drain import DrainTarget, drain_pool
from mailha.lvs.model import Forward, ObservedTable
from mailha.lvs.names import rs_label
from mailha.lvs.netlink import DaemonInfo, DaemonState, IpvsNetlink
from mailha.lvs.planner import Op, plan
from mailha.lvs.syncd import wanted_sync_daemons
from mailha.metrics import IpvsSnapshot, Metrics
from mailha.net.addresses import Addresses
from mailha.net.sysctl import SysctlChanges, SysctlError, conf_key
from mailha.notify import run_notify_script
from mailha.procs import ScriptError
from mailha.tasks import cancel_and_wait, stop_requested
from mailha.vrrp.events import State

log = logging.getLogger("mailha.lvs")

RESYNC_INTERVAL = 5.0
#: The file, next to the control socket, that keeps the sysctls' originals across a crash.
SYSCTL_JOURNAL = "sysctl-originals.json"
#: Bound on stopping the manager's own loops (checks, reconcile) before withdrawing.
STOP_TIMEOUT = 3.0


class LvsManager:
    """Owns the IPVS services of one configuration; start, feed VRRP states, stop."""

    def __init__(self, config: Config, *, metrics: Metrics, addresses: Addresses) -> None:
        self.config = config
        self.metrics = metrics
        self.addresses = addresses
        self.nl: IpvsNetlink | None = None
        self.health = [VirtualServerHealth(vs) for vs in config.virtual_servers]
        self.instance_states: dict[str, State] = {}
        self.last_results: dict[tuple[int, int, int], tuple[CheckResult, float]] = {}
        self._owned = owned_keys(config)
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._scheduler: CheckScheduler | None = None
        self._health_index: dict[int, int] = {}
        #: (service, real server, checker index, ok) -> that outcome's metric children
        self._check_metrics: dict[tuple[int, int, int, bool], _CheckMetrics] = {}
        self._sysctls = SysctlChanges(config.control.socket.parent / SYSCTL_JOURNAL)
        self._lo_vips: set[IPAddress] = set()
        self._last_desired: Mapping[Any, Any] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._ready = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._sync_owned: set[DaemonState] = set()
        self._sync_closed = False
        self._stopping = False
        self._watches: list[asyncio.Task[None]] = []
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
            await self._sync_daemons()
        self._set_fail_fast()
        await self._setup_dr_role()
        self._start_checks()
        await self._start_watches()
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="ipvs reconcile"))

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The reconcile loop and the check scheduler, for the daemon's supervisor.

        Local watches are not among them: one that ends (pidfd_open refused by the
        kernel or a seccomp filter) leaves its real server to the polled checks, which
        is a degraded mode, not a reason to restart the daemon.
        """
        return tuple(self._tasks)

    async def initial_reconcile(self) -> None:
        """Wait (bounded) for the first reconcile, so READY means the table is right."""
        self._dirty.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._ready.wait()

    async def stop(self) -> None:
        """Release lo and the sysctls, stop checks, withdraw our services (or flush)."""
        # The host's own state first: quick, and what an admin notices if it is left behind
        # because a slower step below ran into the service manager's stop timeout.
        self._stopping = True
        if self.config.global_.release_dr_on_stop:
            await self._release_dr_role()
        elif self._lo_vips:
            self._sysctls.keep()
            log.info("keeping %s on lo and the ARP sysctls: the master's direct-routed "
                     "sessions still reach this node's Postfix while mailha is stopped "
                     "(release_dr_on_stop = true to release them)",
                     ", ".join(sorted(map(str, self._lo_vips))))
        log.debug("stopping health checks")
        await self._stop_checks()
        await cancel_and_wait(self._tasks, within=STOP_TIMEOUT, what="IPVS reconcile")
        self._tasks.clear()
        log.debug("withdrawing IPVS services")
        if self.nl is not None:
            self._sync_closed = True
            managed = self._managed_sync_states(self.config)
            await self._apply_sync_daemons({}, managed)
            try:
                if self.config.global_.lvs_flush_on_stop:
                    await self.nl.flush()
                else:
                    await self._reconcile({})
            except Exception as exc:
                log.error("withdrawing IPVS services at stop failed: %s", exc)
            await self.nl.close()
            self.nl = None
        if self._background:
            _, late = await asyncio.wait(set(self._background), timeout=5)
            await cancel_and_wait(late, within=1, what="notify scripts")

    async def _release_dr_role(self) -> None:
        for vip in sorted(self._lo_vips, key=str):
            try:
                await self.addresses.remove_loopback_vip(vip)
            except Exception as exc:
                log.warning("could not remove %s from lo: %s (remove it by hand: "
                            "ip addr del %s dev lo)", vip, exc, vip)
            else:
                log.info("released %s from lo", vip)
        self._lo_vips.clear()
        for error in self._sysctls.restore():
            log.warning("could not restore sysctl: %s", error)

    async def reconfigure(self, config: Config) -> None:
        """Apply a new configuration: restart checks only if the pools changed."""
        old = self.config
        self.config = config
        self._owned |= owned_keys(config)
        if old.virtual_servers != config.virtual_servers:
            await self._stop_checks(shutting_down=False)
            # What the checks knew survives where a service and a real server's checks
            # are unchanged: a server that is down stays out of the pool.
            before = {h.key: h for h in self.health}
            self.health = [VirtualServerHealth(vs, before.get(service_identity(vs)))
                           for vs in config.virtual_servers]
            self.last_results.clear()
            self._start_checks()
            await self._start_watches()
        await self._setup_dr_role()
        if old.global_.lvs_sync_daemon != config.global_.lvs_sync_daemon:
            await self._sync_daemons(also=self._managed_sync_states(old))
        self._dirty.set()

    def instance_state(self, name: str, state: State) -> None:
        """A VRRP instance changed state: services that follow it move with it."""
        self.instance_states[name] = state
        self._dirty.set()
        sync = self.config.global_.lvs_sync_daemon
        if sync is not None and sync.instance == name and self.nl is not None:
            task = asyncio.create_task(self._sync_daemons(), name="ipvs sync daemons")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ sync daemons

    def _vrid_of(self, instance: str) -> int:
        return self.config.instance(instance).virtual_router_id

    def _managed_sync_states(self, config: Config) -> set[DaemonState]:
        """With ``lvs_sync_daemon`` set, both kernel daemons are ours (as for keepalived);
        without it, only the ones this manager started."""
        if config.global_.lvs_sync_daemon is not None:
            return {"master", "backup"}
        return set(self._sync_owned)

    async def _sync_daemons(self, *, also: set[DaemonState] | None = None) -> None:
        """Start and stop the kernel's sync daemons to match the config and VRRP state.

        Runs from :meth:`start`, on each transition of the followed instance, and on a
        reload that changed ``lvs_sync_daemon`` (``also``: daemons the old config owned).
        """
        cfg = self.config.global_.lvs_sync_daemon
        wanted: dict[DaemonState, DaemonInfo] = {}
        if cfg is not None:
            state = None if cfg.instance is None else self.instance_states.get(cfg.instance)
            wanted = {d.state: d for d in wanted_sync_daemons(cfg, self._vrid_of, state)}
        managed = self._managed_sync_states(self.config) | (also or set())
        await self._apply_sync_daemons(wanted, managed)

    async def _apply_sync_daemons(
        self, wanted: Mapping[DaemonState, DaemonInfo], managed: set[DaemonState]
    ) -> None:
        """Stop what runs and should not (or runs otherwise), then start what is missing.

        Serialised, and each run reads the kernel afresh: transitions can come faster
        than the kernel answers, and the last run to finish must leave the right
        daemons. Failures are logged, never raised: load balancing goes on without sync.
        """
        async with self._sync_lock:
            nl = self.nl
            if nl is None or (self._sync_closed and wanted):
                return
            try:
                running = {d.state: d for d in await nl.daemons()}
                for which in sorted(managed):
                    have, want = running.get(which), wanted.get(which)
                    if have is not None and (want is None or not want.matches(have)):
                        await nl.stop_daemon(which)
                        del running[which]
                        log.info("stopped the IPVS %s", have.describe())
                    self._sync_owned.discard(which)
                for which, want in sorted(wanted.items()):
                    if which not in running:
                        await nl.start_daemon(
                            which,
                            interface=want.interface,
                            sync_id=want.sync_id,
                            maxlen=want.maxlen,
                            port=want.port,
                            ttl=want.ttl,
                            group=want.group,
                        )
                        log.info("started the IPVS %s", want.describe())
                    self._sync_owned.add(which)
            except Exception as exc:
                log.error("IPVS sync daemon: %s", exc)

    def _set_fail_fast(self) -> None:
        """Sessions to a removed real server fail at once instead of hanging.

        Without ``expire_nodest_conn`` IPVS keeps forwarding an established connection
        to a destination that was deleted (a dead Postfix) until it times out, and the
        client waits minutes; with it, the next packet expires the entry and the client
        gets a reset and retries, through the VIP, on a live server.
        ``expire_quiescent_template`` does the same for persistence templates of a
        server at weight 0. Both are restored at stop, like the ARP sysctls.
        """
        if not self.config.virtual_servers:
            return
        why = "sessions to a removed real server fail fast instead of hanging"
        for key in ("net.ipv4.vs.expire_nodest_conn", "net.ipv4.vs.expire_quiescent_template"):
            try:
                self._sysctls.set(key, 1, why)
            except SysctlError as exc:
                log.warning("cannot set %s: %s", key, exc.reason)

    # ------------------------------------------------------------------ DR role

    def _dr_services(self) -> list[CfgVirtualServer]:
        return [
            vs
            for vs in self.config.virtual_servers
            if vs.vrrp_instance is not None
            and vs.ip is not None
            and any(rs.lvs_method is LvsMethod.DR for rs in vs.real_servers)
        ]

    @property
    def loopback_vips(self) -> frozenset[IPAddress]:
        """The VIPs the DR role holds on ``lo``: a VRRP instance starting must leave them."""
        return frozenset(self._lo_vips)

    async def _setup_dr_role(self) -> None:
        for vs in self._dr_services():
            assert vs.ip is not None and vs.vrrp_instance is not None
            inst = self.config.instance(vs.vrrp_instance)
            if vs.ip.version == 4:
                why = f"DR real server for {vs.label}: do not answer ARP for the VIP held on lo"
                self._sysctls.set(conf_key(4, inst.interface, "arp_ignore"), 1, why)
                self._sysctls.set(conf_key(4, inst.interface, "arp_announce"), 2, why)
                self._sysctls.set(conf_key(4, "all", "arp_ignore"), 1, why)
                self._sysctls.set(conf_key(4, "all", "arp_announce"), 2, why)
            if vs.ip not in self._lo_vips:
                await self.addresses.add_loopback_vip(vs.ip)
                self._lo_vips.add(vs.ip)
                log.info("holding %s on lo: this node accepts direct-routed mail for it", vs.ip)

    # ------------------------------------------------------------------ checks

    def _start_checks(self) -> None:
        self._health_index = {id(svc): i for i, svc in enumerate(self.health)}
        self._check_metrics.clear()
        self._scheduler = CheckScheduler(self.health, self._on_update, on_result=self._on_result,
                                         on_overrun=self._on_overrun)
        self._tasks.append(asyncio.create_task(self._scheduler.run(), name="checks"))
        for i, svc in enumerate(self.health):
            self._publish_pool(i, svc)

    async def _start_watches(self) -> None:
        """``local_watch`` for every real server that is this node's own address."""
        wanted = [(svc, j, rs) for svc in self.health
                  for j, rs in enumerate(svc.virtual_server.real_servers)
                  if rs.local_watch is not None]
        if not wanted:
            return
        try:
            local = await self.addresses.local_addresses()
        except Exception as exc:
            log.warning("local_watch: cannot list this node's addresses (%s); the polled "
                        "checks alone judge its own real servers", exc)
            return
        for svc, j, rs in wanted:
            if rs.ip not in local or rs.local_watch is None:
                continue  # another node's real server: polled checks only
            label = f"{rs_label(rs, svc.virtual_server)} of {svc.virtual_server.label}"

            def on_change(alive: bool, detail: str, svc: VirtualServerHealth = svc,
                          j: int = j) -> None:
                self._on_update(svc, svc.set_watch(j, not alive, detail))

            watch = ProcessWatch(rs.local_watch, on_change)
            self._watches.append(asyncio.create_task(
                self._run_watch(watch, label), name=f"local watch {label}"))
            log.info("local_watch: real server %s follows %s", label, rs.local_watch)

    async def _run_watch(self, watch: ProcessWatch, label: str) -> None:
        while not self._stopping and not stop_requested():
            try:
                await watch.run()
                return
            except Exception:
                log.exception("local_watch of %s failed; restarting it in 1 s", label)
                await asyncio.sleep(1)

    async def _stop_checks(self, *, shutting_down: bool = True) -> None:
        """Stop the checks; at shutdown (not a reload) announce ``omega``'s events."""
        await cancel_and_wait(self._watches, within=STOP_TIMEOUT, what="local watches")
        self._watches.clear()
        if self._scheduler is None:
            return
        await self._scheduler.stop()
        checks = [t for t in self._tasks if t.get_name() == "checks"]
        await cancel_and_wait(checks, within=STOP_TIMEOUT, what="health checks")
        for task in checks:
            self._tasks.remove(task)
        if shutting_down:
            for svc in self.health:
                for event in svc.shutdown():
                    self._announce(event)
        self._scheduler = None

    def _on_result(self, svc: VirtualServerHealth, j: int, k: int, result: CheckResult) -> None:
        i = self._health_index[id(svc)]
        self.last_results[(i, j, k)] = (result, time.time())
        # The metric children are looked up once per checker and outcome, not per check.
        key = (i, j, k, result.ok)
        counter = self._check_metrics.get(key)
        if counter is None:
            counter = self._check_metrics[key] = self._check_child(svc, j, k, result.ok)
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
            self._announce(event)
        if update.pool_changed:
            self._publish_pool(self.health.index(svc), svc)
            self._dirty.set()

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

    def _announce(self, event: HealthEvent) -> None:
        vs = event.virtual_server
        what = {
            EventKind.REAL_SERVER_UP: "is up",
            EventKind.REAL_SERVER_DOWN: "is DOWN",
            EventKind.QUORUM_UP: "gained quorum",
            EventKind.QUORUM_DOWN: "LOST quorum",
        }[event.kind]
        subject = (
            vs.label
            if event.real_server is None
            else (f"real server {rs_label(event.real_server, vs)} of {vs.label}")
        )
        level = (
            logging.INFO
            if event.kind in (EventKind.REAL_SERVER_UP, EventKind.QUORUM_UP)
            else logging.WARNING
        )
        log.log(level, "%s %s%s", subject, what, f" ({event.detail})" if event.detail else "")
        if event.command is not None:
            task = asyncio.create_task(self._run_notify(event))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _run_notify(self, event: HealthEvent) -> None:
        cmd = event.command
        assert cmd is not None
        user = cmd.user or self.config.global_.script_user
        group = cmd.group or self.config.global_.script_group
        try:
            result = await run_notify_script(cmd.argv, user=user, group=group)
        except ScriptError as exc:
            log.warning("%s script %s cannot run: %s", event.kind.value, cmd, exc)
            return
        if not result.ok:
            log.warning("%s script %s: %s", event.kind.value, cmd, result.describe())

    # ------------------------------------------------------------------ reconcile

    def _programmed(self, vs: CfgVirtualServer) -> bool:
        if vs.vrrp_instance is not None:
            return self.instance_states.get(vs.vrrp_instance) is State.MASTER
        if vs.ha_suspend:
            return any(s is State.MASTER for s in self.instance_states.values())
        return True

    def desired(self) -> dict[Any, Any]:
        pools = {i: drain_pool(svc.pool(), svc.virtual_server, self.drained)
                 for i, svc in enumerate(self.health)}
        return desired_table(self.config, pools, self._programmed)

    # ------------------------------------------------------------------ drain

    def drain_matches(self, targets: tuple[DrainTarget, ...]) -> list[tuple[CfgVirtualServer,
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
        self._dirty.set()

    def is_drained(self, rs: RealServer, vs: CfgVirtualServer) -> bool:
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

    async def _reconcile_loop(self) -> None:
        while not self._stopping and not stop_requested():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESYNC_INTERVAL):
                    await self._dirty.wait()
            if self._stopping or stop_requested():
                return
            woken = self._dirty.is_set()
            self._dirty.clear()
            try:
                desired = self.desired()
                changed = await self._reconcile(desired)
                if changed and not woken and desired == self._last_desired:
                    self.metrics.reconcile_drift.inc()
                    log.warning(
                        "IPVS table had drifted from the configuration; repaired (%d operation%s)",
                        changed,
                        "" if changed == 1 else "s",
                    )
                self._last_desired = desired
                self._ready.set()
            except Exception as exc:
                log.error("IPVS reconcile failed: %s; retrying", exc)
                await asyncio.sleep(1)
                self._dirty.set()

    async def _reconcile(self, desired: Mapping[Any, Any]) -> int:
        """Make the kernel match ``desired`` on the services we own; returns ops applied."""
        assert self.nl is not None
        started = time.monotonic()
        # Counters play no part in planning: skip decoding them.
        observed = await self.nl.observe(with_stats=False)
        ops = plan(desired, _normalise_local(observed, desired), self._owned)
        self._update_programmed(desired)
        if not ops:
            return 0
        result = await self.nl.apply(ops)
        for op in result.applied:
            self.metrics.reconcile_operations.labels(type(op).__name__).inc()
            log.info("ipvs: %s", _describe(op))
        for error in result.errors:
            self.metrics.reconcile_errors.inc()
            log.error("ipvs: %s", error)
        self.metrics.reconcile_duration.observe(time.monotonic() - started)
        if result.errors:
            raise RuntimeError(f"{len(result.errors)} IPVS operation(s) refused")
        return len(result.applied)

    def _update_programmed(self, desired: Mapping[Any, Any]) -> None:
        for vs in self.config.virtual_servers:
            self.metrics.virtual_server_programmed.labels(vs.label).set(
                1 if self._programmed(vs) else 0
            )

    # ------------------------------------------------------------------ reads

    async def refresh_stats(self) -> None:
        """Read IPVS counters into the metrics snapshot (called at scrape time)."""
        if self.nl is None:
            return
        observed = await self.nl.observe()
        snap = IpvsSnapshot()
        for key in observed:
            if key not in self._owned:
                continue
            st = observed.stats(key)
            s = st.stats
            snap.services[str(key)] = {
                "conns": s.conns,
                "inpkts": s.inpkts,
                "outpkts": s.outpkts,
                "inbytes": s.inbytes,
                "outbytes": s.outbytes,
            }
            for dkey, dest in observed[key].destinations.items():
                ds = st.destinations.get(dkey)
                if ds is None:
                    continue
                snap.backends[(str(key), str(dkey))] = {
                    "active": ds.active_conns,
                    "inactive": ds.inactive_conns,
                    "weight": dest.weight,
                    "conns": ds.stats.conns,
                    "inbytes": ds.stats.inbytes,
                    "outbytes": ds.stats.outbytes,
                }
        self.metrics.ipvs = snap

    async def status(self) -> dict[str, Any]:
        services = []
        if self.nl is not None:
            observed = await self.nl.observe()
            for key in sorted(observed, key=lambda k: k.sort_key()):
                if key not in self._owned:
                    continue
                vsrv = observed[key]
                st = observed.stats(key)
                dests = []
                items = sorted(vsrv.destinations.items(), key=lambda kv: kv[0].sort_key())
                for dkey, dest in items:
                    ds = st.destinations.get(dkey)
                    dests.append(
                        {
                            "address": str(dkey),
                            "forward": dest.forward.name,
                            "weight": dest.weight,
                            "active": ds.active_conns if ds else 0,
                            "inactive": ds.inactive_conns if ds else 0,
                        }
                    )
                services.append(
                    {
                        "service": str(key),
                        "scheduler": vsrv.service.scheduler,
                        "destinations": dests,
                    }
                )
        checks = []
        now = time.time()
        for i, svc in enumerate(self.health):
            vs = svc.virtual_server
            for j, rs in enumerate(vs.real_servers):
                for k, checker in enumerate(rs.checkers):
                    entry = self.last_results.get((i, j, k))
                    checks.append(
                        {
                            "service": vs.label,
                            "real_server": rs_label(rs, vs),
                            "checker": checker.kind,
                            "drained": self.is_drained(rs, vs),
                            "up": bool(svc.real_servers[j].alive),
                            "reason": entry[0].reason if entry else "not checked yet",
                            "age": round(now - entry[1], 1) if entry else None,
                        }
                    )
        return {"ipvs": services, "checks": checks}


class _CheckMetrics:
    """One checker's result counter for one outcome, and its kind's duration histogram."""

    __slots__ = ("counter", "duration")

    def __init__(self, counter: Any, duration: Any) -> None:
        self.counter = counter
        self.duration = duration

    def inc(self) -> None:
        self.counter.inc()


def _normalise_local(observed: ObservedTable, desired: Mapping[Any, Any]) -> dict[Any, Any]:
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


def _describe(op: Op) -> str:
    return op.describe()
