"""The listener watch's adapter against a fake kernel, and its wiring into the health side.

The fake kernel sits on the other ends of two datagram socketpairs standing in for the
netlink sockets: it answers each dump request with the listeners the test says exist
and pushes destroy events. The real kernel is tests/netns/test_listen_watch_sockets.py's.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from mailha.checkers.listenwatch import DiagSockets, ListenerWatch
from mailha.config import loads
from mailha.lvs import health as health_mod
from mailha.lvs.health import HealthChecks
from mailha.metrics import Metrics
from mailha.net.sockdiag import AF_INET, TCP_CLOSE, TCP_LISTEN

RS = IPv4Address("10.0.0.1")


def diag(seq: int, *, state: int, sport: int, dport: int = 0, src: str = "10.0.0.1",
         kind: int = 20, flags: int = 0) -> bytes:
    body = struct.pack("=BBBB", AF_INET, state, 0, 0) + struct.pack("!HH", sport, dport)
    body += IPv4Address(src).packed + bytes(12) + bytes(16) + bytes(4 + 8 + 20)
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def done(seq: int) -> bytes:
    return struct.pack("=IHHIIi", 20, 3, 2, seq, 0, 0)


def error(seq: int, code: int) -> bytes:
    return struct.pack("=IHHIIi", 36, 2, 0, seq, 0, -code) + bytes(16)


class FakeKernel:
    """Answers dumps with ``self.listeners``; ``refuse``/``interrupt`` script the next ones."""

    def __init__(self) -> None:
        self.events, self._events_k = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dumps, self._dumps_k = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (self.events, self.dumps, self._dumps_k):
            s.setblocking(False)
        self.listeners: list[str] = ["10.0.0.1"]
        self.refuse = 0
        self.interrupt = 0
        self.requests = 0
        self._task: asyncio.Task[None] | None = None

    def opener(self, _port: int) -> DiagSockets:
        self._task = asyncio.get_running_loop().create_task(self._serve())
        return DiagSockets(self.events, self.dumps, kernel_filter=True)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            req = await loop.sock_recv(self._dumps_k, 4096)
            self.requests += 1
            seq = struct.unpack_from("=I", req, 8)[0]
            family = req[16]
            if self.refuse:
                self.refuse -= 1
                self._dumps_k.send(error(seq, errno.ENOENT))
                continue
            flags = 0x10 if self.interrupt else 0
            self.interrupt = max(0, self.interrupt - 1)
            if family == AF_INET:
                for src in self.listeners:
                    self._dumps_k.send(diag(seq, state=TCP_LISTEN, sport=25, src=src,
                                            flags=flags))
            self._dumps_k.send(done(seq))

    def destroy(self, *, sport: int = 25, dport: int = 0) -> None:
        self._events_k.send(diag(0, state=TCP_CLOSE, sport=sport, dport=dport))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._events_k.close()
        self._dumps_k.close()


@pytest.fixture
async def kernel() -> AsyncIterator[FakeKernel]:
    k = FakeKernel()
    yield k
    k.close()


async def until(cond: Any, limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


async def test_destroy_then_dump_decides_and_the_poll_brings_it_back(kernel: FakeKernel) -> None:
    seen: list[tuple[bool, str]] = []
    watch = ListenerWatch(RS, 25, lambda a, d: seen.append((a, d)), poll=0.01,
                          opener=kernel.opener)
    task = asyncio.create_task(watch.run())
    try:
        await until(lambda: seen == [(True, "a listener accepts 10.0.0.1:25")])
        start_dumps = watch.dumps
        kernel.destroy(dport=40000)  # a session: not even a dump
        kernel.destroy(sport=26)  # a listener of another port (no kernel filter here)
        await until(lambda: watch.events_received == 2)
        await asyncio.sleep(0.05)
        assert watch.dumps == start_dumps and len(seen) == 1
        kernel.listeners = ["10.0.0.1", "0.0.0.0"]
        kernel.destroy()  # one of two closed: a dump, still serving, nothing reported
        await until(lambda: watch.dumps == start_dumps + 1)
        kernel.listeners = []
        kernel.destroy()
        await until(lambda: len(seen) == 2)
        assert seen[1] == (False, "no listening socket accepts 10.0.0.1:25")
        kernel.listeners = ["10.0.0.2"]  # another address: still dead
        await asyncio.sleep(0.05)
        assert len(seen) == 2
        kernel.listeners = ["0.0.0.0"]
        await until(lambda: len(seen) == 3)
        assert seen[2][0] is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_interrupted_dump_is_repeated(kernel: FakeKernel) -> None:
    seen: list[bool] = []
    kernel.interrupt = 2
    watch = ListenerWatch(RS, 25, lambda a, _d: seen.append(a), opener=kernel.opener)
    task = asyncio.create_task(watch.run())
    try:
        await until(lambda: seen == [True])
        assert watch.dumps == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_refused_dump_disables_the_watch_with_a_warning(
    kernel: FakeKernel, caplog: pytest.LogCaptureFixture
) -> None:
    kernel.refuse = 1
    seen: list[tuple[bool, str]] = []
    watch = ListenerWatch(RS, 25, lambda a, d: seen.append((a, d)), opener=kernel.opener)
    await asyncio.wait_for(watch.run(), 5)
    assert seen == [(True, "listener watch disabled")]
    assert ("listener watch of 10.0.0.1:25 disabled: sock_diag request refused: No such "
            "file or directory (ENOENT); the pidfd watch and the polled checks go on"
            ) in caplog.text


async def test_health_side_runs_both_watches_and_counts_their_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """local_watch = true on the node's own real server: a process and a listener watch;
    each report is counted by kind and moves the pool."""
    made: dict[str, Any] = {}

    class Fake:
        def __init__(self, *args: Any) -> None:
            made[type(self).__name__] = args
            self.on_change = args[-1]

        async def run(self) -> None:
            await asyncio.Event().wait()

    monkeypatch.setattr(health_mod, "ProcessWatch", type("ProcessWatch", (Fake,), {}))
    monkeypatch.setattr(health_mod, "ListenerWatch", type("ListenerWatch", (Fake,), {}))
    config = loads(f"""
[global]
router_id = "t"
[metrics]
enabled = false
[control]
socket = "{tmp_path / 'mailha.sock'}"
[[virtual_server]]
ip = "10.96.0.1"
port = 25
[[virtual_server.real_server]]
ip = "10.0.0.1"
local_watch = true
""", tmp_path / "node.toml")
    metrics = Metrics()

    async def local() -> frozenset[Any]:
        return frozenset({RS})

    checks = HealthChecks(config, metrics=metrics, local_addresses=local,
                          on_pool_changed=lambda: None)
    await checks.start()
    try:
        assert made["ListenerWatch"][:2] == (RS, 25)  # the virtual server's port
        listener_cb = made["ListenerWatch"][-1]
        process_cb = made["ProcessWatch"][-1]
        listener_cb(False, "no listening socket accepts 10.0.0.1:25")
        assert checks.health[0].pool().members[0].weight is None
        process_cb(True, "process 42 runs")
        listener_cb(True, "a listener accepts 10.0.0.1:25")
        value = metrics.registry.get_sample_value
        labels = {"service": "TCP 10.96.0.1:25", "real_server": "10.0.0.1:25"}
        assert value("mailha_local_watch_events_total",
                     {**labels, "kind": "listener", "event": "down"}) == 1
        assert value("mailha_local_watch_events_total",
                     {**labels, "kind": "listener", "event": "up"}) == 1
        assert value("mailha_local_watch_events_total",
                     {**labels, "kind": "process", "event": "up"}) == 1
    finally:
        await checks.close()
