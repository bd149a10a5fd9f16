"""MISC_CHECK: run ``misc_path``; its exit status is the verdict.

keepalived's rule (check_misc.c), matched exactly:

* exit 0: up (with ``misc_dynamic`` too: the weight is left as it was);
* exit 1: down;
* exit 2-255 with ``misc_dynamic``: up, and the real server's weight becomes
  ``status - 2`` (0-253);
* exit 2-255 *without* ``misc_dynamic``: down, like any non-zero status;
* killed after ``misc_timeout`` (default: ``delay_loop``), or by any signal: down.

The script runs through :func:`mailha.procs.run_script`, which owns the process group:
on timeout SIGTERM then SIGKILL go to the whole group, so a grandchild ignoring SIGTERM
dies too, and the child is always reaped.
"""

from __future__ import annotations

import signal
import time

from mailha.config.model import MiscCheck, RealServer
from mailha.procs import ScriptError, ScriptResult, ScriptRunner, run_script

from .result import CheckResult

__all__ = ["ScriptRunner", "check_misc"]

#: Kept from the script's output for the failure detail (the rest goes nowhere).
OUTPUT_LIMIT = 512


async def check_misc(
    check: MiscCheck, real_server: RealServer, *, run: ScriptRunner = run_script
) -> CheckResult:
    """Run the MISC_CHECK script once and judge its exit as keepalived does."""
    started = time.monotonic()
    timeout = check.misc_timeout or check.common.delay_loop
    command = check.misc_path
    try:
        result = await run(
            command.argv,
            timeout=timeout,
            user=command.user,
            group=command.group,
            output_limit=OUTPUT_LIMIT,
        )
    except ScriptError as exc:
        return CheckResult.failure("script_error", exc.reason, time.monotonic() - started)
    return judge(check, result, time.monotonic() - started)


def judge(check: MiscCheck, result: ScriptResult, duration: float) -> CheckResult:
    """Pure: the verdict for a finished script (split out so the table is testable)."""
    what = f"{check.misc_path.argv[0]}: {result.describe()}"
    last_line = _last_line(result.output)
    if last_line:
        what += f" ({last_line})"
    if result.timed_out:
        return CheckResult.failure("timeout_killed", what, duration)
    if result.status is None:
        try:
            name = signal.Signals(result.signal or 0).name.lower()
        except ValueError:
            name = f"signal_{result.signal}"
        return CheckResult.failure(f"killed_{name}", what, duration)
    status = result.status
    if status == 0:
        return CheckResult.success(what, duration)
    if check.misc_dynamic and 2 <= status <= 255:
        return CheckResult.success(what, duration, dynamic_weight=status - 2)
    return CheckResult.failure(f"exit_status_{status}", what, duration)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
