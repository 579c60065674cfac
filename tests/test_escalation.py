"""Escalation: predicted shortfalls get ladder steps from the start; measured shortfalls at
a unit's deadline get the next step, once — with a fake clock, not by waiting."""

from __future__ import annotations

import orjson

from gateway.app import build_workers
from gateway.directory import Directory
from gateway.escalation import next_step, predict_unit, steps_for_prediction
from gateway.keys import STORE
from gateway.models import Channel
from gateway.monitor import Monitor
from gateway.samplegen import device_token
from gateway.store import now_ms
from tests import alerts as A
from tests.conftest import Gateway
from tests.test_dispatch import UNIT


def monitor(gw: Gateway) -> Monitor:
    return Monitor(gw.config, gw.store, gw.workers.planner, gw.workers.metrics)


def test_next_step_skips_what_is_done_or_planned() -> None:
    ladder = ["messenger", "loudspeaker_repeat", "sms_officials"]
    assert next_step(ladder, [], []) == "messenger"
    assert next_step(ladder, [], [Channel.MESSENGER]) == "loudspeaker_repeat"
    assert next_step(ladder, ["loudspeaker_repeat"], [Channel.MESSENGER]) == "sms_officials"
    assert next_step(ladder, ladder, []) is None


def test_prediction_counts_healthy_devices_and_expected_delivery(gateway: Gateway) -> None:
    d: Directory = gateway.config.directory
    pop = d.divisions[UNIT].population
    speakers = [e for e in d.endpoints_by_unit[UNIT] if e.kind.value == "loudspeaker"]
    one = {speakers[0].id}
    pred = predict_unit(d, UNIT, [Channel.LOUDSPEAKER], one, 2.8)
    assert pred.reach["loudspeaker"] == speakers[0].covers_population / pop * 0.95
    none = predict_unit(d, UNIT, [Channel.LOUDSPEAKER], set(), 2.8)
    assert none.estimate == 0.0
    assert steps_for_prediction(none, 0.9, ["messenger", "sms_officials"], []) == ["messenger"]
    assert steps_for_prediction(pred, 0.0, ["messenger"], []) == []  # target met: nothing


async def test_units_predicted_short_get_the_first_step_up_front(gateway: Gateway) -> None:
    # Every loudspeaker of the unit reported, but long ago: they count as broken.
    for e in gateway.config.directory.endpoints_by_unit[UNIT]:
        await gateway.store.heartbeat(e.id, {"status": "ok"}, now_ms() - 86_400_000)
    # Yellow in Changji City goes to sms, app, loudspeaker, display: no messengers.
    body = await gateway.post(A.alert(geocodes=[UNIT], level="yellow", severity="Moderate"))
    await gateway.run()
    summary = await gateway.store.plan_summary(body["id"])
    assert summary is not None
    assert summary["steps"] == {UNIT: ["messenger"]}
    assert summary["units"][UNIT]["predicted"] < 0.95
    tasks = [c for c in gateway.sms.calls if ":messenger:" in c.ids[0]]
    messengers = gateway.config.directory.recipients_of(UNIT, Channel.MESSENGER)
    assert messengers is not None
    assert sorted(i.rsplit(":", 1)[1] for c in tasks for i in c.ids) == sorted(messengers.ids)


YELLOW = {"level": "yellow", "severity": "Moderate"}  # no messengers; deadline 30 min


async def test_unit_short_at_half_its_deadline_escalates_in_time_once(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT], **YELLOW))
    await gateway.run()
    summary = await gateway.store.plan_summary(body["id"])
    assert summary is not None
    accepted = summary["accepted_ms"]
    mon = monitor(gateway)
    assert await mon.tick(now=accepted + 14 * 60_000) == []  # before half the deadline
    # Half of the 30-minute deadline: nothing confirmed, nothing on its way (no
    # receipt came back: D with the unconfirmed sends stays far below 95 %).
    taken = await mon.tick(now=accepted + 15 * 60_000 + 1)
    done_up_front = summary.get("steps", {}).get(UNIT, [])
    [step] = taken
    assert step["unit"] == UNIT
    assert step["checkpoint"] == 0.5
    assert step["coverage"] == 0.0
    assert step["projected"] < 0.95
    # Ladder: messenger, loudspeaker_repeat, sms_officials (taken: SMS goes to everyone).
    assert done_up_front == ["messenger"]
    assert step["step"] == "loudspeaker_repeat"
    assert await mon.tick(now=accepted + 16 * 60_000) == []  # once per checkpoint
    # At the deadline it is still short, with nothing left on its ladder: recorded for
    # the duty officer, no step.
    assert await mon.tick(now=accepted + 30 * 60_000 + 1) == []
    esc = await gateway.store.escalations(body["id"])
    assert esc[f"{UNIT}@1"]["short"] is True
    assert esc[f"{UNIT}@1"]["step"] is None
    audit = [f for _, f in await gateway.store.redis.xrange(gateway.store.keys.audit)]
    escalated = [a for a in audit if a.get("event") == "escalated"]
    assert [(a["unit"], a["checkpoint"], a["step"]) for a in escalated] == [
        (UNIT, "0.5", "loudspeaker_repeat")
    ]
    report = await (
        await gateway.client.get(
            f"/api/v1/alerts/{body['id']}/coverage", headers=A.auth(A.OPERATOR)
        )
    ).json()
    assert [(e["unit"], e["step"]) for e in report["escalations"]] == [
        (UNIT, "loudspeaker_repeat"),
        (UNIT, None),
    ]
    assert report["escalations"][1]["note"] == "escalation ladder used up"


async def test_a_second_gateway_process_does_not_escalate_again(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT], **YELLOW))
    await gateway.run()
    summary = await gateway.store.plan_summary(body["id"])
    assert summary is not None
    late = summary["accepted_ms"] + 40 * 60_000
    other = build_workers(gateway.app, "other-process")
    first = await monitor(gateway).tick(now=late)
    second = await Monitor(gateway.config, gateway.app[STORE], other.planner, other.metrics).tick(
        now=late
    )
    assert len(first) == 1
    assert second == []


async def test_the_last_ladder_step_is_not_spent_at_send_time(gateway: Gateway) -> None:
    """A red alert already goes to messengers and to everyone by SMS: of the ladder only
    `loudspeaker_repeat` is left. It was spent up front (before anything had played), so
    a unit short at its deadline could only be recorded; now it waits for the checks."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    summary = await gateway.store.plan_summary(body["id"])
    assert summary is not None
    assert summary["units"][UNIT]["predicted"] < 0.95  # predicted short …
    assert summary["steps"] == {}  # … and still nothing spent
    taken = await monitor(gateway).tick(now=summary["accepted_ms"] + 5 * 60_000)
    assert [(t["unit"], t["checkpoint"], t["step"]) for t in taken] == [
        (UNIT, 0.5, "loudspeaker_repeat")
    ]
    assert await monitor(gateway).tick(now=summary["accepted_ms"] + 11 * 60_000) == []
    esc = await gateway.store.escalations(body["id"])
    assert esc[f"{UNIT}@1"]["step"] is None  # ladder used up, at the deadline
    assert esc[f"{UNIT}@1"]["coverage"] < esc[f"{UNIT}@1"]["target"]


async def test_unit_meeting_its_target_is_not_escalated(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()
    from gateway.callbacks import relay_code

    code = relay_code(gateway.config.settings.secret.get_secret_value(), body["id"], UNIT)
    messengers = gateway.config.directory.recipients_of(UNIT, Channel.MESSENGER)
    assert messengers is not None
    households = gateway.config.directory.households
    assert households is not None
    everyone = [households.ids[i] for i in households.by_unit[UNIT].tolist()]  # all told
    resp = await gateway.client.post(
        f"/api/v1/relay/{code}",
        data=orjson.dumps(
            {"phone": messengers.addresses[0], "status": "relayed", "households": everyone}
        ),
    )
    assert resp.status == 200, await resp.text()
    summary = await gateway.store.plan_summary(body["id"])
    assert summary is not None
    taken = await monitor(gateway).tick(now=summary["accepted_ms"] + 30 * 60_000)
    assert taken == []
    esc = await gateway.store.escalations(body["id"])
    for share in ("0.5", "1"):
        assert esc[f"{UNIT}@{share}"]["step"] is None
        assert esc[f"{UNIT}@{share}"]["coverage"] == 1.0


async def test_loudspeaker_repeat_republishes_the_units_entry(gateway: Gateway) -> None:
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    record = await gateway.store.get_alert(body["id"])
    assert record is not None
    speaker = gateway.config.directory.endpoints_by_unit[UNIT][0]
    headers = {"Authorization": f"Bearer {device_token(speaker.id)}"}
    first = await (
        await gateway.client.get(f"/api/v1/endpoints/{speaker.id}/messages", headers=headers)
    ).json()
    before = first["messages"][0]
    added = await gateway.workers.planner.escalate(record, UNIT, "loudspeaker_repeat")
    assert added == sum(
        1 for e in gateway.config.directory.endpoints_by_unit[UNIT] if e.kind.value == "loudspeaker"
    )
    again = await (
        await gateway.client.get(
            f"/api/v1/endpoints/{speaker.id}/messages",
            params={"since": first["cursor"]},
            headers=headers,
        )
    ).json()
    [after] = again["messages"]
    assert after["id"] == before["id"]
    assert after["seq"] != before["seq"]  # a change the device sees, so it plays again


async def test_coverage_gauges_follow_live_alerts(gateway: Gateway) -> None:
    original = A.alert(geocodes=[UNIT])
    body = await gateway.post(original)
    drill = await gateway.post(A.alert(geocodes=[UNIT], status="Exercise"))
    await gateway.run()
    mon = monitor(gateway)
    await mon.tick(now=now_ms())
    text = (await (await gateway.client.get("/metrics")).read()).decode()
    assert f'warngate_alert_coverage{{alert="{body["id"]}",level="red"}}' in text
    assert f'warngate_exercise_alert_coverage{{alert="{drill["id"]}",level="red"}}' in text
    assert f'warngate_alert_coverage{{alert="{drill["id"]}"' not in text  # never mixed
    assert 'warngate_broadcast_coverage{county="652301"}' in text
    await gateway.post(A.alert(msg_type="Cancel", references=[original], geocodes=[UNIT]))
    await gateway.run()
    await mon.tick(now=now_ms())
    text = (await (await gateway.client.get("/metrics")).read()).decode()
    assert f'warngate_alert_coverage{{alert="{body["id"]}"' not in text  # removed at its end
