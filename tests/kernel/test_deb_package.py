"""The Debian package, installed and removed in the VM's throw-away root.

``scripts/build-deb`` builds ``dist/mailha_<version>-1_<arch>.deb`` on the host before
the VM boots (``scripts/test`` does; the guest has no network to build it). Inside the
guest -- whose root is a tmpfs overlay, so nothing reaches the host -- the test installs
it with dpkg and uses it as an admin would: ``mailha --version``, ``mailha check`` of the
shipped example, ``man -w``, the systemd unit (installed, not enabled), and the seed
scenario's check scripts from their installed paths against a real Postfix. Then
``dpkg -r`` and ``dpkg -P`` must leave the watched parts of the filesystem exactly as
they were, apart from the conffile between the two and a file the admin added, which
purge must not touch.

Marked kernel only because it needs the VM's disposable root (it does not use IPVS); it
refuses to run outside the VM, where it would install a package on the real machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from lab import netns
from lab.postfix import lone_postfix
from mailha import __version__
from mailha.procs import split_command

pytestmark = [pytest.mark.kernel, pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
# Where the package installs, and where dpkg and deb-systemd-helper keep their records.
WATCHED = [
    "/etc", "/usr/sbin", "/usr/bin", "/usr/lib/mailha", "/usr/share/mailha",
    "/usr/share/man/man5", "/usr/share/man/man8", "/usr/share/doc/mailha",
    "/lib/systemd/system", "/usr/lib/systemd/system", "/var/lib/systemd", "/run",
]


def snapshot() -> dict[str, str]:
    """path -> kind (dir, file with its size, symlink with its target) under WATCHED."""
    seen: dict[str, str] = {}
    for top in WATCHED:
        for root, dirs, files in os.walk(top):
            if root.startswith(("/run/netns", "/run/user", "/run/mailha-vm")):
                dirs[:] = []
                continue
            for name in dirs:
                path = os.path.join(root, name)
                seen[path] = f"-> {os.readlink(path)}" if os.path.islink(path) else "dir"
            for name in files:
                path = os.path.join(root, name)
                if os.path.islink(path):
                    seen[path] = f"-> {os.readlink(path)}"
                else:
                    seen[path] = f"file {os.lstat(path).st_size}"
    return seen


def sh(*argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, cwd="/",
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} exited {done.returncode}:\n"
                             f"{done.stdout}{done.stderr}")
    return done


@pytest.fixture(scope="module")
def deb() -> Path:
    if os.environ.get("MAILHA_IN_VM") != "1":
        pytest.skip("installs a package: runs only in the VM's throw-away root "
                    "(tests/vm/vmrun; scripts/test)")
    found = sorted((REPO / "dist").glob(f"mailha_{__version__}-1_*.deb"))
    if not found:
        pytest.fail("no dist/mailha_*.deb: run scripts/build-deb before the VM "
                    "(scripts/test does)", pytrace=False)
    return found[0]


async def seed_checks_against_postfix(commands: list[list[str]]) -> None:
    """Run the installed check scripts against a lab Postfix in a namespace of its own."""
    async with lone_postfix("mhP", "mhp.test") as (name, postfix):
        conf = str(postfix.conf_dir)
        for argv in commands:  # as configured: user postfix
            result = await netns.run(
                ["setpriv", "--reuid=postfix", "--regid=postfix", "--clear-groups", *argv],
                netns=name, check=False, env={**ENV, "MAIL_CONFIG": conf})
            assert result.returncode == 0, (argv, result.stderr)
        weight = await netns.run(
            ["/usr/share/mailha/checks/postfix-queue-weight", "-c", conf, "-v"],
            netns=name, check=False, env=ENV)
        assert weight.returncode == 2 + 100, (weight.stdout, weight.stderr)
        await postfix.stop()
        down = await netns.run(["/usr/share/mailha/checks/postfix-alive", "-c", conf],
                               netns=name, check=False, env=ENV)
        assert down.returncode == 1 and "master is not running" in down.stderr


def seed_script_commands() -> list[list[str]]:
    """Every check command the seed scenario's node configs run (vrrp_script, MISC_CHECK)."""
    commands = []
    for node in ("node1.toml", "node2.toml"):
        config = tomllib.loads((REPO / "config" / node).read_text())
        for script in config.get("vrrp_script", {}).values():
            commands.append(split_command(script["script"]))
        for vs in config.get("virtual_server", []):
            for rs in vs.get("real_server", []):
                for misc in rs.get("MISC_CHECK", []):
                    commands.append(split_command(misc["misc_path"]))
    assert commands, "the seed configs run no check script?"
    return commands


def test_deb_installs_works_and_removes_cleanly(deb: Path) -> None:
    # man-db's trigger would rebuild the whole man index under emulation: not our test.
    Path("/var/lib/man-db/auto-update").unlink(missing_ok=True)
    before = snapshot()

    sh("dpkg", "-i", str(deb))
    status = sh("dpkg-query", "-W", "-f=${Status} ${Version}", "mailha").stdout
    assert status == f"install ok installed {__version__}-1"

    # mailha on PATH, from the bundled venv, not from this checkout or the test's venv
    assert shutil.which("mailha", path=ENV["PATH"]) == "/usr/sbin/mailha"
    assert sh("mailha", "--version").stdout.strip() == f"mailha {__version__}"
    where = sh("/usr/lib/mailha/bin/python", "-c", "import mailha; print(mailha.__file__)")
    assert where.stdout.startswith("/usr/lib/mailha/lib/python3"), where.stdout
    # the shipped example passes `mailha check`
    checked = sh("mailha", "check", "/etc/mailha/mailha.toml.example", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "/etc/mailha/mailha.toml.example" in sh(
        "dpkg-query", "-W", "-f=${Conffiles}", "mailha").stdout

    # man pages, found by man itself
    assert sh("man", "-w", "mailha").stdout.strip() == "/usr/share/man/man8/mailha.8.gz"
    assert sh("man", "-w", "5", "mailha.toml").stdout.strip() == \
        "/usr/share/man/man5/mailha.toml.5.gz"
    page = sh("man", "-P", "cat", "5", "mailha.toml").stdout
    assert "virtual_router_id" in page and "lvs_sched" in page

    # the systemd unit: installed, pointing at the package's mailha, neither enabled nor
    # started (no systemd runs in the VM, so "started" means no process either)
    unit = Path("/lib/systemd/system/mailha.service").read_text()
    execs = re.findall(r"^Exec\w+=(\S+)", unit, re.M)
    # ... all but the BGP mode's crash-safety line, which disables mailha_* with birdc
    # after any stop (a no-op where BIRD is not installed)
    withdraw = re.findall(r"^ExecStopPost=-/bin/sh -c .*birdc", unit, re.M)
    assert len(withdraw) == 1, unit
    assert execs.count("-/bin/sh") == 1, execs
    assert all(path == "/usr/sbin/mailha" for path in execs if path != "-/bin/sh"), execs
    assert not list(Path("/etc/systemd/system").rglob("mailha.service"))
    assert sh("pgrep", "-f", "mailha serve", check=False).returncode == 1

    # Prometheus rules, Grafana dashboard, reference config where the docs say
    for path in ("prometheus/mailha-rules.yml", "grafana/mailha.json",
                 "config/reference.toml", "sysctl/90-mailha.conf"):
        assert (Path("/usr/share/mailha") / path).is_file(), path

    # the notify-sendmail drop-in, to copy (deploy.md section 7): its install line names
    # the package's path, and it is not active
    dropin = Path("/usr/share/mailha/systemd/mailha.service.d/notify-sendmail.conf")
    assert "cp /usr/share/mailha/systemd/mailha.service.d/notify-sendmail.conf" in \
        dropin.read_text()
    assert "NoNewPrivileges=no" in dropin.read_text()
    assert not Path("/etc/systemd/system/mailha.service.d").exists()
    assert not Path("/lib/systemd/system/mailha.service.d").exists()

    # the worked examples of deploy.md section 11, checked as the guide says (from
    # /usr/share/mailha), each set clean: no error, no warning
    examples = sorted(Path("/usr/share/mailha/config/examples").iterdir())
    assert [e.name for e in examples] == ["dedicated-directors", "ipv6", "nat-director",
                                          "three-nodes"]
    for example in examples:
        files = sorted(str(p.relative_to("/usr/share/mailha")) for p in example.glob("*.toml"))
        checked = subprocess.run(["mailha", "check", *files], cwd="/usr/share/mailha",
                                 env=ENV, capture_output=True, text=True, check=False)
        assert (checked.returncode, checked.stdout) == (
            0, f"{len(files)} files checked: OK\n"), checked.stdout + checked.stderr

    # the seed scenario's check scripts, from their installed paths, against Postfix
    commands = seed_script_commands()
    for argv in commands:
        assert Path(argv[0]).is_file() and os.access(argv[0], os.X_OK), argv
    asyncio.run(seed_checks_against_postfix(commands))

    # running it wrote nothing under /usr/lib/mailha (checked-hash .pyc files shipped)
    listed = set(sh("dpkg-query", "-L", "mailha").stdout.split())
    # only the daemon, the CLI and the importer: the lab and the demo stay in the checkout
    lab = sorted(p for p in listed if re.search(r"/mailha/(lab/|demo\.py)|/site-packages/lab/", p))
    assert not lab, lab[:10]
    extra = {p for p in snapshot() if p.startswith("/usr/lib/mailha")} - listed
    assert not extra, sorted(extra)[:20]

    # The admin's own files in /etc/mailha, and the daemon's runtime directory.
    Path("/etc/mailha/mailha.toml").write_text(
        Path("/etc/mailha/mailha.toml.example").read_text())
    Path("/run/mailha").mkdir(exist_ok=True)
    Path("/run/mailha/sysctl-originals.json").write_text("{}\n")

    # remove: everything goes but the conffile (and the admin's file)
    sh("dpkg", "-r", "mailha")
    gone = set(before) - set(snapshot())
    assert not gone, f"dpkg -r removed files it did not install: {sorted(gone)[:20]}"
    left = set(snapshot()) - set(before)
    assert left == {"/etc/mailha", "/etc/mailha/mailha.toml.example",
                    "/etc/mailha/mailha.toml"}, sorted(left)

    # purge: the conffile goes, the admin's file (and so the directory) stays
    sh("dpkg", "-P", "mailha")
    after = snapshot()
    assert not set(before) - set(after)
    assert set(after) - set(before) == {"/etc/mailha", "/etc/mailha/mailha.toml"}
    Path("/etc/mailha/mailha.toml").unlink()
    Path("/etc/mailha").rmdir()
    assert snapshot() == before
    assert sh("dpkg-query", "-W", "mailha", check=False).returncode != 0

