"""Reading the table through :class:`IpvsNetlink`, against a fake kernel socket.

The fake (``fake_ipvs``) runs dumps the way the kernel does: one at a time per
socket, the next part produced only by reading the previous one, and counters that
move between reads like live traffic.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import struct
from collections.abc import Iterator

import pytest
from fake_ipvs import FakeKernel, dest_payload, expected_stats, service_payload

from mailha.lvs import wire
from mailha.lvs.errors import IpvsRequestError
from mailha.lvs.model import (
    Destination,
    DestStats,
    Forward,
    ObservedTable,
    Persistence,
    Service,
    ServiceKey,
    ServiceRow,
    ServiceStats,
    Tunnel,
    TunnelEncap,
    make_table,
)
from mailha.lvs.netlink import IpvsNetlink
from mailha.lvs.planner import plan

FAMILY = 0x20


def _table(services: int = 40) -> dict[ServiceKey, ServiceRow]:
    rows = [
        ServiceRow.of(
            Service(ServiceKey.for_address(f"10.40.0.{i + 1}", 25), "wlc"),
            [Destination.of("10.50.0.1", 25), Destination.of("10.50.0.2", 25, weight=3)],
        )
        for i in range(services)
    ]
    rows.append(
        ServiceRow.of(
            Service(ServiceKey.for_fwmark(7), "sh", persistence=Persistence(60, 24)),
            [Destination.of("10.50.0.3", 0, Forward.TUNNEL, tunnel=Tunnel(TunnelEncap.GUE, 6080))],
        )
    )
    rows.append(
        ServiceRow.of(
            Service(ServiceKey.for_address("2001:db8::25", 25), "rr"),
            [Destination.of(f"2001:db8::{n}", 25, Forward.ROUTE) for n in range(1, 40)],
        )
    )
    rows.append(ServiceRow.of(Service(ServiceKey.for_address("10.40.9.9", 80), "lc")))
    return make_table(rows)


@pytest.fixture
def kernel() -> Iterator[FakeKernel]:
    fake = FakeKernel(_table())
    yield fake
    fake.close()


@pytest.fixture
def ipvs(kernel: FakeKernel) -> IpvsNetlink:
    return IpvsNetlink(kernel, FAMILY, timeout=2)  # type: ignore[arg-type]


def _stats_of(observed: ObservedTable) -> dict[ServiceKey, object]:
    return {key: observed.stats(key) for key in observed}


def _expected_stats(
    table: dict[ServiceKey, ServiceRow], counter: int
) -> dict[ServiceKey, object]:
    """The counters the fake reports after ``counter`` ticks."""
    dest = DestStats(expected_stats(counter), counter, counter + 1, counter + 2)
    return {
        key: ServiceStats(expected_stats(counter), {d: dest for d in vs.destinations})
        for key, vs in table.items()
    }


async def test_observe_reads_the_table_and_its_counters(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    kernel.tick(5)
    observed = await ipvs.observe()
    assert observed.config() == kernel.table
    assert observed.unreadable == ()
    assert _stats_of(observed) == _expected_stats(kernel.table, 5)


async def test_dumps_run_one_at_a_time_and_are_never_refused(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    await ipvs.observe()
    services = wire.IPVS_CMD_GET_SERVICE
    assert kernel.commands == [services] + [wire.IPVS_CMD_GET_DEST] * len(kernel.table)
    assert kernel.refused == 0


async def test_repeated_observes_under_live_traffic_read_the_same_as_a_fresh_adapter(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    for counter in range(1, 4):
        kernel.tick()
        for with_stats in (False, True):
            warm = await ipvs.observe(with_stats=with_stats)
            cold = IpvsNetlink(kernel, FAMILY, timeout=2)  # type: ignore[arg-type]
            fresh = await cold.observe(with_stats=with_stats)
            assert warm.config() == fresh.config() == kernel.table
            assert _stats_of(warm) == _stats_of(fresh)
            if with_stats:
                assert _stats_of(warm) == _expected_stats(kernel.table, counter)


async def test_unchanged_rows_are_reused_although_counters_moved(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    first = await ipvs.observe()
    kernel.tick(1000)
    second = await ipvs.observe()
    assert all(second[key] is first[key] for key in first)
    assert _stats_of(second) == _expected_stats(kernel.table, 1000)


@pytest.mark.parametrize(
    "change",
    [
        {"weight": 7},
        {"weight": 0},
        {"u_threshold": 9, "l_threshold": 2},
        {"forward": Forward.ROUTE},
    ],
)
async def test_a_changed_destination_is_seen_while_counters_also_change(
    kernel: FakeKernel, ipvs: IpvsNetlink, change: dict[str, object]
) -> None:
    await ipvs.observe()
    key = ServiceKey.for_address("10.40.0.3", 25)
    row = kernel.table[key]
    first, second = row.destinations.values()
    changed = dataclasses.replace(second, **change)
    kernel.table[key] = ServiceRow.of(row.service, [first, changed])
    kernel.tick(3)
    observed = await ipvs.observe()
    assert observed.config() == kernel.table
    assert _stats_of(observed) == _expected_stats(kernel.table, 3)


async def test_a_changed_service_is_seen_while_counters_also_change(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    await ipvs.observe(with_stats=False)
    key = ServiceKey.for_fwmark(7)
    row = kernel.table[key]
    edited = dataclasses.replace(row.service, persistence=Persistence(120, 24))
    kernel.table[key] = ServiceRow.of(edited, row.destinations.values())
    kernel.tick()
    observed = await ipvs.observe(with_stats=False)
    assert observed[key].service == edited
    assert plan(kernel.table, observed, set(kernel.table)) == []


async def test_added_and_removed_destinations_are_seen(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    await ipvs.observe()
    key = ServiceKey.for_address("10.40.0.1", 25)
    row = kernel.table[key]
    kernel.table[key] = ServiceRow.of(row.service, [Destination.of("10.50.0.9", 25)])
    empty = ServiceKey.for_address("10.40.9.9", 80)
    kernel.table[empty] = ServiceRow.of(
        kernel.table[empty].service, [Destination.of("10.50.0.8", 80)]
    )
    observed = await ipvs.observe()
    assert observed.config() == kernel.table


async def test_the_cache_holds_only_what_the_latest_observe_saw(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    await ipvs.observe()
    full = ipvs.cached
    assert full == len(kernel.table)
    for key in list(kernel.table)[:30]:
        del kernel.table[key]
    await ipvs.observe()
    assert ipvs.cached == len(kernel.table)
    for row in [*kernel.table.values()][:5]:  # every destination changes
        dests = [dataclasses.replace(d, weight=d.weight + 1) for d in row.destinations.values()]
        kernel.table[row.key] = ServiceRow.of(row.service, dests)
        kernel.tick()
        await ipvs.observe()
        assert ipvs.cached == len(kernel.table)


async def test_unreadable_services_stay_unreadable(kernel: FakeKernel, ipvs: IpvsNetlink) -> None:
    ah = service_payload(Service(ServiceKey.for_address("10.40.8.8", 0), "rr"))
    # IpProtocol 51 (AH): made by another tool, outside the model.
    tcp, ah_protocol = struct.pack("=HHH", 6, 2, 6), struct.pack("=HHH", 6, 2, 51)
    kernel.raw_services.append(ah.replace(tcp, ah_protocol))
    for _ in range(2):
        observed = await ipvs.observe()
        assert observed.config() == kernel.table
        assert len(observed.unreadable) == 1
        assert "51" in observed.unreadable[0]


async def test_a_service_deleted_between_the_two_dumps_reads_as_empty(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    key = ServiceKey.for_address("10.40.0.1", 25)

    def delete_once(cmd: int) -> None:
        if cmd == wire.IPVS_CMD_GET_DEST and key in kernel.table:
            del kernel.table[key]

    kernel.on_request = delete_once
    observed = await ipvs.observe()
    assert observed[key].destinations == {}


async def test_a_dump_refused_as_busy_is_repeated_once_the_socket_is_free(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    # A dump abandoned earlier (its caller timed out) still runs on the socket, with
    # several parts left: the kernel refuses any other dump until they are read.
    kernel.sendto(wire.encode_dump_services(FAMILY, 0x7FFF0000), (0, 0))
    observed = await ipvs.observe()
    assert observed.config() == kernel.table
    assert kernel.refused >= 1


async def test_a_dump_refused_for_another_reason_still_raises(
    kernel: FakeKernel, ipvs: IpvsNetlink
) -> None:
    kernel.refuse_dumps = errno.EPERM
    with pytest.raises(IpvsRequestError, match="Operation not permitted"):
        await ipvs.observe()


# ------------------------------------------------------------------ layouts (wire)


def test_a_layout_matches_the_same_configuration_with_other_counters() -> None:
    dest = Destination.of("10.50.0.1", 25, weight=5)
    layout = wire.read_layout(dest_payload(dest, 1), wire.IPVS_CMD_ATTR_DEST, wire.DEST_COUNTERS)
    assert layout is not None
    assert layout.match(dest_payload(dest, 10**6))
    assert not layout.match(dest_payload(dataclasses.replace(dest, weight=6), 1))
    assert not layout.match(dest_payload(dataclasses.replace(dest, port=26), 1))
    assert wire.decode_dest(dest_payload(dest, 9), socket.AF_INET)[1] == wire._dest_stats(
        {kind: dest_payload(dest, 9)[where] for kind, where in layout.counters}
    )


def test_a_counter_attribute_that_became_configuration_does_not_match() -> None:
    dest = Destination.of("10.50.0.1", 25, weight=5)
    payload = dest_payload(dest, 1)
    layout = wire.read_layout(payload, wire.IPVS_CMD_ATTR_DEST, wire.DEST_COUNTERS)
    assert layout is not None
    # Same size and same values, but the active-connections attribute now claims to
    # be a weight (the last one of a type wins): a different configuration.
    active = struct.pack("=HH", 8, wire.DEST_ACTIVE_CONNS)
    forged = payload.replace(active, struct.pack("=HH", 8, wire.DEST_WEIGHT))
    assert len(forged) == len(payload) and forged != payload
    assert not layout.match(forged)


def test_other_framings_are_decoded_without_a_layout() -> None:
    service = Service(ServiceKey.for_address("10.40.0.1", 25))
    payload = service_payload(service)
    extra = payload + wire._u32(wire.IPVS_CMD_ATTR_TIMEOUT_TCP, 1)  # a second attribute
    assert wire.read_layout(extra, wire.IPVS_CMD_ATTR_SERVICE, wire.SERVICE_COUNTERS) is None
    assert wire.decode_service(extra)[0] == service
    cache = wire.DecodeCache()
    for _ in range(2):
        assert cache.service(extra, with_stats=False)[0] == service
        cache.rotate()
