"""The shipped configs: the reference documents every key and loads; the node pair works."""

from __future__ import annotations

import tomllib
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from mailha.config import keys as L
from mailha.config import load_with_warnings
from mailha.config.inert import INERT, NO_EFFECT
from mailha.config.model import InitialState, LvsMethod, SmtpCheck

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_reference_loads_cleanly() -> None:
    """It documents every key, so the keys mailha accepts without acting on them are in
    it too, each warned about as such, and nothing else is."""
    config, warnings = load_with_warnings(CONFIG / "reference.toml")
    assert {w.message.rsplit(": ", 1)[-1] for w in warnings} == {NO_EFFECT}
    assert [w.hint for w in warnings if w.hint not in INERT.values()] == []
    assert {w.key.split(".")[-1].split("[")[0] for w in warnings} == {
        "notification_email", "notification_email_from", "smtp_server", "smtp_helo_name",
        "virtual_ipaddress_excluded",  # its no_track
    }
    assert len(config.virtual_servers) == 5
    assert [vs.label for vs in config.bgp_services] == ["TCP 10.12.49.38:25"]


def _keys(table: Any) -> set[str]:
    if isinstance(table, list):
        return set().union(*(_keys(t) for t in table)) if table else set()
    return set(table) if isinstance(table, dict) else set()


def test_reference_documents_every_key() -> None:
    data = tomllib.loads((CONFIG / "reference.toml").read_text())
    vs = data["virtual_server"]
    rs = [r for v in vs for r in v["real_server"]]
    checks = {kind: [c for r in rs for c in r.get(kind, [])] for kind in L.CHECKER_KINDS}
    glob = data["global"]
    expected_vs = L.VS_KEYS
    expected: list[tuple[str, set[str], set[str]]] = [
        ("top", set(L.TOP_KEYS), set(data)),
        ("global", set(L.GLOBAL_SPEC) | {"lvs_timeouts", "lvs_sync_daemon"}, set(glob)),
        ("lvs_timeouts", {"tcp", "tcpfin", "udp"}, set(glob["lvs_timeouts"])),
        ("lvs_sync_daemon", set(L.SYNC_SPEC), set(glob["lvs_sync_daemon"])),
        ("metrics", set(L.METRICS_SPEC), set(data["metrics"])),
        ("control", {"socket"}, set(data["control"])),
        ("bgp", set(L.BGP_SPEC), set(data["bgp"])),
        ("vrrp_script", set(L.SCRIPT_SPEC) | {"script", "user", "group", "reverse"},
         _keys(list(data["vrrp_script"].values()))),
        ("vrrp_instance", set(L.INSTANCE_KEYS), _keys(list(data["vrrp_instance"].values()))),
        ("virtual_server", set(expected_vs), _keys(vs)),
        ("real_server", set(L.RS_KEYS), _keys(rs)),
        ("SMTP_CHECK", set(L.CHECKER_SPEC) | {"helo_name"}, _keys(checks["SMTP_CHECK"])),
        ("MISC_CHECK", set(L.MISC_KEYS), _keys(checks["MISC_CHECK"]) - set(L.CHECKER_SPEC)),
    ]
    for section, known, present in expected:
        assert known - present == set(), f"{section}: undocumented keys"
        assert present - known == set(), f"{section}: keys the loader does not know"


def test_reference_key_lines_are_commented() -> None:
    """Every key's first appearance sits in a block that starts with a comment."""
    lines = (CONFIG / "reference.toml").read_text().splitlines()
    seen: set[str] = set()
    for number, line in enumerate(lines):
        if not line or line.startswith(("#", "[", " ")) or "=" not in line:
            continue
        key = line.split("=", 1)[0].strip()
        if key in seen:
            continue
        seen.add(key)
        back = number - 1
        while back >= 0 and lines[back] and not lines[back].startswith(("#", "[")):
            back -= 1
        if back > 0 and lines[back].startswith("["):  # the table's comment documents it
            back -= 1
        assert back >= 0 and lines[back].startswith("#"), f"line {number + 1}: {key}"


def test_node_files_describe_the_seed_scenario() -> None:
    (n1, w1), (n2, w2) = (load_with_warnings(CONFIG / f"node{i}.toml") for i in (1, 2))
    assert w1 == w2 == []
    i1, i2 = n1.instance("VI_postfix"), n2.instance("VI_postfix")
    assert (i1.priority, i2.priority) == (150, 100)
    assert (i1.state, i2.state) == (InitialState.MASTER, InitialState.BACKUP)
    assert i1.virtual_router_id == i2.virtual_router_id == 173
    assert i1.advert_int == i2.advert_int == 1.0
    assert i1.version == i2.version == 2
    assert i1.unicast_src_ip == ip_address("10.12.49.35")
    assert [p.address for p in i1.unicast_peer] == [ip_address("10.12.49.36")]
    assert [p.address for p in i2.unicast_peer] == [ip_address("10.12.49.35")]
    assert [str(v.address) for v in i1.virtual_ipaddress] == ["10.12.49.37/24"]
    assert n1.script("chk_postfix").script.argv[0] == "/usr/share/mailha/checks/postfix-alive"
    for config in (n1, n2):
        (vs,) = config.virtual_servers
        assert vs.label == "TCP 10.12.49.37:25"
        assert (vs.lvs_sched, vs.lvs_method, vs.vrrp_instance) == ("rr", LvsMethod.DR, "VI_postfix")
        assert [(str(r.ip), r.port) for r in vs.real_servers] == [
            ("10.12.49.35", 25), ("10.12.49.36", 25)]
        for rs in vs.real_servers:
            (check,) = rs.checkers
            assert isinstance(check, SmtpCheck)
            c = check.common
            assert (c.connect_timeout, c.retry, c.delay_loop) == (1.0, 1, 0.5)
            assert c.delay_before_retry == 0.2
