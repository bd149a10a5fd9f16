"""deploy/README.md §13: its BIRD configurations parse (``bird -p``) and its mailha sample
passes ``mailha check``, so the guide cannot drift into something that does not load."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mailha.check import check_command

GUIDE = Path(__file__).resolve().parents[2] / "deploy" / "README.md"


def section() -> str:
    return GUIDE.read_text().split("## 13. The BGP mode", 1)[1]


def blocks(kind: str) -> list[str]:
    """The fenced blocks of the section whose info string is ``kind``."""
    found, current, info = [], [], None
    for line in section().splitlines():
        if line.startswith("```"):
            if info is None:
                info, current = line[3:].strip(), []
            else:
                if info == kind:
                    found.append("\n".join(current) + "\n")
                info = None
        elif info is not None:
            current.append(line)
    return found


@pytest.fixture
def bird() -> str:
    found = shutil.which("bird") or (os.path.exists("/usr/sbin/bird") and "/usr/sbin/bird")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run this test, but bird2 is not installed (scripts/setup)")
        pytest.skip("bird2 is not installed (scripts/setup)")
    return str(found)


@pytest.mark.parametrize("which", ["director", "router"])
def test_bird_samples_parse(bird: str, which: str, tmp_path: Path) -> None:
    (conf,) = [b for b in blocks("") if b.startswith(f"# bird.conf: {which}")]
    include = tmp_path / "mailha.conf"
    include.write_text('protocol static mailha_10_12_49_37 { ipv4; disabled; '
                       'route 10.12.49.37/32 via "mailha-bgp"; }\n')
    path = tmp_path / "bird.conf"
    path.write_text(conf.replace("/etc/bird/mailha.conf", str(include)))
    run = subprocess.run([bird, "-p", "-c", str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr


def test_mailha_sample_checks_cleanly(tmp_path: Path) -> None:
    (sample,) = blocks("toml")
    path = tmp_path / "director.toml"
    path.write_text('[global]\nrouter_id = "dir1"\n' + sample)
    out = io.StringIO()
    assert check_command([path], out=out, host_checks=False) == 0, out.getvalue()
    assert "while 2 real servers or more are up" in out.getvalue()
