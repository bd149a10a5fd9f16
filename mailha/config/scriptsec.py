"""keepalived's script security rule: who, besides root, could change a root-run script?

A script that runs as root is as privileged as the daemon, so anyone who can rewrite
the file -- or rename anything on the path to it and put their own file there -- can
run code as root. keepalived (``check_script_secure``/``check_security`` in
keepalived/core/notify.c) therefore walks every component of the script's path, from
``/`` down, and calls the script *unsafe* when a component

* is owned by a non-root user, or
* is a regular file, or a directory *without* the sticky bit, that is group-writable
  by a non-root group or world-writable.

A sticky, world-writable directory such as ``/tmp`` is accepted when root owns it: in
it only a file's owner can rename or delete the file, so what matters is that the
file itself is root-owned and not writable by others -- which the same walk checks on
the next component. A symbolic link's own mode means nothing, so only its owner is
checked (in a sticky directory its owner could replace it).

The rule only applies to scripts run with privilege (:func:`privilege`): as uid 0
or gid 0, or a file that is set-uid root (or set-gid root) and executable. keepalived
checks the path as written and, when symlinks are involved, the resolved path too:
the link and the target can each be swapped. mailha does the same.

One difference: keepalived rejects any symlinked *directory* on the written path as a
"wrong file type", so ``/bin/x`` fails on merged-/usr systems where ``/bin`` links to
``usr/bin``. mailha checks such a link like a final one (root must own it) and relies
on the walk of the resolved path for the rest, which is what keepalived's own second
walk checks.

Everything here is pure over a :class:`FileSystem` (``lstat`` and ``readlink``) so the
rule is unit-tested with fakes; :data:`HOST` is the real machine.
"""

from __future__ import annotations

import errno
import posixpath
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from mailha.config.model import GlobalConfig, ScriptCommand

__all__ = [
    "Accounts",
    "FileSystem",
    "Insecure",
    "Stat",
    "Unsafe",
    "components",
    "privilege",
    "resolve",
    "run_as",
    "unsafe_component",
    "unsafe_script",
]

Why = Literal["owner", "group", "world"]

#: Symlinks followed before giving up, as the kernel's limit (ELOOP).
_MAX_LINKS = 40


@dataclass(frozen=True)
class Stat:
    """What the rule needs of ``lstat``: mode bits, owner and group."""

    mode: int
    uid: int
    gid: int


class FileSystem(Protocol):
    """The two questions the rule asks of a file system (both raise OSError)."""

    def lstat(self, path: str) -> Stat: ...

    def readlink(self, path: str) -> str: ...




class Accounts(Protocol):
    """Users and groups: the ids a script runs as, and names for messages."""

    def ids(self, user: str | None, group: str | None) -> tuple[int, int] | None:
        """uid and gid for ``user``/``group`` (None: the daemon's); None if unknown."""
        ...

    def user_name(self, uid: int) -> str:
        """The user's name, or the number when it has none."""
        ...

    def group_name(self, gid: int) -> str:
        """The group's name, or the number when it has none."""
        ...




def run_as(command: ScriptCommand, global_: GlobalConfig) -> tuple[str | None, str | None]:
    """The user and group a command runs as: its own, else global script_user/script_group.

    The same fallback as the track-script and LVS runners (``cmd.user or script_user``,
    ``cmd.group or script_group``); None is the daemon's own user or group.
    """
    return command.user or global_.script_user, command.group or global_.script_group


@dataclass(frozen=True)
class Unsafe:
    """The first component of a script's path that a non-root user can modify.

    ``why`` is ``"owner"`` (owned by a non-root user), ``"group"`` (writable by a
    non-root group) or ``"world"`` (writable by everyone).
    """

    path: str
    stat: Stat
    why: Why

    def describe(
        self, user: Callable[[int], str] = str, group: Callable[[int], str] = str
    ) -> str:
        """``/srv is owned by alice (drwxr-xr-x alice:alice)``; ``user``/``group`` name ids."""
        st = self.stat
        if self.why == "owner":
            what = f"is owned by {user(st.uid)}"
        elif self.why == "group":
            what = f"is writable by group {group(st.gid)}"
        else:
            what = "is writable by everyone"
        return f"{self.path} {what} ({stat.filemode(st.mode)} {user(st.uid)}:{group(st.gid)})"


def privilege(uid: int, gid: int, file: Stat) -> str | None:
    """How running ``file`` as ``uid``:``gid`` gets root's powers, or None (keepalived's test).

    Root's uid or gid, or a set-uid (set-gid) root file that the bit applies to.
    """
    mode = file.mode
    if uid == 0:
        return "runs as root"
    if gid == 0:
        return "runs with group root"
    if file.uid == 0 and mode & stat.S_ISUID and mode & stat.S_IXUSR:
        return "is set-uid root"
    if file.gid == 0 and mode & stat.S_ISGID and mode & stat.S_IXGRP:
        return "is set-gid root"
    return None


def _why_unsafe(st: Stat) -> Why | None:
    """keepalived's per-component predicate: :attr:`Unsafe.why`, or None if only root can write."""
    if st.uid != 0:
        return "owner"
    mode = st.mode
    checks_write = stat.S_ISREG(mode) or (stat.S_ISDIR(mode) and not mode & stat.S_ISVTX)
    if checks_write and st.gid != 0 and mode & stat.S_IWGRP:
        return "group"
    if checks_write and mode & stat.S_IWOTH:
        return "world"
    return None


def components(path: str) -> Iterator[str]:
    """``/a/b/c`` -> ``/``, ``/a``, ``/a/b``, ``/a/b/c``: every prefix, root first."""
    yield "/"
    current = ""
    for part in path.split("/"):
        if part:
            current += "/" + part
            yield current


def unsafe_component(path: str, fs: FileSystem) -> Unsafe | None:
    """The first component of absolute ``path`` that fails the rule, walked with lstat.

    A component that cannot be looked at ends the walk with None: a missing script is
    reported by the checks that the program exists, not as a security problem.
    """
    for part in components(path):
        try:
            st = fs.lstat(part)
        except OSError:
            return None
        reason = _why_unsafe(st)
        if reason is not None:
            return Unsafe(part, st, reason)
    return None


def resolve(path: str, fs: FileSystem) -> str:
    """``realpath`` over ``fs``: the absolute path with every symlink resolved.

    Raises OSError (ENOENT, ELOOP, ...) when a component is missing or links loop.
    """
    pending = [p for p in path.split("/") if p][::-1]
    result = "/"
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            result = posixpath.dirname(result)
            continue
        candidate = posixpath.join(result, part)
        if not stat.S_ISLNK(fs.lstat(candidate).mode):
            result = candidate
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
        target = fs.readlink(candidate)
        if target.startswith("/"):
            result = "/"
        pending.extend([p for p in target.split("/") if p][::-1])
    return result


@dataclass(frozen=True)
class Insecure:
    """A privileged script (``privilege`` says how) with a component others can modify."""

    program: str
    privilege: str
    component: Unsafe


def unsafe_script(program: str, uid: int, gid: int, fs: FileSystem) -> Insecure | None:
    """Why running absolute ``program`` as ``uid``:``gid`` is unsafe, or None if it is not.

    Not privileged: never unsafe. Otherwise the written path is walked, then, when it
    differs, the resolved one (the target of a symlink can be swapped as well as the
    link). A program that cannot be resolved is left to the existence checks.
    """
    try:
        real = resolve(program, fs)
        target = fs.lstat(real)
    except OSError:
        return None
    how = privilege(uid, gid, target)
    if how is None:
        return None
    found = unsafe_component(program, fs)
    if found is None and real != program:
        found = unsafe_component(real, fs)
    return None if found is None else Insecure(program, how, found)
