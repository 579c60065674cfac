"""Dispatch: the worker loops of one process — planners, senders, reclaimers, gauges.

Planning loops read the planning streams (red/orange lane first); one send loop per
push channel keeps up to `dispatch.concurrency` batches in flight; the lease loop keeps
this worker's lease (`dispatch.worker_lease_s`) alive; the reclaim loop takes over
entries left pending longer than `dispatch.claim_idle_s` by workers whose lease ran out
(they died), and its own entries whose handling failed — never those of a live worker,
however long they wait; the gauge loop reports queue depths; the coverage monitor
refreshes coverage and escalates at deadlines. A loop that fails is logged and
restarted; each reports its rounds to a `LoopHealth` (read by /readyz).

Stopping (`begin_stop`, then `close`): no new entry is read, batches waiting to retry
are handed back at once, batches in a provider call may finish until the deadline, and
whatever still runs then is cancelled. A batch handed back or cancelled is never
acknowledged: its entry stays pending, and another worker takes it over once this
worker's lease is dropped (at the end of `close`) and `dispatch.claim_idle_s` passed;
recipients it already reached are not sent to again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.aio import LoopHealth, Loops, sleep_or_stop, stop_tasks
from gateway.config import Config
from gateway.dispatch import KEEP_S, Sender, keep_claim
from gateway.metrics import Metrics
from gateway.models import Channel
from gateway.monitor import Monitor
from gateway.plan import PUSH_CHANNELS
from gateway.planner import Planner
from gateway.store import Store
from gateway.store.deliveries import LANES, PLAN_GROUP, SEND_GROUP

__all__ = ["Workers"]

log = logging.getLogger("warngate.workers")


class Workers:
    """The worker loops of one process: planners, senders, reclaimers, gauges."""

    def __init__(
        self,
        config: Config,
        store: Store,
        planner: Planner,
        sender: Sender,
        metrics: Metrics,
        consumer: str,
        monitor: Monitor | None = None,
        loops: Loops | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.planner = planner
        self.monitor = monitor
        self.sender = sender
        self.metrics = metrics
        self.consumer = consumer
        self.stop = asyncio.Event()
        self.loops = loops if loops is not None else Loops()
        self._tasks: list[asyncio.Task[None]] = []
        self.planning: set[str] = set()  # plan entries being handled by this process
        self._health: list[LoopHealth] = []
        self._batches: set[asyncio.Task[Any]] = set()  # batches being sent, of every loop
        self._waiting: set[asyncio.Task[Any]] = set()  # batches waiting to retry
        sender.sleep = self._stoppable(sender.sleep)

    def plan_streams(self) -> list[str]:
        return [self.store.keys.plan_queue(lane) for lane in LANES]

    def send_streams(self, channel: Channel) -> list[str]:
        return [self.store.keys.send_queue(channel.value, lane) for lane in LANES]

    async def ensure_groups(self) -> None:
        """The consumer groups of every stream read here (a Redis restarted empty has
        none: every read would fail with NOGROUP)."""
        for stream in self.plan_streams():
            await self.store.ensure_group(stream, PLAN_GROUP)
        for channel in self._channels():
            for stream in self.send_streams(channel):
                await self.store.ensure_group(stream, SEND_GROUP)

    def _channels(self) -> list[Channel]:
        return [c for c in PUSH_CHANNELS if c in self.config.settings.channels]

    async def start(self, planners: int = 1) -> None:
        try:
            # The lease first: from the first entry this worker takes, others know it lives.
            await self.store.renew_lease(self.consumer, self._lease_ms())
            await self.ensure_groups()
        except Exception as exc:  # Redis down at start: the loops wait for it
            log.warning("cannot prepare the streams yet (%s); the loops retry", exc)
        channels = self._channels()
        loops: list[tuple[str, Callable[[LoopHealth], Awaitable[None]]]]
        loops = [("plan", self._plan_loop)] * planners
        loops += [(f"send-{c.value}", functools.partial(self._send_loop, c)) for c in channels]
        loops += [
            ("lease", self._lease_loop),
            ("reclaim", functools.partial(self._reclaim_loop, channels)),
            ("gauges", functools.partial(self._gauge_loop, channels)),
        ]
        if self.monitor is not None:
            loops.append(("monitor", self._monitor_loop))
        self._health = [self.loops.add(name) for name, _ in loops]
        self._tasks = [
            asyncio.create_task(self._forever(loop, health), name=f"worker-{health.name}")
            for (_, loop), health in zip(loops, self._health, strict=True)
        ]

    async def _forever(
        self, loop: Callable[[LoopHealth], Awaitable[None]], health: LoopHealth
    ) -> None:
        """Keep a worker loop alive through errors (Redis restarting, a bug): log, go on."""
        try:
            while not self.stop.is_set():
                try:
                    await loop(health)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self.stop.is_set():
                        return  # shutting down: Redis may already be gone
                    health.failed(exc)
                    log.exception("worker loop %s failed; restarting it in 1 s", health.name)
                    await sleep_or_stop(self.stop, 1.0)
                    if "NOGROUP" in str(exc):
                        with contextlib.suppress(Exception):  # the next round says
                            await self.ensure_groups()
        finally:
            health.ended = not self.stop.is_set()

    def _stoppable(
        self, sleep: Callable[[float], Awaitable[None]]
    ) -> Callable[[float], Awaitable[None]]:
        """The sender's waits (retry backoff, rate-limit tokens) as the stop sees them: a
        batch that would wait once the stop has begun is handed back instead (cancelled
        before its next provider call), and one waiting is handed back at once."""

        async def wait(seconds: float) -> None:
            if self.stop.is_set():
                raise asyncio.CancelledError("stopping: batch handed back")
            task = asyncio.current_task()
            if task is None:
                return await sleep(seconds)
            self._waiting.add(task)
            try:
                await sleep(seconds)
            finally:
                self._waiting.discard(task)

        return wait

    def begin_stop(self) -> None:
        """Take no new work from now on; batches in a provider call go on (see `close`)."""
        if self.stop.is_set():
            return
        self.stop.set()
        for task in list(self._waiting):
            task.cancel()  # waiting to retry: handed back now rather than at the deadline
        log.info(
            "worker %s stopping: %d batches in flight, %d handed back",
            self.consumer,
            len(self._batches) - len(self._waiting),
            len(self._waiting),
        )

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop: work in hand may finish for `grace_s`; what still runs is cancelled, which
        hands it back (its entry is left pending, never acknowledged)."""
        self.begin_stop()
        batches = list(self._batches)
        await stop_tasks([*self._tasks, *batches], grace_s, cancel_s=1.0)
        if cut := sum(t.cancelled() for t in batches):
            log.info("worker %s: %d batches handed back at the deadline", self.consumer, cut)
        self._tasks = []
        for health in self._health:
            self.loops.remove(health)
        self._health = []
        try:  # what this worker leaves pending is anyone's after claim_idle_s
            await self.store.drop_lease(self.consumer)
        except Exception:
            log.warning("could not drop the lease of %s (it runs out by itself)", self.consumer)

    def _lease_ms(self) -> int:
        return int(self.config.settings.dispatch.worker_lease_s * 1000)

    async def _lease_loop(self, health: LoopHealth) -> None:
        every = self.config.settings.dispatch.worker_lease_s / 4
        while not self.stop.is_set():
            await self.store.renew_lease(self.consumer, self._lease_ms())
            health.ok()
            await sleep_or_stop(self.stop, every)

    async def _read(
        self, streams: list[str], group: str, count: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """A blocking read of new entries that gives up when the stop begins: an entry
        read and then left would wait `claim_idle_s` for another worker."""
        read = asyncio.ensure_future(
            self.store.read_group(
                streams,
                group,
                self.consumer,
                count=count,
                block_ms=self.config.settings.dispatch.block_ms,
            )
        )
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({read, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            read.cancel()
            raise
        finally:
            stopping.cancel()
        if not read.done():
            read.cancel()  # the client drops the connection: the server delivers nothing
            try:
                return await read  # it may have been answered meanwhile: those are ours
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are cancelled ourselves, not only the read
                return []
        return read.result()

    async def _plan_loop(self, health: LoopHealth) -> None:
        while not self.stop.is_set():
            rows = await self._read(self.plan_streams(), PLAN_GROUP, count=1)
            for stream, entry, fields in rows:
                await self.plan_entry(stream, entry, fields)
            health.ok()

    async def plan_entry(self, stream: str, entry: str, fields: dict[str, str]) -> None:
        alert = fields.get("id", "")
        key = f"{stream}#{entry}"
        self.planning.add(key)
        idle_s = self.config.settings.dispatch.claim_idle_s
        try:
            async with keep_claim(self.store, stream, PLAN_GROUP, self.consumer, entry, idle_s):
                await self.planner.plan(alert)
        except Exception:
            tries = await self.store.add_attempt(alert, "plan", KEEP_S)
            log.exception("planning %s failed (attempt %d)", alert, tries)
            if tries < self.config.settings.dispatch.max_attempts:
                return  # left pending: reclaimed and tried again after claim_idle_s
            self.metrics.plans.labels("failed").inc()
        finally:
            self.planning.discard(key)
        await self.store.ack(stream, PLAN_GROUP, entry)

    async def _send_loop(self, channel: Channel, health: LoopHealth) -> None:
        limit = self.config.settings.dispatch.concurrency
        running: set[asyncio.Task[Any]] = set()
        while not self.stop.is_set():
            free = limit - len(running)
            if free <= 0:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            rows = await self._read(self.send_streams(channel), SEND_GROUP, count=free)
            for row in rows:
                work = _logged(self.sender.handle(*row))
                task = asyncio.create_task(work, name=f"batch-{row[1]}")
                running.add(task)
                task.add_done_callback(running.discard)
                self._batches.add(task)  # close() waits for it, then hands it back
                task.add_done_callback(self._batches.discard)
            health.ok()
        if running:
            await asyncio.wait(running)

    async def _reclaim_loop(self, channels: list[Channel], health: LoopHealth) -> None:
        d = self.config.settings.dispatch
        idle_ms = int(d.claim_idle_s * 1000)
        while not self.stop.is_set():
            await sleep_or_stop(self.stop, max(idle_ms / 2000, 0.05))
            if self.stop.is_set():
                return  # stopping: take over nothing more
            for stream in self.plan_streams():
                rows = await self.store.claim_abandoned(
                    stream, PLAN_GROUP, self.consumer, idle_ms, busy=self.planning
                )
                for stream_, entry, fields, _ in rows:
                    log.info("took over planning %s of %s", fields.get("id"), stream_)
                    await self.plan_entry(stream_, entry, fields)
            for channel in channels:
                for stream in self.send_streams(channel):
                    rows = await self.store.claim_abandoned(
                        stream, SEND_GROUP, self.consumer, idle_ms, busy=self.sender.busy
                    )
                    for stream_, entry, fields, times in rows:
                        if times > d.max_attempts:
                            await self.sender.give_up(stream_, entry, fields, times)
                            continue
                        log.info("took over batch %s of %s", entry, stream_)
                        await _logged(self.sender.handle(stream_, entry, fields))
            health.ok()

    async def _gauge_loop(self, channels: list[Channel], health: LoopHealth) -> None:
        while not self.stop.is_set():
            streams = [(s, PLAN_GROUP) for s in self.plan_streams()]
            streams += [(s, SEND_GROUP) for c in channels for s in self.send_streams(c)]
            for stream, group in streams:
                lag, pending = await self.store.queue_depth(stream, group)
                name = stream.removeprefix(self.store.prefix + ":")
                self.metrics.queue_depth.labels(name, "lag").set(lag)
                self.metrics.queue_depth.labels(name, "pending").set(pending)
            health.ok()
            await sleep_or_stop(self.stop, 5.0)

    async def _monitor_loop(self, health: LoopHealth) -> None:
        """The coverage monitor's rounds; an error restarts the loop (and shows in health)."""
        assert self.monitor is not None
        interval = self.config.settings.coverage.interval_s
        while not self.stop.is_set():
            await self.monitor.tick()
            health.ok()
            await sleep_or_stop(self.stop, interval)


async def _logged(work: Awaitable[Any]) -> None:
    """Run one batch; on an unexpected error log it and leave the entry pending, so it
    is taken over and tried again after `dispatch.claim_idle_s`."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("batch failed; it stays pending and will be taken over")
