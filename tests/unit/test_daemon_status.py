"""The daemon's VRRP view: metrics of instances a reload retires, and ``status``.

Nodes here are never started: fake drivers stand in for :class:`InstanceDriver` (which
needs a raw socket), so this runs without root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailha.config import Config, loads
from mailha.daemon import Node
from mailha.vrrp.events import State


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

    def can_reconfigure(self, *_a: object) -> bool:
        return True


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
