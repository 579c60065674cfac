"""Storage: alerts — the atomic accept script, records, listing and the expiry sweep.

Accepting an alert is one Lua script, so the record, the idempotency check (the alert id
is derived from sender + identifier, so the record *is* the idempotency key), the
lifecycle links and the queue entry are written together or not at all. The same script
refuses references across statuses (an Exercise Cancel of an Actual warning, an Actual
Update of a Test …): the status it compares is read in the script, so no race between
a check and the write can let a drill touch a live warning.

An alert that needs a second person's approval (gateway/console/approval.py) is stored
`pending-approval` by the same script, without a queue entry and without touching the
alerts it references: `release` (approve, or an emergency release) applies the links,
queues it and makes it live in one script, `reject` ends it. The moves each script may
make come from `models.TRANSITIONS`, generated into the Lua below.

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
from gateway.models import TRANSITIONS, UNRELEASED, AlertRecord, AlertState, Transition
from gateway.store.base import StoreBase

__all__ = ["AcceptOutcome", "AlertStore", "Decision", "alert_id"]

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
    unknown, so it would reach nobody; nothing stored), `not-released` (a reference to
    a version still waiting for approval, or rejected: it was never sent, so nothing can
    update or cancel it; `mismatched` lists (id, state); nothing stored).
    """

    kind: Literal[
        "new", "same", "conflict", "nothing", "status-mismatch", "unknown-area", "not-released"
    ]
    id: str
    known_refs: list[str] = field(default_factory=list)
    unknown_refs: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str]] = field(default_factory=list)


def _lua_set(states: tuple[AlertState, ...]) -> str:
    return "{" + ", ".join(f"[{orjson.dumps(s.value).decode()}]=true" for s in states) + "}"


def _from(transition: Transition) -> str:
    return _lua_set(TRANSITIONS[transition][0])


def _to(transition: Transition) -> str:
    return orjson.dumps(TRANSITIONS[transition][1].value).decode()


# The moves of models.TRANSITIONS, and `link`: a released Update or Cancel applied to
# the versions it references, each move an event and an audit entry.
_LINK = f"""
local CANCEL_FROM, CANCEL_TO = {_from(Transition.CANCEL)}, {_to(Transition.CANCEL)}
local SUPERSEDE_FROM, SUPERSEDE_TO = {_from(Transition.SUPERSEDE)}, {_to(Transition.SUPERSEDE)}
local UNRELEASED = {_lua_set(UNRELEASED)}
local function event(events, audit, maxlen, kind, target, by, now)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*',
             'event', kind, 'id', target, 'by', by, 'at', now)
  redis.call('XADD', audit, '*', 'event', kind, 'id', target, 'by', by, 'at', now)
end
-- KEYS[first..] are the referenced alerts, ARGV[first + offset] their ids.
local function link(first, offset, id, msgtype, now, live, events, audit, maxlen)
  local known = {{}}
  for i = first, #KEYS do
    local ref = ARGV[i + offset]
    if redis.call('EXISTS', KEYS[i]) == 1 then
      table.insert(known, ref)
      local state = redis.call('HGET', KEYS[i], 'state')
      if msgtype == 'Cancel' then
        redis.call('HSET', KEYS[i], 'cancelled_by', id)
        if CANCEL_FROM[state] then
          redis.call('HSET', KEYS[i], 'state', CANCEL_TO, 'state_at', now)
          redis.call('ZREM', live, ref)
          event(events, audit, maxlen, 'cancelled', ref, id, now)
        end
      else
        redis.call('HSET', KEYS[i], 'superseded_by', id)
        if SUPERSEDE_FROM[state] then
          redis.call('HSET', KEYS[i], 'state', SUPERSEDE_TO, 'state_at', now)
          redis.call('ZREM', live, ref)
          event(events, audit, maxlen, 'updated', ref, id, now)
        end
      end
    end
  end
  return known
end
-- cjson writes an empty table as {{}}; the readers want [].
local function arr(t) if #t == 0 then return '[]' end return cjson.encode(t) end
local function audit_entry(audit, json)
  local entry = cjson.decode(json)
  local fields = {{}}
  for k, v in pairs(entry) do table.insert(fields, k); table.insert(fields, tostring(v)) end
  redis.call('XADD', audit, '*', unpack(fields))
end
-- The approval record (a JSON object in the alert's hash), with `json`'s keys set.
local function merge_approval(key, json)
  local current = {{}}
  local raw = redis.call('HGET', key, 'approval')
  if raw then current = cjson.decode(raw) end
  for k, v in pairs(cjson.decode(json)) do current[k] = v end
  redis.call('HSET', key, 'approval', cjson.encode(current))
end
"""

_ACCEPT = (
    _LINK
    + """
-- KEYS: alert, alerts, live, queue, events, audit, pending, ref alert keys...
-- ARGV: id, hash, record, received_ms, expires_ms, msgType, state, events_maxlen,
--       audit JSON, status, needs a known reference ('1'/'0'), approval JSON, ref ids...
local existing = redis.call('HGET', KEYS[1], 'hash')
if existing then
  if existing == ARGV[2] then return {'same'} end
  return {'conflict'}
end
local id, msgtype, now, status = ARGV[1], ARGV[6], ARGV[4], ARGV[10]
local hold = ARGV[7] == 'pending-approval'
local known, unknown, mismatched, unreleased = {}, {}, {}, {}
for i = 8, #KEYS do
  local ref = ARGV[i + 5]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local theirs = redis.call('HGET', KEYS[i], 'status')
    if not theirs then
      -- Stored before the status had a field of its own: read it from the record.
      local ok, rec = pcall(cjson.decode, redis.call('HGET', KEYS[i], 'record') or '')
      theirs = ok and type(rec['alert']) == 'table' and rec['alert']['status'] or ''
    end
    if theirs ~= status then table.insert(mismatched, {ref, theirs}) end
    local state = redis.call('HGET', KEYS[i], 'state')
    if UNRELEASED[state] then table.insert(unreleased, {ref, state}) end
    table.insert(known, ref)
  else
    table.insert(unknown, ref)
  end
end
-- A drill never touches a live warning, nor a live message a drill: nothing is written.
if #mismatched > 0 then return {'status-mismatch', cjson.encode(mismatched)} end
-- What was never sent cannot be updated or cancelled (reject it instead).
if #unreleased > 0 then return {'not-released', cjson.encode(unreleased)} end
if msgtype == 'Cancel' and #known == 0 then
  return {'nothing', arr(unknown)}
end
if ARGV[11] == '1' and #known == 0 then
  return {'unknown-area', arr(unknown)}
end
if not hold then
  link(8, 5, id, msgtype, now, KEYS[3], KEYS[5], KEYS[6], ARGV[8])
end
redis.call('HSET', KEYS[1], 'record', ARGV[3], 'hash', ARGV[2], 'state', ARGV[7],
           'state_at', now, 'expires', ARGV[5], 'received', now, 'supersedes', arr(known),
           'unknown_refs', arr(unknown), 'status', status, 'approval', ARGV[12])
redis.call('ZADD', KEYS[2], now, id)
if hold then
  -- Waiting for a second person: no queue entry, the references untouched.
  redis.call('ZADD', KEYS[7], ARGV[5], id)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*',
             'event', 'pending-approval', 'id', id, 'by', id, 'at', now)
else
  if ARGV[7] == 'active' then redis.call('ZADD', KEYS[3], ARGV[5], id) end
  redis.call('XADD', KEYS[4], '*', 'id', id, 'msgType', msgtype)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*',
             'event', 'accepted', 'id', id, 'by', id, 'at', now)
end
audit_entry(KEYS[6], ARGV[9])
return {'new', arr(known), arr(unknown)}
"""
)

_RELEASE = (
    _LINK
    + f"""
local FROM = {{approve={_from(Transition.APPROVE)},
              ['emergency-release']={_from(Transition.EMERGENCY_RELEASE)}}}
"""
    + """
-- KEYS: alert, live, queue, events, audit, pending, review, ref alert keys...
-- ARGV: id, now_ms, state after, msgType, events_maxlen, approval JSON, audit JSON,
--       transition, ref ids...
-- Returns {'released'}, {'expired'} (its expiry passed while it waited: never sent),
-- {'state', state} (not waiting for approval) or {'missing'}.
local id, now, msgtype, maxlen = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if not FROM[ARGV[8]][state] then return {'state', state} end
redis.call('ZREM', KEYS[6], id)
local expires = redis.call('HGET', KEYS[1], 'expires')
if tonumber(expires) <= tonumber(now) then
  redis.call('HSET', KEYS[1], 'state', 'expired', 'state_at', now)
  event(KEYS[4], KEYS[5], maxlen, 'expired-unreleased', id, id, now)
  return {'expired'}
end
local known = link(8, 1, id, msgtype, now, KEYS[2], KEYS[4], KEYS[5], maxlen)
-- Released by one person alone: flagged until a second person reviews it.
if ARGV[8] == 'emergency-release' then redis.call('ZADD', KEYS[7], now, id) end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'state_at', now, 'supersedes', arr(known))
merge_approval(KEYS[1], ARGV[6])
if ARGV[3] == 'active' then redis.call('ZADD', KEYS[2], expires, id) end
redis.call('XADD', KEYS[3], '*', 'id', id, 'msgType', msgtype)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*',
           'event', 'accepted', 'id', id, 'by', id, 'at', now)
audit_entry(KEYS[5], ARGV[7])
return {'released'}
"""
)

_REJECT = (
    _LINK
    + f"""
local FROM, TO = {_from(Transition.REJECT)}, {_to(Transition.REJECT)}
"""
    + """
-- KEYS: alert, events, audit, pending; ARGV: id, now_ms, approval JSON, audit JSON, maxlen
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if not FROM[state] then return {'state', state} end
redis.call('HSET', KEYS[1], 'state', TO, 'state_at', ARGV[2])
merge_approval(KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
           'event', 'rejected', 'id', ARGV[1], 'by', ARGV[1], 'at', ARGV[2])
audit_entry(KEYS[3], ARGV[4])
return {'rejected'}
"""
)

_REVIEW = (
    _LINK
    + """
-- KEYS: alert, audit, review; ARGV: approval JSON, audit JSON, id
-- An emergency release, reviewed afterwards by a second person: once.
local raw = redis.call('HGET', KEYS[1], 'approval')
if not raw then return {'missing'} end
local current = cjson.decode(raw)
if current['decision'] ~= 'emergency-release' then return {'not-emergency'} end
if current['reviewed_by'] then return {'reviewed', current['reviewed_by']} end
merge_approval(KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[3])
audit_entry(KEYS[2], ARGV[2])
return {'ok'}
"""
)

_SWEEP = (
    f"""
local EXPIRE_FROM, EXPIRE_TO = {_from(Transition.EXPIRE)}, {_to(Transition.EXPIRE)}
"""
    + """
-- KEYS: live, events, audit, pending; ARGV: now_ms, alert key prefix, events_maxlen, limit
-- Live alerts past their expiry, and alerts whose expiry passed while they waited for
-- approval (never sent: `expired-unreleased`).
local done = {}
for k, zset in ipairs({KEYS[1], KEYS[4]}) do
  local ids = redis.call('ZRANGEBYSCORE', zset, '-inf', ARGV[1], 'LIMIT', 0, ARGV[4])
  local kind = k == 1 and 'expired' or 'expired-unreleased'
  for _, id in ipairs(ids) do
    local key = ARGV[2] .. id
    redis.call('ZREM', zset, id)
    if EXPIRE_FROM[redis.call('HGET', key, 'state')] then
      redis.call('HSET', key, 'state', EXPIRE_TO, 'state_at', ARGV[1])
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
                 'event', kind, 'id', id, 'by', id, 'at', ARGV[1])
      redis.call('XADD', KEYS[3], '*', 'event', kind, 'id', id, 'by', id, 'at', ARGV[1])
      table.insert(done, id)
    end
  end
end
return done
"""
)


@dataclass(frozen=True)
class Decision:
    """What `release`, `reject` or `review` did: `kind` is `released`, `rejected`,
    `ok` (reviewed), `expired` (it waited past its expiry: never sent), `state` (not in
    a state the move starts from; `state` says which), `missing`, `not-emergency`, or
    `reviewed` (already, by `state`)."""

    kind: str
    state: str | None = None


class AlertStore(StoreBase):
    """Alerts and their lifecycle."""

    SCRIPTS: ClassVar[dict[str, str]] = {
        "_accept": _ACCEPT,
        "_sweep": _SWEEP,
        "_release": _RELEASE,
        "_reject": _REJECT,
        "_review": _REVIEW,
    }
    _accept: AsyncScript
    _sweep: AsyncScript
    _release: AsyncScript
    _reject: AsyncScript
    _review: AsyncScript

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
        initial = record.state
        if record.alert.msgType.value == "Cancel" and record.state is not AlertState.PENDING:
            initial = AlertState.CANCELLED
        keys = [
            self.keys.alert(record.id),
            self.keys.alerts,
            self.keys.live,
            self.keys.plan_queue(_lane(record)),
            self.keys.events,
            self.keys.audit,
            self.keys.pending,
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
            orjson.dumps(record.approval or {}).decode(),
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
        if kind in ("status-mismatch", "not-released"):
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
        data["approval"] = orjson.loads(raw.get("approval") or "null") or None
        record = AlertRecord.model_validate(data)
        # The sweeper marks expiry within a second; reads never show a stale `active`.
        when = now or datetime.now(UTC)
        expiring = TRANSITIONS[Transition.EXPIRE][0]
        if record.state in expiring and record.expires <= when:
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
            keys=[self.keys.live, self.keys.events, self.keys.audit, self.keys.pending],
            args=[when, self.keys.alert(""), EVENTS_MAXLEN, limit],
        )
        return list(done)

    # -- approval (gateway/console/approval.py decides who may; these make the move) ----

    async def release(
        self,
        record: AlertRecord,
        refs: Sequence[str],
        transition: Transition,
        approval: dict[str, Any],
        audit: dict[str, Any],
        *,
        now: int,
    ) -> Decision:
        """Approve (or release alone) a version waiting for approval: its references
        linked, queued for planning and live, in one script; refused unless it waits."""
        after = TRANSITIONS[transition][1]
        if record.alert.msgType.value == "Cancel":
            after = AlertState.CANCELLED  # the lifting message itself
        keys = [
            self.keys.alert(record.id),
            self.keys.live,
            self.keys.plan_queue(_lane(record)),
            self.keys.events,
            self.keys.audit,
            self.keys.pending,
            self.keys.review,
            *(self.keys.alert(r) for r in refs),
        ]
        args: list[Any] = [
            record.id,
            now,
            after.value,
            record.alert.msgType.value,
            EVENTS_MAXLEN,
            orjson.dumps(approval).decode(),
            orjson.dumps(audit).decode(),
            transition.value,
            *refs,
        ]
        return _decision(await self._release(keys=keys, args=args))

    async def reject(
        self, alert: str, approval: dict[str, Any], audit: dict[str, Any], *, now: int
    ) -> Decision:
        keys = [self.keys.alert(alert), self.keys.events, self.keys.audit, self.keys.pending]
        args: list[Any] = [
            alert,
            now,
            orjson.dumps(approval).decode(),
            orjson.dumps(audit).decode(),
            EVENTS_MAXLEN,
        ]
        return _decision(await self._reject(keys=keys, args=args))

    async def review(self, alert: str, approval: dict[str, Any], audit: dict[str, Any]) -> Decision:
        """A second person's review of an emergency release (once)."""
        keys = [self.keys.alert(alert), self.keys.audit, self.keys.review]
        args = [orjson.dumps(approval).decode(), orjson.dumps(audit).decode(), alert]
        return _decision(await self._review(keys=keys, args=args))

    async def pending_ids(self) -> list[str]:
        """Versions waiting for approval, soonest expiry first."""
        return [str(i) for i in await self.redis.zrange(self.keys.pending, 0, -1)]

    async def review_ids(self) -> list[str]:
        """Emergency releases not yet reviewed, oldest first."""
        return [str(i) for i in await self.redis.zrange(self.keys.review, 0, -1)]

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


def _lane(record: AlertRecord) -> str:
    return "hi" if record.level.high_priority else "lo"


def _decision(result: list[str]) -> Decision:
    return Decision(str(result[0]), str(result[1]) if len(result) > 1 else None)
