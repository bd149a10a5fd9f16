"""local_watch: the pure rule (state, quorum) and the pidfd watcher on real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mailha.checkers.localwatch import ProcessWatch, read_pidfile
from mailha.checkers.quorum import EventKind, VirtualServerHealth
from mailha.checkers.result import CheckResult
from mailha.config.model import CheckerCommon, RealServer, SmtpCheck, VirtualServer

OK = CheckResult.success("220 ok", 0.001)
FAIL = CheckResult.failure("connection_refused", "refused", 0.001)


def _service(inhibit: bool = False) -> VirtualServerHealth:
    common = CheckerCommon(retry=2, delay_loop=0.5, delay_before_retry=0.2)
    servers = tuple(
        RealServer(ip=IPv4Address(f"10.0.0.{n}"), port=25, inhibit_on_failure=inhibit,
                   checkers=(SmtpCheck(common=common),), local_watch=Path("/x/master.pid"))
        for n in (1, 2))
    return VirtualServerHealth(VirtualServer(ip=IPv4Address("10.0.0.100"), port=25,
                                             real_servers=servers))


def _weights(svc: VirtualServerHealth) -> list[int | None]:
    return [m.weight for m in svc.pool().members]


@pytest.mark.parametrize("inhibit,gone", [(False, None), (True, 0)])
def test_death_takes_the_server_out_at_once_without_retries(
    inhibit: bool, gone: int | None
) -> None:
    svc = _service(inhibit)
    update = svc.set_watch(0, True, "process 42 exited")
    assert update.pool_changed and _weights(svc) == [gone, 1]
    assert [e.kind for e in update.events] == [EventKind.REAL_SERVER_DOWN]
    assert update.events[0].detail == "process 42 exited"


def test_return_needs_a_passing_check_and_in_flight_successes_do_not_count() -> None:
    svc = _service()
    svc.set_watch(0, True, "exited")
    # A check that was in flight when the process died reports success: ignored.
    assert not svc.record(0, 0, OK).pool_changed
    assert _weights(svc) == [None, 1]
    # The process is back: nothing changes until a check passes.
    update = svc.set_watch(0, False, "runs")
    assert not update.pool_changed and _weights(svc) == [None, 1]
    assert not svc.record(0, 0, FAIL).pool_changed
    update = svc.record(0, 0, OK)
    assert update.pool_changed and _weights(svc) == [1, 1]
    assert [e.kind for e in update.events] == [EventKind.REAL_SERVER_UP]


def test_a_watch_saying_alive_changes_nothing_for_a_healthy_server() -> None:
    svc = _service()
    update = svc.set_watch(0, False, "runs")
    assert not update.pool_changed and not update.events and _weights(svc) == [1, 1]


def test_process_and_listener_each_hold_the_server_until_both_are_back() -> None:
    svc = _service()
    # The listener closes (master.cf edited, postfix reload) while the master lives.
    update = svc.set_watch(0, True, "no listening socket accepts 10.0.0.1:25", "listener")
    assert update.pool_changed and _weights(svc) == [None, 1]
    assert update.events[0].detail == "no listening socket accepts 10.0.0.1:25"
    # Then the master dies too: already out, no second event.
    update = svc.set_watch(0, True, "exited", "process")
    assert not update.pool_changed and not update.events
    # The master is back, the listener not yet: a passing check cannot bring it back.
    svc.set_watch(0, False, "runs", "process")
    assert not svc.record(0, 0, OK).pool_changed and _weights(svc) == [None, 1]
    # The listener is back: the block is lifted, the next passing check returns it.
    update = svc.set_watch(0, False, "a listener accepts 10.0.0.1:25", "listener")
    assert not update.pool_changed and _weights(svc) == [None, 1]
    assert svc.record(0, 0, OK).pool_changed and _weights(svc) == [1, 1]


def test_a_reload_that_drops_local_watch_lifts_its_block() -> None:
    """A watch no longer configured never reports again: its "down" must not stick."""
    svc = _service()
    svc.set_watch(0, True, "no listening socket", "listener")
    vs = svc.virtual_server
    unwatched = tuple(replace(rs, local_watch=None) for rs in vs.real_servers)
    after = VirtualServerHealth(replace(vs, real_servers=unwatched), svc)
    assert not after.real_servers[0].watch_down
    kept = VirtualServerHealth(vs, svc)
    assert kept.real_servers[0].watches_down == {"listener"}


def test_read_pidfile(tmp_path: Path) -> None:
    path = tmp_path / "master.pid"
    assert read_pidfile(path) is None
    path.write_text("      4242\n")  # Postfix pads to 10 columns
    found = read_pidfile(path)
    assert found is not None and found[0] == 4242
    for junk in ("", "abc", "1", "-5"):
        path.write_text(junk)
        assert read_pidfile(path) is None


# ---------------------------------------------------------------------- the watcher


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def _sleeper(procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "60"])
    procs.append(proc)
    return proc


async def _until(cond: object, limit: float = 5.0) -> float:
    started = time.monotonic()
    while not cond():  # type: ignore[operator]
        assert time.monotonic() - started < limit, "condition not reached"
        await asyncio.sleep(0.001)
    return time.monotonic() - started


async def test_watch_sees_a_death_at_once_and_a_new_process_after_restart(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    pidfile = tmp_path / "master.pid"
    first = _sleeper(sleepers)
    pidfile.write_text(f"{first.pid:>10}\n")
    seen: list[tuple[bool, str]] = []
    watch = ProcessWatch(pidfile, lambda alive, detail: seen.append((alive, detail)), poll=0.01)
    task = asyncio.create_task(watch.run())
    try:
        await _until(lambda: seen == [(True, f"process {first.pid} ({pidfile}) runs")])
        first.kill()
        first.wait()  # reap it, as Postfix's parent would; the pidfile stays behind
        took = await _until(lambda: len(seen) == 2)
        assert seen[1] == (False, f"process {first.pid} ({pidfile}) exited")
        print(f"death reported {took * 1000:.1f} ms after the kill was reaped")
        # The stale pidfile does not bring it back, even after a while.
        await asyncio.sleep(0.1)
        assert len(seen) == 2
        second = _sleeper(sleepers)
        pidfile.write_text(f"{second.pid:>10}\n")
        await _until(lambda: len(seen) == 3)
        assert seen[2][0] is True and str(second.pid) in seen[2][1]
        os.kill(second.pid, signal.SIGTERM)
        await _until(lambda: len(seen) == 4)
        assert seen[3][0] is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_watch_reports_down_when_nothing_runs(tmp_path: Path) -> None:
    seen: list[bool] = []
    watch = ProcessWatch(tmp_path / "missing.pid", lambda alive, _d: seen.append(alive), poll=0.01)
    task = asyncio.create_task(watch.run())
    try:
        await _until(lambda: seen == [False])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_kernel_without_pidfd_disables_the_watch_and_leaves_the_server_up(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import errno

    def refused(_pid: int) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", refused)
    pidfile = tmp_path / "master.pid"
    pidfile.write_text(f"{_sleeper(sleepers).pid}\n")
    seen: list[bool] = []
    watch = ProcessWatch(pidfile, lambda alive, _d: seen.append(alive), poll=0.01)
    await asyncio.wait_for(watch.run(), 5)  # returns: the polled checks take over
    assert seen == [True]
    assert "local_watch of" in caplog.text and "disabled" in caplog.text
