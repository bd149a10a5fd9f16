"""Open the checker's TCP connection with every keepalived connection option honoured.

TCP_CHECK and SMTP_CHECK share this: the socket is created and connected here, not by
a library, because ``bind_if`` (SO_BINDTODEVICE) and ``fwmark`` (SO_MARK) have to be set
between ``socket()`` and ``connect()``, and because owning the ``connect()`` lets us name
the failure precisely from its errno instead of parsing a library's message.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass

from mailha.config.model import CheckerCommon, RealServer
from mailha.errors import MailhaError
from mailha.ip import IPAddress

__all__ = ["ConnectError", "Target", "connect_socket", "oserror_reason", "target_of"]

# Linux values; the socket module only exposes them on some builds.
_SO_MARK = getattr(socket, "SO_MARK", 36)
_SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)

_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection_refused",
    errno.ECONNRESET: "connection_reset",
    errno.ECONNABORTED: "connection_reset",
    errno.EPIPE: "connection_reset",
    errno.ETIMEDOUT: "connect_timeout",
    errno.EHOSTUNREACH: "host_unreachable",
    errno.EHOSTDOWN: "host_unreachable",
    errno.ENETUNREACH: "network_unreachable",
    errno.ENETDOWN: "network_unreachable",
    errno.EADDRINUSE: "address_in_use",
    errno.EADDRNOTAVAIL: "address_unavailable",
    errno.EPERM: "permission_denied",
    errno.EACCES: "permission_denied",
    errno.ENODEV: "no_such_device",
}


def oserror_reason(exc: OSError) -> str:
    """A stable reason token for a socket error: ``connection_refused``, ``socket_emfile``."""
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return "connect_timeout"
    if exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    name = errno.errorcode.get(exc.errno or 0, "unknown")
    return f"socket_{name.lower()}"


class ConnectError(MailhaError):
    """The connection could not be made; ``reason`` is a stable token, ``detail`` prose."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Target:
    """Where a checker connects: ``connect_ip``/``connect_port`` or the real server's."""

    address: IPAddress
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.port}"


def target_of(common: CheckerCommon, real_server: RealServer, default_port: int | None) -> Target:
    """Resolve the checker's destination as keepalived does (checker, then real server).

    ``default_port`` covers a real server without a port (a fwmark service): SMTP_CHECK
    then talks to 25. Raises :class:`ConnectError` ``no_port`` when nothing gives a port.
    """
    port = common.connect_port or real_server.port or default_port
    if port is None:
        raise ConnectError(
            "no_port", f"no connect_port and real server {real_server.ip} has no port"
        )
    return Target(common.connect_ip or real_server.ip, port)


async def connect_socket(target: Target, common: CheckerCommon, limit: float) -> socket.socket:
    """Return a socket connected within ``limit`` seconds, or raise :class:`ConnectError`.

    The socket is closed on every failure path, including cancellation.
    """
    family = socket.AF_INET6 if target.address.version == 6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    except OSError as exc:
        raise ConnectError(oserror_reason(exc), f"cannot create a socket: {exc.strerror}") from exc
    try:
        sock.setblocking(False)
        _apply_options(sock, common)
        address: tuple[str, int] | tuple[str, int, int, int] = (str(target.address), target.port)
        if family == socket.AF_INET6 and common.bind_if and target.address.is_link_local:
            address = (str(target.address), target.port, 0, socket.if_nametoindex(common.bind_if))
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit):
                await loop.sock_connect(sock, address)
        except TimeoutError as exc:
            raise ConnectError(
                "connect_timeout", f"no connection to {target} within {limit:g}s"
            ) from exc
        except OSError as exc:
            raise ConnectError(
                oserror_reason(exc), f"connect to {target}: {exc.strerror or exc}"
            ) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def _apply_options(sock: socket.socket, common: CheckerCommon) -> None:
    try:
        if common.fwmark is not None:
            sock.setsockopt(socket.SOL_SOCKET, _SO_MARK, common.fwmark)
        if common.bind_if is not None:
            sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, common.bind_if.encode())
        if common.bindto is not None or common.bind_port is not None:
            if common.bind_port:
                # A fixed source port is reused every delay_loop while the last
                # connection may still sit in TIME_WAIT.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            host = str(common.bindto) if common.bindto is not None else ""
            sock.bind((host, common.bind_port or 0))
    except OSError as exc:
        what = _describe_options(common)
        raise ConnectError(
            oserror_reason(exc), f"cannot set up the socket ({what}): {exc.strerror or exc}"
        ) from exc


def _describe_options(common: CheckerCommon) -> str:
    parts = []
    if common.fwmark is not None:
        parts.append(f"fwmark {common.fwmark}")
    if common.bind_if is not None:
        parts.append(f"bind_if {common.bind_if}")
    if common.bindto is not None:
        parts.append(f"bindto {common.bindto}")
    if common.bind_port is not None:
        parts.append(f"bind_port {common.bind_port}")
    return ", ".join(parts)
