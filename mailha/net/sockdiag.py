"""NETLINK_SOCK_DIAG for the listener watch: TCP sockets' destroy events and listener dumps.

Pure wire layer (``struct`` only, no sockets): the adapter is
:mod:`mailha.checkers.listenwatch`. What the kernel does, from its source (read for
Linux 6.x; groups since 4.9) and checked on this host's 6.18 kernel:

* ``__sk_free`` (net/core/sock.c) calls ``sock_diag_broadcast_destroy`` when anyone
  listens on the socket's destroy group; a work item then builds one
  ``SOCK_DIAG_BY_FAMILY`` message with ``inet_diag_handler_get_info``
  (net/ipv4/inet_diag.c: ``inet_diag_msg`` + ``INET_DIAG_PROTOCOL`` + ``INET_DIAG_INFO``)
  and multicasts it to ``SKNLGRP_INET_TCP_DESTROY`` (1) or ``SKNLGRP_INET6_TCP_DESTROY``
  (3) of the socket's own network namespace. One socket, one message, one skb.
* Every freed TCP *full* socket is reported in state ``TCP_CLOSE`` (7): a closed
  listener, an accepted session and a client socket alike. A listener (and a socket that
  was only bound) has destination port 0; a session has its peer's port. Timewait and
  request sockets are not full sockets and are never reported. The event comes when the
  *last* reference goes: Postfix's smtpd children share the master's listening socket,
  so it is destroyed when the last of them lets go, and a ``SO_REUSEPORT`` sibling is a
  socket of its own that stays.
* ``sock_diag_bind`` only loads the inet_diag module; joining the groups does not need
  CAP_NET_ADMIN on 6.18 (the kernel socket has ``NL_CFG_F_NONROOT_RECV``). mailha runs
  as root anyway; a refusal (LSM, seccomp, a kernel without inet_diag) is handled by
  the adapter as a degraded mode.

The events are filtered in the kernel by a classic BPF program on the netlink socket
(:func:`listener_destroy_filter`: destination port 0 and source port the real server's),
so the ~2 destroy messages of every mail session never wake mailha up. After a
listener's destroy the adapter asks for a dump of the listeners on that port
(:func:`listener_dump_request`: ``TCPF_LISTEN``, filtered by source port with
inet_diag bytecode) and decides with :func:`serving` whether one still accepts the real
server's address.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from mailha.errors import MailhaError
from mailha.ip import IPAddress
from mailha.net.bpf import ACCEPT, BPF_JEQ_K, BPF_LD_H_ABS, BPF_RET_K, DROP, Insn

__all__ = [
    "NETLINK_SOCK_DIAG",
    "SKNLGRP_INET6_TCP_DESTROY",
    "SKNLGRP_INET_TCP_DESTROY",
    "SockDiagError",
    "SockInfo",
    "accepts",
    "decode_messages",
    "decode_sock",
    "dump_families",
    "is_listener_destroy",
    "listener_destroy_filter",
    "listener_dump_request",
    "serving",
]

NETLINK_SOCK_DIAG = 4
#: enum sknetlink_groups (include/uapi/linux/sock_diag.h).
SKNLGRP_INET_TCP_DESTROY = 1
SKNLGRP_INET6_TCP_DESTROY = 3
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLM_F_DUMP_INTR = 0x10
TCP_LISTEN = 10
TCP_CLOSE = 7
IPPROTO_TCP = 6
AF_INET = 2
AF_INET6 = 10
#: enum inet_diag_req (request attributes) and inet_diag_attr (reply attributes).
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_SKV6ONLY = 11
#: enum of inet_diag_bc_op.code (include/uapi/linux/inet_diag.h).
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLATTR = struct.Struct("=HH")
#: struct inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid
#: (sport, dport big-endian; src[16], dst[16]; if; cookie[2]), expires, rqueue, wqueue,
#: uid, inode.
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")
_DIAG_MSG_SIZE = _DIAG_MSG.size  # 72
#: struct inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid.
_REQ_V2 = struct.Struct("=BBBBI48s")
#: BPF offsets into a destroy message: nlmsghdr (16) + family/state/timer/retrans (4).
_SPORT_OFFSET = _NLMSGHDR.size + 4
_DPORT_OFFSET = _SPORT_OFFSET + 2

_WILDCARD = {AF_INET: IPv4Address(0), AF_INET6: IPv6Address(0)}


class SockDiagError(MailhaError):
    """The kernel refused a sock_diag request, or sent something that does not parse."""

    def __init__(self, what: str, errno: int = 0) -> None:
        self.errno = errno
        suffix = f": {os.strerror(errno)} ({_errno.errorcode.get(errno, errno)})" if errno else ""
        super().__init__(f"sock_diag {what}{suffix}")


@dataclass(frozen=True, slots=True)
class SockInfo:
    """One socket as sock_diag describes it (a dump entry or a destroy event)."""

    family: int  # AF_INET or AF_INET6
    state: int
    sport: int
    dport: int
    src: IPAddress
    dst: IPAddress
    ifindex: int
    #: IPV6_V6ONLY of an AF_INET6 listener (reported for listeners only), else None.
    v6only: bool | None = None


# --------------------------------------------------------------------------- encoding


def _bc_port_eq(port: int) -> bytes:
    """inet_diag bytecode: source port == ``port`` (``S_GE`` then ``S_LE``, as ss does).

    Each comparison op is followed by an op whose ``no`` field holds the port. A match
    jumps ``yes`` bytes; the program accepts when it lands exactly at its end, and a
    ``no`` jump past the end (length + 4) rejects.
    """
    ops = [(INET_DIAG_BC_S_GE, 8, 20), (0, 0, port), (INET_DIAG_BC_S_LE, 8, 12), (0, 0, port)]
    return b"".join(struct.pack("=BBH", *op) for op in ops)


def listener_dump_request(family: int, port: int, seq: int) -> bytes:
    """A dump request for the TCP listeners of ``family`` whose source port is ``port``."""
    if family not in _WILDCARD:
        raise ValueError(f"address family {family}: AF_INET or AF_INET6 only")
    if not 0 < port < 65536:
        raise ValueError(f"port {port}: 1..65535")
    req = _REQ_V2.pack(family, IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN, bytes(48))
    code = _bc_port_eq(port)
    attr = _NLATTR.pack(_NLATTR.size + len(code), INET_DIAG_REQ_BYTECODE) + code
    body = req + attr
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                            NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return header + body


def listener_destroy_filter(port: int) -> tuple[Insn, ...]:
    """BPF for the destroy-event socket: keep only destroys with dport 0 and sport ``port``.

    Runs in the kernel on every multicast message (``do_one_broadcast`` → ``sk_filter``),
    so a busy mail server's sessions cost mailha no wake-up and no system call. A
    message is one skb starting at its ``nlmsghdr``; the ports sit at fixed offsets.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port {port}: 1..65535")
    return (
        Insn(BPF_LD_H_ABS, 0, 0, _DPORT_OFFSET),
        Insn(BPF_JEQ_K, 0, 3, 0),  # a session (remote port set): drop
        Insn(BPF_LD_H_ABS, 0, 0, _SPORT_OFFSET),
        Insn(BPF_JEQ_K, 0, 1, port),
        Insn(BPF_RET_K, 0, 0, ACCEPT),
        Insn(BPF_RET_K, 0, 0, DROP),
    )


# --------------------------------------------------------------------------- decoding


def decode_messages(data: bytes, seq: int | None = None) -> Iterator[SockInfo | None]:
    """The sockets in one datagram; ``None`` marks the end of a dump (``NLMSG_DONE``).

    ``seq`` (for a dump) skips messages answering another request. Raises
    :class:`SockDiagError` for an error message (the kernel's errno attached), an
    interrupted dump (``NLM_F_DUMP_INTR``: the caller repeats it) or a truncated message.
    """
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise SockDiagError(f"truncated message at byte {offset} (length {length})")
        body = data[offset + _NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3
        if seq is not None and mseq != seq:
            continue
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else _errno.EPROTO
            if code:
                raise SockDiagError("request refused", code)
            continue
        if flags & NLM_F_DUMP_INTR:
            raise SockDiagError("dump interrupted (the socket table changed)", _errno.EINTR)
        if kind == NLMSG_DONE:
            yield None
            continue
        if kind == SOCK_DIAG_BY_FAMILY:
            yield decode_sock(body)


def decode_sock(body: bytes) -> SockInfo:
    """One ``inet_diag_msg`` and its attributes (only ``INET_DIAG_SKV6ONLY`` is read)."""
    if len(body) < _DIAG_MSG_SIZE:
        raise SockDiagError(f"inet_diag_msg of {len(body)} bytes, {_DIAG_MSG_SIZE} expected")
    (family, state, _timer, _retrans, sport, dport, src, dst, ifindex,
     _cookie, _expires, _rq, _wq, _uid, _inode) = _DIAG_MSG.unpack_from(body)
    if family not in _WILDCARD:
        raise SockDiagError(f"socket of address family {family}")
    v6only: bool | None = None
    for kind, value in _attributes(body[_DIAG_MSG_SIZE:]):
        if kind == INET_DIAG_SKV6ONLY and value:
            v6only = bool(value[0])
    return SockInfo(family, state, int.from_bytes(sport, "big"), int.from_bytes(dport, "big"),
                    _address(family, src), _address(family, dst), ifindex, v6only)


def _attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _NLATTR.size:offset + length]
        offset += (length + 3) & ~3


def _address(family: int, raw: bytes) -> IPAddress:
    return IPv4Address(raw[:4]) if family == AF_INET else IPv6Address(raw)


# --------------------------------------------------------------------------- the rule


def is_listener_destroy(sock: SockInfo, port: int) -> bool:
    """What the BPF filter keeps, for a kernel that would not take it."""
    return sock.dport == 0 and sock.sport == port


def accepts(listener: SockInfo, address: IPAddress, port: int) -> bool:
    """Does this listening socket take connections to ``address``:``port``?

    The exact address or the family's wildcard; an IPv4 address also through an IPv6
    socket bound to its IPv4-mapped form (``::ffff:a.b.c.d``), or to ``::`` unless that
    socket is ``IPV6_V6ONLY`` (a kernel that does not say counts as dual-stack). A
    listener bound to a device (``SO_BINDTODEVICE``) counts as accepting: which device
    the real server's traffic arrives on is not known here, and a false "dead" is the
    worse mistake.
    """
    if listener.sport != port or listener.state != TCP_LISTEN:
        return False
    src = listener.src
    if address.version == 4:
        if listener.family == AF_INET:
            return src in (address, _WILDCARD[AF_INET])
        assert isinstance(src, IPv6Address)
        if src.ipv4_mapped is not None:
            return src.ipv4_mapped == address
        return src == _WILDCARD[AF_INET6] and listener.v6only is not True
    return listener.family == AF_INET6 and src in (address, _WILDCARD[AF_INET6])


def serving(listeners: Iterable[SockInfo], address: IPAddress, port: int) -> bool:
    """Whether any of ``listeners`` accepts ``address``:``port`` (SO_REUSEPORT siblings
    and a wildcard next to an exact bind each count on their own)."""
    return any(accepts(s, address, port) for s in listeners)


def dump_families(address: IPAddress) -> tuple[int, ...]:
    """Which families' listeners can accept ``address``: IPv4 is also served by IPv6
    sockets (mapped or dual-stack wildcard)."""
    return (AF_INET, AF_INET6) if address.version == 4 else (AF_INET6,)
