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

For Maglev (``mh``) services the *order* of the destination list is part of what
must match, and a quiesced destination is added in two steps: the rules, and why,
are in :mod:`mailha.lvs.maglev`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, replace
from typing import TypeAlias

from mailha.lvs.maglev import canonical_order, in_canonical_order, is_maglev, kept_tail
from mailha.lvs.model import Destination, DestKey, Service, ServiceKey, ServiceRow, Table


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
       ``AddDest`` (ascending destination order: see :mod:`mailha.lvs.maglev`); then
       ``EditDest`` (those leaving a positive weight first); then ``DelDest``;
    2. ``DelService`` for owned services no longer desired.

    A Maglev service's destinations must also end in canonical list order: those
    before the longest tail already in order are deleted and re-added, each pair
    adjacent, in place of step 1's ``AddDest`` (:func:`_plan_maglev`).
    """
    ops: list[Op] = []
    for key in sorted(desired, key=ServiceKey.sort_key):
        want = desired[key]
        have = observed.get(key)
        maglev = is_maglev(want.service)
        if have is None:
            ops.append(AddService(want.service))
            for dest in _sorted_dests(want.destinations.values()):
                ops.extend(_add(key, dest, maglev=maglev))
            continue
        if have == want and (not maglev or in_canonical_order(list(have.destinations))):
            continue  # the common case, decided without sorting anything
        if have.service != want.service:
            ops.append(EditService(want.service))
        if maglev:
            ops.extend(_plan_maglev(key, want, have))
        else:
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


def _plan_maglev(key: ServiceKey, want: ServiceRow, have: ServiceRow) -> list[Op]:
    """A Maglev service's destinations: canonical order, quiesced in place.

    ``canonical[:k]`` are (re)added at the head, last first, a destination already in
    the kernel deleted just before its re-add (the pair keeps its connections: see
    :mod:`mailha.lvs.maglev`); ``canonical[k:]`` stay and are edited if they differ.
    """
    canonical = canonical_order(want.destinations)
    k = kept_tail(canonical, [d for d in have.destinations if d in want.destinations])
    adds: list[Op] = []
    for dkey in reversed(canonical[:k]):
        if dkey in have.destinations:
            adds.append(DelDest(key, dkey))
        adds.extend(_add(key, want.destinations[dkey], maglev=True))
    edits: list[list[EditDest]] = []
    for dkey in canonical[k:]:
        dest, current = want.destinations[dkey], have.destinations[dkey]
        if current == dest:
            continue
        steps = [EditDest(key, dest)]
        if dest.weight == 0 and current.weight not in (0, dest.table_weight):
            # Quiesced from another weight: the kernel keeps the last non-zero one.
            resize = _table_sized(dest)
            if resize is not None:
                steps.insert(0, EditDest(key, resize))
        edits.append(steps)
    edits.sort(key=lambda steps: steps[-1].dest.weight == 0)
    gone = sorted(have.destinations.keys() - want.destinations.keys(), key=DestKey.sort_key)
    return [*adds, *(op for steps in edits for op in steps), *(DelDest(key, d) for d in gone)]


def _add(key: ServiceKey, dest: Destination, *, maglev: bool) -> list[Op]:
    """``AddDest``; for a quiesced Maglev destination, at its table weight, then quiesced.

    Added at weight 0 it would get no share of the lookup table, unlike the same
    server on a director that saw it up before it failed (:mod:`mailha.lvs.maglev`).
    """
    sized = _table_sized(dest) if maglev and dest.weight == 0 else None
    if sized is None:
        return [AddDest(key, dest)]
    return [AddDest(key, sized), EditDest(key, dest)]


def _table_sized(dest: Destination) -> Destination | None:
    """``dest`` at its table weight, or None when that is unknown or 0."""
    if not dest.table_weight:
        return None
    return replace(dest, weight=dest.table_weight)


def _sorted_dests(dests: Iterable[Destination]) -> list[Destination]:
    return sorted(dests, key=lambda d: d.key.sort_key())
