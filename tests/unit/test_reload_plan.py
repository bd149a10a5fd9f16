"""What a reload restarts, from the two configurations alone (no daemon, no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailha.config import loads
from mailha.config.model import Config
from mailha.reload_plan import ReloadPlan, plan_reload

BASE = {
    "global": 'router_id = "n1"',
    "instance": 'interface = "eth0"\nvirtual_router_id = 173\npriority = 100\n'
                'virtual_ipaddress = ["10.12.49.37/24"]',
    "second": 'interface = "eth0"\nvirtual_router_id = 174\npriority = 100\n'
              'virtual_ipaddress = ["10.12.49.38/24"]',
    "metrics": "enabled = false",
}


def config(tmp_path: Path, **change: str) -> Config:
    parts = {**BASE, **change}
    text = (f"[global]\n{parts['global']}\n[metrics]\n{parts['metrics']}\n"
            f"[control]\nsocket = \"{tmp_path}/m.sock\"\n"
            f"[vrrp_instance.VI_1]\n{parts['instance']}\n")
    if parts["second"]:
        text += f"[vrrp_instance.VI_2]\n{parts['second']}\n"
    return loads(text, tmp_path / "m.toml")


RUNNING = ("VI_1", "VI_2")


def test_nothing_changed_plans_nothing(tmp_path: Path) -> None:
    assert plan_reload(config(tmp_path), config(tmp_path), RUNNING) == ReloadPlan()


@pytest.mark.parametrize("instance, expected", [
    # soft: taken in place, the master keeps its VIP
    ('interface = "eth0"\nvirtual_router_id = 173\npriority = 150\n'
     'virtual_ipaddress = ["10.12.49.37/24"]', "in_place"),
    ('interface = "eth0"\nvirtual_router_id = 173\npriority = 100\n'
     'virtual_ipaddress = ["10.12.49.37/24", "10.12.49.40/24"]', "in_place"),
    # identity on the wire: restart
    ('interface = "eth0"\nvirtual_router_id = 99\npriority = 100\n'
     'virtual_ipaddress = ["10.12.49.37/24"]', "restart"),
    ('interface = "eth0"\nvirtual_router_id = 173\npriority = 100\nadvert_int = 2\n'
     'virtual_ipaddress = ["10.12.49.37/24"]', "restart"),
    # becoming the address owner changes the election's rules
    ('interface = "eth0"\nvirtual_router_id = 173\npriority = 255\n'
     'virtual_ipaddress = ["10.12.49.37/24"]', "restart"),
    # another address family needs another socket
    ('interface = "eth0"\nvirtual_router_id = 173\npriority = 100\n'
     'virtual_ipaddress = ["2001:db8::37/64"]', "restart"),
])
def test_soft_settings_are_taken_in_place_and_the_rest_restarts(
        tmp_path: Path, instance: str, expected: str) -> None:
    plan = plan_reload(config(tmp_path), config(tmp_path, instance=instance), RUNNING)
    assert getattr(plan, expected) == ("VI_1",)
    assert plan.started == (("VI_1",) if expected == "restart" else ())


def test_an_instance_not_started_yet_is_restarted_not_reconfigured(tmp_path: Path) -> None:
    soft = BASE["instance"].replace("priority = 100", "priority = 150")
    plan = plan_reload(config(tmp_path), config(tmp_path, instance=soft), ["VI_2"])
    assert plan.restart == ("VI_1",) and plan.in_place == ()


def test_removed_and_added_instances(tmp_path: Path) -> None:
    plan = plan_reload(config(tmp_path), config(tmp_path, second=""), RUNNING)
    assert plan.retire == ("VI_2",) and plan.scripts
    plan = plan_reload(config(tmp_path, second=""), config(tmp_path), ["VI_1"])
    assert plan.add == ("VI_2",) and plan.started == ("VI_2",)
    assert plan.describe() == "added instance VI_2"


def test_a_global_change_reconsiders_every_instance_and_the_lvs_side(tmp_path: Path) -> None:
    plan = plan_reload(config(tmp_path),
                       config(tmp_path, **{"global": 'router_id = "n1"\nvrrp_version = 3'}),
                       RUNNING)
    assert plan.restart == ("VI_1", "VI_2") and plan.lvs
    assert not plan.operations


def test_the_metrics_section_restarts_only_the_operations_parts(tmp_path: Path) -> None:
    plan = plan_reload(config(tmp_path),
                       config(tmp_path, metrics='enabled = false\nport = 9999'), RUNNING)
    assert plan == ReloadPlan(operations=True)
    assert plan.describe() == "metrics and control socket restarted"
