"""mailha.notify: keepalived's notify argument convention, ordering, failure logging."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from mailha.notify import (
    Notifier,
    NotifyOutcome,
    NotifyScript,
    NotifyScripts,
    NotifyState,
    notify_commands,
)
from mailha.procs import ScriptError

M = NotifyScript(("/etc/mailha/to_master.sh",))
B = NotifyScript(("/etc/mailha/to_backup.sh",))
F = NotifyScript.parse('"/etc/mailha/fault.sh VG_1"')  # quoted: one word with a space
F2 = NotifyScript.parse("/etc/mailha/fault.sh VG_1")
S = NotifyScript(("/etc/mailha/stop.sh",))
G = NotifyScript.parse("/usr/bin/notify-all --verbose", user="nobody")


def test_parse_uses_keepalived_quoting() -> None:
    assert F.argv == ("/etc/mailha/fault.sh VG_1",)
    assert F2.argv == ("/etc/mailha/fault.sh", "VG_1")
    assert G.argv == ("/usr/bin/notify-all", "--verbose")
    assert G.user == "nobody"
    with pytest.raises(ScriptError, match="empty notify command"):
        NotifyScript.parse("   ")


def test_specific_script_gets_no_extra_arguments() -> None:
    scripts = NotifyScripts(master=M, backup=B, fault=F2)
    assert notify_commands(scripts, "INSTANCE", "VI_1", NotifyState.MASTER, 200) == [(M, M.argv)]
    assert notify_commands(scripts, "INSTANCE", "VI_1", NotifyState.FAULT, 0) == [
        (F2, ("/etc/mailha/fault.sh", "VG_1"))
    ]


def test_generic_script_runs_after_specific_with_four_arguments() -> None:
    scripts = NotifyScripts(master=M, generic=G)
    runs = notify_commands(scripts, "INSTANCE", "VI_1", NotifyState.MASTER, 200)
    assert runs == [
        (M, M.argv),
        (G, ("/usr/bin/notify-all", "--verbose", "INSTANCE", "VI_1", "MASTER", "200")),
    ]


def test_generic_script_alone() -> None:
    runs = notify_commands(NotifyScripts(generic=G), "INSTANCE", "mail", NotifyState.BACKUP, 100)
    assert [argv for _, argv in runs] == [
        ("/usr/bin/notify-all", "--verbose", "INSTANCE", "mail", "BACKUP", "100")
    ]


def test_group_priority_is_always_zero() -> None:
    runs = notify_commands(NotifyScripts(generic=G), "GROUP", "SG", NotifyState.MASTER, 250)
    assert runs[0][1][-4:] == ("GROUP", "SG", "MASTER", "0")


def test_stop_and_deleted_are_for_instances_only() -> None:
    scripts = NotifyScripts(stop=S, generic=G)
    runs = notify_commands(scripts, "INSTANCE", "VI_1", NotifyState.STOP, 100)
    assert runs == [(S, S.argv), (G, (*G.argv, "INSTANCE", "VI_1", "STOP", "100"))]
    deleted = notify_commands(NotifyScripts(generic=G), "INSTANCE", "VI_1",
                              NotifyState.DELETED, 100)
    assert deleted[0][1][-2:] == ("DELETED", "100")
    for state in (NotifyState.STOP, NotifyState.DELETED):
        with pytest.raises(ValueError, match="instances only"):
            notify_commands(scripts, "GROUP", "SG", state, 0)


def test_master_rx_lower_pri_is_not_passed_to_generic() -> None:
    lower = NotifyScript(("/x/lower.sh",))
    scripts = NotifyScripts(master_rx_lower_pri=lower, generic=G)
    runs = notify_commands(scripts, "INSTANCE", "VI_1", NotifyState.MASTER_RX_LOWER_PRI, 200)
    assert runs == [(lower, lower.argv)]


def test_nothing_configured_means_nothing_to_run() -> None:
    assert notify_commands(NotifyScripts(), "INSTANCE", "VI_1", NotifyState.MASTER, 1) == []


def test_bad_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="INSTANCE or GROUP"):
        notify_commands(NotifyScripts(), "SERVER", "x", NotifyState.MASTER, 1)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Notifier, real scripts


def _recorder(tmp_path: Path, name: str, delay: float = 0.0) -> NotifyScript:
    """A real script appending its name and arguments to a shared log file."""
    log = tmp_path / "calls.log"
    code = (
        "import sys, time; time.sleep(float(sys.argv[2])); "
        "open(sys.argv[1], 'a').write(' '.join(sys.argv[3:]) + '\\n')"
    )
    return NotifyScript((sys.executable, "-c", code, str(log), str(delay), name))


async def test_notify_does_not_block_and_runs_in_transition_order(tmp_path: Path) -> None:
    slow_master = _recorder(tmp_path, "master", delay=0.3)
    backup = _recorder(tmp_path, "backup")
    generic = _recorder(tmp_path, "generic")
    scripts = NotifyScripts(master=slow_master, backup=backup, generic=generic)
    async with Notifier(timeout=10) as notifier:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert notifier.notify(scripts, "INSTANCE", "VI_1", NotifyState.MASTER, 200) == 2
        assert notifier.notify(scripts, "INSTANCE", "VI_1", NotifyState.BACKUP, 100) == 2
        assert loop.time() - t0 < 0.2  # queued, not run (the first script sleeps 0.3 s)
        await asyncio.wait_for(notifier.drain(), 20)
    lines = (tmp_path / "calls.log").read_text().splitlines()
    assert lines == [
        "master",
        "generic INSTANCE VI_1 MASTER 200",
        "backup",
        "generic INSTANCE VI_1 BACKUP 100",
    ]


async def test_failure_is_logged_with_output_tail(caplog: pytest.LogCaptureFixture) -> None:
    failing = NotifyScript(("/bin/sh", "-c", "echo 'cannot reach pager' >&2; exit 4"))
    outcomes: list[NotifyOutcome] = []
    caplog.set_level(logging.WARNING, logger="mailha.notify")
    async with Notifier(timeout=5, on_result=outcomes.append) as notifier:
        notifier.notify(NotifyScripts(fault=failing), "INSTANCE", "VI_1", NotifyState.FAULT, 0)
        await asyncio.wait_for(notifier.drain(), 10)
    assert len(outcomes) == 1 and outcomes[0].result is not None
    assert outcomes[0].result.status == 4
    assert "exit 4" in caplog.text
    assert "cannot reach pager" in caplog.text


async def test_timeout_kills_a_hung_notify_script(caplog: pytest.LogCaptureFixture) -> None:
    hung = NotifyScript(("/bin/sh", "-c", "sleep 30"))
    outcomes: list[NotifyOutcome] = []
    async with Notifier(timeout=0.2, on_result=outcomes.append) as notifier:
        notifier.notify(NotifyScripts(master=hung), "INSTANCE", "VI_1", NotifyState.MASTER, 1)
        await asyncio.wait_for(notifier.drain(), 10)
    assert outcomes[0].result is not None and outcomes[0].result.timed_out


async def test_unknown_user_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    ghost = NotifyScript(("/bin/true",), user="no-such-user-mhf")
    outcomes: list[NotifyOutcome] = []
    async with Notifier(timeout=5, on_result=outcomes.append) as notifier:
        notifier.notify(NotifyScripts(backup=ghost), "INSTANCE", "VI_1", NotifyState.BACKUP, 1)
        await asyncio.wait_for(notifier.drain(), 10)
    assert outcomes[0].result is None
    assert outcomes[0].error == "script user 'no-such-user-mhf' does not exist"
    assert "not run" in caplog.text


async def test_close_lets_queued_stop_script_finish(tmp_path: Path) -> None:
    stop = _recorder(tmp_path, "stop", delay=0.1)
    notifier = Notifier(timeout=5)
    notifier.notify(NotifyScripts(stop=stop), "INSTANCE", "VI_1", NotifyState.STOP, 100)
    await asyncio.wait_for(notifier.close(grace=5), 10)
    assert (tmp_path / "calls.log").read_text() == "stop\n"
    assert notifier.notify(NotifyScripts(stop=stop), "INSTANCE", "VI_1",
                           NotifyState.STOP, 100) == 0


async def test_instances_do_not_wait_for_each_other(tmp_path: Path) -> None:
    # A's script waits until B's has run: if B's waited for A's to end, A's would give up
    # after 8 s and log "slow-gave-up". No timing is assumed, so a loaded machine
    # cannot flip the order (a sleep-based version failed under load).
    log = tmp_path / "calls.log"
    waiter = (
        "import os, sys, time\n"
        "deadline = time.monotonic() + 8\n"
        "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "word = 'slow' if os.path.exists(sys.argv[1]) else 'slow-gave-up'\n"
        "open(sys.argv[1], 'a').write(word + '\\n')\n"
    )
    slow = NotifyScript((sys.executable, "-c", waiter, str(log)))
    fast = _recorder(tmp_path, "fast")
    async with Notifier(timeout=10) as notifier:
        notifier.notify(NotifyScripts(master=slow), "INSTANCE", "A", NotifyState.MASTER, 1)
        notifier.notify(NotifyScripts(master=fast), "INSTANCE", "B", NotifyState.MASTER, 1)
        await asyncio.wait_for(notifier.drain(), 30)
    assert log.read_text().splitlines() == ["fast", "slow"]


def test_config_script_commands_are_accepted() -> None:
    from mailha.config.model import ScriptCommand

    cmd = ScriptCommand(("/usr/local/bin/mail-ha", "--event"), user="nobody")
    runs = notify_commands(NotifyScripts(generic=cmd), "INSTANCE", "VI_1", NotifyState.FAULT, 0)
    assert runs == [(cmd, ("/usr/local/bin/mail-ha", "--event", "INSTANCE", "VI_1", "FAULT", "0"))]
