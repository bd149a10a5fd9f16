"""enable_script_security: keepalived's rule for root-run scripts others can modify.

The rule (:mod:`mailha.config.scriptsec`) is tested over a fake file system; then the
host check that reports it, with fakes; then, as root, the real thing: ``mailha check
--host`` and ``mailha serve``'s start-up check against a script owned by a real
unprivileged user.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mailha.cli import main
from mailha.config import ConfigError, loads
from mailha.config.model import GlobalConfig, ScriptCommand
from mailha.config.scriptsec import (
    Stat,
    components,
    privilege,
    resolve,
    run_as,
    unsafe_component,
    unsafe_script,
)
from mailha.config.validate import check_scripts

ALICE = 1000
STAFF = 50

DIR = stat.S_IFDIR | 0o755
FILE = stat.S_IFREG | 0o755
LINK = stat.S_IFLNK | 0o777
TMP = stat.S_IFDIR | 0o1777  # sticky and world-writable, like /tmp


class FakeFS:
    """Paths to (mode, uid, gid) and, for links, their target. Missing paths: ENOENT."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, int, int] | tuple[int, int, int, str]] = {
            "/": (DIR, 0, 0)
        }

    def add(self, path: str, mode: int, uid: int = 0, gid: int = 0, link: str = "") -> FakeFS:
        self.entries[path] = (mode, uid, gid, link) if link else (mode, uid, gid)
        return self

    def lstat(self, path: str) -> Stat:
        entry = self.entries.get(os.path.normpath(path))
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return Stat(*entry[:3])

    def readlink(self, path: str) -> str:
        entry = self.entries[path]
        if len(entry) != 4:
            raise OSError(errno.EINVAL, "not a link", path)
        return entry[3]


def safe_fs() -> FakeFS:
    """/usr/local/bin/chk, everything root's and 0755."""
    return (FakeFS().add("/usr", DIR).add("/usr/local", DIR).add("/usr/local/bin", DIR)
            .add("/usr/local/bin/chk", FILE))


def where(fs: FakeFS, program: str = "/usr/local/bin/chk", uid: int = 0,
          gid: int = 0) -> tuple[str, str] | None:
    found = unsafe_script(program, uid, gid, fs)
    return None if found is None else (found.component.path, found.component.why)


# --------------------------------------------------------------------------- the rule


def test_components_walk_from_root_down() -> None:
    assert list(components("/a//b/c/")) == ["/", "/a", "/a/b", "/a/b/c"]


def test_walk_reports_the_component_nearest_the_root() -> None:
    fs = safe_fs().add("/usr", DIR | 0o002).add("/usr/local/bin/chk", FILE, ALICE)
    found = unsafe_component("/usr/local/bin/chk", fs)
    assert found is not None and (found.path, found.why) == ("/usr", "world")
    assert found.stat == Stat(DIR | 0o002, 0, 0)


def test_root_owned_safe_path_is_fine() -> None:
    assert where(safe_fs()) is None


def test_file_owned_by_non_root_user() -> None:
    fs = safe_fs().add("/usr/local/bin/chk", FILE, ALICE)
    assert where(fs) == ("/usr/local/bin/chk", "owner")


def test_directory_owned_by_non_root_user() -> None:
    fs = safe_fs().add("/usr/local", DIR, ALICE)
    assert where(fs) == ("/usr/local", "owner")


def test_group_writable_by_non_root_group() -> None:
    fs = safe_fs().add("/usr/local/bin", DIR | 0o020, 0, STAFF)
    assert where(fs) == ("/usr/local/bin", "group")
    file = safe_fs().add("/usr/local/bin/chk", FILE | 0o020, 0, STAFF)
    assert where(file) == ("/usr/local/bin/chk", "group")


def test_group_writable_by_root_group_is_fine() -> None:
    fs = safe_fs().add("/usr/local/bin", DIR | 0o020, 0, 0)
    assert where(fs) is None


def test_world_writable_directory_or_file() -> None:
    assert where(safe_fs().add("/usr/local", DIR | 0o002)) == ("/usr/local", "world")
    fs = safe_fs().add("/usr/local/bin/chk", FILE | 0o002)
    assert where(fs) == ("/usr/local/bin/chk", "world")


def test_sticky_tmp_like_directory() -> None:
    """A root-owned sticky directory is fine; what is in it must then be root's alone."""
    base = FakeFS().add("/tmp", TMP)
    assert where(base.add("/tmp/chk", FILE), "/tmp/chk") is None
    assert where(FakeFS().add("/tmp", TMP).add("/tmp/chk", FILE, ALICE), "/tmp/chk") == (
        "/tmp/chk", "owner")
    assert where(FakeFS().add("/tmp", TMP).add("/tmp/chk", FILE | 0o002), "/tmp/chk") == (
        "/tmp/chk", "world")
    assert where(FakeFS().add("/tmp", TMP, ALICE).add("/tmp/chk", FILE), "/tmp/chk") == (
        "/tmp", "owner")


def test_symlink_to_insecure_target() -> None:
    """The link is root's and safe, but the file it points at is alice's."""
    fs = (safe_fs().add("/usr/local/bin/chk", LINK, link="/home/alice/chk")
          .add("/home", DIR).add("/home/alice", DIR, ALICE).add("/home/alice/chk", FILE, ALICE))
    assert where(fs) == ("/home/alice", "owner")


def test_relative_symlink_resolves_against_its_directory() -> None:
    fs = (safe_fs().add("/usr/local/bin/chk", LINK, link="../lib/chk")
          .add("/usr/local/lib", DIR | 0o002).add("/usr/local/lib/chk", FILE))
    assert resolve("/usr/local/bin/chk", fs) == "/usr/local/lib/chk"
    assert where(fs) == ("/usr/local/lib", "world")


def test_symlink_owned_by_non_root_user() -> None:
    """In a sticky directory the link's owner could replace it; its mode means nothing."""
    fs = (FakeFS().add("/tmp", TMP).add("/tmp/chk", LINK, ALICE, link="/usr/local/bin/chk")
          .add("/usr", DIR).add("/usr/local", DIR).add("/usr/local/bin", DIR)
          .add("/usr/local/bin/chk", FILE))
    assert where(fs, "/tmp/chk") == ("/tmp/chk", "owner")
    fs.add("/tmp/chk", LINK, 0, 0, link="/usr/local/bin/chk")
    assert where(fs, "/tmp/chk") is None


def test_symlinked_directory_on_the_path_merged_usr() -> None:
    """/bin -> usr/bin (Debian 12): keepalived calls it a wrong file type; mailha follows it."""
    fs = safe_fs().add("/bin", LINK, link="usr/local/bin")
    assert where(fs, "/bin/chk") is None
    fs.add("/usr/local/bin", DIR, ALICE)
    assert where(fs, "/bin/chk") == ("/usr/local/bin", "owner")


def test_missing_or_looping_script_is_left_to_the_existence_check() -> None:
    assert where(FakeFS().add("/tmp", TMP, ALICE), "/tmp/none") is None
    loop = FakeFS().add("/a", LINK, link="/b").add("/b", LINK, link="/a")
    with pytest.raises(OSError) as info:
        resolve("/a", loop)
    assert info.value.errno == errno.ELOOP
    assert where(loop, "/a") is None


def test_script_run_as_non_root_user_is_fine() -> None:
    fs = safe_fs().add("/usr/local/bin/chk", FILE | 0o002, ALICE)
    assert where(fs, uid=ALICE, gid=STAFF) is None


def test_privilege_is_root_uid_or_gid_or_setuid_root() -> None:
    plain = Stat(FILE, 0, 0)
    assert privilege(0, STAFF, plain) == "runs as root"
    assert privilege(ALICE, 0, plain) == "runs with group root"
    assert privilege(ALICE, STAFF, plain) is None
    assert privilege(ALICE, STAFF, Stat(FILE | stat.S_ISUID, 0, 0)) == "is set-uid root"
    assert privilege(ALICE, STAFF, Stat(FILE | stat.S_ISGID, ALICE, 0)) == "is set-gid root"
    assert privilege(ALICE, STAFF, Stat(FILE | stat.S_ISUID, ALICE, 0)) is None  # not root's
    no_x = Stat(stat.S_IFREG | 0o644 | stat.S_ISUID, 0, 0)
    assert privilege(ALICE, STAFF, no_x) is None  # set-uid without u+x does nothing


def test_setuid_root_script_is_checked_even_when_run_as_a_user() -> None:
    fs = safe_fs().add("/usr/local/bin/chk", FILE | stat.S_ISUID).add("/usr/local", DIR, ALICE)
    assert where(fs, uid=ALICE, gid=STAFF) == ("/usr/local", "owner")


def test_run_as_falls_back_to_the_global_user_and_group() -> None:
    g = GlobalConfig(router_id="n", script_user="postfix", script_group="mail")
    assert run_as(ScriptCommand(("/x",)), g) == ("postfix", "mail")
    assert run_as(ScriptCommand(("/x",), "nobody", "nogroup"), g) == ("nobody", "nogroup")
    assert run_as(ScriptCommand(("/x",)), GlobalConfig(router_id="n")) == (None, None)


# --------------------------------------------------------------------------- host check


class FakeAccounts:
    """root is 0:0, alice 1000:50; None (the daemon's user) is root."""

    USERS = {"root": (0, 0), "alice": (ALICE, STAFF)}

    def ids(self, user: str | None, group: str | None) -> tuple[int, int] | None:
        if user is not None and user not in self.USERS:
            return None
        uid, gid = self.USERS[user or "root"]
        return uid, {"staff": STAFF, "root": 0}.get(group or "", gid)

    def user_name(self, uid: int) -> str:
        return {0: "root", ALICE: "alice"}.get(uid, str(uid))

    def group_name(self, gid: int) -> str:
        return {0: "root", STAFF: "staff"}.get(gid, str(gid))


def config_text(security: bool, user: str = "") -> str:
    return (f'[global]\nrouter_id = "n"\nenable_script_security = {str(security).lower()}\n'
            f'{user}\n'
            '[vrrp_script.chk]\nscript = "/usr/local/bin/chk --fast"\n')


def host_check(text: str, fs: FakeFS, tmp_path: Path) -> list[str]:
    path = tmp_path / "mailha.toml"
    path.write_text(text)
    found = check_scripts(loads(text, path), severity="error", runnable=lambda p: None, fs=fs,
                          accounts=FakeAccounts())
    return [str(d).replace(str(tmp_path), "ETC") for d in found]


def test_insecure_root_script_is_an_error_with_enable_script_security(tmp_path: Path) -> None:
    fs = safe_fs().add("/usr/local/bin", DIR, ALICE, STAFF)
    assert host_check(config_text(True), fs, tmp_path) == [
        'ETC/mailha.toml:6: error: vrrp_script.chk.script = "/usr/local/bin/chk --fast": '
        "/usr/local/bin/chk runs as root but a non-root user can modify it: /usr/local/bin is "
        "owned by alice (drwxr-xr-x alice:staff); enable_script_security refuses to run it. "
        "Fix: chown root and chmod go-w /usr/local/bin, or set script_user to an unprivileged "
        "user."
    ]


def test_insecure_root_script_is_a_warning_without_enable_script_security(tmp_path: Path) -> None:
    fs = safe_fs().add("/usr/local/bin/chk", FILE | 0o020, 0, STAFF)
    (line,) = host_check(config_text(False), fs, tmp_path)
    assert line.startswith("ETC/mailha.toml:6: warning: vrrp_script.chk.script")
    assert ("/usr/local/bin/chk is writable by group staff (-rwxrwxr-x root:staff); "
            "enable_script_security = true would refuse to run it") in line


def test_every_script_kind_is_checked(tmp_path: Path) -> None:
    text = config_text(True) + (
        '[vrrp_instance.VI]\ninterface = "lo"\nvirtual_router_id = 9\n'
        'virtual_ipaddress = ["10.0.0.9"]\ntrack_script = ["chk"]\n'
        'notify_master = "/usr/local/bin/chk master"\nnotify = "/usr/local/bin/chk"\n'
        '[[virtual_server]]\nip = "10.0.0.9"\nport = 25\nvrrp_instance = "VI"\n'
        'quorum_up = "/usr/local/bin/chk up"\n'
        '[[virtual_server.real_server]]\nip = "10.0.0.1"\nport = 25\n'
        'notify_down = "/usr/local/bin/chk down"\n'
        '[[virtual_server.real_server.MISC_CHECK]]\nmisc_path = "/usr/local/bin/chk misc"\n'
    )
    path = tmp_path / "mailha.toml"
    path.write_text(text)
    found = check_scripts(loads(text, path), runnable=lambda p: None, accounts=FakeAccounts(),
                          fs=safe_fs().add("/usr/local/bin/chk", FILE, ALICE))
    assert [(d.key, d.severity) for d in found] == [
        ("vrrp_script.chk.script", "error"),
        ("vrrp_instance.VI.notify_master", "error"),
        ("vrrp_instance.VI.notify", "error"),
        ("virtual_server[0].quorum_up", "error"),
        ("virtual_server[0].real_server[0].notify_down", "error"),
        ("virtual_server[0].real_server[0].MISC_CHECK[0].misc_path", "error"),
    ]
    assert all(d.line is not None for d in found)


def test_script_run_as_an_unprivileged_user_passes(tmp_path: Path) -> None:
    fs = safe_fs().add("/usr/local/bin/chk", FILE | 0o002, ALICE)
    assert host_check(config_text(True, 'script_user = "alice"'), fs, tmp_path) == []


def test_own_user_root_names_the_script_user_in_the_fix(tmp_path: Path) -> None:
    text = config_text(True, 'script_user = "alice"') + 'user = "root"\n'
    (line,) = host_check(text, safe_fs().add("/usr/local/bin/chk", FILE, ALICE), tmp_path)
    assert line.endswith("or set this script's user to an unprivileged user.")


# --------------------------------------------------------------------------- real user

TEST_USER = "mailha-test-user"


@pytest.fixture(scope="session")
def unprivileged_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", TEST_USER], check=True)
        return pwd.getpwnam(TEST_USER)


def write_config(tmp_path: Path, script: Path) -> Path:
    path = tmp_path / "mailha.toml"
    path.write_text(
        '[global]\nrouter_id = "n"\nscript_user = "root"\nenable_script_security = true\n\n'
        f'[vrrp_script.chk]\nscript = "{script}"\n\n'
        '[vrrp_instance.VI]\ninterface = "lo"\nvirtual_router_id = 9\n'
        'unicast_src_ip = "127.0.0.1"\nunicast_peer = ["127.0.0.2"]\n'
        'virtual_ipaddress = ["127.0.0.9/8"]\ntrack_script = ["chk"]\n'
    )
    return path


def mailha_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["check", "--host", str(path)])
    return status, capsys.readouterr().out.splitlines()


def make_script(directory: Path, owner: int) -> Path:
    directory.mkdir()
    script = directory / "chk"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    os.chown(script, owner, -1)
    return script


@pytest.mark.root
def test_real_user_owned_script_refused_then_accepted_once_root_owns_it(
    tmp_path: Path, unprivileged_user: pwd.struct_passwd, capsys: pytest.CaptureFixture[str],
) -> None:
    uid = unprivileged_user.pw_uid
    scripts = tmp_path / "scripts"
    script = make_script(scripts, uid)
    os.chown(scripts, uid, -1)
    config = write_config(tmp_path, script)

    status, lines = mailha_check(config, capsys)
    assert status == 1, lines
    assert lines[0].startswith(f"{config}:7: error: vrrp_script.chk.script = ")
    assert lines[0].endswith(
        f"{script} runs as root but a non-root user can modify it: {scripts} is owned by "
        f"{TEST_USER} (drwxr-xr-x "
        f"{TEST_USER}:root); enable_script_security refuses to run it. Fix: chown root and "
        f"chmod go-w {scripts}, or set script_user to an unprivileged user."
    )
    assert lines[-1] == "1 file checked: 1 error, 0 warnings"

    os.chown(scripts, 0, 0)
    status, lines = mailha_check(config, capsys)
    assert status == 1  # the directory is safe now, the file is still the user's
    assert f"{script} is owned by {TEST_USER}" in lines[0]

    os.chown(script, 0, 0)
    scripts.chmod(0o755)
    assert mailha_check(config, capsys) == (0, ["1 file checked: OK"])


@pytest.mark.root
def test_real_sticky_world_writable_directory(
    tmp_path: Path, unprivileged_user: pwd.struct_passwd, capsys: pytest.CaptureFixture[str],
) -> None:
    """Like /tmp (which tmp_path is under): root-owned sticky is fine, the file must be root's."""
    shared = tmp_path / "shared"
    script = make_script(shared, unprivileged_user.pw_uid)
    shared.chmod(0o1777)
    config = write_config(tmp_path, script)
    status, lines = mailha_check(config, capsys)
    assert status == 1
    assert f"{script} is owned by {TEST_USER} (-rwxr-xr-x {TEST_USER}:root)" in lines[0]
    os.chown(script, 0, 0)
    assert mailha_check(config, capsys) == (0, ["1 file checked: OK"])
    shared.chmod(0o777)  # not sticky: anyone may rename the root-owned file away
    status, lines = mailha_check(config, capsys)
    assert status == 1
    assert f"{shared} is writable by everyone (drwxrwxrwx root:root)" in lines[0]


class _Loopback:
    async def local_addresses(self) -> frozenset[IPv4Address]:
        return frozenset({IPv4Address("127.0.0.1")})


@pytest.mark.root
async def test_real_user_owned_script_refused_at_serve_start(
    tmp_path: Path, unprivileged_user: pwd.struct_passwd,
) -> None:
    from mailha.daemon import load_for_serve

    script = make_script(tmp_path / "scripts", unprivileged_user.pw_uid)
    config = write_config(tmp_path, script)
    with pytest.raises(ConfigError) as info:
        await load_for_serve(config, _Loopback())  # type: ignore[arg-type]
    (error,) = info.value.errors
    assert error.key == "vrrp_script.chk.script" and error.line == 7
    assert f"{script} is owned by {TEST_USER}" in error.message
    os.chown(script, 0, 0)
    loaded, warnings = await load_for_serve(config, _Loopback())  # type: ignore[arg-type]
    assert loaded.script("chk").script.argv == (str(script),) and warnings == []
