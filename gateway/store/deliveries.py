"""Storage: dispatch — plans, rendered messages, send queues, receipts, limits, breakers.

Receipts are written in bulk: one Lua call per batch (`gateway/store/scripts.py`)
applies the state machine of `gateway.receipts` to every recipient of the batch, keeps
per-state counters and adds
the persons each delivery stands for to the reach counters the first time it is sent
and the first time it is confirmed (by minute since acceptance, for coverage over
time). The rank table in the script is generated from `gateway.receipts.RANK`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, cast

import orjson
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from gateway.store.base import StoreBase, now_ms
from gateway.store.scripts import (
    ADVANCE,
    BREAKER,
    COUNT_ONCE,
    ENQUEUE,
    PROBE,
    QUOTA,
    SENT,
    TOKENS,
    TOUCH,
)

__all__ = [
    "Batch",
    "BatchRecipient",
    "BatchStart",
    "DeliveryStore",
    "ReceiptUpdate",
    "stored_note",
]

SEND_GROUP = "senders"
PLAN_GROUP = "planners"
LANES = ("hi", "lo")


class BatchRecipient(NamedTuple):
    """One recipient of a batch (a tuple: a million of them are cheap)."""

    id: str
    address: str
    persons: str  # as written to the stream and to receipts
    groups: str = ""


@dataclass(frozen=True)
class Batch:
    """One stream entry: recipients of one unit × channel × language × kind."""

    alert: str
    channel: str
    unit: str
    language: str
    kind: str
    message: str  # field of p:msg:{alert}
    level: str
    accepted_ms: int
    recipients: tuple[BatchRecipient, ...] = ()
    entry: str = ""  # stream entry id once read
    stream: str = ""
    packed: str = ""  # the recipients as written to the stream, when built by the planner

    FIELDS: ClassVar[tuple[str, ...]] = ("a", "c", "u", "l", "k", "m", "v", "t", "r")

    @property
    def key(self) -> str:
        """Unique among all send streams (entry ids are only unique within one)."""
        return f"{self.stream}#{self.entry}"

    def first_id(self) -> str:
        if self.recipients:
            return self.recipients[0].id
        return self.packed.split("\t", 1)[0]

    def size(self) -> int:
        if self.recipients:
            return len(self.recipients)
        return self.packed.count("\n") + 1 if self.packed else 0

    def fields(self) -> dict[str, str]:
        packed = self.packed or "\n".join("\t".join(map(str, r)) for r in self.recipients)
        return {
            "a": self.alert,
            "c": self.channel,
            "u": self.unit,
            "l": self.language,
            "k": self.kind,
            "m": self.message,
            "v": self.level,
            "t": str(self.accepted_ms),
            "r": packed,
        }

    @classmethod
    def from_fields(cls, entry: str, stream: str, f: dict[str, str]) -> Batch:
        make = BatchRecipient._make
        recipients = [make(line.split("\t")) for line in f.get("r", "").split("\n") if line]
        return cls(
            alert=f["a"],
            channel=f["c"],
            unit=f["u"],
            language=f["l"],
            kind=f["k"],
            message=f["m"],
            level=f["v"],
            accepted_ms=int(f["t"]),
            recipients=tuple(recipients),
            entry=entry,
            stream=stream,
        )


class ReceiptUpdate(NamedTuple):
    """A state for one delivery; the other fields may be '' when not known (kept)."""

    id: str
    state: str
    unit: str = ""
    persons: str = ""
    lang: str = ""
    groups: str = ""
    attempts: str = ""
    note: str = ""  # provider for sent, error code for failed


@dataclass(frozen=True)
class BatchStart:
    """See `DeliveryStore.batch_start`."""

    life: tuple[str, int, int] | None  # (state, expires ms, received ms)
    sent: set[str]  # recipients with a receipt beyond `queued`
    message: str | None  # the rendered message (JSON), if found
    attempts: int  # made so far for this batch


class DeliveryStore(StoreBase):
    SCRIPTS: ClassVar[dict[str, str]] = {
        "_advance": ADVANCE,
        "_tokens": TOKENS,
        "_quota": QUOTA,
        "_breaker": BREAKER,
        "_probe": PROBE,
        "_sent": SENT,
        "_enqueue": ENQUEUE,
        "_count_once": COUNT_ONCE,
        "_touch": TOUCH,
    }
    _advance: AsyncScript
    _tokens: AsyncScript
    _quota: AsyncScript
    _breaker: AsyncScript
    _probe: AsyncScript
    _sent: AsyncScript
    _enqueue: AsyncScript
    _count_once: AsyncScript
    _touch: AsyncScript

    # -- consumer groups -------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_group(
        self,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        count: int,
        block_ms: int | None,
    ) -> list[tuple[str, str, dict[str, str]]]:
        """New entries, from the first stream that has any (the streams are in priority
        order): (stream, entry id, fields)."""
        for stream in streams[:-1]:
            got = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count)
            rows = _rows(got)
            if rows:
                return rows
        got = await self.redis.xreadgroup(
            group, consumer, {s: ">" for s in streams}, count=count, block=block_ms
        )
        return _rows(got)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 10
    ) -> list[tuple[str, str, dict[str, str]]]:
        """Entries another consumer took and left idle too long (it crashed)."""
        res = await self.redis.xautoclaim(
            stream, group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
        )
        messages = res[1] if len(res) > 1 else []
        return [(stream, entry, dict(f)) for entry, f in messages if f]

    async def renew_lease(self, consumer: str, ttl_ms: int) -> None:
        """A worker is alive while its lease lasts; it renews it well before the end."""
        await self.redis.set(self.keys.lease(consumer), now_ms(), px=ttl_ms)

    async def drop_lease(self, consumer: str) -> None:
        await self.redis.delete(self.keys.lease(consumer))

    async def claim_abandoned(
        self,
        stream: str,
        group: str,
        consumer: str,
        min_idle_ms: int,
        *,
        busy: set[str] | frozenset[str] = frozenset(),
        count: int = 10,
    ) -> list[tuple[str, str, dict[str, str], int]]:
        """Entries to take over: idle at least `min_idle_ms` and either held by a worker
        whose lease is gone (it died), or held by `consumer` itself but not in `busy`
        (its work on them failed). A live worker's entry is never taken, however long
        it waits. Rows are (stream, entry, fields, times delivered before)."""
        pending = await self.redis.xpending_range(
            stream, group, min="-", max="+", count=count * 10, idle=min_idle_ms
        )
        if not pending:
            return []
        owners = sorted({str(p["consumer"]) for p in pending} - {consumer})
        alive = await self.redis.mget([self.keys.lease(o) for o in owners]) if owners else []
        dead = {o for o, lease in zip(owners, alive, strict=True) if lease is None}
        take = [
            p
            for p in pending
            if p["consumer"] in dead
            or (p["consumer"] == consumer and f"{stream}#{p['message_id']}" not in busy)
        ][:count]
        if not take:
            return []
        times = {str(p["message_id"]): int(p["times_delivered"]) for p in take}
        got = await self.redis.xclaim(
            stream, group, consumer, min_idle_time=min_idle_ms, message_ids=list(times)
        )
        return [(stream, entry, dict(f), times[entry]) for entry, f in got or [] if f]

    async def still_held(self, stream: str, group: str, consumer: str, entry: str) -> bool:
        """Whether `consumer` still holds the entry (nobody took it over)."""
        rows = await self.redis.xpending_range(
            stream, group, min=entry, max=entry, count=1, consumername=consumer
        )
        return bool(rows)

    async def touch(self, stream: str, group: str, consumer: str, entry: str) -> bool:
        """Reset the idle time of an entry `consumer` holds (while it works on it);
        False if it does not hold it any more."""
        return bool(await self._touch(keys=[stream], args=[group, consumer, entry]))

    async def ack(self, stream: str, group: str, *entries: str) -> None:
        if entries:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xack(stream, group, *entries)
                pipe.xdel(stream, *entries)
                await pipe.execute()

    async def queue_depth(self, stream: str, group: str) -> tuple[int, int]:
        """(entries not yet read by the group, entries read but not acknowledged).

        Acknowledged entries are deleted, so the stream holds exactly the two kinds.
        """
        length = int(await self.redis.xlen(stream))
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return length, 0
        pending = next((int(g["pending"]) for g in groups if g["name"] == group), 0)
        return max(0, length - pending), pending

    # -- plans and messages ----------------------------------------------------------

    async def plan_done(self, alert: str) -> bool:
        return bool(await self.redis.hexists(self.keys.plan(alert), "done"))

    async def save_plan(
        self,
        alert: str,
        summary: dict[str, Any],
        messages: dict[str, str],
        pull_receipts: dict[str, list[ReceiptUpdate]],
        accepted_ms: int,
        ttl_s: int,
    ) -> None:
        """Plan summary and rendered messages; endpoint deliveries start `queued`."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.plan(alert), mapping={"summary": orjson.dumps(summary).decode()})
            if messages:
                pipe.hset(self.keys.messages(alert), mapping=messages)
            for key in (self.keys.plan(alert), self.keys.messages(alert)):
                pipe.expire(key, ttl_s)
            await pipe.execute()
        for channel, updates in pull_receipts.items():
            await self.record(alert, channel, updates, accepted_ms=accepted_ms)

    async def save_messages(self, alert: str, messages: dict[str, str], ttl_s: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.messages(alert), mapping=messages)
            pipe.expire(self.keys.messages(alert), ttl_s)
            await pipe.execute()

    async def mark_plan_done(self, alert: str, ttl_s: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.plan(alert), "done", now_ms())
            pipe.expire(self.keys.plan(alert), ttl_s)
            await pipe.execute()

    async def count_queued(
        self, alert: str, counts: dict[str, int], *, marker: str, ttl_s: int
    ) -> bool:
        """Deliveries handed to a queue, counted per channel (no per-recipient write:
        a delivery with no receipt yet is `queued`), once per `marker`: a planning run
        repeated after a crash counts nothing twice. False if already counted."""
        if not counts:
            return False
        args: list[Any] = [ttl_s, marker]
        for channel, n in counts.items():
            args += [f"n|{channel}|queued", n]
        keys = [self.keys.enqueued(alert), self.keys.agg(alert)]
        return bool(await self._count_once(keys=keys, args=args))

    async def plan_summary(self, alert: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.keys.plan(alert), "summary")
        return cast(dict[str, Any], orjson.loads(raw)) if raw else None

    async def rendered(
        self, alert: str, *, unit: str | None = None, limit: int = 500
    ) -> dict[str, str]:
        """Rendered messages of an alert (`{channel}|{unit}|{lang}|{kind}` → JSON)."""
        match = f"*|{unit}|*" if unit else "*"
        out: dict[str, str] = {}
        async for field_, value in self.redis.hscan_iter(
            self.keys.messages(alert), match=match, count=1000
        ):
            out[field_] = value
            if len(out) >= limit:
                break
        return dict(sorted(out.items()))

    async def enqueue(
        self, alert: str, channel: str, stream: str, batches: Sequence[Batch], *,
        phase: str, ttl_s: int, chunk: int = 200,
    ) -> int:  # fmt: skip
        """Queue batches and count their recipients as queued, each batch once: a batch
        of the same planning `phase`, message and first recipient that is already
        queued is not queued again. The number of batches queued."""
        keys = [self.keys.enqueued(alert), self.keys.agg(alert), stream]
        added = 0
        for i in range(0, len(batches), chunk):
            args: list[Any] = [ttl_s, channel, len(Batch.FIELDS)]
            for b in batches[i : i + chunk]:
                fields = b.fields()
                args += [f"{phase}|{b.message}|{b.first_id()}", b.size()]
                for name in Batch.FIELDS:
                    args += [name, fields[name]]
            added += int(await self._enqueue(keys=keys, args=args))
        return added

    # -- receipts --------------------------------------------------------------------

    async def record(
        self,
        alert: str,
        channel: str,
        updates: Sequence[ReceiptUpdate],
        *,
        accepted_ms: int,
        reach_state: str = "",
        implicit: str = "queued",
        now: int | None = None,
        chunk: int = 1000,
    ) -> int:
        """Apply receipt states in bulk: one script call per `chunk` deliveries, all in
        one round trip.

        `implicit`: the state of a delivery that has no receipt yet — `queued`, since
        the planner only counts queued deliveries instead of writing each one.
        """
        keys = [
            self.keys.receipts(alert, channel),
            self.keys.agg(alert),
            self.keys.alert(alert),
            self.keys.reach_log(alert, channel),
        ]
        keep = self.retention
        head: list[Any] = [
            channel, now or now_ms(), accepted_ms, reach_state, implicit,
            keep.recipient_ms, keep.report_ms,
        ]  # fmt: skip
        # One argument per delivery, its fields joined by U+001F: encoding eight
        # arguments each was a fifth of the sender's time.
        calls = [
            [*head, *(_packed(u) for u in updates[i : i + chunk])]
            for i in range(0, len(updates), chunk)
        ]
        if not calls:
            return 0
        if len(calls) == 1:
            return int(await self._advance(keys=keys, args=calls[0]))
        async with self.redis.pipeline(transaction=False) as pipe:
            for args in calls:
                await self._advance(keys=keys, args=args, client=pipe)
            return sum(int(n) for n in await pipe.execute())

    async def receipt_states(
        self, alert: str, channel: str, ids: Sequence[str]
    ) -> list[tuple[str, str] | None]:
        """(state, note) of each delivery, None where it has no receipt yet, in one
        command. The note of a delivery sent through a provider names the provider
        (later receipts keep it): what a provider's own receipts are checked against."""
        if not ids:
            return []
        values = await self.redis.hmget(self.keys.receipts(alert, channel), list(ids))
        out: list[tuple[str, str] | None] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            parts = value.split("|")
            out.append((parts[0], parts[7] if len(parts) > 7 else ""))
        return out

    async def receipts_page(
        self, alert: str, channel: str, cursor: int, count: int
    ) -> tuple[int, list[tuple[str, str]]]:
        next_cursor, rows = await self.redis.hscan(
            self.keys.receipts(alert, channel), cursor=cursor, count=count
        )
        return int(next_cursor), sorted(rows.items())

    async def aggregates(self, alert: str) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.agg(alert))
        return {k: int(v) for k, v in raw.items()}

    # -- attempts and dead letters -------------------------------------------------------

    async def attempts(self, alert: str, entry: str) -> int:
        return int(await self.redis.hget(self.keys.attempts(alert), entry) or 0)

    async def batch_start(
        self,
        alert: str,
        channel: str,
        batch: str,
        ids: Sequence[str],
        message: str,
        *,
        register_ttl_s: int | None,
    ) -> BatchStart:
        """What the sender needs before a batch, in one round trip, in this order:
        register the batch (unless `register_ttl_s` is None): from now on its
        recipients count as reached for a Cancel or Update (`may_have`) until
        `end_send` says whom it really reached; then the alert's lifecycle, the
        sent-set (recipients with a receipt beyond `queued`), the rendered message and
        the attempts so far."""
        packed = UNIT_SEP.join(ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            if register_ttl_s is not None:
                pipe.hset(self.keys.in_flight(alert, channel), batch, packed)
                pipe.expire(self.keys.in_flight(alert, channel), register_ttl_s)
            pipe.hmget(self.keys.alert(alert), ["state", "expires", "received"])
            await self._sent(keys=[self.keys.receipts(alert, channel)], args=[packed], client=pipe)
            pipe.hget(self.keys.messages(alert), message)
            pipe.hget(self.keys.attempts(alert), batch)
            res = await pipe.execute()
        (state, expires, received), found, text, attempts = res[-4:]
        return BatchStart(
            life=None if state is None else (str(state), int(expires or 0), int(received or 0)),
            sent=set(found.split(UNIT_SEP)) if found else set(),
            message=text,
            attempts=int(attempts or 0),
        )

    async def end_send(
        self, alert: str, channel: str, batch: str, kept: Sequence[str], ttl_s: int
    ) -> None:
        """A batch is done: its register entry keeps the recipients that may have the
        message (accepted, maybe sent, or sent before), or goes when there are none."""
        key = self.keys.in_flight(alert, channel)
        if not kept:
            await self.redis.hdel(key, batch)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, batch, UNIT_SEP.join(kept))
            pipe.expire(key, ttl_s)
            await pipe.execute()

    async def may_have(self, alert: str, channel: str) -> set[str]:
        """Recipients who may have this alert version: those of every batch registered
        before its lifecycle check (`batch_start`), less those it ended without sending
        to (`end_send`). One read, consistent with every sender: a batch that saw the
        alert still active registered first, so a Cancel or Update planned after the
        state changed finds it here, whether it is still at the provider or long done."""
        out: set[str] = set()
        for packed in await self.redis.hvals(self.keys.in_flight(alert, channel)):
            out.update(x for x in packed.split(UNIT_SEP) if x)
        return out

    async def add_attempt(self, alert: str, entry: str, ttl_s: int) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(self.keys.attempts(alert), entry, 1)
            pipe.expire(self.keys.attempts(alert), ttl_s)
            n, _ = await pipe.execute()
        return int(n)

    async def dead_letter(self, batch: Batch, error: dict[str, Any]) -> str:
        fields = {**batch.fields(), "error": orjson.dumps(error).decode(), "at": str(now_ms())}
        return str(await self.redis.xadd(self.keys.dead, fields))

    async def purge_dead_letters(self, now: int | None = None) -> int:
        """Dead letters carry phone numbers: they go after the per-recipient retention
        (counted from when they were written). How many went."""
        oldest = (now or now_ms()) - self.retention.recipient_ms
        return int(await self.redis.xtrim(self.keys.dead, minid=f"{max(oldest, 0)}-0"))

    async def dead_letter_raw(
        self, stream: str, entry: str, fields: dict[str, str], reason: str
    ) -> str:
        """A stream entry that cannot even be read as a batch, kept as it came."""
        error = {"code": "unreadable", "message": reason, "retryable": False}
        record = {
            **{f"f.{k}": v for k, v in fields.items()},
            **{k: fields.get(k, "") for k in ("a", "c", "u", "r")},  # what listings read
            "stream": stream,
            "entry": entry,
            "error": orjson.dumps(error).decode(),
            "at": str(now_ms()),
        }
        return str(await self.redis.xadd(self.keys.dead, record))

    async def dead_letters(
        self,
        alert: str | None = None,
        count: int = 100,
        *,
        units: Callable[[str], bool] | None = None,
        scan: int = 10_000,
    ) -> list[dict[str, Any]]:
        """The newest dead letters, of one alert and/or of the units `units` accepts
        (a reader's jurisdiction), reading back through at most `scan` entries."""
        out: list[dict[str, Any]] = []
        end, read, page = "+", 0, 500
        while len(out) < count and read < scan:
            rows = await self.redis.xrevrange(self.keys.dead, max=end, count=page)
            for entry, f in rows:
                if alert is not None and f.get("a") != alert:
                    continue
                if units is not None and not units(f.get("u", "")):
                    continue
                out.append(
                    {
                        "entry": entry,
                        "alert": f["a"],
                        "channel": f["c"],
                        "unit": f["u"],
                        "recipients": len([x for x in f.get("r", "").split("\n") if x]),
                        "error": orjson.loads(f.get("error", "{}")),
                        "at": int(f.get("at", 0)),
                    }
                )
            read += len(rows)
            if len(rows) < page:
                break
            end = f"({rows[-1][0]}"  # exclusive: the page after the last one read
        return out[:count]

    # -- relay tasks ---------------------------------------------------------------------

    async def save_relay_codes(self, codes: dict[str, str], ttl_s: int) -> None:
        """code → `alert|unit` for the relay tasks of one alert."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for code, target in codes.items():
                pipe.set(self.keys.relay(code), target, ex=ttl_s)
            await pipe.execute()

    async def relay_task(self, code: str) -> tuple[str, str] | None:
        raw = await self.redis.get(self.keys.relay(code))
        if not raw:
            return None
        alert, _, unit = str(raw).partition("|")
        return alert, unit

    # -- escalations -------------------------------------------------------------------

    async def claim_escalation(
        self, alert: str, unit: str, record: dict[str, Any], ttl_s: int
    ) -> bool:
        """Record a unit's deadline check once; False if another process did it first."""
        key = self.keys.escalations(alert)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, unit, orjson.dumps(record).decode())
            pipe.expire(key, ttl_s)
            done, _ = await pipe.execute()
        return bool(done)

    async def escalations(self, alert: str) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys.escalations(alert))
        return {unit: orjson.loads(v) for unit, v in raw.items()}

    async def audit_event(self, fields: dict[str, str]) -> None:
        await self.redis.xadd(self.keys.audit, fields)

    # -- limits and breakers -----------------------------------------------------------

    async def take_tokens(
        self, provider: str, want: int, rate: float, burst: float, *, now: int | None = None
    ) -> int:
        """Take `want` tokens from a provider's shared bucket; ms to wait if not possible."""
        wait = await self._tokens(
            keys=[self.keys.rate(provider)],
            args=[rate, max(burst, want), want, now if now is not None else now_ms()],
        )
        return int(wait)

    async def recipient_quota(self, addresses: Sequence[str], limit: int) -> list[bool]:
        """Count one message for each address in this hour; False where over `limit`."""
        if not addresses:
            return []
        hour = now_ms() // 3_600_000
        res = await self._quota(
            keys=[self.keys.recipient_rate(hour)], args=[limit, 7200, *addresses]
        )
        return [bool(int(x)) for x in res]

    async def breaker_record(
        self,
        provider: str,
        ok: bool,
        *,
        window_ms: int,
        error_rate: float,
        min_calls: int,
        cooldown_ms: int,
        now: int | None = None,
    ) -> int:
        res = await self._breaker(
            keys=[self.keys.breaker(provider)],
            args=[now or now_ms(), 1 if ok else 0, window_ms, error_rate, min_calls, cooldown_ms],
        )
        return int(res)

    async def breaker_open(self, provider: str, cooldown_ms: int, now: int | None = None) -> None:
        """Open a provider's breaker at once (it refuses our credentials): every worker
        fails over until the cool-down ends and one probe finds it mended."""
        at = now or now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.breaker(provider),
                mapping={"open_until": at + cooldown_ms, "probe_until": 0, "start": at,
                         "ok": 0, "err": 0},
            )  # fmt: skip
            pipe.pexpire(self.keys.breaker(provider), 86_400_000)
            await pipe.execute()

    async def breaker_peek(self, provider: str, now: int | None = None) -> int:
        """The state without taking the probe: 0 closed, 1 open, 2 half-open."""
        raw = await self.redis.hget(self.keys.breaker(provider), "open_until")
        until = int(raw or 0)
        if until == 0:
            return 0
        return 1 if (now or now_ms()) < until else 2

    async def breaker_state(self, provider: str, probe_ms: int, now: int | None = None) -> int:
        """For a caller about to send: 0 closed, 1 open, 2 half-open and this caller
        sends the one probe (single flight across all workers: the others see 1 until
        it reports through `breaker_record`, or `probe_ms` passes)."""
        res = await self._probe(
            keys=[self.keys.breaker(provider)], args=[now or now_ms(), probe_ms]
        )
        return int(res)


UNIT_SEP = "\x1f"


def stored_note(note: str) -> str:
    """A receipt's note as the store keeps it (see `receipt_states`)."""
    return note.replace("|", "/").replace(UNIT_SEP, " ")[:120]


def _packed(u: ReceiptUpdate) -> str:
    return UNIT_SEP.join((*u[:-1], stored_note(u.note)))


def _rows(got: Any) -> list[tuple[str, str, dict[str, str]]]:
    out: list[tuple[str, str, dict[str, str]]] = []
    for stream, messages in got or []:
        for entry, fields in messages:
            out.append((stream, entry, dict(fields)))
    return out
