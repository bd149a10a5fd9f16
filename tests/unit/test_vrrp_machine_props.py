"""Property test: after any history of partitions, faults, priority changes and
restarts, a quiet network elects exactly one master, and it is the right one.

Hypothesis drives 2-3 machines on the simulated link of ``test_vrrp_machine``.
"The right one" is RFC 5798 §6.4 with keepalived's ``nopreempt``: once the links are
healed, faults cleared and every node running, and the network has been left alone
long enough, there is exactly one MASTER, it alone holds the VIP, and every node
with a higher effective priority is one that is configured not to preempt.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from test_vrrp_machine import Cluster, params

from mailha.vrrp.events import TRANSITION_REASONS, State

ADDRESSES = [IPv4Address("10.12.49.35"), IPv4Address("10.12.49.36"), IPv4Address("10.12.49.34")]
QUIET_PERIOD = 15.0  # > 3 x the longest Master_Down_Interval (1 s adverts)


class Election(RuleBasedStateMachine):
    cluster: Cluster

    @initialize(
        n=st.integers(2, 3),
        version=st.sampled_from([2, 3]),
        data=st.data(),
    )
    def build(self, n: int, version: int, data: st.DataObject) -> None:
        priorities = data.draw(st.lists(st.integers(1, 254), min_size=n, max_size=n, unique=True))
        self.all_params = []
        for i, prio in enumerate(priorities):
            interval = 1.0 if version == 2 else data.draw(st.sampled_from([0.1, 0.5, 1.0]))
            self.all_params.append(
                params(
                    f"n{i}",
                    prio,
                    ADDRESSES[i],
                    version=version,
                    advert_int=interval,
                    nopreempt=data.draw(st.booleans()),
                    initial_state=data.draw(st.sampled_from([State.BACKUP, State.MASTER])),
                )
            )
        self.cluster = Cluster(*self.all_params)
        self.cluster.start()

    # ----------------------------------------------------------------- chaos

    def _node(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.cluster.nodes)))

    @rule(dt=st.floats(0.0, 5.0))
    def advance(self, dt: float) -> None:
        self.cluster.run_until(self.cluster.now + dt)

    @rule(data=st.data(), up=st.booleans())
    def set_link(self, data: st.DataObject, up: bool) -> None:
        self.cluster[self._node(data)].link_up = up

    @rule(data=st.data(), active=st.booleans())
    def set_fault(self, data: st.DataObject, active: bool) -> None:
        name = self._node(data)
        machine = self.cluster[name].machine
        self.cluster.apply(name, machine.set_fault("tracking", active, self.cluster.now))

    @rule(data=st.data())
    def change_priority(self, data: st.DataObject) -> None:
        name = self._node(data)
        taken = {n.machine.priority for k, n in self.cluster.nodes.items() if k != name}
        new = data.draw(st.integers(1, 254).filter(lambda p: p not in taken))
        machine = self.cluster[name].machine
        self.cluster.apply(name, machine.set_effective_priority(new, self.cluster.now))

    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        name = self._node(data)
        node = self.cluster[name]
        self.cluster.apply(name, node.machine.shutdown(self.cluster.now))
        # Keep the tracked priority it had; a restarted keepalived re-runs its
        # scripts and ends up there again.
        priority = node.machine.priority
        fresh = self.cluster.add(node.machine.params)
        fresh.link_up = node.link_up
        self.cluster.apply(name, fresh.machine.set_effective_priority(priority, self.cluster.now))
        self.cluster.start(name)

    # ------------------------------------------------------------- properties

    @invariant()
    def only_a_master_holds_the_vip(self) -> None:
        for node in self.cluster.nodes.values():
            assert node.holds_vip == (node.machine.state is State.MASTER), node.name

    @invariant()
    def every_transition_gives_a_documented_reason(self) -> None:
        """Logs, notify scripts and status show ``reason``: its vocabulary is fixed."""
        for node in self.cluster.nodes.values():
            for _, change in node.transitions():
                assert change.reason in TRANSITION_REASONS, (node.name, change)

    @precondition(lambda self: hasattr(self, "cluster"))
    @rule()
    def settle_and_check(self) -> None:
        for name, node in self.cluster.nodes.items():
            node.link_up = True
            self.cluster.apply(name, node.machine.set_fault("tracking", False, self.cluster.now))
        self.cluster.run_until(self.cluster.now + QUIET_PERIOD)

        masters = self.cluster.masters()
        assert len(masters) == 1, masters
        assert self.cluster.vip_holders() == masters
        master = self.cluster[masters[0]].machine
        for name, node in self.cluster.nodes.items():
            if name == masters[0]:
                continue
            assert node.machine.state is State.BACKUP
            if node.machine.priority > master.priority:
                assert node.machine.params.nopreempt, (name, node.machine.priority)

    def teardown(self) -> None:
        if hasattr(self, "cluster"):
            self.settle_and_check()


Election.TestCase.settings = settings(
    max_examples=100, stateful_step_count=20, deadline=None, print_blob=True
)
TestElection = Election.TestCase
