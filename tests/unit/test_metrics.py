"""mailha.metrics: the exposition mailha renders and the HTTP endpoint that serves it.

The endpoint is exercised over real loopback TCP with hand-written requests, because the
point is how it copes with what scrapers (and port scanners) actually send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailha import __version__
from mailha.metrics import VRRP_STATES, IpvsSnapshot, Metrics, MetricsServer

SVC = "TCP 10.12.49.37:25"
RS1, RS2 = "10.12.49.35:25", "10.12.49.36:25"


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Rendered samples keyed by (name, labels): what a scraper would store."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def families(metrics: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(metrics.render().decode())}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


# ---------------------------------------------------------------------- exposition


def test_render_has_every_family_with_its_type() -> None:
    # The text format has no "info" type (mailha_build_info renders as a gauge), and
    # prometheus-client adds a ``*_created`` gauge per unlabelled counter/histogram.
    fams = {n: t for n, t in families(Metrics()).items() if not n.endswith("_created")}
    expected = {
        "mailha_build_info": "gauge",
        "mailha_vrrp_state": "gauge",
        "mailha_vrrp_priority": "gauge",
        "mailha_vrrp_base_priority": "gauge",
        "mailha_vrrp_transitions": "counter",
        "mailha_vrrp_master_changes": "counter",
        "mailha_vrrp_adverts_sent": "counter",
        "mailha_vrrp_adverts_received": "counter",
        "mailha_vrrp_receive_errors": "counter",
        "mailha_vrrp_receive_dropped": "counter",
        "mailha_vrrp_address_list_mismatch": "counter",
        "mailha_vrrp_track_script_up": "gauge",
        "mailha_vrrp_track_script_runs": "counter",
        "mailha_vrrp_track_interface_up": "gauge",
        "mailha_real_server_up": "gauge",
        "mailha_real_server_weight": "gauge",
        "mailha_real_server_effective_weight": "gauge",
        "mailha_real_server_drained": "gauge",
        "mailha_check_results": "counter",
        "mailha_check_failures": "counter",
        "mailha_check_duration_seconds": "histogram",
        "mailha_check_overruns": "counter",
        "mailha_local_watch_events": "counter",
        "mailha_virtual_server_quorum_up": "gauge",
        "mailha_virtual_server_live_weight": "gauge",
        "mailha_virtual_server_sorry_active": "gauge",
        "mailha_virtual_server_programmed": "gauge",
        "mailha_reconcile_operations": "counter",
        "mailha_reconcile_drift_repairs": "counter",
        "mailha_reconcile_errors": "counter",
        "mailha_reconcile_duration_seconds": "histogram",
        "mailha_config_reloads": "counter",
        "mailha_config_last_reload_successful": "gauge",
        "mailha_config_last_reload_timestamp_seconds": "gauge",
        "mailha_start_time_seconds": "gauge",
        "mailha_component_up": "gauge",
        "mailha_asyncio_tasks": "gauge",
        "mailha_ipvs_connections": "counter",
        "mailha_ipvs_incoming_packets": "counter",
        "mailha_ipvs_outgoing_packets": "counter",
        "mailha_ipvs_incoming_bytes": "counter",
        "mailha_ipvs_outgoing_bytes": "counter",
        "mailha_ipvs_backend_connections_active": "gauge",
        "mailha_ipvs_backend_connections_inactive": "gauge",
        "mailha_ipvs_backend_weight": "gauge",
        "mailha_ipvs_backend_connections": "counter",
        "mailha_ipvs_backend_incoming_bytes": "counter",
        "mailha_ipvs_backend_outgoing_bytes": "counter",
        "mailha_ipvs_table_fingerprint": "gauge",
    }
    assert fams == expected


def test_defaults_a_fresh_daemon_exports() -> None:
    got = samples(Metrics())
    assert got[key("mailha_build_info", version=__version__)] == 1
    assert got[key("mailha_config_last_reload_successful")] == 1
    assert got[key("mailha_config_reloads_total", result="success")] == 0
    assert got[key("mailha_config_reloads_total", result="failure")] == 0
    assert got[key("mailha_start_time_seconds")] > 1.6e9


def test_vrrp_state_is_one_hot_and_labelled_vrrp_instance_and_vrid() -> None:
    """One series per state, exactly one at 1; ``instance`` is left to Prometheus."""
    m = Metrics()
    m.set_vrrp_state("VI_SMTP", 173, "BACKUP")
    m.set_vrrp_state("VI_SMTP", 173, "MASTER")
    m.set_vrrp_state("VI_OTHER", 51, "FAULT")
    got = samples(m)
    for vi, vrid, current in (("VI_SMTP", "173", "MASTER"), ("VI_OTHER", "51", "FAULT")):
        values = {s: got[key("mailha_vrrp_state", vrrp_instance=vi, vrid=vrid, state=s)]
                  for s in VRRP_STATES}
        assert values == {s: (1.0 if s == current else 0.0) for s in VRRP_STATES}
    assert not any("instance" in dict(labels) for _, labels in got)


def _populate_vrrp(m: Metrics, name: str, vrid: int) -> None:
    """Touch every per-instance VRRP metric the way the driver does."""
    m.set_vrrp_state(name, vrid, "MASTER")
    m.vrrp_priority.labels(name, vrid).set(150)
    m.vrrp_base_priority.labels(name, vrid).set(100)
    m.vrrp_transitions.labels(name, vrid, "BACKUP", "MASTER").inc()
    m.vrrp_master_changes.labels(name, vrid).inc()
    m.vrrp_adverts_sent.labels(name, vrid).inc()
    m.vrrp_adverts_received.labels(name, vrid).inc()
    m.vrrp_address_list_mismatch.labels(name, vrid).inc()
    m.vrrp_receive_dropped.labels(name, vrid, "eth0").inc()


def test_every_series_labelled_vrrp_instance_also_carries_the_vrid() -> None:
    """Issue 10: two clusters that both name their instance VI_postfix (VRIDs 173 and 51)
    are told apart by ``vrid`` on every series an alert or a panel groups by instance."""
    m = Metrics()
    _populate_vrrp(m, "VI_postfix", 173)
    _populate_vrrp(m, "VI_postfix", 51)
    labelled = [(name, dict(labels)) for name, labels in samples(m)
                if "vrrp_instance" in dict(labels)]
    families_seen = {name.removesuffix("_total").removesuffix("_created")
                     for name, _ in labelled}
    assert families_seen == {
        "mailha_vrrp_state", "mailha_vrrp_priority", "mailha_vrrp_base_priority",
        "mailha_vrrp_transitions", "mailha_vrrp_master_changes", "mailha_vrrp_adverts_sent",
        "mailha_vrrp_adverts_received", "mailha_vrrp_address_list_mismatch",
        "mailha_vrrp_receive_dropped",
    }
    for name, labels in labelled:
        assert labels.get("vrid") in ("173", "51"), (name, labels)
    got = samples(m)
    for vrid in ("173", "51"):
        assert got[key("mailha_vrrp_state", vrrp_instance="VI_postfix", vrid=vrid,
                       state="MASTER")] == 1
        assert got[key("mailha_vrrp_receive_dropped_total", vrrp_instance="VI_postfix",
                       vrid=vrid, interface="eth0")] == 1


def test_forgetting_an_instance_drops_its_series_and_only_its() -> None:
    """An instance removed (or restarted under another VRID) by a reload must not leave
    series behind: a {vrid="173"} group stuck at STOPPED on every node reads as "no
    master" to MailhaNoMaster for ever."""
    m = Metrics()
    _populate_vrrp(m, "VI_postfix", 173)
    _populate_vrrp(m, "VI_postfix", 51)
    _populate_vrrp(m, "VI_other", 173)
    m.set_vrrp_state("VI_postfix", 173, "STOPPED")
    m.forget_vrrp_instance("VI_postfix", 173)
    left = {(dict(labels)["vrrp_instance"], dict(labels)["vrid"])
            for _, labels in samples(m) if "vrrp_instance" in dict(labels)}
    assert left == {("VI_postfix", "51"), ("VI_other", "173")}
    m.forget_vrrp_instance("VI_absent", 9)  # nothing there: no error


def test_counters_have_no_state_label() -> None:
    """Exporters that put ``state`` on counters mint new series at each failover."""
    for family in text_string_to_metric_families(Metrics().render().decode()):
        if family.type == "counter" and family.name != "mailha_vrrp_transitions":
            for s in family.samples:
                assert "state" not in s.labels, family.name


def test_ipvs_collector_reports_the_snapshot() -> None:
    m = Metrics()
    m.ipvs = IpvsSnapshot(
        services={SVC: {"conns": 120, "inpkts": 4000, "outpkts": 0, "inbytes": 900_000,
                        "outbytes": 7}},
        backends={
            (SVC, RS2): {"active": 3, "inactive": 9, "weight": 100, "conns": 70,
                         "inbytes": 500_000, "outbytes": 2},
            (SVC, RS1): {"active": 2, "weight": 50},  # missing keys read as 0
        },
    )
    got = samples(m)
    assert got[key("mailha_ipvs_connections_total", service=SVC)] == 120
    assert got[key("mailha_ipvs_incoming_packets_total", service=SVC)] == 4000
    assert got[key("mailha_ipvs_outgoing_packets_total", service=SVC)] == 0
    assert got[key("mailha_ipvs_incoming_bytes_total", service=SVC)] == 900_000
    assert got[key("mailha_ipvs_outgoing_bytes_total", service=SVC)] == 7
    b2 = {"service": SVC, "real_server": RS2}
    assert got[key("mailha_ipvs_backend_connections_active", **b2)] == 3
    assert got[key("mailha_ipvs_backend_connections_inactive", **b2)] == 9
    assert got[key("mailha_ipvs_backend_weight", **b2)] == 100
    assert got[key("mailha_ipvs_backend_connections_total", **b2)] == 70
    assert got[key("mailha_ipvs_backend_incoming_bytes_total", **b2)] == 500_000
    assert got[key("mailha_ipvs_backend_outgoing_bytes_total", **b2)] == 2
    b1 = {"service": SVC, "real_server": RS1}
    assert got[key("mailha_ipvs_backend_connections_active", **b1)] == 2
    assert got[key("mailha_ipvs_backend_connections_inactive", **b1)] == 0
    assert got[key("mailha_ipvs_backend_connections_total", **b1)] == 0


def test_ipvs_collector_reads_the_current_snapshot_at_each_render() -> None:
    """Replacing ``metrics.ipvs`` (what the refresh callback does) shows at the next scrape;
    a node that stops programming IPVS (now BACKUP) drops the series."""
    m = Metrics()
    m.ipvs = IpvsSnapshot(backends={(SVC, RS1): {"conns": 5}})
    assert samples(m)[key("mailha_ipvs_backend_connections_total", service=SVC,
                          real_server=RS1)] == 5
    m.ipvs = IpvsSnapshot()
    assert not [k for k in samples(m) if k[0].startswith("mailha_ipvs_")]
    assert "mailha_ipvs_backend_connections" in families(m)  # HELP/TYPE still there


def test_histogram_and_counter_samples() -> None:
    m = Metrics()
    m.check_duration.labels("SMTP_CHECK").observe(0.03)
    m.check_failures.labels(SVC, RS2, "SMTP_CHECK", "bad_banner").inc()
    got = samples(m)
    assert got[key("mailha_check_duration_seconds_bucket", checker="SMTP_CHECK", le="0.025")] == 0
    assert got[key("mailha_check_duration_seconds_bucket", checker="SMTP_CHECK", le="0.05")] == 1
    assert got[key("mailha_check_duration_seconds_count", checker="SMTP_CHECK")] == 1
    assert got[key("mailha_check_failures_total", service=SVC, real_server=RS2,
                   checker="SMTP_CHECK", reason="bad_banner")] == 1


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.reconcile_errors.inc()
    assert samples(a)[key("mailha_reconcile_errors_total")] == 1
    assert samples(b)[key("mailha_reconcile_errors_total")] == 0


# ---------------------------------------------------------------------- HTTP endpoint


async def raw_http(port: int, request: bytes, *, close_write: bool = False) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(request)
        await writer.drain()
        if close_write:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


@pytest.fixture
async def server() -> AsyncIterator[MetricsServer]:
    m = Metrics()
    m.set_vrrp_state("VI_SMTP", 173, "MASTER")
    srv = MetricsServer(m, "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    raw = await raw_http(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return parse_response(raw)


async def test_get_metrics(server: MetricsServer) -> None:
    assert server.port != 0
    status, headers, body = await get(server.port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=")
    assert int(headers["content-length"]) == len(body)
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert "mailha_vrrp_state" in names
    assert ('mailha_vrrp_state{state="MASTER",vrid="173",vrrp_instance="VI_SMTP"} 1.0'
            in body.decode())


async def test_scrape_counts_the_loops_tasks(server: MetricsServer) -> None:
    def tasks(body: bytes) -> float:
        for family in text_string_to_metric_families(body.decode()):
            if family.name == "mailha_asyncio_tasks":
                return float(family.samples[0].value)
        raise AssertionError("no mailha_asyncio_tasks")

    before = tasks((await get(server.port, "/metrics"))[2])
    assert before >= 2  # this test and the connection handler serving the scrape
    sleepers = [asyncio.create_task(asyncio.sleep(60)) for _ in range(5)]
    try:
        assert tasks((await get(server.port, "/metrics"))[2]) == before + 5
    finally:
        for task in sleepers:
            task.cancel()
        await asyncio.gather(*sleepers, return_exceptions=True)
    assert tasks((await get(server.port, "/metrics"))[2]) == before


async def test_query_string_is_ignored(server: MetricsServer) -> None:
    status, _, body = await get(server.port, "/metrics?name[]=up")
    assert status == 200 and b"mailha_build_info" in body


async def test_head_sends_headers_only(server: MetricsServer) -> None:
    _, _, get_body = await get(server.port, "/metrics")
    status, headers, body = await get(server.port, "/metrics", "HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) == len(get_body)


async def test_other_paths_are_404_and_index_links_metrics(server: MetricsServer) -> None:
    status, _, body = await get(server.port, "/favicon.ico")
    assert status == 404
    assert b"/metrics" in body
    status, headers, body = await get(server.port, "/")
    assert status == 200 and headers["content-type"] == "text/html"
    assert b'href="/metrics"' in body


async def test_other_methods_are_405(server: MetricsServer) -> None:
    status, _, _ = await get(server.port, "/metrics", "POST")
    assert status == 405


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello
        b"\r\n\r\n",
        b"GET\r\n\r\n",
        b"\x00\xff\xfe\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n",  # never finishes its headers, then half-closes
        b"GET /" + b"A" * 200_000 + b" HTTP/1.1\r\n\r\n",  # longer than the reader's limit
    ],
)
async def test_survives_garbage(server: MetricsServer, garbage: bytes) -> None:
    try:
        raw = await raw_http(server.port, garbage, close_write=True)
    except ConnectionError:
        raw = b""  # the server may reset a connection it gave up on: fine
    if raw:
        assert raw.startswith(b"HTTP/1.0 4")
    status, _, body = await get(server.port, "/metrics")
    assert status == 200 and b"mailha_vrrp_state" in body


async def test_client_that_disconnects_early_does_not_hurt(server: MetricsServer) -> None:
    for _ in range(20):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        writer.transport.abort()
    status, _, _ = await get(server.port, "/metrics")
    assert status == 200


async def _serve_with(refresh: Callable[[], Awaitable[None]], m: Metrics) -> bytes:
    srv = MetricsServer(m, "127.0.0.1", 0, refresh=refresh)
    await srv.start()
    try:
        status, _, body = await get(srv.port, "/metrics")
        assert status == 200
        return body
    finally:
        await srv.close()


async def test_refresh_runs_before_each_render() -> None:
    m = Metrics()
    calls = []

    async def refresh() -> None:
        calls.append(1)
        m.ipvs = IpvsSnapshot(backends={(SVC, RS1): {"conns": len(calls)}})

    body = await _serve_with(refresh, m)
    assert calls == [1]
    assert (f'mailha_ipvs_backend_connections_total{{real_server="{RS1}",service="{SVC}"}} 1.0'
            in body.decode())


async def test_refresh_that_raises_serves_stale_counters(caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics()
    m.ipvs = IpvsSnapshot(backends={(SVC, RS1): {"conns": 41}})

    async def refresh() -> None:
        raise OSError("netlink: No such file or directory")

    body = await _serve_with(refresh, m)
    assert "mailha_ipvs_backend_connections_total" in body.decode()
    assert " 41.0" in body.decode()
    assert "metrics refresh failed" in caplog.text


async def test_close_stops_listening() -> None:
    srv = MetricsServer(Metrics(), "127.0.0.1", 0)
    await srv.start()
    port = srv.port
    await srv.close()
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
