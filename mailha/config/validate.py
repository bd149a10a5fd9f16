"""Checks that relate several keys, several files, or the config and this machine.

The loader checks each value where it reads it; what is left is what keepalived users
actually get wrong and keepalived itself does not catch until the pager goes off: a
``track_script`` naming a script that does not exist, VIPs of mixed families, two nodes
whose ``unicast_peer`` lists do not point at each other, equal priorities that make the
higher IP address win whatever ``state`` says, a health check whose weight is too small
to ever move the VIP.

Three layers, so each runs where its inputs exist:

* :func:`check_config` -- one file, pure; run by the loader on every load.
* :func:`check_peers` -- several files for the same cluster, pure; ``mailha check
  node1.toml node2.toml``.
* :func:`check_host` and :func:`check_scripts` -- one file against this machine, with
  the machine injected (``owns_address``, ``interface_exists``, ``runnable``) so tests
  use fakes; :func:`mailha.hostprobe.check_this_host` wires the real probes.

Script paths that are missing or not executable are *warnings* for ``mailha check``
(the file may be checked on a machine that is not the node) and *errors* when the
daemon starts (``check_this_host(..., script_severity="error")``): a missing track
script would otherwise silently pin the node at a lower priority. A script that runs
with root's powers but that a non-root user can modify (keepalived's rule, in
:mod:`mailha.config.scriptsec`) is an error in both places when
``enable_script_security`` is on -- the setting promises it will not run -- and a
warning when it is off, as keepalived logs it.
"""

from __future__ import annotations

import difflib
import itertools
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from mailha.config import scriptsec
from mailha.config.errors import Diagnostic, KeyPath, Severity, format_key, toml_repr
from mailha.config.inert import INERT, NO_EFFECT
from mailha.config.locate import Locator
from mailha.config.model import (
    MAGLEV,
    Announce,
    Config,
    InitialState,
    LvsMethod,
    MiscCheck,
    Protocol,
    ScriptCommand,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
)
from mailha.ip import IPAddress
from mailha.socketpath import SOCKET_PATH_FIX
from mailha.vrrp import tracking
from mailha.vrrp.tracking import OWNER_PRIORITY, Tracked

__all__ = [
    "check_config",
    "check_control_socket",
    "check_host",
    "check_peers",
    "check_scripts",
    "effective_priority",
    "structural_paths",
]


class _Reporter:
    """Turns (object, sub-key) into a Diagnostic with the right file, key and line."""

    def __init__(
        self, config: Config, paths: Mapping[int, KeyPath] | None = None,
        locator: Locator | None = None,
    ) -> None:
        self.config = config
        self.paths = paths if paths is not None else structural_paths(config)
        if locator is None:
            try:
                locator = Locator(config.source.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                locator = Locator("")
        self.locator = locator
        self.found: list[Diagnostic] = []

    def path(self, obj: object, *more: str | int) -> KeyPath:
        return (*self.paths.get(id(obj), ()), *more)

    def report(
        self, severity: Severity, path: KeyPath, message: str, hint: str = "",
        value: object = None,
    ) -> None:
        self.found.append(Diagnostic(
            severity, self.config.source, self.locator.line(path), format_key(path), message,
            hint, None if value is None else toml_repr(value),
        ))


def structural_paths(config: Config) -> dict[int, KeyPath]:
    """Key paths of the objects of a *valid* config, derived from its structure.

    A config that loaded without errors has every table and array element, in file
    order, so names and indexes give back the TOML path of each object.
    """
    paths: dict[int, KeyPath] = {}
    for script in config.vrrp_scripts:
        paths[id(script)] = ("vrrp_script", script.name)
    for inst in config.vrrp_instances:
        base: KeyPath = ("vrrp_instance", inst.name)
        paths[id(inst)] = base
        for key, items in (
            ("virtual_ipaddress", inst.virtual_ipaddress),
            ("virtual_ipaddress_excluded", inst.virtual_ipaddress_excluded),
            ("unicast_peer", inst.unicast_peer),
            ("track_script", inst.track_script),
            ("track_interface", inst.track_interface),
        ):
            for k, item in enumerate(items):
                paths[id(item)] = (*base, key, k)
    for group in config.virtual_server_groups:
        paths[id(group)] = ("virtual_server_group", group.name)
    for i, vs in enumerate(config.virtual_servers):
        vpath: KeyPath = ("virtual_server", i)
        paths[id(vs)] = vpath
        if vs.sorry_server is not None:
            paths[id(vs.sorry_server)] = (*vpath, "sorry_server")
        for j, rs in enumerate(vs.real_servers):
            rpath: KeyPath = (*vpath, "real_server", j)
            paths[id(rs)] = rpath
            counts: Counter[str] = Counter()
            for checker in rs.checkers:
                paths[id(checker)] = (*rpath, checker.kind, counts[checker.kind])
                counts[checker.kind] += 1
    return paths


# --------------------------------------------------------------------------- one file


def check_config(
    config: Config, paths: Mapping[int, KeyPath] | None = None, locator: Locator | None = None
) -> list[Diagnostic]:
    """Cross-field rules of one file. ``paths``/``locator`` come from the loader."""
    r = _Reporter(config, paths, locator)
    _check_instances(r)
    _check_vrid_clashes(r)
    _check_virtual_servers(r)
    _check_bgp(r)
    _check_maglev(r)
    _check_email_alerts(r)
    _check_inert(r)
    sync = config.global_.lvs_sync_daemon
    if sync is not None and sync.instance is not None:
        names = [i.name for i in config.vrrp_instances]
        if sync.instance not in names:
            r.report("error", ("global", "lvs_sync_daemon", "instance"),
                     f'no vrrp_instance is named "{sync.instance}"',
                     _did_you_mean(sync.instance, names), sync.instance)
    return r.found


def _check_email_alerts(r: _Reporter) -> None:
    """keepalived's e-mail alerts are accepted (imported configs carry them) but not sent."""
    hint = INERT["global.smtp_alert"]
    g = r.config.global_
    if g.smtp_alert:
        r.report("warning", ("global", "smtp_alert"), "e-mail alerts are not sent", hint, True)
    for inst in r.config.vrrp_instances:
        if inst.smtp_alert and not g.smtp_alert:
            r.report("warning", r.path(inst, "smtp_alert"), "e-mail alerts are not sent",
                     hint, True)


def _check_inert(r: _Reporter) -> None:
    """Settings that ask for what mailha does not do (:mod:`mailha.config.inert`).

    A setting is reported when its value differs from what mailha does anyway: an e-mail
    setting that is set at all, ``no_track`` on a VIP. ``check_unicast_src = false`` is
    reported by the loader, which alone knows whether it was written or defaulted.
    """
    g = r.config.global_
    email = {
        "notification_email": g.notification_email or None,
        "notification_email_from": g.notification_email_from,
        "smtp_server": g.smtp_server,
        "smtp_server_port": g.smtp_server_port if g.smtp_server_port != 25 else None,
        "smtp_helo_name": g.smtp_helo_name,
        "smtp_connect_timeout": g.smtp_connect_timeout if g.smtp_connect_timeout != 30 else None,
    }
    for key, value in email.items():
        if value is not None:
            r.report("warning", ("global", key), NO_EFFECT, INERT[f"global.{key}"], value)
    for inst in r.config.vrrp_instances:
        for vip in (*inst.virtual_ipaddress, *inst.virtual_ipaddress_excluded):
            if vip.no_track:
                r.report("warning", r.path(vip), f"no_track: {NO_EFFECT}",
                         INERT["virtual_ipaddress.no_track"], str(vip.ip))


def _did_you_mean(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    if close:
        return f'did you mean "{close[0]}"?'
    if names:
        return f"use one of: {', '.join(names)}"
    return "define it first"


def _check_instances(r: _Reporter) -> None:
    config = r.config
    script_names = [s.name for s in config.vrrp_scripts]
    owners: dict[IPAddress, KeyPath] = {}
    for inst in config.vrrp_instances:
        vips = (*inst.virtual_ipaddress, *inst.virtual_ipaddress_excluded)
        families = {v.address.version for v in inst.virtual_ipaddress}
        if len(families) > 1:
            first = inst.virtual_ipaddress[0].address.version
            odd = next(v for v in inst.virtual_ipaddress if v.address.version != first)
            r.report("error", r.path(odd),
                     f"virtual_ipaddress mixes IPv{first} and IPv{odd.address.version} addresses",
                     "a VRRP instance is of one family: move the other family to "
                     "virtual_ipaddress_excluded or to a second vrrp_instance", str(odd.address))
        if inst.version == 2 and 6 in families:
            r.report("error", r.path(inst, "version"), "IPv6 virtual addresses need VRRP version 3",
                     "set version = 3 (RFC 5798), or remove version to let mailha pick it", 2)
        for vip in vips:
            if vip.ip in owners:
                where = format_key(owners[vip.ip])
                r.report("error", r.path(vip), f"{vip.ip} is already configured at {where}",
                         "each virtual address belongs to one place; remove the duplicate",
                         str(vip.address))
            else:
                owners[vip.ip] = r.path(vip)
            dev = vip.dev or inst.interface
            if vip.label is not None and not vip.label.startswith(f"{dev}:"):
                r.report("warning", r.path(vip),
                         f'label "{vip.label}" does not start with "{dev}:"',
                         f'the kernel expects labels of the form "{dev}:NAME", e.g. "{dev}:mail"',
                         vip.label)
        _check_unicast(r, inst)
        _check_vip_is_no_node(r, inst, vips)
        _check_strict(r, inst)
        seen: set[str] = set()
        for tracked in inst.track_script:
            if tracked.name not in script_names:
                r.report("error", r.path(tracked), f'no vrrp_script is named "{tracked.name}"',
                         _did_you_mean(tracked.name, script_names), tracked.name)
            elif tracked.name in seen:
                r.report("warning", r.path(tracked), f'"{tracked.name}" is tracked twice',
                         "remove the duplicate entry", tracked.name)
            seen.add(tracked.name)
        if inst.priority == OWNER_PRIORITY and any(w for w in _weights(config, inst)):
            r.report("warning", r.path(inst, "priority"),
                     "an address owner (priority 255) ignores tracking weights",
                     "use priority 254 or lower if tracking should move the VIP", OWNER_PRIORITY)


def _check_unicast(r: _Reporter, inst: VrrpInstance) -> None:
    family = inst.family
    src = inst.unicast_src_ip
    if src is not None and inst.virtual_ipaddress and src.version != family:
        r.report("error", r.path(inst, "unicast_src_ip"),
                 f"unicast_src_ip is IPv{src.version} but the virtual addresses are IPv{family}",
                 "VRRP runs in the family of its virtual addresses; use a source of that family",
                 str(src))
    if src is not None and not inst.unicast_peer:
        r.report("warning", r.path(inst, "unicast_src_ip"),
                 "unicast_src_ip without unicast_peer: adverts go to the multicast group",
                 "list the other nodes in unicast_peer, or drop unicast_src_ip", str(src))
    seen: set[IPAddress] = set()
    for peer in inst.unicast_peer:
        addr = peer.address
        if src is not None and addr == src:
            r.report("error", r.path(peer), "a unicast peer is this node's own unicast_src_ip",
                     "list the *other* nodes' addresses in unicast_peer", str(addr))
        elif addr.version != (src.version if src is not None else family):
            r.report("error", r.path(peer),
                     f"unicast peer is IPv{addr.version} but this instance runs over "
                     f"IPv{src.version if src is not None else family}",
                     "every peer must be of the instance's family", str(addr))
        elif addr in seen:
            r.report("error", r.path(peer), f"{addr} is listed twice", "remove the duplicate",
                     str(addr))
        seen.add(addr)


def _check_vip_is_no_node(r: _Reporter, inst: VrrpInstance,
                          vips: Sequence[VirtualAddress]) -> None:
    """A VIP equal to a node's own address moves that node's address away with it."""
    nodes = {p.address for p in inst.unicast_peer}
    for src in (inst.unicast_src_ip, inst.mcast_src_ip):
        if src is not None:
            nodes.add(src)
    for vip in vips:
        if vip.ip in nodes:
            r.report("warning", r.path(vip),
                     f"virtual address {vip.ip} is also a node's own address (unicast_src_ip, "
                     "mcast_src_ip or unicast_peer)",
                     "give the VIP an address no node owns: a failover would take that "
                     "node's own address away", str(vip.ip))


def _check_strict(r: _Reporter, inst: VrrpInstance) -> None:
    """keepalived's vrrp_strict: what RFC 5798 does not know is reported.

    keepalived corrects or refuses these at start-up; mailha runs them as written and
    says so, so the same file does not mean two things without a word.
    """
    if not (inst.strict_mode or r.config.global_.vrrp_strict):
        return
    key = "strict_mode" if inst.strict_mode else "vrrp_strict"
    if inst.unicast_peer:
        r.report("warning", r.path(inst, "unicast_peer"),
                 f"{key} with unicast_peer: keepalived refuses this combination (RFC 5798 "
                 "knows only multicast)", f"remove {key}, or use multicast adverts")
    if inst.authentication is not None:
        r.report("warning", r.path(inst, "authentication"),
                 f"{key} with authentication: keepalived refuses this combination (RFC 5798 "
                 "has no authentication)", f"remove {key}, or remove authentication")
    if not inst.virtual_ipaddress:
        r.report("warning", r.path(inst, "virtual_ipaddress"),
                 f"{key} with no virtual_ipaddress: keepalived refuses an instance without "
                 "VIPs in strict mode", f"add the VIP, or remove {key}")
    if inst.preempt_delay:
        r.report("warning", r.path(inst, "preempt_delay"),
                 f"{key} with preempt_delay: RFC 5798 has no preemption delay (keepalived "
                 "clears it in strict mode; mailha applies it)",
                 f"remove preempt_delay, or remove {key}", inst.preempt_delay)
    if (inst.state is InitialState.MASTER) != (inst.priority == OWNER_PRIORITY):
        r.report("warning", r.path(inst, "state"),
                 f"{key}: state MASTER must go with priority 255 (the address owner) and "
                 "priority 255 with state MASTER; keepalived corrects the state",
                 'use state = "BACKUP" with a priority below 255', inst.state.value)


def _check_vrid_clashes(r: _Reporter) -> None:
    by_key: dict[tuple[str, int, int], list[VrrpInstance]] = defaultdict(list)
    for inst in r.config.vrrp_instances:
        by_key[(inst.interface, inst.family, inst.virtual_router_id)].append(inst)
    for (iface, family, vrid), insts in by_key.items():
        for a, b in itertools.combinations(insts, 2):
            if vrid == 0:  # a draft whose VRID was invalid: already reported
                continue
            if a.multicast or b.multicast or _overlap(a, b):
                r.report("error", r.path(b, "virtual_router_id"),
                         f'VRID {vrid} is also used by vrrp_instance "{a.name}" '
                         f"on {iface} (IPv{family})",
                         "give each virtual router on an interface its own virtual_router_id", vrid)


def _overlap(a: VrrpInstance, b: VrrpInstance) -> bool:
    return bool({p.address for p in a.unicast_peer} & {p.address for p in b.unicast_peer})


def _vs_family(vs: VirtualServer) -> int | None:
    if vs.ip is not None:
        return vs.ip.version
    return vs.ip_family


def _check_virtual_servers(r: _Reporter) -> None:
    config = r.config
    instances = {i.name: i for i in config.vrrp_instances}
    groups = [g.name for g in config.virtual_server_groups]
    services: dict[tuple[object, ...], KeyPath] = {}
    for vs in config.virtual_servers:
        if vs.vrrp_instance is not None and vs.vrrp_instance not in instances:
            r.report("error", r.path(vs, "vrrp_instance"),
                     f'no vrrp_instance is named "{vs.vrrp_instance}"',
                     _did_you_mean(vs.vrrp_instance, list(instances)), vs.vrrp_instance)
        elif vs.vrrp_instance is None and instances and vs.announce is Announce.VRRP:
            r.report("warning", r.path(vs),
                     "no vrrp_instance: this service is programmed on every node, and two nodes "
                     "that balance to each other bounce packets back and forth",
                     f'add vrrp_instance = "{next(iter(instances))}" so only the master balances')
        inst = instances.get(vs.vrrp_instance or "")
        if inst is not None and vs.ip is not None:
            vips = {v.ip for v in (*inst.virtual_ipaddress, *inst.virtual_ipaddress_excluded)}
            if vs.ip not in vips:
                r.report("warning", r.path(vs, "ip"),
                         f'{vs.ip} is not a virtual address of vrrp_instance "{inst.name}"',
                         "clients reach the service through the VIP: use one of "
                         + (", ".join(sorted(str(v) for v in vips)) or "its addresses"), str(vs.ip))
            elif inst.no_accept_mode:
                r.report("warning", r.path(inst, "accept"),
                         f"no accept mode drops everything addressed to {vs.ip} on the master, "
                         f"so {vs.label} receives nothing there",
                         "use accept = true (the default; with strict mode on VRRPv3 say it "
                         "explicitly), or make this node the address owner (priority 255)",
                         False)
        if vs.group is not None and vs.group not in groups:
            r.report("error", r.path(vs, "group"), f'no virtual_server_group is named "{vs.group}"',
                     _did_you_mean(vs.group, groups), vs.group)
        ident = (vs.protocol, vs.ip, vs.port, vs.fwmark, vs.group)
        if ident in services:
            r.report("error", r.path(vs), f"{vs.label} is already defined at "
                     f"{format_key(services[ident])}", "merge the two virtual_server tables")
        else:
            services[ident] = r.path(vs)
        _check_pool(r, vs)


def _check_bgp(r: _Reporter) -> None:
    """A BGP VIP is held on lo by every director: VRRP must not move it too."""
    config = r.config
    vrrp_vips = {v.ip: inst for inst in config.vrrp_instances
                 for v in (*inst.virtual_ipaddress, *inst.virtual_ipaddress_excluded)}
    for vs in config.bgp_services:
        inst = vrrp_vips.get(vs.ip) if vs.ip is not None else None
        if inst is not None:
            r.report("error", r.path(vs, "ip"),
                     f'{vs.ip} is announced by BGP and is also a virtual address of '
                     f'vrrp_instance "{inst.name}"',
                     "a VIP is either moved by VRRP or announced by BGP: use another address "
                     "for one of them", str(vs.ip))
    names = {i.interface for i in config.vrrp_instances} | {"lo"}
    if config.bgp_services and config.bgp.deadman_interface in names:
        r.report("error", ("bgp", "deadman_interface"),
                 f"{config.bgp.deadman_interface} is a real interface of this node",
                 "mailha creates the dead-man device itself: give it its own name, "
                 'e.g. "mailha-bgp"', config.bgp.deadman_interface)


def _check_pool(r: _Reporter, vs: VirtualServer) -> None:
    family = _vs_family(vs)
    seen: dict[tuple[IPAddress, int | None], int] = {}
    total = 0
    for rs in vs.real_servers:
        total += rs.weight
        if not rs.checkers:
            r.report("warning", r.path(rs, "ip"),
                     f"real server {rs.ip} has no health check: it is always up, and IPVS "
                     "keeps sending it sessions when it is down",
                     "add an SMTP_CHECK (or TCP_CHECK / MISC_CHECK) to the real_server",
                     str(rs.ip))
        if family is not None and rs.lvs_method is not LvsMethod.TUN and rs.ip.version != family:
            r.report("error", r.path(rs, "ip"),
                     f"real server is IPv{rs.ip.version} but the virtual server is IPv{family}",
                     'IPVS can only mix families with lvs_method = "TUN"', str(rs.ip))
        key = (rs.ip, rs.port)
        if key in seen:
            r.report("error", r.path(rs), f"real server {rs.ip} port {rs.port} is listed twice",
                     "remove the duplicate real_server", str(rs.ip))
        seen[key] = 1
        if (rs.lvs_method is LvsMethod.DR and vs.port is not None and rs.port is not None
                and rs.port != vs.port):
            r.report("warning", r.path(rs, "port"),
                     f"direct routing cannot change the port ({vs.port} -> {rs.port})",
                     f"use port = {vs.port}, or lvs_method = \"NAT\" to remap ports", rs.port)
    if vs.real_servers and total < vs.quorum:
        r.report("warning", r.path(vs, "quorum"),
                 f"quorum {vs.quorum} is above the total weight of all real servers ({total})",
                 "lower quorum, or the service never has quorum", vs.quorum)
    sorry = vs.sorry_server
    if sorry is not None and family is not None:
        method = sorry.lvs_method or vs.lvs_method
        if method is not LvsMethod.TUN and sorry.ip.version != family:
            r.report("error", r.path(sorry, "ip"),
                     f"sorry_server is IPv{sorry.ip.version} but the virtual server is IPv{family}",
                     'use an address of the same family, or lvs_method = "TUN"', str(sorry.ip))


def _check_maglev(r: _Reporter) -> None:
    """What defeats Maglev hashing across directors (:mod:`mailha.lvs.maglev`).

    The loader already refuses an mh service without mh-fallback or with
    ``inhibit_on_failure = false``; these are warnings because a single director may
    have its reasons.
    """
    g = r.config.global_
    maglev = [vs for vs in r.config.virtual_servers if vs.lvs_sched == MAGLEV]
    for key, protocol, on in (("lvs_sloppy_tcp", Protocol.TCP, g.lvs_sloppy_tcp),
                              ("lvs_sloppy_sctp", Protocol.SCTP, g.lvs_sloppy_sctp)):
        users = [vs.label for vs in maglev if vs.protocol is protocol]
        if users and not on:  # only written so: unset means true here
            r.report("warning", ("global", key),
                     f"{key} = false with mh service {users[0]}: a director that receives a "
                     "connection it did not see start (after the router rehashes flows, or a "
                     "failover) drops its packets instead of sending them on to the real "
                     "server the Maglev table names, so the connection breaks",
                     f"remove {key} (with mh services it defaults to true), unless a single "
                     "director balances these services", False)
    for vs in maglev:
        for rs in vs.real_servers:
            for checker in rs.checkers:
                if isinstance(checker, MiscCheck) and checker.misc_dynamic:
                    r.report("warning", r.path(checker, "misc_dynamic"),
                             f"misc_dynamic changes the weight of {rs.ip}, and each change "
                             f"rebuilds the Maglev table of {vs.label}: directors whose "
                             "checks see different weights send the same connection to "
                             "different real servers (mailha_ipvs_table_fingerprint differs)",
                             "use misc_dynamic = false with lvs_sched = \"mh\", or let a "
                             "single director balance this service", True)


# --------------------------------------------------------------------------- priorities


def _tracking(config: Config, inst: VrrpInstance) -> Iterator[tuple[str, int, bool]]:
    """(script name, effective weight, reverse) of each tracked script that exists."""
    for tracked in inst.track_script:
        try:
            script = config.script(tracked.name)
        except KeyError:
            continue
        yield tracked.name, *tracked.resolved(script)


def _weights(config: Config, inst: VrrpInstance) -> list[int]:
    weights = [w for _, w, _ in _tracking(config, inst)]
    return weights + [t.weight for t in inst.track_interface]


def effective_priority(config: Config, inst: VrrpInstance, failing: frozenset[str] = frozenset()
                       ) -> int | None:
    """The priority ``inst`` advertises with the scripts in ``failing`` down, the rest up.

    The daemon's own rule (:func:`mailha.vrrp.tracking.effective_priority`) on the
    configured scripts; FAULT is returned as None (the node stops advertising).
    """
    tracked = [Tracked(name, name not in failing, weight, reverse)
               for name, weight, reverse in _tracking(config, inst)]
    result = tracking.effective_priority(inst.priority, tracked)
    return None if result.fault else result.priority


# --------------------------------------------------------------------------- several files


def check_peers(configs: Sequence[Config]) -> list[Diagnostic]:
    """Rules between the nodes of one cluster: instances that share a VRID must agree.

    Instances pair up by virtual_router_id and family (names may differ between nodes).
    Disagreeing advert_int, version, VIPs, authentication or unicast peer lists are
    errors: the virtual router splits and both nodes hold the VIP. Equal priorities,
    two ``state MASTER`` nodes and tracking weights too small to move the VIP are
    warnings: it works, just not the way the file suggests.
    """
    reporters = [_Reporter(c) for c in configs]
    for ra, rb in itertools.combinations(reporters, 2):
        for a in ra.config.vrrp_instances:
            for b in rb.config.vrrp_instances:
                if (a.virtual_router_id, a.family) == (b.virtual_router_id, b.family):
                    _check_pair(ra, a, rb, b)
    return [d for r in reporters for d in r.found]


def _check_pair(ra: _Reporter, a: VrrpInstance, rb: _Reporter, b: VrrpInstance) -> None:
    other = f"{ra.config.source} ({format_key(ra.path(a))})"
    vrid = a.virtual_router_id
    for key, va, vb in (("advert_int", a.advert_int, b.advert_int),
                        ("version", a.version, b.version),
                        ("authentication", a.authentication, b.authentication),
                        ("down_timer_adverts", a.down_timer_adverts, b.down_timer_adverts)):
        if va != vb:
            shown = "(set)" if key == "authentication" and va is not None else va
            rb.report("error", rb.path(b, key), f"VRID {vrid}: {other} has {key} = "
                      f"{toml_repr(shown) if shown is not None else '(unset)'}",
                      f"every node of a virtual router needs the same {key}",
                      None if key == "authentication" else vb)
    vips_a = sorted(str(v.address) for v in a.virtual_ipaddress)
    vips_b = sorted(str(v.address) for v in b.virtual_ipaddress)
    if {v.ip for v in a.virtual_ipaddress} != {v.ip for v in b.virtual_ipaddress}:
        rb.report("error", rb.path(b, "virtual_ipaddress"),
                  f"VRID {vrid}: {other} has virtual_ipaddress = {toml_repr(vips_a)}",
                  "every node of a virtual router must list the same virtual addresses", vips_b)
    if a.multicast != b.multicast:
        (ru, _), (rm, m) = ((ra, a), (rb, b)) if b.multicast else ((rb, b), (ra, a))
        rm.report("error", rm.path(m), f"VRID {vrid}: this node uses multicast but "
                  f"{ru.config.source} sends unicast adverts",
                  "use unicast_peer on every node, or on none")
    elif not a.multicast:
        for rx, x, ry, y in ((ra, a, rb, b), (rb, b, ra, a)):
            src = y.unicast_src_ip
            if src is not None and src not in {p.address for p in x.unicast_peer}:
                rx.report("error", rx.path(x, "unicast_peer"),
                          f"VRID {vrid}: {ry.config.source} sends from {src}, which is not in "
                          "this node's unicast_peer", f'add "{src}" to unicast_peer',
                          [str(p.address) for p in x.unicast_peer])
    if a.state.value == b.state.value == "MASTER":
        rb.report("warning", rb.path(b, "state"),
                  f"VRID {vrid}: {other} also starts as MASTER",
                  'start one node as MASTER and the others as BACKUP; priority decides anyway',
                  "MASTER")
    _check_priorities(ra, a, rb, b)


def _primary(inst: VrrpInstance) -> IPAddress | None:
    return inst.unicast_src_ip or inst.mcast_src_ip


def _check_priorities(ra: _Reporter, a: VrrpInstance, rb: _Reporter, b: VrrpInstance) -> None:
    vrid = a.virtual_router_id
    pa, pb = effective_priority(ra.config, a), effective_priority(rb.config, b)
    if a.priority == b.priority:
        src_a, src_b = _primary(a), _primary(b)
        winner = ""
        if src_a is not None and src_b is not None and src_a != src_b:
            winner = f" (here {max(src_a, src_b)})"
        advertised = ""
        if pa == pb and pa is not None and pa != a.priority:
            advertised = (f"; with the tracking weights both nodes advertise {pa}, so a healthy "
                          "node never outranks the other")
        rb.report("warning", rb.path(b, "priority"),
                  f"VRID {vrid}: {ra.config.source} has the same priority ({a.priority}): the "
                  f"node with the higher IP address wins the election whatever state says"
                  f"{winner}{advertised}",
                  "give each node a different priority (e.g. 150 and 100), larger on the node "
                  "that should normally hold the VIP", b.priority)
        return
    if pa is None or pb is None:
        return
    (rw, w, pw), (rl, _, pl) = sorted(
        [(ra, a, pa), (rb, b, pb)], key=lambda x: x[2], reverse=True
    )
    if pw == pl:
        return
    if any(vs.vrrp_instance == w.name for vs in rw.config.virtual_servers):
        # Balanced with IPVS: a failed check drops the node's real server instead, and
        # keeping the VIP where it is avoids a needless failover. Intended, not a trap.
        return
    for name, weight, _ in _tracking(rw.config, w):
        down = effective_priority(rw.config, w, frozenset({name}))
        if down is not None and down >= pl:
            rw.report("warning", rw.path(w, "track_script"),
                      f'VRID {vrid}: when "{name}" fails here this node still advertises {down}, '
                      f"not below {pl} on {rl.config.source}, so the VIP stays on the failed node",
                      f"make the weight of {name} larger than the priority gap "
                      f"({pw - pl}), or use weight 0 to go to FAULT", weight)


# --------------------------------------------------------------------------- this host


def check_host(
    config: Config,
    owns_address: Callable[[IPAddress], bool],
    interface_exists: Callable[[str], bool],
) -> list[Diagnostic]:
    """Rules that depend on the machine: its interfaces and its own addresses."""
    r = _Reporter(config)

    def iface(path: KeyPath, name: str, severity: Severity = "error") -> None:
        if not interface_exists(name):
            r.report(severity, path, f'this host has no interface "{name}"',
                     "check `ip link`; interface names differ between machines", name)

    for inst in config.vrrp_instances:
        iface(r.path(inst, "interface"), inst.interface)
        for key in ("unicast_src_ip", "mcast_src_ip"):
            addr: IPAddress | None = getattr(inst, key)
            if addr is not None and not owns_address(addr):
                r.report("error", r.path(inst, key), f"{addr} is not an address of this host",
                         "use this node's own address (each node's file differs here)", str(addr))
        for vip in (*inst.virtual_ipaddress, *inst.virtual_ipaddress_excluded):
            if vip.dev is not None:
                iface(r.path(vip), vip.dev)
        for tracked in inst.track_interface:
            iface(r.path(tracked), tracked.name, "warning")
    sync = config.global_.lvs_sync_daemon
    if sync is not None:
        iface(("global", "lvs_sync_daemon", "interface"), sync.interface)
    for vs in config.virtual_servers:
        for rs in vs.real_servers:
            for checker in rs.checkers:
                common = checker.common
                if common.bind_if is not None:
                    iface(r.path(checker, "bind_if"), common.bind_if)
                if common.bindto is not None and not owns_address(common.bindto):
                    r.report("error", r.path(checker, "bindto"),
                             f"{common.bindto} is not an address of this host",
                             "bind checks to one of this node's addresses", str(common.bindto))
    return r.found


def _commands(config: Config) -> Iterator[tuple[object, str, ScriptCommand]]:
    for script in config.vrrp_scripts:
        yield script, "script", script.script
    for inst in config.vrrp_instances:
        for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
            cmd: ScriptCommand | None = getattr(inst, key)
            if cmd is not None:
                yield inst, key, cmd
    for vs in config.virtual_servers:
        for key in ("quorum_up", "quorum_down"):
            cmd = getattr(vs, key)
            if cmd is not None:
                yield vs, key, cmd
        for rs in vs.real_servers:
            for key in ("notify_up", "notify_down"):
                cmd = getattr(rs, key)
                if cmd is not None:
                    yield rs, key, cmd
            for checker in rs.checkers:
                misc = getattr(checker, "misc_path", None)
                if isinstance(misc, ScriptCommand):
                    yield checker, "misc_path", misc


def check_scripts(
    config: Config, *, severity: Severity = "warning",
    runnable: Callable[[Path], str | None],
    fs: scriptsec.FileSystem,
    accounts: scriptsec.Accounts,
) -> list[Diagnostic]:
    """Every script, notify and MISC_CHECK program must be an absolute, executable path.

    A program that runs with root's powers must also be safe from non-root users
    (:mod:`mailha.config.scriptsec`): an error with ``enable_script_security``, which
    promises such scripts are refused, and a warning without, as keepalived logs it.
    """
    r = _Reporter(config)
    for owner, key, cmd in _commands(config):
        program = cmd.argv[0]
        if not program.startswith("/"):
            r.report(severity, r.path(owner, key), f'"{program}" is not an absolute path',
                     "scripts run without a shell or PATH lookup: give the full path", str(cmd))
            continue
        reason = runnable(Path(program))
        if reason is not None:
            r.report(severity, r.path(owner, key), f"{program} {reason}",
                     f"install it, or fix the path (chmod +x {program} if it exists)", str(cmd))
            continue
        _check_script_security(r, r.path(owner, key), cmd, fs, accounts)
    return r.found


def _check_script_security(
    r: _Reporter, path: KeyPath, cmd: ScriptCommand, fs: scriptsec.FileSystem,
    accounts: scriptsec.Accounts,
) -> None:
    ids = accounts.ids(*scriptsec.run_as(cmd, r.config.global_))
    if ids is None:  # an unknown user or group: the script cannot start at all
        return
    found = scriptsec.unsafe_script(cmd.argv[0], *ids, fs)
    if found is None:
        return
    enforced = r.config.global_.enable_script_security
    where = found.component
    chown = "chown -h" if stat.S_ISLNK(where.stat.mode) else "chown"
    own_user = cmd.user is not None and cmd.user != r.config.global_.script_user
    whose = "this script's user" if own_user else "script_user"
    r.report(
        "error" if enforced else "warning", path,
        f"{found.program} {found.privilege} but a non-root user can modify it: "
        f"{where.describe(accounts.user_name, accounts.group_name)}; "
        + ("enable_script_security refuses to run it" if enforced
           else "enable_script_security = true would refuse to run it"),
        f"{chown} root and chmod go-w {where.path}, or set {whose} to an unprivileged user",
        str(cmd),
    )


def check_bgp_host(config: Config, *, is_socket: Callable[[Path], bool],
                   is_dir: Callable[[Path], bool], tun_exists: bool) -> list[Diagnostic]:
    """The BGP mode's needs on this machine, as warnings: BIRD may start after mailha
    (which retries), and a missing include directory fails the start with its own error.
    The machine is probed by the caller (:mod:`mailha.hostprobe`)."""
    if not config.bgp_services:
        return []
    r = _Reporter(config)
    bgp = config.bgp
    if not is_socket(bgp.bird_socket):
        r.report("warning", ("bgp", "bird_socket"),
                 f"no BIRD control socket at {bgp.bird_socket}: nothing is announced until "
                 "BIRD runs there", "start BIRD (systemctl start bird), or fix bird_socket",
                 str(bgp.bird_socket))
    if not is_dir(bgp.include_file.parent):
        r.report("warning", ("bgp", "include_file"),
                 f"{bgp.include_file.parent} does not exist: mailha cannot write its "
                 "include file there", "install bird2, or set include_file",
                 str(bgp.include_file))
    if not tun_exists:
        r.report("warning", ("bgp", "deadman_interface"),
                 "/dev/net/tun is missing: mailha cannot create its dead-man tun device",
                 "load the tun module: modprobe tun", bgp.deadman_interface)
    return r.found


def check_control_socket(config: Config,
                         problem: Callable[[Path], str | None]) -> list[Diagnostic]:
    """``[control] socket`` must be free or a socket: the daemon replaces what is there.

    Only a socket may be replaced (a stale one; a live one is refused when the daemon
    starts, and is expected here while the daemon runs -- ``check --host`` and reload
    see their own daemon's socket). A regular file, directory, symlink or FIFO at that
    path is somebody's data, so it is an error naming the path and the fix.
    """
    path = config.control.socket
    found = problem(path)
    if found is None:
        return []
    r = _Reporter(config)
    r.report("error", ("control", "socket"), f"{path} {found}", SOCKET_PATH_FIX)
    return r.found
