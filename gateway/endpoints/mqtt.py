"""Endpoints: the MQTT transport — unit views as retained messages, device reports in.

Each unit view (unit × kind × language of the unit's devices) is one **retained**
message on `{prefix}/unit/{unit}/{kind}/{language}`: the whole current state of the
view, the entries as the HTTP protocol presents them (same `id`, `seq`, `action`,
content in that one language), signed (scope: the topic without the prefix; seq: the
view's cursor), with an MQTT 5 message expiry at the end of its latest entry (a live
warning's expiry; a cancellation's expiry plus the 24 h it is kept), so that a device
connecting after days gets the current state and the broker itself drops what has
ended. An empty view clears its retained message. The unit state is built once (the
hub's tail says which units changed; they are read in one round trip) and published
by one gateway process at a time (a Redis lease), so that retained states are never
written out of order; on every (re)connection the leader publishes every view again.

Devices publish receipts and heartbeats to `{prefix}/device/{endpoint}/receipts` and
`…/heartbeat`, the broker's ACL letting each publish only its own; every gateway
process takes them through one shared subscription (`$share/{group}/…`) and feeds them
to the hub's receipt state machine and health records, as the HTTP routes do. A bad
payload is counted and dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from channels import DisplayAdapter
from gateway.aio import sleep_or_stop, stop_tasks
from gateway.directory import Endpoint
from gateway.endpoints.hub import LOUDSPEAKER, EndpointHub
from gateway.endpoints.signing import PROPERTY, Signer
from gateway.errors import ProblemError
from gateway.settings import MqttSettings
from gateway.store import UnitEntry, now_ms
from gateway.store.units import GRACE_MS

__all__ = ["MqttBridge", "View", "broker_address", "unit_views", "view_topic"]

log = logging.getLogger("warngate.endpoints.mqtt")
LEASE_MS = 15_000
CHUNK = 500  # units read and published per round


def broker_address(settings: MqttSettings) -> tuple[str, int, str | None, str | None, bool]:
    """(host, port, username, password, tls) from `endpoints.mqtt.url`."""
    assert settings.url is not None
    url = urlsplit(settings.url.get_secret_value())
    tls = url.scheme == "mqtts"
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        raise ValueError("endpoints.mqtt.url must be mqtt://host[:port] or mqtts://host[:port]")
    user = unquote(url.username) if url.username else None
    password = unquote(url.password) if url.password else None
    return url.hostname, url.port or (8883 if tls else 1883), user, password, tls


def view_topic(prefix: str, unit: str, kind: str, language: str) -> str:
    return f"{prefix}/unit/{unit}/{kind}/{language}"


@dataclass(frozen=True)
class View:
    """One retained message to publish: its topic (without prefix) and payload parts."""

    scope: str  # unit/{unit}/{kind}/{language}
    cursor: str  # the highest seq of its entries ("0-0" for none)
    messages: list[dict[str, Any]]
    exp_ms: int  # when the whole view has ended (0: empty)

    def body(self, server_time: int) -> bytes:
        unit, kind, language = self.scope.split("/")[1:]
        return orjson.dumps(
            {
                "unit": unit,
                "kind": kind,
                "language": language,
                "cursor": self.cursor,
                "messages": self.messages,
                "server_time": server_time,
            }
        )

    def digest(self) -> bytes:
        """What the view holds, without the time of sending: unchanged views are skipped."""
        return hashlib.sha256(orjson.dumps([self.cursor, self.messages])).digest()


def _entry(
    entry: UnitEntry, kind: str, language: str, screens: Sequence[tuple[int, int]], now: int,
    display: DisplayAdapter,
) -> dict[str, Any] | None:  # fmt: skip
    """An entry as the view presents it (as `present` does for a device), or None when
    the view's kind does not get it; the audience fields let each device filter."""
    d = entry.data
    messages = d.get("messages") or {}
    if kind not in messages and d.get("action") != "cancel":
        return None
    action, reason = d["action"], d.get("reason")
    if action == "play" and int(d.get("expires", 0)) <= now:
        action, reason, messages = "cancel", "expired", d.get("cancel_messages") or {}
    channel = messages.get(kind, {})
    content: list[dict[str, Any]] = []
    if kind == "display":
        for cpl, lines in screens:
            for part in display.present(channel, [language], cpl, lines):
                if not content:
                    content = [{k: v for k, v in part.items() if k != "pages"} | {"layouts": {}}]
                content[0]["layouts"][f"{cpl}x{lines}"] = part["pages"]
    else:
        content = LOUDSPEAKER.present(channel, [language])
    return {
        "id": entry.alert,
        "seq": entry.seq,
        "action": action,
        "reason": reason,
        "kind": d.get("kind"),
        "level": d.get("level"),
        "hazard": d.get("hazard"),
        "status": d.get("status"),
        "expires": datetime.fromtimestamp(int(d.get("expires", 0)) / 1000, UTC).isoformat(),
        "supersedes": d.get("supersedes", []),
        "repeat": int(d.get("repeat", 0)),
        "exercise_only": bool(d.get("exercise_only")),
        "groups": list(d.get("groups") or []),
        "content": content,
    }


def unit_views(
    unit: str, entries: Sequence[UnitEntry], endpoints: Iterable[Endpoint], now: int,
    display: DisplayAdapter,
) -> list[View]:  # fmt: skip
    """Every view of a unit its devices subscribe to, built once for all of them."""
    wanted: dict[tuple[str, str], set[tuple[int, int]]] = {}
    for ep in endpoints:
        for lang in ep.languages:
            screens = wanted.setdefault((ep.kind.value, lang), set())
            if ep.display is not None:
                screens.add((ep.display.chars_per_line, ep.display.lines))
    views = []
    for (kind, lang), screens in sorted(wanted.items()):
        shown, cursor, order, exp = [], "0-0", (-1, -1), 0
        for e in entries:
            data = _entry(e, kind, lang, sorted(screens), now, display)
            if data is None:
                continue
            shown.append(data)
            if e.order > order:
                cursor, order = e.seq, e.order
            ends = int(e.data.get("expires", 0))
            exp = max(exp, ends if data["action"] == "play" else ends + GRACE_MS)
        views.append(View(f"unit/{unit}/{kind}/{lang}", cursor, shown, exp if shown else 0))
    return views


class MqttBridge:
    """The MQTT side of the hub: publisher (when leader) and device-report consumer."""

    def __init__(self, hub: EndpointHub, settings: MqttSettings, owner: str) -> None:
        self.hub = hub
        self.settings = settings
        self.owner = owner
        self.signer: Signer = hub.signer
        self.metrics = hub.metrics
        self.leader = False
        self.connected = False
        self.metrics.mqtt_connected.set_function(lambda: int(self.connected))
        self._client: aiomqtt.Client | None = None
        self._dirty: set[str] = set()
        self._everything = True  # publish every view (first connection, new leader)
        self._wake = asyncio.Event()
        self._last: dict[str, bytes] = {}  # topic → digest of what it holds
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.reports = {"ok": 0, "invalid": 0, "unknown-device": 0, "failed": 0}
        hub.listeners.append(self.changed)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._connection(), name="mqtt-connection"),
            asyncio.create_task(self._lead(), name="mqtt-lease"),
        ]

    async def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await stop_tasks(self._tasks, 2.0)

    def changed(self, units: list[str]) -> None:
        self._dirty.update(units)
        self._wake.set()

    # -- the lease: one publisher -----------------------------------------------------

    async def _lead(self) -> None:
        while not self._stop.is_set():
            try:
                leading = await self.hub.store.mqtt_lease(self.owner, LEASE_MS)
            except Exception:
                log.warning("renewing the MQTT publisher lease failed", exc_info=True)
                leading = False
            if leading and not self.leader:
                log.info("publishing unit views to the MQTT broker (%s)", self.owner)
                self._everything = True
                self._wake.set()
            self.leader = leading
            await sleep_or_stop(self._stop, LEASE_MS / 3000)

    # -- the connection ---------------------------------------------------------------

    def _client_for(self) -> aiomqtt.Client:
        host, port, user, password, tls = broker_address(self.settings)
        context = None
        if tls:
            context = ssl.create_default_context(
                cafile=str(self.settings.ca_file) if self.settings.ca_file else None
            )
        return aiomqtt.Client(
            host, port, username=user, password=password, identifier=f"warngate-{self.owner}",
            protocol=aiomqtt.ProtocolVersion.V5, keepalive=self.settings.keepalive_s,
            timeout=self.settings.connect_timeout_s, tls_context=context,
            max_inflight_messages=1000, max_queued_outgoing_messages=100_000,
        )  # fmt: skip

    async def _connection(self) -> None:
        backoff = 1.0
        prefix, group = self.settings.prefix, self.settings.share_group
        while not self._stop.is_set():
            try:
                async with self._client_for() as client:
                    self._client = client
                    await client.subscribe(
                        [(f"$share/{group}/{prefix}/device/+/{t}", 1)
                         for t in ("receipts", "heartbeat")]
                    )  # fmt: skip
                    self.connected = True
                    backoff = 1.0
                    self._last.clear()  # the broker may have lost its retained messages
                    self._everything = True
                    self._wake.set()
                    log.info("connected to the MQTT broker")
                    tasks = [asyncio.create_task(self._publish_forever(client)),
                             asyncio.create_task(self._consume(client))]  # fmt: skip
                    try:
                        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            task.result()  # raises what ended it
                    finally:
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # aiomqtt.MqttError, OSError: the broker is away
                if self._stop.is_set():
                    break
                log.warning("MQTT broker: %s; again in %.0f s", exc, backoff)
            finally:
                self.connected = False
                self._client = None
            await sleep_or_stop(self._stop, backoff)
            backoff = min(backoff * 2, self.settings.reconnect_max_s)

    # -- publishing -------------------------------------------------------------------

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if not self.leader:
                self._dirty.clear()  # the leader publishes them
                continue
            if self._everything:
                self._everything = False
                self._dirty.clear()
                units = sorted(self.hub.directory.endpoints_by_unit)
            else:
                units, self._dirty = sorted(self._dirty), set()
            try:
                await self.publish_units(client, units)
            except Exception:
                self._dirty.update(units)  # again after the reconnection
                raise

    async def publish_units(self, client: aiomqtt.Client, units: Sequence[str]) -> int:
        """Publish the views of these units that changed; how many were published."""
        by_unit = self.hub.directory.endpoints_by_unit
        units = [u for u in units if u in by_unit]
        sent = 0
        for i in range(0, len(units), CHUNK):
            chunk = units[i : i + CHUNK]
            states = await self.hub.store.units_entries(chunk)
            now = now_ms()
            jobs = []
            for unit, entries in zip(chunk, states, strict=True):
                for view in unit_views(unit, entries, by_unit[unit], now, self.hub.display):
                    topic = f"{self.settings.prefix}/{view.scope}"
                    digest = view.digest()
                    if self._last.get(topic) == (digest if view.messages else b""):
                        continue
                    if not view.messages and topic not in self._last:
                        continue  # never published: nothing to clear
                    jobs.append(self._publish(client, topic, view, now, digest))
            await asyncio.gather(*jobs)
            sent += len(jobs)
        self.published += sent
        self.metrics.mqtt_published.inc(sent)
        return sent

    async def _publish(
        self, client: aiomqtt.Client, topic: str, view: View, now: int, digest: bytes
    ) -> None:
        if not view.messages:
            await client.publish(topic, b"", qos=1, retain=True)  # clears the retained one
            self._last[topic] = b""
            return
        body = view.body(now)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = max(1, (view.exp_ms - now) // 1000)
        line = self.signer.sign(body, view.scope, view.cursor, exp_ms=view.exp_ms, iat_ms=now)
        props.UserProperty = [(PROPERTY, line)]
        props.ContentType = "application/json"
        await client.publish(topic, body, qos=1, retain=True, properties=props)
        self._last[topic] = digest

    # -- device reports ---------------------------------------------------------------

    async def _consume(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
            await self.report(str(message.topic), raw)

    async def report(self, topic: str, payload: bytes) -> str:
        """One receipt or heartbeat from a device, as its HTTP route would take it;
        the outcome (`ok`, `invalid`, `unknown-device`, `failed`) is counted."""
        parts = topic.split("/")
        prefix = self.settings.prefix.split("/")
        endpoint = None
        if len(parts) == len(prefix) + 3 and parts[: len(prefix)] == prefix:
            endpoint = self.hub.directory.endpoints.get(parts[-2])
        kind = parts[-1] if parts and parts[-1] in ("receipts", "heartbeat") else "other"
        outcome = "ok"
        if endpoint is None or kind == "other":
            outcome = "unknown-device"
        else:
            outcome = await self._report(endpoint, kind, payload)
        self.reports[outcome] += 1
        self.metrics.mqtt_reports.labels(kind, outcome).inc()
        return outcome

    async def _report(self, endpoint: Endpoint, kind: str, payload: bytes) -> str:
        for attempt in range(3):  # Redis away for a moment: the report is not lost at once
            try:
                if kind == "receipts":
                    await self.hub.receipts(endpoint, payload)
                else:
                    await self.hub.heartbeat(endpoint, payload)
                return "ok"
            except ProblemError as exc:
                log.info("MQTT %s of %s refused: %s", kind, endpoint.id, exc.detail)
                return "invalid"
            except Exception:
                log.warning("MQTT %s of %s failed", kind, endpoint.id, exc_info=True)
                if attempt < 2:
                    await asyncio.sleep(1.0)
        return "failed"
