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

from collections.abc import Iterable, Mapping

from mailha.tomlfmt import TomlValue, format_key, format_value


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
