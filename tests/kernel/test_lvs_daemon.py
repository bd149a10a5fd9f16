"""``mailha serve`` as a pure load balancer in a real kernel: checks drive the IPVS table.

One namespace holds the director (a ``mailha serve`` with virtual servers and no VRRP) and
four SMTP listeners (smtp-sink) on a dummy interface: three real servers and a sorry
server. What the kernel holds is read with ``ipvsadm -Ln`` (the independent view), never
from mailha. Covered: the configured table; a stopped listener leaving within the bound
the checker settings promise; inhibit_on_failure keeping it at weight 0; quorum with
hysteresis and the sorry server; quorum_up/down scripts; hand-made drift repaired and
counted; a weight edited by reload; adoption after a crash (no operation at all); and
withdrawal at stop, with and without lvs_flush_on_stop.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lab import netns
from lab.cluster import metric_value
from lab.postfix import SmtpSink

pytestmark = [pytest.mark.kernel, pytest.mark.root, pytest.mark.slow]

NS = "mhLd"
VIP, VIP_INHIBIT = "10.99.0.100", "10.99.0.101"
RS = ["10.99.0.1", "10.99.0.2", "10.99.0.3"]
SORRY = "10.99.0.9"
DELAY_LOOP, CONNECT_TIMEOUT, RETRY, DELAY_BEFORE_RETRY = 0.5, 1.0, 1, 0.2


def config(workdir: Path, *, flush_on_stop: bool, weight3: int = 1) -> str:
    marks = workdir / "quorum.log"
    rs = "\n".join(
        f"""
[[virtual_server.real_server]]
ip = "{ip}"
port = 25
weight = {weight3 if ip == RS[2] else 1}
[[virtual_server.real_server.SMTP_CHECK]]
helo_name = "director.lab.test"
""" for ip in RS)
    return f"""
[global]
router_id = "director"
lvs_flush_on_stop = {str(flush_on_stop).lower()}

[metrics]
port = 9651

[control]
socket = "{workdir / 'mailha.sock'}"

[[virtual_server]]
ip = "{VIP}"
port = 25
lvs_sched = "wrr"
lvs_method = "NAT"
quorum = 2
hysteresis = 1
quorum_up = "/bin/sh -c 'echo up >> {marks}'"
quorum_down = "/bin/sh -c 'echo down >> {marks}'"
sorry_server = {{ ip = "{SORRY}", port = 25 }}
delay_loop = {DELAY_LOOP}
connect_timeout = {CONNECT_TIMEOUT}
retry = {RETRY}
delay_before_retry = {DELAY_BEFORE_RETRY}
warmup = 0
{rs}

[[virtual_server]]
ip = "{VIP_INHIBIT}"
port = 25
lvs_sched = "rr"
lvs_method = "NAT"
inhibit_on_failure = true
delay_loop = {DELAY_LOOP}
connect_timeout = {CONNECT_TIMEOUT}
retry = {RETRY}
delay_before_retry = {DELAY_BEFORE_RETRY}
warmup = 0

[[virtual_server.real_server]]
ip = "{RS[0]}"
port = 25
[[virtual_server.real_server.TCP_CHECK]]
"""


async def ipvs_table() -> dict[str, dict[str, int]]:
    """``ipvsadm -Ln`` as {service: {destination: weight}} (the kernel's own account)."""
    out = (await netns.run(["ipvsadm", "-Ln"], netns=NS)).stdout
    table: dict[str, dict[str, int]] = {}
    current = None
    for line in out.splitlines():
        svc = re.match(r"(TCP|UDP|SCTP|FWM)\s+(\S+)", line)
        if svc:
            current = svc.group(2)
            table[current] = {}
            continue
        dest = re.match(r"\s+->\s+(\d+\.\d+\.\d+\.\d+:\d+)\s+\S+\s+(\d+)", line)
        if dest and current is not None:
            table[current][dest.group(1)] = int(dest.group(2))
    return table


async def wait_table(want: dict[str, dict[str, int]], limit: float) -> float:
    """Wait until the kernel's table equals ``want``; return how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen: dict[str, dict[str, int]] = {}
    while loop.time() - started < limit:
        seen = await ipvs_table()
        if seen == want:
            return loop.time() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"kernel table never became {want}; last seen {seen}")


def pool(*ips: str, weights: dict[str, int] | None = None) -> dict[str, int]:
    return {f"{ip}:25": (weights or {}).get(ip, 1) for ip in ips}


class Director:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: netns.Process | None = None
        self.config = workdir / "mailha.toml"
        self.log = workdir / "mailha.log"

    async def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = await netns.spawn(
            [sys.executable, "-m", "mailha", "serve", str(self.config)],
            netns=NS, log_path=self.log,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while " running with " not in self.log.read_text()[offset:]:
            assert self.proc.running, self.log.read_text()[-3000:]
            assert loop.time() < deadline, "mailha did not start"
            await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            await self.proc.stop(sig=sig, time_limit=30)
            self.proc = None

    async def metrics(self) -> str:
        result = await netns.run(
            [sys.executable, "-c", "import sys, urllib.request; sys.stdout.write(urllib.request"
             ".urlopen('http://127.0.0.1:9651/metrics', timeout=5).read().decode())"], netns=NS)
        return result.stdout


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[Path, dict[str, SmtpSink]]]:
    await netns.cleanup_stale(NS)
    await netns.add_netns(NS)
    sinks: dict[str, SmtpSink] = {}
    try:
        await netns.ip("link", "set", "lo", "up", netns=NS)
        await netns.ip("link", "add", "mhd0", "type", "dummy", netns=NS)
        await netns.ip("link", "set", "mhd0", "up", netns=NS)
        for ip in [*RS, SORRY]:
            await netns.ip("addr", "add", f"{ip}/24", "dev", "mhd0", netns=NS)
            sinks[ip] = SmtpSink(tmp_path / f"sink-{ip}.log", netns=NS, listen=f"{ip}:25")
            await sinks[ip].start(time_limit=60)
        yield tmp_path, sinks
    finally:
        for sink in sinks.values():
            await sink.stop()
        await netns.kill_netns_processes(NS)
        await netns.delete_netns(NS)


async def test_checks_drive_the_kernel_table(lab: tuple[Path, dict[str, SmtpSink]]) -> None:
    workdir, sinks = lab
    director = Director(workdir)
    director.config.write_text(config(workdir, flush_on_stop=False))
    # Worst case for a stopped server to leave: it fails right after a good check, then
    # retry+1 failures spaced by delay_before_retry, each refused at once (no timeout).
    bound = DELAY_LOOP + (RETRY + 1) * (DELAY_BEFORE_RETRY + CONNECT_TIMEOUT) + 3.0  # + VM slack
    try:
        await director.start()
        full = {f"{VIP}:25": pool(*RS), f"{VIP_INHIBIT}:25": pool(RS[0])}
        inhibited = {f"{VIP_INHIBIT}:25": pool(RS[0], weights={RS[0]: 0})}
        await wait_table(full, 30)

        await sinks[RS[0]].stop()
        took = await wait_table({f"{VIP}:25": pool(RS[1], RS[2]), **inhibited}, bound)
        print(f"stopped real server left the table after {took:.2f}s (bound {bound:.1f}s)")

        # Live weight 1 is inside the hysteresis band [quorum-h, quorum+h) = [1, 3): no change.
        await sinks[RS[1]].stop()
        await wait_table({f"{VIP}:25": pool(RS[2]), **inhibited}, bound)
        await asyncio.sleep(2)
        assert (await ipvs_table())[f"{VIP}:25"] == pool(RS[2])

        # Live weight 0: quorum lost, the sorry server replaces the pool.
        await sinks[RS[2]].stop()
        await wait_table({f"{VIP}:25": pool(SORRY), **inhibited}, bound)
        # One server back (live weight 1 < quorum + hysteresis = 3): still the sorry server.
        await sinks[RS[0]].start()
        await wait_table({f"{VIP}:25": pool(SORRY), f"{VIP_INHIBIT}:25": pool(RS[0])}, bound)
        await asyncio.sleep(2)
        assert (await ipvs_table())[f"{VIP}:25"] == pool(SORRY)
        # All back: quorum regained, the pool returns and the sorry server leaves.
        await sinks[RS[1]].start()
        await sinks[RS[2]].start()
        await wait_table(full, bound)
        # quorum_up runs in the background once the pool is back: wait for its mark (the
        # table can converge before the script's process has started, in the VM).
        marks: list[str] = []
        for _ in range(300):  # 30 s at most
            marks = (workdir / "quorum.log").read_text().split()
            if len(marks) >= 2:
                break
            await asyncio.sleep(0.1)
        assert marks == ["down", "up"], marks

        # Drift: an operator flushes the table; the periodic re-sync repairs it and counts.
        await netns.run(["ipvsadm", "-C"], netns=NS)
        await wait_table(full, 20)
        assert metric_value(await director.metrics(), "mailha_reconcile_drift_repairs_total") >= 1

        # A weight edited by reload: one in-place edit, nothing else touched.
        director.config.write_text(config(workdir, flush_on_stop=False, weight3=5))
        assert director.proc is not None
        director.proc.send_signal(signal.SIGHUP)
        await wait_table({f"{VIP}:25": pool(*RS, weights={RS[2]: 5}),
                          f"{VIP_INHIBIT}:25": pool(RS[0])}, 20)

        # A crash leaves the table; the next start adopts it without a single operation.
        await director.stop(signal.SIGKILL)
        await director.start()
        await asyncio.sleep(3)
        metrics = await director.metrics()
        assert metric_value(metrics, "mailha_reconcile_operations_total") == 0, metrics
        assert await ipvs_table() == {f"{VIP}:25": pool(*RS, weights={RS[2]: 5}),
                                      f"{VIP_INHIBIT}:25": pool(RS[0])}

        # Stop withdraws our services and leaves a foreign one alone...
        await netns.run(["ipvsadm", "-A", "-t", "10.99.0.200:80", "-s", "rr"], netns=NS)
        await director.stop()
        assert await ipvs_table() == {"10.99.0.200:80": {}}
        # ... unless lvs_flush_on_stop, which flushes everything (keepalived's meaning).
        director.config.write_text(config(workdir, flush_on_stop=True))
        await director.start()
        await wait_table({f"{VIP}:25": pool(*RS), f"{VIP_INHIBIT}:25": pool(RS[0]),
                          "10.99.0.200:80": {}}, 30)
        await director.stop()
        assert await ipvs_table() == {}
        assert "Traceback" not in director.log.read_text()
    finally:
        await director.stop(signal.SIGKILL)


async def mailha_cli(*args: str) -> tuple[int, str, str]:
    result = await netns.run([sys.executable, "-m", "mailha", *args], netns=NS, check=False,
                             time_limit=90)
    return result.returncode, result.stdout, result.stderr


async def test_drain_sets_weight_zero_survives_reload_and_undrains(
    lab: tuple[Path, dict[str, SmtpSink]],
) -> None:
    workdir, _ = lab
    director = Director(workdir)
    director.config.write_text(config(workdir, flush_on_stop=False))
    sock = str(workdir / "mailha.sock")
    full = {f"{VIP}:25": pool(*RS), f"{VIP_INHIBIT}:25": pool(RS[0])}
    try:
        await director.start()
        await wait_table(full, 30)
        code, out, err = await mailha_cli("drain", "--wait", "5", f"{RS[2]}:25", "--socket", sock)
        assert code == 0, err
        assert f"drained {RS[2]}:25; no active session left" in out
        await wait_table({**full, f"{VIP}:25": pool(*RS, weights={RS[2]: 0})}, 10)
        assert metric_value(await director.metrics(), "mailha_real_server_drained",
                            {"real_server": f"{RS[2]}:25"}) == 1
        code, out, _ = await mailha_cli("status", "--socket", sock)
        assert "DRAINED" in out

        # A reload that changes the drained server's weight keeps the drain.
        director.config.write_text(config(workdir, flush_on_stop=False, weight3=5))
        assert director.proc is not None
        director.proc.send_signal(signal.SIGHUP)
        await wait_table({**full, f"{VIP}:25": pool(*RS, weights={RS[2]: 0})}, 10)
        await asyncio.sleep(1)
        assert (await ipvs_table())[f"{VIP}:25"] == pool(*RS, weights={RS[2]: 0})

        code, out, err = await mailha_cli("undrain", RS[2], "--socket", sock)
        assert code == 0, err
        await wait_table({**full, f"{VIP}:25": pool(*RS, weights={RS[2]: 5})}, 10)
        # A target no real server matches is an error that says so.
        code, _, err = await mailha_cli("drain", "10.99.0.77", "--socket", sock)
        assert code == 1 and "no real server" in err
    finally:
        await director.stop(signal.SIGKILL)
