"""Real Postfix instances for the lab, one per node namespace, and a fast smtp-sink.

Each instance is self-contained: its own ``main.cf``/``master.cf``, queue directory, data
directory and log file under a directory the caller owns, started inside the node's
namespace with ``master -c DIR -w`` (the last step of ``postfix -c DIR start``, see
:meth:`Postfix.start`). Debian's Postfix 3.7 accepts a non-default ``-c DIR`` from root
without ``multi_instance_directories`` or ``alternate_config_directories``, so the
system's ``/etc/postfix`` is never read for settings and never touched.

Choices that matter, and why:

* ``master.cf`` is written from scratch with chroot off everywhere: Debian's default
  chroots daemons into the system queue, which does not exist for us.
* ``maillog_file`` plus a ``postlog`` service: namespaces have no syslog, and without a
  log every failure is a bare exit code. ``received()`` parses this log.
* Everything is delivered to ``discard`` (servers) or relayed to one address (a
  client-side instance, which queues and retries: the loss-free way to push mail through
  a failover). Nothing ever leaves the lab.
* ``inet_interfaces = all``: the VIP works whether it lands on the node's interface or on
  ``lo`` (direct routing), with no ``ip_nonlocal_bind`` games.
* ``smtpd_peername_lookup = no``, no DNS anywhere: namespaces have no resolver.
* ``in_flow_delay = 0`` and long queue IDs: benchmarks are not throttled, and queue IDs
  are never reused within a run, so log parsing cannot merge two messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from lab import netns
from lab.errors import PostfixError
from lab.netns import Process
from mailha.resource import AsyncResource

__all__ = [
    "Delivery",
    "MaillogSummary",
    "Postfix",
    "PostfixConfig",
    "ReceivedMessage",
    "SmtpSink",
    "log_time",
    "lone_postfix",
    "parse_maillog",
    "parse_sink_count",
    "render_main_cf",
    "render_master_cf",
]

MASTER = "/usr/lib/postfix/sbin/master"

_QUEUE_SUBDIRS = (
    "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
    "private", "saved", "trace",
)  # fmt: skip
_PARAM_RE = re.compile(r"[a-z][a-z0-9_]*\Z")


@dataclass(frozen=True)
class PostfixConfig:
    """What a lab Postfix instance does.

    ``relayhost`` set (``"[10.12.49.37]:25"``) makes a client-side instance that relays
    everything there and retries quickly; unset, the instance discards all mail it
    accepts. ``listen`` are master.cf service names for smtpd (``"smtp"`` = port 25 on
    every address, or ``"127.0.0.1:2525"``). ``extra`` adds or overrides main.cf lines.
    """

    hostname: str
    mynetworks: tuple[str, ...] = ("127.0.0.0/8",)
    listen: tuple[str, ...] = ("smtp",)
    relayhost: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", self.hostname):
            raise PostfixError("invalid hostname", repr(self.hostname))
        if not self.listen:
            raise PostfixError("invalid listen", "at least one smtpd service is needed")
        for service in self.listen:
            if not service or any(c.isspace() for c in service):
                raise PostfixError("invalid listen", repr(service))
        for name, value in self.extra:
            if not _PARAM_RE.match(name) or "\n" in value:
                raise PostfixError("invalid parameter", f"{name!r} = {value!r}")
        if self.relayhost is not None and (
            not self.relayhost or any(c.isspace() for c in self.relayhost)
        ):
            raise PostfixError("invalid relayhost", repr(self.relayhost))


def render_main_cf(
    config: PostfixConfig, *, queue_directory: Path, data_directory: Path, maillog_file: Path
) -> str:
    """The instance's main.cf (pure: paths in, text out)."""
    params: dict[str, str] = {
        "compatibility_level": "3.6",
        "queue_directory": str(queue_directory),
        "data_directory": str(data_directory),
        "maillog_file": str(maillog_file),
        "maillog_file_prefixes": str(maillog_file.parent),
        "myhostname": config.hostname,
        "myorigin": "$myhostname",
        "mydestination": "",
        "mynetworks": ", ".join(config.mynetworks),
        "inet_interfaces": "all",
        "inet_protocols": "ipv4",
        "smtpd_banner": "$myhostname ESMTP",
        "smtpd_peername_lookup": "no",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "smtp_dns_support_level": "disabled",
        "smtp_host_lookup": "native",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "in_flow_delay": "0",
        "enable_long_queue_ids": "yes",
    }
    if config.relayhost is None:
        params |= {
            "default_transport": "discard",
            "local_transport": "discard",
            "relay_transport": "discard",
            "virtual_transport": "discard",
        }
    else:
        params |= {
            "relayhost": config.relayhost,
            "default_transport": "smtp",
            "relay_transport": "smtp",
            "local_transport": "smtp",
            # Retry fast: the point of a client-side instance is to ride out a failover.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "2s",
            "smtp_helo_timeout": "5s",
        }
    params |= dict(config.extra)
    return "".join(f"{k} = {v}\n" for k, v in params.items())


_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def render_master_cf(config: PostfixConfig) -> str:
    """The instance's master.cf: smtpd on ``config.listen``, every service unchrooted."""
    listeners = "".join(
        f"{service:<9} inet  n       -       n       -       -       smtpd\n"
        for service in config.listen
    )
    return listeners + _MASTER_SERVICES


# ---------------------------------------------------------------------- log parsing


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the instance accepted into its queue."""

    queue_id: str
    client_address: str | None
    message_id: str | None
    sender: str | None
    logged_at: float | None = None  # wall-clock time of qmgr's "queue active" line


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt for one recipient (``status`` is sent, deferred, bounced...)."""

    queue_id: str
    recipient: str
    relay: str
    status: str
    detail: str


@dataclass(frozen=True)
class MaillogSummary:
    """What a Postfix log says happened, in log order."""

    received: tuple[ReceivedMessage, ...]
    deliveries: tuple[Delivery, ...]
    fatal: tuple[str, ...]

    @property
    def client_addresses(self) -> Counter[str]:
        """How many accepted messages came from each client address."""
        return Counter(m.client_address for m in self.received if m.client_address)

    @property
    def message_ids(self) -> frozenset[str]:
        return frozenset(m.message_id for m in self.received if m.message_id)


_QID = r"(?P<qid>[0-9A-Za-z]+)"
_DAEMON = r"\S+/(?P<daemon>[\w.-]+)\[\d+\]: "
_LINE_RE = re.compile(_DAEMON + _QID + r": (?P<rest>.*)$")
_CLIENT_RE = re.compile(r"client=[^\[\s]*\[(?P<addr>[^\]]+)\]")
_MSGID_RE = re.compile(r"message-id=(?P<mid>\S*)")
_FROM_RE = re.compile(r"from=<(?P<sender>[^>]*)>, size=\d+, nrcpt=\d+ \(queue active\)")
_TO_RE = re.compile(
    r"to=<(?P<rcpt>[^>]*)>,(?: orig_to=<[^>]*>,)? relay=(?P<relay>[^,]+),.*?"
    r" status=(?P<status>\w+)(?: \((?P<detail>.*)\))?$"
)
_FATAL_RE = re.compile(r"\]: ((?:fatal|panic): .*)$")
_STAMP_RE = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?P<frac>\.\d+)? "
)


def log_time(line: str, *, now: float | None = None) -> float | None:
    """The wall-clock time (epoch seconds, local time) a syslog-style log line starts with.

    ``maillog_file`` lines carry no year: the current one is assumed, or last year's if
    that would put the line more than a day in the future (a run across New Year).
    Postfix 3.7's postlogd adds microseconds (``Dec  1 12:00:00.123456``), kept if present.
    """
    m = _STAMP_RE.match(line)
    if m is None:
        return None
    now = time.time() if now is None else now
    year = time.localtime(now).tm_year
    for y in (year, year - 1):
        try:
            parsed = time.strptime(f"{y} {m.group('mon')} {m.group('day')} {m.group('hms')}",
                                   "%Y %b %d %H:%M:%S")
        except ValueError:
            return None
        stamp = time.mktime(parsed) + float(m.group("frac") or 0.0)
        if stamp <= now + 86400:
            return stamp
    return None


@dataclass
class _Pending:
    client: str | None = None
    message_id: str | None = None
    queued: bool = False


def parse_maillog(text: str) -> MaillogSummary:
    """Parse a Postfix ``maillog_file``: accepted messages, deliveries, fatal errors.

    A message counts as received once qmgr logs ``from=<...> ... (queue active)``: it
    is logged only after cleanup committed the queue file, i.e. after the client got
    its 250. smtpd's ``client=`` line gives the client address (for direct routing the
    real server must see the client's own address), cleanup's ``message-id=`` the id.
    Unparseable lines are skipped: the log also carries free-form warnings.
    """
    pending: dict[str, _Pending] = {}
    received: list[ReceivedMessage] = []
    deliveries: list[Delivery] = []
    fatal: list[str] = []
    for line in text.splitlines():
        if f := _FATAL_RE.search(line):
            fatal.append(f.group(1))
            continue
        m = _LINE_RE.search(line)
        if m is None:
            continue
        qid, daemon, rest = m.group("qid"), m.group("daemon"), m.group("rest")
        if daemon == "smtpd" and (c := _CLIENT_RE.match(rest)):
            pending[qid] = _Pending(client=c.group("addr"))
        elif daemon == "cleanup" and (mid := _MSGID_RE.match(rest)):
            pending.setdefault(qid, _Pending()).message_id = mid.group("mid") or None
        elif daemon == "qmgr" and (fr := _FROM_RE.match(rest)):
            entry = pending.setdefault(qid, _Pending())
            if not entry.queued:
                entry.queued = True
                received.append(
                    ReceivedMessage(qid, entry.client, entry.message_id, fr.group("sender"),
                                    log_time(line))
                )
        elif daemon == "qmgr" and rest == "removed":
            pending.pop(qid, None)
        elif to := _TO_RE.match(rest):
            deliveries.append(
                Delivery(
                    qid,
                    to.group("rcpt"),
                    to.group("relay"),
                    to.group("status"),
                    to.group("detail") or "",
                )
            )
    return MaillogSummary(tuple(received), tuple(deliveries), tuple(fatal))


# ------------------------------------------------------------------------- instance


def master_pidfile(directory: Path) -> Path:
    """The master pidfile of the lab Postfix instance under ``directory``."""
    return directory / "queue" / "pid" / "master.pid"


class Postfix(AsyncResource):
    """One lab Postfix instance under ``directory``, run inside namespace ``netns``.

    ``async with Postfix(...)`` starts it and always stops it. :meth:`abort` crashes it on
    purpose (SIGKILL to the master's process group) for failure tests.
    """

    def __init__(self, directory: Path, config: PostfixConfig, *, netns: str | None = None) -> None:
        self.directory = directory
        self.config = config
        self.netns = netns
        self.conf_dir = directory / "etc"
        self.queue_dir = directory / "queue"
        self.data_dir = directory / "data"
        self.log_path = directory / "maillog"

    def __repr__(self) -> str:
        return f"<Postfix {self.config.hostname} netns={self.netns} dir={self.directory}>"

    # -- lifecycle ----------------------------------------------------------------------

    def write_config(self) -> None:
        """Write main.cf/master.cf and create the (root-owned, 0755) queue directory."""
        for path in (self.directory, self.conf_dir, self.queue_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o755)
        (self.conf_dir / "main.cf").write_text(
            render_main_cf(
                self.config,
                queue_directory=self.queue_dir,
                data_directory=self.data_dir,
                maillog_file=self.log_path,
            )
        )
        (self.conf_dir / "master.cf").write_text(render_master_cf(self.config))
        # Postfix waits (300 ms at a time, ~2 s in all) for a main.cf modified within the
        # last couple of seconds to "settle"; backdating it makes start-up ~7x faster.
        backdated = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.conf_dir / name, (backdated, backdated))

    def create_queue(self) -> None:
        """Create the queue and data directories with the owners and modes Postfix wants.

        This is what ``postfix start`` has ``post-install create-missing`` do (the
        layout is Debian's ``/etc/postfix/postfix-files``), done in-process.
        """
        try:
            owner = pwd.getpwnam("postfix").pw_uid
            setgid_group = grp.getgrnam("postdrop").gr_gid
        except KeyError as exc:
            raise PostfixError("postfix not installed", f"no user/group {exc}") from None
        layout = [(self.data_dir, owner, -1, 0o700)]
        layout += [(self.queue_dir / sub, owner, -1, 0o700) for sub in _QUEUE_SUBDIRS]
        layout += [
            (self.queue_dir / "maildrop", owner, setgid_group, 0o730),
            (self.queue_dir / "public", owner, setgid_group, 0o710),
            (self.queue_dir / "pid", 0, -1, 0o755),
        ]
        for path, uid, gid, mode in layout:
            path.mkdir(exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)

    async def start(self, *, time_limit: float = 120.0) -> None:
        """Write the configuration, create the queue, start Postfix; returns once it listens.

        Runs ``master -w`` (what ``postfix start`` ends with) directly: postfix-script's
        integrity checks before it fork ~100 processes, 0.3 s on the host but ~40 s in
        the test VM, and a lab queue is created fresh and correct by :meth:`create_queue`.
        """
        if self.master_pid() is not None:
            raise PostfixError("already running", repr(self))
        self.write_config()
        self.create_queue()
        result = await netns.run(
            [MASTER, "-c", str(self.conf_dir), "-w"],
            netns=self.netns,
            time_limit=time_limit,
            check=False,
        )
        if not result.ok:
            raise PostfixError(
                "start failed",
                f"{self!r}: exit {result.returncode}: "
                f"{(result.stderr + result.stdout).strip()} | log: {self._log_tail()}",
            )

    @property
    def pidfile(self) -> Path:
        """The master daemon's pidfile (what mailha's ``local_watch`` follows)."""
        return master_pidfile(self.directory)

    def master_pid(self) -> int | None:
        """PID of the running master daemon, or None if Postfix is not running."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        return pid if comm == "master" and state != "Z" else None

    @property
    def running(self) -> bool:
        return self.master_pid() is not None

    async def stop(self, *, time_limit: float = 10.0) -> None:
        """Stop gracefully: SIGTERM the master (it stops its children), wait, then sweep.

        Like ``postfix stop`` without its one-second polling; after ``time_limit`` the
        master's process group is SIGKILLed.
        """
        pid = self.master_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        await self._wait_gone(pid, time_limit)
        netns.kill_group(pid)  # children the master did not take down with it

    async def reload(self, config: PostfixConfig) -> None:
        """Switch to ``config`` as ``postfix reload`` does: rewrite main.cf/master.cf, SIGHUP.

        The master re-reads master.cf and stops a service whose line went away, closing
        its listening socket, while the master itself lives on (what local_watch's
        listener watch is for). Returns once the master has logged the reload.
        """
        pid = self.master_pid()
        if pid is None:
            raise PostfixError("not running", repr(self))
        self.config = config
        self.write_config()
        before = self.log_text().count("reload --")
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 30.0
        while self.log_text().count("reload --") <= before:
            if time.monotonic() > deadline:
                raise PostfixError("reload not logged", f"{self!r}: {self._log_tail()}")
            await asyncio.sleep(0.05)

    async def abort(self) -> None:
        """Crash Postfix on purpose: SIGKILL the master and all its children at once.

        Unlike ``postfix abort`` (a SIGTERM), nothing gets to clean up: the listener
        vanishes mid-session, queue files stay. Use :meth:`stop` for a clean stop.
        """
        pid = self.master_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        await self._wait_gone(pid, 5.0)

    async def _wait_gone(self, pid: int, time_limit: float) -> None:
        """Wait for master ``pid`` to exit; SIGKILL its group after ``time_limit``."""
        if await self._gone_within(pid, time_limit):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if not await self._gone_within(pid, 5.0):
            raise PostfixError("master survives SIGKILL", f"{self!r}: pid {pid}")

    async def _gone_within(self, pid: int, time_limit: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while self.master_pid() == pid:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        try:
            await self.stop()
        except BaseException:
            pid = self.master_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            raise

    # -- observation --------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, lines: int = 5) -> str:
        return " / ".join(self.log_text().splitlines()[-lines:])

    def summary(self) -> MaillogSummary:
        """Parse the instance's log as it stands now."""
        return parse_maillog(self.log_text())

    def received(self) -> tuple[ReceivedMessage, ...]:
        return self.summary().received

    def received_count(self) -> int:
        """Messages accepted so far (each counted once, when it entered the queue)."""
        return len(self.received())

    def client_addresses(self) -> Counter[str]:
        """Accepted messages per client address, as smtpd saw the peer."""
        return self.summary().client_addresses

    async def wait_received(
        self, count: int, *, time_limit: float = 30.0
    ) -> tuple[ReceivedMessage, ...]:
        """Wait until at least ``count`` messages were accepted (the log is asynchronous)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while len(got := self.received()) < count:
            if loop.time() > deadline:
                raise PostfixError(
                    "messages not received",
                    f"{self!r}: {len(got)} of {count} after {time_limit:g}s",
                )
            await asyncio.sleep(0.05)
        return got

    def queue_length(self) -> int:
        """Messages still queued (incoming, active, deferred, hold, maildrop)."""
        total = 0
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _dirpath, _dirs, files in os.walk(self.queue_dir / sub):
                total += len(files)
        return total

    def check_script(self) -> Path:
        """Write (once) and return an executable health check for keepalived's track_script.

        It exits 0 while the master daemon runs. ``master -t`` is Postfix's own test
        (exit 0 when *not* running, so negated); unlike ``postfix status`` it does not
        write a log line every interval.
        """
        path = self.directory / "check-postfix"
        path.write_text(f"#!/bin/sh\n! {MASTER} -c {self.conf_dir} -t 2>/dev/null\n")
        os.chmod(path, 0o755)
        return path


# ----------------------------------------------------------------------- smtp-sink


@contextlib.asynccontextmanager
async def lone_postfix(prefix: str, hostname: str) -> AsyncIterator[tuple[str, Postfix]]:
    """A running lab Postfix alone in a new namespace ``{prefix}-pf-XXXXXX`` (lo up).

    Yields (namespace, postfix); stops Postfix and removes the namespace and the
    instance's directory on the way out, whatever happened inside.
    """
    name = f"{prefix}-pf-{secrets.token_hex(3)}"
    directory = netns.work_root() / name
    await netns.add_netns(name)
    postfix = Postfix(directory, PostfixConfig(hostname=hostname), netns=name)
    try:
        await netns.ip("link", "set", "lo", "up", netns=name)
        await postfix.start()
        yield name, postfix
    finally:
        try:
            if postfix.running:
                await postfix.stop()
        finally:
            await netns.delete_netns(name)
            shutil.rmtree(directory, ignore_errors=True)


_SINK_RE = re.compile(r"mesg=(\d+)")


def parse_sink_count(output: str) -> int:
    """Messages smtp-sink reported completing (its ``-c`` counter: ``mesg=N``)."""
    counts = _SINK_RE.findall(output)
    return int(counts[-1]) if counts else 0


class SmtpSink:
    """Postfix's ``smtp-sink``: a fast SMTP listener that accepts and forgets mail.

    Starts in a fraction of Postfix's time and handles far more sessions per second,
    for tests that need "something answering 220 on port 25" rather than a mail system.
    """

    def __init__(
        self,
        log_path: Path,
        *,
        netns: str | None = None,
        listen: str = "0.0.0.0:25",
        hostname: str = "sink.lab.test",
        backlog: int = 256,
    ) -> None:
        self.log_path = log_path
        self.netns = netns
        self.listen = listen
        self.hostname = hostname
        self.backlog = backlog
        self._proc: Process | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    async def start(self, *, time_limit: float = 10.0) -> None:
        """Start smtp-sink and wait until it accepts connections."""
        if self.running:
            raise PostfixError("already running", f"smtp-sink {self.listen}")
        argv = [
            "smtp-sink", "-c", "-u", "nobody", "-h", self.hostname,
            self.listen, str(self.backlog),
        ]  # fmt: skip
        self._proc = await netns.spawn(argv, netns=self.netns, log_path=self.log_path)
        host, _, port = self.listen.rpartition(":")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while not await _accepts(self.netns, host, int(port)):
            if not self._proc.running:
                raise PostfixError("smtp-sink exited", self._proc.log_text().strip()[-500:])
            if loop.time() > deadline:
                await self.stop()
                raise PostfixError("smtp-sink not listening", f"{self.listen}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._proc is not None:
            await self._proc.stop(time_limit=5.0)

    def received_count(self) -> int:
        """Messages accepted so far, from smtp-sink's counter."""
        return parse_sink_count(self._proc.log_text() if self._proc else "")

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _accepts(ns: str | None, host: str, port: int) -> bool:
    loop = asyncio.get_running_loop()
    with netns.socket_in(ns) as sock:
        try:
            async with asyncio.timeout(1.0):
                await loop.sock_connect(sock, (host, port))
        except (OSError, TimeoutError):
            return False
    return True
