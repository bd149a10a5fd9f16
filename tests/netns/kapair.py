"""What the tests of mailha beside a real keepalived share: watching for one master, and
stopping the first node's daemon whichever of the two runs there."""

from __future__ import annotations

import asyncio

from lab.cluster import MailhaCluster
from lab.keepalived import Keepalived


async def one_master_for(cluster: MailhaCluster, expected: str, seconds: float) -> None:
    """Sample the kernel's view: exactly ``expected`` holds the VIP the whole time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        masters = await cluster.masters()
        assert masters == [expected], (
            f"expected only {expected} as master, saw {masters}: "
            + "\n".join(cluster.log(n)[-3000:] for n in cluster.processes))
        await asyncio.sleep(0.1)


async def stop_n1_and_see_n2_take_over(
    cluster: MailhaCluster, ka: Keepalived, mailha_node: str
) -> None:
    """Stop n1's daemon cleanly (mailha or keepalived); n2 must take over within 10 s."""
    if mailha_node == "n1":
        await cluster.stop("n1")
    else:
        await ka.stop()
    await cluster.wait_master("n2", time_limit=10)
