"""Classic BPF socket filters for the VRRP raw socket: peers in, bytecode out.

Why a kernel filter: a raw protocol-112 socket receives every VRRP packet addressed to
the host, from anyone.  Under a flood of junk (issue 14: 20,000 packets/s from a
non-peer) the socket's receive queue fills faster than a Python daemon drains it, and
the kernel then drops packets *without looking at them* -- the master's real adverts
among them, so the backup may take over falsely.  When the configuration lists unicast
peers, anything from another source is garbage by definition (RFC 5798 leaves unicast
out, keepalived drops it in userspace), so it can be dropped in the kernel before it
takes queue space or a system call.  In multicast mode every router on the segment is a
legitimate sender, so no filter is built there.

Both families are filtered on the IP source address, read at a *network-header
relative* offset (``SKF_NET_OFF``): an IPv4 raw socket's filter sees the packet from the
IP header, but an IPv6 raw socket's filter sees only the payload (skb data starts after
the IPv6 header and extension headers), so absolute offsets cannot reach the IPv6
source.  ``SKF_NET_OFF + n`` addresses byte ``n`` of the network header whatever the
data offset, which works for both (the Linux ``ld [x]`` negative-offset extension, in
the kernel since 2.6).

The same instructions serve other filters (:func:`mailha.net.sockdiag.listener_destroy_filter`).

This module is pure: :func:`peer_source_filter` returns instructions, :func:`pack`
turns them into ``struct sock_filter`` bytes.  Attaching (``SO_ATTACH_FILTER``) is the
socket adapter's job (:mod:`mailha.net.vrrp_socket`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from mailha.errors import MailhaError
from mailha.ip import IPAddress

__all__ = [
    "ACCEPT",
    "BPF_MAXINSNS",
    "SKF_NET_OFF",
    "FilterError",
    "Insn",
    "pack",
    "peer_source_filter",
]

# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h): the few the filter uses.
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = u32 at [k], big-endian
BPF_LD_H_ABS = 0x28  # BPF_LD | BPF_H | BPF_ABS: A = u16 at [k], big-endian
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: pc += (A == k) ? jt : jf
BPF_RET_K = 0x06  # BPF_RET | BPF_K: return k (bytes of the packet to keep; 0 drops)

#: ``SKF_NET_OFF`` (-0x100000) as the unsigned 32-bit ``k`` the kernel receives.
SKF_NET_OFF = 0x100000000 - 0x100000
#: Keep the whole packet.
ACCEPT = 0xFFFFFFFF
DROP = 0
#: The kernel refuses longer programs (``BPF_MAXINSNS``).
BPF_MAXINSNS = 4096

_SRC_OFFSET = {4: 12, 6: 8}  # source address within the IPv4 / IPv6 header



class FilterError(MailhaError, ValueError):
    """The peers cannot be expressed as a filter (mixed families, too many)."""


@dataclass(frozen=True, slots=True)
class Insn:
    """One ``struct sock_filter``: opcode, jump-if-true, jump-if-false, constant."""

    code: int
    jt: int
    jf: int
    k: int


def peer_source_filter(peers: Sequence[IPAddress]) -> tuple[Insn, ...]:
    """A program accepting exactly the packets whose IP source is one of ``peers``.

    Every jump is short and local (each peer's test ends in its own ``ret ACCEPT``), so
    the program stays valid for any number of peers up to the kernel's instruction
    limit.  Raises :class:`FilterError` for no peers, mixed families or too many peers.
    """
    if not peers:
        raise FilterError("no peers: nothing to filter on (multicast accepts any router)")
    versions = {p.version for p in peers}
    if len(versions) != 1:
        raise FilterError("peers of both address families")
    version = versions.pop()
    base = SKF_NET_OFF + _SRC_OFFSET[version]
    prog: list[Insn] = []
    unique = list(dict.fromkeys(peers))
    if version == 4:
        prog.append(Insn(BPF_LD_W_ABS, 0, 0, base))
        for peer in unique:
            # equal: fall through to ret ACCEPT; different: skip it.
            prog.append(Insn(BPF_JEQ_K, 0, 1, _word(peer.packed, 0)))
            prog.append(Insn(BPF_RET_K, 0, 0, ACCEPT))
    else:
        for peer in unique:
            # 4 x (load word, compare); a mismatch jumps past this peer's block.
            words = [_word(peer.packed, 4 * i) for i in range(4)]
            for i, word in enumerate(words):
                remaining = 2 * (3 - i)  # insns left in the block before ret ACCEPT
                prog.append(Insn(BPF_LD_W_ABS, 0, 0, base + 4 * i))
                prog.append(Insn(BPF_JEQ_K, 0, remaining + 1, word))
            prog.append(Insn(BPF_RET_K, 0, 0, ACCEPT))
    prog.append(Insn(BPF_RET_K, 0, 0, DROP))
    if len(prog) > BPF_MAXINSNS:
        raise FilterError(f"{len(unique)} peers need {len(prog)} instructions, over "
                          f"the kernel's {BPF_MAXINSNS}")
    return tuple(prog)


def pack(program: Sequence[Insn]) -> bytes:
    """The program as the kernel's array of ``struct sock_filter`` (native byte order)."""
    return b"".join(struct.pack("=HBBI", i.code, i.jt, i.jf, i.k) for i in program)


def _word(packed: bytes, offset: int) -> int:
    value: int = struct.unpack_from("!I", packed, offset)[0]
    return value
