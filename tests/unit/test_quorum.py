"""Quorum, hysteresis, sorry server and inhibit: keepalived's ipwrapper.c rules."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from mailha.checkers import CheckResult
from mailha.checkers.quorum import (
    EventKind,
    VirtualServerHealth,
    next_quorum_state,
)
from mailha.config.model import (
    CheckerCommon,
    MiscCheck,
    RealServer,
    ScriptCommand,
    SorryServer,
    TcpCheck,
    VirtualServer,
)

OK = CheckResult.success()
FAIL = CheckResult.failure("banner_code_421", "greeted with 421")
QUORUM_UP = ScriptCommand(("/bin/echo", "up"))
QUORUM_DOWN = ScriptCommand(("/bin/echo", "down"))


def rs(n: int, weight: int = 1, *, alpha: bool = False, inhibit: bool = False) -> RealServer:
    check = TcpCheck(common=CheckerCommon(retry=0, alpha=alpha))
    return RealServer(
        ip=IPv4Address(f"10.0.0.{n}"),
        port=25,
        weight=weight,
        inhibit_on_failure=inhibit,
        notify_up=ScriptCommand(("/bin/echo", f"rs{n}", "up")),
        notify_down=ScriptCommand(("/bin/echo", f"rs{n}", "down")),
        checkers=(check,),
    )


def vs(*servers: RealServer, quorum: int = 1, hysteresis: int = 0, **kw: object) -> VirtualServer:
    return VirtualServer(
        ip=IPv4Address("10.0.0.100"),
        port=25,
        quorum=quorum,
        hysteresis=hysteresis,
        quorum_up=QUORUM_UP,
        quorum_down=QUORUM_DOWN,
        real_servers=servers,
        **kw,  # type: ignore[arg-type]
    )


def weights(health: VirtualServerHealth) -> list[int | None]:
    return [m.weight for m in health.pool().members]


def kinds(update_events: tuple[object, ...]) -> list[EventKind]:
    return [e.kind for e in update_events]  # type: ignore[attr-defined]


def test_pool_follows_server_health_and_notifies() -> None:
    health = VirtualServerHealth(vs(rs(1), rs(2)))
    assert health.start() == ()
    assert weights(health) == [1, 1] and health.quorum_up
    update = health.record(0, 0, FAIL)
    assert update.pool_changed
    assert weights(health) == [None, 1]
    [event] = update.events
    assert event.kind is EventKind.REAL_SERVER_DOWN
    assert event.command == ScriptCommand(("/bin/echo", "rs1", "down"))
    assert "banner_code_421" in event.detail
    update = health.record(0, 0, OK)
    assert kinds(update.events) == [EventKind.REAL_SERVER_UP]
    assert weights(health) == [1, 1]
    assert not health.record(0, 0, OK).pool_changed


def test_inhibit_on_failure_keeps_the_server_with_weight_zero() -> None:
    health = VirtualServerHealth(vs(rs(1, 3, inhibit=True), rs(2, 2)))
    health.record(0, 0, FAIL)
    assert weights(health) == [0, 2]
    assert health.pool().live_weight == 2


def test_quorum_lost_and_gained_with_scripts() -> None:
    health = VirtualServerHealth(vs(rs(1), rs(2), quorum=2))
    update = health.record(1, 0, FAIL)
    assert kinds(update.events) == [EventKind.REAL_SERVER_DOWN, EventKind.QUORUM_DOWN]
    assert update.events[1].command == QUORUM_DOWN
    assert not health.quorum_up
    # no sorry server: the surviving server keeps serving
    assert weights(health) == [1, None]
    update = health.record(1, 0, OK)
    assert kinds(update.events) == [EventKind.REAL_SERVER_UP, EventKind.QUORUM_UP]
    assert update.events[1].command == QUORUM_UP


# Each row: quorum, hysteresis, live weights over time, quorum state after each.
HYSTERESIS_TABLE = [
    # quorum 3, hysteresis 1: down below 2, up again only at 4.
    (3, 1, [4, 3, 2, 1, 2, 3, 4, 3], [True, True, True, False, False, False, True, True]),
    # hysteresis 0: plain threshold.
    (2, 0, [2, 1, 2, 1], [True, False, True, False]),
    # hysteresis >= quorum: lost only at zero weight.
    (2, 2, [4, 1, 0, 3, 4], [True, True, False, False, True]),
]


def test_hysteresis_table() -> None:
    for quorum, hysteresis, sums, expected in HYSTERESIS_TABLE:
        up = True
        states = []
        for live in sums:
            up = next_quorum_state(up, live, quorum, hysteresis)
            states.append(up)
        assert states == expected, (quorum, hysteresis)


def test_hysteresis_through_real_servers() -> None:
    servers = [rs(n) for n in range(1, 6)]  # weight 1 each, all up: live 5
    health = VirtualServerHealth(vs(*servers, quorum=3, hysteresis=1))
    assert health.quorum_up
    for index in (0, 1, 2):  # live 4, 3, 2: inside the band or above: still up
        assert EventKind.QUORUM_DOWN not in kinds(health.record(index, 0, FAIL).events)
    assert health.quorum_up
    assert EventKind.QUORUM_DOWN in kinds(health.record(3, 0, FAIL).events)  # live 1
    for index in (0, 1):  # live 2, 3: not enough to regain (needs 4)
        assert EventKind.QUORUM_UP not in kinds(health.record(index, 0, OK).events)
    assert EventKind.QUORUM_UP in kinds(health.record(2, 0, OK).events)  # live 4


def test_sorry_server_replaces_the_pool_while_quorum_is_lost() -> None:
    sorry = SorryServer(ip=IPv4Address("10.0.0.50"), port=25)
    health = VirtualServerHealth(vs(rs(1), rs(2), quorum=2, sorry_server=sorry))
    assert health.pool().sorry_weight is None and not health.pool().sorry_active
    health.record(0, 0, FAIL)
    pool = health.pool()
    assert pool.sorry_active and pool.sorry_weight == 1
    assert weights(health) == [None, None]  # the alive server is taken out too
    health.record(0, 0, OK)
    pool = health.pool()
    assert not pool.sorry_active and pool.sorry_weight is None
    assert weights(health) == [1, 1]


def test_sorry_server_inhibit_and_inhibited_servers_while_sorry() -> None:
    sorry = SorryServer(ip=IPv4Address("10.0.0.50"), inhibit=True)
    health = VirtualServerHealth(
        vs(rs(1, inhibit=True), rs(2), quorum=2, sorry_server=sorry)
    )
    assert health.pool().sorry_weight == 0  # present, drained, while quorum is up
    health.record(1, 0, FAIL)
    assert health.pool().sorry_weight == 1
    assert weights(health) == [0, None]  # alive but replaced: inhibit keeps it at 0


def test_alpha_start_with_sorry_server_announces_quorum_down() -> None:
    sorry = SorryServer(ip=IPv4Address("10.0.0.50"))
    health = VirtualServerHealth(vs(rs(1, alpha=True), rs(2, alpha=True), sorry_server=sorry))
    [event] = health.start()
    assert event.kind is EventKind.QUORUM_DOWN and event.command == QUORUM_DOWN
    assert health.pool().sorry_active
    assert weights(health) == [None, None]
    update = health.record(0, 0, OK)
    assert kinds(update.events) == [EventKind.REAL_SERVER_UP, EventKind.QUORUM_UP]
    assert weights(health) == [1, None] and not health.pool().sorry_active


def test_alpha_start_without_sorry_server_is_silent() -> None:
    health = VirtualServerHealth(vs(rs(1, alpha=True)))
    assert health.start() == ()
    assert not health.quorum_up
    assert kinds(health.record(0, 0, FAIL).events) == [EventKind.REAL_SERVER_DOWN]


def test_dynamic_weight_can_lose_quorum_without_a_server_going_down() -> None:
    check = MiscCheck(
        misc_path=ScriptCommand(("/bin/true",)), misc_dynamic=True, common=CheckerCommon(retry=0)
    )
    server = RealServer(ip=IPv4Address("10.0.0.1"), port=25, weight=10, checkers=(check,))
    health = VirtualServerHealth(vs(server, quorum=5))
    update = health.record(0, 0, CheckResult.success(dynamic_weight=2))
    assert kinds(update.events) == [EventKind.QUORUM_DOWN]
    assert weights(health) == [2]
    update = health.record(0, 0, CheckResult.success(dynamic_weight=8))
    assert kinds(update.events) == [EventKind.QUORUM_UP]


def test_omega_shutdown_notifies_alive_servers_and_quorum() -> None:
    health = VirtualServerHealth(vs(rs(1), rs(2), omega=True))
    health.record(1, 0, FAIL)
    events = health.shutdown()
    assert kinds(events) == [EventKind.REAL_SERVER_DOWN, EventKind.QUORUM_DOWN]
    assert events[0].real_server is not None and events[0].real_server.ip == IPv4Address("10.0.0.1")
    assert VirtualServerHealth(vs(rs(1))).shutdown() == ()


@settings(max_examples=300, deadline=None)
@given(
    quorum=st.integers(1, 20),
    hysteresis=st.integers(0, 10),
    start=st.integers(0, 40),
    sums=st.lists(st.integers(0, 40), max_size=60),
)
def test_quorum_changes_only_across_the_band(
    quorum: int, hysteresis: int, start: int, sums: list[int]
) -> None:
    up = start >= quorum + hysteresis
    for live in sums:
        new = next_quorum_state(up, live, quorum, hysteresis)
        if new and not up:
            assert live >= quorum + hysteresis
        if up and not new:
            assert live < quorum - hysteresis or live == 0
        up = new


@settings(max_examples=300, deadline=None)
@given(
    quorum=st.integers(1, 20),
    hysteresis=st.integers(0, 10),
    initially_up=st.booleans(),
    data=st.data(),
)
def test_quorum_never_flaps_inside_the_band(
    quorum: int, hysteresis: int, initially_up: bool, data: st.DataObject
) -> None:
    low, high = max(1, quorum - hysteresis), quorum + hysteresis - 1
    if low > high:
        return  # hysteresis 0: there is no band
    sums = data.draw(st.lists(st.integers(low, high), min_size=1, max_size=60))
    up = initially_up
    for live in sums:
        assert next_quorum_state(up, live, quorum, hysteresis) == up


@settings(max_examples=100, deadline=None)
@given(
    quorum=st.integers(1, 6),
    hysteresis=st.integers(0, 3),
    flips=st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=40),
)
def test_virtual_server_quorum_matches_the_rule(
    quorum: int, hysteresis: int, flips: list[tuple[int, bool]]
) -> None:
    """Whatever the sequence of results, quorum_up follows next_quorum_state exactly."""
    servers = [rs(n, weight=n) for n in range(1, 7)]
    health = VirtualServerHealth(vs(*servers, quorum=quorum, hysteresis=hysteresis))
    expected_up = health.quorum_up
    for index, ok in flips:
        was_alive = health.real_servers[index].alive
        update = health.record(index, 0, OK if ok else FAIL)
        if was_alive != ok:
            expected_up = next_quorum_state(
                expected_up, health.live_weight(), quorum, hysteresis
            )
        assert health.quorum_up == expected_up
        assert health.pool().live_weight == sum(
            n + 1 for n, s in enumerate(health.real_servers) if s.alive
        )
        quorum_events = [
            e for e in update.events if e.kind in (EventKind.QUORUM_UP, EventKind.QUORUM_DOWN)
        ]
        assert len(quorum_events) <= 1


def test_a_reload_keeps_what_the_checks_knew_where_they_did_not_change() -> None:
    """A server that was down when the admin reloaded stays out of the pool (a fresh
    state would have put it back, up, until its checks failed again)."""
    before = VirtualServerHealth(vs(rs(1), rs(2), rs(3)))
    before.record(1, 0, FAIL)  # rs2 down
    assert weights(before) == [1, None, 1]
    # rs1's weight changes, rs2 is unchanged, rs3's check changes, rs4 is new.
    changed_check = RealServer(ip=IPv4Address("10.0.0.3"), port=25, checkers=(
        TcpCheck(common=CheckerCommon(retry=2, alpha=True)),))
    after = VirtualServerHealth(vs(rs(1, 5), rs(2), changed_check, rs(4)), before)
    assert weights(after) == [5, None, None, 1]  # rs3 starts afresh: alpha, so down
    assert [h.alive for h in after.real_servers] == [True, False, False, True]
    assert after.record(1, 0, OK).pool_changed  # rs2's first success brings it back
    assert kinds(after.record(1, 0, OK).events) == []


def test_a_reload_keeps_a_dynamic_weight_and_the_quorum_state() -> None:
    dynamic = RealServer(ip=IPv4Address("10.0.0.1"), port=25, weight=1, checkers=(
        MiscCheck(misc_path=ScriptCommand(("/bin/true",)), misc_dynamic=True,
                  common=CheckerCommon(retry=0)),))
    before = VirtualServerHealth(vs(dynamic, rs(2), quorum=3, hysteresis=1))
    before.record(0, 0, CheckResult.success(dynamic_weight=4))
    before.record(1, 0, FAIL)
    assert before.quorum_up and before.live_weight() == 4  # inside the band: still up
    after = VirtualServerHealth(vs(dynamic, rs(2), quorum=3, hysteresis=1), before)
    assert after.live_weight() == 4 and after.quorum_up  # the band holds across the reload
    fresh = VirtualServerHealth(vs(dynamic, rs(2), quorum=3, hysteresis=1))
    assert fresh.live_weight() == 2 and not fresh.quorum_up
