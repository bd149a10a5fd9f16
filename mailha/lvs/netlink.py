"""Asyncio adapter to the kernel's IPVS over one long-lived generic-netlink socket.

The kernel handles IPVS requests synchronously, one after the other, in the order
they arrive on the socket. So a whole plan is written as a few ``sendmsg`` calls
carrying many requests each (distinct sequence numbers, every one asking for an
ack), and the acks are collected afterwards: no round trip per operation, which is
what made pyroute2's per-call API ~11 ms/op in the test VM. Each failed ack is
mapped back to its operation, with the errno explained for that operation.

Dumps are the exception: netlink runs one dump at a time per socket, so a full
:meth:`IpvsNetlink.observe` is one service dump plus one destination dump per
service, in sequence. The socket is drained without waiting whenever possible
(the kernel has usually answered by the time ``sendmsg`` returns), so the event
loop is only involved when the kernel is actually slow.

Every wait is bounded by the adapter's timeout.
"""

from __future__ import annotations

import asyncio
import errno as _errno
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from mailha.ip import IPAddress
from mailha.lvs import wire
from mailha.lvs.errors import (
    IpvsError,
    IpvsOpError,
    IpvsRequestError,
    IpvsUnavailableError,
    IpvsWireError,
)
from mailha.lvs.model import (
    Destination,
    DestStats,
    ObservedTable,
    Service,
    ServiceKey,
    ServiceRow,
    ServiceStats,
    Stats,
)
from mailha.lvs.planner import AddDest, AddService, DelService, EditDest, EditService, Op
from mailha.lvs.wire import DaemonInfo, DaemonState, Reply, Timeouts
from mailha.resource import AsyncResource

__all__ = ["ApplyResult", "DaemonInfo", "DaemonState", "IpvsNetlink", "Timeouts"]

#: Requests in flight at once: their acks must fit the receive buffer, or the
#: kernel drops them (ENOBUFS). An ack costs ~1 KiB of buffer (skb overhead).
WINDOW = 128
#: Bytes per sendmsg; the kernel refuses messages larger than the send buffer.
SEND_CHUNK = 32 * 1024
RCVBUF = 1 << 20
RECV_SIZE = 1 << 16
DEFAULT_TIMEOUT = 5.0
#: How often a dump the table changed under (NLM_F_DUMP_INTR) is repeated.
DUMP_RETRIES = 3
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
NETLINK_GENERIC = 16


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What a batch did: operations the kernel acked, and those it refused.

    Later operations are still attempted after a failure (an ``AddDest`` whose
    ``AddService`` failed then fails too, with ESRCH): the caller re-observes and
    re-plans rather than trusting a half-known state.
    """

    applied: tuple[Op, ...]
    errors: tuple[IpvsOpError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise the first refusal, if any (all of them are in :attr:`errors`)."""
        if self.errors:
            raise self.errors[0]


class IpvsNetlink(AsyncResource):
    """The kernel's IPVS table: observe it, apply planner operations, and the rest.

    Open with :meth:`open` (resolves the "IPVS" generic-netlink family, loading
    ``ip_vs`` if allowed), use as an async context manager or call :meth:`close`.
    Calls may come from several tasks; they are serialised on the one socket.
    """

    def __init__(self, sock: socket.socket, family_id: int, *, timeout: float = DEFAULT_TIMEOUT):
        self._sock = sock
        self._family = family_id
        self._timeout = timeout
        self._exchange = wire.Exchange()
        self._lock = asyncio.Lock()
        self._buf = bytearray(RECV_SIZE)
        self._cache = wire.DecodeCache()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls, *, load_module: bool = True, request_timeout: float = DEFAULT_TIMEOUT
    ) -> IpvsNetlink:
        """Connect to the kernel's IPVS; try ``modprobe ip_vs`` once if it is missing.

        ``request_timeout`` bounds every later call's wait for the kernel's answers.
        """
        timeout = request_timeout
        sock = _netlink_socket()
        try:
            try:
                family = await _resolve_family(sock, timeout)
            except IpvsUnavailableError:
                if not load_module or not await _modprobe("ip_vs", timeout):
                    raise
                family = await _resolve_family(sock, timeout)
        except BaseException:
            sock.close()
            raise
        return cls(sock, family, timeout=timeout)

    async def close(self) -> None:
        self._sock.close()


    async def _exit(self) -> None:
        await self.close()

    @property
    def family_id(self) -> int:
        return self._family

    # ------------------------------------------------------------------ operations

    async def apply(self, ops: Sequence[Op]) -> ApplyResult:
        """Carry out ``ops`` in order, pipelined; never raises for a refused op."""
        builders = [partial(wire.encode_op, op, self._family) for op in ops]
        replies = await self._transact(builders)
        applied: list[Op] = []
        errors: list[IpvsOpError] = []
        for op, reply in zip(ops, replies, strict=True):
            if reply.errno == 0:
                applied.append(op)
            else:
                errors.append(IpvsOpError(op, reply.errno, explain(op, reply.errno), reply.message))
        return ApplyResult(tuple(applied), tuple(errors))

    async def observe(self, *, with_stats: bool = True) -> ObservedTable:
        """The whole kernel table: one dump of services, then one per service.

        ``with_stats=False`` skips decoding the counters (they read as zeros), for
        reconcile loops that only compare configuration. Services and rows whose
        configuration is unchanged since the previous observe are not decoded again
        (see :class:`wire.DecodeCache`).

        The dumps run one after the other, under the lock: the kernel runs one dump
        per socket at a time (each lasts until its last part is read), so sending
        the next request before that would only collect EBUSY refusals.
        """
        servers: dict[ServiceKey, ServiceRow] = {}
        stats: dict[ServiceKey, ServiceStats] = {}
        unreadable: list[str] = []
        cache = self._cache
        async with self._lock:
            payloads = await self._dump_locked(partial(wire.encode_dump_services, self._family))
            for payload in payloads:
                try:
                    service, service_stats, config, request = cache.service(
                        payload, with_stats=with_stats
                    )
                except IpvsWireError as exc:
                    unreadable.append(exc.reason)
                    continue
                build = partial(wire.encode_dump_dests_of, self._family, service=request)
                dests = await self._dump_locked(build)
                try:
                    row, dest_stats = cache.row(service, config, dests, with_stats=with_stats)
                except IpvsWireError as exc:
                    unreadable.append(f"{service.key}: {exc.reason}")
                    continue
                servers[service.key] = row
                stats[service.key] = ServiceStats(service_stats, dest_stats)
        cache.rotate()
        return ObservedTable(servers, stats, unreadable)

    @property
    def cached(self) -> int:
        """How many table rows the decode cache holds (at most the table's size)."""
        return len(self._cache)

    async def services(self) -> list[tuple[Service, Stats]]:
        """Every kernel service that fits the model, with its counters."""
        payloads = await self._dump(partial(wire.encode_dump_services, self._family))
        out = []
        for payload in payloads:
            try:
                out.append(wire.decode_service(payload))
            except IpvsWireError:
                continue
        return out

    async def destinations(
        self, key: ServiceKey, *, with_stats: bool = True
    ) -> list[tuple[Destination, DestStats]]:
        """The destinations of one service (none if the service does not exist)."""
        payloads = await self._dump(partial(wire.encode_dump_dests, self._family, key=key))
        return [wire.decode_dest(p, key.family, with_stats=with_stats) for p in payloads]

    async def flush(self) -> None:
        """Delete every service, foreign ones included (``ipvsadm -C``)."""
        await self._simple("flush", partial(wire.encode_flush, self._family))

    async def zero(self, key: ServiceKey | None = None) -> None:
        """Zero the counters of one service, or of all (``ipvsadm -Z``)."""
        what = "zero counters" if key is None else f"zero counters of {key}"
        await self._simple(what, partial(wire.encode_zero, self._family, key=key))

    async def timeouts(self) -> Timeouts:
        """The connection-table timeouts (``ipvsadm -L --timeout``)."""
        reply = await self._simple("get timeouts", partial(wire.encode_get_config, self._family))
        if not reply.payloads:
            raise IpvsWireError("GET_CONFIG answered without a configuration")
        return wire.decode_timeouts(reply.payloads[0])

    async def set_timeouts(
        self, *, tcp: int | None = None, tcp_fin: int | None = None, udp: int | None = None
    ) -> None:
        """Set connection-table timeouts in seconds; ``None`` leaves one unchanged."""
        build = partial(wire.encode_set_config, self._family, tcp=tcp, tcp_fin=tcp_fin, udp=udp)
        await self._simple("set timeouts", build)

    # ------------------------------------------------------------------ sync daemons

    async def daemons(self) -> list[DaemonInfo]:
        """The running connection-sync daemons (``ipvsadm -L --daemon``): at most one
        master and one backup per network namespace."""
        payloads = await self._dump(partial(wire.encode_dump_daemons, self._family))
        return [wire.decode_daemon(p) for p in payloads]

    async def start_daemon(
        self,
        state: DaemonState,
        *,
        interface: str,
        sync_id: int = 0,
        maxlen: int | None = None,
        port: int | None = None,
        ttl: int | None = None,
        group: IPAddress | None = None,
    ) -> None:
        """Start the master or backup sync daemon (``ipvsadm --start-daemon``).

        Idempotent: if that daemon already runs with these settings, nothing happens.
        If it runs with other settings, this raises (EEXIST) naming what runs: the
        caller decides whether to stop it, since another tool may have started it.
        ``None`` settings are left to the kernel. Raises ``ValueError`` for settings
        the kernel would refuse (interface name, ranges, a non-multicast group).
        """
        want = DaemonInfo(state, interface, sync_id, maxlen, port, ttl, group)
        wire.check_daemon(want)  # here, not mid-batch: a refused request never leaves
        build = partial(wire.encode_new_daemon, self._family, daemon=want)
        (reply,) = await self._transact([build])
        if reply.errno == 0:
            return
        what = f"start {want.describe()}"
        if reply.errno == _errno.EEXIST:
            running = next((d for d in await self.daemons() if d.state == state), None)
            if running is not None and want.matches(running):
                return
            detail = (
                f"another {running.describe()} is running; stop it first"
                if running is not None
                else f"a {state} sync daemon is already running"
            )
            raise IpvsRequestError(what, reply.errno, detail)
        raise IpvsRequestError(what, reply.errno, _daemon_detail(want, reply))

    async def stop_daemon(self, state: DaemonState) -> bool:
        """Stop the master or backup sync daemon (``ipvsadm --stop-daemon``).

        Idempotent: returns False, rather than raising, when it was not running.
        """
        wire.check_daemon_state(state)
        build = partial(wire.encode_del_daemon, self._family, state=state)
        (reply,) = await self._transact([build])
        if reply.errno == _errno.ESRCH:
            return False
        if reply.errno:
            raise IpvsRequestError(f"stop {state} sync daemon", reply.errno, reply.message)
        return True

    # ------------------------------------------------------------------ transport

    async def _simple(self, what: str, build: Callable[[int], bytes]) -> Reply:
        (reply,) = await self._transact([build])
        if reply.errno:
            raise IpvsRequestError(what, reply.errno, reply.message)
        return reply

    async def _dump(self, build: Callable[[int], bytes]) -> list[bytes]:
        async with self._lock:
            return await self._dump_locked(build)

    async def _dump_locked(self, build: Callable[[int], bytes]) -> list[bytes]:
        """One dump's payloads; the caller holds the lock.

        Repeated when the table changed under it (NLM_F_DUMP_INTR), and when the
        kernel refused it as busy (EBUSY): that happens when an earlier dump on this
        socket is still running, e.g. one whose caller gave up after a timeout. Each
        refusal is read after at least one more part of that dump, which moves it on,
        so the repeats end when it does, within the adapter's timeout.
        """
        deadline = asyncio.get_running_loop().time() + self._timeout
        interrupted = 0
        while True:
            (reply,) = await self._transact_locked([build])
            if reply.errno == _errno.EBUSY and asyncio.get_running_loop().time() < deadline:
                continue
            if reply.errno:
                raise IpvsRequestError("dump", reply.errno, reply.message)
            if not reply.interrupted:
                return reply.payloads
            interrupted += 1
            if interrupted == DUMP_RETRIES:
                raise IpvsError(f"the IPVS table kept changing during {DUMP_RETRIES} dumps")

    async def _transact(self, builders: Sequence[Callable[[int], bytes]]) -> list[Reply]:
        async with self._lock:
            return await self._transact_locked(builders)

    async def _transact_locked(self, builders: Sequence[Callable[[int], bytes]]) -> list[Reply]:
        """Send every request (seq -> bytes), at most WINDOW unanswered; collect replies."""
        seqs: list[int] = []
        done: dict[int, Reply] = {}
        try:
            while True:
                if len(seqs) < len(builders) and len(seqs) - len(done) < WINDOW:
                    self._send(self._next_chunk(builders, seqs, len(done)))
                drained = self._drain(done, len(seqs))
                if len(done) == len(builders):
                    return [done[seq] for seq in seqs]
                window_open = len(seqs) < len(builders) and len(seqs) - len(done) < WINDOW
                if not drained and not window_open:
                    await self._readable()
        finally:
            for seq in seqs:
                self._exchange.forget(seq)

    def _next_chunk(
        self, builders: Sequence[Callable[[int], bytes]], seqs: list[int], answered: int
    ) -> bytes:
        """Encode the next requests for one sendmsg, numbering them as they go."""
        chunk: list[bytes] = []
        size = 0
        while len(seqs) < len(builders) and len(seqs) - answered < WINDOW and size < SEND_CHUNK:
            seq = self._exchange.request()
            message = builders[len(seqs)](seq)
            seqs.append(seq)
            chunk.append(message)
            size += len(message)
        return b"".join(chunk)

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendto(data, (0, 0))
        except OSError as exc:
            raise IpvsError(f"cannot send to the kernel's IPVS: {exc}") from exc

    def _drain(self, done: dict[int, Reply], wanted: int) -> bool:
        """Read queued datagrams until ``wanted`` replies are done; False if none was queued."""
        got = False
        while len(done) < wanted:
            try:
                size = self._sock.recv_into(self._buf)
            except (BlockingIOError, InterruptedError):
                return got
            except OSError as exc:
                if exc.errno == _errno.ENOBUFS:
                    raise IpvsError(
                        "netlink receive buffer overrun: kernel replies were lost"
                    ) from exc
                raise IpvsError(f"cannot receive from the kernel's IPVS: {exc}") from exc
            got = True
            for reply in self._exchange.receive(bytes(memoryview(self._buf)[:size])):
                done[reply.seq] = reply
        return got

    async def _readable(self) -> None:
        """Wait for the socket to become readable: at most the timeout, since progress."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        fd = self._sock.fileno()
        loop.add_reader(fd, wake)
        try:
            async with asyncio.timeout(self._timeout):
                await ready
        except TimeoutError:
            raise IpvsError(f"the kernel did not answer within {self._timeout:g} s") from None
        finally:
            loop.remove_reader(fd)


def explain(op: Op, errno: int) -> str:
    """What an errno means for this kind of operation (see ``ip_vs_genl_set_cmd``)."""
    match errno:
        case _errno.ESRCH:
            return "the service does not exist"
        case _errno.EEXIST:
            if isinstance(op, AddService):
                return "the service already exists"
            if isinstance(op, AddDest):
                return "the destination already exists"
            return "the service does not exist"
        case _errno.ENOENT:
            if isinstance(op, AddService | EditService):
                svc = op.service
                pe = f" or persistence engine ip_vs_pe_{svc.pe_name}" if svc.pe_name else ""
                return f"no scheduler module ip_vs_{svc.scheduler}{pe} in this kernel"
            return "the destination does not exist"
        case _errno.ERANGE:
            return "weight below 0 or lower threshold above upper threshold"
        case _errno.EINVAL:
            if isinstance(op, AddDest | EditDest):
                return (
                    "invalid destination (unusable address, GUE tunnel without port, or"
                    " another family than the service's without tunnelling)"
                )
            if isinstance(op, DelService):
                return "invalid service key"
            return "invalid service (bad IPv6 prefix length or missing attribute)"
        case _errno.EAFNOSUPPORT:
            return "address family not supported by this kernel (IPv6 disabled?)"
        case _errno.EPERM:
            return "not permitted: IPVS changes need CAP_NET_ADMIN"
        case _errno.ENOMEM:
            return "the kernel is out of memory"
    return os.strerror(errno)


def _daemon_detail(want: DaemonInfo, reply: Reply) -> str | None:
    """What a refusal to start a sync daemon means, plus the kernel's own words."""
    match reply.errno:
        case _errno.ENODEV:
            ours: str | None = f"no interface named {want.interface!r} in this network namespace"
        case _errno.EADDRNOTAVAIL:
            ours = f"interface {want.interface!r} has no usable address for the group"
        case _errno.EINVAL:
            ours = (
                "invalid settings, or services with destinations of another address"
                " family exist (the sync protocol cannot carry them)"
            )
        case _errno.EAFNOSUPPORT:
            ours = "IPv6 groups need a kernel with IPVS IPv6 support"
        case _errno.EPERM:
            ours = "not permitted: starting sync daemons needs CAP_NET_ADMIN"
        case _:
            ours = None
    parts = [p for p in (ours, reply.message) if p]
    return "; ".join(parts) or None


def _netlink_socket() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    except OSError as exc:
        raise IpvsError(f"cannot open a generic netlink socket: {exc}") from exc
    try:
        sock.setblocking(False)
        sock.bind((0, 0))
        # Short acks (no echoed request) with the kernel's error text when it has one.
        sock.setsockopt(wire.SOL_NETLINK, wire.NETLINK_CAP_ACK, 1)
        sock.setsockopt(wire.SOL_NETLINK, wire.NETLINK_EXT_ACK, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:  # not root: the unprivileged option, capped by rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    except OSError as exc:
        sock.close()
        raise IpvsError(f"cannot set up the generic netlink socket: {exc}") from exc
    return sock


async def _resolve_family(sock: socket.socket, limit: float) -> int:
    probe = IpvsNetlink(sock, wire.GENL_ID_CTRL, timeout=limit)
    (reply,) = await probe._transact([wire.encode_get_family])
    if reply.errno == _errno.ENOENT:
        raise IpvsUnavailableError()
    if reply.errno:
        raise IpvsRequestError("resolve generic netlink family IPVS", reply.errno, reply.message)
    if not reply.payloads:
        raise IpvsWireError("CTRL_CMD_GETFAMILY answered without a family")
    return wire.decode_family_id(reply.payloads[0])


async def _modprobe(module: str, limit: float) -> bool:
    """Run ``modprobe``; True if it succeeded. Never raises for a missing tool."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "modprobe",
            module,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return False
    try:
        async with asyncio.timeout(limit):
            return await proc.wait() == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False
