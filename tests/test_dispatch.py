"""The send stage against fake providers: retries, failover, limits, priority, cancel.

Stages are driven step by step (`gateway.plan_all()`, `gateway.send_all()`), so every
test is deterministic; waits the dispatcher asks for are recorded, not slept.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.app import build_workers
from gateway.config import Config
from gateway.models import Channel
from gateway.store import Batch, alert_id
from tests import alerts as A
from tests.conftest import Gateway, gateway_of, with_providers
from tests.fakes import FakeProvider

UNIT = "652301001001"  # 27 SMS (23 zh, 4 ug), 4 app, 2 messengers, 2 loudspeakers
TOWNSHIP = "652301001"


def recipients(gw: Gateway, channel: Channel, *units: str) -> set[str]:
    out: set[str] = set()
    for unit in units:
        cols = gw.config.directory.recipients_of(unit, channel)
        out |= set(cols.ids if cols else [])
    return out


def units_of(gw: Gateway, code: str) -> list[str]:
    return gw.config.directory.units_under(code)


def rid(delivery: str) -> str:
    return delivery.split(":", 2)[2]


def sms_ids(provider: Any) -> list[str]:
    """Recipients of SMS deliveries the provider accepted (messenger tasks left out)."""
    return [rid(i) for i in provider.accepted_ids if ":sms:" in i]


def sms_calls(provider: Any) -> list[Any]:
    """Calls carrying SMS deliveries (the sample routes messenger tasks to the same
    gateway)."""
    return [c for c in provider.calls if c.ids and ":sms:" in c.ids[0]]


async def test_every_recipient_gets_exactly_one_message(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[TOWNSHIP]))
    await gateway.run()
    units = units_of(gateway, TOWNSHIP)
    want_sms = recipients(gateway, Channel.SMS, *units)
    got = sms_ids(gateway.sms)
    assert Counter(got) == Counter(want_sms)  # each once, nobody else
    assert all(i.startswith(f"{body['id']}:") for i in gateway.sms.accepted_ids)
    want_app = recipients(gateway, Channel.APP, *units)
    assert sorted(rid(i) for i in gateway.push.accepted_ids) == sorted(want_app)
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["sms"] == {"sent": len(want_sms)}
    assert d["counts"]["app"] == {"sent": len(want_app)}
    assert d["planned"]["sms"] == len(want_sms)
    assert d["dead_letters"] == []
    assert gateway.backup.calls == []


async def test_one_message_per_language_per_unit(gateway: Gateway) -> None:
    await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    texts = {call.text for call in sms_calls(gateway.sms)}
    assert len(sms_calls(gateway.sms)) == 2  # zh and ug recipients of the unit: one call each
    assert len(texts) == 2


async def test_5xx_then_success_is_retried_with_backoff(gateway: Gateway) -> None:
    gateway.sms.script = ["503", "500"]
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    want = recipients(gateway, Channel.SMS, UNIT)
    assert set(sms_ids(gateway.sms)) == want
    assert [c.behaviour for c in gateway.sms.calls][:3] == ["503", "500", "ok"]
    # Exponential backoff with jitter: base 0.01 s, doubled, jitter below the base.
    first, second = gateway.waits[0], gateway.waits[1]
    assert 0.01 <= first < 0.02
    assert 0.02 <= second < 0.03
    page = await gateway.deliveries(body["id"], channel="sms")
    tried = {d["recipient"]: d["attempts"] for d in page["deliveries"]}
    assert set(tried.values()) >= {3}


async def test_retry_after_from_the_provider_is_honoured(gateway: Gateway) -> None:
    gateway.sms.script = ["429:0.04"]
    await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    assert sum(gateway.waits) >= 0.04  # the provider's Retry-After, not the 0.01 s backoff
    assert gateway.waits[0] <= 0.04
    assert set(sms_ids(gateway.sms)) == recipients(gateway, Channel.SMS, UNIT)


@pytest.mark.parametrize("late", ["slow:3", "garbage", "listid", "partial:5"])
async def test_a_late_or_unreadable_answer_is_not_a_reason_to_send_again(
    gateway: Gateway, late: str
) -> None:
    """The provider took the batch but its answer came after the timeout (2 s), or could
    not be read, or left recipients out: they count as sent (to that provider) and are
    not sent again, by it or by the backup."""
    gateway.sms.default = late
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    want = recipients(gateway, Channel.SMS, UNIT)
    assert Counter(sms_ids(gateway.sms)) == Counter(want)  # each once
    assert len(sms_calls(gateway.sms)) == 2  # one per language batch, no second call
    assert sms_calls(gateway.backup) == []
    d = await gateway.deliveries(body["id"], channel="sms", count="1000")
    assert d["counts"]["sms"] == {"sent": len(want)}
    assert {x["note"] for x in d["deliveries"]} == {"sms-main"}
    assert d["dead_letters"] == []
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'warngate_deliveries_uncertain_total{channel="sms"' in metrics


async def test_an_idempotent_provider_gets_the_same_ids_again_and_sends_once(
    aiohttp_client: Any, aiohttp_server: Any, config: Any, redis: Any
) -> None:
    """Where the provider de-duplicates by delivery id, a batch whose answer came late
    goes again, with the same ids, to the same provider (not the backup)."""

    fakes = {n: FakeProvider(n, dedupe=n == "sms-main") for n in config.settings.providers}
    for fake in fakes.values():
        fake.port = (await aiohttp_server(fake.app())).port
    cfg = with_providers(config, {n: f.url for n, f in fakes.items()},
                         provider={"idempotent": True}, claim_idle_s=1.0)  # fmt: skip
    gw = await gateway_of(aiohttp_client, cfg, fakes)
    fakes["sms-main"].script = ["slow:3", "slow:3"]
    await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    calls = sms_calls(fakes["sms-main"])
    assert [c.behaviour for c in calls][:2] == ["slow:3", "slow:3"]
    assert sorted(calls[2].ids) == sorted(calls[0].ids)  # the same delivery ids again
    assert Counter(sms_ids(fakes["sms-main"])) == Counter(recipients(gw, Channel.SMS, UNIT))
    assert sms_calls(fakes["sms-backup"]) == []


async def test_malformed_answers_are_typed_errors_and_retries_end(gateway: Gateway) -> None:
    """A provider that keeps answering a retryable error with `retry_after: "soon"`:
    retried, at most `max_attempts` times in all, then dead letters."""
    gateway.sms.default = gateway.backup.default = "soon"
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    max_attempts = gateway.config.settings.dispatch.max_attempts
    assert len(sms_calls(gateway.sms)) + len(sms_calls(gateway.backup)) == 2 * max_attempts
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["sms"] == {"failed": len(recipients(gateway, Channel.SMS, UNIT))}
    assert {x["error"]["attempts"] for x in d["dead_letters"] if x["channel"] == "sms"} == {
        max_attempts
    }


async def test_a_batch_taken_over_after_its_last_attempt_is_not_tried_again(
    gateway: Gateway,
) -> None:
    """The worker made the last allowed attempt and died before closing the batch:
    whoever takes it over makes no attempt beyond `max_attempts`."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    streams = gateway.workers.send_streams(Channel.SMS)
    rows = await gateway.store.read_group(streams, "senders", "test", count=10, block_ms=None)
    max_attempts = gateway.config.settings.dispatch.max_attempts
    for stream, entry, _ in rows:
        await gateway.store.redis.hset(
            gateway.store.keys.attempts(body["id"]), f"{stream}#{entry}", max_attempts
        )
    for row in rows:
        await gateway.workers.sender.handle(*row)
    assert sms_calls(gateway.sms) == []
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["sms"] == {"failed": len(recipients(gateway, Channel.SMS, UNIT))}
    assert {x["error"]["code"] for x in d["dead_letters"]} == {"attempts-exhausted"}


@pytest.mark.parametrize("refusal", ["401", "403"])
async def test_a_primary_refusing_our_credentials_fails_over_at_once(
    gateway: Gateway, refusal: str
) -> None:
    gateway.sms.default = gateway.push.default = refusal
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    want = recipients(gateway, Channel.SMS, UNIT)
    assert Counter(sms_ids(gateway.backup)) == Counter(want)
    assert len(sms_calls(gateway.sms)) == 1  # the first call; then the breaker is open
    tasks = [i for i in gateway.backup.accepted_ids if ":messenger:" in i]
    assert {rid(i) for i in tasks} == recipients(gateway, Channel.MESSENGER, UNIT)
    assert {rid(i) for i in gateway.fakes["push-backup"].accepted_ids} == recipients(
        gateway, Channel.APP, UNIT
    )
    d = await gateway.deliveries(body["id"])
    assert d["dead_letters"] == []
    assert set(d["counts"]) >= {"sms", "app", "messenger"}
    assert all(set(c) == {"sent"} for ch, c in d["counts"].items() if ch != "loudspeaker")
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'warngate_provider_credentials_errors_total{provider="sms-main"}' in metrics


async def test_credentials_refused_without_another_route_fail_at_once(
    aiohttp_client: Any, aiohttp_server: Any, config: Any, redis: Any
) -> None:

    fakes = {n: FakeProvider(n, default="401") for n in config.settings.providers}
    for fake in fakes.values():
        fake.port = (await aiohttp_server(fake.app())).port
    cfg = with_providers(config, {n: f.url for n, f in fakes.items()})
    s = cfg.settings
    channels = {c: r.model_copy(update={"secondary": None}) for c, r in s.channels.items()}
    cfg = Config(s.model_copy(update={"channels": channels}), cfg.registry, cfg.hazards,
                 cfg.directory, cfg.policy)  # fmt: skip
    gw = await gateway_of(aiohttp_client, cfg, fakes)
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    assert len(sms_calls(fakes["sms-main"])) == 2  # one per language batch, no retry
    d = await gw.deliveries(body["id"])
    assert {x["error"]["code"] for x in d["dead_letters"]} == {"http-401"}


async def test_error_inside_200_retryable_or_not(gateway: Gateway) -> None:
    gateway.sms.script = ["error200:busy:retry"]
    first = await gateway.post(A.alert(geocodes=[UNIT], language="zh-CN"))
    await gateway.run()
    assert [c.behaviour for c in gateway.sms.calls][:2] == ["error200:busy:retry", "ok"]
    d = await gateway.deliveries(first["id"])
    assert d["dead_letters"] == []

    gateway.sms.calls.clear()
    gateway.sms.default = "error200:bad-sender"
    second = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    d = await gateway.deliveries(second["id"])
    assert d["counts"]["sms"] == {"failed": len(recipients(gateway, Channel.SMS, UNIT))}
    codes = {x["error"]["code"] for x in d["dead_letters"]}
    assert codes == {"bad-sender"}
    assert all(x["error"]["attempts"] == 1 for x in d["dead_letters"])  # never retried


async def test_permanent_4xx_goes_to_dead_letters_at_once(gateway: Gateway) -> None:
    gateway.sms.default = "400"
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    assert len(sms_calls(gateway.sms)) == 2  # one call per language batch, no retries
    d = await gateway.deliveries(body["id"], channel="sms")
    assert {x["state"] for x in d["deliveries"]} == {"failed"}
    assert {x["note"] for x in d["deliveries"]} == {"http-400: HTTP 400 fake 400"}
    assert {x["error"]["code"] for x in d["dead_letters"]} == {"http-400"}


async def test_attempts_are_bounded_and_exhausted_batches_are_dead_lettered(
    gateway: Gateway,
) -> None:
    gateway.sms.default = gateway.backup.default = "503"  # the failover fails as well
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    max_attempts = gateway.config.settings.dispatch.max_attempts
    assert len(sms_calls(gateway.sms)) + len(sms_calls(gateway.backup)) == 2 * max_attempts
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["sms"] == {"failed": len(recipients(gateway, Channel.SMS, UNIT))}
    sms_dead = [x for x in d["dead_letters"] if x["channel"] == "sms"]
    assert sorted(x["error"]["attempts"] for x in sms_dead) == [max_attempts] * 2
    listed = await gateway.client.get(
        "/api/v1/dead-letters", headers=A.auth(A.OPERATOR), params={"alert": body["id"]}
    )
    assert len((await listed.json())["dead_letters"]) == len(d["dead_letters"])


async def test_attempts_survive_a_restart(gateway: Gateway) -> None:
    """A batch taken over by another worker continues the attempt count."""
    gateway.sms.default = "503"
    body = await gateway.post(A.alert(geocodes=[UNIT], language="zh-CN"))
    await gateway.plan_all()
    store = gateway.store
    rows = await store.read_group(
        gateway.workers.send_streams(Channel.SMS), "senders", "test", count=1, block_ms=None
    )
    stream, entry, fields = rows[0]
    for _ in range(5):  # a worker that tried five times before it died
        await store.add_attempt(body["id"], f"{stream}#{entry}", 3600)
    await gateway.workers.sender.handle(stream, entry, fields)
    max_attempts = gateway.config.settings.dispatch.max_attempts
    assert len(gateway.sms.calls) == max_attempts - 5


async def test_retries_stop_at_the_alerts_expiry(gateway: Gateway) -> None:
    gateway.sms.default = "503"
    soon = datetime.now(UTC) + timedelta(seconds=30)
    body = await gateway.post(A.alert(geocodes=[UNIT], expires=soon))
    gateway.workers.sender.settings = gateway.workers.sender.settings.model_copy(
        update={"backoff_base_s": 60.0, "backoff_max_s": 120.0}
    )
    await gateway.run()
    assert len(sms_calls(gateway.sms)) == 2  # the next wait would pass the expiry: no retry
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["sms"] == {"expired": len(recipients(gateway, Channel.SMS, UNIT))}
    assert {x["error"]["closed_as"] for x in d["dead_letters"]} == {"expired"}


async def test_partial_rejections_and_partial_retries(gateway: Gateway) -> None:
    gateway.sms.script = ["reject:2", "retry:3"]
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    calls = sms_calls(gateway.sms)
    rejected = set(calls[0].ids[:2])
    retried = set(calls[1].ids[:3])
    # The retried recipients are sent again, alone; nobody else twice.
    assert set(calls[2].ids) == retried
    counts = Counter(gateway.sms.accepted_ids)
    assert max(counts.values()) == 1
    assert not rejected & set(counts)
    d = await gateway.deliveries(body["id"])
    total = len(recipients(gateway, Channel.SMS, UNIT))
    assert d["counts"]["sms"] == {"sent": total - 2, "failed": 2}


async def test_failover_to_secondary_and_back(gateway: Gateway) -> None:
    breaker = gateway.config.settings.channels[Channel.SMS].breaker
    gateway.sms.default = "503"
    body = await gateway.post(A.alert(geocodes=[TOWNSHIP]))
    await gateway.run()
    assert len(sms_calls(gateway.sms)) == breaker.min_calls  # then the circuit opened
    want = recipients(gateway, Channel.SMS, *units_of(gateway, TOWNSHIP))
    assert set(sms_ids(gateway.backup)) == want
    d = await gateway.deliveries(body["id"], channel="sms", count="1000")
    assert {x["note"] for x in d["deliveries"]} == {"sms-backup"}
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'warngate_circuit_state{provider="sms-main"} 1.0' in metrics
    assert "warngate_failovers_total" in metrics

    # After the cool-down one probe goes to the primary; it works, the circuit closes.
    gateway.sms.default = "ok"
    gateway.sms.calls.clear()
    gateway.backup.calls.clear()
    gateway.clock[0] += int(breaker.cooldown_s * 1000) + 1
    await gateway.post(A.alert(geocodes=[UNIT], language="zh-CN"))
    await gateway.run()
    assert len(sms_calls(gateway.sms)) == 2
    assert gateway.backup.calls == []
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'warngate_circuit_state{provider="sms-main"} 0.0' in metrics


async def test_half_open_sends_one_probe_whatever_the_number_of_workers(
    gateway: Gateway,
) -> None:
    """After the cool-down exactly one caller probes the primary; the others keep using
    the secondary until the probe reports (then: closed, or open for another cool-down).
    A probe that never reports is presumed lost after a cool-down."""
    store, provider = gateway.store, "sms-main"
    b = gateway.config.settings.channels[Channel.SMS].breaker
    cool = int(b.cooldown_s * 1000)
    t = gateway.clock[0]

    async def record(ok: bool, now: int) -> int:
        return await store.breaker_record(
            provider, ok, window_ms=int(b.window_s * 1000), error_rate=b.error_rate,
            min_calls=b.min_calls, cooldown_ms=cool, now=now,
        )  # fmt: skip

    for _ in range(b.min_calls):
        await record(False, t)
    assert await store.breaker_state(provider, cool, now=t) == 1  # open
    t += cool + 1
    states = [await store.breaker_state(provider, cool, now=t) for _ in range(5)]
    assert states == [2, 1, 1, 1, 1]  # one probe; four callers stay on the secondary
    assert await record(False, t) == 1  # the probe failed: open again
    assert await store.breaker_state(provider, cool, now=t + 1) == 1
    t += cool + 1
    assert await store.breaker_state(provider, cool, now=t) == 2  # next probe
    t += cool + 1  # ... lost: never reported
    assert await store.breaker_state(provider, cool, now=t) == 2  # another may go
    assert await record(True, t) == 0
    assert await store.breaker_state(provider, cool, now=t) == 0  # closed for everyone


async def test_per_recipient_hourly_limit_and_red_override(gateway: Gateway) -> None:
    sender = gateway.workers.sender
    sender.settings = sender.settings.model_copy(update={"recipient_hourly_limit": 1})
    want = recipients(gateway, Channel.SMS, UNIT)
    first = await gateway.post(A.alert(geocodes=[UNIT], level="yellow", severity="Moderate"))
    await gateway.run()
    second = await gateway.post(A.alert(geocodes=[UNIT], level="yellow", severity="Moderate"))
    await gateway.run()
    d1, d2 = await gateway.deliveries(first["id"]), await gateway.deliveries(second["id"])
    assert d1["counts"]["sms"] == {"sent": len(want)}
    assert d2["counts"]["sms"] == {"failed": len(want)}
    page = await gateway.deliveries(second["id"], channel="sms")
    assert {x["note"] for x in page["deliveries"]} == {"recipient hourly limit"}
    red = await gateway.post(A.alert(geocodes=[UNIT], level="red"))
    await gateway.run()
    assert (await gateway.deliveries(red["id"]))["counts"]["sms"] == {"sent": len(want)}


async def test_red_overtakes_a_large_blue_fan_out(gateway: Gateway) -> None:
    blue = await gateway.post(A.alert(geocodes=["652301"], level="blue", severity="Minor"))
    await gateway.plan_all()
    await gateway.send_all([Channel.SMS], limit=3)
    red = await gateway.post(A.alert(geocodes=[UNIT], level="red"))
    await gateway.plan_all()
    await gateway.send_all([Channel.SMS])
    order = [call.ids[0].split(":")[0] for call in sms_calls(gateway.sms)]
    assert order[:3] == [blue["id"]] * 3
    assert order[3:5] == [red["id"]] * 2  # both red batches before any further blue one
    assert set(order[5:]) == {blue["id"]}


async def test_cancel_during_fan_out_stops_queued_sends_and_tells_who_got_it(
    gateway: Gateway,
) -> None:
    alert = A.alert(geocodes=[TOWNSHIP], level="blue", severity="Minor")
    first = await gateway.post(alert)
    await gateway.plan_all()
    await gateway.send_all([Channel.SMS], limit=4)
    reached = set(sms_ids(gateway.sms))
    assert reached
    cancel = await gateway.post(A.alert(msg_type="Cancel", references=[alert], level="blue",
                                        severity="Minor", geocodes=[TOWNSHIP]))  # fmt: skip
    await gateway.plan_all()
    await gateway.send_all()
    d = await gateway.deliveries(first["id"])
    planned = d["planned"]["sms"]
    assert d["counts"]["sms"]["sent"] == len(reached)
    assert d["counts"]["sms"]["cancelled"] == planned - len(reached)
    cancel_ids = [rid(i) for i in gateway.sms.accepted_ids if i.startswith(f"{cancel['id']}:sms:")]
    assert sorted(cancel_ids) == sorted(reached)  # exactly those who had the warning
    assert len(sms_calls(gateway.sms)) > 4


async def test_a_batch_in_flight_when_the_cancel_is_planned_gets_the_cancellation(
    gateway: Gateway,
) -> None:
    alert = A.alert(geocodes=[UNIT], level="blue", severity="Minor")
    first = await gateway.post(alert)
    await gateway.plan_all()
    gateway.sms.gate = asyncio.Event()  # the provider holds its answer
    sending = asyncio.create_task(gateway.send_all([Channel.SMS], limit=1))
    await asyncio.wait_for(gateway.sms.arrived.wait(), 10)  # the batch is at the provider
    in_flight = set(gateway.sms.calls[0].ids)
    # Cancelled and planned while the provider has the batch but has not answered:
    # no `sent` receipt exists yet for these recipients.
    d = await gateway.deliveries(first["id"])
    assert "sent" not in d["counts"].get("sms", {})
    cancel = await gateway.post(A.alert(msg_type="Cancel", references=[alert], level="blue",
                                        severity="Minor", geocodes=[UNIT]))  # fmt: skip
    await gateway.plan_all()
    gateway.sms.gate.set()
    await sending
    gateway.sms.gate = None
    await gateway.send_all([Channel.SMS])
    got_warning = {rid(i) for i in in_flight}
    cancel_ids = [rid(i) for i in gateway.sms.accepted_ids if i.startswith(f"{cancel['id']}:sms:")]
    assert sorted(cancel_ids) == sorted(got_warning)  # each told once, nobody else
    assert await gateway.store.may_have(first["id"], "sms") == got_warning  # what it reached


async def test_cancelled_between_retries_the_rest_is_not_sent(gateway: Gateway) -> None:
    alert = A.alert(geocodes=[UNIT], level="blue", severity="Minor")
    first = await gateway.post(alert)
    await gateway.plan_all()
    gateway.sms.script = ["503"]
    cancelled = False

    async def cancel_while_waiting(seconds: float) -> None:
        nonlocal cancelled
        if not cancelled:
            cancelled = True
            await gateway.post(A.alert(msg_type="Cancel", references=[alert], level="blue",
                                       severity="Minor", geocodes=[UNIT]))  # fmt: skip

    gateway.workers.sender.sleep = cancel_while_waiting
    await gateway.send_all([Channel.SMS], limit=1)
    assert cancelled
    assert [c.behaviour for c in gateway.sms.calls] == ["503"]  # no second attempt
    await gateway.send_all([Channel.SMS])  # the other batch: closed unsent too
    assert len(gateway.sms.calls) == 1
    d = await gateway.deliveries(first["id"])
    assert d["counts"]["sms"]["cancelled"] == d["planned"]["sms"]
    assert d["dead_letters"] == []


async def test_update_goes_to_those_reached_and_new_units_get_the_alert(
    gateway: Gateway,
) -> None:
    units = units_of(gateway, TOWNSHIP)
    kept, dropped = units[0], units[1]
    original = A.alert(geocodes=[kept, dropped])
    await gateway.post(original)
    await gateway.run()
    texts_before = len(sms_calls(gateway.sms))
    update = A.alert(msg_type="Update", references=[original], geocodes=[kept, units[2]],
                     level="orange", severity="Severe")  # fmt: skip
    body = await gateway.post(update)
    await gateway.run()
    summary = await gateway.store.plan_summary(body["id"])
    assert summary is not None
    new_calls = sms_calls(gateway.sms)[texts_before:]
    by_unit: dict[str, set[str]] = {}
    for call in new_calls:
        for i in call.ids:
            by_unit.setdefault(i, set()).add(call.text)
    got = {rid(i) for i in by_unit}
    want = recipients(gateway, Channel.SMS, kept, dropped, units[2])
    assert got == want  # kept: update; dropped: cancellation; new unit: the alert


async def test_a_batch_taken_over_after_it_was_sent_is_not_sent_again(
    gateway: Gateway,
) -> None:
    """A worker that sent a batch and died before acknowledging it: the worker that
    takes it over finds every recipient in the sent-set and sends nobody twice."""
    await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    streams = gateway.workers.send_streams(Channel.SMS)
    dead = build_workers(gateway.app, "dead")
    rows = await gateway.store.read_group(streams, "senders", "dead", count=10, block_ms=None)
    for stream, entry, fields in rows:  # sent, never acknowledged
        await dead.sender._handle(Batch.from_fields(entry, stream, fields))
    for stream in streams:
        for row in await gateway.store.claim_stale(stream, "senders", "test", 0):
            await gateway.workers.sender.handle(*row)
    await gateway.send_all()
    counts = Counter(gateway.sms.accepted_ids)
    assert set(counts.values()) == {1}
    assert len(sms_ids(gateway.sms)) == len(recipients(gateway, Channel.SMS, UNIT))
    metrics = await (await gateway.client.get("/metrics")).text()
    assert 'warngate_deliveries_suppressed_total{channel="sms",reason="already-sent"}' in metrics


async def test_messenger_tasks_carry_the_relay_code(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    tasks = [c for c in gateway.sms.calls if ":messenger:" in c.ids[0]]
    assert tasks
    from gateway.callbacks import relay_code

    code = relay_code(gateway.config.settings.secret.get_secret_value(), body["id"], UNIT)
    assert all(code in c.text for c in tasks)
    assert await gateway.store.relay_task(code) == (body["id"], UNIT)


async def test_superseded_before_planning_sends_nothing(gateway: Gateway) -> None:
    original = A.alert(geocodes=[UNIT])
    first = await gateway.post(original)
    await gateway.post(A.alert(msg_type="Cancel", references=[original], geocodes=[UNIT]))
    await gateway.run()
    assert gateway.sms.calls == []  # nobody had it, so nobody needs the cancellation
    assert await gateway.store.plan_summary(first["id"]) is None


async def test_unknown_alert_batches_and_bad_ids_do_not_break_workers(
    gateway: Gateway,
) -> None:
    stream = gateway.store.keys.send_queue("sms", "hi")
    await gateway.store.redis.xadd(
        stream,
        {"a": alert_id("x", "y"), "c": "sms", "u": UNIT, "l": "zh", "k": "alert",
         "m": "missing", "v": "red", "t": "0", "r": ""},
    )  # fmt: skip
    assert await gateway.send_all() == 1
    assert gateway.sms.calls == []
    body: dict[str, Any] = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    assert (await gateway.deliveries(body["id"]))["counts"]["sms"]["sent"] > 0


async def test_provider_rate_is_one_bucket_shared_by_all_workers(gateway: Gateway) -> None:
    store = gateway.store
    t = 1_000_000
    # 10 messages a second, bursts of 10: two workers drawing on the same bucket.
    assert await store.take_tokens("p", 6, 10, 10, now=t) == 0
    assert await store.take_tokens("p", 4, 10, 10, now=t) == 0  # another worker, same second
    assert await store.take_tokens("p", 5, 10, 10, now=t) == 500  # empty: wait 0.5 s
    assert await store.take_tokens("p", 5, 10, 10, now=t + 500) == 0  # refilled meanwhile
    assert await store.take_tokens("q", 5, 10, 10, now=t) == 0  # each provider its own
    # A batch larger than the burst waits for a full bucket of its own size, then goes.
    assert await store.take_tokens("r", 30, 10, 10, now=t) == 0
    assert await store.take_tokens("r", 30, 10, 10, now=t) == 3000


async def test_senders_wait_for_the_provider_rate(gateway: Gateway) -> None:
    sms = gateway.config.settings.providers["sms-main"].model_copy(update={"rate_per_s": 10.0})
    gateway.workers.sender.adapters["sms/sms-main"].config = sms
    await gateway.post(A.alert(geocodes=[UNIT]))  # 23 zh + 4 ug SMS: two batches
    await gateway.run()
    assert any(w >= 0.2 for w in gateway.waits)  # the second batch waited for tokens
    assert set(sms_ids(gateway.sms)) == recipients(gateway, Channel.SMS, UNIT)
