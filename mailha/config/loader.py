"""TOML text -> :class:`~mailha.config.model.Config`, or every reason why not.

The loader is one lenient pass over the parsed document: a key it cannot use becomes a
:class:`~mailha.config.errors.Diagnostic` and the loader carries on with the default, so
a single run reports every problem in the file rather than the first. Values are checked
where they are read (types, ranges, keepalived's line syntaxes); rules that relate
several keys or tables live in :mod:`mailha.config.validate` and run on the draft.

The loader is split the way keepalived splits its parsers: this module holds the API
and the global tables, :mod:`~mailha.config.vrrp_section` and
:mod:`~mailha.config.lvs_section` build their sections on the reading machinery of
:mod:`~mailha.config.table`, with the key tables of :mod:`~mailha.config.keys` and
the converters of :mod:`~mailha.config.values`.

Inheritance is resolved here (in these modules), once, so consumers never re-implement keepalived's
defaults: ``global.vrrp_version`` -> instance ``version``, the global ``vrrp_garp_*``
and ``vrrp_strict``/``vrrp_skip_check_adv_addr``/``vrrp_check_unicast_src`` -> the
instance's, ``script_user``/``script_group`` -> every script without its own user,
``virtual_server`` -> ``real_server`` -> checker for the checker options, the real
server's port/``lvs_method``/tunnel/``inhibit_on_failure``/``alpha`` from its virtual
server, and keepalived's per-checker defaults (MISC_CHECK ``retry`` 0,
``misc_timeout`` = ``delay_loop``).

API: :func:`load`/:func:`loads` return the :class:`Config` and raise
:class:`ConfigError` (errors plus the warnings seen) when there is any error;
:func:`load_with_warnings`/:func:`loads_with_warnings` also return the warnings of a
usable file, for ``mailha check`` and the daemon's start-up log. Nothing here touches
the host: checks that depend on the machine are in :mod:`mailha.config.validate`.
"""

from __future__ import annotations

import re
import socket
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from mailha.config import nesting, validate
from mailha.config.errors import (
    ConfigError,
    Diagnostic,
    KeyPath,
    format_key,
)
from mailha.config.keys import (
    BGP_SPEC,
    GLOBAL_SPEC,
    METRICS_SPEC,
    SYNC_SPEC,
    TOP_KEYS,
)
from mailha.config.locate import Locator
from mailha.config.lvs_section import LvsSection
from mailha.config.model import (
    MAGLEV,
    Announce,
    BgpConfig,
    Config,
    ControlConfig,
    GlobalConfig,
    LvsSyncDaemon,
    LvsTimeouts,
    MetricsConfig,
    Protocol,
    VirtualServer,
)
from mailha.config.table import _Table
from mailha.config.values import (
    _integer,
    _string,
    describe,
)
from mailha.config.vrrp_section import VrrpSection

__all__ = ["load", "load_with_warnings", "loads", "loads_with_warnings"]

T = TypeVar("T")
Conv = Callable[[object], Any]


def load(path: Path) -> Config:
    """Read and validate one node's config file; raise :class:`ConfigError` if unusable."""
    return load_with_warnings(path)[0]


def loads(text: str, source: Path) -> Config:
    """Like :func:`load` for text already read; ``source`` names it in diagnostics."""
    return loads_with_warnings(text, source)[0]


def load_with_warnings(path: Path) -> tuple[Config, list[Diagnostic]]:
    """Like :func:`load`, also returning the warnings about a file that is usable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            [Diagnostic("error", path, None, "", f"cannot read the file: {reason}",
                        "check the path and its permissions")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [Diagnostic("error", path, line, "", "the file is not valid UTF-8",
                        "TOML files must be UTF-8; re-save the file as UTF-8")]
        ) from None
    return loads_with_warnings(text, path)


def loads_with_warnings(text: str, source: Path) -> tuple[Config, list[Diagnostic]]:
    """Like :func:`loads`, also returning the warnings about text that is usable."""
    too_deep = nesting.first_too_deep(text)
    if too_deep is not None:  # before tomllib, which would recurse (or grind) on it
        raise ConfigError([_too_deep(too_deep, source)])
    try:
        data = tomllib.loads(text)
        locator = Locator(text)
        deep = nesting.deepest_path(data)
        if deep is not None:  # shallow pieces adding up: the builder must not recurse on it
            raise ConfigError([Diagnostic(  # no value shown: printing it would recurse
                "error", source, locator.line(deep) or _last_line(text),
                format_key(deep[:3]) + "...", f"nested more than {nesting.MAX_DEPTH} levels deep",
                _DEPTH_HINT,
            )])
        builder = _Builder(source, locator)
        config = builder.config(data)
        found = builder.diagnostics + validate.check_config(config, builder.paths, locator)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_error(exc, source, text)]) from None
    except RecursionError:  # a safety net only: the depth checks above should prevent it
        raise ConfigError([_too_deep(nesting.deepest_point(text), source, text)]) from None
    if any(d.is_error for d in found):
        raise ConfigError(found)
    return config, sorted(found, key=Diagnostic.sort_key)


_DEPTH_HINT = (
    "no mailha setting nests more than 5 levels; look for a runaway or unclosed [ or {, "
    "or a key with too many dots"
)


def _too_deep(where: nesting.Depth | None, source: Path, text: str = "") -> Diagnostic:
    if where is None:
        return Diagnostic("error", source, _last_line(text), "",
                          "the document is nested too deeply to read", _DEPTH_HINT)
    if where.depth <= nesting.MAX_DEPTH:  # only from the RecursionError safety net
        message = f"nested too deeply to read (deepest point: {where.depth} levels)"
    elif where.kind == "key":
        message = f"a key with more than {nesting.MAX_DEPTH} dotted parts"
    else:
        message = f"arrays and inline tables nested more than {nesting.MAX_DEPTH} deep"
    return Diagnostic("error", source, where.line, "", message, _DEPTH_HINT, column=where.column)


def _last_line(text: str) -> int:
    """The last line with any content: where "end of document" errors are best shown."""
    return text.rstrip().count("\n") + 1


def _syntax_error(exc: Exception, source: Path, text: str) -> Diagnostic:
    message = str(exc)
    line: int | None = getattr(exc, "lineno", None)
    column: int | None = getattr(exc, "colno", None)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    if m:
        line, column = line or int(m.group(1)), column or int(m.group(2))
        message = message[: m.start()]
    m = re.search(r"\s*\(at end of document\)\s*$", message)
    if m:  # unterminated string, table or array: the last line is where it stops
        message = message[: m.start()] + " at the end of the file"
    message = getattr(exc, "msg", None) or message
    if line is None:
        line = _last_line(text)
    if looks_like_keepalived_conf(text):
        return Diagnostic(
            "error", source, line, "", "this is a keepalived.conf, not a mailha TOML file",
            f"convert it: mailha import-keepalived {source} > mailha.toml",
            column=column,
        )
    return Diagnostic(
        "error", source, line, "", f"TOML syntax: {message}",
        "see https://toml.io; strings need quotes, each key once per table",
        column=column,
    )


_KEEPALIVED_BLOCK = re.compile(
    r"^\s*(global_defs|vrrp_instance\s+\S+|vrrp_script\s+\S+|virtual_server\s+\S+.*)\s*\{",
    re.MULTILINE)


def looks_like_keepalived_conf(text: str) -> bool:
    """keepalived's block syntax (``vrrp_instance VI_1 {``), which TOML never parses."""
    return _KEEPALIVED_BLOCK.search(text) is not None


# ------------------------------------------------------------------- builder


class _Builder(VrrpSection, LvsSection):
    """The whole document: the global tables here, the sections in their modules."""

    def config(self, data: dict[str, Any]) -> Config:
        _Table(self, data, (), TOP_KEYS, "the top level")
        global_ = self.global_(data.get("global", {}))
        scripts = tuple(
            s for name, raw in self._named_tables(data, "vrrp_script")
            if (s := self.vrrp_script(name, raw, global_)) is not None
        )
        instances = tuple(
            i for name, raw in self._named_tables(data, "vrrp_instance")
            if (i := self.vrrp_instance(name, raw, global_)) is not None
        )
        groups = tuple(
            g for name, raw in self._named_tables(data, "virtual_server_group")
            if (g := self.group(name, raw)) is not None
        )
        servers: list[VirtualServer] = []
        raw_servers = data.get("virtual_server", [])
        if isinstance(raw_servers, dict):
            self.report("error", ("virtual_server",),
                        "virtual_server must be an array of tables, got a table",
                        "write each one as [[virtual_server]] (two brackets)")
            raw_servers = []
        elif not isinstance(raw_servers, list):
            self.report("error", ("virtual_server",),
                        f"virtual_server must be an array of tables, got {describe(raw_servers)}",
                        "write each one as [[virtual_server]]", value=raw_servers)
            raw_servers = []
        for index, item in enumerate(raw_servers):
            vs = self.virtual_server(index, item, global_)
            if vs is not None:
                servers.append(vs)
        if "bgp" in data and not any(vs.announce is Announce.BGP for vs in servers):
            self.report("warning", ("bgp",), 'no virtual_server has announce = "bgp": '
                        "[bgp] has no effect", 'remove [bgp], or set announce = "bgp" on the '
                        "services BGP should announce")
        global_ = self.sloppy_defaults(data.get("global", {}), global_, servers)
        return Config(
            source=self.source,
            global_=global_,
            vrrp_scripts=scripts,
            vrrp_instances=instances,
            virtual_server_groups=groups,
            virtual_servers=tuple(servers),
            metrics=self.metrics(data.get("metrics", {})),
            control=self.control(data.get("control", {})),
            bgp=self.bgp(data.get("bgp", {})),
        )

    # -------------------------------------------------------------- global

    def global_(self, raw: object) -> GlobalConfig:
        t = _Table(self, raw, ("global",), GLOBAL_SPEC.keys() | {"lvs_timeouts", "lvs_sync_daemon"},
                   "[global]")
        values = t.take(GLOBAL_SPEC)
        self.inert_false(("global",), values, "vrrp_check_unicast_src")
        values.setdefault("router_id", socket.gethostname() or "mailha")
        if t.has("lvs_timeouts"):
            tt = _Table(self, t.raw["lvs_timeouts"], ("global", "lvs_timeouts"),
                        ("tcp", "tcpfin", "udp"), "lvs_timeouts")
            timeout = _integer(1, 2_147_483, hint="seconds, e.g. tcp = 900")
            spec = dict.fromkeys(("tcp", "tcpfin", "udp"), timeout)
            values["lvs_timeouts"] = LvsTimeouts(**tt.take(spec))
        if t.has("lvs_sync_daemon"):
            path: KeyPath = ("global", "lvs_sync_daemon")
            st = _Table(self, t.raw["lvs_sync_daemon"], path, SYNC_SPEC.keys(), "lvs_sync_daemon")
            sync = st.take(SYNC_SPEC)
            if "interface" in sync:
                values["lvs_sync_daemon"] = LvsSyncDaemon(**sync)
            elif st.ok and not st.has("interface"):
                self.report("error", path, 'missing required key "interface"',
                            'name the interface the sync daemon uses: interface = "eth0"')
        return GlobalConfig(**values)

    def sloppy_defaults(
        self, raw: object, global_: GlobalConfig, servers: list[VirtualServer]
    ) -> GlobalConfig:
        """``lvs_sloppy_tcp``/``lvs_sloppy_sctp`` left unset: on exactly when a virtual
        server of that protocol uses Maglev hashing (several directors may share its
        flows; see :mod:`mailha.lvs.takeover`)."""
        written = raw if isinstance(raw, dict) else {}

        def maglev(protocol: Protocol) -> bool:
            return any(vs.lvs_sched == MAGLEV and vs.protocol is protocol for vs in servers)

        return replace(
            global_,
            lvs_sloppy_tcp=global_.lvs_sloppy_tcp if "lvs_sloppy_tcp" in written
            else maglev(Protocol.TCP),
            lvs_sloppy_sctp=global_.lvs_sloppy_sctp if "lvs_sloppy_sctp" in written
            else maglev(Protocol.SCTP),
        )

    def metrics(self, raw: object) -> MetricsConfig:
        t = _Table(self, raw, ("metrics",), METRICS_SPEC.keys(), "[metrics]")
        return MetricsConfig(**t.take(METRICS_SPEC))

    def bgp(self, raw: object) -> BgpConfig:
        """``[bgp]``; absent: the defaults (used only when a service says announce = "bgp")."""
        t = _Table(self, raw, ("bgp",), BGP_SPEC.keys(), "[bgp]")
        return BgpConfig(**t.take(BGP_SPEC))

    def control(self, raw: object) -> ControlConfig:
        t = _Table(self, raw, ("control",), ("socket",), "[control]")
        sock = t.get("socket", _string)
        if sock is not None and not sock.startswith("/"):
            self.report("error", ("control", "socket"), "must be an absolute path",
                        'e.g. socket = "/run/mailha/mailha.sock"', value=sock)
            sock = None
        return ControlConfig(socket=Path(sock)) if sock else ControlConfig()
