"""Loading: the API, TOML syntax errors, defaults and inheritance resolution."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from pathlib import Path

import pytest

from mailha.config import Config, ConfigError, Diagnostic, load, load_with_warnings, loads
from mailha.config.model import (
    InitialState,
    LvsMethod,
    MiscCheck,
    ScriptCommand,
    SmtpCheck,
    TcpCheck,
    TunnelType,
)

SOURCE = Path("t.toml")

MINIMAL = """\
[vrrp_instance.VI_1]
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["192.0.2.10/24"]
"""


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(MINIMAL)
    config = load(path)
    assert isinstance(config, Config)
    assert config.source == path
    assert config.instance("VI_1").virtual_ipaddress[0].address == IPv4Interface("192.0.2.10/24")


def test_load_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.toml")
    (d,) = info.value.diagnostics
    assert "cannot read the file" in d.message
    assert d.line is None


def test_load_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[global]\nrouter_id = "n\xe9ud"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    (d,) = info.value.diagnostics
    assert d.line == 2
    assert "UTF-8" in d.message


def test_syntax_error_reports_tomllib_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        loads('[global]\nrouter_id = node1\n', SOURCE)
    (d,) = info.value.diagnostics
    assert (d.line, d.column) == (2, 13)
    assert d.message.startswith("TOML syntax: ")
    assert str(d).startswith("t.toml:2:13: error: (document): TOML syntax: Invalid value.")


def test_diagnostic_str_reads_like_a_compiler_message() -> None:
    text = MINIMAL + "priority = 300\n"
    with pytest.raises(ConfigError) as info:
        loads(text, Path("config/node1.toml"))
    (d,) = info.value.diagnostics
    assert str(d) == (
        "config/node1.toml:5: error: vrrp_instance.VI_1.priority = 300: must be 1..255 "
        "(255 means address owner). Fix: use 1..254; give each node a different priority."
    )
    assert str(info.value) == str(d)


def test_diagnostic_sorting_and_without_line() -> None:
    a = Diagnostic("warning", Path("b.toml"), None, "x", "m")
    b = Diagnostic("error", Path("a.toml"), 9, "y", "m")
    c = Diagnostic("error", Path("a.toml"), 2, "z", "m", "do it")
    assert sorted([a, b, c], key=Diagnostic.sort_key) == [c, b, a]
    assert str(a) == "b.toml: warning: x: m."
    assert str(c) == "a.toml:2: error: z: m. Fix: do it."


def test_defaults_follow_keepalived() -> None:
    config = loads(MINIMAL, SOURCE)
    inst = config.instance("VI_1")
    assert inst.priority == 100
    assert inst.state is InitialState.BACKUP
    assert inst.advert_int == 1.0
    assert inst.version == 2
    assert inst.accept is True
    assert inst.garp_master_delay == 5.0  # global vrrp_garp_master_delay
    assert inst.garp_master_repeat == 5
    assert inst.garp_lower_prio_delay == 5.0  # defaults to the master delay
    assert inst.garp_lower_prio_repeat == 5
    assert inst.multicast
    assert config.global_.router_id  # the host name
    assert config.metrics.port == 9650
    assert config.control.socket == Path("/run/mailha/mailha.sock")


def test_global_values_flow_into_instances() -> None:
    text = (
        "[global]\nvrrp_version = 3\nvrrp_garp_master_delay = 10\nvrrp_garp_master_repeat = 2\n"
        "vrrp_strict = true\nvrrp_skip_check_adv_addr = true\nscript_user = \"mailha\"\n\n"
        + MINIMAL + 'advert_int = 0.25\nnotify_master = "/bin/notify master"\n'
        + 'notify_backup = { script = "/bin/notify backup", user = "nobody" }\n'
    )
    inst = loads(text, SOURCE).instance("VI_1")
    assert inst.version == 3
    assert inst.advert_int == 0.25
    assert (inst.garp_master_delay, inst.garp_master_repeat) == (10.0, 2)
    assert inst.garp_lower_prio_delay == 10.0
    assert inst.strict_mode and not inst.accept  # strict mode implies no accept
    assert inst.skip_check_adv_addr
    assert inst.notify_master == ScriptCommand(("/bin/notify", "master"), "mailha", None)
    assert inst.notify_backup == ScriptCommand(("/bin/notify", "backup"), "nobody", None)


def test_instance_values_override_global_ones() -> None:
    text = "[global]\nvrrp_garp_master_delay = 10\n\n" + MINIMAL + "garp_master_delay = 1\n"
    assert loads(text, SOURCE).instance("VI_1").garp_master_delay == 1.0


def test_ipv6_instance_runs_version_3() -> None:
    text = MINIMAL.replace('"192.0.2.10/24"', '"2001:db8::10/64"')
    inst = loads(text, SOURCE).instance("VI_1")
    assert inst.version == 3
    assert inst.family == 6
    assert inst.virtual_ipaddress[0].address == IPv6Interface("2001:db8::10/64")


def test_vip_line_and_table_forms_agree() -> None:
    line = MINIMAL.replace(
        '"192.0.2.10/24"', '"192.0.2.10/24 brd 192.0.2.255 dev eth1 label eth1:x scope global"'
    )
    table = MINIMAL.replace(
        '"192.0.2.10/24"',
        '{ address = "192.0.2.10/24", brd = "192.0.2.255", dev = "eth1", label = "eth1:x", '
        'scope = "global" }',
    )
    a = loads(line, SOURCE).instance("VI_1").virtual_ipaddress
    b = loads(table, SOURCE).instance("VI_1").virtual_ipaddress
    assert a == b
    assert a[0].dev == "eth1" and a[0].brd == IPv4Address("192.0.2.255")


def test_bare_vip_is_a_host_address() -> None:
    text = MINIMAL.replace('"192.0.2.10/24"', '"192.0.2.10"')
    vip = loads(text, SOURCE).instance("VI_1").virtual_ipaddress[0]
    assert vip.address.network.prefixlen == 32


def test_track_entries_and_script_weights() -> None:
    text = (
        '[vrrp_script.chk]\nscript = ["/bin/check", "--fast"]\nweight = -20\nreverse = true\n'
        'user = "postfix"\n\n' + MINIMAL
        + 'track_script = ["chk", { name = "chk", weight = 30, reverse = false }]\n'
        + 'track_interface = ["eth0", { name = "eth1", weight = -10 }]\n'
    )
    config = loads(text, SOURCE)
    script = config.script("chk")
    assert script.script == ScriptCommand(("/bin/check", "--fast"), "postfix", None)
    assert (script.weight, script.weight_reverse, script.timeout) == (-20, True, 1.0)
    inst = config.instance("VI_1")
    assert [(t.name, t.weight, t.reverse) for t in inst.track_script] == [
        ("chk", None, None), ("chk", 30, False)]
    assert [(t.name, t.weight) for t in inst.track_interface] == [("eth0", 0), ("eth1", -10)]


LVS = """\
[global]
checker_log_all_failures = true

[[virtual_server]]
ip = "192.0.2.10"
port = 25
lvs_method = "TUN"
tunnel = { type = "gue", port = 6080 }
delay_loop = 10
connect_timeout = 4
warmup = 3
inhibit_on_failure = true

[[virtual_server.real_server]]
ip = "192.0.2.1"
connect_timeout = 2
retry = 3

[[virtual_server.real_server.SMTP_CHECK]]
retry = 5
helo_name = "check.example"

[[virtual_server.real_server.MISC_CHECK]]
misc_path = "/bin/weight"
user = "nobody"

[[virtual_server.real_server]]
ip = "192.0.2.2"
port = 2525
lvs_method = "NAT"
delay_loop = 7

[[virtual_server.real_server.TCP_CHECK]]
"""


def test_checker_options_inherit_virtual_then_real_server() -> None:
    vs = loads(LVS, SOURCE).virtual_servers[0]
    first, second = vs.real_servers
    smtp, misc = first.checkers
    assert isinstance(smtp, SmtpCheck) and isinstance(misc, MiscCheck)
    assert smtp.helo_name == "check.example"
    # checker's own value > real server's > virtual server's > keepalived default
    assert smtp.common.retry == 5
    assert smtp.common.connect_timeout == 2.0
    assert smtp.common.delay_loop == 10.0
    assert smtp.common.warmup == 3.0
    assert smtp.common.delay_before_retry == 1.0
    assert smtp.common.log_all_failures is True  # global checker_log_all_failures
    # MISC_CHECK: retry defaults to 0 only when nobody set it; here the real server did
    assert misc.common.retry == 3
    assert misc.misc_timeout == 10.0  # = delay_loop
    assert misc.misc_path == ScriptCommand(("/bin/weight",), "nobody", None)
    (tcp,) = second.checkers
    assert isinstance(tcp, TcpCheck)
    assert tcp.common.delay_loop == 7.0
    assert tcp.common.connect_timeout == 4.0
    assert tcp.common.retry == 1


def test_real_server_defaults_from_virtual_server() -> None:
    vs = loads(LVS, SOURCE).virtual_servers[0]
    first, second = vs.real_servers
    assert first.port == 25 and second.port == 2525
    assert first.lvs_method is LvsMethod.TUN
    assert first.tunnel is not None and first.tunnel.type is TunnelType.GUE
    assert first.tunnel.port == 6080
    assert second.lvs_method is LvsMethod.NAT and second.tunnel is None
    assert first.inhibit_on_failure and second.inhibit_on_failure
    assert first.weight == 1


def test_misc_check_retry_default_is_zero() -> None:
    text = (
        '[[virtual_server]]\nfwmark = 1\n\n[[virtual_server.real_server]]\nip = "192.0.2.1"\n\n'
        '[[virtual_server.real_server.MISC_CHECK]]\nmisc_path = "/bin/true"\n'
    )
    (rs,) = loads(text, SOURCE).virtual_servers[0].real_servers
    (misc,) = rs.checkers
    assert misc.common.retry == 0
    assert misc.common.delay_loop == 60.0
    assert rs.port is None


def test_group_members_parse() -> None:
    text = (
        '[virtual_server_group.g]\nmembers = ["192.0.2.1 25", "192.0.2.10-12 25", '
        '"192.0.2.8/30", "2001:db8::1-ff 25", "fwmark 3 inet6"]\n'
    )
    (group,) = loads(text, SOURCE).virtual_server_groups
    m = group.members
    assert (str(m[0].first), m[0].port) == ("192.0.2.1", 25)
    assert (str(m[1].first), str(m[1].last)) == ("192.0.2.10", "192.0.2.12")
    assert (str(m[2].first), str(m[2].last), m[2].port) == ("192.0.2.8", "192.0.2.11", None)
    assert str(m[3].last) == "2001:db8::ff"
    assert (m[4].fwmark, m[4].family) == (3, 6)


def test_load_with_warnings_returns_usable_config_and_warnings(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text(MINIMAL + 'unicast_src_ip = "192.0.2.1"\n')
    config, warnings = load_with_warnings(path)
    assert config.instance("VI_1").unicast_src_ip == IPv4Address("192.0.2.1")
    (w,) = warnings
    assert w.severity == "warning" and w.key == "vrrp_instance.VI_1.unicast_src_ip"
    assert w.line == 5


def test_script_strings_split_with_keepalived_rules_not_shell_rules(tmp_path: Path) -> None:
    """Issue 10: the loader used shlex.split while the docs, the model and the importer
    say keepalived's rules (procs.split_command); they differ on escapes in quotes."""
    from mailha.config import loads

    text = ('[vrrp_script.chk]\nscript = ' + "'''" + r"""/bin/echo 'a\tb' ab" c"d""" + "'''"
            + '\n[metrics]\nenabled = false\n')
    config = loads(text, tmp_path / "m.toml")
    assert config.vrrp_scripts[0].script.argv == ("/bin/echo", "a\tb", "ab cd")
