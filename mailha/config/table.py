"""The loader's reading machinery: a TOML table being read (unknown keys reported,
known ones converted), and the builder's base, which collects diagnostics and knows
where each model object came from. The sections are built in
:mod:`~mailha.config.vrrp_section` and :mod:`~mailha.config.lvs_section`, the way
keepalived splits its parsers by subsystem."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mailha.config.errors import (
    Diagnostic,
    KeyPath,
    Severity,
    format_key,
    toml_repr,
)
from mailha.config.inert import INERT, NO_EFFECT
from mailha.config.keys import (
    KEEPALIVED_ALIASES,
    UNSUPPORTED,
)
from mailha.config.locate import Locator
from mailha.config.model import (
    GlobalConfig,
    ScriptCommand,
)
from mailha.config.values import (
    Conv,
    _argv,
    _Invalid,
    _string,
    describe,
)

T = TypeVar("T")


class _Table:
    """One TOML table being read: reports unknown keys, converts the known ones."""

    def __init__(
        self, builder: BuilderBase, raw: object, path: KeyPath, known: Collection[str], what: str
    ) -> None:
        self.b = builder
        self.path = path
        self.raw: dict[str, Any] = {}
        if not isinstance(raw, dict):
            builder.report("error", path, f"{what} must be a table, got {describe(raw)}",
                           f"write it as [{format_key(path)}] or an inline table {{ ... }}",
                           value=raw)
            self.ok = False
            return
        self.ok = True
        self.raw = raw
        for key in raw:
            if key not in known:
                builder.unknown_key((*path, key), known, what)

    def has(self, key: str) -> bool:
        return key in self.raw

    def get(self, key: str, conv: Callable[[object], T]) -> T | None:
        if key not in self.raw:
            return None
        try:
            return conv(self.raw[key])
        except _Invalid as exc:
            self.b.report("error", (*self.path, key), exc.message, exc.hint, value=self.raw[key])
            return None

    def require(self, key: str, conv: Callable[[object], T], hint: str) -> T | None:
        if self.ok and key not in self.raw:
            self.b.report("error", self.path, f'missing required key "{key}"', hint)
            return None
        return self.get(key, conv)

    def take(self, spec: Mapping[str, Conv]) -> dict[str, Any]:
        """Convert every key of ``spec`` present in the table; bad ones are reported."""
        out: dict[str, Any] = {}
        for key, conv in spec.items():
            value = self.get(key, conv)
            if value is not None:
                out[key] = value
        return out


class BuilderBase:
    def __init__(self, source: Path, locator: Locator) -> None:
        self.source = source
        self.locator = locator
        self.diagnostics: list[Diagnostic] = []
        #: id() of each model object built -> the key path it came from; lets the
        #: cross-field checks in validate.py point at the right line.
        self.paths: dict[int, KeyPath] = {}

    def report(
        self, severity: Severity, path: KeyPath, message: str, hint: str = "", *,
        value: object = None,
    ) -> None:
        self.diagnostics.append(
            Diagnostic(severity, self.source, self.locator.line(path), format_key(path), message,
                       hint, None if value is None else toml_repr(value))
        )

    def unknown_key(self, path: KeyPath, known: Collection[str], what: str) -> None:
        key = str(path[-1])
        if key in KEEPALIVED_ALIASES:
            self.report("error", path, f'unknown key "{key}" in {what}', KEEPALIVED_ALIASES[key])
        elif key in UNSUPPORTED:
            self.report("error", path, f"keepalived's {key} is not supported by mailha",
                        "remove it")
        else:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = (f'did you mean "{close[0]}"?' if close
                    else f"known keys: {', '.join(sorted(known))}")
            self.report("error", path, f'unknown key "{key}" in {what}', hint)

    def record(self, obj: T, path: KeyPath) -> T:
        self.paths[id(obj)] = path
        return obj

    def _named_tables(self, data: Mapping[str, Any], key: str) -> Iterator[tuple[str, Any]]:
        raw = data.get(key)
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.report("error", (key,),
                        f"{key} must be a table of named tables, got {describe(raw)}",
                        f"write [{key}.NAME] tables", value=raw)
            return
        yield from raw.items()

    # -------------------------------------------------------------- document

    def inert_false(self, path: KeyPath, values: Mapping[str, Any], key: str) -> None:
        """Warn when ``key`` is written as false, a value mailha cannot honour."""
        if values.get(key) is False:
            self.report("warning", (*path, key), f"{key} = false: {NO_EFFECT}",
                        INERT[f"{path[0]}.{key}"], value=False)

    def script_command(
        self, t: _Table, key: str, global_: GlobalConfig, *, user_keys: bool = False
    ) -> ScriptCommand | None:
        """A ``script``/``notify_*``/``misc_path`` value: string, array or {script, user, group}."""
        if not t.has(key):
            return None
        raw = t.raw[key]
        path = (*t.path, key)
        user = group = None
        if isinstance(raw, dict):
            st = _Table(self, raw, path, ("script", "user", "group"), key)
            user, group = st.get("user", _string), st.get("group", _string)
            argv = st.require("script", _argv, 'give the command: script = "/path/to/program"')
        else:
            argv = t.get(key, _argv)
        if user_keys:
            user, group = t.get("user", _string), t.get("group", _string)
        if argv is None:
            return None
        if user is None:
            user, group = global_.script_user, group or global_.script_group
        return ScriptCommand(argv, user, group)
