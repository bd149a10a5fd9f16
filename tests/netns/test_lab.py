"""The lab itself: topologies, Postfix, keepalived, load tools, and that it always cleans up.

Tests without a marker are pure (parsers, renderers, the gap tracker). Tests marked
``root`` build real namespaces; each uses its own prefix (``mhH`` + a letter) so they can
run next to other engineers' namespace tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from lab import netns
from lab.errors import KeepalivedError, LabError, LoadError, NetnsError, PostfixError
from lab.keepalived import (
    Keepalived,
    KeepalivedConfig,
    TrackScript,
    VrrpInstance,
    parse_states,
    render_config,
    seed_config,
)
from lab.postfix import (
    Postfix,
    PostfixConfig,
    SmtpSink,
    parse_maillog,
    parse_sink_count,
    render_main_cf,
    render_master_cf,
)
from lab.seedlab import SeedLab
from lab.smtpload import (
    GapTracker,
    OutageProbe,
    build_message,
    parse_smtp_source,
    send_messages,
    smtp_source,
)
from lab.topology import SeedTopology, seed_spec
from mailha.net.checksum import internet_checksum

REPO = Path(__file__).resolve().parents[2]


def _root_links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return [link["ifname"] for link in json.loads(out.stdout) if link["ifname"].startswith(prefix)]


async def eventually(condition: Callable[[], bool], time_limit: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    async with asyncio.timeout(time_limit):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def _host_ip_forward() -> str:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text()


def assert_gone(prefix: str) -> None:
    assert netns.list_netns(prefix) == []
    assert _root_links(prefix) == []
    assert not (netns.work_root() / prefix).exists()


# =============================================================================== pure


def test_seed_spec_names_fit_and_stay_in_the_lab_subnet() -> None:
    spec = seed_spec("mhHz")
    assert [n.name for n in spec.nodes] == ["n1", "n2", "cl"]
    assert [str(n.address) for n in spec.nodes] == [
        "10.12.49.35/24",
        "10.12.49.36/24",
        "10.12.49.10/24",
    ]
    assert spec.namespaces == ("mhHzbr", "mhHzn1", "mhHzn2", "mhHzcl")
    assert spec.iface("n1") == "mhHzn1"
    assert spec.bridge_port("cl") == "mhHzclb"
    other = seed_spec("mhHz", "192.168.7.0/24")
    assert str(other.node("n2").address) == "192.168.7.36/24"


@pytest.mark.parametrize("prefix", ["", "ab", "1abc", "abcdefghi", "a-b", "a b"])
def test_bad_prefixes_are_refused_with_a_stable_reason(prefix: str) -> None:
    with pytest.raises(NetnsError) as info:
        seed_spec(prefix)
    assert info.value.reason == "invalid prefix"


def test_interface_names_longer_than_ifnamsiz_are_refused() -> None:
    assert netns.check_ifname("a" * 15) == "a" * 15
    for bad in ("a" * 16, "", "a/b", "a b", ".."):
        with pytest.raises(NetnsError, match="invalid interface name"):
            netns.check_ifname(bad)


def test_subnet_too_small_for_seed_hosts_is_refused() -> None:
    with pytest.raises(NetnsError, match="invalid subnet"):
        seed_spec("mhHz", "10.0.0.0/28")


def test_main_cf_discards_everything_and_logs_to_a_file(tmp_path: Path) -> None:
    cfg = PostfixConfig(hostname="n1.lab.test", mynetworks=("127.0.0.0/8", "10.12.49.0/24"))
    text = render_main_cf(
        cfg,
        queue_directory=tmp_path / "q",
        data_directory=tmp_path / "d",
        maillog_file=tmp_path / "maillog",
    )
    params = dict(line.split(" = ", 1) for line in text.splitlines())
    assert params["queue_directory"] == str(tmp_path / "q")
    assert params["maillog_file"] == str(tmp_path / "maillog")
    assert params["maillog_file_prefixes"] == str(tmp_path)
    assert params["mynetworks"] == "127.0.0.0/8, 10.12.49.0/24"
    assert params["smtpd_peername_lookup"] == "no"
    assert params["inet_interfaces"] == "all"
    for transport in ("default", "local", "relay", "virtual"):
        assert params[f"{transport}_transport"] == "discard"
    assert "relayhost" not in params


def test_main_cf_for_a_relaying_client_retries_fast(tmp_path: Path) -> None:
    cfg = PostfixConfig(hostname="cl.lab.test", relayhost="[10.12.49.37]:25")
    text = render_main_cf(
        cfg, queue_directory=tmp_path, data_directory=tmp_path, maillog_file=tmp_path / "log"
    )
    params = dict(line.split(" = ", 1) for line in text.splitlines())
    assert params["relayhost"] == "[10.12.49.37]:25"
    assert params["default_transport"] == "smtp"
    assert params["maximal_backoff_time"] == "2s"


def test_master_cf_has_postlog_and_no_chroot() -> None:
    text = render_master_cf(PostfixConfig(hostname="x.lab.test", listen=("smtp", "127.0.0.1:2525")))
    rows = [line.split() for line in text.splitlines() if line and not line[0].isspace()]
    assert rows[0][:2] == ["smtp", "inet"]
    assert rows[1][:2] == ["127.0.0.1:2525", "inet"]
    assert any(r[0] == "postlog" and r[1] == "unix-dgram" for r in rows)
    assert all(r[4] == "n" for r in rows), "every service must run unchrooted"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"hostname": "bad host"}, "invalid hostname"),
        ({"hostname": "x", "listen": ()}, "invalid listen"),
        ({"hostname": "x", "extra": (("Bad-Name", "1"),)}, "invalid parameter"),
        ({"hostname": "x", "extra": (("a", "1\nb = 2"),)}, "invalid parameter"),
    ],
)
def test_bad_postfix_config_is_refused(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(PostfixError) as info:
        PostfixConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.reason == reason


MAILLOG = """\
Nov 25 02:26:28 n1 postfix/postfix-script[5961]: starting the Postfix mail system
Nov 25 02:26:30 n1 postfix/smtpd[5994]: connect from unknown[10.12.49.10]
Nov 25 02:26:30 n1 postfix/smtpd[5994]: 4jZ3bs3ztGzJ9W9: client=unknown[10.12.49.10]
Nov 25 02:26:30 n1 postfix/cleanup[5998]: 4jZ3bs3ztGzJ9W9: message-id=<a.1@lab>
Nov 25 02:26:30 n1 postfix/qmgr[5965]: 4jZ3bs3ztGzJ9W9: from=<a@lab.test>, size=345, nrcpt=1 (queue active)
Nov 25 02:26:30 n1 postfix/smtpd[5996]: 4jZ3bs40sWzJ9KZ: client=unknown[10.12.49.35]
Nov 25 02:26:30 n1 postfix/smtpd[5996]: lost connection after DATA from unknown[10.12.49.35]
Nov 25 02:26:30 n1 postfix/discard[6002]: 4jZ3bs3ztGzJ9W9: to=<b@lab.test>, relay=none, delay=0.02, delays=0.01/0.01/0/0, dsn=2.0.0, status=sent (lab.test)
Nov 25 02:26:30 n1 postfix/qmgr[5965]: 4jZ3bs3ztGzJ9W9: removed
Nov 25 02:26:31 n1 postfix/smtpd[5994]: 4jZ3bs3ztGzJ9W9: client=unknown[10.12.49.10]
Nov 25 02:26:31 n1 postfix/cleanup[5998]: 4jZ3bs3ztGzJ9W9: message-id=<a.2@lab>
Nov 25 02:26:31 n1 postfix/qmgr[5965]: 4jZ3bs3ztGzJ9W9: from=<a@lab.test>, size=345, nrcpt=1 (queue active)
Nov 25 02:26:31 n1 postfix/smtp[7000]: 4jZ3bs3ztGzJ9W9: to=<c@lab.test>, relay=10.12.49.37[10.12.49.37]:25, delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to 10.12.49.37[10.12.49.37]:25: Connection refused)
Nov 25 02:26:32 n1 postfix/master[5776]: fatal: open lock file /x/master.lock: Permission denied
garbage line that is not from postfix at all
"""  # noqa: E501


def test_maillog_counts_queued_messages_with_client_and_message_id() -> None:
    summary = parse_maillog(MAILLOG)
    # The second smtpd session lost its connection before the message was queued.
    assert [(m.queue_id, m.client_address, m.message_id) for m in summary.received] == [
        ("4jZ3bs3ztGzJ9W9", "10.12.49.10", "<a.1@lab>"),
        ("4jZ3bs3ztGzJ9W9", "10.12.49.10", "<a.2@lab>"),
    ]
    assert summary.client_addresses == {"10.12.49.10": 2}
    assert summary.message_ids == {"<a.1@lab>", "<a.2@lab>"}
    assert [(d.status, d.recipient) for d in summary.deliveries] == [
        ("sent", "b@lab.test"),
        ("deferred", "c@lab.test"),
    ]
    assert summary.deliveries[1].relay == "10.12.49.37[10.12.49.37]:25"
    assert summary.fatal == ("fatal: open lock file /x/master.lock: Permission denied",)


def test_smtp_sink_counter_parses_the_last_report() -> None:
    assert parse_sink_count("") == 0
    assert parse_sink_count("sess=1 quit=0 mesg=1\rsess=2 quit=1 mesg=2\r") == 2


def test_smtp_source_output_parses_counter_and_errors() -> None:
    ok = parse_smtp_source("1\r2\r3\r\n", "", requested=3, returncode=0, elapsed=0.5)
    assert ok.ok and ok.completed == 3 and ok.rate == 6.0
    bad = parse_smtp_source(
        "1\r", "smtp-source: fatal: connect: Connection refused\n",
        requested=3, returncode=1, elapsed=1.0,
    )  # fmt: skip
    assert not bad.ok and bad.completed == 1
    assert bad.errors == ("smtp-source: fatal: connect: Connection refused",)


def _instance(**kw: object) -> VrrpInstance:
    base: dict[str, object] = {
        "interface": "lo",
        "virtual_router_id": 173,
        "priority": 100,
        "virtual_ipaddresses": ("10.12.49.37/24",),
    }
    base.update(kw)
    return VrrpInstance(**base)  # type: ignore[arg-type]


def test_keepalived_config_renders_the_seed_shape() -> None:
    chk = TrackScript("chk_service", "/opt/check", interval=3, weight=100)
    cfg = KeepalivedConfig(
        "r1",
        (
            _instance(
                name="VI_postfix",
                state="MASTER",
                unicast_src_ip="10.12.49.35",
                unicast_peers=("10.12.49.36",),
                track_scripts=(chk,),
                version=3,
                advert_int=0.1,
            ),
        ),
    )
    text = render_config(cfg)
    assert 'script "/opt/check"' in text and "weight 100" in text and "interval 3\n" in text
    assert "virtual_router_id 173" in text and "version 3" in text and "advert_int 0.1" in text
    assert "unicast_src_ip 10.12.49.35" in text
    assert "unicast_peer {\n        10.12.49.36\n    }" in text
    assert "track_script {\n        chk_service\n    }" in text
    assert "nopreempt" not in text
    # Balanced braces: keepalived silently misparses otherwise.
    assert text.count("{") == text.count("}")


def test_seed_keepalived_config_matches_the_howto() -> None:
    topo = SeedTopology("mhHz")  # not entered: names and addresses only
    conf = seed_config(topo, "n2", check_script=Path("/x/check"))
    (inst,) = conf.instances
    assert (inst.name, inst.state, inst.priority, inst.virtual_router_id) == (
        "VI_postfix", "BACKUP", 100, 173,
    )  # fmt: skip
    assert inst.interface == "mhHzn2" and inst.unicast_src_ip == "10.12.49.36"
    assert inst.unicast_peers == ("10.12.49.35",)
    assert inst.virtual_ipaddresses == ("10.12.49.37/24",)
    assert [(s.script, s.weight, s.interval) for s in inst.track_scripts] == [("/x/check", 100, 3)]
    assert seed_config(topo, "n1").instances[0].state == "MASTER"
    with pytest.raises(KeepalivedError, match="not a server node"):
        seed_config(topo, "cl")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"virtual_router_id": 0}, "invalid virtual_router_id"),
        ({"priority": 256}, "invalid priority"),
        ({"advert_int": 0.5}, "invalid advert_int"),  # v2 counts whole seconds
        ({"version": 3, "advert_int": 0.001}, "invalid advert_int"),
        ({"virtual_ipaddresses": ()}, "invalid instance"),
        ({"unicast_peers": ("not-an-ip",)}, "invalid address"),
        ({"nopreempt": True, "state": "MASTER"}, "invalid instance"),
        ({"interface": "x" * 16}, "invalid interface name"),
    ],
)
def test_bad_vrrp_instance_is_refused(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(LabError) as info:
        _instance(**kwargs)
    assert info.value.reason == reason


def test_track_script_must_be_an_absolute_unquoted_path() -> None:
    with pytest.raises(KeepalivedError, match="invalid script"):
        TrackScript("chk", "check.sh")
    with pytest.raises(KeepalivedError, match="invalid script"):
        TrackScript("chk", '/bin/sh -c "x"')


def test_keepalived_states_are_read_from_its_log() -> None:
    log = (
        "Wed Nov 25 02:34:30 2026: (VI_postfix) Entering BACKUP STATE (init)\n"
        "Wed Nov 25 02:34:33 2026: (VI_postfix) Entering MASTER STATE\n"
        "Wed Nov 25 02:34:40 2026: (VI_2) Entering BACKUP STATE (init)\n"
        "Wed Nov 25 02:34:41 2026: (VI_postfix) Entering FAULT STATE\n"
    )
    assert parse_states(log) == {"VI_postfix": ["BACKUP", "MASTER", "FAULT"], "VI_2": ["BACKUP"]}


def test_gap_tracker_reports_outages_between_successes() -> None:
    t = GapTracker()
    t.failure(0.0)  # before the service was ever seen up: no outage
    for at in (1.00, 1.01, 1.02):
        t.success(at)
    for at in (1.03, 1.04, 1.05):
        t.failure(at)
    t.success(1.50)
    t.success(1.51)
    r = t.report()
    assert (r.probes, r.successes, r.failures) == (9, 5, 4)
    assert r.longest_gap == pytest.approx(0.48)
    assert len(r.outages) == 1
    assert r.outages[0].failed_probes == 3
    assert r.outages[0].duration == pytest.approx(0.48)
    assert r.longest_outage == pytest.approx(0.48)
    with pytest.raises(LoadError, match="time went backwards"):
        t.success(1.0)


def test_gap_tracker_without_failures_has_no_outage() -> None:
    t = GapTracker()
    for i in range(10):
        t.success(i * 0.01)
    r = t.report()
    assert r.outages == () and r.longest_outage == 0.0
    assert r.longest_gap == pytest.approx(0.01)


def test_built_message_carries_its_message_id_and_size() -> None:
    msg = build_message("<x.1@lab>", "a@lab.test", "b@lab.test", size=4000)
    assert b"\r\nMessage-ID: <x.1@lab>\r\n" in msg
    assert 4000 <= len(msg) < 4100
    assert msg.split(b"\r\n\r\n", 1)[1]


def test_icmp_echo_request_checksum_verifies() -> None:
    packet = netns.icmp_echo_request(0x1234, 7)
    assert internet_checksum(packet) == 0  # a valid checksum sums to zero
    reply = bytes([0x45]) + bytes(19) + bytes([0, 0]) + packet[2:]
    assert netns.is_echo_reply(reply, 0x1234, 7)
    assert not netns.is_echo_reply(reply, 0x1234, 8)
    assert not netns.is_echo_reply(b"\x45", 0x1234, 7)


# =============================================================================== root


@pytest.mark.root
async def test_seed_topology_connects_everyone_and_leaves_nothing_behind() -> None:
    async with SeedTopology("mhHa") as topo:
        assert netns.list_netns("mhHa") == ["mhHabr", "mhHacl", "mhHan1", "mhHan2"]
        assert _root_links("mhHa") == [], "nothing of the lab may appear in the root namespace"
        for src, dst in [("n1", "n2"), ("n2", "n1"), ("cl", "n1"), ("cl", "n2")]:
            # reachable, within a bound: a single 1 s echo can miss on a loaded host
            await topo.wait_ping(src, topo.address(dst), time_limit=10)
        addrs = await topo.addresses("n1")
        assert any(
            a.ifname == "mhHan1" and a.interface == ipaddress.IPv4Interface("10.12.49.35/24")
            for a in addrs
        )
        assert (await topo.addresses("cl"))[0].ifname == "lo"  # lo is there, and up:
        await topo.wait_ping("cl", "127.0.0.1", time_limit=10)
        assert topo.setup_seconds is not None
    assert topo.teardown_seconds is not None
    print(f"\nseed topology: setup {topo.setup_seconds:.3f}s teardown {topo.teardown_seconds:.3f}s")
    assert_gone("mhHa")


@pytest.mark.root
async def test_link_down_cuts_the_node_off_and_link_up_restores_it() -> None:
    async with SeedTopology("mhHb") as topo:
        n1 = topo.address("n1")
        await topo.wait_ping("cl", n1, time_limit=10)
        await topo.link_down("n1")
        assert not await topo.ping("cl", n1, wait=0.3)
        assert not await topo.ping("n1", topo.address("n2"), wait=0.3)
        await topo.wait_ping("cl", topo.address("n2"), time_limit=10)  # only n1 is cut off
        await topo.link_up("n1")
        await topo.wait_ping("cl", n1, time_limit=10)
    assert_gone("mhHb")


@pytest.mark.root
async def test_sysctl_and_sockets_live_in_the_node_namespace() -> None:
    host_forward = _host_ip_forward()
    async with SeedTopology("mhHc") as topo:
        topo.sysctl("n1", "net.ipv4.ip_forward", 1)
        out = await topo.exec("n1", ["cat", "/proc/sys/net/ipv4/ip_forward"])
        assert out.stdout.strip() == "1"
        out = await topo.exec("n2", ["cat", "/proc/sys/net/ipv4/ip_forward"])
        assert out.stdout.strip() == "0"
        assert _host_ip_forward() == host_forward
        # A socket made for n1 can bind n1's address; one made in the root namespace cannot.
        with topo.socket("n1") as sock:
            sock.bind((str(topo.address("n1")), 0))
        with netns.socket_in(None) as sock, pytest.raises(OSError):
            sock.bind((str(topo.address("n1")), 0))
        with pytest.raises(NetnsError, match="invalid sysctl key"):
            topo.sysctl("n1", "../../etc/passwd", 1)
    assert_gone("mhHc")


@pytest.mark.root
async def test_spawned_process_group_is_stopped_whole() -> None:
    async with SeedTopology("mhHd") as topo:
        log = topo.node_dir("n1") / "sh.log"
        proc = await topo.spawn("n1", ["sh", "-c", "sleep 300 & echo started; wait"], log)
        for _ in range(200):
            if "started" in proc.log_text():
                break
            await asyncio.sleep(0.01)
        pids = netns.netns_pids(topo.netns("n1"))
        assert len(pids) == 2, pids  # sh and its sleep
        status = await proc.stop(time_limit=5)
        assert status == -signal.SIGTERM
        await asyncio.sleep(0.05)
        assert netns.netns_pids(topo.netns("n1")) == set()
        # A leaked process is killed by teardown.
        await topo.exec("n2", ["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
        assert netns.netns_pids(topo.netns("n2"))
    assert_gone("mhHd")


@pytest.mark.root
async def test_postfix_in_each_node_accepts_mail_from_the_client() -> None:
    async with SeedTopology("mhHe") as topo, AsyncExitStack() as stack:
        servers = {}
        for node in topo.servers:
            cfg = PostfixConfig(
                hostname=f"{node}.lab.test", mynetworks=("127.0.0.0/8", str(topo.spec.network))
            )
            pf = Postfix(topo.node_dir(node) / "postfix", cfg, netns=topo.netns(node))
            servers[node] = await stack.enter_async_context(pf)
        assert all(pf.running for pf in servers.values())
        client = str(topo.address("cl"))
        for count, node in ((3, "n1"), (5, "n2")):
            result = await smtp_source(
                str(topo.address(node)), netns=topo.netns("cl"), messages=count, sessions=2
            )
            assert result.ok, result
            got = await servers[node].wait_received(count, time_limit=30)
            assert len(got) == count
            assert servers[node].client_addresses() == {client: count}
        assert servers["n1"].received_count() == 3 and servers["n2"].received_count() == 5

        report = await send_messages(
            str(topo.address("n1")), netns=topo.netns("cl"), count=20, concurrency=4
        )
        assert len(report.accepted) == 20 and report.abandoned == ()
        await servers["n1"].wait_received(23, time_limit=30)
        assert set(report.accepted) <= servers["n1"].summary().message_ids
        assert servers["n1"].summary().fatal == ()

        await servers["n1"].abort()
        assert not servers["n1"].running
        refused = await smtp_source(str(topo.address("n1")), netns=topo.netns("cl"))
        assert not refused.ok and refused.errors
        await servers["n2"].stop()
        assert not servers["n2"].running
        assert netns.netns_pids(topo.netns("n2")) == set()
    assert_gone("mhHe")


@pytest.mark.root
async def test_postfix_check_script_follows_the_master_daemon() -> None:
    async with SeedTopology("mhHf") as topo:
        pf = Postfix(
            topo.node_dir("n1") / "postfix", PostfixConfig(hostname="n1.lab.test"),
            netns=topo.netns("n1"),
        )  # fmt: skip
        async with pf:
            script = str(pf.check_script())
            assert (await topo.exec("n1", [script], check=False)).returncode == 0
        assert (await topo.exec("n1", [script], check=False)).returncode != 0
    assert_gone("mhHf")


@pytest.mark.root
async def test_keepalived_pair_elects_one_master_and_fails_over_on_link_down() -> None:
    async with SeedLab("mhHg") as lab:
        topo, peers = lab.topo, lab.keepalived
        for ka in peers.values():
            await ka.check_config()
        master = await lab.wait_master(time_limit=30)
        backup = next(n for n in topo.servers if n != master)
        # Equal priorities: whoever's master-down timer fires first wins (no assert on
        # which); both run with 100 + 100 from the Postfix track script.
        await peers[master].wait_state("MASTER", time_limit=10)
        await peers[backup].wait_state("BACKUP", time_limit=10)
        for ka in peers.values():
            assert "(VI_postfix) Changing effective priority from 100 to 200" in ka.log_text()
        await topo.wait_ping("cl", topo.vip, time_limit=10)
        result = await smtp_source(str(topo.vip), netns=topo.netns("cl"), messages=2)
        assert result.ok, result
        await lab.postfix[master].wait_received(2)  # the mail log is written asynchronously
        assert lab.postfix[master].client_addresses()[str(topo.address("cl"))] >= 2

        await topo.link_down(master)
        await peers[backup].wait_state("MASTER", time_limit=30)
        assert await topo.holders(topo.vip) == [backup]
        await peers[master].wait_state("FAULT", time_limit=10)
        await topo.wait_ping("cl", topo.vip, time_limit=10)
        result = await smtp_source(str(topo.vip), netns=topo.netns("cl"), messages=2)
        assert result.ok, result
    assert_gone("mhHg")


@pytest.mark.root
async def test_outage_probe_measures_a_listener_restart() -> None:
    async with SeedTopology("mhHh") as topo:
        sink = SmtpSink(topo.node_dir("n1") / "sink.log", netns=topo.netns("n1"))
        await sink.start()
        try:
            probe = OutageProbe(str(topo.address("n1")), netns=topo.netns("cl"), interval=0.01)
            async with probe:
                await probe.wait_success(time_limit=10)
                await asyncio.sleep(0.1)
                await sink.stop()
                await asyncio.sleep(0.3)
                await sink.start()
                await asyncio.sleep(0.1)
            report = probe.report()
        finally:
            await sink.stop()
    assert report.failures > 0
    assert len(report.outages) == 1
    assert report.longest_gap >= 0.3
    assert report.longest_outage == report.longest_gap
    assert_gone("mhHh")


@pytest.mark.root
async def test_outage_probe_without_a_listener_times_out_cleanly() -> None:
    async with SeedTopology("mhHj") as topo:
        probe = OutageProbe(str(topo.address("n1")), netns=topo.netns("cl"), interval=0.05)
        async with probe:
            with pytest.raises(LoadError, match="service never answered"):
                await probe.wait_success(time_limit=0.3)
        assert probe.report().successes == 0 and probe.report().failures > 0
    assert_gone("mhHj")


@pytest.mark.root
async def test_keepalived_config_test_reports_errors() -> None:
    async with SeedTopology("mhHk") as topo:
        bad = KeepalivedConfig("r", (_instance(interface="nosuchif0"),))
        ka = Keepalived(topo.node_dir("n1") / "ka", bad, netns=topo.netns("n1"))
        with pytest.raises(KeepalivedError, match="config rejected"):
            await ka.check_config()
    assert_gone("mhHk")


@pytest.mark.root
async def test_cleanup_stale_removes_a_crashed_runs_leftovers() -> None:
    await netns.add_netns("mhHlbr", "mhHln1")
    try:
        work = netns.work_root() / "mhHl"
        work.mkdir(parents=True, exist_ok=True)
        proc = await netns.spawn(["sleep", "300"], netns="mhHln1", log_path=work / "sleep.log")
        # ip netns exec enters the namespace, then execs sleep: give a slow VM time.
        await eventually(lambda: netns.netns_pids("mhHln1") == {proc.pid})
        removed = await netns.cleanup_stale("mhHl")
        assert "mhHlbr" in removed and "mhHln1" in removed and str(work) in removed
        assert await proc.wait(5) == -signal.SIGKILL
        assert_gone("mhHl")
        assert await netns.cleanup_stale("mhHl") == []
    finally:
        netns.delete_netns_sync("mhHlbr", "mhHln1")


@pytest.mark.root
async def test_topology_is_torn_down_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with SeedTopology("mhHm") as topo:
            await topo.spawn("n1", ["sleep", "300"], topo.node_dir("n1") / "s.log")
            raise RuntimeError("boom")
    assert_gone("mhHm")


@pytest.mark.root
async def test_entering_a_topology_replaces_stale_leftovers() -> None:
    await netns.add_netns("mhHnn1")
    try:
        async with SeedTopology("mhHn") as topo:
            await topo.wait_ping("cl", topo.address("n1"), time_limit=10)
        assert_gone("mhHn")
    finally:
        netns.delete_netns_sync("mhHnn1")


@pytest.mark.root
async def test_ctrl_c_tears_everything_down() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from lab.topology import SeedTopology

        async def main():
            async with SeedTopology("mhHo") as topo:
                await topo.spawn("n1", ["sleep", "300"], topo.node_dir("n1") / "s.log")
                print("ready", flush=True)
                await asyncio.sleep(300)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
        assert line.strip() == b"ready", (line, await proc.stderr.read())
        assert netns.list_netns("mhHo")
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
        assert b"KeyboardInterrupt" in err
        assert_gone("mhHo")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        netns.delete_netns_sync(*netns.list_netns("mhHo"))
