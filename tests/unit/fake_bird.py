"""A BIRD control socket in-process, for unit tests of the client and the announcer.

It speaks the real line protocol (greeting, ``-``/space separators, continuation
lines, ``0000``) with the reply codes BIRD 2.0.12 gave for the same commands (captured
in a namespace, see tests/netns/test_bgp_bird.py for the real thing), and keeps the
state that matters: which protocols exist and which are enabled. ``configure`` reads
the static protocols of ``include`` (when set) and, like BIRD, resets them to the
file's ``disabled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import re
from pathlib import Path

PROTOCOL = re.compile(r"^protocol static (\w+) \{(.*)\}$", re.M)


class FakeBird:
    def __init__(self, path: Path, *, include: Path | None = None,
                 extra: dict[str, tuple[str, str, str]] | None = None) -> None:
        self.path = path
        self.include = include
        #: name -> enabled
        self.protocols: dict[str, bool] = {}
        #: other protocols shown as they are: name -> (proto, state, info)
        self.extra = extra or {"device1": ("Device", "up", ""),
                               "uplink": ("BGP", "up", "Established")}
        self.commands: list[str] = []
        self.refuse_configure: str | None = None
        self.silent = False  # accept commands, never answer
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> FakeBird:
        self._server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def stop(self) -> None:
        """Like a dead BIRD: the socket refuses, open connections are closed."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def load_include(self) -> None:
        if self.include is None or not self.include.exists():
            return
        self.protocols = {m.group(1): "disabled;" not in m.group(2)
                          for m in PROTOCOL.finditer(self.include.read_text())}

    def enabled(self) -> set[str]:
        return {name for name, on in self.protocols.items() if on}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            writer.write(b"0001 BIRD 2.0.12 ready.\n")
            while line := await reader.readline():
                command = line.decode().strip()
                self.commands.append(command)
                if self.silent:
                    continue
                writer.write(self.answer(command).encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def answer(self, command: str) -> str:
        if command == "show protocols":
            rows = ["2002-Name       Proto      Table      State  Since         Info"]
            for name, on in sorted(self.protocols.items()):
                rows.append(f" {name} Static master4 {'up' if on else 'down'} 06:19:28.812")
            for name, (proto, state, info) in self.extra.items():
                rows.append(f" {name} {proto} --- {state} 2026-11-30 06:19:28 {info}")
            rows[1] = "1002-" + rows[1][1:]
            return "\n".join(rows) + "\n0000 \n"
        if command == "configure":
            if self.refuse_configure:
                return f"8002 {self.refuse_configure}\n"
            self.load_include()
            return "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n"
        m = re.fullmatch(r'(enable|disable) "([^"]+)"', command)
        if m is None:
            return "9001 syntax error, unexpected CF_SYM_UNDEFINED\n"
        verb, pat = m.groups()
        names = [n for n in sorted(self.protocols) if fnmatch.fnmatchcase(n, pat)]
        if not names:
            return "8003 No protocols match\n"
        lines = []
        for name in names:
            want = verb == "enable"
            if self.protocols[name] == want:
                lines.append(f"{'0010' if want else '0008'}-{name}: already {verb}d")
            else:
                self.protocols[name] = want
                lines.append(f"{'0011' if want else '0009'}-{name}: {verb}d")
        return "\n".join(lines) + "\n0000 \n"


class FakeDeadman:
    """The tun device needs root: its life is checked in tests/netns/test_bgp_bird.py."""

    def __init__(self) -> None:
        self.name = "mailha-bgp"
        self.held = False

    async def open(self) -> None:
        self.held = True

    def close(self) -> None:
        self.held = False
