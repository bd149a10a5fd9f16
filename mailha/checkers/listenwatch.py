"""``local_watch``, second half: see the real server's listening socket go, not a poll later.

A Postfix master can be alive while nothing listens on the real server's port: master.cf
edited and ``postfix reload``, the smtpd inet service disabled, a port taken by another
program. The pidfd watch (:mod:`mailha.checkers.localwatch`) sees nothing then, and
until this watch only the polled SMTP check noticed.

The kernel reports every freed TCP socket of this network namespace to the sock_diag
destroy multicast groups (:mod:`mailha.net.sockdiag` has the kernel side). A BPF filter
on the netlink socket keeps only sockets with destination port 0 and the real server's
port, so mail sessions never wake mailha. When such a socket dies, a listener dump on
that port says whether another one still takes the real server's address (a wildcard
next to an exact bind, a ``SO_REUSEPORT`` sibling, an IPv6 dual-stack socket); if none
does, the server is reported dead through the same ``on_change(False, detail)`` as the
pidfd watch. Sockets are never announced when they are *created*, so while the server is
dead the dump is repeated every :data:`POLL_INTERVAL`; a listener found reports it alive,
which only lifts the watch's block: the normal SMTP check must still pass before the
server returns.

A kernel or sandbox that refuses the sockets (no inet_diag, an LSM, seccomp) disables
this watch with a warning naming the cause; the pidfd watch and the polled checks go on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from mailha.checkers.localwatch import OnChange
from mailha.ip import IPAddress
from mailha.net import sockdiag, sockfilter
from mailha.net.sockdiag import SockDiagError, SockInfo

__all__ = ["DiagSockets", "ListenerWatch"]

log = logging.getLogger("mailha.lvs")

#: How often the listeners are dumped while none accepts the real server.
POLL_INTERVAL = 0.2
#: Bound on one dump (the kernel answers in microseconds).
DUMP_TIMEOUT = 2.0
#: Repeats of a dump the socket table changed under (``NLM_F_DUMP_INTR``).
DUMP_RETRIES = 3
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RECV_SIZE = 1 << 16
_GROUPS = (sockdiag.SKNLGRP_INET_TCP_DESTROY, sockdiag.SKNLGRP_INET6_TCP_DESTROY)
#: A dump of a family the kernel has no diag handler for (IPv6 compiled out).
_NO_FAMILY = (errno.ENOENT, errno.EAFNOSUPPORT)


def _netlink() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                         | socket.SOCK_CLOEXEC, sockdiag.NETLINK_SOCK_DIAG)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class DiagSockets:
    """The two netlink sockets of one listener watch: destroy events and dumps.

    Made synchronously (:meth:`open`), so a caller can create them inside another
    network namespace (the lab's ``setns`` block) and hand them over.
    """

    events: socket.socket
    dumps: socket.socket
    #: The BPF filter is on; False: every destroy reaches userspace and is filtered there.
    kernel_filter: bool
    _seq: int = field(default=0, repr=False)

    @classmethod
    def open(cls, port: int) -> DiagSockets:
        """Join the TCP destroy groups with the port's filter; raises OSError as refused."""
        dumps = _netlink()
        try:
            events = _netlink()
        except OSError:
            dumps.close()
            raise
        try:
            for group in _GROUPS:
                events.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            try:
                sockfilter.attach(events, sockdiag.listener_destroy_filter(port))
                kernel_filter = True
            except OSError as exc:
                log.warning("local_watch: the kernel refused the sock_diag event filter "
                            "(%s); destroy events are filtered in mailha instead",
                            exc.strerror or exc)
                kernel_filter = False
        except OSError:
            events.close()
            dumps.close()
            raise
        return cls(events, dumps, kernel_filter)

    def close(self) -> None:
        self.events.close()
        self.dumps.close()

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq


Opener = Callable[[int], DiagSockets]


class ListenerWatch:
    """Report ``on_change(alive, detail)`` when no listener takes ``address``:``port``
    any more, and when one does again."""

    def __init__(self, address: IPAddress, port: int, on_change: OnChange, *,
                 poll: float = POLL_INTERVAL, opener: Opener = DiagSockets.open) -> None:
        self.address = address
        self.port = port
        self._on_change = on_change
        self._poll = poll
        self._opener = opener
        self.alive: bool | None = None
        #: Destroy messages that reached userspace, and dumps made: the watch's cost.
        self.events_received = 0
        self.dumps = 0
        host = f"[{address}]" if address.version == 6 else str(address)
        self.label = f"{host}:{port}"

    def _report(self, alive: bool, detail: str) -> None:
        if alive != self.alive:
            self.alive = alive
            self._on_change(alive, detail)

    async def run(self) -> None:
        """Watch until cancelled; sockets the kernel refuses disable the watch (logged)."""
        try:
            socks = self._opener(self.port)
        except OSError as exc:
            self._disable(f"cannot join the sock_diag TCP destroy groups: "
                          f"{exc.strerror or exc}")
            return
        try:
            try:
                serving = await self._serving(socks)
            except SockDiagError as exc:
                self._disable(str(exc))
                return
            while True:
                if serving:
                    self._report(True, f"a listener accepts {self.label}")
                    await self._listener_destroyed(socks)
                else:
                    self._report(False, f"no listening socket accepts {self.label}")
                    await asyncio.sleep(self._poll)
                    self._discard_events(socks)
                serving = await self._serving(socks)
        finally:
            socks.close()

    def _disable(self, why: str) -> None:
        log.warning("local_watch: listener watch of %s disabled: %s; the pidfd watch and "
                    "the polled checks go on", self.label, why)
        self._report(True, "listener watch disabled")

    async def _listener_destroyed(self, socks: DiagSockets) -> None:
        """Return when a socket that may have been a listener on the port is freed.

        A receive-queue overrun (ENOBUFS) may have lost one: that returns too, and the
        caller's dump decides.
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(socks.events, RECV_SIZE)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    return
                raise
            if self._relevant(data):
                return

    def _relevant(self, data: bytes) -> bool:
        found = False
        for sock in sockdiag.decode_messages(data):
            if sock is not None:
                self.events_received += 1
                found = found or sockdiag.is_listener_destroy(sock, self.port)
        return found

    def _discard_events(self, socks: DiagSockets) -> None:
        """Drop queued destroy events: while dead the poll decides, not the events."""
        while True:
            try:
                data = socks.events.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue
                raise
            self._relevant(data)

    async def _serving(self, socks: DiagSockets) -> bool:
        """Dump the port's listeners of each family that can serve the address."""
        listeners: list[SockInfo] = []
        for family in sockdiag.dump_families(self.address):
            try:
                listeners += await self._dump(socks, family)
            except SockDiagError as exc:
                if family == sockdiag.AF_INET6 and self.address.version == 4 \
                        and exc.errno in _NO_FAMILY:
                    continue  # no IPv6 in this kernel: no dual-stack listener either
                raise
            if sockdiag.serving(listeners, self.address, self.port):
                return True
        return False

    async def _dump(self, socks: DiagSockets, family: int) -> list[SockInfo]:
        for attempt in range(DUMP_RETRIES + 1):
            try:
                async with asyncio.timeout(DUMP_TIMEOUT):
                    return await self._dump_once(socks, family)
            except SockDiagError as exc:
                if exc.errno != errno.EINTR or attempt == DUMP_RETRIES:
                    raise
            except TimeoutError:
                raise SockDiagError(f"listener dump not answered within {DUMP_TIMEOUT} s",
                                    errno.ETIMEDOUT) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _dump_once(self, socks: DiagSockets, family: int) -> list[SockInfo]:
        self.dumps += 1
        seq = socks.next_seq()
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(socks.dumps,
                                sockdiag.listener_dump_request(family, self.port, seq))
        found: list[SockInfo] = []
        while True:
            data = await loop.sock_recv(socks.dumps, RECV_SIZE)
            for sock in sockdiag.decode_messages(data, seq):
                if sock is None:
                    return found
                found.append(sock)
