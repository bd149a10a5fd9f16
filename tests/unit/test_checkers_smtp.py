"""SMTP_CHECK and TCP_CHECK against hostile servers written here (127.0.0.1, ephemeral ports).

Every case asserts the verdict and its reason, a bound on the time taken, and that no
file descriptor of this process is left behind once the server is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Address

import pytest

from mailha.checkers import CheckResult, check_smtp, check_tcp, run_checker
from mailha.checkers.connect import oserror_reason
from mailha.config.model import CheckerCommon, RealServer, SmtpCheck, TcpCheck

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LOCALHOST = IPv4Address("127.0.0.1")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    """Run ``handler`` per connection; on exit cancel every handler and close everything."""
    tasks: set[asyncio.Task[None]] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        await asyncio.sleep(0)


def smtp_check(timeout: float = 1.0, helo: str = "mailha.check") -> SmtpCheck:
    return SmtpCheck(common=CheckerCommon(connect_timeout=timeout), helo_name=helo)


def server_at(port: int) -> RealServer:
    return RealServer(ip=LOCALHOST, port=port)


async def run_against(
    handler: Handler, check: SmtpCheck | None = None
) -> tuple[CheckResult, float]:
    """Run one SMTP_CHECK against ``handler``; assert nothing leaked; return verdict, time."""
    before = open_fds()
    async with serve(handler) as port:
        started = time.monotonic()
        result = await check_smtp(check or smtp_check(), server_at(port))
        elapsed = time.monotonic() - started
    await asyncio.sleep(0.01)
    assert open_fds() == before, "the check leaked a file descriptor"
    return result, elapsed


async def expect_line(reader: asyncio.StreamReader, verb: bytes) -> bytes:
    line = await reader.readline()
    assert line.upper().startswith(verb.upper()), line
    return line


async def good_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mx.test ESMTP\r\n")
    await expect_line(reader, b"EHLO mailha.check")
    writer.write(b"250-mx.test\r\n250 PIPELINING\r\n")
    await expect_line(reader, b"QUIT")
    writer.write(b"221 2.0.0 Bye\r\n")
    await writer.drain()


async def test_healthy_server_passes() -> None:
    result, elapsed = await run_against(good_session)
    assert result.ok, result
    assert result.reason == "ok"
    assert "EHLO" in result.detail
    assert elapsed < 1.0


async def test_multiline_banner_passes() -> None:
    """Postfix's postscreen and many MTAs greet with 220- continuation lines."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-mx.test ESMTP\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the continuation arrives in a separate segment
        writer.write(b"220-no UCE\r\n220 mx.test ready\r\n")
        await good_session_after_banner(reader, writer)

    result, _ = await run_against(handler)
    assert result.ok, result


async def good_session_after_banner(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await expect_line(reader, b"EHLO")
    writer.write(b"250 mx.test\r\n")
    await expect_line(reader, b"QUIT")
    writer.write(b"221 Bye\r\n")
    await writer.drain()


@pytest.mark.parametrize("code", [421, 554])
async def test_refusing_banner_fails_with_its_code(code: int) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{code} mx.test service not available\r\n".encode())
        await writer.drain()
        await reader.read()  # wait for the client to go away

    result, elapsed = await run_against(handler)
    assert not result.ok
    assert result.reason == f"banner_code_{code}"
    assert elapsed < 1.0


async def test_slow_banner_fails_after_connect_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)
        writer.write(b"220 too late\r\n")

    result, elapsed = await run_against(handler, smtp_check(timeout=1.0))
    assert result.reason == "banner_timeout"
    assert 0.9 <= elapsed < 2.0


async def test_silent_server_fails_with_banner_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, never speak

    result, elapsed = await run_against(handler, smtp_check(timeout=0.3))
    assert result.reason == "banner_timeout"
    assert elapsed < 1.0


async def test_banner_then_silence_fails_at_ehlo() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test\r\n")
        await reader.read()

    result, elapsed = await run_against(handler, smtp_check(timeout=0.3))
    assert result.reason == "ehlo_timeout"
    assert elapsed < 1.0


async def test_reset_after_connect_is_connection_reset() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    result, elapsed = await run_against(handler)
    assert result.reason == "connection_reset"
    assert elapsed < 1.0


async def test_close_after_connect_is_connection_closed() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    result, _ = await run_against(handler)
    assert result.reason == "connection_closed"


async def test_garbage_is_rejected() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\xff\x13garbage \xde\xad\xbe\xef\r\n")
        await writer.drain()
        await reader.read()

    result, elapsed = await run_against(handler)
    assert result.reason == "garbage_reply"
    assert elapsed < 1.0


async def test_ehlo_refused_then_helo_accepted_passes() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 old.test SMTP\r\n")
        await expect_line(reader, b"EHLO")
        writer.write(b"502 5.5.2 command not recognized\r\n")
        await expect_line(reader, b"HELO mailha.check")
        writer.write(b"250 old.test\r\n")
        await expect_line(reader, b"QUIT")
        writer.write(b"221 bye\r\n")
        await writer.drain()

    result, _ = await run_against(handler)
    assert result.ok, result
    assert "HELO accepted" in result.detail


async def test_ehlo_temporary_failure_fails_without_helo() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test\r\n")
        await expect_line(reader, b"EHLO")
        writer.write(b"421 4.3.2 shutting down\r\n")
        await reader.read()

    result, _ = await run_against(handler)
    assert result.reason == "ehlo_rejected_421"


async def test_ehlo_and_helo_refused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test\r\n")
        await expect_line(reader, b"EHLO")
        writer.write(b"554 5.7.1 go away\r\n")
        await expect_line(reader, b"HELO")
        writer.write(b"554 5.7.1 still no\r\n")
        await reader.read()

    result, _ = await run_against(handler)
    assert result.reason == "helo_rejected_554"


async def test_ten_megabyte_banner_fails_fast_in_bounded_memory() -> None:
    chunk = b"x" * 65536

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ")
        for _ in range(160):  # 10 MiB, no newline; drain keeps our own buffer small
            writer.write(chunk)
            await writer.drain()
        await reader.read()

    tracemalloc.start()
    try:
        result, elapsed = await run_against(handler)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.reason == "line_too_long"
    assert elapsed < 1.0
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while reading a 10 MB banner"


async def test_endless_continuation_lines_fail_as_too_long() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(10_000):
            writer.write(b"220-" + b"y" * 60 + b"\r\n")
            await writer.drain()
        await reader.read()

    result, elapsed = await run_against(handler)
    assert result.reason == "line_too_long"
    assert elapsed < 1.0


async def test_unusable_helo_name_is_a_failure_not_an_exception() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.test\r\n")
        await reader.read()

    result, _ = await run_against(handler, smtp_check(helo="bad name\r\nRSET"))
    assert result.reason == "bad_helo_name"


async def test_whole_check_is_bounded_by_the_deadline() -> None:
    """Each reply just inside connect_timeout, but the sum beyond 2 x connect_timeout."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.25)
        writer.write(b"220 slow.test\r\n")
        await expect_line(reader, b"EHLO")
        await asyncio.sleep(0.25)
        writer.write(b"502 no\r\n")
        await expect_line(reader, b"HELO")
        await asyncio.sleep(0.25)
        writer.write(b"250 slow.test\r\n")
        await reader.read()

    result, elapsed = await run_against(handler, smtp_check(timeout=0.3))
    assert result.reason == "deadline_exceeded"
    assert 0.55 <= elapsed < 1.5


async def test_refused_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = open_fds()
    result = await check_smtp(smtp_check(), server_at(port))
    assert result.reason == "connection_refused"
    assert open_fds() == before


async def test_connect_timeout_to_unanswered_syn() -> None:
    """A listener whose backlog is full leaves further SYNs unanswered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):  # fill the accept queue
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                fillers.append(filler)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            result = await check_tcp(
                TcpCheck(common=CheckerCommon(connect_timeout=0.3)), server_at(port)
            )
            elapsed = time.monotonic() - started
        finally:
            for filler in fillers:
                filler.close()
    assert result.reason == "connect_timeout"
    assert elapsed < 1.0


async def test_connect_ip_and_port_override_the_real_server() -> None:
    async with serve(good_session) as port:
        check = SmtpCheck(
            common=CheckerCommon(connect_ip=LOCALHOST, connect_port=port, connect_timeout=1),
            helo_name="mailha.check",
        )
        result = await run_checker(check, RealServer(ip=IPv4Address("192.0.2.1"), port=1))
    assert result.ok, result


async def test_bindto_and_bind_port_are_used() -> None:
    seen: list[tuple[str, int]] = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        source_port = probe.getsockname()[1]
    check = SmtpCheck(
        common=CheckerCommon(
            bindto=IPv4Address("127.0.0.2"), bind_port=source_port, connect_timeout=1
        ),
        helo_name="mailha.check",
    )
    result, _ = await run_against(good_session_recording(seen), check)
    assert result.ok, result
    assert seen == [("127.0.0.2", source_port)]


def good_session_recording(seen: list[tuple[str, int]]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peername")[:2])
        await good_session(reader, writer)

    return handler


async def test_tcp_check_up_and_down() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    before = open_fds()
    async with serve(handler) as port:
        up = await check_tcp(TcpCheck(common=CheckerCommon(connect_timeout=1)), server_at(port))
    down = await check_tcp(TcpCheck(common=CheckerCommon(connect_timeout=1)), server_at(port))
    await asyncio.sleep(0.01)
    assert up.ok and up.reason == "ok"
    assert down.reason == "connection_refused"
    assert open_fds() == before


async def test_tcp_check_without_any_port_fails_cleanly() -> None:
    result = await check_tcp(TcpCheck(), RealServer(ip=LOCALHOST, port=None))
    assert result.reason == "no_port"


async def test_bind_to_missing_interface_is_reported() -> None:
    check = TcpCheck(common=CheckerCommon(bind_if="mhE-nonexist0", connect_timeout=0.5))
    result = await check_tcp(check, server_at(9))
    # Unprivileged: EPERM; as root: ENODEV for a device that does not exist.
    assert result.reason in {"no_such_device", "permission_denied"}


def test_unknown_errno_gets_a_stable_token() -> None:
    import errno

    assert oserror_reason(OSError(errno.EMFILE, "Too many open files")) == "socket_emfile"
    assert oserror_reason(TimeoutError()) == "connect_timeout"
