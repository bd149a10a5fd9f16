"""Two directors with different histories pick the same real server for every flow (mh).

Issue 12: several directors behind a router's ECMP must send a flow to the same real
server, or a flow that an ECMP rehash moves to another director breaks. Two director
namespaces each hold the same IPVS service (``mh`` with mh-port and mh-fallback, three
tunnelled real servers) programmed by mailha's code (the configuration, the desired
table, the planner and the netlink adapter) through DIFFERENT histories:

* director 1 starts with all three real servers up;
* director 2 starts from a table another tool built in its own order, runs with two
  real servers, loses one (weight 0), gets the third by a reload while the second is
  still down (it lands in the middle of the canonical order), then the second recovers.

A client namespace sends raw TCP SYNs (1,000 distinct source address/port pairs, to
each director over its own link, with the router's MAC out of the picture) and the
directors' connection tables (``/proc/net/ip_vs_conn`` of each namespace) say which real
server each flow got: the same on both, for every flow. The real servers are addresses
routed into a dummy interface: IPVS schedules and encapsulates, nothing needs to answer.

The kernel's own behaviour is checked where the design relies on it: a director that
added a failed server at weight 0 instead of at its table weight chooses differently for
many flows (so the ``last_weight`` rule of mailha/lvs/maglev.py is needed; the fingerprint
cannot see it, as documented); a list in another order has another fingerprint and is
put back in order; with ``sloppy_tcp`` (set through mailha's HostRole) a director takes
over flows it only sees mid-way, and sends them where the first director did.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from lab import netns as lab_netns
from mailha.checkers.quorum import DesiredPool, PoolMember
from mailha.config import loads
from mailha.config.model import Config
from mailha.lvs.desired import desired_table, owned_keys
from mailha.lvs.host import HostRole
from mailha.lvs.maglev import fingerprint
from mailha.lvs.model import MH_FALLBACK, MH_PORT, ServiceKey, ServiceRow
from mailha.lvs.netlink import IpvsNetlink
from mailha.lvs.planner import plan
from mailha.net.checksum import internet_checksum

pytestmark = [pytest.mark.kernel, pytest.mark.root]

PREFIX = "mhXm"
CLIENT, D1, D2 = f"{PREFIX}-c", f"{PREFIX}-d1", f"{PREFIX}-d2"
VIP, PORT = "10.12.49.37", 25
KEY = ServiceKey.for_address(VIP, PORT)
# rs3 sorts between rs1 and rs2, so adding it later means moving rs2 (canonical order).
RS1, RS2, RS3 = "10.77.0.10", "10.77.0.30", "10.77.0.20"
MAC = {D1: bytes.fromhex("020000000d01"), D2: bytes.fromhex("020000000d02"),
       "c1": bytes.fromhex("020000000c01"), "c2": bytes.fromhex("020000000c02")}
LINK = {D1: f"{PREFIX}c1", D2: f"{PREFIX}c2"}  # the client's end of each director's link
FLOWS = 1000
SOURCES = 50  # client addresses; FLOWS // SOURCES ports each
T = TypeVar("T")


def config(run_dir: Path, *servers: str) -> Config:
    real_servers = "".join(f"""
[[virtual_server.real_server]]
ip = "{ip}"
[[virtual_server.real_server.TCP_CHECK]]
""" for ip in servers)
    return loads(f"""
[global]
router_id = "director"
[metrics]
enabled = false
[control]
socket = "{run_dir / 'mailha.sock'}"
[[virtual_server]]
ip = "{VIP}"
port = {PORT}
lvs_sched = "mh"
sched_flags = ["mh-fallback", "mh-port"]
lvs_method = "TUN"
{real_servers}""", run_dir / "mailha.toml")


def wish(cfg: Config, down: Iterable[str] = ()) -> dict[ServiceKey, ServiceRow]:
    """The desired table with the checks' verdicts: a down server at weight 0 (mh)."""
    vs = cfg.virtual_servers[0]
    members = tuple(PoolMember(rs, 0 if str(rs.ip) in set(down) else rs.weight)
                    for rs in vs.real_servers)
    pool = DesiredPool(members, None, None, True, sum(m.weight or 0 for m in members))
    return desired_table(cfg, {0: pool}, lambda _: True)


# ---------------------------------------------------------------- running in a namespace


def _in_netns_thread(netns: str, work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await work()

    # A thread of its own, all of it in the namespace: its event loop may await freely.
    with lab_netns.entered(netns):
        return asyncio.run(main())


async def in_netns(netns: str, work: Callable[[], Awaitable[T]]) -> T:
    return await asyncio.to_thread(_in_netns_thread, netns, work)


async def reconcile(netns: str, cfg: Config, down: Iterable[str] = ()) -> int:
    """One pass of mailha's reconcile in ``netns``: observe, plan, apply; ops applied."""
    want = wish(cfg, down)

    async def work() -> int:
        async with await IpvsNetlink.open(request_timeout=20) as nl:
            ops = plan(want, await nl.observe(with_stats=False), owned_keys(cfg))
            (await nl.apply(ops)).raise_for_errors()
            return len(ops)

    return await in_netns(netns, work)


async def kernel_row(netns: str) -> ServiceRow:
    async def work() -> ServiceRow:
        async with await IpvsNetlink.open(request_timeout=20) as nl:
            return (await nl.observe(with_stats=False))[KEY]

    return await in_netns(netns, work)


def listing(row: ServiceRow) -> list[tuple[str, int]]:
    """The destination list as the kernel dumps it (head first), with weights."""
    return [(str(d.address), d.weight) for d in row.destinations.values()]


def ipvsadm(netns: str, *rules: str) -> None:
    """Edit a director's table as another tool (or an admin) would: ``ipvsadm -R``."""
    done = subprocess.run(["ip", "netns", "exec", netns, "ipvsadm", "-R"],
                          input="".join(f"{r}\n" for r in rules), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def flush(netns: str) -> None:
    """The director's table is gone (``ipvsadm -C``), as after a reboot."""
    done = subprocess.run(["ip", "netns", "exec", netns, "ipvsadm", "-C"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- packets and conn tables


def tcp_frame(director: str, source: tuple[str, int], flags: int) -> bytes:
    """An Ethernet frame carrying one TCP segment from ``source`` to the VIP."""
    src = ipaddress.IPv4Address(source[0]).packed
    dst = ipaddress.IPv4Address(VIP).packed
    ack = 1 if flags & 0x10 else 0
    tcp = struct.pack("!HHIIBBHHH", source[1], PORT, 4242, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", internet_checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    client_end = "c1" if director == D1 else "c2"
    return MAC[director] + MAC[client_end] + b"\x08\x00" + ip + tcp


def flows(phase: int, count: int = FLOWS) -> list[tuple[str, int]]:
    """``count`` distinct (address, port) sources, each phase's its own.

    The kernel hashes the client's address plus its port (``ip_vs_mh_hashkey``), so two
    sources with the same sum always share a slot: these never do within a phase (the
    addresses are 256 apart, the ports fewer than 256), each flow samples the table anew.
    """
    return [(f"10.66.{i % SOURCES}.{1 + phase}", 20000 + i // SOURCES) for i in range(count)]


class Client:
    """Raw frames from the client namespace onto each director's link."""

    def __init__(self) -> None:
        self.socks = {}
        for director, link in LINK.items():
            sock = lab_netns.socket_in(CLIENT, socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.bind((link, 0))
            self.socks[director] = sock

    async def send(self, director: str, sources: Iterable[tuple[str, int]], flags: int) -> None:
        sock = self.socks[director]
        for source in sources:
            frame = tcp_frame(director, source, flags)
            while True:
                try:
                    sock.send(frame)
                    break
                except (BlockingIOError, OSError) as exc:
                    if isinstance(exc, BlockingIOError) or exc.errno == 105:  # ENOBUFS
                        await asyncio.sleep(0.001)
                        continue
                    raise

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()


def conn_table(netns: str) -> dict[tuple[str, int], str]:
    """(client address, client port) -> real server, from the director's IPVS conn table."""
    with lab_netns.entered(netns):
        text = Path("/proc/thread-self/net/ip_vs_conn").read_text()
    table = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 7 or fields[0] != "TCP" or len(fields[1]) != 8:
            continue
        client = (str(ipaddress.IPv4Address(int(fields[1], 16))), int(fields[2], 16))
        table[client] = str(ipaddress.IPv4Address(int(fields[5], 16)))
    return table


async def chosen(netns: str, sources: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The real server the director gave each source, once all of them are in its table."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        table = conn_table(netns)
        got = {s: table[s] for s in sources if s in table}
        if len(got) == len(sources):
            return got
        assert loop.time() < deadline, f"{netns}: {len(got)} of {len(sources)} flows scheduled"
        await asyncio.sleep(0.2)


async def both_choose(client: Client, sources: list[tuple[str, int]]) -> tuple[
        dict[tuple[str, int], str], dict[tuple[str, int], str]]:
    for director in (D1, D2):
        await client.send(director, sources, flags=0x02)  # SYN
    return await chosen(D1, sources), await chosen(D2, sources)


# ---------------------------------------------------------------- the lab


@dataclass
class Lab:
    client: Client
    run_dir: Path


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    await lab_netns.cleanup_stale(PREFIX)
    await lab_netns.add_netns(CLIENT, D1, D2)
    try:
        for director, number in ((D1, 1), (D2, 2)):
            outside, inside = LINK[director], f"{PREFIX}d{number}"
            peer = f"{inside} address {MAC[director].hex(':')} netns {director}"
            await lab_netns.ip_batch([
                f"link add {outside} address {MAC[f'c{number}'].hex(':')} type veth"
                f" peer name {peer}",
                f"link set {outside} up",
            ], netns=CLIENT)
            await lab_netns.ip_batch([
                "link set lo up",
                f"addr add {VIP}/32 dev lo",
                f"link set {inside} up",
                f"addr add 10.66.255.{number}/16 dev {inside}",
                f"link add {PREFIX}rs type dummy",  # where the tunnelled packets go
                f"link set {PREFIX}rs up",
                f"addr add 10.77.0.1/24 dev {PREFIX}rs",
            ], netns=director)
            for key in ("net.ipv4.conf.all.rp_filter", f"net.ipv4.conf.{inside}.rp_filter"):
                lab_netns.sysctl(director, key, 0)
        run_dir = tmp_path / "run"
        yield Lab(Client(), run_dir)
    finally:
        await lab_netns.delete_netns(CLIENT, D1, D2)


# ---------------------------------------------------------------- the test


def agreement(a: dict[tuple[str, int], str], b: dict[tuple[str, int], str]) -> int:
    return sum(a[s] == b[s] for s in a)


async def test_two_directors_with_different_histories_choose_the_same_real_server(
    lab: Lab,
) -> None:
    three = config(lab.run_dir / "d1", RS1, RS2, RS3)
    two, three_d2 = config(lab.run_dir / "d2", RS1, RS2), config(lab.run_dir / "d2", RS1, RS2, RS3)
    mh = "-A -t 10.12.49.37:25 -s mh -b mh-fallback,mh-port"

    # Director 1: all three up from the start.
    await reconcile(D1, three)
    # Director 2: a table another tool built (rs2 added first: listed after rs1) ...
    ipvsadm(D2, mh, f"-a -t {VIP}:{PORT} -r {RS2} -i -w 1", f"-a -t {VIP}:{PORT} -r {RS1} -i -w 1")
    assert listing(await kernel_row(D2)) == [(RS1, 1), (RS2, 1)]
    await reconcile(D2, two)  # ... adopted and put in canonical order,
    assert listing(await kernel_row(D2)) == [(RS2, 1), (RS1, 1)]
    await reconcile(D2, two, down=[RS2])  # rs2 fails: quiesced in place,
    await reconcile(D2, three_d2, down=[RS2])  # rs3 arrives by a reload while rs2 is down,
    assert listing(await kernel_row(D2)) == [(RS2, 0), (RS3, 1), (RS1, 1)]
    await reconcile(D2, three_d2)  # and rs2 recovers.

    row1, row2 = await kernel_row(D1), await kernel_row(D2)
    assert listing(row1) == listing(row2) == [(RS2, 1), (RS3, 1), (RS1, 1)]
    assert row1.service.sched_flags == row2.service.sched_flags == MH_FALLBACK | MH_PORT
    assert fingerprint(row1) == fingerprint(row2)
    assert await reconcile(D1, three) == 0 and await reconcile(D2, three_d2) == 0

    # 1,000 flows through each director: the same real server for every one.
    one, other = await both_choose(lab.client, flows(0))
    assert agreement(one, other) == FLOWS
    spread = {rs: list(one.values()).count(rs) for rs in (RS1, RS2, RS3)}
    print(f"\nall up: {FLOWS} flows agree; per real server {spread}")
    assert all(n > FLOWS // 6 for n in spread.values()), spread

    # Mid-way takeover: a flow that started on director 2 continues on director 1 (an ECMP
    # rehash). Without sloppy_tcp director 1 ignores its packets; with it (mailha's
    # HostRole, on by default for mh), it sends them where director 2 did.
    configs = {D1: three, D2: three_d2}
    roles = {d: HostRole(cfg, cast(Any, None)) for d, cfg in configs.items()}
    assert sloppy(D1) == sloppy(D2) == "0"
    midway = flows(1, 200)
    await lab.client.send(D2, midway, flags=0x02)
    started = await chosen(D2, midway)
    await lab.client.send(D1, midway, flags=0x10)  # ACK only: no connection entry ...
    sentinel = flows(2, 1)
    await lab.client.send(D1, sentinel, flags=0x02)
    await chosen(D1, sentinel)  # ... the SYN sent after them is scheduled, they are not
    assert not set(conn_table(D1)) & set(midway)
    for director, role in roles.items():
        with lab_netns.entered(director):
            role.set_takeover(configs[director])
    assert sloppy(D1) == sloppy(D2) == "1"
    await lab.client.send(D1, midway, flags=0x10)
    assert await chosen(D1, midway) == started
    print(f"mid-way takeover with sloppy_tcp: {len(midway)} flows continue on the same server")

    # rs2 fails. Director 1 quiesces it in place; director 2 restarts meanwhile (its
    # table is gone) and adds it while down, at its table weight and then weight 0.
    await reconcile(D1, three, down=[RS2])
    flush(D2)
    await reconcile(D2, three_d2, down=[RS2])
    row1, row2 = await kernel_row(D1), await kernel_row(D2)
    assert listing(row1) == listing(row2) == [(RS2, 0), (RS3, 1), (RS1, 1)]
    assert fingerprint(row1) == fingerprint(row2)
    one, other = await both_choose(lab.client, flows(3))
    assert agreement(one, other) == FLOWS
    assert RS2 not in set(one.values()) | set(other.values())  # mh-fallback: elsewhere
    print(f"rs2 down, different histories: {FLOWS} flows agree")

    # The kernel's side of that rule: had director 2 added rs2 at weight 0 (last_weight 0:
    # no share of the table), the dump -- and so the fingerprint -- would be the same,
    # but some flows would go elsewhere.
    flush(D2)
    ipvsadm(D2, mh, *(f"-a -t {VIP}:{PORT} -r {rs} -i -w {0 if rs == RS2 else 1}"
                      for rs in (RS1, RS3, RS2)))
    row2 = await kernel_row(D2)
    assert listing(row2) == listing(row1) and fingerprint(row2) == fingerprint(row1)
    one, other = await both_choose(lab.client, flows(4))
    differ = FLOWS - agreement(one, other)
    print(f"rs2 added at weight 0 instead: {differ} of {FLOWS} flows differ")
    assert differ > 0

    # And of the order rule: the same destinations and weights in another order make
    # another table; the fingerprints say so, and mailha puts the order back.
    await reconcile(D1, three)
    flush(D2)
    await reconcile(D2, three_d2)
    ipvsadm(D2, f"-d -t {VIP}:{PORT} -r {RS1}", f"-a -t {VIP}:{PORT} -r {RS1} -i -w 1")
    row1, row2 = await kernel_row(D1), await kernel_row(D2)
    assert listing(row2) == [(RS1, 1), (RS2, 1), (RS3, 1)]
    assert fingerprint(row1) != fingerprint(row2)
    # The order decides only the slots two servers contend for while the table fills (one
    # of 4093 in this case): few flows, if any, of a sample go elsewhere.
    one, other = await both_choose(lab.client, flows(5))
    print(f"another order: {FLOWS - agreement(one, other)} of {FLOWS} flows differ")
    # rs1 cannot go back to the end of the list: rs3, then rs2, are moved above it.
    assert await reconcile(D2, three_d2) == 4
    row2 = await kernel_row(D2)
    assert listing(row2) == listing(row1) and fingerprint(row2) == fingerprint(row1)
    one, other = await both_choose(lab.client, flows(6))
    assert agreement(one, other) == FLOWS

    # sloppy_tcp goes back to the admin's value when mailha stops.
    for director, role in roles.items():
        await in_netns(director, partial(role.stop, release=False))
    assert sloppy(D1) == sloppy(D2) == "0"


def sloppy(netns: str) -> str:
    with lab_netns.entered(netns):
        return Path("/proc/sys/net/ipv4/vs/sloppy_tcp").read_text().strip()
