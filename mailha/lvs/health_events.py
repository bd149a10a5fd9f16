"""Real-server and quorum events: one log line each, and the notify script if configured.

keepalived runs ``notify_up``/``notify_down`` and ``quorum_up``/``quorum_down`` through
the same runner as VRRP's notify scripts, detached from the checker; so does mailha
(:func:`mailha.notify.run_notify_script`): a slow or hanging script never delays a
check or the reconcile loop, and what it starts in the background survives it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mailha.checkers.quorum import EventKind, HealthEvent
from mailha.config.model import Config
from mailha.lvs.names import rs_label
from mailha.notify import run_notify_script
from mailha.procs import ScriptError
from mailha.tasks import cancel_and_wait

log = logging.getLogger("mailha.lvs")

_WHAT = {
    EventKind.REAL_SERVER_UP: "is up",
    EventKind.REAL_SERVER_DOWN: "is DOWN",
    EventKind.QUORUM_UP: "gained quorum",
    EventKind.QUORUM_DOWN: "LOST quorum",
}

#: How long stopping waits for running notify scripts before cancelling them.
CLOSE_WAIT = 5.0


def describe_event(event: HealthEvent) -> tuple[int, str]:
    """The log level and line for ``event``: losses are warnings, recoveries info."""
    vs = event.virtual_server
    subject = (vs.label if event.real_server is None
               else f"real server {rs_label(event.real_server, vs)} of {vs.label}")
    level = (logging.INFO if event.kind in (EventKind.REAL_SERVER_UP, EventKind.QUORUM_UP)
             else logging.WARNING)
    detail = f" ({event.detail})" if event.detail else ""
    return level, f"{subject} {_WHAT[event.kind]}{detail}"


class HealthEventNotifier:
    """Logs events and runs their notify scripts in the background."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._running: set[asyncio.Task[Any]] = set()

    def announce(self, event: HealthEvent) -> None:
        level, line = describe_event(event)
        log.log(level, "%s", line)
        if event.command is not None:
            task = asyncio.create_task(self.run_notify(event))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def run_notify(self, event: HealthEvent) -> None:
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

    async def close(self) -> None:
        """Wait for running scripts (bounded), then cancel what is left."""
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=CLOSE_WAIT)
            await cancel_and_wait(late, within=1, what="notify scripts")
