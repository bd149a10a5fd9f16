"""``mailha import-keepalived``: carry a keepalived.conf over to mailha's TOML.

Three layers, each usable alone: :func:`parse` reads keepalived's file format into a
keyword tree (includes, conditionals, parameters), :func:`convert` maps the tree onto
mailha's schema and lists what it could not carry, and :func:`import_command` is the
CLI glue that prints the TOML and the report.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TextIO

from mailha.importer.convert import ImportResult, Unsupported, convert
from mailha.importer.kaconf import Block, KeepalivedSyntaxError, Location, Statement, parse

__all__ = [
    "Block",
    "ImportResult",
    "KeepalivedSyntaxError",
    "Location",
    "Statement",
    "Unsupported",
    "convert",
    "import_command",
    "parse",
]

_COUNTED = ("vrrp_script", "vrrp_instance", "virtual_server_group", "virtual_server")


def import_command(path: Path, *, out: TextIO, err: TextIO, config_id: str | None) -> int:
    """Write the TOML for ``path`` to ``out`` and the report to ``err``.

    Returns 0 when a TOML document was written (even if some keywords were not carried
    over: they are listed, with ``file:line``, on ``err`` and in the TOML header), 1 when
    the keepalived file cannot be read (the error, with ``file:line``, goes to ``err``).
    """
    try:
        tree = parse(path, config_id=config_id)
    except KeepalivedSyntaxError as exc:
        err.write(f"{exc}\nmailha import-keepalived: nothing was imported\n")
        return 1
    result = convert(tree, source=path, config_id=config_id)
    out.write(result.toml_text)
    for entry in result.unsupported:
        err.write(f"{entry}\n")
    for note in result.added:
        err.write(f"added: {note}\n")
    if config_id is None and tree.conditional_ids:
        ids = ", ".join(sorted(tree.conditional_ids))
        err.write(
            f"note: the file has conditional lines for config ids {ids}; none applied. "
            "Give --config-id to import the configuration of one node.\n"
        )
    err.write(_summary(result))
    return 0


def _summary(result: ImportResult) -> str:
    document = tomllib.loads(result.toml_text)
    counts = []
    for key in _COUNTED:
        count = len(document.get(key, ()))
        if count:
            counts.append(f"{count} {key}")
    carried = ", ".join(counts) if counts else "no VRRP or LVS configuration"
    left = len(result.unsupported)
    tail = f"{left} item(s) not carried over (listed above)" if left else "nothing left out"
    return f"imported {carried}; {tail}\n"
