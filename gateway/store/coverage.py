"""Storage: what coverage v2 reads and keeps — reach logs, surveys, the county's
posteriors, and each alert's figures after its per-recipient data expires.

Reach logs only grow (lines are appended by the receipt script and the device and
relay handlers): each process reads only what was appended since its last read and
feeds it to one parser per alert × channel, so the monitor's rounds and repeated
reports do not read a county's log again and again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway.coverage.reach import Reach, ReachParser
from gateway.models import Channel
from gateway.store.base import StoreBase

__all__ = ["CoverageStore"]

KEEP_PARSED = 32  # alerts whose reach logs a process keeps parsed
POSTERIORS_KEPT = 50  # surveyed alerts kept per county


class CoverageStore(StoreBase):
    _parsed: OrderedDict[str, dict[str, tuple[int, ReachParser]]]

    def _parsers(self, alert: str) -> dict[str, tuple[int, ReachParser]]:
        if not hasattr(self, "_parsed"):
            self._parsed = OrderedDict()
        found = self._parsed.get(alert)
        if found is None:
            found = self._parsed[alert] = {c.value: (0, ReachParser(c.value)) for c in Channel}
            while len(self._parsed) > KEEP_PARSED:
                self._parsed.popitem(last=False)
        self._parsed.move_to_end(alert)
        return found

    async def reach(self, alert: str) -> Reach:
        """Every channel's deliveries of an alert, as their reach logs tell it."""
        parsers = self._parsers(alert)
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, (offset, _) in parsers.items():
                pipe.getrange(self.keys.reach_log(alert, channel), offset, -1)
            texts = await pipe.execute()
        out = Reach()
        for (channel, (offset, parser)), text in zip(list(parsers.items()), texts, strict=True):
            if text:
                # The script appends whole lines: a read never ends inside one.
                parser.feed(text.splitlines(keepends=True))
                parsers[channel] = (offset + len(text.encode()), parser)
            out.channels[channel] = parser.result()
        out.version = tuple(p.lines for _, p in parsers.values())
        return out

    async def append_reach(self, alert: str, channel: str, lines: Sequence[str]) -> None:
        if lines:
            await self.redis.append(self.keys.reach_log(alert, channel), "".join(lines))

    # -- surveys -----------------------------------------------------------------------

    async def save_survey(
        self, alert: str, answers: Mapping[str, dict[str, Any]], expires_ms: int
    ) -> None:
        """Survey answers by household id (a later answer for a household replaces it);
        per-household data, kept as long as receipts (`retention.recipient_days`)."""
        if answers:
            key = self.keys.surveys(alert)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping={h: orjson.dumps(a).decode() for h, a in answers.items()})
                pipe.expire(key, self.keep_s(expires_ms, report=False))
                await pipe.execute()

    async def surveys(self, alert: str) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys.surveys(alert))
        return {h: orjson.loads(v) for h, v in raw.items()}

    # -- the county's posteriors ---------------------------------------------------------

    async def save_posterior(self, county: str, record: dict[str, Any]) -> None:
        """A surveyed alert's posterior (it replaces the alert's earlier one)."""
        key = self.keys.posteriors(county)
        kept = [r for r in await self.posteriors(county) if r.get("alert") != record["alert"]]
        rows = [record, *kept][:POSTERIORS_KEPT]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.rpush(key, *(orjson.dumps(r).decode() for r in rows))
            await pipe.execute()

    async def posteriors(self, county: str) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self.keys.posteriors(county), 0, POSTERIORS_KEPT - 1)
        return [orjson.loads(r) for r in raw]

    # -- figures that outlive per-recipient data ------------------------------------------

    async def save_coverage_summary(self, alert: str, figures: dict[str, Any], ttl_s: int) -> None:
        key = self.keys.coverage_summary(alert)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, orjson.dumps(figures).decode(), ex=ttl_s)
            await pipe.execute()

    async def record_broadcast(self, at: datetime, per_county: Mapping[str, float],
                               ttl_s: int) -> None:  # fmt: skip
        """One snapshot of broadcast coverage per county, into its (UTC) day."""
        key = self.keys.broadcast_day(at.astimezone(UTC).date().isoformat())
        async with self.redis.pipeline(transaction=False) as pipe:
            for county, value in per_county.items():
                pipe.hincrbyfloat(key, f"{county}|sum", float(value))
                pipe.hincrby(key, f"{county}|n", 1)
            pipe.expire(key, ttl_s)
            await pipe.execute()

    async def broadcast_means(self, since: datetime, until: datetime) -> dict[str, float]:
        """County → mean broadcast coverage over the snapshots of the days in [since, until)."""
        days = []
        day = since.astimezone(UTC).date()
        while day < until.astimezone(UTC).date() or (day == since.astimezone(UTC).date()):
            days.append(day.isoformat())
            day += timedelta(days=1)
            if len(days) > 400:
                break
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in days:
                pipe.hgetall(self.keys.broadcast_day(d))
            rows = await pipe.execute()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for row in rows:
            for field_, value in row.items():
                county, _, kind = field_.rpartition("|")
                if kind == "sum":
                    sums[county] = sums.get(county, 0.0) + float(value)
                elif kind == "n":
                    counts[county] = counts.get(county, 0) + int(value)
        return {c: round(sums[c] / counts[c], 4) for c in sorted(sums) if counts.get(c)}

    async def coverage_summaries(self, alerts: Sequence[str]) -> list[dict[str, Any] | None]:
        if not alerts:
            return []
        raw = await self.redis.mget([self.keys.coverage_summary(a) for a in alerts])
        return [orjson.loads(r) if r else None for r in raw]
