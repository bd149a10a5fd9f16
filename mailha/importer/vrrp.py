"""keepalived's ``vrrp_script`` and ``vrrp_instance`` blocks -> mailha's tables of the same
names: handlers, and the reasons for what is left out."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mailha.importer.core import (
    _command,
    _Converter,
    _flag,
    _Handler,
    _int,
    _named_table,
    _string,
    _timer,
    _user,
)
from mailha.importer.kaconf import Statement
from mailha.importer.toml_out import InlineTable
from mailha.tomlfmt import TomlTable, TomlValue

# --------------------------------------------------------------------------- vrrp_script



def _vrrp_script(c: _Converter, node: Statement, _: TomlTable) -> None:
    block = c.need_block(node)
    named = _named_table(c, node, c.scripts) if block is not None else None
    if block is None or named is None:
        return
    name, table = named
    c.fields(block, table, _SCRIPT, _SCRIPT_REASONS)
    if "script" not in table:
        c.skip(node, f"vrrp_script {name!r} has no usable 'script'; not carried over")
        del c.scripts[name]


def _weight(c: _Converter, node: Statement, table: TomlTable) -> None:
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


def _vrrp_instance(c: _Converter, node: Statement, _: TomlTable) -> None:
    block = c.need_block(node)
    named = _named_table(c, node, c.instances) if block is not None else None
    if block is None or named is None:
        return
    c.fields(block, named[1], _INSTANCE, _INSTANCE_REASONS)


def _state(c: _Converter, node: Statement, table: TomlTable) -> None:
    value = c.arg(node)
    if value is None:
        return
    if value.upper() not in ("MASTER", "BACKUP"):
        c.skip(node, f"invalid state {value!r}: expected MASTER or BACKUP")
        return
    c.set(table, "state", value.upper(), node)


def _old_unicast_checksum(c: _Converter, node: Statement, table: TomlTable) -> None:
    if node.args == ("never",):
        c.skip(node, "'never' (no automatic detection of old checksums) is not supported")
        return
    c.no_args(node)
    c.set(table, "v3_checksum_as_v2", True, node)


def _authentication(c: _Converter, node: Statement, table: TomlTable) -> None:
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


def _unicast_peer(c: _Converter, node: Statement, table: TomlTable) -> None:
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


def _vip_line(c: _Converter, entry: Statement, keyword: str) -> str:
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
    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
        block = c.need_block(node)
        if block is not None:
            c.set(table, key, [_vip_line(c, entry, key) for entry in block], node)

    return handle


def _tracked(key: str) -> _Handler:
    """``track_script``/``track_interface``: ``NAME [weight N [reverse|noreverse]]`` lines."""

    def handle(c: _Converter, node: Statement, table: TomlTable) -> None:
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
