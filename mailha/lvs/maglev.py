"""Maglev hashing (IPVS ``mh``): what makes every director build the same lookup table.

Several directors behind a router's ECMP each receive part of the flows, and an ECMP
rehash (a director added, withdrawn or back) moves flows from one director to another
mid-flight. The flow survives only if the new director sends it to the same real
server as the old one, with no shared state: both must build the same Maglev lookup
table. What that table depends on, from the kernel's ``net/netfilter/ipvs/ip_vs_mh.c``
and ``ip_vs_ctl.c`` (Linux 4.18 and later):

* **Each destination's preferences** (its ``offset`` and ``skip`` through the table)
  are a hash of its address and port with *fixed* keys (``generate_hash_secret``:
  constants, nothing per boot or per machine), so they are the same everywhere. The
  table has a prime number of slots fixed when the kernel is built
  (``CONFIG_IP_VS_MH_TAB_INDEX``, 4093 slots by default): directors should run the
  same kernel configuration.
* **The order of the service's destination list.** ``ip_vs_mh_populate`` walks the
  list round after round, each destination claiming its next free preferred slot,
  ``turns`` times per round, so the order decides who gets a slot that two destinations
  contend for while the table fills: few slots, but another order is another table
  (tests/kernel/test_maglev_directors.py: 3 of 1,000 flows went elsewhere with three
  real servers). A destination is *added at the head* of the list (``list_add_rcu`` in
  ``__ip_vs_update_dest``), deleted from wherever it is, and edited in place; a dump
  (``ipvsadm -Ln``, :meth:`mailha.lvs.netlink.IpvsNetlink.observe`) walks the list, so
  the observed table shows the order.
* **Each destination's last weight.** ``turns`` is the destination's ``last_weight``
  divided by the gcd of all of them (shifted right when the largest is huge), at least 1
  when it is not 0. Adding a destination sets ``last_weight`` to its weight; editing sets
  it only to a *non-zero* weight. So a destination edited down to weight 0 keeps its
  slots, while one added at weight 0 has none, and every other destination's share moves
  with it (the same test: 174 of 1,000 flows). The kernel never reports ``last_weight``.
* **Availability.** A slot whose destination has weight 0 (or is over its upper
  threshold) is unavailable: without ``mh-fallback`` the new connection is refused,
  with it the flow is re-hashed to the next available destination (again a pure
  function of the table). ``mh-port`` hashes the client's port with its address.

So mailha's planner (:func:`mailha.lvs.planner.plan`) keeps these rules for ``mh``
services, and the same rules on every director give the same table whatever each
director's history (restarts, reloads, real servers that failed and came back):

1. **One canonical order**: :func:`canonical_order`, highest (family, address, port)
   at the head. Building a service from scratch therefore adds its destinations in
   ascending order, which is what mailha always did: a director whose pool never
   changed needs no re-ordering after an upgrade.
2. **Re-ordering with the least disruption**: since only the head can be added to, the
   planner keeps the longest tail of the canonical order that the kernel already holds
   in order (:func:`kept_tail`) and deletes and re-adds only the destinations before it,
   each deletion immediately followed by its re-add in the same netlink batch. No
   weight change can move a destination, so this is the only way; it is cheap for live
   connections because a deleted destination goes to the kernel's trash and the re-add
   takes it back from there (``ip_vs_trash_get_dest``), its connections still attached.
   With ``expire_nodest_conn = 1`` (which mailha sets) a packet of such a connection
   that arrives in the microseconds between the two operations expires it; the
   kernel's sweep of connections without a destination is queued to run a jiffy
   (1-4 ms) after the deletion and normally finds the destination back by then.
   Re-ordering happens only when the set of destinations changes (a real server added
   to the config, a sorry server stepping in) or when the kernel holds a table built
   otherwise (by hand, by keepalived, by an older mailha).
3. **Quiesce, never delete, while a real server fails or is drained**: weight 0, so the
   list and every director's table stay the same and only that server's flows move
   (to the fallback). The loader makes ``inhibit_on_failure`` true for ``mh`` services
   and refuses ``false``; deleting would also force re-adding, later, every destination
   before it. A real server removed from the configuration is deleted: the table then
   changes alike on every director once they all run the new configuration.
4. **A quiesced destination's last weight is its table weight** (its configured
   weight, :attr:`mailha.lvs.model.Destination.table_weight`): one that is (re)added
   while quiesced is added at its table weight and edited to 0 in the same batch, and
   one quiesced from another weight (a dynamic weight) is first edited to its table
   weight. The price is a few microseconds in which a failed server is available. What
   cannot be fixed without making the server available: a table weight changed by a
   reload while the server is already quiesced takes effect when it comes back.

:func:`fingerprint` summarises what a dump shows of all this; mailha exports it per
service (``mailha_ipvs_table_fingerprint``) so an alert can catch directors that
disagree (deploy/prometheus/mailha-rules.yml).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Iterable, Mapping, Sequence

from mailha.config.model import MAGLEV
from mailha.lvs.model import DestKey, Service, ServiceKey, ServiceRow

__all__ = [
    "FINGERPRINT_BITS",
    "MAGLEV",
    "FingerprintMemo",
    "canonical_order",
    "fingerprint",
    "in_canonical_order",
    "is_maglev",
    "kept_tail",
]

#: Fingerprints are below 2**52: exactly representable as a float64 metric value.
FINGERPRINT_BITS = 52
_PERSON = b"mailha-mh-fp-v1"
_DEST = struct.Struct("!B16sHI")


def is_maglev(service: Service) -> bool:
    """True for a service whose table the order rules of this module apply to."""
    return service.scheduler == MAGLEV


def _rank(key: DestKey) -> tuple[int, bytes, int]:
    return key.sort_key()


def canonical_order(keys: Iterable[DestKey]) -> list[DestKey]:
    """The destination list every director converges to, head first (as dumped)."""
    return sorted(keys, key=_rank, reverse=True)


def in_canonical_order(keys: Sequence[DestKey]) -> bool:
    """Whether a dumped list is in canonical order (without sorting it)."""
    return all(_rank(a) > _rank(b) for a, b in itertools.pairwise(keys))


def kept_tail(canonical: Sequence[DestKey], observed: Sequence[DestKey]) -> int:
    """Where the longest tail of ``canonical`` that ``observed`` holds in order begins.

    ``observed`` is the kernel's list (head first); destinations in it that are not in
    ``canonical`` are about to be deleted and do not matter, since deleting keeps the
    others' order. ``canonical[k:]`` can stay where it is; ``canonical[:k]`` must be
    (re)added, in reverse, each at the head. Greedy from the end: matching each
    destination with the latest possible place leaves the most room for the others.
    """
    i = len(canonical) - 1
    for key in reversed(observed):
        if i < 0:
            break
        if key == canonical[i]:
            i -= 1
    return i + 1


def fingerprint(row: ServiceRow) -> int:
    """A stable 52-bit hash of what a dump shows of one service's Maglev table.

    Covers the scheduler, its flags (mh-port, mh-fallback) and the destinations in
    list order with their weights: what decides which real server a flow gets, as far
    as the kernel reports it (``last_weight`` of a quiesced destination is not
    reported; mailha's planner makes it the table weight, see the module docstring).
    The forwarding method, thresholds and counters are left out: they do not change
    the choice. The same table gives the same number on every machine and every run
    (BLAKE2b, not Python's salted ``hash``); 52 bits so that a Prometheus gauge (a
    float64) carries it exactly.
    """
    h = hashlib.blake2b(digest_size=8, person=_PERSON)
    service = row.service
    h.update(service.scheduler.encode("ascii") + b"\0")
    h.update(int(service.sched_flags).to_bytes(4, "big"))
    for dest in row.destinations.values():
        h.update(_DEST.pack(dest.address.version, dest.address.packed, dest.port, dest.weight))
    return int.from_bytes(h.digest(), "big") >> (64 - FINGERPRINT_BITS)


class FingerprintMemo:
    """:func:`fingerprint` of the rows of successive observes, computed once per row.

    The netlink adapter hands back the very same row object for a service whose dump
    did not change (its decode cache), so an unchanged table costs one identity test
    per service, not a hash: the periodic reads stay as cheap as before.
    """

    def __init__(self) -> None:
        self._last: dict[ServiceKey, tuple[ServiceRow, int]] = {}

    def __call__(
        self, rows: Mapping[ServiceKey, ServiceRow], keys: Iterable[ServiceKey]
    ) -> dict[ServiceKey, int]:
        """Fingerprints of ``rows[key]`` for each of ``keys`` that ``rows`` holds."""
        found: dict[ServiceKey, tuple[ServiceRow, int]] = {}
        for key in keys:
            row = rows.get(key)
            if row is None:
                continue
            last = self._last.get(key)
            value = last[1] if last is not None and last[0] is row else fingerprint(row)
            found[key] = (row, value)
        self._last = found
        return {key: value for key, (_, value) in found.items()}
