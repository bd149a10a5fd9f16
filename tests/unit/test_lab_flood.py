"""The junk flood's mix: who it claims to come from, and what each mutation breaks."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv4Network

import pytest

from lab.flood import SPOOFED_REASONS, Junk, flood_mix
from mailha.vrrp.packet import VrrpDecodeError, decode_advert, parse_ipv4_packet

MASTER, TARGET = IPv4Address("10.12.49.35"), IPv4Address("10.12.49.36")


def mix() -> list[Junk]:
    return flood_mix(master=MASTER, target=TARGET, attacker=IPv4Address("10.12.49.10"),
                     network=IPv4Network("10.12.49.0/24"), vrid=173,
                     vip=IPv4Address("10.12.49.37"), spoofed_per_100=10)


def test_sources_and_shares() -> None:
    junk = mix()
    assert len(junk) == 100
    labels = Counter(j.label for j in junk)
    assert sum(n for label, n in labels.items() if label.startswith("spoof")) == 10
    for j in junk:
        ip = parse_ipv4_packet(j.packet)
        assert ip.dst == TARGET and ip.protocol == 112
        assert (ip.src == MASTER) == j.label.startswith("spoof"), j.label
    assert mix() == junk  # deterministic


@pytest.mark.parametrize("label", sorted(SPOOFED_REASONS))
def test_each_mutation_fails_the_check_it_is_named_after(label: str) -> None:
    (j,) = [j for j in mix() if j.label == label][:1]
    ip = parse_ipv4_packet(j.packet)
    if label == "spoof_vrid":
        advert = decode_advert(ip.payload, src=ip.src, dst=ip.dst, ttl=ip.ttl)
        assert advert.vrid != 173 and advert.priority == 0
        return
    with pytest.raises(VrrpDecodeError) as err:
        decode_advert(ip.payload, src=ip.src, dst=ip.dst, ttl=ip.ttl)
    assert err.value.reason == SPOOFED_REASONS[label]
