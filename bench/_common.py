"""What every lab benchmark shares: its error type, its bounded, clean entry point, and
the ip_vs guard of the benches that program IPVS.

Benchmarks are run as scripts (``python bench/bench_x.py``), so this module is imported
by its bare name from the scripts' own directory.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from lab.errors import LabError


def require_ipvs(name: str, hint: str = "") -> bool:
    """True if this kernel has ip_vs; otherwise say how to run ``name`` (in the VM)."""
    from lab.demo import ipvs_available

    if ipvs_available():
        return True
    print(f"{name}: FAILED: no ip_vs in this kernel: run it under tests/vm/vmrun{hint}",
          file=sys.stderr)
    return False


class BenchError(Exception):
    """The lab did not behave as the benchmark needs."""


def run_bounded(name: str, main: Callable[[], Awaitable[int]], time_limit: float) -> int:
    """Run ``main`` under ``time_limit`` seconds; report failures in one line, exit 1."""

    async def bounded() -> int:
        async with asyncio.timeout(time_limit):
            return await main()

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        print(f"{name}: FAILED: over the {time_limit:g} s limit", file=sys.stderr)
    except (BenchError, LabError) as exc:
        print(f"{name}: FAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
    return 1


async def wait_for(
    what: str, test: Callable[[], Awaitable[bool]], time_limit: float, *, every: float = 0.1
) -> None:
    """Poll ``test`` every ``every`` s until it returns True; BenchError after ``time_limit``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while not await test():
        if loop.time() > deadline:
            raise BenchError(f"timed out after {time_limit:g}s waiting for {what}")
        await asyncio.sleep(every)
