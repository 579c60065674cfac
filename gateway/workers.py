"""Dispatch: the worker loops of one process — planners, senders, reclaimers, gauges.

Planning loops read the planning streams (red/orange lane first); one send loop per
push channel keeps up to `dispatch.concurrency` batches in flight; the lease loop keeps
this worker's lease (`dispatch.worker_lease_s`) alive; the reclaim loop takes over
entries left pending longer than `dispatch.claim_idle_s` by workers whose lease ran out
(they died), and its own entries whose handling failed — never those of a live worker,
however long they wait; the gauge loop reports queue depths; the coverage monitor
refreshes coverage and escalates at deadlines. A loop that fails is logged and
restarted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.aio import sleep_or_stop, stop_tasks
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
    ) -> None:
        self.config = config
        self.store = store
        self.planner = planner
        self.monitor = monitor
        self.sender = sender
        self.metrics = metrics
        self.consumer = consumer
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.planning: set[str] = set()  # plan entries being handled by this process

    def plan_streams(self) -> list[str]:
        return [self.store.keys.plan_queue(lane) for lane in LANES]

    def send_streams(self, channel: Channel) -> list[str]:
        return [self.store.keys.send_queue(channel.value, lane) for lane in LANES]

    async def start(self, planners: int = 1) -> None:
        # The lease first: from the first entry this worker takes, others know it lives.
        await self.store.renew_lease(self.consumer, self._lease_ms())
        for stream in self.plan_streams():
            await self.store.ensure_group(stream, PLAN_GROUP)
        channels = [c for c in PUSH_CHANNELS if c in self.config.settings.channels]
        for channel in channels:
            for stream in self.send_streams(channel):
                await self.store.ensure_group(stream, SEND_GROUP)
        loops: list[Callable[[], Awaitable[None]]] = [self._plan_loop] * planners
        loops += [functools.partial(self._send_loop, c) for c in channels]
        loops += [
            self._lease_loop,
            functools.partial(self._reclaim_loop, channels),
            functools.partial(self._gauge_loop, channels),
        ]
        if self.monitor is not None:
            interval = self.config.settings.coverage.interval_s
            loops.append(functools.partial(self.monitor.run, self.stop, interval))
        self._tasks = [
            asyncio.create_task(self._forever(loop), name=f"worker-{getattr(loop, 'func', loop)}")
            for loop in loops
        ]

    async def _forever(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Keep a worker loop alive through errors (Redis restarting, a bug): log, go on."""
        while not self.stop.is_set():
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.stop.is_set():
                    return  # shutting down: Redis may already be gone
                log.exception("worker loop failed; restarting it in 1 s")
                await sleep_or_stop(self.stop, 1.0)

    async def close(self, grace_s: float = 5.0) -> None:
        self.stop.set()
        await stop_tasks(self._tasks, grace_s)
        self._tasks = []
        try:  # what this worker leaves pending is anyone's after claim_idle_s
            await self.store.drop_lease(self.consumer)
        except Exception:
            log.warning("could not drop the lease of %s (it runs out by itself)", self.consumer)

    def _lease_ms(self) -> int:
        return int(self.config.settings.dispatch.worker_lease_s * 1000)

    async def _lease_loop(self) -> None:
        every = self.config.settings.dispatch.worker_lease_s / 4
        while not self.stop.is_set():
            await self.store.renew_lease(self.consumer, self._lease_ms())
            await sleep_or_stop(self.stop, every)

    async def _plan_loop(self) -> None:
        block = self.config.settings.dispatch.block_ms
        while not self.stop.is_set():
            rows = await self.store.read_group(
                self.plan_streams(), PLAN_GROUP, self.consumer, count=1, block_ms=block
            )
            for stream, entry, fields in rows:
                await self.plan_entry(stream, entry, fields)

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

    async def _send_loop(self, channel: Channel) -> None:
        limit = self.config.settings.dispatch.concurrency
        block = self.config.settings.dispatch.block_ms
        running: set[asyncio.Task[Any]] = set()
        while not self.stop.is_set():
            free = limit - len(running)
            if free <= 0:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            rows = await self.store.read_group(
                self.send_streams(channel), SEND_GROUP, self.consumer, count=free, block_ms=block
            )
            for row in rows:
                task = asyncio.create_task(_logged(self.sender.handle(*row)))
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.wait(running)

    async def _reclaim_loop(self, channels: list[Channel]) -> None:
        d = self.config.settings.dispatch
        idle_ms = int(d.claim_idle_s * 1000)
        while not self.stop.is_set():
            await sleep_or_stop(self.stop, max(idle_ms / 2000, 0.05))
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

    async def _gauge_loop(self, channels: list[Channel]) -> None:
        while not self.stop.is_set():
            streams = [(s, PLAN_GROUP) for s in self.plan_streams()]
            streams += [(s, SEND_GROUP) for c in channels for s in self.send_streams(c)]
            for stream, group in streams:
                lag, pending = await self.store.queue_depth(stream, group)
                name = stream.removeprefix(self.store.prefix + ":")
                self.metrics.queue_depth.labels(name, "lag").set(lag)
                self.metrics.queue_depth.labels(name, "pending").set(pending)
            await sleep_or_stop(self.stop, 5.0)


async def _logged(work: Awaitable[Any]) -> None:
    """Run one batch; on an unexpected error log it and leave the entry pending, so it
    is taken over and tried again after `dispatch.claim_idle_s`."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("batch failed; it stays pending and will be taken over")
