"""Network namespaces, links and processes for the lab, driven from asyncio.

Links and addresses are configured with iproute2's ``ip``: it is the reference
implementation, it behaves the same on the host and in the test VM, and ``ip -batch``
applies a whole namespace's configuration in one process, so a topology costs a handful
of processes rather than dozens (each process start costs ~10x more in the VM).

Running Python *inside* a namespace — decision: ``setns(2)`` on the calling thread,
around a block that never awaits (:func:`entered`). A network namespace is a per-thread
attribute and a socket belongs, for its whole life, to the namespace it was created in.
So to talk from namespace NS we enter NS, create the socket, and come back: a few
microseconds, no helper process, and the socket then works with every asyncio API
(``sock_connect``, ``open_connection(sock=...)``, aiosmtplib's ``sock=``). pyroute2's
``NetNS`` was the alternative; it forks a proxy process per namespace and only carries
netlink, which is more machinery for less. Because only the calling thread moves, other
threads (asyncio's child watcher, executors) are unaffected; because the block never
awaits, no other task can run while the loop's thread is in the wrong namespace.

Programs run through ``ip netns exec NS`` so they also get the namespace's view of
``/sys``; each gets its own process group so it can be stopped with everything it forked.
Every wait is bounded; teardown helpers never raise for things that are already gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import ipaddress
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.errors import NetnsError
from mailha.net.checksum import internet_checksum

__all__ = [
    "IFNAMSIZ",
    "NETNS_DIR",
    "CommandResult",
    "InterfaceAddress",
    "Process",
    "add_netns",
    "addresses",
    "check_ifname",
    "check_prefix",
    "cleanup_stale",
    "delete_netns",
    "delete_netns_sync",
    "entered",
    "group_members",
    "ip",
    "ip_batch",
    "kill_group",
    "kill_netns_processes",
    "link_names",
    "list_netns",
    "netns_pids",
    "ping",
    "run",
    "set_link_up",
    "socket_in",
    "spawn",
    "sysctl",
    "work_root",
]

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns add`` bind-mounts named namespaces."""

IFNAMSIZ = 15
"""Longest interface name Linux accepts (IFNAMSIZ - 1)."""

_CLONE_NEWNET = 0x40000000
_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{2,7}\Z")
_IFNAME_BAD = frozenset("/: \t\n")


def check_prefix(prefix: str) -> str:
    """Validate a lab prefix: 3-8 ASCII letters/digits, starting with a letter.

    Three characters at least so :func:`cleanup_stale` can never match unrelated host
    names; eight at most so ``{prefix}{node}b`` still fits in :data:`IFNAMSIZ`.
    Prefixes of parallel runs must not be prefixes of one another.
    """
    if not _PREFIX_RE.match(prefix):
        raise NetnsError("invalid prefix", f"{prefix!r} (3-8 letters/digits, letter first)")
    return prefix


def check_ifname(name: str) -> str:
    """Return ``name`` if Linux accepts it as an interface name, else raise NetnsError."""
    if not 1 <= len(name) <= IFNAMSIZ or name in (".", "..") or any(c in _IFNAME_BAD for c in name):
        raise NetnsError("invalid interface name", f"{name!r} (1-{IFNAMSIZ} chars, no / : space)")
    return name


def _check_netns_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise NetnsError("invalid namespace name", repr(name))
    return name


def work_root() -> Path:
    """Parent of every lab working directory (``$TMPDIR/mailha-lab``).

    Not pytest's ``tmp_path``: that lives under a 0700 directory the ``postfix`` user
    cannot traverse, and Postfix daemons need to reach their queue.
    """
    return Path(tempfile.gettempdir()) / "mailha-lab"


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class CommandResult:
    """What a finished command printed and how it exited."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> CommandResult:
        """Return self if the command succeeded, else raise NetnsError with its stderr."""
        if self.returncode != 0:
            raise NetnsError(
                "command failed",
                f"{shlex.join(self.argv)} exited {self.returncode}: "
                f"{(self.stderr or self.stdout).strip()[-2000:]}",
            )
        return self


def _wrap(argv: Sequence[str], netns: str | None) -> list[str]:
    if not argv:
        raise NetnsError("empty command")
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", _check_netns_name(netns), *argv]


def _killpg(pgid: int, sig: int) -> None:
    # Only for groups whose leader we know is alive (or an unreaped zombie), so the
    # group id cannot have been recycled; otherwise see group_members().
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> set[int]:
    """Live processes in process group ``pgid`` (read from ``/proc/PID/stat``).

    Used to sweep what a program forked once the group leader is gone: killing the
    members found here, instead of ``killpg`` on a possibly recycled group id, can only
    hit processes that are in that group now.
    """
    members: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            members.add(int(entry))
    return members


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> set[int]:
    """Send ``sig`` to every live member of process group ``pgid``; return their PIDs."""
    members = group_members(pgid)
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return members


async def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    time_limit: float = 30.0,
    input: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``argv`` (in ``netns`` if given) to completion, within ``time_limit`` seconds.

    The command gets its own process group; on timeout or cancellation the whole group
    is killed, so nothing it forked outlives the call.
    """
    full = _wrap(argv, netns)
    try:
        proc = await asyncio.create_subprocess_exec(
            *full,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as exc:
        raise NetnsError("command not found", full[0]) from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), time_limit)
    except TimeoutError:
        _killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5.0)
        raise NetnsError("command timed out", f"{shlex.join(full)} after {time_limit:g}s") from None
    except BaseException:
        _killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode is not None
    result = CommandResult(
        tuple(full),
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )
    return result.check() if check else result


async def ip(*args: str, netns: str | None = None, time_limit: float = 30.0) -> CommandResult:
    """Run ``ip [-n NETNS] ARGS...``; raise NetnsError if it fails."""
    prefix = ["ip"] if netns is None else ["ip", "-n", _check_netns_name(netns)]
    return await run([*prefix, *args], time_limit=time_limit)


async def ip_batch(
    lines: Sequence[str],
    *,
    netns: str | None = None,
    force: bool = False,
    time_limit: float = 30.0,
) -> CommandResult:
    """Apply several ``ip`` commands in one process (``ip -batch -``).

    With ``force`` ip carries on past failing lines (used for teardown) and the result
    is returned unchecked.
    """
    argv = ["ip"]
    if netns is not None:
        argv += ["-n", _check_netns_name(netns)]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    data = "".join(f"{line}\n" for line in lines).encode()
    return await run(argv, input=data, time_limit=time_limit, check=not force)


# ------------------------------------------------------------------------- namespaces


def list_netns(prefix: str = "") -> list[str]:
    """Names of the namespaces in :data:`NETNS_DIR` that start with ``prefix``."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


async def add_netns(*names: str, time_limit: float = 30.0) -> None:
    """Create named namespaces (``ip netns add``), all in one ``ip`` process."""
    for name in names:
        _check_netns_name(name)
    if names:
        await ip_batch([f"netns add {n}" for n in names], time_limit=time_limit)


def _ns_id(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def netns_pids(name: str) -> set[int]:
    """PIDs of the processes whose network namespace is ``name`` (like ``ip netns pids``).

    Zombies and processes that exit while we look are skipped.
    """
    target = _ns_id(NETNS_DIR / _check_netns_name(name))
    if target is None:
        return set()
    pids: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ns_id(f"/proc/{entry}/ns/net") == target:
            pids.add(int(entry))
    return pids


async def kill_netns_processes(name: str, *, time_limit: float = 5.0) -> set[int]:
    """SIGKILL every process in namespace ``name`` and wait (bounded) until none is left.

    Teardown's sweep: services are stopped gracefully by their owners first; whatever is
    still inside a namespace at this point is a leak and would keep it alive.
    """
    killed: set[int] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while pids := netns_pids(name) - {os.getpid()}:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        if loop.time() > deadline:
            raise NetnsError("processes survive SIGKILL", f"{name}: {sorted(pids)}")
        await asyncio.sleep(0.01)
    return killed


async def delete_netns(*names: str, time_limit: float = 10.0) -> None:
    """Kill whatever runs in the namespaces, then delete them; missing ones are ignored."""
    present = [n for n in names if (NETNS_DIR / _check_netns_name(n)).exists()]
    for name in present:
        await kill_netns_processes(name, time_limit=time_limit)
    if present:
        await ip_batch([f"netns del {n}" for n in present], force=True, time_limit=time_limit)
    left = [n for n in present if (NETNS_DIR / n).exists()]
    if left:
        raise NetnsError("cannot delete namespaces", ", ".join(left))


def delete_netns_sync(*names: str, time_limit: float = 10.0) -> None:
    """Blocking :func:`delete_netns` for paths where the event loop is unusable.

    Used when teardown itself is interrupted (a second Ctrl-C, a cancelled task): the
    namespaces must still go, so this finishes the job without awaiting.
    """
    present = [n for n in names if (NETNS_DIR / _check_netns_name(n)).exists()]
    for name in present:
        for pid in netns_pids(name) - {os.getpid()}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if present:
        data = "".join(f"netns del {n}\n" for n in present).encode()
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input=data,
            capture_output=True,
            timeout=time_limit,
            check=False,
        )


async def cleanup_stale(prefix: str, *, time_limit: float = 10.0) -> list[str]:
    """Remove what an earlier, crashed run with ``prefix`` left behind; return what went.

    Kills every process in the prefix's namespaces (Postfix, keepalived, smtp-sink all
    run inside them), deletes the namespaces, deletes veth/bridge links in the root
    namespace whose names start with the prefix (the lab never creates any, but a run
    killed mid-setup by an older version might have), and removes the prefix's working
    directory. Must not be called while another run uses the same prefix.
    """
    check_prefix(prefix)
    removed = list_netns(prefix)
    await delete_netns(*removed, time_limit=time_limit)
    # /sys/class/net shows this process's (the root) namespace; look before forking ip.
    if any(name.startswith(prefix) for name in _root_link_names()):
        result = await run(["ip", "-j", "-d", "link", "show"], time_limit=time_limit)
        for link in json.loads(result.stdout or "[]"):
            name = str(link.get("ifname", ""))
            kind = link.get("linkinfo", {}).get("info_kind")
            if name.startswith(prefix) and kind in ("veth", "bridge"):
                await run(["ip", "link", "del", name], time_limit=time_limit, check=False)
                removed.append(name)
    workdir = work_root() / prefix
    if workdir.exists():
        shutil.rmtree(workdir, ignore_errors=True)
        removed.append(str(workdir))
    return removed


# -------------------------------------------------------------------- links/addresses


def _root_link_names() -> list[str]:
    try:
        return os.listdir("/sys/class/net")
    except FileNotFoundError:
        return []


@dataclass(frozen=True)
class InterfaceAddress:
    """One address on one interface, as ``ip addr`` reports it."""

    ifname: str
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self.interface.ip


async def link_names(netns: str | None = None) -> list[str]:
    """Names of all links in ``netns`` (the root namespace if None)."""
    result = await ip("-j", "link", "show", netns=netns)
    return [str(link["ifname"]) for link in json.loads(result.stdout or "[]")]


async def addresses(netns: str | None = None) -> list[InterfaceAddress]:
    """All addresses in ``netns`` (the root namespace if None)."""
    result = await ip("-j", "addr", "show", netns=netns)
    found: list[InterfaceAddress] = []
    for link in json.loads(result.stdout or "[]"):
        for info in link.get("addr_info", []):
            iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            found.append(InterfaceAddress(str(link["ifname"]), iface))
    return found


# ---------------------------------------------------------------- in-process setns


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    # os.setns arrives in Python 3.12; this project supports 3.11.
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def private() -> Iterator[None]:
    """Move the calling thread into a new, empty network namespace (``lo`` up) for the
    block, and back: the kernel tests' private IPVS table. The namespace goes when the
    last socket in it closes. Never ``await`` inside the block."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.unshare(_CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError("cannot create a namespace", os.strerror(err))
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30,
                           capture_output=True)
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """Move the calling thread into ``netns`` for the duration of the block.

    Never ``await`` inside the block: another task would run in the wrong namespace.
    Sockets created inside stay in ``netns`` after the block.
    """
    path = NETNS_DIR / _check_netns_name(netns)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError("no such namespace", netns) from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(target)
            except OSError as exc:
                raise NetnsError("cannot enter namespace", f"{netns}: {exc}") from exc
            try:
                yield
            finally:
                # If this fails the thread is stranded in a lab namespace: let it raise.
                _setns(home)
        finally:
            os.close(home)
    finally:
        os.close(target)


def socket_in(
    netns: str | None,
    family: socket.AddressFamily = socket.AF_INET,
    type: socket.SocketKind = socket.SOCK_STREAM,
    proto: int = 0,
) -> socket.socket:
    """A non-blocking socket created in ``netns`` (the caller's namespace if None)."""
    if netns is None:
        sock = socket.socket(family, type, proto)
    else:
        with entered(netns):
            sock = socket.socket(family, type, proto)
    sock.setblocking(False)
    return sock


def sysctl(netns: str | None, key: str, value: str | int) -> None:
    """Set a sysctl (``net.ipv4.ip_forward`` or ``net/ipv4/conf/eth0.5/rp_filter``).

    ``/proc/sys/net`` is resolved against the namespace of the thread that opens it, so
    this writes in-process instead of forking ``ip netns exec NS sysctl``.
    """
    rel = key if "/" in key else key.replace(".", "/")
    if not rel or rel.startswith("/") or ".." in rel.split("/"):
        raise NetnsError("invalid sysctl key", repr(key))
    path = Path("/proc/sys") / rel

    def write() -> None:
        try:
            path.write_text(f"{value}\n")
        except OSError as exc:
            raise NetnsError("cannot set sysctl", f"{key}={value}: {exc}") from exc

    if netns is None:
        write()
    else:
        with entered(netns):
            write()


_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ_FLAGS = struct.Struct("16sH")


def set_link_up(netns: str | None, ifname: str, up: bool) -> None:
    """Set a link administratively up or down, in-process (``SIOCSIFFLAGS`` on a socket
    of the namespace): no ``ip`` process between the caller's time stamp and the change,
    for tests that time what follows a link cut."""
    name = check_ifname(ifname).encode()
    with socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            flags = _IFREQ_FLAGS.unpack(
                fcntl.ioctl(sock, _SIOCGIFFLAGS, _IFREQ_FLAGS.pack(name, 0)))[1]
            flags = flags | _IFF_UP if up else flags & ~_IFF_UP
            fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name, flags))
        except OSError as exc:
            raise NetnsError("cannot set link", f"{ifname} in {netns}: {exc}") from exc


# ------------------------------------------------------------------------------ ping


def icmp_echo_request(ident: int, seq: int, payload: bytes = b"mailha-lab") -> bytes:
    """An ICMP echo request (type 8) with a correct checksum."""
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    csum = internet_checksum(header + payload)
    return struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload


def is_echo_reply(packet: bytes, ident: int, seq: int) -> bool:
    """True if ``packet`` (IPv4 header included, as raw sockets deliver it) answers us."""
    if len(packet) < 20:
        return False
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl : ihl + 8]
    if len(icmp) < 8:
        return False
    kind, _code, _csum, rid, rseq = struct.unpack("!BBHHH", icmp)
    return bool(kind == 0 and rid == ident and rseq == seq)


_ping_seq = itertools.count(1)


async def ping(
    netns: str | None, address: str | ipaddress.IPv4Address, *, time_limit: float = 1.0
) -> bool:
    """Send one ICMP echo from ``netns`` to an IPv4 ``address``; True if answered in time.

    In-process over a raw socket (we are root): no dependency on a ``ping`` binary
    (Debian's minimal images lack iputils) and no process start per probe.
    """
    target = str(ipaddress.IPv4Address(str(address)))
    ident = (os.getpid() ^ id(object())) & 0xFFFF
    seq = next(_ping_seq) & 0xFFFF
    loop = asyncio.get_running_loop()
    with socket_in(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        try:
            await loop.sock_sendto(sock, icmp_echo_request(ident, seq), (target, 0))
        except OSError:
            return False  # e.g. ENETUNREACH when the interface is down
        try:
            async with asyncio.timeout(time_limit):
                while not is_echo_reply(await loop.sock_recv(sock, 65535), ident, seq):
                    pass
        except TimeoutError:
            return False
    return True


# ------------------------------------------------------------------------- processes


class Process:
    """A long-running program started by :func:`spawn`, leader of its own process group."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        argv: tuple[str, ...],
        netns: str | None,
        log_path: Path,
    ) -> None:
        self._proc = proc
        self.argv = argv
        self.netns = netns
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} netns={self.netns} {shlex.join(self.argv)!r}>"

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once the program has ended (negative: killed by that signal)."""
        return self._proc.returncode

    @property
    def running(self) -> bool:
        return self._proc.returncode is None

    async def wait(self, time_limit: float) -> int:
        """Wait for the program to end; raise NetnsError after ``time_limit`` seconds."""
        try:
            return await asyncio.wait_for(self._proc.wait(), time_limit)
        except TimeoutError:
            raise NetnsError("process still running", f"{self!r} after {time_limit:g}s") from None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (a no-op if it is gone)."""
        if self.running:
            _killpg(self.pid, sig)
        else:  # the leader is reaped: its group id may be recycled, target members only
            kill_group(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group at once, without waiting (emergency teardown)."""
        self.send_signal(signal.SIGKILL)

    async def stop(self, *, time_limit: float = 5.0, sig: int = signal.SIGTERM) -> int:
        """Ask the group to stop with ``sig``, SIGKILL it after ``time_limit``; return status.

        Whatever the leader leaves behind in its group is SIGKILLed too.
        """
        if self.running:
            self.send_signal(sig)
            try:
                await asyncio.wait_for(self._proc.wait(), time_limit)
            except TimeoutError:
                self.kill()
                await self.wait(5.0)
        self.kill()
        assert self._proc.returncode is not None
        return self._proc.returncode

    def log_text(self) -> str:
        """Everything the program wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    async def __aenter__(self) -> Process:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _open_log(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


async def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Process:
    """Start ``argv`` in ``netns`` in the background, stdout+stderr appended to ``log_path``.

    The program leads a new session, so :meth:`Process.stop` reaches everything it forks.
    """
    full = _wrap(argv, netns)
    fd = _open_log(log_path)
    try:
        proc = await asyncio.create_subprocess_exec(
            *full,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as exc:
        raise NetnsError("command not found", full[0]) from exc
    finally:
        os.close(fd)
    return Process(proc, tuple(full), netns, log_path)
