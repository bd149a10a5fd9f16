"""The mail-loss accounting (pure): lost, duplicated, delays per fault window."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.mailloss import (
    STEADY,
    FaultWindow,
    Submission,
    account,
    fault_plan,
    format_report,
    percentile,
)
from lab.postfix import log_time, parse_maillog


def subs(*pairs: tuple[str, float]) -> list[Submission]:
    return [Submission(mid, at) for mid, at in pairs]


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0], 99) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0


def test_every_message_accounted_lost_and_duplicated() -> None:
    submitted = subs(("<a>", 100.0), ("<b>", 101.0), ("<c>", 102.0), ("<d>", 103.0))
    accepted = [
        ("<a>", 100.5),
        ("<b>", 104.0), ("<b>", 103.0),  # twice: the earlier acceptance counts
        ("<d>", 103.2),
        ("<other-run>", 101.0), (None, 101.0),  # not ours: ignored
    ]  # fmt: skip
    report = account(submitted, accepted, [])
    assert report.submitted == 4
    assert report.delivered == 3
    assert report.lost == ("<c>",)
    assert report.duplicated == {"<b>": 1}
    assert report.duplicates == 1
    assert report.max_delay == pytest.approx(2.0)
    assert report.worst[0][0] == "<b>"
    (steady,) = report.per_kind
    assert (steady.kind, steady.messages, steady.lost, steady.duplicated) == (STEADY, 4, 1, 1)


def test_messages_count_for_the_window_they_were_submitted_in() -> None:
    submitted = subs(("<s>", 5.0), ("<k1>", 10.0), ("<k2>", 14.0), ("<l1>", 20.0),
                     ("<k3>", 31.0))
    accepted = [("<s>", 5.1), ("<k1>", 18.0), ("<k2>", 15.0), ("<l1>", 20.5), ("<k3>", 31.1)]
    windows = [FaultWindow("kill", 10.0), FaultWindow("link", 20.0), FaultWindow("kill", 30.0)]
    report = account(submitted, accepted, list(reversed(windows)))  # order does not matter
    by = {k.kind: k for k in report.per_kind}
    assert list(by) == [STEADY, "kill", "link"]
    assert by[STEADY].messages == 1
    assert by["kill"].messages == 3
    assert by["kill"].max == pytest.approx(8.0)
    assert by["kill"].p50 == pytest.approx(1.0)
    assert by["link"].messages == 1
    assert by["link"].p99 == pytest.approx(0.5)
    assert not report.lost


def test_a_closing_steady_window_counts_the_tail_as_steady_once() -> None:
    """After the last fault settled the stream goes on until the minimum is in: those
    messages are steady state, reported in the one steady row."""
    submitted = subs(("<s>", 5.0), ("<k>", 10.0), ("<t1>", 40.0), ("<t2>", 41.0))
    accepted = [("<s>", 5.0), ("<k>", 19.0), ("<t1>", 40.0), ("<t2>", 43.0)]
    windows = [FaultWindow("kill", 10.0), FaultWindow(STEADY, 30.0)]
    report = account(submitted, accepted, windows)
    assert [(k.kind, k.messages) for k in report.per_kind] == [(STEADY, 3), ("kill", 1)]
    assert {k.kind: k.max for k in report.per_kind} == {STEADY: 2.0, "kill": 9.0}


def test_delay_never_negative_and_missing_stamp_is_not_lost() -> None:
    # Log stamps may have whole-second resolution: an acceptance "before" submission.
    report = account(subs(("<a>", 10.7), ("<b>", 11.0)), [("<a>", 10.0), ("<b>", None)], [])
    assert not report.lost
    assert report.worst[-1][1] >= 0.0
    assert min(d for _, d, _ in report.worst) == 0.0


def test_fault_plan_cycles_and_table_prints() -> None:
    plan = fault_plan(20)
    assert len(plan) == 20
    assert plan[0] == plan[8] and len({f.kind for f in plan}) == 8
    report = account(subs(("<a>", 1.0)), [("<a>", 2.5)], [FaultWindow("x", 0.5)])
    text = format_report(report, "title")
    assert "title" in text and "x" in text and "1.50" in text


def test_log_time_and_acceptance_stamp() -> None:
    now = time.mktime((2026, 12, 1, 12, 0, 0, 0, 0, -1))
    assert log_time("Dec  1 11:59:58.250000 n1 postfix/qmgr[1]: x", now=now) == \
        pytest.approx(now - 1.75)
    assert log_time("Dec  1 11:59:58 n1 x", now=now) == pytest.approx(now - 2)
    # A line stamped "Dec 31" read on Jan 1 belongs to the previous year.
    jan1 = time.mktime((2027, 1, 1, 0, 0, 10, 0, 0, -1))
    assert log_time("Dec 31 23:59:50 n1 x", now=jan1) == pytest.approx(jan1 - 20)
    assert log_time("garbage", now=now) is None
    log = (
        "Dec  1 11:59:58.100000 n1 postfix/smtpd[7]: ABC1: client=cl[10.12.49.10]\n"
        "Dec  1 11:59:58.200000 n1 postfix/cleanup[8]: ABC1: message-id=<m1@loss.lab>\n"
        "Dec  1 11:59:58.300000 n1 postfix/qmgr[9]: ABC1: from=<a@b>, size=3, nrcpt=1"
        " (queue active)\n"
    )
    (msg,) = parse_maillog(log).received
    assert msg.message_id == "<m1@loss.lab>"
    assert msg.logged_at is not None
    assert abs(msg.logged_at - log_time(log, now=time.time())) < 1.0  # type: ignore[operator]


def test_the_lab_finds_the_checkout_it_lives_in() -> None:
    """The lab is the checkout's, not the package's: paths it derives from its own place
    must point at this checkout (they pointed one level too high after it moved)."""
    from lab import flood, prometheus

    assert prometheus.RULES.is_file() and prometheus.DASHBOARD.is_file()
    assert (Path(flood._CHECKOUT) / "lab" / "flood.py").is_file()
