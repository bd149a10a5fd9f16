"""A mailha cluster on a lab topology: configs written, ``mailha serve`` run per node.

Used by the integration tests, the benchmarks and ``mailha demo``. Each node gets a TOML
file generated from :class:`ClusterOptions` (the seed scenario by default: unicast VRRP,
VRID 173, VIP .37) and a ``python -m mailha serve`` process in its namespace, logging to
``<node_dir>/mailha.log``. Who is master is read from the kernel (the node whose own
interface holds the VIP), not from mailha's own account.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from lab.errors import NetnsError
from lab.netns import Process
from lab.postfix import master_pidfile
from lab.seedlab import postfix_dir
from lab.topology import SeedTopology
from mailha.importer.toml_out import InlineTable, dumps
from mailha.tomlfmt import TomlValue

__all__ = ["ClusterOptions", "MailhaCluster", "live_destinations", "node_config"]


@dataclass(frozen=True)
class ClusterOptions:
    """What the generated node configs say; defaults are the seed scenario, fixed."""

    version: int = 2
    advert_int: float = 1.0
    priorities: Mapping[str, int] = field(default_factory=lambda: {"n1": 150, "n2": 100})
    state: Mapping[str, str] = field(default_factory=dict)
    nopreempt: bool = False
    preempt_delay: float = 0.0
    # argv of a vrrp_script ("{node_dir}" is replaced per node); None: nothing tracked
    track_script: Sequence[str] | None = None
    track_weight: int = 0
    track_interval: float = 0.5
    track_fall: int = 1
    track_rise: int = 1
    ipvs: bool = False  # program VIP:25 over both nodes (all-in-one DR)
    lvs_sched: str = "rr"
    sched_flags: Sequence[str] = ()  # e.g. ("mh-fallback", "mh-port") with lvs_sched "mh"
    weights: Mapping[str, int] = field(default_factory=dict)  # real server weight (default 1)
    delay_loop: float = 1.0
    connect_timeout: float = 1.0
    retry: int = 1
    delay_before_retry: float = 0.2
    metrics_port: int = 9650
    metrics_on_node_address: bool = False  # listen on the node's address, not loopback
    garp_master_delay: float = 0.0
    multicast: bool = False  # adverts to 224.0.0.18 instead of unicast to the peer
    extra_global: Mapping[str, TomlValue] = field(default_factory=dict)
    extra_instance: Mapping[str, TomlValue] = field(default_factory=dict)
    #: min_ttl of each node's unicast_peer entry (255: the RFC's off-link protection).
    peer_min_ttl: int | None = None
    local_watch: bool = False  # each node watches its own lab Postfix master (pidfd)


def node_config(topo: SeedTopology, node: str, opts: ClusterOptions, peers: Sequence[str]) -> str:
    """The TOML text of one node's configuration."""
    iface = topo.iface(node)
    inst: dict[str, TomlValue] = {
        "state": opts.state.get(node, "BACKUP"),
        "interface": iface,
        "virtual_router_id": 173,
        "priority": opts.priorities.get(node, 100),
        "advert_int": opts.advert_int,
        "version": opts.version,
        "virtual_ipaddress": [str(topo.vip_interface)],
        "nopreempt": opts.nopreempt,
        "preempt_delay": opts.preempt_delay,
        "garp_master_delay": opts.garp_master_delay,
        **opts.extra_instance,
    }
    if not opts.multicast:
        inst["unicast_src_ip"] = str(topo.address(node))
        if opts.peer_min_ttl is None:
            inst["unicast_peer"] = [str(topo.address(p)) for p in peers]
        else:
            inst["unicast_peer"] = [{"address": str(topo.address(p)), "min_ttl": opts.peer_min_ttl}
                                    for p in peers]
    doc: dict[str, TomlValue] = {
        "global": {"router_id": node, **opts.extra_global},
        "metrics": {"listen": metrics_host(topo, node, opts), "port": opts.metrics_port},
        "control": {"socket": str(topo.node_dir(node) / "mailha.sock")},
    }
    if opts.track_script is not None:
        doc["vrrp_script"] = {
            "chk_postfix": {
                "script": [a.format(node_dir=topo.node_dir(node)) for a in opts.track_script],
                "interval": opts.track_interval,
                "timeout": max(opts.track_interval, 1.0),
                "weight": opts.track_weight,
                "rise": opts.track_rise,
                "fall": opts.track_fall,
            }
        }
        inst["track_script"] = ["chk_postfix"]
    doc["vrrp_instance"] = {"VI_postfix": inst}
    if opts.ipvs:
        real_servers: list[TomlValue] = []
        for n in topo.servers:
            rs: dict[str, TomlValue] = {
                "ip": str(topo.address(n)),
                "port": 25,
                "weight": opts.weights.get(n, 1),
            }
            if opts.local_watch:
                rs["local_watch"] = str(master_pidfile(postfix_dir(topo, n)))
            rs["SMTP_CHECK"] = [InlineTable(helo_name="mailha.check")]
            real_servers.append(rs)
        doc["virtual_server"] = [{
            "ip": str(topo.vip),
            "port": 25,
            "protocol": "TCP",
            "lvs_sched": opts.lvs_sched,
            **({"sched_flags": list(opts.sched_flags)} if opts.sched_flags else {}),
            "lvs_method": "DR",
            "vrrp_instance": "VI_postfix",
            "delay_loop": opts.delay_loop,
            "connect_timeout": opts.connect_timeout,
            "retry": opts.retry,
            "delay_before_retry": opts.delay_before_retry,
            "warmup": 0,
            "real_server": real_servers,
        }]
    return dumps(doc, header=[f"mailha lab node {node} ({topo.prefix})"])


def metrics_host(topo: SeedTopology, node: str, opts: ClusterOptions) -> str:
    return str(topo.address(node)) if opts.metrics_on_node_address else "127.0.0.1"


class MailhaCluster:
    """``mailha serve`` on every server node of ``topo`` (async context manager)."""

    def __init__(
        self,
        topo: SeedTopology,
        options: ClusterOptions | None = None,
        *,
        nodes: Sequence[str] | None = None,
        log_level: str = "info",
        python: str = sys.executable,
    ) -> None:
        self.topo = topo
        self.options = options or ClusterOptions()
        self.nodes = tuple(nodes if nodes is not None else topo.servers)
        if log_level not in ("debug", "info"):
            # start() waits for the daemon's INFO line "running with".
            raise ValueError(f"log_level must be debug or info, not {log_level!r}")
        self.log_level = log_level
        self.python = python
        self.processes: dict[str, Process] = {}

    def config_path(self, node: str) -> Path:
        return self.topo.node_dir(node) / "mailha.toml"

    def log_path(self, node: str) -> Path:
        return self.topo.node_dir(node) / "mailha.log"

    def write_configs(self, options: ClusterOptions | None = None) -> None:
        opts = options or self.options
        for node in self.nodes:
            peers = [n for n in self.topo.servers if n != node]
            self.config_path(node).write_text(node_config(self.topo, node, opts, peers))

    async def __aenter__(self) -> MailhaCluster:
        self.write_configs()
        try:
            for node in self.nodes:
                await self.start(node)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for node in list(self.processes):
            await self.stop(node)

    async def start(
        self, node: str, *, time_limit: float = 60.0, env: Mapping[str, str] | None = None
    ) -> None:
        """Start ``mailha serve`` on ``node`` and wait until it says it runs.

        ``env`` adds to the inherited environment (e.g. ``NOTIFY_SOCKET``).
        """
        log = self.log_path(node)
        offset = log.stat().st_size if log.exists() else 0
        proc = await self.topo.spawn(
            node,
            [self.python, "-m", "mailha", "serve", str(self.config_path(node)),
             "--log-level", self.log_level],
            log,
            env={**os.environ, **env} if env else None,
        )
        self.processes[node] = proc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while " running with " not in self._log_from(node, offset):
            if not proc.running:
                tail = self._log_from(node, offset)[-2000:] or "(it wrote nothing)"
                raise NetnsError("mailha_exited",
                                 f"{node}: exit {proc.returncode} ({' '.join(proc.argv)}): {tail}")
            if loop.time() > deadline:
                raise NetnsError("mailha_start", f"{node} did not start in {time_limit:g}s")
            await asyncio.sleep(0.05)

    def _log_from(self, node: str, offset: int) -> str:
        try:
            with self.log_path(node).open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    async def stop(self, node: str, *, sig: int = signal.SIGTERM, time_limit: float = 15.0) -> int:
        proc = self.processes.pop(node, None)
        if proc is None:
            return 0
        return await proc.stop(sig=sig, time_limit=time_limit)

    def kill(self, node: str) -> None:
        """SIGKILL: the daemon dies without releasing anything (a crash)."""
        proc = self.processes.pop(node, None)
        if proc is not None:
            proc.kill()

    async def reload(self, node: str) -> None:
        proc = self.processes[node]
        proc.send_signal(signal.SIGHUP)

    def log(self, node: str) -> str:
        return self._log_from(node, 0)

    async def masters(self) -> list[str]:
        """Nodes whose own interface holds the VIP (the VIP on ``lo`` does not count)."""
        return await self.topo.vip_masters()

    async def wait_master(self, node: str | None = None, *, time_limit: float = 20.0) -> str:
        """Wait until exactly one node (``node`` if given) is master; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while True:
            masters = await self.masters()
            if len(masters) == 1 and (node is None or masters[0] == node):
                return masters[0]
            if loop.time() > deadline:
                raise NetnsError(
                    "no_master", f"wanted {node or 'one master'}, have {masters} after "
                    f"{time_limit:g}s"
                )
            await asyncio.sleep(0.05)

    async def status(self, node: str) -> dict[str, Any]:
        result = await self.topo.exec(
            node,
            [self.python, "-m", "mailha", "status", "--json", "--socket",
             str(self.topo.node_dir(node) / "mailha.sock")],
            check=False,
        )
        return dict(json.loads(result.stdout or "{}"))

    async def metrics(self, node: str) -> str:
        """The node's /metrics text, fetched inside its namespace."""
        port = self.options.metrics_port
        host = metrics_host(self.topo, node, self.options)
        result = await self.topo.exec(
            node,
            [self.python, "-c",
             "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
             f"'http://{host}:{port}/metrics', timeout=5).read().decode())"],
        )
        return result.stdout

    def with_options(self, **changes: Any) -> ClusterOptions:
        return replace(self.options, **changes)


async def live_destinations(topo: SeedTopology, node: str) -> set[str]:
    """``ip:port`` of the weighted destinations in ``node``'s IPVS table (``ipvsadm -Ln``).

    The kernel's view, independent of what mailha says it programmed.
    """
    result = await topo.exec(node, ["ipvsadm", "-Ln"], time_limit=60.0)
    live = set()
    for line in result.stdout.splitlines():
        fields = line.split()
        # "  -> 10.12.49.35:25   Route   1   0   0"
        if len(fields) >= 4 and fields[0] == "->" and fields[3].isdigit() and int(fields[3]) > 0:
            live.add(fields[1])
    return live


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        if labels and not all(f'{k}="{v}"' in rest for k, v in labels.items()):
            continue
        total += float(value)
    return total

