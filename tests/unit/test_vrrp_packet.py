"""Known-answer and error-path tests for the VRRP codec (mailha.vrrp.packet).

The known answers are real keepalived 2.2.7 adverts (tests/unit/data); the error paths
each craft one packet that fails exactly one RFC 5798 §7.1 / RFC 3768 §7.1 check, with
the checksum re-sealed where needed so the check under test is the one that fires.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
from tcpdump_hex import ETHERTYPE_IPV4, Frame, load_frames, parse_tcpdump_hex

from mailha.ip import IPAddress
from mailha.net.checksum import internet_checksum, ones_complement_sum, pseudo_header
from mailha.vrrp.packet import (
    DECODE_ERROR_REASONS,
    VRRP_MCAST_IPV4,
    VRRP_PROTOCOL,
    Advert,
    AuthType,
    VrrpDecodeError,
    build_ipv4_packet,
    decode_advert,
    encode_advert,
    parse_ipv4_packet,
)

DATA = Path(__file__).parent / "data"
NODE1 = IPv4Address("10.12.49.35")
NODE2 = IPv4Address("10.12.49.36")
VIP = IPv4Address("10.12.49.37")
LL1 = IPv6Address("fe80::1")
LL2 = IPv6Address("fe80::2")
VIP6 = IPv6Address("2001:db8::25")

V2_FRAMES = load_frames(DATA / "keepalived-2.2.7-vrrpv2-advert.txt")
V3_FRAMES = load_frames(DATA / "keepalived-2.2.7-vrrpv3-advert.txt")
# Node1 (.35) sent the v2 adverts to node2; node2 (.36) sent the v3 ones to node1.
V2_PAYLOAD = bytes.fromhex("21adc8010001db1e0a0c3125" + "00" * 8)
V3_PAYLOAD = bytes.fromhex("31adc801006453e00a0c3125")


def reference_checksum(data: bytes) -> int:
    """RFC 1071 §4.1 written as the RFC writes it: a word loop with end-around carry."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for index in range(0, len(data), 2):
        total += (data[index] << 8) | data[index + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def seal(message: bytes, *, src: IPAddress = NODE2, dst: IPAddress = NODE1) -> bytes:
    """Give a hand-edited VRRP message the checksum its version calls for."""
    zeroed = message[:6] + b"\x00\x00" + message[8:]
    covered = zeroed
    if message[0] >> 4 == 3:
        covered = pseudo_header(src, dst, VRRP_PROTOCOL, len(message)) + zeroed
    return zeroed[:6] + struct.pack("!H", reference_checksum(covered)) + zeroed[8:]


def patch(message: bytes, offset: int, value: bytes) -> bytes:
    return message[:offset] + value + message[offset + len(value) :]


# --- the tcpdump helper -------------------------------------------------------------


def test_capture_files_hold_two_ipv4_frames_each() -> None:
    assert [len(frame.data) for frame in V2_FRAMES] == [54, 54]
    assert [len(frame.data) for frame in V3_FRAMES] == [46, 46]
    assert all(frame.ethertype == ETHERTYPE_IPV4 for frame in V2_FRAMES + V3_FRAMES)
    assert V2_FRAMES[0].summary.startswith("16:26:02.480229 IP 10.12.49.35 > 10.12.49.36")


def test_tcpdump_parser_refuses_a_missing_hex_line() -> None:
    text = (DATA / "keepalived-2.2.7-vrrpv2-advert.txt").read_text()
    lines = text.splitlines()
    del lines[2]  # the 0x0010 line of the first frame
    with pytest.raises(ValueError, match="offset 0x0020, expected 0x0010"):
        parse_tcpdump_hex("\n".join(lines))


# --- the keepalived 2.2.7 captures --------------------------------------------------


@pytest.mark.parametrize("frame", V2_FRAMES, ids=["v2-first", "v2-second"])
def test_keepalived_v2_advert_decodes_field_by_field(frame: Frame) -> None:
    packet = parse_ipv4_packet(frame.l3)
    assert (packet.src, packet.dst, packet.ttl, packet.protocol) == (NODE1, NODE2, 255, 112)
    assert packet.payload == V2_PAYLOAD
    assert struct.unpack_from("!H", packet.payload, 6)[0] == 0xDB1E

    advert = decode_advert(packet.payload, src=packet.src, dst=packet.dst, ttl=packet.ttl)

    assert advert.version == 2
    assert advert.vrid == 173
    assert advert.priority == 200
    assert advert.max_advert_int == 1.0
    assert advert.centiseconds == 100
    assert advert.addresses == (VIP,)
    assert advert.auth_type == AuthType.NONE
    assert advert.auth_data == b""


@pytest.mark.parametrize("frame", V3_FRAMES, ids=["v3-first", "v3-second"])
def test_keepalived_v3_advert_decodes_field_by_field(frame: Frame) -> None:
    packet = parse_ipv4_packet(frame.l3)
    assert (packet.src, packet.dst, packet.ttl, packet.protocol) == (NODE2, NODE1, 255, 112)
    assert packet.payload == V3_PAYLOAD
    assert struct.unpack_from("!H", packet.payload, 6)[0] == 0x53E0

    advert = decode_advert(
        packet.payload,
        src=packet.src,
        dst=packet.dst,
        ttl=packet.ttl,
        accept_either_v3_checksum=False,  # the strict pseudo-header sum must verify alone
    )

    assert advert == Advert(version=3, vrid=173, priority=200, max_advert_int=1.0, addresses=(VIP,))
    assert advert.centiseconds == 100


@pytest.mark.parametrize("frame", V2_FRAMES + V3_FRAMES, ids=["v2a", "v2b", "v3a", "v3b"])
def test_reencoding_a_capture_gives_identical_bytes(frame: Frame) -> None:
    packet = parse_ipv4_packet(frame.l3)
    advert = decode_advert(packet.payload, src=packet.src, dst=packet.dst, ttl=packet.ttl)

    payload = encode_advert(advert, src=packet.src, dst=packet.dst)
    assert payload == packet.payload

    (ident,) = struct.unpack_from("!H", frame.l3, 4)
    rebuilt = build_ipv4_packet(packet.src, packet.dst, 255, VRRP_PROTOCOL, payload, ident=ident)
    assert rebuilt == frame.l3  # keepalived's header too: TOS 0xc0, no DF, same checksum


def test_v3_checksum_is_bound_to_the_real_destination() -> None:
    advert = decode_advert(V3_PAYLOAD, src=NODE2, dst=NODE1, ttl=255)
    to_group = encode_advert(advert, src=NODE2, dst=VRRP_MCAST_IPV4)
    assert to_group[6:8] != V3_PAYLOAD[6:8]
    assert to_group[:6] + to_group[8:] == V3_PAYLOAD[:6] + V3_PAYLOAD[8:]

    with pytest.raises(VrrpDecodeError) as caught:
        decode_advert(V3_PAYLOAD, src=NODE2, dst=IPv4Address("10.12.49.99"), ttl=255)
    assert caught.value.reason == "checksum"


def test_v3_checksum_cannot_tell_the_direction() -> None:
    """The one's-complement sum commutes: swapping src and dst verifies too.

    So the checksum authenticates nothing about the sender; checking the source against
    the configured unicast peers is the state machine's job.
    """
    advert = decode_advert(
        V3_PAYLOAD, src=NODE1, dst=NODE2, ttl=255, accept_either_v3_checksum=False
    )
    assert advert.vrid == 173


def test_v3_checksum_as_v2_leaves_the_pseudo_header_out() -> None:
    advert = Advert(version=3, vrid=173, priority=200, max_advert_int=1.0, addresses=(VIP,))
    as_v2 = encode_advert(advert, src=NODE2, dst=NODE1, v3_checksum_as_v2=True)
    assert as_v2[:6] + as_v2[8:] == V3_PAYLOAD[:6] + V3_PAYLOAD[8:]
    assert struct.unpack_from("!H", as_v2, 6)[0] == reference_checksum(
        as_v2[:6] + b"\x00\x00" + as_v2[8:]
    )

    strict_as_v2: dict[str, Any] = {"v3_checksum_as_v2": True, "accept_either_v3_checksum": False}
    assert decode_advert(as_v2, src=NODE2, dst=NODE1, ttl=255, **strict_as_v2) == advert
    assert decode_advert(as_v2, src=NODE2, dst=NODE1, ttl=255) == advert  # lenient default
    for payload, options in ((as_v2, {}), (V3_PAYLOAD, {"v3_checksum_as_v2": True})):
        with pytest.raises(VrrpDecodeError, match=r"^checksum: "):
            decode_advert(
                payload, src=NODE2, dst=NODE1, ttl=255, accept_either_v3_checksum=False, **options
            )


def test_lenient_decode_accepts_old_keepalived_unicast_checksum() -> None:
    """keepalived <= 1.3.6 put the multicast group in the pseudo-header of unicast adverts."""
    advert = decode_advert(V3_PAYLOAD, src=NODE2, dst=NODE1, ttl=255)
    old_style = encode_advert(advert, src=NODE2, dst=VRRP_MCAST_IPV4)

    assert decode_advert(old_style, src=NODE2, dst=NODE1, ttl=255) == advert
    with pytest.raises(VrrpDecodeError, match=r"^checksum: "):
        decode_advert(old_style, src=NODE2, dst=NODE1, ttl=255, accept_either_v3_checksum=False)


def test_ipv6_v3_checksum_uses_the_ipv6_pseudo_header() -> None:
    advert = Advert(version=3, vrid=7, priority=100, max_advert_int=0.5, addresses=(LL1, VIP6))
    payload = encode_advert(advert, src=LL2, dst=IPv6Address("ff02::12"))

    assert len(payload) == 8 + 2 * 16
    pseudo = LL2.packed + IPv6Address("ff02::12").packed + (40).to_bytes(4, "big") + b"\0\0\0\x70"
    zeroed = payload[:6] + b"\x00\x00" + payload[8:]
    assert struct.unpack_from("!H", payload, 6)[0] == reference_checksum(pseudo + zeroed)
    # v3_checksum_as_v2 is an IPv4 interop knob; IPv6 always uses the pseudo-header.
    assert encode_advert(advert, src=LL2, dst=IPv6Address("ff02::12"), v3_checksum_as_v2=True) == (
        payload
    )
    assert decode_advert(payload, src=LL2, dst=IPv6Address("ff02::12"), ttl=255) == advert


# --- round trips ------------------------------------------------------------------


def _v4_addresses(count: int) -> tuple[IPAddress, ...]:
    return tuple(IPv4Address(0x0A000000 + index) for index in range(count))


def _v6_addresses(count: int) -> tuple[IPAddress, ...]:
    return tuple(IPv6Address(int(VIP6) + index) for index in range(count))


ROUND_TRIPS = [
    pytest.param(2, _v4_addresses(0), NODE1, NODE2, id="v2-ipv4-0"),
    pytest.param(2, _v4_addresses(1), NODE1, VRRP_MCAST_IPV4, id="v2-ipv4-1"),
    pytest.param(2, _v4_addresses(3), NODE1, NODE2, id="v2-ipv4-3"),
    pytest.param(2, _v4_addresses(255), NODE1, NODE2, id="v2-ipv4-255"),
    pytest.param(3, _v4_addresses(0), NODE2, NODE1, id="v3-ipv4-0"),
    pytest.param(3, _v4_addresses(1), NODE2, VRRP_MCAST_IPV4, id="v3-ipv4-1"),
    pytest.param(3, _v4_addresses(20), NODE2, NODE1, id="v3-ipv4-20"),
    pytest.param(3, _v6_addresses(0), LL1, LL2, id="v3-ipv6-0"),
    pytest.param(3, _v6_addresses(1), LL1, IPv6Address("ff02::12"), id="v3-ipv6-1"),
    pytest.param(3, _v6_addresses(5), LL1, LL2, id="v3-ipv6-5"),
    pytest.param(3, _v6_addresses(255), LL1, LL2, id="v3-ipv6-255"),
]


@pytest.mark.parametrize(("version", "addresses", "src", "dst"), ROUND_TRIPS)
def test_round_trip(
    version: int, addresses: tuple[IPAddress, ...], src: IPAddress, dst: IPAddress
) -> None:
    advert = Advert(
        version=version,
        vrid=51,
        priority=150,
        max_advert_int=3.0 if version == 2 else 0.35,
        addresses=addresses,
    )
    payload = encode_advert(advert, src=src, dst=dst)

    address_len = 4 if src.version == 4 else 16
    assert len(payload) == 8 + address_len * len(addresses) + (8 if version == 2 else 0)
    assert payload[3] == len(addresses)
    assert payload[8 : 8 + address_len * len(addresses)] == b"".join(a.packed for a in addresses)
    assert decode_advert(payload, src=src, dst=dst, ttl=255, accept_either_v3_checksum=False) == (
        advert
    )


def test_v3_interval_is_carried_in_centiseconds() -> None:
    advert = Advert(version=3, vrid=1, priority=1, max_advert_int=40.95, addresses=(VIP,))
    payload = encode_advert(advert, src=NODE1, dst=NODE2)
    assert struct.unpack_from("!H", payload, 4)[0] == 4095
    assert decode_advert(payload, src=NODE1, dst=NODE2, ttl=255).max_advert_int == 40.95


def test_v2_password_is_zero_padded_on_the_wire() -> None:
    advert = Advert(
        version=2,
        vrid=1,
        priority=100,
        max_advert_int=1,
        addresses=(VIP,),
        auth_type=AuthType.PASS,
        auth_data=b"1234",
    )
    assert advert.auth_data == b"1234\0\0\0\0"
    payload = encode_advert(advert, src=NODE1, dst=NODE2)
    assert payload[4] == 1
    assert payload[-8:] == b"1234\0\0\0\0"
    assert decode_advert(payload, src=NODE1, dst=NODE2, ttl=255) == advert


def test_v3_reserved_bits_are_ignored_on_receipt() -> None:
    """RFC 5798 §5.2.6: set to zero on transmission, ignored upon reception."""
    noisy = seal(patch(V3_PAYLOAD, 4, b"\xf0\x64"))
    assert decode_advert(noisy, src=NODE2, dst=NODE1, ttl=255).max_advert_int == 1.0


def test_v2_auth_data_is_ignored_when_auth_type_is_none() -> None:
    """RFC 3768 §5.3.10: with no authentication the field is ignored on receipt."""
    noisy = seal(patch(V2_PAYLOAD, 12, b"garbage!"))
    assert decode_advert(noisy, src=NODE1, dst=NODE2, ttl=255).auth_data == b""


def test_ttl_check_can_be_left_to_the_caller() -> None:
    advert = decode_advert(V3_PAYLOAD, src=NODE2, dst=NODE1, ttl=61, check_ttl=False)
    assert advert.vrid == 173


def test_decode_accepts_any_buffer_type() -> None:
    expected = decode_advert(V3_PAYLOAD, src=NODE2, dst=NODE1, ttl=255)
    for buffer in (bytearray(V3_PAYLOAD), memoryview(V3_PAYLOAD)):
        assert decode_advert(buffer, src=NODE2, dst=NODE1, ttl=255) == expected


# --- every decode error reason ------------------------------------------------------

Case = tuple[str, Callable[[], object]]


def _decode(payload: bytes, **options: Any) -> Callable[[], object]:
    arguments: dict[str, Any] = {"src": NODE2, "dst": NODE1, "ttl": 255} | options
    return lambda: decode_advert(payload, **arguments)


def _parse(data: bytes) -> Callable[[], object]:
    return lambda: parse_ipv4_packet(data)


_IP = build_ipv4_packet(NODE2, NODE1, 255, VRRP_PROTOCOL, V3_PAYLOAD)

DECODE_FAILURES: list[Any] = [
    pytest.param("ttl", _decode(V3_PAYLOAD, ttl=254), id="ttl-254"),
    pytest.param("ttl", _decode(V3_PAYLOAD, ttl=1), id="ttl-1"),
    pytest.param("truncated", _decode(b""), id="empty"),
    pytest.param("truncated", _decode(V3_PAYLOAD[:7]), id="inside-header"),
    pytest.param("truncated", _decode(V3_PAYLOAD[:11]), id="inside-address"),
    pytest.param("truncated", _decode(V2_PAYLOAD[:19], src=NODE1, dst=NODE2), id="inside-auth"),
    pytest.param("truncated", _decode(seal(patch(V3_PAYLOAD, 3, b"\x02"))), id="count-too-big"),
    pytest.param("length", _decode(V3_PAYLOAD + VIP.packed), id="extra-address"),
    pytest.param("length", _decode(V2_PAYLOAD + b"\0", src=NODE1, dst=NODE2), id="extra-octet"),
    pytest.param("version", _decode(patch(V3_PAYLOAD, 0, b"\x11")), id="version-1"),
    pytest.param("version", _decode(patch(V3_PAYLOAD, 0, b"\x41")), id="version-4"),
    pytest.param("version", _decode(patch(V3_PAYLOAD, 0, b"\x01")), id="version-0"),
    pytest.param("type", _decode(patch(V3_PAYLOAD, 0, b"\x32")), id="type-2"),
    pytest.param("type", _decode(patch(V3_PAYLOAD, 0, b"\x30")), id="type-0"),
    pytest.param("family", _decode(V2_PAYLOAD, src=LL1, dst=LL2), id="v2-over-ipv6"),
    pytest.param("family", _decode(V3_PAYLOAD, src=NODE2, dst=LL2), id="mixed-endpoints"),
    pytest.param("checksum", _decode(patch(V3_PAYLOAD, 11, b"\x26")), id="corrupt-vip"),
    pytest.param("checksum", _decode(patch(V3_PAYLOAD, 6, b"\0\0")), id="zero-checksum"),
    pytest.param("checksum", _decode(V3_PAYLOAD, src=VIP), id="other-source"),
    pytest.param(
        "checksum",
        _decode(patch(V2_PAYLOAD, 2, b"\xff"), src=NODE1, dst=NODE2),
        id="v2-priority-changed",
    ),
    pytest.param("vrid", _decode(seal(patch(V3_PAYLOAD, 1, b"\0"))), id="vrid-0"),
    pytest.param("interval", _decode(seal(patch(V3_PAYLOAD, 4, b"\0\0"))), id="v3-interval-0"),
    pytest.param("interval", _decode(seal(patch(V3_PAYLOAD, 4, b"\xf0\0"))), id="v3-rsvd-only"),
    pytest.param(
        "interval",
        _decode(seal(patch(V2_PAYLOAD, 5, b"\0")), src=NODE1, dst=NODE2),
        id="v2-interval-0",
    ),
    pytest.param(
        "auth",
        _decode(seal(patch(V2_PAYLOAD, 4, b"\x03")), src=NODE1, dst=NODE2),
        id="auth-type-3",
    ),
    pytest.param("truncated", _parse(_IP[:19]), id="ip-short"),
    pytest.param("truncated", _parse(_IP[:-1]), id="ip-total-length"),
    pytest.param("ip_header", _parse(patch(_IP, 0, b"\x65")), id="ip-version-6"),
    pytest.param("ip_header", _parse(patch(_IP, 0, b"\x44")), id="ip-ihl-4"),
    pytest.param("ip_header", _parse(patch(_IP, 2, b"\x00\x10")), id="ip-total-below-ihl"),
    pytest.param("ip_header", _parse(patch(_IP, 10, b"\x12\x34")), id="ip-header-checksum"),
    pytest.param(
        "ip_header",
        _parse(build_ipv4_packet(NODE2, NODE1, 255, 112, V3_PAYLOAD)[:6] + b"\x20\x00" + _IP[8:]),
        id="ip-more-fragments",
    ),
]


@pytest.mark.parametrize(("reason", "attempt"), DECODE_FAILURES)
def test_decode_failure_reason(reason: str, attempt: Callable[[], object]) -> None:
    with pytest.raises(VrrpDecodeError) as caught:
        attempt()
    assert caught.value.reason == reason
    assert caught.value.reason in DECODE_ERROR_REASONS
    assert str(caught.value) == f"{reason}: {caught.value.detail}"


def test_every_documented_reason_is_exercised() -> None:
    exercised = {case.values[0] for case in DECODE_FAILURES}
    assert exercised == DECODE_ERROR_REASONS


def test_decode_error_survives_pickling() -> None:
    error = VrrpDecodeError("ttl", "TTL/hop limit is 64, must be 255")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.reason, clone.detail, str(clone)) == (error.reason, error.detail, str(error))


# --- IPv4 framing -------------------------------------------------------------------


def test_parse_ipv4_drops_link_padding_and_skips_options() -> None:
    padded = V3_FRAMES[0].l3 + bytes(14)  # a 60-octet minimum Ethernet frame's padding
    assert parse_ipv4_packet(padded).payload == V3_PAYLOAD

    # IHL 6: one 4-octet option (router alert) that the payload must not include.
    header = bytearray(V3_FRAMES[0].l3[:20])
    header[0], header[3] = 0x46, 0x20 + 4
    header[10:12] = b"\0\0"
    header += b"\x94\x04\x00\x00"
    header[10:12] = struct.pack("!H", reference_checksum(bytes(header)))
    packet = parse_ipv4_packet(bytes(header) + V3_PAYLOAD)
    assert (packet.src, packet.payload) == (NODE2, V3_PAYLOAD)


def test_parse_ipv4_header_checksum_check_is_optional() -> None:
    broken = patch(_IP, 10, b"\x12\x34")
    assert parse_ipv4_packet(broken, verify_checksum=False).payload == V3_PAYLOAD


def test_build_ipv4_packet_sets_the_fields_given() -> None:
    data = build_ipv4_packet(NODE1, NODE2, 1, 112, b"xyz", tos=0, ident=0xBEEF)
    assert reference_checksum(data[:20]) == 0
    assert struct.unpack("!BBHHHBB", data[:10]) == (0x45, 0, 23, 0xBEEF, 0, 1, 112)
    packet = parse_ipv4_packet(data)
    assert (packet.src, packet.dst, packet.ttl, packet.payload) == (NODE1, NODE2, 1, b"xyz")


@pytest.mark.parametrize(
    ("options", "message"),
    [({"ttl": 256}, "ttl must be in 0..255"), ({"ident": -1}, "ident must be in 0..65535")],
)
def test_build_ipv4_packet_rejects_out_of_range_fields(
    options: dict[str, int], message: str
) -> None:
    arguments: dict[str, Any] = {"ttl": 255, "protocol": 112} | options
    with pytest.raises(ValueError, match=message):
        build_ipv4_packet(NODE1, NODE2, payload=b"", **arguments)


# --- construction and encode validation --------------------------------------------

_BASE: dict[str, Any] = {"version": 3, "vrid": 1, "priority": 100, "max_advert_int": 1.0}


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"version": 1}, ValueError, "version must be in 2..3"),
        ({"vrid": 0}, ValueError, "vrid must be in 1..255"),
        ({"vrid": 256}, ValueError, "vrid must be in 1..255"),
        ({"priority": -1}, ValueError, "priority must be in 0..255"),
        ({"priority": 256}, ValueError, "priority must be in 0..255"),
        ({"priority": True}, TypeError, "priority must be an int"),
        ({"max_advert_int": 0}, ValueError, "0.01..40.95"),
        ({"max_advert_int": 40.96}, ValueError, "0.01..40.95"),
        ({"max_advert_int": 0.005}, ValueError, "whole centiseconds"),
        ({"max_advert_int": float("nan")}, ValueError, "finite"),
        ({"max_advert_int": 1e308}, ValueError, "0.01..40.95"),
        ({"max_advert_int": -0.01}, ValueError, "0.01..40.95"),
        ({"max_advert_int": "1"}, TypeError, "number of seconds"),
        ({"version": 2, "max_advert_int": 0}, ValueError, "whole seconds in 1..255"),
        ({"version": 2, "max_advert_int": 256}, ValueError, "whole seconds in 1..255"),
        ({"version": 2, "max_advert_int": 1.5}, ValueError, "whole seconds in 1..255"),
        ({"addresses": (VIP, VIP6)}, ValueError, "all be IPv4 or all be IPv6"),
        ({"addresses": ("10.0.0.1",)}, TypeError, "IPv4Address or IPv6Address"),
        ({"addresses": _v4_addresses(256)}, ValueError, "at most 255 addresses"),
        ({"version": 2, "addresses": (VIP6,)}, ValueError, "IPv4 addresses only"),
        ({"auth_type": 1, "auth_data": b"x"}, ValueError, "VRRPv3 has no authentication"),
        ({"version": 2, "auth_type": 3}, ValueError, "NONE \\(0\\), PASS \\(1\\) or AH \\(2\\)"),
        ({"version": 2, "auth_data": b"x"}, ValueError, "empty when auth_type is NONE"),
        ({"version": 2, "auth_type": 1, "auth_data": b"123456789"}, ValueError, "at most 8"),
        ({"version": 2, "auth_type": 1, "auth_data": "pw"}, TypeError, "auth_data must be bytes"),
    ],
)
def test_advert_rejects_out_of_range_fields(
    changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Advert(**(_BASE | changes))


def test_advert_normalises_what_it_stores() -> None:
    advert = Advert(version=3, vrid=1, priority=1, max_advert_int=0.07, addresses=[VIP])  # type: ignore[arg-type]
    assert advert.max_advert_int == 7 / 100
    assert advert.addresses == (VIP,)
    assert Advert(version=2, vrid=1, priority=1, max_advert_int=2).max_advert_int == 2.0


@pytest.mark.parametrize(
    ("advert", "src", "dst", "message"),
    [
        (Advert(**_BASE, addresses=(VIP,)), NODE1, LL2, "different address families"),
        (Advert(**_BASE | {"version": 2}), LL1, LL2, "VRRPv2 runs over IPv4 only"),
        (Advert(**_BASE, addresses=(VIP6,)), NODE1, NODE2, "IPv6 addresses in an IPv4 advert"),
        (Advert(**_BASE, addresses=(VIP,)), LL1, LL2, "IPv4 addresses in an IPv6 advert"),
    ],
)
def test_encode_rejects_a_family_mismatch(
    advert: Advert, src: IPAddress, dst: IPAddress, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_advert(advert, src=src, dst=dst)


# --- the checksum -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes.fromhex("0001f203f4f5f6f7"), 0x220D),  # RFC 1071 §3's worked example
        (b"", 0xFFFF),
        (b"\x01", 0xFEFF),  # odd length: pad on the right
        (b"\x00\x01\xf2", 0x0DFE),
        (b"\xff\xff", 0x0000),
        (b"\xff\xff\x00\x00", 0x0000),  # residue 0 of a non-zero sum is 0xffff, not 0
        (b"\x00\x01\xff\xfe", 0x0000),
        (bytes(10), 0xFFFF),
    ],
)
def test_internet_checksum_known_answers(data: bytes, expected: int) -> None:
    assert internet_checksum(data) == expected == reference_checksum(data)


def test_a_message_with_its_checksum_sums_to_negative_zero() -> None:
    assert ones_complement_sum(V2_PAYLOAD) == 0xFFFF
    assert ones_complement_sum(memoryview(V2_PAYLOAD)) == 0xFFFF


def test_pseudo_headers() -> None:
    assert pseudo_header(NODE2, NODE1, 112, 12) == NODE2.packed + NODE1.packed + b"\0\x70\0\x0c"
    assert pseudo_header(LL1, LL2, 112, 24) == LL1.packed + LL2.packed + b"\0\0\0\x18\0\0\0\x70"
    with pytest.raises(ValueError, match="one address family"):
        pseudo_header(NODE1, LL2, 112, 12)
