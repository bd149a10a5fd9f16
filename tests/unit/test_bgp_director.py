"""The node's BGP part: ``mailha drain director`` / ``undrain``, the drain surviving a
reload, the status section and its rendering."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from fake_bird import FakeBird, FakeDeadman

import mailha.bgp.announcer
from mailha.bgp.director import DirectorBgp
from mailha.bgp.readiness import ServiceInput
from mailha.config import loads
from mailha.config.model import Config
from mailha.control import render_status
from mailha.daemon import Node
from mailha.metrics import Metrics

P1 = "mailha_10_12_49_37"


def config(tmp_path: Path, bgp: bool = True) -> Config:
    return loads(f"""
[metrics]
enabled = false
[control]
socket = "{tmp_path / 's.sock'}"
[bgp]
bird_socket = "{tmp_path / 'bird.ctl'}"
include_file = "{tmp_path / 'mailha.conf'}"
reapply_interval = 0.2
[[virtual_server]]
ip = "10.12.49.37"
port = 25
announce = "{'bgp' if bgp else 'vrrp'}"
[[virtual_server.real_server]]
ip = "10.12.49.35"
[[virtual_server.real_server.SMTP_CHECK]]
""", tmp_path / "mailha.toml")


class FakeReconciler:
    def on_reconciled(self) -> None:
        pass


class FakeLvs:
    def __init__(self, active: list[int]) -> None:
        self.active = active
        self.reconciler = FakeReconciler()

    def bgp_inputs(self) -> tuple[ServiceInput, ...]:
        return (ServiceInput("TCP 10.12.49.37:25", ip_address("10.12.49.37"), True, 1, 1, 1),)

    async def bgp_active_sessions(self) -> int:
        return self.active.pop(0) if len(self.active) > 1 else self.active[0]


@pytest.fixture
async def bird(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBird]:
    monkeypatch.setattr(mailha.bgp.announcer, "DeadmanDevice", lambda _name: FakeDeadman())
    fake = FakeBird(tmp_path / "bird.ctl", include=tmp_path / "mailha.conf")
    await fake.start()
    yield fake
    await fake.stop()


async def test_drain_director_without_the_bgp_mode_says_so(tmp_path: Path) -> None:
    node = Node(config(tmp_path, bgp=False))
    reply = await node.drain({"target": "director"})
    assert reply["ok"] is False
    assert 'announce = "bgp"' in reply["error"] and "IP[:PORT]" in reply["error"]
    assert (await node.drain({"target": "director", "wait": -1}))["ok"] is False


async def test_drain_withdraws_first_then_waits_for_sessions(tmp_path: Path,
                                                             bird: FakeBird) -> None:
    bgp = DirectorBgp(Metrics())
    lvs: Any = FakeLvs([3, 1, 0])
    await bgp.start(config(tmp_path), lvs)
    try:
        await bgp.announcer.apply()  # type: ignore[union-attr]
        assert bird.enabled() == {P1}
        reply = await bgp.drain(lvs, drained=True, wait=5)
        assert reply == {"ok": True, "active": 0,
                         "message": "drained this director: VIPs withdrawn; no active "
                                    "session left"}
        assert bird.enabled() == set()
        status = bgp.status()
        assert status is not None and status["drained"] and status["drained_since"]
        # a reload that keeps the BGP mode keeps the drain; one that re-adds it too
        await bgp.reconfigure(config(tmp_path), lvs)
        await bgp.reconfigure(config(tmp_path, bgp=False), lvs)
        assert bgp.announcer is None and bgp.drained
        await bgp.reconfigure(config(tmp_path), lvs)
        assert bgp.announcer is not None and bgp.announcer.drained
        await bgp.announcer.apply()
        assert bird.enabled() == set()
        reply = await bgp.drain(lvs, drained=False, wait=0)
        assert reply["ok"] and bird.enabled() == {P1}
    finally:
        await bgp.stop()
    assert bird.enabled() == set()


async def test_drain_reports_sessions_left(tmp_path: Path, bird: FakeBird) -> None:
    bgp = DirectorBgp(Metrics())
    lvs: Any = FakeLvs([4])
    await bgp.start(config(tmp_path), lvs)
    try:
        reply = await bgp.drain(lvs, drained=True, wait=0.3)
        assert reply["ok"] is False and reply["active"] == 4
        assert "4 session(s) still active after 0.3s" in reply["error"]
    finally:
        await bgp.stop()


async def test_status_renders_the_bgp_section(tmp_path: Path, bird: FakeBird) -> None:
    bgp = DirectorBgp(Metrics())
    lvs: Any = FakeLvs([0])
    await bgp.start(config(tmp_path), lvs)
    try:
        await bgp.drain(lvs, drained=True, wait=0)
        out = io.StringIO()
        render_status({"ok": True, "instances": [], "ipvs": [], "checks": [],
                       "bgp": bgp.status()}, out)
    finally:
        await bgp.stop()
    text = out.getvalue()
    assert f"BIRD {tmp_path / 'bird.ctl'}: up, BIRD 2.0.12" in text
    assert "director DRAINED" in text
    assert "10.12.49.37" in text and "withdrawn" in text and "NOT READY" in text
    assert "because the director is drained" in text
    assert "session uplink" in text and "UP" in text
    out = io.StringIO()
    render_status({"ok": True, "instances": [], "ipvs": [], "checks": [], "bgp": None}, out)
    assert "BGP" not in out.getvalue()
