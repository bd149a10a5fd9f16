"""The importer's machinery: the converter that walks keepalived's keyword tree and
fills TOML tables, what it reports as left out, and the field kinds each section's
handler table is built from (:mod:`~mailha.importer.global_defs`,
:mod:`~mailha.importer.vrrp`, :mod:`~mailha.importer.lvs`; the top level and the
document in :mod:`~mailha.importer.convert`)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from mailha.importer.kaconf import Block, QuoteError, Statement, split_quoted
from mailha.importer.toml_out import InlineTable
from mailha.tomlfmt import TomlTable, TomlValue


@dataclass(frozen=True)
class Unsupported:
    """A keyword (or part of one) that is not in the generated TOML, and why."""

    file: Path
    line: int
    keyword: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.keyword}: {self.reason}"


@dataclass(frozen=True)
class ImportResult:
    """The TOML text, what was left out, and what the importer added on its own."""

    toml_text: str
    unsupported: list[Unsupported] = field(default_factory=list)
    added: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- values

_TRUE = frozenset({"on", "true", "yes"})
_FALSE = frozenset({"off", "false", "no"})
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NEEDS_QUOTES = re.compile(r"[\s'\"\\]")


def quote_command(argv: list[str] | tuple[str, ...]) -> str:
    """Join words into one command string that keepalived's rules split back into them.

    Words with blanks, quotes or backslashes are double-quoted with ``\\`` escapes;
    plain words are left alone, so ordinary commands read exactly as written.
    """
    parts = []
    for word in argv:
        if word and not _NEEDS_QUOTES.search(word):
            parts.append(word)
        else:
            parts.append('"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(parts)


_Handler = Callable[["_Converter", Statement, TomlTable], None]


class _Converter:
    """Walks the tree once, filling TOML tables and the list of what was left out."""

    def __init__(self) -> None:
        self.unsupported: list[Unsupported] = []
        self.global_: TomlTable = {}
        self.instance_defaults: TomlTable = {}
        self.scripts: TomlTable = {}
        self.instances: TomlTable = {}
        self.groups: TomlTable = {}
        self.virtual_servers: list[TomlValue] = []
        self._origins: dict[tuple[int, str], Statement] = {}
        #: track_script entries, checked against the vrrp_scripts once all are known.
        self.script_refs: list[tuple[list[TomlValue], TomlValue, Statement]] = []
        self.added: list[str] = []

    # -- reporting ----------------------------------------------------------------

    def skip(self, node: Statement, reason: str, keyword: str | None = None) -> None:
        self.unsupported.append(
            Unsupported(node.location.file, node.location.line, keyword or node.keyword, reason)
        )

    def set(self, table: TomlTable, key: str, value: TomlValue, node: Statement) -> None:
        """Set ``key``; when it was set before, say that the later value wins (as in keepalived)."""
        previous = self._origins.get((id(table), key))
        if previous is not None and table.get(key) != value:
            self.skip(
                previous,
                f"set again at line {node.location.line} of {node.location.file.name}; "
                "the later value wins, as in keepalived",
            )
        self._origins[(id(table), key)] = node
        table[key] = value

    # -- argument readers (report and return None when unusable) -----------------

    def arg(self, node: Statement, index: int = 0, what: str = "a value") -> str | None:
        if index < len(node.args):
            return node.args[index]
        self.skip(node, f"missing {what}; not carried over")
        return None

    def integer(self, node: Statement, text: str | None) -> int | None:
        if text is None:
            return None
        if _INTEGER.fullmatch(text):
            return int(text)
        self.skip(node, f"invalid value {text!r}: expected an integer")
        return None

    def number(self, node: Statement, text: str | None) -> int | float | None:
        """keepalived's <TIMER>: written back as an integer when it is one."""
        if text is None:
            return None
        if _INTEGER.fullmatch(text):
            return int(text)
        if _NUMBER.fullmatch(text):
            return float(text)
        self.skip(node, f"invalid value {text!r}: expected a number of seconds")
        return None

    def boolean(self, node: Statement, index: int = 0) -> bool | None:
        """A flag: present means on, unless followed by on|off|true|false|yes|no."""
        if index >= len(node.args):
            return True
        word = node.args[index].lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        self.skip(node, f"invalid value {node.args[index]!r}: expected on|off|true|false|yes|no")
        return None

    def command(self, node: Statement, *, with_user: bool) -> TomlValue | None:
        """``keyword CMD [user [group]]`` -> a command string, or an inline table with user."""
        try:
            words = list(node.quoted_args())
            argv = split_quoted(words[0]) if words else []
        except QuoteError as exc:
            self.skip(node, f"{exc}; not carried over")
            return None
        if not argv:
            self.skip(node, "missing command; not carried over")
            return None
        extra = words[1:]
        limit = 2 if with_user else 0
        if len(extra) > limit:
            hint = "quote the whole command line" if not with_user else "expected [user [group]]"
            self.skip(
                node,
                f"words after the command are ignored by keepalived ({' '.join(extra[limit:])!r}): "
                + hint,
            )
            extra = extra[:limit]
        script = quote_command(argv)
        if not extra:
            return script
        table = InlineTable(script=script, user=extra[0])
        if len(extra) > 1:
            table["group"] = extra[1]
        return table

    def user(self, node: Statement, table: TomlTable) -> None:
        """``user USER [GROUP]`` -> ``user`` and ``group`` keys."""
        name = self.arg(node, 0, "a user name")
        if name is None:
            return
        self.set(table, "user", name, node)
        if len(node.args) > 1:
            self.set(table, "group", node.args[1], node)
        if len(node.args) > 2:
            self.skip(node, f"extra words {' '.join(node.args[2:])!r} after user and group")

    def no_args(self, node: Statement) -> None:
        if node.args:
            self.skip(node, f"unexpected words {' '.join(node.args)!r}; ignored")

    def no_block(self, node: Statement) -> None:
        if node.block is not None:
            self.skip(node, "unexpected '{ }' block after this keyword; its content is ignored")

    def need_block(self, node: Statement) -> Block | None:
        if node.block is None:
            self.skip(node, "expected a '{ }' block after this keyword; not carried over")
        return node.block

    # -- the walk -----------------------------------------------------------------

    def run(
        self, tree: Block, top: Mapping[str, _Handler], top_reasons: Mapping[str, str]
    ) -> None:
        """Walk ``tree``: each top-level keyword through its handler in ``top``, the rest
        reported with its reason from ``top_reasons``."""
        for note in tree.notes:
            self.unsupported.append(
                Unsupported(note.location.file, note.location.line, note.keyword, note.message)
            )
        for node in tree:
            handler = top.get(node.keyword)
            if handler is not None:
                handler(self, node, {})
            else:
                self.skip(node, _reason(node.keyword, top_reasons))
        for entries, item, entry in self.script_refs:
            if entry.keyword not in self.scripts:
                self.skip(
                    entry,
                    f"no vrrp_script named {entry.keyword!r}: keepalived ignores this entry",
                    "track_script",
                )
                entries.remove(item)
        for instance in self.instances.values():
            assert isinstance(instance, dict)
            for key, value in self.instance_defaults.items():
                instance.setdefault(key, value)
        self.default_protocols()
        self.bind_services()
        self.maglev_services()

    def default_protocols(self) -> None:
        """Write keepalived's protocol default, UDP, where it applies and mailha's differs.

        keepalived sets UDP on an address service (or a group with addresses) that has no
        ``protocol`` line, because that is what the kernel does with protocol 0;
        mailha defaults to TCP. The import keeps keepalived's meaning, and says so.
        """
        for index, vs in enumerate(self.virtual_servers):
            assert isinstance(vs, dict)
            if "protocol" in vs or "fwmark" in vs:
                continue
            name = vs.get("group")
            group = self.groups.get(name) if isinstance(name, str) else None
            if isinstance(group, dict):
                members = group.get("members")
                if isinstance(members, list) and all(str(m).startswith("fwmark") for m in members):
                    continue
            elif "ip" not in vs:
                continue
            vs["protocol"] = "UDP"
            self.added.append(
                f'virtual_server[{index}]: protocol = "UDP", keepalived\'s default when no '
                "protocol is given (mailha's is TCP): write protocol TCP if that was meant"
            )

    def bind_services(self) -> None:
        """Give each ``virtual_server IP`` the vrrp_instance that holds IP as a VIP.

        keepalived programs IPVS on every node; traffic to a VIP only reaches the node
        holding it, so binding the service to that instance keeps what keepalived did
        for clients while sparing two all-in-one nodes from bouncing packets between
        their IPVS tables (mailha's ``vrrp_instance`` key).
        """
        for index, vs in enumerate(self.virtual_servers):
            assert isinstance(vs, dict)
            address = _address(vs.get("ip"))
            if address is None or "vrrp_instance" in vs:
                continue
            owners = [
                name
                for name, instance in self.instances.items()
                if isinstance(instance, dict) and address in _vips(instance)
            ]
            if len(owners) == 1:
                vs["vrrp_instance"] = owners[0]
                self.added.append(
                    f"virtual_server[{index}] ({vs['ip']}): vrrp_instance = {owners[0]!r}, "
                    "the instance holding that VIP, so only its MASTER balances"
                )

    def maglev_services(self) -> None:
        """Fit ``lvs_sched mh`` services to mailha's rule for them: quiesce, never delete.

        mailha keeps a failed real server of an mh service at weight 0 so that every
        director keeps the same Maglev table (mailha/lvs/maglev.py); the loader refuses
        ``inhibit_on_failure false`` there and requires ``mh-fallback``, without which
        the quiesced server's connections would be refused. keepalived without
        ``inhibit_on_failure`` deletes a failed server, so its share of the connections
        goes to the others: ``mh-fallback`` keeps exactly that, and is added.
        """
        for index, vs in enumerate(self.virtual_servers):
            assert isinstance(vs, dict)
            if vs.get("lvs_sched") != "mh":
                continue
            flags = vs.setdefault("sched_flags", [])
            assert isinstance(flags, list)
            if "mh-fallback" not in flags:
                flags.append("mh-fallback")
                self.added.append(
                    f"virtual_server[{index}]: sched_flags gets mh-fallback: mailha keeps a "
                    "failed real server of an mh service at weight 0 (the same Maglev table "
                    "on every director), and mh-fallback sends its connections to the "
                    "others as keepalived's removing it did"
                )
            servers = vs.get("real_server", [])
            assert isinstance(servers, list)
            for table in (vs, *servers):
                assert isinstance(table, dict)
                if table.get("inhibit_on_failure") is False:
                    del table["inhibit_on_failure"]
                    node = self._origins.get((id(table), "inhibit_on_failure"))
                    if node is not None:
                        self.skip(node, "mailha always keeps a failed real server of an mh "
                                        "service at weight 0 (inhibit_on_failure is true there)")

    def fields(
        self,
        block: Block,
        table: TomlTable,
        handlers: Mapping[str, _Handler],
        reasons: Mapping[str, str],
    ) -> None:
        for node in block:
            handler = handlers.get(node.keyword)
            if handler is None:
                self.skip(node, _reason(node.keyword, reasons))
                continue
            handler(self, node, table)


def _address(value: TomlValue | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value.split("/")[0])
    except ValueError:
        return None


def _vips(instance: TomlTable) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found = set()
    for key in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
        lines = instance.get(key, [])
        for line in lines if isinstance(lines, list) else []:
            address = _address(line.split()[0]) if isinstance(line, str) and line else None
            if address is not None:
                found.add(address)
    return found


def _reason(keyword: str, reasons: Mapping[str, str]) -> str:
    if keyword in reasons:
        return reasons[keyword]
    return "unknown keyword here (keepalived would reject it too, or it is a typo)"


# --------------------------------------------------------------------------- field kinds


def _string(key: str) -> _Handler:
    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
        c.no_block(node)
        value = c.arg(node)
        if value is not None:
            c.set(table, key, value, node)
            if len(node.args) > 1:
                c.skip(node, f"extra words {' '.join(node.args[1:])!r} ignored")

    return handle


def _upper(key: str) -> _Handler:
    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
        value = c.arg(node)
        if value is not None:
            c.set(table, key, value.upper(), node)

    return handle


def _int(key: str) -> _Handler:
    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
        c.no_block(node)
        value = c.integer(node, c.arg(node))
        if value is not None:
            c.set(table, key, value, node)

    return handle


def _timer(key: str) -> _Handler:
    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
        c.no_block(node)
        value = c.number(node, c.arg(node))
        if value is not None:
            c.set(table, key, value, node)

    return handle


def _flag(key: str, *, invert: bool = False) -> _Handler:
    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
        c.no_block(node)
        value = c.boolean(node)
        if value is not None:
            c.set(table, key, value != invert, node)

    return handle


def _command(key: str, *, with_user: bool = True) -> _Handler:
    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
        c.no_block(node)
        value = c.command(node, with_user=with_user)
        if value is not None:
            c.set(table, key, value, node)

    return handle


def _user(c: _Converter, node: Statement, table: TomlTable) -> None:
    c.user(node, table)


def _lines(key: str) -> _Handler:
    """A ``{ }`` block of lines carried over as strings in keepalived's line syntax."""

    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
        block = c.need_block(node)
        if block is None:
            return
        lines: list[TomlValue] = [" ".join((entry.keyword, *entry.args)) for entry in block]
        for entry in block:
            if entry.block is not None:
                c.skip(entry, "unexpected '{ }' block inside a list; ignored")
        c.set(table, key, lines, node)

    return handle



def _reasons(*groups: tuple[str, str], **single: str) -> Mapping[str, str]:
    """Build a keyword -> reason table from ("kw1 kw2 ...", reason) groups."""
    table = {keyword: reason for keywords, reason in groups for keyword in keywords.split()}
    return MappingProxyType({**table, **single})


_PROCESS = "keepalived process tuning; mailha is one asyncio process and needs no equivalent"
_NOT_SUPPORTED = "not supported"

def _named_table(c: _Converter, node: Statement, tables: TomlTable) -> tuple[str, TomlTable] | None:
    name = c.arg(node, 0, "a name")
    if name is None:
        return None
    if name in tables:
        c.skip(node, f"{node.keyword} {name!r} is defined twice; only the first is carried over")
        return None
    table: TomlTable = {}
    tables[name] = table
    return name, table
