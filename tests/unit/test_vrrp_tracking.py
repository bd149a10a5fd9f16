"""Tests for keepalived-style tracking: rise/fall debouncing and weight arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailha.vrrp.tracking import (
    EffectivePriority,
    ScriptState,
    ScriptTracker,
    Tracked,
    TrackingError,
    effective_priority,
    faulted_names,
)

# ------------------------------------------------------------------ ScriptTracker


def feed_all(tracker: ScriptTracker, results: str) -> list[ScriptState]:
    """Feed 'o'/'x' results; return the state after each."""
    states = []
    for r in results:
        tracker.feed(r == "o")
        states.append(tracker.state)
    return states


OK, FAIL, INIT = ScriptState.OK, ScriptState.FAIL, ScriptState.INIT


def test_first_result_decides_whatever_rise_and_fall() -> None:
    t = ScriptTracker(rise=3, fall=3)
    assert t.state is INIT and t.ok is None
    assert t.feed(True) is True
    assert t.state is OK and t.ok is True
    t = ScriptTracker(rise=3, fall=3)
    assert t.feed(False) is True
    assert t.state is FAIL and t.ok is False


def test_fall_consecutive_failures_to_fail_and_rise_successes_back() -> None:
    t = ScriptTracker(rise=2, fall=3)
    t.feed(True)
    assert feed_all(t, "xx") == [OK, OK]
    assert feed_all(t, "x") == [FAIL]
    assert feed_all(t, "o") == [FAIL]
    assert feed_all(t, "o") == [OK]


def test_a_contrary_result_restarts_the_count() -> None:
    t = ScriptTracker(rise=2, fall=2)
    t.feed(True)
    # x o x o ... never two failures in a row: stays OK.
    assert feed_all(t, "xoxoxo") == [OK] * 6
    assert feed_all(t, "xx") == [OK, FAIL]
    assert feed_all(t, "oxoxox") == [FAIL] * 6


def test_init_fail_starts_failed_and_needs_rise_successes() -> None:
    t = ScriptTracker(rise=3, fall=1, init_fail=True)
    assert t.state is FAIL
    assert feed_all(t, "ooo") == [FAIL, FAIL, OK]


def test_feed_reports_only_changes() -> None:
    t = ScriptTracker()
    assert [t.feed(r) for r in (True, True, False, False, True)] == [
        True,
        False,
        True,
        False,
        True,
    ]


@pytest.mark.parametrize(("rise", "fall"), [(0, 1), (1, 0), (-1, 1), (True, 1), (1.5, 1)])
def test_invalid_rise_fall_raise(rise: object, fall: object) -> None:
    with pytest.raises(TrackingError):
        ScriptTracker(rise=rise, fall=fall)  # type: ignore[arg-type]


def _reference_state(results: list[bool], rise: int, fall: int) -> ScriptState:
    """The rule stated plainly: after the first result, change only on a run."""
    state = INIT
    run_ok = run_fail = 0
    for r in results:
        run_ok, run_fail = (run_ok + 1, 0) if r else (0, run_fail + 1)
        if state is INIT:
            state = OK if r else FAIL
        elif state is FAIL and run_ok >= rise:
            state = OK
        elif state is OK and run_fail >= fall:
            state = FAIL
    return state


@given(
    rise=st.integers(1, 5),
    fall=st.integers(1, 5),
    results=st.lists(st.booleans(), max_size=60),
)
def test_tracker_matches_the_plain_rule(rise: int, fall: int, results: list[bool]) -> None:
    t = ScriptTracker(rise=rise, fall=fall)
    for i, r in enumerate(results):
        t.feed(r)
        assert t.state is _reference_state(results[: i + 1], rise, fall)


# ------------------------------------------------------------ effective priority


def test_seed_config_script_weight_adds_when_healthy() -> None:
    healthy = Tracked("chk_service", ok=True, weight=100)
    assert effective_priority(100, [healthy]) == EffectivePriority(200, False)
    sick = Tracked("chk_service", ok=False, weight=100)
    assert effective_priority(100, [sick]) == EffectivePriority(100, False)


@pytest.mark.parametrize(
    ("weight", "reverse", "ok", "priority"),
    [
        (20, False, True, 120),
        (20, False, False, 100),
        (-20, False, True, 100),
        (-20, False, False, 80),
        (20, True, True, 80),  # reverse: decreased when up
        (20, True, False, 100),
        (-20, True, True, 100),
        (-20, True, False, 120),  # reverse: increased when down
    ],
)
def test_weight_signs_and_reverse(weight: int, reverse: bool, ok: bool, priority: int) -> None:
    tracked = Tracked("t", ok=ok, weight=weight, reverse=reverse)
    assert effective_priority(100, [tracked]) == EffectivePriority(priority, False)


@pytest.mark.parametrize(
    ("ok", "reverse", "fault"),
    [(True, False, False), (False, False, True), (True, True, True), (False, True, False)],
)
def test_weight_zero_means_fault(ok: bool, reverse: bool, fault: bool) -> None:
    tracked = Tracked("eth0", ok=ok, reverse=reverse)
    assert effective_priority(100, [tracked]) == EffectivePriority(100, fault)


def test_unknown_script_adjusts_nothing_but_holds_weight_zero_in_fault() -> None:
    assert effective_priority(100, [Tracked("s", ok=None, weight=50)]) == (100, False)
    assert effective_priority(100, [Tracked("s", ok=None, weight=-50)]) == (100, False)
    assert effective_priority(100, [Tracked("s", ok=None)]) == (100, True)


def test_fault_persists_until_every_weight_zero_object_recovers() -> None:
    tracked = [Tracked("eth0", ok=False), Tracked("chk", ok=False)]
    assert effective_priority(100, tracked).fault
    assert faulted_names(tracked) == ("eth0", "chk")
    tracked[0] = Tracked("eth0", ok=True)
    assert effective_priority(100, tracked).fault
    assert faulted_names(tracked) == ("chk",)
    tracked[1] = Tracked("chk", ok=True)
    assert effective_priority(100, tracked) == (100, False)


def test_priority_is_clamped_to_1_254() -> None:
    up = [Tracked(f"s{i}", ok=True, weight=253) for i in range(3)]
    assert effective_priority(100, up).priority == 254
    down = [Tracked(f"s{i}", ok=False, weight=-253) for i in range(3)]
    assert effective_priority(100, down).priority == 1


def test_owner_priority_is_never_adjusted_but_can_fault() -> None:
    tracked = [Tracked("s", ok=False, weight=-100), Tracked("eth0", ok=False)]
    assert effective_priority(255, tracked) == EffectivePriority(255, True)


@pytest.mark.parametrize("weight", [254, -254, True, 1.5])
def test_weight_out_of_range_raises(weight: object) -> None:
    with pytest.raises(TrackingError) as err:
        Tracked("s", ok=True, weight=weight)  # type: ignore[arg-type]
    assert err.value.reason == "invalid_weight"


@pytest.mark.parametrize("base", [0, 256, -1, True])
def test_base_priority_out_of_range_raises(base: object) -> None:
    with pytest.raises(TrackingError) as err:
        effective_priority(base, [])  # type: ignore[arg-type]
    assert err.value.reason == "invalid_priority"


@given(
    base=st.integers(1, 254),
    items=st.lists(
        st.builds(
            Tracked,
            name=st.just("t"),
            ok=st.none() | st.booleans(),
            weight=st.integers(-253, 253),
            reverse=st.booleans(),
        ),
        max_size=6,
    ),
)
def test_effective_priority_is_the_clamped_sum(base: int, items: list[Tracked]) -> None:
    result = effective_priority(base, items)
    assert 1 <= result.priority <= 254
    total = base + sum(i.adjustment for i in items)
    assert result.priority == min(max(total, 1), 254)
    # FAULT exactly when some weight-0 object is not "up" (in its reverse-aware sense).
    healthy = {(True, False), (False, True)}
    assert result.fault == any(i.weight == 0 and (i.ok, i.reverse) not in healthy for i in items)
