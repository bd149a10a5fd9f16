"""The asyncio driver of one VRRP instance: socket, timers and addresses around the machine.

:class:`~mailha.vrrp.machine.VrrpMachine` decides; this module only carries out. It
decodes what the raw socket hands up and applies the receive checks that need the
instance's configuration (peer list, TTL range, VRID, authentication) before the machine
sees an advert; runs the machine's timer with ``loop.call_at``; and performs the actions
the machine returns strictly in order, on one worker task, so "send the advert, then add
the addresses, then announce them" happens in that order even though adding an address is
a netlink round trip.

A packet that fails a check is counted (``mailha_vrrp_receive_errors_total{reason}``) and
dropped; nothing a peer sends can raise out of the receive loop.  Packets the kernel
dropped before we could read them (queue full) are counted too
(``mailha_vrrp_receive_dropped_total``).  Under a flood the socket always has another
packet ready, so the receive loop yields to the event loop every
:data:`RECEIVE_BATCH` packets: otherwise it would never give way, and the timers (a
master's adverts) and the metrics endpoint would stall for as long as the flood lasts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Literal

from mailha.config.model import GlobalConfig, InitialState, VirtualAddress, VrrpInstance
from mailha.ip import IPAddress
from mailha.metrics import Metrics
from mailha.net import arp
from mailha.net.addresses import AddressError, Addresses, InterfaceAddress
from mailha.net.firewall import NoAcceptFirewall
from mailha.net.vrrp_socket import Received, VrrpSocket, VrrpSocketError
from mailha.notify import Notifier, NotifyScripts, NotifyState
from mailha.tasks import cancel_and_wait
from mailha.vrrp.admission import (
    AdmissionRules,
    Ignored,
    Rejected,
    address_list_mismatch,
    admit,
    compare_addresses,
)
from mailha.vrrp.events import (
    Action,
    AddVips,
    Diagnostic,
    Discarded,
    PriorityChanged,
    RemoveVips,
    SendAdvert,
    SendGratuitous,
    State,
    StateChanged,
)
from mailha.vrrp.machine import InstanceParams, VrrpMachine
from mailha.vrrp.packet import (
    DECODE_ERROR_REASONS,
    Advert,
    AuthType,
    encode_advert,
)
from mailha.vrrp.stale import stale_vip_interfaces, stale_vips
from mailha.vrrp.tracking import EffectivePriority

StateListener = Callable[[str, State], None]
Scope = Literal["global", "site", "link", "host", "nowhere"]

#: What the receive path drops packets for: the codec's §7.1 checks, then the instance's.
#: Bound on stopping the instance's loops once its last actions are done.
STOP_TIMEOUT = 2.0

RECEIVE_ERROR_REASONS = (
    *sorted(DECODE_ERROR_REASONS), "not_peer", "auth", "ip_header", "interval_mismatch",
    "internal",
)

#: Packets handled back to back before the receive loop lets other tasks run.
RECEIVE_BATCH = 32

_NOTIFY_STATE = {
    State.MASTER: NotifyState.MASTER,
    State.BACKUP: NotifyState.BACKUP,
    State.FAULT: NotifyState.FAULT,
    State.STOPPED: NotifyState.STOP,
}


def instance_params(cfg: VrrpInstance, glob: GlobalConfig, primary: IPAddress) -> InstanceParams:
    """The machine's parameters from the configuration (instance value, else global)."""

    def pick(value: float | int | None, default: float | int) -> float | int:
        return default if value is None else value

    return InstanceParams(
        name=cfg.name,
        vrid=cfg.virtual_router_id,
        priority=cfg.priority,
        primary_address=primary,
        virtual_addresses=tuple(v.ip for v in cfg.virtual_ipaddress),
        version=cfg.version,
        advert_int=cfg.advert_int,
        initial_state=State.MASTER if cfg.state is InitialState.MASTER else State.BACKUP,
        nopreempt=cfg.nopreempt,
        preempt_delay=cfg.preempt_delay,
        lower_prio_no_advert=cfg.lower_prio_no_advert,
        higher_prio_send_advert=cfg.higher_prio_send_advert,
        down_timer_adverts=cfg.down_timer_adverts,
        garp_master_delay=float(pick(cfg.garp_master_delay, glob.vrrp_garp_master_delay)),
        garp_master_repeat=int(pick(cfg.garp_master_repeat, glob.vrrp_garp_master_repeat)),
        garp_master_refresh=float(pick(cfg.garp_master_refresh, glob.vrrp_garp_master_refresh)),
        garp_master_refresh_repeat=int(
            pick(cfg.garp_master_refresh_repeat, glob.vrrp_garp_master_refresh_repeat)
        ),
        garp_lower_prio_repeat=cfg.garp_lower_prio_repeat
        if cfg.garp_lower_prio_repeat is not None
        else glob.vrrp_garp_lower_prio_repeat,
        garp_lower_prio_delay=cfg.garp_lower_prio_delay
        if cfg.garp_lower_prio_delay is not None
        else glob.vrrp_garp_lower_prio_delay,
    )


def advert_group(cfg: VrrpInstance, glob: GlobalConfig) -> IPAddress | None:
    """The multicast group of ``cfg``'s adverts: ``mcast_dst_ip``, else the global group
    of its family (``vrrp_mcast_group4|6``); None in unicast mode."""
    if not cfg.multicast:
        return None
    if cfg.mcast_dst_ip is not None:
        return cfg.mcast_dst_ip
    return glob.vrrp_mcast_group6 if cfg.family == 6 else glob.vrrp_mcast_group4


def _scope(name: str | None) -> Scope:
    if name in ("site", "link", "host", "nowhere"):
        return name  # type: ignore[return-value]
    return "global"


class InstanceDriver:
    """Runs one ``vrrp_instance``: create, :meth:`start`, feed tracking, :meth:`stop`."""

    def __init__(
        self,
        cfg: VrrpInstance,
        glob: GlobalConfig,
        *,
        addresses: Addresses,
        notifier: Notifier,
        metrics: Metrics,
        local_vrids: Collection[int] = (),
        on_state: StateListener | None = None,
        loopback_vips: Collection[IPAddress] | None = None,
        firewall: NoAcceptFirewall | None = None,
    ) -> None:
        """``loopback_vips``: what the DR role holds on ``lo`` (see :meth:`start`);
        ``firewall``: where a ``no_accept`` instance blocks its VIPs while master."""
        self.cfg = cfg
        self.glob = glob
        self.log = logging.getLogger(f"mailha.vrrp.{cfg.name}")
        self._addresses = addresses
        self._notifier = notifier
        self._metrics = metrics
        self._local_vrids = frozenset(local_vrids) | {cfg.virtual_router_id}
        self._on_state = on_state
        self._loopback_vips = frozenset(loopback_vips) if loopback_vips is not None else None
        self._firewall = firewall
        if cfg.no_accept_mode and firewall is None:
            raise ValueError(f"{cfg.name}: no_accept needs the daemon's firewall")
        self._loop = asyncio.get_running_loop()
        self._machine: VrrpMachine | None = None
        self._socket: VrrpSocket | None = None
        self._queue: asyncio.Queue[list[Action]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._announcing: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._rules: AdmissionRules | None = None
        self._address_mismatch_logged: tuple[IPAddress, str] | None = None
        self._vip_cfg: dict[IPAddress, VirtualAddress] = {v.ip: v for v in cfg.virtual_ipaddress}
        self.primary: IPAddress | None = None
        self.master_address: IPAddress | None = None
        self._notify_scripts = NotifyScripts(
            master=cfg.notify_master,
            backup=cfg.notify_backup,
            fault=cfg.notify_fault,
            stop=cfg.notify_stop,
            generic=cfg.notify,
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> State:
        return self._machine.state if self._machine is not None else State.INIT

    @property
    def priority(self) -> int:
        return self._machine.priority if self._machine is not None else self.cfg.priority

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The actions and receive loops, for the daemon's supervisor."""
        return tuple(self._tasks)

    @property
    def machine(self) -> VrrpMachine | None:
        return self._machine

    async def start(self, initial: EffectivePriority | None = None) -> None:
        """Clear stale VIPs, open the socket and start the machine (FAULT if ``initial`` says).

        A VIP still on the interface was left by a run that died as master; the machine
        starts in INIT and would never remove it if it went on to BACKUP, so it goes
        first (:func:`~mailha.vrrp.stale.stale_vips`). ``lo`` is examined only when the
        caller said what the DR role keeps there (``loopback_vips``).
        """
        cfg = self.cfg
        await self._remove_stale_vips()
        family = socket.AF_INET6 if cfg.family == 6 else socket.AF_INET
        src = cfg.unicast_src_ip if not cfg.multicast else cfg.mcast_src_ip
        self._socket = await VrrpSocket.open(
            family,
            cfg.interface,
            src,
            tuple(p.address for p in cfg.unicast_peer),
            cfg.multicast,
            group=advert_group(cfg, self.glob),
            unicast_ttl=cfg.unicast_ttl,
        )
        self.primary = self._socket.src
        self._rules = AdmissionRules(
            vrid=cfg.virtual_router_id,
            primary=self.primary,
            multicast=cfg.multicast,
            peers={p.address: p for p in cfg.unicast_peer},
            local_vrids=self._local_vrids,
            version=cfg.version,
            authentication=cfg.authentication,
            v3_checksum_as_v2=cfg.v3_checksum_as_v2,
            vips=tuple(v.ip for v in cfg.virtual_ipaddress),
        )
        now = self._loop.time()
        self._machine = VrrpMachine(instance_params(cfg, self.glob, self.primary), now)
        for warning in self._machine.warnings:
            self.log.warning("%s", warning)
        vrid = cfg.virtual_router_id
        self._metrics.vrrp_base_priority.labels(cfg.name, vrid).set(cfg.priority)
        self._metrics.set_vrrp_state(cfg.name, vrid, "INIT")
        for reason in RECEIVE_ERROR_REASONS:  # exported at 0, so rates work from the start
            self._metrics.vrrp_receive_errors.labels(cfg.interface, reason)
        self._metrics.vrrp_receive_dropped.labels(cfg.name, vrid, cfg.interface)
        self._metrics.vrrp_address_list_mismatch.labels(cfg.name, vrid)
        if self._socket.filtered:
            self.log.debug("kernel filter: only %s reach the socket (receive buffer %d bytes)",
                           ", ".join(map(str, self._socket.peers)),
                           self._socket.receive_buffer)
        self._tasks = [
            asyncio.create_task(self._work(), name=f"vrrp {cfg.name} actions"),
            asyncio.create_task(self._receive(), name=f"vrrp {cfg.name} receive"),
        ]
        if initial is not None:
            self._submit(self._machine.update_tracking(initial, now))
        self._submit(self._machine.start(now))
        self.log.info(
            "started: vrid %d, priority %d, %s %s from %s on %s",
            cfg.virtual_router_id, cfg.priority,
            "multicast to" if cfg.multicast else "unicast to",
            ", ".join(str(p.address) for p in cfg.unicast_peer) or str(self._socket.group),
            self.primary, cfg.interface,
        )

    async def _remove_stale_vips(self) -> None:
        cfg = self.cfg
        observed: dict[str, tuple[InterfaceAddress, ...]] = {}
        for ifname in stale_vip_interfaces(cfg, self._loopback_vips):
            try:
                observed[ifname] = await self._addresses.list(ifname)
            except AddressError as exc:  # a missing dev: the instance reports it later
                self.log.debug("not checking %s for stale VIPs: %s", ifname, exc)
        for a in stale_vips(cfg, observed, loopback=self._loopback_vips):
            self.log.warning(
                "removing stale VIP %s/%d from %s left by an earlier run",
                a.address, a.prefixlen, a.ifname,
            )
            try:
                await self._addresses.remove(a.ifname, a.address, a.prefixlen)
            except AddressError as exc:
                self.log.error(
                    "cannot remove stale VIP %s/%d from %s: %s (remove it by hand: "
                    "ip addr del %s/%d dev %s)", a.address, a.prefixlen, a.ifname, exc,
                    a.address, a.prefixlen, a.ifname,
                )

    async def stop(self) -> None:
        """Leave cleanly: a master sends priority 0 and removes its addresses."""
        if self._machine is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._submit(self._machine.shutdown(self._loop.time()))
        worker = self._tasks[0] if self._tasks else None
        if worker is not None and not worker.done():
            # The actions (priority-0 advert, VIP removal) run on the worker; wait for
            # them, or for the worker's death, whichever comes first.
            joined = asyncio.ensure_future(self._queue.join())
            await asyncio.wait({joined, worker}, return_when=asyncio.FIRST_COMPLETED)
            await cancel_and_wait({joined}, within=1.0, what="VRRP action queue")
        await cancel_and_wait(self._tasks, within=STOP_TIMEOUT, what=f"VRRP {self.cfg.name}")
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # ------------------------------------------------------------------ reload

    async def reconfigure(self, new: VrrpInstance, glob: GlobalConfig) -> None:
        """Take over soft settings in place; a master adds and removes VIPs itself.

        The caller recomputes tracking afterwards (the base priority may have changed).
        """
        old = self.cfg
        self.cfg = new
        self.glob = glob
        self._vip_cfg = {v.ip: v for v in new.virtual_ipaddress}
        vips = tuple(v.ip for v in new.virtual_ipaddress)
        if self._rules is not None:
            self._rules = replace(self._rules, vips=vips)
        if self._machine is not None:
            self._machine.set_virtual_addresses(vips)
        self._notify_scripts = NotifyScripts(
            master=new.notify_master, backup=new.notify_backup, fault=new.notify_fault,
            stop=new.notify_stop, generic=new.notify,
        )
        self._metrics.vrrp_base_priority.labels(new.name, new.virtual_router_id).set(new.priority)
        if self.state is not State.MASTER:
            return
        before = {v.ip: v for v in (*old.virtual_ipaddress, *old.virtual_ipaddress_excluded)}
        after = {v.ip: v for v in (*new.virtual_ipaddress, *new.virtual_ipaddress_excluded)}
        if new.no_accept_mode and self._firewall is not None:  # new VIPs blocked first
            await self._firewall.block(new.name, list(after))
        for ip, vip in before.items():
            if after.get(ip) != vip:
                await self._addresses.remove(
                    vip.dev or old.interface, ip, vip.address.network.prefixlen
                )
        added = []
        for ip, vip in after.items():
            if before.get(ip) != vip:
                await self._addresses.add(
                    vip.dev or new.interface, ip, vip.address.network.prefixlen,
                    label=vip.label, scope=_scope(vip.scope),
                )
                added.append(ip)
        if added:
            await self._announce(tuple(added), max(1, glob.vrrp_garp_master_repeat))
            self.log.info("reload: now also holding %s", ", ".join(map(str, added)))

    # ------------------------------------------------------------------ inputs

    def update_tracking(self, result: EffectivePriority) -> None:
        if self._machine is not None:
            self._submit(self._machine.update_tracking(result, self._loop.time()))

    def set_fault(self, source: str, active: bool) -> None:
        if self._machine is not None:
            self._submit(self._machine.set_fault(source, active, self._loop.time()))

    def _submit(self, actions: list[Action]) -> None:
        if actions:
            self._queue.put_nowait(actions)
        self._rearm()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._machine.next_deadline() if self._machine is not None else None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._machine is not None:
            self._submit(self._machine.timer(self._loop.time()))

    async def _receive(self) -> None:
        assert self._socket is not None
        handled = 0
        while True:
            handled += 1
            if handled % RECEIVE_BATCH == 0:
                await asyncio.sleep(0)  # recv() does not yield while packets are queued
            try:
                packet = await self._socket.recv()
            except VrrpSocketError as exc:
                self.log.warning("receive failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if packet.dropped:
                self._metrics.vrrp_receive_dropped.labels(
                    self.cfg.name, self.cfg.virtual_router_id, self.cfg.interface
                ).inc(packet.dropped)
            try:
                self._handle_packet(packet)
            except Exception:  # a bug must not stop the instance from hearing its peer
                self.log.exception("error handling a packet from %s", packet.src)
                self._count_error("internal")

    def _handle_packet(self, packet: Received) -> None:
        if self._machine is None or self._rules is None:
            return
        result = admit(self._rules, packet.payload, src=packet.src, dst=packet.dst,
                       ttl=packet.ttl)
        if isinstance(result, Ignored):
            return
        if isinstance(result, Rejected):
            self._count_error(result.reason, result.detail)
            return
        self._check_address_list(result, packet.src)
        self._metrics.vrrp_adverts_received.labels(
            self.cfg.name, self.cfg.virtual_router_id).inc()
        self._submit(self._machine.advert_received(result, packet.src, self._loop.time()))

    def _check_address_list(self, advert: Advert, src: IPAddress) -> None:
        """Count and log (once per sender and difference) an address list that is not
        ours; the advert is still processed, as keepalived does."""
        full = compare_addresses(
            skip_check_adv_addr=self.cfg.skip_check_adv_addr,
            master=self.state is State.MASTER,
            same_master=src == self.master_address,
        )
        assert self._rules is not None
        mismatch = address_list_mismatch(advert, self._rules.vips, compare_addresses=full)
        if mismatch is None:
            return
        self._metrics.vrrp_address_list_mismatch.labels(
            self.cfg.name, self.cfg.virtual_router_id).inc()
        if self._address_mismatch_logged != (src, mismatch):
            self._address_mismatch_logged = (src, mismatch)
            self.log.warning(
                "advert from %s for VRID %d lists other addresses than virtual_ipaddress"
                " (%s): the nodes' configurations differ", src, self.cfg.virtual_router_id,
                mismatch)

    def _count_error(self, reason: str, detail: str = "") -> None:
        self._metrics.vrrp_receive_errors.labels(self.cfg.interface, reason).inc()
        if detail:
            self.log.debug("dropped advert (%s): %s", reason, detail)

    # ------------------------------------------------------------------ actions

    async def _work(self) -> None:
        while True:
            actions = await self._queue.get()
            try:
                for action in actions:
                    try:
                        await self._perform(action)
                    except Exception:  # log and go on: the next action may still matter
                        self.log.exception("failed to carry out %s", action)
            finally:
                self._queue.task_done()

    async def _perform(self, action: Action) -> None:
        cfg = self.cfg
        match action:
            case SendAdvert(priority=priority, max_advert_int=interval):
                self._send_advert(priority, interval)
            case AddVips():
                vips = (*cfg.virtual_ipaddress, *cfg.virtual_ipaddress_excluded)
                if cfg.no_accept_mode and self._firewall is not None:
                    # Blocked before they exist: no moment where the VIPs answer.
                    await self._firewall.block(cfg.name, [v.ip for v in vips])
                for vip in vips:
                    await self._addresses.add(
                        vip.dev or cfg.interface, vip.ip, vip.address.network.prefixlen,
                        label=vip.label, scope=_scope(vip.scope),
                    )
            case RemoveVips():
                for vip in (*cfg.virtual_ipaddress, *cfg.virtual_ipaddress_excluded):
                    await self._addresses.remove(
                        vip.dev or cfg.interface, vip.ip, vip.address.network.prefixlen
                    )
                if self._firewall is not None:
                    await self._firewall.unblock(cfg.name)
            case SendGratuitous(addresses=addrs, repeat=repeat):
                task = asyncio.create_task(self._announce(addrs, repeat))
                self._announcing.add(task)
                task.add_done_callback(self._announcing.discard)
            case StateChanged(old=old, new=new, reason=reason, detail=detail):
                self._state_changed(old, new, reason, detail)
            case PriorityChanged(old=old, new=new):
                self.log.info("effective priority %d -> %d", old, new)
                self._metrics.vrrp_priority.labels(cfg.name, cfg.virtual_router_id).set(new)
            case Discarded(reason=reason, detail=detail):
                self._count_error(reason, detail)
            case Diagnostic(reason=reason, detail=detail):
                self.log.warning("%s: %s", reason.replace("_", " "), detail)

    def _send_advert(self, priority: int, interval: float) -> None:
        if self._socket is None:
            return
        cfg = self.cfg
        auth = cfg.authentication if cfg.version == 2 else None
        advert = Advert(
            version=cfg.version,
            vrid=cfg.virtual_router_id,
            priority=priority,
            max_advert_int=interval,
            addresses=tuple(v.ip for v in cfg.virtual_ipaddress),
            auth_type=AuthType.PASS if auth is not None else AuthType.NONE,
            auth_data=auth.auth_pass.encode()[:8] if auth is not None else b"",
        )
        dests = self._socket.destinations()
        assert self.primary is not None
        # The v3 checksum covers the pseudo-header, so unicast needs one encoding per peer.
        for dst in dests:
            payload = encode_advert(
                advert, src=self.primary, dst=dst, v3_checksum_as_v2=cfg.v3_checksum_as_v2
            )
            try:
                self._socket.send_to(payload, dst)
            except VrrpSocketError as exc:
                self.log.warning("advert to %s failed: %s", dst, exc)
                continue
        self._metrics.vrrp_adverts_sent.labels(cfg.name, cfg.virtual_router_id).inc()

    async def _announce(self, addrs: tuple[IPAddress, ...], repeat: int) -> None:
        v6 = bool(addrs) and addrs[0].version == 6  # an instance's VIPs are one family
        interval = self.glob.vrrp_gna_interval if v6 else self.glob.vrrp_garp_interval
        with arp.Announcer() as announcer:
            for i in range(repeat):
                for ip in addrs:
                    dev = self._vip_cfg[ip].dev if ip in self._vip_cfg else None
                    try:
                        announcer.announce(dev or self.cfg.interface, ip)
                    except Exception as exc:  # ARP failing must not take the instance down
                        self.log.warning("gratuitous announcement of %s failed: %s", ip, exc)
                if interval and i + 1 < repeat:
                    await asyncio.sleep(interval)

    def _state_changed(self, old: State, new: State, reason: str, detail: str) -> None:
        cfg = self.cfg
        level = logging.WARNING if new in (State.FAULT,) else logging.INFO
        self.log.log(
            level, "%s -> %s (%s%s)", old.value, new.value, reason.replace("_", " "),
            f": {detail}" if detail else "",
        )
        vrid = cfg.virtual_router_id
        self._metrics.set_vrrp_state(cfg.name, vrid, new.value)
        self._metrics.vrrp_transitions.labels(cfg.name, vrid, old.value, new.value).inc()
        if State.MASTER in (old, new):
            self._metrics.vrrp_master_changes.labels(cfg.name, vrid).inc()
        self._metrics.vrrp_priority.labels(cfg.name, vrid).set(self.priority)
        notify_state = _NOTIFY_STATE.get(new)
        if notify_state is not None:
            self._notifier.notify(
                self._notify_scripts, "INSTANCE", cfg.name, notify_state, self.priority
            )
        if self._on_state is not None:
            self._on_state(cfg.name, new)
