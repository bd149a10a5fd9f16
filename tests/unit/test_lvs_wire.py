"""IPVS generic-netlink encoding/decoding and reply matching, without a kernel.

pyroute2's independent ``ipvsmsg`` decoder checks what mailha encodes; decoding is
checked by round trips through the attribute layout the kernel dumps.
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.generic.ipvs import ipvsmsg

from mailha.lvs import wire
from mailha.lvs.errors import IpvsOpError, IpvsWireError
from mailha.lvs.model import (
    MH_FALLBACK,
    MH_PORT,
    NO_FLAGS,
    Destination,
    Forward,
    Persistence,
    Protocol,
    Service,
    ServiceKey,
    Stats,
    Tunnel,
    TunnelFlags,
    TunnelType,
)
from mailha.lvs.netlink import explain
from mailha.lvs.planner import AddDest, AddService, DelDest, DelService, EditDest, EditService

VIP = ServiceKey.for_address("10.12.49.37", 25)
FAMILY = 0x20


def _decoded(data: bytes) -> ipvsmsg:
    msg = ipvsmsg(data)
    msg.decode()
    return msg


def _nlmsg(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    size = 16 + len(payload)
    return struct.pack("=IHHII", size, kind, flags, seq, 0) + payload + b"\0" * (-size % 4)


def _genl(cmd: int, attrs: bytes) -> bytes:
    return struct.pack("=BBH", cmd, 1, 0) + attrs


def _error(seq: int, code: int, text: str | None = None) -> bytes:
    flags = wire.NLM_F_CAPPED
    payload = struct.pack("=i", -code) + struct.pack("=IHHII", 36, FAMILY, 5, seq, 0)
    if text is not None:
        flags |= wire.NLM_F_ACK_TLVS
        payload += wire._attr(wire.NLMSGERR_ATTR_MSG, text.encode() + b"\0")
    return _nlmsg(wire.NLMSG_ERROR, flags, seq, payload)


def _stats64(values: Stats) -> bytes:
    body = b"".join(
        wire._attr(number, struct.pack("=Q", getattr(values, name)))
        for number, name in enumerate(wire._STATS_FIELDS, start=1)
    )
    return wire._attr(wire.SVC_STATS64, body)


# ----------------------------------------------------------------------------- encode


def test_add_service_reads_back_with_pyroute2() -> None:
    service = Service(VIP, "mh", MH_FALLBACK | MH_PORT, Persistence(300, 24), one_packet=True)
    msg = _decoded(wire.encode_op(AddService(service), FAMILY, 7))
    assert msg["header"]["type"] == FAMILY
    assert msg["header"]["sequence_number"] == 7
    assert msg["header"]["flags"] == wire.NLM_F_REQUEST | wire.NLM_F_ACK
    assert msg["cmd"] == wire.IPVS_CMD_NEW_SERVICE
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert svc.get_attr("IPVS_SVC_ATTR_AF") == socket.AF_INET
    assert svc.get_attr("IPVS_SVC_ATTR_PROTOCOL") == socket.IPPROTO_TCP
    assert svc.get_attr("IPVS_SVC_ATTR_ADDR") == "10.12.49.37"
    assert svc.get_attr("IPVS_SVC_ATTR_PORT") == 25
    assert svc.get_attr("IPVS_SVC_ATTR_SCHED_NAME") == "mh"
    flags = svc.get_attr("IPVS_SVC_ATTR_FLAGS")
    assert (flags["flags"], flags["mask"]) == (0x1 | 0x4 | 0x8 | 0x10, 0xFFFFFFFF)
    assert svc.get_attr("IPVS_SVC_ATTR_TIMEOUT") == 300
    assert svc.get_attr("IPVS_SVC_ATTR_NETMASK") == "255.255.255.0"


def test_add_dest_reads_back_with_pyroute2() -> None:
    dest = Destination.of(
        "10.12.49.36", 2525, Forward.TUNNEL, 7, u_threshold=100, l_threshold=50,
        tunnel=Tunnel(TunnelType.GUE, 6080, TunnelFlags.CSUM),
    )  # fmt: skip
    msg = _decoded(wire.encode_op(AddDest(VIP, dest), FAMILY, 8))
    assert msg["cmd"] == wire.IPVS_CMD_NEW_DEST
    assert msg.get_attr("IPVS_CMD_ATTR_SERVICE").get_attr("IPVS_SVC_ATTR_PORT") == 25
    got = msg.get_attr("IPVS_CMD_ATTR_DEST")
    assert got.get_attr("IPVS_DEST_ATTR_ADDR") == "10.12.49.36"
    assert got.get_attr("IPVS_DEST_ATTR_PORT") == 2525
    assert got.get_attr("IPVS_DEST_ATTR_FWD_METHOD") == 2
    assert got.get_attr("IPVS_DEST_ATTR_WEIGHT") == 7
    assert got.get_attr("IPVS_DEST_ATTR_U_THRESH") == 100
    assert got.get_attr("IPVS_DEST_ATTR_L_THRESH") == 50
    assert got.get_attr("IPVS_DEST_ATTR_TUN_TYPE") == 1
    # pyroute2 declares TUN_PORT host-order; the kernel reads it big-endian.
    assert got.get_attr("IPVS_DEST_ATTR_TUN_PORT") == socket.htons(6080)
    assert got.get_attr("IPVS_DEST_ATTR_TUN_FLAGS") == 1


@pytest.mark.parametrize(
    ("op", "cmd"),
    [
        (EditService(Service(VIP)), wire.IPVS_CMD_SET_SERVICE),
        (DelService(VIP), wire.IPVS_CMD_DEL_SERVICE),
        (EditDest(VIP, Destination.of("10.0.0.2", 25)), wire.IPVS_CMD_SET_DEST),
        (DelDest(VIP, Destination.of("10.0.0.2", 25).key), wire.IPVS_CMD_DEL_DEST),
    ],
)
def test_each_operation_maps_to_its_command(op: object, cmd: int) -> None:
    assert _decoded(wire.encode_op(op, FAMILY, 1))["cmd"] == cmd  # type: ignore[arg-type]


def test_delete_carries_only_the_keys() -> None:
    msg = _decoded(wire.encode_op(DelDest(VIP, Destination.of("10.0.0.2", 25).key), FAMILY, 1))
    assert msg.get_attr("IPVS_CMD_ATTR_SERVICE").get_attr("IPVS_SVC_ATTR_SCHED_NAME") is None
    assert msg.get_attr("IPVS_CMD_ATTR_DEST").get_attr("IPVS_DEST_ATTR_WEIGHT") is None


def test_fwmark_service_key_has_no_address() -> None:
    msg = _decoded(wire.encode_op(DelService(ServiceKey.for_fwmark(9)), FAMILY, 1))
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert svc.get_attr("IPVS_SVC_ATTR_FWMARK") == 9
    assert svc.get_attr("IPVS_SVC_ATTR_ADDR") is None


@pytest.mark.parametrize(
    ("service", "raw"),
    [
        (Service(VIP), b"\xff\xff\xff\xff"),
        (Service(VIP, persistence=Persistence(60, 16)), b"\xff\xff\x00\x00"),
        (Service(VIP, persistence=Persistence(60, 0)), b"\x00\x00\x00\x00"),
        (Service(ServiceKey.for_address("2001:db8::1", 25)), struct.pack("=I", 128)),
        (
            Service(ServiceKey.for_address("2001:db8::1", 25), persistence=Persistence(60, 64)),
            struct.pack("=I", 64),
        ),
    ],
)
def test_netmask_is_a_mask_for_ipv4_and_a_prefix_length_for_ipv6(
    service: Service, raw: bytes
) -> None:
    assert wire._netmask(service) == raw


def test_timeouts_config_sends_only_what_is_set() -> None:
    attrs = wire.parse_attrs(wire.encode_set_config(FAMILY, 1, 900, None, 60), 20)
    assert attrs == {
        wire.IPVS_CMD_ATTR_TIMEOUT_TCP: struct.pack("=I", 900),
        wire.IPVS_CMD_ATTR_TIMEOUT_UDP: struct.pack("=I", 60),
    }


# ----------------------------------------------------------------------------- decode


@st.composite
def services(draw: st.DrawFn) -> Service:
    v6 = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        key = ServiceKey.for_fwmark(
            draw(st.integers(1, 2**32 - 1)), socket.AF_INET6 if v6 else socket.AF_INET
        )
    else:
        addr = draw(st.ip_addresses(v=6 if v6 else 4))
        key = ServiceKey.for_address(
            addr, draw(st.integers(0, 65535)), draw(st.sampled_from(list(Protocol)))
        )
    persistence = None
    if draw(st.booleans()):
        bits = 128 if v6 else 32
        prefix = draw(st.none() | st.integers(1 if v6 else 0, bits))
        persistence = Persistence(draw(st.integers(1, 86400)), prefix)
    return Service(
        key,
        draw(st.sampled_from(["rr", "wrr", "lc", "wlc", "sh", "mh", "none"])),
        draw(st.sampled_from([NO_FLAGS, MH_PORT, MH_FALLBACK | MH_PORT])),
        persistence,
        draw(st.booleans()),
        draw(st.none() | st.just("sip")) if persistence else None,
    )


@settings(max_examples=300, deadline=None)
@given(services(), st.integers(0, 2**40))
def test_service_decodes_from_the_layout_the_kernel_dumps(service: Service, n: int) -> None:
    # The kernel dumps the same attributes mailha sends, plus HASHED and counters.
    stats = Stats(conns=n, inpkts=n + 1, outbytes=n * 3)
    attrs = wire.parse_attrs(wire.service_attr(service), 4)
    attrs[wire.SVC_FLAGS] = struct.pack("=II", int(service.flags) | 0x2, 0xFFFFFFFF)  # HASHED
    body = b"".join(wire._attr(kind, value) for kind, value in attrs.items()) + _stats64(stats)
    payload = _genl(wire.IPVS_CMD_NEW_SERVICE, wire._attr(wire.IPVS_CMD_ATTR_SERVICE, body))
    assert wire.decode_service(payload) == (service, stats)


@st.composite
def destinations(draw: st.DrawFn) -> Destination:
    forward = draw(st.sampled_from(list(Forward)))
    tunnel = None
    if forward == Forward.TUNNEL:
        kind = draw(st.sampled_from(list(TunnelType)))
        port = draw(st.integers(1 if kind == TunnelType.GUE else 0, 65535))
        tunnel = Tunnel(kind, port, TunnelFlags(draw(st.integers(0, 3))))
    upper = draw(st.integers(0, 2**32 - 1))
    return Destination(
        draw(st.ip_addresses()),
        draw(st.integers(0, 65535)),
        forward,
        draw(st.integers(0, 2**31 - 1)),
        upper,
        draw(st.integers(0, upper)),
        tunnel,
    )


@settings(max_examples=300, deadline=None)
@given(destinations(), st.integers(0, 2**32 - 1))
def test_destination_decodes_from_the_layout_the_kernel_dumps(dest: Destination, n: int) -> None:
    attrs = wire.dest_attr(dest)[4:] + b"".join(
        wire._u32(kind, n) for kind in (7, 8, 9)
    )  # active, inactive, persistent connections
    payload = _genl(wire.IPVS_CMD_NEW_DEST, wire._attr(wire.IPVS_CMD_ATTR_DEST, attrs))
    decoded, stats = wire.decode_dest(payload, socket.AF_INET)
    assert decoded == dest
    assert (stats.active_conns, stats.inactive_conns, stats.persist_conns) == (n, n, n)


def test_tunnel_fields_of_a_non_tunnel_destination_are_ignored() -> None:
    dest = Destination.of("10.0.0.2", 25, Forward.ROUTE)
    attrs = wire.dest_attr(dest)[4:] + wire._u8(wire.DEST_TUN_TYPE, 1)  # stale GUE type
    payload = _genl(wire.IPVS_CMD_NEW_DEST, wire._attr(wire.IPVS_CMD_ATTR_DEST, attrs))
    assert wire.decode_dest(payload, socket.AF_INET)[0] == dest


def test_non_contiguous_netmask_is_a_wire_error() -> None:
    service = Service(VIP, persistence=Persistence(60, 24))
    raw = wire.service_attr(service)[4:].replace(b"\xff\xff\xff\x00", b"\xff\x00\xff\x00")
    payload = _genl(1, wire._attr(wire.IPVS_CMD_ATTR_SERVICE, raw))
    with pytest.raises(IpvsWireError, match="not contiguous"):
        wire.decode_service(payload)


def test_unknown_protocol_is_a_wire_error() -> None:
    raw = wire.service_attr(Service(VIP))[4:].replace(
        struct.pack("=HHH", 6, wire.SVC_PROTOCOL, 6), struct.pack("=HHH", 6, wire.SVC_PROTOCOL, 50)
    )
    with pytest.raises(IpvsWireError, match="does not fit the model"):
        wire.decode_service(_genl(1, wire._attr(wire.IPVS_CMD_ATTR_SERVICE, raw)))


def test_missing_attribute_is_named() -> None:
    with pytest.raises(IpvsWireError, match="IPVS_SVC_ATTR_AF attribute is missing"):
        wire.decode_service(_genl(1, wire._attr(wire.IPVS_CMD_ATTR_SERVICE, b"")))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_wire_errors(data: bytes) -> None:
    for decode in (
        wire.decode_service,
        lambda p: wire.decode_dest(p, socket.AF_INET),
        wire.decode_timeouts,
        wire.decode_family_id,
        wire.parse_datagram,
    ):
        try:
            decode(data)
        except IpvsWireError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 3))
def test_garbage_inside_valid_framing_raises_only_wire_errors(body: bytes, where: int) -> None:
    payload = _genl(
        1, wire._attr((wire.IPVS_CMD_ATTR_SERVICE, wire.IPVS_CMD_ATTR_DEST)[where % 2], body)
    )
    try:
        wire.decode_service(payload)
    except IpvsWireError:
        pass
    try:
        wire.decode_dest(payload, socket.AF_INET6)
    except IpvsWireError:
        pass
    exchange = wire.Exchange()
    seq = exchange.request()
    try:
        list(exchange.receive(_nlmsg(wire.NLMSG_ERROR, where << 8, seq, body)))
    except IpvsWireError:
        pass


# --------------------------------------------------------------------------- exchange


def test_acks_complete_requests_in_any_order() -> None:
    exchange = wire.Exchange(first_seq=10)
    first, second = exchange.request(), exchange.request()
    assert (first, second) == (10, 11)
    replies = list(exchange.receive(_error(second, 0) + _error(first, errno.EEXIST)))
    assert [(r.seq, r.errno) for r in replies] == [(11, 0), (10, errno.EEXIST)]
    assert exchange.outstanding == 0


def test_extended_ack_message_is_kept() -> None:
    exchange = wire.Exchange()
    seq = exchange.request()
    (reply,) = exchange.receive(_error(seq, errno.EINVAL, "Attribute failed policy validation"))
    assert (reply.errno, reply.message) == (errno.EINVAL, "Attribute failed policy validation")


def test_dump_completes_on_done_with_all_parts() -> None:
    exchange = wire.Exchange()
    seq = exchange.request()
    parts = [_genl(1, b"a" * 4), _genl(1, b"b" * 4)]
    first = _nlmsg(16, wire.NLM_F_MULTI, seq, parts[0])
    assert list(exchange.receive(first)) == []
    done = _nlmsg(wire.NLMSG_DONE, wire.NLM_F_MULTI, seq, struct.pack("=i", 0))
    (reply,) = exchange.receive(
        _nlmsg(16, wire.NLM_F_MULTI | wire.NLM_F_DUMP_INTR, seq, parts[1]) + done
    )
    assert reply.payloads == parts
    assert reply.interrupted
    assert reply.errno == 0


def test_replies_to_forgotten_requests_are_ignored() -> None:
    exchange = wire.Exchange()
    seq = exchange.request()
    exchange.forget(seq)
    assert list(exchange.receive(_error(seq, 0))) == []


def test_truncated_datagram_is_a_wire_error() -> None:
    with pytest.raises(IpvsWireError, match="length"):
        wire.parse_datagram(_error(1, 0)[:-4])


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("op", "code", "reason"),
    [
        (AddService(Service(VIP, "nosuch")), errno.ENOENT, "no scheduler module ip_vs_nosuch"),
        (AddService(Service(VIP)), errno.EEXIST, "service already exists"),
        (AddDest(VIP, Destination.of("10.0.0.2", 25)), errno.EEXIST, "destination already"),
        (AddDest(VIP, Destination.of("10.0.0.2", 25)), errno.ESRCH, "service does not exist"),
        (DelDest(VIP, Destination.of("10.0.0.2", 25).key), errno.ENOENT, "destination does not"),
        (EditDest(VIP, Destination.of("10.0.0.2", 25)), errno.EINVAL, "invalid destination"),
        (DelService(VIP), errno.EPERM, "CAP_NET_ADMIN"),
    ],
)
def test_errno_is_explained_for_the_operation(op: object, code: int, reason: str) -> None:
    text = explain(op, code)  # type: ignore[arg-type]
    assert reason in text
    error = IpvsOpError(op, code, text, "kernel says hi")  # type: ignore[arg-type]
    assert str(error).startswith(op.describe())  # type: ignore[attr-defined]
    assert errno.errorcode[code] in str(error)
    assert str(error).endswith("kernel says hi")
