"""BGP directors withdraw before they shrink: the last ready pool stays while routers move.

Issue 12's acceptance lab saw sessions refused while a director whose checks failed was
being withdrawn: its table had lost every live server before the routers had moved.
"""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from pathlib import Path
from typing import Any, cast

from mailha.checkers.quorum import DesiredPool, PoolMember
from mailha.config import loads
from mailha.config.model import RealServer
from mailha.lvs.manager import LvsManager
from mailha.lvs.withdraw_first import PoolHold, healthy_members
from mailha.metrics import Metrics

RS1 = RealServer(ip=ip_address("10.0.0.1"), port=25)
RS2 = RealServer(ip=ip_address("10.0.0.2"), port=25)


def pool(*weights: int | None) -> DesiredPool:
    members = tuple(PoolMember(rs, w) for rs, w in zip((RS1, RS2), weights, strict=False))
    return DesiredPool(members, None, None, True, sum(w or 0 for w in weights))


def test_an_unready_pool_is_held_for_the_grace_then_applied() -> None:
    hold = PoolHold()
    ready, down = pool(1, 1), pool(None, None)
    assert hold.program(ready, min_healthy=1, now=0.0) == (ready, None)
    assert hold.program(down, min_healthy=1, now=10.0, grace=1.5) == (ready, 11.5)
    assert hold.program(down, min_healthy=1, now=11.0, grace=1.5) == (ready, 11.5)
    assert hold.program(down, min_healthy=1, now=11.5, grace=1.5) == (down, None)
    assert hold.program(down, min_healthy=1, now=20.0, grace=1.5) == (down, None)  # no re-hold


def test_a_shrinking_but_ready_pool_and_a_recovery_are_applied_at_once() -> None:
    hold = PoolHold()
    assert hold.program(pool(1, 1), min_healthy=1, now=0.0) == (pool(1, 1), None)
    assert hold.program(pool(1, None), min_healthy=1, now=1.0) == (pool(1, None), None)
    assert hold.program(pool(None, None), min_healthy=1, now=2.0)[0] == pool(1, None)
    assert hold.program(pool(None, 1), min_healthy=1, now=2.5) == (pool(None, 1), None)
    # and the next failure holds the pool it was last ready with
    assert hold.program(pool(None, None), min_healthy=1, now=9.0)[0] == pool(None, 1)


def test_a_service_never_ready_is_not_held() -> None:
    assert PoolHold().program(pool(None, None), min_healthy=1, now=0.0) == (pool(None, None), None)
    assert healthy_members(pool(1, 0)) == 1


async def test_the_manager_keeps_a_bgp_service_s_table_until_the_withdrawal_had_time(
        tmp_path: Path) -> None:
    config = loads(f"""
[metrics]
enabled = false
[control]
socket = "{tmp_path / 's.sock'}"
[bgp]
include_file = "{tmp_path / 'mailha.conf'}"
[[virtual_server]]
ip = "10.12.49.37"
port = 25
announce = "bgp"
lvs_sched = "rr"
[[virtual_server.real_server]]
ip = "10.0.0.1"
port = 25
lvs_method = "DR"
[virtual_server.real_server.TCP_CHECK]
""", tmp_path / "mailha.toml")
    manager = LvsManager(config, metrics=Metrics(), addresses=cast(Any, None))
    svc = manager.checks.health[0]

    def weights() -> list[int]:
        (row,) = manager.desired().values()
        return [d.weight for d in row.destinations.values()]

    assert weights() == [1]
    svc.set_watch(0, True, "master exited")  # its real server is out of the pool
    assert manager.bgp_inputs()[0].healthy == 0  # readiness sees it at once: withdraw
    assert weights() == [1]  # ... while the kernel keeps the last ready table
    await asyncio.sleep(manager_grace() + 0.1)
    assert weights() == []


def manager_grace() -> float:
    from mailha.lvs import withdraw_first

    return withdraw_first.WITHDRAW_GRACE
