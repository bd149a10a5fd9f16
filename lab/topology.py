"""Lab topologies: nodes in network namespaces on one private bridge.

Every node is a namespace ``{prefix}{node}`` with one veth, ``{prefix}{node}``, whose
peer ``{prefix}{node}b`` is a port of bridge ``{prefix}br`` in a namespace of its own,
``{prefix}br``. The bridge lives in a dedicated namespace rather than the root one so
that nothing the lab does is visible on (or can leak onto) the host's network, and
veths are created directly inside their namespaces, so no lab name ever appears in the
root namespace, even for a moment. The seed addresses (10.12.49.0/24) exist only inside
these namespaces.

::

    async with SeedTopology("mhX") as topo:
        await topo.exec("cl", ["ping", "-c1", str(topo.address("n1"))])
        await topo.link_down("n1")
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import netns
from lab.errors import NetnsError
from lab.netns import CommandResult, InterfaceAddress, Process
from mailha.resource import AsyncResource

__all__ = ["SEED_SUBNET", "LabHost", "SeedTopology", "Topology", "TopologySpec", "seed_spec"]

SEED_SUBNET = "10.12.49.0/24"
"""The seed scenario's subnet: nodes .35 and .36, VIP .37; the lab's client is .10."""

_SEED_HOSTS = {"n1": 35, "n2": 36, "cl": 10}
_SEED_VIP_HOST = 37


@dataclass(frozen=True)
class LabHost:
    """A lab host: a short name (``n1``) and its address with prefix length."""

    name: str
    address: ipaddress.IPv4Interface


@dataclass(frozen=True)
class TopologySpec:
    """The shape of a lab: which nodes, which addresses, which name prefix."""

    prefix: str
    nodes: tuple[LabHost, ...]

    def __post_init__(self) -> None:
        netns.check_prefix(self.prefix)
        names = [n.name for n in self.nodes]
        if not names:
            raise NetnsError("invalid topology", "no nodes")
        if len(set(names)) != len(names):
            raise NetnsError("invalid topology", f"duplicate node names in {names}")
        networks = {n.address.network for n in self.nodes}
        if len(networks) != 1:
            raise NetnsError("invalid topology", f"nodes span several subnets: {networks}")
        if len({n.address.ip for n in self.nodes}) != len(names):
            raise NetnsError("invalid topology", "duplicate node addresses")
        for name in names:
            if name == "br" or not name.isalnum():
                raise NetnsError("invalid node name", repr(name))
            netns.check_ifname(self.bridge_port(name))

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.nodes[0].address.network

    @property
    def bridge_netns(self) -> str:
        return f"{self.prefix}br"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    def node(self, name: str) -> LabHost:
        for node in self.nodes:
            if node.name == name:
                return node
        raise NetnsError("no such node", f"{name!r} (have {[n.name for n in self.nodes]})")

    def netns(self, name: str) -> str:
        return f"{self.prefix}{self.node(name).name}"

    def iface(self, name: str) -> str:
        """The node's interface, inside the node's namespace."""
        return f"{self.prefix}{self.node(name).name}"

    def bridge_port(self, name: str) -> str:
        """The bridge side of the node's veth, inside the bridge namespace."""
        return f"{self.prefix}{name}b"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.bridge_netns, *(self.netns(n.name) for n in self.nodes))


def seed_spec(prefix: str, subnet: str = SEED_SUBNET) -> TopologySpec:
    """The seed scenario's hosts in ``subnet``: n1 (.35), n2 (.36) and client cl (.10)."""
    net = ipaddress.IPv4Network(subnet)
    if net.num_addresses < 64:
        raise NetnsError("invalid subnet", f"{subnet} is too small for hosts .35-.37")
    nodes = tuple(
        LabHost(name, ipaddress.IPv4Interface(f"{net.network_address + host}/{net.prefixlen}"))
        for name, host in _SEED_HOSTS.items()
    )
    return TopologySpec(prefix, nodes)


class Topology(AsyncResource):
    """A running topology (async context manager): built on enter, destroyed on exit.

    Teardown runs on normal exit, on exceptions and on cancellation (Ctrl-C under
    ``asyncio.run``): processes started with :meth:`spawn` are stopped, anything else
    still running inside the namespaces is killed, the namespaces (and with them every
    veth and the bridge) are deleted, and the working directory is removed unless
    ``keep_workdir``. If teardown is itself interrupted it finishes synchronously.
    Entering first removes leftovers of a crashed run with the same prefix.
    """

    def __init__(
        self,
        spec: TopologySpec,
        *,
        workdir: Path | None = None,
        keep_workdir: bool = False,
    ) -> None:
        self.spec = spec
        self.workdir = workdir if workdir is not None else netns.work_root() / spec.prefix
        self.keep_workdir = keep_workdir
        self._processes: list[Process] = []
        self._up = False
        self.setup_seconds: float | None = None
        self.teardown_seconds: float | None = None

    # -- names --------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return self.spec.prefix

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.spec.nodes)

    def netns(self, node: str) -> str:
        """Name of the node's network namespace."""
        return self.spec.netns(node)

    def iface(self, node: str) -> str:
        """Name of the node's interface (inside its namespace)."""
        return self.spec.iface(node)

    def address(self, node: str) -> ipaddress.IPv4Address:
        return self.spec.node(node).address.ip

    def interface(self, node: str) -> ipaddress.IPv4Interface:
        """The node's address with prefix length (``10.12.49.35/24``)."""
        return self.spec.node(node).address

    def node_dir(self, node: str) -> Path:
        """A per-node working directory (mode 0755, so Postfix daemons can traverse it)."""
        path = self.workdir / self.spec.node(node).name
        _mkdir(path)
        return path

    # -- lifecycle ----------------------------------------------------------------------

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        await self.close()

    async def start(self) -> None:
        """Build the topology (removing a crashed run's leftovers for this prefix first)."""
        started = time.monotonic()
        await netns.cleanup_stale(self.prefix)
        _mkdir(self.workdir)
        self._up = True
        try:
            await self._build()
        except BaseException:
            await self.close()
            raise
        self.setup_seconds = time.monotonic() - started

    async def _build(self) -> None:
        spec = self.spec
        await netns.add_netns(*spec.namespaces)
        br = spec.bridge_netns
        lines = [
            "link set lo up",
            f"link add {spec.bridge} type bridge forward_delay 0 stp_state 0",
            f"link set {spec.bridge} up",
        ]
        for node in spec.nodes:
            port, inner = spec.bridge_port(node.name), spec.iface(node.name)
            lines += [
                f"link add {port} type veth peer name {inner} netns {spec.netns(node.name)}",
                f"link set {port} master {spec.bridge}",
                f"link set {port} up",
            ]
        await netns.ip_batch(lines, netns=br)
        await asyncio.gather(
            *(
                netns.ip_batch(
                    [
                        "link set lo up",
                        f"addr add {node.address} dev {spec.iface(node.name)}",
                        f"link set {spec.iface(node.name)} up",
                    ],
                    netns=spec.netns(node.name),
                )
                for node in spec.nodes
            )
        )

    async def close(self) -> None:
        """Tear everything down; safe to call twice."""
        if not self._up:
            return
        started = time.monotonic()
        try:
            await asyncio.gather(
                *(p.stop(time_limit=5.0) for p in self._processes), return_exceptions=True
            )
            await netns.delete_netns(*self.spec.namespaces)
        except BaseException:
            for proc in self._processes:
                proc.kill()
            netns.delete_netns_sync(*self.spec.namespaces)
            raise
        finally:
            self._processes.clear()
            self._up = False
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.teardown_seconds = time.monotonic() - started

    # -- operations ---------------------------------------------------------------------

    async def exec(
        self,
        node: str,
        argv: Sequence[str],
        *,
        time_limit: float = 30.0,
        check: bool = True,
        input: bytes | None = None,
    ) -> CommandResult:
        """Run ``argv`` to completion in the node's namespace."""
        return await netns.run(
            argv, netns=self.netns(node), time_limit=time_limit, check=check, input=input
        )

    async def spawn(
        self, node: str, argv: Sequence[str], log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> Process:
        """Start a long-running ``argv`` in the node's namespace; stopped on teardown."""
        proc = await netns.spawn(argv, netns=self.netns(node), log_path=log_path, env=env)
        self._processes.append(proc)
        return proc

    async def link_down(self, node: str) -> None:
        """Set the node's own interface down: the node sees its link (and carrier) go."""
        await netns.ip("link", "set", self.iface(node), "down", netns=self.netns(node))

    async def link_up(self, node: str) -> None:
        """Bring the node's interface back up (its addresses come back with it)."""
        await netns.ip("link", "set", self.iface(node), "up", netns=self.netns(node))

    async def ping(
        self, node: str, target: str | ipaddress.IPv4Address, *, wait: float = 1.0
    ) -> bool:
        """True if one ICMP echo from ``node`` to ``target`` is answered within ``wait`` s."""
        return await netns.ping(self.netns(node), target, time_limit=wait)

    async def wait_ping(
        self, node: str, target: str | ipaddress.IPv4Address, *, time_limit: float = 10.0
    ) -> None:
        """Ping until ``target`` answers; raise NetnsError after ``time_limit`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while not await self.ping(node, target, wait=0.5):
            if loop.time() > deadline:
                raise NetnsError("unreachable", f"{target} from {node} after {time_limit:g}s")
            await asyncio.sleep(0.05)

    def sysctl(self, node: str, key: str, value: str | int) -> None:
        """Set a sysctl inside the node's namespace."""
        netns.sysctl(self.netns(node), key, value)

    def socket(
        self,
        node: str,
        family: socket.AddressFamily = socket.AF_INET,
        type: socket.SocketKind = socket.SOCK_STREAM,
    ) -> socket.socket:
        """A non-blocking socket that lives in the node's namespace."""
        return netns.socket_in(self.netns(node), family, type)

    async def addresses(self, node: str) -> list[InterfaceAddress]:
        return await netns.addresses(self.netns(node))

    async def holders(self, address: str | ipaddress.IPv4Address) -> list[str]:
        """The nodes that currently have ``address`` configured on any interface."""
        wanted = ipaddress.ip_address(str(address))
        found = await asyncio.gather(*(self.addresses(n) for n in self.nodes))
        return [
            n
            for n, addrs in zip(self.nodes, found, strict=True)
            if any(a.address == wanted for a in addrs)
        ]


class SeedTopology(Topology):
    """The seed scenario: ``n1`` (.35) and ``n2`` (.36) serve, ``cl`` (.10) is the client.

    ``vip`` is .37 of the subnet. The subnet is configurable; the default seed addresses
    exist only inside the lab's namespaces and never reach a real 10.12.49.0/24.
    """

    def __init__(
        self,
        prefix: str,
        *,
        subnet: str = SEED_SUBNET,
        workdir: Path | None = None,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(seed_spec(prefix, subnet), workdir=workdir, keep_workdir=keep_workdir)
        self.vip = self.spec.network.network_address + _SEED_VIP_HOST
        self.servers = ("n1", "n2")
        self.client = "cl"

    async def __aenter__(self) -> SeedTopology:
        await self.start()
        return self

    async def vip_masters(self) -> list[str]:
        """Server nodes whose own interface holds the VIP (the VIP on ``lo`` does not count).

        That is the VRRP master as the kernel sees it: in the all-in-one DR cluster every
        node holds the VIP on ``lo`` as well.
        """
        return [
            node
            for node in self.servers
            if any(a.address == self.vip and a.ifname == self.iface(node)
                   for a in await self.addresses(node))
        ]

    @property
    def vip_interface(self) -> ipaddress.IPv4Interface:
        """The VIP with the subnet's prefix length (``10.12.49.37/24``)."""
        return ipaddress.IPv4Interface(f"{self.vip}/{self.spec.network.prefixlen}")


def _mkdir(path: Path) -> None:
    """Create ``path`` and make it and its lab parents world-traversable (0755)."""
    path.mkdir(parents=True, exist_ok=True)
    root = netns.work_root()
    for p in (path, *path.parents):
        if p != root and root not in p.parents:
            break
        with contextlib.suppress(PermissionError):
            os.chmod(p, 0o755)
