"""The IPVS connection-sync daemons through mailha, cross-checked with ``ipvsadm``.

Each test runs in a fresh network namespace (the ``private_netns`` fixture): sync
daemons are per namespace, so nothing here touches the host's or another test's.
The independent view is ``ipvsadm -L --daemon``; ``ipvsadm --start-daemon`` also
starts daemons for mailha to read back, which checks the decoder against libipvs.
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

import pytest

from mailha.config.loader import loads
from mailha.lvs.errors import IpvsRequestError
from mailha.lvs.manager import LvsManager
from mailha.lvs.netlink import DaemonInfo, IpvsNetlink
from mailha.metrics import Metrics
from mailha.net.addresses import Addresses
from mailha.vrrp.events import State

pytestmark = [pytest.mark.kernel, pytest.mark.root]

IFACE = "mhYsync0"
DEFAULTS = {"maxlen": 1472, "port": 8848, "ttl": 1, "group": IPv4Address("224.0.0.81")}


class Ipvsadm(Protocol):
    """The ``ipvsadm`` fixture (tests/kernel/conftest.py)."""

    async def __call__(self, *args: str, stdin: str | None = None) -> str: ...


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {done.stderr}")


@pytest.fixture
def sync_link(private_netns: None) -> Iterator[str]:
    """A dummy interface, up with an address, in the test's own namespace."""
    _ip("link", "add", IFACE, "type", "dummy")
    try:
        _ip("addr", "add", "10.98.0.1/24", "dev", IFACE)
        _ip("link", "set", IFACE, "up")
        yield IFACE
    finally:
        subprocess.run(["ip", "link", "del", IFACE], capture_output=True, timeout=60)


async def listed(ipvsadm: Ipvsadm) -> list[str]:
    """``ipvsadm -L --daemon``: one line per running daemon."""
    return sorted(line for line in (await ipvsadm("-L", "--daemon")).splitlines() if line)


async def test_start_list_stop_master_and_backup(
    ipvs: IpvsNetlink, ipvsadm: Ipvsadm, sync_link: str
) -> None:
    assert await ipvs.daemons() == []
    await ipvs.start_daemon("master", interface=sync_link, sync_id=173)
    await ipvs.start_daemon(
        "backup", interface=sync_link, sync_id=5, maxlen=1400, port=9000, ttl=3,
        group=IPv4Address("239.1.2.3"),
    )  # fmt: skip
    assert await listed(ipvsadm) == [
        "backup sync daemon (mcast=mhYsync0, syncid=5, maxlen=1400, group=239.1.2.3,"
        " port=9000, ttl=3)",
        "master sync daemon (mcast=mhYsync0, syncid=173, maxlen=1472, group=224.0.0.81,"
        " port=8848, ttl=1)",
    ]
    running = sorted(await ipvs.daemons(), key=lambda d: d.state)
    assert running == [
        DaemonInfo("backup", sync_link, 5, 1400, 9000, 3, IPv4Address("239.1.2.3")),
        DaemonInfo("master", sync_link, 173, **DEFAULTS),  # type: ignore[arg-type]
    ]
    assert [d.describe() for d in running] == await listed(ipvsadm)

    assert await ipvs.stop_daemon("master") is True
    assert [d.state for d in await ipvs.daemons()] == ["backup"]
    assert await ipvs.stop_daemon("backup") is True
    assert await listed(ipvsadm) == []
    assert await ipvs.daemons() == []
    # Stopping what does not run is not an error: stop is idempotent.
    assert await ipvs.stop_daemon("backup") is False


async def test_start_is_idempotent_but_names_a_conflicting_daemon(
    ipvs: IpvsNetlink, ipvsadm: Ipvsadm, sync_link: str
) -> None:
    await ipvs.start_daemon("master", interface=sync_link, sync_id=173)
    await ipvs.start_daemon("master", interface=sync_link, sync_id=173)
    # The kernel chose these; asking for them explicitly is the same daemon.
    await ipvs.start_daemon("master", interface=sync_link, sync_id=173, port=8848, ttl=1)
    assert len(await listed(ipvsadm)) == 1

    with pytest.raises(IpvsRequestError) as caught:
        await ipvs.start_daemon("master", interface=sync_link, sync_id=9)
    assert caught.value.errno == errno.EEXIST
    assert "another master sync daemon (mcast=mhYsync0, syncid=173" in str(caught.value)
    assert "stop it first" in str(caught.value)
    assert await listed(ipvsadm) == [
        "master sync daemon (mcast=mhYsync0, syncid=173, maxlen=1472, group=224.0.0.81,"
        " port=8848, ttl=1)"
    ]


async def test_a_missing_interface_is_named(ipvs: IpvsNetlink, ipvsadm: Ipvsadm) -> None:
    with pytest.raises(IpvsRequestError) as caught:
        await ipvs.start_daemon("backup", interface="mhYnosuch0", sync_id=1)
    assert caught.value.errno == errno.ENODEV
    assert "no interface named 'mhYnosuch0' in this network namespace" in str(caught.value)
    assert await listed(ipvsadm) == []


async def test_settings_the_kernel_would_refuse_never_reach_it(ipvs: IpvsNetlink) -> None:
    with pytest.raises(ValueError, match="longer than 15 bytes"):
        await ipvs.start_daemon("master", interface="mhY-a-long-name0")
    with pytest.raises(ValueError, match="not a multicast address"):
        await ipvs.start_daemon("master", interface="lo", group=IPv4Address("10.0.0.1"))
    # The socket is still in step with the kernel afterwards.
    assert await ipvs.daemons() == []


async def test_daemons_started_by_ipvsadm_read_back(
    ipvs: IpvsNetlink, ipvsadm: Ipvsadm, sync_link: str
) -> None:
    await ipvsadm(
        "--start-daemon", "backup", "--mcast-interface", sync_link, "--syncid", "200",
        "--mcast-port", "8900", "--mcast-ttl", "4", "--mcast-group", "239.9.9.9",
    )  # fmt: skip
    await ipvsadm("--start-daemon", "master", "--mcast-interface", sync_link, "--syncid", "0")
    by_state = {d.state: d for d in await ipvs.daemons()}
    assert by_state["backup"] == DaemonInfo(
        "backup", sync_link, 200, 1472, 8900, 4, IPv4Address("239.9.9.9")
    )
    assert by_state["master"] == DaemonInfo("master", sync_link, 0, **DEFAULTS)  # type: ignore[arg-type]
    assert await ipvs.stop_daemon("master")
    assert await ipvs.stop_daemon("backup")
    assert await listed(ipvsadm) == []


# ------------------------------------------------------------------ the manager's hook

CONFIG = f"""
[global]
router_id = "n1"
lvs_sync_daemon = {{ interface = "{IFACE}", instance = "VI_postfix" }}

[vrrp_instance.VI_postfix]
interface = "{IFACE}"
virtual_router_id = 173
priority = 100
virtual_ipaddress = ["10.98.0.37/24"]

[[virtual_server]]
ip = "10.98.0.37"
port = 25
lvs_sched = "rr"
lvs_method = "NAT"
vrrp_instance = "VI_postfix"
"""


async def wait_listed(ipvsadm: Ipvsadm, want: list[str], limit: float = 30.0) -> None:
    """Poll ``ipvsadm -L --daemon`` until it lists ``want`` (the hook runs as a task)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    seen = await listed(ipvsadm)
    while seen != want and loop.time() < deadline:
        await asyncio.sleep(0.1)
        seen = await listed(ipvsadm)
    assert seen == want


def _line(state: str) -> str:
    return (
        f"{state} sync daemon (mcast={IFACE}, syncid=173, maxlen=1472, group=224.0.0.81,"
        " port=8848, ttl=1)"
    )


async def test_manager_daemons_follow_the_vrrp_instance(
    ipvs: IpvsNetlink, ipvsadm: Ipvsadm, sync_link: str
) -> None:
    # A backup daemon someone else left, with another sync id: with lvs_sync_daemon
    # configured, both kernel daemons are mailha's, so it is replaced.
    await ipvsadm("--start-daemon", "backup", "--mcast-interface", sync_link, "--syncid", "9")
    config = loads(CONFIG, Path("/tmp/mhY-sync.toml"))
    manager = LvsManager(config, metrics=Metrics(), addresses=Addresses())
    await manager.start()
    try:
        # Instance state not known yet: the backup daemon, sync id = the VRID.
        assert await listed(ipvsadm) == [_line("backup")]
        manager.instance_state("VI_postfix", State.MASTER)
        await wait_listed(ipvsadm, [_line("master")])
        manager.instance_state("VI_postfix", State.FAULT)
        await wait_listed(ipvsadm, [_line("backup")])
        # A burst of transitions settles on the last state.
        for state in (State.MASTER, State.BACKUP, State.MASTER):
            manager.instance_state("VI_postfix", state)
        await wait_listed(ipvsadm, [_line("master")])
        # Other instances do not move the daemons.
        manager.instance_state("VI_other", State.BACKUP)
        await asyncio.sleep(0.5)
        assert await listed(ipvsadm) == [_line("master")]
    finally:
        await manager.stop()
    assert await listed(ipvsadm) == []
