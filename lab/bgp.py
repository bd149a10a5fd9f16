"""The scale-out lab of issue 12: N active directors announced by BGP, ECMP at a router.

::

      client cl (10.12.60.100-.149: 50 source addresses)
         | 10.12.60.0/24
      router rt (.1 both sides): BIRD, eBGP to each director, BFD 100 ms x 3,
         |                      merge paths -> one ECMP route, L4 multipath hash
         | 10.12.50.0/24, bridge {prefix}br (a switch in a namespace of its own)
      +--+-----------+-----------+-----------+-----------+
      d1 .11        d2 .12      r1 .21      r2 .22      r3 .23
      BIRD (+mailha) BIRD (+mailha)  smtp-sink on every real server

      VIP 10.12.49.37 on lo of the directors and the real servers; routed by the router
      to whichever directors announce it (BGP, next hop = the director's own address).

Forwarding method: **direct routing (DR)**. The directors are not on the clients' path
back: a real server answers the client through its default gateway, the router, never
through a director. DR needs nothing on the way back (the real server already holds the
VIP, on ``lo`` with ``arp_ignore=1``/``arp_announce=2``), only one L2 segment between
directors and real servers, which the server LAN is. NAT cannot work with several
directors: the replies would have to come back through the director that translated the
request, but a real server has one default gateway, and after an ECMP rehash the flow's
director changes. TUN (IPIP) also works without a shared segment (real servers in other
subnets, the issue's ``ipip``/``gue`` note) at the cost of a tunnel device on every real
server; it is not needed here. The router sees the request arrive on the client side and
the answer (source VIP) on the LAN side, where its route to the VIP points too, so
strict reverse-path filtering on the router still passes.

Why the bridge: the router reaches both directors through one interface, as through a
switch. A director's "cut link" (its bridge port down) then leaves the router's own link
up: only BFD can tell the router, which is what the acceptance test measures.

Two ways to announce: ``announce="manual"`` writes the include file in mailha's format
itself, makes a (persistent) ``mailha-bgp`` tun device in each director and programs
IPVS there with ``ipvsadm`` (the plumbing check, no mailha); ``announce="mailha"``
leaves the include file, the device, the VIP on ``lo`` and IPVS to ``mailha serve`` with
``announce = "bgp"`` (:meth:`BgpLab.start_mailha`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import netns
from lab.bird import BirdDaemon, director_conf, fib_next_hops, router_conf
from lab.errors import NetnsError
from lab.netns import Process
from lab.postfix import SmtpSink
from lab.routewatch import RouteWatcher
from lab.topology import LabHost, Topology, TopologySpec
from mailha.bgp.birdctl import ProtocolRow
from mailha.bgp.include import protocol_name
from mailha.bgp.include import render as render_include
from mailha.control import request as control_request
from mailha.importer.toml_out import InlineTable, dumps
from mailha.resource import AsyncResource
from mailha.tomlfmt import TomlValue

__all__ = [
    "WITHDRAWAL_CAUSES",
    "BgpLab",
    "BgpLabOptions",
    "BgpSpec",
    "BgpTopology",
    "bgp_spec",
    "check_port",
    "director_mailha_config",
    "ipvs_rules",
    "parse_connection_clients",
]

IPv4 = ipaddress.IPv4Address

VIP = IPv4("10.12.49.37")
LAN = ipaddress.IPv4Network("10.12.50.0/24")
CLIENT_NET = ipaddress.IPv4Network("10.12.60.0/24")
ROUTER = "rt"
DIRECTORS = ("d1", "d2")
REAL_SERVERS = ("r1", "r2", "r3")
CLIENT = "cl"
CLIENT_SOURCES = 50
ROUTER_AS, DIRECTOR_AS = 65000, 65001
PROTOCOL_PREFIX = "mailha_"
DEADMAN_DEVICE = "mailha-bgp"
SMTP_PORT = 25

_LAN_HOSTS = {ROUTER: 1, "d1": 11, "d2": 12, "r1": 21, "r2": 22, "r3": 23}
_CLIENT_FIRST = 100


@dataclass(frozen=True)
class BgpSpec(TopologySpec):
    """The LAN nodes (on the bridge) plus the client, on a subnet of its own behind the
    router, reached through a veth pair ``{prefix}rtc`` -- ``{prefix}cl``."""

    client: LabHost

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.client.address.network == self.network:
            raise NetnsError("invalid topology", "the client must be behind the router")
        netns.check_ifname(self.router_client_iface)

    def node(self, name: str) -> LabHost:
        return self.client if name == self.client.name else super().node(name)

    @property
    def router_client_iface(self) -> str:
        return f"{self.prefix}{ROUTER}c"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (*super().namespaces, self.netns(self.client.name))


def bgp_spec(prefix: str) -> BgpSpec:
    """The lab's hosts: router, two directors and three real servers on the LAN, and the
    client (its first address) behind the router."""
    nodes = tuple(
        LabHost(name, ipaddress.IPv4Interface(f"{LAN.network_address + host}/{LAN.prefixlen}"))
        for name, host in _LAN_HOSTS.items()
    )
    client = LabHost(CLIENT, ipaddress.IPv4Interface(
        f"{CLIENT_NET.network_address + _CLIENT_FIRST}/{CLIENT_NET.prefixlen}"))
    return BgpSpec(prefix, nodes, client)


def _router_on(net: ipaddress.IPv4Network) -> IPv4:
    return net.network_address + 1


class BgpTopology(Topology):
    """The namespaces, links, addresses, routes and sysctls of the lab (no daemons)."""

    spec: BgpSpec

    def __init__(self, prefix: str, *, keep_workdir: bool = False) -> None:
        super().__init__(bgp_spec(prefix), keep_workdir=keep_workdir)
        self.sources = tuple(CLIENT_NET.network_address + _CLIENT_FIRST + i
                             for i in range(CLIENT_SOURCES))

    async def _build(self) -> None:
        await super()._build()
        spec = self.spec
        rtc, cl_if = spec.router_client_iface, spec.iface(CLIENT)
        await netns.ip_batch([
            f"link add {rtc} type veth peer name {cl_if} netns {self.netns(CLIENT)}",
            f"addr add {_router_on(CLIENT_NET)}/{CLIENT_NET.prefixlen} dev {rtc}",
            f"link set {rtc} up",
        ], netns=self.netns(ROUTER))
        gateway_lan = _router_on(LAN)
        client_lines = ["link set lo up"]
        client_lines += [f"addr add {a}/{CLIENT_NET.prefixlen} dev {cl_if}"
                         for a in self.sources[1:]]  # the first is the node's own
        client_lines += [f"addr add {spec.client.address} dev {cl_if}",
                         f"link set {cl_if} up",
                         f"route add default via {_router_on(CLIENT_NET)}"]
        jobs = [netns.ip_batch(client_lines, netns=self.netns(CLIENT))]
        for node in (*DIRECTORS, *REAL_SERVERS):
            lines = [f"route add default via {gateway_lan}"]
            if node in REAL_SERVERS:
                lines.append(f"addr add {VIP}/32 dev lo")
            jobs.append(netns.ip_batch(lines, netns=self.netns(node)))
        await asyncio.gather(*jobs)
        for key, value in (("net.ipv4.ip_forward", 1),
                           ("net.ipv4.fib_multipath_hash_policy", 1),
                           ("net.ipv4.conf.all.rp_filter", 0)):
            self.sysctl(ROUTER, key, value)
        for node in REAL_SERVERS:
            self.dr_arp_sysctls(node)

    def dr_arp_sysctls(self, node: str) -> None:
        """A host that holds the VIP on ``lo`` must not answer ARP for it on the LAN."""
        for scope in ("all", self.iface(node)):
            self.sysctl(node, f"net/ipv4/conf/{scope}/arp_ignore", 1)
            self.sysctl(node, f"net/ipv4/conf/{scope}/arp_announce", 2)


# ----------------------------------------------------------------------- pure parts


def ipvs_rules(vip: IPv4, real_servers: list[IPv4], *, sched: str, flags: tuple[str, ...]) -> str:
    """``ipvsadm -R`` input for the VIP's SMTP service over ``real_servers`` (DR), in the
    given order: with ``mh`` every director must add them in the same order."""
    head = f"-A -t {vip}:{SMTP_PORT} -s {sched}" + (f" -b {','.join(flags)}" if flags else "")
    rows = [f"-a -t {vip}:{SMTP_PORT} -r {rs}:{SMTP_PORT} -g -w 1" for rs in real_servers]
    return "\n".join([head, *rows]) + "\n"


#: The ways a director stops being announced that the issue's tests 3 and 4 time.
WITHDRAWAL_CAUSES = ("unready", "drained", "link cut", "BIRD killed", "mailha killed")
#: Each director checks the real servers on a port of its own (d1 2501, d2 2502), served
#: by an smtp-sink per real server and director beside the one on port 25 that takes the
#: traffic: stopping a director's check listeners fails its checks, in-process and at
#: once, while the real servers keep serving (a firewall rule would need an ``nft``
#: process between the time stamp and the event: seconds in a loaded VM).
CHECK_PORT_BASE = 2500


def check_port(director: str) -> int:
    return CHECK_PORT_BASE + DIRECTORS.index(director) + 1


def parse_connection_clients(text: str, service: str) -> frozenset[tuple[IPv4, int]]:
    """The client ends (address, port) of ``service``'s entries in ``ipvsadm -Lnc``
    output (``TCP 01:59  FIN_WAIT  10.12.60.100:51234 10.12.49.37:25  10.12.50.21:25``)."""
    clients: set[tuple[IPv4, int]] = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[0] in ("TCP", "UDP", "SCTP") and fields[4] == service:
            address, _, port = fields[3].rpartition(":")
            clients.add((IPv4(address), int(port)))
    return frozenset(clients)


@dataclass(frozen=True)
class BgpLabOptions:
    """How the lab announces and what mailha's director configs say."""

    announce: str = "manual"  # "manual" (the lab itself) or "mailha" (mailha serve)
    ipvs: bool = True  # manual: program IPVS with ipvsadm (False: BGP plumbing only)
    lvs_sched: str = "mh"
    sched_flags: tuple[str, ...] = ("mh-port", "mh-fallback")
    #: The directors run with net.ipv4.vs.sloppy_tcp=1 (a flow rehashed to the other
    #: director mid-session is picked up there): see BgpLab.ensure_sloppy_tcp.
    sloppy_tcp: bool = True
    delay_loop: float = 0.5
    connect_timeout: float = 1.0
    retry: int = 0
    delay_before_retry: float = 0.2
    min_healthy: int = 1
    reapply_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.announce not in ("manual", "mailha"):
            raise NetnsError("invalid option", f"announce={self.announce!r} (manual|mailha)")


def director_mailha_config(
    topo: BgpTopology, director: str, opts: BgpLabOptions, *, bird_socket: Path,
    include_file: Path,
) -> str:
    """The TOML of ``mailha serve`` on one director: the VIP's SMTP service announced by
    BGP over the three real servers, direct routing, Maglev hashing."""
    workdir = topo.node_dir(director)
    check = InlineTable(helo_name=f"{director}.check.lab.test",
                        connect_port=check_port(director))
    real_servers: list[TomlValue] = [
        {"ip": str(topo.address(rs)), "port": SMTP_PORT, "weight": 1, "SMTP_CHECK": [check]}
        for rs in REAL_SERVERS
    ]
    service: dict[str, TomlValue] = {
        "ip": str(VIP),
        "port": SMTP_PORT,
        "protocol": "TCP",
        "announce": "bgp",
        "min_healthy": opts.min_healthy,
        "lvs_sched": opts.lvs_sched,
        "lvs_method": "DR",
        "delay_loop": opts.delay_loop,
        "connect_timeout": opts.connect_timeout,
        "retry": opts.retry,
        "delay_before_retry": opts.delay_before_retry,
        "warmup": 0,
        "real_server": real_servers,
    }
    if opts.sched_flags:
        service["sched_flags"] = list(opts.sched_flags)
    doc: dict[str, TomlValue] = {
        "global": {"router_id": director},
        "metrics": {"listen": "127.0.0.1", "port": 9650},
        "control": {"socket": str(workdir / "mailha.sock")},
        "bgp": {
            "bird_socket": str(bird_socket),
            "include_file": str(include_file),
            "protocol_prefix": PROTOCOL_PREFIX,
            "reapply_interval": opts.reapply_interval,
            "deadman_interface": DEADMAN_DEVICE,
        },
        "virtual_server": [service],
    }
    return dumps(doc, header=[f"mailha scale-out lab director {director} ({topo.prefix})"])


# ------------------------------------------------------------------------- the lab


class BgpLab(AsyncResource):
    """The whole lab (async context manager): topology, three BIRDs, three smtp-sinks,
    and in manual mode the announcement and IPVS by hand. mailha is started per director
    with :meth:`start_mailha`."""

    def __init__(
        self, prefix: str, options: BgpLabOptions | None = None, *,
        python: str = sys.executable, keep_workdir: bool = False,
    ) -> None:
        self.options = options or BgpLabOptions()
        self.topo = BgpTopology(prefix, keep_workdir=keep_workdir)
        self.python = python
        self.vip = VIP
        self.directors = DIRECTORS
        self.real_servers = REAL_SERVERS
        self.birds: dict[str, BirdDaemon] = {}
        self.sinks: dict[str, SmtpSink] = {}
        #: (director, real server): the listener of that director's checks.
        self.check_sinks: dict[tuple[str, str], SmtpSink] = {}
        self.mailha: dict[str, Process] = {}
        #: When each director's mailha had imported its modules (``time.monotonic()``).
        self.imported_at: dict[str, float] = {}

    # -- names ------------------------------------------------------------------------

    @property
    def sources(self) -> tuple[IPv4, ...]:
        """The client's 50 source addresses."""
        return self.topo.sources

    @property
    def client_netns(self) -> str:
        return self.topo.netns(CLIENT)

    def address(self, node: str) -> IPv4:
        return self.topo.address(node)

    def include_file(self, director: str) -> Path:
        return self.topo.node_dir(director) / "mailha-bird.conf"

    def protocol(self) -> str:
        """The static protocol that announces the VIP (mailha's naming)."""
        return protocol_name(PROTOCOL_PREFIX, VIP)

    def mailha_log(self, director: str) -> Path:
        return self.topo.node_dir(director) / "mailha.log"

    def control_socket(self, director: str) -> Path:
        return self.topo.node_dir(director) / "mailha.sock"

    def watch_fib(self) -> RouteWatcher:
        """A watcher of the VIP's route in the router's FIB (use with ``async with``)."""
        return RouteWatcher(self.topo.netns(ROUTER), VIP)

    # -- lifecycle ----------------------------------------------------------------------

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        await self.close()

    async def start(self) -> None:
        await self.topo.start()
        try:
            await self._start_daemons()
        except BaseException:
            await self.close()
            raise

    async def _start_daemons(self) -> None:
        topo, opts = self.topo, self.options
        # /dev/net/tun exists only once the module is in (the VM has no static device
        # nodes that would load it on first open): the dead-man device needs it.
        await netns.run(["modprobe", "tun"], check=False)
        # BGP to every director with BFD (100 ms x 3), every equal path merged into the
        # kernel (merge paths): the router side of the deploy guide.
        self.birds[ROUTER] = BirdDaemon(topo.netns(ROUTER), topo.node_dir(ROUTER) / "bird",
                                        router_conf(
            str(self.address(ROUTER)), ROUTER_AS,
            [(d, str(self.address(d)), DIRECTOR_AS) for d in DIRECTORS], bfd=True,
            trace=True))
        for d in DIRECTORS:
            include = self.include_file(d)
            if opts.announce == "manual":
                include.write_text(render_include([VIP], prefix=PROTOCOL_PREFIX,
                                                  interface=DEADMAN_DEVICE, source=include))
                await self._manual_director(d)
            else:
                include.write_text("")  # BIRD refuses a missing include; mailha fills it
            self.birds[d] = BirdDaemon(topo.netns(d), topo.node_dir(d) / "bird", director_conf(
                str(self.address(d)), DIRECTOR_AS, str(self.address(ROUTER)), ROUTER_AS,
                include, prefix=PROTOCOL_PREFIX, bfd=True, trace=True))
        for rs in REAL_SERVERS:
            self.sinks[rs] = SmtpSink(topo.node_dir(rs) / "sink.log", netns=topo.netns(rs),
                                      hostname=f"{rs}.lab.test", backlog=512)
            if opts.announce == "mailha":
                for d in DIRECTORS:
                    self.check_sinks[d, rs] = SmtpSink(
                        topo.node_dir(rs) / f"check-{d}.log", netns=topo.netns(rs),
                        listen=f"0.0.0.0:{check_port(d)}", hostname=f"{rs}.lab.test")
        await asyncio.gather(*(self._start_bird(n) for n in self.birds),
                             *(s.start() for s in self.sinks.values()),
                             *(s.start() for s in self.check_sinks.values()))
        await self.wait_established(DIRECTORS)

    async def _manual_director(self, d: str) -> None:
        topo = self.topo
        await netns.ip_batch([f"tuntap add dev {DEADMAN_DEVICE} mode tun",
                              f"link set {DEADMAN_DEVICE} up",
                              f"addr add {VIP}/32 dev lo"], netns=topo.netns(d))
        topo.dr_arp_sysctls(d)
        if self.options.ipvs:
            await netns.run(["modprobe", "ip_vs_mh"], check=False)
            rules = ipvs_rules(VIP, [self.address(rs) for rs in REAL_SERVERS],
                               sched=self.options.lvs_sched, flags=self.options.sched_flags)
            await topo.exec(d, ["ipvsadm", "-R"], input=rules.encode(), time_limit=60)
        self.ensure_sloppy_tcp(d)

    def ensure_sloppy_tcp(self, d: str) -> str:
        """See that ``net.ipv4.vs.sloppy_tcp`` is 1 in director ``d`` (if the option asks
        for it) and say who set it: with mailha, mailha (``lvs_sloppy_tcp``, on by
        default for ``mh`` services; only read here, a 0 is an error); by hand, the lab."""
        if not self.options.sloppy_tcp:
            return "nobody"
        ns = self.topo.netns(d)
        if self.options.announce == "mailha":
            with netns.entered(ns):
                value = Path("/proc/sys/net/ipv4/vs/sloppy_tcp").read_text().strip()
            if value != "1":
                raise NetnsError("sloppy_tcp not set by mailha", f"{d}: {value}")
            return "mailha"
        netns.sysctl(ns, "net.ipv4.vs.sloppy_tcp", 1)
        return "lab"

    async def close(self) -> None:
        try:
            for d in list(self.mailha):
                await self.stop_mailha(d)
            await asyncio.gather(*(s.stop() for s in self.sinks.values()),
                                 *(s.stop() for s in self.check_sinks.values()),
                                 *(b.stop() for b in self.birds.values()),
                                 return_exceptions=True)
        finally:
            await self.topo.close()

    # -- BGP ----------------------------------------------------------------------------

    async def router_sessions(self) -> dict[str, ProtocolRow]:
        """The router's BGP protocols (one per director, named after it)."""
        rows = await self.birds[ROUTER].client.protocols()
        return {row.name: row for row in rows if row.proto == "BGP"}

    async def wait_established(self, directors: tuple[str, ...], *,
                               time_limit: float = 60.0) -> None:
        """Wait until the router's sessions to ``directors`` are Established."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while True:
            rows = await self.router_sessions()
            if all(d in rows and rows[d].up for d in directors):
                return
            if loop.time() > deadline:
                raise NetnsError("BGP sessions not established", "; ".join(
                    f"{r.name} {r.state} {r.info}" for r in rows.values()))
            await asyncio.sleep(0.1)

    async def announce(self, director: str, on: bool) -> None:
        """Manual mode: enable (announce) or disable (withdraw) the VIP's static protocol
        in the director's BIRD, as mailha would."""
        client = self.birds[director].client
        await (client.enable if on else client.disable)(self.protocol())

    async def fib_nexthops(self) -> frozenset[IPv4]:
        """The router's next hops for the VIP, read with ``ip -j route`` (a second view,
        independent of :class:`RouteWatcher`)."""
        hops = await fib_next_hops(self.topo.netns(ROUTER), f"{VIP}/32")
        return frozenset(IPv4(h) for h in hops)

    # -- faults -------------------------------------------------------------------------

    def cut_link(self, director: str, up: bool = False) -> None:
        """Set the director's switch port down (``up=False``) or up, in-process: the
        director loses carrier, the router's own link stays up (only BFD can tell)."""
        netns.set_link_up(self.topo.spec.bridge_netns, self.topo.spec.bridge_port(director), up)

    def kill_bird(self, director: str) -> None:
        self.birds[director].kill()

    async def _start_bird(self, node: str) -> None:
        """Start a node's BIRD at nice -10: BFD at 100 ms x 3 declares a peer dead after
        300 ms without its packets, and a BIRD that waits that long for a CPU behind
        mailha's checks and the load (the emulated VM, or any CPU-bound host) takes its
        own sessions down. Routers run BFD ahead of everything else for that reason."""
        bird = self.birds[node]
        await bird.start()
        assert bird.process is not None
        os.setpriority(os.PRIO_PROCESS, bird.process.pid, -10)

    async def restart_bird(self, director: str) -> None:
        await self.birds[director].stop()
        await self._start_bird(director)

    async def withdraw(self, director: str, cause: str) -> None:
        """Make ``director`` stop being announced, in one of the issue's ways
        (:data:`WITHDRAWAL_CAUSES`); the caller stamps the time just before. Each is
        caused in-process (a signal, an ioctl, the control socket), no process start in
        between: ``unready`` stops the director's check listeners (:func:`check_port`),
        so its checks of all three real servers are refused."""
        if cause == "unready":  # SIGTERM to its check listeners, sent before any await
            await asyncio.gather(*(self.check_sinks[director, rs].stop()
                                   for rs in REAL_SERVERS))
        elif cause == "drained":
            reply = await self.control(director, "drain", target="director", wait=0)
            if not reply.get("ok"):
                raise NetnsError("drain refused", f"{director}: {reply}")
        elif cause == "link cut":
            self.cut_link(director)
        elif cause == "BIRD killed":
            self.kill_bird(director)
        elif cause == "mailha killed":
            self.kill_mailha(director)
        else:
            raise NetnsError("unknown withdrawal cause", f"{cause!r} (one of "
                             f"{', '.join(WITHDRAWAL_CAUSES)})")

    async def restore(self, director: str, cause: str) -> None:
        """Undo :meth:`withdraw`: the director becomes able to announce again (whether it
        does, and when, is for the caller to watch)."""
        if cause == "unready":
            await asyncio.gather(*(self.check_sinks[director, rs].start()
                                   for rs in REAL_SERVERS))
        elif cause == "drained":
            reply = await self.control(director, "undrain", target="director")
            if not reply.get("ok"):
                raise NetnsError("undrain refused", f"{director}: {reply}")
        elif cause == "link cut":
            self.cut_link(director, up=True)
        elif cause == "BIRD killed":
            await self.restart_bird(director)
        elif cause == "mailha killed":
            await self.stop_mailha(director)
            await self.start_mailha(director)
        else:
            raise NetnsError("unknown withdrawal cause", repr(cause))

    # -- mailha -------------------------------------------------------------------------

    def write_mailha_config(self, director: str) -> Path:
        path = self.topo.node_dir(director) / "mailha.toml"
        bird = self.birds[director]
        path.write_text(director_mailha_config(
            self.topo, director, self.options, bird_socket=bird.socket,
            include_file=self.include_file(director)))
        return path

    def session_events(self, node: str) -> list[str]:
        """The lines of a BIRD's log about sessions going down or up (its trace)."""
        try:
            text = self.birds[node].log_path.read_text(errors="replace")
        except OSError:
            return []
        keys = ("bfd1: Session", "BFD session", "Error", "State changed to up",
                "State changed to down", "Hold timer")
        return [line for line in text.splitlines() if any(k in line for k in keys)]

    async def compile_mailha(self) -> None:
        """Import ``mailha serve``'s modules once with bytecode writing on, so the
        directors' processes load compiled code, as an installed mailha does (pip and
        dpkg compile at install). A checkout run under PYTHONDONTWRITEBYTECODE otherwise
        recompiles every module in every process: seconds under the emulated VM."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        await netns.run([self.python, "-c", "import mailha.daemon"], env=env, time_limit=300)

    async def start_mailha(self, director: str, *, time_limit: float = 120.0,
                           log_level: str = "info") -> Process:
        """Start ``mailha serve`` in the director's namespace and wait until it runs.

        It runs as ``python -m mailha serve`` does (``mailha.cli.main``), behind one
        line that prints when its modules are imported (:attr:`imported_at`): the
        start figures can then tell the interpreter's loading from mailha's own work.
        """
        if self.options.announce != "mailha":
            raise NetnsError("manual lab", "mailha announces only with announce='mailha'")
        if director in self.mailha and self.mailha[director].running:
            raise NetnsError("mailha already running", director)
        config = self.write_mailha_config(director)
        log = self.mailha_log(director)
        offset = log.stat().st_size if log.exists() else 0
        proc = await self.topo.spawn(
            director, [self.python, "-c", _SERVE_STAMPED, str(config), log_level], log)
        self.mailha[director] = proc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while " running with " not in (text := _read_from(log, offset)):
            if not proc.running:
                raise NetnsError("mailha exited", f"{director}: exit {proc.returncode}: "
                                 f"{text[-2000:]}")
            if loop.time() > deadline:
                raise NetnsError("mailha did not start", f"{director} in {time_limit:g}s")
            await asyncio.sleep(0.05)
        stamp = _IMPORTED_RE.search(text)
        if stamp is not None:
            self.imported_at[director] = float(stamp.group(1))
        return proc

    def kill_mailha(self, director: str) -> None:
        """SIGKILL mailha at once, in-process: a crash, nothing released by it."""
        proc = self.mailha.get(director)
        if proc is not None and proc.running:
            os.kill(proc.pid, signal.SIGKILL)

    async def stop_mailha(self, director: str, *, time_limit: float = 30.0) -> int:
        proc = self.mailha.pop(director, None)
        if proc is None:
            return 0
        return await proc.stop(time_limit=time_limit)

    async def control(self, director: str, command: str, **args: Any) -> dict[str, Any]:
        """One request on the director's mailha control socket (in a thread, not a
        process: ``mailha drain`` would cost a Python start, seconds in the VM)."""
        return await asyncio.to_thread(control_request, self.control_socket(director),
                                       command, args=args, timeout=60.0)

    # -- IPVS ---------------------------------------------------------------------------

    async def ipvs_clients(self, director: str) -> frozenset[tuple[IPv4, int]]:
        """The clients (address, port) in the director's IPVS connection table for the
        VIP: which flows the director scheduled or took over. Exact and immediate, unlike
        the service counters of ``--stats``, which the kernel's estimator folds in only
        every 2 s."""
        out = await self.topo.exec(director, ["ipvsadm", "-Lnc"], time_limit=60)
        return parse_connection_clients(out.stdout, f"{VIP}:{SMTP_PORT}")

    async def ipvs_table(self, director: str) -> str:
        return (await self.topo.exec(director, ["ipvsadm", "-Ln"], time_limit=60)).stdout


#: ``python -m mailha serve CONFIG --log-level LEVEL``, stamping the end of the imports.
_SERVE_STAMPED = (
    "import sys, time\n"
    "import mailha.daemon\n"
    "print(f'mailha modules imported at {time.monotonic():.6f}', flush=True)\n"
    "from mailha.cli import main\n"
    "sys.exit(main(['serve', sys.argv[1], '--log-level', sys.argv[2]]))\n"
)
_IMPORTED_RE = re.compile(r"mailha modules imported at (\d+\.\d+)")


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
