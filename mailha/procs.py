"""Run external scripts (track scripts, MISC_CHECK, notify scripts) from the event loop.

A script is untrusted, possibly badly behaved code: it may hang, fork children that
ignore SIGTERM, or leave its stdout open in a background grandchild.  The daemon must
stay responsive through all of that, so this module is built on three rules:

* Every script runs in its own session (hence its own process group), so a timeout can
  signal *everything* it started, not just the direct child.
* Exit is learnt from a pidfd (``os.pidfd_open``) watched by the event loop, and output
  is read from a non-blocking pipe the same way: no threads, and no reliance on
  asyncio's child watcher (whose default in Python 3.11 starts one thread per child).
* The pipe is never awaited after the script exits: whatever the script wrote before
  exiting is already in the pipe buffer and is drained without blocking; a grandchild
  that keeps the write end open cannot stall us.

On timeout the whole group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds
(always sent, so grandchildren that ignore SIGTERM die too), and the child is reaped.
Grandchildren are reparented to init (or the nearest subreaper), which reaps them.

:func:`split_command` turns keepalived's ``script "..."`` strings into an argv with
keepalived's own quoting rules, which are *not* the shell's (see its docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailha.errors import MailhaError

__all__ = [
    "Credentials",
    "ScriptError",
    "ScriptResult",
    "resolve_credentials",
    "run_script",
    "split_command",
]

#: Default delay between SIGTERM and SIGKILL when a script overruns its timeout.
DEFAULT_KILL_GRACE = 0.5

_READ_CHUNK = 65536


class ScriptError(MailhaError):
    """A script cannot be parsed or started (bad quoting, unknown user, empty command).

    ``reason`` is a stable, human-readable sentence; ``str(exc)`` equals it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """How a script ended.

    Exactly one of ``status`` (normal exit code) and ``signal`` (terminating signal
    number) is set.  ``timed_out`` is true when we had to kill it; its ``signal`` then
    says whether SIGTERM sufficed.  ``output`` is the tail (at most ``output_limit``
    bytes, decoded leniently) of its combined stdout and stderr.
    """

    status: int | None
    signal: int | None
    timed_out: bool
    duration: float
    output: str

    @property
    def ok(self) -> bool:
        """True when the script exited by itself with status 0."""
        return self.status == 0 and not self.timed_out

    def describe(self) -> str:
        """One phrase for logs: ``exit 3``, ``killed by SIGKILL after timeout`` ..."""
        if self.status is not None:
            what = f"exit {self.status}"
        else:
            try:
                name = signal.Signals(self.signal or 0).name
            except ValueError:
                name = f"signal {self.signal}"
            what = f"killed by {name}"
        if self.timed_out:
            what += " after timeout"
        return what


@dataclass(frozen=True, slots=True)
class Credentials:
    """The uid/gid a script runs as, resolved once (at config load) from names."""

    user: str
    uid: int
    gid: int


def resolve_credentials(user: str, group: str | None = None) -> Credentials:
    """Look up ``user`` (and ``group``, defaulting to the user's primary group).

    keepalived's convention: ``script_user username [groupname]`` where the group
    defaults to the user's group.  Call this when loading the configuration so that a
    misspelt user is a config error rather than a failure at the first failover.
    """
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ScriptError(f"script user {user!r} does not exist") from None
    gid = pw.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ScriptError(f"script group {group!r} does not exist") from None
    return Credentials(user=user, uid=pw.pw_uid, gid=gid)


class ScriptRunner(Protocol):
    """:func:`run_script`'s signature, for callers that take a runner (tests inject fakes)."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        user: str | None = ...,
        group: str | None = ...,
        env: Mapping[str, str] | None = ...,
        output_limit: int = ...,
    ) -> Awaitable[ScriptResult]: ...


async def run_script(
    argv: Sequence[str],
    *,
    timeout: float,  # noqa: ASYNC109 - the script's time limit, enforced by killing it
    user: str | None = None,
    group: str | None = None,
    env: Mapping[str, str] | None = None,
    output_limit: int = 4096,
    kill_grace: float = DEFAULT_KILL_GRACE,
    kill_leftovers: bool = True,
) -> ScriptResult:
    """Run ``argv`` and return how it ended; never leaves a zombie behind.

    With ``kill_leftovers`` (the default, right for checks) whatever the script left
    running in its process group when it exited is SIGKILLed, so a check that
    backgrounds a child cannot accumulate processes run after run. Notify scripts pass
    False: like keepalived, they may start something meant to outlive them.

    ``timeout`` bounds the script's run time; ``kill_grace`` the time between SIGTERM
    and SIGKILL of its process group after that.  ``env`` replaces the environment
    (``None`` inherits ours).  With ``user`` (and optionally ``group``) the script runs
    with that uid/gid and no supplementary groups; this needs root.

    A program that cannot be executed is reported like a shell would: status 127 when
    it does not exist, 126 when it is not executable, with the reason as output.  A
    bad ``argv``/``user``/``group`` raises :class:`ScriptError`.

    If the awaiting task is cancelled, the script's group is killed and the child
    reaped before the cancellation propagates.
    """
    if not argv:
        raise ScriptError("empty command")
    if timeout <= 0:
        raise ScriptError(f"timeout must be positive, got {timeout}")
    if output_limit < 0:
        raise ScriptError(f"output_limit must not be negative, got {output_limit}")
    creds = resolve_credentials(user, group) if user is not None else None
    if creds is None and group is not None:
        try:
            gid: int | None = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ScriptError(f"script group {group!r} does not exist") from None
    else:
        gid = creds.gid if creds else None

    started = time.monotonic()
    try:
        # Popen only forks and execs (it returns once exec succeeded); waiting is done
        # by the event loop through a pidfd below, never by blocking.
        proc = subprocess.Popen(  # noqa: ASYNC220
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            close_fds=True,
            start_new_session=True,
            user=creds.uid if creds else None,
            group=gid,
            extra_groups=[] if (creds or gid is not None) else None,
        )
    except FileNotFoundError as exc:
        return _not_started(127, f"{argv[0]}: {exc.strerror}", started)
    except PermissionError as exc:
        return _not_started(126, f"{argv[0]}: {exc.strerror}", started)
    except OSError as exc:
        return _not_started(126, f"{argv[0]}: {exc.strerror or exc}", started)

    runner = _Running(proc, output_limit)
    try:
        return await runner.finish(timeout, kill_grace, started, kill_leftovers=kill_leftovers)
    finally:
        runner.close()


def _not_started(status: int, message: str, started: float) -> ScriptResult:
    return ScriptResult(
        status=status,
        signal=None,
        timed_out=False,
        duration=time.monotonic() - started,
        output=message,
    )


class _Running:
    """One started script: its pidfd, its output pipe, and the kill/reap logic."""

    def __init__(self, proc: subprocess.Popen[bytes], output_limit: int) -> None:
        self._proc = proc
        self._loop = asyncio.get_running_loop()
        self._limit = output_limit
        self._tail = bytearray()
        self._exited = self._loop.create_future()
        assert proc.stdout is not None
        self._pipe: int | None = proc.stdout.fileno()
        os.set_blocking(self._pipe, False)
        self._loop.add_reader(self._pipe, self._read_pipe)
        try:
            self._pidfd: int | None = os.pidfd_open(proc.pid)
        except ProcessLookupError:  # pragma: no cover - reaped behind our back
            self._pidfd = None
            self._exited.set_result(None)
        else:
            self._loop.add_reader(self._pidfd, self._on_exit)

    async def finish(
        self, limit: float, grace: float, started: float, *, kill_leftovers: bool
    ) -> ScriptResult:
        timed_out = False
        try:
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), limit)
            except TimeoutError:
                timed_out = True
                self._signal_group(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._exited), grace)
                # Unconditional: grandchildren that ignore SIGTERM share the group.
                self._signal_group(signal.SIGKILL)
                await self._exited
        except asyncio.CancelledError:
            self._signal_group(signal.SIGKILL)
            self._reap_blocking()
            raise
        if kill_leftovers and not timed_out:
            # The leader is a zombie until reaped, so its pid (the pgid) cannot be reused.
            self._signal_group(signal.SIGKILL)
        status = self._reap_blocking()
        self._drain_pipe()
        duration = time.monotonic() - started
        text = bytes(self._tail).decode("utf-8", errors="replace")
        if status >= 0:
            return ScriptResult(status, None, timed_out, duration, text)
        return ScriptResult(None, -status, timed_out, duration, text)

    def close(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._pipe is not None:
            self._loop.remove_reader(self._pipe)
            self._pipe = None
            assert self._proc.stdout is not None
            self._proc.stdout.close()
        if self._proc.returncode is None:  # only on an unexpected error path
            self._signal_group(signal.SIGKILL)
            self._reap_blocking()

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
        if not self._exited.done():
            self._exited.set_result(None)

    def _read_pipe(self) -> None:
        if self._pipe is None:
            return
        try:
            chunk = os.read(self._pipe, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # EOF: every writer has gone
            self._loop.remove_reader(self._pipe)
            return
        self._keep(chunk)

    def _drain_pipe(self) -> None:
        """Take what is already buffered, without waiting for writers that linger."""
        while self._pipe is not None:
            try:
                chunk = os.read(self._pipe, _READ_CHUNK)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        self._tail += chunk
        if len(self._tail) > self._limit:
            del self._tail[: len(self._tail) - self._limit]

    def _signal_group(self, sig: signal.Signals) -> None:
        # The child is its own session and group leader, so its pid is the pgid;
        # the group outlives the leader as long as any member does.
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover - a member changed uid (setuid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, sig)

    def _reap_blocking(self) -> int:
        """Reap the child; only called once it has exited or been SIGKILLed."""
        while True:
            try:
                return self._proc.wait()
            except OSError as exc:  # pragma: no cover
                if exc.errno != errno.EINTR:
                    raise


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}
_WHITESPACE = " \t\f\n\r\v"
_HEX = "0123456789abcdefABCDEF"
_OCT = "01234567"


def split_command(command: str) -> list[str]:
    """Split a keepalived script string into argv, with keepalived's rules.

    Words are separated by unquoted whitespace; ``"`` and ``'`` quote (and are
    removed) and may start or stop in the middle of a word: ``ab" c"d`` is ``ab cd``.
    Backslash escapes work everywhere, *including inside single quotes*: ``\\a \\b
    \\E \\f \\n \\r \\t \\v``, ``\\nnn`` (1-3 octal digits), ``\\xX...`` (all the hex
    digits that follow, keeping the low byte), ``\\cC`` (control-C), and ``\\C`` for
    any other ``C`` is ``C`` itself.  There is no variable or glob expansion.

    Bytes 0x80-0xFF produced by escapes are returned as surrogate escapes, so
    ``os.fsencode`` gives exactly that byte to the program.

    Raises :class:`ScriptError` for a missing closing quote, a trailing backslash or
    an escaped NUL (which cannot be passed in argv).
    """
    words: list[str] = []
    i, n = 0, len(command)
    while True:
        while i < n and command[i] in _WHITESPACE:
            i += 1
        if i >= n:
            return words
        word: list[str] = []
        quote = ""
        while i < n:
            c = command[i]
            if c == "\\":
                ch, i = _escape(command, i + 1)
                word.append(ch)
            elif quote:
                if c == quote:
                    quote = ""
                else:
                    word.append(c)
                i += 1
            elif c in "\"'":
                quote = c
                i += 1
            elif c in _WHITESPACE:
                break
            else:
                word.append(c)
                i += 1
        if quote:
            raise ScriptError(f"missing terminating {quote} in {command!r}")
        words.append("".join(word))


def _escape(s: str, i: int) -> tuple[str, int]:
    """Decode the escape whose first character (after the backslash) is ``s[i]``."""
    if i >= len(s):
        raise ScriptError(f"missing escaped character at end of {s!r}")
    c = s[i]
    if c == "x" and i + 1 < len(s) and s[i + 1] in _HEX:
        j = i + 1
        while j < len(s) and s[j] in _HEX:
            j += 1
        return _byte(int(s[i + 1 : j], 16) & 0xFF, s), j
    if c == "c" and i + 1 < len(s):
        return _byte(ord(s[i + 1]) & 0x1F, s), i + 2
    if c in _OCT:
        j = i
        while j < len(s) and j < i + 3 and s[j] in _OCT:
            j += 1
        return _byte(int(s[i:j], 8) & 0xFF, s), j
    return _SIMPLE_ESCAPES.get(c, c), i + 1


def _byte(value: int, s: str) -> str:
    if value == 0:
        raise ScriptError(f"escaped NUL character in {s!r} cannot be passed to a program")
    return chr(value) if value < 0x80 else chr(0xDC00 + value)
