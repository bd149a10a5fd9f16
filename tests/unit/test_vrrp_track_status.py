"""What ``mailha status`` says about tracking: scripts, interfaces, and why FAULT (issue 10).

:func:`mailha.vrrp.track_scripts.tracking_status` is pure: configuration, debounced states, last
runs and the clock go in, the typed status comes out. The runner's bookkeeping of the
last run is checked with real (trivial) commands.
"""

from __future__ import annotations

import shutil

import pytest

from mailha.config.model import (
    ScriptCommand,
    TrackedInterface,
    TrackedScript,
    VrrpInstance,
    VrrpScript,
)
from mailha.metrics import Metrics
from mailha.vrrp.track_scripts import ScriptRun, ScriptRunner, tracking_status

CHK = VrrpScript(name="chk_postfix", script=ScriptCommand(("/opt/postfix.check.sh",)))
HEAVY = VrrpScript(name="chk_load", script=ScriptCommand(("/bin/true",)), weight=-30)
SCRIPTS = {s.name: s for s in (CHK, HEAVY)}
NOW = 1_764_561_000.0


def instance(**changes: object) -> VrrpInstance:
    base: dict[str, object] = {
        "name": "VI_postfix", "interface": "eth0", "virtual_router_id": 173,
        "track_script": (TrackedScript("chk_postfix"), TrackedScript("chk_load")),
        "track_interface": (TrackedInterface("eth1"),),
    }
    base.update(changes)
    return VrrpInstance(**base)  # type: ignore[arg-type]


def test_a_failed_weight_0_script_is_the_reason_for_fault() -> None:
    st = tracking_status(
        instance(), SCRIPTS, {"chk_postfix": False, "chk_load": True},
        {"eth0": True, "eth1": True},
        {"chk_postfix": ScriptRun("timeout", NOW - 2.04), "chk_load": ScriptRun("ok", NOW - 0.5)},
        now=NOW, in_fault=True,
    )
    assert st["track_scripts"] == [
        {"name": "chk_postfix", "ok": False, "last_result": "timeout", "last_run": NOW - 2.04,
         "age": 2.0, "weight": 0, "reverse": False, "applied": 0, "faulted": True},
        {"name": "chk_load", "ok": True, "last_result": "ok", "last_run": NOW - 0.5,
         "age": 0.5, "weight": -30, "reverse": False, "applied": 0, "faulted": False},
    ]
    assert st["track_interfaces"] == [
        {"name": "eth1", "up": True, "primary": False, "weight": 0, "reverse": False,
         "applied": 0, "faulted": False},
        {"name": "eth0", "up": True, "primary": True, "weight": 0, "reverse": False,
         "applied": 0, "faulted": False},
    ]
    assert st["fault_reasons"] == ["track script chk_postfix failed (last run: timeout)"]


def test_weights_applied_and_no_reasons_outside_fault() -> None:
    inst = instance(track_script=(TrackedScript("chk_postfix", weight=20),
                                  TrackedScript("chk_load")))
    st = tracking_status(inst, SCRIPTS, {"chk_postfix": True, "chk_load": False},
                         {"eth0": True, "eth1": True}, {}, now=NOW, in_fault=False)
    assert [(s["name"], s["weight"], s["applied"]) for s in st["track_scripts"]] == [
        ("chk_postfix", 20, 20), ("chk_load", -30, -30)]
    assert [s["last_run"] for s in st["track_scripts"]] == [None, None]
    assert [s["age"] for s in st["track_scripts"]] == [None, None]
    assert st["fault_reasons"] == []


def test_a_link_down_and_a_script_not_reported_yet_are_both_named() -> None:
    st = tracking_status(instance(), SCRIPTS, {"chk_postfix": None, "chk_load": True},
                         {"eth0": False, "eth1": False}, {}, now=NOW, in_fault=True)
    assert st["fault_reasons"] == [
        "track script chk_postfix has not reported yet",
        "interface eth1 is down",
        "interface eth0 is down (the instance's own interface)",
    ]
    assert [i["up"] for i in st["track_interfaces"]] == [False, False]


def test_reverse_tracking_faults_while_the_object_is_up() -> None:
    inst = instance(track_script=(TrackedScript("chk_postfix", reverse=True),),
                    track_interface=(TrackedInterface("eth1", reverse=True),),
                    dont_track_primary=True)
    st = tracking_status(inst, SCRIPTS, {"chk_postfix": True}, {"eth0": False, "eth1": True},
                         {}, now=NOW, in_fault=True)
    assert st["fault_reasons"] == [
        "track script chk_postfix succeeds (tracked with reverse)",
        "interface eth1 is up (tracked with reverse)",
    ]
    assert [i["name"] for i in st["track_interfaces"]] == ["eth1"]  # dont_track_primary


def test_a_link_nobody_has_seen_is_unknown() -> None:
    st = tracking_status(instance(track_script=()), SCRIPTS, {}, {"eth0": True}, {},
                         now=NOW, in_fault=True)
    assert st["track_interfaces"][0]["up"] is None
    assert st["fault_reasons"] == ["interface eth1: link state unknown (no such interface?)"]


def test_fault_without_a_tracked_cause_falls_back_to_the_machines_sources() -> None:
    st = tracking_status(instance(track_script=(), track_interface=()), SCRIPTS, {},
                         {"eth0": True}, {}, now=NOW, in_fault=True, fault_sources={"tracking"})
    assert st["fault_reasons"] == ["fault source: tracking"]


@pytest.mark.parametrize(("argv", "outcome"), [
    (("true",), "ok"), (("false",), "fail"), (("/nonexistent/check",), "fail")])
async def test_the_runner_remembers_each_scripts_last_run(argv: tuple[str, ...],
                                                          outcome: str) -> None:
    path = shutil.which(argv[0]) or argv[0]
    script = VrrpScript(name="chk", script=ScriptCommand((path, *argv[1:])), timeout=5)
    runner = ScriptRunner([script], default_user=None, default_group=None, metrics=Metrics(),
                          on_change=lambda _n, _ok: None)
    assert runner.runs() == {}
    await runner.run_once(script)
    run = runner.runs()["chk"]
    assert run.outcome == outcome
    import time
    assert abs(time.time() - run.at) < 5
