"""``mailha serve``: one node of the cluster, wiring the pure cores to their adapters.

A :class:`Node` owns, for one validated :class:`~mailha.config.model.Config`: a VRRP
driver per instance, the vrrp_script runner, the link watcher, the LVS manager (IPVS
programming, health checks, the DR real-server role), the metrics endpoint and the
control socket. It runs on one asyncio loop. Signals: SIGTERM/SIGINT stop cleanly (a
master sends priority 0 and releases its addresses, so the peer takes over at once);
SIGHUP reloads (an invalid file is logged and the running config kept untouched).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import signal
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailha import __version__
from mailha.bgp.director import DIRECTOR, DirectorBgp
from mailha.config import Config, ConfigError, Diagnostic, load_with_warnings
from mailha.config.model import VrrpInstance
from mailha.control import ControlServer, ControlSocketError
from mailha.hostprobe import check_this_host
from mailha.ip import IPAddress
from mailha.log import setup_logging
from mailha.lvs.drain import TargetError, parse_target, parse_wait
from mailha.lvs.names import rs_label
from mailha.metrics import Metrics, MetricsServer
from mailha.net.addresses import Addresses
from mailha.net.firewall import NoAcceptFirewall
from mailha.net.links import LinkWatcher
from mailha.notify import Notifier
from mailha.optional import OptionalPart
from mailha.reload_plan import plan_reload
from mailha.sdnotify import SystemdNotifier, watchdog_interval
from mailha.status_reply import StatusReply, instance_status
from mailha.tasks import bounded, cancel_and_wait
from mailha.vrrp.driver import InstanceDriver
from mailha.vrrp.events import State
from mailha.vrrp.track_scripts import (
    ScriptRunner,
    TrackingStatus,
    instance_tracking,
    tracking_status,
)
from mailha.vrrp.tracking import EffectivePriority

if TYPE_CHECKING:  # imported lazily at run time: only nodes with virtual servers need it
    from mailha.lvs.manager import LvsManager

log = logging.getLogger("mailha")

#: How often the supervisor looks at the critical tasks (and feeds the watchdog).
SUPERVISE_INTERVAL = 0.5
#: Exit status when a critical task died: systemd's Restart=on-failure starts us again.
EXIT_TASK_DIED = 1


def file_digest(path: Path) -> str | None:
    """SHA-256 of the file as it is now, to name the configuration a node runs."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def task_death(task: asyncio.Task[Any]) -> str | None:
    """Why a task that should run for ever is not running, or None while it runs."""
    if not task.done():
        return None
    if task.cancelled():
        return "was cancelled"
    exc = task.exception()
    if exc is None:
        return "returned"
    return f"raised {type(exc).__name__}: {exc}"


async def load_for_serve(
    path: Path, addresses: Addresses | None = None
) -> tuple[Config, list[Diagnostic]]:
    """Load, validate and check against this host; raise ConfigError on any error."""
    config, warnings = load_with_warnings(path)
    if addresses is None:
        async with Addresses() as addrs:
            owned = await addrs.local_addresses()
    else:
        owned = await addresses.local_addresses()
    host = check_this_host(config, script_severity="error", owned=owned)
    errors = [d for d in host if d.is_error]
    if errors:
        raise ConfigError(errors)
    return config, warnings + [d for d in host if not d.is_error]


class Node:
    """Everything one ``mailha serve`` runs; :meth:`start`, then :meth:`stop`."""

    def __init__(self, config: Config, *, metrics: Metrics | None = None) -> None:
        self.config = config
        self.config_digest = file_digest(config.source)
        self.config_loaded_at = time.time()
        self.last_reload: dict[str, Any] | None = None
        self.metrics = metrics or Metrics()
        self.addresses = Addresses()
        self.notifier = Notifier()
        self.instances: dict[str, InstanceDriver] = {}
        self.scripts: ScriptRunner | None = None
        self.links: LinkWatcher | None = None
        self.link_up: dict[str, bool] = {}
        self.lvs: LvsManager | None = None  # when virtual servers (or a sync daemon) exist
        self.bgp = DirectorBgp(self.metrics)  # announces the announce = "bgp" services
        #: no_accept's nftables table; None when nft is absent and no instance needs it.
        self.firewall: NoAcceptFirewall | None = None
        self.control: ControlServer | None = None
        self.optional: list[OptionalPart] = []
        self.started_at = time.time()
        self.failure: str | None = None  # why a critical task died; the daemon then exits
        self.failed = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._link_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._reload_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        cfg = self.config
        await self.addresses.open()
        await self._start_operations()
        watched = {i.interface for i in cfg.vrrp_instances}
        watched |= {t.name for i in cfg.vrrp_instances for t in i.track_interface}
        self.links = LinkWatcher(watched)
        await self.links.__aenter__()
        self.link_up = {name: s.is_up for name, s in self.links.states.items()}
        for name in watched:
            self.metrics.vrrp_track_interface_up.labels(name).set(
                1 if self.link_up.get(name) else 0
            )
        self._link_task = asyncio.create_task(self._watch_links(), name="link watch")
        self._tasks.append(self._link_task)
        self.scripts = self._script_runner(cfg)
        if cfg.virtual_servers or cfg.global_.lvs_sync_daemon is not None:
            from mailha.lvs.manager import LvsManager

            self.lvs = LvsManager(cfg, metrics=self.metrics, addresses=self.addresses)
            await self.lvs.start()
        await self._open_firewall(cfg)
        vrids = [i.virtual_router_id for i in cfg.vrrp_instances]
        for inst in cfg.vrrp_instances:
            driver = self._driver(inst, cfg, vrids,
                                  self.lvs.loopback_vips if self.lvs is not None else ())
            self.instances[inst.name] = driver
            await driver.start(self._tracking(inst.name))
        self.scripts.start()
        await self.bgp.start(cfg, self.lvs)
        if self.lvs is not None:
            await self.lvs.initial_reconcile()

    def _driver(self, inst: VrrpInstance, cfg: Config, vrids: list[int],
                loopback_vips: Collection[IPAddress] | None) -> InstanceDriver:
        """One VRRP instance's driver, the same way at start and on reload.

        ``loopback_vips``: what the DR role holds on ``lo`` (a VIP there that the DR
        role does not hold is stale and goes); None leaves ``lo`` alone.
        """
        return InstanceDriver(
            inst, cfg.global_, addresses=self.addresses, notifier=self.notifier,
            metrics=self.metrics, local_vrids=vrids, on_state=self._instance_state,
            loopback_vips=loopback_vips, firewall=self.firewall,
        )

    def _script_runner(self, cfg: Config) -> ScriptRunner:
        """The track scripts some instance tracks (an untracked one never runs)."""
        tracked = {t.name for i in cfg.vrrp_instances for t in i.track_script}
        return ScriptRunner(
            [s for s in cfg.vrrp_scripts if s.name in tracked],
            default_user=cfg.global_.script_user, default_group=cfg.global_.script_group,
            metrics=self.metrics, on_change=lambda _name, _ok: self._retrack(),
        )

    async def _open_firewall(self, cfg: Config) -> None:
        """Set up no_accept's table: removed first, whatever a crashed run left in it.

        Without ``nft`` and without a no_accept instance there is nothing to do; a
        no_accept instance without ``nft`` stops the start-up (FirewallError says how).
        """
        if self.firewall is None:
            wanted = any(i.no_accept_mode for i in cfg.vrrp_instances)
            if not wanted and shutil.which("nft") is None:
                return
            self.firewall = NoAcceptFirewall()
        await self.firewall.clear()

    async def _start_operations(self) -> None:
        """The control socket and the metrics endpoint: wanted, but never at VRRP's cost.

        The control socket comes first, and is fatal if its path is another daemon's
        live socket or someone's file: a second mailha must exit before it sends a
        single advert. Any other failure of either only degrades (see mailha.optional).
        """
        cfg = self.config
        control = ControlServer(cfg.control.socket, status=self.status, reload=self.reload,
                                commands={"drain": self.drain, "undrain": self.undrain})
        self.control = control
        await self._optional(f"control socket {cfg.control.socket}", "control",
                             control.start, control.close, fatal=(ControlSocketError,))
        if not cfg.metrics.enabled:
            return
        refresh = None
        if cfg.virtual_servers:
            async def refresh() -> None:
                if self.lvs is not None:
                    await self.lvs.refresh_stats()
        server = MetricsServer(self.metrics, str(cfg.metrics.listen), cfg.metrics.port, refresh)

        async def start_metrics() -> None:
            await server.start()
            log.info("metrics on http://%s:%d/metrics", cfg.metrics.listen, server.port)

        await self._optional(f"metrics endpoint {cfg.metrics.listen}:{cfg.metrics.port}",
                             "metrics", start_metrics, server.close)

    async def _optional(self, name: str, component: str, start: Callable[[], Any],
                        close: Callable[[], Any],
                        fatal: tuple[type[Exception], ...] = ()) -> None:
        gauge = self.metrics.component_up.labels(component)
        part = OptionalPart(name, start, close, on_change=lambda up: gauge.set(1 if up else 0),
                            fatal=fatal)
        self.optional.append(part)
        await part.open()

    async def stop(self) -> None:
        """Stop everything, each step bounded; never raises. Safe to call twice.

        Order: the BGP announcements first (withdrawn while IPVS still serves the flows
        in transit), then VRRP (the priority-0 advert lets the peer take over at once),
        then track scripts, then the LVS side (lo and sysctls, checks, the kernel
        table), then the rest. A step that fails or overruns is logged and the next one still runs:
        a stop that skipped the IPVS withdrawal would leave mail going to this node.
        """
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        log.info("stopping")
        try:
            async with asyncio.timeout(10):  # let a reload in progress finish first
                await self._reload_lock.acquire()
        except TimeoutError:
            log.error("a reload is still running after 10s; stopping anyway")
        await self.bgp.stop()
        for name, driver in list(self.instances.items()):
            await bounded(driver.stop(), within=5, what=f"stopping VRRP instance {name}")
        if self.scripts is not None:
            await bounded(self.scripts.stop(), within=5, what="stopping track scripts")
        if self.lvs is not None:
            await bounded(self.lvs.stop(), within=30, what="stopping the LVS manager")
        await cancel_and_wait(self._tasks, within=3, what="daemon tasks")
        if self.firewall is not None:
            await bounded(self.firewall.clear(), within=15, what="removing the no_accept table")
        if self.links is not None:
            try:
                self.links.close()
            except Exception as exc:
                log.warning("closing the link watcher: %s", exc)
        await bounded(self.notifier.close(grace=5), within=7, what="notify scripts")
        for part in self.optional:
            await bounded(part.close(), within=3, what=f"closing the {part.name}")
        try:
            self.addresses.close()
        except Exception as exc:
            log.warning("closing the address socket: %s", exc)
        self._stopped.set()

    # ------------------------------------------------------------------ supervision

    def critical_tasks(self) -> list[asyncio.Task[Any]]:
        """Tasks without which the node does not do its job: one dying is fatal."""
        tasks: list[asyncio.Task[Any]] = []
        if self._link_task is not None:
            tasks.append(self._link_task)
        for driver in self.instances.values():
            tasks.extend(driver.tasks)
        if self.scripts is not None:
            tasks.extend(self.scripts.tasks)
        if self.lvs is not None:
            tasks.extend(self.lvs.tasks)
        tasks.extend(self.bgp.tasks)
        return tasks

    def check_tasks(self) -> bool:
        """True if every critical task runs; otherwise log, count, and fail the node."""
        if self._stopping or self._reload_lock.locked() or self.failure is not None:
            return self.failure is None
        dead = [(t, why) for t in self.critical_tasks() if (why := task_death(t)) is not None]
        for task, why in dead:
            exc = None if task.cancelled() else task.exception()
            log.critical("critical task %r %s; stopping so that the service manager restarts "
                         "mailha", task.get_name(), why, exc_info=exc)
        if dead:
            self.fail(f"task {dead[0][0].get_name()!r} {dead[0][1]}")
            return False
        return True

    def fail(self, reason: str) -> None:
        """The node cannot do its job: stop feeding the watchdog, stop, exit non-zero."""
        if self.failure is None:
            self.failure = reason
            self.failed.set()

    async def supervise(self, watchdog: Callable[[], object] | None = None,
                        interval: float = SUPERVISE_INTERVAL) -> None:
        """Check the critical tasks every ``interval``; feed ``watchdog`` only while healthy.

        The watchdog ping comes from the event loop itself, so a wedged loop is caught by
        systemd too; a dead task is caught here.
        """
        while not self._stopping:
            if not self.check_tasks():
                return
            if watchdog is not None:
                watchdog()
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ tracking

    def _tracking(self, name: str) -> EffectivePriority:
        scripts = {s.name: s for s in self.config.vrrp_scripts}
        states = self.scripts.states() if self.scripts is not None else {}
        result, _ = instance_tracking(self.config.instance(name), scripts, states, self.link_up)
        return result

    def _retrack(self) -> None:
        for name, driver in self.instances.items():
            driver.update_tracking(self._tracking(name))

    async def _watch_links(self) -> None:
        assert self.links is not None
        async for change in self.links.changes():
            was = self.link_up.get(change.ifname)
            self.link_up[change.ifname] = change.is_up
            self.metrics.vrrp_track_interface_up.labels(change.ifname).set(1 if change.is_up else 0)
            if was != change.is_up:
                log.log(logging.INFO if change.is_up else logging.WARNING,
                        "link %s is %s (%s)", change.ifname, "up" if change.is_up else "down",
                        change.operstate)
                self._retrack()

    def _instance_state(self, name: str, state: State) -> None:
        if self.lvs is not None:
            self.lvs.instance_state(name, state)

    # ------------------------------------------------------------------ control

    async def status(self) -> StatusReply:
        instances = []
        for driver in self.instances.values():
            machine = driver.machine
            instances.append(instance_status(
                driver.cfg, driver.state, driver.priority,
                master_address=machine.master_address if machine else None,
                primary=driver.primary, faults=machine.faults if machine else (),
                tracking=self._tracking_status(driver)))
        lvs = await self.lvs.status() if self.lvs is not None else {"ipvs": [], "checks": []}
        return {
            "ok": True,
            "version": __version__,
            "router_id": self.config.global_.router_id,
            "config": str(self.config.source),
            "config_sha256": self.config_digest,
            "config_loaded_at": self.config_loaded_at,
            "config_file_changed": file_digest(self.config.source) != self.config_digest,
            "last_reload": self.last_reload,
            "components": {p.name: p.describe() for p in self.optional},
            "failure": self.failure,
            "uptime": round(time.time() - self.started_at, 1),
            "instances": instances,
            "scripts": self.scripts.states() if self.scripts else {},
            "ipvs": lvs["ipvs"],
            "checks": lvs["checks"],
            "bgp": self.bgp.status(),
        }

    def _tracking_status(self, driver: InstanceDriver) -> TrackingStatus:
        """Track scripts, tracked links and, in FAULT, why: for ``mailha status``."""
        machine = driver.machine
        return tracking_status(
            driver.cfg, {s.name: s for s in self.config.vrrp_scripts},
            self.scripts.states() if self.scripts is not None else {}, self.link_up,
            self.scripts.runs() if self.scripts is not None else {},
            now=time.time(), in_fault=driver.state is State.FAULT,
            fault_sources=machine.faults if machine is not None else (),
        )

    async def drain(self, request: dict[str, Any]) -> dict[str, Any]:
        """``mailha drain [--wait S] TARGET``: weight 0, then wait for sessions to end."""
        return await self._drain(request, drained=True)

    async def undrain(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._drain(request, drained=False)

    async def _drain(self, request: dict[str, Any], *, drained: bool) -> dict[str, Any]:
        verb = "drain" if drained else "undrain"
        target = request.get("target")
        if not isinstance(target, str):
            return {"ok": False, "error": f"{verb} needs a target: local, director, IP or "
                    "IP:PORT"}
        if target.strip() == DIRECTOR:
            try:
                wait = parse_wait(request.get("wait")) if drained else 0.0
            except TargetError as exc:
                return {"ok": False, "error": str(exc)}
            return await self.bgp.drain(self.lvs, drained=drained, wait=wait)
        try:
            wait = parse_wait(request.get("wait")) if drained else 0.0
            local = await self.addresses.local_addresses() if target.strip() == "local" else ()
            targets = parse_target(target, local)
        except TargetError as exc:
            return {"ok": False, "error": str(exc)}
        if self.lvs is None:
            return {"ok": False, "error": "this node has no virtual_server: nothing to drain"}
        matches = self.lvs.drain_matches(targets)
        if not matches:
            return {"ok": False, "error": f"no real server of this node's virtual servers "
                    f"matches {target}"}
        if not any(programmed for _, _, programmed in matches):
            vs, rs, _ = matches[0]
            where = self._master_of(vs.vrrp_instance)
            return {"ok": False, "error": (
                f"this node does not program {vs.label} (it is not the VRRP master of "
                f"{vs.vrrp_instance}): run `mailha {verb} {rs_label(rs, vs)}` on the master"
                f"{f' ({where})' if where else ''}")}
        self.lvs.set_drained(targets, drained)
        names = ", ".join(sorted({rs_label(rs, vs) for vs, rs, _ in matches}))
        if not drained:
            held = sorted({str(t) for t in self.lvs.drained
                           if any(t.matches(rs, vs) for vs, rs, _ in matches)})
            if held:
                return {"ok": False, "error": f"{names} still drained by {', '.join(held)}: "
                        f"undrain that (all ports) instead"}
            return {"ok": True, "message": f"undrained {names}"}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        active = await self.lvs.active_sessions(targets)
        while active and loop.time() < deadline:
            await asyncio.sleep(0.2)
            active = await self.lvs.active_sessions(targets)
        if active and wait:
            return {"ok": False, "active": active, "error": (
                f"drained {names}, but {active} session(s) still active after {wait:g}s")}
        return {"ok": True, "active": active, "message": (
            f"drained {names}" + ("; no active session left" if not active else
                                  f"; {active} session(s) still active"))}

    def _master_of(self, instance: str | None) -> str | None:
        driver = self.instances.get(instance) if instance else None
        machine = driver.machine if driver is not None else None
        if machine is not None and machine.master_address is not None:
            return str(machine.master_address)
        return None

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file and apply it completely, or keep the running one.

        Never raises (but for cancellation): every outcome is logged, counted, and
        recorded for ``mailha status``. A file that does not load is not applied at all;
        a failure while applying rolls back to the configuration that ran before; if the
        rollback fails too, the node's state is unknown and it fails (exits non-zero).
        """
        async with self._reload_lock:
            path = self.config.source
            digest = file_digest(path)
            self.metrics.config_last_reload_seconds.set_to_current_time()
            try:
                new, warnings = await load_for_serve(path, self.addresses)
            except ConfigError as exc:
                log.error("reload of %s rejected; still running the previous configuration:",
                          path)
                for d in exc.diagnostics:
                    log.error("  %s", d)
                return self._reload_failed(f"{path} is invalid; kept the running configuration",
                                           [str(d) for d in exc.diagnostics])
            except Exception as exc:  # OSError, or a loader bug: never take the daemon down
                log.error("reload: cannot load %s: %s; kept the running configuration",
                          path, exc, exc_info=not isinstance(exc, OSError))
                return self._reload_failed(f"cannot load {path}: {exc}; kept the running "
                                           "configuration", [])
            for d in warnings:
                log.warning("%s", d)
            old = self.config
            try:
                message = await self._apply(new)
            except Exception as exc:
                log.error("reload: applying %s failed: %s; restoring the previous "
                          "configuration", path, exc, exc_info=exc)
                try:
                    self.config = new
                    await self._apply(old)
                except Exception as again:
                    log.critical("reload: restoring the previous configuration failed too: "
                                 "%s", again, exc_info=again)
                    self.fail(f"reload left the node half-configured: {again}")
                    return self._reload_failed(
                        f"applying {path} failed ({exc}) and so did the rollback ({again}); "
                        "mailha is stopping so that it restarts cleanly", [])
                self.config = old
                return self._reload_failed(
                    f"applying {path} failed: {exc}; the previous configuration is in force",
                    [])
            self.config_digest = digest
            self.config_loaded_at = time.time()
            self.metrics.config_reloads.labels("success").inc()
            self.metrics.config_last_reload_successful.set(1)
            self.last_reload = {"ok": True, "at": time.time(), "message": message}
            log.info("reloaded %s: %s", path, message)
            return {"ok": True, "message": message}

    def _reload_failed(self, error: str, diagnostics: list[str]) -> dict[str, Any]:
        self.metrics.config_reloads.labels("failure").inc()
        self.metrics.config_last_reload_successful.set(0)
        self.last_reload = {"ok": False, "at": time.time(), "error": error}
        return {"ok": False, "error": error, "diagnostics": diagnostics}

    async def reload_notifying(self, sd: SystemdNotifier) -> None:
        """SIGHUP: RELOADING=1, reload, and READY=1 again whatever happened."""
        sd.reloading()
        try:
            await self.reload()
        finally:
            sd.ready("running" if self.failure is None else f"failed: {self.failure}")

    async def _retire_instance(self, name: str) -> None:
        """Stop an instance for good and drop its metrics (a replacement starts afresh)."""
        driver = self.instances.pop(name)
        await driver.stop()
        self.metrics.forget_vrrp_instance(name, driver.cfg.virtual_router_id)

    async def _apply(self, new: Config) -> str:
        """Apply a validated config: restart only the parts whose settings changed."""
        old = self.config
        if new == old:
            return "no change"
        plan = plan_reload(old, new, [n for n, d in self.instances.items()
                                      if d.machine is not None])
        self.config = new
        new_instances = {i.name: i for i in new.vrrp_instances}
        vrids = [i.virtual_router_id for i in new.vrrp_instances]
        for name in plan.retire:
            await self._retire_instance(name)
        for name in plan.in_place:
            await self.instances[name].reconfigure(new_instances[name], new.global_)
        for name in plan.started:
            if name in self.instances:
                await self._retire_instance(name)
            inst = new_instances[name]
            if inst.no_accept_mode and self.firewall is None:
                await self._open_firewall(new)
            # Without an LVS side yet, lo is not ours to judge (None): one created by
            # this reload takes its VIPs there right after.
            self.instances[name] = self._driver(
                inst, new, vrids, self.lvs.loopback_vips if self.lvs is not None else None)
        if plan.scripts:
            if self.scripts is not None:
                await self.scripts.stop()
            self.scripts = self._script_runner(new)
            self.scripts.start()
        for name, driver in self.instances.items():
            if driver.machine is None:
                await driver.start(self._tracking(name))
        self._retrack()
        if plan.lvs:
            if self.lvs is None and (new.virtual_servers or new.global_.lvs_sync_daemon):
                from mailha.lvs.manager import LvsManager

                lvs = LvsManager(new, metrics=self.metrics, addresses=self.addresses)
                try:
                    await lvs.start()
                except BaseException:
                    await bounded(lvs.stop(), within=30, what="undoing a failed LVS start")
                    raise
                self.lvs = lvs
                for name, driver in self.instances.items():
                    lvs.instance_state(name, driver.state)
                await lvs.initial_reconcile()
            elif self.lvs is not None:
                await self.lvs.reconfigure(new)
        if plan.bgp:
            await self.bgp.reconfigure(new, self.lvs)
        if plan.operations:
            for part in self.optional:
                await bounded(part.close(), within=3, what=f"closing the {part.name}")
            self.optional.clear()
            await self._start_operations()
        return plan.describe()


# ---------------------------------------------------------------------- command


async def _serve(path: Path) -> int:
    try:
        config, warnings = await load_for_serve(path)
    except ConfigError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        print(f"mailha: {path}: refusing to start; fix the errors above "
              f"(`mailha check {path}` lists them)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mailha: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    for d in warnings:
        log.warning("%s", d)
    sd = SystemdNotifier()
    node = Node(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_hup() -> None:
        node._tasks.append(loop.create_task(node.reload_notifying(sd), name="reload"))

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await node.start()
    except Exception as exc:
        log.error("start-up failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        await node.stop()
        return 1
    log.info("mailha %s running with %s", __version__, path)
    sd.ready("running")
    interval = watchdog_interval()
    node._tasks.append(loop.create_task(
        node.supervise(sd.watchdog if interval else None,
                       min(interval or SUPERVISE_INTERVAL, SUPERVISE_INTERVAL)),
        name="supervisor"))
    stopped = asyncio.ensure_future(stop.wait())
    failed = asyncio.ensure_future(node.failed.wait())
    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    failed.cancel()
    sd.stopping()
    await node.stop()
    if node.failure is not None:
        log.error("stopped after a failure: %s", node.failure)
        return EXIT_TASK_DIED
    log.info("stopped")
    return 0


def serve_command(path: Path, *, log_level: str = "info") -> int:
    setup_logging(log_level)
    try:
        return asyncio.run(_serve(path))
    except KeyboardInterrupt:
        return 130
