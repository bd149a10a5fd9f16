"""The BGP mode's configuration: [bgp] and its defaults, announce, min_healthy, and what
the mode excludes, each refused at its own line with the fix."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mailha.check import check_command
from mailha.config import ConfigError, Diagnostic, loads, loads_with_warnings
from mailha.config.model import Announce, BgpConfig

SOURCE = Path("director.toml")

BASE = """\
[global]
router_id = "dir1"

[[virtual_server]]
ip = "10.12.49.37"
port = 25
lvs_sched = "mh"
sched_flags = ["mh-fallback"]
announce = "bgp"
lvs_method = "DR"

[[virtual_server.real_server]]
ip = "10.12.49.35"
[[virtual_server.real_server.SMTP_CHECK]]
"""

VRRP = """\
[vrrp_instance.VI_1]
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["10.12.49.40/24"]
"""


def errors(text: str) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        loads(text, SOURCE)
    return [d for d in info.value.diagnostics if d.is_error]


def test_bgp_defaults_when_the_table_is_missing() -> None:
    config, warnings = loads_with_warnings(BASE, SOURCE)
    assert warnings == []
    assert config.bgp == BgpConfig()
    (vs,) = config.bgp_services
    assert vs.announce is Announce.BGP and vs.min_healthy == 1


def test_bgp_table_is_read() -> None:
    text = BASE + """
[bgp]
bird_socket = "/run/bird2/ctl"
include_file = "/etc/bird/mh.conf"
protocol_prefix = "mh_"
reapply_interval = 2
deadman_interface = "mh-dead"
"""
    bgp = loads(text, SOURCE).bgp
    assert bgp == BgpConfig(Path("/run/bird2/ctl"), Path("/etc/bird/mh.conf"), "mh_", 2.0,
                            "mh-dead")


def test_vrrp_is_the_default_and_has_no_bgp_services() -> None:
    config = loads(BASE.replace('announce = "bgp"\n', ""), SOURCE)
    assert config.virtual_servers[0].announce is Announce.VRRP
    assert config.bgp_services == ()


@pytest.mark.parametrize(("old", "new", "key", "fragment"), [
    ('announce = "bgp"', 'announce = "bgp"\nvrrp_instance = "VI_1"',
     "virtual_server[0].vrrp_instance", "follows no vrrp_instance"),
    ('ip = "10.12.49.37"\nport = 25', "fwmark = 7", "virtual_server[0].fwmark", "needs ip"),
    ('announce = "bgp"', 'announce = "bgp"\nha_suspend = true', "virtual_server[0].ha_suspend",
     "does not apply"),
    ('announce = "bgp"', 'announce = "vrrp"\nmin_healthy = 2', "virtual_server[0].min_healthy",
     'only applies to announce = "bgp"'),
    ('announce = "bgp"', "min_healthy = 2", "virtual_server[0].min_healthy",
     'only applies to announce = "bgp"'),
    ('announce = "bgp"', 'announce = "BGP4"', "virtual_server[0].announce",
     "not a valid announce mode"),
    ('announce = "bgp"', 'announce = "bgp"\nmin_healthy = 0', "virtual_server[0].min_healthy",
     "must be 1..65535"),
])
def test_virtual_server_rules(old: str, new: str, key: str, fragment: str) -> None:
    text = VRRP + BASE.replace(old, new)
    found = errors(text)
    assert [d.key for d in found] == [key], found
    assert fragment in found[0].message
    assert found[0].hint and found[0].line is not None


def test_group_service_cannot_be_bgp() -> None:
    text = ('[virtual_server_group.g]\nmembers = ["10.12.49.37 25"]\n'
            + BASE.replace('ip = "10.12.49.37"\nport = 25', 'group = "g"'))
    assert [d.key for d in errors(text)] == ["virtual_server[0].group"]


@pytest.mark.parametrize(("line", "key", "fragment"), [
    ('bird_socket = "bird.ctl"', "bgp.bird_socket", "absolute path"),
    ("include_file = 5", "bgp.include_file", "expected a string"),
    ('protocol_prefix = "9x"', "bgp.protocol_prefix", "BIRD symbol"),
    ('protocol_prefix = "mailha-"', "bgp.protocol_prefix", "BIRD symbol"),
    ("reapply_interval = 0", "bgp.reapply_interval", "at least 0.1"),
    ('deadman_interface = "a-name-far-too-long"', "bgp.deadman_interface", "interface name"),
    ("birdsocket = 1", "bgp.birdsocket", 'did you mean "bird_socket"'),
])
def test_bgp_table_rules(line: str, key: str, fragment: str) -> None:
    found = errors(BASE + "\n[bgp]\n" + line + "\n")
    assert [d.key for d in found] == [key]
    assert fragment in found[0].message + found[0].hint


def test_bgp_table_without_a_bgp_service_is_warned_about() -> None:
    text = BASE.replace('announce = "bgp"\n', "") + '\n[bgp]\nbird_socket = "/run/b.ctl"\n'
    _, warnings = loads_with_warnings(text, SOURCE)
    assert [(w.key, w.severity) for w in warnings] == [("bgp", "warning")]
    assert "no effect" in warnings[0].message


def test_a_bgp_vip_moved_by_vrrp_too_is_an_error() -> None:
    text = VRRP.replace("10.12.49.40/24", "10.12.49.37/24") + BASE
    found = errors(text)
    assert [d.key for d in found] == ["virtual_server[0].ip"]
    assert "also a virtual address of vrrp_instance" in found[0].message


def test_deadman_interface_must_not_be_a_real_one() -> None:
    found = errors(VRRP + BASE + '\n[bgp]\ndeadman_interface = "eth0"\n')
    assert [d.key for d in found] == ["bgp.deadman_interface"]


def test_bgp_services_do_not_get_the_no_vrrp_instance_warning() -> None:
    _, warnings = loads_with_warnings(VRRP + BASE, SOURCE)
    assert warnings == []


def test_check_explains_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "director.toml"
    path.write_text(BASE.replace('announce = "bgp"', 'announce = "bgp"\nmin_healthy = 2')
                    + '[[virtual_server.real_server]]\nip = "10.12.49.36"\n'
                    + "[[virtual_server.real_server.SMTP_CHECK]]\n")
    out = io.StringIO()
    assert check_command([path], out=out, host_checks=False) == 0
    text = out.getvalue()
    assert "BGP mode: 1 virtual server announced through BIRD (/run/bird/bird.ctl)" in text
    assert "mailha_10_12_49_37 announces 10.12.49.37 while 2 real servers" in text
    assert 'include "/etc/bird/mailha.conf";' in text
    assert 'export where proto ~ "mailha_*";' in text
    assert text.rstrip().endswith("OK")


def test_check_says_nothing_of_bgp_for_a_vrrp_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(BASE.replace('announce = "bgp"\n', ""))
    out = io.StringIO()
    check_command([path], out=out, host_checks=False)
    assert "BGP" not in out.getvalue()


def test_host_check_warns_about_bird_include_dir_and_tun(tmp_path: Path) -> None:
    from mailha.config.validate import check_bgp_host

    path = tmp_path / "director.toml"
    path.write_text(BASE + '\n[bgp]\nbird_socket = "/run/b/none.ctl"\n'
                    'include_file = "/nodir/m.conf"\n')
    config = loads(path.read_text(), path)
    found = check_bgp_host(config, is_socket=lambda p: False, is_dir=lambda p: False,
                           tun_exists=False)
    assert [(d.severity, d.key) for d in found] == [
        ("warning", "bgp.bird_socket"), ("warning", "bgp.include_file"),
        ("warning", "bgp.deadman_interface")]
    assert found[0].line is not None and "/run/b/none.ctl" in found[0].message
    assert check_bgp_host(config, is_socket=lambda p: p == Path("/run/b/none.ctl"),
                          is_dir=lambda p: p == Path("/nodir"), tun_exists=True) == []
    vrrp = loads(BASE.replace('announce = "bgp"\n', ""), path)
    assert check_bgp_host(vrrp, is_socket=lambda p: False, is_dir=lambda p: False,
                          tun_exists=False) == []


def test_host_probe_sees_a_real_socket(tmp_path: Path) -> None:
    import socket

    from mailha.hostprobe import _is_socket

    assert not _is_socket(tmp_path / "none")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s"))
        assert _is_socket(tmp_path / "s")
    (tmp_path / "f").touch()
    assert not _is_socket(tmp_path / "f")
