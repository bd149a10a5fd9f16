"""Benchmark the sessions a stopping Postfix costs the VIP: mailha vs the keepalived seed.

Needs ip_vs, so it normally runs in the VM::

    PATH=$PWD/.venv/bin:$PATH tests/vm/vmrun --mem 2G --timeout 3000 -- python \\
        bench/bench_postfix_stop.py [--reps 5] [--quick] [--rate 50] [--ka-script-timeout 5] \\
        [--scenarios killed,stop,drain,backup] [--no-keepalived | --no-mailha] [--verbose]

(``--no-mailha`` needs no ip_vs: the keepalived half also runs on the host.)

The seed topology with a real Postfix on both nodes, and a client that opens a new TCP
session to VIP:25 every 20 ms (``--rate 50``/s), reads the 220 banner and says QUIT
(bench/sessionprobe.c, built with cc at start; the Python lab.sessionprobe if
that fails). A session
fails if the connect is refused or reset, or no banner arrives within 2 s. Per
repetition: the client runs ~1 s steady, the event happens, then the bench waits until
the cluster has reacted (the real server out of the table; the VIP moved) and 2.5 s more.

mailha, as ``config/node1.toml`` ships it for IPVS: all-in-one DR, rr, ``local_watch``
on both real servers, SMTP_CHECK delay_loop 0.5, connect_timeout 1, retry 1,
delay_before_retry 0.2; priorities 150/100, VRRPv2 advert_int 1; n1 is master.
(Not run: node1.toml's ``chk_postfix`` track script, weight 20. It cannot move the VIP
in these events, 150 against 100 + 20, and a Python check every second on both nodes
would load the emulated VM.) Events, all on n1 (the master) but the last:

* ``killed``: SIGKILL of the Postfix master (and its children: a crash);
* ``stop``: ``postfix stop`` (the lab's equivalent: SIGTERM to the master, as
  postfix-script does, without its integrity checks that take ~40 s in the VM);
* ``drain``: ``systemctl stop postfix`` with deploy/systemd's mailha-drain.conf drop-in.
  There is no systemd in the lab, so the drop-in's ExecStop sequence is run as it is
  written: ``mailha drain --wait 30 local`` on n1, then ``postfix stop``; and after the
  restart its ExecStartPost, ``mailha undrain local``. The event starts with the drain;
* ``backup``: SIGKILL of n2's Postfix master (n2 is a real server of n1's table; n1
  cannot watch it and finds it by its SMTP_CHECK).

keepalived, the seed setup (both priority 100, track script every 1 s on Postfix with
weight +100, no IPVS, so the VIP moves to the other node): ``killed``, ``stop`` and
``backup`` on the VIP holder; ``drain`` does not exist there (it is ``stop``).

Figures per event: the time from the event to the start of the last failed session
(0 when none failed; a session started just before the event that fails because of it
counts as at the event), and the number of failed sessions. After each event Postfix
is restarted and the cluster settles (real server back in the table / one master)
before the next. Prints median and max; asserts nothing about timing; exits 1 if the
lab cannot be driven.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import BenchError, require_ipvs, run_bounded, wait_for
from bench_detection import IpvsPoller

from lab import netns
from lab.cluster import ClusterOptions, MailhaCluster
from lab.errors import LabError
from lab.keepalived import Keepalived
from lab.netns import Process
from lab.seedlab import SeedLab
from lab.sessionprobe import parse_sessions
from lab.smtpload import Session
from lab.topology import SeedTopology

SCENARIOS = {
    "killed": "Postfix killed (SIGKILL master)",
    "stop": "`postfix stop`",
    "drain": "systemctl stop + drain drop-in*",
    "backup": "backup's Postfix killed",
}
SESSION_TIMEOUT = 2.0  # no banner within this: failed
STEADY = 1.0  # seconds of steady load before the event
AFTER = SESSION_TIMEOUT + 0.5  # after the cluster reacted: late failures show up by then
MAILHA = ClusterOptions(  # config/node1.toml's virtual_server, checks and priorities
    ipvs=True, local_watch=True, delay_loop=0.5, connect_timeout=1.0, retry=1,
    delay_before_retry=0.2,
)


@dataclass(frozen=True)
class Rep:
    """One event: failed sessions, the last one's start after the event, what it took."""

    failed: int
    last: float  # s from the event to the start of the last failed session (0: none)
    sessions: int
    rate: float  # new sessions/s actually started
    out: float | None = None  # s until the real server left the master's table
    early: int = 0  # failed sessions that ended before the event (an unsettled cluster)
    errors: str = ""


def tally(sessions: Sequence[Session], window: tuple[float, float], t0: float,
          out: float | None = None) -> Rep:
    """The sessions started in ``window``, relative to the event at ``t0``."""
    ordered = sorted(sessions, key=lambda s: s.started)
    if not any(s.ok for s in ordered if s.started < t0):
        raise BenchError("the client read no banner from VIP:25 before the event")
    failed = [s for s in ordered if not s.ok]
    errors: dict[str, int] = {}
    for s in failed:
        errors[s.error] = errors.get(s.error, 0) + 1
    return Rep(
        failed=len(failed),
        last=max([s.started - t0 for s in failed] + [0.0]),
        sessions=len(ordered),
        rate=len(ordered) / (window[1] - window[0]),
        out=out,
        early=sum(1 for s in failed if s.ended < t0),
        errors=", ".join(f"{k} {v}" for k, v in sorted(errors.items())),
    )


async def build_prober(workdir: Path, vip: str, interval: float) -> list[str]:
    """argv of the session prober: bench/sessionprobe.c built with ``cc`` (~1/30 of the
    Python prober's CPU), or ``python -m lab.sessionprobe`` without a compiler."""
    binary = workdir / "sessionprobe"
    source = Path(__file__).with_name("sessionprobe.c")
    with contextlib.suppress(LabError):
        result = await netns.run(["cc", "-O2", "-o", str(binary), str(source)],
                                 time_limit=300, check=False)
        if result.ok:
            return [str(binary), vip, "25", str(interval), str(SESSION_TIMEOUT)]
        print(f"  cc failed, the Python prober runs instead: {result.stderr.strip()}")
    return [sys.executable, "-m", "lab.sessionprobe", vip, "--interval", str(interval),
            "--timeout", str(SESSION_TIMEOUT)]


class Prober:
    """The session prober in the client namespace for a whole phase: a new session to
    VIP:25 every ``--rate``th of a second; the sessions read back from its output."""

    def __init__(self, topo: SeedTopology, name: str, argv: Sequence[str]) -> None:
        self.topo = topo
        self.argv = list(argv)
        self.path = topo.workdir / f"sessions-{name}.log"
        self.proc: Process | None = None
        self.sessions: list[Session] = []
        self._offset = 0
        self.windows: list[tuple[float, float]] = []

    async def __aenter__(self) -> Prober:
        self.proc = await self.topo.spawn("cl", self.argv, self.path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            await self.proc.stop(time_limit=SESSION_TIMEOUT + 10)

    def read(self) -> list[Session]:
        """Every session finished so far (reads only what was added since last time)."""
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        self.sessions += parse_sessions(complete.decode(errors="replace").splitlines(True))
        return self.sessions

    async def wait_success(self, after: float, time_limit: float = 120) -> None:
        async def answered() -> bool:
            return any(s.ok and s.started > after for s in reversed(self.read()[-200:]))
        await wait_for(f"a banner from VIP:25 ({self.path.name})", answered, time_limit,
                       every=0.05)

    def between(self, since: float, until: float) -> list[Session]:
        self.windows.append((since, until))
        return [s for s in self.read() if since <= s.started < until]

    def failed_outside(self) -> int:
        """Failed sessions between the first and the last window but in none (settling)."""
        if not self.windows:
            return 0
        first, last = self.windows[0][0], self.windows[-1][1]
        return sum(
            1 for s in self.read()
            if not s.ok and first <= s.started < last
            and not any(a <= s.started < b for a, b in self.windows)
        )


Event = Callable[[], Awaitable[None]]
Reacted = Callable[[float], Awaitable[float | None]]


async def measure(prober: Prober, event: Event, reacted: Reacted) -> Rep:
    """Steady load, ``event``, wait for ``reacted`` and AFTER s more; tally the sessions."""
    loop = asyncio.get_running_loop()
    since = loop.time()
    await prober.wait_success(since, time_limit=30)
    await asyncio.sleep(STEADY)
    t0 = loop.time()
    await event()
    out = await reacted(t0)
    await asyncio.sleep(AFTER - SESSION_TIMEOUT)
    until = loop.time()
    await asyncio.sleep(SESSION_TIMEOUT + 0.5)  # every session started by ``until`` ended
    return tally(prober.between(since, until), (since, until), t0, out)


# ------------------------------------------------------------------------- mailha


async def bench_mailha(
    lab: SeedLab, scenarios: Sequence[str], reps: int, verbose: bool, prober_argv: list[str]
) -> dict[str, list[Rep]]:
    topo, postfix = lab.topo, lab.postfix
    loop = asyncio.get_running_loop()
    ipvs = IpvsPoller(topo, "n1")
    sock = str(topo.node_dir("n1") / "mailha.sock")
    results: dict[str, list[Rep]] = {k: [] for k in scenarios}

    async def mailha(*argv: str) -> None:
        cmd = [sys.executable, "-m", "mailha", *argv, "--socket", sock]
        result = await topo.exec("n1", cmd, time_limit=120, check=False)
        if not result.ok:
            raise BenchError(f"{' '.join(argv)}: {(result.stdout + result.stderr).strip()}")

    async with MailhaCluster(topo, MAILHA, log_level="debug") as cluster, \
            Prober(topo, "mailha", prober_argv) as prober:
        await cluster.wait_master("n1", time_limit=120)
        for node in topo.servers:
            await ipvs.until(True, f"{topo.address(node)}:25", loop.time(), 120)
        for rep in range(reps):
            for kind in scenarios:
                node = "n2" if kind == "backup" else "n1"
                dest = f"{topo.address(node)}:25"

                async def event(kind: str = kind, node: str = node) -> None:
                    if kind in ("killed", "backup"):
                        await postfix[node].abort()
                        return
                    if kind == "drain":  # the drop-in's ExecStop, in its order
                        await mailha("drain", "--wait", "30", "local")
                    await postfix[node].stop()

                async def reacted(t0: float, dest: str = dest) -> float:
                    return await ipvs.until(False, dest, t0, 30)

                log_at = cluster.log_path("n1").stat().st_size
                wall = time.time()
                result = await measure(prober, event, reacted)
                results[kind].append(result)
                report(f"mailha {kind} #{rep + 1}", result, wall)
                missed = result.failed > (0 if kind == "drain" else 3)
                if verbose or result.early or (missed and kind != "backup"):
                    show_log(cluster.log("n1").encode()[log_at:].decode(errors="replace"))
                await postfix[node].start(time_limit=300)
                if kind == "drain":  # the drop-in's ExecStartPost
                    await mailha("undrain", "local")
                for settled in topo.servers:  # both: the other may have dropped under load
                    await ipvs.until(True, f"{topo.address(settled)}:25", loop.time(), 120)
                if await topo.vip_masters() != ["n1"]:
                    raise BenchError("the VIP left n1 although only a Postfix stopped")
        print(f"  mailha: {prober.failed_outside()} failed session(s) while settling",
              flush=True)
        if "Traceback" in cluster.log("n1") + cluster.log("n2"):
            raise BenchError("mailha logged a traceback")
    return results


def show_log(text: str) -> None:
    for line in text.splitlines():
        print(f"      | {line}")


# --------------------------------------------------------------------- keepalived


async def bench_keepalived(
    lab: SeedLab, scenarios: Sequence[str], reps: int, prober_argv: list[str]
) -> dict[str, list[Rep]]:
    topo, postfix = lab.topo, lab.postfix
    loop = asyncio.get_running_loop()
    results: dict[str, list[Rep]] = {k: [] for k in scenarios if k != "drain"}

    async def one_master() -> bool:
        return len(await topo.vip_masters()) == 1

    async with contextlib.AsyncExitStack() as stack:
        prober = await stack.enter_async_context(Prober(topo, "keepalived", prober_argv))
        for node in topo.servers:
            await stack.enter_async_context(Keepalived(
                topo.node_dir(node) / "keepalived", lab.keepalived_config(node),
                netns=topo.netns(node),
            ))
        for rep in range(reps):
            for kind in results:
                await wait_for("one keepalived master", one_master, 120)
                await asyncio.sleep(3.0)  # scripts passing on both nodes, election settled
                await wait_for("one keepalived master", one_master, 60)
                (master,) = await topo.vip_masters()
                other = next(n for n in topo.servers if n != master)
                node = other if kind == "backup" else master

                async def event(kind: str = kind, node: str = node) -> None:
                    await (postfix[node].stop() if kind == "stop" else postfix[node].abort())

                async def reacted(t0: float, kind: str = kind, to: str = other) -> float | None:
                    if kind == "backup":
                        return None

                    async def moved() -> bool:
                        return await topo.vip_masters() == [to]

                    await wait_for(f"the VIP on {to}", moved, 60)
                    took = loop.time() - t0
                    await prober.wait_success(loop.time(), time_limit=30)
                    return took

                wall = time.time()
                result = await measure(prober, event, reacted)
                results[kind].append(result)
                report(f"keepalived {kind} #{rep + 1}", result, wall, out="VIP moved")
                await postfix[node].start(time_limit=300)
        print(f"  keepalived: {prober.failed_outside()} failed session(s) while settling",
              flush=True)
    return results


# ------------------------------------------------------------------------- report


def report(label: str, r: Rep, wall: float, *, out: str = "RS out") -> None:
    at = time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"
    took = f", {out} {r.out * 1000:.0f} ms" if r.out is not None else ""
    print(
        f"  {label}: {r.failed} failed, last {r.last * 1000:.0f} ms{took};"
        f" {r.sessions} sessions at {r.rate:.1f}/s; started {at}"
        + (f" [{r.errors}]" if r.errors else "")
        + (f" WARNING {r.early} failed before the event" if r.early else ""),
        flush=True,
    )


def stats(values: Sequence[float]) -> str:
    return f"{statistics.median(values):7.0f} {max(values):7.0f}"


def print_table(rows: Sequence[tuple[str, str, list[Rep]]]) -> None:
    head = (
        f"{'':<12} {'event':<34} | {'last failed (ms)':>15} | {'failed sessions':>21}"
        f" | {'RS out / VIP moved':>18} | {'rate':>5}"
    )
    print(head)
    print(
        f"{'':<12} {'':<34} | {'median':>7} {'max':>7} | {'median':>7} {'max':>6} {'total':>6}"
        f" | {'median ms':>9} {'max':>8} | {'/s':>5}"
    )
    print("-" * len(head))
    for impl, kind, reps in rows:
        if not reps:
            continue
        outs = [r.out * 1000 for r in reps if r.out is not None]
        out = f"{statistics.median(outs):9.0f} {max(outs):8.0f}" if outs else f"{'-':>9} {'-':>8}"
        print(
            f"{impl:<12} {SCENARIOS[kind]:<34} | {stats([r.last * 1000 for r in reps])}"
            f" | {statistics.median(r.failed for r in reps):7.0f} {max(r.failed for r in reps):6d}"
            f" {sum(r.failed for r in reps):6d} | {out:>18} |"
            f" {statistics.median(r.rate for r in reps):5.1f}"
        )


async def run_phases(args: argparse.Namespace, scenarios: Sequence[str], reps: int,
                     rows: list[tuple[str, str, list[Rep]]]) -> None:
    async with SeedLab(
        args.prefix, keepalived=False, script_interval=1.0, script_timeout=args.ka_script_timeout
    ) as lab:
        prober = await build_prober(lab.topo.workdir, str(lab.topo.vip), 1 / args.rate)
        print(f"  session prober: {' '.join(prober)}", flush=True)
        if not args.no_mailha:
            started = time.monotonic()
            got = await bench_mailha(lab, scenarios, reps, args.verbose, prober)
            print(f"  mailha: {time.monotonic() - started:.0f} s", flush=True)
            rows += [("mailha", k, v) for k, v in got.items()]
        if not args.no_keepalived:
            started = time.monotonic()
            got = await bench_keepalived(lab, scenarios, reps, prober)
            print(f"  keepalived: {time.monotonic() - started:.0f} s", flush=True)
            rows += [("keepalived", k, v) for k, v in got.items()]


async def main_async(args: argparse.Namespace) -> int:
    reps = 1 if args.quick else args.reps
    scenarios = args.scenarios.split(",")
    in_vm = os.environ.get("MAILHA_IN_VM") == "1"
    print(
        f"bench_postfix_stop: {reps} rep(s) of {scenarios},"
        f" {'VM' if in_vm else 'host'} {platform.node()} ({len(os.sched_getaffinity(0))} CPUs),"
        f" {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    rows: list[tuple[str, str, list[Rep]]] = []
    await run_phases(args, scenarios, reps, rows)
    print()
    print(
        f"From the event to the last failed new session on VIP:25 (a new session every"
        f" {1000 / args.rate:.0f} ms; failed: refused, reset or no banner in"
        f" {SESSION_TIMEOUT:g} s); {reps} rep(s) each"
    )
    print_table(rows)
    print("* no systemd in the lab: the drop-in's sequence is run as written"
          " (`mailha drain --wait 30 local` on the master, then `postfix stop`)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per event (5)")
    parser.add_argument("--quick", action="store_true", help="one repetition")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="new sessions per second on VIP:25 (50)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS),
        help=f"comma-separated events, from {','.join(SCENARIOS)} (all)",
    )
    parser.add_argument("--no-keepalived", action="store_true", help="skip keepalived")
    parser.add_argument("--no-mailha", action="store_true", help="skip mailha")
    parser.add_argument(
        "--ka-script-timeout", type=float, default=None, metavar="SECONDS",
        help="timeout for keepalived's track script (default: keepalived's own); in the VM"
        " a check takes 0.3-2.4 s, times out and flaps the priority unless this is raised",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="print n1's mailha log (debug) of each mailha event (else only"
                        " of an event on n1 that failed more sessions than the goal)")
    parser.add_argument("--prefix", default="mhB8", help="namespace/interface name prefix")
    parser.add_argument("--time-limit", type=float, default=2700.0, help="give up after (2700 s)")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown or args.reps < 1 or args.rate <= 0:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; --reps, --rate must be > 0")
    if not args.no_mailha and not require_ipvs("bench_postfix_stop"):
        return 1
    return run_bounded("bench_postfix_stop", lambda: main_async(args), args.time_limit)


if __name__ == "__main__":
    sys.exit(main())
