"""Reconcile planning: the fewest kernel operations that turn what is into what should be.

:func:`plan` is pure: two tables and the set of services mailha owns in, a list of
operations out. It never asks the kernel anything, so it is tested exhaustively
against a model of the kernel's semantics, and the netlink adapter only has to carry
the operations out in order.

What the kernel can edit in place (``ip_vs_edit_service`` / ``ip_vs_edit_dest`` in
``net/netfilter/ipvs/ip_vs_ctl.c``) decides the shape of a plan:

* a service's scheduler, scheduler flags, persistence (flag, timeout, netmask),
  one-packet flag and persistence engine are all editable: one ``EditService``;
* its address family, protocol, address and port (or fwmark) are the lookup key of
  the service hash table and cannot change. A "changed address" is therefore another
  service: ``AddService`` for the new key, ``DelService`` for the old one;
* a destination's forwarding method, weight, thresholds and tunnel settings are
  editable (``__ip_vs_update_dest``); its family, address and port are its key.

Editing in place matters: deleting a service or destination drops its connections
from the scheduler's view (and sends established ones to the trash), while an edit
keeps them. Hence "adoption": a kernel service equal to the desired one yields no
operation, so restarting mailha on a live director drops nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import TypeAlias

from mailha.lvs.model import Destination, DestKey, Service, ServiceKey, Table


@dataclass(frozen=True, slots=True)
class AddService:
    service: Service

    def describe(self) -> str:
        return f"add service {self.service.key}"


@dataclass(frozen=True, slots=True)
class EditService:
    """Set every editable field of an existing service to ``service``'s values."""

    service: Service

    def describe(self) -> str:
        return f"edit service {self.service.key}"


@dataclass(frozen=True, slots=True)
class DelService:
    key: ServiceKey

    def describe(self) -> str:
        return f"delete service {self.key}"


@dataclass(frozen=True, slots=True)
class AddDest:
    service: ServiceKey
    dest: Destination

    def describe(self) -> str:
        return f"add destination {self.dest.key} to {self.service}"


@dataclass(frozen=True, slots=True)
class EditDest:
    service: ServiceKey
    dest: Destination

    def describe(self) -> str:
        return f"edit destination {self.dest.key} of {self.service}"


@dataclass(frozen=True, slots=True)
class DelDest:
    service: ServiceKey
    dest: DestKey

    def describe(self) -> str:
        return f"delete destination {self.dest} from {self.service}"


Op: TypeAlias = AddService | EditService | DelService | AddDest | EditDest | DelDest


def plan(desired: Table, observed: Table, owned: Set[ServiceKey] = frozenset()) -> list[Op]:
    """The minimal ordered operations that make ``observed`` match ``desired``.

    Only services that are desired or ``owned`` are looked at; any other kernel
    service is foreign (another tool's, an operator's) and left alone. ``owned``
    should hold every service mailha may have created and no longer wants, so that
    they are deleted.

    Order, chosen so that a service never runs without a usable destination when it
    need not:

    1. per desired service, in key order: ``AddService`` or ``EditService``; then
       ``AddDest``; then ``EditDest`` (those leaving a positive weight first); then
       ``DelDest``;
    2. ``DelService`` for owned services no longer desired.
    """
    ops: list[Op] = []
    for key in sorted(desired, key=ServiceKey.sort_key):
        want = desired[key]
        have = observed.get(key)
        if have is None:
            ops.append(AddService(want.service))
            ops.extend(AddDest(key, d) for d in _sorted_dests(want.destinations.values()))
            continue
        if have == want:  # the common case, decided without sorting anything
            continue
        if have.service != want.service:
            ops.append(EditService(want.service))
        ops.extend(_plan_dests(key, want.destinations, have.destinations))
    gone = (key for key in owned if key not in desired and key in observed)
    ops.extend(DelService(key) for key in sorted(gone, key=ServiceKey.sort_key))
    return ops


def _plan_dests(
    key: ServiceKey,
    want: Mapping[DestKey, Destination],
    have: Mapping[DestKey, Destination],
) -> list[Op]:
    adds: list[Op] = []
    edits: list[EditDest] = []
    for dest in _sorted_dests(want.values()):
        current = have.get(dest.key)
        if current is None:
            adds.append(AddDest(key, dest))
        elif current != dest:
            edits.append(EditDest(key, dest))
    # Edits that keep or make a destination usable go before those that quiesce one.
    edits.sort(key=lambda op: op.dest.weight == 0)
    dels = [DelDest(key, k) for k in sorted(have.keys() - want.keys(), key=DestKey.sort_key)]
    return [*adds, *edits, *dels]


def _sorted_dests(dests: Iterable[Destination]) -> list[Destination]:
    return sorted(dests, key=lambda d: d.key.sort_key())
