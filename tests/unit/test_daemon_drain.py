"""``mailha drain`` in the daemon: the wait for sessions, and a backup's refusal."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from mailha.config import loads
from mailha.config.model import RealServer, VirtualServer
from mailha.daemon import Node
from mailha.lvs.drain import DrainTarget

RS = RealServer(ip=IPv4Address("10.12.49.36"), port=25)
VS = VirtualServer(ip=IPv4Address("10.12.49.37"), port=25, real_servers=(RS,),
                   vrrp_instance="VI_postfix")


class FakeLvs:
    def __init__(self, programmed: bool, active: list[int]) -> None:
        self.programmed = programmed
        self.active = active
        self.calls: list[tuple[tuple[DrainTarget, ...], bool]] = []
        self.drained: dict[DrainTarget, float] = {}

    def drain_matches(self, targets: tuple[DrainTarget, ...]) -> list[Any]:
        return [(VS, RS, self.programmed)] if any(t.matches(RS, VS) for t in targets) else []

    def set_drained(self, targets: tuple[DrainTarget, ...], drained: bool) -> None:
        self.calls.append((targets, drained))

    async def active_sessions(self, _targets: object) -> int:
        return self.active.pop(0) if len(self.active) > 1 else self.active[0]


def node(tmp_path: Path, lvs: FakeLvs) -> Node:
    text = f'[metrics]\nenabled = false\n[control]\nsocket = "{tmp_path / "s.sock"}"\n'
    n = Node(loads(text, tmp_path / "mailha.toml"))
    n.lvs = lvs  # type: ignore[assignment]
    return n


async def test_drain_waits_until_the_sessions_end(tmp_path: Path) -> None:
    lvs = FakeLvs(True, [3, 2, 0])
    reply = await node(tmp_path, lvs).drain({"target": "10.12.49.36:25", "wait": 5})
    assert reply == {"ok": True, "active": 0,
                     "message": "drained 10.12.49.36:25; no active session left"}
    assert lvs.calls == [((DrainTarget(RS.ip, 25),), True)]


async def test_drain_reports_sessions_left_when_the_wait_ends(tmp_path: Path) -> None:
    reply = await node(tmp_path, FakeLvs(True, [4])).drain({"target": "10.12.49.36",
                                                             "wait": 0.3})
    assert reply["ok"] is False and reply["active"] == 4
    assert "4 session(s) still active after 0.3s" in reply["error"]


async def test_a_node_that_does_not_program_the_service_names_the_master(tmp_path: Path) -> None:
    lvs = FakeLvs(False, [0])
    reply = await node(tmp_path, lvs).drain({"target": "10.12.49.36:25"})
    assert reply["ok"] is False
    assert "not the VRRP master of VI_postfix" in reply["error"]
    assert "run `mailha drain 10.12.49.36:25` on the master" in reply["error"]
    assert lvs.calls == []


async def test_bad_and_unknown_targets(tmp_path: Path) -> None:
    n = node(tmp_path, FakeLvs(True, [0]))
    assert "not local, IP" in (await n.drain({"target": "mail2"}))["error"]
    assert "no real server" in (await n.drain({"target": "10.0.0.1"}))["error"]
    assert "needs a target" in (await n.drain({}))["error"]
    assert (await n.undrain({"target": "10.12.49.36"}))["message"] == "undrained 10.12.49.36:25"


async def test_undrain_of_one_port_does_not_hide_a_drain_of_the_whole_address(
    tmp_path: Path,
) -> None:
    lvs = FakeLvs(True, [0])
    lvs.drained = {DrainTarget(RS.ip): 0.0}
    reply = await node(tmp_path, lvs).undrain({"target": "10.12.49.36:25"})
    assert reply["ok"] is False
    assert "still drained by 10.12.49.36: undrain that" in reply["error"]


async def test_a_bad_wait_is_refused_before_anything_is_drained(tmp_path: Path) -> None:
    """The reply said "wait must be ..." but the real server was drained already."""
    for wait in (-1, "soon", True):
        lvs = FakeLvs(True, [0])
        reply = await node(tmp_path, lvs).drain({"target": "10.12.49.36:25", "wait": wait})
        assert reply["ok"] is False and "wait must be" in reply["error"], wait
        assert lvs.calls == []
