"""keepalived keyword tree -> mailha TOML document.

mailha's schema keeps keepalived's names, so most of the work is carrying values over
and normalising keepalived's many spellings into one: ``no_accept`` becomes
``accept = false``, ``weight 10 reverse`` becomes ``weight = 10`` + ``reverse = true``,
``user U G`` becomes ``user``/``group``, the old ``lb_algo``/``lb_kind`` become
``lvs_sched``/``lvs_method``, and so on.

The other half of the job is honesty. An admin migrating a cluster must know what did
*not* come across: every keyword mailha cannot carry (sync groups, VMACs, HTTP checks,
virtual routes, ...) or whose value is unusable becomes an :class:`Unsupported` entry
with its ``file:line`` and a reason, and the generated TOML lists them in its header
comment. Nothing is dropped silently.

The converter does not validate what it carries (address syntax, ranges): that is the
loader's job, with its own precise messages, and duplicating it here would only let the
two drift apart. It only refuses values it cannot even represent (``priority abc``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from mailha.importer.kaconf import Block, Node, QuoteError, split_quoted
from mailha.importer.toml_out import InlineTable, dumps
from mailha.tomlfmt import TomlTable, TomlValue

__all__ = ["ImportResult", "Unsupported", "convert", "quote_command"]


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


_Handler = Callable[["_Converter", Node, TomlTable], None]


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
        self._origins: dict[tuple[int, str], Node] = {}
        #: track_script entries, checked against the vrrp_scripts once all are known.
        self.script_refs: list[tuple[list[TomlValue], TomlValue, Node]] = []
        self.added: list[str] = []

    # -- reporting ----------------------------------------------------------------

    def skip(self, node: Node, reason: str, keyword: str | None = None) -> None:
        self.unsupported.append(
            Unsupported(node.location.file, node.location.line, keyword or node.keyword, reason)
        )

    def set(self, table: TomlTable, key: str, value: TomlValue, node: Node) -> None:
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

    def arg(self, node: Node, index: int = 0, what: str = "a value") -> str | None:
        if index < len(node.args):
            return node.args[index]
        self.skip(node, f"missing {what}; not carried over")
        return None

    def integer(self, node: Node, text: str | None) -> int | None:
        if text is None:
            return None
        if _INTEGER.fullmatch(text):
            return int(text)
        self.skip(node, f"invalid value {text!r}: expected an integer")
        return None

    def number(self, node: Node, text: str | None) -> int | float | None:
        """keepalived's <TIMER>: written back as an integer when it is one."""
        if text is None:
            return None
        if _INTEGER.fullmatch(text):
            return int(text)
        if _NUMBER.fullmatch(text):
            return float(text)
        self.skip(node, f"invalid value {text!r}: expected a number of seconds")
        return None

    def boolean(self, node: Node, index: int = 0) -> bool | None:
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

    def command(self, node: Node, *, with_user: bool) -> TomlValue | None:
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

    def user(self, node: Node, table: TomlTable) -> None:
        """``user USER [GROUP]`` -> ``user`` and ``group`` keys."""
        name = self.arg(node, 0, "a user name")
        if name is None:
            return
        self.set(table, "user", name, node)
        if len(node.args) > 1:
            self.set(table, "group", node.args[1], node)
        if len(node.args) > 2:
            self.skip(node, f"extra words {' '.join(node.args[2:])!r} after user and group")

    def no_args(self, node: Node) -> None:
        if node.args:
            self.skip(node, f"unexpected words {' '.join(node.args)!r}; ignored")

    def no_block(self, node: Node) -> None:
        if node.block is not None:
            self.skip(node, "unexpected '{ }' block after this keyword; its content is ignored")

    def need_block(self, node: Node) -> Block | None:
        if node.block is None:
            self.skip(node, "expected a '{ }' block after this keyword; not carried over")
        return node.block

    # -- the walk -----------------------------------------------------------------

    def run(self, tree: Block) -> None:
        for note in tree.notes:
            self.unsupported.append(
                Unsupported(note.location.file, note.location.line, note.keyword, note.message)
            )
        for node in tree:
            handler = _TOP.get(node.keyword)
            if handler is not None:
                handler(self, node, {})
            else:
                self.skip(node, _reason(node.keyword, _TOP_REASONS))
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
    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        c.no_block(node)
        value = c.arg(node)
        if value is not None:
            c.set(table, key, value, node)
            if len(node.args) > 1:
                c.skip(node, f"extra words {' '.join(node.args[1:])!r} ignored")

    return handle


def _upper(key: str) -> _Handler:
    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        value = c.arg(node)
        if value is not None:
            c.set(table, key, value.upper(), node)

    return handle


def _int(key: str) -> _Handler:
    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        c.no_block(node)
        value = c.integer(node, c.arg(node))
        if value is not None:
            c.set(table, key, value, node)

    return handle


def _timer(key: str) -> _Handler:
    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        c.no_block(node)
        value = c.number(node, c.arg(node))
        if value is not None:
            c.set(table, key, value, node)

    return handle


def _flag(key: str, *, invert: bool = False) -> _Handler:
    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        c.no_block(node)
        value = c.boolean(node)
        if value is not None:
            c.set(table, key, value != invert, node)

    return handle


def _command(key: str, *, with_user: bool = True) -> _Handler:
    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        c.no_block(node)
        value = c.command(node, with_user=with_user)
        if value is not None:
            c.set(table, key, value, node)

    return handle


def _user(c: _Converter, node: Node, table: TomlTable) -> None:
    c.user(node, table)


def _lines(key: str) -> _Handler:
    """A ``{ }`` block of lines carried over as strings in keepalived's line syntax."""

    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        block = c.need_block(node)
        if block is None:
            return
        lines: list[TomlValue] = [" ".join((entry.keyword, *entry.args)) for entry in block]
        for entry in block:
            if entry.block is not None:
                c.skip(entry, "unexpected '{ }' block inside a list; ignored")
        c.set(table, key, lines, node)

    return handle


# --------------------------------------------------------------------------- global_defs


def _global_defs(c: _Converter, node: Node, _: TomlTable) -> None:
    c.no_args(node)
    block = c.need_block(node)
    if block is not None:
        c.fields(block, c.global_, _GLOBAL, _GLOBAL_REASONS)


def _script_user(c: _Converter, node: Node, table: TomlTable) -> None:
    name = c.arg(node, 0, "a user name")
    if name is not None:
        c.set(table, "script_user", name, node)
        if len(node.args) > 1:
            c.set(table, "script_group", node.args[1], node)


def _smtp_server(c: _Converter, node: Node, table: TomlTable) -> None:
    server = c.arg(node, 0, "an address")
    if server is None:
        return
    c.set(table, "smtp_server", server, node)
    if len(node.args) > 1:
        port = c.integer(node, node.args[1])
        if port is not None:
            c.set(table, "smtp_server_port", port, node)


def _lvs_flush_on_stop(c: _Converter, node: Node, table: TomlTable) -> None:
    if node.args and node.args[0] == "VS":
        c.skip(node, "'lvs_flush_on_stop VS' (remove only configured services) is not supported")
        return
    _flag("lvs_flush_on_stop")(c, node, table)


def _lvs_timeouts(c: _Converter, node: Node, table: TomlTable) -> None:
    timeouts = InlineTable()
    words = list(node.args)
    while words:
        name = words.pop(0)
        if name not in ("tcp", "tcpfin", "udp") or not words:
            c.skip(node, f"unexpected {name!r}: expected [tcp SECS] [tcpfin SECS] [udp SECS]")
            return
        value = c.integer(node, words.pop(0))
        if value is None:
            return
        timeouts[name] = value
    c.set(table, "lvs_timeouts", timeouts, node)


_SYNC_OPTIONS = {
    "id": "sync_id",
    "maxlen": "maxlen",
    "port": "port",
    "ttl": "ttl",
    "group": "group",
}


def _lvs_sync_daemon(c: _Converter, node: Node, table: TomlTable) -> None:
    interface = c.arg(node, 0, "an interface")
    if interface is None:
        return
    sync = InlineTable(interface=interface)
    words = list(node.args[1:])
    if words and words[0] == "inst":
        words.pop(0)
        if not words:
            c.skip(node, "'inst' without an instance name; not carried over")
            return
        sync["instance"] = words.pop(0)
    elif words and words[0] not in _SYNC_OPTIONS:
        sync["instance"] = words.pop(0)
    while words:
        option = words.pop(0)
        if option not in _SYNC_OPTIONS or not words:
            c.skip(node, f"unexpected {option!r} in lvs_sync_daemon; not carried over")
            return
        raw = words.pop(0)
        if option == "group":
            sync["group"] = raw
        else:
            value = c.integer(node, raw)
            if value is None:
                return
            sync[_SYNC_OPTIONS[option]] = value
    c.set(table, "lvs_sync_daemon", sync, node)


def _sync_daemon_interface(c: _Converter, node: Node, table: TomlTable) -> None:
    """Old ``lvs_sync_daemon_interface IF``: the same as ``lvs_sync_daemon IF``."""
    interface = c.arg(node, 0, "an interface")
    if interface is not None:
        c.set(table, "lvs_sync_daemon", InlineTable(interface=interface), node)


def _instance_default(key: str, kind: Callable[[str], _Handler]) -> _Handler:
    """A global that only sets the default of an instance field: applied to each instance."""

    def handle(c: _Converter, node: Node, _: TomlTable) -> None:
        kind(key)(c, node, c.instance_defaults)

    return handle


_GLOBAL: Mapping[str, _Handler] = MappingProxyType(
    {
        "router_id": _string("router_id"),
        "lvs_id": _string("router_id"),
        "vrrp_version": _int("vrrp_version"),
        "script_user": _script_user,
        "enable_script_security": _flag("enable_script_security"),
        "notification_email": _lines("notification_email"),
        "notification_email_from": _string("notification_email_from"),
        "smtp_server": _smtp_server,
        "smtp_helo_name": _string("smtp_helo_name"),
        "smtp_connect_timeout": _timer("smtp_connect_timeout"),
        "smtp_alert": _flag("smtp_alert"),
        "vrrp_mcast_group4": _string("vrrp_mcast_group4"),
        "vrrp_mcast_group6": _string("vrrp_mcast_group6"),
        "vrrp_garp_master_delay": _timer("vrrp_garp_master_delay"),
        "vrrp_garp_master_repeat": _int("vrrp_garp_master_repeat"),
        "vrrp_garp_lower_prio_delay": _timer("vrrp_garp_lower_prio_delay"),
        "vrrp_garp_lower_prio_repeat": _int("vrrp_garp_lower_prio_repeat"),
        "vrrp_garp_master_refresh": _timer("vrrp_garp_master_refresh"),
        "vrrp_garp_master_refresh_repeat": _int("vrrp_garp_master_refresh_repeat"),
        "vrrp_garp_interval": _timer("vrrp_garp_interval"),
        "vrrp_gna_interval": _timer("vrrp_gna_interval"),
        "vrrp_skip_check_adv_addr": _flag("vrrp_skip_check_adv_addr"),
        "vrrp_check_unicast_src": _flag("vrrp_check_unicast_src"),
        "vrrp_strict": _flag("vrrp_strict"),
        "checker_log_all_failures": _flag("checker_log_all_failures"),
        "lvs_flush": _flag("lvs_flush"),
        "lvs_flush_on_stop": _lvs_flush_on_stop,
        "lvs_timeouts": _lvs_timeouts,
        "lvs_sync_daemon": _lvs_sync_daemon,
        "lvs_sync_daemon_interface": _sync_daemon_interface,
        "vrrp_down_timer_adverts": _instance_default("down_timer_adverts", _int),
        "vrrp_lower_prio_no_advert": _instance_default("lower_prio_no_advert", _flag),
        "vrrp_higher_prio_send_advert": _instance_default("higher_prio_send_advert", _flag),
    }
)


def _reasons(*groups: tuple[str, str], **single: str) -> Mapping[str, str]:
    """Build a keyword -> reason table from ("kw1 kw2 ...", reason) groups."""
    table = {keyword: reason for keywords, reason in groups for keyword in keywords.split()}
    return MappingProxyType({**table, **single})


_PROCESS = "keepalived process tuning; mailha is one asyncio process and needs no equivalent"
_NOT_SUPPORTED = "not supported"
_GLOBAL_REASONS = _reasons(
    (
        """process_names process_name vrrp_process_name checker_process_name bfd_process_name
        vrrp_priority checker_priority bfd_priority vrrp_no_swap checker_no_swap bfd_no_swap
        vrrp_cpu_affinity checker_cpu_affinity bfd_cpu_affinity vrrp_rt_priority
        checker_rt_priority bfd_rt_priority vrrp_rlimit_rttime checker_rlimit_rttime
        bfd_rlimit_rttime max_auto_priority min_auto_priority_delay child_wait_time use_pid_dir
        instance tmp_config_directory config_save_dir vrrp_rx_bufs_policy
        vrrp_rx_bufs_multiplier vrrp_netlink_cmd_rcv_bufs vrrp_netlink_cmd_rcv_bufs_force
        vrrp_netlink_monitor_rcv_bufs vrrp_netlink_monitor_rcv_bufs_force
        lvs_netlink_cmd_rcv_bufs lvs_netlink_cmd_rcv_bufs_force lvs_netlink_monitor_rcv_bufs
        lvs_netlink_monitor_rcv_bufs_force process_monitor_rcv_bufs
        process_monitor_rcv_bufs_force vrrp_startup_delay random_seed reload_check_config
        reload_time_file reload_repeat reload_file data_use_instance umask""",
        _PROCESS,
    ),
    (
        "net_namespace net_namespace_ipvs namespace_with_ipsets",
        "network namespaces: run mailha itself in the namespace instead",
    ),
    (
        """vrrp_iptables vrrp_ipsets nftables nftables_priority nftables_counters
        nftables_ifindex nftables_ipvs nftables_ipvs_priority nftables_ipvs_start_fwmark""",
        "firewall rules for no_accept/strict mode are not managed by mailha",
    ),
    (
        "startup_script startup_script_timeout shutdown_script shutdown_script_timeout",
        "start/stop scripts: use the service manager (systemd ExecStartPre/ExecStopPost)",
    ),
    (
        """enable_snmp_vrrp enable_snmp_checker enable_snmp_rfc enable_snmp_rfcv2
        enable_snmp_rfcv3 snmp_socket enable_traps enable_snmp_keepalived""",
        "SNMP is not supported; mailha exports Prometheus metrics",
    ),
    (
        "enable_dbus enable_dbus_create_instance",
        "D-Bus is not supported; use mailha's control socket",
    ),
    (
        """notify_fifo notify_fifo_script vrrp_notify_fifo vrrp_notify_fifo_script
        lvs_notify_fifo lvs_notify_fifo_script vrrp_notify_priority_changes""",
        "notify FIFOs are not supported; use notify scripts",
    ),
    (
        "smtp_alert_vrrp smtp_alert_checker",
        "per-daemon e-mail alert switches are not supported (smtp_alert is)",
    ),
    (
        """no_email_faults vrrp_garp_extra_if disable_local_igmp dynamic_interfaces
        vrrp_owner_ignore_adverts""",
        _NOT_SUPPORTED,
    ),
    default_interface="not supported: give every vrrp_instance its interface",
    vrrp_min_garp="not supported; set the vrrp_garp_* values instead",
    linkbeat_use_polling="not supported: mailha follows links with netlink",
)


# --------------------------------------------------------------------------- vrrp_script


def _named_table(c: _Converter, node: Node, tables: TomlTable) -> tuple[str, TomlTable] | None:
    name = c.arg(node, 0, "a name")
    if name is None:
        return None
    if name in tables:
        c.skip(node, f"{node.keyword} {name!r} is defined twice; only the first is carried over")
        return None
    table: TomlTable = {}
    tables[name] = table
    return name, table


def _vrrp_script(c: _Converter, node: Node, _: TomlTable) -> None:
    block = c.need_block(node)
    named = _named_table(c, node, c.scripts) if block is not None else None
    if block is None or named is None:
        return
    name, table = named
    c.fields(block, table, _SCRIPT, _SCRIPT_REASONS)
    if "script" not in table:
        c.skip(node, f"vrrp_script {name!r} has no usable 'script'; not carried over")
        del c.scripts[name]


def _weight(c: _Converter, node: Node, table: TomlTable) -> None:
    weight = c.integer(node, c.arg(node))
    if weight is None:
        return
    c.set(table, "weight", weight, node)
    for word in node.args[1:]:
        if word == "reverse":
            c.set(table, "reverse", True, node)
        elif word in ("noreverse", "no_reverse"):
            c.set(table, "reverse", False, node)
        else:
            c.skip(node, f"unexpected {word!r} after the weight; expected 'reverse'")


_SCRIPT: Mapping[str, _Handler] = MappingProxyType(
    {
        "script": _command("script", with_user=False),
        "interval": _timer("interval"),
        "timeout": _timer("timeout"),
        "weight": _weight,
        "rise": _int("rise"),
        "fall": _int("fall"),
        "user": _user,
        "init_fail": _flag("init_fail"),
    }
)
_SCRIPT_REASONS: Mapping[str, str] = MappingProxyType({})


# --------------------------------------------------------------------------- vrrp_instance


def _vrrp_instance(c: _Converter, node: Node, _: TomlTable) -> None:
    block = c.need_block(node)
    named = _named_table(c, node, c.instances) if block is not None else None
    if block is None or named is None:
        return
    c.fields(block, named[1], _INSTANCE, _INSTANCE_REASONS)


def _state(c: _Converter, node: Node, table: TomlTable) -> None:
    value = c.arg(node)
    if value is None:
        return
    if value.upper() not in ("MASTER", "BACKUP"):
        c.skip(node, f"invalid state {value!r}: expected MASTER or BACKUP")
        return
    c.set(table, "state", value.upper(), node)


def _old_unicast_checksum(c: _Converter, node: Node, table: TomlTable) -> None:
    if node.args == ("never",):
        c.skip(node, "'never' (no automatic detection of old checksums) is not supported")
        return
    c.no_args(node)
    c.set(table, "v3_checksum_as_v2", True, node)


def _authentication(c: _Converter, node: Node, table: TomlTable) -> None:
    block = c.need_block(node)
    if block is None:
        return
    auth: dict[str, str] = {}
    for entry in block:
        if entry.keyword in ("auth_type", "auth_pass") and entry.args:
            auth[entry.keyword] = entry.args[0]
        else:
            c.skip(entry, "unexpected in authentication (expected auth_type and auth_pass)")
    if auth.get("auth_type", "").upper() == "AH":
        c.skip(node, "IPsec AH authentication is not supported; peers using it cannot interoperate")
        return
    if "auth_pass" not in auth:
        c.skip(node, "authentication without auth_pass; not carried over")
        return
    c.set(
        table,
        "authentication",
        InlineTable(auth_type=auth.get("auth_type", "PASS").upper(), auth_pass=auth["auth_pass"]),
        node,
    )


def _unicast_peer(c: _Converter, node: Node, table: TomlTable) -> None:
    block = c.need_block(node)
    if block is None:
        return
    peers: list[TomlValue] = []
    for entry in block:
        words = list(entry.args)
        peer = InlineTable(address=entry.keyword)
        while words:
            option = words.pop(0)
            if option in ("min_ttl", "max_ttl") and words:
                value = c.integer(entry, words.pop(0))
                if value is not None:
                    peer[option] = value
            else:
                c.skip(
                    entry, f"unexpected {option!r} after the peer address; ignored", node.keyword
                )
        peers.append(peer if len(peer) > 1 else entry.keyword)
    c.set(table, "unicast_peer", peers, node)


#: Options of a virtual_ipaddress line mailha carries (and how many words each takes).
_VIP_OPTIONS = {"dev": 1, "label": 1, "scope": 1, "brd": 1, "broadcast": 1, "no_track": 0}
_VIP_DROPPED = {
    "peer": 1,
    "home": 0,
    "-nodad": 0,
    "nodad": 0,
    "mngtmpaddr": 0,
    "noprefixroute": 0,
    "autojoin": 0,
    "preferred_lft": 1,
    "track_group": 1,
}


def _vip_line(c: _Converter, entry: Node, keyword: str) -> str:
    words = list(entry.args)
    kept = [entry.keyword]
    while words:
        option = words.pop(0)
        if option in _VIP_OPTIONS:
            count = _VIP_OPTIONS[option]
            value = words[:count]
            del words[:count]
            kept.extend(["brd" if option == "broadcast" else option, *value])
        elif option == "use_vmac":
            if words and words[0] not in _VIP_OPTIONS and words[0] not in _VIP_DROPPED:
                words.pop(0)
            c.skip(entry, "use_vmac on an address is not supported; carried without it", keyword)
        elif option in _VIP_DROPPED:
            del words[: _VIP_DROPPED[option]]
            c.skip(
                entry, f"address option {option!r} is not supported; carried without it", keyword
            )
        else:
            c.skip(entry, f"unknown address option {option!r}; carried without it", keyword)
    return " ".join(kept)


def _addresses(key: str) -> _Handler:
    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        block = c.need_block(node)
        if block is not None:
            c.set(table, key, [_vip_line(c, entry, key) for entry in block], node)

    return handle


def _tracked(key: str) -> _Handler:
    """``track_script``/``track_interface``: ``NAME [weight N [reverse|noreverse]]`` lines."""

    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        block = c.need_block(node)
        if block is None:
            return
        entries: list[TomlValue] = []
        for entry in block:
            item = InlineTable(name=entry.keyword)
            words = list(entry.args)
            if words[:1] == ["weight"]:
                weight = c.integer(entry, words[1] if len(words) > 1 else c.arg(entry, 1))
                if weight is None:
                    continue
                item["weight"] = weight
                del words[:2]
            for word in words:
                if word == "reverse":
                    item["reverse"] = True
                elif word in ("noreverse", "no_reverse"):
                    item["reverse"] = False
                else:
                    c.skip(entry, f"unexpected {word!r}; expected 'weight N [reverse]'", key)
            entries.append(item if len(item) > 1 else entry.keyword)
            if key == "track_script":
                c.script_refs.append((entries, entries[-1], entry))
        c.set(table, key, entries, node)

    return handle


_INSTANCE: Mapping[str, _Handler] = MappingProxyType(
    {
        "state": _state,
        "interface": _string("interface"),
        "virtual_router_id": _int("virtual_router_id"),
        "priority": _int("priority"),
        "advert_int": _timer("advert_int"),
        "version": _int("version"),
        "unicast_src_ip": _string("unicast_src_ip"),
        "unicast_peer": _unicast_peer,
        "mcast_src_ip": _string("mcast_src_ip"),
        "mcast_dst_ip": _string("mcast_dst_ip"),
        "unicast_ttl": _int("unicast_ttl"),
        "check_unicast_src": _flag("check_unicast_src"),
        "virtual_ipaddress": _addresses("virtual_ipaddress"),
        "virtual_ipaddress_excluded": _addresses("virtual_ipaddress_excluded"),
        "track_script": _tracked("track_script"),
        "track_interface": _tracked("track_interface"),
        "dont_track_primary": _flag("dont_track_primary"),
        "nopreempt": _flag("nopreempt"),
        "no_preempt": _flag("nopreempt"),
        "preempt": _flag("nopreempt", invert=True),
        "preempt_delay": _timer("preempt_delay"),
        "accept": _flag("accept"),
        "no_accept": _flag("accept", invert=True),
        "garp_master_delay": _timer("garp_master_delay"),
        "garp_master_repeat": _int("garp_master_repeat"),
        "garp_lower_prio_delay": _timer("garp_lower_prio_delay"),
        "garp_lower_prio_repeat": _int("garp_lower_prio_repeat"),
        "garp_master_refresh": _timer("garp_master_refresh"),
        "garp_master_refresh_repeat": _int("garp_master_refresh_repeat"),
        "down_timer_adverts": _int("down_timer_adverts"),
        "lower_prio_no_advert": _flag("lower_prio_no_advert"),
        "higher_prio_send_advert": _flag("higher_prio_send_advert"),
        "skip_check_adv_addr": _flag("skip_check_adv_addr"),
        "strict_mode": _flag("strict_mode"),
        "old_unicast_checksum": _old_unicast_checksum,
        "authentication": _authentication,
        "notify_master": _command("notify_master"),
        "notify_backup": _command("notify_backup"),
        "notify_fault": _command("notify_fault"),
        "notify_stop": _command("notify_stop"),
        "notify": _command("notify"),
        "smtp_alert": _flag("smtp_alert"),
    }
)

_VMAC = "VMAC/ipvlan interfaces are not supported; the VIP is added to the interface itself"
_INSTANCE_REASONS: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(["use_vmac", "vmac_xmit_base", "use_vmac_addr", "use_ipvlan"], _VMAC),
        "virtual_routes": "virtual routes are not supported; add them in a notify script",
        "virtual_rules": "virtual rules are not supported; add them in a notify script",
        "track_file": "track_file is not supported; use a vrrp_script that reads the file",
        "track_process": "track_process is not supported; use a vrrp_script (e.g. pidof)",
        "track_bfd": "BFD is not supported",
        "track_src_ip": "track_src_ip is not supported",
        "notify_master_rx_lower_pri": "notify_master_rx_lower_pri is not supported",
        "notify_deleted": "notify_deleted is not supported",
        "notify_priority_changes": "notify FIFOs are not supported",
        "promote_secondaries": "promote_secondaries is not supported; set it with sysctl",
        "unicast_fault_no_peer": "not supported: mailha never falls back to multicast silently",
        "garp_extra_if": "garp_extra_if is not supported",
        "garp_extra_if_vmac": "garp_extra_if_vmac is not supported",
        "kernel_rx_buf_size": "not needed by mailha",
        "linkbeat_use_polling": "not supported: mailha follows links with netlink",
        "vrf": "VRFs are not supported",
        "native_ipv6": "deprecated in keepalived: the family follows the virtual addresses",
        "debug": "keepalived debug level; not needed",
        "lvs_sync_daemon_interface": "old per-instance sync daemon: use global lvs_sync_daemon",
        "mcast_ttl": "not supported",
        "sync_group_tracking_weight": "sync groups are not supported",
    }
)


# --------------------------------------------------------------------------- LVS


def _virtual_server_group(c: _Converter, node: Node, _: TomlTable) -> None:
    block = c.need_block(node)
    named = _named_table(c, node, c.groups) if block is not None else None
    if block is None or named is None:
        return
    _lines("members")(c, node, named[1])


def _lvs_method(key: str = "lvs_method", tunnel_key: str | None = "tunnel") -> _Handler:
    """``NAT|DR|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]`` (also old lb_kind)."""

    def handle(c: _Converter, node: Node, table: TomlTable) -> None:
        method = c.arg(node)
        if method is None:
            return
        method = method.upper()
        if method not in ("NAT", "DR", "TUN"):
            c.skip(node, f"invalid forwarding method {node.args[0]!r}: expected NAT, DR or TUN")
            return
        words = list(node.args[1:])
        tunnel = InlineTable()
        while words:
            word = words.pop(0)
            if word == "type" and words:
                tunnel["type"] = words.pop(0).lower()
            elif word == "port" and words:
                port = c.integer(node, words.pop(0))
                if port is not None:
                    tunnel["port"] = port
            elif word in ("nocsum", "csum", "remcsum"):
                tunnel["checksum"] = word
            else:
                c.skip(node, f"unexpected {word!r} after the forwarding method; ignored")
        c.set(table, key, method, node)
        if tunnel and method == "TUN":
            if tunnel_key is None:
                c.skip(node, "tunnel options are not supported here; the default ipip is used")
            else:
                c.set(table, tunnel_key, tunnel, node)

    return handle


_SCHED_FLAGS = ("flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback")


def _sched_flag(c: _Converter, node: Node, table: TomlTable) -> None:
    c.no_args(node)
    flags = table.setdefault("sched_flags", [])
    assert isinstance(flags, list)
    if node.keyword not in flags:
        flags.append(node.keyword)


def _persistence_timeout(c: _Converter, node: Node, table: TomlTable) -> None:
    value = c.integer(node, node.args[0]) if node.args else 360  # keepalived's default
    if value is not None:
        c.set(table, "persistence_timeout", value, node)


def _ip_family(c: _Converter, node: Node, table: TomlTable) -> None:
    value = c.arg(node)
    if value in ("inet", "inet6"):
        c.set(table, "ip_family", value, node)
    elif value is not None:
        c.skip(node, f"invalid ip_family {value!r}: expected inet or inet6")


def _sorry_server(c: _Converter, node: Node, table: TomlTable) -> None:
    address = c.arg(node, 0, "an address")
    if address is None:
        return
    sorry = _sorry(table)
    sorry["ip"] = address
    if len(node.args) > 1:
        port = c.integer(node, node.args[1])
        if port is not None:
            sorry["port"] = port
    c.set(table, "sorry_server", sorry, node)


def _sorry(table: TomlTable) -> InlineTable:
    sorry = table.get("sorry_server")
    if isinstance(sorry, InlineTable):
        return sorry
    return InlineTable()


def _sorry_inhibit(c: _Converter, node: Node, table: TomlTable) -> None:
    value = c.boolean(node)
    if value is not None:
        sorry = _sorry(table)
        sorry["inhibit"] = value
        table["sorry_server"] = sorry


def _sorry_method(c: _Converter, node: Node, table: TomlTable) -> None:
    scratch: TomlTable = {}
    _lvs_method("lvs_method", None)(c, node, scratch)
    if "lvs_method" in scratch:
        sorry = _sorry(table)
        sorry["lvs_method"] = scratch["lvs_method"]
        table["sorry_server"] = sorry


def _virtual_server(c: _Converter, node: Node, _: TomlTable) -> None:
    block = c.need_block(node)
    if block is None:
        return
    table: TomlTable = {}
    args = node.args
    if len(args) == 2 and args[0] == "fwmark":
        mark = c.integer(node, args[1])
        if mark is None:
            return
        table["fwmark"] = mark
    elif len(args) == 2 and args[0] == "group":
        table["group"] = args[1]
    elif len(args) in (1, 2) and args[0] not in ("fwmark", "group"):
        table["ip"] = args[0]
        if len(args) == 2:
            port = c.integer(node, args[1])
            if port is None:
                return
            table["port"] = port
    else:
        c.skip(
            node,
            "expected 'virtual_server IP [PORT]', 'fwmark N' or 'group NAME'; not carried over",
        )
        return
    c.fields(block, table, _VIRTUAL_SERVER, _VS_REASONS)
    if "sorry_server" in table and "ip" not in _sorry(table):
        c.skip(node, "sorry_server_* options without a sorry_server address; dropped")
        del table["sorry_server"]
    c.virtual_servers.append(table)


def _real_server(c: _Converter, node: Node, vs: TomlTable) -> None:
    block = c.need_block(node)
    address = c.arg(node, 0, "an address")
    if block is None or address is None:
        return
    table: TomlTable = {"ip": address}
    if len(node.args) > 1:
        port = c.integer(node, node.args[1])
        if port is None:
            return
        table["port"] = port
    c.fields(block, table, _REAL_SERVER, _RS_REASONS)
    servers = vs.setdefault("real_server", [])
    assert isinstance(servers, list)
    servers.append(table)


def _checker(kind: str) -> _Handler:
    def handle(c: _Converter, node: Node, rs: TomlTable) -> None:
        c.no_args(node)
        block = node.block or Block()
        handlers = {"SMTP_CHECK": _SMTP_CHECK, "TCP_CHECK": _TCP_CHECK, "MISC_CHECK": _MISC_CHECK}
        table: TomlTable = {}
        hosts = block.find("host") if kind == "SMTP_CHECK" else []
        rest = Block(tuple(n for n in block if n not in hosts))
        c.fields(rest, table, handlers[kind], _CHECKER_REASONS)
        if kind == "MISC_CHECK" and "misc_path" not in table:
            c.skip(node, "MISC_CHECK without a usable misc_path; not carried over")
            return
        checks = rs.setdefault(kind, [])
        assert isinstance(checks, list)
        if not hosts:
            checks.append(table)
            return
        # keepalived < 2.0 listed several hosts in one SMTP_CHECK, all of which had to
        # answer: the same as one check per host, which is what mailha has.
        for host in hosts:
            per_host = dict(table)
            c.fields(host.block or Block(), per_host, _COMMON, {})
            checks.append(per_host)

    return handle


_COMMON: Mapping[str, _Handler] = MappingProxyType(
    {
        "connect_ip": _string("connect_ip"),
        "connect_port": _int("connect_port"),
        "bindto": _string("bindto"),
        "bind_if": _string("bind_if"),
        "bind_port": _int("bind_port"),
        "fwmark": _int("fwmark"),
        "connect_timeout": _timer("connect_timeout"),
        "retry": _int("retry"),
        "nb_get_retry": _int("retry"),
        "delay_before_retry": _timer("delay_before_retry"),
        "warmup": _timer("warmup"),
        "delay_loop": _timer("delay_loop"),
        "alpha": _flag("alpha"),
        "log_all_failures": _flag("log_all_failures"),
    }
)
_TCP_CHECK = _COMMON
_SMTP_CHECK: Mapping[str, _Handler] = MappingProxyType(
    {**_COMMON, "helo_name": _string("helo_name")}
)
_CONNECTING = ("connect_ip", "connect_port", "bindto", "bind_if", "bind_port", "fwmark")
_MISC_CHECK: Mapping[str, _Handler] = MappingProxyType(
    {
        **{key: handler for key, handler in _COMMON.items() if key not in _CONNECTING},
        "misc_path": _command("misc_path", with_user=False),
        "misc_timeout": _timer("misc_timeout"),
        "misc_dynamic": _flag("misc_dynamic"),
        "user": _user,
    }
)
_CHECKER_REASONS: Mapping[str, str] = MappingProxyType(
    dict.fromkeys(_CONNECTING, "MISC_CHECK makes no connection: keepalived ignores this too")
)

_CHECKER_DEFAULTS: Mapping[str, _Handler] = MappingProxyType(
    {
        key: _COMMON[key]
        for key in (
            "connect_timeout",
            "retry",
            "nb_get_retry",
            "delay_before_retry",
            "warmup",
            "delay_loop",
        )
    }
)

_VIRTUAL_SERVER: Mapping[str, _Handler] = MappingProxyType(
    {
        "lvs_sched": _string("lvs_sched"),
        "lb_algo": _string("lvs_sched"),
        "lvs_method": _lvs_method(),
        "lb_kind": _lvs_method(),
        **dict.fromkeys(_SCHED_FLAGS, _sched_flag),
        "ops": _flag("ops"),
        "persistence_timeout": _persistence_timeout,
        "persistence_granularity": _string("persistence_granularity"),
        "protocol": _upper("protocol"),
        "ha_suspend": _flag("ha_suspend"),
        "alpha": _flag("alpha"),
        "omega": _flag("omega"),
        "quorum": _int("quorum"),
        "hysteresis": _int("hysteresis"),
        "quorum_up": _command("quorum_up"),
        "quorum_down": _command("quorum_down"),
        "ip_family": _ip_family,
        "sorry_server": _sorry_server,
        "sorry_server_inhibit": _sorry_inhibit,
        "sorry_server_lvs_method": _sorry_method,
        "inhibit_on_failure": _flag("inhibit_on_failure"),
        **_CHECKER_DEFAULTS,
        "real_server": _real_server,
    }
)

_HTTP_ONLY = "only used by HTTP_GET/SSL_GET checkers, which mailha does not have"
_NO_MAIL_ALERTS = "per-server e-mail alerts are not supported"
_VS_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "persistence_engine": "persistence engines (sip) are not supported",
        "virtualhost": _HTTP_ONLY,
        "smtp_alert": _NO_MAIL_ALERTS,
        "snmp_name": "SNMP is not supported",
        "nat_mask": "obsolete: ignored by keepalived too",
        "lvs_sync_daemon_interface": "use global lvs_sync_daemon",
    }
)

_UNSUPPORTED_CHECK = "{} is not supported by mailha; the real server is carried over without it"
_OTHER_CHECKERS = "HTTP_GET SSL_GET DNS_CHECK BFD_CHECK UDP_CHECK PING_CHECK FILE_CHECK"
_RS_REASONS = _reasons(
    *((kind, _UNSUPPORTED_CHECK.format(kind)) for kind in _OTHER_CHECKERS.split()),
    virtualhost=_HTTP_ONLY,
    smtp_alert=_NO_MAIL_ALERTS,
    snmp_name="SNMP is not supported",
)

_REAL_SERVER: Mapping[str, _Handler] = MappingProxyType(
    {
        "weight": _int("weight"),
        "lvs_method": _lvs_method(),
        "lb_kind": _lvs_method(),
        "notify_up": _command("notify_up"),
        "notify_down": _command("notify_down"),
        "uthreshold": _int("uthreshold"),
        "lthreshold": _int("lthreshold"),
        "alpha": _flag("alpha"),
        "inhibit_on_failure": _flag("inhibit_on_failure"),
        "log_all_failures": _flag("log_all_failures"),
        **_CHECKER_DEFAULTS,
        "SMTP_CHECK": _checker("SMTP_CHECK"),
        "TCP_CHECK": _checker("TCP_CHECK"),
        "MISC_CHECK": _checker("MISC_CHECK"),
    }
)


# --------------------------------------------------------------------------- top level

_TOP: Mapping[str, _Handler] = MappingProxyType(
    {
        "global_defs": _global_defs,
        "vrrp_script": _vrrp_script,
        "vrrp_instance": _vrrp_instance,
        "virtual_server_group": _virtual_server_group,
        "virtual_server": _virtual_server,
    }
)

_TOP_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "vrrp_sync_group": "sync groups are not supported: mailha runs each instance on its own",
        "garp_group": "garp_group is not supported; set vrrp_garp_interval/vrrp_gna_interval",
        "static_ipaddress": "static addresses are not managed by mailha: configure them in the OS",
        "static_routes": "static routes are not managed by mailha: configure them in the OS",
        "static_rules": "static rules are not managed by mailha: configure them in the OS",
        "linkbeat_interfaces": "not supported: mailha follows links with netlink",
        "interface_up_down_delays": "interface up/down debouncing is not supported",
        "track_file": "track_file is not supported; use a vrrp_script that reads the file",
        "vrrp_track_file": "track_file is not supported; use a vrrp_script that reads the file",
        "vrrp_track_process": "track_process is not supported; use a vrrp_script (e.g. pidof)",
        "track_process": "track_process is not supported; use a vrrp_script (e.g. pidof)",
        "bfd_instance": "BFD is not supported",
        "SSL": "SSL contexts are only used by SSL_GET, which mailha does not have",
        "net_namespace": "network namespaces: run mailha itself in the namespace instead",
        "net_namespace_ipvs": "network namespaces: run mailha itself in the namespace instead",
        "namespace_with_ipsets": "network namespaces: run mailha itself in the namespace instead",
        "instance": _PROCESS,
        "use_pid_dir": _PROCESS,
        "linkbeat_use_polling": "not supported: mailha follows links with netlink",
        "child_wait_time": _PROCESS,
    }
)


def convert(tree: Block, *, source: Path, config_id: str | None = None) -> ImportResult:
    """Turn a parsed keepalived configuration into mailha TOML.

    ``source`` (and ``config_id``, when the file was read with one) go into the header
    comment, so the generated file says where it came from. The result is deterministic:
    the same tree gives the same text.
    """
    converter = _Converter()
    converter.run(tree)
    document: TomlTable = {}
    if converter.global_:
        document["global"] = converter.global_
    for key, tables in (
        ("vrrp_script", converter.scripts),
        ("vrrp_instance", converter.instances),
        ("virtual_server_group", converter.groups),
    ):
        if tables:
            document[key] = tables
    if converter.virtual_servers:
        document["virtual_server"] = converter.virtual_servers
    unsupported = sorted(
        converter.unsupported, key=lambda u: (str(u.file), u.line, u.keyword, u.reason)
    )
    header = _header(source, config_id, unsupported, converter.added)
    return ImportResult(dumps(document, header=header), unsupported, converter.added)


def _header(
    source: Path, config_id: str | None, unsupported: list[Unsupported], added: list[str]
) -> list[str]:
    lines = [
        "mailha configuration generated by `mailha import-keepalived` from",
        f"  {source}" + (f" (config id {config_id!r})" if config_id is not None else ""),
        "Keys keep keepalived's names (keepalived.conf(5)). Review it before use.",
        "",
    ]
    if added:
        lines.append("Added by the importer:")
        lines.extend(f"  {entry}" for entry in added)
        lines.append("")
    if not unsupported:
        lines.append("Everything in the keepalived configuration was carried over.")
        return lines
    lines.append(f"NOT carried over ({len(unsupported)}):")
    lines.extend(f"  {entry}" for entry in unsupported)
    return lines
