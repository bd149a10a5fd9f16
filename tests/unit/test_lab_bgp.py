"""The scale-out lab's pure parts: the netlink route decoder behind the FIB timings, the
director configs the lab writes, the IPVS connection-table reader, the SMTP reply reader
of the flow clients, and the stall meter's window."""

from __future__ import annotations

import ipaddress
import socket
import struct
import tomllib
from pathlib import Path

import pytest

from lab.bgp import (
    VIP,
    BgpLabOptions,
    BgpTopology,
    check_port,
    director_mailha_config,
    ipvs_rules,
    parse_connection_clients,
)
from lab.errors import NetnsError
from lab.routewatch import (
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_TABLE,
    RTM_DELROUTE,
    RTM_NEWROUTE,
    _ends_dump,
    dump_request,
    route_updates,
)
from lab.smtpflows import SmtpReply
from lab.smtpflows import parse_reply as parse_smtp_reply
from lab.stalls import Stall, StallMeter

IP = ipaddress.IPv4Address
D1, D2 = IP("10.12.50.11"), IP("10.12.50.12")


# ------------------------------------------------------------------ netlink routes


def _attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _route(kind: int, dst: IP, *, gateways: tuple[IP, ...] = (), table: int = 254,
           dst_len: int = 32, family: int = socket.AF_INET, table_attr: int | None = None) -> bytes:
    attrs = _attr(RTA_DST, dst.packed)
    if table_attr is not None:
        attrs += _attr(RTA_TABLE, struct.pack("=I", table_attr))
    if len(gateways) == 1:
        attrs += _attr(RTA_GATEWAY, gateways[0].packed)
    elif gateways:
        hops = b""
        for gw in gateways:
            inner = _attr(RTA_GATEWAY, gw.packed)
            hops += struct.pack("=HBBi", 8 + len(inner), 0, 0, 2) + inner
        attrs += _attr(RTA_MULTIPATH, hops)
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 12, 0, 1, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_a_multipath_route_gives_every_gateway() -> None:
    data = _route(RTM_NEWROUTE, VIP, gateways=(D1, D2))
    assert [u.nexthops for u in route_updates(data, VIP)] == [frozenset({D1, D2})]


def test_a_single_gateway_a_deletion_and_several_messages_in_one_datagram() -> None:
    data = (_route(RTM_NEWROUTE, VIP, gateways=(D2,))
            + _route(RTM_NEWROUTE, IP("10.9.9.9"), gateways=(D1,))  # another prefix
            + _route(RTM_DELROUTE, VIP, gateways=(D2,)))
    assert [u.nexthops for u in route_updates(data, VIP)] == [frozenset({D2}), frozenset()]


@pytest.mark.parametrize("other", [
    {"table": 255},  # the local table, not main
    {"table": 252, "table_attr": 1000},  # RTA_TABLE wins over the 8-bit field
    {"dst_len": 24},
    {"family": socket.AF_INET6},
])
def test_routes_of_other_tables_prefixes_and_families_are_skipped(other: dict[str, int]) -> None:
    assert route_updates(_route(RTM_NEWROUTE, VIP, gateways=(D1,), **other), VIP) == []


def test_the_table_attribute_names_main_beyond_the_8_bit_field() -> None:
    data = _route(RTM_NEWROUTE, VIP, gateways=(D1,), table=252, table_attr=254)
    assert [u.nexthops for u in route_updates(data, VIP)] == [frozenset({D1})]


def test_a_truncated_message_ends_the_datagram_without_error() -> None:
    data = _route(RTM_NEWROUTE, VIP, gateways=(D1,))
    whole = data + _route(RTM_NEWROUTE, VIP, gateways=(D1, D2))
    assert [u.nexthops for u in route_updates(whole[:-6], VIP)] == [frozenset({D1})]
    assert route_updates(data[:10], VIP) == []


def test_the_dump_request_and_its_end() -> None:
    request = dump_request(7)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags & 0x300, seq) == (len(request), 26, 0x300, 7)
    done = struct.pack("=IHHIIi", 20, 3, 2, 7, 0, 0)
    assert _ends_dump(_route(RTM_NEWROUTE, VIP) + done)
    assert not _ends_dump(_route(RTM_NEWROUTE, VIP))


# --------------------------------------------------------------------- lab pieces


def test_ipvs_rules_keep_the_real_servers_order() -> None:
    rules = ipvs_rules(VIP, [IP("10.0.0.3"), IP("10.0.0.1")], sched="mh",
                       flags=("mh-port", "mh-fallback"))
    assert rules.splitlines() == [
        "-A -t 10.12.49.37:25 -s mh -b mh-port,mh-fallback",
        "-a -t 10.12.49.37:25 -r 10.0.0.3:25 -g -w 1",
        "-a -t 10.12.49.37:25 -r 10.0.0.1:25 -g -w 1",
    ]


def test_connection_clients_from_ipvsadm_lnc() -> None:
    text = (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination\n"
        "TCP 01:59  FIN_WAIT    10.12.60.100:51234 10.12.49.37:25     10.12.50.21:25\n"
        "TCP 14:59  ESTABLISHED 10.12.60.101:40000 10.12.49.37:25     10.12.50.23:25\n"
        "TCP 00:09  CLOSE       10.12.60.102:40001 10.12.49.38:25     10.12.50.23:25\n"
    )
    assert parse_connection_clients(text, "10.12.49.37:25") == {
        (IP("10.12.60.100"), 51234), (IP("10.12.60.101"), 40000)}
    assert parse_connection_clients("", "10.12.49.37:25") == frozenset()


def test_director_config_announces_by_bgp_over_the_three_real_servers(tmp_path: Path) -> None:
    topo = BgpTopology("mhGu")
    topo.workdir = tmp_path
    text = director_mailha_config(topo, "d2", BgpLabOptions(announce="mailha"),
                                  bird_socket=tmp_path / "bird.ctl",
                                  include_file=tmp_path / "inc.conf")
    doc = tomllib.loads(text)
    assert doc["bgp"]["include_file"] == str(tmp_path / "inc.conf")
    assert doc["bgp"]["deadman_interface"] == "mailha-bgp"
    (vs,) = doc["virtual_server"]
    assert (vs["announce"], vs["lvs_sched"], vs["lvs_method"]) == ("bgp", "mh", "DR")
    assert vs["sched_flags"] == ["mh-port", "mh-fallback"]
    assert [rs["ip"] for rs in vs["real_server"]] == ["10.12.50.21", "10.12.50.22", "10.12.50.23"]
    # d2 checks on a port of its own, so d1's checks can fail alone
    assert {rs["SMTP_CHECK"][0]["connect_port"] for rs in vs["real_server"]} == {check_port("d2")}
    assert check_port("d1") != check_port("d2")
    with pytest.raises(NetnsError, match="announce"):
        BgpLabOptions(announce="vrrp")


def test_the_client_is_behind_the_router_with_fifty_addresses() -> None:
    topo = BgpTopology("mhGu")
    assert len(set(topo.sources)) == 50
    assert all(a in ipaddress.IPv4Network("10.12.60.0/24") for a in topo.sources)
    assert topo.netns("cl") == "mhGucl" and "mhGucl" in topo.spec.namespaces
    assert topo.spec.router_client_iface == "mhGurtc"


# --------------------------------------------------------------------- SMTP replies


def test_smtp_replies_single_and_multi_line() -> None:
    assert parse_smtp_reply([b"220 r1.lab.test ESMTP\r\n"]) == SmtpReply(220, "r1.lab.test ESMTP")
    assert parse_smtp_reply([b"250-r1.lab.test\r\n"]) is None
    assert parse_smtp_reply([b"250-r1\r\n", b"250 PIPELINING\r\n"]) == SmtpReply(
        250, "r1\nPIPELINING")
    assert parse_smtp_reply([b"xyz\r\n"]) == SmtpReply(0, "")
    assert parse_smtp_reply([]) is None


def test_the_stall_meter_names_the_longest_stall_in_a_window() -> None:
    meter = StallMeter()
    meter.stalls += [Stall(10.0, 0.2), Stall(11.0, 0.5), Stall(20.0, 0.9)]
    assert meter.worst(9.0, 12.0) == Stall(11.0, 0.5)
    assert meter.worst(12.0, 19.0) is None
