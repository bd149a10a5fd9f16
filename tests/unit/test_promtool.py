"""deploy/prometheus: the rules parse, their promtool unit tests pass, and they cover every alert.

promtool ships in Debian's ``prometheus`` package. Without it these tests skip locally but
fail in CI (``CI=true``): rules nobody checks rot silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailha.metrics import BgpSnapshot, IpvsSnapshot, Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "mailha-rules.yml"
RULE_TESTS = DEPLOY / "mailha-rules.test.yml"
BGP_RULES = DEPLOY / "mailha-bgp-rules.yml"
BGP_RULE_TESTS = DEPLOY / "mailha-bgp-rules.test.yml"
RULE_PAIRS = [(RULES, RULE_TESTS), (BGP_RULES, BGP_RULE_TESTS)]
CONFIG = DEPLOY / "prometheus.yml"

REQUIRED_ALERTS = {
    "MailhaNoMaster", "MailhaTwoMasters", "MailhaFlapping", "MailhaRealServerDown",
    "MailhaQuorumLost", "MailhaConfigReloadFailed", "MailhaScrapeMissing",
    "MailhaCheckOverruns", "MailhaReconcileErrors", "MailhaMaglevTablesDiffer",
}
REQUIRED_BGP_ALERTS = {"MailhaBgpNoDirector", "MailhaBgpVipNotAnnounced", "MailhaBirdDown",
                       "MailhaBgpSessionDown"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def _run(promtool: str, *args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def _alert_names(text: str) -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\w+)\s*$", text, flags=re.M)


@pytest.mark.parametrize("rules", [RULES, BGP_RULES], ids=lambda p: p.name)
def test_promtool_check_rules(promtool: str, rules: Path) -> None:
    run = _run(promtool, "check", "rules", rules.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_promtool_check_example_config(promtool: str) -> None:
    run = _run(promtool, "check", "config", CONFIG.name)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("tests", [RULE_TESTS, BGP_RULE_TESTS], ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool: str, tests: Path) -> None:
    run = _run(promtool, "test", "rules", tests.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_unit_tests_fail_when_a_rule_is_broken(promtool: str, tmp_path: Path) -> None:
    """Against a copy with MailhaNoMaster's threshold raised, promtool's tests must fail."""
    original = RULES.read_text()
    masters = ('sum by (cluster, vrrp_instance, vrid) '
               '(mailha_vrrp_state{job="mailha", state="MASTER"})')
    broken = original.replace(f"{masters} < 1", f"{masters} < 0")
    assert broken != original
    (tmp_path / RULES.name).write_text(broken)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    run = _run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert run.returncode != 0
    assert "MailhaNoMaster" in run.stdout + run.stderr


@pytest.mark.parametrize(("rules", "required"), [(RULES, REQUIRED_ALERTS),
                                                  (BGP_RULES, REQUIRED_BGP_ALERTS)],
                         ids=["vrrp", "bgp"])
def test_every_required_alert_exists_with_severity_and_runbook_text(
        rules: Path, required: set[str]) -> None:
    text = rules.read_text()
    alerts = _alert_names(text)
    assert len(alerts) == len(set(alerts)), "duplicate alert names"
    assert set(alerts) >= required
    # Each alert block has a severity label and both annotations.
    blocks = re.split(r"^\s*- (?:alert|record):", text, flags=re.M)[1:]
    for block in blocks:
        name = block.split()[0]
        if name not in alerts:
            continue
        assert re.search(r"severity: (critical|warning)", block), name
        assert "summary:" in block and "description:" in block, name


@pytest.mark.parametrize(("rules", "rule_tests"), RULE_PAIRS, ids=["vrrp", "bgp"])
def test_every_alert_is_tested_firing_and_quiet(rules: Path, rule_tests: Path) -> None:
    """Each alert appears in the promtool tests with and without expected alerts."""
    tests = rule_tests.read_text()
    fired = set(re.findall(
        r'alertname: "?(\w+)"?\n\s+exp_alerts:\n\s+- exp_labels', tests))
    quiet = set(re.findall(r'alertname: "?(\w+)"?\n\s+exp_alerts: \[\]', tests))
    alerts = set(_alert_names(rules.read_text()))
    assert alerts - fired == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"


@pytest.mark.parametrize("rules", [RULES, BGP_RULES], ids=lambda p: p.name)
def test_rules_use_only_metrics_mailha_exports(rules: Path) -> None:
    m = Metrics()
    m.ipvs = IpvsSnapshot(backends={("s", "r"): {"conns": 1}})
    m.bgp = BgpSnapshot(vips={"10.12.49.37": (True, True)}, sessions={"uplink": True})
    exported = set()
    for family in text_string_to_metric_families(m.render().decode()):
        exported.add(family.name)
        exported.update(s.name for s in family.samples)
        exported.update(family.name + suffix for suffix in
                        {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
                        .get(family.type, ()))
    exprs = re.findall(r"^\s*expr: (.+)$", rules.read_text(), flags=re.M)
    used = set()
    for expr in exprs:
        without_strings = re.sub(r'"[^"]*"', '""', expr)
        used |= set(re.findall(r"(?<![\w:])(mailha_[A-Za-z0-9_]+)", without_strings))
    assert used, "no metric names found"
    assert used <= exported, sorted(used - exported)


@pytest.mark.parametrize(("rules", "least"), [(RULES, 10), (BGP_RULES, 2)],
                         ids=["vrrp", "bgp"])
def test_every_aggregation_keeps_the_vrid_and_the_cluster(rules: Path, least: int) -> None:
    """Issue 10: an instance is (cluster, vrrp_instance, vrid), never its name alone, so two
    clusters that both call theirs VI_postfix are not summed into "two masters"."""
    text = rules.read_text()
    groupings = re.findall(r"\b(by|on) \(([^)]*)\)", text.split("groups:", 1)[1])
    assert len(groupings) >= least
    for keyword, labels in groupings:
        names = {n.strip() for n in labels.split(",")}
        assert "cluster" in names, f"{keyword} ({labels}) drops the cluster label"
        if "vrrp_instance" in names:
            assert "vrid" in names, f"{keyword} ({labels}) groups by name without the VRID"
    assert "without (" not in text


def test_rule_tests_cover_two_clusters_with_the_same_instance_name() -> None:
    tests = RULE_TESTS.read_text()
    assert 'vrrp_instance=\\"VI_postfix\\",vrid=\\"51\\"' in tests
    assert 'cluster=\\"mail-b\\"' in tests
