"""Operating a running ``mailha serve`` pair: status, Prometheus, reload, systemd notify.

* ``mailha status --json`` and /metrics of both nodes (the Prometheus scrape of a real,
  fully featured pair is a kernel test: tests/kernel/test_prometheus_real.py).
* A broken config on reload leaves the old one serving, counts the failure and says why;
  ``mailha reload`` exits 1 with the diagnostics.
* A reload that adds a VIP and changes the priority is applied in place: no transition, no
  VIP flap, the new VIP on the master.
* sd_notify: READY=1 after start, WATCHDOG=1 pings at half WATCHDOG_USEC, RELOADING=1 then
  READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM — against a fake NOTIFY_SOCKET.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator

import pytest

from lab import netns
from lab.cluster import ClusterOptions, MailhaCluster, metric_value
from lab.topology import SeedTopology

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
async def topo() -> AsyncIterator[SeedTopology]:
    async with SeedTopology("mhO") as t:
        yield t


async def test_status_and_metrics_of_a_real_pair(topo: SeedTopology) -> None:
    opts = ClusterOptions(metrics_on_node_address=True)
    async with MailhaCluster(topo, opts) as cluster:
        await cluster.wait_master("n1")
        status = await cluster.status("n1")
        assert status["ok"] is True
        inst = status["instances"][0]
        assert (inst["name"], inst["state"], inst["vrid"]) == ("VI_postfix", "MASTER", 173)
        assert inst["vips"] == [str(topo.vip_interface)]
        assert inst["fault_reasons"] == [] and inst["track_scripts"] == []
        assert [(i["up"], i["primary"]) for i in inst["track_interfaces"]] == [(True, True)]
        backup = await cluster.status("n2")
        assert backup["instances"][0]["master"] == str(topo.address("n1"))
        text = await cluster.metrics("n1")
        assert metric_value(text, "mailha_vrrp_state",
                            {"vrrp_instance": "VI_postfix", "vrid": "173", "state": "MASTER"}) == 1
        assert metric_value(text, "mailha_vrrp_adverts_sent_total") > 0
        assert metric_value(await cluster.metrics("n2"), "mailha_vrrp_adverts_received_total") > 0


async def test_bad_reload_keeps_serving_and_good_reload_does_not_flap(
    topo: SeedTopology,
) -> None:
    async with MailhaCluster(topo) as cluster:
        await cluster.wait_master("n1")
        await asyncio.sleep(1.5)
        path = cluster.config_path("n1")
        good = path.read_text()
        sock = str(topo.node_dir("n1") / "mailha.sock")

        # A broken file: rejected with file/line/key, the old config keeps running.
        path.write_text(good.replace("priority = 150", "priority = 300"))
        result = await topo.exec(
            "n1", [cluster.python, "-m", "mailha", "reload", "--socket", sock], check=False
        )
        assert result.returncode == 1
        assert "priority" in result.stderr and "must be 1..255" in result.stderr
        assert f"{path}:" in result.stderr
        text = await cluster.metrics("n1")
        assert metric_value(text, "mailha_config_reloads_total", {"result": "failure"}) == 1
        assert metric_value(text, "mailha_config_last_reload_successful") == 0
        assert await cluster.masters() == ["n1"]
        assert "reload of" in cluster.log("n1") and "rejected" in cluster.log("n1")

        # A good change: a second VIP and a new priority, applied without a transition.
        before = metric_value(text, "mailha_vrrp_transitions_total")
        extra = "10.12.49.38/24"
        changed = good.replace(
            f'virtual_ipaddress = ["{topo.vip_interface}"]',
            f'virtual_ipaddress = ["{topo.vip_interface}", "{extra}"]',
        ).replace("priority = 150", "priority = 160")
        assert changed != good
        path.write_text(changed)
        await cluster.reload("n1")  # SIGHUP this time
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            addrs = {str(a.interface) for a in await topo.addresses("n1")}
            if extra in addrs:
                break
            assert loop.time() < deadline, f"{extra} never appeared: {addrs}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        text = await cluster.metrics("n1")
        assert metric_value(text, "mailha_vrrp_transitions_total") == before
        assert metric_value(text, "mailha_config_reloads_total", {"result": "success"}) == 1
        assert metric_value(text, "mailha_config_last_reload_successful") == 1
        assert metric_value(text, "mailha_vrrp_base_priority") == 160
        assert await cluster.masters() == ["n1"]
        assert "updated instance VI_postfix in place" in cluster.log("n1")
        # The backup sees the new VIP list in adverts and did not move either.
        assert (await cluster.status("n2"))["instances"][0]["state"] == "BACKUP"


async def test_sd_notify_ready_watchdog_reload_stopping(topo: SeedTopology) -> None:
    notify_path = topo.node_dir("n1") / "notify.sock"
    # The daemon runs in the node's namespace, but an AF_UNIX path socket is reachable
    # across network namespaces (it lives in the filesystem).
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    got: list[tuple[float, str]] = []

    async def receive_until(pred: str, limit: float) -> None:
        deadline = loop.time() + limit
        while not any(pred in msg for _, msg in got):
            assert loop.time() < deadline, f"no {pred!r} within {limit}s; got {got}"
            try:
                data = await asyncio.wait_for(loop.sock_recv(listener, 4096), 0.5)
                got.append((time.monotonic(), data.decode()))
            except TimeoutError:
                pass

    cluster = MailhaCluster(topo, nodes=["n1"])
    cluster.write_configs()
    try:
        await cluster.start(
            "n1", env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
        )
        await receive_until("READY=1", 20)
        got.clear()
        await asyncio.sleep(2.0)
        while True:  # everything queued meanwhile
            try:
                got.append((time.monotonic(), listener.recv(4096).decode()))
            except BlockingIOError:
                break
        pings = [t for t, msg in got if "WATCHDOG=1" in msg]
        assert len(pings) >= 5, got  # every 0.2 s over ~2 s
        got.clear()
        cluster.processes["n1"].send_signal(signal.SIGHUP)
        await receive_until("RELOADING=1", 10)
        await receive_until("READY=1", 10)
        reloading = next(msg for _, msg in got if "RELOADING=1" in msg)
        assert "MONOTONIC_USEC=" in reloading
        got.clear()
        cluster.processes["n1"].send_signal(signal.SIGTERM)
        await receive_until("STOPPING=1", 10)
    finally:
        await cluster.close()
        listener.close()
    assert netns.list_netns("mhO")  # the topology is still ours to tear down


async def test_a_taken_metrics_port_does_not_keep_vrrp_from_running(topo: SeedTopology) -> None:
    """Issue 9, defect 3: 9650 is also the keepalived exporter's port. A node whose
    metrics port is taken still joins the cluster and takes over as master; the missing
    endpoint is logged, shown in status, and comes up once the port is free."""
    blocker = topo.socket("n1")
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 9650))
    blocker.listen()
    try:
        async with MailhaCluster(topo) as cluster:
            await cluster.wait_master("n1")
            status = await cluster.status("n1")
            assert status["instances"][0]["state"] == "MASTER"
            metrics = status["components"]["metrics endpoint 127.0.0.1:9650"]
            assert metrics["up"] is False and "in use" in metrics["error"], metrics
            assert "metrics endpoint 127.0.0.1:9650 is unavailable" in cluster.log("n1")
            blocker.close()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30  # the retry backoff tops out at 10 s
            while not (await cluster.status("n1"))["components"][
                    "metrics endpoint 127.0.0.1:9650"]["up"]:
                assert loop.time() < deadline, "the metrics endpoint never came up"
                await asyncio.sleep(0.2)
            text = await cluster.metrics("n1")
            assert metric_value(text, "mailha_component_up", {"component": "metrics"}) == 1
            assert await cluster.masters() == ["n1"]
    finally:
        blocker.close()
