"""Property: whatever a TOML document holds, load() returns a Config or raises ConfigError.

Documents are built from the schema's own key names with values of random types, plus
values that are almost right (addresses, keepalived lines, enum names), so the fuzzing
reaches deep into the loader instead of stopping at the first type check.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailha.config import Config, ConfigError, loads
from mailha.config import keys as L

SOURCE = Path("fuzz.toml")

PLAUSIBLE = [
    "10.12.49.37", "10.12.49.35", "10.12.49.36", "2001:db8::25", "10.12.49.37/24",
    "10.12.49.37/24 dev eth0 label eth0:mail", "2001:db8::25/64 dev eth0", "10.0.0.1 25",
    "10.0.0.1-5 25", "fwmark 1", "fwmark 2 inet6", "eth0", "lo", "MASTER", "BACKUP", "rr", "sh",
    "DR", "NAT", "TUN", "TCP", "UDP", "gue", "ipip", "csum", "inet6", "PASS", "AH", "sh-port",
    "/bin/true", "/bin/check 'unbalanced", "chk", "VI", "g", "100 reverse", "", " ",
    "255.255.255.0", "224.0.0.18", "ff02::12", "/run/x.sock",
]
NAMES = ["chk", "VI", "VI_2", "g", "mail"]
ALL_KEYS = sorted(
    L.TOP_KEYS | set(L.GLOBAL_SPEC) | set(L.SYNC_SPEC) | set(L.INSTANCE_KEYS) | set(L.VS_KEYS)
    | set(L.RS_KEYS) | set(L.CHECKER_SPEC) | L.MISC_KEYS | set(L.SCRIPT_SPEC)
    | {"script", "user", "group", "reverse", "address", "name", "weight", "members", "type",
       "port", "checksum", "ip", "inhibit", "tcp", "udp", "tcpfin", "lb_algo", "nopreempt",
       "min_ttl", "max_ttl", "auth_type", "auth_pass", "socket", "listen", "enabled", "HTTP_GET"}
)

scalars = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.text(max_size=12),
    st.integers(min_value=-70000, max_value=70000),
    st.sampled_from([0, 1, 2, 3, 25, 100, 150, 173, 253, 254, 255, 256, 4095, 2**40]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.01, 0.015, 0.5, 1.0, 1.5, 40.95, 41.0]),
    st.booleans(),
)

@st.composite
def random_values(draw: st.DrawFn) -> Any:
    """A scalar, or arrays and tables of them, keyed by schema names."""
    return draw(st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.sampled_from(ALL_KEYS), inner, max_size=5),
        ),
        max_leaves=8,
    ))


values = random_values()


def table(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=6)


instance_keys = sorted(L.INSTANCE_KEYS | {"no_accept", "preempt", "use_vmac"})
checker_keys = sorted(set(L.CHECKER_SPEC) | L.MISC_KEYS | {"helo_name"})
rs_keys = sorted(L.RS_KEYS - set(L.CHECKER_KINDS))
vs_keys = sorted(L.VS_KEYS - {"real_server"})


@st.composite
def real_servers(draw: st.DrawFn) -> dict[str, Any]:
    rs = draw(table(rs_keys))
    rs.setdefault("ip", draw(st.sampled_from(PLAUSIBLE)))
    for kind in draw(st.lists(st.sampled_from(L.CHECKER_KINDS), max_size=2, unique=True)):
        rs[kind] = draw(st.lists(table(checker_keys), min_size=1, max_size=2))
    return rs


@st.composite
def virtual_servers(draw: st.DrawFn) -> dict[str, Any]:
    vs = draw(table(vs_keys))
    if draw(st.booleans()):
        vs["real_server"] = draw(st.lists(real_servers(), max_size=2))
    return vs


def named(keys: list[str]) -> st.SearchStrategy[dict[str, dict[str, Any]]]:
    return st.dictionaries(st.sampled_from(NAMES), table(keys), max_size=2)


SECTIONS: dict[str, st.SearchStrategy[Any]] = {
    "global": table(sorted(set(L.GLOBAL_SPEC) | {"lvs_timeouts", "lvs_sync_daemon"})),
    "metrics": table(["enabled", "listen", "port"]),
    "control": table(["socket"]),
    "vrrp_script": named(sorted(set(L.SCRIPT_SPEC) | {"script", "user", "group", "reverse"})),
    "vrrp_instance": named(instance_keys),
    "virtual_server_group": named(["members"]),
    "virtual_server": st.lists(virtual_servers(), max_size=2),
}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=5, unique=True))
    return {name: draw(SECTIONS[name]) for name in chosen}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_document(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, body in doc.items():
        if section == "virtual_server":
            for vs in body:
                lines.append("[[virtual_server]]")
                lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in vs.items()]
        elif section in ("global", "metrics", "control"):
            lines.append(f"[{section}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in body.items()]
        else:
            for name, tbl in body.items():
                lines.append(f"[{section}.{json.dumps(name)}]")
                lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in tbl.items()]
    return "\n".join(lines) + "\n"


def load_or_error(text: str) -> None:
    try:
        config = loads(text, SOURCE)
    except ConfigError as exc:
        assert exc.errors, "a ConfigError always carries at least one error"
        for d in exc.diagnostics:
            assert str(d).startswith("fuzz.toml")
            assert d.line is None or 1 <= d.line <= text.count("\n") + 1
        return
    assert isinstance(config, Config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_schema_shaped_documents_only_raise_config_error(doc: dict[str, Any]) -> None:
    load_or_error(toml_document(doc))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('[]{}="\'#.,\n abc123=-_')), max_size=80))
def test_arbitrary_text_only_raises_config_error(text: str) -> None:
    load_or_error(text)
