"""App: stopping background tasks within a bound, saying which one would not stop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Iterable

__all__ = ["sleep_or_stop", "stop_tasks"]

log = logging.getLogger("warngate.app")


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake as soon as `stop` is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):  # no extra task, unlike wait_for
            await stop.wait()


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], grace_s: float = 5.0) -> None:
    """Let tasks finish for `grace_s`, cancel the rest, and wait for them as long again.

    Every background loop also checks a stop event: cancellation alone is not enough,
    because a client library may swallow the CancelledError of the command it was
    running (seen with redis-py), and a `while True` loop would then run on for ever.

    A task that still has not finished is logged with its stack and left behind: a
    shutdown must end, and the log says where to look.
    """
    tasks = [t for t in tasks if not t.done()]
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=grace_s)
    for task in stuck:
        out = io.StringIO()
        task.print_stack(file=out)
        log.error("task %s did not stop:\n%s", task.get_name(), out.getvalue())
