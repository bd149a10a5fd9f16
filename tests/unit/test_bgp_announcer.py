"""The announcer against an in-process BIRD socket: start, readiness to enable/disable,
re-apply after BIRD forgets, BIRD down and back, reload, withdrawal at stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address
from pathlib import Path

import pytest
from fake_bird import FakeBird, FakeDeadman

from mailha.bgp.announcer import Announcer, BgpSetupError
from mailha.bgp.readiness import ServiceInput
from mailha.config import loads
from mailha.config.model import Config
from mailha.metrics import Metrics

V1, V2 = ip_address("10.12.49.37"), ip_address("10.12.49.38")
P1, P2 = "mailha_10_12_49_37", "mailha_10_12_49_38"


def config(tmp_path: Path, vips: tuple[str, ...] = ("10.12.49.37",), interval: float = 0.1,
           with_include: bool = True) -> Config:
    services = "".join(f"""
[[virtual_server]]
ip = "{vip}"
port = 25
announce = "bgp"
[[virtual_server.real_server]]
ip = "10.12.49.35"
[[virtual_server.real_server.SMTP_CHECK]]
""" for vip in vips)
    include = tmp_path / ("mailha.conf" if with_include else "elsewhere.conf")
    return loads(f"""
[bgp]
bird_socket = "{tmp_path / 'bird.ctl'}"
include_file = "{include}"
reapply_interval = {interval}
{services}""", tmp_path / "mailha.toml")


class Inputs:
    def __init__(self) -> None:
        self.healthy = {V1: 1, V2: 1}
        self.programmed = True
        self.vips = {V1}

    def __call__(self) -> tuple[ServiceInput, ...]:
        return tuple(ServiceInput(f"TCP {v}:25", v, self.programmed, n, 1, 1)
                     for v, n in self.healthy.items() if v in self.vips)


@pytest.fixture
async def bird(tmp_path: Path) -> AsyncIterator[FakeBird]:
    fake = FakeBird(tmp_path / "bird.ctl", include=tmp_path / "mailha.conf")
    await fake.start()
    yield fake
    await fake.stop()


async def until(cond: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def make(cfg: Config, inputs: Inputs, metrics: Metrics | None = None) -> Announcer:
    return Announcer(cfg, metrics=metrics or Metrics(), inputs=inputs,
                     deadman=FakeDeadman())  # type: ignore[arg-type]


async def test_start_writes_configures_withdraws_leftovers_then_follows_readiness(
        tmp_path: Path, bird: FakeBird) -> None:
    cfg = config(tmp_path)
    inputs = Inputs()
    (tmp_path / "mailha.conf").write_text(
        f'protocol static {P1} {{ ipv4; route 10.12.49.37/32 via "mailha-bgp"; }}\n')
    bird.load_include()  # a crashed run left it enabled (and an older file)
    assert bird.enabled() == {P1}
    metrics = Metrics()
    ann = make(cfg, inputs, metrics)
    await ann.start()
    try:
        assert "disabled;" in (tmp_path / "mailha.conf").read_text()
        assert bird.commands[:3] == ["configure", "show protocols", 'disable "mailha_*"']
        assert ann.deadman.held
        await until(lambda: bird.enabled() == {P1})
        await until(lambda: metrics.bgp is not None and metrics.bgp.vips == {
            "10.12.49.37": (True, True)})
        assert metrics.bgp is not None and metrics.bgp.bird_up
        assert metrics.bgp.sessions == {"uplink": True}
        inputs.healthy[V1] = 0
        ann.poke()
        await until(lambda: bird.enabled() == set())
        status = ann.status()
        assert status["vips"][0]["reasons"] == ["TCP 10.12.49.37:25: 0 of 1 real servers up, "
                                                "min_healthy is 1"]
        assert status["sessions"] == [{"protocol": "uplink", "state": "up",
                                       "info": "Established", "up": True}]
        text = metrics.render().decode()
        assert 'mailha_bgp_vip_ready{vip="10.12.49.37"} 0.0' in text
        assert "mailha_bird_up 1.0" in text
    finally:
        await ann.stop()
    assert not ann.deadman.held and metrics.bgp is None


async def test_an_unchanged_include_is_not_reconfigured(tmp_path: Path, bird: FakeBird) -> None:
    ann = make(config(tmp_path), Inputs())
    await ann.start()
    await ann.stop()
    bird.commands.clear()
    again = make(config(tmp_path), Inputs())
    await again.start()
    await again.stop()
    assert "configure" not in bird.commands


async def test_bird_without_the_include_refuses_to_start(tmp_path: Path, bird: FakeBird) -> None:
    ann = make(config(tmp_path, with_include=False), Inputs())
    with pytest.raises(BgpSetupError, match=r'must contain include ".*elsewhere\.conf"'):
        await ann.start()
    assert not ann.deadman.held


async def test_bird_resetting_the_protocols_is_repaired_by_the_reapply(
        tmp_path: Path, bird: FakeBird) -> None:
    ann = make(config(tmp_path, interval=0.2), Inputs())
    await ann.start()
    try:
        await until(lambda: bird.enabled() == {P1})
        bird.load_include()  # what `birdc configure` by hand or a BIRD restart does
        assert bird.enabled() == set()
        await until(lambda: bird.enabled() == {P1})
    finally:
        await ann.stop()
    assert bird.enabled() == set()


async def test_bird_down_at_start_and_back(tmp_path: Path, bird: FakeBird) -> None:
    await bird.stop()
    metrics = Metrics()
    ann = make(config(tmp_path), Inputs(), metrics)
    await ann.start()  # not fatal: the node serves, the VIP waits for BIRD
    try:
        await until(lambda: metrics.bgp is not None and not metrics.bgp.bird_up)
        assert ann.status()["bird"]["error"] and "no such socket" in ann.bird_error  # type: ignore[operator]
        await bird.start()  # a BIRD started before the file existed: one configure fixes it
        await until(lambda: bird.enabled() == {P1})
        assert metrics.bgp is not None and metrics.bgp.bird_up
    finally:
        await ann.stop()


async def test_reload_with_another_vip_set(tmp_path: Path, bird: FakeBird) -> None:
    inputs = Inputs()
    ann = make(config(tmp_path), inputs)
    await ann.start()
    try:
        await until(lambda: bird.enabled() == {P1})
        inputs.vips = {V2}
        await ann.reconfigure(config(tmp_path, ("10.12.49.38",)))
        await until(lambda: bird.enabled() == {P2})
        assert set(bird.protocols) == {P2}
        assert P2 in (tmp_path / "mailha.conf").read_text()
    finally:
        await ann.stop()


async def test_drained_withdraws_everything(tmp_path: Path, bird: FakeBird) -> None:
    ann = make(config(tmp_path), Inputs())
    await ann.start()
    try:
        await until(lambda: bird.enabled() == {P1})
        ann.drained = True
        await ann.apply()
        assert bird.enabled() == set()
        assert "drained" in ann.status()["vips"][0]["reasons"][0]
    finally:
        await ann.stop()


async def test_stop_with_bird_gone_still_drops_the_device(tmp_path: Path, bird: FakeBird) -> None:
    ann = make(config(tmp_path), Inputs())
    await ann.start()
    await bird.stop()
    await ann.stop()
    assert not ann.deadman.held


def test_a_vrrp_node_exports_no_bgp_series() -> None:
    """mailha_bird_up 0 on a node that never needed BIRD would page someone."""
    from mailha.metrics import BgpSnapshot

    metrics = Metrics()
    assert "mailha_bird_up" not in metrics.render().decode()
    metrics.bgp = BgpSnapshot(bird_up=False, drained=True, vips={"10.12.49.37": (True, False)})
    text = metrics.render().decode()
    assert "mailha_bird_up 0.0" in text and "mailha_director_drained 1.0" in text
    assert 'mailha_bgp_vip_announced{vip="10.12.49.37"} 0.0' in text
