"""What a reload will change, decided from the two configurations before anything moves.

``mailha reload`` (SIGHUP) restarts only what it must. Restarting a VRRP instance gives
up mastership for a moment and a restarted check forgets what it found, so the rules for
"in place" versus "restart" matter to the admin as much as the new settings do; they
are here, pure and unit-tested, and :meth:`mailha.daemon.Node._apply` carries the plan out.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields

from mailha.config.model import Config, GlobalConfig, VrrpInstance

#: Settings a running instance can take over without restarting (so without giving up
#: mastership): everything but what identifies the virtual router on the wire.
SOFT_FIELDS = frozenset({
    "priority", "virtual_ipaddress", "virtual_ipaddress_excluded", "track_script",
    "track_interface", "dont_track_primary", "notify_master", "notify_backup",
    "notify_fault", "notify_stop", "notify", "smtp_alert", "check_unicast_src",
    "garp_master_delay", "garp_master_repeat", "garp_lower_prio_delay",
    "garp_lower_prio_repeat", "garp_master_refresh", "garp_master_refresh_repeat",
})


def soft_change(old: VrrpInstance, new: VrrpInstance, old_global: GlobalConfig,
                new_global: GlobalConfig) -> bool:
    """True if a running instance can take ``new`` in place (only soft settings moved).

    Not soft: the VRRP version (the wire format), becoming or ceasing to be the address
    owner (priority 255 changes the election's rules), the address families of the VIPs
    (another socket), or an empty VIP list.
    """
    if old_global.vrrp_version != new_global.vrrp_version:
        return False
    if (old.priority == 255) != (new.priority == 255):
        return False
    old_families = {v.ip.version for v in old.virtual_ipaddress}
    new_families = {v.ip.version for v in new.virtual_ipaddress}
    if old_families != new_families or not new.virtual_ipaddress:
        return False
    return all(getattr(old, f.name) == getattr(new, f.name)
               for f in fields(old) if f.name not in SOFT_FIELDS)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The parts a reload touches; everything else keeps running untouched."""

    retire: tuple[str, ...] = ()      # instances removed from the file
    in_place: tuple[str, ...] = ()    # running instances that take soft settings
    restart: tuple[str, ...] = ()     # instances stopped and started afresh
    add: tuple[str, ...] = ()         # new instances
    scripts: bool = False             # the track-script runner is rebuilt
    lvs: bool = False                 # virtual servers (or the global section) changed
    operations: bool = False          # metrics endpoint and control socket restart
    bgp: bool = False                 # the BGP mode's services or [bgp] changed

    @property
    def started(self) -> tuple[str, ...]:
        """Instances that get a new driver: the restarted ones, then the added ones."""
        return tuple(n for n in (*self.restart, *self.add))

    def describe(self) -> str:
        parts = [f"removed instance {n}" for n in self.retire]
        parts += [f"updated instance {n} in place" for n in self.in_place]
        parts += [f"restarted instance {n}" for n in self.restart]
        parts += [f"added instance {n}" for n in self.add]
        if self.lvs:
            parts.append("virtual servers updated")
        if self.bgp:
            parts.append("BGP announcements updated")
        if self.operations:
            parts.append("metrics and control socket restarted")
        return "; ".join(parts) or "applied"


def plan_reload(old: Config, new: Config, running: Collection[str]) -> ReloadPlan:
    """What applying ``new`` over ``old`` does; ``running``: instances started now."""
    old_instances = {i.name: i for i in old.vrrp_instances}
    in_place: list[str] = []
    restart: list[str] = []
    add: list[str] = []
    for inst in new.vrrp_instances:
        was = old_instances.get(inst.name)
        if was == inst and old.global_ == new.global_:
            continue
        if was is None:
            add.append(inst.name)
        elif inst.name in running and soft_change(was, inst, old.global_, new.global_):
            in_place.append(inst.name)
        else:
            restart.append(inst.name)
    new_names = {i.name for i in new.vrrp_instances}
    return ReloadPlan(
        retire=tuple(n for n in old_instances if n not in new_names),
        in_place=tuple(in_place),
        restart=tuple(restart),
        add=tuple(add),
        scripts=old.vrrp_scripts != new.vrrp_scripts or old.vrrp_instances != new.vrrp_instances,
        lvs=old.virtual_servers != new.virtual_servers or old.global_ != new.global_,
        operations=old.metrics != new.metrics or old.control != new.control,
        bgp=old.bgp_services != new.bgp_services or old.bgp != new.bgp,
    )
