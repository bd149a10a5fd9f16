"""Read keepalived.conf the way keepalived does, into a tree of keyword nodes.

keepalived's file format is line based, not a grammar: each line is first stripped of
comments (``#``/``!`` outside double quotes), then run through the "advanced" layer
(``@id`` conditional lines, ``$NAME=value`` parameters with ``$NAME``/``${NAME}``
substitution, multi-line parameters, ``~SEQ``/``~LST`` loops, ``include`` files), and
only then cut at ``{``/``}`` into keyword lines and braces. This module follows the same
order (it was checked against keepalived's ``lib/parser.c``), so a file keepalived
accepts gives the same keyword lines here, each remembering the ``file:line`` it came
from for error messages and "not carried over" reports.

What it does *not* do is know keywords: the result is a generic :class:`Block` of
:class:`Statement` objects, and :mod:`mailha.importer.convert` decides what each one means. So an
unknown keyword is never a syntax error here, and nothing is dropped on the way.

Where keepalived is lenient in ways that hide mistakes, this reader is strict and says
so with :class:`KeepalivedSyntaxError` (always with ``file:line``): unbalanced braces,
unterminated quotes, include loops, a missing file named by ``includea`` (plain
``include`` ignores it, as keepalived does, and the reader leaves a :class:`Note`), and
an undefined ``$PARAM`` outside double quotes (keepalived would pass ``$PRIORITY``
through literally and fail later; inside quotes it is likely a shell variable of a
script, so it is left alone, as keepalived documents).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from mailha.errors import MailhaError
from mailha.procs import ScriptError, split_command

__all__ = [
    "Block",
    "KeepalivedSyntaxError",
    "Location",
    "Note",
    "QuoteError",
    "Statement",
    "decomment",
    "parse",
    "parse_text",
    "split_braces",
    "split_quoted",
    "split_words",
]

_NO_DEFINES: Mapping[str, str] = MappingProxyType({})

#: include variants and the checks each one adds (keepalived.conf(5), "include").
_INCLUDE_CHECKS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "include": frozenset(),
        "includer": frozenset({"readable"}),
        "includem": frozenset({"match"}),
        "includew": frozenset({"wildcard_match"}),
        "includeb": frozenset({"brace_match"}),
        "includea": frozenset({"readable", "match", "wildcard_match", "brace_match"}),
    }
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DEFINITION = re.compile(rf"\$({_NAME})[ \t]*=(.*)", re.DOTALL)
_REFERENCE = re.compile(rf"\$(?:\{{({_NAME})((?: *[0-9]+)*)\}}|({_NAME}))")
_CONDITIONAL = re.compile(r"@(\^?)(\S*)[ \t]+(.*)", re.DOTALL)
_LOOP = re.compile(r"~(SEQx?|LST)[ \t]*\(")
_GLOB_MAGIC = re.compile(r"[*?[]")
_WHITESPACE = " \t\f\n\r\v"
#: A keyword-line word: "quoted" (group 1), plain (group 2), or a lone quote (an error).
_WORD = re.compile(r'"([^"]*)"|([^\s"]+)|"')

#: Bounds against runaway expansion ($A=$A$A, a ~SEQ over a billion values).
_MAX_DEPTH = 64
_MAX_LOOP_VALUES = 1_000_000


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Location:
    """Where a line came from; ``line`` 0 means the file as a whole."""

    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)


class KeepalivedSyntaxError(MailhaError):
    """keepalived.conf text that cannot be read, with the ``file:line`` to fix."""

    def __init__(self, location: Location, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")

    @property
    def file(self) -> Path:
        return self.location.file

    @property
    def line(self) -> int:
        return self.location.line


class QuoteError(MailhaError, ValueError):
    """A string with a quote that is never closed (raised by the word splitters)."""


@dataclass(frozen=True)
class Statement:
    """One keyword line: ``keyword args...`` and, if a ``{`` followed, its block.

    ``args`` are split as keepalived splits keyword lines (double quotes group words,
    nothing else is special). ``text`` is the whole line as written after comments and
    parameters were processed: keywords that take a command line (``script``,
    ``notify_*``, ``misc_path``...) re-split it with :func:`split_quoted`, because
    keepalived honours single quotes and backslash escapes there.
    """

    keyword: str
    args: tuple[str, ...]
    location: Location
    text: str
    block: Block | None = None

    @property
    def children(self) -> tuple[Statement, ...]:
        """The nodes of the block, or () when there is none."""
        return self.block.nodes if self.block is not None else ()

    def quoted_args(self) -> tuple[str, ...]:
        """The arguments split with quotes and escapes (raises :class:`QuoteError`)."""
        return tuple(split_quoted(self.text)[1:])


@dataclass(frozen=True)
class Note:
    """Something the reader skipped on purpose, for the "not carried over" report."""

    location: Location
    keyword: str
    message: str


@dataclass(frozen=True)
class Block:
    """A ``{ ... }`` body, or the whole configuration (the root).

    Only the root carries ``notes`` (files a plain ``include`` could not find) and
    ``conditional_ids`` (every ``@id`` seen, so a caller can warn when the file is
    written for several nodes and no config id was given).
    """

    nodes: tuple[Statement, ...] = ()
    location: Location | None = None
    notes: tuple[Note, ...] = ()
    conditional_ids: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[Statement]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def find(self, keyword: str) -> list[Statement]:
        """The nodes of this block (not nested) with ``keyword``, in file order."""
        return [node for node in self.nodes if node.keyword == keyword]


# --------------------------------------------------------------------------- lexing


def decomment(line: str) -> str:
    """Strip a comment and surrounding blanks from one physical line.

    ``#`` and ``!`` start a comment anywhere outside double quotes; ``\\#`` and ``\\!``
    are the escaped characters (the backslash is removed). A trailing backslash (the
    multi-line parameter marker) is kept, with the blanks before it removed.
    """
    if not any(char in line for char in '#!"\\'):
        return line.strip(" \t\f\v")
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            if i + 1 >= len(line):
                while out and out[-1] in " \t":
                    out.pop()
                out.append("\\")
                return "".join(out).strip(" \t")
            following = line[i + 1]
            if not quoted and following in "#!":
                out.append(following)
            else:
                out.append(char + following)
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in "#!" and not quoted:
            break
        out.append(char)
        i += 1
    return "".join(out).strip(" \t\f\v")


def split_braces(text: str) -> list[str]:
    """Cut a line into keyword text and lone ``{`` / ``}``, as keepalived's reader does.

    Braces inside double quotes are text. Empty pieces are dropped.
    """
    if "{" not in text and "}" not in text:
        stripped = text.strip(_WHITESPACE)
        return [stripped] if stripped else []
    pieces: list[str] = []
    start = 0
    quoted = False
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char in "{}" and not quoted:
            pieces.append(text[start:i])
            pieces.append(char)
            start = i + 1
    pieces.append(text[start:])
    return [piece.strip(_WHITESPACE) for piece in pieces if piece.strip(_WHITESPACE)]


def split_words(text: str) -> list[str]:
    """Split a keyword line like keepalived: blanks separate, ``"..."`` groups.

    A double quote also ends an unquoted word (``a"b c"`` is ``a``, ``b c``); there are
    no escapes. Raises :class:`QuoteError` for an unterminated quote.
    """
    words = []
    for match in _WORD.finditer(text):
        quoted, plain = match.group(1, 2)
        if quoted is None and plain is None:
            raise QuoteError(f"unterminated double quote in {text!r}")
        words.append(quoted if quoted is not None else plain)
    return words


def split_quoted(text: str) -> list[str]:
    """Split a command line with keepalived's rules for scripts.

    Both quote characters group (``'abcd" efg "h'`` is one word, quotes removed), and
    backslash escapes ``\\a \\b \\E \\f \\n \\r \\t \\v \\nnn \\xXX \\cC`` work, any
    other ``\\C`` being ``C``. Raises :class:`QuoteError` for an unterminated quote or
    a trailing lone backslash.

    This is the very splitter the daemon runs scripts with
    (:func:`mailha.procs.split_command`), so an imported command means what it meant to
    keepalived and what it will mean to mailha. Escaped bytes 0x80-0xFF, which the daemon
    keeps as surrogate escapes for argv, are turned back into characters for TOML.
    """
    try:
        words = split_command(text)
    except ScriptError as exc:
        raise QuoteError(str(exc)) from None
    return [_SURROGATE.sub(lambda m: chr(ord(m.group()) - 0xDC00), w) for w in words]


_SURROGATE = re.compile("[\udc80-\udcff]")


# --------------------------------------------------------------------------- reading


@dataclass
class _Definition:
    lines: list[str]
    multiline: bool


_STANDARD_HASH = _Definition(["#"], False)
_STANDARD_BANG = _Definition(["!"], False)


@dataclass
class _Reader:
    """The line layer: files, comments, conditionals, parameters, loops, includes."""

    config_id: str | None
    definitions: dict[str, _Definition] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    conditional_ids: set[str] = field(default_factory=set)
    pending: _Definition | None = None
    #: indentation (tabs as 8 columns) of each physical line, for brace diagnostics
    indents: dict[Location, int] = field(default_factory=dict)

    def read_file(self, path: Path, included_at: Location | None) -> Iterator[tuple[str, Location]]:
        where = included_at or Location(path, 0)
        resolved = path.resolve()
        if resolved in self.files:
            chain = " -> ".join(p.name for p in [*self.files, resolved])
            raise KeepalivedSyntaxError(where, f"include loop: {chain}")
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise KeepalivedSyntaxError(where, f"cannot read {path}: {exc.strerror}") from None
        self.files.append(resolved)
        try:
            yield from self.read_text(text, path)
        finally:
            self.files.pop()

    def read_text(self, text: str, path: Path) -> Iterator[tuple[str, Location]]:
        """The processed lines of one file's text (includes are read in place)."""
        for number, raw in enumerate(text.splitlines(), start=1):
            if self.pending is not None:
                self._continue_definition(raw)
                continue
            line = decomment(raw)
            if line:
                location = Location(path, number)
                expanded = raw.expandtabs(8)
                self.indents[location] = len(expanded) - len(expanded.lstrip())
                yield from self._expand(line, location, 0, from_file=True)
        self._end_definition()

    def _continue_definition(self, raw: str) -> None:
        assert self.pending is not None
        line = decomment(raw)
        if not line:
            self._end_definition()
            return
        more = line.endswith("\\")
        if more:
            line = line[:-1].rstrip(" \t")
        if line:
            self.pending.lines.append(line)
        if not more:
            self._end_definition()

    def _end_definition(self) -> None:
        if self.pending is not None and not self.pending.lines:
            self.pending.lines.append("")
            self.pending.multiline = False
        self.pending = None

    def _expand(
        self, text: str, location: Location, depth: int, *, from_file: bool
    ) -> Iterator[tuple[str, Location]]:
        if depth > _MAX_DEPTH:
            raise KeepalivedSyntaxError(
                location, "parameter expansion nests too deeply (does a parameter use itself?)"
            )
        text = text.strip(_WHITESPACE)
        if not text:
            return
        if text.startswith("@"):
            kept = self._conditional(text)
            if kept is None:
                rest = _without_condition(text)
                if from_file and _DEFINITION.fullmatch(rest) and rest.endswith("\\"):
                    self.pending = _Definition([], multiline=True)  # skip its lines too
                return
            text = kept
        if text.startswith("$") and self._define(text, location, from_file=from_file):
            return
        loop = _LOOP.match(text)
        if loop:
            for rest in self._loop(text, loop, location):
                yield from self._expand(rest, location, depth + 1, from_file=False)
            return
        replaced, tail = self._substitute(text, location)
        if replaced != text or tail:
            yield from self._expand(replaced, location, depth + 1, from_file=False)
            for line in tail:
                yield from self._expand(line, location, depth + 1, from_file=False)
            return
        if text.startswith("include"):
            words = _safe_words(text, location)
            if len(words) == 2 and words[0] in _INCLUDE_CHECKS:
                yield from self._include(words[0], words[1], location)
                return
        yield text, location

    # -- conditionals and parameters ---------------------------------------------

    def _conditional(self, text: str) -> str | None:
        """The line without its ``@id`` prefix when it applies to this node, else None."""
        match = _CONDITIONAL.fullmatch(text)
        if match is None:
            return None  # "@id" alone: keepalived drops the line
        negated, ident, rest = match[1] == "^", match[2], match[3]
        self.conditional_ids.add(ident)
        matches = self.config_id is not None and ident == self.config_id
        return rest if matches != negated else None

    def _define(self, text: str, location: Location, *, from_file: bool) -> bool:
        match = _DEFINITION.fullmatch(text)
        if match is None:
            return False
        name, value = match[1], match[2].lstrip(" \t")
        if value.endswith("\\"):
            first = value[:-1].rstrip(" \t")
            definition = _Definition([first] if first else [], multiline=True)
            if from_file:
                self.pending = definition
            elif not definition.lines:
                definition = _Definition([""], multiline=False)
        else:
            definition = _Definition([value], multiline=False)
        self.definitions[name] = definition
        return True

    def _lookup(self, name: str, location: Location) -> _Definition | None:
        if name in self.definitions:
            return self.definitions[name]
        if name == "_PWD":
            return _Definition([str(location.file.parent.resolve())], False)
        if name == "_INSTANCE":
            if self.config_id is None:
                raise KeepalivedSyntaxError(
                    location, "${_INSTANCE} is the config id: give one (--config-id)"
                )
            return _Definition([self.config_id], False)
        if name == "_HASH":
            return _STANDARD_HASH
        if name == "_BANG":
            return _STANDARD_BANG
        if name == "_RANDOM":
            raise KeepalivedSyntaxError(
                location,
                "${_RANDOM} differs at every keepalived start and cannot be imported: "
                "replace it with a fixed value",
            )
        return None

    def _substitute(self, text: str, location: Location) -> tuple[str, list[str]]:
        """Replace parameter references once, left to right.

        Returns the new text and, when the line ended with a multi-line parameter, the
        remaining lines of its value (expanded later, at use time, as keepalived does).
        """
        if "$" not in text:
            return text, []
        out: list[str] = []
        pos = 0
        for match in _REFERENCE.finditer(text):
            start, end = match.span()
            if start < pos:
                continue
            name = match[1] or match[3]
            braced = match[1] is not None
            if not braced and end < len(text) and text[end] not in " \t,)":
                if name in self.definitions:
                    raise KeepalivedSyntaxError(
                        location,
                        f"${name} is followed by {text[end]!r}, so keepalived would not "
                        f"replace it: write ${{{name}}}",
                    )
                continue
            if match[2] and name != "_RANDOM":
                raise KeepalivedSyntaxError(location, f"parameter ${{{name}}} takes no arguments")
            definition = self._lookup(name, location)
            if definition is None:
                if _inside_double_quotes(text, start):
                    continue
                hint = ""
                if self.config_id is None and self.conditional_ids:
                    hint = "; no config id was given, so every '@id' line was skipped"
                raise KeepalivedSyntaxError(
                    location,
                    f"unknown parameter ${name}: define it with ${name}=VALUE before use "
                    f"(or quote the text if the $ is meant literally){hint}",
                )
            out.append(text[pos:start])
            pos = end
            if definition.multiline:
                if text[end:].strip(_WHITESPACE):
                    raise KeepalivedSyntaxError(
                        location,
                        f"multi-line parameter ${name} must end the line "
                        f"(found {text[end:].strip()!r} after it)",
                    )
                out.append(definition.lines[0])
                return "".join(out), list(definition.lines[1:])
            out.append(definition.lines[0])
        out.append(text[pos:])
        return "".join(out), []

    # -- ~SEQ / ~LST --------------------------------------------------------------

    def _loop(self, text: str, match: re.Match[str], location: Location) -> Iterator[str]:
        """Bind the loop variable(s) for each value in turn and yield the rest of the line."""
        kind = match[1]
        close = _closing_paren(text, match.end())
        if close < 0:
            raise KeepalivedSyntaxError(location, f"~{kind}( has no closing ')'")
        inner, _ = self._substitute(text[match.end() : close], location)
        rest = text[close + 1 :].strip(_WHITESPACE)
        if kind == "LST":
            names, rows = _parse_lst(inner, location)
        else:
            names, rows = _parse_seq(inner, kind == "SEQx", location)
        for row in rows:
            for name, value in zip(names, row, strict=True):
                self.definitions[name] = _Definition([value], multiline=False)
            yield rest

    # -- include ------------------------------------------------------------------

    def _include(
        self, keyword: str, pattern: str, location: Location
    ) -> Iterator[tuple[str, Location]]:
        checks = _INCLUDE_CHECKS[keyword]
        base = location.file.parent
        alternatives = _expand_braces(pattern)
        matched: list[Path] = []
        for alternative in alternatives:
            full = alternative if os.path.isabs(alternative) else str(base / alternative)
            if _GLOB_MAGIC.search(alternative):
                found = sorted(glob.glob(full))
                if not found and "wildcard_match" in checks:
                    raise KeepalivedSyntaxError(
                        location, f"{keyword} {pattern}: {alternative!r} matches no file"
                    )
            else:
                found = [full] if os.path.lexists(full) else []
                if not found and "match" in checks:
                    raise KeepalivedSyntaxError(
                        location, f"{keyword} {pattern}: {full} does not exist"
                    )
            if not found and len(alternatives) > 1 and "brace_match" in checks:
                raise KeepalivedSyntaxError(
                    location, f"{keyword} {pattern}: alternative {alternative!r} matches no file"
                )
            matched.extend(Path(p) for p in found if not os.path.isdir(p))
        if not matched:
            self.notes.append(
                Note(location, keyword, f"{pattern}: no file matched; skipped, as keepalived does")
            )
            return
        for path in matched:
            if not (path.is_file() and os.access(path, os.R_OK)):
                if "readable" in checks:
                    raise KeepalivedSyntaxError(location, f"{keyword}: cannot read {path}")
                self.notes.append(
                    Note(location, keyword, f"{path}: not readable; skipped, as keepalived does")
                )
                continue
            if path.stat().st_mode & 0o111:
                self.notes.append(
                    Note(location, keyword, f"{path}: executable; skipped, as keepalived does")
                )
                continue
            yield from self.read_file(path, location)


def _without_condition(text: str) -> str:
    match = _CONDITIONAL.fullmatch(text)
    return match[3] if match else ""


def _safe_words(text: str, location: Location) -> list[str]:
    try:
        return split_words(text)
    except QuoteError as exc:
        raise KeepalivedSyntaxError(location, str(exc)) from None


def _inside_double_quotes(text: str, pos: int) -> bool:
    return text.count('"', 0, pos) % 2 == 1


def _closing_paren(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "{(":
            depth += 1
        elif text[i] in "})":
            if depth == 0 and text[i] == ")":
                return i
            depth -= 1
    return -1


def _c_integer(text: str) -> int:
    """strtol(text, 0): 0x hex, leading-0 octal, else decimal."""
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body.lower().startswith("0x"):
        return sign * int(body[2:], 16)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body[1:], 8)
    return sign * int(body, 10)


def _parse_seq(
    inner: str, hexadecimal: bool, location: Location
) -> tuple[list[str], list[list[str]]]:
    parts = [part.strip() for part in inner.split(",")]
    name = parts[0]
    if not re.fullmatch(_NAME, name) or not 2 <= len(parts) <= 4:
        raise KeepalivedSyntaxError(
            location, f"invalid ~SEQ({inner}): expected ~SEQ(VAR, [START, [STEP,]] END)"
        )
    try:
        numbers = [_c_integer(part) for part in parts[1:]]
    except ValueError:
        raise KeepalivedSyntaxError(
            location, f"invalid ~SEQ({inner}): the values must be integers"
        ) from None
    if len(numbers) == 1:
        end = numbers[0]
        start, step = (-1 if end < 0 else 1), (-1 if end < 1 else 1)
    elif len(numbers) == 2:
        start, end = numbers
        step = 1 if start <= end else -1
    else:
        start, step, end = numbers
        if step == 0 or (start < end and step < 0) or (start > end and step > 0):
            raise KeepalivedSyntaxError(
                location, f"invalid ~SEQ({inner}): the step never reaches the end"
            )
    if hexadecimal and (start < 0 or end < 0):
        raise KeepalivedSyntaxError(location, f"~SEQx({inner}) is only valid for positive numbers")
    count = (end - start) // step + 1 if (end - start) * step >= 0 else 1
    if count > _MAX_LOOP_VALUES:
        raise KeepalivedSyntaxError(location, f"~SEQ({inner}) would produce {count} lines")
    values = [start + i * step for i in range(count)]
    return [name], [[format(v, "x") if hexadecimal else str(v)] for v in values]


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside ``{...}``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _group(item: str) -> list[str]:
    if item.startswith("{") and item.endswith("}"):
        return [part.strip() for part in item[1:-1].split(",")]
    return [item]


def _parse_lst(inner: str, location: Location) -> tuple[list[str], list[list[str]]]:
    items = _split_top(inner)
    names = _group(items[0])
    if len(items) < 2 or not all(re.fullmatch(_NAME, name) for name in names):
        raise KeepalivedSyntaxError(
            location, f"invalid ~LST({inner}): expected ~LST(VAR, VALUE, ...)"
        )
    rows = [_group(item) for item in items[1:]]
    for row in rows:
        if len(row) != len(names):
            raise KeepalivedSyntaxError(
                location,
                f"invalid ~LST({inner}): {len(names)} variables but {len(row)} values in {row}",
            )
    return names, rows


def _expand_braces(pattern: str) -> list[str]:
    """csh-style ``{a,b{c,d}}`` expansion, as glob(GLOB_BRACE) does; order is kept."""
    depth = 0
    start = -1
    for i, char in enumerate(pattern):
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                options = _split_top(pattern[start + 1 : i])
                if len(options) > 1:
                    head, tail = pattern[:start], pattern[i + 1 :]
                    out: list[str] = []
                    for option in options:
                        out.extend(_expand_braces(head + option + tail))
                    return out
    return [pattern]


# --------------------------------------------------------------------------- tree


@dataclass
class _Open:
    """A node being built; ``body`` is None until its ``{`` is seen."""

    keyword: str
    args: tuple[str, ...]
    location: Location
    text: str
    body: list[_Open] | None = None

    def freeze(self) -> Statement:
        block = None
        if self.body is not None:
            block = Block(tuple(child.freeze() for child in self.body), self.location)
        return Statement(self.keyword, self.args, self.location, self.text, block)


def _build(
    lines: Iterator[tuple[str, Location]], root: Location, indents: Mapping[Location, int]
) -> list[_Open]:
    """Nest keyword lines into blocks.

    ``indents`` (the indentation of each physical line) only sharpens the error for a
    missing '}': the block whose '}' is indented like an outer block is the likely
    culprit, rather than the outermost block still open at the end of the file.
    """
    top: list[_Open] = []
    stack: list[tuple[_Open | None, list[_Open]]] = [(None, top)]
    last: _Open | None = None  # the keyword line just read, which a "{" may open
    suspect: tuple[_Open, Location] | None = None  # a block closed by a misindented '}'
    for text, location in lines:
        for index, piece in enumerate(split_braces(text)):
            if piece == "{":
                if last is None or last.body is not None:
                    raise KeepalivedSyntaxError(location, "'{' without a keyword before it")
                last.body = []
                stack.append((last, last.body))
                last = None
            elif piece == "}":
                if len(stack) == 1:
                    raise KeepalivedSyntaxError(location, "'}' without a matching '{'")
                opener = stack.pop()[0]
                assert opener is not None
                closing, opening = indents.get(location), indents.get(opener.location)
                if (
                    suspect is None
                    and index == 0
                    and opener.location != location
                    and closing is not None
                    and opening is not None
                    and closing < opening
                ):
                    suspect = (opener, location)
                last = None
            else:
                words = _safe_words(piece, location)
                last = _Open(words[0], tuple(words[1:]), location, piece)
                stack[-1][1].append(last)
    if len(stack) > 1:
        missing = len(stack) - 1
        at_end = f"{missing} '}}' missing at the end of {root.file.name}"
        if suspect is not None:
            opener, closed_at = suspect
            raise KeepalivedSyntaxError(
                opener.location,
                f"the block of '{opener.keyword}' opened here looks unclosed: the '}}' "
                f"taken as its end (line {closed_at.line}) is indented like an outer block "
                f"({at_end})",
            )
        innermost = stack[-1][0]
        assert innermost is not None
        raise KeepalivedSyntaxError(
            innermost.location,
            f"the block of '{innermost.keyword}' opened here is never closed ({at_end})",
        )
    return top


def parse(
    path: Path, *, config_id: str | None = None, defines: Mapping[str, str] = _NO_DEFINES
) -> Block:
    """Read keepalived.conf at ``path`` (and what it includes) into a :class:`Block`.

    ``config_id`` plays keepalived's ``-i``: ``@id`` lines apply only when it matches
    (None: no id, so only ``@^id`` lines apply). ``defines`` pre-sets ``$NAME``
    parameters as if the file began with ``$NAME=value`` lines.
    Raises :class:`KeepalivedSyntaxError` with the ``file:line`` of the problem.
    """
    reader = _Reader(config_id)
    for name, value in defines.items():
        reader.definitions[name] = _Definition([value], multiline=False)
    root = Location(path, 0)
    top = _build(reader.read_file(path, None), root, reader.indents)
    return Block(
        tuple(node.freeze() for node in top),
        root,
        tuple(reader.notes),
        frozenset(reader.conditional_ids),
    )


def parse_text(
    text: str,
    *,
    name: Path = Path("keepalived.conf"),
    config_id: str | None = None,
    defines: Mapping[str, str] = _NO_DEFINES,
) -> Block:
    """Like :func:`parse`, for text in memory; ``include`` paths are relative to ``name``."""
    reader = _Reader(config_id)
    for key, value in defines.items():
        reader.definitions[key] = _Definition([value], multiline=False)
    lines = reader.read_text(text, name)
    root = Location(name, 0)
    top = _build(lines, root, reader.indents)
    return Block(
        tuple(node.freeze() for node in top),
        root,
        tuple(reader.notes),
        frozenset(reader.conditional_ids),
    )
