"""mailha.importer.convert: keepalived keywords -> mailha TOML, and what is left out."""

from __future__ import annotations

import shlex
import textwrap
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mailha.config import loads_with_warnings
from mailha.importer.convert import ImportResult, convert, quote_command
from mailha.importer.kaconf import parse, parse_text, split_quoted

DATA = Path(__file__).parent / "data" / "keepalived"


def imported(source: str, config_id: str | None = None) -> tuple[dict[str, Any], ImportResult]:
    path = Path("keepalived.conf")
    tree = parse_text(textwrap.dedent(source), name=path, config_id=config_id)
    result = convert(tree, source=path)
    return tomllib.loads(result.toml_text), result


def reasons(result: ImportResult) -> dict[tuple[int, str], str]:
    return {(u.line, u.keyword): u.reason for u in result.unsupported}


# --------------------------------------------------------------------------- the seed


def test_seed_node1_converts_field_by_field() -> None:
    result = convert(parse(DATA / "seed-node1.conf"), source=DATA / "seed-node1.conf")
    document = tomllib.loads(result.toml_text)
    assert result.unsupported == []
    assert document["vrrp_script"] == {
        "chk_service": {
            "script": "/opt/postfix.check.sh",
            "interval": 3,
            "weight": 100,
            "user": "postfix",
        }
    }
    assert document["vrrp_instance"] == {
        "VI_postfix": {
            "interface": "ens160",
            "state": "MASTER",
            "priority": 100,
            "virtual_router_id": 173,
            "advert_int": 1,
            "unicast_src_ip": "10.12.49.35",
            "unicast_peer": ["10.12.49.36"],
            "virtual_ipaddress": ["10.12.49.37"],
            "track_script": ["chk_service"],
        }
    }
    assert set(document) == {"vrrp_script", "vrrp_instance"}


def test_seed_node2_differs_only_where_the_files_differ() -> None:
    one = tomllib.loads(convert(parse(DATA / "seed-node1.conf"), source=Path("a")).toml_text)
    two = tomllib.loads(convert(parse(DATA / "seed-node2.conf"), source=Path("a")).toml_text)
    assert two["vrrp_script"] == one["vrrp_script"]
    instance = two["vrrp_instance"]["VI_postfix"]
    assert (instance["state"], instance["unicast_src_ip"], instance["unicast_peer"]) == (
        "BACKUP",
        "10.12.49.36",
        ["10.12.49.35"],
    )
    one["vrrp_instance"]["VI_postfix"].update(
        state="BACKUP", unicast_src_ip="10.12.49.36", unicast_peer=["10.12.49.35"]
    )
    assert two == one


def test_header_says_where_it_came_from_and_that_nothing_was_left_out() -> None:
    source = DATA / "seed-node1.conf"
    text = convert(parse(source), source=source, config_id="node1").toml_text
    header = text.split("\n\n")[0]
    assert f"#   {source} (config id 'node1')" in header
    assert "# Everything in the keepalived configuration was carried over." in text
    assert text.endswith("\n")


def test_output_is_deterministic() -> None:
    source = DATA / "full.conf"
    assert convert(parse(source), source=source) == convert(parse(source), source=source)


# --------------------------------------------------------------------------- spellings


def test_keepalived_spellings_become_schema_keys() -> None:
    document, result = imported(
        """
        vrrp_script chk {
            script "/bin/check --x 'a b'"
            weight 10 reverse
            user postfix mail
            init_fail
        }
        vrrp_instance VI_1 {
            interface eth0
            virtual_router_id 1
            state master
            no_accept
            nopreempt
            old_unicast_checksum
            track_script {
                chk weight -5 noreverse
            }
            track_interface {
                eth1 weight 20 reverse
            }
            notify_master "/etc/n.sh master" root wheel
            notify /etc/any.sh
        }
        """
    )
    assert result.unsupported == []
    assert document["vrrp_script"]["chk"] == {
        "script": '/bin/check --x "a b"',
        "weight": 10,
        "reverse": True,
        "user": "postfix",
        "group": "mail",
        "init_fail": True,
    }
    instance = document["vrrp_instance"]["VI_1"]
    assert instance["state"] == "MASTER"
    assert instance["accept"] is False
    assert instance["nopreempt"] is True
    assert instance["v3_checksum_as_v2"] is True
    assert instance["track_script"] == [{"name": "chk", "weight": -5, "reverse": False}]
    assert instance["track_interface"] == [{"name": "eth1", "weight": 20, "reverse": True}]
    assert instance["notify_master"] == {
        "script": "/etc/n.sh master",
        "user": "root",
        "group": "wheel",
    }
    assert instance["notify"] == "/etc/any.sh"


def test_old_lvs_names_and_virtual_server_forms() -> None:
    document, result = imported(
        """
        virtual_server 10.0.0.1 25 {
            lb_algo wlc
            lb_kind nat
            persistence_timeout
            mh-port
            mh-fallback
            real_server 10.0.0.2 25 {
                TCP_CHECK {
                    nb_get_retry 4
                }
            }
        }
        virtual_server fwmark 7 {
            lvs_method TUN type gre nocsum
            ip_family inet6
        }
        virtual_server group pool {
            sorry_server_inhibit
            sorry_server 10.0.0.9
            sorry_server_lvs_method DR
        }
        """
    )
    assert result.unsupported == []
    one, two, three = document["virtual_server"]
    assert (one["lvs_sched"], one["lvs_method"], one["persistence_timeout"]) == ("wlc", "NAT", 360)
    assert one["sched_flags"] == ["mh-port", "mh-fallback"]
    assert one["real_server"][0]["TCP_CHECK"] == [{"retry": 4}]
    assert two == {
        "fwmark": 7,
        "lvs_method": "TUN",
        "tunnel": {"type": "gre", "checksum": "nocsum"},
        "ip_family": "inet6",
    }
    assert three == {
        "group": "pool",
        "sorry_server": {"inhibit": True, "ip": "10.0.0.9", "lvs_method": "DR"},
    }


def test_global_defs_including_structured_values_and_instance_defaults() -> None:
    document, result = imported(
        """
        global_defs {
            lvs_id old_router
            lvs_sync_daemon bond0 inst VI_1 id 5 port 8849 group 224.0.0.81
            lvs_timeouts udp 30
            smtp_server 10.0.0.25
            vrrp_down_timer_adverts 5
            vrrp_higher_prio_send_advert off
        }
        vrrp_instance VI_1 {
            interface eth0
            virtual_router_id 1
            down_timer_adverts 4
        }
        """
    )
    assert result.unsupported == []
    assert document["global"] == {
        "router_id": "old_router",
        "lvs_sync_daemon": {
            "interface": "bond0",
            "instance": "VI_1",
            "sync_id": 5,
            "port": 8849,
            "group": "224.0.0.81",
        },
        "lvs_timeouts": {"udp": 30},
        "smtp_server": "10.0.0.25",
    }
    instance = document["vrrp_instance"]["VI_1"]
    assert instance["down_timer_adverts"] == 4  # its own value wins over the global default
    assert instance["higher_prio_send_advert"] is False


def test_old_smtp_check_hosts_become_one_check_each() -> None:
    document, _ = imported(
        """
        virtual_server 10.0.0.1 25 {
            real_server 10.0.0.2 25 {
                SMTP_CHECK {
                    helo_name me
                    host {
                        connect_ip 10.0.0.2
                    }
                    host {
                        connect_ip 10.0.0.3
                        connect_port 587
                    }
                }
            }
        }
        """
    )
    checks = document["virtual_server"][0]["real_server"][0]["SMTP_CHECK"]
    assert checks == [
        {"helo_name": "me", "connect_ip": "10.0.0.2"},
        {"helo_name": "me", "connect_ip": "10.0.0.3", "connect_port": 587},
    ]


def test_service_on_a_vip_is_bound_to_the_instance_holding_it() -> None:
    document, result = imported(
        """
        vrrp_instance VI_mail {
            interface eth0
            virtual_router_id 1
            virtual_ipaddress {
                10.12.49.37/24 dev eth0
            }
        }
        virtual_server 10.12.49.37 25 {
            protocol TCP
        }
        virtual_server 10.12.49.99 25 {
            protocol TCP
        }
        """
    )
    assert document["virtual_server"][0]["vrrp_instance"] == "VI_mail"
    assert "vrrp_instance" not in document["virtual_server"][1]
    assert len(result.added) == 1 and "VI_mail" in result.added[0]
    assert "# Added by the importer:" in result.toml_text


# --------------------------------------------------------------------------- left out


def test_full_fixture_reports_everything_left_out_with_file_and_line() -> None:
    source = DATA / "full.conf"
    result = convert(parse(source), source=source)
    found = {(u.file.name, u.line, u.keyword) for u in result.unsupported}
    assert found == {
        ("full.conf", 21, "vrrp_priority"),
        ("full.conf", 35, "vrrp_sync_group"),
        ("full.conf", 59, "virtual_ipaddress"),  # the "home" option
        ("full.conf", 66, "track_script"),  # chk_other names no vrrp_script
        ("full.conf", 79, "use_vmac"),
        ("full.conf", 80, "virtual_routes"),
        ("full.conf", 103, "nat_mask"),
        ("full.conf", 128, "HTTP_GET"),
    }
    header = result.toml_text.split("\n\n")[0]
    assert "# NOT carried over (8):" in header
    for entry in result.unsupported:
        assert f"#   {entry}" in header
    document = tomllib.loads(result.toml_text)
    instance = document["vrrp_instance"]["VI_mail"]
    assert instance["virtual_ipaddress"] == [
        "10.12.49.37/24 dev eth0 label eth0:mail",
        "10.12.49.39/24 dev eth0",
    ]
    assert instance["track_script"] == [{"name": "chk_postfix", "weight": 50, "reverse": True}]
    assert instance["lower_prio_no_advert"] is True  # global vrrp_lower_prio_no_advert
    rs = document["virtual_server"][0]["real_server"]
    assert [list(server) for server in rs] == [
        ["ip", "port", "weight", "inhibit_on_failure", "notify_down", "SMTP_CHECK", "MISC_CHECK"],
        ["ip", "port", "weight", "TCP_CHECK"],  # HTTP_GET is gone, reported above
    ]


def test_unsupported_keywords_everywhere_are_reported_not_dropped() -> None:
    _, result = imported(
        """
        vrrp_sync_group G {
            group {
                VI_1
            }
        }
        bfd_instance B {
        }
        global_defs {
            net_namespace blue
            no_such_thing 1
        }
        vrrp_instance VI_1 {
            interface eth0
            virtual_router_id 1
            track_process {
                postfix
            }
            authentication {
                auth_type AH
                auth_pass x
            }
            virtual_ipaddress {
                10.0.0.1 use_vmac vm1 peer 10.0.0.2
            }
            state STANDBY
            priority high
        }
        virtual_server 10.0.0.1 25 {
            persistence_engine sip
            real_server 10.0.0.2 25 {
                DNS_CHECK {
                    type A
                }
            }
        }
        """
    )
    found = reasons(result)
    assert set(found) == {
        (2, "vrrp_sync_group"),
        (7, "bfd_instance"),
        (10, "net_namespace"),
        (11, "no_such_thing"),
        (16, "track_process"),
        (19, "authentication"),
        (24, "virtual_ipaddress"),
        (26, "state"),
        (27, "priority"),
        (30, "persistence_engine"),
        (32, "DNS_CHECK"),
    }
    assert "typo" in found[(11, "no_such_thing")]
    assert "AH" in found[(19, "authentication")]
    assert found[(27, "priority")] == "invalid value 'high': expected an integer"
    assert "STANDBY" in found[(26, "state")]


def test_repeated_keyword_keeps_the_later_value_and_says_so() -> None:
    document, result = imported(
        """
        vrrp_instance VI_1 {
            interface eth0
            virtual_router_id 1
            priority 100
            priority 150
        }
        """
    )
    assert document["vrrp_instance"]["VI_1"]["priority"] == 150
    assert reasons(result) == {
        (5, "priority"): "set again at line 6 of keepalived.conf; the later value wins, "
        "as in keepalived"
    }


def test_missing_plain_include_is_listed() -> None:
    source = DATA / "include" / "keepalived.conf"
    result = convert(parse(source), source=source)
    assert [(u.keyword, u.line) for u in result.unsupported if u.keyword == "include"] == [
        ("include", 6)
    ]


def test_script_words_after_the_command_are_reported() -> None:
    document, result = imported(
        """
        vrrp_script chk {
            script /bin/check --fast
        }
        """
    )
    assert document["vrrp_script"]["chk"]["script"] == "/bin/check"
    assert "'--fast'" in reasons(result)[(3, "script")]


# --------------------------------------------------------------------------- commands


_words = st.lists(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8), min_size=1
)


@given(_words)
def test_quote_command_round_trips_through_keepalived_and_shlex(argv: list[str]) -> None:
    """The importer's quoting reads back the same with keepalived's rules (which the loader
    uses too) and with shell rules, so the output is also safe to paste into a shell."""
    command = quote_command(argv)
    assert split_quoted(command) == argv
    assert shlex.split(command) == argv


def test_quote_command_leaves_plain_commands_alone() -> None:
    assert quote_command(["/usr/bin/check", "--timeout", "2"]) == "/usr/bin/check --timeout 2"


def test_checker_details_left_out_are_reported() -> None:
    document, result = imported(
        """
        virtual_server 10.0.0.1 25 {
            real_server 10.0.0.2 25 {
                TCP_CHECK {
                    host {
                        connect_ip 10.0.0.3
                    }
                }
                MISC_CHECK {
                    misc_timeout 3
                    connect_port 25
                }
            }
        }
        """
    )
    assert document["virtual_server"][0]["real_server"][0] == {
        "ip": "10.0.0.2",
        "port": 25,
        "TCP_CHECK": [{}],
    }
    found = reasons(result)
    assert set(found) == {(5, "host"), (9, "MISC_CHECK"), (11, "connect_port")}
    assert "misc_path" in found[(9, "MISC_CHECK")]


def test_address_service_without_protocol_keeps_keepalived_udp_default() -> None:
    document, result = imported(
        """
        virtual_server_group marks {
            fwmark 1
        }
        virtual_server_group addresses {
            10.0.0.1 53
        }
        virtual_server 10.0.0.1 53 {
        }
        virtual_server fwmark 1 {
        }
        virtual_server group marks {
        }
        virtual_server group addresses {
        }
        """
    )
    assert [vs.get("protocol") for vs in document["virtual_server"]] == ["UDP", None, None, "UDP"]
    assert [note.split(":")[0] for note in result.added] == [
        "virtual_server[0]",
        "virtual_server[3]",
    ]


def test_maglev_services_are_fitted_to_mailha_s_weight_0_rule() -> None:
    document, result = imported(
        """
        virtual_server 10.0.0.1 25 {
            protocol TCP
            lvs_sched mh
            mh-port
            inhibit_on_failure false
            lvs_method TUN
            real_server 10.0.0.2 25 {
                inhibit_on_failure false
                SMTP_CHECK {
                }
            }
        }
        virtual_server 10.0.0.1 587 {
            protocol TCP
            lvs_sched mh
            mh-fallback
            inhibit_on_failure
        }
        """
    )
    one, two = document["virtual_server"]
    assert one["sched_flags"] == ["mh-port", "mh-fallback"]
    assert "inhibit_on_failure" not in one and "inhibit_on_failure" not in one["real_server"][0]
    assert two["sched_flags"] == ["mh-fallback"] and two["inhibit_on_failure"] is True
    assert [note.split(":")[0] for note in result.added] == ["virtual_server[0]"]
    assert "mh-fallback" in result.added[0]
    assert sorted(reasons(result)) == [(6, "inhibit_on_failure"), (9, "inhibit_on_failure")]
    assert all("weight 0" in r for r in reasons(result).values())
    # What it wrote is a configuration mailha accepts.
    config, _ = loads_with_warnings(result.toml_text, Path("imported.toml"))
    assert all(rs.inhibit_on_failure for vs in config.virtual_servers for rs in vs.real_servers)
