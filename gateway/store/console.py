"""Storage: the console's sessions and login lockouts (gateway/console/sessions.py), and
the runs of scheduled tests (gateway/console/canary.py).

A session is found by the SHA-256 of its cookie token, so a copy of Redis holds no
usable cookie. Its key lives `console.idle_s` after the last request (renewed by each)
and never beyond `console.max_s` after the login.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import orjson
from redis.commands.core import AsyncScript

from gateway.store.base import StoreBase

__all__ = ["ConsoleStore", "SessionRow"]

_TOUCH = """
-- KEYS: session; ARGV: now_ms, idle_ms, max_ms. The session's fields, renewed; nil
-- when there is none, or it is older than max_ms (then it is removed).
local v = redis.call('HMGET', KEYS[1], 'account', 'csrf', 'created')
if not v[1] then return nil end
if tonumber(v[3]) + tonumber(ARGV[3]) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return nil
end
redis.call('HSET', KEYS[1], 'seen', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return v
"""

_FAILED = """
-- KEYS: failures, lock; ARGV: window_ms, limit, lock_ms. 1 when this failure locks.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


_CLAIM = """
-- KEYS: schedule hash; ARGV: slot_ms. 1 when this caller takes the slot (once, ever).
local last = tonumber(redis.call('HGET', KEYS[1], 'slot') or '0')
if last >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'slot', ARGV[1])
return 1
"""

_FINISH = """
-- KEYS: schedule hash, runs list; ARGV: alert, run JSON, keep. 1 when this caller
-- finished the run (another process may have).
if redis.call('HGET', KEYS[1], 'alert') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'alert', 'running')
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
"""

RUNS_KEPT = 50


class SessionRow(NamedTuple):
    account: str
    csrf: str
    created_ms: int


class ConsoleStore(StoreBase):
    SCRIPTS: ClassVar[dict[str, str]] = {
        "_touch_session": _TOUCH,
        "_login_failed": _FAILED,
        "_claim_slot": _CLAIM,
        "_finish_canary": _FINISH,
    }
    _touch_session: AsyncScript
    _login_failed: AsyncScript
    _claim_slot: AsyncScript
    _finish_canary: AsyncScript

    async def create_session(
        self, token_hash: str, account: str, csrf: str, now: int, idle_ms: int
    ) -> None:
        key = self.keys.session(token_hash)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"account": account, "csrf": csrf, "created": now, "seen": now})
            pipe.pexpire(key, idle_ms)
            await pipe.execute()

    async def touch_session(
        self, token_hash: str, now: int, idle_ms: int, max_ms: int
    ) -> SessionRow | None:
        got: Any = await self._touch_session(
            keys=[self.keys.session(token_hash)], args=[now, idle_ms, max_ms]
        )
        if not got:
            return None
        return SessionRow(str(got[0]), str(got[1]), int(got[2]))

    async def end_session(self, token_hash: str) -> None:
        await self.redis.delete(self.keys.session(token_hash))

    async def login_failed(self, account: str, window_ms: int, limit: int, lock_ms: int) -> bool:
        """Count a failed login; True when it locks the account."""
        keys = [self.keys.login_failures(account), self.keys.login_lock(account)]
        return bool(await self._login_failed(keys=keys, args=[window_ms, limit, lock_ms]))

    async def locked_ms(self, account: str) -> int:
        """How long the account stays locked (0: it is not)."""
        return max(0, int(await self.redis.pttl(self.keys.login_lock(account))))

    async def login_succeeded(self, account: str) -> None:
        await self.redis.delete(self.keys.login_failures(account))

    async def unlock(self, account: str) -> None:
        await self.redis.delete(self.keys.login_failures(account), self.keys.login_lock(account))

    # -- scheduled tests ------------------------------------------------------------------

    async def claim_canary_slot(self, schedule: str, slot_ms: int) -> bool:
        return bool(await self._claim_slot(keys=[self.keys.canary(schedule)], args=[slot_ms]))

    async def start_canary(self, schedule: str, run: dict[str, Any]) -> None:
        await self.redis.hset(
            self.keys.canary(schedule),
            mapping={"alert": str(run["alert"]), "running": orjson.dumps(run).decode()},
        )

    async def canary_running(self, schedule: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.keys.canary(schedule), "running")
        return dict(orjson.loads(raw)) if raw else None

    async def finish_canary(self, schedule: str, alert: str, run: dict[str, Any]) -> bool:
        keys = [self.keys.canary(schedule), self.keys.canary_runs(schedule)]
        args: list[str | int] = [alert, orjson.dumps(run).decode(), RUNS_KEPT]
        return bool(await self._finish_canary(keys=keys, args=args))

    async def canary_runs(self, schedule: str, count: int) -> list[dict[str, Any]]:
        """Finished runs, newest first."""
        rows = await self.redis.lrange(self.keys.canary_runs(schedule), 0, count - 1)
        return [dict(orjson.loads(r)) for r in rows]

    async def receipt_times(
        self, alert: str, channel: str, ids: list[str]
    ) -> list[tuple[str, int] | None]:
        """(state, ms of the state) of each delivery; None where it has no receipt."""
        values = await self.redis.hmget(self.keys.receipts(alert, channel), ids)
        out: list[tuple[str, int] | None] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            parts = value.split("|")
            out.append((parts[0], int(parts[1] or 0)))
        return out
