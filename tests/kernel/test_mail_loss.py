"""The mail-loss suite, short version: no message sent to the VIP is lost through faults.

The seed topology with IPVS (all-in-one DR) and a real Postfix on both nodes; in the
client namespace a real Postfix relays a steady stream (unique Message-IDs) to
``[VIP]:25`` with short retry timers (:data:`lab.mailloss.CLIENT_TIMERS`:
minimal_backoff_time 3 s, maximal_backoff_time 10 s, queue_run_delay 3 s,
smtp_connect_timeout 3 s). While the stream runs, every fault kind of
:data:`~lab.mailloss.FAULTS` is injected once, each after the cluster settled
from the previous one (one master, both real servers in its IPVS table, none in the
backup's). At the end the client's queue is flushed and every message is accounted for
by Message-ID in the two nodes' Postfix logs: none lost, and none waited more than
2 x maximal_backoff_time + SLACK between its submission and a node's acceptance.
bench/bench_mail_loss.py is the long version, beside keepalived.
"""

from __future__ import annotations

import pytest

from lab.cluster import ClusterOptions, MailhaCluster
from lab.mailloss import (
    FAULTS,
    MAXIMAL_BACKOFF,
    MailhaDriver,
    format_report,
    relay_client,
    run_mail_loss,
    trace,
)
from lab.seedlab import SeedLab

pytestmark = [pytest.mark.kernel, pytest.mark.root, pytest.mark.slow]

MESSAGES = 300  # at least; the stream runs until every fault is done
RATE = 2.5  # messages per second
SLACK = 10.0  # s: the VM's TCG emulation (~10x slower) on top of the client's backoff


async def test_no_mail_lost_through_faults() -> None:
    async with SeedLab("mhL", keepalived=False) as lab:
        client = relay_client(lab.topo)
        # Generous check timeouts: under the VM, a check timing out under load would
        # flap a real server and blur which fault a delay belongs to.
        opts = ClusterOptions(ipvs=True, delay_loop=1.0, connect_timeout=5.0, retry=2)
        async with client, MailhaCluster(lab.topo, opts) as cluster:
            await cluster.wait_master("n1", time_limit=60)
            driver = MailhaDriver(cluster, lab.postfix)
            result = await run_mail_loss(driver, client, FAULTS, rate=RATE, minimum=MESSAGES)
            report = result.report
            print()
            print(*result.fault_lines(), sep="\n")
            print(format_report(report, f"{driver.name}: {report.submitted} messages,"
                                f" {len(result.faults)} faults, {result.elapsed:.0f}s"))
            print("longest:", report.worst[:3])
            for mid in report.lost[:5]:
                print(f"lost {mid}:", *trace(client, mid), sep="\n  ")
            logs = cluster.log("n1") + cluster.log("n2")
        assert len({f.kind for f in result.faults}) >= 6
        assert report.submitted >= MESSAGES
        assert not report.lost, f"{len(report.lost)} messages lost: {report.lost[:10]}"
        assert report.max_delay <= 2 * MAXIMAL_BACKOFF + SLACK, report.worst
        assert "Traceback" not in logs
