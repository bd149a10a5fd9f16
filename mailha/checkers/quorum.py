"""Pure per-virtual-server health: quorum with hysteresis, sorry server, notify events.

The output is plain data, :class:`DesiredPool`: for every real server the weight it
should have in IPVS (``None``: not there at all), and the sorry server's. The IPVS
planner turns that into netlink operations; nothing here touches the kernel.

Matched to keepalived's ipwrapper.c (``update_quorum_state``, ``perform_svr_state``,
``ipvs_cmd``):

* live weight = the sum of the weights of alive real servers;
* at start, quorum is up when live weight >= ``quorum + hysteresis``;
* quorum is *gained* when live weight >= ``quorum + hysteresis`` and *lost* when
  live weight < ``quorum - hysteresis`` or live weight is 0, so inside the band
  ``[quorum - hysteresis, quorum + hysteresis)`` the state never changes;
* while quorum is down and a ``sorry_server`` is configured, the sorry server replaces
  the pool (alive servers are taken out); when quorum returns it is taken out and the
  alive servers go back;
* ``inhibit_on_failure`` (and ``sorry_server``'s ``inhibit``): instead of being removed
  a destination stays in IPVS with weight 0, so established connections drain;
* ``quorum_up``/``quorum_down`` run on transitions; at start only "down with a sorry
  server" is announced (keepalived's "Starting with quorum down");
* ``omega``: on shutdown, ``notify_down`` for every alive server and ``quorum_down``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailha.config.model import RealServer, ScriptCommand, SorryServer, VirtualServer

from .result import CheckResult
from .state import RealServerHealth, Verdict, clamp_weight

__all__ = [
    "DesiredPool",
    "EventKind",
    "HealthEvent",
    "HealthUpdate",
    "PoolMember",
    "VirtualServerHealth",
    "next_quorum_state",
    "service_identity",
]

#: The sorry server's weight while it serves (keepalived gives it the default, 1).
SORRY_WEIGHT = 1


def next_quorum_state(up: bool, live_weight: int, quorum: int, hysteresis: int) -> bool:
    """keepalived's ``update_quorum_state`` reduced to its decision."""
    if not up:
        return live_weight >= quorum + hysteresis
    return not (live_weight == 0 or live_weight < quorum - hysteresis)


class EventKind(enum.Enum):
    REAL_SERVER_UP = "real_server_up"
    REAL_SERVER_DOWN = "real_server_down"
    QUORUM_UP = "quorum_up"
    QUORUM_DOWN = "quorum_down"


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """Something to announce: run ``command`` if set, and log/notify in any case."""

    kind: EventKind
    virtual_server: VirtualServer
    real_server: RealServer | None = None
    command: ScriptCommand | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PoolMember:
    real_server: RealServer
    weight: int | None  # None: not in IPVS; 0: present but inhibited


@dataclass(frozen=True, slots=True)
class DesiredPool:
    """The destinations one virtual server should have in IPVS, right now."""

    members: tuple[PoolMember, ...]
    sorry_server: SorryServer | None
    sorry_weight: int | None  # None: not in IPVS; 0: inhibited; SORRY_WEIGHT: serving
    quorum_up: bool
    live_weight: int

    @property
    def sorry_active(self) -> bool:
        return bool(self.sorry_weight)


@dataclass(frozen=True, slots=True)
class HealthUpdate:
    """The consequences of one check result."""

    next_delay: float
    events: tuple[HealthEvent, ...] = ()
    pool_changed: bool = False


def service_identity(vs: VirtualServer) -> tuple[object, ...]:
    """What identifies a virtual server across a reload (what the kernel keys it by)."""
    return (vs.protocol, vs.ip, vs.port, vs.fwmark, vs.group)


class VirtualServerHealth:
    """A virtual server's real servers, quorum state and desired pool."""

    def __init__(
        self, virtual_server: VirtualServer, previous: VirtualServerHealth | None = None
    ) -> None:
        """``previous``: the same service's state before a reload, whose real servers'
        verdicts carry over where their checks did not change
        (:meth:`RealServerHealth.carry_over`)."""
        self.virtual_server = virtual_server
        self.real_servers = tuple(RealServerHealth(rs) for rs in virtual_server.real_servers)
        self.quorum_up: bool
        vs = virtual_server
        if previous is not None:
            before = {(h.real_server.ip, h.real_server.port): h for h in previous.real_servers}
            for health in self.real_servers:
                old = before.get((health.real_server.ip, health.real_server.port))
                if old is not None:
                    health.carry_over(old)
            self.quorum_up = next_quorum_state(
                previous.quorum_up, self.live_weight(), vs.quorum, vs.hysteresis)
        else:
            self.quorum_up = self.live_weight() >= vs.quorum + vs.hysteresis
        self._pool = self._compute_pool()

    @property
    def key(self) -> tuple[object, ...]:
        """What identifies the service across a reload: :func:`service_identity`."""
        return service_identity(self.virtual_server)

    def live_weight(self) -> int:
        return sum(rs.live_weight for rs in self.real_servers)

    @property
    def sorry_active(self) -> bool:
        return self.virtual_server.sorry_server is not None and not self.quorum_up

    def start(self) -> tuple[HealthEvent, ...]:
        """Events to announce at start-up (keepalived's ``init_service_vs``)."""
        vs = self.virtual_server
        if not self.quorum_up and vs.sorry_server is not None:
            return (
                HealthEvent(
                    EventKind.QUORUM_DOWN,
                    vs,
                    command=vs.quorum_down,
                    detail=self._quorum_detail("starting with quorum down"),
                ),
            )
        return ()

    def pool(self) -> DesiredPool:
        return self._pool

    def record(self, rs_index: int, checker_index: int, result: CheckResult) -> HealthUpdate:
        """Apply one check result of checker ``checker_index`` of real server ``rs_index``."""
        health = self.real_servers[rs_index]
        update = health.record(checker_index, result)
        events: list[HealthEvent] = []
        if update.verdict is Verdict.UP:
            events.append(self._rs_event(health, up=True, result=result))
        elif update.verdict in (Verdict.DOWN, Verdict.CONFIRMED_DOWN):
            events.append(self._rs_event(health, up=False, result=result))
        if update.verdict not in (Verdict.UP, Verdict.DOWN) and not update.weight_changed:
            return HealthUpdate(update.next_delay, tuple(events), False)
        return self._settle(events, update.next_delay)

    def _settle(self, events: list[HealthEvent], next_delay: float) -> HealthUpdate:
        """Re-decide quorum and the pool after a liveness or weight change."""
        vs = self.virtual_server
        was_up = self.quorum_up
        self.quorum_up = next_quorum_state(
            was_up, self.live_weight(), vs.quorum, vs.hysteresis
        )
        if self.quorum_up != was_up:
            kind = EventKind.QUORUM_UP if self.quorum_up else EventKind.QUORUM_DOWN
            command = vs.quorum_up if self.quorum_up else vs.quorum_down
            what = "gained quorum" if self.quorum_up else "lost quorum"
            events.append(HealthEvent(kind, vs, None, command, self._quorum_detail(what)))
        pool = self._compute_pool()
        changed = pool != self._pool
        self._pool = pool
        return HealthUpdate(next_delay, tuple(events), changed)

    def set_watch(self, rs_index: int, down: bool, detail: str,
                  source: str = "process") -> HealthUpdate:
        """Local watch ``source`` of real server ``rs_index`` saw it die or come back.

        A death takes the server out at once (its checks are reset to down); a return
        only lifts that watch's block, and once no watch holds it the next successful
        check brings the server back.
        """
        health = self.real_servers[rs_index]
        verdict = health.set_watch(down, source)
        events: list[HealthEvent] = []
        if verdict is Verdict.DOWN:
            config = health.real_server
            events.append(HealthEvent(EventKind.REAL_SERVER_DOWN, self.virtual_server, config,
                                      config.notify_down, detail))
        return self._settle(events, next_delay=0.0)

    def shutdown(self) -> tuple[HealthEvent, ...]:
        """Events for daemon shutdown: with ``omega``, every alive server and the quorum go down."""
        vs = self.virtual_server
        if not vs.omega:
            return ()
        events = [
            HealthEvent(
                EventKind.REAL_SERVER_DOWN,
                vs,
                rs.real_server,
                rs.real_server.notify_down,
                "shutting down",
            )
            for rs in self.real_servers
            if rs.alive
        ]
        events.append(HealthEvent(EventKind.QUORUM_DOWN, vs, None, vs.quorum_down, "shutting down"))
        return tuple(events)

    def _compute_pool(self) -> DesiredPool:
        vs = self.virtual_server
        sorry_active = self.sorry_active
        members = []
        for rs in self.real_servers:
            config = rs.real_server
            if rs.alive and not sorry_active:
                weight: int | None = clamp_weight(rs.weight)
            else:
                # The loader already resolved virtual_server -> real_server inheritance.
                weight = 0 if config.inhibit_on_failure else None
            members.append(PoolMember(config, weight))
        sorry = vs.sorry_server
        if sorry is None:
            sorry_weight = None
        elif sorry_active:
            sorry_weight = SORRY_WEIGHT
        else:
            sorry_weight = 0 if sorry.inhibit else None
        return DesiredPool(tuple(members), sorry, sorry_weight, self.quorum_up, self.live_weight())

    def _rs_event(self, rs: RealServerHealth, *, up: bool, result: CheckResult) -> HealthEvent:
        config = rs.real_server
        if up:
            return HealthEvent(
                EventKind.REAL_SERVER_UP, self.virtual_server, config, config.notify_up, "up"
            )
        detail = f"{result.reason}: {result.detail}" if result.detail else result.reason
        return HealthEvent(
            EventKind.REAL_SERVER_DOWN, self.virtual_server, config, config.notify_down, detail
        )

    def _quorum_detail(self, what: str) -> str:
        vs = self.virtual_server
        return (
            f"{what}: live weight {self.live_weight()}, quorum {vs.quorum}"
            f" +/- hysteresis {vs.hysteresis}"
        )
