"""Gratuitous ARP and unsolicited neighbour advertisements for a VIP that moved.

When a node becomes VRRP master, switches and hosts on the link still map the VIP to
the old master's MAC address.  The new master announces itself:

* IPv4: a gratuitous ARP.  keepalived 2.2.7 sends the *request* form (checked by
  capturing it): Ethernet broadcast, op 1, sender and target protocol address both the
  VIP, target hardware address ff:ff:ff:ff:ff:ff.  Some gear only updates its cache
  from replies, so the reply form (op 2, target hardware address = our MAC, as in
  RFC 5227's ARP announcement) is available with ``reply=True``.
* IPv6: an unsolicited neighbour advertisement (RFC 4861 7.2.6), as keepalived sends
  it: from the VIP to ff02::1 (33:33:00:00:00:01), hop limit 255, Override flag set,
  Solicited clear, Router flag only on request, with a target link-layer address option.

Frames are built whole (:func:`garp_frame`, :func:`unsolicited_na_frame`: pure
functions) and sent on an ``AF_PACKET`` socket bound to the interface, so announcing
does not depend on the address state (an IPv6 VIP may still be tentative).

How many, and when, follows keepalived.conf(5): on becoming master, a burst of
``garp_master_repeat`` messages per VIP, a second burst ``garp_master_delay`` seconds
later (0: none); every ``garp_master_refresh`` seconds while master, a burst of
``garp_master_refresh_repeat`` (0: no refresh); on a lower-priority advert while master,
a burst of ``garp_lower_prio_repeat`` at once and another ``garp_lower_prio_delay``
later.  Within an interface, consecutive ARP messages are at least ``garp_interval``
apart and NA messages ``gna_interval`` apart.  :class:`GarpScheduler` is that logic,
sans I/O, with an injected clock; :class:`Announcer` is the thin asyncio runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

__all__ = [
    "Announcer",
    "ArpError",
    "GarpConfig",
    "GarpScheduler",
    "garp_frame",
    "interface_mac",
    "send_garp",
    "send_unsolicited_na",
    "unsolicited_na_frame",
]

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ICMPV6_NA = 136
NA_FLAG_ROUTER = 0x80
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20
ND_OPT_TARGET_LL_ADDR = 2

BROADCAST_MAC = b"\xff" * 6
ALL_NODES = IPv6Address("ff02::1")


class ArpError(Exception):
    """An announcement could not be built or sent; ``reason`` is stable and precise."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- frames


def garp_frame(mac: bytes, ip: IPv4Address, *, reply: bool = False) -> bytes:
    """An Ethernet frame carrying a gratuitous ARP for ``ip`` from ``mac``."""
    _check_mac(mac)
    spa = ip.packed
    tha = mac if reply else BROADCAST_MAC
    arp = struct.pack(
        "!HHBBH6s4s6s4s",
        ARPHRD_ETHER, 0x0800, 6, 4, ARPOP_REPLY if reply else ARPOP_REQUEST,
        mac, spa, tha, spa,
    )
    return BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP) + arp


def unsolicited_na_frame(mac: bytes, ip: IPv6Address, *, router: bool = False) -> bytes:
    """An Ethernet frame carrying an unsolicited neighbour advertisement for ``ip``."""
    _check_mac(mac)
    flags = NA_FLAG_OVERRIDE | (NA_FLAG_ROUTER if router else 0)
    option = struct.pack("!BB6s", ND_OPT_TARGET_LL_ADDR, 1, mac)
    body = struct.pack("!BBHB3x16s", ICMPV6_NA, 0, 0, flags, ip.packed) + option
    checksum = _icmpv6_checksum(ip, ALL_NODES, body)
    body = body[:2] + struct.pack("!H", checksum) + body[4:]
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(body), socket.IPPROTO_ICMPV6, 255,
        ip.packed, ALL_NODES.packed,
    )
    dst_mac = b"\x33\x33" + ALL_NODES.packed[-4:]
    return dst_mac + mac + struct.pack("!H", ETH_P_IPV6) + header + body


def _icmpv6_checksum(src: IPv6Address, dst: IPv6Address, body: bytes) -> int:
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(body), socket.IPPROTO_ICMPV6)
    data = pseudo + body
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _check_mac(mac: bytes) -> None:
    if len(mac) != 6:
        raise ArpError(f"hardware address must be 6 bytes (Ethernet), got {len(mac)}")


# --------------------------------------------------------------------------- sending


def interface_mac(ifname: str) -> bytes:
    """The interface's Ethernet address, read in the current network namespace."""
    with _packet_socket(ifname) as sock:
        return _bound_mac(sock, ifname)


def send_garp(ifname: str, ip: IPv4Address | str, *, reply: bool = False) -> None:
    """Send one gratuitous ARP for ``ip`` on ``ifname``."""
    addr = IPv4Address(ip)
    with _packet_socket(ifname) as sock:
        _send(sock, ifname, garp_frame(_bound_mac(sock, ifname), addr, reply=reply))


def send_unsolicited_na(ifname: str, ip: IPv6Address | str, *, router: bool = False) -> None:
    """Send one unsolicited neighbour advertisement for ``ip`` on ``ifname``."""
    addr = IPv6Address(ip)
    with _packet_socket(ifname) as sock:
        _send(sock, ifname, unsolicited_na_frame(_bound_mac(sock, ifname), addr, router=router))


class _Link:
    """A packet socket kept open on one interface, for repeated announcements."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self._sock = _open_packet_socket(ifname)
        self.mac = _bound_mac(self._sock, ifname)

    def announce(self, ip: IPAddress, *, reply: bool, router: bool) -> None:
        if isinstance(ip, IPv4Address):
            frame = garp_frame(self.mac, ip, reply=reply)
        else:
            frame = unsolicited_na_frame(self.mac, ip, router=router)
        _send(self._sock, self.ifname, frame)

    def close(self) -> None:
        self._sock.close()


@contextlib.contextmanager
def _packet_socket(ifname: str) -> Iterator[socket.socket]:
    sock = _open_packet_socket(ifname)
    try:
        yield sock
    finally:
        sock.close()


def _open_packet_socket(ifname: str) -> socket.socket:
    # Protocol 0: this socket only sends, so the kernel queues nothing for it.
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise ArpError("cannot open a packet socket: needs CAP_NET_RAW") from None
    try:
        sock.bind((ifname, 0))
    except OSError as exc:
        sock.close()
        raise ArpError(f"cannot bind a packet socket to {ifname}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _bound_mac(sock: socket.socket, ifname: str) -> bytes:
    # getsockname() on a bound AF_PACKET socket: (ifname, proto, pkttype, hatype, addr)
    name = sock.getsockname()
    hatype, mac = name[3], name[4]
    if hatype != ARPHRD_ETHER or len(mac) != 6:
        raise ArpError(f"{ifname} is not an Ethernet interface (hardware type {hatype})")
    return bytes(mac)


def _send(sock: socket.socket, ifname: str, frame: bytes) -> None:
    try:
        sock.send(frame)
    except BlockingIOError:
        raise ArpError(f"transmit queue of {ifname} is full; announcement dropped") from None
    except OSError as exc:
        raise ArpError(f"cannot send on {ifname}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True, slots=True)
class GarpConfig:
    """keepalived's garp_* settings for one instance (defaults as in keepalived.conf(5)).

    ``lower_prio_delay``/``lower_prio_repeat`` default to the master values.
    ``min_garp()`` gives ``vrrp_min_garp``: one message, no second burst.
    """

    master_delay: float = 5.0
    master_repeat: int = 5
    lower_prio_delay: float | None = None
    lower_prio_repeat: int | None = None
    master_refresh: float = 0.0
    master_refresh_repeat: int = 1
    garp_interval: float = 0.0
    gna_interval: float = 0.0

    def __post_init__(self) -> None:
        for name in ("master_delay", "master_refresh", "garp_interval", "gna_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("master_repeat", "master_refresh_repeat"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.lower_prio_delay is not None and self.lower_prio_delay < 0:
            raise ValueError("lower_prio_delay must not be negative")
        if self.lower_prio_repeat is not None and self.lower_prio_repeat < 0:
            raise ValueError("lower_prio_repeat must not be negative")

    @classmethod
    def min_garp(cls) -> GarpConfig:
        return cls(master_delay=0.0, master_repeat=1)

    @property
    def effective_lower_prio_delay(self) -> float:
        return self.master_delay if self.lower_prio_delay is None else self.lower_prio_delay

    @property
    def effective_lower_prio_repeat(self) -> int:
        return self.master_repeat if self.lower_prio_repeat is None else self.lower_prio_repeat


class GarpScheduler:
    """When to announce which VIP: events in, due announcements out, no I/O.

    Drive it with :meth:`became_master`, :meth:`lower_priority_advert` and
    :meth:`left_master`; ask :meth:`next_deadline` when to wake up and :meth:`poll` for
    the addresses to announce now (one list entry per message, in order).
    """

    def __init__(self, config: GarpConfig, addresses: Sequence[IPAddress]) -> None:
        self.config = config
        self.addresses = tuple(addresses)
        self._bursts: list[tuple[float, int]] = []  # (time, repeat), unordered, small
        self._refresh_at: float | None = None
        self._queues: dict[int, deque[IPAddress]] = {4: deque(), 6: deque()}
        self._lane_free: dict[int, float] = {4: float("-inf"), 6: float("-inf")}

    @property
    def active(self) -> bool:
        """True while anything is queued or scheduled."""
        return bool(self._bursts or self._refresh_at is not None or any(self._queues.values()))

    def became_master(self, now: float) -> None:
        cfg = self.config
        self._burst(now, cfg.master_repeat)
        if cfg.master_delay > 0:
            self._burst(now + cfg.master_delay, cfg.master_repeat)
        self._refresh_at = now + cfg.master_refresh if cfg.master_refresh > 0 else None

    def lower_priority_advert(self, now: float) -> None:
        cfg = self.config
        repeat = cfg.effective_lower_prio_repeat
        self._burst(now, repeat)
        if cfg.effective_lower_prio_delay > 0:
            self._burst(now + cfg.effective_lower_prio_delay, repeat)

    def left_master(self) -> None:
        """Forget everything pending: a backup must not announce the VIP."""
        self._bursts.clear()
        self._refresh_at = None
        for q in self._queues.values():
            q.clear()

    def next_deadline(self) -> float | None:
        times = [t for t, _ in self._bursts]
        if self._refresh_at is not None:
            times.append(self._refresh_at)
        for fam, q in self._queues.items():
            if q:
                times.append(self._lane_free[fam])
        return min(times) if times else None

    def poll(self, now: float) -> list[IPAddress]:
        """Announcements due at ``now``; advances bursts, refresh and spacing."""
        due = sorted(b for b in self._bursts if b[0] <= now)
        self._bursts = [b for b in self._bursts if b[0] > now]
        while self._refresh_at is not None and self._refresh_at <= now:
            due.append((self._refresh_at, self.config.master_refresh_repeat))
            self._refresh_at += self.config.master_refresh
        for _, repeat in due:
            for _ in range(repeat):  # keepalived: each round announces every VIP
                for ip in self.addresses:
                    self._queues[ip.version].append(ip)
        out: list[IPAddress] = []
        for fam, q in self._queues.items():
            interval = self.config.garp_interval if fam == 4 else self.config.gna_interval
            while q and self._lane_free[fam] <= now:
                out.append(q.popleft())
                if interval > 0:
                    self._lane_free[fam] = max(self._lane_free[fam], now) + interval
        return out

    def _burst(self, at: float, repeat: int) -> None:
        if repeat > 0 and self.addresses:
            self._bursts.append((at, repeat))


# --------------------------------------------------------------------------- runner


class Announcer:
    """Runs a :class:`GarpScheduler` for one interface on the event loop.

    The VRRP instance calls :meth:`became_master` / :meth:`lower_priority_advert` /
    :meth:`left_master`; :meth:`run` (a long-lived task) sleeps until the scheduler's
    next deadline and sends what is due.  Send failures are logged, never raised: a
    lost announcement is repeated by the next burst.  The packet socket is opened at
    construction, in the network namespace current then; call :meth:`close` (or cancel
    :meth:`run`) to release it.
    """

    def __init__(
        self,
        ifname: str,
        scheduler: GarpScheduler,
        *,
        reply: bool = False,
        router: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.ifname = ifname
        self.scheduler = scheduler
        self._reply = reply
        self._router = router
        self._clock = clock or asyncio.get_running_loop().time
        self._wake = asyncio.Event()
        self._link: _Link | None = None
        self.sent = 0
        # Open the packet socket now, in the caller's network namespace; if the
        # interface is missing it is retried at the first announcement.
        try:
            self._link = _Link(ifname)
        except ArpError as exc:
            log.warning("cannot prepare announcements on %s yet: %s", ifname, exc.reason)

    def became_master(self) -> None:
        self.scheduler.became_master(self._clock())
        self._wake.set()

    def lower_priority_advert(self) -> None:
        self.scheduler.lower_priority_advert(self._clock())
        self._wake.set()

    def left_master(self) -> None:
        self.scheduler.left_master()
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                deadline = self.scheduler.next_deadline()
                self._wake.clear()
                if deadline is None:
                    await self._wake.wait()
                    continue
                delay = deadline - self._clock()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue
                for ip in self.scheduler.poll(self._clock()):
                    self._announce(ip)
        finally:
            self.close()

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def _announce(self, ip: IPAddress) -> None:
        try:
            if self._link is None:
                self._link = _Link(self.ifname)
            self._link.announce(ip, reply=self._reply, router=self._router)
            self.sent += 1
        except ArpError as exc:
            log.warning("announcing %s on %s failed: %s", ip, self.ifname, exc.reason)
            if self._link is not None:  # the interface may have been recreated
                self._link.close()
                self._link = None
