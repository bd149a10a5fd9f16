"""Refuse TOML nested too deeply *before* it reaches the parser.

:mod:`tomllib` parses arrays and inline tables by recursion, so ``x = [[[[...`` a
thousand levels deep kills ``mailha check`` and ``mailha serve`` with a RecursionError
traceback (issue 9), and it handles a dotted key or table header of *n* parts in time
and memory quadratic in *n* (100,000 parts exhaust the machine). Everything after the
parser -- the builder, :func:`~mailha.config.errors.toml_repr`, the locator -- walks
values recursively too. No mailha config needs more than a handful of levels, so the
loader bounds them all at :data:`MAX_DEPTH`, each where it is cheapest to see:

* :func:`first_too_deep` scans the raw text, before :mod:`tomllib`, for open arrays
  and inline tables and for the parts of each key, and stops at the first point past
  the limit -- so a 100,000-deep file costs a few dozen steps;
* :func:`deepest_path` walks the parsed document without recursion, for depth built
  from several shallow pieces (a dotted key inside an inline table inside an array...);
* :func:`deepest_point` says where the text nests deepest, for the loader's last-resort
  handling of a RecursionError (which the two checks above should make impossible).

The scanner only has to be exact on valid TOML, where strings and comments are the
only places brackets, quotes and dots lose their meaning; on invalid TOML it stops
(or miscounts) no earlier than the point where :mod:`tomllib` reports its own error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailha.config.errors import KeyPath

__all__ = ["MAX_DEPTH", "Depth", "deepest_path", "deepest_point", "first_too_deep"]

#: More levels than any mailha config uses (the deepest, a checker option, is 5), far
#: fewer than would strain the parser or the recursion limit.
MAX_DEPTH = 32

#: Characters that change the scanner's state; everything else is skipped in bulk.
_BORING = re.compile(r"""[^\[\]{}"'#\n.=,]+""")


@dataclass(frozen=True)
class Depth:
    """A point of the text and how deep it is there (1-based line and column)."""

    depth: int
    line: int
    column: int
    #: "brackets": arrays and inline tables open at once; "key": parts of one key.
    kind: str


def first_too_deep(text: str, limit: int = MAX_DEPTH) -> Depth | None:
    """The first point where ``text`` goes past ``limit``, or None when it never does."""
    found = _scan(text, limit)
    return found if found is not None and found.depth > limit else None


def deepest_point(text: str) -> Depth | None:
    """Where ``text`` nests deepest (brackets first, else the longest key); None if flat."""
    return _scan(text, None)


def _scan(text: str, limit: int | None) -> Depth | None:
    """Walk the token structure; stop past ``limit``, else return the deepest point."""
    stack: list[str] = []  # "[" arrays, "{" inline tables
    key = True  # reading a key: at a line start outside brackets, or in an inline table
    parts = 1  # parts of the key being read (dots seen + 1)
    brackets = longest = (0, 0)  # (depth, offset) of the deepest point of each kind
    i, n = 0, len(text)
    while i < n:
        boring = _BORING.match(text, i)
        if boring is not None:
            i = boring.end()
            continue
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "\"'":
            after = _string_end(text, i)
            if after is None:  # unterminated: the parser stops here with its own error
                break
            i = after
            continue
        if c == "\n":
            if not stack:
                key, parts = True, 1
        elif key:
            if c == ".":
                parts += 1
                if parts > longest[0]:
                    longest = (parts, i)
                    if limit is not None and parts > limit:
                        break
            elif c == "=":
                key, parts = False, 1
            elif c == "}" and stack:  # the empty inline table {}
                stack.pop()
                key = False
            # else "[" / "]" of a table header, or a stray character: nothing nests
        elif c in "[{":
            stack.append(c)
            key = c == "{"
            if len(stack) > brackets[0]:
                brackets = (len(stack), i)
                if limit is not None and len(stack) > limit:
                    break
        elif c in "]}":
            if stack:
                stack.pop()
        elif c == ",":
            key = bool(stack) and stack[-1] == "{"
            parts = 1
        i += 1
    if limit is not None and longest[0] > limit:
        return _point(text, *longest, "key")
    if brackets[0]:
        return _point(text, *brackets, "brackets")
    return _point(text, *longest, "key") if longest[0] else None


def _point(text: str, depth: int, offset: int, kind: str) -> Depth:
    line_start = text.rfind("\n", 0, offset) + 1
    return Depth(depth, text.count("\n", 0, offset) + 1, offset - line_start + 1, kind)


def _string_end(text: str, start: int) -> int | None:
    """The index just past the string starting at ``start``; None when unterminated."""
    quote = text[start]
    if text.startswith(quote * 3, start):
        end = start + 3
        while True:
            end = text.find(quote * 3, end)
            if end < 0:
                return None
            if quote == "'" or not _escaped(text, end):
                break
            end += 1
        end += 3
        for _ in range(2):  # up to two more quotes belong to the content: """a""""
            if text.startswith(quote, end):
                end += 1
        return end
    end = start + 1
    while True:
        close = text.find(quote, end)
        newline = text.find("\n", end)
        if close < 0 or 0 <= newline < close:
            return None
        if quote == "'" or not _escaped(text, close):
            return close + 1
        end = close + 1


def _escaped(text: str, pos: int) -> bool:
    """True when the character at ``pos`` follows an odd number of backslashes."""
    count = 0
    while pos - count - 1 >= 0 and text[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def deepest_path(data: dict[str, Any], limit: int = MAX_DEPTH) -> KeyPath | None:
    """The first key path of the parsed ``data`` longer than ``limit``, else None.

    Iterative on purpose: this runs to make recursion safe, so it must not recurse.
    """
    todo: list[tuple[KeyPath, object]] = [((), data)]
    while todo:
        path, value = todo.pop()
        if len(path) > limit:
            return path
        if isinstance(value, dict):
            todo.extend(((*path, k), v) for k, v in value.items())
        elif isinstance(value, list):
            todo.extend(((*path, k), v) for k, v in enumerate(value))
    return None
