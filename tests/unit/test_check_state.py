"""Per-real-server health rules (keepalived's retry, alpha, weights), as tables."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from mailha.checkers import CheckResult
from mailha.checkers.state import CheckerHealth, RealServerHealth, Verdict
from mailha.config.model import CheckerCommon, MiscCheck, RealServer, ScriptCommand, TcpCheck

OK = CheckResult.success()
FAIL = CheckResult.failure("connection_refused")


def tcp(retry: int = 1, alpha: bool = False) -> TcpCheck:
    return TcpCheck(
        common=CheckerCommon(retry=retry, alpha=alpha, delay_loop=6.0, delay_before_retry=1.5)
    )


def dynamic(weight: int) -> CheckResult:
    return CheckResult.success(dynamic_weight=weight)


# (retry, alpha, results as a string of "+"/"-", expected up-state after each, delays)
CHECKER_TABLE = [
    # Up checker absorbs `retry` failures (retried quickly), goes down on the next.
    (1, False, "--", [True, False], [1.5, 6.0]),
    (2, False, "---", [True, True, False], [1.5, 1.5, 6.0]),
    (0, False, "-", [False], [6.0]),
    # A success in between resets the retry counter.
    (1, False, "-+--", [True, True, True, False], [1.5, 6.0, 1.5, 6.0]),
    # Down checker: one success brings it up; failures while down are not retried.
    (1, False, "--+", [True, False, True], [1.5, 6.0, 6.0]),
    (1, False, "----", [True, False, False, False], [1.5, 6.0, 6.0, 6.0]),
    # Alpha: starts down, first success brings it up, then normal retry rules.
    (1, True, "+--", [True, True, False], [6.0, 1.5, 6.0]),
    (3, True, "--+", [False, False, True], [6.0, 6.0, 6.0]),
]


@pytest.mark.parametrize(("retry", "alpha", "results", "states", "delays"), CHECKER_TABLE)
def test_checker_retry_and_alpha(
    retry: int, alpha: bool, results: str, states: list[bool], delays: list[float]
) -> None:
    health = CheckerHealth(tcp(retry, alpha))
    assert health.up is (not alpha)
    seen_states, seen_delays = [], []
    for mark in results:
        _, delay = health.record(OK if mark == "+" else FAIL)
        seen_states.append(health.up)
        seen_delays.append(delay)
    assert seen_states == states
    assert seen_delays == delays


def real_server(*checkers: TcpCheck | MiscCheck, weight: int = 5) -> RealServer:
    return RealServer(ip=IPv4Address("10.0.0.1"), port=25, weight=weight, checkers=checkers)


def test_server_is_up_only_when_all_checkers_are_up() -> None:
    health = RealServerHealth(real_server(tcp(retry=0), tcp(retry=0)))
    assert health.alive
    assert health.record(0, FAIL).verdict is Verdict.DOWN
    assert health.record(1, FAIL).verdict is Verdict.UNCHANGED
    assert health.record(0, OK).verdict is Verdict.UNCHANGED  # checker 1 still down
    assert not health.alive
    assert health.record(1, OK).verdict is Verdict.UP
    assert health.alive


def test_server_without_checkers_is_always_alive() -> None:
    health = RealServerHealth(real_server())
    assert health.alive and health.live_weight == 5


def test_alpha_server_starts_down_and_reports_its_first_down_verdict_once() -> None:
    health = RealServerHealth(real_server(tcp(retry=1, alpha=True)))
    assert not health.alive and health.live_weight == 0
    assert health.record(0, FAIL).verdict is Verdict.CONFIRMED_DOWN
    assert health.record(0, FAIL).verdict is Verdict.UNCHANGED
    assert health.record(0, OK).verdict is Verdict.UP


def misc(dynamic_on: bool = True) -> MiscCheck:
    return MiscCheck(
        misc_path=ScriptCommand(("/bin/true",)),
        misc_dynamic=dynamic_on,
        common=CheckerCommon(retry=0),
    )


def test_dynamic_weight_replaces_the_configured_weight() -> None:
    health = RealServerHealth(real_server(misc(), weight=1))
    update = health.record(0, dynamic(10))
    assert update.weight_changed and update.verdict is Verdict.UNCHANGED
    assert health.live_weight == 10
    assert not health.record(0, dynamic(10)).weight_changed
    assert health.record(0, dynamic(20)).weight_changed
    assert health.live_weight == 20
    # exit 0 leaves the weight alone (keepalived's legacy case)
    assert not health.record(0, OK).weight_changed
    assert health.live_weight == 20
    # a failure takes the server out; the weight is kept for when it returns
    assert health.record(0, FAIL).verdict is Verdict.DOWN
    assert health.live_weight == 0
    assert health.record(0, OK).verdict is Verdict.UP
    assert health.live_weight == 20


def test_dynamic_weight_zero_keeps_the_server_alive_with_no_weight() -> None:
    health = RealServerHealth(real_server(misc(), weight=3))
    health.record(0, dynamic(0))
    assert health.alive and health.live_weight == 0


def test_dynamic_weight_recorded_while_down_for_another_reason() -> None:
    health = RealServerHealth(real_server(tcp(retry=0), misc(), weight=1))
    health.record(0, FAIL)
    update = health.record(1, dynamic(7))
    assert update.verdict is Verdict.UNCHANGED and not health.alive
    assert health.record(0, OK).verdict is Verdict.UP
    assert health.live_weight == 7


def test_bad_checker_index_raises_index_error() -> None:
    health = RealServerHealth(real_server(tcp()))
    with pytest.raises(IndexError):
        health.record(3, OK)
