"""keepalived's ``global_defs`` -> mailha's ``[global]``: the handler table and the reasons
for what is left out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from mailha.importer.core import (
    _NOT_SUPPORTED,
    _PROCESS,
    _Converter,
    _flag,
    _Handler,
    _int,
    _lines,
    _reasons,
    _string,
    _timer,
)
from mailha.importer.kaconf import Statement
from mailha.importer.toml_out import InlineTable
from mailha.tomlfmt import TomlTable

# --------------------------------------------------------------------------- global_defs


def _global_defs(c: _Converter, node: Statement, _: TomlTable) -> None:
    c.no_args(node)
    block = c.need_block(node)
    if block is not None:
        c.fields(block, c.global_, _GLOBAL, _GLOBAL_REASONS)


def _script_user(c: _Converter, node: Statement, table: TomlTable) -> None:
    name = c.arg(node, 0, "a user name")
    if name is not None:
        c.set(table, "script_user", name, node)
        if len(node.args) > 1:
            c.set(table, "script_group", node.args[1], node)


def _smtp_server(c: _Converter, node: Statement, table: TomlTable) -> None:
    server = c.arg(node, 0, "an address")
    if server is None:
        return
    c.set(table, "smtp_server", server, node)
    if len(node.args) > 1:
        port = c.integer(node, node.args[1])
        if port is not None:
            c.set(table, "smtp_server_port", port, node)


def _lvs_flush_on_stop(c: _Converter, node: Statement, table: TomlTable) -> None:
    if node.args and node.args[0] == "VS":
        c.skip(node, "'lvs_flush_on_stop VS' (remove only configured services) is not supported")
        return
    _flag("lvs_flush_on_stop")(c, node, table)


def _lvs_timeouts(c: _Converter, node: Statement, table: TomlTable) -> None:
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


def _lvs_sync_daemon(c: _Converter, node: Statement, table: TomlTable) -> None:
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


def _sync_daemon_interface(c: _Converter, node: Statement, table: TomlTable) -> None:
    """Old ``lvs_sync_daemon_interface IF``: the same as ``lvs_sync_daemon IF``."""
    interface = c.arg(node, 0, "an interface")
    if interface is not None:
        c.set(table, "lvs_sync_daemon", InlineTable(interface=interface), node)


def _instance_default(key: str, kind: Callable[[str], _Handler]) -> _Handler:
    """A global that only sets the default of an instance field: applied to each instance."""

    def handle(c: _Converter, node: Statement, _: TomlTable) -> None:
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
