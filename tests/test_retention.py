"""Retention: per-recipient data (receipts, who a batch reached, queued batch ids,
relay codes, dead letters with their phone numbers) goes `retention.recipient_days`
after the alert's expiry; what reports need (counters, plan summary, rendered texts)
stays for `retention.report_days`. Checked by letting it happen, with tiny retentions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.config import Config
from gateway.store import ReceiptUpdate, Retention
from tests import alerts as A
from tests.conftest import Gateway
from tests.test_dispatch import UNIT

RECIPIENT_S, REPORT_S, LIFE_S = 3.0, 3600.0, 6.0


@pytest.fixture
def config(config: Config) -> Config:
    s = config.settings
    retention = s.retention.model_copy(
        update={"recipient_days": RECIPIENT_S / 86400, "report_days": REPORT_S / 86400}
    )
    settings = s.model_copy(update={"retention": retention})
    return Config(settings, config.registry, config.hazards, config.directory, config.policy)


def test_the_store_gets_the_configured_retention(config: Config) -> None:
    assert config.retention() == Retention(int(RECIPIENT_S * 1000), int(REPORT_S * 1000))


async def test_per_recipient_data_goes_after_the_alerts_expiry_and_counters_stay(
    gateway: Gateway,
) -> None:
    gateway.sms.script = ["400"]  # one batch fails: a dead letter with phone numbers
    # Far enough for a loaded machine to send it all before it expires.
    expires = datetime.now(UTC) + timedelta(seconds=LIFE_S)
    body = await gateway.post(A.alert(geocodes=[UNIT], expires=expires))
    alert = body["id"]
    await gateway.run()
    keys = gateway.store.keys
    redis: Any = gateway.store.redis
    per_recipient = [keys.receipts(alert, c) for c in ("sms", "app", "messenger")]
    per_recipient += [keys.in_flight(alert, c) for c in ("sms", "app", "messenger")]
    per_recipient.append(keys.enqueued(alert))
    for key in per_recipient:
        assert await redis.exists(key), key
        ttl = await redis.pttl(key)
        # expiry (≤ LIFE_S away) + 3 s; never more, never without one
        assert 0 < ttl <= (LIFE_S + RECIPIENT_S) * 1000 + 200, (key, ttl)
    for key in (keys.agg(alert), keys.plan(alert), keys.messages(alert)):
        ttl = await redis.pttl(key)
        assert (REPORT_S - 10) * 1000 < ttl <= (LIFE_S + REPORT_S) * 1000 + 200, (key, ttl)
    assert await gateway.store.dead_letters(alert=alert)

    left = (expires - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(left, 0) + RECIPIENT_S + 0.3)
    for key in per_recipient:
        assert not await redis.exists(key), key
    assert await gateway.store.purge_dead_letters() >= 1
    assert await gateway.store.dead_letters(alert=alert) == []
    d = await gateway.deliveries(alert)  # the counts of the report are still there
    assert d["counts"]["sms"]["sent"] > 0
    assert d["planned"]["sms"] > 0


async def test_a_receipt_written_after_the_data_went_does_not_keep_it_forever(
    gateway: Gateway,
) -> None:
    """A receipt for an alert whose receipts already expired writes a new hash: it
    gets the same end (from the alert's expiry), it does not live for ever."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    key = gateway.store.keys.receipts(body["id"], "sms")
    redis: Any = gateway.store.redis
    assert not await redis.exists(key)
    await gateway.store.record(
        body["id"], "sms", [ReceiptUpdate("r0000001", "delivered", UNIT, "1")], accepted_ms=0
    )
    assert 0 < await redis.pttl(key) <= (86400 + RECIPIENT_S) * 1000
