"""A notify script's `sendmail` under mailha.service's hardening, with and without the
notify-sendmail drop-in (deploy/systemd/mailha.service.d/).

No systemd runs the unit here (the test hosts have none as PID 1), so the test applies
the directives that decide this case itself, with the kernel's own mechanisms, reading
their values from the shipped files: ProtectSystem=strict (the whole tree re-mounted
read-only in a private mount namespace) with ReadWritePaths= (bind mounts that stay
writable), NoNewPrivileges= (setpriv --no-new-privs) and CapabilityBoundingSet=
(setpriv --bounding-set). The script runs as root, as notify scripts do unless the
config names a user. Postfix's configuration and queue are a throw-away pair mounted
over /etc/postfix and /var/spool/postfix inside that namespace only.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = SYSTEMD / "mailha.service"
DROPIN = SYSTEMD / "mailha.service.d" / "notify-sendmail.conf"


def _settings(*paths: Path) -> tuple[bool, list[str], str]:
    """(NoNewPrivileges, ReadWritePaths, CapabilityBoundingSet) after the files, in order."""
    nnp, rw, caps = False, [], ""
    for path in paths:
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if line.startswith("#") or not value:
                continue
            if key == "NoNewPrivileges":
                nnp = value == "yes"
            elif key == "ReadWritePaths":
                rw += value.split()
            elif key == "CapabilityBoundingSet":
                caps = value
            elif key == "ProtectSystem":
                assert value == "strict"
    return nnp, rw, caps


_SANDBOX = r"""
set -eu
mount --bind "$T/etc" /etc/postfix
mount --bind "$T/spool" /var/spool/postfix
for path in $RW; do
  path=${path#-}
  case $path in /proc/*) continue;; esac        # sysctls: not this test's business
  [ -e "$path" ] || continue                     # systemd: "-" paths may be missing
  mount --bind "$path" "$path"
done
# ProtectSystem=strict: every mount read-only, the ReadWritePaths binds above excepted
mount --bind / / && mount -o remount,bind,ro /
mount -o remount,bind,ro /etc/postfix && mount -o remount,bind,ro /var/spool/postfix
printf 'Subject: mailha notify\n\nVRRP went MASTER\n' |
  setpriv $NNP --bounding-set "$CAPS" --inh-caps -all timeout 8 /usr/sbin/sendmail -i root
"""


def _sendmail_in_sandbox(tmp_path: Path, *files: Path) -> tuple[int, str, int]:
    """Run sendmail as the unit (plus drop-ins) would let a notify script run it:
    (exit status, stderr, files queued in the maildrop)."""
    if shutil.which("postdrop") is None or shutil.which("setpriv") is None:
        pytest.fail("needs Postfix's sendmail/postdrop and util-linux's setpriv "
                    "(scripts/setup installs them)")
    nnp, rw, caps = _settings(*files)
    bounding = "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in caps.split())
    etc, spool = tmp_path / "etc", tmp_path / "spool"
    etc.mkdir()
    (etc / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = sandbox.example\n")
    (etc / "master.cf").write_text("")
    for name, mode in (("maildrop", 0o1730), ("public", 0o2710)):
        (spool / name).mkdir(parents=True)
        shutil.chown(spool / name, "postfix", "postdrop")
        (spool / name).chmod(mode)
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", _SANDBOX],
        env={"T": str(tmp_path), "RW": " ".join(rw), "CAPS": bounding,
             "NNP": "--no-new-privs" if nnp else "", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True, text=True, timeout=60, check=False)
    return result.returncode, result.stderr, len(list((spool / "maildrop").iterdir()))


def test_sendmail_hangs_under_the_shipped_unit(tmp_path: Path) -> None:
    status, stderr, queued = _sendmail_in_sandbox(tmp_path, UNIT)
    assert status == 124, stderr  # still retrying when `timeout` ended it
    assert "create file maildrop/" in stderr and "Read-only file system" in stderr
    assert queued == 0


def test_sendmail_queues_with_the_dropin(tmp_path: Path) -> None:
    status, stderr, queued = _sendmail_in_sandbox(tmp_path, UNIT, DROPIN)
    assert status == 0, stderr
    assert queued == 1


def test_writable_maildrop_alone_is_not_enough(tmp_path: Path) -> None:
    """Without NoNewPrivileges=no postdrop loses its setgid and even root cannot write
    the maildrop (no CAP_DAC_OVERRIDE in the bounding set)."""
    only_rw = tmp_path / "only-rw.conf"
    only_rw.write_text("[Service]\nReadWritePaths=-/var/spool/postfix/maildrop\n")
    work = tmp_path / "run"
    work.mkdir()
    status, stderr, queued = _sendmail_in_sandbox(work, UNIT, only_rw)
    assert status == 124 and "Permission denied" in stderr, stderr
    assert queued == 0
