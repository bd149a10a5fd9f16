"""The node's BGP part: its announcer (when a service says ``announce = "bgp"``) and the
director drain, which outlives any one announcer (a reload may replace it).

``mailha drain director`` withdraws every VIP of this director first (BIRD has
disabled the protocols when the command returns), then waits, up to ``--wait``, for
the IPVS active sessions of its BGP services to end: the routers send new flows to the
other directors, and established ones finish here. ``mailha undrain director``
announces again (as each VIP is ready).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from mailha.bgp.announcer import Announcer
from mailha.config.model import Config
from mailha.metrics import Metrics
from mailha.tasks import bounded

if TYPE_CHECKING:
    from mailha.lvs.manager import LvsManager

__all__ = ["DIRECTOR", "DirectorBgp"]

log = logging.getLogger("mailha.bgp")

#: The drain target that means this director, not a real server.
DIRECTOR = "director"


class DirectorBgp:
    """Starts, reconfigures and stops the announcer as the configuration asks."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.announcer: Announcer | None = None
        self.drained_since: float | None = None

    @property
    def drained(self) -> bool:
        return self.drained_since is not None

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        return () if self.announcer is None else self.announcer.tasks

    async def start(self, config: Config, lvs: LvsManager | None) -> None:
        """Start announcing if ``config`` has BGP services (``lvs`` then exists)."""
        if not config.bgp_services or lvs is None:
            return
        announcer = Announcer(config, metrics=self.metrics, inputs=lvs.bgp_inputs,
                              drained=self.drained)
        try:
            await announcer.start()
        except BaseException:
            await bounded(announcer.stop(), within=10, what="undoing a failed BGP start")
            raise
        lvs.reconciler.on_reconciled = announcer.poke
        self.announcer = announcer

    async def reconfigure(self, config: Config, lvs: LvsManager | None) -> None:
        if self.announcer is None:
            await self.start(config, lvs)
        elif not config.bgp_services or lvs is None:
            await self.stop()
        else:
            await self.announcer.reconfigure(config)

    async def stop(self) -> None:
        """Withdraw everything (the first step of a node's stop); never raises."""
        announcer, self.announcer = self.announcer, None
        if announcer is not None:
            await bounded(announcer.stop(), within=10, what="withdrawing the BGP announcements")

    def status(self) -> dict[str, Any] | None:
        if self.announcer is None:
            return None
        return {**self.announcer.status(), "drained_since": self.drained_since}

    async def drain(self, lvs: LvsManager | None, *, drained: bool,
                    wait: float) -> dict[str, Any]:
        """``mailha drain [--wait S] director`` / ``mailha undrain director``."""
        verb = "drain" if drained else "undrain"
        if self.announcer is None or lvs is None:
            return {"ok": False, "error": (
                f'{verb} director applies to the BGP mode, and no virtual_server of this '
                'node has announce = "bgp"; drain a real server (IP[:PORT]) instead')}
        if drained and self.drained_since is None:
            self.drained_since = time.time()
            log.warning("director DRAINED: withdrawing every BGP VIP of this director")
        elif not drained and self.drained_since is not None:
            self.drained_since = None
            log.warning("director undrained: announcing its VIPs again as they are ready")
        self.announcer.drained = self.drained
        await self.announcer.apply()  # withdrawn (or announced) when the command returns
        if not drained:
            return {"ok": True, "message": "undrained this director: its VIPs are announced "
                    "again while they are ready"}
        if self.announcer.bird_error is not None:
            return {"ok": False, "error": (
                f"drained, but BIRD did not confirm the withdrawal: "
                f"{self.announcer.bird_error} (the routes still die with mailha's device)")}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        active = await lvs.bgp_active_sessions()
        while active and loop.time() < deadline:
            await asyncio.sleep(0.2)
            active = await lvs.bgp_active_sessions()
        if active and wait:
            return {"ok": False, "active": active, "error": (
                f"drained this director (VIPs withdrawn), but {active} session(s) still "
                f"active after {wait:g}s")}
        return {"ok": True, "active": active, "message": (
            "drained this director: VIPs withdrawn" + (
                "; no active session left" if not active else
                f"; {active} session(s) still active"))}
