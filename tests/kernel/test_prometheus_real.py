"""A real Prometheus scrapes a real, fully featured mailha pair (IPVS, checks, tracking).

The seed pair with IPVS balancing (Maglev hashing), SMTP_CHECKs, a track script and
smtp-sink as the mail servers; some mail through the VIP (so the IPVS counters move) and
one real server failing for a while (so failure series exist). Prometheus runs in the
client namespace and scrapes both daemons on their node addresses; every series selector
of every dashboard panel and of every alert and recording rule must find series, and every
rule must evaluate cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lab.cluster import ClusterOptions, MailhaCluster, metric_value
from lab.postfix import SmtpSink
from lab.prometheus import scrape_and_check
from lab.smtpload import smtp_source
from lab.topology import SeedTopology

pytestmark = [pytest.mark.kernel, pytest.mark.root, pytest.mark.slow]


@pytest.fixture
async def topo() -> AsyncIterator[SeedTopology]:
    async with SeedTopology("mhP") as t:
        yield t


async def test_every_dashboard_and_rule_selector_finds_series(
    topo: SeedTopology, tmp_path: Path
) -> None:
    sinks = {n: SmtpSink(topo.node_dir(n) / "sink.log", netns=topo.netns(n)) for n in topo.servers}
    for sink in sinks.values():
        await sink.start(time_limit=60)
    # mh, so that the Maglev fingerprint (its dashboard panel and alert) has series too.
    opts = ClusterOptions(ipvs=True, metrics_on_node_address=True, track_script=["/bin/true"],
                          track_weight=10, delay_loop=0.5, connect_timeout=1.0,
                          lvs_sched="mh", sched_flags=("mh-fallback", "mh-port"))
    try:
        async with MailhaCluster(topo, opts) as cluster:
            await cluster.wait_master("n1", time_limit=60)
            result = await smtp_source(str(topo.vip), netns=topo.netns("cl"), messages=20,
                                       sessions=4, time_limit=120)
            assert result.ok, result
            await sinks["n2"].stop()  # a real server fails: failure series, weight changes
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while metric_value(await cluster.metrics("n1"), "mailha_real_server_up",
                               {"real_server": f"{topo.address('n2')}:25"}) != 0:
                assert loop.time() < deadline, "n2's real server never went down"
                await asyncio.sleep(0.5)
            await sinks["n2"].start(time_limit=60)
            targets = [f"{topo.address(n)}:{opts.metrics_port}" for n in topo.servers]
            await scrape_and_check(targets, tmp_path, mode="selectors", netns=topo.netns("cl"))
    finally:
        for sink in sinks.values():
            await sink.stop()
