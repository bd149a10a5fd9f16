"""The seed scenario, running: one call for the topology, Postfix on both nodes, keepalived.

What ``mailha demo``, the benchmarks and the integration tests all start from::

    async with SeedLab("mhX") as lab:
        master = await lab.wait_master()
        await smtp_source(str(lab.topo.vip), netns=lab.topo.netns("cl"), messages=100)

``keepalived=False`` leaves the VIP alone, for scenarios where mailha itself runs VRRP
on the nodes (or runs next to one keepalived peer: start it from :attr:`keepalived_config`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Literal

from lab.errors import KeepalivedError
from lab.keepalived import Keepalived, KeepalivedConfig, seed_config
from lab.postfix import Postfix, PostfixConfig
from lab.topology import SEED_SUBNET, SeedTopology

__all__ = ["SeedLab", "postfix_dir"]


def postfix_dir(topo: SeedTopology, node: str) -> Path:
    """Where the seed lab keeps ``node``'s Postfix instance."""
    return topo.node_dir(node) / "postfix"


class SeedLab:
    """Seed topology + a Postfix per server node (+ a keepalived pair); async context manager.

    Everything is torn down in reverse order on exit, exceptions and Ctrl-C included.
    """

    def __init__(
        self,
        prefix: str,
        *,
        keepalived: bool = True,
        version: Literal[2, 3] = 2,
        advert_int: float = 1.0,
        script_interval: float = 1.0,
        script_timeout: float | None = None,
        subnet: str = SEED_SUBNET,
        workdir: Path | None = None,
        keep_workdir: bool = False,
    ) -> None:
        self.topo = SeedTopology(prefix, subnet=subnet, workdir=workdir, keep_workdir=keep_workdir)
        self.with_keepalived = keepalived
        self.version: Literal[2, 3] = version
        self.advert_int = advert_int
        self.script_interval = script_interval
        self.script_timeout = script_timeout
        self.postfix: dict[str, Postfix] = {}
        self.keepalived: dict[str, Keepalived] = {}
        self._stack = AsyncExitStack()

    def postfix_config(self, node: str) -> PostfixConfig:
        """A server node's Postfix: discards mail, trusts loopback and the lab subnet."""
        return PostfixConfig(
            hostname=f"{node}.lab.test",
            mynetworks=("127.0.0.0/8", str(self.topo.spec.network)),
        )

    def keepalived_config(self, node: str) -> KeepalivedConfig:
        """The seed keepalived.conf for ``node``, tracking that node's Postfix."""
        return seed_config(
            self.topo,
            node,
            check_script=self.postfix[node].check_script(),
            version=self.version,
            advert_int=self.advert_int,
            script_interval=self.script_interval,
            script_timeout=self.script_timeout,
        )

    async def __aenter__(self) -> SeedLab:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.topo)
            servers = self.topo.servers
            for node in servers:
                self.postfix[node] = Postfix(
                    postfix_dir(self.topo, node),
                    self.postfix_config(node),
                    netns=self.topo.netns(node),
                )
            await self._enter_all(stack, list(self.postfix.values()))
            if self.with_keepalived:
                for node in servers:
                    self.keepalived[node] = Keepalived(
                        self.topo.node_dir(node) / "keepalived",
                        self.keepalived_config(node),
                        netns=self.topo.netns(node),
                    )
                # Start both at once, so neither gets a head start: with equal priorities
                # the first whose master-down timer fires takes the VIP and keeps it.
                await self._enter_all(stack, list(self.keepalived.values()))
            self._stack = stack.pop_all()
        return self

    @staticmethod
    async def _enter_all(stack: AsyncExitStack, cms: Sequence[Postfix | Keepalived]) -> None:
        """Enter several contexts concurrently; on a failure the rest are cancelled and
        waited for (TaskGroup) before the stack unwinds, so none is left half-started."""
        async with asyncio.TaskGroup() as tg:
            for cm in cms:
                tg.create_task(stack.enter_async_context(cm))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            # Stop peers of a kind together (keepalived takes ~1 s to stop): the stack's
            # own exits then find them stopped, and still clean up if this was cut short.
            for group in (self.keepalived.values(), self.postfix.values()):
                await asyncio.gather(*(cm.stop() for cm in group), return_exceptions=True)
        finally:
            await self._stack.aclose()

    async def wait_master(self, *, time_limit: float = 30.0) -> str:
        """Wait until exactly one server node holds the VIP; return that node."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while len(holders := await self.topo.holders(self.topo.vip)) != 1:
            if loop.time() > deadline:
                raise KeepalivedError(
                    "no single master", f"VIP {self.topo.vip} held by {holders or 'nobody'}"
                )
            await asyncio.sleep(0.05)
        return holders[0]
