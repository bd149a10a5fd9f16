"""mailha.control: the control socket server, and the CLI client talking to it.

The server runs on this test's event loop; the blocking client runs where it runs in
production, in another process (``python -m mailha status``), so the two never share a loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailha.control import (
    EXIT_NOT_RUNNING,
    ControlServer,
    ControlSocketError,
    client_command,
    render_status,
)

STATUS_REPLY: dict[str, Any] = {
    "ok": True,
    "version": "0.1.0",
    "router_id": "node1",
    "config": "/etc/mailha/mailha.toml",
    "instances": [{"name": "VI_SMTP", "state": "MASTER", "priority": 200, "base_priority": 100,
                   "vrid": 173, "interface": "eth0", "master": "10.12.49.35",
                   "vips": ["10.12.49.37/24"]}],
    "ipvs": [{"service": "TCP 10.12.49.37:25", "scheduler": "wlc", "destinations": [
        {"address": "10.12.49.35:25", "forward": "local", "weight": 100, "active": 3,
         "inactive": 1},
        {"address": "10.12.49.36:25", "forward": "dr", "weight": 100}]}],
    "checks": [{"real_server": "10.12.49.36:25", "checker": "SMTP_CHECK", "up": False,
                "reason": "banner: 421 busy", "age": 2}],
}


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory (AF_UNIX paths are limited to 108 bytes; tmp_path can be longer)."""
    d = Path(tempfile.mkdtemp(prefix="mhI-ctl-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Handlers:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.reload_reply: dict[str, Any] = {"ok": True, "message": "reloaded: 1 change"}

    async def status(self) -> dict[str, Any]:
        self.calls.append("status")
        return STATUS_REPLY

    async def reload(self) -> dict[str, Any]:
        self.calls.append("reload")
        return self.reload_reply


@pytest.fixture
async def served(sockdir: Path) -> AsyncIterator[tuple[ControlServer, Handlers]]:
    handlers = Handlers()
    srv = ControlServer(sockdir / "run" / "mailha.sock", status=handlers.status,
                        reload=handlers.reload)
    await srv.start()
    try:
        yield srv, handlers
    finally:
        await srv.close()


async def ask(path: Path, payload: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 5)
    try:
        writer.write(payload)
        writer.write_eof()
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    reply = json.loads(raw)
    assert isinstance(reply, dict)
    assert raw.endswith(b"\n")
    return reply


# ---------------------------------------------------------------------- server


async def test_status_and_reload_call_their_handlers(
    served: tuple[ControlServer, Handlers],
) -> None:
    srv, handlers = served
    assert await ask(srv.path, b'{"command": "status"}\n') == STATUS_REPLY
    assert await ask(srv.path, b'{"command": "reload"}\n') == handlers.reload_reply
    assert handlers.calls == ["status", "reload"]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b'{"command": "restart"}\n', "unknown command 'restart'; use one of reload, status"),
        (b'{"command": 7}\n', "unknown command 7; use one of reload, status"),
        (b'["status"]\n', "unknown command None; use one of reload, status"),
        (b"", "unknown command None; use one of reload, status"),  # EOF before any line
        (b"\n", "request is not JSON"),
        (b"status\n", "request is not JSON"),
        (b'{"command": "sta\n', "request is not JSON"),
        (b"\xff\xfe\x00garbage\n", "bad request"),
    ],
)
async def test_bad_requests_get_an_error_reply(
    served: tuple[ControlServer, Handlers], payload: bytes, error: str
) -> None:
    srv, handlers = served
    reply = await ask(srv.path, payload)
    assert reply["ok"] is False
    assert reply["error"].startswith(error)
    assert handlers.calls == []
    assert (await ask(srv.path, b'{"command": "status"}\n'))["ok"] is True


async def test_oversized_request_is_refused_and_server_lives_on(
    served: tuple[ControlServer, Handlers],
) -> None:
    srv, handlers = served
    reply = await ask(srv.path, b'{"command": "status", "pad": "' + b"x" * 200_000 + b'"}\n')
    assert reply["ok"] is False
    assert handlers.calls == []
    assert (await ask(srv.path, b'{"command": "status"}\n'))["ok"] is True


async def test_failing_handler_is_reported_not_fatal(sockdir: Path) -> None:
    async def broken() -> dict[str, Any]:
        raise KeyError("instances")

    async def fine() -> dict[str, Any]:
        return {"ok": True}

    srv = ControlServer(sockdir / "c.sock", status=broken, reload=fine)
    await srv.start()
    try:
        reply = await ask(srv.path, b'{"command": "status"}\n')
        assert reply == {"ok": False, "error": "KeyError: 'instances'"}
        assert await ask(srv.path, b'{"command": "reload"}\n') == {"ok": True}
    finally:
        await srv.close()


async def test_socket_is_root_only(served: tuple[ControlServer, Handlers]) -> None:
    srv, _ = served
    st = srv.path.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(srv.path.parent.stat().st_mode) == 0o700


async def test_umask_is_restored(sockdir: Path) -> None:
    before = os.umask(0o022)
    os.umask(before)
    srv = ControlServer(sockdir / "u.sock", status=Handlers().status, reload=Handlers().reload)
    await srv.start()
    try:
        now = os.umask(before)
        assert now == before
    finally:
        await srv.close()


async def test_stale_socket_file_is_replaced(sockdir: Path) -> None:
    """A socket left by a crashed daemon (nobody listening) must not block a restart."""
    path = sockdir / "stale.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(str(path))
    old.close()  # the file stays, nobody listens
    handlers = Handlers()
    srv = ControlServer(path, status=handlers.status, reload=handlers.reload)
    await srv.start()
    try:
        assert (await ask(path, b'{"command": "status"}\n'))["ok"] is True
    finally:
        await srv.close()
    assert not path.exists()


async def test_live_socket_is_refused(served: tuple[ControlServer, Handlers]) -> None:
    srv, handlers = served
    second = ControlServer(srv.path, status=handlers.status, reload=handlers.reload)
    with pytest.raises(RuntimeError, match="is in use: is another mailha running"):
        await second.start()
    # The first daemon's socket is untouched and still answers.
    assert (await ask(srv.path, b'{"command": "status"}\n'))["ok"] is True


async def test_live_socket_of_another_process_is_refused_and_kept(sockdir: Path) -> None:
    """A listener this loop does not own (another mailha) keeps its socket and its clients."""
    path = sockdir / "live.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    other.listen(1)
    try:
        srv = ControlServer(path, status=Handlers().status, reload=Handlers().reload)
        with pytest.raises(ControlSocketError, match="another mailha running"):
            await srv.start()
        await srv.close()  # what Node.stop does after a failed start
        assert stat.S_ISSOCK(path.lstat().st_mode)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))  # still the other process's listening socket
        client.close()
    finally:
        other.close()


async def test_regular_file_is_refused_and_survives(sockdir: Path) -> None:
    """Issue 9, defect 6: a typo in [control] socket must not delete the file it names."""
    path = sockdir / "precious.txt"
    path.write_text("keep me\n")
    srv = ControlServer(path, status=Handlers().status, reload=Handlers().reload)
    with pytest.raises(ControlSocketError) as caught:
        await srv.start()
    message = str(caught.value)
    assert f"control socket {path} is a regular file, not a socket" in message
    assert "Fix: mailha only replaces a stale socket" in message
    await srv.close()  # what Node.stop does after a failed start: must not unlink either
    assert path.read_text() == "keep me\n"


async def test_directory_symlink_and_fifo_are_refused(sockdir: Path) -> None:
    target = sockdir / "target"
    target.write_text("data")
    (sockdir / "dir").mkdir()
    (sockdir / "link").symlink_to(target)
    os.mkfifo(sockdir / "fifo")
    for name, what in (("dir", "a directory"), ("link", "a symbolic link"),
                       ("fifo", "a named pipe (FIFO)")):
        path = sockdir / name
        srv = ControlServer(path, status=Handlers().status, reload=Handlers().reload)
        with pytest.raises(ControlSocketError, match=f"is {re.escape(what)}, not a socket"):
            await srv.start()
        await srv.close()
        assert path.is_symlink() if name == "link" else path.exists(), name
    assert (sockdir / "dir").is_dir()
    assert stat.S_ISFIFO((sockdir / "fifo").lstat().st_mode)
    assert target.read_text() == "data"


async def test_close_removes_socket_and_is_idempotent(sockdir: Path) -> None:
    srv = ControlServer(sockdir / "x.sock", status=Handlers().status, reload=Handlers().reload)
    await srv.start()
    assert srv.path.exists()
    await srv.close()
    assert not srv.path.exists()
    await srv.close()


# ---------------------------------------------------------------------- client


def test_client_without_daemon_exits_3_with_a_clear_message(
    sockdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sockdir / "missing.sock"
    assert client_command("status", path) == EXIT_NOT_RUNNING == 3
    err = capsys.readouterr().err
    assert f"the daemon is not running (no listener on {path})" in err
    assert "systemctl start mailha" in err


def test_client_with_stale_socket_exits_3(
    sockdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = sockdir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    assert client_command("reload", path) == EXIT_NOT_RUNNING
    assert "not running" in capsys.readouterr().err


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailha", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_status_renders_the_daemon_reply(
    served: tuple[ControlServer, Handlers],
) -> None:
    srv, handlers = served
    code, out, err = await run_cli("status", "--socket", str(srv.path))
    assert (code, err) == (0, "")
    assert "mailha 0.1.0 on node1" in out
    assert "VI_SMTP" in out and "MASTER" in out and "prio 200 (base 100)" in out
    assert "-> 10.12.49.35:25" in out and "active     3" in out
    assert "10.12.49.36:25" in out and "DOWN" in out and "banner: 421 busy" in out
    assert handlers.calls == ["status"]


async def test_cli_status_json(served: tuple[ControlServer, Handlers]) -> None:
    srv, _ = served
    code, out, _ = await run_cli("status", "--json", "--socket", str(srv.path))
    assert code == 0
    assert json.loads(out) == STATUS_REPLY


async def test_cli_reload_accepted_and_rejected(served: tuple[ControlServer, Handlers]) -> None:
    srv, handlers = served
    code, out, _ = await run_cli("reload", "--socket", str(srv.path))
    assert (code, out.strip()) == (0, "reloaded: 1 change")
    handlers.reload_reply = {"ok": False, "error": "2 errors in /etc/mailha/mailha.toml",
                             "diagnostics": ["line 4: vrrp.instance.VI_SMTP.priority: > 255"]}
    code, out, err = await run_cli("reload", "--socket", str(srv.path))
    assert code == 1
    assert "reload rejected: 2 errors in /etc/mailha/mailha.toml" in err
    assert "  line 4: vrrp.instance.VI_SMTP.priority: > 255" in err


async def test_cli_without_daemon_exits_3(sockdir: Path) -> None:
    code, _, err = await run_cli("status", "--socket", str(sockdir / "none.sock"))
    assert code == EXIT_NOT_RUNNING
    assert "not running" in err


def test_render_status_shows_a_maglev_service_s_table_fingerprint() -> None:
    out = io.StringIO()
    mh = {"service": "TCP 10.12.49.37:465", "scheduler": "mh", "fingerprint": 4503599627370495,
          "destinations": []}
    render_status({**STATUS_REPLY, "ipvs": [*STATUS_REPLY["ipvs"], mh]}, out)
    assert "TCP 10.12.49.37:465  mh  table fingerprint 4503599627370495\n" in out.getvalue()
    assert "TCP 10.12.49.37:25  wlc\n" in out.getvalue()


def test_render_status_error_and_empty_tables() -> None:
    import io

    out = io.StringIO()
    render_status({"ok": False, "error": "starting"}, out)
    assert out.getvalue() == "error: starting\n"
    out = io.StringIO()
    render_status({"ok": True, "instances": [], "ipvs": [], "checks": []}, out)
    assert "(none programmed on this node)" in out.getvalue()
    assert "(none configured)" in out.getvalue()


def test_render_status_shows_failures_config_in_force_and_degraded_parts() -> None:
    import io

    out = io.StringIO()
    render_status({
        "ok": True, "instances": [], "ipvs": [], "checks": [],
        "config": "/etc/mailha/mailha.toml", "config_sha256": "ab" * 32,
        "config_loaded_at": 0, "config_file_changed": True,
        "last_reload": {"ok": False, "at": 1, "error": "applying failed: boom"},
        "components": {"metrics endpoint 127.0.0.1:9650": {
            "up": False, "error": "address already in use"},
            "control socket /run/mailha/mailha.sock": {"up": True, "error": None}},
        "failure": None,
    }, out)
    text = out.getvalue()
    assert "config in force: sha256 abababababab" in text
    assert "the file on disk differs" in text
    assert "last reload FAILED: applying failed: boom" in text
    assert "metrics endpoint 127.0.0.1:9650 UNAVAILABLE: address already in use" in text
    assert "control socket" not in text


def test_render_status_shows_tracking_and_why_an_instance_is_in_fault() -> None:
    """Issue 10: track scripts, tracked links and the FAULT reasons, under the instance."""
    import io

    faulty = {
        "name": "VI_postfix", "state": "FAULT", "priority": 100, "base_priority": 100,
        "vrid": 173, "interface": "eth0", "master": None, "vips": ["10.12.49.37/24"],
        "faults": ["tracking"],
        "fault_reasons": ["track script chk_postfix failed (last run: timeout)",
                          "interface eth1 is down"],
        "track_scripts": [
            {"name": "chk_postfix", "ok": False, "last_result": "timeout", "last_run": 1.0,
             "age": 2.5, "weight": 0, "reverse": False, "applied": 0, "faulted": True},
            {"name": "chk_load", "ok": True, "last_result": "ok", "last_run": 1.0,
             "age": 0.4, "weight": 20, "reverse": True, "applied": -20, "faulted": False},
            {"name": "chk_new", "ok": None, "last_result": None, "last_run": None,
             "age": None, "weight": -10, "reverse": False, "applied": 0, "faulted": False},
        ],
        "track_interfaces": [
            {"name": "eth1", "up": False, "primary": False, "weight": 0, "reverse": False,
             "applied": 0, "faulted": True},
            {"name": "eth0", "up": True, "primary": True, "weight": 0, "reverse": False,
             "applied": 0, "faulted": False},
        ],
    }
    out = io.StringIO()
    render_status({**STATUS_REPLY, "instances": [faulty, *STATUS_REPLY["instances"]]}, out)
    lines = out.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  VI_postfix "))
    assert lines[at + 1:at + 7] == [
        "    FAULT because: track script chk_postfix failed (last run: timeout);"
        " interface eth1 is down",
        "    script    chk_postfix      FAILED  weight    0          now  +0"
        "  last run timeout 2.5 s ago",
        "    script    chk_load         OK      weight   20 reverse  now -20"
        "  last run ok 0.4 s ago",
        "    script    chk_new          INIT    weight  -10          now  +0"
        "  not run yet",
        "    interface eth1             DOWN    weight    0          now  +0",
        "    interface eth0 (own)       UP      weight    0          now  +0",
    ]
    # The instance that predates these fields (an older daemon's reply) still renders.
    assert lines[at + 7].startswith("  VI_SMTP ")
    assert "vrid 173" in lines[at + 7]
