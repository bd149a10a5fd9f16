"""Whether each BGP VIP should be announced, and why not (pure).

A VIP is ready when EVERY ``announce = "bgp"`` virtual server on it is: its IPVS service
is in the kernel (the last reconcile applied it), at least ``min_healthy`` of its real
servers are up (in the pool with a weight above 0: a drained or inhibited server does not
count, nor does the sorry server), and the director is not drained. Announcing a VIP
with one service ready and another not would send that other service's clients to a
director that cannot serve them. Whether BIRD is reachable is not part of readiness:
it decides whether the readiness *can* be applied, and shows beside it
(``mailha_bgp_vip_ready`` 1 with ``mailha_bgp_vip_announced`` 0 is the alert's case).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailha.ip import IPAddress

__all__ = ["ServiceInput", "VipReadiness", "readiness"]


@dataclass(frozen=True)
class ServiceInput:
    """What the LVS side knows about one ``announce = "bgp"`` virtual server."""

    label: str  # TCP 10.12.49.37:25
    vip: IPAddress
    programmed: bool  # its IPVS service is in the kernel
    healthy: int  # real servers in the pool with a weight above 0
    total: int  # real servers configured
    min_healthy: int


@dataclass(frozen=True)
class VipReadiness:
    """One VIP's verdict; ``reasons`` says why it is not ready (empty when it is)."""

    vip: IPAddress
    services: tuple[str, ...]
    reasons: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.reasons


def readiness(services: Iterable[ServiceInput], *, drained: bool) -> tuple[VipReadiness, ...]:
    """Every VIP of ``services``, in address order, with the reasons it is not ready."""
    by_vip: dict[IPAddress, list[ServiceInput]] = {}
    for svc in services:
        by_vip.setdefault(svc.vip, []).append(svc)
    out = []
    for vip in sorted(by_vip, key=lambda a: (a.version, int(a))):
        reasons = []
        if drained:
            reasons.append("the director is drained (mailha undrain director)")
        for svc in by_vip[vip]:
            if not svc.programmed:
                reasons.append(f"{svc.label}: not programmed in IPVS yet")
            if svc.healthy < svc.min_healthy:
                reasons.append(f"{svc.label}: {svc.healthy} of {svc.total} real servers up, "
                               f"min_healthy is {svc.min_healthy}")
        out.append(VipReadiness(vip, tuple(s.label for s in by_vip[vip]), tuple(reasons)))
    return tuple(out)
