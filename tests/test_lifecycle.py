"""Update and Cancel chains, expiry, exercise marking, reading rights, health endpoints."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from gateway.keys import STORE
from gateway.store import alert_id
from tests import alerts as A
from tests.test_ingest_api import ALERTS, Client, keys_under, post_json, problem


async def get(client: Client, alert: str, key: str = A.MET) -> dict[str, Any]:
    resp = await client.get(f"{ALERTS}/{alert}", headers=A.auth(key))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def accepted(client: Client, data: dict[str, Any], key: str = A.MET) -> dict[str, Any]:
    resp = await post_json(client, data, key)
    assert resp.status == 202, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_update_supersedes_and_cancel_ends_the_chain(
    client: Client, redis: Redis, prefix: str
) -> None:
    first = A.alert()
    a = await accepted(client, first)
    update = A.alert(msg_type="Update", references=[first], level="orange", severity="Severe")
    b = await accepted(client, update)
    assert b["supersedes"] == [a["id"]]
    assert "flags" not in b

    old = await get(client, a["id"])
    assert old["state"] == "updated"
    assert old["superseded_by"] == b["id"]
    new = await get(client, b["id"])
    assert new["state"] == "active"
    assert new["supersedes"] == [a["id"]]
    assert new["level"] == "orange"

    cancel = A.alert(msg_type="Cancel", references=[first, update])
    c = await accepted(client, cancel)
    assert sorted(c["cancels"]) == sorted([a["id"], b["id"]])
    for alert in (a, b):
        got = await get(client, alert["id"])
        assert got["state"] == "cancelled"
        assert got["cancelled_by"] == c["id"]
    assert (await get(client, c["id"]))["state"] == "cancelled"

    listed = await (await client.get(f"{ALERTS}?state=active", headers=A.auth())).json()
    assert listed["alerts"] == []
    everything = await (await client.get(ALERTS, headers=A.auth())).json()
    assert [x["id"] for x in everything["alerts"]] == [c["id"], b["id"], a["id"]]

    events = [f for _, f in await redis.xrange(f"{prefix}:events")]
    assert [(e["event"], e["id"]) for e in events] == [
        ("accepted", a["id"]),
        ("updated", a["id"]),
        ("accepted", b["id"]),
        ("cancelled", a["id"]),
        ("cancelled", b["id"]),
        ("accepted", c["id"]),
    ]
    # Every version was queued for dissemination, the cancellation included.
    queued = [f["id"] for _, f in await redis.xrange(f"{prefix}:q:plan:hi")]
    queued += [f["id"] for _, f in await redis.xrange(f"{prefix}:q:plan:lo")]
    assert sorted(queued) == sorted([a["id"], b["id"], c["id"]])


async def test_update_of_unknown_alert_is_accepted_and_flagged(client: Client) -> None:
    missed = A.alert()  # never posted: the gateway missed the original
    update = A.alert(msg_type="Update", references=[missed])
    body = await accepted(client, update)
    missed_id = alert_id(missed["sender"], missed["identifier"])
    assert body["unknown_references"] == [missed_id]
    assert body["flags"] == ["references-unknown"]
    got = await get(client, body["id"])
    assert got["state"] == "active"
    assert got["unknown_references"] == [missed_id]


async def test_cancel_of_nothing_known_changes_nothing(
    client: Client, redis: Redis, prefix: str
) -> None:
    cancel = A.alert(msg_type="Cancel", references=[A.alert()])
    body = await problem(await post_json(client, cancel), 422, "nothing-to-cancel")
    assert len(body["unknown_references"]) == 1
    assert await keys_under(redis, prefix) == []


async def test_cancel_with_one_known_reference_cancels_it_and_reports_the_other(
    client: Client,
) -> None:
    known = A.alert()
    a = await accepted(client, known)
    cancel = A.alert(msg_type="Cancel", references=[known, A.alert()])
    c = await accepted(client, cancel)
    assert c["cancels"] == [a["id"]]
    assert len(c["unknown_references"]) == 1


async def test_references_to_another_senders_alerts_are_refused(
    client: Client, redis: Redis, prefix: str
) -> None:
    water = A.alert(sender=A.WATER_SENDER, hazard="flood", event="洪水")
    await accepted(client, water, A.WATER)
    before = await keys_under(redis, prefix)
    cancel = A.alert(msg_type="Cancel", references=[water])
    body = await problem(await post_json(client, cancel), 403, "foreign-reference")
    assert body["references"][0].startswith(A.WATER_SENDER)
    assert await keys_under(redis, prefix) == before
    assert (await get(client, alert_id(water["sender"], water["identifier"]), A.WATER))[
        "state"
    ] == "active"


async def test_alert_referencing_itself_is_422(client: Client) -> None:
    data = A.alert(msg_type="Update")
    data["references"] = A.ref_of(data)
    body = await problem(await post_json(client, data), 422, "unacceptable-alert")
    assert body["errors"][0]["loc"] == "references[0]"


async def test_expiry_is_derived_on_read_and_swept(
    client: Client, redis: Redis, prefix: str
) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    body = await accepted(client, A.alert(expires=soon))
    store = client.app[STORE]
    later = soon + timedelta(seconds=1)
    record = await store.get_alert(body["id"], now=later)
    assert record is not None
    assert record.state.value == "expired"  # derived before the sweeper has run
    assert await store.sweep_expired(now=soon - timedelta(seconds=1)) == []
    assert await store.sweep_expired(now=later) == [body["id"]]
    assert await store.sweep_expired(now=later) == []  # idempotent
    assert await redis.hget(f"{prefix}:alert:{body['id']}", "state") == "expired"
    assert (await redis.xrange(f"{prefix}:events"))[-1][1]["event"] == "expired"


async def test_expiry_follows_the_latest_info_block(client: Client) -> None:
    now = datetime.now(UTC)
    data = A.alert(
        infos=[
            A.info(expires=now + timedelta(hours=1)),
            A.info(language="en-US", expires=now + timedelta(hours=3)),
        ]
    )
    body = await accepted(client, data)
    got = await get(client, body["id"])
    expires = datetime.fromisoformat(got["expires"])
    assert abs((expires - (now + timedelta(hours=3))).total_seconds()) < 2


async def test_alert_without_expires_lives_for_the_default_lifetime(client: Client) -> None:
    data = A.alert()
    del data["info"][0]["expires"]
    body = await accepted(client, data)
    got = await get(client, body["id"])
    lifetime = datetime.fromisoformat(got["expires"]) - datetime.fromisoformat(
        data["sent"].replace("-00:00", "+00:00")
    )
    assert lifetime == timedelta(seconds=86400)


async def test_exercise_and_test_alerts_are_marked(client: Client) -> None:
    for status in ("Exercise", "Test"):
        body = await accepted(client, A.alert(status=status))
        assert body["exercise"] is True
        got = await get(client, body["id"])
        assert got["exercise"] is True
        assert got["status"] == status
    actual = await accepted(client, A.alert())
    assert actual["exercise"] is False


async def test_agencies_read_their_own_alerts_operators_read_all(client: Client) -> None:
    body = await accepted(client, A.alert())
    other = await client.get(f"{ALERTS}/{body['id']}", headers=A.auth(A.WATER))
    await problem(other, 404, "alert-not-found")
    assert (await get(client, body["id"], A.OPERATOR))["id"] == body["id"]
    water_list = await (await client.get(ALERTS, headers=A.auth(A.WATER))).json()
    assert water_list["alerts"] == []
    await problem(await client.get(f"{ALERTS}/{body['id']}"), 401, "missing-key")
    await problem(await client.get(f"{ALERTS}?state=bogus", headers=A.auth()), 400, "bad-query")


async def test_unknown_path_and_method_are_problems(client: Client) -> None:
    await problem(await client.get("/api/v1/nothing"), 404, "not-found")
    resp = await client.delete(ALERTS)
    await problem(resp, 405, "method-not-allowed")
    assert "POST" in resp.headers["Allow"]


async def test_health_ready_and_metrics(client: Client) -> None:
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    assert (await (await client.get("/readyz")).json()) == {"status": "ready"}
    await accepted(client, A.alert())
    text = await (await client.get("/metrics")).text()
    assert (
        'warngate_alerts_accepted_total{agency="changji-met",level="red",msg_type="Alert"} 1.0'
        in text
    )
    assert 'warngate_ingest_seconds_count{outcome="accepted"} 1.0' in text
    assert 'warngate_alerts_received_total{agency="changji-met"} 1.0' in text


async def test_duty_desks_read_alerts_of_overlapping_jurisdictions_only(client: Client) -> None:
    body = await accepted(client, A.alert())  # Changji prefecture bureau
    changji_desk = await client.get(f"{ALERTS}/{body['id']}", headers=A.auth(A.OPERATOR))
    assert changji_desk.status == 200
    kangbashi_desk = await client.get(
        f"{ALERTS}/{body['id']}", headers=A.auth("wgdemo-kangbashi-duty")
    )
    await problem(kangbashi_desk, 404, "alert-not-found")
    listed = await (await client.get(ALERTS, headers=A.auth("wgdemo-kangbashi-duty"))).json()
    assert body["id"] not in [a["id"] for a in listed["alerts"]]


async def test_references_may_be_a_json_list(client: Client) -> None:
    first = A.alert()
    a = await accepted(client, first)
    update = A.alert(msg_type="Update")
    update["references"] = [A.ref_of(first)]
    b = await accepted(client, update)
    assert b["supersedes"] == [a["id"]]


async def test_readyz_says_503_when_redis_is_unreachable(aiohttp_client: Any, config: Any) -> None:
    from gateway.app import create_app
    from gateway.config import Config
    from gateway.redis_server import free_port

    s = config.settings
    dead = s.redis.model_copy(
        update={"url": SecretStr(f"redis://127.0.0.1:{free_port()}/0"), "connect_timeout_s": 0.5}
    )
    cfg = Config(s.model_copy(update={"redis": dead}), config.registry, config.hazards,
                 config.directory, config.policy)  # fmt: skip
    client = await aiohttp_client(create_app(cfg, background=False))
    assert (await client.get("/healthz")).status == 200  # alive, though not ready
    await problem(await client.get("/readyz"), 503, "not-ready")


# -- a drill never touches a live warning (nor a live message a drill) -------------------

DRILL_UNIT = "652301001001"


async def _state(gw: Any, alert: str) -> dict[str, Any]:
    """What the public sees of an alert: its record's state, its unit entries, its
    deliveries, what the providers were handed, and the queues."""
    store = gw.store
    record = await store.get_alert(alert)
    entries = await store.unit_entries(DRILL_UNIT)
    deliveries = await gw.deliveries(alert)
    queues = {
        key: await store.redis.xlen(key)
        async for key in store.redis.scan_iter(match=f"{store.prefix}:q:*")
    }
    return {
        "record": record.model_dump() if record else None,
        "entries": sorted((e.alert, e.seq, str(e.data)) for e in entries),
        "counts": deliveries["counts"],
        "planned": deliveries["planned"],
        "sms": sorted(gw.sms.accepted_ids),
        "push": sorted(gw.push.accepted_ids),
        "queues": queues,
    }


@pytest.mark.parametrize(
    ("live_status", "drill_status", "msg_type"),
    [
        ("Actual", "Exercise", "Cancel"),
        ("Actual", "Test", "Update"),
        ("Actual", "Exercise", "Update"),
        ("Actual", "Test", "Cancel"),
        ("Exercise", "Actual", "Cancel"),  # the reverse: a live message never ends a drill
        ("Test", "Actual", "Update"),
        ("Exercise", "Test", "Cancel"),  # and drills of two kinds stay apart too
        ("Test", "Exercise", "Update"),
    ],
)
async def test_references_across_statuses_are_refused_and_change_nothing(
    gateway: Any, live_status: str, drill_status: str, msg_type: str
) -> None:
    first = A.alert(status=live_status, geocodes=[DRILL_UNIT])
    posted = await gateway.post(first)
    await gateway.run()
    before = await _state(gateway, posted["id"])
    assert before["record"]["state"] == "active"
    if live_status == "Actual":
        assert before["sms"]  # it really went out
        assert before["entries"]

    other = A.alert(
        status=drill_status,
        msg_type=msg_type,
        references=[first],
        geocodes=[DRILL_UNIT],
        level="blue",
        severity="Minor",
    )
    keys = sorted([k async for k in gateway.store.redis.scan_iter(match="*")])
    resp = await post_json(gateway.client, other)
    body = await problem(resp, 422, "status-mismatch")
    assert body["alert_status"] == drill_status
    assert body["references"] == [
        {"id": posted["id"], "reference": A.ref_of(first), "status": live_status}
    ]
    assert body["errors"][0]["loc"] == "references[0]"
    assert live_status in body["detail"]
    # Nothing stored, nothing queued; planning and sending again change nothing.
    assert sorted([k async for k in gateway.store.redis.scan_iter(match="*")]) == keys
    await gateway.run()
    assert await _state(gateway, posted["id"]) == before
    assert await gateway.store.get_alert(alert_id(other["sender"], other["identifier"])) is None


async def test_one_reference_across_statuses_refuses_the_whole_cancel(gateway: Any) -> None:
    drill = A.alert(status="Exercise")
    live = A.alert()
    d, a = await gateway.post(drill), await gateway.post(live)
    await gateway.run()
    cancel = A.alert(status="Exercise", msg_type="Cancel", references=[drill, live])
    body = await problem(await post_json(gateway.client, cancel), 422, "status-mismatch")
    assert [(r["id"], r["status"]) for r in body["references"]] == [(a["id"], "Actual")]
    assert body["errors"][0]["loc"] == "references[1]"
    for alert in (d, a):  # the drill's own reference is not cancelled either
        assert (await gateway.store.get_alert(alert["id"])).state.value == "active"


async def test_status_of_records_stored_before_the_status_field_is_read_from_the_record(
    client: Client, redis: Redis, prefix: str
) -> None:
    live = A.alert()
    body = await accepted(client, live)
    await redis.hdel(f"{prefix}:alert:{body['id']}", "status")  # as stored by older code
    cancel = A.alert(status="Test", msg_type="Cancel", references=[live])
    got = await problem(await post_json(client, cancel), 422, "status-mismatch")
    assert got["references"][0]["status"] == "Actual"
    assert (await get(client, body["id"]))["state"] == "active"
    ok = A.alert(msg_type="Cancel", references=[live])  # same status: still works
    assert (await accepted(client, ok))["cancels"] == [body["id"]]


async def test_a_drill_racing_the_live_alert_it_references_never_touches_it(
    client: Client,
) -> None:
    """The status is compared inside the accept script: whichever of the two lands
    first, the drill's Cancel is refused (unknown reference, or another status)."""
    pairs = []
    for _ in range(20):
        live = A.alert()
        pairs.append((live, A.alert(status="Exercise", msg_type="Cancel", references=[live])))
    answers = await asyncio.gather(
        *(post_json(client, data) for pair in pairs for data in (pair[1], pair[0]))
    )
    for (live, _), cancel_resp, live_resp in zip(pairs, answers[::2], answers[1::2], strict=True):
        assert live_resp.status == 202, await live_resp.text()
        assert cancel_resp.status == 422, await cancel_resp.text()
        assert (await cancel_resp.json(content_type=None))["code"] in (
            "status-mismatch",
            "nothing-to-cancel",
        )
        got = await get(client, alert_id(live["sender"], live["identifier"]))
        assert got["state"] == "active"
        assert got["cancelled_by"] is None
