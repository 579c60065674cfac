"""Storage: the base every store part shares (client, key names, registered scripts)."""

from __future__ import annotations

import time
from typing import Any, ClassVar, NamedTuple

from redis.asyncio import Redis

from gateway.store.keys import Keys

__all__ = ["Retention", "StoreBase", "now_ms"]

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


class Retention(NamedTuple):
    """How long after an alert's expiry its data is kept (ms): per-recipient data, and
    what reports need."""

    recipient_ms: int = 30 * DAY_MS
    report_ms: int = 400 * DAY_MS

    @classmethod
    def days(cls, recipient: float, report: float) -> Retention:
        return cls(int(recipient * DAY_MS), int(report * DAY_MS))


DEFAULT_RETENTION = Retention()


class StoreBase:
    # Lua scripts of a store part: attribute name → source; registered once per client.
    SCRIPTS: ClassVar[dict[str, str]] = {}

    def __init__(
        self, redis: Redis, prefix: str = "wg", retention: Retention = DEFAULT_RETENTION
    ) -> None:
        # redis-py's stubs type replies as wide unions; each method converts its reply
        # to the declared type instead (the client decodes replies to str).
        self.redis: Any = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.retention = retention
        for cls in type(self).__mro__:
            for name, source in vars(cls).get("SCRIPTS", {}).items():
                setattr(self, name, redis.register_script(source))

    def keep_s(self, expires_ms: int, *, report: bool) -> int:
        """Seconds from now until the data of an alert expiring at `expires_ms` goes:
        what reports need (`report`), or per-recipient data."""
        keep = self.retention.report_ms if report else self.retention.recipient_ms
        return max(1, (max(expires_ms, now_ms()) + keep - now_ms()) // 1000)
