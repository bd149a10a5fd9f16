"""TOML text -> :class:`~mailha.config.model.Config`, or every reason why not.

The loader is one lenient pass over the parsed document: a key it cannot use becomes a
:class:`~mailha.config.errors.Diagnostic` and the loader carries on with the default, so
a single run reports every problem in the file rather than the first. Values are checked
where they are read (types, ranges, keepalived's line syntaxes); rules that relate
several keys or tables live in :mod:`mailha.config.validate` and run on the draft.

Inheritance is resolved here, once, so consumers never re-implement keepalived's
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

import difflib
import ipaddress
import json
import math
import re
import socket
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from mailha.config import nesting, validate
from mailha.config.errors import (
    ConfigError,
    Diagnostic,
    KeyPath,
    Severity,
    format_key,
    toml_repr,
)
from mailha.config.inert import INERT, NO_EFFECT
from mailha.config.locate import Locator
from mailha.config.model import (
    POSTFIX_MASTER_PIDFILE,
    SCHEDULER_FLAGS,
    SCHEDULERS,
    Authentication,
    Checker,
    CheckerCommon,
    Config,
    ControlConfig,
    GlobalConfig,
    GroupMember,
    InitialState,
    LvsMethod,
    LvsSyncDaemon,
    LvsTimeouts,
    MetricsConfig,
    MiscCheck,
    Protocol,
    RealServer,
    ScriptCommand,
    SmtpCheck,
    SorryServer,
    TcpCheck,
    TrackedInterface,
    TrackedScript,
    TunnelOptions,
    TunnelType,
    UnicastPeer,
    VirtualAddress,
    VirtualServer,
    VirtualServerGroup,
    VrrpInstance,
    VrrpScript,
)
from mailha.ip import IPAddress
from mailha.procs import ScriptError, split_command

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


# ------------------------------------------------------------------- value helpers


class _Invalid(Exception):
    """A value that cannot be used; the message says what was expected."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def describe(value: object) -> str:
    """How to name the TOML type of ``value`` in a message: 'a string', 'an array'..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date/time"
    return type(value).__name__


def _expected(what: str, value: object, hint: str = "") -> _Invalid:
    return _Invalid(f"expected {what}, got {describe(value)}", hint)


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value, 'quote it: key = "text"')
    if not value.strip():
        raise _Invalid("must not be empty")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        hint = "write true or false without quotes"
        if isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "true", "false"):
            hint = f"TOML booleans are true/false without quotes, not {json.dumps(value)}"
        raise _expected("a boolean", value, hint)
    return value


def _integer(lo: int, hi: int, hint: str = "", note: str = "") -> Conv:
    """An integer in lo..hi; ``hint`` is the fix for a value out of range."""
    span = f"{lo} or {hi}" if hi == lo + 1 else f"{lo}..{hi}"

    def conv(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            fix = "write a whole number without quotes"
            if isinstance(value, str) and "reverse" in value.split():
                fix = "weight and reverse are separate keys: weight = 100 and reverse = true"
            raise _expected("an integer", value, fix)
        if not lo <= value <= hi:
            raise _Invalid(f"must be {span}{note}", hint or f"use a value in {span}")
        return value

    return conv


def _timer(lo: float, hi: float = math.inf, *, lo_open: bool = False, hint: str = "") -> Conv:
    """Seconds as an integer or a float (keepalived's <TIMER>), returned as float."""

    def conv(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _expected("a number of seconds", value, hint or "write e.g. 2 or 0.5, no quotes")
        seconds = float(value)
        if not math.isfinite(seconds):
            raise _Invalid("must be a finite number of seconds", hint)
        if (seconds <= lo if lo_open else seconds < lo) or seconds > hi:
            low = f"greater than {lo:g}" if lo_open else f"at least {lo:g}"
            rng = low if hi == math.inf else f"{low} and at most {hi:g}"
            raise _Invalid(f"must be {rng} seconds", hint or f"use a value {rng}")
        return seconds

    return conv


_port = _integer(1, 65535)
_positive_timer = _timer(0, lo_open=True)
_nonneg_timer = _timer(0)


def _choice(options: Mapping[str, T], what: str) -> Callable[[object], T]:
    """A string from a fixed set, matched case-insensitively (keepalived is not picky)."""
    folded = {k.lower(): v for k, v in options.items()}

    def conv(value: object) -> T:
        names = ", ".join(options)
        if not isinstance(value, str):
            example = next(iter(options))
            raise _expected(f"one of {names}", value, f'write it as a string, e.g. "{example}"')
        try:
            return folded[value.lower()]
        except KeyError:
            close = difflib.get_close_matches(value.lower(), folded, n=1, cutoff=0.6)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            raise _Invalid(f"not a valid {what}", f"{hint}use one of {names}") from None

    return conv


def _ip(value: object) -> IPAddress:
    if not isinstance(value, str):
        raise _expected("an IP address string", value, 'quote it: "10.12.49.37"')
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        hint = 'write just the address, e.g. "10.12.49.37"'
        if "/" in value:
            hint = "a prefix length is not allowed here; " + hint
        elif ":" in value and "." in value:
            hint = "give the port as its own key (port = 25); " + hint
        raise _Invalid("not an IP address", hint) from None


def _multicast(version: int) -> Conv:
    def conv(value: object) -> IPAddress:
        addr = _ip(value)
        if addr.version != version or not addr.is_multicast:
            raise _Invalid(f"must be an IPv{version} multicast address")
        return addr

    return conv


def _str_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _expected("an array of strings", value, 'write ["a", "b"]')
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _Invalid(f"every element must be a non-empty string, got {describe(item)}")
        out.append(item)
    return tuple(out)


def _argv(value: object) -> tuple[str, ...]:
    """A command, as keepalived splits it (:func:`mailha.procs.split_command`), or argv."""
    if isinstance(value, str):
        try:
            argv = split_command(value)
        except ScriptError as exc:
            raise _Invalid(f"cannot split the command line: {exc.reason}",
                           "balance the quotes; end no word with a lone backslash") from None
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        argv = [str(v) for v in value]
    else:
        raise _expected("a command (string or array of strings)", value,
                        'write "/path/to/script arg" or ["/path/to/script", "arg"]')
    if not argv or not argv[0].strip():
        raise _Invalid("the command is empty", "give the path of the program to run")
    return tuple(argv)


# ------------------------------------------------------------------- unknown keys

#: keepalived spellings (old names, block syntax, flags) and what to write instead.
KEEPALIVED_ALIASES: Mapping[str, str] = {
    "lb_algo": 'keepalived\'s old name for lvs_sched: lvs_sched = "rr"',
    "lb_kind": 'keepalived\'s old name for lvs_method: lvs_method = "DR"',
    "no_accept": "write accept = false",
    "preempt": "preemption is the default; remove it (nopreempt = true turns it off)",
    "no_preempt": "write nopreempt = true",
    "nat_mask": "IPVS does not use it; remove it",
    "persistence": "write persistence_timeout = <seconds>",
    "old_unicast_checksum": "write v3_checksum_as_v2 = true",
    "sorry_server_inhibit": "write sorry_server = { ip = ..., inhibit = true }",
    "sorry_server_lvs_method": 'write sorry_server = { ip = ..., lvs_method = "NAT" }',
    "global_defs": "keepalived's global_defs is the [global] table here",
    "lvs_sync_daemon_interface": 'write lvs_sync_daemon = { interface = "eth0" }',
    "native_ipv6": "remove it: the family follows the virtual addresses",
    "auth_type": 'write authentication = { auth_type = "PASS", auth_pass = "..." }',
    "auth_pass": 'write authentication = { auth_type = "PASS", auth_pass = "..." }',
    "weight_reverse": "write reverse = true",
    "vrid": "write virtual_router_id = <1..255>",
    "real_servers": "write [[virtual_server.real_server]] tables",
    "virtual_ipaddresses": "write virtual_ipaddress = [...]",
    "script_security": "write enable_script_security = true",
    **{flag: f'scheduler flags go in a list: sched_flags = ["{flag}"]' for flag in SCHEDULER_FLAGS},
}

#: keepalived features mailha deliberately does not implement.
UNSUPPORTED: frozenset[str] = frozenset({
    "use_vmac", "use_vmac_addr", "vmac_xmit_base", "use_ipvlan", "virtual_routes",
    "virtual_rules", "track_file", "track_process", "track_bfd", "vrrp_sync_group",
    "HTTP_GET", "SSL_GET", "DNS_CHECK", "PING_CHECK", "UDP_CHECK", "FILE_CHECK", "BFD_CHECK",
    "persistence_engine", "virtualhost", "snmp_name", "promote_secondaries",
    "unicast_fault_no_peer", "track_src_ip", "vrf", "debug", "kernel_rx_buf_size",
    "linkbeat_use_polling", "notify_master_rx_lower_pri", "notify_priority_changes",
    "garp_extra_if", "static_ipaddress", "static_routes", "static_rules", "vrrp_track_process",
    "vrrp_track_file", "include", "linkbeat_interfaces", "bfd_instance", "net_namespace",
})


# ------------------------------------------------------------------- builder


class _Table:
    """One TOML table being read: reports unknown keys, converts the known ones."""

    def __init__(
        self, builder: _Builder, raw: object, path: KeyPath, known: Collection[str], what: str
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


class _Builder:
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
        return Config(
            source=self.source,
            global_=global_,
            vrrp_scripts=scripts,
            vrrp_instances=instances,
            virtual_server_groups=groups,
            virtual_servers=tuple(servers),
            metrics=self.metrics(data.get("metrics", {})),
            control=self.control(data.get("control", {})),
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

    def inert_false(self, path: KeyPath, values: Mapping[str, Any], key: str) -> None:
        """Warn when ``key`` is written as false, a value mailha cannot honour."""
        if values.get(key) is False:
            self.report("warning", (*path, key), f"{key} = false: {NO_EFFECT}",
                        INERT[f"{path[0]}.{key}"], value=False)

    def metrics(self, raw: object) -> MetricsConfig:
        t = _Table(self, raw, ("metrics",), METRICS_SPEC.keys(), "[metrics]")
        return MetricsConfig(**t.take(METRICS_SPEC))

    def control(self, raw: object) -> ControlConfig:
        t = _Table(self, raw, ("control",), ("socket",), "[control]")
        sock = t.get("socket", _string)
        if sock is not None and not sock.startswith("/"):
            self.report("error", ("control", "socket"), "must be an absolute path",
                        'e.g. socket = "/run/mailha/mailha.sock"', value=sock)
            sock = None
        return ControlConfig(socket=Path(sock)) if sock else ControlConfig()

    # -------------------------------------------------------------- scripts

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

    def vrrp_script(self, name: str, raw: object, global_: GlobalConfig) -> VrrpScript | None:
        path: KeyPath = ("vrrp_script", name)
        t = _Table(self, raw, path, SCRIPT_SPEC.keys() | {"script", "user", "group", "reverse"},
                   f"vrrp_script.{name}")
        values = t.take(SCRIPT_SPEC)
        if t.ok and not t.has("script"):
            self.report("error", path, 'missing required key "script"',
                        'give the command to run: script = "/path/to/check --arg"')
        command = self.script_command(t, "script", global_, user_keys=True)
        reverse = t.get("reverse", _bool)
        values.setdefault("timeout", values.get("interval", 1.0))  # keepalived: the interval
        if command is None:
            return None
        return self.record(
            VrrpScript(name=name, script=command, weight_reverse=bool(reverse), **values), path
        )

    # -------------------------------------------------------------- VRRP instance

    def vrrp_instance(self, name: str, raw: object, global_: GlobalConfig) -> VrrpInstance | None:
        path: KeyPath = ("vrrp_instance", name)
        t = _Table(self, raw, path, INSTANCE_KEYS, f"vrrp_instance.{name}")
        values = t.take(INSTANCE_SPEC)
        interface = t.require("interface", _string, 'name the interface: interface = "eth0"')
        vrid = t.require("virtual_router_id", INSTANCE_VRID,
                         "use the same number 1..255 on every node of this virtual router")
        vips = self.addresses(t, "virtual_ipaddress")
        excluded = self.addresses(t, "virtual_ipaddress_excluded")
        v6 = bool(vips) and vips[0].address.version == 6  # the instance's family
        explicit_version = t.get("version", INSTANCE_VERSION)
        if explicit_version is not None:
            version = explicit_version
        else:  # keepalived: IPv6 instances always run version 3
            version = 3 if v6 else global_.vrrp_version
        if t.has("advert_int"):
            advert = t.get("advert_int", _timer(0, lo_open=True, hint="e.g. advert_int = 1"))
            if advert is not None:
                advert = self.check_advert_int(path, advert, version)
            if advert is not None:
                values["advert_int"] = advert
        peers = self.peers(t)
        tracked_scripts = self.tracked(t, "track_script", TrackedScript)
        tracked_ifaces = self.tracked(t, "track_interface", TrackedInterface)
        auth = self.authentication(t, version)
        for key in NOTIFY_KEYS:
            cmd = self.script_command(t, key, global_)
            if cmd is not None:
                values[key] = cmd
        # Per-instance values that default to the global ones.
        for key, global_key in GARP_INHERITANCE.items():
            if key not in values:
                values[key] = getattr(global_, global_key)
        if "garp_lower_prio_delay" not in values or values["garp_lower_prio_delay"] is None:
            values["garp_lower_prio_delay"] = values["garp_master_delay"]
        if "garp_lower_prio_repeat" not in values or values["garp_lower_prio_repeat"] is None:
            values["garp_lower_prio_repeat"] = values["garp_master_repeat"]
        self.inert_false(path, values, "check_unicast_src")
        values.setdefault("strict_mode", global_.vrrp_strict)
        values.setdefault("skip_check_adv_addr", global_.vrrp_skip_check_adv_addr)
        values.setdefault("check_unicast_src", global_.vrrp_check_unicast_src
                          or any(p.min_ttl is not None or p.max_ttl is not None for p in peers))
        values.setdefault("smtp_alert", global_.smtp_alert)
        if values["strict_mode"]:
            # keepalived: strict mode defaults to no accept mode; VRRPv2 (RFC 3768) has
            # no accept mode at all, so an explicit one is reset there.
            if values.get("accept") is True and version == 2:
                self.report("warning", (*path, "accept"),
                            "strict mode (vrrp_strict/strict_mode) with VRRPv2 does not allow "
                            "accept mode (RFC 3768 has none): no_accept applies",
                            "drop accept = true, use version = 3, or turn strict mode off",
                            value=True)
                values["accept"] = False
            values.setdefault("accept", False)
            # keepalived: strict mode answers no lower-priority advert, and never
            # sends one when yielding to a higher priority.
            values.setdefault("lower_prio_no_advert", True)
            if values.get("higher_prio_send_advert"):
                self.report("warning", (*path, "higher_prio_send_advert"),
                            "strict mode (vrrp_strict/strict_mode) does not allow "
                            "higher_prio_send_advert: not sent",
                            "drop higher_prio_send_advert, or turn strict mode off", value=True)
                values["higher_prio_send_advert"] = False
        state = values.get("state", InitialState.BACKUP)
        if state is InitialState.MASTER and values.get("nopreempt"):
            self.report("warning", (*path, "nopreempt"),
                        'nopreempt only works when the initial state is not MASTER',
                        'set state = "BACKUP" on every node to use nopreempt', value=True)
        if state is InitialState.MASTER and values.get("preempt_delay"):
            self.report("warning", (*path, "preempt_delay"),
                        "preempt_delay only works when the initial state is not MASTER",
                        'set state = "BACKUP" to use preempt_delay', value=values["preempt_delay"])
        if not t.ok:
            return None
        # Without a usable interface or VRID the instance is still built, with
        # placeholders, so the cross-field checks see its VIPs and tracked scripts; the
        # error already reported guarantees this draft is never returned.
        instance = VrrpInstance(
            name=name, interface=interface or "", virtual_router_id=vrid or 0, version=version,
            virtual_ipaddress=vips, virtual_ipaddress_excluded=excluded, unicast_peer=peers,
            track_script=tracked_scripts, track_interface=tracked_ifaces,
            authentication=auth, **values,
        )
        return self.record(instance, path)

    def check_advert_int(self, path: KeyPath, advert: float, version: int) -> float | None:
        key = (*path, "advert_int")
        if version == 2:
            if advert != int(advert) or not 1 <= advert <= 255:
                self.report("error", key,
                            "VRRP version 2 carries the interval in whole seconds, 1..255",
                            "use a whole number of seconds, or version = 3 for sub-second adverts",
                            value=advert)
                return None
            return advert
        centis = advert * 100
        if abs(centis - round(centis)) > 1e-6 or not 1 <= round(centis) <= 4095:
            self.report("error", key,
                        "VRRP version 3 carries the interval in centiseconds: 0.01..40.95 s in "
                        "steps of 0.01 s",
                        "round it to a multiple of 0.01 within 0.01..40.95", value=advert)
            return None
        return round(centis) / 100

    def addresses(self, t: _Table, key: str) -> tuple[VirtualAddress, ...]:
        if not t.has(key):
            return ()
        raw = t.raw[key]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.report("error", (*t.path, key),
                        f"expected an array of addresses, got {describe(raw)}",
                        'write ["10.12.49.37/24 dev eth0"]', value=raw)
            return ()
        out = []
        for i, item in enumerate(raw):
            path = (*t.path, key, i)
            try:
                vip = _vip_line(item) if isinstance(item, str) else self.vip_table(path, item)
            except _Invalid as exc:
                self.report("error", path, exc.message, exc.hint, value=item)
                continue
            if vip is not None:
                out.append(self.record(vip, path))
        return tuple(out)

    def vip_table(self, path: KeyPath, raw: object) -> VirtualAddress | None:
        if not isinstance(raw, dict):
            raise _expected("an address string or table", raw,
                            'write "10.12.49.37/24" or { address = "10.12.49.37/24" }')
        t = _Table(self, raw, path, ("address", "dev", "label", "scope", "brd", "no_track"),
                   "a virtual address")
        address = t.require("address", _interface, 'give the address: address = "10.12.49.37/24"')
        values = t.take({"dev": _string, "label": _label, "scope": _scope, "brd": _ip,
                         "no_track": _bool})
        if address is None:
            return None
        brd = values.get("brd")
        if brd is not None and brd.version != address.version:
            self.report("error", (*path, "brd"), "the broadcast address is of another family",
                        "use an address of the same family as the VIP, or drop brd",
                        value=str(brd))
            values.pop("brd")
        return VirtualAddress(address=address, **values)

    def peers(self, t: _Table) -> tuple[UnicastPeer, ...]:
        if not t.has("unicast_peer"):
            return ()
        raw = t.raw["unicast_peer"]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.report("error", (*t.path, "unicast_peer"),
                        f"expected an array of addresses, got {describe(raw)}",
                        'write unicast_peer = ["10.12.49.36"]', value=raw)
            return ()
        out = []
        for i, item in enumerate(raw):
            path = (*t.path, "unicast_peer", i)
            if isinstance(item, dict):
                pt = _Table(self, item, path, ("address", "min_ttl", "max_ttl"), "a unicast peer")
                addr = pt.require("address", _ip, 'give the peer: address = "10.12.49.36"')
                ttl = pt.take({"min_ttl": TTL, "max_ttl": TTL})
                if addr is None:
                    continue
                if ttl.get("min_ttl", 0) > ttl.get("max_ttl", 255):
                    self.report("error", (*path, "min_ttl"), "min_ttl is above max_ttl",
                                "min_ttl must not exceed max_ttl", value=ttl["min_ttl"])
                peer = UnicastPeer(addr, **ttl)
            else:
                try:
                    peer = UnicastPeer(_ip(item))
                except _Invalid as exc:
                    self.report("error", path, exc.message, exc.hint, value=item)
                    continue
            out.append(self.record(peer, path))
        return tuple(out)

    def tracked(self, t: _Table, key: str, kind: Callable[..., T]) -> tuple[T, ...]:
        if not t.has(key):
            return ()
        raw = t.raw[key]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            self.report("error", (*t.path, key), f"expected an array of names, got {describe(raw)}",
                        f'write {key} = ["name"]', value=raw)
            return ()
        what = "script" if key == "track_script" else "interface"
        out = []
        for i, item in enumerate(raw):
            path = (*t.path, key, i)
            if isinstance(item, str):
                if len(item.split()) != 1:
                    first = item.split()[0] if item.split() else "NAME"
                    self.report("error", path, f"expected a {what} name",
                                f'for a weight write {{ name = "{first}", weight = 50, '
                                "reverse = false }", value=item)
                    continue
                out.append(self.record(kind(name=item), path))
                continue
            et = _Table(self, item, path, ("name", "weight", "reverse"), f"a {key} entry")
            if not et.ok:
                continue
            name = et.require("name", _string, f'give the {what}: name = "..."')
            extra = et.take({"weight": WEIGHT, "reverse": _bool})
            if name is not None:
                out.append(self.record(kind(name=name, **extra), path))
        return tuple(out)

    def authentication(self, t: _Table, version: int) -> Authentication | None:
        if not t.has("authentication"):
            return None
        path = (*t.path, "authentication")
        at = _Table(self, t.raw["authentication"], path, ("auth_type", "auth_pass"),
                    "authentication")
        kind = at.require("auth_type", _choice({"PASS": "PASS", "AH": "AH"}, "auth_type"),
                          'auth_type = "PASS"')
        password = at.require("auth_pass", _string, 'auth_pass = "secret" (same on every node)')
        if kind == "AH":
            self.report("error", (*path, "auth_type"), "IPsec AH authentication is not supported",
                        'use auth_type = "PASS", or no authentication', value="AH")
            return None
        if password is not None and len(password) > 8:
            self.report("warning", (*path, "auth_pass"),
                        "only the first 8 characters are used (as keepalived does)",
                        "shorten it to 8 characters so the config says what is sent")
        if version == 3:
            self.report("warning", path, "VRRP version 3 has no authentication; it is ignored",
                        "remove authentication, or use version = 2")
            return None
        if kind is None or password is None:
            return None
        return Authentication(kind, password[:8])

    # -------------------------------------------------------------- LVS

    def group(self, name: str, raw: object) -> VirtualServerGroup | None:
        path: KeyPath = ("virtual_server_group", name)
        t = _Table(self, raw, path, ("members",), f"virtual_server_group.{name}")
        members = t.require("members", _str_list, 'members = ["10.12.49.37 25", "fwmark 1"]')
        if members is None:
            return None
        out = []
        for i, line in enumerate(members):
            try:
                out.append(_group_member(line))
            except _Invalid as exc:
                self.report("error", (*path, "members", i), exc.message, exc.hint, value=line)
        if not out:
            return None
        return self.record(VirtualServerGroup(name, tuple(out)), path)

    def virtual_server(
        self, index: int, raw: object, global_: GlobalConfig
    ) -> VirtualServer | None:
        path: KeyPath = ("virtual_server", index)
        t = _Table(self, raw, path, VS_KEYS, f"virtual_server[{index}]")
        if not t.ok:
            return None
        values = t.take(VS_SPEC)
        inherited = t.take(CHECKER_DEFAULTS_SPEC)
        kinds = [k for k in ("ip", "fwmark", "group") if k in t.raw]
        if len(kinds) != 1:
            what = "none" if not kinds else " and ".join(kinds)
            self.report("error", path,
                        f"a virtual_server needs exactly one of ip, fwmark or group; it has {what}",
                        'e.g. ip = "10.12.49.37" with port = 25, or fwmark = 1, or group = "mail"')
        if "port" in values and "ip" not in t.raw:
            self.report("error", (*path, "port"), "port only goes with ip",
                        "remove port: fwmark and group services take ports from the mark/group",
                        value=values["port"])
            values.pop("port")
        if "ip" in values and "port" not in t.raw and "persistence_timeout" not in values:
            self.report("error", path, 'missing "port" (only a persistent service may omit it)',
                        "add port = 25, or set persistence_timeout for an all-ports service")
        method = values.get("lvs_method", LvsMethod.NAT)
        values["tunnel"] = self.tunnel(t, method)
        flags = values.get("sched_flags", frozenset())
        sched = values.get("lvs_sched", "wlc")
        for flag in sorted(flags):
            family = flag.split("-")[0]
            if family in ("sh", "mh") and sched != family:
                self.report("warning", (*path, "sched_flags"),
                            f'"{flag}" only affects the {family} scheduler, not {sched}',
                            f'remove it, or use lvs_sched = "{family}"', value=sorted(flags))
        if values.get("ops") and values.get("protocol", Protocol.TCP) is not Protocol.UDP:
            self.report("error", (*path, "ops"), "one-packet scheduling only works for UDP",
                        "remove ops, or set protocol = \"UDP\"", value=True)
            values.pop("ops")
        if values.get("hysteresis", 0) >= values.get("quorum", 1) and "hysteresis" in values:
            self.report("error", (*path, "hysteresis"), "hysteresis must be below quorum",
                        "use a hysteresis smaller than quorum", value=values["hysteresis"])
        for key in ("quorum_up", "quorum_down"):
            cmd = self.script_command(t, key, global_)
            if cmd is not None:
                values[key] = cmd
        values["sorry_server"] = self.sorry_server(t)
        rs_raw = t.raw.get("real_server", [])
        if isinstance(rs_raw, dict):
            rs_raw = [rs_raw]
        if not isinstance(rs_raw, list):
            self.report("error", (*path, "real_server"),
                        f"expected an array of tables, got {describe(rs_raw)}",
                        "write [[virtual_server.real_server]] tables", value=rs_raw)
            rs_raw = []
        reals = []
        for j, item in enumerate(rs_raw):
            rs = self.real_server((*path, "real_server", j), item, values, inherited, global_)
            if rs is not None:
                reals.append(rs)
        vs = VirtualServer(real_servers=tuple(reals), **values)
        return self.record(vs, path)

    def tunnel(self, t: _Table, method: LvsMethod) -> TunnelOptions | None:
        if not t.has("tunnel"):
            return None
        path = (*t.path, "tunnel")
        if method is not LvsMethod.TUN:
            self.report("error", path, "tunnel options need lvs_method = \"TUN\"",
                        'set lvs_method = "TUN", or remove tunnel')
            return None
        tt = _Table(self, t.raw["tunnel"], path, ("type", "port", "checksum"), "tunnel")
        values = tt.take({"type": TUNNEL_TYPE, "port": _port, "checksum": CHECKSUM})
        kind = values.get("type", TunnelType.IPIP)
        if kind is TunnelType.GUE and "port" not in values and tt.ok and not tt.has("port"):
            self.report("error", path, "a GUE tunnel needs a port", 'add port = 6080')
        if "port" in values and kind is not TunnelType.GUE:
            self.report("error", (*path, "port"), "only GUE tunnels take a port",
                        "remove port, or use type = \"gue\"", value=values["port"])
            values.pop("port")
        if "checksum" in values and kind is TunnelType.IPIP:
            self.report("error", (*path, "checksum"), "ipip tunnels have no checksum option",
                        'use type = "gue" or "gre", or remove checksum', value=values["checksum"])
            values.pop("checksum")
        if values.get("checksum") == "remcsum" and kind is TunnelType.GRE:
            self.report("error", (*path, "checksum"), "GRE tunnels do not support remcsum",
                        'use "csum" or "nocsum"', value="remcsum")
            values.pop("checksum")
        return TunnelOptions(**values)

    def sorry_server(self, t: _Table) -> SorryServer | None:
        if not t.has("sorry_server"):
            return None
        path = (*t.path, "sorry_server")
        st = _Table(self, t.raw["sorry_server"], path, ("ip", "port", "lvs_method", "inhibit"),
                    "sorry_server")
        ip = st.require("ip", _ip, 'sorry_server = { ip = "10.12.49.50", port = 25 }')
        values = st.take({"port": _port, "lvs_method": LVS_METHOD, "inhibit": _bool})
        if ip is None:
            return None
        return self.record(SorryServer(ip, **values), path)

    def real_server(
        self, path: KeyPath, raw: object, vs: Mapping[str, Any], inherited: Mapping[str, Any],
        global_: GlobalConfig,
    ) -> RealServer | None:
        t = _Table(self, raw, path, RS_KEYS, format_key(path))
        if not t.ok:
            return None
        ip = t.require("ip", _ip, 'ip = "10.12.49.35"')
        values = t.take(RS_SPEC)
        own = t.take({**CHECKER_DEFAULTS_SPEC, "delay_loop": _positive_timer})
        method = values.setdefault("lvs_method", vs.get("lvs_method", LvsMethod.NAT))
        if t.has("tunnel"):
            values["tunnel"] = self.tunnel(t, method)
        elif method is LvsMethod.TUN:
            values["tunnel"] = vs.get("tunnel") or TunnelOptions()
        values.setdefault("port", vs.get("port"))
        values.setdefault("inhibit_on_failure", vs.get("inhibit_on_failure", False))
        values.setdefault("alpha", vs.get("alpha", False))
        upper, lower = values.get("uthreshold", 0), values.get("lthreshold", 0)
        if upper and lower > upper:
            self.report("error", (*path, "lthreshold"), "lthreshold is above uthreshold",
                        "lthreshold must not exceed uthreshold (0 means no limit)", value=lower)
        for key in ("notify_up", "notify_down"):
            cmd = self.script_command(t, key, global_)
            if cmd is not None:
                values[key] = cmd
        # The chain of defaults for checker options: real_server, then virtual_server.
        defaults = {**inherited, **own}
        defaults.setdefault("delay_loop", vs.get("delay_loop", 60.0))
        defaults.setdefault("alpha", values["alpha"])
        defaults.setdefault("log_all_failures", global_.checker_log_all_failures)
        checkers: list[Checker] = []
        for kind in [k for k in t.raw if k in CHECKER_KINDS]:
            entries = t.raw[kind]
            if isinstance(entries, dict):
                entries = [entries]
            if not isinstance(entries, list):
                self.report("error", (*path, kind), f"expected a table, got {describe(entries)}",
                            f"write [[virtual_server.real_server.{kind}]]", value=entries)
                continue
            for k, entry in enumerate(entries):
                checker = self.checker(kind, (*path, kind, k), entry, defaults, global_)
                if checker is not None:
                    checkers.append(self.record(checker, (*path, kind, k)))
        if ip is None:
            return None
        return self.record(RealServer(ip=ip, checkers=tuple(checkers), **values), path)

    def checker(
        self, kind: str, path: KeyPath, raw: object, defaults: Mapping[str, Any],
        global_: GlobalConfig,
    ) -> Checker | None:
        misc = kind == "MISC_CHECK"
        known = (CHECKER_SPEC.keys() - CONNECTION_KEYS if misc else CHECKER_SPEC.keys()) | (
            MISC_KEYS if misc else {"helo_name"} if kind == "SMTP_CHECK" else set()
        )
        t = _Table(self, raw, path, known, kind)
        if not t.ok:
            return None
        spec = {k: v for k, v in CHECKER_SPEC.items() if k in known}
        values = {**defaults, **t.take(spec)}
        if misc:
            values.setdefault("retry", 0)
            if not t.has("misc_path"):
                self.report("error", path, 'a MISC_CHECK needs "misc_path"',
                            'misc_path = "/usr/share/mailha/checks/postfix-queue-weight"')
                return None
            command = self.script_command(t, "misc_path", global_, user_keys=True)
            extra = t.take({"misc_timeout": _positive_timer, "misc_dynamic": _bool})
            extra.setdefault("misc_timeout", values.get("delay_loop", 60.0))
            if command is None:
                return None
            return MiscCheck(misc_path=command, common=CheckerCommon(**values), **extra)
        common = CheckerCommon(**values)
        if kind == "SMTP_CHECK":
            helo = t.get("helo_name", _string)
            return SmtpCheck(common, helo) if helo else SmtpCheck(common)
        return TcpCheck(common)


# ------------------------------------------------------------------- line syntaxes

_SCOPES = ("global", "site", "link", "host", "nowhere")


def _interface(value: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if not isinstance(value, str):
        raise _expected("an address string", value, 'write "10.12.49.37/24"')
    try:
        return ipaddress.ip_interface(value.strip())
    except ValueError:
        raise _Invalid("not an IP address with optional /prefix",
                       'write e.g. "10.12.49.37/24" or "2001:db8::25/64"') from None


def _label(value: object) -> str:
    label = _string(value)
    if len(label) > 15 or any(c.isspace() for c in label):
        raise _Invalid("a label is at most 15 characters without spaces", 'e.g. "eth0:mail"')
    return label


def _scope(value: object) -> str:
    scope = _string(value)
    if scope not in _SCOPES and not scope.isdigit():
        raise _Invalid("not a valid scope", f"use one of {', '.join(_SCOPES)}")
    return scope


_VIP_OPTIONS = {"dev": _string, "label": _label, "scope": _scope, "brd": _ip}


def _vip_line(line: str) -> VirtualAddress:
    """keepalived's ``IP[/prefix] [brd IP] [dev X] [label L] [scope S] [no_track]``."""
    words = line.split()
    if not words:
        raise _Invalid("empty address", 'write "10.12.49.37/24 dev eth0"')
    address = _interface(words[0])
    options: dict[str, Any] = {}
    rest = iter(words[1:])
    for word in rest:
        if word == "no_track":
            options["no_track"] = True
            continue
        if word not in _VIP_OPTIONS:
            raise _Invalid(f'unsupported option "{word}"',
                           "mailha understands brd, dev, label, scope and no_track")
        arg = next(rest, None)
        if arg is None:
            raise _Invalid(f'"{word}" needs a value', f'write "{words[0]} {word} VALUE"')
        options[word] = _VIP_OPTIONS[word](arg)
    brd = options.get("brd")
    if brd is not None and brd.version != address.version:
        raise _Invalid("the broadcast address is of another family", "drop brd or fix it")
    return VirtualAddress(address=address, **options)


def _group_member(line: str) -> GroupMember:
    """``IP [PORT]``, ``IP-RANGE [PORT]``, ``A.B.C.D/NN [PORT]`` or ``fwmark N [inet|inet6]``."""
    words = line.split()
    hint = 'write "10.12.49.37 25", "10.12.49.40-45 25" or "fwmark 1"'
    if not words or len(words) > 3:
        raise _Invalid("not a group member", hint)
    if words[0] == "fwmark":
        if len(words) < 2 or not words[1].isdigit() or not 1 <= int(words[1]) <= 0xFFFFFFFF:
            raise _Invalid("fwmark needs a mark 1..4294967295", hint)
        family = None
        if len(words) == 3:
            if words[2] not in ("inet", "inet6"):
                raise _Invalid(f'unknown family "{words[2]}"', 'use "inet" or "inet6"')
            family = 6 if words[2] == "inet6" else 4
        return GroupMember(fwmark=int(words[1]), family=family)
    if len(words) > 2:
        raise _Invalid("too many words for an address member", hint)
    port = None
    if len(words) == 2:
        if not words[1].isdigit() or not 1 <= int(words[1]) <= 65535:
            raise _Invalid("the port must be 1..65535", hint)
        port = int(words[1])
    first, last = _address_range(words[0], hint)
    return GroupMember(first=first, last=last, port=port)


def _address_range(text: str, hint: str) -> tuple[IPAddress, IPAddress]:
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            return net[0], net[-1]
        if "-" not in text:
            addr = ipaddress.ip_address(text)
            return addr, addr
        start, end = text.split("-", 1)
        first = ipaddress.ip_address(start)
        if first.version == 4 and "." in end:
            last: IPAddress = ipaddress.ip_address(end)
        elif first.version == 6 and ":" in end:
            last = ipaddress.ip_address(end)
        elif first.version == 4:
            octets = start.split(".")
            last = ipaddress.ip_address(".".join([*octets[:3], end]))
        else:
            last = ipaddress.ip_address((int(first) & ~0xFFFF) | int(end, 16))
    except ValueError:
        raise _Invalid("not an address, range or network", hint) from None
    if last.version != first.version or int(last) < int(first):
        raise _Invalid("the range ends before it starts", hint)
    return first, last


# ------------------------------------------------------------------- specs


def _netmask(value: object) -> IPAddress:
    addr = _ip(value)
    bits = int(addr)
    width = addr.max_prefixlen
    inverted = ~bits & ((1 << width) - 1)
    if inverted & (inverted + 1):
        raise _Invalid("not a netmask (the one bits must be contiguous)", 'e.g. "255.255.255.0"')
    return addr


def _family(value: object) -> int:
    return int(_choice({"inet": 4, "inet6": 6}, "ip_family")(value))


def _sched(value: object) -> str:
    return str(_choice({s: s for s in sorted(SCHEDULERS)}, "IPVS scheduler")(value))


def _flags(value: object) -> frozenset[str]:
    flags = _str_list(value)
    for flag in flags:
        if flag not in SCHEDULER_FLAGS:
            close = difflib.get_close_matches(flag, list(SCHEDULER_FLAGS), n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            raise _Invalid(f'"{flag}" is not a scheduler flag',
                           f"{hint}use {', '.join(sorted(SCHEDULER_FLAGS))}")
    return frozenset(flags)


INSTANCE_VRID = _integer(1, 255, note=" (the VRRP packet has one octet for it)")
INSTANCE_VERSION = _integer(2, 3, hint="version = 2 (RFC 3768) or 3 (RFC 5798)")
WEIGHT = _integer(-253, 253, hint="weights are -253..253; 0 means FAULT on failure")
TTL = _integer(0, 255)
LVS_METHOD = _choice({m.value: m for m in LvsMethod}, "forwarding method")
TUNNEL_TYPE = _choice({t.value: t for t in TunnelType}, "tunnel type")
CHECKSUM = _choice({c: c for c in ("nocsum", "csum", "remcsum")}, "tunnel checksum")

TOP_KEYS = frozenset({"global", "metrics", "control", "vrrp_script", "vrrp_instance",
                      "virtual_server_group", "virtual_server"})

GLOBAL_SPEC: dict[str, Conv] = {
    "router_id": _string,
    "vrrp_version": _integer(2, 3, hint="vrrp_version = 2 (RFC 3768) or 3 (RFC 5798)"),
    "script_user": _string,
    "script_group": _string,
    "enable_script_security": _bool,
    "notification_email": _str_list,
    "notification_email_from": _string,
    "smtp_server": _string,
    "smtp_server_port": _port,
    "smtp_helo_name": _string,
    "smtp_connect_timeout": _positive_timer,
    "smtp_alert": _bool,
    "vrrp_mcast_group4": _multicast(4),
    "vrrp_mcast_group6": _multicast(6),
    "vrrp_garp_master_delay": _nonneg_timer,
    "vrrp_garp_master_repeat": _integer(0, 255),
    "vrrp_garp_lower_prio_delay": _nonneg_timer,
    "vrrp_garp_lower_prio_repeat": _integer(0, 255),
    "vrrp_garp_master_refresh": _nonneg_timer,
    "vrrp_garp_master_refresh_repeat": _integer(1, 255),
    "vrrp_garp_interval": _nonneg_timer,
    "vrrp_gna_interval": _nonneg_timer,
    "vrrp_skip_check_adv_addr": _bool,
    "vrrp_check_unicast_src": _bool,
    "vrrp_strict": _bool,
    "checker_log_all_failures": _bool,
    "lvs_flush": _bool,
    "lvs_flush_on_stop": _bool,
    "release_dr_on_stop": _bool,
}

SYNC_SPEC: dict[str, Conv] = {
    "interface": _string,
    "instance": _string,
    "sync_id": _integer(0, 255),
    "maxlen": _integer(1, 65507),
    "port": _port,
    "ttl": _integer(1, 255),
    "group": _ip,
}

METRICS_SPEC: dict[str, Conv] = {"enabled": _bool, "listen": _ip, "port": _port}

SCRIPT_SPEC: dict[str, Conv] = {
    "interval": _positive_timer,
    "timeout": _positive_timer,
    "weight": WEIGHT,
    "rise": _integer(1, 1_000_000, hint="rise counts successes: 1 or more"),
    "fall": _integer(1, 1_000_000, hint="fall counts failures: 1 or more"),
    "init_fail": _bool,
}

NOTIFY_KEYS = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")

INSTANCE_SPEC: dict[str, Conv] = {
    "state": _choice({s.value: s for s in InitialState}, "initial state"),
    "priority": _integer(1, 255, note=" (255 means address owner)",
                         hint="use 1..254; give each node a different priority"),
    "unicast_src_ip": _ip,
    "mcast_src_ip": _ip,
    "mcast_dst_ip": _ip,
    "unicast_ttl": _integer(1, 255, hint="the TTL unicast adverts are sent with, e.g. 255"),
    "check_unicast_src": _bool,
    "dont_track_primary": _bool,
    "nopreempt": _bool,
    "preempt_delay": _timer(0, 1000),
    "accept": _bool,
    "garp_master_delay": _nonneg_timer,
    "garp_master_repeat": _integer(0, 255),
    "garp_lower_prio_delay": _nonneg_timer,
    "garp_lower_prio_repeat": _integer(0, 255),
    "garp_master_refresh": _nonneg_timer,
    "garp_master_refresh_repeat": _integer(1, 255),
    "down_timer_adverts": _integer(1, 100),
    "lower_prio_no_advert": _bool,
    "higher_prio_send_advert": _bool,
    "skip_check_adv_addr": _bool,
    "strict_mode": _bool,
    "v3_checksum_as_v2": _bool,
    "smtp_alert": _bool,
}

INSTANCE_KEYS = INSTANCE_SPEC.keys() | set(NOTIFY_KEYS) | {
    "interface", "virtual_router_id", "version", "advert_int", "virtual_ipaddress",
    "virtual_ipaddress_excluded", "unicast_peer", "track_script", "track_interface",
    "authentication",
}

GARP_INHERITANCE = {
    "garp_master_delay": "vrrp_garp_master_delay",
    "garp_master_repeat": "vrrp_garp_master_repeat",
    "garp_lower_prio_delay": "vrrp_garp_lower_prio_delay",
    "garp_lower_prio_repeat": "vrrp_garp_lower_prio_repeat",
    "garp_master_refresh": "vrrp_garp_master_refresh",
    "garp_master_refresh_repeat": "vrrp_garp_master_refresh_repeat",
}

CONNECTION_KEYS = frozenset({"connect_ip", "connect_port", "bindto", "bind_if", "bind_port",
                             "fwmark"})

#: Options a virtual_server or real_server sets as defaults for its checkers.
CHECKER_DEFAULTS_SPEC: dict[str, Conv] = {
    "connect_timeout": _positive_timer,
    "retry": _integer(0, 1_000_000),
    "delay_before_retry": _nonneg_timer,
    "warmup": _nonneg_timer,
    "log_all_failures": _bool,
}

CHECKER_SPEC: dict[str, Conv] = {
    "connect_ip": _ip,
    "connect_port": _port,
    "bindto": _ip,
    "bind_if": _string,
    "bind_port": _port,
    "fwmark": _integer(1, 0xFFFFFFFF),
    "delay_loop": _positive_timer,
    "alpha": _bool,
    **CHECKER_DEFAULTS_SPEC,
}

MISC_KEYS = frozenset({"misc_path", "misc_timeout", "misc_dynamic", "user", "group"})
CHECKER_KINDS = ("TCP_CHECK", "SMTP_CHECK", "MISC_CHECK")

VS_SPEC: dict[str, Conv] = {
    "ip": _ip,
    "port": _port,
    "fwmark": _integer(1, 0xFFFFFFFF),
    "group": _string,
    "protocol": _choice({p.value: p for p in Protocol}, "protocol"),
    "lvs_sched": _sched,
    "sched_flags": _flags,
    "lvs_method": LVS_METHOD,
    "persistence_timeout": _integer(1, 2_678_400),
    "persistence_granularity": _netmask,
    "ops": _bool,
    "ip_family": _family,
    "quorum": _integer(1, 2_147_483_647, hint="quorum is a total weight: 1 or more"),
    "hysteresis": _integer(0, 2_147_483_647),
    "inhibit_on_failure": _bool,
    "alpha": _bool,
    "omega": _bool,
    "ha_suspend": _bool,
    "delay_loop": _positive_timer,
    "vrrp_instance": _string,
}

VS_KEYS = VS_SPEC.keys() | CHECKER_DEFAULTS_SPEC.keys() | {
    "tunnel", "quorum_up", "quorum_down", "sorry_server", "real_server",
}

def _local_watch(value: object) -> Path | None:
    """``true`` (Postfix's master pidfile), ``false``, or the absolute path of a pidfile."""
    if isinstance(value, bool):
        return POSTFIX_MASTER_PIDFILE if value else None
    if not isinstance(value, str) or not value.startswith("/"):
        raise _expected("true, false or an absolute pidfile path", value,
                        'local_watch = true (Postfix), or local_watch = "/run/x/master.pid"')
    return Path(value)


RS_SPEC: dict[str, Conv] = {
    "port": _port,
    "weight": _integer(0, 65535, hint="IPVS weight: 0 (drain) .. 65535"),
    "lvs_method": LVS_METHOD,
    "uthreshold": _integer(0, 2_147_483_647),
    "lthreshold": _integer(0, 2_147_483_647),
    "inhibit_on_failure": _bool,
    "alpha": _bool,
    "local_watch": _local_watch,
}

RS_KEYS = RS_SPEC.keys() | CHECKER_DEFAULTS_SPEC.keys() | set(CHECKER_KINDS) | {
    "ip", "tunnel", "notify_up", "notify_down", "delay_loop",
}
