"""What the VRRP state machine tells its driver to do.

The machine in :mod:`mailha.vrrp.machine` never touches a socket, an address or a
clock.  Every input returns a list of the frozen action objects below; the driver
performs them in list order.  The order is part of the contract: when an instance
becomes master it must send its advertisement *before* it adds the addresses and
announces them, so that the old master (which drops them on hearing a better
advertisement) lets go before the gratuitous ARPs move the traffic.

``StateChanged`` always comes first in a list that contains it, so a driver can log
or notify the transition and then carry out the actions that realise it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailha.ip import IPAddress


class State(enum.Enum):
    """RFC 5798 §6.4 states, plus keepalived's FAULT and a terminal STOPPED."""

    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOPPED = "STOPPED"


@dataclass(frozen=True, slots=True)
class SendAdvert:
    """Send one ADVERTISEMENT now with this priority and interval (seconds).

    The driver fills in what does not change (VRID, version, virtual addresses,
    authentication) from the instance's parameters.  ``priority=0`` is the
    "I am leaving" advertisement that makes a backup take over after Skew_Time.
    """

    priority: int
    max_advert_int: float


@dataclass(frozen=True, slots=True)
class AddVips:
    """Configure the virtual addresses on this node (we are master now)."""

    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class RemoveVips:
    """Remove the virtual addresses from this node (we are no longer master)."""

    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class SendGratuitous:
    """Announce the addresses with ``repeat`` gratuitous ARPs / unsolicited NAs each.

    keepalived's ``garp_master_delay``/``garp_master_refresh`` timing is kept by
    the machine (it returns this action again when those timers fire); spacing
    the ``repeat`` packets (keepalived's ``garp_interval``) is the driver's job.
    """

    addresses: tuple[IPAddress, ...]
    repeat: int


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The instance moved from ``old`` to ``new``.

    ``reason`` is one of a fixed vocabulary (see :data:`TRANSITION_REASONS`);
    ``detail`` carries free text such as the fault source or the peer address.
    """

    old: State
    new: State
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PriorityChanged:
    """The effective priority (the one we advertise and use for Skew_Time) changed."""

    old: int
    new: int


@dataclass(frozen=True, slots=True)
class Discarded:
    """A received advertisement was dropped; ``reason`` is stable, for metrics.

    Reasons: ``vrid_mismatch``, ``version_mismatch``, ``invalid_priority``,
    ``invalid_interval``, ``interval_mismatch`` (VRRPv2 only, RFC 3768 §7.1),
    ``address_family_mismatch``, ``own_address``, ``lower_priority`` (RFC 5798
    §6.4.3: a master, or a preempting backup, ignores a lower-priority master),
    ``not_running`` (received in INIT, FAULT or STOPPED), and
    ``malformed:<ExceptionName>`` for an object that is not an advertisement at all.
    """

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Something worth logging that did not stop the advertisement being used.

    Reasons: ``address_list_mismatch`` (RFC 5798 §7.1: log and continue; keepalived
    2.2 does the same), ``interval_mismatch`` (VRRPv3, where the backup adopts the
    master's interval), ``interval_learned``, ``owner_conflict`` (two address owners).
    """

    reason: str
    detail: str = ""


Action = (
    SendAdvert
    | AddVips
    | RemoveVips
    | SendGratuitous
    | StateChanged
    | PriorityChanged
    | Discarded
    | Diagnostic
)

#: Every ``StateChanged.reason`` the machine produces.
TRANSITION_REASONS = frozenset(
    {
        "start",  # INIT -> BACKUP
        "address_owner",  # INIT/FAULT -> MASTER: priority 255 takes over at once
        "master_no_response",  # BACKUP -> MASTER: Master_Down_Timer expired
        "master_released",  # BACKUP -> MASTER after a priority-0 advertisement
        "preempted",  # BACKUP -> MASTER after ignoring a lower-priority master
        "initial_master",  # BACKUP -> MASTER: configured state MASTER, nobody heard
        "higher_priority",  # MASTER -> BACKUP
        "equal_priority_higher_address",  # MASTER -> BACKUP, RFC tie-break
        "fault",  # any -> FAULT
        "fault_cleared",  # FAULT -> BACKUP
        "shutdown",  # any -> STOPPED
    }
)
