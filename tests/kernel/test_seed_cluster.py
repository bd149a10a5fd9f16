"""The seed topology end to end in a kernel with IPVS: mail spread over both Postfix nodes.

Two node namespaces, each with a real Postfix instance and ``mailha serve`` (all-in-one:
the VRRP master programs VIP:25 with itself and its peer as direct-routed real servers,
the peer holds the VIP on ``lo``), and a client namespace. 200 SMTP sessions through the
VIP must be split between both Postfix nodes (50 % +- 10 %), each node must see the
client's own address, and when the master's link goes down the VIP and the IPVS service
move and mail keeps flowing to the survivor.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lab.cluster import ClusterOptions, MailhaCluster
from lab.postfix import Postfix
from lab.seedlab import SeedLab
from lab.smtpload import send_messages, smtp_source
from lab.topology import SeedTopology

pytestmark = [pytest.mark.kernel, pytest.mark.root, pytest.mark.slow]


@pytest.fixture
async def seed() -> AsyncIterator[tuple[SeedTopology, dict[str, Postfix]]]:
    async with SeedLab("mhS", keepalived=False) as lab:  # topology + Postfix on n1, n2
        yield lab.topo, lab.postfix


async def wait_pool(cluster: MailhaCluster, node: str, want: int, time_limit: float) -> dict:
    """Wait until ``node`` programs the service with ``want`` weighted destinations."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    status: dict = {}
    while loop.time() < deadline:
        status = await cluster.status(node)
        for svc in status.get("ipvs", []):
            live = [d for d in svc["destinations"] if d["weight"] > 0]
            if len(live) == want:
                return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"{node} never programmed {want} live destinations: {status}")


async def test_mail_is_spread_and_follows_the_vip(
    seed: tuple[SeedTopology, dict[str, Postfix]],
) -> None:
    topo, postfix = seed
    # Generous check timeouts: the VM is ~10x slower, and a check timing out under load
    # would take a node out of the pool and skew the split this test measures.
    opts = ClusterOptions(ipvs=True, delay_loop=1.0, connect_timeout=5.0, retry=2)
    async with MailhaCluster(topo, opts) as cluster:
        await cluster.wait_master("n1", time_limit=60)
        status = await wait_pool(cluster, "n1", 2, time_limit=60)
        dests = {d["address"]: d for d in status["ipvs"][0]["destinations"]}
        assert set(dests) == {"10.12.49.35:25", "10.12.49.36:25"}
        backup = await cluster.status("n2")
        assert backup["ipvs"] == []  # only the master balances: no ping-pong

        result = await smtp_source(str(topo.vip), netns=topo.netns("cl"), messages=200,
                                   sessions=10, time_limit=300)
        assert result.ok, result
        for pf in postfix.values():
            await pf.wait_received(1, time_limit=60)
        await asyncio.sleep(3)  # let the logs settle
        counts = {n: pf.received_count() for n, pf in postfix.items()}
        assert sum(counts.values()) == 200, counts
        flaps = [line for line in cluster.log("n1").splitlines() if "is DOWN" in line]
        for node, count in counts.items():
            assert 80 <= count <= 120, f"{node} got {count} of 200: {counts}; {flaps}"
        # Direct routing keeps the client's own address: Postfix authorises by it.
        client = str(topo.address("cl"))
        for node, pf in postfix.items():
            assert client in pf.client_addresses(), (node, pf.client_addresses())

        # `postfix stop` on n2: the master drops n2's real server within the bound its
        # checker settings promise (delay_loop + (retry+1) x (delay_before_retry +
        # connect_timeout); a refused connection fails at once); back after start.
        await postfix["n2"].stop(time_limit=30)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await wait_pool(cluster, "n1", 1, time_limit=30)
        left = loop.time() - started
        print(f"n2's real server left IPVS {left:.2f}s after postfix stop")
        await postfix["n2"].start(time_limit=180)
        await wait_pool(cluster, "n1", 2, time_limit=60)

        # The master loses its link: the VIP and the service move to n2, mail keeps flowing.
        await topo.link_down("n1")
        await cluster.wait_master("n2", time_limit=60)
        await wait_pool(cluster, "n2", 1, time_limit=60)
        before = postfix["n2"].received_count()
        report = await send_messages(str(topo.vip), netns=topo.netns("cl"), count=40,
                                     concurrency=4, give_up_after=120)
        assert not report.abandoned, report
        await postfix["n2"].wait_received(before + 40, time_limit=120)
        assert "Traceback" not in cluster.log("n1") + cluster.log("n2")


async def test_a_node_whose_mailha_is_stopped_still_takes_its_share(
    seed: tuple[SeedTopology, dict[str, Postfix]],
) -> None:
    """Issue 14's mail-loss suite found it: a cleanly stopped mailha took the VIP off lo,
    while the new master's checks still found that node's Postfix healthy and kept
    direct-routing half the new sessions to it, where they were dropped until mailha
    ran again. By default the DR role is kept at stop (``release_dr_on_stop``)."""
    topo, postfix = seed
    opts = ClusterOptions(ipvs=True, delay_loop=1.0, connect_timeout=5.0, retry=2)
    async with MailhaCluster(topo, opts) as cluster:
        await cluster.wait_master("n1", time_limit=60)
        await wait_pool(cluster, "n1", 2, time_limit=60)
        await cluster.stop("n1")
        await cluster.wait_master("n2", time_limit=60)
        await wait_pool(cluster, "n2", 2, time_limit=60)
        assert "keeping 10.12.49.37 on lo" in cluster.log("n1")
        before = {n: pf.received_count() for n, pf in postfix.items()}
        result = await smtp_source(str(topo.vip), netns=topo.netns("cl"), messages=40,
                                   sessions=4, time_limit=120)
        assert result.ok, result
        await asyncio.sleep(3)  # let the logs settle
        got = {n: pf.received_count() - before[n] for n, pf in postfix.items()}
        assert sum(got.values()) == 40 and got["n1"] > 0, got
