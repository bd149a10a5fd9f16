"""SMTP_CHECK, MISC_CHECK and the checks/ scripts against a real Postfix in a namespace.

One namespace (prefix ``mhE``) with only ``lo``; a lab Postfix listens on port 25 in it.
The SMTP check runs in a Python subprocess inside the namespace (the check creates its
socket during an ``await``, so switching this thread's namespace around it is not safe).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from lab import netns
from lab.postfix import Postfix, lone_postfix
from mailha.checkers import check_misc
from mailha.config.model import CheckerCommon, MiscCheck, RealServer, ScriptCommand

pytestmark = pytest.mark.root

CHECKS = Path(__file__).resolve().parents[2] / "checks"
REPO = Path(__file__).resolve().parents[2]

_SMTP_CHECK = """
import asyncio, json, sys
from ipaddress import IPv4Address
from mailha.checkers import check_smtp
from mailha.config.model import CheckerCommon, RealServer, SmtpCheck
check = SmtpCheck(common=CheckerCommon(connect_timeout=2.0), helo_name="mailha.check")
r = asyncio.run(check_smtp(check, RealServer(ip=IPv4Address("127.0.0.1"), port=25)))
print(json.dumps({"ok": r.ok, "reason": r.reason, "detail": r.detail}))
"""


@pytest.fixture
async def postfix_ns() -> AsyncIterator[tuple[str, Postfix]]:
    async with lone_postfix("mhE", "mhe.test") as found:
        yield found


async def smtp_check_in(ns: str) -> dict[str, object]:
    result = await netns.run(
        [sys.executable, "-c", _SMTP_CHECK],
        netns=ns,
        time_limit=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    verdict: dict[str, object] = json.loads(result.stdout)
    return verdict


async def script_in(ns: str, *argv: str) -> netns.CommandResult:
    return await netns.run(list(argv), netns=ns, time_limit=30, check=False)


async def test_smtp_check_follows_postfix_stop_and_start(
    postfix_ns: tuple[str, Postfix],
) -> None:
    ns, postfix = postfix_ns
    verdict = await smtp_check_in(ns)
    assert verdict["ok"], verdict
    assert "EHLO accepted" in str(verdict["detail"])

    await postfix.stop()
    verdict = await smtp_check_in(ns)
    assert verdict["reason"] == "connection_refused", verdict

    await postfix.start()
    verdict = await smtp_check_in(ns)
    assert verdict["ok"], verdict


async def test_postfix_alive_script(postfix_ns: tuple[str, Postfix]) -> None:
    ns, postfix = postfix_ns
    alive = str(CHECKS / "postfix-alive")
    conf = str(postfix.conf_dir)
    result = await script_in(ns, alive, "-c", conf, "--timeout", "2")
    assert result.returncode == 0, result.stderr

    # as the postfix user, configured through MAIL_CONFIG
    result = await netns.run(
        ["setpriv", "--reuid=postfix", "--regid=postfix", "--clear-groups", alive],
        netns=ns,
        check=False,
        env={**os.environ, "MAIL_CONFIG": conf},
    )
    assert result.returncode == 0, result.stderr

    # master up but nothing on that port: the banner part fails
    result = await script_in(ns, alive, "-c", conf, "--port", "2526", "--timeout", "1")
    assert result.returncode == 1
    assert "no SMTP connection" in result.stderr and "\n" not in result.stderr.strip()

    await postfix.stop()
    result = await script_in(ns, alive, "-c", conf)
    assert result.returncode == 1
    assert "master is not running" in result.stderr


async def test_postfix_queue_weight_script_and_misc_dynamic(
    postfix_ns: tuple[str, Postfix],
) -> None:
    ns, postfix = postfix_ns
    weight = str(CHECKS / "postfix-queue-weight")
    conf = str(postfix.conf_dir)
    result = await netns.run(
        ["setpriv", "--reuid=postfix", "--regid=postfix", "--clear-groups",
         weight, "-c", conf, "-v"],
        netns=ns,
        check=False,
    )
    assert result.returncode == 2 + 100, (result.stdout, result.stderr)
    assert "queue 0 -> weight 100" in result.stdout

    # 30 fake deferred entries, low 10 / high 50: weight 100 - (20/40)*99 = 50.5 -> 50
    deferred = postfix.queue_dir / "deferred" / "A"
    deferred.mkdir(parents=True, exist_ok=True)
    for n in range(30):
        (deferred / f"FAKE{n:04d}").write_text("")
    try:
        check = MiscCheck(
            misc_path=ScriptCommand(
                (weight, "-c", conf, "--queue-low", "10", "--queue-high", "50"), user="postfix"
            ),
            misc_timeout=10,
            misc_dynamic=True,
            common=CheckerCommon(retry=0),
        )
        verdict = await check_misc(check, RealServer(ip=IPv4Address("127.0.0.1"), port=25))
        assert verdict.ok, verdict
        assert verdict.dynamic_weight == 50
    finally:
        shutil.rmtree(deferred)

    await postfix.stop()
    result = await script_in(ns, weight, "-c", conf)
    assert result.returncode == 1
    assert "master is not running" in result.stderr
