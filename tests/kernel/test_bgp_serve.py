"""``mailha serve`` with ``announce = "bgp"`` against a BIRD router (needs ip_vs: the VM).

Namespaces on one bridge: a router ``rt`` (BIRD, BGP into its kernel table), a director
``d1`` (BIRD including mailha's file, and ``mailha serve``), a real server ``rs``
(smtp-sink, the VIP on ``lo`` for direct routing). What counts is the router's FIB:

* the VIP's route appears once the director is ready, and SMTP through it works;
* it is withdrawn when the real server's check fails, and comes back with it;
* ``mailha drain director`` withdraws it, ``undrain`` brings it back;
* SIGKILL of mailha withdraws it (the dead-man device: no mailha code runs); the IPVS
  service stays (a crash keeps the table) and the next start announces again;
* a clean stop withdraws it before IPVS is torn down (the log's order).

Bounds are the VM's (TCG, ~10x slower): generous, and the figures are printed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from lab import netns
from lab.bird import BirdDaemon, director_conf, fib_next_hops, router_conf
from lab.netns import Process
from lab.postfix import SmtpSink
from lab.topology import LabHost, Topology, TopologySpec

pytestmark = [pytest.mark.kernel, pytest.mark.root, pytest.mark.slow]

NET = "10.98.12"
VIP = "10.98.99.37"
D1 = f"{NET}.11"


@pytest.fixture
async def topo() -> AsyncIterator[Topology]:
    spec = TopologySpec("mhGk", (LabHost("rt", IPv4Interface(f"{NET}.1/24")),
                                 LabHost("d1", IPv4Interface(f"{D1}/24")),
                                 LabHost("rs", IPv4Interface(f"{NET}.35/24"))))
    async with Topology(spec) as t:
        yield t


def mailha_config(workdir: Path, bird: BirdDaemon) -> str:
    return f"""
[global]
router_id = "d1"
[metrics]
enabled = false
[control]
socket = "{workdir / 'mailha.sock'}"
[bgp]
bird_socket = "{bird.socket}"
include_file = "{workdir / 'mailha.conf'}"
reapply_interval = 2
[[virtual_server]]
ip = "{VIP}"
port = 25
lvs_sched = "rr"
lvs_method = "DR"
announce = "bgp"
delay_loop = 0.5
connect_timeout = 2
retry = 0
warmup = 0
[[virtual_server.real_server]]
ip = "{NET}.35"
[[virtual_server.real_server.SMTP_CHECK]]
helo_name = "d1.lab.test"
"""


async def until(cond: Callable[[], Awaitable[bool]], within: float, why: Callable[[], str]
                ) -> float:
    start = time.monotonic()
    while not await cond():
        assert time.monotonic() - start < within, why()
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def banner(topo: Topology) -> bytes:
    sock = topo.socket("rt")
    sock.setblocking(False)
    try:
        async with asyncio.timeout(10):
            await asyncio.get_running_loop().sock_connect(sock, (VIP, 25))
            reader, writer = await asyncio.open_connection(sock=sock)
            line = await reader.readline()
            writer.close()
            return line
    finally:
        sock.close()


async def test_serve_announces_while_ready_and_withdraws(topo: Topology) -> None:
    rt_dir, d1_dir, rs_dir = (topo.node_dir(n) for n in ("rt", "d1", "rs"))
    # the real server: direct routing, so the VIP on lo and no ARP for it
    await netns.ip("addr", "add", f"{VIP}/32", "dev", "lo", netns=topo.netns("rs"))
    topo.sysctl("rs", "net.ipv4.conf.all.arp_ignore", 1)
    topo.sysctl("rs", "net.ipv4.conf.all.arp_announce", 2)
    sink = SmtpSink(rs_dir / "sink.log", netns=topo.netns("rs"))
    await sink.start(time_limit=60)
    router = BirdDaemon(topo.netns("rt"), rt_dir / "bird",
                        router_conf(f"{NET}.1", 65000, [("d1", D1, 65001)]))
    include = d1_dir / "mailha.conf"
    include.touch()
    bird = BirdDaemon(topo.netns("d1"), d1_dir / "bird",
                      director_conf(D1, 65001, f"{NET}.1", 65000, include))
    config = d1_dir / "mailha.toml"
    config.write_text(mailha_config(d1_dir, bird))
    log = d1_dir / "mailha.log"
    await router.start(time_limit=120)
    await bird.start(time_limit=120)
    proc: Process | None = None

    async def start_mailha() -> Process:
        p = await netns.spawn([sys.executable, "-m", "mailha", "serve", str(config)],
                              netns=topo.netns("d1"), log_path=log)
        return p

    async def hops() -> set[str]:
        return await fib_next_hops(topo.netns("rt"), f"{VIP}/32")

    def why() -> str:
        return (f"mailha log:\n{log.read_text()[-3000:]}\nrouter:\n"
                f"{router.log_text()[-1500:]}")

    async def announced() -> bool:
        return await hops() == {D1}

    async def withdrawn() -> bool:
        return await hops() == set()

    async def mailha(*args: str) -> tuple[int, str]:
        result = await netns.run([sys.executable, "-m", "mailha", *args, "--socket",
                                  str(d1_dir / "mailha.sock")], netns=topo.netns("d1"),
                                 time_limit=120, check=False)
        return result.returncode, result.stdout + result.stderr

    try:
        await modprobe_tun()
        proc = await start_mailha()
        took = await until(announced, 180, why)
        print(f"\nannounced {took:.1f} s after `mailha serve` started (VM)")
        assert (await banner(topo)).startswith(b"220 ")
        code, out = await mailha("status", "--json")
        bgp = json.loads(out)["bgp"]
        assert bgp["bird"]["up"] and bgp["vips"][0]["announced"], bgp
        code, text = await mailha("status")
        assert "ANNOUNCED" in text and "BGP (through BIRD)" in text, text

        await sink.stop()
        took = await until(withdrawn, 60, why)
        print(f"real server's check failing: withdrawn {took:.1f} s after smtp-sink stopped")
        code, out = await mailha("status", "--json")
        assert "0 of 1 real servers up" in json.dumps(json.loads(out)["bgp"]), out
        await sink.start(time_limit=60)
        await until(announced, 60, why)

        code, out = await mailha("drain", "director")
        assert code == 0 and "VIPs withdrawn" in out, out
        took = await until(withdrawn, 30, why)
        print(f"drain director: withdrawn at the router {took:.2f} s after the command returned")
        code, out = await mailha("undrain", "director")
        assert code == 0, out
        await until(announced, 60, why)

        proc.kill()
        took = await until(withdrawn, 30, why)
        print(f"mailha SIGKILLed: withdrawn at the router in {took:.2f} s (VM)")
        ipvs = (await netns.run(["ipvsadm", "-Ln"], netns=topo.netns("d1"))).stdout
        assert VIP in ipvs, ipvs  # a crash keeps the table; only the route went
        await proc.stop(sig=signal.SIGKILL, time_limit=10)

        offset = log.stat().st_size
        proc = await start_mailha()
        await until(announced, 180, why)
        # SIGKILL left the protocol enabled in BIRD (only its route died with the device):
        # the new run disables it before it creates its device, then announces when ready
        assert "had 1 mailha protocol enabled at start" in log.read_text()[offset:]

        offset = log.stat().st_size
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait(120) == 0, why()
        await until(withdrawn, 10, why)
        text = log.read_text()[offset:]
        withdrew = text.index("withdrew the BGP announcements")
        deleted = text.index(f"ipvs: delete service TCP {VIP}:25")
        assert withdrew < deleted, text
        assert "Traceback" not in log.read_text(), why()
    finally:
        if proc is not None:
            await proc.stop(sig=signal.SIGKILL, time_limit=10)
        await bird.stop()
        await router.stop()
        await sink.stop()


async def modprobe_tun() -> None:
    """The dead-man device needs /dev/net/tun (module tun; the VM may not load it)."""
    await netns.run(["modprobe", "tun"], check=False)
    await netns.run(["sh", "-c", "[ -e /dev/net/tun ] || { mkdir -p /dev/net && "
                     "mknod /dev/net/tun c 10 200; }"])
