"""IPVS generic-netlink messages, encoded and decoded without any I/O.

The attribute numbers and types are the kernel's (``include/uapi/linux/ip_vs.h`` and
the policies in ``net/netfilter/ipvs/ip_vs_ctl.c``); pyroute2's ``ipvsmsg`` describes
the same layout and the unit tests decode what this module encodes with it. This
module exists because mailha needs the whole table read and written fast and exactly:
pyroute2's generic encoder costs ~0.3 ms per message (seconds for a large table in
the test VM), and its declarations read two fields wrongly (``TUN_PORT`` is big
endian; an IPv6 service's ``NETMASK`` is a prefix length, not an address).

:class:`Exchange` is the sans-I/O half of the socket: it hands out sequence numbers
and turns received datagrams into completed :class:`Reply` objects, matching acks,
errors and dump parts to their requests.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Literal, TypeAlias

from mailha.ip import IPAddress
from mailha.lvs.errors import IpvsWireError
from mailha.lvs.model import (
    NO_TUNNEL_FLAGS,
    SCHED_FLAGS,
    Destination,
    DestKey,
    DestStats,
    Forward,
    IpProtocol,
    LvsModelError,
    Persistence,
    Service,
    ServiceFlags,
    ServiceKey,
    ServiceRow,
    Stats,
    Tunnel,
    TunnelEncap,
    TunnelFlags,
)
from mailha.lvs.planner import AddDest, AddService, DelDest, DelService, EditDest, EditService, Op

# --- netlink ------------------------------------------------------------------------
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_CAPPED = 0x100  # in an NLMSG_ERROR: the request was not echoed back
NLM_F_ACK_TLVS = 0x200  # in an NLMSG_ERROR: extended-ack attributes follow

NLMSGERR_ATTR_MSG = 1

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

# --- IPVS ---------------------------------------------------------------------------
IPVS_GENL_NAME = "IPVS"
IPVS_GENL_VERSION = 1

IPVS_CMD_NEW_SERVICE = 1
IPVS_CMD_SET_SERVICE = 2
IPVS_CMD_DEL_SERVICE = 3
IPVS_CMD_GET_SERVICE = 4
IPVS_CMD_NEW_DEST = 5
IPVS_CMD_SET_DEST = 6
IPVS_CMD_DEL_DEST = 7
IPVS_CMD_GET_DEST = 8
IPVS_CMD_NEW_DAEMON = 9
IPVS_CMD_DEL_DAEMON = 10
IPVS_CMD_GET_DAEMON = 11
IPVS_CMD_SET_CONFIG = 12
IPVS_CMD_GET_CONFIG = 13
IPVS_CMD_ZERO = 16
IPVS_CMD_FLUSH = 17

IPVS_CMD_ATTR_SERVICE = 1
IPVS_CMD_ATTR_DEST = 2
IPVS_CMD_ATTR_DAEMON = 3
IPVS_CMD_ATTR_TIMEOUT_TCP = 4
IPVS_CMD_ATTR_TIMEOUT_TCP_FIN = 5
IPVS_CMD_ATTR_TIMEOUT_UDP = 6

SVC_AF = 1
SVC_PROTOCOL = 2
SVC_ADDR = 3
SVC_PORT = 4
SVC_FWMARK = 5
SVC_SCHED_NAME = 6
SVC_FLAGS = 7
SVC_TIMEOUT = 8
SVC_NETMASK = 9
SVC_STATS = 10
SVC_PE_NAME = 11
SVC_STATS64 = 12

DEST_ADDR = 1
DEST_PORT = 2
DEST_FWD_METHOD = 3
DEST_WEIGHT = 4
DEST_U_THRESH = 5
DEST_L_THRESH = 6
DEST_ACTIVE_CONNS = 7
DEST_INACT_CONNS = 8
DEST_PERSIST_CONNS = 9
DEST_STATS = 10
DEST_ADDR_FAMILY = 11
DEST_STATS64 = 12
DEST_TUN_TYPE = 13
DEST_TUN_PORT = 14
DEST_TUN_FLAGS = 15

DAEMON_STATE = 1
DAEMON_MCAST_IFN = 2
DAEMON_SYNC_ID = 3
DAEMON_SYNC_MAXLEN = 4
DAEMON_MCAST_GROUP = 5
DAEMON_MCAST_GROUP6 = 6
DAEMON_MCAST_PORT = 7
DAEMON_MCAST_TTL = 8

#: IPVS_DAEMON_ATTR_STATE values (IP_VS_STATE_MASTER / IP_VS_STATE_BACKUP).
DAEMON_STATES: dict[str, int] = {"master": 1, "backup": 2}

# IPVS_STATS_ATTR_* 1..10, in the order of Stats' fields.
_STATS_FIELDS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes",
                 "cps", "inpps", "outpps", "inbps", "outbps")  # fmt: skip

_SVC_F_HASHED = 0x0002
_FWD_MASK = 0x0007
_NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER

_NLMSGHDR = struct.Struct("=IHHII")
_GENLHDR = struct.Struct("=BBH")
_NLAHDR = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_I32 = struct.Struct("=i")
_BE16 = struct.Struct("!H")
_FLAGS = struct.Struct("=II")

GENL_HDRLEN = _GENLHDR.size
NLMSG_HDRLEN = _NLMSGHDR.size


# =============================================================================== encode


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return _NLAHDR.pack(size, kind) + payload + b"\0" * (-size % 4)


def _u8(kind: int, value: int) -> bytes:
    return _NLAHDR.pack(5, kind) + bytes((value, 0, 0, 0))


def _u16(kind: int, value: int) -> bytes:
    return _NLAHDR.pack(6, kind) + _U16.pack(value) + b"\0\0"


def _be16(kind: int, value: int) -> bytes:
    return _NLAHDR.pack(6, kind) + _BE16.pack(value) + b"\0\0"


def _u32(kind: int, value: int) -> bytes:
    return _NLAHDR.pack(8, kind) + _U32.pack(value)


def _asciiz(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode("ascii") + b"\0")


def encode_request(
    family_id: int, cmd: int, seq: int, attrs: bytes = b"", flags: int = NLM_F_ACK
) -> bytes:
    """One netlink request carrying a generic-netlink header (version 1)."""
    size = NLMSG_HDRLEN + GENL_HDRLEN + len(attrs)
    return (
        _NLMSGHDR.pack(size, family_id, NLM_F_REQUEST | flags, seq, 0)
        + _GENLHDR.pack(cmd, IPVS_GENL_VERSION, 0)
        + attrs
    )


def encode_get_family(seq: int, name: str = IPVS_GENL_NAME) -> bytes:
    """CTRL_CMD_GETFAMILY: resolve a generic-netlink family name to its id."""
    return encode_request(
        GENL_ID_CTRL, CTRL_CMD_GETFAMILY, seq, _asciiz(CTRL_ATTR_FAMILY_NAME, name)
    )


def _service_key_attrs(key: ServiceKey) -> bytes:
    attrs = _u16(SVC_AF, key.family)
    if key.fwmark:
        return attrs + _u32(SVC_FWMARK, key.fwmark)
    return (
        attrs
        + _u16(SVC_PROTOCOL, key.protocol)
        + _attr(SVC_ADDR, key.address.packed)
        + _be16(SVC_PORT, key.port)
    )


def _netmask(service: Service) -> bytes:
    """IPVS_SVC_ATTR_NETMASK's 4 raw bytes: a mask for IPv4, a prefix length for IPv6."""
    v4 = service.key.family == socket.AF_INET
    prefix = None if service.persistence is None else service.persistence.prefix
    if v4:
        bits = 32 if prefix is None else prefix
        return struct.pack("!I", (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF)
    return _U32.pack(128 if prefix is None else prefix)


def service_attr(service: Service) -> bytes:
    """The nested IPVS_CMD_ATTR_SERVICE with every field NEW/SET_SERVICE require."""
    timeout = 0 if service.persistence is None else service.persistence.timeout
    body = (
        _service_key_attrs(service.key)
        + _asciiz(SVC_SCHED_NAME, service.scheduler)
        + (b"" if service.pe_name is None else _asciiz(SVC_PE_NAME, service.pe_name))
        # mask ~0: the flags we send replace the service's flags entirely.
        + _attr(SVC_FLAGS, _FLAGS.pack(int(service.flags), 0xFFFFFFFF))
        + _u32(SVC_TIMEOUT, timeout)
        + _attr(SVC_NETMASK, _netmask(service))
    )
    return _attr(IPVS_CMD_ATTR_SERVICE, body)


def service_key_attr(key: ServiceKey) -> bytes:
    return _attr(IPVS_CMD_ATTR_SERVICE, _service_key_attrs(key))


def _dest_key_attrs(address: IPAddress, port: int) -> bytes:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return (
        _u16(DEST_ADDR_FAMILY, family) + _attr(DEST_ADDR, address.packed) + _be16(DEST_PORT, port)
    )


def dest_attr(dest: Destination) -> bytes:
    """The nested IPVS_CMD_ATTR_DEST with every field NEW/SET_DEST use."""
    tunnel = dest.tunnel or _NO_TUNNEL
    body = (
        _dest_key_attrs(dest.address, dest.port)
        + _u32(DEST_FWD_METHOD, dest.forward)
        + _u32(DEST_WEIGHT, dest.weight)
        + _u32(DEST_U_THRESH, dest.u_threshold)
        + _u32(DEST_L_THRESH, dest.l_threshold)
        + _u8(DEST_TUN_TYPE, tunnel.type)
        + _be16(DEST_TUN_PORT, tunnel.port)
        + _u16(DEST_TUN_FLAGS, tunnel.flags)
    )
    return _attr(IPVS_CMD_ATTR_DEST, body)


_NO_TUNNEL = Tunnel()


def encode_op(op: Op, family_id: int, seq: int) -> bytes:
    """The request that carries out one planner operation, asking for an ack."""
    match op:
        case AddService(service):
            return encode_request(family_id, IPVS_CMD_NEW_SERVICE, seq, service_attr(service))
        case EditService(service):
            return encode_request(family_id, IPVS_CMD_SET_SERVICE, seq, service_attr(service))
        case DelService(key):
            return encode_request(family_id, IPVS_CMD_DEL_SERVICE, seq, service_key_attr(key))
        case AddDest(key, dest):
            attrs = service_key_attr(key) + dest_attr(dest)
            return encode_request(family_id, IPVS_CMD_NEW_DEST, seq, attrs)
        case EditDest(key, dest):
            attrs = service_key_attr(key) + dest_attr(dest)
            return encode_request(family_id, IPVS_CMD_SET_DEST, seq, attrs)
        case DelDest(key, dkey):
            attrs = service_key_attr(key) + _attr(
                IPVS_CMD_ATTR_DEST, _dest_key_attrs(dkey.address, dkey.port)
            )
            return encode_request(family_id, IPVS_CMD_DEL_DEST, seq, attrs)
    raise TypeError(f"not an IPVS operation: {op!r}")  # pragma: no cover


def encode_dump_services(family_id: int, seq: int) -> bytes:
    return encode_request(family_id, IPVS_CMD_GET_SERVICE, seq, flags=NLM_F_DUMP)


def encode_dump_dests(family_id: int, seq: int, key: ServiceKey) -> bytes:
    return encode_dump_dests_of(family_id, seq, service_key_attr(key))


def encode_dump_dests_of(family_id: int, seq: int, service: bytes) -> bytes:
    """GET_DEST for the service named by an encoded :func:`service_key_attr`."""
    return encode_request(family_id, IPVS_CMD_GET_DEST, seq, service, NLM_F_DUMP)


def encode_flush(family_id: int, seq: int) -> bytes:
    return encode_request(family_id, IPVS_CMD_FLUSH, seq)


def encode_zero(family_id: int, seq: int, key: ServiceKey | None = None) -> bytes:
    attrs = b"" if key is None else service_key_attr(key)
    return encode_request(family_id, IPVS_CMD_ZERO, seq, attrs)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connection-table timeouts in seconds (``ipvsadm --set tcp tcpfin udp``)."""

    tcp: int
    tcp_fin: int
    udp: int


def encode_get_config(family_id: int, seq: int) -> bytes:
    return encode_request(family_id, IPVS_CMD_GET_CONFIG, seq)


def encode_set_config(
    family_id: int, seq: int, tcp: int | None, tcp_fin: int | None, udp: int | None
) -> bytes:
    """SET_CONFIG: absent timeouts are left as they are (so is 0, by the kernel)."""
    attrs = b""
    for kind, value in (
        (IPVS_CMD_ATTR_TIMEOUT_TCP, tcp),
        (IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, tcp_fin),
        (IPVS_CMD_ATTR_TIMEOUT_UDP, udp),
    ):
        if value is not None:
            if not 0 <= value <= 0x7FFFFFFF // 1000:
                raise ValueError(f"timeout {value} s is out of range")
            attrs += _u32(kind, value)
    return encode_request(family_id, IPVS_CMD_SET_CONFIG, seq, attrs)


DaemonState: TypeAlias = Literal["master", "backup"]

_IFNAMSIZ = 16


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    """One IPVS connection-sync daemon, as asked for or as the kernel reports it.

    ``None`` fields are the kernel's defaults when asking (maxlen from the
    interface's MTU, port 8848, ttl 1, group 224.0.0.81); kernels before 4.3
    report only state, interface and sync id, so they read back as ``None`` too.
    """

    state: DaemonState
    interface: str
    sync_id: int = 0
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: IPAddress | None = None

    def matches(self, running: DaemonInfo) -> bool:
        """True if ``running`` is this daemon: same state, interface and sync id, and
        every optional field this one sets (the rest are defaults the kernel chose).
        A field the kernel did not report cannot contradict the request."""
        if (self.state, self.interface, self.sync_id) != (
            running.state,
            running.interface,
            running.sync_id,
        ):
            return False
        pairs = (
            (self.maxlen, running.maxlen),
            (self.port, running.port),
            (self.ttl, running.ttl),
            (self.group, running.group),
        )
        return all(want is None or have is None or want == have for want, have in pairs)

    def describe(self) -> str:
        """``ipvsadm -L --daemon``'s wording, for logs and errors."""
        extra = "".join(
            f", {name}={value}"
            for name, value in (
                ("maxlen", self.maxlen),
                ("group", self.group),
                ("port", self.port),
                ("ttl", self.ttl),
            )
            if value is not None
        )
        return f"{self.state} sync daemon (mcast={self.interface}, syncid={self.sync_id}{extra})"


def check_interface_name(name: str) -> None:
    """Refuse what Linux's ``dev_valid_name`` refuses, before the kernel does it vaguely."""
    if not name or name in (".", ".."):
        raise ValueError(f"interface name {name!r} is not a valid interface name")
    if len(name.encode("utf-8")) >= _IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {_IFNAMSIZ - 1} bytes")
    if not name.isascii() or any(c in "/:" or c.isspace() for c in name):
        raise ValueError(f"interface name {name!r} has a character Linux refuses")


def check_daemon_state(state: str) -> None:
    if state not in DAEMON_STATES:
        raise ValueError(f"sync daemon state {state!r} is neither master nor backup")


def check_daemon(daemon: DaemonInfo) -> None:
    """Raise ``ValueError`` for a daemon the kernel would refuse or silently truncate."""
    check_daemon_state(daemon.state)
    check_interface_name(daemon.interface)
    for what, value, low, high in (
        ("sync id", daemon.sync_id, 0, 255),
        ("maxlen", daemon.maxlen, 1, 65507),
        ("port", daemon.port, 1, 65535),
        ("ttl", daemon.ttl, 1, 255),
    ):
        if value is not None and not low <= value <= high:
            raise ValueError(f"sync daemon {what} {value} is outside {low}..{high}")
    if daemon.group is not None and not daemon.group.is_multicast:
        raise ValueError(f"sync daemon group {daemon.group} is not a multicast address")


def encode_new_daemon(family_id: int, seq: int, daemon: DaemonInfo) -> bytes:
    """NEW_DAEMON (``ipvsadm --start-daemon``): optional fields only when set.

    The port goes in host order (the kernel reads it with ``nla_get_u16``, unlike
    service and destination ports); the IPv4 group as its four address bytes.
    """
    check_daemon(daemon)
    body = (
        _u32(DAEMON_STATE, DAEMON_STATES[daemon.state])
        + _asciiz(DAEMON_MCAST_IFN, daemon.interface)
        + _u32(DAEMON_SYNC_ID, daemon.sync_id)
    )
    if daemon.maxlen is not None:
        body += _u16(DAEMON_SYNC_MAXLEN, daemon.maxlen)
    if daemon.port is not None:
        body += _u16(DAEMON_MCAST_PORT, daemon.port)
    if daemon.ttl is not None:
        body += _u8(DAEMON_MCAST_TTL, daemon.ttl)
    if daemon.group is not None:
        kind = DAEMON_MCAST_GROUP if daemon.group.version == 4 else DAEMON_MCAST_GROUP6
        body += _attr(kind, daemon.group.packed)
    return encode_request(family_id, IPVS_CMD_NEW_DAEMON, seq, _attr(IPVS_CMD_ATTR_DAEMON, body))


def encode_del_daemon(family_id: int, seq: int, state: DaemonState) -> bytes:
    """DEL_DAEMON (``ipvsadm --stop-daemon``): the state alone names the daemon."""
    check_daemon_state(state)
    body = _u32(DAEMON_STATE, DAEMON_STATES[state])
    return encode_request(family_id, IPVS_CMD_DEL_DAEMON, seq, _attr(IPVS_CMD_ATTR_DAEMON, body))


def encode_dump_daemons(family_id: int, seq: int) -> bytes:
    """GET_DAEMON is a dump only: one NEW_DAEMON message per running daemon."""
    return encode_request(family_id, IPVS_CMD_GET_DAEMON, seq, flags=NLM_F_DUMP)


# =============================================================================== decode


@dataclass(frozen=True, slots=True)
class NetlinkMessage:
    type: int
    flags: int
    seq: int
    payload: bytes


def parse_datagram(data: bytes) -> list[NetlinkMessage]:
    """Split one received datagram into its netlink messages."""
    messages = []
    offset = 0
    end = len(data)
    while offset + NLMSG_HDRLEN <= end:
        size, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if size < NLMSG_HDRLEN or offset + size > end:
            raise IpvsWireError(f"netlink message length {size} at offset {offset} is invalid")
        messages.append(
            NetlinkMessage(kind, flags, seq, data[offset + NLMSG_HDRLEN : offset + size])
        )
        offset += (size + 3) & ~3
    if offset < end and any(data[offset:]):
        raise IpvsWireError(f"{end - offset} stray bytes after the last netlink message")
    return messages


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Netlink attributes from ``offset`` on, by type (the last one of a type wins)."""
    return dict(_parse(data, offset, {}))


def parse_error(payload: bytes, flags: int) -> tuple[int, str | None]:
    """An NLMSG_ERROR's errno (positive; 0 is an ack) and extended-ack message."""
    if len(payload) < 4:
        raise IpvsWireError("NLMSG_ERROR shorter than its error code")
    (error,) = _I32.unpack_from(payload)
    message = None
    if flags & NLM_F_ACK_TLVS and len(payload) >= 4 + NLMSG_HDRLEN:
        echoed = NLMSG_HDRLEN
        if not flags & NLM_F_CAPPED:
            (echoed,) = _U32.unpack_from(payload, 4)
        tlvs = parse_attrs(payload, 4 + ((echoed + 3) & ~3))
        raw = tlvs.get(NLMSGERR_ATTR_MSG)
        if raw:
            message = raw.split(b"\0", 1)[0].decode("utf-8", "replace") or None
    return -error, message


_SVC_NAMES = {
    SVC_AF: "IPVS_SVC_ATTR_AF",
    SVC_PROTOCOL: "IPVS_SVC_ATTR_PROTOCOL",
    SVC_ADDR: "IPVS_SVC_ATTR_ADDR",
    SVC_PORT: "IPVS_SVC_ATTR_PORT",
    SVC_FWMARK: "IPVS_SVC_ATTR_FWMARK",
    SVC_SCHED_NAME: "IPVS_SVC_ATTR_SCHED_NAME",
    SVC_FLAGS: "IPVS_SVC_ATTR_FLAGS",
    SVC_TIMEOUT: "IPVS_SVC_ATTR_TIMEOUT",
    SVC_NETMASK: "IPVS_SVC_ATTR_NETMASK",
    SVC_PE_NAME: "IPVS_SVC_ATTR_PE_NAME",
}
_DEST_NAMES = {
    DEST_ADDR: "IPVS_DEST_ATTR_ADDR",
    DEST_PORT: "IPVS_DEST_ATTR_PORT",
    DEST_FWD_METHOD: "IPVS_DEST_ATTR_FWD_METHOD",
    DEST_WEIGHT: "IPVS_DEST_ATTR_WEIGHT",
    DEST_U_THRESH: "IPVS_DEST_ATTR_U_THRESH",
    DEST_L_THRESH: "IPVS_DEST_ATTR_L_THRESH",
    DEST_TUN_TYPE: "IPVS_DEST_ATTR_TUN_TYPE",
    DEST_TUN_PORT: "IPVS_DEST_ATTR_TUN_PORT",
    DEST_TUN_FLAGS: "IPVS_DEST_ATTR_TUN_FLAGS",
}
_CMD_NAMES = {
    IPVS_CMD_ATTR_SERVICE: "IPVS_CMD_ATTR_SERVICE",
    IPVS_CMD_ATTR_DEST: "IPVS_CMD_ATTR_DEST",
    IPVS_CMD_ATTR_DAEMON: "IPVS_CMD_ATTR_DAEMON",
    IPVS_CMD_ATTR_TIMEOUT_TCP: "IPVS_CMD_ATTR_TIMEOUT_TCP",
    IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: "IPVS_CMD_ATTR_TIMEOUT_TCP_FIN",
    IPVS_CMD_ATTR_TIMEOUT_UDP: "IPVS_CMD_ATTR_TIMEOUT_UDP",
}
_CTRL_NAMES = {CTRL_ATTR_FAMILY_ID: "CTRL_ATTR_FAMILY_ID"}


class _Attrs(dict[int, bytes]):
    """Attributes by type, where a missing one is a wire error that names it."""

    __slots__ = ("_names",)

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self._names = names

    def __missing__(self, kind: int) -> bytes:
        raise IpvsWireError(f"{self._names.get(kind, f'attribute {kind}')} attribute is missing")


def _parse(data: bytes, offset: int, names: dict[int, str]) -> _Attrs:
    attrs = _Attrs(names)
    end = len(data)
    unpack = _NLAHDR.unpack_from
    while offset + 4 <= end:
        size, kind = unpack(data, offset)
        if size < 4 or offset + size > end:
            raise IpvsWireError(f"netlink attribute length {size} at offset {offset} is invalid")
        attrs[kind & _NLA_TYPE_MASK] = data[offset + 4 : offset + size]
        offset += (size + 3) & ~3
    return attrs


def _text(raw: bytes, what: str) -> str:
    value = raw.split(b"\0", 1)[0]
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise IpvsWireError(f"{what} is not ASCII: {value!r}") from None


def _address(raw: bytes, family: int, what: str) -> IPAddress:
    if family == socket.AF_INET and len(raw) >= 4:
        return IPv4Address(raw[:4])
    if family == socket.AF_INET6 and len(raw) >= 16:
        return IPv6Address(raw[:16])
    raise IpvsWireError(f"{what}: {len(raw)} bytes is no address of family {family}")


# The kernel writes the ten 64-bit counters in order, unpadded on 64-bit machines:
# read them in one go, and fall back to attribute parsing for any other layout.
_STATS64_PACKED = struct.Struct("=" + "HHQ" * len(_STATS_FIELDS))
_STATS64_HEADERS = tuple(x for n in range(1, len(_STATS_FIELDS) + 1) for x in (12, n))
_NO_STATS = Stats()


def _stats(raw: bytes | None) -> Stats:
    if raw is None:
        return _NO_STATS
    if len(raw) == _STATS64_PACKED.size:
        fields = _STATS64_PACKED.unpack(raw)
        if fields[0::3] + fields[1::3] == _STATS64_HEADERS[0::2] + _STATS64_HEADERS[1::2]:
            return Stats(*fields[2::3])
    nested = parse_attrs(raw)
    values = (nested.get(n, b"") for n in range(1, len(_STATS_FIELDS) + 1))
    return Stats(*(_U64.unpack_from(v)[0] if len(v) >= 8 else 0 for v in values))


def _genl_attrs(payload: bytes, names: dict[int, str] = _CMD_NAMES) -> _Attrs:
    if len(payload) < GENL_HDRLEN:
        raise IpvsWireError("generic netlink message shorter than its header")
    return _parse(payload, GENL_HDRLEN, names)


def decode_family_id(payload: bytes) -> int:
    """The family id in a CTRL_CMD_NEWFAMILY reply."""
    try:
        return int(_U16.unpack_from(_genl_attrs(payload, _CTRL_NAMES)[CTRL_ATTR_FAMILY_ID])[0])
    except struct.error:
        raise IpvsWireError("CTRL_ATTR_FAMILY_ID is too short") from None


def decode_service(payload: bytes, *, with_stats: bool = True) -> tuple[Service, Stats]:
    """A service (and its counters) from one GET_SERVICE dump message."""
    attrs = _parse(_genl_attrs(payload)[IPVS_CMD_ATTR_SERVICE], 0, _SVC_NAMES)
    try:
        af = socket.AddressFamily(_U16.unpack_from(attrs[SVC_AF])[0])
        if af not in (socket.AF_INET, socket.AF_INET6):
            raise IpvsWireError(f"service address family {af!r} is neither IPv4 nor IPv6")
        if SVC_FWMARK in attrs:
            key = ServiceKey.for_fwmark(_U32.unpack_from(attrs[SVC_FWMARK])[0], af)
        else:
            key = ServiceKey(
                af,
                IpProtocol(_U16.unpack_from(attrs[SVC_PROTOCOL])[0]),
                _address(attrs[SVC_ADDR], af, "service address"),
                _BE16.unpack_from(attrs[SVC_PORT])[0],
            )
        flags = _U32.unpack_from(attrs[SVC_FLAGS])[0] & ~_SVC_F_HASHED
        persistence = None
        if flags & ServiceFlags.PERSISTENT:
            prefix = _prefix(attrs[SVC_NETMASK][:4], af)
            persistence = Persistence(_U32.unpack_from(attrs[SVC_TIMEOUT])[0], prefix)
        pe_name = _text(attrs[SVC_PE_NAME], "persistence engine") if SVC_PE_NAME in attrs else ""
        service = Service(
            key=key,
            scheduler=_text(attrs[SVC_SCHED_NAME], "scheduler"),
            sched_flags=ServiceFlags(flags & SCHED_FLAGS),
            persistence=persistence,
            one_packet=bool(flags & ServiceFlags.ONEPACKET),
            pe_name=pe_name or None,
        )
    except struct.error:
        raise IpvsWireError("an IPVS service attribute is shorter than its type") from None
    except (LvsModelError, ValueError) as exc:
        raise IpvsWireError(f"kernel service does not fit the model: {exc}") from None
    return service, _stats(attrs.get(SVC_STATS64)) if with_stats else _NO_STATS


def _prefix(raw: bytes, family: int) -> int | None:
    if family == socket.AF_INET:
        (mask,) = struct.unpack("!I", raw)
        inverted = ~mask & 0xFFFFFFFF
        if inverted & (inverted + 1):
            raise IpvsWireError(f"netmask {IPv4Address(mask)} is not contiguous")
        prefix = 32 - inverted.bit_length()
        return None if prefix == 32 else prefix
    (plen,) = _U32.unpack(raw)
    return None if plen == 128 else int(plen)


_NO_DEST_STATS = DestStats()


def decode_dest(
    payload: bytes, service_family: int, *, with_stats: bool = True
) -> tuple[Destination, DestStats]:
    """A destination (and its counters) from one GET_DEST dump message."""
    attrs = _parse(_genl_attrs(payload)[IPVS_CMD_ATTR_DEST], 0, _DEST_NAMES)
    u32 = _U32.unpack_from
    try:
        family = _U16.unpack_from(attrs[DEST_ADDR_FAMILY])[0] if DEST_ADDR_FAMILY in attrs else 0
        address = _address(attrs[DEST_ADDR], family or service_family, "destination address")
        forward = Forward(u32(attrs[DEST_FWD_METHOD])[0] & _FWD_MASK)
        tunnel = None
        if forward == Forward.TUNNEL:
            tunnel = Tunnel(
                (TunnelEncap(attrs[DEST_TUN_TYPE][0]) if DEST_TUN_TYPE in attrs
                 else TunnelEncap.IPIP),
                _BE16.unpack_from(attrs[DEST_TUN_PORT])[0] if DEST_TUN_PORT in attrs else 0,
                TunnelFlags(_U16.unpack_from(attrs[DEST_TUN_FLAGS])[0])
                if DEST_TUN_FLAGS in attrs
                else NO_TUNNEL_FLAGS,
            )
        dest = Destination(
            address,
            _BE16.unpack_from(attrs[DEST_PORT])[0],
            forward,
            u32(attrs[DEST_WEIGHT])[0],
            u32(attrs[DEST_U_THRESH])[0],
            u32(attrs[DEST_L_THRESH])[0],
            tunnel,
        )
    except (struct.error, IndexError):
        raise IpvsWireError("an IPVS destination attribute is shorter than its type") from None
    except (LvsModelError, ValueError) as exc:
        raise IpvsWireError(f"kernel destination does not fit the model: {exc}") from None
    return dest, _dest_stats(attrs) if with_stats else _NO_DEST_STATS


_ZERO32 = bytes(4)
_DEST_GAUGES = (DEST_ACTIVE_CONNS, DEST_INACT_CONNS, DEST_PERSIST_CONNS)


def _dest_stats(attrs: Mapping[int, bytes]) -> DestStats:
    """A destination's counters and gauges from its attributes (absent ones read 0)."""
    u32 = _U32.unpack_from
    try:
        return DestStats(
            _stats(attrs.get(DEST_STATS64)),
            *(u32(attrs.get(k, _ZERO32))[0] for k in _DEST_GAUGES),
        )
    except (struct.error, IndexError):
        raise IpvsWireError("an IPVS destination attribute is shorter than its type") from None


def decode_timeouts(payload: bytes) -> Timeouts:
    attrs = _genl_attrs(payload)
    try:
        return Timeouts(
            *(
                int(_U32.unpack_from(attrs[k])[0])
                for k in (
                    IPVS_CMD_ATTR_TIMEOUT_TCP,
                    IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
                    IPVS_CMD_ATTR_TIMEOUT_UDP,
                )
            )
        )
    except struct.error:
        raise IpvsWireError("an IPVS timeout attribute is shorter than its type") from None


_DAEMON_NAMES = {
    DAEMON_STATE: "IPVS_DAEMON_ATTR_STATE",
    DAEMON_MCAST_IFN: "IPVS_DAEMON_ATTR_MCAST_IFN",
    DAEMON_SYNC_ID: "IPVS_DAEMON_ATTR_SYNC_ID",
}
_DAEMON_STATE_NAMES: dict[int, DaemonState] = {1: "master", 2: "backup"}


def decode_daemon(payload: bytes) -> DaemonInfo:
    """A sync daemon from one GET_DAEMON dump message."""
    attrs = _parse(_genl_attrs(payload)[IPVS_CMD_ATTR_DAEMON], 0, _DAEMON_NAMES)
    try:
        number = _U32.unpack_from(attrs[DAEMON_STATE])[0]
        state = _DAEMON_STATE_NAMES.get(number)
        if state is None:
            raise IpvsWireError(f"sync daemon state {number} is neither master (1) nor backup (2)")
        group: IPAddress | None = None
        if DAEMON_MCAST_GROUP in attrs:
            group = _address(attrs[DAEMON_MCAST_GROUP], socket.AF_INET, "sync daemon group")
        elif DAEMON_MCAST_GROUP6 in attrs:
            group = _address(attrs[DAEMON_MCAST_GROUP6], socket.AF_INET6, "sync daemon group")
        return DaemonInfo(
            state=state,
            interface=_text(attrs[DAEMON_MCAST_IFN], "sync daemon interface"),
            sync_id=int(_U32.unpack_from(attrs[DAEMON_SYNC_ID])[0]),
            maxlen=_optional(attrs, DAEMON_SYNC_MAXLEN, _U16),
            port=_optional(attrs, DAEMON_MCAST_PORT, _U16),
            ttl=attrs[DAEMON_MCAST_TTL][0] if DAEMON_MCAST_TTL in attrs else None,
            group=group,
        )
    except (struct.error, IndexError):
        raise IpvsWireError("an IPVS sync daemon attribute is shorter than its type") from None


def _optional(attrs: _Attrs, kind: int, layout: struct.Struct) -> int | None:
    return int(layout.unpack_from(attrs[kind])[0]) if kind in attrs else None


# ========================================================================= decode cache

#: Attributes that carry counters and gauges rather than configuration: they change
#: with every packet, so they never take part in a :class:`DecodeCache` key.
SERVICE_COUNTERS = frozenset({SVC_STATS, SVC_STATS64})
DEST_COUNTERS = frozenset(
    {DEST_ACTIVE_CONNS, DEST_INACT_CONNS, DEST_PERSIST_CONNS, DEST_STATS, DEST_STATS64}
)


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one kernel dump message keeps its configuration and its counters.

    ``keep`` covers every byte but the counters' values (their attribute headers
    included), so a message of the same size with the same bytes there has the same
    attributes at the same places: the same configuration, whatever its counters.
    """

    size: int
    keep: tuple[slice, ...]
    counters: tuple[tuple[int, slice], ...]
    #: The kept bytes of the message this layout was read from: a cache key that
    #: determines everything decoding reads apart from counters.
    config: bytes

    def match(self, payload: bytes) -> bool:
        """True if ``payload`` has this layout and this configuration."""
        if len(payload) != self.size:
            return False
        return b"".join([payload[s] for s in self.keep]) == self.config

    def counter(self, payload: bytes, kind: int) -> bytes | None:
        """The value of ``payload``'s (last) counter attribute ``kind``, if any."""
        found = None
        for number, where in self.counters:
            if number == kind:
                found = payload[where]
        return found


def read_layout(payload: bytes, nest: int, counters: frozenset[int]) -> Layout | None:
    """The layout of a dump message whose only attribute is the nested ``nest``, as the
    kernel sends them; None for any other framing (decode it without a cache).

    Raises :class:`IpvsWireError` where decoding would, with the same reason.
    """
    unpack = _NLAHDR.unpack_from
    total = len(payload)
    if total < GENL_HDRLEN + 4:
        return None
    size, kind = unpack(payload, GENL_HDRLEN)
    end = GENL_HDRLEN + size
    if kind & _NLA_TYPE_MASK != nest or size < 4 or not total - 3 <= end <= total:
        return None
    base = offset = GENL_HDRLEN + 4
    keep: list[slice] = []
    found: list[tuple[int, slice]] = []
    start = 0
    while offset + 4 <= end:
        size, kind = unpack(payload, offset)
        if size < 4 or offset + size > end:
            where = offset - base
            raise IpvsWireError(f"netlink attribute length {size} at offset {where} is invalid")
        if kind & _NLA_TYPE_MASK in counters:
            keep.append(slice(start, offset + 4))
            found.append((kind & _NLA_TYPE_MASK, slice(offset + 4, offset + size)))
            start = offset + size
        offset += (size + 3) & ~3
    keep.append(slice(start, total))
    config = b"".join([payload[s] for s in keep])
    return Layout(total, tuple(keep), tuple(found), config)


#: Bytes of a dump message that tell one service (or one destination of a service)
#: from another: generic-netlink and nest headers, then family, protocol, address
#: and port (a fwmark service: family and mark). Only a hint to find a layout.
_SERVICE_HINT = 52
_DEST_HINT = 36


@dataclass(frozen=True, slots=True)
class _CachedService:
    service: Service
    #: The encoded service key a GET_DEST for it carries.
    dests_request: bytes


class DecodeCache:
    """Services and table rows decoded by earlier observes, by their configuration bytes.

    Why: the reconcile loop re-reads a mostly unchanged table every few seconds, and
    decoding it (addresses, enums, validated dataclasses) cost more than reading it.
    A kernel message whose configuration bytes (everything but the counters' values,
    see :class:`Layout`) are those of a cached one decodes to the cached object;
    counters are always decoded afresh, so live traffic never makes an entry stale,
    and any other change makes another key. Finding those bytes costs a walk over
    the message's attributes, unless the layout of the message seen last time in its
    place matches. The cache keeps only what was looked up since the last
    :meth:`rotate`, so it never outgrows the table.
    """

    def __init__(self) -> None:
        self._services: dict[bytes, _CachedService] = {}
        self._rows: dict[tuple[bytes, ...], ServiceRow] = {}
        self._layouts: dict[object, Layout] = {}
        self._new_services: dict[bytes, _CachedService] = {}
        self._new_rows: dict[tuple[bytes, ...], ServiceRow] = {}
        self._new_layouts: dict[object, Layout] = {}

    def __len__(self) -> int:
        """Rows held: those of the latest observe, plus any looked up since."""
        return len(self._rows) + len(self._new_rows)

    def rotate(self) -> None:
        """End of an observe: forget what it did not look up."""
        self._services, self._new_services = self._new_services, {}
        self._rows, self._new_rows = self._new_rows, {}
        self._layouts, self._new_layouts = self._new_layouts, {}

    def _layout(
        self, hint: object, payload: bytes, nest: int, counters: frozenset[int]
    ) -> Layout | None:
        layout = self._new_layouts.get(hint) or self._layouts.get(hint)
        if layout is None or not layout.match(payload):
            layout = read_layout(payload, nest, counters)
            if layout is None:
                return None
        self._new_layouts[hint] = layout
        return layout

    def service(
        self, payload: bytes, *, with_stats: bool
    ) -> tuple[Service, Stats, bytes | None, bytes]:
        """:func:`decode_service`, plus the service's configuration bytes (None: not
        cacheable) and the encoded key that asks for its destinations."""
        hint = payload[:_SERVICE_HINT]
        layout = self._layout(hint, payload, IPVS_CMD_ATTR_SERVICE, SERVICE_COUNTERS)
        config = None if layout is None else layout.config
        cached = None
        if config is not None:
            cached = self._new_services.get(config) or self._services.get(config)
        if cached is None or layout is None:
            service, stats = decode_service(payload, with_stats=with_stats)
            cached = _CachedService(service, service_key_attr(service.key))
        else:
            stats = _stats(layout.counter(payload, SVC_STATS64)) if with_stats else _NO_STATS
        if config is not None:
            self._new_services[config] = cached
        return cached.service, stats, config, cached.dests_request

    def row(
        self, service: Service, config: bytes | None, dests: Sequence[bytes], *, with_stats: bool
    ) -> tuple[ServiceRow, dict[DestKey, DestStats]]:
        """``service`` (read with configuration bytes ``config``) with the destinations
        dumped for it, and their counters."""
        layouts = None if config is None else self._dest_layouts(config, dests)
        key = None
        if config is not None and layouts is not None:
            key = (config, *(layout.config for layout in layouts))
        row = None if key is None else self._new_rows.get(key) or self._rows.get(key)
        if row is None or layouts is None:
            family = service.key.family
            decoded = [decode_dest(p, family, with_stats=with_stats) for p in dests]
            row = ServiceRow.of(service, (d for d, _ in decoded))
            stats = {d.key: s for d, s in decoded}
        elif with_stats:
            stats = {
                dkey: _dest_stats({kind: payload[where] for kind, where in layout.counters})
                for dkey, payload, layout in zip(row.destinations, dests, layouts, strict=True)
            }
        else:
            stats = dict.fromkeys(row.destinations, _NO_DEST_STATS)
        if key is not None:
            self._new_rows[key] = row
        return row, stats

    def _dest_layouts(self, config: bytes, dests: Sequence[bytes]) -> list[Layout] | None:
        """Each destination's layout; None if one is not cacheable or is malformed
        (decoding then raises the same error, at the same destination)."""
        layouts = []
        try:
            for payload in dests:
                hint = (config, payload[:_DEST_HINT])
                layout = self._layout(hint, payload, IPVS_CMD_ATTR_DEST, DEST_COUNTERS)
                if layout is None:
                    return None
                layouts.append(layout)
        except IpvsWireError:
            return None
        return layouts


# ============================================================================= exchange


@dataclass(slots=True)
class Reply:
    """Everything the kernel answered to one request.

    ``errno`` is 0 on success; ``payloads`` are the generic-netlink payloads of the
    data messages (dump parts, a GET reply); ``interrupted`` is set when a dump saw
    the table change under it (NLM_F_DUMP_INTR) and should be repeated.
    """

    seq: int
    errno: int = 0
    message: str | None = None
    payloads: list[bytes] = field(default_factory=list)
    interrupted: bool = False


class Exchange:
    """Sequence numbers out, completed replies in: the socket's logic without the socket.

    A request completes on its NLMSG_ERROR (an ack when the error is 0) or, for a
    dump, on NLMSG_DONE. Messages for unknown sequence numbers are ignored: they
    belong to requests abandoned after a timeout.
    """

    def __init__(self, first_seq: int = 1) -> None:
        self._next = first_seq
        self._open: dict[int, Reply] = {}

    def request(self) -> int:
        """A fresh sequence number, now awaiting its reply."""
        seq = self._next
        self._next = seq + 1 if seq < 0xFFFFFFFF else 1
        self._open[seq] = Reply(seq)
        return seq

    def forget(self, seq: int) -> None:
        self._open.pop(seq, None)

    @property
    def outstanding(self) -> int:
        return len(self._open)

    def receive(self, datagram: bytes) -> Iterator[Reply]:
        """Feed one datagram; yields the replies it completes."""
        for msg in parse_datagram(datagram):
            reply = self._open.get(msg.seq)
            if reply is None:
                continue
            if msg.flags & NLM_F_DUMP_INTR:
                reply.interrupted = True
            if msg.type == NLMSG_ERROR:
                reply.errno, reply.message = parse_error(msg.payload, msg.flags)
            elif msg.type == NLMSG_DONE:
                # Its payload is the dump's final status (no echoed request).
                if len(msg.payload) >= 4:
                    reply.errno = -_I32.unpack_from(msg.payload)[0]
            elif msg.type in (NLMSG_NOOP, NLMSG_OVERRUN):
                continue
            else:
                # Dump parts, or the answer to a plain GET (which is followed by its ack).
                reply.payloads.append(msg.payload)
                continue
            del self._open[msg.seq]
            yield reply
