"""keepalived's ``virtual_server_group`` and ``virtual_server`` blocks (real servers,
checkers) -> mailha's LVS tables: handlers, and the reasons for what is left out."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mailha.importer.core import (
    _command,
    _Converter,
    _flag,
    _Handler,
    _int,
    _lines,
    _named_table,
    _reasons,
    _string,
    _timer,
    _upper,
    _user,
)
from mailha.importer.kaconf import Block, Statement
from mailha.importer.toml_out import InlineTable
from mailha.tomlfmt import TomlTable

# --------------------------------------------------------------------------- LVS


def _virtual_server_group(c: _Converter, node: Statement, _: TomlTable) -> None:
    block = c.need_block(node)
    named = _named_table(c, node, c.groups) if block is not None else None
    if block is None or named is None:
        return
    _lines("members")(c, node, named[1])


def _lvs_method(key: str = "lvs_method", tunnel_key: str | None = "tunnel") -> _Handler:
    """``NAT|DR|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]`` (also old lb_kind)."""

    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
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


def _sched_flag(c: _Converter, node: Statement, table: TomlTable) -> None:
    c.no_args(node)
    flags = table.setdefault("sched_flags", [])
    assert isinstance(flags, list)
    if node.keyword not in flags:
        flags.append(node.keyword)


def _persistence_timeout(c: _Converter, node: Statement, table: TomlTable) -> None:
    value = c.integer(node, node.args[0]) if node.args else 360  # keepalived's default
    if value is not None:
        c.set(table, "persistence_timeout", value, node)


def _ip_family(c: _Converter, node: Statement, table: TomlTable) -> None:
    value = c.arg(node)
    if value in ("inet", "inet6"):
        c.set(table, "ip_family", value, node)
    elif value is not None:
        c.skip(node, f"invalid ip_family {value!r}: expected inet or inet6")


def _sorry_server(c: _Converter, node: Statement, table: TomlTable) -> None:
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


def _sorry_inhibit(c: _Converter, node: Statement, table: TomlTable) -> None:
    value = c.boolean(node)
    if value is not None:
        sorry = _sorry(table)
        sorry["inhibit"] = value
        table["sorry_server"] = sorry


def _sorry_method(c: _Converter, node: Statement, table: TomlTable) -> None:
    scratch: TomlTable = {}
    _lvs_method("lvs_method", None)(c, node, scratch)
    if "lvs_method" in scratch:
        sorry = _sorry(table)
        sorry["lvs_method"] = scratch["lvs_method"]
        table["sorry_server"] = sorry


def _virtual_server(c: _Converter, node: Statement, _: TomlTable) -> None:
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


def _real_server(c: _Converter, node: Statement, vs: TomlTable) -> None:
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
    def handle(c: _Converter, node: Statement, rs: TomlTable) -> None:
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
