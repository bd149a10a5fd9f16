"""TOML values and keys written out: one formatter for the importer's documents, the lab's
node configs and the values quoted in diagnostics.

Deterministic (the same input gives the same text) and complete for what TOML can
express; a value it cannot (None, ...) is a TypeError: a bug in the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TypeAlias

__all__ = ["TomlTable", "TomlValue", "format_key", "format_string", "format_value"]

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
