"""Diagnostics: what is wrong with a config file, where, and what to do about it.

A :class:`Diagnostic` is addressed like a compiler message (``file:line: severity:``)
so editors and CI logs link straight to the line, and it always carries a *hint*: an
admin who mistyped a keepalived option wants the fix, not just the complaint.
:class:`ConfigError` carries every error found in one pass (plus the warnings seen on
the way), because fixing a file one message per run is miserable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal

from mailha.errors import MailhaError
from mailha.tomlfmt import format_key as toml_key
from mailha.tomlfmt import format_value

Severity = Literal["error", "warning"]

#: A path through the TOML document: table names and keys, with integer indexes for
#: elements of arrays (``("virtual_server", 0, "real_server", 1, "weight")``).
KeyPath = tuple[str | int, ...]


def format_key(path: KeyPath) -> str:
    """Render a key path the way a person would write it: ``virtual_server[0].port``.

    Table and key names that TOML would need quoted are quoted, so the result can be
    pasted into a search in the file.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = toml_key(part)
        out += f".{name}" if out else name
    return out


def toml_repr(value: object, limit: int = 60) -> str:
    """A value as it would be written in TOML (on one line, shortened), for diagnostics.

    TOML's own values go through :mod:`mailha.tomlfmt`, the writer the importer uses;
    what TOML has no literal for (an address object, a tuple of the model) is shown the
    way a person would write it.
    """
    text = _one_line(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(value: object) -> str:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_one_line(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{toml_key(str(k))} = {_one_line(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, bool | int | float | str):
        return format_value(value)
    return str(value)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


@dataclass(frozen=True)
class Diagnostic:
    """One finding about one key of one file.

    ``line`` is None when the key is not in the text at all (a missing required key is
    reported at its table's header instead, when there is one). ``value`` is the
    offending value as written in TOML, shown after the key; ``column`` is only set for
    TOML syntax errors, where the parser knows it.
    """

    severity: Severity
    file: Path
    line: int | None
    key: str
    message: str
    hint: str = ""
    value: str | None = None
    column: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (str(self.file), self.line or 0, self.column or 0, self.key, self.message)

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        subject = self.key or "(document)"
        if self.value is not None:
            subject += f" = {self.value}"
        text = f"{where}: {self.severity}: {subject}: {_sentence(self.message)}"
        if self.hint:
            text += f" Fix: {_sentence(self.hint)}"
        return text


class ConfigError(MailhaError):
    """A configuration that cannot be used, with every diagnostic found.

    ``diagnostics`` holds the errors and, for context, the warnings of the same pass;
    ``errors`` filters the former. ``str()`` is the full report, one line each.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: list[Diagnostic] = sorted(diagnostics, key=Diagnostic.sort_key)
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

