"""New SMTP sessions at a steady rate, from a process of their own, every one recorded.

:class:`~lab.smtpload.OutageProbe` run in the benchmark's own event loop shares
that loop with everything else the benchmark polls; in the emulated VM it then starts
far fewer sessions than asked (~22/s of 50/s). Run in its own process, inside the
client namespace (no namespace switch per socket), it keeps the rate. It prints every
finished session as one line on stdout (flushed every 0.2 s)::

    S <started> <ended> <1|0> <error>

with ``time.monotonic()`` stamps: CLOCK_MONOTONIC is one clock for every process and
namespace of the machine, so the benchmark compares them with its own ``loop.time()``.
SIGTERM ends it after the sessions in flight finish (each bounded by ``--timeout``)::

    python -m lab.sessionprobe 10.12.49.37 --interval 0.02 --timeout 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from lab.smtpload import OutageProbe, Session

__all__ = ["format_session", "main", "parse_sessions", "read_sessions"]


def format_session(s: Session) -> str:
    error = " ".join(s.error.split()) or "-"
    return f"S {s.started:.6f} {s.ended:.6f} {int(s.ok)} {error}"


def parse_sessions(lines: Iterable[str]) -> list[Session]:
    """The sessions in a prober's output (other lines, and a torn last line, are skipped)."""
    sessions = []
    for line in lines:
        fields = line.rstrip("\n").split(" ", 4)
        if len(fields) != 5 or fields[0] != "S" or not line.endswith("\n"):
            continue
        with contextlib.suppress(ValueError):
            error = "" if fields[4] == "-" else fields[4]
            sessions.append(Session(float(fields[1]), float(fields[2]), fields[3] == "1", error))
    return sessions


def read_sessions(path: Path) -> list[Session]:
    with path.open(errors="replace") as f:
        return parse_sessions(f)


async def _run(host: str, port: int, interval: float, banner_within: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    probe = OutageProbe(host, port, interval=interval, probe_timeout=banner_within)
    written = 0

    def flush() -> None:
        nonlocal written
        new = probe.sessions[written:]
        written += len(new)
        if new:
            sys.stdout.write("".join(format_session(s) + "\n" for s in new))
            sys.stdout.flush()

    await probe.start()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await stop.wait()
            flush()
    finally:
        await probe.stop()
        flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--interval", type=float, default=0.02, help="s between new sessions")
    parser.add_argument("--timeout", type=float, default=2.0, help="banner within (s)")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.host, args.port, args.interval, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
