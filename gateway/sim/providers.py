"""Simulator: an SMS gateway and an app push service on loopback, and the messengers.

They speak the provider APIs of `channels.sms` / `channels.app`, decide what *really*
happens to each message (recorded in the ground truth), and send delivery receipts back
to the gateway's callback late, in batches, and sometimes not at all. Relay tasks
(messenger deliveries) reach simulated grid workers, who acknowledge them through the
gateway's relay API: received after a while, relayed to some households later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.directory import Directory
from gateway.models import Channel
from gateway.sim.population import Population, Truth
from gateway.sim.truth import LiveTruth

__all__ = ["MessengerBehaviour", "ProviderBehaviour", "SimProvider"]

log = logging.getLogger("warngate.sim")
# The task code as the reply hint quotes it («CODE 1»): not any 8 capitals ("EXERCISE").
CODE = re.compile(r"\b([A-Z2-7]{8}) 1\b")


@dataclass(frozen=True)
class ProviderBehaviour:
    latency_s: float = 0.02  # per call
    rate_per_s: float = 20_000.0  # beyond this: 429 with Retry-After
    failure_rate: float = 0.0  # share of calls answered 503
    undelivered: float = 0.03  # phone off / app gone: not reached, failure receipt
    receipt_delay_s: tuple[float, float] = (0.2, 2.0)
    receipt_loss: float = 0.05  # receipts that never come back
    opened: float = 0.3  # app: share of delivered notifications opened


@dataclass(frozen=True)
class MessengerBehaviour:
    responsive: float = 0.9  # messengers who act on the task at all
    received_delay_s: tuple[float, float] = (2.0, 10.0)
    relay_delay_s: tuple[float, float] = (10.0, 60.0)
    relay_share: tuple[float, float] = (0.6, 1.0)  # of their households they reach


class SimProvider:
    """One fake provider: `kind` is `sms` (also carries relay tasks) or `app`."""

    def __init__(
        self,
        name: str,
        kind: str,
        behaviour: ProviderBehaviour,
        *,
        directory: Directory,
        population: Population,
        truth: Truth,
        callback_token: str,
        messengers: MessengerBehaviour | None = None,
        time_scale: float = 1.0,
        seed: int = 11,
        live: LiveTruth | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.behaviour = behaviour
        self.directory = directory
        self.population = population
        self.truth = truth
        self.token = callback_token
        self.messengers = messengers
        self.time_scale = time_scale
        self.live = live
        self.rng = random.Random(seed)
        self.gateway = ""
        self.session: aiohttp.ClientSession | None = None
        self.calls = 0
        self.accepted = 0
        self._bucket = behaviour.rate_per_s
        self._bucket_at = 0.0
        self._receipts: list[dict[str, str]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._messenger_index = {
            rid: (unit, households)
            for (unit, channel), cols in directory.recipients.items()
            if channel is Channel.MESSENGER
            for rid, households in zip(cols.ids, cols.households, strict=True)
        }

    @property
    def url(self) -> str:
        path = "/push" if self.kind == "app" else "/send"
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self, session: aiohttp.ClientSession, gateway: str, port: int = 0) -> None:
        self.session = session
        self.gateway = gateway.rstrip("/")
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/send", self.handle)
        app.router.add_post("/push", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._flusher = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        for task in [*self._tasks, *([self._flusher] if self._flusher else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._flusher] if self._flusher else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()

    def _delay(self, span: tuple[float, float]) -> float:
        return self.rng.uniform(*span) * self.time_scale

    def _take(self, n: int) -> bool:
        loop = asyncio.get_running_loop()
        now = loop.time()
        rate = self.behaviour.rate_per_s
        self._bucket = min(rate, self._bucket + (now - self._bucket_at) * rate)
        self._bucket_at = now
        if self._bucket < n and n <= rate:
            return False
        self._bucket -= n
        return True

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = orjson.loads(await request.read())
        rows = body.get("recipients") or body.get("tokens") or []
        b = self.behaviour
        await asyncio.sleep(b.latency_s * self.time_scale)
        if not self._take(len(rows)):
            return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
        if self.rng.random() < b.failure_rate:
            return web.Response(status=503, text="simulated outage")
        text = str(body.get("text") or body.get("notification", {}).get("body", ""))
        results = []
        for row in rows:
            delivery = str(row["id"])
            address = str(row.get("to") or row.get("token") or "")
            results.append({"id": delivery, "status": "accepted" if self.kind == "sms" else "ok"})
            self._spawn(self._deliver(delivery, address, text))
        self.accepted += len(rows)
        return web.json_response({"results": results})

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: str, address: str, text: str) -> None:
        """What happens to one message after the provider accepted it."""
        alert, channel_s, rid = delivery.split(":", 2)
        channel = Channel(channel_s)
        b = self.behaviour
        await asyncio.sleep(self._delay(b.receipt_delay_s))
        delivered = self.rng.random() >= b.undelivered
        if delivered and channel is not Channel.MESSENGER:
            span = self.population.span(channel, rid)
            if span is not None:
                self.truth.add(alert, span)
            if self.live is not None:
                self.live.arrived(alert, rid)
        if self.rng.random() >= b.receipt_loss:
            if self.kind == "sms":
                status = "DELIVRD" if delivered else "UNDELIV"
            else:
                status = "delivered" if delivered else "failed"
            self._receipts.append({"id": delivery, "status": status})
            if delivered and self.kind == "app" and self.rng.random() < b.opened:
                self._receipts.append({"id": delivery, "status": "opened"})
        if delivered and channel is Channel.MESSENGER and self.messengers is not None:
            await self._messenger(alert, rid, address, text)

    async def _messenger(self, alert: str, rid: str, phone: str, text: str) -> None:
        m = self.messengers
        match = CODE.search(text)
        if m is None or match is None or self.rng.random() >= m.responsive:
            return
        code = match.group(1)
        await asyncio.sleep(self._delay(m.received_delay_s))
        await self._post(f"/api/v1/relay/{code}", {"phone": phone, "status": "received"})
        await asyncio.sleep(self._delay(m.relay_delay_s))
        unit, households = self._messenger_of(rid)
        if unit is None:
            return
        told = round(households * self.rng.uniform(*m.relay_share))
        self.truth.add(alert, self.population.relay_span(unit, told))
        named: int | list[str] = told
        if self.live is not None:
            # A grid worker's app names the households it called on.
            named = self.live.called(alert, rid, told)
        await self._post(
            f"/api/v1/relay/{code}", {"phone": phone, "status": "relayed", "households": named}
        )

    def _messenger_of(self, rid: str) -> tuple[str | None, int]:
        return self._messenger_index.get(rid, (None, 0))

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
                    ) -> None:  # fmt: skip
        assert self.session is not None
        try:
            async with self.session.post(
                self.gateway + path, data=orjson.dumps(body), headers=headers or {}
            ) as resp:
                await resp.read()
        except aiohttp.ClientError as exc:
            log.warning("simulator could not reach the gateway: %s", exc)

    async def _flush_forever(self) -> None:
        family = "sms" if self.kind == "sms" else "app"
        while True:
            await asyncio.sleep(0.2 * min(1.0, self.time_scale * 5))
            batch, self._receipts = self._receipts[:5000], self._receipts[5000:]
            if batch:
                await self._post(
                    f"/api/v1/callbacks/{family}/{self.name}",
                    {"receipts": batch},
                    {"X-Callback-Token": self.token, "Content-Type": "application/json"},
                )
