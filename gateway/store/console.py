"""Storage: the console's sessions and login lockouts (gateway/console/sessions.py).

A session is found by the SHA-256 of its cookie token, so a copy of Redis holds no
usable cookie. Its key lives `console.idle_s` after the last request (renewed by each)
and never beyond `console.max_s` after the login.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

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


class SessionRow(NamedTuple):
    account: str
    csrf: str
    created_ms: int


class ConsoleStore(StoreBase):
    SCRIPTS: ClassVar[dict[str, str]] = {"_touch_session": _TOUCH, "_login_failed": _FAILED}
    _touch_session: AsyncScript
    _login_failed: AsyncScript

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
