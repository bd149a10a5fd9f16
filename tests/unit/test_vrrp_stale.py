"""Which VIPs an instance clears at start (mailha.vrrp.stale.stale_vips).

The defect (issue 9, defect 2): a master killed with SIGKILL leaves its VIP on the
interface; restarted as BACKUP it never removed it, so two nodes answered ARP for it.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_address

from mailha.config.model import VirtualAddress, VrrpInstance
from mailha.net.addresses import InterfaceAddress
from mailha.vrrp.stale import stale_vip_interfaces, stale_vips

VIP = IPv4Address("10.12.49.37")
NODE = IPv4Address("10.12.49.35")


def instance(**changes: object) -> VrrpInstance:
    base: dict[str, object] = {
        "name": "VI_postfix",
        "interface": "eth0",
        "virtual_router_id": 173,
        "priority": 100,
        "unicast_src_ip": NODE,
        "virtual_ipaddress": (VirtualAddress(IPv4Interface(f"{VIP}/24")),),
    }
    base.update(changes)
    return VrrpInstance(**base)  # type: ignore[arg-type]


def addr(ifname: str, address: str, prefixlen: int = 32, scope: str = "global") -> InterfaceAddress:
    return InterfaceAddress(ifname, ip_address(address), prefixlen, scope)


ETH0_AFTER_CRASH = (
    addr("eth0", "10.12.49.35", 24),
    addr("eth0", "10.12.49.37", 24),
    addr("eth0", "fe80::1", 64, "link"),
)
LO = (addr("lo", "127.0.0.1", 8, "host"), addr("lo", "10.12.49.37", 32, "host"))


def test_vip_left_on_the_interface_by_a_crashed_master_is_stale() -> None:
    stale = stale_vips(instance(), {"eth0": ETH0_AFTER_CRASH})
    assert stale == [addr("eth0", "10.12.49.37", 24)]


def test_the_prefix_it_was_left_with_is_what_gets_removed() -> None:
    # Configured /24, found /32 (an operator's "ip addr add"): the same address answers ARP.
    observed = {"eth0": (addr("eth0", "10.12.49.35", 24), addr("eth0", "10.12.49.37", 32))}
    assert stale_vips(instance(), observed) == [addr("eth0", "10.12.49.37", 32)]


def test_nothing_stale_on_a_clean_interface() -> None:
    observed = {"eth0": (addr("eth0", "10.12.49.35", 24),)}
    assert stale_vips(instance(), observed) == []
    assert stale_vips(instance(), {}) == []


def test_other_addresses_of_the_interface_are_never_touched() -> None:
    observed = {"eth0": (addr("eth0", "10.12.49.35", 24), addr("eth0", "10.12.49.38", 32))}
    assert stale_vips(instance(), observed) == []


def test_excluded_vips_and_vips_with_their_own_dev_are_cleared_where_the_master_puts_them() -> None:
    cfg = instance(
        virtual_ipaddress=(
            VirtualAddress(IPv4Interface(f"{VIP}/24")),
            VirtualAddress(IPv4Interface("192.0.2.9/32"), dev="eth1"),
        ),
        virtual_ipaddress_excluded=(VirtualAddress(IPv6Interface("2001:db8::25/64")),),
    )
    observed = {
        "eth0": (
            addr("eth0", "10.12.49.35", 24),
            addr("eth0", "2001:db8::25", 64),
            addr("eth0", "192.0.2.9", 32),  # not where the master puts it: not ours
        ),
        "eth1": (addr("eth1", "192.0.2.9", 32),),
    }
    assert stale_vips(cfg, observed) == [
        addr("eth0", "2001:db8::25", 64),
        addr("eth1", "192.0.2.9", 32),
    ]
    assert stale_vip_interfaces(cfg, None) == ["eth0", "eth1"]


def test_an_address_owner_clears_nothing() -> None:
    # Priority 255: the VIP is the node's own address, not one borrowed from the group.
    assert stale_vips(instance(priority=255), {"eth0": ETH0_AFTER_CRASH}) == []


def test_the_configured_source_address_is_never_removed() -> None:
    cfg = instance(
        unicast_src_ip=VIP,
        virtual_ipaddress=(VirtualAddress(IPv4Interface(f"{VIP}/24")),),
    )
    assert stale_vips(cfg, {"eth0": ETH0_AFTER_CRASH}) == []


def test_lo_is_left_alone_when_the_caller_does_not_say_what_belongs_there() -> None:
    observed = {"eth0": ETH0_AFTER_CRASH, "lo": LO}
    assert stale_vips(instance(), observed) == [addr("eth0", "10.12.49.37", 24)]
    assert stale_vip_interfaces(instance(), None) == ["eth0"]


def test_dr_role_keeps_the_vip_on_lo_and_clears_it_from_the_interface() -> None:
    # All-in-one DR: every node holds the VIP on lo whatever its VRRP state; the copy on
    # the VRRP interface is the crashed master's and must go before BACKUP.
    observed = {"eth0": ETH0_AFTER_CRASH, "lo": LO}
    assert stale_vips(instance(), observed, loopback={VIP}) == [addr("eth0", "10.12.49.37", 24)]
    assert stale_vip_interfaces(instance(), {VIP}) == ["eth0", "lo"]


def test_vip_on_lo_that_no_dr_role_wants_is_stale() -> None:
    observed = {"eth0": (addr("eth0", "10.12.49.35", 24),), "lo": LO}
    assert stale_vips(instance(), observed, loopback=frozenset()) == [
        addr("lo", "10.12.49.37", 32, "host")
    ]


def test_a_vip_configured_on_lo_that_the_dr_role_holds_stays() -> None:
    cfg = instance(virtual_ipaddress=(VirtualAddress(IPv4Interface(f"{VIP}/32"), dev="lo"),))
    assert stale_vips(cfg, {"lo": LO}, loopback={VIP}) == []
    assert stale_vips(cfg, {"lo": LO}) == [addr("lo", "10.12.49.37", 32, "host")]
