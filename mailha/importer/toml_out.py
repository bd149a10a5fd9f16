"""A small, deterministic TOML writer for the documents the importer produces.

Why not a library: mailha only *reads* TOML in production (:mod:`tomllib`), and the
importer needs exactly one thing from a writer: the same input gives byte-for-byte the
same, human-friendly output (keys in the order given, ``[table]`` sections rather than
one giant inline table, comments at the top). That is a hundred lines, not a dependency.

The document is plain Python data. A ``dict`` is written as a ``[section]``; a list of
dicts as ``[[array of tables]]``; an :class:`InlineTable` (a ``dict`` subclass) as
``{ key = value }`` wherever it appears, which is how the schema spells small records
like ``authentication`` or a weighted ``track_script`` entry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

TomlValue: TypeAlias = "str | int | float | bool | list[TomlValue] | dict[str, TomlValue]"
TomlTable: TypeAlias = "dict[str, TomlValue]"

#: Arrays longer than this on one line are written one element per line.
_MAX_INLINE_WIDTH = 88
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


class InlineTable(dict[str, TomlValue]):
    """A table to be written inline: ``{ address = "10.0.0.1", min_ttl = 254 }``."""


def dumps(document: Mapping[str, TomlValue], *, header: Iterable[str] = ()) -> str:
    """Render ``document`` as TOML text, preceded by ``header`` as ``#`` comment lines.

    Raises TypeError for values TOML cannot express (None, mixed tables and scalars in
    one array): those are bugs in the caller, not user errors.
    """
    chunks: list[str] = []
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header)
    if comment:
        chunks.append(comment)
    _table(chunks, (), document, array_element=False)
    return "\n".join(chunk for chunk in chunks if chunk)


def format_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted key."""
    return key if _BARE_KEY.fullmatch(key) else format_string(key)


def format_string(text: str) -> str:
    """A TOML basic string: escapes quotes, backslashes and every control character."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def format_value(value: TomlValue) -> str:
    """The inline form of a value (what goes after ``key = ``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return format_string(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{format_key(k)} = {format_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, list):
        return _array(value)
    raise TypeError(f"TOML cannot represent {type(value).__name__}: {value!r}")


def _array(items: Sequence[TomlValue]) -> str:
    parts = [format_value(item) for item in items]
    one_line = "[" + ", ".join(parts) + "]"
    if len(one_line) <= _MAX_INLINE_WIDTH and "\n" not in one_line:
        return one_line
    return "[\n" + "".join(f"    {part},\n" for part in parts) + "]"


def _is_section(value: TomlValue) -> bool:
    return isinstance(value, dict) and not isinstance(value, InlineTable)


def _is_array_of_sections(value: TomlValue) -> bool:
    if not isinstance(value, list) or not value:
        return False
    sections = [_is_section(item) for item in value]
    if any(sections) and not all(sections):
        raise TypeError("an array mixes tables with other values")
    return all(sections)


def _table(
    chunks: list[str], path: tuple[str, ...], table: Mapping[str, TomlValue], *, array_element: bool
) -> None:
    lines = []
    for key, value in table.items():
        if not (_is_section(value) or _is_array_of_sections(value)):
            lines.append(f"{format_key(key)} = {format_value(value)}\n")
    dotted = ".".join(format_key(part) for part in path)
    if array_element:
        chunks.append(f"[[{dotted}]]\n" + "".join(lines))
    elif path and (lines or not table):
        chunks.append(f"[{dotted}]\n" + "".join(lines))
    elif lines:
        chunks.append("".join(lines))
    for key, value in table.items():
        if _is_section(value):
            assert isinstance(value, dict)
            _table(chunks, (*path, key), value, array_element=False)
        elif _is_array_of_sections(value):
            assert isinstance(value, list)
            for element in value:
                assert isinstance(element, dict)
                _table(chunks, (*path, key), element, array_element=True)
