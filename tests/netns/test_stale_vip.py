"""A VIP left behind by a crashed master is removed when mailha starts (issue 9, defect 2).

Before the fix a master killed with SIGKILL kept the VIP on its interface; restarted as
BACKUP (lower priority here) it never removed it, so both nodes held the VIP and both
answered ARP for it. Each test runs real ``mailha serve`` processes in their own
namespaces (prefixes used by no other test) and reads the VIP from the kernel. The DR
variant (VIP also held on ``lo``) needs ip_vs and is covered by the unit tests of
:func:`mailha.vrrp.stale.stale_vips`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Address

import pytest

from lab import netns
from lab.cluster import ClusterOptions, MailhaCluster, node_config
from lab.topology import SeedTopology
from mailha.vrrp.packet import Advert, build_ipv4_packet, encode_advert

pytestmark = [pytest.mark.root, pytest.mark.slow]


async def wait_until(
    what: str, test: Callable[[], Awaitable[bool]], time_limit: float = 10.0
) -> None:
    """Poll ``test`` until it holds; fail the test after ``time_limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while not await test():
        if loop.time() > deadline:
            pytest.fail(f"not within {time_limit:g}s: {what}")
        await asyncio.sleep(0.05)


async def iface_holds_vip(topo: SeedTopology, node: str) -> bool:
    return any(
        a.address == topo.vip and a.ifname == topo.iface(node)
        for a in await topo.addresses(node)
    )


@pytest.mark.parametrize(
    "comeback",
    [
        ClusterOptions(priorities={"n1": 50, "n2": 100}),
        ClusterOptions(nopreempt=True),  # still 150, but n2 is master now
    ],
    ids=["lower-priority", "nopreempt"],
)
async def test_restarted_crashed_master_drops_the_vip_before_backup(
    comeback: ClusterOptions,
) -> None:
    async with SeedTopology("mhSv") as topo, MailhaCluster(topo) as cluster:
        await cluster.wait_master("n1")  # priority 150 beats 100
        crashed = cluster.processes["n1"]
        cluster.kill("n1")  # SIGKILL: no priority 0, no address removed
        await crashed.wait(5)
        assert await iface_holds_vip(topo, "n1"), "the crash should leave the VIP behind"
        await wait_until("n2 takes over", lambda: iface_holds_vip(topo, "n2"))

        # Back so that it must come up BACKUP: then without the VIP.
        cluster.config_path("n1").write_text(node_config(topo, "n1", comeback, ["n2"]))
        await cluster.start("n1")

        async def only_n2() -> bool:
            return await topo.holders(topo.vip) == ["n2"]

        await wait_until("only n2 holds the VIP", only_n2)
        assert await cluster.masters() == ["n2"]
        log = cluster.log("n1")
        assert f"removing stale VIP {topo.vip_interface} from {topo.iface('n1')}" in log
        assert (await cluster.status("n1"))["instances"][0]["state"] == "BACKUP"
        await asyncio.sleep(1.5)  # > one advert interval: nothing adds it back
        assert await topo.holders(topo.vip) == ["n2"]


@contextlib.asynccontextmanager
async def higher_priority_peer(topo: SeedTopology) -> AsyncIterator[None]:
    """Adverts at priority 254 from n2's address to n1, each 0.5 s: n1 stays BACKUP."""
    n1, n2 = IPv4Address(str(topo.address("n1"))), IPv4Address(str(topo.address("n2")))
    advert = Advert(version=2, vrid=173, priority=254, max_advert_int=1.0,
                    addresses=(IPv4Address(str(topo.vip)),))
    packet = build_ipv4_packet(n2, n1, 255, 112, encode_advert(advert, src=n2, dst=n1))
    with netns.entered(topo.netns("n2")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)

    async def advertise() -> None:
        while True:
            sock.sendto(packet, (str(n1), 0))
            await asyncio.sleep(0.5)

    task = asyncio.create_task(advertise())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def test_vip_put_on_the_interface_by_hand_is_removed_at_start() -> None:
    async with SeedTopology("mhSw") as topo, higher_priority_peer(topo):
        iface = topo.iface("n1")
        await netns.ip("addr", "add", str(topo.vip_interface), "dev", iface,
                       netns=topo.netns("n1"))
        assert await iface_holds_vip(topo, "n1")
        async with MailhaCluster(topo, nodes=("n1",)) as cluster:

            async def vip_gone() -> bool:
                return not await iface_holds_vip(topo, "n1")

            await wait_until("n1's interface loses the VIP", vip_gone)
            assert (
                f"removing stale VIP {topo.vip_interface} from {iface} left by an earlier run"
                in cluster.log("n1")
            )
            assert (await cluster.status("n1"))["instances"][0]["state"] == "BACKUP"
            assert await topo.holders(topo.vip) == []
