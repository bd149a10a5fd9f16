"""The unsolicited NA frame's ICMPv6 checksum verifies against an independent sum."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from mailha.net.arp import unsolicited_na_frame

MAC = bytes.fromhex("020000000001")


def _sum16(data: bytes) -> int:
    """RFC 1071 one's-complement sum, word by word (the oracle, not the product's code)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_the_na_checksum_covers_the_ipv6_pseudo_header() -> None:
    ip = IPv6Address("2001:db8::37")
    frame = unsolicited_na_frame(MAC, ip)
    ipv6, body = frame[14:54], frame[54:]
    src, dst = ipv6[8:24], ipv6[24:40]
    assert src == ip.packed and body[0] == 136  # neighbour advertisement
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    assert _sum16(pseudo + body) == 0xFFFF
