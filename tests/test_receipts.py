"""Receipts: the state machine, provider callbacks (late, repeated, out of order, early),
app receipts, and messengers' two-step relay acknowledgements."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.callbacks import relay_code
from gateway.keys import DESK, METRICS
from gateway.models import Channel
from gateway.receipts import DeliveryState, ProviderStatusMap, advance
from gateway.store import ReceiptUpdate
from tests import alerts as A
from tests.conftest import Gateway
from tests.test_dispatch import UNIT, recipients
from tests.test_ingest_api import problem

S = DeliveryState


@pytest.mark.parametrize(
    ("current", "new", "after"),
    [
        (None, S.SENT, S.SENT),
        (S.QUEUED, S.SENT, S.SENT),
        (S.SENT, S.DELIVERED, S.DELIVERED),
        (S.DELIVERED, S.SENT, None),  # a late "sent" never overwrites "delivered"
        (S.DELIVERED, S.DELIVERED, None),  # repeated receipt
        (S.DELIVERED, S.ACKNOWLEDGED, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, S.DELIVERED, None),
        (S.SENT, S.FAILED, S.FAILED),
        (S.QUEUED, S.CANCELLED, S.CANCELLED),
        (S.SENT, S.CANCELLED, None),  # the provider took it: it was sent, whatever came
        (S.SENT, S.EXPIRED, S.EXPIRED),  # a provider's EXPIRED receipt
        (S.DELIVERED, S.FAILED, None),  # confirmed stays confirmed
        (S.FAILED, S.DELIVERED, None),  # final is final
        (S.EXPIRED, S.SENT, None),
        (S.CANCELLED, S.SENT, None),
        (S.SENT, S.PLAYED, S.PLAYED),
        (S.PLAYED, S.DISPLAYED, None),
    ],
)
def test_state_machine_only_moves_forward(
    current: DeliveryState | None, new: DeliveryState, after: DeliveryState | None
) -> None:
    assert advance(current, new) is after


def test_provider_status_words_map_case_insensitively() -> None:
    table = ProviderStatusMap({"DLVD": "delivered", "BOUNCED": "failed"})
    assert table("dlvd") is S.DELIVERED
    assert table(" DELIVRD ") is S.DELIVERED
    assert table("bounced") is S.FAILED
    assert table("whatever") is None


async def callback(
    gw: Gateway, receipts: Any, *, family: str = "sms", provider: str = "sms-main",
    token: str | None = "demo-callback-sms-main",
) -> Any:  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Callback-Token"] = token
    return await gw.client.post(
        f"/api/v1/callbacks/{family}/{provider}", data=orjson.dumps(receipts), headers=headers
    )


async def sent_alert(gw: Gateway) -> tuple[str, list[str]]:
    body = await gw.post(A.alert(geocodes=[UNIT]))
    await gw.run()
    ids = [i for i in gw.sms.accepted_ids if ":sms:" in i]
    return body["id"], ids


async def aggregates(gw: Gateway, alert: str) -> dict[str, int]:
    return await gw.store.aggregates(alert)


def reach(agg: dict[str, int], channel: str, unit: str = UNIT) -> int:
    return sum(v for k, v in agg.items() if k.startswith(f"r|{channel}|{unit}|"))


async def test_delivered_receipts_count_and_repeats_change_nothing(gateway: Gateway) -> None:
    alert, ids = await sent_alert(gateway)
    half = ids[: len(ids) // 2]
    resp = await callback(gateway, {"receipts": [{"id": i, "status": "DELIVRD"} for i in half]})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["changed"] == len(half)
    again = await callback(gateway, [{"id": i, "status": "DELIVRD"} for i in half])
    assert (await again.json())["changed"] == 0
    late_sent = await callback(gateway, [{"id": i, "status": "ACCEPTED"} for i in half])
    assert (await late_sent.json())["changed"] == 0
    late_fail = await callback(gateway, [{"id": i, "status": "UNDELIV"} for i in half])
    assert (await late_fail.json())["changed"] == 0
    d = await gateway.deliveries(alert)
    assert d["counts"]["sms"] == {"sent": len(ids) - len(half), "delivered": len(half)}
    persons = gateway.config.directory.recipients_of(UNIT, Channel.SMS)
    assert persons is not None
    by_id = dict(zip(persons.ids, persons.persons, strict=True))
    want = sum(by_id[i.rsplit(":", 1)[1]] for i in half)
    agg = await aggregates(gateway, alert)
    assert reach(agg, "sms") == want
    assert sum(v for k, v in agg.items() if k.startswith(f"s|sms|{UNIT}|")) == sum(
        by_id[i.rsplit(":", 1)[1]] for i in ids
    )


async def test_failed_receipt_before_delivery_is_final(gateway: Gateway) -> None:
    alert, ids = await sent_alert(gateway)
    await callback(gateway, [{"id": ids[0], "status": "UNDELIV"}])
    resp = await callback(gateway, [{"id": ids[0], "status": "DELIVRD"}])
    assert (await resp.json())["changed"] == 0
    d = await gateway.deliveries(alert)
    assert d["counts"]["sms"]["failed"] == 1


async def test_unknown_words_and_foreign_ids_are_ignored_and_reported(gateway: Gateway) -> None:
    alert, ids = await sent_alert(gateway)
    resp = await callback(
        gateway,
        [
            {"id": ids[0], "status": "SOMETHING"},
            {"id": "not-a-delivery", "status": "DELIVRD"},
            {"id": f"{alert}:app:r1", "status": "DELIVRD"},  # an app id on the SMS callback
            {"id": f"{A.alert()['identifier']}:sms:r1", "status": "DELIVRD"},
        ],
    )
    body = await resp.json()
    assert body["changed"] == 0
    reasons = [x["reason"] for x in body["ignored"]]
    assert reasons[:3] == [
        "unknown status 'SOMETHING'",
        "not a delivery id of this channel",
        "not a delivery id of this channel",
    ]
    assert reasons[3] == "unknown alert"


async def test_callback_needs_the_providers_token(gateway: Gateway) -> None:
    await problem(await callback(gateway, [], token=None), 401, "bad-callback-token")
    await problem(await callback(gateway, [], token="wrong"), 401, "bad-callback-token")
    resp = await callback(gateway, [], provider="nobody")
    await problem(resp, 404, "provider-not-found")
    resp = await gateway.client.post(
        "/api/v1/callbacks/sms/sms-main",
        data=b"{nope",
        headers={"X-Callback-Token": "demo-callback-sms-main"},
    )
    await problem(resp, 400, "malformed-json")
    resp = await callback(gateway, [{"status": "DELIVRD"}])
    await problem(resp, 422, "invalid-receipt")


async def test_a_receipt_that_overtakes_the_senders_record_waits_for_it(
    gateway: Gateway,
) -> None:
    """The provider's receipt can come before the sender has written what the provider
    answered: the callback looks again until the send is recorded, then counts it, and
    its persons reach the coverage counters."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    cols = gateway.config.directory.recipients_of(UNIT, Channel.SMS)
    assert cols is not None
    early = f"{body['id']}:sms:{cols.ids[0]}"
    gateway.app[DESK].verify_wait_s = 60.0  # a watchdog: the send comes long before
    pending = asyncio.create_task(callback(gateway, [{"id": early, "status": "DELIVRD"}]))
    while not received(gateway):  # noqa: ASYNC110 (a condition, not a timer)
        await asyncio.sleep(0.01)
    # Counted as received just before its first look for the send, already on its way
    # to Redis when this test runs again: the look finds no send, and the callback waits.
    await asyncio.sleep(0.3)
    assert not pending.done()
    await gateway.send_all()
    resp = await asyncio.wait_for(pending, 60)
    assert await resp.json() == {"received": 1, "changed": 1, "ignored": []}
    assert early in gateway.sms.accepted_ids
    assert reach(await aggregates(gateway, body["id"]), "sms") == cols.persons[0]
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["sms"]["delivered"] == 1
    assert sum(d["counts"]["sms"].values()) == len(recipients(gateway, Channel.SMS, UNIT))


async def test_no_receipt_can_mark_a_delivery_done_before_it_is_sent(gateway: Gateway) -> None:
    """A receipt for a delivery with no send recorded was written as `delivered`, so the
    sender then left it out: any provider's token could silence recipients before their
    warning went out. It is refused after the wait, and the warning is sent."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    gateway.app[DESK].verify_wait_s = 0.2
    cols = gateway.config.directory.recipients_of(UNIT, Channel.SMS)
    assert cols is not None
    ids = [f"{body['id']}:sms:{r}" for r in cols.ids]
    before = await gateway.store.aggregates(body["id"])
    resp = await callback(gateway, [{"id": i, "status": "DELIVRD"} for i in ids])
    answer = await resp.json()
    assert answer["changed"] == 0
    assert {x["reason"] for x in answer["ignored"]} == {"not sent through this provider"}
    assert await gateway.store.aggregates(body["id"]) == before
    assert await gateway.store.redis.hlen(gateway.store.keys.receipts(body["id"], "sms")) == 0
    await gateway.send_all()
    assert sorted(i for i in gateway.sms.accepted_ids if ":sms:" in i) == sorted(ids)
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["sms"] == {"sent": len(ids)}
    assert refused(gateway, "sms-main", "not-sent") == len(ids)


async def test_a_provider_confirms_only_what_it_was_given(gateway: Gateway) -> None:
    """The backup SMS gateway's token confirmed deliveries sent through the primary (and
    the other way round): such receipts are refused, counted, and named in the answer."""
    first, ids = await sent_alert(gateway)  # through sms-main
    backup = {"provider": "sms-backup", "token": "demo-callback-sms-backup"}
    resp = await callback(gateway, [{"id": i, "status": "DELIVRD"} for i in ids], **backup)
    answer = await resp.json()
    assert answer["changed"] == 0
    assert answer["ignored"] == [{"id": i, "reason": "sent through another provider"} for i in ids]
    assert refused(gateway, "sms-backup", "other-provider") == len(ids)
    d = await gateway.deliveries(first)
    assert d["counts"]["sms"] == {"sent": len(ids)}
    assert reach(await aggregates(gateway, first), "sms") == 0
    resp = await callback(gateway, [{"id": i, "status": "DELIVRD"} for i in ids[:3]])
    assert (await resp.json())["changed"] == 3  # the primary's own receipts count

    gateway.sms.default = "503"  # the primary fails: the circuit opens, the backup sends
    second = await gateway.post(A.alert(geocodes=["652301001002"]))
    await gateway.run()
    via_backup = [i for i in gateway.backup.accepted_ids if ":sms:" in i]
    assert via_backup
    resp = await callback(gateway, [{"id": i, "status": "DELIVRD"} for i in via_backup])
    answer = await resp.json()
    assert answer["changed"] == 0
    assert {x["reason"] for x in answer["ignored"]} == {"sent through another provider"}
    resp = await callback(gateway, [{"id": i, "status": "DELIVRD"} for i in via_backup], **backup)
    assert (await resp.json())["changed"] == len(via_backup)
    d = await gateway.deliveries(second["id"])
    assert d["counts"]["sms"]["delivered"] == len(via_backup)


def refused(gw: Gateway, provider: str, reason: str) -> float:
    value = gw.app[METRICS].registry.get_sample_value(
        "warngate_receipts_refused_total",
        {"channel": "sms", "provider": provider, "reason": reason},
    )
    return value or 0.0


def received(gw: Gateway) -> float:
    value = gw.app[METRICS].registry.get_sample_value(
        "warngate_receipts_total", {"channel": "sms", "source": "sms-main"}
    )
    return value or 0.0


async def test_app_delivered_and_opened(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    ids = gateway.push.accepted_ids
    assert ids
    resp = await callback(
        gateway,
        [{"id": ids[0], "status": "delivered"}, {"id": ids[1], "status": "opened"}],
        family="app",
        provider="push",
        token="demo-callback-push",
    )
    assert (await resp.json())["changed"] == 2
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["app"] == {"sent": len(ids) - 2, "delivered": 1, "acknowledged": 1}


async def test_messenger_relays_in_two_steps(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    code = relay_code(gateway.config.settings.secret.get_secret_value(), body["id"], UNIT)
    cols = gateway.config.directory.recipients_of(UNIT, Channel.MESSENGER)
    assert cols is not None
    phone = cols.addresses[0]

    async def ack(data: dict[str, Any], c: str = code) -> Any:
        return await gateway.client.post(f"/api/v1/relay/{c}", data=orjson.dumps(data))

    got = await ack({"phone": phone, "status": "received"})
    assert (await got.json())["state"] == "delivered"
    assert reach(await aggregates(gateway, body["id"]), "messenger") == 0  # not yet told
    told = await ack({"phone": "+86" + phone, "status": "relayed", "households": 10})
    assert (await told.json())["state"] == "acknowledged"
    size = gateway.config.settings.dispatch.household_size
    assert reach(await aggregates(gateway, body["id"]), "messenger") == round(10 * size)
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["messenger"]["acknowledged"] == 1

    await problem(await ack({"phone": phone, "status": "received"}, "AAAAAAAA"), 404,
                  "relay-not-found")  # fmt: skip
    await problem(await ack({"phone": "13900000000", "status": "received"}), 404, "not-messenger")
    await problem(await ack({"phone": phone, "status": "relayed"}), 422, "invalid-relay")
    await problem(await ack({"phone": phone, "status": "done"}), 422, "invalid-relay")


async def test_messenger_sms_reply_is_an_acknowledgement(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    code = relay_code(gateway.config.settings.secret.get_secret_value(), body["id"], UNIT)
    cols = gateway.config.directory.recipients_of(UNIT, Channel.MESSENGER)
    assert cols is not None
    headers = {"X-Callback-Token": "demo-callback-sms-main"}
    resp = await gateway.client.post(
        "/api/v1/callbacks/sms/sms-main/inbound",
        data=orjson.dumps({"from": cols.addresses[1], "text": f"{code.lower()} 2 7"}),
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "acknowledged"
    bad = await gateway.client.post(
        "/api/v1/callbacks/sms/sms-main/inbound",
        data=orjson.dumps({"from": cols.addresses[1], "text": "thanks!"}),
        headers=headers,
    )
    await problem(bad, 422, "invalid-relay")


async def test_an_unknown_channel_in_a_receipt_id_is_ignored_not_a_crash(
    gateway: Gateway,
) -> None:
    alert, _ = await sent_alert(gateway)
    resp = await callback(gateway, [{"id": f"{alert}:pigeon:r1", "status": "DELIVRD"}])
    assert resp.status == 200
    assert (await resp.json())["ignored"][0]["reason"] == "not a delivery id of this channel"


async def test_bulk_receipts_in_several_chunks_count_each_delivery_once(gateway: Gateway) -> None:
    updates = [
        ReceiptUpdate(f"r{i:05d}", "sent", "652301001001", "2", "zh", "") for i in range(2500)
    ]
    store = gateway.store
    assert await store.record("a-bulk", "sms", updates, accepted_ms=0, chunk=1000) == 2500
    again = await store.record("a-bulk", "sms", updates, accepted_ms=0, chunk=1000)
    assert again == 0  # a repeat changes nothing
    agg = await store.redis.hgetall(store.keys.agg("a-bulk"))
    assert agg["n|sms|sent"] == "2500"
    assert int(agg["n|sms|queued"]) == -2500  # counted queued by the planner, not here
    assert sum(int(v) for k, v in agg.items() if k.startswith("s|sms|652301001001|")) == 5000


async def test_a_callback_token_with_a_non_ascii_byte_is_a_wrong_token(gateway: Gateway) -> None:
    """A byte above 0x7f in `X-Callback-Token` could not be encoded for the comparison
    (a 500): it is a wrong token."""
    from tests.test_endpoints import raw_status

    for token in (b"demo-callback-sms-main\xff", b"\xe9", "démo".encode()):
        status, head = await raw_status(
            gateway,
            b"POST /api/v1/callbacks/sms/sms-main HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-Callback-Token: %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]" % token,
        )
        assert status == 401, token
        assert b"application/problem+json" in head


async def test_messenger_replies_are_read_as_their_keyboards_type_them(
    gateway: Gateway,
) -> None:
    """Digits as a Uyghur, Kazakh, Mongolian or Chinese keyboard types them, the quotes
    of the hint copied with the reply, a full stop: read as the reply they are. Other
    Unicode digits (`\\d` took any) are not digits of a reply."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    code = relay_code(gateway.config.settings.secret.get_secret_value(), body["id"], UNIT)
    cols = gateway.config.directory.recipients_of(UNIT, Channel.MESSENGER)
    assert cols is not None

    async def reply(text: str) -> Any:
        return await gateway.client.post(
            "/api/v1/callbacks/sms/sms-main/inbound",
            data=orjson.dumps({"from": cols.addresses[0], "text": text}),
            headers={"X-Callback-Token": "demo-callback-sms-main"},
        )

    for text in (f"{code} 2 ३", f"{code} २ 3", f"{code} 2 ๓"):  # Devanagari, Thai
        await problem(await reply(text), 422, "invalid-relay")
    d = await gateway.deliveries(body["id"])
    assert "acknowledged" not in d["counts"]["messenger"]
    for text in (f"«{code} 1»", f"“{code} 1”。", f"{code}　١"):
        resp = await reply(text)
        assert resp.status == 200, (text, await resp.text())
    for text in (f"{code} 2 ٣", f"{code} ᠒ ᠔", f"{code} ２ １２."):
        resp = await reply(text)
        assert resp.status == 200, (text, await resp.text())
        assert (await resp.json())["state"] == "acknowledged"
    for bad in ("ÄÄÄÄÄÄÄÄ", "AAAAAAAAA", "AAAA"):  # never a task code: not looked up
        resp = await gateway.client.post(
            f"/api/v1/relay/{bad}", data=orjson.dumps({"phone": cols.addresses[0],
                                                       "status": "received"}),
        )  # fmt: skip
        await problem(resp, 404, "relay-not-found")
