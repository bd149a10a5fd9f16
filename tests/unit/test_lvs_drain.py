"""Drain targets and the drain overlay on the pools the health checks want (pure)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from mailha.checkers.quorum import DesiredPool, PoolMember
from mailha.config.model import RealServer, VirtualServer
from mailha.lvs.drain import DrainTarget, TargetError, drain_pool, parse_target

A, B = IPv4Address("10.12.49.35"), IPv4Address("10.12.49.36")
VS = VirtualServer(ip=IPv4Address("10.12.49.37"), port=25, real_servers=(
    RealServer(ip=A, port=None), RealServer(ip=B, port=25)))


def pool(*weights: int | None) -> DesiredPool:
    members = tuple(PoolMember(rs, w) for rs, w in zip(VS.real_servers, weights, strict=True))
    return DesiredPool(members, None, None, True, 2)


@pytest.mark.parametrize("text,want", [
    ("10.12.49.35", DrainTarget(A)),
    ("10.12.49.35:25", DrainTarget(A, 25)),
    (" 10.12.49.36:587 ", DrainTarget(B, 587)),
    ("2001:db8::35", DrainTarget(IPv6Address("2001:db8::35"))),
    ("[2001:db8::35]:25", DrainTarget(IPv6Address("2001:db8::35"), 25)),
])
def test_parse_target(text: str, want: DrainTarget) -> None:
    assert parse_target(text) == (want,)


def test_local_means_every_address_of_this_node() -> None:
    assert parse_target("local", [B, A]) == (DrainTarget(A), DrainTarget(B))


def test_local_takes_ipv4_and_ipv6_addresses_together() -> None:
    link_local = IPv6Address("fe80::49b:3dff:feec:8c7")
    assert parse_target("local", [link_local, B, A]) == (
        DrainTarget(A), DrainTarget(B), DrainTarget(link_local))


@pytest.mark.parametrize("text", ["mail1", "10.12.49.35:0", "10.12.49.35:x",
                                  "[2001:db8::35", "[2001:db8::35]25", "10.12.49.35:70000"])
def test_bad_targets_say_what_to_write(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)


def test_drain_sets_weight_zero_and_never_brings_a_down_server_back() -> None:
    assert drain_pool(pool(1, 1), VS, [DrainTarget(A, 25)]).members[0].weight == 0
    assert drain_pool(pool(1, 1), VS, [DrainTarget(A, 25)]).members[1].weight == 1
    assert drain_pool(pool(None, 1), VS, [DrainTarget(A)]).members[0].weight is None
    assert drain_pool(pool(1, 1), VS, [DrainTarget(A, 587)]) == pool(1, 1)
    assert drain_pool(pool(1, 1), VS, []) == pool(1, 1)
    # The real server inherits the service's port when it has none.
    assert DrainTarget(A, 25).matches(VS.real_servers[0], VS)


def test_undrain_of_an_address_lifts_its_port_drains_but_not_the_reverse() -> None:
    assert DrainTarget(A).covers(DrainTarget(A, 25))
    assert DrainTarget(A, 25).covers(DrainTarget(A, 25))
    assert not DrainTarget(A, 25).covers(DrainTarget(A))
    assert not DrainTarget(A).covers(DrainTarget(B))
