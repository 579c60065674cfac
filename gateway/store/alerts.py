"""Storage: alerts — the atomic accept script, records, listing and the expiry sweep.

Accepting an alert is one Lua script, so the record, the idempotency check (the alert id
is derived from sender + identifier, so the record *is* the idempotency key), the
lifecycle links and the queue entry are written together or not at all. The same script
refuses references across statuses (an Exercise Cancel of an Actual warning, an Actual
Update of a Test …): the status it compares is read in the script, so no race between
a check and the write can let a drill touch a live warning.

When Redis cannot be reached, or does not answer in time, `accept` raises
`StoreUnavailable` (503). A timeout may come after the script ran; since the script is
idempotent, posting the same alert again is answered 200 duplicate, never stored twice.

The scripts build some key names from the prefix (the referenced alerts are passed as
keys); this is fine for standalone Redis and Sentinel. Redis Cluster would need the
keys of one alert chain in one hash slot, which warngate does not arrange yet.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, cast

import orjson
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import StoreUnavailable
from gateway.models import AlertRecord, AlertState
from gateway.store.base import StoreBase

__all__ = ["AcceptOutcome", "AlertStore", "alert_id"]

EVENTS_MAXLEN = 100_000


def alert_id(sender: str, identifier: str) -> str:
    """The gateway's id of an alert: derived from sender and identifier, so a repeated
    post maps to the same record without any lookup table."""
    digest = hashlib.sha256(f"{sender}\x00{identifier}".encode()).digest()[:15]
    return "a" + base64.b32encode(digest).decode().lower()


@dataclass(frozen=True)
class AcceptOutcome:
    """What the accept script did.

    `kind`: `new` (stored and queued), `same` (identical alert already stored),
    `conflict` (same sender+identifier, different content), `nothing` (a Cancel whose
    references are all unknown; nothing stored), `status-mismatch` (a reference to an
    alert of another status: `mismatched` lists (id, status); nothing stored),
    `unknown-area` (an Update that targets no known unit and whose references are all
    unknown, so it would reach nobody; nothing stored).
    """

    kind: Literal["new", "same", "conflict", "nothing", "status-mismatch", "unknown-area"]
    id: str
    known_refs: list[str] = field(default_factory=list)
    unknown_refs: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str]] = field(default_factory=list)


_ACCEPT = """
-- KEYS: alert, alerts, live, queue, events, audit, ref alert keys...
-- ARGV: id, hash, record, received_ms, expires_ms, msgType, state, events_maxlen,
--       audit JSON, status, needs a known reference ('1'/'0'), ref ids...
local existing = redis.call('HGET', KEYS[1], 'hash')
if existing then
  if existing == ARGV[2] then return {'same'} end
  return {'conflict'}
end
local id, msgtype, now, status = ARGV[1], ARGV[6], ARGV[4], ARGV[10]
-- cjson writes an empty table as {}; the readers want [].
local function arr(t) if #t == 0 then return '[]' end return cjson.encode(t) end
local known, unknown, mismatched = {}, {}, {}
for i = 7, #KEYS do
  local ref = ARGV[i + 5]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local theirs = redis.call('HGET', KEYS[i], 'status')
    if not theirs then
      -- Stored before the status had a field of its own: read it from the record.
      local ok, rec = pcall(cjson.decode, redis.call('HGET', KEYS[i], 'record') or '')
      theirs = ok and type(rec['alert']) == 'table' and rec['alert']['status'] or ''
    end
    if theirs ~= status then table.insert(mismatched, {ref, theirs}) end
    table.insert(known, ref)
  else
    table.insert(unknown, ref)
  end
end
-- A drill never touches a live warning, nor a live message a drill: nothing is written.
if #mismatched > 0 then return {'status-mismatch', cjson.encode(mismatched)} end
if msgtype == 'Cancel' and #known == 0 then
  return {'nothing', arr(unknown)}
end
if ARGV[11] == '1' and #known == 0 then
  return {'unknown-area', arr(unknown)}
end
local function event(kind, target)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*',
             'event', kind, 'id', target, 'by', id, 'at', now)
  redis.call('XADD', KEYS[6], '*', 'event', kind, 'id', target, 'by', id, 'at', now)
end
for i = 7, #KEYS do
  local ref = ARGV[i + 5]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local state = redis.call('HGET', KEYS[i], 'state')
    if msgtype == 'Cancel' then
      redis.call('HSET', KEYS[i], 'cancelled_by', id)
      if state ~= 'cancelled' then
        redis.call('HSET', KEYS[i], 'state', 'cancelled', 'state_at', now)
        redis.call('ZREM', KEYS[3], ref)
        event('cancelled', ref)
      end
    else
      redis.call('HSET', KEYS[i], 'superseded_by', id)
      if state == 'active' then
        redis.call('HSET', KEYS[i], 'state', 'updated', 'state_at', now)
        redis.call('ZREM', KEYS[3], ref)
        event('updated', ref)
      end
    end
  end
end
redis.call('HSET', KEYS[1], 'record', ARGV[3], 'hash', ARGV[2], 'state', ARGV[7],
           'state_at', now, 'expires', ARGV[5], 'received', now, 'supersedes', arr(known),
           'unknown_refs', arr(unknown), 'status', status)
redis.call('ZADD', KEYS[2], now, id)
if ARGV[7] == 'active' then redis.call('ZADD', KEYS[3], ARGV[5], id) end
redis.call('XADD', KEYS[4], '*', 'id', id, 'msgType', msgtype)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*',
           'event', 'accepted', 'id', id, 'by', id, 'at', now)
local audit = cjson.decode(ARGV[9])
local fields = {}
for k, v in pairs(audit) do table.insert(fields, k); table.insert(fields, tostring(v)) end
redis.call('XADD', KEYS[6], '*', unpack(fields))
return {'new', arr(known), arr(unknown)}
"""

_SWEEP = """
-- KEYS: live, events, audit; ARGV: now_ms, alert key prefix, events_maxlen, limit
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[4])
local done = {}
for _, id in ipairs(ids) do
  local key = ARGV[2] .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HGET', key, 'state') == 'active' then
    redis.call('HSET', key, 'state', 'expired', 'state_at', ARGV[1])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
               'event', 'expired', 'id', id, 'by', id, 'at', ARGV[1])
    redis.call('XADD', KEYS[3], '*', 'event', 'expired', 'id', id, 'by', id, 'at', ARGV[1])
    table.insert(done, id)
  end
end
return done
"""


class AlertStore(StoreBase):
    """Alerts and their lifecycle."""

    SCRIPTS: ClassVar[dict[str, str]] = {"_accept": _ACCEPT, "_sweep": _SWEEP}
    _accept: AsyncScript
    _sweep: AsyncScript

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def accept(
        self,
        record: AlertRecord,
        refs: Sequence[str],
        audit: dict[str, Any],
        *,
        needs_known_reference: bool = False,
    ) -> AcceptOutcome:
        """Store a new alert, link it to the alerts it references and queue it, atomically.

        `needs_known_reference`: the alert targets no unit itself (an Update whose areas
        the directory does not know), so it is refused unless one of its references is
        stored (their recipients hear of it)."""
        lane = "hi" if record.level.high_priority else "lo"
        initial = AlertState.CANCELLED if record.alert.msgType.value == "Cancel" else record.state
        keys = [
            self.keys.alert(record.id),
            self.keys.alerts,
            self.keys.live,
            self.keys.plan_queue(lane),
            self.keys.events,
            self.keys.audit,
            *(self.keys.alert(r) for r in refs),
        ]
        received = int(record.received.timestamp() * 1000)
        args: list[Any] = [
            record.id,
            record.content_hash,
            record.model_dump_json(),
            received,
            int(record.expires.timestamp() * 1000),
            record.alert.msgType.value,
            initial.value,
            EVENTS_MAXLEN,
            orjson.dumps(audit).decode(),
            record.alert.status.value,
            "1" if needs_known_reference else "0",
            *refs,
        ]
        try:
            result = await self._accept(keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(
                f"the alert store did not answer ({type(exc).__name__}); post the same alert"
                " again: if it was stored meanwhile the answer is 200 duplicate, else 202"
            ) from None
        kind = result[0]
        if kind == "new":
            return AcceptOutcome("new", record.id, orjson.loads(result[1]), orjson.loads(result[2]))
        if kind in ("nothing", "unknown-area"):
            return AcceptOutcome(kind, record.id, [], orjson.loads(result[1]))
        if kind == "status-mismatch":
            pairs = [(str(ref), str(status)) for ref, status in orjson.loads(result[1])]
            return AcceptOutcome(kind, record.id, mismatched=pairs)
        return AcceptOutcome(kind, record.id)

    async def get_alert(self, alert: str, *, now: datetime | None = None) -> AlertRecord | None:
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.alert(alert)))
        if not raw:
            return None
        return self._record(raw, now)

    async def lifecycle(self, alert: str) -> tuple[str, int, int] | None:
        """(state, expires ms, received ms) without reading the whole record."""
        state, expires, received = await self.redis.hmget(
            self.keys.alert(alert), ["state", "expires", "received"]
        )
        if state is None:
            return None
        return str(state), int(expires or 0), int(received or 0)

    async def get_alerts(
        self, ids: Sequence[str], *, now: datetime | None = None
    ) -> list[AlertRecord]:
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for alert in ids:
                pipe.hgetall(self.keys.alert(alert))
            rows = await pipe.execute()
        return [self._record(raw, now) for raw in rows if raw]

    def _record(self, raw: dict[str, str], now: datetime | None) -> AlertRecord:
        data = orjson.loads(raw["record"])
        data["state"] = raw["state"]
        data["superseded_by"] = raw.get("superseded_by") or None
        data["cancelled_by"] = raw.get("cancelled_by") or None
        data["supersedes"] = orjson.loads(raw.get("supersedes", "[]"))
        data["unknown_references"] = orjson.loads(raw.get("unknown_refs", "[]"))
        record = AlertRecord.model_validate(data)
        # The sweeper marks expiry within a second; reads never show a stale `active`.
        when = now or datetime.now(UTC)
        if record.state is AlertState.ACTIVE and record.expires <= when:
            record = record.model_copy(update={"state": AlertState.EXPIRED})
        return record

    async def list_alerts(
        self,
        *,
        state: AlertState | None = None,
        agency: str | None = None,
        limit: int = 100,
        now: datetime | None = None,
    ) -> list[AlertRecord]:
        """Newest first. `state=active` reads the live index; other states scan recent ids."""
        when = now or datetime.now(UTC)
        if state is AlertState.ACTIVE:
            ids = cast(
                list[str],
                await self.redis.zrangebyscore(
                    self.keys.live, int(when.timestamp() * 1000) + 1, "+inf"
                ),
            )
        else:
            ids = cast(
                list[str],
                await self.redis.zrevrange(self.keys.alerts, 0, max(limit * 10, 1000) - 1),
            )
        records = await self.get_alerts(ids, now=when)
        out = [
            r
            for r in records
            if (state is None or r.state is state) and (agency is None or r.agency == agency)
        ]
        out.sort(key=lambda r: r.received, reverse=True)
        return out[:limit]

    async def alerts_between(self, since: datetime, until: datetime) -> list[AlertRecord]:
        """Alerts accepted in [since, until), oldest first."""
        ids = await self.redis.zrangebyscore(
            self.keys.alerts, int(since.timestamp() * 1000), f"({int(until.timestamp() * 1000)}"
        )
        records = await self.get_alerts(ids)
        return sorted(records, key=lambda r: r.received)

    async def live_ids(self) -> list[str]:
        return [str(i) for i in await self.redis.zrange(self.keys.live, 0, -1)]

    async def live_count(self) -> int:
        return int(await self.redis.zcard(self.keys.live))

    async def sweep_expired(self, *, now: datetime | None = None, limit: int = 500) -> list[str]:
        """Move alerts past their expiry to `expired`; safe to run in every process."""
        when = int((now or datetime.now(UTC)).timestamp() * 1000)
        done = await self._sweep(
            keys=[self.keys.live, self.keys.events, self.keys.audit],
            args=[when, self.keys.alert(""), EVENTS_MAXLEN, limit],
        )
        return list(done)

    async def audit(self, count: int = 100) -> list[dict[str, str]]:
        """The most recent audit entries, newest first."""
        rows = cast(
            list[tuple[str, dict[str, str]]],
            await self.redis.xrevrange(self.keys.audit, count=count),
        )
        return [{"entry": entry_id, **fields} for entry_id, fields in rows]

    async def events_since(
        self, last_id: str = "0-0", count: int = 1000
    ) -> list[tuple[str, dict[str, str]]]:
        rows = cast(
            list[tuple[str, dict[str, str]]],
            await self.redis.xrange(self.keys.events, min=f"({last_id}", count=count),
        )
        return [(entry_id, fields) for entry_id, fields in rows]
