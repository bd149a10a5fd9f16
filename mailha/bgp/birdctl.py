"""A client of BIRD's control socket (what ``birdc`` speaks), on asyncio.

The protocol (BIRD's doc/reply_codes and client/client.c): the server greets with
``0001 BIRD 2.0.12 ready.``; each command is one line; each reply is lines of a 4-digit
code and a separator, ``-`` when more lines follow and a space on the last one, the
text after it. A line that starts with a space continues the previous code's text.
``0xxx`` is success (``0000`` a bare OK), ``1xxx`` a table row, ``2xxx`` a table
heading, ``8xxx`` a run-time error, ``9xxx`` a parse error; ``+`` starts a
spontaneous printout, which no command here asks for. The reply parser
(:class:`ReplyReader`, :func:`parse_protocols`) is pure; :class:`BirdClient` keeps one
connection, serialises commands on it, bounds each by a timeout and reconnects after
any failure, so a restarted BIRD is picked up on the next command.

Protocol names are sent quoted: a quoted name is a pattern to BIRD, so one that does
not exist gives ``8003 No protocols match`` rather than a parse error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from mailha.errors import MailhaError

__all__ = [
    "BirdClient",
    "BirdError",
    "BirdRefused",
    "ProtocolRow",
    "Reply",
    "ReplyLine",
    "ReplyReader",
    "parse_protocols",
]

#: Seconds one command (connect included) may take before the connection is dropped.
COMMAND_TIMEOUT = 5.0
#: ``8003 No protocols match``: a name or pattern that names no protocol.
NO_PROTOCOLS_MATCH = 8003
#: The longest reply accepted; ``show protocols`` of a big router is far below it.
MAX_REPLY = 4 * 1024 * 1024

_LINE = re.compile(r"(\d{4})([ -])(.*)\Z", re.S)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


class BirdError(MailhaError):
    """BIRD cannot be reached, or refused a command; the message says which and why."""


class BirdRefused(BirdError):
    """BIRD answered, and the answer was an error (a bad bird.conf, an unknown name)."""


@dataclass(frozen=True)
class ReplyLine:
    code: int
    text: str


@dataclass(frozen=True)
class Reply:
    """One complete reply: its lines (continuations folded into their code's line)."""

    lines: tuple[ReplyLine, ...]

    @property
    def code(self) -> int:
        """The code of the last line: what the reply as a whole says."""
        return self.lines[-1].code

    @property
    def ok(self) -> bool:
        return all(line.code < 8000 for line in self.lines)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines if line.text)

    def codes(self) -> set[int]:
        return {line.code for line in self.lines}


class ReplyReader:
    """Bytes from the socket in, complete :class:`Reply` objects out (sans I/O)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._lines: list[ReplyLine] = []

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        if len(self._buffer) > MAX_REPLY:
            raise BirdError(f"BIRD sent a line longer than {MAX_REPLY} bytes")
        replies = []
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            reply = self._line(raw.decode("utf-8", "replace"))
            if reply is not None:
                replies.append(reply)
        return replies

    def _line(self, line: str) -> Reply | None:
        if line.startswith("+"):
            return None  # a spontaneous printout, not part of any reply
        if line.startswith(" "):
            if not self._lines:
                raise BirdError(f"BIRD sent a continuation line outside a reply: {line!r}")
            last = self._lines[-1]
            self._lines[-1] = ReplyLine(last.code, f"{last.text}\n{line[1:]}")
            return None
        m = _LINE.match(line)
        if m is None:
            raise BirdError(f"BIRD sent a line that is not a reply: {line!r}")
        self._lines.append(ReplyLine(int(m.group(1)), m.group(3)))
        if m.group(2) == "-":
            if sum(len(x.text) for x in self._lines) > MAX_REPLY:
                raise BirdError(f"BIRD's reply is longer than {MAX_REPLY} bytes")
            return None
        reply, self._lines = Reply(tuple(self._lines)), []
        return reply


@dataclass(frozen=True)
class ProtocolRow:
    """One row of ``show protocols``."""

    name: str
    proto: str  # Static, BGP, Device, BFD...
    table: str
    state: str  # up, down, start, stop
    since: str
    info: str  # for BGP: Established, Active, Connect... (and the last error)

    @property
    def up(self) -> bool:
        return self.state == "up"


def parse_protocols(reply: Reply) -> tuple[ProtocolRow, ...]:
    """The rows (code 1002) of a ``show protocols`` reply; the heading (2002) is skipped."""
    rows = []
    for line in reply.lines:
        if line.code != 1002:
            continue
        for text in line.text.split("\n"):
            parts = text.split()
            if len(parts) < 4:
                continue
            name, proto, table, state, *rest = parts
            width = 2 if rest and _DATE.match(rest[0]) else 1
            rows.append(ProtocolRow(name, proto, table, state, " ".join(rest[:width]),
                                    " ".join(rest[width:])))
    return tuple(rows)


class BirdClient:
    """One connection to BIRD's control socket; every method raises :class:`BirdError`."""

    def __init__(self, path: Path, *, timeout: float = COMMAND_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self.version: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies = ReplyReader()
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def command(self, line: str) -> Reply:
        """Send one command and return its reply; any failure drops the connection."""
        if "\n" in line or "\r" in line:
            raise BirdError(f"refusing a command with a line break: {line!r}")
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    if self._writer is None:
                        await self._connect()
                    return await self._exchange(line)
            except TimeoutError:
                await self.close()
                raise BirdError(f"BIRD at {self.path} did not answer {line!r} within "
                                f"{self.timeout:g}s") from None
            except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
                await self.close()
                raise BirdError(f"BIRD's control socket {self.path}: "
                                f"{_describe_os_error(exc)}") from None
            except BirdError:
                await self.close()
                raise

    async def _connect(self) -> None:
        self._replies = ReplyReader()
        self._reader, self._writer = await asyncio.open_unix_connection(str(self.path))
        welcome = await self._read_reply()
        if welcome.code != 1:
            raise BirdError(f"{self.path} did not greet like BIRD: {welcome.text!r}")
        self.version = welcome.text.removesuffix(" ready.")

    async def _exchange(self, line: str) -> Reply:
        assert self._writer is not None
        self._writer.write(line.encode() + b"\n")
        await self._writer.drain()
        return await self._read_reply()

    async def _read_reply(self) -> Reply:
        assert self._reader is not None
        while True:
            data = await self._reader.read(65536)
            if not data:
                raise EOFError("BIRD closed the connection")
            replies = self._replies.feed(data)
            if replies:
                if len(replies) > 1:  # one command, one reply: anything else is confusion
                    raise BirdError("BIRD sent more replies than commands")
                return replies[0]

    # ------------------------------------------------------------ commands

    async def configure(self) -> str:
        """``configure``: re-read bird.conf (and mailha's include); the outcome's text.

        Note that BIRD resets protocols' runtime enable/disable state to the config's
        on a reconfiguration (verified on 2.0.12): the caller re-applies its own.
        """
        reply = await self.command("configure")
        if reply.codes() & {3, 4, 5} and reply.ok:
            return reply.text
        raise BirdRefused(f"BIRD refused to reconfigure: {reply.text}")

    async def enable(self, name: str) -> bool:
        """``enable "NAME"``; True if it was disabled (changed), False if already enabled."""
        return bool(await self._switch("enable", name, changed=11, unchanged=10))

    async def disable(self, name: str) -> bool:
        """``disable "NAME"``; True if it was enabled (changed), False if already disabled."""
        return bool(await self._switch("disable", name, changed=9, unchanged=8))

    async def disable_matching(self, pattern: str) -> int:
        """``disable "PATTERN"`` (``mailha_*``): how many were enabled; none matching is 0."""
        return await self._switch("disable", pattern, changed=9, unchanged=8, none_ok=True)

    async def _switch(self, verb: str, name: str, *, changed: int, unchanged: int,
                      none_ok: bool = False) -> int:
        if '"' in name:
            raise BirdError(f"refusing a protocol name with a quote: {name!r}")
        reply = await self.command(f'{verb} "{name}"')
        if none_ok and reply.code == NO_PROTOCOLS_MATCH:
            return 0
        codes = [line.code for line in reply.lines if line.code]
        if reply.ok and set(codes) <= {changed, unchanged}:
            return codes.count(changed)
        raise BirdRefused(f'BIRD refused `{verb} "{name}"`: {reply.text or reply.code}')

    async def protocols(self) -> tuple[ProtocolRow, ...]:
        reply = await self.command("show protocols")
        if not reply.ok:
            raise BirdRefused(f"BIRD refused `show protocols`: {reply.text}")
        return parse_protocols(reply)


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such socket (is BIRD running? bird_socket in [bgp] must be its -s path)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (BIRD is not running)"
    if isinstance(exc, PermissionError):
        return "permission denied (mailha must run as root or in BIRD's group)"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__
