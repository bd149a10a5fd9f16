"""Runs ``vrrp_script`` checks and turns script and link states into priorities.

The debouncing (rise/fall) and the weight arithmetic are pure (:mod:`mailha.vrrp.tracking`);
this module owns the timing: each script runs every ``interval`` seconds, never two runs
of one script at once (an overrunning script delays its next run rather than stacking),
and a run is killed after ``timeout`` (keepalived's default: the interval).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypedDict

from mailha.config.model import VrrpInstance, VrrpScript
from mailha.metrics import Metrics
from mailha.procs import ScriptError, run_script
from mailha.tasks import cancel_and_wait, stop_requested
from mailha.vrrp.tracking import EffectivePriority, ScriptTracker, Tracked, effective_priority

#: Bound on stopping the script loops; the runner kills a script's process group itself.
STOP_TIMEOUT = 3.0

log = logging.getLogger("mailha.track")


@dataclass(frozen=True, slots=True)
class ScriptRun:
    """How a ``vrrp_script``'s last run ended (``ok``, ``fail``, ``timeout``, ``error``)
    and when (wall-clock seconds)."""

    outcome: str
    at: float


@dataclass(frozen=True, slots=True)
class _Item:
    kind: Literal["script", "interface"]
    name: str
    primary: bool  # the instance's own interface, tracked implicitly
    tracked: Tracked


def _items(
    inst: VrrpInstance,
    scripts: Mapping[str, VrrpScript],
    script_ok: Mapping[str, bool | None],
    link_up: Mapping[str, bool],
) -> list[_Item]:
    """Every object ``inst`` tracks, scripts first, in configuration order."""
    items: list[_Item] = []
    for ts in inst.track_script:
        weight, reverse = ts.resolved(scripts[ts.name])
        tracked = Tracked(f"script {ts.name}", script_ok.get(ts.name), weight, reverse)
        items.append(_Item("script", ts.name, False, tracked))
    for ti in inst.track_interface:
        tracked = Tracked(f"interface {ti.name}", link_up.get(ti.name), ti.weight, ti.reverse)
        items.append(_Item("interface", ti.name, False, tracked))
    if not inst.dont_track_primary and inst.interface not in {t.name for t in inst.track_interface}:
        tracked = Tracked(f"interface {inst.interface}", link_up.get(inst.interface, True))
        items.append(_Item("interface", inst.interface, True, tracked))
    return items


def instance_tracking(
    inst: VrrpInstance,
    scripts: Mapping[str, VrrpScript],
    script_ok: Mapping[str, bool | None],
    link_up: Mapping[str, bool],
) -> tuple[EffectivePriority, list[Tracked]]:
    """The effective priority and FAULT of ``inst`` from what is known now (pure)."""
    tracked = [item.tracked for item in _items(inst, scripts, script_ok, link_up)]
    return effective_priority(inst.priority, tracked), tracked


class TrackedScriptStatus(TypedDict):
    """One ``track_script`` entry of an instance, as ``mailha status`` shows it."""

    name: str
    ok: bool | None  # the debounced (rise/fall) state; None until the first result
    last_result: str | None  # outcome of the last run: ok, fail, timeout, error
    last_run: float | None  # when it ended (Unix time)
    age: float | None  # seconds since then
    weight: int  # the weight in force (the instance's, else the script's)
    reverse: bool
    applied: int  # what it adds to the priority now
    faulted: bool  # it holds the instance in FAULT now


class TrackedInterfaceStatus(TypedDict):
    """One tracked link: ``track_interface`` entries, then the instance's own interface."""

    name: str
    up: bool | None  # None: the link watcher has never seen it
    primary: bool  # the instance's own interface (tracked unless dont_track_primary)
    weight: int
    reverse: bool
    applied: int
    faulted: bool


class TrackingStatus(TypedDict):
    """The tracking part of one instance in ``mailha status``."""

    track_scripts: list[TrackedScriptStatus]
    track_interfaces: list[TrackedInterfaceStatus]
    fault_reasons: list[str]  # empty unless the instance is in FAULT


def _fault_reason(item: _Item, last: ScriptRun | None) -> str:
    ok, reverse = item.tracked.ok, item.tracked.reverse
    if item.kind == "script":
        what = f"track script {item.name}"
        if ok is None:
            return f"{what} has not reported yet"
        if reverse:
            return f"{what} succeeds (tracked with reverse)"
        return f"{what} failed" + (f" (last run: {last.outcome})" if last is not None else "")
    what = f"interface {item.name}"
    if ok is None:
        return f"{what}: link state unknown (no such interface?)"
    if reverse:
        return f"{what} is up (tracked with reverse)"
    return f"{what} is down" + (" (the instance's own interface)" if item.primary else "")


def tracking_status(
    inst: VrrpInstance,
    scripts: Mapping[str, VrrpScript],
    script_ok: Mapping[str, bool | None],
    link_up: Mapping[str, bool],
    runs: Mapping[str, ScriptRun],
    *,
    now: float,
    in_fault: bool,
    fault_sources: Collection[str] = (),
) -> TrackingStatus:
    """What ``inst`` tracks, how each object weighs now, and why it is in FAULT (pure).

    The reasons are the tracked objects holding the instance in FAULT as things stand;
    should there be none (a fault raised by another source), the machine's fault
    ``fault_sources`` are named instead.
    """
    items = _items(inst, scripts, script_ok, link_up)
    script_rows: list[TrackedScriptStatus] = []
    link_rows: list[TrackedInterfaceStatus] = []
    for item in items:
        t = item.tracked
        if item.kind == "script":
            last = runs.get(item.name)
            script_rows.append({
                "name": item.name, "ok": t.ok,
                "last_result": last.outcome if last is not None else None,
                "last_run": last.at if last is not None else None,
                "age": round(max(0.0, now - last.at), 1) if last is not None else None,
                "weight": t.weight, "reverse": t.reverse, "applied": t.adjustment,
                "faulted": t.faulted,
            })
        else:
            link_rows.append({
                "name": item.name, "up": t.ok, "primary": item.primary, "weight": t.weight,
                "reverse": t.reverse, "applied": t.adjustment, "faulted": t.faulted,
            })
    reasons: list[str] = []
    if in_fault:
        reasons = [_fault_reason(i, runs.get(i.name) if i.kind == "script" else None)
                   for i in items if i.tracked.faulted]
        reasons = reasons or [f"fault source: {s}" for s in sorted(fault_sources)]
    return {"track_scripts": script_rows, "track_interfaces": link_rows,
            "fault_reasons": reasons}


class ScriptRunner:
    """Runs every tracked ``vrrp_script`` on its interval; calls ``on_change`` on flips."""

    def __init__(
        self,
        scripts: Iterable[VrrpScript],
        *,
        default_user: str | None,
        default_group: str | None,
        metrics: Metrics,
        on_change: Callable[[str, bool], None],
    ) -> None:
        self._scripts = {s.name: s for s in scripts}
        self._trackers = {
            s.name: ScriptTracker(s.rise, s.fall, init_fail=s.init_fail)
            for s in self._scripts.values()
        }
        self._default_user = default_user
        self._default_group = default_group
        self._metrics = metrics
        self._on_change = on_change
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._runs: dict[str, ScriptRun] = {}

    def state(self, name: str) -> bool | None:
        return self._trackers[name].ok

    def states(self) -> dict[str, bool | None]:
        return {name: t.ok for name, t in self._trackers.items()}

    def runs(self) -> dict[str, ScriptRun]:
        """The last completed run of each script that has run at all."""
        return dict(self._runs)

    def start(self) -> None:
        for script in self._scripts.values():
            task = asyncio.create_task(self._loop(script), name=f"vrrp_script {script.name}")
            self._tasks.append(task)

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The script loops, for the daemon's supervisor."""
        return tuple(self._tasks)

    async def stop(self) -> None:
        """Stop every script loop for certain (a running script is killed by its runner)."""
        self._stopping = True
        await cancel_and_wait(self._tasks, within=STOP_TIMEOUT, what="vrrp_script loops")
        self._tasks.clear()

    async def run_once(self, script: VrrpScript) -> bool:
        """Run the script once and feed the result; True on success."""
        timeout = script.timeout if script.timeout is not None else script.interval
        try:
            result = await run_script(
                script.script.argv,
                timeout=timeout,
                user=script.script.user or self._default_user,
                group=script.script.group or self._default_group,
            )
        except ScriptError as exc:
            log.warning("vrrp_script %s cannot run: %s", script.name, exc)
            ok, outcome = False, "error"
        else:
            ok = result.ok
            outcome = "ok" if ok else ("timeout" if result.timed_out else "fail")
            if not ok:
                log.debug("vrrp_script %s failed: %s", script.name, result.describe())
        self._metrics.vrrp_track_script_runs.labels(script.name, outcome).inc()
        self._runs[script.name] = ScriptRun(outcome, time.time())
        tracker = self._trackers[script.name]
        if tracker.feed(ok):
            state = bool(tracker.ok)
            log.log(
                logging.INFO if state else logging.WARNING,
                "vrrp_script %s is now %s", script.name, "OK" if state else "FAILED",
            )
            self._metrics.vrrp_track_script_up.labels(script.name).set(1 if state else 0)
            self._on_change(script.name, state)
        return ok

    async def _loop(self, script: VrrpScript) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping and not stop_requested():
            started = loop.time()
            try:
                await self.run_once(script)
            except Exception:  # never let one script's bug stop its schedule
                log.exception("vrrp_script %s: unexpected error", script.name)
            elapsed = loop.time() - started
            await asyncio.sleep(max(0.0, script.interval - elapsed))
