"""Notify scripts run on VRRP state changes, with keepalived's argument convention.

keepalived.conf(5), for an instance or a sync group:

* ``notify_master`` / ``notify_backup`` / ``notify_fault`` / ``notify_stop`` (and
  ``notify_deleted``, ``notify_master_rx_lower_pri``) run exactly as configured, with
  no extra arguments;
* the generic ``notify`` script runs *after* the state-specific one, with four extra
  arguments: ``INSTANCE``|``GROUP``, the instance or group name, the target state
  (``MASTER``|``BACKUP``|``FAULT``|``STOP``|``DELETED``) and the priority, which is
  always ``0`` for a group (keepalived's vrrp_notify.c).  ``MASTER_RX_LOWER_PRI`` is
  not passed to the generic script (keepalived only reports it on the notify FIFO).

Unlike keepalived, which forks every notify script and forgets it, the scripts of one
instance or group run one after another, in the order the transitions happened: a
slow ``notify_master`` cannot finish after the ``notify_backup`` that followed it.
Callers never wait: :meth:`Notifier.notify` only queues.  Every run is bounded by a
timeout; failures are logged with the tail of the script's output.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from mailha.procs import ScriptError, ScriptResult, ScriptRunner, run_script, split_command
from mailha.tasks import cancel_and_wait

__all__ = [
    "DEFAULT_NOTIFY_TIMEOUT",
    "Command",
    "Notifier",
    "NotifyKind",
    "NotifyOutcome",
    "NotifyScript",
    "NotifyScripts",
    "NotifyState",
    "notify_commands",
    "run_notify_script",
]

log = logging.getLogger(__name__)

#: keepalived gives notify scripts no time limit; we do, so they cannot pile up.
DEFAULT_NOTIFY_TIMEOUT = 30.0

NotifyKind = Literal["INSTANCE", "GROUP"]


class NotifyState(enum.StrEnum):
    """Target state of a transition, spelt as keepalived passes it to scripts."""

    MASTER = "MASTER"
    BACKUP = "BACKUP"
    FAULT = "FAULT"
    STOP = "STOP"
    DELETED = "DELETED"
    MASTER_RX_LOWER_PRI = "MASTER_RX_LOWER_PRI"


class Command(Protocol):
    """Anything with an argv and a run-as user/group, e.g. the config's ``ScriptCommand``."""

    @property
    def argv(self) -> tuple[str, ...]: ...
    @property
    def user(self) -> str | None: ...
    @property
    def group(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class NotifyScript:
    """One configured script: its argv and the user/group it runs as."""

    argv: tuple[str, ...]
    user: str | None = None
    group: str | None = None

    @classmethod
    def parse(cls, command: str, user: str | None = None, group: str | None = None) -> NotifyScript:
        """Build from a keepalived-style (possibly quoted) command string."""
        argv = split_command(command)
        if not argv:
            raise ScriptError(f"empty notify command {command!r}")
        return cls(tuple(argv), user, group)


@dataclass(frozen=True, slots=True)
class NotifyScripts:
    """The notify scripts of one VRRP instance or sync group (all optional).

    Fields take a :class:`NotifyScript` or the configuration's ``ScriptCommand``.
    """

    master: Command | None = None
    backup: Command | None = None
    fault: Command | None = None
    stop: Command | None = None
    deleted: Command | None = None
    master_rx_lower_pri: Command | None = None
    generic: Command | None = None  # keepalived's plain ``notify``

    def specific(self, state: NotifyState) -> Command | None:
        """The ``notify_<state>`` script for ``state``, if configured."""
        return {
            NotifyState.MASTER: self.master,
            NotifyState.BACKUP: self.backup,
            NotifyState.FAULT: self.fault,
            NotifyState.STOP: self.stop,
            NotifyState.DELETED: self.deleted,
            NotifyState.MASTER_RX_LOWER_PRI: self.master_rx_lower_pri,
        }[state]


def notify_commands(
    scripts: NotifyScripts,
    kind: NotifyKind,
    name: str,
    state: NotifyState,
    priority: int,
) -> list[tuple[Command, tuple[str, ...]]]:
    """The (script, argv) pairs to run, in order, for one transition.

    Pure: this is the whole argument convention.  ``priority`` is ignored (reported as
    0) for groups, as keepalived does.
    """
    if kind not in ("INSTANCE", "GROUP"):
        raise ValueError(f"notify kind must be INSTANCE or GROUP, not {kind!r}")
    if kind == "GROUP" and state in (NotifyState.STOP, NotifyState.DELETED):
        raise ValueError(f"{state} applies to instances only")
    runs: list[tuple[Command, tuple[str, ...]]] = []
    specific = scripts.specific(state)
    if specific is not None:
        runs.append((specific, specific.argv))
    generic = scripts.generic
    if generic is not None and state is not NotifyState.MASTER_RX_LOWER_PRI:
        prio = 0 if kind == "GROUP" else priority
        runs.append((generic, (*generic.argv, kind, name, state.value, str(prio))))
    return runs


_Run = tuple[Command, tuple[str, ...]]


def run_notify_script(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_NOTIFY_TIMEOUT,
    user: str | None = None,
    group: str | None = None,
    env: Mapping[str, str] | None = None,
    output_limit: int = 4096,
) -> Awaitable[ScriptResult]:
    """Run one notify script (VRRP's, a real server's, a quorum's) as keepalived does:
    bounded by ``timeout``, and what it starts in the background is left alone."""
    return run_script(argv, timeout=timeout, user=user, group=group, env=env,
                      output_limit=output_limit, kill_leftovers=False)


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """What happened to one notify script run (handed to the ``on_result`` hook)."""

    argv: tuple[str, ...]
    result: ScriptResult | None
    error: str | None = None


class Notifier:
    """Queues notify scripts per instance/group and runs each queue in order.

    ``on_result`` (optional) is called after every run, e.g. to count failures in
    metrics.  Use ``async with Notifier() as n`` or call :meth:`close` at shutdown: it
    waits (bounded) for queued scripts, which is how ``notify_stop`` gets to run.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_NOTIFY_TIMEOUT,
        runner: ScriptRunner = run_notify_script,
        on_result: Callable[[NotifyOutcome], None] | None = None,
    ) -> None:
        self._timeout = timeout
        self._runner = runner
        self._on_result = on_result
        self._queues: dict[tuple[str, str], asyncio.Queue[_Run]] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._closed = False

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def notify(
        self,
        scripts: NotifyScripts,
        kind: NotifyKind,
        name: str,
        state: NotifyState,
        priority: int,
    ) -> int:
        """Queue the scripts for a transition; returns how many were queued.

        Never blocks and never raises for a script problem (those are logged when the
        script runs).  Must be called from the event loop's thread.
        """
        if self._closed:
            log.warning("notifier closed; not running notify scripts for %s %s -> %s",
                        kind, name, state)
            return 0
        runs = notify_commands(scripts, kind, name, state, priority)
        if not runs:
            return 0
        key = (kind, name)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            self._workers[key] = asyncio.get_running_loop().create_task(
                self._work(queue), name=f"notify {kind} {name}"
            )
        for run in runs:
            queue.put_nowait(run)
        return len(runs)

    async def drain(self) -> None:
        """Wait until every queued script has run (mainly for tests and shutdown)."""
        for queue in list(self._queues.values()):
            await queue.join()

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting work, let queued scripts finish (up to ``grace`` s), stop."""
        self._closed = True
        limit = self._timeout if grace is None else grace
        try:
            async with asyncio.timeout(limit):
                await self.drain()
        except TimeoutError:
            log.warning("notify scripts still queued after %.1f s at shutdown; abandoning",
                        limit)
        # Re-cancelled until they end (a single cancel can be swallowed on 3.11).
        await cancel_and_wait(self._workers.values(), within=5.0, what="notify queues")
        self._workers.clear()
        self._queues.clear()

    async def _work(self, queue: asyncio.Queue[_Run]) -> None:
        while True:
            script, argv = await queue.get()
            try:
                await self._run_one(script, argv)
            finally:
                queue.task_done()

    async def _run_one(self, script: Command, argv: tuple[str, ...]) -> None:
        try:
            result = await self._runner(
                argv, timeout=self._timeout, user=script.user, group=script.group
            )
        except ScriptError as exc:
            log.error("notify script %s not run: %s", _show(argv), exc.reason)
            self._report(NotifyOutcome(argv, None, exc.reason))
            return
        if result.ok:
            log.info("notify script %s done in %.3f s", _show(argv), result.duration)
        else:
            log.warning("notify script %s failed (%s) after %.3f s; output: %s",
                        _show(argv), result.describe(), result.duration,
                        result.output.strip() or "(none)")
        self._report(NotifyOutcome(argv, result))

    def _report(self, outcome: NotifyOutcome) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(outcome)
        except Exception:  # a metrics hook must not kill the queue
            log.exception("notify on_result hook failed")


def _show(argv: Sequence[str]) -> str:
    return " ".join(repr(a) if (not a or any(c.isspace() for c in a)) else a for a in argv)
