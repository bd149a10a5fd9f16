"""Which IPVS connection-sync daemons should run, from ``lvs_sync_daemon`` and VRRP state.

The kernel's sync daemon copies the director's connection table to its peers, so a
new master keeps forwarding established SMTP sessions to the real server they
started on instead of re-scheduling them mid-transaction. keepalived.conf(5) fixes
the semantics this module reproduces:

* without ``instance``, both the master and the backup daemon run for as long as the
  node runs (each node sends its connections and receives the other's);
* with ``instance``, the master daemon runs while that VRRP instance is MASTER and
  the backup daemon in every other state (the initial one included), so only the
  node that forwards sends, and the others are ready to take over;
* ``sync_id`` defaults to the instance's VRID, or 0 without an instance: peers only
  accept sync messages carrying their own id.

Pure: the manager feeds it states and applies the difference over netlink.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from mailha.config.model import LvsSyncDaemon
from mailha.lvs.wire import DaemonInfo, DaemonState
from mailha.vrrp.events import State


def sync_id_for(cfg: LvsSyncDaemon, vrid_of: Callable[[str], int]) -> int:
    """The configured sync id, else the followed instance's VRID, else 0."""
    if cfg.sync_id is not None:
        return cfg.sync_id
    return 0 if cfg.instance is None else vrid_of(cfg.instance)


def wanted_states(cfg: LvsSyncDaemon, state: State | None) -> frozenset[DaemonState]:
    """Master and/or backup, given the state of the followed instance (None: unknown)."""
    if cfg.instance is None:
        return frozenset(("master", "backup"))
    return frozenset(("master",) if state is State.MASTER else ("backup",))


def wanted_sync_daemons(
    cfg: LvsSyncDaemon, vrid_of: Callable[[str], int], state: State | None
) -> set[DaemonInfo]:
    """The daemons that should run, with every setting they should run with.

    ``state`` is the state of ``cfg.instance`` (ignored without an instance);
    ``vrid_of`` maps an instance name to its VRID, for the default sync id.
    Returning whole daemons rather than just "master"/"backup" lets the caller
    restart one whose interface or sync id changed on reload.
    """
    sync_id = sync_id_for(cfg, vrid_of)
    return {
        DaemonInfo(
            state=which,
            interface=cfg.interface,
            sync_id=sync_id,
            maxlen=cfg.maxlen,
            port=cfg.port,
            ttl=cfg.ttl,
            group=cfg.group,
        )
        for which in wanted_states(cfg, state)
    }


@dataclass(frozen=True, slots=True)
class SyncDaemonChanges:
    """What to stop and start so the kernel runs ``wanted``; stops come first."""

    stop: tuple[DaemonInfo, ...]
    start: tuple[DaemonInfo, ...]


def sync_daemon_changes(
    running: Iterable[DaemonInfo],
    wanted: Mapping[DaemonState, DaemonInfo],
    managed: Collection[DaemonState],
) -> SyncDaemonChanges:
    """Stop a managed daemon that is not wanted or runs otherwise; start what is missing.

    A daemon in a state this node does not manage (``managed``) is left alone, even if
    it differs from what is wanted: without ``lvs_sync_daemon`` the kernel's daemons
    may be the admin's. One that runs with the wanted settings is kept, not restarted.
    """
    now = {d.state: d for d in running}
    stop = []
    for which in sorted(managed):
        have, want = now.get(which), wanted.get(which)
        if have is not None and (want is None or not want.matches(have)):
            stop.append(have)
            del now[which]
    start = [want for which, want in sorted(wanted.items()) if which not in now]
    return SyncDaemonChanges(tuple(stop), tuple(start))
