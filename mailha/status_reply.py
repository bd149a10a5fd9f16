"""The shape of ``mailha status``'s reply, typed, and its per-instance part (pure).

The reply is JSON on the control socket (``mailha status --json`` prints it as is), so
its keys are an interface admins script against: they are declared here once, and
:func:`mailha.control.render_status` and the daemon both follow the declaration.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypedDict

from mailha.config.model import VrrpInstance
from mailha.ip import IPAddress
from mailha.lvs.status import CheckStatus, ServiceStatus
from mailha.vrrp.events import State
from mailha.vrrp.track_scripts import TrackingStatus


class InstanceStatus(TrackingStatus):
    name: str
    state: str
    priority: int
    base_priority: int
    vrid: int
    interface: str
    master: str | None
    vips: list[str]
    faults: list[str]


class StatusReply(TypedDict):
    ok: bool
    version: str
    router_id: str | None
    config: str
    config_sha256: str | None
    config_loaded_at: float
    config_file_changed: bool
    last_reload: dict[str, Any] | None
    components: dict[str, Any]
    failure: str | None
    uptime: float
    instances: list[InstanceStatus]
    scripts: dict[str, Any]
    ipvs: list[ServiceStatus]
    checks: list[CheckStatus]
    bgp: dict[str, Any] | None  # the BGP mode (mailha.bgp.director); None without it


def instance_status(cfg: VrrpInstance, state: State, priority: int, *,
                    master_address: IPAddress | None, primary: IPAddress | None,
                    faults: Collection[str], tracking: TrackingStatus) -> InstanceStatus:
    """One VRRP instance: state, priorities, who is master, and why it is in FAULT.

    ``master`` is the master this node hears; a master hears none, so it names itself
    by its primary address.
    """
    master = master_address if master_address is not None else (
        primary if state is State.MASTER else None)
    return {
        "name": cfg.name,
        "state": state.value,
        "priority": priority,
        "base_priority": cfg.priority,
        "vrid": cfg.virtual_router_id,
        "interface": cfg.interface,
        "master": None if master is None else str(master),
        "vips": [str(v.address) for v in cfg.virtual_ipaddress],
        "faults": sorted(faults),
        **tracking,
    }
