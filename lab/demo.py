"""The demo (``scripts/demo``): the seed cluster, live, in network namespaces, in seconds.

What it shows is what the project promises, measured rather than asserted: two real
Postfix nodes running ``mailha serve`` behind the seed VIP, a client sending mail to the
VIP, which node received what (and which client address each saw: with direct routing it
must be the client's own), then the master losing its link, the VIP moving, and the next
batch landing on the survivor. Nothing is lost, by construction of the count: the client
retries a refused message until a server accepts it, only accepted messages count as
sent, and every accepted Message-ID is looked up in the Postfix logs.

Everything lives in namespaces ``mhdemo*`` on a private bridge (:mod:`lab`), so the
demo never touches the host's network, and the lab's context managers tear it all down on
success, on errors, on Ctrl-C and on SIGTERM, and the demo then checks and says that
no ``mhdemo*`` namespace is left. With ``ip_vs`` in the kernel the master also balances
over both nodes with IPVS; without it the demo says so and runs active/passive on VRRP
alone.

The reporting is kept apart from the I/O: :func:`tally` turns accepted ids and parsed
Postfix logs into per-node counts, :class:`DemoOutcome` renders the machine-checkable
``SUMMARY`` line, and the asyncio driver only moves data between the lab and those.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lab import netns
from lab.cluster import ClusterOptions, MailhaCluster
from lab.errors import LabError
from lab.postfix import MASTER, Postfix, PostfixConfig, ReceivedMessage
from lab.smtpload import OutageProbe, SendReport, send_messages
from lab.topology import SeedTopology

__all__ = [
    "PREFIX",
    "DemoError",
    "DemoOutcome",
    "NodeTally",
    "PhaseTally",
    "demo_command",
    "ipvs_available",
    "tally",
]

PREFIX = "mhdemo"
"""Name prefix of every namespace, link and directory the demo creates."""

STEPS = 8
SESSIONS = 8  # parallel SMTP sessions from the client: enough for IPVS to spread them

# Upper bounds, not expectations: on the host each step takes a second or two, inside the
# test VM (software emulation) everything is ~10x slower, and a bound only costs time
# when something is broken.
START_LIMIT = 120.0
ELECTION_LIMIT = 60.0
FAILOVER_LIMIT = 60.0
POOL_LIMIT = 60.0
ATTEMPT_TIMEOUT = 10.0
GIVE_UP_AFTER = 180.0
LOG_LIMIT = 120.0

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class DemoError(Exception):
    """The demo cannot run or did not show what it should; ``reason`` is stable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


# ---------------------------------------------------------------------- pure reporting


@dataclass(frozen=True)
class NodeTally:
    """What one node's Postfix logged for one phase's messages."""

    node: str
    received: int
    clients: tuple[tuple[str, int], ...]  # (client address smtpd saw, messages), by count


@dataclass(frozen=True)
class PhaseTally:
    """One phase: what the client got accepted and where it ended up.

    ``received`` counts distinct accepted Message-IDs found in any node's log;
    ``duplicates`` counts extra copies (SMTP's one ambiguity: a connection lost after the
    final dot but before the 250 makes the client resend a message that did arrive).
    """

    sent: int
    received: int
    duplicates: int
    nodes: tuple[NodeTally, ...]

    @property
    def missing(self) -> int:
        return self.sent - self.received

    def node(self, name: str) -> NodeTally:
        for n in self.nodes:
            if n.node == name:
                return n
        raise DemoError("no such node", name)


def tally(accepted: Collection[str], logs: Mapping[str, Sequence[ReceivedMessage]]) -> PhaseTally:
    """Count, per node, the messages of ``accepted`` (Message-IDs) each Postfix logged.

    ``logs`` maps a node name to the messages its Postfix accepted (parsed maillog).
    Messages of other phases (or without a Message-ID) are ignored, so one log can be
    tallied for several phases.
    """
    wanted = set(accepted)
    seen: Counter[str] = Counter()
    nodes = []
    for node, received in logs.items():
        mine = [m for m in received if m.message_id in wanted]
        seen.update(m.message_id for m in mine if m.message_id is not None)
        clients = Counter(m.client_address or "?" for m in mine)
        nodes.append(NodeTally(node, len(mine), tuple(clients.most_common())))
    return PhaseTally(
        sent=len(wanted),
        received=len(seen),
        duplicates=sum(seen.values()) - len(seen),
        nodes=tuple(nodes),
    )


@dataclass(frozen=True)
class DemoOutcome:
    """Everything the demo measured, rendered as the final ``SUMMARY`` line."""

    phase1: PhaseTally
    phase2: PhaseTally
    master_before: str
    master_after: str
    failover_seconds: float
    ipvs: bool
    abandoned: int = 0
    node_names: tuple[str, ...] = field(default=("n1", "n2"))

    @property
    def sent(self) -> int:
        return self.phase1.sent + self.phase2.sent

    @property
    def received(self) -> int:
        return self.phase1.received + self.phase2.received

    @property
    def vip_moved(self) -> bool:
        return self.master_before != self.master_after

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing abandoned, and the VIP really moved."""
        return self.sent == self.received and self.abandoned == 0 and self.vip_moved

    def summary_line(self) -> str:
        """One line of ``key=value`` pairs, stable for scripts and tests to parse."""
        fields: list[tuple[str, object]] = [
            ("sent", self.sent),
            ("received", self.received),
        ]
        for name in self.node_names:
            fields.append(
                (name, self.phase1.node(name).received + self.phase2.node(name).received)
            )
        fields += [
            ("vip_moved", "yes" if self.vip_moved else "no"),
            ("master_before", self.master_before),
            ("master_after", self.master_after),
            ("ipvs", "yes" if self.ipvs else "no"),
        ]
        for i, phase in enumerate((self.phase1, self.phase2), start=1):
            fields += [(f"phase{i}_{n.node}", n.received) for n in phase.nodes]
        fields += [
            ("duplicates", self.phase1.duplicates + self.phase2.duplicates),
            ("abandoned", self.abandoned),
            ("failover_s", f"{self.failover_seconds:.2f}"),
        ]
        return "SUMMARY " + " ".join(f"{k}={v}" for k, v in fields)


# --------------------------------------------------------------------------- console


class Console:
    """Numbered progress steps with timings, and the occasional highlighted line."""

    def __init__(self, out: TextIO, *, total: int = STEPS) -> None:
        self.out: TextIO | None = out
        self.total = total
        self.number = 0
        self.color = out.isatty() and os.environ.get("NO_COLOR") is None

    def write(self, text: str) -> None:
        """Write and flush; a closed reader (``scripts/demo | head``) must not stop the
        demo before its teardown, so output errors switch the console off instead."""
        if self.out is None:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except OSError:
            self._silence()

    def _silence(self) -> None:
        out = self.out
        if out is not None and out is sys.stdout:  # keep the exit-time flush quiet too
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, out.fileno())
                os.close(devnull)
        self.out = None

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def highlight(self, text: str) -> None:
        """A line that must not be missed (bold yellow on a terminal, ``!!!`` otherwise)."""
        self.line(f"\x1b[1;33m{text}\x1b[0m" if self.color else f"!!! {text}")

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """``[n/N] title ... done in 1.2 s``; append to the yielded list to say more."""
        self.number += 1
        self.write(f"[{self.number}/{self.total}] {title} ... ")
        notes: list[str] = []
        started = time.monotonic()
        try:
            yield notes
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.line(f"interrupted after {time.monotonic() - started:.1f} s")
            raise
        except BaseException:
            self.line(f"FAILED after {time.monotonic() - started:.1f} s")
            raise
        said = f"{'; '.join(notes)}; " if notes else ""
        self.line(f"{said}done in {time.monotonic() - started:.1f} s")

    def phase_table(self, title: str, phase: PhaseTally, topo: SeedTopology) -> None:
        self.line(f"    {title}: {phase.sent} accepted by the VIP, {phase.received} in the logs")
        for n in phase.nodes:
            clients = ", ".join(f"{addr} x{count}" for addr, count in n.clients) or "-"
            self.line(
                f"      {n.node} ({topo.address(n.node)}) received {n.received:>5}"
                f"   client address seen: {clients}"
            )
        if phase.duplicates:
            self.line(f"      ({phase.duplicates} duplicate(s): resent after a lost 250 reply)")


# ------------------------------------------------------------------------ the driver


def ipvs_available() -> bool:
    """True if the running kernel has IPVS (``modprobe ip_vs`` is tried first)."""
    proc = Path("/proc/net/ip_vs")
    if proc.exists():
        return True
    if shutil.which("modprobe"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["modprobe", "ip_vs"], capture_output=True, timeout=30, check=False)
    return proc.exists()


def _check_prerequisites() -> None:
    if shutil.which("ip") is None:
        raise DemoError("missing program", "`ip` (iproute2) is not installed")
    if not Path(MASTER).exists():
        raise DemoError("missing program", f"Postfix is not installed ({MASTER} not found)")
    import pwd

    try:
        pwd.getpwnam("postfix")
    except KeyError:
        raise DemoError("missing program", "Postfix is not installed (no user postfix)") from None


@contextlib.contextmanager
def _single_instance() -> Iterator[None]:
    """Refuse to run next to another demo: entering the lab clears its namespaces.

    The lock is an abstract Unix socket name: the kernel releases it when the process
    dies, however it dies, and it leaves no file behind.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lock:
        try:
            lock.bind(f"\0mailha-demo-{PREFIX}")
        except OSError:
            raise DemoError("already running", "another demo is running") from None
        yield


class Demo:
    """One run of the demo: :meth:`run` measures, :meth:`keep` pauses, the caller tears down."""

    def __init__(self, console: Console, *, messages: int, ipvs: bool) -> None:
        self.console = console
        self.messages = messages
        self.ipvs = ipvs
        self.topo = SeedTopology(PREFIX)
        self.options = ClusterOptions(
            ipvs=ipvs,
            # The seed's track script on Postfix: a node whose Postfix died gives up the VIP.
            track_script=["{node_dir}/postfix/check-postfix"],
            track_interval=2.0,
            track_fall=2,
        )
        self.postfix: dict[str, Postfix] = {}
        self.cluster: MailhaCluster | None = None

    def _logs(self) -> dict[str, tuple[ReceivedMessage, ...]]:
        return {node: pf.received() for node, pf in self.postfix.items()}

    async def run(self, stack: AsyncExitStack) -> DemoOutcome:
        """Steps 2-8: build, start, elect, send, fail the master, send again.

        Everything started is pushed on ``stack``; the caller closes it, whatever happens.
        """
        await self._start_lab(stack)
        before = await self._elect()
        report1, phase1 = await self._send_phase(1)
        after, moved = await self._fail_master(before)
        report2, phase2 = await self._send_phase(2)
        return DemoOutcome(
            phase1=phase1,
            phase2=phase2,
            master_before=before,
            master_after=after,
            failover_seconds=moved,
            ipvs=self.ipvs,
            abandoned=len(report1.abandoned) + len(report2.abandoned),
            node_names=self.topo.servers,
        )

    async def _start_lab(self, stack: AsyncExitStack) -> None:
        con, topo = self.console, self.topo
        with con.step("building the seed topology in network namespaces") as notes:
            await stack.enter_async_context(topo)
            notes.append(
                f"n1 {topo.address('n1')}, n2 {topo.address('n2')}, client"
                f" {topo.address('cl')}, VIP {topo.vip}"
            )

        with con.step("starting Postfix on n1, n2 (deliver to discard)"):
            for node in topo.servers:
                self.postfix[node] = Postfix(
                    topo.node_dir(node) / "postfix",
                    PostfixConfig(
                        hostname=f"{node}.demo.test",
                        mynetworks=("127.0.0.0/8", str(topo.spec.network)),
                    ),
                    netns=topo.netns(node),
                )
            async with asyncio.TaskGroup() as tg:
                for pf in self.postfix.values():
                    tg.create_task(stack.enter_async_context(pf))
            for pf in self.postfix.values():
                pf.check_script()

        mode = "VRRP + IPVS, direct routing" if self.ipvs else "VRRP only"
        with con.step(f"starting mailha on n1, n2 ({mode})"):
            cluster = self.cluster = MailhaCluster(topo, self.options)
            stack.push_async_callback(cluster.close)
            cluster.write_configs()
            # Both at once: a Python start costs seconds in the VM, and neither node should
            # get a head start (n1 wins the election on priority, not on timing).
            async with asyncio.TaskGroup() as tg:
                for node in cluster.nodes:
                    tg.create_task(cluster.start(node, time_limit=START_LIMIT))

    async def _elect(self) -> str:
        topo, prio = self.topo, self.options.priorities
        favourite = max(topo.servers, key=lambda n: prio.get(n, 100))
        ranking = ", ".join(f"{n} {prio.get(n, 100)}" for n in topo.servers)
        with self.console.step(f"waiting for the VRRP election (priorities {ranking})") as notes:
            master = await self._wait_election(favourite)
            notes.append(f"{master} is master, VIP {topo.vip} on {topo.netns(master)}")
            if self.ipvs:
                live = await self._wait_pool(master, want=len(topo.servers))
                notes.append(f"IPVS on {master} balances over {live} real servers")
        return master

    async def _send_phase(self, number: int) -> tuple[SendReport, PhaseTally]:
        title = f"phase {number}: sending {self.messages} messages to {self.topo.vip}:25"
        with self.console.step(title) as notes:
            report = await self._send()
            notes.append(_describe_send(report))
            phase = await self._wait_tally(report.accepted)
        self.console.phase_table(f"phase {number}", phase, self.topo)
        return report, phase

    async def _fail_master(self, master: str) -> tuple[str, float]:
        """Cut ``master``'s link; return the new master and how long the VIP took to move.

        A banner probe from the client runs meanwhile, to say how long the *service* was
        gone as the client saw it (ARP caches and IPVS included), not just the VIP.
        """
        assert self.cluster is not None
        topo, loop = self.topo, asyncio.get_running_loop()
        survivor = next(n for n in topo.servers if n != master)
        with self.console.step(f"failing the master: link of {master} down") as notes:
            async with OutageProbe(
                str(topo.vip), netns=topo.netns(topo.client), interval=0.05, probe_timeout=2.0
            ) as probe:
                with contextlib.suppress(LabError):
                    await probe.wait_success(time_limit=10.0)
                started = loop.time()
                await topo.link_down(master)
                new = await self.cluster.wait_master(survivor, time_limit=FAILOVER_LIMIT)
                moved = loop.time() - started
                if self.ipvs:
                    await self._wait_pool(new, want=1)
                with contextlib.suppress(DemoError):
                    await _wait_new_success(probe, after_time=started)
            notes.append(f"VIP moved {master} -> {new} ({topo.netns(new)}) in {moved:.1f} s")
            if gap := probe.report().longest_outage:
                notes.append(f"client saw no SMTP banner on the VIP for {gap:.1f} s")
        return new, moved

    async def _send(self) -> SendReport:
        return await send_messages(
            str(self.topo.vip),
            25,
            count=self.messages,
            netns=self.topo.netns(self.topo.client),
            concurrency=SESSIONS,
            helo="client.demo.test",
            attempt_timeout=ATTEMPT_TIMEOUT,
            retry_delay=0.2,
            give_up_after=GIVE_UP_AFTER,
            id_domain="demo.mailha",
        )

    async def _wait_election(self, favourite: str) -> str:
        """Wait until ``favourite`` holds the VIP and every other node says BACKUP.

        Waiting for "some master" is not enough: a node that starts faster than its
        higher-priority peer becomes master first and is preempted moments later, which
        would move the VIP in the middle of phase 1.
        """
        assert self.cluster is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ELECTION_LIMIT
        master = await self.cluster.wait_master(favourite, time_limit=ELECTION_LIMIT)
        others = [n for n in self.topo.servers if n != master]
        while True:
            states = {n: await self._vrrp_state(n) for n in others}
            if all(state == "BACKUP" for state in states.values()):
                return master
            if loop.time() > deadline:
                raise DemoError("no stable election", f"{master} is master, others: {states}")
            await asyncio.sleep(0.1)

    async def _vrrp_state(self, node: str) -> str | None:
        status = await _status(self.topo.node_dir(node) / "mailha.sock")
        instances = status.get("instances") or [{}]
        state = instances[0].get("state")
        return state if isinstance(state, str) else None

    async def _wait_tally(self, accepted: Collection[str]) -> PhaseTally:
        """Tally once every accepted message shows in a log (they are written async)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOG_LIMIT
        while True:
            result = tally(accepted, self._logs())
            if not result.missing or loop.time() > deadline:
                return result
            await asyncio.sleep(0.1)

    async def _wait_pool(self, node: str, *, want: int) -> int:
        """Wait (bounded) for ``node``'s IPVS service to have ``want`` live destinations."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + POOL_LIMIT
        while True:
            live = _live_destinations(await _status(self.topo.node_dir(node) / "mailha.sock"))
            if live == want or loop.time() > deadline:
                return live
            await asyncio.sleep(0.2)

    async def keep(self) -> None:
        """Tell the user how to look around, then wait for Enter."""
        con, topo = self.console, self.topo
        mailha = shutil.which("mailha") or f"{sys.executable} -m mailha"
        con.line()
        con.line("--keep: the lab is still up. Look around from another shell:")
        for node in topo.servers:
            sock = topo.node_dir(node) / "mailha.sock"
            con.line(f"  ip netns exec {topo.netns(node)} {mailha} status --socket {sock}")
        if self.ipvs:
            con.line(f"  ip netns exec {topo.netns('n2')} ipvsadm -Ln --stats")
        con.line(f"  ip -n {topo.netns('n2')} addr show       # who holds {topo.vip}")
        con.line(f"  ip -n {topo.netns('n1')} link set {topo.iface('n1')} up"
                 "   # n1 comes back and takes the VIP back (preemption)")
        con.line(f"  logs: {topo.workdir}/n*/mailha.log, {topo.workdir}/n*/postfix/maillog")
        con.line("Press Enter to tear everything down.")
        await _wait_for_enter()


async def _status(path: Path, *, time_limit: float = 10.0) -> dict[str, Any]:
    """The daemon's status over its control socket, from this process.

    Unix sockets are reached through the file system, not the network namespace, so
    no ``mailha status`` process is needed (one Python start is seconds in the VM).
    An unreachable daemon reads as an empty status.
    """
    try:
        async with asyncio.timeout(time_limit):
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                writer.write(json.dumps({"command": "status"}).encode() + b"\n")
                await writer.drain()
                reply = json.loads(await reader.read())
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError):
        return {}
    return reply if isinstance(reply, dict) else {}


def _live_destinations(status: Mapping[str, Any]) -> int:
    """Destinations with a non-zero weight in the node's IPVS service (status JSON)."""
    return sum(
        1
        for svc in status.get("ipvs", [])
        for dest in svc.get("destinations", [])
        if dest.get("weight", 0) > 0
    )


def _describe_send(report: SendReport) -> str:
    text = f"{len(report.accepted)} accepted"
    if report.failed_attempts:
        text += f" ({report.failed_attempts} attempt(s) refused and retried)"
    if report.abandoned:
        text += f", {len(report.abandoned)} ABANDONED"
    return text + f" at {len(report.accepted) / max(report.elapsed, 1e-9):.0f} msg/s"


async def _wait_new_success(probe: OutageProbe, *, after_time: float) -> None:
    """Wait (bounded) for a banner on the VIP newer than ``after_time``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FAILOVER_LIMIT
    while (probe.report().last_success or 0.0) <= after_time:
        if loop.time() > deadline:
            raise DemoError("no banner after failover", f"within {FAILOVER_LIMIT:g}s")
        await asyncio.sleep(0.05)


async def _wait_for_enter() -> None:
    """Wait for a line on stdin without a thread; return at once if stdin can't be polled."""
    if sys.stdin is None or sys.stdin.closed:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        with contextlib.suppress(OSError):
            os.read(fd, 4096)
        if not done.done():
            done.set_result(None)

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError):  # /dev/null or a regular file: nothing to wait for
        return
    try:
        await done
    finally:
        loop.remove_reader(fd)


# ---------------------------------------------------------------------- entry point


async def _main(console: Console, *, messages: int, keep: bool) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received_signal: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        # Ctrl-C or SIGTERM: cancel the run; the exit stack below tears everything down.
        # A second signal cancels the teardown too, and the lab then finishes it
        # synchronously (SIGKILL and namespace deletion without awaiting).
        received_signal.append(sig)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    console.line(
        f"mailha demo: two Postfix nodes behind one VIP, in network namespaces {PREFIX}*"
        " (the host's network is not touched)"
    )
    with console.step("checking prerequisites (root, Postfix, iproute2, ip_vs)") as notes:
        _check_prerequisites()
        ipvs = ipvs_available()
        notes.append("ip_vs available" if ipvs else "no ip_vs")
    if ipvs:
        console.line("    IPVS: the master balances VIP:25 over both nodes (direct routing)")
    else:
        console.highlight(
            "This kernel has no IPVS (ip_vs): running VRRP-only active/passive,"
            " all mail goes to the master"
        )

    demo = Demo(console, messages=messages, ipvs=ipvs)
    outcome: DemoOutcome | None = None
    error: BaseException | None = None
    stack = AsyncExitStack()
    try:
        try:
            outcome = await demo.run(stack)
            console.line()
            _print_summary(console, outcome)
            if keep:
                await demo.keep()
        except (Exception, asyncio.CancelledError) as exc:
            error = exc
            if received_signal:
                task.uncancel()  # handled: the teardown below must not see a pending cancel
            elif demo.cluster is not None:
                _print_log_tails(console, demo)
    finally:
        console.line()
        console.write("[teardown] stopping mailha and Postfix, deleting namespaces ... ")
        started = time.monotonic()
        try:
            await stack.aclose()
        except (Exception, asyncio.CancelledError) as exc:  # a second signal, a stuck process
            error = error or exc
        finally:
            if netns.list_netns(PREFIX):  # the lab could not clean up: do it the blunt way
                netns.delete_netns_sync(*netns.list_netns(PREFIX))
        console.line(f"done in {time.monotonic() - started:.1f} s")
    left = netns.list_netns(PREFIX)
    if left:
        console.highlight(f"left behind: namespaces {', '.join(left)}")
    else:
        console.line(f"cleanup: no {PREFIX}* namespace left")

    if received_signal:
        name = received_signal[0].name
        console.line(f"interrupted by {name}: everything was torn down")
        return _EXIT_SIGNAL.get(received_signal[0], 1)
    if error is not None:
        if isinstance(error, asyncio.CancelledError):
            raise error
        console.line(f"mailha demo: error: {error}")
        return EXIT_FAILED
    assert outcome is not None
    return EXIT_OK if outcome.ok and not left else EXIT_FAILED


def _print_summary(console: Console, outcome: DemoOutcome) -> None:
    mode = "VRRP + IPVS" if outcome.ipvs else "VRRP only (no ip_vs in this kernel)"
    console.line("=" * 72)
    console.line(f"  mode          {mode}")
    console.line(f"  sent          {outcome.sent} accepted by the VIP (refusals retried)")
    console.line(f"  received      {outcome.received} found in the Postfix logs")
    for name in outcome.node_names:
        p1, p2 = outcome.phase1.node(name).received, outcome.phase2.node(name).received
        console.line(f"  {name:<13} {p1 + p2} (phase 1: {p1}, phase 2: {p2})")
    console.line(
        f"  failover      {outcome.master_before} -> {outcome.master_after}"
        f" in {outcome.failover_seconds:.1f} s"
    )
    verdict = "nothing lost" if outcome.sent == outcome.received else "MESSAGES LOST"
    console.line(f"  verdict       {verdict}" + (", VIP moved" if outcome.vip_moved else ""))
    console.line("=" * 72)
    console.line(outcome.summary_line())


def _print_log_tails(console: Console, demo: Demo, lines: int = 15) -> None:
    cluster = demo.cluster
    if cluster is None:
        return
    for node in cluster.nodes:
        tail = cluster.log(node).splitlines()[-lines:]
        if tail:
            console.line(f"--- last lines of mailha on {node} ({cluster.log_path(node)})")
            for line in tail:
                console.line(f"    {line}")


def demo_command(*, messages: int = 200, keep: bool = False, out: TextIO | None = None) -> int:
    """Run the demo; the exit status is 0 only if no message was lost and the VIP moved.

    1: not root, a missing program, an error or a loss; 2: bad arguments; 130/143:
    interrupted by SIGINT/SIGTERM (after tearing everything down).
    """
    console = Console(out if out is not None else sys.stdout)
    if messages < 1:
        console.line("demo: --messages must be at least 1")
        return EXIT_USAGE
    if os.geteuid() != 0:
        console.line(
            "demo: needs root (it creates network namespaces and runs Postfix):"
            " run it as root: scripts/demo"
        )
        return EXIT_FAILED
    try:
        with _single_instance():
            return asyncio.run(_main(console, messages=messages, keep=keep))
    except DemoError as exc:
        console.line(f"demo: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:  # a Ctrl-C before our handler was installed
        return _EXIT_SIGNAL[signal.SIGINT]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lab.demo`` (what ``scripts/demo`` runs)."""
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Build the seed topology (two Postfix nodes running mailha and a client) "
        "in network namespaces, send mail to the VIP, show which node got what, fail the "
        "master, show the VIP and the mail moving, and tear everything down (also on "
        "Ctrl-C).",
    )
    parser.add_argument("--messages", type=int, default=200, help="messages per phase")
    parser.add_argument("--keep", action="store_true", help="wait for Enter before tearing down")
    args = parser.parse_args(argv)
    return demo_command(messages=args.messages, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
