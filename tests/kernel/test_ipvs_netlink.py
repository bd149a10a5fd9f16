"""The netlink adapter against the kernel's real IPVS, cross-checked with ipvsadm."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from mailha.lvs.model import (
    MH_FALLBACK,
    MH_PORT,
    SH_PORT,
    Destination,
    DestKey,
    Forward,
    IpProtocol,
    Persistence,
    Service,
    ServiceKey,
    ServiceRow,
    Table,
    Tunnel,
    TunnelEncap,
    TunnelFlags,
    make_table,
)
from mailha.lvs.netlink import IpvsNetlink
from mailha.lvs.planner import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    Op,
    plan,
)

pytestmark = pytest.mark.kernel


class Ipvsadm(Protocol):
    """The ``ipvsadm`` fixture (tests/kernel/conftest.py)."""

    async def __call__(self, *args: str, stdin: str | None = None) -> str: ...
    async def save(self) -> list[str]: ...


@dataclass
class ListedService:
    scheduler: str
    options: str  # what follows the scheduler: "(sh-port) persistent 60 mask ... ops"
    dests: dict[str, tuple[str, ...]] = field(default_factory=dict)


_SERVICE_LINE = re.compile(r"^(TCP|UDP|SCTP|FWM)\s+(\S+)\s+(\S+)\s*(.*?)\s*$")


def parse_list(text: str) -> dict[str, ListedService]:
    """``ipvsadm -Ln [--thresholds|--tun-info]``: service -> scheduler, options, dests.

    A destination's value is the tuple of its columns after the address.
    """
    services: dict[str, ListedService] = {}
    current: ListedService | None = None
    for line in text.splitlines():
        if line.startswith("  -> ") and not line.startswith("  -> RemoteAddress"):
            if current is None:
                raise AssertionError(f"destination before any service: {line!r}")
            address, *columns = line[5:].split()
            current.dests[address] = tuple(columns)
            continue
        match = _SERVICE_LINE.match(line)
        if match:
            proto, where, scheduler, options = match.groups()
            current = ListedService(scheduler, options)
            services[f"{proto} {where}"] = current
    return services


VIP = "10.12.49.37"
SMTP = ServiceKey.for_address(VIP, 25)
SUBMISSION = ServiceKey.for_address(VIP, 587)
DNS = ServiceKey.for_address(VIP, 53, IpProtocol.UDP)
MARKED = ServiceKey.for_fwmark(25)
SMTP6 = ServiceKey.for_address("2001:db8::25", 25)

NODE1_DR = Destination.of("10.12.49.35", 25, Forward.ROUTE)
NODE2_DR = Destination.of("10.12.49.36", 25, Forward.ROUTE, 2)


def config_like_table() -> dict[ServiceKey, ServiceRow]:
    """The seed's SMTP service plus one of every feature the kernel offers."""
    return make_table(
        [
            ServiceRow.of(Service(SMTP, "wlc"), [NODE1_DR, NODE2_DR]),
            ServiceRow.of(
                Service(SUBMISSION, "rr", persistence=Persistence(300, 24)),
                [
                    Destination.of("10.12.49.35", 587, weight=3, u_threshold=100, l_threshold=50),
                    Destination.of("10.12.49.36", 587, weight=0),
                ],
            ),
            ServiceRow.of(
                Service(DNS, "mh", MH_FALLBACK | MH_PORT, one_packet=True),
                [
                    Destination.of(
                        "10.12.49.40",
                        53,
                        Forward.TUNNEL,
                        tunnel=Tunnel(TunnelEncap.GUE, 6080, TunnelFlags.CSUM),
                    ),
                    Destination.of("10.12.49.41", 53, Forward.TUNNEL),
                ],
            ),
            ServiceRow.of(
                Service(MARKED, "sh", SH_PORT), [Destination.of("10.12.49.35", 0, Forward.ROUTE)]
            ),
            ServiceRow.of(
                Service(SMTP6, "lc", persistence=Persistence(60, 64)),
                [Destination.of("2001:db8::35", 25)],
            ),
        ]
    )


# What ipvsadm prints for config_like_table(), written out by hand.
EXPECTED_SAVE = sorted(
    [
        "-A -t 10.12.49.37:25 -s wlc",
        "-a -t 10.12.49.37:25 -r 10.12.49.35:25 -g -w 1",
        "-a -t 10.12.49.37:25 -r 10.12.49.36:25 -g -w 2",
        "-A -t 10.12.49.37:587 -s rr -p 300 -M 255.255.255.0",
        "-a -t 10.12.49.37:587 -r 10.12.49.35:587 -m -w 3",
        "-a -t 10.12.49.37:587 -r 10.12.49.36:587 -m -w 0",
        "-A -u 10.12.49.37:53 -s mh -o -b mh-fallback,mh-port",
        "-a -u 10.12.49.37:53 -r 10.12.49.40:53 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum",
        "-a -u 10.12.49.37:53 -r 10.12.49.41:53 -i -w 1 --tun-type ipip",
        "-A -f 25 -s sh -b sh-port",
        "-a -f 25 -r 10.12.49.35:0 -g -w 1",
        "-A -t [2001:db8::25]:25 -s lc -p 60 -M 64",
        "-a -t [2001:db8::25]:25 -r [2001:db8::35]:25 -m -w 1",
    ]
)


async def converge(ipvs: IpvsNetlink, desired: Table, owned: set[ServiceKey]) -> list[Op]:
    """observe -> plan -> apply, asserting the kernel took every operation."""
    ops = plan(desired, await ipvs.observe(), owned)
    (await ipvs.apply(ops)).raise_for_errors()
    return list(ops)


async def test_applied_table_is_exactly_what_ipvsadm_shows(
    ipvs: IpvsNetlink, ipvsadm: Ipvsadm
) -> None:
    desired = config_like_table()
    await converge(ipvs, desired, set())

    assert await ipvsadm.save() == EXPECTED_SAVE
    listed = parse_list(await ipvsadm("-Ln"))
    assert listed["TCP 10.12.49.37:25"].scheduler == "wlc"
    assert listed["TCP 10.12.49.37:25"].dests["10.12.49.36:25"][:2] == ("Route", "2")
    assert listed["TCP 10.12.49.37:587"].options == "persistent 300 mask 255.255.255.0"
    assert listed["UDP 10.12.49.37:53"].options == "(mh-fallback,mh-port) ops"
    assert listed["FWM 25"].options == "(sh-port)"
    assert listed["TCP [2001:db8::25]:25"].options == "persistent 60 mask 64"
    thresholds = parse_list(await ipvsadm("-Ln", "--thresholds"))["TCP 10.12.49.37:587"].dests
    assert thresholds["10.12.49.35:587"][:2] == ("100", "50")
    assert thresholds["10.12.49.36:587"][:2] == ("0", "0")
    tunnels = parse_list(await ipvsadm("-Ln", "--tun-info"))["UDP 10.12.49.37:53"].dests
    assert tunnels["10.12.49.40:53"][:2] == ("Tunnel", "gue:6080:+c")
    assert tunnels["10.12.49.41:53"][:2] == ("Tunnel", "ipip")


async def test_observe_reads_back_the_applied_table(ipvs: IpvsNetlink, ipvsadm: Ipvsadm) -> None:
    desired = config_like_table()
    await converge(ipvs, desired, set())
    observed = await ipvs.observe()
    assert observed.config() == desired
    assert observed.unreadable == ()


async def test_a_new_adapter_adopts_the_live_table_with_zero_ops(
    ipvs: IpvsNetlink, ipvsadm: Ipvsadm
) -> None:
    desired = config_like_table()
    await converge(ipvs, desired, set())
    async with await IpvsNetlink.open() as restarted:
        assert plan(desired, await restarted.observe(), set(desired)) == []


async def test_reads_a_table_written_by_ipvsadm(ipvs: IpvsNetlink, ipvsadm: Ipvsadm) -> None:
    await ipvsadm("-R", stdin="\n".join(EXPECTED_SAVE) + "\n")
    # -S output has no thresholds: set them by hand.
    await ipvsadm("-e", "-t", "10.12.49.37:587", "-r", "10.12.49.35:587", "-m", "-w", "3",
            "-x", "100", "-y", "50")  # fmt: skip
    assert (await ipvs.observe()).config() == config_like_table()


async def test_edits_converge_with_in_place_changes(ipvs: IpvsNetlink, ipvsadm: Ipvsadm) -> None:
    await converge(ipvs, config_like_table(), set())
    changed = dict(config_like_table())
    node3 = Destination.of("10.12.49.38", 25, Forward.ROUTE)
    heavier = Destination.of("10.12.49.35", 25, Forward.ROUTE, 5)
    changed[SMTP] = ServiceRow.of(Service(SMTP, "rr"), [heavier, node3])
    del changed[MARKED]

    ops = await converge(ipvs, changed, set(config_like_table()))
    assert ops == [
        EditService(Service(SMTP, "rr")),
        AddDest(SMTP, node3),
        EditDest(SMTP, heavier),
        DelDest(SMTP, NODE2_DR.key),
        DelService(MARKED),
    ]
    assert (await ipvs.observe()).config() == changed
    smtp = parse_list(await ipvsadm("-Ln"))["TCP 10.12.49.37:25"]
    assert smtp.scheduler == "rr"
    assert {k: v[:2] for k, v in smtp.dests.items()} == {
        "10.12.49.35:25": ("Route", "5"),
        "10.12.49.38:25": ("Route", "1"),
    }
    assert "FWM 25" not in parse_list(await ipvsadm("-Ln"))


async def test_drift_made_with_ipvsadm_is_detected_and_repaired(
    ipvs: IpvsNetlink, ipvsadm: Ipvsadm
) -> None:
    desired = config_like_table()
    await converge(ipvs, desired, set())

    await ipvsadm("-d", "-t", "10.12.49.37:25", "-r", "10.12.49.36:25")
    await ipvsadm("-e", "-t", "10.12.49.37:587", "-r", "10.12.49.35:587", "-m", "-w", "9")
    await ipvsadm("-E", "-t", "10.12.49.37:587", "-s", "sh")
    ops = plan(desired, await ipvs.observe(), set(desired))
    assert ops == [
        AddDest(SMTP, NODE2_DR),
        EditService(desired[SUBMISSION].service),
        EditDest(SUBMISSION, desired[SUBMISSION].destinations[_key("10.12.49.35", 587)]),
    ]
    (await ipvs.apply(ops)).raise_for_errors()
    assert await ipvsadm.save() == EXPECTED_SAVE

    await ipvsadm("-C")
    ops = await converge(ipvs, desired, set(desired))
    assert len(ops) == len(desired) + sum(len(v.destinations) for v in desired.values())
    assert await ipvsadm.save() == EXPECTED_SAVE


def _key(address: str, port: int) -> DestKey:
    return Destination.of(address, port).key


async def test_foreign_service_is_left_alone(ipvs: IpvsNetlink, ipvsadm: Ipvsadm) -> None:
    await ipvsadm("-A", "-t", "192.0.2.80:80", "-s", "rr")
    await ipvsadm("-a", "-t", "192.0.2.80:80", "-r", "192.0.2.81:80", "-m")
    desired = config_like_table()
    await converge(ipvs, desired, set(desired))
    await converge(ipvs, {}, set(desired))  # mailha lets go of everything it owns
    assert await ipvsadm.save() == sorted(
        ["-A -t 192.0.2.80:80 -s rr", "-a -t 192.0.2.80:80 -r 192.0.2.81:80 -m -w 1"]
    )


async def test_refusals_are_mapped_to_their_operations(ipvs: IpvsNetlink, ipvsadm: Ipvsadm) -> None:
    other = ServiceKey.for_address(VIP, 2525)
    bad_sched = AddService(Service(SMTP, "nosuch"))
    orphan = AddDest(SMTP, NODE1_DR)
    good = AddService(Service(other, "rr"))
    multicast = AddDest(other, Destination.of("224.0.0.5", 2525))
    fine = AddDest(other, Destination.of("10.12.49.35", 2525))
    result = await ipvs.apply([bad_sched, orphan, good, multicast, fine])

    assert result.applied == (good, fine)
    assert [(e.op, e.errno) for e in result.errors] == [
        (bad_sched, errno.ENOENT),
        (orphan, errno.ESRCH),
        (multicast, errno.EINVAL),
    ]
    assert "ip_vs_nosuch" in str(result.errors[0])
    with pytest.raises(Exception, match="ip_vs_nosuch"):
        result.raise_for_errors()
    assert await ipvsadm.save() == [
        "-A -t 10.12.49.37:2525 -s rr",
        "-a -t 10.12.49.37:2525 -r 10.12.49.35:2525 -m -w 1",
    ]


async def test_timeouts_and_flush(ipvs: IpvsNetlink, ipvsadm: Ipvsadm) -> None:
    await ipvs.set_timeouts(tcp=1800, udp=60)
    timeouts = await ipvs.timeouts()
    assert (timeouts.tcp, timeouts.udp) == (1800, 60)
    assert "Timeout (tcp tcpfin udp): 1800 " in await ipvsadm("-L", "--timeout")

    await converge(ipvs, config_like_table(), set())
    await ipvsadm("-A", "-t", "192.0.2.80:80", "-s", "rr")
    await ipvs.flush()
    assert await ipvsadm.save() == []
    assert len(await ipvs.observe()) == 0


async def test_large_batch_is_pipelined_in_order(ipvs: IpvsNetlink, ipvsadm: Ipvsadm) -> None:
    """More operations than the in-flight window, with dependencies across sends."""
    desired = make_table(
        ServiceRow.of(
            Service(ServiceKey.for_address(f"10.20.{i // 250}.{i % 250 + 1}", 25), "rr"),
            [Destination.of("10.30.0.1", 25), Destination.of("10.30.0.2", 25, weight=2)],
        )
        for i in range(300)
    )
    ops = await converge(ipvs, desired, set())
    assert len(ops) == 900
    observed = await ipvs.observe()
    assert observed.config() == desired
    assert len(await ipvsadm.save()) == 900
