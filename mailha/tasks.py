"""Stopping asyncio tasks for certain, on Python 3.11 too.

On 3.11, ``asyncio.wait_for`` returns the inner result and drops a cancellation that
arrives as the inner future completes (CPython gh-86296, fixed in 3.12). aiosmtplib
calls it while connecting and while reading each reply, so one ``task.cancel()`` of a
task running SMTP checks is lost often enough to matter (18-43 % of random stops
measured on 3.11.7): the task goes on looping, and whatever awaits it (a TaskGroup,
the daemon's stop) hangs.

So nothing here relies on one cancellation. :func:`cancel_and_wait` re-cancels until
the tasks are done, within a bound, and reports the ones that would not stop;
:func:`bounded` runs a coroutine with a deadline built on the same rule; loops that
must stop also check :func:`stop_requested` at each turn, which sees a cancellation
that an await inside swallowed (``Task.cancelling()`` keeps counting it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

__all__ = ["RECANCEL_INTERVAL", "bounded", "cancel_and_wait", "stop_requested"]

log = logging.getLogger("mailha")

T = TypeVar("T")

#: How often a task that has not stopped yet is cancelled again.
RECANCEL_INTERVAL = 0.02


def stop_requested() -> bool:
    """True if the running task was asked to stop, even if an await swallowed the request."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *, within: float, what: str = "tasks"
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` until every one is done or ``within`` seconds have passed.

    Returns the tasks still running at the deadline (empty when all stopped), after
    logging them: the caller decides whether going on without them is safe. Exceptions
    the tasks ended with are retrieved and logged, so none is reported "never retrieved"
    later. If the caller itself is cancelled, the wait ends and the cancellation goes on.
    """
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_INTERVAL, left))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("%s ended with an error while stopping", task.get_name(),
                      exc_info=task.exception())
    if pending:
        log.error("%s did not stop within %gs: %s", what, within,
                  ", ".join(sorted(t.get_name() for t in pending)))
    return pending


async def bounded(coro: Coroutine[Any, Any, T], *, within: float, what: str) -> T | None:
    """Run ``coro`` for at most ``within`` seconds; on expiry cancel it for certain.

    Unlike 3.11's ``wait_for``, a coroutine that swallows one cancellation cannot hold
    the caller: it is re-cancelled (for one more second at most) and then abandoned.
    Returns the result, or None when it timed out or raised (both logged): a stop step
    that fails must not keep the steps after it from running.
    """
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=within)
    except asyncio.CancelledError:
        await cancel_and_wait({task}, within=1.0, what=what)
        raise
    if not done:
        log.error("%s did not finish within %gs; cancelling it", what, within)
        await cancel_and_wait({task}, within=1.0, what=what)
        return None
    if task.cancelled():
        log.error("%s was cancelled", what)
        return None
    exc = task.exception()
    if exc is not None:
        log.error("%s failed: %s", what, exc, exc_info=exc)
        return None
    return task.result()
