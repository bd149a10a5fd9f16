"""Errors of the IPVS layer: one base class, each subclass with a stable reason."""

from __future__ import annotations

import errno as _errno
import os
from typing import TYPE_CHECKING

from mailha.errors import MailhaError

if TYPE_CHECKING:
    from mailha.lvs.planner import Op


class IpvsError(MailhaError):
    """Anything that went wrong talking to the kernel's IPVS."""


class IpvsUnavailableError(IpvsError):
    """The kernel has no IPVS generic-netlink family: ip_vs is not loaded (or not built)."""

    def __init__(self, detail: str = "") -> None:
        message = (
            "the kernel has no IPVS (generic netlink family 'IPVS' not found):"
            " load the module with `modprobe ip_vs`"
        )
        super().__init__(f"{message} ({detail})" if detail else message)


class IpvsWireError(IpvsError):
    """A message from the kernel that does not parse (truncated, missing attribute...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IpvsRequestError(IpvsError):
    """The kernel refused a request that is not a planner operation (dump, flush...)."""

    def __init__(self, what: str, errno: int, detail: str | None = None) -> None:
        self.what = what
        self.errno = errno
        self.detail = detail
        text = f"{what}: {os.strerror(errno)} ({_errno.errorcode.get(errno, errno)})"
        super().__init__(f"{text}: {detail}" if detail else text)


class IpvsOpError(IpvsError):
    """The kernel refused one operation of a batch.

    ``reason`` explains the errno *for that kind of operation* (ENOENT on adding a
    service means a missing scheduler module, on editing a destination a missing
    destination); ``detail`` is the kernel's extended-ack text when it sent one.
    """

    def __init__(self, op: Op, errno: int, reason: str, detail: str | None = None) -> None:
        self.op = op
        self.errno = errno
        self.reason = reason
        self.detail = detail
        name = _errno.errorcode.get(errno, str(errno))
        text = f"{op.describe()}: {reason} ({name})"
        super().__init__(f"{text}: {detail}" if detail else text)
