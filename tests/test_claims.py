"""A batch belongs to the live worker that took it, however long it waits (for the
shared rate, between retries, for a slow provider): no other worker, nor the worker's
own reclaim loop, takes it over and sends it again. A dead worker's batches are taken
over."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from gateway.app import build_workers
from gateway.models import Channel
from tests import alerts as A
from tests.conftest import Gateway
from tests.test_crash import until
from tests.test_races import drained

TOWNSHIP = "652301001"


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    # Batches of 10 at 40 SMS/s from one shared bucket: most batches wait for tokens
    # far longer than claim_idle_s (0.3 s).
    return {"batch_size": 10, "provider": {"rate_per_s": 40}, "claim_idle_s": 0.3,
            "worker_lease_s": 1.0}  # fmt: skip


async def test_batches_waiting_for_the_shared_rate_are_never_taken_over(
    gateway: Gateway,
) -> None:
    first = await gateway.post(A.alert(geocodes=[TOWNSHIP]))
    await gateway.plan_all()
    one = gateway.workers
    two = build_workers(gateway.app, "second")
    for w in (one, two):
        w.sender.sleep = asyncio.sleep  # real waits
    await one.start()
    await two.start()
    try:
        await until(lambda: drained(gateway), 60)
    finally:
        await one.close()
        await two.close()
    copies = Counter(i for i in gateway.sms.accepted_ids if i.startswith(first["id"]))
    assert copies
    assert max(copies.values()) == 1, f"{sum(n > 1 for n in copies.values())} sent twice"


async def test_a_dead_workers_batch_is_taken_over(gateway: Gateway) -> None:
    first = await gateway.post(A.alert(geocodes=["652301001001"]))
    await gateway.plan_all()
    streams = gateway.workers.send_streams(Channel.SMS)
    rows = await gateway.store.read_group(streams, "senders", "dead", count=1, block_ms=None)
    assert rows  # taken by a worker that then died (it never renews its lease)
    gateway.workers.sender.sleep = asyncio.sleep
    await gateway.workers.start()
    try:
        await until(lambda: drained(gateway), 30)
    finally:
        await gateway.workers.close()
    copies = Counter(i for i in gateway.sms.accepted_ids if i.startswith(first["id"]))
    assert set(copies.values()) == {1}
    d = await gateway.deliveries(first["id"])
    assert d["counts"]["sms"] == {"sent": d["planned"]["sms"]}


async def test_a_worker_that_lost_its_batch_sends_nothing_and_acknowledges_nothing(
    gateway: Gateway,
) -> None:
    """A worker presumed dead (its lease ran out while it was stalled) whose batch was
    taken over meanwhile: when it wakes it finds the batch is no longer its own."""
    await gateway.post(A.alert(geocodes=["652301001001"]))
    await gateway.plan_all()
    streams = gateway.workers.send_streams(Channel.SMS)
    rows = await gateway.store.read_group(streams, "senders", "test", count=1, block_ms=None)
    stream, entry, fields = rows[0]
    await gateway.store.claim_stale(stream, "senders", "other", min_idle_ms=0)  # taken over
    outcome = await gateway.workers.sender.handle(stream, entry, fields)
    assert outcome.sent == 0
    assert gateway.sms.calls == []
    assert await gateway.store.still_held(stream, "senders", "other", entry)  # not acked
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'reason="taken-over"' in metrics


async def test_an_entry_whose_handling_always_fails_ends_in_the_dead_letters(
    gateway: Gateway,
) -> None:
    """Retries always end, also for an entry that breaks the sender itself: the
    worker's own reclaim loop tries it again a bounded number of times, then gives up."""
    stream = gateway.store.keys.send_queue("sms", "hi")
    bad = {"a": "a1", "c": "sms", "u": "652301001001", "l": "zh", "k": "alert", "m": "x",
           "v": "red", "t": "not-a-number", "r": "r1\t138\t1\t"}  # fmt: skip
    entry = await gateway.store.redis.xadd(stream, bad)
    gateway.workers.sender.sleep = asyncio.sleep
    await gateway.workers.start()
    try:
        await until(lambda: drained(gateway), 30)
    finally:
        await gateway.workers.close()
    dead = await gateway.store.redis.xrange(gateway.store.keys.dead)
    assert [f["entry"] for _, f in dead] == [entry]
    assert gateway.sms.calls == []
