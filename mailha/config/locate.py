"""Find the line a TOML key is written on.

:mod:`tomllib` returns plain dicts without positions, and a diagnostic without a line
number sends the admin hunting. Rather than writing a second TOML parser, this scans
the text the way a person reads it: table headers (``[a.b]``), arrays of tables
(``[[a.b]]``, counted per parent so ``[[virtual_server.real_server]]`` gets the right
indexes), ``key = value`` lines, and inside values the elements of arrays and the
keys of inline tables, which may span lines.

It runs only on text that :mod:`tomllib` already accepted, so it can be forgiving: if
it ever gets lost it stops and keeps what it found, and lookups fall back to the
nearest enclosing table that it did find. A locator never raises.
"""

from __future__ import annotations

import bisect

from mailha.config.errors import KeyPath

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Lost(Exception):
    """The scanner met something it does not understand; keep what was found."""


class Locator:
    """Maps key paths of one TOML text to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self._lines: dict[KeyPath, int] = {}
        self._implied: dict[KeyPath, int] = {}
        self._pos = 0
        try:
            self._document()
        except (_Lost, IndexError, ValueError, RecursionError):
            pass

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest enclosing table or array element."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end]) or self._implied.get(path[:end])
            if found is not None:
                return found
        return None

    # ------------------------------------------------------------------ scanning

    def _lineno(self, pos: int) -> int:
        return bisect.bisect_right(self._starts, pos)

    def _record(self, path: KeyPath, pos: int) -> None:
        self._lines.setdefault(path, self._lineno(pos))

    def _imply(self, path: KeyPath, pos: int) -> None:
        """Note the first line that implies table ``path`` (``[a.b]`` or ``a.b = 1`` imply a).

        Implied tables exist in the document; without their line, an error about one
        (say ``a`` being no known table) would have no line at all. A line that writes
        the table itself, recorded by :meth:`_record`, takes precedence.
        """
        self._implied.setdefault(path, self._lineno(pos))

    def _record_key(self, base: KeyPath, parts: tuple[str, ...], pos: int) -> KeyPath:
        """Record the key ``base`` + ``parts`` written at ``pos``, implying its prefixes."""
        path = base
        for part in parts[:-1]:
            path += (part,)
            self._imply(path, pos)
        path += (parts[-1],)
        self._record(path, pos)
        return path

    def _peek(self, n: int = 1) -> str:
        return self._text[self._pos : self._pos + n]

    def _skip_blank(self, newlines: bool) -> None:
        """Skip spaces, tabs, comments and, when ``newlines``, line ends."""
        text = self._text
        while self._pos < len(text):
            c = text[self._pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self._pos += 1
            elif c == "#":
                end = text.find("\n", self._pos)
                self._pos = len(text) if end < 0 else end
            else:
                return

    def _document(self) -> None:
        current: KeyPath = ()
        arrays: dict[KeyPath, int] = {}
        text = self._text
        while True:
            self._skip_blank(newlines=True)
            if self._pos >= len(text):
                return
            start = self._pos
            if text.startswith("[[", self._pos):
                self._pos += 2
                parts = self._key()
                current = self._resolve(parts, arrays, start, is_array=True)
                self._expect("]]")
            elif text[self._pos] == "[":
                self._pos += 1
                parts = self._key()
                current = self._resolve(parts, arrays, start, is_array=False)
                self._expect("]")
            else:
                parts = self._key()
                self._expect("=")
                self._value(self._record_key(current, parts, start))

    def _resolve(
        self, parts: tuple[str, ...], arrays: dict[KeyPath, int], pos: int, *, is_array: bool
    ) -> KeyPath:
        resolved: KeyPath = ()
        for i, part in enumerate(parts):
            resolved += (part,)
            last = i == len(parts) - 1
            if not last:
                self._imply(resolved, pos)
            if last and is_array:
                self._record(resolved, pos)
                arrays[resolved] = arrays.get(resolved, 0) + 1
                resolved += (arrays[resolved] - 1,)
            elif resolved in arrays:
                resolved += (arrays[resolved] - 1,)
        self._record(resolved, pos)
        return resolved

    def _expect(self, token: str) -> None:
        self._skip_blank(newlines=False)
        if not self._text.startswith(token, self._pos):
            raise _Lost(token)
        self._pos += len(token)

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            c = self._peek()
            if c in ('"', "'"):
                parts.append(self._string())
            else:
                start = self._pos
                while self._pos < len(self._text) and self._text[self._pos] in _BARE:
                    self._pos += 1
                if self._pos == start:
                    raise _Lost("key")
                parts.append(self._text[start : self._pos])
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return tuple(parts)
            self._pos += 1

    def _string(self) -> str:
        """Consume a string token; return its content (escapes are kept as written)."""
        text = self._text
        quote = text[self._pos]
        if text.startswith(quote * 3, self._pos):
            end = self._pos + 3
            while True:
                end = text.index(quote * 3, end)
                if quote == "'" or not _escaped(text, end):
                    break
                end += 1
            while text.startswith(quote, end + 3):  # up to two quotes may end the content
                end += 1
            content = text[self._pos + 3 : end]
            self._pos = end + 3
            return content
        end = self._pos + 1
        while True:
            end = text.index(quote, end)
            if "\n" in text[self._pos : end]:
                raise _Lost("newline in string")
            if quote == "'" or not _escaped(text, end):
                break
            end += 1
        content = text[self._pos + 1 : end]
        self._pos = end + 1
        return content

    def _value(self, path: KeyPath) -> None:
        self._skip_blank(newlines=False)
        c = self._peek()
        if c in ('"', "'"):
            self._string()
        elif c == "[":
            self._pos += 1
            index = 0
            while True:
                self._skip_blank(newlines=True)
                if self._peek() == "]":
                    self._pos += 1
                    return
                self._record((*path, index), self._pos)
                self._value((*path, index))
                self._skip_blank(newlines=True)
                if self._peek() == ",":
                    self._pos += 1
                index += 1
        elif c == "{":
            self._pos += 1
            while True:
                self._skip_blank(newlines=True)
                if self._peek() == "}":
                    self._pos += 1
                    return
                start = self._pos
                parts = self._key()
                self._expect("=")
                self._value(self._record_key(path, parts, start))
                self._skip_blank(newlines=True)
                if self._peek() == ",":
                    self._pos += 1
        else:
            start = self._pos
            while self._pos < len(self._text) and self._text[self._pos] not in ",]}\n#":
                self._pos += 1
            if self._pos == start:
                raise _Lost("value")


def _escaped(text: str, pos: int) -> bool:
    """True when the character at ``pos`` is preceded by an odd number of backslashes."""
    count = 0
    while pos - count - 1 >= 0 and text[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1
