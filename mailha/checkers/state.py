"""Pure per-real-server health: keepalived's retry, alpha, weight and notify rules.

No I/O and no clock: results go in, verdicts and the delay until the next check come
out, so every rule below is a table-driven unit test.

Rules, from keepalived's check_api.c/check_misc.c/check_tcp.c and ipwrapper.c:

* A checker that is up goes down after ``retry + 1`` consecutive failures; the retries
  run ``delay_before_retry`` apart instead of ``delay_loop``. A checker that is down
  comes up on its first success and is polled every ``delay_loop`` (no retries: a
  retry confirms a failure, there is nothing to confirm while already down).
* ``alpha``: the checker starts down and needs one success to come up (without alpha
  it starts up, so a restart does not empty a working pool). An alpha checker's first
  verdict is reported even when it only confirms "down", as keepalived does.
* A real server is alive when all its checkers are up (with no checkers: always).
* ``local_watch`` (mailha's own): while a watch of the server says it is gone (the
  ``process``: the node's Postfix master; the ``listener``: no socket listens on the
  real server's address and port), the server is down whatever its checks say, and
  every checker is marked down; once *every* watch says it is back, the server returns
  on its first successful check, as after any failure. A result that was in flight
  when it died cannot bring it back.
* Its weight is the configured ``weight`` until a ``misc_dynamic`` MISC_CHECK says
  otherwise (exit status - 2); exit 0 of a dynamic checker leaves the weight alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailha.config.model import Checker, RealServer

from .result import CheckResult

__all__ = ["IPVS_WEIGHT_MAX", "CheckerHealth", "RealServerHealth", "RealServerUpdate", "Verdict"]

#: IPVS takes weights 0..65535 (keepalived clamps to the same range).
IPVS_WEIGHT_MAX = 65535


def clamp_weight(weight: int) -> int:
    return max(0, min(IPVS_WEIGHT_MAX, weight))


class Verdict(enum.Enum):
    """What a result did to a real server's liveness."""

    UNCHANGED = "unchanged"
    UP = "up"  # became alive
    DOWN = "down"  # stopped being alive
    CONFIRMED_DOWN = "confirmed_down"  # alpha: first verdict, and it is "down"


class CheckerHealth:
    """One checker's up/down state and retry counter."""

    __slots__ = ("checker", "has_run", "last", "retries", "up")

    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.up = not checker.common.alpha
        self.has_run = False
        self.retries = 0  # consecutive failures absorbed so far while up
        self.last: CheckResult | None = None

    def record(self, result: CheckResult) -> tuple[bool, float]:
        """Apply one result; return (did ``up`` change, seconds until the next check)."""
        common = self.checker.common
        self.has_run = True
        self.last = result
        if result.ok:
            self.retries = 0
            changed = not self.up
            self.up = True
            return changed, common.delay_loop
        if not self.up:
            return False, common.delay_loop
        if self.retries < common.retry:
            self.retries += 1
            return False, common.delay_before_retry
        self.retries = 0
        self.up = False
        return True, common.delay_loop

    def first_verdict_confirms_down(self, was_first: bool) -> bool:
        return was_first and self.checker.common.alpha and not self.up


@dataclass(frozen=True, slots=True)
class RealServerUpdate:
    """What one check result did to its real server."""

    verdict: Verdict
    weight_changed: bool
    next_delay: float


class RealServerHealth:
    """A real server's liveness and effective weight, from all of its checkers."""

    __slots__ = ("checkers", "real_server", "watches_down", "weight")

    def __init__(self, real_server: RealServer) -> None:
        self.real_server = real_server
        self.checkers = tuple(CheckerHealth(c) for c in real_server.checkers)
        #: Configured weight, or the last misc_dynamic weight (unclamped, as keepalived).
        self.weight = real_server.weight
        #: The ``local_watch`` watches (``"process"``, ``"listener"``) that say it is gone.
        self.watches_down: frozenset[str] = frozenset()

    @property
    def watch_down(self) -> bool:
        """A local watch holds the server out until it is back and a check passes."""
        return bool(self.watches_down)

    @property
    def alive(self) -> bool:
        return not self.watches_down and all(c.up for c in self.checkers)

    def carry_over(self, previous: RealServerHealth) -> bool:
        """Take over what ``previous`` knew, if it judged this server with the same checks.

        A reload builds new health state; without this, every real server would start
        from scratch (up, unless ``alpha``), and one that was down when the admin
        reloaded would be put back in the pool until its checks fail again. keepalived
        likewise keeps the state of the checkers a reload leaves unchanged. Returns
        whether the state was taken over.
        """
        old, new = previous.real_server, self.real_server
        if (old.ip, old.port) != (new.ip, new.port) or old.checkers != new.checkers:
            return False
        for mine, theirs in zip(self.checkers, previous.checkers, strict=True):
            mine.up, mine.has_run = theirs.up, theirs.has_run
            mine.retries, mine.last = theirs.retries, theirs.last
        if new.local_watch is not None:  # a watch no longer configured cannot lift its block
            self.watches_down = previous.watches_down
        if old.weight == new.weight:
            self.weight = previous.weight  # keeps a misc_dynamic weight
        return True

    def set_watch(self, down: bool, source: str = "process") -> Verdict:
        """Watch ``source`` saw the server die (``down``) or come back; returns the verdict."""
        was_alive = self.alive
        if down:
            self.watches_down = self.watches_down | {source}
        else:
            self.watches_down = self.watches_down - {source}
        if down:
            for checker in self.checkers:
                checker.up = False
                checker.retries = 0
        if self.alive != was_alive:
            return Verdict.UP if self.alive else Verdict.DOWN
        return Verdict.UNCHANGED

    @property
    def live_weight(self) -> int:
        """What this server adds to the quorum: its clamped weight while alive, else 0."""
        return clamp_weight(self.weight) if self.alive else 0

    def record(self, checker_index: int, result: CheckResult) -> RealServerUpdate:
        """Apply the result of checker ``checker_index``; raises IndexError for a bad index."""
        checker = self.checkers[checker_index]
        was_alive = self.alive
        was_first = not checker.has_run
        _, next_delay = checker.record(result)
        if self.watch_down:
            checker.up = False  # only a check after the process is back may count
        weight_changed = False
        if result.ok and result.dynamic_weight is not None:
            weight_changed = clamp_weight(result.dynamic_weight) != clamp_weight(self.weight)
            self.weight = result.dynamic_weight
        alive = self.alive
        if alive != was_alive:
            verdict = Verdict.UP if alive else Verdict.DOWN
        elif checker.first_verdict_confirms_down(was_first) and not alive:
            verdict = Verdict.CONFIRMED_DOWN
        else:
            verdict = Verdict.UNCHANGED
        return RealServerUpdate(verdict, weight_changed, next_delay)
