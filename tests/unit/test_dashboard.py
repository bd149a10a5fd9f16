"""deploy/grafana/mailha.json: valid, every panel queries something, every query is PromQL
that parses and names only metrics mailha really exports.

PromQL syntax is checked offline by promtool: each query becomes a recording rule in a
generated rules file (JSON is YAML) and ``promtool check rules`` parses them all. That the
queries return data against a live exporter is tests/netns/test_prometheus_scrape.py's job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailha.metrics import IpvsSnapshot, Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "mailha.json"

# What Grafana substitutes at query time, with values any Prometheus accepts.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$job": "mailha",
    "$node": ".*",
    "$vrrp_instance": ".*",
}

# Names PromQL functions/keywords or Prometheus itself provides, not mailha.
NOT_MAILHA = {"up"}


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def substitute(expr: str) -> str:
    """Replace Grafana variables (longest name first, so $node never eats $node_x)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation query, variables substituted."""
    found = []
    for panel in walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} target {target.get('refId')}",
                          substitute(target["expr"])))
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "target" in ann:
            found.append((f"annotation {ann['name']!r}", substitute(ann["target"]["expr"])))
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (``mailha_*`` plus Prometheus' ``up``).

    Label values and label names inside ``{...}`` / ``by (...)`` are not metric names, so
    those parts are removed first; recording-rule names (``mailha:...``) do not match.
    """
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stripped = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "",
                      stripped)
    names = set(re.findall(r"(?<![\w:])(mailha_[A-Za-z0-9_]+|up)\b(?!\s*\()", stripped))
    return names


def exported_sample_names() -> set[str]:
    """Every sample name a fully populated Metrics renders (``_total``, ``_bucket``, ...)."""
    m = Metrics()
    m.ipvs = IpvsSnapshot(
        services={"TCP 10.12.49.37:25": {"conns": 1}},
        backends={("TCP 10.12.49.37:25", "10.12.49.35:25"): {"conns": 1}},
    )
    names = set()
    for family in text_string_to_metric_families(m.render().decode()):
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
        # Families with no children yet render no samples; derive their sample names.
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "info": ("_info",),
        }.get(family.type, ())
        names.update(family.name + s for s in suffixes)
    return names


# ---------------------------------------------------------------------- structure


def test_dashboard_is_a_grafana_dashboard_with_the_expected_variables() -> None:
    dash = load_dashboard()
    assert 36 <= dash["schemaVersion"] <= 41
    assert dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"job", "node"} <= variables.keys()
    assert variables["node"]["multi"] and variables["node"]["allValue"] == ".*"


def test_annotation_queries_use_the_target_format_not_the_legacy_fields() -> None:
    """Grafana >= 9 reads a Prometheus annotation's query from ``target``; the top-level
    ``expr``/``step`` of older dashboards are only migrated on load, and tools that do not
    migrate (provisioning diffs, grafana-foundation-sdk, linters) see an empty query."""
    queries = [a for a in load_dashboard()["annotations"]["list"] if not a.get("builtIn")]
    assert queries
    for ann in queries:
        assert "expr" not in ann and "step" not in ann, ann["name"]
        target = ann["target"]
        assert target["expr"].strip() and target["refId"], ann["name"]
        assert ann["datasource"]["uid"] == "${DS_PROMETHEUS}", ann["name"]


def test_the_lab_prometheus_check_sees_the_annotation_query_too() -> None:
    """tests/netns/test_prometheus_scrape.py runs every query through lab.prometheus."""
    from lab.prometheus import dashboard_queries as lab_queries

    assert [w for w, _ in lab_queries(DASHBOARD) if w.startswith("annotation")] == [
        "annotation 'Master changes'"]


def test_query_variables_have_a_default_selection() -> None:
    """An empty ``current`` leaves the first load to whatever the first option happens to
    be; the defaults are the documented job and every node and instance."""
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert variables["job"]["current"]["value"] == "mailha"
    for var in variables.values():
        if var["type"] != "query":
            continue
        assert var["current"], f"variable {var['name']} has no default"
        if var.get("includeAll"):
            assert var["current"]["value"] == ["$__all"], var["name"]
            assert var["current"]["text"] == ["All"], var["name"]


def test_panels_tell_instances_of_the_same_name_apart_by_vrid() -> None:
    """Issue 10: every grouping and legend that names a VRRP instance carries its VRID."""
    dash = load_dashboard()
    texts = []
    for panel in walk_panels(dash["panels"]):
        for target in panel.get("targets", []):
            texts.append((panel["title"], target["expr"], target.get("legendFormat", "")))
    for ann in dash["annotations"]["list"]:
        if "target" in ann:
            texts.append((ann["name"], ann["target"]["expr"], ann.get("titleFormat", "")))
    checked = 0
    for where, expr, legend in texts:
        for labels in re.findall(r"\bby \(([^)]*)\)", expr):
            if "vrrp_instance" in labels:
                assert "vrid" in labels, f"{where}: by ({labels})"
                checked += 1
        if "{{vrrp_instance}}" in legend:
            assert "{{vrid}}" in legend, f"{where}: {legend}"
            checked += 1
    assert checked >= 10


def test_every_panel_uses_the_datasource_variable() -> None:
    for panel in walk_panels(load_dashboard()["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_every_panel_has_a_target_with_an_expression() -> None:
    panels = [p for p in walk_panels(load_dashboard()["panels"]) if p["type"] != "row"]
    assert len(panels) >= 20
    for panel in panels:
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no target"
        for target in targets:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} has an empty expr"
        ref_ids = [t["refId"] for t in targets]
        assert len(set(ref_ids)) == len(ref_ids), f"duplicate refId in {panel['title']!r}"


def test_panel_ids_unique_and_grid_positions_do_not_overlap() -> None:
    panels = list(walk_panels(load_dashboard()["panels"]))
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_covers_what_operators_ask_for() -> None:
    """The brief's list: master now, transitions, priority, mail share, checks, IPVS, ..."""
    everything = " ".join(expr for _, expr in dashboard_queries(load_dashboard()))
    for needle in (
        'mailha_vrrp_state{job="mailha", instance=~".*", vrrp_instance=~".*", state="MASTER"}',
        "mailha_vrrp_transitions_total", "mailha_vrrp_priority",
        "mailha_ipvs_backend_connections_total", "mailha_ipvs_backend_connections_active",
        "mailha_check_duration_seconds_bucket", "mailha_check_failures_total",
        "mailha_ipvs_incoming_packets_total", "mailha_ipvs_incoming_bytes_total",
        "mailha_virtual_server_quorum_up", "mailha_virtual_server_sorry_active",
        "mailha_real_server_up", "mailha_real_server_effective_weight",
        "mailha_reconcile_operations_total", "mailha_reconcile_drift_repairs_total",
        "mailha_reconcile_errors_total", "mailha_config_reloads_total", "mailha_build_info",
    ):
        assert needle in everything, needle


# ---------------------------------------------------------------------- names and syntax


def test_metric_name_extraction_ignores_labels_and_functions() -> None:
    expr = ('sum by (service, real_server) (rate(mailha_ipvs_backend_connections_total'
            '{job="mailha", instance=~"mailha_x"}[1m])) / ignoring (real_server) group_left '
            'mailha:share:rate5m or up{job="mailha"} or histogram_quantile(0.5, x)')
    assert metric_names(expr) == {"mailha_ipvs_backend_connections_total", "up"}


def test_every_metric_the_dashboard_uses_is_exported_by_mailha() -> None:
    exported = exported_sample_names()
    assert "mailha_vrrp_transitions_total" in exported  # sanity: suffixes were derived
    assert "mailha_check_duration_seconds_bucket" in exported
    used: set[str] = set()
    for where, expr in dashboard_queries(load_dashboard()):
        names = metric_names(expr)
        assert names, f"{where} selects no metric: {expr}"
        missing = names - exported - NOT_MAILHA
        assert not missing, f"{where} uses metrics mailha does not export: {sorted(missing)}"
        used |= names
    # Template variables select series too.
    for var in load_dashboard()["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"]
            assert re.fullmatch(r"label_values\((.+), (\w+)\)", query), query
            assert metric_names(query) <= exported
    assert len(used) >= 30


def _promtool() -> str | None:
    found = shutil.which("promtool")
    if found is None and os.environ.get("CI") == "true":
        pytest.fail("CI must run this test, but promtool is not installed "
                    "(Debian: apt-get install prometheus)", pytrace=False)
    return found


def test_every_dashboard_expression_parses_with_promtool(tmp_path: Path) -> None:
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    queries = dashboard_queries(load_dashboard())
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)
    ]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules, indent=1))
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60, check=False)
    out = run.stdout + run.stderr
    if run.returncode != 0:
        # promtool names the failing rule by index: point at the panel instead.
        failing = [queries[int(i)] for i in re.findall(r"dashboard:query_(\d+)", out)]
        pytest.fail(f"promtool rejected dashboard queries {failing}:\n{out}")
    assert f"SUCCESS: {len(queries)} rules found" in out


def test_promtool_check_catches_a_broken_query(tmp_path: Path) -> None:
    """The syntax check above would notice a bad query (guards against a vacuous pass)."""
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    path = tmp_path / "bad.yml"
    path.write_text(json.dumps({"groups": [{"name": "g", "rules": [
        {"record": "dashboard:query_0", "expr": "sum by (x (rate(mailha_up[1m]))"}]}]}))
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode != 0
