"""Which sync daemons run: keepalived.conf(5)'s ``lvs_sync_daemon`` rules, state by state."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from mailha.config.model import LvsSyncDaemon
from mailha.lvs.syncd import (
    SyncDaemonChanges,
    sync_daemon_changes,
    sync_id_for,
    wanted_states,
    wanted_sync_daemons,
)
from mailha.lvs.wire import DaemonInfo
from mailha.vrrp.events import State

VRIDS = {"VI_postfix": 173, "VI_other": 42}


def _states(cfg: LvsSyncDaemon, state: State | None) -> set[str]:
    return {d.state for d in wanted_sync_daemons(cfg, VRIDS.__getitem__, state)}


@pytest.mark.parametrize("state", [None, *State])
def test_without_an_instance_both_daemons_run_whatever_the_state(state: State | None) -> None:
    assert _states(LvsSyncDaemon("eth0"), state) == {"master", "backup"}


def test_with_an_instance_the_master_daemon_runs_while_it_is_master() -> None:
    assert _states(LvsSyncDaemon("eth0", "VI_postfix"), State.MASTER) == {"master"}


@pytest.mark.parametrize("state", [None, State.INIT, State.BACKUP, State.FAULT, State.STOPPED])
def test_with_an_instance_the_backup_daemon_runs_otherwise(state: State | None) -> None:
    assert _states(LvsSyncDaemon("eth0", "VI_postfix"), state) == {"backup"}


def test_sync_id_defaults_to_the_instances_vrid_else_zero() -> None:
    assert sync_id_for(LvsSyncDaemon("eth0", "VI_postfix"), VRIDS.__getitem__) == 173
    assert sync_id_for(LvsSyncDaemon("eth0", "VI_other"), VRIDS.__getitem__) == 42
    assert sync_id_for(LvsSyncDaemon("eth0"), VRIDS.__getitem__) == 0
    assert sync_id_for(LvsSyncDaemon("eth0", "VI_postfix", sync_id=9), VRIDS.__getitem__) == 9
    # An explicit 0 is a choice, not "unset".
    assert sync_id_for(LvsSyncDaemon("eth0", "VI_postfix", sync_id=0), VRIDS.__getitem__) == 0


def test_the_seed_config_gives_the_full_daemon() -> None:
    cfg = LvsSyncDaemon("eth0", "VI_postfix", maxlen=1400, ttl=2, group=IPv4Address("239.0.0.9"))
    assert wanted_sync_daemons(cfg, VRIDS.__getitem__, State.MASTER) == {
        DaemonInfo("master", "eth0", 173, 1400, 8848, 2, IPv4Address("239.0.0.9"))
    }
    assert wanted_sync_daemons(cfg, VRIDS.__getitem__, State.BACKUP) == {
        DaemonInfo("backup", "eth0", 173, 1400, 8848, 2, IPv4Address("239.0.0.9"))
    }


def test_a_failover_swaps_one_daemon_for_the_other() -> None:
    cfg = LvsSyncDaemon("eth0", "VI_postfix")
    before = wanted_sync_daemons(cfg, VRIDS.__getitem__, State.BACKUP)
    after = wanted_sync_daemons(cfg, VRIDS.__getitem__, State.MASTER)
    assert before.isdisjoint(after)
    assert wanted_states(cfg, State.MASTER) == {"master"}


def _daemon(state: str, iface: str = "eth0", sync_id: int = 5) -> DaemonInfo:
    return DaemonInfo(state=state, interface=iface, sync_id=sync_id)  # type: ignore[arg-type]


def test_a_daemon_running_as_wanted_is_kept_not_restarted() -> None:
    m = _daemon("master")
    assert sync_daemon_changes([m], {"master": m}, {"master", "backup"}) == \
        SyncDaemonChanges(stop=(), start=())


def test_a_daemon_running_otherwise_is_stopped_then_started_again() -> None:
    old, new = _daemon("master", sync_id=4), _daemon("master", sync_id=5)
    assert sync_daemon_changes([old], {"master": new}, {"master", "backup"}) == \
        SyncDaemonChanges(stop=(old,), start=(new,))


def test_a_transition_swaps_backup_for_master() -> None:
    b, m = _daemon("backup"), _daemon("master")
    assert sync_daemon_changes([b], {"master": m}, {"master", "backup"}) == \
        SyncDaemonChanges(stop=(b,), start=(m,))


def test_a_daemon_this_node_does_not_manage_is_left_alone() -> None:
    """Without lvs_sync_daemon a running daemon may be the admin's (ipvsadm --start-daemon)."""
    admins = _daemon("backup", "eth1", 9)
    assert sync_daemon_changes([admins], {}, set()) == SyncDaemonChanges(stop=(), start=())
    assert sync_daemon_changes([admins], {}, {"backup"}) == \
        SyncDaemonChanges(stop=(admins,), start=())
