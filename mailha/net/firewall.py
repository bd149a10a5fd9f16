"""keepalived's ``no_accept``: while a non-owner master holds its VIPs, nobody talks to them.

RFC 5798's Accept_Mode false means a master that is not the address owner (priority
255) holds the virtual addresses only for routing: packets addressed to them are not
accepted, and nothing is sent from them. keepalived implements it with an nftables
table whose input and output chains (priority -1, before anything else filters) drop
what is addressed to or sent from a set of VIPs, the set holding the VIPs of every such
instance while it is master. mailha does the same, in its own table ``inet mailha``:

    table inet mailha {
        set vips4 { type ipv4_addr; elements = { ... } }
        set vips6 { type ipv6_addr; elements = { ... } }
        chain in  { type filter hook input priority -1; policy accept;
                    ip daddr @vips4 drop; icmpv6 type <neighbour discovery> accept;
                    ip6 daddr @vips6 drop }
        chain out { ... the same for saddr ... }
    }

IPv6 neighbour discovery stays allowed, as keepalived does, so the VIP can still be
resolved. :func:`ruleset` builds the whole table from the wanted VIPs (pure); every
change replaces the table in one ``nft`` transaction, so the kernel never holds half a
table, a crash leaves at worst the last complete one, and the next start (or stop)
replaces or deletes it. No wanted VIP: no table at all.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection, Mapping

from mailha.errors import MailhaError
from mailha.ip import IPAddress
from mailha.procs import run_script

__all__ = ["TABLE", "FirewallError", "NoAcceptFirewall", "ruleset"]

log = logging.getLogger("mailha.firewall")

TABLE = "inet mailha"
#: ``nft`` should answer in milliseconds; this bounds a wedged one.
NFT_TIMEOUT = 10.0
_ND = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert, nd-redirect"


class FirewallError(MailhaError):
    """``nft`` is missing or refused the table; the message says which and how to fix it."""


def ruleset(vips: Collection[IPAddress]) -> str:
    """The ``nft`` commands that make the table hold exactly ``vips`` (none: no table).

    One argument to ``nft``, one transaction: the table is created if absent (so the
    delete cannot fail), deleted, and, if any VIP is wanted, created anew.
    """
    commands = [f"add table {TABLE}", f"delete table {TABLE}"]
    if vips:
        v4 = sorted(str(v) for v in vips if v.version == 4)
        v6 = sorted(str(v) for v in vips if v.version == 6)
        commands += [
            f"add table {TABLE}",
            f"add set {TABLE} vips4 {{ type ipv4_addr; }}",
            f"add set {TABLE} vips6 {{ type ipv6_addr; }}",
            f"add chain {TABLE} in {{ type filter hook input priority -1; policy accept; }}",
            f"add chain {TABLE} out {{ type filter hook output priority -1; policy accept; }}",
            f"add rule {TABLE} in ip daddr @vips4 drop",
            f"add rule {TABLE} in icmpv6 type {{ {_ND} }} accept",
            f"add rule {TABLE} in ip6 daddr @vips6 drop",
            f"add rule {TABLE} out ip saddr @vips4 drop",
            f"add rule {TABLE} out icmpv6 type {{ {_ND} }} accept",
            f"add rule {TABLE} out ip6 saddr @vips6 drop",
        ]
        if v4:
            commands.append(f"add element {TABLE} vips4 {{ {', '.join(v4)} }}")
        if v6:
            commands.append(f"add element {TABLE} vips6 {{ {', '.join(v6)} }}")
    return "; ".join(commands)


class NoAcceptFirewall:
    """The daemon's one ``inet mailha`` table, shared by its ``no_accept`` instances.

    Each instance says which VIPs it holds as a non-owner master (:meth:`block`) and
    when it no longer does (:meth:`unblock`); the table always holds their union.
    """

    def __init__(self, nft: str | None = None) -> None:
        self._nft = nft or shutil.which("nft") or "nft"
        self._blocked: dict[str, frozenset[IPAddress]] = {}

    @property
    def blocked(self) -> Mapping[str, frozenset[IPAddress]]:
        """What each instance has blocked now."""
        return dict(self._blocked)

    async def block(self, instance: str, vips: Collection[IPAddress]) -> None:
        self._blocked[instance] = frozenset(vips)
        await self._apply()

    async def unblock(self, instance: str) -> None:
        if self._blocked.pop(instance, None) is not None:
            await self._apply()

    async def clear(self) -> None:
        """Remove the table, whatever an earlier run left in it (start and stop)."""
        self._blocked.clear()
        await self._apply()

    async def _apply(self) -> None:
        wanted = frozenset().union(*self._blocked.values())
        result = await run_script([self._nft, ruleset(wanted)], timeout=NFT_TIMEOUT)
        if result.status == 127:
            raise FirewallError(
                "no_accept needs nftables, and nft is not installed: apt install nftables")
        if not result.ok:
            raise FirewallError(
                f"nft refused the {TABLE} table ({result.describe()}): "
                f"{result.output.strip()[:500]}")
        log.debug("%s now drops traffic to/from %s", TABLE,
                  ", ".join(sorted(map(str, wanted))) or "nothing (table removed)")
