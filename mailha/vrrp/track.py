"""Runs ``vrrp_script`` checks and turns script and link states into priorities.

The debouncing (rise/fall) and the weight arithmetic are pure (:mod:`mailha.vrrp.tracking`);
this module owns the timing: each script runs every ``interval`` seconds, never two runs
of one script at once (an overrunning script delays its next run rather than stacking),
and a run is killed after ``timeout`` (keepalived's default: the interval).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from mailha.config.model import VrrpInstance, VrrpScript
from mailha.metrics import Metrics
from mailha.procs import ScriptError, run_script
from mailha.tasks import cancel_and_wait, stop_requested
from mailha.vrrp.tracking import EffectivePriority, ScriptTracker, Tracked, effective_priority

#: Bound on stopping the script loops; the runner kills a script's process group itself.
STOP_TIMEOUT = 3.0

log = logging.getLogger("mailha.track")


def instance_tracking(
    inst: VrrpInstance,
    scripts: Mapping[str, VrrpScript],
    script_ok: Mapping[str, bool | None],
    link_up: Mapping[str, bool],
) -> tuple[EffectivePriority, list[Tracked]]:
    """The effective priority and FAULT of ``inst`` from what is known now (pure)."""
    tracked: list[Tracked] = []
    for ts in inst.track_script:
        script = scripts[ts.name]
        weight = script.weight if ts.weight is None else ts.weight
        reverse = script.weight_reverse if ts.reverse is None else ts.reverse
        tracked.append(Tracked(f"script {ts.name}", script_ok.get(ts.name), weight, reverse))
    for ti in inst.track_interface:
        tracked.append(
            Tracked(f"interface {ti.name}", link_up.get(ti.name), ti.weight, ti.reverse)
        )
    if not inst.dont_track_primary and inst.interface not in {t.name for t in inst.track_interface}:
        tracked.append(Tracked(f"interface {inst.interface}", link_up.get(inst.interface, True)))
    return effective_priority(inst.priority, tracked), tracked


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

    def state(self, name: str) -> bool | None:
        return self._trackers[name].ok

    def states(self) -> dict[str, bool | None]:
        return {name: t.ok for name, t in self._trackers.items()}

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
