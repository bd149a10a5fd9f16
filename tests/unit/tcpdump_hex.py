"""Read ``tcpdump -xx`` hex dumps of Ethernet frames back into bytes (a test helper).

The reference captures in ``tests/unit/data`` look like::

    16:26:02.480229 IP 10.12.49.35 > 10.12.49.36: VRRPv2, Advertisement, ...
    \t0x0000:  1a16 2df9 eb3a 42ab e053 e1c8 0800 45c0
    \t0x0010:  0028 0002 0000 ff70 4445 0a0c 3123 0a0c

A line that does not start with whitespace opens a frame; ``0xOFFSET:`` lines carry its
octets, and their offsets must follow on from each other so a hand-edited dump with a
missing line fails loudly instead of yielding a shorter packet.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

_HEX_LINE = re.compile(r"^\s+0x([0-9a-fA-F]{4}):\s+((?:[0-9a-fA-F]{2,4}\s?)+)")
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD


@dataclass(frozen=True)
class Frame:
    """One captured frame: tcpdump's one-line summary and the frame's octets."""

    summary: str
    data: bytes

    @property
    def ethertype(self) -> int:
        (ethertype,) = struct.unpack_from("!H", self.data, 12)
        return int(ethertype)

    @property
    def l3(self) -> bytes:
        """The frame's payload after the 14-octet Ethernet II header (no VLAN tags)."""
        return self.data[14:]


def parse_tcpdump_hex(text: str) -> list[Frame]:
    """Return every frame of a ``tcpdump -xx`` dump, in order."""
    frames: list[Frame] = []
    summary: str | None = None
    octets = bytearray()

    def flush() -> None:
        if summary is not None:
            if not octets:
                raise ValueError(f"frame without hex lines: {summary!r}")
            frames.append(Frame(summary, bytes(octets)))

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not line[0].isspace():
            flush()
            summary, octets = line.strip(), bytearray()
            continue
        match = _HEX_LINE.match(line)
        if match is None or summary is None:
            raise ValueError(f"line {number}: not a tcpdump hex line: {line!r}")
        offset = int(match.group(1), 16)
        if offset != len(octets):
            raise ValueError(f"line {number}: offset 0x{offset:04x}, expected 0x{len(octets):04x}")
        octets += bytes.fromhex(match.group(2))
    flush()
    return frames


def load_frames(path: Path) -> list[Frame]:
    return parse_tcpdump_hex(path.read_text(encoding="ascii"))
