"""The IPVS table as plain values: what mailha wants, and what the kernel has.

Everything here is a frozen value object, so a desired table built from the
configuration and an observed table decoded from a kernel dump compare with ``==``
and the planner can diff them without knowing anything about netlink.

The model mirrors the kernel's own data (``include/uapi/linux/ip_vs.h``) rather than
ipvsadm's or keepalived's spelling, with one deliberate normalisation: fields the
kernel stores but never *uses* are not modelled, so they cannot make two
functionally identical services compare unequal:

* the persistence timeout and netmask only matter with the persistent flag, so they
  live in :class:`Persistence`, present exactly when the service is persistent;
* tunnel type/port/flags only matter for the tunnel forwarding method, so they live
  in :class:`Tunnel`, present exactly when the destination tunnels.

Counters never take part in equality: they are kept apart in :class:`Stats` and
:class:`DestStats`, attached to an :class:`ObservedTable`.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from types import MappingProxyType
from typing import TypeAlias

from mailha.errors import MailhaError
from mailha.ip import IPAddress

#: Longest scheduler / persistence-engine name the kernel accepts (IP_VS_SCHEDNAME_MAXLEN - 1).
NAME_MAX = 15
#: The kernel keeps weights in an int and refuses negative ones.
WEIGHT_MAX = 0x7FFFFFFF
U32_MAX = 0xFFFFFFFF
#: The kernel stores the persistence timeout in jiffies (x HZ, up to 1000) in an int.
TIMEOUT_MAX = 0x7FFFFFFF // 1000


class LvsModelError(MailhaError, ValueError):
    """A desired IPVS object the kernel would refuse (or silently misread)."""


class IpProtocol(enum.IntEnum):
    """Transport protocols IPVS balances (IPPROTO_* numbers)."""

    TCP = socket.IPPROTO_TCP
    UDP = socket.IPPROTO_UDP
    SCTP = 132


class ServiceFlags(enum.IntFlag):
    """The user-settable IP_VS_SVC_F_* bits (HASHED, 0x2, is kernel-internal)."""

    PERSISTENT = 0x0001
    ONEPACKET = 0x0004
    SCHED1 = 0x0008
    SCHED2 = 0x0010
    SCHED3 = 0x0020


#: Scheduler-specific meanings of the SCHED* bits, as ipvsadm's ``-b`` names them.
SH_FALLBACK = ServiceFlags.SCHED1
SH_PORT = ServiceFlags.SCHED2
MH_FALLBACK = ServiceFlags.SCHED1
MH_PORT = ServiceFlags.SCHED2
SCHED_FLAGS = ServiceFlags.SCHED1 | ServiceFlags.SCHED2 | ServiceFlags.SCHED3
NO_FLAGS = ServiceFlags(0)


class Forward(enum.IntEnum):
    """Forwarding methods (IP_VS_CONN_F_FWD_MASK values) a destination may use."""

    MASQ = 0  # NAT
    LOCAL = 1  # the kernel's own choice when the real server is a local address
    TUNNEL = 2  # ipip / gue / gre
    ROUTE = 3  # direct routing ("gatewaying")


class TunnelEncap(enum.IntEnum):
    IPIP = 0
    GUE = 1
    GRE = 2


class TunnelFlags(enum.IntFlag):
    """IP_VS_TUNNEL_ENCAP_FLAG_*: outer checksum of GUE/GRE encapsulation.

    No flag at all is IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM (ipvsadm's ``--tun-nocsum``).
    """

    CSUM = 0x01
    REMCSUM = 0x02


NO_TUNNEL_FLAGS = TunnelFlags(0)


def parse_address(value: str | IPAddress) -> IPAddress:
    """An address from text or an address object, as :class:`LvsModelError` when bad."""
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    try:
        return ip_address(value)
    except ValueError:
        raise LvsModelError(f"not an IP address: {value!r}") from None


def family_of(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 0xFFFF:
        raise LvsModelError(f"{what} port {port} is outside 0..65535")


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """What identifies a virtual service in the kernel; nothing here can be edited.

    Either an address service (protocol, address, port) or a firewall-mark service
    (``fwmark`` non-zero; the kernel then records protocol TCP, the unspecified
    address and port 0, and so does this key). Build one with :meth:`for_address`
    or :meth:`for_fwmark`.
    """

    family: socket.AddressFamily
    protocol: IpProtocol
    address: IPAddress
    port: int
    fwmark: int = 0

    def __post_init__(self) -> None:
        if family_of(self.address) != self.family:
            raise LvsModelError(f"address {self.address} is not in family {self.family.name}")
        _check_port(self.port, "service")
        if not 0 <= self.fwmark <= U32_MAX:
            raise LvsModelError(f"fwmark {self.fwmark} is outside 0..{U32_MAX}")
        if self.fwmark and (
            self.protocol != IpProtocol.TCP or self.port != 0 or not self.address.is_unspecified
        ):
            raise LvsModelError("a fwmark service has no protocol, address or port")

    @classmethod
    def for_address(
        cls, address: str | IPAddress, port: int, protocol: IpProtocol = IpProtocol.TCP
    ) -> ServiceKey:
        addr = parse_address(address)
        return cls(family_of(addr), IpProtocol(protocol), addr, port)

    @classmethod
    def for_fwmark(cls, fwmark: int, family: socket.AddressFamily = socket.AF_INET) -> ServiceKey:
        if fwmark == 0:
            raise LvsModelError("fwmark 0 means 'no fwmark'; use 1..4294967295")
        zero: IPAddress = IPv4Address(0) if family == socket.AF_INET else IPv6Address(0)
        return cls(family, IpProtocol.TCP, zero, 0, fwmark)

    def sort_key(self) -> tuple[int, int, int, bytes, int]:
        """A total order across families (addresses of different versions do not compare)."""
        return (self.family, self.fwmark, self.protocol, self.address.packed, self.port)

    def __str__(self) -> str:
        if self.fwmark:
            suffix = "" if self.family == socket.AF_INET else " (IPv6)"
            return f"FWM {self.fwmark}{suffix}"
        host = str(self.address) if self.family == socket.AF_INET else f"[{self.address}]"
        return f"{self.protocol.name} {host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Persistence:
    """Client affinity: connections from one client network stick to one destination.

    ``prefix`` is the client-network granularity as a prefix length (ipvsadm's
    ``-M``; the kernel takes a netmask for IPv4 and a prefix length for IPv6);
    ``None`` means a single address (/32 or /128).
    """

    timeout: int = 300
    prefix: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.timeout <= TIMEOUT_MAX:
            raise LvsModelError(f"persistence timeout {self.timeout} is outside 1..{TIMEOUT_MAX}")
        if self.prefix is not None and not 0 <= self.prefix <= 128:
            raise LvsModelError(f"persistence prefix /{self.prefix} is outside 0..128")


@dataclass(frozen=True, slots=True)
class Service:
    """Everything about a virtual service the kernel lets us edit in place.

    ``sched_flags`` holds only the SCHED1..3 bits (sh-fallback, sh-port, mh-fallback,
    mh-port); persistence and one-packet scheduling have their own fields.
    ``scheduler`` ``"none"`` is the kernel's "no scheduler" (only for services whose
    destinations are chosen elsewhere).
    """

    key: ServiceKey
    scheduler: str = "wlc"
    sched_flags: ServiceFlags = NO_FLAGS
    persistence: Persistence | None = None
    one_packet: bool = False
    pe_name: str | None = None

    def __post_init__(self) -> None:
        for what, name in (("scheduler", self.scheduler), ("persistence engine", self.pe_name)):
            if name is None:
                continue
            if not name or len(name) > NAME_MAX or not name.isascii() or not name.isprintable():
                raise LvsModelError(f"{what} name {name!r} must be 1..{NAME_MAX} ASCII characters")
        if self.sched_flags & ~SCHED_FLAGS:
            raise LvsModelError("sched_flags may only hold SCHED1..SCHED3 (sh-/mh- options)")
        if self.pe_name is not None and self.persistence is None:
            raise LvsModelError("a persistence engine needs a persistent service")
        if self.persistence is not None and self.persistence.prefix is not None:
            bits = 32 if self.key.family == socket.AF_INET else 128
            low = 0 if self.key.family == socket.AF_INET else 1  # kernel: IPv6 plen 1..128
            if not low <= self.persistence.prefix <= bits:
                raise LvsModelError(
                    f"persistence prefix /{self.persistence.prefix} is outside {low}..{bits}"
                    f" for {self.key.family.name}"
                )
            if self.persistence.prefix == bits:
                # A full-length prefix is the default: spell it one way so that the
                # desired /32 equals what the kernel reads back.
                object.__setattr__(self, "persistence", Persistence(self.persistence.timeout))

    @property
    def flags(self) -> ServiceFlags:
        """The kernel's IP_VS_SVC_F_* word for this service."""
        flags = self.sched_flags
        if self.persistence is not None:
            flags |= ServiceFlags.PERSISTENT
        if self.one_packet:
            flags |= ServiceFlags.ONEPACKET
        return flags


@dataclass(frozen=True, slots=True)
class Tunnel:
    """Encapsulation of a tunnel destination; ``port`` is required by GUE only."""

    type: TunnelEncap = TunnelEncap.IPIP
    port: int = 0
    flags: TunnelFlags = NO_TUNNEL_FLAGS

    def __post_init__(self) -> None:
        _check_port(self.port, "tunnel")
        if self.type == TunnelEncap.GUE and self.port == 0:
            raise LvsModelError("a GUE tunnel needs a non-zero port")


@dataclass(frozen=True, slots=True)
class DestKey:
    """What identifies a destination within its service."""

    address: IPAddress
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return family_of(self.address)

    def sort_key(self) -> tuple[int, bytes, int]:
        return (self.family, self.address.packed, self.port)

    def __str__(self) -> str:
        host = str(self.address) if self.address.version == 4 else f"[{self.address}]"
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Destination:
    """A real server behind a service; everything but the key is editable in place.

    Weight 0 quiesces the server: it keeps its connections but gets no new ones.
    ``u_threshold``/``l_threshold`` cap active+inactive connections (0 = no cap); the
    kernel insists on ``l_threshold <= u_threshold``.

    ``table_weight`` matters only for a quiesced destination of a Maglev (``mh``)
    service, and only in a *desired* table: the weight its share of the lookup table
    is sized with. The kernel keeps that share when the weight drops to 0 (its
    ``last_weight``, see :mod:`mailha.lvs.maglev`) but never reports it, so it takes
    no part in equality and reads back as ``None``; the planner uses it when it has to
    (re)add such a destination.
    """

    address: IPAddress
    port: int
    forward: Forward = Forward.MASQ
    weight: int = 1
    u_threshold: int = 0
    l_threshold: int = 0
    tunnel: Tunnel | None = None
    table_weight: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_port(self.port, "destination")
        if not 0 <= self.weight <= WEIGHT_MAX:
            raise LvsModelError(f"weight {self.weight} is outside 0..{WEIGHT_MAX}")
        for what, value in (("u_threshold", self.u_threshold), ("l_threshold", self.l_threshold)):
            if not 0 <= value <= U32_MAX:
                raise LvsModelError(f"{what} {value} is outside 0..{U32_MAX}")
        if self.l_threshold > self.u_threshold:
            raise LvsModelError(
                f"l_threshold {self.l_threshold} exceeds u_threshold {self.u_threshold}"
            )
        if (self.tunnel is not None) != (self.forward == Forward.TUNNEL):
            raise LvsModelError("tunnel settings go with, and only with, Forward.TUNNEL")
        if self.table_weight is not None and not 0 <= self.table_weight <= WEIGHT_MAX:
            raise LvsModelError(f"table weight {self.table_weight} is outside 0..{WEIGHT_MAX}")

    @classmethod
    def of(
        cls,
        address: str | IPAddress,
        port: int,
        forward: Forward = Forward.MASQ,
        weight: int = 1,
        *,
        u_threshold: int = 0,
        l_threshold: int = 0,
        tunnel: Tunnel | None = None,
    ) -> Destination:
        """Like the constructor, but parses a textual address and fills in IPIP tunnels."""
        if forward == Forward.TUNNEL and tunnel is None:
            tunnel = Tunnel()
        return cls(
            parse_address(address), port, Forward(forward), weight, u_threshold, l_threshold, tunnel
        )

    @property
    def key(self) -> DestKey:
        return DestKey(self.address, self.port)


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One service and its destinations: a row of the table."""

    service: Service
    destinations: Mapping[DestKey, Destination] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def __post_init__(self) -> None:
        dests = dict(self.destinations)
        family = self.service.key.family
        for key, dest in dests.items():
            if key != dest.key:
                raise LvsModelError(f"destination {dest.key} is filed under {key}")
            if dest.key.family != family and dest.forward != Forward.TUNNEL:
                raise LvsModelError(
                    f"destination {dest.key} of {self.service.key}: only tunnels may cross"
                    " address families"
                )
        object.__setattr__(self, "destinations", MappingProxyType(dests))

    @classmethod
    def of(cls, service: Service, destinations: Iterable[Destination] = ()) -> ServiceRow:
        dests: dict[DestKey, Destination] = {}
        for dest in destinations:
            if dest.key in dests:
                raise LvsModelError(f"destination {dest.key} listed twice in {service.key}")
            dests[dest.key] = dest
        return cls(service, dests)

    @property
    def key(self) -> ServiceKey:
        return self.service.key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServiceRow):
            return NotImplemented
        # Mapping proxies compare as the dicts they wrap: no copy, no rehashing.
        return self.service == other.service and self.destinations == other.destinations

    def __hash__(self) -> int:
        return hash((self.service, frozenset(self.destinations.items())))


#: The table: service key -> (service, {destination key -> destination}).
Table: TypeAlias = Mapping[ServiceKey, ServiceRow]


def make_table(servers: Iterable[ServiceRow]) -> dict[ServiceKey, ServiceRow]:
    """A table from its rows, refusing two rows for one service."""
    table: dict[ServiceKey, ServiceRow] = {}
    for server in servers:
        if server.key in table:
            raise LvsModelError(f"service {server.key} listed twice")
        table[server.key] = server
    return table


# --------------------------------------------------------------------------- observed


@dataclass(frozen=True, slots=True)
class Stats:
    """Kernel counters (since creation or the last ZERO) and rate estimates (per second)."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0


@dataclass(frozen=True, slots=True)
class DestStats:
    """A destination's counters plus its connection-table gauges."""

    stats: Stats = Stats()
    active_conns: int = 0
    inactive_conns: int = 0
    persist_conns: int = 0


@dataclass(frozen=True, slots=True)
class ServiceStats:
    stats: Stats = Stats()
    destinations: Mapping[DestKey, DestStats] = field(default_factory=lambda: MappingProxyType({}))


class ObservedTable(Mapping[ServiceKey, ServiceRow]):
    """A table read from the kernel, usable wherever a :data:`Table` is, plus counters.

    Equality with another mapping compares the configuration only, never the counters.
    """

    __slots__ = ("_servers", "_stats", "unreadable")

    def __init__(
        self,
        servers: Mapping[ServiceKey, ServiceRow],
        stats: Mapping[ServiceKey, ServiceStats],
        unreadable: Iterable[str] = (),
    ) -> None:
        self._servers = dict(servers)
        self._stats = dict(stats)
        #: Why kernel services that do not fit the model (e.g. an AH/ESP service made by
        #: another tool) were left out. They are foreign by construction: mailha never
        #: creates such services, so leaving them out of the table leaves them alone.
        self.unreadable: tuple[str, ...] = tuple(unreadable)

    def __getitem__(self, key: ServiceKey) -> ServiceRow:
        return self._servers[key]

    def __iter__(self) -> Iterator[ServiceKey]:
        return iter(self._servers)

    def __len__(self) -> int:
        return len(self._servers)

    def __repr__(self) -> str:
        return f"ObservedTable({self._servers!r})"

    def stats(self, key: ServiceKey) -> ServiceStats:
        """Counters of one service and its destinations (zeros if it was not observed)."""
        return self._stats.get(key, ServiceStats())

    def config(self) -> dict[ServiceKey, ServiceRow]:
        """The configuration part alone, as a plain table."""
        return dict(self._servers)
