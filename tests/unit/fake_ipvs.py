"""A fake kernel behind an IPVS generic-netlink socket (a test helper).

It answers what :class:`mailha.lvs.netlink.IpvsNetlink` sends the way the kernel
does (``net/netlink/af_netlink.c``, ``net/netfilter/ipvs/ip_vs_ctl.c``), so the
adapter's transport can be tested without ip_vs:

* requests are handled synchronously during ``sendto``, in order;
* a dump that produced data is still *running* afterwards: its next part (or its
  NLMSG_DONE) is only produced by the ``recv`` that reads the previous part, and a
  second dump requested on the socket meanwhile is refused with EBUSY;
* service and destination messages carry the attributes, in the order, that the
  kernel dumps them, counters included; :meth:`FakeKernel.tick` moves every counter
  on, as live traffic does.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from mailha.lvs import wire
from mailha.lvs.model import Destination, Service, ServiceKey, ServiceRow, Stats

#: Messages per dump part (the kernel fills ~4-32 KiB skbs).
PART = 16


def _stats_attr(kind: int, value: int) -> bytes:
    body = b"".join(
        wire._attr(n, struct.pack("=Q", value + n)) for n in range(1, len(wire._STATS_FIELDS) + 1)
    )
    return wire._attr(kind, body)


def _stats32_attr(kind: int, value: int) -> bytes:
    body = b"".join(wire._u32(n, (value + n) & 0xFFFFFFFF) for n in range(1, 11))
    return wire._attr(kind, body)


@lru_cache(maxsize=4096)
def service_payload(service: Service, counter: int = 0) -> bytes:
    """A GET_SERVICE dump message's generic-netlink payload, as the kernel writes it."""
    attrs = wire.parse_attrs(wire.service_attr(service), 4)
    attrs[wire.SVC_FLAGS] = struct.pack("=II", int(service.flags) | 0x2, 0xFFFFFFFF)  # HASHED
    body = b"".join(wire._attr(kind, value) for kind, value in attrs.items())
    body += _stats32_attr(wire.SVC_STATS, counter) + _stats_attr(wire.SVC_STATS64, counter)
    return struct.pack("=BBH", wire.IPVS_CMD_NEW_SERVICE, 1, 0) + wire._attr(
        wire.IPVS_CMD_ATTR_SERVICE, body
    )


@lru_cache(maxsize=4096)
def dest_payload(dest: Destination, counter: int = 0) -> bytes:
    """A GET_DEST dump message's payload in the kernel's order (``ip_vs_genl_fill_dest``)."""
    tunnel = dest.tunnel or wire._NO_TUNNEL
    family = socket.AF_INET if dest.address.version == 4 else socket.AF_INET6
    body = (
        wire._attr(wire.DEST_ADDR, dest.address.packed.ljust(16, b"\0"))
        + wire._be16(wire.DEST_PORT, dest.port)
        + wire._u32(wire.DEST_FWD_METHOD, dest.forward)
        + wire._u32(wire.DEST_WEIGHT, dest.weight)
        + wire._u8(wire.DEST_TUN_TYPE, tunnel.type)
        + wire._be16(wire.DEST_TUN_PORT, tunnel.port)
        + wire._u16(wire.DEST_TUN_FLAGS, tunnel.flags)
        + wire._u32(wire.DEST_U_THRESH, dest.u_threshold)
        + wire._u32(wire.DEST_L_THRESH, dest.l_threshold)
        + wire._u32(wire.DEST_ACTIVE_CONNS, counter)
        + wire._u32(wire.DEST_INACT_CONNS, counter + 1)
        + wire._u32(wire.DEST_PERSIST_CONNS, counter + 2)
        + wire._u16(wire.DEST_ADDR_FAMILY, family)
        + _stats32_attr(wire.DEST_STATS, counter)
        + _stats_attr(wire.DEST_STATS64, counter)
    )
    return struct.pack("=BBH", wire.IPVS_CMD_NEW_DEST, 1, 0) + wire._attr(
        wire.IPVS_CMD_ATTR_DEST, body
    )


def expected_stats(counter: int) -> Stats:
    """The :class:`Stats` that ``_stats_attr(kind, counter)`` carries."""
    return Stats(*(counter + n for n in range(1, len(wire._STATS_FIELDS) + 1)))


def _nlmsg(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    size = 16 + len(payload)
    return struct.pack("=IHHII", size, kind, flags, seq, 0) + payload + b"\0" * (-size % 4)


def _error(seq: int, code: int) -> bytes:
    # A capped ack: the error code and the request's header only.
    payload = struct.pack("=i", -code) + struct.pack("=IHHII", 20, 0, 0, seq, 0)
    return _nlmsg(wire.NLMSG_ERROR, wire.NLM_F_CAPPED, seq, payload)


@dataclass
class _Dump:
    seq: int
    parts: Iterator[list[bytes]]


@dataclass
class FakeKernel:
    """The kernel's IPVS table behind one netlink socket; see the module docstring."""

    table: dict[ServiceKey, ServiceRow] = field(default_factory=dict)
    counter: int = 0
    #: Requests seen, by IPVS command number.
    commands: list[int] = field(default_factory=list)
    #: Dump requests refused with EBUSY.
    refused: int = 0
    #: Called before each request is handled (tests change the table mid-observe).
    on_request: Callable[[int], None] | None = None
    #: Refuse every dump with this errno (0: answer them).
    refuse_dumps: int = 0
    #: Raw GET_SERVICE payloads dumped after the table's (services another tool made).
    raw_services: list[bytes] = field(default_factory=list)
    _queue: deque[bytes] = field(default_factory=deque)
    _running: _Dump | None = None
    _pair: tuple[socket.socket, socket.socket] = field(default_factory=socket.socketpair)
    _keys: dict[bytes, ServiceKey] = field(default_factory=dict)

    def tick(self, by: int = 1) -> None:
        """Live traffic: every counter moves on, nothing else changes."""
        self.counter += by

    # ------------------------------------------------------------- the socket's side

    def fileno(self) -> int:
        return self._pair[0].fileno()

    def close(self) -> None:
        for end in self._pair:
            end.close()

    def sendto(self, data: bytes, _address: object) -> int:
        for msg in wire.parse_datagram(data):
            self._handle(msg)
        return len(data)

    def recv_into(self, buf: bytearray) -> int:
        if not self._queue:
            raise BlockingIOError(errno.EAGAIN, "no reply queued")
        datagram = self._queue.popleft()
        buf[: len(datagram)] = datagram
        if self._running is not None:  # netlink_recvmsg continues a running dump
            self._continue(self._running)
        return len(datagram)

    # ------------------------------------------------------------- the kernel's side

    def _handle(self, msg: wire.NetlinkMessage) -> None:
        cmd = msg.payload[0]
        self.commands.append(cmd)
        if self.on_request is not None:
            self.on_request(cmd)
        if msg.flags & wire.NLM_F_DUMP != wire.NLM_F_DUMP:
            self._queue.append(_error(msg.seq, 0))
            return
        if self.refuse_dumps:
            self._queue.append(_error(msg.seq, self.refuse_dumps))
            return
        if self._running is not None:
            self.refused += 1
            self._queue.append(_error(msg.seq, errno.EBUSY))
            return
        dump = _Dump(msg.seq, self._parts(cmd, msg.payload))
        self._running = dump
        self._continue(dump)

    def _continue(self, dump: _Dump) -> None:
        part = next(dump.parts, [])
        if part:
            flags = wire.NLM_F_MULTI
            self._queue.append(b"".join(_nlmsg(0x20, flags, dump.seq, p) for p in part))
            return
        done = _nlmsg(wire.NLMSG_DONE, wire.NLM_F_MULTI, dump.seq, struct.pack("=i", 0))
        self._queue.append(done)
        self._running = None

    def _parts(self, cmd: int, payload: bytes) -> Iterator[list[bytes]]:
        if cmd == wire.IPVS_CMD_GET_SERVICE:
            self._keys = {wire.service_key_attr(key)[4:]: key for key in self.table}
            messages = [service_payload(vs.service, self.counter) for vs in self.table.values()]
            messages += self.raw_services
        elif cmd == wire.IPVS_CMD_GET_DEST:
            vs = self._find(payload)
            dests = [] if vs is None else vs.destinations.values()
            messages = [dest_payload(d, self.counter) for d in dests]
        else:
            messages = []
        for start in range(0, len(messages), PART):
            yield messages[start : start + PART]

    def _find(self, payload: bytes) -> ServiceRow | None:
        attrs = wire.parse_attrs(payload, wire.GENL_HDRLEN)
        wanted = attrs[wire.IPVS_CMD_ATTR_SERVICE]
        key = self._keys.get(wanted)
        if key is None:  # added since the last service dump
            key = next((k for k in self.table if wire.service_key_attr(k)[4:] == wanted), None)
        return None if key is None else self.table.get(key)
