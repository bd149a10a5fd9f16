"""Which sync daemons run: keepalived.conf(5)'s ``lvs_sync_daemon`` rules, state by state."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from mailha.config.model import LvsSyncDaemon
from mailha.lvs.syncd import sync_id_for, wanted_states, wanted_sync_daemons
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
