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
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailha import __version__
from mailha.config import Config, ConfigError, Diagnostic, load_with_warnings, validate
from mailha.control import ControlServer
from mailha.log import setup_logging
from mailha.metrics import Metrics, MetricsServer
from mailha.net.addresses import Addresses
from mailha.net.links import LinkWatcher
from mailha.notify import Notifier
from mailha.sdnotify import Notifier as SdNotifier
from mailha.sdnotify import watchdog_interval
from mailha.vrrp.driver import InstanceDriver
from mailha.vrrp.events import State
from mailha.vrrp.track import ScriptRunner, instance_tracking
from mailha.vrrp.tracking import EffectivePriority

if TYPE_CHECKING:  # imported lazily at run time: only nodes with virtual servers need it
    from mailha.lvs.manager import LvsManager

log = logging.getLogger("mailha")


class ReloadRejected(Exception):
    def __init__(self, message: str, diagnostics: list[Diagnostic]) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


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
    host = validate.check_this_host(config, script_severity="error", owned=owned)
    errors = [d for d in host if d.is_error]
    if errors:
        raise ConfigError(errors)
    return config, warnings + [d for d in host if not d.is_error]


class Node:
    """Everything one ``mailha serve`` runs; :meth:`start`, then :meth:`stop`."""

    def __init__(self, config: Config, *, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.addresses = Addresses()
        self.notifier = Notifier()
        self.instances: dict[str, InstanceDriver] = {}
        self.scripts: ScriptRunner | None = None
        self.links: LinkWatcher | None = None
        self.link_up: dict[str, bool] = {}
        self.lvs: LvsManager | None = None  # when virtual servers (or a sync daemon) exist
        self.metrics_server: MetricsServer | None = None
        self.control: ControlServer | None = None
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
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
        self._tasks.append(asyncio.create_task(self._watch_links(), name="link watch"))
        tracked = {t.name for i in cfg.vrrp_instances for t in i.track_script}
        self.scripts = ScriptRunner(
            [s for s in cfg.vrrp_scripts if s.name in tracked],
            default_user=cfg.global_.script_user,
            default_group=cfg.global_.script_group,
            metrics=self.metrics,
            on_change=lambda _name, _ok: self._retrack(),
        )
        if cfg.virtual_servers or cfg.global_.lvs_sync_daemon is not None:
            from mailha.lvs.manager import LvsManager

            self.lvs = LvsManager(cfg, metrics=self.metrics, addresses=self.addresses)
            await self.lvs.start()
        vrids = [i.virtual_router_id for i in cfg.vrrp_instances]
        for inst in cfg.vrrp_instances:
            driver = InstanceDriver(
                inst, cfg.global_, addresses=self.addresses, notifier=self.notifier,
                metrics=self.metrics, local_vrids=vrids, on_state=self._instance_state,
                loopback_vips=self.lvs.loopback_vips if self.lvs is not None else (),
            )
            self.instances[inst.name] = driver
            await driver.start(self._tracking(inst.name))
        self.scripts.start()
        if self.lvs is not None:
            await self.lvs.initial_reconcile()

    async def _start_operations(self) -> None:
        cfg = self.config
        if cfg.metrics.enabled:
            refresh = None
            if cfg.virtual_servers:
                async def refresh() -> None:
                    if self.lvs is not None:
                        await self.lvs.refresh_stats()
            self.metrics_server = MetricsServer(
                self.metrics, str(cfg.metrics.listen), cfg.metrics.port, refresh
            )
            await self.metrics_server.start()
            log.info("metrics on http://%s:%d/metrics", cfg.metrics.listen,
                     self.metrics_server.port)
        self.control = ControlServer(cfg.control.socket, status=self.status, reload=self.reload)
        await self.control.start()

    async def stop(self) -> None:
        """Stop everything; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping")
        # VRRP first: the priority-0 advert lets the peer take over at once.
        for driver in self.instances.values():
            try:
                await asyncio.wait_for(driver.stop(), timeout=5)
            except Exception:
                log.exception("stopping instance %s", driver.cfg.name)
        if self.scripts is not None:
            await self.scripts.stop()
        if self.lvs is not None:
            try:
                await asyncio.wait_for(self.lvs.stop(), timeout=30)
            except Exception:
                log.exception("stopping the LVS manager")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.links is not None:
            self.links.close()
        await self.notifier.close(grace=5)
        if self.control is not None:
            await self.control.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        self.addresses.close()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

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

    async def status(self) -> dict[str, Any]:
        instances = []
        for name, driver in self.instances.items():
            machine = driver.machine
            instances.append({
                "name": name,
                "state": driver.state.value,
                "priority": driver.priority,
                "base_priority": driver.cfg.priority,
                "vrid": driver.cfg.virtual_router_id,
                "interface": driver.cfg.interface,
                "master": str(machine.master_address) if machine and machine.master_address
                else (str(driver.primary) if driver.state is State.MASTER else None),
                "vips": [str(v.address) for v in driver.cfg.virtual_ipaddress],
                "faults": sorted(machine.faults) if machine else [],
            })
        reply: dict[str, Any] = {
            "ok": True,
            "version": __version__,
            "router_id": self.config.global_.router_id,
            "config": str(self.config.source),
            "uptime": round(time.time() - self.started_at, 1),
            "instances": instances,
            "scripts": self.scripts.states() if self.scripts else {},
            "ipvs": [],
            "checks": [],
        }
        if self.lvs is not None:
            reply.update(await self.lvs.status())
        return reply

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; keep running the old one if the new one is invalid."""
        async with self._reload_lock:
            path = self.config.source
            self.metrics.config_last_reload_seconds.set_to_current_time()
            try:
                new, warnings = await load_for_serve(path, self.addresses)
            except ConfigError as exc:
                self.metrics.config_reloads.labels("failure").inc()
                self.metrics.config_last_reload_successful.set(0)
                log.error("reload of %s rejected; still running the previous configuration:",
                          path)
                for d in exc.diagnostics:
                    log.error("  %s", d)
                return {"ok": False, "error": f"{path} is invalid; kept the running configuration",
                        "diagnostics": [str(d) for d in exc.diagnostics]}
            except OSError as exc:
                self.metrics.config_reloads.labels("failure").inc()
                self.metrics.config_last_reload_successful.set(0)
                log.error("reload: cannot read %s: %s; kept the running configuration", path, exc)
                return {"ok": False, "error": f"cannot read {path}: {exc}", "diagnostics": []}
            for d in warnings:
                log.warning("%s", d)
            message = await self._apply(new)
            self.metrics.config_reloads.labels("success").inc()
            self.metrics.config_last_reload_successful.set(1)
            log.info("reloaded %s: %s", path, message)
            return {"ok": True, "message": message}

    async def _apply(self, new: Config) -> str:
        """Apply a validated config: restart only the parts whose settings changed."""
        old = self.config
        if new == old:
            return "no change"
        changed: list[str] = []
        self.config = new
        old_instances = {i.name: i for i in old.vrrp_instances}
        new_instances = {i.name: i for i in new.vrrp_instances}
        vrids = [i.virtual_router_id for i in new.vrrp_instances]
        for name in old_instances.keys() - new_instances.keys():
            await self.instances.pop(name).stop()
            changed.append(f"removed instance {name}")
        for name, inst in new_instances.items():
            if old_instances.get(name) == inst and old.global_ == new.global_:
                continue
            running = self.instances.get(name)
            if running is not None and running.can_reconfigure(inst, new.global_):
                await running.reconfigure(inst, new.global_)
                changed.append(f"updated instance {name} in place")
                continue
            if running is not None:
                await self.instances.pop(name).stop()
            driver = InstanceDriver(
                inst, new.global_, addresses=self.addresses, notifier=self.notifier,
                metrics=self.metrics, local_vrids=vrids, on_state=self._instance_state,
            )
            self.instances[name] = driver
            changed.append(f"{'restarted' if name in old_instances else 'added'} instance {name}")
        if old.vrrp_scripts != new.vrrp_scripts or old.vrrp_instances != new.vrrp_instances:
            if self.scripts is not None:
                await self.scripts.stop()
            tracked = {t.name for i in new.vrrp_instances for t in i.track_script}
            self.scripts = ScriptRunner(
                [s for s in new.vrrp_scripts if s.name in tracked],
                default_user=new.global_.script_user, default_group=new.global_.script_group,
                metrics=self.metrics, on_change=lambda _n, _ok: self._retrack(),
            )
            self.scripts.start()
        for name, driver in self.instances.items():
            if driver.machine is None:
                await driver.start(self._tracking(name))
        self._retrack()
        if old.virtual_servers != new.virtual_servers or old.global_ != new.global_:
            if self.lvs is None and (new.virtual_servers or new.global_.lvs_sync_daemon):
                from mailha.lvs.manager import LvsManager

                self.lvs = LvsManager(new, metrics=self.metrics, addresses=self.addresses)
                await self.lvs.start()
                for name, driver in self.instances.items():
                    self.lvs.instance_state(name, driver.state)
                await self.lvs.initial_reconcile()
            elif self.lvs is not None:
                await self.lvs.reconfigure(new)
            changed.append("virtual servers updated")
        return "; ".join(changed) or "applied"


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
    sd = SdNotifier()
    node = Node(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_hup() -> None:
        async def run() -> None:
            sd.reloading()
            await node.reload()
            sd.ready("running")

        task = loop.create_task(run())
        node._tasks.append(task)

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
    if interval:
        async def watchdog() -> None:
            while True:
                sd.watchdog()
                await asyncio.sleep(interval)

        node._tasks.append(loop.create_task(watchdog(), name="watchdog"))
    await stop.wait()
    sd.stopping()
    await node.stop()
    log.info("stopped")
    return 0


def serve_command(path: Path, *, log_level: str = "info") -> int:
    setup_logging(log_level)
    try:
        return asyncio.run(_serve(path))
    except KeyboardInterrupt:
        return 130
