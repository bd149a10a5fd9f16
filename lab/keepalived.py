"""keepalived 2.2.7 peers for the lab: configuration, process, observed state.

keepalived is mailha's reference and interoperability partner: tests run a keepalived
next to (or instead of) a mailha node and check both agree on who is master.

Each peer runs ``keepalived -P -n -l -G`` (VRRP only, no fork, log to the console and
not to syslog: the host's syslog is shared by every namespace) inside a node namespace
via ``ip netns exec``, with its own pid files (``-p``/``-r``) so several run side by
side. Its state is read from its log ("(VI_1) Entering MASTER STATE"); who holds the
VIP is read from the namespaces' addresses, which is the ground truth clients see.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lab import netns
from lab.errors import KeepalivedError
from lab.netns import Process
from lab.topology import SeedTopology
from mailha.resource import AsyncResource

__all__ = [
    "Keepalived",
    "KeepalivedConfig",
    "TrackScript",
    "VrrpInstance",
    "parse_states",
    "render_config",
    "seed_config",
    "vip_holders",
]

KEEPALIVED = "keepalived"
State = Literal["MASTER", "BACKUP", "FAULT"]

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+\Z")


def _check_name(kind: str, name: str) -> None:
    if not _NAME_RE.match(name):
        raise KeepalivedError(f"invalid {kind}", repr(name))


@dataclass(frozen=True)
class TrackScript:
    """A ``vrrp_script``: run ``script`` every ``interval`` s; ``weight`` adjusts priority.

    A positive weight is added to the priority while the script succeeds, a negative
    one subtracted while it fails (keepalived.conf(5)).
    """

    name: str
    script: str
    interval: float = 1.0
    weight: int = 0
    fall: int = 1
    rise: int = 1
    timeout: float | None = None
    user: str = "root"

    def __post_init__(self) -> None:
        _check_name("script name", self.name)
        if not self.script.startswith("/") or '"' in self.script or "\n" in self.script:
            raise KeepalivedError("invalid script", f"{self.script!r} (absolute path, no quotes)")
        if self.interval <= 0 or self.fall < 1 or self.rise < 1:
            raise KeepalivedError("invalid script timing", f"{self.name}")
        if not -253 <= self.weight <= 253:
            raise KeepalivedError("invalid weight", f"{self.weight} (-253..253)")
        _check_name("script user", self.user)


@dataclass(frozen=True)
class VrrpInstance:
    """One ``vrrp_instance``: the knobs the lab's scenarios need."""

    interface: str
    virtual_router_id: int
    priority: int
    virtual_ipaddresses: tuple[str, ...]
    name: str = "VI_1"
    state: Literal["MASTER", "BACKUP"] = "BACKUP"
    advert_int: float = 1.0
    version: Literal[2, 3] = 2
    unicast_src_ip: str | None = None
    unicast_peers: tuple[str, ...] = ()
    track_scripts: tuple[TrackScript, ...] = ()
    nopreempt: bool = False
    #: Further keepalived.conf lines inside the instance, as written (e.g. "unicast_ttl 64").
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("instance name", self.name)
        netns.check_ifname(self.interface)
        if not 1 <= self.virtual_router_id <= 255:
            raise KeepalivedError("invalid virtual_router_id", f"{self.virtual_router_id}")
        if not 1 <= self.priority <= 255:
            raise KeepalivedError("invalid priority", f"{self.priority} (1..255)")
        if self.version not in (2, 3):
            raise KeepalivedError("invalid version", f"{self.version}")
        if self.advert_int <= 0:
            raise KeepalivedError("invalid advert_int", f"{self.advert_int}")
        if self.version == 2 and self.advert_int != int(self.advert_int):
            raise KeepalivedError(
                "invalid advert_int", f"{self.advert_int}: VRRPv2 counts whole seconds"
            )
        if self.version == 3 and round(self.advert_int * 100) < 1:
            raise KeepalivedError("invalid advert_int", f"{self.advert_int}: below 10 ms")
        if not self.virtual_ipaddresses:
            raise KeepalivedError("invalid instance", "no virtual_ipaddress")
        try:
            for vip in self.virtual_ipaddresses:
                ipaddress.ip_interface(vip)
            for addr in (self.unicast_src_ip, *self.unicast_peers):
                if addr is not None:
                    ipaddress.ip_address(addr)
        except ValueError as exc:
            raise KeepalivedError("invalid address", str(exc)) from None
        if self.nopreempt and self.state != "BACKUP":
            raise KeepalivedError("invalid instance", "nopreempt needs state BACKUP")


@dataclass(frozen=True)
class KeepalivedConfig:
    """A whole keepalived.conf: a router id and its VRRP instances."""

    router_id: str
    instances: tuple[VrrpInstance, ...]
    #: Further global_defs lines, as written (e.g. "vrrp_mcast_group4 224.0.0.19").
    global_extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("router_id", self.router_id)
        if not self.instances:
            raise KeepalivedError("invalid config", "no vrrp_instance")
        names = [i.name for i in self.instances]
        if len(set(names)) != len(names):
            raise KeepalivedError("invalid config", f"duplicate instance names {names}")

    @property
    def scripts(self) -> tuple[TrackScript, ...]:
        """Every distinct track script, in first-use order."""
        seen: dict[str, TrackScript] = {}
        for inst in self.instances:
            for script in inst.track_scripts:
                if seen.setdefault(script.name, script) != script:
                    raise KeepalivedError("invalid config", f"two scripts named {script.name}")
        return tuple(seen.values())


def _num(value: float) -> str:
    return f"{value:g}"


def render_config(config: KeepalivedConfig) -> str:
    """keepalived.conf text for ``config`` (pure)."""
    out = [
        "global_defs {",
        f"    router_id {config.router_id}",
        "    script_user root",
        "    enable_script_security",
        *(f"    {line}" for line in config.global_extra),
        "}",
    ]
    for s in config.scripts:
        out += [
            f"vrrp_script {s.name} {{",
            f'    script "{s.script}"',
            f"    interval {_num(s.interval)}",
            f"    weight {s.weight}",
            f"    fall {s.fall}",
            f"    rise {s.rise}",
            f"    user {s.user}",
        ]
        if s.timeout is not None:
            out.append(f"    timeout {_num(s.timeout)}")
        out.append("}")
    for i in config.instances:
        out += [
            f"vrrp_instance {i.name} {{",
            f"    state {i.state}",
            f"    interface {i.interface}",
            f"    virtual_router_id {i.virtual_router_id}",
            f"    priority {i.priority}",
            f"    advert_int {_num(i.advert_int)}",
            f"    version {i.version}",
        ]
        if i.nopreempt:
            out.append("    nopreempt")
        if i.unicast_src_ip is not None:
            out.append(f"    unicast_src_ip {i.unicast_src_ip}")
        if i.unicast_peers:
            out += ["    unicast_peer {", *(f"        {p}" for p in i.unicast_peers), "    }"]
        out += [f"    {line}" for line in i.extra]
        out += ["    virtual_ipaddress {", *(f"        {v}" for v in i.virtual_ipaddresses)]
        out.append("    }")
        if i.track_scripts:
            out += ["    track_script {", *(f"        {s.name}" for s in i.track_scripts)]
            out.append("    }")
        out.append("}")
    return "\n".join(out) + "\n"


_STATE_RE = re.compile(r"\((?P<inst>[^)\s]+)\) Entering (?P<state>MASTER|BACKUP|FAULT) STATE")


def parse_states(log: str) -> dict[str, list[State]]:
    """Every state each instance entered, in order, from keepalived's log."""
    states: dict[str, list[State]] = {}
    for m in _STATE_RE.finditer(log):
        state: State = m.group("state")  # type: ignore[assignment]
        states.setdefault(m.group("inst"), []).append(state)
    return states


class Keepalived(AsyncResource):
    """One keepalived (VRRP only) in namespace ``netns``; an async context manager."""

    def __init__(self, directory: Path, config: KeepalivedConfig, *, netns: str | None) -> None:
        self.directory = directory
        self.config = config
        self.netns = netns
        self.conf_path = directory / "keepalived.conf"
        self.log_path = directory / "keepalived.log"
        self.pid_path = directory / "keepalived.pid"
        self.vrrp_pid_path = directory / "vrrp.pid"
        self._proc: Process | None = None

    def __repr__(self) -> str:
        return f"<Keepalived {self.config.router_id} netns={self.netns}>"

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(render_config(self.config))
        return self.conf_path

    async def check_config(self) -> None:
        """Run ``keepalived -t`` on the written file; raise KeepalivedError with its report."""
        self.write_config()
        result = await netns.run(
            [KEEPALIVED, "-t", "-f", str(self.conf_path)],
            netns=self.netns,
            check=False,
            time_limit=30.0,
        )
        if not result.ok:
            raise KeepalivedError(
                "config rejected", f"exit {result.returncode}: {result.stderr.strip()[-1000:]}"
            )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    async def start(self) -> None:
        """Write the configuration and start keepalived (returns at once)."""
        if self.running:
            raise KeepalivedError("already running", repr(self))
        self.write_config()
        argv = [
            KEEPALIVED, "--vrrp", "--dont-fork", "--log-console", "--no-syslog",
            "--log-detail", "--use-file", str(self.conf_path),
            "--pid", str(self.pid_path), "--vrrp_pid", str(self.vrrp_pid_path),
        ]  # fmt: skip
        self._proc = await netns.spawn(argv, netns=self.netns, log_path=self.log_path)

    async def stop(self, *, time_limit: float = 10.0) -> None:
        """SIGTERM (keepalived then removes its VIPs), SIGKILL after ``time_limit``."""
        if self._proc is not None:
            await self._proc.stop(time_limit=time_limit)

    def kill(self) -> None:
        """SIGKILL keepalived: it cannot remove its VIPs (a crash, for failure tests)."""
        if self._proc is not None:
            self._proc.kill()

    def send_signal(self, sig: int) -> None:
        """Signal keepalived's process group (SIGHUP reloads, SIGSTOP/SIGCONT freeze)."""
        if self._proc is not None:
            self._proc.send_signal(sig)

    async def _enter(self) -> None:
        await self.start()

    async def _exit(self) -> None:
        try:
            await self.stop()
        except BaseException:
            self.kill()
            raise

    def log_text(self) -> str:
        return self._proc.log_text() if self._proc is not None else ""

    def states(self, instance: str | None = None) -> list[State]:
        """States the instance (default: the first) has entered, oldest first."""
        name = instance or self.config.instances[0].name
        return parse_states(self.log_text()).get(name, [])

    def state(self, instance: str | None = None) -> State | None:
        """The instance's current state per the log, or None before its first transition."""
        states = self.states(instance)
        return states[-1] if states else None

    async def wait_state(
        self, state: State, *, instance: str | None = None, time_limit: float = 20.0
    ) -> None:
        """Wait until the instance is in ``state``; raise KeepalivedError on timeout/exit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while self.state(instance) != state:
            if self._proc is None or not self._proc.running:
                raise KeepalivedError("not running", f"{self!r}: {self.log_text()[-800:]}")
            if loop.time() > deadline:
                raise KeepalivedError(
                    "state not reached",
                    f"{self!r}: wanted {state}, is {self.state(instance)} after {time_limit:g}s",
                )
            await asyncio.sleep(0.05)


async def vip_holders(namespaces: Sequence[str], vip: str) -> list[str]:
    """The namespaces (of ``namespaces``) that have address ``vip`` configured."""
    wanted = ipaddress.ip_address(vip.split("/")[0])
    found = await asyncio.gather(*(netns.addresses(ns) for ns in namespaces))
    return [
        ns
        for ns, addrs in zip(namespaces, found, strict=True)
        if any(a.address == wanted for a in addrs)
    ]


def seed_config(
    topo: SeedTopology,
    node: str,
    *,
    check_script: Path | None = None,
    version: Literal[2, 3] = 2,
    advert_int: float = 1.0,
    priority: int = 100,
    script_interval: float = 3.0,
    script_weight: int = 100,
    script_timeout: float | None = None,
) -> KeepalivedConfig:
    """The seed scenario's keepalived.conf for ``node`` (n1 starts MASTER, n2 BACKUP).

    virtual_router_id 173, unicast to the other server, VIP .37, both priority 100 and a
    track script (``check_script``, e.g. :meth:`Postfix.check_script`) with weight +100,
    as in the how-to mailha replaces. With equal priorities the higher address wins.
    """
    if node not in topo.servers:
        raise KeepalivedError("not a server node", repr(node))
    scripts = (
        ()
        if check_script is None
        else (
            TrackScript(
                "chk_service", str(check_script), interval=script_interval,
                weight=script_weight, timeout=script_timeout,
            ),
        )
    )
    instance = VrrpInstance(
        name="VI_postfix",
        interface=topo.iface(node),
        state="MASTER" if node == topo.servers[0] else "BACKUP",
        priority=priority,
        virtual_router_id=173,
        advert_int=advert_int,
        version=version,
        unicast_src_ip=str(topo.address(node)),
        unicast_peers=tuple(str(topo.address(n)) for n in topo.servers if n != node),
        virtual_ipaddresses=(str(topo.vip_interface),),
        track_scripts=scripts,
    )
    return KeepalivedConfig(router_id=f"{topo.prefix}{node}", instances=(instance,))
