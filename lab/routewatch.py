"""Watch one destination's route in a namespace's kernel FIB, every change time-stamped.

The scale-out tests measure how long a router takes to withdraw a director: from an event
(a drain, a cut link, a killed BIRD) to the moment the router's kernel forwards the VIP to
one next hop fewer. Polling ``ip route show`` costs a process start per look (tens of
milliseconds in the emulated VM, so that much resolution lost); instead a netlink socket
in the router's namespace subscribes to IPv4 route events (``RTMGRP_IPV4_ROUTE``) and a
thread of its own blocks on it, stamping each message with ``time.monotonic()`` as it
arrives. A thread and not the event loop: a loop busy with the test's clients would read
the message late and the figure would grow by the loop's lag; a blocked thread gets the
GIL back within the interpreter's switch interval (5 ms).

The decoding is a sans-I/O function (:func:`route_updates`: bytes in, updates out) with
unit tests; :class:`RouteWatcher` is the thin adapter. ``CLOCK_MONOTONIC`` is one clock for
every process and namespace, so the stamps compare with ``time.monotonic()`` taken by the
test around its event.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lab.errors import NetnsError
from lab.netns import entered
from mailha.resource import AsyncResource

__all__ = ["RouteChange", "RouteUpdate", "RouteWatcher", "route_updates"]

NETLINK_ROUTE = 0
RTMGRP_IPV4_ROUTE = 0x40
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTA_DST, RTA_GATEWAY, RTA_MULTIPATH, RTA_TABLE = 1, 5, 9, 15
RT_TABLE_MAIN = 254

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_RTNEXTHOP = struct.Struct("=HBBi")

IPv4 = ipaddress.IPv4Address


@dataclass(frozen=True)
class RouteUpdate:
    """One route message about the watched destination: its next hops after the message
    (empty when the route was deleted)."""

    nexthops: frozenset[IPv4]


@dataclass(frozen=True)
class RouteChange:
    """The destination's next hops from ``at`` (``time.monotonic()``) on."""

    at: float
    nexthops: frozenset[IPv4]


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attributes(data: bytes) -> dict[int, bytes]:
    """The rtattr list in ``data`` as {type: payload} (the last one of a type wins)."""
    found: dict[int, bytes] = {}
    at = 0
    while at + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, at)
        if length < _RTATTR.size or at + length > len(data):
            break
        found[kind & 0x3FFF] = data[at + _RTATTR.size : at + length]
        at += _align(length)
    return found


def _multipath_gateways(data: bytes) -> frozenset[IPv4]:
    """The gateways of an ``RTA_MULTIPATH`` payload (a list of rtnexthop + attributes)."""
    found: set[IPv4] = set()
    at = 0
    while at + _RTNEXTHOP.size <= len(data):
        length = _RTNEXTHOP.unpack_from(data, at)[0]
        if length < _RTNEXTHOP.size or at + length > len(data):
            break
        gateway = _attributes(data[at + _RTNEXTHOP.size : at + length]).get(RTA_GATEWAY)
        if gateway is not None and len(gateway) == 4:
            found.add(IPv4(gateway))
        at += _align(length)
    return frozenset(found)


def route_updates(data: bytes, dst: IPv4, table: int = RT_TABLE_MAIN) -> list[RouteUpdate]:
    """The updates about ``dst``/32 in ``table`` carried by one netlink datagram.

    A new or replaced route gives its gateways (one ``RTA_GATEWAY`` or the list in
    ``RTA_MULTIPATH``); a deleted one gives none. Messages about other prefixes, other
    tables, other families and non-route messages are skipped; a truncated message ends
    the datagram.
    """
    updates: list[RouteUpdate] = []
    at = 0
    while at + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, at)
        if length < _NLMSGHDR.size or at + length > len(data):
            break
        body = data[at + _NLMSGHDR.size : at + length]
        at += _align(length)
        if kind not in (RTM_NEWROUTE, RTM_DELROUTE) or len(body) < _RTMSG.size:
            continue
        family, dst_len, _src_len, _tos, rtm_table, *_rest = _RTMSG.unpack_from(body)
        if family != socket.AF_INET or dst_len != 32:
            continue
        attrs = _attributes(body[_RTMSG.size :])
        if attrs.get(RTA_DST) != dst.packed:
            continue
        table_attr = attrs.get(RTA_TABLE)
        route_table = struct.unpack("=I", table_attr)[0] if table_attr else rtm_table
        if route_table != table:
            continue
        if kind == RTM_DELROUTE:
            updates.append(RouteUpdate(frozenset()))
            continue
        gateway = attrs.get(RTA_GATEWAY)
        if RTA_MULTIPATH in attrs:
            updates.append(RouteUpdate(_multipath_gateways(attrs[RTA_MULTIPATH])))
        elif gateway is not None and len(gateway) == 4:
            updates.append(RouteUpdate(frozenset({IPv4(gateway)})))
        else:  # a device route: no gateway to name
            updates.append(RouteUpdate(frozenset()))
    return updates


def dump_request(seq: int) -> bytes:
    """An ``RTM_GETROUTE`` dump request for every IPv4 route."""
    body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETROUTE,
                          NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _ends_dump(data: bytes) -> bool:
    at = 0
    while at + _NLMSGHDR.size <= len(data):
        length, kind = _NLMSGHDR.unpack_from(data, at)[:2]
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            return True
        if length < _NLMSGHDR.size:
            break
        at += _align(length)
    return False


class RouteWatcher(AsyncResource):
    """The next hops of ``dst``/32 in ``netns``'s main table, with the time of each change.

    ::

        async with RouteWatcher(topo.netns("rt"), vip) as fib:
            t0 = time.monotonic()
            ...  # withdraw a director
            change = await fib.wait_for(lambda hops: len(hops) == 1, after=t0)
            print(change.at - t0)

    Entering subscribes first, then dumps the table, so no change between the two is
    missed; :attr:`changes` starts with the dumped state.
    """

    def __init__(self, netns: str, dst: IPv4 | str) -> None:
        self.netns = netns
        self.dst = IPv4(str(dst))
        self.changes: list[RouteChange] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def nexthops(self) -> frozenset[IPv4]:
        """The next hops now (as far as the messages read so far say)."""
        with self._lock:
            return self.changes[-1].nexthops if self.changes else frozenset()

    async def _enter(self) -> None:
        with entered(self.netns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, RTMGRP_IPV4_ROUTE))
            sock.settimeout(0.1)
            sock.send(dump_request(1))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        dumped = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(sock, dumped),
                                        name=f"routewatch-{self.netns}", daemon=True)
        self._thread.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while not dumped.is_set():
            if self._error is not None or loop.time() > deadline:
                await self._exit()
                raise NetnsError("route dump failed", f"{self.netns}: {self._error or 'timeout'}")
            await asyncio.sleep(0.01)

    def _read(self, sock: socket.socket, dumped: threading.Event) -> None:
        in_dump: set[IPv4] | None = set()
        try:
            while not self._stop.is_set():
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    continue
                at = time.monotonic()
                updates = route_updates(data, self.dst)
                if in_dump is not None:
                    for update in updates:
                        in_dump |= update.nexthops
                    if _ends_dump(data):
                        self._record(at, frozenset(in_dump))
                        in_dump = None
                        dumped.set()
                    continue
                for update in updates:
                    self._record(at, update.nexthops)
        except OSError as exc:
            if not self._stop.is_set():
                self._error = exc

    def _record(self, at: float, nexthops: frozenset[IPv4]) -> None:
        with self._lock:
            if not self.changes or self.changes[-1].nexthops != nexthops:
                self.changes.append(RouteChange(at, nexthops))

    async def wait_for(
        self,
        want: Callable[[frozenset[IPv4]], bool],
        *,
        after: float | None = None,
        time_limit: float = 30.0,
    ) -> RouteChange:
        """The first change at or after ``after`` (``time.monotonic()``; default: now) whose
        next hops satisfy ``want``; the current state counts when it already does and no
        ``after`` is given. Raises NetnsError after ``time_limit`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while True:
            with self._lock:
                changes = list(self.changes)
            if after is None:
                if changes and want(changes[-1].nexthops):
                    return changes[-1]
            else:
                for change in changes:
                    if change.at >= after and want(change.nexthops):
                        return change
            if self._error is not None:
                raise NetnsError("route watch failed", f"{self.netns}: {self._error}")
            if loop.time() > deadline:
                seen = [sorted(map(str, c.nexthops)) for c in changes[-5:]]
                raise NetnsError("route never changed as wanted",
                                 f"{self.dst} in {self.netns} after {time_limit:g}s; last: {seen}")
            await asyncio.sleep(0.01)

    async def _exit(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
