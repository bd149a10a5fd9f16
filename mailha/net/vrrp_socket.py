"""Asyncio adapter for VRRP's IP protocol 112 over raw IPv4/IPv6 sockets.

This module moves bytes; it does not understand them.  :meth:`VrrpSocket.send` takes
an encoded VRRP payload (``mailha.vrrp.packet``), :meth:`VrrpSocket.recv` returns the
payload with the addressing facts the protocol needs to check it: source, destination,
TTL / hop limit (RFC 3768/5798: 255 in multicast mode) and the arrival interface.  Receiving
never raises on garbage; deciding what is garbage is the codec's job.

What each socket does (a subset of keepalived's vrrp.c/vrrp_scheduler.c socket setup):

* ``SO_BINDTODEVICE`` to the VRRP interface, so only packets arriving there are seen;
* TTL / hop limit 255 for multicast and ``unicast_ttl`` (default 255) for unicast,
  TOS / traffic class 0xc0 (as keepalived), multicast loopback off, multicast out of
  the VRRP interface;
* multicast mode (no unicast peers): join the group (``mcast_dst_ip``, else
  ``vrrp_mcast_group4|6``, else 224.0.0.18 / ff02::12) on the interface, and
  choose the source address per packet (``IP_PKTINFO``/``IPV6_PKTINFO``) instead of
  binding, because a raw IPv4 socket bound to an address drops packets to the group;
* unicast mode: ``bind()`` to the source address (``unicast_src_ip``, else the
  interface's primary address), which also makes the kernel drop protocol-112 packets
  that are not addressed to us;
* IPv4 reception includes the IP header, parsed here for TTL and addresses;
  IPv6 reception gets hop limit and destination from ancillary data;
* unicast mode, both families: a classic BPF filter (``SO_ATTACH_FILTER``, built by
  :mod:`mailha.net.bpf`) drops in the kernel every packet whose IP source is not a
  configured peer, so a junk flood from elsewhere costs neither queue space nor a
  system call.  Multicast mode has no filter: any router on the segment may speak;
* a receive buffer sized on purpose (:data:`RECEIVE_BUFFER`, ``SO_RCVBUFFORCE`` when
  allowed) and ``SO_RXQ_OVFL``, so the packets the kernel still drops because the
  queue was full are reported to the caller (:attr:`Received.dropped`) and counted.

What remains for the caller: the socket sees every VRRP packet from the peers (all
VRIDs), or from anyone in multicast mode.  Filtering by VRID, by configured peer (again:
the filter is not attached on kernels that refuse it) and by ``dst`` (e.g. multicast
mode ignoring unicast adverts) happens above, in the VRRP instance.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

from mailha.errors import MailhaError
from mailha.ip import IPAddress
from mailha.net import bpf, sockfilter
from mailha.resource import AsyncResource

__all__ = [
    "IPPROTO_VRRP",
    "RECEIVE_BUFFER",
    "VRRP_GROUP_V4",
    "VRRP_GROUP_V6",
    "Received",
    "VrrpSocket",
    "VrrpSocketError",
    "default_group",
    "drops_since",
    "kernel_drops",
]


IPPROTO_VRRP = 112
VRRP_GROUP_V4 = IPv4Address("224.0.0.18")
VRRP_GROUP_V6 = IPv6Address("ff02::12")
VRRP_TTL = 255
#: Precedence "internetwork control" (DSCP CS6), as keepalived marks its adverts, so
#: QoS policies that protect routing protocols protect VRRP too.
VRRP_TOS = 0xC0

# Linux values, missing from Python's socket module.
IP_PKTINFO = 8
IP_MULTICAST_ALL = 49
IPV6_MULTICAST_ALL = 29
SO_RCVBUFFORCE = 33
SO_RXQ_OVFL = 40

#: Bytes asked for the receive queue.  The kernel doubles the figure and charges each
#: queued packet its buffer's true size, not its length: ~0.8 KiB for a small packet on
#: a veth, up to ~2-4 KiB on NICs that receive into page fragments.  1 MiB thus holds
#: roughly 500-2,500 adverts: several seconds of every peer of even a large
#: configuration, and enough to ride out a stall of the event loop (a slow netlink
#: call, a fork) while junk that passed the filter keeps arriving.  Larger buys
#: nothing under a sustained flood (the queue is full either way, and a real advert
#: then waits behind it), smaller loses adverts to bursts.  The system default
#: (``net.core.rmem_default``, usually 208 KiB) holds only ~250 small packets.
RECEIVE_BUFFER = 1 << 20

_RECV_BUFSIZE = 65535
_CMSG_SPACE = socket.CMSG_SPACE(32) * 4
_DRAIN_LIMIT = 100_000

log = logging.getLogger("mailha.net.vrrp_socket")


class VrrpSocketError(MailhaError):
    """Opening or sending failed; ``reason`` is stable and precise, ``errno`` if any."""

    def __init__(self, reason: str, errno_: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errno = errno_


@dataclass(frozen=True, slots=True)
class Received:
    """One protocol-112 packet as it arrived.

    ``payload`` is what followed the IP header (the VRRP packet, or garbage).  ``dst``,
    ``ttl`` (hop limit for IPv6) and ``ifindex`` are ``None`` only when the kernel did
    not provide them or the IPv4 header was unreadable.  ``dropped`` is how many packets
    the kernel discarded on this socket, queue full, since the previous packet was
    received (``SO_RXQ_OVFL``): a count the caller exports, because each could have
    been a real advert.
    """

    payload: bytes
    src: IPAddress
    dst: IPAddress | None
    ttl: int | None
    ifindex: int | None
    dropped: int = 0


class VrrpSocket(AsyncResource):
    """A raw VRRP socket on one interface.  Create with :meth:`open`."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        family: int,
        ifname: str,
        ifindex: int,
        src: IPAddress,
        peers: tuple[IPAddress, ...],
        multicast: bool,
        filtered: bool = False,
        group: IPAddress | None = None,
    ) -> None:
        self._sock = sock
        self.family = family
        self.ifname = ifname
        self.ifindex = ifindex
        self.src = src
        self.peers = peers
        self.multicast = multicast
        #: Where multicast adverts go and are heard (None in unicast mode).
        self.group = (group or default_group(family)) if multicast else None
        #: True when the kernel drops non-peer packets (unicast mode, filter attached).
        self.filtered = filtered
        #: The receive queue's size as the kernel reports it (already doubled).
        self.receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._drops_seen = 0
        self._loop = asyncio.get_running_loop()
        self._pktinfo = _pktinfo_cmsg(family, ifindex, src) if multicast else None
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls,
        family: int,
        ifname: str,
        src: IPAddress | None,
        peers: tuple[IPAddress, ...],
        multicast: bool,
        *,
        group: IPAddress | None = None,
        unicast_ttl: int = VRRP_TTL,
    ) -> VrrpSocket:
        """Open a socket for VRRP on ``ifname``.

        ``family`` is ``socket.AF_INET``/``AF_INET6`` (or 4/6).  ``src`` is
        ``unicast_src_ip``; ``None`` picks the interface's primary address (IPv6: its
        link-local address).  ``multicast`` must be true exactly when ``peers`` is
        empty.  ``group`` is the multicast group adverts go to and are heard on
        (keepalived's ``mcast_dst_ip`` / ``vrrp_mcast_group4|6``; default the IANA
        group); ``unicast_ttl`` the TTL / hop limit of unicast adverts (multicast ones
        always carry 255).  Needs CAP_NET_RAW; runs in the current network namespace.
        """
        af = _family(family)
        if multicast == bool(peers):
            raise VrrpSocketError(
                "multicast mode needs no unicast peers" if multicast
                else "unicast mode needs at least one peer"
            )
        if group is not None and (_family(group.version) != af or not group.is_multicast):
            raise VrrpSocketError(f"{group} is not a multicast group of the socket's family")
        if not 1 <= unicast_ttl <= 255:
            raise VrrpSocketError(f"unicast TTL {unicast_ttl} is not 1..255")
        for peer in peers:
            if _family(peer.version) != af:
                raise VrrpSocketError(f"peer {peer} is not of the socket's address family")
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError:
            raise VrrpSocketError(f"no such interface: {ifname}") from None
        if src is None:
            from mailha.net.addresses import AddressError, primary_address

            try:
                src = await primary_address(ifname, af)
            except AddressError as exc:
                raise VrrpSocketError(exc.reason) from None
            if src is None:
                kind = "usable link-local IPv6" if af == socket.AF_INET6 else "IPv4"
                raise VrrpSocketError(f"{ifname} has no {kind} address to send VRRP from")
        elif _family(src.version) != af:
            raise VrrpSocketError(f"source {src} is not of the socket's address family")

        try:
            sock = socket.socket(af, socket.SOCK_RAW, IPPROTO_VRRP)
        except PermissionError:
            raise VrrpSocketError("cannot open a raw socket: needs CAP_NET_RAW") from None
        try:
            # First, so that as little as possible is queued unfiltered; what was
            # queued before it is drained below.
            filtered = _attach_peer_filter(sock, peers)
            target = (group or default_group(af)) if multicast else None
            _configure(sock, af, ifname, ifindex, src, target, unicast_ttl)
            _size_receive_buffer(sock)
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            _drain(sock)
        except OSError as exc:
            sock.close()
            raise VrrpSocketError(_explain_setup(exc, ifname, src), exc.errno) from None
        except BaseException:
            sock.close()
            raise
        return cls(sock, family=af, ifname=ifname, ifindex=ifindex, src=src,
                   peers=tuple(peers), multicast=multicast, filtered=filtered, group=group)


    async def _exit(self) -> None:
        self.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, payload: bytes) -> None:
        """Send ``payload`` to every unicast peer, or once to the VRRP group.

        Non-blocking.  A full send buffer or a routing error raises
        :class:`VrrpSocketError` after trying every peer (the caller logs it: an advert
        lost now is followed by the next one an interval later).  VRRPv3 checksums cover
        the destination address, so a v3 sender with several peers encodes one payload
        per peer and uses :meth:`send_to` instead.
        """
        self._send_each((dst, payload) for dst in self.destinations())

    def send_to(self, payload: bytes, dst: IPAddress) -> None:
        """Send ``payload`` to one destination (a peer or the group); errors as :meth:`send`."""
        self._send_each([(dst, payload)])

    def destinations(self) -> tuple[IPAddress, ...]:
        """Where adverts go: the unicast peers, or the VRRP multicast group."""
        if self.group is not None:
            return (self.group,)
        return self.peers

    def _send_each(self, items: Iterable[tuple[IPAddress, bytes]]) -> None:
        failures: list[str] = []
        last_errno: int | None = None
        for dst, payload in items:
            try:
                if self._pktinfo is not None:
                    self._sock.sendmsg([payload], [self._pktinfo], 0, _sockaddr(dst, self.ifindex))
                else:
                    self._sock.sendto(payload, _sockaddr(dst, self.ifindex))
            except OSError as exc:
                last_errno = exc.errno
                failures.append(f"{dst}: {exc.strerror or exc}")
        if failures:
            raise VrrpSocketError(f"VRRP send on {self.ifname} failed: " + "; ".join(failures),
                                  last_errno)

    async def recv(self) -> Received:
        """Wait for the next protocol-112 packet on this interface (one reader at a time)."""
        while True:
            try:
                data, ancdata, _flags, addr = self._sock.recvmsg(_RECV_BUFSIZE, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                await self._readable()
                continue
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENOBUFS):
                    continue  # transient: interface flapped or queue overflowed
                raise VrrpSocketError(f"VRRP receive on {self.ifname} failed: {exc}",
                                      exc.errno) from None
            if self.family == socket.AF_INET:
                received = _decode_v4(data, ancdata, addr)
            else:
                received = _decode_v6(data, ancdata, addr)
            total = kernel_drops(ancdata)
            if total is not None:
                dropped = drops_since(self._drops_seen, total)
                self._drops_seen = total
                if dropped:
                    received = replace(received, dropped=dropped)
            return received

    def close(self) -> None:
        """Close the socket; a pending :meth:`recv` raises :class:`VrrpSocketError`."""
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(VrrpSocketError(f"VRRP socket on {self.ifname} closed"))

    async def _readable(self) -> None:
        fd = self._sock.fileno()
        if fd < 0:
            raise VrrpSocketError(f"VRRP socket on {self.ifname} is closed")
        if self._waiter is not None:
            raise VrrpSocketError(f"concurrent recv() on the VRRP socket of {self.ifname}")
        fut: asyncio.Future[None] = self._loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self._waiter = fut
        self._loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            self._waiter = None
            if self._sock.fileno() >= 0:
                self._loop.remove_reader(fd)


def _family(family: int) -> int:
    if family in (4, socket.AF_INET):
        return socket.AF_INET
    if family in (6, socket.AF_INET6):
        return socket.AF_INET6
    raise VrrpSocketError(f"unknown address family {family!r}")


def default_group(family: int) -> IPAddress:
    """The IANA VRRP group of ``family`` (224.0.0.18 / ff02::12)."""
    return VRRP_GROUP_V4 if _family(family) == socket.AF_INET else VRRP_GROUP_V6


def _configure(
    sock: socket.socket,
    af: int,
    ifname: str,
    ifindex: int,
    src: IPAddress,
    group: IPAddress | None,
    unicast_ttl: int,
) -> None:
    """Options for ``group`` (multicast mode) or unicast mode when ``group`` is None."""
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    if af == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, unicast_ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, VRRP_TOS)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, VRRP_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        mreqn = struct.pack("=4s4si", b"\0" * 4, src.packed, ifindex)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        if group is not None:
            # Only groups joined on *this* socket, not every group the host joined.
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            mreq = struct.pack("=4s4si", group.packed, b"\0" * 4, ifindex)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        else:
            sock.bind((str(src), 0))
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, unicast_ttl)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, VRRP_TOS)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        if group is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
            mreq = struct.pack("=16si", group.packed, ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        else:
            scope = ifindex if src.is_link_local else 0
            sock.bind((str(src), 0, 0, scope))


def _attach_peer_filter(sock: socket.socket, peers: tuple[IPAddress, ...]) -> bool:
    """Attach the peer-source filter in unicast mode; False (no filter) otherwise.

    A kernel refusing the program (EINVAL, ENOMEM: e.g. an unusual build or a locked
    socket) is not fatal: the userspace peer check still applies, only the flood
    protection is lost, which is logged.
    """
    if not peers:
        return False
    try:
        sockfilter.attach(sock, bpf.peer_source_filter(peers))
    except OSError as exc:
        if exc.errno == errno.EPERM:
            raise
        log.warning("cannot attach the VRRP peer filter (%s): non-peer packets will "
                    "be dropped in userspace only", exc.strerror or exc)
        return False
    return True


def _size_receive_buffer(sock: socket.socket) -> None:
    """:data:`RECEIVE_BUFFER`, beyond ``net.core.rmem_max`` when CAP_NET_ADMIN allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def _drain(sock: socket.socket) -> None:
    """Discard what was queued before the filter was attached (bounded)."""
    for _ in range(_DRAIN_LIMIT):
        try:
            sock.recv(1)
        except (BlockingIOError, InterruptedError):
            return


def kernel_drops(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The socket's cumulative drop counter from an ``SO_RXQ_OVFL`` message, if any.

    The kernel attaches it only once the counter is non-zero.
    """
    for level, kind, value in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
            count: int = struct.unpack_from("=I", value)[0]
            return count
    return None


def drops_since(previous: int, current: int) -> int:
    """Packets dropped between two readings of the kernel's 32-bit counter (it wraps)."""
    return (current - previous) & 0xFFFFFFFF


def _pktinfo_cmsg(af: int, ifindex: int, src: IPAddress) -> tuple[int, int, bytes]:
    if af == socket.AF_INET:
        # struct in_pktinfo { int ifindex; in_addr spec_dst (our source); in_addr addr; }
        return (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", ifindex, src.packed,
                                                           b"\0" * 4))
    # struct in6_pktinfo { in6_addr addr (our source); unsigned ifindex; }
    return (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, struct.pack("=16sI", src.packed, ifindex))


def _sockaddr(dst: IPAddress, ifindex: int) -> tuple[str, int] | tuple[str, int, int, int]:
    if isinstance(dst, IPv4Address):
        return (str(dst), 0)
    scope = ifindex if (dst.is_link_local or dst.is_multicast) else 0
    return (str(dst), 0, 0, scope)


def _decode_v4(
    data: bytes, ancdata: list[tuple[int, int, bytes]], addr: tuple[str, int]
) -> Received:
    ifindex: int | None = None
    for level, kind, value in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
            ifindex = struct.unpack_from("=i", value)[0]
    src = ip_address(addr[0])
    if len(data) >= 20 and data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
        if 20 <= ihl <= len(data):
            return Received(
                payload=bytes(data[ihl:]),
                src=IPv4Address(data[12:16]),
                dst=IPv4Address(data[16:20]),
                ttl=data[8],
                ifindex=ifindex,
            )
    return Received(payload=bytes(data), src=src, dst=None, ttl=None, ifindex=ifindex)


def _decode_v6(
    data: bytes, ancdata: list[tuple[int, int, bytes]], addr: tuple[str, int, int, int]
) -> Received:
    ttl: int | None = None
    dst: IPAddress | None = None
    ifindex: int | None = None
    for level, kind, value in ancdata:
        if level != socket.IPPROTO_IPV6:
            continue
        if kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
            ttl = struct.unpack_from("=i", value)[0]
        elif kind == socket.IPV6_PKTINFO and len(value) >= 20:
            raw, ifindex = struct.unpack_from("=16sI", value)
            dst = IPv6Address(raw)
    # recvmsg formats a link-local source as "fe80::1%eth0"; keep the bare address.
    src = IPv6Address(addr[0].split("%", 1)[0])
    return Received(payload=bytes(data), src=src, dst=dst, ttl=ttl, ifindex=ifindex)


def _explain_setup(exc: OSError, ifname: str, src: IPAddress) -> str:
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot send from {src}: it is not an address of this host (or still tentative)"
    if exc.errno == errno.ENODEV:
        return f"no such interface: {ifname}"
    if exc.errno == errno.EPERM:
        return "permission denied setting up the VRRP socket (needs CAP_NET_RAW)"
    return f"cannot set up the VRRP socket on {ifname}: {exc.strerror or exc}"
