"""Endpoints: the hub — the pull API of village loudspeakers and display screens.

Devices read their unit's *active state* (one entry per live warning chain, rendered
once per unit × language × channel), never a per-device backlog. A device sends the
highest `seq` it has seen as its cursor and gets what changed since; with no cursor,
an unknown one, or one older than anything kept, it gets the whole current state.
A cancelled or expired warning is always presented as `action: cancel`.

One `EndpointHub` per process tails the unit-state stream (one Redis connection for
all devices) and wakes the long-polls and event streams of the units that changed.
What devices fetch is written back as `sent` receipts in bulk, every 200 ms. When the
process stops (`drain`), parked long-polls are answered at once with what they have (no
change, and their cursor) and event streams end with a `retry:` hint.

The protocol is documented for device makers in docs/endpoint-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channels import DisplayAdapter, LoudspeakerAdapter
from gateway.aio import sleep_or_stop, stop_tasks
from gateway.auth import hash_key
from gateway.coverage.reach import record_line
from gateway.directory import Directory, Endpoint
from gateway.endpoints.http import sse_frame, stream_scope
from gateway.endpoints.signing import Signer, new_key
from gateway.errors import NotFound, Unauthorized, Unprocessable
from gateway.jsonbody import fields_of, read_json
from gateway.metrics import Metrics
from gateway.models import Channel
from gateway.render import layout_lines
from gateway.settings import EndpointSettings, RenderSettings
from gateway.store import ReceiptUpdate, Store, UnitEntry, now_ms

__all__ = ["EndpointHub", "present", "visible"]

log = logging.getLogger("warngate.endpoints")
FLUSH_S = 0.2


CACHE_S = 1.0  # a cached unit state is trusted this long when the tail is not keeping up
TAIL_OK_S = 3.0  # the tail is keeping up when a read of it returned this recently
PRESENTED_MAX = 20_000  # presented entries kept (shared by the devices of a unit)
LOUDSPEAKER = LoudspeakerAdapter()
DISPLAY = DisplayAdapter(layout_lines, max_pages=RenderSettings().display_max_pages)
# What devices may report as refused, and how they got it (metric labels stay bounded).
REFUSALS = frozenset(
    {"unsigned", "malformed", "unknown-key", "bad-signature", "wrong-scope", "expired", "replayed"}
)
TRANSPORTS = frozenset({"poll", "sse", "mqtt"})
STOPPING_FRAME = b": the gateway is stopping; reconnect\nretry: %d\n\n"


def visible(entry: UnitEntry, endpoint: Endpoint) -> bool:
    """Exercises only reach devices marked for them; group alerts only their groups."""
    data = entry.data
    if data.get("exercise_only") and not endpoint.exercise:
        return False
    groups = data.get("groups") or []
    if groups and not set(groups) & set(endpoint.groups):
        return False
    return endpoint.kind.value in (data.get("messages") or {}) or data.get("action") == "cancel"


def present(
    entry: UnitEntry, endpoint: Endpoint, now: int, display: DisplayAdapter = DISPLAY
) -> dict[str, Any]:
    """One state entry as the device sees it; expired warnings become cancellations."""
    d = entry.data
    action, reason, messages = d["action"], d.get("reason"), d.get("messages") or {}
    if action == "play" and int(d.get("expires", 0)) <= now:
        # The sweeper republishes expired warnings as cancellations; until it has, a
        # read shows them as such anyway.
        action, reason, messages = "cancel", "expired", d.get("cancel_messages") or {}
    channel_messages = messages.get(endpoint.kind.value, {})
    if endpoint.display is not None:
        content = display.present(
            channel_messages,
            endpoint.languages,
            endpoint.display.chars_per_line,
            endpoint.display.lines,
        )
    else:
        content = LOUDSPEAKER.present(channel_messages, endpoint.languages)
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
        # Escalation: play it this many more times (the entry's seq changes each time).
        "repeat": int(d.get("repeat", 0)),
        "content": content,
    }


_CURSOR = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_U64 = 2**64 - 1


def cursor_key(since: str | None) -> tuple[int, int]:
    """A device's cursor as (ms, seq), or (-1, -1) for none: anything that is not a
    Redis stream id in range (two unsigned 64-bit numbers) is an unknown cursor, and an
    unknown cursor gets the whole current state (docs/endpoint-protocol.md)."""
    found = _CURSOR.fullmatch(since) if since else None
    if found is None:
        return -1, -1
    ms, seq = int(found[1]), int(found[2] or 0)
    return (ms, seq) if ms <= _U64 and seq <= _U64 else (-1, -1)


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert: str = Field(min_length=1, max_length=64)
    status: str = Field(pattern=r"^(played|displayed|failed)$")
    reason: str | None = Field(default=None, max_length=200)
    # The entry's `repeat` when it was played: a play after the first is another
    # chance to be heard (counted in coverage v2's persons informed, once per value).
    repeat: int = Field(default=0, ge=0, le=1000)


class Receipts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receipts: list[Receipt] = Field(min_length=1, max_length=100)


class Heartbeat(BaseModel):
    """What a device reports about itself; extra keys are kept as they are."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(default="ok", pattern=r"^(ok|degraded|fault)$")
    volume: int | None = Field(default=None, ge=0, le=100)
    power: str | None = Field(default=None, max_length=20)  # mains, battery, solar
    battery: int | None = Field(default=None, ge=0, le=100)
    signal: int | None = Field(default=None, ge=-150, le=100)


@dataclass
class _Fetch:
    alert: str
    channel: str
    endpoint: Endpoint


@dataclass
class _Read:
    """A unit-state read in flight, shared by the devices asking meanwhile."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    entries: list[UnitEntry] | None = None
    error: Exception | None = None


class _Shown:
    """One entry as a kind of device sees it (`present`), shared by the devices of a
    unit, with its signed server-sent-events frame made at most once per half validity."""

    __slots__ = ("_frame", "_signed_ms", "data")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self._frame: bytes | None = None
        self._signed_ms = 0

    def frame(self, signer: Signer, scope: str) -> bytes:
        now = now_ms()
        if self._frame is None or now - self._signed_ms > signer.validity_ms // 2:
            self._frame = sse_frame(self.data, signer, scope, now)
            self._signed_ms = now
        return self._frame


class EndpointHub:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        settings: EndpointSettings,
        metrics: Metrics,
        display_pages: int = RenderSettings().display_max_pages,
        *,
        signer: Signer | None = None,
    ) -> None:
        self.display = DisplayAdapter(layout_lines, max_pages=display_pages)
        # Every message to a device is signed; without the configured keys (a hub built
        # by a test), with a key of its own that no device trusts.
        validity_ms = int(settings.signing.validity_s * 1000)
        self.signer = signer or Signer(new_key("ephemeral"), validity_ms)
        self.store = store
        self.directory = directory
        self.settings = settings
        self.metrics = metrics
        self._events: dict[str, asyncio.Event] = {}
        # Unit states read once for every device of the unit (see `entries`).
        self._changed: dict[str, int] = {}  # unit → changes seen by the tail
        self._tail_from = math.inf  # when the tail began following (monotonic)
        self._tail_ok = -math.inf  # when a read of the tail last returned
        self._cache: dict[str, tuple[int, float, list[UnitEntry]]] = {}
        self._reading: dict[str, _Read] = {}
        self._presented: dict[tuple[Any, ...], _Shown] = {}
        self._seen: dict[str, int] = {}
        self._fetched: list[_Fetch] = []
        self._sent: dict[str, ReceiptUpdate] = {}  # endpoint → its `sent` receipt
        self._accepted_ms: dict[str, int] = {}
        self._pull_units: dict[str, set[tuple[str, str]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Called with the units whose state changed, as the tail sees them.
        self.listeners: list[Callable[[list[str]], None]] = []
        self._stop = asyncio.Event()
        self._draining = False
        self.connected = 0
        metrics.endpoints_connected.set_function(lambda: self.connected)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._tail(), name="unit-state-tail"),
            asyncio.create_task(self._flush_forever(), name="endpoint-receipts"),
        ]

    def drain(self) -> None:
        """The process is stopping: wake every parked long-poll and event stream, which
        then answer or end (see `wait_changes` and `stream`)."""
        self._draining = True
        for event in self._events.values():
            event.set()

    async def close(self) -> None:
        self._draining = True
        self._stop.set()
        for task in self._tasks:  # the tail may be in a 1 s blocking read: do not wait
            task.cancel()
        await stop_tasks(self._tasks, 2.0)
        await self.flush()
        for event in self._events.values():
            event.set()

    async def _tail(self) -> None:
        last: str | None = None  # Redis may be down at start: the loop waits for it
        while not self._stop.is_set():
            try:
                if last is None:
                    since = time.monotonic()
                    last = await self.store.last_unit_event()
                    self._tail_from = since
                rows = await self.store.unit_events_after(last, block_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self._stop.is_set():
                    log.exception("reading unit-state changes failed; retrying")
                await sleep_or_stop(self._stop, 1.0)
                continue
            self._tail_ok = time.monotonic()
            units: dict[str, None] = {}
            for entry, fields in rows:
                last = entry
                unit = fields.get("unit", "")
                self._changed[unit] = self._changed.get(unit, 0) + 1  # cache is stale
                units[unit] = None
            await self._prefetch(list(units))
            for listener in self.listeners:  # other transports (MQTT) publish them too
                listener(list(units))
            for unit in units:
                event = self._events.pop(unit, None)
                if event is not None:
                    event.set()

    async def _prefetch(self, units: list[str]) -> None:
        """Read the changed units that devices wait on, in one round trip, before waking
        those devices: they find the new state cached instead of each waiting again on
        a shared read (resuming 10,000 waiting requests twice costs real CPU)."""
        wanted = [u for u in units if u in self._events]
        if not wanted:
            return
        versions = [self._changed.get(u, 0) for u in wanted]
        started = time.monotonic()
        try:
            states = await self.store.units_entries(wanted)
        except Exception:  # the devices read for themselves
            log.warning("reading %d changed units failed", len(wanted), exc_info=True)
            return
        for unit, version, entries in zip(wanted, versions, states, strict=True):
            self._cache[unit] = (version, started, entries)

    def event_for(self, unit: str) -> asyncio.Event:
        """An event set at the unit's next change; take it *before* reading the state."""
        event = self._events.get(unit)
        if event is None:
            event = self._events[unit] = asyncio.Event()
        if self._draining:
            event.set()  # stopping: nobody parks any more
        return event

    # -- devices -----------------------------------------------------------------------

    def authenticate(self, endpoint_id: str, authorization: str | None) -> Endpoint:
        endpoint = self.directory.endpoints.get(endpoint_id)
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if endpoint is None:
            # Same answer as a wrong token: ids are not secret, but no need to confirm them.
            raise Unauthorized("unknown endpoint or wrong device token", code="bad-device-token")
        # Tokens are ASCII: a byte above 0x7f arrives as a lone surrogate, which cannot
        # even be hashed (it was a 500).
        if (
            scheme.lower() != "bearer"
            or not token.isascii()
            or not hmac.compare_digest(hash_key(token), endpoint.token_hash)
        ):
            raise Unauthorized("unknown endpoint or wrong device token", code="bad-device-token")
        return endpoint

    def seen(self, endpoint: str) -> None:
        """A request from a device: its last-request time is written with the next flush."""
        self._seen[endpoint] = now_ms()

    async def entries(self, unit: str) -> list[UnitEntry]:
        """A unit's state, read from Redis once for all the devices asking at the same
        time (10,000 devices waking together make a few dozen reads, not 10,000).

        A cached read is used while the tail has seen no change of the unit since the
        read began. Should the tail not be keeping up (Redis trouble), or the read be
        older than the tail, it is trusted for CACHE_S only, which bounds staleness.
        """
        version = self._changed.get(unit, 0)
        cached = self._cache.get(unit)
        if cached and cached[0] == version:
            now = time.monotonic()
            following = cached[1] >= self._tail_from and now - self._tail_ok < TAIL_OK_S
            if following or now - cached[1] < CACHE_S:
                return cached[2]
        pending = self._reading.get(unit)
        if pending is not None:
            # Waiting on an event, not on the reader: a waiter that gives up (its device
            # went away) cancels only its own wait.
            await pending.done.wait()
            if pending.error is not None:
                raise pending.error
            if pending.entries is None:  # the reader was cancelled, not us
                return await self.entries(unit)
            return pending.entries
        read = self._reading[unit] = _Read()
        started = time.monotonic()
        try:
            read.entries = await self.store.unit_entries(unit)
        except Exception as exc:
            read.error = exc
            raise
        finally:
            self._reading.pop(unit, None)
            read.done.set()  # cancelled too: those waiting must not wait for ever
        self._cache[unit] = (version, started, read.entries)
        return read.entries

    async def changes(
        self, endpoint: Endpoint, since: str | None
    ) -> tuple[str, list[dict[str, Any]]]:
        """(new cursor, entries changed after `since`) for one device."""
        cursor, shown = await self._changes(endpoint, since)
        return cursor, [s.data for s in shown]

    async def _changes(self, endpoint: Endpoint, since: str | None) -> tuple[str, list[_Shown]]:
        entries = [e for e in await self.entries(endpoint.unit) if visible(e, endpoint)]
        after = cursor_key(since)
        latest = max(entries, key=lambda e: e.order, default=None)
        if latest is not None and after > latest.order:
            # Ahead of everything this unit has (a restored server, a device bug): the
            # device gets the whole current state rather than waiting for a seq to pass.
            after = (-1, -1)
        newer = [e for e in entries if e.order > after]
        now = now_ms()
        out = [self._present(e, endpoint, now) for e in newer]
        if latest is not None and latest.order > after:
            best = latest.seq
        else:
            best = since if since is not None and after >= (0, 0) else "0-0"
        for e, shown in zip(newer, out, strict=True):
            if shown.data["reason"] != "expired":
                self._fetched.append(_Fetch(e.alert, endpoint.kind.value, endpoint))
        return best, out

    def _present(self, entry: UnitEntry, endpoint: Endpoint, now: int) -> _Shown:
        """`present`, computed once for all the devices of a unit that see an entry the
        same way (same kind, languages and screen). The dict is shared: read-only."""
        d = endpoint.display
        expired = entry.data.get("action") == "play" and int(entry.data.get("expires", 0)) <= now
        key = (
            entry.alert, entry.seq, endpoint.kind, tuple(endpoint.languages),
            d.chars_per_line if d else 0, d.lines if d else 0, expired,
        )  # fmt: skip
        shown = self._presented.get(key)
        if shown is None:
            if len(self._presented) >= PRESENTED_MAX:
                self._presented.clear()
            shown = self._presented[key] = _Shown(present(entry, endpoint, now, self.display))
        return shown

    async def wait_changes(
        self, endpoint: Endpoint, since: str | None, wait_s: float
    ) -> tuple[str, list[dict[str, Any]]]:
        """Long-poll: changes now, or the first within `wait_s` seconds."""
        if not 0 <= wait_s < math.inf:  # NaN too: a timer the loop cannot order
            raise ValueError(f"wait_s must be finite and not negative, not {wait_s!r}")
        deadline = time.monotonic() + wait_s
        while True:
            event = self.event_for(endpoint.unit)
            cursor, changes = await self.changes(endpoint, since)
            left = deadline - time.monotonic()
            if changes or left <= 0 or self._draining:
                return cursor, changes  # stopping: no change, and the cursor to ask again
            # asyncio.timeout, not wait_for: no task per parked device (a fifth of the
            # CPU with 10,000 devices waking together).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await event.wait()

    async def stream(self, endpoint: Endpoint, since: str | None) -> AsyncIterator[bytes]:
        """Server-sent events: each change as an event frame; a comment for keepalive."""
        cursor = since
        while not self._stop.is_set():
            if self._draining:
                # Stopping: reconnect (Last-Event-ID) after a random 1-5 s, so that the
                # devices of a county do not all come back in the same second.
                yield STOPPING_FRAME % random.randint(1000, 5000)
                return
            event = self.event_for(endpoint.unit)
            cursor, changes = await self._changes(endpoint, cursor)
            scope = stream_scope(endpoint)
            for change in changes:
                yield change.frame(self.signer, scope)
            try:
                async with asyncio.timeout(self.settings.keepalive_s):
                    await event.wait()
            except TimeoutError:
                yield f": keepalive {int(time.time())}\n\n".encode()

    # -- receipts ----------------------------------------------------------------------

    async def flush(self) -> None:
        """Write `sent` receipts for what devices fetched, one script call per alert, and
        the devices' last requests in one command."""
        seen, self._seen = self._seen, {}
        fetched, self._fetched = self._fetched, []
        try:
            await self._write(seen, fetched)
        except BaseException:
            # Not lost: what could not be written goes with the next flush.
            self._seen = {**seen, **self._seen}
            self._fetched = fetched + self._fetched
            raise

    async def _write(self, seen: dict[str, int], fetched: list[_Fetch]) -> None:
        # The writes go out together: while 10,000 devices are being answered, every
        # await of this loop waits its turn behind them.
        groups: dict[tuple[str, str], dict[str, ReceiptUpdate]] = {}
        for f in fetched:
            ep = f.endpoint
            update = self._sent.get(ep.id)
            if update is None:  # the same for every alert: made once per endpoint
                update = self._sent[ep.id] = ReceiptUpdate(
                    ep.id, "sent", ep.unit, str(ep.covers_population), ep.languages[0],
                    " ".join(ep.groups),
                )  # fmt: skip
            groups.setdefault((f.alert, f.channel), {})[ep.id] = update
        # Looked up first: should that fail, no write has been started.
        accepted = {alert: await self._accepted(alert) for alert, _ in groups}
        jobs = [
            (alert, channel, list(updates.values()), accepted_ms)
            for (alert, channel), updates in groups.items()
            if (accepted_ms := accepted[alert]) is not None
        ]
        results = await asyncio.gather(
            self.store.seen(seen),
            *(self.store.record(a, ch, ups, accepted_ms=ms) for a, ch, ups, ms in jobs),
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r  # all is written again with the next flush (idempotent)
        for _, channel, ups, _ in jobs:
            self.metrics.deliveries.labels(channel, "-", "sent").inc(len(ups))

    async def _flush_forever(self) -> None:
        while not self._stop.is_set():
            await sleep_or_stop(self._stop, FLUSH_S)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing endpoint receipts failed")

    async def _published_to(self, alert: str, endpoint: Endpoint) -> bool:
        units = self._pull_units.get(alert)
        if units is None:
            summary = await self.store.plan_summary(alert) or {}
            units = self._pull_units[alert] = {
                (ch, u) for ch, us in summary.get("pull_units", {}).items() for u in us
            }
        return (endpoint.kind.value, endpoint.unit) in units

    async def _accepted(self, alert: str) -> int | None:
        found = self._accepted_ms.get(alert)
        if found is None:
            life = await self.store.lifecycle(alert)
            if life is None:
                return None
            found = self._accepted_ms[alert] = life[2]
        return found

    async def receipts(self, endpoint: Endpoint, body: bytes) -> dict[str, Any]:
        """Played / displayed / failed, as the device reports them. Every receipt of a
        request is checked before any is recorded: one refused changes nothing."""
        data = read_json(body, invalid_code="invalid-receipt")
        if isinstance(data, dict) and "receipts" not in data:
            data = {"receipts": [data]}
        try:
            parsed = Receipts.model_validate(data)
        except ValidationError as exc:
            raise Unprocessable(
                "invalid receipts", code="invalid-receipt", errors=fields_of(exc)
            ) from None
        kind = endpoint.kind.value
        confirm = "played" if kind == Channel.LOUDSPEAKER.value else "displayed"
        accepted: dict[str, int] = {}
        updates: dict[str, list[ReceiptUpdate]] = {}
        for r in parsed.receipts:
            if r.status not in (confirm, "failed"):
                raise Unprocessable(
                    f"a {kind} reports '{confirm}' or 'failed', not {r.status!r}",
                    code="invalid-receipt",
                )
            found = await self._accepted(r.alert)
            if found is None:
                raise NotFound(f"no alert {r.alert!r}", code="alert-not-found")
            if not await self._published_to(r.alert, endpoint):
                raise Unprocessable(
                    f"alert {r.alert} was not published to {endpoint.id}'s unit {endpoint.unit}",
                    code="not-sent-to-device",
                    title="Invalid receipt",
                )
            accepted[r.alert] = found
            update = ReceiptUpdate(
                endpoint.id, r.status, endpoint.unit, str(endpoint.covers_population),
                endpoint.languages[0], " ".join(endpoint.groups), "", r.reason or "",
            )  # fmt: skip
            updates.setdefault(r.alert, []).append(update)
        await self.flush()  # a receipt never overtakes the fetch it answers
        counted = 0
        repeats = {r.alert: r.repeat for r in parsed.receipts if r.status == confirm and r.repeat}
        for alert, ups in updates.items():
            changed = await self.store.record(alert, kind, ups, accepted_ms=accepted[alert])
            counted += changed
            if not changed and alert in repeats:
                # Already played: this is a repeat (its first play is the state change).
                minute = max(0, (now_ms() - accepted[alert]) // 60_000)
                line = record_line(
                    minute, f"{confirm}+{repeats[alert]}", endpoint.unit, endpoint.id
                )
                await self.store.append_reach(alert, kind, [line])
            age = max(0.0, (now_ms() - accepted[alert]) / 1000)
            for u in ups:
                self.metrics.receipts.labels(kind, "endpoint").inc()
                self.metrics.deliveries.labels(kind, "-", u.state).inc()
                self.metrics.latency.observe((kind, u.state), age)
        return {"accepted": len(parsed.receipts), "changed": counted}

    async def _refusal(self, endpoint: Endpoint, refused: dict[str, Any]) -> None:
        """A device reports a message it refused (docs/endpoint-protocol.md): counted
        once per refusal (a heartbeat repeats the last one until the next)."""
        before = (await self.store.endpoint_health(endpoint.id)).get("health") or {}
        if before.get("refused") == refused:
            return
        reason = str(refused.get("reason"))
        transport = str(refused.get("transport"))
        self.metrics.endpoint_refusals.labels(
            reason if reason in REFUSALS else "other",
            transport if transport in TRANSPORTS else "other",
        ).inc()
        log.warning("device %s refused a message: %s via %s", endpoint.id, reason, transport)

    async def heartbeat(self, endpoint: Endpoint, body: bytes) -> dict[str, Any]:
        data = read_json(body or b"{}", invalid_code="invalid-heartbeat")
        try:
            beat = Heartbeat.model_validate(data)
        except ValidationError as exc:
            raise Unprocessable(
                "invalid heartbeat", code="invalid-heartbeat", errors=fields_of(exc)
            ) from None
        at = now_ms()
        health = beat.model_dump(exclude_none=True)
        if isinstance(health.get("refused"), dict):
            await self._refusal(endpoint, health["refused"])
        await self.store.heartbeat(endpoint.id, health, at)
        return {"endpoint": endpoint.id, "last_seen": at}
