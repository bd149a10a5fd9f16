"""keepalived's VRRP wire options, honoured by mailha against a real keepalived 2.2.7.

Each pair runs mailha on one node and keepalived on the other, on the seed topology, with
one option that changes what goes on the wire. The higher priority (n1) must be the only
master for longer than a master-down interval: a side that did not hear the other would
take over within it. Each of these failed before the option was honoured: mailha dropped
unicast adverts whose TTL was not 255, sent its own with TTL 255 whatever
``unicast_ttl`` said, and sent and listened on 224.0.0.18 whatever the group.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mailha.lab.cluster import ClusterOptions, MailhaCluster
from mailha.lab.keepalived import Keepalived, KeepalivedConfig, VrrpInstance
from mailha.lab.topology import SeedTopology

pytestmark = [pytest.mark.root, pytest.mark.slow]

PRIORITIES = {"n1": 150, "n2": 100}
#: Longer than the backup's master-down interval at advert_int 1 (3 s + skew).
CALM = 5.0


@pytest.fixture
async def topo() -> AsyncIterator[SeedTopology]:
    async with SeedTopology("mhW") as t:
        yield t


def keepalived_on(topo: SeedTopology, node: str, *, unicast: bool, extra: tuple[str, ...] = (),
                  global_extra: tuple[str, ...] = (), own_peer_block: bool = False) -> Keepalived:
    """keepalived's side; ``own_peer_block``: ``extra`` writes the unicast_peer block."""
    other = "n2" if node == "n1" else "n1"
    conf = KeepalivedConfig(
        router_id=f"ka{node}",
        global_extra=global_extra,
        instances=(
            VrrpInstance(
                name="VI_postfix",
                interface=topo.iface(node),
                virtual_router_id=173,
                priority=PRIORITIES[node],
                virtual_ipaddresses=(str(topo.vip_interface),),
                unicast_src_ip=str(topo.address(node)) if unicast else None,
                unicast_peers=(str(topo.address(other)),) if unicast and not own_peer_block
                else (),
                extra=extra,
            ),
        ),
    )
    return Keepalived(topo.node_dir(node) / "keepalived", conf, netns=topo.netns(node))


async def only_master(cluster: MailhaCluster, node: str, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        masters = await cluster.masters()
        assert masters == [node], (
            f"expected only {node} as master, saw {masters}: " + "\n".join(
                cluster.log(n)[-3000:] for n in cluster.processes))
        await asyncio.sleep(0.1)


async def test_a_keepalived_master_sending_with_unicast_ttl_64_is_heard(
    topo: SeedTopology,
) -> None:
    """keepalived checks TTL 255 only in multicast mode; so must mailha (a routed unicast
    peer's adverts arrive below 255 too)."""
    ka = keepalived_on(topo, "n1", unicast=True, extra=("unicast_ttl 64",))
    async with ka, MailhaCluster(topo, ClusterOptions(priorities=PRIORITIES),
                                 nodes=["n2"]) as cluster:
        await cluster.wait_master("n1", time_limit=20)
        await only_master(cluster, "n1", CALM)
    assert "Traceback" not in cluster.log("n2")


async def test_mailha_sends_unicast_adverts_with_its_unicast_ttl(topo: SeedTopology) -> None:
    """keepalived's backup accepts n1's adverts only with a TTL of 60..70."""
    n1 = topo.address("n1")
    ka = keepalived_on(topo, "n2", unicast=True, own_peer_block=True, extra=(
        "unicast_peer {", f"    {n1} min_ttl 60 max_ttl 70", "}"))
    opts = ClusterOptions(priorities=PRIORITIES, extra_instance={"unicast_ttl": 64})
    async with ka, MailhaCluster(topo, opts, nodes=["n1"]) as cluster:
        await cluster.wait_master("n1", time_limit=20)
        await only_master(cluster, "n1", CALM)
    assert "Traceback" not in cluster.log("n1")


@pytest.mark.parametrize("mailha_node", ["n1", "n2"])
async def test_both_sides_agree_on_a_configured_multicast_group(
    topo: SeedTopology, mailha_node: str
) -> None:
    """keepalived on the global vrrp_mcast_group4, mailha on the instance's mcast_dst_ip:
    the same group 224.0.0.19, so each hears the other; then the master stops and the
    backup takes over, which shows the backup was following live adverts."""
    ka_node = "n2" if mailha_node == "n1" else "n1"
    ka = keepalived_on(topo, ka_node, unicast=False,
                       global_extra=("vrrp_mcast_group4 224.0.0.19",))
    opts = ClusterOptions(priorities=PRIORITIES, multicast=True,
                          extra_instance={"mcast_dst_ip": "224.0.0.19"})
    async with ka, MailhaCluster(topo, opts, nodes=[mailha_node]) as cluster:
        await cluster.wait_master("n1", time_limit=20)
        await only_master(cluster, "n1", CALM)
        if mailha_node == "n1":
            await cluster.stop("n1")
        else:
            await ka.stop()
        await cluster.wait_master("n2", time_limit=10)
    assert "Traceback" not in cluster.log(mailha_node)
