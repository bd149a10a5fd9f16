"""``mailha status``'s LVS part and the IPVS metrics snapshot, from one kernel read."""

from __future__ import annotations

from pathlib import Path

from mailha.checkers.quorum import VirtualServerHealth
from mailha.checkers.result import CheckResult
from mailha.config import loads
from mailha.lvs.maglev import FingerprintMemo, fingerprint
from mailha.lvs.model import (
    Destination,
    DestStats,
    Forward,
    ObservedTable,
    Service,
    ServiceKey,
    ServiceRow,
    ServiceStats,
    Stats,
    make_table,
)
from mailha.lvs.status import check_status, ipvs_snapshot, ipvs_status, maglev_services

OURS = ServiceKey.for_address("10.96.0.1", 25)
FOREIGN = ServiceKey.for_address("10.1.1.1", 80)
D1 = Destination.of("10.96.0.12", 25, Forward.ROUTE, weight=2)
D2 = Destination.of("10.96.0.11", 25, Forward.MASQ)


def observed() -> ObservedTable:
    table = make_table([ServiceRow.of(Service(OURS, "rr"), [D1, D2]),
                        ServiceRow.of(Service(FOREIGN, "wlc"), [])])
    stats = {OURS: ServiceStats(Stats(conns=9, inbytes=100),
                                {D1.key: DestStats(Stats(conns=5), 2, 3, 0)}),
             FOREIGN: ServiceStats(Stats(conns=1), {})}
    return ObservedTable(table, stats)


def test_status_shows_owned_services_sorted_with_counts_and_zero_for_unknown() -> None:
    assert ipvs_status(observed(), {OURS}) == [{
        "service": "TCP 10.96.0.1:25", "scheduler": "rr", "fingerprint": None,
        "destinations": [
            {"address": "10.96.0.11:25", "forward": "MASQ", "weight": 1, "active": 0,
             "inactive": 0},
            {"address": "10.96.0.12:25", "forward": "ROUTE", "weight": 2, "active": 2,
             "inactive": 3},
        ]}]


def test_the_snapshot_exports_only_owned_services() -> None:
    snap = ipvs_snapshot(observed(), {OURS})
    assert set(snap.services) == {"TCP 10.96.0.1:25"}
    assert snap.services["TCP 10.96.0.1:25"]["conns"] == 9
    assert snap.backends == {("TCP 10.96.0.1:25", "10.96.0.12:25"): {
        "active": 2, "inactive": 3, "weight": 2, "conns": 5, "inbytes": 0, "outbytes": 0}}


def test_maglev_services_are_fingerprinted_in_status_and_metrics() -> None:
    mh = ServiceKey.for_address("10.96.0.1", 465)
    drifted = ServiceKey.for_address("10.96.0.1", 587)  # configured mh, now wlc in the kernel
    table = make_table([ServiceRow.of(Service(OURS, "rr"), [D1]),
                        ServiceRow.of(Service(mh, "mh"), [D1, D2]),
                        ServiceRow.of(Service(drifted, "wlc"), [D2]),
                        ServiceRow.of(Service(ServiceKey.for_address("10.1.1.1", 465), "mh"))])
    seen = ObservedTable(table, {})
    owned = {OURS, mh, drifted}
    keys = maglev_services(seen, owned, configured={drifted})
    assert sorted(keys, key=ServiceKey.sort_key) == [mh, drifted]
    values = FingerprintMemo()(seen, keys)
    assert values == {mh: fingerprint(table[mh]), drifted: fingerprint(table[drifted])}
    by_service = {s["service"]: s["fingerprint"] for s in ipvs_status(seen, owned, values)}
    assert by_service == {"TCP 10.96.0.1:25": None, "TCP 10.96.0.1:465": values[mh],
                          "TCP 10.96.0.1:587": values[drifted]}
    snap = ipvs_snapshot(seen, owned, values)
    assert snap.fingerprints == {"TCP 10.96.0.1:465": values[mh],
                                 "TCP 10.96.0.1:587": values[drifted]}


def test_check_status_gives_every_checker_its_last_reason_and_age(tmp_path: Path) -> None:
    config = loads(f"""
[global]
router_id = "t"
[control]
socket = "{tmp_path}/m.sock"
[[virtual_server]]
ip = "10.96.0.1"
port = 25
[[virtual_server.real_server]]
ip = "10.96.0.11"
port = 25
[[virtual_server.real_server.TCP_CHECK]]
[[virtual_server.real_server.SMTP_CHECK]]
""", tmp_path / "m.toml")
    health = [VirtualServerHealth(vs) for vs in config.virtual_servers]
    refused = CheckResult(False, "connect_refused", duration=0.01)
    rows = check_status(health, {(0, 0, 1): (refused, 95.0)}, lambda rs, vs: True, now=100.0)
    assert [(r["checker"], r["reason"], r["age"], r["drained"]) for r in rows] == [
        ("TCP_CHECK", "not checked yet", None, True),
        ("SMTP_CHECK", "connect_refused", 5.0, True),
    ]


def test_check_status_names_the_local_watch_that_holds_a_server_out(tmp_path: Path) -> None:
    config = loads(f"""
[global]
router_id = "t"
[control]
socket = "{tmp_path}/m.sock"
[[virtual_server]]
ip = "10.96.0.1"
port = 25
[[virtual_server.real_server]]
ip = "10.96.0.11"
local_watch = true
[[virtual_server.real_server.SMTP_CHECK]]
""", tmp_path / "m.toml")
    health = [VirtualServerHealth(vs) for vs in config.virtual_servers]
    health[0].set_watch(0, True, "no listening socket accepts 10.96.0.11:25", "listener")
    ok = CheckResult(True, "ok", duration=0.01)
    (row,) = check_status(health, {(0, 0, 0): (ok, 99.0)}, lambda rs, vs: False, now=100.0)
    assert (row["up"], row["reason"]) == (False, "local_watch: listener gone (last check: ok)")
