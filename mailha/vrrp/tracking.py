"""Effective priority and FAULT from tracked scripts and interfaces, keepalived style.

Pure functions and one small counter object; no processes are run here.  The
driver runs the check (a script, an SMTP probe, a link watch), feeds each result to
a :class:`ScriptTracker`, and hands the resulting :class:`Tracked` values to
:func:`effective_priority`, whose answer goes to the state machine.

The arithmetic follows keepalived 2.2 (``vrrp_track.c``,
``process_script_update_priority`` and ``initialise_*_tracking_priorities``),
restated as a function of the current states rather than as deltas:

* ``weight 0``: the object failing puts the instance in FAULT; it leaves FAULT when
  every weight-0 object is up again.  ``reverse`` turns that round (FAULT while
  the object is *up*).
* positive weight: ``+weight`` while the object is up, nothing while it is down.
* negative weight: ``weight`` (a decrease) while the object is down, nothing while up.
* ``reverse`` negates the adjustment: ``weight 20 reverse`` lowers the priority by
  20 while up; ``weight -20 reverse`` raises it by 20 while down.
* A script that has not reported yet (keepalived's "init" state) adjusts nothing,
  but holds a weight-0 instance out of service: keepalived keeps such an instance
  in FAULT until its first result, so an unknown health never wins an election.
* The sum is clamped to 1..254; an address owner (base priority 255) keeps 255
  whatever the weights, as keepalived never changes an owner's priority.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from mailha.errors import MailhaError

#: keepalived accepts weights in this range for scripts and interfaces.
MIN_WEIGHT = -253
MAX_WEIGHT = 253
OWNER_PRIORITY = 255


class TrackingError(MailhaError, ValueError):
    """A tracking parameter is out of range; ``reason`` is stable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ScriptState(enum.Enum):
    """A tracked check's debounced state."""

    INIT = "init"  # no result yet
    OK = "ok"
    FAIL = "fail"


class ScriptTracker:
    """Debounce a check's results: ``rise`` successes to go OK, ``fall`` failures to FAIL.

    This is keepalived's ``vscript->result`` counter (``vrrp_script_child_thread``):
    a value in ``0 .. rise+fall-1`` that is OK when ``>= rise``.  A run in the other
    direction is broken by a single contrary result, so "consecutive" means it.
    The very first result decides at once, whatever ``rise``/``fall`` say, unless
    ``init_fail`` was given: then the check starts FAILed and needs ``rise``
    successes like any failed check.
    """

    __slots__ = ("_counter", "_fall", "_rise", "_state")

    def __init__(self, rise: int = 1, fall: int = 1, *, init_fail: bool = False) -> None:
        if not isinstance(rise, int) or isinstance(rise, bool) or rise < 1:
            raise TrackingError("invalid_rise", repr(rise))
        if not isinstance(fall, int) or isinstance(fall, bool) or fall < 1:
            raise TrackingError("invalid_fall", repr(fall))
        self._rise = rise
        self._fall = fall
        if init_fail:
            self._state = ScriptState.FAIL
            self._counter = 0
        else:
            self._state = ScriptState.INIT
            self._counter = rise - 1  # keepalived: "one success is enough"

    @property
    def state(self) -> ScriptState:
        return self._state

    @property
    def ok(self) -> bool | None:
        """True/False once known, None while no result has arrived."""
        if self._state is ScriptState.INIT:
            return None
        return self._state is ScriptState.OK

    def feed(self, success: bool) -> bool:
        """Record one result; return True if the debounced state changed."""
        top = self._rise + self._fall - 1
        old = self._state
        if success:
            if self._counter < self._rise - 1:
                self._counter += 1
            else:
                if self._counter < self._rise:
                    self._state = ScriptState.OK
                self._counter = top
        else:
            if self._counter > self._rise:
                self._counter -= 1
            else:
                if self._counter == self._rise or self._state is ScriptState.INIT:
                    self._state = ScriptState.FAIL
                self._counter = 0
        return self._state is not old


@dataclass(frozen=True, slots=True)
class Tracked:
    """One tracked object's current state and how it weighs on the priority.

    ``ok`` is None while unknown (a script that has not reported yet).
    """

    name: str
    ok: bool | None
    weight: int = 0
    reverse: bool = False

    def __post_init__(self) -> None:
        w = self.weight
        if not isinstance(w, int) or isinstance(w, bool) or not MIN_WEIGHT <= w <= MAX_WEIGHT:
            raise TrackingError("invalid_weight", f"{self.name}: {w!r}")

    @property
    def faulted(self) -> bool:
        """True if this object, as things stand, holds the instance in FAULT."""
        if self.weight != 0:
            return False
        if self.ok is None:
            return True
        return self.ok == self.reverse

    @property
    def adjustment(self) -> int:
        """What this object adds to the base priority right now."""
        if self.weight == 0 or self.ok is None:
            return 0
        sign = -1 if self.reverse else 1
        if self.weight > 0 and self.ok:
            return self.weight * sign
        if self.weight < 0 and not self.ok:
            return self.weight * sign
        return 0


class EffectivePriority(NamedTuple):
    """The priority to advertise and whether the instance must be in FAULT."""

    priority: int
    fault: bool


def effective_priority(base: int, tracked: Iterable[Tracked]) -> EffectivePriority:
    """Combine the base priority with every tracked object, keepalived style."""
    if not isinstance(base, int) or isinstance(base, bool) or not 1 <= base <= OWNER_PRIORITY:
        raise TrackingError("invalid_priority", repr(base))
    total = base
    fault = False
    for item in tracked:
        fault = fault or item.faulted
        total += item.adjustment
    if base == OWNER_PRIORITY:
        return EffectivePriority(OWNER_PRIORITY, fault)
    return EffectivePriority(min(max(total, 1), OWNER_PRIORITY - 1), fault)


def faulted_names(tracked: Iterable[Tracked]) -> tuple[str, ...]:
    """Names of the objects holding the instance in FAULT, for logs and status."""
    return tuple(item.name for item in tracked if item.faulted)
