"""mh (Maglev) services in the configuration: the weight-0 rule, mh-fallback, sloppy_tcp.

See mailha/lvs/maglev.py for why: every director must keep the same Maglev table, so a
failed or drained real server is quiesced in place (never deleted), which needs
mh-fallback, and a director must accept flows it did not see start (sloppy_tcp).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailha.checkers.quorum import DesiredPool, PoolMember
from mailha.config import ConfigError, Diagnostic, loads, loads_with_warnings
from mailha.config.model import Config
from mailha.lvs.desired import desired_table, maglev_keys
from mailha.lvs.model import ServiceKey

SOURCE = Path("node.toml")

BASE = """\
[global]
router_id = "director1"

[[virtual_server]]
ip = "10.12.49.37"
port = 25
lvs_sched = "mh"
sched_flags = ["mh-fallback", "mh-port"]
lvs_method = "TUN"

[[virtual_server.real_server]]
ip = "10.12.49.35"
weight = 3

[[virtual_server.real_server.SMTP_CHECK]]

[[virtual_server.real_server]]
ip = "10.20.0.36"

[[virtual_server.real_server.SMTP_CHECK]]
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def errors(text: str) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        loads(text, SOURCE)
    return [d for d in info.value.diagnostics if d.is_error]


def warnings(text: str) -> list[Diagnostic]:
    return loads_with_warnings(text, SOURCE)[1]


def test_an_mh_service_keeps_failed_real_servers_at_weight_0() -> None:
    config, found = loads_with_warnings(BASE, SOURCE)
    assert found == []
    (vs,) = config.virtual_servers
    assert vs.inhibit_on_failure
    assert all(rs.inhibit_on_failure for rs in vs.real_servers)


def test_other_schedulers_keep_keepalived_s_default() -> None:
    config = loads(edit('lvs_sched = "mh"\nsched_flags = ["mh-fallback", "mh-port"]',
                        'lvs_sched = "wlc"'), SOURCE)
    assert not any(rs.inhibit_on_failure for rs in config.virtual_servers[0].real_servers)


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("virtual_server[0].inhibit_on_failure",
         edit('lvs_method = "TUN"', 'lvs_method = "TUN"\ninhibit_on_failure = false')),
        ("virtual_server[0].real_server[1].inhibit_on_failure",
         edit('ip = "10.20.0.36"', 'ip = "10.20.0.36"\ninhibit_on_failure = false')),
    ],
)
def test_inhibit_on_failure_false_is_refused_with_the_reason(where: str, text: str) -> None:
    (error,) = errors(text)
    assert error.key == where
    assert "Maglev table" in error.message
    assert "remove inhibit_on_failure" in error.hint


def test_inhibit_on_failure_true_is_what_mh_does_anyway() -> None:
    text = edit('ip = "10.20.0.36"', 'ip = "10.20.0.36"\ninhibit_on_failure = true')
    assert warnings(text) == []


def test_mh_without_mh_fallback_is_refused() -> None:
    (error,) = errors(edit('sched_flags = ["mh-fallback", "mh-port"]',
                           'sched_flags = ["mh-port"]'))
    assert error.key == "virtual_server[0].sched_flags"
    assert "mh-fallback" in error.message and "refused" in error.message
    assert 'sched_flags = ["mh-fallback", "mh-port"]' in error.hint
    assert error.line == 8


def test_sloppy_tcp_defaults_on_with_an_mh_tcp_service_only() -> None:
    g = loads(BASE, SOURCE).global_
    assert (g.lvs_sloppy_tcp, g.lvs_sloppy_sctp) == (True, False)
    sctp = loads(edit('port = 25', 'port = 25\nprotocol = "SCTP"'), SOURCE).global_
    assert (sctp.lvs_sloppy_tcp, sctp.lvs_sloppy_sctp) == (False, True)
    wlc = loads(edit('lvs_sched = "mh"\nsched_flags = ["mh-fallback", "mh-port"]',
                     'lvs_sched = "wlc"'), SOURCE).global_
    assert (wlc.lvs_sloppy_tcp, wlc.lvs_sloppy_sctp) == (False, False)


def test_sloppy_tcp_may_be_set_without_mh() -> None:
    text = edit('lvs_sched = "mh"\nsched_flags = ["mh-fallback", "mh-port"]', 'lvs_sched = "wlc"')
    config, found = loads_with_warnings(
        edit('router_id = "director1"', 'router_id = "director1"\nlvs_sloppy_tcp = true', text),
        SOURCE)
    assert config.global_.lvs_sloppy_tcp and found == []


def test_sloppy_tcp_off_with_an_mh_service_is_warned_about() -> None:
    config, found = loads_with_warnings(
        edit('router_id = "director1"', 'router_id = "director1"\nlvs_sloppy_tcp = false'),
        SOURCE)
    assert not config.global_.lvs_sloppy_tcp
    (warning,) = found
    assert warning.key == "global.lvs_sloppy_tcp" and warning.line == 3
    assert "did not see start" in warning.message and "TCP 10.12.49.37:25" in warning.message


def test_misc_dynamic_on_an_mh_service_is_warned_about() -> None:
    text = edit('ip = "10.20.0.36"\n\n[[virtual_server.real_server.SMTP_CHECK]]',
                'ip = "10.20.0.36"\n\n[[virtual_server.real_server.MISC_CHECK]]\n'
                'misc_path = "/usr/share/mailha/checks/postfix-queue-weight"\n'
                "misc_dynamic = true")
    (warning,) = [w for w in warnings(text) if "misc_dynamic" in w.key]
    assert warning.key == "virtual_server[0].real_server[1].MISC_CHECK[0].misc_dynamic"
    assert "Maglev table" in warning.message


def _pool(config: Config, weights: list[int | None]) -> DesiredPool:
    vs = config.virtual_servers[0]
    members = tuple(PoolMember(rs, w) for rs, w in zip(vs.real_servers, weights, strict=True))
    return DesiredPool(members, None, None, True, 1)


def test_a_quiesced_real_server_carries_its_configured_weight_as_table_weight() -> None:
    config = loads(BASE, SOURCE)
    key = ServiceKey.for_address("10.12.49.37", 25)
    assert maglev_keys(config) == {key}
    table = desired_table(config, {0: _pool(config, [0, 1])}, lambda vs: True)
    down, up = table[key].destinations.values()
    assert (down.weight, down.table_weight) == (0, 3)
    assert (up.weight, up.table_weight) == (1, None)
