"""What ``mailha status`` and the metrics show of the LVS side, from one kernel read (pure).

The kernel's table is the truth an admin wants to see (what IPVS forwards now, with its
counters), but only for the services this node owns: a foreign service (another tool's,
or one ``ipvsadm`` added by hand) is neither shown nor exported. The checks' part comes
from the last result of every checker, so a status shows why a real server is out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypedDict

from mailha.checkers.quorum import VirtualServerHealth
from mailha.config.model import RealServer, VirtualServer
from mailha.lvs.health import LastResults
from mailha.lvs.maglev import is_maglev
from mailha.lvs.model import ObservedTable, ServiceKey
from mailha.lvs.names import rs_label
from mailha.metrics import IpvsSnapshot


class DestinationStatus(TypedDict):
    address: str
    forward: str
    weight: int
    active: int
    inactive: int


class ServiceStatus(TypedDict):
    service: str
    scheduler: str
    #: Maglev (mh) services: :func:`mailha.lvs.maglev.fingerprint` of the kernel's
    #: table, to compare directors by hand (the metric has the same value); else None.
    fingerprint: int | None
    destinations: list[DestinationStatus]


class CheckStatus(TypedDict):
    service: str
    real_server: str
    checker: str
    drained: bool
    up: bool
    reason: str
    age: float | None


class LvsStatus(TypedDict):
    ipvs: list[ServiceStatus]
    checks: list[CheckStatus]


def maglev_services(observed: ObservedTable, owned: Collection[Any],
                    configured: Collection[Any]) -> list[ServiceKey]:
    """Owned services to fingerprint: Maglev in the kernel or in the configuration.

    A service configured mh that the kernel holds with another scheduler (changed by
    hand) is fingerprinted too, so its directors' values differ and the alert says so.
    """
    return [key for key in observed
            if key in owned and (key in configured or is_maglev(observed[key].service))]


def ipvs_status(observed: ObservedTable, owned: Collection[Any],
                fingerprints: Mapping[ServiceKey, int] | None = None) -> list[ServiceStatus]:
    """The owned services as the kernel holds them, sorted, with connection counts."""
    fingerprints = fingerprints or {}
    services: list[ServiceStatus] = []
    for key in sorted(observed, key=lambda k: k.sort_key()):
        if key not in owned:
            continue
        vsrv = observed[key]
        st = observed.stats(key)
        dests: list[DestinationStatus] = []
        for dkey, dest in sorted(vsrv.destinations.items(), key=lambda kv: kv[0].sort_key()):
            ds = st.destinations.get(dkey)
            dests.append({
                "address": str(dkey),
                "forward": dest.forward.name,
                "weight": dest.weight,
                "active": ds.active_conns if ds else 0,
                "inactive": ds.inactive_conns if ds else 0,
            })
        services.append({"service": str(key), "scheduler": vsrv.service.scheduler,
                         "fingerprint": fingerprints.get(key), "destinations": dests})
    return services


def check_status(health: Sequence[VirtualServerHealth], last_results: LastResults,
                 is_drained: Callable[[RealServer, VirtualServer], bool],
                 now: float) -> list[CheckStatus]:
    """Every checker of every real server: up or not, its last reason and how old it is."""
    checks: list[CheckStatus] = []
    for i, svc in enumerate(health):
        vs = svc.virtual_server
        for j, rs in enumerate(vs.real_servers):
            held = svc.real_servers[j].watches_down
            for k, checker in enumerate(rs.checkers):
                entry = last_results.get((i, j, k))
                reason = entry[0].reason if entry else "not checked yet"
                if held:  # a check may pass meanwhile: say why the server is out anyway
                    reason = f"local_watch: {'+'.join(sorted(held))} gone (last check: {reason})"
                checks.append({
                    "service": vs.label,
                    "real_server": rs_label(rs, vs),
                    "checker": checker.kind,
                    "drained": is_drained(rs, vs),
                    "up": bool(svc.real_servers[j].alive),
                    "reason": reason,
                    "age": round(now - entry[1], 1) if entry else None,
                })
    return checks


def ipvs_snapshot(observed: ObservedTable, owned: Collection[Any],
                  fingerprints: Mapping[ServiceKey, int] | None = None) -> IpvsSnapshot:
    """The owned services' counters, for the metrics collector (read at scrape time),
    and the fingerprints of their Maglev tables."""
    snap = IpvsSnapshot()
    snap.fingerprints = {str(key): value for key, value in (fingerprints or {}).items()}
    for key in observed:
        if key not in owned:
            continue
        st = observed.stats(key)
        s = st.stats
        snap.services[str(key)] = {
            "conns": s.conns,
            "inpkts": s.inpkts,
            "outpkts": s.outpkts,
            "inbytes": s.inbytes,
            "outbytes": s.outbytes,
        }
        for dkey, dest in observed[key].destinations.items():
            ds = st.destinations.get(dkey)
            if ds is None:
                continue
            snap.backends[(str(key), str(dkey))] = {
                "active": ds.active_conns,
                "inactive": ds.inactive_conns,
                "weight": dest.weight,
                "conns": ds.stats.conns,
                "inbytes": ds.stats.inbytes,
                "outbytes": ds.stats.outbytes,
            }
    return snap
