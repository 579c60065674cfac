"""App: stopping background tasks within a bound, saying which one would not stop.

A stopping process has one deadline (`Deadline`, `process.shutdown_grace_s` after the
signal) that every part shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Iterable

__all__ = ["Deadline", "sleep_or_stop", "stop_tasks"]

log = logging.getLogger("warngate.app")


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake as soon as `stop` is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):  # no extra task, unlike wait_for
            await stop.wait()


async def stop_tasks(
    tasks: Iterable[asyncio.Task[object]], grace_s: float = 5.0, cancel_s: float = 1.0
) -> None:
    """Let tasks finish for `grace_s`, cancel the rest, and wait `cancel_s` for them.

    Every background loop also checks a stop event: cancellation alone is not enough,
    because a client library may swallow the CancelledError of the command it was
    running (seen with redis-py), and a `while True` loop would then run on for ever.

    A task that still has not finished is logged with its stack and left behind: a
    shutdown must end, and the log says where to look.
    """
    tasks = [t for t in tasks if not t.done()]
    if not tasks:
        return
    pending = set(tasks)
    if grace_s > 0:
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=cancel_s)
    for task in stuck:
        out = io.StringIO()
        task.print_stack(file=out)
        log.error("task %s did not stop:\n%s", task.get_name(), out.getvalue())


class Deadline:
    """When a stopping process must be done. Unset while it runs; `start` is called once,
    when the stop begins (a signal, or aiohttp's shutdown), later calls keep the first."""

    def __init__(self) -> None:
        self.at: float | None = None

    def start(self, seconds: float) -> None:
        if self.at is None:
            self.at = time.monotonic() + seconds

    @property
    def started(self) -> bool:
        return self.at is not None

    def left(self, reserve: float = 0.0, default: float = 5.0) -> float:
        """Seconds left before the deadline less `reserve` (kept for what comes after);
        `default` if the stop has not begun (an app closed without a signal, in tests)."""
        if self.at is None:
            return default
        return max(self.at - time.monotonic() - reserve, 0.0)
