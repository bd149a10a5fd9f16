"""Stopping the check scheduler while real SMTP checks are in flight never hangs.

Regression test for issue 9, defect 1: on Python 3.11, ``asyncio.wait_for`` (which
aiosmtplib calls while connecting and reading replies) drops a cancellation that
arrives as the awaited step completes (CPython gh-86296). A checker loop that lost its
cancellation kept checking, the scheduler's TaskGroup never exited, and the daemon's
stop hung until SIGKILL, leaving its services in IPVS. Here the scheduler is stopped
at 500 random moments while checks run against an instant local SMTP server, with
aiosmtplib's real code path; every stop must complete within a bound.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from ipaddress import IPv4Address

import pytest

from mailha.checkers.quorum import VirtualServerHealth
from mailha.checkers.scheduler import CheckScheduler
from mailha.config.model import CheckerCommon, RealServer, SmtpCheck, VirtualServer
from mailha.tasks import cancel_and_wait

STOPS = 500
CHECKERS = 8
#: Generous for a loaded 2-core CI machine; a lost cancellation hangs for ever instead.
STOP_BOUND = 5.0


async def _smtp_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(b"220 instant ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            writer.write(b"250 ok\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def smtp_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_smtp_session, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def _services(port: int) -> list[VirtualServerHealth]:
    common = CheckerCommon(connect_timeout=2.0, delay_loop=0.001, delay_before_retry=0.001,
                           warmup=0, retry=1)
    servers = tuple(
        RealServer(ip=IPv4Address("127.0.0.1"), port=port,
                   checkers=(SmtpCheck(common=common),))
        for _ in range(CHECKERS)
    )
    vs = VirtualServer(ip=IPv4Address("10.0.0.100"), port=25, real_servers=servers)
    return [VirtualServerHealth(vs)]


async def test_cancelling_run_at_random_moments_always_stops(smtp_port: int) -> None:
    rng = random.Random(20261201)
    checks = 0
    for attempt in range(STOPS):
        scheduler = CheckScheduler(_services(smtp_port), lambda _s, _u: None,
                                   rng=random.Random(attempt))
        run = asyncio.create_task(scheduler.run(), name="checks")
        await asyncio.sleep(rng.uniform(0.0, 0.012))
        run.cancel()  # one cancellation, as LvsManager and a TaskGroup would send
        done, _ = await asyncio.wait({run}, timeout=STOP_BOUND)
        if not done:
            await cancel_and_wait({run}, within=5)
            pytest.fail(f"stop #{attempt} hung: the scheduler ignored its cancellation "
                        f"after {scheduler.stats.checks} checks")
        assert run.cancelled() or run.exception() is None
        checks += scheduler.stats.checks
    assert checks > STOPS, "the checks must really have been in flight when stopped"


async def test_stop_method_stops_and_runs_no_check_after(smtp_port: int) -> None:
    scheduler = CheckScheduler(_services(smtp_port), lambda _s, _u: None)
    run = asyncio.create_task(scheduler.run(), name="checks")
    for _ in range(5000):
        if scheduler.stats.checks >= 20:
            break
        await asyncio.sleep(0.001)
    await scheduler.stop(within=STOP_BOUND)
    assert run.done()
    after = scheduler.stats.checks
    await asyncio.sleep(0.05)
    assert scheduler.stats.checks == after
