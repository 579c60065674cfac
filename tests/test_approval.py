"""The approval state machine in the API: nothing is planned or sent before a second
person approves; nobody approves their own alert; rejection with a reason; an alert that
expires while it waits is never sent; emergency release alone only where configured,
time-boxed and reviewed afterwards; agencies configured for automatic release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from gateway.console.approval import Person
from gateway.errors import Conflict
from gateway.keys import CONSOLE
from gateway.models import TRANSITIONS, AlertState, Transition
from tests import alerts as A
from tests.conftest import Gateway
from tests.console import APPROVER, CHIEF, DRAFTER, MORI_APPROVER, VIEWER, login, move

EM_KEY = "wgdemo-changji-em"  # the sample's emergency bureau: no automatic release
UNIT = "652301001001"


def em_alert(level: str = "red", **kw: Any) -> dict[str, Any]:
    return A.alert(sender=A.EM_SENDER, level=level, geocodes=kw.pop("geocodes", [UNIT]), **kw)


async def submit(
    gw: Gateway, person: dict[str, str], data: dict[str, Any], status: int = 202
) -> dict[str, Any]:
    resp = await gw.client.post(
        "/api/v1/submissions",
        data=orjson.dumps(data),
        headers={**person, "Content-Type": "application/json"},
    )
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    return body


async def sent_anything(gw: Gateway, alert: str) -> bool:
    calls = [c for fake in gw.fakes.values() for c in fake.calls if any(alert in i for i in c.ids)]
    return bool(calls) or await gw.store.plan_summary(alert) is not None


async def test_nothing_is_planned_or_sent_before_approval(gateway: Gateway, redis: Redis) -> None:
    """An agency's red alert by API waits (the emergency bureau has no automatic
    release): 202 `pending-approval`, nothing planned, queued, published or sent, however
    long the workers run; after an approver's approval, it goes out."""
    body = await gateway.post(em_alert(), key=EM_KEY)
    assert body["state"] == "pending-approval"
    alert = body["id"]
    assert await gateway.plan_all() == 0  # no queue entry at all
    await gateway.send_all()
    assert not await sent_anything(gateway, alert)
    assert await gateway.store.unit_entries(UNIT) == []
    assert alert not in await gateway.store.live_ids()
    detail = await (
        await gateway.client.get(f"/api/v1/alerts/{alert}", headers=A.auth(EM_KEY))
    ).json()
    assert detail["state"] == "pending-approval"
    assert detail["approval"]["required"] is True

    approver = await login(gateway.client, APPROVER)
    answer = await move(gateway.client, alert, "approve", approver)
    assert answer["state"] == "active"
    assert answer["approval"]["decided_by"] == APPROVER
    await gateway.run()
    assert any(alert in i for i in gateway.sms.accepted_ids)
    assert await gateway.store.unit_entries(UNIT)
    audit = [e for e in await gateway.store.audit(50) if e.get("id") == alert]
    assert [e["event"] for e in reversed(audit)][:2] == ["posted", "approve"]
    assert next(e for e in audit if e["event"] == "approve")["by"] == APPROVER


async def test_own_approval_is_refused_and_a_second_person_releases(gateway: Gateway) -> None:
    chief = await login(gateway.client, CHIEF)  # drafter and approver in one
    body = await submit(gateway, chief, em_alert())
    assert body["state"] == "pending-approval"
    refused = await move(gateway.client, body["id"], "approve", chief, 403)
    assert refused["code"] == "own-approval"
    assert refused["drafted_by"] == CHIEF
    assert (await gateway.store.get_alert(body["id"])).state is AlertState.PENDING  # type: ignore[union-attr]
    await gateway.run()
    assert not await sent_anything(gateway, body["id"])
    approver = await login(gateway.client, APPROVER)
    assert (await move(gateway.client, body["id"], "approve", approver))["state"] == "active"
    assert (await move(gateway.client, body["id"], "approve", approver, 409))[
        "code"
    ] == "not-pending"


async def test_who_may_approve(gateway: Gateway) -> None:
    drafter = await login(gateway.client, DRAFTER)
    body = await submit(gateway, drafter, em_alert(level="orange"))
    alert = body["id"]
    viewer = await login(gateway.client, VIEWER)
    assert (await move(gateway.client, alert, "approve", viewer, 403))["code"] == "role-required"
    assert (await move(gateway.client, alert, "approve", drafter, 403))["code"] == "role-required"
    mori = await login(gateway.client, MORI_APPROVER)  # a county approver, not Changji City's
    resp = await gateway.client.post(f"/api/v1/alerts/{alert}/approve", json={}, headers=mori)
    assert (resp.status, (await resp.json())["code"]) == (403, "outside-jurisdiction")
    approver = await login(gateway.client, APPROVER)
    no_csrf = {"Cookie": approver["Cookie"]}
    resp = await gateway.client.post(f"/api/v1/alerts/{alert}/approve", json={}, headers=no_csrf)
    assert (resp.status, (await resp.json())["code"]) == (403, "csrf-mismatch")
    wrong = {**approver, "X-CSRF-Token": viewer["X-CSRF-Token"]}
    resp = await gateway.client.post(f"/api/v1/alerts/{alert}/approve", json={}, headers=wrong)
    assert resp.status == 403
    assert (await gateway.store.get_alert(alert)).state is AlertState.PENDING  # type: ignore[union-attr]


async def test_a_rejected_alert_is_never_sent_and_the_drafter_sees_why(gateway: Gateway) -> None:
    drafter = await login(gateway.client, DRAFTER)
    body = await submit(gateway, drafter, em_alert())
    approver = await login(gateway.client, APPROVER)
    empty = await move(gateway.client, body["id"], "reject", approver, 422, reason="  ")
    assert empty["code"] == "invalid-body"
    answer = await move(gateway.client, body["id"], "reject", approver, reason="wrong county")
    assert answer["state"] == "rejected"
    assert answer["approval"]["reason"] == "wrong county"
    seen = await (
        await gateway.client.get(f"/api/v1/alerts/{body['id']}", headers=A.auth(A.OPERATOR))
    ).json()
    assert (seen["state"], seen["approval"]["reason"]) == ("rejected", "wrong county")
    assert (await move(gateway.client, body["id"], "approve", approver, 409))["state"] == "rejected"
    await gateway.run()
    assert not await sent_anything(gateway, body["id"])
    # The drafter edits it and submits it again: a new identifier, waiting again.
    again = await submit(gateway, drafter, em_alert(geocodes=["652301001002"]))
    assert again["state"] == "pending-approval"


async def test_an_alert_that_expires_while_pending_is_never_sent(gateway: Gateway) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    body = await gateway.post(em_alert(expires=soon), key=EM_KEY)
    swept = await gateway.store.sweep_expired(now=soon + timedelta(seconds=1))
    assert swept == [body["id"]]
    record = await gateway.store.get_alert(body["id"])
    assert record is not None
    assert record.state is AlertState.EXPIRED
    approver = await login(gateway.client, APPROVER)
    assert (await move(gateway.client, body["id"], "approve", approver, 409))[
        "code"
    ] == "expired-unreleased"
    await gateway.run()
    assert not await sent_anything(gateway, body["id"])
    events = [e["event"] for e in await gateway.store.audit(20) if e.get("id") == body["id"]]
    assert "expired-unreleased" in events


async def test_approval_after_the_expiry_is_refused_even_before_the_sweep(
    gateway: Gateway,
) -> None:
    """The release script itself compares the expiry with the moment of approval: an
    approval that comes after it, before the sweeper ran, sends nothing either."""
    body = await gateway.post(
        em_alert(expires=datetime.now(UTC) + timedelta(minutes=5)), key=EM_KEY
    )
    approver = Person(APPROVER, frozenset({"approver"}), ("652300",))
    later = datetime.now(UTC) + timedelta(minutes=6)
    with pytest.raises(Conflict) as refused:
        await gateway.app[CONSOLE].desk.approve(body["id"], approver, now=later)
    assert refused.value.code == "expired-unreleased"
    record = await gateway.store.get_alert(body["id"])
    assert record is not None
    assert record.state is AlertState.EXPIRED
    await gateway.run()
    assert not await sent_anything(gateway, body["id"])


async def test_levels_and_agencies_that_need_no_approval(gateway: Gateway) -> None:
    yellow = await gateway.post(em_alert(level="yellow", severity="Moderate"), key=EM_KEY)
    assert yellow["state"] == "active"
    auto = await gateway.post(A.alert(geocodes=[UNIT]))  # the met bureau: automatic release
    assert auto["state"] == "active"
    record = await gateway.store.get_alert(auto["id"])
    assert record is not None
    assert record.approval == {"required": False, "decision": "auto-release"}
    posted = next(e for e in await gateway.store.audit(20) if e.get("id") == auto["id"])
    assert posted["approval"] == "auto-release"
    drill = await gateway.post(em_alert(status="Exercise"), key=EM_KEY)
    assert drill["state"] == "active"  # only Actual alerts wait


async def test_a_pending_update_leaves_the_live_warning_alone_until_approved(
    gateway: Gateway,
) -> None:
    first = em_alert(level="yellow", severity="Moderate")
    live = await gateway.post(first, key=EM_KEY)
    update = em_alert(msg_type="Update", references=[first])
    pending = await gateway.post(update, key=EM_KEY)
    assert pending["state"] == "pending-approval"
    assert (await gateway.store.get_alert(live["id"])).state is AlertState.ACTIVE  # type: ignore[union-attr]
    cancel = em_alert(msg_type="Cancel", references=[update])
    resp = await gateway.client.post(
        "/api/v1/alerts", data=orjson.dumps(cancel), headers=A.json_headers(EM_KEY)
    )
    problem = await resp.json()
    assert (resp.status, problem["code"]) == (409, "reference-not-released")
    approver = await login(gateway.client, APPROVER)
    await move(gateway.client, pending["id"], "approve", approver)
    old = await gateway.store.get_alert(live["id"])
    assert old is not None
    assert (old.state, old.superseded_by) == (AlertState.UPDATED, pending["id"])


async def test_emergency_release_alone_is_time_boxed_flagged_and_reviewed(gateway: Gateway) -> None:
    drafter = await login(gateway.client, DRAFTER)
    long = await submit(gateway, drafter, em_alert(expires=datetime.now(UTC) + timedelta(hours=3)))
    refused = await move(
        gateway.client, long["id"], "emergency-release", drafter, 403, reason="no approver"
    )
    assert (refused["code"], refused["window_minutes"]) == ("emergency-window-exceeded", 120)
    short = await submit(
        gateway, drafter, em_alert(expires=datetime.now(UTC) + timedelta(minutes=90))
    )
    released = await move(
        gateway.client, short["id"], "emergency-release", drafter, reason="approver unreachable"
    )
    assert released["state"] == "active"
    assert released["approval"]["decision"] == "emergency-release"
    assert released["approval"]["review"] == "due"
    await gateway.run()
    assert any(short["id"] in i for i in gateway.sms.accepted_ids)
    approver = await login(gateway.client, APPROVER)
    due = await (await gateway.client.get("/api/v1/approvals", headers=approver)).json()
    assert [r["id"] for r in due["review_due"]] == [short["id"]]
    assert [r["id"] for r in due["pending"]] == [long["id"]]
    chief = await login(gateway.client, CHIEF)
    await move(gateway.client, short["id"], "review", approver, note="checked with the duty chief")
    assert (await move(gateway.client, short["id"], "review", chief, 409))[
        "code"
    ] == "already-reviewed"
    due = await (await gateway.client.get("/api/v1/approvals", headers=approver)).json()
    assert due["review_due"] == []


def test_the_transition_table_names_every_move_once() -> None:
    assert set(TRANSITIONS) == set(Transition)
    for sources, target in TRANSITIONS.values():
        assert target not in sources
    assert TRANSITIONS[Transition.APPROVE][0] == (AlertState.PENDING,)


async def test_the_planner_never_plans_an_alert_that_waits(gateway: Gateway) -> None:
    """Even if a pending alert reached the planning stream (it never does), the planner
    plans nothing and does not mark it done: approved later, it is planned then."""
    body = await gateway.post(em_alert(), key=EM_KEY)
    await gateway.store.redis.xadd(
        gateway.store.keys.plan_queue("hi"), {"id": body["id"], "msgType": "Alert"}
    )
    assert await gateway.plan_all() == 1
    assert not await gateway.store.plan_done(body["id"])
    assert await gateway.store.plan_summary(body["id"]) is None
    approver = await login(gateway.client, APPROVER)
    await move(gateway.client, body["id"], "approve", approver)
    await gateway.run()
    assert any(body["id"] in i for i in gateway.sms.accepted_ids)


async def test_a_drafter_submits_only_inside_their_jurisdiction(gateway: Gateway) -> None:
    kangbashi = await login(gateway.client, "kangbashi-drafter")
    data = A.alert(sender="em.ordos@warngate.example", geocodes=["150603001001"])
    assert (await submit(gateway, kangbashi, data))["state"] == "pending-approval"
    outside = A.alert(sender="em.ordos@warngate.example", geocodes=["150602"])
    resp = await gateway.client.post("/api/v1/submissions", json=outside, headers=kangbashi)
    assert resp.status in (403, 422)
    viewer = await login(gateway.client, VIEWER)
    resp = await gateway.client.post("/api/v1/submissions", json=em_alert(), headers=viewer)
    assert (resp.status, (await resp.json())["code"]) == (403, "role-required")
