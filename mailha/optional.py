"""Non-critical parts (metrics endpoint, control socket): they degrade, never stop VRRP.

A metrics port already taken (9650 is also the keepalived exporter's default) or a
control socket directory that cannot be created must not keep a node from joining its
cluster: VRRP and IPVS are the product, the rest is for watching it. An
:class:`OptionalPart` tries to start its part, and on failure logs why, keeps running
without it, and retries in the background with a capped backoff until it starts; its
:meth:`describe` goes into ``mailha status`` so the admin sees what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mailha.tasks import cancel_and_wait

__all__ = ["OptionalPart", "retry_delays"]

log = logging.getLogger("mailha")


def retry_delays(first: float = 1.0, cap: float = 10.0) -> Callable[[int], float]:
    """Backoff for the n-th retry (0-based): doubling from ``first``, at most ``cap``."""
    def delay(attempt: int) -> float:
        return min(cap, first * 2.0 ** min(attempt, 30))
    return delay


class OptionalPart:
    """Start ``start`` now if it can; otherwise retry until it does (or :meth:`close`)."""

    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
        *,
        on_change: Callable[[bool], None] | None = None,
        delays: Callable[[int], float] | None = None,
        fatal: tuple[type[Exception], ...] = (),
    ) -> None:
        self.name = name
        self._start = start
        self._close = close
        self._on_change = on_change
        self._delays = delays or retry_delays()
        self.up = False
        self.error: str | None = None
        self.failed_since: float | None = None
        self.attempts = 0
        self._retry: asyncio.Task[None] | None = None
        self._fatal = fatal

    async def open(self) -> bool:
        """One attempt now; on failure schedule retries. True when the part is up.

        An error of a ``fatal`` type is raised instead: it means the node must not run
        at all (another mailha owns the control socket), not that a part is missing.
        """
        if await self._attempt(raising=self._fatal):
            return True
        self._retry = asyncio.create_task(self._retry_loop(), name=f"retry {self.name}")
        return False

    async def _attempt(self, raising: tuple[type[Exception], ...] = ()) -> bool:
        self.attempts += 1
        try:
            await self._start()
        except raising:
            raise
        except Exception as exc:
            first = self.error is None
            self.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) \
                else str(exc)
            if first:
                self.failed_since = time.time()
                log.error("%s is unavailable: %s; running without it and retrying "
                          "(VRRP and IPVS are not affected)", self.name, self.error)
            self._set(False)
            return False
        if self.error is not None:
            log.info("%s is available again after %d attempt(s)", self.name, self.attempts)
        self.error = None
        self.failed_since = None
        self._set(True)
        return True

    async def _retry_loop(self) -> None:
        attempt = 0
        while not await self._attempt():
            await asyncio.sleep(self._delays(attempt))
            attempt += 1

    def _set(self, up: bool) -> None:
        self.up = up
        if self._on_change is not None:
            self._on_change(up)

    def describe(self) -> dict[str, Any]:
        return {
            "up": self.up,
            "error": self.error,
            "failed_since": self.failed_since,
            "attempts": self.attempts,
        }

    async def close(self) -> None:
        if self._retry is not None:
            await cancel_and_wait({self._retry}, within=1.0, what=f"retry {self.name}")
            self._retry = None
        if self.up:
            try:
                await self._close()
            except Exception as exc:
                log.warning("closing %s: %s", self.name, exc)
        self._set(False)
