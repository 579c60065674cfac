"""Simulator: village loudspeakers and screens speaking the real endpoint protocol.

`EndpointClient` is also the reference client for device makers (docs/endpoint-protocol
.md; `warngate endpoint-sim`): it long-polls its messages with a cursor, verifies each
answer's signature (refusing forged, replayed and expired ones, and reporting each
refusal in a heartbeat at once), plays what says `play` unless a later entry cancelled
or superseded it, posts a receipt for each, sends heartbeats, and reconnects with
backoff. An entry it has played that comes again with a new seq and a higher `repeat`
(an escalation) is played again, and its receipt says which repeat it was. `Fleet` runs
one client per endpoint of
the directory, some offline, some flaky, some slow, some broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from gateway.directory import Directory, Endpoint
from gateway.endpoints.http import poll_scope
from gateway.endpoints.signing import HEADER, PublicKey, Refused, Verifier
from gateway.models import Channel
from gateway.sim.population import Population, Truth
from gateway.sim.truth import LiveTruth
from gateway.sim.world import Fate

__all__ = ["DeviceBehaviour", "EndpointClient", "Fleet"]

log = logging.getLogger("warngate.sim.devices")
Played = Callable[["EndpointClient", dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class DeviceBehaviour:
    offline: float = 0.05  # never connect
    flaky: float = 0.1  # lose a third of their requests
    slow: float = 0.1  # take a while to play
    broken: float = 0.02  # fetch, but the speaker does not sound (receipt: failed)
    slow_delay_s: tuple[float, float] = (5.0, 20.0)
    heartbeat_s: float = 60.0
    wait_s: float = 30.0


@dataclass
class EndpointClient:
    session: aiohttp.ClientSession
    base: str
    endpoint: Endpoint
    token: str
    on_play: Played | None = None
    flaky: float = 0.0
    delay_s: float = 0.0
    broken: bool = False
    lying: bool = False  # says it played, stays silent
    heartbeat_s: float = 60.0
    wait_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    # The public keys of the device's configuration (none: every message is refused).
    verifier: Verifier = field(default_factory=lambda: Verifier({}))
    refused: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None
    played: list[dict[str, Any]] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)  # cancelled or superseded alert ids
    _seen: set[tuple[str, str]] = field(default_factory=set)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, tail: str) -> str:
        return f"{self.base.rstrip('/')}/api/v1/endpoints/{self.endpoint.id}/{tail}"

    async def run(self, stop: asyncio.Event) -> None:
        beat = asyncio.create_task(self._heartbeats(stop))
        backoff = 1.0
        try:
            while not stop.is_set():
                try:
                    await self.poll(self.wait_s)
                    backoff = 1.0
                except (aiohttp.ClientError, TimeoutError, Refused) as exc:
                    log.debug("%s: %s; reconnecting in %.0f s", self.endpoint.id, exc, backoff)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    backoff = min(backoff * 2, 60.0)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def poll(self, wait_s: float) -> list[dict[str, Any]]:
        """One long-poll: fetch changes after the cursor, act on each."""
        if self.flaky and self.rng.random() < self.flaky:
            raise aiohttp.ClientConnectionError("simulated lost connection")
        params = {"wait": str(wait_s)}
        if self.cursor:
            params["since"] = self.cursor
        timeout = aiohttp.ClientTimeout(total=wait_s + 15)
        async with self.session.get(
            self.url("messages"), params=params, headers=self.headers, timeout=timeout
        ) as resp:
            if resp.status == 401:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=401, message="device token refused"
                )
            resp.raise_for_status()
            raw = await resp.read()
            signature = resp.headers.get(HEADER)
        await self.check(signature, raw, {poll_scope(self.endpoint)}, "poll")
        body = orjson.loads(raw)
        messages: list[dict[str, Any]] = body["messages"]
        for message in messages:
            if message["action"] == "cancel" or message.get("supersedes"):
                self.dropped |= set(message.get("supersedes", []))
                if message["action"] == "cancel":
                    self.dropped.add(message["id"])
        self.cursor = body["cursor"]
        for message in messages:
            await self._act(message)
        return messages

    async def check(self, signature: str | None, raw: bytes, scopes: set[str], via: str) -> None:
        """Verify a message before acting on it; a refusal is reported at once (in a
        heartbeat: `refused`) and raised, so that nothing of the message is used."""
        try:
            self.verifier.verify(signature, raw, scopes)
        except Refused as exc:
            event = {"reason": exc.reason, "transport": via, "count": len(self.refused) + 1,
                     "at": int(time.time() * 1000), "detail": exc.detail[:200]}  # fmt: skip
            self.refused.append(event)
            log.warning("%s refused a message (%s): %s", self.endpoint.id, via, exc)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self.heartbeat()
            raise

    async def _act(self, message: dict[str, Any]) -> None:
        key = (message["id"], message["seq"])
        if key in self._seen:
            return
        self._seen.add(key)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if message["action"] == "play" and message["id"] in self.dropped:
            return  # cancelled or superseded while we waited: never play it
        if not message.get("content"):
            return
        ok = not self.broken
        if ok:
            self.played.append(message)
            if self.on_play is not None and not self.lying:
                await self.on_play(self, message)
        status = "failed"
        if ok:
            status = "played" if self.endpoint.kind.value == "loudspeaker" else "displayed"
        receipt: dict[str, Any] = {"alert": message["id"], "status": status}
        if message.get("repeat"):
            receipt["repeat"] = int(message["repeat"])  # a play after the first
        if not ok:
            receipt["reason"] = "amplifier fault"
        async with self.session.post(
            self.url("receipts"), data=orjson.dumps(receipt), headers=self.headers
        ) as resp:
            await resp.read()

    async def heartbeat(self) -> None:
        beat: dict[str, Any] = {
            "status": "fault" if self.broken else "degraded" if self.refused else "ok",
            "volume": 80,
            "power": "mains",
        }
        if self.refused:
            beat["refused"] = self.refused[-1]
        async with self.session.post(
            self.url("heartbeat"), data=orjson.dumps(beat), headers=self.headers
        ) as resp:
            await resp.read()

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError):
                await self.heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)


class Fleet:
    """Every endpoint of the directory as a simulated device."""

    def __init__(
        self,
        directory: Directory,
        population: Population,
        truth: Truth,
        behaviour: DeviceBehaviour,
        token_of: Callable[[str], str],
        *,
        time_scale: float = 1.0,
        seed: int = 13,
        only: set[str] | None = None,
        trusted: dict[str, PublicKey] | None = None,
        live: LiveTruth | None = None,
    ) -> None:
        self.directory = directory
        self.population = population
        self.truth = truth
        self.behaviour = behaviour
        self.token_of = token_of
        self.time_scale = time_scale
        self.rng = random.Random(seed)
        self.only = only
        self.trusted = trusted or {}
        self.live = live
        self.clients: list[EndpointClient] = []
        self.offline: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _played(self, client: EndpointClient, message: dict[str, Any]) -> None:
        span = self.population.span(Channel(client.endpoint.kind.value), client.endpoint.id)
        if span is not None:
            self.truth.add(message["id"], span)
        if self.live is not None and message.get("action") == "play":
            self.live.played(message["id"], client.endpoint.id)

    async def start(self, session: aiohttp.ClientSession, base: str) -> None:
        b = self.behaviour
        for endpoint in sorted(self.directory.endpoints.values(), key=lambda e: e.id):
            if self.only is not None and endpoint.id not in self.only:
                continue
            roll = self.rng.random()
            fate = self.live.fate(endpoint.id) if self.live is not None else None
            if (fate is Fate.OFFLINE) if fate is not None else roll < b.offline:
                self.offline.append(endpoint.id)
                continue
            slow = self.rng.random() < b.slow
            client = EndpointClient(
                session=session,
                base=base,
                endpoint=endpoint,
                token=self.token_of(endpoint.id),
                on_play=self._played,
                flaky=(1 / 3) if self.rng.random() < b.flaky else 0.0,
                delay_s=self.rng.uniform(*b.slow_delay_s) * self.time_scale if slow else 0.0,
                broken=(fate is Fate.BROKEN) if fate is not None else self.rng.random() < b.broken,
                lying=fate is Fate.LYING,
                heartbeat_s=b.heartbeat_s,
                wait_s=b.wait_s,
                rng=random.Random(self.rng.random()),
                verifier=Verifier(self.trusted),
            )
            self.clients.append(client)
        self._tasks = [asyncio.create_task(c.run(self._stop)) for c in self.clients]

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def played_after_cancel(self) -> list[tuple[str, str]]:
        """(endpoint, alert) where a device played a warning it had been told was dropped."""
        out = []
        for c in self.clients:
            dropped_at: dict[str, int] = {}
            for i, m in enumerate(c.played):
                for gone in m.get("supersedes", []):
                    dropped_at.setdefault(gone, i)
                if m["action"] == "cancel":
                    dropped_at.setdefault(m["id"], i)
            for i, m in enumerate(c.played):
                if m["action"] == "play" and dropped_at.get(m["id"], 10**9) < i:
                    out.append((c.endpoint.id, m["id"]))
        return out
