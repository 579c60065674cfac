"""Storage: the base every store part shares (client, key names, registered scripts)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from redis.asyncio import Redis

from gateway.store.keys import Keys

__all__ = ["StoreBase", "now_ms"]


def now_ms() -> int:
    return int(time.time() * 1000)


class StoreBase:
    # Lua scripts of a store part: attribute name → source; registered once per client.
    SCRIPTS: ClassVar[dict[str, str]] = {}

    def __init__(self, redis: Redis, prefix: str = "wg") -> None:
        # redis-py's stubs type replies as wide unions; each method converts its reply
        # to the declared type instead (the client decodes replies to str).
        self.redis: Any = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        for cls in type(self).__mro__:
            for name, source in vars(cls).get("SCRIPTS", {}).items():
                setattr(self, name, redis.register_script(source))
