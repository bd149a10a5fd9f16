"""LvsManager's check wiring: what the scheduler reports reaches the exported metrics.

No IPVS here: only the manager's check side runs (:class:`HealthChecks`),
against an SMTP "server" on loopback that accepts and never greets, so every check
times out after connect_timeout, longer than its delay_loop slot.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any, cast

from mailha.checkers.quorum import EventKind, HealthEvent
from mailha.config import loads
from mailha.config.model import Config, ScriptCommand
from mailha.lvs.health import HealthChecks
from mailha.lvs.health_events import HealthEventNotifier
from mailha.lvs.manager import LvsManager
from mailha.metrics import Metrics


def service_config(tmp_path: Path, extra: str = "") -> str:
    """A node config with one fast-checked virtual server; real servers follow."""
    return f"""
[global]
router_id = "t"
[metrics]
enabled = false
[control]
socket = "{tmp_path / 'mailha.sock'}"
[[virtual_server]]
ip = "10.96.0.1"
port = 25
delay_loop = 0.1
connect_timeout = 0.3
retry = 0
{extra}"""


def health_checks(config: Config, metrics: Metrics) -> HealthChecks:
    async def no_local_addresses() -> frozenset[Any]:
        return frozenset()

    return HealthChecks(config, metrics=metrics, local_addresses=no_local_addresses,
                        on_pool_changed=lambda: None)


async def test_overruns_reach_mailha_check_overruns_total(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never sends a banner; ends when the checker gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    text = service_config(tmp_path, "warmup = 0") + f"""
[[virtual_server.real_server]]
ip = "127.0.0.1"
port = {port}
[[virtual_server.real_server.SMTP_CHECK]]
"""
    path = tmp_path / "mailha.toml"
    path.write_text(text)
    metrics = Metrics()
    checks = health_checks(loads(text, path), metrics)
    labels = {"service": "TCP 10.96.0.1:25", "real_server": f"127.0.0.1:{port}"}
    try:
        await checks.start()
        for _ in range(100):
            await asyncio.sleep(0.05)
            got = metrics.registry.get_sample_value("mailha_check_overruns_total", labels)
            if got:
                break
        assert got is not None and got >= 1, got
    finally:
        await checks.stop()
        server.close()
        await server.wait_closed()


async def test_a_reload_keeps_a_dead_real_server_out_of_the_pool(tmp_path: Path) -> None:
    """SIGHUP while a real server is down (here: nothing listens on its port) must not put
    it back: the reload carries over what its unchanged checks found."""
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]

    def config(weight: int) -> str:
        return service_config(tmp_path) + f"""
[[virtual_server.real_server]]
ip = "127.0.0.1"
port = {dead_port}
[[virtual_server.real_server.TCP_CHECK]]
[[virtual_server.real_server]]
ip = "127.0.0.2"
port = 25
weight = {weight}
[virtual_server.real_server.MISC_CHECK]
misc_path = "/bin/true"
"""

    path = tmp_path / "mailha.toml"
    manager = LvsManager(loads(config(1), path), metrics=Metrics(), addresses=cast(Any, None))
    try:
        await manager.checks.start()
        for _ in range(500):  # until its check found it dead (bounded: 10 s)
            if not manager.checks.health[0].real_servers[0].alive:
                break
            await asyncio.sleep(0.02)
        await manager.reconfigure(loads(config(2), path))  # the other server's weight
        assert not manager.checks.health[0].real_servers[0].alive
        assert [m.weight for m in manager.checks.health[0].pool().members] == [None, 2]
    finally:
        await manager.checks.stop()


async def test_real_server_notify_scripts_run_as_vrrp_ones_do(tmp_path: Path) -> None:
    """One notify runner: what a notify_up script starts in the background outlives it,
    as with VRRP's notify scripts (the manager's own copy killed it with the script)."""
    mark = tmp_path / "late-mark"
    script = tmp_path / "notify_up.sh"
    script.write_text(f"#!/bin/sh\n(sleep 0.3; touch {mark}) &\nexit 0\n")
    script.chmod(0o755)
    config = loads(service_config(tmp_path) + """
[[virtual_server.real_server]]
ip = "127.0.0.1"
port = 25
[virtual_server.real_server.TCP_CHECK]
""", tmp_path / "mailha.toml")
    vs = config.virtual_servers[0]
    event = HealthEvent(EventKind.REAL_SERVER_UP, vs, vs.real_servers[0],
                        ScriptCommand((str(script),)), "test")
    await HealthEventNotifier(config).run_notify(event)
    for _ in range(250):  # the background child touches the mark 0.3 s later (<= 5 s)
        if mark.exists():
            break
        await asyncio.sleep(0.02)
    assert mark.exists()


async def test_identical_checkers_are_reported_apart(tmp_path: Path) -> None:
    """Two identical SMTP_CHECKs on one real server are two checkers: each result is
    kept under its own index (they compare equal, so looking them up by value found the
    first one for both, and `mailha status` showed the second as never checked)."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 t ESMTP\r\n")
        while line := await reader.readline():
            if line.upper().startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                break
            writer.write(b"250 t\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    head = service_config(tmp_path, "warmup = 0").replace("delay_loop = 0.1", "delay_loop = 0.05")
    text = head + f"""
[[virtual_server.real_server]]
ip = "127.0.0.1"
port = {port}
[[virtual_server.real_server.SMTP_CHECK]]
[[virtual_server.real_server.SMTP_CHECK]]
"""
    config = loads(text, tmp_path / "mailha.toml")
    rs = config.virtual_servers[0].real_servers[0]
    assert rs.checkers[0] == rs.checkers[1]  # the point of the test
    checks = health_checks(config, Metrics())
    try:
        await checks.start()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if {(0, 0, 0), (0, 0, 1)} <= checks.last_results.keys():
                break
        assert set(checks.last_results) == {(0, 0, 0), (0, 0, 1)}
        assert all(result.ok for result, _ in checks.last_results.values())
    finally:
        await checks.stop()
        server.close()
        await server.wait_closed()
