"""``local_watch``: see this node's own Postfix die the moment it dies, not a poll later.

A polled SMTP check finds a dead Postfix up to ``delay_loop + retry * delay_before_retry``
after the fact, and every new session IPVS sends it meanwhile fails. When the real
server is this node's own address its master process is right here: a pidfd
(pidfd_open(2), Linux 5.3+) becomes readable when the process exits, and the event loop
hears it at once. The death takes the server out of IPVS (or to weight 0 with
``inhibit_on_failure``) within milliseconds; its return only re-arms the normal checks,
so the server is back after the first SMTP check that passes.

The pidfile is re-read after each death: ``postfix start`` writes the new master's pid.
A pidfile still naming the dead process (a SIGKILLed master leaves it behind) is not
mistaken for a new one, even if the kernel has reused the pid meanwhile: only a pidfile
rewritten since, or naming another pid, counts.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["ProcessWatch", "read_pidfile"]

log = logging.getLogger("mailha.lvs")

#: How often the pidfile is looked at while no live process is known.
POLL_INTERVAL = 0.2

OnChange = Callable[[bool, str], None]


def read_pidfile(path: Path) -> tuple[int, int] | None:
    """(pid, mtime_ns) from a pidfile, or None if it is missing or holds no pid.

    Postfix writes the pid right-aligned in 10 columns; any blank padding is accepted.
    """
    try:
        text = path.read_text(errors="replace")
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    try:
        pid = int(text.strip())
    except ValueError:
        return None
    return (pid, mtime) if pid > 1 else None


class ProcessWatch:
    """Report ``on_change(alive, detail)`` whenever the pidfile's process dies or appears."""

    def __init__(self, pidfile: Path, on_change: OnChange, *,
                 poll: float = POLL_INTERVAL) -> None:
        self.pidfile = pidfile
        self._on_change = on_change
        self._poll = poll
        self.alive: bool | None = None
        self.pid: int | None = None

    def _report(self, alive: bool, detail: str) -> None:
        if alive != self.alive:
            self.alive = alive
            self._on_change(alive, detail)

    async def run(self) -> None:
        """Watch until cancelled; a pidfd the kernel refuses disables the watch (logged)."""
        dead: tuple[int, int] | None = None
        while True:
            found = read_pidfile(self.pidfile)
            fd = None
            if found is not None and found != dead:
                try:
                    fd = os.pidfd_open(found[0])
                except ProcessLookupError:
                    dead = found
                except OSError as exc:
                    if exc.errno in (errno.ENOSYS, errno.EPERM):
                        log.warning("local_watch of %s disabled: pidfd_open: %s; the polled "
                                    "checks alone judge this real server", self.pidfile, exc)
                        self._report(True, "watch disabled")
                        return
                    raise
            if fd is None:
                self._report(False, f"no running process behind {self.pidfile}")
                await asyncio.sleep(self._poll)
                continue
            try:
                assert found is not None
                self.pid = found[0]
                self._report(True, f"process {found[0]} ({self.pidfile}) runs")
                await _readable(fd)
            finally:
                os.close(fd)
            dead = found
            self._report(False, f"process {found[0]} ({self.pidfile}) exited")


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await done
    finally:
        loop.remove_reader(fd)
