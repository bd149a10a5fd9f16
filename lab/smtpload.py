"""Load and loss/outage measurement for the lab's SMTP service.

Three tools, each answering one question:

* :func:`smtp_source` — "how fast?": Postfix's own load generator, run in the client
  namespace. It stops at the first broken session, so it cannot count loss.
* :func:`send_messages` — "was anything lost?": an asyncio SMTP client (aiosmtplib)
  that sends N messages with unique Message-IDs, retrying each until it is accepted,
  and records every attempt. Compare its ``accepted`` ids with what the servers' logs
  say they received (:attr:`lab.postfix.MaillogSummary.message_ids`).
* :class:`OutageProbe` — "how long was the service gone?": connects and reads the
  banner every ``interval`` seconds and records the gaps between successful banners.
  Probes are launched on a fixed schedule and may overlap, so one probe stuck in a
  SYN retransmit does not stop the clock.

Client sockets are created in the client's namespace in-process
(:func:`lab.netns.socket_in`), so probes cost no process start and time stamps
are taken right where the bytes arrive. The gap bookkeeping is a sans-I/O core
(:class:`GapTracker`: times in, report out) that the asyncio probe feeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from dataclasses import dataclass, field

import aiosmtplib

from lab.errors import LoadError
from lab.netns import run, socket_in
from mailha.resource import AsyncResource

__all__ = [
    "Attempt",
    "GapTracker",
    "Outage",
    "OutageProbe",
    "OutageReport",
    "SendReport",
    "Session",
    "SmtpSourceResult",
    "build_message",
    "parse_smtp_source",
    "read_banner",
    "send_messages",
    "smtp_source",
]

# ---------------------------------------------------------------------- smtp-source


@dataclass(frozen=True)
class SmtpSourceResult:
    """The outcome of one smtp-source run."""

    requested: int
    completed: int
    elapsed: float
    returncode: int
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.completed == self.requested

    @property
    def rate(self) -> float:
        """Completed messages per second."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0


_COUNTER_RE = re.compile(r"\d+")


def parse_smtp_source(
    stdout: str, stderr: str, *, requested: int, returncode: int, elapsed: float
) -> SmtpSourceResult:
    """Parse smtp-source ``-c`` output: a running counter (``1\\r2\\r3``) and diagnostics."""
    counts = _COUNTER_RE.findall(stdout)
    errors = tuple(
        line.strip()
        for line in stderr.splitlines()
        if line.startswith("smtp-source:") and (": fatal:" in line or ": warning:" in line)
    )
    return SmtpSourceResult(
        requested=requested,
        completed=int(counts[-1]) if counts else 0,
        elapsed=elapsed,
        returncode=returncode,
        errors=errors,
    )


async def smtp_source(
    host: str,
    port: int = 25,
    *,
    netns: str | None = None,
    messages: int = 1,
    sessions: int = 1,
    recipients: int = 1,
    size: int | None = None,
    sender: str = "load@lab.test",
    recipient: str = "sink@lab.test",
    helo: str = "client.lab.test",
    reuse_sessions: bool = False,
    time_limit: float = 120.0,
) -> SmtpSourceResult:
    """Run ``smtp-source`` against ``host:port`` from ``netns``.

    ``messages`` in all over ``sessions`` parallel sessions, ``recipients`` per message,
    ``size`` bytes of body (smtp-source's default otherwise); ``reuse_sessions`` sends
    several messages per connection (``-d``) instead of one per connection.
    """
    for name, value in (("messages", messages), ("sessions", sessions), ("recipients", recipients)):
        if value < 1:
            raise LoadError("invalid smtp-source argument", f"{name}={value}")
    argv = [
        "smtp-source", "-c", "-m", str(messages), "-s", str(sessions),
        "-r", str(recipients), "-f", sender, "-t", recipient, "-M", helo,
    ]  # fmt: skip
    if size is not None:
        argv += ["-l", str(size)]
    if reuse_sessions:
        argv.append("-d")
    argv.append(f"{host}:{port}")
    started = time.monotonic()
    result = await run(argv, netns=netns, time_limit=time_limit, check=False)
    return parse_smtp_source(
        result.stdout,
        result.stderr,
        requested=messages,
        returncode=result.returncode,
        elapsed=time.monotonic() - started,
    )


# ------------------------------------------------------------------------ sender


@dataclass(frozen=True)
class Attempt:
    """One try at sending one message; ``error`` is None when the server accepted it."""

    message_id: str
    started: float
    duration: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class SendReport:
    """Everything :func:`send_messages` did, in time order."""

    attempts: tuple[Attempt, ...]
    accepted: tuple[str, ...]
    abandoned: tuple[str, ...]
    elapsed: float

    @property
    def failed_attempts(self) -> int:
        return sum(1 for a in self.attempts if not a.ok)


def build_message(
    message_id: str, sender: str, recipient: str, size: int = 0, subject: str = "mailha lab"
) -> bytes:
    """A minimal RFC 5322 message with the given Message-ID, padded to ~``size`` bytes."""
    header = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n\r\n"
    )
    body = "mailha lab message\r\n"
    missing = size - len(header) - len(body)
    if missing > 0:
        line = "x" * 76 + "\r\n"
        body += line * (missing // len(line) + 1)
    return (header + body).encode()


@dataclass
class _SendState:
    pending: asyncio.Queue[int]
    attempts: list[Attempt] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)


async def _connect(
    host: str, port: int, ns: str | None, helo: str, time_limit: float
) -> aiosmtplib.SMTP:
    loop = asyncio.get_running_loop()
    sock = socket_in(ns)
    try:
        async with asyncio.timeout(time_limit):
            await loop.sock_connect(sock, (host, port))
        smtp = aiosmtplib.SMTP(sock=sock, local_hostname=helo, timeout=time_limit, start_tls=False)
        await smtp.connect()
    except BaseException:
        sock.close()
        raise
    return smtp


async def send_messages(
    host: str,
    port: int = 25,
    *,
    count: int,
    netns: str | None = None,
    concurrency: int = 1,
    sender: str = "load@lab.test",
    recipient: str = "sink@lab.test",
    helo: str = "client.lab.test",
    size: int = 0,
    attempt_timeout: float = 5.0,
    retry_delay: float = 0.05,
    give_up_after: float = 60.0,
    id_domain: str = "lab",
) -> SendReport:
    """Send ``count`` messages with unique Message-IDs, each retried until accepted.

    ``concurrency`` connections work in parallel, each reusing its session until an
    error, then reconnecting. A message is abandoned ``give_up_after`` seconds after
    its first attempt. Note the one ambiguity SMTP allows: a connection lost after the
    final "." but before the 250 reply may have delivered a message the sender then
    retries, so receivers can see an id twice; that is a duplicate, not a loss.
    """
    if count < 0 or concurrency < 1:
        raise LoadError("invalid sender argument", f"count={count} concurrency={concurrency}")
    run_id = uuid.uuid4().hex[:12]
    ids = [f"<{run_id}.{i}@{id_domain}>" for i in range(count)]
    state = _SendState(asyncio.Queue())
    for i in range(count):
        state.pending.put_nowait(i)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def worker() -> None:
        smtp: aiosmtplib.SMTP | None = None
        try:
            while True:
                try:
                    index = state.pending.get_nowait()
                except asyncio.QueueEmpty:
                    return
                message_id = ids[index]
                message = build_message(message_id, sender, recipient, size)
                first = loop.time()
                while True:
                    t0 = loop.time()
                    try:
                        if smtp is None or not smtp.is_connected:
                            smtp = await _connect(host, port, netns, helo, attempt_timeout)
                        async with asyncio.timeout(attempt_timeout):
                            await smtp.sendmail(sender, [recipient], message)
                    except (OSError, TimeoutError, aiosmtplib.SMTPException) as exc:
                        error = f"{type(exc).__name__}: {exc}"
                        state.attempts.append(Attempt(message_id, t0, loop.time() - t0, error))
                        if smtp is not None:
                            smtp.close()
                            smtp = None
                        if loop.time() - first > give_up_after:
                            state.abandoned.append(message_id)
                            break
                        await asyncio.sleep(retry_delay)
                        continue
                    state.attempts.append(Attempt(message_id, t0, loop.time() - t0, None))
                    state.accepted.append(message_id)
                    break
        finally:
            if smtp is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await smtp.quit()
                smtp.close()

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(concurrency, max(count, 1))):
            tg.create_task(worker())
    return SendReport(
        attempts=tuple(sorted(state.attempts, key=lambda a: a.started)),
        accepted=tuple(state.accepted),
        abandoned=tuple(state.abandoned),
        elapsed=loop.time() - started,
    )


# ------------------------------------------------------------------- outage probe


@dataclass(frozen=True)
class Outage:
    """An interval between two successful banners with at least one failed probe."""

    start: float
    end: float
    failed_probes: int

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class OutageReport:
    """What an :class:`OutageProbe` saw. Times are the probe clock's (loop.time())."""

    probes: int
    successes: int
    failures: int
    longest_gap: float
    outages: tuple[Outage, ...]
    first_success: float | None
    last_success: float | None

    @property
    def longest_outage(self) -> float:
        """Duration of the longest outage, 0.0 if there was none."""
        return max((o.duration for o in self.outages), default=0.0)


@dataclass(frozen=True)
class Session:
    """One probe of an :class:`OutageProbe`: when it started (connect), ended, and whether
    it read a 220 banner (``error`` says why not)."""

    started: float
    ended: float
    ok: bool
    error: str = ""


class GapTracker:
    """Sans-I/O bookkeeping for an outage probe: feed it results, read gaps.

    The gap is the time between consecutive successful banners; an outage is a gap that
    contains a failed probe. Failures before the first success are counted but start no
    outage (the service was never seen up).
    """

    def __init__(self) -> None:
        self._probes = 0
        self._successes = 0
        self._failures = 0
        self._failed_since_success = 0
        self._first: float | None = None
        self._last: float | None = None
        self._longest = 0.0
        self._outages: list[Outage] = []

    def success(self, at: float) -> None:
        """A probe read a 220 banner at time ``at``."""
        self._probes += 1
        self._successes += 1
        if self._last is not None:
            if at < self._last:
                raise LoadError("time went backwards", f"{at} < {self._last}")
            self._longest = max(self._longest, at - self._last)
            if self._failed_since_success:
                self._outages.append(Outage(self._last, at, self._failed_since_success))
        else:
            self._first = at
        self._last = at
        self._failed_since_success = 0

    def failure(self, at: float) -> None:
        """A probe failed (refused, timed out, no/wrong banner) at time ``at``."""
        del at  # kept for symmetry: an outage is bounded by successes, not failures
        self._probes += 1
        self._failures += 1
        if self._last is not None:
            self._failed_since_success += 1

    def report(self) -> OutageReport:
        return OutageReport(
            probes=self._probes,
            successes=self._successes,
            failures=self._failures,
            longest_gap=self._longest,
            outages=tuple(self._outages),
            first_success=self._first,
            last_success=self._last,
        )


async def read_banner(
    host: str, port: int = 25, *, netns: str | None = None, time_limit: float = 1.0
) -> bytes:
    """Connect, read the first line the server sends, say QUIT, close; return the line."""
    loop = asyncio.get_running_loop()
    with socket_in(netns) as sock:
        async with asyncio.timeout(time_limit):
            await loop.sock_connect(sock, (host, port))
            data = b""
            while b"\n" not in data and len(data) < 1024:
                chunk = await loop.sock_recv(sock, 1024)
                if not chunk:
                    break
                data += chunk
        with contextlib.suppress(OSError):
            sock.send(b"QUIT\r\n")
    return data.split(b"\n", 1)[0]


class OutageProbe(AsyncResource):
    """Poll ``host:port`` every ``interval`` s (connect + read a 220 banner), record gaps.

    ::

        async with OutageProbe("10.12.49.37", netns=topo.netns("cl")) as probe:
            await probe.wait_success()
            ...  # break something
        print(probe.report().longest_gap)

    Probes are started on a fixed schedule and run concurrently (at most
    ``max_in_flight``), each bounded by ``probe_timeout``. Every probe is also kept in
    :attr:`sessions` (start and end time, outcome), for counting failed sessions.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        netns: str | None = None,
        interval: float = 0.01,
        probe_timeout: float = 1.0,
        max_in_flight: int = 200,
    ) -> None:
        if interval <= 0 or probe_timeout <= 0 or max_in_flight < 1:
            raise LoadError(
                "invalid probe argument",
                f"interval={interval} probe_timeout={probe_timeout} max_in_flight={max_in_flight}",
            )
        self.host = host
        self.port = port
        self.netns = netns
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.max_in_flight = max_in_flight
        self.tracker = GapTracker()
        self.sessions: list[Session] = []
        self._runner: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._success = asyncio.Event()

    def report(self) -> OutageReport:
        return self.tracker.report()

    async def _probe_once(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            line = await read_banner(
                self.host, self.port, netns=self.netns, time_limit=self.probe_timeout
            )
        except (OSError, TimeoutError) as exc:
            self._failed(started, type(exc).__name__)
            return
        if line.startswith(b"220"):
            ended = loop.time()
            self.tracker.success(ended)
            self.sessions.append(Session(started, ended, True))
            self._success.set()
        else:
            self._failed(started, f"banner {line[:40]!r}")

    def _failed(self, started: float, error: str) -> None:
        ended = asyncio.get_running_loop().time()
        self.tracker.failure(ended)
        self.sessions.append(Session(started, ended, False, error))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if len(self._in_flight) < self.max_in_flight:
                task = asyncio.create_task(self._probe_once())
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            next_at += self.interval
            delay = next_at - loop.time()
            if delay < 0:  # fell behind (slow VM): skip missed slots, do not burst
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    async def start(self) -> None:
        if self._runner is not None:
            raise LoadError("probe already started")
        self._runner = asyncio.create_task(self._run())

    async def wait_success(self, time_limit: float = 10.0) -> None:
        """Wait for the first successful banner; raise LoadError if none in time."""
        try:
            async with asyncio.timeout(time_limit):
                await self._success.wait()
        except TimeoutError:
            raise LoadError(
                "service never answered", f"{self.host}:{self.port} in {time_limit:g}s"
            ) from None

    async def stop(self) -> OutageReport:
        """Stop probing, let in-flight probes finish (bounded), return the report."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=self.probe_timeout + 1.0)
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        return self.report()

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        await self.stop()
