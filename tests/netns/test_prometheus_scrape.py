"""A real Prometheus scrapes mailha's exporter; every dashboard query and rule returns data.

Debian's /usr/bin/prometheus is started on 127.0.0.1 (free port, temp config and storage,
1 s scrape and rule evaluation, mailha-rules.yml loaded) and scrapes two MetricsServers run
on this test's event loop — node1 and node2 of the seed cluster — plus a dead third target.

How alert conditions (``... == 0``, ``... > 1``) are made to return series: the two nodes
are put in a deliberately broken state in which every alert's condition holds (split brain
on one VRRP instance, no master on another, a real server down, quorum lost, a failed
reload, counters of overruns/errors/master changes that keep rising, Maglev tables that
differ between the nodes, and a target nobody listens on for MailhaScrapeMissing). So the
queries are the rules' exact expressions, not trimmed versions, and the test also proves
each alert really goes pending/firing in
Prometheus on metrics rendered by mailha.metrics — names and labels included.

For a healthy daemon (the lead's ``mailha serve`` variant) conditions do not hold; use
``check_queries(..., mode="selectors")``, which checks that every series selector inside
each expression matches something, or ``scrape_and_check(urls, workdir, mode=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lab.prometheus import (
    RULES,
    check_queries,
    dashboard_queries,
    free_port,
    rule_queries,
    running_prometheus,
    scrape_and_check,
    selectors,
)
from mailha.metrics import IpvsSnapshot, Metrics, MetricsServer

pytestmark = [pytest.mark.root, pytest.mark.slow]

# ---------------------------------------------------------------------- a broken cluster

SMTP, SUBMIT = "TCP 10.12.49.37:25", "TCP 10.12.49.37:587"
RS1, RS2 = "10.12.49.35:25", "10.12.49.36:25"
VRIDS = {"VI_SMTP": 173, "VI_SUBMIT": 174, "VI_FLAP": 175}


def populate(m: Metrics, node: int) -> None:
    """Set every metric family once, in the state described in the module docstring."""
    m.set_vrrp_state("VI_SMTP", 173, "MASTER")  # on both nodes: split brain
    m.set_vrrp_state("VI_SUBMIT", 174, "BACKUP")  # on both nodes: no master
    m.set_vrrp_state("VI_FLAP", 175, "MASTER" if node == 1 else "BACKUP")
    # Another cluster's instance of the same name, one master: neither alert may count it.
    m.set_vrrp_state("VI_SMTP", 51, "MASTER" if node == 1 else "BACKUP")
    for vi, vrid in VRIDS.items():
        m.vrrp_priority.labels(vi, vrid).set(200 if node == 2 else 100)
        m.vrrp_base_priority.labels(vi, vrid).set(100)
    m.vrrp_track_script_up.labels("chk_postfix").set(1)
    m.vrrp_track_interface_up.labels("eth0").set(1)
    for svc, rs, up in ((SMTP, RS1, 1), (SMTP, RS2, 0), (SUBMIT, RS1, 0)):
        m.real_server_up.labels(svc, rs).set(up)
        m.real_server_weight.labels(svc, rs).set(100)
        m.real_server_effective_weight.labels(svc, rs).set(100 if up else -1)
    m.virtual_server_quorum_up.labels(SMTP).set(1)
    m.virtual_server_quorum_up.labels(SUBMIT).set(0)
    m.virtual_server_live_weight.labels(SMTP).set(100)
    m.virtual_server_live_weight.labels(SUBMIT).set(0)
    m.virtual_server_sorry_active.labels(SMTP).set(0)
    m.virtual_server_sorry_active.labels(SUBMIT).set(1)
    m.virtual_server_programmed.labels(SMTP).set(1)
    m.virtual_server_programmed.labels(SUBMIT).set(1)
    m.component_up.labels("control").set(0 if node == 2 else 1)
    if node == 2:
        m.config_reloads.labels("failure").inc()
        m.config_last_reload_successful.set(0)
        m.config_last_reload_seconds.set_to_current_time()


def tick(m: Metrics, node: int, n: int) -> None:
    """One step of a busy, unhappy cluster: every counter and histogram moves."""
    m.set_vrrp_state("VI_FLAP", 175, "MASTER" if (n + node) % 2 else "BACKUP")
    m.vrrp_transitions.labels("VI_FLAP", 175, "BACKUP", "MASTER").inc()
    m.vrrp_master_changes.labels("VI_FLAP", 175).inc(5)
    m.vrrp_adverts_sent.labels("VI_SMTP", 173).inc()
    m.vrrp_adverts_received.labels("VI_SMTP", 173).inc()
    m.vrrp_receive_errors.labels("eth0", "vrid_mismatch").inc()
    m.vrrp_receive_dropped.labels("VI_SMTP", 173, "eth0").inc(3)
    m.vrrp_address_list_mismatch.labels("VI_SMTP", 173).inc()
    m.vrrp_track_script_runs.labels("chk_postfix", "ok").inc()
    m.check_results.labels(SMTP, RS1, "SMTP_CHECK", "ok").inc()
    m.check_results.labels(SMTP, RS2, "SMTP_CHECK", "fail").inc()
    m.check_failures.labels(SMTP, RS2, "SMTP_CHECK", "timeout").inc()
    m.check_duration.labels("SMTP_CHECK").observe(0.004 * (1 + n % 7))
    m.check_overruns.labels(SMTP, RS2).inc(2)
    m.reconcile_operations.labels("add_dest").inc()
    m.reconcile_drift.inc()
    m.reconcile_errors.inc()
    m.reconcile_duration.observe(0.002 * (1 + n % 5))
    k = n + 1
    m.ipvs = IpvsSnapshot(
        # The two directors' Maglev tables for SMTP differ: MailhaMaglevTablesDiffer.
        fingerprints={SMTP: 4_503_599_627_370_000 + node},
        services={SMTP: {"conns": 30 * k, "inpkts": 900 * k, "outpkts": 0,
                         "inbytes": 80_000 * k, "outbytes": 0}},
        backends={
            (SMTP, RS1): {"active": 3, "inactive": 7, "weight": 100, "conns": 10 * k,
                          "inbytes": 30_000 * k, "outbytes": 0},
            (SMTP, RS2): {"active": 5, "inactive": 2, "weight": 100, "conns": 20 * k,
                          "inbytes": 50_000 * k, "outbytes": 0},
        },
    )


@contextlib.asynccontextmanager
async def broken_cluster() -> AsyncIterator[list[str]]:
    """Two exporters on 127.0.0.1 plus a dead target; yields the three host:port targets."""
    nodes = {1: Metrics(), 2: Metrics()}
    servers = []

    async def ticker() -> None:
        for n in itertools.count():
            for node, m in nodes.items():
                tick(m, node, n)
            await asyncio.sleep(0.3)

    try:
        for node, m in nodes.items():
            populate(m, node)
            tick(m, node, 0)
            srv = MetricsServer(m, "127.0.0.1", 0)
            await srv.start()
            servers.append(srv)
        task = asyncio.create_task(ticker())
        try:
            yield [f"127.0.0.1:{s.port}" for s in servers] + [f"127.0.0.1:{free_port()}"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        for srv in servers:
            await srv.close()


# ---------------------------------------------------------------------- tests


def test_selectors_helper() -> None:
    expr = ('sum by (service) (rate(mailha_ipvs_backend_connections_total{job="mailha"}[1m]))'
            ' / on (service) group_left () mailha:share:rate5m or up{job="mailha"} == 0'
            ' or absent(up{job="mailha"})')
    assert selectors(expr) == [
        'mailha_ipvs_backend_connections_total{job="mailha"}', "mailha:share:rate5m",
        'up{job="mailha"}', 'up{job="mailha"}',
    ]


async def test_every_dashboard_query_and_rule_returns_series(tmp_path: Path) -> None:
    async with broken_cluster() as targets, running_prometheus(targets, tmp_path) as prom:
        dash = dashboard_queries()
        rules = await rule_queries(prom)
        assert len(dash) >= 40
        assert len(rules) == RULES.read_text().count("- alert:") + RULES.read_text().count(
            "- record:")
        problems = await check_queries(prom, dash + rules)
        assert not problems, "\n".join(f"{w}: {p}" for w, p in sorted(problems.items()))

        # Every rule evaluates cleanly inside Prometheus, and every alert is at least pending.
        deadline = time.monotonic() + 30
        alert_names = {r["name"] for r in await prom.rules() if r["type"] == "alerting"}
        while True:
            active = {a["labels"]["alertname"] for a in await prom.alerts()}
            if alert_names <= active or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert alert_names - active == set(), "alerts that never went pending"
        unhealthy = [(r["name"], r.get("lastError")) for r in await prom.rules()
                     if r["health"] != "ok"]
        assert not unhealthy, unhealthy

        # The VRRP alerts name the right instances (VI_FLAP, whose master alternates, may
        # briefly show either while the two nodes are scraped at different moments).
        by_name: dict[str, list[dict[str, str]]] = {}
        for a in await prom.alerts():
            by_name.setdefault(a["labels"]["alertname"], []).append(a["labels"])
        two = {(a["vrrp_instance"], a["vrid"]) for a in by_name["MailhaTwoMasters"]}
        none = {(a["vrrp_instance"], a["vrid"]) for a in by_name["MailhaNoMaster"]}
        assert ("VI_SMTP", "173") in two and ("VI_SUBMIT", "174") not in two
        assert ("VI_SUBMIT", "174") in none and ("VI_SMTP", "173") not in none
        assert ("VI_SMTP", "51") not in two | none  # the other cluster's, healthy
        assert [a["instance"] for a in by_name["MailhaScrapeMissing"]] == [targets[2]]

        # The recorded mail share is the 1:2 split the IPVS counters encode.
        share = {s["metric"]["real_server"]: float(s["value"][1])
                 for s in await prom.query("mailha:ipvs_backend_mail_share:ratio_rate5m")}
        assert share.keys() == {RS1, RS2}
        assert abs(share[RS1] - 1 / 3) < 0.05 and abs(share[RS2] - 2 / 3) < 0.05


async def test_selector_mode_catches_a_metric_nobody_exports(tmp_path: Path) -> None:
    """Guards against a vacuous pass: a query for a missing metric is reported, a bad one too."""
    async with broken_cluster() as targets, running_prometheus(targets[:1], tmp_path,
                                                               rule_files=()) as prom:
        problems = await check_queries(prom, [
            ("exists", 'mailha_vrrp_state{job="mailha"}'),
            ("typo", 'rate(mailha_vrrp_transition_total{job="mailha"}[1m])'),
            ("syntax", "sum by (x (mailha_vrrp_state)"),
        ], mode="selectors", wait=10)
        assert set(problems) == {"typo", "syntax"}
        assert problems["typo"].startswith("no series")
        assert problems["syntax"].startswith("error bad_data")


async def test_scrape_and_check_entry_point(tmp_path: Path) -> None:
    """The reusable entry point, as the ``mailha serve`` variant will call it: live nodes only,
    each selector must match (conditions need not hold)."""
    async with broken_cluster() as targets:
        await scrape_and_check(targets[:2], tmp_path, mode="selectors")
