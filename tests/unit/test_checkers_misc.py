"""MISC_CHECK: exit-status rules (keepalived's check_misc.c) and process hygiene.

Scripts really run (through mailha.procs.run_script); each test checks that nothing it
started is left running.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mailha.checkers import check_misc
from mailha.checkers.misc import judge
from mailha.config.model import CheckerCommon, MiscCheck, RealServer, ScriptCommand
from mailha.procs import ScriptResult

RS = RealServer(ip=IPv4Address("127.0.0.1"), port=25)


def script(tmp_path: Path, body: str) -> ScriptCommand:
    path = tmp_path / f"check-{uuid.uuid4().hex[:8]}.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return ScriptCommand((str(path),))


def misc(
    command: ScriptCommand,
    *,
    dynamic: bool = False,
    timeout: float | None = 5.0,
    delay_loop: float = 60.0,
) -> MiscCheck:
    return MiscCheck(
        misc_path=command,
        misc_timeout=timeout,
        misc_dynamic=dynamic,
        common=CheckerCommon(delay_loop=delay_loop, retry=0),
    )


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    ("status", "dynamic", "ok", "reason", "weight"),
    [
        (0, False, True, "ok", None),
        (1, False, False, "exit_status_1", None),
        (2, False, False, "exit_status_2", None),  # without misc_dynamic 2-255 is a failure
        (42, False, False, "exit_status_42", None),
        (0, True, True, "ok", None),  # dynamic + 0: up, weight unchanged
        (1, True, False, "exit_status_1", None),
        (2, True, True, "ok", 0),
        (12, True, True, "ok", 10),
        (255, True, True, "ok", 253),
    ],
)
async def test_exit_status_rules(
    tmp_path: Path, status: int, dynamic: bool, ok: bool, reason: str, weight: int | None
) -> None:
    result = await check_misc(misc(script(tmp_path, f"exit {status}"), dynamic=dynamic), RS)
    assert (result.ok, result.reason, result.dynamic_weight) == (ok, reason, weight)


async def test_failure_detail_carries_the_scripts_last_words(tmp_path: Path) -> None:
    command = script(tmp_path, 'echo "checking"; echo "postfix master not running" >&2; exit 1')
    result = await check_misc(misc(command), RS)
    assert result.reason == "exit_status_1"
    assert "postfix master not running" in result.detail


async def test_hung_script_is_killed_at_misc_timeout(tmp_path: Path) -> None:
    marker = f"{time.time_ns() % 10**6}.{os.getpid()}"
    started = time.monotonic()
    result = await check_misc(misc(script(tmp_path, f"exec sleep {marker}"), timeout=0.3), RS)
    elapsed = time.monotonic() - started
    assert result.reason == "timeout_killed"
    assert elapsed < 2.0
    assert processes_with(marker) == []


async def test_misc_timeout_defaults_to_delay_loop(tmp_path: Path) -> None:
    marker = f"{time.time_ns() % 10**6}.{os.getpid()}1"
    command = script(tmp_path, f"exec sleep {marker}")
    started = time.monotonic()
    result = await check_misc(misc(command, timeout=None, delay_loop=0.3), RS)
    assert result.reason == "timeout_killed"
    assert time.monotonic() - started < 2.0


async def test_grandchild_ignoring_sigterm_is_killed_too(tmp_path: Path) -> None:
    marker = f"{time.time_ns() % 10**6}.{os.getpid()}2"
    body = f"""
(trap '' TERM; exec sleep {marker}) >/dev/null 2>&1 &
trap '' TERM
sleep 30
"""
    started = time.monotonic()
    result = await check_misc(misc(script(tmp_path, body), timeout=0.3), RS)
    assert result.reason == "timeout_killed"
    assert time.monotonic() - started < 3.0
    await asyncio.sleep(0.1)  # SIGKILL is delivered, not necessarily acted on, at once
    assert processes_with(marker) == []


async def test_background_leftover_of_a_finished_script_is_killed(tmp_path: Path) -> None:
    marker = f"{time.time_ns() % 10**6}.{os.getpid()}3"
    body = f"(exec sleep {marker}) >/dev/null 2>&1 &\nexit 0"
    try:
        result = await check_misc(misc(script(tmp_path, body)), RS)
        assert result.ok
        await asyncio.sleep(0.05)
        assert processes_with(marker) == []
    finally:
        for pid in processes_with(marker):
            os.kill(pid, 9)


async def test_script_killed_by_a_signal(tmp_path: Path) -> None:
    result = await check_misc(misc(script(tmp_path, "kill -SEGV $$")), RS)
    assert result.reason == "killed_sigsegv"


async def test_missing_script_fails_like_a_shell(tmp_path: Path) -> None:
    result = await check_misc(misc(ScriptCommand((str(tmp_path / "nope"),))), RS)
    assert result.reason == "exit_status_127"


async def test_unknown_user_is_a_script_error(tmp_path: Path) -> None:
    command = ScriptCommand(script(tmp_path, "exit 0").argv, user="mhE-no-such-user")
    result = await check_misc(misc(command), RS)
    assert result.reason == "script_error"
    assert "mhE-no-such-user" in result.detail


def test_judge_unknown_signal_number() -> None:
    check = misc(ScriptCommand(("/x",)))
    verdict = judge(check, ScriptResult(None, 99, False, 0.1, ""), 0.1)
    assert verdict.reason == "killed_signal_99"
