"""Root tests for the network adapters: two namespaces joined by a veth pair.

Every namespace and link is named with this module's prefix ``mhF`` plus a random
suffix, and torn down in ``finally`` blocks.  Code under test runs in the test process:
``_inside(ns)`` switches the calling thread into a namespace (setns) while sockets are
created; a socket stays in the namespace it was created in afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from lab import netns
from mailha.net import arp
from mailha.net.addresses import AddressError, Addresses, owns_address
from mailha.net.arp import (
    Announcer,
    ArpError,
    garp_frame,
    interface_mac,
    send_garp,
    send_unsolicited_na,
    unsolicited_na_frame,
)
from mailha.net.links import LinkState, LinkWatcher
from mailha.net.sysctl import SysctlChanges, SysctlError, conf_key, read_sysctl
from mailha.net.vrrp_socket import VrrpSocket, VrrpSocketError, drops_since, kernel_drops

_inside = netns.entered  # the thread in a namespace while sockets are created


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Pair:
    """Namespaces ``a`` and ``b``; ``if_a`` in ``a`` is cabled to ``if_b`` in ``b``."""

    a: str
    b: str
    if_a: str
    if_b: str
    v4_a: IPv4Address
    v4_b: IPv4Address
    v6_a: IPv6Address
    v6_b: IPv6Address
    net: int  # second octet shared by this pair's IPv4 addresses


@pytest.fixture
def mhf_pair() -> Iterator[Pair]:
    tag = secrets.token_hex(3)
    net = 100 + secrets.randbelow(100)
    pair = Pair(
        a=f"mhFa{tag}", b=f"mhFb{tag}", if_a=f"mhFa{tag}", if_b=f"mhFb{tag}",
        v4_a=IPv4Address(f"10.{net}.0.1"), v4_b=IPv4Address(f"10.{net}.0.2"),
        v6_a=IPv6Address(f"fd00:{net}::1"), v6_b=IPv6Address(f"fd00:{net}::2"), net=net,
    )
    created: list[str] = []
    try:
        for ns in (pair.a, pair.b):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("link", "add", pair.if_a, "netns", pair.a, "type", "veth",
            "peer", "name", pair.if_b, "netns", pair.b)
        for ns, ifname, v4, v6 in ((pair.a, pair.if_a, pair.v4_a, pair.v6_a),
                                   (pair.b, pair.if_b, pair.v4_b, pair.v6_b)):
            # No DAD: link-local and test addresses must be usable at once.
            _ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.accept_dad=0")
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", ifname)
            _ip("-n", ns, "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
            _ip("-n", ns, "link", "set", ifname, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        for ns, ifname in ((pair.a, pair.if_a), (pair.b, pair.if_b)):
            _wait_ipv6_ready(ns, ifname)
        yield pair
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _wait_ipv6_ready(ns: str, ifname: str, limit: float = 5.0) -> None:
    """Until IPv6 has configured the link (link-local present), it ignores NAs."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "dev", ifname, "scope",
                              "link"], capture_output=True, text=True, timeout=10).stdout
        if "fe80::" in out and "tentative" not in out:
            return
        time.sleep(0.01)
    raise AssertionError(f"{ns}/{ifname}: no usable IPv6 link-local after {limit} s")


async def _ifindex(ns: str, ifname: str) -> int:
    with _inside(ns):
        return socket.if_nametoindex(ifname)


@contextlib.asynccontextmanager
async def _vrrp(ns: str, *args: object) -> AsyncIterator[VrrpSocket]:
    with _inside(ns):
        sock = await VrrpSocket.open(*args)  # type: ignore[arg-type]
    try:
        yield sock
    finally:
        sock.close()


# ---------------------------------------------------------------- VRRP socket


@pytest.mark.root
async def test_vrrp_v4_unicast_exchange(mhf_pair: Pair) -> None:
    p = mhf_pair
    async with (
        _vrrp(p.a, socket.AF_INET, p.if_a, None, (p.v4_b,), False) as sa,
        _vrrp(p.b, socket.AF_INET, p.if_b, p.v4_b, (p.v4_a,), False) as sb,
    ):
        assert sa.src == p.v4_a  # the interface's primary address when none is given
        sa.send(b"\x21\xad\x64\x01advert")
        got = await asyncio.wait_for(sb.recv(), 2)
        assert got.payload == b"\x21\xad\x64\x01advert"
        assert (got.src, got.dst, got.ttl) == (p.v4_a, p.v4_b, 255)
        assert got.ifindex == await _ifindex(p.b, p.if_b)
        sb.send(b"reply")
        back = await asyncio.wait_for(sa.recv(), 2)
        assert (back.payload, back.src, back.dst, back.ttl) == (b"reply", p.v4_b, p.v4_a, 255)


@pytest.mark.root
async def test_vrrp_v4_header_matches_keepalived(mhf_pair: Pair) -> None:
    """TTL 255, TOS 0xc0, protocol 112: the IP header keepalived 2.2.7 puts on adverts."""
    p = mhf_pair
    cap = _capture_socket(p.b, p.if_b, 0x0800)
    try:
        async with _vrrp(p.a, 4, p.if_a, None, (p.v4_b,), False) as sa:
            sa.send(b"\x21\xad\xc8\x01\x00\x01\xdb\x1e")
            frame = await _next_frame(cap, lambda f: f[23] == 112)
    finally:
        cap.close()
    ip_header = frame[14:34]
    assert ip_header[1] == 0xC0  # TOS
    assert ip_header[8] == 255  # TTL
    assert (ip_header[12:16], ip_header[16:20]) == (p.v4_a.packed, p.v4_b.packed)
    assert frame[34:42] == b"\x21\xad\xc8\x01\x00\x01\xdb\x1e"


@pytest.mark.root
@pytest.mark.slow
async def test_vrrp_receives_keepalived_adverts(mhf_pair: Pair, tmp_path: Path) -> None:
    """Interop: keepalived 2.2.7 in one namespace, our socket in the other."""
    p = mhf_pair
    if shutil.which("keepalived") is None:
        pytest.skip("keepalived is not installed")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(
        "global_defs {\n  vrrp_garp_master_delay 0\n}\n"
        "vrrp_instance VI_1 {\n"
        f"  state MASTER\n  interface {p.if_a}\n  virtual_router_id 173\n"
        "  priority 200\n  advert_int 1\n"
        f"  unicast_src_ip {p.v4_a}\n  unicast_peer {{\n    {p.v4_b}\n  }}\n"
        f"  virtual_ipaddress {{\n    10.{p.net}.0.37/24\n  }}\n}}\n"
    )
    async with _vrrp(p.b, 4, p.if_b, p.v4_b, (p.v4_a,), False) as sb:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", p.a, "keepalived", "-n", "-l", "-D", "-f", str(conf),
            "-p", str(tmp_path / "k.pid"), "-r", str(tmp_path / "v.pid"),
            "-c", str(tmp_path / "c.pid"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            got = await asyncio.wait_for(sb.recv(), 8)  # master after ~3 s as backup
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
    assert (got.src, got.dst, got.ttl) == (p.v4_a, p.v4_b, 255)
    assert got.ifindex == await _ifindex(p.b, p.if_b)
    # VRRPv2 advertisement for VRID 173, priority 200, one address, 1 s interval.
    assert got.payload[:4] == b"\x21\xad\xc8\x01"
    assert got.payload[5] == 1
    assert got.payload[8:12] == IPv4Address(f"10.{p.net}.0.37").packed


@pytest.mark.root
async def test_vrrp_v4_multicast_exchange_without_loopback(mhf_pair: Pair) -> None:
    p = mhf_pair
    async with (
        _vrrp(p.a, 4, p.if_a, None, (), True) as sa,
        _vrrp(p.b, 4, p.if_b, None, (), True) as sb,
    ):
        sa.send(b"hello group")
        got = await asyncio.wait_for(sb.recv(), 2)
        assert (got.payload, got.src, got.dst, got.ttl) == (
            b"hello group", p.v4_a, IPv4Address("224.0.0.18"), 255)
        # Multicast loop is off: the sender does not read its own advert back.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sa.recv(), 0.3)


@pytest.mark.root
async def test_vrrp_v6_multicast_from_link_local(mhf_pair: Pair) -> None:
    p = mhf_pair
    async with (
        _vrrp(p.a, socket.AF_INET6, p.if_a, None, (), True) as sa,
        _vrrp(p.b, socket.AF_INET6, p.if_b, None, (), True) as sb,
    ):
        assert isinstance(sa.src, IPv6Address) and sa.src.is_link_local
        sa.send(b"v3 advert")
        got = await asyncio.wait_for(sb.recv(), 2)
        assert got.payload == b"v3 advert"
        assert (got.src, got.dst, got.ttl) == (sa.src, IPv6Address("ff02::12"), 255)
        assert got.ifindex == await _ifindex(p.b, p.if_b)


@pytest.mark.root
async def test_vrrp_v6_unicast_exchange(mhf_pair: Pair) -> None:
    p = mhf_pair
    async with (
        _vrrp(p.a, 6, p.if_a, p.v6_a, (p.v6_b,), False) as sa,
        _vrrp(p.b, 6, p.if_b, p.v6_b, (p.v6_a,), False) as sb,
    ):
        sa.send(b"unicast v6")
        got = await asyncio.wait_for(sb.recv(), 2)
        assert (got.payload, got.src, got.dst, got.ttl) == (b"unicast v6", p.v6_a, p.v6_b, 255)


@pytest.mark.root
async def test_vrrp_recv_hands_up_garbage(mhf_pair: Pair) -> None:
    p = mhf_pair
    async with (
        _vrrp(p.a, 4, p.if_a, None, (p.v4_b,), False) as sa,
        _vrrp(p.b, 4, p.if_b, None, (p.v4_a,), False) as sb,
    ):
        for junk in (b"", b"\x00", b"\xff" * 3):
            sa.send(junk)
            got = await asyncio.wait_for(sb.recv(), 2)
            assert got.payload == junk
            assert got.ttl == 255


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6])
async def test_vrrp_peer_filter_keeps_non_peers_out_of_userspace(
    mhf_pair: Pair, family: int
) -> None:
    """The kernel filter: a non-peer's packets never reach recv(), the peer's do.

    The non-peer (a second address on the same link) sends first; without the filter
    recv() would return its packet.  IPv6 included: its filter reads the source through
    the network header, which a raw IPv6 socket's payload-only view hides.
    """
    p = mhf_pair
    if family == 4:
        peer, other, me = p.v4_a, IPv4Address(f"10.{p.net}.0.3"), p.v4_b
    else:
        peer, other, me = p.v6_a, IPv6Address(f"fd00:{p.net}::3"), p.v6_b
    _ip("-n", p.a, "addr", "add", f"{other}/{24 if family == 4 else 64}", "dev", p.if_a,
        *(["nodad"] if family == 6 else []))
    async with (
        _vrrp(p.a, family, p.if_a, peer, (me,), False) as from_peer,
        _vrrp(p.a, family, p.if_a, other, (me,), False) as from_other,
        _vrrp(p.b, family, p.if_b, me, (peer,), False) as sb,
    ):
        assert sb.filtered and from_peer.filtered
        for i in range(50):
            from_other.send(b"junk %d" % i)
        from_peer.send(b"advert")
        got = await asyncio.wait_for(sb.recv(), 2)
        assert (got.payload, got.src) == (b"advert", peer)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sb.recv(), 0.3)


@pytest.mark.root
async def test_vrrp_multicast_socket_has_no_filter(mhf_pair: Pair) -> None:
    p = mhf_pair
    async with _vrrp(p.b, 4, p.if_b, None, (), True) as sb:
        assert not sb.filtered  # any router on the segment may advertise


@pytest.mark.root
async def test_vrrp_kernel_drops_are_reported(mhf_pair: Pair) -> None:
    """A full receive queue drops packets; SO_RXQ_OVFL lets recv() say how many."""
    p = mhf_pair
    async with (
        _vrrp(p.a, 4, p.if_a, None, (p.v4_b,), False) as sa,
        _vrrp(p.b, 4, p.if_b, None, (p.v4_a,), False) as sb,
    ):
        assert sb.receive_buffer >= 2 * (1 << 20)  # RECEIVE_BUFFER, doubled by the kernel
        sent = 0
        for i in range(20_000):  # far more than ~2 MiB of queue holds
            sa.send(b"\x21\xad" + i.to_bytes(4, "big") * 30)
            sent += 1
        received = dropped = 0
        with contextlib.suppress(TimeoutError):
            while True:
                got = await asyncio.wait_for(sb.recv(), 0.3)
                received += 1
                dropped += got.dropped
        # Drops after the last queued packet are reported with the next one.
        sa.send(b"last")
        got = await asyncio.wait_for(sb.recv(), 2)
        received += 1
        dropped += got.dropped
        sent += 1
        assert dropped > 0 and received > 1000
        assert received + dropped == sent


def test_drop_counter_arithmetic() -> None:
    assert drops_since(10, 15) == 5
    assert drops_since(0xFFFFFFFE, 3) == 5  # the kernel's counter is 32 bits and wraps
    assert kernel_drops([]) is None
    assert kernel_drops([(socket.SOL_SOCKET, 40, struct.pack("=I", 7))]) == 7


@pytest.mark.root
async def test_vrrp_close_wakes_pending_recv(mhf_pair: Pair) -> None:
    p = mhf_pair
    async with _vrrp(p.a, 4, p.if_a, None, (), True) as sa:
        pending = asyncio.create_task(sa.recv())
        await asyncio.sleep(0.05)
        sa.close()
        with pytest.raises(VrrpSocketError, match="closed"):
            await asyncio.wait_for(pending, 2)


@pytest.mark.root
async def test_vrrp_open_errors_are_precise(mhf_pair: Pair) -> None:
    p = mhf_pair
    with _inside(p.a):
        with pytest.raises(VrrpSocketError, match="not an address of this host"):
            await VrrpSocket.open(4, p.if_a, IPv4Address("10.1.2.3"), (p.v4_b,), False)
        with pytest.raises(VrrpSocketError, match="no such interface: mhFnope"):
            await VrrpSocket.open(4, "mhFnope", None, (p.v4_b,), False)
        with pytest.raises(VrrpSocketError, match="needs no unicast peers"):
            await VrrpSocket.open(4, p.if_a, None, (p.v4_b,), True)
        with pytest.raises(VrrpSocketError, match="not of the socket's address family"):
            await VrrpSocket.open(4, p.if_a, None, (p.v6_b,), False)


# ---------------------------------------------------------------- addresses


@pytest.mark.root
async def test_vip_add_remove_idempotent_with_label(mhf_pair: Pair) -> None:
    p = mhf_pair
    vip = IPv4Address(f"10.{p.net}.0.37")
    with _inside(p.a):
        addrs = await Addresses().open()
    try:
        assert await addrs.add(p.if_a, vip, 24, label=f"{p.if_a}:v") is True
        assert await addrs.add(p.if_a, vip, 24, label=f"{p.if_a}:v") is False
        held = [a for a in await addrs.list(p.if_a, 4) if a.address == vip]
        assert len(held) == 1
        assert (held[0].prefixlen, held[0].label, held[0].scope) == (24, f"{p.if_a}:v", "global")
        assert held[0].secondary  # same subnet as the node's own address
        assert await addrs.primary(p.if_a, 4) == p.v4_a
        assert await addrs.owns(vip)
        assert await addrs.remove(p.if_a, vip) is True
        assert await addrs.remove(p.if_a, vip) is False
        assert await addrs.remove(p.if_a, vip, 24) is False
        assert not await addrs.owns(vip)
        with pytest.raises(AddressError, match="must be"):
            await addrs.add(p.if_a, vip, 24, label="eth0:x")
        with pytest.raises(AddressError, match="no such interface: mhFnope"):
            await addrs.add("mhFnope", vip)
    finally:
        addrs.close()
    # The module-level helper answers for the namespace it is called in.
    with _inside(p.a):
        assert await owns_address(p.v4_a)
    assert not await owns_address(p.v4_a)


@pytest.mark.root
async def test_ipv6_vip_is_usable_at_once(mhf_pair: Pair) -> None:
    p = mhf_pair
    vip = IPv6Address(f"fd00:{p.net}::37")
    with _inside(p.a):
        addrs = await Addresses().open()
    try:
        # Re-enable DAD on the interface: the VIP must still skip it (IFA_F_NODAD).
        with _inside(p.a):
            SysctlChanges().set(conf_key(6, p.if_a, "accept_dad"), 1, "test")
        assert await addrs.add(p.if_a, vip, 64)
        (held,) = [a for a in await addrs.list(p.if_a, 6) if a.address == vip]
        assert held.usable
        primary = await addrs.primary(p.if_a, 6)
        assert primary is not None and primary.is_link_local
        assert await addrs.remove(p.if_a, vip)
    finally:
        addrs.close()


@pytest.mark.root
async def test_loopback_vip_for_dr_real_server(mhf_pair: Pair) -> None:
    p = mhf_pair
    vip = IPv4Address(f"10.{p.net}.0.37")
    with _inside(p.b):
        async with Addresses() as addrs:
            assert await addrs.add_loopback_vip(vip)
            assert not await addrs.add_loopback_vip(vip)
            (held,) = [a for a in await addrs.list("lo", 4) if a.address == vip]
            assert (held.prefixlen, held.scope) == (32, "host")
            assert await addrs.remove_loopback_vip(vip)
            assert not await addrs.remove_loopback_vip(vip)


# ---------------------------------------------------------------- GARP / unsolicited NA


def _capture_socket(ns: str, ifname: str, ethertype: int) -> socket.socket:
    with _inside(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        s.bind((ifname, 0))
    s.setblocking(False)
    return s


async def _next_frame(
    s: socket.socket, want: Callable[[bytes], bool], limit: float = 2.0
) -> bytes:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(limit):
        while True:
            frame = await loop.sock_recv(s, 2048)
            if want(frame):
                return frame


def _neigh_mac(ns: str, ifname: str, ip: object) -> str:
    out = subprocess.run(["ip", "-n", ns, "neigh", "show", str(ip), "dev", ifname],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    fields = out.split()
    return fields[fields.index("lladdr") + 1] if "lladdr" in fields else ""


async def _poll(cond: Callable[[], bool], limit: float = 2.0) -> bool:
    """Poll kernel state (the neighbour table has no event we could await here)."""
    async with asyncio.timeout(limit):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return True


@pytest.mark.root
@pytest.mark.parametrize("reply", [False, True])
async def test_gratuitous_arp_fields_and_effect(mhf_pair: Pair, reply: bool) -> None:
    p = mhf_pair
    vip = IPv4Address(f"10.{p.net}.0.37")
    with _inside(p.a):
        mac_a = interface_mac(p.if_a)
    # B has a stale entry for the VIP pointing at a MAC that is gone (the old master).
    _ip("-n", p.b, "neigh", "replace", str(vip), "lladdr", "02:00:00:00:00:99",
        "dev", p.if_b, "nud", "stale")
    cap = _capture_socket(p.b, p.if_b, 0x0806)
    try:
        with _inside(p.a):
            send_garp(p.if_a, vip, reply=reply)
        frame = await _next_frame(cap, lambda f: f[28:32] == vip.packed)
    finally:
        cap.close()
    dst, src, ethertype = frame[0:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    hrd, pro, hln, pln, op, sha, spa, tha, tpa = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
    assert (dst, src, ethertype) == (b"\xff" * 6, mac_a, 0x0806)
    assert (hrd, pro, hln, pln) == (1, 0x0800, 6, 4)
    assert op == (2 if reply else 1)
    assert (sha, spa, tpa) == (mac_a, vip.packed, vip.packed)
    assert tha == (mac_a if reply else b"\xff" * 6)
    assert frame[:42] == garp_frame(mac_a, vip, reply=reply)
    want = mac_a.hex(":")
    assert await _poll(lambda: _neigh_mac(p.b, p.if_b, vip) == want)


@pytest.mark.root
async def test_an_announcer_sends_a_burst_over_one_socket_per_interface(
    mhf_pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new master's burst (3 rounds x 2 VIPs) arrives whole, from one packet socket."""
    p = mhf_pair
    vips = [IPv4Address(f"10.{p.net}.0.37"), IPv4Address(f"10.{p.net}.0.38")]
    opened: list[str] = []
    real_open = arp._open_packet_socket

    def counting(ifname: str) -> socket.socket:
        opened.append(ifname)
        return real_open(ifname)

    monkeypatch.setattr(arp, "_open_packet_socket", counting)
    cap = _capture_socket(p.b, p.if_b, 0x0806)
    try:
        with _inside(p.a), Announcer() as announcer:
            for _ in range(3):
                for vip in vips:
                    announcer.announce(p.if_a, vip)
        seen = [await _next_frame(cap, lambda f: f[28:32] in {v.packed for v in vips})
                for _ in range(6)]
    finally:
        cap.close()
    assert opened == [p.if_a]
    assert sorted(f[28:32] for f in seen) == sorted([v.packed for v in vips] * 3)
    with pytest.raises(ArpError, match="no-such-if"), Announcer() as announcer:
        announcer.announce("no-such-if", vips[0])


@pytest.mark.root
async def test_unsolicited_na_fields_and_effect(mhf_pair: Pair) -> None:
    p = mhf_pair
    vip = IPv6Address(f"fd00:{p.net}::37")
    with _inside(p.a):
        mac_a = interface_mac(p.if_a)
    _ip("-n", p.b, "neigh", "replace", str(vip), "lladdr", "02:00:00:00:00:99",
        "dev", p.if_b, "nud", "stale")
    cap = _capture_socket(p.b, p.if_b, 0x86DD)
    try:
        with _inside(p.a):
            send_unsolicited_na(p.if_a, vip)
        frame = await _next_frame(cap, lambda f: f[20] == 58 and f[54] == 136)
    finally:
        cap.close()
    assert frame[0:6] == bytes.fromhex("333300000001")
    assert frame[6:12] == mac_a
    ver_tc_fl, plen, nxt, hlim = struct.unpack("!IHBB", frame[14:22])
    assert (ver_tc_fl >> 28, nxt, hlim, plen) == (6, 58, 255, 32)
    assert IPv6Address(frame[22:38]) == vip
    assert IPv6Address(frame[38:54]) == IPv6Address("ff02::1")
    icmp = frame[54:54 + plen]
    typ, code, _csum, flags = struct.unpack("!BBHB", icmp[:5])
    assert (typ, code) == (136, 0)
    assert flags == 0x20  # Override only, as keepalived sends without forwarding
    assert IPv6Address(icmp[8:24]) == vip
    assert icmp[24:32] == b"\x02\x01" + mac_a
    assert frame[:54 + plen] == unsolicited_na_frame(mac_a, vip)
    # The kernel accepted it (so the checksum is right): the stale entry now points at A.
    want = mac_a.hex(":")
    assert await _poll(lambda: _neigh_mac(p.b, p.if_b, vip) == want)


# ---------------------------------------------------------------- link watch


@pytest.mark.root
async def test_link_watch_sees_peer_down_and_admin_down(mhf_pair: Pair) -> None:
    p = mhf_pair
    with _inside(p.a):
        watcher = LinkWatcher({p.if_a})
        await watcher.__aenter__()
    loop = asyncio.get_running_loop()
    changes: asyncio.Queue[tuple[float, LinkState]] = asyncio.Queue()

    async def pump() -> None:
        async for state in watcher.changes():
            changes.put_nowait((loop.time(), state))

    task = asyncio.create_task(pump())
    try:
        assert set(watcher.states) == {p.if_a}
        assert watcher.states[p.if_a].is_up

        async def step(*cmd: str) -> tuple[float, LinkState]:
            t0 = loop.time()
            proc = await asyncio.create_subprocess_exec("ip", *cmd)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            seen, state = await asyncio.wait_for(changes.get(), 2)
            print(f"{' '.join(cmd)}: noticed {1000 * (seen - t0):.1f} ms after start of ip")
            return seen, state

        # Peer down: our veth stays admin-up but loses carrier, so it is down.  Carrier
        # changes reach netlink through the kernel's linkwatch, which batches them (up to
        # about 1 s); admin changes of the watched link itself arrive within milliseconds.
        _, s = await step("-n", p.b, "link", "set", p.if_b, "down")
        assert (s.ifname, s.is_up, s.admin_up) == (p.if_a, False, True)
        assert s.operstate in ("DOWN", "LOWERLAYERDOWN")  # no carrier
        _, s = await step("-n", p.b, "link", "set", p.if_b, "up")
        assert (s.is_up, s.admin_up) == (True, True)
        _, s = await step("-n", p.a, "link", "set", p.if_a, "down")
        assert (s.is_up, s.admin_up) == (False, False)
        _, s = await step("-n", p.a, "link", "set", p.if_a, "up")
        assert s.is_up
        # Deletion: the kernel first takes the link down, then removes it; both reported.
        _, s = await step("-n", p.a, "link", "del", p.if_a)
        assert (s.is_up, s.exists) == (False, True)
        _, s = await asyncio.wait_for(changes.get(), 2)
        assert (s.ifname, s.is_up, s.exists) == (p.if_a, False, False)
        assert p.if_a not in watcher.states
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        watcher.close()


# ---------------------------------------------------------------- sysctl


@pytest.mark.root
def test_sysctl_set_and_restore_in_namespace(
    mhf_pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    p = mhf_pair
    caplog.set_level(logging.INFO, logger="mailha.net.sysctl")
    key = conf_key(4, p.if_a, "arp_ignore")
    with _inside(p.a):
        changes = SysctlChanges()
        before = read_sysctl(key)
        assert changes.set(key, 1, "DR real server: do not answer ARP for the VIP on lo")
        assert not changes.set(key, 1, "again")
        assert changes.set("net.ipv4.ip_nonlocal_bind", 1, "Postfix listens on the VIP")
        assert read_sysctl(key) == "1"
        assert changes.changed == {key: before, "net.ipv4.ip_nonlocal_bind": "0"}
        with pytest.raises(SysctlError, match="kernel refused"):
            changes.set(key, "banana", "bad value")
        with pytest.raises(SysctlError, match="no such sysctl"):
            read_sysctl(conf_key(4, "mhFnope", "arp_ignore"))
        assert changes.restore() == []
        assert read_sysctl(key) == before
        assert read_sysctl("net.ipv4.ip_nonlocal_bind") == "0"
    assert (f"set {key} {before} -> 1 (DR real server: do not answer ARP for the VIP on lo)"
            in caplog.text)
    assert f"restored {key} 1 -> {before}" in caplog.text


# ---------------------------------------------------------------- pure helpers (no root)


def test_frames_reject_non_ethernet_addresses() -> None:
    from mailha.net.arp import ArpError

    with pytest.raises(ArpError, match="6 bytes"):
        garp_frame(b"\x01\x02", IPv4Address("10.0.0.1"))


def test_sysctl_names_map_to_proc_paths() -> None:
    from mailha.net.sysctl import sysctl_path

    assert conf_key(4, "eth0.100", "arp_ignore") == "net.ipv4.conf.eth0/100.arp_ignore"
    assert str(sysctl_path(conf_key(4, "eth0.100", "arp_ignore"))) == (
        "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore")
    assert str(sysctl_path("net.ipv4.vs.expire_nodest_conn")) == (
        "/proc/sys/net/ipv4/vs/expire_nodest_conn")
    for bad in ("", "net..ipv4", "net.ipv4.conf...x", "net.ipv4.."):
        with pytest.raises(SysctlError, match="malformed name"):
            sysctl_path(bad)
    with pytest.raises(ValueError, match="family"):
        conf_key(5, "eth0", "arp_ignore")
