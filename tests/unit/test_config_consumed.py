"""Every key of config/reference.toml is acted on, or declared inert: none is silently ignored.

"Acted on" is read statically: the key's model field is read as an attribute somewhere in
the daemon (the cross-field checks count, since they change what the admin is told),
outside the places that only define, convert or copy fields (the model, the loader, the
importer, the lab) and outside the functions that warn about inert keys. A key
that nothing reads must be in :data:`mailha.config.inert.INERT`, which makes
``mailha check`` warn about it; a key in INERT that the daemon does read is a stale entry.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

from mailha.config.inert import INERT

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mailha"
#: Where a field is defined, converted or copied, not acted on.
NOT_RUNTIME = (
    "config/model.py", "config/inert.py", "config/loader.py", "config/values.py",
    "config/keys.py", "config/table.py", "config/vrrp_section.py", "config/lvs_section.py",
    "importer/", "lab/", "demo.py",
)
#: The functions that read inert keys only to warn that they have no effect.
WARNERS = {"_check_inert", "_check_email_alerts"}
#: Global defaults the loader copies into each instance's key of another name: acted on
#: when that key is (checked below to be what the loader does).
INHERITED = {"global.vrrp_skip_check_adv_addr": "vrrp_instance.skip_check_adv_addr"}
#: Where a key of the reference lives, as INERT names sections.
SECTION_OF = {"virtual_ipaddress_excluded": "virtual_ipaddress"}


def reference_keys() -> set[tuple[str, str]]:
    """(section kind, key) of every value in the reference, inline tables included."""
    found: set[tuple[str, str]] = set()

    def walk(node: object, section: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if _is_table(value):
                    walk(value, key)
                else:
                    found.add((section, key))
                    if isinstance(value, list):
                        for item in value:
                            if isinstance(item, dict):
                                walk(item, SECTION_OF.get(key, key))
        elif isinstance(node, list):
            for item in node:
                walk(item, section)

    doc = tomllib.loads((ROOT / "config" / "reference.toml").read_text())
    for top, value in doc.items():
        if top in ("vrrp_script", "vrrp_instance", "virtual_server_group"):
            for named in value.values():  # [vrrp_instance.NAME]
                walk(named, top)
        else:
            walk(value, top)
    return found


def _is_table(value: object) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
        and not any("address" in v or "name" in v for v in value)  # lists of entries
    )


def _runtime_files() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if not rel.startswith(NOT_RUNTIME):
            yield path


def attributes_read() -> set[str]:
    """Attribute names loaded anywhere in the daemon, outside :data:`WARNERS`."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in WARNERS:
            return
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            names.add(node.attr)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for path in _runtime_files():
        visit(ast.parse(path.read_text(), str(path)))
    # A model property the daemon reads acts on the fields it reads (accept through
    # no_accept_mode, ...).
    for prop, fields in _model_properties().items():
        if prop in names:
            names |= fields
    return names


def _model_properties() -> dict[str, set[str]]:
    """Each property of the config model -> the ``self.`` fields it reads."""
    tree = ast.parse((PACKAGE / "config" / "model.py").read_text())
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list
        ):
            found[node.name] = {
                n.attr for n in ast.walk(node)
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                and n.value.id == "self"
            }
    return found


def test_the_walk_sees_the_reference() -> None:
    keys = reference_keys()
    assert ("global", "vrrp_mcast_group4") in keys
    assert ("vrrp_instance", "unicast_ttl") in keys
    assert ("virtual_ipaddress", "no_track") in keys
    assert len(keys) > 120


def test_every_reference_key_is_acted_on_or_declared_inert() -> None:
    read = attributes_read()

    def acted_on(name: str) -> bool:
        if name in INHERITED:
            return acted_on(INHERITED[name])
        return name.rsplit(".", 1)[1] in read

    ignored = sorted(f"{section}.{key}" for section, key in reference_keys()
                     if not acted_on(f"{section}.{key}") and f"{section}.{key}" not in INERT)
    assert ignored == [], (
        "keys accepted but read nowhere at run time: act on them, or declare them in "
        "mailha/config/inert.py so that mailha check warns")


def test_inert_entries_are_in_the_reference_and_really_unread() -> None:
    keys = {f"{section}.{key}" for section, key in reference_keys()}
    read = attributes_read()
    assert sorted(set(INERT) - keys) == []
    assert sorted(k for k in INERT if k.rsplit(".", 1)[1] in read) == []


def test_the_inherited_defaults_are_copied_by_the_loader() -> None:
    loader = (PACKAGE / "config" / "vrrp_section.py").read_text()
    for glob, inst in INHERITED.items():
        copy = f'values.setdefault("{inst.split(".")[1]}", global_.{glob.split(".")[1]})'
        assert copy in loader, copy
