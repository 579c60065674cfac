"""Periodic statistics: totals per tier from the figures each alert keeps, the same
after every per-recipient key has expired, calendar periods, and the files the serving
process writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from gateway.models import Channel
from gateway.monitor import Monitor
from gateway.reports import calendar_period, format_period, period_report, write_period
from gateway.store import now_ms
from tests import alerts as A
from tests.conftest import Gateway
from tests.test_coverage_api import deliver_sms
from tests.test_dispatch import UNIT

CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("daily", datetime(2026, 3, 14, tzinfo=CST), datetime(2026, 3, 15, tzinfo=CST)),
        # 2026-03-15 is a Sunday: the last whole week ran Monday 9 to Monday 16.
        ("weekly", datetime(2026, 3, 2, tzinfo=CST), datetime(2026, 3, 9, tzinfo=CST)),
        ("monthly", datetime(2026, 2, 1, tzinfo=CST), datetime(2026, 3, 1, tzinfo=CST)),
        ("quarterly", datetime(2025, 10, 1, tzinfo=CST), datetime(2026, 1, 1, tzinfo=CST)),
        ("annual", datetime(2025, 1, 1, tzinfo=CST), datetime(2026, 1, 1, tzinfo=CST)),
    ],
)
def test_calendar_periods_end_at_local_midnight(period: str, start: datetime, end: datetime
                                                 ) -> None:  # fmt: skip
    now = datetime(2026, 3, 15, 1, 30, tzinfo=CST)  # 17:30 UTC the day before
    assert calendar_period(period, now, CST) == (start, end)


async def test_statistics_survive_the_expiry_of_per_recipient_data(gateway: Gateway) -> None:
    gw = gateway
    live = await gw.post(A.alert(geocodes=[UNIT]))
    drill = await gw.post(A.alert(geocodes=[UNIT], status="Exercise"))
    await gw.run()
    sms = gw.config.directory.recipients_of(UNIT, Channel.SMS)
    assert sms is not None
    await deliver_sms(gw, live["id"], sms.ids)
    mon = Monitor(gw.config, gw.store, gw.workers.planner, gw.workers.metrics)
    await mon.tick(now=now_ms())
    before = await period_report(gw.config, gw.store, "daily")
    rows = {r["alert"]: r for r in before["rows"]}
    assert rows[live["id"]]["live"] is True
    assert rows[drill["id"]]["live"] is False
    assert rows[live["id"]]["delivered"] > 0
    totals = {(t["tier"], t["code"], t["live"]): t for t in before["totals"]}
    everything = totals[("all", "", True)]
    assert everything["alerts"] == 1
    assert everything["by_level"] == {"red": 1}
    assert everything["by_hazard"] == {"rainstorm": 1}
    assert totals[("county", "652301", True)]["alerts"] == 1
    assert totals[("all", "", False)]["alerts"] == 1  # the drill, apart
    # Retention removes every per-recipient key: receipts, reach logs, surveys.
    redis = gw.store.redis
    for pattern in ("rcpt", "log", "survey", "fly"):
        async for key in redis.scan_iter(match=f"{gw.store.prefix}:{pattern}:*"):
            await redis.delete(key)
    after = await period_report(gw.config, gw.store, "daily")
    assert after["totals"] == before["totals"]
    assert {r["alert"]: r["delivered"] for r in after["rows"]} == {
        r["alert"]: r["delivered"] for r in before["rows"]
    }
    text = format_period(after, alerts=True)
    assert "live" in text
    assert live["id"] in text


async def test_the_serving_process_writes_each_period_once(
    gateway: Gateway, tmp_path: Path
) -> None:
    gw = gateway
    await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    s = gw.config.settings
    cov = s.coverage.model_copy(update={"reports_dir": tmp_path, "reports_periods": ["daily"]})
    from gateway.config import Config

    config = Config(s.model_copy(update={"coverage": cov}), gw.config.registry,
                    gw.config.hazards, gw.config.directory, gw.config.policy)  # fmt: skip
    mon = Monitor(config, gw.store, gw.workers.planner, gw.workers.metrics)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    written = await mon.periodic(now=tomorrow)
    [path] = written
    report = orjson.loads(await asyncio.to_thread(Path(path).read_bytes))
    assert report["period"] == "daily"
    assert report["alerts"] >= 1
    totals = await asyncio.to_thread(Path(path).with_suffix(".csv").read_text)
    assert totals.startswith("tier,code,live,alerts")
    assert await mon.periodic(now=tomorrow) == []  # there already: not again
    direct = await write_period(config, gw.store, "daily", tomorrow, tmp_path, CST)
    assert direct is None or direct.exists()
