"""BGP directors withdraw before they shrink: the last ready pool is kept while routers move.

A director whose checks fail (a network problem between it and the real servers, or the
real servers really down) stops being ready and its VIP is withdrawn; but the routers
need a moment (the BGP update, their FIB) before new sessions stop arriving. Had the
failing pool been programmed at once, every session hashed to this director in that
moment would meet a table without a live server and be refused. So while an
``announce = "bgp"`` service is unready, the kernel keeps the last pool it was ready
with for ``WITHDRAW_GRACE`` seconds, and only then takes the pool the checks want: the
withdrawal reaches the routers first, the table changes after. A pool that is ready
again is programmed at once. VRRP services are not held (their master keeps the VIP).

Pure: :class:`PoolHold` is fed the pool, the count of healthy servers and the time,
and says what to program and when to look again.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailha.checkers.quorum import DesiredPool

__all__ = ["WITHDRAW_GRACE", "PoolHold", "healthy_members"]

#: How long an unready BGP service keeps its last ready pool: the bound the routers get
#: to act on the withdrawal (issue 12's acceptance bound for an unready director).
WITHDRAW_GRACE = 1.5


def healthy_members(pool: DesiredPool) -> int:
    """Real servers in the pool with a weight above 0 (what ``min_healthy`` counts)."""
    return sum(1 for m in pool.members if m.weight)


@dataclass
class PoolHold:
    """One BGP service's hold: its last ready pool, and the hold's deadline if unready."""

    last_ready: DesiredPool | None = None
    held: DesiredPool | None = None
    until: float | None = None

    def program(self, pool: DesiredPool, *, min_healthy: int, now: float,
                grace: float = WITHDRAW_GRACE) -> tuple[DesiredPool, float | None]:
        """The pool to program now, and when the answer changes by itself (or None)."""
        if healthy_members(pool) >= min_healthy:
            self.last_ready, self.held, self.until = pool, None, None
            return pool, None
        if self.until is None and self.last_ready is not None:  # it just became unready
            self.held, self.until = self.last_ready, now + grace
            self.last_ready = None
        if self.held is not None and self.until is not None and now < self.until:
            return self.held, self.until
        self.held = None
        return pool, None
