"""SMTP_CHECK: banner 220, EHLO (HELO when EHLO is refused with 5xx), QUIT.

Stricter and kinder than keepalived's checker at once: keepalived reads one line that
must start with ``220 `` and so fails every multi-line ``220-`` greeting (Postfix's
postscreen sends one); here the whole greeting is read. keepalived only says HELO; here
EHLO comes first, because that is what real clients send and what a broken ESMTP setup
fails, with RFC 5321's HELO fallback for servers that refuse it.

The dialogue runs on aiosmtplib over a socket we connect ourselves (see
:mod:`.connect`). Three of its defaults would be wrong for a health check and are
overridden: ``start_tls=None`` would send STARTTLS on its own, no ``local_hostname``
would resolve our FQDN in a thread, and its timeout would apply per step only. Its
reader is bounded (an 8 KiB line, a 32 KiB response), so a server streaming a 10 MB
banner costs us 32 KiB plus one socket read before the check fails with
``line_too_long``.

Every step (connect, banner, EHLO, HELO, QUIT) is bounded by ``connect_timeout``, as in
keepalived, and the verdict (connect to EHLO/HELO reply) by :data:`DEADLINE_STEPS` times
that: a healthy Postfix answers in milliseconds, and a server that answers each step
just in time must not hold a check (and its scheduler slot) for the sum of them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import aiosmtplib
from aiosmtplib import (
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPHeloError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from mailha.config.model import RealServer, SmtpCheck

from .connect import ConnectError, Target, connect_socket, target_of
from .result import CheckResult

__all__ = ["DEADLINE_STEPS", "SMTP_PORT", "check_smtp"]

SMTP_PORT = 25

#: The whole check gets this many ``connect_timeout`` periods.
DEADLINE_STEPS = 2


class _Failed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


async def check_smtp(check: SmtpCheck, real_server: RealServer) -> CheckResult:
    """Run one SMTP_CHECK against ``real_server``; never raises, never leaves a socket open."""
    started = time.monotonic()
    common = check.common
    step = common.connect_timeout
    sock: socket.socket | None = None
    client: aiosmtplib.SMTP | None = None
    if not _usable_helo_name(check.helo_name):
        return CheckResult.failure(
            "bad_helo_name", f"helo_name {check.helo_name!r} is not printable ASCII without blanks"
        )
    try:
        target = target_of(common, real_server, SMTP_PORT)
        async with asyncio.timeout(step * DEADLINE_STEPS):
            sock = await connect_socket(target, common, step)
            client = aiosmtplib.SMTP(
                local_hostname=check.helo_name,
                timeout=step,
                use_tls=False,
                start_tls=False,
            )
            banner = await _read_banner(client, sock, target, step)
            command = await _greet(client, target, check.helo_name)
        # The verdict is in. QUIT is courtesy, bounded by one step, and waits for the
        # 221 so that the *server* closes first and keeps the TIME_WAIT: a checker
        # closing first would pile up TIME_WAIT sockets at thousands of checks a second.
        with contextlib.suppress(SMTPException, OSError):
            await client.quit(timeout=step)
    except (ConnectError, _Failed) as exc:
        return CheckResult.failure(exc.reason, exc.detail, time.monotonic() - started)
    except TimeoutError:
        return CheckResult.failure(
            "deadline_exceeded",
            f"SMTP check of {target} took over {step * DEADLINE_STEPS:g}s",
            time.monotonic() - started,
        )
    finally:
        if client is not None:
            client.close()
        if sock is not None:
            sock.close()  # a no-op once the transport has taken it over and closed it
    first_line = banner.splitlines()[0] if banner else ""
    return CheckResult.success(
        f"{target}: 220 {_clip(first_line, 80)}; {command} accepted", time.monotonic() - started
    )


async def _read_banner(
    client: aiosmtplib.SMTP, sock: socket.socket, target: Target, step: float
) -> str:
    try:
        response = await client.connect(sock=sock)
    except SMTPConnectTimeoutError as exc:
        raise _Failed("banner_timeout", f"no banner from {target} within {step:g}s") from exc
    except SMTPConnectResponseError as exc:
        raise _Failed(
            f"banner_code_{exc.code}", f"{target} greeted with {exc.code} {_clip(exc.message)}"
        ) from exc
    except SMTPResponseException as exc:
        raise _malformed(exc, target, "banner") from exc
    except (SMTPConnectError, SMTPServerDisconnected) as exc:
        raise _disconnected(exc, target, "banner") from exc
    return response.message


async def _greet(client: aiosmtplib.SMTP, target: Target, helo_name: str) -> str:
    """EHLO, falling back to HELO on a 5xx; returns the command that was accepted."""
    try:
        await _command(client, "ehlo", target, helo_name)
        return "EHLO"
    except SMTPHeloError as exc:
        if not 500 <= exc.code <= 599:
            raise _Failed(
                f"ehlo_rejected_{exc.code}",
                f"{target} answered EHLO with {exc.code} {_clip(exc.message)}",
            ) from exc
    try:
        await _command(client, "helo", target, helo_name)
    except SMTPHeloError as exc:
        raise _Failed(
            f"helo_rejected_{exc.code}",
            f"{target} refused EHLO and answered HELO with {exc.code} {_clip(exc.message)}",
        ) from exc
    return "HELO"


async def _command(client: aiosmtplib.SMTP, verb: str, target: Target, helo_name: str) -> None:
    """Send EHLO or HELO; map everything but a reply code to a precise failure."""
    send = client.ehlo if verb == "ehlo" else client.helo
    try:
        await send(hostname=helo_name)
    except SMTPHeloError:
        raise
    except SMTPTimeoutError as exc:
        raise _Failed(
            f"{verb}_timeout", f"no answer to {verb.upper()} from {target} in time"
        ) from exc
    except SMTPResponseException as exc:
        raise _malformed(exc, target, verb.upper()) from exc
    except (SMTPServerDisconnected, ConnectionError) as exc:
        raise _disconnected(exc, target, verb.upper()) from exc


def _malformed(exc: SMTPResponseException, target: Target, stage: str) -> _Failed:
    if "too long" in exc.message:
        return _Failed("line_too_long", f"{target} sent an over-long {stage} reply")
    return _Failed(
        "garbage_reply", f"{target} sent a malformed {stage} reply: {_clip(exc.message)}"
    )


def _disconnected(exc: BaseException, target: Target, stage: str) -> _Failed:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionResetError):
            return _Failed("connection_reset", f"{target} reset the connection during {stage}")
        cause = cause.__cause__ or cause.__context__
    return _Failed("connection_closed", f"{target} closed the connection during {stage}")


def _usable_helo_name(name: str) -> bool:
    """What may follow EHLO on the command line: no blanks, no controls, ASCII only."""
    return bool(name) and all(33 <= ord(c) <= 126 for c in name)


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
