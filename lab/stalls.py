"""How long the machine stopped running us: a thread that sleeps 10 ms at a time and
records every wake-up that came much later than asked.

The scale-out lab runs BFD at 100 ms x 3: a BIRD that does not run for 300 ms declares
its peers dead. In the emulated VM on a shared host, the whole guest is sometimes not
scheduled for that long; the router then expires every session at once, a fault no
director caused. A test that sees an unexplained withdrawal prints the stalls measured
around it, so such a run is told from a product fault (the lab cannot prevent it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from mailha.resource import AsyncResource

__all__ = ["Stall", "StallMeter"]

_TICK = 0.01


@dataclass(frozen=True)
class Stall:
    """From ``at`` (``time.monotonic()``), ``seconds`` more than the tick went by."""

    at: float
    seconds: float


class StallMeter(AsyncResource):
    """``async with StallMeter() as meter:`` ... ``meter.worst(a, b)``."""

    def __init__(self, threshold: float = 0.1) -> None:
        self.threshold = threshold
        self.stalls: list[Stall] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stallmeter", daemon=True)

    async def _enter(self) -> None:
        self._thread.start()

    async def _exit(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

    def _run(self) -> None:
        while True:
            before = time.monotonic()
            if self._stop.wait(_TICK):
                return
            late = time.monotonic() - before - _TICK
            if late > self.threshold:
                self.stalls.append(Stall(before, late))

    def worst(self, start: float, end: float) -> Stall | None:
        """The longest stall that began between ``start`` and ``end``."""
        inside = [s for s in list(self.stalls) if start <= s.at <= end]
        return max(inside, key=lambda s: s.seconds, default=None)
