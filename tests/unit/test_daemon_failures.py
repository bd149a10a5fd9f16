"""The daemon's failure paths, in process: reload, stop, supervision, degraded parts.

Issue 9: a reload either applies completely or leaves the running config in force, and
always says so (defect 4); a stop always runs every step and never raises (defect 4);
a critical task that dies stops the watchdog and makes the node exit non-zero
(defect 8); a metrics port that is taken does not stop the node (defect 3).

A :class:`~mailha.daemon.Node` with no VRRP instance and no virtual server runs here
without root: it opens a netlink route socket and watches links, and nothing else
touches the host. Failures are injected where the issue says they come from.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import mailha.daemon as daemon
from mailha.config import Config, loads
from mailha.control import request
from mailha.daemon import Node
from mailha.metrics import Metrics
from mailha.net.links import LinkWatcher


def _config(tmp: Path, *, metrics_port: int | None = None, extra: str = "") -> Config:
    metrics = (f"[metrics]\nlisten = \"127.0.0.1\"\nport = {metrics_port}\n"
               if metrics_port is not None else "[metrics]\nenabled = false\n")
    text = (f'[global]\nrouter_id = "t"\n{metrics}\n[control]\n'
            f'socket = "{tmp / "ctl" / "mailha.sock"}"\n{extra}')
    path = tmp / "mailha.toml"
    path.write_text(text)
    return loads(text, path)


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(_config(tmp_path))
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


def _status(node: Node) -> dict[str, Any]:
    return request(node.config.control.socket, "status", timeout=5)


# ---------------------------------------------------------------------- reload (defect 4)


async def test_loader_crash_on_reload_is_logged_counted_and_keeps_config(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    before = node.config

    async def crash(*_a: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(daemon, "load_for_serve", crash)
    reply = await node.reload()
    assert reply["ok"] is False
    assert "kept the running configuration" in reply["error"]
    assert node.config is before
    assert _sample(node.metrics, "mailha_config_reloads_total", result="failure") == 1
    assert _sample(node.metrics, "mailha_config_last_reload_successful") == 0
    assert "cannot load" in caplog.text
    status = await asyncio.to_thread(_status, node)
    assert status["last_reload"]["ok"] is False


async def test_sighup_reload_always_sends_ready_again(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []

    class FakeSd:
        def reloading(self) -> bool:
            sent.append("RELOADING")
            return True

        def ready(self, status: str = "") -> bool:
            sent.append("READY")
            return True

    async def crash(*_a: object) -> object:
        raise ValueError("a bug in the loader")

    monkeypatch.setattr(daemon, "load_for_serve", crash)
    await node.reload_notifying(FakeSd())  # type: ignore[arg-type]
    assert sent == ["RELOADING", "READY"]


async def test_failed_apply_rolls_back_and_status_names_the_config_in_force(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, old_digest = node.config, node.config_digest
    # The new file asks for a virtual server; starting its LVS manager fails midway.
    new = _config(tmp_path, extra='\n[[virtual_server]]\nip = "10.255.0.1"\nport = 25\n'
                  '[[virtual_server.real_server]]\nip = "10.255.0.2"\nport = 25\n')
    assert new != old

    async def load(*_a: object) -> tuple[Config, list[object]]:
        return new, []

    started: list[object] = []

    async def broken_start(self: object) -> None:
        started.append(self)
        raise OSError("netlink: IPVS family not found")

    from mailha.lvs.manager import LvsManager

    monkeypatch.setattr(daemon, "load_for_serve", load)
    monkeypatch.setattr(LvsManager, "start", broken_start)
    monkeypatch.setattr(LvsManager, "stop", lambda self: asyncio.sleep(0))
    reply = await node.reload()
    assert started, "the apply step must have been reached"
    assert reply["ok"] is False
    assert "previous configuration is in force" in reply["error"]
    assert node.config == old and node.lvs is None
    assert node.failure is None
    assert _sample(node.metrics, "mailha_config_reloads_total", result="failure") == 1
    status = await asyncio.to_thread(_status, node)
    assert status["config_sha256"] == old_digest
    assert status["config_file_changed"] is True  # the file on disk is the new one
    assert status["last_reload"]["ok"] is False


async def test_stop_runs_every_step_when_one_fails(tmp_path: Path) -> None:
    n = Node(_config(tmp_path))
    await n.start()
    sock = n.config.control.socket
    assert sock.exists()

    async def failed_reload() -> None:
        raise RuntimeError("an exception inside the apply step")

    reload_task = asyncio.create_task(failed_reload(), name="reload")
    await asyncio.wait({reload_task})
    n._tasks.append(reload_task)  # as a SIGHUP reload that died leaves it

    class Exploding:
        tasks = ()

        async def stop(self) -> None:
            raise RuntimeError("netlink socket closed under us")

    n.lvs = Exploding()  # type: ignore[assignment]
    n.scripts = Exploding()  # type: ignore[assignment]
    await asyncio.wait_for(n.stop(), 10)  # must not raise
    assert not sock.exists(), "the control socket must be closed despite the failures"


# ---------------------------------------------------------------------- supervision (defect 8)


async def test_dead_critical_task_stops_the_watchdog_and_fails_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    die = asyncio.Event()

    async def changes(self: LinkWatcher) -> AsyncIterator[object]:
        await die.wait()
        raise RuntimeError("injected: netlink receive failed")
        yield  # an async generator, like the real one

    monkeypatch.setattr(LinkWatcher, "changes", changes)
    n = Node(_config(tmp_path))
    await n.start()
    pings = 0

    def watchdog() -> None:
        nonlocal pings
        pings += 1

    supervisor = asyncio.create_task(n.supervise(watchdog, interval=0.01))
    try:
        for _ in range(500):
            if pings >= 3:
                break
            await asyncio.sleep(0.01)
        assert pings >= 3, "a healthy node feeds the watchdog"
        die.set()
        await asyncio.wait_for(n.failed.wait(), 5)
        assert n.failure is not None and "link watch" in n.failure
        await asyncio.wait_for(supervisor, 5)
        fed = pings
        await asyncio.sleep(0.1)
        assert pings == fed, "the watchdog must not be fed once a critical task died"
        assert "critical task 'link watch' raised RuntimeError" in caplog.text
    finally:
        supervisor.cancel()
        await n.stop()


async def test_serve_exits_non_zero_when_a_critical_task_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def changes(self: LinkWatcher) -> AsyncIterator[object]:
        await asyncio.sleep(0.2)
        raise RuntimeError("injected")
        yield

    monkeypatch.setattr(LinkWatcher, "changes", changes)
    _config(tmp_path)
    code = await asyncio.wait_for(daemon._serve(tmp_path / "mailha.toml"), 20)
    assert code == daemon.EXIT_TASK_DIED


# ---------------------------------------------------------------------- metrics port (defect 3)


@pytest.fixture
def busy_port() -> Iterator[tuple[socket.socket, int]]:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        yield blocker, blocker.getsockname()[1]
    finally:
        blocker.close()


async def test_busy_metrics_port_degrades_and_recovers(
    tmp_path: Path, busy_port: tuple[socket.socket, int], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker, port = busy_port
    monkeypatch.setattr("mailha.optional.retry_delays", lambda: lambda _n: 0.05)
    n = Node(_config(tmp_path, metrics_port=port))
    await n.start()  # must not raise: metrics are not critical
    try:
        part = next(p for p in n.optional if p.name.startswith("metrics"))
        assert part.up is False and "in use" in (part.error or "")
        assert "is unavailable" in caplog.text and "VRRP and IPVS are not affected" in caplog.text
        status = await asyncio.to_thread(_status, n)
        assert status["components"][part.name]["up"] is False
        assert _sample(n.metrics, "mailha_component_up", component="metrics") == 0
        assert _sample(n.metrics, "mailha_component_up", component="control") == 1
        blocker.close()
        for _ in range(200):
            if part.up:
                break
            await asyncio.sleep(0.05)
        assert part.up, part.describe()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        body = await reader.read()
        writer.close()
        assert b"200 OK" in body and b"mailha_component_up" in body
        status = await asyncio.to_thread(_status, n)
        assert json.dumps(status["components"][part.name]["up"]) == "true"
    finally:
        await n.stop()


async def test_a_second_daemon_on_the_same_control_socket_refuses_to_start(
    node: Node, tmp_path: Path
) -> None:
    from mailha.control import ControlSocketError

    second = Node(node.config)
    with pytest.raises(ControlSocketError, match="another mailha"):
        await second.start()
    await second.stop()
    assert second.links is None, "nothing else may have started"
    status = await asyncio.to_thread(_status, node)
    assert status["ok"] is True, "the running daemon keeps its socket"
