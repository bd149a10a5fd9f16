"""TCP_CHECK: the real server accepts a TCP connection within ``connect_timeout``."""

from __future__ import annotations

import time

from mailha.config.model import RealServer, TcpCheck

from .connect import ConnectError, connect_socket, target_of
from .result import CheckResult

__all__ = ["check_tcp"]


async def check_tcp(check: TcpCheck, real_server: RealServer) -> CheckResult:
    """Connect, then close at once (a normal FIN, as keepalived: no RST that looks like abuse)."""
    started = time.monotonic()
    common = check.common
    try:
        target = target_of(common, real_server, None)
        sock = await connect_socket(target, common, common.connect_timeout)
    except ConnectError as exc:
        return CheckResult.failure(exc.reason, exc.detail, time.monotonic() - started)
    sock.close()
    return CheckResult.success(f"connected to {target}", time.monotonic() - started)
