"""The pull API of loudspeakers and screens: long-poll, server-sent events, cursors,
cancellation after reconnect, receipts, heartbeats, tokens."""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import timedelta, timezone
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.config import Config
from gateway.directory import Endpoint
from gateway.endpoints import EndpointHub, present
from gateway.keys import HUB
from gateway.metrics import Metrics
from gateway.samplegen import device_token
from gateway.store import Store, UnitEntry, alert_id, now_ms
from tests import alerts as A
from tests.conftest import Gateway
from tests.test_dispatch import TOWNSHIP, UNIT
from tests.test_ingest_api import problem

SPEAKER = "ls-652301001001-1"  # zh ug, not marked for exercises


def device(endpoint: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {device_token(endpoint)}"}


async def poll(gw: Gateway, endpoint: str, **query: Any) -> dict[str, Any]:
    resp = await gw.client.get(
        f"/api/v1/endpoints/{endpoint}/messages",
        params={k: str(v) for k, v in query.items()},
        headers=device(endpoint),
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_poll_gets_the_units_messages_in_the_devices_languages(gateway: Gateway) -> None:
    empty = await poll(gateway, SPEAKER)
    assert empty["messages"] == []
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    got = await poll(gateway, SPEAKER)
    [msg] = got["messages"]
    assert msg["id"] == body["id"]
    assert msg["action"] == "play"
    assert msg["level"] == "red"
    assert [c["language"] for c in msg["content"]] == ["zh", "ug"]
    assert all(c["text"] and c["seconds"] > 0 for c in msg["content"])
    assert got["cursor"] == msg["seq"]
    again = await poll(gateway, SPEAKER, since=got["cursor"])
    assert again["messages"] == []
    assert again["cursor"] == got["cursor"]
    await gateway.app[HUB].flush()
    d = await gateway.deliveries(body["id"], channel="loudspeaker")
    assert {x["recipient"]: x["state"] for x in d["deliveries"]}[SPEAKER] == "sent"


async def test_long_poll_wakes_when_the_warning_is_cancelled(gateway: Gateway) -> None:
    original = A.alert(geocodes=[UNIT])
    await gateway.post(original)
    await gateway.plan_all()
    first = await poll(gateway, SPEAKER)
    waiting = asyncio.create_task(poll(gateway, SPEAKER, since=first["cursor"], wait=30))
    cancel = await gateway.post(A.alert(msg_type="Cancel", references=[original], geocodes=[UNIT]))
    await gateway.plan_all()
    got = await asyncio.wait_for(waiting, 10)
    [msg] = got["messages"]
    assert msg["id"] == cancel["id"]
    assert msg["action"] == "cancel"
    assert msg["reason"] == "cancelled"
    assert msg["supersedes"] == [alert_id_of(original)]
    assert all(c["text"] for c in msg["content"])


def alert_id_of(data: dict[str, Any]) -> str:
    return alert_id(data["sender"], data["identifier"])


async def test_a_device_back_after_days_gets_the_cancellation_not_the_warning(
    gateway: Gateway,
) -> None:
    original = A.alert(geocodes=[UNIT])
    await gateway.post(original)
    await gateway.plan_all()
    before = await poll(gateway, SPEAKER)
    await gateway.post(A.alert(msg_type="Cancel", references=[original], geocodes=[UNIT]))
    await gateway.plan_all()
    for since in (before["cursor"], None, "garbage", "0-0"):
        query = {"since": since} if since else {}
        got = await poll(gateway, SPEAKER, **query)
        assert [m["action"] for m in got["messages"]] == ["cancel"], since


async def test_an_update_replaces_the_version_it_supersedes(gateway: Gateway) -> None:
    original = A.alert(geocodes=[UNIT])
    first = await gateway.post(original)
    await gateway.plan_all()
    cursor = (await poll(gateway, SPEAKER))["cursor"]
    update = await gateway.post(
        A.alert(
            msg_type="Update",
            references=[original],
            geocodes=[UNIT],
            level="orange",
            severity="Severe",
        )
    )
    await gateway.plan_all()
    got = await poll(gateway, SPEAKER, since=cursor)
    [msg] = got["messages"]
    assert (msg["id"], msg["action"], msg["kind"], msg["level"]) == (
        update["id"],
        "play",
        "update",
        "orange",
    )
    assert msg["supersedes"] == [first["id"]]
    full = await poll(gateway, SPEAKER)
    assert [m["id"] for m in full["messages"]] == [update["id"]]


async def test_many_devices_waiting_all_get_a_new_alert(gateway: Gateway) -> None:
    endpoints = [
        e.id
        for e in gateway.config.directory.endpoints.values()
        if e.unit.startswith(TOWNSHIP) and not e.exercise
    ]
    assert len(endpoints) >= 10
    base = str(gateway.client.make_url("/"))
    # Devices are independent clients: their own connections, no shared pool limit.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as devices:

        async def wait_for_news(endpoint: str) -> dict[str, Any]:
            async with devices.get(
                f"{base}api/v1/endpoints/{endpoint}/messages",
                params={"wait": "30"},
                headers=device(endpoint),
            ) as resp:
                assert resp.status == 200
                body: dict[str, Any] = await resp.json()
                return body

        waiting = [asyncio.create_task(wait_for_news(e)) for e in endpoints for _ in range(15)]
        hub = gateway.app[HUB]

        async def all_parked() -> None:
            while hub.connected < len(waiting):  # noqa: ASYNC110 (a condition, not a timer)
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_parked(), 20)
        body = await gateway.post(A.alert(geocodes=[TOWNSHIP]))
        await gateway.plan_all()
        results = await asyncio.wait_for(asyncio.gather(*waiting), 20)
    assert len(results) == 15 * len(endpoints)
    bad = [r for r in results if [m["id"] for m in r["messages"]] != [body["id"]]]
    assert bad == []


async def test_server_sent_events_stream_and_resume(gateway: Gateway) -> None:
    original = A.alert(geocodes=[UNIT])
    first = await gateway.post(original)
    await gateway.plan_all()

    async def events(headers: dict[str, str]) -> Any:
        resp = await gateway.client.get(f"/api/v1/endpoints/{SPEAKER}/stream", headers=headers)
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        return resp

    async def next_event(resp: Any) -> dict[str, str]:
        fields: dict[str, str] = {}
        while True:
            line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
            if not line:
                if "data" in fields:
                    return fields
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value

    resp = await events(device(SPEAKER))
    ev = await next_event(resp)
    assert ev["event"] == "play"
    assert orjson.loads(ev["data"])["id"] == first["id"]
    seen = ev["id"]
    await gateway.post(A.alert(msg_type="Cancel", references=[original], geocodes=[UNIT]))
    await gateway.plan_all()
    ev2 = await next_event(resp)
    assert ev2["event"] == "cancel"
    resp.close()

    resumed = await events({**device(SPEAKER), "Last-Event-ID": seen})
    ev3 = await next_event(resumed)
    assert ev3["id"] == ev2["id"]  # continues after what it had, nothing replayed
    resumed.close()


async def test_wrong_tokens_and_unknown_devices_are_refused(gateway: Gateway) -> None:
    url = f"/api/v1/endpoints/{SPEAKER}/messages"
    await problem(await gateway.client.get(url), 401, "bad-device-token")
    other = device("ls-652301001001-2")
    await problem(await gateway.client.get(url, headers=other), 401, "bad-device-token")
    await problem(
        await gateway.client.get("/api/v1/endpoints/nope/messages", headers=device("nope")),
        401,
        "bad-device-token",
    )
    await problem(
        await gateway.client.get(url, headers=device(SPEAKER), params={"wait": "x"}),
        400,
        "bad-query",
    )


async def test_exercises_only_reach_devices_marked_for_them(gateway: Gateway) -> None:
    marked = next(e for e in gateway.config.directory.endpoints.values() if e.exercise)
    plain = next(
        e for e in gateway.config.directory.endpoints.values()
        if e.unit == marked.unit and not e.exercise
    )  # fmt: skip
    await gateway.post(A.alert(geocodes=[marked.unit], status="Exercise"))
    await gateway.plan_all()
    assert (await poll(gateway, plain.id))["messages"] == []
    [msg] = (await poll(gateway, marked.id))["messages"]
    assert msg["status"] == "Exercise"


async def test_played_and_displayed_receipts_count_reach(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    await poll(gateway, SPEAKER)
    url = f"/api/v1/endpoints/{SPEAKER}/receipts"
    resp = await gateway.client.post(
        url, data=orjson.dumps({"alert": body["id"], "status": "played"}), headers=device(SPEAKER)
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["changed"] == 1
    speaker = gateway.config.directory.endpoints[SPEAKER]
    agg = await gateway.store.aggregates(body["id"])
    reached = sum(v for k, v in agg.items() if k.startswith(f"r|loudspeaker|{UNIT}|"))
    assert reached == speaker.covers_population
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["loudspeaker"]["played"] == 1

    wrong = await gateway.client.post(
        url, data=orjson.dumps({"alert": body["id"], "status": "displayed"}),
        headers=device(SPEAKER),
    )  # fmt: skip
    await problem(wrong, 422, "invalid-receipt")
    unknown = await gateway.client.post(
        url, data=orjson.dumps({"alert": "a" * 25, "status": "played"}), headers=device(SPEAKER)
    )
    await problem(unknown, 404, "alert-not-found")
    junk = await gateway.client.post(url, data=b"[", headers=device(SPEAKER))
    await problem(junk, 400, "malformed-json")


async def test_heartbeat_and_operator_view(gateway: Gateway) -> None:
    beat = {"status": "ok", "volume": 80, "power": "solar", "battery": 64, "signal": -71}
    resp = await gateway.client.post(
        f"/api/v1/endpoints/{SPEAKER}/heartbeat", data=orjson.dumps(beat), headers=device(SPEAKER)
    )
    assert resp.status == 200, await resp.text()
    view = await gateway.client.get(f"/api/v1/endpoints/{SPEAKER}", headers=A.auth(A.OPERATOR))
    info = await view.json()
    assert info["online"] is True
    assert info["health"]["battery"] == 64
    assert info["unit"] == UNIT
    outsider = await gateway.client.get(
        f"/api/v1/endpoints/{SPEAKER}", headers=A.auth("wgdemo-kangbashi-duty")
    )
    await problem(outsider, 404, "endpoint-not-found")
    bad = await gateway.client.post(
        f"/api/v1/endpoints/{SPEAKER}/heartbeat",
        data=orjson.dumps({"volume": 300}),
        headers=device(SPEAKER),
    )
    await problem(bad, 422, "invalid-heartbeat")


def test_an_expired_warning_is_presented_as_a_cancellation() -> None:
    endpoint = Endpoint(
        id="ls-1", kind="loudspeaker", unit=UNIT, languages=["zh"], covers_population=10,
        token_hash="sha256:" + "0" * 64,
    )  # fmt: skip
    entry = UnitEntry(
        "a1",
        "5-0",
        {
            "action": "play",
            "kind": "alert",
            "expires": now_ms() - 1,
            "messages": {"loudspeaker": {"zh": {"text": "PLAY"}}},
            "cancel_messages": {"loudspeaker": {"zh": {"text": "LIFTED"}}},
        },
    )
    shown = present(entry, endpoint, now_ms())
    assert (shown["action"], shown["reason"]) == ("cancel", "expired")
    assert [c["text"] for c in shown["content"]] == ["LIFTED"]
    live = UnitEntry("a1", "5-0", {**entry.data, "expires": now_ms() + 60_000})
    assert present(live, endpoint, now_ms())["content"][0]["text"] == "PLAY"


async def test_expiry_reaches_a_device_that_is_up_to_date(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    first = await poll(gateway, SPEAKER)
    assert await gateway.workers.planner.expire(body["id"]) == 1
    got = await poll(gateway, SPEAKER, since=first["cursor"])
    [msg] = got["messages"]
    assert (msg["id"], msg["action"], msg["reason"]) == (body["id"], "cancel", "expired")
    lifted = msg["content"][0]["text"]
    record = await gateway.store.get_alert(body["id"])
    assert record is not None
    expires = record.expires.astimezone(timezone(timedelta(hours=8)))
    assert f"{expires.hour:02d}:{expires.minute:02d}" in lifted  # lifted at its expiry


async def test_units_left_out_of_an_update_hear_it_no_longer_applies(gateway: Gateway) -> None:
    other = "652301001002"
    original = A.alert(geocodes=[UNIT, other])
    await gateway.post(original)
    await gateway.plan_all()
    speaker = next(e.id for e in gateway.config.directory.endpoints_by_unit[other])
    cursor = (await poll(gateway, speaker))["cursor"]
    await gateway.post(A.alert(msg_type="Update", references=[original], geocodes=[UNIT]))
    await gateway.plan_all()
    [msg] = (await poll(gateway, speaker, since=cursor))["messages"]
    assert (msg["action"], msg["reason"]) == ("cancel", "area-changed")
    [kept] = (await poll(gateway, SPEAKER))["messages"]
    assert (kept["action"], kept["kind"]) == ("play", "update")


async def test_a_cursor_ahead_of_the_unit_gets_the_whole_state(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    got = await poll(gateway, SPEAKER, since="99999999999999-0")
    assert [m["id"] for m in got["messages"]] == [body["id"]]


async def test_receipts_only_for_alerts_sent_to_the_devices_unit(gateway: Gateway) -> None:
    elsewhere = await gateway.post(A.alert(geocodes=["652301001002"]))
    await gateway.plan_all()
    resp = await gateway.client.post(
        f"/api/v1/endpoints/{SPEAKER}/receipts",
        data=orjson.dumps({"alert": elsewhere["id"], "status": "played"}),
        headers=device(SPEAKER),
    )
    body = await problem(resp, 422, "not-sent-to-device")
    assert body["title"] == "Invalid receipt"


async def test_devices_asking_together_share_one_read_that_outlives_who_started_it(
    redis_url: str, prefix: str, config: Config, redis: Redis
) -> None:
    """Devices of a unit waking together make one Redis read. A device that goes away
    while waiting does not cancel it, and if the device that started the read goes
    away, the others read again instead of waiting for ever."""
    # One connection, held by a blocking pop: the reads queue for it until released.
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, decode_responses=True)
    held = Redis(connection_pool=pool)
    store = Store(held, prefix)
    metrics = Metrics()
    hub = EndpointHub(store, config.directory, config.settings.endpoints, metrics)
    await Store(redis, prefix).publish(UNIT, "a-1", {"action": "play"}, require_active=False)
    gate = f"{prefix}:test-gate"
    blocker = asyncio.create_task(held.blpop([gate], timeout=30))
    while not any(c["cmd"] == "blpop" for c in await redis.client_list()):  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # (polling Redis' state, not ours)

    starter = asyncio.create_task(hub.entries(UNIT))
    await asyncio.sleep(0)  # it runs until it waits for the connection
    assert UNIT in hub._reading
    waiters = [asyncio.create_task(hub.entries(UNIT)) for _ in range(5)]
    await asyncio.sleep(0)  # let them start waiting
    waiters[0].cancel()  # a device gone: the read goes on
    starter.cancel()  # the starter gone: one of the others reads again
    for task in (waiters[0], starter):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert starter.cancelled()
    assert waiters[0].cancelled()

    reads_before = await hgetall_calls(redis)
    await redis.lpush(gate, "go")
    assert tuple(await blocker) == (gate, "go")
    results = await asyncio.gather(*waiters[1:])
    assert [[e.alert for e in got] for got in results] == [["a-1"]] * 4
    assert await hgetall_calls(redis) - reads_before == 1  # one read for the four
    # And the metric of connected devices follows the hub's count when scraped.
    hub.connected = 7
    assert metrics.registry.get_sample_value("warngate_endpoints_connected") == 7
    await held.aclose(close_connection_pool=True)


async def test_woken_devices_find_the_new_state_read_once_and_kept_while_the_tail_follows(
    prefix: str, config: Config, redis: Redis
) -> None:
    """The hub's tail reads a changed unit before it wakes the unit's devices: five
    parked devices cost one read. The state stays cached while the tail follows (here
    longer than the 1 s that bounds it when the tail does not), so a device asking
    again later costs no read; a change of the unit makes the next ask read again."""
    store = Store(redis, prefix)
    hub = EndpointHub(store, config.directory, config.settings.endpoints, Metrics())
    entry = {
        "action": "play",
        "kind": "alert",
        "expires": now_ms() + 600_000,
        "messages": {"loudspeaker": {"zh": {"text": "PLAY"}}},
    }
    await hub.start()
    try:
        speaker = config.directory.endpoints[SPEAKER]
        await store.publish(UNIT, "a-1", entry, require_active=False)
        first = await hub.wait_changes(speaker, None, 10)  # the tail follows from here
        cursor = first[0]
        parked = [asyncio.create_task(hub.wait_changes(speaker, cursor, 10)) for _ in range(5)]
        await asyncio.sleep(0)  # they are waiting
        before = await hgetall_calls(redis)
        await store.publish(UNIT, "a-2", entry, require_active=False)
        woken = await asyncio.wait_for(asyncio.gather(*parked), 10)
        assert [[m["id"] for m in changes] for _, changes in woken] == [["a-2"]] * 5
        # One HGETALL inside the publish script (it prunes expired entries), one read
        # for the five devices.
        assert await hgetall_calls(redis) - before == 2
        latest = woken[0][0]
        await asyncio.sleep(1.2)  # past CACHE_S: only the tail keeps the state valid now
        again = await hub.changes(speaker, latest)
        assert again == (latest, [])
        assert await hgetall_calls(redis) - before == 2  # no new read
        await store.publish(UNIT, "a-3", entry, require_active=False)
        got = await asyncio.wait_for(hub.wait_changes(speaker, latest, 10), 10)
        assert [m["id"] for m in got[1]] == ["a-3"]
    finally:
        await hub.close()


async def test_receipts_a_flush_could_not_write_go_with_the_next_one(
    gateway: Gateway, redis_url: str, prefix: str, config: Config, redis: Redis
) -> None:
    """Redis unavailable at a flush (here: its only connection taken): the `sent`
    receipts and last-request times are kept and written by the next flush."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    pool = BlockingConnectionPool.from_url(
        redis_url, max_connections=1, timeout=0.2, decode_responses=True
    )
    held = Redis(connection_pool=pool)
    hub = EndpointHub(Store(held, prefix), config.directory, config.settings.endpoints, Metrics())
    speaker = config.directory.endpoints[SPEAKER]
    hub.seen(SPEAKER)
    _, changes = await hub.changes(speaker, None)
    assert [m["id"] for m in changes] == [body["id"]]
    gate = f"{prefix}:test-gate"
    blocker = asyncio.create_task(held.blpop([gate], timeout=30))
    while not any(c["cmd"] == "blpop" for c in await redis.client_list()):  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # (polling Redis' state, not ours)
    with pytest.raises(RedisConnectionError):
        await hub.flush()
    d = await gateway.deliveries(body["id"])
    assert "sent" not in d["counts"].get("loudspeaker", {})
    await redis.lpush(gate, "go")
    await blocker
    await hub.flush()
    d = await gateway.deliveries(body["id"])
    assert d["counts"]["loudspeaker"]["sent"] == 1
    assert await redis.hget(Store(redis, prefix).keys.last_requests, SPEAKER)
    await held.aclose(close_connection_pool=True)


async def hgetall_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


BAD_WAITS = [
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-1", "-0.5", "1e309", "1e3", "1e20",
    "9" * 30, str(10**400), "3600.5", "0x10", "1_0", "٣", "١٠", " 1", "1 ", "+1", "", "1,5",
]  # fmt: skip


async def test_a_bad_wait_is_refused_and_parked_devices_keep_their_timers(
    gateway: Gateway,
) -> None:
    """`wait=nan` was accepted: its request never answered, and its NaN deadline, once in
    the event loop's timer heap, made the loop serve every other parked device late (and
    SIGTERM no longer stopped the process). Every value that is not plain digits from 0 to
    3600 is a 400 naming `wait`, and no timer of the loop is left without a finite time."""
    hub = gateway.app[HUB]
    other = "ls-652301001001-2"
    parked = asyncio.create_task(poll(gateway, SPEAKER, wait=1))
    while hub.connected < 1:  # noqa: ASYNC110 (a condition, not a timer)
        await asyncio.sleep(0.01)
    url = f"/api/v1/endpoints/{other}/messages"
    for bad in BAD_WAITS:
        resp = await asyncio.wait_for(
            gateway.client.get(url, params={"wait": bad}, headers=device(other)), 10
        )
        body = await problem(resp, 400, "bad-query")
        assert body["parameter"] == "wait", bad
        assert body["errors"][0]["loc"] == "query.wait"
    twice = await gateway.client.get(f"{url}?wait=1&wait=nan", headers=device(other))
    assert (await problem(twice, 400, "bad-query"))["parameter"] == "wait"
    loop = asyncio.get_running_loop()
    assert all(math.isfinite(h.when()) for h in loop._scheduled)  # type: ignore[attr-defined]
    got = await asyncio.wait_for(parked, 30)  # a watchdog, not a speed check
    assert got["messages"] == []
    assert hub.connected == 0
    # Within the protocol's range, more than `endpoints.max_wait_s` is waited as that much.
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    for fine in ("0", "0.25", "3600", "90.5", str(0.1 + 0.2)):
        got = await poll(gateway, other, wait=fine)
        assert [m["id"] for m in got["messages"]] == [body["id"]], fine


async def test_a_refused_receipt_in_a_list_records_none_of_it(gateway: Gateway) -> None:
    """Receipts of a list were recorded one by one up to the first one refused: a bad
    request changed state. Now every receipt is checked first."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    await poll(gateway, SPEAKER)
    url = f"/api/v1/endpoints/{SPEAKER}/receipts"
    good = {"alert": body["id"], "status": "played"}
    for bad, status, code in [
        ({"alert": "a" * 25, "status": "played"}, 404, "alert-not-found"),
        ({"alert": body["id"], "status": "displayed"}, 422, "invalid-receipt"),
    ]:
        resp = await gateway.client.post(
            url, data=orjson.dumps({"receipts": [good, bad]}), headers=device(SPEAKER)
        )
        await problem(resp, status, code)
        d = await gateway.deliveries(body["id"])
        assert "played" not in d["counts"]["loudspeaker"]
    resp = await gateway.client.post(
        url, data=orjson.dumps({"receipts": [good, good]}), headers=device(SPEAKER)
    )
    assert await resp.json() == {"accepted": 2, "changed": 1}


async def test_receipt_fields_beyond_the_protocol_are_unknown_fields(gateway: Gateway) -> None:
    """A receipt `at` of 2^64 (or any `at`) is refused as an unknown field, worded for a
    device (it said "not a CAP 1.2 element"), and nothing is recorded."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    await poll(gateway, SPEAKER)
    for at in (b"18446744073709551616", b"-1", b'"now"', b"1e308"):
        data = b'{"alert": "%s", "status": "played", "at": %s}' % (body["id"].encode(), at)
        resp = await gateway.client.post(
            f"/api/v1/endpoints/{SPEAKER}/receipts", data=data, headers=device(SPEAKER)
        )
        problem_body = await problem(resp, 422, "invalid-receipt")
        assert problem_body["errors"] == [{"loc": "receipts[0].at", "msg": "unknown field"}]
    d = await gateway.deliveries(body["id"])
    assert "played" not in d["counts"]["loudspeaker"]


@pytest.mark.parametrize("depth", [17, 254, 255, 300, 1000])
async def test_a_heartbeat_nested_too_deep_is_refused(gateway: Gateway, depth: int) -> None:
    """Extra heartbeat keys are kept as sent; one nested 255 levels was read (orjson
    reads 1,024) but could not be written back (it writes 254): a 500. Bodies nested
    deeper than 16 levels are refused, and the health record stays as it was."""
    url = f"/api/v1/endpoints/{SPEAKER}/heartbeat"
    first = await gateway.client.post(url, data=b'{"status": "ok"}', headers=device(SPEAKER))
    assert first.status == 200
    before = await gateway.store.endpoint_health(SPEAKER)
    nested = b'{"status": "ok", "x": ' + b'{"x": ' * (depth - 1) + b"1" + b"}" * depth
    resp = await gateway.client.post(url, data=nested, headers=device(SPEAKER))
    await problem(resp, 422, "invalid-heartbeat")
    assert await gateway.store.endpoint_health(SPEAKER) == before
    fine = b'{"status": "ok", "x": ' + b'{"x": ' * 14 + b"1" + b"}" * 15  # 16 levels
    assert (await gateway.client.post(url, data=fine, headers=device(SPEAKER))).status == 200


async def test_a_cursor_out_of_range_is_an_unknown_cursor(gateway: Gateway) -> None:
    """A cursor is opaque to devices, and one that went bad in a device's memory must
    never leave it without the current state: a cursor that is not a stream id in
    range (2^63, 2^64, Unicode digits) is treated as no cursor, like garbage, and the
    answer's cursor is a real one."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    for since in (str(2**63), f"{2**64}-0", f"1-{2**64}", "٣-0", "1e5", "-5", "9" * 5000):
        got = await poll(gateway, SPEAKER, since=since)
        assert [m["id"] for m in got["messages"]] == [body["id"]], since
        assert got["cursor"] == got["messages"][0]["seq"]
    empty = await poll(gateway, "ls-652301002001-1", since=str(2**64))  # nothing live there
    assert (empty["messages"], empty["cursor"]) == ([], "0-0")


async def raw_status(gw: Gateway, request: bytes) -> tuple[int, bytes]:
    """Status and head of an answer to bytes a client library would not send."""
    reader, writer = await asyncio.open_connection(gw.client.host, gw.client.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head = answer.split(b"\r\n\r\n", 1)[0]
    return int(head.split(b" ", 2)[1]), head


async def test_a_device_token_with_a_non_ascii_byte_is_a_wrong_token(gateway: Gateway) -> None:
    """A byte above 0x7f in `Authorization` reaches the handler as a lone surrogate,
    which the token hash could not encode: a 500. It is a wrong token (401)."""
    for token in (b"wgdev-\xff" + SPEAKER.encode(), b"\xe9", "wgdév".encode()):
        status, head = await raw_status(
            gateway,
            b"GET /api/v1/endpoints/%s/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer %s\r\nConnection: close\r\n\r\n" % (SPEAKER.encode(), token),
        )
        assert status == 401, token
        assert b"application/problem+json" in head
