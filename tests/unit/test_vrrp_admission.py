"""The receive checks that depend on the instance's configuration (mailha.vrrp.admission)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from mailha.config.model import Authentication, UnicastPeer
from mailha.vrrp.admission import (
    AdmissionRules,
    Ignored,
    Rejected,
    address_list_mismatch,
    admit,
    compare_addresses,
)
from mailha.vrrp.packet import Advert, AuthType, encode_advert

N1 = IPv4Address("10.12.49.35")
N2 = IPv4Address("10.12.49.36")
STRANGER = IPv4Address("10.12.49.99")
VIP = IPv4Address("10.12.49.37")
GROUP = IPv4Address("224.0.0.18")

UNICAST = AdmissionRules(
    vrid=173, primary=N1, multicast=False, peers={N2: UnicastPeer(N2)},
    local_vrids={173, 51}, version=3,
)
MULTICAST = replace(UNICAST, multicast=True, peers={})


def payload(vrid: int = 173, *, dst: IPv4Address = N1, version: int = 3, **kw: object) -> bytes:
    advert = Advert(version=version, vrid=vrid, priority=150, max_advert_int=1.0,
                    addresses=(VIP,), **kw)  # type: ignore[arg-type]
    return encode_advert(advert, src=N2, dst=dst)


def test_a_unicast_peer_routed_or_sending_with_unicast_ttl_is_heard() -> None:
    """keepalived requires TTL 255 only in multicast mode: a peer whose adverts cross a
    router, or a keepalived with ``unicast_ttl 64``, must not be taken for silent."""
    for ttl in (255, 64, 1):
        result = admit(UNICAST, payload(), src=N2, dst=N1, ttl=ttl)
        assert isinstance(result, Advert), (ttl, result)


def test_multicast_adverts_need_ttl_255() -> None:
    result = admit(MULTICAST, payload(dst=GROUP), src=N2, dst=GROUP, ttl=254)
    assert isinstance(result, Rejected) and result.reason == "ttl"
    assert isinstance(admit(MULTICAST, payload(dst=GROUP), src=N2, dst=GROUP, ttl=255), Advert)


@pytest.mark.parametrize(("ttl", "ok"), [(63, False), (64, True), (200, True), (201, False)])
def test_a_peers_ttl_range_bounds_its_adverts(ttl: int, ok: bool) -> None:
    rules = replace(UNICAST, peers={N2: UnicastPeer(N2, min_ttl=64, max_ttl=200)})
    result = admit(rules, payload(), src=N2, dst=N1, ttl=ttl)
    assert isinstance(result, Advert) is ok
    if not ok:
        assert isinstance(result, Rejected) and result.reason == "ttl"


def test_not_a_peer_in_unicast_mode() -> None:
    result = admit(UNICAST, payload(), src=STRANGER, dst=N1, ttl=255)
    assert isinstance(result, Rejected) and result.reason == "not_peer"


def test_own_adverts_and_sibling_instances_are_ignored_not_counted() -> None:
    assert isinstance(admit(UNICAST, payload(), src=N1, dst=N1, ttl=255), Ignored)
    assert isinstance(admit(UNICAST, payload(vrid=51), src=N2, dst=N1, ttl=255), Ignored)
    foreign = admit(UNICAST, payload(vrid=9), src=N2, dst=N1, ttl=255)
    assert isinstance(foreign, Rejected) and foreign.reason == "vrid"


def test_missing_ip_header_facts_and_garbage_are_rejected() -> None:
    assert admit(UNICAST, payload(), src=N2, dst=None, ttl=255) == Rejected(
        "ip_header", f"from {N2}: no destination or TTL")
    result = admit(UNICAST, b"\x31junk", src=N2, dst=N1, ttl=255)
    assert isinstance(result, Rejected) and result.reason not in ("not_peer", "ip_header")


def test_v2_authentication() -> None:
    rules = replace(UNICAST, version=2, authentication=Authentication("PASS", "secret"))
    good = payload(version=2, auth_type=AuthType.PASS, auth_data=b"secret\0\0")
    bad = payload(version=2, auth_type=AuthType.PASS, auth_data=b"other\0\0\0")
    assert isinstance(admit(rules, good, src=N2, dst=N1, ttl=255), Advert)
    result = admit(rules, bad, src=N2, dst=N1, ttl=255)
    assert isinstance(result, Rejected) and result.reason == "auth"
    unauthenticated = replace(UNICAST, version=2)
    result = admit(unauthenticated, good, src=N2, dst=N1, ttl=255)
    assert isinstance(result, Rejected) and result.reason == "auth"


def advert_with(*addresses: IPv4Address) -> Advert:
    return Advert(version=3, vrid=173, priority=100, max_advert_int=1.0, addresses=addresses)


def test_address_list_mismatch_is_order_free_and_names_the_difference() -> None:
    other = IPv4Address("10.12.49.38")
    assert address_list_mismatch(advert_with(VIP, other), (other, VIP)) is None
    assert address_list_mismatch(advert_with(VIP), (VIP, other)) == (
        "1 addresses in the advert, 2 configured")
    assert address_list_mismatch(advert_with(other), (VIP,)) == (
        "configured but not in the advert: 10.12.49.37")
    # The count is compared even when the addresses are not.
    assert address_list_mismatch(advert_with(other), (VIP,), compare_addresses=False) is None
    assert address_list_mismatch(advert_with(), (VIP,), compare_addresses=False) is not None


def test_skip_check_adv_addr_skips_only_a_backup_hearing_the_same_master() -> None:
    assert compare_addresses(skip_check_adv_addr=False, master=False, same_master=True)
    assert not compare_addresses(skip_check_adv_addr=True, master=False, same_master=True)
    assert compare_addresses(skip_check_adv_addr=True, master=False, same_master=False)
    assert compare_addresses(skip_check_adv_addr=True, master=True, same_master=True)
