"""Simulator: a loudspeaker or screen on the MQTT transport (the reference client's MQTT
side; docs/endpoint-protocol.md, "MQTT").

It subscribes to its unit's view in each of its languages, verifies every message
(signature, scope = the topic without the prefix, expiry, seq never older than one
accepted on that topic), reports each refusal in a heartbeat at once, keeps only the
entries meant for it (exercises, groups), waits until an entry (`id`, `seq`) has come in
every one of its languages, then acts on it as the long-poll client does and publishes
its receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson

from gateway.directory import Endpoint
from gateway.endpoints.signing import PROPERTY, Refused, Verifier

__all__ = ["MqttDevice"]

log = logging.getLogger("warngate.sim.mqtt")
Played = Callable[["MqttDevice", dict[str, Any]], Awaitable[None]]


@dataclass
class MqttDevice:
    host: str
    port: int
    endpoint: Endpoint
    password: str | None = None
    prefix: str = "warngate"
    verifier: Verifier = field(default_factory=lambda: Verifier({}))
    on_play: Played | None = None
    heartbeat_s: float = 60.0
    played: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)
    _parts: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _client: aiomqtt.Client | None = None

    def topics(self) -> dict[str, str]:
        """Subscribed topic → its language."""
        e = self.endpoint
        return {f"{self.prefix}/unit/{e.unit}/{e.kind.value}/{lang}": lang for lang in e.languages}

    def _device_topic(self, what: str) -> str:
        return f"{self.prefix}/device/{self.endpoint.id}/{what}"

    async def run(self, stop: asyncio.Event, connected: asyncio.Event | None = None) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                async with aiomqtt.Client(
                    self.host, self.port, username=self.endpoint.id, password=self.password,
                    identifier=f"dev-{self.endpoint.id}", protocol=aiomqtt.ProtocolVersion.V5,
                ) as client:  # fmt: skip
                    self._client = client
                    for topic in self.topics():
                        await client.subscribe(topic, qos=1)
                    await self.heartbeat()
                    if connected is not None:
                        connected.set()
                    backoff = 1.0
                    listen = asyncio.create_task(self._listen(client))
                    beats = asyncio.create_task(self._beats(stop))
                    ended = asyncio.create_task(stop.wait())
                    await asyncio.wait({listen, beats, ended}, return_when=asyncio.FIRST_COMPLETED)
                    for task in (listen, beats, ended):
                        task.cancel()
                    await asyncio.gather(listen, beats, ended, return_exceptions=True)
            except aiomqtt.MqttError as exc:
                log.debug("%s: %s; again in %.0f s", self.endpoint.id, exc, backoff)
            finally:
                self._client = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 60.0)

    async def _beats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)
            await self.heartbeat()

    async def heartbeat(self) -> None:
        beat: dict[str, Any] = {"status": "degraded" if self.refused else "ok", "power": "mains"}
        if self.refused:
            beat["refused"] = self.refused[-1]
        if self._client is not None:
            await self._client.publish(self._device_topic("heartbeat"), orjson.dumps(beat), qos=1)

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            raw = message.payload if isinstance(message.payload, bytes) else b""
            props = message.properties
            pairs = dict(props.UserProperty) if props and hasattr(props, "UserProperty") else {}
            await self.receive(str(message.topic), raw, pairs.get(PROPERTY))

    async def receive(self, topic: str, raw: bytes, signature: str | None) -> None:
        """One message on a view topic: verified, then acted on."""
        language = self.topics().get(topic)
        if language is None or not raw:  # an emptied view: nothing to act on
            return
        scope = topic.removeprefix(f"{self.prefix}/")
        try:
            self.verifier.verify(signature, raw, {scope})
        except Refused as exc:
            event = {"reason": exc.reason, "transport": "mqtt", "count": len(self.refused) + 1,
                     "at": int(time.time() * 1000), "detail": exc.detail[:200]}  # fmt: skip
            self.refused.append(event)
            log.warning("%s refused a message on %s: %s", self.endpoint.id, topic, exc)
            await self.heartbeat()
            return
        view = orjson.loads(raw)
        for entry in view.get("messages", []):
            if not self._for_me(entry):
                continue
            if entry["action"] == "cancel" or entry.get("supersedes"):
                self.dropped |= set(entry.get("supersedes", []))
                if entry["action"] == "cancel":
                    self.dropped.add(entry["id"])
            key = (entry["id"], entry["seq"])
            if key in self._seen:
                continue
            parts = self._parts.setdefault(key, {})
            parts[language] = entry
            if len(parts) == len(self.endpoint.languages):
                del self._parts[key]
                self._seen.add(key)
                await self._act(self._merged(parts))

    def _for_me(self, entry: dict[str, Any]) -> bool:
        if entry.get("exercise_only") and not self.endpoint.exercise:
            return False
        groups = entry.get("groups") or []
        return not groups or bool(set(groups) & set(self.endpoint.groups))

    def _merged(self, parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The entry with the content of every language, in the device's order."""
        first = parts[self.endpoint.languages[0]]
        content = []
        for lang in self.endpoint.languages:
            for part in parts[lang].get("content", []):
                if "layouts" in part and self.endpoint.display is not None:
                    d = self.endpoint.display
                    part = {**part, "pages": part["layouts"].get(f"{d.chars_per_line}x{d.lines}")}
                content.append(part)
        return {**first, "content": content}

    async def _act(self, entry: dict[str, Any]) -> None:
        if entry["action"] == "play" and entry["id"] in self.dropped:
            return
        if not entry.get("content"):
            return
        self.played.append(entry)
        if self.on_play is not None:
            await self.on_play(self, entry)
        status = "played" if self.endpoint.kind.value == "loudspeaker" else "displayed"
        if self._client is not None:
            receipt = orjson.dumps({"alert": entry["id"], "status": status})
            await self._client.publish(self._device_topic("receipts"), receipt, qos=1)
