"""The TOML line locator: key paths to line numbers, without a second parser."""

from __future__ import annotations

from mailha.config.errors import format_key
from mailha.config.locate import Locator

TEXT = '''\
# comment
top = 1

[global]
router_id = "n1"   # trailing comment
lvs_timeouts = { tcp = 900, tcpfin = 120 }

[vrrp_instance."VI 1"]
unicast_peer = [
  "10.0.0.2",  # first
  { address = "10.0.0.3",
    min_ttl = 254 },
]
notify = """
multi "line" string with [brackets] and key = value
"""
a.b.c = 'x'

[[virtual_server]]
ip = "10.0.0.9"

[[virtual_server.real_server]]
ip = "10.0.0.1"

[[virtual_server.real_server.SMTP_CHECK]]
helo_name = "h"

[[virtual_server.real_server]]
ip = "10.0.0.2"

[[virtual_server]]
fwmark = 1

[[virtual_server.real_server]]
ip = "10.0.0.5"
'''


def test_keys_tables_and_inline_tables() -> None:
    loc = Locator(TEXT)
    assert loc.line(("top",)) == 2
    assert loc.line(("global",)) == 4
    assert loc.line(("global", "router_id")) == 5
    assert loc.line(("global", "lvs_timeouts", "tcpfin")) == 6
    assert loc.line(("vrrp_instance", "VI 1")) == 8


def test_array_elements_across_lines() -> None:
    loc = Locator(TEXT)
    peers = ("vrrp_instance", "VI 1", "unicast_peer")
    assert loc.line(peers) == 9
    assert loc.line((*peers, 0)) == 10
    assert loc.line((*peers, 1)) == 11
    assert loc.line((*peers, 1, "min_ttl")) == 12


def test_multiline_strings_and_dotted_keys() -> None:
    loc = Locator(TEXT)
    assert loc.line(("vrrp_instance", "VI 1", "notify")) == 14
    assert loc.line(("vrrp_instance", "VI 1", "a", "b", "c")) == 17


def test_arrays_of_tables_count_per_parent() -> None:
    loc = Locator(TEXT)
    assert loc.line(("virtual_server", 0)) == 19
    assert loc.line(("virtual_server", 0, "ip")) == 20
    assert loc.line(("virtual_server", 0, "real_server", 0, "ip")) == 23
    assert loc.line(("virtual_server", 0, "real_server", 0, "SMTP_CHECK", 0, "helo_name")) == 26
    assert loc.line(("virtual_server", 0, "real_server", 1, "ip")) == 29
    assert loc.line(("virtual_server", 1, "fwmark")) == 32
    assert loc.line(("virtual_server", 1, "real_server", 0, "ip")) == 35


def test_missing_keys_fall_back_to_the_enclosing_table() -> None:
    loc = Locator(TEXT)
    assert loc.line(("virtual_server", 1, "real_server", 0, "weight")) == 34
    assert loc.line(("nowhere", "at", "all")) is None


def test_never_raises_on_garbage() -> None:
    for text in ("[", "a = [1, 2", 'x = "unterminated', "= 1", "[[a]]\n[[a.b", "\x00"):
        Locator(text).line(("a",))


def test_format_key_quotes_what_toml_would() -> None:
    assert format_key(("virtual_server", 0, "real_server", 1, "ip")) == (
        "virtual_server[0].real_server[1].ip")
    assert format_key(("vrrp_instance", "VI 1", "priority")) == 'vrrp_instance."VI 1".priority'
