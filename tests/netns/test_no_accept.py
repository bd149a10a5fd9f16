"""keepalived's no_accept: a non-owner master holds the VIP but takes no traffic on it.

Each node runs a TCP listener on all its addresses. With ``accept = false`` the master
holds the VIP (a backup could not take over otherwise) while connections to the VIP are
dropped by mailha's nftables table, and its own address still answers; the table follows
the VIP on failover, is gone after a clean stop, and a table a SIGKILLed run left behind
is removed when mailha starts again. With the default (accept) the VIP answers and no
table exists.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator

import pytest

from lab import netns
from lab.cluster import ClusterOptions, MailhaCluster
from lab.topology import SeedTopology

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables (scripts/setup)"),
]

PORT = 2525


@pytest.fixture
async def topo() -> AsyncIterator[SeedTopology]:
    async with SeedTopology("mhNa") as t:
        servers = []
        for node in t.servers:
            with netns.entered(t.netns(node)):
                sock = socket.create_server(("0.0.0.0", PORT))
            servers.append(await asyncio.start_server(_hello, sock=sock))
        try:
            yield t
        finally:
            for server in servers:
                server.close()


async def _hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hello\n")
    await writer.drain()
    writer.close()


async def answers(topo: SeedTopology, address: object) -> bool:
    """Whether ``address``:PORT answers the client within a second (a drop times out)."""
    with netns.entered(topo.netns("cl")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(1.0):
            await asyncio.get_running_loop().sock_connect(sock, (str(address), PORT))
            return True
    except (TimeoutError, OSError):
        return False
    finally:
        sock.close()


async def blocked(topo: SeedTopology, node: str) -> set[str] | None:
    """The VIPs in the node's no_accept table, None when there is no table."""
    result = await netns.run(["nft", "list", "set", "inet", "mailha", "vips4"],
                             netns=topo.netns(node), check=False)
    if not result.ok:
        return None
    text = result.stdout
    if "elements = {" not in text:
        return set()
    inner = text.split("elements = {", 1)[1].split("}", 1)[0]
    return {e.strip() for e in inner.split(",") if e.strip()}


async def holds_vip(cluster: MailhaCluster, node: str, time_limit: float = 30.0) -> None:
    """Wait until ``node`` holds the VIP (a SIGKILLed node may still hold it too)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while node not in await cluster.masters():
        assert loop.time() < deadline, f"{node} does not hold the VIP after {time_limit:g}s"
        await asyncio.sleep(0.1)


async def test_no_accept_master_holds_the_vip_but_drops_its_traffic(topo: SeedTopology) -> None:
    vip = str(topo.vip)
    opts = ClusterOptions(extra_instance={"accept": False})
    async with MailhaCluster(topo, opts) as cluster:
        await cluster.wait_master("n1")
        assert await blocked(topo, "n1") == {vip}
        assert await blocked(topo, "n2") is None  # the backup holds nothing to block
        assert not await answers(topo, vip)
        assert await answers(topo, topo.address("n1"))  # only the VIP is affected

        await cluster.stop("n1")  # clean stop: the table goes with the VIP
        await cluster.wait_master("n2")
        assert await blocked(topo, "n1") is None
        assert await blocked(topo, "n2") == {vip}
        assert not await answers(topo, vip)

        cluster.kill("n2")  # a crash leaves its table (and VIP) behind ...
        await cluster.start("n1")
        await holds_vip(cluster, "n1")
        assert await blocked(topo, "n2") == {vip}
        await cluster.start("n2")  # ... which the next start removes
        await cluster.wait_master("n1")
        assert await blocked(topo, "n2") is None
        assert await blocked(topo, "n1") == {vip}
    for node in topo.servers:
        assert "Traceback" not in cluster.log(node)
        assert await blocked(topo, node) is None


async def test_accept_mode_default_answers_on_the_vip_without_a_table(
    topo: SeedTopology,
) -> None:
    async with MailhaCluster(topo) as cluster:
        await cluster.wait_master("n1")
        assert await answers(topo, topo.vip)
        assert await blocked(topo, "n1") is None
