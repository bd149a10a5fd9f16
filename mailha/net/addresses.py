"""Add, remove and list interface addresses over rtnetlink (pyroute2's AsyncIPRoute).

The VRRP master adds the VIP to its interface; a backup removes it; a DR real server
holds the VIP on ``lo`` (/32 or /128, scope host) so it accepts packets the director
forwards without answering ARP for them.  All of these must be idempotent: after a
crash or a manual ``ip addr del`` the daemon re-applies the desired state and must not
fail because it already holds (or already lacks) an address.

pyroute2 0.9.7's ``AsyncIPRoute`` is a real asyncio netlink socket (no helper thread;
each operation is one request/ack round trip of about 0.5 ms here), so operations are
awaited directly on the event loop.  :class:`Addresses` keeps one connection open; the
module-level functions open a short-lived one for one-off questions.

IPv6 VIPs are added with ``IFA_F_NODAD`` (as keepalived does): a VIP must be usable at
once, not after a second of duplicate address detection, and DAD "failing" against the
old master that still answers for it would leave the address unusable.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Literal

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mailha.errors import MailhaError
from mailha.ip import IPAddress
from mailha.resource import AsyncResource

__all__ = [
    "AddressError",
    "Addresses",
    "InterfaceAddress",
    "Scope",
    "list_addresses",
    "owns_address",
    "primary_address",
]

Scope = Literal["global", "site", "link", "host", "nowhere"]

_SCOPES: dict[str, int] = {"global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
_SCOPE_NAMES: dict[int, str] = {v: k for k, v in _SCOPES.items()}

IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40


class AddressError(MailhaError):
    """An address operation failed for a reason other than "already so"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address as the kernel reports it."""

    ifname: str
    address: IPAddress
    prefixlen: int
    scope: str  # one of Scope's names, or the number for an unnamed scope
    label: str | None = None
    flags: int = 0

    @property
    def secondary(self) -> bool:
        """IPv4 address in the same subnet as an earlier (primary) one."""
        return bool(self.flags & IFA_F_SECONDARY)

    @property
    def usable(self) -> bool:
        """False while IPv6 DAD is running or after it failed (cannot be bound)."""
        return not self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)


class Addresses(AsyncResource):
    """An open rtnetlink connection for address work.

    ``async with Addresses() as addrs: await addrs.add("eth0", vip, 24)``.  The socket
    belongs to the network namespace that was current when :meth:`open` ran.
    """

    def __init__(self) -> None:
        self._ipr: Any = None

    async def open(self) -> Addresses:
        ipr = AsyncIPRoute()
        await ipr.setup_endpoint()  # bind now, in the current network namespace
        self._ipr = ipr
        return self

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def _enter(self) -> None:
        await self.open()

    async def _exit(self) -> None:
        self.close()

    @property
    def _conn(self) -> Any:
        if self._ipr is None:
            raise AddressError("address connection is not open")
        return self._ipr

    async def ifindex(self, ifname: str) -> int:
        """The interface's index; :class:`AddressError` if there is no such interface."""
        try:
            found = await self._conn.link_lookup(ifname=ifname)
        except NetlinkError as exc:
            raise AddressError(f"cannot look up interface {ifname}: {exc}") from None
        if not found:
            raise AddressError(f"no such interface: {ifname}")
        return int(found[0])

    async def list(self, ifname: str, family: int | None = None) -> tuple[InterfaceAddress, ...]:
        """Addresses of ``ifname`` in kernel order (IPv4 primary first), optionally one family.

        ``family`` is 4, 6, ``socket.AF_INET`` or ``socket.AF_INET6``.
        """
        index = await self.ifindex(ifname)
        query: dict[str, int] = {"index": index}
        af = _af(family) if family is not None else None
        if af is not None:
            query["family"] = af
        try:
            msgs = [m async for m in await self._conn.addr("dump", **query)]
        except NetlinkError as exc:
            raise AddressError(f"cannot list addresses of {ifname}: {exc}") from None
        result = []
        for msg in msgs:
            if msg["index"] != index or (af is not None and msg["family"] != af):
                continue
            parsed = _parse(ifname, msg)
            if parsed is not None:
                result.append(parsed)
        return tuple(result)

    async def add(
        self,
        ifname: str,
        address: IPAddress | str,
        prefixlen: int | None = None,
        *,
        label: str | None = None,
        scope: Scope = "global",
        nodad: bool = True,
    ) -> bool:
        """Add ``address/prefixlen`` to ``ifname``; False if it was already there.

        ``prefixlen`` defaults to a host route (/32, /128), keepalived's default for a
        VIP without a mask.  ``label`` (IPv4 only) must be ``ifname`` or start with
        ``ifname:``, at most 15 characters, as the kernel demands.
        """
        addr = _ip(address)
        plen = _prefixlen(addr, prefixlen)
        if scope not in _SCOPES:
            raise AddressError(f"unknown scope {scope!r}")
        index = await self.ifindex(ifname)
        request: dict[str, Any] = {
            "index": index,
            "address": str(addr),
            "prefixlen": plen,
            "scope": _SCOPES[scope],
        }
        if label is not None:
            if addr.version != 4:
                raise AddressError("address labels exist only for IPv4")
            if not (label == ifname or label.startswith(ifname + ":")) or len(label) > 15:
                raise AddressError(
                    f"label {label!r} must be {ifname!r} or start with '{ifname}:' "
                    "and have at most 15 characters"
                )
            request["label"] = label
        if addr.version == 6 and nodad:
            request["flags"] = IFA_F_NODAD
        try:
            await self._conn.addr("add", **request)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise AddressError(_describe("add", addr, plen, ifname, exc)) from None
        return True

    async def remove(
        self, ifname: str, address: IPAddress | str, prefixlen: int | None = None
    ) -> bool:
        """Remove ``address`` from ``ifname``; False if it was not there.

        Without ``prefixlen`` the address is removed whatever its prefix length.
        """
        addr = _ip(address)
        if prefixlen is None:
            held = [a for a in await self.list(ifname, addr.version) if a.address == addr]
            if not held:
                return False
            plen = held[0].prefixlen
        else:
            plen = _prefixlen(addr, prefixlen)
        index = await self.ifindex(ifname)
        try:
            await self._conn.addr("del", index=index, address=str(addr), prefixlen=plen)
        except NetlinkError as exc:
            if exc.code == errno.EADDRNOTAVAIL:
                return False
            raise AddressError(_describe("remove", addr, plen, ifname, exc)) from None
        return True

    async def owns(self, address: IPAddress | str) -> bool:
        """Whether any interface in this namespace holds ``address`` (unicast_src_ip check)."""
        addr = _ip(address)
        try:
            msgs = [m async for m in await self._conn.addr("dump", family=_af(addr.version))]
        except NetlinkError as exc:
            raise AddressError(f"cannot list addresses: {exc}") from None
        return any(_msg_address(m) == addr for m in msgs)

    async def local_addresses(self) -> frozenset[IPAddress]:
        """Every address configured in this namespace (for the config's host checks)."""
        found: set[IPAddress] = set()
        for family in (4, 6):
            try:
                msgs = [m async for m in await self._conn.addr("dump", family=_af(family))]
            except NetlinkError as exc:
                raise AddressError(f"cannot list addresses: {exc}") from None
            found.update(a for a in map(_msg_address, msgs) if a is not None)
        return frozenset(found)

    async def primary(self, ifname: str, family: int) -> IPAddress | None:
        """The address VRRP should send from on ``ifname`` when none is configured.

        IPv4: the first primary (non-secondary) global address, the one the kernel's
        source selection would use.  IPv6: the usable link-local address (RFC 5798
        requires adverts to come from it).  ``None`` if there is none (yet).
        """
        for a in await self.list(ifname, family):
            if a.address.version == 4 and not a.secondary and a.scope == "global":
                return a.address
            if a.address.version == 6 and a.address.is_link_local and a.usable:
                return a.address
        return None

    async def add_loopback_vip(self, vip: IPAddress | str) -> bool:
        """Hold ``vip`` on ``lo`` (host prefix, scope host) for the DR real-server role."""
        return await self.add("lo", vip, None, scope="host")

    async def remove_loopback_vip(self, vip: IPAddress | str) -> bool:
        """Undo :meth:`add_loopback_vip`."""
        return await self.remove("lo", vip, None)


async def list_addresses(ifname: str, family: int | None = None) -> tuple[InterfaceAddress, ...]:
    """One-shot :meth:`Addresses.list`."""
    async with Addresses() as addrs:
        return await addrs.list(ifname, family)


async def local_addresses() -> frozenset[IPAddress]:
    """One-shot :meth:`Addresses.local_addresses` (``mailha check --host``)."""
    async with Addresses() as addrs:
        return await addrs.local_addresses()


async def owns_address(address: IPAddress | str) -> bool:
    """One-shot :meth:`Addresses.owns`: validate ``unicast_src_ip`` at start."""
    async with Addresses() as addrs:
        return await addrs.owns(address)


async def primary_address(ifname: str, family: int) -> IPAddress | None:
    """One-shot :meth:`Addresses.primary`."""
    async with Addresses() as addrs:
        return await addrs.primary(ifname, family)


def _ip(address: IPAddress | str) -> IPAddress:
    if isinstance(address, IPv4Address | IPv6Address):
        return address
    try:
        return ip_address(address)
    except ValueError:
        raise AddressError(f"not an IP address: {address!r}") from None


def _af(family: int) -> int:
    if family in (4, socket.AF_INET):
        return socket.AF_INET
    if family in (6, socket.AF_INET6):
        return socket.AF_INET6
    raise AddressError(f"unknown address family {family!r}")


def _prefixlen(addr: IPAddress, prefixlen: int | None) -> int:
    bits = addr.max_prefixlen
    if prefixlen is None:
        return bits
    if not 0 <= prefixlen <= bits:
        raise AddressError(f"prefix length {prefixlen} out of range for {addr} (0-{bits})")
    return prefixlen


def _msg_address(msg: Any) -> IPAddress | None:
    # For IPv4, IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on a
    # point-to-point link); IPv6 has only IFA_ADDRESS.
    raw = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    if raw is None:
        return None
    try:
        return ip_address(raw)
    except ValueError:
        return None


def _parse(ifname: str, msg: Any) -> InterfaceAddress | None:
    addr = _msg_address(msg)
    if addr is None:
        return None
    flags = msg.get_attr("IFA_FLAGS")
    scope = int(msg["scope"])
    return InterfaceAddress(
        ifname=ifname,
        address=addr,
        prefixlen=int(msg["prefixlen"]),
        scope=_SCOPE_NAMES.get(scope, str(scope)),
        label=msg.get_attr("IFA_LABEL"),
        flags=int(flags if flags is not None else msg["flags"]),
    )


def _describe(op: str, addr: IPAddress, plen: int, ifname: str, exc: NetlinkError) -> str:
    why = {
        errno.EPERM: "permission denied (needs CAP_NET_ADMIN)",
        errno.ENODEV: "no such interface",
        errno.EINVAL: "invalid request",
    }.get(exc.code, f"{exc.args[1] if len(exc.args) > 1 else exc} (errno {exc.code})")
    return f"cannot {op} {addr}/{plen} on {ifname}: {why}"
