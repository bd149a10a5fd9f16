"""The daemon's VRRP view: metrics of instances a reload retires, and ``status``.

Nodes here are never started: fake drivers stand in for :class:`InstanceDriver` (which
needs a raw socket), so this runs without root.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mailha.config import Config, loads
from mailha.daemon import Node
from mailha.vrrp.events import State
from mailha.vrrp.track_scripts import ScriptRun


def _config(tmp: Path, instances: str = "") -> Config:
    text = (f'[global]\nrouter_id = "t"\n[metrics]\nenabled = false\n[control]\n'
            f'socket = "{tmp / "ctl.sock"}"\n{instances}')
    return loads(text, tmp / "mailha.toml")


INSTANCE = '''
[vrrp_instance.VI_postfix]
interface = "lo"
virtual_router_id = 173
virtual_ipaddress = ["10.12.49.37/24"]
'''


class FakeDriver:
    def __init__(self, config: Config, name: str, state: State = State.BACKUP) -> None:
        self.cfg = config.instance(name)
        self.state = state
        self.priority = self.cfg.priority
        self.machine: Any = None
        self.primary = None
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True


async def test_a_reload_that_removes_an_instance_drops_its_series(tmp_path: Path) -> None:
    """Left behind at STOPPED, they would read as "no master" to MailhaNoMaster for ever."""
    old = _config(tmp_path, INSTANCE)
    node = Node(old)
    driver = FakeDriver(old, "VI_postfix")
    node.instances["VI_postfix"] = driver  # type: ignore[assignment]
    node.metrics.set_vrrp_state("VI_postfix", 173, "STOPPED")
    node.metrics.vrrp_adverts_sent.labels("VI_postfix", 173).inc()
    node.metrics.set_vrrp_state("VI_elsewhere", 51, "MASTER")
    try:
        message = await node._apply(_config(tmp_path))
    finally:
        if node.scripts is not None:
            await node.scripts.stop()
    assert "removed instance VI_postfix" in message
    assert driver.stopped and node.instances == {}
    body = node.metrics.render().decode()
    assert 'vrrp_instance="VI_postfix"' not in body
    assert 'mailha_vrrp_state{state="MASTER",vrid="51",vrrp_instance="VI_elsewhere"} 1.0' in body


TRACKED = '''
[vrrp_script.chk_postfix]
script = "/opt/postfix.check.sh"

[vrrp_script.chk_load]
script = "/opt/load.sh"
weight = -30

[vrrp_instance.VI_postfix]
interface = "lo"
virtual_router_id = 173
virtual_ipaddress = ["10.12.49.37/24"]
track_script = ["chk_postfix", "chk_load"]
track_interface = ["eth1"]
'''


class FakeMachine:
    master_address = None
    faults = frozenset({"tracking"})


class FakeScripts:
    def states(self) -> dict[str, bool | None]:
        return {"chk_postfix": False, "chk_load": True}

    def runs(self) -> dict[str, ScriptRun]:
        return {"chk_postfix": ScriptRun("fail", time.time() - 3)}


async def test_status_shows_tracking_and_why_an_instance_is_in_fault(tmp_path: Path) -> None:
    config = _config(tmp_path, TRACKED)
    node = Node(config)
    driver = FakeDriver(config, "VI_postfix", State.FAULT)
    driver.machine = FakeMachine()
    node.instances["VI_postfix"] = driver  # type: ignore[assignment]
    node.scripts = FakeScripts()  # type: ignore[assignment]
    node.link_up = {"lo": True, "eth1": True}
    (inst,) = (await node.status())["instances"]
    assert inst["state"] == "FAULT"
    assert inst["faults"] == ["tracking"]
    assert inst["fault_reasons"] == ["track script chk_postfix failed (last run: fail)"]
    scripts = {s["name"]: s for s in inst["track_scripts"]}
    assert scripts["chk_postfix"]["ok"] is False
    assert scripts["chk_postfix"]["last_result"] == "fail"
    assert 2.5 <= scripts["chk_postfix"]["age"] <= 10
    assert (scripts["chk_load"]["weight"], scripts["chk_load"]["applied"]) == (-30, 0)
    assert scripts["chk_load"]["last_run"] is None
    assert [(i["name"], i["up"], i["primary"]) for i in inst["track_interfaces"]] == [
        ("eth1", True, False), ("lo", True, True)]
    json.dumps(inst)  # what the control socket sends

    node.link_up["eth1"] = False
    (inst,) = (await node.status())["instances"]
    assert inst["fault_reasons"] == ["track script chk_postfix failed (last run: fail)",
                                     "interface eth1 is down"]


async def test_status_of_a_healthy_instance_has_no_fault_reasons(tmp_path: Path) -> None:
    config = _config(tmp_path, TRACKED)
    node = Node(config)
    node.instances["VI_postfix"] = FakeDriver(config, "VI_postfix")  # type: ignore[assignment]
    node.link_up = {"lo": True, "eth1": True}
    (inst,) = (await node.status())["instances"]  # no script runner yet: nothing reported
    assert inst["fault_reasons"] == []
    assert [s["ok"] for s in inst["track_scripts"]] == [None, None]


class RecordingDriver(FakeDriver):
    """Stands in for InstanceDriver's constructor in the daemon: keeps its arguments."""

    made: list[dict[str, Any]] = []

    def __init__(self, inst: Any, _glob: Any, **kwargs: Any) -> None:
        self.cfg = inst
        self.state = State.INIT
        self.priority = inst.priority
        self.machine = None
        self.primary = None
        RecordingDriver.made.append(kwargs)

    async def start(self, _tracking: object) -> None:
        self.machine = object()

    def update_tracking(self, _result: object) -> None:
        pass


class FakeLvs:
    loopback_vips = frozenset({"10.12.49.37"})

    async def reconfigure(self, _config: Config) -> None:
        pass


async def test_an_instance_restarted_by_a_reload_knows_what_the_dr_role_holds_on_lo(
        tmp_path: Path, monkeypatch: Any) -> None:
    """At start a driver is told the DR role's VIPs on lo (so a stale copy of its VIP
    there is removed, but not the DR role's own); a reload's restarted driver was not
    told, so it never cleaned lo."""
    monkeypatch.setattr("mailha.daemon.InstanceDriver", RecordingDriver)
    RecordingDriver.made = []
    old = _config(tmp_path, INSTANCE)
    node = Node(old)
    node.instances["VI_postfix"] = FakeDriver(old, "VI_postfix")  # type: ignore[assignment]
    node.lvs = FakeLvs()  # type: ignore[assignment]
    new = _config(tmp_path, INSTANCE.replace("virtual_router_id = 173", "virtual_router_id = 174"))
    assert await node._apply(new) == "restarted instance VI_postfix"
    (made,) = RecordingDriver.made
    assert made["loopback_vips"] == frozenset({"10.12.49.37"})
