"""Prometheus metrics, served from the daemon's own event loop.

Names follow Prometheus conventions (``mailha_`` prefix, ``_total`` counters, ``_seconds``
units). No counter carries a VRRP ``state`` label — exporters that do that mint new series at
every failover; state is a one-hot gauge instead. IPVS counters are read from the kernel at
scrape time (through a snapshot the event loop refreshes just before rendering), with the
names of node_exporter's ipvs collector after the prefix, so existing queries port over.
VRRP metrics label the instance ``vrrp_instance``, not ``instance``: Prometheus owns the
``instance`` label (the scrape target) and would rename ours to ``exported_instance``.
Every series labelled ``vrrp_instance`` also carries the instance's ``vrid``
(:data:`VRRP_INSTANCE_LABELS`): names are local to one cluster's config, and two clusters
that both call their instance ``VI_postfix`` must not add up to "two masters". The VRID
is fixed per instance, so the label adds no series. Telling apart clusters that share
name *and* VRID (legal on different segments) is left to a Prometheus target label
(``cluster``), which the rules and the dashboard group by as well (deploy/README.md §8).

The endpoint is a few lines on :func:`asyncio.start_server` rather than prometheus-client's
threaded HTTP server: one event loop, no threads (see the project brief).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mailha import __version__

log = logging.getLogger("mailha.metrics")

VRRP_STATES = ("INIT", "BACKUP", "MASTER", "FAULT", "STOPPED")

#: The labels naming one VRRP instance, first on every per-instance VRRP metric, in this
#: order: ``metric.labels(name, vrid, ...)``.
VRRP_INSTANCE_LABELS = ("vrrp_instance", "vrid")


@dataclass
class IpvsSnapshot:
    """Kernel IPVS counters as last read: plain numbers keyed by label values."""

    services: dict[str, dict[str, int]] = field(default_factory=dict)
    backends: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    #: Maglev (mh) services: :func:`mailha.lvs.maglev.fingerprint` of the kernel's table.
    fingerprints: dict[str, int] = field(default_factory=dict)


@dataclass
class BgpSnapshot:
    """The BGP mode's state as the announcer last saw it (None on a node without it)."""

    bird_up: bool = False
    drained: bool = False
    #: VIP -> (ready, announced)
    vips: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    #: BIRD's BGP protocol name -> established
    sessions: dict[str, bool] = field(default_factory=dict)


class _BgpCollector(Collector):
    """The BGP mode's gauges, only on a node that announces by BGP: a VRRP-only node
    exporting ``mailha_bird_up 0`` would page someone for a BIRD it never needed."""

    def __init__(self, snapshot: Callable[[], BgpSnapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snap = self._snapshot()
        if snap is None:
            return
        ready = GaugeMetricFamily(
            "mailha_bgp_vip_ready", "1 while every announce=bgp service on the VIP is ready "
            "(IPVS programmed, min_healthy real servers up, director not drained)",
            labels=["vip"])
        announced = GaugeMetricFamily(
            "mailha_bgp_vip_announced",
            "1 while BIRD reports the VIP's static protocol up (its route exported)",
            labels=["vip"])
        for vip, (is_ready, is_announced) in sorted(snap.vips.items()):
            ready.add_metric([vip], 1 if is_ready else 0)
            announced.add_metric([vip], 1 if is_announced else 0)
        sessions = GaugeMetricFamily(
            "mailha_bgp_session_up", "1 while BIRD's BGP protocol is up (session established)",
            labels=["protocol"])
        for name, up in sorted(snap.sessions.items()):
            sessions.add_metric([name], 1 if up else 0)
        yield ready
        yield announced
        yield sessions
        yield GaugeMetricFamily("mailha_bird_up", "1 if BIRD's control socket answered the "
                                "last query", value=1 if snap.bird_up else 0)
        yield GaugeMetricFamily("mailha_director_drained", "1 while the director is drained "
                                "(mailha drain director): no VIP announced",
                                value=1 if snap.drained else 0)


class _IpvsCollector(Collector):
    def __init__(self, snapshot: Callable[[], IpvsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        snap = self._snapshot()
        svc_metrics = {
            "conns": CounterMetricFamily(
                "mailha_ipvs_connections", "Connections scheduled", labels=["service"]
            ),
            "inpkts": CounterMetricFamily(
                "mailha_ipvs_incoming_packets", "Packets in, per service", labels=["service"]
            ),
            "outpkts": CounterMetricFamily(
                "mailha_ipvs_outgoing_packets", "Packets out, per service", labels=["service"]
            ),
            "inbytes": CounterMetricFamily(
                "mailha_ipvs_incoming_bytes", "Bytes in, per service", labels=["service"]
            ),
            "outbytes": CounterMetricFamily(
                "mailha_ipvs_outgoing_bytes", "Bytes out, per service", labels=["service"]
            ),
        }
        for service, values in sorted(snap.services.items()):
            for key, family in svc_metrics.items():
                family.add_metric([service], values.get(key, 0))
        yield from svc_metrics.values()
        labels = ["service", "real_server"]
        active = GaugeMetricFamily(
            "mailha_ipvs_backend_connections_active", "Active connections", labels=labels
        )
        inactive = GaugeMetricFamily(
            "mailha_ipvs_backend_connections_inactive", "Inactive connections", labels=labels
        )
        weight = GaugeMetricFamily(
            "mailha_ipvs_backend_weight", "Weight in the kernel's table", labels=labels
        )
        conns = CounterMetricFamily(
            "mailha_ipvs_backend_connections", "Connections scheduled to the backend", labels=labels
        )
        inbytes = CounterMetricFamily(
            "mailha_ipvs_backend_incoming_bytes", "Bytes in via the backend", labels=labels
        )
        outbytes = CounterMetricFamily(
            "mailha_ipvs_backend_outgoing_bytes", "Bytes out via the backend", labels=labels
        )
        for (service, backend), values in sorted(snap.backends.items()):
            lv = [service, backend]
            active.add_metric(lv, values.get("active", 0))
            inactive.add_metric(lv, values.get("inactive", 0))
            weight.add_metric(lv, values.get("weight", 0))
            conns.add_metric(lv, values.get("conns", 0))
            inbytes.add_metric(lv, values.get("inbytes", 0))
            outbytes.add_metric(lv, values.get("outbytes", 0))
        yield from (active, inactive, weight, conns, inbytes, outbytes)
        fingerprint = GaugeMetricFamily(
            "mailha_ipvs_table_fingerprint",
            "Maglev (mh) services: a 52-bit hash of the lookup table as the kernel holds it "
            "(scheduler, flags, destinations in list order with their weights); directors "
            "that balance the same service must report the same value",
            labels=["service"])
        for service, value in sorted(snap.fingerprints.items()):
            fingerprint.add_metric([service], value)
        yield fingerprint


class Metrics:
    """Every metric mailha exports, in one registry of its own (tests make several)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.ipvs = IpvsSnapshot()
        self.bgp: BgpSnapshot | None = None
        Info("mailha_build", "mailha version", registry=r).info({"version": __version__})
        # VRRP
        vi = VRRP_INSTANCE_LABELS
        self.vrrp_state = Gauge(
            "mailha_vrrp_state", "1 for the instance's current state, 0 for the others",
            [*vi, "state"], registry=r)
        self.vrrp_priority = Gauge(
            "mailha_vrrp_priority", "Effective priority (advertised)", vi, registry=r)
        self.vrrp_base_priority = Gauge(
            "mailha_vrrp_base_priority", "Configured priority", vi, registry=r)
        self.vrrp_transitions = Counter(
            "mailha_vrrp_transitions", "State transitions",
            [*vi, "from_state", "to_state"], registry=r)
        self.vrrp_master_changes = Counter(
            "mailha_vrrp_master_changes", "Times this node became or stopped being master",
            vi, registry=r)
        self.vrrp_adverts_sent = Counter(
            "mailha_vrrp_adverts_sent", "Advertisements sent", vi, registry=r)
        self.vrrp_adverts_received = Counter(
            "mailha_vrrp_adverts_received", "Valid advertisements received", vi, registry=r)
        self.vrrp_receive_errors = Counter(
            "mailha_vrrp_receive_errors",
            "Received packets dropped, by RFC 5798 section 7.1 check or peer filter",
            ["interface", "reason"], registry=r)
        self.vrrp_address_list_mismatch = Counter(
            "mailha_vrrp_address_list_mismatch",
            "Adverts accepted although their address list differs from virtual_ipaddress "
            "(keepalived's addr_list_err): the nodes' configurations disagree",
            vi, registry=r)
        self.vrrp_receive_dropped = Counter(
            "mailha_vrrp_receive_dropped",
            "Packets the kernel dropped because the VRRP socket's receive queue was full "
            "(SO_RXQ_OVFL); any of them may have been a real advert",
            [*vi, "interface"], registry=r)
        self.vrrp_track_script_up = Gauge(
            "mailha_vrrp_track_script_up", "Debounced result of a vrrp_script (1 ok)", ["script"],
            registry=r)
        self.vrrp_track_script_runs = Counter(
            "mailha_vrrp_track_script_runs", "vrrp_script runs by outcome", ["script", "outcome"],
            registry=r)
        self.vrrp_track_interface_up = Gauge(
            "mailha_vrrp_track_interface_up", "Tracked interface link state", ["interface"],
            registry=r)
        # Health checks and pools
        rs = ["service", "real_server"]
        self.real_server_up = Gauge(
            "mailha_real_server_up", "1 when every checker of the real server passes", rs,
            registry=r)
        self.real_server_weight = Gauge(
            "mailha_real_server_weight", "Configured weight", rs, registry=r)
        self.real_server_effective_weight = Gauge(
            "mailha_real_server_effective_weight",
            "Weight wanted in IPVS (0 inhibited, -1 removed)", rs, registry=r)
        self.real_server_drained = Gauge(
            "mailha_real_server_drained",
            "1 while the real server is drained for maintenance (weight 0 in IPVS)", rs,
            registry=r)
        self.check_results = Counter(
            "mailha_check_results", "Checker results", [*rs, "checker", "outcome"], registry=r)
        self.check_failures = Counter(
            "mailha_check_failures", "Checker failures by reason", [*rs, "checker", "reason"],
            registry=r)
        self.check_duration = Histogram(
            "mailha_check_duration_seconds", "Duration of one check", ["checker"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r)
        self.check_overruns = Counter(
            "mailha_check_overruns", "Checks that overran their delay_loop slot", rs, registry=r)
        self.local_watch_events = Counter(
            "mailha_local_watch_events",
            "local_watch reports: kind process (the master's pidfd) or listener (sock_diag), "
            "event down or up", [*rs, "kind", "event"], registry=r)
        self.virtual_server_quorum_up = Gauge(
            "mailha_virtual_server_quorum_up", "1 while the pool has quorum", ["service"],
            registry=r)
        self.virtual_server_live_weight = Gauge(
            "mailha_virtual_server_live_weight", "Sum of the weights of live real servers",
            ["service"], registry=r)
        self.virtual_server_sorry_active = Gauge(
            "mailha_virtual_server_sorry_active", "1 while the sorry server replaces the pool",
            ["service"], registry=r)
        self.virtual_server_programmed = Gauge(
            "mailha_virtual_server_programmed", "1 while this node programs the service in IPVS",
            ["service"], registry=r)
        # Reconciliation and operations
        self.reconcile_operations = Counter(
            "mailha_reconcile_operations", "IPVS operations applied", ["operation"], registry=r)
        self.reconcile_drift = Counter(
            "mailha_reconcile_drift_repairs",
            "Periodic re-syncs that found the kernel differing from the desired table",
            registry=r)
        self.reconcile_errors = Counter(
            "mailha_reconcile_errors", "IPVS operations the kernel refused", registry=r)
        self.reconcile_duration = Histogram(
            "mailha_reconcile_duration_seconds", "Time to observe, plan and apply", registry=r)
        self.config_reloads = Counter(
            "mailha_config_reloads", "Configuration reloads by result", ["result"], registry=r)
        self.config_last_reload_successful = Gauge(
            "mailha_config_last_reload_successful", "1 if the last reload was applied",
            registry=r)
        self.config_last_reload_seconds = Gauge(
            "mailha_config_last_reload_timestamp_seconds", "Time of the last reload attempt",
            registry=r)
        self.start_time = Gauge(
            "mailha_start_time_seconds", "When the daemon started (Unix time)", registry=r)
        self.start_time.set_to_current_time()
        self.component_up = Gauge(
            "mailha_component_up",
            "1 while a non-critical part (metrics, control socket) works; 0 while it is "
            "unavailable and being retried", ["component"], registry=r)
        self.asyncio_tasks = Gauge(
            "mailha_asyncio_tasks",
            "asyncio tasks alive in the daemon's event loop, counted at scrape time "
            "(a number that keeps growing is a task leak)", registry=r)
        self.config_last_reload_successful.set(1)
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.registry.register(_IpvsCollector(lambda: self.ipvs))
        self.registry.register(_BgpCollector(lambda: self.bgp))

    def set_vrrp_state(self, instance: str, vrid: int, state: str) -> None:
        for s in VRRP_STATES:
            self.vrrp_state.labels(instance, vrid, s).set(1 if s == state else 0)

    def forget_vrrp_instance(self, instance: str, vrid: int) -> None:
        """Drop every series of an instance that no longer runs (removed, or restarted
        under another VRID, by a reload); a series left at STOPPED would count as a node
        without a master for ever."""
        wanted = {"vrrp_instance": instance, "vrid": str(vrid)}
        for metric in (self.vrrp_state, self.vrrp_priority, self.vrrp_base_priority,
                       self.vrrp_transitions, self.vrrp_master_changes, self.vrrp_adverts_sent,
                       self.vrrp_adverts_received, self.vrrp_address_list_mismatch,
                       self.vrrp_receive_dropped):
            # Not remove_by_labels: it is missing from older supported prometheus-clients.
            children = {tuple(s.labels.items()) for family in metric.collect()
                        for s in family.samples}
            for items in children:
                labels = dict(items)
                if all(labels.get(k) == v for k, v in wanted.items()):
                    metric.remove(*labels.values())

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``GET /metrics`` over a minimal HTTP/1.0 responder on the event loop.

    ``refresh`` runs before each render (the daemon reads IPVS counters there), bounded
    by a timeout so a stuck netlink read never hangs a scrape.
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str,
        port: int,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._refresh = refresh
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            line = request.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                await self._reply(writer, 405, b"method not allowed\n", "text/plain")
            elif parts[1].split("?")[0] == "/metrics":
                if self._refresh is not None:
                    try:
                        await asyncio.wait_for(self._refresh(), timeout=5)
                    except Exception as exc:  # serve stale counters rather than nothing
                        log.warning("metrics refresh failed: %s", exc)
                self.metrics.asyncio_tasks.set(len(asyncio.all_tasks()))
                body = self.metrics.render()
                await self._reply(writer, 200, body, CONTENT_TYPE_LATEST,
                                  head_only=parts[0] == "HEAD")
            elif parts[1] == "/":
                await self._reply(writer, 200, b'<a href="/metrics">/metrics</a>\n', "text/html")
            else:
                await self._reply(writer, 404, b"not found; try /metrics\n", "text/plain")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            with contextlib.suppress(ConnectionError):
                writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, code: int, body: bytes, ctype: str,
                     *, head_only: bool = False) -> None:
        # HEAD gets GET's headers, Content-Length included (RFC 9110 section 9.3.2).
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[code]
        head = (f"HTTP/1.0 {code} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        writer.write(head.encode() + (b"" if head_only else body))
        await writer.drain()
