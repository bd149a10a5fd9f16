"""The dead-man device: a tun interface that exists exactly as long as mailha's process.

The generated static routes go ``via "mailha-bgp"``; BIRD withdraws a static route whose
interface disappears, and a tun device created without ``TUNSETPERSIST`` is deleted by
the kernel when the last file descriptor on it closes — at exit, clean or SIGKILL. So
the announcement needs mailha alive without mailha having to do anything when it dies.
Measured with BIRD 2.0.12 in a namespace: the route is gone from BIRD's table 8-9 ms
after SIGKILL of the holder, with the device protocol's ``scan time`` at 1000 s (BIRD
learns of the link's removal from netlink events, not from the periodic scan).

The descriptor is opened close-on-exec, so scripts mailha runs do not keep it (and the
device) alive after mailha is gone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mailha.errors import MailhaError
from mailha.resource import AsyncResource

__all__ = ["DeadmanDevice", "DeadmanError"]

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class DeadmanError(MailhaError):
    """The dead-man device cannot be made; the message says why and what to do."""


class DeadmanDevice(AsyncResource):
    """``async with DeadmanDevice("mailha-bgp"):`` the device exists, up, inside the block.

    It lives in the network namespace current when it is entered.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    async def _enter(self) -> None:
        await self.open()

    async def _exit(self) -> None:
        self.close()

    async def open(self) -> None:
        if self._fd is not None:
            return
        fd = _open_tun(self.name)
        try:
            await _set_up(self.name)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def close(self) -> None:
        """Close the descriptor: the kernel deletes the device (and BIRD the routes)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _open_tun(name: str) -> int:
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DeadmanError(f"{TUN_PATH} is missing: load the tun module (modprobe tun)") from None
    except OSError as exc:
        raise DeadmanError(f"cannot open {TUN_PATH}: {exc.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EBUSY:
            raise DeadmanError(
                f"interface {name} is held by another process (a second mailha on this "
                "node?); only one mailha may announce by BGP per network namespace") from None
        if exc.errno == errno.EPERM:
            raise DeadmanError(f"creating the tun device {name} needs CAP_NET_ADMIN") from None
        raise DeadmanError(
            f"cannot create the tun device {name}: {exc.strerror} (an interface of another "
            "kind with that name? set [bgp] deadman_interface to a free name)") from None
    return fd


async def _set_up(name: str) -> None:
    ipr: Any = AsyncIPRoute()
    try:
        await ipr.setup_endpoint()
        found = await ipr.link_lookup(ifname=name)
        if not found:
            raise DeadmanError(f"the tun device {name} vanished right after it was made")
        await ipr.link("set", index=found[0], state="up")
    except NetlinkError as exc:
        raise DeadmanError(f"cannot bring {name} up: {exc}") from None
    finally:
        ipr.close()
