"""The sample output README.md shows is what the command prints for the shipped file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailha.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_sample_check_error_is_what_mailha_check_prints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """README's error line: config/node1.toml with its priority set to the sample's value,
    checked as `mailha check config/node1.toml` from the checkout's root."""
    readme = (REPO / "README.md").read_text()
    samples = re.findall(r"^(config/node1\.toml:\d+: error: .*)$", readme, re.M)
    assert len(samples) == 1, samples
    sample = samples[0]
    key, value = re.search(r"error: vrrp_instance\.VI_postfix\.(\w+) = (\S+?):", sample
                           ).groups()  # type: ignore[union-attr]
    shipped = (REPO / "config" / "node1.toml").read_text()
    edited, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", shipped, count=1,
                            flags=re.M)
    assert count == 1 and edited != shipped
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "node1.toml").write_text(edited)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "config/node1.toml"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        sample, "1 file checked: 1 error, 0 warnings"]


def test_test_files_have_unique_basenames() -> None:
    """pytest imports test files by basename (rootdir conftest, no packages): two tiers
    with the same file name stop the whole collection ("import file mismatch"), which
    a run of one tier alone never shows."""
    root = Path(__file__).resolve().parents[1]
    names = [p.name for p in root.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
