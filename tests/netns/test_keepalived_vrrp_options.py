"""keepalived's VRRP wire options, honoured by mailha against a real keepalived 2.2.7.

Each pair runs mailha on one node and keepalived on the other, on the seed topology, with
one option that changes what goes on the wire. The higher priority (n1) must be the only
master for longer than a master-down interval: a side that did not hear the other would
take over within it. Each of these failed before the option was honoured: mailha dropped
unicast adverts whose TTL was not 255, sent its own with TTL 255 whatever
``unicast_ttl`` said, and sent and listened on 224.0.0.18 whatever the group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from kapair import one_master_for, stop_n1_and_see_n2_take_over

from lab.cluster import ClusterOptions, MailhaCluster
from lab.keepalived import Keepalived, seed_config
from lab.topology import SeedTopology

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
    """keepalived's side: the seed's config without a track script, at ``PRIORITIES``;
    ``own_peer_block``: ``extra`` writes the unicast_peer block itself."""
    conf = seed_config(topo, node, priority=PRIORITIES[node])
    (seed,) = conf.instances
    instance = replace(
        seed,
        unicast_src_ip=seed.unicast_src_ip if unicast else None,
        unicast_peers=seed.unicast_peers if unicast and not own_peer_block else (),
        extra=extra,
    )
    conf = replace(conf, instances=(instance,), global_extra=global_extra)
    return Keepalived(topo.node_dir(node) / "keepalived", conf, netns=topo.netns(node))


async def test_a_keepalived_master_sending_with_unicast_ttl_64_is_heard(
    topo: SeedTopology,
) -> None:
    """keepalived checks TTL 255 only in multicast mode; so must mailha (a routed unicast
    peer's adverts arrive below 255 too)."""
    ka = keepalived_on(topo, "n1", unicast=True, extra=("unicast_ttl 64",))
    async with ka, MailhaCluster(topo, ClusterOptions(priorities=PRIORITIES),
                                 nodes=["n2"]) as cluster:
        await cluster.wait_master("n1", time_limit=20)
        await one_master_for(cluster, "n1", CALM)
    assert "Traceback" not in cluster.log("n2")


async def test_mailha_sends_unicast_adverts_with_its_unicast_ttl(topo: SeedTopology) -> None:
    """keepalived's backup accepts n1's adverts only with a TTL of 60..70."""
    n1 = topo.address("n1")
    ka = keepalived_on(topo, "n2", unicast=True, own_peer_block=True, extra=(
        "unicast_peer {", f"    {n1} min_ttl 60 max_ttl 70", "}"))
    opts = ClusterOptions(priorities=PRIORITIES, extra_instance={"unicast_ttl": 64})
    async with ka, MailhaCluster(topo, opts, nodes=["n1"]) as cluster:
        await cluster.wait_master("n1", time_limit=20)
        await one_master_for(cluster, "n1", CALM)
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
        await one_master_for(cluster, "n1", CALM)
        await stop_n1_and_see_n2_take_over(cluster, ka, mailha_node)
    assert "Traceback" not in cluster.log(mailha_node)
