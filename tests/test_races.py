"""Races between a fan-out and the Update or Cancel that ends it, run with the real
worker loops (several batches in flight at once), counted per recipient at the fake
providers: everyone who got the warning gets its cancellation or update, once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from gateway.app import build_workers
from gateway.models import Channel
from gateway.store import Batch, ReceiptUpdate
from tests import alerts as A
from tests.conftest import Gateway
from tests.fakes import FakeProvider
from tests.test_crash import until

CITY = "652301"  # every sample recipient of Changji City: a fan-out of many batches


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    # Small batches, many at once: batches finish all the time while the second
    # version is planned, which is when the reach of the first is read.
    return {"batch_size": 5, "concurrency": 32}


def got(provider: FakeProvider, alert: str) -> Counter[str]:
    """Recipient → copies the provider accepted of this alert version (all channels)."""
    return Counter(i.split(":", 1)[1] for i in provider.accepted_ids if i.startswith(alert + ":"))


def delivered(gw: Gateway, alert: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for provider in (gw.sms, gw.backup, gw.push):
        out += got(provider, alert)
    return out


async def drained(gw: Gateway) -> bool:
    streams = [s for c in (Channel.SMS, Channel.APP, Channel.MESSENGER)
               for s in gw.workers.send_streams(c)]  # fmt: skip
    streams += gw.workers.plan_streams()
    for stream in streams:
        lag, pending = await gw.store.queue_depth(stream, "senders" if ":send:" in stream
                                                  else "planners")  # fmt: skip
        if lag or pending:
            return False
    return True


@pytest.mark.parametrize("msg_type", ["Cancel", "Update"])
@pytest.mark.parametrize("at", [0.25, 0.6])
async def test_everyone_who_got_the_warning_gets_what_ends_it(
    gateway: Gateway, msg_type: str, at: float
) -> None:
    for fake in (gateway.sms, gateway.backup, gateway.push):
        fake.default = "slow:0.002"  # a provider that takes a little time per batch
    original = A.alert(geocodes=[CITY], level="orange", severity="Severe")
    first = await gateway.post(original)
    # The receipts of a large county: reading who had the first version takes many
    # round trips, and batches keep finishing meanwhile (these 60,000 are final states
    # of recipients outside the directory, so they change nothing else).
    padding = [ReceiptUpdate(f"pad{i}", "failed") for i in range(60_000)]
    for channel in ("sms", "app"):
        await gateway.store.record(first["id"], channel, padding, accepted_ms=0, implicit="")
    await gateway.workers.start()
    try:
        planned = 0

        async def planned_and_part_sent() -> bool:
            nonlocal planned
            summary = await gateway.store.plan_summary(first["id"])
            if summary is None:
                return False
            planned = sum(n for c, n in summary["counts"].items() if c in ("sms", "app"))
            return sum(delivered(gateway, first["id"]).values()) >= at * planned

        await until(planned_and_part_sent)
        extra: dict[str, Any] = {}
        if msg_type == "Update":
            extra = {"level": "red", "severity": "Extreme"}
        else:
            extra = {"level": "orange", "severity": "Severe"}
        second = await gateway.post(
            A.alert(msg_type=msg_type, references=[original], geocodes=[CITY], **extra)
        )
        await asyncio.sleep(0.2)
        await until(lambda: drained(gateway), 60)
    finally:
        await gateway.workers.close()
    warned = delivered(gateway, first["id"])
    told = delivered(gateway, second["id"])
    assert 0 < sum(warned.values()) < planned  # the second version came mid fan-out
    missed = set(warned) - set(told)
    assert not missed, f"{len(missed)} got the warning but not the {msg_type}"
    assert max(warned.values()) == 1
    assert max(told.values()) == 1


async def test_what_was_sent_stays_sent_when_its_batch_is_taken_over_after_the_cancel(
    gateway: Gateway,
) -> None:
    """A worker sent a batch and died before acknowledging it; the Cancel came; the
    worker that takes the batch over closes nothing that was sent, and the delivery
    receipts of those sends still count."""
    unit = "652301001001"
    original = A.alert(geocodes=[unit], level="orange", severity="Severe")
    first = await gateway.post(original)
    await gateway.plan_all()
    streams = gateway.workers.send_streams(Channel.SMS)
    dead = build_workers(gateway.app, "dead")
    rows = await gateway.store.read_group(streams, "senders", "dead", count=1, block_ms=None)
    assert rows
    stream, entry, fields = rows[0]
    # What a worker does before it acknowledges; then it is killed (no ack).
    await dead.sender._handle(Batch.from_fields(entry, stream, fields))
    sent = {i for i in gateway.sms.accepted_ids if i.startswith(first["id"] + ":sms:")}
    assert sent
    await gateway.post(A.alert(msg_type="Cancel", references=[original], geocodes=[unit],
                               level="orange", severity="Severe"))  # fmt: skip
    await gateway.plan_all()
    taken = await gateway.store.claim_stale(stream, "senders", "test", min_idle_ms=0)
    assert [e for _, e, _ in taken] == [entry]
    await gateway.workers.sender.handle(*taken[0])
    await gateway.send_all()
    d = await gateway.deliveries(first["id"])
    planned = d["planned"]["sms"]
    assert d["counts"]["sms"] == {"sent": len(sent), "cancelled": planned - len(sent)}
    one = sorted(sent)[0]
    resp = await gateway.client.post(
        "/api/v1/callbacks/sms/sms-main",
        json={"receipts": [{"id": one, "status": "DELIVRD"}]},
        headers={"X-Callback-Token": "demo-callback-sms-main"},
    )
    assert (await resp.json())["changed"] == 1
    d = await gateway.deliveries(first["id"])
    assert d["counts"]["sms"]["delivered"] == 1
    # And the Cancel went to exactly those who had the warning.
    cancel_to = {i.split(":", 2)[2] for i in gateway.sms.accepted_ids
                 if not i.startswith(first["id"])}  # fmt: skip
    assert cancel_to == {i.split(":", 2)[2] for i in sent}


async def test_a_second_planning_run_queues_and_counts_nothing_twice(gateway: Gateway) -> None:
    """A planner that crashed after enqueuing, before marking its plan done, plans the
    alert again: no batch is queued twice and no delivery (push or pull) counted twice."""
    first = await gateway.post(A.alert(geocodes=["652301001"]))
    await gateway.plan_all()
    before = await gateway.store.aggregates(first["id"])
    lengths = [await gateway.store.redis.xlen(s) for c in (Channel.SMS, Channel.APP)
               for s in gateway.workers.send_streams(c)]  # fmt: skip
    await gateway.store.redis.hdel(gateway.store.keys.plan(first["id"]), "done")
    await gateway.workers.planner.plan(first["id"])
    assert await gateway.store.aggregates(first["id"]) == before
    assert [await gateway.store.redis.xlen(s) for c in (Channel.SMS, Channel.APP)
            for s in gateway.workers.send_streams(c)] == lengths  # fmt: skip
    await gateway.send_all()
    d = await gateway.deliveries(first["id"])
    for channel, n in d["planned"].items():
        assert sum(d["counts"][channel].values()) == n, channel
