"""Storage: the active state of each unit, which loudspeakers and screens pull.

`p:unit:{code}` maps each live warning chain to one entry: the current version's
messages (rendered once per unit × language × channel), or its cancellation. Every
change appends to `p:unitev`; the id of that stream entry is the entry's `seq`, and
the cursor a device holds is the highest `seq` it has seen. Values are stored as
`{seq}\\n{entry JSON}` so the scripts never re-encode JSON.

A "play" entry is only written while its alert is still active (checked in the same
script), so a slow planner can never resurrect a warning that was cancelled meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from redis.commands.core import AsyncScript

from gateway.store.base import StoreBase, now_ms

__all__ = ["Publish", "UnitEntry", "UnitStore"]

UNIT_EVENTS_MAXLEN = 200_000
# Entries stay this long after their alert's expiry, so late devices see the end.
GRACE_MS = 24 * 3600 * 1000

_PUBLISH = """
-- KEYS: unit hash, unit events, alert record
-- ARGV: alert id, entry JSON, unit code, ids to remove (JSON list), require active,
--       now_ms, grace_ms, maxlen
if ARGV[5] == '1' and redis.call('HGET', KEYS[3], 'state') ~= 'active' then return '' end
local now, grace = tonumber(ARGV[6]), tonumber(ARGV[7])
for _, old in ipairs(cjson.decode(ARGV[4])) do redis.call('HDEL', KEYS[1], old) end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local json = string.sub(all[i + 1], string.find(all[i + 1], '\\n', 1, true) + 1)
  local ok, e = pcall(cjson.decode, json)
  if ok and tonumber(e['expires'] or 0) + grace < now then redis.call('HDEL', KEYS[1], all[i]) end
end
local seq = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'unit', ARGV[3],
                       'alert', ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], seq .. '\\n' .. ARGV[2])
return seq
"""


def seq_key(seq: str) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence); anything else sorts first."""
    try:
        ms, _, n = seq.partition("-")
        return int(ms), int(n or 0)
    except ValueError:
        return -1, -1


@dataclass(frozen=True)
class Publish:
    """One unit's entry for an alert, to be written by `UnitStore.publish_many`."""

    unit: str
    alert: str
    entry: Mapping[str, Any]
    remove: Sequence[str] = ()
    require_active: bool = True


@dataclass(frozen=True)
class UnitEntry:
    alert: str
    seq: str
    data: dict[str, Any]
    # seq_key(seq), parsed once: every device of the unit compares it with its cursor.
    order: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", seq_key(self.seq))


_LEASE = """
-- KEYS: lease; ARGV: owner, ttl_ms. Take the lease if free, renew it if ours.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class UnitStore(StoreBase):
    SCRIPTS: ClassVar[dict[str, str]] = {"_publish": _PUBLISH, "_lease": _LEASE}
    _publish: AsyncScript
    _lease: AsyncScript

    async def mqtt_lease(self, owner: str, ttl_ms: int) -> bool:
        """Whether `owner` publishes unit views to the MQTT broker (taken or renewed):
        one process at a time, so that retained states are never written out of order."""
        return bool(await self._lease(keys=[self.keys.mqtt_leader], args=[owner, ttl_ms]))

    async def publish(
        self,
        unit: str,
        alert: str,
        entry: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        require_active: bool = True,
    ) -> str | None:
        """Write one unit's entry for an alert; the new seq, or None if refused."""
        (seq,) = await self.publish_many([Publish(unit, alert, entry, remove, require_active)])
        return seq

    async def publish_many(self, items: Sequence[Publish]) -> list[str | None]:
        """Several units' entries in one round trip (each still checked and written
        atomically by its own script call); the new seqs, None where refused.

        An alert's units become visible together: devices woken by the first are not
        served while the rest of the county is still being written.
        """
        if not items:
            return []
        now = now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            for it in items:
                keys = [self.keys.unit(it.unit), self.keys.unit_events, self.keys.alert(it.alert)]
                await self._publish(
                    keys=keys,
                    args=[
                        it.alert,
                        orjson.dumps(it.entry).decode(),
                        it.unit,
                        orjson.dumps(list(it.remove)).decode(),
                        "1" if it.require_active else "0",
                        now,
                        GRACE_MS,
                        UNIT_EVENTS_MAXLEN,
                    ],
                    client=pipe,
                )
            seqs = await pipe.execute()
        return [str(seq) or None for seq in seqs]

    async def unit_entries(self, unit: str) -> list[UnitEntry]:
        return _entries(await self.redis.hgetall(self.keys.unit(unit)))

    async def units_entries(self, units: Sequence[str]) -> list[list[UnitEntry]]:
        """`unit_entries` of several units in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for unit in units:
                pipe.hgetall(self.keys.unit(unit))
            raws = await pipe.execute()
        return [_entries(raw) for raw in raws]

    async def unit_events_after(
        self, last: str, *, block_ms: int | None, count: int = 1000
    ) -> list[tuple[str, dict[str, str]]]:
        """Unit-state changes after stream id `last` (`$` for only new ones)."""
        got = await self.redis.xread({self.keys.unit_events: last}, count=count, block=block_ms)
        rows: list[tuple[str, dict[str, str]]] = []
        for _, messages in got or []:
            rows.extend((entry, dict(fields)) for entry, fields in messages)
        return rows

    async def last_unit_event(self) -> str:
        rows = await self.redis.xrevrange(self.keys.unit_events, count=1)
        return str(rows[0][0]) if rows else "0-0"

    # -- endpoint health -------------------------------------------------------------

    async def heartbeat(self, endpoint: str, health: Mapping[str, Any], at_ms: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                self.keys.endpoint(endpoint),
                mapping={"last_seen": at_ms, "health": orjson.dumps(health).decode()},
            )
            pipe.zadd(self.keys.endpoints_seen, {endpoint: at_ms})
            await pipe.execute()

    async def seen(self, requests: dict[str, int]) -> None:
        """Devices' last requests (a sign of life, not a heartbeat), in one command."""
        if requests:
            await self.redis.hset(self.keys.last_requests, mapping=requests)

    async def endpoint_health(self, endpoint: str) -> dict[str, Any]:
        raw = await self.redis.hgetall(self.keys.endpoint(endpoint))
        last_request = await self.redis.hget(self.keys.last_requests, endpoint)
        return {
            "last_seen": int(raw["last_seen"]) if "last_seen" in raw else None,
            "last_request": int(last_request) if last_request else None,
            "health": orjson.loads(raw["health"]) if "health" in raw else None,
        }

    async def heartbeats(self) -> dict[str, int]:
        """Last heartbeat (ms) of every endpoint that ever sent one."""
        rows = await self.redis.zrange(self.keys.endpoints_seen, 0, -1, withscores=True)
        return {str(e): int(score) for e, score in rows}


def _entries(raw: Mapping[str, str]) -> list[UnitEntry]:
    out = []
    for alert, value in raw.items():
        seq, _, body = value.partition("\n")
        out.append(UnitEntry(alert, seq, orjson.loads(body)))
    out.sort(key=lambda e: e.order)
    return out
