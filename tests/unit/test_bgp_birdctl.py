"""BIRD's control-socket protocol: replies as BIRD 2.0.12 sent them, in any chunking, and
the client's commands, errors and reconnection against an in-process socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fake_bird import FakeBird

from mailha.bgp.birdctl import (
    BirdClient,
    BirdError,
    BirdRefused,
    ReplyReader,
    parse_protocols,
)

#: Captured from BIRD 2.0.12 (namespace, `show protocols` after enabling one static).
SHOW_PROTOCOLS = (
    b"2002-Name       Proto      Table      State  Since         Info\n"
    b"1002-device1    Device     ---        up     06:19:28.812  \n"
    b" mailha_10_12_49_37 Static     master4    down   06:19:28.812  \n"
    b" uplink     BGP        ---        start  2026-11-30 06:19:28  Active        "
    b"Socket: Connection refused\n"
    b"0000 \n")
CONFIGURE = b"0002-Reading configuration from /tmp/bgpexp/bird.conf\n0003 Reconfigured\n"


def test_reply_reader_folds_continuations_and_ends_on_a_space() -> None:
    (reply,) = ReplyReader().feed(SHOW_PROTOCOLS)
    assert [line.code for line in reply.lines] == [2002, 1002, 0]
    assert reply.code == 0 and reply.ok
    assert reply.lines[1].text.count("\n") == 2


@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_reply_reader_any_chunking(size: int) -> None:
    reader = ReplyReader()
    replies = []
    data = SHOW_PROTOCOLS + CONFIGURE
    for i in range(0, len(data), size):
        replies += reader.feed(data[i:i + size])
    assert [r.code for r in replies] == [0, 3]
    assert replies[1].text == "Reading configuration from /tmp/bgpexp/bird.conf\nReconfigured"


def test_errors_and_spontaneous_lines() -> None:
    reader = ReplyReader()
    assert reader.feed(b"+ some debug output\n") == []
    (reply,) = reader.feed(b"9001 syntax error, unexpected CF_SYM_UNDEFINED\n")
    assert not reply.ok and reply.code == 9001
    with pytest.raises(BirdError, match="not a reply"):
        ReplyReader().feed(b"hello\n")
    with pytest.raises(BirdError, match="continuation"):
        ReplyReader().feed(b" orphan\n")


def test_parse_protocols() -> None:
    (reply,) = ReplyReader().feed(SHOW_PROTOCOLS)
    rows = parse_protocols(reply)
    assert [(r.name, r.proto, r.state, r.up) for r in rows] == [
        ("device1", "Device", "up", True),
        ("mailha_10_12_49_37", "Static", "down", False),
        ("uplink", "BGP", "start", False),
    ]
    assert rows[2].since == "2026-11-30 06:19:28"
    assert rows[2].info == "Active Socket: Connection refused"


@pytest.fixture
async def bird(tmp_path: Path) -> FakeBird:
    include = tmp_path / "mailha.conf"
    include.write_text('protocol static mailha_a { ipv4; disabled; route 10.0.0.1/32 via "x"; }\n'
                       'protocol static mailha_b { ipv4; disabled; route 10.0.0.2/32 via "x"; }\n')
    fake = FakeBird(tmp_path / "bird.ctl", include=include)
    fake.load_include()
    await fake.start()
    yield fake
    await fake.stop()


async def test_commands(bird: FakeBird) -> None:
    client = BirdClient(bird.path)
    try:
        assert await client.enable("mailha_a") is True
        assert await client.enable("mailha_a") is False
        assert client.version == "BIRD 2.0.12"
        assert bird.enabled() == {"mailha_a"}
        assert await client.disable_matching("mailha_*") == 1
        assert await client.disable_matching("nomatch_*") == 0
        assert await client.disable("mailha_b") is False
        rows = await client.protocols()
        assert {r.name for r in rows} >= {"mailha_a", "mailha_b", "uplink"}
        assert "Reconfigured" in await client.configure()
        assert bird.commands[:2] == ['enable "mailha_a"', 'enable "mailha_a"']
    finally:
        await client.close()


async def test_refusals_name_the_command(bird: FakeBird) -> None:
    client = BirdClient(bird.path)
    try:
        with pytest.raises(BirdRefused, match='enable "mailha_zz"'):
            await client.enable("mailha_zz")
        bird.refuse_configure = "/etc/bird/bird.conf:3:1 syntax error"
        with pytest.raises(BirdRefused, match="syntax error"):
            await client.configure()
        with pytest.raises(BirdError, match="quote"):
            await client.enable('x" ; configure')
    finally:
        await client.close()


async def test_unreachable_then_reconnects(tmp_path: Path, bird: FakeBird) -> None:
    client = BirdClient(bird.path, timeout=1)
    try:
        await client.enable("mailha_a")
        await bird.stop()
        with pytest.raises(BirdError, match="BIRD"):
            await client.protocols()
        with pytest.raises(BirdError, match="no such socket"):
            await client.protocols()
        await bird.start()  # a restarted BIRD: the next command connects again
        assert await client.enable("mailha_b") is True
    finally:
        await client.close()


async def test_a_silent_bird_times_out(bird: FakeBird) -> None:
    client = BirdClient(bird.path, timeout=0.3)
    bird.silent = True
    try:
        with pytest.raises(BirdError, match="did not answer"):
            await client.protocols()
    finally:
        await client.close()


async def test_not_a_bird(tmp_path: Path) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 smtp.example ESMTP\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(tmp_path / "s"))
    client = BirdClient(tmp_path / "s", timeout=1)
    try:
        with pytest.raises(BirdError, match="not a reply"):
            await client.protocols()
    finally:
        await client.close()
        server.close()
