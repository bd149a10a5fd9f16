"""Real-server health checks: SMTP_CHECK, TCP_CHECK, MISC_CHECK and what follows from them.

* :mod:`.smtp`, :mod:`.tcp`, :mod:`.misc`: one check run, ``async`` and self-contained,
  returning a :class:`.result.CheckResult`; :func:`run_checker` dispatches on the type.
* :mod:`.state`: pure per-real-server logic (retry, alpha, weights, notify events).
* :mod:`.quorum`: pure per-virtual-server logic (quorum, hysteresis, sorry server).
* :mod:`.scheduler`: runs every checker on its own timer and feeds the pure state.
"""

from __future__ import annotations

from mailha.config.model import Checker, MiscCheck, RealServer, SmtpCheck, TcpCheck

from .misc import check_misc
from .result import CheckResult
from .smtp import check_smtp
from .tcp import check_tcp

__all__ = ["CheckResult", "check_misc", "check_smtp", "check_tcp", "run_checker"]


async def run_checker(checker: Checker, real_server: RealServer) -> CheckResult:
    """Run whichever check ``checker`` configures, once."""
    if isinstance(checker, SmtpCheck):
        return await check_smtp(checker, real_server)
    if isinstance(checker, TcpCheck):
        return await check_tcp(checker, real_server)
    if isinstance(checker, MiscCheck):
        return await check_misc(checker, real_server)
    raise TypeError(f"unknown checker type {type(checker).__name__}")
