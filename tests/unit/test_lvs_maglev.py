"""Maglev (mh) services: canonical destination order, quiesced destinations, fingerprints.

Checked against :class:`ipvs_model.Kernel`, which lists destinations as the kernel does
(an added one goes to the head) and keeps each one's ``last_weight`` (what sizes its
share of the lookup table): the planner's rules must make two directors with different
histories hold the same list, weights and last weights, i.e. the same Maglev table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipvs_model import Kernel
from prometheus_client.parser import text_string_to_metric_families

from mailha.lvs.maglev import (
    FINGERPRINT_BITS,
    FingerprintMemo,
    canonical_order,
    fingerprint,
    in_canonical_order,
    kept_tail,
)
from mailha.lvs.model import (
    MH_FALLBACK,
    MH_PORT,
    Destination,
    DestKey,
    Forward,
    Service,
    ServiceKey,
    ServiceRow,
)
from mailha.lvs.planner import AddDest, AddService, DelDest, EditDest, Op, plan
from mailha.metrics import IpvsSnapshot, Metrics

VIP = ServiceKey.for_address("10.12.49.37", 25)
MH = Service(VIP, "mh", MH_FALLBACK | MH_PORT)


def dest(last_octet: int, weight: int = 1, table_weight: int | None = None,
         **more: object) -> Destination:
    """A real server 10.1.0.N:25; quiesced ones carry their table weight, as desired.py does."""
    if weight == 0 and table_weight is None:
        table_weight = 1
    return Destination(ip_address(f"10.1.0.{last_octet}"), 25, weight=weight,
                       table_weight=table_weight if weight == 0 else None, **more)  # type: ignore[arg-type]


def row(*dests: Destination, service: Service = MH) -> ServiceRow:
    """A row whose destinations are listed in the order given (head first)."""
    return ServiceRow(service, {d.key: d for d in dests})


def apply(kernel: Kernel, ops: list[Op]) -> None:
    for op in ops:
        kernel.apply(op)


def listed(kernel: Kernel) -> list[int]:
    return [int(k.address) & 0xFF for k in kernel.table()[VIP].destinations]


# ------------------------------------------------------------------------ examples


def test_a_new_service_is_built_in_canonical_order() -> None:
    want = row(dest(10), dest(30), dest(20))
    ops = plan({VIP: want}, {})
    assert ops == [AddService(MH), AddDest(VIP, dest(10)), AddDest(VIP, dest(20)),
                   AddDest(VIP, dest(30))]
    kernel = Kernel({})
    apply(kernel, ops)
    assert listed(kernel) == [30, 20, 10]  # the head is the highest: canonical order
    assert plan({VIP: want}, kernel.table(), {VIP}) == []


def test_a_list_in_canonical_order_is_adopted_without_operations() -> None:
    assert plan({VIP: row(dest(10), dest(20))}, {VIP: row(dest(20), dest(10))}, {VIP}) == []


def test_other_schedulers_ignore_the_order() -> None:
    wlc = Service(VIP, "wlc")
    assert plan({VIP: row(dest(20), dest(10), service=wlc)},
                {VIP: row(dest(10), dest(20), service=wlc)}, {VIP}) == []


def test_a_reversed_list_is_reordered_with_the_fewest_moves() -> None:
    kernel = Kernel({VIP: row(dest(10), dest(20), dest(30))})
    ops = plan({VIP: row(dest(10), dest(20), dest(30))}, kernel.table(), {VIP})
    # 10 can stay at the tail; 20 then 30 are moved, each deleted right before its re-add.
    assert ops == [DelDest(VIP, dest(20).key), AddDest(VIP, dest(20)),
                   DelDest(VIP, dest(30).key), AddDest(VIP, dest(30))]
    apply(kernel, ops)
    assert listed(kernel) == [30, 20, 10]


def test_a_new_real_server_at_the_head_needs_no_move() -> None:
    ops = plan({VIP: row(dest(10), dest(20), dest(30))}, {VIP: row(dest(20), dest(10))}, {VIP})
    assert ops == [AddDest(VIP, dest(30))]


def test_a_new_real_server_in_the_middle_moves_only_those_above_it() -> None:
    kernel = Kernel({VIP: row(dest(40), dest(30), dest(10))})
    ops = plan({VIP: row(dest(10), dest(20), dest(30), dest(40))}, kernel.table(), {VIP})
    assert ops == [AddDest(VIP, dest(20)),
                   DelDest(VIP, dest(30).key), AddDest(VIP, dest(30)),
                   DelDest(VIP, dest(40).key), AddDest(VIP, dest(40))]
    apply(kernel, ops)
    assert listed(kernel) == [40, 30, 20, 10]


def test_a_removed_real_server_is_deleted_without_moving_the_others() -> None:
    ops = plan({VIP: row(dest(10), dest(30))}, {VIP: row(dest(30), dest(20), dest(10))}, {VIP})
    assert ops == [DelDest(VIP, dest(20).key)]


def test_a_failed_real_server_is_quiesced_in_place() -> None:
    kernel = Kernel({VIP: row(dest(30), dest(20), dest(10))})
    ops = plan({VIP: row(dest(30), dest(20, 0), dest(10))}, kernel.table(), {VIP})
    assert ops == [EditDest(VIP, dest(20, 0))]
    apply(kernel, ops)
    assert listed(kernel) == [30, 20, 10]
    assert kernel.last[VIP][dest(20).key] == 1  # its slots stay: the table does not change


def test_a_quiesced_real_server_is_added_at_its_table_weight_then_quiesced() -> None:
    # A director that starts while the server is down must give it the slots that a
    # director which saw it up (and then quiesced it) still gives it.
    quiesced = dest(20, 0, table_weight=3)
    ops = plan({VIP: row(dest(10), quiesced)}, {})
    assert ops == [AddService(MH), AddDest(VIP, dest(10)),
                   AddDest(VIP, replace(quiesced, weight=3)), EditDest(VIP, quiesced)]
    kernel = Kernel({})
    apply(kernel, ops)
    assert kernel.last[VIP][quiesced.key] == 3
    assert kernel.table()[VIP].destinations[quiesced.key].weight == 0


def test_quiescing_from_a_dynamic_weight_resizes_to_the_table_weight_first() -> None:
    kernel = Kernel({VIP: row(dest(20, 5), dest(10))})
    quiesced = dest(20, 0, table_weight=2)
    ops = plan({VIP: row(dest(10), quiesced)}, kernel.table(), {VIP})
    assert ops == [EditDest(VIP, replace(quiesced, weight=2)), EditDest(VIP, quiesced)]
    apply(kernel, ops)
    assert kernel.last[VIP][quiesced.key] == 2


def test_an_already_quiesced_real_server_needs_nothing() -> None:
    # Its last weight cannot be read back; asking for it would mean making it available.
    assert plan({VIP: row(dest(20, 0, table_weight=4), dest(10))},
                {VIP: row(dest(20, 0), dest(10))}, {VIP}) == []


def test_a_quiesced_real_server_with_no_table_weight_is_added_at_zero() -> None:
    # Configured weight 0: the server never takes a share, on any director.
    zero = dest(20, 0, table_weight=0)
    assert plan({VIP: row(zero)}, {}) == [AddService(MH), AddDest(VIP, zero)]


def test_kept_tail_examples() -> None:
    a, b, c, d = (DestKey(ip_address(f"10.1.0.{n}"), 25) for n in (4, 3, 2, 1))
    assert kept_tail([a, b, c, d], [a, b, c, d]) == 0
    assert kept_tail([a, b, c, d], []) == 4
    assert kept_tail([a, b, c, d], [d, c, b, a]) == 3
    assert kept_tail([a, b, c, d], [b, a, c, d]) == 1
    assert kept_tail([a, b, c, d], [c, a, d]) == 2  # b is new, a must move
    assert in_canonical_order([a, c, d]) and not in_canonical_order([c, a])
    assert canonical_order([d, b, c, a]) == [a, b, c, d]


# ------------------------------------------------------------------ properties

_OCTETS = (10, 20, 30, 40, 50)
_SORRY = 35  # between the real servers: stepping in means moving the ones above it


@st.composite
def kernel_rows(draw: st.DrawFn) -> ServiceRow:
    """Any list the kernel may hold: any order, weights, settings."""
    octets = draw(st.permutations(_OCTETS))[: draw(st.integers(0, len(_OCTETS)))]
    forwards = st.sampled_from([Forward.MASQ, Forward.ROUTE])
    return row(*(dest(o, draw(st.integers(0, 3)), forward=draw(forwards)) for o in octets))


@st.composite
def desired_rows(draw: st.DrawFn) -> ServiceRow:
    octets = draw(st.sets(st.sampled_from(_OCTETS)))
    dests = []
    for o in sorted(octets):
        weight = draw(st.integers(0, 3))
        dests.append(dest(o, weight, table_weight=draw(st.integers(0, 3)) if weight == 0 else None))
    return row(*draw(st.permutations(dests)))


@settings(max_examples=300, deadline=None)
@given(kernel_rows(), desired_rows())
def test_any_kernel_list_ends_in_canonical_order_with_the_fewest_moves(
    observed: ServiceRow, want: ServiceRow
) -> None:
    kernel = Kernel({VIP: observed})
    ops = plan({VIP: want}, kernel.table(), {VIP})
    apply(kernel, ops)
    result = kernel.table()[VIP]
    assert result == want
    assert list(result.destinations) == canonical_order(want.destinations)
    assert plan({VIP: want}, kernel.table(), {VIP}) == []
    # Every quiesced destination the plan added or quiesced has its table weight's slots.
    for key, wanted in want.destinations.items():
        before = observed.destinations.get(key)
        touched = before is None or before.weight != 0 or any(
            isinstance(op, DelDest) and op.dest == key for op in ops)
        if wanted.weight == 0 and touched and wanted.table_weight:
            assert kernel.last[VIP][key] == wanted.table_weight, key
    moved = sum(isinstance(op, DelDest) and op.dest in want.destinations for op in ops)
    assert moved == _fewest_moves(canonical_order(want.destinations),
                                  [k for k in observed.destinations if k in want.destinations])


def _fewest_moves(canonical: list[DestKey], present: list[DestKey]) -> int:
    """By brute force: the fewest destinations to take out of ``present`` (and re-add at
    the head) so that those left are a tail of ``canonical`` in the same order."""
    for moved in range(len(present) + 1):
        for out in itertools.combinations(range(len(present)), moved):
            left = [k for i, k in enumerate(present) if i not in out]
            if left == canonical[len(canonical) - len(left):]:
                return moved
    raise AssertionError("unreachable: moving everything always works")


@dataclass
class Director:
    """One director's kernel and what its checks and its configuration say."""

    weights: dict[int, int]  # configured weight of each real server (the same everywhere)
    sorry: bool
    kernel: Kernel = field(default_factory=lambda: Kernel({}))
    config: set[int] = field(default_factory=lambda: set(_OCTETS))
    down: set[int] = field(default_factory=set)
    drained: set[int] = field(default_factory=set)

    def desired(self) -> ServiceRow:
        """What desired.py makes of the pool: inhibit_on_failure, forced for mh."""
        dests = [dest(o, 0 if o in self.down | self.drained else self.weights[o],
                      table_weight=self.weights[o]) for o in sorted(self.config)]
        if self.sorry and not any(d.weight for d in dests):
            dests.append(dest(_SORRY, 1))  # quorum lost: the sorry server steps in
        return row(*dests)

    def event(self, what: str, octet: int) -> None:
        match what:
            case "fail":
                self.down.add(octet)
            case "recover":
                self.down.discard(octet)
            case "drain":
                self.drained.add(octet)
            case "undrain":
                self.drained.discard(octet)
            case "unconfigure":
                self.config.discard(octet)
            case "configure":
                self.config.add(octet)
            case "reboot":  # the kernel's table is gone; mailha builds it again
                self.kernel = Kernel({})
            case "legacy":  # a table built by another tool, in its own order
                self.kernel = Kernel({VIP: row(*(dest(o, self.weights[o])
                                                 for o in sorted(self.config)[::-1][::2]))})
        self.reconcile()

    def reconcile(self) -> None:
        apply(self.kernel, plan({VIP: self.desired()}, self.kernel.table(), {VIP}))


_EVENTS = st.tuples(
    st.sampled_from(["fail", "recover", "drain", "undrain", "unconfigure", "configure",
                     "reboot", "legacy"]),
    st.sampled_from(_OCTETS),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 3), min_size=len(_OCTETS), max_size=len(_OCTETS)),
    st.booleans(),
    st.lists(_EVENTS, max_size=12),
    st.lists(_EVENTS, max_size=12),
    st.sets(st.sampled_from(_OCTETS)),
    st.sets(st.sampled_from(_OCTETS)),
    st.sets(st.sampled_from(_OCTETS)),
)
def test_two_directors_with_different_histories_build_the_same_table(
    weights: list[int], sorry: bool, history_a: list[tuple[str, int]],
    history_b: list[tuple[str, int]], config: set[int], down: set[int], drained: set[int],
) -> None:
    configured = dict(zip(_OCTETS, weights, strict=True))
    a, b = Director(configured, sorry), Director(configured, sorry)
    for director, history in ((a, history_a), (b, history_b)):
        director.reconcile()
        for what, octet in history:
            director.event(what, octet)
        # Both end with the same configuration and the same verdicts of their checks.
        director.config, director.down, director.drained = set(config), set(down), set(drained)
        director.reconcile()
    assert a.kernel.maglev_table(VIP) == b.kernel.maglev_table(VIP)
    assert fingerprint(a.kernel.table()[VIP]) == fingerprint(b.kernel.table()[VIP])
    assert in_canonical_order(list(a.kernel.table()[VIP].destinations))


# ------------------------------------------------------------------ fingerprint


def test_the_fingerprint_is_stable_across_versions_and_machines() -> None:
    # Directors running different mailha versions must agree: never change this value
    # without a reason worth an alert on every cluster during its rolling upgrade.
    value = fingerprint(row(dest(30), dest(20, 0), dest(10, 2)))
    assert value == GOLDEN
    assert 0 <= value < 2**FINGERPRINT_BITS
    assert int(float(value)) == value  # exact as a float64 gauge


GOLDEN = 1433621266840484


@pytest.mark.parametrize(
    "other",
    [
        row(dest(20, 0), dest(30), dest(10, 2)),  # another order
        row(dest(30), dest(20, 1), dest(10, 2)),  # another weight
        row(dest(30), dest(10, 2)),  # one destination fewer
        row(dest(30), dest(20, 0), dest(10, 2), service=Service(VIP, "mh", MH_FALLBACK)),
        row(dest(30), dest(20, 0), dest(10, 2), service=Service(VIP, "sh", MH_FALLBACK | MH_PORT)),
    ],
)
def test_the_fingerprint_changes_with_what_decides_the_table(other: ServiceRow) -> None:
    assert fingerprint(other) != fingerprint(row(dest(30), dest(20, 0), dest(10, 2)))


def test_the_fingerprint_ignores_what_does_not_decide_the_table() -> None:
    base = row(dest(30), dest(20, 0), dest(10, 2))
    other = row(dest(30, forward=Forward.ROUTE), dest(20, 0, table_weight=7),
                dest(10, 2, u_threshold=100), service=Service(ServiceKey.for_address(
                    "10.12.49.38", 25), "mh", MH_FALLBACK | MH_PORT))
    assert fingerprint(other) == fingerprint(base)


def test_the_memo_hashes_a_row_once_and_again_when_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mailha.lvs.maglev as maglev

    calls: list[ServiceRow] = []
    real = maglev.fingerprint
    monkeypatch.setattr(maglev, "fingerprint", lambda r: calls.append(r) or real(r))
    memo = FingerprintMemo()
    first = row(dest(20), dest(10))
    other = ServiceKey.for_address("10.12.49.37", 587)
    assert memo({VIP: first}, [VIP, other]) == {VIP: real(first)}
    assert memo({VIP: first}, [VIP]) == {VIP: real(first)}
    assert len(calls) == 1
    changed = row(dest(20), dest(10, 0))
    assert memo({VIP: changed}, [VIP]) == {VIP: real(changed)}
    assert len(calls) == 2


def test_the_metric_carries_the_fingerprint_exactly() -> None:
    m = Metrics()
    value = 2**FINGERPRINT_BITS - 1
    m.ipvs = IpvsSnapshot(fingerprints={"TCP 10.12.49.37:25": value})
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    (sample,) = families["mailha_ipvs_table_fingerprint"].samples
    assert sample.labels == {"service": "TCP 10.12.49.37:25"}
    assert int(sample.value) == value and sample.value == float(value)
