"""The demo (``scripts/demo``) end to end: run as the user runs it, read what it prints,
look around after.

The demo runs as a subprocess (``python -m lab.demo``, what ``scripts/demo`` runs), and is
judged by its ``SUMMARY`` line, its exit status and what it leaves on the machine: no
``mhdemo*`` namespace, no process running from the demo's lab directory, no directory.
The interrupted runs send SIGINT/SIGTERM while phase 1 is sending mail, when Postfix,
both mailha daemons and the client's sessions are all live.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest

from lab import netns
from lab.demo import PREFIX, DemoOutcome, demo_command, tally
from lab.postfix import ReceivedMessage

ROOT = Path(__file__).resolve().parents[2]
CLIENT = "10.12.49.10"
# Upper bounds only: a host run takes ~10 s, a run inside the test VM a few minutes.
RUN_LIMIT = 900.0


@dataclass(frozen=True)
class DemoRun:
    returncode: int
    output: str

    @property
    def summary(self) -> dict[str, str]:
        lines = [line for line in self.output.splitlines() if line.startswith("SUMMARY ")]
        assert len(lines) == 1, f"want one SUMMARY line:\n{self.output}"
        return dict(field.split("=", 1) for field in lines[0].split()[1:])

    def client_addresses(self) -> set[str]:
        """Every client address a node's Postfix reported in the phase tables."""
        found: set[str] = set()
        for seen in re.findall(r"client address seen: (.*)$", self.output, re.M):
            if seen.strip() != "-":
                found |= {part.split(" x")[0] for part in seen.split(", ")}
        return found


async def run_demo(
    *args: str, interrupt: signal.Signals | None = None, when: str = "[6/8]"
) -> DemoRun:
    """Run the demo to its end; with ``interrupt``, send it once ``when`` is printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab.demo", *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = b""
    try:
        async with asyncio.timeout(RUN_LIMIT):
            while chunk := await proc.stdout.read(4096):
                output += chunk
                if interrupt is not None and when.encode() in output:
                    proc.send_signal(interrupt)
                    interrupt = None
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return DemoRun(proc.returncode, output.decode(errors="replace"))


def leftovers() -> list[str]:
    """Anything of the demo's still on this machine: namespaces, processes, files."""
    left = [f"netns {name}" for name in netns.list_netns(PREFIX)]
    workdir = str(netns.work_root() / PREFIX)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if workdir in cmdline and int(pid) != os.getpid():
            left.append(f"process {pid}: {cmdline}")
    if Path(workdir).exists():
        left.append(f"directory {workdir}")
    return left


def assert_delivered(run: DemoRun, messages: int) -> dict[str, str]:
    assert run.returncode == 0, run.output
    s = run.summary
    assert int(s["sent"]) == int(s["received"]) == 2 * messages, run.output
    assert int(s["n1"]) + int(s["n2"]) == int(s["received"]) + int(s["duplicates"])
    assert s["abandoned"] == "0"
    assert s["vip_moved"] == "yes"
    assert s["master_before"] == "n1" and s["master_after"] == "n2"  # n1 has priority 150
    # The failed master's link is down: phase 2 can only have landed on the survivor.
    assert s["phase2_n1"] == "0" and int(s["phase2_n2"]) >= messages
    # Direct routing (and plain VRRP) keep the client's own address in Postfix's logs.
    assert run.client_addresses() == {CLIENT}
    assert f"cleanup: no {PREFIX}* namespace left" in run.output
    assert leftovers() == []
    return s


@pytest.mark.root
@pytest.mark.slow
async def test_demo_moves_the_vip_and_loses_nothing() -> None:
    run = await run_demo("--messages", "50")
    s = assert_delivered(run, 50)
    if s["ipvs"] == "no":
        assert "no IPVS (ip_vs): running VRRP-only active/passive" in run.output
        assert s["phase1_n1"] == "50" and s["phase1_n2"] == "0"  # all to the master


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.kernel
async def test_demo_balances_over_both_nodes_with_ipvs() -> None:
    run = await run_demo("--messages", "50")
    s = assert_delivered(run, 50)
    assert s["ipvs"] == "yes"
    assert int(s["phase1_n1"]) > 0 and int(s["phase1_n2"]) > 0, run.output
    assert "running VRRP-only" not in run.output


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
async def test_demo_interrupted_mid_run_leaves_nothing_behind(
    sig: signal.Signals, status: int
) -> None:
    # 5,000 messages keep phase 1 busy for seconds: the signal lands mid-send.
    run = await run_demo("--messages", "5000", interrupt=sig)
    assert run.returncode == status, run.output
    assert "[6/8] phase 1" in run.output
    assert f"interrupted by {sig.name}: everything was torn down" in run.output
    assert "SUMMARY" not in run.output
    assert "Traceback" not in run.output
    assert f"cleanup: no {PREFIX}* namespace left" in run.output
    assert leftovers() == []


# ------------------------------------------------------------- reporting (no root)


def _msg(qid: str, mid: str | None, client: str = CLIENT) -> ReceivedMessage:
    return ReceivedMessage(qid, client, mid, "load@lab.test")


def test_tally_counts_each_accepted_id_once_and_ignores_other_runs() -> None:
    logs: Mapping[str, list[ReceivedMessage]] = {
        "n1": [_msg("A1", "<a>"), _msg("A2", "<b>"), _msg("A3", "<other-run>")],
        # <b> arrived twice: a 250 lost on the way back made the client resend it.
        "n2": [_msg("B1", "<b>", "10.12.49.35"), _msg("B2", "<c>"), _msg("B3", None)],
    }
    phase = tally(["<a>", "<b>", "<c>", "<lost>"], logs)
    assert (phase.sent, phase.received, phase.duplicates, phase.missing) == (4, 3, 1, 1)
    assert phase.node("n1").received == 2
    assert phase.node("n1").clients == ((CLIENT, 2),)
    assert phase.node("n2").received == 2
    assert set(phase.node("n2").clients) == {(CLIENT, 1), ("10.12.49.35", 1)}


def test_summary_line_is_key_value_and_ok_needs_every_message() -> None:
    phase1 = tally(["<1>", "<2>"], {"n1": [_msg("Q1", "<1>")], "n2": [_msg("Q2", "<2>")]})
    phase2 = tally(["<3>"], {"n1": [], "n2": [_msg("Q3", "<3>")]})
    outcome = DemoOutcome(phase1, phase2, "n1", "n2", 3.456, ipvs=True)
    assert outcome.summary_line() == (
        "SUMMARY sent=3 received=3 n1=1 n2=2 vip_moved=yes master_before=n1"
        " master_after=n2 ipvs=yes phase1_n1=1 phase1_n2=1 phase2_n1=0 phase2_n2=1"
        " duplicates=0 abandoned=0 failover_s=3.46"
    )
    assert outcome.ok
    lossy = DemoOutcome(phase1, tally(["<3>", "<4>"], {"n1": [], "n2": []}), "n1", "n2",
                        1.0, ipvs=False)
    assert not lossy.ok and "sent=4 received=2" in lossy.summary_line()
    assert not DemoOutcome(phase1, phase2, "n1", "n1", 1.0, ipvs=False).ok


def test_demo_rejects_a_nonpositive_message_count_before_anything_else() -> None:
    out = StringIO()
    assert demo_command(messages=0, out=out) == 2
    assert "--messages must be at least 1" in out.getvalue()
