"""What the LVS side changes on the host: which sysctls and VIPs, and what a stop leaves.

/proc/sys is a directory of the test's own (``PROC_SYS``), so nothing on the host moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from mailha.config import loads
from mailha.config.model import Config
from mailha.lvs.host import (
    FAIL_FAST_KEYS,
    TAKEOVER_KEYS,
    HostRole,
    dr_services,
    dr_sysctls,
    fail_fast_sysctls,
    takeover_sysctls,
)
from mailha.lvs.manager import LvsManager
from mailha.metrics import Metrics
from mailha.net import sysctl


def config(tmp_path: Path, method: str, *, instance: bool = True, extra: str = "",
           sched: str = "wlc") -> Config:
    vrrp = """
[vrrp_instance.VI_1]
interface = "eth0"
virtual_router_id = 7
priority = 100
virtual_ipaddress = ["10.96.0.1/24"]
""" if instance else ""
    text = f"""
[global]
router_id = "t"
{extra}
[metrics]
enabled = false
[control]
socket = "{tmp_path / 'run' / 'mailha.sock'}"
{vrrp}
[[virtual_server]]
ip = "10.96.0.1"
port = 25
lvs_sched = "{sched}"
{'sched_flags = ["mh-fallback"]' if sched == "mh" else ''}
{'vrrp_instance = "VI_1"' if instance else ''}
[[virtual_server.real_server]]
ip = "10.96.0.11"
port = 25
lvs_method = "{method}"
[virtual_server.real_server.TCP_CHECK]
"""
    return loads(text, tmp_path / "mailha.toml")


@pytest.fixture
def proc_sys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proc-sys"
    for where in ("eth0", "all"):
        conf = root / "net" / "ipv4" / "conf" / where
        conf.mkdir(parents=True)
        (conf / "arp_ignore").write_text("0\n")
        (conf / "arp_announce").write_text("0\n")
    vs = root / "net" / "ipv4" / "vs"
    vs.mkdir(parents=True)
    for key in (*FAIL_FAST_KEYS, *TAKEOVER_KEYS):
        (vs / key.rsplit(".", 1)[1]).write_text("0\n")
    monkeypatch.setattr(sysctl, "PROC_SYS", root)
    return root


def test_only_a_dr_service_following_an_instance_takes_the_dr_role(tmp_path: Path) -> None:
    assert [vs.label for vs in dr_services(config(tmp_path, "DR"))] == ["TCP 10.96.0.1:25"]
    assert dr_services(config(tmp_path, "NAT")) == []
    assert dr_services(config(tmp_path, "DR", instance=False)) == []


def test_the_dr_role_sets_arp_sysctls_on_the_instance_interface_and_all(tmp_path: Path) -> None:
    got = {(s.key, s.value) for s in dr_sysctls(config(tmp_path, "DR"))}
    assert got == {("net.ipv4.conf.eth0.arp_ignore", 1), ("net.ipv4.conf.eth0.arp_announce", 2),
                   ("net.ipv4.conf.all.arp_ignore", 1), ("net.ipv4.conf.all.arp_announce", 2)}
    assert list(dr_sysctls(config(tmp_path, "NAT"))) == []


def test_fail_fast_needs_a_virtual_server(tmp_path: Path) -> None:
    assert [s.key for s in fail_fast_sysctls(config(tmp_path, "NAT"))] == list(FAIL_FAST_KEYS)
    empty = loads(f'[global]\nrouter_id = "t"\n[control]\nsocket = "{tmp_path}/s.sock"\n',
                  tmp_path / "e.toml")
    assert fail_fast_sysctls(empty) == []


async def test_a_director_without_dr_role_restores_its_sysctls_at_a_default_stop(
        tmp_path: Path, proc_sys: Path) -> None:
    """release_dr_on_stop = false (the default) keeps a DR role; a NAT director has none,
    so its fail-fast sysctls go back and no journal is left for the next run to call a
    crash (they were left set, journal and all, before)."""
    cfg = config(tmp_path, "NAT")
    manager = LvsManager(cfg, metrics=Metrics(), addresses=cast(Any, None))
    manager.host.set_fail_fast(cfg)
    nodest = proc_sys / "net" / "ipv4" / "vs" / "expire_nodest_conn"
    assert nodest.read_text().strip() == "1"
    await manager.stop()
    assert nodest.read_text().strip() == "0"
    assert not (tmp_path / "run" / "sysctl-originals.json").exists()


class FakeAddresses:
    def __init__(self) -> None:
        self.lo: set[Any] = set()

    async def add_loopback_vip(self, vip: Any) -> None:
        self.lo.add(vip)

    async def remove_loopback_vip(self, vip: Any) -> None:
        self.lo.discard(vip)


@pytest.mark.parametrize("release", [False, True])
async def test_a_dr_node_keeps_or_releases_its_role_at_stop(
        tmp_path: Path, proc_sys: Path, release: bool) -> None:
    cfg = config(tmp_path, "DR")
    addresses = FakeAddresses()
    host = HostRole(cfg, cast(Any, addresses))
    await host.take_dr_role(cfg)
    ignore = proc_sys / "net" / "ipv4" / "conf" / "eth0" / "arp_ignore"
    assert ignore.read_text().strip() == "1" and {str(v) for v in addresses.lo} == {"10.96.0.1"}
    await host.stop(release=release)
    assert ignore.read_text().strip() == ("0" if release else "1")
    assert bool(addresses.lo) is not release


def test_sloppy_tcp_is_wanted_with_an_mh_service_or_when_asked(tmp_path: Path) -> None:
    assert [s.key for s in takeover_sysctls(config(tmp_path, "DR", sched="mh"))] == [
        "net.ipv4.vs.sloppy_tcp"]
    assert takeover_sysctls(config(tmp_path, "DR")) == []
    asked = config(tmp_path, "NAT", extra="lvs_sloppy_tcp = true\nlvs_sloppy_sctp = true")
    assert [s.key for s in takeover_sysctls(asked)] == list(TAKEOVER_KEYS)
    off = config(tmp_path, "NAT", sched="mh", extra="lvs_sloppy_tcp = false")
    assert takeover_sysctls(off) == []


async def test_sloppy_tcp_follows_reloads_and_is_restored_at_stop_even_when_the_dr_role_stays(
        tmp_path: Path, proc_sys: Path) -> None:
    sloppy = proc_sys / "net" / "ipv4" / "vs" / "sloppy_tcp"
    ignore = proc_sys / "net" / "ipv4" / "conf" / "eth0" / "arp_ignore"
    journal = tmp_path / "run" / "sysctl-originals.json"
    mh = config(tmp_path, "DR", sched="mh")
    host = HostRole(mh, cast(Any, FakeAddresses()))
    host.set_takeover(mh)
    await host.take_dr_role(mh)
    assert sloppy.read_text().strip() == "1"
    assert "net.ipv4.vs.sloppy_tcp" in journal.read_text()
    host.set_takeover(config(tmp_path, "DR"))  # a reload to wlc: the admin's value is back
    assert sloppy.read_text().strip() == "0"
    assert "net.ipv4.vs.sloppy_tcp" not in journal.read_text()
    host.set_takeover(mh)  # and back to mh
    assert sloppy.read_text().strip() == "1"
    await host.stop(release=False)  # the DR role is kept (release_dr_on_stop = false) ...
    assert ignore.read_text().strip() == "1"
    assert sloppy.read_text().strip() == "0"  # ... but sloppy_tcp only matters while mailha runs
    assert "net.ipv4.vs.sloppy_tcp" not in journal.read_text()
