"""This machine, as the configuration checks see it: interfaces, addresses, script files.

:mod:`mailha.config.validate` decides what is wrong with a configuration on a given host
with the host injected (``owns_address``, ``interface_exists``, ``runnable``, a file
system and the account databases), so its rules are unit-tested with fakes. The real
probes live here, beside :mod:`mailha.net`, and :func:`check_this_host` wires them in:
the daemon at start (missing scripts are errors) and ``mailha check --host`` (warnings:
the file may be checked on a machine that is not the node).
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import socket
import stat
from pathlib import Path

from mailha.config import scriptsec
from mailha.config.errors import Diagnostic, Severity
from mailha.config.model import Config
from mailha.config.validate import (
    check_bgp_host,
    check_control_socket,
    check_host,
    check_scripts,
)
from mailha.ip import IPAddress
from mailha.socketpath import socket_path_problem

__all__ = ["HostAccounts", "HostFileSystem", "check_this_host", "interface_exists", "runnable"]


def runnable(path: Path) -> str | None:
    """Why ``path`` cannot be executed, or None when it can."""
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a regular file"
    if not os.access(path, os.X_OK):
        return "is not executable"
    return None


def interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class HostFileSystem:
    """The real file system."""

    def lstat(self, path: str) -> scriptsec.Stat:
        st = os.lstat(path)
        return scriptsec.Stat(st.st_mode, st.st_uid, st.st_gid)

    def readlink(self, path: str) -> str:
        return os.readlink(path)




class HostAccounts:
    """This machine's passwd and group databases; None means the running process."""

    def ids(self, user: str | None, group: str | None) -> tuple[int, int] | None:
        try:
            uid, gid = os.geteuid(), os.getegid()
            if user is not None:
                pw = pwd.getpwnam(user)
                uid, gid = pw.pw_uid, pw.pw_gid
            if group is not None:
                gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return None
        return uid, gid

    def user_name(self, uid: int) -> str:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)

    def group_name(self, gid: int) -> str:
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)




def check_this_host(
    config: Config,
    *,
    script_severity: Severity = "error",
    owned: frozenset[IPAddress] | None = None,
) -> list[Diagnostic]:
    """:func:`~mailha.config.validate.check_host`, ``check_scripts`` and the control
    socket's path, against the real machine.

    The daemon calls this at start with the default (missing scripts are errors) and
    passes ``owned``, the addresses it read over its own netlink socket; ``mailha
    check`` passes ``script_severity="warning"`` and lets this function read them, with
    the same reader (:func:`mailha.net.addresses.local_addresses`) in a loop of its own.
    """
    if owned is None:
        from mailha.net.addresses import local_addresses

        owned = asyncio.run(local_addresses())
    return (check_host(config, owned.__contains__, interface_exists)
            + check_scripts(config, severity=script_severity, runnable=runnable,
                            fs=HostFileSystem(), accounts=HostAccounts())
            + check_control_socket(config, socket_path_problem)
            + check_bgp_host(config, is_socket=_is_socket, is_dir=lambda p: p.is_dir(),
                             tun_exists=TUN_DEVICE.exists()))


#: The tun driver's device node, which the BGP mode's dead-man device is made through.
TUN_DEVICE = Path("/dev/net/tun")


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False
