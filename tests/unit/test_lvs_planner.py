"""The reconcile planner, checked against a model of the kernel's IPVS semantics."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipvs_model import Kernel, as_listed, run

from mailha.lvs.maglev import is_maglev
from mailha.lvs.model import (
    MH_FALLBACK,
    MH_PORT,
    NO_FLAGS,
    SH_PORT,
    Destination,
    Forward,
    IpProtocol,
    LvsModelError,
    Persistence,
    Service,
    ServiceFlags,
    ServiceKey,
    ServiceRow,
    Table,
    Tunnel,
    TunnelEncap,
    make_table,
)
from mailha.lvs.planner import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    Op,
    plan,
)

VIP = ServiceKey.for_address("10.12.49.37", 25)
OTHER = ServiceKey.for_address("10.12.49.37", 587)
FOREIGN = ServiceKey.for_address("192.0.2.80", 80)
N1 = Destination.of("10.12.49.35", 25)
N2 = Destination.of("10.12.49.36", 25)


def table(*servers: ServiceRow) -> dict[ServiceKey, ServiceRow]:
    return make_table(servers)


def vs(service: Service | ServiceKey, *dests: Destination) -> ServiceRow:
    if isinstance(service, ServiceKey):
        service = Service(service, "wlc")
    return ServiceRow.of(service, dests)


# ------------------------------------------------------------------------ examples


def test_empty_tables_need_nothing() -> None:
    assert plan({}, {}, set()) == []


def test_new_service_is_added_with_its_destinations_in_order() -> None:
    desired = table(vs(VIP, N2, N1))
    assert plan(desired, {}, set()) == [
        AddService(desired[VIP].service),
        AddDest(VIP, N1),
        AddDest(VIP, N2),
    ]


def test_adoption_of_an_equal_kernel_table_is_zero_ops() -> None:
    desired = table(vs(Service(VIP, "rr", persistence=Persistence(300, 24)), N1, N2))
    observed = table(vs(Service(VIP, "rr", persistence=Persistence(300, 24)), N2, N1))
    assert plan(desired, observed, set(desired)) == []


def test_full_length_persistence_prefix_reads_back_equal() -> None:
    # The kernel reports no granularity for /32; a desired /32 must not look different.
    assert Service(VIP, persistence=Persistence(60, 32)) == Service(
        VIP, persistence=Persistence(60)
    )


def test_weight_change_is_one_edit() -> None:
    observed = table(vs(VIP, N1, N2))
    heavier = Destination.of("10.12.49.36", 25, weight=5)
    assert plan(table(vs(VIP, N1, heavier)), observed, {VIP}) == [EditDest(VIP, heavier)]


@pytest.mark.parametrize(
    "change",
    [
        {"forward": Forward.ROUTE},
        {"u_threshold": 100, "l_threshold": 50},
        {"forward": Forward.TUNNEL, "tunnel": Tunnel(TunnelEncap.GUE, 6080)},
    ],
)
def test_destination_settings_are_edited_in_place(change: dict[str, object]) -> None:
    edited = Destination.of("10.12.49.35", 25, **change)  # type: ignore[arg-type]
    assert plan(table(vs(VIP, edited, N2)), table(vs(VIP, N1, N2)), {VIP}) == [
        EditDest(VIP, edited)
    ]


@pytest.mark.parametrize(
    "after",
    [
        Service(VIP, "rr"),
        Service(VIP, "mh", MH_FALLBACK | MH_PORT),
        Service(VIP, "wlc", persistence=Persistence(600)),
        Service(VIP, "wlc", persistence=Persistence(600, 24)),
        Service(VIP, "wlc", one_packet=True),
    ],
)
def test_service_settings_are_edited_in_place(after: Service) -> None:
    observed = table(vs(Service(VIP, "wlc"), N2, N1))  # as the kernel lists them
    assert plan(table(vs(after, N1, N2)), observed, {VIP}) == [EditService(after)]


def test_changed_address_is_a_new_service_and_the_old_one_goes_last() -> None:
    moved = ServiceKey.for_address("10.12.49.38", 25)
    desired = table(vs(moved, N1))
    ops = plan(desired, table(vs(VIP, N1)), {VIP})
    assert ops == [AddService(desired[moved].service), AddDest(moved, N1), DelService(VIP)]


def test_changed_protocol_is_a_new_service() -> None:
    udp = ServiceKey.for_address("10.12.49.37", 25, IpProtocol.UDP)
    ops = plan(table(vs(udp, N1)), table(vs(VIP, N1)), {VIP})
    assert [type(op) for op in ops] == [AddService, AddDest, DelService]


def test_foreign_services_are_left_alone() -> None:
    observed = table(vs(VIP, N1), vs(FOREIGN, Destination.of("192.0.2.81", 80)))
    assert plan(table(vs(VIP, N1)), observed, {VIP}) == []
    assert plan({}, observed, {VIP}) == [DelService(VIP)]


def test_owned_but_absent_service_needs_nothing() -> None:
    assert plan({}, {}, {VIP}) == []


def test_stray_destination_in_a_desired_service_is_removed_even_if_not_owned() -> None:
    # Desiring a service means owning all of its destinations.
    assert plan(table(vs(VIP, N1)), table(vs(VIP, N1, N2)), set()) == [DelDest(VIP, N2.key)]


def test_adds_and_edits_come_before_deletes() -> None:
    n3 = Destination.of("10.12.49.39", 25)
    quiesced = Destination.of("10.12.49.36", 25, weight=0)
    revived = Destination.of("10.12.49.40", 25, weight=2)
    observed = table(vs(VIP, N1, N2, Destination.of("10.12.49.40", 25, weight=0)))
    ops = plan(table(vs(VIP, quiesced, n3, revived)), observed, {VIP})
    assert ops == [
        AddDest(VIP, n3),
        EditDest(VIP, revived),  # makes a destination usable: before the quiesce
        EditDest(VIP, quiesced),
        DelDest(VIP, N1.key),
    ]


def test_service_edit_precedes_its_destination_changes() -> None:
    after = Service(VIP, "sh", SH_PORT)
    ops = plan(table(vs(after, N2)), table(vs(VIP, N1)), {VIP})
    assert ops == [EditService(after), AddDest(VIP, N2), DelDest(VIP, N1.key)]


def test_services_are_planned_in_a_stable_order_across_families() -> None:
    v6 = ServiceKey.for_address("2001:db8::25", 25)
    fwm = ServiceKey.for_fwmark(7)
    ops = plan(table(vs(v6), vs(fwm), vs(OTHER), vs(VIP)), {}, set())
    assert [op.service.key for op in ops if isinstance(op, AddService)] == [VIP, OTHER, fwm, v6]


def test_planning_does_not_modify_its_inputs() -> None:
    desired = table(vs(VIP, N1))
    observed = table(vs(VIP, N2))
    before = (dict(desired), dict(observed))
    plan(desired, observed, {VIP})
    assert (desired, observed) == before


# ------------------------------------------------------------------ model validation


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: Destination.of("10.0.0.1", 25, weight=-1), "weight"),
        (lambda: Destination.of("10.0.0.1", 25, u_threshold=5, l_threshold=6), "l_threshold"),
        (lambda: Destination.of("10.0.0.1", 70000), "port"),
        (lambda: Destination.of("not-an-ip", 25), "not an IP address"),
        (lambda: Tunnel(TunnelEncap.GUE), "GUE"),
        (lambda: Destination.of("10.0.0.1", 25, Forward.ROUTE, tunnel=Tunnel()), "tunnel"),
        (lambda: Service(VIP, "x" * 16), "scheduler name"),
        (lambda: Service(VIP, sched_flags=ServiceFlags.PERSISTENT), "sched_flags"),
        (lambda: Service(VIP, pe_name="sip"), "persistent"),
        (lambda: Persistence(0), "timeout"),
        (lambda: Service(VIP, persistence=Persistence(60, 33)), "prefix"),
        (
            lambda: Service(
                ServiceKey.for_address("2001:db8::1", 25), persistence=Persistence(60, 0)
            ),
            "prefix",
        ),
        (lambda: ServiceKey.for_fwmark(0), "fwmark"),
        (lambda: ServiceKey(socket.AF_INET6, IpProtocol.TCP, VIP.address, 25), "family"),
        (lambda: vs(VIP, Destination.of("2001:db8::2", 25)), "families"),
        (lambda: vs(VIP, N1, N1), "twice"),
        (lambda: make_table([vs(VIP), vs(VIP)]), "twice"),
    ],
)
def test_model_refuses_what_the_kernel_would(build: object, reason: str) -> None:
    with pytest.raises(LvsModelError, match=reason):
        build()  # type: ignore[operator]


def test_cross_family_tunnel_destination_is_allowed() -> None:
    dest = Destination.of("2001:db8::2", 25, Forward.TUNNEL)
    assert vs(VIP, dest).destinations[dest.key].tunnel == Tunnel()


# ------------------------------------------------------------------------ properties

_SVC_ADDRS = ["10.0.0.1", "10.0.0.2", "2001:db8::1"]
_DEST_ADDRS = ["10.1.0.1", "10.1.0.2", "10.1.0.3", "2001:db8:1::1"]


@st.composite
def service_keys(draw: st.DrawFn) -> ServiceKey:
    if draw(st.integers(0, 4)) == 0:
        return ServiceKey.for_fwmark(draw(st.integers(1, 2)))
    return ServiceKey.for_address(
        draw(st.sampled_from(_SVC_ADDRS)),
        draw(st.sampled_from([25, 587])),
        draw(st.sampled_from([IpProtocol.TCP, IpProtocol.UDP])),
    )


@st.composite
def services(draw: st.DrawFn, key: ServiceKey) -> Service:
    persistence = draw(
        st.none() | st.builds(Persistence, st.sampled_from([60, 300]), st.sampled_from([None, 24]))
    )
    return Service(
        key,
        draw(st.sampled_from(["rr", "wlc", "sh", "mh"])),
        draw(st.sampled_from([NO_FLAGS, SH_PORT, MH_FALLBACK | MH_PORT])),
        persistence,
        draw(st.booleans()),
    )


@st.composite
def destinations(draw: st.DrawFn, family: socket.AddressFamily) -> Destination:
    addrs = [a for a in _DEST_ADDRS if (":" in a) == (family == socket.AF_INET6)]
    forward = draw(st.sampled_from([Forward.MASQ, Forward.ROUTE, Forward.TUNNEL]))
    if draw(st.integers(0, 5)) == 0:  # a cross-family tunnel now and then
        addrs, forward = _DEST_ADDRS, Forward.TUNNEL
    address = draw(st.sampled_from(addrs))
    if ":" in address and family == socket.AF_INET:
        forward = Forward.TUNNEL
    if ":" not in address and family == socket.AF_INET6:
        forward = Forward.TUNNEL
    tunnel = None
    if forward == Forward.TUNNEL:
        tunnel = draw(st.sampled_from([Tunnel(), Tunnel(TunnelEncap.GUE, 6080)]))
    upper = draw(st.sampled_from([0, 100]))
    return Destination.of(
        address,
        draw(st.sampled_from([25, 2525])),
        forward,
        draw(st.integers(0, 3)),
        u_threshold=upper,
        l_threshold=min(upper, draw(st.sampled_from([0, 50]))),
        tunnel=tunnel,
    )


@st.composite
def tables(draw: st.DrawFn) -> dict[ServiceKey, ServiceRow]:
    keys = draw(st.sets(service_keys(), max_size=4))
    out = {}
    for key in keys:
        dests = draw(st.lists(destinations(key.family), max_size=4))
        unique = {d.key: d for d in dests}
        out[key] = ServiceRow(draw(services(key)), unique)
    return out


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[dict[ServiceKey, ServiceRow], dict[ServiceKey, ServiceRow], set[ServiceKey]]:
    desired = draw(tables())
    observed = draw(tables())
    overlap: bool = draw(st.booleans())  # often, some services already match
    if desired and overlap:
        for key in draw(st.sets(st.sampled_from(sorted(desired, key=ServiceKey.sort_key)))):
            observed[key] = desired[key]
    candidates = sorted(set(observed) | set(desired), key=ServiceKey.sort_key)
    owned = draw(st.sets(st.sampled_from(candidates))) if candidates else set()
    return desired, observed, owned


Scenario = tuple[
    Mapping[ServiceKey, ServiceRow], Mapping[ServiceKey, ServiceRow], set[ServiceKey]
]


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_applying_the_plan_converges_and_spares_foreign_services(scenario: Scenario) -> None:
    desired, observed, owned = scenario
    result = run(observed, plan(desired, observed, owned))  # raises on any kernel refusal
    for key, server in desired.items():
        assert result[key] == server
    for key, server in observed.items():
        if key in desired:
            continue
        if key in owned:
            assert key not in result
        else:
            assert result[key] == server
    assert set(result) <= set(desired) | set(observed)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_plan_is_idempotent_and_minimal(scenario: Scenario) -> None:
    desired, observed, owned = scenario
    ops = plan(desired, observed, owned)
    kernel = Kernel(observed)
    for op in ops:  # every operation changes something: nothing redundant
        before = kernel.table()
        kernel.apply(op)
        assert kernel.table() != before, op
    assert plan(desired, kernel.table(), owned | set(desired)) == []
    if not any(is_maglev(row.service) for row in desired.values()):  # see test_maglev_*
        assert len(ops) == _lower_bound(desired, observed, owned)


def _lower_bound(desired: Table, observed: Table, owned: set[ServiceKey]) -> int:
    """Operations any correct plan needs, counted independently of the planner."""
    count = sum(1 for key in owned if key in observed and key not in desired)
    for key, want in desired.items():
        have = observed.get(key)
        if have is None:
            count += 1 + len(want.destinations)
            continue
        count += want.service != have.service
        keys = set(want.destinations) | set(have.destinations)
        count += sum(want.destinations.get(k) != have.destinations.get(k) for k in keys)
    return count


@settings(max_examples=200, deadline=None)
@given(tables(), st.sets(service_keys()))
def test_plan_of_a_table_against_itself_is_empty(desired: Table, owned: set[ServiceKey]) -> None:
    assert plan(desired, as_listed(desired), owned) == []


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_no_service_loses_its_last_usable_destination_needlessly(scenario: Scenario) -> None:
    desired, observed, owned = scenario
    kernel = Kernel(observed)
    keep = [
        key
        for key in desired
        if key in observed
        and any(d.weight for d in observed[key].destinations.values())
        and any(d.weight for d in desired[key].destinations.values())
    ]
    ops = plan(desired, observed, owned)
    for op, after in zip(ops, [*ops[1:], None], strict=False):
        kernel.apply(op)
        if _moves(op, after):
            continue  # a Maglev re-order: the re-add follows at once (see test_maglev_*)
        for key in keep:
            assert kernel.usable(key) > 0, op


def _moves(op: Op, after: Op | None) -> bool:
    """``op`` deletes a destination that ``after`` adds back to the same service."""
    return (isinstance(op, DelDest) and isinstance(after, AddDest)
            and after.service == op.service and after.dest.key == op.dest)


def _keys(ops: Sequence[Op]) -> list[str]:
    return [op.describe() for op in ops]


def test_operations_describe_themselves() -> None:
    assert _keys(plan(table(vs(VIP, N1)), {}, set())) == [
        "add service TCP 10.12.49.37:25",
        "add destination 10.12.49.35:25 to TCP 10.12.49.37:25",
    ]
