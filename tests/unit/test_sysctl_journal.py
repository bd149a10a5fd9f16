"""Sysctl originals survive a crash: the next run restores the admin's values.

Issue 9, defect 2 (the DR half): a node SIGKILLed while it held arp_ignore=1 and
arp_announce=2 left them set; the next start took 1 and 2 for the admin's values, so even
a clean stop afterwards never put 0 and 0 back. The journal keeps the originals. /proc/sys
is replaced by a directory of the test's own (``PROC_SYS``), so nothing on the host moves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mailha.net import sysctl
from mailha.net.sysctl import SysctlChanges, conf_key, read_sysctl

IGNORE = conf_key(4, "eth0", "arp_ignore")
ANNOUNCE = conf_key(4, "eth0", "arp_announce")


@pytest.fixture
def proc_sys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proc-sys"
    conf = root / "net" / "ipv4" / "conf" / "eth0"
    conf.mkdir(parents=True)
    (conf / "arp_ignore").write_text("0\n")
    (conf / "arp_announce").write_text("0\n")
    monkeypatch.setattr(sysctl, "PROC_SYS", root)
    return root


def test_a_crashed_runs_originals_are_restored_by_the_next_run(
    proc_sys: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "run" / "sysctl-originals.json"
    first = SysctlChanges(journal)
    first.set(IGNORE, 1, "DR")
    first.set(ANNOUNCE, 2, "DR")
    assert json.loads(journal.read_text()) == {IGNORE: "0", ANNOUNCE: "0"}
    del first  # SIGKILL: no restore

    caplog.set_level(logging.WARNING)
    second = SysctlChanges(journal)
    assert "an earlier run left sysctls changed without a clean stop" in caplog.text
    second.set(IGNORE, 1, "DR")  # already 1: no change, the journal's original is kept
    assert second.restore() == []
    assert (read_sysctl(IGNORE), read_sysctl(ANNOUNCE)) == ("0", "0")
    assert not journal.exists()


def test_without_a_crash_the_journal_is_gone_after_restore(proc_sys: Path, tmp_path: Path) -> None:
    journal = tmp_path / "sysctl-originals.json"
    changes = SysctlChanges(journal)
    assert not changes.set(IGNORE, 0, "already so")
    assert not journal.exists()
    changes.set(IGNORE, 1, "DR")
    assert journal.exists()
    changes.restore()
    assert read_sysctl(IGNORE) == "0" and not journal.exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"a": 1}'])
def test_a_damaged_journal_is_ignored_with_a_warning(
    proc_sys: Path, tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "sysctl-originals.json"
    journal.write_text(content)
    changes = SysctlChanges(journal)
    assert changes.changed == {}
    assert "ignoring" in caplog.text


def test_changes_kept_at_a_clean_stop_are_adopted_without_a_crash_warning(
    proc_sys: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """release_dr_on_stop = false keeps the DR role's sysctls on purpose: the next start
    says so at INFO, not the crash WARNING; a crash after that warns again."""
    journal = tmp_path / "run" / "sysctl-originals.json"
    first = SysctlChanges(journal)
    first.set(IGNORE, 1, "DR")
    first.keep()  # clean stop, DR role kept

    caplog.set_level(logging.INFO)
    second = SysctlChanges(journal)
    kept = [r for r in caplog.records if "kept its sysctls at stop" in r.message]
    assert [r.levelno for r in kept] == [logging.INFO]
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    assert second.changed == {IGNORE: "0"}
    del second  # and now a crash

    caplog.clear()
    SysctlChanges(journal)
    assert "without a clean stop" in caplog.text


def test_keep_without_changes_leaves_no_marker(proc_sys: Path, tmp_path: Path) -> None:
    journal = tmp_path / "sysctl-originals.json"
    SysctlChanges(journal).keep()
    assert list(tmp_path.iterdir()) == [tmp_path / "proc-sys"]


def test_one_key_is_released_and_the_journal_keeps_the_others(
    proc_sys: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "sysctl-originals.json"
    changes = SysctlChanges(journal)
    changes.set(IGNORE, 1, "DR")
    changes.set(ANNOUNCE, 2, "DR")
    assert changes.release(IGNORE) is None
    assert (read_sysctl(IGNORE), read_sysctl(ANNOUNCE)) == ("0", "2")
    assert json.loads(journal.read_text()) == {ANNOUNCE: "0"}
    assert changes.release(IGNORE) is None  # not changed (any more): nothing to do
    assert changes.release(ANNOUNCE) is None
    assert read_sysctl(ANNOUNCE) == "0" and not journal.exists()
    assert changes.changed == {}


def test_a_key_that_cannot_be_released_stays_in_the_journal(
    proc_sys: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "sysctl-originals.json"
    changes = SysctlChanges(journal)
    changes.set(IGNORE, 1, "DR")
    (proc_sys / "net" / "ipv4" / "conf" / "eth0" / "arp_ignore").unlink()  # the interface went
    error = changes.release(IGNORE)
    assert error is not None and error.name == IGNORE
    assert json.loads(journal.read_text()) == {IGNORE: "0"}
