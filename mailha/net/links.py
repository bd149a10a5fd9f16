"""Watch interface up/down state over rtnetlink (RTMGRP_LINK), asynchronously.

A VRRP instance whose interface goes down must go to FAULT at once (keepalived's
``track_interface`` and the instance's own interface), so this is event driven: the
kernel multicasts RTM_NEWLINK/RTM_DELLINK to the group, we read them from the event
loop, and a change is reported within a millisecond or so of ``ip link set X down``.

"Up" means usable, not merely configured: ``IFF_UP`` (admin up) *and*
``IFF_RUNNING`` (RFC 2863 operational state up or unknown).  A veth whose peer is down,
or a NIC without carrier, is admin-up but not running, hence down here, as in
keepalived.

:meth:`LinkWatcher.states` is the initial snapshot (taken after subscribing, so no
change can fall between the two); :meth:`LinkWatcher.changes` yields only real
transitions, deduplicated (the kernel sends several RTM_NEWLINK for one change).
A deleted interface is reported down; it is reported again if it comes back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

from mailha.resource import AsyncResource

__all__ = ["LinkState", "LinkWatcher", "is_usable"]

IFF_UP = 0x1
IFF_RUNNING = 0x40


def is_usable(flags: int) -> bool:
    """keepalived's test for a usable interface: admin up and operationally running."""
    return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)


@dataclass(frozen=True, slots=True)
class LinkState:
    """An interface's state; ``is_up`` is the one to act on."""

    ifname: str
    index: int
    is_up: bool
    admin_up: bool
    operstate: str  # kernel's IFLA_OPERSTATE: UP, DOWN, LOWERLAYERDOWN, UNKNOWN, ...
    exists: bool = True


class LinkWatcher(AsyncResource):
    """Subscribe to link events; ``ifnames`` restricts reporting (None: every link).

    ``async with LinkWatcher({"eth0"}) as w: print(w.states); async for s in
    w.changes(): ...``.  The netlink socket belongs to the network namespace current
    when the watcher is entered.
    """

    def __init__(self, ifnames: Collection[str] | None = None) -> None:
        self._only = frozenset(ifnames) if ifnames is not None else None
        self._ipr: Any = None
        self._by_index: dict[int, LinkState] = {}

    @property
    def states(self) -> dict[str, LinkState]:
        """Current known state of every watched interface, by name."""
        return {s.ifname: s for s in self._by_index.values() if self._wanted(s.ifname)}

    async def _enter(self) -> None:
        ipr = AsyncIPRoute()
        try:
            await ipr.bind(groups=RTMGRP_LINK)  # subscribe first: no gap before the dump
            async for msg in await ipr.link("dump"):
                state = _parse(msg)
                if state is not None:
                    self._by_index[state.index] = state
        except BaseException:
            ipr.close()
            raise
        self._ipr = ipr

    async def _exit(self) -> None:
        self.close()

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def changes(self) -> AsyncIterator[LinkState]:
        """Yield each transition of a watched interface (up/down, appeared, removed)."""
        if self._ipr is None:
            raise RuntimeError("LinkWatcher is not entered")
        while self._ipr is not None:
            async for msg in self._ipr.get():
                change = self._apply(msg)
                if change is not None:
                    yield change

    def _apply(self, msg: Any) -> LinkState | None:
        event = msg.get("event")
        if event == "RTM_DELLINK":
            old = self._by_index.pop(int(msg["index"]), None)
            if old is None or not self._wanted(old.ifname):
                return None
            return LinkState(old.ifname, old.index, False, False, "NOTPRESENT", exists=False)
        if event != "RTM_NEWLINK":
            return None
        new = _parse(msg)
        if new is None:
            return None
        old = self._by_index.get(new.index)
        self._by_index[new.index] = new
        if not self._wanted(new.ifname):
            return None
        if old is not None and old.ifname == new.ifname and old.is_up == new.is_up:
            return None
        return new

    def _wanted(self, ifname: str) -> bool:
        return self._only is None or ifname in self._only


def _parse(msg: Any) -> LinkState | None:
    name = msg.get_attr("IFLA_IFNAME")
    if name is None:
        return None
    flags = int(msg["flags"])
    return LinkState(
        ifname=str(name),
        index=int(msg["index"]),
        is_up=is_usable(flags),
        admin_up=bool(flags & IFF_UP),
        operstate=str(msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN"),
    )
