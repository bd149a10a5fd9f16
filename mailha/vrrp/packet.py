"""VRRP advertisement wire format (RFC 3768 §5, RFC 5798 §5): bytes in, values out.

This is the bottom of three layers (wire format → protocol → user API, as pyroute2
splits netlink): it knows the bytes and the receive checks a packet can fail on its
own (RFC 5798 §7.1, RFC 3768 §7.1): TTL/hop limit, version, type, length, checksum.
Checks that need an instance's configuration (VRID not ours, interval mismatch,
address-list mismatch, unknown unicast peer, authentication mismatch) belong to the
state machine, which only ever sees a well-formed :class:`Advert`. Nothing here
touches a socket or a clock.

Both versions share the first four octets and the checksum position::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  Type | Virtual Rtr ID|    Priority   | Count IP Addrs|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   Auth Type   | Adver Int (s) |            Checksum           |  v2
    |  rsvd |   Max Adver Int (cs)  |            Checksum           |  v3
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |    IPv4 (4 octets) or IPv6 (16 octets) address, times count   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Authentication Data (8 octets)                |  v2 only
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Checksums: v2 covers the VRRP message only. v3 adds the IP pseudo-header built from the
packet's real source and destination, so a unicast advert is checksummed against the
peer's address (keepalived ≥ 1.3.7 does this; the captures in ``tests/unit/data`` show
it). Some routers checksum IPv4 v3 adverts without the pseudo-header (keepalived's
``v3_checksum_as_v2``), and keepalived ≤ 1.3.6 used the multicast group as the
pseudo-header destination even for unicast; the decoder accepts all of these by default,
as keepalived 2.2.7 does, which costs a little error detection (see
:func:`decode_advert`).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Final, Literal, NamedTuple, TypeAlias, get_args

from mailha.errors import MailhaError
from mailha.ip import IPAddress
from mailha.net.checksum import internet_checksum, ones_complement_sum, pseudo_header

__all__ = [
    "ADVERTISEMENT",
    "DECODE_ERROR_REASONS",
    "VRRP_MCAST_IPV4",
    "VRRP_MCAST_IPV6",
    "VRRP_PROTOCOL",
    "VRRP_TTL",
    "Advert",
    "AuthType",
    "DecodeErrorReason",
    "IPv4Packet",
    "VrrpDecodeError",
    "build_ipv4_packet",
    "decode_advert",
    "encode_advert",
    "parse_ipv4_packet",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

VRRP_PROTOCOL: Final = 112
"""IP protocol number / IPv6 next header of VRRP (both RFCs §5.1)."""
VRRP_TTL: Final = 255
"""TTL / hop limit every VRRP packet is sent with and must arrive with (§5.1.1.3)."""
VRRP_MCAST_IPV4: Final = IPv4Address("224.0.0.18")
VRRP_MCAST_IPV6: Final = IPv6Address("ff02::12")
ADVERTISEMENT: Final = 1
"""The only VRRP packet type (§5.2.2); the type of every :class:`Advert`."""

_HEADER = struct.Struct("!BBBBBBH")
_HEADER_LEN: Final = _HEADER.size  # 8
_AUTH_LEN: Final = 8
_MAX_ADDRESSES: Final = 255  # an 8-bit count
_V3_INTERVAL_MASK: Final = 0x0FFF  # the top 4 bits are reserved (RFC 5798 §5.2.6)
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IPV4_MIN_HEADER: Final = _IPV4_HEADER.size  # 20


class AuthType(IntEnum):
    """VRRPv2 Auth Type values (RFC 2338 §5.3.6; RFC 3768 reserves 1 and 2).

    keepalived still sends ``PASS`` and ``AH``, so a decoder that met a keepalived with
    ``authentication {}`` must name them rather than call the packet malformed.
    """

    NONE = 0
    PASS = 1
    AH = 2


_AUTH_TYPES: Final = frozenset(AuthType)

DecodeErrorReason: TypeAlias = Literal[
    "ttl",
    "truncated",
    "length",
    "version",
    "type",
    "family",
    "checksum",
    "vrid",
    "interval",
    "auth",
    "ip_header",
]
"""Why a packet was refused; stable, short, usable as a Prometheus label value."""

DECODE_ERROR_REASONS: Final[frozenset[str]] = frozenset(get_args(DecodeErrorReason))
"""Every ``VrrpDecodeError.reason``, so metrics can pre-create one series per reason.

- ``ttl``: TTL / hop limit is not 255 (the packet crossed a router, or was forged).
- ``truncated``: fewer octets than the header, or than its address count, requires.
- ``length``: more octets than the address count accounts for (keepalived drops those).
- ``version``: version field neither 2 nor 3.
- ``type``: type field not ADVERTISEMENT (1).
- ``family``: source and destination of different families, or VRRPv2 over IPv6.
- ``checksum``: the VRRP checksum does not verify.
- ``vrid``: VRID 0, outside RFC's 1-255.
- ``interval``: advertisement interval 0.
- ``auth``: VRRPv2 auth type other than NONE, PASS, AH.
- ``ip_header``: the IPv4 header itself is malformed (:func:`parse_ipv4_packet`).
"""


class VrrpDecodeError(MailhaError):
    """A received packet is not a well-formed VRRP advertisement.

    ``reason`` is one of :data:`DECODE_ERROR_REASONS` (for counters); ``detail`` is the
    human-readable specifics (for logs) and may change between releases.
    """

    def __init__(self, reason: DecodeErrorReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DecodeErrorReason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[VrrpDecodeError], tuple[DecodeErrorReason, str]]:
        return type(self), (self.reason, self.detail)


@dataclass(frozen=True, slots=True)
class Advert:
    """One VRRP ADVERTISEMENT, independent of the addresses it travels between.

    ``max_advert_int`` is in seconds: whole seconds 1-255 for v2, whole centiseconds
    0.01-40.95 for v3 (stored exactly as ``centiseconds / 100`` so decoded adverts
    compare equal to constructed ones). ``auth_type``/``auth_data`` exist only in v2;
    ``auth_data`` is the 8-octet field, zero-padded as RFC 2338 requires, and empty when
    ``auth_type`` is NONE (the field is then ignored on receipt, RFC 3768 §5.3.6).

    Construction validates every range, so an ``Advert`` can always be encoded; a
    ``ValueError`` (or ``TypeError`` for a wrong type) names the offending field.
    """

    version: int
    vrid: int
    priority: int
    max_advert_int: float
    addresses: tuple[IPAddress, ...] = ()
    auth_type: int = AuthType.NONE
    auth_data: bytes = b""

    def __post_init__(self) -> None:
        _require_int("version", self.version, 2, 3)
        _require_int("vrid", self.vrid, 1, 255)
        _require_int("priority", self.priority, 0, 255)
        object.__setattr__(self, "max_advert_int", _normalise_interval(self))
        object.__setattr__(self, "addresses", _normalise_addresses(self))
        auth_type, auth_data = _normalise_auth(self)
        object.__setattr__(self, "auth_type", auth_type)
        object.__setattr__(self, "auth_data", auth_data)

    @property
    def centiseconds(self) -> int:
        """The interval in centiseconds, exact (v3 timers are specified in these)."""
        return round(self.max_advert_int * 100)


def _require_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


def _normalise_interval(advert: Advert) -> float:
    value = advert.max_advert_int
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"max_advert_int must be a number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"max_advert_int must be finite, got {value}")
    if advert.version == 2:
        if not float(value).is_integer() or not 1 <= value <= 255:
            raise ValueError(f"VRRPv2 max_advert_int must be whole seconds in 1..255, got {value}")
        return float(value)
    centis = round(value * 100) if 0 < value < 41 else 0  # bounded before scaling
    if abs(value * 100 - centis) > 1e-6 or not 1 <= centis <= _V3_INTERVAL_MASK:
        raise ValueError(
            f"VRRPv3 max_advert_int must be whole centiseconds in 0.01..40.95 s, got {value}"
        )
    return centis / 100


def _normalise_addresses(advert: Advert) -> tuple[IPAddress, ...]:
    addresses = tuple(advert.addresses)
    if len(addresses) > _MAX_ADDRESSES:
        raise ValueError(f"at most {_MAX_ADDRESSES} addresses fit an advert, got {len(addresses)}")
    for address in addresses:
        if not isinstance(address, IPv4Address | IPv6Address):
            raise TypeError(f"addresses must be IPv4Address or IPv6Address, got {address!r}")
    if len({address.version for address in addresses}) > 1:
        raise ValueError("addresses must all be IPv4 or all be IPv6")
    if advert.version == 2 and addresses and addresses[0].version == 6:
        raise ValueError("VRRPv2 carries IPv4 addresses only (RFC 3768); use version 3")
    return addresses


def _normalise_auth(advert: Advert) -> tuple[int, bytes]:
    auth_type, auth_data = advert.auth_type, advert.auth_data
    _require_int("auth_type", auth_type, 0, 255)
    if not isinstance(auth_data, bytes | bytearray):
        raise TypeError(f"auth_data must be bytes, got {type(auth_data).__name__}")
    if advert.version == 3:
        if auth_type != AuthType.NONE or auth_data:
            raise ValueError("VRRPv3 has no authentication fields (RFC 5798 §5.2)")
        return AuthType.NONE, b""
    if auth_type not in _AUTH_TYPES:
        raise ValueError(f"auth_type must be NONE (0), PASS (1) or AH (2), got {auth_type}")
    if auth_type == AuthType.NONE:
        if any(auth_data):
            raise ValueError("auth_data must be empty when auth_type is NONE")
        return AuthType.NONE, b""
    if len(auth_data) > _AUTH_LEN:
        raise ValueError(f"auth_data holds at most {_AUTH_LEN} octets, got {len(auth_data)}")
    return AuthType(auth_type), bytes(auth_data).ljust(_AUTH_LEN, b"\x00")


def _check_endpoints(src: IPAddress, dst: IPAddress) -> None:
    for name, address in (("src", src), ("dst", dst)):
        if not isinstance(address, IPv4Address | IPv6Address):
            raise TypeError(f"{name} must be IPv4Address or IPv6Address, got {address!r}")


def encode_advert(
    advert: Advert,
    *,
    src: IPAddress,
    dst: IPAddress,
    v3_checksum_as_v2: bool = False,
) -> bytes:
    """Return the VRRP payload (no IP header) of ``advert`` sent from ``src`` to ``dst``.

    ``src``/``dst`` are the IP source and destination the packet will carry: the
    multicast group, or the peer's address for unicast. They enter only the v3
    checksum, but are always checked to be one family matching the addresses, since
    the payload layout depends on it. ``v3_checksum_as_v2`` checksums an IPv4 v3 advert
    without the pseudo-header for routers that expect that; it is ignored for IPv6,
    where the kernel and every peer use the pseudo-header (RFC 8200 §8.1).

    Raises ``ValueError`` for a family mismatch.
    """
    _check_endpoints(src, dst)
    if src.version != dst.version:
        raise ValueError(f"src {src} and dst {dst} are of different address families")
    if advert.version == 2 and src.version == 6:
        raise ValueError("VRRPv2 runs over IPv4 only (RFC 3768); use version 3 for IPv6")
    if advert.addresses and advert.addresses[0].version != src.version:
        raise ValueError(
            f"IPv{advert.addresses[0].version} addresses in an IPv{src.version} advert"
        )

    if advert.version == 2:
        fourth_word = (advert.auth_type << 8) | int(advert.max_advert_int)
        trailer = advert.auth_data or bytes(_AUTH_LEN)
    else:
        fourth_word = advert.centiseconds
        trailer = b""
    message = bytearray(
        struct.pack(
            "!BBBBH",
            (advert.version << 4) | ADVERTISEMENT,
            advert.vrid,
            advert.priority,
            len(advert.addresses),
            fourth_word,
        )
    )
    message += bytes(2)  # checksum, computed below over the zeroed field
    for address in advert.addresses:
        message += address.packed
    message += trailer

    if advert.version == 3 and not (v3_checksum_as_v2 and src.version == 4):
        covered = pseudo_header(src, dst, VRRP_PROTOCOL, len(message)) + message
    else:
        covered = bytes(message)
    struct.pack_into("!H", message, 6, internet_checksum(covered))
    return bytes(message)


def decode_advert(
    payload: Buffer,
    *,
    src: IPAddress,
    dst: IPAddress,
    ttl: int,
    v3_checksum_as_v2: bool = False,
    accept_either_v3_checksum: bool = True,
    check_ttl: bool = True,
) -> Advert:
    """Decode and check the VRRP ``payload`` of a packet ``src`` sent to ``dst``.

    ``ttl`` is the received IPv4 TTL or IPv6 hop limit; it must be 255 (RFC 5798 §7.1)
    unless ``check_ttl`` is false (keepalived skips this check for unicast peers, which
    may be routed; the caller then applies its own range).

    The checksum of an IPv4 VRRPv3 advert is verified with the pseudo-header, or
    without it when ``v3_checksum_as_v2``. With ``accept_either_v3_checksum`` (the
    default, matching keepalived 2.2.7) any checksum a known peer produces is
    accepted: with the pseudo-header, without it, or with the multicast group as the
    pseudo-header destination (keepalived ≤ 1.3.6 unicast). Accepting several sums
    weakens detection: a corruption that happens to equal the difference between two
    accepted sums goes unnoticed. With it false, every single-bit error is caught.

    Raises :class:`VrrpDecodeError` (and nothing else) for any malformed input.
    """
    _check_endpoints(src, dst)
    data = bytes(payload)
    if check_ttl and ttl != VRRP_TTL:
        raise VrrpDecodeError("ttl", f"TTL/hop limit is {ttl}, must be {VRRP_TTL}")
    if src.version != dst.version:
        raise VrrpDecodeError("family", f"src {src} and dst {dst} are of different families")
    if len(data) < _HEADER_LEN:
        raise VrrpDecodeError(
            "truncated", f"{len(data)} octets, shorter than the {_HEADER_LEN}-octet header"
        )
    version_type, vrid, priority, count, octet4, octet5, checksum = _HEADER.unpack_from(data)
    version, packet_type = version_type >> 4, version_type & 0x0F
    if version not in (2, 3):
        raise VrrpDecodeError("version", f"version {version}, expected 2 or 3")
    if packet_type != ADVERTISEMENT:
        raise VrrpDecodeError("type", f"type {packet_type}, expected ADVERTISEMENT (1)")
    if version == 2 and src.version == 6:
        raise VrrpDecodeError("family", "VRRPv2 over IPv6 (RFC 3768 is IPv4-only)")

    address_len = 4 if src.version == 4 else 16
    expected = _HEADER_LEN + count * address_len + (_AUTH_LEN if version == 2 else 0)
    if len(data) < expected:
        raise VrrpDecodeError(
            "truncated", f"{count} address(es) need {expected} octets, got {len(data)}"
        )
    if len(data) > expected:
        raise VrrpDecodeError(
            "length", f"{len(data)} octets, but {count} address(es) account for {expected}"
        )
    if not _checksum_ok(data, version, src, dst, v3_checksum_as_v2, accept_either_v3_checksum):
        raise VrrpDecodeError("checksum", f"checksum 0x{checksum:04x} does not verify")

    if vrid == 0:
        raise VrrpDecodeError("vrid", "VRID 0, valid VRIDs are 1-255")
    if version == 2:
        auth_type, centiseconds = octet4, octet5 * 100
    else:
        auth_type, centiseconds = AuthType.NONE, ((octet4 << 8) | octet5) & _V3_INTERVAL_MASK
    if centiseconds == 0:
        raise VrrpDecodeError("interval", "advertisement interval 0")
    if auth_type not in _AUTH_TYPES:
        raise VrrpDecodeError("auth", f"auth type {auth_type}, expected 0, 1 or 2")

    address_type = IPv4Address if address_len == 4 else IPv6Address
    addresses = tuple(
        address_type(data[offset : offset + address_len])
        for offset in range(_HEADER_LEN, _HEADER_LEN + count * address_len, address_len)
    )
    auth_data = data[expected - _AUTH_LEN :] if version == 2 and auth_type else b""
    return Advert(
        version=version,
        vrid=vrid,
        priority=priority,
        max_advert_int=centiseconds / 100,
        addresses=addresses,
        auth_type=auth_type,
        auth_data=auth_data,
    )


def _checksum_ok(
    data: bytes,
    version: int,
    src: IPAddress,
    dst: IPAddress,
    as_v2: bool,
    accept_either: bool,
) -> bool:
    """Whether ``data`` carries a checksum one of the accepted computations produces."""

    def verifies(destination: IPAddress | None) -> bool:
        covered = data
        if destination is not None:
            covered = pseudo_header(src, destination, VRRP_PROTOCOL, len(data)) + data
        return ones_complement_sum(covered) == 0xFFFF

    if version == 2:
        return verifies(None)
    if src.version == 6:
        return verifies(dst)
    if not accept_either:
        return verifies(None if as_v2 else dst)
    return verifies(dst) or verifies(None) or (dst != VRRP_MCAST_IPV4 and verifies(VRRP_MCAST_IPV4))


class IPv4Packet(NamedTuple):
    """The fields of a received IPv4 datagram the VRRP receive path needs."""

    src: IPv4Address
    dst: IPv4Address
    ttl: int
    protocol: int
    payload: bytes


def parse_ipv4_packet(data: Buffer, *, verify_checksum: bool = True) -> IPv4Packet:
    """Split what an IPv4 raw socket delivers (header included) into header fields and payload.

    The payload ends where the header's total length says, which drops link-layer
    padding (a 46-octet minimum Ethernet frame pads every VRRP advert). Fragments are
    refused: Linux reassembles before raw delivery, so one reaching us is malformed.
    ``verify_checksum`` checks the header checksum (the kernel already has, for packets
    from the wire; it matters for hand-fed bytes).

    Raises :class:`VrrpDecodeError` with reason ``truncated`` or ``ip_header``.
    """
    data = bytes(data)
    if len(data) < _IPV4_MIN_HEADER:
        raise VrrpDecodeError(
            "truncated", f"{len(data)} octets, shorter than a {_IPV4_MIN_HEADER}-octet IPv4 header"
        )
    version_ihl, _tos, total_length, _ident, fragment, ttl, protocol, _csum, src, dst = (
        _IPV4_HEADER.unpack_from(data)
    )
    version, header_len = version_ihl >> 4, (version_ihl & 0x0F) * 4
    if version != 4:
        raise VrrpDecodeError("ip_header", f"IP version {version}, expected 4")
    if header_len < _IPV4_MIN_HEADER:
        raise VrrpDecodeError("ip_header", f"IHL {header_len // 4}, at least 5 required")
    if total_length < header_len:
        raise VrrpDecodeError(
            "ip_header", f"total length {total_length} shorter than the {header_len}-octet header"
        )
    if len(data) < total_length:
        raise VrrpDecodeError(
            "truncated", f"{len(data)} octets, the IPv4 total length says {total_length}"
        )
    if verify_checksum and ones_complement_sum(data[:header_len]) != 0xFFFF:
        raise VrrpDecodeError("ip_header", "IPv4 header checksum does not verify")
    if fragment & 0x3FFF:  # MF flag or a fragment offset
        raise VrrpDecodeError("ip_header", "IPv4 fragment (VRRP adverts are never fragmented)")
    return IPv4Packet(
        src=IPv4Address(src),
        dst=IPv4Address(dst),
        ttl=ttl,
        protocol=protocol,
        payload=data[header_len:total_length],
    )


def build_ipv4_packet(
    src: IPv4Address,
    dst: IPv4Address,
    ttl: int,
    protocol: int,
    payload: bytes,
    *,
    tos: int = 0xC0,
    ident: int = 0,
) -> bytes:
    """Prepend a 20-octet IPv4 header with a valid checksum to ``payload``.

    Meant for sending through an ``IP_HDRINCL`` raw socket (tests that inject forged
    adverts with a chosen TTL) and for rebuilding captures. The defaults match
    keepalived: TOS 0xC0 (network control), no fragmentation flags. On ``IP_HDRINCL``
    sockets Linux rewrites the total length and checksum, and the ident when 0.
    """
    for name, value, high in (
        ("ttl", ttl, 255),
        ("protocol", protocol, 255),
        ("tos", tos, 255),
        ("ident", ident, 0xFFFF),
    ):
        _require_int(name, value, 0, high)
    total_length = _IPV4_MIN_HEADER + len(payload)
    if total_length > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} octets does not fit an IPv4 packet")
    header = bytearray(
        _IPV4_HEADER.pack(
            0x45, tos, total_length, ident, 0, ttl, protocol, 0, src.packed, dst.packed
        )
    )
    struct.pack_into("!H", header, 10, internet_checksum(header))
    return bytes(header) + bytes(payload)
