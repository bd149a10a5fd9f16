"""The configuration as frozen dataclasses: what a valid config file *means*.

Names follow keepalived.conf(5) wherever keepalived has the concept, so an admin who
knows keepalived recognises every key. The loader (:mod:`mailha.config.loader`) turns
TOML into these objects and rejects what does not fit; everything downstream (the VRRP
driver, the IPVS planner, the checkers) reads only these types, never raw TOML.

Timers are floats in seconds (keepalived's <TIMER>). Addresses are :mod:`ipaddress`
objects. Optional values are ``None`` when the user did not set them and the meaning of
"unset" is resolved by inheritance (virtual_server -> real_server -> checker) at load
time, so consumers never re-implement defaults.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from pathlib import Path

from mailha.ip import IPAddress

IPInterface = IPv4Interface | IPv6Interface


class InitialState(enum.Enum):
    MASTER = "MASTER"
    BACKUP = "BACKUP"


class LvsMethod(enum.Enum):
    NAT = "NAT"
    DR = "DR"
    TUN = "TUN"


class TunnelType(enum.Enum):
    IPIP = "ipip"
    GUE = "gue"
    GRE = "gre"


class Announce(enum.Enum):
    """How clients are led to a virtual server's VIP: one VRRP master, or BGP from every
    ready director (issue 12's scale-out mode, through BIRD)."""

    VRRP = "vrrp"
    BGP = "bgp"


class Protocol(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


SCHEDULERS = frozenset(
    {"rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos"}
)
SCHEDULER_FLAGS = frozenset(
    {"flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback"}
)
#: The Maglev hashing scheduler (the kernel's name too): its services follow the rules
#: that let several directors pick the same real server for a flow (mailha.lvs.maglev).
MAGLEV = "mh"


@dataclass(frozen=True)
class ScriptCommand:
    """A command line as keepalived's ``script``/``notify_*`` take it, plus the run-as user.

    ``argv`` is already split with keepalived's quoting rules; ``user``/``group`` are
    None to mean "the global script_user" (resolved by the loader when it is set).
    """

    argv: tuple[str, ...]
    user: str | None = None
    group: str | None = None

    def __str__(self) -> str:
        return " ".join(self.argv)


# --------------------------------------------------------------------------- global


@dataclass(frozen=True)
class LvsTimeouts:
    """``lvs_timeouts``: None leaves the kernel's value as it was at start."""

    tcp: int | None = None
    tcpfin: int | None = None
    udp: int | None = None


@dataclass(frozen=True)
class LvsSyncDaemon:
    """``lvs_sync_daemon``: the kernel's connection-sync daemon, following a VRRP instance."""

    interface: str
    instance: str | None = None
    sync_id: int | None = None
    maxlen: int | None = None
    port: int = 8848
    ttl: int | None = None
    group: IPAddress | None = None


@dataclass(frozen=True)
class GlobalConfig:
    """``global_defs``: node identity, protocol defaults and defaults for scripts."""

    router_id: str
    vrrp_version: int = 2
    script_user: str | None = None
    script_group: str | None = None
    enable_script_security: bool = False
    notification_email: tuple[str, ...] = ()
    notification_email_from: str | None = None
    smtp_server: str | None = None
    smtp_server_port: int = 25
    smtp_helo_name: str | None = None
    smtp_connect_timeout: float = 30.0
    smtp_alert: bool = False
    vrrp_mcast_group4: IPv4Address = IPv4Address("224.0.0.18")  # noqa: RUF009
    vrrp_mcast_group6: IPv6Address = IPv6Address("ff02::12")  # noqa: RUF009
    vrrp_garp_master_delay: float = 5.0
    vrrp_garp_master_repeat: int = 5
    vrrp_garp_lower_prio_delay: float | None = None
    vrrp_garp_lower_prio_repeat: int | None = None
    vrrp_garp_master_refresh: float = 0.0
    vrrp_garp_master_refresh_repeat: int = 1
    vrrp_garp_interval: float = 0.0
    vrrp_gna_interval: float = 0.0
    vrrp_skip_check_adv_addr: bool = False
    vrrp_check_unicast_src: bool = False
    vrrp_strict: bool = False
    checker_log_all_failures: bool = False
    lvs_flush: bool = False
    lvs_flush_on_stop: bool = False
    #: mailha only: at stop, take the VIP off lo and restore the ARP sysctls (default:
    #: keep them, so the master's direct-routed sessions still reach this node's Postfix).
    release_dr_on_stop: bool = False
    #: mailha only: net.ipv4.vs.sloppy_tcp / sloppy_sctp while mailha runs, so a director
    #: picks up a flow it did not see start (an ECMP rehash, a failover without the sync
    #: daemon). The loader resolves "unset" to true when a virtual_server of that
    #: protocol uses the mh scheduler, false otherwise (mailha.lvs.takeover).
    lvs_sloppy_tcp: bool = False
    lvs_sloppy_sctp: bool = False
    lvs_timeouts: LvsTimeouts | None = None
    lvs_sync_daemon: LvsSyncDaemon | None = None


# --------------------------------------------------------------------------- VRRP


@dataclass(frozen=True)
class VrrpScript:
    """``vrrp_script``: a periodic command whose exit status moves priority or forces FAULT."""

    name: str
    script: ScriptCommand
    interval: float = 1.0
    timeout: float | None = None  # None: keepalived's default, the interval
    weight: int = 0
    weight_reverse: bool = False
    rise: int = 1
    fall: int = 1
    init_fail: bool = False


@dataclass(frozen=True)
class TrackedScript:
    """An entry of ``track_script``; ``weight`` None means "the script's own weight"."""

    name: str
    weight: int | None = None
    reverse: bool | None = None

    def resolved(self, script: VrrpScript) -> tuple[int, bool]:
        """(weight, reverse) as keepalived applies them: this entry's, else the script's.

        The one place this inheritance is decided (tracking and ``mailha check`` both
        ask here).
        """
        weight = script.weight if self.weight is None else self.weight
        reverse = script.weight_reverse if self.reverse is None else self.reverse
        return weight, reverse


@dataclass(frozen=True)
class TrackedInterface:
    """An entry of ``track_interface``; weight 0 means FAULT while the link is down."""

    name: str
    weight: int = 0
    reverse: bool = False


@dataclass(frozen=True)
class VirtualAddress:
    """One line of ``virtual_ipaddress``: ``IP[/prefix] [dev X] [label L] [scope S]``.

    ``dev`` None means the instance's interface. A bare address gets /32 (/128), as in
    keepalived.
    """

    address: IPInterface
    dev: str | None = None
    label: str | None = None
    scope: str | None = None
    brd: IPAddress | None = None
    no_track: bool = False

    @property
    def ip(self) -> IPAddress:
        return self.address.ip


@dataclass(frozen=True)
class UnicastPeer:
    address: IPAddress
    min_ttl: int | None = None
    max_ttl: int | None = None


@dataclass(frozen=True)
class Authentication:
    """VRRPv2 ``authentication`` (deprecated by RFC 3768, kept for keepalived interop)."""

    auth_type: str  # "PASS" (AH is not supported)
    auth_pass: str


@dataclass(frozen=True)
class VrrpInstance:
    """``vrrp_instance``: one virtual router on one interface."""

    name: str
    interface: str
    virtual_router_id: int
    priority: int = 100
    state: InitialState = InitialState.BACKUP
    advert_int: float = 1.0
    version: int = 2
    unicast_src_ip: IPAddress | None = None
    unicast_peer: tuple[UnicastPeer, ...] = ()
    mcast_src_ip: IPAddress | None = None
    mcast_dst_ip: IPAddress | None = None
    unicast_ttl: int = 255
    check_unicast_src: bool = False
    virtual_ipaddress: tuple[VirtualAddress, ...] = ()
    virtual_ipaddress_excluded: tuple[VirtualAddress, ...] = ()
    track_script: tuple[TrackedScript, ...] = ()
    track_interface: tuple[TrackedInterface, ...] = ()
    dont_track_primary: bool = False
    nopreempt: bool = False
    preempt_delay: float = 0.0
    accept: bool = True
    garp_master_delay: float | None = None  # None: the global vrrp_garp_master_delay
    garp_master_repeat: int | None = None
    garp_lower_prio_delay: float | None = None
    garp_lower_prio_repeat: int | None = None
    garp_master_refresh: float | None = None
    garp_master_refresh_repeat: int | None = None
    down_timer_adverts: int = 3
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    skip_check_adv_addr: bool = False
    strict_mode: bool = False
    v3_checksum_as_v2: bool = False  # keepalived's old_unicast_checksum
    authentication: Authentication | None = None
    notify_master: ScriptCommand | None = None
    notify_backup: ScriptCommand | None = None
    notify_fault: ScriptCommand | None = None
    notify_stop: ScriptCommand | None = None
    notify: ScriptCommand | None = None
    smtp_alert: bool | None = None

    @property
    def family(self) -> int:
        """4 or 6: the family of the virtual addresses (all of one family, validated)."""
        if self.virtual_ipaddress:
            return self.virtual_ipaddress[0].address.version
        if self.unicast_peer:
            return self.unicast_peer[0].address.version
        return 4

    @property
    def multicast(self) -> bool:
        """keepalived sends to the multicast group when no unicast peer is configured."""
        return not self.unicast_peer

    @property
    def no_accept_mode(self) -> bool:
        """RFC 5798 Accept_Mode false: as master, traffic to and from the VIPs is dropped.

        ``accept = false`` (``no_accept``, or implied by strict mode) on an instance that
        is not the address owner: the owner (priority 255) always accepts, as in
        keepalived.
        """
        return not self.accept and self.priority != 255  # the address owner


# --------------------------------------------------------------------------- checkers


@dataclass(frozen=True)
class CheckerCommon:
    """Options every checker has; unset ones were filled from real_server/virtual_server."""

    connect_ip: IPAddress | None = None  # None: the real server's address
    connect_port: int | None = None  # None: the real server's port
    bindto: IPAddress | None = None
    bind_if: str | None = None
    bind_port: int | None = None
    fwmark: int | None = None
    connect_timeout: float = 5.0
    retry: int = 1
    delay_before_retry: float = 1.0
    delay_loop: float = 60.0
    warmup: float | None = None  # None: random in [0, delay_loop]; 0 disables
    alpha: bool = False
    log_all_failures: bool = False


@dataclass(frozen=True)
class TcpCheck:
    """``TCP_CHECK``: the real server accepts a TCP connection within connect_timeout."""

    common: CheckerCommon = field(default_factory=CheckerCommon)
    kind: str = "TCP_CHECK"


@dataclass(frozen=True)
class SmtpCheck:
    """``SMTP_CHECK``: banner 220, EHLO (HELO fallback) with helo_name, QUIT."""

    common: CheckerCommon = field(default_factory=CheckerCommon)
    helo_name: str = "smtpchecker.mailha.local"
    kind: str = "SMTP_CHECK"


@dataclass(frozen=True)
class MiscCheck:
    """``MISC_CHECK``: run misc_path; exit 0 up, 1 down, 2-255 (misc_dynamic) weight status-2."""

    misc_path: ScriptCommand
    misc_timeout: float | None = None  # None: delay_loop, as keepalived
    misc_dynamic: bool = False
    common: CheckerCommon = field(default_factory=CheckerCommon)
    kind: str = "MISC_CHECK"


Checker = TcpCheck | SmtpCheck | MiscCheck


# --------------------------------------------------------------------------- LVS


@dataclass(frozen=True)
class TunnelOptions:
    type: TunnelType = TunnelType.IPIP
    port: int | None = None  # required for GUE
    checksum: str | None = None  # "nocsum" | "csum" | "remcsum"


@dataclass(frozen=True)
class RealServer:
    """``real_server IP [PORT]`` with its checkers (all must pass for the server to be up)."""

    ip: IPAddress
    port: int | None
    weight: int = 1
    lvs_method: LvsMethod = LvsMethod.NAT
    tunnel: TunnelOptions | None = None
    uthreshold: int = 0
    lthreshold: int = 0
    inhibit_on_failure: bool = False
    alpha: bool = False
    notify_up: ScriptCommand | None = None
    notify_down: ScriptCommand | None = None
    checkers: tuple[Checker, ...] = ()
    #: Pidfile of the server's master process, watched directly (pidfd) when the real
    #: server is this node's own address, together with its listening socket (sock_diag):
    #: the master's death or the listener's close takes the server out at once.
    local_watch: Path | None = None


#: What ``local_watch = true`` watches: Debian's Postfix master pidfile.
POSTFIX_MASTER_PIDFILE = Path("/var/spool/postfix/pid/master.pid")


@dataclass(frozen=True)
class SorryServer:
    ip: IPAddress
    port: int | None = None
    lvs_method: LvsMethod | None = None  # None: the virtual server's
    inhibit: bool = False


@dataclass(frozen=True)
class GroupMember:
    """One line of ``virtual_server_group``: an address range with a port, or a fwmark."""

    first: IPAddress | None = None
    last: IPAddress | None = None  # == first for a single address
    port: int | None = None
    fwmark: int | None = None
    family: int | None = None  # for fwmark entries: 4 or 6


@dataclass(frozen=True)
class VirtualServerGroup:
    name: str
    members: tuple[GroupMember, ...]


@dataclass(frozen=True)
class VirtualServer:
    """``virtual_server``: an IPVS service (IP+port, fwmark, or a group) and its pool.

    ``vrrp_instance`` is mailha's addition: the service is programmed only on the node where
    that instance is MASTER (so two all-in-one nodes never both balance: no ping-pong),
    and on the other nodes the VIP is held on ``lo`` so they accept the master's
    direct-routed packets as real servers.
    """

    ip: IPAddress | None = None
    port: int | None = None
    fwmark: int | None = None
    group: str | None = None
    protocol: Protocol = Protocol.TCP
    lvs_sched: str = "wlc"
    sched_flags: frozenset[str] = frozenset()
    lvs_method: LvsMethod = LvsMethod.NAT
    tunnel: TunnelOptions | None = None
    persistence_timeout: int | None = None
    persistence_granularity: IPAddress | None = None
    ops: bool = False
    ip_family: int | None = None
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: ScriptCommand | None = None
    quorum_down: ScriptCommand | None = None
    sorry_server: SorryServer | None = None
    inhibit_on_failure: bool = False
    alpha: bool = False
    omega: bool = False
    ha_suspend: bool = False
    delay_loop: float = 60.0
    vrrp_instance: str | None = None
    #: ``bgp``: every director programs the service, holds the VIP on lo, and announces
    #: VIP/32 through BIRD while it is ready (:mod:`mailha.bgp`).
    announce: Announce = Announce.VRRP
    #: bgp only: real servers up (in the pool with weight > 0) needed to announce.
    min_healthy: int = 1
    real_servers: tuple[RealServer, ...] = ()

    @property
    def label(self) -> str:
        """How logs and metrics name this service: ``TCP 10.12.49.37:25``, ``FWM 1``."""
        if self.fwmark is not None:
            return f"FWM {self.fwmark}"
        if self.group is not None:
            return f"{self.protocol.value} group {self.group}"
        host = f"[{self.ip}]" if self.ip is not None and self.ip.version == 6 else str(self.ip)
        return f"{self.protocol.value} {host}:{self.port or 0}"


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    listen: IPAddress = IPv4Address("127.0.0.1")  # noqa: RUF009
    port: int = 9650


@dataclass(frozen=True)
class ControlConfig:
    socket: Path = Path("/run/mailha/mailha.sock")


@dataclass(frozen=True)
class BgpConfig:
    """``[bgp]``: how mailha drives BIRD for the ``announce = "bgp"`` virtual servers."""

    bird_socket: Path = Path("/run/bird/bird.ctl")
    include_file: Path = Path("/etc/bird/mailha.conf")
    protocol_prefix: str = "mailha_"
    reapply_interval: float = 5.0
    deadman_interface: str = "mailha-bgp"


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of one node."""

    source: Path
    global_: GlobalConfig
    vrrp_scripts: tuple[VrrpScript, ...] = ()
    vrrp_instances: tuple[VrrpInstance, ...] = ()
    virtual_server_groups: tuple[VirtualServerGroup, ...] = ()
    virtual_servers: tuple[VirtualServer, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    bgp: BgpConfig = field(default_factory=BgpConfig)

    @property
    def bgp_services(self) -> tuple[VirtualServer, ...]:
        """The virtual servers announced by BGP (empty: the BGP mode is off)."""
        return tuple(vs for vs in self.virtual_servers if vs.announce is Announce.BGP)

    def script(self, name: str) -> VrrpScript:
        for s in self.vrrp_scripts:
            if s.name == name:
                return s
        raise KeyError(name)

    def instance(self, name: str) -> VrrpInstance:
        for i in self.vrrp_instances:
            if i.name == name:
                return i
        raise KeyError(name)
