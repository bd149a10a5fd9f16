"""Cross-file checks (the nodes of one cluster) and host checks (with a fake host)."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from mailha.config import Config, Diagnostic, load, loads
from mailha.config.validate import (
    check_host,
    check_peers,
    check_scripts,
    effective_priority,
)
from mailha.hostprobe import HostAccounts, HostFileSystem, runnable
from mailha.ip import IPAddress
from mailha.vrrp.track_scripts import instance_tracking

ROOT = Path(__file__).resolve().parents[2]
NODE1 = ROOT / "config" / "node1.toml"
NODE2 = ROOT / "config" / "node2.toml"
DATA = Path(__file__).parent / "data" / "config"


def pair(tmp_path: Path, edits1: dict[str, str], edits2: dict[str, str]) -> list[Config]:
    """node1/node2 with text edits, written to files so diagnostics get lines."""
    out = []
    for src, edits, name in ((NODE1, edits1, "n1.toml"), (NODE2, edits2, "n2.toml")):
        text = src.read_text()
        for old, new in edits.items():
            assert text.count(old) == 1, old
            text = text.replace(old, new)
        path = tmp_path / name
        path.write_text(text)
        out.append(load(path))
    return out


def line_of(path: Path, marker: str) -> int:
    text = path.read_text()
    return text.count("\n", 0, text.index(marker)) + 1


def only(found: list[Diagnostic], fragment: str) -> Diagnostic:
    matches = [d for d in found if fragment in d.message]
    assert len(matches) == 1, [str(d) for d in found]
    return matches[0]


def test_node1_and_node2_agree() -> None:
    assert check_peers([load(NODE1), load(NODE2)]) == []


def test_seed_pair_warns_about_equal_priorities() -> None:
    configs = [load(DATA / "seed-node1.toml"), load(DATA / "seed-node2.toml")]
    (d,) = check_peers(configs)
    assert d.severity == "warning"
    assert d.key == "vrrp_instance.VI_postfix.priority"
    assert d.file == DATA / "seed-node2.toml"
    assert d.line == line_of(d.file, "priority = 100")
    assert "higher IP address wins" in d.message
    assert "(here 10.12.49.36)" in d.message
    assert "both nodes advertise 200" in d.message
    assert "different priority" in d.hint


def test_seed_effective_priorities_are_both_200() -> None:
    a = load(DATA / "seed-node1.toml")
    inst = a.instance("VI_postfix")
    assert effective_priority(a, inst) == 200
    assert effective_priority(a, inst, frozenset({"chk_service"})) == 100


def test_mailha_check_predicts_what_the_daemon_advertises() -> None:
    """``mailha check`` and the running daemon apply one rule (it was written twice, and
    the copy let an address owner advertise 255 through a weight-0 script's failure,
    where the daemon goes to FAULT)."""
    text = """
[global]
router_id = "n1"
[vrrp_script.chk]
script = ["/bin/true"]
weight = 0
[vrrp_instance.VI_1]
interface = "eth0"
virtual_router_id = 51
priority = 255
virtual_ipaddress = ["192.0.2.10/24"]
track_script = ["chk"]
"""
    config = loads(text, Path("n1.toml"))
    inst = config.vrrp_instances[0]
    assert effective_priority(config, inst) == 255
    assert effective_priority(config, inst, frozenset({"chk"})) is None  # FAULT
    running, _ = instance_tracking(inst, {s.name: s for s in config.vrrp_scripts},
                                   {"chk": False}, {"eth0": True})
    assert running.fault


@pytest.mark.parametrize(
    ("edit1", "edit2", "key", "fragment"),
    [
        ({}, {"advert_int = 1": "advert_int = 2"}, "vrrp_instance.VI_postfix.advert_int",
         "has advert_int = 1.0"),
        ({}, {"version = 2": "version = 3"}, "vrrp_instance.VI_postfix.version",
         "has version = 2"),
        ({}, {'"10.12.49.37/24 dev eth0': '"10.12.49.38/24 dev eth0'},
         "vrrp_instance.VI_postfix.virtual_ipaddress", "has virtual_ipaddress"),
        ({}, {'unicast_peer = ["10.12.49.35"]': 'unicast_peer = ["10.12.49.34"]'},
         "vrrp_instance.VI_postfix.unicast_peer", "sends from 10.12.49.35"),
    ],
    ids=["advert_int", "version", "vips", "unicast-peer"],
)
def test_peer_disagreements_are_errors(
    tmp_path: Path, edit1: dict[str, str], edit2: dict[str, str], key: str, fragment: str
) -> None:
    configs = pair(tmp_path, edit1, edit2)
    d = only(check_peers(configs), fragment)
    assert d.severity == "error"
    assert d.key == key
    assert d.file == tmp_path / "n2.toml"
    assert d.line == line_of(d.file, key.rsplit(".", 1)[1] + " =")


def test_peer_not_pointing_back_is_reported_on_the_file_to_fix(tmp_path: Path) -> None:
    configs = pair(tmp_path, {'unicast_peer = ["10.12.49.36"]': 'unicast_peer = ["10.12.49.99"]'},
                   {})
    d = only(check_peers(configs), "sends from 10.12.49.36")
    assert d.file == tmp_path / "n1.toml"
    assert 'add "10.12.49.36"' in d.hint


def test_unicast_and_multicast_mix(tmp_path: Path) -> None:
    configs = pair(tmp_path, {}, {'unicast_peer = ["10.12.49.35"]\n': ""})
    found = [d for d in check_peers(configs) if "uses multicast" in d.message]
    assert [d.file.name for d in found] == ["n2.toml"]


def test_both_master_is_a_warning(tmp_path: Path) -> None:
    configs = pair(tmp_path, {}, {'state = "BACKUP"': 'state = "MASTER"'})
    d = only(check_peers(configs), "also starts as MASTER")
    assert d.severity == "warning"
    assert d.line == line_of(tmp_path / "n2.toml", 'state = "MASTER"')


def test_weight_too_small_to_move_the_vip(tmp_path: Path) -> None:
    # node1 150+20=170, node2 100+20=120; chk fails on node1 -> 150, still above 120.
    # Without IPVS balancing (no virtual_server follows the instance) that is a trap.
    unlink = {'vrrp_instance = "VI_postfix"\n': ""}
    configs = pair(tmp_path, unlink, unlink)
    d = only(check_peers(configs), "stays on the failed node")
    assert d.severity == "warning"
    assert d.file == tmp_path / "n1.toml"
    assert d.key == "vrrp_instance.VI_postfix.track_script"
    assert "still advertises 150, not below 120" in d.message


def test_small_weight_is_intended_when_ipvs_balances(tmp_path: Path) -> None:
    # The shipped pair: the master keeps the VIP and drops its own real server instead.
    assert not [d for d in check_peers(pair(tmp_path, {}, {})) if "stays on" in d.message]


def test_instances_pair_by_vrid_not_name(tmp_path: Path) -> None:
    configs = pair(tmp_path, {}, {
        "[vrrp_instance.VI_postfix]": "[vrrp_instance.VI_mail]",
        'vrrp_instance = "VI_postfix"': 'vrrp_instance = "VI_mail"',
        "advert_int = 1": "advert_int = 3",
    })
    (d,) = check_peers(configs)
    assert d.key == "vrrp_instance.VI_mail.advert_int"


# --------------------------------------------------------------------------- host


def fake_host(addresses: set[str], interfaces: set[str]) -> tuple[
        set[IPAddress], set[str]]:
    return {ip_address(a) for a in addresses}, interfaces


def test_host_checks_pass_on_the_right_node() -> None:
    owned, ifaces = fake_host({"10.12.49.35"}, {"eth0", "lo"})
    assert check_host(load(NODE1), owned.__contains__, ifaces.__contains__) == []


def test_host_checks_catch_wrong_node_and_missing_interfaces() -> None:
    owned, ifaces = fake_host({"10.12.49.36"}, {"ens160"})
    found = check_host(load(NODE1), owned.__contains__, ifaces.__contains__)
    by_key = {d.key: d for d in found}
    src = by_key["vrrp_instance.VI_postfix.unicast_src_ip"]
    assert "10.12.49.35 is not an address of this host" in src.message
    assert src.line == line_of(NODE1, "unicast_src_ip")
    iface = by_key["vrrp_instance.VI_postfix.interface"]
    assert 'no interface "eth0"' in iface.message
    assert iface.line == line_of(NODE1, 'interface = "eth0"')
    assert by_key["vrrp_instance.VI_postfix.virtual_ipaddress[0]"].severity == "error"


def test_host_checks_for_checker_binds_and_sync_daemon(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[global]\nlvs_sync_daemon = { interface = "sync0" }\n\n'
        '[[virtual_server]]\nfwmark = 1\n\n[[virtual_server.real_server]]\nip = "192.0.2.1"\n\n'
        '[[virtual_server.real_server.TCP_CHECK]]\nbindto = "192.0.2.99"\nbind_if = "chk0"\n'
    )
    found = check_host(load(path), lambda a: False, lambda n: False)
    keys = sorted(d.key for d in found)
    assert keys == [
        "global.lvs_sync_daemon.interface",
        "virtual_server[0].real_server[0].TCP_CHECK[0].bind_if",
        "virtual_server[0].real_server[0].TCP_CHECK[0].bindto",
    ]
    assert all(d.line is not None for d in found)


def test_scripts_checked_with_injected_runnable(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[vrrp_script.a]\nscript = "/opt/missing --x"\n[vrrp_script.b]\nscript = "relative.sh"\n'
        '[vrrp_script.c]\nscript = "/bin/ok"\n'
    )
    config = load(path)
    found = check_scripts(config, runnable=lambda p: None if p.name == "ok" else "does not exist",
                          fs=HostFileSystem(), accounts=HostAccounts())
    assert [(d.key, d.line, d.severity) for d in found] == [
        ("vrrp_script.a.script", 2, "warning"),
        ("vrrp_script.b.script", 4, "warning"),
    ]
    assert "/opt/missing does not exist" in found[0].message
    assert "not an absolute path" in found[1].message
    strict = check_scripts(config, severity="error", runnable=lambda p: "is not executable",
                           fs=HostFileSystem(), accounts=HostAccounts())
    assert {d.severity for d in strict} == {"error"}
    assert len(strict) == 3


def test_scripts_real_filesystem(tmp_path: Path) -> None:
    exe = tmp_path / "check"
    exe.write_text("#!/bin/sh\nexit 0\n")
    plain = tmp_path / "plain"
    plain.write_text("")
    text = f'[vrrp_script.a]\nscript = "{exe}"\n[vrrp_script.b]\nscript = "{plain}"\n'
    exe.chmod(0o755)
    found = check_scripts(loads(text, tmp_path / "x.toml"), runnable=runnable,
                          fs=HostFileSystem(), accounts=HostAccounts())
    (d,) = found
    assert d.key == "vrrp_script.b.script" and "is not executable" in d.message
