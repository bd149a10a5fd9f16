"""One VRRP instance's part of ``mailha status``: who is master, from where it stands."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from mailha.config import loads
from mailha.status_reply import instance_status
from mailha.vrrp.events import State
from mailha.vrrp.track_scripts import TrackingStatus

NO_TRACKING: TrackingStatus = {"track_scripts": [], "track_interfaces": [], "fault_reasons": []}


def instance(tmp_path: Path):  # type: ignore[no-untyped-def]
    return loads(f"""
[control]
socket = "{tmp_path}/s.sock"
[vrrp_instance.VI_postfix]
interface = "eth0"
virtual_router_id = 173
priority = 100
virtual_ipaddress = ["10.12.49.37/24"]
""", tmp_path / "m.toml").vrrp_instances[0]


def test_a_backup_names_the_master_it_hears(tmp_path: Path) -> None:
    got = instance_status(instance(tmp_path), State.BACKUP, 100,
                          master_address=IPv4Address("10.12.49.36"),
                          primary=IPv4Address("10.12.49.35"), faults=(), tracking=NO_TRACKING)
    assert got["master"] == "10.12.49.36" and got["state"] == "BACKUP"
    assert got["vips"] == ["10.12.49.37/24"] and got["vrid"] == 173


def test_a_master_names_itself_and_a_fault_lists_its_sources_sorted(tmp_path: Path) -> None:
    cfg = instance(tmp_path)
    me = IPv4Address("10.12.49.35")
    master = instance_status(cfg, State.MASTER, 200, master_address=None, primary=me,
                             faults=(), tracking=NO_TRACKING)
    assert master["master"] == "10.12.49.35" and master["priority"] == 200
    assert master["base_priority"] == 100
    fault = instance_status(cfg, State.FAULT, 0, master_address=None, primary=me,
                            faults=frozenset({"script:chk", "link:eth0"}), tracking=NO_TRACKING)
    assert fault["master"] is None and fault["faults"] == ["link:eth0", "script:chk"]
