"""keepalived settings mailha accepts without acting on them are warned about, each with
its line; strict mode's checks and defaults; the VRRP interop keys' values reach the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailha.config import loads, loads_with_warnings
from mailha.config.inert import NO_EFFECT
from mailha.config.loader import ConfigError
from mailha.config.model import GlobalConfig, VrrpInstance
from mailha.vrrp.driver import advert_group

BASE = """
[global]
router_id = "n1"
{global_extra}

[vrrp_instance.VI_1]
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["192.0.2.10/24"]
{instance_extra}
"""


def warnings_for(global_extra: str = "", instance_extra: str = "") -> list[str]:
    text = BASE.format(global_extra=global_extra, instance_extra=instance_extra)
    _, warnings = loads_with_warnings(text, Path("n1.toml"))
    return [str(w) for w in warnings if "e-mail" in w.message]


def test_global_smtp_alert_is_reported_with_its_line() -> None:
    (w,) = warnings_for(global_extra="smtp_alert = true")
    assert w.startswith("n1.toml:4: warning: global.smtp_alert = true: e-mail alerts are not sent")
    assert "notify" in w


def test_instance_smtp_alert_is_reported() -> None:
    (w,) = warnings_for(instance_extra="smtp_alert = true")
    assert "vrrp_instance.VI_1.smtp_alert" in w


def test_no_warning_when_alerts_are_off() -> None:
    assert warnings_for(global_extra="smtp_alert = false") == []


def all_warnings(global_extra: str = "", instance_extra: str = "") -> list[str]:
    text = BASE.format(global_extra=global_extra, instance_extra=instance_extra)
    _, warnings = loads_with_warnings(text, Path("n1.toml"))
    return [str(w) for w in warnings]


@pytest.mark.parametrize(
    ("global_extra", "instance_extra", "key"),
    [
        ('notification_email = ["ops@example.com"]', "", "global.notification_email"),
        ('smtp_server = "127.0.0.1"', "", "global.smtp_server"),
        ("smtp_connect_timeout = 10", "", "global.smtp_connect_timeout"),
        ("vrrp_check_unicast_src = false", "", "global.vrrp_check_unicast_src"),
        ("", "check_unicast_src = false", "vrrp_instance.VI_1.check_unicast_src"),
        ("", 'virtual_ipaddress_excluded = ["192.0.2.11/24 no_track"]',
         "vrrp_instance.VI_1.virtual_ipaddress_excluded[0]"),
    ],
)
def test_an_inert_setting_is_warned_about_with_its_key_and_why(
    global_extra: str, instance_extra: str, key: str
) -> None:
    (w,) = all_warnings(global_extra, instance_extra)
    assert f"warning: {key}" in w and NO_EFFECT in w


@pytest.mark.parametrize(
    ("global_extra", "instance_extra"),
    [
        ("vrrp_check_unicast_src = true", "check_unicast_src = true"),
        ("smtp_server_port = 25", "accept = false"),
        ("", ""),
    ],
)
def test_values_that_mean_what_mailha_does_anyway_are_quiet(
    global_extra: str, instance_extra: str
) -> None:
    assert all_warnings(global_extra, instance_extra) == []


def instance(global_extra: str = "", instance_extra: str = "") -> tuple[GlobalConfig,
                                                                          VrrpInstance]:
    config = loads(BASE.format(global_extra=global_extra, instance_extra=instance_extra),
                   Path("n1.toml"))
    return config.global_, config.vrrp_instances[0]


def test_strict_mode_answers_no_lower_priority_advert_and_sends_none_when_yielding() -> None:
    _, inst = instance("vrrp_strict = true", "higher_prio_send_advert = true")
    assert inst.lower_prio_no_advert and not inst.higher_prio_send_advert and not inst.accept
    warned = all_warnings("vrrp_strict = true", "higher_prio_send_advert = true")
    assert any("higher_prio_send_advert" in w and "strict" in w for w in warned)
    _, plain = instance(instance_extra="higher_prio_send_advert = true")
    assert plain.higher_prio_send_advert and not plain.lower_prio_no_advert


@pytest.mark.parametrize(
    ("instance_extra", "key"),
    [
        ("preempt_delay = 10", "preempt_delay"),
        ('state = "MASTER"', "state"),
        ("priority = 255", "state"),
    ],
)
def test_strict_mode_reports_what_rfc_5798_does_not_know(instance_extra: str, key: str) -> None:
    warned = all_warnings("vrrp_strict = true", instance_extra)
    assert any(f"vrrp_instance.VI_1.{key}" in w and "strict" in w for w in warned), warned


def test_strict_mode_owner_with_state_master_is_consistent() -> None:
    warned = all_warnings("vrrp_strict = true", 'state = "MASTER"\npriority = 255')
    assert not any(".state" in w for w in warned), warned


def test_the_advert_group_is_mcast_dst_ip_else_the_global_group_of_the_family() -> None:
    glob, inst = instance('vrrp_mcast_group4 = "224.0.0.19"')
    assert str(advert_group(inst, glob)) == "224.0.0.19"
    glob, inst = instance('vrrp_mcast_group4 = "224.0.0.19"', 'mcast_dst_ip = "224.0.0.20"')
    assert str(advert_group(inst, glob)) == "224.0.0.20"
    glob, inst = instance()
    assert str(advert_group(inst, glob)) == "224.0.0.18"
    glob, inst = instance(instance_extra='unicast_peer = ["192.0.2.2"]')
    assert advert_group(inst, glob) is None


@pytest.mark.parametrize("ttl", [0, 256])
def test_unicast_ttl_is_1_to_255(ttl: int) -> None:
    with pytest.raises(ConfigError, match="unicast_ttl"):
        instance(instance_extra=f"unicast_ttl = {ttl}")
    assert instance(instance_extra="unicast_ttl = 64")[1].unicast_ttl == 64


def test_no_accept_mode_is_accept_false_except_for_the_address_owner() -> None:
    assert instance(instance_extra="accept = false")[1].no_accept_mode
    assert not instance(instance_extra="accept = false\npriority = 255")[1].no_accept_mode
    assert not instance()[1].no_accept_mode
    assert instance("vrrp_strict = true")[1].no_accept_mode


def test_strict_mode_allows_accept_with_vrrpv3_only() -> None:
    _, v3 = instance("vrrp_strict = true", "version = 3\naccept = true")
    assert v3.accept
    assert not any("accept" in w for w in all_warnings("vrrp_strict = true",
                                                        "version = 3\naccept = true"))
    _, v2 = instance("vrrp_strict = true", "accept = true")
    assert not v2.accept
    assert any(".accept" in w and "RFC 3768" in w
               for w in all_warnings("vrrp_strict = true", "accept = true"))


def test_no_accept_on_the_vip_of_a_virtual_server_is_warned_about() -> None:
    text = BASE.format(global_extra="", instance_extra="accept = false") + """
[[virtual_server]]
ip = "192.0.2.10"
port = 25
vrrp_instance = "VI_1"
[[virtual_server.real_server]]
ip = "192.0.2.20"
port = 25
[virtual_server.real_server.TCP_CHECK]
"""
    _, warnings = loads_with_warnings(text, Path("n1.toml"))
    assert any("no accept mode drops everything addressed to 192.0.2.10" in str(w)
               for w in warnings), [str(w) for w in warnings]
