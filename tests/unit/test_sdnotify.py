"""mailha.sdnotify against a fake systemd: a datagram socket standing in for NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailha.sdnotify import SystemdNotifier, watchdog_interval


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """An AF_UNIX datagram socket bound to a short temp path (sun_path is 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="mhI-sd-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)
        os.rmdir(directory)


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    """A listener on an abstract name, which systemd passes as ``@name``."""
    name = f"mhI-sdnotify-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield sock, "@" + name
    finally:
        sock.close()


def _fields(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_with_status_is_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = SystemdNotifier(path)
    try:
        assert n.enabled
        assert n.ready("serving 2 VRRP instances")
        assert _fields(sock) == ["READY=1", "STATUS=serving 2 VRRP instances"]
        assert n.ready()
        assert _fields(sock) == ["READY=1"]
    finally:
        n.close()


def test_status_watchdog_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = SystemdNotifier(path)
    try:
        assert n.status("VI_SMTP MASTER")
        assert _fields(sock) == ["STATUS=VI_SMTP MASTER"]
        assert n.watchdog()
        assert _fields(sock) == ["WATCHDOG=1"]
        assert n.stopping()
        assert _fields(sock) == ["STOPPING=1"]
    finally:
        n.close()


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    """Type=notify-reload (systemd >= 253) needs MONOTONIC_USEC from CLOCK_MONOTONIC."""
    sock, path = listener
    n = SystemdNotifier(path)
    try:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert n.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        fields = _fields(sock)
        assert fields[0] == "RELOADING=1"
        key, _, value = fields[1].partition("=")
        assert key == "MONOTONIC_USEC"
        assert before <= int(value) <= after
        assert len(fields) == 2
    finally:
        n.close()


def test_abstract_socket_name(abstract_listener: tuple[socket.socket, str]) -> None:
    sock, name = abstract_listener
    n = SystemdNotifier(name)
    try:
        assert n.ready()
        assert _fields(sock) == ["READY=1"]
    finally:
        n.close()


def test_notify_socket_from_environment(
    abstract_listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, name = abstract_listener
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    n = SystemdNotifier()
    try:
        assert n.enabled
        assert n.watchdog()
        assert _fields(sock) == ["WATCHDOG=1"]
    finally:
        n.close()


def test_not_under_systemd_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    assert n.ready("x") is False
    assert n.reloading() is False
    n.close()
    assert SystemdNotifier("").enabled is False


def test_vanished_listener_returns_false_not_an_exception(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    n = SystemdNotifier(path)
    try:
        assert n.ready()
        sock.close()
        Path(path).unlink()
        assert n.status("still alive?") is False
        assert SystemdNotifier("/nonexistent/mhI/notify").ready() is False
    finally:
        n.close()


def test_close_is_idempotent_and_notifier_reopens(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = SystemdNotifier(path)
    assert n.ready()
    n.close()
    n.close()
    assert n.watchdog()  # a new socket after close
    assert _fields(sock) == ["READY=1"]
    assert _fields(sock) == ["WATCHDOG=1"]
    n.close()


# ---------------------------------------------------------------------- watchdog_interval


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("20000000", "self", 10.0),  # half of WatchdogSec=20s
        ("3000000", None, 1.5),  # WATCHDOG_PID is optional
        ("3000000", "other", None),  # meant for another process (e.g. our parent)
        ("0", "self", None),  # sd_watchdog_enabled(3) rejects 0
        ("-5", "self", None),
        ("soon", "self", None),
        ("", "self", None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for var, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            resolved = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(var, resolved)
    assert watchdog_interval() == expected
