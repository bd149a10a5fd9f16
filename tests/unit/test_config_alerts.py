"""keepalived's smtp_alert is accepted for compatibility, and the user is told it is inert."""

from __future__ import annotations

from pathlib import Path

from mailha.config import loads_with_warnings

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
