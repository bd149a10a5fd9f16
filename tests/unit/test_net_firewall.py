"""no_accept's nftables table: the commands (pure) and the adapter, with a fake ``nft``."""

from __future__ import annotations

import stat
from ipaddress import ip_address
from pathlib import Path

import pytest

from mailha.net.firewall import FirewallError, NoAcceptFirewall, ruleset


def test_no_vip_means_no_table() -> None:
    assert ruleset([]) == "add table inet mailha; delete table inet mailha"


def test_the_table_drops_both_ways_and_keeps_neighbour_discovery() -> None:
    text = ruleset([ip_address("10.12.49.37"), ip_address("2001:db8::25"),
                    ip_address("10.12.49.38")])
    commands = text.split("; ")
    assert commands[:3] == ["add table inet mailha", "delete table inet mailha",
                            "add table inet mailha"]
    assert "add rule inet mailha in ip daddr @vips4 drop" in commands
    assert "add rule inet mailha out ip6 saddr @vips6 drop" in commands
    nd = next(i for i, c in enumerate(commands) if c.startswith("add rule inet mailha in icmpv6"))
    assert nd < commands.index("add rule inet mailha in ip6 daddr @vips6 drop")
    assert commands[-2:] == ["add element inet mailha vips4 { 10.12.49.37, 10.12.49.38 }",
                             "add element inet mailha vips6 { 2001:db8::25 }"]


@pytest.fixture
def fake_nft(tmp_path: Path) -> tuple[Path, Path]:
    """An ``nft`` that records its argument and fails when told to."""
    log = tmp_path / "calls"
    nft = tmp_path / "nft"
    nft.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {log}\n'
                   f'[ -e {tmp_path}/fail ] && {{ echo "Error: no" >&2; exit 1; }}\nexit 0\n')
    nft.chmod(nft.stat().st_mode | stat.S_IEXEC)
    return nft, log


async def test_the_table_holds_the_union_of_what_instances_block(
    fake_nft: tuple[Path, Path],
) -> None:
    nft, log = fake_nft
    fw = NoAcceptFirewall(str(nft))
    await fw.clear()
    await fw.block("VI_1", [ip_address("10.0.0.1")])
    await fw.block("VI_2", [ip_address("10.0.0.2")])
    await fw.unblock("VI_1")
    await fw.unblock("VI_1")  # nothing blocked: no call
    await fw.clear()
    calls = log.read_text().splitlines()
    assert calls == [
        ruleset([]),
        ruleset([ip_address("10.0.0.1")]),
        ruleset([ip_address("10.0.0.1"), ip_address("10.0.0.2")]),
        ruleset([ip_address("10.0.0.2")]),
        ruleset([]),
    ]
    assert fw.blocked == {}


async def test_a_refusal_names_nft_and_its_message(
    fake_nft: tuple[Path, Path], tmp_path: Path
) -> None:
    nft, _ = fake_nft
    (tmp_path / "fail").touch()
    with pytest.raises(FirewallError, match=r"nft refused the inet mailha table.*Error: no"):
        await NoAcceptFirewall(str(nft)).block("VI_1", [ip_address("10.0.0.1")])


async def test_missing_nft_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(FirewallError, match="apt install nftables"):
        await NoAcceptFirewall(str(tmp_path / "no-such-nft")).clear()
