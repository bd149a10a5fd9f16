"""The scale-out lab's plumbing on this kernel (no IPVS needed): BGP from two directors'
BIRDs to the router's, both paths merged into one ECMP route, BFD at 100 ms x 3, and the
router withdrawing a director whose announcement is disabled, whose link is cut (BFD) or
whose BIRD is killed. The announcement is made by hand here (the include file in mailha's
format, ``birdc enable``); the VM tests drive it with mailha."""

from __future__ import annotations

import pytest

from lab import netns
from lab.bgp import BgpLab, BgpLabOptions

pytestmark = [pytest.mark.root, pytest.mark.slow]

PREFIX = "mhGn"


async def test_two_directors_become_two_next_hops_and_each_fault_withdraws_one() -> None:
    async with BgpLab(PREFIX, BgpLabOptions(ipvs=False, sloppy_tcp=False)) as lab:
        d1, d2 = (lab.address(d) for d in lab.directors)
        bfd = await lab.birds["d1"].command("show bfd sessions")
        assert "Up" in bfd.text and "0.100    0.300" in bfd.text, bfd.text
        async with lab.watch_fib() as fib:
            assert fib.nexthops == frozenset()
            for d in lab.directors:
                await lab.announce(d, True)
            await fib.wait_for(lambda hops: hops == {d1, d2})
            assert await lab.fib_nexthops() == {d1, d2}  # ip route agrees with the watcher

            await lab.announce("d1", False)
            await fib.wait_for(lambda hops: hops == {d2})
            await lab.announce("d1", True)
            await fib.wait_for(lambda hops: hops == {d1, d2})

            lab.cut_link("d2")
            await fib.wait_for(lambda hops: hops == {d1})
            assert "BFD session down" in (await lab.router_sessions())["d2"].info  # not TCP
            lab.cut_link("d2", up=True)
            await fib.wait_for(lambda hops: hops == {d1, d2})

            lab.kill_bird("d1")
            await fib.wait_for(lambda hops: hops == {d2})
            await lab.restart_bird("d1")  # the protocol starts disabled again: announce
            await lab.announce("d1", True)
            await fib.wait_for(lambda hops: hops == {d1, d2})
    assert netns.list_netns(PREFIX) == []
