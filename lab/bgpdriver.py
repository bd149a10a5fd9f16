"""mailha's BGP announcer on its own, its readiness read from a JSON file.

The host kernel has no ip_vs, so the host's namespace tests cannot run ``mailha serve``
with BGP services; this runs the real :class:`~mailha.bgp.announcer.Announcer` (real
BIRD, real dead-man device) with the LVS side replaced by a file the test writes::

    python -m lab.bgpdriver CONFIG STATE    # inside the director's namespace

``STATE`` is ``{"healthy": {"VIP": N}, "programmed": true, "drained": false}`` (a VIP
missing from ``healthy`` has 0 servers up); it is read at each apply, and SIGUSR1 applies
at once. SIGTERM/SIGINT stop the announcer (withdrawal first) and exit 0. ``started``
is printed once the announcer runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from mailha.bgp.announcer import Announcer
from mailha.bgp.readiness import ServiceInput
from mailha.config import load
from mailha.metrics import Metrics


async def main(config_path: Path, state_path: Path) -> int:
    config = load(config_path)
    state: dict[str, object] = {}

    def inputs() -> tuple[ServiceInput, ...]:
        nonlocal state
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            pass
        healthy = state.get("healthy") or {}
        assert isinstance(healthy, dict)
        return tuple(
            ServiceInput(vs.label, vs.ip, bool(state.get("programmed", True)),
                         int(healthy.get(str(vs.ip), 0)), len(vs.real_servers), vs.min_healthy)
            for vs in config.bgp_services if vs.ip is not None)

    announcer = Announcer(config, metrics=Metrics(), inputs=inputs)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def poke() -> None:
        inputs()
        announcer.drained = bool(state.get("drained"))
        announcer.poke()

    loop.add_signal_handler(signal.SIGUSR1, poke)
    poke()
    await announcer.start()
    print("started", flush=True)
    await stop.wait()
    await announcer.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.exit(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]))))
