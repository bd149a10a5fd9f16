"""The loader's tables: which keys each section takes and how each value converts, the
keepalived spellings it recognises, and the features it refuses by name."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from mailha.config.model import (
    POSTFIX_MASTER_PIDFILE,
    SCHEDULER_FLAGS,
    Announce,
    InitialState,
    Protocol,
)
from mailha.config.values import (
    LVS_METHOD,
    WEIGHT,
    Conv,
    _bool,
    _choice,
    _expected,
    _family,
    _flags,
    _integer,
    _Invalid,
    _ip,
    _multicast,
    _netmask,
    _nonneg_timer,
    _port,
    _positive_timer,
    _sched,
    _str_list,
    _string,
    _timer,
)

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



TOP_KEYS = frozenset({"global", "metrics", "control", "bgp", "vrrp_script", "vrrp_instance",
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
    "lvs_sloppy_tcp": _bool,
    "lvs_sloppy_sctp": _bool,
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


def _absolute_path(example: str) -> Conv:
    def conv(value: object) -> Path:
        text = _string(value)
        if not text.startswith("/"):
            raise _Invalid("must be an absolute path", f'e.g. "{example}"')
        return Path(text)
    return conv


_BIRD_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}\Z")


def _protocol_prefix(value: object) -> str:
    """The start of BIRD protocol names: a BIRD symbol (letters, digits, _), short."""
    text = _string(value)
    if not _BIRD_SYMBOL.match(text):
        raise _Invalid("must be a BIRD symbol: a letter or _, then letters, digits or _, "
                       "at most 32 characters", 'e.g. protocol_prefix = "mailha_"')
    return text


def _ifname(value: object) -> str:
    text = _string(value)
    if len(text) > 15 or any(c in "/: \t\n" for c in text) or text in (".", ".."):
        raise _Invalid("not a valid interface name (at most 15 characters, no / : or space)",
                       'e.g. deadman_interface = "mailha-bgp"')
    return text


BGP_SPEC: dict[str, Conv] = {
    "bird_socket": _absolute_path("/run/bird/bird.ctl"),
    "include_file": _absolute_path("/etc/bird/mailha.conf"),
    "protocol_prefix": _protocol_prefix,
    "reapply_interval": _timer(0.1, 3600, hint="seconds, e.g. reapply_interval = 5"),
    "deadman_interface": _ifname,
}

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
    "announce": _choice({a.value: a for a in Announce}, "announce mode"),
    "min_healthy": _integer(1, 65535, hint="real servers that must be up: 1 or more"),
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
