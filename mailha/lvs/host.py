"""What the LVS side changes on the host itself: the DR role and IPVS's sysctls.

For a virtual server that follows a VRRP instance and has direct-routed real servers,
every node holds the VIP on ``lo`` and stops answering ARP for it (arp_ignore=1,
arp_announce=2 on the VRRP interface and ``all``), so the master's direct-routed
packets are accepted by the local Postfix with the client's own source address.
A virtual server announced by BGP (``announce = "bgp"``) has its VIP on ``lo`` on every
director the same way, whatever its forwarding method: IPVS only sees packets addressed
to a local address, and the routers, not ARP, lead clients to the directors (so ARP
is kept quiet on ``all``).

Sessions to a removed real server should fail at once instead of hanging: without
``expire_nodest_conn`` IPVS keeps forwarding an established connection to a
destination that was deleted (a dead Postfix) until it times out, and the client waits
minutes; with it, the next packet expires the entry and the client gets a reset and
retries, through the VIP, on a live server. ``expire_quiescent_template`` does the same
for persistence templates of a server at weight 0.

A director that may receive connections mid-way (several directors behind ECMP, or a
failover without the sync daemon) needs ``sloppy_tcp``/``sloppy_sctp``
(:func:`takeover_sysctls`).

Which sysctls and VIPs a configuration needs is decided by the pure functions here;
:class:`HostRole` applies them through a journaled
:class:`~mailha.net.sysctl.SysctlChanges`, so a crash still lets the next run restore
the admin's values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailha.config.model import Announce, Config, LvsMethod, VirtualServer
from mailha.ip import IPAddress
from mailha.net.addresses import Addresses
from mailha.net.sysctl import SysctlChanges, SysctlError, conf_key

log = logging.getLogger("mailha.lvs")

#: The file, next to the control socket, that keeps the sysctls' originals across a crash.
SYSCTL_JOURNAL = "sysctl-originals.json"

FAIL_FAST_WHY = "sessions to a removed real server fail fast instead of hanging"
FAIL_FAST_KEYS = ("net.ipv4.vs.expire_nodest_conn", "net.ipv4.vs.expire_quiescent_template")
TAKEOVER_WHY = "a director schedules connections it did not see start (ECMP rehash, failover)"
TAKEOVER_KEYS = ("net.ipv4.vs.sloppy_tcp", "net.ipv4.vs.sloppy_sctp")


@dataclass(frozen=True, slots=True)
class SysctlSetting:
    """One sysctl a configuration needs, and why (logged when it is changed)."""

    key: str
    value: int
    why: str


def dr_services(config: Config) -> list[VirtualServer]:
    """Virtual servers whose VIP this node holds on ``lo``: as a DR real server, or as a
    director that announces it by BGP."""
    return [
        vs
        for vs in config.virtual_servers
        if vs.ip is not None
        and (vs.announce is Announce.BGP
             or (vs.vrrp_instance is not None
                 and any(rs.lvs_method is LvsMethod.DR for rs in vs.real_servers)))
    ]


def dr_sysctls(config: Config) -> Iterator[SysctlSetting]:
    """The ARP sysctls of the VIPs on ``lo``: per IPv4 DR service's VRRP interface and
    ``all`` (a BGP service has no VRRP interface: ``all`` only)."""
    for vs in dr_services(config):
        assert vs.ip is not None
        if vs.ip.version != 4:
            continue
        if vs.vrrp_instance is None:
            why = f"BGP director for {vs.label}: do not answer ARP for the VIP held on lo"
            wheres: tuple[str, ...] = ("all",)
        else:
            why = f"DR real server for {vs.label}: do not answer ARP for the VIP held on lo"
            wheres = (config.instance(vs.vrrp_instance).interface, "all")
        for where in wheres:
            yield SysctlSetting(conf_key(4, where, "arp_ignore"), 1, why)
            yield SysctlSetting(conf_key(4, where, "arp_announce"), 2, why)


def fail_fast_sysctls(config: Config) -> list[SysctlSetting]:
    """``expire_nodest_conn`` and ``expire_quiescent_template``, when there is a service."""
    if not config.virtual_servers:
        return []
    return [SysctlSetting(key, 1, FAIL_FAST_WHY) for key in FAIL_FAST_KEYS]


def takeover_sysctls(config: Config) -> list[SysctlSetting]:
    """``sloppy_tcp`` / ``sloppy_sctp`` as ``lvs_sloppy_tcp`` / ``lvs_sloppy_sctp`` ask.

    IPVS creates a connection entry only from a packet that may open one (TCP SYN, SCTP
    INIT: ``tcp_conn_schedule``, ``sctp_conn_schedule``) unless these are 1. A director
    that receives a connection mid-way -- its router rehashed the ECMP flows because a
    director came or went, or a VRRP failover without the sync daemon -- would drop its
    packets; sloppy, it schedules them, and with Maglev hashing to the very real server
    the first director chose (:mod:`mailha.lvs.maglev`). The loader turns them on by
    default for mh services; false leaves the kernel's value alone.
    """
    g = config.global_
    return [SysctlSetting(key, 1, TAKEOVER_WHY)
            for key, on in zip(TAKEOVER_KEYS, (g.lvs_sloppy_tcp, g.lvs_sloppy_sctp), strict=True)
            if on]


def journal_path(config: Config) -> Path:
    return config.control.socket.parent / SYSCTL_JOURNAL


class HostRole:
    """Holds the DR role's VIPs on ``lo`` and the sysctls; restores or keeps them at stop."""

    def __init__(self, config: Config, addresses: Addresses) -> None:
        self.addresses = addresses
        self.sysctls = SysctlChanges(journal_path(config))
        self._lo_vips: set[IPAddress] = set()

    @property
    def loopback_vips(self) -> frozenset[IPAddress]:
        return frozenset(self._lo_vips)

    def set_fail_fast(self, config: Config) -> None:
        """Set the fail-fast sysctls; a kernel without them only warns."""
        for s in fail_fast_sysctls(config):
            try:
                self.sysctls.set(s.key, s.value, s.why)
            except SysctlError as exc:
                log.warning("cannot set %s: %s", s.key, exc.reason)

    def set_takeover(self, config: Config) -> None:
        """``sloppy_tcp``/``sloppy_sctp`` as the configuration asks; a reload that stops
        asking for one puts the admin's value back."""
        wanted = takeover_sysctls(config)
        for s in wanted:
            try:
                self.sysctls.set(s.key, s.value, s.why)
            except SysctlError as exc:
                log.warning("cannot set %s: %s", s.key, exc.reason)
        for key in set(TAKEOVER_KEYS) - {s.key for s in wanted}:
            self.sysctls.release(key)

    async def take_dr_role(self, config: Config) -> None:
        """ARP sysctls first, then the VIPs on ``lo`` (never the other way round)."""
        for s in dr_sysctls(config):
            self.sysctls.set(s.key, s.value, s.why)
        for vs in dr_services(config):
            assert vs.ip is not None
            if vs.ip not in self._lo_vips:
                await self.addresses.add_loopback_vip(vs.ip)
                self._lo_vips.add(vs.ip)
                log.info("holding %s on lo: this node accepts direct-routed mail for it", vs.ip)

    async def release(self) -> None:
        """Remove the VIPs from ``lo`` and restore every sysctl (a clean, complete stop)."""
        for vip in sorted(self._lo_vips, key=str):
            try:
                await self.addresses.remove_loopback_vip(vip)
            except Exception as exc:
                log.warning("could not remove %s from lo: %s (remove it by hand: "
                            "ip addr del %s dev lo)", vip, exc, vip)
            else:
                log.info("released %s from lo", vip)
        self._lo_vips.clear()
        for error in self.sysctls.restore():
            log.warning("could not restore sysctl: %s", error)

    async def stop(self, *, release: bool) -> None:
        """Release everything, or (``release_dr_on_stop = false``) keep the DR role.

        Keeping only makes sense with VIPs on ``lo``: without a DR role there is
        nothing for a peer's sessions to reach here, so the sysctls (the fail-fast
        ones) go back to the admin's values and the journal goes away. The takeover
        sysctls go back in any case: they only matter while mailha programs IPVS.
        """
        for key in TAKEOVER_KEYS:
            self.sysctls.release(key)
        if release or not self._lo_vips:
            await self.release()
        else:
            self.keep()

    def keep(self) -> None:
        """Leave lo and the sysctls as they are; the journal says it was on purpose."""
        self.sysctls.keep()
        log.info("keeping %s on lo and the ARP sysctls: the master's direct-routed "
                 "sessions still reach this node's Postfix while mailha is stopped "
                 "(release_dr_on_stop = true to release them)",
                 ", ".join(sorted(map(str, self._lo_vips))))
