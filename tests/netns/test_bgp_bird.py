"""The BGP mode against real BIRD 2: the dead-man device, and announcements at a BGP peer.

Namespaces on one bridge: a router ``rt`` (BIRD, BGP with ``merge paths`` into its
kernel table) and two directors ``d1``/``d2`` (BIRD including mailha's file, exporting
``mailha_*``), each running mailha's real announcer (``python -m lab.bgpdriver``) with
readiness from a file: the host kernel has no ip_vs, so ``mailha serve`` with IPVS runs
in the VM tier (tests/kernel/test_bgp_serve.py). What is asserted is what the router
sees: its FIB's next hops for the VIP.

Figures printed (run with -s): how long BIRD takes to drop the static route after the
announcer is SIGKILLed, and how long the router takes to lose a director's next hop
after each kind of withdrawal.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from lab import netns
from lab.bird import BirdDaemon, director_conf, fib_next_hops, router_conf
from lab.netns import Process
from lab.topology import LabHost, Topology, TopologySpec

pytestmark = [pytest.mark.root, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VIP = "10.12.49.37"
NET = "10.99.12"
HOSTS = {"rt": 1, "d1": 11, "d2": 12}
DEADMAN = "mhgpdead"


def spec() -> TopologySpec:
    return TopologySpec("mhGp", tuple(LabHost(n, IPv4Interface(f"{NET}.{h}/24"))
                                      for n, h in HOSTS.items()))


class Director:
    """One director: BIRD and the announcer driver, readiness in a JSON file."""

    def __init__(self, topo: Topology, name: str) -> None:
        self.topo = topo
        self.name = name
        self.dir = topo.node_dir(name)
        self.include = self.dir / "mailha.conf"
        self.state = self.dir / "state.json"
        self.config = self.dir / "mailha.toml"
        self.bird = BirdDaemon(topo.netns(name), self.dir / "bird", director_conf(
            f"{NET}.{HOSTS[name]}", 65001, f"{NET}.1", 65000, self.include))
        self.driver: Process | None = None

    @property
    def address(self) -> str:
        return f"{NET}.{HOSTS[self.name]}"

    async def start_bird(self) -> None:
        self.include.touch()  # BIRD refuses a missing include file: deploy does the same
        await self.bird.start()

    async def start_announcer(self, healthy: int = 1) -> None:
        self.config.write_text(f"""
[global]
router_id = "{self.name}"
[control]
socket = "{self.dir / 'mailha.sock'}"
[bgp]
bird_socket = "{self.bird.socket}"
include_file = "{self.include}"
reapply_interval = 1
deadman_interface = "{DEADMAN}"
[[virtual_server]]
ip = "{VIP}"
port = 25
announce = "bgp"
[[virtual_server.real_server]]
ip = "{NET}.50"
[[virtual_server.real_server.SMTP_CHECK]]
""")
        self.set_state(healthy=healthy, signal_it=False)
        log = self.dir / "driver.log"
        self.driver = await self.topo.spawn(
            self.name, [sys.executable, "-m", "lab.bgpdriver", str(self.config), str(self.state)],
            log, env={**os.environ, "PYTHONPATH": str(ROOT)})
        await until(lambda: "started" in log.read_text() or not self.driver_running(), 60,
                    lambda: log.read_text())
        assert self.driver_running(), log.read_text()

    def driver_running(self) -> bool:
        return self.driver is not None and self.driver.running

    def set_state(self, *, healthy: int = 1, drained: bool = False,
                  signal_it: bool = True) -> None:
        self.state.write_text(json.dumps({"healthy": {VIP: healthy}, "drained": drained}))
        if signal_it and self.driver is not None:
            self.driver.send_signal(signal.SIGUSR1)

    def log(self) -> str:
        return (self.dir / "driver.log").read_text()


async def until(cond: Callable[[], bool], within: float, why: Callable[[], str] = str) -> float:
    """Poll ``cond``; the seconds it took (AssertionError with ``why()`` past ``within``)."""
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < within, why()
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def until_async(cond: Callable[[], Coroutine[Any, Any, bool]], within: float,
                      why: Callable[[], str] = str) -> float:
    start = time.monotonic()
    while not await cond():
        assert time.monotonic() - start < within, why()
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
async def topo() -> AsyncIterator[Topology]:
    async with Topology(spec()) as t:
        yield t


async def static_route_in_bird(bird: BirdDaemon) -> bool:
    reply = await bird.command(f"show route {VIP}/32")
    return DEADMAN in reply.text


async def test_the_route_dies_with_the_announcer(topo: Topology) -> None:
    """(a) BIRD drops the static route via the non-persistent tun device when the process
    holding it is SIGKILLed: no mailha code runs, the kernel deletes the device."""
    d1 = Director(topo, "d1")
    await d1.start_bird()
    await d1.start_announcer()
    try:
        await until_async(lambda: static_route_in_bird(d1.bird), 20, d1.log)
        links = await netns.link_names(topo.netns("d1"))
        assert DEADMAN in links
        assert d1.driver is not None
        started = time.monotonic()
        d1.driver.kill()
        gone = await until_async(lambda: _not(static_route_in_bird(d1.bird)), 5, d1.log)
        device = time.monotonic() - started
        assert DEADMAN not in await netns.link_names(topo.netns("d1"))
        print(f"\nBIRD dropped the static route {gone * 1000:.0f} ms after SIGKILL "
              f"(device gone by {device * 1000:.0f} ms; device scan time 1000 s: netlink "
              "events, not the scan)")
        assert gone < 2.0
        # The protocol is still enabled (mailha had no say): a new run disables it first.
        rows = {r.name: r for r in await d1.bird.client.protocols()}
        assert rows["mailha_10_12_49_37"].up
        await d1.start_announcer(healthy=0)
        await until(lambda: "disabled" in d1.log(), 20, d1.log)
        rows = {r.name: r for r in await d1.bird.client.protocols()}
        assert not rows["mailha_10_12_49_37"].up
    finally:
        await d1.bird.stop()


async def _not(coro: Coroutine[Any, Any, bool]) -> bool:
    return not await coro


async def test_announcements_reach_the_router(topo: Topology) -> None:
    """(b) The generated include with enable/disable produces and withdraws the VIP's
    route at a BGP peer: ECMP over both directors when both are ready; each kind of
    withdrawal removes exactly that director's next hop."""
    rt_dir = topo.node_dir("rt")
    router = BirdDaemon(topo.netns("rt"), rt_dir / "bird", router_conf(
        f"{NET}.1", 65000, [(n, f"{NET}.{HOSTS[n]}", 65001) for n in ("d1", "d2")]))
    directors = {n: Director(topo, n) for n in ("d1", "d2")}
    await router.start()
    try:
        for d in directors.values():
            await d.start_bird()
            await d.start_announcer()
        d1, d2 = directors["d1"], directors["d2"]
        both = {d1.address, d2.address}

        async def hops() -> set[str]:
            return await fib_next_hops(topo.netns("rt"), f"{VIP}/32")

        def why() -> str:
            return f"router: {router.log_text()[-1500:]}\nd1: {d1.log()[-1500:]}"

        async def wait_hops(want: set[str], within: float = 20) -> float:
            return await until_async(lambda: _eq(hops(), want), within, why)

        t = await wait_hops(both, 60)
        print(f"\nrouter FIB: both next hops {t:.2f} s after the announcers started")

        d1.set_state(healthy=0)
        print(f"d1 unready (0 real servers up): withdrawn in {await wait_hops({d2.address}):.3f} s")
        d1.set_state(healthy=1)
        print(f"d1 ready again: back in {await wait_hops(both):.3f} s")

        d2.set_state(drained=True)
        print(f"d2 drained: withdrawn in {await wait_hops({d1.address}):.3f} s")
        d2.set_state(drained=False)
        await wait_hops(both)

        # BIRD restarted on d2: it comes back with the protocol disabled; the re-apply
        # (every second here) announces again.
        await d2.bird.stop()
        await wait_hops({d1.address})
        await d2.bird.start()
        print(f"d2's BIRD restarted: re-announced {await wait_hops(both):.2f} s after it "
              "answered")

        assert d1.driver is not None and d2.driver is not None
        d1.driver.kill()
        print(f"d1's announcer SIGKILLed: withdrawn in {await wait_hops({d2.address}):.3f} s")

        assert await d2.driver.stop(time_limit=20) == 0
        await wait_hops(set())
        assert "withdrew the BGP announcements (1 protocol disabled)" in d2.log()
    finally:
        for d in directors.values():
            await d.bird.stop()
        await router.stop()


async def _eq(coro: Coroutine[Any, Any, set[str]], want: set[str]) -> bool:
    return await coro == want


async def test_the_units_exec_stop_post_disables_the_protocols(topo: Topology) -> None:
    """mailha.service's ExecStopPost, unquoted as systemd does (shlex agrees on this line),
    disables enabled mailha_* protocols in a real BIRD and leaves the others alone."""
    import shlex

    unit = (ROOT / "deploy" / "systemd" / "mailha.service").read_text()
    (line,) = [x.split("=", 1)[1] for x in unit.splitlines() if x.startswith("ExecStopPost=")]
    argv = shlex.split(line.removeprefix("-"))
    d1 = Director(topo, "d1")
    d1.include.write_text('protocol static mailha_10_12_49_37 { ipv4; route 10.12.49.37/32 '
                          'via "lo"; }\nprotocol static keepme { ipv4; route 10.12.49.9/32 '
                          'via "lo"; }\n')
    await d1.bird.start()
    try:
        script = argv[2].replace("/run/bird/bird.ctl", str(d1.bird.socket))
        result = await netns.run([argv[0], argv[1], script], time_limit=30)
        assert result.ok, result
        rows = {r.name: r.up for r in await d1.bird.client.protocols()}
        assert rows["mailha_10_12_49_37"] is False and rows["keepme"] is True
    finally:
        await d1.bird.stop()
