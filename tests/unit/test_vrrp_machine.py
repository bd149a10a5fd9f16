"""Scenario tests for the sans-I/O VRRP state machine (mailha.vrrp.machine).

Most tests wire two or three machines together through :class:`Cluster`, a tiny
simulated link with a shared fake clock: every ``SendAdvert`` a machine returns
becomes a real :class:`mailha.vrrp.packet.Advert` delivered to the other nodes
after a fixed latency, and ``AddVips``/``RemoveVips`` toggle who holds the VIP.
Times are asserted exactly where the RFC (or keepalived) fixes them.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest

from mailha.vrrp.events import (
    Action,
    AddVips,
    Diagnostic,
    Discarded,
    PriorityChanged,
    RemoveVips,
    SendAdvert,
    SendGratuitous,
    State,
    StateChanged,
)
from mailha.vrrp.machine import InstanceParams, ParamsError, UsageError, VrrpMachine
from mailha.vrrp.packet import Advert
from mailha.vrrp.tracking import Tracked, effective_priority

IPAddress = IPv4Address | IPv6Address
VIP = IPv4Address("10.12.49.37")
NODE1 = IPv4Address("10.12.49.35")
NODE2 = IPv4Address("10.12.49.36")
NODE3 = IPv4Address("10.12.49.34")
LATENCY = 0.001


def params(
    name: str = "n1",
    priority: int = 100,
    primary: IPAddress = NODE1,
    **overrides: Any,
) -> InstanceParams:
    fields: dict[str, Any] = {"vrid": 173, "virtual_addresses": (VIP,), **overrides}
    return InstanceParams(name=name, priority=priority, primary_address=primary, **fields)


def advert(priority: int, *, version: int = 2, interval: float = 1.0, **kw: Any) -> Advert:
    return Advert(
        version=version,
        vrid=kw.pop("vrid", 173),
        priority=priority,
        max_advert_int=interval,
        addresses=kw.pop("addresses", (VIP,)),
    )


def of_type(actions: Iterable[Action], kind: type[Any]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


# --------------------------------------------------------------------------- sim


@dataclass
class Node:
    machine: VrrpMachine
    holds_vip: bool = False
    link_up: bool = True
    log: list[tuple[float, Action]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.machine.params.name

    def transitions(self) -> list[tuple[float, StateChanged]]:
        return [(t, a) for t, a in self.log if isinstance(a, StateChanged)]

    def adverts(self) -> list[tuple[float, SendAdvert]]:
        return [(t, a) for t, a in self.log if isinstance(a, SendAdvert)]


class Cluster:
    """Machines on one simulated segment, driven by a shared fake clock.

    Each step runs the earliest thing due: a packet delivery (first, at equal
    times) or a machine's timer.  A node whose link is down neither sends nor
    receives.  Exactly like a real driver, the cluster only calls ``timer()``
    at the time ``next_deadline()`` asked for.
    """

    #: More adverts than this within STORM_WINDOW seconds is a bug (two nodes
    #: answering each other at once forever), not a slow simulation.
    STORM_LIMIT = 50
    STORM_WINDOW = 0.1

    def __init__(self, *all_params: InstanceParams, now: float = 0.0) -> None:
        self.now = now
        self.nodes = {p.name: Node(VrrpMachine(p, now)) for p in all_params}
        self._wire: list[tuple[float, int, str, Advert]] = []
        self._seq = itertools.count()
        self._recent_sends: deque[float] = deque(maxlen=self.STORM_LIMIT)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def add(self, p: InstanceParams) -> Node:
        self.nodes[p.name] = Node(VrrpMachine(p, self.now))
        return self.nodes[p.name]

    def start(self, *names: str) -> None:
        for name in names or tuple(self.nodes):
            self.apply(name, self.nodes[name].machine.start(self.now))

    def apply(self, name: str, actions: list[Action]) -> None:
        node = self.nodes[name]
        for action in actions:
            node.log.append((self.now, action))
            if isinstance(action, SendAdvert) and node.link_up:
                p = node.machine.params
                packet = Advert(
                    version=p.version,
                    vrid=p.vrid,
                    priority=action.priority,
                    max_advert_int=action.max_advert_int,
                    addresses=p.virtual_addresses,
                )
                entry = (self.now + LATENCY, next(self._seq), name, packet)
                heapq.heappush(self._wire, entry)
                self._recent_sends.append(self.now)
                if len(self._recent_sends) == self.STORM_LIMIT:
                    span = self.now - self._recent_sends[0]
                    assert span > self.STORM_WINDOW, f"advert storm at t={self.now}"
            elif isinstance(action, AddVips):
                node.holds_vip = True
            elif isinstance(action, RemoveVips):
                node.holds_vip = False

    def _next_timer(self) -> tuple[float, str] | None:
        due = [
            (d, name)
            for name, node in self.nodes.items()
            if (d := node.machine.next_deadline()) is not None
        ]
        return min(due) if due else None

    def run_until(self, until: float) -> None:
        while True:
            packet_at = self._wire[0][0] if self._wire else None
            timer = self._next_timer()
            if packet_at is not None and (timer is None or packet_at <= timer[0]):
                if packet_at > until:
                    break
                self.now, _, sender, packet = heapq.heappop(self._wire)
                src = self.nodes[sender].machine.params.primary_address
                for name, node in self.nodes.items():
                    if name != sender and node.link_up:
                        self.apply(name, node.machine.advert_received(packet, src, self.now))
            elif timer is not None and timer[0] <= until:
                # A deadline can lie in the past (a priority change shortened the
                # down timer); like a real loop, we then fire it now.
                self.now = max(self.now, timer[0])
                self.apply(timer[1], self.nodes[timer[1]].machine.timer(self.now))
            else:
                break
        self.now = max(self.now, until)

    def masters(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.machine.state is State.MASTER]

    def vip_holders(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.holds_vip]


def became_master_at(node: Node) -> list[float]:
    return [t for t, a in node.transitions() if a.new is State.MASTER]


# ------------------------------------------------------------------ timer values


@pytest.mark.parametrize(
    ("version", "interval", "priority", "skew", "down"),
    [
        (2, 1.0, 100, 156 / 256, 3 + 156 / 256),
        (2, 1.0, 200, 56 / 256, 3 + 56 / 256),
        (2, 3.0, 254, 2 / 256, 9 + 2 / 256),
        (3, 1.0, 100, 156 / 256, 3 + 156 / 256),
        (3, 0.1, 200, 56 * 0.1 / 256, 0.3 + 56 * 0.1 / 256),
        (3, 0.03, 1, 255 * 0.03 / 256, 0.09 + 255 * 0.03 / 256),
    ],
)
def test_skew_and_master_down_interval_follow_the_rfc(
    version: int, interval: float, priority: int, skew: float, down: float
) -> None:
    m = VrrpMachine(params(priority=priority, version=version, advert_int=interval), 0.0)
    assert m.skew_time == pytest.approx(skew)
    assert m.master_down_interval == pytest.approx(down)


def test_skew_uses_the_effective_priority() -> None:
    m = VrrpMachine(params(priority=100), 0.0)
    m.set_effective_priority(200, 0.0)
    assert m.skew_time == pytest.approx(56 / 256)


# ---------------------------------------------------------------------- start-up


def test_lone_backup_takes_over_after_master_down_interval() -> None:
    m = VrrpMachine(params(priority=100), 10.0)
    assert m.start(10.0) == [StateChanged(State.INIT, State.BACKUP, "start")]
    deadline = 10.0 + 3 + 156 / 256
    assert m.next_deadline() == pytest.approx(deadline)
    assert m.timer(deadline - 0.01) == []
    actions = m.timer(deadline)
    assert actions == [
        StateChanged(State.BACKUP, State.MASTER, "master_no_response"),
        SendAdvert(100, 1.0),
        AddVips((VIP,)),
        SendGratuitous((VIP,), 5),
    ]
    assert m.next_deadline() == pytest.approx(deadline + 1.0)


def test_state_master_waits_one_interval_plus_minimum_skew() -> None:
    m = VrrpMachine(params(initial_state=State.MASTER), 0.0)
    assert m.start(0.0) == [StateChanged(State.INIT, State.BACKUP, "start")]
    assert m.next_deadline() == pytest.approx(1 + 1 / 256)
    actions = m.timer(1 + 1 / 256)
    assert actions[0] == StateChanged(State.BACKUP, State.MASTER, "initial_master")


def test_state_master_yields_to_a_live_master_heard_during_the_wait() -> None:
    cluster = Cluster(
        params("a", 150, NODE1),
        params("b", 100, NODE2, initial_state=State.MASTER),
    )
    cluster.start("a")
    cluster.run_until(10.0)
    assert cluster.masters() == ["a"]
    cluster.start("b")
    cluster.run_until(40.0)
    assert cluster.masters() == ["a"]
    assert became_master_at(cluster["b"]) == []


def test_address_owner_is_master_at_once() -> None:
    m = VrrpMachine(params(priority=255), 0.0)
    actions = m.start(0.0)
    assert actions == [
        StateChanged(State.INIT, State.MASTER, "address_owner"),
        SendAdvert(255, 1.0),
        AddVips((VIP,)),
        SendGratuitous((VIP,), 5),
    ]


def test_two_backups_converge_on_the_higher_priority_at_its_down_interval() -> None:
    cluster = Cluster(params("a", 150, NODE1), params("b", 100, NODE2))
    cluster.start()
    cluster.run_until(30.0)
    assert cluster.masters() == ["a"]
    assert cluster.vip_holders() == ["a"]
    assert became_master_at(cluster["a"]) == [pytest.approx(3 + 106 / 256)]
    assert became_master_at(cluster["b"]) == []
    # The backup keeps following the master: its down timer is re-armed by each advert.
    assert cluster["b"].machine.master_address == NODE1
    assert cluster["b"].machine.next_deadline() == pytest.approx(
        cluster["a"].adverts()[-1][0] + LATENCY + 3 + 156 / 256
    )


def test_seed_config_higher_address_wins_whatever_state_master_says() -> None:
    """The seed scenario: priority 100 on both, track script weight +100, .35 MASTER.

    keepalived's first script success moves both nodes to the same full down
    interval (see the machine's docstring); both become master together and the
    tie goes to the higher primary address, .36.  Adverts carry 200.
    """
    cluster = Cluster(
        params("node1", 100, NODE1, initial_state=State.MASTER),
        params("node2", 100, NODE2),
    )
    cluster.start()
    cluster.run_until(0.05)
    for name in ("node1", "node2"):
        result = effective_priority(100, [Tracked("chk_service", ok=True, weight=100)])
        actions = cluster[name].machine.update_tracking(result, cluster.now)
        assert actions == [PriorityChanged(100, 200)]
        cluster.apply(name, actions)
    cluster.run_until(20.0)
    assert cluster.masters() == ["node2"]
    assert cluster.vip_holders() == ["node2"]
    assert {a.priority for _, a in cluster["node2"].adverts()} == {200}
    # Both timed out at the same instant; node1 stepped down on node2's first advert.
    down = 3 + 56 / 256
    assert became_master_at(cluster["node1"]) == [pytest.approx(down)]
    assert became_master_at(cluster["node2"]) == [pytest.approx(down)]
    t, back = cluster["node1"].transitions()[-1]
    assert back.new is State.BACKUP
    assert back.reason == "equal_priority_higher_address"
    assert t == pytest.approx(down + LATENCY)


# -------------------------------------------------------------------- preemption


def _running_low_master() -> Cluster:
    cluster = Cluster(params("low", 100, NODE2))
    cluster.start()
    cluster.run_until(10.0)
    assert cluster.masters() == ["low"]
    return cluster


def test_higher_priority_newcomer_preempts_after_its_down_interval() -> None:
    cluster = _running_low_master()
    cluster.add(params("high", 200, NODE1))
    cluster.start("high")
    cluster.run_until(30.0)
    assert cluster.masters() == ["high"]
    assert cluster.vip_holders() == ["high"]
    # It ignored every lower advert, so its down timer ran from start.
    (t,) = became_master_at(cluster["high"])
    assert t == pytest.approx(10.0 + 3 + 56 / 256)
    reasons = [a.reason for _, a in cluster["high"].transitions()]
    assert reasons == ["start", "preempted"]
    discards = of_type((a for _, a in cluster["high"].log), Discarded)
    assert discards and {d.reason for d in discards} == {"lower_priority"}
    low_back = [a for _, a in cluster["low"].transitions() if a.old is State.MASTER]
    assert [a.reason for a in low_back] == ["higher_priority"]
    assert any(isinstance(a, RemoveVips) for _, a in cluster["low"].log)


def test_nopreempt_backup_leaves_a_live_lower_master_alone() -> None:
    cluster = _running_low_master()
    cluster.add(params("high", 200, NODE1, nopreempt=True))
    cluster.start("high")
    cluster.run_until(120.0)
    assert cluster.masters() == ["low"]
    assert cluster["high"].machine.state is State.BACKUP
    # ...but it does take over when that master goes away.
    cluster.apply("low", cluster["low"].machine.shutdown(cluster.now))
    cluster.run_until(130.0)
    assert cluster.masters() == ["high"]


def test_preempt_delay_holds_off_preemption_for_that_long() -> None:
    cluster = _running_low_master()
    cluster.add(params("high", 200, NODE1, preempt_delay=10.0))
    cluster.start("high")
    cluster.run_until(19.9)
    assert cluster.masters() == ["low"]
    cluster.run_until(60.0)
    assert cluster.masters() == ["high"]
    (t,) = became_master_at(cluster["high"])
    # Delay counts from the first lower advert heard (within one interval of start);
    # the down timer then runs from the last advert accepted before the delay ended.
    assert 10.0 + 10.0 < t <= 10.0 + 1.0 + LATENCY + 10.0 + 3 + 56 / 256


# ---------------------------------------------------------------------- shutdown


def test_shutdown_master_sends_priority_zero_and_peer_takes_over_after_skew() -> None:
    cluster = Cluster(params("a", 150, NODE1), params("b", 100, NODE2))
    cluster.start()
    cluster.run_until(10.0)
    actions = cluster["a"].machine.shutdown(10.0)
    assert actions == [
        StateChanged(State.MASTER, State.STOPPED, "shutdown"),
        SendAdvert(0, 1.0),
        RemoveVips((VIP,)),
    ]
    cluster.apply("a", actions)
    assert cluster["a"].machine.next_deadline() is None
    cluster.run_until(20.0)
    assert cluster.masters() == ["b"]
    (t,) = became_master_at(cluster["b"])
    assert t == pytest.approx(10.0 + LATENCY + 156 / 256)
    assert cluster["b"].transitions()[-1][1].reason == "master_released"


def test_shutdown_of_a_backup_sends_nothing() -> None:
    m = VrrpMachine(params(), 0.0)
    m.start(0.0)
    assert m.shutdown(1.0) == [StateChanged(State.BACKUP, State.STOPPED, "shutdown")]
    assert m.shutdown(2.0) == []
    assert m.advert_received(advert(100), NODE2, 3.0) == [Discarded("not_running", "STOPPED")]
    with pytest.raises(UsageError) as err:
        m.start(4.0)
    assert err.value.reason == "already_started"


# ------------------------------------------------------------------------- fault


def test_weight_zero_script_failure_faults_the_master_and_peer_takes_over() -> None:
    cluster = Cluster(params("a", 150, NODE1), params("b", 100, NODE2))
    cluster.start()
    cluster.run_until(10.0)
    failing = effective_priority(150, [Tracked("chk_postfix", ok=False)])
    assert failing.fault
    actions = cluster["a"].machine.update_tracking(failing, 10.0)
    assert actions == [
        StateChanged(State.MASTER, State.FAULT, "fault", "tracking"),
        SendAdvert(0, 1.0),
        RemoveVips((VIP,)),
    ]
    cluster.apply("a", actions)
    assert cluster["a"].machine.next_deadline() is None
    cluster.run_until(20.0)
    assert cluster.masters() == ["b"]
    # FAULT ignores adverts.
    assert cluster["a"].machine.advert_received(advert(100), NODE2, 20.0) == [
        Discarded("not_running", "FAULT")
    ]
    # Recovery: back to BACKUP, then normal election (a has the higher priority).
    healthy = effective_priority(150, [Tracked("chk_postfix", ok=True)])
    actions = cluster["a"].machine.update_tracking(healthy, 20.0)
    assert actions == [StateChanged(State.FAULT, State.BACKUP, "fault_cleared", "tracking")]
    cluster.apply("a", actions)
    cluster.run_until(40.0)
    assert cluster.masters() == ["a"]
    assert cluster.vip_holders() == ["a"]


def test_interface_down_faults_until_every_source_clears() -> None:
    m = VrrpMachine(params(priority=255), 0.0)
    m.start(0.0)
    actions = m.set_fault("interface", True, 1.0)
    assert actions[0] == StateChanged(State.MASTER, State.FAULT, "fault", "interface")
    assert m.set_fault("tracking", True, 2.0) == []
    assert m.set_fault("interface", False, 3.0) == []
    assert m.state is State.FAULT
    assert m.faults == {"tracking"}
    actions = m.set_fault("tracking", False, 4.0)
    # An address owner leaves FAULT straight for MASTER.
    assert actions[0] == StateChanged(State.FAULT, State.MASTER, "address_owner")
    assert AddVips((VIP,)) in actions


def test_fault_before_start_starts_in_fault() -> None:
    m = VrrpMachine(params(), 0.0)
    assert m.set_fault("interface", True, 0.0) == []
    assert m.start(0.0) == [StateChanged(State.INIT, State.FAULT, "fault", "interface")]
    assert m.next_deadline() is None
    assert m.set_fault("interface", False, 5.0) == [
        StateChanged(State.FAULT, State.BACKUP, "fault_cleared", "interface")
    ]
    assert m.next_deadline() == pytest.approx(5.0 + 3 + 156 / 256)


# -------------------------------------------------------------- master receiving


def _master(**overrides: Any) -> VrrpMachine:
    m = VrrpMachine(params(priority=150, **overrides), 0.0)
    m.start(0.0)
    m.timer(m.next_deadline() or 0.0)
    assert m.state is State.MASTER
    return m


def test_master_answers_lower_priority_at_once_and_keeps_the_vip() -> None:
    m = _master()
    actions = m.advert_received(advert(100), NODE2, 5.0)
    assert actions == [
        Discarded("lower_priority", f"{NODE2} priority 100"),
        SendAdvert(150, 1.0),
        SendGratuitous((VIP,), 5),
    ]
    assert m.state is State.MASTER


def test_lower_prio_no_advert_suppresses_the_reply() -> None:
    m = _master(lower_prio_no_advert=True, garp_lower_prio_repeat=0)
    assert m.advert_received(advert(100), NODE2, 5.0) == [
        Discarded("lower_priority", f"{NODE2} priority 100")
    ]


@pytest.mark.parametrize(("priority", "src"), [(200, NODE3), (150, NODE2)])
def test_higher_prio_send_advert_sends_one_advert_at_our_priority_before_yielding(
    priority: int, src: IPv4Address
) -> None:
    m = _master(higher_prio_send_advert=True)
    actions = m.advert_received(advert(priority), src, 5.0)
    assert of_type(actions, SendAdvert) == [SendAdvert(150, 1.0)]
    assert actions.index(SendAdvert(150, 1.0)) < actions.index(RemoveVips((VIP,)))
    assert m.state is State.BACKUP


def test_without_higher_prio_send_advert_a_yielding_master_sends_nothing() -> None:
    m = _master()
    assert of_type(m.advert_received(advert(200), NODE3, 5.0), SendAdvert) == []


def test_master_answers_priority_zero_and_restarts_adver_timer() -> None:
    m = _master()
    assert m.advert_received(advert(0), NODE2, 5.5) == [SendAdvert(150, 1.0)]
    assert m.next_deadline() == pytest.approx(6.5)


@pytest.mark.parametrize(
    ("priority", "src", "outcome"),
    [
        (200, NODE3, "higher_priority"),
        (150, NODE2, "equal_priority_higher_address"),
        (150, NODE3, "lower_priority"),
        (150, NODE1, "own_address"),
    ],
)
def test_master_tie_break_compares_primary_addresses(
    priority: int, src: IPv4Address, outcome: str
) -> None:
    m = _master()  # primary .35
    actions = m.advert_received(advert(priority), src, 5.0)
    if outcome in ("higher_priority", "equal_priority_higher_address"):
        assert actions[0] == StateChanged(State.MASTER, State.BACKUP, outcome, str(src))
        assert RemoveVips((VIP,)) in actions
        assert m.state is State.BACKUP
        assert m.next_deadline() == pytest.approx(5.0 + m.master_down_interval)
    else:
        assert of_type(actions, Discarded)[0].reason == outcome
        assert m.state is State.MASTER


def test_two_owners_resolve_by_address_and_say_so() -> None:
    m = VrrpMachine(params(priority=255), 0.0)
    m.start(0.0)
    actions = m.advert_received(advert(255), NODE2, 1.0)
    assert actions[0] == StateChanged(
        State.MASTER, State.BACKUP, "equal_priority_higher_address", str(NODE2)
    )
    assert of_type(actions, Diagnostic) == [
        Diagnostic("owner_conflict", f"{NODE2} also claims priority 255")
    ]


# ------------------------------------------------------------- backup receiving


def _backup(**overrides: Any) -> VrrpMachine:
    m = VrrpMachine(params(priority=100, **overrides), 0.0)
    m.start(0.0)
    return m


def test_backup_priority_zero_sets_the_timer_to_skew_time() -> None:
    m = _backup()
    assert m.advert_received(advert(0), NODE2, 2.0) == []
    assert m.next_deadline() == pytest.approx(2.0 + 156 / 256)


def test_backup_follows_higher_or_equal_priority_master() -> None:
    m = _backup()
    for t, prio in ((1.0, 150), (2.0, 100)):
        assert m.advert_received(advert(prio), NODE2, t) == []
        assert m.next_deadline() == pytest.approx(t + 3 + 156 / 256)


def test_preempting_backup_ignores_lower_priority_and_keeps_its_deadline() -> None:
    m = _backup()
    m.advert_received(advert(150), NODE2, 1.0)
    deadline = m.next_deadline()
    assert m.advert_received(advert(50), NODE2, 2.0) == [
        Discarded("lower_priority", f"{NODE2} priority 50")
    ]
    assert m.next_deadline() == deadline


def test_v2_interval_mismatch_is_discarded_and_does_not_feed_the_timer() -> None:
    m = _backup()
    deadline = m.next_deadline()
    assert m.advert_received(advert(200, interval=2.0), NODE2, 1.0) == [
        Discarded("interval_mismatch", str(NODE2))
    ]
    assert m.next_deadline() == deadline


def test_v3_backup_learns_the_masters_interval_and_drops_it_as_master() -> None:
    m = _backup(version=3, advert_int=1.0)
    actions = m.advert_received(advert(200, version=3, interval=0.5), NODE2, 1.0)
    assert actions == [
        Diagnostic("interval_mismatch", f"{NODE2} advertises 0.5s, ours 1.0s"),
        Diagnostic("interval_learned", "1.0s -> 0.5s"),
    ]
    assert m.master_adver_int == 0.5
    assert m.next_deadline() == pytest.approx(1.0 + 1.5 + 156 * 0.5 / 256)
    # The mismatch is reported once per state, not once per advert.
    assert m.advert_received(advert(200, version=3, interval=0.5), NODE2, 1.5) == []
    actions = m.timer(m.next_deadline() or 0.0)
    assert SendAdvert(100, 1.0) in actions
    assert m.master_adver_int == 1.0


def test_v3_interval_learning_can_be_turned_off() -> None:
    m = _backup(version=3, advert_int=1.0, learn_master_interval=False)
    m.advert_received(advert(200, version=3, interval=0.5), NODE2, 1.0)
    assert m.master_adver_int == 1.0


def test_an_advert_for_other_addresses_still_counts_and_is_reported_elsewhere() -> None:
    """The address list is admission's business (counted and logged once there, with
    keepalived's rules); the machine logged it a second time, in other words."""
    m = _backup()
    other = (IPv4Address("10.12.49.99"),)
    actions = m.advert_received(advert(150, addresses=other), NODE2, 1.0)
    assert actions == []
    assert m.next_deadline() == pytest.approx(1.0 + 3 + 156 / 256)


@dataclass(frozen=True)
class RawAdvert:
    """A hostile stand-in that skips Advert's validation."""

    version: Any = 2
    vrid: Any = 173
    priority: Any = 100
    max_advert_int: Any = 1.0
    addresses: Any = (VIP,)


@pytest.mark.parametrize(
    ("raw", "src", "reason"),
    [
        (RawAdvert(vrid=7), NODE2, "vrid_mismatch"),
        (RawAdvert(version=3), NODE2, "version_mismatch"),
        (RawAdvert(priority=300), NODE2, "invalid_priority"),
        (RawAdvert(priority=True), NODE2, "invalid_priority"),
        (RawAdvert(max_advert_int=float("nan")), NODE2, "invalid_interval"),
        (RawAdvert(max_advert_int=0), NODE2, "invalid_interval"),
        (RawAdvert(), IPv6Address("fe80::1"), "address_family_mismatch"),
        (object(), NODE2, "malformed:AttributeError"),
    ],
)
def test_malformed_adverts_are_discarded_never_raised(raw: Any, src: Any, reason: str) -> None:
    m = _backup()
    deadline = m.next_deadline()
    assert m.advert_received(raw, src, 1.0) == [Discarded(reason, str(src))]
    assert m.next_deadline() == deadline


# ------------------------------------------------------------- priority changes


def test_priority_change_in_backup_shifts_the_running_down_timer() -> None:
    m = _backup()
    m.advert_received(advert(150), NODE2, 1.0)
    assert m.set_effective_priority(200, 2.0) == [PriorityChanged(100, 200)]
    assert m.next_deadline() == pytest.approx(1.0 + 3 + 56 / 256)
    assert m.set_effective_priority(200, 2.0) == []


def test_raised_priority_can_put_the_deadline_in_the_past() -> None:
    m = _backup()
    m.advert_received(advert(150), NODE2, 1.0)
    m.set_effective_priority(200, 4.3)  # deadline now 1.0 + 3.21875 < 4.3
    assert m.next_deadline() == pytest.approx(4.21875)
    actions = m.timer(4.3)
    assert actions[0] == StateChanged(State.BACKUP, State.MASTER, "master_no_response")


def test_owner_priority_never_changes() -> None:
    m = VrrpMachine(params(priority=255), 0.0)
    assert m.set_effective_priority(10, 0.0) == []
    assert m.priority == 255


def test_master_advertises_its_new_priority_on_the_next_tick() -> None:
    m = _master()
    m.set_effective_priority(120, 4.0)
    actions = m.timer(m.next_deadline() or 0.0)
    assert actions[0] == SendAdvert(120, 1.0)


# ------------------------------------------------------------------------- garp


def test_gratuitous_arp_delay_and_refresh_are_scheduled() -> None:
    m = VrrpMachine(
        params(priority=255, garp_master_refresh=60.0, garp_master_refresh_repeat=2), 0.0
    )
    m.start(0.0)
    sent: list[tuple[float, int]] = []
    now = 0.0
    while now < 130.0:
        now = m.next_deadline() or 0.0
        sent += [(now, a.repeat) for a in m.timer(now) if isinstance(a, SendGratuitous)]
    assert sent == [(5.0, 5), (65.0, 2), (125.0, 2)]


def test_leaving_master_cancels_pending_gratuitous_arps() -> None:
    m = _master()
    became = m.next_deadline() or 0.0  # first Adver_Timer: one interval after takeover
    taken_over = became - 1.0
    m.advert_received(advert(200), NODE2, taken_over + 1.0)
    m.advert_received(advert(200), NODE2, taken_over + 4.0)
    assert m.next_deadline() == pytest.approx(taken_over + 4.0 + m.master_down_interval)
    # The delayed batch that was due five seconds after takeover never fires.
    assert m.timer(taken_over + 5.0) == []


# ----------------------------------------------------------------- local errors


def test_time_going_backwards_is_a_local_error() -> None:
    m = _backup()
    m.timer(5.0)
    with pytest.raises(UsageError) as err:
        m.timer(4.0)
    assert err.value.reason == "time_went_backwards"
    with pytest.raises(UsageError) as err:
        m.timer(float("inf"))
    assert err.value.reason == "invalid_time"


def test_impossible_priority_is_a_local_error() -> None:
    m = _backup()
    for bad in (0, 255, 300):
        with pytest.raises(UsageError) as err:
            m.set_effective_priority(bad, 1.0)
        assert err.value.reason == "invalid_priority"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"vrid": 0}, "invalid_vrid"),
        ({"priority": 0}, "invalid_priority"),
        ({"version": 4}, "invalid_version"),
        ({"advert_int": 0.5}, "invalid_advert_int"),
        ({"version": 3, "advert_int": 41.0}, "invalid_advert_int"),
        ({"version": 3, "advert_int": 0.015}, "invalid_advert_int"),
        ({"virtual_addresses": ()}, "no_virtual_addresses"),
        ({"virtual_addresses": (IPv6Address("2001:db8::1"),)}, "mixed_address_families"),
        ({"virtual_addresses": (VIP, VIP)}, "duplicate_virtual_address"),
        ({"initial_state": State.FAULT}, "invalid_initial_state"),
        ({"preempt_delay": -1.0}, "invalid_preempt_delay"),
        ({"garp_master_repeat": -1}, "invalid_garp_master_repeat"),
    ],
)
def test_invalid_params_raise_with_a_stable_reason(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ParamsError) as err:
        params(**overrides)
    assert err.value.reason == reason


def test_keepalived_corrections_are_applied_and_reported() -> None:
    m = VrrpMachine(params(initial_state=State.MASTER, nopreempt=True, preempt_delay=5.0), 0.0)
    assert not m.params.nopreempt
    assert m.params.preempt_delay == 0.0
    assert len(m.warnings) == 2
    owner = VrrpMachine(params(priority=255, nopreempt=True), 0.0)
    assert not owner.params.nopreempt
    both = VrrpMachine(params(nopreempt=True, preempt_delay=5.0), 0.0)
    assert both.params.preempt_delay == 0.0 and both.params.nopreempt


def test_ipv6_instances_compare_ipv6_addresses() -> None:
    low, high = ip_address("fe80::1"), ip_address("fe80::2")
    vip6 = IPv6Address("2001:db8::25")
    m = VrrpMachine(params(priority=255, primary=low, version=3, virtual_addresses=(vip6,)), 0.0)
    m.start(0.0)
    actions = m.advert_received(
        Advert(version=3, vrid=173, priority=255, max_advert_int=1.0, addresses=(vip6,)),
        high,
        1.0,
    )
    assert actions[0] == StateChanged(
        State.MASTER, State.BACKUP, "equal_priority_higher_address", str(high)
    )


def test_vips_changed_by_an_in_place_reload_are_the_ones_announced_at_the_next_takeover() -> None:
    """A reload that adds a VIP keeps the instance running; at its next takeover the
    gratuitous ARPs named only the VIPs it had started with, so the added one kept
    pointing at the old master's MAC until the neighbours' caches expired."""
    added = IPv4Address("10.12.49.40")
    m = _backup()
    m.set_virtual_addresses((VIP, added))
    actions = m.timer(m.next_deadline() or 0.0)  # the master went quiet: take over
    assert m.state is State.MASTER
    garps = [a for a in actions if isinstance(a, SendGratuitous)]
    assert garps and all(a.addresses == (VIP, added) for a in garps)
