"""The VRRP instance state machine (RFC 5798 §6, RFC 3768 timers), sans I/O.

In the manner of h11: a plain object that is fed events -- :meth:`VrrpMachine.start`,
:meth:`~VrrpMachine.advert_received`, :meth:`~VrrpMachine.timer`, tracking updates,
:meth:`~VrrpMachine.shutdown` -- each with the current time, and answers with a list
of actions (:mod:`mailha.vrrp.events`) for the driver to carry out.  It never reads
a clock, opens a socket or sleeps; :meth:`~VrrpMachine.next_deadline` says when the
driver must call :meth:`~VrrpMachine.timer` next.  That makes every election, skew
and preemption rule testable with a fake clock and a simulated link.

Errors are split the h11 way.  A peer's bad or unexpected advertisement is never an
exception: it is answered with :class:`~mailha.vrrp.events.Discarded` (dropped) or
:class:`~mailha.vrrp.events.Diagnostic` (logged, still used).  Misuse by the local
caller -- starting twice, time running backwards, an impossible priority -- raises
:class:`UsageError`; bad configuration raises :class:`ParamsError`.  Both carry a
stable ``reason``.

Where keepalived 2.2 and the RFCs differ, keepalived wins (we must interoperate
with it and behave as its users expect).  Choices, with their source in keepalived:

* Start-up (``vrrp_init_state``): an address owner (priority 255) becomes MASTER
  at once.  ``state MASTER`` does *not* make a node master at once: it enters
  BACKUP with a Master_Down_Timer of one advertisement interval plus the minimum
  skew (1/256 of a second in v2), so a live master is heard first.  ``state
  BACKUP`` waits the full Master_Down_Interval.
* A priority change while BACKUP shifts the running down timer by the difference
  between the old and new timer lengths (``vrrp_set_effective_priority``).  A
  consequence users see: with the seed configuration (both priority 100, a +100
  track script) the script's first success replaces the short "state MASTER"
  wait by the full interval, both nodes time out together, and the tie goes to
  the higher address -- "state MASTER" makes no difference.
* With ``state MASTER`` configured, ``nopreempt`` and ``preempt_delay`` are
  cleared; an address owner never has ``nopreempt``; ``preempt_delay`` is cleared
  by ``nopreempt`` (``vrrp_complete_instance``).  See :func:`normalize_params`.
* ``preempt_delay`` counts from the first advertisement heard from a
  lower-priority master while BACKUP (keepalived's ``preempt_time``); until it has
  passed such adverts are accepted as from any master, afterwards they are
  ignored so the Master_Down_Timer runs out and we take over.
* A master hearing a lower-priority advertisement discards it but sends its own
  advertisement at once, plus gratuitous ARPs (``garp_lower_prio_repeat``), so
  the other side backs off within one packet (``vrrp_state_master_rx``).
  ``lower_prio_no_advert`` turns the extra advertisement off.
* A priority-0 advertisement received by a master is answered at once and the
  Adver_Timer restarted (RFC 5798 §6.4.3).
* Address-list mismatch: logged, advert used (RFC 5798 §7.1; keepalived 2.2).
  VRRPv2 interval mismatch: dropped (RFC 3768 §7.1, keepalived).  VRRPv3: a
  backup adopts the master's interval as Master_Adver_Interval (RFC 5798
  §6.4.2, keepalived); a node becoming master returns to its own interval.
* FAULT (keepalived's extension): entered when any fault source is active
  (tracked weight-0 scripts or interfaces, the instance's own link).  A master
  entering FAULT sends priority 0 and releases the addresses.  Leaving FAULT goes
  to BACKUP with a full Master_Down_Interval (an owner goes straight to MASTER).
* Gratuitous ARP timing is kept here: on becoming master ``garp_master_repeat``
  at once, the same again after ``garp_master_delay``, then
  ``garp_master_refresh_repeat`` every ``garp_master_refresh`` (0 = off).

Not modelled: sync groups, keepalived's "rogue owner" priority reduction when two
nodes both claim priority 255 (we apply the plain address tie-break and emit a
``Diagnostic("owner_conflict")``), authentication (the packet layer's job).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from mailha.errors import MailhaError
from mailha.ip import IPAddress
from mailha.vrrp.events import (
    Action,
    AddVips,
    Diagnostic,
    Discarded,
    PriorityChanged,
    RemoveVips,
    SendAdvert,
    SendGratuitous,
    State,
    StateChanged,
)
from mailha.vrrp.tracking import OWNER_PRIORITY, EffectivePriority

__all__ = [
    "OWNER_PRIORITY",
    "AdvertLike",
    "InstanceParams",
    "MachineError",
    "ParamsError",
    "UsageError",
    "VrrpMachine",
    "normalize_params",
]

_TIME_EPSILON = 1e-9


class MachineError(MailhaError):
    """Base class for the machine's own errors; ``reason`` is a stable token."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ParamsError(MachineError, ValueError):
    """The instance parameters are invalid."""


class UsageError(MachineError, RuntimeError):
    """The local caller used the machine wrongly (h11's LocalProtocolError)."""


class AdvertLike(Protocol):
    """What the machine reads from a parsed advertisement.

    :class:`mailha.vrrp.packet.Advert` satisfies it; the machine depends only on
    these fields so it can be tested and reasoned about without the wire format.
    """

    @property
    def version(self) -> int: ...
    @property
    def vrid(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def max_advert_int(self) -> float: ...


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _centis(seconds: float) -> int:
    return round(seconds * 100)


@dataclass(frozen=True, slots=True)
class InstanceParams:
    """Everything that configures one VRRP instance; immutable.

    ``primary_address`` is the address our advertisements come from (keepalived's
    ``unicast_src_ip`` or the interface address); it breaks priority ties.
    """

    name: str
    vrid: int
    priority: int
    primary_address: IPAddress
    virtual_addresses: tuple[IPAddress, ...]
    version: int = 2
    advert_int: float = 1.0
    initial_state: State = State.BACKUP
    nopreempt: bool = False
    preempt_delay: float = 0.0
    learn_master_interval: bool = True
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    down_timer_adverts: int = 3
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_repeat: int | None = None  # None: same as garp_master_repeat
    garp_lower_prio_delay: float | None = None  # None: same as garp_master_delay

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ParamsError("invalid_name", repr(self.name))
        if not _is_int(self.vrid) or not 1 <= self.vrid <= 255:
            raise ParamsError("invalid_vrid", repr(self.vrid))
        if not _is_int(self.priority) or not 1 <= self.priority <= OWNER_PRIORITY:
            raise ParamsError("invalid_priority", repr(self.priority))
        if self.version not in (2, 3) or not _is_int(self.version):
            raise ParamsError("invalid_version", repr(self.version))
        if not isinstance(self.primary_address, IPv4Address | IPv6Address):
            raise ParamsError("invalid_primary_address", repr(self.primary_address))
        if not isinstance(self.virtual_addresses, tuple) or not self.virtual_addresses:
            raise ParamsError("no_virtual_addresses", repr(self.virtual_addresses))
        for vip in self.virtual_addresses:
            if not isinstance(vip, IPv4Address | IPv6Address):
                raise ParamsError("invalid_virtual_address", repr(vip))
            if vip.version != self.primary_address.version:
                raise ParamsError("mixed_address_families", str(vip))
        if len(set(self.virtual_addresses)) != len(self.virtual_addresses):
            raise ParamsError("duplicate_virtual_address", repr(self.virtual_addresses))
        if self.version == 2 and len(self.virtual_addresses) > 255:
            raise ParamsError("too_many_virtual_addresses", str(len(self.virtual_addresses)))
        self._check_interval()
        if self.initial_state not in (State.MASTER, State.BACKUP):
            raise ParamsError("invalid_initial_state", repr(self.initial_state))
        if not _finite(self.preempt_delay) or not 0 <= self.preempt_delay <= 1000:
            raise ParamsError("invalid_preempt_delay", repr(self.preempt_delay))
        if not _is_int(self.down_timer_adverts) or not 1 <= self.down_timer_adverts <= 100:
            raise ParamsError("invalid_down_timer_adverts", repr(self.down_timer_adverts))
        for field in ("garp_master_delay", "garp_master_refresh", "garp_lower_prio_delay"):
            value = getattr(self, field)
            if value is not None and (not _finite(value) or value < 0):
                raise ParamsError(f"invalid_{field}", repr(value))
        for field in ("garp_master_repeat", "garp_master_refresh_repeat", "garp_lower_prio_repeat"):
            value = getattr(self, field)
            if value is not None and (not _is_int(value) or value < 0):
                raise ParamsError(f"invalid_{field}", repr(value))

    def _check_interval(self) -> None:
        interval = self.advert_int
        if not _finite(interval) or interval <= 0:
            raise ParamsError("invalid_advert_int", repr(interval))
        if self.version == 2:
            # The v2 field is whole seconds, 1..255.
            if interval != int(interval) or not 1 <= interval <= 255:
                raise ParamsError("invalid_advert_int", f"v2 needs whole seconds: {interval!r}")
        else:
            # The v3 field is 12 bits of centiseconds.
            centis = _centis(interval)
            if abs(centis - interval * 100) > 1e-6 or not 1 <= centis <= 4095:
                raise ParamsError("invalid_advert_int", f"v3 needs 0.01..40.95 s: {interval!r}")

    @property
    def lower_prio_garp(self) -> tuple[int, float]:
        """(repeat, delay) for the ARPs a master sends on hearing a lower priority.

        keepalived defaults both to the ``garp_master_*`` values.
        """
        repeat = self.garp_master_repeat
        if self.garp_lower_prio_repeat is not None:
            repeat = self.garp_lower_prio_repeat
        delay = self.garp_master_delay
        if self.garp_lower_prio_delay is not None:
            delay = self.garp_lower_prio_delay
        return repeat, delay

    @property
    def address_owner(self) -> bool:
        """Priority 255: the virtual addresses are this node's own (RFC 5798 §3)."""
        return self.priority == OWNER_PRIORITY


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def normalize_params(params: InstanceParams) -> tuple[InstanceParams, tuple[str, ...]]:
    """Apply keepalived's silent corrections; return the result and a warning per change.

    The machine runs on the corrected parameters; the config layer can log the
    warnings (keepalived logs the same ones at start-up).
    """
    warnings: list[str] = []
    if params.address_owner and params.nopreempt:
        warnings.append("nopreempt is incompatible with priority 255 - cleared")
        params = replace(params, nopreempt=False)
    if params.initial_state is State.MASTER:
        if params.nopreempt:
            warnings.append("nopreempt does not work with initial state MASTER - cleared")
            params = replace(params, nopreempt=False)
        if params.preempt_delay:
            warnings.append("preempt_delay does not work with initial state MASTER - cleared")
            params = replace(params, preempt_delay=0.0)
    if params.nopreempt and params.preempt_delay:
        warnings.append("preempt_delay is incompatible with nopreempt - cleared")
        params = replace(params, preempt_delay=0.0)
    return params, tuple(warnings)


class VrrpMachine:
    """One VRRP instance: events in, actions out, time injected.

    Construct it, call :meth:`start`, then feed it advertisements, timer ticks and
    tracking updates.  All methods that take ``now`` expect a monotonic clock in
    seconds and never read one themselves.
    """

    def __init__(self, params: InstanceParams, now: float) -> None:
        self._params, self._warnings = normalize_params(params)
        self._now = self._valid_time(now)
        self._state = State.INIT
        self._priority = self._params.priority
        self._master_adver_int = self._params.advert_int
        # Main timer: Adver_Timer when MASTER, Master_Down_Timer when BACKUP.
        self._deadline: float | None = None
        # Length the down timer was last armed with; a priority change shifts the
        # deadline by the difference, as keepalived does.
        self._down_timer = 0.0
        self._preempt_time: float | None = None
        self._takeover_reason = "master_no_response"
        self._garp_pending: list[tuple[float, int]] = []
        self._garp_refresh_at: float | None = None
        self._faults: set[str] = set()
        self._reported: set[tuple[str, str]] = set()
        self._master_address: IPAddress | None = None

    # ----------------------------------------------------------- introspection

    @property
    def params(self) -> InstanceParams:
        """The parameters in force (after :func:`normalize_params`)."""
        return self._params

    @property
    def warnings(self) -> tuple[str, ...]:
        """Corrections made to the given parameters, for the log."""
        return self._warnings

    @property
    def state(self) -> State:
        return self._state

    @property
    def priority(self) -> int:
        """The effective priority: what we advertise and what sets Skew_Time."""
        return self._priority

    @property
    def master_adver_int(self) -> float:
        """Master_Adver_Interval: ours, or the master's when learned (v3 backup)."""
        return self._master_adver_int

    @property
    def skew_time(self) -> float:
        """Skew_Time for the effective priority (v2: RFC 3768 §6.1, v3: RFC 5798 §6.1)."""
        return self._skew(256 - self._priority)

    @property
    def master_down_interval(self) -> float:
        """Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time.

        3 is keepalived's ``down_timer_adverts`` default.
        """
        return self._params.down_timer_adverts * self._master_adver_int + self.skew_time

    @property
    def master_address(self) -> IPAddress | None:
        """Source of the last advertisement a backup followed (or ours when master)."""
        return self._master_address

    @property
    def faults(self) -> frozenset[str]:
        """Active fault sources; FAULT holds while this is non-empty."""
        return frozenset(self._faults)

    def next_deadline(self) -> float | None:
        """When :meth:`timer` must next be called, or None if no timer is armed."""
        if self._state not in (State.MASTER, State.BACKUP):
            return None
        times = [t for t, _ in self._garp_pending]
        if self._deadline is not None:
            times.append(self._deadline)
        if self._garp_refresh_at is not None:
            times.append(self._garp_refresh_at)
        return min(times) if times else None

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Action]:
        """Leave INIT (RFC 5798 §6.4.1, keepalived ``vrrp_init_state``)."""
        self._tick(now)
        if self._state is not State.INIT:
            raise UsageError("already_started", self._state.value)
        if self._faults:
            self._state = State.FAULT
            return [StateChanged(State.INIT, State.FAULT, "fault", self._fault_detail())]
        if self._params.address_owner:
            return self._become_master(now, State.INIT, "address_owner")
        self._state = State.BACKUP
        self._master_adver_int = self._params.advert_int
        if self._params.initial_state is State.MASTER:
            self._takeover_reason = "initial_master"
            self._arm_down_timer(now, self._master_adver_int + self._skew(1))
        else:
            self._takeover_reason = "master_no_response"
            self._arm_down_timer(now, self.master_down_interval)
        return [StateChanged(State.INIT, State.BACKUP, "start")]

    def timer(self, now: float) -> list[Action]:
        """Fire whatever timers are due at ``now``; early calls do nothing."""
        self._tick(now)
        if self._state is State.BACKUP:
            if self._deadline is not None and now >= self._deadline:
                return self._become_master(now, State.BACKUP, self._takeover_reason)
            return []
        if self._state is not State.MASTER:
            return []
        actions: list[Action] = []
        if self._deadline is not None and now >= self._deadline:
            actions.append(SendAdvert(self._priority, self._params.advert_int))
            self._deadline = now + self._params.advert_int
        due = [repeat for at, repeat in self._garp_pending if now >= at]
        if due:
            self._garp_pending = [(at, r) for at, r in self._garp_pending if now < at]
            actions.extend(SendGratuitous(self._params.virtual_addresses, r) for r in due if r)
        if self._garp_refresh_at is not None and now >= self._garp_refresh_at:
            repeat = self._params.garp_master_refresh_repeat
            if repeat:
                actions.append(SendGratuitous(self._params.virtual_addresses, repeat))
            self._garp_refresh_at = now + self._params.garp_master_refresh
        return actions

    def advert_received(self, advert: AdvertLike, src: IPAddress, now: float) -> list[Action]:
        """Process an ADVERTISEMENT from ``src`` (the IP source address).

        The driver has already parsed and checksummed the packet and picked this
        instance by VRID; the machine applies the instance-level checks of
        RFC 5798 §7.1 / RFC 3768 §7.1 and the election rules of §6.4.2/§6.4.3.
        """
        self._tick(now)
        if self._state not in (State.BACKUP, State.MASTER):
            return [Discarded("not_running", self._state.value)]
        actions: list[Action] = []
        reason = self._check(advert, src, actions)
        if reason is not None:
            actions.append(Discarded(reason, str(src)))
            return actions
        if self._state is State.BACKUP:
            actions.extend(self._backup_rx(advert, src, now))
        else:
            actions.extend(self._master_rx(advert, src, now))
        return actions

    def set_effective_priority(self, priority: int, now: float) -> list[Action]:
        """Adopt a new effective priority (from tracking); an owner's never changes."""
        self._tick(now)
        if self._state is State.STOPPED or self._params.address_owner:
            return []
        if not _is_int(priority) or not 1 <= priority < OWNER_PRIORITY:
            raise UsageError("invalid_priority", repr(priority))
        if priority == self._priority:
            return []
        old = self._priority
        self._priority = priority
        if self._state is State.BACKUP and self._deadline is not None:
            new_down = self.master_down_interval
            self._deadline += new_down - self._down_timer
            self._down_timer = new_down
        return [PriorityChanged(old, priority)]

    def set_fault(self, source: str, active: bool, now: float) -> list[Action]:
        """Raise or clear one fault source (e.g. ``"tracking"``, ``"interface"``).

        The instance is in FAULT while any source is active.  Before :meth:`start`
        this only records the fault, so the instance starts in FAULT.
        """
        self._tick(now)
        if self._state is State.STOPPED:
            return []
        was_faulty = bool(self._faults)
        if active:
            self._faults.add(source)
        else:
            self._faults.discard(source)
        if was_faulty == bool(self._faults) or self._state is State.INIT:
            return []
        if self._faults:
            return self._enter_fault(now, source)
        if self._state is not State.FAULT:
            return []
        if self._params.address_owner:
            return self._become_master(now, State.FAULT, "address_owner")
        self._enter_backup(now)
        self._takeover_reason = "master_no_response"
        return [StateChanged(State.FAULT, State.BACKUP, "fault_cleared", source)]

    def update_tracking(
        self, result: EffectivePriority, now: float, source: str = "tracking"
    ) -> list[Action]:
        """Apply :func:`mailha.vrrp.tracking.effective_priority`'s answer in one step."""
        actions = self.set_effective_priority(result.priority, now)
        actions.extend(self.set_fault(source, result.fault, now))
        return actions

    def set_virtual_addresses(self, addresses: tuple[IPAddress, ...]) -> None:
        """A reload changed the VIPs in place: later announcements name the new ones.

        The addresses themselves are the driver's to add and remove (it holds their
        configuration); what the machine keeps is the list its gratuitous ARP/NA and
        its FAULT/stop releases name, which must not stay the one it started with.
        """
        self._params = replace(self._params, virtual_addresses=addresses)

    def shutdown(self, now: float) -> list[Action]:
        """Stop for good; a master says so with priority 0 so a backup takes over fast."""
        self._tick(now)
        old = self._state
        if old is State.STOPPED:
            return []
        self._state = State.STOPPED
        self._clear_timers()
        actions: list[Action] = [StateChanged(old, State.STOPPED, "shutdown")]
        if old is State.MASTER:
            actions.append(SendAdvert(0, self._params.advert_int))
            actions.append(RemoveVips(self._params.virtual_addresses))
        return actions

    # ---------------------------------------------------------------- election

    def _backup_rx(self, advert: AdvertLike, src: IPAddress, now: float) -> list[Action]:
        p = self._params
        if advert.priority == 0:
            # The master is leaving: take over after Skew_Time (RFC 5798 §6.4.2).
            self._arm_down_timer(now, self.skew_time)
            self._takeover_reason = "master_released"
            return []
        preempt_waiting = p.preempt_delay > 0 and (
            self._preempt_time is None or self._preempt_time > now
        )
        if p.nopreempt or advert.priority >= self._priority or preempt_waiting:
            actions = self._learn_interval(advert)
            self._arm_down_timer(now, self.master_down_interval)
            self._master_address = src
            self._takeover_reason = "master_no_response"
            if p.preempt_delay > 0:
                if advert.priority >= self._priority:
                    self._preempt_time = None
                elif self._preempt_time is None:
                    self._preempt_time = now + p.preempt_delay
            return actions
        # A lower-priority master and we may preempt: ignore it and let the
        # down timer, still counting from the last advert we accepted, run out.
        self._master_address = src
        self._takeover_reason = "preempted"
        return [Discarded("lower_priority", f"{src} priority {advert.priority}")]

    def _master_rx(self, advert: AdvertLike, src: IPAddress, now: float) -> list[Action]:
        p = self._params
        if advert.priority == 0:
            self._deadline = now + p.advert_int
            return [SendAdvert(self._priority, p.advert_int)]
        ours = int(p.primary_address)
        theirs = int(src)
        actions: list[Action] = []
        if advert.priority == self._priority:
            if theirs == ours:
                return [Discarded("own_address", str(src))]
            if self._priority == OWNER_PRIORITY:
                actions.extend(self._report("owner_conflict", f"{src} also claims priority 255"))
        if advert.priority < self._priority or (
            advert.priority == self._priority and theirs < ours
        ):
            actions.append(Discarded("lower_priority", f"{src} priority {advert.priority}"))
            if not p.lower_prio_no_advert:
                actions.append(SendAdvert(self._priority, p.advert_int))
            repeat, delay = p.lower_prio_garp
            if repeat:
                actions.append(SendGratuitous(p.virtual_addresses, repeat))
                if delay > 0:
                    self._garp_pending.append((now + delay, repeat))
            return actions
        reason = (
            "higher_priority"
            if advert.priority > self._priority
            else "equal_priority_higher_address"
        )
        if p.higher_prio_send_advert:
            # keepalived: one last advert at our (lower) priority before yielding, so
            # the winner, if it sends garp_lower_prio_repeat GARPs, re-asserts the VIP
            # after two masters may both have claimed it.
            actions.append(SendAdvert(self._priority, p.advert_int))
        actions.insert(0, StateChanged(State.MASTER, State.BACKUP, reason, str(src)))
        actions.append(RemoveVips(p.virtual_addresses))
        self._clear_timers()
        self._state = State.BACKUP
        self._reported.clear()
        actions.extend(self._learn_interval(advert))
        self._arm_down_timer(now, self.master_down_interval)
        self._preempt_time = None
        self._master_address = src
        self._takeover_reason = "master_no_response"
        return actions

    # ------------------------------------------------------------- transitions

    def _become_master(self, now: float, old: State, reason: str) -> list[Action]:
        p = self._params
        self._state = State.MASTER
        self._reported.clear()
        self._master_adver_int = p.advert_int
        self._master_address = p.primary_address
        self._preempt_time = None
        self._deadline = now + p.advert_int
        self._garp_pending = []
        if p.garp_master_delay > 0 and p.garp_master_repeat:
            self._garp_pending.append((now + p.garp_master_delay, p.garp_master_repeat))
        self._garp_refresh_at = (
            now + p.garp_master_delay + p.garp_master_refresh if p.garp_master_refresh > 0 else None
        )
        # Advertise first so the old master drops the addresses before our ARPs.
        actions: list[Action] = [
            StateChanged(old, State.MASTER, reason),
            SendAdvert(self._priority, p.advert_int),
            AddVips(p.virtual_addresses),
        ]
        if p.garp_master_repeat:
            actions.append(SendGratuitous(p.virtual_addresses, p.garp_master_repeat))
        return actions

    def _enter_fault(self, now: float, source: str) -> list[Action]:
        old = self._state
        self._state = State.FAULT
        self._reported.clear()
        self._clear_timers()
        self._preempt_time = None
        actions: list[Action] = [StateChanged(old, State.FAULT, "fault", source)]
        if old is State.MASTER:
            actions.append(SendAdvert(0, self._params.advert_int))
            actions.append(RemoveVips(self._params.virtual_addresses))
        return actions

    def _enter_backup(self, now: float) -> None:
        self._state = State.BACKUP
        self._reported.clear()
        self._master_adver_int = self._params.advert_int
        self._preempt_time = None
        self._arm_down_timer(now, self.master_down_interval)

    # ----------------------------------------------------------------- helpers

    def _check(self, advert: AdvertLike, src: IPAddress, actions: list[Action]) -> str | None:
        """Instance-level receive checks; return a discard reason or None.

        Non-fatal findings are appended to ``actions`` as diagnostics.
        """
        p = self._params
        try:
            vrid, version, priority = advert.vrid, advert.version, advert.priority
            interval = advert.max_advert_int
        except (AttributeError, TypeError) as exc:  # not an advert at all
            return f"malformed:{type(exc).__name__}"
        if vrid != p.vrid:
            return "vrid_mismatch"
        if version != p.version:
            return "version_mismatch"
        if not _is_int(priority) or not 0 <= priority <= OWNER_PRIORITY:
            return "invalid_priority"
        if not isinstance(src, IPv4Address | IPv6Address) or (
            src.version != p.primary_address.version
        ):
            return "address_family_mismatch"
        if not _finite(interval) or interval <= 0:
            return "invalid_interval"
        if _centis(interval) != _centis(p.advert_int):
            if p.version == 2:
                return "interval_mismatch"
            detail = f"{src} advertises {interval}s, ours {p.advert_int}s"
            actions.extend(self._report("interval_mismatch", detail))
        # The address list is compared once, with keepalived's rules, where adverts are
        # admitted (:func:`mailha.vrrp.admission.address_list_mismatch`): it never
        # changes the election, so the machine does not look at it.
        return None

    def _learn_interval(self, advert: AdvertLike) -> list[Action]:
        if self._params.version != 3 or not self._params.learn_master_interval:
            return []
        learned = _centis(advert.max_advert_int) / 100
        if learned == self._master_adver_int:
            return []
        old = self._master_adver_int
        self._master_adver_int = learned
        return [Diagnostic("interval_learned", f"{old}s -> {learned}s")]

    def _report(self, reason: str, detail: str) -> list[Action]:
        """Emit a diagnostic once per state, like keepalived's rate-limited log."""
        key = (reason, detail)
        if key in self._reported:
            return []
        self._reported.add(key)
        return [Diagnostic(reason, detail)]

    def _skew(self, weight: int) -> float:
        if self._params.version == 3:
            return weight * self._master_adver_int / 256
        return weight / 256

    def _arm_down_timer(self, now: float, length: float) -> None:
        self._down_timer = length
        self._deadline = now + length

    def _clear_timers(self) -> None:
        self._deadline = None
        self._garp_pending = []
        self._garp_refresh_at = None

    def _fault_detail(self) -> str:
        return ",".join(sorted(self._faults))

    def _tick(self, now: float) -> None:
        now = self._valid_time(now)
        if now < self._now - _TIME_EPSILON:
            raise UsageError("time_went_backwards", f"{now} < {self._now}")
        self._now = max(now, self._now)

    @staticmethod
    def _valid_time(now: float) -> float:
        if not _finite(now):
            raise UsageError("invalid_time", repr(now))
        return float(now)
