"""mailha.importer.toml_out: what it writes, tomllib reads back unchanged."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailha.importer.toml_out import InlineTable, dumps
from mailha.tomlfmt import TomlValue, format_key, format_string


def test_sections_arrays_of_tables_and_inline_tables() -> None:
    document: dict[str, TomlValue] = {
        "global": {"router_id": "node1", "lvs_timeouts": InlineTable(tcp=900, udp=300)},
        "vrrp_script": {"chk_postfix": {"script": "/bin/check", "weight": -20, "reverse": True}},
        "virtual_server": [
            {
                "ip": "10.0.0.1",
                "port": 25,
                "real_server": [{"ip": "10.0.0.2", "SMTP_CHECK": [{"connect_timeout": 2.5}]}],
            }
        ],
    }
    text = dumps(document, header=["generated", "", "by a test"])
    assert text == (
        "# generated\n"
        "#\n"
        "# by a test\n"
        "\n"
        "[global]\n"
        'router_id = "node1"\n'
        "lvs_timeouts = { tcp = 900, udp = 300 }\n"
        "\n"
        "[vrrp_script.chk_postfix]\n"
        'script = "/bin/check"\n'
        "weight = -20\n"
        "reverse = true\n"
        "\n"
        "[[virtual_server]]\n"
        'ip = "10.0.0.1"\n'
        "port = 25\n"
        "\n"
        "[[virtual_server.real_server]]\n"
        'ip = "10.0.0.2"\n'
        "\n"
        "[[virtual_server.real_server.SMTP_CHECK]]\n"
        "connect_timeout = 2.5\n"
    )
    assert tomllib.loads(text) == document


def test_long_arrays_are_written_one_element_per_line() -> None:
    text = dumps({"members": [f"10.12.49.{n} 25" for n in range(10)]})
    assert text.startswith('members = [\n    "10.12.49.0 25",\n')
    assert tomllib.loads(text)["members"][9] == "10.12.49.9 25"


def test_keys_and_strings_are_quoted_when_needed() -> None:
    assert format_key("VI_postfix") == "VI_postfix"
    assert format_key("vrrp4.0.0.1") == '"vrrp4.0.0.1"'
    assert format_string('a "b" \\ \t\x01') == '"a \\"b\\" \\\\ \\t\\u0001"'


def test_values_toml_cannot_hold_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        dumps({"x": None})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        dumps({"x": [{"a": 1}, 2]})


def test_output_is_deterministic() -> None:
    document: dict[str, TomlValue] = {"b": 1, "a": {"z": [1, 2], "y": InlineTable(k="v")}}
    assert dumps(document) == dumps(document)


_keys = st.text(min_size=1, max_size=12)
_scalars = (
    st.text(max_size=20)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.floats(allow_nan=False)
)


def _values(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return _scalars | st.lists(_scalars, max_size=4)
    inner = _values(depth - 1)
    return (
        _scalars
        | st.lists(_scalars, max_size=4)
        | st.dictionaries(_keys, inner, max_size=3).map(InlineTable)
        | st.dictionaries(_keys, inner, max_size=3)
        | st.lists(st.dictionaries(_keys, inner, max_size=3), min_size=1, max_size=2)
    )


@given(st.dictionaries(_keys, _values(2), max_size=5))
def test_round_trip_through_tomllib(document: dict[str, TomlValue]) -> None:
    assert tomllib.loads(dumps(document, header=["x"])) == document
