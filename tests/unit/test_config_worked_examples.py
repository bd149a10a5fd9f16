"""config/examples/: each worked example passes `mailha check` as deploy/README.md §11
runs it, with no error and no warning, and is the topology the guide describes."""

from __future__ import annotations

import shlex
from ipaddress import ip_address
from pathlib import Path

import pytest

from mailha.cli import main
from mailha.config import Config, load_with_warnings
from mailha.config.model import LvsMethod

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "config" / "examples"
GUIDE = REPO / "deploy" / "README.md"


def _guide_checks() -> dict[str, list[str]]:
    """example directory -> the `mailha check` command §11 gives for it."""
    found: dict[str, list[str]] = {}
    for line in GUIDE.read_text().splitlines():
        if line.startswith("mailha check config/examples/"):
            argv = shlex.split(line)
            found[Path(argv[2]).parent.name] = argv[1:]
    return found


def test_every_example_is_in_the_guide() -> None:
    dirs = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert dirs == {"three-nodes", "nat-director", "dedicated-directors", "ipv6"}
    guide = _guide_checks()
    assert set(guide) == dirs
    for name, argv in guide.items():
        # the command checks every node file of the example together
        assert sorted(argv[1:]) == sorted(
            str(p.relative_to(REPO)) for p in (EXAMPLES / name).glob("*.toml")), name


@pytest.mark.parametrize("name", sorted(_guide_checks()))
def test_guide_command_passes_cleanly(name: str, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = _guide_checks()[name]
    monkeypatch.chdir(REPO)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out == f"{len(argv) - 1} files checked: OK\n"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*.toml")), ids=lambda p: p.stem)
def test_file_header_shows_the_guide_command(path: Path) -> None:
    """The comment at the top of each file gives the same check command."""
    lines = path.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("#   mailha check "))
    command = ""
    for line in lines[first:]:
        command += " " + line.removeprefix("#").strip().removesuffix("\\")
        if not line.endswith("\\"):
            break
    assert shlex.split(command) == ["mailha", *_guide_checks()[path.parent.name]]


def _load(name: str) -> list[Config]:
    configs = []
    for path in sorted((EXAMPLES / name).glob("*.toml")):
        config, warnings = load_with_warnings(path)
        assert warnings == [], path
        configs.append(config)
    return configs


def test_three_nodes_each_peer_with_the_two_others_and_balance_over_all() -> None:
    nodes = _load("three-nodes")
    assert len(nodes) == 3
    sources = {n.vrrp_instances[0].unicast_src_ip for n in nodes}
    priorities = sorted(n.vrrp_instances[0].priority for n in nodes)
    assert priorities == [50, 100, 150]
    for node in nodes:
        inst = node.vrrp_instances[0]
        assert {p.address for p in inst.unicast_peer} == sources - {inst.unicast_src_ip}
        (vs,) = node.virtual_servers
        assert vs.vrrp_instance == inst.name
        assert {rs.ip for rs in vs.real_servers} == sources
        assert all(rs.lvs_method is LvsMethod.DR and rs.checkers for rs in vs.real_servers)
    assert len({repr(n.virtual_servers) for n in nodes}) == 1


def test_three_nodes_pair_check_catches_a_missing_peer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The example passes because the files agree, not because nothing is compared."""
    paths = []
    for path in sorted((EXAMPLES / "three-nodes").glob("*.toml")):
        text = path.read_text()
        if path.name == "node1.toml":
            text = text.replace('unicast_peer = ["192.0.2.12", "192.0.2.13"]',
                                'unicast_peer = ["192.0.2.12"]')
            assert text != path.read_text()
        paths.append(tmp_path / path.name)
        paths[-1].write_text(text)
    assert main(["check", *map(str, paths)]) == 1
    assert "192.0.2.13, which is not in this node's unicast_peer" in capsys.readouterr().out


def test_nat_director_moves_both_vips_together() -> None:
    directors = _load("nat-director")
    for director in directors:
        (inst,) = director.vrrp_instances
        assert {(str(v.ip), v.dev) for v in inst.virtual_ipaddress} == {
            ("198.51.100.25", "eth0"), ("192.0.2.1", "eth1")}
        assert [t.name for t in inst.track_interface] == ["eth1"]
        (vs,) = director.virtual_servers
        assert all(rs.lvs_method is LvsMethod.NAT for rs in vs.real_servers)
        # the real servers are on the inside segment, behind the gateway VIP
        assert all(ip_address("192.0.2.1") != rs.ip and str(rs.ip).startswith("192.0.2.")
                   for rs in vs.real_servers)


def test_dedicated_directors_balance_to_other_machines_by_dr() -> None:
    directors = _load("dedicated-directors")
    own = {d.vrrp_instances[0].unicast_src_ip for d in directors}
    for director in directors:
        (vs,) = director.virtual_servers
        assert all(rs.lvs_method is LvsMethod.DR for rs in vs.real_servers)
        assert not own & {rs.ip for rs in vs.real_servers}
    sysctl = (EXAMPLES / "dedicated-directors" / "realserver-sysctl.conf").read_text()
    settings = dict(line.split(" = ") for line in sysctl.splitlines()
                    if line and not line.startswith("#"))
    guide = GUIDE.read_text()
    heredoc = guide.split("cat > /etc/sysctl.d/90-mailha-realserver.conf <<'EOF'\n", 1)[1]
    assert dict(line.split(" = ") for line in heredoc.split("\nEOF\n", 1)[0].splitlines()) \
        == settings
    assert settings == {"net.ipv4.conf.all.arp_ignore": "1",
                        "net.ipv4.conf.all.arp_announce": "2",
                        "net.ipv4.conf.eth0.arp_ignore": "1",
                        "net.ipv4.conf.eth0.arp_announce": "2"}


def test_ipv6_example_is_vrrp_version_3_over_ipv6() -> None:
    for node in _load("ipv6"):
        (inst,) = node.vrrp_instances
        assert inst.version == 3 and inst.family == 6
        assert inst.advert_int == 0.5
        (vs,) = node.virtual_servers
        assert vs.ip is not None and vs.ip.version == 6


def test_ipv6_example_with_version_2_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = tmp_path / "node1.toml"
    node.write_text((EXAMPLES / "ipv6" / "node1.toml").read_text()
                    .replace("version = 3", "version = 2").replace("advert_int = 0.5",
                                                                   "advert_int = 1"))
    assert main(["check", str(node)]) == 1
    assert "IPv6 virtual addresses need VRRP version 3" in capsys.readouterr().out
