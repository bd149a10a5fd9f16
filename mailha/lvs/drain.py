"""Planned maintenance: drain a real server (weight 0) so its sessions end before it stops.

``mailha drain local`` (or ``IP[:PORT]``) keeps the real server in IPVS at weight 0: no
new session goes to it, established ones go on until they end; ``mailha undrain``
gives it its weight back. Only the node that programs the service (the VRRP master of
the instance it follows) can drain; the drain is kept across reloads and shows in
``mailha status`` and in ``mailha_real_server_drained``.

This module is the pure part: parsing a target, and overlaying drains on the pools the
health checks want (a server that is down stays out: a drain never brings one back).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from ipaddress import ip_address

from mailha.checkers.quorum import DesiredPool
from mailha.config.model import RealServer, VirtualServer
from mailha.errors import MailhaError
from mailha.ip import IPAddress

__all__ = ["DrainTarget", "TargetError", "drain_pool", "parse_target", "parse_wait"]



class TargetError(MailhaError, ValueError):
    """A drain target that cannot be understood; the message says what to write."""


@dataclass(frozen=True, order=True)
class DrainTarget:
    """A real server address, and its port (None: every port of that address)."""

    ip: IPAddress
    port: int | None = None

    def matches(self, rs: RealServer, vs: VirtualServer) -> bool:
        port = rs.port if rs.port is not None else vs.port
        return rs.ip == self.ip and (self.port is None or self.port == port)

    def covers(self, other: DrainTarget) -> bool:
        """True if undraining ``self`` must also lift the drain ``other``."""
        return other.ip == self.ip and (self.port is None or self.port == other.port)

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return host if self.port is None else f"{host}:{self.port}"


def parse_target(text: str, local: Iterable[IPAddress] = ()) -> tuple[DrainTarget, ...]:
    """``local`` (every address of this node), ``IP``, ``IP:PORT`` or ``[IPv6]:PORT``."""
    text = text.strip()
    if text == "local":
        # IPv4 and IPv6 addresses do not compare: a node with an IPv6 link-local
        # address beside its IPv4 one (any interface, by default) would raise TypeError.
        return tuple(sorted((DrainTarget(a) for a in local),
                            key=lambda t: (t.ip.version, int(t.ip))))
    host, port = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise TargetError(f"{text!r}: write [IPv6]:PORT, e.g. [2001:db8::35]:25")
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ip_address(host)
    except ValueError:
        raise TargetError(f"{text!r} is not local, IP, IP:PORT or [IPv6]:PORT") from None
    number = None
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise TargetError(f"{text!r}: the port must be 1..65535")
        number = int(port)
    return (DrainTarget(address, number),)


def parse_wait(value: object) -> float:
    """``--wait``'s seconds from a control request (absent: 0, do not wait).

    Checked before the drain is applied, so a bad value changes nothing.
    """
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise TargetError(f"wait must be a number of seconds >= 0, not {value!r}")
    return float(value)


def drain_pool(pool: DesiredPool, vs: VirtualServer,
               drained: Collection[DrainTarget]) -> DesiredPool:
    """``pool`` with every drained member that is in IPVS set to weight 0."""
    if not drained:
        return pool
    members = tuple(
        replace(m, weight=0)
        if m.weight and any(t.matches(m.real_server, vs) for t in drained) else m
        for m in pool.members
    )
    return replace(pool, members=members) if members != pool.members else pool
