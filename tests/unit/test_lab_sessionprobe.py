"""The session prober's output lines round-trip; torn and foreign lines are skipped."""

from __future__ import annotations

from lab.sessionprobe import format_session, parse_sessions
from lab.smtpload import Session


def test_sessions_round_trip_through_the_output_format() -> None:
    sessions = [
        Session(12.5, 12.53, True),
        Session(12.52, 14.52, False, "TimeoutError"),
        Session(12.54, 12.55, False, "banner b'421 busy'"),
    ]
    lines = [format_session(s) + "\n" for s in sessions]
    assert parse_sessions(lines) == sessions


def test_other_lines_and_a_torn_last_line_are_skipped() -> None:
    lines = ["Traceback (most recent call last):\n", "S 1.0 1.1 1 -\n", "S 2.0 2."]
    assert parse_sessions(lines) == [Session(1.0, 1.1, True)]
