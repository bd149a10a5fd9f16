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

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from mailha.importer.core import (
    _PROCESS,
    ImportResult,
    Unsupported,
    _Converter,
    _Handler,
    quote_command,
)
from mailha.importer.global_defs import _global_defs
from mailha.importer.kaconf import Block
from mailha.importer.lvs import _virtual_server, _virtual_server_group
from mailha.importer.toml_out import dumps
from mailha.importer.vrrp import _vrrp_instance, _vrrp_script
from mailha.tomlfmt import TomlTable

__all__ = ["ImportResult", "Unsupported", "convert", "quote_command"]


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
    converter.run(tree, _TOP, _TOP_REASONS)
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
