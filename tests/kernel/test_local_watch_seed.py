"""local_watch in the seed topology: the master's own Postfix dies, IPVS drops it at once.

Issue 13. The checks here poll slowly on purpose (delay_loop 20 s, retry 2): a real
server that leaves the master's IPVS table within a few seconds of its Postfix being
SIGKILLed was taken out by the pidfd watch, not by a check. After ``postfix start``
it comes back only through a passing SMTP check. The backup's Postfix, which the master
cannot watch, is still judged by the polled checks (and so is still in the table a few
seconds after it died). Then n1's master stays up while a reload drops its smtpd
listener: the sock_diag listener watch takes the server out just as fast. The times from
each event to the table change are printed; bench/ measures the sessions lost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from lab.cluster import ClusterOptions, MailhaCluster, live_destinations
from lab.seedlab import SeedLab

pytestmark = [pytest.mark.kernel, pytest.mark.root, pytest.mark.slow]

#: Far beyond what the watch needs, far below what the polled checks need (> 20 s).
WATCH_BOUND = 8.0


async def wait_live(lab: SeedLab, node: str, want: set[str], limit: float) -> float:
    started = time.monotonic()
    seen: set[str] = set()
    while time.monotonic() - started < limit:
        seen = await live_destinations(lab.topo, node)
        if seen == want:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"{node}'s IPVS table never became {want}; last {seen}")


async def test_master_postfix_death_leaves_ipvs_at_once_and_returns_after_a_check() -> None:
    async with SeedLab("mhW", keepalived=False) as lab:
        opts = ClusterOptions(ipvs=True, local_watch=True, delay_loop=20.0, retry=2,
                              delay_before_retry=2.0, connect_timeout=5.0)
        n1, n2 = (f"{lab.topo.address(n)}:25" for n in ("n1", "n2"))
        async with MailhaCluster(lab.topo, opts) as cluster:
            await cluster.wait_master("n1", time_limit=60)
            await wait_live(lab, "n1", {n1, n2}, 60)
            assert "local_watch: real server" in cluster.log("n1")

            await lab.postfix["n1"].abort()  # SIGKILL of the master and its children
            took = await wait_live(lab, "n1", {n2}, WATCH_BOUND)
            print(f"\nn1's Postfix killed: out of IPVS after {took * 1000:.0f} ms")
            assert "exited" in cluster.log("n1")

            # The backup's Postfix has no watch on the master: the polled checks decide.
            await lab.postfix["n2"].abort()
            await asyncio.sleep(3)
            assert n2 in await live_destinations(lab.topo, "n1")
            await lab.postfix["n2"].start()

            await lab.postfix["n1"].start()
            await wait_live(lab, "n1", {n1, n2}, 60)
            log = cluster.log("n1")
            assert log.count("is up") >= 1

            # The listener: n1's master lives on, but a reload drops its smtpd inet
            # service (moved to another port): the sock_diag watch takes it out.
            postfix = lab.postfix["n1"]
            master = postfix.master_pid()
            gone = "listener 10.12.49.35:25 of TCP 10.12.49.37:25: no listening socket"
            before = cluster.log("n1").count(gone)
            await postfix.reload(replace(postfix.config, listen=("127.0.0.1:2526",)))
            took = await wait_live(lab, "n1", {n2}, WATCH_BOUND)
            print(f"n1's smtpd listener gone (master alive): out of IPVS after "
                  f"{took * 1000:.0f} ms")
            assert postfix.master_pid() == master
            assert cluster.log("n1").count(gone) == before + 1
            await postfix.reload(replace(postfix.config, listen=("smtp",)))
            await wait_live(lab, "n1", {n1, n2}, 60)
