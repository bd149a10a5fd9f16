"""Real TCP through a VIP programmed by mailha: connections survive reconciles.

Topology (tests/kernel/conftest.py ``nat_lab``): a client namespace and a real-server
namespace, each routed through the test's own namespace, which is the director with
the VIP on its loopback and a NAT (masquerading) service to the real server.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import pytest

from mailha.lvs.model import Destination, Service, ServiceKey, ServiceRow, make_table
from mailha.lvs.netlink import IpvsNetlink
from mailha.lvs.planner import EditDest, EditService, plan

pytestmark = pytest.mark.kernel

PORT = 2525


class Ipvsadm(Protocol):
    async def __call__(self, *args: str, stdin: str | None = None) -> str: ...


class Lab(Protocol):
    """The ``nat_lab`` fixture (tests/kernel/conftest.py)."""

    client_ns: str
    server_ns: str
    vip: str
    client_ip: str
    server_ip: str

    def tcp_socket(self, netns: str) -> socket.socket: ...


@dataclass
class Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    local: tuple[str, int]

    async def echo(self, data: bytes) -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        async with asyncio.timeout(20):
            return await self.reader.readexactly(len(data))


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
async def session(nat_lab: Lab, ipvs: IpvsNetlink) -> AsyncIterator[Session]:
    """An echo server behind the VIP, and one client connection through it."""
    key = ServiceKey.for_address(nat_lab.vip, PORT)
    desired = make_table([ServiceRow.of(Service(key, "rr"), [_server(nat_lab)])])
    (await ipvs.apply(plan(desired, await ipvs.observe(), set()))).raise_for_errors()

    listener = nat_lab.tcp_socket(nat_lab.server_ns)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((nat_lab.server_ip, PORT))
    listener.listen()
    server = await asyncio.start_server(_echo, sock=listener)
    client = nat_lab.tcp_socket(nat_lab.client_ns)
    try:
        async with asyncio.timeout(20):
            await asyncio.get_running_loop().sock_connect(client, (nat_lab.vip, PORT))
        reader, writer = await asyncio.open_connection(sock=client)
        yield Session(reader, writer, client.getsockname())
        writer.close()
    finally:
        client.close()
        server.close()
        async with asyncio.timeout(20):
            await server.wait_closed()


def _server(lab: Lab, weight: int = 1) -> Destination:
    return Destination.of(lab.server_ip, PORT, weight=weight)


def _connection_entry(listing: str, session: Session) -> str | None:
    """This client's ``ipvsadm -Lnc`` entry without its expiry column, if any.

    For example ``TCP ESTABLISHED 10.99.1.2:41234 10.99.3.1:2525 10.99.2.2:2525``.
    """
    client = f"{session.local[0]}:{session.local[1]}"
    for line in listing.splitlines():
        fields = line.split()
        if client in fields:
            del fields[1]
            return " ".join(fields)
    return None


async def test_connection_survives_restart_and_in_place_edits(
    nat_lab: Lab, ipvs: IpvsNetlink, ipvsadm: Ipvsadm, session: Session
) -> None:
    key = ServiceKey.for_address(nat_lab.vip, PORT)
    desired = make_table([ServiceRow.of(Service(key, "rr"), [_server(nat_lab)])])
    assert await session.echo(b"before\n") == b"before\n"
    entry = _connection_entry(await ipvsadm("-Lnc"), session)
    client = f"{session.local[0]}:{session.local[1]}"
    assert entry == f"TCP ESTABLISHED {client} {nat_lab.vip}:{PORT} {nat_lab.server_ip}:{PORT}"

    # A restarted mailha adopts the table: nothing to do, nothing dropped.
    async with await IpvsNetlink.open() as restarted:
        ops = plan(desired, await restarted.observe(), set(desired))
        assert ops == []
        assert (await restarted.apply(ops)).ok
    assert await session.echo(b"after restart\n") == b"after restart\n"

    # Scheduler and weight changes are edits in place: the connection stays.
    edited = make_table([ServiceRow.of(Service(key, "wlc"), [_server(nat_lab, 5)])])
    ops = plan(edited, await ipvs.observe(), set(desired))
    assert ops == [EditService(Service(key, "wlc")), EditDest(key, _server(nat_lab, 5))]
    (await ipvs.apply(ops)).raise_for_errors()
    assert await session.echo(b"after edit\n") == b"after edit\n"
    assert _connection_entry(await ipvsadm("-Lnc"), session) == entry


async def test_counters_move_with_traffic_and_zero_resets_them(
    nat_lab: Lab, ipvs: IpvsNetlink, ipvsadm: Ipvsadm, session: Session
) -> None:
    key = ServiceKey.for_address(nat_lab.vip, PORT)
    payload = b"x" * 3000
    assert await session.echo(payload) == payload

    # The kernel folds per-CPU counters into the totals in its estimator kthread,
    # every 2 s: wait (bounded) for them to show up.
    for _ in range(60):
        stats = (await ipvs.observe()).stats(key)
        if stats.stats.inbytes > len(payload):
            break
        await asyncio.sleep(0.5)
    assert stats.stats.conns == 1
    assert stats.stats.inpkts >= 3  # SYN's ACK, data, ...
    assert stats.stats.inbytes > len(payload)
    assert stats.stats.outbytes > len(payload)
    dest = stats.destinations[_server(nat_lab).key]
    assert dest.active_conns == 1
    assert dest.stats.conns == 1

    listed = (await ipvsadm("-Ln", "--stats", "--exact")).splitlines()
    row = next(line.split() for line in listed if line.startswith(f"TCP  {nat_lab.vip}:{PORT}"))
    assert int(row[2]) == stats.stats.conns

    await ipvs.zero(key)
    zeroed = (await ipvs.observe()).stats(key)
    assert (zeroed.stats.conns, zeroed.stats.inbytes) == (0, 0)
    assert zeroed.destinations[_server(nat_lab).key].active_conns == 1  # a gauge, not a counter
    assert await session.echo(b"still there\n") == b"still there\n"
