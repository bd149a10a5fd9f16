"""mailha against a real keepalived 2.2.7 (Debian's package) on the same VRID.

For VRRPv2 and v3, unicast, with mailha as the initial master and as the initial backup:
the pair converges to exactly one master; each side takes over when the other's link goes
down and when the other's track script fails, and gives the VIP back when the other
recovers (both preempt). Masters are read from the kernel: which node's own interface
holds the VIP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import pytest
from kapair import one_master_for, stop_n1_and_see_n2_take_over

from lab.cluster import ClusterOptions, MailhaCluster
from lab.keepalived import Keepalived, KeepalivedConfig, TrackScript, VrrpInstance
from lab.topology import SeedTopology

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
async def topo() -> AsyncIterator[SeedTopology]:
    async with SeedTopology("mhK") as t:
        check = t.workdir / "check.sh"
        check.write_text('#!/bin/sh\ntest ! -e "$1/postfix-down"\n')
        check.chmod(0o755)
        yield t


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("mailha_node", ["n1", "n2"])
async def test_interop(topo: SeedTopology, version: Literal[2, 3], mailha_node: str) -> None:
    ka_node = "n2" if mailha_node == "n1" else "n1"
    advert_int = 1.0 if version == 2 else 0.5
    priorities = {"n1": 150, "n2": 100}
    check = topo.workdir / "check.sh"
    opts = ClusterOptions(
        version=version, advert_int=advert_int, priorities=priorities,
        track_script=[str(check), "{node_dir}"], track_weight=0, track_interval=0.25,
    )
    ka_conf = KeepalivedConfig(
        router_id=f"ka{ka_node}",
        instances=(
            VrrpInstance(
                name="VI_postfix",
                interface=topo.iface(ka_node),
                virtual_router_id=173,
                priority=priorities[ka_node],
                virtual_ipaddresses=(str(topo.vip_interface),),
                advert_int=advert_int,
                version=version,
                unicast_src_ip=str(topo.address(ka_node)),
                unicast_peers=(str(topo.address(mailha_node)),),
                track_scripts=(
                    TrackScript("chk_postfix", f"{check} {topo.node_dir(ka_node)}",
                                interval=0.25, weight=0),
                ),
            ),
        ),
    )
    ka = Keepalived(topo.node_dir(ka_node) / "keepalived", ka_conf, netns=topo.netns(ka_node))
    async with ka, MailhaCluster(topo, opts, nodes=[mailha_node]) as cluster:
        # Converge: n1 (priority 150) is the master whoever runs it.
        await cluster.wait_master("n1", time_limit=20)
        await one_master_for(cluster, "n1", 2.0)

        # Link loss on the master: the other side takes over; recovery: n1 preempts.
        await topo.link_down("n1")
        await cluster.wait_master("n2", time_limit=15)
        await topo.link_up("n1")
        await cluster.wait_master("n1", time_limit=20)
        await one_master_for(cluster, "n1", 1.0)

        # The master's track script fails: FAULT, the other side takes over; then back.
        flag = topo.node_dir("n1") / "postfix-down"
        flag.touch()
        await cluster.wait_master("n2", time_limit=15)
        await one_master_for(cluster, "n2", 1.0)
        flag.unlink()
        await cluster.wait_master("n1", time_limit=20)
        await one_master_for(cluster, "n1", 1.0)

        # And the same from the backup's side: the backup's script failing changes nothing,
        # then the master stops cleanly and the backup takes over.
        flag2 = topo.node_dir("n2") / "postfix-down"
        flag2.touch()
        await one_master_for(cluster, "n1", 1.5)
        flag2.unlink()
        await asyncio.sleep(1.0)
        await stop_n1_and_see_n2_take_over(cluster, ka, mailha_node)
    assert "Traceback" not in cluster.log(mailha_node)
