"""SMTP sessions from many source addresses, each one recorded: short sessions to count
how flows spread over directors, and slow DATA transfers that must survive a director's
withdrawal mid-message.

A router hashes each flow to a director (L4 hash: addresses and ports), so the client
side of a scale-out test needs many flows from several addresses, and it needs to know
each flow's fate: :class:`Flow` records when it ran, whether it ended with the expected
reply, which real server answered (the banner's host name) and, if not, why. Sockets are
created in the client's namespace in-process and bound to one of its addresses
(:func:`lab.netns.socket_in`), as in :mod:`lab.smtpload`.

The SMTP dialogue is the client's minimum: banner, HELO (and for a transfer MAIL, RCPT,
DATA, the body in ``chunks`` pieces ``interval`` seconds apart, the final dot), QUIT.
:func:`parse_reply` (lines in, code and text out) is the pure part.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from lab.errors import LoadError
from lab.netns import socket_in

__all__ = [
    "Flow",
    "SmtpReply",
    "paced_flows",
    "parse_reply",
    "run_flows",
    "slow_transfer",
    "smtp_session",
]

IPv4 = ipaddress.IPv4Address
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h; socket.IP_BIND_ADDRESS_NO_PORT from 3.12 on


@dataclass(frozen=True)
class Flow:
    """One client session: from where (address and port: a director's IPVS connection
    table names the flow by them), when (``time.monotonic()``), which real server greeted
    it (the banner's host), whether it got the reply it needed, and the error."""

    source: IPv4
    started: float
    ended: float
    ok: bool
    server: str = ""
    error: str = ""
    port: int = 0  # the client's port (0: no connection was made)


@dataclass(frozen=True)
class SmtpReply:
    code: int
    text: str


def parse_reply(lines: Sequence[bytes]) -> SmtpReply | None:
    """The reply made of ``lines`` (``250-a``, ``250 b``), or None while it goes on
    (the last line has a ``-`` after the code). A malformed line gives code 0."""
    if not lines:
        return None
    last = lines[-1].rstrip(b"\r\n")
    if len(last) >= 4 and last[3:4] == b"-":
        return None
    text = b"\n".join(line.rstrip(b"\r\n")[4:] for line in lines).decode(errors="replace")
    try:
        code = int(last[:3])
    except ValueError:
        code = 0
    return SmtpReply(code, text)


class _Dialogue:
    """One connection's reader/writer with SMTP reply reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> SmtpReply:
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("connection closed by the server")
            lines.append(line)
            reply = parse_reply(lines)
            if reply is not None:
                return reply

    async def expect(self, command: bytes | None, code: int) -> SmtpReply:
        if command is not None:
            self.writer.write(command + b"\r\n")
            await self.writer.drain()
        reply = await self.reply()
        if reply.code != code:
            what = command.split(b" ")[0].decode() if command else "banner"
            raise _Refused(f"{what}: {reply.code} {reply.text[:80]}")
        return reply


class _Refused(Exception):
    """The server answered with another code than the dialogue needs."""


async def _open(netns: str | None, source: IPv4, host: str, port: int) -> _Dialogue:
    loop = asyncio.get_running_loop()
    sock = socket_in(netns)
    try:
        # The port is chosen at connect time, from the whole 4-tuple: bound with port 0
        # alone the kernel hands the same port out again as soon as a session closed, and
        # IPVS then takes the new session for the old one (no new scheduling, nothing
        # counted): with 8 sessions per address, a quarter of them in a first run.
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((str(source), 0))
        await loop.sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    return _Dialogue(reader, writer)


async def _flow(
    netns: str | None, source: IPv4, host: str, port: int, time_limit: float,
    dialogue: Callable[[_Dialogue], Awaitable[None]],
) -> Flow:
    started = time.monotonic()
    server = ""
    local_port = 0
    conn: _Dialogue | None = None
    try:
        async with asyncio.timeout(time_limit):
            conn = await _open(netns, source, host, port)
            local_port = int(conn.writer.get_extra_info("sockname")[1])
            banner = await conn.expect(None, 220)
            server = banner.text.split(" ", 1)[0]
            await dialogue(conn)
            with contextlib.suppress(OSError, ConnectionError, _Refused):
                await conn.expect(b"QUIT", 221)
    except (OSError, ConnectionError, TimeoutError, _Refused) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Flow(source, started, time.monotonic(), False, server, error, local_port)
    finally:
        if conn is not None:
            conn.writer.close()
    return Flow(source, started, time.monotonic(), True, server, port=local_port)


async def smtp_session(
    netns: str | None, source: IPv4, host: str, *, port: int = 25,
    helo: str = "client.lab.test", time_limit: float = 10.0,
) -> Flow:
    """Banner, HELO (250), QUIT: one short session from ``source``."""

    async def dialogue(conn: _Dialogue) -> None:
        await conn.expect(b"HELO " + helo.encode(), 250)

    return await _flow(netns, source, host, port, time_limit, dialogue)


async def slow_transfer(
    netns: str | None, source: IPv4, host: str, *, port: int = 25, chunks: int = 10,
    interval: float = 0.5, chunk_bytes: int = 200, helo: str = "client.lab.test",
    in_data: Callable[[], None] | None = None, time_limit: float = 60.0,
) -> Flow:
    """A whole message whose body trickles in ``chunks`` pieces ``interval`` s apart;
    ok only if the final dot gets 250. ``in_data`` is called once the server has said
    354 (the transfer is under way)."""
    if chunks < 1 or interval < 0 or chunk_bytes < 1:
        raise LoadError("invalid transfer", f"chunks={chunks} interval={interval}")
    line = b"x" * 78 + b"\r\n"
    piece = line * max(1, chunk_bytes // len(line))

    async def dialogue(conn: _Dialogue) -> None:
        await conn.expect(b"HELO " + helo.encode(), 250)
        await conn.expect(b"MAIL FROM:<slow@lab.test>", 250)
        await conn.expect(b"RCPT TO:<sink@lab.test>", 250)
        await conn.expect(b"DATA", 354)
        if in_data is not None:
            in_data()
        conn.writer.write(b"Subject: slow transfer\r\n\r\n")
        for i in range(chunks):
            conn.writer.write(piece)
            await conn.writer.drain()
            if i + 1 < chunks:
                await asyncio.sleep(interval)
        await conn.expect(b".", 250)

    return await _flow(netns, source, host, port, time_limit, dialogue)


async def run_flows(
    make: Callable[[int], Awaitable[Flow]], count: int, *, concurrency: int,
) -> list[Flow]:
    """Run ``make(i)`` for i in 0..count-1, at most ``concurrency`` at a time; the flows
    in order of ``i``."""
    if count < 0 or concurrency < 1:
        raise LoadError("invalid flows", f"count={count} concurrency={concurrency}")
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Flow:
        async with gate:
            return await make(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def paced_flows(
    make: Callable[[int], Coroutine[Any, Any, Flow]], *, interval: float, stop: asyncio.Event,
) -> list[Flow]:
    """Start ``make(i)`` every ``interval`` seconds until ``stop`` is set, then wait for
    the flows in flight; all of them in the order they started. Started on a schedule,
    not one after the other, so a hung flow does not stop new ones (new sessions arriving
    through a withdrawal is what this probes)."""
    if interval <= 0:
        raise LoadError("invalid pace", f"interval={interval}")
    tasks: list[asyncio.Task[Flow]] = []
    while not stop.is_set():
        tasks.append(asyncio.create_task(make(len(tasks))))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
    return list(await asyncio.gather(*tasks))
