"""Issue 9, defect 5: no config file, however broken, may crash the loader.

5,000 seeded mutants of ``config/node1.toml`` (see :mod:`config_mutants`: nesting 1,000
and 100,000 deep, truncation, flipped bits, duplicated keys, wrong types...) must each
either load or raise :class:`ConfigError` whose every diagnostic has a line number and
prints as ``file:line: ...``. Before the fix, 1 in 6 of them died with RecursionError
(or ground for minutes on a 100,000-part dotted key) and truncated files had errors
without a line. A sample also goes through the real ``mailha check`` (exit 0 or 1, no
traceback) and the deep ones through ``mailha serve`` (exit 1 with the clean message).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from config_mutants import Mutant, mutants

from mailha.config import Config, ConfigError
from mailha.config.loader import load_with_warnings

ROOT = Path(__file__).resolve().parents[2]
BASE = (ROOT / "config" / "node1.toml").read_bytes()
COUNT = 5_000
SEED = 9
#: A mutant that takes this long to load is a bug (a denial of service on start-up);
#: the guard turns a runaway parse into a failure instead of a hung test run.
SECONDS_PER_MUTANT = 5

#: Mutants run through the real CLI: name -> how many. The deep ones come first.
CLI_SAMPLE = {
    "deep arrays x1000": 2, "deep arrays x100000": 2, "deep tables x1000": 2,
    "deep tables x100000": 2, "deep mixed x100000": 1, "deep unclosed-arrays x100000": 1,
    "deep unclosed-tables x1000": 1, "dotted key of 100000 parts": 1,
    "table header of 100000 parts": 1, "": 17,
}
SERVE_SAMPLE = ("deep arrays x1000", "deep tables x1000", "deep arrays x100000",
                "deep tables x100000")


class _Slow(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Slow(f"took more than {SECONDS_PER_MUTANT} s")


def _problem(path: Path, data: bytes) -> str | None:
    """What is wrong with the outcome of loading ``path`` (holding ``data``), if anything."""
    lines = data.count(b"\n") + 1
    try:
        config, _ = load_with_warnings(path)
    except ConfigError as exc:
        if not exc.errors:
            return "ConfigError without an error"
        for d in exc.diagnostics:
            if d.line is None or not 1 <= d.line <= lines:
                return f"diagnostic without a valid line: {d}"
            if not str(d).startswith(f"{path}:{d.line}:"):
                return f"diagnostic not formatted as file:line: {d}"
        return None
    return None if isinstance(config, Config) else f"load returned {config!r}"


def test_every_mutant_loads_or_fails_with_located_errors(tmp_path: Path) -> None:
    path = tmp_path / "node1.toml"
    failures: list[str] = []
    outcomes: Counter[str] = Counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for m in mutants(BASE, COUNT, SEED):
            path.write_bytes(m.data)
            signal.alarm(SECONDS_PER_MUTANT)
            try:
                problem = _problem(path, m.data)
            except Exception as exc:  # RecursionError, _Slow, anything but ConfigError
                problem = f"raised {type(exc).__name__}: {str(exc)[:200]}"
            finally:
                signal.alarm(0)
            if problem is not None:
                failures.append(f"mutant {m.index} ({m.name[:400]}): {problem}")
            outcomes["deep" if " x1" in m.name or " parts" in m.name else "other"] += 1
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert not failures, f"{len(failures)} of {COUNT} mutants:\n" + "\n".join(failures[:25])
    assert outcomes["deep"] >= 500, outcomes  # the generator keeps making deep ones


def _cli_sample() -> Iterator[Mutant]:
    """The first mutants of each name in :data:`CLI_SAMPLE` ("" = any other)."""
    wanted = dict(CLI_SAMPLE)
    for m in mutants(BASE, COUNT, SEED):
        bucket = m.name if m.name in wanted else ""
        if wanted.get(bucket, 0) > 0 and (bucket or not m.name.startswith(("deep", "dotted"))):
            wanted[bucket] -= 1
            yield m
        if not any(wanted.values()):
            return


def _mailha(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI of this checkout the way an admin does, in its own process."""
    return subprocess.run([sys.executable, "-m", "mailha", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_mailha_check_exits_0_or_1_without_traceback(tmp_path: Path) -> None:
    sample = list(_cli_sample())
    assert len(sample) == sum(CLI_SAMPLE.values())
    for m in sample:
        path = tmp_path / f"mutant{m.index}.toml"
        path.write_bytes(m.data)
        proc = _mailha("check", str(path))
        where = f"mutant {m.index} ({m.name[:400]})"
        assert proc.returncode in (0, 1), f"{where}: exit {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, f"{where}:\n{proc.stderr[-2000:]}"
        *diagnostics, summary = proc.stdout.splitlines()
        assert re.fullmatch(r"1 file checked: (OK|\d+ errors?, \d+ warnings?)", summary), where
        for line in diagnostics:
            assert re.match(rf"{re.escape(str(path))}:\d+(:\d+)?: (error|warning): ", line), (
                f"{where}: {line}")
        if m.name.startswith(("deep", "dotted", "table header")):
            assert proc.returncode == 1, where


@pytest.mark.parametrize("name", SERVE_SAMPLE)
def test_mailha_serve_refuses_a_deep_file_cleanly(tmp_path: Path, name: str) -> None:
    m = next(m for m in mutants(BASE, COUNT, SEED) if m.name == name)
    path = tmp_path / "node1.toml"
    path.write_bytes(m.data)
    proc = _mailha("serve", str(path))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: error: .*nested more than 32 deep",
                     proc.stderr, re.M), proc.stderr[-2000:]
    assert f"mailha: {path}: refusing to start" in proc.stderr
