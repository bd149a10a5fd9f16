"""The Internet checksum (RFC 1071) and the IP pseudo-headers VRRPv3 folds into it.

VRRPv2 (RFC 3768 §5.3.8) checksums the VRRP message alone; VRRPv3 (RFC 5798 §5.2.8)
prepends the IPv4 (RFC 768 style) or IPv6 (RFC 8200 §8.1) pseudo-header, so the same
payload carries a different checksum for every source/destination pair: a unicast
advert is checksummed against the peer's address, not the multicast group.

The sum is computed without a Python loop. Reading the buffer as one big-endian
integer ``N = Σ wᵢ·2¹⁶ⁱ`` and noting ``2¹⁶ ≡ 1 (mod 0xFFFF)`` gives
``N mod 0xFFFF = Σ wᵢ mod 0xFFFF``, which is the one's-complement sum up to its two
zeros. End-around-carry addition only yields ``0x0000`` when every word is zero, so a
non-zero buffer whose residue is 0 sums to ``0xFFFF`` ("negative zero"). One C-level
``int.from_bytes`` and one modulo replace the per-word loop.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

__all__ = [
    "internet_checksum",
    "ones_complement_sum",
    "pseudo_header",
]

Buffer = bytes | bytearray | memoryview


def ones_complement_sum(data: Buffer) -> int:
    """Return the 16-bit one's-complement sum of ``data`` read as big-endian words.

    An odd trailing byte is padded with a zero byte on the right, as RFC 1071 §4.1
    does. The result is in ``0..0xFFFF``; a buffer holding a valid checksum sums to
    ``0xFFFF``.
    """
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    value = int.from_bytes(data, "big")
    if value == 0:
        return 0
    return value % 0xFFFF or 0xFFFF


def internet_checksum(data: Buffer) -> int:
    """Return the RFC 1071 checksum of ``data`` (checksum field zeroed by the caller)."""
    return ~ones_complement_sum(data) & 0xFFFF


def pseudo_header(
    src: IPv4Address | IPv6Address,
    dst: IPv4Address | IPv6Address,
    protocol: int,
    length: int,
) -> bytes:
    """Build the pseudo-header an upper-layer checksum covers for ``src`` → ``dst``.

    IPv4: source, destination, a zero byte, the protocol and a 16-bit length.
    IPv6: source, destination, a 32-bit length, three zero bytes and the next header.
    ``src`` and ``dst`` must be of the same family (``ValueError`` otherwise).
    """
    if src.version != dst.version:
        raise ValueError(f"pseudo-header needs one address family, got {src} and {dst}")
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, protocol, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, protocol)
