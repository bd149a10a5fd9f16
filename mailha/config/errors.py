"""Diagnostics: what is wrong with a config file, where, and what to do about it.

A :class:`Diagnostic` is addressed like a compiler message (``file:line: severity:``)
so editors and CI logs link straight to the line, and it always carries a *hint*: an
admin who mistyped a keepalived option wants the fix, not just the complaint.
:class:`ConfigError` carries every error found in one pass (plus the warnings seen on
the way), because fixing a file one message per run is miserable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal

from mailha.errors import MailhaError

Severity = Literal["error", "warning"]

#: A path through the TOML document: table names and keys, with integer indexes for
#: elements of arrays (``("virtual_server", 0, "real_server", 1, "weight")``).
KeyPath = tuple[str | int, ...]


def _bare(part: str) -> bool:
    return bool(part) and all(c.isascii() and (c.isalnum() or c in "_-") for c in part)


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
        name = part if _bare(part) else '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out += f".{name}" if out else name
    return out


def toml_repr(value: object, limit: int = 60) -> str:
    """A value as it would be written in TOML (shortened), for diagnostics."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(toml_repr(v, limit) for v in value) + "]"
    elif isinstance(value, dict):
        inner = ", ".join(
            f"{format_key((str(k),))} = {toml_repr(v, limit)}" for k, v in value.items()
        )
        text = "{ " + inner + " }" if inner else "{}"
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

