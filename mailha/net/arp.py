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

How many, and when (keepalived's garp_master_delay/repeat/refresh and
garp_lower_prio_*), is decided by the VRRP state machine (:mod:`mailha.vrrp.machine`),
which returns ``SendGratuitous`` actions at the right times; the instance driver spaces
the messages of one burst by ``vrrp_garp_interval``. This module only builds and sends.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

from mailha.errors import MailhaError
from mailha.ip import IPAddress
from mailha.net.checksum import internet_checksum, pseudo_header

__all__ = [
    "Announcer",
    "ArpError",
    "garp_frame",
    "interface_mac",
    "send_garp",
    "send_unsolicited_na",
    "unsolicited_na_frame",
]

log = logging.getLogger(__name__)


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


class ArpError(MailhaError):
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
    checksum = internet_checksum(
        pseudo_header(ip, ALL_NODES, socket.IPPROTO_ICMPV6, len(body)) + body)
    body = body[:2] + struct.pack("!H", checksum) + body[4:]
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(body), socket.IPPROTO_ICMPV6, 255,
        ip.packed, ALL_NODES.packed,
    )
    dst_mac = b"\x33\x33" + ALL_NODES.packed[-4:]
    return dst_mac + mac + struct.pack("!H", ETH_P_IPV6) + header + body


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
        try:
            self.mac = _bound_mac(self._sock, ifname)
        except ArpError:
            self._sock.close()
            raise

    def announce(self, ip: IPAddress, *, reply: bool, router: bool) -> None:
        if isinstance(ip, IPv4Address):
            frame = garp_frame(self.mac, ip, reply=reply)
        else:
            frame = unsolicited_na_frame(self.mac, ip, router=router)
        _send(self._sock, self.ifname, frame)

    def close(self) -> None:
        self._sock.close()


class Announcer:
    """One burst of announcements (a new master's GARPs/NAs, repeated): a packet socket
    per interface, opened at its first use and closed with the burst, instead of one
    socket per message. A context manager."""

    def __init__(self) -> None:
        self._links: dict[str, _Link] = {}

    def announce(self, ifname: str, ip: IPAddress, *, reply: bool = False,
                 router: bool = False) -> None:
        """Send one GARP (IPv4) or unsolicited NA (IPv6) for ``ip``; ArpError if not."""
        link = self._links.get(ifname)
        if link is None:
            link = self._links[ifname] = _Link(ifname)
        link.announce(ip, reply=reply, router=router)

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()

    def __enter__(self) -> Announcer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
