"""The VRRP peer filter's bytecode, run by a tiny classic-BPF interpreter.

The interpreter models what the kernel gives a socket filter: ``ld [k]`` reads the skb
data (IPv4 raw: from the IP header; IPv6 raw: from the payload) and ``ld [SKF_NET_OFF
+ n]`` reads the network header; a load out of bounds ends the program with 0 (drop).
The netns test ``test_vrrp_peer_filter_*`` in tests/netns/test_net_adapters.py runs the
same programs in the real kernel.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailha.net.bpf import (
    ACCEPT,
    BPF_JEQ_K,
    BPF_LD_W_ABS,
    BPF_MAXINSNS,
    BPF_RET_K,
    SKF_NET_OFF,
    FilterError,
    Insn,
    pack,
    peer_source_filter,
)


def run(prog: tuple[Insn, ...], network: bytes, data_offset: int) -> int:
    """Classic BPF over a packet whose network header is ``network`` and whose skb data
    starts ``data_offset`` bytes into it (0 for IPv4 raw, 40 for IPv6 raw)."""
    a = 0
    pc = 0
    steps = 0
    while True:
        steps += 1
        assert steps <= len(prog), "a classic BPF program cannot loop"
        assert 0 <= pc < len(prog), f"jumped out of the program to {pc}"
        insn = prog[pc]
        if insn.code == BPF_LD_W_ABS:
            net = insn.k >= SKF_NET_OFF
            offset = insn.k - SKF_NET_OFF if net else data_offset + insn.k
            if offset + 4 > len(network):
                return 0
            a = struct.unpack_from("!I", network, offset)[0]
            pc += 1
        elif insn.code == BPF_JEQ_K:
            pc += 1 + (insn.jt if a == insn.k else insn.jf)
        elif insn.code == BPF_RET_K:
            return insn.k
        else:
            raise AssertionError(f"unexpected opcode {insn.code:#x}")


def v4_packet(src: str, dst: str = "10.0.0.2", payload: bytes = b"\x21\xad\x64\x01") -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 0, 0, 255, 112, 0,
                         IPv4Address(src).packed, IPv4Address(dst).packed)
    return header + payload


def v6_packet(src: str, dst: str = "fd00::2", payload: bytes = b"\x31\xad\x64\x01") -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, len(payload), 112, 255,
                         IPv6Address(src).packed, IPv6Address(dst).packed)
    return header + payload


def accepts_v4(prog: tuple[Insn, ...], src: str) -> bool:
    return run(prog, v4_packet(src), 0) == ACCEPT


def accepts_v6(prog: tuple[Insn, ...], src: str) -> bool:
    return run(prog, v6_packet(src), 40) == ACCEPT


def test_v4_accepts_only_the_peers() -> None:
    prog = peer_source_filter([IPv4Address("10.12.49.35"), IPv4Address("10.12.49.40")])
    assert accepts_v4(prog, "10.12.49.35")
    assert accepts_v4(prog, "10.12.49.40")
    for other in ("10.12.49.10", "10.12.49.36", "35.49.12.10", "0.0.0.0", "255.255.255.255"):
        assert not accepts_v4(prog, other), other


def test_v4_destination_does_not_matter() -> None:
    prog = peer_source_filter([IPv4Address("10.0.0.1")])
    # A non-peer sending *to* the peer's address (or the peer's address as payload).
    assert run(prog, v4_packet("10.0.0.9", dst="10.0.0.1"), 0) == 0
    assert run(prog, v4_packet("10.0.0.9", payload=IPv4Address("10.0.0.1").packed), 0) == 0


def test_v6_reads_the_source_through_the_network_header() -> None:
    # The IPv6 raw socket's filter sees the payload only (data_offset 40): absolute
    # offsets would read VRRP bytes, SKF_NET_OFF reads the header.
    peer = "fe80::a8c1:abff:fe12:3456"
    prog = peer_source_filter([IPv6Address(peer)])
    assert accepts_v6(prog, peer)
    assert all(i.k >= SKF_NET_OFF for i in prog if i.code == BPF_LD_W_ABS)


@pytest.mark.parametrize("word", range(4))
def test_v6_rejects_a_source_differing_in_any_word(word: int) -> None:
    peer = IPv6Address("fd00:1:2:3:4:5:6:7")
    other = bytearray(peer.packed)
    other[4 * word + 3] ^= 1
    prog = peer_source_filter([peer, IPv6Address("fd00::99")])
    assert not accepts_v6(prog, str(IPv6Address(bytes(other))))
    assert accepts_v6(prog, "fd00::99")


def test_truncated_packet_is_dropped() -> None:
    prog = peer_source_filter([IPv4Address("10.0.0.1")])
    assert run(prog, v4_packet("10.0.0.1")[:14], 0) == 0


def test_refuses_what_it_cannot_filter() -> None:
    with pytest.raises(FilterError, match="no peers"):
        peer_source_filter([])
    with pytest.raises(FilterError, match="both address families"):
        peer_source_filter([IPv4Address("10.0.0.1"), IPv6Address("fd00::1")])
    many = [IPv6Address(f"fd00::{i:x}") for i in range(BPF_MAXINSNS // 9 + 1)]
    with pytest.raises(FilterError, match="instructions"):
        peer_source_filter(many)


def test_duplicates_are_tested_once_and_program_shape() -> None:
    peer = IPv4Address("10.0.0.1")
    prog = peer_source_filter([peer, peer])
    assert len(prog) == 4  # ld, jeq, ret accept, ret drop
    assert prog[-1] == Insn(BPF_RET_K, 0, 0, 0)
    code = pack(prog)
    assert len(code) == 8 * len(prog)
    assert struct.unpack_from("=HBBI", code, 8) == (BPF_JEQ_K, 0, 1, int(peer))


v4_addr = st.integers(0, 2**32 - 1).map(IPv4Address)
v6_addr = st.integers(0, 2**128 - 1).map(IPv6Address)


@given(st.lists(v4_addr, min_size=1, max_size=40), v4_addr)
def test_v4_property(peers: list[IPv4Address], src: IPv4Address) -> None:
    prog = peer_source_filter(peers)
    assert accepts_v4(prog, str(src)) == (src in peers)
    for peer in peers:
        assert accepts_v4(prog, str(peer))


@given(st.lists(v6_addr, min_size=1, max_size=20), v6_addr, st.integers(0, 15))
def test_v6_property(peers: list[IPv6Address], src: IPv6Address, flip: int) -> None:
    prog = peer_source_filter(peers)
    assert accepts_v6(prog, str(src)) == (src in peers)
    near = bytearray(peers[0].packed)
    near[flip] ^= 0x80
    assert accepts_v6(prog, str(IPv6Address(bytes(near)))) == (IPv6Address(bytes(near)) in peers)
    for peer in peers:
        assert accepts_v6(prog, str(peer))
