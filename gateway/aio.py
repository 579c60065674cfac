"""App: background loops — their health, and stopping them within a bound.

A stopping process has one deadline (`Deadline`, `process.shutdown_grace_s` after the
signal) that every part shares; each loop reports its rounds to a `LoopHealth`, which
`/readyz` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Deadline", "LoopHealth", "Loops", "sleep_or_stop", "stop_tasks"]

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


class _Gauge(Protocol):
    def set(self, value: float) -> None: ...


@dataclass
class LoopHealth:
    """One background loop: when it last finished a round without error, and the error
    of its last round if that failed (the loop is restarted after an error). `gauge`
    shows the same as `warngate_loop_failing`."""

    name: str
    ok_at: float  # time.monotonic()
    error: str | None = None
    ended: bool = False  # the loop's task ended while the process was not stopping
    gauge: _Gauge | None = None

    def ok(self) -> None:
        self.ok_at = time.monotonic()
        if self.error is not None:
            self.error = None
            if self.gauge is not None:
                self.gauge.set(0)

    def failed(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"[:300]
        if self.gauge is not None:
            self.gauge.set(1)

    def problem(self, stale_s: float, now: float | None = None) -> str | None:
        """Why this loop cannot do its work, or None. A loop that fails now and then is
        fine; one with no good round for `stale_s` while failing is not."""
        if self.ended:
            return f"loop {self.name} has stopped"
        age = (now if now is not None else time.monotonic()) - self.ok_at
        if self.error is not None and age > stale_s:
            return f"loop {self.name} has been failing for {age:.0f} s: {self.error}"
        return None


class _LabelledGauge(Protocol):
    def labels(self, *values: str) -> _Gauge: ...

    def remove(self, *values: str) -> None: ...


class Loops:
    """The health of every background loop of a process, by name."""

    def __init__(self, gauge: _LabelledGauge | None = None) -> None:
        self.by_name: dict[str, LoopHealth] = {}
        self.gauge = gauge

    def add(self, name: str) -> LoopHealth:
        """A new loop's health; names are made unique (`plan`, `plan-2` …)."""
        unique, n = name, 1
        while unique in self.by_name:
            n += 1
            unique = f"{name}-{n}"
        child = self.gauge.labels(unique) if self.gauge is not None else None
        if child is not None:
            child.set(0)
        health = self.by_name[unique] = LoopHealth(unique, time.monotonic(), gauge=child)
        return health

    def remove(self, health: LoopHealth) -> None:
        if self.by_name.pop(health.name, None) is not None and self.gauge is not None:
            self.gauge.remove(health.name)

    def problems(self, stale_s: float) -> list[str]:
        now = time.monotonic()
        return [p for h in self.by_name.values() if (p := h.problem(stale_s, now)) is not None]
