"""Every validation rule of one file: the diagnostic's key, line and message.

Each case edits a valid base config (one replacement of a unique snippet) and expects
a diagnostic at the line of a marker text, so the locator is exercised as much as the
rule itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailha.config import ConfigError, Diagnostic, loads, loads_with_warnings

SOURCE = Path("node.toml")

BASE = """\
[global]
router_id = "node1"

[vrrp_script.chk_postfix]
script = "/usr/share/mailha/checks/postfix-alive"
weight = 100

[vrrp_instance.VI_postfix]
state = "MASTER"
interface = "eth0"
virtual_router_id = 173
priority = 150
advert_int = 1
unicast_src_ip = "10.12.49.35"
unicast_peer = ["10.12.49.36"]
virtual_ipaddress = ["10.12.49.37/24 dev eth0 label eth0:mail"]
track_script = ["chk_postfix"]

[[virtual_server]]
ip = "10.12.49.37"
port = 25
lvs_sched = "rr"
lvs_method = "DR"
vrrp_instance = "VI_postfix"

[[virtual_server.real_server]]
ip = "10.12.49.35"
port = 25

[[virtual_server.real_server.SMTP_CHECK]]
connect_timeout = 2

[[virtual_server.real_server]]
ip = "10.12.49.36"

[[virtual_server.real_server.TCP_CHECK]]
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def diagnostics(text: str) -> list[Diagnostic]:
    try:
        return loads_with_warnings(text, SOURCE)[1]
    except ConfigError as exc:
        return exc.diagnostics


def line_of(text: str, marker: str) -> int:
    """The line where ``marker`` (which may span lines) first starts."""
    at = text.find(marker)
    assert at >= 0, marker
    return text.count("\n", 0, at) + 1


def test_base_is_clean() -> None:
    config, warnings = loads_with_warnings(BASE, SOURCE)
    assert warnings == []
    assert config.instance("VI_postfix").priority == 150


# (id, old snippet, replacement, severity, key, message fragment, line marker)
CASES = [
    ("priority-range", "priority = 150", "priority = 300", "error",
     "vrrp_instance.VI_postfix.priority", "must be 1..255", "priority = 300"),
    ("priority-zero", "priority = 150", "priority = 0", "error",
     "vrrp_instance.VI_postfix.priority", "must be 1..255", "priority = 0"),
    ("vrid-range", "virtual_router_id = 173", "virtual_router_id = 256", "error",
     "vrrp_instance.VI_postfix.virtual_router_id", "must be 1..255", "virtual_router_id"),
    ("vrid-missing", "virtual_router_id = 173\n", "", "error",
     "vrrp_instance.VI_postfix", 'missing required key "virtual_router_id"',
     "[vrrp_instance.VI_postfix]"),
    ("interface-missing", 'interface = "eth0"\n', "", "error",
     "vrrp_instance.VI_postfix", 'missing required key "interface"',
     "[vrrp_instance.VI_postfix]"),
    ("v2-fractional-advert", "advert_int = 1\n", "advert_int = 0.5\n", "error",
     "vrrp_instance.VI_postfix.advert_int", "whole seconds", "advert_int"),
    ("v2-advert-too-long", "advert_int = 1\n", "advert_int = 256\n", "error",
     "vrrp_instance.VI_postfix.advert_int", "whole seconds, 1..255", "advert_int"),
    ("v3-advert-step", "advert_int = 1\n", "advert_int = 0.015\nversion = 3\n", "error",
     "vrrp_instance.VI_postfix.advert_int", "steps of 0.01", "advert_int"),
    ("v3-advert-too-long", "advert_int = 1\n", "advert_int = 41\nversion = 3\n", "error",
     "vrrp_instance.VI_postfix.advert_int", "0.01..40.95", "advert_int"),
    ("advert-zero", "advert_int = 1\n", "advert_int = 0\n", "error",
     "vrrp_instance.VI_postfix.advert_int", "greater than 0", "advert_int"),
    ("v2-ipv6-vip", 'virtual_ipaddress = ["10.12.49.37/24 dev eth0 label eth0:mail"]',
     'virtual_ipaddress = ["2001:db8::25/64"]\nversion = 2', "error",
     "vrrp_instance.VI_postfix.version", "IPv6 virtual addresses need VRRP version 3",
     "version = 2"),
    ("mixed-families", 'virtual_ipaddress = ["10.12.49.37/24 dev eth0 label eth0:mail"]',
     'virtual_ipaddress = [\n  "10.12.49.37/24",\n  "2001:db8::25/64",\n]', "error",
     "vrrp_instance.VI_postfix.virtual_ipaddress[1]", "mixes IPv4 and IPv6", "2001:db8::25"),
    ("duplicate-vip", 'virtual_ipaddress = ["10.12.49.37/24 dev eth0 label eth0:mail"]',
     'virtual_ipaddress = ["10.12.49.37/24"]\n'
     'virtual_ipaddress_excluded = [{ address = "10.12.49.37/32" }]', "error",
     "vrrp_instance.VI_postfix.virtual_ipaddress_excluded[0]", "already configured at "
     "vrrp_instance.VI_postfix.virtual_ipaddress[0]", "virtual_ipaddress_excluded"),
    ("vip-bad-option", '"10.12.49.37/24 dev eth0 label eth0:mail"',
     '"10.12.49.37/24 dev eth0 use_vmac"', "error",
     "vrrp_instance.VI_postfix.virtual_ipaddress[0]", 'unsupported option "use_vmac"',
     "use_vmac"),
    ("vip-not-address", '"10.12.49.37/24 dev eth0 label eth0:mail"', '"mail.example.com"',
     "error", "vrrp_instance.VI_postfix.virtual_ipaddress[0]", "not an IP address",
     "mail.example.com"),
    ("vip-label-prefix", "label eth0:mail", "label mail", "warning",
     "vrrp_instance.VI_postfix.virtual_ipaddress[0]", 'does not start with "eth0:"',
     "label mail"),
    ("track-script-undefined", 'track_script = ["chk_postfix"]', 'track_script = ["chk_postfx"]',
     "error", "vrrp_instance.VI_postfix.track_script[0]", 'no vrrp_script is named "chk_postfx"',
     "chk_postfx"),
    ("track-script-weight-string", 'track_script = ["chk_postfix"]',
     'track_script = ["chk_postfix weight 50"]', "error",
     "vrrp_instance.VI_postfix.track_script[0]", "expected a script name", "weight 50"),
    ("track-weight-range", 'track_script = ["chk_postfix"]',
     'track_script = [{ name = "chk_postfix", weight = 254 }]', "error",
     "vrrp_instance.VI_postfix.track_script[0].weight", "must be -253..253", "weight = 254"),
    ("track-interface-weight", 'track_script = ["chk_postfix"]',
     'track_script = ["chk_postfix"]\ntrack_interface = [{ name = "eth0", weight = -300 }]',
     "error", "vrrp_instance.VI_postfix.track_interface[0].weight", "must be -253..253",
     "track_interface"),
    ("script-weight-range", "weight = 100", "weight = -254", "error",
     "vrrp_script.chk_postfix.weight", "must be -253..253", "weight = -254"),
    ("script-weight-reverse-string", "weight = 100", 'weight = "100 reverse"', "error",
     "vrrp_script.chk_postfix.weight", "expected an integer, got a string",
     "100 reverse"),
    ("script-missing", 'script = "/usr/share/mailha/checks/postfix-alive"\n', "", "error",
     "vrrp_script.chk_postfix", 'missing required key "script"', "[vrrp_script.chk_postfix]"),
    ("script-unbalanced-quote", 'script = "/usr/share/mailha/checks/postfix-alive"',
     "script = '/bin/check \"x'", "error", "vrrp_script.chk_postfix.script",
     "cannot split the command line", "/bin/check"),
    ("rise-zero", "weight = 100", "weight = 100\nrise = 0", "error",
     "vrrp_script.chk_postfix.rise", "must be 1..", "rise = 0"),
    ("fall-zero", "weight = 100", "weight = 100\nfall = 0", "error",
     "vrrp_script.chk_postfix.fall", "must be 1..", "fall = 0"),
    ("script-timeout-zero", "weight = 100", "weight = 100\ntimeout = 0", "error",
     "vrrp_script.chk_postfix.timeout", "greater than 0", "timeout = 0"),
    ("peer-is-self", 'unicast_peer = ["10.12.49.36"]', 'unicast_peer = ["10.12.49.35"]', "error",
     "vrrp_instance.VI_postfix.unicast_peer[0]", "this node's own unicast_src_ip",
     "unicast_peer"),
    ("peer-family", 'unicast_peer = ["10.12.49.36"]', 'unicast_peer = ["2001:db8::36"]', "error",
     "vrrp_instance.VI_postfix.unicast_peer[0]", "peer is IPv6", "unicast_peer"),
    ("peer-duplicate", 'unicast_peer = ["10.12.49.36"]',
     'unicast_peer = [\n  "10.12.49.36",\n  "10.12.49.36", # again\n]', "error",
     "vrrp_instance.VI_postfix.unicast_peer[1]", "listed twice", "# again"),
    ("peer-ttl-order", 'unicast_peer = ["10.12.49.36"]',
     'unicast_peer = [{ address = "10.12.49.36", min_ttl = 255, max_ttl = 254 }]', "error",
     "vrrp_instance.VI_postfix.unicast_peer[0].min_ttl", "above max_ttl", "min_ttl"),
    ("src-family", 'unicast_src_ip = "10.12.49.35"', 'unicast_src_ip = "2001:db8::35"', "error",
     "vrrp_instance.VI_postfix.unicast_src_ip", "unicast_src_ip is IPv6", "2001:db8::35"),
    ("state-bad", 'state = "MASTER"', 'state = "PRIMARY"', "error",
     "vrrp_instance.VI_postfix.state", "not a valid initial state", "PRIMARY"),
    ("nopreempt-master", 'state = "MASTER"', 'state = "MASTER"\nnopreempt = true', "warning",
     "vrrp_instance.VI_postfix.nopreempt", "initial state is not MASTER", "nopreempt"),
    ("priority-255-tracking", "priority = 150", "priority = 255", "warning",
     "vrrp_instance.VI_postfix.priority", "ignores tracking weights", "priority = 255"),
    ("auth-ah", 'track_script = ["chk_postfix"]',
     'track_script = ["chk_postfix"]\nauthentication = { auth_type = "AH", auth_pass = "x" }',
     "error", "vrrp_instance.VI_postfix.authentication.auth_type", "AH authentication",
     "authentication"),
    ("auth-long-pass", 'track_script = ["chk_postfix"]',
     'track_script = ["chk_postfix"]\n'
     'authentication = { auth_type = "PASS", auth_pass = "123456789" }',
     "warning", "vrrp_instance.VI_postfix.authentication.auth_pass", "first 8 characters",
     "authentication"),
    ("strict-accept", 'state = "MASTER"', 'state = "MASTER"\nstrict_mode = true\naccept = true',
     "warning", "vrrp_instance.VI_postfix.accept", "does not allow accept mode",
     "accept = true"),
    ("duplicate-vrid", "[[virtual_server]]",
     '[vrrp_instance.VI_other]\ninterface = "eth0"\nvirtual_router_id = 173\n'
     'virtual_ipaddress = ["10.12.49.38/24"]\n\n[[virtual_server]]', "error",
     "vrrp_instance.VI_other.virtual_router_id", "VRID 173 is also used",
     "virtual_router_id = 173\nvirtual_ipaddress"),
    # keepalived names and unknown keys
    ("alias-lb-algo", 'lvs_sched = "rr"', 'lb_algo = "rr"', "error", "virtual_server[0].lb_algo",
     'unknown key "lb_algo"', "lb_algo"),
    ("vip-is-a-peer", '["10.12.49.37/24 dev eth0 label eth0:mail"]',
     '["10.12.49.36/24 dev eth0 label eth0:mail"]', "warning",
     "vrrp_instance.VI_postfix.virtual_ipaddress[0]", "is also a node's own address",
     "10.12.49.36/24 dev"),
    ("strict-with-unicast", 'state = "MASTER"', 'state = "MASTER"\nstrict_mode = true',
     "warning", "vrrp_instance.VI_postfix.unicast_peer", "keepalived refuses",
     'unicast_peer = ["10.12.49.36"]'),
    ("real-server-without-check", '[[virtual_server.real_server.TCP_CHECK]]\n', "", "warning",
     "virtual_server[0].real_server[1].ip", "has no health check", 'ip = "10.12.49.36"'),
    ("alias-lb-kind", 'lvs_method = "DR"\nvrrp', 'lb_kind = "DR"\nvrrp', "error",
     "virtual_server[0].lb_kind", 'unknown key "lb_kind"', "lb_kind"),
    ("alias-no-accept", 'state = "MASTER"', 'state = "MASTER"\nno_accept = true', "error",
     "vrrp_instance.VI_postfix.no_accept", 'unknown key "no_accept"', "no_accept"),
    ("alias-preempt", 'state = "MASTER"', 'state = "MASTER"\npreempt = true', "error",
     "vrrp_instance.VI_postfix.preempt", 'unknown key "preempt"', "preempt = true"),
    ("alias-flag", 'lvs_sched = "rr"', 'lvs_sched = "sh"\nsh-port = true', "error",
     "virtual_server[0].sh-port", 'unknown key "sh-port"', "sh-port"),
    ("typo-did-you-mean", "priority = 150", "priorty = 150", "error",
     "vrrp_instance.VI_postfix.priorty", 'unknown key "priorty"', "priorty"),
    ("unsupported-feature", 'state = "MASTER"', 'state = "MASTER"\nuse_vmac = true', "error",
     "vrrp_instance.VI_postfix.use_vmac", "not supported by mailha", "use_vmac"),
    ("unknown-top-table", "[global]", "[globals]\n[global]", "error", "globals",
     'unknown key "globals"', "[globals]"),
    ("unknown-in-checker", "connect_timeout = 2", "conect_timeout = 2", "error",
     "virtual_server[0].real_server[0].SMTP_CHECK[0].conect_timeout",
     'unknown key "conect_timeout"', "conect_timeout"),
    # types
    ("type-string-for-int", "priority = 150", 'priority = "150"', "error",
     "vrrp_instance.VI_postfix.priority", "expected an integer, got a string", "priority"),
    ("type-int-for-bool", 'state = "MASTER"', 'state = "MASTER"\nnopreempt = 1', "error",
     "vrrp_instance.VI_postfix.nopreempt", "expected a boolean, got an integer", "nopreempt"),
    ("type-yes-for-bool", 'state = "MASTER"', 'state = "MASTER"\naccept = "yes"', "error",
     "vrrp_instance.VI_postfix.accept", "expected a boolean, got a string", "accept"),
    ("type-table-for-list", 'unicast_peer = ["10.12.49.36"]', 'unicast_peer = 5', "error",
     "vrrp_instance.VI_postfix.unicast_peer", "expected an array of addresses, got an integer",
     "unicast_peer"),
    ("type-metrics-not-table", "[global]", "metrics = 5\n[global]", "error",
     "metrics", "must be a table, got an integer", "metrics = 5"),
    ("type-groups-not-tables", "[global]", 'virtual_server_group = ["g"]\n[global]', "error",
     "virtual_server_group", "must be a table of named tables, got an array",
     "virtual_server_group = "),
    # LVS
    ("port-range", "port = 25\nlvs_sched", "port = 0\nlvs_sched", "error", "virtual_server[0].port",
     "must be 1..65535", "port = 0"),
    ("rs-port-range", 'ip = "10.12.49.35"\nport = 25', 'ip = "10.12.49.35"\nport = 70000', "error",
     "virtual_server[0].real_server[0].port", "must be 1..65535", "70000"),
    ("scheduler", 'lvs_sched = "rr"', 'lvs_sched = "roundrobin"', "error",
     "virtual_server[0].lvs_sched", "not a valid IPVS scheduler", "roundrobin"),
    ("sched-flag", 'lvs_sched = "rr"', 'lvs_sched = "sh"\nsched_flags = ["sh_port"]', "error",
     "virtual_server[0].sched_flags", '"sh_port" is not a scheduler flag', "sched_flags"),
    ("sched-flag-wrong-scheduler", 'lvs_sched = "rr"',
     'lvs_sched = "rr"\nsched_flags = ["sh-port"]', "warning", "virtual_server[0].sched_flags",
     "only affects the sh scheduler", "sched_flags"),
    ("lvs-method", 'lvs_method = "DR"\nvrrp', 'lvs_method = "DSR"\nvrrp', "error",
     "virtual_server[0].lvs_method", "not a valid forwarding method", "DSR"),
    ("vs-none-of", 'ip = "10.12.49.37"\nport = 25\n', "", "error", "virtual_server[0]",
     "exactly one of ip, fwmark or group; it has none", "[[virtual_server]]"),
    ("vs-several", 'ip = "10.12.49.37"\nport = 25\n', 'ip = "10.12.49.37"\nport = 25\nfwmark = 1\n',
     "error", "virtual_server[0]", "it has ip and fwmark", "[[virtual_server]]"),
    ("vs-port-without-ip", 'ip = "10.12.49.37"\nport = 25\n', "fwmark = 1\nport = 25\n", "error",
     "virtual_server[0].port", "port only goes with ip", "port = 25"),
    ("vs-missing-port", 'ip = "10.12.49.37"\nport = 25\n', 'ip = "10.12.49.37"\n', "error",
     "virtual_server[0]", 'missing "port"', "[[virtual_server]]"),
    ("group-undefined", 'ip = "10.12.49.37"\nport = 25\n', 'group = "mail"\n', "error",
     "virtual_server[0].group", 'no virtual_server_group is named "mail"', 'group = "mail"'),
    ("group-bad-member", "[[virtual_server]]",
     '[virtual_server_group.mail]\nmembers = ["10.12.49.37 25", "fwmark x"]\n\n[[virtual_server]]',
     "error", "virtual_server_group.mail.members[1]", "fwmark needs a mark", "members"),
    ("vrrp-instance-undefined", 'vrrp_instance = "VI_postfix"', 'vrrp_instance = "VI_posfix"',
     "error", "virtual_server[0].vrrp_instance", 'no vrrp_instance is named "VI_posfix"',
     "VI_posfix"),
    ("vrrp-instance-missing", 'vrrp_instance = "VI_postfix"\n', "", "warning",
     "virtual_server[0]", "programmed on every node", "[[virtual_server]]"),
    ("vs-ip-not-vip", 'ip = "10.12.49.37"\nport = 25', 'ip = "10.12.49.99"\nport = 25', "warning",
     "virtual_server[0].ip", "not a virtual address", "10.12.49.99"),
    ("quorum-zero", 'lvs_sched = "rr"', 'lvs_sched = "rr"\nquorum = 0', "error",
     "virtual_server[0].quorum", "must be 1..", "quorum = 0"),
    ("quorum-above-weight", 'lvs_sched = "rr"', 'lvs_sched = "rr"\nquorum = 5', "warning",
     "virtual_server[0].quorum", "above the total weight", "quorum = 5"),
    ("hysteresis", 'lvs_sched = "rr"', 'lvs_sched = "rr"\nhysteresis = 1', "error",
     "virtual_server[0].hysteresis", "below quorum", "hysteresis"),
    ("rs-family", 'ip = "10.12.49.36"', 'ip = "2001:db8::36"', "error",
     "virtual_server[0].real_server[1].ip", "real server is IPv6", "2001:db8::36"),
    ("rs-duplicate", 'ip = "10.12.49.36"', 'ip = "10.12.49.35"\n# dup', "error",
     "virtual_server[0].real_server[1]", "listed twice",
     '[[virtual_server.real_server]]\nip = "10.12.49.35"\n# dup'),
    ("rs-dr-port", 'ip = "10.12.49.36"', 'ip = "10.12.49.36"\nport = 2525', "warning",
     "virtual_server[0].real_server[1].port", "direct routing cannot change the port", "2525"),
    ("rs-weight-range", 'ip = "10.12.49.36"', 'ip = "10.12.49.36"\nweight = -1', "error",
     "virtual_server[0].real_server[1].weight", "must be 0..65535", "weight = -1"),
    ("rs-missing-ip", 'ip = "10.12.49.36"\n', 'weight = 1\n', "error",
     "virtual_server[0].real_server[1]", 'missing required key "ip"',
     "[[virtual_server.real_server]]\nweight = 1"),
    ("sorry-family", 'lvs_sched = "rr"', 'lvs_sched = "rr"\nsorry_server = { ip = "2001:db8::50" }',
     "error", "virtual_server[0].sorry_server.ip", "sorry_server is IPv6", "sorry_server"),
    ("misc-without-path", "[[virtual_server.real_server.SMTP_CHECK]]",
     "[[virtual_server.real_server.MISC_CHECK]]\nmisc_timeout = 3", "error",
     "virtual_server[0].real_server[0].MISC_CHECK[0]", 'needs "misc_path"', "MISC_CHECK"),
    ("misc-connect-option", "[[virtual_server.real_server.SMTP_CHECK]]\nconnect_timeout = 2",
     '[[virtual_server.real_server.MISC_CHECK]]\nmisc_path = "/bin/true"\nconnect_port = 25',
     "error", "virtual_server[0].real_server[0].MISC_CHECK[0].connect_port",
     'unknown key "connect_port"', "connect_port"),
    ("checker-timeout-zero", "connect_timeout = 2", "connect_timeout = 0", "error",
     "virtual_server[0].real_server[0].SMTP_CHECK[0].connect_timeout", "greater than 0",
     "connect_timeout = 0"),
    ("checker-unsupported", "[[virtual_server.real_server.SMTP_CHECK]]",
     "[[virtual_server.real_server.HTTP_GET]]", "error",
     "virtual_server[0].real_server[0].HTTP_GET", "not supported", "HTTP_GET"),
    ("tunnel-without-tun", 'lvs_sched = "rr"', 'lvs_sched = "rr"\ntunnel = { type = "gue" }',
     "error", "virtual_server[0].tunnel", 'need lvs_method = "TUN"', "tunnel"),
    ("virtual-server-table", "[[virtual_server]]\n", "[virtual_server]\n", "error",
     "virtual_server", "must be an array of tables", "[virtual_server]"),
    ("ops-tcp", 'lvs_sched = "rr"', 'lvs_sched = "rr"\nops = true', "error",
     "virtual_server[0].ops", "only works for UDP", "ops = true"),
    ("sync-instance", 'router_id = "node1"',
     'router_id = "node1"\nlvs_sync_daemon = { interface = "eth0", instance = "VI_x" }', "error",
     "global.lvs_sync_daemon.instance", 'no vrrp_instance is named "VI_x"', "lvs_sync_daemon"),
    ("vrrp-version", 'router_id = "node1"', 'router_id = "node1"\nvrrp_version = 4', "error",
     "global.vrrp_version", "must be 2 or 3", "vrrp_version"),
    ("control-relative", 'router_id = "node1"', 'router_id = "node1"\n[control]\nsocket = "x.sock"',
     "error", "control.socket", "absolute path", "x.sock"),
]


@pytest.mark.parametrize(
    ("old", "new", "severity", "key", "fragment", "marker"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_rule(old: str, new: str, severity: str, key: str, fragment: str, marker: str) -> None:
    text = edit(old, new)
    found = [d for d in diagnostics(text) if d.key == key and fragment in d.message]
    assert found, [str(d) for d in diagnostics(text)]
    d = found[0]
    assert d.severity == severity
    assert d.line == line_of(text, marker)
    assert d.file == SOURCE
    assert d.hint, "every diagnostic says what to do"


def test_warnings_alone_do_not_fail_load() -> None:
    text = edit('lvs_sched = "rr"', 'lvs_sched = "rr"\nquorum = 5')
    config = loads(text, SOURCE)
    assert config.virtual_servers[0].quorum == 5


def test_errors_raise_with_every_problem() -> None:
    text = edit("priority = 150", "priority = 300")
    text = edit('lvs_sched = "rr"', 'lb_algo = "rr"', text)
    text = edit('track_script = ["chk_postfix"]', 'track_script = ["nope"]', text)
    with pytest.raises(ConfigError) as info:
        loads(text, SOURCE)
    keys = {d.key for d in info.value.errors}
    assert keys == {
        "vrrp_instance.VI_postfix.priority",
        "virtual_server[0].lb_algo",
        "vrrp_instance.VI_postfix.track_script[0]",
    }


def test_did_you_mean_for_typos() -> None:
    text = edit("priority = 150", "priorty = 150")
    (d,) = [d for d in diagnostics(text) if d.key.endswith("priorty")]
    assert 'did you mean "priority"?' in d.hint


def test_keepalived_alias_hint_names_new_key() -> None:
    (d,) = [d for d in diagnostics(edit('lvs_sched = "rr"', 'lb_algo = "rr"')) if d.is_error]
    assert "lvs_sched" in d.hint


def test_weight_reverse_string_hint() -> None:
    text = edit("weight = 100", 'weight = "100 reverse"')
    (d,) = [d for d in diagnostics(text) if d.key == "vrrp_script.chk_postfix.weight"]
    assert "reverse = true" in d.hint
    assert d.value == '"100 reverse"'


def test_missing_key_without_table_has_no_invented_line() -> None:
    text = 'vrrp_instance = { VI = { interface = "eth0" } }\n'
    (d,) = [d for d in diagnostics(text) if "virtual_router_id" in d.message]
    assert d.key == "vrrp_instance.VI"
    assert d.line == 1
