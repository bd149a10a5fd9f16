"""Issue 14: a junk flood on the backup's VRRP socket changes nothing and is accounted for.

The seed pair (n1 master, n2 backup, unicast) runs real ``mailha serve``; the client
namespace ``cl`` plays the attacker on the same bridge and floods n2 with protocol-112
junk (:mod:`lab.flood`): 90 % from non-peer sources (random bytes, and well-formed
priority-0 "take over now" adverts), 10 % spoofing n1's address but mutated so RFC 5798
rejects them.  The flood is bounded (rate x seconds, and the sender stops by itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lab.cluster import ClusterOptions, MailhaCluster, metric_value
from lab.flood import SPOOFED_REASONS, flood_in
from lab.topology import SeedTopology

pytestmark = [pytest.mark.root, pytest.mark.slow]

PREFIX = "mhJf"
RATE = 10_000
SECONDS = 10.0


@pytest.fixture
async def topo() -> AsyncIterator[SeedTopology]:
    async with SeedTopology(PREFIX) as t:
        yield t


def _errors(text: str, reason: str) -> float:
    return metric_value(text, "mailha_vrrp_receive_errors_total", {"reason": reason})


async def test_junk_flood_no_takeover_filtered_and_counted(topo: SeedTopology) -> None:
    # min_ttl 255 makes the spoofed off-link (TTL 64) releases count as "ttl" errors; without
    # it a unicast peer's adverts are accepted at any TTL, as keepalived does.
    async with MailhaCluster(topo, ClusterOptions(peer_min_ttl=255)) as cluster:
        await cluster.wait_master("n1")
        await asyncio.sleep(2.5)  # n2 has heard n1 for a while
        before = await cluster.metrics("n2")
        assert metric_value(before, "mailha_vrrp_state", {"state": "BACKUP"}) == 1
        flood = asyncio.create_task(flood_in(
            topo.netns("cl"), master=topo.address("n1"), target=topo.address("n2"),
            attacker=topo.address("cl"), network=topo.spec.network, vip=topo.vip,
            rate=RATE, seconds=SECONDS,
        ))
        masters_seen: list[list[str]] = []
        backup_seen: list[float] = []
        while not flood.done():
            masters_seen.append(await cluster.masters())
            # Scraped *during* the flood: the daemon stays responsive.
            during = await cluster.metrics("n2")
            backup_seen.append(metric_value(during, "mailha_vrrp_state", {"state": "BACKUP"}))
            await asyncio.sleep(0.3)
        result = await flood
        await asyncio.sleep(1.5)  # a takeover would need 3 x advert_int + skew of silence
        masters_seen.append(await cluster.masters())
        after = await cluster.metrics("n2")

    assert result.total >= 0.5 * RATE * SECONDS, f"sender too slow: {result}"
    # No false takeover, no state change at all.
    assert all(m == ["n1"] for m in masters_seen), masters_seen
    assert backup_seen and all(b == 1 for b in backup_seen), backup_seen
    for name in ("mailha_vrrp_transitions_total", "mailha_vrrp_master_changes_total"):
        assert metric_value(after, name) == metric_value(before, name), name
    # Non-peer junk never reached userspace: the kernel filter dropped it.
    nonpeer = sum(n for label, n in result.sent.items() if label.startswith("nonpeer"))
    assert nonpeer > 0.8 * result.total
    assert _errors(after, "not_peer") == _errors(before, "not_peer")
    # Junk spoofing the peer passes the filter and is rejected, each under its reason.
    dropped = metric_value(after, "mailha_vrrp_receive_dropped_total") - metric_value(
        before, "mailha_vrrp_receive_dropped_total")
    counted = 0.0
    for label, reason in SPOOFED_REASONS.items():
        delta = _errors(after, reason) - _errors(before, reason)
        assert 0 < delta <= result.sent[label], (reason, delta, result.sent[label])
        counted += delta
    spoofed = sum(result.sent[label] for label in SPOOFED_REASONS)
    assert counted + dropped >= spoofed, (counted, dropped, spoofed)
    # The master's real adverts kept arriving (advert_int 1).
    adverts = metric_value(after, "mailha_vrrp_adverts_received_total") - metric_value(
        before, "mailha_vrrp_adverts_received_total")
    assert adverts >= result.seconds - 2, adverts
    assert "Traceback" not in cluster.log("n2")
