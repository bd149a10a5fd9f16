"""Which virtual addresses an instance must take off its interfaces before it starts (pure).

A VIP is on the VRRP interface only while this node is MASTER: the machine adds it on
becoming master and removes it on leaving. A master that dies without leaving (SIGKILL,
OOM kill, a panic of the daemon) leaves the VIP behind, and the machine never learns of
it: restarted as BACKUP (lower priority, ``nopreempt``, a peer already master) it never
emits a ``RemoveVips``, so two hosts answer ARP for the VIP until someone notices.
keepalived has the same hole closed by removing its VIPs at start, before the instance
joins the election; :func:`stale_vips` decides what that means here, and
:meth:`mailha.vrrp.driver.InstanceDriver.start` carries it out.

``lo`` is special because of the all-in-one DR role (:mod:`mailha.lvs.host`): every
node holds a DR VIP on ``lo`` whatever its VRRP state, with the ARP sysctls set so ``lo``
addresses are not announced. There a VIP on ``lo`` is in the right place and must stay;
a VIP on ``lo`` that no DR role wants is one an earlier run (with another configuration)
left, and on a host whose ``arp_ignore`` is 0 it makes the host answer ARP for the VIP
on every interface, the same two-answers defect.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from mailha.config.model import VrrpInstance
from mailha.ip import IPAddress
from mailha.net.addresses import InterfaceAddress

__all__ = ["LOOPBACK", "stale_vip_interfaces", "stale_vips"]

LOOPBACK = "lo"


def _placements(cfg: VrrpInstance) -> set[tuple[str, IPAddress]]:
    """Where the master puts each of its addresses: (interface, address)."""
    return {
        (vip.dev or cfg.interface, vip.ip)
        for vip in (*cfg.virtual_ipaddress, *cfg.virtual_ipaddress_excluded)
    }


def stale_vip_interfaces(cfg: VrrpInstance, loopback: Collection[IPAddress] | None) -> list[str]:
    """The interfaces :func:`stale_vips` needs observed for ``cfg`` (sorted, no repeats)."""
    names = {ifname for ifname, _ in _placements(cfg)}
    if loopback is not None:
        names.add(LOOPBACK)
    return sorted(names)


def stale_vips(
    cfg: VrrpInstance,
    observed: Mapping[str, Iterable[InterfaceAddress]],
    *,
    loopback: Collection[IPAddress] | None = None,
) -> list[InterfaceAddress]:
    """The addresses to remove before ``cfg``'s instance starts, in ``observed``'s order.

    ``observed`` maps interface names to the addresses the kernel reports on them (an
    interface missing from it is taken to hold nothing). Stale are:

    * a configured VIP (``virtual_ipaddress`` or ``virtual_ipaddress_excluded``) found on
      the interface the master would put it on (its ``dev``, else the instance's
      interface), whatever prefix length it was left with: at start nobody here is
      master, so whoever holds it is a previous run of this daemon;
    * with ``loopback`` given (the VIPs the DR role holds on ``lo``), a configured VIP on
      ``lo`` that is not among them. ``loopback`` None means the caller does not know
      what ``lo`` should hold, and ``lo`` is left alone (keepalived's behaviour).

    Never stale: anything for an address owner (priority 255: the VIPs are the node's own
    addresses, not borrowed ones) and the configured VRRP source address, which the
    instance needs to send from.
    """
    if cfg.priority == 255:
        return []
    placements = _placements(cfg)
    configured = {ip for _, ip in placements}
    protected = {a for a in (cfg.unicast_src_ip, cfg.mcast_src_ip) if a is not None}
    wanted_on_lo = frozenset(loopback) if loopback is not None else frozenset()
    result: list[InterfaceAddress] = []
    for ifname, addrs in observed.items():
        for a in addrs:
            if a.address in protected or a.address not in configured:
                continue
            if ifname == LOOPBACK and a.address in wanted_on_lo:
                continue  # the DR role's place for it, whatever the VRRP state
            on_lo = ifname == LOOPBACK and loopback is not None
            if (ifname, a.address) in placements or on_lo:
                result.append(a)
    return result
