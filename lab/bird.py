"""BIRD 2 in lab namespaces: a daemon per namespace, and the configs of the BGP mode's lab.

A :class:`BirdDaemon` runs ``bird -f`` (foreground, logging to a file) inside a
namespace with its own config, control socket and pid file under the node's directory,
and is queried through mailha's own control-socket client. The control socket is a
path, so it is reachable from any namespace.

:func:`router_conf` is the routers' side of the deploy guide (BGP with ``merge paths``
into the kernel, so the FIB holds one next hop per announcing director);
:func:`director_conf` the directors' (``include`` of mailha's file, a BGP protocol that
exports ``mailha_*`` only). Short timers, so the lab converges in seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path

from lab import netns
from lab.errors import NetnsError
from lab.netns import Process
from mailha.bgp.birdctl import BirdClient, BirdError, Reply
from mailha.resource import AsyncResource

__all__ = ["BirdDaemon", "director_conf", "fib_next_hops", "router_conf"]

_TIMERS = """    hold time 3; keepalive time 1; connect delay time 1; connect retry time 1;
    error wait time 1, 5; error forget time 10;"""


#: ``trace=True``: protocol state changes and events in the log, time-stamped (why a
#: session went down: "BFD session down", "Hold timer expired", ...).
_TRACE = 'debug protocols { states, events };\ntimeformat log "%T.%3f";'


def router_conf(router_id: str, asn: int, peers: Sequence[tuple[str, str, int]],
                *, bfd: bool = False, trace: bool = False) -> str:
    """A router learning routes from ``peers`` [(name, address, asn)] and installing
    every equal path in its kernel table (``merge paths``)."""
    lines = [
        "log stderr all;",
        *([_TRACE] if trace else []),
        f"router id {router_id};",
        "protocol device { scan time 1000; }",
        "protocol kernel { ipv4 { import none; export all; }; merge paths on; }",
    ]
    if bfd:
        lines.append("protocol bfd { interface \"*\" { min rx interval 100 ms; "
                     "min tx interval 100 ms; multiplier 3; }; }")
    for name, address, peer_as in peers:
        lines.append(
            f"protocol bgp {name} {{\n    local as {asn}; neighbor {address} as {peer_as};\n"
            f"{_TIMERS}\n" + ("    bfd on;\n" if bfd else "")
            + "    ipv4 { import all; export none; };\n}")
    return "\n".join(lines) + "\n"


def director_conf(router_id: str, asn: int, router: str, router_as: int, include: Path,
                  *, prefix: str = "mailha_", bfd: bool = False, trace: bool = False) -> str:
    """A director: mailha's include file, and one BGP session exporting its routes only."""
    lines = [
        "log stderr all;",
        *([_TRACE] if trace else []),
        f"router id {router_id};",
        "protocol device { scan time 1000; }",
        f'include "{include}";',
    ]
    if bfd:
        lines.append("protocol bfd { interface \"*\" { min rx interval 100 ms; "
                     "min tx interval 100 ms; multiplier 3; }; }")
    lines.append(
        f"protocol bgp uplink {{\n    local as {asn}; neighbor {router} as {router_as};\n"
        f"{_TIMERS}\n" + ("    bfd on;\n" if bfd else "")
        + f'    ipv4 {{ import none; export where proto ~ "{prefix}*"; }};\n}}')
    return "\n".join(lines) + "\n"


class BirdDaemon(AsyncResource):
    """``async with BirdDaemon(ns, workdir, conf):`` BIRD runs in ``ns`` and answers."""

    def __init__(self, netns_name: str, workdir: Path, conf: str) -> None:
        self.netns = netns_name
        self.workdir = workdir
        self.conf = conf
        self.conf_path = workdir / "bird.conf"
        self.socket = workdir / "bird.ctl"
        self.pidfile = workdir / "bird.pid"
        self.log_path = workdir / "bird.log"
        self.process: Process | None = None
        self.client = BirdClient(self.socket, timeout=10)

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        await self.stop()

    async def start(self, *, time_limit: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.conf)
        self.process = await netns.spawn(
            ["bird", "-f", "-c", str(self.conf_path), "-s", str(self.socket),
             "-P", str(self.pidfile)], netns=self.netns, log_path=self.log_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while True:
            try:
                await self.client.protocols()
                return
            except BirdError:
                if not self.process.running or loop.time() > deadline:
                    raise NetnsError("BIRD did not start", self.log_text()[-2000:]) from None
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        await self.client.close()
        if self.process is not None:
            await self.process.stop(time_limit=5.0)
            self.process = None

    def kill(self) -> None:
        """SIGKILL BIRD (its routes in the peers go when the session or BFD notices)."""
        if self.process is not None:
            self.process.kill()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def command(self, line: str) -> Reply:
        return await self.client.command(line)


async def fib_next_hops(netns_name: str, prefix: ipaddress.IPv4Network | str) -> set[str]:
    """The gateways of ``prefix`` in the namespace's kernel table (ECMP: several)."""
    result = await netns.ip("-4", "-j", "route", "show", str(prefix), netns=netns_name)
    routes = json.loads(result.stdout or "[]")
    hops: set[str] = set()
    for route in routes:
        if "gateway" in route:
            hops.add(route["gateway"])
        for hop in route.get("nexthops", []):
            if "gateway" in hop:
                hops.add(hop["gateway"])
    return hops
