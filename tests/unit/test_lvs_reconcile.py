"""The reconcile task against a simulated kernel: repairs, drift counting, refusals.

The kernel here is the planner tests' model of ip_vs_genl_set_cmd (``Kernel``) behind
the two calls the reconciler makes (``observe`` and ``apply``), so the loop's own
rules are tested without root: what counts as drift, what a refused operation does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, cast

import pytest
from test_lvs_planner import Kernel

from mailha.lvs import reconcile
from mailha.lvs.model import (
    Destination,
    Forward,
    ObservedTable,
    Service,
    ServiceKey,
    ServiceRow,
    make_table,
)
from mailha.lvs.netlink import ApplyResult, IpvsNetlink
from mailha.lvs.planner import Op
from mailha.lvs.reconcile import Reconciler, is_drift, normalise_local
from mailha.metrics import Metrics

VIP = ServiceKey.for_address("10.96.0.1", 25)
WANT = make_table([ServiceRow.of(Service(VIP, "rr"), [
    Destination.of("10.96.0.11", 25, Forward.ROUTE),
    Destination.of("10.96.0.12", 25, Forward.ROUTE, weight=2)])])


class FakeIpvs:
    """``observe``/``apply`` over a simulated kernel; ``refuse`` makes every op fail."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.refuse = False
        self.batches: list[list[Op]] = []

    async def observe(self, *, with_stats: bool = True) -> ObservedTable:
        return ObservedTable(self.kernel.table(), {})

    async def apply(self, ops: Iterable[Op]) -> ApplyResult:
        ops = list(ops)
        self.batches.append(ops)
        if self.refuse:
            return ApplyResult((), tuple(f"{op.describe()}: refused" for op in ops))
        for op in ops:
            self.kernel.apply(op)
        return ApplyResult(tuple(ops), ())


def reconciler(fake: FakeIpvs, metrics: Metrics,
               desired: Mapping[Any, Any] = WANT) -> Reconciler:
    return Reconciler(netlink=lambda: cast(IpvsNetlink, fake), desired=lambda: desired,
                      owned=lambda: frozenset(WANT), metrics=metrics)


def drift(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("mailha_reconcile_drift_repairs_total") or 0.0


async def test_a_pass_programs_the_wish_and_a_second_pass_changes_nothing() -> None:
    fake = FakeIpvs(Kernel({}))
    r = reconciler(fake, Metrics())
    assert await r.apply(WANT) == 3  # the service and its two destinations
    assert fake.kernel.table() == WANT
    assert await r.apply(WANT) == 0


async def test_a_foreign_service_is_left_alone_and_an_empty_wish_withdraws_ours() -> None:
    foreign = make_table([ServiceRow.of(Service(ServiceKey.for_address("10.1.1.1", 80), "wlc"))])
    fake = FakeIpvs(Kernel({**WANT, **foreign}))
    await reconciler(fake, Metrics()).apply({})
    assert fake.kernel.table() == foreign


async def test_a_periodic_pass_repairs_drift_and_counts_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ipvsadm -C between two periodic passes: the next pass restores the table and
    counts one drift repair; the first pass (programming from empty) is not drift."""
    monkeypatch.setattr(reconcile, "RESYNC_INTERVAL", 0.02)
    metrics = Metrics()
    fake = FakeIpvs(Kernel({}))
    r = reconciler(fake, metrics)
    task = asyncio.create_task(r.run())
    try:
        await r.first_pass()
        assert fake.kernel.table() == WANT and drift(metrics) == 0
        fake.kernel = Kernel({})  # an operator flushed the table; nobody marks it dirty
        for _ in range(500):
            if drift(metrics):
                break
            await asyncio.sleep(0.01)
        assert fake.kernel.table() == WANT
        assert drift(metrics) == 1
    finally:
        r.stop()
        await asyncio.wait_for(task, 5)


def test_drift_rule() -> None:
    assert is_drift(2, woken=False, desired=WANT, last_desired=WANT)
    assert not is_drift(2, woken=True, desired=WANT, last_desired=WANT)  # a change asked for
    assert not is_drift(2, woken=False, desired=WANT, last_desired={})   # the wish moved
    assert not is_drift(0, woken=False, desired=WANT, last_desired=WANT)  # nothing to repair
    assert not is_drift(2, woken=False, desired=WANT, last_desired=None)  # first pass


async def test_refused_operations_raise_so_the_loop_retries() -> None:
    metrics = Metrics()
    fake = FakeIpvs(Kernel({}))
    fake.refuse = True
    with pytest.raises(RuntimeError, match="3 IPVS operation"):
        await reconciler(fake, metrics).apply(WANT)
    assert metrics.registry.get_sample_value("mailha_reconcile_errors_total") == 3


def test_a_local_forward_reads_as_the_method_asked_for() -> None:
    local = make_table([ServiceRow.of(Service(VIP, "rr"), [
        Destination.of("10.96.0.11", 25, Forward.LOCAL),
        Destination.of("10.96.0.12", 25, Forward.ROUTE, weight=2)])])
    assert normalise_local(ObservedTable(local, {}), WANT) == WANT
    # without a wish for the service, the kernel's word stands
    assert normalise_local(ObservedTable(local, {}), {}) == local
