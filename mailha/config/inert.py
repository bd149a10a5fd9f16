"""keepalived settings mailha accepts but does not act on, and why: one table.

An imported keepalived.conf carries them, so refusing them would make every import
fail; ignoring them silently would promise what the daemon does not do. So each is
accepted and, when it asks for something mailha does not do, warned about
(:func:`mailha.config.validate.check_config` reports them from here). The test that
walks ``config/reference.toml`` fails on any key that is neither read at run time nor
listed here, so a new key cannot be accepted and ignored by accident.

Keys are written ``section.key`` with the section kinds of the reference file
(``global``, ``vrrp_instance``, ``virtual_ipaddress``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["INERT", "NO_EFFECT"]

NO_EFFECT = "accepted for keepalived compatibility, no effect"

_EMAIL = ("mailha sends no e-mail: use notify scripts, or the alert rules in "
          "deploy/prometheus/mailha-rules.yml")

INERT: Mapping[str, str] = MappingProxyType({
    "global.smtp_alert": _EMAIL,
    "vrrp_instance.smtp_alert": _EMAIL,
    "global.notification_email": _EMAIL,
    "global.notification_email_from": _EMAIL,
    "global.smtp_server": _EMAIL,
    "global.smtp_server_port": _EMAIL,
    "global.smtp_helo_name": _EMAIL,
    "global.smtp_connect_timeout": _EMAIL,
    "global.vrrp_check_unicast_src": (
        "mailha always drops unicast adverts from addresses not in unicast_peer (a kernel "
        "filter on the VRRP socket); false cannot turn that off"),
    "vrrp_instance.check_unicast_src": (
        "mailha always drops unicast adverts from addresses not in unicast_peer (a kernel "
        "filter on the VRRP socket); false cannot turn that off"),
    "virtual_ipaddress.no_track": (
        "mailha does not watch its VIPs for removal by someone else, so every VIP already "
        "behaves as no_track"),
})
"""``section.key`` -> why it has no effect (the hint of its warning)."""
