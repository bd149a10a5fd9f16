"""sock_diag wire layer and the listener rule: captured kernel messages, constructed ones,
the BPF destroy filter and the inet_diag bytecode run by small interpreters of the
kernel's semantics. The real kernel runs the same in tests/netns/test_listen_watch_sockets.py.
"""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailha.ip import IPAddress
from mailha.net.bpf import ACCEPT, BPF_JEQ_K, BPF_LD_H_ABS, BPF_RET_K, Insn
from mailha.net.sockdiag import (
    AF_INET,
    AF_INET6,
    INET_DIAG_BC_S_GE,
    INET_DIAG_BC_S_LE,
    TCP_CLOSE,
    TCP_LISTEN,
    SockDiagError,
    SockInfo,
    accepts,
    decode_messages,
    dump_families,
    is_listener_destroy,
    listener_destroy_filter,
    listener_dump_request,
    serving,
)

CAPTURES = Path(__file__).parent / "data" / "sockdiag-linux-6.18.txt"


def captured() -> dict[str, bytes]:
    out = {}
    for line in CAPTURES.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, length, hexdata = line.split()
        data = bytes.fromhex(hexdata)
        assert len(data) == int(length)
        out[name] = data
    return out


CAP = captured()


def only(data: bytes, seq: int | None = None) -> list[SockInfo | None]:
    return list(decode_messages(data, seq))


# --------------------------------------------------------------------------- decoding


def test_captured_destroy_events_decode() -> None:
    (server,) = only(CAP["session-server"])
    (client,) = only(CAP["session-client"])
    (lst,) = only(CAP["listener"])
    loop = IPv4Address("127.0.0.1")
    assert server is not None and client is not None and lst is not None
    # Every freed full socket is in TCP_CLOSE; only the listener has no remote port.
    assert (server.state, server.sport, server.src, server.dst) == (TCP_CLOSE, 2525, loop, loop)
    assert server.dport != 0 and client.sport == server.dport and client.dport == 2525
    assert (lst.family, lst.state, lst.sport, lst.dport, lst.src) == (
        AF_INET, TCP_CLOSE, 2525, 0, loop)
    assert [is_listener_destroy(s, 2525) for s in (server, client, lst)] == [False, False, True]
    assert not is_listener_destroy(lst, 25)


def test_captured_ipv6_dump_and_done() -> None:
    (sock,) = only(CAP["dump6"], seq=9)
    assert sock == SockInfo(AF_INET6, TCP_LISTEN, 2525, 0, IPv6Address("::1"),
                            IPv6Address("::"), 0, v6only=True)
    assert only(CAP["done"], seq=9) == [None]
    assert only(CAP["dump6"], seq=8) == []  # another request's answer is skipped


def test_error_message_carries_the_kernel_errno() -> None:
    with pytest.raises(SockDiagError) as info:
        only(CAP["error"], seq=10)
    assert info.value.errno == errno.EINVAL
    assert "request refused: Invalid argument (EINVAL)" in str(info.value)


def test_several_messages_in_one_datagram_and_an_ack() -> None:
    ack = struct.pack("=IHHIIi", 36, 2, 0, 9, 0, 0) + bytes(16)
    data = CAP["dump6"] + ack + CAP["done"]
    assert len(only(data, seq=9)) == 2  # the socket, then None; the ack (error 0) skipped


def test_interrupted_dump_is_an_error_to_repeat() -> None:
    data = bytearray(CAP["dump6"])
    struct.pack_into("=H", data, 6, 0x2 | 0x10)  # NLM_F_MULTI | NLM_F_DUMP_INTR
    with pytest.raises(SockDiagError) as info:
        only(bytes(data), seq=9)
    assert info.value.errno == errno.EINTR


@pytest.mark.parametrize("cut", [17, 40, 100, 131])
def test_truncated_messages_are_refused(cut: int) -> None:
    with pytest.raises(SockDiagError):
        only(CAP["dump6"][:cut])


@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_the_decode_error(data: bytes) -> None:
    try:
        only(data)
    except SockDiagError:
        pass


# --------------------------------------------------------------------------- BPF filter


def run_bpf(prog: tuple[Insn, ...], packet: bytes) -> int:
    """Classic BPF as the kernel runs a netlink socket filter: data from the nlmsghdr."""
    a, pc = 0, 0
    for _ in range(len(prog)):
        insn = prog[pc]
        if insn.code == BPF_LD_H_ABS:
            if insn.k + 2 > len(packet):
                return 0
            a = struct.unpack_from("!H", packet, insn.k)[0]
            pc += 1
        elif insn.code == BPF_JEQ_K:
            pc += 1 + (insn.jt if a == insn.k else insn.jf)
        elif insn.code == BPF_RET_K:
            return insn.k
        else:
            raise AssertionError(f"unexpected opcode {insn.code:#x}")
    raise AssertionError("ran off the end")


def test_destroy_filter_keeps_only_the_listener_of_its_port() -> None:
    prog = listener_destroy_filter(2525)
    kept = {name: run_bpf(prog, CAP[name]) == ACCEPT
            for name in ("session-server", "session-client", "listener")}
    assert kept == {"session-server": False, "session-client": False, "listener": True}
    assert run_bpf(listener_destroy_filter(25), CAP["listener"]) == 0
    assert run_bpf(prog, CAP["listener"][:21]) == 0  # too short to hold the ports


@given(sport=st.integers(0, 65535), dport=st.integers(0, 65535), port=st.integers(1, 65535))
def test_destroy_filter_agrees_with_the_userspace_rule(sport: int, dport: int, port: int) -> None:
    data = bytearray(CAP["listener"])
    struct.pack_into("!HH", data, 20, sport, dport)
    (sock,) = only(bytes(data))
    assert sock is not None
    assert (run_bpf(listener_destroy_filter(port), bytes(data)) == ACCEPT) == \
        is_listener_destroy(sock, port)


# --------------------------------------------------------------------------- dump request


def run_inet_diag_bc(code: bytes, sport: int) -> bool:
    """inet_diag_bc_run() for the port ops: a match jumps ``yes``, else ``no``; the
    program accepts when it lands exactly on its end."""
    length, pc = len(code), 0
    while length > 0:
        op, yes, no = struct.unpack_from("=BBH", code, pc)
        port = struct.unpack_from("=BBH", code, pc + 4)[2]
        match = {INET_DIAG_BC_S_GE: sport >= port, INET_DIAG_BC_S_LE: sport <= port}[op]
        step = yes if match else no
        length -= step
        pc += step
    return length == 0


def audit(code: bytes) -> None:
    """inet_diag_bc_audit() for port ops: yes/no in range, 4-aligned, port op follows."""
    length, pc = len(code), 0
    while length > 0:
        op, yes, no = struct.unpack_from("=BBH", code, pc)
        assert op in (INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE)
        assert length >= 8  # the follow-on op with the port
        assert 8 <= yes <= length + 4 and yes % 4 == 0
        assert 4 <= no <= length + 4 and no % 4 == 0
        pc += yes
        length -= yes


@pytest.mark.parametrize("family", [AF_INET, AF_INET6])
def test_dump_request_layout(family: int) -> None:
    req = listener_dump_request(family, 2525, 77)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", req)
    assert (length, kind, flags, seq, pid) == (len(req), 20, 0x301, 77, 0)
    fam, proto, ext, _pad, states = struct.unpack_from("=BBBBI", req, 16)
    assert (fam, proto, ext, states) == (family, 6, 0, 1 << TCP_LISTEN)
    attr_len, attr_type = struct.unpack_from("=HH", req, 16 + 56)
    assert attr_type == 1 and attr_len == 4 + 16 and len(req) == 16 + 56 + attr_len
    code = req[16 + 56 + 4:]
    audit(code)
    assert [run_inet_diag_bc(code, p) for p in (2524, 2525, 2526, 0, 65535)] == [
        False, True, False, False, False]


def test_dump_request_refuses_what_it_cannot_express() -> None:
    for bad in (0, 65536):
        with pytest.raises(ValueError):
            listener_dump_request(AF_INET, bad, 1)
        with pytest.raises(ValueError):
            listener_destroy_filter(bad)
    with pytest.raises(ValueError):
        listener_dump_request(1, 25, 1)


# --------------------------------------------------------------------------- the rule


def lst(address: str, port: int = 25, v6only: bool | None = None,
        state: int = TCP_LISTEN) -> SockInfo:
    addr: IPAddress = ip_address(address)
    family = AF_INET if addr.version == 4 else AF_INET6
    dst: IPAddress = IPv4Address(0) if family == AF_INET else IPv6Address(0)
    if family == AF_INET6 and v6only is None:
        v6only = False
    return SockInfo(family, state, port, 0, addr, dst, 0, v6only)


RS4 = IPv4Address("10.12.49.35")
RS6 = IPv6Address("fd00::35")


@pytest.mark.parametrize("listener,address,expected", [
    (lst("10.12.49.35"), RS4, True),
    (lst("0.0.0.0"), RS4, True),
    (lst("10.12.49.36"), RS4, False),
    (lst("127.0.0.1"), RS4, False),
    (lst("10.12.49.35", port=2525), RS4, False),
    (lst("10.12.49.35", state=TCP_CLOSE), RS4, False),
    (lst("::"), RS4, True),  # dual-stack wildcard
    (lst("::", v6only=True), RS4, False),
    (SockInfo(AF_INET6, TCP_LISTEN, 25, 0, IPv6Address("::"), IPv6Address("::"), 0, None),
     RS4, True),  # a kernel that does not say v6only: dual-stack, the careful guess
    (lst("::ffff:10.12.49.35"), RS4, True),
    (lst("::ffff:10.12.49.36"), RS4, False),
    (lst("fd00::35"), RS6, True),
    (lst("::", v6only=True), RS6, True),
    (lst("::"), RS6, True),
    (lst("fd00::36"), RS6, False),
    (lst("0.0.0.0"), RS6, False),
    (lst("::ffff:10.12.49.35"), RS6, False),
])
def test_which_listener_accepts_the_real_server(listener: SockInfo, address: IPAddress,
                                                expected: bool) -> None:
    assert accepts(listener, address, 25) is expected


def test_serving_needs_one_and_any_sibling_will_do() -> None:
    siblings = [lst("10.12.49.35"), lst("10.12.49.35")]  # SO_REUSEPORT
    assert serving(siblings, RS4, 25)
    assert serving(siblings[1:], RS4, 25)
    assert not serving([], RS4, 25)
    assert not serving([lst("10.12.49.36"), lst("::", v6only=True)], RS4, 25)


def test_dump_families() -> None:
    assert dump_families(RS4) == (AF_INET, AF_INET6)
    assert dump_families(RS6) == (AF_INET6,)
