"""mailha.procs: running scripts without hanging, leaking or zombies; keepalived quoting."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from mailha.procs import (
    ScriptError,
    resolve_credentials,
    run_script,
    split_command,
)

SH = "/bin/sh"


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _zombie_children() -> list[int]:
    """Our own children that have exited but were never reaped."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(entry.name))
    return found


async def _wait_gone(pid: int, limit: float = 2.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        await asyncio.sleep(0.01)
    return not _alive(pid)


# ---------------------------------------------------------------- exit status and output


async def test_exit_status_zero_and_nonzero() -> None:
    ok = await run_script([SH, "-c", "exit 0"], timeout=5)
    bad = await run_script([SH, "-c", "exit 3"], timeout=5)
    assert (ok.status, ok.signal, ok.timed_out, ok.ok) == (0, None, False, True)
    assert (bad.status, bad.signal, bad.timed_out, bad.ok) == (3, None, False, False)
    assert bad.describe() == "exit 3"


async def test_killed_by_signal_reports_signal() -> None:
    res = await run_script([SH, "-c", "kill -USR1 $$"], timeout=5)
    assert res.status is None
    assert res.signal == signal.SIGUSR1
    assert not res.timed_out


async def test_output_combines_stdout_and_stderr() -> None:
    res = await run_script([SH, "-c", "echo out; echo err >&2"], timeout=5)
    assert res.output.splitlines() == ["out", "err"]


async def test_output_keeps_only_the_tail() -> None:
    script = "i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done"
    res = await run_script([SH, "-c", script], timeout=10, output_limit=64)
    assert len(res.output.encode()) <= 64
    assert res.output.endswith("line1999\n")
    assert "line0\n" not in res.output


async def test_output_limit_zero_keeps_nothing() -> None:
    res = await run_script([SH, "-c", "echo hello"], timeout=5, output_limit=0)
    assert res.output == ""
    assert res.status == 0


async def test_environment_is_replaced_when_given() -> None:
    res = await run_script([SH, "-c", 'echo "[$MAILHA_X][$HOME]"'], timeout=5,
                           env={"MAILHA_X": "42"})
    assert res.output.strip() == "[42][]"


async def test_missing_program_is_status_127_with_reason() -> None:
    res = await run_script(["/nonexistent/mailha-script"], timeout=5)
    assert res.status == 127
    assert "No such file" in res.output


async def test_non_executable_is_status_126(tmp_path: Path) -> None:
    script = tmp_path / "plain.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    res = await run_script([str(script)], timeout=5)
    assert res.status == 126


async def test_empty_argv_and_bad_timeout_are_errors() -> None:
    with pytest.raises(ScriptError, match="empty command"):
        await run_script([], timeout=1)
    with pytest.raises(ScriptError, match="timeout must be positive"):
        await run_script([SH, "-c", "true"], timeout=0)


# ---------------------------------------------------------------- timeouts and reaping


async def test_timeout_sigterm_suffices() -> None:
    started = time.monotonic()
    res = await run_script([SH, "-c", "echo started; sleep 30"], timeout=0.2, kill_grace=2)
    assert res.timed_out
    assert res.signal == signal.SIGTERM
    assert res.status is None
    assert "started" in res.output
    assert time.monotonic() - started < 5  # bounded, not a performance assertion
    assert _zombie_children() == []


async def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    res = await run_script([SH, "-c", "trap '' TERM; echo armed; while :; do sleep 0.05; done"],
                           timeout=0.3, kill_grace=0.2)
    assert res.timed_out
    assert res.signal == signal.SIGKILL
    assert res.describe() == "killed by SIGKILL after timeout"
    assert _zombie_children() == []


async def test_grandchild_ignoring_sigterm_is_killed_and_pipe_not_awaited(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    # The grandchild ignores SIGTERM, keeps stdout (our pipe) open and outlives its parent
    # unless the whole process group is SIGKILLed.
    script = (
        f"sh -c 'trap \"\" TERM; echo $$ > {pidfile}; while :; do sleep 0.05; done' & "
        "sleep 30"
    )
    res = await asyncio.wait_for(
        run_script([SH, "-c", script], timeout=0.5, kill_grace=0.2), timeout=10
    )
    assert res.timed_out
    grandchild = int(pidfile.read_text())
    assert await _wait_gone(grandchild), f"grandchild {grandchild} survived"
    assert _zombie_children() == []


async def test_exited_script_with_lingering_writer_returns_promptly(tmp_path: Path) -> None:
    # The script exits at once but leaves a background child holding stdout open: the
    # result must not wait for that child; with kill_leftovers=False (notify scripts)
    # the child is left alone.
    pidfile = tmp_path / "bg.pid"
    script = f"sleep 5 & echo $! > {pidfile}; echo done"
    res = await asyncio.wait_for(
        run_script([SH, "-c", script], timeout=10, kill_leftovers=False), timeout=4
    )
    assert res.status == 0
    assert res.output.strip() == "done"
    bg = int(pidfile.read_text())
    assert _alive(bg)
    os.kill(bg, signal.SIGKILL)
    assert await _wait_gone(bg)


async def test_leftovers_of_a_finished_script_are_killed_by_default(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    script = f"sleep 5 & echo $! > {pidfile}; echo done"
    res = await asyncio.wait_for(run_script([SH, "-c", script], timeout=10), timeout=4)
    assert res.status == 0
    assert await _wait_gone(int(pidfile.read_text()))


async def test_cancellation_kills_and_reaps(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    task = asyncio.create_task(
        run_script([SH, "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=30)
    )
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.01)
    child = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _alive(child)
    assert _zombie_children() == []


async def test_many_concurrent_scripts_leave_no_zombies() -> None:
    results = await asyncio.gather(
        *(run_script([SH, "-c", f"exit {i % 4}"], timeout=5) for i in range(30))
    )
    assert [r.status for r in results] == [i % 4 for i in range(30)]
    assert _zombie_children() == []


async def test_loop_stays_responsive_while_script_runs() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    try:
        await run_script([SH, "-c", "sleep 0.3"], timeout=5)
    finally:
        t.cancel()
    assert ticks >= 5  # the loop ran while we waited: nothing blocked it


# ---------------------------------------------------------------- privileges


def test_unknown_user_and_group_are_clear_errors() -> None:
    with pytest.raises(ScriptError, match="script user 'no-such-user-mhf' does not exist"):
        resolve_credentials("no-such-user-mhf")
    with pytest.raises(ScriptError, match="script group 'no-such-group-mhf' does not exist"):
        resolve_credentials("nobody", "no-such-group-mhf")


def test_group_defaults_to_users_primary_group() -> None:
    import pwd

    creds = resolve_credentials("nobody")
    assert creds.uid == pwd.getpwnam("nobody").pw_uid
    assert creds.gid == pwd.getpwnam("nobody").pw_gid


async def test_unknown_user_raises_before_running() -> None:
    with pytest.raises(ScriptError, match="does not exist"):
        await run_script([SH, "-c", "true"], timeout=1, user="no-such-user-mhf")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
async def test_runs_as_nobody_without_supplementary_groups() -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    res = await run_script([SH, "-c", "id -u; id -g; id -G"], timeout=5, user="nobody")
    uid, gid, groups = res.output.split("\n")[:3]
    assert res.status == 0, res.output
    assert int(uid) == nobody.pw_uid
    assert int(gid) == nobody.pw_gid
    assert groups.split() == [str(nobody.pw_gid)]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching group needs root")
async def test_explicit_group_is_used() -> None:
    import grp

    nogroup = grp.getgrnam("nogroup").gr_gid
    res = await run_script([SH, "-c", "id -g"], timeout=5, user="nobody", group="nogroup")
    assert int(res.output.strip()) == nogroup


# ---------------------------------------------------------------- quoting (keepalived.conf(5))


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("/bin/check", ["/bin/check"]),
        ("  /bin/check   a\tb  ", ["/bin/check", "a", "b"]),
        # the manual's own examples
        ('abcd" efg h jkl "mnop', ["abcd efg h jkl mnop"]),
        ('abcd "efg h jkl" mnop', ["abcd", "efg h jkl", "mnop"]),
        ("/x 'two words' three", ["/x", "two words", "three"]),
        ("""a "it's" 'say "hi"'""", ["a", "it's", 'say "hi"']),
        ('a "" b', ["a", "", "b"]),
        ("", []),
        ("   ", []),
    ],
)
def test_split_command_words_and_quotes(text: str, argv: list[str]) -> None:
    assert split_command(text) == argv


@pytest.mark.parametrize(
    ("text", "word"),
    [
        (r"a\ b", "a b"),
        (r"\"quoted\"", '"quoted"'),
        (r"\\", "\\"),
        (r"x\ty", "x\ty"),
        (r"x\ny", "x\ny"),
        (r"\a\b\f\r\v", "\a\b\f\r\v"),
        (r"\E", "\x1b"),
        (r"\101", "A"),
        (r"\1010", "A0"),  # at most three octal digits
        (r"\7", "\x07"),
        (r"\x41", "A"),
        (r"\x4142", "B"),  # every hex digit is consumed; the low byte stays
        (r"\xg", "xg"),  # \x without a hex digit is just x
        (r"\cA", "\x01"),
        (r"\q", "q"),
        (r"'in\tquotes'", "in\tquotes"),  # escapes work even inside single quotes
    ],
)
def test_split_command_escapes(text: str, word: str) -> None:
    assert split_command(text) == [word]


def test_split_command_high_bytes_round_trip_through_fsencode() -> None:
    (word,) = split_command(r"\xff\xe9")
    assert os.fsencode(word) == b"\xff\xe9"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"unterminated', 'missing terminating "'),
        ("a 'b", "missing terminating '"),
        ("trailing\\", "missing escaped character"),
        (r"nul\0here", "NUL"),
        (r"nul\x00", "NUL"),
    ],
)
def test_split_command_errors(text: str, reason: str) -> None:
    with pytest.raises(ScriptError, match=reason):
        split_command(text)


async def test_split_command_feeds_run_script() -> None:
    res = await run_script(
        split_command(f"""{sys.executable} -c 'import sys; print(sys.argv[1:])' "a b" c"""),
        timeout=10,
    )
    assert res.output.strip() == "['a b', 'c']"
