"""A model of the kernel's IPVS table semantics, for checking plans (a test helper).

What ``ip_vs_genl_set_cmd`` (``net/netfilter/ipvs/ip_vs_ctl.c``) does with each
planner operation, minus packets: refusals with the kernel's errnos, the order of a
service's destination list, and each destination's ``last_weight``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from mailha.lvs.maglev import canonical_order, is_maglev
from mailha.lvs.model import Destination, DestKey, Service, ServiceKey, ServiceRow, Table
from mailha.lvs.planner import AddDest, AddService, DelDest, DelService, EditDest, EditService, Op


class KernelError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(errno.errorcode[code])
        self.code = code


class Kernel:
    """What ip_vs_genl_set_cmd does with each command, minus packets.

    A service's destinations are its list, head first, as the kernel dumps it: an added
    destination goes to the head (``list_add_rcu``), an edit keeps its place. ``last``
    holds each one's ``last_weight`` (what sizes its share of a Maglev table): set by an
    add, and by an edit to a non-zero weight; ``None`` where the initial table does not
    tell (a destination found at weight 0).
    """

    def __init__(self, initial: Table) -> None:
        self.services: dict[ServiceKey, Service] = {k: v.service for k, v in initial.items()}
        self.dests: dict[ServiceKey, dict[DestKey, Destination]] = {
            k: dict(v.destinations) for k, v in initial.items()
        }
        self.last: dict[ServiceKey, dict[DestKey, int | None]] = {
            k: {d.key: d.weight or None for d in v.destinations.values()}
            for k, v in initial.items()
        }

    def table(self) -> dict[ServiceKey, ServiceRow]:
        return {k: ServiceRow(s, self.dests[k]) for k, s in self.services.items()}

    def maglev_table(self, key: ServiceKey) -> tuple[object, ...]:
        """Everything the kernel builds a Maglev table and answers lookups from."""
        service = self.services[key]
        return (service.scheduler, service.sched_flags,
                tuple((k, self.last[key][k], d.weight) for k, d in self.dests[key].items()))

    def usable(self, key: ServiceKey) -> int:
        return sum(1 for d in self.dests.get(key, {}).values() if d.weight > 0)

    def apply(self, op: Op) -> None:
        match op:
            case AddService(service):
                if service.key in self.services:
                    raise KernelError(errno.EEXIST)
                self.services[service.key] = service
                self.dests[service.key] = {}
                self.last[service.key] = {}
            case EditService(service):
                self._service(service.key)
                self.services[service.key] = service
            case DelService(key):
                self._service(key)
                del self.services[key], self.dests[key], self.last[key]
            case AddDest(key, dest):
                if dest.key in self._service(key):
                    raise KernelError(errno.EEXIST)
                self.dests[key] = {dest.key: dest, **self.dests[key]}
                self.last[key][dest.key] = dest.weight
            case EditDest(key, dest):
                if dest.key not in self._service(key):
                    raise KernelError(errno.ENOENT)
                self.dests[key][dest.key] = dest
                if dest.weight:
                    self.last[key][dest.key] = dest.weight
            case DelDest(key, dkey):
                if dkey not in self._service(key):
                    raise KernelError(errno.ENOENT)
                del self.dests[key][dkey], self.last[key][dkey]

    def _service(self, key: ServiceKey) -> dict[DestKey, Destination]:
        if key not in self.services:
            raise KernelError(errno.ESRCH)
        return self.dests[key]


def as_listed(desired: Table) -> dict[ServiceKey, ServiceRow]:
    """``desired`` as a kernel that holds it lists it: Maglev rows in canonical order."""
    out = {}
    for key, row in desired.items():
        if is_maglev(row.service):
            order = canonical_order(row.destinations)
            row = ServiceRow(row.service, {k: row.destinations[k] for k in order})
        out[key] = row
    return out


def run(observed: Table, ops: Iterable[Op]) -> dict[ServiceKey, ServiceRow]:
    kernel = Kernel(observed)
    for op in ops:
        kernel.apply(op)
    return kernel.table()
