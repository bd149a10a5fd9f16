"""Configuration + health + mastership -> the IPVS table this node wants (pure).

This is the one place that translates keepalived-style ``virtual_server`` settings into the
kernel's model (:mod:`mailha.lvs.model`): scheduler flags by name, persistence granularity
as a prefix, NAT/DR/TUN as forwarding methods, virtual_server_group members expanded into
services. Which destinations are present, and with what weight, comes from the health
checks (:class:`~mailha.checkers.quorum.DesiredPool`); whether a service is programmed at
all comes from the VRRP state of the instance it follows (mailha's ``vrrp_instance`` key:
only the master balances, so two all-in-one nodes never forward each other's packets).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping
from ipaddress import ip_address

from mailha.checkers.quorum import SORRY_WEIGHT, DesiredPool
from mailha.config.model import (
    MAGLEV,
    Announce,
    Config,
    LvsMethod,
    Protocol,
    RealServer,
    SorryServer,
    TunnelOptions,
    TunnelType,
    VirtualServer,
)
from mailha.ip import IPAddress
from mailha.lvs.model import (
    MH_FALLBACK,
    MH_PORT,
    SH_FALLBACK,
    SH_PORT,
    Destination,
    Forward,
    IpProtocol,
    Persistence,
    Service,
    ServiceFlags,
    ServiceKey,
    ServiceRow,
    Tunnel,
    TunnelEncap,
    TunnelFlags,
)
from mailha.vrrp.events import State

_FLAGS = {
    "flag-1": ServiceFlags.SCHED1,
    "flag-2": ServiceFlags.SCHED2,
    "flag-3": ServiceFlags.SCHED3,
    "sh-fallback": SH_FALLBACK,
    "sh-port": SH_PORT,
    "mh-fallback": MH_FALLBACK,
    "mh-port": MH_PORT,
}
_FORWARD = {LvsMethod.NAT: Forward.MASQ, LvsMethod.DR: Forward.ROUTE, LvsMethod.TUN: Forward.TUNNEL}
_PROTOCOL = {
    Protocol.TCP: IpProtocol.TCP,
    Protocol.UDP: IpProtocol.UDP,
    Protocol.SCTP: IpProtocol.SCTP,
}
_TUNNEL_TYPE = {
    TunnelType.IPIP: TunnelEncap.IPIP,
    TunnelType.GUE: TunnelEncap.GUE,
    TunnelType.GRE: TunnelEncap.GRE,
}
_TUNNEL_FLAGS = {
    None: TunnelFlags(0),
    "nocsum": TunnelFlags(0),
    "csum": TunnelFlags.CSUM,
    "remcsum": TunnelFlags.REMCSUM,
}


def service_keys(config: Config, vs: VirtualServer) -> list[ServiceKey]:
    """The kernel services one ``virtual_server`` stands for (several for a group)."""
    proto = _PROTOCOL[vs.protocol]
    if vs.fwmark is not None:
        family = socket.AF_INET6 if vs.ip_family == 6 else socket.AF_INET
        return [ServiceKey.for_fwmark(vs.fwmark, family)]
    if vs.ip is not None:
        return [ServiceKey.for_address(vs.ip, vs.port or 0, proto)]
    keys: list[ServiceKey] = []
    group = next(g for g in config.virtual_server_groups if g.name == vs.group)
    for member in group.members:
        if member.fwmark is not None:
            family = socket.AF_INET6 if member.family == 6 else socket.AF_INET
            keys.append(ServiceKey.for_fwmark(member.fwmark, family))
            continue
        assert member.first is not None
        last = member.last or member.first
        for value in range(int(member.first), int(last) + 1):
            keys.append(ServiceKey.for_address(ip_address(value), member.port or 0, proto))
    return keys


def owned_keys(config: Config) -> set[ServiceKey]:
    """Every service this configuration may program: mailha owns exactly these."""
    return {key for vs in config.virtual_servers for key in service_keys(config, vs)}


def maglev_keys(config: Config) -> frozenset[ServiceKey]:
    """The services this configuration wants with the Maglev (``mh``) scheduler."""
    return frozenset(key for vs in config.virtual_servers if vs.lvs_sched == MAGLEV
                     for key in service_keys(config, vs))


def _tunnel(opts: TunnelOptions | None) -> Tunnel:
    if opts is None:
        return Tunnel()
    return Tunnel(_TUNNEL_TYPE[opts.type], opts.port or 0, _TUNNEL_FLAGS[opts.checksum])


def _service(key: ServiceKey, vs: VirtualServer) -> Service:
    flags = ServiceFlags(0)
    for name in vs.sched_flags:
        flags |= _FLAGS[name]
    persistence = None
    if vs.persistence_timeout:
        prefix = None
        if vs.persistence_granularity is not None:
            bits = int(vs.persistence_granularity)
            width = 32 if vs.persistence_granularity.version == 4 else 128
            prefix = bin(bits).count("1") if bits else 0
            if prefix == width:
                prefix = None
        persistence = Persistence(vs.persistence_timeout, prefix)
    return Service(key, vs.lvs_sched, flags, persistence, vs.ops)


def _dest(
    ip: IPAddress,
    port: int,
    method: LvsMethod,
    tunnel: TunnelOptions | None,
    weight: int,
    table_weight: int,
    u: int = 0,
    lower: int = 0,
) -> Destination:
    forward = _FORWARD[method]
    return Destination(
        ip, port, forward, weight, u, lower, _tunnel(tunnel) if forward == Forward.TUNNEL else None,
        table_weight=table_weight if weight == 0 else None,
    )


def destinations(key: ServiceKey, vs: VirtualServer, pool: DesiredPool) -> Iterator[Destination]:
    """The destinations of one service from the health state of its pool.

    A destination at weight 0 (failed with ``inhibit_on_failure``, or drained) carries
    its configured weight as its table weight: the share of a Maglev table it keeps
    while quiesced (:mod:`mailha.lvs.maglev`).
    """
    for member in pool.members:
        if member.weight is None:
            continue
        rs: RealServer = member.real_server
        port = rs.port if rs.port is not None else key.port
        yield _dest(
            rs.ip,
            port,
            rs.lvs_method,
            rs.tunnel or vs.tunnel,
            member.weight,
            rs.weight,
            rs.uthreshold,
            rs.lthreshold,
        )
    sorry: SorryServer | None = pool.sorry_server
    if sorry is not None and pool.sorry_weight is not None:
        port = sorry.port if sorry.port is not None else key.port
        yield _dest(sorry.ip, port, sorry.lvs_method or vs.lvs_method, vs.tunnel,
                    pool.sorry_weight, SORRY_WEIGHT)


def desired_table(
    config: Config,
    pools: Mapping[int, DesiredPool],
    programmed: Callable[[VirtualServer], bool],
) -> dict[ServiceKey, ServiceRow]:
    """The table to converge to: services of ``config.virtual_servers[i]`` with ``pools[i]``.

    ``programmed(vs)`` says whether this node balances ``vs`` now (the master of its
    ``vrrp_instance``); services it does not balance are absent, so the planner withdraws
    them.
    """
    table: dict[ServiceKey, ServiceRow] = {}
    for index, vs in enumerate(config.virtual_servers):
        if not programmed(vs) or index not in pools:
            continue
        for key in service_keys(config, vs):
            dests: dict[tuple[IPAddress, int], Destination] = {}
            for d in destinations(key, vs, pools[index]):
                dests.setdefault((d.address, d.port), d)
            table[key] = ServiceRow.of(_service(key, vs), dests.values())
    return table


def is_programmed(vs: VirtualServer, instance_states: Mapping[str, State]) -> bool:
    """Whether this node programs ``vs`` now: it follows an instance that is MASTER here,
    or (``ha_suspend``) any instance is MASTER, or it follows no instance at all; a
    service announced by BGP always (BGP, not IPVS, decides whether traffic comes)."""
    if vs.announce is Announce.BGP:
        return True
    if vs.vrrp_instance is not None:
        return instance_states.get(vs.vrrp_instance) is State.MASTER
    if vs.ha_suspend:
        return any(s is State.MASTER for s in instance_states.values())
    return True
