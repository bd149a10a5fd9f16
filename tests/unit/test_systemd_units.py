"""The shipped unit and its notify-sendmail drop-in: systemd parses them without a
complaint, and the drop-in relaxes only the two directives sendmail needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "mailha.service"
DROPIN = SYSTEMD / "mailha.service.d" / "notify-sendmail.conf"


def directives(path: Path) -> list[tuple[str, str]]:
    """(key, value) of every directive, in order (no continuation lines in these files)."""
    found = []
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.append((key.strip(), value.strip()))
    return found


def _verify(tmp_path: Path, dropin_text: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that Exec* binaries exist; the unit's mailha may not be installed here
    (tmp_path / "mailha.service").write_text(
        UNIT.read_text().replace("/usr/local/bin/mailha", "/bin/true"))
    (tmp_path / "mailha.service.d").mkdir()
    (tmp_path / "mailha.service.d" / DROPIN.name).write_text(dropin_text)
    return subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "mailha.service")],
        env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
             "SYSTEMD_LOG_LEVEL": "notice"},
        capture_output=True, text=True, timeout=60, check=False)


def test_unit_and_dropin_parse_cleanly(tmp_path: Path) -> None:
    result = _verify(tmp_path, DROPIN.read_text())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_reads_the_dropin(tmp_path: Path) -> None:
    """A broken drop-in is reported, so the clean result above covers the drop-in too."""
    broken = DROPIN.read_text().replace("NoNewPrivileges=no", "NoNewPrivileges=maybe")
    result = _verify(tmp_path, broken.replace("ReadWritePaths=", "ReadWritePath="))
    assert "Failed to parse boolean value" in result.stderr
    assert "Unknown key 'ReadWritePath'" in result.stderr


def test_dropin_relaxes_exactly_what_sendmail_needs() -> None:
    unit = dict(directives(UNIT))
    assert unit["NoNewPrivileges"] == "yes" and unit["ProtectSystem"] == "strict"
    assert "/var" not in unit["ReadWritePaths"]
    # nothing but the two: the capability bounding set, address families, the other
    # read-only paths and the rest of the hardening stay as the unit has them
    assert directives(DROPIN) == [("NoNewPrivileges", "no"),
                                  ("ReadWritePaths", "-/var/spool/postfix/maildrop")]


def test_guide_lists_the_units_restrictions_as_they_are() -> None:
    """deploy/README.md §7's table of what a notify script cannot do quotes the unit."""
    unit = dict(directives(UNIT))
    guide = (REPO / "deploy" / "README.md").read_text()
    caps = guide.split("| use a capability outside `", 1)[1].split("`", 1)[0]
    assert caps.split() == unit["CapabilityBoundingSet"].split()
    rw = guide.split("`ReadWritePaths=", 1)[1].split("`", 1)[0]
    assert rw == unit["ReadWritePaths"]
    assert unit["RestrictAddressFamilies"].split() == [
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"]  # the guide's prose
    table = guide.split("### Notify scripts under the unit's hardening", 1)[1].split("###")[0]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges",
                "RestrictNamespaces", "RestrictRealtime", "MemoryDenyWriteExecute",
                "ProtectKernelLogs", "ProtectClock", "ProtectHostname", "ProtectControlGroups"):
        assert key in unit and f"`{key}=" in table, key


BGP_DROPIN = UNIT.parent / "mailha.service.d" / "bgp.conf"


def test_bgp_dropin_parses_and_adds_only_birds_group_and_etc_bird(tmp_path: Path) -> None:
    result = _verify(tmp_path, BGP_DROPIN.read_text())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert directives(BGP_DROPIN) == [("After", "bird.service"),
                                      ("SupplementaryGroups", "bird"),
                                      ("ReadWritePaths", "/etc/bird")]


def test_unit_withdraws_bgp_routes_after_any_stop() -> None:
    """ExecStopPost disables the generated protocols with birdc, a no-op without it."""
    (line,) = [v for k, v in directives(UNIT) if k == "ExecStopPost"]
    assert line.startswith("-/bin/sh -c ") and "command -v birdc" in line
    # sh must hand birdc the pattern quoted ("mailha_*"): unquoted, BIRD refuses it
    assert """birdc -s /run/bird/bird.ctl disable '\\"mailha_*\\"'""" in line
