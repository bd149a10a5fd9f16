"""``mailha import-keepalived``: the CLI entry, and the output against mailha's loader."""

from __future__ import annotations

import io
import tomllib
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mailha.importer import import_command

DATA = Path(__file__).parent / "data" / "keepalived"


def run(path: Path, config_id: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = import_command(path, out=out, err=err, config_id=config_id)
    return code, out.getvalue(), err.getvalue()


def test_writes_toml_to_out_and_the_report_to_err() -> None:
    code, out, err = run(DATA / "full.conf")
    assert code == 0
    assert tomllib.loads(out)["vrrp_instance"]["VI_mail"]["virtual_router_id"] == 173
    report = err.splitlines()
    assert report[0] == (
        f"{DATA / 'full.conf'}:21: vrrp_priority: keepalived process tuning; "
        "mailha is one asyncio process and needs no equivalent"
    )
    assert len([line for line in report if line.startswith(str(DATA))]) == 8
    assert report[-1] == (
        "imported 1 vrrp_script, 1 vrrp_instance, 1 virtual_server_group, 3 virtual_server; "
        "8 item(s) not carried over (listed above)"
    )
    assert any(line.startswith("added: virtual_server[0]") for line in report)


def test_syntax_error_gives_file_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "keepalived.conf"
    path.write_text('vrrp_script chk {\n    script "/bin/true\n}\n')
    code, out, err = run(path)
    assert code == 1
    assert out == ""
    assert err.startswith(f"{path}:2: unterminated double quote")
    assert err.endswith("nothing was imported\n")


def test_conditional_file_without_config_id_says_which_ids_exist() -> None:
    code, _, err = run(DATA / "parameters.conf")
    assert code == 0
    assert "conditional lines for config ids high, low; none applied" in err


def test_conditional_file_with_an_undefined_parameter_hints_at_the_config_id() -> None:
    code, _, err = run(DATA / "conditional.conf")
    assert code == 1
    assert f"{DATA / 'conditional.conf'}:18: unknown parameter $PRIORITY" in err
    assert "no config id was given" in err


def test_config_id_picks_the_node() -> None:
    code, out, _ = run(DATA / "conditional.conf", config_id="backup")
    assert code == 0
    document = tomllib.loads(out)
    assert document["global"]["router_id"] == "backup_router"
    instance = document["vrrp_instance"]["VRRP"]
    assert (instance["priority"], instance["state"]) == (200, "BACKUP")
    assert instance["unicast_src_ip"] == "1.2.3.5"
    assert instance["unicast_peer"] == ["1.2.3.4", "1.2.3.6"]


# --------------------------------------------------------------------------- the loader


@pytest.fixture
def loader() -> ModuleType:
    """mailha.config, or a skip when the loader cannot be imported (and only then)."""
    module: ModuleType = pytest.importorskip(
        "mailha.config", reason="the config loader is not available"
    )
    return module


def load_converted(
    loader: ModuleType, tmp_path: Path, name: str, config_id: str | None = None
) -> Any:
    code, out, _ = run(DATA / name, config_id)
    assert code == 0
    target = tmp_path / (Path(name).stem + ".toml")
    target.write_text(out)
    loaded, warnings = loader.load_with_warnings(target)
    assert [str(w) for w in warnings] == []
    return loaded


def test_converted_seed_configs_load_with_the_intended_semantics(
    loader: ModuleType, tmp_path: Path
) -> None:
    from mailha.config.model import InitialState, TrackedScript
    from mailha.config.validate import check_peers

    node1 = load_converted(loader, tmp_path, "seed-node1.conf")
    node2 = load_converted(loader, tmp_path, "seed-node2.conf")
    for loaded, state, me, peer in (
        (node1, InitialState.MASTER, "10.12.49.35", "10.12.49.36"),
        (node2, InitialState.BACKUP, "10.12.49.36", "10.12.49.35"),
    ):
        script = loaded.script("chk_service")
        assert script.script.argv == ("/opt/postfix.check.sh",)
        assert script.script.user == "postfix"
        assert (script.interval, script.weight, script.weight_reverse) == (3.0, 100, False)
        assert script.timeout == 3.0  # keepalived: the interval when unset
        instance = loaded.instance("VI_postfix")
        assert instance.interface == "ens160"
        assert instance.state is state
        assert (instance.priority, instance.virtual_router_id) == (100, 173)
        assert (instance.advert_int, instance.version) == (1.0, 2)
        assert instance.unicast_src_ip == IPv4Address(me)
        assert [p.address for p in instance.unicast_peer] == [IPv4Address(peer)]
        assert [v.address for v in instance.virtual_ipaddress] == [IPv4Interface("10.12.49.37/32")]
        assert instance.track_script == (TrackedScript("chk_service"),)
        assert instance.accept is True and instance.nopreempt is False
    # The seed's known flaw survives the import, and mailha says so (a warning).
    peers = check_peers([node1, node2])
    assert peers and all(d.severity == "warning" for d in peers)
    assert any("same priority" in d.message for d in peers)


@pytest.mark.parametrize(
    ("name", "config_id"),
    [("conditional.conf", "main"), ("include/keepalived.conf", None)],
)
def test_other_fixtures_load_cleanly(
    loader: ModuleType, tmp_path: Path, name: str, config_id: str | None
) -> None:
    load_converted(loader, tmp_path, name, config_id)


def test_full_fixture_loads_with_the_intended_semantics(loader: ModuleType, tmp_path: Path) -> None:
    from mailha.config.model import LvsMethod, MiscCheck, SmtpCheck, TcpCheck, TunnelType

    code, out, _ = run(DATA / "full.conf")
    assert code == 0
    target = tmp_path / "full.toml"
    target.write_text(out)
    loaded, warnings = loader.load_with_warnings(target)
    # Warnings the keepalived file deserves; none is about the import itself.
    assert {w.key for w in warnings} >= {"vrrp_instance.VI_mail.authentication"}
    assert all(w.severity == "warning" for w in warnings)
    g = loaded.global_
    assert (g.router_id, g.script_user, g.smtp_server_port) == ("mail1", "root", 2525)
    assert g.lvs_timeouts is not None and g.lvs_timeouts.tcpfin == 120
    assert g.lvs_sync_daemon is not None and g.lvs_sync_daemon.sync_id == 173
    script = loaded.script("chk_postfix")
    assert script.script.argv == ("/usr/share/mailha/checks/postfix-alive", "--timeout", "2")
    assert (script.weight, script.weight_reverse, script.rise, script.fall) == (-20, True, 2, 3)
    assert (script.script.user, script.script.group) == ("postfix", "mail")
    instance = loaded.instance("VI_mail")
    assert (instance.advert_int, instance.version, instance.accept) == (0.5, 3, False)
    assert instance.unicast_peer[0].min_ttl == 254
    assert instance.virtual_ipaddress[0].label == "eth0:mail"
    assert instance.notify is not None
    assert instance.notify.argv == ("/etc/mailha/notify-any.sh", "two words")
    assert instance.notify_master is not None and instance.notify_master.user == "root"
    first, second, third = loaded.virtual_servers
    assert first.vrrp_instance == "VI_mail"
    assert (first.lvs_sched, first.lvs_method, first.persistence_timeout) == (
        "wrr",
        LvsMethod.DR,
        360,
    )
    assert first.sorry_server is not None and first.sorry_server.lvs_method is LvsMethod.NAT
    rs1, rs2 = first.real_servers
    assert (rs1.weight, rs1.inhibit_on_failure, rs1.lvs_method) == (2, True, LvsMethod.DR)
    smtp, misc = rs1.checkers
    assert isinstance(smtp, SmtpCheck) and smtp.helo_name == "mailha.check"
    assert (smtp.common.connect_timeout, smtp.common.retry, smtp.common.delay_loop) == (2, 2, 6)
    assert isinstance(misc, MiscCheck) and misc.misc_dynamic and misc.misc_timeout == 5
    assert misc.misc_path.argv[-2:] == ("--max", "500")
    assert [type(c) for c in rs2.checkers] == [TcpCheck]
    assert rs2.checkers[0].common.connect_timeout == 3  # inherited from the virtual server
    assert second.tunnel is not None and second.tunnel.type is TunnelType.GUE
    assert len(second.real_servers[0].checkers) == 2  # one per old-style SMTP_CHECK host
    assert third.group == "mail"
